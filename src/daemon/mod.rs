//! The daemon's life: load the certificate, open the output, bind (or take the sockets systemd
//! passed), say so — on stderr and to systemd — serve until a stop signal, then drain and sync.
//!
//! Everything that can be wrong before listening is a [`StartError`] (exit 2, one line);
//! everything after is the server's and the writer's to handle. What runs beside the server:
//! [`duties`] (correlation sweeps, the periodic summary and `STATUS=`, the watchdog, the daily
//! certificate expiry check, the minute's seal), [`reload`] (`SIGHUP`), [`shutdown`] (stop
//! signals), [`sealing`] (when the output is sealed, LOGGER_SEAL); how systemd is told and what
//! it passes: [`systemd_notify`], [`activation`].

pub mod activation;
pub(crate) mod duties;
pub(crate) mod reload;
pub(crate) mod sealing;
pub(crate) mod shutdown;
pub(crate) mod systemd_notify;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::certs::generate::CertGenError;
use crate::correlate::Correlator;
use crate::http::admin::{self, AdminState};
use crate::ingest::Ingest;
use crate::net::listener::{self, SharedParts};
use crate::net::tls::{self, CertStore, LoadedCert, TlsError};
use crate::observe::metrics::Metrics;
use crate::observe::stats::Stats;
use crate::observe::timefmt::rfc3339_secs;
use crate::output::{OpenError, Output, Writer};
use crate::redact::{KeyError, KeyOrigin, RedactKey, Redactor};
use crate::rejects::Rejects;
use crate::settings::{OutputTarget, RedactSettings, Settings};
use activation::{ActivationError, Passed};
use reload::Reload;
use sealing::Sealing;
use systemd_notify::Notifier;

/// Why the daemon did not start; each prints as the one line the operator needs.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The embedded default certificate cannot be made.
    #[error("LOGGER_CERT_DIR: {0}")]
    CertGen(#[from] CertGenError),
    /// The output cannot be opened.
    #[error(transparent)]
    Output(#[from] OpenError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// What was asked for.
        addr: String,
        /// Why not.
        source: std::io::Error,
    },
    /// Signal handlers cannot be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The sockets systemd passed cannot be used.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// The sealing state cannot be used, or the output's `.seal` cannot be continued.
    #[error("LOGGER_SEAL: {0}")]
    Seal(#[from] crate::seal::SealError),
    /// The redaction key exists but cannot be read or is malformed, or cannot be made.
    #[error("LOGGER_REDACT_KEY={0}")]
    RedactKey(#[from] KeyError),
}

/// The runtime the daemon serves on (and the benchmark's ceiling server, so the two compare
/// like with like): tokio's multi-threaded scheduler with `worker_threads` workers
/// ([`crate::settings::default_worker_threads`] unless set).
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
}

/// How the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal: everything in flight finished and was synced (exit 0).
    Clean,
    /// The output can no longer be written (stdout's reader went away) (exit 1).
    OutputGone(String),
}

/// Runs the daemon until it is told to stop; returns after the output is drained and synced.
/// Serves on the sockets passed by socket activation ([`activation::take`]) when there are any,
/// instead of binding `LOGGER_IP`/`LOGGER_PORT` and `LOGGER_ADMIN_ADDR`.
pub async fn run_with(settings: Settings, passed: Option<Passed>) -> Result<Stopped, StartError> {
    let cert = reload::load_certificate(&settings.cert)?;
    duties::report_expiry(&cert);
    let (output, writer) = Output::open(&settings.output, settings.fsync)?;
    let stats = Arc::new(Stats::default());
    // Before anything is written: the start entry seals the file as it is now.
    let sealing = match (&settings.seal, &settings.output) {
        (Some(state), OutputTarget::File(path)) => {
            let every = settings.seal_interval;
            Some(Sealing::open(state, path, &output, stats.clone(), every)?)
        }
        _ => None,
    };
    let (rejects, rejects_writer) = match &settings.rejects {
        Some(path) => {
            let (out, w) =
                Output::open(&OutputTarget::File(path.clone()), settings.fsync).map_err(|mut e| {
                    e.setting = "LOGGER_REJECTS";
                    e
                })?;
            (Some(Rejects::new(out)), Some(w))
        }
        None => (None, None),
    };
    let activated = passed.is_some();
    let (listeners, admin_listener) = match passed {
        Some(passed) => adopt(passed, &settings)?,
        None => bind(&settings)?,
    };
    let stop_signal = crate::daemon::shutdown::on_stop_signal().map_err(StartError::Signals)?;
    let hangups = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let store = CertStore::new(cert.clone());
    let client_ca = match &settings.client_ca {
        Some(path) => Some((tls::load_client_ca(path)?, path.as_path())),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca)?;
    // Last of the start's checks: a start that fails for another reason makes no key.
    let redactor = load_redactor(&settings.redact)?;
    start_line(&settings, &addrs, admin_addr, activated, &cert);

    duties::set_expiry_metric(&stats, &cert);
    let notifier = Notifier::from_env();
    let ingest = Arc::new(Ingest {
        output: output.clone(),
        rejects: rejects.clone(),
        correlator: Correlator::new(settings.correlate.clone(), stats.clone()),
        strict: settings.strict,
        annotate: settings.annotate,
        redactor,
        max_body: settings.limits.max_body,
        body_timeout: settings.limits.body_timeout,
        budget: crate::ingest::budget::Budget::new(crate::ingest::budget::BODY_BUDGET),
        stats: stats.clone(),
    });

    let admin_task = admin_listener.map(|listener| {
        let state = Arc::new(AdminState {
            metrics: Metrics::new(stats.clone(), output.clone()),
            output: output.clone(),
        });
        tokio::spawn(admin::serve(listener, state))
    });

    let duties = duties::start(&ingest, &stats, &notifier, &store, sealing.as_ref());
    let reloader = reload::start(
        hangups,
        Reload {
            source: settings.cert.clone(),
            store: store.clone(),
            output: output.clone(),
            rejects: rejects.clone(),
            stats: stats.clone(),
            notifier: notifier.clone(),
            sealing: sealing.clone(),
        },
    );
    // The listeners are bound (or were passed) and the handlers are installed: serving starts now.
    notifier.ready(&duties::status_line(&stats, &output)).await;

    let mut fatal = output.fatal();
    let mut why = Stopped::Clean;
    let stop = async {
        tokio::select! {
            _ = stop_signal => {}
            reason = fatal.wait_for(|f| f.is_some()) => {
                let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_default();
                tracing::error!("output: {reason}; stopping");
                why = Stopped::OutputGone(reason);
            }
        }
        notifier.stopping().await;
    };
    let parts = SharedParts {
        ingest,
        tls: tls_config,
        limits: settings.limits.clone(),
        stats: stats.clone(),
        allow: settings.allow.clone(),
        proxy_protocol: settings.proxy_protocol.clone(),
    };
    listener::run(listeners, parts, stop).await;
    duties.abort();
    reloader.abort();
    if let Some(task) = admin_task {
        task.abort();
    }
    finish(writer).await;
    if let Some(sealing) = sealing {
        // Everything is written and synced: the stop entry covers it all.
        let _ = tokio::task::spawn_blocking(move || sealing.stop()).await;
    }
    if let Some(w) = rejects_writer {
        finish(w).await;
    }
    tracing::info!("stopped: {}", stats.summary());
    Ok(why)
}

/// The redactor `LOGGER_REDACT` asks for, under the installation's key: read, or made at the
/// first start (its directory too, mode 0700, as the embedded certificate's). `None` when off:
/// then no key is read or made.
fn load_redactor(settings: &RedactSettings) -> Result<Option<Arc<Redactor>>, StartError> {
    if settings.names.is_empty() {
        return Ok(None);
    }
    let path = &settings.key;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        // A failure shows as the key's own: it cannot be made.
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    }
    let (key, origin) = RedactKey::load_or_create(path)?;
    if origin == KeyOrigin::Created {
        tracing::info!(
            "created the redaction key {}; keep it with the log: marks made under another key never match these",
            path.display()
        );
    }
    Ok(Some(Arc::new(Redactor::new(&key, &settings.names))))
}

async fn finish(writer: Writer) {
    let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
}

/// Binds the TLS listener(s), and the admin listener when `LOGGER_ADMIN_ADDR` asks for one.
fn bind(settings: &Settings) -> Result<(Vec<TcpListener>, Option<TcpListener>), StartError> {
    let listeners = listener::bind(settings.ip, settings.port).map_err(|source| StartError::Bind {
        addr: match settings.ip {
            Some(ip) => SocketAddr::new(ip, settings.port).to_string(),
            None => format!("port {} (every address)", settings.port),
        },
        source,
    })?;
    let admin = match settings.admin_addr {
        Some(addr) => Some(listener::bind_one(addr).map_err(|source| StartError::Bind {
            addr: format!("{addr} (LOGGER_ADMIN_ADDR)"),
            source,
        })?),
        None => None,
    };
    Ok((listeners, admin))
}

/// Serves on the sockets systemd passed; nothing is bound.
fn adopt(passed: Passed, settings: &Settings) -> Result<(Vec<TcpListener>, Option<TcpListener>), StartError> {
    let tokio_listener = |l: std::net::TcpListener| {
        let addr = l
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "a passed socket".into());
        l.set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
            .map_err(|source| StartError::Bind { addr, source })
    };
    let tls = passed
        .tls
        .into_iter()
        .map(tokio_listener)
        .collect::<Result<Vec<_>, _>>()?;
    let admin = passed.admin.map(tokio_listener).transpose()?;
    if admin.is_none() {
        if let Some(addr) = settings.admin_addr {
            tracing::warn!(
                "LOGGER_ADMIN_ADDR={addr} not bound: with socket activation only passed sockets are served; pass one named \"admin\" (FileDescriptorName=admin)"
            );
        }
    }
    Ok((tls, admin))
}

fn start_line(
    settings: &Settings,
    addrs: &[SocketAddr],
    admin: Option<SocketAddr>,
    activated: bool,
    cert: &LoadedCert,
) {
    let mut listening: Vec<String> = addrs.iter().map(|a| format!("https://{a}/log")).collect();
    if activated {
        listening.push("(sockets passed by systemd)".into());
    }
    if let Some(admin) = admin {
        listening.push(format!("admin {}", admin::describe(admin)));
    }
    let certificate = format!(
        "{} (expires {})",
        cert.summary.subject,
        rfc3339_secs(cert.summary.not_after)
    );
    let clients = match &settings.client_ca {
        Some(ca) => format!("client certificates from {}", ca.display()),
        None => "no client certificates".to_string(),
    };
    let balancers = match &settings.proxy_protocol {
        Some(list) => format!("PROXY headers from {list}"),
        None => "no PROXY headers".to_string(),
    };
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let redaction = match settings.redact.names.as_slice() {
        [] => "redaction off".to_string(),
        names => format!(
            "redacting {} (key {})",
            names.join(", "),
            settings.redact.key.display()
        ),
    };
    tracing::info!(
        "ml_api_logger {} listening on {}; certificate {}; output {}; {}, fsync {}; {}; allowed: {}; {}; {}; {} worker thread{}",
        env!("CARGO_PKG_VERSION"),
        listening.join(" "),
        certificate,
        match &settings.seal {
            Some(_) => format!("{} (sealed)", settings.output),
            None => settings.output.to_string(),
        },
        if settings.strict { "strict" } else { "lenient" },
        if settings.fsync { "on" } else { "off" },
        redaction,
        settings.allow,
        balancers,
        clients,
        workers,
        if workers == 1 { "" } else { "s" },
    );
}
