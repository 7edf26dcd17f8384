//! `ml_api_logger seal-keys --state FILE [--force]`: makes a new sealing chain (SPEC 4.8).
//!
//! Writes the daemon's state (mode 0600; `key(1)`) and prints the verification key `key(0)`
//! once: one line, alone on stdout, so that `ml_api_logger seal-keys --state F > key` or a pipe
//! into a password manager takes exactly the key; the advice on where to keep it goes to stderr.
//! The keys and the state file's format are [`crate::seal::key`]'s; this module only talks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::seal::{create_state, SealError};

/// `ml_api_logger seal-keys` arguments.
#[derive(Debug, Clone, Args)]
pub struct SealKeysArgs {
    /// Where to write the sealing state (the daemon's LOGGER_SEAL)
    #[arg(long, value_name = "FILE")]
    pub(crate) state: PathBuf,
    /// Replace an existing state (entries sealed with it then need its old verification key)
    #[arg(long)]
    pub(crate) force: bool,
}

/// Runs `seal-keys`: 0 when the state was written and the key printed, 1 when it could not be,
/// 2 when a state exists and `--force` was not given.
pub fn run(args: &SealKeysArgs) -> ExitCode {
    let key = match create_state(&args.state, args.force) {
        Ok(key) => key,
        Err(e @ SealError::StateExists { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let line = key.to_line();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        eprintln!(
            "error: cannot print the verification key; run seal-keys again with --force (the state {} is of no use without it)",
            args.state.display()
        );
        return ExitCode::from(1);
    }
    eprintln!(
        "wrote the sealing state {} (mode 0600): point LOGGER_SEAL at it.\n\
         The line on stdout is the verification key, printed this once. Keep it OFF this machine \
         (a password manager, an auditor's vault, on paper): whoever holds it can check the log, \
         and whoever takes this machine must not have it. `ml_api_logger verify --key KEY FILE…` \
         checks the output files against their .seal.",
        args.state.display()
    );
    ExitCode::SUCCESS
}
