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
    pub sequence: u64,
    /// The request line and headers.
    pub request: RequestInfo<'a>,
    /// Whether `request_body` is present.
    pub has_body: bool,
}

/// `request`: Go's `http.Request`, as the sensor serializes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestInfo<'a> {
    /// `Method`, required.
    #[serde(rename = "Method", borrow)]
    pub method: Cow<'a, str>,
    /// `RequestURI`, required.
    #[serde(rename = "RequestURI", borrow)]
    pub request_uri: Cow<'a, str>,
    /// `Host`.
    #[serde(rename = "Host", borrow, default)]
    pub host: Option<Cow<'a, str>>,
    /// `RemoteAddr`.
    #[serde(rename = "RemoteAddr", borrow, default)]
    pub remote_addr: Option<Cow<'a, str>>,
    /// `TLSVersion`, e.g. `TLS1.2`.
    #[serde(rename = "TLSVersion", borrow, default)]
    pub tls_version: Option<Cow<'a, str>>,
    /// `Proto`, e.g. `HTTP/1.1`.
    #[serde(rename = "Proto", borrow, default)]
    pub proto: Option<Cow<'a, str>>,
    /// `ContentLength`; Go uses -1 for unknown.
    #[serde(rename = "ContentLength", default)]
    pub content_length: Option<i64>,
    /// `TransferEncoding`: null, a string, or a list of strings.
    #[serde(rename = "TransferEncoding", default)]
    pub transfer_encoding: Option<StringOrList>,
    /// `Header`: name → list of values (null for a nil map).
    #[serde(rename = "Header", default)]
    pub header: Option<HeaderMap>,
    /// `Close`.
    #[serde(rename = "Close", default)]
    pub close: Option<bool>,
    /// `Trailer`: null, a string, or a header map.
    #[serde(rename = "Trailer", default)]
    pub trailer: Option<Trailer>,
}

/// A response record.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseRecord {
    /// Correlates the response with its request.
    pub sequence: u64,
    /// `response_status_code`, from a number or a string holding one.
    pub status: u16,
    /// Number of header names in `response_headers`, when present.
    pub header_count: Option<usize>,
    /// Whether `response_body` is present.
    pub has_body: bool,
}

/// Why a record does not conform: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonconformity {
    /// Dotted path of the field, e.g. `request.Method`; empty for the record itself.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
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
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(borrow, default)]
    request: Option<RequestInfo<'a>>,
    #[serde(default, deserialize_with = "present")]
    request_body: bool,
    #[serde(default)]
    response_status_code: Option<StatusCode>,
    #[serde(default)]
    response_headers: Option<HeaderMap>,
    #[serde(default, deserialize_with = "present")]
    response_body: bool,
}

/// Checks one record's JSON text (a JSON object) against the format.
pub fn check(json: &str) -> Result<Record<'_>, Nonconformity> {
    let env: Envelope<'_> = match serde_json::from_str(json) {
        Ok(env) => env,
        // The slower path-tracking parse runs only to explain a failure.
        Err(_) => return Err(explain(json)),
    };
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

fn explain(json: &str) -> Nonconformity {
    let mut de = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, Envelope<'_>>(&mut de) {
        Ok(_) => Nonconformity {
            field: String::new(),
            reason: "not a valid record".into(),
        },
        Err(e) => {
            let field = e.path().to_string();
            let mut reason = e.into_inner().to_string();
            if let Some(at) = reason.rfind(" at line ") {
                reason.truncate(at);
            }
            Nonconformity {
                field: if field == "." { String::new() } else { field },
                reason,
            }
        }
    }
}

/// Deserializes any value and records only that it was there.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// `response_status_code`: an integer 100–599, or a string holding one (the page's example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u16);

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
pub struct HeaderMap {
    /// Number of header names.
    pub len: usize,
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
        while map.next_key::<AnyStr>()?.is_some() {
            map.next_value::<StringList>()?;
            len += 1;
        }
        Ok(HeaderMap { len })
    }
}

/// `TransferEncoding`: the page says a string, Go's type is `[]string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringOrList {
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
pub enum Trailer {
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
        assert!(problem(r#"{"sequence":1,"request":{"RequestURI":"/"}}"#).contains("missing field `Method`"));
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
}
