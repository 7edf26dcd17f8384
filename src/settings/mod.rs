//! The daemon's settings: each one's flag, variable, help and value name in its clap attribute
//! on [`ServeArgs`] (the only list of them), checked into a typed [`Settings`].
//!
//! clap reads the raw strings (a flag wins over its variable); [`Settings::from_matches`] turns
//! them into [`Settings`] and, for a bad value, a [`SettingsError`] whose one line names the
//! setting as the operator wrote it (`LOGGER_PORT` or `--port`, read from that same attribute),
//! the value and the reason. It does not open files or sockets: the TLS and output modules check
//! what they load. The units values are written in are [`units`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::correlate::CorrelateConfig;
use crate::net::allow::Allowlist;
use crate::observe::diagnostics::{self, LogFormat};
use crate::redact;

pub(crate) mod units;

/// A setting that cannot be used, named as the operator gave it.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value}: {reason}")]
pub struct SettingsError {
    /// `LOGGER_PORT` when the value came from the environment, `--port` when from a flag.
    pub(crate) name: String,
    /// The value as given, quoted unless it is a path.
    pub(crate) value: String,
    /// Why it cannot be used.
    pub(crate) reason: String,
}

/// The daemon's settings as raw strings, exactly as given; [`Settings::from_matches`] checks them.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PEM file: server certificate, then its chain; may also hold the key [default: the embedded default certificate]
    #[arg(long, env = "LOGGER_CERT", value_name = "FILE")]
    pub(crate) cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) [default: the key in --cert, or the embedded default]
    #[arg(long, env = "LOGGER_KEY", value_name = "FILE")]
    pub(crate) key: Option<String>,
    /// TCP port to listen on (0: any free port) [default: 8443]
    #[arg(long, env = "LOGGER_PORT", value_name = "PORT")]
    pub(crate) port: Option<String>,
    /// Listen on this one address only [default: every address, IPv4 and IPv6]
    #[arg(long, env = "LOGGER_IP", value_name = "ADDR")]
    pub(crate) ip: Option<String>,
    /// File to append records to; "-" is stdout [default: -]
    #[arg(long, env = "LOGGER_OUTPUT", value_name = "FILE")]
    pub(crate) output: Option<String>,
    /// Refuse records that do not conform to the record format with 422 [default: off]
    #[arg(long, env = "LOGGER_STRICT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub(crate) strict: Option<String>,
    /// on: acknowledge a record only after fdatasync(2) [default: off]
    #[arg(long, env = "LOGGER_FSYNC", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub(crate) fsync: Option<String>,
    /// Largest request body, counted after decompression [default: 16MiB]
    #[arg(long, env = "LOGGER_MAX_BODY", value_name = "SIZE")]
    pub(crate) max_body: Option<String>,
    /// File that keeps every refused body (400, 413, 415, 422) as one NDJSON line, with why [default: none]
    #[arg(long, env = "LOGGER_REJECTS", value_name = "FILE")]
    pub(crate) rejects: Option<String>,
    /// Add "_received_at" and "_peer" as the last members of each record [default: off]
    #[arg(long, env = "LOGGER_ANNOTATE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub(crate) annotate: Option<String>,
    /// A request with no response after this is counted unanswered [default: 5m]
    #[arg(long, env = "LOGGER_RESPONSE_TIMEOUT", value_name = "DURATION")]
    pub(crate) response_timeout: Option<String>,
    /// Most requests waiting for their response; beyond it the oldest is dropped [default: 100000]
    #[arg(long, env = "LOGGER_MAX_PENDING", value_name = "N")]
    pub(crate) max_pending: Option<String>,
    /// Correlation key: "address" (sender IP and sequence) or "sequence" alone, for senders behind a proxy [default: address]
    #[arg(long, env = "LOGGER_CORRELATE_BY", value_name = "KEY")]
    pub(crate) correlate_by: Option<String>,
    /// Require client certificates signed by this CA (PEM) [default: none]
    #[arg(long, env = "LOGGER_CLIENT_CA", value_name = "FILE")]
    pub(crate) client_ca: Option<String>,
    /// Comma-separated addresses and CIDR ranges allowed to connect [default: anyone]
    #[arg(long, env = "LOGGER_ALLOW", value_name = "LIST")]
    pub(crate) allow: Option<String>,
    /// Comma-separated addresses and CIDR ranges of load balancers that begin each connection with a PROXY protocol header (v1 or v2); its source address is the peer [default: none]
    #[arg(long, env = "LOGGER_PROXY_PROTOCOL", value_name = "LIST")]
    pub(crate) proxy_protocol: Option<String>,
    /// Where the embedded default certificate is kept [default: ./certs]
    #[arg(long, env = "LOGGER_CERT_DIR", value_name = "DIR")]
    pub(crate) cert_dir: Option<String>,
    /// Comma-separated header names whose values are written as keyed marks, or "off" [default: Authorization,Proxy-Authorization,Cookie,Set-Cookie,X-Api-Key,X-Auth-Token]
    #[arg(long, env = "LOGGER_REDACT", value_name = "LIST")]
    pub(crate) redact: Option<String>,
    /// The redaction key: 64 hex digits, made (mode 0600) at the first start [default: redact.key in the cert directory]
    #[arg(long, env = "LOGGER_REDACT_KEY", value_name = "FILE")]
    pub(crate) redact_key: Option<String>,
    /// Time allowed for the TLS handshake [default: 10s]
    #[arg(long, env = "LOGGER_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub(crate) handshake_timeout: Option<String>,
    /// Deadline for a whole HTTP/1 request head, from its first byte [default: 10s]
    #[arg(long, env = "LOGGER_HEADER_TIMEOUT", value_name = "DURATION")]
    pub(crate) header_timeout: Option<String>,
    /// Deadline for a whole request body [default: 30s]
    #[arg(long, env = "LOGGER_BODY_TIMEOUT", value_name = "DURATION")]
    pub(crate) body_timeout: Option<String>,
    /// Time a connection may sit with no request in progress [default: 60s]
    #[arg(long, env = "LOGGER_IDLE_TIMEOUT", value_name = "DURATION")]
    pub(crate) idle_timeout: Option<String>,
    /// Connections served at once; a new one beyond it waits briefly, then is closed [default: 1024]
    #[arg(long, env = "LOGGER_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) max_connections: Option<String>,
    /// Threads that serve connections [default: half the CPUs this process may use, at least 1]
    #[arg(long, env = "LOGGER_WORKER_THREADS", value_name = "N")]
    pub(crate) worker_threads: Option<String>,
    /// Grace period for in-flight requests at SIGTERM/SIGINT [default: 10s]
    #[arg(long, env = "LOGGER_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub(crate) shutdown_timeout: Option<String>,
    /// Diagnostics filter, RUST_LOG style: a level, or target=level pairs [default: info]
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Diagnostics as "text" lines or one JSON object per line ("json") [default: text]
    #[arg(long, env = "LOGGER_LOG_FORMAT", value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
    /// Plain-HTTP listener for GET /metrics and GET /healthz, e.g. 127.0.0.1:9187 [default: none]
    #[arg(long, env = "LOGGER_ADMIN_ADDR", value_name = "ADDR:PORT")]
    pub(crate) admin_addr: Option<String>,
    /// Seal the output against tampering with this state, made by `seal-keys`; needs --output [default: none]
    #[arg(long, env = "LOGGER_SEAL", value_name = "FILE")]
    pub(crate) seal: Option<String>,
    /// For tests only: the interval between seals, instead of a minute [default: 60s]
    #[arg(long, env = "LOGGER_SEAL_INTERVAL", value_name = "DURATION", hide = true)]
    pub(crate) seal_interval: Option<String>,
}

/// The most worker threads `LOGGER_WORKER_THREADS` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Why a `LOGGER_WORKER_THREADS` value is refused.
pub const NOT_A_THREAD_COUNT: &str = "not a thread count (1-1024)";

/// A `LOGGER_WORKER_THREADS` value: a whole number from 1 to [`MAX_WORKER_THREADS`].
pub fn parse_worker_threads(value: &str) -> Option<usize> {
    let n = value.trim().parse::<usize>().ok()?;
    (1..=MAX_WORKER_THREADS).contains(&n).then_some(n)
}

/// Half the CPUs this process may use (its affinity and cgroup quota), at least one.
///
/// Measured on 2 CPUs shared with the load (bench/RESULTS.md): one worker served 102,000
/// requests/s at 9.6 µs of CPU each, two workers 71,000 at 13.3 µs: connections handed between
/// workers, and the locks they share, cost more than the second CPU gives. One worker carries
/// far more than a sensor sends; the other half of the machine is left to the kernel's network
/// and disk work.
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputTarget {
    /// Standard output, used as it is.
    Stdout,
    /// A file opened for appending.
    File(PathBuf),
}

impl std::fmt::Display for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputTarget::Stdout => f.write_str("stdout"),
            OutputTarget::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertSource {
    /// `LOGGER_CERT` (and maybe `LOGGER_KEY`) name the files.
    Files {
        /// Certificate chain, maybe with the key.
        cert: PathBuf,
        /// The key, when it is not in `cert`.
        key: Option<PathBuf>,
    },
    /// Neither was set: use, or create, `server.crt`/`server.key` in this directory.
    Embedded(PathBuf),
}

/// Which header values are written as keyed marks (SPEC 4.9), and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedactSettings {
    /// The header names (`LOGGER_REDACT`); empty when `off`.
    pub names: Vec<String>,
    /// The key file (`LOGGER_REDACT_KEY`): read, or made at the first start.
    pub key: PathBuf,
}

/// Every limit on a peer; each one a defence against a slow or hostile client.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest body after decompression.
    pub max_body: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for an HTTP/1 request head from its first byte.
    pub header_timeout: Duration,
    /// Deadline for a whole request body.
    pub body_timeout: Duration,
    /// Time with no request in progress before a connection is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Grace period at shutdown.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The daemon's checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Certificate and key.
    pub(crate) cert: CertSource,
    /// Port to listen on; 0 asks the system for a free one.
    pub(crate) port: u16,
    /// One address to bind, or every address when `None`.
    pub(crate) ip: Option<IpAddr>,
    /// Where records go.
    pub(crate) output: OutputTarget,
    /// Refuse nonconforming records instead of writing them.
    pub(crate) strict: bool,
    /// fdatasync before acknowledging.
    pub(crate) fsync: bool,
    /// Where refused bodies are kept.
    pub(crate) rejects: Option<PathBuf>,
    /// Add `_received_at` and `_peer` to each record.
    pub(crate) annotate: bool,
    /// Credentials in header values written as marks.
    pub(crate) redact: RedactSettings,
    /// Correlation and duplicate suppression.
    pub(crate) correlate: CorrelateConfig,
    /// Trust anchors for client certificates (mTLS).
    pub(crate) client_ca: Option<PathBuf>,
    /// Who may connect.
    pub(crate) allow: Allowlist,
    /// The load balancers whose connections begin with a PROXY header; `None`: no connection
    /// does, and none is peeked at.
    pub(crate) proxy_protocol: Option<Allowlist>,
    /// Limits on peers.
    pub(crate) limits: Limits,
    /// The runtime's worker threads.
    pub worker_threads: usize,
    /// Diagnostics filter.
    pub log_filter: String,
    /// Diagnostics as text or JSON lines.
    pub log_format: LogFormat,
    /// Where `/metrics` and `/healthz` are served over plain HTTP; off when `None`.
    pub(crate) admin_addr: Option<SocketAddr>,
    /// The sealing state (LOGGER_SEAL); sealing is off when `None`.
    pub(crate) seal: Option<PathBuf>,
    /// The interval between seals: a minute, shorter only in tests.
    pub(crate) seal_interval: Duration,
}

impl Settings {
    /// Checks the daemon's arguments as clap matched them (`matches` is the top level, or the
    /// `serve` subcommand's). An empty value is an unset one, as the Go program treats
    /// `LOGGER_IP=` (and as an environment file with a blank value means).
    pub fn from_matches(matches: &ArgMatches) -> Result<Settings, SettingsError> {
        let raw = Raw::new(matches);
        let cert = raw.path("cert")?;
        let key = raw.path("key")?;
        let cert_dir = raw.path("cert_dir")?.unwrap_or_else(|| PathBuf::from("./certs"));
        let cert = match (cert, key) {
            (Some(cert), key) => CertSource::Files { cert, key },
            (None, Some(key)) => {
                return Err(raw.error(
                    "key",
                    &key.display().to_string(),
                    "a key without a certificate; set LOGGER_CERT too",
                ))
            }
            (None, None) => CertSource::Embedded(cert_dir.clone()),
        };
        let port = raw.parse("port", 8443, |s| {
            s.trim().parse::<u16>().map_err(|_| "not a port number (1-65535)")
        })?;
        let ip = raw.optional("ip", units::parse_ip)?;
        let output = match raw.value("output") {
            None | Some("-") => OutputTarget::Stdout,
            Some(s) => OutputTarget::File(PathBuf::from(s)),
        };
        let strict = raw.boolean("strict")?;
        let fsync = raw.boolean("fsync")?;
        let annotate = raw.boolean("annotate")?;
        let rejects = raw.path("rejects")?;
        if let (Some(r), OutputTarget::File(o)) = (&rejects, &output) {
            if r == o {
                return Err(raw.error(
                    "rejects",
                    &r.display().to_string(),
                    "the same file as LOGGER_OUTPUT; refused bodies must not mix with records",
                ));
            }
        }
        let redact = RedactSettings {
            names: raw.parse("redact", redact::default_names(), |s| {
                redact::parse_names(s).map_err(|e| e.to_string())
            })?,
            key: raw
                .path("redact_key")?
                .unwrap_or_else(|| cert_dir.join("redact.key")),
        };
        let client_ca = raw.path("client_ca")?;
        let allow = raw.parse("allow", Allowlist::default(), Allowlist::parse)?;
        // A list of nothing but commas is as unset as an empty value.
        let proxy_protocol = raw
            .optional("proxy_protocol", Allowlist::parse)?
            .filter(|list| !list.is_open());

        let mut correlate = CorrelateConfig::default();
        if let Some(timeout) = raw.optional("response_timeout", units::parse_duration)? {
            correlate.response_timeout = timeout;
            correlate.duplicate_window = timeout;
        }
        if let Some(n) = raw.optional("max_pending", |s| count(s, 10_000_000))? {
            correlate.max_pending = n;
            correlate.duplicate_cap = n.saturating_mul(2);
        }
        correlate.by_address = raw.parse("correlate_by", correlate.by_address, |s| {
            match s.trim().to_ascii_lowercase().as_str() {
                "address" | "peer" => Ok(true),
                "sequence" => Ok(false),
                _ => Err("not a correlation key (address or sequence)"),
            }
        })?;

        let defaults = Limits::default();
        let limits = Limits {
            max_body: raw.parse("max_body", defaults.max_body, |s| match units::parse_size(s)? {
                0 => Err("must be at least 1 byte"),
                n => usize::try_from(n).map_err(|_| "too large for this machine"),
            })?,
            handshake_timeout: raw.duration("handshake_timeout", defaults.handshake_timeout)?,
            header_timeout: raw.duration("header_timeout", defaults.header_timeout)?,
            body_timeout: raw.duration("body_timeout", defaults.body_timeout)?,
            idle_timeout: raw.duration("idle_timeout", defaults.idle_timeout)?,
            max_connections: raw.parse("max_connections", defaults.max_connections, |s| {
                count(s, 1_000_000).map_err(|_| "not a connection count (1-1000000)")
            })?,
            shutdown_timeout: raw.duration("shutdown_timeout", defaults.shutdown_timeout)?,
        };
        let worker_threads = raw.parse("worker_threads", default_worker_threads(), |s| {
            parse_worker_threads(s).ok_or(NOT_A_THREAD_COUNT)
        })?;
        let log_filter = raw.parse("log_level", "info".to_string(), |s| {
            diagnostics::check_filter(s).map(|()| s.to_string())
        })?;
        let log_format = raw.parse("log_format", LogFormat::Text, str::parse)?;
        let admin_addr = raw.optional("admin_addr", |s| {
            s.trim()
                .parse::<SocketAddr>()
                .map_err(|_| "not an address and port (127.0.0.1:9187, [::1]:9187)")
        })?;
        let seal = raw.path("seal")?;
        if let (Some(state), OutputTarget::Stdout) = (&seal, &output) {
            return Err(raw.error(
                "seal",
                &state.display().to_string(),
                "sealing needs a file output; set LOGGER_OUTPUT",
            ));
        }
        let seal_interval = raw.duration("seal_interval", crate::daemon::sealing::SEAL_EVERY)?;
        Ok(Settings {
            cert,
            port,
            ip,
            output,
            strict,
            fsync,
            rejects,
            annotate,
            redact,
            correlate,
            client_ca,
            allow,
            proxy_protocol,
            limits,
            worker_threads,
            log_filter,
            log_format,
            admin_addr,
            seal,
            seal_interval,
        })
    }
}

/// A whole number from 1 to `max`.
fn count(s: &str, max: usize) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("not a count (1-{max})")),
    }
}

/// The daemon's raw values, read by argument id, and errors that name a setting as the operator
/// gave it: the flag and the variable come from the setting's clap definition, never a second list.
struct Raw<'a> {
    matches: &'a ArgMatches,
    /// The definitions, for each setting's flag and variable names.
    definitions: clap::Command,
}

impl<'a> Raw<'a> {
    fn new(matches: &'a ArgMatches) -> Raw<'a> {
        Raw {
            matches,
            definitions: ServeArgs::augment_args(clap::Command::new("serve")),
        }
    }

    /// The value of setting `id`, `None` when unset or empty.
    fn value(&self, id: &str) -> Option<&'a str> {
        let v = self.matches.get_one::<String>(id)?;
        (!v.trim().is_empty()).then_some(v.as_str())
    }

    /// The value parsed by `parse`, or `default` when unset.
    fn parse<T, E: Into<String>>(
        &self,
        id: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, SettingsError> {
        Ok(self.optional(id, parse)?.unwrap_or(default))
    }

    /// The value parsed by `parse`, or `None` when unset.
    fn optional<T, E: Into<String>>(
        &self,
        id: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, SettingsError> {
        match self.value(id) {
            None => Ok(None),
            Some(s) => parse(s).map(Some).map_err(|reason| self.error(id, s, reason)),
        }
    }

    fn path(&self, id: &str) -> Result<Option<PathBuf>, SettingsError> {
        self.optional(id, |s| Ok::<_, String>(PathBuf::from(s)))
    }

    fn boolean(&self, id: &str) -> Result<bool, SettingsError> {
        self.parse(id, false, |s| {
            units::parse_bool(s).ok_or("not a boolean (on/off, true/false, yes/no, 1/0)")
        })
    }

    fn duration(&self, id: &str, default: Duration) -> Result<Duration, SettingsError> {
        self.parse(id, default, units::parse_duration)
    }

    /// The error for setting `id`: named by its variable when the value came from the
    /// environment, by its flag otherwise; the value quoted unless it is a path.
    fn error(&self, id: &str, value: &str, reason: impl Into<String>) -> SettingsError {
        let arg = self.definitions.get_arguments().find(|a| a.get_id() == id);
        let from_env = matches!(self.matches.value_source(id), Some(ValueSource::EnvVariable));
        let env = arg
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned());
        let flag = arg.and_then(|a| a.get_long()).map(|l| format!("--{l}"));
        let name = match (from_env, env, flag) {
            (true, Some(env), _) => env,
            (_, _, Some(flag)) => flag,
            _ => id.to_string(),
        };
        let is_path = arg
            .and_then(|a| a.get_value_names())
            .is_some_and(|names| names.iter().any(|n| *n == "FILE" || *n == "DIR"));
        SettingsError {
            name,
            value: if is_path {
                value.to_string()
            } else {
                format!("{value:?}")
            },
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's settings from `args` alone: the `LOGGER_*` variables of the shell that runs
    /// the tests are not read (the definitions are copied without their `env`).
    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cmd = ServeArgs::augment_args(clap::Command::new("ml_api_logger")).mut_args(|a| a.env(None));
        let mut all = vec!["ml_api_logger"];
        all.extend_from_slice(args);
        let matches = cmd.try_get_matches_from(all).map_err(|e| e.to_string())?;
        Settings::from_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 8443);
        assert_eq!(s.ip, None);
        assert_eq!(s.output, OutputTarget::Stdout);
        assert!(!s.strict && !s.fsync);
        assert_eq!(s.limits.max_body, 16 << 20);
        assert_eq!(s.cert, CertSource::Embedded(PathBuf::from("./certs")));
        assert_eq!((s.admin_addr, s.log_format), (None, LogFormat::Text));
        assert_eq!(s.redact.names, redact::default_names());
        assert_eq!(s.redact.key, PathBuf::from("./certs/redact.key"));
    }

    #[test]
    fn redaction_settings() {
        let s = settings(&["--redact", "X-Custom, cookie", "--cert-dir", "/etc/mlal"]).unwrap();
        assert_eq!(s.redact.names, ["X-Custom", "cookie"]);
        assert_eq!(s.redact.key, PathBuf::from("/etc/mlal/redact.key"));
        let s = settings(&["--redact", "off", "--redact-key", "/k/r.key"]).unwrap();
        assert!(s.redact.names.is_empty());
        assert_eq!(s.redact.key, PathBuf::from("/k/r.key"));
        assert_eq!(
            settings(&["--redact", "Cookie,X Y"]).unwrap_err(),
            r#"--redact="Cookie,X Y": "X Y": ' ' cannot be part of an HTTP header name"#
        );
    }

    #[test]
    fn bad_values_name_the_flag_value_and_reason() {
        assert_eq!(
            settings(&["--port", "abc"]).unwrap_err(),
            r#"--port="abc": not a port number (1-65535)"#
        );
        assert!(settings(&["--port", "70000"]).is_err());
        assert!(settings(&["--ip", "1.2.3"])
            .unwrap_err()
            .contains("not an IP address"));
        assert!(settings(&["--max-body", "lots"])
            .unwrap_err()
            .starts_with("--max-body=\"lots\""));
        assert_eq!(
            settings(&["--max-body", "0"]).unwrap_err(),
            r#"--max-body="0": must be at least 1 byte"#
        );
        assert!(settings(&["--idle-timeout", "0"]).is_err());
        assert!(settings(&["--strict=maybe"])
            .unwrap_err()
            .contains("not a boolean"));
        assert_eq!(
            settings(&["--key", "x.key"]).unwrap_err(),
            "--key=x.key: a key without a certificate; set LOGGER_CERT too"
        );
        assert_eq!(
            settings(&["--admin-addr", "9187"]).unwrap_err(),
            r#"--admin-addr="9187": not an address and port (127.0.0.1:9187, [::1]:9187)"#
        );
        assert_eq!(
            settings(&["--log-format", "xml"]).unwrap_err(),
            r#"--log-format="xml": not a log format (text or json)"#
        );
        assert_eq!(
            settings(&["--max-pending", "0"]).unwrap_err(),
            r#"--max-pending="0": not a count (1-10000000)"#
        );
        assert_eq!(
            settings(&["--max-connections", "x"]).unwrap_err(),
            r#"--max-connections="x": not a connection count (1-1000000)"#
        );
        assert_eq!(
            settings(&["--correlate-by", "port"]).unwrap_err(),
            r#"--correlate-by="port": not a correlation key (address or sequence)"#
        );
        assert_eq!(
            settings(&["--output", "/tmp/x", "--rejects", "/tmp/x"]).unwrap_err(),
            "--rejects=/tmp/x: the same file as LOGGER_OUTPUT; refused bodies must not mix with records"
        );
        assert_eq!(
            settings(&["--seal", "/tmp/s.state"]).unwrap_err(),
            "--seal=/tmp/s.state: sealing needs a file output; set LOGGER_OUTPUT"
        );
        let s = settings(&["--seal", "/tmp/s.state", "--output", "/tmp/x"]).unwrap();
        assert_eq!(s.seal, Some(PathBuf::from("/tmp/s.state")));
        assert_eq!(s.seal_interval, Duration::from_secs(60));
    }

    #[test]
    fn every_setting_takes_an_empty_value_as_unset() {
        // Empty is unset, as in the Go program: for every setting there is, not a list of them.
        let cmd = ServeArgs::augment_args(clap::Command::new("x"));
        let mut args = Vec::new();
        for arg in cmd.get_arguments() {
            let long = arg.get_long().expect("every setting has a flag");
            assert!(arg.get_env().is_some(), "--{long} has no variable");
            args.push(format!("--{long}="));
        }
        assert!(args.len() >= 26, "{args:?}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = settings(&args).unwrap();
        assert_eq!((s.port, s.ip, s.output), (8443, None, OutputTarget::Stdout));
    }

    #[test]
    fn operations_settings() {
        let s = settings(&["--admin-addr", "[::1]:9187", "--log-format", "JSON"]).unwrap();
        assert_eq!(s.admin_addr, Some("[::1]:9187".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(settings(&["--admin-addr", ""]).unwrap().admin_addr, None);
    }

    #[test]
    fn values_reach_the_settings() {
        let s = settings(&["--fsync", "--ip", "[::1]", "--output", "/tmp/x.json"]).unwrap();
        assert!(s.fsync);
        assert_eq!(s.ip, Some("::1".parse().unwrap()));
        assert_eq!(s.output, OutputTarget::File("/tmp/x.json".into()));
        let s = settings(&[
            "--max-pending",
            "10",
            "--response-timeout",
            "2m",
            "--correlate-by",
            "sequence",
        ])
        .unwrap();
        assert_eq!(
            (
                s.correlate.max_pending,
                s.correlate.duplicate_cap,
                s.correlate.by_address
            ),
            (10, 20, false)
        );
        assert_eq!(s.correlate.response_timeout, Duration::from_secs(120));
        let s = settings(&["--proxy-protocol", "10.0.0.5, 2001:db8::/32"]).unwrap();
        let balancers = s.proxy_protocol.unwrap();
        assert!(balancers.allows("10.0.0.5".parse().unwrap()));
        assert!(!balancers.allows("10.0.0.6".parse().unwrap()));
        assert_eq!(balancers.to_string(), "10.0.0.5/32,2001:db8::/32");
        assert_eq!(settings(&[]).unwrap().proxy_protocol, None);
        assert_eq!(
            settings(&["--proxy-protocol", " , "]).unwrap().proxy_protocol,
            None
        );
    }
}
