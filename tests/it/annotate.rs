//! `--annotate`: `_received_at` (RFC 3339, UTC, milliseconds) and `_peer` as the last members.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_the_last_members() {
    let s = serve_to_file("annotate", |s| s.env("LOGGER_ANNOTATE", "1"));
    let mut c = s.h1().await;
    assert_eq!(
        c.post(format!("[{REQUEST_FIXTURE}, {RESPONSE_FIXTURE}]"))
            .await
            .status,
        200
    );
    // A retry is still recognised, though its annotations would differ.
    assert_eq!(c.post(REQUEST_FIXTURE).await.json()["duplicates"], 1);
    s.daemon.stop();
    let text = std::fs::read_to_string(&s.out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let at = line.find(",\"_received_at\":\"").expect("annotated");
        let tail = &line[at..];
        assert!(tail.contains(",\"_peer\":\"127.0.0.1:"), "{tail}");
        assert!(tail.ends_with("\"}"), "{tail}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["_received_at"].as_str().unwrap();
        assert_eq!(t.len(), "2026-11-25T15:35:22.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.');
    }
    assert!(lines[0].starts_with(r#"{"sequence":302,"request":{"Method":"POST""#));
}
