//! Counters of what the daemon did, kept with atomics so the hot path never locks.
//!
//! A small in-process registry: the handlers and connections count here; the shutdown summary
//! (and a metrics endpoint, later) read it. It does not format or publish anything itself.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter; all start at zero.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records written.
    pub records_written: AtomicU64,
    /// Request records written.
    pub requests_written: AtomicU64,
    /// Response records written.
    pub responses_written: AtomicU64,
    /// Records written that did not conform (lenient mode).
    pub nonconforming_written: AtomicU64,
    /// `POST /log` answered `200`.
    pub posts_accepted: AtomicU64,
    /// `POST /log` refused, any status.
    pub posts_refused: AtomicU64,
    /// Connections accepted (before the TLS handshake).
    pub connections_total: AtomicU64,
    /// Connections now open.
    pub connections_open: AtomicU64,
    /// Connections closed because the connection cap stayed full.
    pub connections_refused_cap: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Connections closed for a header or idle timeout.
    pub timeouts: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One line for the log: what was written and refused.
    pub fn summary(&self) -> String {
        format!(
            "records written {} (requests {}, responses {}, nonconforming {}); posts accepted {}, refused {}; \
             connections {} (refused at cap {}, TLS failures {}, timed out {})",
            Self::get(&self.records_written),
            Self::get(&self.requests_written),
            Self::get(&self.responses_written),
            Self::get(&self.nonconforming_written),
            Self::get(&self.posts_accepted),
            Self::get(&self.posts_refused),
            Self::get(&self.connections_total),
            Self::get(&self.connections_refused_cap),
            Self::get(&self.tls_failures),
            Self::get(&self.timeouts),
        )
    }
}
