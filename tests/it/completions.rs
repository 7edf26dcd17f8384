//! `ml_api_logger completions SHELL` and `ml_api_logger man`: generated from the clap
//! definitions, they name every subcommand and flag; bash accepts its script.

use std::process::Command;

use crate::common::*;

fn stdout(args: &[&str]) -> String {
    let out = run(args, b"");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let bash = stdout(&["completions", "bash"]);
    for word in [
        "_ml_api_logger",
        "cert",
        "send",
        "inspect",
        "--key-type",
        "--concurrency",
        "--normalize",
    ] {
        assert!(bash.contains(word), "{word}");
    }
    let dir = TempDir::new("completions");
    let script = dir.join("ml_api_logger.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(stdout(&["completions", "zsh"]).starts_with("#compdef ml_api_logger"));
    assert!(stdout(&["completions", "fish"]).contains("complete -c ml_api_logger"));
    assert_eq!(run(&["completions", "tcsh"], b"").status.code(), Some(2));
}

#[test]
fn the_man_page_covers_every_command() {
    let page = stdout(&["man"]);
    assert!(
        page.contains(".TH ml_api_logger 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    for section in [
        "ML_API_LOGGER CERT",
        "ML_API_LOGGER SEND",
        "ML_API_LOGGER INSPECT",
        "ML_API_LOGGER SERVE",
    ] {
        assert!(page.contains(section), "{section}");
    }
    for flag in ["LOGGER_CERT", "\\-\\-insecure", "\\-\\-pairs", "\\-\\-ca\\-cert"] {
        assert!(page.contains(flag), "{flag}");
    }
}
