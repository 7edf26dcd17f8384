//! Every status code of the TLS listener, each from a real request over real TLS.

use std::io::Write;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_single_batch_and_ndjson_are_written_one_per_line() {
    let s = serve_to_file("ep-ok", |s| s);
    let mut c = s.h1().await;

    let r = c.post(REQUEST_FIXTURE).await;
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"accepted": 1})));
    assert_eq!(r.headers["content-type"], "application/json");
    let r = c.post(RESPONSE_FIXTURE).await;
    assert_eq!(r.status, 200);

    // Each shape with its own sequences: the same record again would be a retry, not written twice.
    let seq = |text: &str, n: u32| text.replacen("302", &n.to_string(), 1);
    let batch = format!("[{},{}]", seq(REQUEST_FIXTURE, 303), seq(RESPONSE_FIXTURE, 303));
    assert_eq!(c.post(batch).await.json(), serde_json::json!({"accepted": 2}));
    let ndjson = format!(
        "{}\n{}\n",
        minified(&seq(REQUEST_FIXTURE, 304)),
        minified(&seq(RESPONSE_FIXTURE, 304))
    );
    assert_eq!(c.post(ndjson).await.json(), serde_json::json!({"accepted": 2}));

    // HTTP/2 on the same listener.
    let mut c2 = s.h2().await;
    assert_eq!(c2.post(seq(REQUEST_FIXTURE, 305)).await.status, 200);

    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&s.out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7);
    let req: serde_json::Value = serde_json::from_str(REQUEST_FIXTURE).unwrap();
    let resp: serde_json::Value = serde_json::from_str(RESPONSE_FIXTURE).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["sequence"], [302, 302, 303, 303, 304, 304, 305][i]);
        v["sequence"] = 302.into();
        let want = if [0, 2, 4, 6].contains(&i) { &req } else { &resp };
        assert_eq!(&v, want, "line {}", i + 1);
        assert!(!line.contains(": ") && !line.contains('\n'));
    }
    // Exactly as received minus whitespace: member order and number spelling kept.
    assert!(lines[0].starts_with(r#"{"sequence":302,"request":{"Method":"POST","Host":"#));
    assert!(lines[1].contains(r#""response_status_code":"200""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spelling_and_unknown_fields_are_kept_exactly() {
    let s = serve_to_file("ep-exact", |s| s);
    let mut c = s.h1().await;
    let body = "{ \"zeta\" : 1.50E+2, \"sequence\" : 7 ,\n \"response_status_code\": 200, \"s\": \"a  b\\u00e9\\\"\", \"new\": {\"x\": [ ]} }";
    assert_eq!(c.post(body).await.status, 200);
    s.daemon.stop();
    assert_eq!(
        std::fs::read_to_string(&s.out).unwrap(),
        "{\"zeta\":1.50E+2,\"sequence\":7,\"response_status_code\":200,\"s\":\"a  b\\u00e9\\\"\",\"new\":{\"x\":[]}}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_precise_statuses_and_json_errors() {
    let s = serve_to_file("ep-refuse", |s| s.args(["--max-body", "64KiB"]));
    let mut c = s.h1().await;

    let error_of = |r: &Reply| r.json()["error"].as_str().unwrap().to_string();

    for (body, needle) in [
        ("", "empty body"),
        ("   \n", "empty body"),
        ("not json", "not valid JSON"),
        ("{\"sequence\": 1,", "not valid JSON"),
        ("[1, 2]", "array element 1: a number is not a JSON object"),
        ("\"text\"", "a string is not a JSON object"),
        ("[]", "no records"),
    ] {
        let r = c.post(body).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        assert!(error_of(&r).contains(needle), "{body:?}: {}", r.body);
    }

    // 405 with Allow, 404, healthz.
    let mut fresh = s.h1().await;
    let r = fresh.request("GET", "/log", &[], "").await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (405, "POST"));
    let r = fresh.request("PUT", "/log", &[], "{}").await;
    assert_eq!(r.status, 405);
    let r = fresh.request("POST", "/other", &[], "{}").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = fresh.request("GET", "/log/", &[], "").await;
    assert_eq!(r.status, 404);
    let r = fresh.request("GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 200);

    // 413: declared too large, and sent chunked too large.
    let big = response(1)
        .body(serde_json::json!({"pad": "x".repeat(70 << 10)}))
        .to_string();
    let mut c = s.h1().await;
    let r = c.post(big.clone()).await;
    assert_eq!(r.status, 413);
    assert!(error_of(&r).contains("65536-byte limit"));

    // 413 counted after decompression: a small gzip body that inflates past the limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let small = gz.finish().unwrap();
    assert!(small.len() < 64 << 10);
    let mut c = s.h1().await;
    let r = c
        .request("POST", "/log", &[("content-encoding", "gzip")], small)
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(error_of(&r).contains("after decompression"));

    // 415 for an unknown coding; gzip and deflate accepted.
    let r = c
        .request("POST", "/log", &[("content-encoding", "br")], "{}")
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        r.headers["connection"], "close",
        "the unread body ends the connection"
    );
    let mut c = s.h1().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(REQUEST_FIXTURE.as_bytes()).unwrap();
    let r = c
        .request(
            "POST",
            "/log",
            &[("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(RESPONSE_FIXTURE.as_bytes()).unwrap();
    let r = c
        .request(
            "POST",
            "/log",
            &[("content-encoding", "deflate")],
            z.finish().unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .request("POST", "/log", &[("content-encoding", "gzip")], "not gzip at all")
        .await;
    assert_eq!(r.status, 400);

    // Lenient: a nonconforming object is written, counted, and says so.
    let r = c.post("{\"sequence\": \"x\", \"request\": {}}").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"accepted": 1, "nonconforming": 1}));

    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("WARN") && stderr.contains("peer=127.0.0.1:"),
        "{stderr}"
    );
    let lines = read_ndjson(&s.out);
    assert_eq!(lines.len(), 3, "only the accepted records are written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_refuses_nonconforming_records_and_whole_batches() {
    let s = serve_to_file("ep-strict", |s| s.env("LOGGER_STRICT", "yes"));
    let mut c = s.h2().await;
    let r = c.post(r#"{"sequence":1,"request":{"Method":"GET"}}"#).await;
    assert_eq!(r.status, 422);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("request") && err.contains("RequestURI"), "{err}");

    let r = c.post(r#"{"sequence":1,"response_status_code":"OK"}"#).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("response_status_code"));

    let batch = format!("[{REQUEST_FIXTURE}, {{\"sequence\": 3}}]");
    let r = c.post(batch).await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"].as_str().unwrap().starts_with("record 2 "));

    let r = c.post(REQUEST_FIXTURE).await;
    assert_eq!(r.status, 200);
    s.daemon.stop();
    let lines = read_ndjson(&s.out);
    assert_eq!(lines.len(), 1, "nothing of a refused batch is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_output_answers_503_and_health_says_so() {
    let dir = TempDir::new("ep-full");
    let certs = make_certs(dir.path());
    // /dev/full takes the open and fails every write with ENOSPC.
    let d = Start::new(&certs).args(["--output", "/dev/full"]).start();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    let r = c.request("GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 200);
    let r = c.post(REQUEST_FIXTURE).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(r.json()["error"].as_str().unwrap().contains("retry"));
    let r = c.request("GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 503);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("ep-408");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).args(["--body-timeout", "500ms"]).start();
    let mut tls = tls_connect(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    tls.write_all(b"POST /log HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{\"sequence\":")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body not received within 0.5s"));
}
