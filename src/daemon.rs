//! The daemon's life: load the certificate, open the output, bind (or take the sockets systemd
//! passed), say so — on stderr and to systemd — serve until a stop signal, then drain and sync.
//!
//! Everything that can be wrong before listening is a [`StartError`] (exit 2, one line);
//! everything after is the server's and the writer's to handle. Background duties live here
//! too: correlation sweeps, the periodic summary and `STATUS=`, the watchdog, the daily
//! certificate expiry check, and `SIGHUP` (reopen and reload, between `RELOADING=1` and
//! `READY=1`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::activation::{ActivationError, Passed};
use crate::admin::{self, AdminState};
use crate::certgen::{self, CertGenError};
use crate::correlate::Correlator;
use crate::http::App;
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
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
    /// The sockets systemd passed cannot be used.
    #[error(transparent)]
    Activation(#[from] ActivationError),
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
    run_with(settings, None).await
}

/// [`run`], serving on sockets passed by socket activation ([`crate::activation::take`]) when
/// there are any, instead of binding `LOGGER_IP`/`LOGGER_PORT` and `LOGGER_ADMIN_ADDR`.
pub async fn run_with(settings: Settings, passed: Option<Passed>) -> Result<Stopped, StartError> {
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
    let activated = passed.is_some();
    let (listeners, admin_listener) = match passed {
        Some(passed) => adopt(passed, &settings)?,
        None => bind(&settings)?,
    };
    let stop_signal = crate::shutdown::on_stop_signal().map_err(StartError::Signals)?;
    let mut hangups = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let store = CertStore::new(cert.clone());
    let client_ca = match &settings.client_ca {
        Some(path) => Some((tls::load_client_ca(path)?, path.as_path())),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca)?;
    start_line(&settings, &addrs, admin_addr, activated, &cert);

    let stats = Arc::new(Stats::default());
    set_expiry_metric(&stats, &cert);
    let notifier = Notifier::from_env();
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

    let admin_task = admin_listener.map(|listener| {
        let state = Arc::new(AdminState {
            metrics: Metrics::new(stats.clone(), output.clone()),
            output: output.clone(),
        });
        tokio::spawn(admin::serve(listener, state))
    });

    // Background duties: age out correlation state, say what happened now and then (in the log
    // and to systemd), check the certificate's expiry daily, and reload on SIGHUP.
    let housekeeping = {
        let app = app.clone();
        let stats = stats.clone();
        let notifier = notifier.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(Duration::from_secs(1));
            let mut report = Every::new(REPORT_EVERY);
            let mut status = Every::new(STATUS_EVERY);
            let mut expiry_check = Every::new(EXPIRY_CHECK_EVERY);
            let mut last_written = 0;
            loop {
                sweep.tick().await;
                app.correlator.sweep();
                if report.due() {
                    let written = Stats::get(&stats.records_written);
                    if written != last_written {
                        tracing::info!("{}", stats.summary());
                        last_written = written;
                    }
                }
                if status.due() && notifier.enabled() {
                    notifier.status(&status_line(&stats, &app.output)).await;
                }
                if expiry_check.due() {
                    report_expiry(&store.current());
                }
            }
        })
    };
    let reloader = {
        let output = output.clone();
        let rejects = rejects.clone();
        let source = settings.cert.clone();
        let notifier = notifier.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                notifier.reloading().await;
                reload(&source, &store, &output, rejects.as_ref(), &stats).await;
                notifier.ready(&status_line(&stats, &output)).await;
            }
        })
    };
    let watchdog = notify::watchdog_interval()
        .filter(|_| notifier.enabled())
        .map(|every| {
            let notifier = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    notifier.watchdog().await;
                }
            })
        });
    // The listeners are bound (or were passed) and the handlers are installed: serving starts now.
    notifier.ready(&status_line(&stats, &output)).await;

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
        app,
        tls: tls_config,
        limits: settings.limits.clone(),
        stats: stats.clone(),
        allow: settings.allow.clone(),
    };
    server::run(listeners, parts, stop).await;
    housekeeping.abort();
    reloader.abort();
    for task in [admin_task, watchdog].into_iter().flatten() {
        task.abort();
    }
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
/// How often systemd's `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// How often the certificate's expiry is checked after the start.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(86_400);

/// A duty done once per period, asked from the housekeeping loop's one-second tick.
struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    /// First due one period from now.
    fn new(period: Duration) -> Every {
        Every {
            period,
            last: Instant::now(),
        }
    }

    /// True once a period has passed since it was last true; the next period starts now.
    fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= self.period;
        if due {
            self.last = Instant::now();
        }
        due
    }
}

/// Binds the TLS listener(s), and the admin listener when `LOGGER_ADMIN_ADDR` asks for one.
fn bind(settings: &Settings) -> Result<(Vec<TcpListener>, Option<TcpListener>), StartError> {
    let listeners = server::bind(settings.ip, settings.port).map_err(|source| StartError::Bind {
        addr: match settings.ip {
            Some(ip) => SocketAddr::new(ip, settings.port).to_string(),
            None => format!("port {} (every address)", settings.port),
        },
        source,
    })?;
    let admin = match settings.admin_addr {
        Some(addr) => Some(server::bind_one(addr).map_err(|source| StartError::Bind {
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
                "LOGGER_ADMIN_ADDR={addr} not bound: with socket activation only passed sockets are                  served; pass one named \"admin\" (FileDescriptorName=admin)"
            );
        }
    }
    Ok((tls, admin))
}

/// The one line `systemctl status` shows.
fn status_line(stats: &Stats, output: &Output) -> String {
    format!(
        "{} records written, {} connections open, output {}",
        Stats::get(&stats.records_written),
        Stats::get(&stats.connections_open),
        if output.healthy() { "ok" } else { "failing" },
    )
}

fn set_expiry_metric(stats: &Stats, cert: &LoadedCert) {
    let not_after = cert.summary.as_ref().map_or(0, |s| s.not_after);
    stats.cert_not_after.store(not_after, Ordering::Relaxed);
}

/// SIGHUP: reopen the output files and reload the certificate; a certificate that does not
/// load leaves the old one serving.
async fn reload(
    source: &CertSource,
    store: &CertStore,
    output: &Output,
    rejects: Option<&Rejects>,
    stats: &Stats,
) {
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
            set_expiry_metric(stats, &cert);
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
    let certificate = match &cert.summary {
        Some(s) => format!("{} (expires {})", s.subject, rfc3339_secs(s.not_after)),
        None => format!("{} (subject unreadable)", cert.cert_path.display()),
    };
    let clients = match &settings.client_ca {
        Some(ca) => format!("client certificates from {}", ca.display()),
        None => "no client certificates".to_string(),
    };
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(
        "ml_api_logger {} listening on {}; certificate {}; output {}; {}, fsync {}; allowed: {}; {}; {} worker thread{}",
        env!("CARGO_PKG_VERSION"),
        listening.join(" "),
        certificate,
        settings.output,
        if settings.strict { "strict" } else { "lenient" },
        if settings.fsync { "on" } else { "off" },
        settings.allow,
        clients,
        workers,
        if workers == 1 { "" } else { "s" },
    );
}

/// What the operator should hear of a certificate's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// More than 30 days left: nothing to say.
    Fine,
    /// Expires within 30 days: a warning, with the whole days left.
    Soon(i64),
    /// Expired: an error.
    Expired,
}

/// Judges `not_after` against `now` (both Unix seconds).
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    let left = not_after - now;
    if left <= 0 {
        Expiry::Expired
    } else if left < 30 * 86_400 {
        Expiry::Soon(left / 86_400)
    } else {
        Expiry::Fine
    }
}

/// Warns when the certificate expires within 30 days; an error when it has expired. Called at
/// start, at each reload and once a day.
pub fn report_expiry(cert: &LoadedCert) {
    let Some(summary) = &cert.summary else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    match expiry(summary.not_after, now) {
        Expiry::Expired => tracing::error!(
            "certificate {} expired at {}; sensors will refuse it",
            cert.cert_path.display(),
            rfc3339_secs(summary.not_after)
        ),
        Expiry::Soon(days) => tracing::warn!(
            "certificate {} expires in {days} days, at {}",
            cert.cert_path.display(),
            rfc3339_secs(summary.not_after)
        ),
        Expiry::Fine => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_expiry_check_comes_once_a_day() {
        let mut daily = Every::new(EXPIRY_CHECK_EVERY);
        tokio::time::advance(Duration::from_secs(86_400 - 60)).await;
        assert!(!daily.due());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(daily.due());
        assert!(!daily.due());
        tokio::time::advance(Duration::from_secs(86_399)).await;
        assert!(!daily.due());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(daily.due());
    }

    #[test]
    fn expiry_thresholds() {
        let day = 86_400;
        assert_eq!(expiry(100 * day, 0), Expiry::Fine);
        assert_eq!(expiry(30 * day, 0), Expiry::Fine);
        assert_eq!(expiry(30 * day - 1, 0), Expiry::Soon(29));
        assert_eq!(expiry(30 * day - 1, 0), Expiry::Soon(29));
        assert_eq!(expiry(day / 2, 0), Expiry::Soon(0));
        assert_eq!(expiry(0, 0), Expiry::Expired);
        assert_eq!(expiry(0, day), Expiry::Expired);
    }
}
