//! The verifier: checks `.seal` entries against their outputs and reports every problem by file
//! and line range.
//!
//! Streams everything: `.seal` lines are read one at a time (bounded), and each output is read
//! front to back with one fixed buffer, hashing each entry's range and counting lines on the way,
//! so a log of any size verifies in constant memory. Going back (reordered entries) restarts
//! from a recent checkpoint, within a re-read budget.
//!
//! Tampering is never an error here: it is a [`Finding`] in the [`Report`]. [`VerifyError`] is
//! for what stops the check itself (a file that exists but cannot be read).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use serde::Serialize;

use super::entry::{Kind, LineEnd, LineReader, SealedEntry};
use super::key::{KeyCursor, VerificationKey};
use super::{digest_bytes, hex, VerifyError, KEY_LEN, MAX_LINE};

/// The output read buffer: one per `verify` call.
const READ_BUF: usize = 256 * 1024;

/// Findings kept per file; beyond this they are counted, not kept (a wholly rewritten log
/// would otherwise make a report as large as the log).
const MAX_FINDINGS_PER_FILE: usize = 1000;

/// MAC failures shown per file before the rest are summed up in one line (a wrong key fails
/// every entry).
const MAC_FAILURES_SHOWN: u64 = 3;

/// Recent (offset, line) checkpoints kept for going back in an output.
const MARKS: usize = 64;

/// Recent entries kept for checking `prev` when entries come out of order.
const RECENT: usize = 64;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The files do not verify: `verify` exits 1.
    Failure,
    /// Worth knowing, not a failure (the unsealed tail, a repair, a chain starting mid-way).
    Note,
}

/// 1-based line numbers of an output file, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lines {
    /// First line.
    pub first: u64,
    /// Last line.
    pub last: u64,
}

/// One problem (or note), located in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Failure or note.
    pub severity: Severity,
    /// The output file, as given.
    pub file: String,
    /// The output's lines concerned, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Lines>,
    /// The `.seal` line concerned (1-based), when an entry is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_line: Option<u64>,
    /// What is wrong, for an operator.
    pub message: String,
}

/// What was found for one output file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    /// The output file, as given.
    pub file: String,
    /// Its `.seal`.
    pub seal: String,
    /// Entries read.
    pub entries: u64,
    /// Lines in ranges whose entry's MAC, hash and line count all check.
    pub lines_verified: u64,
    /// Lines past the last entry (not a stop): written but not sealed yet.
    pub unsealed_tail_lines: u64,
    /// Failures found (including any not kept in `findings`).
    pub failures: u64,
    /// Notes found (including any not kept in `findings`).
    pub notes: u64,
    /// The findings, in file order (at most 1000).
    pub findings: Vec<Finding>,
    /// Findings beyond those kept.
    pub findings_not_shown: u64,
}

/// Sums over all files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files checked.
    pub files: u64,
    /// Entries read.
    pub entries: u64,
    /// Lines verified.
    pub lines_verified: u64,
    /// Lines in unsealed tails.
    pub unsealed_tail_lines: u64,
    /// Failures.
    pub failures: u64,
    /// Notes.
    pub notes: u64,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No failure anywhere: what exit status 0 means.
    pub ok: bool,
    /// Per file, in the order given.
    pub files: Vec<FileReport>,
    /// Sums.
    pub totals: Totals,
}

impl Report {
    /// Whether everything verified (notes allowed).
    pub fn ok(&self) -> bool {
        self.ok
    }

    /// Every failure and note, in file order.
    #[cfg(test)]
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.files.iter().flat_map(|f| f.findings.iter())
    }

    /// One line per finding (`FILE: lines A–B: message`), then a summary line.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for file in &self.files {
            for f in &file.findings {
                let note = match f.severity {
                    Severity::Failure => "",
                    Severity::Note => "note: ",
                };
                // Writing to a String cannot fail.
                let _ = match (f.lines, f.seal_line) {
                    (Some(l), Some(k)) => writeln!(
                        s,
                        "{}: {} (seal line {k}): {note}{}",
                        f.file,
                        lines_text(l),
                        f.message
                    ),
                    (Some(l), None) => {
                        writeln!(s, "{}: {}: {note}{}", f.file, lines_text(l), f.message)
                    }
                    (None, Some(k)) => {
                        writeln!(s, "{}: line {k}: {note}{}", file.seal, f.message)
                    }
                    (None, None) => writeln!(s, "{}: {note}{}", f.file, f.message),
                };
            }
            if file.findings_not_shown > 0 {
                let _ = writeln!(
                    s,
                    "{}: … and {} more findings not shown",
                    file.file, file.findings_not_shown
                );
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            s,
            "{}: {} file{}, {} entries, {} lines verified, {} unsealed tail lines, {} failure{}",
            if self.ok { "OK" } else { "FAILED" },
            t.files,
            plural(t.files),
            t.entries,
            t.lines_verified,
            t.unsealed_tail_lines,
            t.failures,
            plural(t.failures)
        );
        s
    }

    /// The report as JSON (for `--json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            // Plain structs of strings and numbers always serialize; the fallback keeps the
            // verdict if that ever changes.
            .unwrap_or_else(|e| format!(r#"{{"ok":{},"error":"{e}"}}"#, self.ok))
    }
}

fn lines_text(l: Lines) -> String {
    if l.first == l.last {
        format!("line {}", l.first)
    } else {
        format!("lines {}–{}", l.first, l.last)
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Checks the `.seal` of each output (in the order given, as one chain) against the outputs'
/// bytes. See the module documentation of `seal` for what is checked.
pub fn verify(key: &VerificationKey, outputs: &[PathBuf]) -> Result<Report, VerifyError> {
    verify_with_progress(key, outputs, &mut |_, _| {})
}

/// [`verify`], telling `progress` after each entry which file (its index in `outputs`) it is in
/// and how far into that output it has read.
pub fn verify_with_progress(
    key: &VerificationKey,
    outputs: &[PathBuf],
    progress: &mut dyn FnMut(usize, u64),
) -> Result<Report, VerifyError> {
    if outputs.is_empty() {
        return Err(VerifyError::NoFiles);
    }
    let mut run = Run {
        cursor: key.cursor(),
        max_epoch: None,
        recent: VecDeque::with_capacity(RECENT),
        chain_broken: false,
        entries_seen: 0,
        buf: vec![0; READ_BUF],
    };
    let mut files = Vec::with_capacity(outputs.len());
    for (index, output) in outputs.iter().enumerate() {
        files.push(run.verify_file(output, index, progress)?);
    }
    let mut totals = Totals::default();
    for f in &files {
        totals.files += 1;
        totals.entries += f.entries;
        totals.lines_verified += f.lines_verified;
        totals.unsealed_tail_lines += f.unsealed_tail_lines;
        totals.failures += f.failures;
        totals.notes += f.notes;
    }
    Ok(Report {
        ok: totals.failures == 0,
        files,
        totals,
    })
}

/// A recent entry, across files: what later entries' `prev` and `prev_file` are checked against.
struct Recent {
    epoch: u64,
    digest: [u8; KEY_LEN],
    /// Its `file` member: what a following `reopen` names as `prev_file`.
    file_member: String,
    /// The output it was found in, as given.
    output: String,
}

/// State carried across the files of one `verify` call.
struct Run {
    cursor: KeyCursor,
    /// The highest epoch seen: the next entry's epoch must be one more.
    max_epoch: Option<u64>,
    /// The last entries seen (at most [`RECENT`]).
    recent: VecDeque<Recent>,
    /// A malformed `.seal` line came since the last entry: the next entry's epoch and `prev`
    /// cannot be judged (the malformed line is the finding).
    chain_broken: bool,
    entries_seen: u64,
    /// The output read buffer, reused for every file.
    buf: Vec<u8>,
}

/// State within one file.
struct FileState {
    index: usize,
    /// No entry of this file seen yet.
    head: bool,
    /// The furthest end of any entry so far: where the next entry should start.
    covered_to: u64,
    last_non_repair: Option<Kind>,
    stop_seal_line: Option<u64>,
    mac_failures: u64,
    truncation_reported: bool,
}

/// What reading an entry's range found.
enum RangeCheck {
    /// The hash and line count match.
    Good { lines: Option<Lines>, count: u64 },
    /// The bytes differ from what was sealed.
    Changed { lines: Option<Lines>, found_lines: u64 },
    /// The output ends before the range does.
    Cut { lines: Option<Lines>, eof: u64 },
    /// Not read: too much going back and forth in this file.
    NotChecked,
}

impl Run {
    fn verify_file(
        &mut self,
        output: &Path,
        index: usize,
        progress: &mut dyn FnMut(usize, u64),
    ) -> Result<FileReport, VerifyError> {
        let seal_path = super::seal_path_for_rotated(output);
        let mut report = FileReport {
            file: output.display().to_string(),
            seal: seal_path.display().to_string(),
            ..FileReport::default()
        };
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VerifyError::Read { path, source }
        };
        let out_file = File::open(output).map_err(read_err(output))?;
        let budget = out_file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0)
            .saturating_mul(2)
            .saturating_add(64 << 20);
        let mut out = OutputReader::new(out_file, budget);
        let seal_file = match File::open(&seal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (count, lines) = out.rest(&mut self.buf).map_err(read_err(output))?;
                report.push(
                    Severity::Failure,
                    lines,
                    None,
                    format!("has no .seal file: none of its {count} lines is sealed"),
                );
                return Ok(report);
            }
            Err(e) => return Err(read_err(&seal_path)(e)),
        };
        let mut fs = FileState {
            index,
            head: true,
            covered_to: 0,
            last_non_repair: None,
            stop_seal_line: None,
            mac_failures: 0,
            truncation_reported: false,
        };
        let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, seal_file));
        let mut line = Vec::new();
        let mut seal_line = 0u64;
        while let Some(info) = lines.next_line(&mut line).map_err(read_err(&seal_path))? {
            seal_line += 1;
            if info.too_long {
                report.push(
                    Severity::Failure,
                    None,
                    Some(seal_line),
                    format!("longer than {MAX_LINE} bytes: not an entry"),
                );
                self.chain_broken = true;
                continue;
            }
            if info.end == LineEnd::Eof {
                report.push(
                    Severity::Failure,
                    None,
                    Some(seal_line),
                    "incomplete (no newline at its end): a cut or torn entry".into(),
                );
            }
            match SealedEntry::parse(&line) {
                Ok(se) => {
                    self.check_entry(&mut out, &mut fs, &mut report, &se, seal_line)
                        .map_err(read_err(output))?;
                    progress(index, out.pos);
                }
                Err(e) => {
                    report.push(
                        Severity::Failure,
                        None,
                        Some(seal_line),
                        format!("not a valid entry: {e}"),
                    );
                    self.chain_broken = true;
                }
            }
        }
        if fs.mac_failures > MAC_FAILURES_SHOWN {
            // Those failures were counted one by one; this line only shows them.
            report.failures -= 1;
            report.push(
                Severity::Failure,
                None,
                None,
                format!(
                    "… and {} more entries whose MAC does not verify",
                    fs.mac_failures - MAC_FAILURES_SHOWN
                ),
            );
        }
        self.check_tail(&mut out, &fs, &mut report)
            .map_err(read_err(output))?;
        Ok(report)
    }

    /// Everything about one entry: its place in the chain, its MAC, its kind in context, and
    /// its range against the output's bytes.
    fn check_entry(
        &mut self,
        out: &mut OutputReader,
        fs: &mut FileState,
        report: &mut FileReport,
        se: &SealedEntry,
        seal_line: u64,
    ) -> io::Result<()> {
        let e = &se.entry;
        report.entries += 1;

        // Bytes between the previous entry's end and this one's start belong to no entry.
        let mut uncovered = None;
        if e.start > fs.covered_to && out.goto(fs.covered_to, &mut self.buf)? == Goto::Reached {
            let before = out.line;
            if out.goto(e.start, &mut self.buf)? != Goto::OverBudget {
                uncovered = span(before, out.line - before, !out.at_line_start);
            }
        }
        let range = self.read_range(out, e.start, e.end, e.lines, &e.sha256)?;
        let lines = match &range {
            RangeCheck::Good { lines, .. }
            | RangeCheck::Changed { lines, .. }
            | RangeCheck::Cut { lines, .. } => *lines,
            RangeCheck::NotChecked => None,
        };
        let at = |report: &mut FileReport, severity, message: String| {
            report.push(severity, lines, Some(seal_line), message)
        };

        // The MAC first: it says whether the entry's other members can be believed.
        let mac = self.cursor.key(e.epoch).map(|key| se.mac_ok(key));
        match mac {
            Some(true) => {}
            None => at(
                report,
                Severity::Failure,
                format!(
                    "epoch {} is implausibly far ahead: its MAC was not checked",
                    e.epoch
                ),
            ),
            Some(false) => {
                fs.mac_failures += 1;
                if self.entries_seen == 0 {
                    at(
                        report,
                        Severity::Failure,
                        "the MAC of the first entry does not verify: wrong key, or the entry was forged"
                            .into(),
                    );
                } else if fs.mac_failures <= MAC_FAILURES_SHOWN {
                    at(
                        report,
                        Severity::Failure,
                        format!(
                            "the MAC of this entry (epoch {}) does not verify: the entry was changed or forged",
                            e.epoch
                        ),
                    );
                } else {
                    // Summed up at the end of the file; still a failure.
                    report.failures += 1;
                }
            }
        }
        let mac_ok = mac == Some(true);
        self.entries_seen += 1;

        // Its place in the chain of epochs and digests.
        let in_order = self.chain_broken || self.check_chain(fs, report, se, lines, uncovered, seal_line);
        if in_order && !fs.head && e.start != fs.covered_to {
            // The epochs are in order, so a gap or overlap is in the ranges themselves.
            let message = if e.start > fs.covered_to {
                format!(
                    "starts at byte {}, not where the previous entry ended (byte {}): {} covered by no entry",
                    e.start,
                    fs.covered_to,
                    uncovered.map(lines_text).unwrap_or_else(|| "bytes".into())
                )
            } else {
                format!(
                    "starts at byte {}, before the previous entry's end (byte {}): entries overlap",
                    e.start, fs.covered_to
                )
            };
            report.push(Severity::Failure, uncovered.or(lines), Some(seal_line), message);
        }

        // Its kind in context.
        if fs.head {
            if !matches!(e.kind, Kind::Start | Kind::Reopen | Kind::Repair) || e.start != 0 {
                at(
                    report,
                    Severity::Failure,
                    format!(
                        "the first entry of the .seal is a {} entry from byte {}, not a start or reopen entry from byte 0: entries were removed from its beginning",
                        e.kind.as_str(),
                        e.start
                    ),
                );
            }
        } else if e.kind == Kind::Reopen {
            at(
                report,
                Severity::Failure,
                "a reopen entry in the middle of the .seal: it belongs at the beginning of a file".into(),
            );
        }
        let after_stop = fs.last_non_repair == Some(Kind::Stop);
        match e.kind {
            Kind::Start if e.foreign || (after_stop && e.end > e.start) => {
                let since = fs
                    .stop_seal_line
                    .map(|k| format!(" (after the stop entry at seal line {k})"))
                    .unwrap_or_default();
                at(
                    report,
                    Severity::Failure,
                    format!("added while no daemon was running{since}: foreign bytes"),
                );
            }
            Kind::Start if !fs.head && !after_stop => at(
                report,
                Severity::Note,
                "the daemon restarted without a stop entry (a crash or kill); this start entry seals what it had written".into(),
            ),
            Kind::Seal | Kind::Stop if after_stop => at(
                report,
                Severity::Failure,
                format!(
                    "a {} entry follows a stop entry with no start between: entries reordered or forged",
                    e.kind.as_str()
                ),
            ),
            Kind::Repair => {
                if let Some(m) = &e.moved {
                    report.push(
                        Severity::Note,
                        None,
                        Some(seal_line),
                        format!(
                            "a torn last line ({} bytes, SHA-256 {}) was moved to {} when the daemon started; it had never been acknowledged",
                            m.bytes,
                            hex(&m.sha256),
                            m.to
                        ),
                    );
                }
            }
            _ => {}
        }

        // Its bytes.
        match range {
            RangeCheck::Good { count, .. } => {
                if mac_ok {
                    report.lines_verified += count;
                }
            }
            RangeCheck::Changed { found_lines, .. } => {
                let mut m = format!(
                    "changed: the SHA-256 of bytes {}–{} does not match this entry",
                    e.start, e.end
                );
                if found_lines != e.lines {
                    let _ = write!(
                        m,
                        " (it seals {} line{}, the file has {} there: lines removed or inserted)",
                        e.lines,
                        plural(e.lines),
                        found_lines
                    );
                }
                at(report, Severity::Failure, m);
            }
            RangeCheck::Cut { eof, .. } => {
                if !fs.truncation_reported {
                    fs.truncation_reported = true;
                    at(
                        report,
                        Severity::Failure,
                        format!(
                            "the output was cut short: it ends at byte {eof}, but this entry seals bytes {}–{}",
                            e.start, e.end
                        ),
                    );
                }
                // Later entries past the end are the same cut: reported once.
            }
            RangeCheck::NotChecked => at(
                report,
                Severity::Failure,
                "not checked: too many entries out of order in this file".into(),
            ),
        }

        // This entry is now the one the next must follow.
        fs.head = false;
        fs.covered_to = fs.covered_to.max(e.end);
        if e.kind != Kind::Repair {
            fs.last_non_repair = Some(e.kind);
            if e.kind == Kind::Stop {
                fs.stop_seal_line = Some(seal_line);
            }
        }
        self.chain_broken = false;
        self.max_epoch = Some(self.max_epoch.map_or(e.epoch, |m| m.max(e.epoch)));
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            epoch: e.epoch,
            digest: se.mac,
            file_member: e.file.clone(),
            output: report.file.clone(),
        });
        out.mark();
        Ok(())
    }

    /// The entry of `epoch`, if it is among the recent ones.
    fn entry_of(&self, epoch: u64) -> Option<&Recent> {
        self.recent.iter().rev().find(|r| r.epoch == epoch)
    }

    /// Checks an entry's epoch against the highest seen so far (it must be one more) and its
    /// `prev` against the digest of the entry one epoch before. Returns whether the epoch was
    /// in order.
    fn check_chain(
        &self,
        fs: &FileState,
        report: &mut FileReport,
        se: &SealedEntry,
        lines: Option<Lines>,
        uncovered: Option<Lines>,
        seal_line: u64,
    ) -> bool {
        let e = &se.entry;
        let mut at = |severity, message: String| {
            report.push(severity, lines, Some(seal_line), message);
        };
        let Some(max) = self.max_epoch else {
            // The first entry given: nothing before it to follow.
            if fs.head && e.kind == Kind::Reopen {
                at(
                    Severity::Note,
                    format!(
                        "begins with a reopen entry: it continues {}, which was not given; checked from epoch {}",
                        e.prev_file.as_deref().unwrap_or("?"),
                        e.epoch
                    ),
                );
            } else if e.epoch > 1 {
                at(
                    Severity::Note,
                    format!(
                        "the chain starts at epoch {}: earlier entries are in files not given",
                        e.epoch
                    ),
                );
            }
            return true;
        };
        let expected = max.saturating_add(1);
        if e.epoch > expected {
            let count = e.epoch - expected;
            let skipped = if count == 1 {
                format!("epoch {expected}")
            } else {
                format!("epochs {expected}–{}", e.epoch - 1)
            };
            let message = match self.entry_of(max) {
                Some(before) if fs.head && fs.index > 0 => format!(
                    "a file is missing before this one, or entries were removed from the end of {}: the chain skips {skipped}",
                    before.output
                ),
                _ => {
                    let mut m = format!(
                        "{count} entr{} missing before this one ({skipped}): removed from the .seal",
                        if count == 1 { "y is" } else { "ies are" }
                    );
                    if let Some(u) = uncovered {
                        let _ = write!(m, "; {} covered by no entry", lines_text(u));
                    }
                    m
                }
            };
            report.push(Severity::Failure, uncovered.or(lines), Some(seal_line), message);
            return false;
        }
        if e.epoch < expected {
            let message = if self.entry_of(e.epoch).is_some() {
                format!("a second entry of epoch {}: replayed or forged", e.epoch)
            } else {
                format!(
                    "entry of epoch {} comes after epoch {max}: entries were reordered",
                    e.epoch
                )
            };
            at(Severity::Failure, message);
            return false;
        }
        let Some(before) = self.entry_of(max) else {
            return true;
        };
        if e.prev != before.digest {
            if fs.head && e.kind == Kind::Start && e.prev == [0; KEY_LEN] {
                at(
                    Severity::Note,
                    format!(
                        "starts a new chain (the daemon began a new output); its epochs follow {}",
                        before.output
                    ),
                );
            } else if fs.head {
                at(
                    Severity::Failure,
                    format!(
                        "a file is missing before this one: its first entry does not follow the last entry of {}",
                        before.output
                    ),
                );
            } else {
                at(
                    Severity::Failure,
                    "does not follow the previous entry (its prev is not that entry's digest): an entry was replaced".into(),
                );
            }
        } else if e.kind == Kind::Reopen && e.prev_file.as_deref() != Some(before.file_member.as_str()) {
            at(
                Severity::Failure,
                format!(
                    "this reopen entry names {} as the previous file, but the previous entry was written for {}",
                    e.prev_file.as_deref().unwrap_or("?"),
                    before.file_member
                ),
            );
        }
        true
    }

    /// Reads `start..end` of the output and compares it with what the entry sealed.
    fn read_range(
        &mut self,
        out: &mut OutputReader,
        start: u64,
        end: u64,
        sealed_lines: u64,
        sealed_sha: &[u8; KEY_LEN],
    ) -> io::Result<RangeCheck> {
        match out.goto(start, &mut self.buf)? {
            Goto::OverBudget => return Ok(RangeCheck::NotChecked),
            Goto::Eof => {
                let lines = span(out.line, sealed_lines, false);
                return Ok(RangeCheck::Cut { lines, eof: out.pos });
            }
            Goto::Reached => {}
        }
        let before = out.line;
        let mut hasher = digest::Context::new(&digest::SHA256);
        let (found_lines, reached) = out.hash_to(end, &mut hasher, &mut self.buf)?;
        let partial = end > start && !out.at_line_start;
        let lines = span(before, found_lines, partial);
        if !reached {
            let claimed = span(before, sealed_lines.max(found_lines), false);
            return Ok(RangeCheck::Cut {
                lines: claimed.or(lines),
                eof: out.pos,
            });
        }
        if digest_bytes(hasher.finish()) != *sealed_sha || found_lines != sealed_lines {
            return Ok(RangeCheck::Changed { lines, found_lines });
        }
        Ok(RangeCheck::Good {
            lines,
            count: found_lines,
        })
    }

    /// Bytes past the last entry: the unsealed tail (a note), or foreign bytes after a stop.
    fn check_tail(
        &mut self,
        out: &mut OutputReader,
        fs: &FileState,
        report: &mut FileReport,
    ) -> io::Result<()> {
        if report.entries == 0 {
            let (count, lines) = match out.goto(0, &mut self.buf)? {
                Goto::Reached => out.rest(&mut self.buf)?,
                _ => (0, None),
            };
            report.push(
                Severity::Failure,
                lines,
                None,
                format!("its .seal holds no entry: none of its {count} lines is sealed"),
            );
            return Ok(());
        }
        if out.goto(fs.covered_to, &mut self.buf)? != Goto::Reached {
            return Ok(()); // cut short: already reported
        }
        let (count, lines) = out.rest(&mut self.buf)?;
        if count == 0 {
            return Ok(());
        }
        if fs.last_non_repair == Some(Kind::Stop) {
            let at = fs
                .stop_seal_line
                .map(|k| format!(" (seal line {k})"))
                .unwrap_or_default();
            report.push(
                Severity::Failure,
                lines,
                None,
                format!("added after the stop entry{at}, while no daemon was running"),
            );
        } else {
            report.unsealed_tail_lines += count;
            report.push(
                Severity::Note,
                lines,
                None,
                "not sealed yet: the unsealed tail (a live file, or a daemon that did not stop cleanly)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl FileReport {
    fn push(&mut self, severity: Severity, lines: Option<Lines>, seal_line: Option<u64>, message: String) {
        match severity {
            Severity::Failure => self.failures += 1,
            Severity::Note => self.notes += 1,
        }
        if self.findings.len() < MAX_FINDINGS_PER_FILE {
            self.findings.push(Finding {
                severity,
                file: self.file.clone(),
                lines,
                seal_line,
                message,
            });
        } else {
            self.findings_not_shown += 1;
        }
    }
}

/// Lines `before+1 ..= before+newlines(+1 for a last line without its newline)`, if any.
fn span(before: u64, newlines: u64, partial_last: bool) -> Option<Lines> {
    let count = newlines + u64::from(partial_last);
    (count > 0).then(|| Lines {
        first: before + 1,
        last: before + count,
    })
}

/// Where [`OutputReader::goto`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goto {
    Reached,
    /// The file ends before the target.
    Eof,
    /// Going back would exceed the re-read budget.
    OverBudget,
}

/// Reads an output sequentially, counting lines, with the caller's fixed buffer.
struct OutputReader {
    file: File,
    /// Offset of the next byte to read (the file's own offset too).
    pos: u64,
    /// `\n` bytes before `pos`.
    line: u64,
    /// Whether `pos` is at the beginning of a line.
    at_line_start: bool,
    /// Recent (pos, line, at_line_start) checkpoints, for going back.
    marks: VecDeque<(u64, u64, bool)>,
    /// Bytes that may still be read again after going back: reordered entries cannot make the
    /// verifier read the file over and over.
    reread_budget: u64,
}

impl OutputReader {
    fn new(file: File, reread_budget: u64) -> Self {
        OutputReader {
            file,
            pos: 0,
            line: 0,
            at_line_start: true,
            marks: VecDeque::with_capacity(MARKS),
            reread_budget,
        }
    }

    /// Reads up to `limit` bytes into `buf`, keeping the counts. Returns how many (0 at the end).
    fn read_some(&mut self, limit: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = limit.min(buf.len() as u64) as usize;
        loop {
            match self.file.read(&mut buf[..want]) {
                Ok(n) => {
                    if n > 0 {
                        self.pos += n as u64;
                        self.line += super::sealer::count_newlines(&buf[..n]);
                        self.at_line_start = buf[n - 1] == b'\n';
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves to `target`, counting lines on the way.
    fn goto(&mut self, target: u64, buf: &mut [u8]) -> io::Result<Goto> {
        if target < self.pos {
            let (offset, line, at_start) = self
                .marks
                .iter()
                .copied()
                .filter(|m| m.0 <= target)
                .max_by_key(|m| m.0)
                .unwrap_or((0, 0, true));
            let cost = target - offset;
            if cost > self.reread_budget {
                return Ok(Goto::OverBudget);
            }
            self.reread_budget -= cost;
            self.file.seek(SeekFrom::Start(offset))?;
            self.pos = offset;
            self.line = line;
            self.at_line_start = at_start;
        }
        while self.pos < target {
            if self.read_some(target - self.pos, buf)? == 0 {
                return Ok(Goto::Eof);
            }
        }
        Ok(Goto::Reached)
    }

    /// Hashes from here to `end` (or the end of the file). Returns the `\n` count and whether
    /// `end` was reached.
    fn hash_to(&mut self, end: u64, hasher: &mut digest::Context, buf: &mut [u8]) -> io::Result<(u64, bool)> {
        let before = self.line;
        while self.pos < end {
            let n = self.read_some(end - self.pos, buf)?;
            if n == 0 {
                return Ok((self.line - before, false));
            }
            hasher.update(&buf[..n]);
        }
        Ok((self.line - before, true))
    }

    /// Reads to the end of the file: (lines, their span).
    fn rest(&mut self, buf: &mut [u8]) -> io::Result<(u64, Option<Lines>)> {
        let before = self.line;
        let start = self.pos;
        while self.read_some(u64::MAX, buf)? > 0 {}
        let newlines = self.line - before;
        let partial = self.pos > start && !self.at_line_start;
        let count = newlines + u64::from(partial);
        Ok((count, span(before, newlines, partial)))
    }

    /// Remembers the current position as a place to come back to.
    fn mark(&mut self) {
        if self.marks.len() == MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((self.pos, self.line, self.at_line_start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::tests::TempDir;

    #[test]
    fn reader_counts_lines_and_goes_back() {
        let dir = TempDir::new("reader");
        let p = dir.path().join("o");
        std::fs::write(&p, b"a\nbb\nccc\nlast").unwrap();
        let mut buf = vec![0u8; 3]; // tiny, to cross buffer edges
        let mut r = OutputReader::new(File::open(&p).unwrap(), 100);
        assert_eq!(r.goto(5, &mut buf).unwrap(), Goto::Reached);
        assert_eq!((r.line, r.at_line_start), (2, true));
        r.mark();
        let mut h = digest::Context::new(&digest::SHA256);
        assert_eq!(r.hash_to(9, &mut h, &mut buf).unwrap(), (1, true));
        assert_eq!(digest_bytes(h.finish()), crate::seal::sha256(b"ccc\n"));
        assert_eq!(r.goto(6, &mut buf).unwrap(), Goto::Reached);
        assert_eq!((r.pos, r.line, r.at_line_start), (6, 2, false));
        assert_eq!(r.rest(&mut buf).unwrap(), (2, Some(Lines { first: 3, last: 4 })));
        assert_eq!(r.goto(100, &mut buf).unwrap(), Goto::Eof);
        let mut poor = OutputReader::new(File::open(&p).unwrap(), 2);
        poor.goto(10, &mut buf).unwrap();
        assert_eq!(poor.goto(5, &mut buf).unwrap(), Goto::OverBudget);
    }

    #[test]
    fn spans() {
        assert_eq!(span(0, 0, false), None);
        assert_eq!(span(4, 2, false), Some(Lines { first: 5, last: 6 }));
        assert_eq!(span(4, 0, true), Some(Lines { first: 5, last: 5 }));
    }

    #[test]
    fn text_and_json_rendering() {
        let mut f = FileReport {
            file: "out.ndjson".into(),
            seal: "out.ndjson.seal".into(),
            ..FileReport::default()
        };
        f.push(
            Severity::Failure,
            Some(Lines { first: 3, last: 7 }),
            None,
            "changed".into(),
        );
        f.push(Severity::Note, None, Some(2), "a note".into());
        f.push(
            Severity::Failure,
            Some(Lines { first: 9, last: 9 }),
            Some(4),
            "x".into(),
        );
        let report = Report {
            ok: false,
            totals: Totals {
                files: 1,
                failures: 2,
                notes: 1,
                ..Totals::default()
            },
            files: vec![f],
        };
        let text = report.to_text();
        assert!(text.contains("out.ndjson: lines 3–7: changed\n"), "{text}");
        assert!(text.contains("out.ndjson.seal: line 2: note: a note\n"), "{text}");
        assert!(text.contains("out.ndjson: line 9 (seal line 4): x\n"), "{text}");
        assert!(
            text.ends_with(
                "FAILED: 1 file, 0 entries, 0 lines verified, 0 unsealed tail lines, 2 failures\n"
            ),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["files"][0]["findings"][0]["severity"], "failure");
        assert_eq!(json["files"][0]["findings"][0]["lines"]["first"], 3);
        assert!(json["files"][0]["findings"][0].get("seal_line").is_none());
    }

    #[test]
    fn findings_are_bounded() {
        let mut f = FileReport::default();
        for _ in 0..(MAX_FINDINGS_PER_FILE + 5) {
            f.push(Severity::Failure, None, None, "x".into());
        }
        assert_eq!(f.findings.len(), MAX_FINDINGS_PER_FILE);
        assert_eq!(f.findings_not_shown, 5);
        assert_eq!(f.failures, (MAX_FINDINGS_PER_FILE + 5) as u64);
    }
}
