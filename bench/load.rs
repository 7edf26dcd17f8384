//! The benchmark's load generator: HTTPS `POST /log` requests in which every record has its own
//! `sequence`.
//!
//! h2load and wrk post the same body again and again. The daemon answers a repeated record (the
//! same `sequence`, the same bytes, the same sender) as a sender's retry and does not write it a
//! second time, so with them the benchmark would measure a path that never writes. This tool
//! copies one prepared template per request and overwrites the sequence digits in place: S+1,
//! S+2, … from one counter shared by all connections. There is no JSON serialization and no
//! allocation per record, because the tool runs on the same 2 cores as the server it loads.
//!
//! Three modes, all over TLS (aws-lc-rs, every connection a full handshake, session resumption
//! off):
//! - keep-alive (the default): `--connections` connections, HTTP/1.1 or HTTP/2 (`--http 2`,
//!   ALPN `h2`, `--streams` requests in flight on each), for `--warmup` and then `--duration`.
//!   Closed loop by default: each stream sends its next request when the answer to the last one
//!   is in. With `--rate R` the loop is open, as sensors send: request `k` of stream `i` (of `n`)
//!   is due at `(i + k·n) / R` seconds after the start, whatever the answers' pace. A request
//!   whose stream was still waiting for an answer when it fell due is sent at once and its
//!   latency counts from when it was due (so a slow answer is charged for the requests it held
//!   back, not hidden by them); one sent on time counts from when it was sent (so the tool's own
//!   timer, of millisecond resolution, is not charged to the server);
//! - `--new-connection-per-request`: each worker connects, does a full TLS handshake, sends one
//!   request (`Connection: close`), reads the answer and closes, to measure handshakes/s; here a
//!   request's latency runs from the TCP connect to the end of the answer;
//! - `--idle N --hold D`: opens N connections (at most 100 handshakes at a time), sends one
//!   request on each, holds them open and idle for D, then closes them. The caller must raise
//!   the open-files limit first (`ulimit -n`): the tool stops with a clear message on `EMFILE`.
//!
//! Every body is `--batch` records: the record alone when 1, else NDJSON (one line per record,
//! each ending in `\n`). A non-2xx answer or a failed connection is counted, never fatal; the
//! connection is made again after 100 ms. At the end the tool stops issuing requests and waits
//! for those in flight (each bounded by `--timeout`): their 2xx answers count in `sent_total`,
//! not in the measured figures, so `sent_total` is every 2xx, warm-up included: `sent_total` times
//! `--batch` is the number of lines the server must have written (a request with no answer
//! within `--timeout` is an error, and may or may not have been written). Latencies (of the 2xx
//! answers in the measured period) are kept exactly, in microseconds. The one line on standard
//! output, printed after every run that started:
//!
//! ```text
//! load-summary mode=keepalive|new-connection|idle http=1|2 connections=N streams=M batch=K
//!   duration_s=F requests=N records=N non2xx=N errors=N rps=F records_per_s=F mb_per_s=F
//!   p50_ms=F p99_ms=F p999_ms=F max_ms=F offered_rps=F|- sent_total=N first_sequence=N
//!   last_sequence=N
//! ```
//!
//! (one line; `non2xx` and `errors` cover the whole run, warm-up and drain included; in idle mode
//! `errors` also counts the connections the server closed during the hold). Progress and
//! problems go to standard error. Exit status: 0 after a run, 1 when something stopped it (e.g.
//! too many open files, an untrusted certificate, no `h2`), 2 for bad arguments.
//!
//! The server's certificate is verified against the CA certificates in `--ca`, as the daemon's
//! own `send` command does (`client_tls`), for the name `--server-name`.
//!
//! Built with `cargo build --release --example load`; e.g.
//! `load --ca cert.pem --body bench/sample-request.json --duration 15s https://127.0.0.1:8443/log`.

use std::error::Error as StdError;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ml_api_logger::certs::client_tls::{self, Trust};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// Wait before making a failed connection again.
const PAUSE: Duration = Duration::from_millis(100);
/// Idle mode: handshakes in progress at once, so that the server's accept backlog holds them.
const IDLE_OPEN_AT_ONCE: usize = 100;
/// Idle mode: tries per connection before it is given up.
const IDLE_ATTEMPTS: u32 = 5;
/// The largest request body `--batch` may make.
const MAX_BODY: usize = 64 << 20;
/// Sequences stay below 10^18, so no sum of them overflows.
const MAX_DIGITS: usize = 18;
/// The longest duration accepted anywhere.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Load generator for the benchmark: HTTPS POSTs whose records each carry their own sequence.
#[derive(Debug, Parser)]
#[command(name = "load", version)]
struct Cli {
    /// Where to POST, e.g. https://127.0.0.1:8443/log
    #[arg(value_name = "URL")]
    url: String,
    /// PEM certificate(s) to trust: the server's own (self-signed) certificate or its CA
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// Name the server's certificate must carry (also sent as SNI)
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    server_name: String,
    /// 1: HTTP/1.1 with keep-alive; 2: HTTP/2 (ALPN h2)
    #[arg(long, value_name = "1|2", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    http: u8,
    /// Connections (workers with --new-connection-per-request)
    #[arg(long, value_name = "N", default_value_t = 32, conflicts_with = "idle",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Requests in flight per connection (HTTP/2 only; 1 with HTTP/1.1)
    #[arg(long, value_name = "M", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams: u32,
    /// Measured period: 15s, 500ms, 2m, 1h (a bare number is seconds)
    #[arg(long, value_name = "D", value_parser = parse_positive_duration,
          required_unless_present = "idle", conflicts_with = "idle")]
    duration: Option<Duration>,
    /// Warm-up before the measured period: sent, not counted in the measured figures
    #[arg(long, value_name = "D", default_value = "0", value_parser = parse_duration, conflicts_with = "idle")]
    warmup: Duration,
    /// One compact one-line JSON record containing "sequence":<digits>
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// Records per request; more than one are sent as NDJSON
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch: u32,
    /// Sequences used are S+1, S+2, …; they must have as many digits as the template's
    #[arg(long, value_name = "S", default_value_t = 200_000_000)]
    first_sequence: u64,
    /// Every request on a new connection with a full TLS handshake, closed after the answer
    #[arg(long, conflicts_with = "idle")]
    new_connection_per_request: bool,
    /// Open N connections, one request on each, and hold them idle for --hold
    #[arg(long, value_name = "N", requires = "hold", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    idle: Option<u32>,
    /// How long --idle holds its connections open
    #[arg(long, value_name = "D", requires = "idle", value_parser = parse_positive_duration)]
    hold: Option<Duration>,
    /// Longest wait for a connection, a handshake or an answer
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,
    /// Open loop: this many requests per second in all, on a fixed schedule, whatever the
    /// answers' pace (keep-alive mode only; see the module doc)
    #[arg(long, value_name = "R", conflicts_with_all = ["idle", "new_connection_per_request"],
          value_parser = parse_rate)]
    rate: Option<f64>,
    /// Runtime worker threads (the tool shares the machine with the server it loads)
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

/// `0`, `15`, `15s`, `500ms`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 15s, 500ms, 2m)"))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(format!("{s:?} is not a duration (e.g. 15s, 500ms, 2m)")),
    };
    match d {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{s:?} is too long (a week at most)")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (1.0..=10_000_000.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?}: not a rate (1 to 10000000 requests per second)")),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// Bad arguments: reported in one line, exit status 2.
#[derive(Debug, thiserror::Error)]
enum Bad {
    #[error("{0}")]
    Args(String),
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("--body {}: {reason}", path.display())]
    Body { path: PathBuf, reason: String },
    #[error("--first-sequence {first}: {reason}")]
    Sequence { first: u64, reason: String },
    /// `--ca` unusable, or rustls refused the configuration (the message says which).
    #[error("{0}")]
    Tls(String),
}

/// What stops a run: exit status 1.
#[derive(Debug, Clone, thiserror::Error)]
enum Fatal {
    #[error("too many open files (EMFILE/ENFILE): raise the limit before starting, e.g. `ulimit -n 20000`")]
    TooManyFiles,
    #[error("the server did not choose HTTP/2 (ALPN gave {0}); use --http 1 or offer h2")]
    NotH2(String),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error(
        "ran out of {width}-digit sequences (the last is {max}): give a lower --first-sequence or a \
         shorter run"
    )]
    SequencesExhausted { width: usize, max: u64 },
}

/// Why a connection or a request failed.
enum Failure {
    /// Counted; the connection is made again.
    Retry(String),
    /// Ends the run.
    Fatal(Fatal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    NewConnection,
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keepalive",
            Mode::NewConnection => "new-connection",
            Mode::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// The request body: `records` copies of the record, with where each one's digits are.
#[derive(Debug, Clone)]
struct Template {
    bytes: Vec<u8>,
    /// Offset of each record's sequence digits in `bytes`.
    slots: Vec<usize>,
    /// Digits of a sequence.
    width: usize,
    records: u64,
}

impl Template {
    /// Reads the record in `path` and lays out a body of `batch` records.
    fn load(path: &Path, batch: u32) -> Result<Template, Bad> {
        let bad = |reason: String| Bad::Body {
            path: path.to_path_buf(),
            reason,
        };
        let raw = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let record = raw
            .strip_suffix(b"\r\n")
            .or_else(|| raw.strip_suffix(b"\n"))
            .unwrap_or(&raw);
        if record.is_empty() {
            return Err(bad("empty".into()));
        }
        if record.contains(&b'\n') || record.contains(&b'\r') {
            return Err(bad("more than one line: give one compact JSON record".into()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(record).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Some(sequence) = value.get("sequence").and_then(serde_json::Value::as_u64) else {
            return Err(bad("not a JSON object with a whole-number \"sequence\"".into()));
        };
        let (at, width) = find_sequence(record).map_err(|e| bad(e.into()))?;
        if record[at..at + width] != *sequence.to_string().as_bytes() {
            return Err(bad(
                "its \"sequence\":<digits> is not the record's own (write it compactly)".into(),
            ));
        }
        if width > MAX_DIGITS {
            return Err(bad(format!(
                "the sequence has {width} digits; at most {MAX_DIGITS}"
            )));
        }
        let line = record.len() + usize::from(batch > 1);
        let size = line
            .checked_mul(batch as usize)
            .filter(|&n| n <= MAX_BODY)
            .ok_or_else(|| bad(format!("{batch} records make a body over {} MiB", MAX_BODY >> 20)))?;
        let mut bytes = Vec::with_capacity(size);
        let mut slots = Vec::with_capacity(batch as usize);
        for _ in 0..batch {
            slots.push(bytes.len() + at);
            bytes.extend_from_slice(record);
            if batch > 1 {
                bytes.push(b'\n');
            }
        }
        Ok(Template {
            bytes,
            slots,
            width,
            records: u64::from(batch),
        })
    }

    /// A body with the sequences `first`, `first + 1`, …, built in `buf` (whose memory is used
    /// again once the previous body is gone).
    fn fill(&self, buf: &mut BytesMut, first: u64) -> Bytes {
        buf.reserve(self.bytes.len());
        buf.extend_from_slice(&self.bytes);
        for (sequence, &at) in (first..).zip(&self.slots) {
            if let Some(digits) = buf.get_mut(at..at + self.width) {
                put_digits(digits, sequence);
            }
        }
        buf.split().freeze()
    }
}

/// Where the one `"sequence":<digits>` of a compact record is: (offset of the digits, count).
fn find_sequence(record: &[u8]) -> Result<(usize, usize), &'static str> {
    const KEY: &[u8] = b"\"sequence\":";
    let mut found = None;
    for start in 0..record.len().saturating_sub(KEY.len() - 1) {
        if !record[start..].starts_with(KEY) {
            continue;
        }
        let at = start + KEY.len();
        let width = record[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let after = record.get(at + width).copied();
        if width == 0 || !matches!(after, Some(b',' | b'}' | b' ')) {
            continue;
        }
        if found.is_some() {
            return Err("more than one \"sequence\":<digits> in it");
        }
        found = Some((at, width));
    }
    found.ok_or("no \"sequence\":<digits> in it (compact JSON, no space after the colon)")
}

/// Writes `n` into `digits`, right-aligned (the caller makes sure it has exactly that many).
fn put_digits(digits: &mut [u8], mut n: u64) {
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Digits of `n` in decimal.
fn digits_of(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Everything checked before the runtime starts.
struct Plan {
    mode: Mode,
    proto: Proto,
    connections: u32,
    streams: u32,
    warmup: Duration,
    duration: Duration,
    timeout: Duration,
    threads: u16,
    rate: Option<f64>,
    addr: SocketAddr,
    authority: String,
    uri: Uri,
    host: HeaderValue,
    server_name: ServerName<'static>,
    tls: Arc<ClientConfig>,
    template: Template,
    first_sequence: u64,
    max_sequence: u64,
}

impl Plan {
    fn new(cli: Cli) -> Result<Plan, Bad> {
        let proto = if cli.http == 2 { Proto::H2 } else { Proto::H1 };
        let mode = match (cli.idle, cli.new_connection_per_request) {
            (Some(_), _) => Mode::Idle,
            (None, true) => Mode::NewConnection,
            (None, false) => Mode::KeepAlive,
        };
        if cli.streams > 1 && (proto == Proto::H1 || mode != Mode::KeepAlive) {
            return Err(Bad::Args(
                "--streams above 1 needs --http 2 and keep-alive connections (no \
                 --new-connection-per-request, no --idle)"
                    .into(),
            ));
        }
        let (connections, duration) = match (cli.idle, cli.hold, cli.duration) {
            (Some(n), Some(hold), _) => (n, hold),
            (None, _, Some(d)) => (cli.connections, d),
            _ => return Err(Bad::Args("give --duration, or --idle N with --hold D".into())),
        };
        let url_bad = |reason: &str| Bad::Url {
            url: cli.url.clone(),
            reason: reason.into(),
        };
        let url: Uri = cli.url.parse().map_err(|_| url_bad("not a URL"))?;
        if url.scheme_str() != Some("https") {
            return Err(url_bad("must start with https://"));
        }
        let authority = url.authority().ok_or_else(|| url_bad("no host"))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(443);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| url_bad(&format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| url_bad(&format!("{host} has no address")))?;
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let uri = match proto {
            Proto::H1 => path.parse::<Uri>(),
            Proto::H2 => format!("https://{authority}{path}").parse::<Uri>(),
        }
        .map_err(|_| url_bad("not a usable path"))?;
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|_| url_bad("not a usable host"))?;
        let server_name = ServerName::try_from(cli.server_name.clone()).map_err(|_| {
            Bad::Args(format!(
                "--server-name {:?}: not a DNS name or IP",
                cli.server_name
            ))
        })?;
        let template = Template::load(&cli.body, cli.batch)?;
        let seq_bad = |reason: String| Bad::Sequence {
            first: cli.first_sequence,
            reason,
        };
        let first = cli
            .first_sequence
            .checked_add(1)
            .ok_or_else(|| seq_bad("too large".into()))?;
        if digits_of(first) != template.width {
            return Err(seq_bad(format!(
                "the first sequence, {first}, has {} digits but the template's has {}; every body \
                 must keep its size",
                digits_of(first),
                template.width
            )));
        }
        // 10^width - 1: width is at most MAX_DIGITS, so this fits.
        let max_sequence = 10u64.pow(template.width as u32) - 1;
        let last_of_first = first.saturating_add(template.records - 1);
        if last_of_first > max_sequence {
            return Err(seq_bad(format!(
                "a single request of {} records would go past {max_sequence}, the largest \
                 {}-digit sequence",
                template.records, template.width
            )));
        }
        let tls = tls_config(&cli.ca, proto)?;
        Ok(Plan {
            mode,
            proto,
            connections,
            streams: cli.streams,
            warmup: if mode == Mode::Idle {
                Duration::ZERO
            } else {
                cli.warmup
            },
            duration,
            timeout: cli.timeout,
            threads: cli.threads,
            rate: cli.rate,
            addr,
            authority: authority.as_str().to_string(),
            uri,
            host: host_header,
            server_name,
            tls,
            template,
            first_sequence: first,
            max_sequence,
        })
    }
}

/// `send`'s client configuration (the CAs in `ca` trusted), with no session resumption, so
/// that every connection is a full handshake, and ALPN for `proto`.
fn tls_config(ca: &Path, proto: Proto) -> Result<Arc<ClientConfig>, Bad> {
    let base =
        client_tls::client_config(&Trust::CaFile(ca.to_path_buf())).map_err(|e| Bad::Tls(e.to_string()))?;
    let mut config = ClientConfig::clone(&base);
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![match proto {
        Proto::H1 => b"http/1.1".to_vec(),
        Proto::H2 => b"h2".to_vec(),
    }];
    Ok(Arc::new(config))
}

/// What one worker (or stream) saw.
#[derive(Debug, Default)]
struct Tally {
    /// Microseconds of each 2xx request of the measured period.
    latencies_us: Vec<u32>,
    /// Every 2xx, warm-up and drain included.
    ok_total: u64,
    non2xx: u64,
    errors: u64,
    /// Requests with no answer within --timeout: the server may or may not have written them.
    timed_out: u64,
    /// Connections the server closed between requests (made again at once, not errors).
    closed_by_server: u64,
    /// Highest sequence put in a request.
    last_sequence: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        if self.latencies_us.is_empty() {
            self.latencies_us = other.latencies_us;
        } else {
            self.latencies_us.extend_from_slice(&other.latencies_us);
        }
        self.ok_total += other.ok_total;
        self.non2xx += other.non2xx;
        self.errors += other.errors;
        self.timed_out += other.timed_out;
        self.closed_by_server += other.closed_by_server;
        self.last_sequence = self.last_sequence.max(other.last_sequence);
    }

    fn sent(&mut self, shared: &Shared, first: u64) {
        self.last_sequence = self.last_sequence.max(first + shared.template.records - 1);
    }

    fn answered(&mut self, shared: &Shared, status: StatusCode, start: Instant) {
        let end = Instant::now();
        if status.is_success() {
            self.ok_total += 1;
            if start >= shared.measure_start && end <= shared.measure_end && !shared.halted() {
                let us = end.duration_since(start).as_micros();
                self.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        } else {
            self.non2xx += 1;
            shared.note(|| format!("answered {status}"));
        }
    }

    fn error(&mut self, shared: &Shared, what: impl FnOnce() -> String) {
        self.errors += 1;
        shared.note(what);
    }

    /// Counts a failure; false when it ends the run.
    fn failed(&mut self, shared: &Shared, failure: Failure) -> bool {
        match failure {
            Failure::Retry(reason) => {
                self.error(shared, || reason);
                true
            }
            Failure::Fatal(f) => {
                shared.fail(f);
                false
            }
        }
    }

    fn timeout(&mut self, shared: &Shared, what: &str) {
        self.timed_out += 1;
        self.error(shared, || {
            format!("{what}: no answer within {:?}", shared.timeout)
        });
    }
}

/// What every worker shares.
struct Shared {
    addr: SocketAddr,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    proto: Proto,
    uri: Uri,
    host: HeaderValue,
    /// `Connection: close` on every HTTP/1.1 request.
    close_each: bool,
    timeout: Duration,
    template: Template,
    next_sequence: AtomicU64,
    max_sequence: u64,
    measure_start: Instant,
    measure_end: Instant,
    /// Open loop: when each stream's requests are due.
    pace: Option<Pace>,
    halt: AtomicBool,
    halted_at: Mutex<Option<Instant>>,
    fatal: Mutex<Option<Fatal>>,
    first_problem: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn halted(&self) -> bool {
        self.halt.load(Ordering::Relaxed)
    }

    /// No new request: the measured period is over, or the run was stopped.
    fn stopping(&self) -> bool {
        self.halted() || Instant::now() >= self.measure_end
    }

    fn stop(&self) {
        if !self.halt.swap(true, Ordering::Relaxed) {
            *lock(&self.halted_at) = Some(Instant::now());
        }
    }

    fn fail(&self, fatal: Fatal) {
        lock(&self.fatal).get_or_insert(fatal);
        self.stop();
    }

    /// Keeps the first problem's description, for the report.
    fn note(&self, what: impl FnOnce() -> String) {
        let mut first = lock(&self.first_problem);
        if first.is_none() {
            *first = Some(what());
        }
    }

    /// The first of `records` fresh sequences, or None when they are used up.
    fn take_sequences(&self) -> Option<u64> {
        let k = self.template.records;
        let first = self.next_sequence.fetch_add(k, Ordering::Relaxed);
        if first + (k - 1) <= self.max_sequence {
            Some(first)
        } else {
            self.fail(Fatal::SequencesExhausted {
                width: self.template.width,
                max: self.max_sequence,
            });
            None
        }
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.proto == Proto::H1 {
            headers.insert(HOST, self.host.clone());
            if self.close_each {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        req
    }
}

/// The open loop's schedule: request `k` of stream `i` (of `streams`) is due at
/// `origin + (i + k * streams) / rate`, so that the streams together send `rate` requests per
/// second, evenly spaced.
#[derive(Debug, Clone, Copy)]
struct Pace {
    origin: Instant,
    streams: u32,
    rate: f64,
}

impl Pace {
    /// When request `k` of stream `stream` is due.
    fn due(&self, stream: u32, k: u64) -> Instant {
        let slot = f64::from(stream) + k as f64 * f64::from(self.streams);
        self.origin + Duration::from_secs_f64(slot / self.rate)
    }

    /// The first of stream `stream`'s requests due at `at` or later.
    fn first_slot(&self, stream: u32, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.origin).as_secs_f64() * self.rate;
        let k = ((elapsed - f64::from(stream)) / f64::from(self.streams)).ceil();
        if k > 0.0 {
            k as u64
        } else {
            0
        }
    }
}

/// One connection's request side.
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Whether a failed request leaves the connection unusable (HTTP/1.1).
    fn is_h1(&self) -> bool {
        matches!(self, Sender::H1(_))
    }

    /// `streams` senders on this connection: one for HTTP/1.1, clones for HTTP/2.
    fn fan_out(self, streams: u32) -> Vec<Sender> {
        match self {
            Sender::H1(s) => vec![Sender::H1(s)],
            Sender::H2(s) => (0..streams).map(|_| Sender::H2(s.clone())).collect(),
        }
    }

    /// Sends `req` and reads the answer to its end.
    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<StatusCode, hyper::Error> {
        let response = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok(status)
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

fn too_many_files(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// A new TCP connection, a full TLS handshake and the HTTP handshake.
async fn connect(shared: &Shared) -> Result<Sender, Failure> {
    let tcp = TcpStream::connect(shared.addr).await.map_err(|e| {
        if too_many_files(&e) {
            Failure::Fatal(Fatal::TooManyFiles)
        } else {
            Failure::Retry(format!("connect to {}: {e}", shared.addr))
        }
    })?;
    let _ = tcp.set_nodelay(true);
    let tls = shared
        .connector
        .connect(shared.server_name.clone(), tcp)
        .await
        .map_err(|e| tls_failure(&e, shared.proto))?;
    match shared.proto {
        Proto::H1 => {
            let (sender, conn) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| Failure::Retry(format!("HTTP/1.1 handshake: {}", chain(&e))))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H1(sender))
        }
        Proto::H2 => {
            let alpn = tls.get_ref().1.alpn_protocol();
            if alpn != Some(b"h2".as_slice()) {
                let chosen = alpn.map_or("nothing".into(), |p| String::from_utf8_lossy(p).into_owned());
                return Err(Failure::Fatal(Fatal::NotH2(chosen)));
            }
            let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| Failure::Retry(format!("HTTP/2 handshake: {}", chain(&e))))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Sender::H2(sender))
        }
    }
}

/// A failed TLS handshake: an untrusted certificate or no common protocol ends the run.
fn tls_failure(e: &std::io::Error, proto: Proto) -> Failure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol))
            if proto == Proto::H2 =>
        {
            Failure::Fatal(Fatal::NotH2("a no_application_protocol alert".into()))
        }
        Some(err @ rustls::Error::InvalidCertificate(why)) => {
            let hint = match why {
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "; it does not carry --server-name"
                }
                _ => "; it is neither one of --ca's certificates nor issued by one of them",
            };
            Failure::Fatal(Fatal::Tls(format!("{err}{hint}")))
        }
        Some(err @ rustls::Error::AlertReceived(_)) => Failure::Fatal(Fatal::Tls(err.to_string())),
        _ => Failure::Retry(format!("TLS handshake: {e}")),
    }
}

/// `connect` within `--timeout`.
async fn connect_in_time(shared: &Shared) -> Result<Sender, Failure> {
    match tokio::time::timeout(shared.timeout, connect(shared)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Retry(format!(
            "connect and handshake: no answer within {:?}",
            shared.timeout
        ))),
    }
}

/// Keep-alive mode: one connection, made again whenever it fails, until the end.
async fn keepalive_connection(shared: Arc<Shared>, index: u32, streams: u32) -> Tally {
    let mut total = Tally::default();
    while !shared.stopping() {
        let sender = match connect_in_time(&shared).await {
            Ok(s) => s,
            Err(f) => {
                if !total.failed(&shared, f) {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        };
        let mut senders = sender.fan_out(streams);
        let failed = if senders.len() == 1 {
            let mut failed = false;
            if let Some(s) = senders.pop() {
                let (t, f) = stream_loop(shared.clone(), s, index * streams).await;
                total.merge(t);
                failed = f;
            }
            failed
        } else {
            let mut set = JoinSet::new();
            for (i, s) in (0..).zip(senders) {
                set.spawn(stream_loop(shared.clone(), s, index * streams + i));
            }
            let mut failed = false;
            while let Some(done) = set.join_next().await {
                if let Ok((t, f)) = done {
                    total.merge(t);
                    failed |= f;
                }
            }
            failed
        };
        if failed && !shared.stopping() {
            tokio::time::sleep(PAUSE).await;
        }
    }
    total
}

/// Requests one after another on `sender` until the end, or until the connection fails (true).
/// In the open loop each request waits for its time (`stream` says which schedule is this
/// stream's); its latency runs from when it was due if the previous answer came late, else from
/// when it was sent.
async fn stream_loop(shared: Arc<Shared>, mut sender: Sender, stream: u32) -> (Tally, bool) {
    let mut t = Tally::default();
    let mut buf = BytesMut::new();
    let mut slot = shared.pace.map(|pace| pace.first_slot(stream, Instant::now()));
    loop {
        if shared.stopping() {
            return (t, false);
        }
        if sender.is_closed() {
            t.closed_by_server += 1;
            return (t, false);
        }
        // In the open loop, when this request was due if it is late (its latency counts from
        // then); `None` when it is sent on time or the loop is closed.
        let late = match (shared.pace, slot.as_mut()) {
            (Some(pace), Some(k)) => {
                let due = pace.due(stream, *k);
                *k += 1;
                // Nothing falls due after the measured period: a slow rate over many streams
                // must not keep the run going past it.
                if due >= shared.measure_end {
                    return (t, false);
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                    if shared.stopping() {
                        return (t, false);
                    }
                    None
                } else {
                    Some(due)
                }
            }
            _ => None,
        };
        let Some(first) = shared.take_sequences() else {
            return (t, false);
        };
        let req = shared.request(shared.template.fill(&mut buf, first));
        // After the body is built, as before the open loop: building a large batch is the
        // tool's time, not the server's.
        let start = late.unwrap_or_else(Instant::now);
        let result = tokio::time::timeout(shared.timeout, sender.exchange(req)).await;
        t.sent(&shared, first);
        match result {
            Ok(Ok(status)) => t.answered(&shared, status, start),
            Ok(Err(e)) => {
                t.error(&shared, || format!("request: {}", chain(&e)));
                if sender.is_h1() || sender.is_closed() {
                    return (t, true);
                }
            }
            Err(_) => {
                t.timeout(&shared, "request");
                if sender.is_h1() {
                    return (t, true);
                }
            }
        }
    }
}

/// New-connection mode: connect, one request, close, again.
async fn new_connection_worker(shared: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut buf = BytesMut::new();
    while !shared.stopping() {
        let start = Instant::now();
        let mut sender = match connect_in_time(&shared).await {
            Ok(s) => s,
            Err(f) => {
                if !t.failed(&shared, f) {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        };
        let Some(first) = shared.take_sequences() else {
            break;
        };
        let req = shared.request(shared.template.fill(&mut buf, first));
        let result = tokio::time::timeout(shared.timeout, sender.exchange(req)).await;
        drop(sender);
        t.sent(&shared, first);
        match result {
            Ok(Ok(status)) => t.answered(&shared, status, start),
            Ok(Err(e)) => {
                t.error(&shared, || format!("request: {}", chain(&e)));
                tokio::time::sleep(PAUSE).await;
            }
            Err(_) => {
                t.timeout(&shared, "request");
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
    t
}

/// Idle mode: one connection that has answered one request, or None after `IDLE_ATTEMPTS`.
async fn open_idle(shared: Arc<Shared>) -> (Tally, Option<Sender>) {
    let mut t = Tally::default();
    let mut buf = BytesMut::new();
    for attempt in 0..IDLE_ATTEMPTS {
        if shared.halted() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        let mut sender = match connect_in_time(&shared).await {
            Ok(s) => s,
            Err(f) => {
                if !t.failed(&shared, f) {
                    break;
                }
                continue;
            }
        };
        let Some(first) = shared.take_sequences() else {
            break;
        };
        let req = shared.request(shared.template.fill(&mut buf, first));
        let start = Instant::now();
        let result = tokio::time::timeout(shared.timeout, sender.exchange(req)).await;
        t.sent(&shared, first);
        match result {
            Ok(Ok(status)) => {
                t.answered(&shared, status, start);
                if !sender.is_closed() {
                    return (t, Some(sender));
                }
                t.error(&shared, || {
                    "the server closed the connection after its first answer".into()
                });
            }
            Ok(Err(e)) => t.error(&shared, || format!("request: {}", chain(&e))),
            Err(_) => t.timeout(&shared, "request"),
        }
    }
    (t, None)
}

/// What a run gives the summary.
struct Outcome {
    tally: Tally,
    measured: Duration,
}

async fn run(plan: &Plan, shared: Arc<Shared>) -> Outcome {
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut interrupted = false;
    let mut total = Tally::default();
    if plan.mode == Mode::Idle {
        let opening = Instant::now();
        let limit = Arc::new(Semaphore::new(IDLE_OPEN_AT_ONCE));
        let mut set = JoinSet::new();
        for _ in 0..plan.connections {
            let (shared, limit) = (shared.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                open_idle(shared).await
            });
        }
        let mut open = Vec::with_capacity(plan.connections as usize);
        loop {
            tokio::select! {
                done = set.join_next() => match done {
                    Some(Ok((t, sender))) => {
                        total.merge(t);
                        open.extend(sender);
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
                _ = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    shared.stop();
                }
            }
        }
        let opened = format!(
            "load: {} of {} connections open, in {:.1} s",
            open.len(),
            plan.connections,
            opening.elapsed().as_secs_f64()
        );
        if shared.halted() {
            eprintln!("{opened}; stopped, not holding them");
            return Outcome {
                tally: total,
                measured: Duration::ZERO,
            };
        }
        eprintln!("{opened}; holding them for {:?}", plan.duration);
        let held = Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(plan.duration) => {}
            _ = &mut interrupt, if !interrupted => shared.stop(),
        }
        let measured = held.elapsed();
        let closed = open.iter().filter(|s| s.is_closed()).count() as u64;
        if closed > 0 {
            eprintln!("load: the server closed {closed} of the idle connections during the hold");
            total.errors += closed;
        }
        drop(open);
        return Outcome {
            tally: total,
            measured,
        };
    }
    let mut set = JoinSet::new();
    for index in 0..plan.connections {
        let shared = shared.clone();
        match plan.mode {
            Mode::NewConnection => set.spawn(new_connection_worker(shared)),
            _ => set.spawn(keepalive_connection(shared, index, plan.streams)),
        };
    }
    let mut warm = std::pin::pin!(tokio::time::sleep_until(shared.measure_start.into()));
    let mut end = std::pin::pin!(tokio::time::sleep_until(shared.measure_end.into()));
    let (mut warmed, mut ended) = (plan.warmup.is_zero(), false);
    loop {
        tokio::select! {
            done = set.join_next() => match done {
                Some(Ok(t)) => total.merge(t),
                Some(Err(_)) => {}
                None => break,
            },
            _ = &mut warm, if !warmed => {
                warmed = true;
                eprintln!("load: warm-up over, measuring for {:?}", plan.duration);
            }
            _ = &mut end, if !ended => {
                ended = true;
                eprintln!("load: measured period over, waiting for the requests in flight");
            }
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                eprintln!("load: interrupted, waiting for the requests in flight");
                shared.stop();
            }
        }
    }
    let halted_at = *lock(&shared.halted_at);
    let stopped_at = halted_at.map_or(shared.measure_end, |h| h.min(shared.measure_end));
    Outcome {
        tally: total,
        measured: stopped_at.saturating_duration_since(shared.measure_start),
    }
}

/// The `p` quantile (0 to 1) of sorted microseconds, in milliseconds.
fn quantile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn summary(plan: &Plan, outcome: &mut Outcome) -> String {
    let t = &mut outcome.tally;
    t.latencies_us.sort_unstable();
    let requests = t.latencies_us.len() as u64;
    let records = requests * plan.template.records;
    let secs = outcome.measured.as_secs_f64();
    let per_s = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let bytes = requests as f64 * plan.template.bytes.len() as f64;
    format!(
        "load-summary mode={} http={} connections={} streams={} batch={} duration_s={:.3} \
         requests={requests} records={records} non2xx={} errors={} rps={:.1} records_per_s={:.1} \
         mb_per_s={:.3} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} offered_rps={} \
         sent_total={} first_sequence={} last_sequence={}",
        plan.mode.name(),
        if plan.proto == Proto::H2 { 2 } else { 1 },
        plan.connections,
        plan.streams,
        plan.template.records,
        secs,
        t.non2xx,
        t.errors,
        per_s(requests as f64),
        per_s(records as f64),
        per_s(bytes / 1e6),
        quantile_ms(&t.latencies_us, 0.50),
        quantile_ms(&t.latencies_us, 0.99),
        quantile_ms(&t.latencies_us, 0.999),
        quantile_ms(&t.latencies_us, 1.0),
        plan.rate.map_or("-".into(), |r| format!("{r:.0}")),
        t.ok_total,
        plan.first_sequence,
        t.last_sequence.max(plan.first_sequence - 1),
    )
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let threads = usize::from(cli.threads);
    let plan = match Plan::new(cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("load: error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "load: {} over HTTP/{} to {} ({}), {} connections x {} streams, {} record(s) of {} bytes per \
         request, sequences from {} (at most {}), {} thread(s)",
        plan.mode.name(),
        if plan.proto == Proto::H2 { "2" } else { "1.1" },
        plan.authority,
        plan.addr,
        plan.connections,
        plan.streams,
        plan.template.records,
        plan.template.bytes.len(),
        plan.first_sequence,
        plan.max_sequence,
        plan.threads,
    );
    let start = Instant::now();
    let measure_start = start.checked_add(plan.warmup).unwrap_or(start);
    let measure_end = match plan.mode {
        // Idle mode measures its opening requests, however long they take.
        Mode::Idle => measure_start.checked_add(MAX_DURATION * 4),
        _ => measure_start.checked_add(plan.duration),
    }
    .unwrap_or(measure_start);
    let shared = Arc::new(Shared {
        addr: plan.addr,
        connector: TlsConnector::from(plan.tls.clone()),
        server_name: plan.server_name.clone(),
        proto: plan.proto,
        uri: plan.uri.clone(),
        host: plan.host.clone(),
        close_each: plan.mode == Mode::NewConnection,
        timeout: plan.timeout,
        template: plan.template.clone(),
        next_sequence: AtomicU64::new(plan.first_sequence),
        max_sequence: plan.max_sequence,
        measure_start,
        measure_end,
        pace: plan.rate.map(|rate| Pace {
            origin: start,
            streams: plan.connections * plan.streams,
            rate,
        }),
        halt: AtomicBool::new(false),
        halted_at: Mutex::new(None),
        fatal: Mutex::new(None),
        first_problem: Mutex::new(None),
    });
    let mut outcome = runtime.block_on(run(&plan, shared.clone()));
    let t = &outcome.tally;
    if t.errors + t.non2xx > 0 {
        eprintln!(
            "load: {} non-2xx answers, {} errors; the first: {}",
            t.non2xx,
            t.errors,
            lock(&shared.first_problem).as_deref().unwrap_or("-")
        );
    }
    if t.timed_out > 0 {
        eprintln!(
            "load: {} requests had no answer within {:?}: the server may or may not have written them",
            t.timed_out, plan.timeout
        );
    }
    if t.closed_by_server > 0 {
        eprintln!(
            "load: the server closed {} connections between requests",
            t.closed_by_server
        );
    }
    println!("{}", summary(&plan, &mut outcome));
    drop(runtime);
    let fatal = lock(&shared.fatal).take();
    match fatal {
        Some(fatal) => {
            eprintln!("load: error: {fatal}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}
