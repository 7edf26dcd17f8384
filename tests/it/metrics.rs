//! The admin listener: `/metrics` scraped during and after known traffic counts exactly what
//! was sent and parses strictly as the Prometheus text format; `/healthz`; the certificate
//! expiry follows a SIGHUP reload; a crowd on the admin port never reaches the TLS listener.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const DAY: f64 = 86_400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_count_equals_what_was_sent() {
    let s = serve_to_file("metrics", |s| s.args(["--admin-addr", "127.0.0.1:0"]));
    let admin = s.daemon.admin_addr();
    assert!(s
        .daemon
        .stderr()
        .contains(&format!("admin http://{admin}/metrics")));

    // Before any traffic.
    let m = scrape(admin).await;
    for kind in ["request", "response", "nonconforming"] {
        assert_eq!(
            m.n(
                "ml_api_logger_records_total",
                &[("kind", kind), ("outcome", "written")]
            ),
            0
        );
    }
    assert_eq!(m.n("ml_api_logger_output_healthy", &[]), 1);
    assert_eq!(m.n("ml_api_logger_connections_total", &[]), 0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(m.n("ml_api_logger_build_info", &[("version", version)]), 1);
    // The test certificate is valid for 90 days.
    let expiry = m.get("ml_api_logger_certificate_expiry_timestamp_seconds", &[]);
    assert!((expiry - (now() + 90.0 * DAY)).abs() < DAY, "{expiry}");
    for (name, t) in [
        ("ml_api_logger_records_total", "counter"),
        ("ml_api_logger_output_queue_requests", "gauge"),
        ("ml_api_logger_output_write_seconds", "histogram"),
        ("ml_api_logger_output_sync_seconds", "histogram"),
        ("ml_api_logger_output_batch_records", "histogram"),
        ("ml_api_logger_response_wait_seconds", "histogram"),
        ("ml_api_logger_correlation_pending", "gauge"),
        ("ml_api_logger_build_info", "gauge"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(t), "{name}");
    }

    // Part one: 5 requests and 3 of their responses, one record per POST, on one connection.
    let mut c = s.h1().await;
    for seq in 1..=5 {
        assert_eq!(c.post(request(seq)).await.status, 200);
    }
    for seq in 1..=3 {
        assert_eq!(c.post(response(seq)).await.status, 200);
    }
    let m = scrape(admin).await;
    let records = |m: &prom::Scrape, kind, outcome| {
        m.n(
            "ml_api_logger_records_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(records(&m, "request", "written"), 5);
    assert_eq!(records(&m, "response", "written"), 3);
    assert_eq!(m.n("ml_api_logger_posts_accepted_total", &[]), 8);
    assert_eq!(m.n("ml_api_logger_http_responses_total", &[("status", "200")]), 8);
    assert_eq!(m.n("ml_api_logger_connections_open", &[]), 1);
    assert_eq!(m.n("ml_api_logger_connections_total", &[]), 1);
    assert_eq!(m.n("ml_api_logger_correlation_matched_total", &[]), 3);
    assert_eq!(m.n("ml_api_logger_correlation_pending", &[]), 2);
    assert_eq!(m.n("ml_api_logger_response_wait_seconds_count", &[]), 3);
    assert_eq!(m.n("ml_api_logger_output_batch_records_sum", &[]), 8);
    assert_eq!(
        m.n("ml_api_logger_output_bytes_total", &[]),
        std::fs::metadata(&s.out).unwrap().len()
    );

    // Part two, on a second connection over HTTP/2: a batch, a retry, a record that does not
    // conform, an orphan response, and refusals.
    let mut c2 = s.h2().await;
    assert_eq!(
        c2.post(format!("[{},{}]", request(6), response(6))).await.status,
        200
    );
    assert_eq!(c2.post(request(1)).await.json()["duplicates"], 1);
    assert_eq!(c2.post(response(6)).await.json()["duplicates"], 1);
    assert_eq!(
        c2.post(r#"{"note":"no sequence"}"#).await.json()["nonconforming"],
        1
    );
    assert_eq!(c2.post(response(99)).await.status, 200);
    assert_eq!(c2.post("not json").await.status, 400);
    assert_eq!(c2.post("[]").await.status, 400);
    let r = c2
        .request("POST", "/log", &[("content-encoding", "br")], request(7))
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(c2.request("GET", "/log", &[], "").await.status, 405);
    assert_eq!(c2.request("GET", "/nowhere", &[], "").await.status, 404);
    assert_eq!(c2.request("GET", "/healthz", &[], "").await.status, 200);
    drop(c);
    drop(c2);

    // After: the connections close soon after the clients went away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(admin).await;
        if m.n("ml_api_logger_connections_open", &[]) == 0 || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m.n("ml_api_logger_connections_open", &[]), 0);
    assert_eq!(m.n("ml_api_logger_connections_total", &[]), 2);
    assert_eq!(records(&m, "request", "written"), 6);
    assert_eq!(records(&m, "response", "written"), 5);
    assert_eq!(records(&m, "nonconforming", "written"), 1);
    assert_eq!(records(&m, "request", "duplicate"), 1);
    assert_eq!(records(&m, "response", "duplicate"), 1);
    assert_eq!(m.n("ml_api_logger_posts_accepted_total", &[]), 8 + 5);
    assert_eq!(m.n("ml_api_logger_posts_refused_total", &[("status", "400")]), 2);
    assert_eq!(m.n("ml_api_logger_posts_refused_total", &[("status", "415")]), 1);
    assert_eq!(m.n("ml_api_logger_posts_refused_total", &[("status", "503")]), 0);
    for (status, n) in [
        ("200", 8 + 5 + 1),
        ("400", 2),
        ("404", 1),
        ("405", 1),
        ("413", 0),
        ("415", 1),
        ("other", 0),
    ] {
        assert_eq!(
            m.n("ml_api_logger_http_responses_total", &[("status", status)]),
            n,
            "{status}"
        );
    }
    assert_eq!(m.n("ml_api_logger_correlation_requests_total", &[]), 6);
    assert_eq!(m.n("ml_api_logger_correlation_responses_total", &[]), 5);
    assert_eq!(m.n("ml_api_logger_correlation_matched_total", &[]), 4);
    assert_eq!(m.n("ml_api_logger_correlation_orphan_responses_total", &[]), 1);
    assert_eq!(m.n("ml_api_logger_correlation_duplicates_total", &[]), 2);
    assert_eq!(m.n("ml_api_logger_correlation_sequence_reuses_total", &[]), 0);
    assert_eq!(m.n("ml_api_logger_correlation_unanswered_total", &[]), 0);
    assert_eq!(m.n("ml_api_logger_correlation_pending", &[]), 2);
    assert_eq!(m.n("ml_api_logger_response_wait_seconds_count", &[]), 4);
    assert_eq!(
        m.n("ml_api_logger_response_wait_seconds_bucket", &[("le", "+Inf")]),
        4
    );
    // Every record written went through the writer in some batch; every batch was timed. Each
    // POST that wrote was answered before the next was sent, so none shared a write: 8 in part
    // one; in part two the batch, the record that does not conform and the orphan.
    let written = 6 + 5 + 1;
    assert_eq!(std::fs::read_to_string(&s.out).unwrap().lines().count(), written);
    assert_eq!(m.n("ml_api_logger_output_batch_records_sum", &[]), written as u64);
    let batches = m.n("ml_api_logger_output_write_batches_total", &[]);
    assert_eq!(batches, 8 + 3);
    assert_eq!(m.n("ml_api_logger_output_batch_records_count", &[]), batches);
    assert_eq!(m.n("ml_api_logger_output_write_seconds_count", &[]), batches);
    // fsync is off: nothing synced.
    assert_eq!(m.n("ml_api_logger_output_sync_seconds_count", &[]), 0);
    assert_eq!(m.n("ml_api_logger_output_write_failures_total", &[]), 0);
    assert_eq!(m.n("ml_api_logger_output_queue_requests", &[]), 0);
    assert_eq!(m.n("ml_api_logger_output_queue_bytes", &[]), 0);
    assert_eq!(
        m.n("ml_api_logger_output_bytes_total", &[]),
        std::fs::metadata(&s.out).unwrap().len()
    );
    assert_eq!(
        m.n("ml_api_logger_connections_refused_total", &[("reason", "tls")]),
        0
    );

    // The admin listener's own answers.
    let h = http_get(admin, "GET", "/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(http_get(admin, "HEAD", "/metrics").await.status, 200);
    assert_eq!(http_get(admin, "POST", "/metrics").await.status, 405);
    assert_eq!(http_get(admin, "GET", "/log").await.status, 404);
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_sync_latency_and_a_failed_handshake_are_counted() {
    let s = serve_to_file("metrics-fsync", |s| {
        s.args(["--fsync", "on"]).env("LOGGER_ADMIN_ADDR", "127.0.0.1:0")
    });
    let admin = s.daemon.admin_addr();
    let mut c = s.h1().await;
    for seq in 1..=3 {
        assert_eq!(c.post(request(seq)).await.status, 200);
    }
    // Plain HTTP on the TLS port: a failed handshake.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(s.daemon.addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    }
    let m = scrape(admin).await;
    assert_eq!(m.n("ml_api_logger_output_sync_seconds_count", &[]), 3);
    assert_eq!(m.n("ml_api_logger_output_write_seconds_count", &[]), 3);
    assert_eq!(
        m.n("ml_api_logger_connections_refused_total", &[("reason", "tls")]),
        1
    );
    assert_eq!(m.n("ml_api_logger_connections_total", &[]), 2);
    s.daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_follows_a_reload() {
    let dir = TempDir::new("metrics-reload");
    // Start with one that expires in 10 days: a warning at start.
    let certs = certificate(dir.path(), 10);
    let d = Start::new(&certs).args(["--admin-addr", "127.0.0.1:0"]).start();
    let warned = ["expires in 9 days", "expires in 10 days"]
        .iter()
        .any(|w| d.stderr().contains(w));
    assert!(warned, "{}", d.stderr());
    let admin = d.admin_addr();
    let before = scrape(admin)
        .await
        .get("ml_api_logger_certificate_expiry_timestamp_seconds", &[]);
    assert!((before - (now() + 10.0 * DAY)).abs() < DAY, "{before}");

    // A renewed certificate in its place, loaded by SIGHUP: the gauge follows, and no warning
    // this time.
    certificate(dir.path(), 400);
    d.signal("HUP");
    assert!(d.wait_for_log("certificate reloaded", Duration::from_secs(10)));
    let after = scrape(admin)
        .await
        .get("ml_api_logger_certificate_expiry_timestamp_seconds", &[]);
    assert!((after - (now() + 400.0 * DAY)).abs() < DAY, "{after}");
    let (_, stderr) = d.stop();
    assert_eq!(stderr.matches(" days, at ").count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_on_the_admin_port_never_reaches_the_tls_listener() {
    let s = serve_to_file("metrics-crowd", |s| s.args(["--admin-addr", "127.0.0.1:0"]));
    let admin = s.daemon.admin_addr();
    // More idle connections than the admin cap (32), each holding half a request head.
    let mut crowd = Vec::new();
    for _ in 0..40 {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        crowd.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = s.h1().await;
    for seq in 1..=20 {
        assert_eq!(c.post(request(seq)).await.status, 200);
    }
    drop(crowd);
    // Once they are gone the admin port answers again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(1), try_http_get(admin, "GET", "/healthz")).await;
        if matches!(ok, Ok(Ok(ref r)) if r.status == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(std::time::Instant::now() < deadline, "admin port did not recover");
    }
    let m = scrape(admin).await;
    assert_eq!(
        m.n(
            "ml_api_logger_records_total",
            &[("kind", "request"), ("outcome", "written")]
        ),
        20
    );
    let (code, _) = s.daemon.stop();
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_on_the_allowlist_is_counted() {
    let dir = TempDir::new("metrics-allow");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .args(["--admin-addr", "127.0.0.1:0", "--allow", "192.0.2.0/24"])
        .start();
    for _ in 0..3 {
        use tokio::io::AsyncReadExt;
        let mut tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    }
    let m = scrape(d.admin_addr()).await;
    assert_eq!(
        m.n(
            "ml_api_logger_connections_refused_total",
            &[("reason", "allowlist")]
        ),
        3
    );
    assert_eq!(
        m.n("ml_api_logger_connections_refused_total", &[("reason", "tls")]),
        0
    );
    assert_eq!(m.n("ml_api_logger_connections_open", &[]), 0);
    d.stop();
}

#[test]
fn a_bad_admin_address_stops_the_start() {
    let out = command()
        .args(["--port", "0", "--admin-addr", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"--admin-addr="localhost": not an address and port"#),
        "{err}"
    );
}

mod parser {
    use crate::common::prom::parse;

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
        let s = parse(good).unwrap();
        assert_eq!(s.get("a_total", &[("k", "v\"")]), 1.0);
        assert_eq!(s.n("h_count", &[]), 2);
        for bad in [
            "a 1",
            "# TYPE a counter\na 1\na 2\n",
            "a 1\n",
            "# TYPE a counter\na{k=v} 1\n",
            "# TYPE a counter\na -1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
            "# TYPE a counter\n# TYPE b counter\nb 1\na 1\n",
            "# TYPE a counter\na 1 x\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
