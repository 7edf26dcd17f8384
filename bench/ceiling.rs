//! The benchmark's ceiling: the least a server can do with this transport.
//!
//! A hyper 1 + tokio-rustls server with the daemon's own TLS configuration (`tls::server_config`:
//! ring, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`), its own HTTP settings
//! (`connection::Protocols`, chosen by ALPN), its socket options (`listener::bind_one`, `TCP_NODELAY`) and its
//! runtime (`daemon::runtime`, with the daemon's default worker threads, or `LOGGER_WORKER_THREADS`
//! as the daemon reads it). It reads every request body to its end and answers `200` with
//! `{"accepted":1}`, writing nothing. Whatever the daemon does beyond this — checking, correlating,
//! writing, its timeouts and limits — is what the benchmark's ratios against it measure.
//!
//! `ceiling CERT KEY IP:PORT`; stops on SIGTERM or Ctrl-C. Built with
//! `cargo build --release --example ceiling`; bench/run.sh runs it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::signal::unix::{signal, SignalKind};

use ml_api_logger::net::connection::{self, Protocol};
use ml_api_logger::net::{listener, tls};
use ml_api_logger::{daemon, settings};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, key, addr] = args.as_slice() else {
        eprintln!("usage: ceiling CERT KEY IP:PORT");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {addr:?}: not an IP:PORT ({e})");
            return ExitCode::from(2);
        }
    };
    let config = match tls::load(Path::new(cert), Some(Path::new(key)))
        .and_then(|loaded| tls::server_config(tls::CertStore::new(loaded), None))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // As the daemon reads it, so the two keep the same runtime.
    let workers = match std::env::var("LOGGER_WORKER_THREADS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => settings::default_worker_threads(),
        Some(v) => match settings::parse_worker_threads(&v) {
            Some(n) => n,
            None => {
                eprintln!(
                    "error: LOGGER_WORKER_THREADS={v:?}: {}",
                    settings::NOT_A_THREAD_COUNT
                );
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match daemon::runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(addr, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(addr: SocketAddr, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let listener = listener::bind_one(addr)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let protocols = Arc::new(connection::Protocols::new());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    eprintln!("ceiling: listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let protocols = protocols.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let io = TokioIo::new(tls);
            // The protocol ALPN chose, as the daemon does.
            let _ = match Protocol::from_alpn(io.inner().get_ref().1.alpn_protocol()) {
                Protocol::Http1 => protocols.http1.serve_connection(io, service_fn(answer)).await,
                Protocol::Http2 => protocols.http2.serve_connection(io, service_fn(answer)).await,
            };
        });
    }
}

/// Reads the whole body and answers as the daemon does for one record.
async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let ok = req.into_body().collect().await.is_ok();
    let (status, body) = if ok {
        (200, &br#"{"accepted":1}"#[..])
    } else {
        (400, &br#"{"error":"cannot read the body"}"#[..])
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
