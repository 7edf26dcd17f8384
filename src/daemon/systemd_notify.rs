//! systemd's notification protocol (`sd_notify(3)`), written out: one datagram per message to the
//! Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//!
//! It knows the messages — `READY=1`, `RELOADING=1` with `MONOTONIC_USEC=`, `STOPPING=1`,
//! `STATUS=`, `WATCHDOG=1` — and the watchdog interval (`$WATCHDOG_USEC`, for this process when
//! `$WATCHDOG_PID` says so). Without `$NOTIFY_SOCKET` every message is dropped silently. When to
//! say what is the daemon's business.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one message may wait for room in systemd's socket before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket name (without the leading `@`).
    Abstract(Vec<u8>),
}

/// Sends notifications to systemd, or nowhere when not run by it; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Target>,
    /// Set by a failed send, cleared by a good one: a socket that went away is reported once,
    /// not at every watchdog ping.
    failing: Arc<AtomicBool>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for.
    pub fn from_env() -> Notifier {
        Notifier::from_value(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// The notifier for a `NOTIFY_SOCKET` value: `/path`, or `@abstract`. Anything else (unset,
    /// empty, `vsock:`) means no notifications.
    pub fn from_value(value: Option<&OsStr>) -> Notifier {
        let target = value.and_then(|v| {
            let b = v.as_bytes();
            match b.first() {
                Some(b'/') => Some(Target::Path(PathBuf::from(v))),
                Some(b'@') if b.len() > 1 => Some(Target::Abstract(b[1..].to_vec())),
                _ => None,
            }
        });
        Notifier {
            target,
            failing: Arc::default(),
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `message` (newline-separated `KEY=value` lines). A failure is logged, not returned:
    /// the daemon serves whether or not systemd hears it.
    pub async fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let sent = async {
            let socket = connect(target)?;
            match tokio::time::timeout(SEND_TIMEOUT, socket.send(message.as_bytes())).await {
                Ok(result) => result.map(|_| ()),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "systemd's socket stayed full",
                )),
            }
        };
        let first = message.lines().next().unwrap_or_default();
        match sent.await {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("sd_notify {first}: systemd hears us again");
                }
            }
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!("sd_notify {first}: {e}");
            }
            Err(e) => tracing::debug!("sd_notify {first}: {e}"),
        }
    }

    /// `READY=1` and a status line: the listeners are bound and the daemon serves.
    pub async fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status))).await;
    }

    /// `RELOADING=1` with the monotonic clock, as `Type=notify-reload` wants it; send
    /// [`Notifier::ready`] when the reload is done.
    pub async fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ))
        .await;
    }

    /// `STOPPING=1`: the graceful stop has begun.
    pub async fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing requests in flight")
            .await;
    }

    /// `STATUS=`: what `systemctl status` shows.
    pub async fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status))).await;
    }

    /// `WATCHDOG=1`: the daemon is alive.
    pub async fn watchdog(&self) {
        self.send("WATCHDOG=1").await;
    }
}

fn connect(target: &Target) -> std::io::Result<tokio::net::UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    match target {
        Target::Path(path) => socket.connect(path)?,
        Target::Abstract(name) => socket.connect_addr(&SocketAddr::from_abstract_name(name)?)?,
    }
    socket.set_nonblocking(true)?;
    tokio::net::UnixDatagram::from_std(socket)
}

/// A status is one line; systemd would take a newline as the start of another assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] for given values: `usec` must be a positive number, and `pid`, when
/// set, this process's id.
pub fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid.filter(|p| !p.trim().is_empty()) {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock `MONOTONIC_USEC=` is read against.
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000 + (t.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names() {
        let n = |v: &str| Notifier::from_value(Some(OsStr::new(v))).target;
        assert_eq!(
            n("/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(n("@/org/x"), Some(Target::Abstract(b"/org/x".to_vec())));
        assert_eq!(n(""), None);
        assert_eq!(n("@"), None);
        assert_eq!(n("vsock:2:1234"), None);
        assert!(!Notifier::from_value(None).enabled());
    }

    #[test]
    fn watchdog_for_this_process_only() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(watchdog_interval_from(Some("1000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("1000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 2_000);
        assert!(a > 0);
    }

    #[tokio::test]
    async fn messages_arrive_as_datagrams() {
        let name = format!("mlal-notify-unit-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        listener.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::from_value(Some(OsStr::new(&format!("@{name}"))));
        n.ready("serving\non two lines").await;
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving on two lines");
    }
}
