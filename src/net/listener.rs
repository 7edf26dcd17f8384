//! The listeners: binding, the accept loops with the connection cap, and the graceful stop.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind port 0 and stop
//! the server when they like. A failure on one connection never stops an accept loop.
//!
//! The accept loop reads nothing: a peer that is not on the allowlist is closed here, unless it
//! is a listed load balancer, whose client is known only once its PROXY header has been read —
//! in the connection's task ([`connection::serve`]), so a slow header never holds up accepting.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::net::allow::Allowlist;
use crate::net::connection::{self, Shared};
use crate::net::log_limit::{suppressed_note, LogLimiter};
use crate::observe::stats::Stats;

/// How long a connection beyond the cap waits for a slot before it is closed.
const CAP_WAIT: Duration = Duration::from_secs(1);

/// Binds `ip:port`, or every address (IPv4 and IPv6) when `ip` is `None`.
pub(crate) fn bind(ip: Option<IpAddr>, port: u16) -> io::Result<Vec<TcpListener>> {
    if let Some(ip) = ip {
        return Ok(vec![bind_one(SocketAddr::new(ip, port))?]);
    }
    let v4 = bind_one(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
    let port = v4.local_addr()?.port();
    match bind_one(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
        Ok(v6) => Ok(vec![v4, v6]),
        // A machine without IPv6 still serves IPv4.
        Err(e) if matches!(e.raw_os_error(), Some(97) | Some(99)) => {
            tracing::info!("IPv6 unavailable ({e}); listening on IPv4 only");
            Ok(vec![v4])
        }
        Err(e) => Err(e),
    }
}

/// Binds one address (address reuse on, IPv6 sockets IPv6-only), listening with a backlog of 1024.
pub fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves on `listeners` until `stop` resolves, then lets in-flight requests finish within the
/// shutdown timeout. Returns the number of connections still open when it gave up waiting.
pub(crate) async fn run(
    listeners: Vec<TcpListener>,
    shared_parts: SharedParts,
    stop: impl Future<Output = ()>,
) -> usize {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let max = shared_parts.limits.max_connections;
    let grace = shared_parts.limits.shutdown_timeout;
    let stats = shared_parts.stats.clone();
    let shared = Arc::new(Shared {
        ingest: shared_parts.ingest,
        acceptor: tokio_rustls::TlsAcceptor::from(shared_parts.tls),
        protocols: connection::Protocols::new(),
        limits: shared_parts.limits,
        stats: shared_parts.stats,
        allow: shared_parts.allow,
        proxy_protocol: shared_parts.proxy_protocol,
        shutdown: shutdown_rx.clone(),
    });
    let slots = Arc::new(Semaphore::new(max));
    // Connections waiting for a slot are bounded too.
    let waiting = Arc::new(Semaphore::new(max));
    let mut loops = Vec::new();
    for listener in listeners {
        loops.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            slots.clone(),
            waiting.clone(),
            shutdown_rx.clone(),
        )));
    }
    stop.await;
    let _ = shutdown_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    // Every connection holds a slot; all slots back means all connections are done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(grace, slots.acquire_many(all)).await.is_ok();
    if drained {
        return 0;
    }
    let open = Stats::get(&stats.connections_open) as usize;
    tracing::warn!("{open} connection(s) still open after the {grace:?} grace period; closing them");
    open
}

/// What [`run`] needs to build the shared connection state.
pub(crate) struct SharedParts {
    /// Request handling.
    pub ingest: Arc<crate::ingest::Ingest>,
    /// TLS configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// Limits.
    pub limits: crate::settings::Limits,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Who may connect.
    pub allow: Allowlist,
    /// The load balancers that send a PROXY header (`None`: none).
    pub proxy_protocol: Option<Allowlist>,
}

/// Refusals are logged at most this often; scanners must not flood the log.
static CAP_LOG: LogLimiter = LogLimiter::new(10, Duration::from_secs(60));

fn log_cap_refusal(peer: SocketAddr) {
    if let Some(n) = CAP_LOG.check() {
        tracing::warn!(%peer, "closed: connection limit reached{}", suppressed_note(n));
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        Stats::add(&shared.stats.connections_total, 1);
        if !shared.is_balancer(peer) && !shared.allow.allows(peer.ip()) {
            // Closed before the handshake: a refused peer learns nothing, costs nothing.
            drop(tcp);
            connection::refuse_not_allowed(&shared, peer);
            continue;
        }
        let slot = slots.clone().try_acquire_owned().ok();
        let shared = shared.clone();
        match slot {
            Some(slot) => {
                tokio::spawn(async move {
                    Stats::add(&shared.stats.connections_open, 1);
                    connection::serve(shared.clone(), tcp, peer).await;
                    shared
                        .stats
                        .connections_open
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    drop(slot);
                });
            }
            None => {
                let Ok(wait_ticket) = waiting.clone().try_acquire_owned() else {
                    Stats::add(&shared.stats.connections_refused_cap, 1);
                    log_cap_refusal(peer);
                    continue;
                };
                let slots = slots.clone();
                tokio::spawn(async move {
                    let slot = tokio::time::timeout(CAP_WAIT, slots.acquire_owned()).await;
                    drop(wait_ticket);
                    match slot {
                        Ok(Ok(slot)) => {
                            Stats::add(&shared.stats.connections_open, 1);
                            connection::serve(shared.clone(), tcp, peer).await;
                            shared
                                .stats
                                .connections_open
                                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            drop(slot);
                        }
                        _ => {
                            Stats::add(&shared.stats.connections_refused_cap, 1);
                            log_cap_refusal(peer);
                        }
                    }
                });
            }
        }
    }
}
