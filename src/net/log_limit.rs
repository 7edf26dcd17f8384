//! Quiet under attack: per-connection failures (handshake errors from scanners, refused peers,
//! timeouts) are logged at most a few times per interval, with a count of what was suppressed.
//!
//! Each kind of event has its own [`LogLimiter`]; it only decides whether to log now and how
//! many were held back since the last line. The caller logs.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets `burst` events through per `interval`; counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `burst` lines per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> LogLimiter {
        LogLimiter {
            burst,
            interval,
            state: Mutex::new(State {
                window_start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when this event should be logged, `n` being how many were suppressed before
    /// it; `None` when it should not.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
        {
            s.window_start = Some(now);
            s.logged = 0;
        }
        if s.logged < self.burst {
            s.logged += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// `" (N similar suppressed)"` when N > 0, for the end of a log line.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_counts_what_it_held_back() {
        let l = LogLimiter::new(3, Duration::from_secs(60));
        let got: Vec<Option<u64>> = (0..10).map(|_| l.check()).collect();
        assert_eq!(&got[..4], &[Some(0), Some(0), Some(0), None]);
        assert!(got[3..].iter().all(Option::is_none));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(l.check(), Some(7));
        assert_eq!(l.check(), Some(0));
        assert_eq!(suppressed_note(7), " (7 similar suppressed)");
    }
}
