//! A progress line on stderr for long work (`send` of a large file, `inspect` of a large log),
//! shown only when stderr is a terminal and only once the work has taken a second, redrawn at
//! most five times a second, and erased at the end so that the summary stands alone.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The progress line.
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A progress line, drawn only when stderr is a terminal.
    pub fn new() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// Time since the work started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Redraws the line with `text()` when it is time to.
    pub fn update(&mut self, text: impl FnOnce(Duration) -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = match self.last {
            None => now.duration_since(self.started) >= Duration::from_secs(1),
            Some(t) => now.duration_since(t) >= Duration::from_millis(200),
        };
        if due {
            self.last = Some(now);
            self.drawn = true;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", text(now.duration_since(self.started)));
            let _ = err.flush();
        }
    }

    /// Erases the line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Bytes as `512 B`, `1.5 MiB`, `2.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A count per second over `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// The progress line of a command reading logs: `inspect: 1.2 GiB of 4.0 GiB (30%), N records,
/// 310 MiB/s` (without the total when the size is unknown, as for stdin).
pub fn reading_line(command: &str, done: u64, total: Option<u64>, records: u64, elapsed: Duration) -> String {
    let of = total
        .filter(|t| *t > 0)
        .map(|t| format!(" of {} ({:.0}%)", bytes(t), 100.0 * done as f64 / t as f64))
        .unwrap_or_default();
    format!(
        "{command}: {}{of}, {records} records, {}/s",
        bytes(done),
        bytes(rate(done, elapsed) as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reading_line_shows_the_share_only_when_the_size_is_known() {
        let line = reading_line("inspect", 1 << 30, Some(4 << 30), 7, Duration::from_secs(2));
        assert!(
            line.starts_with("inspect: ") && line.contains("(25%), 7 records, "),
            "{line}"
        );
        let line = reading_line("report", 1 << 20, None, 3, Duration::from_secs(1));
        assert!(line.starts_with("report: ") && !line.contains('%'), "{line}");
    }
}
