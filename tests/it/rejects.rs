//! `--rejects FILE`: every refused body (400, 413, 415, 422) kept as one NDJSON line with time,
//! peer, status, reason and the body, as text or base64; a 413 keeps the first max-body bytes.

use std::io::Write;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_body_is_kept_with_why() {
    let kept = TempDir::new("rejects-kept");
    let rejects = kept.join("rejects.ndjson");
    let s = serve_to_file("rejects", |s| {
        s.args(["--max-body", "1KiB", "--strict"])
            .env("LOGGER_REJECTS", rejects.to_str().unwrap())
    });
    let mut c = s.h1().await;
    assert_eq!(c.post("{\"sequence\": oops}").await.status, 400);
    assert_eq!(c.post(vec![0xffu8, 0xfe, b'{']).await.status, 400);
    assert_eq!(
        c.post(r#"{"sequence":1,"request":{"Method":"GET"}}"#)
            .await
            .status,
        422
    );
    let big = format!("{{\"pad\":\"{}\"}}", "z".repeat(3000));
    assert_eq!(c.post(big.clone()).await.status, 413);
    let mut c = s.h2().await;
    let r = c
        .request("POST", "/log", &[("content-encoding", "br")], "{\"a\":1}")
        .await;
    assert_eq!(r.status, 415);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"[1]").unwrap();
    let r = c
        .request(
            "POST",
            "/log",
            &[("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);

    let lines = read_ndjson(&rejects);
    let statuses: Vec<u64> = lines.iter().map(|l| l["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![400, 400, 422, 413, 415, 400]);
    for l in &lines {
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
        assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(!l["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(lines[0]["body"], "{\"sequence\": oops}");
    assert!(lines[0]["error"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(lines[1]["body_base64"], "//57");
    assert!(lines[2]["error"].as_str().unwrap().contains("RequestURI"));
    assert_eq!(lines[3]["truncated"], true);
    assert_eq!(lines[3]["body"].as_str().unwrap(), &big[..1024]);
    assert_eq!(lines[4]["body"], "{\"a\":1}");
    // The decoded body is what is kept: what the sender meant.
    assert_eq!(lines[5]["body"], "[1]");
    assert_eq!(
        read_ndjson(&s.out).len(),
        1,
        "refused bodies never reach the output"
    );
}
