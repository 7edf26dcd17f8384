//! Forward-secure sealing of the output file (SPEC 4.8): the daemon appends MAC'd entries to
//! `OUTPUT.seal`, and `verify` checks them against the output's bytes.
//!
//! This module owns the keys and the state file ([`key`]), the entry format ([`entry`]), the
//! daemon side ([`sealer`]), the hand-over from the output writer ([`tap`]) and the verifier
//! ([`verify`]). It does not own the output file: the daemon's output writer tells the sealer
//! what it wrote through the [`tap::Tap`], and the torn-tail repair of SPEC 4.4 is done by the
//! output code before the sealer opens. When the daemon seals (every minute, at reopen, start and
//! stop) is `crate::daemon::sealing`'s. Nothing here is async.
//!
//! # Construction (version 1)
//!
//! Written out so that another tool can verify a sealed log without this code.
//!
//! **Keys.** 32 bytes each. `key(0)` is random; `key(n+1) = SHA-256("ml_api_logger seal key v1"
//! || key(n))`, the 25 ASCII bytes of the domain string followed by the 32 key bytes. The
//! verification key is `key(0)`, written as one line `mlseal1-` followed by 64 lowercase hex
//! digits. The daemon never holds `key(0)`: its state starts at epoch 1 with `key(1)`.
//!
//! **State file** (mode 0600): one JSON line `{"v":1,"epoch":N,"key":"<64 hex>"}` holding the
//! next epoch to use and its key. It is rewritten atomically (temporary file in the same
//! directory, mode 0600, fsync, rename over, fsync of the directory).
//!
//! **Entries.** `OUTPUT.seal` (mode 0640) holds one entry per line (NDJSON). Members, always in
//! this order, with no whitespace:
//!
//! | member | value |
//! | --- | --- |
//! | `"v"` | `1` |
//! | `"kind"` | `"start"`, `"seal"`, `"reopen"`, `"stop"` or `"repair"` |
//! | `"epoch"` | the entry's epoch (u64); its MAC key is `key(epoch)` |
//! | `"time"` | RFC 3339 UTC with milliseconds, e.g. `"2026-11-25T15:35:22.123Z"` |
//! | `"file"` | the output file's base name when the entry was written |
//! | `"start"`, `"end"` | the byte range of the output covered, end exclusive |
//! | `"lines"` | the number of `\n` bytes in that range |
//! | `"sha256"` | lowercase hex SHA-256 of those bytes |
//! | `"prev"` | the previous entry's digest (across files); 64 zeros for the first of a set |
//! | `"prev_file"` | only on `reopen`: the base name the previous entry was written for |
//! | `"foreign"` | only on `start`, only as `true`: the range was added while no daemon ran |
//! | `"moved"` | only on `repair`: `{"bytes":N,"sha256":"<hex>","to":"FILE.partial"}`, a torn last line moved out at start; the entry's own range is empty |
//! | `"mac"` | last: lowercase hex HMAC-SHA-256 |
//!
//! A line is `BODY,"mac":"<64 hex>"}` followed by `\n`, and `mac = HMAC-SHA-256(key(epoch),
//! BODY)`: the MAC covers every byte of the line before `,"mac":`. The entry's *digest* — what
//! the next entry's `prev` holds and what the daemon logs as an anchor — is that MAC's hex.
//! Strings are JSON-escaped with `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
//! characters as `\u00xx` (lowercase hex), and everything else as UTF-8 (serde_json's form).
//! The verifier here accepts only this canonical spelling: it rebuilds the line from the members
//! it parsed and requires the same bytes.
//!
//! **Forward security.** Entry n is appended and fsynced with `key(n)`; then the state moves to
//! `key(n+1)` and `key(n)` is overwritten. At start, the daemon moves its state past the last
//! entry's epoch, so epochs rise by exactly one from entry to entry, across restarts and
//! rotations. Whoever takes the machine at epoch n holds only `key(n)`, from which no earlier
//! key can be computed: entries before n cannot be forged.
//!
//! **What a verifier checks** (see [`verify`]): each MAC; epochs rising by one (a gap means
//! removed entries or a missing file, a decrease means reordering); the `prev` chain; each
//! file's first entry is `start`, `reopen` or `repair` at byte 0; ranges are contiguous; each
//! range's SHA-256 and line count against the output; bytes after a `stop` (failure) or after
//! the last entry (the unsealed tail, a note); `foreign` ranges (failure).

pub(crate) mod entry;
pub(crate) mod key;
pub(crate) mod sealer;
pub(crate) mod tap;
pub(crate) mod verify;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use sealer::{Anchor, Repair, SealKind, Sealer};

pub(crate) use key::{create_state, VerificationKey};
pub(crate) use verify::verify_with_progress;

/// Length in bytes of every key, MAC and SHA-256 digest here.
pub(crate) const KEY_LEN: usize = 32;

/// The longest `.seal` line read; a longer one is malformed (real entries are a few hundred bytes).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// `OUTPUT.seal` for `OUTPUT`.
pub fn seal_path_for(output: &Path) -> PathBuf {
    let mut p = output.as_os_str().to_owned();
    p.push(".seal");
    PathBuf::from(p)
}

/// The `.seal` of an output given to `verify`: `OUTPUT.seal` when it exists; otherwise, for an
/// output that logrotate renamed together with its `.seal`, the `.seal` renamed the same way
/// (`x.json-20261201` pairs with `x.json.seal-20261201`, `x.json.1` with `x.json.seal.1`).
pub(crate) fn seal_path_for_rotated(output: &Path) -> PathBuf {
    let direct = seal_path_for(output);
    if direct.exists() {
        return direct;
    }
    let Some(name) = output.file_name().and_then(|n| n.to_str()) else {
        return direct;
    };
    for (i, c) in name.char_indices().rev() {
        if i > 0 && (c == '-' || c == '.') {
            let candidate = output.with_file_name(format!("{}.seal{}", &name[..i], &name[i..]));
            if candidate.exists() {
                return candidate;
            }
        }
    }
    direct
}

/// The base name recorded in entries (`file`, `prev_file`, `moved.to`).
pub(crate) fn base_name(path: &Path) -> String {
    match path.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => path.to_string_lossy().into_owned(),
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// 64 hex digits as 32 bytes. Entries allow lowercase only (one spelling per value); a key typed
/// by a person may be in either case.
pub(crate) fn parse_hex32(s: &str, allow_upper: bool) -> Option<[u8; KEY_LEN]> {
    fn nibble(c: u8, allow_upper: bool) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' if allow_upper => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0], allow_upper)? << 4) | nibble(pair[1], allow_upper)?;
    }
    Some(out)
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; KEY_LEN] {
    digest_bytes(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

pub(crate) fn digest_bytes(d: aws_lc_rs::digest::Digest) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    // SHA-256 always gives 32 bytes; copying by zip cannot panic whatever the length.
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

/// What can go wrong on the daemon side (state file, `.seal` file, output reads). Each variant
/// names the file and says why, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The state file does not exist.
    #[error("sealing state {}: no such file (make it with `ml_api_logger seal-keys --state {}`)", .path.display(), .path.display())]
    StateMissing {
        /// The state file.
        path: PathBuf,
    },
    /// The state file exists but cannot be read.
    #[error("sealing state {}: cannot read it: {source}", .path.display())]
    StateUnreadable {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state file's contents are not a version-1 state.
    #[error("sealing state {}: malformed: {reason}", .path.display())]
    StateMalformed {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The state file can be read by other users.
    #[error("sealing state {}: mode {mode:04o} lets other users read the sealing key; it must be 0600 (chmod 600 {})", .path.display(), .path.display())]
    StateMode {
        /// The state file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `create_state` without `force` found a file already there.
    #[error("sealing state {} already exists; --force replaces it (entries sealed with the old state then need the old verification key)", .path.display())]
    StateExists {
        /// The state file.
        path: PathBuf,
    },
    /// The state file could not be written.
    #[error("sealing state {}: cannot write it: {source}", .path.display())]
    StateWrite {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The ratchet was asked to move backwards or implausibly far.
    #[error("sealing state {}: cannot move from epoch {from} to epoch {to}: {reason}", .path.display())]
    Ratchet {
        /// The state file.
        path: PathBuf,
        /// The state's epoch.
        from: u64,
        /// The epoch asked for.
        to: u64,
        /// Why not.
        reason: &'static str,
    },
    /// Reading the `.seal` file failed.
    #[error("{}: cannot read: {source}", .path.display())]
    SealRead {
        /// The `.seal` file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Appending to (or syncing, or repairing) the `.seal` file failed.
    #[error("{}: cannot write a seal entry: {source}", .path.display())]
    SealWrite {
        /// The `.seal` file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading the output's bytes (to seal what the daemon did not just write) failed.
    #[error("{}: cannot read the output to seal it: {source}", .path.display())]
    OutputRead {
        /// The output file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output is shorter than its `.seal` says it was: sealed bytes were cut off.
    #[error("{}: the output is {len} bytes but its seal covers {sealed} bytes: it was cut short after sealing (move the output and its .seal aside to start a new pair)", .path.display())]
    OutputShorter {
        /// The output file.
        path: PathBuf,
        /// Its length now.
        len: u64,
        /// How far its `.seal` covers.
        sealed: u64,
    },
    /// `seal` after a stop entry, with no reopen since.
    #[error("{}: sealing has stopped (a stop entry was written)", .path.display())]
    Stopped {
        /// The `.seal` file.
        path: PathBuf,
    },
}

/// Why a verification key was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// The text does not start with `mlseal1-`.
    #[error("not a verification key: it must be the line `mlseal1-…` that seal-keys printed")]
    MissingPrefix,
    /// The prefix is there but not 64 hex digits after it.
    #[error("malformed verification key: `mlseal1-` must be followed by 64 hex digits")]
    BadDigits,
    /// A key file given instead of the line could not be read.
    #[error("{}: cannot read the verification key: {source}", .path.display())]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Why a `.seal` line is not an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum EntryError {
    /// Longer than [`MAX_LINE`].
    #[error("longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// Not a JSON object of the entry's members.
    #[error("not an entry: {0}")]
    NotJson(String),
    /// `"v"` is not 1.
    #[error("unknown version {0}")]
    Version(u64),
    /// A digest member is not 64 lowercase hex digits.
    #[error("\"{0}\" is not 64 lowercase hex digits")]
    BadHex(&'static str),
    /// The members do not fit together (e.g. `end` before `start`).
    #[error("{0}")]
    Inconsistent(&'static str),
    /// Valid JSON, but not spelled as the writer spells it (order, spacing, escapes).
    #[error("not in canonical form (members out of order, extra spaces or unusual escapes)")]
    NotCanonical,
}

/// What stops `verify` from producing a report at all. Tampering never lands here: it is a
/// finding in the [`verify::Report`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// No file was given.
    #[error("no file to verify")]
    NoFiles,
    /// The key could not be parsed or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file given (or its `.seal`) exists but could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let h = hex(&bytes);
        assert_eq!(h.len(), 64);
        assert_eq!(parse_hex32(&h, false), Some(bytes));
        assert_eq!(parse_hex32(&h.to_uppercase(), false), None);
        assert_eq!(parse_hex32(&h.to_uppercase(), true), Some(bytes));
        assert_eq!(parse_hex32(&h[..62], true), None);
        assert_eq!(parse_hex32(&format!("{}zz", &h[..62]), true), None);
        // Multi-byte UTF-8 of the right byte length is not hex.
        assert_eq!(parse_hex32(&"é".repeat(32), true), None);
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_rotated_output_finds_its_rotated_seal() {
        let dir = tests::TempDir::new("rotated-names");
        let d = dir.path();
        for name in [
            "x.json.seal-20261201",
            "x.json.seal.1",
            "y.json.2",
            "y.json.2.seal",
        ] {
            std::fs::write(d.join(name), b"").unwrap();
        }
        assert_eq!(
            seal_path_for_rotated(&d.join("x.json-20261201")),
            d.join("x.json.seal-20261201")
        );
        assert_eq!(
            seal_path_for_rotated(&d.join("x.json.1")),
            d.join("x.json.seal.1")
        );
        assert_eq!(
            seal_path_for_rotated(&d.join("y.json.2")),
            d.join("y.json.2.seal")
        );
        assert_eq!(seal_path_for_rotated(&d.join("z.json")), d.join("z.json.seal"));
    }

    #[test]
    fn seal_path_appends_suffix() {
        assert_eq!(
            seal_path_for(Path::new("/var/log/x.ndjson")),
            PathBuf::from("/var/log/x.ndjson.seal")
        );
        assert_eq!(base_name(Path::new("/var/log/x.ndjson")), "x.ndjson");
    }
}
