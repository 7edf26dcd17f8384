//! Ingest: one request body to the records written for it — the pipeline, in one place.
//!
//! [`Ingest::accept`] reads the body under the size limit, the body deadline and the daemon-wide
//! memory budget ([`body`], [`budget`]), decodes it ([`decode`]), splits, checks, minifies,
//! marks the credentials of and annotates its records into lines ([`split`], [`lines`]), asks
//! correlation which are retries, has the output write the rest, commits them to correlation,
//! and counts. Every refusal on the way is an [`IngestError`]; a refused body is logged,
//! counted and kept in the rejects file here, its records' credentials marked as in the output.
//! What HTTP answer each outcome gets is [`crate::http`]'s.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Body;

use crate::correlate::{Classified, Correlator, Verdict};
use crate::observe::stats::Stats;
use crate::observe::timefmt::rfc3339_millis;
use crate::output::Output;
use crate::record::Kind;
use crate::redact::Redactor;
use crate::rejects::Rejects;

pub(crate) mod body;
pub(crate) mod budget;
pub mod decode;
pub(crate) mod error;
pub(crate) mod lines;
pub(crate) mod split;

use body::BodyError;
use budget::{Budget, Held};
pub use error::IngestError;
pub use lines::{prepare, Annotation, Prepared, Treatment};

/// Bodies larger than this (as sent) are decoded and checked on the blocking pool.
const OFFLOAD_ABOVE: usize = 256 << 10;

/// The pipeline and what it needs; shared by all connections.
pub(crate) struct Ingest {
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
    /// Marks credentials in header values (`LOGGER_REDACT`); `None` when off. Shared with the
    /// blocking pool, which parses large bodies.
    pub redactor: Option<Arc<Redactor>>,
    /// Largest body, sent and decoded.
    pub max_body: usize,
    /// Deadline for the whole body.
    pub body_timeout: Duration,
    /// Memory for bodies being read or decoded, daemon-wide.
    pub budget: Budget,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Who sent a body, and what its head said about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent<'a> {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The client certificate's subject, with mTLS.
    pub client: Option<&'a str>,
    /// `Content-Encoding`, when there is one (`(not text)` when it is not).
    pub content_encoding: Option<&'a str>,
    /// `Content-Length`, when there is one.
    pub content_length: Option<u64>,
}

/// What a body gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Records in the body.
    pub records: usize,
    /// Of them, records that do not conform (written, lenient mode).
    pub nonconforming: usize,
    /// Of them, retries already written before (not written again).
    pub duplicates: usize,
}

/// The body of a refused request, as far as it was read, for the rejects file.
#[derive(Default)]
struct Kept {
    body: Bytes,
    truncated: bool,
}

impl Ingest {
    /// Takes one `POST /log` body. On a refusal the body may be left partly unread
    /// ([`IngestError::leaves_body_unread`]); the caller drains it before answering.
    pub async fn accept<B>(&self, body: &mut B, sent: Sent<'_>) -> Result<Accepted, IngestError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let mut kept = Kept::default();
        match self.write(body, sent, &mut kept).await {
            Ok(accepted) => {
                Stats::add(&self.stats.posts_accepted, 1);
                Ok(accepted)
            }
            Err(e) => {
                self.refused(sent.peer, &e, &kept).await;
                Err(e)
            }
        }
    }

    /// Logs, counts and (with `--rejects`) keeps a refusal.
    async fn refused(&self, peer: SocketAddr, e: &IngestError, kept: &Kept) {
        Stats::add(&self.stats.posts_refused, 1);
        let status = e.status();
        self.stats.posts_refused_by_status.count(status.as_u16());
        tracing::warn!(%peer, status = status.as_u16(), "refused: {e}");
        if let (Some(rejects), true) = (&self.rejects, e.keeps_body()) {
            // The refused body's records lose their credentials as written records do.
            let marked = self
                .redactor
                .as_deref()
                .and_then(|r| crate::rejects::redact_body(&kept.body, r));
            let body = marked.as_deref().unwrap_or(&kept.body);
            if let Err(w) = rejects
                .keep(peer, status.as_u16(), &e.to_string(), body, kept.truncated)
                .await
            {
                tracing::error!(%peer, "cannot keep the refused body in the rejects file: {w}");
            }
        }
    }

    async fn write<B>(&self, body: &mut B, sent: Sent<'_>, kept: &mut Kept) -> Result<Accepted, IngestError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let peer = sent.peer;
        let received_at = self.annotate.then(SystemTime::now);
        let codings = decode::parse_codings(sent.content_encoding);
        // Without a rejects file there is no reason to read a body that is refused anyway.
        if self.rejects.is_none() {
            match &codings {
                Err(e) => return Err(IngestError::Decode(e.clone())),
                Ok(_) if sent.content_length.is_some_and(|n| n > self.max_body as u64) => {
                    return Err(IngestError::TooLarge { limit: self.max_body })
                }
                Ok(_) => {}
            }
        }
        // What this request holds of the body budget; given back when it is answered.
        let mut held = Held::default();
        let started = tokio::time::Instant::now();
        let mut reading = std::pin::pin!(body::read_limited(body, self.max_body, &self.budget, &mut held));
        // A small body usually came with the head: read at once, it needs no timer.
        let read = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
            Poll::Ready(read) => Ok(read),
            Poll::Pending => tokio::time::timeout_at(started + self.body_timeout, reading).await,
        };
        let body = match read {
            Err(_) => {
                return Err(IngestError::BodyTimeout {
                    secs: self.body_timeout.as_secs_f64(),
                })
            }
            Ok(Err(BodyError::TooLarge(prefix))) => {
                *kept = Kept {
                    body: prefix,
                    truncated: true,
                };
                return Err(IngestError::TooLarge { limit: self.max_body });
            }
            Ok(Err(BodyError::Read(e))) => return Err(IngestError::BodyRead(e)),
            Ok(Err(BodyError::Busy(e))) => return Err(IngestError::Busy(e)),
            Ok(Ok(body)) => body,
        };
        kept.body = body.clone();
        let codings = codings?;

        let (max_body, strict) = (self.max_body, self.strict);
        let annotation =
            received_at.map(|at| Annotation::new(&rfc3339_millis(at), &peer.to_string(), sent.client));
        // Large or compressed bodies (which may inflate to the limit) are parsed off the async
        // workers so they never stall other connections.
        let offload = body.len() > OFFLOAD_ABOVE || !codings.is_empty();
        // The decoded body, when there is one, is what the rejects file keeps: what the sender meant.
        let budget = self.budget.clone();
        let work =
            move |redactor: Option<&Redactor>| -> (Result<Prepared, IngestError>, Option<Bytes>, Held) {
                let how = Treatment {
                    strict,
                    annotation: annotation.as_ref(),
                    redactor,
                };
                let mut decoded_held = Held::default();
                if codings.is_empty() {
                    return (prepare(&body, how), None, decoded_held);
                }
                let mut grow = |n: usize| budget.try_take(&mut decoded_held, n).is_ok();
                match decode::decode(body.to_vec(), &codings, max_body, &mut grow) {
                    Ok(decoded) => {
                        let decoded = Bytes::from(decoded);
                        let prepared = prepare(&decoded, how);
                        (prepared, Some(decoded), decoded_held)
                    }
                    Err(e) => (Err(e.into()), None, decoded_held),
                }
            };
        // The decoded body's share of the budget is held until the request is answered.
        let (prepared, decoded, _decoded_held) = if offload {
            let redactor = self.redactor.clone();
            tokio::task::spawn_blocking(move || work(redactor.as_deref()))
                .await
                .map_err(|e| IngestError::BodyRead(format!("parsing stopped: {e}")))?
        } else {
            work(self.redactor.as_deref())
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
        self.commit(peer, prepared, started + self.body_timeout).await
    }

    /// Writes what is not a retry, then tells correlation and the counters. A record whose copy
    /// another request is writing now waits for that outcome (until `deadline`): exactly once.
    async fn commit(
        &self,
        peer: SocketAddr,
        prepared: Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<Accepted, IngestError> {
        let (verdicts, reservation) = loop {
            match self.correlator.classify(peer.ip(), &prepared.keys) {
                Classified::Ready(verdicts, reservation) => break (verdicts, reservation),
                Classified::Wait(waits) => {
                    tracing::debug!(%peer, "a copy of a record is being written; waiting for it");
                    for mut done in waits {
                        // Resolves when the other request was answered, written or not.
                        if tokio::time::timeout_at(deadline, done.changed()).await.is_err() {
                            return Err(IngestError::InFlight);
                        }
                    }
                }
            }
        };
        let duplicates = verdicts.iter().filter(|v| **v == Verdict::Duplicate).count();
        let redacted = prepared.redacted_to_write(&verdicts);
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
            self.output.write_records(lines, written).await?;
        }
        self.correlator
            .commit(peer.ip(), &prepared.keys, &verdicts, reservation);
        let s = &self.stats;
        Stats::add(&s.records_written, written as u64);
        Stats::add(&s.requests_written, prepared.requests as u64 - duplicate_requests);
        Stats::add(
            &s.responses_written,
            prepared.responses as u64 - duplicate_responses,
        );
        Stats::add(&s.duplicate_requests, duplicate_requests);
        Stats::add(&s.duplicate_responses, duplicate_responses);
        Stats::add(&s.nonconforming_written, prepared.nonconforming as u64);
        Stats::add(&s.redacted_values, redacted as u64);
        Ok(Accepted {
            records: prepared.records,
            nonconforming: prepared.nonconforming,
            duplicates,
        })
    }
}
