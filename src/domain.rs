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

/// One policy line: `ptype` is `p` (permission: sub, obj, act, purpose) or `g`
/// (role link: member, role). Mirrors a `casbin_rule` row (`ptype`, `v0..v5`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRule {
    pub ptype: String,
    pub values: Vec<String>,
}

impl PolicyRule {
    /// A permission: `sub` may `act` on `obj` for `purpose` (or `*`).
    pub fn p(sub: &str, obj: &str, act: &str, purpose: &str) -> Self {
        Self {
            ptype: "p".into(),
            values: vec![sub.into(), obj.into(), act.into(), purpose.into()],
        }
    }

    /// A role link: `member` inherits every permission of `role`.
    pub fn g(member: &str, role: &str) -> Self {
        Self {
            ptype: "g".into(),
            values: vec![member.into(), role.into()],
        }
    }

    /// Builds a rule from a `casbin_rule` row, dropping the empty trailing
    /// `v` columns a fixed-width table stores.
    pub fn from_row(ptype: &str, columns: &[Option<&str>]) -> Self {
        let mut values: Vec<String> = columns
            .iter()
            .map(|c| c.unwrap_or_default().to_owned())
            .collect();
        while values.last().is_some_and(|v| v.is_empty()) {
            values.pop();
        }
        Self {
            ptype: ptype.to_owned(),
            values,
        }
    }

    /// The line as written in `policy.csv`: `p, sub, obj, act, purpose`.
    pub fn to_csv_line(&self) -> String {
        let mut line = self.ptype.clone();
        for v in &self.values {
            line.push_str(", ");
            line.push_str(v);
        }
        line
    }
}

/// Fields that carry a blind index (an HMAC of the normalized value, for
/// equality look-ups on encrypted fields; `crypto::blind_index` owns the
/// normalization and the keys, `db::customers` the columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlindField {
    /// Trimmed, lowercased (Unicode lowercase).
    Email,
    /// ASCII digits only, with a leading `+` kept if the value starts with one.
    Phone,
}

impl BlindField {
    /// The catalog field name.
    pub fn name(self) -> &'static str {
        match self {
            BlindField::Email => "email",
            BlindField::Phone => "phone",
        }
    }

    /// The blind-indexed field with this catalog name, if any.
    pub fn from_name(name: &str) -> Option<BlindField> {
        match name {
            "email" => Some(BlindField::Email),
            "phone" => Some(BlindField::Phone),
            _ => None,
        }
    }
}
