//! Safety rules for a policy change, and what a change would do.
//!
//! A syntactically valid policy can still be a disaster: an empty one makes
//! every later request 403, including the one that would put a policy back,
//! so only the CLI on the database host could recover. A rule with the `*`
//! purpose grants a permission for every purpose, which the shipped policy
//! promises never to do (GDPR Art. 5(1)(b), purpose limitation). So a new
//! policy is refused when
//!
//! - no role may change the policy any more (`policy write` for some
//!   purpose), or no role may read it;
//! - it uses the `*` purpose while `policy.allow_wildcard_purpose` is off.
//!
//! [`diff`] says who gains and loses which permission, with role
//! inheritance (`g` lines) expanded, for `POST /v1/admin/policies/preview`.

use std::collections::{BTreeMap, BTreeSet};

use super::PolicyRule;

/// One effective permission: role may do act on obj for purpose.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
pub struct Permission {
    pub role: String,
    pub object: String,
    pub action: String,
    pub purpose: String,
}

/// What replacing one policy by another changes.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyDiff {
    /// Permissions the new policy grants that the current one does not.
    pub gained: Vec<Permission>,
    /// Permissions the current policy grants that the new one does not.
    pub lost: Vec<Permission>,
}

/// Refuses a policy that locks every administrator out or uses a wildcard
/// purpose when that is not enabled. The message names the rule or the
/// missing permission.
pub fn check(rules: &[PolicyRule], allow_wildcard_purpose: bool) -> Result<(), String> {
    if !allow_wildcard_purpose {
        if let Some(rule) = rules
            .iter()
            .find(|r| r.ptype == "p" && r.values.get(3).is_some_and(|p| p == "*"))
        {
            return Err(format!(
                "rule `{}` uses the `*` purpose, which is refused unless \
                 policy.allow_wildcard_purpose is set",
                rule.to_csv_line()
            ));
        }
    }
    let effective = effective(rules);
    for act in ["write", "read"] {
        if !effective
            .iter()
            .any(|p| p.object == "policy" && p.action == act)
        {
            return Err(format!(
                "no role could `{act}` the policy any more; keep at least one \
                 `p, ROLE, policy, {act}, PURPOSE` rule so the policy can still be managed"
            ));
        }
    }
    Ok(())
}

/// Every (role, object, action, purpose) the rules grant, with inherited
/// permissions expanded (a role gets its parents' permissions, transitively).
pub fn effective(rules: &[PolicyRule]) -> BTreeSet<Permission> {
    let mut direct: BTreeMap<&str, Vec<(&str, &str, &str)>> = BTreeMap::new();
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut roles: BTreeSet<&str> = BTreeSet::new();
    for rule in rules {
        match (rule.ptype.as_str(), rule.values.as_slice()) {
            ("p", [sub, obj, act, purpose]) => {
                roles.insert(sub);
                direct
                    .entry(sub)
                    .or_default()
                    .push((obj.as_str(), act.as_str(), purpose.as_str()));
            }
            ("g", [member, parent]) => {
                roles.insert(member);
                roles.insert(parent);
                parents.entry(member).or_default().push(parent);
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for role in roles {
        // Walk the inheritance graph once per role; `seen` ends cycles.
        let mut seen = BTreeSet::new();
        let mut stack = vec![role];
        while let Some(r) = stack.pop() {
            if !seen.insert(r) {
                continue;
            }
            for (obj, act, purpose) in direct.get(r).into_iter().flatten() {
                out.insert(Permission {
                    role: role.to_owned(),
                    object: (*obj).to_owned(),
                    action: (*act).to_owned(),
                    purpose: (*purpose).to_owned(),
                });
            }
            stack.extend(parents.get(r).into_iter().flatten().copied());
        }
    }
    out
}

/// Who gains and who loses which permission going from `current` to `new`.
pub fn diff(current: &[PolicyRule], new: &[PolicyRule]) -> PolicyDiff {
    let before = effective(current);
    let after = effective(new);
    PolicyDiff {
        gained: after.difference(&before).cloned().collect(),
        lost: before.difference(&after).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Vec<PolicyRule> {
        vec![
            PolicyRule::p("dpo", "policy", "write", "compliance_audit"),
            PolicyRule::p("dpo", "policy", "read", "compliance_audit"),
        ]
    }

    #[test]
    fn empty_or_lockout_policies_are_refused() {
        assert!(check(&[], false).unwrap_err().contains("policy, write"));
        let read_only = vec![PolicyRule::p("dpo", "policy", "read", "compliance_audit")];
        assert!(check(&read_only, false).is_err());
        assert!(check(&admin(), false).is_ok());
        // Inherited administration counts.
        let inherited = vec![
            PolicyRule::p("admin_base", "policy", "write", "compliance_audit"),
            PolicyRule::p("admin_base", "policy", "read", "compliance_audit"),
            PolicyRule::g("dpo", "admin_base"),
        ];
        assert!(check(&inherited, false).is_ok());
    }

    #[test]
    fn wildcard_purposes_need_the_switch() {
        let mut rules = admin();
        rules.push(PolicyRule::p("support_agent", "customer", "read", "*"));
        assert!(check(&rules, false).unwrap_err().contains("`*` purpose"));
        assert!(check(&rules, true).is_ok());
    }

    #[test]
    fn diff_expands_inheritance_and_names_both_sides() {
        let current = vec![
            PolicyRule::p("base", "customer", "read", "customer_support"),
            PolicyRule::g("support_agent", "base"),
            PolicyRule::p("crm_service", "customer", "read", "email_marketing"),
        ];
        let new = vec![
            PolicyRule::p("base", "customer", "read", "customer_support"),
            PolicyRule::g("support_agent", "base"),
            PolicyRule::g("crm_service", "base"),
        ];
        let d = diff(&current, &new);
        let perm = |role: &str, purpose: &str| Permission {
            role: role.into(),
            object: "customer".into(),
            action: "read".into(),
            purpose: purpose.into(),
        };
        assert_eq!(d.gained, vec![perm("crm_service", "customer_support")]);
        assert_eq!(d.lost, vec![perm("crm_service", "email_marketing")]);
        // Cycles terminate.
        let cyclic = vec![PolicyRule::g("a", "b"), PolicyRule::g("b", "a")];
        assert!(effective(&cyclic).is_empty());
    }
}
