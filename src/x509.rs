//! Just enough X.509 to describe a certificate to an operator: subject and validity.
//!
//! A small DER walk over the fields the daemon reports (start line, expiry warnings). It does
//! not verify anything; rustls does that. Malformed input gives `None`, never a panic.

use crate::timefmt::unix_from_civil;

/// What the daemon says about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject as `CN=…,O=…`, in the certificate's order.
    pub subject: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// Reads subject and validity from a DER certificate.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (cert, _) = Tlv::read(der, 0x30)?;
    let (tbs, _) = Tlv::read(cert, 0x30)?;
    let mut rest = tbs;
    // Optional [0] version.
    if rest.first() == Some(&0xa0) {
        rest = Tlv::read(rest, 0xa0)?.1;
    }
    rest = Tlv::read(rest, 0x02)?.1; // serialNumber
    rest = Tlv::read(rest, 0x30)?.1; // signature algorithm
    rest = Tlv::read(rest, 0x30)?.1; // issuer
    let (validity, rest) = Tlv::read(rest, 0x30)?;
    let (subject, _) = Tlv::read(rest, 0x30)?;
    let (not_before, after) = read_time(validity)?;
    let (not_after, _) = read_time(after)?;
    Some(CertSummary {
        subject: format_name(subject)?,
        not_before,
        not_after,
    })
}

/// Formats a DER Name (the contents of its SEQUENCE) as `CN=…,O=…`.
pub fn format_name(mut name: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (set, rest) = Tlv::read(name, 0x31)?;
        name = rest;
        let mut set = set;
        while !set.is_empty() {
            let (atv, rest) = Tlv::read(set, 0x30)?;
            set = rest;
            let (oid, value) = Tlv::read(atv, 0x06)?;
            let (tag, text, _) = Tlv::read_any(value)?;
            let text = match tag {
                // UTF8String, PrintableString, IA5String, T61String
                0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8_lossy(text).into_owned(),
                // BMPString: UTF-16BE
                0x1e => {
                    let units: Vec<u16> = text
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => "?".to_string(),
            };
            parts.push(format!("{}={}", attribute_name(oid), escape_rdn(&text)));
        }
    }
    Some(parts.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        [0x55, 0x04, 0x05] => "serialNumber".into(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".into(),
        other => {
            let hex: Vec<String> = other.iter().map(|b| format!("{b:02x}")).collect();
            format!("OID.{}", hex.join(""))
        }
    }
}

fn escape_rdn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads a UTCTime or GeneralizedTime; returns Unix seconds and what follows.
fn read_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, text, rest) = Tlv::read_any(input)?;
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_suffix('Z')?;
    // Digits only: slicing below is by byte, and a multi-byte character would split.
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    let (year, tail) = match tag {
        0x17 if text.len() == 12 => {
            let yy = i64::from(num(&text[0..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (i64::from(num(&text[0..4])?), &text[4..]),
        _ => return None,
    };
    let field = |i: usize| num(tail.get(i..i + 2)?);
    let secs = unix_from_civil(year, field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some((secs, rest))
}

/// A DER tag-length-value reader.
struct Tlv;

impl Tlv {
    /// Reads one element with the expected tag; returns its contents and what follows.
    fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, body, rest) = Self::read_any(input)?;
        (t == tag).then_some((body, rest))
    }

    /// Reads one element of any (single-byte) tag.
    fn read_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *input.first()?;
        let first = *input.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | usize::from(*input.get(2 + i)?);
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let body = input.get(header..end)?;
        Some((tag, body, &input[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sensor-1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params.not_before = rcgen::date_time_ymd(2024, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        let s = summarize(cert.der()).unwrap();
        assert_eq!(s.subject, "CN=sensor-1,O=Example\\, Inc");
        assert_eq!(crate::timefmt::rfc3339_secs(s.not_before), "2024-01-02T00:00:00Z");
        assert_eq!(crate::timefmt::rfc3339_secs(s.not_after), "2051-03-04T00:00:00Z");
    }

    #[test]
    fn a_time_with_a_multibyte_character_is_none_not_a_panic() {
        let mut der = vec![0x17, 13];
        der.extend_from_slice("1\u{e9}010100000Z".as_bytes());
        assert_eq!(der.len(), 15);
        assert_eq!(read_time(&der), None);
        let mut ok = vec![0x17, 13];
        ok.extend_from_slice(b"240102000000Z");
        assert_eq!(
            read_time(&ok).map(|(t, _)| crate::timefmt::rfc3339_secs(t)),
            Some("2024-01-02T00:00:00Z".into())
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(summarize(&[0x30, 0x03, 0x30, 0x01]), None);
    }
}
