//! The benchmark's own programs, as bench/run.sh drives them: the load tool against the real
//! daemon (every 2xx it counts is a line in the output, no sequence twice, over HTTP/1.1 with
//! batches and over HTTP/2 with several streams), and the ceiling server under the load tool.
//! The benchmark's "none lost, none twice" rests on the first; its ratios on the second.
//!
//! The programs are cargo examples, built by `cargo test` with the tests. Each child is reaped
//! when its test ends, failed or not.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// target/debug/examples/NAME, beside this test's own binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built; `cargo test` builds the examples (not with --test or --lib)",
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
    fraction(summary, key) as u64
}

fn fraction(summary: &[(String, String)], key: &str) -> f64 {
    let v = &summary.iter().find(|(k, _)| k == key).unwrap().1;
    v.parse::<f64>().unwrap()
}

#[test]
fn every_2xx_the_load_tool_counts_is_one_line_written_once() {
    let s = serve_to_file("bench-load", |s| s);
    let url = format!("https://127.0.0.1:{}/log", s.daemon.addr.port());
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
        // The open loop: 150 requests/s in all, on three connections, for 2 s.
        vec![
            "--connections",
            "3",
            "--rate",
            "150",
            "--duration",
            "2s",
            "--first-sequence",
            "500000000",
        ],
    ];
    // With no error, the sequences sent are exactly first ..= last (the summary's), each once.
    let mut expected = HashSet::new();
    for args in &runs {
        let summary = load(&s.certs.ca, &url, args);
        let f = |key| field(&summary, key);
        assert_eq!((f("non2xx"), f("errors")), (0, 0), "{summary:?}");
        assert!(f("requests") > 0, "{summary:?}");
        let (first, last) = (f("first_sequence"), f("last_sequence"));
        assert_eq!(last + 1 - first, f("sent_total") * f("batch"), "{summary:?}");
        expected.extend(first..=last);
        if args.contains(&"--rate") {
            // It keeps to its schedule: 300 requests due in 2 s, never more, as the answers
            // come at once (a closed loop would send thousands).
            assert_eq!(f("offered_rps"), 150, "{summary:?}");
            let sent = f("sent_total");
            assert!((200..=303).contains(&sent), "sent {sent}: {summary:?}");
            let ms = |key| fraction(&summary, key);
            let tail = [ms("p50_ms"), ms("p99_ms"), ms("p999_ms"), ms("max_ms")];
            assert!(tail.windows(2).all(|w| w[0] <= w[1]), "{summary:?}");
        }
    }
    // A slow rate over many connections: one request due every second in all, so each
    // connection's next one falls long after the 1 s measured; the tool ends with its
    // period, not when every connection's next turn would have come (100 s).
    let began = std::time::Instant::now();
    let summary = load(
        &s.certs.ca,
        &url,
        &[
            "--connections",
            "100",
            "--rate",
            "1",
            "--duration",
            "1s",
            "--first-sequence",
            "600000000",
        ],
    );
    let took = began.elapsed();
    let f = |key| field(&summary, key);
    assert_eq!((f("non2xx"), f("errors")), (0, 0), "{summary:?}");
    assert!(f("sent_total") <= 2, "{summary:?}");
    assert!(took < Duration::from_secs(45), "ran {took:?}: {summary:?}");
    expected.extend(f("first_sequence")..=f("last_sequence"));
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&s.out).unwrap();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            seen.insert(v["sequence"].as_u64().unwrap()),
            "written twice: {line}"
        );
    }
    assert_eq!(seen.len(), expected.len(), "lines written vs 2xx counted");
    assert!(seen == expected, "the sequences written are not those sent");
}

#[test]
fn the_ceiling_serves_the_load_tool_and_stops_on_sigterm() {
    let dir = TempDir::new("bench-ceiling");
    let certs = make_certs(dir.path());
    let port = free_port();
    let ceiling_cmd = || {
        let mut cmd = Command::new(example("ceiling"));
        cmd.args([
            certs.cert.to_str().unwrap(),
            certs.key.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
        ]);
        cmd
    };
    // Its worker threads as the daemon reads them: a bad value is refused the same way.
    let refused = ceiling_cmd()
        .env("LOGGER_WORKER_THREADS", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains(r#"LOGGER_WORKER_THREADS="0": not a thread count (1-1024)"#));
    let mut ceiling = Reaped(
        ceiling_cmd()
            .env("LOGGER_WORKER_THREADS", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the ceiling did not listen");
    assert_eq!(runtime_threads(ceiling.id(), 3), 3);
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

/// Bad arguments and bodies the tool cannot number: exit status 2 and one line saying why,
/// before any connection (nobody listens at the URL).
#[test]
fn the_load_tool_refuses_what_it_cannot_do() {
    let dir = TempDir::new("bench-args");
    let ca = make_certs(dir.path()).ca;
    let url = format!("https://127.0.0.1:{}/log", free_port());
    let body = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (vec!["--duration", "1.5s"], sample(), "not a duration"),
        (vec!["--duration", "0s"], sample(), "longer than zero"),
        (vec!["--duration", "9000h"], sample(), "too long"),
        (vec!["--duration", "1s", "--rate", "0"], sample(), "not a rate"),
        (
            vec!["--duration", "1s", "--rate", "10", "--new-connection-per-request"],
            sample(),
            "cannot be used with",
        ),
        (
            vec!["--duration", "1s"],
            body("spaced.json", r#"{"sequence": 1}"#).into(),
            "no space after the colon",
        ),
        (
            vec!["--duration", "1s"],
            body("twice.json", r#"{"sequence":1,"a":{"sequence":2}}"#).into(),
            "more than one",
        ),
        (
            vec!["--duration", "1s"],
            body(
                "inner.json",
                r#"{"sequence":100000302,"r":{"x":"\"sequence\":1"}}"#,
            )
            .into(),
            "",
        ),
    ];
    for (args, body, says) in cases {
        let out = Command::new(example("load"))
            .args(["--ca", ca.to_str().unwrap(), "--body", body.to_str().unwrap()])
            .args(&args)
            .args(["--timeout", "1s", "--first-sequence", "100000000"])
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if says.is_empty() {
            // A "sequence" inside a string is not the record's: this body is numbered, and the
            // run goes on, counting a failed connection every 100 ms (nobody listens).
            assert_eq!(out.status.code(), Some(0), "{args:?} {body:?}: {stderr}");
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("load-summary "));
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{args:?} {body:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} {body:?}: {stderr}");
    }
}
