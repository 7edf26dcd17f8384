//! Counters of what the daemon did, kept with atomics so the hot path never locks.
//!
//! A small in-process registry: the handlers and connections count here; the shutdown summary
//! and the `/metrics` endpoint ([`crate::observe::metrics`]) read it. It does not format or publish
//! anything itself.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// Header values written as keyed marks, in the records written (`LOGGER_REDACT`).
    pub redacted_values: AtomicU64,
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
    /// Connections closed for their PROXY header: missing, malformed, oversized or late from a
    /// listed balancer, or sent by a peer that is not one.
    pub connections_refused_proxy: AtomicU64,
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
    /// Request records not written again because they were retries (part of `duplicates`).
    pub duplicate_requests: AtomicU64,
    /// Response records not written again because they were retries (part of `duplicates`).
    pub duplicate_responses: AtomicU64,
    /// Answers of the TLS listener, by status.
    pub http_answers: StatusCounts,
    /// `POST /log` refused, by status (each also counted in `posts_refused`).
    pub posts_refused_by_status: StatusCounts,
    /// The serving certificate's notAfter, Unix seconds; 0 while unknown.
    pub cert_not_after: AtomicI64,
    /// Seal entries appended to `OUTPUT.seal` (LOGGER_SEAL).
    pub seal_entries: AtomicU64,
    /// Attempts to seal that failed (each retried at the next minute).
    pub seal_failures: AtomicU64,
    /// When the last seal entry was appended, Unix seconds; 0 before the first.
    pub seal_last_unix: AtomicI64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        // Every request adds to several counters, most often 0: an atomic add is a cache line
        // taken from the other core, so nothing is added for nothing.
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
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
            "records written {} (requests {}, responses {}, nonconforming {}); credentials redacted {}; \
             posts accepted {}, refused {}; connections {} (refused at cap {}, not allowed {}, PROXY header {}, TLS failures {}, timed out {})",
            Self::get(&self.records_written),
            Self::get(&self.requests_written),
            Self::get(&self.responses_written),
            Self::get(&self.nonconforming_written),
            Self::get(&self.redacted_values),
            Self::get(&self.posts_accepted),
            Self::get(&self.posts_refused),
            Self::get(&self.connections_total),
            Self::get(&self.connections_refused_cap),
            Self::get(&self.connections_refused_allowlist),
            Self::get(&self.connections_refused_proxy),
            Self::get(&self.tls_failures),
            Self::get(&self.timeouts),
        )
    }
}

/// Upper bounds of the histogram buckets, in seconds; the last bucket is unbounded.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Bucket bounds for a `write(2)` or `fdatasync(2)`, in seconds: 50 µs to 10 s.
pub const IO_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Bucket bounds for the records gathered into one write.
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 16384.0,
];

/// A fixed-bucket histogram, lock-free: one atomic add per bucket and one for the sum.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of the buckets; a last, unbounded bucket follows.
    bounds: &'static [f64],
    /// Count per bucket (not cumulative), `bounds.len() + 1` of them.
    buckets: Box<[AtomicU64]>,
    /// Sum of all observations, in millionths of the unit (microseconds for durations).
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    /// The request-to-response wait histogram's buckets, [`WAIT_BUCKETS`].
    fn default() -> Self {
        Histogram::new(&WAIT_BUCKETS)
    }
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Adds one duration, in seconds.
    pub fn observe(&self, d: Duration) {
        self.bucket(d.as_secs_f64()).fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Adds one count (records in a batch, say).
    pub fn observe_count(&self, n: u64) {
        self.bucket(n as f64).fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(n.saturating_mul(1_000_000), Ordering::Relaxed);
    }

    fn bucket(&self, v: f64) -> &AtomicU64 {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        &self.buckets[i]
    }

    /// The upper bounds of the bounded buckets.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Observations so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Count per bucket (not cumulative), the last one unbounded.
    pub fn buckets(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// Sum of observations, as a duration.
    #[cfg(test)]
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Ordering::Relaxed))
    }

    /// Sum of observations in the histogram's unit (seconds, or a count).
    pub fn sum_f64(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// The statuses the handlers answer with, counted one by one; any other is counted as `other`.
pub const COUNTED_STATUSES: [u16; 9] = [200, 400, 404, 405, 408, 413, 415, 422, 503];

/// Counts by HTTP status: one atomic per status of [`COUNTED_STATUSES`], and one for the rest.
#[derive(Debug, Default)]
pub struct StatusCounts {
    counts: [AtomicU64; COUNTED_STATUSES.len() + 1],
}

impl StatusCounts {
    /// Counts one answer with `status`.
    pub fn count(&self, status: u16) {
        let i = COUNTED_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(COUNTED_STATUSES.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Each status (`"other"` last) with its count.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        const LABELS: [&str; COUNTED_STATUSES.len() + 1] = [
            "200", "400", "404", "405", "408", "413", "415", "422", "503", "other",
        ];
        LABELS
            .iter()
            .zip(&self.counts)
            .map(|(l, c)| (*l, c.load(Ordering::Relaxed)))
            .collect()
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
        let c = Histogram::new(&BATCH_BUCKETS);
        c.observe_count(1);
        c.observe_count(3);
        c.observe_count(1_000_000);
        assert_eq!(c.buckets()[..3], [1, 0, 1]);
        assert_eq!(c.buckets()[BATCH_BUCKETS.len()], 1);
        assert_eq!(c.sum_f64(), 1_000_004.0);
    }

    #[test]
    fn status_counts_label_every_status() {
        let s = StatusCounts::default();
        for status in [200, 200, 503, 418] {
            s.count(status);
        }
        let snap = s.snapshot();
        assert_eq!(snap.len(), COUNTED_STATUSES.len() + 1);
        assert_eq!(snap[0], ("200", 2));
        assert!(snap.contains(&("503", 1)));
        assert_eq!(snap.last(), Some(&("other", 1)));
        for (label, status) in snap.iter().zip(COUNTED_STATUSES) {
            assert_eq!(label.0, status.to_string());
        }
    }
}
