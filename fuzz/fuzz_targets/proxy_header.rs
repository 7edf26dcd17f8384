//! The PROXY protocol header parser (v1 and v2) on any bytes: it never panics, a decision once
//! made never changes as bytes are added, and it never asks to read past a header
//! (`net::proxy::fuzz_parse` checks each invariant).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ml_api_logger::net::proxy::fuzz_parse(data));
