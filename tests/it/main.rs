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
mod live_prometheus;
mod load;
mod log_format;
mod metrics;
mod proxy_protocol;
mod redaction;
mod rejects;
mod report;
mod scale_out;
mod seal;
mod send;
mod settings_errors;
mod socket_activation;
mod systemd_notify;
mod trust;
mod vendor_workflow;
mod worker_threads;

/// Every integration test is in this binary. A `.rs` file directly in `tests/`, or a
/// `tests/DIR/main.rs`, would be a test binary of its own (Cargo finds them): make it a module here.
#[test]
fn no_other_test_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let others: Vec<_> = std::fs::read_dir(&tests)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "rs") || (p.join("main.rs").is_file() && !p.ends_with("it"))
        })
        .collect();
    assert!(
        others.is_empty(),
        "{others:?}: make each a module of tests/it/main.rs"
    );
}
