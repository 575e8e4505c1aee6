//! HKDF-SHA256 (RFC 5869) for the 32-byte keys of the key hierarchy, over
//! `ring::hkdf`.
//!
//! This module owns the one place where `ring::hkdf`'s fallible API meets
//! the key hierarchy: every key derived here is 32 bytes, which is
//! `HashLen`, so `expand` and `fill` cannot fail (they fail only above
//! 255 × HashLen or on a length mismatch). Callers get infallible methods
//! instead of carrying an impossible error.
//!
//! The derived bytes are those of the hand-written single-block expand
//! this replaced (`T(1) = HMAC(PRK, info ‖ 0x01)`); a test pins that, so
//! data sealed under keys derived before the switch still opens.

use ring::hkdf;
use zeroize::Zeroizing;

/// Fixed HKDF salt for the master secret. A constant salt is fine here (the
/// master is already uniformly random); it only separates us from other uses.
pub const MASTER_SALT: &[u8] = b"custodian hkdf salt v1";

/// The output length of every derivation: one SHA-256 block.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// A pseudorandom key (HKDF-Extract output).
pub struct Prk(hkdf::Prk);

impl Prk {
    /// HKDF-Extract: `PRK = HMAC(salt, ikm)`.
    pub fn extract(salt: &[u8], ikm: &[u8]) -> Prk {
        Prk(hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm))
    }

    /// Uses 32 uniformly random bytes directly as a PRK (the "skip extract"
    /// case of RFC 5869 §3.3), for keys that were themselves derived.
    pub fn from_okm(okm: &[u8; 32]) -> Prk {
        Prk(hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, okm))
    }

    /// HKDF-Expand with `L = 32`; `info` is the concatenation of `info_parts`.
    // The one `expect`: ring's failure cases (L > 255 × HashLen, a buffer
    // of another length) are ruled out by the types here.
    #[allow(clippy::expect_used)]
    pub fn expand32(&self, info_parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.0
            .expand(info_parts, Len32)
            .and_then(|okm| okm.fill(&mut out[..]))
            // L = 32 ≤ 255 × 32 and the buffer is exactly L: ring's only
            // failure cases cannot occur.
            .expect("HKDF-Expand of one block cannot fail");
        out
    }
}

impl std::fmt::Debug for Prk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prk(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::hmac;

    /// The single-block expand this module computed by hand before it used
    /// `ring::hkdf`: keys derived then must come out the same now.
    fn hand_written_expand(prk: &[u8], info_parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, prk));
        for part in info_parts {
            ctx.update(part);
        }
        ctx.update(&[1u8]);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    #[test]
    fn derives_the_same_bytes_as_the_previous_hand_written_expand() {
        let ikm = [7u8; 32];
        let info: &[&[u8]] = &[b"custodian kek v", b"3"];
        let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, MASTER_SALT), &ikm);
        assert_eq!(
            *Prk::extract(MASTER_SALT, &ikm).expand32(info),
            hand_written_expand(prk.as_ref(), info)
        );
        // The skip-extract path: the 32 bytes are the PRK itself.
        let okm = [9u8; 32];
        assert_eq!(
            *Prk::from_okm(&okm).expand32(&[b"custodian pseudonym", b"x"]),
            hand_written_expand(&okm, &[b"custodian pseudonym", b"x"])
        );
    }

    #[test]
    fn rfc5869_test_case_1_first_block() {
        // RFC 5869 A.1 (L = 42); the first 32 bytes are T(1).
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let okm = Prk::extract(&salt, &ikm).expand32(&[&info]);
        assert_eq!(
            hex::encode(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }
}
