//! Counters of what the daemon did, kept with atomics so the hot path never locks.
//!
//! A small in-process registry: the handlers and connections count here; the shutdown summary
//! (and a metrics endpoint, later) read it. It does not format or publish anything itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// Connections closed because the peer is not on the allowlist.
    pub connections_refused_allowlist: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Connections closed for a header or idle timeout.
    pub timeouts: AtomicU64,
    /// Request records correlated (written).
    pub requests_seen: AtomicU64,
    /// Response records correlated (written).
    pub responses_seen: AtomicU64,
    /// Responses that completed a waiting request.
    pub matched: AtomicU64,
    /// Responses with no request waiting.
    pub orphan_responses: AtomicU64,
    /// Requests with no response within the response timeout, or dropped at the pending cap.
    pub unanswered: AtomicU64,
    /// Retries not written again.
    pub duplicates: AtomicU64,
    /// Same sequence and kind with other bytes (a sensor restarted its numbering).
    pub sequence_reuses: AtomicU64,
    /// Requests waiting for their response now.
    pub pending: AtomicU64,
    /// Time from a request's arrival to its response's arrival.
    pub response_wait: Histogram,
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
        let g = |c: &AtomicU64| Self::get(c);
        format!(
            "{}; correlation: requests {}, responses {}, matched {}, orphan responses {}, unanswered {}, \
             pending {}, duplicates {}, sequence reuses {}",
            self.traffic_summary(),
            g(&self.requests_seen),
            g(&self.responses_seen),
            g(&self.matched),
            g(&self.orphan_responses),
            g(&self.unanswered),
            g(&self.pending),
            g(&self.duplicates),
            g(&self.sequence_reuses),
        )
    }

    fn traffic_summary(&self) -> String {
        format!(
            "records written {} (requests {}, responses {}, nonconforming {}); posts accepted {}, refused {}; \
             connections {} (refused at cap {}, not allowed {}, TLS failures {}, timed out {})",
            Self::get(&self.records_written),
            Self::get(&self.requests_written),
            Self::get(&self.responses_written),
            Self::get(&self.nonconforming_written),
            Self::get(&self.posts_accepted),
            Self::get(&self.posts_refused),
            Self::get(&self.connections_total),
            Self::get(&self.connections_refused_cap),
            Self::get(&self.connections_refused_allowlist),
            Self::get(&self.tls_failures),
            Self::get(&self.timeouts),
        )
    }
}

/// Upper bounds of the histogram buckets, in seconds; the last bucket is unbounded.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A fixed-bucket histogram of durations, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket of [`WAIT_BUCKETS`], plus one for larger values.
    buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
    /// Sum of all observations, microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = WAIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(WAIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Count per bucket (not cumulative), the last one unbounded.
    pub fn buckets(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// Sum of observations.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(6));
        h.observe(Duration::from_secs(1000));
        let b = h.buckets();
        assert_eq!((b[0], b[1], b[WAIT_BUCKETS.len()]), (1, 1, 1));
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum(), Duration::from_millis(1_000_011));
    }
}
