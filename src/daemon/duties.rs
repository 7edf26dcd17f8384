//! The daemon's background duties, beside the server: correlation sweeps each second, the
//! periodic summary in the log, `STATUS=` and the watchdog for systemd, and the certificate
//! expiry policy (a warning within 30 days, an error once expired; at start, at each reload and
//! once a day), and with sealing on, the minute's seal (off the async workers).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::daemon::sealing::Sealing;
use crate::daemon::systemd_notify::{self, Notifier};
use crate::ingest::Ingest;
use crate::net::tls::{CertStore, LoadedCert};
use crate::observe::stats::Stats;
use crate::observe::timefmt::rfc3339_secs;
use crate::output::Output;

/// The running duties; aborted together when the daemon stops.
pub struct Duties {
    tasks: Vec<JoinHandle<()>>,
}

impl Duties {
    /// Stops every duty.
    pub fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Starts the duties: the one-second housekeeping loop, and the watchdog when systemd asks for it.
pub fn start(
    ingest: &Arc<Ingest>,
    stats: &Arc<Stats>,
    notifier: &Notifier,
    store: &Arc<CertStore>,
    sealing: Option<&Arc<Sealing>>,
) -> Duties {
    let housekeeping = {
        let ingest = ingest.clone();
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
                ingest.correlator.sweep();
                if report.due() {
                    let written = Stats::get(&stats.records_written);
                    if written != last_written {
                        tracing::info!("{}", stats.summary());
                        last_written = written;
                    }
                }
                if status.due() && notifier.enabled() {
                    notifier.status(&status_line(&stats, &ingest.output)).await;
                }
                if expiry_check.due() {
                    report_expiry(&store.current());
                }
            }
        })
    };
    let mut tasks = vec![housekeeping];
    if let Some(sealing) = sealing {
        let sealing = sealing.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(sealing.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: the start entry was just written.
            tick.tick().await;
            loop {
                tick.tick().await;
                let sealing = sealing.clone();
                // An entry is an fsync and a state rewrite: never on an async worker. Aborting
                // this task leaves a seal in progress to finish; the stop entry waits for it.
                let _ = tokio::task::spawn_blocking(move || sealing.seal_now()).await;
            }
        }));
    }
    if let Some(every) = systemd_notify::watchdog_interval().filter(|_| notifier.enabled()) {
        let notifier = notifier.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.watchdog().await;
            }
        }));
    }
    Duties { tasks }
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

/// The one line `systemctl status` shows.
pub fn status_line(stats: &Stats, output: &Output) -> String {
    format!(
        "{} records written, {} connections open, output {}",
        Stats::get(&stats.records_written),
        Stats::get(&stats.connections_open),
        if output.healthy() { "ok" } else { "failing" },
    )
}

/// The certificate's expiry as the `/metrics` gauge reads it.
pub fn set_expiry_metric(stats: &Stats, cert: &LoadedCert) {
    let not_after = cert.summary.not_after;
    stats.cert_not_after.store(not_after, Ordering::Relaxed);
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
    let summary = &cert.summary;
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
        assert_eq!(expiry(29 * day, 0), Expiry::Soon(29));
        assert_eq!(expiry(29 * day - 1, 0), Expiry::Soon(28));
        assert_eq!(expiry(day / 2, 0), Expiry::Soon(0));
        assert_eq!(expiry(0, 0), Expiry::Expired);
        assert_eq!(expiry(0, day), Expiry::Expired);
    }
}
