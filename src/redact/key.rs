//! The installation's redaction key (SPEC 4.9): 32 random bytes in a file of mode 0600, made at
//! the first start and read at every later one, so the same credential gets the same mark across
//! restarts. This module owns reading, checking and making that file; what the key is used for
//! is [`crate::redact`]'s.
//!
//! Two starts at once must not end with two keys (the marks of one would never match the
//! other's): the file appears whole, by a hard link from a private temporary file, and whoever
//! finds it already made reads it.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand;

use super::HEX;

/// Bytes in the installation's key.
pub const KEY_LEN: usize = 32;

/// The installation's redaction key: 32 random bytes. Its file holds them as 64 hex digits
/// and an optional newline (text survives copying between machines and editors; raw bytes
/// would not).
#[derive(Clone, PartialEq, Eq)]
pub struct RedactKey([u8; KEY_LEN]);

impl fmt::Debug for RedactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedactKey(..)")
    }
}

/// Whether [`RedactKey::load_or_create`] found the key or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The file existed.
    Loaded,
    /// This start made the file.
    Created,
}

/// A key file that could not be read, made or understood. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// It exists but cannot be read.
    #[error("{}: cannot read the redaction key: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// It is not 64 hex digits and an optional newline.
    #[error("{}: not a redaction key: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// It does not exist and cannot be made.
    #[error("{}: cannot create the redaction key: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// The system gave no random bytes.
    #[error("no random bytes for a new redaction key")]
    Random,
}

impl RedactKey {
    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> RedactKey {
        RedactKey(bytes)
    }

    /// The key's bytes, for the HMAC.
    pub(super) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A new random key.
    pub(crate) fn generate() -> Result<RedactKey, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
        Ok(RedactKey(bytes))
    }

    /// The key as its file holds it: 64 lower-case hex digits and a newline.
    pub fn to_file_text(&self) -> String {
        let mut text = String::with_capacity(2 * KEY_LEN + 1);
        for &byte in &self.0 {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text.push('\n');
        text
    }

    /// The key from its file's text: 64 hex digits (either case), then nothing, `\n` or `\r\n`.
    pub(crate) fn parse(text: &[u8]) -> Result<RedactKey, String> {
        let digits = text
            .strip_suffix(b"\r\n")
            .or_else(|| text.strip_suffix(b"\n"))
            .unwrap_or(text);
        if digits.len() != 2 * KEY_LEN {
            return Err(if text.len() == KEY_LEN {
                format!("{KEY_LEN} bytes; the key is written as 64 hex digits, not raw bytes")
            } else if text.len() > 2 * KEY_LEN + 2 {
                "longer than 64 hex digits and a newline".to_string()
            } else {
                format!(
                    "{} bytes; expected 64 hex digits and an optional newline",
                    text.len()
                )
            });
        }
        let mut bytes = [0u8; KEY_LEN];
        for (k, pair) in digits.chunks_exact(2).enumerate() {
            let digit = |at: usize| {
                char::from(pair[at])
                    .to_digit(16)
                    .ok_or_else(|| format!("byte {} is not a hex digit", 2 * k + at + 1))
            };
            bytes[k] = (digit(0)? * 16 + digit(1)?) as u8;
        }
        Ok(RedactKey(bytes))
    }

    /// The key in the file at `path`.
    pub fn load(path: &Path) -> Result<RedactKey, KeyError> {
        let read_error = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = fs::File::open(path).map_err(read_error)?;
        // A key file is 66 bytes at most: more than that is not one, however long.
        let mut text = Vec::with_capacity(68);
        file.take(128).read_to_end(&mut text).map_err(read_error)?;
        RedactKey::parse(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The key in the file at `path`, or, when there is no such file, a new random key written
    /// there with mode 0600. Two processes starting at once end with the same key: the file
    /// appears whole, by a hard link from a private temporary file, and whoever finds it made
    /// already reads it. A file that exists but cannot be read or is malformed is an error.
    pub(crate) fn load_or_create(path: &Path) -> Result<(RedactKey, KeyOrigin), KeyError> {
        match RedactKey::load(path) {
            Ok(key) => return Ok((key, KeyOrigin::Loaded)),
            Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = RedactKey::generate()?;
        let create_error = |source| KeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| create_error(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(file_name);
        // Unique to this call, so that neither another process nor another thread shares it.
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        temp_name.push(format!(".{}.{call}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        // A stale one, left by a dead process that had this id, would refuse `create_new`.
        let _ = fs::remove_file(&temp);
        let made = write_new(&temp, key.to_file_text().as_bytes()).and_then(|()| {
            let linked = fs::hard_link(&temp, path);
            // The temporary name goes in every case; the link, if made, holds the key.
            let _ = fs::remove_file(&temp);
            linked
        });
        match made {
            Ok(()) => {}
            // Another start made it first: its key is the key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return RedactKey::load(path).map(|key| (key, KeyOrigin::Loaded));
            }
            // A file system without hard links: written in place, still never over a file.
            Err(_) => match write_new(path, key.to_file_text().as_bytes()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return RedactKey::load(path).map(|key| (key, KeyOrigin::Loaded));
                }
                Err(e) => return Err(create_error(e)),
            },
        }
        // The new name made durable, so that a crash cannot lose the key that marks were made
        // with (best effort: some file systems refuse to sync a directory).
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok((key, KeyOrigin::Created))
    }
}

/// Writes `data` to a new file at `path` (mode 0600, never over an existing one) and syncs it.
fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> RedactKey {
        RedactKey::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    /// A directory of its own under the build's `target/`, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-tmp")
                .join(format!("redact-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_key_is_made_once_then_loaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("made");
        let path = dir.0.join("redact.key");
        let (made, origin) = RedactKey::load_or_create(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text[..64]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(text.ends_with('\n'));
        let (loaded, origin) = RedactKey::load_or_create(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(loaded, made);
        assert_eq!(RedactKey::load(&path).unwrap(), made);
        // Nothing else left in the directory.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
        // Another start, another key.
        let other = dir.0.join("other.key");
        assert_ne!(RedactKey::load_or_create(&other).unwrap().0, made);
    }

    #[test]
    fn starts_at_once_agree_on_one_key() {
        let dir = TempDir::new("race");
        let path = dir.0.join("redact.key");
        let keys: Vec<(RedactKey, KeyOrigin)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| RedactKey::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|(k, _)| *k == keys[0].0));
        assert_eq!(keys.iter().filter(|(_, o)| *o == KeyOrigin::Created).count(), 1);
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    #[test]
    fn key_files_in_every_accepted_spelling() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
        for text in [hex.to_string(), format!("{hex}\n"), format!("{hex}\r\n")] {
            assert_eq!(RedactKey::parse(text.as_bytes()).unwrap(), key(0));
        }
        assert_eq!(key(0).to_file_text(), format!("{}\n", hex.to_ascii_lowercase()));
        assert_eq!(
            RedactKey::parse(key(7).to_file_text().as_bytes()).unwrap(),
            key(7)
        );
    }

    #[test]
    fn malformed_or_unreadable_key_files_are_errors_naming_the_file() {
        let dir = TempDir::new("bad");
        let hex = "00".repeat(32);
        for (content, reason) in [
            (Vec::new(), "0 bytes; expected 64 hex digits"),
            (hex.as_bytes()[..62].to_vec(), "62 bytes"),
            (format!("{hex}\n\n").into_bytes(), "66 bytes"),
            (format!(" {hex}").into_bytes(), "65 bytes"),
            (
                format!("{}zz", &hex[..62]).into_bytes(),
                "byte 63 is not a hex digit",
            ),
            (
                vec![7u8; 32],
                "32 bytes; the key is written as 64 hex digits, not raw bytes",
            ),
            (vec![b'0'; 10_000], "longer than 64 hex digits and a newline"),
        ] {
            let path = dir.0.join("redact.key");
            fs::write(&path, &content).unwrap();
            for result in [
                RedactKey::load(&path),
                RedactKey::load_or_create(&path).map(|(k, _)| k),
            ] {
                let e = result.unwrap_err();
                assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
                let message = e.to_string();
                assert!(
                    message.starts_with(&format!("{}: not a redaction key: ", path.display())),
                    "{message}"
                );
                assert!(message.contains(reason), "{message} lacks {reason}");
            }
        }
        // Unreadable: a directory where the file should be (root reads any file).
        let path = dir.0.join("a-directory");
        fs::create_dir(&path).unwrap();
        let e = RedactKey::load_or_create(&path).unwrap_err();
        assert!(matches!(e, KeyError::Read { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot read the redaction key: ", path.display())));
        // Cannot be made: no such directory.
        let path = dir.0.join("missing").join("redact.key");
        let e = RedactKey::load_or_create(&path).unwrap_err();
        assert!(matches!(e, KeyError::Create { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with(&format!("{}: cannot create the redaction key: ", path.display())));
    }
}
