//! `ml_api_logger cert`: the vendor page's six `openssl` commands in one step.
//!
//! Parses the operator's names, addresses and choices, has [`certgen`](crate::certs::generate) make and
//! write the files, and prints what it wrote and what to do on the sensor. The certificate
//! work itself (keys, signing, the files and their modes) lives in `certgen`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::certs::generate::{self, names, CertRequest, ExistingCa, KeyType};

/// `ml_api_logger cert` arguments.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// DNS name the sensor will use for this server (repeatable; the first is the common name and the sensor's `hostname`)
    #[arg(long = "host", value_name = "NAME", required_unless_present = "ips")]
    pub(crate) hosts: Vec<String>,
    /// IP address the sensor may use for this server (repeatable)
    #[arg(long = "ip", value_name = "ADDR", id = "ips")]
    pub(crate) ips: Vec<String>,
    /// Directory to write the five files into; created when missing
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub(crate) out: PathBuf,
    /// Validity of the certificates, in days from now
    #[arg(long, value_name = "N", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub(crate) days: u32,
    /// Key algorithm of the new keys
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = KeyType::EcdsaP256)]
    pub(crate) key_type: KeyType,
    /// Sign with this existing CA certificate (PEM) instead of making a new CA; needs --ca-key
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The existing CA's private key (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted); needs --ca-cert
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub(crate) ca_key: Option<PathBuf>,
    /// Port the logger listens on, for the sensor's `api_logging_target`
    #[arg(long, value_name = "PORT", default_value_t = 8443, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,
    /// Overwrite files that are already there
    #[arg(long)]
    pub(crate) force: bool,
}

/// Why `cert` stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertCmdError {
    /// A `--host` that no certificate can hold.
    #[error("--host {0:?}: not a DNS name (letters, digits, '-' and '.', optionally starting with \"*.\")")]
    BadHost(String),
    /// A `--ip` that is not an address.
    #[error("--ip {0:?}: not an IP address")]
    BadIp(String),
    /// Making, signing or writing failed.
    #[error(transparent)]
    Cert(#[from] generate::CertGenError),
}

impl CertCmdError {
    /// 2 for what the operator can fix in the command line, 1 for the machine.
    pub fn exit_code(&self) -> u8 {
        match self {
            CertCmdError::Cert(e) if !e.is_usage() => 1,
            _ => 2,
        }
    }
}

/// Runs `cert`; prints the outcome and returns the exit code.
pub fn run(args: &CertArgs) -> ExitCode {
    match make(args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Makes and writes the files; returns the text for the operator.
pub(crate) fn make(args: &CertArgs) -> Result<String, CertCmdError> {
    let mut hosts = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for h in &args.hosts {
        // An address given as --host goes where an address belongs.
        match h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) if is_dns_name(h) => hosts.push(h.to_ascii_lowercase()),
            Err(_) => return Err(CertCmdError::BadHost(h.clone())),
        }
    }
    for s in &args.ips {
        let ip = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| CertCmdError::BadIp(s.clone()))?;
        ips.push(ip);
    }
    dedup(&mut hosts);
    dedup(&mut ips);
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some(ExistingCa::load(cert, key)?),
        _ => None,
    };
    let req = CertRequest {
        hosts: hosts.clone(),
        ips: ips.clone(),
        days: args.days,
    };
    let generated = generate::generate_with(&req, args.key_type, ca.as_ref())?;
    let mut files = generated.files();
    // `--ca-cert certs/serverca.crt --out certs`: the CA file is already where it belongs.
    let ca_in_place = args
        .ca_cert
        .as_deref()
        .is_some_and(|c| same_file(c, &args.out.join(names::CA_CERT)));
    if ca_in_place {
        files.retain(|(n, _, _)| *n != names::CA_CERT);
    }
    let written = generate::write_set(&args.out, &files, args.force)?;

    let target = hosts
        .first()
        .cloned()
        .or_else(|| ips.first().map(|ip| ip.to_string()))
        .unwrap_or_default();
    let mut names_in_cert: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
    names_in_cert.extend(ips.iter().map(|ip| format!("IP:{ip}")));
    let dir = args.out.display();
    let mut out = format!("Wrote into {dir}/:\n");
    for path in &written {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let what = match name {
            names::CA_KEY => format!(
                "the new CA's private key, {} (mode 0600; keep it private, or delete it)",
                args.key_type.describe()
            ),
            names::CA_CERT if ca.is_some() => "a copy of the CA certificate given with --ca-cert".to_string(),
            names::CA_CERT => format!("the new CA's certificate, valid {} days", args.days),
            names::SERVER_KEY => format!(
                "the server's private key, {} (mode 0600)",
                args.key_type.describe()
            ),
            names::SERVER_CERT => format!(
                "the server certificate for {}, valid {} days",
                names_in_cert.join(", "),
                args.days
            ),
            names::BUNDLE => {
                "server key + server certificate + CA certificate, for the sensor (mode 0600)".to_string()
            }
            _ => String::new(),
        };
        out.push_str(&format!("  {name:<20}{what}\n"));
    }
    if let Some(ca) = &ca {
        out.push_str(&format!(
            "Signed by the CA {} ({}); its key stays where it is: no {} was written.\n",
            ca.subject,
            args.ca_cert
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            names::CA_KEY
        ));
    }
    let cert_path = args.out.join(names::SERVER_CERT);
    let key_path = args.out.join(names::SERVER_KEY);
    let bundle = args.out.join(names::BUNDLE);
    out.push_str(&format!(
        "\nServe with it:\n  LOGGER_CERT={} LOGGER_KEY={} LOGGER_PORT={} ml_api_logger >> extrahop-ade-log.json\n",
        cert_path.display(),
        key_path.display(),
        args.port
    ));
    let json = serde_json::json!({
        "api_logging_target": {
            "enabled": true,
            "hostname": target,
            "port": args.port,
        }
    });
    let json = serde_json::to_string_pretty(&json).unwrap_or_default();
    let json = json
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_matches('\n');
    out.push_str(&format!(
        "\nOn the sensor or console:\n  1. Upload {} as a trusted certificate. It holds the server's private key\n     too (the vendor's format): handle it as a secret, delete copies once uploaded.\n  2. Administration > Running Config > Edit config: in the \"hopcloud\" section, add\n",
        bundle.display()
    ));
    for line in json.lines() {
        out.push_str("   ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("     then save the running config.\n");
    Ok(out)
}

/// A DNS name a certificate can carry: labels of letters, digits and `-`, optionally `*.` first.
fn is_dns_name(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn dedup<T: PartialEq>(v: &mut Vec<T>) {
    let mut i = 0;
    while i < v.len() {
        if v[..i].contains(&v[i]) {
            v.remove(i);
        } else {
            i += 1;
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in [
            "logger1",
            "logger1.example.com",
            "*.example.com",
            "a-b.c",
            "x.example.com.",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "a b", "exa mple", "é.com", "*", "a.*.b"] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
