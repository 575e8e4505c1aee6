//! Opaque page cursors.
//!
//! A list's `next_cursor` would otherwise be the internal row id of the
//! last row, which tells a pseudonym-only caller which internal id stands
//! behind each pseudonym, and internal ids are the same across purposes, so
//! pseudonyms would become linkable. A cursor is therefore the position
//! sealed with AES-256-GCM under a key derived from the master secret
//! (`HKDF(master, "custodian cursor v1")`), with associated data binding it
//! to the list, the purpose and the principal: a cursor reveals nothing,
//! cannot be forged or edited, and is refused when replayed by another
//! principal, for another purpose, or on another list.
//!
//! Format: base64url(format 0xC1 ‖ nonce (12 B) ‖ AES-GCM(position as 8 bytes
//! big-endian) ‖ tag (16 B)); 50 characters.

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{aead, CryptoError, MasterKey};

const CURSOR_FORMAT: u8 = 0xC1;
/// Longest text accepted as a cursor (a real one is 50 characters).
const MAX_CURSOR_CHARS: usize = 64;

/// What a cursor is bound to: the list it pages, and who pages it why.
pub struct CursorScope<'a> {
    pub list: &'a str,
    pub purpose: &'a str,
    pub principal: &'a str,
}

impl CursorScope<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        for part in [self.list, self.purpose, self.principal] {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

pub struct CursorSealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for CursorSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSealer(<redacted>)")
    }
}

impl CursorSealer {
    pub fn from_master(master: &MasterKey) -> Self {
        let key = master.prk().expand32(&[b"custodian cursor v1"]);
        Self {
            cipher: Aes256Gcm::new(key.as_slice().into()),
        }
    }

    /// Seals `position` (an internal id, never shown) for `scope`.
    pub fn seal(&self, scope: &CursorScope<'_>, position: i64) -> Result<String, CryptoError> {
        let sealed = aead::seal(
            &self.cipher,
            CURSOR_FORMAT,
            &self.aad_with_format(scope),
            &position.to_be_bytes(),
        )?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The position inside a cursor, or `None` when the text is not a cursor
    /// this gateway sealed for exactly this scope.
    pub fn open(&self, scope: &CursorScope<'_>, cursor: &str) -> Option<i64> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let plain = aead::open(
            &self.cipher,
            CURSOR_FORMAT,
            &self.aad_with_format(scope),
            &sealed,
        )
        .ok()?;
        let bytes: [u8; 8] = plain.as_slice().try_into().ok()?;
        Some(i64::from_be_bytes(bytes))
    }

    fn aad_with_format(&self, scope: &CursorScope<'_>) -> Vec<u8> {
        let mut aad = vec![CURSOR_FORMAT];
        aad.extend_from_slice(&scope.aad());
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(list: &'a str, purpose: &'a str, principal: &'a str) -> CursorScope<'a> {
        CursorScope {
            list,
            purpose,
            principal,
        }
    }

    #[test]
    fn cursors_round_trip_and_hide_the_position() {
        let sealer = CursorSealer::from_master(&MasterKey::from_bytes([7; 32]));
        let s = scope("customers", "marketing_analytics", "ana");
        let a = sealer.seal(&s, 42).unwrap();
        let b = sealer.seal(&s, 42).unwrap();
        assert_ne!(a, b, "random nonce: equal positions give unequal cursors");
        assert_eq!(a.len(), 50);
        assert_eq!(sealer.open(&s, &a), Some(42));
    }

    #[test]
    fn cursors_are_bound_to_list_purpose_principal_and_key() {
        let sealer = CursorSealer::from_master(&MasterKey::from_bytes([7; 32]));
        let s = scope("customers", "marketing_analytics", "ana");
        let c = sealer.seal(&s, 42).unwrap();
        assert_eq!(
            sealer.open(&scope("orders", "marketing_analytics", "ana"), &c),
            None
        );
        assert_eq!(
            sealer.open(&scope("customers", "personalization", "ana"), &c),
            None
        );
        assert_eq!(
            sealer.open(&scope("customers", "marketing_analytics", "bob"), &c),
            None
        );
        let other = CursorSealer::from_master(&MasterKey::from_bytes([8; 32]));
        assert_eq!(other.open(&s, &c), None);
        // Edited, truncated, or not a cursor at all.
        let mut edited = c.clone().into_bytes();
        edited[20] = if edited[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer.open(&s, &String::from_utf8(edited).unwrap()), None);
        for bad in ["", "0", "-0", "42", &c[..40], &"A".repeat(500)] {
            assert_eq!(sealer.open(&s, bad), None, "{bad}");
        }
    }
}
