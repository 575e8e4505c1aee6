//! The Ed25519 key that signs checkpoints, and the public key auditors hold.
//!
//! The private key lives in a PKCS#8 file (`audit.signing_key_file`, refused
//! when readable by group or others); in development one is generated into
//! `data_dir/audit-signing.pk8`. Auditors get the public key as a PEM
//! `PUBLIC KEY` block (SubjectPublicKeyInfo, RFC 8410) or as 64 hex digits;
//! both are accepted back by [`PublicKey::parse`]. A key's id is the hex of
//! the first 8 bytes of SHA-256 of the raw 32-byte public key.

use anyhow::Context;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use super::event::Hash;
use crate::config::{Config, Mode};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the
/// 32 raw key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Domain separation for checkpoint signatures.
const CHECKPOINT_TAG: &[u8] = b"custodian.audit.checkpoint.v1";

/// A signed checkpoint: "the chain of `instance` had hash `hash` at `seq`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub instance: String,
    pub seq: i64,
    pub hash: Hash,
    pub signed_at: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The bytes an Ed25519 checkpoint signature covers:
/// `tag || u32 len || instance || i64 seq || hash[32] || i64 signed_at`
/// (integers big-endian).
pub fn checkpoint_message(instance: &str, seq: i64, hash: &Hash, signed_at: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_TAG.len() + instance.len() + 52);
    m.extend_from_slice(CHECKPOINT_TAG);
    m.extend_from_slice(
        &u32::try_from(instance.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    m.extend_from_slice(instance.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&signed_at.to_be_bytes());
    m
}

/// The checkpoint signing key. `Debug` shows the key id only.
pub struct Signer {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(key_id={}, <redacted>)", self.public.key_id())
    }
}

impl Signer {
    /// Loads the configured key, or in development generates one (with a
    /// loud warning). Production without a key was refused by validation;
    /// refused here too in case validation was skipped.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if let Some(path) = &config.audit.signing_key_file {
            return Self::load(path).with_context(|| {
                format!("audit.signing_key_file {}: cannot load", path.display())
            });
        }
        if config.mode == Mode::Production {
            anyhow::bail!("audit.signing_key_file: production mode needs an audit signing key");
        }
        let path = dev_key_path(config);
        if path.exists() {
            return Self::load(&path)
                .with_context(|| format!("development audit key {}", path.display()));
        }
        crate::db::prepare_data_dir(&config.data_dir)?;
        let signer = Self::generate_into(&path)?;
        tracing::warn!(
            path = %path.display(),
            key_id = signer.public.key_id(),
            "DEVELOPMENT MODE: generated an audit signing key; checkpoints signed with it \
             prove nothing to an auditor. Set audit.signing_key_file in production."
        );
        Ok(signer)
    }

    /// Reads a PKCS#8 Ed25519 key (v1 as written by `openssl genpkey
    /// -algorithm ed25519`, or v2), refusing a file others can read.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let der = crate::secret::read_private_file(path)?;
        let der = pem_or_der(&der, "PRIVATE KEY")?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 key"))?;
        Ok(Self::from_pair(pair))
    }

    /// Generates a key and writes its PKCS#8 DER to `path` with mode 0600.
    pub fn generate_into(path: &Path) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
        let der = Zeroizing::new(doc.as_ref().to_vec());
        crate::secret::write_new_private_file(path, &der)?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| anyhow::anyhow!("generated key does not parse"))?;
        Ok(Self::from_pair(pair))
    }

    /// An in-memory key (tests, benches).
    pub fn ephemeral() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|_| anyhow::anyhow!("generated key does not parse"))?;
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let raw: [u8; 32] = pair.public_key().as_ref().try_into().unwrap_or([0; 32]);
        Self {
            pair,
            public: PublicKey(raw),
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, instance: &str, seq: i64, hash: Hash, signed_at: i64) -> Checkpoint {
        let msg = checkpoint_message(instance, seq, &hash, signed_at);
        Checkpoint {
            instance: instance.to_owned(),
            seq,
            hash,
            signed_at,
            key_id: self.public.key_id(),
            signature: self.pair.sign(&msg).as_ref().to_vec(),
        }
    }
}

/// Domain tag of export manifest signatures (never a checkpoint's).
const MANIFEST_TAG: &[u8] = b"custodian.audit.manifest.v1";

impl Signer {
    /// Signs an export manifest's canonical bytes (see `export::Manifest`).
    pub fn sign_manifest(&self, body: &[u8]) -> Vec<u8> {
        let mut msg = MANIFEST_TAG.to_vec();
        msg.extend_from_slice(body);
        self.pair.sign(&msg).as_ref().to_vec()
    }
}

impl PublicKey {
    /// Whether `signature` is this key's signature of a manifest `body`.
    pub fn verify_manifest(&self, body: &[u8], signature: &[u8]) -> bool {
        let mut msg = MANIFEST_TAG.to_vec();
        msg.extend_from_slice(body);
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&msg, signature)
            .is_ok()
    }
}

/// Where development mode keeps its generated key.
pub fn dev_key_path(config: &Config) -> PathBuf {
    config.data_dir.join("audit-signing.pk8")
}

/// An Ed25519 public key (32 raw bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    pub fn key_id(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        hex::encode(d.as_ref().get(..8).unwrap_or_default())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// PEM `PUBLIC KEY` (SPKI), readable by `openssl pkey -pubin`.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Accepts the PEM form, or 64 hex digits.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let t = text.trim();
        if t.len() == 64 {
            if let Ok(bytes) = hex::decode(t) {
                if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(Self(raw));
                }
            }
        }
        let der = pem_or_der(t.as_bytes(), "PUBLIC KEY")?;
        let raw = der
            .strip_prefix(&SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .context("not an Ed25519 public key (PEM PUBLIC KEY or 64 hex digits)")?;
        Ok(Self(raw))
    }

    pub fn verify(&self, cp: &Checkpoint) -> bool {
        let msg = checkpoint_message(&cp.instance, cp.seq, &cp.hash, cp.signed_at);
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&msg, &cp.signature)
            .is_ok()
    }
}

/// Decodes a PEM block with `label`, or returns the bytes as DER.
fn pem_or_der(bytes: &[u8], label: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let Some(text) = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains(&begin))
    else {
        return Ok(Zeroizing::new(bytes.to_vec()));
    };
    let body: Zeroizing<String> = Zeroizing::new(
        text.lines()
            .skip_while(|l| !l.contains(&begin))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .map(str::trim)
            .collect(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| anyhow::anyhow!("bad base64 in the {label} block"))
}

// --- other signed statements (erasure certificates, src/dsr/certificate.rs) ---

impl Signer {
    /// Signs an arbitrary message. The caller puts its own domain-separation
    /// tag first, so a signature made for one kind of statement can never
    /// pass as another (checkpoints use theirs, see [`checkpoint_message`]).
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl PublicKey {
    /// Verifies a signature made by [`Signer::sign_message`].
    pub fn verify_message(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_public_key_round_trip() {
        let s = Signer::ephemeral().unwrap();
        let cp = s.sign("gw", 10, [7; 32], 123);
        assert!(s.public_key().verify(&cp));
        let mut bad = cp.clone();
        bad.seq = 11;
        assert!(!s.public_key().verify(&bad));
        let pem = s.public_key().to_pem();
        assert_eq!(PublicKey::parse(&pem).unwrap(), *s.public_key());
        assert_eq!(
            PublicKey::parse(&s.public_key().to_hex()).unwrap(),
            *s.public_key()
        );
        assert_eq!(s.public_key().key_id().len(), 16);
        assert!(!format!("{s:?}").contains(&s.public_key().to_hex()));
    }

    #[test]
    fn generated_key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pk8");
        let s = Signer::generate_into(&path).unwrap();
        let again = Signer::load(&path).unwrap();
        assert_eq!(s.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Signer::load(&path).unwrap_err();
            assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
        }
    }
}
