//! What a log holds, counted one record at a time: records by kind, conformance with the first
//! problems and their lines, pairs, orphans, unanswered requests, duplicates, sequence reuses
//! and resets, and the most frequent `RequestURI`s and status codes.
//!
//! Shared by `inspect` and `report`, so the two always count alike. The [`Inspector`] applies
//! the daemon's rules (the record check of `record`, the duplicate and correlation rules of
//! `correlate`) with bounded state (`AgingMap`s capped as in the daemon, capped key counts); it
//! holds no record longer than it must, except requests waiting for their response with
//! `--pairs`, which are capped in bytes too. What more a caller wants to know of each record
//! and exchange (times, senders, bodies) it learns through an [`Observer`]. Reading the input
//! forms is `json::stream`'s job; writing a record as the daemon would is `minify`'s.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use tokio::time::Instant;

use crate::commands::progress;
use crate::correlate::aging::{AgingMap, Sizing};
use crate::correlate::{canonical, CorrelateConfig, Fingerprint};
use crate::json::minify::minify_into;
use crate::json::stream;
use crate::observe::timefmt::parse_rfc3339_millis;
use crate::record::{self, Kind, Record};
use crate::redact::{self, Redactor, MARK_DIGITS};

/// What `inspect` writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The summary as a table.
    Summary,
    /// The summary as JSON.
    Json,
    /// Joined exchanges as NDJSON (the summary goes to stderr).
    Pairs,
    /// The records as clean NDJSON (the summary goes to stderr).
    Normalize,
}

/// Requests kept for `--pairs` while they wait, at most this many bytes.
const MAX_PENDING_BYTES: usize = 256 << 20;
/// Distinct `RequestURI`s (and status codes) counted; beyond it, new ones are only tallied.
const MAX_DISTINCT: usize = 10_000;
/// A `RequestURI` is counted by its first this many bytes.
const MAX_KEY_LEN: usize = 256;
/// Senders whose last request sequence is followed, for resets.
const MAX_SENDERS: usize = 10_000;
/// Marks listed in the summary, the most frequent first.
const MARKS_LISTED: usize = 100;

/// One problem, where it is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProblemReport {
    /// The input: a file name, or `stdin`.
    pub file: String,
    /// Its line, from 1.
    pub line: u64,
    /// What is wrong.
    pub error: String,
}

/// A value and how often it was seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    /// The `RequestURI` or status code.
    pub value: String,
    /// Times seen.
    pub count: u64,
}

/// What a log holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Bytes read.
    pub bytes: u64,
    /// JSON objects read: conforming and not.
    pub records: u64,
    /// Conforming request records.
    pub requests: u64,
    /// Conforming response records.
    pub responses: u64,
    /// Records that conform.
    pub conforming: u64,
    /// JSON objects that do not conform.
    pub nonconforming: u64,
    /// Stretches of the input that are no record: not JSON, not an object, cut short, too large.
    pub unreadable: u64,
    /// Every problem (nonconforming and unreadable).
    pub problems_total: u64,
    /// The first problems.
    pub problems: Vec<ProblemReport>,
    /// `sequence`, or `peer address and sequence` when the log was annotated (`_peer`).
    pub keyed_by: String,
    /// Requests matched with their response.
    pub pairs: u64,
    /// Responses with no request waiting.
    pub orphan_responses: u64,
    /// Requests never answered (or pushed out of the pending table by its cap).
    pub unanswered_requests: u64,
    /// Records seen before: same kind, sequence (and sender) and minified bytes as sent (the
    /// members `--annotate` adds aside) and, when annotated, received within the daemon's
    /// default retry window of it.
    pub duplicates: u64,
    /// Records that reuse a sequence with other bytes (or the same, received past the window).
    pub sequence_reuses: u64,
    /// Times a sender's request numbering went back down to numbers it had used: a restart.
    pub sequence_resets: u64,
    /// Lowest sequence of a conforming record.
    pub sequence_min: Option<u64>,
    /// Highest sequence of a conforming record.
    pub sequence_max: Option<u64>,
    /// Most frequent `RequestURI`s.
    pub top_request_uris: Vec<Count>,
    /// Distinct `RequestURI`s counted (at most 10,000; more are tallied as `other_request_uris`).
    pub distinct_request_uris: u64,
    /// Requests whose `RequestURI` came after the distinct cap.
    pub other_request_uris: u64,
    /// Most frequent response status codes.
    pub top_status_codes: Vec<Count>,
    /// Header values written as marks (`"[redacted hmac:…]"`), in what was read or, with
    /// `--redact-key`, in what was written.
    pub redacted_values: u64,
    /// Distinct marks among them (at most 10,000 are told apart).
    pub distinct_redaction_marks: u64,
    /// The most frequent marks (up to 100), each with how often it appears: the same mark is
    /// the same credential.
    pub redaction_marks: Vec<Count>,
}

impl Summary {
    /// True when every record conforms and all of the input was records.
    pub fn clean(&self) -> bool {
        self.nonconforming == 0 && self.unreadable == 0
    }

    /// The summary as a table for a person.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| t.push_str(&format!("{k:<22}{v}\n"));
        row(
            "bytes",
            format!("{} ({})", self.bytes, progress::bytes(self.bytes)),
        );
        row(
            "records",
            format!(
                "{}: {} requests, {} responses, {} not conforming",
                self.records, self.requests, self.responses, self.nonconforming
            ),
        );
        row("conforming", format!("{}", self.conforming));
        row("nonconforming", format!("{}", self.nonconforming));
        row(
            "unreadable",
            format!(
                "{} (not JSON, not an object, cut short or too large)",
                self.unreadable
            ),
        );
        row("keyed by", self.keyed_by.clone());
        row("pairs", format!("{}", self.pairs));
        row("orphan responses", format!("{}", self.orphan_responses));
        row("unanswered requests", format!("{}", self.unanswered_requests));
        row("duplicates", format!("{}", self.duplicates));
        row("sequence reuses", format!("{}", self.sequence_reuses));
        row("sequence resets", format!("{}", self.sequence_resets));
        row(
            "redacted values",
            format!(
                "{} ({} distinct marks)",
                self.redacted_values, self.distinct_redaction_marks
            ),
        );
        row(
            "sequence range",
            match (self.sequence_min, self.sequence_max) {
                (Some(a), Some(b)) => format!("{a}..{b}"),
                _ => "none".into(),
            },
        );
        if !self.problems.is_empty() {
            t.push_str(&format!(
                "problems (first {} of {}):\n",
                self.problems.len(),
                self.problems_total
            ));
            for p in &self.problems {
                t.push_str(&format!("  {}:{}: {}\n", p.file, p.line, p.error));
            }
        }
        let mut top = |title: &str, counts: &[Count]| {
            if counts.is_empty() {
                return;
            }
            t.push_str(title);
            t.push('\n');
            for c in counts {
                t.push_str(&format!("  {:>10}  {}\n", c.count, c.value));
            }
        };
        top("top RequestURIs:", &self.top_request_uris);
        top("top status codes:", &self.top_status_codes);
        top("redaction marks:", &self.redaction_marks);
        if self.other_request_uris > 0 {
            t.push_str(&format!(
                "  ({} requests with RequestURIs beyond the first {} distinct ones are not ranked)\n",
                self.other_request_uris, self.distinct_request_uris
            ));
        }
        t
    }
}

/// Counts by key, bounded in the number of keys.
#[derive(Debug, Default)]
struct TopCounter {
    counts: HashMap<Box<str>, u64>,
    uncounted: u64,
}

impl TopCounter {
    fn add(&mut self, key: &str) {
        let key = truncate(key, MAX_KEY_LEN);
        if let Some(c) = self.counts.get_mut(key) {
            *c += 1;
        } else if self.counts.len() < MAX_DISTINCT {
            self.counts.insert(key.into(), 1);
        } else {
            self.uncounted += 1;
        }
    }

    fn top(&self, n: usize) -> Vec<Count> {
        let mut v: Vec<(&Box<str>, &u64)> = self.counts.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(k, c)| Count {
                value: k.to_string(),
                count: *c,
            })
            .collect()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PendingKey {
    peer: Option<IpAddr>,
    sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WindowKey {
    peer: Option<IpAddr>,
    kind: Kind,
    sequence: u64,
}

/// What a caller learns of each record beyond the [`Summary`]'s counts: `report` keeps times,
/// senders and bodies through it. Each hook is called at the moment the matching count of the
/// summary changes, so the caller's tallies add up to the summary's.
///
/// [`Observer::record`] comes first for every JSON object; the other hooks that follow it refer
/// to that same record, except [`Observer::unanswered`], which may be called for any waiting
/// request at any time.
pub trait Observer {
    /// What is kept with a request while it waits for its response.
    type Waiting;
    /// A JSON object at `line` of `file`, minified in `text`: `record` is `Some` when it
    /// conforms (the summary's `records`, and `requests` or `responses`).
    fn record(&mut self, file: &str, line: u64, text: &[u8], record: Option<&Record<'_>>);
    /// The record is a duplicate (counted, not correlated).
    fn duplicate(&mut self);
    /// The record, a request, resets its sender's numbering.
    fn reset(&mut self);
    /// The record, a request, waits for its response with what this returns.
    fn waiting(&mut self) -> Self::Waiting;
    /// A waiting request will never be answered (replaced, pushed out, or left at the end).
    fn unanswered(&mut self, request: Self::Waiting);
    /// The record, a response, answers `request`.
    fn answered(&mut self, request: Self::Waiting);
    /// The record, a response, has no request waiting.
    fn orphan(&mut self);
}

/// No observer: `inspect` needs only the summary.
impl Observer for () {
    type Waiting = ();
    fn record(&mut self, _: &str, _: u64, _: &[u8], _: Option<&Record<'_>>) {}
    fn duplicate(&mut self) {}
    fn reset(&mut self) {}
    fn waiting(&mut self) {}
    fn unanswered(&mut self, _: ()) {}
    fn answered(&mut self, _: ()) {}
    fn orphan(&mut self) {}
}

/// A request waiting for its response.
struct Waiting<W> {
    /// Its minified text with `--pairs`; empty otherwise.
    text: Box<[u8]>,
    /// What the observer keeps with it.
    observed: W,
}

/// Counts what a log holds, one record at a time.
pub struct Inspector<O: Observer = ()> {
    mode: Mode,
    max_problems: usize,
    summary: Summary,
    annotated: bool,
    /// Requests waiting for their response; with `--pairs`, their minified text.
    pending: AgingMap<PendingKey, Waiting<O::Waiting>>,
    pending_bytes: usize,
    /// Records already seen, for duplicates and reuses: the fingerprint of each as sent, and
    /// when it was received (`_received_at`, Unix ms) when annotated.
    window: AgingMap<WindowKey, (Fingerprint, Option<i64>)>,
    /// Each sender's last request sequence, for resets.
    last_request: HashMap<Option<IpAddr>, u64>,
    uris: TopCounter,
    statuses: TopCounter,
    /// Marks seen in header values.
    marks: TopCounter,
    /// With `--redact-key`: credentials marked in what is written.
    redactor: Option<Redactor>,
    /// The reused buffer a record is minified into.
    minified: Vec<u8>,
    /// The reused buffer a record with credentials is marked into; `marked_used` when it holds
    /// the current record (else the minified text is what is written).
    marked: Vec<u8>,
    marked_used: bool,
    /// The reused buffer a record is copied into as its sender sent it (without annotations).
    as_sent: Vec<u8>,
    /// Log time is not wall time: nothing here ages by the clock, only by the caps.
    epoch: Instant,
    observer: O,
}

impl Inspector<()> {
    /// An inspector writing `mode`'s output, listing `max_problems` problems, holding at most
    /// `max_pending` waiting requests (and twice that many records for duplicates).
    pub fn new(mode: Mode, max_problems: usize, max_pending: usize) -> Inspector<()> {
        Inspector::with_observer(mode, max_problems, max_pending, ())
    }
}

impl<O: Observer> Inspector<O> {
    /// As [`Inspector::new`], telling `observer` about each record and exchange.
    pub fn with_observer(mode: Mode, max_problems: usize, max_pending: usize, observer: O) -> Inspector<O> {
        let forever = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        let defaults = CorrelateConfig::default();
        let max_pending = max_pending.max(1);
        let window_cap = if max_pending == defaults.max_pending {
            defaults.duplicate_cap
        } else {
            max_pending.saturating_mul(2)
        };
        Inspector {
            mode,
            max_problems,
            summary: Summary {
                keyed_by: "sequence".into(),
                ..Summary::default()
            },
            annotated: false,
            pending: AgingMap::new(max_pending, forever, Sizing::QuarterFull),
            pending_bytes: 0,
            window: AgingMap::new(window_cap, forever, Sizing::QuarterFull),
            last_request: HashMap::new(),
            uris: TopCounter::default(),
            statuses: TopCounter::default(),
            marks: TopCounter::default(),
            redactor: None,
            minified: Vec::new(),
            marked: Vec::new(),
            marked_used: false,
            as_sent: Vec::new(),
            epoch: Instant::now(),
            observer,
        }
    }

    /// Marks credentials in what is written with `redactor`, as the daemon would.
    pub fn with_redactor(mut self, redactor: Redactor) -> Inspector<O> {
        self.redactor = Some(redactor);
        self
    }

    /// The record as it is written: marked when it held credentials and a key was given.
    fn written(&self) -> &[u8] {
        if self.marked_used {
            &self.marked
        } else {
            &self.minified
        }
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.summary.records
    }

    /// The observer, to tell it what the inspector does not see (files beginning and ending).
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    fn note(&mut self, file: &str, line: u64, error: String) {
        self.summary.problems_total += 1;
        if self.summary.problems.len() < self.max_problems {
            self.summary.problems.push(ProblemReport {
                file: file.to_string(),
                line,
                error,
            });
        }
    }

    /// A stretch of the input that is no record.
    pub fn unreadable(&mut self, file: &str, line: u64, problem: &stream::Problem) {
        self.summary.unreadable += 1;
        self.note(file, line, problem.to_string());
    }

    /// One record's text, starting on `line` of `file`; writes `out` what the mode asks for.
    pub fn record(&mut self, file: &str, line: u64, text: &[u8], out: &mut dyn Write) -> io::Result<()> {
        let Ok(json) = std::str::from_utf8(text) else {
            let (at, reason) = stream::check_json(text, line)
                .err()
                .unwrap_or((line, "not UTF-8".to_string()));
            self.summary.unreadable += 1;
            self.note(file, at, format!("not JSON: {reason}"));
            return Ok(());
        };
        let checked = record::check(json);
        if let Err(problem) = &checked {
            let mut problem = problem.clone();
            // With a key, what inspect prints shows no credential either.
            if let Some(reason) = self
                .redactor
                .as_ref()
                .and_then(|r| r.scrub_problem(&problem.field, &problem.reason))
            {
                problem.reason = reason;
            }
            if let Err((at, reason)) = stream::check_json(text, line) {
                self.summary.unreadable += 1;
                self.note(file, at, format!("not JSON: {reason}"));
                return Ok(());
            }
            let problem = format!("does not conform: {problem}");
            self.summary.records += 1;
            self.summary.nonconforming += 1;
            self.note(file, line, problem);
        }
        if checked.is_ok() {
            self.summary.records += 1;
        }
        self.minified.clear();
        minify_into(text, &mut self.minified);
        self.marked.clear();
        self.marked_used = self
            .redactor
            .as_ref()
            .is_some_and(|r| r.redact_into(&self.minified, &mut self.marked) > 0);
        for mark in redact::marks_in(self.written()) {
            self.summary.redacted_values += 1;
            // Hex digits: always UTF-8.
            let mark = format!(
                "[redacted hmac:{}]",
                String::from_utf8_lossy(&mark[..MARK_DIGITS])
            );
            self.marks.add(&mark);
        }
        self.observer
            .record(file, line, &self.minified, checked.as_ref().ok());
        if self.mode == Mode::Normalize {
            out.write_all(self.written())?;
            out.write_all(b"\n")?;
        }
        let Ok(rec) = checked else { return Ok(()) };
        self.count(json, &rec, out)
    }

    fn count(&mut self, json: &str, rec: &Record<'_>, out: &mut dyn Write) -> io::Result<()> {
        let s = &mut self.summary;
        s.conforming += 1;
        let sequence = rec.sequence();
        s.sequence_min = Some(s.sequence_min.map_or(sequence, |m| m.min(sequence)));
        s.sequence_max = Some(s.sequence_max.map_or(sequence, |m| m.max(sequence)));
        match rec {
            Record::Request(r) => {
                s.requests += 1;
                self.uris.add(&r.request.request_uri);
            }
            Record::Response(r) => {
                s.responses += 1;
                self.statuses.add(&r.status.to_string());
            }
        }
        let peer = peer_of(json);
        if peer.is_some() && !self.annotated {
            self.annotated = true;
            self.summary.keyed_by = "peer address and sequence".into();
        }
        let kind = rec.kind();
        // A retry is the same record as sent: its annotations (another arrival time, another
        // connection, maybe another daemon's file) do not make it another record.
        let (fingerprint, received) = match annotations(&self.minified) {
            Some((at, received)) => {
                self.as_sent.clear();
                self.as_sent.extend_from_slice(&self.minified[..at]);
                self.as_sent.push(b'}');
                (Fingerprint::of(&self.as_sent), received)
            }
            None => (Fingerprint::of(&self.minified), None),
        };
        let wkey = WindowKey { peer, kind, sequence };
        let reuse = match self.window.get(&wkey) {
            Some(&(f, seen)) if f == fingerprint && within_retry_window(seen, received) => {
                self.summary.duplicates += 1;
                self.observer.duplicate();
                return Ok(());
            }
            Some(_) => true,
            None => false,
        };
        self.window
            .insert(wkey, (fingerprint, received), self.epoch, |_, _| {});
        let s = &mut self.summary;
        if reuse {
            s.sequence_reuses += 1;
        }
        let pkey = PendingKey { peer, sequence };
        match kind {
            Kind::Request => {
                let last = self.last_request.get(&peer).copied();
                if reuse && last.is_some_and(|l| sequence < l) {
                    s.sequence_resets += 1;
                    self.observer.reset();
                }
                if last.is_some() || self.last_request.len() < MAX_SENDERS {
                    self.last_request.insert(peer, sequence);
                }
                // A request that replaces a waiting one (sequence reuse) leaves it unanswered.
                if let Some((old, _)) = self.pending.remove(&pkey, self.epoch) {
                    self.pending_bytes -= old.text.len();
                    s.unanswered_requests += 1;
                    self.observer.unanswered(old.observed);
                }
                let text: Box<[u8]> = if self.mode == Mode::Pairs {
                    self.written().into()
                } else {
                    Box::default()
                };
                self.pending_bytes += text.len();
                let observed = self.observer.waiting();
                let (mut dropped, mut dropped_bytes) = (0, 0);
                let observer = &mut self.observer;
                self.pending
                    .insert(pkey, Waiting { text, observed }, self.epoch, |_, v| {
                        dropped += 1;
                        dropped_bytes += v.text.len();
                        observer.unanswered(v.observed);
                    });
                while self.pending_bytes - dropped_bytes > MAX_PENDING_BYTES {
                    match self.pending.pop_oldest() {
                        Some((_, v)) => {
                            dropped += 1;
                            dropped_bytes += v.text.len();
                            self.observer.unanswered(v.observed);
                        }
                        None => break,
                    }
                }
                self.pending_bytes -= dropped_bytes;
                self.summary.unanswered_requests += dropped;
            }
            Kind::Response => match self.pending.remove(&pkey, self.epoch) {
                Some((request, _)) => {
                    self.pending_bytes -= request.text.len();
                    s.pairs += 1;
                    if self.mode == Mode::Pairs {
                        write!(out, "{{\"sequence\":{sequence},\"request\":")?;
                        out.write_all(&request.text)?;
                        out.write_all(b",\"response\":")?;
                        out.write_all(self.written())?;
                        out.write_all(b"}\n")?;
                    }
                    self.observer.answered(request.observed);
                }
                None => {
                    s.orphan_responses += 1;
                    self.observer.orphan();
                }
            },
        }
        Ok(())
    }

    /// The summary and the observer; requests still waiting are unanswered.
    pub fn finish(mut self, bytes: u64) -> (Summary, O) {
        while let Some((_, v)) = self.pending.pop_oldest() {
            self.summary.unanswered_requests += 1;
            self.observer.unanswered(v.observed);
        }
        let mut s = self.summary;
        s.bytes = bytes;
        s.top_request_uris = self.uris.top(10);
        s.distinct_request_uris = self.uris.counts.len() as u64;
        s.other_request_uris = self.uris.uncounted;
        s.top_status_codes = self.statuses.top(10);
        s.distinct_redaction_marks = self.marks.counts.len() as u64;
        s.redaction_marks = self.marks.top(MARKS_LISTED);
        (s, self.observer)
    }
}

/// The members `--annotate` adds to a minified record (`_received_at`, `_peer`, `_client`: its
/// last members): where they begin, at the comma before them (the record as its sender sent it
/// is the text before, closed with `}`), and the time in `_received_at` (Unix ms). `None` when
/// the record ends otherwise: not annotated, or a `_received_at` of the sender's own that is not
/// among the last members.
fn annotations(minified: &[u8]) -> Option<(usize, Option<i64>)> {
    const NAME: &[u8] = b",\"_received_at\":\"";
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Annotations<'a> {
        #[serde(borrow)]
        _received_at: std::borrow::Cow<'a, str>,
        #[serde(default)]
        _peer: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        _client: Option<serde::de::IgnoredAny>,
    }
    let body = minified.strip_suffix(b"}")?;
    let at = memchr::memmem::rfind(body, NAME)?;
    // What follows must be annotation members and nothing else (not the rest of an inner
    // object, not members of the sender's).
    let mut members = Vec::with_capacity(body.len() - at + 1);
    members.push(b'{');
    members.extend_from_slice(&body[at + 1..]);
    members.push(b'}');
    let members = serde_json::from_slice::<Annotations<'_>>(&members).ok()?;
    Some((at, parse_rfc3339_millis(&members._received_at)))
}

/// Whether a record received at `later` (Unix ms) is a retry of the same record received at
/// `earlier`: within the daemon's default duplicate window (`LOGGER_RESPONSE_TIMEOUT`), as the
/// daemon judges. Past it, the same bytes are the sender's again (it restarted its numbering),
/// as the daemon, which forgot the first by then, wrote them. Without both times, always.
fn within_retry_window(earlier: Option<i64>, later: Option<i64>) -> bool {
    let window = CorrelateConfig::default().duplicate_window.as_millis();
    match (earlier, later) {
        (Some(a), Some(b)) => u128::from(a.abs_diff(b)) <= window,
        _ => true,
    }
}

/// The sender of an annotated record: the address in `_peer` (`ip:port`), its port dropped,
/// since a sensor sends a request and its response over different connections.
pub fn peer_of(json: &str) -> Option<IpAddr> {
    // The annotations are the last members; look there before parsing.
    let tail = &json.as_bytes()[json.len().saturating_sub(512)..];
    if !tail.windows(7).any(|w| w == b"\"_peer\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Annotated<'a> {
        #[serde(rename = "_peer", borrow)]
        peer: Option<std::borrow::Cow<'a, str>>,
    }
    let a: Annotated<'_> = serde_json::from_str(json).ok()?;
    let peer = a.peer?;
    match peer.parse::<SocketAddr>() {
        Ok(sa) => Some(canonical(sa.ip())),
        Err(_) => peer.parse::<IpAddr>().ok().map(canonical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::RedactKey;

    fn req(seq: u64, uri: &str) -> String {
        format!(r#"{{"sequence":{seq},"request":{{"Method":"GET","RequestURI":"{uri}"}}}}"#)
    }

    fn resp(seq: u64, status: u16) -> String {
        format!(r#"{{"sequence":{seq},"response_status_code":{status}}}"#)
    }

    fn inspect(records: &[String], mode: Mode) -> (Summary, String) {
        let mut i = Inspector::new(mode, 10, 100_000);
        let mut out = Vec::new();
        for (n, r) in records.iter().enumerate() {
            i.record("t", n as u64 + 1, r.as_bytes(), &mut out).unwrap();
        }
        (i.finish(0).0, String::from_utf8(out).unwrap())
    }

    #[test]
    fn marks_are_counted_and_listed_and_normalize_marks_with_the_key() {
        let r = Redactor::new(&RedactKey::from_bytes([2; 32]), &redact::default_names());
        let with = |seq: u64, cookie: &str| {
            format!(
                "{{\n  \"sequence\": {seq},\n  \"request\": {{\"Method\": \"GET\", \"RequestURI\": \"/\", \"Header\": {{\"Cookie\": [\"{cookie}\"]}}}}\n}}"
            )
        };
        let log = vec![with(1, "a=1"), with(2, "a=1"), with(3, "b=2"), resp(1, 200)];
        // Without a key: values as read, nothing counted.
        let (s, out) = inspect(&log, Mode::Normalize);
        assert_eq!((s.redacted_values, s.distinct_redaction_marks), (0, 0));
        assert!(out.contains("a=1"));
        // With the key: marked as the daemon would, counted, listed.
        let mut i = Inspector::new(Mode::Normalize, 10, 100_000).with_redactor(r);
        let mut out = Vec::new();
        for (n, rec) in log.iter().enumerate() {
            i.record("t", n as u64 + 1, rec.as_bytes(), &mut out).unwrap();
        }
        let (s, ()) = i.finish(0);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("a=1") && !out.contains("b=2"), "{out}");
        assert_eq!(out.lines().count(), 4);
        assert_eq!((s.redacted_values, s.distinct_redaction_marks), (3, 2));
        assert_eq!(s.redaction_marks[0].count, 2);
        assert!(s.redaction_marks[0].value.starts_with("[redacted hmac:"));
        assert!(out.contains(&s.redaction_marks[0].value));
        let text = s.to_text();
        assert!(
            text.contains("redacted values       3 (2 distinct marks)"),
            "{text}"
        );
        // Reading the marked log again: the same counts, without a key.
        let marked: Vec<String> = out.lines().map(str::to_string).collect();
        let (again, _) = inspect(&marked, Mode::Json);
        assert_eq!(again.redaction_marks, s.redaction_marks);
        assert_eq!((again.duplicates, again.records), (0, 4));
    }

    #[test]
    fn pairs_orphans_unanswered_duplicates_and_a_reset() {
        let log = vec![
            req(1, "/a"),
            resp(1, 200),
            req(2, "/a"),
            req(2, "/a"), // duplicate
            resp(2, 404),
            resp(9, 200), // orphan
            req(3, "/b"), // unanswered
            r#"{"sequence":4}"#.to_string(),
            // The sensor restarted: 1 again, other bytes.
            req(1, "/c"),
            resp(1, 201),
        ];
        let (s, pairs) = inspect(&log, Mode::Pairs);
        assert_eq!(
            (s.records, s.conforming, s.nonconforming, s.requests, s.responses),
            (10, 9, 1, 5, 4)
        );
        assert_eq!((s.pairs, s.orphan_responses, s.unanswered_requests), (3, 1, 1));
        assert_eq!((s.duplicates, s.sequence_reuses, s.sequence_resets), (1, 2, 1));
        assert_eq!((s.sequence_min, s.sequence_max), (Some(1), Some(9)));
        assert_eq!(
            s.top_request_uris[0],
            Count {
                value: "/a".into(),
                count: 3
            }
        );
        assert_eq!(s.problems[0].line, 8);
        assert_eq!(pairs.lines().count(), 3);
        let first: serde_json::Value = serde_json::from_str(pairs.lines().next().unwrap()).unwrap();
        assert_eq!(first["request"]["request"]["RequestURI"], "/a");
        assert_eq!(first["response"]["response_status_code"], 200);
        assert!(!s.clean());
    }

    #[test]
    fn annotated_logs_pair_by_sender_address() {
        let a = |s: &str, peer: &str| format!("{},\"_peer\":\"{peer}\"}}", &s[..s.len() - 1]);
        let log = vec![
            a(&req(1, "/"), "10.0.0.1:5000"),
            a(&req(1, "/"), "10.0.0.2:6000"),
            a(&resp(1, 200), "[::ffff:10.0.0.1]:5001"),
            a(&resp(1, 200), "10.0.0.2:6001"),
        ];
        let (s, _) = inspect(&log, Mode::Summary);
        assert_eq!(s.keyed_by, "peer address and sequence");
        assert_eq!((s.pairs, s.duplicates, s.unanswered_requests), (2, 0, 0));
    }

    #[test]
    fn a_retry_written_by_two_daemons_is_a_duplicate_whatever_its_annotations() {
        let a = |s: &str, at: &str, peer: &str| {
            format!(
                "{},\"_received_at\":\"2026-12-01T{at}Z\",\"_peer\":\"{peer}\"}}",
                &s[..s.len() - 1]
            )
        };
        // A daemon wrote a request (of 127.0.0.2) and a response (of 127.0.0.4), then was killed
        // before answering them; the sensors sent both again, through the balancer, to other
        // daemons: the same records as sent, received later on other connections. The files
        // merged by `_received_at` (as a failed scale-out run wrote them):
        let log = vec![
            a(&req(25, "/"), "18:53:58.464", "127.0.0.4:43359"),
            a(&req(25, "/"), "18:53:58.470", "127.0.0.2:57283"),
            a(&resp(25, 200), "18:53:58.470", "127.0.0.4:43359"),
            a(&resp(25, 200), "18:53:58.549", "127.0.0.4:49725"),
            a(&req(25, "/"), "18:53:58.549", "127.0.0.2:52411"),
            a(&resp(25, 200), "18:53:58.626", "127.0.0.2:52411"),
        ];
        let (s, pairs) = inspect(&log, Mode::Pairs);
        assert_eq!((s.pairs, s.duplicates), (2, 2));
        assert_eq!((s.orphan_responses, s.unanswered_requests), (0, 0));
        assert_eq!((s.sequence_reuses, s.sequence_resets), (0, 0));
        assert_eq!(pairs.lines().count(), 2);

        // A sensor that restarted its numbering: other bytes under a sequence are a reuse, and
        // so are the same bytes past the daemon's retry window (5 minutes), as the daemon, which
        // forgot the first by then, wrote them; within it, a retry.
        let log = vec![
            a(&req(1, "/a"), "10:00:00.100", "10.0.0.1:1"),
            a(&resp(1, 200), "10:00:00.101", "10.0.0.1:1"),
            a(&req(1, "/b"), "10:00:01.000", "10.0.0.1:2"),
            a(&resp(1, 201), "10:00:01.001", "10.0.0.1:2"),
            a(&req(1, "/a"), "11:00:00.100", "10.0.0.1:3"),
            a(&resp(1, 201), "11:00:00.101", "10.0.0.1:3"),
            a(&resp(1, 201), "11:01:00.101", "10.0.0.1:4"),
        ];
        let (s, _) = inspect(&log, Mode::Summary);
        assert_eq!((s.pairs, s.duplicates, s.sequence_reuses), (3, 1, 4));
        assert_eq!((s.orphan_responses, s.unanswered_requests), (0, 0));
    }

    #[test]
    fn annotations_are_the_last_members_the_daemon_adds() {
        fn at(text: &str) -> Option<&str> {
            annotations(text.as_bytes()).map(|(i, _)| &text[..i])
        }
        let annotated = r#"{"sequence":1,"x":2,"_received_at":"2026-12-01T18:53:58.464Z","_peer":"p:1","_client":"CN=s"}"#;
        assert_eq!(at(annotated), Some(r#"{"sequence":1,"x":2"#));
        assert_eq!(
            annotations(annotated.as_bytes()).map(|(_, t)| t),
            Some(Some(1_796_151_238_464))
        );
        assert_eq!(
            at(r#"{"sequence":1,"_received_at":"t","_peer":"p:1"}"#),
            Some(r#"{"sequence":1"#)
        );
        // The sender's own members of that name are the record's.
        assert_eq!(at(r#"{"sequence":1,"x":{"a":1,"_received_at":"t"}}"#), None);
        assert_eq!(at(r#"{"sequence":1,"_received_at":"t","x":2}"#), None);
        assert_eq!(
            at(r#"{"sequence":1,"_received_at":"t","_peer":"p","_peer":"q"}"#),
            None
        );
        assert_eq!(at(r#"{"sequence":1}"#), None);
    }

    #[test]
    fn normalize_writes_what_the_daemon_would() {
        let (s, out) = inspect(
            &["{ \"sequence\" : 1 ,\n \"x\": [1, 2] }".to_string()],
            Mode::Normalize,
        );
        assert_eq!(out, "{\"sequence\":1,\"x\":[1,2]}\n");
        assert_eq!(s.nonconforming, 1);
    }
}
