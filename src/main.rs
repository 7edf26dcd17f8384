//! The `ml_api_logger` binary: parses arguments, then runs the daemon or one of the operator's
//! commands (`cert`, `send`, `inspect`, `report`, `seal-keys`, `verify`, `completions`, `man`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::CommandFactory;
use ml_api_logger::cli::{self, Cli, Command};
use ml_api_logger::commands::{cert, completions, inspect, man, report, seal_keys, send, verify};
use ml_api_logger::daemon::{self, activation};
use ml_api_logger::observe::diagnostics;
use ml_api_logger::settings::Settings;

fn main() -> ExitCode {
    let (cli, matches) = cli::parse_cli();
    let serve = match &cli.command {
        Some(Command::Serve(_)) => matches.subcommand_matches("serve").unwrap_or(&matches),
        None => &matches,
        Some(Command::Cert(args)) => return cert::run(args),
        Some(Command::Send(args)) => return send::run(args),
        Some(Command::Inspect(args)) => return inspect::run(args),
        Some(Command::SealKeys(args)) => return seal_keys::run(args),
        Some(Command::Verify(args)) => return verify::run(args),
        Some(Command::Report(args)) => return report::run(args),
        Some(Command::Completions(args)) => return completions::run(args, Cli::command()),
        Some(Command::Man) => return man::run(Cli::command()),
    };
    let settings = match Settings::from_matches(serve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    diagnostics::init_with(&settings.log_filter, settings.log_format);
    // Before the runtime starts its threads: taking passed sockets edits the environment.
    let passed = match activation::take() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match daemon::runtime(settings.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(daemon::run_with(settings, passed)) {
        Ok(daemon::Stopped::Clean) => ExitCode::SUCCESS,
        Ok(daemon::Stopped::OutputGone(_)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
