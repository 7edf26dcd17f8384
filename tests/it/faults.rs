//! Never lose a record: a filesystem that fills up, `kill -9` under load, logrotate's
//! move-and-SIGHUP under load, a certificate swapped on disk, stdout whose reader goes away.
//! Every record answered `200` is in the output exactly once and whole; nothing else is.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// A request record with a pad of `size` bytes, identified by its sequence.
fn record(id: u64, size: usize) -> Record {
    request(id)
        .method("POST")
        .body(serde_json::json!({"id": id, "pad": "p".repeat(size)}))
}

/// What clients were told: id → pad size, for every `200`.
type Acked = Arc<Mutex<HashMap<u64, usize>>>;

struct Load {
    acked: Acked,
    refused: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `workers` clients posting records of varied sizes until stopped or until the server goes away.
fn start_load(
    addr: std::net::SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    workers: u64,
    big: bool,
) -> Load {
    let acked: Acked = Arc::default();
    let refused = Arc::new(Mutex::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (acked, refused, stop, ca) = (acked.clone(), refused.clone(), stop.clone(), ca.clone());
        tasks.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let c = match &mut client {
                    Some(c) => c,
                    None => match tokio::time::timeout(Duration::from_secs(2), connect(addr, &ca)).await {
                        Ok(Some(c)) => client.insert(c),
                        _ => return,
                    },
                };
                let id = w * 10_000_000 + i;
                i += 1;
                let size = if big && i % 10 == 0 {
                    200_000 + (i as usize % 5) * 50_000
                } else {
                    100 + (i as usize * 397) % 3000
                };
                match c.try_request("POST", "/log", &[], record(id, size)).await {
                    Ok(r) if r.status == 200 => {
                        acked.lock().unwrap().insert(id, size);
                    }
                    Ok(r) => {
                        assert_eq!(r.status, 503, "{}", r.body);
                        assert!(r.headers.contains_key("retry-after"));
                        *refused.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // The server closed the connection (stopping, killed): reconnect or give up.
                    Err(_) => client = None,
                }
            }
        }));
    }
    Load {
        acked,
        refused,
        stop,
        tasks,
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> Option<Client> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    Client::try_h1_over(tcp, tls_config(ca, &[b"http/1.1"])).await
}

impl Load {
    async fn finish(self) -> (HashMap<u64, usize>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let refused = *self.refused.lock().unwrap();
        (acked, refused)
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn refused(&self) -> u64 {
        *self.refused.lock().unwrap()
    }
}

/// Every line of every file whole; id → pad size; panics on an id seen twice.
fn written(files: &[PathBuf]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line",
            f.display()
        );
        for (n, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{} line {}: not whole JSON: {e}", f.display(), n + 1));
            let id = v["sequence"].as_u64().unwrap();
            let pad = v["request_body"]["pad"].as_str().unwrap().len();
            assert!(seen.insert(id, pad).is_none(), "record {id} written twice");
        }
    }
    seen
}

fn assert_every_ack_once(files: &[PathBuf], acked: &HashMap<u64, usize>, exactly: bool) {
    let seen = written(files);
    for (id, size) in acked {
        assert_eq!(
            seen.get(id),
            Some(size),
            "acknowledged record {id} missing or cut"
        );
    }
    if exactly {
        assert_eq!(
            seen.len(),
            acked.len(),
            "records written that were never acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_and_recovers_without_a_restart() {
    let dir = TempDir::new("full");
    let certs = make_certs(dir.path());
    let fs = match Tmpfs::mount(&dir.join("fs"), "2m") {
        Ok(fs) => fs,
        Err(why) => return cannot_run(&format!("cannot mount a tmpfs (needs root): {why}")),
    };
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; 1536 << 10]).unwrap();
    let out = fs.0.join("out.ndjson");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap()])
        .start();
    let load = start_load(d.addr, &certs.ca_der, 4, false);

    // Fill up: refusals appear, and health says so.
    let mut health = Client::h2(d.addr, &certs.ca_der).await;
    for _ in 0..600 {
        if load.refused() > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(load.refused() > 20, "the filesystem never filled");
    let mut unhealthy = false;
    for _ in 0..50 {
        if health.request("GET", "/healthz", &[], "").await.status == 503 {
            unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(unhealthy, "healthz never said 503 while the disk was full");

    // Free the space: service resumes by itself. Room for far more than the load writes in
    // the checks below, so the disk does not fill again before health is asked.
    let before = load.acked();
    std::fs::remove_file(&filler).unwrap();
    fs.resize("256m");
    for _ in 0..200 {
        if load.acked() > before + 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(load.acked() > before + 50, "no recovery after space was freed");
    assert_eq!(health.request("GET", "/healthz", &[], "").await.status, 200);
    let (acked, _) = load.finish().await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_every_ack_once(&[out], &acked, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_keeps_every_acknowledged_record_once() {
    let s = serve_to_file("kill9", |s| s);
    let load = start_load(s.daemon.addr, &s.certs.ca_der, 8, true);
    while load.acked() < 400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.daemon.signal("KILL");
    let (acked, _) = load.finish().await;
    drop(s.daemon);

    // Restart on the same file: a partial tail (never acknowledged) is moved to .partial.
    let out = s.out;
    let d = Start::new(&s.certs)
        .args(["--output", out.to_str().unwrap()])
        .start();
    let mut c = Client::h1(d.addr, &s.certs.ca_der).await;
    assert_eq!(c.post(record(99_999_999, 10)).await.status, 200);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let mut acked = acked;
    acked.insert(99_999_999, 10);
    // Records in flight at the kill may be whole in the file without an answer: at least once
    // for those, exactly once for every acknowledged one.
    assert_every_ack_once(std::slice::from_ref(&out), &acked, false);
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    if partial.exists() {
        let text = std::fs::read_to_string(&partial).unwrap();
        assert!(text.ends_with('\n'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_move_and_sighup_under_load_loses_and_repeats_nothing() {
    let s = serve_to_file("rotate", |s| s);
    let load = start_load(s.daemon.addr, &s.certs.ca_der, 6, false);
    let mut files = Vec::new();
    for n in 1..=4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rotated = s.dir.join(&format!("out.ndjson.{n}"));
        std::fs::rename(&s.out, &rotated).unwrap();
        s.daemon.signal("HUP");
        files.push(rotated);
        // The next rotation waits for this reopen, as logrotate's postrotate does.
        assert!(s.daemon.wait_for_log("output reopened", Duration::from_secs(10)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acked, refused) = load.finish().await;
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(refused, 0);
    assert_eq!(stderr.matches("output reopened").count(), 4, "{stderr}");
    files.push(s.out);
    for f in &files[..4] {
        assert!(
            !written(std::slice::from_ref(f)).is_empty(),
            "{} got nothing",
            f.display()
        );
    }
    assert_every_ack_once(&files, &acked, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_serves_after_sighup_and_a_broken_one_does_not() {
    let dir = TempDir::new("swap");
    let a = TempDir::new("swap-a");
    let b = TempDir::new("swap-b");
    let certs_a = make_certs(a.path());
    let certs_b = make_certs(b.path());
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::copy(&certs_a.cert, &cert).unwrap();
    std::fs::copy(&certs_a.key, &key).unwrap();
    let d = Start::bare(dir.path())
        .args([
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .start();
    let trusts = |ca: &rustls::pki_types::CertificateDer<'static>| {
        let ca = ca.clone();
        let addr = d.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(tls_config(&ca, &[b"http/1.1"]))
                .connect(name, tcp)
                .await
                .is_ok()
        }
    };
    assert!(trusts(&certs_a.ca_der).await);
    assert!(!trusts(&certs_b.ca_der).await);

    std::fs::copy(&certs_b.cert, &cert).unwrap();
    std::fs::copy(&certs_b.key, &key).unwrap();
    d.signal("HUP");
    assert!(
        d.wait_for_log("certificate reloaded", Duration::from_secs(10)),
        "{}",
        d.stderr()
    );
    assert!(
        trusts(&certs_b.ca_der).await,
        "new handshakes see the new certificate"
    );
    assert!(!trusts(&certs_a.ca_der).await);

    // A broken replacement leaves the current one serving, and says why.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    d.signal("HUP");
    assert!(
        d.wait_for_log("certificate not reloaded", Duration::from_secs(10)),
        "{}",
        d.stderr()
    );
    assert!(d.stderr().contains("no certificate in it"));
    assert!(trusts(&certs_b.ca_der).await);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_whose_reader_is_gone_answers_503_and_exits_1() {
    let dir = TempDir::new("epipe");
    let certs = make_certs(dir.path());
    let mut start = Start::new(&certs);
    start.pipe_stdout = true;
    let mut d = start.start();
    let reader = d.child.stdout.take().unwrap();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(record(1, 10)).await.status, 200);
    drop(reader);
    let r = c.post(record(2, 10)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let code = tokio::task::spawn_blocking(move || {
        let code = wait_exit(&mut d.child, Duration::from_secs(30));
        (code, d)
    })
    .await
    .unwrap();
    assert_eq!(code.0, 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(code.1.stderr().contains("output gone"), "{}", code.1.stderr());
}
