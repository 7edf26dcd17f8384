//! Minification: a JSON text with its insignificant whitespace removed and nothing else changed.
//!
//! Members keep their order, numbers and strings keep their exact spelling (escapes included),
//! unknown fields stay: the output is the record as the sensor sent it, on one line. The input
//! must already be valid JSON (the batch splitter has parsed it); this pass only drops bytes.

/// Appends `json` without insignificant whitespace to `out`.
pub fn minify_into(json: &[u8], out: &mut Vec<u8>) {
    out.reserve(json.len());
    let mut in_string = false;
    let mut escaped = false;
    // Copy runs of kept bytes at once; `start` is where the current run began.
    let mut start = 0;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.extend_from_slice(&json[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend_from_slice(&json[start..]);
}

/// `json` without insignificant whitespace.
pub fn minify(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    minify_into(json, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_insignificant_whitespace() {
        let input = b" {\n  \"a b\" : [ 1.50 , -0 , 1e3 ],\r\n\t\"c\\\" d\": \"x \\\\\" , \"e\":{ } }\n";
        let out = minify(input);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"a b":[1.50,-0,1e3],"c\" d":"x \\","e":{}}"#
        );
        let a: serde_json::Value = serde_json::from_slice(input).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn keeps_unicode_and_escapes_verbatim() {
        let input = "{ \"k\" : \"caf\u{e9} \\u00e9 \\n\" }".as_bytes();
        assert_eq!(minify(input), "{\"k\":\"caf\u{e9} \\u00e9 \\n\"}".as_bytes());
    }
}
