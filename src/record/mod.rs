//! The record model: the two kinds of record a sensor sends, and what it takes to conform.
//!
//! Field names and types follow the vendor's page as refined in SPEC 3 (Go's `net/http` types
//! where the page is vague). [`check`] parses one record's JSON text into a typed [`Record`] or
//! says which field is wrong and why. Unknown fields are allowed and ignored here; the output
//! keeps them because it writes the received bytes, not these structs.

pub mod fast_check;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A conforming record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    /// A request the sensor made.
    Request(RequestRecord<'a>),
    /// The response it got.
    Response(ResponseRecord),
}

impl Record<'_> {
    /// The correlation number.
    pub fn sequence(&self) -> u64 {
        match self {
            Record::Request(r) => r.sequence,
            Record::Response(r) => r.sequence,
        }
    }

    /// Which kind of record this is.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Request(_) => Kind::Request,
            Record::Response(_) => Kind::Response,
        }
    }
}

/// The two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Has `request`.
    Request,
    /// Has `response_status_code`.
    Response,
}

/// A request record.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord<'a> {
    /// Correlates the request with its response.
    pub(crate) sequence: u64,
    /// The request line and headers.
    pub(crate) request: RequestInfo<'a>,
    /// Whether `request_body` is present.
    pub(crate) has_body: bool,
}

/// `request`: Go's `http.Request`, as the sensor serializes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo<'a> {
    /// `Method`, required.
    pub(crate) method: Cow<'a, str>,
    /// `RequestURI`, required.
    pub(crate) request_uri: Cow<'a, str>,
    /// `Host`.
    pub(crate) host: Option<Cow<'a, str>>,
    /// `RemoteAddr`.
    pub(crate) remote_addr: Option<Cow<'a, str>>,
    /// `TLSVersion`, e.g. `TLS1.2`.
    pub(crate) tls_version: Option<Cow<'a, str>>,
    /// `Proto`, e.g. `HTTP/1.1`.
    pub(crate) proto: Option<Cow<'a, str>>,
    /// `ContentLength`; Go uses -1 for unknown.
    pub(crate) content_length: Option<i64>,
    /// `TransferEncoding`: null, a string, or a list of strings.
    pub(crate) transfer_encoding: Option<StringOrList>,
    /// `Header`: name → list of values (null for a nil map).
    pub(crate) header: Option<HeaderMap>,
    /// `Close`.
    pub(crate) close: Option<bool>,
    /// `Trailer`: null, a string, or a header map.
    pub(crate) trailer: Option<Trailer>,
}

/// A response record.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseRecord {
    /// Correlates the response with its request.
    pub(crate) sequence: u64,
    /// `response_status_code`, from a number or a string holding one.
    pub(crate) status: u16,
    /// Number of header names in `response_headers`, when present.
    pub(crate) header_count: Option<usize>,
    /// Whether `response_body` is present.
    pub(crate) has_body: bool,
}

/// Why a record does not conform: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonconformity {
    /// Dotted path of the field, e.g. `request.Method`; empty for the record itself.
    pub(crate) field: String,
    /// What is wrong with it.
    pub(crate) reason: String,
}

impl fmt::Display for Nonconformity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Every documented top-level field; anything else is ignored here and kept in the output.
struct Envelope<'a> {
    sequence: Option<u64>,
    request: Option<RequestInfo<'a>>,
    request_body: bool,
    response_status_code: Option<StatusCode>,
    response_headers: Option<HeaderMap>,
    response_body: bool,
}

/// The top-level names [`Envelope`] reads, in the order of [`Envelope::deserialize`]'s match.
const ENVELOPE: &[&str] = &[
    "sequence",
    "request",
    "request_body",
    "response_status_code",
    "response_headers",
    "response_body",
];

/// The names of `request` that [`RequestInfo`] reads.
const REQUEST_INFO: &[&str] = &[
    "Method",
    "RequestURI",
    "Host",
    "RemoteAddr",
    "TLSVersion",
    "Proto",
    "ContentLength",
    "TransferEncoding",
    "Header",
    "Close",
    "Trailer",
];

/// A member name: the index of a documented one in `names`, or `None` for any other.
///
/// Names are read as bytes, so an unknown name is never the record's fault — not even one whose
/// escapes make no Unicode text (a lone surrogate, `"\uDFAA"`), which no Rust string can hold.
struct FieldSeed(&'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for FieldSeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| n.as_bytes() == v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        self.visit_bytes(v.as_bytes())
    }
}

/// A header name as text for an error message: lossy where its escapes make no Unicode text,
/// and cut to a length a message can carry.
struct NameSeed;

impl<'de> de::DeserializeSeed<'de> for NameSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl Visitor<'_> for NameSeed {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a header name")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
        let mut name = String::from_utf8_lossy(&v[..v.len().min(256)]).into_owned();
        name.retain(|c| c != PATH_SEP);
        Ok(name)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.visit_bytes(v.as_bytes())
    }
}

/// Separates a field's name from the error of its value in an error message; [`explain`] turns
/// the names into the dotted path (`request.Method`).
const PATH_SEP: char = '\u{1f}';

/// Prefixes a value's error with its field's name.
fn at<E: de::Error>(field: &'static str) -> impl FnOnce(E) -> E {
    move |e| E::custom(format_args!("{field}{PATH_SEP}{e}"))
}

/// Sets a member once; a second occurrence is a `duplicate field` error, as serde's derive says.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let (mut sequence, mut request, mut request_body) = (None, None, None);
                let (mut status, mut headers, mut response_body) = (None, None, None);
                while let Some(field) = map.next_key_seed(FieldSeed(ENVELOPE))? {
                    match field {
                        Some(0) => once(
                            &mut sequence,
                            "sequence",
                            map.next_value::<Option<u64>>().map_err(at("sequence"))?,
                        )?,
                        Some(1) => once(
                            &mut request,
                            "request",
                            map.next_value::<Option<RequestInfo<'de>>>()
                                .map_err(at("request"))?,
                        )?,
                        Some(2) => once(
                            &mut request_body,
                            "request_body",
                            map.next_value::<IgnoredAny>().map_err(at("request_body"))?,
                        )?,
                        Some(3) => once(
                            &mut status,
                            "response_status_code",
                            map.next_value::<Option<StatusCode>>()
                                .map_err(at("response_status_code"))?,
                        )?,
                        Some(4) => once(
                            &mut headers,
                            "response_headers",
                            map.next_value::<Option<HeaderMap>>()
                                .map_err(at("response_headers"))?,
                        )?,
                        Some(5) => once(
                            &mut response_body,
                            "response_body",
                            map.next_value::<IgnoredAny>().map_err(at("response_body"))?,
                        )?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Envelope {
                    sequence: sequence.flatten(),
                    request: request.flatten(),
                    request_body: request_body.is_some(),
                    response_status_code: status.flatten(),
                    response_headers: headers.flatten(),
                    response_body: response_body.is_some(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for RequestInfo<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RequestInfo<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object (Go's http.Request)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestInfo<'de>, A::Error> {
                let (mut method, mut uri, mut host, mut remote, mut tls, mut proto) =
                    (None, None, None, None, None, None);
                let (mut length, mut encoding, mut header, mut close, mut trailer) =
                    (None, None, None, None, None);
                while let Some(field) = map.next_key_seed(FieldSeed(REQUEST_INFO))? {
                    match field {
                        Some(0) => once(
                            &mut method,
                            "Method",
                            map.next_value::<Text<'de>>().map_err(at("Method"))?.0,
                        )?,
                        Some(1) => once(
                            &mut uri,
                            "RequestURI",
                            map.next_value::<Text<'de>>().map_err(at("RequestURI"))?.0,
                        )?,
                        Some(2) => once(
                            &mut host,
                            "Host",
                            map.next_value::<Option<Text<'de>>>().map_err(at("Host"))?,
                        )?,
                        Some(3) => once(
                            &mut remote,
                            "RemoteAddr",
                            map.next_value::<Option<Text<'de>>>().map_err(at("RemoteAddr"))?,
                        )?,
                        Some(4) => once(
                            &mut tls,
                            "TLSVersion",
                            map.next_value::<Option<Text<'de>>>().map_err(at("TLSVersion"))?,
                        )?,
                        Some(5) => once(
                            &mut proto,
                            "Proto",
                            map.next_value::<Option<Text<'de>>>().map_err(at("Proto"))?,
                        )?,
                        Some(6) => once(
                            &mut length,
                            "ContentLength",
                            map.next_value::<Option<i64>>().map_err(at("ContentLength"))?,
                        )?,
                        Some(7) => once(
                            &mut encoding,
                            "TransferEncoding",
                            map.next_value::<Option<StringOrList>>()
                                .map_err(at("TransferEncoding"))?,
                        )?,
                        Some(8) => once(
                            &mut header,
                            "Header",
                            map.next_value::<Option<HeaderMap>>().map_err(at("Header"))?,
                        )?,
                        Some(9) => once(
                            &mut close,
                            "Close",
                            map.next_value::<Option<bool>>().map_err(at("Close"))?,
                        )?,
                        Some(10) => once(
                            &mut trailer,
                            "Trailer",
                            map.next_value::<Option<Trailer>>().map_err(at("Trailer"))?,
                        )?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RequestInfo {
                    method: method.ok_or_else(|| at::<A::Error>("Method")(de::Error::custom("missing")))?,
                    request_uri: uri
                        .ok_or_else(|| at::<A::Error>("RequestURI")(de::Error::custom("missing")))?,
                    host: host.flatten().map(|t| t.0),
                    remote_addr: remote.flatten().map(|t| t.0),
                    tls_version: tls.flatten().map(|t| t.0),
                    proto: proto.flatten().map(|t| t.0),
                    content_length: length.flatten(),
                    transfer_encoding: encoding.flatten(),
                    header: header.flatten(),
                    close: close.flatten(),
                    trailer: trailer.flatten(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A string field's text, borrowed from the record when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Checks one record's JSON text (a JSON object) against the format.
pub fn check(json: &str) -> Result<Record<'_>, Nonconformity> {
    let env: Envelope<'_> = match serde_json::from_str(json) {
        Ok(env) => env,
        Err(_) => return Err(explain(json)),
    };
    // Member names are read as bytes (so that a lone surrogate never fails a record), and
    // serde_json does not look for raw control characters there; a text holding any byte below
    // 0x20 (a pretty-printed one, or one that is not JSON) is checked as JSON text as well.
    if json.bytes().any(|b| b < 0x20) {
        if let Err(e) = serde_json::from_str::<IgnoredAny>(json) {
            let mut reason = e.to_string();
            if let Some(at) = reason.rfind(" at line ") {
                reason.truncate(at);
            }
            return Err(Nonconformity {
                field: String::new(),
                reason: format!("not JSON: {reason}"),
            });
        }
    }
    let sequence = env.sequence.ok_or_else(|| Nonconformity {
        field: "sequence".into(),
        reason: "missing".into(),
    })?;
    match (env.request, env.response_status_code) {
        (Some(request), None) => Ok(Record::Request(RequestRecord {
            sequence,
            request,
            has_body: env.request_body,
        })),
        (None, Some(status)) => Ok(Record::Response(ResponseRecord {
            sequence,
            status: status.0,
            header_count: env.response_headers.map(|h| h.len),
            has_body: env.response_body,
        })),
        (Some(_), Some(_)) => Err(Nonconformity {
            field: String::new(),
            reason: "has both `request` and `response_status_code`; a record is one or the other".into(),
        }),
        (None, None) => Err(Nonconformity {
            field: String::new(),
            reason: "has neither `request` (a request record) nor `response_status_code` (a response record)"
                .into(),
        }),
    }
}

/// The field and reason of a record that failed [`check`]'s parse.
fn explain(json: &str) -> Nonconformity {
    let e = match serde_json::from_str::<Envelope<'_>>(json) {
        Ok(_) => {
            return Nonconformity {
                field: String::new(),
                reason: "not a valid record".into(),
            }
        }
        Err(e) => e,
    };
    let (line, column) = (e.line(), e.column());
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // Field names first, each followed by PATH_SEP; the reason last (it may hold anything).
    let mut path = Vec::new();
    let mut rest = message.as_str();
    while let Some((name, tail)) = rest.split_once(PATH_SEP) {
        // A header map's member is any name (the header's); every other name is a known field.
        let in_header_map = matches!(path.last(), Some(&("Header" | "response_headers" | "Trailer")));
        if !(in_header_map || ENVELOPE.contains(&name) || REQUEST_INFO.contains(&name)) {
            break;
        }
        path.push(name);
        rest = tail;
    }
    let reason = if rest.contains("surrogate") || rest.contains("end of hex escape") {
        surrogate_reason(json, line, column).unwrap_or_else(|| rest.to_string())
    } else {
        rest.to_string()
    };
    Nonconformity {
        field: path.join("."),
        reason,
    }
}

/// What is wrong with the `\u` escape just before `line:column`: half of a surrogate pair alone,
/// which no Unicode text can hold (serde_json calls both cases "leading").
fn surrogate_reason(json: &str, line: usize, column: usize) -> Option<String> {
    let start = json
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    let end = (start + column).min(json.len());
    let before = json.get(..end)?;
    let at = before.rfind("\\u")?;
    let hex = json.get(at + 2..at + 6)?;
    let unit = u16::from_str_radix(hex, 16).ok()?;
    match unit {
        0xD800..=0xDBFF => Some(format!(
            "lone leading surrogate \\u{hex} in a string: the first half of a pair with no second half"
        )),
        0xDC00..=0xDFFF => {
            // After a leading half, this is the pair's second escape that did not fit it.
            let pair = json.get(at.checked_sub(6)?..at).filter(|p| p.starts_with("\\u"));
            match pair.and_then(|p| u16::from_str_radix(&p[2..], 16).ok()) {
                Some(0xD800..=0xDBFF) => None,
                _ => Some(format!(
                    "lone trailing surrogate \\u{hex} in a string: the second half of a pair with no first half"
                )),
            }
        }
        _ => {
            // `\uD800\u0041`: the error is at the escape after a leading half.
            let lead = json
                .get(at.checked_sub(6)?..at)
                .filter(|p| p.starts_with("\\u"))?;
            let lead_hex = &lead[2..];
            match u16::from_str_radix(lead_hex, 16).ok()? {
                0xD800..=0xDBFF => Some(format!(
                    "lone leading surrogate \\u{lead_hex} in a string: followed by \\u{hex}, not by the second half of a pair"
                )),
                _ => None,
            }
        }
    }
}

/// `response_status_code`: an integer 100–599, or a string holding one (the page's example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusCode(pub u16);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status code 100-599, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusCode, E> {
                match u16::try_from(v) {
                    Ok(c) if (100..=599).contains(&c) => Ok(StatusCode(c)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusCode, E> {
                Err(E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusCode, E> {
                let ok = v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit());
                match v.parse::<u16>() {
                    Ok(c) if ok && (100..=599).contains(&c) => Ok(StatusCode(c)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Accepts any JSON string without keeping it; anything else is a type error.
struct AnyStr;

impl<'de> Deserialize<'de> for AnyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyStr, E> {
                Ok(AnyStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// A list of strings, or null (Go's nil slice); counts the strings.
struct StringList(usize);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<StringList, E> {
                Ok(StringList(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut n = 0;
                while seq.next_element::<AnyStr>()?.is_some() {
                    n += 1;
                }
                Ok(StringList(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// A header map (`Header`, `response_headers`): string → array of strings; null is an empty map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderMap {
    /// Number of header names.
    pub(crate) len: usize,
}

impl<'de> Deserialize<'de> for HeaderMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeaderMapVisitor)
    }
}

struct HeaderMapVisitor;

impl<'de> Visitor<'de> for HeaderMapVisitor {
    type Value = HeaderMap;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of header name to array of strings")
    }
    fn visit_unit<E: de::Error>(self) -> Result<HeaderMap, E> {
        Ok(HeaderMap { len: 0 })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
        let mut len = 0;
        // Header names are read as bytes: any name is the sensor's business. A value's error
        // names its header (`request.Header.Accept`), so redaction can word it without the value.
        while let Some(name) = map.next_key_seed(NameSeed)? {
            map.next_value::<StringList>()
                .map_err(|e| de::Error::custom(format_args!("{name}{PATH_SEP}{e}")))?;
            len += 1;
        }
        Ok(HeaderMap { len })
    }
}

/// `TransferEncoding`: the page says a string, Go's type is `[]string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringOrList {
    /// A single string.
    String,
    /// An array of this many strings.
    List(usize),
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a string, or an array of strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::String)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StringOrList, A::Error> {
                let StringList(n) = StringList::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(StringOrList::List(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// `Trailer`: the page says a string, Go's type is a header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trailer {
    /// A single string.
    String,
    /// A header map.
    Map(HeaderMap),
}

impl<'de> Deserialize<'de> for Trailer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Trailer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a string, or an object of header name to array of strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Trailer, E> {
                Ok(Trailer::String)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Trailer, A::Error> {
                HeaderMapVisitor.visit_map(map).map(Trailer::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"sequence":302,"request":{"Method":"POST","Host":"appliance.example.extrahop.com","RemoteAddr":"127.0.0.1:1234","RequestURI":"/api/v1/metrics","TLSVersion":"TLS1.2","Proto":"HTTP/1.1","ContentLength":149,"TransferEncoding":null,"Header":{"Accept":["application/json"]},"Close":false,"Trailer":null},"request_body":{"from":-1}}"#;
    const RESPONSE: &str = r#"{"sequence":302,"response_status_code":"200","response_headers":{"Vary":["Accept-Encoding"]},"response_body":{"cycle":"30sec"}}"#;

    fn problem(json: &str) -> String {
        check(json).unwrap_err().to_string()
    }

    #[test]
    fn the_vendor_examples_conform() {
        let Record::Request(r) = check(REQUEST).unwrap() else {
            panic!()
        };
        assert_eq!(r.sequence, 302);
        assert_eq!(r.request.method, "POST");
        assert_eq!(r.request.request_uri, "/api/v1/metrics");
        assert_eq!(r.request.header, Some(HeaderMap { len: 1 }));
        assert!(r.has_body);
        let Record::Response(r) = check(RESPONSE).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.sequence, r.status, r.header_count, r.has_body),
            (302, 200, Some(1), true)
        );
    }

    #[test]
    fn quirks_of_the_format_conform() {
        check(r#"{"sequence":1,"response_status_code":404}"#).unwrap();
        check(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","TransferEncoding":["chunked"],"Trailer":{"X":["y"]}}}"#).unwrap();
        check(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","TransferEncoding":"chunked","Trailer":"X","Header":null}}"#).unwrap();
        check(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","NewField":[1]},"extra":true}"#)
            .unwrap();
        check(r#"{"sequence":0,"response_status_code":"599","response_body":null}"#).unwrap();
    }

    #[test]
    fn each_fault_names_its_field() {
        assert_eq!(
            problem(r#"{"request":{"Method":"GET","RequestURI":"/"}}"#),
            "sequence: missing"
        );
        assert!(
            problem(r#"{"sequence":-1,"response_status_code":200}"#).starts_with("sequence: invalid value")
        );
        assert!(
            problem(r#"{"sequence":1.5,"response_status_code":200}"#).starts_with("sequence: invalid type")
        );
        assert_eq!(
            problem(r#"{"sequence":1,"request":{"RequestURI":"/"}}"#),
            "request.Method: missing"
        );
        assert!(
            problem(r#"{"sequence":1,"request":{"Method":7,"RequestURI":"/"}}"#)
                .starts_with("request.Method: invalid type")
        );
        assert!(
            problem(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"A":"b"}}}"#)
                .starts_with("request.Header")
        );
        assert!(
            problem(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Close":"no"}}"#)
                .starts_with("request.Close")
        );
        assert!(problem(r#"{"sequence":1,"response_status_code":"20x"}"#)
            .starts_with("response_status_code: invalid value"));
        assert!(problem(r#"{"sequence":1,"response_status_code":700}"#).starts_with("response_status_code"));
        assert!(
            problem(r#"{"sequence":1,"response_status_code":200,"response_headers":[]}"#)
                .starts_with("response_headers")
        );
        assert!(problem(r#"{"sequence":1}"#).contains("neither"));
        assert!(problem(
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/"},"response_status_code":200}"#
        )
        .contains("both"));
        assert!(
            problem(r#"{"sequence":1,"sequence":2,"response_status_code":200}"#).contains("duplicate field")
        );
    }

    #[test]
    fn unknown_names_are_never_the_records_fault() {
        // A lone surrogate escape in a name no Rust string can hold: still just an unknown name.
        for json in [
            r#"{"sequence":1,"\uDFAA":1,"request":{"Method":"GET","RequestURI":"/"}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","\uD800":[1]}}"#,
            r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","Header":{"\uDFAA":["x"]}}}"#,
            r#"{"sequence":1,"response_status_code":200,"response_body":{"\uDFAA":1}}"#,
        ] {
            check(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        }
    }

    #[test]
    fn a_lone_surrogate_in_a_documented_string_is_named_exactly() {
        assert_eq!(
            problem(r#"{"sequence":1,"request":{"Method":"\uDFAA","RequestURI":"/"}}"#),
            r"request.Method: lone trailing surrogate \uDFAA in a string: the second half of a pair with no first half"
        );
        assert_eq!(
            problem(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"\uD800"}}"#),
            r"request.RequestURI: lone leading surrogate \uD800 in a string: the first half of a pair with no second half"
        );
        assert_eq!(
            problem("{\n  \"sequence\": 1,\n  \"request\": {\"Method\": \"x\\uD800\\u0041\", \"RequestURI\": \"/\"}\n}"),
            r"request.Method: lone leading surrogate \uD800 in a string: followed by \u0041, not by the second half of a pair"
        );
        // A proper pair is fine.
        check(r#"{"sequence":1,"request":{"Method":"\uD83D\uDE00","RequestURI":"/"}}"#).unwrap();
    }

    #[test]
    fn a_raw_control_character_in_a_member_name_is_not_json() {
        for json in [
            "{\"sequence\":1,\"request\":{\"Method\":\"GET\",\"RequestURI\":\"/\",\"C\u{1}nse\":false}}",
            "{\n \"sequence\": 1,\n \"a\tb\": 1,\n \"response_status_code\": 200\n}",
        ] {
            assert!(
                problem(json).starts_with("not JSON: control character"),
                "{json:?}: {}",
                problem(json)
            );
        }
        // Escaped, the same names are just unknown names.
        check(r#"{"sequence":1,"request":{"Method":"GET","RequestURI":"/","C\u0001nse":false}}"#).unwrap();
        check("{\n \"sequence\": 1,\n \"\\uDFAA\": 1,\n \"response_status_code\": 200\n}").unwrap();
    }
}
