//! TLS: loading the certificate and key from PEM, and the rustls server configuration.
//!
//! Owns every way a PEM file can be wrong ([`TlsError`]), the protocol choices (TLS 1.2 and
//! 1.3, ALPN `h2` and `http/1.1`) and the swappable certificate that new handshakes use. It
//! does not create certificates (`certgen`) or accept connections (`connection`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::x509::{self, CertSummary};

/// PEM files larger than this are not certificates or keys.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Every way loading the certificate and key can fail.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The named file does not exist.
    #[error("{setting}={}: no such file", path.display())]
    Missing { setting: &'static str, path: PathBuf },
    /// The file exists but cannot be read.
    #[error("{setting}={}: cannot read: {source}", path.display())]
    Unreadable {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not PEM, or a section of it is broken.
    #[error("{setting}={}: not a valid PEM file ({reason})", path.display())]
    BadPem {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// No `CERTIFICATE` section.
    #[error("{setting}={}: no certificate in it", path.display())]
    NoCertificate { setting: &'static str, path: PathBuf },
    /// A `CERTIFICATE` section whose bytes are not an X.509 certificate.
    #[error("{setting}={}: {which} is not an X.509 certificate", path.display())]
    NotCertificate {
        setting: &'static str,
        path: PathBuf,
        /// `the certificate`, or `certificate 2 of 3` in a chain.
        which: String,
    },
    /// No private key where one was expected.
    #[error("{setting}={}: no private key in it{hint}", path.display())]
    NoKey {
        setting: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// The key is encrypted with a passphrase.
    #[error("{} is encrypted; decrypt it with openssl pkey", path.display())]
    EncryptedKey { path: PathBuf },
    /// The key cannot be used for signing (unsupported algorithm or malformed).
    #[error("{setting}={}: unusable private key: {reason}", path.display())]
    UnusableKey {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key belongs to another certificate.
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client CA file holds nothing usable as a trust anchor.
    #[error("LOGGER_CLIENT_CA={}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

/// A certificate chain with its signing key, ready to serve, and what to say about it.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// What rustls serves.
    pub(crate) certified: Arc<CertifiedKey>,
    /// Subject and validity of the end-entity certificate, for the start line and expiry checks.
    pub(crate) summary: CertSummary,
    /// Where it came from.
    pub(crate) cert_path: PathBuf,
}

/// The crypto provider for every TLS context of the daemon and of `send`: aws-lc-rs, with the
/// key exchange groups current browsers and Go 1.24+ offer, the post-quantum hybrid first, so
/// records a passive observer records today stay confidential later. Every cipher suite rustls
/// has is ECDHE or TLS 1.3: forward secrecy only.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let mut provider = default_provider();
    provider.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    Arc::new(provider)
}

/// Loads a certificate chain and its key. `key` `None` means the key is in the certificate file.
pub fn load(cert: &Path, key: Option<&Path>) -> Result<LoadedCert, TlsError> {
    let cert_pem = read_pem_file("LOGGER_CERT", cert)?;
    let key_pem = match key {
        Some(k) => Some(read_pem_file("LOGGER_KEY", k)?),
        None => None,
    };
    from_pem(
        &cert_pem,
        key_pem.as_deref().map(|pem| (pem, key.unwrap_or(cert))),
        cert,
    )
}

/// Builds a certificate from PEM text already read: `cert_pem` from `cert`, and the key either
/// from `key` (its text and path) or from `cert_pem` itself. Never panics, whatever the bytes.
pub fn from_pem(cert_pem: &[u8], key: Option<(&[u8], &Path)>, cert: &Path) -> Result<LoadedCert, TlsError> {
    let mut chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem("LOGGER_CERT", cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            setting: "LOGGER_CERT",
            path: cert.to_path_buf(),
        });
    }
    // Every section must be a certificate: PEM armour around other bytes is a bad deploy, and
    // serving it would fail every handshake.
    let mut summaries = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        match x509::summarize(der) {
            Some(summary) => summaries.push(summary),
            None => {
                return Err(TlsError::NotCertificate {
                    setting: "LOGGER_CERT",
                    path: cert.to_path_buf(),
                    which: if chain.len() == 1 {
                        "the certificate".into()
                    } else {
                        format!("certificate {} of {}", i + 1, chain.len())
                    },
                })
            }
        }
    }
    let (key_setting, key_path, key_pem) = match key {
        Some((pem, path)) => ("LOGGER_KEY", path, pem),
        None => ("LOGGER_CERT", cert, cert_pem),
    };
    if is_encrypted(key_pem) {
        return Err(TlsError::EncryptedKey {
            path: key_path.to_path_buf(),
        });
    }
    let key_der = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                setting: key_setting,
                path: key_path.to_path_buf(),
                hint: if key.is_none() {
                    "; set LOGGER_KEY to the key file"
                } else {
                    ""
                },
            })
        }
        Err(e) => return Err(bad_pem(key_setting, key_path, e)),
    };
    let signing_key =
        provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| TlsError::UnusableKey {
                setting: key_setting,
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;

    // The end-entity certificate must come first; a file with the CA first is forgiven by
    // moving the certificate that matches the key to the front.
    if !matches_key(&chain[0], &signing_key) {
        match chain.iter().position(|c| matches_key(c, &signing_key)) {
            Some(i) => {
                let leaf = chain.remove(i);
                chain.insert(0, leaf);
                let summary = summaries.remove(i);
                summaries.insert(0, summary);
            }
            None => {
                return Err(TlsError::KeyMismatch {
                    key: key_path.to_path_buf(),
                    cert: cert.to_path_buf(),
                })
            }
        }
    }
    let summary = summaries.swap_remove(0);
    Ok(LoadedCert {
        certified: Arc::new(CertifiedKey::new(chain, signing_key)),
        summary,
        cert_path: cert.to_path_buf(),
    })
}

/// True only when the certificate's public key is the key's: a key whose public half cannot be
/// told, or a certificate that does not parse, is no match.
fn matches_key(cert: &CertificateDer<'static>, key: &Arc<dyn rustls::sign::SigningKey>) -> bool {
    CertifiedKey::new(vec![cert.clone()], key.clone())
        .keys_match()
        .is_ok()
}

fn read_pem_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing {
            setting,
            path: path.to_path_buf(),
        },
        _ => TlsError::Unreadable {
            setting,
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError::Unreadable {
            setting,
            path: path.to_path_buf(),
            source: e,
        })?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::BadPem {
            setting,
            path: path.to_path_buf(),
            reason: "larger than 1 MiB".into(),
        });
    }
    Ok(bytes)
}

fn bad_pem(setting: &'static str, path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::BadPem {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY`, or a legacy OpenSSL key with `Proc-Type: 4,ENCRYPTED`.
pub(crate) fn is_encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

/// The certificate new handshakes get; replaced whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<LoadedCert>,
}

impl CertStore {
    /// A store serving `cert`.
    pub fn new(cert: LoadedCert) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: RwLock::new(cert),
        })
    }

    /// The certificate being served.
    pub(crate) fn current(&self) -> LoadedCert {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `cert` from the next handshake on.
    pub(crate) fn replace(&self, cert: LoadedCert) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = cert;
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .certified
                .clone(),
        )
    }
}

/// The trust anchors for client certificates (`--client-ca`): every certificate in the file.
pub(crate) fn load_client_ca(path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let pem = read_pem_file("LOGGER_CLIENT_CA", path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem("LOGGER_CLIENT_CA", path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            setting: "LOGGER_CLIENT_CA",
            path: path.to_path_buf(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The server configuration: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, the store's
/// certificate, and with `client_ca` a client certificate chained to it required of every peer.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<(Arc<rustls::RootCertStore>, &Path)>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((roots, path)) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's order of cipher suites (the provider's: AES-256-GCM first), as TLS scanners
    // expect of a server; key exchange groups already follow the server's order.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mlal-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_key_from_either_file_and_reports_each_fault() {
        let d = tmpdir("faults");
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let c = write(&d, "server.crt", &cert);
        let k = write(&d, "server.key", &key);
        assert!(load(&c, Some(&k)).is_ok());
        let bundle = write(&d, "bundle.pem", &format!("{key}{cert}"));
        assert!(load(&bundle, None).is_ok());

        let msg = |r: Result<LoadedCert, TlsError>| r.unwrap_err().to_string();
        assert!(msg(load(&d.join("nope.crt"), Some(&k))).ends_with("nope.crt: no such file"));
        assert!(msg(load(&c, None)).contains("no private key in it; set LOGGER_KEY"));
        assert!(msg(load(&k, Some(&k))).contains("no certificate in it"));
        let wrong = write(&d, "wrong.key", &other_key);
        assert!(msg(load(&c, Some(&wrong))).starts_with("the key in"));
        let enc = write(
            &d,
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(msg(load(&c, Some(&enc))).ends_with("enc.key is encrypted; decrypt it with openssl pkey"));
        let junk = write(
            &d,
            "junk.crt",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        assert!(msg(load(&junk, Some(&k))).contains("not a valid PEM file"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pem_armour_around_other_bytes_is_not_a_certificate() {
        let d = tmpdir("garbage");
        let (cert, key) = self_signed();
        let k = write(&d, "server.key", &key);
        // Valid base64 of bytes that are not DER, and DER of something that is not a certificate.
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8sIHRoaXMgaXMgbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let g = write(&d, "garbage.crt", garbage);
        let e = load(&g, Some(&k)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "LOGGER_CERT={}: the certificate is not an X.509 certificate",
                g.display()
            )
        );
        // The key's own PKCS#8 DER dressed as a certificate, after a good one: named by position.
        let key_der = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let b64 = crate::rejects::base64(key_der.secret_der());
        let chain = write(
            &d,
            "chain.crt",
            &format!("{cert}-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
        );
        let e = load(&chain, Some(&k)).unwrap_err().to_string();
        assert!(
            e.ends_with("certificate 2 of 2 is not an X.509 certificate"),
            "{e}"
        );
        // Garbage with the key in the same file: still refused, not served.
        let bundle = write(&d, "bundle.pem", &format!("{key}{garbage}"));
        assert!(load(&bundle, None)
            .unwrap_err()
            .to_string()
            .contains("not an X.509 certificate"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_post_quantum_hybrid_comes_first_then_the_classical_groups() {
        let names: Vec<_> = provider().kx_groups.iter().map(|g| g.name()).collect();
        use rustls::NamedGroup::*;
        assert_eq!(names, [X25519MLKEM768, X25519, secp256r1, secp384r1]);
    }
}
