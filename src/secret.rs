//! Secrets at rest and in memory: a string secret from configuration (a
//! master key, an HMAC secret) that is zeroized on drop, redacted in `Debug`
//! and when serialized and compared in constant time, and the one way key
//! files are read and written.
//!
//! Key files (master key, development JWT secret, audit signing key) are
//! created with `create_new` and mode 0600, so an existing key is never
//! overwritten, and read through a handle whose mode is checked after it is
//! opened, so a file swapped between a check and a read cannot slip in.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Key files are tiny; a larger read means a wrong path (a log, /dev/zero).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why a key file could not be read or written. Names the path, never the
/// contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: readable by group or others (mode {mode:o}); run chmod 600", path.display())]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("{}: larger than a key file can be", path.display())]
    TooLarge { path: PathBuf },
}

/// Reads a secret file. On Unix, refuses a file that group or others can
/// access at all (`mode & 0o077 != 0`), checked on the opened handle.
pub fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SecretFileError::InsecurePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
    }
    let mut contents = Zeroizing::new(Vec::with_capacity(128));
    Read::by_ref(&mut file)
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(io_err)?;
    if contents.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(contents)
}

/// Creates a new secret file (mode 0600) holding `contents`, atomically:
/// written and synced under a temporary name (itself `create_new`), then
/// hard-linked to `path`, which fails if `path` exists. An existing key is
/// never overwritten, two starting processes cannot both win, and no
/// reader ever sees a half-written key.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix).map_err(
        |_| {
            io_err(std::io::Error::other(
                "system random number generator failed",
            ))
        },
    )?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = path.with_file_name(tmp_name);
    let written = create_private(&tmp, contents).and_then(|()| std::fs::hard_link(&tmp, path));
    // Best effort: the temporary name must not outlive this call either way.
    let _ = std::fs::remove_file(&tmp);
    written.map_err(io_err)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the new directory entry durable too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(())
}

fn create_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself; call sites are the few places that use key material.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}
