//! Each bad setting and each bad PEM file: exit 2 and one line that names the setting, the
//! value and the reason; never a panic.

use crate::common::*;

/// Runs the binary to completion; returns its exit code and stderr.
fn run(args: &[&str], env: &[(&str, &str)], cwd: &std::path::Path) -> (i32, String) {
    let mut cmd = command();
    cmd.args(args).current_dir(cwd).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line(code: i32, stderr: &str, expected: &str) {
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(expected), "expected {expected:?} in {stderr}");
}

#[test]
fn bad_values_in_variables_and_flags() {
    let dir = TempDir::new("set-bad");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[("LOGGER_PORT", "abc")],
            r#"error: LOGGER_PORT="abc": not a port number (1-65535)"#,
        ),
        (&["--port", "65536"], &[], r#"--port="65536": not a port number"#),
        (
            &[],
            &[("LOGGER_IP", "10.0.0.300")],
            r#"LOGGER_IP="10.0.0.300": not an IP address"#,
        ),
        (
            &[],
            &[("LOGGER_MAX_BODY", "16XB")],
            r#"LOGGER_MAX_BODY="16XB": not a size"#,
        ),
        (
            &[],
            &[("LOGGER_STRICT", "perhaps")],
            r#"LOGGER_STRICT="perhaps": not a boolean"#,
        ),
        (
            &[],
            &[("LOGGER_FSYNC", "always")],
            r#"LOGGER_FSYNC="always": not a boolean"#,
        ),
        (
            &[],
            &[("LOGGER_HEADER_TIMEOUT", "soon")],
            r#"LOGGER_HEADER_TIMEOUT="soon": not a duration"#,
        ),
        (
            &["--idle-timeout", "0s"],
            &[],
            r#"--idle-timeout="0s": must be longer than zero"#,
        ),
        (
            &[],
            &[("LOGGER_MAX_CONNECTIONS", "0")],
            r#"LOGGER_MAX_CONNECTIONS="0": not a connection count"#,
        ),
        (
            &[],
            &[("LOGGER_WORKER_THREADS", "0")],
            r#"LOGGER_WORKER_THREADS="0": not a thread count (1-1024)"#,
        ),
        (
            &["--worker-threads", "many"],
            &[],
            r#"--worker-threads="many": not a thread count"#,
        ),
        (
            &[],
            &[("LOGGER_KEY", "/nonexistent/x.key")],
            "LOGGER_KEY=/nonexistent/x.key: a key without a certificate",
        ),
        (&[], &[("RUST_LOG", "info,=bogus=")], "RUST_LOG="),
    ];
    for (args, env, expected) in cases {
        let (code, stderr) = run(args, env, dir.path());
        assert_one_line(code, &stderr, expected);
    }
    // The flag wins over its variable.
    let (code, stderr) = run(&["--port", "x1"], &[("LOGGER_PORT", "x2")], dir.path());
    assert_one_line(code, &stderr, r#"--port="x1""#);
}

#[test]
fn bad_files() {
    let dir = TempDir::new("set-files");
    let certs = make_certs(dir.path());
    let other = TempDir::new("set-files-other");
    let other_certs = make_certs(other.path());
    let cert = certs.cert.to_str().unwrap();
    let key = certs.key.to_str().unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    std::fs::write(p("garbage.pem"), "hello\n").unwrap();
    std::fs::write(
        p("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        p("encrypted.key"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        p("legacy-encrypted.key"),
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();

    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (
            vec![
                ("LOGGER_CERT", "/etc/nope.crt".into()),
                ("LOGGER_KEY", key.into()),
            ],
            "error: LOGGER_CERT=/etc/nope.crt: no such file".into(),
        ),
        (
            vec![("LOGGER_CERT", cert.into()), ("LOGGER_KEY", "/etc/x.key".into())],
            "error: LOGGER_KEY=/etc/x.key: no such file".into(),
        ),
        (
            vec![("LOGGER_CERT", p("garbage.pem")), ("LOGGER_KEY", key.into())],
            format!("LOGGER_CERT={}: no certificate in it", p("garbage.pem")),
        ),
        (
            vec![("LOGGER_CERT", p("broken.pem")), ("LOGGER_KEY", key.into())],
            "not a valid PEM file".into(),
        ),
        (
            vec![("LOGGER_CERT", cert.into())],
            format!("LOGGER_CERT={cert}: no private key in it"),
        ),
        (
            vec![("LOGGER_CERT", cert.into()), ("LOGGER_KEY", cert.into())],
            format!("LOGGER_KEY={cert}: no private key in it"),
        ),
        (
            vec![("LOGGER_CERT", cert.into()), ("LOGGER_KEY", p("encrypted.key"))],
            format!(
                "error: {} is encrypted; decrypt it with openssl pkey",
                p("encrypted.key")
            ),
        ),
        (
            vec![
                ("LOGGER_CERT", cert.into()),
                ("LOGGER_KEY", p("legacy-encrypted.key")),
            ],
            "is encrypted; decrypt it with openssl pkey".into(),
        ),
        (
            vec![
                ("LOGGER_CERT", cert.into()),
                ("LOGGER_KEY", other_certs.key.to_str().unwrap().into()),
            ],
            format!(
                "error: the key in {} does not match the certificate in {cert}",
                other_certs.key.display()
            ),
        ),
        (
            vec![
                ("LOGGER_CERT", cert.into()),
                ("LOGGER_KEY", key.into()),
                ("LOGGER_OUTPUT", "/nonexistent-dir/out.json".into()),
            ],
            "LOGGER_OUTPUT=/nonexistent-dir/out.json: no such directory".into(),
        ),
        (
            vec![
                ("LOGGER_CERT", cert.into()),
                ("LOGGER_KEY", key.into()),
                ("LOGGER_OUTPUT", dir.path().to_str().unwrap().into()),
            ],
            "is a directory".into(),
        ),
    ];
    for (env, expected) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, stderr) = run(&["--ip", "127.0.0.1", "--port", "0"], &env, dir.path());
        assert_one_line(code, &stderr, &expected);
    }
}

#[test]
fn a_port_in_use_is_refused_before_listening() {
    let dir = TempDir::new("set-port");
    let certs = make_certs(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stderr) = run(
        &[
            "--ip",
            "127.0.0.1",
            "--port",
            &port,
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    assert_eq!(code, 2, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
}
