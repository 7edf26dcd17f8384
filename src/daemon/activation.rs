//! Socket activation (`sd_listen_fds(3)`): listening sockets that systemd (or any launcher
//! speaking the protocol) passes as file descriptors 3, 4, … with `LISTEN_FDS=N` and
//! `LISTEN_PID` set to this process.
//!
//! The socket named `admin` in `LISTEN_FDNAMES` serves `/metrics` and `/healthz`; every other
//! one serves records over TLS. Passed sockets replace binding: the daemon binds nothing itself
//! then. Turning a descriptor number into a listener is the `listenfd` crate's job (it checks
//! that each one is a TCP socket); this module checks that it listens and sorts them by name.

use std::net::TcpListener;

/// Sockets that cannot be used; the daemon does not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS={0:?}: not a count of file descriptors")]
    BadCount(String),
    /// A passed descriptor is not a listening TCP socket.
    #[error("socket activation: fd {fd} ({name}): {reason}")]
    NotListener {
        /// The descriptor number.
        fd: usize,
        /// Its name in `LISTEN_FDNAMES`, or `unnamed`.
        name: String,
        /// What it is instead.
        reason: String,
    },
    /// Only an admin socket was passed.
    #[error("socket activation: no socket for records was passed, only one named \"admin\"")]
    NoTls,
}

/// The listening sockets passed to this process.
#[derive(Debug)]
pub struct Passed {
    /// The sockets for records (TLS).
    pub(crate) tls: Vec<TcpListener>,
    /// The socket named `admin`, for `/metrics` and `/healthz`.
    pub(crate) admin: Option<TcpListener>,
}

/// The first passed descriptor, by the protocol.
const FIRST_FD: usize = 3;

/// Takes the sockets passed to this process, if any.
///
/// Call it before any other thread starts: the `listenfd` crate removes `LISTEN_FDS` and
/// `LISTEN_PID` from the environment, as `sd_listen_fds(1)` does, so that no child inherits them.
pub fn take() -> Result<Option<Passed>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    // Sockets meant for another process (a parent that did not clear the variables) are not ours.
    if pid.as_deref().map(str::trim) != Some(&std::process::id().to_string()) {
        return Ok(None);
    }
    let Some(count) = count else { return Ok(None) };
    let n: usize = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(count.clone()))?;
    if n == 0 {
        return Ok(None);
    }
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut passed = Passed {
        tls: Vec::new(),
        admin: None,
    };
    for i in 0..n {
        let name = names
            .get(i)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| "unnamed".into());
        let not_listener = |reason: String| ActivationError::NotListener {
            fd: FIRST_FD + i,
            name: name.clone(),
            reason,
        };
        let listener = match fds.take_tcp_listener(i) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(not_listener("not passed".into())),
            Err(e) => return Err(not_listener(e.to_string())),
        };
        match socket2::SockRef::from(&listener).is_listener() {
            Ok(true) => {}
            Ok(false) => return Err(not_listener("a TCP socket that is not listening".into())),
            Err(e) => return Err(not_listener(e.to_string())),
        }
        if name == "admin" && passed.admin.is_none() {
            passed.admin = Some(listener);
        } else {
            passed.tls.push(listener);
        }
    }
    if passed.tls.is_empty() {
        return Err(ActivationError::NoTls);
    }
    Ok(Some(passed))
}
