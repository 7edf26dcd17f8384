//! The integration tests: one test binary, one module per feature, helpers in `common`.
//!
//! One binary rather than one per file: each `tests/*.rs` would be its own crate linking the
//! whole library again, and a fresh `cargo test` spent most of its time on that (matklad,
//! "Delete Cargo Integration Tests"). Every test drives the real `ml_api_logger` binary as a
//! user would: the real daemon on port 0, a real TLS client, real files, real signals.

mod common;

mod access;
mod annotate;
mod bench_tools;
mod cert;
mod completions;
mod correlation;
mod embedded_cert;
mod endpoints;
mod examples;
mod faults;
mod hostile;
mod inspect;
mod limits;
mod load;
mod log_format;
mod metrics;
mod rejects;
mod send;
mod settings_errors;
mod socket_activation;
mod systemd_notify;
mod vendor_workflow;
mod worker_threads;
