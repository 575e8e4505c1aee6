//! Authorization latency: the compiled decision table against the shipped
//! policy and a generated 10,000-rule policy (warm = same key repeated,
//! cold = keys varied over a large set), field views, compile time, and for
//! contrast casbin's own `Enforcer::enforce` over the same rules.
//!
//! cargo bench --bench authorize -- --warm-up-time 1 --measurement-time 3

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use custodian::domain::PurposeId;
use custodian::pipeline::authorize::{Authorizer, CompiledPolicy, PolicyRule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const MODEL: &str = include_str!("../policies/model.conf");
const POLICY: &str = include_str!("../policies/policy.csv");
use custodian::pipeline::authorize::vocabulary::CUSTOMER_FIELDS as FIELDS;

/// 200 roles x 50 permissions = 10,000 `p` rules, plus a role graph.
fn generated(n_roles: usize, per_role: usize) -> Vec<PolicyRule> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let acts = ["read_clear", "read_masked", "read_pseudonym"];
    let mut rules = Vec::new();
    for r in 0..n_roles {
        for _ in 0..per_role {
            let (obj, act) = if rng.gen_bool(0.3) {
                (
                    format!("customer.{}", FIELDS[rng.gen_range(0..FIELDS.len())]),
                    acts[rng.gen_range(0..3)].to_owned(),
                )
            } else {
                (
                    format!("obj{}", rng.gen_range(0..40)),
                    format!("act{}", rng.gen_range(0..5)),
                )
            };
            let purpose = format!("pur{}", rng.gen_range(0..8));
            rules.push(PolicyRule::p(&format!("role{r}"), &obj, &act, &purpose));
        }
    }
    for r in 1..n_roles {
        if r % 4 != 0 {
            rules.push(PolicyRule::g(
                &format!("role{r}"),
                &format!("role{}", r - 1),
            ));
        }
    }
    rules
}

fn enforcer(policy: &CompiledPolicy) -> Enforcer {
    futures::executor::block_on(async {
        let m = DefaultModel::from_str(MODEL).await.unwrap();
        Enforcer::new(m, StringAdapter::new(policy.canonical_text()))
            .await
            .unwrap()
    })
}

type Key = (Vec<String>, String, String, PurposeId);

fn keys(rules: &[PolicyRule], n: usize) -> Vec<Key> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let perms: Vec<&PolicyRule> = rules.iter().filter(|r| r.ptype == "p").collect();
    (0..n)
        .map(|_| {
            let r = perms[rng.gen_range(0..perms.len())];
            let v = &r.values;
            // Mix of allowed (the rule's own key) and denied (other purpose).
            let purpose = if rng.gen_bool(0.5) {
                v[3].clone()
            } else {
                format!("pur{}", rng.gen_range(0..9))
            };
            (
                vec![v[0].clone()],
                v[1].clone(),
                v[2].clone(),
                PurposeId(purpose),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let shipped = Authorizer::from_strs(MODEL, POLICY).unwrap();
    let rules = generated(200, 50);
    let big = Authorizer::from_rules(MODEL, rules.clone()).unwrap();
    println!(
        "shipped: {} rules; generated: {} rules",
        shipped.rules().len(),
        big.rules().len()
    );

    let mut g = c.benchmark_group("decide");
    let support = vec!["support_agent".to_owned()];
    let cs = PurposeId("customer_support".into());
    g.bench_function("shipped/warm", |b| {
        b.iter(|| shipped.decide(black_box(&support), "customer.email", "read_masked", &cs))
    });
    let shipped_keys = keys(&shipped.rules(), 4096);
    let mut i = 0usize;
    g.bench_function("shipped/cold", |b| {
        b.iter(|| {
            let (r, o, a, p) = &shipped_keys[i % shipped_keys.len()];
            i += 1;
            shipped.decide(black_box(r), o, a, p)
        })
    });
    let big_keys = keys(&rules, 65536);
    let (r0, o0, a0, p0) = big_keys[0].clone();
    g.bench_function("10k/warm", |b| {
        b.iter(|| big.decide(black_box(&r0), &o0, &a0, &p0))
    });
    let mut i = 0usize;
    g.bench_function("10k/cold", |b| {
        b.iter(|| {
            let (r, o, a, p) = &big_keys[i % big_keys.len()];
            i += 1;
            big.decide(black_box(r), o, a, p)
        })
    });
    let three = vec![
        "role3".to_owned(),
        "role77".to_owned(),
        "role150".to_owned(),
    ];
    g.bench_function("10k/3-roles", |b| {
        b.iter(|| big.decide(black_box(&three), "obj5", "act1", &p0))
    });
    g.finish();

    let mut g = c.benchmark_group("field_view_9");
    g.bench_function("shipped/support_agent", |b| {
        b.iter(|| shipped.field_view(black_box(&support), "customer", FIELDS, &cs))
    });
    let pur3 = PurposeId("pur3".into());
    g.bench_function("10k/3-roles", |b| {
        b.iter(|| big.field_view(black_box(&three), "customer", FIELDS, &pur3))
    });
    g.finish();

    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("10k", |b| {
        b.iter(|| CompiledPolicy::compile(MODEL, black_box(rules.clone())).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("casbin_enforce");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    let e_small = enforcer(&shipped.current());
    g.bench_function("shipped", |b| {
        b.iter(|| {
            e_small
                .enforce(black_box((
                    "support_agent",
                    "customer.email",
                    "read_masked",
                    "customer_support",
                )))
                .unwrap()
        })
    });
    let e_big = enforcer(&big.current());
    let mut i = 0usize;
    g.bench_function("10k", |b| {
        b.iter(|| {
            let (r, o, a, p) = &big_keys[i % big_keys.len()];
            i += 1;
            e_big
                .enforce((r[0].as_str(), o.as_str(), a.as_str(), p.as_str()))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
