//! Recommendation answers over HTTP against the gated read, in one run.
//!
//! Starts the real server on an ephemeral port with the demo shop
//! (3,000 customers, 10,000 orders), builds the recommendation models, then
//! drives four routes in alternating rounds with a closed loop of
//! concurrent clients on loopback:
//!
//! - `GET /v1/customers/{id}` as `support_agent` (the gated read: every
//!   stage, field decryption, the audit event);
//! - `GET /v1/recommendations/customers/{pseudonym}?mode=repeat` as
//!   `recommendation_service` (consent check, model look-up, audit event
//!   with the served block);
//! - `GET /v1/recommendations/products/{sku}/together`;
//! - `GET /v1/recommendations/popular?country=…`.
//!
//! Prints requests/s, p50 and p99 latency per route and concurrency, and
//! each recommendation route's p50 as a ratio of the gated read's from the
//! same round. Every answer must be 200: a non-200 aborts the run.
//!
//! ```sh
//! cargo bench --bench recs_http                       # SQLite
//! RECS_HTTP_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo bench --bench recs_http                   # also PostgreSQL (scratch database)
//! # knobs: RECS_HTTP_SECS=5 RECS_HTTP_ROUNDS=3 RECS_HTTP_CONNS="1 32"
//! ```

use custodian::clock::{Clock, SystemClock};
use custodian::config::Config;
use custodian::domain::PurposeId;
use custodian::startup::Application;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Route {
    name: &'static str,
    token: String,
    purpose: &'static str,
    paths: Vec<String>,
}

struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    personalized: usize,
    requests: usize,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A closed loop: `conns` clients, each sending the next request when the
/// previous answer is read, for `secs` seconds.
async fn drive(
    client: &reqwest::Client,
    base: &str,
    route: &Route,
    conns: usize,
    secs: u64,
) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let paths = Arc::new(route.paths.clone());
    let mut tasks = Vec::new();
    for worker in 0..conns {
        let (client, paths) = (client.clone(), paths.clone());
        let (url, token, purpose) = (base.to_owned(), route.token.clone(), route.purpose);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(worker as u64);
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut personalized = 0;
            while Instant::now() < deadline {
                let path = &paths[rng.gen_range(0..paths.len())];
                let started = Instant::now();
                let response = client
                    .get(format!("{url}{path}"))
                    .bearer_auth(&token)
                    .header("x-purpose", purpose)
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                let body = response.bytes().await.expect("body");
                latencies.push(started.elapsed().as_micros() as u32);
                assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
                if body.windows(19).any(|w| w == b"\"personalized\":true") {
                    personalized += 1;
                }
            }
            (latencies, personalized)
        }));
    }
    let mut all = Vec::new();
    let mut personalized = 0;
    for task in tasks {
        let (latencies, p) = task.await.expect("worker");
        all.extend(latencies);
        personalized += p;
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64;
    Sample {
        rps: all.len() as f64 / secs as f64,
        p50_us: at(0.5),
        p99_us: at(0.99),
        personalized,
        requests: all.len(),
    }
}

async fn run_backend(name: &str, database_url: Option<String>) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        policy_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"),
        instance_id: "recs-http-bench".to_owned(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.rate_limit_per_second = 0;
    config.recs.build_on_start = false;
    config.recs.rebuild_interval_secs = 0;
    config.log.level = "warn".to_owned();
    if let Some(url) = database_url {
        config.database.url = url;
    }
    let app = Application::build(config)
        .await
        .expect("application builds");
    let state = app.state().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let summary = custodian::demo::load_demo(
        &state.db,
        &state.vault,
        custodian::demo::DEFAULT_SEED,
        custodian::demo::DemoSize::DEFAULT,
    )
    .await
    .expect("demo shop");
    eprintln!("{name}: {summary}");
    let now = SystemClock.now_secs();
    let token = |role: &str| {
        state
            .authenticator
            .mint_dev_token(
                &format!("{role}-bench"),
                &[role.to_owned()],
                Duration::from_secs(3600),
                now,
            )
            .expect("dev token")
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let built = client
        .post(format!("{base}/v1/admin/recs/rebuild"))
        .bearer_auth(token("dpo"))
        .header("x-purpose", "compliance_audit")
        .send()
        .await
        .unwrap();
    assert_eq!(
        built.status(),
        200,
        "rebuild: {}",
        built.text().await.unwrap()
    );
    eprintln!("{name}: model {}", built.text().await.unwrap());

    let customers: Vec<String> =
        sqlx::query_scalar("SELECT external_id FROM customers ORDER BY id")
            .fetch_all(&state.db.pool)
            .await
            .unwrap();
    let skus: Vec<String> = sqlx::query_scalar("SELECT sku FROM products ORDER BY id")
        .fetch_all(&state.db.pool)
        .await
        .unwrap();
    let personalization = PurposeId("personalization".to_owned());
    let pseudonymizer = state.vault.pseudonymizer();
    let routes = [
        Route {
            name: "gated read /v1/customers/{id}",
            token: token("support_agent"),
            purpose: "customer_support",
            paths: customers
                .iter()
                .map(|c| format!("/v1/customers/{c}"))
                .collect(),
        },
        Route {
            name: "recs /customers/{pseudonym}",
            token: token("recommendation_service"),
            purpose: "personalization",
            paths: customers
                .iter()
                .map(|c| {
                    let p = pseudonymizer.token(&personalization, c);
                    format!("/v1/recommendations/customers/{p}?n=10&mode=repeat")
                })
                .collect(),
        },
        Route {
            name: "recs /products/{sku}/together",
            token: token("recommendation_service"),
            purpose: "personalization",
            paths: skus
                .iter()
                .map(|s| format!("/v1/recommendations/products/{s}/together?n=10"))
                .collect(),
        },
        Route {
            name: "recs /popular?country",
            token: token("recommendation_service"),
            purpose: "personalization",
            paths: ["United Kingdom", "Germany", "France"]
                .iter()
                .map(|c| {
                    format!(
                        "/v1/recommendations/popular?country={}&n=10",
                        c.replace(' ', "%20")
                    )
                })
                .collect(),
        },
    ];

    let secs: u64 = env_or("RECS_HTTP_SECS", "5").parse().unwrap();
    let rounds: usize = env_or("RECS_HTTP_ROUNDS", "3").parse().unwrap();
    for route in &routes {
        drive(&client, &base, route, 8, 1).await; // warm-up
    }
    for conns in env_or("RECS_HTTP_CONNS", "1 32").split_whitespace() {
        let conns: usize = conns.parse().unwrap();
        println!(
            "\n== {name}: {conns} concurrent clients, {rounds} rounds of {secs} s per route =="
        );
        println!(
            "{:<5} {:<32} {:>10} {:>9} {:>9} {:>14} {:>13}",
            "round", "route", "req/s", "p50 µs", "p99 µs", "p50 / gated", "personalized"
        );
        let mut ratios = vec![Vec::new(); routes.len()];
        for round in 1..=rounds {
            let mut gated_p50 = 0.0;
            for (i, route) in routes.iter().enumerate() {
                let s = drive(&client, &base, route, conns, secs).await;
                if i == 0 {
                    gated_p50 = s.p50_us;
                }
                ratios[i].push(s.p50_us / gated_p50);
                let share = if i == 1 {
                    format!("{:.0}%", 100.0 * s.personalized as f64 / s.requests as f64)
                } else {
                    String::new()
                };
                println!(
                    "{round:<5} {:<32} {:>10.0} {:>9.0} {:>9.0} {:>13.2}x {:>13}",
                    route.name,
                    s.rps,
                    s.p50_us,
                    s.p99_us,
                    s.p50_us / gated_p50,
                    share
                );
            }
        }
        for (route, r) in routes.iter().zip(&mut ratios).skip(1) {
            r.sort_by(f64::total_cmp);
            println!(
                "median p50 ratio, {} / gated read: {:.2}",
                route.name,
                r[r.len() / 2]
            );
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run_backend("SQLite", None).await;
        if let Ok(admin) = std::env::var("RECS_HTTP_BENCH_PG") {
            let db = format!("custodian_recs_http_{}", std::process::id());
            let pool = sqlx::PgPool::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&pool)
                .await
                .unwrap();
            let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
            run_backend("PostgreSQL", Some(url)).await;
            sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
                .execute(&pool)
                .await
                .unwrap();
        }
    });
}
