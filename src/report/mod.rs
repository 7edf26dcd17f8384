//! The audit report: one self-contained HTML page that says what a log shows — what was sent,
//! when, by which sensor, and whether the log is intact.
//!
//! [`collect`] gathers, record by record, what the page needs beyond the shared
//! [`Summary`](crate::summary::Summary); [`page`] writes the page; [`svg`] draws its charts.
//! Reading the logs and counting them is `json::stream`'s and `summary`'s, as for `inspect`,
//! so every count the two show is the same. The command itself is `commands::report`.
//!
//! Seal verification (SPEC 4.8) enters through [`seal_status`]: it takes what `verify` found
//! for a file, when it was run, and says what the page shows for it.

pub mod collect;
pub mod page;
pub mod svg;

/// What checking one file's seals found, as the page needs it: filled in from the verify
/// library's result by whoever runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealVerification {
    /// Everything verified (an unsealed live tail is not a failure).
    pub verified: bool,
    /// Each failure, by file and line range, as `verify` words it.
    pub failures: Vec<String>,
    /// What is noted without failing: an unsealed tail, a first file that starts with a reopen.
    pub notes: Vec<String>,
}

/// The seal state of one file, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealStatus {
    /// No `FILE.seal` beside it: nothing to verify.
    NotSealed,
    /// Sealed, but not checked: no `--key` given.
    NotChecked {
        /// Why not.
        why: String,
    },
    /// Its seals verify.
    Verified {
        /// What was noted without failing.
        notes: Vec<String>,
    },
    /// Its seals do not verify.
    Failed {
        /// Each failure.
        failures: Vec<String>,
    },
}

impl SealStatus {
    /// True when this says the file was changed (or its seals cannot be trusted).
    pub fn failed(&self) -> bool {
        matches!(self, SealStatus::Failed { .. })
    }
}

/// The hook for seal verification: what the page says of a file, from whether a `.seal` file
/// is beside it, whether a key was given, and the verification's result when one was run.
pub fn seal_status(
    seal_present: bool,
    key_given: bool,
    verification: Option<&SealVerification>,
) -> SealStatus {
    match verification {
        Some(v) if v.verified => SealStatus::Verified {
            notes: v.notes.clone(),
        },
        Some(v) => SealStatus::Failed {
            failures: if v.failures.is_empty() {
                vec!["the seals do not verify".into()]
            } else {
                v.failures.clone()
            },
        },
        None if !seal_present => SealStatus::NotSealed,
        None if key_given => SealStatus::NotChecked {
            why: "not verified".into(),
        },
        None => SealStatus::NotChecked {
            why: "no --key given".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::collect::Collector;
    use crate::report::page::{render, PageInput};
    use crate::summary::{Inspector, Mode};
    use proptest::prelude::*;

    proptest! {
        /// Whatever text a log holds where the page shows it (URI, method, sensor names, header
        /// names, times), the page is made without a panic and shows it only as text.
        #[test]
        fn any_text_from_the_log_is_only_text(
            uri in "\\PC{0,40}",
            method in "\\PC{0,12}",
            peer in "\\PC{0,30}",
            client in proptest::option::of("\\PC{0,30}"),
            header in "\\PC{0,20}",
            at in "\\PC{0,30}",
            status in 0u32..1000,
        ) {
            // Each begins with markup the page itself never holds, so it must be escaped.
            let (uri, method, peer, header) = (
                format!("/<x-{uri}"),
                format!("<x-{method}"),
                format!("<x-{peer}"),
                format!("<x-{header}"),
            );
            let client = client.map(|c| format!("<x-{c}"));
            let s = |t: &str| serde_json::to_string(t).unwrap();
            let client = client.map(|c| format!(",\"_client\":{}", s(&c))).unwrap_or_default();
            let req = format!(
                r#"{{"sequence":1,"request":{{"Method":{},"RequestURI":{},"Header":{{{}:["[redacted hmac:0123456789abcdef]"]}}}},"request_body":{{}},"_received_at":{},"_peer":{}{client}}}"#,
                s(&method), s(&uri), s(&header), s(&at), s(&peer)
            );
            let resp = format!(
                r#"{{"sequence":1,"response_status_code":{status},"response_body":[],"_received_at":"2025-11-30T08:00:00.250Z","_peer":{}{client}}}"#,
                s(&peer)
            );
            let mut i = Inspector::with_observer(Mode::Summary, 10, 100, Collector::new());
            i.observer_mut().begin_file("<f>", None, Some(3));
            for (n, r) in [req, resp].iter().enumerate() {
                i.record("<f>", n as u64 + 1, r.as_bytes(), &mut std::io::sink()).unwrap();
            }
            let (summary, collector) = i.finish(0);
            let page = render(&PageInput {
                title: &uri,
                generated_ms: 0,
                summary: &summary,
                collector: &collector,
                seals: &[seal_status(true, false, None)],
            });
            prop_assert_eq!(page.matches("<script").count(), 1);
            prop_assert!(!page.contains("<f>"));
            prop_assert!(!page.contains("<x-"), "text from the log unescaped");
            prop_assert_eq!(collector.marks_total, 1);
        }
    }

    #[test]
    fn the_seal_hook_says_what_was_checked() {
        assert_eq!(seal_status(false, true, None), SealStatus::NotSealed);
        assert!(
            matches!(seal_status(true, false, None), SealStatus::NotChecked { why } if why.contains("--key"))
        );
        let ok = SealVerification {
            verified: true,
            ..Default::default()
        };
        assert_eq!(
            seal_status(true, true, Some(&ok)),
            SealStatus::Verified { notes: vec![] }
        );
        assert!(seal_status(true, true, Some(&SealVerification::default())).failed());
    }
}
