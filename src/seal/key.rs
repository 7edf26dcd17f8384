//! Keys: the one-way key chain, the daemon's state file, and the verification key.
//!
//! `key(n+1) = SHA-256("ml_api_logger seal key v1" || key(n))`. The daemon keeps only the
//! current key in its state file ([`SealState`]) and ratchets it forward after every entry; the
//! verifier holds `key(0)` ([`VerificationKey`]) and walks forward with a [`KeyCursor`]. This
//! module does not know about entries or files other than the state file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use super::{hex, parse_hex32, KeyError, SealError, KEY_LEN};

/// Domain separation for the key chain: these bytes are hashed before the previous key.
const KEY_DOMAIN: &[u8] = b"ml_api_logger seal key v1";

/// What starts the verification key's line, so that a wrong paste is recognised as such.
pub const VERIFICATION_KEY_PREFIX: &str = "mlseal1-";

/// A state file is one short line; anything much longer is not one.
const MAX_STATE_BYTES: u64 = 4096;

/// The daemon never ratchets further than this in one go: a `.seal` whose last epoch is that far
/// past the state does not belong with it (about 30 years of one entry a minute).
const MAX_RATCHET: u64 = 1 << 24;

/// How far past the furthest key reached a verifier walks for one entry. Real chains step by
/// one; a forged epoch far ahead must not make `verify` hash for hours.
const MAX_WALK: u64 = 1 << 24;

/// Overwrites a buffer that held key material (the state line, its hex) before it is freed.
fn wipe_vec(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// One epoch's MAC key. Not `Clone` (copies are made on purpose, with [`EpochKey::duplicate`]),
/// and zeroed when dropped, so that a key the daemon has moved past does not stay in memory.
pub struct EpochKey([u8; KEY_LEN]);

impl EpochKey {
    /// The next key in the chain.
    fn next(&self) -> EpochKey {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(KEY_DOMAIN);
        ctx.update(&self.0);
        EpochKey(super::digest_bytes(ctx.finish()))
    }

    /// Replaces this key by the next one; the old bytes are overwritten.
    fn advance(&mut self) {
        let next = self.next();
        self.0 = next.0;
        // `next` is dropped here, and zeroed with it.
    }

    fn duplicate(&self) -> EpochKey {
        EpochKey(self.0)
    }

    /// The HMAC-SHA-256 key for this epoch.
    pub(crate) fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites key bytes. `black_box` keeps the compiler from dropping the store as dead.
fn wipe(bytes: &mut [u8; KEY_LEN]) {
    *bytes = [0; KEY_LEN];
    std::hint::black_box(&*bytes);
}

/// `key(0)`: what verifies every entry of a chain. Printed once by `seal-keys`, kept off the
/// machine; the daemon never holds it.
pub struct VerificationKey(EpochKey);

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key in a debug log would be a key leaked.
        f.write_str("VerificationKey(…)")
    }
}

impl VerificationKey {
    /// Parses the line `mlseal1-<64 hex>`, or the contents of a file holding it (surrounding
    /// whitespace is ignored; hex digits may be in either case).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let digits = text
            .strip_prefix(VERIFICATION_KEY_PREFIX)
            .ok_or(KeyError::MissingPrefix)?;
        let bytes = parse_hex32(digits, true).ok_or(KeyError::BadDigits)?;
        Ok(VerificationKey(EpochKey(bytes)))
    }

    /// The `--key` argument: the line itself, or the path of a file holding it.
    pub fn from_arg(arg: &str) -> Result<Self, KeyError> {
        if arg.trim().starts_with(VERIFICATION_KEY_PREFIX) {
            return Self::parse(arg);
        }
        let path = PathBuf::from(arg);
        let mut text = String::new();
        let read = File::open(&path).and_then(|f| {
            // Bounded: a key file is one line.
            f.take(MAX_STATE_BYTES).read_to_string(&mut text)
        });
        match read {
            Ok(_) => Self::parse(&text),
            Err(source) => Err(KeyError::Unreadable { path, source }),
        }
    }

    /// The line `seal-keys` prints: `mlseal1-<64 lowercase hex>`.
    pub fn to_line(&self) -> String {
        format!("{VERIFICATION_KEY_PREFIX}{}", hex(&self.0 .0))
    }

    /// A cursor that yields `key(n)` for any n, cheaply when n rises.
    pub fn cursor(&self) -> KeyCursor {
        KeyCursor::new(self.0.duplicate(), 1024, 1024)
    }

    /// `key(epoch)`, walking from `key(0)`: for one-off use (tests, tools). A verifier walking a
    /// chain uses [`VerificationKey::cursor`].
    #[cfg(test)]
    pub fn key_for(&self, epoch: u64) -> EpochKey {
        let mut k = self.0.duplicate();
        for _ in 0..epoch {
            k.advance();
        }
        k
    }
}

/// Walks the key chain for a verifier. Forward steps cost one hash each; going back (reordered
/// entries) restarts from the nearest checkpoint rather than from `key(0)`. Checkpoints are
/// bounded: when the list is full, every other one is dropped and the spacing doubles.
pub struct KeyCursor {
    /// `checkpoints[i]` is `key(i * spacing)`; `checkpoints[0]` is `key(0)`.
    checkpoints: Vec<EpochKey>,
    spacing: u64,
    max_checkpoints: usize,
    /// The epoch of `current`.
    epoch: u64,
    current: EpochKey,
}

impl KeyCursor {
    fn new(key0: EpochKey, spacing: u64, max_checkpoints: usize) -> Self {
        KeyCursor {
            checkpoints: vec![key0.duplicate()],
            spacing: spacing.max(1),
            max_checkpoints: max_checkpoints.max(2),
            epoch: 0,
            current: key0,
        }
    }

    /// The furthest epoch a checkpoint reaches: everything up to here was walked once.
    fn furthest(&self) -> u64 {
        (self.checkpoints.len() as u64 - 1).saturating_mul(self.spacing)
    }

    /// `key(epoch)`, or `None` when `epoch` is more than [`MAX_WALK`] past anything walked so
    /// far (no real chain jumps like that; a forged one must not stall the verifier).
    pub fn key(&mut self, epoch: u64) -> Option<&EpochKey> {
        if epoch > self.furthest().max(self.epoch).saturating_add(MAX_WALK) {
            return None;
        }
        if epoch < self.epoch {
            // Within bounds: the list always holds key(0), and the index is capped at its end.
            let index = (epoch / self.spacing).min(self.checkpoints.len() as u64 - 1);
            self.current = self.checkpoints[index as usize].duplicate();
            self.epoch = index * self.spacing;
        }
        while self.epoch < epoch {
            self.current.advance();
            self.epoch += 1;
            if self.epoch % self.spacing == 0 && self.epoch / self.spacing == self.checkpoints.len() as u64 {
                self.checkpoints.push(self.current.duplicate());
                if self.checkpoints.len() > self.max_checkpoints {
                    // Keep key(0), key(2s), key(4s)…: half the memory, twice the spacing.
                    let mut i = 0;
                    self.checkpoints.retain(|_| {
                        i += 1;
                        i % 2 == 1
                    });
                    self.spacing *= 2;
                }
            }
        }
        Some(&self.current)
    }
}

/// The daemon's sealing state: the next epoch and its key, kept in the state file.
pub struct SealState {
    path: PathBuf,
    epoch: u64,
    key: EpochKey,
}

/// The state file's one line, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateLine {
    v: u32,
    epoch: u64,
    key: String,
}

/// Makes a new chain: a random `key(0)`, and the state file at epoch 1 holding `key(1)`.
/// Refuses to replace an existing file unless `force`. Returns `key(0)` to be printed once.
pub fn create_state(path: &Path, force: bool) -> Result<VerificationKey, SealError> {
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(SealError::StateExists { path: path.into() });
    }
    let mut key0 = EpochKey([0; KEY_LEN]);
    SystemRandom::new()
        .fill(&mut key0.0)
        .map_err(|_| SealError::StateWrite {
            path: path.into(),
            source: io::Error::other("the system's random number generator failed"),
        })?;
    let state = SealState {
        path: path.into(),
        epoch: 1,
        key: key0.next(),
    };
    let line = state.line();
    let written = write_atomically(path, line.as_bytes(), force);
    wipe_vec(line.into_bytes());
    match written {
        Ok(()) => Ok(VerificationKey(key0)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(SealError::StateExists { path: path.into() })
        }
        Err(source) => Err(SealError::StateWrite {
            path: path.into(),
            source,
        }),
    }
}

impl SealState {
    /// Reads the state file. Missing, unreadable, malformed and readable-by-others are each
    /// their own error.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let unreadable = |source| SealError::StateUnreadable {
            path: path.into(),
            source,
        };
        let malformed = |reason: String| SealError::StateMalformed {
            path: path.into(),
            reason,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SealError::StateMissing { path: path.into() })
            }
            Err(e) => return Err(unreadable(e)),
        };
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(malformed("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SealError::StateMode {
                path: path.into(),
                mode,
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(malformed(format!("longer than {MAX_STATE_BYTES} bytes")));
        }
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => serde_json::from_str::<StateLine>(text.trim())
                .map_err(|e| malformed(format!("not a state line ({e})"))),
            Err(_) => Err(malformed("not UTF-8".into())),
        };
        wipe_vec(bytes);
        let line = parsed?;
        if line.v != 1 {
            return Err(malformed(format!("unknown version {}", line.v)));
        }
        if line.epoch == 0 {
            // Epoch 0 is the verification key, which the daemon must never hold.
            return Err(malformed("epoch 0 is the verification key's".into()));
        }
        let key = parse_hex32(&line.key, false);
        wipe_vec(line.key.into_bytes());
        let key = key.ok_or_else(|| malformed("\"key\" is not 64 lowercase hex digits".into()))?;
        Ok(SealState {
            path: path.into(),
            epoch: line.epoch,
            key: EpochKey(key),
        })
    }

    /// The epoch the next entry will be sealed with.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key of [`SealState::epoch`].
    pub(crate) fn key(&self) -> &EpochKey {
        &self.key
    }

    /// Moves the state forward to `epoch`, overwriting the keys passed, and saves it. The key in
    /// memory moves even when saving fails (so an epoch is never reused by this process); the
    /// error says the file still holds the older key.
    pub fn ratchet_to(&mut self, epoch: u64) -> Result<(), SealError> {
        let refuse = |reason| SealError::Ratchet {
            path: self.path.clone(),
            from: self.epoch,
            to: epoch,
            reason,
        };
        if epoch < self.epoch {
            return Err(refuse("the state only moves forward"));
        }
        if epoch - self.epoch > MAX_RATCHET {
            return Err(refuse(
                "that is implausibly far: this .seal does not belong with this state",
            ));
        }
        if epoch == self.epoch {
            return Ok(());
        }
        while self.epoch < epoch {
            self.key.advance();
            self.epoch += 1;
        }
        self.save()
    }

    /// Moves to the next epoch (after an entry was appended and synced).
    pub(crate) fn advance(&mut self) -> Result<(), SealError> {
        match self.epoch.checked_add(1) {
            Some(next) => self.ratchet_to(next),
            None => Err(SealError::Ratchet {
                path: self.path.clone(),
                from: self.epoch,
                to: self.epoch,
                reason: "the epoch counter is exhausted",
            }),
        }
    }

    /// Writes the state file atomically.
    pub(crate) fn save(&self) -> Result<(), SealError> {
        let line = self.line();
        let written = write_atomically(&self.path, line.as_bytes(), true);
        wipe_vec(line.into_bytes());
        written.map_err(|source| SealError::StateWrite {
            path: self.path.clone(),
            source,
        })
    }

    /// The state file's line. It holds the key: callers wipe it after use.
    fn line(&self) -> String {
        let key = hex(&self.key.0);
        let text = format!("{{\"v\":1,\"epoch\":{},\"key\":\"{key}\"}}\n", self.epoch);
        wipe_vec(key.into_bytes());
        text
    }
}

/// Writes `contents` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file (mode 0600) in the same directory, fsynced, renamed over (or hard-linked, when
/// an existing file must not be replaced), then the directory fsynced.
fn write_atomically(path: &Path, contents: &[u8], replace: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A temporary file left by a crash is stale; `create_new` then guarantees our mode.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        if replace {
            fs::rename(&tmp, path)
        } else {
            // link(2) fails if `path` exists, so two `seal-keys` never overwrite each other.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::tests::TempDir;

    #[test]
    fn chain_matches_known_answers() {
        // Computed independently (Python hashlib) from key(0) = 32 zero bytes.
        let k0 = VerificationKey(EpochKey([0; KEY_LEN]));
        assert_eq!(
            hex(&k0.key_for(1).0),
            "d2159e378a4ff64d8935ac9151882f9f281e1a204b2f133e00fb0c1920573c65"
        );
        assert_eq!(
            hex(&k0.key_for(2).0),
            "a8c119cf5a33946a6b1c3075e731cb68041da2b7a40dc54efe1851ef190e171a"
        );
        let tag = hmac::sign(&k0.key_for(1).hmac_key(), br#"{"v":1}"#);
        assert_eq!(
            hex(tag.as_ref()),
            "3605d8463e74b803aede1abdd9d37371974e4a72e01620b0a4e3c1337d6427f4"
        );
    }

    #[test]
    fn cursor_agrees_with_direct_walk_forward_and_back() {
        let k0 = VerificationKey(EpochKey([7; KEY_LEN]));
        // Small limits so that checkpoints thin out several times.
        let mut cursor = KeyCursor::new(k0.0.duplicate(), 2, 4);
        for epoch in [0u64, 1, 2, 5, 40, 39, 3, 41, 100, 17, 100, 0, 64] {
            let got = cursor.key(epoch).map(|k| k.0);
            assert_eq!(got, Some(k0.key_for(epoch).0), "epoch {epoch}");
            assert!(cursor.checkpoints.len() <= 4);
        }
    }

    #[test]
    fn cursor_refuses_absurd_epochs() {
        let k0 = VerificationKey(EpochKey([1; KEY_LEN]));
        let mut cursor = k0.cursor();
        assert!(cursor.key(u64::MAX).is_none());
        assert!(cursor.key(3).is_some());
    }

    #[test]
    fn verification_key_line_round_trips() {
        let k = VerificationKey(EpochKey([0xab; KEY_LEN]));
        let line = k.to_line();
        assert_eq!(line, format!("mlseal1-{}", "ab".repeat(32)));
        let parsed = VerificationKey::parse(&format!("  {line}\n")).unwrap();
        assert_eq!(parsed.0 .0, [0xab; KEY_LEN]);
        let upper = format!("mlseal1-{}", "AB".repeat(32));
        assert_eq!(VerificationKey::parse(&upper).unwrap().0 .0, [0xab; 32]);
        assert!(matches!(
            VerificationKey::parse(&"ab".repeat(32)),
            Err(KeyError::MissingPrefix)
        ));
        assert!(matches!(
            VerificationKey::parse("mlseal1-abc"),
            Err(KeyError::BadDigits)
        ));
        assert!(matches!(VerificationKey::parse(""), Err(KeyError::MissingPrefix)));
        assert_eq!(format!("{k:?}"), "VerificationKey(…)");
    }

    #[test]
    fn verification_key_from_a_file() {
        let dir = TempDir::new("keyfile");
        let k = VerificationKey(EpochKey([3; KEY_LEN]));
        let path = dir.path().join("verify.key");
        fs::write(&path, format!("{}\n", k.to_line())).unwrap();
        let got = VerificationKey::from_arg(path.to_str().unwrap()).unwrap();
        assert_eq!(got.0 .0, [3; KEY_LEN]);
        assert!(VerificationKey::from_arg(&k.to_line()).is_ok());
        let missing = dir.path().join("nope");
        assert!(matches!(
            VerificationKey::from_arg(missing.to_str().unwrap()),
            Err(KeyError::Unreadable { .. })
        ));
    }

    #[test]
    fn create_then_load_then_ratchet() {
        let dir = TempDir::new("state");
        let path = dir.path().join("seal.state");
        let vk = create_state(&path, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(r#"{{"v":1,"epoch":1,"key":"{}"}}"#, hex(&vk.key_for(1).0)) + "\n"
        );
        let mut state = SealState::load(&path).unwrap();
        assert_eq!(state.epoch(), 1);
        assert_eq!(state.key().0, vk.key_for(1).0);

        state.ratchet_to(4).unwrap();
        assert_eq!(state.key().0, vk.key_for(4).0);
        let again = SealState::load(&path).unwrap();
        assert_eq!(again.epoch(), 4);
        assert_eq!(again.key().0, vk.key_for(4).0);
        assert!(matches!(
            state.ratchet_to(2),
            Err(SealError::Ratchet { from: 4, to: 2, .. })
        ));
        assert!(matches!(
            state.ratchet_to(u64::MAX),
            Err(SealError::Ratchet { .. })
        ));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn create_refuses_to_overwrite_without_force() {
        let dir = TempDir::new("exists");
        let path = dir.path().join("seal.state");
        let first = create_state(&path, false).unwrap();
        assert!(matches!(
            create_state(&path, false),
            Err(SealError::StateExists { .. })
        ));
        let second = create_state(&path, true).unwrap();
        assert_ne!(first.to_line(), second.to_line());
        assert_eq!(SealState::load(&path).unwrap().key().0, second.key_for(1).0);
    }

    #[test]
    fn load_errors_are_typed() {
        let dir = TempDir::new("loaderr");
        let path = dir.path().join("s");
        assert!(matches!(
            SealState::load(&path),
            Err(SealError::StateMissing { .. })
        ));
        let msg = SealState::load(&path).err().unwrap().to_string();
        assert!(msg.contains("seal-keys --state"), "{msg}");

        let write = |text: &str, mode: u32| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        };
        let good = format!(r#"{{"v":1,"epoch":3,"key":"{}"}}"#, "0f".repeat(32));
        write(&good, 0o644);
        assert!(matches!(
            SealState::load(&path),
            Err(SealError::StateMode { mode: 0o644, .. })
        ));
        write(&good, 0o600);
        assert_eq!(SealState::load(&path).unwrap().epoch(), 3);
        for bad in [
            "",
            "{}",
            "not json",
            &good.replace("\"v\":1", "\"v\":2"),
            &good.replace("\"epoch\":3", "\"epoch\":0"),
            &good.replace("0f0f", "0F0F"),
            &good.replace('}', r#","extra":1}"#),
            &"x".repeat(5000),
        ] {
            write(bad, 0o600);
            assert!(
                matches!(SealState::load(&path), Err(SealError::StateMalformed { .. })),
                "{bad:?}"
            );
        }
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(SealState::load(&path).is_err());
    }

    #[test]
    fn a_wiped_key_is_zero() {
        let mut bytes = [9u8; KEY_LEN];
        wipe(&mut bytes);
        assert_eq!(bytes, [0; KEY_LEN]);
    }
}
