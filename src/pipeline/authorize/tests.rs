//! Properties of the shipped policy, of the compiler, and the differential
//! tests proving the compiled table decides exactly as casbin's enforcer.

use super::model::build_enforcer;
use super::vocabulary::{self, CUSTOMER_FIELDS, FIELD_ACTIONS};
use super::*;
use crate::domain::Treatment;
use crate::pipeline::purpose::PurposeCatalog;
use casbin::CoreApi;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROLES: &[&str] = &[
    "compliance_officer",
    "dpo",
    "marketing_analyst",
    "recommendation_service",
    "support_agent",
    "crm_service",
    "ingest_service",
];

fn path(file: &str) -> String {
    format!("{}/policies/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Authorizer {
    Authorizer::from_files(path("model.conf"), path("policy.csv")).unwrap()
}

fn catalog() -> PurposeCatalog {
    PurposeCatalog::load(path("purposes.toml")).unwrap()
}

fn model_text() -> String {
    std::fs::read_to_string(path("model.conf")).unwrap()
}

fn pid(p: &str) -> PurposeId {
    PurposeId(p.to_owned())
}

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

fn allowed(a: &Authorizer, role: &str, obj: &str, act: &str, purpose: &str) -> bool {
    a.decide(&roles(&[role]), obj, act, &pid(purpose)).allowed
}

/// Every (obj, act) of the vocabulary.
fn vocabulary_pairs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (obj, act) in vocabulary::resource_operations() {
        out.push((obj.to_string(), act.to_string()));
    }
    for f in CUSTOMER_FIELDS {
        for act in FIELD_ACTIONS {
            out.push((format!("customer.{f}"), act.to_string()));
        }
    }
    out
}

/// Roles allowed (obj, act) for some purpose.
fn who(a: &Authorizer, obj: &str, act: &str) -> Vec<String> {
    a.who_can(obj, act).into_iter().map(|(r, _)| r).collect()
}

// ---- shipped files ---------------------------------------------------------

#[test]
fn shipped_policy_is_in_vocabulary_and_catalog_without_wildcards() {
    let a = shipped();
    let p = a.current();
    assert!(vocabulary::unknown_vocabulary(p.rules()).is_empty());
    let cat = catalog();
    assert!(p.rules_with_unknown_purpose(|x| cat.contains(x)).is_empty());
    assert!(p
        .rules()
        .iter()
        .all(|r| !r.values.contains(&"*".to_owned())));
    // Every shipped role has at least one permission.
    for role in ROLES {
        assert!(
            vocabulary_pairs()
                .iter()
                .any(|(o, act)| cat.all().iter().any(|pu| allowed(
                    &a,
                    role,
                    o,
                    act,
                    pu.id.as_str()
                ))),
            "{role} can do nothing"
        );
    }
}

#[test]
fn casbin_csv_reader_skips_comment_lines() {
    // The shipped CSV has '#' comments; casbin's own reader must agree they
    // are comments (not rules), or exporting the file to casbin tools breaks.
    let text = std::fs::read_to_string(path("policy.csv")).unwrap();
    let ours = parse_policy_csv(&text).unwrap();
    let m = futures::executor::block_on(casbin::DefaultModel::from_str(&model_text())).unwrap();
    let e = futures::executor::block_on(casbin::Enforcer::new(m, casbin::StringAdapter::new(text)))
        .unwrap();
    use casbin::MgmtApi;
    let n = e.get_policy().len() + e.get_grouping_policy().len();
    assert_eq!(n, ours.len());
}

// ---- deny by default -------------------------------------------------------

#[test]
fn deny_by_default() {
    let a = shipped();
    let sup = "customer_support";
    assert!(allowed(&a, "support_agent", "customer", "read", sup));
    assert!(
        !allowed(&a, "nobody", "customer", "read", sup),
        "unknown role"
    );
    assert!(
        !allowed(&a, "support_agent", "customers", "read", sup),
        "unknown object"
    );
    assert!(
        !allowed(&a, "support_agent", "customer", "reads", sup),
        "unknown action"
    );
    assert!(
        !allowed(&a, "support_agent", "customer", "read", "email_marketing"),
        "other purpose"
    );
    assert!(
        !allowed(&a, "support_agent", "customer", "read", "*"),
        "literal * purpose"
    );
    assert!(
        !allowed(&a, "Support_Agent", "customer", "read", sup),
        "case matters"
    );
    assert!(
        !a.decide(&[], "customer", "read", &pid(sup)).allowed,
        "no roles"
    );
    let d = a.decide(&roles(&["nobody"]), "customer", "read", &pid(sup));
    assert_eq!(d, Decision::DENY);
}

#[test]
fn any_role_allowing_allows_and_reports_its_rule() {
    let a = shipped();
    let d = a.decide(
        &roles(&["nobody", "marketing_analyst", "support_agent"]),
        "customer.email",
        "read_masked",
        &pid("customer_support"),
    );
    assert!(d.allowed);
    assert_eq!(
        d.rule.as_deref(),
        Some("p, support_agent, customer.email, read_masked, customer_support")
    );
}

// ---- inheritance -------------------------------------------------------------

#[test]
fn dpo_inherits_compliance_officer_but_not_the_reverse() {
    let a = shipped();
    let ca = "compliance_audit";
    for (obj, act) in [
        ("audit", "read"),
        ("audit", "export"),
        ("audit", "verify"),
        ("pseudonym", "resolve"),
        ("dsr", "read"),
    ] {
        assert!(
            allowed(&a, "compliance_officer", obj, act, ca),
            "{obj} {act}"
        );
        assert!(allowed(&a, "dpo", obj, act, ca), "dpo {obj} {act}");
    }
    for (obj, act) in [
        ("keys", "rotate"),
        ("policy", "write"),
        ("dsr", "erase"),
        ("dsr", "rectify"),
        ("dsr", "export"),
        ("dsr", "download"),
        ("dsr", "hold"),
    ] {
        assert!(allowed(&a, "dpo", obj, act, ca));
        assert!(
            !allowed(&a, "compliance_officer", obj, act, ca),
            "{obj} {act}"
        );
    }
    let e = a.explain(&roles(&["dpo"]), "audit", "verify", &pid(ca));
    assert!(e.allowed);
    assert_eq!(e.via, vec!["dpo", "compliance_officer"]);
    assert_eq!(
        e.rule.as_ref().map(PolicyRule::to_csv_line).as_deref(),
        Some("p, compliance_officer, audit, verify, compliance_audit")
    );
    let text = e.to_string();
    assert!(text.starts_with("ALLOW"), "{text}");
    assert!(text.contains("via:  dpo -> compliance_officer"), "{text}");
}

#[test]
fn explain_denial_lists_purposes_that_would_allow() {
    let a = shipped();
    let e = a.explain(
        &roles(&["crm_service"]),
        "customer.email",
        "read_clear",
        &pid("customer_support"),
    );
    assert!(!e.allowed);
    assert!(e.rule.is_none());
    assert_eq!(e.allowed_purposes, vec!["email_marketing"]);
    assert!(e.to_string().contains("deny by default"));
}

// ---- wildcard purpose --------------------------------------------------------

const WILDCARD_POLICY: &str = "
p, auditor, audit, read, *
p, auditor, audit, export, compliance_audit
g, lead_auditor, auditor
p, support, customer.email, read_masked, *
p, support, customer.email, read_clear, customer_support
";

#[test]
fn wildcard_purpose_matches_every_purpose_and_is_inherited() {
    let a = Authorizer::from_strs(&model_text(), WILDCARD_POLICY).unwrap();
    for p in ["compliance_audit", "email_marketing", "anything"] {
        assert!(allowed(&a, "auditor", "audit", "read", p));
        assert!(allowed(&a, "lead_auditor", "audit", "read", p));
    }
    assert!(!allowed(
        &a,
        "auditor",
        "audit",
        "export",
        "email_marketing"
    ));
    assert!(allowed(
        &a,
        "lead_auditor",
        "audit",
        "export",
        "compliance_audit"
    ));
    assert_eq!(
        a.who_can("audit", "read"),
        vec![
            ("auditor".to_owned(), vec!["*".to_owned()]),
            ("lead_auditor".to_owned(), vec!["*".to_owned()])
        ]
    );
    // Field view merges the wildcard grant with purpose-specific ones.
    let fv = |p: &str| {
        a.field_view(&roles(&["support"]), "customer", &["email"], &pid(p))
            .treatment("email")
    };
    assert_eq!(fv("customer_support"), Treatment::Clear);
    assert_eq!(fv("fraud_prevention"), Treatment::Masked);
}

#[test]
fn wildcard_only_allowed_as_purpose() {
    for bad in [
        "p, *, audit, read, x",
        "p, a, *, read, x",
        "p, a, audit, *, x",
        "g, a, *",
        "g, *, a",
    ] {
        assert!(parse_policy_csv(bad).is_err(), "{bad}");
    }
}

// ---- field views -------------------------------------------------------------

#[test]
fn field_view_gives_strongest_treatment() {
    let a = shipped();
    let all: Vec<&str> = CUSTOMER_FIELDS.to_vec();
    let v = a.field_view(
        &roles(&["support_agent"]),
        "customer",
        &all,
        &pid("customer_support"),
    );
    assert_eq!(v.fields.len(), all.len());
    let t = |f: &str| v.treatment(f);
    assert_eq!(t("name"), Treatment::Clear);
    assert_eq!(t("email"), Treatment::Masked);
    assert_eq!(t("phone"), Treatment::Masked);
    assert_eq!(t("birth_date"), Treatment::Dropped);
    assert_eq!(
        v.fields
            .iter()
            .find(|f| f.field == "email")
            .and_then(|f| f.rule.as_deref()),
        Some("p, support_agent, customer.email, read_masked, customer_support")
    );
    assert!(v.visible().all(|f| f.field != "birth_date"));
    // Wrong purpose: everything dropped.
    let v = a.field_view(
        &roles(&["support_agent"]),
        "customer",
        &all,
        &pid("email_marketing"),
    );
    assert!(v.visible().next().is_none());
    // Unknown resource or role: everything dropped.
    let v = a.field_view(
        &roles(&["support_agent"]),
        "order",
        &all,
        &pid("customer_support"),
    );
    assert!(v.visible().next().is_none());
}

#[test]
fn field_view_takes_the_max_over_roles() {
    let policy = "
p, a, customer.email, read_pseudonym, x
p, b, customer.email, read_masked, x
p, b, customer.email, read_pseudonym, x
p, c, customer.email, read_clear, y
";
    let a = Authorizer::from_strs(&model_text(), policy).unwrap();
    let t = |r: &[&str], p: &str| {
        a.field_view(&roles(r), "customer", &["email"], &pid(p))
            .treatment("email")
    };
    assert_eq!(t(&["a"], "x"), Treatment::Pseudonym);
    assert_eq!(t(&["b"], "x"), Treatment::Masked);
    assert_eq!(t(&["a", "b"], "x"), Treatment::Masked);
    assert_eq!(t(&["b", "a"], "x"), Treatment::Masked);
    assert_eq!(t(&["a", "b", "c"], "x"), Treatment::Masked);
    assert_eq!(t(&["a", "b", "c"], "y"), Treatment::Clear);
    assert_eq!(t(&["a", "b"], "y"), Treatment::Dropped);
}

/// field_view must agree with decide: the strongest treatment whose action is allowed.
fn assert_field_view_matches_decide(
    a: &Authorizer,
    subjects: &[String],
    purposes: &[PurposeId],
    fields: &[&str],
) {
    for s in subjects {
        let r = vec![s.clone()];
        for p in purposes {
            let view = a.field_view(&r, "customer", fields, p);
            assert_eq!(view.fields.len(), fields.len());
            for g in &view.fields {
                let obj = format!("customer.{}", g.field);
                let expected = [Treatment::Clear, Treatment::Masked, Treatment::Pseudonym]
                    .into_iter()
                    .find(|t| {
                        a.decide(&r, &obj, t.action().unwrap_or_default(), p)
                            .allowed
                    })
                    .unwrap_or(Treatment::Dropped);
                assert_eq!(g.treatment, expected, "{s} {obj} {p}");
                if let Some(act) = expected.action() {
                    assert_eq!(g.rule, a.decide(&r, &obj, act, p).rule, "{s} {obj} {p}");
                }
            }
        }
    }
}

#[test]
fn field_view_agrees_with_decide_on_shipped_policy() {
    let a = shipped();
    let purposes: Vec<PurposeId> = catalog().all().iter().map(|p| p.id.clone()).collect();
    let subjects: Vec<String> = roles(ROLES);
    assert_field_view_matches_decide(&a, &subjects, &purposes, CUSTOMER_FIELDS);
}

// ---- what each shipped role may and may not do ---------------------------------

#[test]
fn marketing_analyst_never_sees_identity_in_clear_or_masked() {
    let a = shipped();
    let cat = catalog();
    for p in cat.all() {
        for f in CUSTOMER_FIELDS {
            let obj = format!("customer.{f}");
            assert!(
                !allowed(&a, "marketing_analyst", &obj, "read_clear", p.id.as_str())
                    || *f == "country",
                "{obj} {}",
                p.id
            );
            assert!(
                !allowed(&a, "marketing_analyst", &obj, "read_masked", p.id.as_str()),
                "{obj} {}",
                p.id
            );
        }
        for (obj, act) in [
            ("event", "read"),
            ("order", "read"),
            ("pseudonym", "resolve"),
            ("audit", "read"),
            ("dsr", "export"),
        ] {
            assert!(
                !allowed(&a, "marketing_analyst", obj, act, p.id.as_str()),
                "{obj} {act}"
            );
        }
    }
    let v = a.field_view(
        &roles(&["marketing_analyst"]),
        "customer",
        CUSTOMER_FIELDS,
        &pid("marketing_analytics"),
    );
    let visible: Vec<(&str, Treatment)> = v
        .visible()
        .map(|f| (f.field.as_str(), f.treatment))
        .collect();
    assert_eq!(
        visible,
        vec![
            ("external_id", Treatment::Pseudonym),
            ("country", Treatment::Clear)
        ]
    );
    assert!(allowed(
        &a,
        "marketing_analyst",
        "segment",
        "read",
        "marketing_analytics"
    ));
    assert!(!allowed(
        &a,
        "marketing_analyst",
        "segment",
        "read",
        "email_marketing"
    ));
}

#[test]
fn only_dpo_has_the_irreversible_powers() {
    let a = shipped();
    for (obj, act) in [
        ("keys", "rotate"),
        ("policy", "write"),
        ("dsr", "erase"),
        ("dsr", "rectify"),
        ("customer", "delete"),
    ] {
        assert_eq!(who(&a, obj, act), vec!["dpo"], "{obj} {act}");
    }
    assert_eq!(
        who(&a, "pseudonym", "resolve"),
        vec!["compliance_officer", "dpo"]
    );
    assert_eq!(
        who(&a, "audit", "export"),
        vec!["compliance_officer", "dpo"]
    );
}

#[test]
fn crm_is_the_only_clear_email_reader_and_only_for_email_marketing() {
    let a = shipped();
    assert_eq!(
        a.who_can("customer.email", "read_clear"),
        vec![("crm_service".to_owned(), vec!["email_marketing".to_owned()])]
    );
    assert_eq!(
        who(&a, "customer.phone", "read_clear"),
        Vec::<String>::new()
    );
    assert_eq!(
        who(&a, "customer.birth_date", "read_clear"),
        Vec::<String>::new()
    );
    assert_eq!(
        who(&a, "customer.email", "read_masked"),
        vec!["support_agent"]
    );
}

#[test]
fn ingest_service_writes_and_reads_nothing() {
    let a = shipped();
    for (obj, act) in vocabulary_pairs() {
        let can = who(&a, &obj, &act).contains(&"ingest_service".to_owned());
        assert_eq!(
            can,
            (act == "write"
                && ["customer", "order", "event", "product", "consent"].contains(&obj.as_str()))
                || (obj == "consent" && act == "grant"),
            "{obj} {act}"
        );
    }
    assert!(allowed(
        &a,
        "ingest_service",
        "event",
        "write",
        "data_ingestion"
    ));
    assert!(!allowed(
        &a,
        "ingest_service",
        "event",
        "write",
        "personalization"
    ));
}

#[test]
fn recommendation_service_and_support_agent_paths() {
    let a = shipped();
    let p = "personalization";
    assert!(allowed(
        &a,
        "recommendation_service",
        "recommendation",
        "read",
        p
    ));
    assert!(allowed(&a, "recommendation_service", "event", "read", p));
    assert!(!allowed(
        &a,
        "recommendation_service",
        "customer",
        "read",
        p
    ));
    let v = a.field_view(
        &roles(&["recommendation_service"]),
        "customer",
        CUSTOMER_FIELDS,
        &pid(p),
    );
    assert!(v.visible().all(|f| f.treatment == Treatment::Pseudonym));
    assert!(!allowed(
        &a,
        "support_agent",
        "customer",
        "write",
        "customer_support"
    ));
    assert!(!allowed(
        &a,
        "support_agent",
        "pseudonym",
        "resolve",
        "customer_support"
    ));
    assert!(!allowed(
        &a,
        "support_agent",
        "dsr",
        "export",
        "customer_support"
    ));
}

// ---- parsing and reload --------------------------------------------------------

#[test]
fn bad_policy_csv_is_refused_whole() {
    let good = "p, a, customer, read, x\n";
    let cases = [
        ("p, a, customer, read", "too few values"),
        ("p, a, customer, read, x, y", "too many values"),
        ("p, a, , read, x", "empty value"),
        ("p2, a, customer, read, x", "unknown ptype"),
        ("x, a, b", "unknown ptype"),
        ("g, a", "g arity"),
        ("g, a, b, c", "g with domain"),
        ("p, \"a\", customer, read, x", "quotes"),
        ("p, a b, customer, read, x", "space in value"),
        (
            "p, a, customer, read, x # trailing comment",
            "inline comment",
        ),
        ("p; a; customer; read; x", "wrong separator"),
    ];
    for (bad, why) in cases {
        let text = format!("{good}{bad}\n{good}");
        match parse_policy_csv(&text) {
            Err(PolicyError::Line { line, .. }) => assert_eq!(line, 2, "{why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    assert_eq!(
        parse_policy_csv("  # c\n\n p , a , customer , read , x \n").unwrap(),
        vec![PolicyRule::p("a", "customer", "read", "x")]
    );
}

#[test]
fn failed_reload_keeps_old_policy() {
    let a = shipped();
    let before = a.version();
    let err = a.reload_csv("p, support_agent, customer, read, customer_support\np, oops\n");
    assert!(matches!(err, Err(PolicyError::Line { line: 2, .. })));
    let err = a.reload_rules(vec![
        PolicyRule::p("a", "b", "c", "d"),
        PolicyRule {
            ptype: "p".into(),
            values: vec!["x".into()],
        },
    ]);
    assert!(matches!(err, Err(PolicyError::Rule { index: 1, .. })));
    assert_eq!(a.version(), before);
    assert!(allowed(&a, "dpo", "keys", "rotate", "compliance_audit"));

    // A good reload takes effect at once, and takes away what it no longer grants.
    let v = a
        .reload_csv("p, support_agent, customer, read, customer_support\n")
        .unwrap();
    assert_eq!(a.version(), v);
    assert_ne!(v, before);
    assert!(!allowed(&a, "dpo", "keys", "rotate", "compliance_audit"));
    assert!(allowed(
        &a,
        "support_agent",
        "customer",
        "read",
        "customer_support"
    ));
}

#[test]
fn readers_keep_a_consistent_snapshot_across_reload() {
    let a = shipped();
    let snapshot = a.current();
    a.reload(CompiledPolicy::from_strs(&model_text(), "p, x, y, z, w\n").unwrap());
    assert!(
        snapshot
            .decide(&roles(&["dpo"]), "keys", "rotate", &pid("compliance_audit"))
            .allowed
    );
    assert!(
        !a.decide(&roles(&["dpo"]), "keys", "rotate", &pid("compliance_audit"))
            .allowed
    );
}

#[test]
fn version_is_order_independent_and_rules_round_trip() {
    let a = shipped();
    let mut rules = a.rules();
    rules.reverse();
    rules.push(rules[0].clone()); // duplicate is dropped
    let b = Authorizer::from_rules(&model_text(), rules).unwrap();
    assert_eq!(a.version(), b.version());
    assert_eq!(a.version().len(), 64);
    assert_eq!(b.rules().len(), a.rules().len());
    // Export -> CSV -> import gives the same policy.
    let csv = a.current().canonical_text();
    assert_eq!(
        Authorizer::from_strs(&model_text(), &csv)
            .unwrap()
            .version(),
        a.version()
    );
    // casbin_rule rows with empty trailing columns.
    let row = PolicyRule::from_row(
        "g",
        &[
            Some("dpo"),
            Some("compliance_officer"),
            Some(""),
            None,
            None,
            None,
        ],
    );
    assert_eq!(row, PolicyRule::g("dpo", "compliance_officer"));
}

#[test]
fn unsupported_models_are_refused() {
    let m = model_text();
    let variants = [
        m.replace(
            "some(where (p.eft == allow))",
            "!some(where (p.eft == deny))",
        ),
        m.replace(" || p.purpose == \"*\"", ""),
        m.replace("r.act == p.act", "regexMatch(r.act, p.act)"),
        m.replace("g = _, _", "g = _, _, _"),
        m.replace(
            "p = sub, obj, act, purpose",
            "p = sub, obj, act, purpose, eft",
        ),
        m.replace("g = _, _", "g = _, _\ng2 = _, _"),
        m.replace("g(r.sub, p.sub) && ", "g(r.sub, p.sub) || "),
        "not a model".to_owned(),
    ];
    for (i, v) in variants.iter().enumerate() {
        let r = CompiledPolicy::from_strs(v, "p, a, b, c, d\n");
        assert!(
            matches!(
                r,
                Err(PolicyError::UnsupportedModel(_)) | Err(PolicyError::Model(_))
            ),
            "variant {i} accepted: {v}"
        );
    }
    // Formatting and comments don't matter.
    let spaced = m
        .replace("r.obj == p.obj", "r.obj==p.obj")
        .replace("[matchers]", "[matchers]\n# c");
    assert!(CompiledPolicy::from_strs(&spaced, "p, a, b, c, d\n").is_ok());
    assert!(CompiledPolicy::from_strs(SUPPORTED_MODEL, "p, a, b, c, d\n").is_ok());
}

// ---- differential tests against casbin ------------------------------------------

fn casbin_allows(e: &casbin::Enforcer, s: &str, o: &str, a: &str, p: &str) -> bool {
    e.enforce((s, o, a, p)).unwrap()
}

#[test]
fn differential_shipped_policy_every_combination() {
    let a = shipped();
    let p = a.current();
    let e = build_enforcer(p.model_text(), p.rules()).unwrap();
    let mut subjects = roles(ROLES);
    subjects.push("nobody".into());
    let mut purposes: Vec<String> = catalog().all().iter().map(|x| x.id.to_string()).collect();
    purposes.extend(["*".to_owned(), "unknown".to_owned()]);
    let mut pairs = vocabulary_pairs();
    // Off-vocabulary pairs: a field action on a resource and vice versa.
    pairs.extend([
        ("customer".into(), "read_clear".into()),
        ("customer.email".into(), "read".into()),
        ("nothing".into(), "read".into()),
    ]);
    let mut checked = 0;
    let mut allowed_count = 0;
    for s in &subjects {
        for (o, act) in &pairs {
            for pu in &purposes {
                let want = casbin_allows(&e, s, o, act, pu);
                let got = p.decide(std::slice::from_ref(s), o, act, &pid(pu));
                assert_eq!(got.allowed, want, "{s} {o} {act} {pu}");
                assert_eq!(got.rule.is_some(), want);
                checked += 1;
                allowed_count += usize::from(want);
            }
        }
    }
    assert!(
        checked > 4000 && allowed_count > 50,
        "{checked} {allowed_count}"
    );
}

/// A generated policy: `roles` roles with `per_role` permissions each over
/// a shared object/action/purpose space, some wildcard purposes, and a role
/// graph with a long chain (deeper than casbin's hierarchy limit of 10) and
/// branching links.
pub(super) fn generated_policy(seed: u64, n_roles: usize, per_role: usize) -> Vec<PolicyRule> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rules = Vec::with_capacity(n_roles * per_role + n_roles);
    for r in 0..n_roles {
        for _ in 0..per_role {
            let obj = format!("obj{}", rng.gen_range(0..40));
            let obj = if rng.gen_bool(0.3) {
                format!("customer.f{}", rng.gen_range(0..9))
            } else {
                obj
            };
            let act = if obj.starts_with("customer.") {
                FIELD_ACTIONS[rng.gen_range(0..3)].to_owned()
            } else {
                format!("act{}", rng.gen_range(0..5))
            };
            let purpose = if rng.gen_bool(0.02) {
                "*".to_owned()
            } else {
                format!("pur{}", rng.gen_range(0..8))
            };
            rules.push(PolicyRule::p(&format!("role{r}"), &obj, &act, &purpose));
        }
    }
    // A chain role0 <- role1 <- ... <- role14 (role14 inherits role13 ...).
    for r in 1..15.min(n_roles) {
        rules.push(PolicyRule::g(
            &format!("role{r}"),
            &format!("role{}", r - 1),
        ));
    }
    // Random links among the rest, plus users holding roles.
    for _ in 0..n_roles / 2 {
        let a = rng.gen_range(15..n_roles.max(16));
        let b = rng.gen_range(0..n_roles);
        if a != b {
            rules.push(PolicyRule::g(&format!("role{a}"), &format!("role{b}")));
        }
    }
    for u in 0..20 {
        let b = rng.gen_range(0..n_roles);
        rules.push(PolicyRule::g(&format!("user{u}"), &format!("role{b}")));
    }
    rules
}

fn random_request(
    rng: &mut ChaCha8Rng,
    rules: &[PolicyRule],
    n_roles: usize,
) -> (String, String, String, String) {
    let subject = match rng.gen_range(0..10) {
        0 => format!("user{}", rng.gen_range(0..25)),
        _ => format!("role{}", rng.gen_range(0..n_roles + 2)),
    };
    // Half the time take (obj, act, purpose) from a real rule so allows are common.
    if rng.gen_bool(0.5) {
        let perms: Vec<_> = rules.iter().filter_map(PolicyRule::as_permission).collect();
        let (sub, o, a, p) = perms[rng.gen_range(0..perms.len())];
        let subject = if rng.gen_bool(0.5) {
            sub.to_owned()
        } else {
            subject
        };
        let p = if p == "*" || rng.gen_bool(0.2) {
            format!("pur{}", rng.gen_range(0..9))
        } else {
            p.to_owned()
        };
        (subject, o.to_owned(), a.to_owned(), p)
    } else {
        let o = format!("obj{}", rng.gen_range(0..42));
        (
            subject,
            o,
            format!("act{}", rng.gen_range(0..6)),
            format!("pur{}", rng.gen_range(0..9)),
        )
    }
}

fn differential(rules: Vec<PolicyRule>, n_roles: usize, samples: usize, seed: u64) {
    let model = model_text();
    let p = CompiledPolicy::compile(&model, rules).unwrap();
    let e = build_enforcer(&model, p.rules()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut allows = 0;
    for _ in 0..samples {
        let (s, o, a, pu) = random_request(&mut rng, p.rules(), n_roles);
        let want = casbin_allows(&e, &s, &o, &a, &pu);
        assert_eq!(
            p.decide(std::slice::from_ref(&s), &o, &a, &pid(&pu))
                .allowed,
            want,
            "{s} {o} {a} {pu}"
        );
        allows += usize::from(want);
    }
    assert!(
        allows * 20 > samples,
        "sample too one-sided: {allows}/{samples}"
    );
}

#[test]
fn differential_generated_deep_hierarchy_dense_sample() {
    // 60 roles x 20 rules: small enough to sample densely, with the 14-deep
    // chain exercising casbin's role-depth limit.
    let rules = generated_policy(7, 60, 20);
    differential(rules, 60, 2500, 1);
}

#[test]
fn differential_generated_10k_rules_sample() {
    // 200 roles x 50 rules = 10,000 permissions. casbin scans all of them per
    // enforce, so the sample is small.
    let rules = generated_policy(42, 200, 50);
    assert!(rules.len() >= 10_000);
    differential(rules, 200, 150, 2);
}

#[test]
fn field_view_agrees_with_decide_on_generated_policy() {
    let model = model_text();
    let rules = generated_policy(9, 60, 20);
    let a = Authorizer::from_rules(&model, rules).unwrap();
    let subjects: Vec<String> = (0..62).map(|r| format!("role{r}")).collect();
    let purposes: Vec<PurposeId> = (0..9).map(|p| pid(&format!("pur{p}"))).collect();
    // Generated fields are f0..f8, not the customer catalog names.
    let fields: Vec<String> = (0..9).map(|f| format!("f{f}")).collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    assert_field_view_matches_decide(&a, &subjects, &purposes, &fields);
}
