//! The admin listener (`LOGGER_ADMIN_ADDR`): plain HTTP/1.1 for `GET /metrics` and
//! `GET /healthz`, for Prometheus and load balancers, apart from the TLS listener.
//!
//! It has its own small connection cap and its own deadlines, so a slow or hostile client here
//! costs at most a few tasks and never reaches the records' listener. It serves what
//! [`crate::observe::metrics`] renders and what the output says of its health; it counts nothing itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::http::answer::{self, Answer};
use crate::observe::metrics::{self, Metrics};
use crate::output::Output;

/// Connections served at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 32;
/// Deadline for a request head, and for the next one on a kept-alive connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head.
const MAX_HEAD: usize = 16 << 10;

/// What the admin endpoints read.
pub struct AdminState {
    /// The `/metrics` registry.
    pub metrics: Metrics,
    /// Whose health `/healthz` reports.
    pub output: Output,
}

/// Serves until the task is dropped or aborted. A failure on one connection never stops it.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("admin: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin: closed: connection limit reached");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(tcp), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, "admin: connection ended: {e}"),
                Err(_) => tracing::debug!(%peer, "admin: closed after {CONNECTION_LIFETIME:?}"),
            }
            drop(slot);
        });
    }
}

/// The address an admin listener is bound to, for the start line.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}

fn route<B>(state: &AdminState, req: &Request<B>) -> Answer {
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/metrics" if readable => {
            answer::with_body(StatusCode::OK, metrics::CONTENT_TYPE, state.metrics.render())
        }
        "/healthz" if readable => answer::health(&state.output),
        "/metrics" | "/healthz" => answer::method_not_allowed("GET, HEAD"),
        _ => answer::json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found; try GET /metrics or GET /healthz"}"#,
        ),
    }
}
