//! The documentation stays true to what a user sees: every variable `ml_api_logger --help` names
//! is in the README's settings table and, commented with its default, in the example environment
//! file; every metric family a scrape of `/metrics` shows is in the README's metrics table.

use std::collections::BTreeSet;

use crate::common::*;

fn root_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The variables `--help` names: clap writes `[env: LOGGER_X=]` after each flag.
fn variables_in_help() -> BTreeSet<String> {
    let out = run(&["--help"], b"");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    help.split("[env: ")
        .skip(1)
        .map(|rest| rest[..rest.find('=').unwrap()].to_string())
        .collect()
}

#[test]
fn every_setting_is_documented() {
    let vars = variables_in_help();
    assert!(
        vars.contains("LOGGER_CERT") && vars.contains("LOGGER_ADMIN_ADDR") && vars.contains("RUST_LOG"),
        "{vars:?}"
    );
    let readme = root_file("README.md");
    let env_file = root_file("examples/ml_api_logger.env");
    for v in &vars {
        assert!(
            readme.contains(&format!("| `{v}` |")),
            "{v} not in the README's settings table"
        );
        assert!(
            env_file.contains(&format!("\n#{v}=")),
            "{v} not in examples/ml_api_logger.env"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_in_the_readme() {
    let dir = TempDir::new("examples-metrics");
    let certs = make_certs(dir.path());
    let d = Start::new(&certs).args(["--admin-addr", "127.0.0.1:0"]).start();
    let families: BTreeSet<String> = scrape(d.admin_addr()).await.types.into_keys().collect();
    d.stop();
    assert!(
        families.len() >= 25 && families.contains("ml_api_logger_records_total"),
        "{families:?}"
    );
    let readme = root_file("README.md");
    let table: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `ml_api_logger_"))
        .collect();
    for family in &families {
        // Named whole (`name`, or `name{labels}`), or after another family of its row with the
        // same prefix, as `…_tail` (`…_responses_total` after `…_correlation_requests_total`).
        let whole =
            |row: &&str| row.contains(&format!("`{family}`")) || row.contains(&format!("`{family}{{"));
        let short = |row: &&str| {
            family.match_indices('_').any(|(i, _)| {
                row.contains(&format!("`{}", &family[..=i]))
                    && row.contains(&format!("`…_{}`", &family[i + 1..]))
            })
        };
        assert!(
            table.iter().any(|row| whole(row) || short(row)),
            "{family} not in the README's metrics table"
        );
    }
}
