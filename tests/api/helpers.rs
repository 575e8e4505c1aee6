//! The test harness: starts the real application on an ephemeral port
//! against a fresh database (a new SQLite file, or a new PostgreSQL database
//! created for the test and dropped after it) and speaks HTTP to it.
//!
//! PostgreSQL tests run when `CUSTODIAN_TEST_DATABASE_URL` points at a server
//! (an admin URL such as `postgres://postgres@127.0.0.1:5432/postgres`);
//! without it they print a note and pass vacuously. `.ci/run` always sets it.

use custodian::clock::{ManualClock, SharedClock};
use custodian::config::Config;
use custodian::startup::Application;
use std::path::PathBuf;
use std::sync::Arc;

pub use custodian::db::Backend;

pub const PG_ENV: &str = "CUSTODIAN_TEST_DATABASE_URL";

#[allow(dead_code)]
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub config: Config,
    pub state: custodian::state::AppState,
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pg_database: Option<PgDatabase>,
}

/// The admin URL of the PostgreSQL test server, if configured.
pub fn pg_admin_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|v| !v.is_empty())
}

/// A test configuration: ephemeral port, fresh data directory, the shipped
/// policies, limits high enough not to disturb tests.
#[allow(clippy::field_reassign_with_default)] // reads as a list of test settings
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        policy_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"),
        instance_id: "test-instance".to_owned(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.rate_limit_per_second = 0;
    config.server.shutdown_grace_secs = 5;
    config.database.max_connections = 4;
    // Recommendation tests build when they mean to; no background build.
    config.recs.build_on_start = false;
    config.recs.rebuild_interval_secs = 0;
    // Tests write and ask at once: features always rebuilt when stale.
    config.analytics.feature_staleness_ms = 0;
    config
}

/// Starts the app on `backend` with the default test configuration.
/// Returns `None` for PostgreSQL when no test server is configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app after letting the test adjust the configuration.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    let pg_database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let Some(admin) = pg_admin_url() else {
                eprintln!("note: {PG_ENV} not set; skipping the PostgreSQL variant");
                return None;
            };
            let db = PgDatabase::create(&admin).await;
            config.database.url = db.url.clone();
            Some(db)
        }
    };
    adjust(&mut config);
    let clock = ManualClock::new(1_780_000_000_000_000);
    Some(start(backend, config, clock, data_dir, pg_database).await)
}

/// Builds and serves the application on an existing store and data directory.
async fn start(
    backend: Backend,
    config: Config,
    clock: ManualClock,
    data_dir: tempfile::TempDir,
    pg_database: Option<PgDatabase>,
) -> TestApp {
    let shared: SharedClock = Arc::new(clock.clone());
    let app = Application::build_with_clock(config.clone(), shared)
        .await
        .expect("application builds");
    let port = app.port();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        backend,
        config,
        state,
        clock,
        data_dir,
        stop: Some(tx),
        server: Some(server),
        pg_database,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Stops this server and starts a new process-like instance on the same
    /// store, data directory (keys) and clock: what a restart after a
    /// crash sees, since nothing but the store survives either.
    pub async fn restart(mut self) -> TestApp {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let pg = self.pg_database.take();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        let (backend, config, clock) = (self.backend, self.config.clone(), self.clock.clone());
        drop(self);
        start(backend, config, clock, data_dir, pg).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        if let Some(db) = self.pg_database.take() {
            db.drop_now().await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(db) = self.pg_database.take() {
            // Drop the per-test database even when the test panicked.
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(db.drop_now());
                }
            })
            .join()
            .ok();
        }
    }
}

/// A PostgreSQL database created for one test.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> Self {
        use sqlx::Connection;
        let name = format!("custodian_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(admin_url);
        Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn drop_now(&self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Declares one test that runs against both backends:
/// `both_backends!(name, async |app: TestApp| { ... });`, or with the
/// configuration adjusted first:
/// `both_backends!(name, config: |c: &mut Config| ..., async |app: TestApp| { ... });`
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        $crate::both_backends!($name, config: |_: &mut custodian::config::Config| {}, $body);
    };
    ($name:ident, config: $adjust:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $adjust)
                        .await
                        .unwrap();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $adjust)
                        .await
                {
                    ($body)(app).await;
                }
            }
        }
    };
}

/// Reads a JSON error envelope and returns its code.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    body["error"]["code"]
        .as_str()
        .expect("error.code present")
        .to_owned()
}

impl TestApp {
    /// Mints a development token for `roles`, valid for an hour of app time.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        self.state
            .authenticator
            .mint_dev_token(
                sub,
                &roles,
                std::time::Duration::from_secs(3600),
                custodian::clock::Clock::now_secs(&self.clock),
            )
            .unwrap()
    }

    /// A request builder with a bearer token for `role` and a purpose.
    pub fn as_role(
        &self,
        method: reqwest::Method,
        path: &str,
        role: &str,
        purpose: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(self.token(&format!("{role}-user"), &[role]))
            .header("x-purpose", purpose)
    }

    /// Creates a customer through the API as the ingest service.
    pub async fn create_customer(&self, body: serde_json::Value) -> reqwest::Response {
        self.as_role(
            reqwest::Method::POST,
            "/v1/customers",
            "ingest_service",
            "data_ingestion",
        )
        .json(&body)
        .send()
        .await
        .unwrap()
    }

    /// Audit events of every chain, by seq, straight from the store.
    pub async fn audit_rows(&self) -> Vec<(String, String, String, i64, String)> {
        self.audit_events()
            .await
            .into_iter()
            .map(|s| {
                let e = s.event;
                (
                    e.actor,
                    e.action.as_str().to_owned(),
                    e.decision.as_str().to_owned(),
                    i64::from(e.status),
                    e.reason,
                )
            })
            .collect()
    }

    /// The customers the derived customer index links to `event`. The index
    /// lags the writer: call `state.audit.index_now()` first.
    pub async fn indexed_customers(&self, event: &custodian::audit::StoredEvent) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT customer_id FROM audit_event_customers WHERE instance = $1 AND seq = $2 \
             ORDER BY customer_id",
        )
        .bind(&event.instance)
        .bind(event.seq)
        .fetch_all(&self.state.db.pool)
        .await
        .unwrap()
    }

    /// Every stored audit event of every chain, by seq (then instance),
    /// decoded from the blocks.
    pub async fn audit_events(&self) -> Vec<custodian::audit::StoredEvent> {
        use custodian::audit::store;
        let db = &self.state.db;
        let mut all = Vec::new();
        for instance in store::instances(db).await.unwrap() {
            for row in store::events_after(db, &instance, 0, i64::MAX)
                .await
                .unwrap()
            {
                match row {
                    store::ReadRow::Ok(e) => all.push(e),
                    store::ReadRow::Bad { seq, why } => panic!("{instance}#{seq}: {why}"),
                }
            }
        }
        all.sort_by(|a, b| (a.seq, &a.instance).cmp(&(b.seq, &b.instance)));
        all
    }
}

impl TestApp {
    /// Runs one SQL statement against the app's store, as someone with
    /// direct database access would.
    pub async fn exec(&self, sql: &str) {
        sqlx::query(sql).execute(&self.state.db.pool).await.unwrap();
    }

    /// Rewrites the audit block of `instance` that holds `seq`, as someone
    /// with write access to the database could: decode its events, change
    /// them, store the bytes back (stored hashes are kept unless `edit`
    /// changes them).
    pub async fn edit_audit_block(
        &self,
        instance: &str,
        seq: i64,
        edit: impl FnOnce(&mut Vec<custodian::audit::StoredEvent>),
    ) {
        use custodian::audit::store;
        let (first, bytes): (i64, Vec<u8>) = sqlx::query_as(
            "SELECT first_seq, events FROM audit_blocks WHERE instance = $1 \
             AND first_seq <= $2 ORDER BY first_seq DESC LIMIT 1",
        )
        .bind(instance)
        .bind(seq)
        .fetch_one(&self.state.db.pool)
        .await
        .unwrap();
        let mut events: Vec<_> = store::decode_block(instance, first, &bytes)
            .into_iter()
            .map(|r| match r {
                store::ReadRow::Ok(e) => e,
                store::ReadRow::Bad { why, .. } => panic!("{why}"),
            })
            .collect();
        edit(&mut events);
        // A careful forger keeps the block's columns consistent with it.
        let links: Vec<(i64, i64)> = events
            .iter()
            .flat_map(|e| e.event.customers.iter().map(|c| (*c, e.seq)))
            .collect();
        let (Some(new_first), Some(new_last)) = (events.first(), events.last()) else {
            panic!("edit left the block empty");
        };
        sqlx::query(
            "UPDATE audit_blocks SET events = $1, first_seq = $2, last_seq = $3, customers = $4 \
             WHERE instance = $5 AND first_seq = $6",
        )
        .bind(store::encode_block(&events))
        .bind(new_first.seq)
        .bind(new_last.seq)
        .bind(serde_json::to_string(&links).unwrap())
        .bind(instance)
        .bind(first)
        .execute(&self.state.db.pool)
        .await
        .unwrap();
    }

    /// Overwrites the stored bytes of one audit block.
    pub async fn set_audit_block_bytes(&self, instance: &str, first_seq: i64, bytes: Vec<u8>) {
        sqlx::query("UPDATE audit_blocks SET events = $1 WHERE instance = $2 AND first_seq = $3")
            .bind(bytes)
            .bind(instance)
            .bind(first_seq)
            .execute(&self.state.db.pool)
            .await
            .unwrap();
    }

    /// Makes the store refuse every audit insert (a trigger), to prove that
    /// requests fail closed.
    pub async fn refuse_audit_inserts(&self) {
        match self.backend {
            Backend::Sqlite => {
                self.exec(
                    "CREATE TRIGGER audit.audit_refuse BEFORE INSERT ON audit_blocks \
                     BEGIN SELECT RAISE(ABORT, 'refused'); END",
                )
                .await
            }
            Backend::Postgres => {
                self.exec(
                    "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                )
                .await;
                self.exec(
                    "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_blocks \
                     FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
                )
                .await;
            }
        }
    }

    /// Undoes [`TestApp::refuse_audit_inserts`].
    pub async fn allow_audit_inserts(&self) {
        self.exec(match self.backend {
            Backend::Sqlite => "DROP TRIGGER audit.audit_refuse",
            Backend::Postgres => "DROP TRIGGER audit_refuse ON audit_blocks",
        })
        .await;
    }
}
