//! Key and token tooling for development, tests and operations: generating an
//! Ed25519 key pair, publishing its public key (PEM or JWKS), signing tokens.
//! None of it is on the request path.

use super::config::ACCESS_TOKEN_TYPE;
use super::failure::MintError;
use super::keys::{thumbprint, VerifyKey};
use super::token::TokenClaims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::fmt;
use zeroize::Zeroizing;

/// A freshly generated Ed25519 key pair.
pub struct Ed25519Generated {
    /// PKCS#8 v2 DER of the private key. Secret.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
    /// The raw 32-byte public key.
    pub public_key: [u8; 32],
}

impl fmt::Debug for Ed25519Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Generated")
            .field("pkcs8_der", &"[redacted]")
            .field("kid", &self.kid())
            .finish()
    }
}

impl Ed25519Generated {
    /// RFC 7638 thumbprint: the kid a PEM-loaded copy of this key gets.
    pub fn kid(&self) -> String {
        ed25519_kid(&self.public_key)
    }

    pub fn public_key_pem(&self) -> String {
        ed25519_public_key_pem(&self.public_key)
    }

    /// The private key as a `PRIVATE KEY` PEM block, for a 0600 key file.
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem("PRIVATE KEY", &self.pkcs8_der))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("key generation failed")]
pub struct KeyGenError;

pub fn generate_ed25519_keypair() -> Result<Ed25519Generated, KeyGenError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyGenError)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyGenError)?;
    let public_key: [u8; 32] = pair
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| KeyGenError)?;
    Ok(Ed25519Generated {
        pkcs8_der: Zeroizing::new(pkcs8.as_ref().to_vec()),
        public_key,
    })
}

pub fn ed25519_kid(public_key: &[u8; 32]) -> String {
    thumbprint(&VerifyKey::ed25519(*public_key))
}

/// SubjectPublicKeyInfo PEM (RFC 8410) for an Ed25519 public key.
pub fn ed25519_public_key_pem(public_key: &[u8; 32]) -> String {
    // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(public_key);
    pem("PUBLIC KEY", &der)
}

/// A JWKS document publishing Ed25519 public keys (`kty` OKP, `crv`
/// Ed25519), one per `(kid, public key)`, in the order given. Listing the old
/// and the new key together is how keys rotate.
pub fn ed25519_jwks(keys: &[(&str, [u8; 32])]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, public)| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(public),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// Signs `claims` as an EdDSA token with a PKCS#8 Ed25519 private key (v1 as
/// written by OpenSSL, or v2 as generated here).
pub fn sign_eddsa_token(
    pkcs8_der: &[u8],
    kid: Option<&str>,
    claims: &TokenClaims,
) -> Result<String, MintError> {
    let pair =
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der).map_err(|_| MintError::Signing)?;
    let signing_input = signing_input("EdDSA", kid, claims)?;
    let signature = pair.sign(signing_input.as_bytes());
    Ok(finish(signing_input, signature.as_ref()))
}

pub(crate) fn sign_hs256(key: &hmac::Key, claims: &TokenClaims) -> Result<String, MintError> {
    let signing_input = signing_input("HS256", None, claims)?;
    let tag = hmac::sign(key, signing_input.as_bytes());
    Ok(finish(signing_input, tag.as_ref()))
}

fn signing_input(alg: &str, kid: Option<&str>, claims: &TokenClaims) -> Result<String, MintError> {
    let header = match kid {
        Some(kid) => serde_json::json!({ "alg": alg, "typ": ACCESS_TOKEN_TYPE, "kid": kid }),
        None => serde_json::json!({ "alg": alg, "typ": ACCESS_TOKEN_TYPE }),
    };
    let payload = serde_json::to_vec(claims).map_err(|_| MintError::Signing)?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

fn finish(mut signing_input: String, signature: &[u8]) -> String {
    signing_input.push('.');
    signing_input.push_str(&URL_SAFE_NO_PAD.encode(signature));
    signing_input
}

fn pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Parses a TTL such as `90s`, `15m`, `1h`, `7d` (or plain seconds).
pub fn parse_ttl(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at_checked(i)?,
        None => (text, "s"),
    };
    let value: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    value.checked_mul(scale).map(std::time::Duration::from_secs)
}
