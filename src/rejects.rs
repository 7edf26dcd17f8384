//! The rejects file (`--rejects`): every refused body kept as one NDJSON line with when, from
//! whom, the status and the reason, so an operator can audit and replay what was refused.
//!
//! Lines go through their own [`Output`] writer, with the same guarantees as the records. The
//! body is kept as a string when it is UTF-8, as `body_base64` when it is not. A body of JSON
//! records keeps them as sent, except that a record with credentials is kept minified with its
//! credentials marked, as the output would have it ([`redact_body`]): the rejects file is read
//! by the same people as the log.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::SystemTime;

use crate::ingest::split;
use crate::json::minify::minify_into;
use crate::observe::timefmt::rfc3339_millis;
use crate::output::{Output, WriteError};
use crate::redact::Redactor;

/// Where refused bodies go.
#[derive(Clone)]
pub struct Rejects {
    output: Output,
}

impl Rejects {
    /// Keeps refused bodies through `output`.
    pub fn new(output: Output) -> Rejects {
        Rejects { output }
    }

    /// The writer behind the rejects file (for reopening).
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Appends one refusal; returns once it is written.
    pub async fn keep(
        &self,
        peer: SocketAddr,
        status: u16,
        error: &str,
        body: &[u8],
        truncated: bool,
    ) -> Result<(), WriteError> {
        let line = line(SystemTime::now(), peer, status, error, body, truncated);
        self.output.write(line).await
    }
}

/// The NDJSON line for one refusal.
pub fn line(
    time: SystemTime,
    peer: SocketAddr,
    status: u16,
    error: &str,
    body: &[u8],
    truncated: bool,
) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), rfc3339_millis(time).into());
    obj.insert("peer".into(), peer.to_string().into());
    obj.insert("status".into(), status.into());
    obj.insert("error".into(), error.into());
    match std::str::from_utf8(body) {
        Ok(text) => obj.insert("body".into(), text.into()),
        Err(_) => obj.insert("body_base64".into(), base64(body).into()),
    };
    if truncated {
        obj.insert("truncated".into(), true.into());
    }
    let mut line = serde_json::Value::Object(obj).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// `body` with the credentials of its records marked, or `None` when it has none to mark.
///
/// The records are those the splitter finds (one object, an array's elements, NDJSON or
/// concatenated objects); when it finds none, as in a body cut at the size limit or with one
/// broken record, each line that holds a whole JSON object is taken as one. A record with a
/// credential is replaced, where it stands, by its minified text with the marks; everything
/// else of the body (other records, separators, whatever is not JSON) stays byte for byte.
pub fn redact_body(body: &[u8], redactor: &Redactor) -> Option<Vec<u8>> {
    if redactor.names().is_empty() {
        return None;
    }
    let spans: Vec<Range<usize>> = match split::split(body) {
        Ok(split) => split
            .records
            .iter()
            .filter_map(|r| span_in(body, r.get().as_bytes()))
            .collect(),
        Err(_) => object_lines(body).collect(),
    };
    let mut out = Vec::new();
    let mut minified = Vec::new();
    let mut copied = 0;
    for span in spans {
        if span.start < copied {
            continue;
        }
        minified.clear();
        minify_into(&body[span.clone()], &mut minified);
        let base = out.len();
        out.extend_from_slice(&body[copied..span.start]);
        if redactor.redact_into(&minified, &mut out) > 0 {
            copied = span.end;
        } else {
            out.truncate(base);
        }
    }
    if copied == 0 {
        return None;
    }
    out.extend_from_slice(&body[copied..]);
    Some(out)
}

/// Where `part`, a slice of `body`'s own bytes (as the splitter hands back records), lies in it.
fn span_in(body: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= body.len()).then_some(start..end)
}

/// Each line of `body` that, trimmed of JSON whitespace, begins with `{` and ends with `}`.
fn object_lines(body: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let mut at = 0;
    body.split(|b| *b == b'\n').filter_map(move |line| {
        let start = at;
        at += line.len() + 1;
        let first = line.iter().position(|b| !is_space(b))?;
        let last = line.iter().rposition(|b| !is_space(b))?;
        (line[first] == b'{' && line[last] == b'}').then_some(start + first..start + last + 1)
    })
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn lines_hold_text_or_base64() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_678_150_650_123);
        let l = line(t, peer, 400, "not valid JSON", b"nope\n", false);
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["time"], "2023-03-07T00:57:30.123Z");
        assert_eq!(
            (v["peer"].as_str(), v["status"].as_u64(), v["body"].as_str()),
            (Some("10.0.0.1:5000"), Some(400), Some("nope\n"))
        );
        assert!(l.ends_with(b"}\n") && l.iter().filter(|b| **b == b'\n').count() == 1);
        let l = line(t, peer, 413, "too large", &[0xff, 0x00, 0x41], true);
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(
            (v["body_base64"].as_str(), v["truncated"].as_bool()),
            (Some("/wBB"), Some(true))
        );
        assert!(v.get("body").is_none());
    }

    #[test]
    fn kept_bodies_have_their_credentials_marked_and_nothing_else_changed() {
        use crate::redact::{default_names, RedactKey, Redactor};
        let r = Redactor::new(&RedactKey::from_bytes([3; 32]), &default_names());
        let mark = |v: &str| String::from_utf8(r.mark(v.as_bytes()).to_vec()).unwrap();
        let with = r#"{"sequence":1,"request":{"Method":"GET","Header":{"Cookie":[ "c=1" ]}}}"#;
        let marked = format!(
            r#"{{"sequence":1,"request":{{"Method":"GET","Header":{{"Cookie":[{}]}}}}}}"#,
            mark("c=1")
        );
        let without = r#"{ "sequence": 2, "request": {"Method": "GET"} }"#;
        let redacted = |body: &str| redact_body(body.as_bytes(), &r).map(|b| String::from_utf8(b).unwrap());
        // One record, an array, NDJSON, pretty-printed: each record where it stands.
        assert_eq!(redacted(with).unwrap(), marked);
        assert_eq!(
            redacted(&format!("[ {without},\n{with} ]")).unwrap(),
            format!("[ {without},\n{marked} ]")
        );
        assert_eq!(
            redacted(&format!("{with}\r\n{without}\n")).unwrap(),
            format!("{marked}\r\n{without}\n")
        );
        let pretty = "{\n  \"sequence\": 1,\n  \"request\": {\n    \"Method\": \"GET\",\n    \"Header\": {\"Cookie\": [\"c=1\"]}\n  }\n}\n";
        assert_eq!(redacted(pretty).unwrap(), format!("{marked}\n"));
        // Split fails (a broken record, a body cut short): whole object lines still marked.
        assert_eq!(
            redacted(&format!("{with}\n{{\"sequence\":")).unwrap(),
            format!("{marked}\n{{\"sequence\":")
        );
        // Nothing to mark: kept as sent.
        for body in [
            without,
            "not json",
            "",
            "{\"Header\":{\"Cookie\":[\"x\"]}}",
            "[1, 2]",
        ] {
            assert_eq!(redacted(body), None, "{body}");
        }
        let off = Redactor::new(&RedactKey::from_bytes([3; 32]), &[]);
        assert_eq!(redact_body(with.as_bytes(), &off), None);
    }
}
