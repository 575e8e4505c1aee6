//! The console's chart aggregations on a large trail: a store of N events
//! (default 1,000,000) over 30 days, 60 actors, 5 purposes, ~10% denials,
//! in writer-sized blocks. Measures the index pass that fills the hourly
//! summaries (backfill of the whole store), the three trail aggregations
//! over 30 days (median of 20), and, for comparison, one aggregation done
//! the way a page without summaries would need it: decoding every block.
//! SQLite, and PostgreSQL when `CUSTODIAN_TEST_DATABASE_URL` is set.
//!
//! `cargo bench --bench audit_stats` (env `AUDIT_STATS_EVENTS`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use custodian::audit::stats::{self, StatsFilter, HOUR_MICROS};
use custodian::audit::store::{self, Block, ReadRow};
use custodian::audit::{Action, AuditEvent, Decision, Reason, GENESIS};
use custodian::config::Config;
use custodian::db::Db;
use custodian::domain::{PurposeId, Treatment};
use sqlx::Connection;
use std::time::{Duration, Instant};

const PURPOSES: [&str; 5] = [
    "customer_support",
    "marketing_analytics",
    "personalization",
    "email_marketing",
    "order_fulfilment",
];
const BLOCK: u64 = 256;
/// 2026-05-01T00:00:00Z.
const START: i64 = 1_777_593_600_000_000;
const SPAN_HOURS: i64 = 30 * 24;

fn event(i: u64) -> AuditEvent {
    let actor = format!("svc-{:02}", i % 60);
    let purpose = PURPOSES[usize::try_from(i % 5).unwrap_or(0)];
    let b = AuditEvent::system(&actor, Action::CustomerRead, "/v1/customers/{id}")
        .request_id(format!("req-{i}"))
        .purpose(&PurposeId(purpose.to_owned()))
        .customer(i64::try_from(i % 100_000).unwrap_or(0))
        .field("email", Treatment::Masked)
        .records(1);
    if i % 10 == 3 {
        b.deny(Reason::Consent("withdrawn".into()), 404).build()
    } else {
        b.allow(Reason::Policy("p, svc, customer, read".into()), 200)
            .build()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

async fn run(label: &str, config: Config) -> anyhow::Result<()> {
    let total = env_u64("AUDIT_STATS_EVENTS", 1_000_000);
    let db = Db::connect(&config).await?;
    db.migrate().await?;

    // The store, written directly in blocks (the writer's layout) with
    // times spread evenly over 30 days.
    let started = Instant::now();
    let blocks = total.div_ceil(BLOCK);
    let mut head = (0, GENESIS);
    let mut written = 0;
    for b in 0..blocks {
        let at = START
            + i64::try_from(b).unwrap_or(0) * SPAN_HOURS * HOUR_MICROS
                / i64::try_from(blocks).unwrap_or(1);
        let n = BLOCK.min(total - written);
        let events = (written..written + n).map(|i| {
            let mut e = event(i);
            e.occurred_at = at;
            e
        });
        let block = Block::chain("bench", head, events);
        store::insert_block(&db.pool, &block.rows, block.bytes()).await?;
        head = block.head().unwrap_or(head);
        written += n;
    }
    println!(
        "{label}: wrote {total} events in {blocks} blocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Backfill: the passes the writer runs, until caught up.
    let started = Instant::now();
    while store::index_customers(&db, "bench", 1_000).await? > 0 {}
    let pass = started.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM audit_stats")
        .fetch_one(&db.pool)
        .await?;
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / pass.as_secs_f64();
    println!(
        "{label}: index + summary passes over the whole store: {:.1} s ({rate:.0} events/s); {rows} summary rows",
        pass.as_secs_f64()
    );

    let filter = StatsFilter {
        from_hour: START / HOUR_MICROS,
        to_hour: START / HOUR_MICROS + SPAN_HOURS,
        ..StatsFilter::default()
    };
    let mut timings = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..20 {
        let t = Instant::now();
        let series = stats::decisions_over_time(&db, &filter, 24).await?;
        timings[0].push(t.elapsed());
        anyhow::ensure!(
            series.iter().map(|(_, a, d)| a + d).sum::<i64>() == i64::try_from(total)?,
            "decisions do not add up"
        );
        let t = Instant::now();
        stats::denials(&db, &filter, 10).await?;
        timings[1].push(t.elapsed());
        let t = Instant::now();
        stats::accesses_by_purpose(&db, &filter).await?;
        timings[2].push(t.elapsed());
    }
    for (name, t) in [
        "decisions over time (30 days by day)",
        "denials by actor and reason",
        "accesses by purpose",
    ]
    .iter()
    .zip(timings)
    {
        println!(
            "{label}: {name}: median {:.2} ms",
            median(t).as_secs_f64() * 1e3
        );
    }

    // Without summaries: decode every block and count decisions by day.
    let started = Instant::now();
    let mut after = 0;
    let mut days = std::collections::BTreeMap::<i64, (u64, u64)>::new();
    loop {
        let (rows, next) = store::blocks_from(&db, "bench", after, 1_000).await?;
        for row in rows {
            if let ReadRow::Ok(e) = row {
                let d = days
                    .entry(e.event.occurred_at / (24 * HOUR_MICROS))
                    .or_default();
                match e.event.decision {
                    Decision::Allow => d.0 += 1,
                    Decision::Deny => d.1 += 1,
                }
            }
        }
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    println!(
        "{label}: the same decisions by decoding every block: {:.0} ms ({} days)",
        started.elapsed().as_secs_f64() * 1e3,
        days.len()
    );
    db.pool.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        run("sqlite", config).await?;

        if let Some(admin) = std::env::var("CUSTODIAN_TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            let name = format!("custodian_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            let mut config = Config::default();
            config.database.url = format!("{base}/{name}");
            let result = run("postgres", config).await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            result?;
        }
        anyhow::Ok(())
    })
}
