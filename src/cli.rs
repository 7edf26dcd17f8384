//! The command line: `ml_api_logger [FLAGS]` (the daemon) and its subcommands.
//!
//! This module only declares them; each subcommand's arguments live with the subcommand in
//! [`crate::commands`], and the daemon's settings in [`crate::settings`].

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{
    cert::CertArgs, completions::CompletionsArgs, inspect::InspectArgs, report::ReportArgs,
    seal_keys::SealKeysArgs, send::SendArgs, verify::VerifyArgs,
};
use crate::settings::ServeArgs;

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
    pub(crate) serve: ServeArgs,
}

/// The subcommands. Each but `serve` lives in its own module of [`crate::commands`], with its arguments.
// Parsed once per process: the size of the `serve` variant costs nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Make a CA and a server certificate: the five files of the vendor's openssl commands, in one step.
    Cert(CertArgs),
    /// POST records from files or stdin to a logger: test a setup end to end, or replay an old log.
    Send(SendArgs),
    /// Summarize a log (any size, any form): conformance, pairs, duplicates, sequences; or pair or normalize it.
    Inspect(InspectArgs),
    /// Make a sealing state (LOGGER_SEAL) and print its verification key, once.
    SealKeys(SealKeysArgs),
    /// Check sealed output files against their .seal: exit 0 when everything verifies, 1 on any failure.
    Verify(VerifyArgs),
    /// Write the audit report of logs: one self-contained HTML page a person reads in a browser.
    Report(ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): ml_api_logger man > ml_api_logger.1
    Man,
}

/// Parses the process's own arguments and environment.
///
/// A usage error (unknown flag, `--help`, `--version`) exits through clap with its own message.
pub fn parse_cli() -> (Cli, ArgMatches) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    /// The daemon's settings as `main` finds them, without the shell's `LOGGER_*` variables.
    fn daemon_settings(args: &[&str]) -> Settings {
        let cmd = Cli::command()
            .mut_args(|a| a.env(None))
            .mut_subcommand("serve", |s| s.mut_args(|a| a.env(None)));
        let matches = cmd.try_get_matches_from(args).unwrap();
        let matches = matches.subcommand_matches("serve").unwrap_or(&matches);
        Settings::from_matches(matches).unwrap()
    }

    #[test]
    fn serve_subcommand_is_the_same() {
        let a = daemon_settings(&["ml_api_logger", "--port", "9000", "--strict"]);
        let b = daemon_settings(&["ml_api_logger", "serve", "--port", "9000", "--strict"]);
        assert_eq!((a.port, a.strict), (9000, true));
        assert_eq!((b.port, b.strict), (9000, true));
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
