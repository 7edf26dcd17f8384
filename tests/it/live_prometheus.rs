//! The monitoring files against a real Prometheus scraping a live daemon: every query of the
//! Grafana dashboard (examples/grafana/ml_api_logger.json) and every rule of the alerts
//! (examples/prometheus/alerts.yml) names series that exist, with the labels they are selected by.
//! The offline checks (deploy/check.sh) hold them against a list of series; this holds them
//! against what the daemon exports and what Prometheus makes of it.
//!
//! The daemon gets requests and their responses, retries, orphan responses, records that do not
//! conform, bodies refused with 400 and 415, new connections and failed TLS handshakes, over real
//! TLS, all the while. Prometheus scrapes its admin listener every second with alerts.yml as its
//! rule file, evaluated every second. Once the target is up and a few scrapes are in, the test
//! asks Prometheus's HTTP API (`/api/v1/query`):
//!
//! - for each dashboard query (every panel target's `expr`, and the selector of each template
//!   variable's `label_values`), with Grafana's variables given values (`$job` and `$instance`
//!   this scrape target's, `$__rate_interval` [`RATE_INTERVAL`]): it must evaluate without error
//!   and return at least one series;
//! - for each alert rule (its expression as Prometheus loaded it, from `/api/v1/rules`, where
//!   every rule must also have health "ok"): the whole expression must evaluate without error,
//!   but may return nothing, as an alert's condition is false while the daemon is healthy. So
//!   what it is built from is evaluated instead: the expression is cut at its top-level `and`,
//!   `or` and `unless`, and each operand at its top-level comparisons (`>`, `==`, …); every piece
//!   that names a series (`rate(a[15m]) / rate(b[15m])` of `… > 0.05`, not `0.05`) must return
//!   at least one. "No series" then means a metric or label value is missing, not that the alert
//!   is quiet;
//! - for both, every series selector on its own (`name{matchers}`) must return a series, and
//!   every `ml_api_logger_…` name must be one that the daemon's `/metrics` exports.
//!
//! A failure names the query and what is wrong with it, all of them at once.
//!
//! Needs `prometheus` (Debian: `apt-get install prometheus`; .ci/run installs it). Without it the
//! test says so and passes, except under CI (`CI=true`), where it fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grafana/ml_api_logger.json");
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus/alerts.yml");

/// The scrape job: a name the alerts' `up{job=~"ml[-_]api[-_]logger"}` matches.
const JOB: &str = "ml_api_logger";

/// `$__rate_interval`. Grafana makes it max(`$__interval` + scrape interval, 4 × scrape interval);
/// over the dashboard's default 6 hours `$__interval` is about 20 s, and the scrape interval here
/// is 1 s.
const RATE_INTERVAL: &str = "20s";

/// Scrapes Prometheus must have made before the queries, so that every `rate()` has samples.
const SCRAPES: u32 = 5;

/// How long Prometheus may take to start, scrape and evaluate (it is normally a few seconds).
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_finds_every_series_the_dashboard_and_the_alerts_use() {
    if !tools_present(&["prometheus"]) {
        return;
    }
    let began = Instant::now();
    let s = serve_to_file("live-prometheus", |s| s.args(["--admin-addr", "127.0.0.1:0"]));
    let admin = s.daemon.admin_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = tokio::spawn(traffic(s.daemon.addr, s.certs.ca_der.clone(), stop.clone()));

    let mut prom = Prometheus::start(&s.dir.join("prometheus"), admin);
    let waits = async {
        prom.wait_until_ready().await;
        prom.wait_until_target_up(admin).await;
        // A few scrapes in, and the traffic seen through them: records written, exchanges
        // paired, bodies refused.
        let job = format!("job={JOB:?}");
        for condition in [
            format!("count_over_time(up{{{job}}}[1m]) >= {SCRAPES}"),
            format!(
                "increase(ml_api_logger_records_total{{{job},kind=\"request\",outcome=\"written\"}}[1m]) > 0"
            ),
            format!("increase(ml_api_logger_response_wait_seconds_count{{{job}}}[1m]) > 0"),
            format!("increase(ml_api_logger_http_responses_total{{{job},status=\"400\"}}[1m]) > 0"),
        ] {
            prom.wait_for_series(&condition).await;
        }
        prom.wait_until_rules_evaluated().await
    };
    let rules = tokio::select! {
        rules = waits => rules,
        ended = &mut traffic => panic!("the traffic to the daemon stopped: {ended:?}"),
    };
    let scraped = prom.elapsed();

    let exported: BTreeSet<String> = scrape(admin)
        .await
        .series
        .keys()
        .map(|key| key.split('{').next().unwrap_or(key).to_string())
        .collect();
    let check = Check {
        prom: &prom,
        exported: &exported,
    };
    let mut problems = Vec::new();
    let instance = admin.to_string();
    let queries = check.dashboard(&instance, &mut problems).await;
    check.alerts(&rules, &mut problems).await;

    stop.store(true, Ordering::Relaxed);
    let exchanges = tokio::time::timeout(Duration::from_secs(30), traffic)
        .await
        .expect("the traffic to the daemon did not stop within 30 s")
        .expect("the traffic to the daemon failed");
    let (code, stderr) = s.daemon.stop();
    assert_eq!(code, 0, "the daemon's exit under this traffic: {stderr}");
    assert!(
        problems.is_empty(),
        "{} problem(s) with the dashboard or the alerts, evaluated by Prometheus against a live daemon:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    eprintln!(
        "live Prometheus: {queries} dashboard queries and {} alert rules checked; {exchanges} exchanges \
         sent; Prometheus ready and scraped in {scraped:?}, all in {:?}",
        rules.len(),
        began.elapsed()
    );
}

/// Sends records until `stop`, one exchange every 10 ms or so, with every kind of traffic the
/// dashboard shows: each request's response one exchange later (so some wait), and in between
/// retries, orphan responses, records that do not conform, refused bodies, new connections and
/// failed TLS handshakes. Returns the number of exchanges.
async fn traffic(addr: SocketAddr, ca: CertificateDer<'static>, stop: Arc<AtomicBool>) -> u64 {
    let expect = |what: &str, reply: Reply, status: u16| {
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        reply
    };
    let mut client = Client::h1(addr, &ca).await;
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        if seq % 50 == 0 {
            client = Client::h1(addr, &ca).await;
        }
        expect("a request", client.post(request(seq)).await, 200);
        if seq > 1 {
            expect("a response", client.post(response(seq - 1)).await, 200);
        }
        if seq % 5 == 0 {
            let reply = expect("a retried request", client.post(request(seq)).await, 200);
            assert_eq!(reply.json()["duplicates"], 1, "a retried request: {}", reply.body);
        }
        if seq % 13 == 0 {
            expect(
                "an orphan response",
                client.post(response(1_000_000 + seq)).await,
                200,
            );
        }
        if seq % 17 == 0 {
            let reply = expect(
                "a record without a sequence",
                client.post(format!(r#"{{"note":"{seq}"}}"#)).await,
                200,
            );
            assert_eq!(reply.json()["nonconforming"], 1, "{}", reply.body);
        }
        // Refusals, each followed by a new connection when the daemon closes this one (as it
        // does when it leaves the body unread).
        let mut refused = None;
        if seq % 7 == 0 {
            refused = Some(expect(
                "a body that is not JSON",
                client.post("not json").await,
                400,
            ));
        } else if seq % 11 == 0 {
            let reply = client
                .request("POST", "/log", &[("content-encoding", "br")], request(seq))
                .await;
            refused = Some(expect("a body in an unsupported encoding", reply, 415));
        }
        if refused.is_some_and(|r| r.headers.get("connection").is_some_and(|v| v == "close")) {
            client = Client::h1(addr, &ca).await;
        }
        if seq % 40 == 0 {
            failed_handshake(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seq
}

/// A connection that speaks plain HTTP to the TLS listener: the handshake fails, and the daemon
/// closes the connection.
async fn failed_handshake(addr: SocketAddr) {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the TLS listener");
    let _ = tcp.write_all(b"GET /log HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
}

/// A Prometheus server, killed when dropped, scraping the admin listener at `admin` every second
/// and evaluating alerts.yml every second, its configuration, data and log in `dir`.
struct Prometheus {
    /// Killed and reaped when dropped.
    child: Reaped,
    addr: SocketAddr,
    log: PathBuf,
    started: Instant,
}

impl Prometheus {
    fn start(dir: &Path, admin: SocketAddr) -> Prometheus {
        std::fs::create_dir_all(dir).expect("make Prometheus's directory");
        let config = dir.join("prometheus.yml");
        // JSON strings are YAML strings.
        let text = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {alerts}\n\
             scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{target}]\n",
            alerts = Value::from(ALERTS),
            target = Value::from(admin.to_string()),
        );
        std::fs::write(&config, text).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("create prometheus.log");
        let err = out.try_clone().expect("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child: Reaped(child),
            addr,
            log,
            started: Instant::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Panics with `why` and Prometheus's log, unless the deadline is still ahead and Prometheus
    /// is still running.
    fn keep_waiting(&mut self, why: &str) {
        let exited = self.child.try_wait().ok().flatten();
        if exited.is_some() || self.started.elapsed() > PATIENCE {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let state = match exited {
                Some(status) => format!("prometheus exited ({status})"),
                None => format!("not within {PATIENCE:?}"),
            };
            panic!("{why}: {state}; its log:\n{log}");
        }
    }

    async fn wait_until_ready(&mut self) {
        loop {
            if try_http_get(self.addr, "GET", "/-/ready")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            self.keep_waiting("Prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `data` of a successful answer from the HTTP API to `GET path`; the error Prometheus gives
    /// otherwise.
    async fn api(&self, path: &str) -> Result<Value, String> {
        let reply = try_http_get(self.addr, "GET", path).await?;
        let body: Value = serde_json::from_str(&reply.body).map_err(|e| {
            format!(
                "HTTP {} with a body that is not JSON ({e}): {}",
                reply.status, reply.body
            )
        })?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"].clone())
    }

    /// The series `expr` returns now (a scalar or a string counts as one).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await?;
        match (data["resultType"].as_str(), &data["result"]) {
            (Some("vector" | "matrix"), Value::Array(series)) => Ok(series.clone()),
            (Some("scalar" | "string"), one @ Value::Array(_)) => Ok(vec![one.clone()]),
            _ => Err(format!("an answer that is not a query result: {data}")),
        }
    }

    async fn wait_until_target_up(&mut self, admin: SocketAddr) {
        let want = format!("http://{admin}/metrics");
        loop {
            let last = match self.api("/api/v1/targets?state=active").await {
                Ok(data) => {
                    let targets = data["activeTargets"].as_array().cloned().unwrap_or_default();
                    if let Some(t) = targets.iter().find(|t| t["scrapeUrl"] == want.as_str()) {
                        if t["health"] == "up" {
                            return;
                        }
                    }
                    Value::from(targets).to_string()
                }
                Err(e) => e,
            };
            self.keep_waiting(&format!("the scrape of {want} is not up (last: {last})"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `expr` returns a series.
    async fn wait_for_series(&mut self, expr: &str) {
        loop {
            let last = match self.query(expr).await {
                Ok(series) if !series.is_empty() => return,
                Ok(_) => "no series".to_string(),
                Err(e) => e,
            };
            self.keep_waiting(&format!("{expr}: {last}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The rules loaded (`/api/v1/rules`) once every one has been evaluated: those of alerts.yml
    /// exactly, each with health "ok".
    async fn wait_until_rules_evaluated(&mut self) -> Vec<Value> {
        let text = std::fs::read_to_string(ALERTS).expect("read examples/prometheus/alerts.yml");
        // Each rule's name, by hand: the file's shape is known (a `- alert: NAME` per rule), and
        // Prometheus, which parses the YAML, says whether it agrees.
        let in_file: BTreeSet<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("- ").unwrap_or(l);
                l.strip_prefix("alert:")
                    .or_else(|| l.strip_prefix("record:"))
                    .map(|name| name.trim().to_string())
            })
            .collect();
        assert!(!in_file.is_empty(), "no `alert:` in {ALERTS}");
        let expressions = text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                l.strip_prefix("- ").unwrap_or(l).starts_with("expr:")
            })
            .count();
        assert_eq!(
            expressions,
            in_file.len(),
            "{ALERTS}: rules named and `expr:` lines differ"
        );
        loop {
            let data = self.api("/api/v1/rules").await;
            let rules: Vec<Value> = data
                .as_ref()
                .ok()
                .and_then(|d| d["groups"].as_array())
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let loaded: BTreeSet<String> = rules
                .iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect();
            assert!(
                data.is_err() || (loaded == in_file && rules.len() == in_file.len()),
                "Prometheus loaded the rules {loaded:?} from {ALERTS}, which names {in_file:?}"
            );
            let broken: Vec<String> = rules
                .iter()
                .filter(|r| r["health"] == "err")
                .map(|r| format!("rule {}: {} ({})", r["name"], r["lastError"], r["query"]))
                .collect();
            assert!(broken.is_empty(), "rules that fail:\n{}", broken.join("\n"));
            if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
                return rules;
            }
            let health: Vec<String> = rules
                .iter()
                .map(|r| format!("{}: {}", r["name"], r["health"]))
                .collect();
            self.keep_waiting(&format!("the rules were not all evaluated ({data:?} {health:?})"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What the queries are checked with.
struct Check<'a> {
    prom: &'a Prometheus,
    /// The names of the series the daemon's /metrics exports.
    exported: &'a BTreeSet<String>,
}

impl Check<'_> {
    /// Every panel query and variable query of the dashboard; returns how many.
    async fn dashboard(&self, instance: &str, problems: &mut Vec<String>) -> usize {
        let text = std::fs::read_to_string(DASHBOARD).expect("read the dashboard");
        let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is not JSON");
        let variables = [
            ("job", JOB),
            ("instance", instance),
            ("__rate_interval", RATE_INTERVAL),
        ];
        let mut panels = Vec::new();
        collect_panels(&dashboard["panels"], &mut panels);
        let mut queries = 0;
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                queries += 1;
                let title = panel["title"].as_str().unwrap_or("");
                let at = format!("dashboard panel {title:?} {}: {expr}", target["refId"]);
                let expr = match substitute(expr, &variables) {
                    Ok(e) => e,
                    Err(e) => {
                        problems.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                self.must_return_series(&at, &expr, problems).await;
                self.selectors(&at, &expr, problems).await;
            }
        }
        if queries == 0 {
            problems.push(format!("{DASHBOARD}: no panel has a query"));
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if variable["type"] != "query" {
                continue;
            }
            queries += 1;
            let query = match &variable["query"] {
                Value::Object(q) => q.get("query").cloned().unwrap_or_default(),
                q => q.clone(),
            };
            let query = query.as_str().unwrap_or("");
            let at = format!("dashboard variable {}: {query}", variable["name"]);
            let want = variables
                .iter()
                .find(|(name, _)| variable["name"] == *name)
                .map(|(_, value)| *value);
            self.variable(&at, query, &variables, want, problems).await;
        }
        queries
    }

    /// A variable's `label_values(SELECTOR, LABEL)`: SELECTOR returns series, and LABEL takes
    /// the value this test gives the variable among them.
    async fn variable(
        &self,
        at: &str,
        query: &str,
        variables: &[(&str, &str)],
        want: Option<&str>,
        problems: &mut Vec<String>,
    ) {
        let inner = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'));
        let Some((selector, label)) = inner.and_then(|q| q.rsplit_once(',')) else {
            problems.push(format!(
                "{at}: not label_values(SELECTOR, LABEL), which this test reads"
            ));
            return;
        };
        let (selector, label) = match substitute(selector.trim(), variables) {
            Ok(s) => (s, label.trim()),
            Err(e) => return problems.push(format!("{at}: {e}")),
        };
        match self.prom.query(&selector).await {
            Err(e) => problems.push(format!("{at}: {e}")),
            Ok(series) => {
                let values: BTreeSet<&str> = series
                    .iter()
                    .filter_map(|s| s["metric"][label].as_str())
                    .collect();
                if want.is_some_and(|w| !values.contains(w)) {
                    problems.push(format!(
                        "{at}: the values of {label} are {values:?}, without {want:?}"
                    ));
                }
            }
        }
        self.selectors(at, &selector, problems).await;
    }

    /// Every alert rule Prometheus loaded: see the module's comment.
    async fn alerts(&self, rules: &[Value], problems: &mut Vec<String>) {
        for rule in rules {
            let expr = rule["query"].as_str().unwrap_or_default();
            let at = format!("alert rule {}: {expr}", rule["name"]);
            if let Err(e) = self.prom.query(expr).await {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            let pieces = match underlying(expr) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if pieces.is_empty() {
                problems.push(format!("{at}: names no series"));
            }
            for piece in pieces {
                let at = format!("{at}: the part {piece}");
                self.must_return_series(&at, &piece, problems).await;
            }
            self.selectors(&at, expr, problems).await;
        }
    }

    async fn must_return_series(&self, at: &str, expr: &str, problems: &mut Vec<String>) {
        match self.prom.query(expr).await {
            Ok(series) if series.is_empty() => problems.push(format!("{at}: no series")),
            Ok(_) => {}
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }

    /// Each selector of `expr` returns a series and names what /metrics exports (or `up`, which
    /// Prometheus makes).
    async fn selectors(&self, at: &str, expr: &str, problems: &mut Vec<String>) {
        let selectors = match tokenize(expr).map(|t| selectors(&t)) {
            Ok(s) => s,
            Err(e) => return problems.push(format!("{at}: {e}")),
        };
        for (name, selector) in selectors {
            if name.is_empty() {
                problems.push(format!("{at}: the selector {selector} has no metric name"));
            } else if name.starts_with("ml_api_logger_") && !self.exported.contains(&name) {
                problems.push(format!("{at}: {name} is not in the daemon's /metrics"));
            } else if !name.starts_with("ml_api_logger_") && name != "up" {
                problems.push(format!("{at}: {name} is neither the daemon's nor Prometheus's"));
            } else {
                let at = format!("{at}: the selector {selector}");
                self.must_return_series(&at, &selector, problems).await;
            }
        }
    }
}

/// Every panel, rows' panels included.
fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel);
        collect_panels(&panel["panels"], out);
    }
}

/// `expr` with Grafana's `$name` and `${name}` replaced by `variables`' values; an error naming
/// any other variable.
fn substitute(expr: &str, variables: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or("an unclosed ${")?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = variables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("the Grafana variable ${name}, which this test gives no value"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `%XX` for every byte but the unreserved characters of RFC 3986, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// --- PromQL, as much of it as finding selectors and cutting at operators needs -------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A metric, function, aggregation, keyword or modifier name.
    Ident,
    /// A `{…}` of label matchers, whole.
    Matchers,
    /// A `[…]` range or subquery, whole.
    Range,
    /// A number or duration.
    Number,
    Str,
    Open,
    Close,
    Comma,
    /// An operator: arithmetic, comparison, `@`.
    Op,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Where it starts in the expression.
    at: usize,
}

const COMPARISONS: [&str; 6] = ["==", "!=", ">=", "<=", ">", "<"];
const SET_OPERATORS: [&str; 3] = ["and", "or", "unless"];
/// Names that a label list may follow: an operator's `bool`, `on (…)`, `ignoring (…)`,
/// `group_left (…)`, `group_right (…)`; an aggregation's `by (…)`, `without (…)`.
const MODIFIERS: [&str; 7] = [
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "by",
    "without",
];
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const KEYWORDS: [&str; 5] = ["offset", "inf", "nan", "start", "end"];

fn tokenize(expr: &str) -> Result<Vec<Token<'_>>, String> {
    let bytes = expr.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    // The end of the quoted string that starts at `from`.
    let string_end = |from: usize| -> Result<usize, String> {
        let quote = bytes[from];
        let mut j = from + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if quote != b'`' => j += 2,
                b if b == quote => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(format!("an unclosed string at {from}"))
    };
    // The end of the `{…}` or `[…]` that starts at `from`.
    let group_end = |from: usize, close: u8| -> Result<usize, String> {
        let mut j = from + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'"' | b'\'' | b'`' => j = string_end(j)?,
                b if b == close => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(format!("an unclosed {:?} at {from}", bytes[from] as char))
    };
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = expr[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i = string_end(i)?;
                Kind::Str
            }
            b'{' => {
                i = group_end(i, b'}')?;
                Kind::Matchers
            }
            b'[' => {
                i = group_end(i, b']')?;
                Kind::Range
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':'))
                {
                    i += 1;
                }
                Kind::Ident
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() {
                    let c = bytes[i];
                    let exponent_sign = matches!(c, b'+' | b'-')
                        && matches!(bytes[i - 1], b'e' | b'E')
                        && !expr[start..i].starts_with("0x");
                    if !(c.is_ascii_alphanumeric() || c == b'.' || exponent_sign) {
                        break;
                    }
                    i += 1;
                }
                Kind::Number
            }
            _ => {
                let two = expr.get(i..i + 2).unwrap_or("");
                i += if ["==", "!=", ">=", "<=", "=~", "!~"].contains(&two) {
                    2
                } else {
                    1
                };
                if !"+-*/%^<>=@!~".contains(b as char) {
                    return Err(format!("cannot read {:?} at {start}", &expr[start..]));
                }
                Kind::Op
            }
        };
        tokens.push(Token {
            kind,
            text: &expr[start..i],
            at: start,
        });
    }
    Ok(tokens)
}

/// The index just past the `)` that closes the `(` at `open`.
fn past_group(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// Each series selector of an expression: its metric name (empty when it has none) and its text,
/// `name{matchers}` without any range.
fn selectors(tokens: &[Token]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let next = tokens.get(i + 1);
        let opens = next.is_some_and(|n| n.kind == Kind::Open);
        match t.kind {
            // A label list: `by (kind)`, `ignoring (reason)`.
            Kind::Ident if MODIFIERS.contains(&t.text) && opens => i = past_group(tokens, i + 1),
            // A function call, an aggregation, a keyword, an operator's name.
            Kind::Ident
                if opens
                    || MODIFIERS.contains(&t.text)
                    || AGGREGATIONS.contains(&t.text)
                    || KEYWORDS.contains(&t.text)
                    || SET_OPERATORS.contains(&t.text) =>
            {
                i += 1
            }
            Kind::Ident => {
                let matchers = next.filter(|n| n.kind == Kind::Matchers).map_or("", |n| n.text);
                out.push((t.text.to_string(), format!("{}{matchers}", t.text)));
                i += if matchers.is_empty() { 1 } else { 2 };
            }
            Kind::Matchers => {
                out.push((String::new(), t.text.to_string()));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The pieces of `expr` between its top-level tokens that `cut` picks, each without the operator
/// modifiers (`bool`, `on (…)`, `ignoring (…)`, `group_left (…)`) it begins with.
fn cut(expr: &str, at: impl Fn(&Token) -> bool) -> Result<Vec<&str>, String> {
    let tokens = tokenize(expr)?;
    let mut pieces = Vec::new();
    let mut depth = 0;
    let mut from = 0;
    for t in &tokens {
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth -= 1,
            _ if depth == 0 && at(t) => {
                pieces.push(&expr[from..t.at]);
                from = t.at + t.text.len();
            }
            _ => {}
        }
    }
    pieces.push(&expr[from..]);
    pieces
        .into_iter()
        .map(|piece| {
            let tokens = tokenize(piece)?;
            let mut i = 0;
            while i < tokens.len() && tokens[i].kind == Kind::Ident && MODIFIERS.contains(&tokens[i].text) {
                i += 1;
                if tokens.get(i).is_some_and(|t| t.kind == Kind::Open) {
                    i = past_group(&tokens, i);
                }
            }
            Ok(tokens.get(i).map_or("", |t| piece[t.at..].trim()))
        })
        .collect()
}

/// What an alert's condition is made of: cut at its top-level set operators, then each operand at
/// its top-level comparisons; the pieces that name a series.
fn underlying(expr: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for operand in cut(expr, |t| t.kind == Kind::Ident && SET_OPERATORS.contains(&t.text))? {
        for side in cut(operand, |t| t.kind == Kind::Op && COMPARISONS.contains(&t.text))? {
            if !selectors(&tokenize(side)?).is_empty() {
                out.push(side.to_string());
            }
        }
    }
    Ok(out)
}

#[test]
fn an_alert_condition_is_cut_into_what_it_compares() {
    let expr = r#"rate(a_total{reason="tls"}[10m]) / ignoring (reason) rate(b_total[10m]) > 0.1 and ignoring (reason) increase(a_total{reason="tls"}[10m]) > 5"#;
    assert_eq!(
        underlying(expr).unwrap(),
        [
            r#"rate(a_total{reason="tls"}[10m]) / ignoring (reason) rate(b_total[10m])"#,
            r#"increase(a_total{reason="tls"}[10m])"#,
        ]
    );
    assert_eq!(
        underlying("(expiry > 0) - time() < 14 * 86400").unwrap(),
        ["(expiry > 0) - time()"]
    );
    assert_eq!(
        underlying(r#"up{job=~"a[-_]b", x!="=="} == 0"#).unwrap(),
        [r#"up{job=~"a[-_]b", x!="=="}"#]
    );
    assert_eq!(
        underlying("sum without (kind) (increase(r_total[5m])) == 0 and max_over_time(open[5m]) > 0")
            .unwrap(),
        [
            "sum without (kind) (increase(r_total[5m]))",
            "max_over_time(open[5m])"
        ]
    );
    assert_eq!(underlying("0 < bool on (x) g").unwrap(), ["g"]);
    let names = |e: &str| -> Vec<String> {
        selectors(&tokenize(e).unwrap())
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    };
    assert_eq!(
        names(r#"histogram_quantile(0.5, sum by (le) (rate(h_bucket{job=~"j"}[20s])))"#),
        [r#"h_bucket{job=~"j"}"#]
    );
    assert_eq!(
        names("count by (version) (info) / sum(x offset 5m) - 1e-3"),
        ["info", "x"]
    );
    assert_eq!(
        substitute(
            "r[$__rate_interval] {j=~\"${job}\"}",
            &[("job", "a"), ("__rate_interval", "9s")]
        ),
        Ok("r[9s] {j=~\"a\"}".to_string())
    );
    assert!(substitute("$other", &[]).is_err());
    assert_eq!(percent_encode("a{b=\"c d\"}"), "a%7Bb%3D%22c%20d%22%7D");
}
