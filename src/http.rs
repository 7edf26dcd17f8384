//! HTTP handling: the routes of the TLS listener and the `POST /log` flow.
//!
//! `POST /log` reads the body under the size and time limits, decodes it, has the ingest module
//! check and minify it, and waits for the output to write it before answering. Refusals become
//! JSON `{"error": …}` answers through [`refusal`], with the status [`IngestError::status`] gives.
//! It does not know about TLS or connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;

use crate::budget::{Budget, Exhausted, Held};
use crate::correlate::{Correlator, Verdict};
use crate::decode;
use crate::ingest::{self, Annotation, IngestError};
use crate::output::Output;
use crate::record::Kind;
use crate::rejects::Rejects;
use crate::stats::Stats;
use crate::timefmt::rfc3339_millis;

/// Bodies larger than this (as sent) are decoded and checked on the blocking pool.
const OFFLOAD_ABOVE: usize = 256 << 10;

/// What every request needs; shared by all connections.
pub struct App {
    /// Where records go.
    pub output: Output,
    /// Where refused bodies go, with `--rejects`.
    pub rejects: Option<Rejects>,
    /// Correlation and duplicate suppression.
    pub correlator: Correlator,
    /// Refuse nonconforming records.
    pub strict: bool,
    /// Add `_received_at` and `_peer` to each record.
    pub annotate: bool,
    /// Largest body, sent and decoded.
    pub max_body: usize,
    /// Deadline for the whole body.
    pub body_timeout: Duration,
    /// Memory for bodies being read or decoded, daemon-wide.
    pub budget: Budget,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// The response body type of every answer.
pub type Answer = Response<Full<Bytes>>;

/// Routes one request.
pub async fn handle<B>(
    app: Arc<App>,
    peer: SocketAddr,
    client: Option<Arc<str>>,
    req: Request<B>,
) -> Result<Answer, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let answer = match (req.uri().path(), req.method()) {
        ("/log", &Method::POST) => post_log(&app, peer, client.as_deref(), req).await,
        ("/log", _) => with_header(
            json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed; use POST"}"#,
            ),
            ALLOW,
            "POST",
        ),
        ("/healthz", &Method::GET) => health(&app),
        // HTTP/2 does not drop a HEAD answer's body by itself.
        ("/healthz", &Method::HEAD) => {
            let (parts, _) = health(&app).into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        ("/healthz", _) => with_header(
            json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed; use GET"}"#,
            ),
            ALLOW,
            "GET, HEAD",
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found; records go to POST /log"}"#,
        ),
    };
    app.stats.http_answers.count(answer.status().as_u16());
    Ok(answer)
}

/// `GET /healthz`: `200` while records can be written.
fn health(app: &App) -> Answer {
    if app.output.healthy() {
        json(StatusCode::OK, r#"{"status":"ok"}"#)
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"output failing"}"#)
    }
}

/// What a `POST /log` accepted.
struct Accepted {
    records: usize,
    nonconforming: usize,
    duplicates: usize,
}

/// The body of a refused request, as far as it was read, for the rejects file.
#[derive(Default)]
struct Kept {
    body: Bytes,
    truncated: bool,
}

async fn post_log<B>(app: &App, peer: SocketAddr, client: Option<&str>, req: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let mut kept = Kept::default();
    match ingest(app, peer, client, req, &mut kept).await {
        Ok(a) => {
            Stats::add(&app.stats.posts_accepted, 1);
            if (a.records, a.nonconforming, a.duplicates) == (1, 0, 0) {
                // The answer to almost every request a sensor sends.
                return json(StatusCode::OK, Bytes::from_static(br#"{"accepted":1}"#));
            }
            let mut body = format!(r#"{{"accepted":{}"#, a.records);
            if a.nonconforming > 0 {
                body.push_str(&format!(r#","nonconforming":{}"#, a.nonconforming));
            }
            if a.duplicates > 0 {
                body.push_str(&format!(r#","duplicates":{}"#, a.duplicates));
            }
            body.push('}');
            json(StatusCode::OK, body)
        }
        Err(e) => {
            Stats::add(&app.stats.posts_refused, 1);
            let status = e.status();
            app.stats.posts_refused_by_status.count(status.as_u16());
            tracing::warn!(%peer, status = status.as_u16(), "refused: {e}");
            if let (Some(rejects), true) = (&app.rejects, e.keeps_body()) {
                if let Err(w) = rejects
                    .keep(peer, status.as_u16(), &e.to_string(), &kept.body, kept.truncated)
                    .await
                {
                    tracing::error!(%peer, "cannot keep the refused body in the rejects file: {w}");
                }
            }
            refusal(&e)
        }
    }
}

async fn ingest<B>(
    app: &App,
    peer: SocketAddr,
    client: Option<&str>,
    req: Request<B>,
    kept: &mut Kept,
) -> Result<Accepted, IngestError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let received_at = app.annotate.then(SystemTime::now);
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let codings = decode::parse_codings(encoding);
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Without a rejects file there is no reason to read a body that is refused anyway.
    if app.rejects.is_none() {
        let early = match &codings {
            Err(e) => Some(IngestError::Decode(e.clone())),
            Ok(_) if declared.is_some_and(|n| n > app.max_body as u64) => {
                Some(IngestError::TooLarge { limit: app.max_body })
            }
            Ok(_) => None,
        };
        if let Some(e) = early {
            drain(&mut req.into_body()).await;
            return Err(e);
        }
    }
    // What this request holds of the body budget; given back when it is answered.
    let mut held = Held::default();
    let started = tokio::time::Instant::now();
    let mut reading = std::pin::pin!(read_body(req.into_body(), app.max_body, &app.budget, &mut held));
    // A small body usually came with the head: read at once, it needs no timer.
    let read = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        Poll::Ready(read) => Ok(read),
        Poll::Pending => tokio::time::timeout_at(started + app.body_timeout, reading).await,
    };
    let body = match read {
        Err(_) => {
            return Err(IngestError::BodyTimeout {
                secs: app.body_timeout.as_secs_f64(),
            })
        }
        Ok(Err(BodyError::TooLarge(prefix))) => {
            *kept = Kept {
                body: prefix,
                truncated: true,
            };
            return Err(IngestError::TooLarge { limit: app.max_body });
        }
        Ok(Err(BodyError::Read(e))) => return Err(IngestError::BodyRead(e)),
        Ok(Err(BodyError::Busy(e))) => return Err(IngestError::Busy(e)),
        Ok(Ok(body)) => body,
    };
    kept.body = body.clone();
    let codings = codings?;

    let (max_body, strict) = (app.max_body, app.strict);
    let annotation = received_at.map(|at| Annotation::new(&rfc3339_millis(at), &peer.to_string(), client));
    // Large or compressed bodies (which may inflate to the limit) are parsed off the async
    // workers so they never stall other connections.
    let offload = body.len() > OFFLOAD_ABOVE || !codings.is_empty();
    // The decoded body, when there is one, is what the rejects file keeps: what the sender meant.
    let budget = app.budget.clone();
    let work = move || -> (Result<ingest::Prepared, IngestError>, Option<Bytes>, Held) {
        let mut decoded_held = Held::default();
        if codings.is_empty() {
            return (
                ingest::prepare(&body, strict, annotation.as_ref()),
                None,
                decoded_held,
            );
        }
        let mut grow = |n: usize| budget.try_take(&mut decoded_held, n).is_ok();
        match decode::decode(body.to_vec(), &codings, max_body, &mut grow) {
            Ok(decoded) => {
                let decoded = Bytes::from(decoded);
                let prepared = ingest::prepare(&decoded, strict, annotation.as_ref());
                (prepared, Some(decoded), decoded_held)
            }
            Err(e) => (Err(e.into()), None, decoded_held),
        }
    };
    // The decoded body's share of the budget is held until the request is answered.
    let (prepared, decoded, _decoded_held) = if offload {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| IngestError::BodyRead(format!("parsing stopped: {e}")))?
    } else {
        work()
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            if let Some(decoded) = decoded {
                kept.body = decoded;
            }
            return Err(e);
        }
    };
    if prepared.nonconforming > 0 {
        if let Some(problem) = &prepared.first_problem {
            tracing::warn!(%peer, count = prepared.nonconforming, "written though it {problem}");
        }
    }
    let verdicts = app.correlator.classify(peer.ip(), &prepared.keys);
    let duplicates = verdicts.iter().filter(|v| **v == Verdict::Duplicate).count();
    // Only records that conform have a key, so only they can be retries.
    let (mut duplicate_requests, mut duplicate_responses) = (0u64, 0u64);
    let lines = if duplicates == 0 {
        prepared.lines
    } else {
        tracing::debug!(%peer, duplicates, "retried records not written again");
        for (key, v) in prepared.keys.iter().zip(&verdicts) {
            match (key, v) {
                (Some(k), Verdict::Duplicate) if k.kind == Kind::Request => duplicate_requests += 1,
                (Some(_), Verdict::Duplicate) => duplicate_responses += 1,
                _ => {}
            }
        }
        prepared.lines_to_write(&verdicts)
    };
    let written = prepared.records - duplicates;
    if !lines.is_empty() {
        app.output.write_records(lines, written).await?;
    }
    app.correlator.commit(peer.ip(), &prepared.keys, &verdicts);
    let s = &app.stats;
    Stats::add(&s.records_written, written as u64);
    Stats::add(&s.requests_written, prepared.requests as u64 - duplicate_requests);
    Stats::add(
        &s.responses_written,
        prepared.responses as u64 - duplicate_responses,
    );
    Stats::add(&s.duplicate_requests, duplicate_requests);
    Stats::add(&s.duplicate_responses, duplicate_responses);
    Stats::add(&s.nonconforming_written, prepared.nonconforming as u64);
    Ok(Accepted {
        records: prepared.records,
        nonconforming: prepared.nonconforming,
        duplicates,
    })
}

enum BodyError {
    /// Over the limit; the first `limit` bytes.
    TooLarge(Bytes),
    /// The connection failed.
    Read(String),
    /// The body budget stayed spent.
    Busy(Exhausted),
}

/// Reads a whole body of at most `limit` bytes, taking each chunk from the budget first; over
/// the limit, returns the first `limit` bytes.
async fn read_body<B>(mut body: B, limit: usize, budget: &Budget, held: &mut Held) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let keep = data.len().min(limit + 1 - len.min(limit + 1));
        budget.take(held, keep).await.map_err(BodyError::Busy)?;
        if len + data.len() > limit {
            chunks.push(data.slice(..limit - len));
            drain(&mut body).await;
            return Err(BodyError::TooLarge(concat(chunks, limit)));
        }
        len += data.len();
        chunks.push(data);
    }
    Ok(concat(chunks, len))
}

/// At most this much of a refused body is read and thrown away before the answer.
const DRAIN_MAX: usize = 1 << 20;
/// For at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads and discards what is left of a refused body, within [`DRAIN_MAX`] and [`DRAIN_TIME`],
/// so that a client still sending reads the refusal rather than a connection reset (closing a
/// socket with unread data makes the kernel send RST, which can destroy the answer in flight).
async fn drain<B>(body: &mut B)
where
    B: Body<Data = Bytes> + Unpin,
{
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_MAX {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

fn concat(mut chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut all = Vec::with_capacity(len);
    for c in &chunks {
        all.extend_from_slice(c);
    }
    Bytes::from(all)
}

/// The answer for a refusal: its status, `{"error": …}`, and `Retry-After` when it applies.
pub fn refusal(e: &IngestError) -> Answer {
    let body = serde_json::json!({ "error": e.to_string() }).to_string();
    let mut answer = json(e.status(), body);
    if let Some(secs) = e.retry_after() {
        answer = with_header(answer, RETRY_AFTER, &secs.to_string());
    }
    if e.leaves_body_unread() {
        // The rest of the body may still be coming; the connection cannot be reused.
        answer = with_header(answer, CONNECTION, "close");
    }
    answer
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn with_header(mut r: Answer, name: http::header::HeaderName, value: &str) -> Answer {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}
