//! `sd_notify`, read from a real Unix datagram socket given as `NOTIFY_SOCKET` (a path, and an
//! abstract name): READY=1 once the listener accepts, RELOADING=1 with MONOTONIC_USEC around a
//! real SIGHUP and READY=1 after it, STOPPING=1 at SIGTERM, WATCHDOG=1 at half of WATCHDOG_USEC
//! (and none when WATCHDOG_PID names another process).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

/// Every datagram the socket receives, as text, in order.
fn collect(socket: UnixDatagram) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

/// CLOCK_MONOTONIC in microseconds, the clock of `MONOTONIC_USEC`.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// The next message that is not a watchdog ping, within `limit`; counts the pings on the way.
fn next_state(rx: &mpsc::Receiver<String>, pings: &mut usize, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = rx.recv_timeout(left).expect("a notification in time");
        if m == "WATCHDOG=1" {
            *pings += 1;
        } else {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reloading_stopping_and_the_watchdog() {
    let dir = TempDir::new("notify");
    let certs = make_certs(dir.path());
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let rx = collect(socket);
    let d = Start::new(&certs)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .env("WATCHDOG_USEC", "200000")
        .start();
    let mut pings = 0;

    let ready = next_state(&rx, &mut pings, Duration::from_secs(10));
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready:?}");
    assert!(ready.contains("0 records written"), "{ready:?}");
    assert!(!ready.trim_start_matches("READY=1\n").contains('\n'));
    // READY means serving.
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(response(1)).await.status, 200);

    // Pings every 100 ms (half of WATCHDOG_USEC).
    std::thread::sleep(Duration::from_millis(1000));
    let deadline = Instant::now() + Duration::from_millis(100);
    while let Ok(m) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        assert_eq!(m, "WATCHDOG=1");
        pings += 1;
    }
    assert!((6..=14).contains(&pings), "{pings} pings in about 1.1 s");

    // SIGHUP: RELOADING with the monotonic clock, then READY again.
    let before = monotonic_usec();
    d.signal("HUP");
    let reloading = next_state(&rx, &mut pings, Duration::from_secs(10));
    let after = monotonic_usec();
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading:?}");
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!((before..=after).contains(&usec), "{before} <= {usec} <= {after}");
    let ready = next_state(&rx, &mut pings, Duration::from_secs(10));
    assert!(
        ready.starts_with("READY=1\nSTATUS=1 records written"),
        "{ready:?}"
    );

    // SIGTERM: STOPPING first.
    let mut d = d;
    d.signal("TERM");
    let stopping = next_state(&rx, &mut pings, Duration::from_secs(10));
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert_eq!(wait_exit(&mut d.child, Duration::from_secs(30)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abstract_socket_and_a_watchdog_for_another_process() {
    let dir = TempDir::new("notify-abstract");
    let certs = make_certs(dir.path());
    let name = format!("mlal-notify-it-{}", std::process::id());
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let rx = collect(socket);
    let d = Start::new(&certs)
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", "1")
        .start();
    let ready = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    // The watchdog is for process 1, not this one: no pings, nothing else until asked.
    assert!(rx.recv_timeout(Duration::from_millis(600)).is_err());
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    assert!(rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .starts_with("STOPPING=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_nobody_reads_never_stops_the_daemon() {
    let dir = TempDir::new("notify-gone");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .env("NOTIFY_SOCKET", dir.join("nobody.sock").to_str().unwrap())
        .env("WATCHDOG_USEC", "100000")
        .start();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(response(1)).await.status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    // Said once, not at every ping.
    assert_eq!(stderr.matches("sd_notify").count(), 1, "{stderr}");
    assert!(stderr.contains("sd_notify READY=1: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_is_refreshed() {
    let dir = TempDir::new("notify-status");
    let certs = make_certs(dir.path());
    let path = dir.join("notify.sock");
    let rx = collect(UnixDatagram::bind(&path).unwrap());
    let d = Start::new(&certs)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start();
    let mut pings = 0;
    assert!(next_state(&rx, &mut pings, Duration::from_secs(10)).starts_with("READY=1\n"));
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    for seq in 1..=3 {
        assert_eq!(c.post(response(seq)).await.status, 200);
    }
    // Every 10 s, without being asked.
    let status = next_state(&rx, &mut pings, Duration::from_secs(15));
    assert_eq!(status, "STATUS=3 records written, 1 connections open, output ok");
    drop(c);
    d.stop();
}
