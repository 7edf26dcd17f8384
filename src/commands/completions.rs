//! `ml_api_logger completions SHELL`: a completion script for bash, zsh or fish, generated from
//! the same clap definitions that parse the command line, so it cannot drift from them.

use std::process::ExitCode;

use clap::Args;

/// `ml_api_logger completions` arguments.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Prints the script for `cmd` (the whole command line, from `main`) to stdout.
pub fn run(args: &CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "ml_api_logger", &mut out);
    ExitCode::SUCCESS
}
