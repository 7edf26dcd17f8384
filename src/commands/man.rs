//! `ml_api_logger man`: the manual page in roff, generated from the clap definitions, with a
//! section for each subcommand. `ml_api_logger man > ml_api_logger.1 && man ./ml_api_logger.1`.

use std::io::Write;
use std::process::ExitCode;

/// Prints the page for `cmd` (the whole command line, from `main`) to stdout.
pub fn run(cmd: clap::Command) -> ExitCode {
    match page(cmd) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&text).and_then(|_| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the page: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("error: cannot render the page: {e}");
            ExitCode::from(1)
        }
    }
}

/// The page: the top-level command (the daemon's settings), then each subcommand.
pub(crate) fn page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name().to_string();
        writeln!(out, ".SH \"{}\"", format!("ml_api_logger {name}").to_uppercase())?;
        let sub = sub.clone().bin_name(format!("ml_api_logger {name}"));
        let man = clap_mangen::Man::new(sub);
        // Each subcommand's synopsis, description and options, under its own heading.
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        let text = String::from_utf8_lossy(&section)
            .replace(".SH SYNOPSIS", ".SS Synopsis")
            .replace(".SH DESCRIPTION", ".SS Description")
            .replace(".SH OPTIONS", ".SS Options")
            .replace(".SH ARGUMENTS", ".SS Arguments");
        out.extend_from_slice(text.as_bytes());
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}
