//! `--worker-threads` / `LOGGER_WORKER_THREADS`: the runtime has that many worker threads (half
//! the CPUs by default), the start line says so, and the daemon serves with any of them — one
//! worker with fsync on included, where each sync moves the worker's other work to a new thread.

mod common;

use common::*;

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
        assert_eq!(runtime_threads(d.child.id()), workers, "case {i}");
        assert!(says_workers(&d.stderr(), workers), "case {i}: {}", d.stderr());
        let mut c = Client::h1(d.addr, &certs.ca_der).await;
        for sequence in 1..=20 {
            let record = format!(r#"{{"sequence":{sequence},"response_status_code":200}}"#);
            assert_eq!(c.post(record).await.status, 200, "case {i}");
        }
        drop(c);
        let (code, stderr) = d.stop();
        assert_eq!(code, 0, "case {i}: {stderr}");
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written.lines().count(), 20, "case {i}");
    }
}
