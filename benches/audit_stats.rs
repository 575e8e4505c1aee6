//! The compliance console's server side on a large trail: a store of N
//! events (default 1,000,000) over the last 30 days, 60 actors, 5
//! purposes, ~10% denials, in writer-sized blocks, behind the real gateway
//! (`Application`, its router, authentication, policy and the audit event
//! of every request). Measures the index pass that fills the customer
//! index and the hourly summaries (backfill of the whole store); then,
//! over HTTP as a compliance officer, the median of 20 answers of each
//! call the console makes: the audit list's first page unfiltered and
//! filtered (actor, customer, decision, time range, and a combination
//! that matches nothing), a deep cursor page, the one-customer view, and
//! the three chart endpoints; and, for comparison, the decisions chart
//! done the way a page without summaries would need it: decoding every
//! block. SQLite, and PostgreSQL when `CUSTODIAN_TEST_DATABASE_URL` is set.
//!
//! `cargo bench --bench audit_stats` (env `AUDIT_STATS_EVENTS`,
//! `AUDIT_STATS_RUNS`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use custodian::audit::stats::HOUR_MICROS;
use custodian::audit::store::{self, Block, ReadRow};
use custodian::audit::{Action, AuditEvent, Decision, Reason, GENESIS};
use custodian::config::Config;
use custodian::domain::{PurposeId, Treatment};
use custodian::startup::Application;
use sqlx::{Connection, Row};
use std::time::{Duration, Instant};

const PURPOSES: [&str; 5] = [
    "customer_support",
    "marketing_analytics",
    "personalization",
    "email_marketing",
    "order_fulfilment",
];
const BLOCK: u64 = 256;
const SPAN_HOURS: i64 = 30 * 24;
/// A customer (internal id) with 10 events in a million.
const WATCHED: i64 = 4_242;

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

/// One timed call: median of `runs` answers (each must be 200).
async fn time_get(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    runs: usize,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .header("x-purpose", "compliance_audit")
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        times.push(t.elapsed());
        anyhow::ensure!(
            status == 200,
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        last = serde_json::from_slice(&body)?;
    }
    Ok((median(times), last))
}

fn rfc3339(micros: i64) -> String {
    custodian::clock::rfc3339(micros)
}

async fn run(label: &str, mut config: Config) -> anyhow::Result<()> {
    let total = env_u64("AUDIT_STATS_EVENTS", 1_000_000);
    let runs = usize::try_from(env_u64("AUDIT_STATS_RUNS", 20)).unwrap_or(20);
    let data_dir = tempfile::tempdir()?;
    config.data_dir = data_dir.path().to_path_buf();
    config.policy_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    config.instance_id = "gateway".to_owned();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.rate_limit_per_second = 0;
    config.recs.build_on_start = false;
    config.recs.rebuild_interval_secs = 0;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let db = &state.db;

    // The store, written directly in blocks (the writer's layout) with
    // times spread evenly over the 30 days before now, under an instance
    // of its own beside the gateway's.
    let now = state.clock.now_micros();
    let start = (now / HOUR_MICROS - SPAN_HOURS) * HOUR_MICROS;
    let started = Instant::now();
    let blocks = total.div_ceil(BLOCK);
    let mut head = (0, GENESIS);
    let mut written = 0;
    for b in 0..blocks {
        let at = start
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
    while store::index_customers(db, "bench", 1_000).await? > 0 {}
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

    // The console's calls, over HTTP, as a compliance officer.
    let token = state.authenticator.mint_dev_token(
        "bench-officer",
        &["compliance_officer".to_owned()],
        Duration::from_secs(3600),
        state.clock.now_secs(),
    )?;
    let client = reqwest::Client::new();
    let week_ago = now - 7 * 24 * HOUR_MICROS;
    let range = format!(
        "from={}&to={}",
        rfc3339(week_ago),
        rfc3339(week_ago + 24 * HOUR_MICROS)
    );
    // A cursor deep in the trail: the next page after the first day's newest.
    let (_, first_day) = time_get(
        &client,
        &base,
        &token,
        &format!(
            "/v1/audit?limit=100&to={}",
            rfc3339(start + 24 * HOUR_MICROS)
        ),
        1,
    )
    .await?;
    let deep = first_day["next_cursor"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no cursor on the first day's page"))?
        .to_owned();
    let calls: Vec<(&str, String, Option<usize>)> = vec![
        (
            "audit list, first page, no filter",
            "/v1/audit?limit=100".into(),
            Some(100),
        ),
        (
            "audit list, actor",
            "/v1/audit?limit=100&actor=svc-07".into(),
            Some(100),
        ),
        (
            "audit list, decision=deny",
            "/v1/audit?limit=100&decision=deny".into(),
            Some(100),
        ),
        (
            "audit list, one day a week ago",
            format!("/v1/audit?limit=100&{range}"),
            Some(100),
        ),
        (
            "audit list, actor + decision + one day",
            format!("/v1/audit?limit=100&actor=svc-03&decision=deny&{range}"),
            Some(100),
        ),
        (
            "audit list, actor + decision matching nothing (whole trail)",
            "/v1/audit?limit=100&actor=svc-07&decision=deny".into(),
            Some(0),
        ),
        (
            "audit list, deep cursor page (30 days back)",
            format!("/v1/audit?limit=100&cursor={deep}"),
            Some(100),
        ),
        (
            "one customer's view (10 events in the trail)",
            format!("/v1/audit?limit=100&customer_id={WATCHED}"),
            Some(10),
        ),
        (
            "stats: decisions over time (30 days by day)",
            "/v1/audit/stats/decisions?days=30".into(),
            None,
        ),
        (
            "stats: denials by actor and reason",
            "/v1/audit/stats/denials?days=30&limit=10".into(),
            None,
        ),
        (
            "stats: accesses by purpose",
            "/v1/audit/stats/purposes?days=30".into(),
            None,
        ),
    ];
    for (name, path, want) in calls {
        let (t, body) = time_get(&client, &base, &token, &path, runs).await?;
        if let Some(want) = want {
            let got = body["events"].as_array().map_or(0, Vec::len);
            // The customer's view also lists the reads of it so far (each
            // read touches the customer it asks about).
            anyhow::ensure!(
                if want == 0 { got == 0 } else { got >= want },
                "{name}: {got} events, expected {want}"
            );
        }
        println!("{label}: {name}: median {:.2} ms", t.as_secs_f64() * 1e3);
    }

    // The plan of the filtered list's block query (as `audit::export`
    // builds it for actor + decision), on the data just written.
    let explain = if label == "sqlite" {
        "EXPLAIN QUERY PLAN"
    } else {
        "EXPLAIN (ANALYZE, COSTS OFF)"
    };
    let sql = format!(
        "{explain} SELECT b.at, b.instance, b.first_seq, b.events FROM audit_blocks b \
         WHERE (b.first_seq > COALESCE((SELECT p.counted_through FROM audit_stats_progress p \
         WHERE p.instance = b.instance), 0) \
         OR EXISTS (SELECT 1 FROM audit_stats s WHERE s.instance = b.instance \
         AND s.hour = b.at / {HOUR_MICROS} AND s.events > 0 AND s.actor = $1 AND s.decision = $2)) \
         ORDER BY b.at DESC, b.instance DESC, b.first_seq DESC LIMIT 200"
    );
    for row in sqlx::query(&sql)
        .bind("svc-07")
        .bind("deny")
        .fetch_all(&db.pool)
        .await?
    {
        let line: String = row.try_get(row.len() - 1)?;
        println!("{label}: plan: {line}");
    }

    // Without summaries: decode every block and count decisions by day.
    let started = Instant::now();
    let mut after = 0;
    let mut days = std::collections::BTreeMap::<i64, (u64, u64)>::new();
    loop {
        let (rows, next) = store::blocks_from(db, "bench", after, 1_000).await?;
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
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        run("sqlite", Config::default()).await?;

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
