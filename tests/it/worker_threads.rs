//! `--worker-threads` / `LOGGER_WORKER_THREADS`: the runtime has that many worker threads (half
//! the CPUs by default), the start line says so, and the daemon serves with any of them — one
//! worker with fsync on included, where each sync moves the worker's other work to a new thread.

use std::time::Duration;

use crate::common::*;

fn says_workers(stderr: &str, n: usize) -> bool {
    let words = if n == 1 {
        "; 1 worker thread".to_string()
    } else {
        format!("; {n} worker threads")
    };
    stderr
        .lines()
        .any(|l| l.contains("listening on https://") && l.ends_with(&words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_sets_the_runtime_s_workers() {
    let dir = TempDir::new("workers");
    let certs = make_certs(dir.path());
    let cpus = std::thread::available_parallelism().unwrap().get();
    let cases = [
        (Start::new(&certs), (cpus / 2).max(1)),
        (Start::new(&certs).args(["--worker-threads", "3"]), 3),
        (
            Start::new(&certs)
                .env("LOGGER_WORKER_THREADS", "1")
                .args(["--fsync", "on"]),
            1,
        ),
    ];
    for (i, (start, workers)) in cases.into_iter().enumerate() {
        let out = dir.join(&format!("out-{i}.ndjson"));
        let d = start.args(["--output", out.to_str().unwrap()]).start();
        assert_eq!(runtime_threads(d.child.id(), workers), workers, "case {i}");
        assert!(says_workers(&d.stderr(), workers), "case {i}: {}", d.stderr());
        let mut c = Client::h1(d.addr, &certs.ca_der).await;
        for sequence in 1..=20 {
            assert_eq!(c.post(response(sequence)).await.status, 200, "case {i}");
        }
        drop(c);
        let (code, stderr) = d.stop();
        assert_eq!(code, 0, "case {i}: {stderr}");
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written.lines().count(), 20, "case {i}");
    }
}

/// With one worker and stdout a pipe nobody reads yet, a write that fills the pipe blocks; the
/// rest of the daemon keeps serving meanwhile (a new connection's handshake and `/healthz`),
/// and once the reader drains the pipe the blocked record arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_keeps_serving_while_a_pipe_write_blocks() {
    let dir = TempDir::new("workers-pipe");
    let certs = make_certs(dir.path());
    let mut start = Start::new(&certs).args(["--worker-threads", "1"]);
    start.pipe_stdout = true;
    let mut d = start.start();
    let mut reader = d.child.stdout.take().unwrap();
    // Larger than a pipe holds (64 KiB): its write(2) waits for the reader.
    let big = response(1).body(serde_json::json!("x".repeat(200 << 10)));
    let (addr, ca) = (d.addr, certs.ca_der.clone());
    let blocked = tokio::spawn(async move { Client::h1(addr, &ca).await.post(big).await.status });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!blocked.is_finished(), "the pipe should be full");
    let health = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = Client::h1(d.addr, &certs.ca_der).await;
        c.request("GET", "/healthz", &[], "").await.status
    })
    .await
    .expect("the daemon stopped serving while a write to its stdout blocked");
    assert_eq!(health, 200);
    let drained = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
        out
    });
    assert_eq!(blocked.await.unwrap(), 200);
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let out = drained.join().unwrap();
    let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(line["response_body"].as_str().unwrap().len(), 200 << 10);
}
