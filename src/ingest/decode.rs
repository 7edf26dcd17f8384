//! Content-Encoding: `gzip` and `deflate` bodies decoded under the body limit.
//!
//! The limit counts decoded bytes, so a small compressed body cannot expand past it (a
//! decompression bomb stops at `limit + 1` bytes). Any other coding is refused before the body
//! is read.

use std::io::Read;

/// A content coding the daemon can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952.
    Gzip,
    /// RFC 1950 zlib, or raw RFC 1951 deflate as some clients send.
    Deflate,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A coding other than gzip, deflate or identity.
    #[error("unsupported Content-Encoding {0:?}; use gzip, deflate or none")]
    Unsupported(String),
    /// Decoded, the body is larger than the limit.
    #[error("body exceeds the {limit}-byte limit after decompression")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The daemon's memory budget for bodies is spent; retry later.
    #[error("server busy: too many large bodies being decoded")]
    Busy,
    /// The compressed data is corrupt.
    #[error("cannot decode {coding} body: {reason}")]
    Corrupt {
        /// `gzip` or `deflate`.
        coding: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Parses a `Content-Encoding` value into the codings to undo, in the order they were applied.
pub(crate) fn parse_codings(header: Option<&str>) -> Result<Vec<Coding>, DecodeError> {
    let Some(header) = header else {
        return Ok(Vec::new());
    };
    let mut codings = Vec::new();
    for token in header.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match token.to_ascii_lowercase().as_str() {
            "identity" => {}
            "gzip" | "x-gzip" => codings.push(Coding::Gzip),
            "deflate" => codings.push(Coding::Deflate),
            _ => return Err(DecodeError::Unsupported(token.to_string())),
        }
    }
    if codings.len() > 2 {
        return Err(DecodeError::Unsupported(header.to_string()));
    }
    Ok(codings)
}

/// Undoes `codings` (last applied first), never producing more than `limit` bytes. `grow(n)`
/// is asked before every `n` more decoded bytes are kept; `false` stops with [`DecodeError::Busy`].
pub fn decode(
    body: Vec<u8>,
    codings: &[Coding],
    limit: usize,
    grow: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, DecodeError> {
    let mut data = body;
    for coding in codings.iter().rev() {
        data = match coding {
            Coding::Gzip => read_limited(flate2::read::MultiGzDecoder::new(&data[..]), limit, "gzip", grow)?,
            Coding::Deflate => {
                // zlib is what RFC 9110 means by deflate; a raw stream has no zlib header.
                let zlib_header = data.len() >= 2
                    && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
                    && data[0] & 0x0f == 8;
                if zlib_header {
                    read_limited(flate2::read::ZlibDecoder::new(&data[..]), limit, "deflate", grow)?
                } else {
                    read_limited(
                        flate2::read::DeflateDecoder::new(&data[..]),
                        limit,
                        "deflate",
                        grow,
                    )?
                }
            }
        };
    }
    if data.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(data)
}

fn read_limited(
    mut reader: impl Read,
    limit: usize,
    coding: &'static str,
    grow: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    coding,
                    reason: e.to_string(),
                })
            }
        };
        if out.len() + n > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if !grow(n) {
            return Err(DecodeError::Busy);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_each_coding() {
        let text = b"{\"sequence\":1}".repeat(100);
        assert_eq!(
            decode(gzip(&text), &[Coding::Gzip], 1 << 20, &mut |_| true).unwrap(),
            text
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(
            decode(z.finish().unwrap(), &[Coding::Deflate], 1 << 20, &mut |_| true).unwrap(),
            text
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(&text).unwrap();
        assert_eq!(
            decode(d.finish().unwrap(), &[Coding::Deflate], 1 << 20, &mut |_| true).unwrap(),
            text
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert_eq!(
            decode(bomb, &[Coding::Gzip], 1 << 20, &mut |_| true).unwrap_err(),
            DecodeError::TooLarge { limit: 1 << 20 }
        );
    }

    #[test]
    fn header_parsing_and_refusals() {
        assert_eq!(parse_codings(None).unwrap(), vec![]);
        assert_eq!(parse_codings(Some("GZIP")).unwrap(), vec![Coding::Gzip]);
        assert_eq!(parse_codings(Some("identity")).unwrap(), vec![]);
        assert_eq!(
            parse_codings(Some("br")).unwrap_err(),
            DecodeError::Unsupported("br".into())
        );
        assert!(matches!(
            decode(b"not gzip".to_vec(), &[Coding::Gzip], 100, &mut |_| true).unwrap_err(),
            DecodeError::Corrupt { .. }
        ));
    }
}
