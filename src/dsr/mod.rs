//! Data subject rights: access (GDPR Art. 15), rectification (Art. 16),
//! erasure (Art. 17) and portability (Art. 20), answered so that each
//! answer can be proven.
//!
//! This module owns:
//! - [`requests`]: requests as records (kind, who asked, channel, due date,
//!   one extension, status) and their steps, each step tied to the audit
//!   event that records it ([`trail`]);
//! - [`export`]: the access document (one JSON file) and the portability
//!   archive (CSV files in a zip), produced page by page, never a whole
//!   customer in memory, and kept by [`documents`] encrypted under the
//!   customer's own data key until they expire;
//! - [`rectify`]: corrections of profile fields (re-encrypted, blind indexes
//!   recomputed, the audit trail names the fields, never a value);
//! - [`erasure`]: crypto-shredding as a resumable state machine persisted
//!   in the store, with the [`hooks`] other subsystems register to forget a
//!   customer, the signed [`certificate`], the [`suppression`] list and
//!   [`hold`]s that block it.
//!
//! [`actions`] says which steps a request's state admits (the request
//! views list those the caller's policy allows).
//!
//! The HTTP routes are in `http::dsr`, the DPO's commands in `cli::dsr`.

pub mod actions;
pub mod certificate;
pub mod documents;
pub mod erasure;
pub mod export;
pub mod hold;
pub mod hooks;
pub mod rectify;
pub mod requests;
pub mod suppression;
pub mod trail;

use std::sync::Arc;

use crate::audit::Signer;

/// What a data subject asked for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Access,
    Portability,
    Rectification,
    Erasure,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Access,
        Kind::Portability,
        Kind::Rectification,
        Kind::Erasure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Portability => "portability",
            Kind::Rectification => "rectification",
            Kind::Erasure => "erasure",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a request stands. `received`, `in_progress` and `on_hold` are open.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Received,
    InProgress,
    /// A legal hold blocks the erasure; the request stays open.
    OnHold,
    Completed,
    /// Refused, with a reason (Art. 12(4)).
    Refused,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Received,
        Status::InProgress,
        Status::OnHold,
        Status::Completed,
        Status::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Completed => "completed",
            Status::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        matches!(self, Status::Received | Status::InProgress | Status::OnHold)
    }
}

/// Who made the request (a category, never a name).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    DataSubject,
    AuthorizedAgent,
    ParentOrGuardian,
}

impl Requester {
    pub fn as_str(self) -> &'static str {
        match self {
            Requester::DataSubject => "data_subject",
            Requester::AuthorizedAgent => "authorized_agent",
            Requester::ParentOrGuardian => "parent_or_guardian",
        }
    }

    pub fn parse(s: &str) -> Option<Requester> {
        [
            Requester::DataSubject,
            Requester::AuthorizedAgent,
            Requester::ParentOrGuardian,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Through which channel the request arrived.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    WebForm,
    Post,
    Phone,
    InPerson,
    Other,
}

impl Channel {
    const ALL: [Channel; 6] = [
        Channel::Email,
        Channel::WebForm,
        Channel::Post,
        Channel::Phone,
        Channel::InPerson,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::WebForm => "web_form",
            Channel::Post => "post",
            Channel::Phone => "phone",
            Channel::InPerson => "in_person",
            Channel::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a DSR operation could not go ahead. Messages name the rule, never a
/// personal value; `http::dsr` maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum DsrError {
    #[error("no such request")]
    NotFound,
    /// The customer was erased: their old id answers 410.
    #[error("the customer was erased")]
    Erased,
    /// The request is not in a state that allows this (closed, wrong kind,
    /// already extended, a duplicate).
    #[error("{0}")]
    Conflict(&'static str),
    /// The input names something invalid (unknown customer, bad field).
    #[error("{0}")]
    Invalid(String),
    /// A stored ciphertext or data key failed its integrity check.
    #[error("integrity failure")]
    Integrity,
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditUnavailable),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<sqlx::Error> for DsrError {
    fn from(e: sqlx::Error) -> Self {
        DsrError::Store(e.into())
    }
}

impl From<DsrError> for crate::error::ApiError {
    fn from(e: DsrError) -> Self {
        use crate::error::ApiError;
        match e {
            DsrError::NotFound => ApiError::NotFound,
            DsrError::Erased => ApiError::Gone,
            DsrError::Conflict(m) => ApiError::Conflict(m.into()),
            DsrError::Invalid(m) => ApiError::unprocessable(m),
            DsrError::Integrity => ApiError::Integrity,
            DsrError::Audit(_) => ApiError::AuditUnavailable,
            DsrError::Db(e) => ApiError::from(e),
            DsrError::Store(e) => ApiError::Internal(e),
        }
    }
}

/// The running gateway's DSR machinery: the key that signs erasure
/// certificates and the erasure hooks of other subsystems.
pub struct Dsr {
    signer: Signer,
    pub hooks: hooks::ErasureHooks,
}

impl std::fmt::Debug for Dsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsr").finish_non_exhaustive()
    }
}

impl Dsr {
    /// Certificates are signed with the audit signing key, so auditors need
    /// one public key for checkpoints and certificates alike.
    pub fn new(signer: Signer) -> Self {
        Self {
            signer,
            hooks: hooks::ErasureHooks::default(),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

/// A shared handle (kept in the application state).
pub type SharedDsr = Arc<Dsr>;

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// A random public id with a prefix (`dsr_…`, `doc_…`, `t_…`).
pub(crate) fn random_id(prefix: &str) -> Result<String, DsrError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DsrError::Store(anyhow::anyhow!("random number generator failed")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}
