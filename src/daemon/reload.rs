//! `SIGHUP`: reopen the output files (after logrotate moved them) and reload the certificate,
//! between `RELOADING=1` and `READY=1`; a certificate that does not load leaves the old one
//! serving. With sealing on, the reopen is sealed at once: the old pair's stop entry, the new
//! pair's first entry. Also where the configured certificate is loaded at start.

use tokio::signal::unix::Signal;
use tokio::task::JoinHandle;

use crate::certs::generate;
use crate::daemon::duties::{report_expiry, set_expiry_metric, status_line};
use crate::daemon::sealing::Sealing;
use crate::daemon::systemd_notify::Notifier;
use crate::daemon::StartError;
use crate::net::tls::{self, CertStore, LoadedCert};
use crate::observe::stats::Stats;
use crate::output::Output;
use crate::rejects::Rejects;
use crate::settings::CertSource;
use std::sync::Arc;

/// What a reload touches.
pub struct Reload {
    /// Where the certificate comes from.
    pub source: CertSource,
    /// The certificate new handshakes get.
    pub store: Arc<CertStore>,
    /// The records' output, reopened.
    pub output: Output,
    /// The rejects file, reopened.
    pub rejects: Option<Rejects>,
    /// For the expiry gauge.
    pub stats: Arc<Stats>,
    /// Told `RELOADING=1`, then `READY=1`.
    pub notifier: Notifier,
    /// Seals the reopen, when sealing is on.
    pub sealing: Option<Arc<Sealing>>,
}

/// Reloads at every `SIGHUP` until aborted.
pub fn start(mut hangups: Signal, r: Reload) -> JoinHandle<()> {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            r.notifier.reloading().await;
            reload(&r.source, &r.store, &r.output, r.rejects.as_ref(), &r.stats).await;
            if let Some(sealing) = r.sealing.clone() {
                let _ = tokio::task::spawn_blocking(move || sealing.after_reopen()).await;
            }
            r.notifier.ready(&status_line(&r.stats, &r.output)).await;
        }
    })
}

/// Loads the configured certificate, or makes/reuses the embedded default.
pub fn load_certificate(source: &CertSource) -> Result<LoadedCert, StartError> {
    match source {
        CertSource::Files { cert, key } => Ok(tls::load(cert, key.as_deref())?),
        CertSource::Embedded(dir) => {
            let d = generate::ensure_default(dir)?;
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
        CertSource::Embedded(dir) => generate::ensure_default(dir)
            .map_err(|e| e.to_string())
            .and_then(|d| tls::load(&d.cert, Some(&d.key)).map_err(|e| e.to_string())),
    };
    match loaded {
        Ok(cert) => {
            report_expiry(&cert);
            set_expiry_metric(stats, &cert);
            let subject = cert.summary.subject.clone();
            store.replace(cert);
            tracing::info!("certificate reloaded: {subject}");
        }
        Err(e) => tracing::error!("certificate not reloaded, the old one still serves: {e}"),
    }
}
