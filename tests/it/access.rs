//! Who may connect: the allowlist (checked before the handshake) and client certificates
//! (mTLS), each tested from real sockets.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpSocket;

use crate::common::*;

/// A POST from `source` (an address of this machine) to the daemon; None when refused.
async fn post_from(source: &str, addr: std::net::SocketAddr, ca: &CertificateDer<'static>) -> Option<u16> {
    let local = std::net::SocketAddr::new(source.parse().unwrap(), 0);
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(local).unwrap();
    let tcp = socket.connect(addr).await.ok()?;
    let mut c = Client::try_h1_over(tcp, tls_config(ca, &[b"http/1.1"])).await?;
    c.try_request("POST", "/log", &[], REQUEST_FIXTURE)
        .await
        .ok()
        .map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_refuses_exactly_who_it_should() {
    let dir = TempDir::new("allow");
    let certs = make_certs(dir.path());
    let mut start = Start::new(&certs).args(["--allow", "127.0.0.2, 10.0.0.0/8, ::1/128"]);
    start.args.drain(0..2); // every address, so ::1 reaches it too
    let d = start.start();
    let port = d.addr.port();
    let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(post_from("127.0.0.2", v4, &certs.ca_der).await, Some(200));
    assert_eq!(post_from("127.0.0.1", v4, &certs.ca_der).await, None);
    assert_eq!(post_from("127.0.0.3", v4, &certs.ca_der).await, None);
    assert_eq!(post_from("::1", v6, &certs.ca_der).await, Some(200));
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("closed: address not allowed"), "{stderr}");
    assert!(
        stderr.contains("allowed: 127.0.0.2/32,10.0.0.0/8,::1/128"),
        "{stderr}"
    );
    assert!(stderr.contains("not allowed 2,"), "{stderr}");
}

/// A CA (as PEM) and a client certificate it signed, for `cn`.
fn client_identity(cn: &str) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sensor CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca.pem(), vec![cert.der().clone()], key)
}

async fn post_with_identity(
    addr: std::net::SocketAddr,
    server_ca: &CertificateDer<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Option<u16> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.clone()).unwrap();
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // With TLS 1.3 the server's verdict on the client certificate arrives after the client's
    // side of the handshake: a refusal shows up on the first request.
    let mut c = Client::try_h1_over(tcp, Arc::new(config)).await?;
    c.try_request("POST", "/log", &[], REQUEST_FIXTURE)
        .await
        .ok()
        .map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_named_in_annotations() {
    let (sensor_ca, chain, key) = client_identity("sensor-1");
    let (_, other_chain, other_key) = client_identity("intruder");
    let clients = TempDir::new("mtls-clients");
    let ca_file = clients.join("clients-ca.pem");
    std::fs::write(&ca_file, sensor_ca).unwrap();
    let s = serve_to_file("mtls", |s| {
        s.arg("--annotate")
            .env("LOGGER_CLIENT_CA", ca_file.to_str().unwrap())
    });
    let (addr, ca) = (s.daemon.addr, &s.certs.ca_der);
    assert_eq!(post_with_identity(addr, ca, Some((chain, key))).await, Some(200));
    assert_eq!(post_with_identity(addr, ca, None).await, None, "no certificate");
    assert_eq!(
        post_with_identity(addr, ca, Some((other_chain, other_key))).await,
        None,
        "a certificate from another CA"
    );
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    let lines = read_ndjson(&s.out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["_client"], "CN=sensor-1,O=Example");
    let text = std::fs::read_to_string(&s.out).unwrap();
    assert!(
        text.trim_end()
            .ends_with(r#","_client":"CN=sensor-1,O=Example"}"#),
        "{text}"
    );
}

#[test]
fn a_bad_client_ca_stops_the_start() {
    let dir = TempDir::new("mtls-bad");
    let certs = make_certs(dir.path());
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    for (value, expected) in [
        (
            "/nonexistent/ca.pem".to_string(),
            "error: LOGGER_CLIENT_CA=/nonexistent/ca.pem: no such file".to_string(),
        ),
        (
            dir.join("empty.pem").display().to_string(),
            format!(
                "error: LOGGER_CLIENT_CA={}: no certificate in it",
                dir.join("empty.pem").display()
            ),
        ),
    ] {
        let out = command()
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                "0",
                "--cert",
                certs.cert.to_str().unwrap(),
                "--key",
                certs.key.to_str().unwrap(),
            ])
            .env("LOGGER_CLIENT_CA", &value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end(), expected);
    }
    let out = command().args(["--allow", "10.0.0.0/40"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: --allow=\"10.0.0.0/40\": "));
}
