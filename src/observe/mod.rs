//! What the daemon tells its operator: counters and histograms ([`stats`]), the same in the
//! Prometheus text format ([`metrics`]), diagnostics to stderr ([`diagnostics`]), and the time
//! formats they print ([`timefmt`]).

pub mod diagnostics;
pub(crate) mod metrics;
pub(crate) mod stats;
pub(crate) mod timefmt;
