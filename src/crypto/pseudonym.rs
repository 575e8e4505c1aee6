//! Purpose-scoped pseudonyms.
//!
//! Each purpose gets its own key,
//! `K_p = HKDF(master, info = "custodian pseudonym v1" ‖ purpose id)`, so the
//! same customer has the same token within a purpose (analytics can join and
//! count) and tokens of different purposes cannot be linked without the
//! master key. Token kinds (16 bytes of HMAC-SHA256, base64url, 22 chars):
//!
//! * `ps_…` [`Pseudonymizer::token`]: the customer (subject) pseudonym,
//!   `HMAC(K_p, "subject\0" ‖ customer key)`. The customer key must be an
//!   immutable id (the lead chooses external or internal id; changing that
//!   choice later changes every token). Resolving a token back to a customer
//!   is done by recomputing, which only the DB layer can do, audited.
//! * `pf_…` [`Pseudonymizer::pseudonymize_field`]: a pseudonym for an
//!   encrypted field of a customer (email under pseudonym treatment),
//!   computed from the customer key and field name, **not** the plaintext:
//!   the sanitizer never decrypts for a pseudonym, and two customers who
//!   share a value do not get linkable tokens.
//! * `pv_…` [`Pseudonymizer::pseudonymize_value`]: a pseudonym of a plain
//!   value bound to its field name (equal values, equal tokens, per purpose),
//!   with email/phone normalized as for blind indexes.
//!
//! 128-bit tokens: collisions need ~2^64 customers; guessing needs the key.

use super::blind_index::BlindField;
use super::kdf::Prk;
use super::keys::MasterKey;
use crate::domain::PurposeId;
use base64::Engine as _;
use ring::hmac;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// Bytes of HMAC output kept in a token.
const TOKEN_BYTES: usize = 16;

/// Computes pseudonyms. Build once at startup with the catalog's purposes;
/// per-purpose keys are derived then and cached.
pub struct Pseudonymizer {
    root: Prk,
    keys: HashMap<String, hmac::Key>,
}

impl Pseudonymizer {
    pub fn from_master<'p>(
        master: &MasterKey,
        purposes: impl IntoIterator<Item = &'p PurposeId>,
    ) -> Pseudonymizer {
        let root = master.prk();
        let keys = purposes
            .into_iter()
            .map(|p| (p.as_str().to_owned(), derive_purpose_key(&root, p.as_str())))
            .collect();
        Pseudonymizer { root, keys }
    }

    fn key(&self, purpose: &PurposeId) -> Cow<'_, hmac::Key> {
        match self.keys.get(purpose.as_str()) {
            Some(key) => Cow::Borrowed(key),
            // A purpose added to the catalog after startup: derive on the fly
            // (one HMAC) rather than fail; same key as a cached one would be.
            None => Cow::Owned(derive_purpose_key(&self.root, purpose.as_str())),
        }
    }

    /// The customer's pseudonym for `purpose`: `ps_` + 22 base64url chars.
    pub fn token(&self, purpose: &PurposeId, customer_key: &str) -> String {
        make_token(
            "ps_",
            &self.key(purpose),
            &[b"subject\0", customer_key.as_bytes()],
        )
    }

    /// Whether `token` is this customer's pseudonym for `purpose`
    /// (constant-time in the token contents).
    pub fn verify(&self, purpose: &PurposeId, customer_key: &str, token: &str) -> bool {
        let expected = self.token(purpose, customer_key);
        bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Pseudonym of an encrypted field of a customer, without its plaintext.
    pub fn pseudonymize_field(
        &self,
        purpose: &PurposeId,
        field: &str,
        customer_key: &str,
    ) -> String {
        make_token(
            "pf_",
            &self.key(purpose),
            &[
                b"field\0",
                &len_prefix(field),
                field.as_bytes(),
                customer_key.as_bytes(),
            ],
        )
    }

    /// Pseudonym of a plain value, bound to its field name.
    pub fn pseudonymize_value(&self, purpose: &PurposeId, field: &str, value: &str) -> String {
        let normalized = match BlindField::from_name(field) {
            Some(f) => f.normalize(value),
            None => zeroize::Zeroizing::new(value.to_owned()),
        };
        make_token(
            "pv_",
            &self.key(purpose),
            &[
                b"value\0",
                &len_prefix(field),
                field.as_bytes(),
                normalized.as_bytes(),
            ],
        )
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("cached_purposes", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn derive_purpose_key(root: &Prk, purpose: &str) -> hmac::Key {
    let bytes = root.expand32(&[b"custodian pseudonym v1", purpose.as_bytes()]);
    hmac::Key::new(hmac::HMAC_SHA256, bytes.as_slice())
}

fn len_prefix(s: &str) -> [u8; 4] {
    u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes()
}

fn make_token(prefix: &str, key: &hmac::Key, parts: &[&[u8]]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let kept = tag.as_ref().get(..TOKEN_BYTES).unwrap_or(tag.as_ref());
    let mut out = String::with_capacity(prefix.len() + 22);
    out.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(kept, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purpose(s: &str) -> PurposeId {
        PurposeId(s.to_owned())
    }

    fn pz() -> Pseudonymizer {
        Pseudonymizer::from_master(
            &MasterKey::from_bytes([3u8; 32]),
            &[purpose("analytics"), purpose("marketing")],
        )
    }

    #[test]
    fn stable_within_purpose_unlinkable_across() {
        let p = pz();
        let a = p.token(&purpose("analytics"), "C-1001");
        assert_eq!(a, p.token(&purpose("analytics"), "C-1001"));
        assert!(a.starts_with("ps_"));
        assert_eq!(a.len(), 3 + 22);
        assert!(a[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, p.token(&purpose("marketing"), "C-1001"));
        assert_ne!(a, p.token(&purpose("analytics"), "C-1002"));
        // Another master, another token.
        let other =
            Pseudonymizer::from_master(&MasterKey::from_bytes([4u8; 32]), &[purpose("analytics")]);
        assert_ne!(a, other.token(&purpose("analytics"), "C-1001"));
    }

    #[test]
    fn uncached_purpose_matches_cached_derivation() {
        let cached = pz();
        let uncached = Pseudonymizer::from_master(&MasterKey::from_bytes([3u8; 32]), []);
        assert_eq!(
            cached.token(&purpose("marketing"), "C-1"),
            uncached.token(&purpose("marketing"), "C-1")
        );
    }

    #[test]
    fn verify_is_exact() {
        let p = pz();
        let t = p.token(&purpose("analytics"), "C-1");
        assert!(p.verify(&purpose("analytics"), "C-1", &t));
        assert!(!p.verify(&purpose("marketing"), "C-1", &t));
        assert!(!p.verify(&purpose("analytics"), "C-2", &t));
        assert!(!p.verify(&purpose("analytics"), "C-1", &t[..t.len() - 1]));
        assert!(!p.verify(&purpose("analytics"), "C-1", ""));
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(!p.verify(
            &purpose("analytics"),
            "C-1",
            std::str::from_utf8(&flipped).unwrap()
        ));
    }

    #[test]
    fn value_and_field_pseudonyms() {
        let p = pz();
        let an = purpose("analytics");
        let v1 = p.pseudonymize_value(&an, "email", "Jane@Example.com");
        assert!(v1.starts_with("pv_"));
        assert_eq!(v1, p.pseudonymize_value(&an, "email", " jane@example.com"));
        assert_ne!(
            v1,
            p.pseudonymize_value(&an, "backup_email", "jane@example.com")
        );
        assert_ne!(
            v1,
            p.pseudonymize_value(&purpose("marketing"), "email", "jane@example.com")
        );
        assert_eq!(
            p.pseudonymize_value(&an, "city", "London"),
            p.pseudonymize_value(&an, "city", "London")
        );
        assert_ne!(
            p.pseudonymize_value(&an, "city", "London"),
            p.pseudonymize_value(&an, "city", "london")
        );

        let f = p.pseudonymize_field(&an, "email", "C-1");
        assert!(f.starts_with("pf_"));
        assert_eq!(f, p.pseudonymize_field(&an, "email", "C-1"));
        assert_ne!(f, p.pseudonymize_field(&an, "phone", "C-1"));
        assert_ne!(f, p.pseudonymize_field(&an, "email", "C-2"));
        // Domain separation between token kinds.
        assert_ne!(&f[3..], &p.token(&an, "C-1")[3..]);
        // Length prefix: ("ab","c") vs ("a","bc").
        assert_ne!(
            p.pseudonymize_field(&an, "ab", "c"),
            p.pseudonymize_field(&an, "a", "bc")
        );
    }

    #[test]
    fn debug_redacts() {
        let s = format!("{:?}", pz());
        assert!(s.contains("cached_purposes: 2"), "{s}");
    }
}
