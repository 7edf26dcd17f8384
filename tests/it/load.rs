//! Many clients at once, records of very different sizes: every record answered `200` is in the
//! output exactly once, whole, on its own line; the same holds when `SIGTERM` arrives in the
//! middle of the load; and requests that wait for the writer together share one write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// A conforming request record of about `size` bytes, pretty-printed, identified by `id`.
fn record(id: u64, size: usize) -> String {
    let pad = "x".repeat(size.saturating_sub(200));
    request(id)
        .method("POST")
        .uri("/api/v1/metrics")
        .body(serde_json::json!({"pad": pad, "id": id}))
        .pretty()
}

fn size_for(i: u64) -> usize {
    match i % 50 {
        0 => (1 << 20) + (i as usize % 7) * 300_000, // 1 to 3 MB
        1..=5 => 50_000 + (i as usize * 7919) % 100_000,
        _ => 200 + (i as usize * 104_729) % 4_000,
    }
}

/// Checks the output: every line whole JSON, no id twice, every acknowledged id present with
/// its full size.
fn verify(out: &std::path::Path, acked: &HashMap<u64, usize>) -> usize {
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {} is not whole JSON: {e}", n + 1));
        let id = v["sequence"].as_u64().unwrap();
        assert_eq!(v["request_body"]["id"].as_u64(), Some(id));
        let pad = v["request_body"]["pad"].as_str().unwrap().len();
        assert!(seen.insert(id, pad).is_none(), "record {id} written twice");
    }
    for (id, size) in acked {
        let pad = seen
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged record {id} is missing"));
        assert_eq!(*pad, size.saturating_sub(200), "record {id} is not whole");
    }
    seen.len()
}

async fn client_task(
    addr: std::net::SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    worker: u64,
    count: u64,
    acked: Arc<Mutex<HashMap<u64, usize>>>,
    stop_on_error: Arc<AtomicBool>,
) {
    let mut client = if worker % 3 == 0 {
        Client::h2(addr, &ca).await
    } else {
        Client::h1(addr, &ca).await
    };
    for i in 0..count {
        let id = worker * 1_000_000 + i;
        let size = size_for(id);
        match client
            .try_request(
                "POST",
                "/log",
                &[("content-type", "application/json")],
                record(id, size),
            )
            .await
        {
            Ok(r) if r.status == 200 => {
                assert_eq!(r.json()["accepted"], 1);
                acked.lock().unwrap().insert(id, size);
            }
            Ok(r) => {
                assert!(
                    stop_on_error.load(Ordering::Relaxed),
                    "unexpected {}: {}",
                    r.status,
                    r.body
                );
                return;
            }
            Err(e) => {
                assert!(stop_on_error.load(Ordering::Relaxed), "unexpected error: {e}");
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_every_acknowledged_record_once_and_whole() {
    let s = serve_to_file("load", |s| s);
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let no_errors = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..24 {
        tasks.push(tokio::spawn(client_task(
            s.daemon.addr,
            s.certs.ca_der.clone(),
            w,
            60,
            acked.clone(),
            no_errors.clone(),
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 24 * 60);
    assert_eq!(verify(&s.out, &acked), 24 * 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_load_keeps_every_acknowledged_record() {
    const CLIENTS: u64 = 16;
    let s = serve_to_file("load-term", |s| s.args(["--fsync", "on"]));
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let errors_expected = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        tasks.push(tokio::spawn(client_task(
            s.daemon.addr,
            s.certs.ca_der.clone(),
            w,
            1_000_000,
            acked.clone(),
            errors_expected.clone(),
        )));
    }
    // Let the load build up, then stop the daemon under it.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let daemon = s.daemon;
    let stopping = tokio::task::spawn_blocking(move || daemon.stop());
    let (code, stderr) = stopping.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Every acknowledged record is there (verify checks); the others written are at most the
    // one request each client had in flight when the answers stopped.
    let written = verify(&s.out, &acked);
    assert!(
        written <= acked.len() + CLIENTS as usize,
        "{written} records written, {} acknowledged",
        acked.len()
    );
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
}

/// Group commit, seen from outside: requests that wait for the writer together share one write.
/// Stdout is a pipe nobody reads yet, and a first record larger than a pipe holds blocks the
/// writer in write(2); fifty records arrive meanwhile and wait (the queue gauge shows them all).
/// Once the pipe drains, one write takes all fifty: two writes in all, where one write per
/// request would make fifty-one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_waiting_together_share_one_write() {
    const WAITING: u64 = 50;
    let dir = TempDir::new("load-group");
    let certs = make_certs(dir.path());
    let mut start = Start::new(&certs).args(["--admin-addr", "127.0.0.1:0"]);
    start.pipe_stdout = true;
    let mut d = start.start();
    let admin = d.admin_addr();
    let mut reader = d.child.stdout.take().unwrap();
    let post = |record: Record| {
        let (addr, ca) = (d.addr, certs.ca_der.clone());
        tokio::spawn(async move { Client::h1(addr, &ca).await.post(record).await.status })
    };
    let big = post(response(0).body(serde_json::json!("x".repeat(200 << 10))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!big.is_finished(), "the pipe should be full");
    let waiting: Vec<_> = (1..=WAITING).map(|seq| post(response(seq))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = scrape(admin).await.n("ml_api_logger_output_queue_requests", &[]);
        if queued == WAITING {
            break;
        }
        assert!(Instant::now() < deadline, "{queued} of {WAITING} records queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut reader, &mut out).unwrap();
        out
    });
    assert_eq!(big.await.unwrap(), 200);
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
    let m = scrape(admin).await;
    assert_eq!(
        m.n("ml_api_logger_output_write_batches_total", &[]),
        2,
        "the blocked record's write, then one for the {WAITING} that waited"
    );
    assert_eq!(m.n("ml_api_logger_output_batch_records_sum", &[]), WAITING + 1);
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(drained.join().unwrap().lines().count() as u64, WAITING + 1);
}
