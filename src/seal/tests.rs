//! End-to-end tests of sealing and verifying, on real files in a temporary directory: a clean
//! run with rotations verifies, and each kind of tampering is reported by file and line range.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::entry::{Kind, SealedEntry};
use super::key::{create_state, SealState, VerificationKey};
use super::sealer::{Repair, SealKind, Sealer};
use super::verify::{verify, Finding, Lines, Report, Severity};
use super::{hex, seal_path_for, sha256};

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mlal-seal-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Stands in for the daemon: an output file opened for append, and its sealer.
struct Daemon {
    out_path: PathBuf,
    out: File,
    sealer: Sealer,
    /// Records written so far (for distinct lines of varied length).
    seq: u64,
}

impl Daemon {
    fn start(state: &Path, out_path: &Path) -> Daemon {
        Self::start_with(state, out_path, None)
    }

    fn start_with(state: &Path, out_path: &Path, repair: Option<&Repair>) -> Daemon {
        let out = OpenOptions::new()
            .append(true)
            .create(true)
            .open(out_path)
            .unwrap();
        let len = out.metadata().unwrap().len();
        let (sealer, anchors) = Sealer::open(state, out_path, len, repair).unwrap();
        assert!(!anchors.is_empty());
        Daemon {
            out_path: out_path.into(),
            out,
            sealer,
            seq: 0,
        }
    }

    /// Writes `n` records in one write and tells the sealer.
    fn write(&mut self, n: u64) {
        let mut batch = Vec::new();
        for _ in 0..n {
            self.seq += 1;
            let pad = "x".repeat((self.seq % 7) as usize);
            batch.extend_from_slice(format!("{{\"seq\":{},\"pad\":\"{pad}\"}}\n", self.seq).as_bytes());
        }
        self.out.write_all(&batch).unwrap();
        self.sealer.observe(&batch);
    }

    fn seal(&mut self) {
        self.sealer.seal(SealKind::Seal).unwrap().unwrap();
    }

    /// logrotate's move-and-create, then SIGHUP.
    fn rotate(&mut self, moved_to: &Path) {
        fs::rename(&self.out_path, moved_to).unwrap();
        fs::rename(seal_path_for(&self.out_path), seal_path_for(moved_to)).unwrap();
        self.out = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.out_path)
            .unwrap();
        let r = self.sealer.reopen(&self.out_path, 0);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.anchors.len(), 2);
        assert_eq!(r.anchors[1].kind, Kind::Reopen);
    }

    fn stop(mut self) {
        self.sealer.seal(SealKind::Stop).unwrap().unwrap();
    }
}

fn failures(report: &Report) -> Vec<&Finding> {
    report
        .findings()
        .filter(|f| f.severity == Severity::Failure)
        .collect()
}

fn notes(report: &Report) -> Vec<&Finding> {
    report
        .findings()
        .filter(|f| f.severity == Severity::Note)
        .collect()
}

fn assert_ok(report: &Report) {
    assert!(report.ok(), "{}", report.to_text());
}

/// Asserts that the first failure is in `file` and its lines include `line`.
fn assert_first_failure(report: &Report, file: &Path, line: u64) {
    assert!(!report.ok());
    let f = failures(report)[0];
    assert_eq!(f.file, file.display().to_string(), "{}", report.to_text());
    let lines = f.lines.unwrap_or(Lines { first: 0, last: 0 });
    assert!(
        lines.first <= line && line <= lines.last,
        "line {line} not in the first failure:\n{}",
        report.to_text()
    );
}

/// A rotated set of three files, sealed cleanly:
/// `out.1` (oldest): lines 1–40, sealed every 10 lines; `out.2`: 30 lines; `out`: 20 lines and a
/// stop. Seal lines of `out.1`: 1 start (empty), 2–5 seals of 10 lines each, 6 stop.
struct Set {
    dir: TempDir,
    key: VerificationKey,
    state: PathBuf,
    files: Vec<PathBuf>,
}

fn clean_set(name: &str) -> Set {
    let dir = TempDir::new(name);
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let old = dir.path().join("out.1");
    let mid = dir.path().join("out.2");
    let mut d = Daemon::start(&state, &out);
    for _ in 0..4 {
        d.write(10);
        d.seal();
    }
    d.rotate(&old);
    for _ in 0..3 {
        d.write(4);
        d.write(6);
        d.seal();
    }
    d.rotate(&mid);
    d.write(20);
    d.stop();
    Set {
        dir,
        key,
        state,
        files: vec![old, mid, out],
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    fs::write(p, lines.concat()).unwrap();
}

#[test]
fn a_clean_rotated_set_verifies_and_counts_every_line() {
    let set = clean_set("clean");
    let report = verify(&set.key, &set.files).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 40 + 30 + 20);
    assert_eq!(report.totals.unsealed_tail_lines, 0);
    assert_eq!(report.totals.files, 3);
    // start, 4 seals, stop | reopen, 3 seals, stop | reopen, stop
    assert_eq!(report.totals.entries, 6 + 5 + 2);
    assert!(notes(&report).is_empty(), "{}", report.to_text());
    assert!(report.to_text().starts_with("OK: 3 files"));
    // The key from a file works the same.
    let key_file = set.dir.path().join("key");
    fs::write(&key_file, set.key.to_line() + "\n").unwrap();
    let from_file = VerificationKey::from_arg(key_file.to_str().unwrap()).unwrap();
    assert_ok(&verify(&from_file, &set.files).unwrap());
    // Epochs rise by one across the whole set.
    let mut epochs = Vec::new();
    for f in &set.files {
        for l in read_lines(&seal_path_for(f)) {
            epochs.push(SealedEntry::parse(l.as_bytes()).unwrap().entry.epoch);
        }
    }
    assert_eq!(epochs, (1..=13).collect::<Vec<u64>>());
    assert_eq!(SealState::load(&set.state).unwrap().epoch(), 14);
}

#[test]
fn a_changed_byte_in_an_old_line_is_reported() {
    let set = clean_set("byte");
    let mut bytes = fs::read(&set.files[0]).unwrap();
    let lines = read_lines(&set.files[0]);
    let offset: usize = lines[..14].iter().map(|l| l.len()).sum::<usize>() + 3;
    bytes[offset] ^= 1; // in line 15
    fs::write(&set.files[0], bytes).unwrap();
    let report = verify(&set.key, &set.files).unwrap();
    assert_first_failure(&report, &set.files[0], 15);
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].lines, Some(Lines { first: 11, last: 20 }));
    assert!(f[0].message.contains("changed"));
}

#[test]
fn a_removed_line_is_reported() {
    let set = clean_set("removed");
    let mut lines = read_lines(&set.files[0]);
    lines.remove(14);
    write_lines(&set.files[0], &lines);
    let report = verify(&set.key, &set.files).unwrap();
    assert_first_failure(&report, &set.files[0], 15);
    // Every failure is in the file changed.
    assert!(failures(&report)
        .iter()
        .all(|f| f.file == set.files[0].display().to_string()));
}

#[test]
fn two_swapped_lines_are_reported() {
    let set = clean_set("swapped");
    let mut lines = read_lines(&set.files[1]);
    lines.swap(12, 13); // lines 13 and 14 of out.2, within one seal (lines 11–20)
    write_lines(&set.files[1], &lines);
    let report = verify(&set.key, &set.files).unwrap();
    assert_first_failure(&report, &set.files[1], 13);
    assert_eq!(failures(&report).len(), 1, "{}", report.to_text());
}

#[test]
fn a_line_added_in_the_middle_is_reported() {
    let set = clean_set("added");
    let mut lines = read_lines(&set.files[0]);
    lines.insert(25, "{\"seq\":999,\"forged\":true}\n".into());
    write_lines(&set.files[0], &lines);
    let report = verify(&set.key, &set.files).unwrap();
    assert_first_failure(&report, &set.files[0], 26);
    assert!(failures(&report)[0].message.contains("changed"));
}

#[test]
fn a_line_appended_after_the_stop_is_a_failure() {
    let set = clean_set("afterstop");
    let out = &set.files[2];
    let mut f = OpenOptions::new().append(true).open(out).unwrap();
    f.write_all(b"{\"seq\":1000}\n").unwrap();
    let report = verify(&set.key, &set.files).unwrap();
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].file, out.display().to_string());
    assert_eq!(f[0].lines, Some(Lines { first: 21, last: 21 }));
    assert!(f[0].message.contains("after the stop entry"), "{}", f[0].message);
}

#[test]
fn a_file_cut_short_is_reported() {
    let set = clean_set("cut");
    let lines = read_lines(&set.files[1]);
    write_lines(&set.files[1], &lines[..25]);
    let report = verify(&set.key, &set.files).unwrap();
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].file, set.files[1].display().to_string());
    assert!(f[0].message.contains("cut short"), "{}", f[0].message);
    assert_eq!(f[0].lines, Some(Lines { first: 21, last: 30 }));
}

#[test]
fn a_removed_seal_entry_is_reported() {
    let set = clean_set("entryremoved");
    let seal = seal_path_for(&set.files[0]);
    let mut entries = read_lines(&seal);
    entries.remove(2); // the seal of lines 11–20
    write_lines(&seal, &entries);
    let report = verify(&set.key, &set.files).unwrap();
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].file, set.files[0].display().to_string());
    assert_eq!(f[0].lines, Some(Lines { first: 11, last: 20 }));
    assert!(f[0].message.contains("missing"), "{}", f[0].message);
}

#[test]
fn two_swapped_seal_entries_are_reported() {
    let set = clean_set("entryswap");
    let seal = seal_path_for(&set.files[0]);
    let mut entries = read_lines(&seal);
    entries.swap(2, 3); // the seals of lines 11–20 and 21–30
    write_lines(&seal, &entries);
    let report = verify(&set.key, &set.files).unwrap();
    let f = failures(&report);
    assert!(!f.is_empty());
    assert!(f.iter().all(|f| f.file == set.files[0].display().to_string()));
    assert!(
        f.iter().any(|f| f.message.contains("reordered")),
        "{}",
        report.to_text()
    );
    assert_first_failure(&report, &set.files[0], 11);
    // No MAC failed: the entries are genuine, only their order is wrong.
    assert!(!report.to_text().contains("MAC"));
}

#[test]
fn a_missing_middle_file_is_reported() {
    let set = clean_set("middle");
    let given = [set.files[0].clone(), set.files[2].clone()];
    let report = verify(&set.key, &given).unwrap();
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].file, set.files[2].display().to_string());
    assert!(f[0].message.contains("a file is missing before this one"));
    // The later file alone: its reopen is only noted.
    let alone = verify(&set.key, &set.files[1..]).unwrap();
    assert_ok(&alone);
    assert!(notes(&alone)[0].message.contains("reopen"));
}

#[test]
fn a_wrong_key_fails_every_entry_and_says_so_first() {
    let set = clean_set("wrongkey");
    let dir = TempDir::new("wrongkey-state");
    let other = create_state(&dir.path().join("s"), false).unwrap();
    let report = verify(&other, &set.files).unwrap();
    assert!(!report.ok());
    let f = failures(&report);
    assert_eq!(f[0].file, set.files[0].display().to_string());
    assert_eq!(
        f[0].message,
        "the MAC of the first entry does not verify: wrong key, or the entry was forged"
    );
    assert_eq!(f[0].seal_line, Some(1));
    assert_eq!(report.totals.failures, report.totals.entries);
    assert_eq!(report.totals.lines_verified, 0);
}

#[test]
fn a_stolen_state_cannot_rewrite_earlier_entries() {
    let dir = TempDir::new("forward");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    for _ in 0..5 {
        d.write(3);
        d.seal();
    }
    // The intruder copies the state now, at epoch n.
    let stolen_path = dir.path().join("stolen");
    fs::copy(&state, &stolen_path).unwrap();
    let stolen = SealState::load(&stolen_path).unwrap();
    let n = stolen.epoch();
    assert_eq!(n, 7);
    d.write(3);
    d.seal();
    d.stop();

    // The intruder rewrites a line sealed at epoch n-2 and re-seals that entry as best it can.
    let seal = seal_path_for(&out);
    let entries = read_lines(&seal);
    let target = entries
        .iter()
        .position(|l| SealedEntry::parse(l.as_bytes()).unwrap().entry.epoch == n - 2)
        .unwrap();
    let original = SealedEntry::parse(entries[target].as_bytes()).unwrap().entry;
    assert!(original.lines > 0);
    // Change the first line of that entry's range.
    let mut lines = read_lines(&out);
    let mut offset = 0u64;
    let first = lines
        .iter()
        .position(|l| {
            let at = offset;
            offset += l.len() as u64;
            at == original.start
        })
        .unwrap();
    lines[first] = lines[first].replace("seq", "SEQ");
    write_lines(&out, &lines);
    let new_bytes = fs::read(&out).unwrap()[original.start as usize..original.end as usize].to_vec();

    // (a) Keep the epoch, MAC with the only key the intruder has.
    let mut forged = original.clone();
    forged.sha256 = sha256(&new_bytes);
    let (line, _) = forged.seal_with(stolen.key());
    let mut tampered = entries.clone();
    tampered[target] = line;
    write_lines(&seal, &tampered);
    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    assert_first_failure(&report, &out, first as u64 + 1);
    assert!(
        report.to_text().contains("MAC of this entry"),
        "{}",
        report.to_text()
    );

    // (b) Claim the stolen epoch instead: the MAC checks, the chain of epochs does not.
    let mut forged = original.clone();
    forged.sha256 = sha256(&new_bytes);
    forged.epoch = n;
    let (line, _) = forged.seal_with(stolen.key());
    let mut tampered = entries.clone();
    tampered[target] = line;
    write_lines(&seal, &tampered);
    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    assert_first_failure(&report, &out, first as u64 + 1);
    assert!(report.to_text().contains("reordered"), "{}", report.to_text());
}

#[test]
fn a_crash_leaves_a_tail_that_the_next_start_seals() {
    let dir = TempDir::new("crash");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(10);
    d.seal();
    d.write(7); // never sealed: kill -9
    drop(d);

    // While it is down, the tail is reported, not failed.
    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.unsealed_tail_lines, 7);
    assert_eq!(notes(&report)[0].lines, Some(Lines { first: 11, last: 17 }));

    let mut d = Daemon::start(&state, &out);
    d.write(3);
    d.stop();
    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 20);
    assert_eq!(report.totals.unsealed_tail_lines, 0);
    assert!(notes(&report)[0].message.contains("without a stop entry"));
}

#[test]
fn a_crash_between_append_and_ratchet_never_reuses_an_epoch() {
    let dir = TempDir::new("ratchetcrash");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(5);
    d.sealer.faults.skip_ratchet = true;
    d.seal();
    let stuck = SealState::load(&state).unwrap().epoch();
    assert_eq!(stuck, 2, "the entry at epoch 2 was appended, the state not moved");
    drop(d);

    let mut d = Daemon::start(&state, &out);
    d.write(2);
    d.stop();
    let epochs: Vec<u64> = read_lines(&seal_path_for(&out))
        .iter()
        .map(|l| SealedEntry::parse(l.as_bytes()).unwrap().entry.epoch)
        .collect();
    assert_eq!(epochs, [1, 2, 3, 4]);
    let report = verify(&key, &[out]).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 7);
}

#[test]
fn bytes_added_after_a_stop_are_sealed_as_foreign_and_fail() {
    let dir = TempDir::new("foreign");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(4);
    d.stop();
    let mut f = OpenOptions::new().append(true).open(&out).unwrap();
    f.write_all(b"{\"slipped\":\"in\"}\n{\"and\":2}\n").unwrap();
    let d = Daemon::start(&state, &out);
    d.stop();
    let last_start = read_lines(&seal_path_for(&out))
        .iter()
        .map(|l| SealedEntry::parse(l.as_bytes()).unwrap().entry)
        .rfind(|e| e.kind == Kind::Start)
        .unwrap();
    assert!(last_start.foreign);
    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    let f = failures(&report);
    assert_eq!(f.len(), 1, "{}", report.to_text());
    assert_eq!(f[0].lines, Some(Lines { first: 5, last: 6 }));
    assert!(f[0].message.contains("no daemon was running"));
}

#[test]
fn a_torn_tail_repair_verifies_as_a_note() {
    let dir = TempDir::new("repair");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(6);
    d.seal();
    // kill -9 in the middle of a write: a torn last line.
    d.out.write_all(b"{\"seq\":7,\"pa").unwrap();
    drop(d);

    // What the output code does at start (SPEC 4.4), then the sealer is told.
    let partial_path = dir.path().join("out.partial");
    let torn = b"{\"seq\":7,\"pa".to_vec();
    let len = fs::metadata(&out).unwrap().len() - torn.len() as u64;
    OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(len)
        .unwrap();
    fs::write(&partial_path, [&torn[..], b"\n"].concat()).unwrap();
    let repair = Repair::new(&torn, &partial_path);
    let mut d = Daemon::start_with(&state, &out, Some(&repair));
    d.write(2);
    d.stop();

    let report = verify(&key, std::slice::from_ref(&out)).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 8);
    let n = notes(&report);
    let note = n.iter().find(|f| f.message.contains("torn last line")).unwrap();
    assert!(note.message.contains(&hex(&sha256(&torn))));
    assert!(note.message.contains("out.partial"));
}

#[test]
fn a_repair_on_a_file_without_seal_comes_first_and_verifies() {
    let dir = TempDir::new("repairfirst");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    fs::write(&out, b"{\"old\":1}\n").unwrap();
    let repair = Repair::new(b"{\"to", &dir.path().join("out.partial"));
    let mut d = Daemon::start_with(&state, &out, Some(&repair));
    d.write(1);
    d.stop();
    let kinds: Vec<Kind> = read_lines(&seal_path_for(&out))
        .iter()
        .map(|l| SealedEntry::parse(l.as_bytes()).unwrap().entry.kind)
        .collect();
    assert_eq!(kinds, [Kind::Repair, Kind::Start, Kind::Stop]);
    let report = verify(&key, &[out]).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 2);
}

#[test]
fn a_reopen_of_the_same_file_continues_it() {
    let dir = TempDir::new("samefile");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(3);
    let len = fs::metadata(&out).unwrap().len();
    let r = d.sealer.reopen(&out, len); // SIGHUP without rotation
    assert!(r.errors.is_empty());
    assert_eq!(
        r.anchors.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [Kind::Stop, Kind::Start]
    );
    d.write(2);
    d.seal();
    d.stop();
    let report = verify(&key, &[out]).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 5);
}

#[test]
fn a_failed_append_is_covered_by_the_next_seal_and_verifies() {
    let dir = TempDir::new("retryverify");
    let state = dir.path().join("seal.state");
    let key = create_state(&state, false).unwrap();
    let out = dir.path().join("out");
    let mut d = Daemon::start(&state, &out);
    d.write(3);
    d.sealer.faults.fail_appends = 2;
    assert!(d.sealer.seal(SealKind::Seal).is_err());
    d.write(1);
    assert!(d.sealer.seal(SealKind::Seal).is_err());
    d.write(1);
    d.seal();
    d.stop();
    let report = verify(&key, &[out]).unwrap();
    assert_ok(&report);
    assert_eq!(report.totals.lines_verified, 5);
}

#[test]
fn malformed_and_missing_seals_are_failures() {
    let set = clean_set("malformed");
    let seal = seal_path_for(&set.files[0]);
    let mut entries = read_lines(&seal);
    entries[3] = "{\"v\":1, garbage\n".into();
    write_lines(&seal, &entries);
    let report = verify(&set.key, &set.files).unwrap();
    let f = failures(&report);
    assert_eq!(f[0].seal_line, Some(4), "{}", report.to_text());
    assert!(f[0].message.contains("not a valid entry"));
    assert!(report.to_text().contains("out.1.seal: line 4: not a valid entry"));

    fs::remove_file(seal_path_for(&set.files[1])).unwrap();
    let report = verify(&set.key, &set.files[1..]).unwrap();
    let f = failures(&report);
    assert!(f[0].message.contains("has no .seal file"), "{}", report.to_text());
    assert_eq!(f[0].lines, Some(Lines { first: 1, last: 30 }));

    // A last entry cut in the middle (no newline).
    let seal = seal_path_for(&set.files[2]);
    let text = fs::read_to_string(&seal).unwrap();
    fs::write(&seal, &text[..text.len() - 30]).unwrap();
    let report = verify(&set.key, &set.files[2..]).unwrap();
    let f = failures(&report);
    assert!(f[0].message.contains("incomplete"), "{}", report.to_text());
    assert_eq!(f[0].seal_line, Some(2));

    let missing = set.dir.path().join("nope");
    assert!(verify(&set.key, &[missing]).is_err());
    assert!(verify(&set.key, &[]).is_err());
}

#[test]
fn an_epoch_far_ahead_is_not_walked_to() {
    let set = clean_set("farahead");
    let seal = seal_path_for(&set.files[2]);
    let mut entries = read_lines(&seal);
    let mut e = SealedEntry::parse(entries[1].as_bytes()).unwrap().entry;
    e.epoch = 1 << 40;
    let (line, _) = e.seal_with(&set.key.key_for(1));
    entries[1] = line;
    write_lines(&seal, &entries);
    let started = std::time::Instant::now();
    let report = verify(&set.key, &set.files).unwrap();
    assert!(started.elapsed().as_secs() < 10);
    let text = report.to_text();
    assert!(text.contains("implausibly far ahead"), "{text}");
    assert!(!report.ok());
}

#[test]
fn any_changed_seal_byte_fails_and_nothing_panics() {
    let set = clean_set("mutate");
    let seal = seal_path_for(&set.files[0]);
    let original = fs::read(&seal).unwrap();
    // A fixed pseudo-random walk over positions and replacement bytes (no extra crate).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % original.len() as u64) as usize;
        let byte = [b'0', b'9', b'"', b'}', b'\n', 0xff, b' ', b'f'][(x >> 32) as usize % 8];
        if original[at] == byte {
            continue;
        }
        let mut mutated = original.clone();
        mutated[at] = byte;
        fs::write(&seal, &mutated).unwrap();
        let report = verify(&set.key, &set.files).unwrap();
        assert!(!report.ok(), "byte {at} set to {byte:#x} went unnoticed");
    }
}
