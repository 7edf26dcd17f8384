//! The vendor page's own workflow, as an operator replacing the Go program would follow it:
//! its `openssl` commands, the four variables, `ml_api_logger > extrahop-ade-log.json`, the two
//! example records posted pretty-printed, and the file read back line by line.

use std::process::Command;

use crate::common::*;

/// The page's six commands, made non-interactive (passphrase and subject given on the command line).
fn vendor_certificates(dir: &std::path::Path) {
    let script = r#"
set -euo pipefail
openssl genrsa -aes256 -passout pass:vendor-test -out serverca.key 4096
openssl req -new -key serverca.key -passin pass:vendor-test -x509 -out serverca.crt -days 3650 -subj "/CN=Example CA"
openssl req -new \
  -nodes \
  -newkey rsa:4096 \
  -keyout server.key \
  -out server.req \
  -batch \
  -subj "/C=US/ST=WA/L=Seattle/O=ORGANIZATION_NAME/OU=router/CN=localhost" \
  -reqexts SAN \
  -config <(cat /etc/ssl/openssl.cnf <(printf "[SAN]\nsubjectAltName=DNS:localhost,IP:127.0.0.1"))
openssl x509 -req \
  -in server.req \
  -CA serverca.crt \
  -CAkey serverca.key \
  -passin pass:vendor-test \
  -CAcreateserial \
  -out server.crt \
  -days 3650 \
  -sha256 \
  -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1")
cat server.key server.crt serverca.crt > trusted-server.pem
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_workflow_end_to_end() {
    // It follows the vendor's openssl commands.
    if !tools_present(&["openssl"]) {
        return;
    }
    let dir = TempDir::new("vendor");
    vendor_certificates(dir.path());
    let ca = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(dir.join("serverca.crt")).unwrap()
    };

    for (round, env) in [
        vec![("LOGGER_CERT", "server.crt"), ("LOGGER_KEY", "server.key")],
        // The sensor bundle alone is a usable LOGGER_CERT: key, certificate and CA in one file.
        vec![("LOGGER_CERT", "trusted-server.pem")],
    ]
    .into_iter()
    .enumerate()
    {
        let log = dir.join(&format!("extrahop-ade-log-{round}.json"));
        let port = free_port().to_string();
        let mut start = Start {
            stdout: Some(std::fs::File::create(&log).unwrap()),
            ..Start::bare(dir.path())
        }
        .env("LOGGER_PORT", port.clone())
        .env("LOGGER_IP", "127.0.0.1");
        for (k, v) in env {
            start = start.env(k, dir.join(v).to_str().unwrap());
        }
        let d = start.start();
        assert_eq!(d.addr.port().to_string(), port);

        let mut c = Client::h1(d.addr, &ca).await;
        assert_eq!(c.post(REQUEST_FIXTURE).await.status, 200);
        let mut c2 = Client::h2(d.addr, &ca).await;
        assert_eq!(c2.post(RESPONSE_FIXTURE).await.status, 200);
        let (code, stderr) = d.stop();
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains("O=ORGANIZATION_NAME"),
            "start line names the certificate: {stderr}"
        );

        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let want_req: serde_json::Value = serde_json::from_str(REQUEST_FIXTURE).unwrap();
        let want_resp: serde_json::Value = serde_json::from_str(RESPONSE_FIXTURE).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(lines[0]).unwrap(),
            want_req
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(lines[1]).unwrap(),
            want_resp
        );
    }
}
