//! Past one machine: a real HAProxy (examples/haproxy.cfg: TCP mode, source affinity, PROXY v2,
//! health checks) in front of three daemons, each with its own output file. Sensors from several
//! source addresses send their exchanges with retries while one daemon is killed (SIGKILL) and
//! started again. Every record acknowledged is written, once per daemon; every `_peer` is the
//! sensor's; `inspect` over the three files pairs every exchange.
//!
//! Needs `haproxy` (Debian: `apt-get install haproxy`; .ci/run installs it). Without it the test
//! says so and passes, except under CI (`CI=true`), where it fails.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use tokio::net::TcpSocket;

use crate::common::*;

/// Sensors, at 127.0.0.2 and up.
const SENSORS: u8 = 6;
/// Exchanges each sensor sends.
const EXCHANGES: u64 = 120;

fn haproxy() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v haproxy"])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            let path = path.trim();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
}

/// examples/haproxy.cfg with this test's addresses and quicker health checks.
fn haproxy_config(frontend: u16, daemons: &[u16]) -> String {
    let mut cfg =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg")).unwrap();
    let mut replace = |from: &str, to: &str| {
        assert!(cfg.contains(from), "examples/haproxy.cfg has no {from:?}");
        cfg = cfg.replace(from, to);
    };
    replace("bind :443", &format!("bind 127.0.0.1:{frontend}"));
    for (i, port) in daemons.iter().enumerate() {
        replace(&format!("10.0.0.1{}:8443", i + 1), &format!("127.0.0.1:{port}"));
    }
    replace("inter 2s fall 2 rise 2", "inter 100ms fall 1 rise 1");
    cfg
}

/// One daemon behind the balancer, on a fixed port so that it can be started again.
fn start_daemon(certs: &Certs, port: u16, out: &Path) -> Daemon {
    let mut start = Start::new(certs)
        .env("LOGGER_PROXY_PROTOCOL", "127.0.0.1")
        .env("LOGGER_ANNOTATE", "on")
        .env("LOGGER_OUTPUT", out.display().to_string());
    assert_eq!(start.args[2], "--port");
    start.args[3] = port.to_string();
    start.start()
}

/// POSTs `body` from `source` through the balancer until it is answered 200: on a refused or
/// broken connection or a 5xx, the same record again on a new connection, as a sensor does.
async fn send_until_accepted(
    client: &mut Option<Client>,
    source: &str,
    balancer: SocketAddr,
    ca: &CertificateDer<'static>,
    body: &str,
    retries: &AtomicU64,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "{source}: no 200 within 15 s for {body}"
        );
        if client.is_none() {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
            if let Ok(tcp) = socket.connect(balancer).await {
                *client = Client::try_h1_over(tcp, tls_config(ca, &[b"http/1.1"])).await;
            }
        }
        if let Some(c) = client.as_mut() {
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                c.try_request("POST", "/log", &[], body.to_string()),
            )
            .await;
            match reply {
                Ok(Ok(r)) if r.status == 200 => return,
                Ok(Ok(r)) => assert!(r.status >= 500, "{source}: {} {}", r.status, r.body),
                _ => {}
            }
        }
        *client = None;
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// For a failure's message: every record of each exchange that `inspect --pairs` over `files` did
/// not join, or that was written more than once, where it is (file and line) and what it is
/// (kind, `_received_at`, `_peer`), with the summary `inspect` gave.
fn unjoined_and_copied(files: &[String]) -> String {
    let mut args = vec!["inspect", "--pairs"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&args, b"");
    let key = |r: &serde_json::Value| {
        let peer: SocketAddr = r["_peer"].as_str().unwrap_or("0.0.0.0:0").parse().unwrap();
        (peer.ip().to_string(), r["sequence"].as_u64().unwrap_or(0))
    };
    let paired: HashSet<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| key(&serde_json::from_str::<serde_json::Value>(l).unwrap()["request"]))
        .collect();
    let mut records: HashMap<(String, u64), Vec<(String, String)>> = HashMap::new();
    for file in files {
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        for (i, r) in read_ndjson(Path::new(file)).iter().enumerate() {
            let kind = if r.get("request").is_some() {
                "request"
            } else {
                "response"
            };
            let at = r["_received_at"].as_str().unwrap_or("-").to_string();
            let peer = r["_peer"].as_str().unwrap_or("-");
            let row = format!("{kind:<8} {at} {peer:<21} {name}:{}", i + 1);
            records.entry(key(r)).or_default().push((at, row));
        }
    }
    let mut rows: Vec<_> = records
        .into_iter()
        .filter(|(k, v)| !paired.contains(k) || v.len() != 2)
        .flat_map(|((ip, seq), mut v)| {
            v.sort();
            v.into_iter()
                .map(move |(_, row)| format!("  {ip} {seq:>3} {row}"))
        })
        .collect();
    rows.sort();
    format!(
        "the records of exchanges not paired or written more than once (sender, sequence, kind, _received_at, _peer, file:line):\n{}\ninspect --pairs said:\n{}",
        rows.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_behind_haproxy_lose_nothing_and_see_every_sensor() {
    let Some(haproxy) = haproxy() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "haproxy is not installed (Debian: apt-get install haproxy)"
        );
        eprintln!("skipped: haproxy is not installed (Debian: apt-get install haproxy)");
        return;
    };
    let began = Instant::now();
    let dir = TempDir::new("scale-out");
    let certs = make_certs(dir.path());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let outs: Vec<PathBuf> = (1..=3).map(|i| dir.join(&format!("d{i}.ndjson"))).collect();
    let mut daemons: Vec<Option<Daemon>> = ports
        .iter()
        .zip(&outs)
        .map(|(&port, out)| Some(start_daemon(&certs, port, out)))
        .collect();

    let frontend = free_port();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(frontend, &ports)).unwrap();
    let haproxy_log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let mut haproxy = Reaped(
        Command::new(&haproxy)
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(haproxy_log.try_clone().unwrap())
            .stderr(haproxy_log)
            .spawn()
            .unwrap(),
    );
    let balancer: SocketAddr = format!("127.0.0.1:{frontend}").parse().unwrap();
    let up = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(balancer).is_err() {
        let exited = haproxy.0.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < up,
            "haproxy did not start ({exited:?}):\n{}",
            std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The sensors: each its own address and numbering, a request then its response.
    let retries = Arc::new(AtomicU64::new(0));
    let mut sensors = Vec::new();
    for s in 0..SENSORS {
        let source = format!("127.0.0.{}", 2 + s);
        let ca = certs.ca_der.clone();
        let retries = retries.clone();
        sensors.push(tokio::spawn(async move {
            let mut client = None;
            for record in exchanges(1, EXCHANGES) {
                let body = record.to_string();
                send_until_accepted(&mut client, &source, balancer, &ca, &body, &retries).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Mid-run, the daemon with the most records so far is killed, then started again.
    let wait = Instant::now() + Duration::from_secs(20);
    while outs.iter().map(|o| lines_in(o)).sum::<usize>() < 300 {
        assert!(Instant::now() < wait, "no traffic reached the daemons");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = (0..3).max_by_key(|&i| lines_in(&outs[i])).unwrap();
    let mut killed = daemons[victim].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let lines_at_kill = lines_in(&outs[victim]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemons[victim] = Some(start_daemon(&certs, ports[victim], &outs[victim]));

    for s in sensors {
        s.await.unwrap();
    }
    for d in daemons.into_iter().flatten() {
        let (code, stderr) = d.stop();
        assert_eq!(code, 0, "{stderr}");
    }

    // Every record acknowledged is written; a daemon writes each once. The only copies are of
    // records the killed daemon wrote but could not acknowledge before it died, sent again.
    let sensor_ips: HashSet<String> = (0..SENSORS).map(|s| format!("127.0.0.{}", 2 + s)).collect();
    let mut copies: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, out) in outs.iter().enumerate() {
        for r in read_ndjson(out) {
            let peer: SocketAddr = r["_peer"].as_str().unwrap().parse().unwrap();
            assert!(
                sensor_ips.contains(&peer.ip().to_string()),
                "_peer {peer} is not a sensor (the balancer is 127.0.0.1)"
            );
            let mut record = r.clone();
            let obj = record.as_object_mut().unwrap();
            obj.remove("_peer");
            obj.remove("_received_at");
            copies
                .entry((peer.ip().to_string(), record.to_string()))
                .or_default()
                .push(i);
        }
    }
    for ip in &sensor_ips {
        for record in exchanges(1, EXCHANGES) {
            let key = (ip.clone(), record.to_string());
            assert!(
                copies.contains_key(&key),
                "{ip}: acknowledged, not written: {record}"
            );
        }
    }
    assert_eq!(copies.len(), sensor_ips.len() * 2 * EXCHANGES as usize);
    let extra: Vec<_> = copies.iter().filter(|(_, files)| files.len() > 1).collect();
    for ((ip, record), files) in &extra {
        assert_eq!(files.len(), 2, "{ip} {record}: {files:?}");
        assert!(files.contains(&victim), "{ip} {record}: copies in {files:?}");
    }
    assert!(extra.len() <= SENSORS as usize, "{} copies", extra.len());

    // inspect over the three files at once pairs every exchange, whatever the order they are
    // named in (merged by `_received_at`), and counts each copy as a duplicate: the same record
    // as sent, though it arrived later, on another connection, at another daemon.
    // Both ways round: the killed daemon's file (the records it wrote before it died) first,
    // then last, after the files holding the copies sent again to the others.
    let others: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let first = [vec![victim], others.clone()].concat();
    let last = [others, vec![victim]].concat();
    for order in [first, last] {
        let files: Vec<String> = order.iter().map(|&i| outs[i].display().to_string()).collect();
        let mut args = vec!["inspect", "--json"];
        args.extend(files.iter().map(String::as_str));
        let out = run(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = |k: &str| summary[k].as_u64().unwrap_or_else(|| panic!("{k}: {summary}"));
        let clean = n("pairs") == u64::from(SENSORS) * EXCHANGES
            && n("orphan_responses") == 0
            && n("unanswered_requests") == 0
            && n("duplicates") == extra.len() as u64;
        assert!(
            clean,
            "inspect over {files:?} (d{} was killed at {lines_at_kill} lines): {summary}\n{}",
            victim + 1,
            unjoined_and_copied(&files)
        );
    }

    eprintln!(
        "scale-out: {} records, {} retries, killed daemon {} at {lines_at_kill} lines, {} copies, {:?}",
        copies.len(),
        retries.load(Ordering::Relaxed),
        victim + 1,
        extra.len(),
        began.elapsed()
    );
    assert!(retries.load(Ordering::Relaxed) > 0, "the kill went unnoticed");
}

/// Without a balancer: `inspect` given the files of several daemons pairs a request in one file
/// with its response in another, whatever order the files are named in, by `_received_at`, and
/// knows a retry in another file for a duplicate.
#[test]
fn inspect_pairs_across_files_in_the_order_records_were_received() {
    let dir = TempDir::new("inspect-across");
    let line = |seq: u64, kind: &str, ms: u32, port: u16| {
        let body = if kind == "request" {
            r#""request":{"Method":"GET","RequestURI":"/a"}"#.to_string()
        } else {
            r#""response_status_code":200"#.to_string()
        };
        format!(
            "{{\"sequence\":{seq},{body},\"_received_at\":\"2026-12-01T10:00:00.{ms:03}Z\",\"_peer\":\"192.0.2.7:{port}\"}}\n"
        )
    };
    // Sequence 1: request on a, response on b (a went down). Sequence 2: request on b, response
    // on a (a came back). Sequence 3: both on a, which wrote the response and died before
    // answering: the sensor sent it again, to b (a copy, later, from another port).
    let a = [
        line(1, "request", 100, 1),
        line(2, "response", 400, 4),
        line(3, "request", 500, 5),
        line(3, "response", 600, 6),
    ]
    .concat();
    let b = [
        line(1, "response", 200, 2),
        line(2, "request", 300, 3),
        line(3, "response", 650, 7),
    ]
    .concat();
    std::fs::write(dir.join("a.ndjson"), a).unwrap();
    std::fs::write(dir.join("b.ndjson"), b).unwrap();
    let (fa, fb) = (
        dir.join("a.ndjson").display().to_string(),
        dir.join("b.ndjson").display().to_string(),
    );
    for files in [[&fa, &fb], [&fb, &fa]] {
        let out = run(&["inspect", "--json", files[0], files[1]], b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["pairs"], 3, "{summary}");
        assert_eq!(summary["orphan_responses"], 0, "{summary}");
        assert_eq!(summary["unanswered_requests"], 0, "{summary}");
        assert_eq!(summary["duplicates"], 1, "{summary}");
    }
}
