//! Diagnostics: `tracing` to stderr, never stdout (stdout carries records and nothing else).
//!
//! The filter is `RUST_LOG`-style without spans: a level (`info`), or `target=level` pairs
//! (`warn,ml_api_logger=debug`). It does not decide what is logged where; modules do.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Checks a filter string; the reason is for a settings error.
pub fn check_filter(filter: &str) -> Result<(), String> {
    Targets::from_str(filter)
        .map(|_| ())
        .map_err(|e| format!("not a log filter ({e})"))
}

/// Installs the stderr subscriber. Call once, before anything logs.
pub fn init(filter: &str) {
    let targets =
        Targets::from_str(filter).unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second call (tests that start servers in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(targets))
        .try_init();
}
