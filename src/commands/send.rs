//! `ml_api_logger send`: POSTs the records of files or stdin to a logger over TLS — to test a
//! setup end to end before a sensor is pointed at it, or to replay an old log.
//!
//! One thread reads the inputs (any form `reader` knows) and packs the records, minified, into
//! bodies of `--batch` records (NDJSON when more than one); a bounded channel carries them to
//! `--concurrency` workers, each with one keep-alive HTTP/1.1 connection (hyper's client over
//! tokio-rustls), so memory stays bounded whatever the input's size. A body refused with `503`,
//! `429`, `502` or `504`, or lost to a connection error, is sent again after a backoff (or the
//! `Retry-After` it was given), at most `--retries` times; the daemon recognises a record it has
//! already written, so a retry never writes one twice. Whom to trust is `client_tls`'s job.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::certs::client_tls::{self, Trust};
use crate::commands::progress::{self, Progress};
use crate::json::minify::minify_into;
use crate::json::stream::{self, io_reason, open_inputs, Input, Item, RecordReader};

/// `ml_api_logger send` arguments.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Where to POST the records
    #[arg(long, value_name = "URL", default_value = "https://localhost:8443/log")]
    pub(crate) url: String,
    /// Trust the CA certificates in this PEM file (e.g. certs/serverca.crt) [default: the system's roots]
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub(crate) ca: Option<PathBuf>,
    /// DANGEROUS: accept any server certificate (the traffic is encrypted, the server unchecked)
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Records per POST; more than one are sent as NDJSON
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) batch: u64,
    /// Connections (and POSTs in flight) at once; records keep their order only with 1
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) concurrency: u64,
    /// Times a POST is sent again after 503, 429, 502, 504 or a connection error
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) retries: u32,
    /// Time allowed for connecting, and for each POST's answer
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::settings::units::parse_duration_arg)]
    pub(crate) timeout: Duration,
    /// Largest record; a larger one is reported and not sent
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::settings::units::parse_size_arg)]
    pub(crate) max_record: usize,
    /// Files of records: NDJSON, JSON arrays, or the Go program's log ("-" or none: standard input)
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

/// A body stops growing past this, whatever `--batch` says: the daemon's default limit is 16 MiB.
const MAX_BODY: usize = 4 << 20;
/// The longest wait a `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Refusals and skipped stretches listed in the summary.
const EXAMPLES: usize = 5;

/// Where to send: the parts of `--url` a connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Host name or address, without brackets: for DNS and SNI.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    /// Path and query, e.g. `/log`.
    pub path: String,
}

/// Parses an `https://` URL.
pub(crate) fn parse_url(s: &str) -> Result<Target, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("--url {s:?}: not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(other) => {
            return Err(format!(
                "--url {s:?}: {other}:// is not supported; the logger speaks https:// only"
            ))
        }
        None => return Err(format!("--url {s:?}: not a URL (https://HOST:PORT/log)")),
    }
    let authority = uri.authority().ok_or_else(|| format!("--url {s:?}: no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("--url {s:?}: no host"));
    }
    Ok(Target {
        host,
        port: authority.port_u16().unwrap_or(443),
        authority: authority.as_str().to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
    })
}

/// Where a body's first record is, for messages.
#[derive(Debug, Clone)]
struct Where {
    input: Arc<str>,
    line: u64,
}

/// One POST's worth of records.
struct Job {
    body: Bytes,
    records: u64,
    first: Where,
}

/// What happened, for the summary.
#[derive(Debug, Default)]
struct Tally {
    /// Records read and queued.
    read: u64,
    /// POSTs answered `2xx`.
    posts: u64,
    /// Records the logger accepted (written, or recognised as already written).
    accepted: u64,
    /// Of those, already written before (a retry, or a duplicate in the input).
    duplicates: u64,
    /// Of those, not conforming (written in the daemon's lenient mode).
    nonconforming: u64,
    /// Records refused, by status.
    refused: BTreeMap<u16, u64>,
    /// The first refusals: where, status and the server's reason.
    refusals: Vec<String>,
    /// Records not delivered: the logger could not be reached.
    unreachable: u64,
    /// Why, the first time.
    unreachable_reason: Option<String>,
    /// Stretches of input not sent: not JSON, not objects, too large, cut short.
    skipped: u64,
    /// The first of them.
    skipped_examples: Vec<String>,
    /// POSTs sent again.
    retries: u64,
}

impl Tally {
    fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    fn skip(&mut self, what: String) {
        self.skipped += 1;
        if self.skipped_examples.len() < EXAMPLES {
            self.skipped_examples.push(what);
        }
    }
}

/// What the workers share.
struct Shared {
    target: Target,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    retries: u32,
    timeout: Duration,
    batch: u64,
    tally: Mutex<Tally>,
    /// Set on a failure no retry can mend (the server's certificate is not trusted).
    abort: AtomicBool,
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How one POST ended, after its retries.
enum Outcome {
    Accepted {
        accepted: u64,
        duplicates: u64,
        nonconforming: u64,
    },
    Refused {
        status: u16,
        reason: String,
    },
    Unreachable(String),
}

/// Why an attempt failed.
enum Failure {
    /// Worth another try: refused connection, reset, timeout.
    Transient(String),
    /// Not worth another: the server's certificate is not trusted.
    Fatal(String),
}

/// Runs `send`; exit code 0 when every record was accepted, 1 when not, 2 for bad arguments.
pub fn run(args: &SendArgs) -> ExitCode {
    let target = match parse_url(&args.url) {
        Ok(t) => t,
        Err(e) => return usage(e),
    };
    let trust = match (&args.ca, args.insecure) {
        (Some(ca), _) => Trust::CaFile(ca.clone()),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    let config = match client_tls::client_config(&trust) {
        Ok(c) => c,
        Err(e) => return usage(e.to_string()),
    };
    let server_name = match ServerName::try_from(target.host.clone()) {
        Ok(n) => n,
        Err(_) => {
            return usage(format!(
                "--url {:?}: {:?} is not a valid host name",
                args.url, target.host
            ))
        }
    };
    let inputs = match open_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => return usage(e),
    };
    if args.insecure {
        eprintln!("warning: --insecure: the server's certificate is not checked");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shared = Arc::new(Shared {
        target,
        tls: TlsConnector::from(config),
        server_name,
        retries: args.retries,
        timeout: args.timeout,
        batch: args.batch,
        tally: Mutex::new(Tally::default()),
        abort: AtomicBool::new(false),
    });
    let concurrency = args.concurrency as usize;
    let (tx, rx) = mpsc::channel::<Job>(concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let reading = {
        let shared = shared.clone();
        let max_record = args.max_record;
        std::thread::spawn(move || read_inputs(inputs, max_record, &shared, tx))
    };
    let mut progress = Progress::new();
    runtime.block_on(async {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(worker(shared.clone(), rx.clone())))
            .collect();
        let ticker = {
            let shared = shared.clone();
            let mut progress = Progress::new();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let (read, accepted) = {
                        let t = shared.tally();
                        (t.read, t.accepted)
                    };
                    progress.update(|elapsed| {
                        format!(
                            "send: {read} records read, {accepted} accepted, {:.0} records/s",
                            progress::rate(accepted, elapsed)
                        )
                    });
                }
            })
        };
        for w in workers {
            let _ = w.await;
        }
        ticker.abort();
    });
    // The ticker's line, if it drew one, is erased by the summary's first "\r\x1b[2K".
    let read_error = match reading.join() {
        Ok(r) => r.err(),
        Err(_) => Some("the reader thread failed".to_string()),
    };
    let elapsed = progress.elapsed();
    progress.finish();
    let t = shared.tally();
    eprint!(
        "{}",
        summary_text(
            &t,
            &args.url,
            elapsed,
            std::io::IsTerminal::is_terminal(&std::io::stderr())
        )
    );
    if let Some(e) = &read_error {
        eprintln!("error: {e}");
    }
    let all_accepted = t.read > 0 && t.refused_total() == 0 && t.unreachable == 0 && t.skipped == 0;
    if t.read == 0 && t.skipped == 0 && read_error.is_none() {
        eprintln!("error: no records in the input");
    }
    if all_accepted && read_error.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn usage(e: String) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn summary_text(t: &Tally, url: &str, elapsed: Duration, terminal: bool) -> String {
    let mut s = String::new();
    if terminal {
        s.push_str("\r\x1b[2K");
    }
    s.push_str(&format!(
        "send to {url}: {} records read, {} POSTs answered 2xx, {:.1} s ({:.0} records/s), {} retries\n",
        t.read,
        t.posts,
        elapsed.as_secs_f64(),
        progress::rate(t.accepted, elapsed),
        t.retries
    ));
    s.push_str(&format!(
        "  accepted     {} ({} already written: duplicates; {} not conforming)\n",
        t.accepted, t.duplicates, t.nonconforming
    ));
    let by_status: Vec<String> = t.refused.iter().map(|(k, v)| format!("{v} with {k}")).collect();
    s.push_str(&format!(
        "  refused      {}{}\n",
        t.refused_total(),
        if by_status.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_status.join(", "))
        }
    ));
    for r in &t.refusals {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str(&format!("  unreachable  {}\n", t.unreachable));
    if let Some(r) = &t.unreachable_reason {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str(&format!(
        "  not sent     {} (no record: not JSON, not an object, cut short or too large)\n",
        t.skipped
    ));
    for r in &t.skipped_examples {
        s.push_str(&format!("    {r}\n"));
    }
    s
}

/// The reading thread: records into bodies, bodies into the channel.
fn read_inputs(
    inputs: Vec<Input>,
    max_record: usize,
    shared: &Shared,
    tx: mpsc::Sender<Job>,
) -> Result<(), String> {
    let mut body = Vec::new();
    let mut records = 0u64;
    let mut first: Option<Where> = None;
    let flush = |body: &mut Vec<u8>, records: &mut u64, first: &mut Option<Where>| -> bool {
        let Some(w) = first.take() else { return true };
        let job = Job {
            body: Bytes::from(std::mem::take(body)),
            records: std::mem::take(records),
            first: w,
        };
        tx.blocking_send(job).is_ok()
    };
    for input in inputs {
        let name: Arc<str> = input.name.into();
        let mut reader = RecordReader::new(BufReader::with_capacity(256 << 10, input.reader), max_record);
        loop {
            let item = reader.next().map_err(|e| format!("{name}: {}", io_reason(&e)))?;
            match item {
                None => break,
                Some(Item::Problem { line, problem }) => {
                    shared.tally().skip(format!("{name}:{line}: {problem}"))
                }
                Some(Item::Record { line, text }) => {
                    if let Err((at, reason)) = stream::check_json(text, line) {
                        shared.tally().skip(format!("{name}:{at}: not JSON: {reason}"));
                        continue;
                    }
                    if first.is_none() {
                        first = Some(Where {
                            input: name.clone(),
                            line,
                        });
                    }
                    minify_into(text, &mut body);
                    body.push(b'\n');
                    records += 1;
                    shared.tally().read += 1;
                    if (records >= shared.batch || body.len() >= MAX_BODY)
                        && !flush(&mut body, &mut records, &mut first)
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
    flush(&mut body, &mut records, &mut first);
    Ok(())
}

async fn worker(shared: Arc<Shared>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let job = rx.lock().await.recv().await;
        let Some(job) = job else { break };
        let outcome = if shared.abort.load(Ordering::Relaxed) {
            Outcome::Unreachable(String::new())
        } else {
            deliver(&shared, &mut conn, &job).await
        };
        let mut t = shared.tally();
        match outcome {
            Outcome::Accepted {
                accepted,
                duplicates,
                nonconforming,
            } => {
                t.posts += 1;
                t.accepted += accepted;
                t.duplicates += duplicates;
                t.nonconforming += nonconforming;
            }
            Outcome::Refused { status, reason } => {
                *t.refused.entry(status).or_default() += job.records;
                if t.refusals.len() < EXAMPLES {
                    let what = if job.records == 1 {
                        format!("{}:{}", job.first.input, job.first.line)
                    } else {
                        format!(
                            "{} records from {}:{}",
                            job.records, job.first.input, job.first.line
                        )
                    };
                    t.refusals.push(format!("{what}: {status}: {reason}"));
                }
            }
            Outcome::Unreachable(reason) => {
                t.unreachable += job.records;
                if t.unreachable_reason.is_none() && !reason.is_empty() {
                    t.unreachable_reason = Some(reason);
                }
            }
        }
    }
}

/// Sends one body until it is answered for good, or the retries are spent.
async fn deliver(shared: &Shared, conn: &mut Option<SendRequest<Full<Bytes>>>, job: &Job) -> Outcome {
    let mut attempt = 0u32;
    loop {
        let wait = match post_once(shared, conn, job).await {
            Ok((status, _, body)) if status.is_success() => {
                let n = |k: &str, default: u64| {
                    serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get(k).and_then(|x| x.as_u64()))
                        .unwrap_or(default)
                };
                return Outcome::Accepted {
                    accepted: n("accepted", job.records),
                    duplicates: n("duplicates", 0),
                    nonconforming: n("nonconforming", 0),
                };
            }
            Ok((status, headers, body)) => {
                let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                if !retryable || attempt >= shared.retries {
                    let mut reason = error_of(&body);
                    if retryable {
                        reason.push_str(&format!(" (still, after {} tries)", attempt + 1));
                    }
                    return Outcome::Refused {
                        status: status.as_u16(),
                        reason,
                    };
                }
                retry_after(&headers).unwrap_or_else(|| backoff(attempt))
            }
            Err(Failure::Fatal(reason)) => {
                shared.abort.store(true, Ordering::Relaxed);
                return Outcome::Unreachable(reason);
            }
            Err(Failure::Transient(reason)) => {
                *conn = None;
                if attempt >= shared.retries {
                    return Outcome::Unreachable(format!("{reason} (after {} tries)", attempt + 1));
                }
                backoff(attempt)
            }
        };
        attempt += 1;
        shared.tally().retries += 1;
        tokio::time::sleep(wait).await;
    }
}

/// The server's `{"error":"…"}`, or the start of its body.
fn error_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            if text.is_empty() {
                "no reason given".into()
            } else {
                text
            }
        })
}

/// `Retry-After` in seconds (an HTTP date is ignored), at most a minute.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).clamp(Duration::from_millis(100), MAX_RETRY_AFTER))
}

/// 250 ms doubling to 5 s, with up to a quarter more at random so that workers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1 << attempt.min(10));
    let base = base.min(Duration::from_secs(5));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let quarter = (base.as_millis() as u64 / 4).max(1);
    base + Duration::from_millis(u64::from(nanos) % quarter)
}

/// One attempt: connect if needed, POST, read the answer.
async fn post_once(
    shared: &Shared,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    job: &Job,
) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
    let sender = match conn.take() {
        Some(c) if !c.is_closed() => conn.insert(c),
        _ => conn.insert(connect(shared).await?),
    };
    let t = &shared.target;
    let request = Request::post(t.path.as_str())
        .header(HOST, t.authority.as_str())
        .header(
            CONTENT_TYPE,
            if job.records > 1 {
                "application/x-ndjson"
            } else {
                "application/json"
            },
        )
        .header(USER_AGENT, concat!("ml_api_logger/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(job.body.clone()))
        .map_err(|e| Failure::Fatal(format!("cannot make the request: {e}")))?;
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|e| Failure::Transient(format!("connection to {} lost: {e}", t.authority)))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Transient(format!("POST to {} failed: {e}", t.authority)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, 64 << 10)
            .collect()
            .await
            .map_err(|e| Failure::Transient(format!("reading the answer from {}: {e}", t.authority)))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    match tokio::time::timeout(shared.timeout, exchange).await {
        Ok(r) => {
            if r.is_err() {
                *conn = None;
            }
            r
        }
        Err(_) => {
            *conn = None;
            Err(Failure::Transient(format!(
                "no answer from {} within {:?}",
                t.authority, shared.timeout
            )))
        }
    }
}

/// A new TLS connection and its HTTP/1.1 handshake.
async fn connect(shared: &Shared) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let t = &shared.target;
    let addrs: Vec<_> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| Failure::Transient(format!("cannot resolve {}: {}", t.host, io_reason(&e))))?
        .collect();
    let mut tcp = None;
    let mut last = format!("{}: no address", t.host);
    for addr in addrs {
        match tokio::time::timeout(shared.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {}", io_reason(&e)),
            Err(_) => last = format!("cannot connect to {addr}: no answer within {:?}", shared.timeout),
        }
    }
    let tcp = tcp.ok_or(Failure::Transient(last))?;
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(
        shared.timeout,
        shared.tls.connect(shared.server_name.clone(), tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let tls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            return Err(match tls_error {
                Some(err) => {
                    Failure::Fatal(format!("TLS handshake with {}: {err}{}", t.authority, hint(err)))
                }
                None => Failure::Transient(format!("TLS handshake with {}: {}", t.authority, io_reason(&e))),
            });
        }
        Err(_) => {
            return Err(Failure::Transient(format!(
                "TLS handshake with {}: no answer within {:?}",
                t.authority, shared.timeout
            )))
        }
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| Failure::Transient(format!("HTTP handshake with {}: {e}", t.authority)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn hint(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError;
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "; give the server's CA with --ca (e.g. --ca certs/serverca.crt)"
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "; the certificate does not name the host in --url"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("https://localhost:8443/log").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 8443, "/log")
        );
        let t = parse_url("https://[::1]:9000/log?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str(), t.path.as_str()),
            ("::1", "[::1]:9000", "/log?x=1")
        );
        assert_eq!(parse_url("https://logger.example.com").unwrap().port, 443);
        assert!(parse_url("http://localhost:8443/log")
            .unwrap_err()
            .contains("https:// only"));
        assert!(parse_url("localhost:8443").is_err());
    }

    #[test]
    fn waits() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        assert!(backoff(0) >= Duration::from_millis(250) && backoff(0) < Duration::from_millis(313));
        assert!(backoff(30) <= Duration::from_millis(6250));
    }
}
