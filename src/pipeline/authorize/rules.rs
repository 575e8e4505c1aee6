//! Policy rules as data: the `PolicyRule` row (the shape of a `casbin_rule`
//! table row), strict parsing of `policy.csv`, and the canonical text and hash
//! used for export and change detection.
//!
//! Parsing is stricter than casbin's own CSV reader, which skips or
//! half-loads lines it does not understand. Here any bad line refuses the
//! whole file: a policy that is partly loaded is a policy nobody reviewed.

use super::PolicyError;
use ring::digest;
use std::collections::HashSet;
use std::fmt;

/// Longest value (role, object, action or purpose) we accept in a rule.
const MAX_VALUE_LEN: usize = 128;

/// The purpose value that matches any request purpose (see `model.conf`).
pub const ANY_PURPOSE: &str = "*";

pub use crate::domain::PolicyRule;

impl PolicyRule {
    /// Checks the rule against the shape `model.conf` defines and the value
    /// charset. Returns the reason on failure.
    pub fn validate(&self) -> Result<(), String> {
        let arity = match self.ptype.as_str() {
            "p" => 4,
            "g" => 2,
            other => return Err(format!("unsupported rule type {other:?} (only p and g)")),
        };
        if self.values.len() != arity {
            return Err(format!(
                "{} rule needs {arity} values, found {}",
                self.ptype,
                self.values.len()
            ));
        }
        for (i, v) in self.values.iter().enumerate() {
            // Only a permission's purpose (4th value) may be the wildcard; a
            // `*` anywhere else would be compared literally by the matcher and
            // mean something nobody intended.
            let wildcard_ok = self.ptype == "p" && i == 3;
            if v == ANY_PURPOSE && wildcard_ok {
                continue;
            }
            validate_value(v)?;
        }
        Ok(())
    }

    /// For a `p` rule: (sub, obj, act, purpose).
    pub(super) fn as_permission(&self) -> Option<(&str, &str, &str, &str)> {
        match (self.ptype.as_str(), self.values.as_slice()) {
            ("p", [s, o, a, p]) => Some((s, o, a, p)),
            _ => None,
        }
    }

    /// For a `g` rule: (member, role).
    pub(super) fn as_link(&self) -> Option<(&str, &str)> {
        match (self.ptype.as_str(), self.values.as_slice()) {
            ("g", [m, r]) => Some((m, r)),
            _ => None,
        }
    }
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_csv_line())
    }
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("empty value".into());
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(format!("value longer than {MAX_VALUE_LEN} bytes"));
    }
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'@'));
    if !ok {
        return Err(format!("value {v:?} must match [A-Za-z0-9_.:@-]+"));
    }
    Ok(())
}

/// Parses `policy.csv`. Blank lines and lines starting with `#` are skipped;
/// every other line must be a valid `p` or `g` rule, or the whole text is
/// refused with the first bad line number. Exact duplicates are dropped
/// (casbin stores rules as a set).
pub fn parse_policy_csv(text: &str) -> Result<Vec<PolicyRule>, PolicyError> {
    let mut rules = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(',').map(str::trim);
        let ptype = parts.next().unwrap_or_default().to_owned();
        let rule = PolicyRule {
            ptype,
            values: parts.map(str::to_owned).collect(),
        };
        rule.validate().map_err(|reason| PolicyError::Line {
            line: n + 1,
            reason,
        })?;
        rules.push(rule);
    }
    Ok(dedup(rules))
}

/// Validates rules from any source (CSV, database) and drops duplicates.
pub(super) fn check_rules(rules: Vec<PolicyRule>) -> Result<Vec<PolicyRule>, PolicyError> {
    for (index, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|reason| PolicyError::Rule {
            index,
            rule: rule.to_csv_line(),
            reason,
        })?;
    }
    Ok(dedup(rules))
}

fn dedup(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut seen = HashSet::with_capacity(rules.len());
    rules
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

/// Canonical text: one CSV line per rule, sorted, so the same rule set gives
/// the same text whatever order a file or a database returned it in.
pub(super) fn canonical_text(rules: &[PolicyRule]) -> String {
    let mut lines: Vec<String> = rules.iter().map(PolicyRule::to_csv_line).collect();
    lines.sort_unstable();
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Lower-case hex SHA-256 of the canonical text.
pub(super) fn version_of(canonical: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}
