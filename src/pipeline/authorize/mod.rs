//! The authorize stage: may this role do this action on this object (a
//! resource or a single field) for this purpose? Deny by default.
//!
//! `policies/model.conf` and the rules (`policies/policy.csv`, or the
//! `casbin_rule` table) are parsed by casbin, the source of truth for the
//! model and role inheritance, then compiled into an immutable
//! [`CompiledPolicy`] (see `table`). The [`Authorizer`] holds the current one
//! behind an `ArcSwap`: requests read it without a lock, and a reload swaps
//! in a fully compiled replacement or, on any error, keeps the old one.
//!
//! Layout: `rules` (rule rows, strict CSV parsing, canonical hash), `model`
//! (casbin model check and enforcer), `table` (compilation and queries).

mod model;
mod rules;
pub mod safety;
pub mod sync;
mod table;
#[cfg(test)]
mod tests;

pub use model::SUPPORTED_MODEL;
pub use rules::{parse_policy_csv, PolicyRule, ANY_PURPOSE};
pub use table::{CompiledPolicy, Explanation, FieldGrant, FieldView};

use crate::domain::PurposeId;
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;

/// Why a model or policy was refused. A refused policy is never partly used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("policy rule #{index} ({rule}): {reason}")]
    Rule {
        index: usize,
        rule: String,
        reason: String,
    },
    #[error("model does not parse: {0}")]
    Model(String),
    #[error("model differs from the supported model: {0}")]
    UnsupportedModel(String),
    #[error("casbin refused the policy: {0}")]
    Casbin(String),
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The answer to one authorization question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that allowed it (`p, support_agent, customer, read,
    /// customer_support`), for the audit event. `None` on a denial.
    pub rule: Option<Arc<str>>,
}

impl Decision {
    pub const DENY: Decision = Decision {
        allowed: false,
        rule: None,
    };
}

/// The object/action vocabulary the HTTP layer is wired to. Compilation does
/// not require it (generated test policies use other names);
/// [`unknown_vocabulary`] lists rules outside it, so a deployment can refuse
/// a policy with a typo that would otherwise grant nothing.
pub mod vocabulary {
    use super::PolicyRule;

    /// Resource-level `(object, act)` pairs: exactly those the audit
    /// action table names, so a permission the gate can check is always
    /// one the trail can record.
    pub fn resource_operations() -> impl Iterator<Item = (&'static str, &'static str)> {
        crate::audit::Action::ALL
            .iter()
            .filter_map(|a| a.operation())
    }

    /// Customer fields, each an object `customer.<field>`.
    pub const CUSTOMER_FIELDS: &[&str] = &[
        "external_id",
        "email",
        "phone",
        "name",
        "birth_date",
        "postcode",
        "city",
        "country",
        "signup_at",
    ];

    /// Actions on a field object, weakest to strongest.
    pub const FIELD_ACTIONS: &[&str] = &["read_pseudonym", "read_masked", "read_clear"];

    /// Whether (obj, act) is in the vocabulary.
    pub fn is_known(obj: &str, act: &str) -> bool {
        if let Some(field) = obj.strip_prefix("customer.") {
            return CUSTOMER_FIELDS.contains(&field) && FIELD_ACTIONS.contains(&act);
        }
        crate::audit::Action::for_operation(obj, act).is_some()
    }

    /// `p` rules whose (obj, act) is outside the vocabulary.
    pub fn unknown_vocabulary(rules: &[PolicyRule]) -> Vec<&PolicyRule> {
        rules
            .iter()
            .filter(|r| {
                r.as_permission()
                    .is_some_and(|(_, obj, act, _)| !is_known(obj, act))
            })
            .collect()
    }
}

/// The live policy: lock-free reads, atomic replacement.
pub struct Authorizer {
    current: ArcSwap<CompiledPolicy>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policy", &*self.current.load())
            .finish()
    }
}

impl Authorizer {
    pub fn new(policy: CompiledPolicy) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// Loads `model.conf` and `policy.csv` (e.g. `policies/…`).
    pub fn from_files(
        model_path: impl AsRef<Path>,
        policy_path: impl AsRef<Path>,
    ) -> Result<Self, PolicyError> {
        CompiledPolicy::from_files(model_path, policy_path).map(Self::new)
    }

    pub fn from_strs(model_text: &str, policy_csv: &str) -> Result<Self, PolicyError> {
        CompiledPolicy::from_strs(model_text, policy_csv).map(Self::new)
    }

    /// From rule rows, e.g. the `casbin_rule` table (see [`PolicyRule::from_row`]).
    pub fn from_rules(model_text: &str, rules: Vec<PolicyRule>) -> Result<Self, PolicyError> {
        CompiledPolicy::compile(model_text, rules).map(Self::new)
    }

    /// The policy in force now. Hold the `Arc` to answer several questions
    /// from one consistent version (e.g. a decision and its field view).
    pub fn current(&self) -> Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Replaces the policy atomically; requests in flight finish on the old one.
    pub fn reload(&self, new: CompiledPolicy) {
        self.current.store(Arc::new(new));
    }

    /// Compiles `rules` under the current model and swaps them in. On any
    /// error the policy in force is left untouched. Returns the new version.
    pub fn reload_rules(&self, rules: Vec<PolicyRule>) -> Result<String, PolicyError> {
        let model = self.current.load().model_text().to_owned();
        let compiled = CompiledPolicy::compile(&model, rules)?;
        let version = compiled.version().to_owned();
        self.reload(compiled);
        Ok(version)
    }

    /// Parses and compiles `policy_csv` under the current model and swaps it
    /// in; a bad file leaves the policy in force untouched.
    pub fn reload_csv(&self, policy_csv: &str) -> Result<String, PolicyError> {
        self.reload_rules(parse_policy_csv(policy_csv)?)
    }

    /// See [`CompiledPolicy::decide`].
    pub fn decide(&self, roles: &[String], obj: &str, act: &str, purpose: &PurposeId) -> Decision {
        self.current.load().decide(roles, obj, act, purpose)
    }

    /// See [`CompiledPolicy::field_view`].
    pub fn field_view(
        &self,
        roles: &[String],
        resource: &str,
        fields: &[&str],
        purpose: &PurposeId,
    ) -> FieldView {
        self.current
            .load()
            .field_view(roles, resource, fields, purpose)
    }

    /// See [`CompiledPolicy::explain`].
    pub fn explain(
        &self,
        roles: &[String],
        obj: &str,
        act: &str,
        purpose: &PurposeId,
    ) -> Explanation {
        self.current.load().explain(roles, obj, act, purpose)
    }

    /// See [`CompiledPolicy::who_can`].
    pub fn who_can(&self, obj: &str, act: &str) -> Vec<(String, Vec<String>)> {
        self.current.load().who_can(obj, act)
    }

    /// The rules in force, for storing or exporting.
    pub fn rules(&self) -> Vec<PolicyRule> {
        self.current.load().rules().to_vec()
    }

    /// Version (hex SHA-256 of the canonical rules) of the policy in force.
    pub fn version(&self) -> String {
        self.current.load().version().to_owned()
    }
}
