//! The documentation stays true to the settings: every variable the daemon reads is in the
//! README's settings table and, commented with its default, in the example environment file.

use std::collections::BTreeSet;

fn variables_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("env = \"") {
        let rest = &text[i + "env = \"".len()..];
        out.insert(rest[..rest.find('"').unwrap()].to_string());
    }
    out
}

#[test]
fn every_setting_is_documented() {
    let root = env!("CARGO_MANIFEST_DIR");
    let settings = std::fs::read_to_string(format!("{root}/src/settings/mod.rs")).unwrap();
    let vars = variables_in(&settings);
    assert!(vars.contains("LOGGER_ADMIN_ADDR") && vars.contains("LOGGER_LOG_FORMAT"));
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let env_file = std::fs::read_to_string(format!("{root}/examples/ml_api_logger.env")).unwrap();
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

#[test]
fn every_metric_is_in_the_readme() {
    let root = env!("CARGO_MANIFEST_DIR");
    let metrics = std::fs::read_to_string(format!("{root}/src/observe/metrics.rs")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    // Each family is written as `out.counter(\n "name"`, `out.gauge(…`, … in the collector.
    let mut names = Vec::new();
    for call in ["counter(", "counters(", "gauge(", "histogram("] {
        for (i, _) in metrics.match_indices(&format!("out.{call}")) {
            let rest = metrics[i..].split_once('"').unwrap().1;
            names.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert!(names.len() >= 25, "{names:?}");
    for name in names {
        let counter = format!("ml_api_logger_{name}_total");
        let plain = format!("ml_api_logger_{name}");
        // Families sharing a prefix are written `…_responses_total` in the table.
        let short = format!("…_{}", name.rsplit_once('_').map_or(name.as_str(), |(_, t)| t));
        assert!(
            readme.contains(&format!("`{counter}"))
                || readme.contains(&format!("`{plain}`"))
                || readme.contains(&format!("`{plain}{{"))
                || readme.contains(&short),
            "{name} not in the README's metrics table"
        );
    }
}
