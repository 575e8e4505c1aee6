//! The compiled decision table: every answer the model can give, precomputed
//! from the rules and casbin's role graph, in immutable hash maps.
//!
//! Casbin's enforcer evaluates the matcher against every rule on every
//! request, in time growing with the policy. Here a decision is three or four hash
//! look-ups whatever the policy size, and field views are precomputed per
//! (resource, role, purpose).
//!
//! Semantics (those of `SUPPORTED_MODEL`): subject `s` may `act` on `obj` for
//! purpose `u` iff some rule `p, r, obj, act, q` exists with casbin's
//! `has_link(s, r)` (s == r, or s inherits r through `g` rules) and
//! (`q == u` or `q == "*"`). Role inheritance is computed by casbin's own role
//! manager, depth limit included; the differential tests check the table
//! against `Enforcer::enforce`.

use super::model::build_enforcer;
use super::rules::{canonical_text, check_rules, version_of, ANY_PURPOSE};
use super::{Decision, PolicyError, PolicyRule};
use crate::domain::{PurposeId, Treatment};
use casbin::{CoreApi, RbacApi};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// Which rule granted a permission to a subject, and whether the rule names
/// the subject itself (direct) or a role it inherits. When several rules
/// grant the same thing, the one reported is the direct one, then the
/// earliest in the file: deterministic, and the most useful to a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    inherited: bool,
    rule: u32,
}

fn keep_best(slot: &mut Option<Grant>, candidate: Grant) {
    match slot {
        Some(g) if *g <= candidate => {}
        _ => *slot = Some(candidate),
    }
}

/// Permissions of one subject on one (obj, act).
#[derive(Default, Debug)]
struct Grants {
    /// From a `*` purpose rule: any purpose.
    any: Option<Grant>,
    by_purpose: HashMap<Box<str>, Grant>,
}

impl Grants {
    /// A purpose-specific rule is preferred over the wildcard in reports.
    fn for_purpose(&self, purpose: &str) -> Option<Grant> {
        self.by_purpose.get(purpose).copied().or(self.any)
    }
}

/// obj -> act -> subject -> grants. Object first so `who_can` is one look-up.
type Table = HashMap<Box<str>, HashMap<Box<str>, HashMap<Box<str>, Grants>>>;

/// field -> strongest treatment and the rule granting it.
type FieldMap = HashMap<Box<str>, (Treatment, u32)>;

/// Field views of one subject on one resource.
#[derive(Default, Debug)]
struct SubjectFields {
    /// Views for purposes named in the rules, wildcard grants already merged.
    by_purpose: HashMap<Box<str>, FieldMap>,
    /// The view for any other purpose (wildcard grants only).
    any: FieldMap,
}

impl SubjectFields {
    fn view(&self, purpose: &str) -> &FieldMap {
        self.by_purpose.get(purpose).unwrap_or(&self.any)
    }
}

/// The treatment a field action grants, if it is a field action.
fn treatment_of(act: &str) -> Option<Treatment> {
    [Treatment::Clear, Treatment::Masked, Treatment::Pseudonym]
        .into_iter()
        .find(|t| t.action() == Some(act))
}

fn upgrade(map: &mut FieldMap, field: &str, treatment: Treatment, rule: u32) {
    match map.get_mut(field) {
        // Strictly stronger only: on a tie the purpose-specific grant, added
        // first, stays the one reported (as in `decide`).
        Some(cur) if treatment > cur.0 => *cur = (treatment, rule),
        Some(_) => {}
        None => {
            map.insert(field.into(), (treatment, rule));
        }
    }
}

/// The outcome for one field of a [`FieldView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldGrant {
    pub field: String,
    /// The strongest treatment any of the caller's roles is allowed;
    /// `Dropped` when none is.
    pub treatment: Treatment,
    /// The rule granting `treatment` (`None` when dropped).
    pub rule: Option<Arc<str>>,
}

/// How each requested field of a resource may leave, in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldView {
    pub fields: Vec<FieldGrant>,
}

impl FieldView {
    /// Treatment of `field`; `Dropped` for a field that was not requested.
    pub fn treatment(&self, field: &str) -> Treatment {
        self.fields
            .iter()
            .find(|f| f.field == field)
            .map_or(Treatment::Dropped, |f| f.treatment)
    }

    /// Fields that leave in some form (not dropped).
    pub fn visible(&self) -> impl Iterator<Item = &FieldGrant> {
        self.fields
            .iter()
            .filter(|f| f.treatment != Treatment::Dropped)
    }
}

/// Why a request is allowed or denied, for `custodian policy check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub roles: Vec<String>,
    pub obj: String,
    pub act: String,
    pub purpose: String,
    pub allowed: bool,
    /// The deciding rule when allowed.
    pub rule: Option<PolicyRule>,
    /// Role chain from the caller's role to the rule's subject, both
    /// included (`[support_agent]` for a direct rule,
    /// `[dpo, compliance_officer]` for an inherited one).
    pub via: Vec<String>,
    /// On a denial: purposes for which the same roles would be allowed.
    pub allowed_purposes: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "ALLOW" } else { "DENY" };
        writeln!(
            f,
            "{verdict}: roles [{}] {} {} for purpose {}",
            self.roles.join(", "),
            self.act,
            self.obj,
            self.purpose
        )?;
        match &self.rule {
            Some(rule) => {
                writeln!(f, "  rule: {rule}")?;
                if self.via.len() > 1 {
                    writeln!(f, "  via:  {}", self.via.join(" -> "))?;
                }
            }
            None => {
                writeln!(f, "  no rule grants this (deny by default)")?;
                if !self.allowed_purposes.is_empty() {
                    writeln!(
                        f,
                        "  would be allowed for purpose(s): {}",
                        self.allowed_purposes.join(", ")
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// An immutable, compiled policy: the rules, their version, and the tables
/// answering every decision without scanning rules or taking a lock.
pub struct CompiledPolicy {
    model_text: Arc<str>,
    rules: Vec<PolicyRule>,
    rule_text: Vec<Arc<str>>,
    version: String,
    table: Table,
    /// resource -> subject -> field views.
    fields: HashMap<Box<str>, HashMap<Box<str>, SubjectFields>>,
    /// member -> direct parent roles (from `g` rules), for explanations.
    parents: HashMap<Box<str>, Vec<Box<str>>>,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl CompiledPolicy {
    /// Compiles `rules` under `model_text`. Refuses an unsupported model or
    /// any invalid rule (the whole set, not just the bad rule). CPU-bound
    /// (about a second per 10,000 rules in a debug build, far less in
    /// release): call it from `spawn_blocking` on a server.
    pub fn compile(model_text: &str, rules: Vec<PolicyRule>) -> Result<Self, PolicyError> {
        let rules = check_rules(rules)?;
        let enforcer = build_enforcer(model_text, &rules)?;
        let rule_count = u32::try_from(rules.len())
            .map_err(|_| PolicyError::Casbin("too many rules".to_owned()))?;

        let mut p_by_subject: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut subjects: BTreeSet<&str> = BTreeSet::new();
        let mut parents: HashMap<Box<str>, Vec<Box<str>>> = HashMap::new();
        for (i, rule) in (0..rule_count).zip(rules.iter()) {
            if let Some((sub, ..)) = rule.as_permission() {
                p_by_subject.entry(sub).or_default().push(i);
                subjects.insert(sub);
            } else if let Some((member, role)) = rule.as_link() {
                subjects.insert(member);
                subjects.insert(role);
                parents.entry(member.into()).or_default().push(role.into());
            }
        }

        // Effective roles per subject, by casbin's role manager: candidates
        // from its transitive closure, each confirmed with `has_link` (the
        // very function the matcher's `g()` calls, with its depth limit).
        let rm = enforcer.get_role_manager();
        let mut table = Table::new();
        for &subject in &subjects {
            let mut effective: Vec<(&str, bool)> = vec![(subject, false)];
            let mut implicit = enforcer.get_implicit_roles_for_user(subject, None);
            implicit.sort_unstable();
            for role in &implicit {
                if let Some((&name, _)) = p_by_subject.get_key_value(role.as_str()) {
                    if name != subject && rm.read().has_link(subject, name, None) {
                        effective.push((name, true));
                    }
                }
            }
            for (role, inherited) in effective {
                for &rule in p_by_subject.get(role).into_iter().flatten() {
                    let Some((_, obj, act, purpose)) =
                        rules.get(rule as usize).and_then(PolicyRule::as_permission)
                    else {
                        continue;
                    };
                    let grants = table
                        .entry(obj.into())
                        .or_default()
                        .entry(act.into())
                        .or_default()
                        .entry(subject.into())
                        .or_default();
                    let candidate = Grant { inherited, rule };
                    if purpose == ANY_PURPOSE {
                        keep_best(&mut grants.any, candidate);
                    } else {
                        let mut slot = grants.by_purpose.get(purpose).copied();
                        keep_best(&mut slot, candidate);
                        if let Some(best) = slot {
                            grants.by_purpose.insert(purpose.into(), best);
                        }
                    }
                }
            }
        }

        let fields = field_tables(&table);
        let rule_text = rules.iter().map(|r| Arc::from(r.to_csv_line())).collect();
        let version = version_of(&canonical_text(&rules));
        Ok(Self {
            model_text: Arc::from(model_text),
            rules,
            rule_text,
            version,
            table,
            fields,
            parents,
        })
    }

    /// Parses `policy_csv` strictly (see [`super::parse_policy_csv`]) and compiles it.
    pub fn from_strs(model_text: &str, policy_csv: &str) -> Result<Self, PolicyError> {
        Self::compile(model_text, super::parse_policy_csv(policy_csv)?)
    }

    /// Reads and compiles `model.conf` and `policy.csv`.
    pub fn from_files(
        model_path: impl AsRef<std::path::Path>,
        policy_path: impl AsRef<std::path::Path>,
    ) -> Result<Self, PolicyError> {
        let model = super::read(model_path.as_ref())?;
        let policy = super::read(policy_path.as_ref())?;
        Self::from_strs(&model, &policy)
    }

    fn rule_arc(&self, rule: u32) -> Option<Arc<str>> {
        self.rule_text.get(rule as usize).cloned()
    }

    fn grants(&self, obj: &str, act: &str) -> Option<&HashMap<Box<str>, Grants>> {
        self.table.get(obj).and_then(|acts| acts.get(act))
    }

    /// May any of `roles` `act` on `obj` for `purpose`? Deny by default.
    pub fn decide(&self, roles: &[String], obj: &str, act: &str, purpose: &PurposeId) -> Decision {
        let Some(by_subject) = self.grants(obj, act) else {
            return Decision::DENY;
        };
        let grant = roles
            .iter()
            .filter_map(|role| by_subject.get(role.as_str()))
            .find_map(|g| g.for_purpose(purpose.as_str()));
        match grant {
            Some(g) => Decision {
                allowed: true,
                rule: self.rule_arc(g.rule),
            },
            None => Decision::DENY,
        }
    }

    /// The strongest treatment the caller may receive for each of `fields`
    /// (bare names, e.g. `email`, of objects `resource.field`), in order.
    pub fn field_view(
        &self,
        roles: &[String],
        resource: &str,
        fields: &[&str],
        purpose: &PurposeId,
    ) -> FieldView {
        let views: Vec<&FieldMap> = match self.fields.get(resource) {
            Some(by_subject) => roles
                .iter()
                .filter_map(|r| by_subject.get(r.as_str()))
                .map(|s| s.view(purpose.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let fields = fields
            .iter()
            .map(|&field| {
                // Strongest treatment wins; on a tie the earliest role's rule.
                let best = views.iter().filter_map(|v| v.get(field)).fold(
                    None::<(Treatment, u32)>,
                    |acc, &cur| match acc {
                        Some(a) if a.0 >= cur.0 => Some(a),
                        _ => Some(cur),
                    },
                );
                FieldGrant {
                    field: field.to_owned(),
                    treatment: best.map_or(Treatment::Dropped, |b| b.0),
                    rule: best.and_then(|b| self.rule_arc(b.1)),
                }
            })
            .collect();
        FieldView { fields }
    }

    /// The decision with the deciding rule and role chain spelled out.
    pub fn explain(
        &self,
        roles: &[String],
        obj: &str,
        act: &str,
        purpose: &PurposeId,
    ) -> Explanation {
        let by_subject = self.grants(obj, act);
        let found = roles.iter().find_map(|role| {
            by_subject
                .and_then(|m| m.get(role.as_str()))
                .and_then(|g| g.for_purpose(purpose.as_str()))
                .map(|g| (role, g))
        });
        let mut allowed_purposes = BTreeSet::new();
        if found.is_none() {
            for g in roles
                .iter()
                .filter_map(|r| by_subject.and_then(|m| m.get(r.as_str())))
            {
                allowed_purposes.extend(g.by_purpose.keys().map(|k| k.to_string()));
                if g.any.is_some() {
                    allowed_purposes.insert(ANY_PURPOSE.to_owned());
                }
            }
        }
        let rule = found.and_then(|(_, g)| self.rules.get(g.rule as usize).cloned());
        let via = match (found, rule.as_ref().and_then(PolicyRule::as_permission)) {
            (Some((role, _)), Some((target, ..))) => self.role_chain(role, target),
            _ => Vec::new(),
        };
        Explanation {
            roles: roles.to_vec(),
            obj: obj.to_owned(),
            act: act.to_owned(),
            purpose: purpose.to_string(),
            allowed: found.is_some(),
            rule,
            via,
            allowed_purposes: allowed_purposes.into_iter().collect(),
        }
    }

    /// Shortest inheritance path from `from` to `to` over the `g` rules.
    fn role_chain(&self, from: &str, to: &str) -> Vec<String> {
        let mut prev: HashMap<&str, &str> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut chain = vec![node.to_owned()];
                let mut cur = node;
                while let Some(&p) = prev.get(cur) {
                    chain.push(p.to_owned());
                    cur = p;
                }
                chain.reverse();
                return chain;
            }
            for parent in self.parents.get(node).into_iter().flatten() {
                if seen.insert(parent) {
                    prev.insert(parent, node);
                    queue.push_back(parent);
                }
            }
        }
        vec![from.to_owned(), to.to_owned()]
    }

    /// Every subject (role) allowed `act` on `obj`, directly or by
    /// inheritance, with the purposes it is allowed for (`*` = any), sorted.
    pub fn who_can(&self, obj: &str, act: &str) -> Vec<(String, Vec<String>)> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (subject, g) in self.grants(obj, act).into_iter().flatten() {
            let mut purposes: Vec<String> = g.by_purpose.keys().map(|k| k.to_string()).collect();
            if g.any.is_some() {
                purposes.push(ANY_PURPOSE.to_owned());
            }
            purposes.sort_unstable();
            out.insert(subject.to_string(), purposes);
        }
        out.into_iter().collect()
    }

    /// The validated, deduplicated rules, in source order.
    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// The model text this policy was compiled under.
    pub fn model_text(&self) -> &str {
        &self.model_text
    }

    /// Canonical CSV text (sorted rules): what `version` hashes.
    pub fn canonical_text(&self) -> String {
        canonical_text(&self.rules)
    }

    /// Hex SHA-256 of the canonical rule text: equal rule sets, in any
    /// order, have equal versions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Rules whose purpose is neither `*` nor in `known` (a typo there would
    /// silently grant nothing; worth refusing at deploy time).
    pub fn rules_with_unknown_purpose(&self, known: impl Fn(&str) -> bool) -> Vec<&PolicyRule> {
        self.rules
            .iter()
            .filter(|r| {
                r.as_permission()
                    .is_some_and(|(.., p)| p != ANY_PURPOSE && !known(p))
            })
            .collect()
    }
}

/// Precomputes field views from the decision table: for each resource field
/// object (`customer.email`), subject and purpose, the strongest treatment.
fn field_tables(table: &Table) -> HashMap<Box<str>, HashMap<Box<str>, SubjectFields>> {
    let mut out: HashMap<Box<str>, HashMap<Box<str>, SubjectFields>> = HashMap::new();
    for (obj, acts) in table {
        let Some((resource, field)) = obj.split_once('.') else {
            continue;
        };
        for (act, by_subject) in acts {
            let Some(treatment) = treatment_of(act) else {
                continue;
            };
            for (subject, grants) in by_subject {
                let sf = out
                    .entry(resource.into())
                    .or_default()
                    .entry(subject.clone())
                    .or_default();
                if let Some(g) = grants.any {
                    upgrade(&mut sf.any, field, treatment, g.rule);
                }
                for (purpose, g) in &grants.by_purpose {
                    let view = sf.by_purpose.entry(purpose.clone()).or_default();
                    upgrade(view, field, treatment, g.rule);
                }
            }
        }
    }
    // A wildcard grant applies under every purpose too.
    for by_subject in out.values_mut() {
        for sf in by_subject.values_mut() {
            let any: Vec<(Box<str>, (Treatment, u32))> =
                sf.any.iter().map(|(f, v)| (f.clone(), *v)).collect();
            for view in sf.by_purpose.values_mut() {
                for (field, (t, rule)) in &any {
                    upgrade(view, field, *t, *rule);
                }
            }
        }
    }
    out
}
