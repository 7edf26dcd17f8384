//! Sealing (LOGGER_SEAL) end to end: the real daemon seals what it writes, through rotations,
//! restarts and `kill -9`, and `verify` counts every line; each kind of tampering with a copy of
//! the files is reported by file and lines; a stolen state cannot rewrite what was sealed before
//! it was stolen. Time is compressed with the test-only `LOGGER_SEAL_INTERVAL`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ml_api_logger::seal::{seal_path_for, SealKind, Sealer};

/// The interval between seals in these tests: a "minute" of 40 ms.
const INTERVAL: &str = "40ms";

fn record(id: u64) -> String {
    format!(
        r#"{{"sequence":{id},"request":{{"Method":"POST","RequestURI":"/x"}},"request_body":{{"id":{id},"pad":"{}"}}}}"#,
        "p".repeat((id as usize * 37) % 300)
    )
}

/// Makes a sealing state in `dir` with `seal-keys`; returns (state, verification key line).
fn seal_keys(dir: &Path) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let state = dir.join("seal.state");
    let out = run(&["seal-keys", "--state", state.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.lines().count(), 1, "one line alone on stdout: {key:?}");
    (state, key.trim().to_string())
}

fn start(certs: &Certs, out: &Path, state: &Path) -> Daemon {
    Start::new(certs)
        .args(["--output", out.to_str().unwrap()])
        .env("LOGGER_SEAL", state.to_str().unwrap())
        .env("LOGGER_SEAL_INTERVAL", INTERVAL)
        .start()
}

/// Posts records `ids` one request each, pausing now and then so that several seals fall
/// between them.
async fn send(d: &Daemon, certs: &Certs, ids: std::ops::Range<u64>) {
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    for id in ids {
        let r = c.post(record(id)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        if id % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `verify --json` over `files`: (exit code, report).
fn verify(key: &str, files: &[PathBuf]) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--json", "--key", key];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = run(&args, b"");
    let code = out.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn lines_in(path: &Path) -> u64 {
    std::fs::read(path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

/// Moves the output and its `.seal` to `OUTPUT.n` and `OUTPUT.n.seal` (logrotate's move), then
/// SIGHUP, and waits for the new pair's first entry.
fn rotate(d: &Daemon, out: &Path, n: u32) -> PathBuf {
    let rotated = PathBuf::from(format!("{}.{n}", out.display()));
    std::fs::rename(out, &rotated).unwrap();
    std::fs::rename(seal_path_for(out), seal_path_for(&rotated)).unwrap();
    let reopens = d.stderr().matches("(reopen)").count();
    d.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.stderr().matches("(reopen)").count() == reopens {
        assert!(
            std::time::Instant::now() < deadline,
            "no reopen entry:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    rotated
}

/// A sealed, rotated set: `out.1`, `out.2` (rotated), `out` (stopped), 30 records each.
async fn sealed_set(dir: &Path, certs: &Certs) -> (Vec<PathBuf>, String) {
    let (state, key) = seal_keys(dir);
    let out = dir.join("out");
    let d = start(certs, &out, &state);
    send(&d, certs, 1..31).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let one = rotate(&d, &out, 1);
    send(&d, certs, 31..61).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let two = rotate(&d, &out, 2);
    send(&d, certs, 61..91).await;
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    (vec![one, two, out], key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_traffic_three_rotations_and_a_restart_verify_and_count_every_line() {
    let dir = TempDir::new("seal-day");
    let certs = make_certs(dir.path());
    let (state, key) = seal_keys(dir.path());
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = dir.join("out.ndjson");
    let d = start(&certs, &out, &state);
    // A day of 1440 "minutes" at 40 ms each is a minute of real time; a quarter of it per file
    // keeps the test short while every file gets many seal entries.
    let mut files = Vec::new();
    let mut next = 1;
    for n in 1..=3 {
        send(&d, &certs, next..next + 150).await;
        next += 150;
        files.push(rotate(&d, &out, n));
    }
    send(&d, &certs, next..next + 100).await;
    next += 100;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(stop)"), "{stderr}");
    // Each entry's digest is logged at info.
    assert!(stderr.contains("sealed lines 1–"), "{stderr}");
    assert!(stderr.contains(", epoch 1, digest "), "{stderr}");

    // Started again on the same file: the chain goes on.
    let d = start(&certs, &out, &state);
    send(&d, &certs, next..next + 50).await;
    next += 50;
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    files.push(out.clone());

    let total: u64 = files.iter().map(|f| lines_in(f)).sum();
    assert_eq!(total, next - 1);
    let (code, report) = verify(&key, &files);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["totals"]["lines_verified"], total, "{report:#}");
    assert_eq!(report["totals"]["unsealed_tail_lines"], 0);
    assert!(report["totals"]["entries"].as_u64().unwrap() > 20, "{report:#}");

    // The text report says so on its last line; a wrong key fails everything.
    let text = run(&["verify", "--key", &key, files[0].to_str().unwrap()], b"");
    assert!(String::from_utf8_lossy(&text.stdout).contains("OK: 1 file,"));
    let other = seal_keys(&dir.join("other")).1;
    let (code, _) = verify(&other, &files);
    assert_eq!(code, 1);
}

/// A failure in `report` for a file whose name ends with `file`, covering `line` when given.
fn has_failure(report: &serde_json::Value, file: &str, line: Option<u64>) -> bool {
    report["files"].as_array().unwrap().iter().any(|f| {
        f["findings"].as_array().unwrap().iter().any(|x| {
            x["severity"] == "failure"
                && x["file"].as_str().unwrap().ends_with(file)
                && line.is_none_or(|l| {
                    x["lines"]["first"].as_u64().is_some_and(|a| a <= l)
                        && x["lines"]["last"].as_u64().is_some_and(|b| b >= l)
                })
        })
    })
}

fn edit_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    edit(&mut lines);
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tampering_is_reported_by_file_and_lines() {
    let dir = TempDir::new("seal-tamper");
    let certs = make_certs(dir.path());
    let (files, key) = sealed_set(&dir.join("set"), &certs).await;
    let (code, report) = verify(&key, &files);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["lines_verified"], 90);

    type Tamper = Box<dyn Fn(&[PathBuf])>;
    // (what, tampering, file named, a line named)
    let cases: Vec<(&str, Tamper, &str, Option<u64>)> = vec![
        (
            "a changed byte in an old line",
            Box::new(|f| {
                let mut bytes = std::fs::read(&f[0]).unwrap();
                let at = bytes.iter().position(|&b| b == b'3').unwrap();
                bytes[at] = b'4';
                std::fs::write(&f[0], bytes).unwrap();
            }),
            "out.1",
            Some(3),
        ),
        (
            "a removed line",
            Box::new(|f| edit_lines(&f[1], |l| drop(l.remove(4)))),
            "out.2",
            Some(5),
        ),
        (
            "two lines swapped",
            Box::new(|f| edit_lines(&f[0], |l| l.swap(9, 10))),
            "out.1",
            Some(10),
        ),
        (
            "a line added",
            Box::new(|f| edit_lines(&f[1], |l| l.insert(12, record(999)))),
            "out.2",
            Some(13),
        ),
        (
            "the file cut short",
            Box::new(|f| edit_lines(&f[2], |l| l.truncate(25))),
            "out",
            Some(26),
        ),
        (
            "a seal entry removed",
            Box::new(|f| edit_lines(&seal_path_for(&f[0]), |l| drop(l.remove(1)))),
            "out.1",
            None,
        ),
        (
            "seal entries swapped",
            Box::new(|f| edit_lines(&seal_path_for(&f[1]), |l| l.swap(1, 2))),
            "out.2",
            None,
        ),
    ];
    for (i, (what, tamper, file, line)) in cases.iter().enumerate() {
        let copy = dir.join(&format!("case{i}"));
        std::fs::create_dir_all(&copy).unwrap();
        let mut copied = Vec::new();
        for f in &files {
            for p in [f.clone(), seal_path_for(f)] {
                std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
            }
            copied.push(copy.join(f.file_name().unwrap()));
        }
        tamper(&copied);
        let (code, report) = verify(&key, &copied);
        assert_eq!(code, 1, "{what}: {report:#}");
        assert!(
            has_failure(&report, file, *line),
            "{what}: expected a failure in {file} at {line:?}: {report:#}"
        );
    }

    // A middle file of the rotated set missing: named as a gap before the file after it.
    let (code, report) = verify(&key, &[files[0].clone(), files[2].clone()]);
    assert_eq!(code, 1, "{report:#}");
    let text = report.to_string();
    assert!(text.contains("a file is missing before this one"), "{report:#}");
    assert!(has_failure(&report, "out", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_state_cannot_rewrite_what_was_sealed_before_it_was_stolen() {
    let dir = TempDir::new("seal-forward");
    let certs = make_certs(dir.path());
    let (state, key) = seal_keys(dir.path());
    let out = dir.join("out");
    let d = start(&certs, &out, &state);
    send(&d, &certs, 1..21).await;
    // Sealed: lines 1–20 are under entries made with keys the thief will never hold.
    assert!(d.wait_for_log("sealed lines 1–", Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stolen = dir.join("stolen.state");
    std::fs::copy(&state, &stolen).unwrap();
    send(&d, &certs, 21..41).await;
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(verify(&key, std::slice::from_ref(&out)).0, 0);

    // The thief rewrites line 5 and re-seals everything after the first entry with the stolen
    // state, through the project's own sealer: the new entries can only carry later epochs.
    let seal = seal_path_for(&out);
    edit_lines(&out, |l| l[4] = record(555));
    edit_lines(&seal, |l| l.truncate(1));
    let len = std::fs::metadata(&out).unwrap().len();
    let (mut sealer, _) = Sealer::open(&stolen, &out, len, None).unwrap();
    sealer.seal(SealKind::Stop).unwrap();
    drop(sealer);
    let (code, report) = verify(&key, std::slice::from_ref(&out));
    assert_eq!(code, 1, "{report:#}");
    assert!(has_failure(&report, "out", None), "{report:#}");
    let text = report.to_string();
    assert!(text.contains("missing") || text.contains("MAC"), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_verifies_with_the_tail_and_the_repair() {
    let dir = TempDir::new("seal-kill");
    let certs = make_certs(dir.path());
    let (state, key) = seal_keys(dir.path());
    let out = dir.join("out");
    let mut d = start(&certs, &out, &state);

    // A background sender, four connections, until the daemon is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (stop, next, ca, addr) = (stop.clone(), next.clone(), certs.ca_der.clone(), d.addr);
        senders.push(tokio::spawn(async move {
            let mut c = Client::h1(addr, &ca).await;
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if c.try_request("POST", "/log", &[], record(id)).await.is_err() {
                    return;
                }
            }
        }));
    }
    assert!(d.wait_for_log("sealed lines 1–", Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.child.kill().unwrap();
    let _ = d.child.wait();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }

    // Killed: what was written after the last entry is the unsealed tail, a note, not a failure.
    let (code, report) = verify(&key, std::slice::from_ref(&out));
    assert_eq!(code, 0, "{report:#}");
    let written = lines_in(&out);
    let verified = report["totals"]["lines_verified"].as_u64().unwrap();
    let tail = report["totals"]["unsealed_tail_lines"].as_u64().unwrap();
    assert_eq!(verified + tail, written, "{report:#}");

    // A write cut short by the kill (SIGKILL can stop a large write(2) part way) leaves a torn
    // last line; made here so that it is certainly there.
    let torn = br#"{"sequence":999999,"request":{"Met"#;
    let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);

    let d = start(&certs, &out, &state);
    assert!(
        d.wait_for_log("(repair)", Duration::from_secs(5)),
        "{}",
        d.stderr()
    );
    send(&d, &certs, 1_000_000..1_000_010).await;
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let partial = std::fs::read(format!("{}.partial", out.display())).unwrap();
    assert_eq!(&partial[..partial.len() - 1], torn);

    let (code, report) = verify(&key, std::slice::from_ref(&out));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["totals"]["lines_verified"], lines_in(&out), "{report:#}");
    let text = report.to_string();
    assert!(text.contains("torn last line"), "{report:#}");
    assert!(text.contains("without a stop entry"), "{report:#}");
}

#[test]
fn settings_and_commands_refuse_what_cannot_work() {
    let dir = TempDir::new("seal-settings");
    let certs = make_certs(dir.path());
    let state = dir.join("seal.state");
    // A state that is not there, and sealing without a file output: exit 2, one line, naming it.
    for (args, needle) in [
        (
            vec![
                "--output",
                dir.join("o").to_str().unwrap(),
                "--seal",
                state.to_str().unwrap(),
            ],
            "LOGGER_SEAL: sealing state",
        ),
        (vec!["--seal", state.to_str().unwrap()], "--seal="),
    ] {
        let mut all = vec![
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ];
        all.extend(args);
        let out = run(&all, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let out = command()
        .args(["--output", "-"])
        .env("LOGGER_SEAL", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: LOGGER_SEAL="));

    // seal-keys: 0600, refuses to overwrite without --force; the advice on stderr.
    let made = run(&["seal-keys", "--state", state.to_str().unwrap()], b"");
    assert!(made.status.success());
    assert!(String::from_utf8_lossy(&made.stderr).contains("OFF this machine"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let again = run(&["seal-keys", "--state", state.to_str().unwrap()], b"");
    assert_eq!(again.status.code(), Some(2));
    assert!(again.stdout.is_empty());
    let forced = run(&["seal-keys", "--state", state.to_str().unwrap(), "--force"], b"");
    assert!(forced.status.success());
    assert_ne!(forced.stdout, made.stdout);

    // verify: bad arguments are 2.
    let key = String::from_utf8(forced.stdout).unwrap();
    let missing = run(
        &["verify", "--key", key.trim(), dir.join("nope").to_str().unwrap()],
        b"",
    );
    assert_eq!(missing.status.code(), Some(2));
    let bad_key = run(&["verify", "--key", "mlseal1-zz", state.to_str().unwrap()], b"");
    assert_eq!(bad_key.status.code(), Some(2));
    let no_files = run(&["verify", "--key", key.trim()], b"");
    assert_eq!(no_files.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_entries_and_health_stays_up() {
    let dir = TempDir::new("seal-metrics");
    let certs = make_certs(dir.path());
    let (state, _key) = seal_keys(dir.path());
    let out = dir.join("out");
    let d = Start::new(&certs)
        .args(["--output", out.to_str().unwrap(), "--admin-addr", "127.0.0.1:0"])
        .env("LOGGER_SEAL", state.to_str().unwrap())
        .env("LOGGER_SEAL_INTERVAL", INTERVAL)
        .start();
    send(&d, &certs, 1..10).await;
    assert!(d.wait_for_log("sealed lines 1–", Duration::from_secs(5)));
    let admin = d.admin_addr();
    let health = http_get(admin, "GET", "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, r#"{"status":"ok"}"#));
    let text = http_get(admin, "GET", "/metrics").await.body;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} not in {text}"))
    };
    assert!(value("ml_api_logger_seal_entries_total") >= 2.0);
    assert_eq!(value("ml_api_logger_seal_failures_total"), 0.0);
    assert!(value("ml_api_logger_seal_last_timestamp_seconds") > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_says_whether_the_seals_verify() {
    let dir = TempDir::new("seal-report");
    let certs = make_certs(dir.path());
    let (files, key) = sealed_set(&dir.join("set"), &certs).await;
    let report = |files: &[PathBuf]| {
        let mut args = vec![
            "report".to_string(),
            "--out".into(),
            "-".into(),
            "--key".into(),
            key.clone(),
        ];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let html = report(&files);
    let first = &html[..html.find("id=\"sensors\"").unwrap()];
    assert!(first.contains("Seals verify"), "{first}");
    assert!(!html.contains("do not verify"));
    // One changed byte in the middle file: the first screen says so, and names the lines.
    let text = std::fs::read_to_string(&files[1])
        .unwrap()
        .replacen("\"sequence\":40", "\"sequence\":41", 1);
    std::fs::write(&files[1], text).unwrap();
    let html = report(&files);
    let first = &html[..html.find("id=\"sensors\"").unwrap()];
    assert!(first.contains("Seals do not verify"), "{first}");
    assert!(html.contains("lines "), "the failing lines are named");
}
