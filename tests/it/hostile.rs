//! Hostile peers: slow heads, slow bodies, endless bodies, a decompression bomb, thousands of idle
//! connections, old TLS versions. During each attack a well-behaved client keeps getting its
//! records written, and the daemon's resident memory stays under the bound the README states.
//! The heaviest are `#[ignore]`d for the everyday run; `.ci/run` runs them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// The README's bound on resident memory under these attacks.
const RSS_BOUND_MIB: u64 = 128;

/// A sensor that keeps posting while the attack runs; every answer must be a prompt 200.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Duration)>,
}

impl Probe {
    fn start(addr: std::net::SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let ca = ca.clone();
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut c = Client::h1(addr, &ca).await;
            let (mut n, mut worst) = (0u64, Duration::ZERO);
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let body = response(n).body(serde_json::json!({"probe": true}));
                let r = tokio::time::timeout(Duration::from_secs(5), c.post(body))
                    .await
                    .expect("the well-behaved client was not answered within 5 s");
                assert_eq!(r.status, 200, "{}", r.body);
                worst = worst.max(t.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (n, worst)
        });
        Probe { stop, task }
    }

    async fn finish(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Checks the probe and memory after an attack, and reports both.
async fn judge(name: &str, s: Served, probe: Probe) {
    let (n, worst) = probe.finish().await;
    let rss = peak_rss_mib(s.daemon.child.id());
    eprintln!("{name}: probe {n} records, slowest answer {worst:?}, daemon peak RSS {rss} MiB");
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(n >= 10, "{name}: the probe got only {n} records through");
    assert!(
        rss < RSS_BOUND_MIB,
        "{name}: peak RSS {rss} MiB over {RSS_BOUND_MIB} MiB"
    );
    let probes = read_ndjson(&s.out)
        .iter()
        .filter(|l| l["response_body"]["probe"] == true)
        .count() as u64;
    assert_eq!(probes, n, "{name}: every probe record written");
}

async fn tls(
    addr: std::net::SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect(addr, ca, &[b"http/1.1"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_and_slow_bodies() {
    let s = serve_to_file("hostile-slow", |s| {
        s.args(["--header-timeout", "2s", "--body-timeout", "2s"])
    });
    let probe = Probe::start(s.daemon.addr, &s.certs.ca_der);
    let mut attackers = Vec::new();
    for i in 0..200 {
        let (addr, ca) = (s.daemon.addr, s.certs.ca_der.clone());
        attackers.push(tokio::spawn(async move {
            let mut conn = tls(addr, &ca).await;
            let head: &[u8] = if i % 2 == 0 {
                // A head that never ends, one byte at a time.
                b"POST /log HTTP/1.1\r\nhost: localhost\r\nx-slow: "
            } else {
                // A whole head, then a body that never comes.
                b"POST /log HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n{"
            };
            let _ = conn.write_all(head).await;
            let started = Instant::now();
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    r = conn.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return Some(started.elapsed()) },
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if started.elapsed() > Duration::from_secs(15) { return None }
                        let _ = conn.write_all(b"a").await;
                    }
                }
            }
        }));
    }
    for a in attackers {
        assert!(a.await.unwrap().is_some(), "an attacker outlived the timeouts");
    }
    judge("slowloris", s, probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_bodies_and_a_ten_gib_gzip_bomb() {
    use std::io::Write;
    let s = serve_to_file("hostile-bomb", |s| s);
    let probe = Probe::start(s.daemon.addr, &s.certs.ca_der);

    // 10 GiB of zeros: 10,240 gzip members of 1 MiB each (about 1 KiB apiece), gzipped again.
    let member = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 1 << 20]).unwrap();
        e.finish().unwrap()
    };
    let mut outer = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..10_240 {
        outer.write_all(&member).unwrap();
    }
    let bomb = outer.finish().unwrap();
    eprintln!("bomb: {} bytes on the wire, 10 GiB decoded", bomb.len());
    assert!(bomb.len() < 64 << 10);

    let mut bombs = Vec::new();
    for _ in 0..4 {
        let (addr, ca, bomb) = (s.daemon.addr, s.certs.ca_der.clone(), bomb.clone());
        bombs.push(tokio::spawn(async move {
            let mut c = Client::h1(addr, &ca).await;
            c.request("POST", "/log", &[("content-encoding", "gzip, gzip")], bomb)
                .await
                .status
        }));
    }
    // Endless chunked bodies: cut at the body limit, whether or not the 413 reaches the sender
    // before the connection closes under its writes.
    let mut endless = Vec::new();
    for _ in 0..8 {
        let (addr, ca) = (s.daemon.addr, s.certs.ca_der.clone());
        endless.push(tokio::spawn(async move {
            let mut conn = tls(addr, &ca).await;
            conn.write_all(b"POST /log HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
            let mut sent = 0usize;
            while sent < 64 << 20 {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 0x10000;
            }
            assert!(sent < 64 << 20, "the server read an endless body past its limit");
            let mut reply = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut reply)).await;
            assert!(closed.is_ok(), "the connection stayed open after the body limit");
        }));
    }
    for b in bombs {
        let status = b.await.unwrap();
        // 413 past the limit, or 503 when the body budget is spent by the other bombs.
        assert!(matches!(status, 413 | 503), "{status}");
    }
    for e in endless {
        e.await.unwrap();
    }
    judge("bombs", s, probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tls_versions_are_refused() {
    if !tools_present(&["openssl"]) {
        return;
    }
    let dir = TempDir::new("hostile-oldtls");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start();
    for version in ["-tls1", "-tls1_1"] {
        let out = std::process::Command::new("openssl")
            .args(["s_client", version, "-cipher", "DEFAULT:@SECLEVEL=0", "-connect"])
            .arg(d.addr.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Cipher is (NONE)"), "{version}: {text}");
        assert!(!text.contains("BEGIN CERTIFICATE"), "{version}: {text}");
    }
    // The refusals were the daemon's, in answer to real ClientHellos.
    assert!(d.wait_for_log(
        "TLS handshake failed: peer is incompatible",
        Duration::from_secs(5)
    ));
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: 5,000 TLS connections; .ci/run runs it"]
async fn five_thousand_idle_tls_connections() {
    let s = serve_to_file("hostile-idle", |s| s.args(["--max-connections", "6000"]));
    let probe = Probe::start(s.daemon.addr, &s.certs.ca_der);
    let mut idle = Vec::with_capacity(5000);
    let config = tls_config(&s.certs.ca_der, &[b"http/1.1"]);
    for chunk in 0..50 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let config = config.clone();
            let addr = s.daemon.addr;
            batch.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .unwrap()
            }));
        }
        for b in batch {
            idle.push(b.await.unwrap());
        }
        assert_eq!(idle.len(), (chunk + 1) * 100);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = peak_rss_mib(s.daemon.child.id());
    eprintln!("5,000 idle TLS connections: daemon peak RSS {rss_idle} MiB");
    judge("idle", s, probe).await;
    drop(idle);
}
