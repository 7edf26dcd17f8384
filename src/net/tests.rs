//! In-process tests of the listener, a connection's deadlines and the HTTP handling: the real
//! server on port 0 with a real TLS client, on tokio's paused clock, so the timeouts are
//! checked to the second without waiting for them (mini-redis style). Signals, exit codes and
//! files are the integration tests' (`tests/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::certs::generate::{self, CertRequest};
use crate::correlate::{CorrelateConfig, Correlator};
use crate::ingest::budget::{Budget, BODY_BUDGET};
use crate::ingest::Ingest;
use crate::net::allow::Allowlist;
use crate::net::listener::{self, SharedParts};
use crate::net::tls::{self, CertStore};
use crate::observe::stats::Stats;
use crate::output::{Output, Writer};
use crate::settings::{Limits, OutputTarget};

/// A server on 127.0.0.1:0, writing to a file, until `stop` is sent.
struct Server {
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    output: PathBuf,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<usize>,
    _writer: Writer,
    dir: PathBuf,
}

impl Server {
    async fn start(tag: &str, limits: Limits) -> Server {
        let dir = std::env::temp_dir().join(format!("mlal-net-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made = generate::generate(&CertRequest {
            hosts: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            days: 90,
        })
        .unwrap();
        generate::write_files(&dir, &made, true).unwrap();
        let cert = tls::load(&dir.join("server.crt"), Some(&dir.join("server.key"))).unwrap();
        use rustls::pki_types::pem::PemObject;
        let ca = CertificateDer::from_pem_file(dir.join("serverca.crt")).unwrap();
        let output = dir.join("out.ndjson");
        let (out, writer): (Output, Writer) =
            Output::open(&OutputTarget::File(output.clone()), false).unwrap();
        let stats = Arc::new(Stats::default());
        let ingest = Arc::new(Ingest {
            output: out,
            rejects: None,
            redactor: None,
            correlator: Correlator::new(CorrelateConfig::default(), stats.clone()),
            strict: false,
            annotate: false,
            max_body: limits.max_body,
            body_timeout: limits.body_timeout,
            budget: Budget::new(BODY_BUDGET),
            stats: stats.clone(),
        });
        let tcp = listener::bind_one("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = tcp.local_addr().unwrap();
        let parts = SharedParts {
            ingest,
            tls: tls::server_config(CertStore::new(cert), None).unwrap(),
            limits,
            stats: stats.clone(),
            allow: Allowlist::default(),
            proxy_protocol: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(listener::run(vec![tcp], parts, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            ca,
            output,
            stats,
            stop: Some(stop),
            done,
            _writer: writer,
            dir,
        }
    }

    async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Stops the server; returns the connections still open when it gave up waiting.
    async fn stop(mut self) -> usize {
        let _ = self.stop.take().map(|s| s.send(()));
        let open = self.done.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        open
    }
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) -> (Vec<u8>, Instant) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return (all, Instant::now()),
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// A 10 s header deadline and a 60 s idle timeout, the defaults, spelled out for the tests.
pub(super) fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_is_closed_at_the_header_deadline_and_an_idle_connection_at_the_idle_timeout() {
    let server = Server::start("deadlines", limits()).await;
    // A head that starts and never finishes: closed 10 s after its first byte.
    let mut slow = server.tls(b"http/1.1").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let started = Instant::now();
    slow.write_all(b"POST /log HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (sent, closed) = until_closed(&mut slow).await;
    let took = closed - started;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "{took:?}"
    );
    // A connection with no request at all: the idle timeout, not the header deadline.
    let started = Instant::now();
    let mut idle = server.tls(b"http/1.1").await;
    let (_, closed) = until_closed(&mut idle).await;
    let took = closed - started;
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(62),
        "{took:?}"
    );
    assert_eq!(Stats::get(&server.stats.timeouts), 2);
    assert_eq!(server.stop().await, 0);
}

#[tokio::test(start_paused = true)]
async fn an_http2_preface_late_or_wrong_is_refused_and_a_request_is_served() {
    let server = Server::start("h2", limits()).await;
    // Half a preface, then silence: closed at the header deadline.
    let mut half = server.tls(b"h2").await;
    let started = Instant::now();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_, closed) = until_closed(&mut half).await;
    let took = closed - started;
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "{took:?}"
    );
    // Not a preface: SETTINGS and GOAWAY(PROTOCOL_ERROR) at once, then the close.
    let mut wrong = server.tls(b"h2").await;
    let started = Instant::now();
    wrong.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (sent, closed) = until_closed(&mut wrong).await;
    assert!(closed - started < Duration::from_secs(1));
    assert_eq!(&sent[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    assert_eq!(&sent[9..], &[0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    // A real HTTP/2 client is served, the preface given back to hyper whole.
    let tls = server.tls(b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = r#"{"sequence":1,"response_status_code":200}"#;
    let req = http::Request::post("https://localhost/log")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    assert_eq!(
        std::fs::read_to_string(&server.output).unwrap(),
        format!("{body}\n")
    );
    drop(sender);
    server.stop().await;
}
