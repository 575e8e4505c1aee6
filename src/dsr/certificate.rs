//! Erasure certificates: a signed statement that an erasure happened,
//! verifiable offline with the audit public key
//! (`custodian dsr verify-certificate`).
//!
//! The statement names the request, the customer's tombstone (the random
//! token that replaced their id on orders), the id of the data key that was
//! destroyed, the times, what was removed (counts), and the audit events
//! (instance, seq) of every step, so an auditor can find each step in the
//! verified trail. It contains no personal data: no name, e-mail or
//! external id, nothing that identifies the person without the shop's own
//! records.
//!
//! Signature: Ed25519 over `TAG ‖ JSON(statement)`, where the JSON is the
//! statement's fields in declaration order (serde, no floats, so the
//! encoding is canonical). A verifier parses the statement strictly and
//! re-encodes it, so any change to any field breaks the signature.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::audit::{PublicKey, Signer};

/// Domain separation: these bytes start every signed statement.
const TAG: &[u8] = b"custodian.dsr.erasure-certificate.v1\n";

/// The certificate format this build writes and reads.
pub const FORMAT: &str = "custodian.erasure-certificate.v1";

/// Where one step is recorded in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRef {
    pub step: String,
    pub instance: String,
    pub seq: i64,
}

/// What the certificate asserts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub format: String,
    /// The request's public id (`dsr_…`).
    pub request_id: String,
    /// The irreversible token that replaced the customer on orders.
    pub tombstone: String,
    /// Id of the destroyed data key (`dek:v<kek version>:<digest>`), or
    /// `none` when the customer had no personal fields stored.
    pub destroyed_key_id: String,
    /// RFC 3339 times.
    pub received_at: String,
    pub erased_at: String,
    pub issued_at: String,
    /// Records removed or anonymized, by kind.
    pub removed: BTreeMap<String, u64>,
    /// The audit events of the steps, in order.
    pub audit_events: Vec<AuditRef>,
    /// Id of the signing key (as in `custodian audit public-key`).
    pub key_id: String,
}

/// A statement with its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub statement: Statement,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

fn message(statement: &Statement) -> anyhow::Result<Vec<u8>> {
    let mut m = TAG.to_vec();
    serde_json::to_writer(&mut m, statement)?;
    Ok(m)
}

/// Signs `statement` (its `key_id` is set to the signer's).
pub fn sign(signer: &Signer, mut statement: Statement) -> anyhow::Result<Certificate> {
    statement.key_id = signer.public_key().key_id();
    let signature = signer.sign_message(&message(&statement)?);
    Ok(Certificate {
        statement,
        signature: base64::engine::general_purpose::STANDARD.encode(signature),
    })
}

/// Why a certificate does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a certificate: {0}")]
    Malformed(String),
    #[error("unknown certificate format")]
    Format,
    #[error("signed by key {found}, not by the given key {expected}")]
    WrongKey { found: String, expected: String },
    #[error("the signature does not match the statement (changed or forged)")]
    BadSignature,
}

/// Parses and verifies a certificate (JSON text) against `key`.
pub fn verify(text: &str, key: &PublicKey) -> Result<Certificate, VerifyError> {
    let cert: Certificate =
        serde_json::from_str(text).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if cert.statement.format != FORMAT {
        return Err(VerifyError::Format);
    }
    if cert.statement.key_id != key.key_id() {
        return Err(VerifyError::WrongKey {
            found: cert.statement.key_id.clone(),
            expected: key.key_id(),
        });
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(cert.signature.as_bytes())
        .map_err(|_| VerifyError::Malformed("signature: not base64".into()))?;
    let msg = message(&cert.statement).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if key.verify_message(&msg, &signature) {
        Ok(cert)
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            format: FORMAT.into(),
            request_id: "dsr_1".into(),
            tombstone: "t_2".into(),
            destroyed_key_id: "dek:v1:abcd".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            erased_at: "2026-01-02T00:00:00Z".into(),
            issued_at: "2026-01-02T00:00:01Z".into(),
            removed: BTreeMap::from([("events".to_owned(), 3)]),
            audit_events: vec![AuditRef {
                step: "key_destroyed".into(),
                instance: "gw".into(),
                seq: 7,
            }],
            key_id: String::new(),
        }
    }

    #[test]
    fn a_signed_certificate_verifies_and_any_change_breaks_it() {
        let signer = Signer::ephemeral().unwrap();
        let cert = sign(&signer, statement()).unwrap();
        let text = serde_json::to_string_pretty(&cert).unwrap();
        assert_eq!(verify(&text, signer.public_key()).unwrap(), cert);

        let tampered = text.replace("\"seq\": 7", "\"seq\": 8");
        assert_ne!(tampered, text);
        assert_eq!(
            verify(&tampered, signer.public_key()),
            Err(VerifyError::BadSignature)
        );
        let other = Signer::ephemeral().unwrap();
        assert!(matches!(
            verify(&text, other.public_key()),
            Err(VerifyError::WrongKey { .. })
        ));
        let extra = text.replacen('{', "{\"note\": 1,", 1);
        assert!(matches!(
            verify(&extra, signer.public_key()),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn a_checkpoint_signature_does_not_pass_as_a_certificate() {
        let signer = Signer::ephemeral().unwrap();
        let mut cert = sign(&signer, statement()).unwrap();
        let cp = signer.sign("gw", 1, [0; 32], 0);
        cert.signature = base64::engine::general_purpose::STANDARD.encode(cp.signature);
        let text = serde_json::to_string(&cert).unwrap();
        assert_eq!(
            verify(&text, signer.public_key()),
            Err(VerifyError::BadSignature)
        );
    }
}
