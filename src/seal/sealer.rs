//! The daemon side: appends entries to `OUTPUT.seal` for what the output writer wrote.
//!
//! The [`Sealer`] knows nothing of async or of the output's code. What was written reaches it as
//! [`Observed`] ranges: the output writer counts and hashes the bytes of each successful write
//! (bytes that stay: a write rolled back is never observed) into an `Observed` of its own, and
//! whoever seals takes it and hands it to [`Sealer::absorb`] (see [`super::tap`]); the unit tests,
//! which write and seal on one thread, call `Sealer::observe` instead. The daemon's minute timer
//! calls [`Sealer::seal`], `SIGHUP` calls [`Sealer::reopen`] with the new output's length at the
//! reopen, and shutdown calls `seal(SealKind::Stop)`. At [`Sealer::open`] the sealer reads what
//! it did not see being written (bytes past the last entry) from the output file itself.
//!
//! Order of every entry: build it, MAC it with `key(n)`, append and fsync the `.seal`, then move
//! the state to `key(n+1)` (memory first, then the file). A failed append leaves the observed
//! range pending, so the next `seal` covers it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use serde::Serialize;

use super::entry::{Entry, Kind, LineEnd, LineReader, Moved, SealedEntry};
use super::key::SealState;
use super::{base_name, digest_bytes, hex, seal_path_for, SealError, KEY_LEN};
use crate::observe::timefmt::rfc3339_millis;

/// Buffer for reading the output at open and at reopen (bounded, reused within one call).
const READ_BUF: usize = 64 * 1024;

/// A torn last line that the output code moved out of the file before the sealer opened
/// (SPEC 4.4). It is sealed as a `repair` entry ahead of the start entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// How many bytes were moved.
    pub(crate) bytes: u64,
    /// Their SHA-256.
    pub(crate) sha256: [u8; KEY_LEN],
    /// The base name of the file they went to (`FILE.partial`).
    pub(crate) to: String,
}

impl Repair {
    /// A repair record for `moved`, appended to the file at `to`.
    #[cfg(test)]
    pub(crate) fn new(moved: &[u8], to: &Path) -> Self {
        Repair {
            bytes: moved.len() as u64,
            sha256: super::sha256(moved),
            to: base_name(to),
        }
    }
}

/// What [`Sealer::seal`] is asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    /// The minute's seal: written only when something was observed since the last entry.
    Seal,
    /// The stop entry at shutdown: always written; the sealer accepts no more `seal` after it.
    Stop,
}

/// What the daemon logs at info for each entry, so that a shipped journal holds digests off the
/// machine. Line numbers are 1-based lines of the output file; an entry that covers no line has
/// `first_line == last_line + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    /// The entry's kind.
    pub(crate) kind: Kind,
    /// The entry's epoch.
    pub(crate) epoch: u64,
    /// The output's base name.
    pub(crate) file: String,
    /// First line covered.
    pub(crate) first_line: u64,
    /// Last line covered.
    pub(crate) last_line: u64,
    /// The entry's digest (its MAC, hex).
    pub(crate) digest: String,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first_line <= self.last_line {
            write!(
                f,
                "sealed lines {}–{} of {}, epoch {}, digest {} ({})",
                self.first_line,
                self.last_line,
                self.file,
                self.epoch,
                self.digest,
                self.kind.as_str(),
            )
        } else {
            write!(
                f,
                "sealed no new line of {}, epoch {}, digest {} ({})",
                self.file,
                self.epoch,
                self.digest,
                self.kind.as_str(),
            )
        }
    }
}

/// Counters for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SealStats {
    /// Entries appended since the sealer was made.
    pub entries_written: u64,
    /// Unix seconds of the last entry appended (0: none yet).
    pub last_seal_unix: u64,
    /// Failed attempts (appends, state saves, reopens).
    pub failures: u64,
    /// Whether the last attempt failed: what `/healthz` reports.
    pub last_failed: bool,
    /// The state file still holds an older key than memory (its save failed; retried before
    /// each entry). Forward security is weakened until it succeeds.
    pub state_unsaved: bool,
}

/// What [`Sealer::reopen`] did: every anchor to log, and every error to log. The sealer goes on
/// in any case; when the new pair could not be begun, the next `seal` tries again.
#[derive(Debug, Default)]
pub struct Reopened {
    /// The entries written (the old file's stop, the new file's first entry).
    pub anchors: Vec<Anchor>,
    /// What failed.
    pub errors: Vec<SealError>,
}

/// The open `.seal` file of the current pair.
struct SealFile {
    path: PathBuf,
    /// The output this pair seals, opened for reading when the pair began: ranges are read back
    /// through it, so a rotation (the path now naming the new file) does not change what is read.
    output: File,
    /// Opened for append: every write lands at the end whatever else happened to the file.
    file: File,
    /// Length up to the last whole entry: a failed append is cut back to it.
    len: u64,
    /// A failed append may have left part of a line that could not be cut yet.
    dirty: bool,
}

/// A range of the output written in order from `start`, counted and hashed as it was written:
/// what the output writer hands the sealer. Observing costs a hash update and a count of `\n`
/// bytes, with no allocation.
pub struct Observed {
    start: u64,
    end: u64,
    lines: u64,
    hasher: digest::Context,
}

impl Observed {
    /// An empty range at `offset` (the output's length when observing starts).
    pub fn at(offset: u64) -> Self {
        Observed {
            start: offset,
            end: offset,
            lines: 0,
            hasher: digest::Context::new(&digest::SHA256),
        }
    }

    /// Adds bytes just written after the range's end.
    pub(crate) fn observe(&mut self, written: &[u8]) {
        self.end += written.len() as u64;
        self.lines += count_newlines(written);
        self.hasher.update(written);
    }

    /// Where the range starts.
    #[cfg(test)]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Where the range ends (exclusive): the output's length as far as this range knows.
    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Returns the range observed so far and goes on with an empty one at its end.
    pub fn take(&mut self) -> Observed {
        std::mem::replace(self, Observed::at(self.end))
    }
}

/// The range observed since the last entry.
struct Pending {
    start: u64,
    end: u64,
    lines: u64,
    /// SHA-256 of `start..end` so far. Cloned to finish, so a failed append loses nothing.
    /// `None` when the range must be read back from the output before it is sealed (ranges
    /// observed after a failed append, which cannot be joined to its hash).
    hasher: Option<digest::Context>,
}

impl Pending {
    fn empty_at(offset: u64) -> Self {
        Pending {
            start: offset,
            end: offset,
            lines: 0,
            hasher: Some(digest::Context::new(&digest::SHA256)),
        }
    }
}

/// The daemon's sealer for one output file (and its successors after reopens).
pub struct Sealer {
    state: SealState,
    /// The output file being sealed.
    output: PathBuf,
    /// Its base name, as entries record it.
    file: String,
    /// `None` while a reopen's new pair waits to be begun (its first attempt failed).
    pair: Option<SealFile>,
    /// While `pair` is `None`: the base name the last written entry was for, for the retry's
    /// reopen entry.
    retry_prev_file: Option<String>,
    pending: Pending,
    /// The last entry's digest: the next entry's `prev`.
    prev: [u8; KEY_LEN],
    /// Lines of the output before `pending.start`, so anchors carry file line numbers.
    lines_before: u64,
    /// A stop entry was written to the current pair.
    stopped: bool,
    /// A state save that failed during the current call, returned at its end.
    state_error: Option<SealError>,
    stats: SealStats,
    last_anchor: Option<Anchor>,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

/// Failures a test can ask for.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// Fail this many appends, after writing half the line (as a full disk would).
    pub fail_appends: u32,
    /// Append entries but leave the state where it was (a crash between the two).
    pub skip_ratchet: bool,
}

impl Sealer {
    /// Opens the sealer at daemon start: loads the state, reads the existing `.seal` (if any),
    /// moves the state past its last epoch, writes a `repair` entry when the output code moved a
    /// torn tail out, then a `start` entry covering the output past the last entry (all of it
    /// when there is no `.seal`). `output_len` is the output's length now; nothing may be
    /// written to the output until this returns. Returns the anchors of the entries written.
    pub fn open(
        state_path: &Path,
        output: &Path,
        output_len: u64,
        repair: Option<&Repair>,
    ) -> Result<(Sealer, Vec<Anchor>), SealError> {
        let state = SealState::load(state_path)?;
        let mut sealer = Sealer {
            state,
            output: output.into(),
            file: base_name(output),
            pair: None,
            retry_prev_file: None,
            pending: Pending::empty_at(output_len),
            prev: [0; KEY_LEN],
            lines_before: 0,
            stopped: false,
            state_error: None,
            stats: SealStats::default(),
            last_anchor: None,
            #[cfg(test)]
            faults: Faults::default(),
        };
        let anchors = sealer.begin_pair(repair, None)?;
        // At start a state file that cannot be written is a bad setting, not a warning.
        if let Some(e) = sealer.state_error.take() {
            return Err(e);
        }
        Ok((sealer, anchors))
    }

    /// Records bytes just written to the output (whole lines that stay), for the tests, which
    /// write and seal on one thread. Cheap: hashing and counting, no allocation.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, written: &[u8]) {
        self.pending.end += written.len() as u64;
        // Without an open pair, the next attempt reads the range back from the output instead.
        if self.pair.is_some() {
            if let Some(hasher) = self.pending.hasher.as_mut() {
                hasher.update(written);
                self.pending.lines += count_newlines(written);
            }
        }
    }

    /// Takes a range the output writer observed. It continues the pending range: when nothing
    /// is pending, its hash is used as it is; after a failed append (something pending already)
    /// or should it not start where the pending range ends, the whole range is read back from
    /// the output when it is sealed.
    pub(crate) fn absorb(&mut self, observed: Observed) {
        if observed.end == observed.start && observed.start == self.pending.end {
            return;
        }
        let fresh = self.pending.start == self.pending.end && self.pending.hasher.is_some();
        if self.pair.is_some() && fresh && observed.start == self.pending.end {
            self.pending = Pending {
                start: observed.start,
                end: observed.end,
                lines: observed.lines,
                hasher: Some(observed.hasher),
            };
        } else {
            if observed.start != self.pending.end {
                tracing::warn!(
                    "sealing: the output's length ({}) is not where sealing expected it ({}); the range is read back from the file",
                    observed.start,
                    self.pending.end
                );
            }
            self.pending.end = self.pending.end.max(observed.end);
            self.pending.hasher = None;
        }
    }

    /// Appends an entry covering what was observed since the last one: a `seal` entry when
    /// there is something to seal (else `Ok(None)`), a `stop` entry always. On a failed append
    /// the range stays pending for the next call. When the entry was written but the state file
    /// could not be saved, the error is returned and the entry's anchor is in
    /// [`Sealer::last_anchor`].
    pub fn seal(&mut self, kind: SealKind) -> Result<Option<Anchor>, SealError> {
        let result = self.seal_inner(kind);
        self.finish_call(result)
    }

    fn seal_inner(&mut self, kind: SealKind) -> Result<Option<Anchor>, SealError> {
        if self.stopped {
            return Err(SealError::Stopped {
                path: seal_path_for(&self.output),
            });
        }
        let mut began = None;
        if self.pair.is_none() {
            // A reopen whose new pair could not be begun: its first entry covers everything.
            let prev_file = self.retry_prev_file.clone();
            began = self.begin_pair(None, prev_file)?.pop();
            self.retry_prev_file = None;
        }
        let kind = match kind {
            SealKind::Seal if self.pending.end == self.pending.start => return Ok(began),
            SealKind::Seal => Kind::Seal,
            SealKind::Stop => Kind::Stop,
        };
        self.rehash_pending()?;
        let entry = self.pending_entry(kind);
        let anchor = self.append(entry)?;
        self.pending = Pending::empty_at(self.pending.end);
        if kind == Kind::Stop {
            self.stopped = true;
        }
        Ok(Some(anchor))
    }

    /// The output was reopened (rotation, `SIGHUP`): writes a `stop` entry to the old `.seal`,
    /// then begins the new pair. A new `.seal` starts with a `reopen` entry naming the old file
    /// and covering the new output's first `new_output_len` bytes (read from it); an existing
    /// one (the same file reopened) goes on with a `start` entry. Call before anything is
    /// written to the new output.
    pub(crate) fn reopen(&mut self, new_output: &Path, new_output_len: u64) -> Reopened {
        let mut done = Reopened::default();
        let prev_file = match (&self.pair, self.retry_prev_file.take()) {
            // The last reopen never began its pair: entries last went to the file before it.
            (None, Some(name)) => name,
            _ => self.file.clone(),
        };
        if self.pair.is_some() && !self.stopped {
            match self.seal(SealKind::Stop) {
                Ok(anchor) => done.anchors.extend(anchor),
                Err(e) => {
                    if matches!(e, SealError::StateWrite { .. }) {
                        // The stop entry itself was written.
                        done.anchors.extend(self.last_anchor.clone());
                    }
                    done.errors.push(e);
                }
            }
        }
        // Whatever the old pair's fate, sealing goes on with the new one.
        self.pair = None;
        self.output = new_output.into();
        self.file = base_name(new_output);
        self.stopped = false;
        self.pending = Pending::empty_at(new_output_len);
        self.lines_before = 0;
        match self.begin_pair(None, Some(prev_file.clone())) {
            Ok(anchors) => done.anchors.extend(anchors),
            Err(e) => {
                self.retry_prev_file = Some(prev_file);
                self.stats.failures += 1;
                self.stats.last_failed = true;
                done.errors.push(e);
            }
        }
        if let Some(e) = self.state_error.take() {
            self.stats.failures += 1;
            self.stats.last_failed = true;
            done.errors.push(e);
        }
        done
    }

    /// Counters for `/metrics` and `/healthz`.
    pub(crate) fn stats(&self) -> &SealStats {
        &self.stats
    }

    /// Whether sealing is working: the last attempt succeeded, a pair is open and the state file
    /// is up to date.
    pub(crate) fn healthy(&self) -> bool {
        !self.stats.last_failed && self.pair.is_some() && !self.stats.state_unsaved
    }

    /// The anchor of the last entry written.
    pub(crate) fn last_anchor(&self) -> Option<&Anchor> {
        self.last_anchor.as_ref()
    }

    /// The epoch the next entry will use.
    #[cfg(test)]
    pub(crate) fn epoch(&self) -> u64 {
        self.state.epoch()
    }

    /// Updates the health counters from a public call's result, and returns a state save error
    /// that happened during the call in place of success.
    fn finish_call<T>(&mut self, result: Result<T, SealError>) -> Result<T, SealError> {
        let result = match (result, self.state_error.take()) {
            (Ok(_), Some(e)) => Err(e),
            (result, _) => result,
        };
        if result.is_err() {
            self.stats.failures += 1;
        }
        self.stats.last_failed = result.is_err();
        result
    }

    /// Opens `OUTPUT.seal` of the current output and writes its first entries: `repair` (if
    /// any), then `start` (continuing an existing `.seal`) or, with `prev_file`, `reopen` (a new
    /// one). The output's bytes past the last entry up to `pending.end` are read and sealed.
    /// On error no pair is open and `pending` is unchanged, so a retry covers the same bytes.
    fn begin_pair(
        &mut self,
        repair: Option<&Repair>,
        prev_file: Option<String>,
    ) -> Result<Vec<Anchor>, SealError> {
        let path = seal_path_for(&self.output);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(|source| SealError::SealWrite {
                path: path.clone(),
                source,
            })?;
        let scan = scan_seal(&path, &file)?;
        let output_len = self.pending.end;

        // Never reuse an epoch: a crash after an append but before the ratchet leaves the last
        // entry at the state's epoch.
        if let Some(last) = &scan.last {
            if last.epoch >= self.state.epoch() {
                let next = last.epoch.saturating_add(1);
                match self.state.ratchet_to(next) {
                    Ok(()) => {}
                    // The key in memory moved: go on, and report that the file did not.
                    Err(e @ SealError::StateWrite { .. }) => {
                        self.stats.state_unsaved = true;
                        self.state_error = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        let (kind, start, lines_before, prev, foreign, prev_file) = match &scan.last {
            Some(last) => {
                if output_len < last.end {
                    return Err(SealError::OutputShorter {
                        path: self.output.clone(),
                        len: output_len,
                        sealed: last.end,
                    });
                }
                // Bytes past a stop entry were not written by a daemon: say so.
                let foreign = scan.last_non_repair == Some(Kind::Stop) && output_len > last.end;
                (Kind::Start, last.end, scan.lines, last.digest, foreign, None)
            }
            None => match prev_file {
                Some(name) => (Kind::Reopen, 0, 0, self.prev, false, Some(name)),
                None => (Kind::Start, 0, 0, [0; KEY_LEN], false, None),
            },
        };
        let output_file = File::open(&self.output).map_err(|source| SealError::OutputRead {
            path: self.output.clone(),
            source,
        })?;
        let (hasher, lines) = hash_output_range(&output_file, &self.output, start, output_len)?;

        self.pair = Some(SealFile {
            path,
            output: output_file,
            file,
            len: scan.len,
            dirty: false,
        });
        self.prev = prev;
        self.lines_before = lines_before;
        let previous_pending = std::mem::replace(
            &mut self.pending,
            Pending {
                start,
                end: output_len,
                lines,
                hasher: Some(hasher),
            },
        );
        let written = self.write_first_entries(kind, foreign, prev_file, repair);
        if written.is_err() {
            self.pair = None;
            self.pending = previous_pending;
        }
        written
    }

    fn write_first_entries(
        &mut self,
        kind: Kind,
        foreign: bool,
        prev_file: Option<String>,
        repair: Option<&Repair>,
    ) -> Result<Vec<Anchor>, SealError> {
        let mut anchors = Vec::new();
        if let Some(r) = repair {
            let mut entry = self.pending_entry(Kind::Repair);
            // The repair records what left the file; its own range is empty.
            entry.end = entry.start;
            entry.lines = 0;
            entry.sha256 = super::sha256(&[]);
            entry.moved = Some(Moved {
                bytes: r.bytes,
                sha256: r.sha256,
                to: r.to.clone(),
            });
            anchors.push(self.append(entry)?);
        }
        let mut entry = self.pending_entry(kind);
        entry.foreign = foreign;
        entry.prev_file = prev_file;
        anchors.push(self.append(entry)?);
        self.pending = Pending::empty_at(self.pending.end);
        Ok(anchors)
    }

    /// Reads the pending range back from the output when it has no hash of its own.
    fn rehash_pending(&mut self) -> Result<(), SealError> {
        if self.pending.hasher.is_none() {
            let Some(pair) = &self.pair else {
                return Err(SealError::OutputRead {
                    path: self.output.clone(),
                    source: io::Error::other("no .seal file is open"),
                });
            };
            let (hasher, lines) =
                hash_output_range(&pair.output, &self.output, self.pending.start, self.pending.end)?;
            self.pending.hasher = Some(hasher);
            self.pending.lines = lines;
        }
        Ok(())
    }

    /// An entry of `kind` covering the pending range, chained to the last entry.
    fn pending_entry(&self, kind: Kind) -> Entry {
        Entry {
            kind,
            epoch: self.state.epoch(),
            time: rfc3339_millis(SystemTime::now()),
            file: self.file.clone(),
            start: self.pending.start,
            end: self.pending.end,
            lines: self.pending.lines,
            sha256: match &self.pending.hasher {
                Some(hasher) => digest_bytes(hasher.clone().finish()),
                // Callers rehash first; an empty range's hash stands in rather than a panic.
                None => super::sha256(&[]),
            },
            prev: self.prev,
            prev_file: None,
            foreign: false,
            moved: None,
        }
    }

    /// Appends `entry` to the open `.seal`, fsyncs it, then ratchets the state. Returns the
    /// anchor; a failed state save is left in `state_error` (the entry stands).
    fn append(&mut self, entry: Entry) -> Result<Anchor, SealError> {
        let Some(pair) = self.pair.as_mut() else {
            return Err(SealError::SealWrite {
                path: seal_path_for(&self.output),
                source: io::Error::other("no .seal file is open"),
            });
        };
        if self.stats.state_unsaved && self.state.save().is_ok() {
            self.stats.state_unsaved = false;
        }
        if pair.dirty {
            // Part of a line from a failed append: cut it before anything follows it.
            pair.file
                .set_len(pair.len)
                .map_err(|source| SealError::SealWrite {
                    path: pair.path.clone(),
                    source,
                })?;
            pair.dirty = false;
        }
        let (line, mac) = entry.seal_with(self.state.key());
        #[cfg(test)]
        let written = if self.faults.fail_appends > 0 {
            self.faults.fail_appends -= 1;
            let half = &line.as_bytes()[..line.len() / 2];
            pair.file
                .write_all(half)
                .and(Err(io::Error::from_raw_os_error(28)))
        } else {
            write_and_sync(&pair.file, line.as_bytes())
        };
        #[cfg(not(test))]
        let written = write_and_sync(&pair.file, line.as_bytes());
        if let Err(source) = written {
            // Leave no partial line: the next append must start on a line of its own.
            pair.dirty = pair.file.set_len(pair.len).is_err();
            return Err(SealError::SealWrite {
                path: pair.path.clone(),
                source,
            });
        }
        pair.len += line.len() as u64;
        self.prev = mac;

        // The entry is durable: only now may key(n) go.
        #[cfg(test)]
        let ratchet = !self.faults.skip_ratchet;
        #[cfg(not(test))]
        let ratchet = true;
        if ratchet {
            match self.state.advance() {
                Ok(()) => self.stats.state_unsaved = false,
                Err(e) => {
                    self.stats.state_unsaved = true;
                    self.state_error = Some(e);
                }
            }
        }

        let anchor = Anchor {
            kind: entry.kind,
            epoch: entry.epoch,
            file: entry.file,
            first_line: self.lines_before + 1,
            last_line: self.lines_before + entry.lines,
            digest: hex(&mac),
        };
        self.lines_before += entry.lines;
        self.stats.entries_written += 1;
        self.stats.last_seal_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_anchor = Some(anchor.clone());
        Ok(anchor)
    }
}

fn write_and_sync(file: &File, bytes: &[u8]) -> io::Result<()> {
    let mut writer = file;
    writer.write_all(bytes)?;
    file.sync_data()
}

/// The last entry of a `.seal`, as far as the sealer needs it.
struct Last {
    epoch: u64,
    end: u64,
    digest: [u8; KEY_LEN],
}

/// What the sealer learns from an existing `.seal`.
struct Scan {
    /// Length after any repair of a torn last line.
    len: u64,
    /// The last valid entry.
    last: Option<Last>,
    /// The kind of the last valid entry that is not a `repair` (a repair precedes a start, so
    /// "was the daemon stopped?" is asked of the entry before it).
    last_non_repair: Option<Kind>,
    /// Sum of `lines` over the entries: the output's line count up to `last.end`.
    lines: u64,
}

/// Reads every entry of an open `.seal` (streaming, bounded lines). Malformed lines are skipped
/// (the verifier reports them). A torn last line — a crash during an append — is finished with
/// its `\n` when it is a whole entry, and otherwise moved to `.seal.partial` and cut off, so the
/// next append starts on a line of its own.
fn scan_seal(path: &Path, file: &File) -> Result<Scan, SealError> {
    let read_err = |source| SealError::SealRead {
        path: path.into(),
        source,
    };
    let mut scan = Scan {
        len: 0,
        last: None,
        last_non_repair: None,
        lines: 0,
    };
    let mut reader = LineReader::new(BufReader::with_capacity(READ_BUF, file));
    let mut buf = Vec::new();
    let mut torn = None;
    while let Some(info) = reader.next_line(&mut buf).map_err(read_err)? {
        let parsed = if info.too_long {
            None
        } else {
            SealedEntry::parse(&buf).ok()
        };
        if info.end == LineEnd::Eof && parsed.is_none() {
            torn = Some(info);
            break;
        }
        if let Some(se) = parsed {
            scan.lines += se.entry.lines;
            if se.entry.kind != Kind::Repair {
                scan.last_non_repair = Some(se.entry.kind);
            }
            scan.last = Some(Last {
                epoch: se.entry.epoch,
                end: se.entry.end,
                digest: se.mac,
            });
        }
        scan.len = info.offset + info.len + 1;
        if info.end == LineEnd::Eof {
            // A whole entry whose `\n` did not make it: finish the line.
            write_and_sync(file, b"\n").map_err(|source| SealError::SealWrite {
                path: path.into(),
                source,
            })?;
            break;
        }
    }
    drop(reader);
    if let Some(info) = torn {
        move_torn_line(path, file, info.offset, info.len)?;
        scan.len = info.offset;
    }
    Ok(scan)
}

/// Appends the bytes `offset..offset+len` of the `.seal` to `.seal.partial` (with a `\n`), then
/// cuts the `.seal` back to `offset`. Nothing is thrown away, as with the output's torn tail.
fn move_torn_line(path: &Path, file: &File, offset: u64, len: u64) -> Result<(), SealError> {
    let mut partial_path = path.as_os_str().to_owned();
    partial_path.push(".partial");
    let partial_path = PathBuf::from(partial_path);
    let write_err = |p: &Path, source| SealError::SealWrite {
        path: p.into(),
        source,
    };
    let mut partial = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&partial_path)
        .map_err(|e| write_err(&partial_path, e))?;
    let mut source = file;
    source
        .seek(SeekFrom::Start(offset))
        .map_err(|e| write_err(path, e))?;
    io::copy(&mut source.take(len), &mut partial).map_err(|e| write_err(&partial_path, e))?;
    write_and_sync(&partial, b"\n").map_err(|e| write_err(&partial_path, e))?;
    file.set_len(offset).map_err(|e| write_err(path, e))?;
    file.sync_data().map_err(|e| write_err(path, e))
}

/// SHA-256 and line count of the output's bytes `start..end`, read with a bounded buffer.
fn hash_output_range(
    file: &File,
    output: &Path,
    start: u64,
    end: u64,
) -> Result<(digest::Context, u64), SealError> {
    use std::os::unix::fs::FileExt;
    let read_err = |source| SealError::OutputRead {
        path: output.into(),
        source,
    };
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut lines = 0;
    if start == end {
        return Ok((hasher, lines));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut at = start;
    while at < end {
        let want = (end - at).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], at) {
            Ok(0) => {
                return Err(SealError::OutputShorter {
                    path: output.into(),
                    len: at,
                    sealed: end,
                })
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
        lines += count_newlines(&buf[..n]);
        at += n as u64;
    }
    Ok((hasher, lines))
}

/// The `\n`s in `bytes`: the lines a write ended.
pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    // memchr's vector search: the output writer calls this for every write with sealing on,
    // and a byte-by-byte count was a third of what sealing cost a 512-byte record.
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::key::create_state;
    use crate::seal::tests::TempDir;
    use std::fs;

    #[test]
    fn newlines_are_counted_wherever_they_fall() {
        let mut bytes = Vec::new();
        for i in 0..700u32 {
            // A run of seven newlines every 91 bytes (where i % 91 < 7), so 84-byte stretches
            // without one, longer than a vector, and runs of empty lines; every prefix, so
            // every length and alignment the vector search meets.
            let expected = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_newlines(&bytes), expected, "{} bytes", bytes.len());
            bytes.push(if i % 13 == i % 7 { b'\n' } else { b'x' });
        }
        assert_eq!(count_newlines(&[b'\n'; 100]), 100);
        assert_eq!(count_newlines(b""), 0);
    }

    fn setup(name: &str) -> (TempDir, PathBuf, PathBuf) {
        let dir = TempDir::new(name);
        let state = dir.path().join("seal.state");
        create_state(&state, false).unwrap();
        let out = dir.path().join("out.ndjson");
        (dir, state, out)
    }

    fn entries(out: &Path) -> Vec<Entry> {
        fs::read_to_string(seal_path_for(out))
            .unwrap()
            .lines()
            .map(|l| SealedEntry::parse(l.as_bytes()).unwrap().entry)
            .collect()
    }

    fn write(out: &Path, sealer: &mut Sealer, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(out).unwrap();
        f.write_all(bytes).unwrap();
        sealer.observe(bytes);
    }

    #[test]
    fn open_observe_seal_stop() {
        let (_dir, state, out) = setup("basic");
        fs::write(&out, b"{\"a\":1}\n").unwrap();
        let (mut s, anchors) = Sealer::open(&state, &out, 8, None).unwrap();
        assert_eq!(anchors.len(), 1);
        assert_eq!((anchors[0].first_line, anchors[0].last_line), (1, 1));
        assert_eq!(s.epoch(), 2);
        assert_eq!(s.seal(SealKind::Seal).unwrap(), None, "nothing new");
        write(&out, &mut s, b"{\"b\":2}\n{\"c\":3}\n");
        let a = s.seal(SealKind::Seal).unwrap().unwrap();
        assert_eq!((a.first_line, a.last_line, a.epoch), (2, 3, 2));
        assert!(a
            .to_string()
            .starts_with("sealed lines 2–3 of out.ndjson, epoch 2, digest "));
        let stop = s.seal(SealKind::Stop).unwrap().unwrap();
        assert_eq!(stop.first_line, stop.last_line + 1);
        assert!(stop.to_string().contains("no new line"));
        assert!(matches!(s.seal(SealKind::Seal), Err(SealError::Stopped { .. })));
        let e = entries(&out);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [Kind::Start, Kind::Seal, Kind::Stop]
        );
        assert_eq!((e[1].start, e[1].end, e[1].lines), (8, 24, 2));
        assert_eq!(e[1].sha256, crate::seal::sha256(b"{\"b\":2}\n{\"c\":3}\n"));
        assert_eq!(e[0].prev, [0; 32]);
        assert_eq!(s.stats().entries_written, 3);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(seal_path_for(&out)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode, 0o640);
        assert_eq!(SealState::load(&state).unwrap().epoch(), 4);
    }

    #[test]
    fn restart_continues_the_chain_and_line_numbers() {
        let (_dir, state, out) = setup("restart");
        fs::write(&out, b"").unwrap();
        let (mut s, _) = Sealer::open(&state, &out, 0, None).unwrap();
        write(&out, &mut s, b"1\n2\n3\n");
        s.seal(SealKind::Seal).unwrap();
        s.seal(SealKind::Stop).unwrap();
        let digest = s.last_anchor().unwrap().digest.clone();
        drop(s);
        let (mut s, anchors) = Sealer::open(&state, &out, 6, None).unwrap();
        assert_eq!(anchors[0].kind, Kind::Start);
        write(&out, &mut s, b"4\n");
        let a = s.seal(SealKind::Seal).unwrap().unwrap();
        assert_eq!((a.first_line, a.last_line), (4, 4));
        let e = entries(&out);
        assert_eq!(hex(&e[3].prev), digest);
        assert!(!e[3].foreign);
        let epochs: Vec<u64> = e.iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_failed_append_keeps_the_range_pending_and_leaves_no_partial_line() {
        let (_dir, state, out) = setup("diskfull");
        fs::write(&out, b"").unwrap();
        let (mut s, _) = Sealer::open(&state, &out, 0, None).unwrap();
        write(&out, &mut s, b"a\n");
        s.faults.fail_appends = 1;
        assert!(matches!(s.seal(SealKind::Seal), Err(SealError::SealWrite { .. })));
        assert!(!s.healthy());
        assert_eq!(s.stats().failures, 1);
        write(&out, &mut s, b"b\n");
        let a = s.seal(SealKind::Seal).unwrap().unwrap();
        assert!(s.healthy());
        assert_eq!((a.first_line, a.last_line), (1, 2));
        let e = entries(&out); // every line parses: no torn remains
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].start, e[1].end, e[1].epoch), (0, 4, 2));
    }

    #[test]
    fn ranges_absorbed_after_a_failed_append_are_read_back_and_sealed_whole() {
        let (_dir, state, out) = setup("absorb");
        fs::write(&out, b"").unwrap();
        let (mut s, _) = Sealer::open(&state, &out, 0, None).unwrap();
        let mut writer = Observed::at(0);
        let mut f = OpenOptions::new().append(true).open(&out).unwrap();
        for bytes in [&b"a\n"[..], b"bb\n"] {
            f.write_all(bytes).unwrap();
            writer.observe(bytes);
        }
        s.absorb(writer.take());
        s.faults.fail_appends = 1;
        assert!(s.seal(SealKind::Seal).is_err());
        f.write_all(b"ccc\n").unwrap();
        writer.observe(b"ccc\n");
        s.absorb(writer.take());
        let a = s.seal(SealKind::Seal).unwrap().unwrap();
        assert_eq!((a.first_line, a.last_line), (1, 3));
        let e = entries(&out);
        assert_eq!((e[1].start, e[1].end, e[1].lines), (0, 9, 3));
        assert_eq!(e[1].sha256, crate::seal::sha256(b"a\nbb\nccc\n"));
        // An empty range changes nothing.
        s.absorb(writer.take());
        assert_eq!(s.seal(SealKind::Seal).unwrap(), None);
    }

    #[test]
    fn a_stop_after_a_failed_append_reads_the_old_file_not_its_successor() {
        let (dir, state, out) = setup("failrotate");
        let vk_state = dir.path().join("vk.state");
        let vk = create_state(&vk_state, false).unwrap();
        fs::rename(&vk_state, &state).unwrap();
        fs::write(&out, b"").unwrap();
        let (mut s, _) = Sealer::open(&state, &out, 0, None).unwrap();
        let mut writer = Observed::at(0);
        fs::write(&out, b"old\n").unwrap();
        writer.observe(b"old\n");
        s.absorb(writer.take());
        s.faults.fail_appends = 1;
        assert!(s.seal(SealKind::Seal).is_err());
        // Rotated while the seal was failing: the path now names a new file.
        let rotated = dir.path().join("out.1");
        fs::rename(&out, &rotated).unwrap();
        fs::rename(seal_path_for(&out), seal_path_for(&rotated)).unwrap();
        fs::write(&out, b"").unwrap();
        let r = s.reopen(&out, 0);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let report = crate::seal::verify::verify(&vk, &[rotated, out]).unwrap();
        assert!(report.ok(), "{}", report.to_text());
        assert_eq!(report.totals.lines_verified, 1);
    }

    #[test]
    fn a_torn_seal_line_is_moved_aside_at_open() {
        let (_dir, state, out) = setup("torn");
        fs::write(&out, b"x\n").unwrap();
        let (s, _) = Sealer::open(&state, &out, 2, None).unwrap();
        drop(s);
        let seal = seal_path_for(&out);
        let mut f = OpenOptions::new().append(true).open(&seal).unwrap();
        f.write_all(b"{\"v\":1,\"kind\":\"se").unwrap();
        let (_s, _) = Sealer::open(&state, &out, 2, None).unwrap();
        assert_eq!(entries(&out).len(), 2);
        let partial = fs::read(format!("{}.partial", seal.display())).unwrap();
        assert_eq!(partial, b"{\"v\":1,\"kind\":\"se\n");
    }

    #[test]
    fn a_whole_entry_missing_its_newline_is_kept() {
        let (_dir, state, out) = setup("nonl");
        fs::write(&out, b"x\n").unwrap();
        drop(Sealer::open(&state, &out, 2, None).unwrap());
        let seal = seal_path_for(&out);
        let text = fs::read_to_string(&seal).unwrap();
        fs::write(&seal, text.trim_end()).unwrap();
        let (s, _) = Sealer::open(&state, &out, 2, None).unwrap();
        let e = entries(&out);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].epoch, 2);
        assert_eq!(s.epoch(), 3);
    }

    #[test]
    fn an_output_shorter_than_sealed_is_refused() {
        let (_dir, state, out) = setup("short");
        fs::write(&out, b"x\ny\n").unwrap();
        drop(Sealer::open(&state, &out, 4, None).unwrap());
        fs::write(&out, b"x\n").unwrap();
        assert!(matches!(
            Sealer::open(&state, &out, 2, None),
            Err(SealError::OutputShorter {
                len: 2,
                sealed: 4,
                ..
            })
        ));
    }

    #[test]
    fn a_reopen_that_cannot_begin_is_retried_by_seal() {
        let (dir, state, out) = setup("retry");
        fs::write(&out, b"").unwrap();
        let (mut s, _) = Sealer::open(&state, &out, 0, None).unwrap();
        write(&out, &mut s, b"a\n");
        // The new output's directory does not exist yet: its .seal cannot be made.
        let sub = dir.path().join("later");
        let new_out = sub.join("out.ndjson");
        let r = s.reopen(&new_out, 0);
        assert_eq!(r.anchors.len(), 1, "the stop entry");
        assert_eq!(r.errors.len(), 1);
        assert!(!s.healthy());
        fs::create_dir(&sub).unwrap();
        fs::write(&new_out, b"b\n").unwrap();
        s.observe(b"b\n");
        let a = s.seal(SealKind::Seal).unwrap().unwrap();
        assert_eq!((a.kind, a.first_line, a.last_line), (Kind::Reopen, 1, 1));
        assert!(s.healthy());
        let e = entries(&new_out);
        assert_eq!(e[0].prev_file.as_deref(), Some("out.ndjson"));
        assert_eq!((e[0].start, e[0].end), (0, 2));
    }
}
