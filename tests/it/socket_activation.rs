//! Socket activation: listening sockets passed as fds 3, 4, … with `LISTEN_FDS` and
//! `LISTEN_PID` (by `common/socket_activate.py`, which binds them and execs the daemon as systemd
//! would) are served instead of binding; the one named `admin` serves `/metrics`.

use std::net::SocketAddr;
use std::process::Stdio;

use crate::common::*;

/// The address the launcher bound for `name`, from its line on stderr.
fn passed(stderr: &str, name: &str) -> SocketAddr {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("socket_activate: "))
        .expect("the launcher's line");
    let spec = line
        .split(' ')
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in {line}"));
    spec.parse().unwrap()
}

/// The launcher with `specs`, or `None` (and [`cannot_run`] says why) without python3.
fn launcher(specs: &[&str]) -> Option<Vec<String>> {
    let launcher = socket_activate(specs);
    if launcher.is_none() {
        cannot_run("python3 is not installed (.ci/run installs it)");
    }
    launcher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_sockets_are_served_and_nothing_else_is_bound() {
    let Some(launcher) = launcher(&["tls=127.0.0.1:0", "admin=127.0.0.1:0"]) else {
        return;
    };
    let dir = TempDir::new("activation");
    let certs = make_certs(dir.path());
    let out = dir.join("out.ndjson");
    // LOGGER_PORT names a port that is taken: binding it would fail the start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut start = Start::new(&certs).args(["--output", out.to_str().unwrap()]);
    start.args[3] = taken.local_addr().unwrap().port().to_string();
    let d = start.start_via(&launcher);
    let stderr = d.stderr();
    assert_eq!(d.addr, passed(&stderr, "tls"));
    assert_eq!(d.admin_addr(), passed(&stderr, "admin"));
    assert!(stderr.contains("(sockets passed by systemd)"), "{stderr}");

    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(request(1)).await.status, 200);
    let m = scrape(d.admin_addr()).await;
    assert_eq!(
        m.n(
            "ml_api_logger_records_total",
            &[("kind", "request"), ("outcome", "written")]
        ),
        1
    );
    drop(c);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(read_ndjson(&out).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_socket_the_admin_address_is_not_bound() {
    let Some(launcher) = launcher(&["tls=127.0.0.1:0"]) else {
        return;
    };
    let dir = TempDir::new("activation-noadmin");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs)
        .env("LOGGER_ADMIN_ADDR", "127.0.0.1:0")
        .start_via(&launcher);
    let stderr = d.stderr();
    assert_eq!(d.addr, passed(&stderr, "tls"));
    assert!(!stderr.contains("admin http://"), "{stderr}");
    // The whole warning: what was not bound, why, and what to do instead.
    let warning = stderr
        .lines()
        .find(|l| l.contains("LOGGER_ADMIN_ADDR="))
        .unwrap_or_else(|| panic!("no warning about LOGGER_ADMIN_ADDR: {stderr}"));
    let (_, message) = warning
        .split_once(" WARN ")
        .unwrap_or_else(|| panic!("not a warning: {warning}"));
    assert_eq!(
        message,
        "LOGGER_ADMIN_ADDR=127.0.0.1:0 not bound: with socket activation only passed sockets are \
         served; pass one named \"admin\" (FileDescriptorName=admin)"
    );
    let mut c = Client::h2(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(request(1)).await.status, 200);
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_for_another_process_are_left_alone() {
    let Some(launcher) = launcher(&["--wrong-pid", "tls=127.0.0.1:0"]) else {
        return;
    };
    let dir = TempDir::new("activation-pid");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).start_via(&launcher);
    // It bound --ip 127.0.0.1 --port 0 itself.
    assert_ne!(d.addr, passed(&d.stderr(), "tls"));
    assert!(!d.stderr().contains("passed by systemd"));
    let mut c = Client::h1(d.addr, &certs.ca_der).await;
    assert_eq!(c.post(request(1)).await.status, 200);
    d.stop();
}

#[test]
fn a_passed_file_that_is_no_socket_stops_the_start() {
    let dir = TempDir::new("activation-file");
    let certs = make_certs(dir.path());
    let file = dir.join("not-a-socket");
    let Some(launcher) = launcher(&[&format!("tls=file:{}", file.display())]) else {
        return;
    };
    let out = clean_env(std::process::Command::new(&launcher[0]))
        .args(&launcher[1..])
        .args(Start::new(&certs).args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("error: socket activation: fd 3 (tls): "), "{err}");
}
