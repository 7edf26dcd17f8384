//! Redaction of credentials (SPEC 4.9): the values of the credential headers are written as
//! keyed marks in the output and the rejects file, never as sent, nowhere in the log or the
//! metrics either; the rest of each line byte for byte; the key kept across restarts; `off` and
//! a custom list; `inspect` counting the marks and marking an old log with the daemon's key.

use std::path::Path;

use crate::common::*;
use ml_api_logger::redact::{default_names, RedactKey, Redactor};

/// A request record, pretty-printed, with `Authorization: Bearer abc`.
const REQUEST_AUTH: &str = r#"{
  "sequence": 1,
  "request": {
    "Method": "POST",
    "Host": "appliance.example.extrahop.com",
    "RequestURI": "/api/v1/metrics",
    "Header": {
      "Accept": ["application/json"],
      "Authorization": ["Bearer abc"]
    },
    "Close": false
  },
  "request_body": {"metric_category": "net", "note": "Authorization: keep me"}
}"#;

/// The same credential under a lower-case name, sent compact.
const REQUEST_LOWER: &str = r#"{"sequence":2,"request":{"Method":"GET","RequestURI":"/a?x=1\u0026y=2","Header":{"authorization":["Bearer abc"],"X-Custom":["custom-value"]},"Close":false}}"#;

/// A response setting two cookies.
const RESPONSE_COOKIES: &str = r#"{ "sequence": 1, "response_status_code": "200",
  "response_headers": {"Content-Type": ["application/json"], "Set-Cookie": ["a=1", "b=2"]},
  "response_body": {"ok": true, "big": 1.50e3} }"#;

/// A request that does not conform (no `RequestURI`), carrying the credential: refused with
/// `--strict`, kept in the rejects file.
const REFUSED: &str =
    r#"{"sequence": 3, "request": {"Method": "GET", "Header": {"Authorization": ["Bearer abc"]}}}"#;

/// A request whose `Authorization` is a string, not an array: it does not conform, and the
/// record check's wording would quote the value.
const NOT_AN_ARRAY: &str =
    r#"{"sequence":4,"request":{"Method":"GET","RequestURI":"/","Header":{"Authorization":"Bearer abc"}}}"#;

/// The mark the daemon writes for `value` under the key in `key_file`.
fn mark(key_file: &Path, value: &str) -> String {
    let key = RedactKey::load(key_file).unwrap();
    let r = Redactor::new(&key, &default_names());
    String::from_utf8(r.mark(value.as_bytes()).to_vec()).unwrap()
}

/// `text` with every well-formed mark taken out, so that what is left can be searched for a
/// credential (a mark is hex: it may spell `abc` by chance).
fn without_marks(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("[redacted hmac:") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "[redacted hmac:".len()..];
        let digits = after.get(..16).unwrap_or("");
        assert!(
            digits.len() == 16
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "not a mark: {}",
            &rest[at..]
        );
        assert_eq!(&after[16..17], "]");
        rest = &after[17..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_marked_by_default_and_nowhere_in_clear() {
    let dir = TempDir::new("redact");
    let certs = make_certs(dir.path());
    let out = dir.join("out.ndjson");
    let rejects = dir.join("rejects.ndjson");
    let d = Start::new(&certs)
        .args([
            "--output",
            out.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
            "--strict",
        ])
        .env("LOGGER_REJECTS", rejects.to_str().unwrap())
        // Every diagnostic, so that none of them shows a credential either.
        .env("RUST_LOG", "debug")
        .start();
    assert!(
        d.stderr().contains(&format!(
            "redacting Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key, X-Auth-Token (key {})",
            dir.join("redact.key").display()
        )),
        "{}",
        d.stderr()
    );
    let key_file = dir.join("redact.key");
    let meta = std::fs::metadata(&key_file).expect("the key is made at the first start");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_AUTH).await.status, 200);
    assert_eq!(c.post(REQUEST_LOWER).await.status, 200);
    let mut h2 = Client::h2(d.addr, &certs.ca_der).await;
    assert_eq!(h2.post(RESPONSE_COOKIES).await.status, 200);
    // A retry is recognised by the record as received: not written again, not counted again.
    assert_eq!(c.post(REQUEST_AUTH).await.json()["duplicates"], 1);
    let refused = c.post(format!("[{REQUEST_LOWER},\n{REFUSED}]")).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    // A credential where an array belongs: the problem is told without it.
    let refused = c.post(NOT_AN_ARRAY).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("request.Header.Authorization: not as documented"),
        "{}",
        refused.body
    );
    let metrics = scrape(d.admin_addr()).await;
    assert_eq!(metrics.n("ml_api_logger_redacted_values_total", &[]), 4);
    let metrics_text = http_get(d.admin_addr(), "GET", "/metrics").await.body;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);

    let bearer = mark(&key_file, "Bearer abc");
    let (a, b) = (mark(&key_file, "a=1"), mark(&key_file, "b=2"));
    assert!(bearer != a && a != b && bearer != b);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Each line is the record minified, with exactly the credentials replaced.
    assert_eq!(
        lines,
        [
            minified(REQUEST_AUTH).replace(r#""Bearer abc""#, &bearer),
            REQUEST_LOWER.replace(r#""Bearer abc""#, &bearer),
            minified(RESPONSE_COOKIES)
                .replace(r#""a=1""#, &a)
                .replace(r#""b=2""#, &b),
        ]
    );
    assert!(lines[0].contains(r#""note":"Authorization: keep me""#));
    assert!(lines[1].contains(r#""X-Custom":["custom-value"]"#));

    // The refused body is kept with its records' credentials marked, the rest as sent.
    let kept = read_ndjson(&rejects);
    assert_eq!(kept.len(), 2);
    assert_eq!(
        kept[1]["body"].as_str().unwrap(),
        NOT_AN_ARRAY.replace(r#""Bearer abc""#, &bearer)
    );
    assert_eq!(kept[0]["status"], 422);
    assert_eq!(
        kept[0]["body"].as_str().unwrap(),
        format!(
            "[{},\n{}]",
            REQUEST_LOWER.replace(r#""Bearer abc""#, &bearer),
            minified(REFUSED).replace(r#""Bearer abc""#, &bearer)
        )
    );

    for (what, text) in [
        ("output", text.clone()),
        ("rejects file", std::fs::read_to_string(&rejects).unwrap()),
        ("stderr", stderr),
        ("metrics", metrics_text),
    ] {
        let clear = without_marks(&text);
        for secret in ["abc", "a=1", "b=2"] {
            assert!(!clear.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_writes_every_value_as_sent_and_a_list_marks_only_its_names() {
    let dir = TempDir::new("redact-off");
    let certs = make_certs(dir.path());
    let out = dir.join("off.ndjson");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap()])
        .env("LOGGER_REDACT", "off")
        .start();
    assert!(d.stderr().contains("; redaction off;"), "{}", d.stderr());
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    for body in [REQUEST_AUTH, REQUEST_LOWER, RESPONSE_COOKIES] {
        assert_eq!(c.post(body).await.status, 200);
    }
    d.stop();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        format!(
            "{}\n{REQUEST_LOWER}\n{}\n",
            minified(REQUEST_AUTH),
            minified(RESPONSE_COOKIES)
        )
    );
    assert!(
        !dir.join("redact.key").exists(),
        "no key is made when nothing is redacted"
    );

    let out = dir.join("custom.ndjson");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap()])
        .env("LOGGER_REDACT", "X-Custom")
        .start();
    assert!(d.stderr().contains("redacting X-Custom (key "), "{}", d.stderr());
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_LOWER).await.status, 200);
    d.stop();
    let custom = mark(&dir.join("redact.key"), "custom-value");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}\n", REQUEST_LOWER.replace(r#""custom-value""#, &custom))
    );
}

/// Starts a daemon with `key` as its redaction key, posts [`REQUEST_LOWER`] and returns the
/// line written.
async fn written_with_key(dir: &TempDir, certs: &Certs, key: &Path, name: &str) -> String {
    let out = dir.join(name);
    let d = Start::new(certs)
        .args(["--output", out.to_str().unwrap()])
        .env("LOGGER_REDACT_KEY", key.to_str().unwrap())
        .start();
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(REQUEST_LOWER).await.status, 200);
    assert_eq!(d.stop().0, 0);
    std::fs::read_to_string(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_gives_the_same_marks_after_a_restart_and_another_key_other_marks() {
    let dir = TempDir::new("redact-key");
    let certs = make_certs(dir.path());
    let key = dir.join("keys/mine.key");
    std::fs::create_dir(dir.join("keys")).unwrap();
    let first = written_with_key(&dir, &certs, &key, "1.ndjson").await;
    let again = written_with_key(&dir, &certs, &key, "2.ndjson").await;
    assert_eq!(first, again);
    assert_eq!(
        first,
        format!(
            "{}\n",
            REQUEST_LOWER.replace(r#""Bearer abc""#, &mark(&key, "Bearer abc"))
        )
    );
    let other = written_with_key(&dir, &certs, &dir.join("keys/other.key"), "3.ndjson").await;
    assert_ne!(first, other);
    assert!(!other.contains("Bearer abc"));

    // A key file that exists but is malformed, or cannot be read: exit 2, one line naming it.
    let bad = dir.join("keys/bad.key");
    std::fs::write(&bad, "00112233\n").unwrap();
    let unreadable = dir.join("keys/a-directory");
    std::fs::create_dir(&unreadable).unwrap();
    for (path, reason) in [
        (&bad, "not a redaction key: 9 bytes; expected 64 hex digits"),
        (&unreadable, "cannot read the redaction key"),
    ] {
        let out = command()
            .args(["--ip", "127.0.0.1", "--port", "0"])
            .args([
                "--cert",
                certs.cert.to_str().unwrap(),
                "--key",
                certs.key.to_str().unwrap(),
            ])
            .env("LOGGER_REDACT_KEY", path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: LOGGER_REDACT_KEY={}: {reason}", path.display())),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "00112233\n",
        "never replaced"
    );
    // A list that is not header names is a bad setting too.
    let out = command().env("LOGGER_REDACT", "Cookie, X Y").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: LOGGER_REDACT=\"Cookie, X Y\": \"X Y\": ' ' cannot be part of an HTTP header name\n"
    );
}

#[test]
fn inspect_counts_the_marks_and_normalize_marks_an_old_log_with_the_key() {
    let dir = TempDir::new("redact-inspect");
    let key = dir.join("redact.key");
    std::fs::write(&key, RedactKey::from_bytes([0x5a; 32]).to_file_text()).unwrap();
    let records: Vec<serde_json::Value> = [REQUEST_AUTH, REQUEST_LOWER, RESPONSE_COOKIES]
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let old = dir.join("old-go-log.json");
    std::fs::write(&old, go_log(&records)).unwrap();

    let normalized = run(
        &[
            "inspect",
            "--normalize",
            "--redact-key",
            key.to_str().unwrap(),
            old.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        normalized.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&normalized.stderr)
    );
    let text = String::from_utf8(normalized.stdout).unwrap();
    let bearer = mark(&key, "Bearer abc");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].contains(&format!(r#""Authorization":[{bearer}]"#)),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!(r#""authorization":[{bearer}]"#)),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(&format!(
        r#""Set-Cookie":[{},{}]"#,
        mark(&key, "a=1"),
        mark(&key, "b=2")
    )));
    let clear = without_marks(&text);
    assert!(!clear.contains("abc") && !clear.contains("a=1") && !clear.contains("b=2"));
    // The summary on stderr counts them.
    let summary = String::from_utf8_lossy(&normalized.stderr);
    assert!(
        summary.contains("redacted values       4 (3 distinct marks)"),
        "{summary}"
    );

    // The marked log, inspected: counts and marks, never a value.
    let marked = dir.join("marked.ndjson");
    std::fs::write(&marked, &text).unwrap();
    let json = run(&["inspect", "--json", marked.to_str().unwrap()], b"");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["redacted_values"], 4);
    assert_eq!(v["distinct_redaction_marks"], 3);
    let marks = v["redaction_marks"].as_array().unwrap();
    assert_eq!(marks[0]["value"], bearer.trim_matches('"'));
    assert_eq!(marks[0]["count"], 2);
    assert_eq!(marks.len(), 3);
    let table = run(&["inspect", marked.to_str().unwrap()], b"");
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("redacted values       4 (3 distinct marks)"),
        "{table}"
    );
    assert!(
        table.contains(&format!("         2  {}", bearer.trim_matches('"'))),
        "{table}"
    );

    // Only the names asked for; a key that is not one; --redact alone.
    let custom = run(
        &[
            "inspect",
            "--normalize",
            "--redact-key",
            key.to_str().unwrap(),
            "--redact",
            "x-custom",
            old.to_str().unwrap(),
        ],
        b"",
    );
    let custom = String::from_utf8(custom.stdout).unwrap();
    assert!(
        custom.contains("Bearer abc") && !custom.contains("custom-value"),
        "{custom}"
    );
    std::fs::write(dir.join("bad.key"), "zz").unwrap();
    let bad = run(
        &[
            "inspect",
            "--normalize",
            "--redact-key",
            dir.join("bad.key").to_str().unwrap(),
            old.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: --redact-key="));
    let alone = run(&["inspect", "--redact", "Cookie", old.to_str().unwrap()], b"");
    assert_eq!(alone.status.code(), Some(2));
}
