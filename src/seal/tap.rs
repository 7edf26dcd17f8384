//! The tap: where the output writer leaves what it wrote, for the sealer to take.
//!
//! The writer must not wait for sealing (an entry is an `fsync` of the `.seal` and an atomic
//! rewrite of the state file: milliseconds), and the sealer must see exactly the bytes that
//! stayed in the output, in order, with reopens in their place between them. So the writer,
//! after each successful write, adds the bytes to the [`Observed`] range the tap holds (a hash
//! update under a lock nobody holds for longer than a swap), and notes each reopen; the sealer,
//! on its own thread, [`Tap::take`]s everything at once and applies it in order. This module
//! does not write anything; the health flag it carries is set by whoever seals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::sealer::Observed;

/// What happened to the output since the sealer last looked, in order.
pub enum TapEvent {
    /// Bytes written to the current file.
    Wrote(Observed),
    /// The output was reopened by its path; the new file was `len` bytes long then.
    Reopened {
        /// The new file's length at the reopen.
        len: u64,
    },
}

/// Shared by the output writer (which fills it) and the sealer (which empties it).
pub struct Tap {
    inner: Mutex<TapInner>,
    /// Sealing is failing (set by the sealer, read by `/healthz`).
    failing: AtomicBool,
}

struct TapInner {
    current: Observed,
    /// Ranges closed by reopens, and the reopens, not taken yet. Grows only at `SIGHUP`, and the
    /// reload that follows each one takes it.
    events: Vec<TapEvent>,
}

impl Tap {
    /// A tap whose first range starts at `offset` (the output's length when sealing starts).
    pub fn new(offset: u64) -> Tap {
        Tap {
            inner: Mutex::new(TapInner {
                current: Observed::at(offset),
                events: Vec::new(),
            }),
            failing: AtomicBool::new(false),
        }
    }

    /// The writer wrote `bytes` (whole lines that stay) after everything observed so far.
    pub fn wrote(&self, bytes: &[u8]) {
        self.lock().current.observe(bytes);
    }

    /// The writer reopened the output; the new file holds `len` bytes.
    pub fn reopened(&self, len: u64) {
        let mut inner = self.lock();
        let closed = std::mem::replace(&mut inner.current, Observed::at(len));
        inner.events.push(TapEvent::Wrote(closed));
        inner.events.push(TapEvent::Reopened { len });
    }

    /// Everything since the last take, in order; the current range goes on empty at its end.
    pub fn take(&self) -> Vec<TapEvent> {
        let mut inner = self.lock();
        let range = inner.current.take();
        let mut events = std::mem::take(&mut inner.events);
        events.push(TapEvent::Wrote(range));
        events
    }

    /// Whether the last attempt to seal failed.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Set by the sealer after each attempt.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapInner> {
        // A panic elsewhere cannot leave a range half-updated in a way that matters more than
        // losing the tap would: poison is ignored (the verifier would catch a bad range).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_order_and_ranges_continue() {
        let tap = Tap::new(10);
        tap.wrote(b"a\n");
        tap.reopened(0);
        tap.wrote(b"bc\n");
        let events = tap.take();
        assert_eq!(events.len(), 3);
        match &events[..] {
            [TapEvent::Wrote(a), TapEvent::Reopened { len: 0 }, TapEvent::Wrote(b)] => {
                assert_eq!((a.start(), a.end()), (10, 12));
                assert_eq!((b.start(), b.end()), (0, 3));
            }
            _ => panic!("unexpected order"),
        }
        tap.wrote(b"d\n");
        match &tap.take()[..] {
            [TapEvent::Wrote(c)] => assert_eq!((c.start(), c.end()), (3, 5)),
            _ => panic!("one range expected"),
        }
    }
}
