//! Any bytes as a certificate file, with the key in it or in a second file: an error that says
//! why, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.len() / 2;
    let (a, b) = data.split_at(split);
    let _ = ml_api_logger::net::tls::from_pem(data, None, Path::new("cert.pem"));
    let _ = ml_api_logger::net::tls::from_pem(a, Some((b, Path::new("key.pem"))), Path::new("cert.pem"));
});
