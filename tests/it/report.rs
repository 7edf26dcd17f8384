//! `ml_api_logger report`: a log with known content (three sensors over five hours, unanswered
//! requests, an orphan, a duplicate, a sequence reset, nonconforming records, a redaction mark,
//! text that would be markup) makes a page that a real browser (headless Chromium) loads with
//! no console message and no network request, showing the expected numbers where they belong,
//! each equal to `inspect --json`'s; a screenshot is kept for people to look at. A large log is
//! reported in bounded memory.
//!
//! Chromium is needed: missing, the browser test skips with a note, except in CI (`CI=true`),
//! where it fails.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// 2025-11-30T08:00:00Z.
const START_MS: i64 = 1_764_489_600_000;
const MARK: &str = "[redacted hmac:0123456789abcdef]";

fn at(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

fn req(seq: u64, uri: &str, peer: &str, ms: i64, auth: bool, body: usize) -> String {
    let header = if auth {
        format!(r#"{{"Authorization":["{MARK}"],"Accept":["application/json"]}}"#)
    } else {
        r#"{"Accept":["application/json"]}"#.to_string()
    };
    format!(
        r#"{{"sequence":{seq},"request":{{"Method":"POST","Host":"ml.example","RequestURI":"{uri}","Header":{header}}},"request_body":{{"pad":"{}"}},"_received_at":"{}","_peer":"{peer}"}}"#,
        "x".repeat(body),
        at(ms)
    )
}

fn resp(seq: u64, status: u16, peer: &str, ms: i64) -> String {
    format!(
        r#"{{"sequence":{seq},"response_status_code":{status},"response_headers":{{}},"response_body":{{"ok":true}},"_received_at":"{}","_peer":"{peer}"}}"#,
        at(ms)
    )
}

/// What the generated log is known to hold.
struct Known {
    /// Per sensor address: requests, responses, unanswered.
    sensors: Vec<(&'static str, u64, u64, u64)>,
    /// Line of the first nonconforming record.
    nonconforming_line: u64,
    /// Times the mark appears.
    marks: u64,
}

/// Three sensors, one request every 3 minutes each over five hours; sensor 2 leaves every
/// 20th request unanswered, sensor 3 restarts its numbering half way; plus an orphan, a
/// duplicate, two nonconforming records, a line that is no JSON and a URI that is markup.
fn write_known_log(path: &Path) -> Known {
    let peers = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    let mut lines: Vec<String> = Vec::new();
    let mut counts = [(0u64, 0u64, 0u64); 3];
    let mut seqs = [0u64; 3];
    let mut marks = 0;
    for step in 0..100i64 {
        for (i, peer) in peers.iter().enumerate() {
            let ms = START_MS + step * 180_000 + i as i64 * 1000;
            if i == 2 && step == 50 {
                seqs[2] = 0; // the restart
            }
            seqs[i] += 1;
            let seq = seqs[i];
            let uri = match step % 4 {
                0 => "/api/v1/predict",
                1 | 2 => "/api/v1/metrics",
                _ => "/api/v1/<b>bold</b>&amp",
            };
            let auth = i == 0;
            marks += u64::from(auth);
            let body = if step == 42 && i == 1 { 5000 } else { 100 };
            lines.push(req(seq, uri, &format!("{peer}:4{i}123"), ms, auth, body));
            counts[i].0 += 1;
            if i == 1 && step % 20 == 0 {
                counts[i].2 += 1;
                continue;
            }
            let wait = 20 + (step % 10) * 30;
            let status = if step % 10 == 9 { 503 } else { 200 };
            lines.push(resp(seq, status, &format!("{peer}:5{i}123"), ms + wait));
            counts[i].1 += 1;
        }
    }
    // A sensor's retry: the same record again (a duplicate, counted as a request).
    let dup = lines[0].clone();
    lines.push(dup);
    counts[0].0 += 1;
    marks += 1;
    // An orphan response.
    lines.push(resp(9999, 200, "10.0.0.1:1", START_MS + 5 * 3_600_000));
    counts[0].1 += 1;
    let nonconforming_line = lines.len() as u64 + 1;
    lines.push(format!(
        r#"{{"sequence":7,"request":{{"Method":7,"RequestURI":"/"}},"_peer":"10.0.0.9:1","_received_at":"{}"}}"#,
        at(START_MS)
    ));
    lines.push(r#"{"request":{"Method":"GET","RequestURI":"/"}}"#.into());
    lines.push("<script>alert(1)</script> is not JSON".into());
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
    Known {
        sensors: peers
            .iter()
            .zip(counts)
            .map(|(p, (q, r, u))| (*p, q, r, u))
            .collect(),
        nonconforming_line,
        marks,
    }
}

/// Where to keep what a person may want to look at after the run (CI keeps it as an artifact).
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser, or `None` (outside CI) when there is none.
fn chromium() -> Option<PathBuf> {
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|d| d.join(name).is_file())
        {
            return Some(dir.join(name));
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is needed to test the report in a browser (.ci/run installs it)");
    }
    eprintln!("SKIPPED: no chromium on PATH; the report was not checked in a browser");
    None
}

/// Runs headless Chromium on `page` with `extra` arguments; returns (stdout, stderr).
fn browse(chromium: &Path, page: &Path, extra: &[String]) -> (String, String) {
    let profile = TempDir::new("report-chromium");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            // Any name looked up fails: a request the page should not make cannot leave.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let code = wait_exit(&mut child, Duration::from_secs(180));
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert_eq!(code, 0, "chromium failed:\n{err}");
    (out, err)
}

/// Console messages (errors, policy violations, failed loads) in Chromium's log.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every element marked `data-count="name"` (with its `data-key`, if any) and its number.
fn marked_counts(html: &str) -> Vec<(String, Option<String>, u64)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("data-count=\"") {
        rest = &rest[i + 12..];
        let name = rest[..rest.find('"').unwrap()].to_string();
        // The tag ends at the first `>` outside a quoted attribute value (we start inside one).
        let mut quoted = true;
        let tag_end = rest
            .char_indices()
            .find(|(_, c)| {
                if *c == '"' {
                    quoted = !quoted;
                }
                *c == '>' && !quoted
            })
            .map(|(i, _)| i)
            .unwrap();
        let attrs = &rest[..tag_end];
        let key = attrs.find("data-key=\"").map(|k| {
            let v = &attrs[k + 10..];
            unescape(&v[..v.find('"').unwrap()])
        });
        let text_end = rest[tag_end..].find('<').unwrap();
        let text = &rest[tag_end + 1..tag_end + text_end];
        let n: u64 = text
            .replace(',', "")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {text:?} is not a count"));
        out.push((name, key, n));
    }
    out
}

/// The numbers of the sensors table's row for `sensor`.
fn sensor_row(html: &str, sensor: &str) -> Vec<u64> {
    let cell = format!("<td class=\"code\">{sensor}</td>");
    let at = html.find(&cell).unwrap_or_else(|| panic!("no row for {sensor}"));
    let row = &html[at..at + html[at..].find("</tr>").unwrap()];
    row.split("data-v=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The page's own checks, browser or not: nothing it could fetch, nothing from the log as markup.
fn assert_self_contained(html: &str) {
    for banned in [
        "http://",
        "https://",
        "<script src",
        "<link",
        "@import",
        "url(",
        "<img",
        "<iframe",
    ] {
        assert!(!html.contains(banned), "the page holds {banned:?}");
    }
    assert_eq!(html.matches("<script").count(), 1, "one inline script, ours");
    assert!(
        !html.contains("<b>bold</b>"),
        "markup from the log must be escaped"
    );
}

#[test]
fn a_known_log_reads_right_in_a_browser() {
    let dir = TempDir::new("report-known");
    let log = dir.join("log.ndjson");
    let known = write_known_log(&log);
    let page = artifacts().join("report.html");
    let out = run(
        &[
            "report",
            "--out",
            page.to_str().unwrap(),
            "--title",
            "Audit <test>",
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("<h1>Audit &lt;test&gt;</h1>"));

    let inspect = run(&["inspect", "--json", log.to_str().unwrap()], b"");
    let s: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();

    let Some(chromium) = chromium() else { return };
    let (dom, log_lines) = browse(&chromium, &page, &["--dump-dom".to_string()]);
    let console = console_lines(&log_lines);
    assert!(console.is_empty(), "console messages:\n{}", console.join("\n"));
    assert!(
        dom.contains("Audit &lt;test&gt;"),
        "the browser rendered the page"
    );
    assert!(!dom.contains("<b>bold</b>"));

    // Every marked count equals inspect's, and every count inspect has is on the page.
    let marked = marked_counts(&dom);
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (name, key, n) in &marked {
        let expected = match key {
            None => s[name.as_str()].as_u64(),
            Some(k) => s[name.as_str()]
                .as_array()
                .and_then(|list| list.iter().find(|c| c["value"] == k.as_str()))
                .and_then(|c| c["count"].as_u64()),
        };
        assert_eq!(
            Some(*n),
            expected,
            "{name} {key:?}: page {n}, inspect {expected:?}"
        );
        *seen.entry(name.clone()).or_default() += 1;
    }
    for name in [
        "bytes",
        "records",
        "requests",
        "responses",
        "conforming",
        "nonconforming",
        "unreadable",
        "problems_total",
        "pairs",
        "orphan_responses",
        "unanswered_requests",
        "duplicates",
        "sequence_reuses",
        "sequence_resets",
        "sequence_min",
        "sequence_max",
        "distinct_request_uris",
        "redacted_values",
        "distinct_redaction_marks",
        "other_request_uris",
    ] {
        assert!(seen.contains_key(name), "{name} is not on the page");
    }
    assert_eq!(
        seen.get("top_request_uris").copied(),
        s["top_request_uris"].as_array().map(|a| a.len() as u64)
    );
    assert_eq!(
        seen.get("top_status_codes").copied(),
        s["top_status_codes"].as_array().map(|a| a.len() as u64)
    );

    // The numbers in their places: what the log is known to hold.
    let n = |k: &str| s[k].as_u64().unwrap();
    let requests: u64 = known.sensors.iter().map(|x| x.1).sum();
    assert_eq!(n("requests"), requests);
    assert_eq!(
        n("unanswered_requests"),
        known.sensors.iter().map(|x| x.3).sum::<u64>()
    );
    assert_eq!(
        (n("sequence_resets"), n("orphan_responses"), n("duplicates")),
        (1, 1, 1)
    );
    assert_eq!((n("nonconforming"), n("unreadable")), (2, 1));
    for (peer, q, r, u) in &known.sensors {
        let row = sensor_row(&dom, peer);
        assert_eq!(&row[..2], &[*q, *r], "{peer}: requests, responses");
        assert_eq!(row[3], *u, "{peer}: unanswered");
    }
    assert_eq!(sensor_row(&dom, "10.0.0.3")[6], 1, "the reset is sensor 3's");
    assert_eq!(sensor_row(&dom, "10.0.0.1")[4], 1, "the orphan is sensor 1's");
    // The first screen says the log has problems and when it was sent.
    let first = &dom[..dom.find("id=\"sensors\"").unwrap()];
    assert!(first.contains("Records that do not conform"), "{first}");
    assert!(
        first.contains("2025-11-30 08:00:00 to 2025-11-30 13:00:00 UTC (5 h)"),
        "the period"
    );
    assert!(first.contains("Requests per 5 min by sensor"), "the timeline");
    assert!(first.contains("Not sealed"));
    // The nonconforming record with its line; the mark and how often; the largest body.
    assert!(dom.contains(&format!("log.ndjson:{}</td>", known.nonconforming_line)));
    assert!(dom.contains(&format!(
        "<td class=\"code\">{MARK}</td><td class=\"code\">Authorization</td><td class=\"num\" data-v=\"{}\"",
        known.marks
    )));
    let bodies = &dom[dom.find("id=\"bodies\"").unwrap()..];
    assert!(
        bodies.contains("title=\"5010 bytes\""),
        "the largest request body first"
    );
    // The wait times: 20 ms to 290 ms, so the median is under 200 ms and the longest 290 ms.
    let waits = &dom[dom.find("id=\"waits\"").unwrap()..dom.find("id=\"problems\"").unwrap()];
    assert!(waits.contains("290 ms</div><div class=\"k\">longest"), "{waits}");

    // What a person sees: kept, and named in the test's output.
    let shot = artifacts().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log_lines) = browse(
        &chromium,
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".to_string(),
        ],
    );
    assert!(console_lines(&log_lines).is_empty());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot of a page"
    );
    eprintln!("report screenshot: {}", shot.display());
    eprintln!("report page: {}", page.display());
}

#[test]
fn bad_arguments_and_stdout() {
    let dir = TempDir::new("report-args");
    let log = dir.join("log.ndjson");
    std::fs::write(&log, resp(1, 200, "10.0.0.1:1", START_MS) + "\n").unwrap();
    assert_eq!(run(&["report", "/nonexistent/log"], b"").status.code(), Some(2));
    assert_eq!(run(&["report"], b"").status.code(), Some(2), "a log is required");
    let out = run(
        &[
            "report",
            "--out",
            "/nonexistent/dir/r.html",
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &["report", "--out", "-", "-"],
        std::fs::read(&log).unwrap().as_slice(),
    );
    assert_eq!(out.status.code(), Some(0));
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    assert_self_contained(&html);
    // A sealed file, and the tail a crash cut short kept beside it: both on the first screen.
    std::fs::write(dir.join("log.ndjson.seal"), "").unwrap();
    std::fs::write(dir.join("log.ndjson.partial"), "{\"sequence\":2,\n").unwrap();
    let out = run(&["report", "--out", "-", log.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0));
    let html = String::from_utf8(out.stdout).unwrap();
    let first = &html[..html.find("id=\"sensors\"").unwrap()];
    assert!(first.contains("Seals not checked"), "{first}");
    assert!(first.contains("15 B cut short by a crash"), "{first}");
    assert!(html.contains("sealed, not checked: no --key given"));
    // A key that is not one is a bad argument.
    let out = run(
        &["report", "--out", "-", "--key", "k", log.to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let help = run(&["report", "--help"], b"");
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["--out", "--key", "--title", "data-count", "bounded memory"] {
        assert!(help.contains(word), "{word} in:\n{help}");
    }
}

/// Writes an annotated log of about `bytes` bytes from 300 senders (past the sensor cap) with
/// 20,000 distinct URIs (past the URI cap) over 30 days (coarse buckets); returns its exchanges.
fn write_large_log(path: &Path, bytes: u64) -> u64 {
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut written, mut n) = (0u64, 0u64);
    while written < bytes {
        n += 1;
        let peer = format!("10.1.{}.{}:4000", n % 300 / 250, n % 300 % 250);
        let ms = START_MS + (n as i64 % 2_000_000) * 1300;
        let q = req(
            n,
            &format!("/api/v1/m/{}", n % 20_000),
            &peer,
            ms,
            n % 7 == 0,
            200,
        );
        let r = resp(n, 200, &peer, ms + (n as i64 % 500));
        for rec in [q, r] {
            f.write_all(rec.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
            written += rec.len() as u64 + 1;
        }
    }
    f.flush().unwrap();
    n
}

/// 200 MiB, run apart with the heavy tests (`.ci/run` does).
#[test]
#[ignore]
fn a_200_mib_log_in_bounded_memory() {
    let dir = TempDir::new("report-large");
    let log = dir.join("large.ndjson");
    let exchanges = write_large_log(&log, 200 << 20);
    let page = dir.join("report.html");
    let mut child = command()
        .args(["report", "--out", page.to_str().unwrap(), log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let (code, peak_kib) = wait_with_peak_rss(&mut child, Duration::from_secs(900));
    let took = t.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    let counts: HashMap<String, u64> = marked_counts(&html)
        .into_iter()
        .filter(|(_, k, _)| k.is_none())
        .map(|(n, _, v)| (n, v))
        .collect();
    assert_eq!(counts["pairs"], exchanges);
    assert_eq!(counts["requests"], exchanges);
    assert!(html.contains("others ("), "senders past the cap are summed");
    eprintln!(
        "report of 200 MiB ({} records): {:.1} s, peak RSS {} MiB, page {} KiB",
        2 * exchanges,
        took.as_secs_f64(),
        peak_kib / 1024,
        html.len() / 1024
    );
    // The bound: inspect's correlation tables, plus the report's capped tables — not the log.
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB");
    assert!(html.len() < 1 << 20, "the page is bounded too");
}
