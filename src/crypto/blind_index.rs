//! Blind indexes: equality look-ups on encrypted columns (`email_bidx`,
//! `phone_bidx`) without decrypting.
//!
//! `index = HMAC-SHA256(K_bidx, be32(len field) ‖ field ‖ normalize(value))`
//! with `K_bidx = HKDF(master, "custodian blind index v1")`. The field name is
//! in the MAC input, so an email and a phone with equal text index differently.
//!
//! Output is the full 32 bytes. Truncating to 16 would save 16 bytes a row and
//! change nothing about leakage: any deterministic index reveals which rows
//! share a value, whatever its length. Only a deliberately tiny index (a few
//! bits, CipherSweet-style) hides equality, at the price of false positives
//! the query must filter by decrypting candidates; we do not do that.
//!
//! The key is not versioned with the KEKs: rotating it means recomputing every
//! index, so it is derived from the master with its own fixed info string.

use super::keys::MasterKey;
use ring::hmac;
use std::fmt;
use zeroize::Zeroizing;

/// Length of a blind index value.
pub const BLIND_INDEX_LEN: usize = 32;

pub use crate::domain::BlindField;

/// Each blind-indexed field's normalization.
impl BlindField {
    /// The canonical form two values must share to count as equal.
    pub fn normalize(self, value: &str) -> Zeroizing<String> {
        match self {
            BlindField::Email => Zeroizing::new(value.trim().to_lowercase()),
            BlindField::Phone => {
                let trimmed = value.trim_start();
                let mut out = Zeroizing::new(String::with_capacity(trimmed.len()));
                if trimmed.starts_with('+') {
                    out.push('+');
                }
                out.extend(trimmed.chars().filter(char::is_ascii_digit));
                out
            }
        }
    }
}

/// Computes blind indexes. Build once at startup.
pub struct BlindIndexer {
    key: hmac::Key,
}

impl BlindIndexer {
    pub fn from_master(master: &MasterKey) -> BlindIndexer {
        let key = master.prk().expand32(&[b"custodian blind index v1"]);
        BlindIndexer {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_slice()),
        }
    }

    /// The index of `value`, or `None` if nothing is left after normalization
    /// (store NULL then: an index of "" would make all empty values "equal").
    pub fn index(&self, field: BlindField, value: &str) -> Option<[u8; BLIND_INDEX_LEN]> {
        let normalized = field.normalize(value);
        if normalized.is_empty() || normalized.as_str() == "+" {
            return None;
        }
        let name = field.name().as_bytes();
        let name_len = u32::try_from(name.len()).unwrap_or(u32::MAX);
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&name_len.to_be_bytes());
        ctx.update(name);
        ctx.update(normalized.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; BLIND_INDEX_LEN];
        out.iter_mut().zip(tag.as_ref()).for_each(|(d, s)| *d = *s);
        Some(out)
    }
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexer(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexer(seed: u8) -> BlindIndexer {
        BlindIndexer::from_master(&MasterKey::from_bytes([seed; 32]))
    }

    #[test]
    fn email_normalization() {
        assert_eq!(
            &*BlindField::Email.normalize("  Jane.Doe@Example.COM \n"),
            "jane.doe@example.com"
        );
        let ix = indexer(1);
        assert_eq!(
            ix.index(BlindField::Email, "Jane.Doe@Example.com"),
            ix.index(BlindField::Email, " jane.doe@example.com")
        );
        assert_ne!(
            ix.index(BlindField::Email, "jane.doe@example.com"),
            ix.index(BlindField::Email, "jane.do@example.com")
        );
        assert_eq!(
            ix.index(BlindField::Email, "ÉLODIE@example.fr"),
            ix.index(BlindField::Email, "élodie@example.fr")
        );
    }

    #[test]
    fn phone_normalization() {
        assert_eq!(
            &*BlindField::Phone.normalize(" +44 (20) 7946-0958 "),
            "+442079460958"
        );
        assert_eq!(
            &*BlindField::Phone.normalize("020 7946 0958"),
            "02079460958"
        );
        // A '+' anywhere but the start is not a country-code marker.
        assert_eq!(&*BlindField::Phone.normalize("44+1"), "441");
        let ix = indexer(1);
        assert_eq!(
            ix.index(BlindField::Phone, "+44 20 7946 0958"),
            ix.index(BlindField::Phone, "+442079460958")
        );
        assert_ne!(
            ix.index(BlindField::Phone, "+442079460958"),
            ix.index(BlindField::Phone, "442079460958")
        );
        assert_eq!(ix.index(BlindField::Phone, "n/a"), None);
        assert_eq!(ix.index(BlindField::Phone, " + "), None);
        assert_eq!(ix.index(BlindField::Email, "   "), None);
    }

    #[test]
    fn separated_by_field_and_key() {
        let ix = indexer(1);
        let email = ix.index(BlindField::Email, "12345").unwrap();
        let phone = ix.index(BlindField::Phone, "12345").unwrap();
        assert_ne!(email, phone);
        assert_ne!(Some(email), indexer(2).index(BlindField::Email, "12345"));
        assert_eq!(email.len(), BLIND_INDEX_LEN);
    }

    #[test]
    fn field_names_roundtrip() {
        for f in [BlindField::Email, BlindField::Phone] {
            assert_eq!(BlindField::from_name(f.name()), Some(f));
        }
        assert_eq!(BlindField::from_name("name"), None);
    }
}
