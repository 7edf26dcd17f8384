//! An insertion-ordered map with a size cap and an age limit: the bounded memory behind the
//! correlation table and the duplicate window.
//!
//! Entries leave oldest first, when they are older than the age limit or when the map is over its
//! cap; each eviction is handed to the caller to count. Removal by key is O(1); the order queue
//! keeps stale entries for removed keys and is compacted when they outnumber the live ones.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// A map whose entries age out, oldest first.
#[derive(Debug)]
pub struct AgingMap<K, V> {
    map: HashMap<K, Entry<V>>,
    order: VecDeque<(K, u64)>,
    next_gen: u64,
    cap: usize,
    max_age: Duration,
    /// Times are kept as milliseconds after this, half the size of an `Instant`.
    base: Instant,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Milliseconds after `base` when it was inserted.
    at: u64,
    gen: u64,
}

impl<K: Hash + Eq + Clone, V> AgingMap<K, V> {
    /// At most `cap` entries, none older than `max_age`.
    pub fn new(cap: usize, max_age: Duration) -> Self {
        AgingMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_gen: 0,
            cap: cap.max(1),
            max_age,
            base: Instant::now(),
        }
    }

    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Inserts or replaces `key`, which becomes the newest entry. Entries pushed out by the cap
    /// are passed to `evicted`.
    pub fn insert(&mut self, key: K, value: V, now: Instant, mut evicted: impl FnMut(K, V)) {
        let gen = self.next_gen;
        self.next_gen += 1;
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

    /// Removes `key`; returns its value and when it was inserted.
    pub fn remove(&mut self, key: &K) -> Option<(V, Instant)> {
        let e = self.map.remove(key)?;
        self.compact_if_stale();
        Some((e.value, self.base + Duration::from_millis(e.at)))
    }

    /// Removes every entry older than the age limit at `now`, oldest first.
    pub fn expire(&mut self, now: Instant, mut expired: impl FnMut(K, V)) {
        let now = self.millis(now);
        let max_age = self.max_age.as_millis() as u64;
        while let Some((key, gen)) = self.order.front() {
            match self.map.get(key) {
                Some(e) if e.gen == *gen => {
                    if now.saturating_sub(e.at) < max_age {
                        break;
                    }
                    let (key, _) = self.order.pop_front().expect("front exists");
                    let e = self.map.remove(&key).expect("live entry");
                    expired(key, e.value);
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
            if self.map.get(&key).is_some_and(|e| e.gen == gen) {
                let e = self.map.remove(&key).expect("live entry");
                return Some((key, e.value));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cap_and_age_evict_oldest_first() {
        let mut m = AgingMap::new(3, Duration::from_secs(10));
        let mut out = Vec::new();
        for i in 0..5 {
            m.insert(i, i * 10, Instant::now(), |k, _| out.push(k));
        }
        assert_eq!(out, vec![0, 1]);
        assert_eq!(m.len(), 3);
        assert_eq!(m.remove(&3).map(|(v, _)| v), Some(30));
        tokio::time::advance(Duration::from_secs(5)).await;
        m.insert(9, 90, Instant::now(), |_, _| unreachable!());
        tokio::time::advance(Duration::from_secs(6)).await;
        let mut expired = Vec::new();
        m.expire(Instant::now(), |k, _| expired.push(k));
        assert_eq!(expired, vec![2, 4]);
        assert_eq!(m.get(&9), Some(&90));
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_queue_stays_bounded_under_churn() {
        let mut m = AgingMap::new(100, Duration::from_secs(3600));
        for i in 0..100_000u64 {
            m.insert(i, (), Instant::now(), |_, _| {});
            m.remove(&i);
        }
        assert!(m.is_empty());
        assert!(m.order.len() <= 2 * m.len() + 1025);
    }
}
