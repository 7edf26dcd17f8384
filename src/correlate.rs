//! Correlation by `sequence`, and duplicate suppression.
//!
//! Every sensor numbers its own records, so the key is the sender's IP address and `sequence`
//! (or `sequence` alone with `--correlate-by sequence`). Before a request's records are written,
//! [`Correlator::classify`] tells which are retries already written (same kind, sequence and
//! minified bytes: not written again) and which reuse a sequence with different bytes (the
//! sensor restarted its numbering: written, counted). After the write succeeded,
//! [`Correlator::commit`] records them: requests wait for their response, a response completes
//! its request (the wait is observed as a histogram) or is an orphan. Only written records enter
//! the duplicate window, so the retry of a refused request is written. Both tables are bounded
//! by count and age ([`AgingMap`]); what ages out of the pending table is counted unanswered.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::aging::AgingMap;
use crate::record::Kind;
use crate::stats::Stats;

/// How records are matched and how long state is kept.
#[derive(Debug, Clone)]
pub struct CorrelateConfig {
    /// Key by sender address and sequence (true), or sequence alone.
    pub by_address: bool,
    /// A request with no response after this is counted unanswered.
    pub response_timeout: Duration,
    /// Most requests waiting at once; beyond it the oldest is dropped (unanswered).
    pub max_pending: usize,
    /// How long a written record is remembered for duplicate detection.
    pub duplicate_window: Duration,
    /// Most records remembered for duplicate detection.
    pub duplicate_cap: usize,
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        CorrelateConfig {
            by_address: true,
            response_timeout: Duration::from_secs(300),
            max_pending: 100_000,
            duplicate_window: Duration::from_secs(300),
            duplicate_cap: 200_000,
        }
    }
}

/// What correlation needs to know of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey {
    /// Request or response.
    pub kind: Kind,
    /// Its sequence.
    pub sequence: u64,
    /// Hash and length of its minified bytes.
    pub fingerprint: Fingerprint,
}

/// Identifies a record's minified bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    hash: u64,
    len: u32,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        // SipHash with fixed keys: stable within the process, which is all the window needs.
        let mut h = std::hash::DefaultHasher::new();
        bytes.hash(&mut h);
        Fingerprint {
            hash: h.finish(),
            // Records are at most 16 MiB by default; a longer one only shares the low bits.
            len: bytes.len() as u32,
        }
    }
}

/// What to do with a record before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen in the window (or not correlatable): write it.
    New,
    /// Same kind, sequence and bytes as a written record: do not write it again.
    Duplicate,
    /// Same kind and sequence, other bytes: write it; the sensor restarted its numbering.
    Reuse,
}

/// Keys are kept as 64-bit hashes of (sender, kind, sequence): a third of the memory of the
/// fields themselves, and a collision (one in 2^64 per pair) would also need equal fingerprints
/// to drop a record.
fn key(ip: Option<IpAddr>, kind: Option<Kind>, sequence: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (ip, kind, sequence).hash(&mut h);
    h.finish()
}

struct Tables {
    /// Requests waiting for their response, by `key(ip, None, sequence)`.
    pending: AgingMap<u64, ()>,
    /// Written records, by `key(ip, Some(kind), sequence)`.
    window: AgingMap<u64, Fingerprint>,
}

/// The correlation and duplicate tables, shared by every connection.
pub struct Correlator {
    config: CorrelateConfig,
    tables: Mutex<Tables>,
    stats: Arc<Stats>,
}

impl Correlator {
    /// Empty tables.
    pub fn new(config: CorrelateConfig, stats: Arc<Stats>) -> Correlator {
        Correlator {
            tables: Mutex::new(Tables {
                pending: AgingMap::new(config.max_pending, config.response_timeout),
                window: AgingMap::new(config.duplicate_cap, config.duplicate_window),
            }),
            config,
            stats,
        }
    }

    fn ip(&self, peer: IpAddr) -> Option<IpAddr> {
        self.config.by_address.then_some(canonical(peer))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Judges each record before the write. `None` entries (records that do not conform) are
    /// always written.
    pub fn classify(&self, peer: IpAddr, records: &[Option<RecordKey>]) -> Vec<Verdict> {
        let ip = self.ip(peer);
        let tables = self.lock();
        let mut verdicts = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let Some(r) = r else {
                verdicts.push(Verdict::New);
                continue;
            };
            let key = key(ip, Some(r.kind), r.sequence);
            // The same record twice in one body is a duplicate too.
            let earlier_in_body = records[..i].iter().zip(&verdicts).any(|(e, v)| {
                *v != Verdict::Duplicate
                    && e.is_some_and(|e| {
                        e.kind == r.kind && e.sequence == r.sequence && e.fingerprint == r.fingerprint
                    })
            });
            let verdict = match tables.window.get(&key) {
                _ if earlier_in_body => Verdict::Duplicate,
                Some(f) if *f == r.fingerprint => Verdict::Duplicate,
                Some(_) => Verdict::Reuse,
                None => Verdict::New,
            };
            verdicts.push(verdict);
        }
        verdicts
    }

    /// Records what was written (every record not judged a duplicate) and counts duplicates.
    pub fn commit(&self, peer: IpAddr, records: &[Option<RecordKey>], verdicts: &[Verdict]) {
        let ip = self.ip(peer);
        let now = Instant::now();
        let s = &self.stats;
        let mut tables = self.lock();
        let Tables { pending, window } = &mut *tables;
        for (r, v) in records.iter().zip(verdicts) {
            let Some(r) = r else { continue };
            match v {
                Verdict::Duplicate => {
                    Stats::add(&s.duplicates, 1);
                    continue;
                }
                Verdict::Reuse => Stats::add(&s.sequence_reuses, 1),
                Verdict::New => {}
            }
            window.insert(key(ip, Some(r.kind), r.sequence), r.fingerprint, now, |_, _| {});
            let key = key(ip, None, r.sequence);
            match r.kind {
                Kind::Request => {
                    Stats::add(&s.requests_seen, 1);
                    // A request that replaces a waiting one (sequence reuse) leaves it unanswered.
                    if pending.remove(&key).is_some() {
                        Stats::add(&s.unanswered, 1);
                    }
                    pending.insert(key, (), now, |_, _| Stats::add(&s.unanswered, 1));
                }
                Kind::Response => {
                    Stats::add(&s.responses_seen, 1);
                    match pending.remove(&key) {
                        Some(((), at)) => {
                            Stats::add(&s.matched, 1);
                            s.response_wait.observe(now.saturating_duration_since(at));
                        }
                        None => Stats::add(&s.orphan_responses, 1),
                    }
                }
            }
        }
        s.pending
            .store(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ages out what is past its time: unanswered requests (counted) and old window entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        let s = &self.stats;
        let mut tables = self.lock();
        tables.pending.expire(now, |_, _| Stats::add(&s.unanswered, 1));
        tables.window.expire(now, |_, _| {});
        s.pending
            .store(tables.pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address, so one sender has one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: Kind, sequence: u64, bytes: &str) -> Option<RecordKey> {
        Some(RecordKey {
            kind,
            sequence,
            fingerprint: Fingerprint::of(bytes.as_bytes()),
        })
    }

    fn run(c: &Correlator, ip: &str, records: &[Option<RecordKey>]) -> Vec<Verdict> {
        let ip: IpAddr = ip.parse().unwrap();
        let v = c.classify(ip, records);
        c.commit(ip, records, &v);
        v
    }

    #[tokio::test(start_paused = true)]
    async fn pairs_orphans_duplicates_reuses_and_unanswered() {
        let stats = Arc::new(Stats::default());
        let c = Correlator::new(CorrelateConfig::default(), stats.clone());
        let a = "10.0.0.1";
        run(&c, a, &[key(Kind::Request, 1, "r1")]);
        tokio::time::advance(Duration::from_millis(250)).await;
        run(&c, a, &[key(Kind::Response, 1, "s1")]);
        // The same sequence from another sensor is another key.
        run(&c, "10.0.0.2", &[key(Kind::Response, 1, "s1")]);
        assert_eq!(
            run(&c, a, &[key(Kind::Response, 1, "s1")]),
            vec![Verdict::Duplicate]
        );
        assert_eq!(
            run(&c, a, &[key(Kind::Request, 1, "r1-new")]),
            vec![Verdict::Reuse]
        );
        // IPv4-mapped IPv6 is the same sender.
        assert_eq!(
            run(&c, "::ffff:10.0.0.1", &[key(Kind::Request, 1, "r1-new")]),
            vec![Verdict::Duplicate]
        );
        assert_eq!(
            run(
                &c,
                a,
                &[key(Kind::Request, 7, "x"), key(Kind::Request, 7, "x"), None]
            ),
            vec![Verdict::New, Verdict::Duplicate, Verdict::New]
        );
        tokio::time::advance(Duration::from_secs(301)).await;
        c.sweep();
        let g = Stats::get;
        assert_eq!(g(&stats.requests_seen), 3);
        assert_eq!(g(&stats.responses_seen), 2);
        assert_eq!(g(&stats.matched), 1);
        assert_eq!(g(&stats.orphan_responses), 1);
        assert_eq!(g(&stats.duplicates), 3);
        assert_eq!(g(&stats.sequence_reuses), 1);
        assert_eq!(g(&stats.unanswered), 2);
        assert_eq!(g(&stats.pending), 0);
        assert_eq!(stats.response_wait.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pending_table_is_capped() {
        let stats = Arc::new(Stats::default());
        let config = CorrelateConfig {
            max_pending: 1000,
            duplicate_cap: 1000,
            ..CorrelateConfig::default()
        };
        let c = Correlator::new(config, stats.clone());
        for i in 0..100_000 {
            run(&c, "10.0.0.1", &[key(Kind::Request, i, "r")]);
        }
        assert_eq!(Stats::get(&stats.pending), 1000);
        assert_eq!(Stats::get(&stats.unanswered), 99_000);
    }
}
