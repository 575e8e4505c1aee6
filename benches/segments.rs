//! Segments, RFM and profiles on a real or synthetic shop, on one database.
//!
//! ```sh
//! # Online Retail (after `custodian import online-retail <csv>` into that URL):
//! SEGMENTS_BENCH_URL=sqlite:///tmp/or/custodian.db cargo bench --bench segments
//! # A synthetic shop of N customers (2 orders of 5 lines each), generated
//! # in SQL if the database has no customers yet:
//! SEGMENTS_BENCH_URL=postgres://postgres@127.0.0.1/seg SEGMENTS_BENCH_SYNTH=200000 \
//!     cargo bench --bench segments
//! ```
//!
//! Every customer without a marketing_analytics consent state is granted
//! one first (the bench measures the consent join, not an empty result).
//! Prints the feature refresh time and the segment query's plan, then lets
//! criterion time the typical segment, the RFM cells and k = 5 clusters.

use criterion::{criterion_group, criterion_main, Criterion};
use custodian::analytics::segments::{self, language::Node};
use custodian::analytics::{features, profiles, rfm};
use custodian::config::Config;
use custodian::db::{Backend, Db};
use custodian::domain::PurposeId;
use custodian::pipeline::consent::ConsentPredicate;
use custodian::pipeline::purpose::PurposeCatalog;
use std::collections::HashMap;
use std::time::Instant;

const PURPOSE: &str = "marketing_analytics";
const DAY: i64 = 86_400_000_000;

async fn generate(db: &Db, n: i64) {
    let series = |count: &str| {
        match db.backend {
        Backend::Postgres => format!("SELECT g AS x FROM generate_series(CAST(1 AS BIGINT), {count}) g"),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {count}) SELECT x FROM s"
        ),
    }
    };
    let countries = "CASE x % 5 WHEN 0 THEN 'United Kingdom' WHEN 1 THEN 'Germany' \
                     WHEN 2 THEN 'France' WHEN 3 THEN 'Spain' ELSE 'Netherlands' END";
    let started = Instant::now();
    let stmts = [
        format!(
            "INSERT INTO customers (external_id, country, signup_at, created_at, updated_at) \
             SELECT 'S' || x, {countries}, {} - (x % 1500) * {DAY}, 0, 0 FROM ({}) t",
            1_700_000_000_000_000i64,
            series(&n.to_string())
        ),
        format!(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
             SELECT 'P' || x, 'Product ' || x, CASE x % 9 WHEN 0 THEN 'christmas' WHEN 1 THEN 'party' \
             WHEN 2 THEN 'candles_lighting' WHEN 3 THEN 'kitchen' WHEN 4 THEN 'stationery' \
             WHEN 5 THEN 'toys_games' WHEN 6 THEN 'garden' WHEN 7 THEN 'jewellery_accessories' \
             ELSE 'home_decor' END, 100 + (x * 37) % 5000, 0 FROM ({}) t",
            series("2000")
        ),
        // Two orders per customer on average, skewed: some customers many.
        format!(
            "INSERT INTO orders (external_id, customer_id, kind, placed_at, country, total_cents, source, created_at) \
             SELECT 'SO' || x, 1 + ((x * 7919) % {n}) * ((x % 3) + 1) % {n}, 'order', \
             {} - ((x * 104729) % 730) * {DAY}, NULL, 500 + (x * 13) % 20000, 'synthetic', 0 FROM ({}) t",
            1_700_000_000_000_000i64,
            series(&(2 * n).to_string())
        ),
        format!(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             SELECT o.id, l.x, 1 + (o.id * 31 + l.x * 17) % 2000, 1 + (o.id + l.x) % 4, 100 + (o.id * 7) % 3000 \
             FROM orders o CROSS JOIN ({}) l",
            series("5")
        ),
    ];
    for s in stmts {
        sqlx::query(&s).execute(&db.pool).await.unwrap();
    }
    // As an import does after loading (`custodian import` refreshes the
    // planner's statistics).
    db.refresh_statistics(&[]).await.unwrap();
    eprintln!(
        "generated {n} customers, {} orders, {} lines in {:.1} s",
        2 * n,
        10 * n,
        started.elapsed().as_secs_f64()
    );
}

async fn open() -> Option<(Db, tempfile::TempDir)> {
    let url = std::env::var("SEGMENTS_BENCH_URL").ok()?;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.database.url = url;
    let db = Db::connect(&config).await.unwrap();
    db.migrate().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    if n == 0 {
        let synth: i64 = std::env::var("SEGMENTS_BENCH_SYNTH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        generate(&db, synth).await;
    }
    sqlx::query(
        "INSERT INTO consent_events (receipt_id, customer_id, purpose, granted, occurred_at, recorded_at, source, actor) \
         SELECT 'bench-' || c.id, c.id, 'marketing_analytics', 1, 1, 1, 'bench', 'bench' FROM customers c \
         WHERE NOT EXISTS (SELECT 1 FROM consent_state s WHERE s.customer_id = c.id AND s.purpose = 'marketing_analytics')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    Some((db, dir))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((db, _dir)) = rt.block_on(open()) else {
        eprintln!("note: set SEGMENTS_BENCH_URL to a database to benchmark segments");
        return;
    };
    let backend = db.backend.name();
    let (customers, lines): (i64, i64) = rt.block_on(async {
        (
            sqlx::query_scalar("SELECT COUNT(*) FROM customers")
                .fetch_one(&db.pool)
                .await
                .unwrap(),
            sqlx::query_scalar("SELECT COUNT(*) FROM order_lines")
                .fetch_one(&db.pool)
                .await
                .unwrap(),
        )
    });
    // The data's own "now": the day after its last order.
    let as_of: i64 = rt.block_on(async {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(placed_at) FROM orders")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let t = last.unwrap_or(0) + DAY;
        t - t.rem_euclid(DAY)
    });
    let mark = rt.block_on(features::source_mark(&db)).unwrap();
    let current = rt.block_on(features::current(&db)).unwrap();
    if current.is_some_and(|(_, built_from)| built_from == mark)
        && std::env::var_os("SEGMENTS_BENCH_REFRESH").is_none()
    {
        // A second run on the same data (the refresh of a million customers
        // takes minutes): SEGMENTS_BENCH_REFRESH=1 times it again.
        eprintln!("{backend}: {customers} customers, {lines} lines: features current, not rebuilt");
    } else {
        let started = Instant::now();
        let refreshed = rt.block_on(features::refresh(&db, &mark, 0)).unwrap();
        eprintln!(
            "{backend}: {customers} customers, {lines} lines: feature refresh {:.2} s ({} rows)",
            started.elapsed().as_secs_f64(),
            refreshed.customers
        );
    }
    let definition: Node = serde_json::from_value(serde_json::json!({"all": [
        {"country": {"in": ["United Kingdom", "Germany"]}},
        {"bought": {"category": "christmas", "within_days": 365}},
        {"monetary": {"min": 100.0}}
    ]}))
    .unwrap();
    let saved = HashMap::new();
    let predicate = ConsentPredicate::for_purpose(
        &PurposeCatalog::load("policies/purposes.toml").unwrap(),
        &PurposeId(PURPOSE.into()),
    );
    let filter = segments::filter(&definition, &predicate, as_of, &saved).unwrap();
    let n = rt.block_on(segments::size(&db, &filter)).unwrap();
    eprintln!("{backend}: typical segment size {n}");
    let explain = match db.backend {
        Backend::Sqlite => "EXPLAIN QUERY PLAN ",
        Backend::Postgres => "EXPLAIN ",
    };
    let text = format!(
        "{explain}SELECT COUNT(*) FROM customer_features f WHERE {}",
        filter.text
    );
    let plan = rt.block_on(async {
        use sqlx::Row;
        let rows = filter
            .apply(sqlx::query(&text))
            .fetch_all(&db.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let col = if db.backend == Backend::Sqlite { 3 } else { 0 };
                r.try_get::<String, _>(col).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    eprintln!("{backend}: plan of the typical segment:\n{plan}");

    // A second typical segment on purchase behaviour only, which every
    // data set can answer (CDNOW has no countries and no categories).
    let behaviour: Node = serde_json::from_value(serde_json::json!({"all": [
        {"recency": {"max_days": 365}},
        {"frequency": {"min": 2, "within_days": 730}},
        {"monetary": {"min": 50.0, "within_days": 730}}
    ]}))
    .unwrap();
    let behaviour_filter = segments::filter(&behaviour, &predicate, as_of, &saved).unwrap();
    let nb = rt.block_on(segments::size(&db, &behaviour_filter)).unwrap();
    eprintln!("{backend}: behaviour segment size {nb}");

    let mut consent = segments::compile::Sql::default();
    custodian::analytics::consent_filter(&mut consent, &predicate);
    let mut group = c.benchmark_group(format!("segments_{backend}"));
    group.sample_size(10);
    group.bench_function("typical_three_condition_segment", |b| {
        b.to_async(&rt).iter(|| async {
            let filter = segments::filter(&definition, &predicate, as_of, &saved).unwrap();
            segments::size(&db, &filter).await.unwrap()
        })
    });
    group.bench_function("behaviour_three_condition_segment", |b| {
        b.to_async(&rt).iter(|| async {
            let filter = segments::filter(&behaviour, &predicate, as_of, &saved).unwrap();
            segments::size(&db, &filter).await.unwrap()
        })
    });
    group.bench_function("rfm_cells", |b| {
        b.to_async(&rt)
            .iter(|| async { rfm::cells(&db, consent.clone(), as_of).await.unwrap() })
    });
    group.bench_function("clusters_k5_fit_and_assign", |b| {
        b.to_async(&rt).iter(|| async {
            let model = profiles::fit(&db, &consent, 5, as_of).await.unwrap();
            profiles::assign(&db, &consent, &model, PURPOSE, "bench", as_of, 0)
                .await
                .unwrap()
        })
    });
    // The two halves of a fresh cluster answer, for where the time goes.
    let model = rt.block_on(profiles::fit(&db, &consent, 5, as_of)).unwrap();
    group.bench_function("clusters_k5_fit_only", |b| {
        b.to_async(&rt)
            .iter(|| async { profiles::fit(&db, &consent, 5, as_of).await.unwrap() })
    });
    group.bench_function("clusters_k5_assign_only", |b| {
        b.to_async(&rt).iter(|| async {
            profiles::assign(&db, &consent, &model, PURPOSE, "bench", as_of, 0)
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
