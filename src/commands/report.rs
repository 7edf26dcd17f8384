//! `ml_api_logger report`: the audit report of one or more logs, as one self-contained HTML
//! page (`report.html`, or stdout with `--out -`).
//!
//! It reads the logs as `inspect` does (every form, any size, bounded memory), counting them
//! with the same [`Inspector`] and gathering the rest with the report's
//! [`Collector`]; then it writes the page ([`crate::report::page`]). This module holds the
//! arguments, the loop over the inputs, and the output file.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::commands::progress::{self, Progress};
use crate::json::stream::{io_reason, open_inputs, Item, RecordReader};
use crate::report::collect::Collector;
use crate::report::page::{self, PageInput};
use crate::report::{seal_status, SealStatus, SealVerification};
use crate::seal::key::VerificationKey;
use crate::seal::verify::{verify, Severity};
use crate::summary::{Inspector, Mode};

/// `ml_api_logger report` arguments.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
The page answers first what was sent, when, by which sensor, and whether the log is intact;
then, with the numbers behind each: sensors (by _client certificate name or _peer address,
when the log was written with --annotate) and their requests over time, methods, the most
requested URIs and status codes, response wait times, nonconforming records with their lines,
unanswered requests and orphan responses, sequence resets, redacted credentials (the marks and
how often each appears, never a value), the largest bodies, and the files read. Every count
that `inspect --json` also reports is the same, and marked data-count=\"<its name>\" in the page.

The page needs nothing from the network: inline CSS and SVG charts, no external script, font or
image; it reads the same with JavaScript off (a few inline lines make tables sortable).
Logs of any size are streamed in bounded memory; tables keep their top rows and count the rest
as \"others\", and the timeline's buckets widen (minutes, hours, days) as the period grows.

Exit code 0 when the page was written, 1 when an input or the output failed, 2 for bad arguments.

Examples:
  ml_api_logger report extrahop-ade-log.json
  ml_api_logger report --out audit-2026-11.html /var/log/ml_api_logger/*.json*
  ml_api_logger report --out - log.json > report.html")]
pub struct ReportArgs {
    /// Where to write the page ("-": standard output)
    #[arg(long, short, value_name = "FILE", default_value = "report.html")]
    pub(crate) out: PathBuf,
    /// Seal verification key (the line `seal-keys` printed, or a file holding it), to check the
    /// .seal file beside each log; the sealed logs given are checked as one chain, in order
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<String>,
    /// The page's heading
    #[arg(long, value_name = "TEXT", default_value = "ml_api_logger audit report")]
    pub(crate) title: String,
    /// How many problems to list
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) problems: usize,
    /// Most requests waiting for their response; beyond it the oldest is counted unanswered
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) max_pending: u64,
    /// Largest record; a larger one is reported and skipped
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::settings::units::parse_size_arg)]
    pub(crate) max_record: usize,
    /// Log files to read ("-": standard input)
    #[arg(value_name = "LOG", required = true)]
    pub(crate) files: Vec<PathBuf>,
}

/// `FILE.seal` is beside `file`.
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the page says of each file's seals: the sealed files are verified together, in the
/// order given, as one chain (a rotated set, as `verify` takes it), when a key is given.
fn seal_statuses(
    files: &[PathBuf],
    sealed: &[bool],
    key: Option<&VerificationKey>,
) -> Result<Vec<SealStatus>, String> {
    let chain: Vec<PathBuf> = files
        .iter()
        .zip(sealed)
        .filter(|(_, s)| **s)
        .map(|(f, _)| f.clone())
        .collect();
    let report = match key {
        Some(key) if !chain.is_empty() => Some(verify(key, &chain).map_err(|e| e.to_string())?),
        _ => None,
    };
    let mut checked = report.iter().flat_map(|r| r.files.iter());
    Ok(sealed
        .iter()
        .map(|present| {
            let found = if *present { checked.next() } else { None };
            let verification = found.map(|f| {
                let text = |severity: Severity| {
                    f.findings
                        .iter()
                        .filter(|x| x.severity == severity)
                        .map(|x| match (x.lines, x.seal_line) {
                            (Some(l), _) => format!("lines {}–{}: {}", l.first, l.last, x.message),
                            (None, Some(k)) => format!("{} line {k}: {}", f.seal, x.message),
                            (None, None) => x.message.clone(),
                        })
                        .collect::<Vec<_>>()
                };
                SealVerification {
                    verified: f.failures == 0,
                    failures: text(Severity::Failure),
                    notes: text(Severity::Note),
                }
            });
            seal_status(*present, key.is_some(), verification.as_ref())
        })
        .collect())
}

/// Runs `report`.
pub fn run(args: &ReportArgs) -> ExitCode {
    let key = match args.key.as_deref().map(VerificationKey::from_arg).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: --key: {e}");
            return ExitCode::from(2);
        }
    };
    let inputs = match open_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let to_stdout = args.out.as_os_str() == "-";
    // Open the output first: a page that cannot be written should not cost reading the logs.
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        match File::create(&args.out) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: --out {}: {}", args.out.display(), io_reason(&e));
                return ExitCode::from(2);
            }
        }
    };
    let total: Option<u64> = inputs.iter().map(|i| i.size).sum();
    let mut inspector = Inspector::with_observer(
        Mode::Summary,
        args.problems,
        args.max_pending as usize,
        Collector::new(),
    );
    let mut progress = Progress::new();
    let mut sink = io::sink();
    let mut seals = Vec::new();
    let mut bytes_before = 0u64;
    for (input, path) in inputs.into_iter().zip(args.files.iter()) {
        let is_file = path.as_os_str() != "-";
        let seal_present = is_file && sibling(path, ".seal").is_file();
        let partial_bytes = if is_file {
            std::fs::metadata(sibling(path, ".partial")).ok().map(|m| m.len())
        } else {
            None
        };
        seals.push(seal_present);
        inspector
            .observer_mut()
            .begin_file(&input.name, input.size, partial_bytes);
        let mut reader =
            RecordReader::new(BufReader::with_capacity(256 << 10, input.reader), args.max_record);
        let mut n = 0u64;
        loop {
            let item = match reader.next() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    progress.finish();
                    eprintln!("error: {}: {}", input.name, io_reason(&e));
                    return ExitCode::from(1);
                }
            };
            match item {
                Item::Record { line, text } => {
                    // The sink takes no output and cannot fail.
                    let _ = inspector.record(&input.name, line, text, &mut sink);
                }
                Item::Problem { line, problem } => {
                    inspector.unreadable(&input.name, line, &problem);
                    inspector.observer_mut().unreadable();
                }
            }
            n += 1;
            if n % 4096 == 0 {
                let done = bytes_before + reader.bytes_read();
                let records = inspector.records();
                progress.update(|elapsed| progress::reading_line("report", done, total, records, elapsed));
            }
        }
        inspector
            .observer_mut()
            .end_file(reader.bytes_read(), reader.lines_read());
        bytes_before += reader.bytes_read();
    }
    progress.finish();
    let seals = match seal_statuses(&args.files, &seals, key.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let (summary, collector) = inspector.finish(bytes_before);
    let generated_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let html = page::render(&PageInput {
        title: &args.title,
        generated_ms,
        summary: &summary,
        collector: &collector,
        seals: &seals,
    });
    if let Err(e) = out.write_all(html.as_bytes()).and_then(|_| out.flush()) {
        eprintln!("error: cannot write {}: {}", args.out.display(), io_reason(&e));
        return ExitCode::from(1);
    }
    if !to_stdout {
        eprintln!(
            "report: {} ({} records from {} files, {})",
            args.out.display(),
            summary.records,
            collector.files.len(),
            if summary.clean() {
                "all conform".to_string()
            } else {
                format!("{} problems", summary.problems_total)
            }
        );
    }
    ExitCode::SUCCESS
}
