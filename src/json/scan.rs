//! Finding the bytes that matter in JSON text eight at a time (SWAR: a `u64` as eight lanes).
//!
//! The minifier and the quick record check both skip long runs of ordinary bytes — string
//! contents, mostly — looking only for quotes, backslashes, whitespace or control characters.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` equal to `b`; exact up to the first such byte.
pub fn eq(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGHS
}

/// High bit set in each byte of `x` below `b` (`b` at most 128); exact up to the first one.
pub fn below(x: u64, b: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(b)) & !x & HIGHS
}

/// The index of the first byte at or after `i` that `wanted` says matters (`in_word` says the
/// same for eight bytes at once, little-endian), or `json.len()`.
pub fn find(json: &[u8], mut i: usize, in_word: impl Fn(u64) -> u64, wanted: impl Fn(u8) -> bool) -> usize {
    while let Some(chunk) = json.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = in_word(u64::from_le_bytes(word));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < json.len() && !wanted(json[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Word at a time or byte at a time, from any start: the same first match.
        #[test]
        fn find_stops_where_a_byte_by_byte_search_does(
            text in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b' '), Just(0x1f_u8), 0x20u8..=0xff],
                0..64,
            ),
            start in 0usize..64,
        ) {
            let start = start.min(text.len());
            let wanted = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
            let found = find(&text, start, |x| eq(x, b'"') | eq(x, b'\\') | below(x, 0x20), wanted);
            let expected = (start..text.len()).find(|&i| wanted(text[i])).unwrap_or(text.len());
            prop_assert_eq!(found, expected);
        }
    }
}
