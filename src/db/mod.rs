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
use std::sync::Arc;
use std::time::Duration;

pub mod bulk;
pub mod consent_stats;
pub mod consents;
pub mod customers;
pub mod events;
pub mod orders;
pub mod policy_store;
pub mod products;

use crate::config::{redact_url, Config};

/// What a store operation can fail with, classified once here so that the
/// HTTP boundary maps constraint violations to client errors (409, 422)
/// and infrastructure failures to 503/500 in one place.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    /// A unique constraint: the resource already exists.
    #[error("a resource with this identifier already exists")]
    Duplicate,
    /// A foreign key: something referenced does not exist.
    #[error("a referenced resource does not exist")]
    MissingReference,
    /// A check constraint: a value outside its allowed range.
    #[error("a value is outside its allowed range")]
    OutOfRange,
    /// The database cannot be reached (pool timeout, I/O, closed pool).
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or a damaged store. Logged, never shown.
    #[error(transparent)]
    Other(anyhow::Error),
}

pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    /// Adds what was being done to an internal failure (client errors
    /// keep their class).
    pub fn context(self, what: &'static str) -> Self {
        match self {
            Self::Other(e) => Self::Other(e.context(what)),
            Self::Unavailable(e) => Self::Unavailable(e.context(what)),
            other => other,
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Duplicate,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::MissingReference,
            sqlx::Error::Database(db) if db.is_check_violation() => Self::OutOfRange,
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable(error.into())
            }
            _ => Self::Other(error.into()),
        }
    }
}

impl From<anyhow::Error> for DbError {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<sqlx::Error>() {
            Ok(e) => e.into(),
            Err(e) => Self::Other(e),
        }
    }
}

/// `.context(..)` for store results, keeping the error's class.
pub trait DbContext<T> {
    fn context(self, what: &'static str) -> DbResult<T>;
}

impl<T, E: Into<DbError>> DbContext<T> for Result<T, E> {
    fn context(self, what: &'static str) -> DbResult<T> {
        self.map_err(|e| e.into().context(what))
    }
}

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
    /// SQLite: the audit trail's own database file, attached as `audit`.
    audit_file: Option<Arc<str>>,
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
        let audit_file = match backend {
            Backend::Sqlite => Some(Arc::from(sqlite_audit_file(&url)?)),
            Backend::Postgres => None,
        };
        // SQLite allows one writer at a time; more connections only add lock
        // waits, while readers still run in parallel under WAL.
        let size = match backend {
            Backend::Sqlite => config.database.max_connections.min(8),
            Backend::Postgres => config.database.max_connections,
        };
        if backend == Backend::Postgres {
            probe_postgres(&options, &url, acquire_timeout).await?;
        }
        let pool = pool_options(
            backend,
            size,
            acquire_timeout,
            audit_file.clone(),
            "".into(),
        )
        .connect_with(options.clone())
        .await
        .with_context(|| format!("cannot connect to the database at {}", redact_url(&url)))?;
        Ok(Self {
            pool,
            backend,
            url,
            options,
            acquire_timeout,
            audit_file,
        })
    }

    /// A separate pool of `size` connections to the same database, for a
    /// task that must never queue behind request traffic for a connection
    /// (the audit writer, which every request waits on). Connections are not
    /// pinged before use: such a task drops a connection after any error.
    pub async fn dedicated(&self, size: u32) -> anyhow::Result<Self> {
        self.dedicated_with(size, String::new()).await
    }

    /// [`Db::dedicated`] whose connections also run `session` after
    /// connecting (SQLite pragmas, or PostgreSQL `SET` statements: the
    /// caller writes them for its backend).
    pub async fn dedicated_with(&self, size: u32, session: String) -> anyhow::Result<Self> {
        let pool = pool_options(
            self.backend,
            size,
            self.acquire_timeout,
            self.audit_file.clone(),
            Arc::from(session),
        )
        .test_before_acquire(false)
        .connect_with(self.options.clone())
        .await
        .with_context(|| format!("cannot connect to the database at {}", self.display_url()))?;
        Ok(Self {
            pool,
            ..self.clone()
        })
    }

    /// Refreshes the query planner's statistics of `tables` (all when
    /// empty) after a bulk change. PostgreSQL only: autovacuum gets there
    /// minutes later, and until then plans assume the tables as they were
    /// (a segment on freshly imported Online Retail ran 4× slower). SQLite
    /// plans from its own heuristics here and has no statistics to refresh.
    pub async fn refresh_statistics(&self, tables: &[&str]) -> anyhow::Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let sql = if tables.is_empty() {
            "ANALYZE".to_owned()
        } else {
            format!("ANALYZE {}", tables.join(", "))
        };
        let done = sqlx::query(&sql).execute(&self.pool).await;
        anyhow::Context::context(done, "refreshing planner statistics")?;
        Ok(())
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
                .map_err(|e| {
                    anyhow::Error::new(e).context("database not reachable or not migrated")
                })?;
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

/// Pool settings shared by the main and the dedicated pools. On SQLite
/// every connection gets WAL mode, the same pragmas, and the audit trail's
/// file attached as schema `audit`: it has its own WAL and its own write
/// lock, so the audit writer never waits behind a data write (which is
/// what lets a write commit only after its event, as on PostgreSQL), and
/// audit commits do not invalidate the readers' cache of the data file.
/// Unqualified table names resolve across both files, so queries do not
/// name the schema.
fn pool_options(
    backend: Backend,
    size: u32,
    acquire_timeout: Duration,
    audit_file: Option<Arc<str>>,
    session: Arc<str>,
) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            let audit_file = audit_file.clone();
            let session = session.clone();
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
                    if let Some(file) = audit_file {
                        sqlx::query("ATTACH DATABASE $1 AS audit")
                            .bind(file.to_string())
                            .execute(&mut *conn)
                            .await?;
                        // FULL: the trail's WAL is synced at every commit.
                        // A write commits after its event and data leaves
                        // after it, so an operating-system crash must not
                        // lose an acknowledged event (NORMAL could).
                        conn.execute(
                            "PRAGMA audit.journal_mode = WAL; PRAGMA audit.synchronous = FULL;",
                        )
                        .await?;
                    }
                }
                if !session.is_empty() {
                    conn.execute(&*session).await?;
                }
                Ok(())
            })
        })
}

/// The audit trail's file beside a SQLite database file:
/// `…/custodian.db` → `…/custodian.audit.db`. The path is the one sqlx
/// opens (percent-decoded); in-memory databases are refused.
fn sqlite_audit_file(url: &str) -> anyhow::Result<String> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("database.url: cannot parse {}", redact_url(url)))?;
    let path = options.get_filename();
    let in_memory =
        url.contains("mode=memory") || path.to_string_lossy().starts_with("file:sqlx-in-memory");
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    match stem {
        Some(stem) if !in_memory && !stem.is_empty() && !stem.starts_with(':') => {
            let name = match path.extension() {
                Some(ext) => format!("{stem}.audit.{}", ext.to_string_lossy()),
                None => format!("{stem}.audit"),
            };
            Ok(path.with_file_name(name).to_string_lossy().into_owned())
        }
        _ => anyhow::bail!(
            "database.url: SQLite needs a database file (the audit trail is kept in a second \
             file beside it); in-memory databases are not supported"
        ),
    }
}

/// One direct connection before the pool: a pool retries until its acquire
/// timeout and then reports only `pool timed out`, where an operator needs
/// to hear at once that nothing listens at host:port.
async fn probe_postgres(
    options: &AnyConnectOptions,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let shown = redact_url(url);
    match tokio::time::timeout(timeout, options.connect()).await {
        Err(_) => anyhow::bail!(
            "cannot connect to the database at {shown}: no answer from {} within {}s",
            host_port(url),
            timeout.as_secs()
        ),
        Ok(Err(sqlx::Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            anyhow::bail!(
                "cannot connect to the database at {shown}: connection refused at {}",
                host_port(url)
            )
        }
        Ok(Err(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot connect to the database at {shown}")))
        }
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
    }
}

/// `host:port` of a PostgreSQL URL (port 5432 when absent), for messages.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.is_empty() { "localhost" } else { host };
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
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

#[cfg(test)]
mod tests {
    use super::{host_port, sqlite_audit_file};

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("postgres://u:pw@db.example:6432/x"),
            "db.example:6432"
        );
        assert_eq!(host_port("postgresql://db/x?sslmode=require"), "db:5432");
        assert_eq!(host_port("postgres:///x"), "localhost:5432");
    }

    #[test]
    fn the_audit_file_sits_beside_the_database_file() {
        assert_eq!(
            sqlite_audit_file("sqlite:///var/lib/custodian/custodian.db?mode=rwc").unwrap(),
            "/var/lib/custodian/custodian.audit.db"
        );
        assert_eq!(
            sqlite_audit_file("sqlite:data/shop").unwrap(),
            "data/shop.audit"
        );
        // The path sqlx opens, percent-decoded.
        assert_eq!(
            sqlite_audit_file("sqlite:///tmp/my%20shop/c.db").unwrap(),
            "/tmp/my shop/c.audit.db"
        );
        assert!(sqlite_audit_file("sqlite::memory:").is_err());
        assert!(sqlite_audit_file("sqlite://shop.db?mode=memory").is_err());
        assert!(sqlite_audit_file("sqlite://").is_err());
    }
}
