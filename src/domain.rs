//! Domain types shared by every pipeline stage: who is asking ([`Principal`]),
//! for what ([`PurposeId`]), and in which form a field may leave ([`Treatment`]).
//!
//! Values are parsed once at the edge into these types; inner code never
//! re-validates raw strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// An authenticated caller: the verified `sub` and `roles` claims of a JWT.
///
/// Deliberately carries no token material, so it can be logged by id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim (a service name or a person's account id; opaque to us).
    pub sub: String,
    /// The `roles` claim, deduplicated and sorted.
    pub roles: Arc<[String]>,
    /// Expiry (`exp`) as seconds since the Unix epoch.
    pub expires_at: i64,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("sub", &self.sub)
            .field("roles", &self.roles)
            .finish()
    }
}

/// A purpose id that exists in the purpose catalog (`policies/purposes.toml`).
/// Only the purpose stage constructs it, after checking the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct PurposeId(pub String);

impl PurposeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PurposeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How one field leaves the gateway. Ordered from weakest to strongest, so
/// `max()` over the treatments a caller is allowed gives the one to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// The field is removed from the response.
    Dropped,
    /// Replaced by a purpose-scoped pseudonym (HMAC token).
    Pseudonym,
    /// Shown in the catalog's mask format (`j***@example.com`).
    Masked,
    /// Decrypted and shown as stored.
    Clear,
}

impl Treatment {
    /// The casbin action that grants this treatment on a field object.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Treatment::Dropped => None,
            Treatment::Pseudonym => Some("read_pseudonym"),
            Treatment::Masked => Some("read_masked"),
            Treatment::Clear => Some("read_clear"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Treatment::Dropped => "dropped",
            Treatment::Pseudonym => "pseudonym",
            Treatment::Masked => "masked",
            Treatment::Clear => "clear",
        }
    }
}
