//! Settings: the command line and the `LOGGER_*` environment, parsed and checked in one place.
//!
//! clap reads the raw strings (a flag wins over its variable); this module turns them into a
//! typed [`Settings`] and, for a bad value, a [`SettingsError`] whose one line names the
//! setting as the operator wrote it (`LOGGER_PORT` or `--port`), the value and the reason.
//! It does not open files or sockets: the TLS and output modules check what they load.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// A setting that cannot be used, named as the operator gave it.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value}: {reason}")]
pub struct SettingsError {
    /// `LOGGER_PORT` when the value came from the environment, `--port` when from a flag.
    pub name: String,
    /// The value as given, quoted unless it is a path.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// The command line: `ml_api_logger [FLAGS]` is the same as `ml_api_logger serve [FLAGS]`.
#[derive(Debug, Parser)]
#[command(
    name = "ml_api_logger",
    version,
    about = "Receives ExtraHop ML Service API interaction logs over HTTPS and appends them as NDJSON",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands. Each but `serve` lives in its own `cmd_*` module with its arguments.
// Parsed once per process: the size of the `serve` variant costs nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Make a CA and a server certificate: the five files of the vendor's openssl commands, in one step.
    Cert(crate::cmd_cert::CertArgs),
    /// POST records from files or stdin to a logger: test a setup end to end, or replay an old log.
    Send(crate::cmd_send::SendArgs),
    /// Summarize a log (any size, any form): conformance, pairs, duplicates, sequences; or pair or normalize it.
    Inspect(crate::cmd_inspect::InspectArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::cmd_completions::CompletionsArgs),
    /// Print the manual page (roff): ml_api_logger man > ml_api_logger.1
    Man,
}

/// The daemon's settings as raw strings, exactly as given; [`Settings::from_matches`] checks them.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PEM file: server certificate, then its chain; may also hold the key [default: the embedded default certificate]
    #[arg(long, env = "LOGGER_CERT", value_name = "FILE")]
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) [default: the key in --cert, or the embedded default]
    #[arg(long, env = "LOGGER_KEY", value_name = "FILE")]
    pub key: Option<String>,
    /// TCP port to listen on (0: any free port) [default: 8443]
    #[arg(long, env = "LOGGER_PORT", value_name = "PORT")]
    pub port: Option<String>,
    /// Listen on this one address only [default: every address, IPv4 and IPv6]
    #[arg(long, env = "LOGGER_IP", value_name = "ADDR")]
    pub ip: Option<String>,
    /// File to append records to; "-" is stdout [default: -]
    #[arg(long, env = "LOGGER_OUTPUT", value_name = "FILE")]
    pub output: Option<String>,
    /// Refuse records that do not conform to the record format with 422 [default: off]
    #[arg(long, env = "LOGGER_STRICT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub strict: Option<String>,
    /// on: acknowledge a record only after fdatasync(2) [default: off]
    #[arg(long, env = "LOGGER_FSYNC", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub fsync: Option<String>,
    /// Largest request body, counted after decompression [default: 16MiB]
    #[arg(long, env = "LOGGER_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,
    /// File that keeps every refused body (400, 413, 415, 422) as one NDJSON line, with why [default: none]
    #[arg(long, env = "LOGGER_REJECTS", value_name = "FILE")]
    pub rejects: Option<String>,
    /// Add "_received_at" and "_peer" as the last members of each record [default: off]
    #[arg(long, env = "LOGGER_ANNOTATE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "on")]
    pub annotate: Option<String>,
    /// A request with no response after this is counted unanswered [default: 5m]
    #[arg(long, env = "LOGGER_RESPONSE_TIMEOUT", value_name = "DURATION")]
    pub response_timeout: Option<String>,
    /// Most requests waiting for their response; beyond it the oldest is dropped [default: 100000]
    #[arg(long, env = "LOGGER_MAX_PENDING", value_name = "N")]
    pub max_pending: Option<String>,
    /// Correlation key: "address" (sender IP and sequence) or "sequence" alone, for senders behind a proxy [default: address]
    #[arg(long, env = "LOGGER_CORRELATE_BY", value_name = "KEY")]
    pub correlate_by: Option<String>,
    /// Require client certificates signed by this CA (PEM) [default: none]
    #[arg(long, env = "LOGGER_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<String>,
    /// Comma-separated addresses and CIDR ranges allowed to connect [default: anyone]
    #[arg(long, env = "LOGGER_ALLOW", value_name = "LIST")]
    pub allow: Option<String>,
    /// Where the embedded default certificate is kept [default: ./certs]
    #[arg(long, env = "LOGGER_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<String>,
    /// Time allowed for the TLS handshake [default: 10s]
    #[arg(long, env = "LOGGER_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub handshake_timeout: Option<String>,
    /// Deadline for a whole HTTP/1 request head, from its first byte [default: 10s]
    #[arg(long, env = "LOGGER_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Deadline for a whole request body [default: 30s]
    #[arg(long, env = "LOGGER_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,
    /// Time a connection may sit with no request in progress [default: 60s]
    #[arg(long, env = "LOGGER_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Connections served at once; a new one beyond it waits briefly, then is closed [default: 1024]
    #[arg(long, env = "LOGGER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Threads that serve connections [default: half the CPUs this process may use, at least 1]
    #[arg(long, env = "LOGGER_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<String>,
    /// Grace period for in-flight requests at SIGTERM/SIGINT [default: 10s]
    #[arg(long, env = "LOGGER_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Diagnostics filter, RUST_LOG style: a level, or target=level pairs [default: info]
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Diagnostics as "text" lines or one JSON object per line ("json") [default: text]
    #[arg(long, env = "LOGGER_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Plain-HTTP listener for GET /metrics and GET /healthz, e.g. 127.0.0.1:9187 [default: none]
    #[arg(long, env = "LOGGER_ADMIN_ADDR", value_name = "ADDR:PORT")]
    pub admin_addr: Option<String>,
}

impl ServeArgs {
    fn without_empty_values(&self) -> ServeArgs {
        let mut a = self.clone();
        for v in [
            &mut a.cert,
            &mut a.key,
            &mut a.port,
            &mut a.ip,
            &mut a.output,
            &mut a.strict,
            &mut a.fsync,
            &mut a.max_body,
            &mut a.rejects,
            &mut a.annotate,
            &mut a.response_timeout,
            &mut a.max_pending,
            &mut a.correlate_by,
            &mut a.client_ca,
            &mut a.allow,
            &mut a.cert_dir,
            &mut a.handshake_timeout,
            &mut a.header_timeout,
            &mut a.body_timeout,
            &mut a.idle_timeout,
            &mut a.max_connections,
            &mut a.worker_threads,
            &mut a.shutdown_timeout,
            &mut a.log_level,
            &mut a.log_format,
            &mut a.admin_addr,
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
        }
        a
    }
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
pub enum OutputTarget {
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
pub enum CertSource {
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

/// Every limit on a peer; each one a defence against a slow or hostile client.
#[derive(Debug, Clone)]
pub struct Limits {
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
    pub cert: CertSource,
    /// Port to listen on; 0 asks the system for a free one.
    pub port: u16,
    /// One address to bind, or every address when `None`.
    pub ip: Option<IpAddr>,
    /// Where records go.
    pub output: OutputTarget,
    /// Refuse nonconforming records instead of writing them.
    pub strict: bool,
    /// fdatasync before acknowledging.
    pub fsync: bool,
    /// Where refused bodies are kept.
    pub rejects: Option<PathBuf>,
    /// Add `_received_at` and `_peer` to each record.
    pub annotate: bool,
    /// Correlation and duplicate suppression.
    pub correlate: crate::correlate::CorrelateConfig,
    /// Trust anchors for client certificates (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Who may connect.
    pub allow: crate::allow::Allowlist,
    /// Limits on peers.
    pub limits: Limits,
    /// The runtime's worker threads.
    pub worker_threads: usize,
    /// Diagnostics filter.
    pub log_filter: String,
    /// Diagnostics as text or JSON lines.
    pub log_format: crate::diagnostics::LogFormat,
    /// Where `/metrics` and `/healthz` are served over plain HTTP; off when `None`.
    pub admin_addr: Option<SocketAddr>,
}

/// Parses the process's own arguments and environment.
///
/// A usage error (unknown flag, `--help`, `--version`) exits through clap with its own message.
pub fn parse_cli() -> (Cli, ArgMatches) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

impl Settings {
    /// Checks the raw arguments; `matches` tells for each whether it came from a flag or a variable.
    pub fn from_matches(args: &ServeArgs, matches: &ArgMatches) -> Result<Settings, SettingsError> {
        // An empty value is an unset one, as the Go program treats `LOGGER_IP=` (and as an
        // environment file with a blank value for a setting means).
        let args = &args.without_empty_values();
        let named = Namer { matches };
        let path =
            |id: &str, flag: &str, env: &str, v: &Option<String>| -> Result<Option<PathBuf>, SettingsError> {
                match v {
                    None => Ok(None),
                    Some(s) if s.is_empty() => Err(named.error(id, flag, env, s, "empty path")),
                    Some(s) => Ok(Some(PathBuf::from(s))),
                }
            };
        let cert = path("cert", "--cert", "LOGGER_CERT", &args.cert)?;
        let key = path("key", "--key", "LOGGER_KEY", &args.key)?;
        let cert_dir = path("cert_dir", "--cert-dir", "LOGGER_CERT_DIR", &args.cert_dir)?
            .unwrap_or_else(|| PathBuf::from("./certs"));
        let cert = match (cert, key) {
            (Some(cert), key) => CertSource::Files { cert, key },
            (None, Some(key)) => {
                return Err(named.error(
                    "key",
                    "--key",
                    "LOGGER_KEY",
                    &key.display().to_string(),
                    "a key without a certificate; set LOGGER_CERT too",
                ))
            }
            (None, None) => CertSource::Embedded(cert_dir),
        };

        let port = match &args.port {
            None => 8443,
            Some(s) => s.trim().parse::<u16>().map_err(|_| {
                named.error("port", "--port", "LOGGER_PORT", s, "not a port number (1-65535)")
            })?,
        };
        let ip = match &args.ip {
            None => None,
            Some(s) => Some(parse_ip(s).map_err(|reason| named.error("ip", "--ip", "LOGGER_IP", s, reason))?),
        };
        let output = match args.output.as_deref() {
            None | Some("-") => OutputTarget::Stdout,
            Some(s) => OutputTarget::File(PathBuf::from(s)),
        };
        let boolean = |id: &str, flag: &str, env: &str, v: &Option<String>| -> Result<bool, SettingsError> {
            match v {
                None => Ok(false),
                Some(s) => parse_bool(s).ok_or_else(|| {
                    named.error(
                        id,
                        flag,
                        env,
                        s,
                        "not a boolean (on/off, true/false, yes/no, 1/0)",
                    )
                }),
            }
        };
        let strict = boolean("strict", "--strict", "LOGGER_STRICT", &args.strict)?;
        let fsync = boolean("fsync", "--fsync", "LOGGER_FSYNC", &args.fsync)?;
        let annotate = boolean("annotate", "--annotate", "LOGGER_ANNOTATE", &args.annotate)?;
        let rejects = path("rejects", "--rejects", "LOGGER_REJECTS", &args.rejects)?;
        if let (Some(r), OutputTarget::File(o)) = (&rejects, &output) {
            if r == o {
                return Err(named.error(
                    "rejects",
                    "--rejects",
                    "LOGGER_REJECTS",
                    &r.display().to_string(),
                    "the same file as LOGGER_OUTPUT; refused bodies must not mix with records",
                ));
            }
        }
        let client_ca = path("client_ca", "--client-ca", "LOGGER_CLIENT_CA", &args.client_ca)?;
        let allow = match &args.allow {
            None => crate::allow::Allowlist::default(),
            Some(s) => crate::allow::Allowlist::parse(s)
                .map_err(|reason| named.error("allow", "--allow", "LOGGER_ALLOW", s, reason))?,
        };
        let mut correlate = crate::correlate::CorrelateConfig::default();
        if let Some(s) = &args.response_timeout {
            correlate.response_timeout = parse_duration(s).map_err(|r| {
                named.error(
                    "response_timeout",
                    "--response-timeout",
                    "LOGGER_RESPONSE_TIMEOUT",
                    s,
                    r,
                )
            })?;
            correlate.duplicate_window = correlate.response_timeout;
        }
        if let Some(s) = &args.max_pending {
            correlate.max_pending = match s.trim().parse::<usize>() {
                Ok(n) if (1..=10_000_000).contains(&n) => n,
                _ => {
                    return Err(named.error(
                        "max_pending",
                        "--max-pending",
                        "LOGGER_MAX_PENDING",
                        s,
                        "not a count (1-10000000)",
                    ))
                }
            };
            correlate.duplicate_cap = correlate.max_pending.saturating_mul(2);
        }
        if let Some(s) = &args.correlate_by {
            correlate.by_address = match s.trim().to_ascii_lowercase().as_str() {
                "address" | "peer" => true,
                "sequence" => false,
                _ => {
                    return Err(named.error(
                        "correlate_by",
                        "--correlate-by",
                        "LOGGER_CORRELATE_BY",
                        s,
                        "not a correlation key (address or sequence)",
                    ))
                }
            };
        }

        let defaults = Limits::default();
        let duration = |id: &str, flag: &str, env: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => parse_duration(s).map_err(|reason| named.error(id, flag, env, s, reason)),
        };
        let max_body = match &args.max_body {
            None => defaults.max_body,
            Some(s) => {
                let n = parse_size(s)
                    .map_err(|r| named.error("max_body", "--max-body", "LOGGER_MAX_BODY", s, r))?;
                if n == 0 {
                    return Err(named.error(
                        "max_body",
                        "--max-body",
                        "LOGGER_MAX_BODY",
                        s,
                        "must be at least 1 byte",
                    ));
                }
                usize::try_from(n).map_err(|_| {
                    named.error(
                        "max_body",
                        "--max-body",
                        "LOGGER_MAX_BODY",
                        s,
                        "too large for this machine",
                    )
                })?
            }
        };
        let max_connections = match &args.max_connections {
            None => defaults.max_connections,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    return Err(named.error(
                        "max_connections",
                        "--max-connections",
                        "LOGGER_MAX_CONNECTIONS",
                        s,
                        "not a connection count (1-1000000)",
                    ))
                }
            },
        };
        let worker_threads = match &args.worker_threads {
            None => default_worker_threads(),
            Some(s) => parse_worker_threads(s).ok_or_else(|| {
                named.error(
                    "worker_threads",
                    "--worker-threads",
                    "LOGGER_WORKER_THREADS",
                    s,
                    NOT_A_THREAD_COUNT,
                )
            })?,
        };
        let limits = Limits {
            max_body,
            handshake_timeout: duration(
                "handshake_timeout",
                "--handshake-timeout",
                "LOGGER_HANDSHAKE_TIMEOUT",
                &args.handshake_timeout,
                defaults.handshake_timeout,
            )?,
            header_timeout: duration(
                "header_timeout",
                "--header-timeout",
                "LOGGER_HEADER_TIMEOUT",
                &args.header_timeout,
                defaults.header_timeout,
            )?,
            body_timeout: duration(
                "body_timeout",
                "--body-timeout",
                "LOGGER_BODY_TIMEOUT",
                &args.body_timeout,
                defaults.body_timeout,
            )?,
            idle_timeout: duration(
                "idle_timeout",
                "--idle-timeout",
                "LOGGER_IDLE_TIMEOUT",
                &args.idle_timeout,
                defaults.idle_timeout,
            )?,
            max_connections,
            shutdown_timeout: duration(
                "shutdown_timeout",
                "--shutdown-timeout",
                "LOGGER_SHUTDOWN_TIMEOUT",
                &args.shutdown_timeout,
                defaults.shutdown_timeout,
            )?,
        };
        let log_filter = match &args.log_level {
            None => "info".to_string(),
            Some(s) => {
                crate::diagnostics::check_filter(s)
                    .map_err(|reason| named.error("log_level", "--log-level", "RUST_LOG", s, reason))?;
                s.clone()
            }
        };
        let log_format = match &args.log_format {
            None => crate::diagnostics::LogFormat::Text,
            Some(s) => s.parse().map_err(|reason: &str| {
                named.error("log_format", "--log-format", "LOGGER_LOG_FORMAT", s, reason)
            })?,
        };
        let admin_addr = match &args.admin_addr {
            None => None,
            Some(s) => Some(s.trim().parse::<SocketAddr>().map_err(|_| {
                named.error(
                    "admin_addr",
                    "--admin-addr",
                    "LOGGER_ADMIN_ADDR",
                    s,
                    "not an address and port (127.0.0.1:9187, [::1]:9187)",
                )
            })?),
        };
        Ok(Settings {
            cert,
            port,
            ip,
            output,
            strict,
            fsync,
            rejects,
            annotate,
            correlate,
            client_ca,
            allow,
            limits,
            worker_threads,
            log_filter,
            log_format,
            admin_addr,
        })
    }

    /// Parses settings from an argument list, for tests and embedding; variables still apply.
    pub fn try_from_args<I, T>(args: I) -> Result<Settings, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        let (serve, sub) = match &cli.command {
            Some(Command::Serve(a)) => (
                a.clone(),
                matches.subcommand_matches("serve").cloned().unwrap_or_default(),
            ),
            None => (cli.serve.clone(), matches.clone()),
            Some(_) => return Err("not the daemon: a subcommand other than serve".into()),
        };
        Settings::from_matches(&serve, &sub).map_err(|e| e.to_string())
    }
}

/// Names a setting the way the operator gave it.
struct Namer<'a> {
    matches: &'a ArgMatches,
}

impl Namer<'_> {
    fn error(
        &self,
        id: &str,
        flag: &str,
        env: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> SettingsError {
        let from_env = matches!(self.matches.value_source(id), Some(ValueSource::EnvVariable));
        let looks_like_path = matches!(
            id,
            "cert" | "key" | "cert_dir" | "output" | "rejects" | "client_ca"
        );
        SettingsError {
            name: if from_env {
                env.to_string()
            } else {
                flag.to_string()
            },
            value: if looks_like_path {
                value.to_string()
            } else {
                format!("{value:?}")
            },
            reason: reason.into(),
        }
    }
}

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Bytes, or a number with a binary suffix: `1024`, `64KiB`, `16MiB`, `1GiB`, `16M`.
pub fn parse_size(s: &str) -> Result<u64, &'static str> {
    const REASON: &str = "not a size (bytes, or with KiB, MiB, GiB)";
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(REASON);
    }
    let n: u64 = digits.parse().map_err(|_| REASON)?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(REASON),
    };
    n.checked_mul(1u64 << shift).ok_or("too large")
}

/// A size argument of a subcommand (`--max-record 16MiB`): at least one byte.
pub fn parse_size_arg(s: &str) -> Result<usize, String> {
    let n = parse_size(s).map_err(str::to_string)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be at least 1 byte and fit this machine".into()),
    }
}

/// A duration argument of a subcommand (`--timeout 30s`).
pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(str::to_string)
}

/// Seconds, or a number with a unit: `10`, `500ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    const REASON: &str = "not a duration (seconds, or with ms, s, m, h)";
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(REASON);
    }
    let n: u64 = digits.parse().map_err(|_| REASON)?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or("too long")?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or("too long")?),
        _ => return Err(REASON),
    };
    if d.is_zero() {
        return Err("must be longer than zero");
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err("too long (a week at most)");
    }
    Ok(d)
}

fn parse_ip(s: &str) -> Result<IpAddr, &'static str> {
    let t = s.trim();
    let t = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
    t.parse::<IpAddr>().map_err(|_| "not an IP address")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let mut all = vec!["ml_api_logger"];
        all.extend_from_slice(args);
        Settings::try_from_args(all)
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
    }

    #[test]
    fn serve_subcommand_is_the_same() {
        let a = settings(&["--port", "9000", "--strict"]).unwrap();
        let b = settings(&["serve", "--port", "9000", "--strict"]).unwrap();
        assert_eq!((a.port, a.strict), (b.port, b.strict));
        assert_eq!(b.port, 9000);
        assert!(b.strict);
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
        assert!(settings(&["--idle-timeout", "0"]).is_err());
        assert!(settings(&["--strict=maybe"])
            .unwrap_err()
            .contains("not a boolean"));
        assert!(settings(&["--key", "x.key"])
            .unwrap_err()
            .contains("without a certificate"));
        // Empty is unset, as in the Go program.
        assert_eq!(settings(&["--port", "", "--ip", ""]).unwrap().port, 8443);
        assert_eq!(
            settings(&["--admin-addr", "9187"]).unwrap_err(),
            r#"--admin-addr="9187": not an address and port (127.0.0.1:9187, [::1]:9187)"#
        );
        assert_eq!(
            settings(&["--log-format", "xml"]).unwrap_err(),
            r#"--log-format="xml": not a log format (text or json)"#
        );
    }

    #[test]
    fn operations_settings() {
        use crate::diagnostics::LogFormat;
        let s = settings(&[]).unwrap();
        assert_eq!((s.admin_addr, s.log_format), (None, LogFormat::Text));
        let s = settings(&["--admin-addr", "[::1]:9187", "--log-format", "JSON"]).unwrap();
        assert_eq!(s.admin_addr, Some("[::1]:9187".parse().unwrap()));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(settings(&["--admin-addr", ""]).unwrap().admin_addr, None);
    }

    #[test]
    fn values_accept_every_documented_spelling() {
        for (t, v) in [
            ("1", true),
            ("0", false),
            ("TRUE", true),
            ("no", false),
            ("on", true),
            ("off", false),
        ] {
            assert_eq!(parse_bool(t), Some(v), "{t}");
        }
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("2 G"), Ok(2 << 30));
        assert!(parse_size("1TiB").is_err());
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("-1").is_err());
        let s = settings(&["--fsync", "--ip", "[::1]", "--output", "/tmp/x.json"]).unwrap();
        assert!(s.fsync);
        assert_eq!(s.ip, Some("::1".parse().unwrap()));
        assert_eq!(s.output, OutputTarget::File("/tmp/x.json".into()));
    }
}
