//! Behind a load balancer (`LOGGER_PROXY_PROTOCOL`): hand-made PROXY v1 and v2 headers sent over
//! a real TCP connection ahead of a real TLS client, from a listed balancer (127.0.0.1) and from
//! peers that are not one (127.0.0.2, 127.0.0.3); what the daemon writes as `_peer`, the allowlist
//! applied to the address a header carries, and every refusal counted in `/metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// The 12 bytes that start every v2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A TCP connection to `addr` from `source` (an address of this machine).
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `header`, then POSTs `body` over TLS on the same connection. `Some(status)` when served,
/// `None` when the connection was closed first; the connection's local address either way.
async fn post_after(
    source: &str,
    addr: SocketAddr,
    header: &[u8],
    body: String,
    ca: &CertificateDer<'static>,
) -> (Option<u16>, SocketAddr) {
    let mut tcp = connect_from(source, addr).await;
    let local = tcp.local_addr().unwrap();
    tcp.write_all(header).await.unwrap();
    let Some(mut client) = Client::try_h1_over(tcp, tls_config(ca, &[b"http/1.1"])).await else {
        return (None, local);
    };
    let status = client
        .try_request("POST", "/log", &[], body)
        .await
        .ok()
        .map(|r| r.status);
    (status, local)
}

/// A v2 header: signature, version and command, family, length, then `block`.
fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[version_command, family]);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// A v2 PROXY header for TCP from `src` to `dst` (both IPv4 or both IPv6), with `tlvs` after.
fn v2_proxy(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let family = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            block.extend_from_slice(&s.ip().octets());
            block.extend_from_slice(&d.ip().octets());
            0x21
        }
        _ => panic!("mixed families"),
    };
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    block.extend_from_slice(tlvs);
    v2(0x21, family, &block)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Record `i` of a run: a distinct request each time, so no two count as a retry.
fn record(i: u64) -> String {
    exchanges(1000 + i, 1)[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_from_a_listed_balancer_name_the_peer_and_everyone_else_is_refused() {
    let dir = TempDir::new("proxy-protocol");
    let certs = make_certs(dir.path());
    let out = dir.join("out.ndjson");
    let d = Start::new(&certs)
        .env("LOGGER_PROXY_PROTOCOL", "127.0.0.1")
        // The balancer itself is not allowed: its health checks are served anyway.
        .env("LOGGER_ALLOW", "192.0.2.0/24, 2001:db8::/32, 127.0.0.2")
        .env("LOGGER_ANNOTATE", "on")
        .env("LOGGER_OUTPUT", out.display().to_string())
        .env("LOGGER_ADMIN_ADDR", "127.0.0.1:0")
        .env("LOGGER_HANDSHAKE_TIMEOUT", "1s")
        .start();
    let addr = d.addr;
    let ca = &certs.ca_der;
    let dst = sa("127.0.0.1:8443");

    // A listed balancer that stops half-way through a header: closed at the handshake deadline.
    let stalled = tokio::spawn(async move {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        tcp.write_all(&V2_SIGNATURE[..7]).await.unwrap();
        let begun = Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("a stalled header is closed at the handshake deadline");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        begun.elapsed()
    });

    // Served: (header, sequence offset, the `_peer` expected; None: the connection's own address).
    let served: Vec<(Vec<u8>, Option<&str>)> = vec![
        (
            b"PROXY TCP4 192.0.2.10 127.0.0.1 40001 8443\r\n".to_vec(),
            Some("192.0.2.10:40001"),
        ),
        (
            b"PROXY TCP6 2001:db8::7 ::1 40002 8443\r\n".to_vec(),
            Some("[2001:db8::7]:40002"),
        ),
        (
            v2_proxy(sa("192.0.2.11:40003"), dst, &[]),
            Some("192.0.2.11:40003"),
        ),
        // With a TLV (a unique ID), and an IPv4-mapped client, written as its IPv4 address.
        (
            v2_proxy(
                sa("[::ffff:192.0.2.12]:40004"),
                sa("[::1]:8443"),
                &[0x05, 0x00, 0x03, b'a', b'b', b'c'],
            ),
            Some("192.0.2.12:40004"),
        ),
        // The balancer's health checks: the balancer is the peer.
        (v2(0x20, 0x00, &[]), None),
        (v2(0x20, 0x11, &[0; 12]), None),
        (b"PROXY UNKNOWN\r\n".to_vec(), None),
    ];
    let mut expected = HashMap::new();
    for (i, (header, peer)) in served.iter().enumerate() {
        let body = record(i as u64);
        let (status, local) = post_after("127.0.0.1", addr, header, body, ca).await;
        assert_eq!(
            status,
            Some(200),
            "header {i}: {:?}",
            String::from_utf8_lossy(header)
        );
        let peer = peer.map_or(local.to_string(), str::to_string);
        expected.insert(1000 + i as u64, peer);
    }
    // A peer that is not a balancer, without a header: served as itself.
    let (status, local) = post_after("127.0.0.2", addr, b"", record(50), ca).await;
    assert_eq!(status, Some(200));
    expected.insert(1050, local.to_string());

    // Refused for the header: none at all (TLS straight away), malformed, oversized (v1 past 107
    // bytes, v2 past 4 KiB), a wrong v2 signature, a peer closing mid-header; and any header from
    // a peer that is not a balancer, even one on the allowlist.
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.resize(120, b'a');
    let mut long_v2 = v2(0x21, 0x11, &[0; 12]);
    long_v2[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let mut wrong_signature = v2_proxy(sa("192.0.2.13:40005"), dst, &[]);
    wrong_signature[9] = b'X';
    let refused_for_header: Vec<(&str, Vec<u8>)> = vec![
        ("127.0.0.1", Vec::new()),
        (
            "127.0.0.1",
            b"PROXY TCP4 192.0.2.010 127.0.0.1 40006 8443\r\n".to_vec(),
        ),
        (
            "127.0.0.1",
            b"PROXY TCP4 192.0.2.14 127.0.0.1 40007 8443\n".to_vec(),
        ),
        ("127.0.0.1", long_v1),
        ("127.0.0.1", long_v2),
        ("127.0.0.1", wrong_signature),
        ("127.0.0.1", v2(0x31, 0x11, &[0; 12])),
        (
            "127.0.0.2",
            b"PROXY TCP4 192.0.2.15 127.0.0.1 40008 8443\r\n".to_vec(),
        ),
        ("127.0.0.2", v2_proxy(sa("192.0.2.16:40009"), dst, &[])),
    ];
    for (i, (source, header)) in refused_for_header.iter().enumerate() {
        let (status, _) = post_after(source, addr, header, record(100 + i as u64), ca).await;
        assert_eq!(status, None, "{source} {:?}", String::from_utf8_lossy(header));
    }
    {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        tcp.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }

    // Refused by the allowlist: the address a header carries, and a peer that is neither.
    let carried = b"PROXY TCP4 198.51.100.1 127.0.0.1 40010 8443\r\n";
    let (status, _) = post_after("127.0.0.1", addr, carried, record(200), ca).await;
    assert_eq!(status, None, "the allowlist applies to the carried address");
    let (status, _) = post_after("127.0.0.3", addr, b"", record(201), ca).await;
    assert_eq!(status, None);

    let waited = stalled.await.unwrap();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let m = scrape(d.admin_addr()).await;
    let refused = |reason| m.n("ml_api_logger_connections_refused_total", &[("reason", reason)]);
    // The nine above, the one closed mid-header, the stalled one.
    assert_eq!(refused("proxy"), 9 + 1 + 1);
    assert_eq!(refused("allowlist"), 2);
    assert_eq!(refused("tls"), 0);
    let written = m.n(
        "ml_api_logger_records_total",
        &[("kind", "request"), ("outcome", "written")],
    );
    assert_eq!(written, expected.len() as u64);

    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("PROXY headers from 127.0.0.1/32"), "{stderr}");
    assert!(
        stderr.contains("a PROXY header from an address not in LOGGER_PROXY_PROTOCOL"),
        "{stderr}"
    );
    assert!(stderr.contains("from a listed load balancer: "), "{stderr}");
    assert!(stderr.contains("PROXY header 11"), "{stderr}");

    let written: HashMap<u64, String> = read_ndjson(&out)
        .into_iter()
        .map(|r| {
            (
                r["sequence"].as_u64().unwrap(),
                r["_peer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(written, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_a_header_is_just_bytes_before_tls() {
    let dir = TempDir::new("proxy-off");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).env("LOGGER_ADMIN_ADDR", "127.0.0.1:0").start();
    let header = b"PROXY TCP4 192.0.2.10 127.0.0.1 40001 8443\r\n";
    let (status, _) = post_after("127.0.0.1", d.addr, header, record(0), &certs.ca_der).await;
    assert_eq!(status, None, "not a TLS ClientHello");
    let (status, _) = post_after("127.0.0.1", d.addr, b"", record(1), &certs.ca_der).await;
    assert_eq!(status, Some(200));
    let m = scrape(d.admin_addr()).await;
    let refused = |reason| m.n("ml_api_logger_connections_refused_total", &[("reason", reason)]);
    assert_eq!(refused("proxy"), 0);
    assert_eq!(refused("tls"), 1);
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("no PROXY headers"), "{stderr}");
}

#[test]
fn a_bad_list_names_the_setting() {
    let out = command()
        .env("LOGGER_PROXY_PROTOCOL", "10.0.0.0/8,balancer.example")
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"LOGGER_PROXY_PROTOCOL="10.0.0.0/8,balancer.example""#),
        "{stderr}"
    );
    assert!(stderr.contains("not an address or CIDR range"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
