//! Minification of valid JSON: parse of the output equals parse of the input, the output has no
//! whitespace outside strings, and minifying again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ml_api_logger::json::minify::minify;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let out = minify(data);
    let output: serde_json::Value = serde_json::from_slice(&out).expect("minified JSON parses");
    assert_eq!(input, output);
    assert_eq!(minify(&out), out, "minify is idempotent");
});
