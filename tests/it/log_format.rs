//! `--log-format json` / `LOGGER_LOG_FORMAT=json`: every diagnostic line on stderr is one JSON
//! object with a timestamp, a level and the message; stdout still carries records only.

use crate::common::*;

fn lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stderr_line_is_a_json_object() {
    let dir = TempDir::new("logjson");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).args(["--log-format", "json"]).start();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post("not json").await.status, 400);
    drop(c);
    d.signal("HUP");
    assert!(d.wait_for_log("certificate reloaded", std::time::Duration::from_secs(10)));
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    let all = lines(&stderr);
    assert!(all.len() >= 4, "{stderr}");
    for v in &all {
        assert!(v["timestamp"].is_string(), "{v}");
        assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&v["level"].as_str().unwrap()));
        assert!(v["message"].is_string(), "{v}");
    }
    let start = all
        .iter()
        .find(|v| v["message"].as_str().unwrap().contains("listening on https://"))
        .expect("the start line");
    assert_eq!(start["level"], "INFO");
    // A refusal carries its fields as members.
    let refused = all
        .iter()
        .find(|v| v["message"].as_str().unwrap().starts_with("refused: "))
        .expect("the refusal");
    assert_eq!(
        (refused["level"].as_str(), refused["status"].as_u64()),
        (Some("WARN"), Some(400))
    );
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variable_works_and_text_stays_the_default() {
    let dir = TempDir::new("logjson-env");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).env("LOGGER_LOG_FORMAT", "JSON").start();
    let (_, stderr) = d.stop();
    assert!(!lines(&stderr).is_empty());
    let d = Start::new(&certs).start();
    let (_, stderr) = d.stop();
    assert!(stderr.lines().all(|l| !l.starts_with('{')), "{stderr}");
    assert!(stderr.contains(" INFO ml_api_logger "), "{stderr}");
}

#[test]
fn an_unknown_format_stops_the_start() {
    let out = command()
        .env("LOGGER_LOG_FORMAT", "logfmt")
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: LOGGER_LOG_FORMAT=\"logfmt\": not a log format (text or json)\n"
    );
}
