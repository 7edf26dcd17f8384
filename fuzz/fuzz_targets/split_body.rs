//! Any body, through the whole ingest path: split, check, minify, mark credentials, annotate.
//! Never a panic; every accepted body yields one whole JSON line per record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ml_api_logger::ingest::{prepare, Annotation, Treatment};
use ml_api_logger::redact::{default_names, RedactKey, Redactor};

fuzz_target!(|data: &[u8]| {
    let annotation = Annotation::new("2026-01-01T00:00:00.000Z", "10.0.0.1:1", Some("CN=x"));
    let redactor = Redactor::new(&RedactKey::from_bytes([5; 32]), &default_names());
    for strict in [false, true] {
        let how = Treatment {
            strict,
            annotation: Some(&annotation),
            redactor: Some(&redactor),
        };
        if let Ok(p) = prepare(data, how) {
            let text = std::str::from_utf8(&p.lines).expect("lines are UTF-8");
            let lines: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(lines.len(), p.records);
            for line in lines {
                // Syntax only: a number beyond f64 (1e9999) is valid JSON and kept verbatim.
                let v: Box<serde_json::value::RawValue> = serde_json::from_str(line).expect("each line is JSON");
                assert!(v.get().starts_with('{') && !line.contains('\n'));
            }
        }
    }
});
