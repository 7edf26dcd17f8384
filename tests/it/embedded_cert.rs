//! `ml_api_logger` with no settings at all: it makes a local CA and a server certificate in
//! `./certs`, serves on port 8443 on every address, IPv4 and IPv6, and reuses them next time.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_settings_at_all_serves_on_8443_with_a_certificate_it_makes() {
    let dir = TempDir::new("embedded");
    let out = dir.join("extrahop-ade-log.json");
    let start = || Start {
        stdout: Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .unwrap(),
        ),
        ..Start::bare(dir.path())
    };
    let d = start().start();
    assert_eq!(d.addr.port(), 8443);
    let certs = dir.join("certs");
    for name in [
        "serverca.key",
        "serverca.crt",
        "server.key",
        "server.crt",
        "trusted-server.pem",
    ] {
        assert!(certs.join(name).is_file(), "{name} was not created");
    }
    assert!(
        d.stderr().contains("trusted-server.pem"),
        "the warning names the bundle"
    );
    let ca = CertificateDer::from_pem_file(certs.join("serverca.crt")).unwrap();
    for addr in ["127.0.0.1:8443", "[::1]:8443"] {
        let mut c = Client::h1(addr.parse().unwrap(), &ca).await;
        assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200, "{addr}");
    }
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let first_cert = std::fs::read(certs.join("server.crt")).unwrap();

    // The second start reuses what the first made.
    let d = start().start();
    assert_eq!(std::fs::read(certs.join("server.crt")).unwrap(), first_cert);
    let mut c = Client::h2("127.0.0.1:8443".parse().unwrap(), &ca).await;
    assert_eq!(c.post(RESPONSE_FIXTURE).await.status, 200);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(read_ndjson(&out).len(), 3);
}
