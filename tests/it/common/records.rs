//! Records as a sensor sends them, built by sequence: `request(7)` and `response(7)`, with the
//! parts a test cares about set on top. `to_string()` (or `{}`) gives the record compact, on one
//! line, exactly as the daemon writes it; [`Record::pretty`] gives it indented, as the vendor's Go
//! program logged it. Members keep the sensor's order: `sequence` first, then the request or the
//! status, then the body.

use std::fmt;

use bytes::Bytes;
use serde_json::Value;

/// A request record, `GET /api/v1/x`, for `sequence`.
pub fn request(sequence: u64) -> Record {
    Record {
        sequence,
        kind: Kind::Request {
            method: "GET".into(),
            uri: "/api/v1/x".into(),
        },
        body: None,
    }
}

/// A response record, status `200` (a number), for `sequence`.
pub fn response(sequence: u64) -> Record {
    Record {
        sequence,
        kind: Kind::Response { status: 200.into() },
        body: None,
    }
}

/// A request or response record; see the module's comment.
#[derive(Clone, Debug)]
pub struct Record {
    sequence: u64,
    kind: Kind,
    /// `request_body` or `response_body`, when set.
    body: Option<Value>,
}

#[derive(Clone, Debug)]
enum Kind {
    Request {
        method: String,
        uri: String,
    },
    /// A number or a string: the record format allows both.
    Response {
        status: Value,
    },
}

impl Record {
    /// The request's `Method`.
    pub fn method(mut self, method: &str) -> Record {
        if let Kind::Request { method: m, .. } = &mut self.kind {
            *m = method.into();
        }
        self
    }

    /// The request's `RequestURI`.
    pub fn uri(mut self, uri: &str) -> Record {
        if let Kind::Request { uri: u, .. } = &mut self.kind {
            *u = uri.into();
        }
        self
    }

    /// The response's `response_status_code`: `404`, or `"200"` as a string.
    pub fn status(mut self, status: impl Into<Value>) -> Record {
        if let Kind::Response { status: s } = &mut self.kind {
            *s = status.into();
        }
        self
    }

    /// The `request_body` or `response_body`.
    pub fn body(mut self, body: Value) -> Record {
        self.body = Some(body);
        self
    }

    /// A body of `{"note": note}`: two records of one kind and sequence with other notes differ.
    pub fn note(self, note: &str) -> Record {
        self.body(serde_json::json!({ "note": note }))
    }

    /// The record indented, two spaces a level, `": "` after each name.
    pub fn pretty(&self) -> String {
        indent(&self.to_string())
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = |v: &Value| serde_json::to_string(v).unwrap();
        write!(f, r#"{{"sequence":{}"#, self.sequence)?;
        let body = match &self.kind {
            Kind::Request { method, uri } => {
                let (method, uri) = (json(&method.as_str().into()), json(&uri.as_str().into()));
                write!(f, r#","request":{{"Method":{method},"RequestURI":{uri}}}"#)?;
                "request_body"
            }
            Kind::Response { status } => {
                write!(f, r#","response_status_code":{}"#, json(status))?;
                "response_body"
            }
        };
        if let Some(b) = &self.body {
            write!(f, r#","{body}":{}"#, json(b))?;
        }
        f.write_str("}")
    }
}

/// For `Client::post(record)`.
impl From<Record> for Bytes {
    fn from(r: Record) -> Bytes {
        r.to_string().into()
    }
}

/// Compact JSON text indented, its members kept in order (serde_json's pretty printer would sort
/// them).
fn indent(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = compact.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' if matches!(chars.peek(), Some('}' | ']')) => {
                out.push(c);
                out.push(chars.next().unwrap());
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth -= 1;
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn compact_and_pretty_are_the_same_record() {
    let r = request(7)
        .method("POST")
        .uri("/a\"b")
        .body(serde_json::json!({"x": [], "y": {"z": "a,b:{c}"}}));
    assert_eq!(
        r.to_string(),
        r#"{"sequence":7,"request":{"Method":"POST","RequestURI":"/a\"b"},"request_body":{"x":[],"y":{"z":"a,b:{c}"}}}"#
    );
    let pretty = r.pretty();
    assert!(pretty.starts_with("{\n  \"sequence\": 7,\n  \"request\": {\n    \"Method\": \"POST\","));
    assert_eq!(pretty.replace(['\n', ' '], ""), r.to_string().replace(' ', ""));
    let v: Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(v, serde_json::from_str::<Value>(&r.to_string()).unwrap());
    assert_eq!(
        response(3).status("200").note("n").to_string(),
        r#"{"sequence":3,"response_status_code":"200","response_body":{"note":"n"}}"#
    );
}
