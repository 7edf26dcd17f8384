//! Helpers for the integration tests: certificates made by the binary's own `cert` command, the
//! real binary started as a child process on an ephemeral port ([`serve_to_file`] for the usual
//! case), a real TLS client (HTTP/1.1 or HTTP/2), records built by sequence ([`records`]), and the
//! rule for a test that needs root or a tool ([`cannot_run`]).

pub mod prom;
pub mod records;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use records::{request, response, Record};

pub const REQUEST_FIXTURE: &str = include_str!("../../fixtures/request.json");
pub const RESPONSE_FIXTURE: &str = include_str!("../../fixtures/response.json");

/// Whether this is a CI run (`CI=true`, as CI services set it), where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// For a test that needs what a machine may lack (root, a tool): says it cannot run, `why`. In CI
/// that is a failure; elsewhere the reason is printed and the caller returns, checking nothing:
/// `return cannot_run("…")`.
pub fn cannot_run(why: &str) {
    assert!(!in_ci(), "cannot run in CI: {why}");
    eprintln!("SKIPPED (not in CI): {why}");
}

/// Whether every tool of `names` runs here; when one does not, [`cannot_run`] says which:
/// `if !tools_present(&["openssl"]) { return; }`.
pub fn tools_present(names: &[&str]) -> bool {
    match names.iter().find(|name| !has_tool(name)) {
        None => true,
        Some(name) => {
            cannot_run(&format!("{name} is not installed (.ci/run installs it)"));
            false
        }
    }
}

/// Whether `name` runs here (`NAME --version` or `NAME version` succeeds).
fn has_tool(name: &str) -> bool {
    ["--version", "version"].iter().any(|arg| {
        Command::new(name)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A tmpfs of `size` mounted at `dir` (created), unmounted when dropped. Mounting needs root;
/// the error says why it failed.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Gives it a new size, keeping what it holds.
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot resize the tmpfs at {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "mlal-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The certificate files `ml_api_logger cert` wrote into a directory, for [`Start::new`].
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_der: CertificateDer<'static>,
}

/// A CA and a server certificate for localhost, 127.0.0.1 and ::1, valid 90 days (well past the
/// 30-day expiry warning, so a test's stderr holds no warning about it), written to `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    certificate(dir, 90)
}

/// `ml_api_logger cert`, as a user makes certificates: for localhost, 127.0.0.1 and ::1, valid
/// `days` days, into `dir` (replacing what is there).
pub fn certificate(dir: &Path, days: u32) -> Certs {
    let out = command()
        .args([
            "cert",
            "--host",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--ip",
            "::1",
            "--force",
        ])
        .args(["--days", &days.to_string(), "--out"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ml_api_logger cert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    certs_in(dir)
}

/// The certificate files `ml_api_logger cert` wrote into `dir`.
pub fn certs_in(dir: &Path) -> Certs {
    let ca = dir.join("serverca.crt");
    let ca_der = CertificateDer::from_pem_file(&ca).unwrap();
    Certs {
        ca,
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca_der,
    }
}

/// The daemon as a child process.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

/// How to start the daemon.
pub struct Start<'a> {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<&'a Path>,
    pub stdout: Option<std::fs::File>,
    /// Give the daemon a pipe for stdout (taken from `Daemon::child.stdout`).
    pub pipe_stdout: bool,
}

impl<'a> Start<'a> {
    /// `--ip 127.0.0.1 --port 0` with the given certificate, and its directory as the cert
    /// directory (where the redaction key is made), so nothing is made in the working directory.
    pub fn new(certs: &Certs) -> Start<'a> {
        let cert_dir = certs.cert.parent().unwrap_or(Path::new("."));
        Start {
            args: vec![
                "--ip".into(),
                "127.0.0.1".into(),
                "--port".into(),
                "0".into(),
                "--cert".into(),
                certs.cert.display().to_string(),
                "--key".into(),
                certs.key.display().to_string(),
                "--cert-dir".into(),
                cert_dir.display().to_string(),
            ],
            env: Vec::new(),
            cwd: None,
            stdout: None,
            pipe_stdout: false,
        }
    }

    /// No arguments at all: only what the caller adds.
    pub fn bare(cwd: &'a Path) -> Start<'a> {
        Start {
            args: Vec::new(),
            env: Vec::new(),
            cwd: Some(cwd),
            stdout: None,
            pipe_stdout: false,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn start(self) -> Daemon {
        Daemon::spawn(self, &[])
    }

    /// Starts the daemon through `launcher` (a program and its arguments, given the binary and
    /// the daemon's arguments after them): the socket-activation launcher, [`socket_activate`].
    pub fn start_via(self, launcher: &[String]) -> Daemon {
        Daemon::spawn(self, launcher)
    }
}

/// A command for the binary with no inherited `LOGGER_*` settings.
pub fn command() -> Command {
    clean_env(Command::new(env!("CARGO_BIN_EXE_ml_api_logger")))
}

/// Removes inherited settings, and systemd's variables, from `cmd`'s environment.
pub fn clean_env(mut cmd: Command) -> Command {
    for (k, _) in std::env::vars() {
        let systemd = [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ];
        if k.starts_with("LOGGER_") || k == "RUST_LOG" || systemd.contains(&k.as_str()) {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The socket-activation launcher (`socket_activate.py`, beside this file) with its socket
/// specs, for [`Start::start_via`]: `["tls=127.0.0.1:0", "admin=127.0.0.1:0"]`. `None` when
/// there is no python3 to run it.
pub fn socket_activate(specs: &[&str]) -> Option<Vec<String>> {
    let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/common/socket_activate.py");
    let mut v = vec![python3()?, launcher.to_string()];
    v.extend(specs.iter().map(|s| s.to_string()));
    v.push("--".into());
    v.push(env!("CARGO_BIN_EXE_ml_api_logger").into());
    Some(v)
}

/// The system's python3 (the launcher needs nothing beyond its standard library), if any.
fn python3() -> Option<String> {
    ["/usr/bin/python3", "/usr/local/bin/python3", "python3"]
        .into_iter()
        .find(|p| has_tool(p))
        .map(String::from)
}

impl Daemon {
    fn spawn(s: Start<'_>, launcher: &[String]) -> Daemon {
        let mut cmd = match launcher.split_first() {
            None => command(),
            Some((program, args)) => {
                let mut c = clean_env(Command::new(program));
                c.args(args);
                c
            }
        };
        cmd.args(&s.args);
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = s.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        match s.stdout {
            Some(f) => cmd.stdout(f),
            None if s.pipe_stdout => cmd.stdout(Stdio::piped()),
            None => cmd.stdout(Stdio::null()),
        };
        let mut child = cmd.spawn().expect("start the daemon");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pipe = child.stderr.take().unwrap();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    stderr.lock().unwrap().push_str(&line);
                    stderr.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        return Daemon { child, addr, stderr };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("daemon did not start; stderr:\n{}", stderr.lock().unwrap());
                }
            }
        }
    }

    /// What the daemon has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The admin listener's address, from the start line (`admin http://ADDR/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        let stderr = self.stderr();
        let rest = &stderr[stderr
            .find("admin http://")
            .expect("no admin listener in the start line")
            + "admin http://".len()..];
        rest[..rest.find("/metrics").unwrap()].parse().unwrap()
    }

    /// Sends a signal to the child.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits until stderr has a line containing `needle` (at most `limit`).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM, then waits for the exit code (at most 30 s).
    pub fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let code = wait_exit(&mut self.child, Duration::from_secs(30));
        // Let the stderr reader catch up.
        std::thread::sleep(Duration::from_millis(100));
        (code, self.stderr())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon writing its records to a file, with what it needs in a temp dir of its own.
pub struct Served {
    /// The child (killed and reaped when dropped) and its address.
    pub daemon: Daemon,
    /// Its certificate and CA, in `dir`.
    pub certs: Certs,
    /// The output file, `dir/out.ndjson`.
    pub out: PathBuf,
    /// Removed when dropped; the last field, so that the daemon is gone first.
    pub dir: TempDir,
}

/// Starts the daemon on 127.0.0.1, port 0, with a test certificate, writing to `out.ndjson`, all
/// in a new temp dir named after `tag`; `configure` adds settings (`|s| s` for none).
pub fn serve_to_file(tag: &str, configure: impl FnOnce(Start<'_>) -> Start<'_>) -> Served {
    let dir = TempDir::new(tag);
    let certs = make_certs(dir.path());
    let out = dir.join("out.ndjson");
    let daemon = configure(Start::new(&certs))
        .args(["--output", out.to_str().unwrap()])
        .start();
    Served {
        daemon,
        certs,
        out,
        dir,
    }
}

impl Served {
    /// A new HTTP/1.1 connection to the daemon.
    pub async fn h1(&self) -> Client {
        Client::h1(self.daemon.addr, &self.certs.ca_der).await
    }

    /// A new HTTP/2 connection to the daemon.
    pub async fn h2(&self) -> Client {
        Client::h2(self.daemon.addr, &self.certs.ca_der).await
    }
}

/// A child process killed and reaped when dropped, so a failing test leaves nothing running (a
/// child left running keeps the test run's output pipes open, and whoever reads them waits).
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on https://")? + "listening on https://".len()..];
    let end = rest.find("/log")?;
    rest[..end].parse().ok()
}

/// A TLS client configuration trusting `ca`, offering `alpn`.
pub fn tls_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to the daemon, verified against the test CA.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(tls_config(ca, alpn))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// An answer from the daemon.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One keep-alive connection to the daemon.
pub struct Client {
    sender: Sender,
}

impl Client {
    /// HTTP/1.1 over TLS on `tcp` with `config`; `None` when the handshake fails, as it does
    /// for a refused peer.
    pub async fn try_h1_over(tcp: TcpStream, config: Arc<rustls::ClientConfig>) -> Option<Client> {
        let name = ServerName::try_from("localhost").ok()?;
        let tls = TlsConnector::from(config).connect(name, tcp).await.ok()?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(Client::from_h1(sender))
    }

    /// A client over an HTTP/1 connection made elsewhere.
    pub fn from_h1(sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> Client {
        Client {
            sender: Sender::H1(sender),
        }
    }

    pub async fn h1(addr: SocketAddr, ca: &CertificateDer<'static>) -> Client {
        let tls = tls_connect(addr, ca, &[b"http/1.1"]).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client {
            sender: Sender::H1(sender),
        }
    }

    pub async fn h2(addr: SocketAddr, ca: &CertificateDer<'static>) -> Client {
        let tls = tls_connect(addr, ca, &[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client {
            sender: Sender::H2(sender),
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_request(method, path, headers, body).await.unwrap()
    }

    pub async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper::Error> {
        let h2 = matches!(self.sender, Sender::H2(_));
        let uri = if h2 {
            format!("https://localhost{path}")
        } else {
            path.to_string()
        };
        let mut req = http::Request::builder().method(method).uri(uri);
        if !h2 {
            req = req.header("host", "localhost");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn post(&mut self, body: impl Into<Bytes>) -> Reply {
        self.request("POST", "/log", &[("content-type", "application/json")], body)
            .await
    }
}

/// The lines of a file, each parsed as JSON; panics on a line that is not.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output does not end with a newline"
    );
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1)))
        .collect()
}

/// A plain-HTTP/1.1 answer from the admin listener.
pub async fn http_get(addr: SocketAddr, method: &str, path: &str) -> Reply {
    try_http_get(addr, method, path).await.unwrap()
}

/// [`http_get`], for a listener that may close the connection.
pub async fn try_http_get(addr: SocketAddr, method: &str, path: &str) -> Result<Reply, String> {
    // A server that accepts and never answers is an error, not a test that hangs.
    tokio::time::timeout(Duration::from_secs(10), http_get_once(addr, method, path))
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path}: no answer within 10 s")))
}

async fn http_get_once(addr: SocketAddr, method: &str, path: &str) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET /metrics` from the admin listener, parsed strictly as the Prometheus text format.
pub async fn scrape(addr: SocketAddr) -> prom::Scrape {
    let r = http_get(addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    prom::parse(&r.body).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{}", r.body))
}

/// Runs the binary to completion with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Threads of `pid` that tokio named (its workers; its blocking threads, none yet at start), once
/// there are `expected` of them (and, 100 ms later, still no more) or after 5 s. A thread takes
/// its name when it first runs, which on a busy machine can be after the start line.
pub fn runtime_threads(pid: u32, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.trim() == "tokio-rt-worker")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    count()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A record as the daemon writes it: its text without insignificant whitespace.
pub fn minified(json: &str) -> String {
    String::from_utf8(ml_api_logger::json::minify::minify(json.as_bytes())).unwrap()
}

/// Records the way the vendor's Go program logged them: each pretty-printed, then a newline.
pub fn go_log(records: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string_pretty(r).unwrap());
        out.push('\n');
    }
    out
}

/// `n` exchanges built from the vendor's examples: request and response for sequences
/// `first..first+n`, each with its own body so that no two records are alike.
pub fn exchanges(first: u64, n: u64) -> Vec<serde_json::Value> {
    let req: serde_json::Value = serde_json::from_str(REQUEST_FIXTURE).unwrap();
    let resp: serde_json::Value = serde_json::from_str(RESPONSE_FIXTURE).unwrap();
    let mut out = Vec::with_capacity(2 * n as usize);
    for seq in first..first + n {
        let mut q = req.clone();
        q["sequence"] = seq.into();
        q["request_body"]["from"] = (seq as i64 * -1000).into();
        let mut r = resp.clone();
        r["sequence"] = seq.into();
        r["response_body"]["clock"] = (1_678_150_650_000u64 + seq).into();
        out.push(q);
        out.push(r);
    }
    out
}

/// Waits for `child` to exit (at most `limit`), sampling its peak resident memory (VmHWM, in
/// KiB) from /proc while it runs. Returns the exit code and the last peak seen.
pub fn wait_with_peak_rss(child: &mut Child, limit: Duration) -> (i32, u64) {
    let deadline = Instant::now() + limit;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), peak);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
