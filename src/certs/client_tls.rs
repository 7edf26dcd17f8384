//! The TLS client side, for `send`: whom to trust (a CA file, the system's roots, or — with
//! `--insecure` — anyone) and the rustls client configuration. The daemon's own TLS is `tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Whom the client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The CA certificates in this PEM file (e.g. `certs/serverca.crt`).
    CaFile(PathBuf),
    /// The operating system's roots.
    System,
    /// Any certificate at all: the connection is encrypted but the server is not checked.
    Insecure,
}

/// Why the client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The CA file cannot be read.
    #[error("--ca {}: {reason}", path.display())]
    CaUnreadable { path: PathBuf, reason: String },
    /// The CA file holds no certificate that can be a root.
    #[error("--ca {}: no usable CA certificate in it{reason}", path.display())]
    NoCa { path: PathBuf, reason: String },
    /// No system roots were found.
    #[error("no CA certificates found on this system; give the server's CA with --ca FILE")]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A client configuration for HTTP/1.1 over TLS 1.2 or 1.3 with `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, ClientTlsError> {
    let provider = crate::net::tls::provider();
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyServerCert(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(roots_from_file(path)?)
            .with_no_client_auth(),
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ClientTlsError::NoSystemRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let pem = std::fs::read(path).map_err(|e| ClientTlsError::CaUnreadable {
        path: path.to_path_buf(),
        reason: crate::json::stream::io_reason(&e),
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientTlsError::NoCa {
            path: path.to_path_buf(),
            reason: format!(" ({e})"),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ClientTlsError::NoCa {
            path: path.to_path_buf(),
            reason: String::new(),
        });
    }
    Ok(roots)
}

/// `--insecure`: accepts any server certificate for any name. The handshake's signatures are
/// still checked against the certificate presented, but nothing says that certificate is the
/// server's: anyone on the path can read and change the traffic. For a first test only.
#[derive(Debug)]
struct DangerousAcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerousAcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
