//! Master key loading, the versioned KEK ring, and per-customer data keys.
//!
//! * [`MasterKey`]: the operator's 32-byte secret, from `CUSTODIAN_MASTER_KEY`
//!   (base64, via [`MasterKey::from_base64`]) or a key file ([`load_kek_file`]).
//!   It never encrypts anything itself; every key below is derived from it.
//! * [`Keyring`]: KEK versions `1..=n`. `KEK_v = HKDF-SHA256(salt =
//!   "custodian hkdf salt v1", ikm = secret_v, info = "custodian kek v{v}")`,
//!   where `secret_v` is the one master secret for every version
//!   ([`Keyring::from_master`]) or the v-th secret of an explicit list
//!   ([`Keyring::from_secrets`]). New DEKs are wrapped under the active
//!   version; older versions stay loaded so their DEKs still unwrap until the
//!   rotation job re-wraps them ([`Keyring::rewrap`]).
//! * [`DataKey`]: a random 32-byte AES-256-GCM key per customer, stored only as
//!   a [`WrappedDek`]. Deleting the wrapped DEK crypto-shreds the customer.
//!
//! Derived versions from one master limit how much data each KEK protects, but
//! they do not recover from a leaked master (every version derives from it).
//! After a compromise, load a new secret as a new version with
//! [`Keyring::from_secrets`] and re-wrap.

use super::aead;
use super::kdf::{Prk, MASTER_SALT};
use super::CryptoError;
use crate::crypto::field::FieldCipher;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine as _;
use ring::hmac;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of every symmetric key we hold.
pub const KEY_LEN: usize = 32;
/// Length of a KEK check value.
pub const CHECK_VALUE_LEN: usize = 16;
/// Format byte of a wrapped DEK (same framing as field ciphertexts).
const WRAP_FORMAT_V1: u8 = 1;

/// Errors loading or assembling key material. Never contains key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {path} is accessible by group or others (mode {mode:o}); \
         run `chmod 600 {path}`"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("master key is not valid base64 (nor 32 raw bytes)")]
    InvalidEncoding,
    #[error("master key must be 32 bytes, got {0}")]
    WrongLength(usize),
    #[error("key versions start at 1")]
    InvalidVersion,
    #[error("key version {0} given twice")]
    DuplicateVersion(u32),
    #[error("active key version {0} is not in the keyring")]
    ActiveVersionMissing(u32),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The operator's 32-byte master secret. Zeroized on drop; `Debug` redacts.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey { bytes }
    }

    /// Parses base64 (standard or URL-safe alphabet, padding optional,
    /// surrounding whitespace ignored), e.g. the `CUSTODIAN_MASTER_KEY` value.
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(decoded) = engine.decode(text) {
                return Self::from_slice(&Zeroizing::new(decoded));
            }
        }
        Err(KeyError::InvalidEncoding)
    }

    /// Generates a fresh random master key.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut key = MasterKey {
            bytes: [0u8; KEY_LEN],
        };
        super::fill_random(&mut key.bytes)?;
        Ok(key)
    }

    /// Base64 (standard, padded) for writing to a key file or an env var.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes))
    }

    fn from_slice(bytes: &[u8]) -> Result<MasterKey, KeyError> {
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(MasterKey { bytes })
    }

    /// The HKDF pseudorandom key everything else is derived from.
    pub(crate) fn prk(&self) -> Prk {
        Prk::extract(MASTER_SALT, &self.bytes)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Reads a master key file: 32 raw bytes, or base64 text.
///
/// On Unix, refuses a file that group or others can access at all
/// (`mode & 0o077 != 0`): a key readable by other accounts is not a secret.
/// The mode is checked on the opened handle, so a swapped file cannot slip in
/// between check and read.
pub fn load_kek_file(path: &Path) -> Result<MasterKey, KeyError> {
    let contents = crate::secret::read_private_file(path).map_err(|e| match e {
        crate::secret::SecretFileError::InsecurePermissions { path, mode } => {
            KeyError::InsecurePermissions { path, mode }
        }
        crate::secret::SecretFileError::Io { path, source } => KeyError::Io { path, source },
        crate::secret::SecretFileError::TooLarge { path } => KeyError::Io {
            path,
            source: std::io::Error::other("larger than a key file can be"),
        },
    })?;
    if contents.len() == KEY_LEN {
        // Base64 of 32 bytes is 43-44 characters, so exactly 32 bytes is raw.
        return MasterKey::from_slice(&contents);
    }
    let text = std::str::from_utf8(&contents).map_err(|_| KeyError::InvalidEncoding)?;
    MasterKey::from_base64(text)
}

/// Creates a new random master key file with mode 0600 (development/demo).
///
/// Atomic: the key is written and synced to a temporary file (created with
/// `create_new`, mode 0600), then hard-linked to `path`, which fails if `path`
/// exists. So an existing key is never overwritten (that would shred every
/// customer's data), two starting processes cannot both win, and no reader
/// ever sees a half-written key. The caller is expected to print a loud
/// warning that this key is not for production.
pub fn generate_dev_kek_file(path: &Path) -> Result<MasterKey, KeyError> {
    let key = MasterKey::generate()?;
    let mut text = Zeroizing::new(key.to_base64().as_bytes().to_vec());
    text.push(b'\n');
    crate::secret::write_new_private_file(path, &text).map_err(|e| match e {
        crate::secret::SecretFileError::Io { path, source } => KeyError::Io { path, source },
        other => KeyError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    Ok(key)
}

/// A per-customer data encryption key (AES-256). Zeroized on drop; `Debug`
/// redacts. Build a [`FieldCipher`] once per record with [`DataKey::cipher`].
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    bytes: [u8; KEY_LEN],
}

impl DataKey {
    /// A fresh random DEK.
    pub fn generate() -> Result<DataKey, CryptoError> {
        let mut key = DataKey {
            bytes: [0u8; KEY_LEN],
        };
        super::fill_random(&mut key.bytes)?;
        Ok(key)
    }

    #[cfg(test)]
    pub(crate) fn from_bytes_for_test(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey { bytes }
    }

    /// The expanded AES-GCM cipher for this key; reuse it for all fields of a
    /// record instead of re-expanding the key per field.
    pub fn cipher(&self) -> FieldCipher {
        FieldCipher::from_aead(Aes256Gcm::new(GenericArray::from_slice(&self.bytes)))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A DEK encrypted under KEK `kek_version`: store both columns of
/// `data_keys(customer_id, kek_version, wrapped_dek)`.
/// `bytes = 0x01 ‖ nonce (12) ‖ AES-256-GCM(DEK) (32) ‖ tag (16)` (61 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDek {
    pub kek_version: u32,
    pub bytes: Vec<u8>,
}

/// One loaded KEK: only the expanded cipher and its public check value are
/// kept, not the raw key bytes.
struct Kek {
    aead: Aes256Gcm,
    check_value: [u8; CHECK_VALUE_LEN],
}

impl Kek {
    fn derive(secret: &MasterKey, version: u32) -> Kek {
        let info = format!("custodian kek v{version}");
        let bytes = secret.prk().expand32(&[info.as_bytes()]);
        // Check value: HMAC(KEK, constant), truncated. It identifies the KEK
        // in the `keys` table without revealing it (HMAC is one-way).
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes.as_slice()),
            b"custodian kek check value v1",
        );
        let mut check_value = [0u8; CHECK_VALUE_LEN];
        for (dst, src) in check_value.iter_mut().zip(tag.as_ref()) {
            *dst = *src;
        }
        Kek {
            aead: Aes256Gcm::new(GenericArray::from_slice(bytes.as_slice())),
            check_value,
        }
    }
}

/// Versioned key-encryption keys. Cheap to share behind an `Arc`; all methods
/// take `&self`.
pub struct Keyring {
    keks: BTreeMap<u32, Kek>,
    active: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Derives KEK versions `1..=active_version` from one master secret and
    /// wraps new DEKs under `active_version`. Rotating means restarting with
    /// `active_version + 1` and running the re-wrap job.
    pub fn from_master(master: &MasterKey, active_version: u32) -> Result<Keyring, KeyError> {
        if active_version == 0 {
            return Err(KeyError::InvalidVersion);
        }
        let keks = (1..=active_version)
            .map(|v| (v, Kek::derive(master, v)))
            .collect();
        Ok(Keyring {
            keks,
            active: active_version,
        })
    }

    /// Uses an explicit secret per version (e.g. after a master compromise,
    /// or when retiring old versions). Each KEK is still HKDF-derived from its
    /// secret with the version in the info string.
    pub fn from_secrets(
        secrets: impl IntoIterator<Item = (u32, MasterKey)>,
        active_version: u32,
    ) -> Result<Keyring, KeyError> {
        let mut keks = BTreeMap::new();
        for (version, secret) in secrets {
            if version == 0 {
                return Err(KeyError::InvalidVersion);
            }
            if keks
                .insert(version, Kek::derive(&secret, version))
                .is_some()
            {
                return Err(KeyError::DuplicateVersion(version));
            }
        }
        if !keks.contains_key(&active_version) {
            return Err(KeyError::ActiveVersionMissing(active_version));
        }
        Ok(Keyring {
            keks,
            active: active_version,
        })
    }

    /// The version new DEKs are wrapped under.
    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// All loaded versions, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keks.keys().copied()
    }

    /// The public check value of a version, for the `keys` table.
    pub fn check_value(&self, version: u32) -> Option<[u8; CHECK_VALUE_LEN]> {
        self.keks.get(&version).map(|k| k.check_value)
    }

    /// Whether `stored` (from the `keys` table) matches the loaded KEK of
    /// `version`. Use at startup to refuse a wrong master key before it
    /// produces undecryptable data. Constant-time.
    pub fn verify_check_value(&self, version: u32, stored: &[u8]) -> bool {
        self.keks
            .get(&version)
            .is_some_and(|k| bool::from(k.check_value.as_slice().ct_eq(stored)))
    }

    /// Whether a DEK wrapped under `version` should be re-wrapped.
    pub fn needs_rewrap(&self, version: u32) -> bool {
        version != self.active
    }

    /// A fresh random DEK for a new customer.
    pub fn generate_dek(&self) -> Result<DataKey, CryptoError> {
        DataKey::generate()
    }

    /// Wraps `dek` under the active KEK, bound to `customer_id`.
    pub fn wrap_dek(&self, dek: &DataKey, customer_id: i64) -> Result<WrappedDek, CryptoError> {
        self.wrap_with(self.active, dek, customer_id)
    }

    /// Unwraps a DEK. Fails with [`CryptoError::Integrity`] if the bytes were
    /// altered, belong to another customer, or are labelled with the wrong
    /// version.
    pub fn unwrap_dek(
        &self,
        kek_version: u32,
        bytes: &[u8],
        customer_id: i64,
    ) -> Result<DataKey, CryptoError> {
        let kek = self
            .keks
            .get(&kek_version)
            .ok_or(CryptoError::UnknownKeyVersion(kek_version))?;
        let aad = wrap_aad(kek_version, customer_id);
        let plain = aead::open(&kek.aead, WRAP_FORMAT_V1, &aad, bytes)?;
        let bytes: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Integrity)?;
        Ok(DataKey { bytes })
    }

    /// Re-wraps a DEK from `kek_version` to `to_version` (key rotation); the
    /// field ciphertexts are untouched.
    pub fn rewrap(
        &self,
        kek_version: u32,
        bytes: &[u8],
        customer_id: i64,
        to_version: u32,
    ) -> Result<WrappedDek, CryptoError> {
        let dek = self.unwrap_dek(kek_version, bytes, customer_id)?;
        self.wrap_with(to_version, &dek, customer_id)
    }

    fn wrap_with(
        &self,
        version: u32,
        dek: &DataKey,
        customer_id: i64,
    ) -> Result<WrappedDek, CryptoError> {
        let kek = self
            .keks
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        let aad = wrap_aad(version, customer_id);
        let bytes = aead::seal(&kek.aead, WRAP_FORMAT_V1, &aad, &dek.bytes)?;
        Ok(WrappedDek {
            kek_version: version,
            bytes,
        })
    }
}

/// `"custodian:dek:v1\0" ‖ format ‖ be32(kek version) ‖ be64(customer id)`.
fn wrap_aad(version: u32, customer_id: i64) -> [u8; 30] {
    let mut aad = [0u8; 30];
    let parts: [&[u8]; 4] = [
        b"custodian:dek:v1\0",
        &[WRAP_FORMAT_V1],
        &version.to_be_bytes(),
        &customer_id.to_be_bytes(),
    ];
    let mut dst = aad.iter_mut();
    for byte in parts.iter().flat_map(|p| p.iter()) {
        if let Some(d) = dst.next() {
            *d = *byte;
        }
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([42u8; 32])
    }

    #[test]
    fn shared_state_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
        assert_send_sync::<crate::crypto::Pseudonymizer>();
        assert_send_sync::<crate::crypto::BlindIndexer>();
        assert_send_sync::<crate::catalog::FieldCatalog>();
        assert_send_sync::<FieldCipher>();
    }

    #[test]
    fn wrap_aad_is_fully_used() {
        // 17 + 1 + 4 + 8 = 30: the array is exactly filled.
        assert_eq!(b"custodian:dek:v1\0".len() + 1 + 4 + 8, 30);
        let aad = wrap_aad(1, 1);
        assert_eq!(aad[29], 1);
        assert_eq!(aad[21], 1);
    }

    #[test]
    fn base64_variants_parse() {
        let key = MasterKey::generate().unwrap();
        let std = key.to_base64();
        let parsed = MasterKey::from_base64(&format!("  {}\n", &*std)).unwrap();
        assert_eq!(parsed.bytes, key.bytes);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.bytes);
        assert_eq!(MasterKey::from_base64(&url).unwrap().bytes, key.bytes);
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(KeyError::WrongLength(5))
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(KeyError::InvalidEncoding)
        ));
    }

    #[test]
    fn dek_roundtrip_and_customer_binding() {
        let ring = Keyring::from_master(&master(), 1).unwrap();
        let dek = ring.generate_dek().unwrap();
        let wrapped = ring.wrap_dek(&dek, 7).unwrap();
        assert_eq!(wrapped.kek_version, 1);
        assert_eq!(wrapped.bytes.len(), 61);
        let back = ring.unwrap_dek(1, &wrapped.bytes, 7).unwrap();
        assert_eq!(back.bytes, dek.bytes);

        assert_eq!(
            ring.unwrap_dek(1, &wrapped.bytes, 8).unwrap_err(),
            CryptoError::Integrity
        );
        assert_eq!(
            ring.unwrap_dek(2, &wrapped.bytes, 7).unwrap_err(),
            CryptoError::UnknownKeyVersion(2)
        );
        let mut tampered = wrapped.bytes.clone();
        tampered[20] ^= 1;
        assert_eq!(
            ring.unwrap_dek(1, &tampered, 7).unwrap_err(),
            CryptoError::Integrity
        );
        assert_eq!(
            ring.unwrap_dek(1, &wrapped.bytes[..40], 7).unwrap_err(),
            CryptoError::Integrity
        );
        assert_eq!(
            ring.unwrap_dek(1, &[], 7).unwrap_err(),
            CryptoError::Integrity
        );
    }

    #[test]
    fn rotation_rewraps_and_old_version_still_unwraps() {
        let old = Keyring::from_master(&master(), 1).unwrap();
        let dek = old.generate_dek().unwrap();
        let v1 = old.wrap_dek(&dek, 3).unwrap();

        // Restart with v2 active: v1 still loaded.
        let ring = Keyring::from_master(&master(), 2).unwrap();
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 2]);
        assert!(ring.needs_rewrap(1));
        let v2 = ring.rewrap(1, &v1.bytes, 3, ring.active_version()).unwrap();
        assert_eq!(v2.kek_version, 2);
        assert_eq!(ring.unwrap_dek(2, &v2.bytes, 3).unwrap().bytes, dek.bytes);
        assert_eq!(ring.unwrap_dek(1, &v1.bytes, 3).unwrap().bytes, dek.bytes);
        // Version label is authenticated: v2 bytes under the v1 label fail.
        assert_eq!(
            ring.unwrap_dek(1, &v2.bytes, 3).unwrap_err(),
            CryptoError::Integrity
        );
    }

    #[test]
    fn derived_versions_differ_and_check_values_identify_them() {
        let ring = Keyring::from_master(&master(), 2).unwrap();
        let c1 = ring.check_value(1).unwrap();
        let c2 = ring.check_value(2).unwrap();
        assert_ne!(c1, c2);
        assert!(ring.verify_check_value(1, &c1));
        assert!(!ring.verify_check_value(1, &c2));
        assert!(!ring.verify_check_value(3, &c1));
        assert!(!ring.verify_check_value(1, &c1[..8]));
        // Deterministic: the same master gives the same KEKs after restart.
        let again = Keyring::from_master(&master(), 1).unwrap();
        assert_eq!(again.check_value(1).unwrap(), c1);
        // Another master gives another KEK.
        let other = Keyring::from_master(&MasterKey::from_bytes([1u8; 32]), 1).unwrap();
        assert!(!other.verify_check_value(1, &c1));
    }

    #[test]
    fn explicit_secrets() {
        let ring = Keyring::from_secrets(
            [
                (1, MasterKey::from_bytes([1u8; 32])),
                (2, MasterKey::from_bytes([2u8; 32])),
            ],
            2,
        )
        .unwrap();
        let dek = ring.generate_dek().unwrap();
        let w = ring.wrap_dek(&dek, 1).unwrap();
        assert_eq!(w.kek_version, 2);
        assert!(ring.unwrap_dek(2, &w.bytes, 1).is_ok());
        assert!(matches!(
            Keyring::from_secrets([(1, master())], 2),
            Err(KeyError::ActiveVersionMissing(2))
        ));
        assert!(matches!(
            Keyring::from_secrets([(1, master()), (1, master())], 1),
            Err(KeyError::DuplicateVersion(1))
        ));
        assert!(matches!(
            Keyring::from_master(&master(), 0),
            Err(KeyError::InvalidVersion)
        ));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let m = MasterKey::from_bytes([0xAB; 32]);
        let d = DataKey { bytes: [0xAB; 32] };
        let ring = Keyring::from_master(&m, 1).unwrap();
        for s in [
            format!("{m:?}"),
            format!("{d:?}"),
            format!("{ring:?}"),
            format!("{:?}", d.cipher()),
        ] {
            assert!(!s.contains("171"), "{s}");
            assert!(!s.to_lowercase().contains("ab, "), "{s}");
            assert!(!s.to_lowercase().contains("abab"), "{s}");
        }
        assert_eq!(format!("{m:?}"), "MasterKey(<redacted>)");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_permissions_and_formats() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();

        let path = dir.path().join("master.key");
        let generated = generate_dev_kek_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_kek_file(&path).unwrap().bytes, generated.bytes);
        // Never overwrites an existing key, and leaves no temporary file.
        assert!(matches!(
            generate_dev_kek_file(&path),
            Err(KeyError::Io { .. })
        ));
        assert_eq!(load_kek_file(&path).unwrap().bytes, generated.bytes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_kek_file(&path).unwrap_err();
        assert!(matches!(
            err,
            KeyError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_kek_file(&path).is_err());

        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [9u8; 32]).unwrap();
        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_kek_file(&raw).unwrap().bytes, [9u8; 32]);

        let short = dir.path().join("short.key");
        std::fs::write(&short, b"c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_kek_file(&short),
            Err(KeyError::WrongLength(5))
        ));
        assert!(matches!(
            load_kek_file(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
