//! `ml_api_logger send` against the real daemon: the vendor's pretty-printed examples, a
//! 100,000-record NDJSON file, a Go-program log and an array arrive record for record; a daemon
//! that is not up yet, or that answers 503 while its disk is full, still gets everything once;
//! refusals and bad arguments give the documented exit codes.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn url(d: &Daemon) -> String {
    format!("https://127.0.0.1:{}/log", d.addr.port())
}

fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(str::to_string).collect()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `ml_api_logger send ARGS` started in the background, its stderr kept.
fn send_in_background(args: &[&str]) -> Reaped {
    Reaped(
        command()
            .arg("send")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Waits for a background `send`: it must succeed, and must have had to retry.
fn retried_to_the_end(mut send: Reaped) {
    let code = wait_exit(&mut send, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut send.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, 0, "{stderr}");
    // The summary line ends "…, N retries".
    let retries: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("send to ")?.strip_suffix(" retries"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no retry count: {stderr}"));
    assert!(retries > 0, "it had to retry: {stderr}");
}

#[test]
fn the_vendor_examples_pretty_printed() {
    let s = serve_to_file("send-vendor", |s| s);
    std::fs::write(s.dir.join("request.json"), REQUEST_FIXTURE).unwrap();
    std::fs::write(s.dir.join("response.json"), RESPONSE_FIXTURE).unwrap();
    let out = run(
        &[
            "send",
            "--url",
            &url(&s.daemon),
            "--ca",
            s.certs.ca.to_str().unwrap(),
            s.dir.join("request.json").to_str().unwrap(),
            s.dir.join("response.json").to_str().unwrap(),
        ],
        b"",
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("accepted     2"), "{stderr}");
    assert!(out.stdout.is_empty(), "the summary goes to stderr");
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
    assert_eq!(
        lines(&s.out),
        vec![minified(REQUEST_FIXTURE), minified(RESPONSE_FIXTURE)]
    );
}

#[test]
fn a_100k_record_ndjson_file_arrives_record_for_record() {
    let s = serve_to_file("send-100k", |s| s);
    let mut input = String::new();
    for seq in 0..50_000u64 {
        let from = -(seq as i64);
        let q = request(seq).method("POST").uri("/api/v1/metrics");
        let r = response(seq).status("200");
        input.push_str(&format!("{}\n", q.body(serde_json::json!({ "from": from }))));
        input.push_str(&format!("{}\n", r.body(serde_json::json!({ "clock": seq }))));
    }
    let file = s.dir.join("records.ndjson");
    std::fs::write(&file, &input).unwrap();
    let started = Instant::now();
    let out = run(
        &[
            "send",
            "--url",
            &url(&s.daemon),
            "--ca",
            s.certs.ca.to_str().unwrap(),
            "--batch",
            "100",
            "--concurrency",
            "4",
            file.to_str().unwrap(),
        ],
        b"",
    );
    let took = started.elapsed();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    eprintln!(
        "100,000 records in batches of 100 over 4 connections: {:.2} s, {:.0} records/s",
        took.as_secs_f64(),
        100_000.0 / took.as_secs_f64()
    );
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
    // Four connections interleave the batches; each record arrives once, as sent.
    let mut got = lines(&s.out);
    let mut want: Vec<String> = input.lines().map(str::to_string).collect();
    assert_eq!(got.len(), 100_000);
    got.sort();
    want.sort();
    assert!(got == want, "the daemon's output differs from the input");
    assert!(
        stderr.contains("accepted     100000 (0 already written"),
        "{stderr}"
    );
}

#[test]
fn a_go_program_log_and_an_array_arrive_in_order() {
    let s = serve_to_file("send-go", |s| s);
    let records = exchanges(1, 300);
    let go = go_log(&records);
    let array = serde_json::to_string_pretty(&exchanges(1000, 50)).unwrap();
    std::fs::write(s.dir.join("array.json"), &array).unwrap();
    // The Go log on stdin ("-"), then the array file.
    let out = run(
        &[
            "send",
            "--url",
            &url(&s.daemon),
            "--ca",
            s.certs.ca.to_str().unwrap(),
            "--batch",
            "7",
            "-",
            s.dir.join("array.json").to_str().unwrap(),
        ],
        go.as_bytes(),
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
    let want: Vec<String> = records
        .iter()
        .chain(exchanges(1000, 50).iter())
        .map(|r| minified(&serde_json::to_string_pretty(r).unwrap()))
        .collect();
    let got = lines(&s.out);
    assert_eq!(got.len(), 700);
    assert!(got == want, "the daemon's output differs from the input");
}

#[test]
fn connection_errors_are_retried_until_the_daemon_is_up() {
    let dir = TempDir::new("send-later");
    let certs = make_certs(dir.path());
    let log = dir.join("log.ndjson");
    let input = go_log(&exchanges(1, 10));
    std::fs::write(dir.join("in.json"), &input).unwrap();
    let port = free_port();
    let send = send_in_background(&[
        "--url",
        &format!("https://127.0.0.1:{port}/log"),
        "--ca",
        certs.ca.to_str().unwrap(),
        dir.join("in.json").to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut start = Start::new(&certs).args(["--output", log.to_str().unwrap()]);
    let at = start.args.iter().position(|a| a == "--port").unwrap();
    start.args[at + 1] = port.to_string();
    let d = start.start();
    retried_to_the_end(send);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let want: Vec<String> = exchanges(1, 10)
        .iter()
        .map(|r| minified(&r.to_string()))
        .collect();
    assert_eq!(lines(&log), want);
}

#[test]
fn while_the_disk_is_full_the_daemon_answers_503_and_everything_arrives_once() {
    let dir = TempDir::new("send-503");
    let certs = make_certs(dir.path());
    let disk = match Tmpfs::mount(&dir.join("disk"), "1m") {
        Ok(disk) => disk,
        Err(why) => return cannot_run(&format!("cannot mount a tmpfs (needs root): {why}")),
    };
    let log = disk.0.join("log.ndjson");
    let d = Start::new(&certs)
        .args(["--output", log.to_str().unwrap()])
        .start();
    // Fill the disk.
    let filler = disk.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![b'x'; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let input = go_log(&exchanges(1, 20));
    std::fs::write(dir.join("in.json"), &input).unwrap();
    let send = send_in_background(&[
        "--url",
        &url(&d),
        "--ca",
        certs.ca.to_str().unwrap(),
        "--batch",
        "4",
        "--concurrency",
        "2",
        dir.join("in.json").to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lines(&log).is_empty(), "nothing can be written yet");
    std::fs::remove_file(&filler).unwrap();
    retried_to_the_end(send);
    let (code, daemon_stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(
        daemon_stderr.contains("503") || daemon_stderr.to_lowercase().contains("no space"),
        "{daemon_stderr}"
    );
    let mut got = lines(&log);
    let mut want: Vec<String> = exchanges(1, 20)
        .iter()
        .map(|r| minified(&r.to_string()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every record once");
}

#[test]
fn refusals_untrusted_servers_and_bad_arguments() {
    let s = serve_to_file("send-refused", |s| s.arg("--strict"));
    let d = &s.daemon;
    let ca = s.certs.ca.to_str().unwrap();
    let bad = "{\"sequence\":1,\"request\":{\"Method\":7,\"RequestURI\":\"/\"}}\nnot json\n";
    let input = format!("{}\n{bad}", minified(REQUEST_FIXTURE));
    let out = run(&["send", "--url", &url(d), "--ca", ca], input.as_bytes());
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("accepted     1"), "{stderr}");
    assert!(stderr.contains("refused      1 (1 with 422)"), "{stderr}");
    assert!(
        stderr.contains("stdin:2: 422:") && stderr.contains("request.Method"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not sent     1") && stderr.contains("stdin:3"),
        "{stderr}"
    );

    // No --ca: the system's roots do not know the test CA.
    let out = run(&["send", "--url", &url(d)], REQUEST_FIXTURE.as_bytes());
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unreachable  1") && stderr.contains("--ca"),
        "{stderr}"
    );
    // --insecure accepts it.
    let out = run(
        &["send", "--url", &url(d), "--insecure"],
        REQUEST_FIXTURE.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    for (args, why) in [
        (vec!["send", "--url", "http://127.0.0.1:1/log"], "https:// only"),
        (vec!["send", "--ca", "/nonexistent/ca.crt"], "no such file"),
        (
            vec!["send", "--ca", ca, "/nonexistent/records.json"],
            "no such file",
        ),
        (vec!["send", "--ca", ca, "--insecure"], "cannot be used with"),
        (vec!["send", "--batch", "0"], "--batch"),
    ] {
        let out = run(&args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(why), "{args:?}: {}", stderr_of(&out));
    }
}
