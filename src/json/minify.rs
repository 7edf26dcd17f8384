//! Minification: a JSON text with its insignificant whitespace removed and nothing else changed.
//!
//! Members keep their order, numbers and strings keep their exact spelling (escapes included),
//! unknown fields stay: the output is the record as the sensor sent it, on one line. The input
//! must already be valid JSON (the batch splitter has parsed it); this pass only drops bytes.
//!
//! Why by hand: serde_json re-serializes (numbers and escapes would be spelled its way, and
//! `arbitrary_precision`/`preserve_order` would cost an allocation per value), and no crate
//! minifies in place without a parse. Word-at-a-time scanning ([`crate::json::scan`]) brought it
//! to ~2,600 instructions for the 512-byte sample record (callgrind, bench/RESULTS.md).

use crate::json::scan::{below, eq, find};

/// Appends `json` without insignificant whitespace to `out`.
///
/// It looks at eight bytes at a time for the only bytes that matter: outside strings a quote or
/// whitespace (in valid JSON, the only bytes below `!` there), inside strings a quote or a
/// backslash. Runs of kept bytes are copied at once. Any input is safe; only valid JSON is
/// meaningful.
pub(crate) fn minify_into(json: &[u8], out: &mut Vec<u8>) {
    out.reserve(json.len());
    let n = json.len();
    // Where the current run of kept bytes began.
    let mut start = 0;
    let mut i = 0;
    while i < n {
        i = find(
            json,
            i,
            |x| eq(x, b'"') | below(x, b'!'),
            |b| b == b'"' || b < b'!',
        );
        if i >= n {
            break;
        }
        if json[i] == b'"' {
            i += 1;
            while i < n {
                i = find(
                    json,
                    i,
                    |x| eq(x, b'"') | eq(x, b'\\'),
                    |b| b == b'"' || b == b'\\',
                );
                if i >= n {
                    break;
                }
                if json[i] == b'\\' {
                    // The escaped byte, whatever it is, belongs to the string.
                    i += 2;
                } else {
                    i += 1;
                    break;
                }
            }
        } else {
            out.extend_from_slice(&json[start..i]);
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&json[start.min(n)..]);
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

    mod properties {
        use super::super::minify;
        use proptest::prelude::*;

        /// A JSON value kept as the exact text of its tokens, so spelling and order are visible.
        #[derive(Debug, Clone)]
        enum Tree {
            Atom(String),
            Array(Vec<Tree>),
            Object(Vec<(String, Tree)>),
        }

        fn number() -> impl Strategy<Value = String> {
            (
                any::<bool>(),
                prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,12}"],
                proptest::option::of("[0-9]{1,6}"),
                proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,2}")),
            )
                .prop_map(|(neg, int, frac, exp)| {
                    let mut n = String::new();
                    if neg {
                        n.push('-');
                    }
                    n.push_str(&int);
                    if let Some(f) = frac {
                        n.push('.');
                        n.push_str(&f);
                    }
                    if let Some((e, sign, digits)) = exp {
                        n.push_str(&e);
                        n.push_str(&sign);
                        n.push_str(&digits);
                    }
                    n
                })
        }

        fn string() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                "[a-z ]{1,5}",
                Just("\\\"".to_string()),
                Just("\\\\".to_string()),
                Just("\\u00e9".to_string()),
                Just("\\n\\t".to_string()),
                Just("é \u{1F600}".to_string()),
                Just("  ".to_string()),
            ];
            proptest::collection::vec(piece, 0..5).prop_map(|p| format!("\"{}\"", p.concat()))
        }

        fn tree() -> impl Strategy<Value = Tree> {
            let leaf = prop_oneof![
                number().prop_map(Tree::Atom),
                string().prop_map(Tree::Atom),
                Just(Tree::Atom("true".into())),
                Just(Tree::Atom("null".into())),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Tree::Array),
                    proptest::collection::vec((string(), inner), 0..6).prop_map(Tree::Object),
                ]
            })
        }

        /// Renders `t`, putting `ws` (cycled) between every pair of tokens.
        fn gap(ws: &[&str], i: &mut usize, out: &mut String) {
            if !ws.is_empty() {
                out.push_str(ws[*i % ws.len()]);
                *i += 1;
            }
        }

        fn render(t: &Tree, ws: &[&str], i: &mut usize, out: &mut String) {
            match t {
                Tree::Atom(a) => out.push_str(a),
                Tree::Array(items) => {
                    out.push('[');
                    for (n, item) in items.iter().enumerate() {
                        gap(ws, i, out);
                        if n > 0 {
                            out.push(',');
                            gap(ws, i, out);
                        }
                        render(item, ws, i, out);
                    }
                    gap(ws, i, out);
                    out.push(']');
                }
                Tree::Object(members) => {
                    out.push('{');
                    for (n, (k, v)) in members.iter().enumerate() {
                        gap(ws, i, out);
                        if n > 0 {
                            out.push(',');
                            gap(ws, i, out);
                        }
                        out.push_str(k);
                        gap(ws, i, out);
                        out.push(':');
                        gap(ws, i, out);
                        render(v, ws, i, out);
                    }
                    gap(ws, i, out);
                    out.push('}');
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn minify_removes_exactly_the_insignificant_whitespace(
                t in tree(),
                ws in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("\n"), Just("\t"), Just("\r\n  ")], 1..8),
            ) {
                let mut pretty = String::new();
                render(&t, &ws, &mut 0, &mut pretty);
                let mut compact = String::new();
                render(&t, &[], &mut 0, &mut compact);
                let out = minify(pretty.as_bytes());
                // Member order and every spelling kept: the output is the tokens, verbatim.
                prop_assert_eq!(std::str::from_utf8(&out).unwrap(), compact.as_str());
                let a: serde_json::Value = serde_json::from_str(&pretty).unwrap();
                let b: serde_json::Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(a, b);
            }

            /// The word-at-a-time scan agrees with the plain byte-by-byte one on any text made of
            /// the bytes that matter (quotes, backslashes, whitespace) among others, at every
            /// alignment, valid JSON or not.
            #[test]
            fn the_fast_scan_equals_the_byte_by_byte_one(
                text in proptest::collection::vec(
                    prop_oneof![
                        Just(b'"'), Just(b'\\'), Just(b' '), Just(b'\n'), Just(b'\t'), Just(b'\r'),
                        Just(b'{'), Just(b':'), Just(b'a'), Just(b'1'), Just(0xc3u8), Just(0xa9u8),
                    ],
                    0..80,
                ),
            ) {
                prop_assert_eq!(minify(&text), byte_by_byte(&text));
            }
        }

        /// The first minifier, one byte at a time: the reference for the fast one.
        fn byte_by_byte(json: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let (mut in_string, mut escaped) = (false, false);
            for &b in json {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else if b == b'"' {
                    in_string = true;
                } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    continue;
                }
                out.push(b);
            }
            out
        }
    }
}
