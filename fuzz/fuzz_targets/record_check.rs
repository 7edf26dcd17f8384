//! Conformance of any JSON text: an answer, never a panic; and the quick check never accepts
//! what the full one refuses, nor finds another kind or sequence, nor calls a text compact
//! that minifying would change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ml_api_logger::json::minify;
use ml_api_logger::record::{self, fast_check};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let full = record::check(text);
        if let Some(q) = fast_check::check(text) {
            let r = full.expect("the quick check accepted what the full one refuses");
            assert_eq!((r.kind(), r.sequence()), (q.kind, q.sequence));
            if q.compact {
                assert_eq!(minify::minify(data), data);
            }
        }
    }
});
