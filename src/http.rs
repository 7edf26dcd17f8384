//! HTTP handling: the routes of the TLS listener and the `POST /log` flow.
//!
//! `POST /log` reads the body under the size and time limits, decodes it, has the ingest module
//! check and minify it, and waits for the output to write it before answering. Refusals become
//! JSON `{"error": …}` answers through [`refusal`], with the status [`IngestError::status`] gives.
//! It does not know about TLS or connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;

use crate::decode;
use crate::ingest::{self, IngestError};
use crate::output::Output;
use crate::stats::Stats;

/// Bodies larger than this (as sent) are decoded and checked on the blocking pool.
const OFFLOAD_ABOVE: usize = 256 << 10;

/// What every request needs; shared by all connections.
pub struct App {
    /// Where records go.
    pub output: Output,
    /// Refuse nonconforming records.
    pub strict: bool,
    /// Largest body, sent and decoded.
    pub max_body: usize,
    /// Deadline for the whole body.
    pub body_timeout: Duration,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// The response body type of every answer.
pub type Answer = Response<Full<Bytes>>;

/// Routes one request.
pub async fn handle<B>(app: Arc<App>, peer: SocketAddr, req: Request<B>) -> Result<Answer, Infallible>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let answer = match (req.uri().path(), req.method()) {
        ("/log", &Method::POST) => post_log(&app, peer, req).await,
        ("/log", _) => with_header(
            json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method not allowed; use POST"}"#,
            ),
            ALLOW,
            "POST",
        ),
        ("/healthz", &Method::GET | &Method::HEAD) => health(&app),
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

async fn post_log<B>(app: &App, peer: SocketAddr, req: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    match ingest(app, req).await {
        Ok((records, nonconforming)) => {
            Stats::add(&app.stats.posts_accepted, 1);
            let body = if nonconforming > 0 {
                format!(r#"{{"accepted":{records},"nonconforming":{nonconforming}}}"#)
            } else {
                format!(r#"{{"accepted":{records}}}"#)
            };
            json(StatusCode::OK, body)
        }
        Err(e) => {
            Stats::add(&app.stats.posts_refused, 1);
            tracing::warn!(%peer, status = e.status().as_u16(), "refused: {e}");
            refusal(&e)
        }
    }
}

async fn ingest<B>(app: &App, req: Request<B>) -> Result<(usize, usize), IngestError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let codings = decode::parse_codings(encoding)?;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body as u64) {
        return Err(IngestError::TooLarge { limit: app.max_body });
    }
    let collect = Limited::new(req.into_body(), app.max_body).collect();
    let body = match tokio::time::timeout(app.body_timeout, collect).await {
        Err(_) => {
            return Err(IngestError::BodyTimeout {
                secs: app.body_timeout.as_secs_f64(),
            })
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(IngestError::TooLarge { limit: app.max_body })
        }
        Ok(Err(e)) => return Err(IngestError::BodyRead(e.to_string())),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let (max_body, strict) = (app.max_body, app.strict);
    // Large or compressed bodies (which may inflate to the limit) are parsed off the async
    // workers so they never stall other connections.
    let offload = body.len() > OFFLOAD_ABOVE || !codings.is_empty();
    let work = move || -> Result<ingest::Prepared, IngestError> {
        let decoded;
        let body: &[u8] = if codings.is_empty() {
            &body
        } else {
            decoded = decode::decode(body.to_vec(), &codings, max_body)?;
            &decoded
        };
        ingest::prepare(body, strict)
    };
    let prepared = if offload {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| IngestError::BodyRead(format!("parsing stopped: {e}")))??
    } else {
        work()?
    };
    if prepared.nonconforming > 0 {
        if let Some(problem) = &prepared.first_problem {
            tracing::warn!(count = prepared.nonconforming, "written though it {problem}");
        }
    }
    let (records, nonconforming) = (prepared.records, prepared.nonconforming);
    let (requests, responses) = (prepared.requests, prepared.responses);
    app.output.write(prepared.lines).await?;
    let s = &app.stats;
    Stats::add(&s.records_written, records as u64);
    Stats::add(&s.requests_written, requests as u64);
    Stats::add(&s.responses_written, responses as u64);
    Stats::add(&s.nonconforming_written, nonconforming as u64);
    Ok((records, nonconforming))
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
