//! The store: one sqlx pool over SQLite (embedded default) or PostgreSQL
//! (production), chosen by the URL at start.
//!
//! SQL is written once in the portable subset both engines accept (`$1`
//! placeholders, `ON CONFLICT`, `RETURNING`, BIGINT timestamps in
//! microseconds), and runs through sqlx's `Any` driver. Schema migrations are
//! per backend under `migrations/`, embedded in the binary and never edited
//! once released. Submodules hold the queries of one resource each.

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub mod bulk;
pub mod consents;
pub mod customers;
pub mod events;
pub mod orders;
pub mod policy_store;
pub mod products;

use crate::config::{redact_url, Config};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATOR,
            Self::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    url: String,
    options: AnyConnectOptions,
    acquire_timeout: Duration,
}

impl Db {
    /// Connects, creating the SQLite data directory if needed. Errors are one
    /// line, with the URL's password redacted.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = config.database_url();
        let backend = Backend::from_url(&url)
            .with_context(|| format!("database.url: unsupported scheme in {}", redact_url(&url)))?;
        if backend == Backend::Sqlite && config.database.url.is_empty() {
            prepare_data_dir(&config.data_dir)?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database.url: cannot parse {}", redact_url(&url)))?;
        let acquire_timeout = Duration::from_secs(config.database.connect_timeout_secs);
        // SQLite allows one writer at a time; more connections only add lock
        // waits, while readers still run in parallel under WAL.
        let size = match backend {
            Backend::Sqlite => config.database.max_connections.min(8),
            Backend::Postgres => config.database.max_connections,
        };
        let pool = pool_options(backend, size, acquire_timeout)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot connect to the database at {}", redact_url(&url)))?;
        Ok(Self {
            pool,
            backend,
            url,
            options,
            acquire_timeout,
        })
    }

    /// A separate pool of `size` connections to the same database, for a
    /// task that must never queue behind request traffic for a connection
    /// (the audit writer, which every request waits on). Connections are not
    /// pinged before use: such a task drops a connection after any error.
    pub async fn dedicated(&self, size: u32) -> anyhow::Result<Self> {
        let pool = pool_options(self.backend, size, self.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(self.options.clone())
            .await
            .with_context(|| format!("cannot connect to the database at {}", self.display_url()))?;
        Ok(Self {
            pool,
            ..self.clone()
        })
    }

    /// Applies pending migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .context("database migration failed")
    }

    /// Ready means: the database answers and every embedded migration is applied.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .context("database not reachable or not migrated")?;
        let expected = self.backend.migrator().iter().count();
        if usize::try_from(applied).unwrap_or(0) < expected {
            anyhow::bail!("migrations pending: {applied} of {expected} applied");
        }
        Ok(())
    }

    /// The connection URL, password redacted (for logs and status output).
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Pool settings shared by the main and the dedicated pools; on SQLite
/// every connection gets WAL mode and the same pragmas.
fn pool_options(backend: Backend, size: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // temp_store: statement journals stay in memory instead
                    // of a temp file per multi-row write.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                         PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
}

/// Creates the data directory and checks it is writable, so a read-only
/// directory fails at start with one clear line instead of at first write.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("data_dir {}: cannot create directory", dir.display()))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data_dir {}: directory is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
