//! Verification keys: loading them from a JWKS or PEM file, choosing one for a
//! token (among the file's keys, then those fetched from `auth.jwks_url`,
//! see `jwks`), and checking a signature with it through
//! `jsonwebtoken::decode` (which verifies with `ring`).
//!
//! Every key is bound to exactly one algorithm when it is loaded, and a token
//! is only checked with a key whose algorithm equals the token's `alg`. This
//! is what rules out algorithm confusion (an RSA public key used as an HMAC
//! secret): no code path hands asymmetric key bytes to HMAC.

use super::failure::{AuthConfigError, AuthFailure};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, Validation};
use ring::digest;
use ring::signature::RsaPublicKeyComponents;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

const SETTING: &str = "auth.public_keys_file";

/// A signature algorithm this gateway can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    EdDsa,
    Rs256,
    Hs256,
}

impl Algorithm {
    /// Parses the JOSE name exactly (`alg` values are case-sensitive).
    pub fn from_jose(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Algorithm::EdDsa),
            "RS256" => Some(Algorithm::Rs256),
            "HS256" => Some(Algorithm::Hs256),
            _ => None,
        }
    }

    pub fn as_jose(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Rs256 => "RS256",
            Algorithm::Hs256 => "HS256",
        }
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// The public material of a key (what its thumbprint is computed from).
pub(crate) enum Material {
    Ed25519([u8; 32]),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// The development secret: never shown, never thumbprinted.
    Hmac,
}

/// One verification key, already bound to its algorithm: its material, and
/// the `jsonwebtoken` key and validation built once at load.
pub(crate) struct VerifyKey {
    pub(crate) material: Material,
    decoding: DecodingKey,
    validation: Validation,
}

impl VerifyKey {
    pub(crate) fn ed25519(public: [u8; 32]) -> Self {
        // jsonwebtoken's "Ed DER" is the raw 32-byte key ring verifies with.
        let decoding = DecodingKey::from_ed_der(&public);
        Self::new(Material::Ed25519(public), decoding)
    }

    pub(crate) fn rsa(components: RsaPublicKeyComponents<Vec<u8>>) -> Self {
        let decoding = DecodingKey::from_rsa_raw_components(&components.n, &components.e);
        Self::new(Material::Rsa(components), decoding)
    }

    pub(crate) fn hmac(secret: &[u8]) -> Self {
        Self::new(Material::Hmac, DecodingKey::from_secret(secret))
    }

    fn new(material: Material, decoding: DecodingKey) -> Self {
        let alg = match material {
            Material::Ed25519(_) => Algorithm::EdDsa,
            Material::Rsa(_) => Algorithm::Rs256,
            Material::Hmac => Algorithm::Hs256,
        };
        // Signature only: the claims are checked by `token::check_claims`
        // against the injected clock (jsonwebtoken would read the system
        // clock), so none of jsonwebtoken's claim checks run.
        let mut validation = Validation::new(alg.to_jsonwebtoken());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        VerifyKey {
            material,
            decoding,
            validation,
        }
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Ed25519(_) => Algorithm::EdDsa,
            Material::Rsa(_) => Algorithm::Rs256,
            Material::Hmac => Algorithm::Hs256,
        }
    }

    /// Verifies the signature of the compact JWS `token` with this key (and
    /// only for this key's algorithm) and decodes its payload. Called after
    /// the strict header checks (`token::parse_header`) passed. HMAC
    /// comparison is constant-time inside jsonwebtoken (`ring`).
    pub(crate) fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, AuthFailure> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidKeyFormat => AuthFailure::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    AuthFailure::AlgorithmNotAllowed
                }
                // Valid JSON with missing or mistyped claims.
                ErrorKind::Json(json) if json.classify() == serde_json::error::Category::Data => {
                    AuthFailure::InvalidClaims
                }
                _ => AuthFailure::Malformed,
            })
    }
}

/// A selected key: one of the file's (borrowed for the store's life) or
/// one of the last JWKS fetch (shared, so a concurrent refresh cannot pull
/// it from under a verification).
pub(crate) enum KeyRef<'a> {
    Local(&'a VerifyKey),
    Fetched(std::sync::Arc<VerifyKey>),
}

impl std::ops::Deref for KeyRef<'_> {
    type Target = VerifyKey;
    fn deref(&self) -> &VerifyKey {
        match self {
            KeyRef::Local(key) => key,
            KeyRef::Fetched(key) => key,
        }
    }
}

/// All keys of one authenticator, looked up by `kid` in a `HashMap`: the
/// key file's first (a `kid` in both names the file's key), then the JWKS
/// URL's.
pub(crate) struct KeyStore {
    by_kid: HashMap<String, VerifyKey>,
    pub(crate) jwks: Option<std::sync::Arc<super::jwks::JwksSource>>,
    /// The kid to use when a token names none: only set when exactly one key
    /// of that algorithm exists, so a missing `kid` is never ambiguous.
    sole_eddsa: Option<String>,
    sole_rs256: Option<String>,
    dev_hmac: Option<VerifyKey>,
}

impl KeyStore {
    pub(crate) fn new(
        public: Vec<(String, VerifyKey)>,
        jwks: Option<std::sync::Arc<super::jwks::JwksSource>>,
        dev_secret: Option<&[u8]>,
    ) -> Result<Self, AuthConfigError> {
        let mut by_kid = HashMap::with_capacity(public.len());
        for (kid, key) in public {
            if by_kid.contains_key(&kid) {
                return Err(AuthConfigError::invalid(
                    SETTING,
                    format!("duplicate kid {kid:?}"),
                ));
            }
            by_kid.insert(kid, key);
        }
        let sole = |alg: Algorithm| {
            let mut kids = by_kid.iter().filter(|(_, k)| k.algorithm() == alg);
            match (kids.next(), kids.next()) {
                (Some((kid, _)), None) => Some(kid.clone()),
                _ => None,
            }
        };
        let sole_eddsa = sole(Algorithm::EdDsa);
        let sole_rs256 = sole(Algorithm::Rs256);
        Ok(KeyStore {
            by_kid,
            jwks,
            sole_eddsa,
            sole_rs256,
            dev_hmac: dev_secret.map(VerifyKey::hmac),
        })
    }

    pub(crate) fn public_key_count(&self) -> usize {
        self.by_kid.len()
    }

    pub(crate) fn has_dev_key(&self) -> bool {
        self.dev_hmac.is_some()
    }

    /// True when a key of `alg` is, or may be after a JWKS fetch, here.
    pub(crate) fn has_algorithm(&self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::Hs256 => self.dev_hmac.is_some(),
            _ => self.jwks.is_some() || self.by_kid.values().any(|k| k.algorithm() == alg),
        }
    }

    /// Picks the key for a token whose (allowlisted) `alg` and optional `kid`
    /// are given. A token without `kid` can only use the file's sole key of
    /// its algorithm: JWKS keys are always chosen by `kid`.
    pub(crate) fn select(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<KeyRef<'_>, AuthFailure> {
        if alg == Algorithm::Hs256 {
            // A kid naming one of our asymmetric keys on an HS256 token is the
            // classic confusion attempt: refuse it outright.
            let asymmetric = |kid: &str| {
                self.by_kid.contains_key(kid) || self.jwks.as_ref().is_some_and(|j| j.contains(kid))
            };
            if kid.is_some_and(asymmetric) {
                return Err(AuthFailure::AlgorithmNotAllowed);
            }
            return self
                .dev_hmac
                .as_ref()
                .map(KeyRef::Local)
                .ok_or(AuthFailure::AlgorithmNotAllowed);
        }
        let kid = match kid {
            Some(kid) => kid,
            None => match alg {
                Algorithm::EdDsa => self.sole_eddsa.as_deref(),
                _ => self.sole_rs256.as_deref(),
            }
            .ok_or(AuthFailure::UnknownKey)?,
        };
        let Some(key) = self.by_kid.get(kid) else {
            return match &self.jwks {
                Some(jwks) => super::jwks::select(jwks, alg, kid).map(KeyRef::Fetched),
                None => Err(AuthFailure::UnknownKey),
            };
        };
        if key.algorithm() != alg {
            return Err(AuthFailure::AlgorithmNotAllowed);
        }
        Ok(KeyRef::Local(key))
    }
}

/// Reads a JWKS or PEM key file. Keys whose algorithm is not allowlisted are
/// left out (they could never verify anything).
pub(crate) fn load_public_keys(
    path: &Path,
    allowed: impl Fn(Algorithm) -> bool,
) -> Result<Vec<(String, VerifyKey)>, AuthConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Io {
        setting: SETTING,
        path: path.display().to_string(),
        source,
    })?;
    let keys = parse_public_keys(&text)?;
    if keys.is_empty() {
        return Err(AuthConfigError::invalid(
            SETTING,
            "contains no signing keys",
        ));
    }
    let kept: Vec<_> = keys
        .into_iter()
        .filter(|(_, k)| allowed(k.algorithm()))
        .collect();
    if kept.is_empty() {
        return Err(AuthConfigError::invalid(
            SETTING,
            "none of its keys uses an algorithm in auth.algorithms",
        ));
    }
    Ok(kept)
}

/// Parses key file contents: JSON (starting with `{`) is a JWKS, anything
/// else must be PEM.
pub(crate) fn parse_public_keys(text: &str) -> Result<Vec<(String, VerifyKey)>, AuthConfigError> {
    if text.trim_start().starts_with('{') {
        parse_jwks(SETTING, text)
    } else {
        parse_pem(text)
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    n: Option<String>,
    e: Option<String>,
    /// Present only in private JWKs; its presence means the wrong file.
    d: Option<serde_json::Value>,
}

/// Parses a JWKS document (the key file's, or one fetched from the URL
/// that `setting` names).
pub(crate) fn parse_jwks(
    setting: &'static str,
    text: &str,
) -> Result<Vec<(String, VerifyKey)>, AuthConfigError> {
    let jwks: Jwks = serde_json::from_str(text)
        .map_err(|e| AuthConfigError::invalid(setting, format!("invalid JWKS document: {e}")))?;
    let mut out = Vec::with_capacity(jwks.keys.len());
    for (index, jwk) in jwks.keys.into_iter().enumerate() {
        let bad =
            |msg: &str| AuthConfigError::invalid(setting, format!("JWKS key #{index}: {msg}"));
        if jwk.d.is_some() {
            return Err(bad(
                "contains private key material; publish public keys only",
            ));
        }
        // Encryption keys may share a published JWKS; they never verify tokens.
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let key = match jwk.kty.as_str() {
            "OKP" => {
                if jwk.crv.as_deref() != Some("Ed25519") {
                    return Err(bad("OKP key must have crv \"Ed25519\""));
                }
                let x = decode_b64url(jwk.x.as_deref()).ok_or_else(|| bad("invalid \"x\""))?;
                VerifyKey::ed25519(x.try_into().map_err(|_| bad("\"x\" must be 32 bytes"))?)
            }
            "RSA" => {
                let n = decode_b64url(jwk.n.as_deref()).ok_or_else(|| bad("invalid \"n\""))?;
                let e = decode_b64url(jwk.e.as_deref()).ok_or_else(|| bad("invalid \"e\""))?;
                rsa_key(n, e).map_err(bad)?
            }
            "oct" => {
                return Err(bad(
                    "symmetric (oct) keys are not accepted from the key file",
                ))
            }
            other => return Err(bad(&format!("unsupported kty {other:?}"))),
        };
        if let Some(alg) = &jwk.alg {
            if Algorithm::from_jose(alg) != Some(key.algorithm()) {
                return Err(bad(&format!("alg {alg:?} does not match the key type")));
            }
        }
        let kid = match jwk.kid {
            Some(kid) if !kid.is_empty() => kid,
            Some(_) => return Err(bad("empty kid")),
            None => thumbprint(&key),
        };
        out.push((kid, key));
    }
    Ok(out)
}

fn decode_b64url(value: Option<&str>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?).ok()
}

fn parse_pem(text: &str) -> Result<Vec<(String, VerifyKey)>, AuthConfigError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| AuthConfigError::invalid(SETTING, format!("invalid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(AuthConfigError::invalid(
            SETTING,
            "not a JWKS document or PEM file",
        ));
    }
    let mut out = Vec::new();
    for block in blocks {
        let der = block.contents();
        let key = match block.tag() {
            "PUBLIC KEY" => parse_spki(der),
            "RSA PUBLIC KEY" => parse_pkcs1_rsa(der),
            l if l.contains("PRIVATE") => Err("contains a private key; publish public keys only"),
            _ => Err("unsupported PEM block (expected PUBLIC KEY or RSA PUBLIC KEY)"),
        }
        .map_err(|m| AuthConfigError::invalid(SETTING, format!("PEM block {}: {m}", out.len())))?;
        out.push((thumbprint(&key), key));
    }
    Ok(out)
}

const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// SubjectPublicKeyInfo (RFC 5280) for Ed25519 (RFC 8410) or RSA.
fn parse_spki(der: &[u8]) -> Result<VerifyKey, &'static str> {
    let err = "malformed SubjectPublicKeyInfo";
    let mut input = der;
    let spki = expect_tlv(&mut input, 0x30).ok_or(err)?;
    if !input.is_empty() {
        return Err(err);
    }
    let mut spki = spki;
    let mut alg_id = expect_tlv(&mut spki, 0x30).ok_or(err)?;
    let oid = expect_tlv(&mut alg_id, 0x06).ok_or(err)?;
    let bits = expect_tlv(&mut spki, 0x03).ok_or(err)?;
    let key_bytes = match bits.split_first() {
        Some((0, rest)) => rest,
        _ => return Err(err),
    };
    if oid == OID_ED25519 {
        let public: [u8; 32] = key_bytes
            .try_into()
            .map_err(|_| "Ed25519 key must be 32 bytes")?;
        Ok(VerifyKey::ed25519(public))
    } else if oid == OID_RSA_ENCRYPTION {
        parse_pkcs1_rsa(key_bytes)
    } else {
        Err("unsupported key type (expected Ed25519 or RSA)")
    }
}

/// PKCS#1 RSAPublicKey: SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
fn parse_pkcs1_rsa(der: &[u8]) -> Result<VerifyKey, &'static str> {
    let err = "malformed RSA public key";
    let mut input = der;
    let mut seq = expect_tlv(&mut input, 0x30).ok_or(err)?;
    let n = expect_tlv(&mut seq, 0x02).ok_or(err)?;
    let e = expect_tlv(&mut seq, 0x02).ok_or(err)?;
    if !seq.is_empty() || !input.is_empty() {
        return Err(err);
    }
    rsa_key(n.to_vec(), e.to_vec())
}

fn rsa_key(n: Vec<u8>, e: Vec<u8>) -> Result<VerifyKey, &'static str> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    // `n` has no leading zero byte now, so its first byte fixes the bit length.
    let n_bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(2048..=8192).contains(&n_bits) {
        return Err("RSA modulus must be 2048 to 8192 bits");
    }
    if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) {
        return Err("RSA exponent must be odd and fit in 64 bits");
    }
    Ok(VerifyKey::rsa(RsaPublicKeyComponents { n, e }))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

/// Reads one DER TLV with the expected tag, advancing `input`.
fn expect_tlv<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&len0, mut rest) = rest.split_first()?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let count = usize::from(len0 & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (value, after) = rest.split_at_checked(len)?;
    *input = after;
    Some(value)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` a PEM key gets,
/// which any signer can compute from the public key alone.
pub(crate) fn thumbprint(key: &VerifyKey) -> String {
    let canonical = match &key.material {
        Material::Ed25519(x) => format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(x)
        ),
        Material::Rsa(c) => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&c.e),
            URL_SAFE_NO_PAD.encode(&c.n)
        ),
        // Never reached for file keys; hashing a secret into a kid would leak
        // nothing useful, but there is no reason to do it either.
        Material::Hmac => return "dev-hs256".to_owned(),
    };
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}
