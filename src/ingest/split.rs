//! Splitting a request body into records: one JSON object, a JSON array of objects, or several
//! objects one after another (NDJSON, or the concatenated pretty-printed JSON that the vendor's
//! Go program wrote).
//!
//! It parses for structure only and hands back each record's raw text; the record module judges
//! what a record says, the minifier how it is written.

use serde_json::value::RawValue;

/// How the body held its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One JSON object.
    Single,
    /// A JSON array of objects.
    Array,
    /// Several JSON objects in a row (NDJSON or concatenated).
    Stream,
}

/// Why a body holds no usable records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// Nothing but whitespace.
    #[error("empty body")]
    Empty,
    /// `[]`.
    #[error("empty array: no records")]
    NoRecords,
    /// Not JSON at all, or broken part way.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// A JSON value that is not an object where a record belongs.
    #[error("{where_}: {found} is not a JSON object; each record must be one")]
    NotObject { where_: String, found: &'static str },
}

/// The records of a body, each as its raw JSON text.
#[derive(Debug)]
pub struct Split<'a> {
    /// How they were held.
    pub shape: Shape,
    /// Each record's text, as received (whitespace and all).
    pub records: Vec<&'a RawValue>,
}

/// Splits `body` into records.
pub fn split(body: &[u8]) -> Result<Split<'_>, SplitError> {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let Some(first) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(SplitError::Empty);
    };
    if body[first] == b'[' {
        let records: Vec<&RawValue> =
            serde_json::from_slice(body).map_err(|e| SplitError::NotJson(e.to_string()))?;
        if records.is_empty() {
            return Err(SplitError::NoRecords);
        }
        for (i, r) in records.iter().enumerate() {
            check_object(r, || format!("array element {}", i + 1))?;
        }
        return Ok(Split {
            shape: Shape::Array,
            records,
        });
    }
    let mut records = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>() {
        let r = item.map_err(|e| SplitError::NotJson(e.to_string()))?;
        check_object(r, || {
            if records.is_empty() {
                "the body".to_string()
            } else {
                format!("record {}", records.len() + 1)
            }
        })?;
        records.push(r);
    }
    let shape = if records.len() == 1 {
        Shape::Single
    } else {
        Shape::Stream
    };
    Ok(Split { shape, records })
}

fn check_object(r: &RawValue, where_: impl FnOnce() -> String) -> Result<(), SplitError> {
    match value_kind(r.get().as_bytes()) {
        "an object" => Ok(()),
        found => Err(SplitError::NotObject {
            where_: where_(),
            found,
        }),
    }
}

/// What kind of JSON value a valid JSON text is, for messages: "an object", "an array", …
pub fn value_kind(json: &[u8]) -> &'static str {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Result<(Shape, Vec<String>), SplitError> {
        split(body.as_bytes()).map(|s| (s.shape, s.records.iter().map(|r| r.get().to_string()).collect()))
    }

    #[test]
    fn every_shape() {
        assert_eq!(
            texts(" {\"a\": 1}\n").unwrap(),
            (Shape::Single, vec!["{\"a\": 1}".to_string()])
        );
        assert_eq!(texts("[{\"a\":1}, {\"b\":2}]").unwrap().1.len(), 2);
        assert_eq!(texts("[{\"a\":1}, {\"b\":2}]").unwrap().0, Shape::Array);
        let (shape, recs) = texts("{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n").unwrap();
        assert_eq!((shape, recs.len()), (Shape::Stream, 3));
        let (shape, recs) = texts("{\n  \"a\": 1\n}\n{\n  \"b\": 2\n}").unwrap();
        assert_eq!((shape, recs.len()), (Shape::Stream, 2));
    }

    #[test]
    fn refusals() {
        assert_eq!(texts("").unwrap_err(), SplitError::Empty);
        assert_eq!(texts(" \n").unwrap_err(), SplitError::Empty);
        assert_eq!(texts("[]").unwrap_err(), SplitError::NoRecords);
        assert!(matches!(texts("{\"a\":").unwrap_err(), SplitError::NotJson(_)));
        assert!(matches!(texts("hello").unwrap_err(), SplitError::NotJson(_)));
        assert!(matches!(texts("[{}] x").unwrap_err(), SplitError::NotJson(_)));
        assert_eq!(
            texts("42").unwrap_err().to_string(),
            "the body: a number is not a JSON object; each record must be one"
        );
        assert!(texts("[{}, 3]")
            .unwrap_err()
            .to_string()
            .starts_with("array element 2: a number"));
        assert!(texts("{}\n[1]")
            .unwrap_err()
            .to_string()
            .starts_with("record 2: an array"));
        assert!(matches!(
            split(b"{\"a\":\"\xff\"}").unwrap_err(),
            SplitError::NotJson(_)
        ));
    }
}
