//! Consent look-ups in bulk: one query for a 1,000-customer page, against
//! the naive one-query-per-customer approach, on SQLite (and PostgreSQL when
//! `CUSTODIAN_TEST_DATABASE_URL` points at a server).
//!
//! `cargo bench --bench consent -- --warm-up-time 1 --measurement-time 5`

use criterion::{criterion_group, criterion_main, Criterion};
use custodian::config::Config;
use custodian::db::Db;
use custodian::pipeline::consent;

const CUSTOMERS: i64 = 20_000;

async fn seed(db: &Db) {
    let mut tx = db.pool.begin().await.unwrap();
    for chunk in (1..=CUSTOMERS).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from(
            "INSERT INTO customers (id, external_id, signup_at, created_at, updated_at) VALUES ",
        );
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 'B{i}', 0, 0, 0)"))
            .collect();
        sql.push_str(&values.join(","));
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
        // Two to three events per customer: grant, sometimes withdraw, sometimes re-grant.
        let mut sql = String::from(
            "INSERT INTO consent_events (receipt_id, customer_id, purpose, granted, occurred_at, recorded_at, source, actor) VALUES ",
        );
        let mut values = Vec::new();
        for i in chunk {
            values.push(format!(
                "('a{i}', {i}, 'email_marketing', 1, 1, 1, 'import', 'bench')"
            ));
            if i % 3 == 0 {
                values.push(format!(
                    "('b{i}', {i}, 'email_marketing', 0, 2, 2, 'import', 'bench')"
                ));
            }
            if i % 9 == 0 {
                values.push(format!(
                    "('c{i}', {i}, 'email_marketing', 1, 3, 3, 'import', 'bench')"
                ));
            }
            values.push(format!(
                "('d{i}', {i}, 'personalization', 1, 1, 1, 'import', 'bench')"
            ));
        }
        sql.push_str(&values.join(","));
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn open(url: Option<String>, dir: &std::path::Path) -> Db {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    if let Some(url) = url {
        config.database.url = url;
    }
    let db = Db::connect(&config).await.unwrap();
    db.migrate().await.unwrap();
    seed(&db).await;
    db
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec![("sqlite", rt.block_on(open(None, dir.path())), None)];
    if let Ok(admin) = std::env::var("CUSTODIAN_TEST_DATABASE_URL") {
        let name = format!("custodian_bench_{}", uuid::Uuid::new_v4().simple());
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
        });
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        let db = rt.block_on(open(Some(format!("{base}/{name}")), dir.path()));
        backends.push(("postgres", db, Some((admin, name))));
    }
    let page: Vec<i64> = (5_001..=6_000).collect();
    for (name, db, _) in &backends {
        let mut group = c.benchmark_group(format!("consent_{name}"));
        group.bench_function("bulk_1000_page", |b| {
            b.to_async(&rt).iter(|| async {
                let ok = consent::consenting(db, "email_marketing", &page)
                    .await
                    .unwrap();
                assert!(ok.len() > 600 && ok.len() < 1000);
            })
        });
        group.sample_size(10);
        group.bench_function("naive_one_query_per_customer_1000", |b| {
            b.to_async(&rt).iter(|| async {
                let mut n = 0;
                for id in &page {
                    n += consent::consenting(db, "email_marketing", &[*id])
                        .await
                        .unwrap()
                        .len();
                }
                assert!(n > 600);
            })
        });
        // The predicate analytics join on, over the whole table.
        let predicate = consent::ConsentPredicate::for_purpose(
            &custodian::pipeline::purpose::PurposeCatalog::load(std::path::Path::new(
                "policies/purposes.toml",
            ))
            .unwrap(),
            &custodian::domain::PurposeId("email_marketing".to_owned()),
        );
        let consenting_sql = format!(
            "SELECT c.id FROM customers c WHERE {}",
            predicate.sql("c.id", 1)
        );
        group.bench_function("full_table_consenting_set", |b| {
            b.to_async(&rt).iter(|| async {
                let ids: Vec<i64> = sqlx::query_scalar(&consenting_sql)
                    .bind(predicate.bind_value())
                    .fetch_all(&db.pool)
                    .await
                    .unwrap();
                assert!(ids.len() as i64 > CUSTOMERS / 2);
            })
        });
        group.finish();
    }
    for (_, db, pg) in backends {
        rt.block_on(db.pool.close());
        if let Some((admin, name)) = pg {
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
