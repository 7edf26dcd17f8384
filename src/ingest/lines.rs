//! From a decoded body to the lines the output writes: split into records, each checked (the
//! fast check when it is sure, the full one otherwise), minified, keyed for correlation, its
//! credentials marked ([`crate::redact`]) and annotated when asked — all into one buffer, one
//! line per record.

use crate::correlate::{Fingerprint, RecordKey, Verdict};
use crate::ingest::error::IngestError;
use crate::ingest::split::{self, Shape};
use crate::json::minify::minify_into;
use crate::record::fast_check;
use crate::record::{self, Kind, Nonconformity};
use crate::redact::Redactor;

/// A body's records, checked and ready to write.
#[derive(Debug, Default)]
pub struct Prepared {
    /// One minified line per record, each ending in `\n`.
    pub lines: Vec<u8>,
    /// Number of records.
    pub records: usize,
    /// Request records among them.
    pub(crate) requests: usize,
    /// Response records among them.
    pub(crate) responses: usize,
    /// Records that do not conform (written anyway, lenient mode).
    pub(crate) nonconforming: usize,
    /// The first problem, with where it is, for the warning.
    pub(crate) first_problem: Option<String>,
    /// Per record: kind, sequence and fingerprint when it conforms (for correlation).
    pub(crate) keys: Vec<Option<RecordKey>>,
    /// Per record: where its line ends in `lines`.
    pub(crate) ends: Vec<usize>,
    /// Header values written as marks: (record index, how many), for the records that have
    /// any (empty, so never allocated, for records without credentials).
    pub(crate) redacted: Vec<(usize, usize)>,
    /// A minified record with credentials waits here while its marked line is written to
    /// `lines` (the rewrite reads one buffer and writes another); kept for the body's next one.
    scratch: Vec<u8>,
}

impl Prepared {
    /// The lines of the records not judged duplicates.
    pub(crate) fn lines_to_write(&self, verdicts: &[Verdict]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.len());
        let mut start = 0;
        for (end, v) in self.ends.iter().zip(verdicts) {
            if *v != Verdict::Duplicate {
                out.extend_from_slice(&self.lines[start..*end]);
            }
            start = *end;
        }
        out
    }

    /// Header values written as marks in the records not judged duplicates.
    pub(crate) fn redacted_to_write(&self, verdicts: &[Verdict]) -> usize {
        self.redacted
            .iter()
            .filter(|(i, _)| verdicts.get(*i) != Some(&Verdict::Duplicate))
            .map(|(_, n)| n)
            .sum()
    }
}

/// What is done to each record on its way to a line, besides checking and minifying.
#[derive(Debug, Clone, Copy, Default)]
pub struct Treatment<'a> {
    /// Refuse the whole body for one record that does not conform.
    pub strict: bool,
    /// Members added to each record (`--annotate`).
    pub annotation: Option<&'a Annotation>,
    /// Credentials marked (`LOGGER_REDACT`); `None` when off.
    pub redactor: Option<&'a Redactor>,
}

/// Members added to each record with `--annotate`.
#[derive(Debug, Clone)]
pub struct Annotation {
    /// `,"_received_at":"…","_peer":"…"` (and `"_client"`), ready to splice in.
    members: String,
}

impl Annotation {
    /// The members for a record received at `received_at` (RFC 3339) from `peer`, with the
    /// client certificate's subject when there is one.
    pub fn new(received_at: &str, peer: &str, client: Option<&str>) -> Annotation {
        let q = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let mut members = format!(",\"_received_at\":{},\"_peer\":{}", q(received_at), q(peer));
        if let Some(c) = client {
            members.push_str(&format!(",\"_client\":{}", q(c)));
        }
        Annotation { members }
    }

    /// Adds the members as the last ones of the object that ends `line`.
    fn apply(&self, line: &mut Vec<u8>, record_start: usize) {
        if line.last() != Some(&b'}') {
            return;
        }
        line.pop();
        let empty_object = line.len() == record_start + 1;
        let members = if empty_object {
            &self.members[1..]
        } else {
            &self.members[..]
        };
        line.extend_from_slice(members.as_bytes());
        line.push(b'}');
    }
}

/// Splits, checks and minifies `body`, marking credentials and annotating each record as `how`
/// says. Strict mode refuses the whole body for one bad record.
pub fn prepare(body: &[u8], how: Treatment<'_>) -> Result<Prepared, IngestError> {
    match prepare_conforming_lines(body, how) {
        Some(prepared) => Ok(prepared),
        None => prepare_split(body, how),
    }
}

/// [`prepare`] for any body: split, then each record checked and minified.
fn prepare_split(body: &[u8], how: Treatment<'_>) -> Result<Prepared, IngestError> {
    let split = split::split(body)?;
    let batch = split.shape != Shape::Single;
    let mut out = Prepared {
        lines: Vec::with_capacity(body.len() + split.records.len()),
        records: split.records.len(),
        ..Prepared::default()
    };
    out.keys.reserve(split.records.len());
    for (i, raw) in split.records.iter().enumerate() {
        let (key, compact) = match check(raw.get()) {
            Ok((kind, sequence, compact)) => (Some((kind, sequence)), compact),
            Err(mut problem) => {
                // The problem is logged, answered and kept: never with a credential in it.
                if let Some(reason) = how
                    .redactor
                    .and_then(|r| r.scrub_problem(&problem.field, &problem.reason))
                {
                    problem.reason = reason;
                }
                let where_ = if batch {
                    format!("record {} ", i + 1)
                } else {
                    String::new()
                };
                if how.strict {
                    return Err(IngestError::Nonconforming { where_, problem });
                }
                out.nonconforming += 1;
                if out.first_problem.is_none() {
                    out.first_problem = Some(format!("{where_}does not conform: {problem}"));
                }
                (None, false)
            }
        };
        out.add(raw.get().as_bytes(), key, compact, how);
    }
    Ok(out)
}

/// The common cases in one parse: a body that is one conforming record, or NDJSON whose every
/// line is one (what senders and the `send` command post). The record check parses a line's
/// whole text and fails on anything after the object, so a success on every line is exactly
/// what the splitter would have found, checked. Anything else (an array, pretty-printed
/// records, a bad record, not JSON) returns `None` and takes the general path, which says
/// precisely what is wrong.
fn prepare_conforming_lines(body: &[u8], how: Treatment<'_>) -> Option<Prepared> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    // JSON's own whitespace only: the splitter refuses anything else before a value.
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|b| !is_space(b))?;
    let body = &body[start..];
    if body.first() != Some(&b'{') {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    conforming_lines(text, how).or_else(|| {
        // One pretty-printed record.
        let (kind, sequence, compact) = check(text).ok()?;
        let mut out = Prepared {
            lines: Vec::with_capacity(body.len() + 1),
            records: 1,
            ..Prepared::default()
        };
        // The record's own text ends at its closing brace; whitespace after it is not part of it.
        let end = text.trim_end_matches(is_json_space).len();
        out.add(&body[..end], Some((kind, sequence)), compact, how);
        Some(out)
    })
}

/// Each non-blank line of `text` as one conforming record, or `None`.
fn conforming_lines(text: &str, how: Treatment<'_>) -> Option<Prepared> {
    let mut out = Prepared {
        lines: Vec::with_capacity(text.len() + 1),
        ..Prepared::default()
    };
    for line in text.split('\n') {
        let line = line.trim_matches(is_json_space);
        if line.is_empty() {
            continue;
        }
        let (kind, sequence, compact) = check(line).ok()?;
        out.records += 1;
        out.add(line.as_bytes(), Some((kind, sequence)), compact, how);
    }
    Some(out)
}

/// A record's kind and sequence, and whether its text is already minified: the quick check when
/// it is sure, else the full one, which says what is wrong.
fn check(json: &str) -> Result<(Kind, u64, bool), Nonconformity> {
    match fast_check::check(json) {
        Some(q) => Ok((q.kind, q.sequence, q.compact)),
        None => record::check(json).map(|r| (r.kind(), r.sequence(), false)),
    }
}

/// JSON's own whitespace; nothing else may stand between values.
fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

impl Prepared {
    /// Appends one record's line: minified (unless `compact` says it is already), keyed by its
    /// text as received, its credentials marked and annotated as `how` says.
    fn add(&mut self, raw: &[u8], key: Option<(Kind, u64)>, compact: bool, how: Treatment<'_>) {
        match key {
            Some((Kind::Request, _)) => self.requests += 1,
            Some((Kind::Response, _)) => self.responses += 1,
            None => {}
        }
        let start = self.lines.len();
        let mut redacted = 0;
        if compact {
            // The record is its own minified text: the marked line is written straight from it.
            if let Some(r) = how.redactor {
                redacted = r.redact_into(raw, &mut self.lines);
            }
            if redacted == 0 {
                self.lines.extend_from_slice(raw);
            }
        } else {
            minify_into(raw, &mut self.lines);
        }
        // Duplicates are recognised by the record as received (SPEC 4.9): before its marks.
        self.keys.push(key.map(|(kind, sequence)| RecordKey {
            kind,
            sequence,
            fingerprint: Fingerprint::of(if redacted == 0 { &self.lines[start..] } else { raw }),
        }));
        if let (false, Some(r)) = (compact, how.redactor) {
            // Rare (a record with credentials that came pretty-printed): the minified line moves
            // to the reused scratch buffer and comes back marked.
            if r.may_redact(&self.lines[start..]) {
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.lines[start..]);
                self.lines.truncate(start);
                redacted = r.redact_into(&self.scratch, &mut self.lines);
                if redacted == 0 {
                    self.lines.extend_from_slice(&self.scratch);
                }
            }
        }
        if redacted > 0 {
            self.redacted.push((self.ends.len(), redacted));
        }
        if let Some(a) = how.annotation {
            a.apply(&mut self.lines, start);
        }
        self.lines.push(b'\n');
        self.ends.push(self.lines.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::WriteError;
    use http::StatusCode;

    fn lenient() -> Treatment<'static> {
        Treatment::default()
    }

    fn strict() -> Treatment<'static> {
        Treatment {
            strict: true,
            ..Treatment::default()
        }
    }

    fn annotated(a: &Annotation) -> Treatment<'_> {
        Treatment {
            annotation: Some(a),
            ..Treatment::default()
        }
    }

    const REQ: &str = "{\n  \"sequence\": 1,\n  \"request\": {\"Method\": \"GET\", \"RequestURI\": \"/\"}\n}";

    #[test]
    fn lenient_writes_and_counts_strict_refuses() {
        let body = format!("[{REQ}, {{\"sequence\": 2, \"note\": \"no kind\"}}]");
        let p = prepare(body.as_bytes(), lenient()).unwrap();
        assert_eq!((p.records, p.requests, p.nonconforming), (2, 1, 1));
        assert_eq!(
            String::from_utf8(p.lines).unwrap(),
            "{\"sequence\":1,\"request\":{\"Method\":\"GET\",\"RequestURI\":\"/\"}}\n{\"sequence\":2,\"note\":\"no kind\"}\n"
        );
        let e = prepare(body.as_bytes(), strict()).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e
            .to_string()
            .starts_with("record 2 does not conform: has neither"));
    }

    #[test]
    fn annotations_are_the_last_members_and_do_not_change_the_fingerprint() {
        let a = Annotation::new("2026-11-25T15:35:22.123Z", "10.1.2.3:4000", Some("CN=s\"1"));
        let body = format!("{REQ}\n{{}}\n");
        let p = prepare(body.as_bytes(), annotated(&a)).unwrap();
        let text = String::from_utf8(p.lines.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(
            r#""RequestURI":"/"},"_received_at":"2026-11-25T15:35:22.123Z","_peer":"10.1.2.3:4000","_client":"CN=s\"1"}"#
        ));
        assert!(lines[1].starts_with(r#"{"_received_at":"#));
        let plain = prepare(body.as_bytes(), lenient()).unwrap();
        assert_eq!(p.keys[0], plain.keys[0]);
        assert!(p.keys[0].is_some() && p.keys[1].is_none());
        let kept = p.lines_to_write(&[Verdict::Duplicate, Verdict::New]);
        assert_eq!(String::from_utf8(kept).unwrap(), format!("{}\n", lines[1]));
    }

    #[test]
    fn conforming_lines_in_one_parse_are_what_the_split_gives() {
        let a = Annotation::new("2026-11-25T15:35:22.123Z", "10.1.2.3:4000", None);
        let response = r#"{"sequence":9,"response_status_code":"200","response_body":{}}"#;
        let compact_req = String::from_utf8(crate::json::minify::minify(REQ.as_bytes())).unwrap();
        for body in [
            REQ.to_string(),
            format!("\u{feff} \r\n{REQ}\n\n "),
            response.to_string(),
            format!("{response}\t"),
            format!("{response}\n{compact_req}\n"),
            format!("{response}\r\n\r\n  {response}  \r\n"),
        ] {
            let fast = prepare_conforming_lines(body.as_bytes(), annotated(&a)).expect("takes the fast path");
            let split = prepare_split(
                body.as_bytes(),
                Treatment {
                    strict: true,
                    ..annotated(&a)
                },
            )
            .unwrap();
            assert_eq!(
                (
                    &fast.lines,
                    &fast.keys,
                    &fast.ends,
                    fast.records,
                    fast.requests,
                    fast.responses
                ),
                (
                    &split.lines,
                    &split.keys,
                    &split.ends,
                    split.records,
                    split.requests,
                    split.responses
                ),
                "{body:?}"
            );
        }
        // Everything else is for the general path, which says what is wrong or splits the batch.
        for body in [
            format!("{REQ}\n{REQ}"),
            format!("{response}\n{response} x"),
            format!("{response} {response}\n"),
            format!("{REQ} x"),
            format!("\x0c{REQ}"),
            r#"{"sequence":1,"sequence":2,"response_status_code":200}"#.to_string(),
            r#"{"sequence":1}"#.to_string(),
            format!("[{REQ}]"),
            "{\"sequence\":1,\"note\":\"\u{1}\"}".to_string(),
        ] {
            assert!(
                prepare_conforming_lines(body.as_bytes(), lenient()).is_none(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn credentials_are_marked_after_the_fingerprint_and_before_the_annotation() {
        use crate::redact::{default_names, RedactKey, Redactor};
        let r = Redactor::new(&RedactKey::from_bytes([1; 32]), &default_names());
        let a = Annotation::new("2026-11-25T15:35:22.123Z", "10.1.2.3:4000", None);
        let mark = String::from_utf8(r.mark(b"Bearer abc").to_vec()).unwrap();
        let compact = r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"Authorization":["Bearer abc"]}}}"#;
        let pretty = "{\n \"sequence\": 1,\n \"request\": {\"Method\": \"GET\", \"RequestURI\": \"/\",\n  \"Header\": {\"Authorization\": [\"Bearer abc\"]}}\n}";
        let expected = compact.replace(r#""Bearer abc""#, &mark);
        for body in [compact, pretty] {
            let how = Treatment {
                annotation: Some(&a),
                redactor: Some(&r),
                ..lenient()
            };
            let p = prepare(body.as_bytes(), how).unwrap();
            let text = String::from_utf8(p.lines.clone()).unwrap();
            assert!(text.starts_with(&expected[..expected.len() - 1]), "{text}");
            assert!(text.ends_with(",\"_peer\":\"10.1.2.3:4000\"}\n"), "{text}");
            assert!(!text.contains("abc"));
            assert_eq!(p.redacted, [(0, 1)]);
            assert_eq!(p.redacted_to_write(&[Verdict::Duplicate]), 0);
            // Keyed as received: the same key as without redaction.
            assert_eq!(p.keys, prepare(body.as_bytes(), lenient()).unwrap().keys);
        }
        // A batch: counted per record, so a duplicate's marks are not counted as written.
        let body = format!("[{compact}, {REQ}, {compact}]");
        let how = Treatment {
            redactor: Some(&r),
            ..lenient()
        };
        let p = prepare(body.as_bytes(), how).unwrap();
        assert_eq!(p.redacted, [(0, 1), (2, 1)]);
        assert_eq!(
            p.redacted_to_write(&[Verdict::New, Verdict::New, Verdict::Duplicate]),
            1
        );
    }

    #[test]
    fn numbers_beyond_f64_are_kept_verbatim() {
        let body =
            br#"{"sequence":1,"response_status_code":200,"big":1e999,"long":123456789012345678901234567890}"#;
        let p = prepare(body, strict()).unwrap();
        assert_eq!(&p.lines[..p.lines.len() - 1], &body[..]);
    }

    #[test]
    fn statuses() {
        assert_eq!(
            prepare(b"", lenient()).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            prepare(b"[]", lenient()).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            prepare(b"\"x\"", lenient()).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        let e = IngestError::Output(WriteError::QueueFull);
        assert_eq!(
            (e.status(), e.retry_after()),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
    }

    mod properties {
        use super::super::*;
        use super::{lenient, strict};
        use crate::redact::{default_names, RedactKey, Redactor};
        use proptest::prelude::*;

        /// Lines a body may hold: conforming records (compact and pretty), records that do not
        /// conform, broken JSON, non-objects, blank lines.
        const PIECES: &[&str] = &[
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":2,"response_status_code":200,"response_body":{"a":[1,2]}}"#,
            r#"{ "sequence" : 3 , "response_status_code" : "204" }"#,
            "{\n  \"sequence\": 4,\n  \"request\": {\"Method\": \"GET\", \"RequestURI\": \"/x y\"}\n}",
            r#"{"sequence":5}"#,
            r#"{"sequence":10,"request":{"Method":"GET","RequestURI":"/","Header":{"Cookie":["c"]}}}"#,
            "{\"sequence\": 11, \"response_status_code\": 200,\n \"response_headers\": {\"Set-Cookie\": [\"a\", \"b\"]}}",
            r#"{"sequence":6,"request":{"Method":"GET"}}"#,
            r#"{"sequence":7,"response_status_code":200"#,
            r#"[{"sequence":8,"response_status_code":200}]"#,
            r#""text""#,
            "",
            "  \t",
            "\u{feff}",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whenever the one-parse path takes a body, the general path takes it too and
            /// gives exactly the same lines, keys and counts.
            #[test]
            fn the_one_parse_path_agrees_with_the_general_one(
                picks in proptest::collection::vec((0..PIECES.len(), 0..3usize), 1..6),
            ) {
                let mut body = String::new();
                for (piece, sep) in picks {
                    body.push_str(PIECES[piece]);
                    body.push_str(["\n", "\r\n", " "][sep]);
                }
                if let Some(fast) = prepare_conforming_lines(body.as_bytes(), lenient()) {
                    let general = prepare_split(body.as_bytes(), strict());
                    prop_assert!(general.is_ok(), "{:?}: {:?}", body, general.err());
                    let general = general.unwrap();
                    prop_assert_eq!(&fast.lines, &general.lines, "{:?}", body);
                    prop_assert_eq!(&fast.keys, &general.keys);
                    prop_assert_eq!(&fast.ends, &general.ends);
                    prop_assert_eq!(
                        (fast.records, fast.requests, fast.responses, fast.nonconforming),
                        (general.records, general.requests, general.responses, general.nonconforming)
                    );
                }
                // With redaction: the same keys (duplicates are judged on the records as
                // received), and each line the unmarked one with its credentials marked.
                let r = Redactor::new(&RedactKey::from_bytes([9; 32]), &default_names());
                let marked = Treatment { redactor: Some(&r), ..lenient() };
                if let (Ok(plain), Ok(red)) = (prepare(body.as_bytes(), lenient()), prepare(body.as_bytes(), marked)) {
                    prop_assert_eq!(&plain.keys, &red.keys);
                    let mut expected = Vec::new();
                    let mut start = 0;
                    let mut count = 0;
                    for end in &plain.ends {
                        let line = &plain.lines[start..end - 1];
                        let n = r.redact_into(line, &mut expected);
                        if n == 0 {
                            expected.extend_from_slice(line);
                        }
                        count += n;
                        expected.push(b'\n');
                        start = *end;
                    }
                    prop_assert_eq!(&red.lines, &expected);
                    prop_assert_eq!(red.redacted.iter().map(|(_, n)| n).sum::<usize>(), count);
                    prop_assert_eq!(red.redacted_to_write(&vec![Verdict::New; red.records]), count);
                }
            }
        }
    }
}
