//! `ml_api_logger verify --key KEY [--json] FILE…`: checks sealed output files against their
//! `.seal` entries (SPEC 4.8) and says, by file and line range, what does not match.
//!
//! The checks are [`crate::seal::verify`]'s; this module reads the arguments, shows progress on
//! a terminal, prints the report (text, or JSON with `--json`) on stdout and chooses the exit
//! status: 0 when everything verifies (notes allowed), 1 on any failure (a wrong key included),
//! 2 when the arguments cannot be used (no such file, a malformed key).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::commands::progress::{self, Progress};
use crate::seal::{verify_with_progress, VerificationKey};

/// `ml_api_logger verify` arguments.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The verification key: the line `seal-keys` printed (mlseal1-…), or a file holding it
    #[arg(long, value_name = "KEY")]
    pub(crate) key: String,
    /// Print the report as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Output files, oldest first (a rotated set in order); each one's .seal is found beside it
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<PathBuf>,
}

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let key = match VerificationKey::from_arg(&args.key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: --key: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &args.files {
        if let Err(e) = std::fs::metadata(f) {
            eprintln!("error: {}: {}", f.display(), crate::json::stream::io_reason(&e));
            return ExitCode::from(2);
        }
    }
    let sizes: Vec<u64> = args
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .collect();
    let total: u64 = sizes.iter().sum();
    let mut progress = Progress::new();
    let report = verify_with_progress(&key, &args.files, &mut |index, pos| {
        let done = sizes[..index.min(sizes.len())].iter().sum::<u64>() + pos;
        progress.update(|elapsed| {
            format!(
                "verifying {} ({} of {}): {} of {}, {}/s",
                args.files[index.min(args.files.len() - 1)].display(),
                index + 1,
                args.files.len(),
                progress::bytes(done),
                progress::bytes(total),
                progress::bytes(progress::rate(done, elapsed) as u64)
            )
        });
    });
    progress.finish();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if args.json {
        let mut j = report.to_json();
        j.push('\n');
        j
    } else {
        report.to_text()
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
