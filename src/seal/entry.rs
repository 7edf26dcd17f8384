//! The seal entry: its members, its canonical line with the MAC, and parsing a line back.
//!
//! Writing and parsing live together so that the one spelling of an entry (see the module
//! documentation of `seal`) is defined in one place. Also here: [`LineReader`], which reads
//! `.seal` lines with a bounded buffer for both the sealer and the verifier.

use std::fmt::Write as _;
use std::io::{self, BufRead};

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use super::key::EpochKey;
use super::{hex, parse_hex32, EntryError, KEY_LEN, MAX_LINE};

/// What an entry marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The daemon started on this file: seals what was there past the last entry.
    Start,
    /// A periodic seal of what the daemon wrote since the previous entry.
    Seal,
    /// The first entry of a file opened at a reopen (rotation): continues the previous file's chain.
    Reopen,
    /// The daemon stopped writing this file (shutdown, or the old file at a reopen).
    Stop,
    /// A torn last line was moved out of the file at start; its hash is in `moved`.
    Repair,
}

impl Kind {
    /// The name used in entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Seal => "seal",
            Kind::Reopen => "reopen",
            Kind::Stop => "stop",
            Kind::Repair => "repair",
        }
    }
}

/// What a `repair` entry records about a torn last line moved out of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// How many bytes were moved.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; KEY_LEN],
    /// The base name of the file they were appended to (`FILE.partial`).
    pub to: String,
}

/// One entry's members, without its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the entry marks.
    pub kind: Kind,
    /// Its epoch: the MAC key is `key(epoch)`.
    pub epoch: u64,
    /// When it was written, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The output's base name when it was written.
    pub file: String,
    /// First byte of the output covered.
    pub start: u64,
    /// One past the last byte covered.
    pub end: u64,
    /// Number of `\n` in the range.
    pub lines: u64,
    /// SHA-256 of the range.
    pub sha256: [u8; KEY_LEN],
    /// The previous entry's digest (its MAC); zeros for the first entry of a set.
    pub prev: [u8; KEY_LEN],
    /// On a `reopen`: the base name the previous entry was written for.
    pub prev_file: Option<String>,
    /// On a `start`: the range was added while no daemon ran.
    pub foreign: bool,
    /// On a `repair`: the torn tail moved out.
    pub moved: Option<Moved>,
}

impl Entry {
    /// The bytes the MAC covers: the line up to (not including) `,"mac":`.
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(400);
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = write!(
            s,
            r#"{{"v":1,"kind":"{}","epoch":{},"time":"#,
            self.kind.as_str(),
            self.epoch
        );
        push_json_str(&mut s, &self.time);
        s.push_str(r#","file":"#);
        push_json_str(&mut s, &self.file);
        let _ = write!(
            s,
            r#","start":{},"end":{},"lines":{},"sha256":"{}","prev":"{}""#,
            self.start,
            self.end,
            self.lines,
            hex(&self.sha256),
            hex(&self.prev)
        );
        if let Some(prev_file) = &self.prev_file {
            s.push_str(r#","prev_file":"#);
            push_json_str(&mut s, prev_file);
        }
        if self.foreign {
            s.push_str(r#","foreign":true"#);
        }
        if let Some(m) = &self.moved {
            let _ = write!(
                s,
                r#","moved":{{"bytes":{},"sha256":"{}","to":"#,
                m.bytes,
                hex(&m.sha256)
            );
            push_json_str(&mut s, &m.to);
            s.push('}');
        }
        s
    }

    /// The full `.seal` line (with its `\n`) and the MAC, which is also the entry's digest.
    pub(crate) fn seal_with(&self, key: &EpochKey) -> (String, [u8; KEY_LEN]) {
        let body = self.body();
        let tag = hmac::sign(&key.hmac_key(), body.as_bytes());
        let mut mac = [0u8; KEY_LEN];
        for (m, b) in mac.iter_mut().zip(tag.as_ref()) {
            *m = *b;
        }
        let line = format!(r#"{body},"mac":"{}"}}"#, hex(&mac)) + "\n";
        (line, mac)
    }
}

/// An entry read from a `.seal` line, with the MAC it carries (not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEntry {
    /// The members.
    pub entry: Entry,
    /// The MAC as written: also the digest the next entry's `prev` must hold.
    pub mac: [u8; KEY_LEN],
}

/// An entry as serde sees it; turned into [`Entry`] after checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u64,
    kind: Kind,
    epoch: u64,
    time: String,
    file: String,
    start: u64,
    end: u64,
    lines: u64,
    sha256: String,
    prev: String,
    #[serde(default)]
    prev_file: Option<String>,
    #[serde(default)]
    foreign: Option<bool>,
    #[serde(default)]
    moved: Option<WireMoved>,
    mac: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMoved {
    bytes: u64,
    sha256: String,
    to: String,
}

impl SealedEntry {
    /// Parses one `.seal` line (without or with its `\n`). Checks the form, not the MAC.
    pub fn parse(line: &[u8]) -> Result<Self, EntryError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(EntryError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| EntryError::NotUtf8)?;
        let w: Wire = serde_json::from_str(text).map_err(|e| EntryError::NotJson(e.to_string()))?;
        if w.v != 1 {
            return Err(EntryError::Version(w.v));
        }
        let hex32 = |s: &str, member| parse_hex32(s, false).ok_or(EntryError::BadHex(member));
        let moved = match w.moved {
            Some(m) => Some(Moved {
                bytes: m.bytes,
                sha256: hex32(&m.sha256, "moved.sha256")?,
                to: m.to,
            }),
            None => None,
        };
        let entry = Entry {
            kind: w.kind,
            epoch: w.epoch,
            time: w.time,
            file: w.file,
            start: w.start,
            end: w.end,
            lines: w.lines,
            sha256: hex32(&w.sha256, "sha256")?,
            prev: hex32(&w.prev, "prev")?,
            prev_file: w.prev_file,
            foreign: w.foreign.unwrap_or(false),
            moved,
        };
        let mac = hex32(&w.mac, "mac")?;
        check_consistent(&entry)?;
        // One spelling per entry: the bytes must be exactly what the writer would produce, so
        // that the MAC (over the bytes) and the members (as parsed) cannot tell different stories.
        let canonical = format!(r#"{},"mac":"{}"}}"#, entry.body(), hex(&mac));
        if canonical.as_bytes() != line {
            return Err(EntryError::NotCanonical);
        }
        Ok(SealedEntry { entry, mac })
    }

    /// Whether the MAC is right for `key` (compared in constant time).
    pub(crate) fn mac_ok(&self, key: &EpochKey) -> bool {
        hmac::verify(&key.hmac_key(), self.entry.body().as_bytes(), &self.mac).is_ok()
    }
}

fn check_consistent(e: &Entry) -> Result<(), EntryError> {
    if e.end < e.start {
        return Err(EntryError::Inconsistent("\"end\" is before \"start\""));
    }
    if e.lines > e.end - e.start {
        return Err(EntryError::Inconsistent("more lines than bytes"));
    }
    if e.epoch == 0 {
        return Err(EntryError::Inconsistent(
            "epoch 0 is the verification key's, never an entry's",
        ));
    }
    if (e.kind == Kind::Reopen) != e.prev_file.is_some() {
        return Err(EntryError::Inconsistent(
            "\"prev_file\" belongs on reopen entries, and only there",
        ));
    }
    if e.foreign && e.kind != Kind::Start {
        return Err(EntryError::Inconsistent(
            "\"foreign\" belongs on start entries only",
        ));
    }
    if (e.kind == Kind::Repair) != e.moved.is_some() {
        return Err(EntryError::Inconsistent(
            "\"moved\" belongs on repair entries, and only there",
        ));
    }
    if e.kind == Kind::Repair && e.start != e.end {
        return Err(EntryError::Inconsistent(
            "a repair entry's own range must be empty",
        ));
    }
    Ok(())
}

/// Appends `s` as a JSON string in the canonical spelling (serde_json's).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How a line read by [`LineReader`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineEnd {
    /// With `\n` (not kept in the buffer).
    Newline,
    /// At the end of the file, with no `\n`: a torn or cut last line.
    Eof,
}

/// One line from [`LineReader`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineInfo {
    /// Byte offset of the line's start in the file.
    pub offset: u64,
    /// Length in bytes, `\n` excluded (may exceed what the buffer kept).
    pub len: u64,
    /// How it ended.
    pub end: LineEnd,
    /// Longer than [`MAX_LINE`]: the buffer holds only the beginning.
    pub too_long: bool,
}

/// Reads lines with a bounded buffer: a line longer than [`MAX_LINE`] is skipped past, not
/// loaded, so a hostile `.seal` cannot make a reader allocate without limit.
pub(crate) struct LineReader<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineReader { inner, offset: 0 }
    }

    /// The next line into `buf` (cleared first), or `None` at the end of the file.
    pub(crate) fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let offset = self.offset;
        let mut len = 0u64;
        let mut too_long = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                return Ok(Some(LineInfo {
                    offset,
                    len,
                    end: LineEnd::Eof,
                    too_long,
                }));
            }
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            if !too_long && buf.len() + chunk.len() <= MAX_LINE {
                buf.extend_from_slice(chunk);
            } else {
                too_long = true;
            }
            let used = chunk.len() + usize::from(found);
            len += chunk.len() as u64;
            self.offset += used as u64;
            self.inner.consume(used);
            if found {
                return Ok(Some(LineInfo {
                    offset,
                    len,
                    end: LineEnd::Newline,
                    too_long,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::key::VerificationKey;

    fn sample() -> Entry {
        Entry {
            kind: Kind::Seal,
            epoch: 7,
            time: "2026-11-25T15:35:22.123Z".into(),
            file: "out.ndjson".into(),
            start: 100,
            end: 250,
            lines: 3,
            sha256: [0x11; 32],
            prev: [0x22; 32],
            prev_file: None,
            foreign: false,
            moved: None,
        }
    }

    fn key() -> VerificationKey {
        VerificationKey::parse(&format!("mlseal1-{}", "5a".repeat(32))).unwrap()
    }

    #[test]
    fn body_has_the_documented_form() {
        let e = sample();
        assert_eq!(
            e.body(),
            format!(
                r#"{{"v":1,"kind":"seal","epoch":7,"time":"2026-11-25T15:35:22.123Z","file":"out.ndjson","start":100,"end":250,"lines":3,"sha256":"{}","prev":"{}""#,
                "11".repeat(32),
                "22".repeat(32)
            )
        );
        let mut r = sample();
        r.kind = Kind::Repair;
        r.start = 250;
        r.lines = 0;
        r.moved = Some(Moved {
            bytes: 9,
            sha256: [0x33; 32],
            to: "out.ndjson.partial".into(),
        });
        assert!(r.body().ends_with(&format!(
            r#""moved":{{"bytes":9,"sha256":"{}","to":"out.ndjson.partial"}}"#,
            "33".repeat(32)
        )));
    }

    #[test]
    fn seal_then_parse_round_trips_and_the_mac_checks() {
        let vk = key();
        for e in [
            sample(),
            Entry {
                kind: Kind::Reopen,
                start: 0,
                prev_file: Some("old \"name\"\n\u{1}é".into()),
                ..sample()
            },
            Entry {
                kind: Kind::Start,
                foreign: true,
                ..sample()
            },
        ] {
            let (line, mac) = e.seal_with(&vk.key_for(e.epoch));
            assert!(line.ends_with("\"}\n"));
            let parsed = SealedEntry::parse(line.as_bytes()).unwrap();
            assert_eq!(parsed.entry, e);
            assert_eq!(parsed.mac, mac);
            assert!(parsed.mac_ok(&vk.key_for(e.epoch)));
            assert!(!parsed.mac_ok(&vk.key_for(e.epoch + 1)));
            // The escaping is serde_json's, so any JSON tool reads the same strings.
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["file"], e.file.as_str());
        }
    }

    #[test]
    fn a_changed_member_fails_the_mac() {
        let vk = key();
        let (line, _) = sample().seal_with(&vk.key_for(7));
        let changed = line.replace("\"lines\":3", "\"lines\":4");
        let parsed = SealedEntry::parse(changed.as_bytes()).unwrap();
        assert!(!parsed.mac_ok(&vk.key_for(7)));
    }

    #[test]
    fn malformed_lines_are_refused() {
        let vk = key();
        let (line, _) = sample().seal_with(&vk.key_for(7));
        let line = line.trim_end();
        let cases: Vec<(String, EntryError)> = vec![
            (line.replacen(":", ": ", 1), EntryError::NotCanonical),
            (
                line.replace(r#""v":1,"kind":"seal""#, r#""kind":"seal","v":1"#),
                EntryError::NotCanonical,
            ),
            (
                line.replace(r#""file":"out.ndjson""#, r#""file":"out\u002endjson""#),
                EntryError::NotCanonical,
            ),
            (line.replace("\"v\":1", "\"v\":2"), EntryError::Version(2)),
            (
                line.replace(&"11".repeat(32), &"1A".repeat(32)),
                EntryError::BadHex("sha256"),
            ),
            (
                line.replace("\"end\":250", "\"end\":50"),
                EntryError::Inconsistent("\"end\" is before \"start\""),
            ),
            (
                line.replace("\"epoch\":7", "\"epoch\":0"),
                EntryError::Inconsistent("epoch 0 is the verification key's, never an entry's"),
            ),
            ("x".repeat(MAX_LINE + 1), EntryError::TooLong),
        ];
        for (text, want) in cases {
            assert_eq!(SealedEntry::parse(text.as_bytes()), Err(want), "{text}");
        }
        // Members misplaced but otherwise valid: a start's `foreign` before `prev`.
        let mut start = sample();
        start.kind = Kind::Start;
        start.foreign = true;
        let (line2, _) = start.seal_with(&vk.key_for(7));
        let moved = line2
            .replace(r#","foreign":true"#, "")
            .replace(r#","sha256":"#, r#","foreign":true,"sha256":"#);
        assert_eq!(
            SealedEntry::parse(moved.trim_end().as_bytes()),
            Err(EntryError::NotCanonical)
        );
        assert!(matches!(
            SealedEntry::parse(line.replace("\"seal\"", "\"other\"").as_bytes()),
            Err(EntryError::NotJson(_))
        ));
        assert_eq!(SealedEntry::parse(b"\xff"), Err(EntryError::NotUtf8));
        assert!(matches!(SealedEntry::parse(b"{}"), Err(EntryError::NotJson(_))));
        let with_extra = line.replacen("{", r#"{"x":1,"#, 1);
        assert!(matches!(
            SealedEntry::parse(with_extra.as_bytes()),
            Err(EntryError::NotJson(_))
        ));
        let dup = line.replacen(r#""v":1,"#, r#""v":1,"v":1,"#, 1);
        assert!(matches!(
            SealedEntry::parse(dup.as_bytes()),
            Err(EntryError::NotJson(_))
        ));
    }

    #[test]
    fn misplaced_optional_members_are_refused() {
        let vk = key();
        let mut e = sample();
        e.foreign = true; // on a seal entry
        let (line, _) = e.seal_with(&vk.key_for(7));
        assert!(matches!(
            SealedEntry::parse(line.as_bytes()),
            Err(EntryError::Inconsistent(_))
        ));
        let mut e = sample();
        e.kind = Kind::Reopen; // without prev_file
        let (line, _) = e.seal_with(&vk.key_for(7));
        assert!(matches!(
            SealedEntry::parse(line.as_bytes()),
            Err(EntryError::Inconsistent(_))
        ));
        let mut e = sample();
        e.kind = Kind::Repair; // without moved, and a non-empty range
        let (line, _) = e.seal_with(&vk.key_for(7));
        assert!(SealedEntry::parse(line.as_bytes()).is_err());
    }

    #[test]
    fn line_reader_bounds_lines() {
        let mut data = b"one\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend_from_slice(b"\nthree\npartial");
        let mut r = LineReader::new(io::BufReader::with_capacity(1000, &data[..]));
        let mut buf = Vec::new();
        let a = r.next_line(&mut buf).unwrap().unwrap();
        assert_eq!(
            (a.offset, a.len, a.end, a.too_long),
            (0, 3, LineEnd::Newline, false)
        );
        assert_eq!(buf, b"one");
        let b = r.next_line(&mut buf).unwrap().unwrap();
        assert!(b.too_long);
        assert_eq!(b.len, (MAX_LINE + 10) as u64);
        assert!(buf.len() <= MAX_LINE);
        let c = r.next_line(&mut buf).unwrap().unwrap();
        assert_eq!(buf, b"three");
        assert_eq!(c.offset, 4 + (MAX_LINE as u64 + 10) + 1);
        let d = r.next_line(&mut buf).unwrap().unwrap();
        assert_eq!((d.end, buf.as_slice()), (LineEnd::Eof, &b"partial"[..]));
        assert!(r.next_line(&mut buf).unwrap().is_none());
    }
}
