//! The rejects file (`--rejects`): every refused body kept as one NDJSON line with when, from
//! whom, the status and the reason, so an operator can audit and replay what was refused.
//!
//! Lines go through their own [`Output`] writer, with the same guarantees as the records. The
//! body is kept as a string when it is UTF-8, as `body_base64` when it is not.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::observe::timefmt::rfc3339_millis;
use crate::output::{Output, WriteError};

/// Where refused bodies go.
#[derive(Clone)]
pub struct Rejects {
    output: Output,
}

impl Rejects {
    /// Keeps refused bodies through `output`.
    pub fn new(output: Output) -> Rejects {
        Rejects { output }
    }

    /// The writer behind the rejects file (for reopening).
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Appends one refusal; returns once it is written.
    pub async fn keep(
        &self,
        peer: SocketAddr,
        status: u16,
        error: &str,
        body: &[u8],
        truncated: bool,
    ) -> Result<(), WriteError> {
        let line = line(SystemTime::now(), peer, status, error, body, truncated);
        self.output.write(line).await
    }
}

/// The NDJSON line for one refusal.
pub fn line(
    time: SystemTime,
    peer: SocketAddr,
    status: u16,
    error: &str,
    body: &[u8],
    truncated: bool,
) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("time".into(), rfc3339_millis(time).into());
    obj.insert("peer".into(), peer.to_string().into());
    obj.insert("status".into(), status.into());
    obj.insert("error".into(), error.into());
    match std::str::from_utf8(body) {
        Ok(text) => obj.insert("body".into(), text.into()),
        Err(_) => obj.insert("body_base64".into(), base64(body).into()),
    };
    if truncated {
        obj.insert("truncated".into(), true.into());
    }
    let mut line = serde_json::Value::Object(obj).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn lines_hold_text_or_base64() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_678_150_650_123);
        let l = line(t, peer, 400, "not valid JSON", b"nope\n", false);
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["time"], "2023-03-07T00:57:30.123Z");
        assert_eq!(
            (v["peer"].as_str(), v["status"].as_u64(), v["body"].as_str()),
            (Some("10.0.0.1:5000"), Some(400), Some("nope\n"))
        );
        assert!(l.ends_with(b"}\n") && l.iter().filter(|b| **b == b'\n').count() == 1);
        let l = line(t, peer, 413, "too large", &[0xff, 0x00, 0x41], true);
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(
            (v["body_base64"].as_str(), v["truncated"].as_bool()),
            (Some("/wBB"), Some(true))
        );
        assert!(v.get("body").is_none());
    }
}
