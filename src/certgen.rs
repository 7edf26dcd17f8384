//! Making certificates: a local CA and a server certificate signed by it, written as the five
//! files of the vendor's `openssl` workflow (`serverca.key`, `serverca.crt`, `server.key`,
//! `server.crt`, `trusted-server.pem`).
//!
//! Used by the daemon's embedded default (SPEC 4.2) and meant for the `cert` subcommand. It does
//! not load certificates for serving (`tls`).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    /// Key generation or signing failed.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A host name that cannot go in a certificate.
    #[error("{name:?} is not a usable host name")]
    BadHost { name: String },
    /// A file or directory could not be written.
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// A file is there and overwriting was not asked for.
    #[error("{} already exists; use --force to overwrite", path.display())]
    Exists { path: PathBuf },
    /// Half of a pair is there.
    #[error("{} exists but {} does not; remove it or set LOGGER_CERT and LOGGER_KEY", present.display(), missing.display())]
    Incomplete { present: PathBuf, missing: PathBuf },
}

/// What to put in the certificates.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// DNS names for the server certificate; the first is its common name.
    pub hosts: Vec<String>,
    /// IP addresses for the server certificate.
    pub ips: Vec<IpAddr>,
    /// Validity in days, from now.
    pub days: u32,
}

/// The PEM text of a CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct Generated {
    /// CA private key (PKCS#8).
    pub ca_key: String,
    /// CA certificate.
    pub ca_cert: String,
    /// Server private key (PKCS#8).
    pub server_key: String,
    /// Server certificate.
    pub server_cert: String,
}

impl Generated {
    /// `server.key`, `server.crt`, `serverca.crt` concatenated: the bundle the sensor takes.
    pub fn trusted_bundle(&self) -> String {
        format!("{}{}{}", self.server_key, self.server_cert, self.ca_cert)
    }
}

/// The file names inside a certificate directory.
pub mod names {
    /// CA key.
    pub const CA_KEY: &str = "serverca.key";
    /// CA certificate.
    pub const CA_CERT: &str = "serverca.crt";
    /// Server key.
    pub const SERVER_KEY: &str = "server.key";
    /// Server certificate.
    pub const SERVER_CERT: &str = "server.crt";
    /// Key, certificate and CA in one file, for the sensor.
    pub const BUNDLE: &str = "trusted-server.pem";
}

/// Makes a CA (ECDSA P-256) and a server certificate signed by it.
pub fn generate(req: &CertRequest) -> Result<Generated, CertGenError> {
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(req.days.max(1)));
    let common_name = req
        .hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".to_string());

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("ml_api_logger local CA for {common_name}"),
    );
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "ml_api_logger");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = until;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ml_api_logger");
    let mut sans = Vec::new();
    for host in &req.hosts {
        let name = host
            .clone()
            .try_into()
            .map_err(|_| CertGenError::BadHost { name: host.clone() })?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - time::Duration::hours(1);
    params.not_after = until;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Generated {
        ca_key: ca_key_pem,
        ca_cert: ca.pem(),
        server_key: key.serialize_pem(),
        server_cert: cert.pem(),
    })
}

/// Writes the five files into `dir` (created, mode 0700, when missing); keys are mode 0600.
pub fn write_files(dir: &Path, g: &Generated, overwrite: bool) -> Result<Vec<PathBuf>, CertGenError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertGenError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    let files = [
        (names::CA_KEY, g.ca_key.clone(), 0o600),
        (names::CA_CERT, g.ca_cert.clone(), 0o644),
        (names::SERVER_KEY, g.server_key.clone(), 0o600),
        (names::SERVER_CERT, g.server_cert.clone(), 0o644),
        (names::BUNDLE, g.trusted_bundle(), 0o600),
    ];
    if !overwrite {
        if let Some((name, _, _)) = files.iter().find(|(n, _, _)| dir.join(n).exists()) {
            return Err(CertGenError::Exists { path: dir.join(name) });
        }
    }
    let mut written = Vec::new();
    for (name, text, mode) in files {
        let path = dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|source| CertGenError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The certificate and key the embedded default serves, and whether they were just made.
#[derive(Debug, Clone)]
pub struct DefaultCert {
    /// `DIR/server.crt`.
    pub cert: PathBuf,
    /// `DIR/server.key`.
    pub key: PathBuf,
    /// `DIR/trusted-server.pem`, the bundle to upload to the sensor.
    pub bundle: PathBuf,
    /// True when this call created them.
    pub created: bool,
}

/// Uses `server.crt` and `server.key` in `dir`, creating the whole set first when neither exists.
pub fn ensure_default(dir: &Path) -> Result<DefaultCert, CertGenError> {
    let cert = dir.join(names::SERVER_CERT);
    let key = dir.join(names::SERVER_KEY);
    let bundle = dir.join(names::BUNDLE);
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(DefaultCert {
            cert,
            key,
            bundle,
            created: false,
        }),
        (true, false) => Err(CertGenError::Incomplete {
            present: cert,
            missing: key,
        }),
        (false, true) => Err(CertGenError::Incomplete {
            present: key,
            missing: cert,
        }),
        (false, false) => {
            let g = generate(&machine_identity())?;
            write_files(dir, &g, false)?;
            Ok(DefaultCert {
                cert,
                key,
                bundle,
                created: true,
            })
        }
    }
}

/// This machine's host name, `localhost`, and its addresses, valid ten years.
pub fn machine_identity() -> CertRequest {
    let mut hosts = Vec::new();
    if let Some(h) = host_name() {
        hosts.push(h);
    }
    if !hosts.iter().any(|h| h == "localhost") {
        hosts.push("localhost".to_string());
    }
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => {
            for iface in ifaces {
                let ip = iface.ip();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Err(e) => tracing::warn!(
            "cannot list this machine's addresses ({e}); the certificate names only its host name and loopback"
        ),
    }
    CertRequest {
        hosts,
        ips,
        days: 3650,
    }
}

/// The kernel's host name, when it is one a certificate can hold.
pub fn host_name() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = raw.trim().to_string();
    let usable = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    usable.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_created_once_then_reused_and_loads() {
        let dir = std::env::temp_dir().join(format!("mlal-certgen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = ensure_default(&dir).unwrap();
        assert!(first.created);
        let second = ensure_default(&dir).unwrap();
        assert!(!second.created);
        use std::os::unix::fs::PermissionsExt;
        for name in [names::CA_KEY, names::SERVER_KEY, names::BUNDLE] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        // The sensor bundle alone is a usable LOGGER_CERT.
        let loaded = crate::tls::load(&first.bundle, None).unwrap();
        assert_eq!(loaded.certified.cert.len(), 2);
        crate::tls::load(&first.cert, Some(&first.key)).unwrap();
        assert!(matches!(
            write_files(&dir, &generate(&machine_identity()).unwrap(), false),
            Err(CertGenError::Exists { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
