//! Recommendation serving and mining, in process.
//!
//! - answers from the loaded model: personalized top-10 (new items and
//!   repeats), frequently bought together, popular (target: p50 < 50 µs);
//! - FP-growth on the Groceries baskets at the two published settings.
//!
//! With `CUSTODIAN_RECS_CSV=<online_retail_uci.csv>` the model is fitted on
//! the real Online Retail data, otherwise on a generated shop of the same
//! size; Groceries is read from `../shared/datasets` (or
//! `CUSTODIAN_GROCERIES=<groceries_baskets.csv>`) and skipped when absent.
//!
//! `cargo bench --bench recs -- --warm-up-time 1 --measurement-time 5`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use custodian::recs::data::{BasketKind, Interactions, InteractionsBuilder, LineIn};
use custodian::recs::model::{profile_of, Model, Profile};
use custodian::recs::serve::Snapshot;
use custodian::recs::{eval, rules, Mode, RecsParams};
use rand::{Rng, SeedableRng};

/// A shop shaped like Online Retail: 4,300 customers, 3,600 items with a
/// skewed popularity, four baskets of twenty items per customer.
fn generated() -> Interactions {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let mut b = InteractionsBuilder::default();
    let mut basket = 0u64;
    for c in 0..4_300 {
        let customer = format!("c{c}");
        let taste: u32 = rng.gen_range(0..3_600);
        for n in 0..4 {
            basket += 1;
            let key = basket.to_string();
            for _ in 0..20 {
                // Half the items near the customer's taste, half popular.
                let item = if rng.gen_bool(0.5) {
                    (taste + rng.gen_range(0..60)) % 3_600
                } else {
                    let u: f64 = rng.gen();
                    (u.powi(3) * 3_600.0) as u32
                };
                b.push(LineIn {
                    basket_key: &key,
                    kind: BasketKind::Purchase,
                    customer: &customer,
                    country: if c % 10 == 0 {
                        "France"
                    } else {
                        "United Kingdom"
                    },
                    item: &item.to_string(),
                    quantity: 1.0,
                    time: (n * 30 + c % 30) as i64 * 86_400_000_000,
                    seq: basket as i64,
                });
            }
        }
    }
    b.finish()
}

fn load() -> Interactions {
    match std::env::var("CUSTODIAN_RECS_CSV") {
        Ok(path) => {
            let f = std::fs::File::open(&path).expect("CUSTODIAN_RECS_CSV opens");
            eval::load_online_retail(std::io::BufReader::new(f))
                .expect("CSV loads")
                .0
        }
        Err(_) => generated(),
    }
}

fn serving(c: &mut Criterion) {
    let data = load();
    let params = RecsParams::default();
    let per = data.by_customer();
    let profiles: Vec<Profile> = per.iter().map(|l| profile_of(&data, l, &params)).collect();
    let started = std::time::Instant::now();
    let model = Model::fit(&data, &profiles, &params, "bench".into(), 0).expect("fit");
    eprintln!(
        "fit {:.2} s; model {:.1} MB; {} customers, {} items, {} EASE weights",
        started.elapsed().as_secs_f64(),
        model.memory_bytes() as f64 / 1e6,
        profiles.len(),
        data.items.len(),
        model.ease.nnz()
    );
    // A median-sized profile, so the number is the typical answer.
    let mut by_size: Vec<&Profile> = profiles.iter().collect();
    by_size.sort_by_key(|p| p.items.len());
    let typical = by_size[by_size.len() / 2];
    eprintln!("typical profile: {} items", typical.items.len());
    let item = model.popularity.global[0].0;
    // The served path: the snapshot scores every customer once; an answer
    // is a pseudonym look-up plus a slice.
    let customers: Vec<custodian::recs::build::BuiltCustomer> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| custodian::recs::build::BuiltCustomer {
            id: i as i64,
            external_id: format!("c{i}"),
            profile: p.clone(),
        })
        .collect();
    let started = std::time::Instant::now();
    let snapshot = Snapshot::new(
        custodian::recs::build::Built {
            model: Model::fit(&data, &profiles, &params, "bench".into(), 0).expect("fit"),
            customers,
            rows_read: 0,
        },
        |k| format!("ps_{k:0>22}"),
    );
    eprintln!(
        "snapshot (fit + every customer's lists) {:.2} s; {:.1} MB",
        started.elapsed().as_secs_f64(),
        snapshot.memory_bytes() as f64 / 1e6
    );
    let token = format!("ps_{:0>22}", format!("c{}", profiles.len() / 2));
    let mut g = c.benchmark_group("recs");
    g.bench_function("served_customer_top10", |b| {
        b.iter(|| {
            let (_, lists) = snapshot.customer(black_box(&token)).expect("customer");
            black_box(lists.top(Mode::Repeat, 10).to_vec())
        })
    });
    g.bench_function("score_customer_top10_new", |b| {
        b.iter(|| black_box(model.for_profile(black_box(typical), 10, Mode::New)))
    });
    g.bench_function("score_customer_top10_repeat", |b| {
        b.iter(|| black_box(model.for_profile(black_box(typical), 10, Mode::Repeat)))
    });
    g.bench_function("together_top10", |b| {
        b.iter(|| black_box(model.together(black_box(item), 10)))
    });
    g.bench_function("popular_top10_country", |b| {
        b.iter(|| black_box(model.popular(Some("France"), 10)))
    });
    g.finish();
}

fn groceries() -> Option<Vec<Vec<u32>>> {
    let path = std::env::var("CUSTODIAN_GROCERIES").ok().or_else(|| {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        ["../shared/datasets", "../../shared/datasets"]
            .iter()
            .map(|b| root.join(b).join("groceries/groceries_baskets.csv"))
            .find(|p| p.exists())
            .map(|p| p.display().to_string())
    })?;
    Some(rules::read_basket_lines(
        &std::fs::read_to_string(path).ok()?,
    ))
}

fn mining(c: &mut Criterion) {
    let Some(baskets) = groceries() else {
        eprintln!("SKIPPED: Groceries baskets not found; mining not measured");
        return;
    };
    let mut g = c.benchmark_group("fpgrowth_groceries");
    g.sample_size(10);
    g.bench_function("support_0.006_conf_0.25", |b| {
        b.iter(|| black_box(rules::mine_rules(&baskets, 0.006, 0.25, 0).len()))
    });
    g.bench_function("support_0.001_conf_0.5", |b| {
        b.iter(|| black_box(rules::mine_rules(&baskets, 0.001, 0.5, 0).len()))
    });
    g.finish();
}

criterion_group!(benches, serving, mining);
criterion_main!(benches);
