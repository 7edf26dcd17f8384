//! An insertion-ordered map with a size cap and an age limit: the bounded memory behind the
//! correlation table and the duplicate window.
//!
//! Entries leave oldest first, when they are older than the age limit or when the map is over its
//! cap; each eviction is handed to the caller to count. Removal by key is O(1); the order queue
//! keeps stale entries for removed keys and is compacted when they outnumber the live ones. The
//! table takes its final size once, when the map is made or when it is a quarter full
//! ([`Sizing`]).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// The most entries a map takes; generations (32 bits) cannot repeat within a queue this long.
pub const MAX_CAP: usize = 1 << 30;
/// The oldest age a map tells apart: times are 32-bit milliseconds, which wrap after 49 days.
pub const MAX_AGE: Duration = Duration::from_millis(u32::MAX as u64 / 2);
/// Caps up to this get their final table once ([`Sizing`]); larger ones grow as they fill.
const PRESIZE_MAX: usize = 1 << 19;

/// When a map's table takes its final size: room for twice the cap (up to [`PRESIZE_MAX`]).
///
/// Twice, because a full table that keeps evicting fills with tombstones, which hashbrown
/// clears in place only while it is at most half full; fuller, it doubles, briefly holding both
/// sizes. Sized so, it never grows again. Once only: tombstones lower `capacity()`, and
/// reserving again would double the table after all. Until then a table grows as it fills, and
/// each growth moves every entry at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizing {
    /// When the map is made, for the daemon's tables: growing on the thread that carries the
    /// requests held every connection — 2 to 4 ms at the default caps, the longest answer in
    /// the first seconds after a start (bench/RESULTS.md). The entries' memory is reserved,
    /// not touched (only the table's control bytes are, one per slot): pages become resident
    /// as entries land on them, so a table that fills (the steady state of any sensor sending
    /// a few hundred records a second) ends where it would have anyway.
    AtStart,
    /// Once a quarter full, for `inspect` and `report`, which wait on nothing: entries land all
    /// over a table, so a big table holding a few thousand keys would keep most of its pages
    /// resident, and memory would not follow the size of the log read.
    QuarterFull,
}

/// A map whose entries age out, oldest first.
#[derive(Debug)]
pub struct AgingMap<K, V, S = RandomState> {
    map: HashMap<K, Entry<V>, S>,
    /// Keys in insertion order, with the generation of that insertion.
    order: VecDeque<(K, u32)>,
    next_gen: u32,
    cap: usize,
    /// Milliseconds, at most [`MAX_AGE`].
    max_age: u32,
    /// Times are kept as 32-bit milliseconds after this (wrapping), a quarter of an `Instant`.
    base: Instant,
    /// The table has its final size ([`Sizing`]).
    presized: bool,
}

/// A value with its insertion: 8 bytes beside the value, so a table of a hundred thousand
/// keys stays a few megabytes.
#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Milliseconds after `base` when it was inserted, modulo 2^32.
    at: u32,
    /// Which insertion of the key this is, to tell live queue entries from stale ones.
    gen: u32,
}

impl<K: Hash + Eq + Clone, V> AgingMap<K, V> {
    /// At most `cap` entries (at most [`MAX_CAP`]), none older than `max_age` (at most
    /// [`MAX_AGE`]), the table sized as `sizing` says.
    pub fn new(cap: usize, max_age: Duration, sizing: Sizing) -> Self {
        Self::with_hasher(cap, max_age, sizing, RandomState::new())
    }
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher> AgingMap<K, V, S> {
    /// [`AgingMap::new`] with keys hashed by `hasher`.
    pub fn with_hasher(cap: usize, max_age: Duration, sizing: Sizing, hasher: S) -> Self {
        let cap = cap.clamp(1, MAX_CAP);
        let presized = sizing == Sizing::AtStart;
        let room = if presized { final_room(cap) } else { 0 };
        AgingMap {
            map: HashMap::with_capacity_and_hasher(room, hasher),
            // One more: an insert pushes before it evicts.
            order: VecDeque::with_capacity(cap.min(PRESIZE_MAX) + 1),
            next_gen: 0,
            cap,
            max_age: max_age.min(MAX_AGE).as_millis() as u32,
            base: Instant::now(),
            presized,
        }
    }

    fn millis(&self, t: Instant) -> u32 {
        // Truncated to 32 bits on purpose: ages are differences, taken with wrapping.
        t.saturating_duration_since(self.base).as_millis() as u32
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Inserts or replaces `key`, which becomes the newest entry. Entries pushed out by the cap
    /// are passed to `evicted`. With [`Sizing::QuarterFull`], the insert that finds the map a
    /// quarter full first gives the table its final size, moving every entry.
    pub fn insert(&mut self, key: K, value: V, now: Instant, mut evicted: impl FnMut(K, V)) {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let at = self.millis(now);
        if !self.presized && self.map.len() >= self.cap / 4 {
            self.map
                .reserve(final_room(self.cap).saturating_sub(self.map.len()));
            self.presized = true;
        }
        self.map.insert(key.clone(), Entry { value, at, gen });
        self.order.push_back((key, gen));
        while self.map.len() > self.cap {
            match self.pop_oldest() {
                Some((k, v)) => evicted(k, v),
                None => break,
            }
        }
        self.compact_if_stale();
    }

    /// Removes `key`; returns its value and how long it had been in the map at `now`.
    pub fn remove(&mut self, key: &K, now: Instant) -> Option<(V, Duration)> {
        let e = self.map.remove(key)?;
        let age = self.millis(now).wrapping_sub(e.at);
        self.compact_if_stale();
        Some((e.value, Duration::from_millis(u64::from(age))))
    }

    /// Removes every entry older than the age limit at `now`, oldest first.
    pub fn expire(&mut self, now: Instant, mut expired: impl FnMut(K, V)) {
        let now = self.millis(now);
        while let Some((key, gen)) = self.order.front() {
            match self.map.get(key) {
                Some(e) if e.gen == *gen => {
                    if now.wrapping_sub(e.at) < self.max_age {
                        break;
                    }
                    if let Some((key, v)) = self.pop_oldest() {
                        expired(key, v);
                    }
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Removes and returns the oldest entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some((key, gen)) = self.order.pop_front() {
            // One look-up: the queue's entry is live if the map holds the key from that insert.
            if let std::collections::hash_map::Entry::Occupied(e) = self.map.entry(key) {
                if e.get().gen == gen {
                    let (key, e) = e.remove_entry();
                    return Some((key, e.value));
                }
            }
        }
        None
    }

    fn compact_if_stale(&mut self) {
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(k, gen)| map.get(k).is_some_and(|e| e.gen == *gen));
        }
    }
}

/// The entries a table has room for once it has its final size ([`Sizing`]).
fn final_room(cap: usize) -> usize {
    2 * cap.min(PRESIZE_MAX)
}

/// Hashing for keys that are already uniform 64-bit hashes made with a secret key (the
/// correlation keys): the key is its own hash, so a table operation hashes nothing again.
pub type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// The [`Hasher`] of [`Prehashed`]: passes a `u64` through.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are meant; anything else still hashes, just not well.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a table with `cap` entries and then keeps evicting, as the correlation table does
    /// under a steady stream of requests that get no response; returns the table's capacity
    /// when made, when it was full, and the most it had after that.
    fn fill_and_churn(cap: usize, sizing: Sizing) -> (usize, usize, usize) {
        let mut m: AgingMap<u64, (), Prehashed> =
            AgingMap::with_hasher(cap, Duration::from_secs(300), sizing, Prehashed::default());
        let made = m.map.capacity();
        let now = Instant::now();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let (mut full, mut most) = (0, 0);
        for i in 0..20 * cap {
            // xorshift: keys as uniform as the keyed hashes the tables hold.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.insert(x, (), now, |_, _| {});
            if i + 1 == cap {
                full = m.map.capacity();
            } else if i >= cap {
                most = most.max(m.map.capacity());
            }
        }
        assert_eq!(m.len(), cap);
        assert!(m.order.capacity() <= cap + 1 + 16);
        (made, full, most)
    }

    /// The daemon's tables have their final size from the start and never grow, however many
    /// tombstones their evictions leave (sized late, a full table doubled after 1.29 million
    /// inserts; and each growth moved every entry while requests waited).
    #[test]
    fn a_table_sized_at_start_never_grows() {
        let cap = 100_000;
        let (made, full, most) = fill_and_churn(cap, Sizing::AtStart);
        assert!(made >= 2 * cap, "sized for twice the cap when made: {made}");
        assert!(full <= made && most <= made, "grew: {made} → {full} → {most}");
    }

    /// `inspect`'s tables start small, take their final size once, and keep it.
    #[test]
    fn a_table_sized_when_a_quarter_full_starts_small_and_then_keeps_its_size() {
        let cap = 100_000;
        let (made, full, most) = fill_and_churn(cap, Sizing::QuarterFull);
        assert_eq!(made, 0, "nothing reserved when made");
        assert!(
            full >= 2 * cap,
            "sized for twice the cap by the time it is full: {full}"
        );
        assert!(most <= full, "grew after it was full: {full} → {most}");
    }

    #[tokio::test(start_paused = true)]
    async fn cap_and_age_evict_oldest_first() {
        let mut m = AgingMap::new(3, Duration::from_secs(10), Sizing::QuarterFull);
        let mut out = Vec::new();
        for i in 0..5 {
            m.insert(i, i * 10, Instant::now(), |k, _| out.push(k));
        }
        assert_eq!(out, vec![0, 1]);
        assert_eq!(m.len(), 3);
        assert_eq!(m.remove(&3, Instant::now()).map(|(v, _)| v), Some(30));
        tokio::time::advance(Duration::from_secs(5)).await;
        m.insert(9, 90, Instant::now(), |_, _| unreachable!());
        tokio::time::advance(Duration::from_secs(6)).await;
        let mut expired = Vec::new();
        m.expire(Instant::now(), |k, _| expired.push(k));
        assert_eq!(expired, vec![2, 4]);
        assert_eq!(m.get(&9), Some(&90));
    }

    #[tokio::test(start_paused = true)]
    async fn ages_stay_right_when_the_32_bit_millisecond_clock_wraps() {
        // The settings allow no duration over a week, well inside what 32 bits tell apart.
        assert!(MAX_AGE > Duration::from_secs(7 * 24 * 3600));
        let mut m = AgingMap::new(10, Duration::from_secs(5), Sizing::AtStart);
        // 49.7 days after the map was made, a second before the wrap.
        tokio::time::advance(Duration::from_millis(u64::from(u32::MAX) - 1_000)).await;
        m.insert(1, (), Instant::now(), |_, _| unreachable!());
        m.insert(2, (), Instant::now(), |_, _| unreachable!());
        tokio::time::advance(Duration::from_secs(3)).await;
        m.expire(Instant::now(), |_, _| {
            panic!("expired 3 s after insert, across the wrap")
        });
        assert_eq!(
            m.remove(&2, Instant::now()).map(|(_, age)| age),
            Some(Duration::from_secs(3))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        let mut expired = Vec::new();
        m.expire(Instant::now(), |k, _| expired.push(k));
        assert_eq!(expired, vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_queue_stays_bounded_under_churn() {
        let mut m = AgingMap::new(100, Duration::from_secs(3600), Sizing::QuarterFull);
        for i in 0..100_000u64 {
            m.insert(i, (), Instant::now(), |_, _| {});
            m.remove(&i, Instant::now());
        }
        assert_eq!(m.len(), 0);
        assert!(m.order.len() <= 2 * m.len() + 1025);
    }
}
