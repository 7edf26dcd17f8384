//! Redaction of credentials (SPEC 4.9): the values of chosen headers in a minified record line
//! rewritten as keyed marks, `"[redacted hmac:<16 hex>]"`, and nothing else of the line changed.
//!
//! This module owns the rewrite of one line ([`Redactor`]), the marks already in a line
//! ([`marks_in`], for `inspect`), and the `LOGGER_REDACT` list ([`parse_names`]); the
//! installation's key file is [`key`]'s. It does not decide when to redact (ingest calls it on
//! each checked, minified record, after its fingerprint; `inspect` on what it reads) nor count
//! for `/metrics` (it returns how many values it replaced).
//!
//! It is hand-written over the bytes, not serde, for two reasons:
//! - Byte-exactness: the output is the line as received (SPEC 4.4) with only the targeted values
//!   replaced; a parse and re-serialization would respell numbers, escapes and member order.
//! - Speed: it runs on every record. A line is first searched once for `eader` (the common part
//!   of `"Header":` and `"response_headers":`), and each such header object found is scanned for
//!   a configured name; the rare member name spelled with escapes is found through its
//!   backslash. Only a line where that finds a configured name in some header object is walked
//!   in full, validated and rewritten. The vendor's sample request, which has a `Header` object
//!   without credentials, costs the search for `eader`, one for a backslash (a single byte:
//!   cheaper still) and a look at that object; nothing is allocated when nothing is
//!   replaced. Measured (`cargo run --release --example bench` in the scratch crate this was
//!   written in; 2 CPUs shared with other builds, best of 5 rounds): the vendor's sample request
//!   219 ns, its response 144 ns, a 67 KB record without credentials 2.3 µs; with one
//!   `Authorization` 2.0 µs (the HMAC through the FFI is most of it); redaction off 3 ns. On
//!   the daemon (S1, keep-alive, the sample request) the default and `off` were within the
//!   machine's noise: about 16 µs of server CPU per request either way.
//!
//! Names are compared after decoding their escapes (`"Authoriz\u0061tion"` is `Authorization`),
//! header names without regard to ASCII case, the container names `request`, `Header` and
//! `response_headers` exactly (as the record model reads them): a spelling chosen by whoever
//! made the record must not let a credential through.

use std::fmt;

use aws_lc_rs::hmac;
use memchr::memmem;

pub(crate) mod key;

pub(crate) use key::KeyOrigin;
pub use key::{KeyError, RedactKey, KEY_LEN};

/// The headers redacted when `LOGGER_REDACT` is not set.
pub(crate) const DEFAULT_NAMES: [&str; 6] = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
    "X-Api-Key",
    "X-Auth-Token",
];

/// Bytes in a mark, its quotes included: `"[redacted hmac:` + 16 hex digits + `]"`.
pub const MARK_LEN: usize = 34;

const MARK_PREFIX: &[u8; 16] = b"\"[redacted hmac:";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Nesting of arrays and objects within one skipped value beyond which the line is taken as
/// invalid (serde_json, which checked the record before, stops at 128 as well). Skipping keeps
/// the open containers in a 128-bit stack, not in recursion.
const MAX_DEPTH: u32 = 128;

/// The default header names, as owned strings for [`Redactor::new`].
pub fn default_names() -> Vec<String> {
    DEFAULT_NAMES.iter().map(|n| n.to_string()).collect()
}

/// Rewrites the configured headers' values in record lines. Built once at start; shared by
/// every connection (`Send + Sync`, no interior state).
pub struct Redactor {
    /// HMAC-SHA-256 under the installation's key, its padded key blocks computed once.
    key: hmac::Key,
    /// The names as configured, for the start line.
    names: Vec<String>,
    /// The same in ASCII lower case, compared with decoded member names.
    lower: Vec<Vec<u8>>,
    /// Bit `n` set when some name is `n` bytes long (bit 127 for 127 and more): most header
    /// names are ruled out by their length alone.
    lengths: u128,
    /// Finds `eader`, in both `"Header":` and `"response_headers":`, in one pass.
    finder: memmem::Finder<'static>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Redactor")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor of the headers `names` (matched without regard to ASCII case) under `key`.
    /// An empty list redacts nothing. Names are expected to be valid ([`parse_names`]); one
    /// that is not a header name simply never matches.
    pub fn new(key: &RedactKey, names: &[String]) -> Redactor {
        let lower: Vec<Vec<u8>> = names
            .iter()
            .map(|n| n.to_ascii_lowercase().into_bytes())
            .collect();
        let lengths = lower.iter().fold(0u128, |bits, n| bits | length_bit(n.len()));
        Redactor {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()),
            names: names.to_vec(),
            lower,
            lengths,
            finder: memmem::Finder::new(b"eader").into_owned(),
        }
    }

    /// The header names redacted, as configured.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Appends `line` to `out` with the values of the configured headers in `request.Header`
    /// and `response_headers` replaced by marks, and returns how many values it replaced.
    ///
    /// `line` is one record as the minifier writes it: a JSON object without insignificant
    /// whitespace and without its newline. When nothing is to be replaced — no configured
    /// header, or `line` is not such a JSON object (then it is left as it is, never a panic) —
    /// it returns 0 and `out` keeps its length: the caller writes `line` itself.
    ///
    /// Each string of a header's array is replaced by the mark of its decoded text (escapes
    /// resolved, UTF-8); any other element (number, object, array, `true`, `null`) by the mark
    /// of its JSON text as written. A value that is not an array is replaced in the same way
    /// by one mark, except `null`, Go's spelling of a header with no values, kept like `[]`.
    pub(crate) fn redact_into(&self, line: &[u8], out: &mut Vec<u8>) -> usize {
        if !self.may_redact(line) {
            return 0;
        }
        self.rewrite(line, out)
    }

    /// The quick look alone: `false` when [`Redactor::redact_into`] would certainly replace
    /// nothing in `line`, for a caller that must move the line before it can be rewritten.
    pub(crate) fn may_redact(&self, line: &[u8]) -> bool {
        !self.lower.is_empty() && self.quick_verdict(line)
    }

    /// Whether the header `name` (as decoded text) is one whose values are marked.
    pub(crate) fn redacts(&self, name: &str) -> bool {
        self.lower.iter().any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// A record's problem, as the record check words it, fit to be logged and kept: when it is
    /// about the value of a redacted header, serde's wording quotes that value (`invalid type:
    /// string "Bearer abc", expected a sequence`), so the reason is replaced by one that does
    /// not. `None` when the problem shows no such value.
    pub(crate) fn scrub_problem(&self, field: &str, reason: &str) -> Option<String> {
        let header = field
            .strip_prefix("request.Header.")
            .or_else(|| field.strip_prefix("response_headers."))?;
        let name = header.split('[').next().unwrap_or(header);
        if !self.redacts(name) {
            return None;
        }
        let expected = reason.rfind(", expected ").map_or("", |at| &reason[at..]);
        Some(format!(
            "not as documented (value not shown: a redacted header){expected}"
        ))
    }

    /// The mark of `value`: `"[redacted hmac:` and the first 8 bytes of HMAC-SHA-256(key,
    /// value) in lower-case hex, then `]"`, quotes included.
    pub fn mark(&self, value: &[u8]) -> [u8; MARK_LEN] {
        mark_of(hmac::sign(&self.key, value))
    }

    /// The mark of a JSON string's raw text (between its quotes), decoded as it is hashed.
    fn mark_string(&self, s: Str<'_>) -> [u8; MARK_LEN] {
        if !s.escaped {
            return self.mark(s.raw);
        }
        let mut ctx = hmac::Context::with_key(&self.key);
        // Decoded bytes gathered on the stack so that each FFI update carries many of them.
        let mut buf = [0u8; 256];
        let mut len = 0;
        unescape(s.raw, |chunk| {
            if len + chunk.len() > buf.len() {
                ctx.update(&buf[..len]);
                len = 0;
            }
            if chunk.len() > buf.len() {
                ctx.update(chunk);
            } else {
                buf[len..len + chunk.len()].copy_from_slice(chunk);
                len += chunk.len();
            }
        });
        ctx.update(&buf[..len]);
        mark_of(ctx.sign())
    }

    /// Whether `name` is one of the configured header names.
    #[inline]
    fn is_redacted(&self, name: Str<'_>) -> bool {
        if !name.escaped {
            return self.lengths & length_bit(name.raw.len()) != 0
                && self.lower.iter().any(|n| n.eq_ignore_ascii_case(name.raw));
        }
        let mut len = 0;
        unescape(name.raw, |chunk| len += chunk.len());
        self.lengths & length_bit(len) != 0
            && self
                .lower
                .iter()
                .any(|n| n.len() == len && decodes_to(name.raw, n, true))
    }

    /// The quick verdict: `false` when `line` certainly has nothing to redact (or is not valid
    /// JSON), `true` when the full walk must decide.
    ///
    /// In valid compact JSON a member name's opening quote follows `{` or `,`, so a hit of
    /// `"Header":{` or `"response_headers":{` after one of those is a header object somewhere
    /// in the record; it matters only if it holds a configured name. A container name spelled
    /// with escapes holds a backslash, and every backslash is inside a string: the first one
    /// after a string's end leads to the string it is in.
    fn quick_verdict(&self, line: &[u8]) -> bool {
        for hit in self.finder.find_iter(line) {
            let Some(open) = header_object_at(line, hit) else {
                continue;
            };
            let mut c = Cursor { b: line, i: open };
            match self.object_has_redacted_name(&mut c) {
                Some(true) => return true,
                Some(false) => {}
                // Not valid JSON: nothing is redacted.
                None => return false,
            }
        }
        let mut from = 0;
        while let Some(k) = line.get(from..).and_then(|rest| memchr::memchr(b'\\', rest)) {
            let backslash = from + k;
            // No quote or backslash lies between the string's opening quote and its first
            // backslash.
            let Some(open) = memchr::memrchr(b'"', &line[..backslash]) else {
                return false;
            };
            let mut c = Cursor { b: line, i: open };
            let Some(s) = c.string() else {
                return false;
            };
            if c.peek() == Some(b':') && (s.is(b"Header") || s.is(b"response_headers")) {
                return true;
            }
            from = c.i;
        }
        false
    }

    /// At an object's `{`: whether a member of it has a configured name. `None` when it is not
    /// valid JSON.
    fn object_has_redacted_name(&self, c: &mut Cursor<'_>) -> Option<bool> {
        c.expect(b'{')?;
        if c.eat(b'}') {
            return Some(false);
        }
        loop {
            if self.is_redacted(c.name()?) {
                return Some(true);
            }
            c.value()?;
            if !c.eat(b',') {
                c.expect(b'}')?;
                return Some(false);
            }
        }
    }

    /// The full walk: validates the whole line and appends it to `out` with the targeted
    /// values replaced. Returns the count, or 0 with `out` as it was.
    fn rewrite(&self, line: &[u8], out: &mut Vec<u8>) -> usize {
        // The marks of strings are of their decoded UTF-8; a line that is not UTF-8 is not JSON.
        if std::str::from_utf8(line).is_err() {
            return 0;
        }
        let base = out.len();
        let mut w = Rewrite {
            redactor: self,
            c: Cursor { b: line, i: 0 },
            out,
            copied: 0,
            count: 0,
        };
        if w.record().is_some() && w.count > 0 {
            let (copied, count) = (w.copied, w.count);
            out.extend_from_slice(&line[copied..]);
            count
        } else {
            out.truncate(base);
            0
        }
    }
}

/// The bit of [`Redactor::lengths`] for a name of `len` bytes.
fn length_bit(len: usize) -> u128 {
    1 << len.min(127)
}

/// `"[redacted hmac:` + the tag's first 8 bytes in hex + `]"`.
fn mark_of(tag: hmac::Tag) -> [u8; MARK_LEN] {
    let mut mark = [0u8; MARK_LEN];
    mark[..MARK_PREFIX.len()].copy_from_slice(MARK_PREFIX);
    let mut at = MARK_PREFIX.len();
    for &byte in tag.as_ref().iter().take(8) {
        mark[at] = HEX[usize::from(byte >> 4)];
        mark[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    mark[at] = b']';
    mark[at + 1] = b'"';
    mark
}

/// Where the header object begins (its `{`) when the `eader` at `hit` is in the member name
/// `"Header":{` or `"response_headers":{` whose opening quote follows `{` or `,`.
fn header_object_at(line: &[u8], hit: usize) -> Option<usize> {
    let structural = |quote: usize| quote > 0 && matches!(line.get(quote - 1), Some(b'{' | b','));
    let after = line.get(hit + 5..)?;
    if hit >= 2 && &line[hit - 2..hit] == b"\"H" && after.starts_with(b"\":{") && structural(hit - 2) {
        return Some(hit + 7);
    }
    if hit >= 11
        && &line[hit - 11..hit] == b"\"response_h"
        && after.starts_with(b"s\":{")
        && structural(hit - 11)
    {
        return Some(hit + 8);
    }
    None
}

/// The rewrite of one line in progress.
struct Rewrite<'a, 'o> {
    redactor: &'a Redactor,
    c: Cursor<'a>,
    /// Where the new line is appended.
    out: &'o mut Vec<u8>,
    /// The bytes of the line before this index are in `out` (or replaced there).
    copied: usize,
    /// Values replaced so far.
    count: usize,
}

impl Rewrite<'_, '_> {
    /// The record: a top-level object; its `request` and `response_headers` members looked
    /// into, everything else skipped, every byte validated.
    fn record(&mut self) -> Option<()> {
        self.c.expect(b'{')?;
        if !self.c.eat(b'}') {
            loop {
                let name = self.c.name()?;
                let object = self.c.peek() == Some(b'{');
                if object && name.is(b"request") {
                    self.request()?;
                } else if object && name.is(b"response_headers") {
                    self.headers()?;
                } else {
                    self.c.value()?;
                }
                if !self.c.eat(b',') {
                    self.c.expect(b'}')?;
                    break;
                }
            }
        }
        (self.c.i == self.c.b.len()).then_some(())
    }

    /// `request`'s object: its `Header` looked into.
    fn request(&mut self) -> Option<()> {
        self.c.expect(b'{')?;
        if self.c.eat(b'}') {
            return Some(());
        }
        loop {
            let name = self.c.name()?;
            if self.c.peek() == Some(b'{') && name.is(b"Header") {
                self.headers()?;
            } else {
                self.c.value()?;
            }
            if !self.c.eat(b',') {
                return self.c.expect(b'}');
            }
        }
    }

    /// A header object: the values of the configured names replaced.
    fn headers(&mut self) -> Option<()> {
        self.c.expect(b'{')?;
        if self.c.eat(b'}') {
            return Some(());
        }
        loop {
            let name = self.c.name()?;
            if self.redactor.is_redacted(name) {
                self.header_value()?;
            } else {
                self.c.value()?;
            }
            if !self.c.eat(b',') {
                return self.c.expect(b'}');
            }
        }
    }

    /// A configured header's value: each element of an array replaced, or the value itself.
    fn header_value(&mut self) -> Option<()> {
        match self.c.peek()? {
            b'[' => {
                self.c.i += 1;
                if self.c.eat(b']') {
                    return Some(());
                }
                loop {
                    self.replace_value()?;
                    if !self.c.eat(b',') {
                        return self.c.expect(b']');
                    }
                }
            }
            // A header without values; nothing to hide.
            b'n' => self.c.value(),
            _ => self.replace_value(),
        }
    }

    /// The value at the cursor replaced by its mark.
    fn replace_value(&mut self) -> Option<()> {
        let start = self.c.i;
        let mark = if self.c.peek()? == b'"' {
            let s = self.c.string()?;
            self.redactor.mark_string(s)
        } else {
            self.c.value()?;
            self.redactor.mark(self.c.b.get(start..self.c.i)?)
        };
        if self.count == 0 {
            self.out.reserve(self.c.b.len() + MARK_LEN);
        }
        self.out.extend_from_slice(self.c.b.get(self.copied..start)?);
        self.out.extend_from_slice(&mark);
        self.copied = self.c.i;
        self.count += 1;
        Some(())
    }
}

/// A string's raw text between its quotes, and whether it holds escapes.
#[derive(Clone, Copy)]
struct Str<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl Str<'_> {
    /// Whether the string decodes to exactly `want`.
    fn is(self, want: &[u8]) -> bool {
        if self.escaped {
            decodes_to(self.raw, want, false)
        } else {
            self.raw == want
        }
    }
}

/// Whether the escaped string text `raw` decodes to `want` (ASCII case aside when
/// `ignore_case`).
fn decodes_to(raw: &[u8], want: &[u8], ignore_case: bool) -> bool {
    let mut at = 0;
    let mut same = true;
    unescape(raw, |chunk| {
        same = same
            && want.get(at..at + chunk.len()).is_some_and(|w| {
                if ignore_case {
                    w.eq_ignore_ascii_case(chunk)
                } else {
                    w == chunk
                }
            });
        at += chunk.len();
    });
    same && at == want.len()
}

/// Calls `emit` with the decoded bytes of a JSON string's text, in pieces: runs without
/// escapes as they are, each escape as its character's UTF-8. The text has been validated
/// ([`Cursor::string`]); should it not be, decoding stops.
fn unescape(raw: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut i = 0;
    while i < raw.len() {
        let next = memchr::memchr(b'\\', &raw[i..]).map_or(raw.len(), |k| i + k);
        if next > i {
            emit(&raw[i..next]);
        }
        if next == raw.len() {
            return;
        }
        let Some((ch, len)) = escape(raw, next) else {
            return;
        };
        emit(ch.encode_utf8(&mut [0; 4]).as_bytes());
        i = next + len;
    }
}

/// The escape whose backslash is at `b[i]`: the character it stands for and its length. `None`
/// when it is not valid JSON, a lone surrogate included (as serde_json judges).
fn escape(b: &[u8], i: usize) -> Option<(char, usize)> {
    let ch = match *b.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let high = hex4(b, i + 2)?;
            if !(0xD800..0xDC00).contains(&high) {
                // A low surrogate alone is no char: `from_u32` refuses it.
                return Some((char::from_u32(high)?, 6));
            }
            if b.get(i + 6..i + 8)? != b"\\u" {
                return None;
            }
            let low = hex4(b, i + 8)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            return Some((
                char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?,
                12,
            ));
        }
        _ => return None,
    };
    Some((ch, 2))
}

/// The four hex digits at `b[i..]`.
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)?
        .iter()
        .try_fold(0, |n, &h| Some(n * 16 + char::from(h).to_digit(16)?))
}

/// A position in compact JSON text, read forward; every method validates what it passes and
/// returns `None` at anything that is not valid compact JSON. `i` never exceeds `b.len()`.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Consumes `c` when it is next.
    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        let found = self.peek() == Some(c);
        self.i += usize::from(found);
        found
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// A string, from its opening quote to after its closing one.
    #[inline]
    fn string(&mut self) -> Option<Str<'a>> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let (stop, quote) = string_stop(self.b, self.i);
            self.i = stop;
            if quote {
                let raw = &self.b[start..stop];
                self.i += 1;
                return Some(Str { raw, escaped });
            }
            match self.peek()? {
                b'\\' => {
                    self.i += escape(self.b, self.i)?.1;
                    escaped = true;
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// A member name and its colon.
    #[inline]
    fn name(&mut self) -> Option<Str<'a>> {
        let name = self.string()?;
        self.expect(b':')?;
        Some(name)
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let found = self.b.get(self.i..)?.starts_with(word);
        found.then(|| self.i += word.len())
    }

    /// Any value, validated and skipped, without recursion: the open containers are a stack of
    /// bits (1 for an object), at most [`MAX_DEPTH`] deep.
    fn value(&mut self) -> Option<()> {
        let mut objects: u128 = 0;
        let mut depth = 0u32;
        loop {
            // A value begins here.
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                open @ (b'{' | b'[') => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let object = open == b'{';
                    if !self.eat(if object { b'}' } else { b']' }) {
                        objects = objects << 1 | u128::from(object);
                        depth += 1;
                        if object {
                            self.name()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: the containers that end here, then a comma and the next value.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = objects & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        if object {
                            self.name()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.i += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }
}

/// The index of the first quote, backslash or control character at or after `i` (or
/// `b.len()`), and whether it is a quote: eight bytes at a time, as the bulk of a record is
/// string text. Knowing the quote from the word, not from reading the byte again, shortens the
/// chain of dependent steps at the end of each of a record's many short strings.
#[inline]
fn string_stop(b: &[u8], mut i: usize) -> (usize, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte equal to `c` / below 0x20; exact up to the first such byte, so
    // the lowest bit of the union is exact in each part.
    let eq = |x: u64, c: u8| {
        let y = x ^ (ONES * u64::from(c));
        y.wrapping_sub(ONES) & !y & HIGHS
    };
    let control = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = eq(x, b'"');
        let m = quote | eq(x, b'\\') | control(x);
        if m != 0 {
            let lowest = m & m.wrapping_neg();
            return (i + (m.trailing_zeros() / 8) as usize, quote & lowest != 0);
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    (i, b.get(i) == Some(&b'"'))
}

/// Bytes of hex in a mark.
pub(crate) const MARK_DIGITS: usize = 16;

/// The marks in the header values of a record line (`request.Header` and `response_headers`,
/// under any header name, as a log written with any `LOGGER_REDACT` has them): each one's 16
/// hex digits, in order. A line that is not valid compact JSON has none; nothing is allocated
/// for a line without marks.
pub(crate) fn marks_in(line: &[u8]) -> Vec<[u8; MARK_DIGITS]> {
    let mut marks = Vec::new();
    if memmem::find(line, MARK_PREFIX).is_none() {
        return marks;
    }
    let mut c = Cursor { b: line, i: 0 };
    if find_marks(&mut c, &mut marks).is_none() || c.i != line.len() {
        marks.clear();
    }
    marks
}

/// [`marks_in`]'s walk of the record at the cursor.
fn find_marks(c: &mut Cursor<'_>, marks: &mut Vec<[u8; MARK_DIGITS]>) -> Option<()> {
    // The members of the object at the cursor, `visit` given each name with the cursor at its
    // value; it must pass the value.
    fn members<'a>(
        c: &mut Cursor<'a>,
        marks: &mut Vec<[u8; MARK_DIGITS]>,
        mut visit: impl FnMut(Str<'a>, &mut Cursor<'a>, &mut Vec<[u8; MARK_DIGITS]>) -> Option<()>,
    ) -> Option<()> {
        c.expect(b'{')?;
        if c.eat(b'}') {
            return Some(());
        }
        loop {
            let name = c.name()?;
            visit(name, c, marks)?;
            if !c.eat(b',') {
                return c.expect(b'}');
            }
        }
    }
    // One value of a header: a mark is a string with no escapes.
    fn element(c: &mut Cursor<'_>, marks: &mut Vec<[u8; MARK_DIGITS]>) -> Option<()> {
        if c.peek()? != b'"' {
            return c.value();
        }
        let s = c.string()?;
        let inner = &MARK_PREFIX[1..];
        if let Some(digits) = s
            .raw
            .strip_prefix(inner)
            .and_then(|rest| rest.strip_suffix(b"]"))
            .filter(|d| d.len() == MARK_DIGITS && d.iter().all(|b| HEX.contains(b)))
        {
            let mut mark = [0u8; MARK_DIGITS];
            mark.copy_from_slice(digits);
            marks.push(mark);
        }
        Some(())
    }
    fn headers(c: &mut Cursor<'_>, marks: &mut Vec<[u8; MARK_DIGITS]>) -> Option<()> {
        members(c, marks, |_, c, marks| match c.peek()? {
            b'[' => {
                c.i += 1;
                if c.eat(b']') {
                    return Some(());
                }
                loop {
                    element(c, marks)?;
                    if !c.eat(b',') {
                        return c.expect(b']');
                    }
                }
            }
            _ => element(c, marks),
        })
    }
    members(c, marks, |name, c, marks| {
        let object = c.peek() == Some(b'{');
        if object && name.is(b"request") {
            members(c, marks, |name, c, marks| {
                if c.peek() == Some(b'{') && name.is(b"Header") {
                    headers(c, marks)
                } else {
                    c.value()
                }
            })
        } else if object && name.is(b"response_headers") {
            headers(c, marks)
        } else {
            c.value()
        }
    })
}

/// A `LOGGER_REDACT` value that is not a list of header names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?}: {reason}")]
pub(crate) struct NamesError {
    /// The offending item, trimmed.
    pub name: String,
    /// Why it is refused.
    pub reason: String,
}

/// The header names of a `LOGGER_REDACT` value: comma-separated, each trimmed of spaces and
/// made of HTTP token characters (RFC 9110 5.6.2). `off`, or a value with no names at all,
/// gives the empty list: no redaction. Repeats (in any case) are kept once, as first written.
pub(crate) fn parse_names(value: &str) -> Result<Vec<String>, NamesError> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let refuse = |reason: String| NamesError {
            name: item.to_string(),
            reason,
        };
        if item.eq_ignore_ascii_case("off") {
            return Err(refuse("`off` stands alone, not in a list of names".into()));
        }
        if let Some(bad) = item.chars().find(|&c| !is_token_char(c)) {
            return Err(refuse(format!("{bad:?} cannot be part of an HTTP header name")));
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(item)) {
            names.push(item.to_string());
        }
    }
    Ok(names)
}

/// RFC 9110's `tchar`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendor's sample request (`fixtures/request.json`), minified: a `Header` object and
    /// no credentials.
    const SAMPLE_REQUEST: &str = r#"{"sequence":302,"request":{"Method":"POST","Host":"appliance.example.extrahop.com","RemoteAddr":"127.0.0.1:1234","RequestURI":"/api/v1/metrics","TLSVersion":"TLS1.2","Proto":"HTTP/1.1","ContentLength":149,"TransferEncoding":null,"Header":{"Accept":["application/json"],"Content-Length":["149"],"Content-Type":["application/json"]},"Close":false,"Trailer":null},"request_body":{"metric_category":"net","from":-1,"object_type":"capture","object_ids":[0],"until":0,"metric_specs":[{"name":"pkts"}],"cycle":"30sec"}}"#;
    /// The vendor's sample response, minified.
    const SAMPLE_RESPONSE: &str = r#"{"sequence":302,"response_status_code":"200","response_headers":{"Content-Type":["application/json; charset=utf-8"],"Vary":["Accept-Encoding"]},"response_body":{"cycle":"30sec","node_id":0,"clock":1678150650000,"from":1678150649999,"until":1678150650000,"stats":[{"oid":0,"time":1678150650000,"duration":30000,"values":[1260]}]}}"#;

    fn key(seed: u8) -> RedactKey {
        RedactKey::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    fn redactor(names: &[&str]) -> Redactor {
        Redactor::new(&key(0), &names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    fn default_redactor() -> Redactor {
        Redactor::new(&key(0), &default_names())
    }

    /// The redacted line and the count; the line itself when nothing was replaced.
    fn redact(r: &Redactor, line: &str) -> (String, usize) {
        let mut out = Vec::new();
        let n = r.redact_into(line.as_bytes(), &mut out);
        if n == 0 {
            assert!(out.is_empty(), "nothing replaced, yet {out:?} was written");
            return (line.to_string(), 0);
        }
        (String::from_utf8(out).unwrap(), n)
    }

    fn mark(r: &Redactor, value: &str) -> String {
        String::from_utf8(r.mark(value.as_bytes()).to_vec()).unwrap()
    }

    /// A request record with these `Header` members.
    fn request_with(headers: &str) -> String {
        format!(
            r#"{{"sequence":1,"request":{{"Method":"GET","RequestURI":"/a?b=1\u0026c=2","Header":{{{headers}}},"Close":false}},"request_body":{{"q":"x"}}}}"#
        )
    }

    /// A response record with these `response_headers` members.
    fn response_with(headers: &str) -> String {
        format!(
            r#"{{"sequence":1,"response_status_code":200,"response_headers":{{{headers}}},"response_body":[1,"two"]}}"#
        )
    }

    #[test]
    fn the_mark_is_the_first_64_bits_of_hmac_sha256_in_hex() {
        // Key 00 01 .. 1f; expected values from Python's hmac module.
        let r = default_redactor();
        assert_eq!(mark(&r, "Bearer abc"), r#""[redacted hmac:b3a6592baa171a3f]""#);
        assert_eq!(mark(&r, ""), r#""[redacted hmac:d38b42096d80f45f]""#);
        assert_eq!(mark(&r, "7"), r#""[redacted hmac:43c875c1027e0bb6]""#);
        assert_eq!(mark(&r, "é😀"), r#""[redacted hmac:48594dc7d33d3424]""#);
    }

    #[test]
    fn authorization_is_replaced_whatever_its_case() {
        let r = default_redactor();
        let (a, n) = redact(
            &r,
            &request_with(r#""Authorization":["Bearer abc"],"Accept":["*/*"]"#),
        );
        assert_eq!(n, 1);
        let m = mark(&r, "Bearer abc");
        assert_eq!(
            a,
            request_with(&format!(r#""Authorization":[{m}],"Accept":["*/*"]"#))
        );
        let (b, _) = redact(
            &r,
            &request_with(r#""authorization":["Bearer abc"],"Accept":["*/*"]"#),
        );
        assert_eq!(
            b,
            request_with(&format!(r#""authorization":[{m}],"Accept":["*/*"]"#))
        );
    }

    #[test]
    fn each_string_of_the_array_gets_its_own_mark() {
        let r = default_redactor();
        let line = response_with(r#""Set-Cookie":["a=1","b=2"],"Vary":["Accept-Encoding"]"#);
        let (out, n) = redact(&r, &line);
        assert_eq!(n, 2);
        let (m1, m2) = (mark(&r, "a=1"), mark(&r, "b=2"));
        assert_ne!(m1, m2);
        assert_eq!(
            out,
            response_with(&format!(r#""Set-Cookie":[{m1},{m2}],"Vary":["Accept-Encoding"]"#))
        );
    }

    #[test]
    fn every_default_name_is_redacted_in_both_places() {
        let r = default_redactor();
        for name in DEFAULT_NAMES {
            for line in [
                request_with(&format!(r#""{name}":["s"]"#)),
                response_with(&format!(r#""{name}":["s"]"#)),
            ] {
                let (out, n) = redact(&r, &line);
                assert_eq!(n, 1, "{line}");
                assert_eq!(out, line.replace(r#"["s"]"#, &format!("[{}]", mark(&r, "s"))));
            }
        }
    }

    #[test]
    fn records_without_credentials_are_left_alone() {
        let r = default_redactor();
        for line in [SAMPLE_REQUEST, SAMPLE_RESPONSE, r#"{"sequence":1}"#, "{}"] {
            let mut out = b"kept".to_vec();
            assert_eq!(r.redact_into(line.as_bytes(), &mut out), 0, "{line}");
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn the_output_is_appended_to_what_out_holds() {
        let r = default_redactor();
        let mut out = b"previous line\n".to_vec();
        let line = request_with(r#""Cookie":["c"]"#);
        assert_eq!(r.redact_into(line.as_bytes(), &mut out), 1);
        let expected = format!(
            "previous line\n{}",
            request_with(&format!(r#""Cookie":[{}]"#, mark(&r, "c")))
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_custom_list_redacts_only_its_names() {
        let r = redactor(&["X-Custom"]);
        let line = request_with(r#""Authorization":["Bearer abc"],"x-custom":["v"],"X-Customer":["w"]"#);
        let (out, n) = redact(&r, &line);
        assert_eq!(n, 1);
        assert_eq!(
            out,
            request_with(&format!(
                r#""Authorization":["Bearer abc"],"x-custom":[{}],"X-Customer":["w"]"#,
                mark(&r, "v")
            ))
        );
    }

    #[test]
    fn marks_depend_on_the_key_alone() {
        let line = request_with(r#""Authorization":["Bearer abc"]"#);
        let names = default_names();
        let a1 = redact(&Redactor::new(&key(0), &names), &line).0;
        let a2 = redact(&Redactor::new(&key(0), &names), &line).0;
        let b = redact(&Redactor::new(&key(1), &names), &line).0;
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(a1, line);
        assert_ne!(b, line);
    }

    #[test]
    fn escaped_names_are_decoded_before_matching() {
        let r = default_redactor();
        let m = mark(&r, "Bearer abc");
        // The header name, the container names and `request` itself, each spelled with escapes.
        for (headers, spelled) in [
            (
                r#""Authoriz\u0061tion":["Bearer abc"]"#,
                r#""Authoriz\u0061tion""#,
            ),
            (
                r#""\u0041UTHORIZATION":["Bearer abc"]"#,
                r#""\u0041UTHORIZATION""#,
            ),
            (
                r#""\u0061\u0075thorization":["Bearer abc"]"#,
                r#""\u0061\u0075thorization""#,
            ),
        ] {
            let (out, n) = redact(&r, &request_with(headers));
            assert_eq!(n, 1, "{headers}");
            assert_eq!(out, request_with(&format!("{spelled}:[{m}]")));
        }
        let container = |line: &str| {
            let (out, n) = redact(&r, line);
            assert_eq!(n, 1, "{line}");
            assert_eq!(out, line.replace(r#"["Bearer abc"]"#, &format!("[{m}]")));
        };
        container(
            r#"{"sequence":1,"request":{"Method":"GET","Head\u0065r":{"Authorization":["Bearer abc"]}}}"#,
        );
        container(
            r#"{"sequence":1,"requ\u0065st":{"Method":"GET","Header":{"Authorization":["Bearer abc"]}}}"#,
        );
        container(
            r#"{"sequence":1,"response_h\u0065aders":{"Authorization":["Bearer abc"]},"response_status_code":200}"#,
        );
        // Escapes that decode to something else do not match.
        let line = request_with(r#""Authoriz\u0062tion":["Bearer abc"],"Authorization\u0000":["x"]"#);
        assert_eq!(redact(&r, &line).1, 0);
        // An escaped quote is part of the name, not its end.
        let line = r#"{"request":{"x\"Header":{"Authorization":["x"]}}}"#;
        assert_eq!(redact(&r, line).1, 0);
    }

    #[test]
    fn values_are_hashed_decoded() {
        let r = default_redactor();
        let plain = redact(&r, &request_with(r#""Cookie":["Bearer abc"]"#)).0;
        let escaped = redact(&r, &request_with(r#""Cookie":["Bearer \u0061bc"]"#)).0;
        assert_eq!(
            plain.replace("Bearer abc", ""),
            escaped.replace(r"Bearer \u0061bc", "")
        );
        let (out, _) = redact(
            &r,
            &request_with(r#""Cookie":["\u00e9\ud83d\ude00","a\"b\\c\/\n"]"#),
        );
        assert!(out.contains(&mark(&r, "é😀")));
        assert!(out.contains(&mark(&r, "a\"b\\c/\n")));
        // Longer than the decoding buffer, with escapes throughout.
        let long: String = (0..300)
            .map(|i| if i % 7 == 0 { r"\u0041" } else { "b" })
            .collect();
        let decoded: String = (0..300).map(|i| if i % 7 == 0 { "A" } else { "b" }).collect();
        let (out, _) = redact(&r, &request_with(&format!(r#""Cookie":["{long}"]"#)));
        assert!(out.contains(&mark(&r, &decoded)));
    }

    #[test]
    fn values_that_are_not_strings_are_hashed_as_written() {
        let r = default_redactor();
        let line = request_with(r#""Cookie":[7,null,{"a":[1,"x"]},[],true,-1.50e3,"s"]"#);
        let (out, n) = redact(&r, &line);
        assert_eq!(n, 7);
        let marks: Vec<String> = ["7", "null", r#"{"a":[1,"x"]}"#, "[]", "true", "-1.50e3", "s"]
            .iter()
            .map(|v| mark(&r, v))
            .collect();
        assert_eq!(out, request_with(&format!(r#""Cookie":[{}]"#, marks.join(","))));
        // Not an array: the value itself, once.
        for (value, hashed) in [
            (r#""Bearer abc""#, "Bearer abc"),
            ("42", "42"),
            (r#"{"k":"v"}"#, r#"{"k":"v"}"#),
        ] {
            let (out, n) = redact(&r, &request_with(&format!(r#""X-Api-Key":{value}"#)));
            assert_eq!(n, 1, "{value}");
            assert_eq!(out, request_with(&format!(r#""X-Api-Key":{}"#, mark(&r, hashed))));
        }
        // A header without values stays as it is.
        for value in ["null", "[]"] {
            assert_eq!(redact(&r, &request_with(&format!(r#""X-Api-Key":{value}"#))).1, 0);
        }
    }

    #[test]
    fn headers_elsewhere_are_untouched() {
        let r = default_redactor();
        for line in [
            // In the bodies, as members and as text.
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"},"request_body":{"Header":{"Authorization":["x"]}}}"#,
            r#"{"sequence":1,"response_status_code":200,"response_body":{"response_headers":{"Cookie":["x"]}}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"},"request_body":"\"Header\":{\"Authorization\":[\"x\"]}"}"#,
            // At the top level, in the trailer, as a direct member of request.
            r#"{"sequence":1,"Header":{"Authorization":["x"]},"request":{"Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","Trailer":{"Authorization":["x"]},"Authorization":["x"]}}"#,
            // Not objects, or names of another case.
            r#"{"sequence":1,"request":{"Header":["Authorization","x"]},"response_headers":null}"#,
            r#"{"sequence":1,"request":[{"Header":{"Authorization":["x"]}}]}"#,
            r#"{"sequence":1,"request":{"header":{"Authorization":["x"]}},"Response_headers":{"Cookie":["x"]}}"#,
            // No Header at all.
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"}}"#,
        ] {
            assert_eq!(redact(&r, line).1, 0, "{line}");
            assert_eq!(r.rewrite(line.as_bytes(), &mut Vec::new()), 0, "{line}");
        }
    }

    #[test]
    fn every_request_and_header_member_is_looked_into() {
        // Duplicates and any order: a nonconforming record written in lenient mode.
        let r = default_redactor();
        let line = r#"{"request_body":{"Header":{"Cookie":["body"]}},"request":{"Header":{"Cookie":["1"]},"Header":{"Cookie":["2"]}},"sequence":1,"request":{"Header":{"Cookie":["3"],"Cookie":"4"}},"response_headers":{"Cookie":["5"]}}"#;
        let (out, n) = redact(&r, line);
        assert_eq!(n, 5);
        let mut expected = line.to_string();
        for v in ["1", "2", "3", "5"] {
            expected = expected.replace(&format!(r#"["{v}"]"#), &format!("[{}]", mark(&r, v)));
        }
        expected = expected.replace(r#""4""#, &mark(&r, "4"));
        assert_eq!(out, expected);
    }

    #[test]
    fn an_empty_list_redacts_nothing() {
        let r = redactor(&[]);
        assert_eq!(
            redact(&r, &request_with(r#""Authorization":["Bearer abc"]"#)).1,
            0
        );
    }

    #[test]
    fn lines_that_are_not_valid_compact_json_are_left_alone() {
        let r = default_redactor();
        let good = request_with(r#""Authorization":["Bearer abc"]"#);
        assert_eq!(redact(&r, &good).1, 1);
        // Every proper prefix, and the line with something after it.
        for end in 0..good.len() {
            let mut out = b"x".to_vec();
            assert_eq!(
                r.redact_into(&good.as_bytes()[..end], &mut out),
                0,
                "{}",
                &good[..end]
            );
            assert_eq!(out, b"x");
        }
        for bad in [
            format!("{good} "),
            format!("{good}{{}}"),
            format!(" {good}"),
            good.replace(r#""Bearer abc""#, r#""Bearer abc"#),
            good.replace(r#"["Bearer abc"]"#, r#"[ "Bearer abc"]"#),
            good.replace(r#"["Bearer abc"]"#, r#"["Bearer abc",]"#),
            good.replace(r#"["Bearer abc"]"#, r#"["Bearer abc"}"#),
            good.replace(r#"["Bearer abc"]"#, r#"["\ud800"]"#),
            good.replace(r#"["Bearer abc"]"#, r#"["\udc00x"]"#),
            good.replace(r#"["Bearer abc"]"#, r#"["\x"]"#),
            good.replace(r#"["Bearer abc"]"#, r#"["\u12"]"#),
            good.replace(r#"["Bearer abc"]"#, "[\"a\tb\"]"),
            good.replace(r#"["Bearer abc"]"#, "[01]"),
            good.replace(r#"["Bearer abc"]"#, "[1.]"),
            good.replace(r#"["Bearer abc"]"#, "[-]"),
            good.replace(r#"["Bearer abc"]"#, "[1e]"),
            good.replace(r#"["Bearer abc"]"#, "[nul]"),
            good.replace(r#"["Bearer abc"]"#, "[tru]"),
            good.replace(r#""q":"x""#, r#""q":"x","#),
            good.replace(r#""q":"x""#, r#""q""#),
            good.replace(r#""q":"x""#, r#"{"q":"x"}"#),
            good.replace(r#""Close":false"#, r#""Close":fals"#),
            "[]".to_string(),
            r#""Header":{"Authorization":["x"]}"#.to_string(),
        ] {
            let mut out = Vec::new();
            assert_eq!(r.redact_into(bad.as_bytes(), &mut out), 0, "{bad}");
            assert!(out.is_empty());
        }
        // Not UTF-8.
        let mut bytes = good.clone().into_bytes();
        let at = good.find("Bearer").unwrap();
        bytes[at] = 0xff;
        assert_eq!(r.redact_into(&bytes, &mut Vec::new()), 0);
    }

    #[test]
    fn deep_nesting_neither_recurses_nor_panics() {
        let r = default_redactor();
        let deep = |n: usize| {
            request_with(&format!(
                r#""Cookie":["c"],"X":{}{}"#,
                "[".repeat(n),
                "]".repeat(n)
            ))
        };
        assert_eq!(redact(&r, &deep(MAX_DEPTH as usize)).1, 1);
        assert_eq!(redact(&r, &deep(MAX_DEPTH as usize + 1)).1, 0);
        assert_eq!(redact(&r, &deep(1_000_000)).1, 0);
        let objects = request_with(&format!(
            r#""Cookie":["c"],"X":{}1{}"#,
            r#"{"a":"#.repeat(100_000),
            "}".repeat(100_000)
        ));
        assert_eq!(redact(&r, &objects).1, 0);
        // Unbalanced, unclosed, or made of brackets only.
        for junk in [
            "[".repeat(100_000),
            "{".repeat(100_000),
            "]}".repeat(1000),
            "\"\\".repeat(1000),
        ] {
            assert_eq!(r.redact_into(junk.as_bytes(), &mut Vec::new()), 0);
        }
    }

    #[test]
    fn string_stop_over_every_byte_value() {
        let text: Vec<u8> = (0u8..=255)
            .chain(b"abc\"def\\ghijklmnop\x1fq".iter().copied())
            .collect();
        for start in 0..text.len() {
            let expected = (start..text.len())
                .find(|&i| matches!(text[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(text.len());
            assert_eq!(
                string_stop(&text, start),
                (expected, text.get(expected) == Some(&b'"'))
            );
        }
    }

    #[test]
    fn problems_with_a_redacted_value_do_not_show_it() {
        let r = default_redactor();
        let reason = r#"invalid type: string "Bearer abc", expected a sequence"#;
        for field in [
            "request.Header.Authorization",
            "request.Header.authorization[0]",
            "response_headers.Set-Cookie[1]",
        ] {
            let scrubbed = r.scrub_problem(field, reason).unwrap();
            assert!(!scrubbed.contains("abc"), "{scrubbed}");
            assert!(scrubbed.ends_with(", expected a sequence"), "{scrubbed}");
        }
        for field in [
            "request.Header.Accept",
            "request.Method",
            "response_headers",
            "request.Trailer.Cookie",
        ] {
            assert_eq!(r.scrub_problem(field, reason), None, "{field}");
        }
    }

    #[test]
    fn marks_are_found_where_the_redactor_puts_them() {
        let r = default_redactor();
        let digits = |v: &str| {
            let m = r.mark(v.as_bytes());
            let mut d = [0u8; MARK_DIGITS];
            d.copy_from_slice(&m[16..32]);
            d
        };
        let line = request_with(r#""Authorization":["Bearer abc"],"Cookie":["a","b"],"X-Api-Key":"k""#);
        let (out, n) = redact(&r, &line);
        assert_eq!(n, 4);
        assert_eq!(
            marks_in(out.as_bytes()),
            [digits("Bearer abc"), digits("a"), digits("b"), digits("k")]
        );
        let (out, _) = redact(&r, &response_with(r#""Set-Cookie":["s"]"#));
        assert_eq!(marks_in(out.as_bytes()), [digits("s")]);
        // Under a name of another list: still a mark.
        let other = redactor(&["X-Custom"]);
        let (out, _) = redact(&other, &request_with(r#""x-custom":["v"]"#));
        assert_eq!(marks_in(out.as_bytes()).len(), 1);
        // Not in a header: in a body, at the top level, near misses, broken lines.
        let m = mark(&r, "x");
        for line in [
            request_with("").replace(r#""q":"x""#, &format!(r#""q":{m}"#)),
            format!(r#"{{"sequence":1,"Header":{{"Cookie":[{m}]}}}}"#),
            request_with(r#""Cookie":["[redacted hmac:0123]"]"#),
            request_with(r#""Cookie":["[redacted hmac:0123456789ABCDEF]"]"#),
            {
                let whole = request_with(&format!(r#""Cookie":[{m}]"#));
                whole[..whole.len() - 1].to_string()
            },
            request_with(r#""Cookie":["plain"]"#),
        ] {
            assert!(marks_in(line.as_bytes()).is_empty(), "{line}");
        }
    }

    #[test]
    fn the_redactor_is_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Redactor>();
        let r = default_redactor();
        assert!(!format!("{r:?}").contains("00, 01"));
        assert_eq!(format!("{:?}", key(0)), "RedactKey(..)");
    }

    #[test]
    fn names_from_the_setting() {
        assert_eq!(parse_names("off").unwrap(), Vec::<String>::new());
        assert_eq!(parse_names(" OFF ").unwrap(), Vec::<String>::new());
        assert_eq!(parse_names("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_names(" , ").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_names(" Authorization , x-api-key,,X-Custom_1!,authorization").unwrap(),
            ["Authorization", "x-api-key", "X-Custom_1!"]
        );
        let e = parse_names("Cookie, X Y").unwrap_err();
        assert_eq!(e.name, "X Y");
        assert_eq!(
            e.to_string(),
            r#""X Y": ' ' cannot be part of an HTTP header name"#
        );
        assert!(parse_names("X-Ä").unwrap_err().to_string().contains("'Ä'"));
        assert!(parse_names("a:b").is_err());
        assert_eq!(parse_names("off,Cookie").unwrap_err().name, "off");
        let defaults: Vec<String> = parse_names(&DEFAULT_NAMES.join(",")).unwrap();
        assert_eq!(defaults, default_names());
    }

    mod properties {
        use super::super::*;
        use super::{default_redactor, SAMPLE_REQUEST};
        use proptest::prelude::*;
        use serde_json::Value;

        fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
            proptest::sample::select(items).prop_map(str::to_string).boxed()
        }

        /// Header names: the defaults in several cases and spellings, near misses, others.
        fn header_name() -> BoxedStrategy<String> {
            pick(&[
                "Authorization",
                "authorization",
                "AUTHORIZATION",
                r"Authoriz\u0061tion",
                r"\u0041uthorization",
                r"\u0061UTHORIZATION",
                "Proxy-Authorization",
                "Cookie",
                "set-cookie",
                "Set-Cookie",
                "X-Api-Key",
                "x-auth-token",
                "Accept",
                "User-Agent",
                r"\u0041ccept",
                "X-Authorization",
                "Authorizatio",
                "Cookies",
                "X-Header",
                "Header",
                "response_headers",
            ])
        }

        /// Values whose text serde_json writes back as it is (so a reference can hash them).
        fn element() -> BoxedStrategy<String> {
            pick(&[
                r#""Bearer abc""#,
                r#""Bearer \u0061bc""#,
                r#""a\"b\\c""#,
                r#""\u00e9\ud83d\ude00""#,
                r#""""#,
                r#""[redacted]""#,
                "7",
                "-12",
                "null",
                "true",
                r#"{"a":1}"#,
                r#"["x",2]"#,
                "[]",
                "{}",
            ])
        }

        /// The same without escapes other than `\"` and `\\`, which serde_json writes back.
        fn plain_element() -> BoxedStrategy<String> {
            pick(&[
                r#""Bearer abc""#,
                r#""a\"b\\c""#,
                "7",
                "null",
                "true",
                "[]",
                "{}",
                r#"{"a":1}"#,
            ])
        }

        fn header_value_of(element: fn() -> BoxedStrategy<String>) -> BoxedStrategy<String> {
            prop_oneof![
                4 => proptest::collection::vec(element(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                1 => element(),
            ]
            .boxed()
        }

        fn header_value() -> BoxedStrategy<String> {
            header_value_of(element)
        }

        fn object(members: impl IntoIterator<Item = (String, String)>) -> String {
            let members: Vec<String> = members.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", members.join(","))
        }

        fn header_map() -> BoxedStrategy<String> {
            proptest::collection::vec((header_name(), header_value()), 0..5)
                .prop_map(object)
                .boxed()
        }

        /// Member names without escapes, for objects that may be hashed as written: with no
        /// escapes, no repeats and in order (a `btree_map`), serde_json writes them back as
        /// they were, and the reference can hash that.
        fn plain_name() -> BoxedStrategy<String> {
            pick(&[
                "Authorization",
                "cookie",
                "Accept",
                "Header",
                "response_headers",
                "request",
                "eader",
                "a",
            ])
        }

        fn plain_header_map() -> BoxedStrategy<String> {
            proptest::collection::btree_map(plain_name(), header_value_of(plain_element), 0..5)
                .prop_map(object)
                .boxed()
        }

        /// Any JSON, sometimes holding header maps or their text.
        fn any_json() -> BoxedStrategy<String> {
            let leaf = prop_oneof![
                plain_element(),
                pick(&[
                    r#""\"Header\":{\"Authorization\":[\"x\"]}""#,
                    r#""eader""#,
                    r#""\\""#
                ]),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                    proptest::collection::btree_map(plain_name(), inner.clone(), 0..4).prop_map(object),
                    plain_header_map().prop_map(|h| format!(r#"{{"Header":{h}}}"#)),
                    plain_header_map().prop_map(|h| format!(r#"{{"response_headers":{h}}}"#)),
                ]
            })
            .boxed()
        }

        /// Members each present with its percent chance, in any order.
        fn members(
            fields: Vec<(BoxedStrategy<String>, BoxedStrategy<String>, u32)>,
        ) -> BoxedStrategy<String> {
            let each: Vec<_> = fields
                .into_iter()
                .map(|(name, value, percent)| {
                    (0u32..100, name, value).prop_map(move |(roll, n, v)| (roll < percent).then_some((n, v)))
                })
                .collect();
            each.prop_flat_map(|m| Just(m.into_iter().flatten().collect::<Vec<_>>()).prop_shuffle())
                .prop_map(object)
                .boxed()
        }

        fn request() -> BoxedStrategy<String> {
            members(vec![
                (pick(&["Method"]), pick(&[r#""GET""#]), 90),
                (
                    pick(&["RequestURI"]),
                    pick(&[r#""/a?b=1\u0026c=\"d\"""#, r#""/""#]),
                    90,
                ),
                (pick(&["Header", r"Head\u0065r", "header"]), header_map(), 85),
                (pick(&["Header"]), header_map(), 5),
                (pick(&["Trailer"]), header_map(), 20),
                (header_name(), any_json(), 20),
            ])
        }

        fn record() -> BoxedStrategy<String> {
            members(vec![
                (pick(&["sequence"]), pick(&["1", "18446744073709551615"]), 95),
                (pick(&["request", r"requ\u0065st"]), request(), 50),
                (pick(&["request_body", "response_body", "note"]), any_json(), 50),
                (pick(&["response_status_code"]), pick(&["200", r#""200""#]), 50),
                (
                    pick(&["response_headers", r"response_h\u0065aders", "Response_headers"]),
                    header_map(),
                    50,
                ),
                (pick(&["Header", "response_headers", "request"]), any_json(), 15),
            ])
        }

        /// What the line should become, computed on serde_json's reading of it.
        fn reference(r: &Redactor, v: &mut Value) {
            let hide = |value: &mut Value| {
                let mark = |v: &Value| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let m = r.mark(text.as_bytes());
                    Value::String(String::from_utf8(m[1..MARK_LEN - 1].to_vec()).unwrap())
                };
                match value {
                    Value::Null => {}
                    Value::Array(items) => items.iter_mut().for_each(|i| *i = mark(i)),
                    other => *other = mark(other),
                }
            };
            let map = |h: Option<&mut Value>| {
                if let Some(Value::Object(h)) = h {
                    for (name, value) in h.iter_mut() {
                        if DEFAULT_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                            hide(value);
                        }
                    }
                }
            };
            map(v.get_mut("request").and_then(|q| q.get_mut("Header")));
            map(v.get_mut("response_headers"));
        }

        /// Checks that `out` is `line` with only whole JSON values replaced by marks.
        fn only_values_replaced(line: &[u8], out: &[u8]) -> Result<usize, TestCaseError> {
            let (mut at_line, mut at_out, mut marks) = (0, 0, 0);
            for m in memmem::find_iter(out, MARK_PREFIX) {
                let kept = &out[at_out..m];
                prop_assert!(line[at_line..].starts_with(kept));
                at_line += kept.len();
                let mut values = serde_json::Deserializer::from_slice(&line[at_line..]).into_iter::<Value>();
                prop_assert!(matches!(values.next(), Some(Ok(_))), "no value where a mark is");
                at_line += values.byte_offset();
                at_out = m + MARK_LEN;
                marks += 1;
            }
            prop_assert_eq!(&line[at_line..], &out[at_out..]);
            Ok(marks)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Valid records: the result is serde_json's reading of the line with exactly the
            /// targeted values replaced, every other byte is kept, and the quick verdict never
            /// skips a line the full walk would change.
            #[test]
            fn records_are_redacted_as_the_reference_says(line in record()) {
                let r = default_redactor();
                let mut out = Vec::new();
                let n = r.redact_into(line.as_bytes(), &mut out);
                let mut full = Vec::new();
                prop_assert_eq!(r.rewrite(line.as_bytes(), &mut full), n);
                prop_assert_eq!(&full, &out);
                let mut expected: Value = serde_json::from_str(&line).unwrap();
                reference(&r, &mut expected);
                let written = if n == 0 { line.as_bytes() } else { &out[..] };
                let got: Value = serde_json::from_slice(written).unwrap();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(only_values_replaced(line.as_bytes(), written)?, n);
            }

            /// Damaged lines: never a panic; a replacement only in valid JSON, giving valid JSON;
            /// the quick verdict still agrees with the full walk.
            #[test]
            fn damaged_lines(
                line in record(),
                edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
                useful in prop::sample::select(&[b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'u', b'0'][..]),
            ) {
                let mut bytes = line.into_bytes();
                for (at, byte, how) in edits {
                    let byte = if byte < 128 { useful } else { byte };
                    let at = at.index(bytes.len() + 1);
                    match how {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 => bytes.insert(at, byte),
                        _ if at < bytes.len() => { bytes.remove(at); }
                        _ => {}
                    }
                }
                let r = default_redactor();
                let mut out = Vec::new();
                let n = r.redact_into(&bytes, &mut out);
                let mut full = Vec::new();
                prop_assert_eq!(r.rewrite(&bytes, &mut full), n);
                prop_assert_eq!(&full, &out);
                if n > 0 {
                    prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
                    prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
                    prop_assert_eq!(only_values_replaced(&bytes, &out)?, n);
                } else {
                    prop_assert!(out.is_empty());
                }
            }

            /// Word at a time or byte at a time, from any start: the same first stop, and the
            /// same answer to whether it is a quote.
            #[test]
            fn string_stop_agrees_with_a_byte_by_byte_search(
                text in proptest::collection::vec(
                    prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1f_u8), Just(0u8), 0x20u8..=0xff],
                    0..40,
                ),
                start in 0usize..40,
            ) {
                let start = start.min(text.len());
                let expected = (start..text.len())
                    .find(|&i| matches!(text[i], b'"' | b'\\' | 0..=0x1f))
                    .unwrap_or(text.len());
                prop_assert_eq!(string_stop(&text, start), (expected, text.get(expected) == Some(&b'"')));
            }

            /// The sample with one byte changed, inserted or removed: the same agreement.
            #[test]
            fn damaged_sample(at in 0usize..600, byte in any::<u8>(), how in 0u8..3) {
                let mut bytes = SAMPLE_REQUEST.replace(r#""Accept""#, r#""Cookie""#).into_bytes();
                let at = at % bytes.len();
                match how {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => { bytes.remove(at); }
                }
                let r = default_redactor();
                let mut out = Vec::new();
                let n = r.redact_into(&bytes, &mut out);
                let mut full = Vec::new();
                prop_assert_eq!(r.rewrite(&bytes, &mut full), n);
                prop_assert_eq!(full, out);
            }
        }
    }
}
