//! Field encryption: one personal value in one column of one row.
//!
//! Ciphertext format v1 (stored in the `*_ct` BLOB columns):
//!
//! ```text
//! 0x01 ‖ nonce (12 B, random) ‖ AES-256-GCM ciphertext (len = plaintext) ‖ tag (16 B)
//! ```
//!
//! Associated data binds the ciphertext to its place:
//!
//! ```text
//! "custodian:field:v1\0" ‖ 0x01 ‖ be32(len resource) ‖ resource
//!                        ‖ be32(len field) ‖ field ‖ be64(record id)
//! ```
//!
//! so a ciphertext copied to another row, another column or another resource,
//! or relabelled with another format byte, fails with
//! [`CryptoError::Integrity`]. Lengths are prefixed so no two places share an
//! encoding. The key is the customer's DEK; which KEK wraps that DEK is
//! recorded in `data_keys`, not here, so KEK rotation never touches field
//! ciphertexts.
//!
//! Nonces are 96-bit random. AES-GCM with random nonces stays within NIST's
//! collision bound (≤ 2^-32) for up to 2^32 encryptions per key; a DEK
//! encrypts one customer's handful of fields (and their rewrites), many orders
//! of magnitude below that.

use super::aead;
use super::keys::DataKey;
use super::CryptoError;
use aes_gcm::Aes256Gcm;
use std::fmt;
use zeroize::Zeroizing;

/// Format byte of field ciphertexts produced by this build.
pub const FIELD_FORMAT_V1: u8 = 1;

/// Where a ciphertext lives: `resource` and `field` as named in the field
/// catalog, `record_id` the row's id (for `customer`, the customer id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPlace<'a> {
    pub resource: &'a str,
    pub field: &'a str,
    pub record_id: i64,
}

impl FieldPlace<'_> {
    fn aad(&self) -> Vec<u8> {
        const PREFIX: &[u8] = b"custodian:field:v1\0";
        let mut aad = Vec::with_capacity(
            PREFIX.len() + 1 + 4 + self.resource.len() + 4 + self.field.len() + 8,
        );
        aad.extend_from_slice(PREFIX);
        aad.push(FIELD_FORMAT_V1);
        push_len_prefixed(&mut aad, self.resource.as_bytes());
        push_len_prefixed(&mut aad, self.field.as_bytes());
        aad.extend_from_slice(&self.record_id.to_be_bytes());
        aad
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Names come from the catalog and are short; saturate rather than panic.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A DEK's expanded AES-256-GCM key schedule. Build once per record
/// ([`DataKey::cipher`]) and use for all its fields.
pub struct FieldCipher {
    aead: Aes256Gcm,
}

impl FieldCipher {
    pub(crate) fn from_aead(aead: Aes256Gcm) -> FieldCipher {
        FieldCipher { aead }
    }

    /// Encrypts one field value for `place`.
    pub fn encrypt(&self, place: FieldPlace<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.aead, FIELD_FORMAT_V1, &place.aad(), plaintext)
    }

    /// Decrypts a field ciphertext stored at `place`. The plaintext is zeroized
    /// when dropped.
    pub fn decrypt(
        &self,
        place: FieldPlace<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        aead::open(&self.aead, FIELD_FORMAT_V1, &place.aad(), ciphertext)
    }
}

impl fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldCipher(<redacted>)")
    }
}

/// One-shot [`FieldCipher::encrypt`]; prefer a reused cipher for several fields.
pub fn encrypt_field(
    dek: &DataKey,
    place: FieldPlace<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    dek.cipher().encrypt(place, plaintext)
}

/// One-shot [`FieldCipher::decrypt`].
pub fn decrypt_field(
    dek: &DataKey,
    place: FieldPlace<'_>,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    dek.cipher().decrypt(place, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(field: &'static str, id: i64) -> FieldPlace<'static> {
        FieldPlace {
            resource: "customer",
            field,
            record_id: id,
        }
    }

    #[test]
    fn roundtrip_and_format() {
        let dek = DataKey::generate().unwrap();
        let pt = b"jane.doe@example.com";
        let ct = encrypt_field(&dek, place("email", 1), pt).unwrap();
        assert_eq!(ct.len(), pt.len() + 1 + 12 + 16);
        assert_eq!(ct[0], FIELD_FORMAT_V1);
        assert!(!ct.windows(pt.len()).any(|w| w == pt));
        assert_eq!(&*decrypt_field(&dek, place("email", 1), &ct).unwrap(), pt);
        // Random nonces: same input, different ciphertexts.
        assert_ne!(ct, encrypt_field(&dek, place("email", 1), pt).unwrap());
        // Empty values roundtrip too.
        let empty = encrypt_field(&dek, place("email", 1), b"").unwrap();
        assert!(decrypt_field(&dek, place("email", 1), &empty)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn ciphertext_moved_to_another_customer_fails() {
        // Even under the same key (a DEK shared by mistake), the row binding holds.
        let dek = DataKey::generate().unwrap();
        let ct = encrypt_field(&dek, place("email", 1), b"a@b.c").unwrap();
        assert_eq!(
            decrypt_field(&dek, place("email", 2), &ct).unwrap_err(),
            CryptoError::Integrity
        );
        // And with per-customer DEKs, customer 2's key cannot open it at all.
        let other = DataKey::generate().unwrap();
        assert_eq!(
            decrypt_field(&other, place("email", 1), &ct).unwrap_err(),
            CryptoError::Integrity
        );
    }

    #[test]
    fn ciphertext_moved_to_another_column_or_resource_fails() {
        let dek = DataKey::generate().unwrap();
        let ct = encrypt_field(&dek, place("email", 1), b"a@b.c").unwrap();
        assert_eq!(
            decrypt_field(&dek, place("phone", 1), &ct).unwrap_err(),
            CryptoError::Integrity
        );
        let order = FieldPlace {
            resource: "order",
            field: "email",
            record_id: 1,
        };
        assert_eq!(
            decrypt_field(&dek, order, &ct).unwrap_err(),
            CryptoError::Integrity
        );
        // Length prefixes: ("ab","c") and ("a","bc") are different places.
        let ab = FieldPlace {
            resource: "ab",
            field: "c",
            record_id: 1,
        };
        let a = FieldPlace {
            resource: "a",
            field: "bc",
            record_id: 1,
        };
        let ct = encrypt_field(&dek, ab, b"x").unwrap();
        assert!(decrypt_field(&dek, a, &ct).is_err());
    }

    #[test]
    fn every_tampered_byte_fails() {
        let dek = DataKey::generate().unwrap();
        let cipher = dek.cipher();
        let ct = cipher.encrypt(place("name", 5), b"Jane Doe").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            let err = cipher.decrypt(place("name", 5), &bad).unwrap_err();
            if i == 0 {
                assert_eq!(err, CryptoError::UnsupportedFormat(0));
            } else {
                assert_eq!(err, CryptoError::Integrity, "byte {i}");
            }
        }
        for len in 0..ct.len() {
            assert!(cipher.decrypt(place("name", 5), &ct[..len]).is_err());
        }
        let mut longer = ct.clone();
        longer.push(0);
        assert!(cipher.decrypt(place("name", 5), &longer).is_err());
    }

    #[test]
    fn unicode_and_large_values() {
        let dek = DataKey::generate().unwrap();
        let cipher = dek.cipher();
        let name = "Zoë Łukasiewicz-Ødegård 東京";
        let ct = cipher.encrypt(place("name", 9), name.as_bytes()).unwrap();
        assert_eq!(
            &*cipher.decrypt(place("name", 9), &ct).unwrap(),
            name.as_bytes()
        );
        let big = vec![0x5a; 64 * 1024];
        let ct = cipher.encrypt(place("notes", 9), &big).unwrap();
        assert_eq!(*cipher.decrypt(place("notes", 9), &ct).unwrap(), big);
    }
}
