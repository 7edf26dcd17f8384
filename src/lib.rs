//! `ml_api_logger`: an HTTPS daemon that receives the API interaction logs an ExtraHop sensor
//! exports, checks each record against the documented format, and appends every record as one
//! line of JSON to stdout or a file, acknowledging only what has been written.
//!
//! The subsystems, in the order a record meets them:
//!
//! - [`cli`], [`settings`] — the command line; the daemon's `LOGGER_*` settings checked into
//!   `Settings`, and the units they are written in.
//! - [`daemon`] — start, serve, stop: the certificate, the output, the listeners, the start
//!   line; background duties, `SIGHUP` reload, systemd's sockets and notifications, stop signals.
//! - [`net`] — listeners and the connection cap, the allowlist, one connection's TLS handshake
//!   and HTTP protocol under their deadlines, the TLS configuration.
//! - [`http`] — routes and answers of the TLS listener, body reading, the admin listener.
//! - [`ingest`] — one request body to written records: decode, split, check, write, commit;
//!   every refusal and its status.
//! - [`record`] — the record format and conformance, and the one-pass check of the common record.
//! - [`redact`] — credentials in header values written as keyed marks; the installation's key.
//! - [`json`] — JSON text as bytes: scanning, minifying, streaming the records of a log.
//! - [`correlate`] — requests matched with responses, duplicates, bounded aging tables.
//! - [`summary`] — what a log holds, counted record by record: shared by `inspect` and `report`.
//! - [`report`] — the audit report: what a log shows gathered, then written as one HTML page.
//! - [`output`] — one writer at a time: gathered writes, fsync, rollback, torn-tail recovery.
//! - [`seal`] — forward-secure seals on the output: keys and state, entries, the sealer the
//!   output writer feeds, the verifier.
//! - [`rejects`] — the file of refused bodies.
//! - [`observe`] — counters, metrics, diagnostics, time formats.
//! - [`certs`] — certificates made (the embedded default, `cert`), described, and trusted by `send`.
//! - [`commands`] — the operator's other commands: `cert`, `send`, `inspect`, `report`,
//!   `seal-keys`, `verify`, `completions`, `man`.
//!
//! Public is only what the binary, the benchmark programs (`bench/`), the fuzz targets
//! (`fuzz/`) and the integration tests use; everything else is `pub(crate)`, so the compiler
//! finds what nothing uses. These pages are written for whoever works on the daemon and link
//! the private modules as well: `cargo doc --no-deps --document-private-items`.

#![forbid(unsafe_code)]
// The pages above and the public modules' pages name the private modules and items they work
// with; those links resolve in the documentation built with `--document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod certs;
pub mod cli;
pub mod commands;
pub(crate) mod correlate;
pub mod daemon;
pub(crate) mod http;
pub mod ingest;
pub mod json;
pub mod net;
pub mod observe;
pub(crate) mod output;
pub mod record;
pub mod redact;
pub(crate) mod rejects;
pub(crate) mod report;
pub mod seal;
pub mod settings;
pub(crate) mod summary;
