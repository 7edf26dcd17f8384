//! Decompression of any bytes as gzip or deflate, alone or stacked: bounded output, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ml_api_logger::ingest::decode::{decode, Coding, DecodeError};

fuzz_target!(|data: &[u8]| {
    let limit = 1 << 16;
    for codings in [&[Coding::Gzip][..], &[Coding::Deflate], &[Coding::Gzip, Coding::Deflate]] {
        let mut grown = 0usize;
        let mut grow = |n: usize| {
            grown += n;
            grown <= limit
        };
        match decode(data.to_vec(), codings, limit, &mut grow) {
            Ok(out) => assert!(out.len() <= limit),
            Err(DecodeError::TooLarge { .. } | DecodeError::Corrupt { .. } | DecodeError::Busy) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
});
