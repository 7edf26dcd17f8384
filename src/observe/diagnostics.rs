//! Diagnostics: `tracing` to stderr, never stdout (stdout carries records and nothing else).
//!
//! The filter is `RUST_LOG`-style without spans: a level (`info`), or `target=level` pairs
//! (`warn,ml_api_logger=debug`). Lines are text, or one JSON object each (`--log-format json`)
//! for journald and log shippers. It does not decide what is logged where; modules do.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// How each diagnostic line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2025-01-01T00:00:00.000000Z  INFO message`, for people.
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","message":…}` and the event's fields, for machines.
    Json,
}

impl FromStr for LogFormat {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("not a log format (text or json)"),
        }
    }
}

/// Checks a filter string; the reason is for a settings error.
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    Targets::from_str(filter)
        .map(|_| ())
        .map_err(|e| format!("not a log filter ({e})"))
}

/// Installs the stderr subscriber in `format`. Call once, before anything logs.
pub fn init_with(filter: &str, format: LogFormat) {
    let targets =
        Targets::from_str(filter).unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second call (tests that start servers in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                layer
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(targets),
            )
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(targets),
            )
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
        assert!("logfmt".parse::<LogFormat>().is_err());
    }
}
