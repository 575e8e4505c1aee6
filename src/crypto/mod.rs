//! Cryptography for data at rest and data leaving the gateway.
//!
//! This module owns every key and every primitive Custodian uses on personal
//! data; nothing else in the crate touches key bytes.
//!
//! Key hierarchy (all derivations are HKDF-SHA256, see [`kdf`]):
//!
//! ```text
//! master secret (32 B, env / key file)
//!   ├─ KEK v1, v2, … = HKDF(master, "custodian kek v{n}")   ─ wraps per-customer DEKs
//!   │     └─ DEK (32 B random, one per customer)            ─ AES-256-GCM field encryption
//!   ├─ blind-index key = HKDF(master, "custodian blind index v1")
//!   ├─ pseudonym key per purpose p = HKDF(master, "custodian pseudonym v1" ‖ p)
//!   └─ cursor key = HKDF(master, "custodian cursor v1")      ─ opaque page cursors
//! ```
//!
//! Submodules: [`keys`] (master key loading, KEK ring, DEK wrap/unwrap),
//! [`field`] (field ciphertext format), [`blind_index`] (equality look-ups on
//! encrypted columns), [`pseudonym`] (purpose-scoped tokens), [`mask`]
//! (display masks), [`vault`] (the running instance's keys against the
//! store), [`rotation`] (KEK rotation job).

mod aead;
pub mod blind_index;
pub mod cursor;
pub mod field;
pub mod kdf;
pub mod keys;
pub mod mask;
pub mod pseudonym;
pub mod rotation;
pub mod vault;

pub use blind_index::{BlindField, BlindIndexer, BLIND_INDEX_LEN};
pub use field::{decrypt_field, encrypt_field, FieldCipher, FieldPlace, FIELD_FORMAT_V1};
pub use keys::{
    generate_dev_kek_file, load_kek_file, DataKey, KeyError, Keyring, MasterKey, WrappedDek,
};
pub use mask::{apply_mask, MaskFormat};
pub use pseudonym::Pseudonymizer;
pub use vault::Vault;

use std::fmt;

/// Errors from using keys on data. Messages never contain key material or
/// plaintext; they are safe to log, but not meant for clients verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: the ciphertext was altered, truncated, moved to
    /// another row/column/customer, or is under another key.
    Integrity,
    /// The ciphertext names a format this build does not know.
    UnsupportedFormat(u8),
    /// No KEK with this version is loaded.
    UnknownKeyVersion(u32),
    /// The operating system's random number generator failed.
    Rng,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Integrity => f.write_str("ciphertext failed authentication"),
            CryptoError::UnsupportedFormat(v) => write!(f, "unsupported ciphertext format {v}"),
            CryptoError::UnknownKeyVersion(v) => write!(f, "unknown key version {v}"),
            CryptoError::Rng => f.write_str("system random number generator failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// Fills `buf` from the OS CSPRNG (ring's `SystemRandom`, i.e. `getrandom`).
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Rng)
}
