//! `ml_api_logger inspect`: reads a log of any size (NDJSON, the Go program's concatenated
//! pretty-printed JSON, or arrays) and says what is in it, as a table or JSON; or writes its
//! exchanges joined (`--pairs`) or its records as clean NDJSON (`--normalize`). With
//! `--redact-key` (the daemon's key) it marks credentials as the daemon does in what
//! `--normalize` and `--pairs` write: a Go-program log migrated loses its credentials too.
//!
//! Several files (the daemons behind one load balancer) are read as one log, merged by
//! `_received_at` where the records are annotated ([`crate::json::merge`]): pairs, duplicates and
//! resets are found across the files.
//!
//! The counting is [`crate::summary`]'s, shared with `report`; reading the input forms is
//! `json::stream`'s. This module holds the arguments and the loop over the inputs.

use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::commands::progress::{self, Progress};
use crate::json::merge::Merged;
use crate::json::stream::{io_reason, open_inputs, Item, RecordReader};
use crate::redact::{self, RedactKey, Redactor};
use crate::summary::{Inspector, Mode};

/// `ml_api_logger inspect` arguments.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Write each request joined with its response as NDJSON: {"sequence":…,"request":…,"response":…}
    #[arg(long, group = "mode")]
    pub(crate) pairs: bool,
    /// Write the input back as clean NDJSON, each record exactly as the daemon would write it
    #[arg(long, group = "mode")]
    pub(crate) normalize: bool,
    /// Print the summary as JSON
    #[arg(long, group = "mode")]
    pub(crate) json: bool,
    /// How many problems to list
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) problems: usize,
    /// Most requests waiting for their response; beyond it the oldest is counted unanswered
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) max_pending: u64,
    /// The daemon's redaction key file (LOGGER_REDACT_KEY): credentials in header values are written as the daemon writes them, as keyed marks [default: none, values kept as read]
    #[arg(long, value_name = "FILE")]
    pub(crate) redact_key: Option<PathBuf>,
    /// With --redact-key: comma-separated header names whose values are marked, or "off" [default: Authorization,Proxy-Authorization,Cookie,Set-Cookie,X-Api-Key,X-Auth-Token]
    #[arg(long, value_name = "LIST", requires = "redact_key")]
    pub(crate) redact: Option<String>,
    /// Largest record; a larger one is reported and skipped
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::settings::units::parse_size_arg)]
    pub(crate) max_record: usize,
    /// Log files to read ("-" or none: standard input)
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

/// The redactor `--redact-key` and `--redact` ask for: the key is read, never made (a key
/// `inspect` made up would mark nothing the way the daemon does).
fn redactor(args: &InspectArgs) -> Result<Option<Redactor>, String> {
    let Some(path) = &args.redact_key else {
        return Ok(None);
    };
    let names = match &args.redact {
        Some(list) => redact::parse_names(list).map_err(|e| format!("--redact={list:?}: {e}"))?,
        None => redact::default_names(),
    };
    let key = RedactKey::load(path).map_err(|e| format!("--redact-key={e}"))?;
    Ok(Some(Redactor::new(&key, &names)))
}

/// Runs `inspect`; exit code 0 when every record conforms, 1 when not (or on a read or write
/// error), 2 for bad arguments.
pub fn run(args: &InspectArgs) -> ExitCode {
    let mode = if args.pairs {
        Mode::Pairs
    } else if args.normalize {
        Mode::Normalize
    } else if args.json {
        Mode::Json
    } else {
        Mode::Summary
    };
    let redactor = match redactor(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
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
    let total: Option<u64> = inputs.iter().map(|i| i.size).sum();
    let mut inspector = Inspector::new(mode, args.problems, args.max_pending as usize);
    if let Some(r) = redactor {
        inspector = inspector.with_redactor(r);
    }
    let mut progress = Progress::new();
    let mut out = BufWriter::with_capacity(256 << 10, io::stdout().lock());
    // The files of several daemons are read as one log, in the order records were received.
    let readers = inputs
        .into_iter()
        .map(|input| {
            let reader = BufReader::with_capacity(256 << 10, input.reader);
            (input.name, RecordReader::new(reader, args.max_record))
        })
        .collect();
    let mut merged = Merged::new(readers);
    let mut n = 0u64;
    loop {
        let (name, item) = match merged.next_item() {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(e) => {
                progress.finish();
                eprintln!("error: {}: {}", e.name, io_reason(&e.error));
                return ExitCode::from(1);
            }
        };
        let written = match item {
            Item::Record { line, text } => inspector.record(name, line, text, &mut out),
            Item::Problem { line, problem } => {
                inspector.unreadable(name, line, &problem);
                Ok(())
            }
        };
        if let Err(e) = written {
            progress.finish();
            eprintln!("error: cannot write the output: {}", io_reason(&e));
            return ExitCode::from(1);
        }
        n += 1;
        if n % 4096 == 0 {
            let done = merged.bytes_read();
            let records = inspector.records();
            progress.update(|elapsed| progress::reading_line("inspect", done, total, records, elapsed));
        }
    }
    let bytes_before = merged.bytes_read();
    progress.finish();
    let (summary, ()) = inspector.finish(bytes_before);
    let report = match mode {
        Mode::Json => {
            let mut text = serde_json::to_string_pretty(&summary).unwrap_or_default();
            text.push('\n');
            out.write_all(text.as_bytes())
        }
        Mode::Summary => out.write_all(summary.to_text().as_bytes()),
        Mode::Pairs | Mode::Normalize => {
            eprint!("{}", summary.to_text());
            Ok(())
        }
    };
    if let Err(e) = report.and_then(|_| out.flush()) {
        eprintln!("error: cannot write the output: {}", io_reason(&e));
        return ExitCode::from(1);
    }
    if summary.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
