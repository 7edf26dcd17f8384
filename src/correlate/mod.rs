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

pub mod aging;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::correlate::aging::{AgingMap, Prehashed, Sizing};
use crate::observe::stats::Stats;
use crate::record::Kind;

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

/// Identifies a record's minified bytes: a 64-bit hash of them and their length, keyed with a
/// secret chosen at start, so no sender can make other bytes pass for a record already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        static SECRET: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        // A slice hashes its length too.
        Fingerprint(SECRET.get_or_init(RandomState::new).hash_one(bytes))
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

/// Keys are kept as 64-bit hashes of (sender, sequence), keyed with a secret chosen at start
/// so that no sender can aim sequences at one slot of a table: a third of the memory of the
/// fields themselves, hashed once per record and never again by the tables. A collision (one
/// in 2^64 per pair) would also need equal fingerprints to drop a record.
fn pending_key(secret: &RandomState, ip: Option<IpAddr>, sequence: u64) -> u64 {
    secret.hash_one((ip, sequence))
}

/// The duplicate window's key: the pending key told apart by kind (a request and its response
/// share a sequence).
fn window_key(pending_key: u64, kind: Kind) -> u64 {
    pending_key
        ^ match kind {
            Kind::Request => 0x9e37_79b9_7f4a_7c15,
            Kind::Response => 0xc2b2_ae3d_27d4_eb4f,
        }
}

struct Tables {
    /// Requests waiting for their response, by [`pending_key`].
    pending: AgingMap<u64, (), Prehashed>,
    /// Written records, by [`window_key`].
    window: AgingMap<u64, Fingerprint, Prehashed>,
    /// Records being written now, by [`window_key`]: a copy that arrives meanwhile waits for
    /// the outcome instead of being written too. As many entries as records in flight, which
    /// the body budget bounds; each leaves when its request is answered.
    in_flight: HashMap<u64, InFlight, Prehashed>,
}

/// A record being written.
struct InFlight {
    fingerprint: Fingerprint,
    /// Made when a copy first waits; dropping it (the entry leaves) wakes every waiter.
    done: Option<watch::Sender<()>>,
}

/// What [`Correlator::classify`] decided for a body.
pub enum Classified<'a> {
    /// Write the records judged [`Verdict::New`] or [`Verdict::Reuse`] (reserved until the
    /// reservation is committed or dropped).
    Ready(Vec<Verdict>, Reservation<'a>),
    /// A copy of some record is being written by another request: wait until each of these
    /// resolves (the other request was answered), then classify again.
    Wait(Vec<watch::Receiver<()>>),
}

/// The records a body is writing, held in flight until [`Correlator::commit`] or drop (a write
/// that failed, or a request that went away): then copies waiting for them go on.
pub struct Reservation<'a> {
    tables: &'a Mutex<Tables>,
    keys: Vec<u64>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        for key in self.keys.drain(..) {
            tables.in_flight.remove(&key);
        }
    }
}

/// The correlation and duplicate tables, shared by every connection.
pub struct Correlator {
    config: CorrelateConfig,
    /// The secret key of [`pending_key`].
    secret: RandomState,
    tables: Mutex<Tables>,
    stats: Arc<Stats>,
}

impl Correlator {
    /// Empty tables.
    pub fn new(config: CorrelateConfig, stats: Arc<Stats>) -> Correlator {
        Correlator {
            tables: Mutex::new(Tables {
                pending: AgingMap::with_hasher(
                    config.max_pending,
                    config.response_timeout,
                    Sizing::AtStart,
                    Prehashed::default(),
                ),
                window: AgingMap::with_hasher(
                    config.duplicate_cap,
                    config.duplicate_window,
                    Sizing::AtStart,
                    Prehashed::default(),
                ),
                in_flight: HashMap::default(),
            }),
            secret: RandomState::new(),
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

    /// Judges each record before the write, and reserves those to be written so that a copy
    /// arriving meanwhile waits for their outcome. `None` entries (records that do not
    /// conform) are always written.
    pub fn classify(&self, peer: IpAddr, records: &[Option<RecordKey>]) -> Classified<'_> {
        let ip = self.ip(peer);
        let mut tables = self.lock();
        let mut verdicts = Vec::with_capacity(records.len());
        let mut keys = Vec::new();
        let mut waits = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let Some(r) = r else {
                verdicts.push(Verdict::New);
                continue;
            };
            let key = window_key(pending_key(&self.secret, ip, r.sequence), r.kind);
            // The same record twice in one body is a duplicate too.
            let earlier_in_body = records[..i].iter().zip(&verdicts).any(|(e, v)| {
                *v != Verdict::Duplicate
                    && e.is_some_and(|e| {
                        e.kind == r.kind && e.sequence == r.sequence && e.fingerprint == r.fingerprint
                    })
            });
            if !earlier_in_body {
                if let Some(f) = tables.in_flight.get_mut(&key) {
                    if f.fingerprint == r.fingerprint {
                        // Its outcome decides: a duplicate if it is written, this copy's turn if not.
                        let done = f.done.get_or_insert_with(|| watch::channel(()).0);
                        waits.push(done.subscribe());
                        verdicts.push(Verdict::Duplicate);
                        continue;
                    }
                }
            }
            let verdict = match tables.window.get(&key) {
                _ if earlier_in_body => Verdict::Duplicate,
                Some(f) if *f == r.fingerprint => Verdict::Duplicate,
                Some(_) => Verdict::Reuse,
                None => Verdict::New,
            };
            if verdict != Verdict::Duplicate && !tables.in_flight.contains_key(&key) {
                tables.in_flight.insert(
                    key,
                    InFlight {
                        fingerprint: r.fingerprint,
                        done: None,
                    },
                );
                keys.push(key);
            }
            verdicts.push(verdict);
        }
        let reservation = Reservation {
            tables: &self.tables,
            keys,
        };
        if waits.is_empty() {
            Classified::Ready(verdicts, reservation)
        } else {
            // Nothing of this body is written before the copies it waits for are decided.
            drop(tables);
            drop(reservation);
            Classified::Wait(waits)
        }
    }

    /// Records what was written (every record not judged a duplicate), counts duplicates, and
    /// ends the reservation: copies waiting for these records are now duplicates.
    pub fn commit(
        &self,
        peer: IpAddr,
        records: &[Option<RecordKey>],
        verdicts: &[Verdict],
        mut reservation: Reservation<'_>,
    ) {
        let ip = self.ip(peer);
        let now = Instant::now();
        let s = &self.stats;
        let mut tables = self.lock();
        let Tables {
            pending,
            window,
            in_flight,
        } = &mut *tables;
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
            let key = pending_key(&self.secret, ip, r.sequence);
            window.insert(window_key(key, r.kind), r.fingerprint, now, |_, _| {});
            match r.kind {
                Kind::Request => {
                    Stats::add(&s.requests_seen, 1);
                    // A request that replaces a waiting one (sequence reuse) leaves it unanswered.
                    if pending.remove(&key, now).is_some() {
                        Stats::add(&s.unanswered, 1);
                    }
                    pending.insert(key, (), now, |_, _| Stats::add(&s.unanswered, 1));
                }
                Kind::Response => {
                    Stats::add(&s.responses_seen, 1);
                    match pending.remove(&key, now) {
                        Some(((), waited)) => {
                            Stats::add(&s.matched, 1);
                            s.response_wait.observe(waited);
                        }
                        None => Stats::add(&s.orphan_responses, 1),
                    }
                }
            }
        }
        // In the window now: the waiters, woken as their entries leave, find them there.
        for key in reservation.keys.drain(..) {
            in_flight.remove(&key);
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
        let Classified::Ready(v, reservation) = c.classify(ip, records) else {
            panic!("nothing is in flight in these tests");
        };
        c.commit(ip, records, &v, reservation);
        v
    }

    fn ready(c: &Classified<'_>) -> Option<Vec<Verdict>> {
        match c {
            Classified::Ready(v, _) => Some(v.clone()),
            Classified::Wait(_) => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_in_flight_waits_for_the_first_outcome() {
        let stats = Arc::new(Stats::default());
        let c = Correlator::new(CorrelateConfig::default(), stats.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let r = [key(Kind::Request, 1, "r1")];
        // The first copy is being written; the second waits.
        let first = c.classify(ip, &r);
        assert_eq!(ready(&first), Some(vec![Verdict::New]));
        let Classified::Wait(mut waits) = c.classify(ip, &r) else {
            panic!("the copy must wait")
        };
        // Another sender's record with the same sequence does not wait.
        assert_eq!(
            ready(&c.classify("10.0.0.2".parse().unwrap(), &r)),
            Some(vec![Verdict::New])
        );
        // The first was not written (a 503): the copy's turn, and it is new.
        drop(first);
        assert!(waits[0].changed().await.is_err());
        let second = c.classify(ip, &r);
        assert_eq!(ready(&second), Some(vec![Verdict::New]));
        // A third copy waits for the second, which is written: then it is a duplicate.
        let Classified::Wait(mut waits) = c.classify(ip, &r) else {
            panic!("the copy must wait")
        };
        let Classified::Ready(v, reservation) = second else {
            unreachable!()
        };
        c.commit(ip, &r, &v, reservation);
        assert!(waits[0].changed().await.is_err());
        assert_eq!(run(&c, "10.0.0.1", &r), vec![Verdict::Duplicate]);
        assert_eq!(Stats::get(&stats.requests_seen), 1);
        assert_eq!(Stats::get(&stats.duplicates), 1);
        assert!(c.lock().in_flight.is_empty());
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
