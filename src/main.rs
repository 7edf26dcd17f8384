//! The `ml_api_logger` binary: parses arguments, then runs the daemon or one of the operator's
//! commands (`cert`, `send`, `inspect`, `completions`, `man`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use ml_api_logger::settings::{self, Command, Settings};
use ml_api_logger::{
    activation, cmd_cert, cmd_completions, cmd_inspect, cmd_man, cmd_send, daemon, diagnostics,
};

fn main() -> ExitCode {
    let (cli, matches) = settings::parse_cli();
    let (args, sub) = match &cli.command {
        Some(Command::Serve(args)) => (args, matches.subcommand_matches("serve").unwrap_or(&matches)),
        None => (&cli.serve, &matches),
        Some(Command::Cert(args)) => return cmd_cert::run(args),
        Some(Command::Send(args)) => return cmd_send::run(args),
        Some(Command::Inspect(args)) => return cmd_inspect::run(args),
        Some(Command::Completions(args)) => return cmd_completions::run(args),
        Some(Command::Man) => return cmd_man::run(),
    };
    let settings = match Settings::from_matches(args, sub) {
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
