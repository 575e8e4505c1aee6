//! Audit trail throughput: events/s through the group-committing writer
//! with concurrent producers, and events/s of `verify_store`, on SQLite and
//! (when `CUSTODIAN_TEST_DATABASE_URL` is set) PostgreSQL.
//!
//! `cargo bench --bench audit` (env `AUDIT_BENCH_EVENTS`, default 100000;
//! `AUDIT_BENCH_PRODUCERS`, default 64).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use custodian::audit::{self, Action, AuditEvent, AuditWriter, Reason, Signer, WriterOptions};
use custodian::clock::{SharedClock, SystemClock};
use custodian::config::Config;
use custodian::db::Db;
use custodian::domain::Treatment;
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(i: u64) -> AuditEvent {
    AuditEvent::system("bench-svc", Action::CustomerRead, "/v1/customers/{id}")
        .request_id(format!("req-{i}"))
        .customer(i64::try_from(i).unwrap_or(0))
        .field("email", Treatment::Masked)
        .field("city", Treatment::Clear)
        .records(1)
        .allow(
            Reason::Policy("p, analyst, customer, read_masked".into()),
            200,
        )
        .build()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(label: &str, config: Config) -> anyhow::Result<()> {
    let total = env_u64("AUDIT_BENCH_EVENTS", 100_000);
    let producers = env_u64("AUDIT_BENCH_PRODUCERS", 64);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let signer = Signer::ephemeral()?;
    let key = *signer.public_key();
    let clock: SharedClock = Arc::new(SystemClock);
    let options = WriterOptions {
        instance: "bench".into(),
        checkpoint_every_events: 1000,
        checkpoint_interval: Duration::from_secs(60),
        queue_capacity: 10_000,
        max_batch: 512,
        write_timeout: Duration::from_secs(2),
    };
    let writer = AuditWriter::start(db.clone(), clock, signer, options).await?;

    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let w = writer.clone();
            tokio::spawn(async move {
                let mut i = p;
                while i < total {
                    w.record(event(i)).await?;
                    i += producers;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let batches = writer.batches();
    writer.shutdown().await;
    println!(
        "{label}: writer  {total} events, {producers} producers: {secs:.2} s, {:.0} events/s, {batches} transactions ({:.1} events/tx)",
        total as f64 / secs,
        total as f64 / batches.max(1) as f64
    );

    let started = Instant::now();
    let report = audit::verify_store(&db, &[key], &|_| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.is_intact(), "{report}");
    println!(
        "{label}: verify  {} events, {} checkpoints: {secs:.2} s, {:.0} events/s",
        report.events,
        report.checkpoints,
        report.events as f64 / secs
    );
    db.pool.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
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
