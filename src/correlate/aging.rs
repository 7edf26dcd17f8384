//! An insertion-ordered map with a size cap and an age limit: the bounded memory behind the
//! correlation table and the duplicate window.
//!
//! Entries leave oldest first, when they are older than the age limit or when the map is over its
//! cap; each eviction is handed to the caller to count. Removal by key is O(1); the order queue
//! keeps stale entries for removed keys and is compacted when they outnumber the live ones.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// The most entries a map takes; generations (32 bits) cannot repeat within a queue this long.
pub const MAX_CAP: usize = 1 << 30;
/// The oldest age a map tells apart: times are 32-bit milliseconds, which wrap after 49 days.
pub const MAX_AGE: Duration = Duration::from_millis(u32::MAX as u64 / 2);
/// Caps up to this get their final table when the map is made (see [`AgingMap::with_hasher`]);
/// larger ones grow as they fill.
const PRESIZE_MAX: usize = 1 << 19;

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
    /// [`MAX_AGE`]).
    pub fn new(cap: usize, max_age: Duration) -> Self {
        Self::with_hasher(cap, max_age, RandomState::new())
    }
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher> AgingMap<K, V, S> {
    /// [`AgingMap::new`] with keys hashed by `hasher`.
    ///
    /// The table gets its final size here, room for twice the cap (up to [`PRESIZE_MAX`]): a
    /// full table that keeps evicting fills with tombstones, which hashbrown clears in place
    /// only while it is at most half full; fuller, it doubles, briefly holding both sizes.
    /// Sized so, it never grows again. And never while records wait: growing moves every entry
    /// at once, on the thread that carries the requests — 2 to 4 ms for the tables' default
    /// caps, which was the daemon's longest answer in the first seconds after a start
    /// (bench/RESULTS.md). The memory is reserved, not touched: pages become resident as
    /// entries land on them, so a table that fills (the steady state of any sensor sending a
    /// few hundred records a second) ends where it would have anyway.
    pub fn with_hasher(cap: usize, max_age: Duration, hasher: S) -> Self {
        let cap = cap.clamp(1, MAX_CAP);
        AgingMap {
            map: HashMap::with_capacity_and_hasher(2 * cap.min(PRESIZE_MAX), hasher),
            // One more: an insert pushes before it evicts.
            order: VecDeque::with_capacity(cap.min(PRESIZE_MAX) + 1),
            next_gen: 0,
            cap,
            max_age: max_age.min(MAX_AGE).as_millis() as u32,
            base: Instant::now(),
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
    /// are passed to `evicted`.
    pub fn insert(&mut self, key: K, value: V, now: Instant, mut evicted: impl FnMut(K, V)) {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let at = self.millis(now);
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

    /// A table that fills and then keeps evicting, as the correlation table does under a steady
    /// stream of requests that get no response: it has its final size from the start and never
    /// grows (each growth moved every entry while requests waited; and a full table, sized
    /// late, doubled again after 1.29 million inserts, from its tombstones).
    #[test]
    fn a_table_has_its_final_size_from_the_start_and_keeps_it() {
        let cap = 100_000;
        let mut m: AgingMap<u64, (), Prehashed> =
            AgingMap::with_hasher(cap, Duration::from_secs(300), Prehashed::default());
        let most = m.map.capacity();
        assert!(most >= 2 * cap, "sized for twice the cap when made: {most}");
        let now = Instant::now();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for i in 0..20 * cap {
            // xorshift: keys as uniform as the keyed hashes the tables hold.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.insert(x, (), now, |_, _| {});
            assert!(
                m.map.capacity() <= most,
                "grew after {i} inserts: {}",
                m.map.capacity()
            );
        }
        assert_eq!(m.len(), cap);
        assert!(m.order.capacity() <= cap + 1 + 16);
    }

    #[tokio::test(start_paused = true)]
    async fn cap_and_age_evict_oldest_first() {
        let mut m = AgingMap::new(3, Duration::from_secs(10));
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
        let mut m = AgingMap::new(10, Duration::from_secs(5));
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
        let mut m = AgingMap::new(100, Duration::from_secs(3600));
        for i in 0..100_000u64 {
            m.insert(i, (), Instant::now(), |_, _| {});
            m.remove(&i, Instant::now());
        }
        assert_eq!(m.len(), 0);
        assert!(m.order.len() <= 2 * m.len() + 1025);
    }
}
