//! One connection: who its peer is (the allowlist, and a listed load balancer's PROXY header),
//! the TLS handshake — the header and the handshake under one deadline — then the protocol ALPN
//! chose — HTTP/2
//! for `h2`, HTTP/1.1 for `http/1.1` or no ALPN, never a guess from the bytes — with the header
//! deadline and the idle timeout enforced by a watchdog.
//!
//! ALPN decides because the limits are per protocol: a client that negotiated `h2` and then
//! sends an HTTP/1 head is refused by the HTTP/2 server at its first wrong byte, and an HTTP/2
//! preface after `http/1.1` is not served as HTTP/2.
//!
//! hyper's own HTTP/1 header timer also runs while a keep-alive connection waits for its next
//! request, so it cannot tell "slow head" from "idle". This module tracks the phase itself: the
//! IO wrapper notices the first byte of a new request head, the service notices when a request
//! starts and ends, and the watchdog closes a connection whose head is late (header timeout) or
//! that has had no request for too long (idle timeout). An HTTP/2 connection has no heads: its
//! preface, read here before hyper sees the connection, must arrive within the header deadline,
//! and bytes that are not a preface get a GOAWAY.
//! The phase is a few atomics that requests set without waking anyone; the watchdog looks at
//! it on its own timer. Failures stay inside the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::correlate::canonical;
use crate::http::handle;
use crate::ingest::Ingest;
use crate::net::allow::Allowlist;
use crate::net::log_limit::{suppressed_note, LogLimiter};
use crate::net::proxy::{self, Source};
use crate::observe::stats::Stats;
use crate::settings::Limits;

/// What every connection shares.
pub(crate) struct Shared {
    /// Request handling.
    pub ingest: Arc<Ingest>,
    /// TLS.
    pub acceptor: TlsAcceptor,
    /// HTTP/1.1 and HTTP/2 settings.
    pub protocols: Protocols,
    /// Timeouts.
    pub limits: Limits,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Who may connect: checked against the TCP peer, or against the client a balancer's PROXY
    /// header names.
    pub allow: Allowlist,
    /// The load balancers whose connections begin with a PROXY header; `None`: no connection
    /// does, and no byte is peeked at.
    pub proxy_protocol: Option<Allowlist>,
    /// Turns true when the daemon stops: finish the request in progress, then close.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Whether `peer` is a listed load balancer, whose connections begin with a PROXY header.
    pub fn is_balancer(&self, peer: SocketAddr) -> bool {
        self.proxy_protocol
            .as_ref()
            .is_some_and(|balancers| balancers.allows(peer.ip()))
    }
}

/// Per-connection failures are logged at most this often (scanners, slowloris).
static TLS_FAILURE_LOG: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(60));
static HEADER_TIMEOUT_LOG: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(60));
static NOT_ALLOWED_LOG: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(60));
static PROXY_LOG: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(60));

/// Counts and logs (rate-limited) a peer refused by the allowlist; the caller closes it.
pub(crate) fn refuse_not_allowed(shared: &Shared, peer: SocketAddr) {
    Stats::add(&shared.stats.connections_refused_allowlist, 1);
    if let Some(n) = NOT_ALLOWED_LOG.check() {
        tracing::warn!(%peer, "closed: address not allowed{}", suppressed_note(n));
    }
}

/// Counts and logs (rate-limited) a connection refused for its PROXY header; `peer` is the TCP
/// peer. The caller closes it.
fn refuse_proxy(shared: &Shared, peer: SocketAddr, why: std::fmt::Arguments<'_>) {
    Stats::add(&shared.stats.connections_refused_proxy, 1);
    if let Some(n) = PROXY_LOG.check() {
        tracing::warn!(%peer, "closed: {why}{}", suppressed_note(n));
    }
}

fn log_handshake_timeout(shared: &Shared, peer: SocketAddr) {
    Stats::add(&shared.stats.tls_failures, 1);
    if let Some(n) = TLS_FAILURE_LOG.check() {
        tracing::info!(
            %peer,
            "TLS handshake not finished within {:?}{}",
            shared.limits.handshake_timeout,
            suppressed_note(n)
        );
    }
}

/// Who the connection's peer is for everything above it (the allowlist, correlation, `_peer`,
/// rejects, logs): the TCP peer, or the client a listed balancer's PROXY header names, mapped
/// from IPv4-mapped IPv6 as socket peers are. A balancer's health check (v2 `LOCAL`, v1
/// `UNKNOWN`) is the balancer itself, served whatever the allowlist says: it is trusted by being
/// listed. `None`: refused (counted and logged here), to be closed.
///
/// The accept loop has already checked the allowlist for a peer that is not a balancer. Such a
/// peer's first bytes are peeked at, when balancers are listed at all, so that it cannot name
/// its own address with a header; without the setting nothing is peeked.
async fn admit(
    shared: &Shared,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<SocketAddr> {
    let Some(balancers) = &shared.proxy_protocol else {
        return Some(peer);
    };
    if !balancers.allows(peer.ip()) {
        // Dropped at the deadline mid-wait, the peek may have reset the socket's readiness: the
        // connection is closed then, as any that misses the handshake deadline.
        return match tokio::time::timeout_at(deadline, proxy::starts_with_proxy_signature(tcp)).await {
            Ok(Ok(false)) => Some(peer),
            Ok(Ok(true)) => {
                refuse_proxy(
                    shared,
                    peer,
                    format_args!("a PROXY header from an address not in LOGGER_PROXY_PROTOCOL"),
                );
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "connection ended before the TLS handshake: {e}");
                None
            }
            Err(_) => {
                log_handshake_timeout(shared, peer);
                None
            }
        };
    }
    match tokio::time::timeout_at(deadline, proxy::read_header_tcp(tcp)).await {
        Ok(Ok(Source::Address(client))) => {
            let client = SocketAddr::new(canonical(client.ip()), client.port());
            if shared.allow.allows(client.ip()) {
                tracing::trace!(%peer, %client, "PROXY header");
                Some(client)
            } else {
                refuse_not_allowed(shared, client);
                None
            }
        }
        Ok(Ok(Source::Local | Source::Unknown)) => Some(peer),
        Ok(Err(e)) => {
            refuse_proxy(shared, peer, format_args!("from a listed load balancer: {e}"));
            None
        }
        Err(_) => {
            refuse_proxy(
                shared,
                peer,
                format_args!(
                    "from a listed load balancer: no whole PROXY header within {:?}",
                    shared.limits.handshake_timeout
                ),
            );
            None
        }
    }
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ALPN `http/1.1`, or no ALPN.
    Http1,
    /// ALPN `h2`.
    Http2,
}

impl Protocol {
    /// What ALPN chose (`None`: the client offered no ALPN).
    pub fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
        match alpn {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// The HTTP settings for every connection: limits on heads, streams and buffers.
#[derive(Clone)]
pub struct Protocols {
    /// HTTP/1.1.
    pub http1: http1::Builder,
    /// HTTP/2.
    pub http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    /// The daemon's settings (and the benchmark's ceiling server's).
    pub fn new() -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // The watchdog below enforces the header deadline; hyper's timer would also cut idle
            // keep-alive connections at the header timeout.
            .header_read_timeout(None)
            // The head's own limit (431): the read buffer's limit alone is not exact, since one
            // read can fill past it and the whole head then parses.
            .max_header_size(64 << 10)
            .max_buf_size(64 << 10)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .max_header_list_size(64 << 10)
            .max_pending_accept_reset_streams(50)
            .max_local_error_reset_streams(256);
        Protocols { http1, http2 }
    }
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols::new()
    }
}

/// Serves one accepted TCP connection to its end; `peer` is the TCP peer.
pub(crate) async fn serve(shared: Arc<Shared>, mut tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let limits = &shared.limits;
    // One deadline for the PROXY header and the TLS handshake together.
    let deadline = Instant::now() + limits.handshake_timeout;
    let Some(peer) = admit(&shared, &mut tcp, peer, deadline).await else {
        return;
    };
    let tls = match tokio::time::timeout_at(deadline, shared.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            Stats::add(&shared.stats.tls_failures, 1);
            if let Some(n) = TLS_FAILURE_LOG.check() {
                tracing::info!(%peer, "TLS handshake failed: {e}{}", suppressed_note(n));
            }
            return;
        }
        Err(_) => {
            log_handshake_timeout(&shared, peer);
            return;
        }
    };
    let mut tls = tls;
    let protocol = Protocol::from_alpn(tls.get_ref().1.alpn_protocol());
    if protocol == Protocol::Http2 {
        // The preface is read here, under the header deadline, so that bytes that are not one
        // get an HTTP/2 GOAWAY (hyper's HTTP/2 server just drops the connection).
        match tokio::time::timeout(limits.header_timeout, read_preface(&mut tls)).await {
            Ok(Ok(())) => {}
            Ok(Err(PrefaceError::Mismatch)) => {
                tracing::debug!(%peer, "closed: not an HTTP/2 connection preface after ALPN h2");
                refuse_preface(&mut tls).await;
                return;
            }
            Ok(Err(PrefaceError::Io(e))) => {
                tracing::debug!(%peer, "connection ended in the HTTP/2 preface: {e}");
                return;
            }
            Err(_) => {
                Stats::add(&shared.stats.timeouts, 1);
                if let Some(n) = HEADER_TIMEOUT_LOG.check() {
                    tracing::info!(
                        %peer,
                        "closed: HTTP/2 preface not received within {:?}{}",
                        limits.header_timeout,
                        suppressed_note(n)
                    );
                }
                return;
            }
        }
    }
    // With --client-ca, the handshake has verified this certificate; its subject is who sent.
    let client: Option<Arc<str>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| crate::certs::x509::summarize(cert))
        .map(|s| Arc::from(s.subject));
    if let Some(client) = &client {
        tracing::debug!(%peer, "client certificate {client}");
    }
    let state = Arc::new(Phase::new());
    let io = TokioIo::new(Tracked {
        inner: tls,
        state: state.clone(),
        // An HTTP/2 connection reads control frames at any time; only HTTP/1 has a "head".
        track_heads: protocol == Protocol::Http1,
        // The HTTP/2 preface, read above, is given to hyper again.
        replay: if protocol == Protocol::Http2 {
            PREFACE.len()
        } else {
            0
        },
    });
    let service = {
        let state = state.clone();
        let ingest = shared.ingest.clone();
        service_fn(move |req| {
            let guard = state.begin_request();
            let ingest = ingest.clone();
            let client = client.clone();
            // Boxed: hyper keeps a slot the size of this future for the whole life of the
            // connection, idle or not; boxed, the slot is a pointer and the few KiB of state
            // exist only while a request is handled.
            Box::pin(async move {
                let answer = handle(ingest, peer, client, req).await;
                drop(guard);
                answer
            })
        })
    };
    match protocol {
        Protocol::Http1 => {
            let conn = shared.protocols.http1.serve_connection(io, service);
            tokio::pin!(conn);
            watch(conn, |c| c.graceful_shutdown(), &shared, &state, peer).await;
        }
        Protocol::Http2 => {
            let conn = shared.protocols.http2.serve_connection(io, service);
            tokio::pin!(conn);
            watch(conn, |c| c.graceful_shutdown(), &shared, &state, peer).await;
        }
    }
}

/// Drives `conn` to its end, closing it gracefully when the daemon stops or the connection has
/// been idle too long, and at once when a head (or an HTTP/2 preface) is late.
async fn watch<C>(
    mut conn: Pin<&mut C>,
    mut graceful: impl FnMut(Pin<&mut C>),
    shared: &Shared,
    state: &Phase,
    peer: SocketAddr,
) where
    C: Future<Output = hyper::Result<()>>,
{
    let limits = &shared.limits;
    let mut shutdown = shared.shutdown.clone();
    let mut closing = *shutdown.borrow();
    if closing {
        graceful(conn.as_mut());
    }
    // One timer for the life of the connection, reset only when it fires: requests do not touch
    // it (see `Phase::next_wake`).
    let wake = tokio::time::sleep_until(state.next_wake(limits));
    tokio::pin!(wake);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                graceful(conn.as_mut());
            }
            _ = wake.as_mut() => {
                match state.expired(limits) {
                    Some(PhaseKind::Head) => {
                        Stats::add(&shared.stats.timeouts, 1);
                        if let Some(n) = HEADER_TIMEOUT_LOG.check() {
                            tracing::info!(
                                %peer,
                                "closed: request head not received within {:?}{}",
                                limits.header_timeout,
                                suppressed_note(n)
                            );
                        }
                        return;
                    }
                    Some(PhaseKind::Idle) if !closing => {
                        Stats::add(&shared.stats.timeouts, 1);
                        tracing::debug!(%peer, "closed: idle for {:?}", limits.idle_timeout);
                        closing = true;
                        graceful(conn.as_mut());
                        // One more period to close cleanly.
                        wake.as_mut().reset(Instant::now() + state.period(limits));
                        continue;
                    }
                    Some(PhaseKind::Idle) => {
                        // Already closing and still idle a period later: give up on it.
                        return;
                    }
                    _ => {}
                }
                wake.as_mut().reset(state.next_wake(limits));
            }
        }
    }
}

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why an HTTP/2 connection did not start.
enum PrefaceError {
    /// The bytes are not the preface.
    Mismatch,
    /// The connection failed or closed.
    Io(std::io::Error),
}

/// Reads the HTTP/2 preface, no byte more, refusing at the first byte that differs.
async fn read_preface<S: AsyncRead + Unpin>(io: &mut S) -> Result<(), PrefaceError> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; PREFACE.len()];
    let mut have = 0;
    while have < PREFACE.len() {
        let n = io.read(&mut buf[have..]).await.map_err(PrefaceError::Io)?;
        if n == 0 {
            return Err(PrefaceError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if buf[have..have + n] != PREFACE[have..have + n] {
            return Err(PrefaceError::Mismatch);
        }
        have += n;
    }
    Ok(())
}

/// Answers bytes that are not an HTTP/2 preface as RFC 9113 (section 3.4) asks: the server's
/// preface (an empty SETTINGS frame), then GOAWAY with PROTOCOL_ERROR, then a TLS close.
async fn refuse_preface<S: AsyncWrite + Unpin>(io: &mut S) {
    use tokio::io::AsyncWriteExt;
    const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    // Length 8, type GOAWAY, no flags, stream 0; last stream 0, error PROTOCOL_ERROR (1).
    const GOAWAY: [u8; 17] = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let write = async {
        io.write_all(&SETTINGS).await?;
        io.write_all(&GOAWAY).await?;
        io.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    /// No request in progress.
    Idle = 0,
    /// The first bytes of an HTTP/1 request head have arrived; the rest has not.
    Head = 1,
    /// At least one request is being handled.
    Busy = 2,
}

/// Shared between the IO wrapper, the service and the watchdog.
struct Phase {
    born: Instant,
    kind: AtomicU8,
    /// Milliseconds after `born` when the current phase began.
    since_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            born: Instant::now(),
            kind: AtomicU8::new(PhaseKind::Idle as u8),
            since_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn kind(&self) -> PhaseKind {
        match self.kind.load(Ordering::Acquire) {
            0 => PhaseKind::Idle,
            1 => PhaseKind::Head,
            _ => PhaseKind::Busy,
        }
    }

    fn on_bytes(&self) {
        if self.kind.load(Ordering::Relaxed) == PhaseKind::Idle as u8 {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            let _ = self.kind.compare_exchange(
                PhaseKind::Idle as u8,
                PhaseKind::Head as u8,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.kind.store(PhaseKind::Busy as u8, Ordering::Release);
        RequestGuard(self.clone())
    }

    fn deadline_of(&self, kind: PhaseKind, limits: &Limits) -> Option<Instant> {
        let since = self.born + std::time::Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match kind {
            PhaseKind::Idle => Some(since + limits.idle_timeout),
            PhaseKind::Head => Some(since + limits.header_timeout),
            PhaseKind::Busy => None,
        }
    }

    /// The watchdog's longest sleep: the shorter timeout.
    fn period(&self, limits: &Limits) -> std::time::Duration {
        limits.header_timeout.min(limits.idle_timeout)
    }

    /// When the watchdog should look next: the current phase's deadline, but never more than
    /// one period away. Phases change without waking it — that would cost every request a
    /// wake-up and a timer reset — and the only change that brings a deadline closer (a head
    /// starting during a long idle wait) starts a deadline at least one period long, which the
    /// next look still sees in time.
    fn next_wake(&self, limits: &Limits) -> Instant {
        let latest = Instant::now() + self.period(limits);
        self.deadline_of(self.kind(), limits)
            .map_or(latest, |deadline| deadline.min(latest))
    }

    fn expired(&self, limits: &Limits) -> Option<PhaseKind> {
        let kind = self.kind();
        let deadline = self.deadline_of(kind, limits)?;
        (Instant::now() >= deadline).then_some(kind)
    }
}

/// Ends a request's busy phase when the handler finishes or is dropped.
struct RequestGuard(Arc<Phase>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.since_ms.store(self.0.now_ms(), Ordering::Relaxed);
            self.0.kind.store(PhaseKind::Idle as u8, Ordering::Release);
        }
    }
}

/// The TLS stream, noticing the first bytes of each request head.
struct Tracked<S> {
    inner: S,
    state: Arc<Phase>,
    track_heads: bool,
    /// Bytes of [`PREFACE`] still to give to the reader before the stream's own.
    replay: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.replay > 0 {
            let from = PREFACE.len() - self.replay;
            let n = self.replay.min(buf.remaining());
            buf.put_slice(&PREFACE[from..from + n]);
            self.replay -= n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.track_heads && buf.filled().len() > before {
            self.state.on_bytes();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tests::limits;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn phases_and_their_deadlines() {
        let l = limits();
        let p = Arc::new(Phase::new());
        assert_eq!(p.kind(), PhaseKind::Idle);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(p.expired(&l), None);
        // A head starts: the header deadline runs from its first byte, not from idle.
        p.on_bytes();
        assert_eq!(p.kind(), PhaseKind::Head);
        tokio::time::advance(Duration::from_secs(9)).await;
        p.on_bytes();
        assert_eq!(p.expired(&l), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(p.expired(&l), Some(PhaseKind::Head));
        // A request in progress is never cut by these timers.
        let g = p.begin_request();
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(p.expired(&l), None);
        drop(g);
        assert_eq!(p.kind(), PhaseKind::Idle);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(p.expired(&l), Some(PhaseKind::Idle));
    }
}
