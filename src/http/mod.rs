//! HTTP handling on the TLS listener: routes, and answers built from what ingest says.
//!
//! `POST /log` hands its body to [`Ingest::accept`] and answers with what it accepted, or with
//! the refusal's status through [`answer::refusal`]. It does not know about TLS or connections
//! ([`crate::net`]), nor about records ([`crate::ingest`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

use crate::ingest::{Ingest, Sent};

pub mod admin;
pub mod answer;
pub mod body;

pub use answer::Answer;

/// Routes one request.
pub async fn handle<B>(
    ingest: Arc<Ingest>,
    peer: SocketAddr,
    client: Option<Arc<str>>,
    req: Request<B>,
) -> Result<Answer, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let answer = if req.uri().path() == "/log" && req.method() == Method::POST {
        post_log(&ingest, peer, client.as_deref(), req).await
    } else {
        // Every other answer refuses or ignores a body: read a small one first, so a client
        // still sending it sees the answer, not a reset (HTTP/1.1 and HTTP/2 alike).
        let (head, mut body) = req.into_parts();
        body::drain(&mut body).await;
        route_other(&ingest, &head)
    };
    ingest.stats.http_answers.count(answer.status().as_u16());
    Ok(answer)
}

/// Every route but `POST /log`.
fn route_other(ingest: &Ingest, head: &http::request::Parts) -> Answer {
    match (head.uri.path(), &head.method) {
        ("/log", _) => answer::method_not_allowed("POST"),
        ("/healthz", &Method::GET) => answer::health(&ingest.output),
        // HTTP/2 does not drop a HEAD answer's body by itself.
        ("/healthz", &Method::HEAD) => {
            let (parts, _) = answer::health(&ingest.output).into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        ("/healthz", _) => answer::method_not_allowed("GET, HEAD"),
        _ => answer::json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not found; records go to POST /log"}"#,
        ),
    }
}

async fn post_log<B>(ingest: &Ingest, peer: SocketAddr, client: Option<&str>, req: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send + Sync + std::error::Error + 'static,
{
    let (head, mut body) = req.into_parts();
    let sent = Sent {
        peer,
        client,
        content_encoding: head
            .headers
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not text)")),
        content_length: head
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
    };
    match ingest.accept(&mut body, sent).await {
        Ok(accepted) => answer::accepted(&accepted),
        Err(e) => {
            if e.drain_before_answer() {
                body::drain(&mut body).await;
            }
            answer::refusal(&e)
        }
    }
}
