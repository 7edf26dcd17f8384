//! The benchmark's own programs, as bench/run.sh drives them: the load tool against the real
//! daemon (every 2xx it counts is a line in the output, no sequence twice, over HTTP/1.1 with
//! batches and over HTTP/2 with several streams), and the ceiling server under the load tool.
//! The benchmark's "none lost, none twice" rests on the first; its ratios on the second.
//!
//! The programs are cargo examples, built by `cargo test` with the tests.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// target/debug/examples/NAME, beside this test's own binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built; run the whole `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/sample-request.json")
}

/// Runs the load tool; returns its `load-summary` fields.
fn load(ca: &std::path::Path, url: &str, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(example("load"))
        .args(["--ca", ca.to_str().unwrap(), "--body", sample().to_str().unwrap()])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load-summary "))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn field(summary: &[(String, String)], key: &str) -> u64 {
    let v = &summary.iter().find(|(k, _)| k == key).unwrap().1;
    v.parse::<f64>().unwrap() as u64
}

#[test]
fn every_2xx_the_load_tool_counts_is_one_line_written_once() {
    let dir = TempDir::new("bench-load");
    let certs = make_certs(dir.path());
    let out = dir.join("out.ndjson");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap()])
        .start();
    let url = format!("https://127.0.0.1:{}/log", d.addr.port());
    let runs = [
        // HTTP/1.1, batches of 10 records (NDJSON).
        vec![
            "--connections",
            "4",
            "--batch",
            "10",
            "--duration",
            "1s",
            "--first-sequence",
            "300000000",
        ],
        // HTTP/2, four streams on each of two connections.
        vec![
            "--http",
            "2",
            "--connections",
            "2",
            "--streams",
            "4",
            "--duration",
            "1s",
            "--first-sequence",
            "400000000",
        ],
    ];
    let mut expected = 0;
    for args in &runs {
        let s = load(&certs.ca, &url, args);
        assert_eq!((field(&s, "non2xx"), field(&s, "errors")), (0, 0), "{s:?}");
        assert!(field(&s, "requests") > 0, "{s:?}");
        expected += field(&s, "sent_total") * field(&s, "batch");
    }
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            seen.insert(v["sequence"].as_u64().unwrap()),
            "written twice: {line}"
        );
    }
    assert_eq!(
        seen.len() as u64,
        expected,
        "lines written vs 2xx the load tool counted"
    );
}

#[test]
fn the_ceiling_serves_the_load_tool_and_stops_on_sigterm() {
    let dir = TempDir::new("bench-ceiling");
    let certs = make_certs(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ceiling = Command::new(example("ceiling"))
        .args([
            certs.cert.to_str().unwrap(),
            certs.key.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the ceiling did not listen");
    let s = load(
        &certs.ca,
        &format!("https://127.0.0.1:{port}/log"),
        &["--connections", "2", "--duration", "1s"],
    );
    assert_eq!((field(&s, "non2xx"), field(&s, "errors")), (0, 0), "{s:?}");
    assert!(field(&s, "requests") > 0, "{s:?}");
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(ceiling.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(wait_exit(&mut ceiling, Duration::from_secs(10)), 0);
}
