//! What the daemon serves, and to whom, tried as an attacker or an outside test suite would:
//! a certificate file that is not one, ALPN against the bytes that follow it, copies of one
//! record racing each other, refusals a client must be able to read, TLS closed cleanly, and
//! the key exchange groups offered.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// PEM armour around bytes that are not a certificate.
const GARBAGE_CERT: &str =
    "-----BEGIN CERTIFICATE-----\naGVsbG8sIHRoaXMgaXMgbm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n";

/// The DER of the certificate the daemon serves to a new handshake.
async fn served_certificate(addr: std::net::SocketAddr, ca: &CertificateDer<'static>) -> Vec<u8> {
    let tls = tls_connect(addr, ca, &[b"http/1.1"]).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn a_pem_wrapped_non_certificate_is_refused_at_start() {
    let dir = TempDir::new("garbage-cert");
    let certs = make_certs(dir.path());
    let garbage = dir.join("garbage.crt");
    std::fs::write(&garbage, GARBAGE_CERT).unwrap();
    // With a good key beside it, and with the key in the same file.
    let bundle = dir.join("bundle.pem");
    let key = std::fs::read_to_string(&certs.key).unwrap();
    std::fs::write(&bundle, format!("{key}{GARBAGE_CERT}")).unwrap();
    for (cert, key) in [(&garbage, Some(&certs.key)), (&bundle, None)] {
        let mut cmd = command();
        cmd.args(["--ip", "127.0.0.1", "--port", "0"])
            .env("LOGGER_CERT", cert);
        if let Some(key) = key {
            cmd.env("LOGGER_KEY", key);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "error: LOGGER_CERT={}: the certificate is not an X.509 certificate",
                cert.display()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pem_wrapped_non_certificate_put_in_place_leaves_the_old_one_serving() {
    let dir = TempDir::new("garbage-hup");
    let certs = make_certs(dir.path());
    let cert = dir.join("live.crt");
    std::fs::copy(&certs.cert, &cert).unwrap();
    // Served from a copy, so that it can be replaced.
    let d = Start::bare(dir.path())
        .args([
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--cert",
            cert.to_str().unwrap(),
        ])
        .args(["--key", certs.key.to_str().unwrap()])
        .start();
    let before = served_certificate(d.addr, &certs.ca_der).await;
    std::fs::write(&cert, GARBAGE_CERT).unwrap();
    d.signal("HUP");
    assert!(
        d.wait_for_log("certificate not reloaded", Duration::from_secs(10)),
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains("the certificate is not an X.509 certificate"),
        "{}",
        d.stderr()
    );
    assert!(!d.stderr().contains("certificate reloaded"), "{}", d.stderr());
    assert_eq!(served_certificate(d.addr, &certs.ca_der).await, before);
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

/// A raw TLS connection offering `alpn`, for bytes no HTTP client would send.
async fn raw_tls(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    tls_connect(addr, ca, alpn).await
}

/// Everything the server sends until it closes (or `limit` passes), and how long that took.
async fn read_until_closed(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, tls.read(&mut buf)).await {
            Err(_) => return (all, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (all, Some(started.elapsed())),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The HTTP/2 frame types in `bytes` (9-byte frame headers, in order).
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_then_a_slow_http1_head_is_closed_long_before_the_idle_timeout() {
    let dir = TempDir::new("alpn-slow");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .env("LOGGER_HEADER_TIMEOUT", "2s")
        .env("LOGGER_IDLE_TIMEOUT", "60s")
        .start();
    let mut tls = raw_tls(d.addr, &certs.ca_der, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let head = b"POST /log HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
    let trickle = async {
        for b in head {
            if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tls
    };
    // The head never completes as HTTP/1 on an h2 connection: the server ends it.
    let mut tls = tokio::time::timeout(Duration::from_secs(30), trickle)
        .await
        .unwrap();
    let (bytes, closed) = read_until_closed(&mut tls, Duration::from_secs(15)).await;
    assert!(
        closed.is_some(),
        "still open: the idle timeout, not the protocol, would end it"
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains("HTTP/1.1"),
        "answered in HTTP/1.1 after ALPN h2: {bytes:?}"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_then_silence_is_closed_at_the_header_deadline() {
    let dir = TempDir::new("alpn-silent");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .env("LOGGER_HEADER_TIMEOUT", "2s")
        .env("LOGGER_IDLE_TIMEOUT", "60s")
        .start();
    let mut tls = raw_tls(d.addr, &certs.ca_der, &[b"h2"]).await;
    // Half a preface, then nothing.
    tls.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let (_, closed) = read_until_closed(&mut tls, Duration::from_secs(20)).await;
    assert!(
        closed.is_some(),
        "an h2 preface that never completes must not hold the connection"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_preface_after_alpn_h2_gets_a_goaway_not_clear_text() {
    let dir = TempDir::new("alpn-preface");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start();
    let mut tls = raw_tls(d.addr, &certs.ca_der, &[b"h2"]).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let (bytes, closed) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(closed.is_some());
    assert!(!String::from_utf8_lossy(&bytes).contains("HTTP/1.1"), "{bytes:?}");
    const GOAWAY: u8 = 0x7;
    assert!(
        h2_frame_types(&bytes).contains(&GOAWAY),
        "no GOAWAY in {:?}",
        h2_frame_types(&bytes)
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_http11_then_the_h2_preface_is_not_served_as_http2() {
    let dir = TempDir::new("alpn-h1");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start();
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut tls = raw_tls(d.addr, &certs.ca_der, alpn).await;
        // The client preface and an empty SETTINGS frame.
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let (bytes, _) = read_until_closed(&mut tls, Duration::from_secs(10)).await;
        const SETTINGS: u8 = 0x4;
        assert!(
            bytes.is_empty() || bytes.starts_with(b"HTTP/1.1 "),
            "ALPN {alpn:?}: not an HTTP/1.1 answer: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_ne!(h2_frame_types(&bytes).first(), Some(&SETTINGS));
    }
    drop(d);
}

/// A record of about 300 bytes with this sequence.
fn record(sequence: u64) -> Record {
    request(sequence)
        .method("POST")
        .body(serde_json::json!({ "pad": "x".repeat(200) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_of_a_record_released_at_once_are_written_exactly_once_even_when_writes_fail() {
    let dir = TempDir::new("race");
    let certs = make_certs(dir.path());
    let fs = match Tmpfs::mount(&dir.join("fs"), "1m") {
        Ok(fs) => fs,
        Err(why) => return cannot_run(&format!("cannot mount a tmpfs (needs root): {why}")),
    };
    let out = fs.0.join("out.ndjson");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap()])
        .start();
    const COPIES: usize = 8;
    const ROUNDS: u64 = 300;
    let mut clients = Vec::new();
    for _ in 0..COPIES {
        clients.push(Client::h1(d.addr, &certs.ca_der).await);
    }
    let clients: Vec<_> = clients
        .into_iter()
        .map(|c| Arc::new(tokio::sync::Mutex::new(c)))
        .collect();
    let mut acked: HashMap<u64, usize> = HashMap::new();
    let mut refused = 0usize;
    for round in 0..ROUNDS {
        // A third of the way in, fill the disk so some first copies fail; free it later.
        if round == ROUNDS / 3 {
            let _ = std::fs::write(fs.0.join("filler"), vec![0u8; 1 << 20]);
        }
        if round == 2 * ROUNDS / 3 {
            std::fs::remove_file(fs.0.join("filler")).unwrap();
            fs.resize("64m");
        }
        let body = record(round).to_string();
        let barrier = Arc::new(tokio::sync::Barrier::new(COPIES));
        let mut tasks = Vec::new();
        for c in &clients {
            let (c, body, barrier) = (c.clone(), body.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = c.lock().await;
                barrier.wait().await;
                c.try_request("POST", "/log", &[], body).await.map(|r| r.status)
            }));
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(200) => *acked.entry(round).or_default() += 1,
                Ok(503) => refused += 1,
                other => panic!("round {round}: {other:?}"),
            }
        }
    }
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let mut written: HashMap<u64, usize> = HashMap::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *written.entry(v["sequence"].as_u64().unwrap()).or_default() += 1;
    }
    for (sequence, n) in &written {
        assert_eq!(*n, 1, "sequence {sequence} written {n} times");
    }
    for sequence in acked.keys() {
        assert!(
            written.contains_key(sequence),
            "sequence {sequence} acknowledged, not written"
        );
    }
    assert_eq!(written.len(), acked.len(), "written but never acknowledged");
    assert!(
        refused > 0,
        "the disk never filled: the failing case was not tried"
    );
    assert!(acked.len() as u64 > ROUNDS / 2);
}

/// curl's exit code, status line and body for one request.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\nstatus=%{http_code} http=%{http_version}",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn curl_over_http2_reads_every_refusal_sent_before_the_body() {
    if !tools_present(&["curl"]) {
        return;
    }
    let dir = TempDir::new("curl-refusals");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).env("LOGGER_MAX_BODY", "1KiB").start();
    let base = format!("https://localhost:{}", d.addr.port());
    let ca = certs.ca.to_str().unwrap();
    let resolve = format!("localhost:{}:127.0.0.1", d.addr.port());
    let big = dir.join("big.json");
    std::fs::write(&big, format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000))).unwrap();
    let big_arg = format!("@{}", big.display());
    let nope = format!("{base}/nope");
    let log = format!("{base}/log");
    let cases: [(&[&str], &str, &str); 5] = [
        (&["-d", "{}", &nope], "status=404", "not found"),
        (&["--data-binary", &big_arg, &nope], "status=404", "not found"),
        (
            &["-X", "GET", "-d", "{}", &log],
            "status=405",
            "method not allowed",
        ),
        (&["--data-binary", &big_arg, &log], "status=413", "limit"),
        (
            &["-H", "Content-Encoding: br", "-d", "{}", &log],
            "status=415",
            "br",
        ),
    ];
    for (http, version) in [("--http2", "http=2"), ("--http1.1", "http=1.1")] {
        for (args, status, text) in &cases {
            let mut all = vec!["--cacert", ca, "--resolve", &resolve, http];
            all.extend_from_slice(args);
            let (code, out) = curl(&all);
            assert_eq!(code, 0, "{http} {args:?}: {out}");
            assert!(
                out.contains(status) && out.contains(version),
                "{http} {args:?}: {out}"
            );
            assert!(out.contains(text), "{http} {args:?}: {out}");
        }
    }
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_ends_with_close_notify() {
    let dir = TempDir::new("close-notify");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).env("LOGGER_IDLE_TIMEOUT", "1s").start();
    // HTTP/1.1, `Connection: close`: the server closes after the answer.
    let mut tls = raw_tls(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    // rustls reports a close without close_notify as an UnexpectedEof error.
    tls.read_to_end(&mut all).await.expect("a clean TLS close");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    // HTTP/1.1, closed by the idle timeout.
    let mut tls = raw_tls(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut all))
        .await
        .expect("closed by the idle timeout")
        .expect("a clean TLS close after the idle timeout");
    // HTTP/2 with a real client, closed by the idle timeout: GOAWAY, then close_notify (the
    // client's connection ends without error only after a clean TLS close).
    let tls = raw_tls(d.addr, &certs.ca_der, &[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("https://localhost/healthz")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("closed by the idle timeout")
        .unwrap();
    ended.expect("the HTTP/2 connection ends cleanly: GOAWAY and close_notify");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_quantum_hybrid_is_offered_and_preferred() {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    use rustls::NamedGroup;
    let dir = TempDir::new("kx");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start();
    let connect = |groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>| {
        let ca = certs.ca_der.clone();
        let addr = d.addr;
        async move {
            let mut provider = default_provider();
            provider.kx_groups = groups;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let tls = TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            tls.get_ref().1.negotiated_key_exchange_group().map(|g| g.name())
        }
    };
    // As Go 1.24+ and current browsers offer: the hybrid first (with its share), X25519 after.
    assert_eq!(
        connect(vec![kx_group::X25519MLKEM768, kx_group::X25519]).await,
        Some(NamedGroup::X25519MLKEM768)
    );
    for (group, name) in [
        (kx_group::X25519, NamedGroup::X25519),
        (kx_group::SECP256R1, NamedGroup::secp256r1),
        (kx_group::SECP384R1, NamedGroup::secp384r1),
    ] {
        assert_eq!(connect(vec![group]).await, Some(name));
    }
    drop(d);
}
