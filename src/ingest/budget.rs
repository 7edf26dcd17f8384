//! The memory budget for request bodies: every byte of a body being read or decoded is counted
//! against one daemon-wide budget, so no mix of large, slow or compressed bodies can take more
//! memory than it allows.
//!
//! A request holds what it took until it is answered. When the budget is spent, reading waits
//! briefly (others finish and give back), then the request is refused with `503` and
//! `Retry-After`; decoding, which runs on a blocking thread, does not wait. The first 64 KiB of
//! every body come from a reserve of their own, so a sensor's small records are never starved by
//! a few huge or hostile bodies. Records waiting for the writer are bounded separately, by the
//! output queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request bodies held in memory at once, daemon-wide.
pub const BODY_BUDGET: usize = 64 << 20;

/// Of [`BODY_BUDGET`], the reserve for the first [`SMALL_PART`] bytes of each body.
const SMALL_RESERVE: usize = 16 << 20;

/// The part of each body that comes from the small reserve.
const SMALL_PART: usize = 64 << 10;

/// How long reading a body waits for budget before the request is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// The budget was spent and did not come back in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server busy: too many large bodies in flight")]
pub struct Exhausted;

/// The daemon-wide budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    /// For the first [`SMALL_PART`] bytes of each body.
    small: Arc<Semaphore>,
    /// For the rest.
    large: Arc<Semaphore>,
}

/// What one request has taken; given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    small: Option<OwnedSemaphorePermit>,
    large: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn add(slot: &mut Option<OwnedSemaphorePermit>, p: OwnedSemaphorePermit) {
        match slot {
            Some(held) => held.merge(p),
            None => *slot = Some(p),
        }
    }

    fn small_bytes(&self) -> usize {
        self.small.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.small_bytes() + self.large.as_ref().map_or(0, |p| p.num_permits())
    }

    /// How `n` more bytes split between the small reserve and the large part.
    fn split(&self, n: usize) -> (usize, usize) {
        let small = n.min(SMALL_PART.saturating_sub(self.small_bytes()));
        (small, n - small)
    }
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Budget {
        let small = SMALL_RESERVE.min(bytes / 4);
        Budget {
            small: Arc::new(Semaphore::new(small)),
            large: Arc::new(Semaphore::new(bytes - small)),
        }
    }

    fn permits(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Takes `n` bytes, waiting up to [`BUDGET_WAIT`].
    pub async fn take(&self, held: &mut Held, n: usize) -> Result<(), Exhausted> {
        let (small, large) = held.split(n);
        for (sem, want, slot) in [
            (&self.small, small, &mut held.small),
            (&self.large, large, &mut held.large),
        ] {
            if want > 0 {
                let permits = Self::permits(want);
                // Almost always there is room: no timer then.
                let p = match sem.clone().try_acquire_many_owned(permits) {
                    Ok(p) => p,
                    Err(_) => tokio::time::timeout(BUDGET_WAIT, sem.clone().acquire_many_owned(permits))
                        .await
                        .map_err(|_| Exhausted)?
                        .map_err(|_| Exhausted)?,
                };
                Held::add(slot, p);
            }
        }
        Ok(())
    }

    /// Takes `n` bytes now, or fails.
    pub fn try_take(&self, held: &mut Held, n: usize) -> Result<(), Exhausted> {
        let (small, large) = held.split(n);
        for (sem, want, slot) in [
            (&self.small, small, &mut held.small),
            (&self.large, large, &mut held.large),
        ] {
            if want > 0 {
                let p = sem
                    .clone()
                    .try_acquire_many_owned(Self::permits(want))
                    .map_err(|_| Exhausted)?;
                Held::add(slot, p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn taken_until_dropped_and_small_bodies_are_not_starved() {
        let b = Budget::new(BODY_BUDGET);
        let mut big = Held::default();
        b.take(&mut big, BODY_BUDGET - SMALL_RESERVE + SMALL_PART)
            .await
            .unwrap();
        assert_eq!(big.bytes(), BODY_BUDGET - SMALL_RESERVE + SMALL_PART);
        // The large part is spent: another big body waits, then is refused...
        let mut other = Held::default();
        assert_eq!(b.take(&mut other, 2 * SMALL_PART).await, Err(Exhausted));
        // ...while a small record still gets through.
        let mut small = Held::default();
        b.take(&mut small, 512).await.unwrap();
        drop(big);
        let mut again = Held::default();
        b.take(&mut again, 4 << 20).await.unwrap();
        b.try_take(&mut again, 1 << 20).unwrap();
    }
}
