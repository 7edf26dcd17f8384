//! Correlation by `sequence` and duplicate suppression, seen from outside: retries are written
//! once, and the shutdown summary counts exactly what a simulated sensor did.

use crate::common::*;

/// The number after `label ` in the correlation part of the summary line.
fn count(summary: &str, label: &str) -> u64 {
    let summary = &summary[summary.find("correlation:").expect("correlation summary")..];
    let at = summary
        .find(&format!("{label} "))
        .unwrap_or_else(|| panic!("{label} not in {summary}"));
    summary[at + label.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_sensor_is_counted_exactly() {
    let s = serve_to_file("corr", |s| s.args(["--response-timeout", "1s"]));
    let mut c = s.h1().await;
    // A pair, its retries, an orphan response, an unanswered request.
    assert_eq!(
        c.post(request(1).note("a")).await.json(),
        serde_json::json!({"accepted": 1})
    );
    assert_eq!(
        c.post(request(1).note("a")).await.json(),
        serde_json::json!({"accepted": 1, "duplicates": 1})
    );
    // Whitespace differences are the same record once minified.
    assert_eq!(
        c.post(request(1).note("a").pretty()).await.json()["duplicates"],
        1
    );
    let mut other = s.h2().await;
    assert_eq!(other.post(response(1).note("a")).await.status, 200);
    assert_eq!(other.post(response(2).note("a")).await.status, 200);
    assert_eq!(c.post(request(3).note("never answered")).await.status, 200);
    // The sensor restarts its numbering: same sequence, other bytes.
    assert_eq!(c.post(request(10).note("before restart")).await.status, 200);
    assert_eq!(c.post(response(10).note("before restart")).await.status, 200);
    let restarted = format!(
        "{}\n{}\n",
        request(10).note("after restart"),
        response(10).note("after restart")
    );
    assert_eq!(c.post(restarted).await.status, 200);
    // A batch that repeats one record and carries a new one.
    let r = c
        .post(format!("[{}, {}]", request(20).note("b"), request(1).note("a")))
        .await;
    assert_eq!(r.json(), serde_json::json!({"accepted": 2, "duplicates": 1}));

    // Let the unanswered ones age out (response timeout 1 s; the sweep runs every second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0);
    let summary = stderr
        .lines()
        .find(|l| l.contains("stopped: "))
        .unwrap()
        .to_string();
    assert_eq!(count(&summary, "requests"), 5, "{summary}");
    assert_eq!(count(&summary, "responses"), 4, "{summary}");
    assert_eq!(count(&summary, "matched"), 3, "{summary}");
    assert_eq!(count(&summary, "orphan responses"), 1, "{summary}");
    assert_eq!(count(&summary, "unanswered"), 2, "{summary}");
    assert_eq!(count(&summary, "duplicates"), 3, "{summary}");
    assert_eq!(count(&summary, "sequence reuses"), 2, "{summary}");

    let lines = read_ndjson(&s.out);
    assert_eq!(lines.len(), 9, "every record once, retries not again");
    let ones = lines
        .iter()
        .filter(|l| l["sequence"] == 1 && l.get("request").is_some())
        .count();
    assert_eq!(ones, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlate_by_sequence_ignores_the_sender_address() {
    let dir = TempDir::new("corr-seq");
    let certs = make_certs(dir.path());
    for (mode, matched) in [("address", 0), ("sequence", 1)] {
        // Every address, IPv4 and IPv6: one machine, two sender addresses.
        let mut start = Start::new(&certs).args(["--correlate-by", mode]);
        start.args.drain(0..2);
        let d = start.start();
        let port = d.addr.port();
        let mut v4 = Client::h1(format!("127.0.0.1:{port}").parse().unwrap(), &certs.ca_der).await;
        let mut v6 = Client::h1(format!("[::1]:{port}").parse().unwrap(), &certs.ca_der).await;
        assert_eq!(v4.post(request(5).note("x")).await.status, 200);
        assert_eq!(v6.post(response(5).note("a")).await.status, 200);
        let (_, stderr) = d.stop();
        let summary = stderr
            .lines()
            .find(|l| l.contains("stopped: "))
            .unwrap()
            .to_string();
        assert_eq!(count(&summary, "matched"), matched, "{mode}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_under_a_million_unanswered_sequences() {
    let dir = TempDir::new("corr-mem");
    let certs = make_certs(dir.path());
    // Nothing to read back: the output goes nowhere.
    let d = Start::new(&certs).args(["--output", "/dev/null"]).start();
    let pid = d.child.id();
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
    };
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    let mut at_pending_cap = 0;
    for batch in 0..1000u64 {
        let mut body = String::with_capacity(64 * 1000);
        for i in 0..1000 {
            body.push_str(&format!("{}\n", request(batch * 1000 + i).uri("/")));
        }
        assert_eq!(c.post(body).await.status, 200);
        // The pending table is full at 100,000 (the default cap) and the window at 200,000.
        if batch == 300 {
            at_pending_cap = rss();
        }
    }
    let at_end = rss();
    eprintln!(
        "a million unanswered sequences: RSS {at_pending_cap} MiB at 300,000, {at_end} MiB at 1,000,000"
    );
    let (_, stderr) = d.stop();
    let summary = stderr
        .lines()
        .find(|l| l.contains("stopped: "))
        .unwrap()
        .to_string();
    assert_eq!(count(&summary, "requests"), 1_000_000);
    assert_eq!(count(&summary, "unanswered"), 900_000, "{summary}");
    assert!(
        at_end <= at_pending_cap + 16,
        "resident memory grew from {at_pending_cap} MiB to {at_end} MiB after the tables were full"
    );
}
