//! Reading logs: the records of a stream of any size, in every form a log comes in — NDJSON
//! (this daemon's output), the concatenated pretty-printed JSON that the vendor's Go program
//! wrote, and JSON arrays of records — with the line each record starts on.
//!
//! The streaming sibling of [`batch`](crate::ingest::split), for `send` and `inspect`: it finds where
//! each top-level value begins and ends with a byte scanner (strings, escapes and nesting), holds
//! one record at a time (at most `max_record` bytes), and hands back its raw text. It does not
//! judge records (`record`) or rewrite them (`minify`); [`check_json`] is the JSON check both
//! commands use on a record's text, and [`open_inputs`] opens the files (or stdin) they read.
//!
//! A damaged log is read past, not given up on: text that is not JSON is reported with its line
//! and skipped to the end of that line; a record larger than the limit is skipped to its end;
//! and a record that was cut short (the Go program's output after a crash) is recognised when a
//! `{` starts a line while it is still open, since neither NDJSON nor pretty-printed JSON puts a
//! nested `{` in the first column.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;

use serde::de::IgnoredAny;

/// What is wrong with a stretch of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not JSON, or broken JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object where a record belongs.
    #[error("{0} is not a JSON object; each record must be one")]
    NotObject(&'static str),
    /// A record over the size limit; skipped.
    #[error("record larger than {limit} bytes; skipped")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A record that was never closed.
    #[error("record cut short: not closed before {0}")]
    Unterminated(&'static str),
}

/// One thing read from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A JSON object's text as it appears in the input (whitespace and all). Its brackets
    /// balance; whether it is valid JSON is for [`check_json`] or the record check to say.
    Record {
        /// Line of the input its `{` is on, from 1.
        line: u64,
        /// The text.
        text: &'a [u8],
    },
    /// A stretch of the input that holds no record.
    Problem {
        /// Line it starts on.
        line: u64,
        /// What is wrong.
        problem: Problem,
    },
}

/// Where the scanner is.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Between values.
    Top,
    /// Inside an object (or an array where a record belongs).
    Value {
        start: u64,
        depth: u32,
        in_string: bool,
        escaped: bool,
        /// Over the size limit: scanned to its end, not kept.
        overflow: bool,
        /// Began with `[` inside a top-level array: not a record.
        array: bool,
    },
    /// A string, number or literal at the top level (or garbage).
    Scalar {
        start: u64,
        in_string: bool,
        escaped: bool,
    },
    /// After garbage: skipping to the end of the line.
    SkipLine,
}

enum Event {
    Record(u64),
    Problem(u64, Problem),
}

/// The scanner's state, apart from the input it reads.
struct Scan {
    mode: Mode,
    /// Line of the next byte, from 1.
    line: u64,
    /// No byte yet on the current line.
    at_line_start: bool,
    /// Inside a top-level `[`: its elements are the records.
    in_array: bool,
    /// In an array, after an element and before its `,`.
    need_comma: bool,
    /// Bytes consumed so far.
    consumed: u64,
    max_record: usize,
    /// The current record's bytes.
    buf: Vec<u8>,
}

/// Scalars are kept only far enough to describe them.
const MAX_SCALAR: usize = 1024;

/// Streams the records of a [`BufRead`], one at a time.
pub struct RecordReader<R> {
    input: R,
    scan: Scan,
}

impl<R: BufRead> RecordReader<R> {
    /// Reads `input`, skipping any record over `max_record` bytes.
    pub fn new(input: R, max_record: usize) -> Self {
        RecordReader {
            input,
            scan: Scan {
                mode: Mode::Top,
                line: 1,
                at_line_start: true,
                in_array: false,
                need_comma: false,
                consumed: 0,
                max_record: max_record.max(2),
                buf: Vec::new(),
            },
        }
    }

    /// Bytes of the input read so far.
    pub fn bytes_read(&self) -> u64 {
        self.scan.consumed
    }

    /// Lines of the input read so far: a last line without its `\n` counts once begun.
    pub fn lines_read(&self) -> u64 {
        self.scan.line - u64::from(self.scan.at_line_start)
    }

    /// The next record or problem; `None` at the end of the input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Option<Item<'_>>> {
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(self.scan.finish().map(|ev| self.scan.item(ev)));
            }
            let (used, event) = self.scan.scan(chunk);
            self.input.consume(used);
            self.scan.consumed += used as u64;
            if let Some(ev) = event {
                return Ok(Some(self.scan.item(ev)));
            }
        }
    }
}

impl Scan {
    fn item(&self, ev: Event) -> Item<'_> {
        match ev {
            Event::Record(line) => Item::Record {
                line,
                text: &self.buf,
            },
            Event::Problem(line, problem) => Item::Problem { line, problem },
        }
    }

    /// Scans `chunk` until something is found or the chunk ends; returns the bytes used.
    fn scan(&mut self, chunk: &[u8]) -> (usize, Option<Event>) {
        let mut i = 0;
        while i < chunk.len() {
            match self.mode {
                Mode::Top => {
                    let b = chunk[i];
                    match b {
                        b'\n' => {
                            self.line += 1;
                            self.at_line_start = true;
                            i += 1;
                            continue;
                        }
                        b' ' | b'\t' | b'\r' => {}
                        // A UTF-8 byte order mark at the very start.
                        0xef | 0xbb | 0xbf if self.consumed + (i as u64) < 3 => {}
                        b',' if self.in_array && self.need_comma => self.need_comma = false,
                        b']' if self.in_array => {
                            self.in_array = false;
                            self.need_comma = false;
                        }
                        b'[' if !self.in_array => self.in_array = true,
                        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b'a'..=b'z' => {
                            if self.in_array && self.need_comma {
                                self.need_comma = false;
                                return (
                                    i,
                                    Some(Event::Problem(
                                        self.line,
                                        Problem::NotJson("missing ',' between array elements".into()),
                                    )),
                                );
                            }
                            self.buf.clear();
                            self.mode = if matches!(b, b'{' | b'[') {
                                Mode::Value {
                                    start: self.line,
                                    depth: 0,
                                    in_string: false,
                                    escaped: false,
                                    overflow: false,
                                    array: b == b'[',
                                }
                            } else {
                                Mode::Scalar {
                                    start: self.line,
                                    in_string: false,
                                    escaped: false,
                                }
                            };
                            continue;
                        }
                        _ => {
                            self.at_line_start = false;
                            let line = self.line;
                            // A stray `,` is reported on its own; anything else ends the line.
                            if b != b',' {
                                self.mode = Mode::SkipLine;
                            }
                            return (i + 1, Some(Event::Problem(line, Problem::NotJson(unexpected(b)))));
                        }
                    }
                    self.at_line_start = false;
                    i += 1;
                }
                Mode::Value { .. } => {
                    let (used, ev) = self.scan_value(&chunk[i..]);
                    i += used;
                    if ev.is_some() {
                        return (i, ev);
                    }
                }
                Mode::Scalar { .. } => {
                    let (used, ev) = self.scan_scalar(&chunk[i..]);
                    i += used;
                    if ev.is_some() {
                        return (i, ev);
                    }
                }
                Mode::SkipLine => match chunk[i..].iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        i += p + 1;
                        self.line += 1;
                        self.at_line_start = true;
                        self.mode = Mode::Top;
                    }
                    None => i = chunk.len(),
                },
            }
        }
        (i, None)
    }

    fn scan_value(&mut self, chunk: &[u8]) -> (usize, Option<Event>) {
        let Mode::Value {
            start,
            mut depth,
            mut in_string,
            mut escaped,
            mut overflow,
            array,
        } = self.mode
        else {
            unreachable!("scan_value outside a value")
        };
        let mut i = 0;
        let mut ended = false;
        let mut cut_short = false;
        while i < chunk.len() {
            let b = chunk[i];
            if b == b'\n' {
                // A raw line break ends a string: the JSON is broken, and the check will say so.
                in_string = false;
                escaped = false;
                self.line += 1;
                self.at_line_start = true;
                i += 1;
                continue;
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' if self.at_line_start && depth > 0 => {
                        cut_short = true;
                        break;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            ended = true;
                        }
                    }
                    _ => {}
                }
            }
            self.at_line_start = false;
            i += 1;
            if ended {
                break;
            }
        }
        if !overflow {
            if self.buf.len() + i > self.max_record {
                overflow = true;
                self.buf.clear();
            } else {
                self.buf.extend_from_slice(&chunk[..i]);
            }
        }
        if cut_short {
            self.mode = Mode::Top;
            self.buf.clear();
            return (
                i,
                Some(Event::Problem(start, Problem::Unterminated("the next record"))),
            );
        }
        if !ended {
            self.mode = Mode::Value {
                start,
                depth,
                in_string,
                escaped,
                overflow,
                array,
            };
            return (i, None);
        }
        self.mode = Mode::Top;
        self.need_comma = self.in_array;
        let ev = if overflow {
            Event::Problem(
                start,
                Problem::TooLarge {
                    limit: self.max_record,
                },
            )
        } else if array {
            Event::Problem(start, Problem::NotObject("an array"))
        } else {
            Event::Record(start)
        };
        (i, Some(ev))
    }

    fn scan_scalar(&mut self, chunk: &[u8]) -> (usize, Option<Event>) {
        let Mode::Scalar {
            start,
            mut in_string,
            mut escaped,
        } = self.mode
        else {
            unreachable!("scan_scalar outside a scalar")
        };
        let mut i = 0;
        let mut ended = false;
        while i < chunk.len() {
            let b = chunk[i];
            if b == b'\n' {
                ended = true;
                break;
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                    i += 1;
                    ended = true;
                    break;
                }
            } else if b == b'"' && self.buf.is_empty() && i == 0 {
                in_string = true;
            } else if matches!(b, b' ' | b'\t' | b'\r' | b',' | b']' | b'}' | b'{' | b'[' | b'"') {
                ended = true;
                break;
            }
            i += 1;
        }
        let room = MAX_SCALAR.saturating_sub(self.buf.len()).min(i);
        self.buf.extend_from_slice(&chunk[..room]);
        self.at_line_start = false;
        if !ended {
            self.mode = Mode::Scalar {
                start,
                in_string,
                escaped,
            };
            return (i, None);
        }
        (i, Some(self.end_scalar(start)))
    }

    fn end_scalar(&mut self, start: u64) -> Event {
        if serde_json::from_slice::<IgnoredAny>(&self.buf).is_ok() {
            self.mode = Mode::Top;
            self.need_comma = self.in_array;
            Event::Problem(
                start,
                Problem::NotObject(crate::ingest::split::value_kind(&self.buf)),
            )
        } else {
            self.mode = Mode::SkipLine;
            let mut text = String::from_utf8_lossy(&self.buf).into_owned();
            if text.len() > 40 {
                let mut cut = 40;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push('…');
            }
            Event::Problem(start, Problem::NotJson(format!("unexpected {text:?}")))
        }
    }

    /// At the end of the input: what is left open.
    fn finish(&mut self) -> Option<Event> {
        match self.mode {
            Mode::Top | Mode::SkipLine => {
                self.mode = Mode::Top;
                if self.in_array {
                    self.in_array = false;
                    return Some(Event::Problem(
                        self.line,
                        Problem::NotJson("an array not closed at the end of the input".into()),
                    ));
                }
                None
            }
            Mode::Value { start, .. } => {
                self.mode = Mode::Top;
                self.buf.clear();
                Some(Event::Problem(
                    start,
                    Problem::Unterminated("the end of the input"),
                ))
            }
            Mode::Scalar { start, .. } => Some(self.end_scalar(start)),
        }
    }
}

fn unexpected(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("unexpected '{}'", b as char)
    } else {
        format!("unexpected byte 0x{b:02x}")
    }
}

/// Checks that a record's text is JSON; the error gives the input line it is on and why.
pub fn check_json(text: &[u8], line: u64) -> Result<(), (u64, String)> {
    serde_json::from_slice::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| json_error(&e, line))
}

/// A serde_json error on a record that starts on `line`, as (input line, reason).
pub fn json_error(e: &serde_json::Error, line: u64) -> (u64, String) {
    let mut reason = e.to_string();
    if let Some(at) = reason.rfind(" at line ") {
        reason.truncate(at);
    }
    (line + (e.line() as u64).saturating_sub(1), reason)
}

/// An input to read: a file, or standard input.
pub struct Input {
    /// Its name in messages: the path as given, or `stdin`.
    pub name: String,
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
    /// Its size when it is a regular file, for progress.
    pub size: Option<u64>,
}

/// Opens every input before reading any, so that a wrong name stops the command at once; no
/// file, or `-`, is standard input.
pub fn open_inputs(files: &[PathBuf]) -> Result<Vec<Input>, String> {
    let stdin = || Input {
        name: "stdin".into(),
        reader: Box::new(io::stdin()),
        size: None,
    };
    if files.is_empty() {
        return Ok(vec![stdin()]);
    }
    let mut out = Vec::new();
    let mut stdin_used = false;
    for f in files {
        if f.as_os_str() == "-" {
            if stdin_used {
                return Err("\"-\" (standard input) given twice".into());
            }
            stdin_used = true;
            out.push(stdin());
            continue;
        }
        let file = File::open(f).map_err(|e| format!("{}: {}", f.display(), io_reason(&e)))?;
        let meta = file.metadata().ok();
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(format!("{}: is a directory", f.display()));
        }
        out.push(Input {
            name: f.display().to_string(),
            reader: Box::new(file),
            size: meta.filter(|m| m.is_file()).map(|m| m.len()),
        });
    }
    Ok(out)
}

/// An I/O error for the operator, without Rust's `(os error N)`.
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item as (line, text or problem), read through a tiny buffer so that every
    /// boundary falls inside a chunk somewhere.
    fn read_all(input: &str, max: usize) -> Vec<(u64, Result<String, Problem>)> {
        let mut results = Vec::new();
        for cap in [1usize, 7, 8192] {
            let mut r = RecordReader::new(io::BufReader::with_capacity(cap, input.as_bytes()), max);
            let mut out = Vec::new();
            while let Some(item) = r.next().unwrap() {
                out.push(match item {
                    Item::Record { line, text } => (line, Ok(String::from_utf8(text.to_vec()).unwrap())),
                    Item::Problem { line, problem } => (line, Err(problem)),
                });
            }
            assert_eq!(r.bytes_read(), input.len() as u64);
            results.push(out);
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[1], results[2]);
        results.pop().unwrap()
    }

    fn ok(line: u64, s: &str) -> (u64, Result<String, Problem>) {
        (line, Ok(s.to_string()))
    }

    #[test]
    fn ndjson_pretty_and_arrays() {
        assert_eq!(
            read_all("{\"a\":1}\n{\"b\":\"}{\\\"\"}\n", 100),
            vec![ok(1, "{\"a\":1}"), ok(2, "{\"b\":\"}{\\\"\"}")]
        );
        let pretty = "{\n  \"a\": {\n    \"x\": [1, {}]\n  }\n}\n{\n  \"b\": 2\n}\n";
        assert_eq!(
            read_all(pretty, 100),
            vec![
                ok(1, "{\n  \"a\": {\n    \"x\": [1, {}]\n  }\n}"),
                ok(6, "{\n  \"b\": 2\n}")
            ]
        );
        assert_eq!(
            read_all("\u{feff}[\n {\"a\":1},\n {\"b\":[2]}\n]\n[{\"c\":3}]", 100),
            vec![ok(2, "{\"a\":1}"), ok(3, "{\"b\":[2]}"), ok(5, "{\"c\":3}")]
        );
        assert_eq!(read_all("", 100), vec![]);
        assert_eq!(read_all(" \n[]\n", 100), vec![]);
    }

    #[test]
    fn damage_is_reported_and_read_past() {
        // A record cut short by a crash, then a whole one.
        assert_eq!(
            read_all("{\"a\":{\"b\":\"x\n{\"c\":1}\n", 100),
            vec![
                (1, Err(Problem::Unterminated("the next record"))),
                ok(2, "{\"c\":1}")
            ]
        );
        assert_eq!(
            read_all("{\"c\":1}\n{\"a\":", 100),
            vec![
                ok(1, "{\"c\":1}"),
                (2, Err(Problem::Unterminated("the end of the input")))
            ]
        );
        // Too large: skipped to its end.
        let big = format!("{{\"a\":\"{}\"}}\n{{\"b\":1}}\n", "x".repeat(200));
        assert_eq!(
            read_all(&big, 100),
            vec![(1, Err(Problem::TooLarge { limit: 100 })), ok(2, "{\"b\":1}")]
        );
        // Garbage: one problem, the rest of its line skipped.
        let got = read_all("hello world {\"x\":1}\n{\"a\":1}\n42\n\"s\"\n[[1]]\n}\n", 100);
        assert_eq!(got[0], (1, Err(Problem::NotJson("unexpected \"hello\"".into()))));
        assert_eq!(got[1], ok(2, "{\"a\":1}"));
        assert_eq!(got[2], (3, Err(Problem::NotObject("a number"))));
        assert_eq!(got[3], (4, Err(Problem::NotObject("a string"))));
        assert_eq!(got[4], (5, Err(Problem::NotObject("an array"))));
        assert_eq!(got[5], (6, Err(Problem::NotJson("unexpected '}'".into()))));
        assert_eq!(got.len(), 6);
        assert_eq!(
            read_all("[{\"a\":1} {\"b\":2}", 100),
            vec![
                ok(1, "{\"a\":1}"),
                (
                    1,
                    Err(Problem::NotJson("missing ',' between array elements".into()))
                ),
                ok(1, "{\"b\":2}"),
                (
                    1,
                    Err(Problem::NotJson(
                        "an array not closed at the end of the input".into()
                    ))
                )
            ]
        );
    }

    #[test]
    fn json_errors_name_the_input_line() {
        assert!(check_json(b"{\"a\":1}", 5).is_ok());
        let (line, reason) = check_json(b"{\n\"a\":\n tru}", 10).unwrap_err();
        assert_eq!(line, 12);
        assert!(reason.starts_with("expected ident"), "{reason}");
    }
}
