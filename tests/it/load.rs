//! Many clients at once, records of very different sizes: every record answered `200` is in the
//! output exactly once, whole, on its own line; and the same holds when `SIGTERM` arrives in the
//! middle of the load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let s = serve_to_file("load-term", |s| s.args(["--fsync", "on"]));
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let errors_expected = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for w in 0..16 {
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
    let written = verify(&s.out, &acked);
    assert!(written >= acked.len());
    assert!(stderr.contains("SIGTERM: stopping"), "{stderr}");
}
