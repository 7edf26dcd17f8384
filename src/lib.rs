//! `ml_api_logger`: an HTTPS daemon that receives the API interaction logs an ExtraHop sensor
//! exports, checks each record against the documented format, and appends every record as one
//! line of JSON to stdout or a file, acknowledging only what has been written.
//!
//! The modules, in the order a record meets them:
//!
//! - [`settings`] — the command line and `LOGGER_*` variables, checked into `Settings`.
//! - [`daemon`] — start (certificate, output, listeners, the start line), serve, stop; reload,
//!   the watchdog and other background duties.
//! - [`activation`] — listening sockets passed by systemd (`LISTEN_FDS`).
//! - [`server`] — binding, accept loops, the connection cap, the graceful stop.
//! - [`connection`] — one connection: TLS handshake, HTTP/1.1 or HTTP/2, header and idle timeouts.
//! - [`tls`] — PEM loading and its errors, the rustls configuration.
//! - [`certgen`] — a CA and a server certificate (the embedded default, and `cert`).
//! - [`x509`] — subject and validity of a certificate, for the operator.
//! - [`http`] — routes and the `POST /log` flow.
//! - [`decode`] — `gzip`/`deflate` bodies under the size limit.
//! - [`batch`] — a body split into records (single, array, NDJSON).
//! - [`record`] — the record format and conformance.
//! - [`quick`] — the common record checked in one pass, the full check when unsure.
//! - [`ingest`] — records checked and minified into lines; every refusal and its status.
//! - [`minify`] — whitespace removal that changes nothing else.
//! - [`scan`] — the bytes that matter in JSON text, found eight at a time.
//! - [`output`] — one writer at a time: gathered writes, fsync, rollback, partial-line recovery.
//! - [`allow`] — the address allowlist, checked before the handshake.
//! - [`budget`] — the daemon-wide memory budget for request bodies.
//! - [`ratelimit`] — per-connection failures logged at most a few times a minute.
//! - [`correlate`], [`aging`] — requests matched with responses, duplicates, bounded tables.
//! - [`rejects`] — the file of refused bodies.
//! - [`stats`] — counters.
//! - [`metrics`] — the counters in the Prometheus text format.
//! - [`admin`] — the plain-HTTP listener for `/metrics` and `/healthz`.
//! - [`notify`] — `sd_notify`: READY, RELOADING, STOPPING, STATUS, WATCHDOG.
//! - [`shutdown`] — stop signals.
//! - [`diagnostics`] — `tracing` to stderr, as text or JSON lines.
//! - [`timefmt`] — RFC 3339 and civil time.
//!
//! The operator's commands, one module each, and what only they use:
//!
//! - [`cmd_cert`] — `cert`: a CA and a server certificate in one step (the work is [`certgen`]'s).
//! - [`cmd_send`] — `send`: records POSTed over TLS, with batches, concurrency and retries.
//! - [`client_tls`] — whom `send` trusts: a CA file, the system's roots, or (`--insecure`) anyone.
//! - [`cmd_inspect`] — `inspect`: what a log holds; pairs; clean NDJSON.
//! - [`reader`] — the records of a stream of any size: NDJSON, arrays, concatenated JSON.
//! - [`progress`] — the progress line on a terminal.
//! - [`cmd_completions`], [`cmd_man`] — shell completions and the manual page, from the clap definitions.

#![forbid(unsafe_code)]

pub mod activation;
pub mod admin;
pub mod aging;
pub mod allow;
pub mod batch;
pub mod budget;
pub mod certgen;
pub mod client_tls;
pub mod cmd_cert;
pub mod cmd_completions;
pub mod cmd_inspect;
pub mod cmd_man;
pub mod cmd_send;
pub mod connection;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod diagnostics;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod minify;
pub mod notify;
pub mod output;
pub mod progress;
pub mod quick;
pub mod ratelimit;
pub mod reader;
pub mod record;
pub mod rejects;
pub mod scan;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod stats;
pub mod timefmt;
pub mod tls;
pub mod x509;
