//! HKDF-SHA256 (RFC 5869) for single-block (32-byte) outputs.
//!
//! Why not `ring::hkdf` directly: its `expand` is fallible (for lengths we
//! never ask for) and its PRK cannot be kept as an HMAC key, so every call
//! site would carry an impossible error. For `L = HashLen` HKDF-Expand is
//! exactly one HMAC, `T(1) = HMAC(PRK, info ‖ 0x01)`, which we compute with
//! `ring::hmac`. A test checks byte equality against `ring::hkdf`.

use ring::hmac;
use zeroize::Zeroizing;

/// Fixed HKDF salt for the master secret. A constant salt is fine here (the
/// master is already uniformly random); it only separates us from other uses.
pub const MASTER_SALT: &[u8] = b"custodian hkdf salt v1";

/// A pseudorandom key (HKDF-Extract output), held as an HMAC key.
pub struct Prk(hmac::Key);

impl Prk {
    /// HKDF-Extract: `PRK = HMAC(salt, ikm)`.
    pub fn extract(salt: &[u8], ikm: &[u8]) -> Prk {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
        Prk(hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()))
    }

    /// Uses 32 uniformly random bytes directly as a PRK (the "skip extract"
    /// case of RFC 5869 §3.3), for keys that were themselves derived.
    pub fn from_okm(okm: &[u8; 32]) -> Prk {
        Prk(hmac::Key::new(hmac::HMAC_SHA256, okm))
    }

    /// HKDF-Expand with `L = 32`; `info` is the concatenation of `info_parts`.
    pub fn expand32(&self, info_parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in info_parts {
            ctx.update(part);
        }
        ctx.update(&[1u8]);
        let tag = ctx.sign();
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
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
    use ring::hkdf;

    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }

    #[test]
    fn matches_ring_hkdf() {
        let ikm = [7u8; 32];
        let info: &[&[u8]] = &[b"custodian kek v", b"3"];
        let ours = Prk::extract(MASTER_SALT, &ikm).expand32(info);

        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, MASTER_SALT).extract(&ikm);
        let okm = prk.expand(info, Len32).unwrap();
        let mut theirs = [0u8; 32];
        okm.fill(&mut theirs).unwrap();
        assert_eq!(*ours, theirs);
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
