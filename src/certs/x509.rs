//! A certificate described for an operator: subject and validity, and the subject's text as
//! the daemon writes it (`CN=sensor-1,O=Example`, in the certificate's order).
//!
//! Parsing is `x509-parser`'s; it verifies nothing (rustls does that). Malformed input gives
//! `None`, never a panic.

use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

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

/// Reads subject and validity from a DER certificate; `None` when it is not one (or has
/// anything after it).
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let validity = cert.validity();
    Some(CertSummary {
        subject: format_name(cert.subject()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// Formats a Name as `CN=…,O=…`: the short names operators know (`OID.2.5.4.99` for others),
/// values escaped as RFC 4514 asks.
pub fn format_name(name: &X509Name<'_>) -> String {
    let mut parts = Vec::new();
    for rdn in name.iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.5" => "serialNumber".to_string(),
                "1.2.840.113549.1.9.1" => "emailAddress".to_string(),
                _ => format!("OID.{oid}"),
            };
            let value = atv.as_str().unwrap_or("?");
            parts.push(format!("{key}={}", escape_rdn(value)));
        }
    }
    parts.join(",")
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
        assert_eq!(
            crate::observe::timefmt::rfc3339_secs(s.not_before),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            crate::observe::timefmt::rfc3339_secs(s.not_after),
            "2051-03-04T00:00:00Z"
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(summarize(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(summarize(b"not a certificate at all, but long enough"), None);
    }
}
