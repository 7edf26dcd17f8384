//! The daemon's life: load the certificate, open the output, bind, say so, serve until a stop
//! signal, then drain and sync.
//!
//! Everything that can be wrong before listening is a [`StartError`] (exit 2, one line);
//! everything after is the server's and the writer's to handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::certgen::{self, CertGenError};
use crate::correlate::Correlator;
use crate::http::App;
use crate::output::{OpenError, Output, Writer};
use crate::rejects::Rejects;
use crate::server::{self, SharedParts};
use crate::settings::{CertSource, OutputTarget, Settings};
use crate::stats::Stats;
use crate::timefmt::rfc3339_secs;
use crate::tls::{self, CertStore, LoadedCert, TlsError};

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
}

/// Loads the configured certificate, or makes/reuses the embedded default.
pub fn load_certificate(source: &CertSource) -> Result<LoadedCert, StartError> {
    match source {
        CertSource::Files { cert, key } => Ok(tls::load(cert, key.as_deref())?),
        CertSource::Embedded(dir) => {
            let d = certgen::ensure_default(dir)?;
            if d.created {
                tracing::warn!(
                    "no LOGGER_CERT set: created a local CA and a server certificate in {}; upload {} to the sensor",
                    dir.display(),
                    d.bundle.display()
                );
            } else {
                tracing::warn!(
                    "no LOGGER_CERT set: using the embedded default certificate {}; the sensor must trust {}",
                    d.cert.display(),
                    d.bundle.display()
                );
            }
            Ok(tls::load(&d.cert, Some(&d.key))?)
        }
    }
}

/// How the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal: everything in flight finished and was synced (exit 0).
    Clean,
    /// The output can no longer be written (stdout's reader went away) (exit 1).
    OutputGone(String),
}

/// Runs the daemon until it is told to stop. Returns after the output is drained and synced.
pub async fn run(settings: Settings) -> Result<Stopped, StartError> {
    let cert = load_certificate(&settings.cert)?;
    report_expiry(&cert);
    let (output, writer) = Output::open(&settings.output, settings.fsync)?;
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
    let listeners = server::bind(settings.ip, settings.port).map_err(|source| StartError::Bind {
        addr: match settings.ip {
            Some(ip) => SocketAddr::new(ip, settings.port).to_string(),
            None => format!("port {} (every address)", settings.port),
        },
        source,
    })?;
    let stop_signal = crate::shutdown::on_stop_signal().map_err(StartError::Signals)?;
    let mut hangups = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let store = CertStore::new(cert.clone());
    let client_ca = match &settings.client_ca {
        Some(path) => Some((tls::load_client_ca(path)?, path.as_path())),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca)?;
    start_line(&settings, &addrs, &cert);

    let stats = Arc::new(Stats::default());
    let app = Arc::new(App {
        output: output.clone(),
        rejects: rejects.clone(),
        correlator: Correlator::new(settings.correlate.clone(), stats.clone()),
        strict: settings.strict,
        annotate: settings.annotate,
        max_body: settings.limits.max_body,
        body_timeout: settings.limits.body_timeout,
        budget: crate::budget::Budget::new(crate::budget::BODY_BUDGET),
        stats: stats.clone(),
    });

    // Background duties: age out correlation state, say what happened now and then, and reload
    // on SIGHUP.
    let housekeeping = {
        let app = app.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(Duration::from_secs(1));
            let mut last_report = Instant::now();
            let mut last_written = 0;
            loop {
                sweep.tick().await;
                app.correlator.sweep();
                if last_report.elapsed() >= REPORT_EVERY {
                    let written = Stats::get(&stats.records_written);
                    if written != last_written {
                        tracing::info!("{}", stats.summary());
                        last_written = written;
                    }
                    last_report = Instant::now();
                }
            }
        })
    };
    let reloader = {
        let output = output.clone();
        let rejects = rejects.clone();
        let source = settings.cert.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                reload(&source, &store, &output, rejects.as_ref()).await;
            }
        })
    };

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
    };
    let parts = SharedParts {
        app,
        tls: tls_config,
        limits: settings.limits.clone(),
        stats: stats.clone(),
        allow: settings.allow.clone(),
    };
    server::run(listeners, parts, stop).await;
    housekeeping.abort();
    reloader.abort();
    finish(writer).await;
    if let Some(w) = rejects_writer {
        finish(w).await;
    }
    tracing::info!("stopped: {}", stats.summary());
    Ok(why)
}

async fn finish(writer: Writer) {
    let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
}

/// How often the periodic summary is logged (when anything was written since the last one).
const REPORT_EVERY: Duration = Duration::from_secs(300);

/// SIGHUP: reopen the output files and reload the certificate; a certificate that does not
/// load leaves the old one serving.
async fn reload(source: &CertSource, store: &CertStore, output: &Output, rejects: Option<&Rejects>) {
    tracing::info!("SIGHUP: reopening the output and reloading the certificate");
    if let Err(e) = output.reopen().await {
        tracing::error!("output not reopened: {e}");
    }
    if let Some(r) = rejects {
        if let Err(e) = r.output().reopen().await {
            tracing::error!("rejects file not reopened: {e}");
        }
    }
    let loaded = match source {
        CertSource::Files { cert, key } => tls::load(cert, key.as_deref()).map_err(|e| e.to_string()),
        CertSource::Embedded(dir) => certgen::ensure_default(dir)
            .map_err(|e| e.to_string())
            .and_then(|d| tls::load(&d.cert, Some(&d.key)).map_err(|e| e.to_string())),
    };
    match loaded {
        Ok(cert) => {
            report_expiry(&cert);
            let subject = cert
                .summary
                .as_ref()
                .map(|s| s.subject.clone())
                .unwrap_or_default();
            store.replace(cert);
            tracing::info!("certificate reloaded: {subject}");
        }
        Err(e) => tracing::error!("certificate not reloaded, the old one still serves: {e}"),
    }
}

fn start_line(settings: &Settings, addrs: &[SocketAddr], cert: &LoadedCert) {
    let listening: Vec<String> = addrs.iter().map(|a| format!("https://{a}/log")).collect();
    let certificate = match &cert.summary {
        Some(s) => format!("{} (expires {})", s.subject, rfc3339_secs(s.not_after)),
        None => format!("{} (subject unreadable)", cert.cert_path.display()),
    };
    let clients = match &settings.client_ca {
        Some(ca) => format!("client certificates from {}", ca.display()),
        None => "no client certificates".to_string(),
    };
    tracing::info!(
        "ml_api_logger {} listening on {}; certificate {}; output {}; {}, fsync {}; allowed: {}; {}",
        env!("CARGO_PKG_VERSION"),
        listening.join(" "),
        certificate,
        settings.output,
        if settings.strict { "strict" } else { "lenient" },
        if settings.fsync { "on" } else { "off" },
        settings.allow,
        clients,
    );
}

/// Warns when the certificate expires within 30 days; an error when it has expired.
pub fn report_expiry(cert: &LoadedCert) {
    let Some(summary) = &cert.summary else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let left = summary.not_after - now;
    if left <= 0 {
        tracing::error!(
            "certificate {} expired at {}; sensors will refuse it",
            cert.cert_path.display(),
            rfc3339_secs(summary.not_after)
        );
    } else if left < 30 * 86_400 {
        tracing::warn!(
            "certificate {} expires in {} days, at {}",
            cert.cert_path.display(),
            left / 86_400,
            rfc3339_secs(summary.not_after)
        );
    }
}
