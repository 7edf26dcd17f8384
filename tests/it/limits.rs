//! Limits on peers, each driven by a real socket: the header deadline, the idle timeout, the
//! handshake timeout, the connection cap, and bytes that are not TLS. While each holds, a
//! well-behaved client is still served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Reads until the peer closes; returns how long that took (None if still open at `limit`).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_at_the_header_deadline() {
    let dir = TempDir::new("lim-head");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .args(["--header-timeout", "1s", "--idle-timeout", "60s"])
        .start();
    let mut slow = tls_connect(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    slow.write_all(b"POST /log HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    // One header byte every 200 ms: an idle timer between bytes would never fire.
    let trickle = async {
        let started = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                read = slow.read(&mut buf) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return Some(started.elapsed());
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if started.elapsed() > Duration::from_secs(15) {
                        return None;
                    }
                    let _ = slow.write_all(b"x").await;
                }
            }
        }
    };
    let served = async {
        let mut good = Client::h1(d.addr, &certs.ca_der).await;
        assert_eq!(good.post(REQUEST_FIXTURE).await.status, 200);
    };
    let (closed_after, ()) = tokio::join!(trickle, served);
    assert!(closed_after.is_some(), "a trickling head was never cut");
    let (_, stderr) = d.stop();
    assert!(stderr.contains("request head not received within 1s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_outlives_the_header_deadline_but_not_the_idle_timeout() {
    let dir = TempDir::new("lim-idle");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .args(["--header-timeout", "500ms", "--idle-timeout", "2s"])
        .start();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
    // Idle for longer than the header deadline: still the same connection.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
    // Idle past the idle timeout: closed by the server.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(c.try_request("POST", "/log", &[], REQUEST_FIXTURE).await.is_err());

    // A raw TLS connection that never sends a request is closed at the idle timeout too.
    let mut quiet = tls_connect(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    assert!(closed_within(&mut quiet, Duration::from_secs(10)).await.is_some());
    let (code, _) = d.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_stall_or_are_not_tls_are_closed() {
    let dir = TempDir::new("lim-tls");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).args(["--handshake-timeout", "1s"]).start();

    // Connects and says nothing.
    let mut silent = TcpStream::connect(d.addr).await.unwrap();
    // Random bytes instead of a ClientHello.
    let mut garbage = TcpStream::connect(d.addr).await.unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&noise).await.unwrap();
    // Plain HTTP on the TLS port.
    let mut plain = TcpStream::connect(d.addr).await.unwrap();
    plain
        .write_all(b"POST /log HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();

    for s in [&mut silent, &mut garbage, &mut plain] {
        assert!(closed_within(s, Duration::from_secs(10)).await.is_some());
    }
    let mut good = Client::h2(d.addr, &certs.ca_der).await;
    assert_eq!(good.post(REQUEST_FIXTURE).await.status, 200);
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("TLS handshake not finished within 1s"),
        "{stderr}"
    );
    assert!(stderr.contains("TLS handshake failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_briefly_then_are_closed() {
    let dir = TempDir::new("lim-cap");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).args(["--max-connections", "2"]).start();
    let mut a = Client::h1(d.addr, &certs.ca_der).await;
    let mut b = Client::h2(d.addr, &certs.ca_der).await;
    assert_eq!(a.post(REQUEST_FIXTURE).await.status, 200);
    assert_eq!(b.post(REQUEST_FIXTURE).await.status, 200);

    // The third gets no handshake and is closed after the wait.
    let mut third = TcpStream::connect(d.addr).await.unwrap();
    let waited = closed_within(&mut third, Duration::from_secs(10)).await;
    assert!(waited.is_some(), "the third connection was not closed");

    // The established ones are unaffected.
    assert_eq!(a.post(REQUEST_FIXTURE).await.status, 200);
    assert_eq!(b.post(REQUEST_FIXTURE).await.status, 200);

    // A slot that frees up during the wait is taken by the waiting connection.
    let pending = tokio::spawn({
        let addr = d.addr;
        let ca = certs.ca_der.clone();
        async move {
            let mut c = Client::h1(addr, &ca).await;
            c.post(REQUEST_FIXTURE).await.status
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(a);
    assert_eq!(pending.await.unwrap(), 200);
    let (_, stderr) = d.stop();
    assert!(stderr.contains("connection limit reached"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_with_431() {
    let dir = TempDir::new("lim-431");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start();
    let mut s = tls_connect(d.addr, &certs.ca_der, &[b"http/1.1"]).await;
    let head = format!(
        "POST /log HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(100 << 10)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let mut good = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(good.post(REQUEST_FIXTURE).await.status, 200);
}
