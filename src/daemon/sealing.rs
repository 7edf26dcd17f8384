//! The daemon's side of sealing (LOGGER_SEAL, SPEC 4.8): when to seal, and what to say about it.
//!
//! At start the sealer opens before anything is written (sealing what the file holds past its
//! last entry, and the torn-tail repair); then every interval (a minute) in which records were
//! written, at every reopen and at stop it takes what the output writer left in the [`Tap`] and
//! appends an entry. Each entry's anchor is logged at info, and the counters and the health
//! flag are updated. Every method here blocks (an entry is an `fsync` and an atomic state
//! rewrite): the callers run them off the async workers. The entries themselves, the keys and
//! the files are [`crate::seal`]'s; this module never touches the output's bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::observe::stats::Stats;
use crate::output::Output;
use crate::seal::tap::{Tap, TapEvent};
use crate::seal::{Anchor, Repair, SealError, SealKind, Sealer};

/// How often a seal entry is written while records are being written.
pub const SEAL_EVERY: Duration = Duration::from_secs(60);

/// The sealer of the daemon's output, shared by the minute duty, the reload and the stop.
pub struct Sealing {
    /// Held while an entry is made (milliseconds); the output writer never takes it.
    sealer: Mutex<Sealer>,
    /// What the writer wrote and reopened since the last entry.
    tap: Arc<Tap>,
    /// The output's path: a reopen opens the new file's `.seal` beside it.
    output: PathBuf,
    stats: Arc<Stats>,
    /// The interval between seals (a minute; shorter only in tests).
    pub every: Duration,
}

impl Sealing {
    /// Opens the sealer for `output_path` with the state at `state`, before anything is
    /// written: loads the state, seals the torn-tail repair `output` made at open and what the
    /// file holds past its last entry, and starts observing the writer. A state that cannot be
    /// used is the error (exit 2 at start).
    pub fn open(
        state: &Path,
        output_path: &Path,
        output: &Output,
        stats: Arc<Stats>,
        every: Duration,
    ) -> Result<Arc<Sealing>, SealError> {
        let output_read = |source| SealError::OutputRead {
            path: output_path.into(),
            source,
        };
        let (tap, len) = output
            .tap_for_sealing()
            .map_err(output_read)?
            .ok_or_else(|| output_read(std::io::Error::other("sealing needs a file output")))?;
        let repair = output.repaired().map(|t| Repair {
            bytes: t.bytes,
            sha256: t.sha256,
            to: t
                .to
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
        let (sealer, anchors) = Sealer::open(state, output_path, len, repair.as_ref())?;
        let sealing = Sealing {
            sealer: Mutex::new(sealer),
            tap,
            output: output_path.into(),
            stats,
            every,
        };
        log_anchors(&anchors);
        sealing.account(&sealing.lock());
        tracing::info!(
            "sealing {} into {} (state {})",
            output_path.display(),
            crate::seal::seal_path_for(output_path).display(),
            state.display()
        );
        Ok(Arc::new(sealing))
    }

    /// The minute's seal: an entry when anything was written since the last one (or a retry of
    /// one that failed).
    pub fn seal_now(&self) {
        self.run(SealKind::Seal);
    }

    /// After `SIGHUP` reopened the output: the old pair's stop entry and the new pair's first
    /// entry (the reopen is among the tap's events), or a plain seal when the reopen failed.
    pub fn after_reopen(&self) {
        self.run(SealKind::Seal);
    }

    /// At stop, after the writer wrote and synced everything: the stop entry.
    pub fn stop(&self) {
        self.run(SealKind::Stop);
    }

    fn run(&self, kind: SealKind) {
        let mut sealer = self.lock();
        for event in self.tap.take() {
            match event {
                TapEvent::Wrote(range) => sealer.absorb(range),
                TapEvent::Reopened { len } => {
                    let reopened = sealer.reopen(&self.output, len);
                    log_anchors(&reopened.anchors);
                    for e in &reopened.errors {
                        tracing::error!("sealing at the reopen: {e}; retried at the next seal");
                    }
                }
            }
        }
        match sealer.seal(kind) {
            Ok(anchor) => log_anchors(anchor.as_slice()),
            Err(e) => {
                if matches!(e, SealError::StateWrite { .. }) {
                    // The entry was written; only the state file lags.
                    log_anchors(sealer.last_anchor().cloned().as_slice());
                }
                tracing::error!("sealing: {e}; retried at the next seal");
            }
        }
        self.account(&sealer);
    }

    /// Counters and the health flag from the sealer's own.
    fn account(&self, sealer: &Sealer) {
        let s = sealer.stats();
        self.stats
            .seal_entries
            .store(s.entries_written, Ordering::Relaxed);
        self.stats.seal_failures.store(s.failures, Ordering::Relaxed);
        if s.last_seal_unix > 0 {
            let secs = i64::try_from(s.last_seal_unix).unwrap_or(i64::MAX);
            self.stats.seal_last_unix.store(secs, Ordering::Relaxed);
        }
        self.tap.set_failing(!sealer.healthy());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sealer> {
        self.sealer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each entry's digest at info: anchors outside the machine once the journal is shipped.
fn log_anchors(anchors: &[Anchor]) {
    for a in anchors {
        tracing::info!("{a}");
    }
}
