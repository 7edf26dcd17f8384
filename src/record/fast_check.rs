//! The common record checked in one pass over its bytes, without serde.
//!
//! Almost every record a sensor sends is compact JSON whose fields have the documented types.
//! [`check`] reads such a record once, validating it as [`record::check`] would and finding its
//! kind and sequence, and says whether the text is already minified (no whitespace between
//! tokens), in which case the line to write is the text itself. It is an answer only when sure:
//! it accepts nothing [`record::check`] refuses, and then finds the same kind and sequence.
//! Whatever it is not sure of returns `None`, and the caller runs [`record::check`], which gives
//! the verdict and, for a refusal, the reason: an escape in a member name, a surrogate escape, a
//! `null` where it decides the outcome, a number that is not a plain integer where an integer is
//! wanted, a known field twice, nesting deeper than [`MAX_DEPTH`], and everything invalid.
//!
//! A property test below and the `record_check` fuzz target hold the two checks to that.
//!
//! Why by hand: the record check was the largest cost per request. Measured with callgrind on the
//! vendor's 512-byte sample request (bench/RESULTS.md): serde's typed parse ~11,000 instructions
//! plus ~2,600 for the minifier, against ~7,540 for this check, which also makes the minifier
//! unnecessary for a compact record; 44,163 → 37,767 instructions per S1 request in all.
//!
//! [`record::check`]: crate::record::check

use crate::json::scan::{below, eq, find};
use crate::record::Kind;

/// Nesting beyond this many objects and arrays is left to the full check (serde_json stops at
/// 128).
pub(crate) const MAX_DEPTH: u32 = 64;

/// What the quick check found in a conforming record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quick {
    /// Request or response.
    pub kind: Kind,
    /// The correlation number.
    pub sequence: u64,
    /// No whitespace between tokens: the text is its own minified form.
    pub compact: bool,
}

/// `json`'s kind and sequence when it is a conforming record the quick check is sure of.
pub fn check(json: &str) -> Option<Quick> {
    let mut s = Scan {
        b: json.as_bytes(),
        i: 0,
        compact: true,
    };
    let (kind, sequence) = s.envelope()?;
    s.ws();
    (s.i == s.b.len()).then_some(Quick {
        kind,
        sequence,
        compact: s.compact,
    })
}

/// A number's value, as far as the fields that want integers care.
enum Num {
    /// Digits alone.
    Unsigned(u64),
    /// `-` and digits: the magnitude.
    Negative(u64),
    /// A fraction or an exponent.
    Other,
}

/// Top-level fields, one bit each, to find duplicates.
const SEQUENCE: u32 = 1;
const REQUEST: u32 = 1 << 1;
const REQUEST_BODY: u32 = 1 << 2;
const STATUS: u32 = 1 << 3;
const RESPONSE_HEADERS: u32 = 1 << 4;
const RESPONSE_BODY: u32 = 1 << 5;

/// `request` fields.
const METHOD: u32 = 1;
const REQUEST_URI: u32 = 1 << 1;
const OTHER_REQUEST_FIELDS: [&[u8]; 9] = [
    b"Host",
    b"RemoteAddr",
    b"TLSVersion",
    b"Proto",
    b"ContentLength",
    b"TransferEncoding",
    b"Header",
    b"Close",
    b"Trailer",
];

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    compact: bool,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips JSON whitespace; any at all means the text is not compact.
    #[inline(always)]
    fn ws(&mut self) {
        // Most often the next byte is a token: one comparison says so.
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
            self.compact = false;
        }
    }

    /// Consumes `c` (after whitespace) when it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let found = self.peek() == Some(c);
        self.i += usize::from(found);
        found
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// After a member or an element: `true` when another follows, `false` at `close`.
    fn more(&mut self, close: u8) -> Option<bool> {
        if self.eat(b',') {
            Some(true)
        } else {
            self.expect(close).map(|()| false)
        }
    }

    /// A string: its raw text between the quotes, and whether it has escapes.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = find(
                self.b,
                self.i,
                |x| eq(x, b'"') | eq(x, b'\\') | below(x, 0x20),
                |c| c == b'"' || c == b'\\' || c < 0x20,
            );
            match self.peek()? {
                b'"' => {
                    let text = &self.b[start..self.i];
                    self.i += 1;
                    return Some((text, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let mut code = 0;
                            for &h in self.b.get(self.i + 2..self.i + 6)? {
                                code = code * 16 + char::from(h).to_digit(16)?;
                            }
                            // Surrogates must pair; the full check judges those.
                            if (0xD800..0xE000).contains(&code) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// A member name without escapes (the full check decodes names before matching them).
    fn name(&mut self) -> Option<&'a [u8]> {
        let (name, escaped) = self.string()?;
        self.expect(b':')?;
        (!escaped).then_some(name)
    }

    fn number(&mut self) -> Option<Num> {
        self.ws();
        let negative = self.peek() == Some(b'-');
        self.i += usize::from(negative);
        let start = self.i;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let int = &self.b[start..self.i];
        let mut plain = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            plain = false;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            plain = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        if !plain {
            return Some(Num::Other);
        }
        // More than a u64 holds: left to the full check.
        let mut n: u64 = 0;
        for &d in int {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(if negative {
            Num::Negative(n)
        } else {
            Num::Unsigned(n)
        })
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
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// The members of an object or the elements of an array, after its opening bracket, up to
    /// and including `close`; `item` reads each one.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.eat(close) {
            return Some(());
        }
        loop {
            item(self)?;
            if !self.more(close)? {
                return Some(());
            }
        }
    }

    /// Any JSON value, checked and skipped; `depth` counts the objects and arrays around it.
    fn value(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.items(b'}', |s| {
                    s.string()?;
                    s.expect(b':')?;
                    s.value(depth + 1)
                })
            }
            b'[' => {
                self.i += 1;
                self.items(b']', |s| s.value(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// `null` (consumed) or not (nothing consumed).
    fn null(&mut self) -> bool {
        self.ws();
        self.peek() == Some(b'n') && self.literal(b"null").is_some()
    }

    /// An array of strings, possibly empty (after its `[`).
    fn string_list_rest(&mut self) -> Option<()> {
        self.items(b']', |s| s.string().map(drop))
    }

    /// A header map (after its `{`): name → array of strings or `null`.
    fn header_map_rest(&mut self) -> Option<()> {
        self.items(b'}', |s| {
            s.string()?;
            s.expect(b':')?;
            if !s.null() {
                s.expect(b'[')?;
                s.string_list_rest()?;
            }
            Some(())
        })
    }

    /// `request`'s fields; `Method` and `RequestURI` required.
    fn request(&mut self) -> Option<()> {
        self.expect(b'{')?;
        let mut seen = 0u32;
        let mut others = 0u32;
        self.items(b'}', |s| {
            let name = s.name()?;
            let bit = match name {
                b"Method" => METHOD,
                b"RequestURI" => REQUEST_URI,
                _ => 0,
            };
            if bit != 0 {
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                s.string().map(drop)
            } else if let Some(k) = OTHER_REQUEST_FIELDS.iter().position(|f| *f == name) {
                if others & (1 << k) != 0 {
                    return None;
                }
                others |= 1 << k;
                if s.null() {
                    Some(())
                } else {
                    s.request_field(name)
                }
            } else {
                s.value(2)
            }
        })?;
        (seen == METHOD | REQUEST_URI).then_some(())
    }

    /// One of the optional `request` fields, not `null`.
    fn request_field(&mut self, name: &[u8]) -> Option<()> {
        match name {
            b"ContentLength" => match self.number()? {
                Num::Unsigned(n) if n <= i64::MAX as u64 => Some(()),
                Num::Negative(n) if (1..=i64::MAX as u64).contains(&n) => Some(()),
                _ => None,
            },
            b"TransferEncoding" => {
                if self.eat(b'[') {
                    self.string_list_rest()
                } else {
                    self.string().map(drop)
                }
            }
            b"Header" => {
                self.expect(b'{')?;
                self.header_map_rest()
            }
            b"Close" => {
                self.ws();
                match self.peek()? {
                    b't' => self.literal(b"true"),
                    _ => self.literal(b"false"),
                }
            }
            b"Trailer" => {
                if self.eat(b'{') {
                    self.header_map_rest()
                } else {
                    self.string().map(drop)
                }
            }
            // Host, RemoteAddr, TLSVersion, Proto.
            _ => self.string().map(drop),
        }
    }

    /// `response_status_code`: 100–599, as a number or a string of three digits.
    fn status(&mut self) -> Option<()> {
        self.ws();
        let code = if self.peek()? == b'"' {
            let (text, escaped) = self.string()?;
            if escaped || text.len() != 3 || !text.iter().all(u8::is_ascii_digit) {
                return None;
            }
            text.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'))
        } else {
            match self.number()? {
                Num::Unsigned(n) => n,
                _ => return None,
            }
        };
        (100..=599).contains(&code).then_some(())
    }

    /// The record: its kind and sequence.
    fn envelope(&mut self) -> Option<(Kind, u64)> {
        self.expect(b'{')?;
        let mut seen = 0u32;
        let mut sequence = 0;
        self.items(b'}', |s| {
            let name = s.name()?;
            let bit = match name {
                b"sequence" => SEQUENCE,
                b"request" => REQUEST,
                b"request_body" => REQUEST_BODY,
                b"response_status_code" => STATUS,
                b"response_headers" => RESPONSE_HEADERS,
                b"response_body" => RESPONSE_BODY,
                _ => 0,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match bit {
                SEQUENCE => match s.number()? {
                    Num::Unsigned(n) => sequence = n,
                    _ => return None,
                },
                REQUEST => s.request()?,
                STATUS => s.status()?,
                RESPONSE_HEADERS => {
                    if !s.null() {
                        s.expect(b'{')?;
                        s.header_map_rest()?;
                    }
                }
                // The bodies, and fields the format does not name: any value.
                _ => s.value(1)?,
            }
            Some(())
        })?;
        if seen & SEQUENCE == 0 {
            return None;
        }
        match (seen & REQUEST != 0, seen & STATUS != 0) {
            (true, false) => Some((Kind::Request, sequence)),
            (false, true) => Some((Kind::Response, sequence)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::minify::minify;
    use crate::record;

    const REQUEST: &str = r#"{"sequence":302,"request":{"Method":"POST","Host":"appliance.example.extrahop.com","RemoteAddr":"127.0.0.1:1234","RequestURI":"/api/v1/metrics?a=1\u0026b=\"2\"","TLSVersion":"TLS1.2","Proto":"HTTP/1.1","ContentLength":149,"TransferEncoding":null,"Header":{"Accept":["application/json"],"X-Empty":[],"X-Nil":null},"Close":false,"Trailer":null},"request_body":{"from":-1,"until":1.5e3,"metric_specs":[{"name":"req"}],"x":[true,false,null,"é"]}}"#;
    const RESPONSE: &str = r#"{"sequence":302,"response_status_code":"200","response_headers":{"Vary":["Accept-Encoding"]},"response_body":{"cycle":"30sec"}}"#;

    /// The quick answer, checked against the full check.
    fn quick(json: &str) -> Option<Quick> {
        let q = check(json);
        if let Some(q) = q {
            let full = record::check(json).unwrap_or_else(|e| panic!("quick accepted {json}: {e}"));
            assert_eq!((full.kind(), full.sequence()), (q.kind, q.sequence), "{json}");
            if q.compact {
                assert_eq!(minify(json.as_bytes()), json.as_bytes(), "{json}");
            }
        }
        q
    }

    #[test]
    fn what_sensors_send_is_answered_quickly() {
        let q = quick(REQUEST).unwrap();
        assert_eq!((q.kind, q.sequence, q.compact), (Kind::Request, 302, true));
        let q = quick(RESPONSE).unwrap();
        assert_eq!((q.kind, q.sequence, q.compact), (Kind::Response, 302, true));
        let q = quick(r#"{"sequence":18446744073709551615,"response_status_code":599}"#).unwrap();
        assert_eq!(q.sequence, u64::MAX);
        let fixture = include_str!("../../tests/fixtures/request.json");
        let q = quick(fixture.trim_end()).unwrap();
        assert_eq!((q.kind, q.compact), (Kind::Request, false));
        let q = quick(include_str!("../../tests/fixtures/response.json").trim_end()).unwrap();
        assert_eq!((q.kind, q.compact), (Kind::Response, false));
        assert!(quick(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","TransferEncoding":["chunked"],"Trailer":{"X":["y"]},"ContentLength":-1,"Close":true}}"#).is_some());
        assert!(quick(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","TransferEncoding":"chunked","Trailer":"X","Header":null}}"#).is_some());
        assert!(quick(
            r#"{"sequence":0,"response_status_code":"599","response_body":null,"response_headers":null}"#
        )
        .is_some());
    }

    #[test]
    fn what_it_is_not_sure_of_goes_to_the_full_check() {
        for json in [
            // Refused by the full check too.
            r#"{"sequence":1}"#,
            r#"{"request":{"Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":1,"sequence":1,"response_status_code":200}"#,
            r#"{"sequence":1,"request":{"Method":"GET","Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":1,"request":{"Method":"GET"}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"A":"b"}}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"A":[null]}}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","ContentLength":1.0}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","ContentLength":-0}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Close":"no"}}"#,
            r#"{"sequence":1,"response_status_code":"20x"}"#,
            r#"{"sequence":1,"response_status_code":700}"#,
            r#"{"sequence":1,"response_status_code":200.0}"#,
            r#"{"sequence":-1,"response_status_code":200}"#,
            r#"{"sequence":18446744073709551616,"response_status_code":200}"#,
            r#"{"sequence":01,"response_status_code":200}"#,
            "{\"sequence\":1,\"response_status_code\":200,\"x\":\"a\u{1}\"}",
            "{\"sequence\":1,\"response_status_code\":200,\"x\":\"a\tb\"}",
            r#"{"sequence":1,"response_status_code":200,"x":"\x"}"#,
            r#"{"sequence":1,"response_status_code":200,"x":[1,]}"#,
            r#"{"sequence":1,"response_status_code":200,"x":1.}"#,
            r#"{"sequence":1,"response_status_code":200,"x":tru}"#,
            r#"{"sequence":1,"response_status_code":200} x"#,
            r#"{"sequence":1,"response_status_code":200"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"},"response_status_code":200}"#,
            // Accepted by the full check, left to it.
            r#"{"sequence":1,"response_status_code":200,"x":"\ud83d\ude00"}"#,
            r#"{"seq\u0075ence":1,"response_status_code":200}"#,
            r#"{"sequence":1,"response_status_code":"\u0032\u0030\u0030"}"#,
            r#"{"sequence":1,"response_status_code":null,"request":{"Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","ContentLength":-9223372036854775808}}"#,
        ] {
            assert_eq!(quick(json), None, "{json}");
        }
        let deep = format!(
            r#"{{"sequence":1,"response_status_code":200,"x":{}1{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert_eq!(quick(&deep), None);
        let shallow = deep.replace("[[", "[").replace("]]", "]");
        assert!(quick(&shallow).is_some());
    }

    #[test]
    fn whitespace_anywhere_means_not_compact() {
        let q = quick("{ \"sequence\":1,\"response_status_code\":200}").unwrap();
        assert!(!q.compact);
        let q = quick("{\"sequence\":1,\"response_status_code\":200,\"x\":[1, 2]}\n").unwrap();
        assert!(!q.compact);
        let q = quick("{\"sequence\":1,\"response_status_code\":200,\"x\":\"a b\"}").unwrap();
        assert!(q.compact);
    }

    mod properties {
        use super::quick;
        use proptest::prelude::*;

        /// Mostly `good`, sometimes one of `bad`.
        fn mostly(good: BoxedStrategy<String>, bad: &[&'static str]) -> BoxedStrategy<String> {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            prop_oneof![9 => good, 1 => proptest::sample::select(bad)].boxed()
        }

        fn pick(options: &[&'static str]) -> BoxedStrategy<String> {
            let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
            proptest::sample::select(options).boxed()
        }

        /// Any JSON value (and a few that are not, or that only the full check takes).
        fn any_json() -> BoxedStrategy<String> {
            mostly(
                pick(&[
                    "null",
                    "true",
                    "false",
                    "[]",
                    "{}",
                    r#"{"a":[1,{"b":null}],"c":"\n\u00e9\/"}"#,
                    "-12.5e-3",
                    "0",
                    r#""x \"y\"""#,
                    r#"[1, 2 ,"3"]"#,
                ]),
                &["\"\\ud800\"", "01", "1.", "[1,]", "nul", "\"\\q\"", "{\"a\"}"],
            )
        }

        fn header_map() -> BoxedStrategy<String> {
            mostly(
                pick(&[
                    r#"{"A":["b","c"],"D":[],"E":null}"#,
                    r#"{"Accept":["application/json"]}"#,
                    "{}",
                    r#"{"X-\u0041":["\u00e9"]}"#,
                ]),
                &[r#"{"A":"b"}"#, r#"{"A":[1]}"#, r#"{"A":[null]}"#, "[]", "7"],
            )
        }

        fn request() -> BoxedStrategy<String> {
            let s = || {
                mostly(
                    pick(&[r#""GET""#, r#""/a?b=1\u0026c=\"d\"""#, r#""""#]),
                    &["null", "7", "[]"],
                )
            };
            let fields: Vec<(&'static str, BoxedStrategy<String>, u32)> = vec![
                ("Method", s(), 95),
                ("RequestURI", s(), 95),
                ("Host", prop_oneof![s(), Just("null".into())].boxed(), 50),
                ("Proto", s(), 30),
                (
                    "ContentLength",
                    mostly(
                        pick(&["149", "-1", "0", "null", "9223372036854775807"]),
                        &["1.5", "-0", "9223372036854775808", "\"1\"", "1e3"],
                    ),
                    50,
                ),
                (
                    "TransferEncoding",
                    mostly(
                        pick(&["null", r#"["chunked"]"#, r#""chunked""#, "[]"]),
                        &["[null]", "{}", "true"],
                    ),
                    40,
                ),
                (
                    "Header",
                    prop_oneof![header_map(), Just("null".into())].boxed(),
                    60,
                ),
                (
                    "Close",
                    mostly(pick(&["true", "false", "null"]), &["\"no\"", "1"]),
                    40,
                ),
                (
                    "Trailer",
                    prop_oneof![header_map(), pick(&["null", r#""X""#])].boxed(),
                    40,
                ),
                ("Other", any_json(), 30),
                ("Method", s(), 3),
            ];
            members(fields)
        }

        /// An object of the fields each present with its percent chance, in any order, with
        /// or without spaces.
        fn members(fields: Vec<(&'static str, BoxedStrategy<String>, u32)>) -> BoxedStrategy<String> {
            let each: Vec<_> = fields
                .into_iter()
                .map(|(name, value, percent)| {
                    (0u32..100, value)
                        .prop_map(move |(roll, v)| (roll < percent).then(|| format!("\"{name}\":{v}")))
                })
                .collect();
            (each, any::<bool>())
                .prop_flat_map(|(members, spaced)| {
                    let members: Vec<String> = members.into_iter().flatten().collect();
                    (Just(members).prop_shuffle(), Just(spaced))
                })
                .prop_map(|(members, spaced)| {
                    let sep = if spaced { " , " } else { "," };
                    format!("{{{}}}", members.join(sep))
                })
                .boxed()
        }

        fn record() -> BoxedStrategy<String> {
            let fields: Vec<(&'static str, BoxedStrategy<String>, u32)> = vec![
                (
                    "sequence",
                    mostly(
                        (0u64..=u64::MAX).prop_map(|n| n.to_string()).boxed(),
                        &["-1", "1.0", "1e2", "\"1\"", "null", "18446744073709551616", "01"],
                    ),
                    95,
                ),
                ("request", mostly(request(), &["null", "[]"]), 50),
                (
                    "response_status_code",
                    mostly(
                        prop_oneof![
                            (100u64..600).prop_map(|n| n.to_string()),
                            (100u64..600).prop_map(|n| format!("\"{n}\"")),
                        ]
                        .boxed(),
                        &["\"0200\"", "200.0", "null", "-200", "99", "600", "\"20x\""],
                    ),
                    50,
                ),
                ("request_body", any_json(), 40),
                (
                    "response_headers",
                    prop_oneof![header_map(), Just("null".into())].boxed(),
                    40,
                ),
                ("response_body", any_json(), 40),
                ("note", any_json(), 20),
                ("sequence", Just("1".into()).boxed(), 3),
            ];
            members(fields)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Built from the format's fields: the quick check agrees with the full one.
            #[test]
            fn quick_agrees_with_full(json in record()) {
                quick(&json);
            }

            /// A conforming record with one byte changed, inserted or removed: still agreement.
            #[test]
            fn quick_agrees_on_damaged_records(at in 0usize..400, byte in any::<u8>(), how in 0u8..3) {
                let mut bytes = super::REQUEST.as_bytes().to_vec();
                let at = at % bytes.len();
                match how {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => { bytes.remove(at); }
                }
                if let Ok(json) = String::from_utf8(bytes) {
                    quick(&json);
                }
            }
        }
    }
}
