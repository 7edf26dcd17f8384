//! Making certificates: a CA and a server certificate signed by it, written as the five files
//! of the vendor's `openssl` workflow (`serverca.key`, `serverca.crt`, `server.key`,
//! `server.crt`, `trusted-server.pem`).
//!
//! Used by the daemon's embedded default (SPEC 4.2) and by the `cert` subcommand, which adds the
//! key type (ECDSA P-256, RSA 2048 or 4096) and signing with an existing CA ([`ExistingCa`]).
//! It does not load certificates for serving (`tls`) or talk to the operator (`cmd_cert`).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
    /// RSA key generation failed.
    #[error("cannot make an RSA key: {0}")]
    Rsa(String),
    /// The CA certificate or key file cannot be read.
    #[error("{}: {source}", path.display())]
    CaUnreadable { path: PathBuf, source: std::io::Error },
    /// The CA certificate file holds no usable certificate.
    #[error("{}: no PEM certificate in it{reason}", path.display())]
    CaNoCertificate { path: PathBuf, reason: String },
    /// The CA certificate is not a CA (no `basicConstraints CA:TRUE`).
    #[error("{}: not a CA certificate (basicConstraints CA:TRUE is missing)", path.display())]
    NotCa { path: PathBuf },
    /// The CA key file holds no usable key.
    #[error("{}: {reason}", path.display())]
    CaBadKey { path: PathBuf, reason: String },
    /// The CA key is encrypted.
    #[error("{} is encrypted; decrypt it with openssl pkey -in {} -out ca-plain.key", path.display(), path.display())]
    CaKeyEncrypted { path: PathBuf },
    /// The CA key is not the CA certificate's.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    CaKeyMismatch { key: PathBuf, cert: PathBuf },
}

impl CertGenError {
    /// True when the operator's input is at fault (exit code 2), not the machine.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            CertGenError::Write { .. } | CertGenError::Generate(_) | CertGenError::Rsa(_)
        )
    }
}

/// The key algorithm of a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: small, fast, accepted everywhere TLS 1.2 is.
    #[default]
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 with SHA-256.
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 4096 with SHA-256, as the vendor's `openssl` commands make (takes seconds).
    #[value(name = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    /// A new key pair of this type.
    pub fn generate(self) -> Result<KeyPair, CertGenError> {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::rsa::KeySize;
        let size = match self {
            KeyType::EcdsaP256 => return Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
            KeyType::Rsa2048 => KeySize::Rsa2048,
            KeyType::Rsa4096 => KeySize::Rsa4096,
        };
        // The one crypto library makes the key; rcgen signs with it.
        let key = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| CertGenError::Rsa(e.to_string()))?;
        let der: Pkcs8V1Der<'static> = key.as_der().map_err(|e| CertGenError::Rsa(e.to_string()))?;
        Ok(KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der.as_ref()),
            &rcgen::PKCS_RSA_SHA256,
        )?)
    }

    /// How `openssl x509 -text` names it, for the operator.
    pub fn describe(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::Rsa2048 => "RSA 2048",
            KeyType::Rsa4096 => "RSA 4096",
        }
    }
}

/// A CA given by the operator (`--ca-cert`, `--ca-key`) that signs the server certificate.
pub struct ExistingCa {
    /// Signs the server certificate; its name and key identifier come from the CA certificate.
    issuer: Issuer<'static, KeyPair>,
    /// The CA file's certificates as PEM, for `serverca.crt` and the sensor bundle.
    pub cert_pem: String,
    /// The CA certificate's subject, e.g. `CN=Example CA`.
    pub subject: String,
}

impl std::fmt::Debug for ExistingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExistingCa")
            .field("subject", &self.subject)
            .finish()
    }
}

/// Files larger than this are not certificates or keys.
const MAX_PEM_FILE: u64 = 1 << 20;

fn read_small(path: &Path) -> Result<Vec<u8>, CertGenError> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE).read_to_end(&mut buf))
        .map_err(|source| CertGenError::CaUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

impl ExistingCa {
    /// Loads a CA certificate (the first in `cert`; the rest is kept as its chain) and its key
    /// (PKCS#8, PKCS#1 or SEC1; not encrypted), and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<ExistingCa, CertGenError> {
        let cert_pem = read_small(cert)?;
        let no_cert = |reason: String| CertGenError::CaNoCertificate {
            path: cert.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| no_cert(format!(" ({e})")))?;
        let Some(first) = chain.first() else {
            return Err(no_cert(String::new()));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(first)
            .map_err(|e| no_cert(format!(" (not a valid certificate: {e})")))?;
        if !parsed.is_ca() {
            return Err(CertGenError::NotCa {
                path: cert.to_path_buf(),
            });
        }
        let key_pem = read_small(key)?;
        if crate::net::tls::is_encrypted(&key_pem) {
            return Err(CertGenError::CaKeyEncrypted {
                path: key.to_path_buf(),
            });
        }
        let bad_key = |reason: String| CertGenError::CaBadKey {
            path: key.to_path_buf(),
            reason,
        };
        let der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad_key(format!("no usable PEM private key in it ({e})")))?;
        let pkcs8 = to_pkcs8(&der).ok_or_else(|| bad_key("a private key of an unknown shape".into()))?;
        let key_pair =
            KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8))).map_err(|e| {
                bad_key(format!(
                    "unusable private key ({e}); ECDSA P-256/P-384 or RSA are"
                ))
            })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key_pair.public_key_raw() {
            return Err(CertGenError::CaKeyMismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            });
        }
        let subject = crate::certs::x509::summarize(first)
            .map(|s| s.subject)
            .unwrap_or_default();
        let issuer = Issuer::from_ca_cert_der(first, key_pair)?;
        let mut pem_text = String::new();
        for c in &chain {
            pem_text.push_str(&pem_encode("CERTIFICATE", c));
        }
        Ok(ExistingCa {
            issuer,
            cert_pem: pem_text,
            subject,
        })
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let p = pem::Pem::new(label, der.to_vec());
    pem::encode_config(&p, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// A PKCS#1 (RSA) or SEC1 (EC) key wrapped as PKCS#8, which is all that ring loads.
fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (algorithm, inner) = match key {
        PrivateKeyDer::Pkcs8(k) => return Some(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => (
            der(0x30, &[der(0x06, RSA_ENCRYPTION), der(0x05, &[])].concat()),
            k.secret_pkcs1_der(),
        ),
        PrivateKeyDer::Sec1(k) => {
            let curve = sec1_curve(k.secret_sec1_der()).unwrap_or_else(|| PRIME256V1.to_vec());
            (
                der(0x30, &[der(0x06, EC_PUBLIC_KEY), der(0x06, &curve)].concat()),
                k.secret_sec1_der(),
            )
        }
        _ => return None,
    };
    Some(der(
        0x30,
        &[der(0x02, &[0]), algorithm, der(0x04, inner)].concat(),
    ))
}

/// The named curve in a SEC1 `ECPrivateKey`'s `[0] parameters`, when present.
fn sec1_curve(sec1: &[u8]) -> Option<Vec<u8>> {
    let x = x509_parser::der_parser::parse_der(sec1).ok()?.1;
    let items = x.as_sequence().ok()?;
    items.iter().find_map(|item| {
        let tagged = item.as_tagged().ok()?;
        (tagged.1 .0 == 0).then_some(())?;
        tagged.2.as_oid().ok().map(|oid| oid.as_bytes().to_vec())
    })
}

/// A DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
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
    /// CA private key (PKCS#8); `None` when an existing CA signed, whose key stays where it is.
    pub ca_key: Option<String>,
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

    /// The files to write, in the vendor's order: name, contents, mode. No `serverca.key` when
    /// an existing CA signed.
    pub fn files(&self) -> Vec<(&'static str, String, u32)> {
        let mut files = Vec::with_capacity(5);
        if let Some(k) = &self.ca_key {
            files.push((names::CA_KEY, k.clone(), 0o600));
        }
        files.push((names::CA_CERT, self.ca_cert.clone(), 0o644));
        files.push((names::SERVER_KEY, self.server_key.clone(), 0o600));
        files.push((names::SERVER_CERT, self.server_cert.clone(), 0o644));
        files.push((names::BUNDLE, self.trusted_bundle(), 0o600));
        files
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
    generate_with(req, KeyType::EcdsaP256, None)
}

/// Makes a server certificate with a `key_type` key, signed by `ca`, or by a new CA (with a key
/// of the same type) when `ca` is `None`.
pub fn generate_with(
    req: &CertRequest,
    key_type: KeyType,
    ca: Option<&ExistingCa>,
) -> Result<Generated, CertGenError> {
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(req.days.max(1)));
    let common_name = req
        .hosts
        .first()
        .cloned()
        .or_else(|| req.ips.first().map(|ip| ip.to_string()))
        .unwrap_or_else(|| "localhost".to_string());

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name.clone());
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
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key_type != KeyType::EcdsaP256 {
        // RSA key exchange (TLS 1.2 `TLS_RSA_*`) encrypts to the key; ECDSA keys only sign.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - time::Duration::hours(1);
    params.not_after = until;
    let key = key_type.generate()?;

    let (cert, ca_key, ca_cert) = match ca {
        Some(ca) => (params.signed_by(&key, &ca.issuer)?, None, ca.cert_pem.clone()),
        None => {
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
            let ca_key = key_type.generate()?;
            let ca_key_pem = ca_key.serialize_pem();
            let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
            (params.signed_by(&key, &ca)?, Some(ca_key_pem), ca.pem())
        }
    };
    Ok(Generated {
        ca_key,
        ca_cert,
        server_key: key.serialize_pem(),
        server_cert: cert.pem(),
    })
}

/// Writes the five files into `dir` (created, mode 0700, when missing); keys are mode 0600.
pub fn write_files(dir: &Path, g: &Generated, overwrite: bool) -> Result<Vec<PathBuf>, CertGenError> {
    write_set(dir, &g.files(), overwrite)
}

/// Writes `files` (name, contents, mode) into `dir`, created mode 0700 when missing. Without
/// `overwrite`, nothing is written when any of them exists.
pub fn write_set(
    dir: &Path,
    files: &[(&'static str, String, u32)],
    overwrite: bool,
) -> Result<Vec<PathBuf>, CertGenError> {
    if !overwrite {
        if let Some((name, _, _)) = files.iter().find(|(n, _, _)| dir.join(n).exists()) {
            return Err(CertGenError::Exists { path: dir.join(name) });
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertGenError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut written = Vec::new();
    for (name, text, mode) in files {
        let path = dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(*mode)
                .open(&path)?;
            // `mode` applies only to a new file; an overwritten key must not keep looser bits.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(*mode))?;
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
        let loaded = crate::net::tls::load(&first.bundle, None).unwrap();
        assert_eq!(loaded.certified.cert.len(), 2);
        crate::net::tls::load(&first.cert, Some(&first.key)).unwrap();
        assert!(matches!(
            write_files(&dir, &generate(&machine_identity()).unwrap(), false),
            Err(CertGenError::Exists { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
