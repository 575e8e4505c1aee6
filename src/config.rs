//! Configuration: defaults, then a TOML file (`--config`), then environment
//! variables (`CUSTODIAN_…`, nested keys joined with `__`, for example
//! `CUSTODIAN_SERVER__LISTEN`). `DATABASE_URL` and `CUSTODIAN_MASTER_KEY` are
//! accepted as the conventional shortcuts. Unknown keys are refused and every
//! validation error names the setting, so a typo fails at start instead of
//! being silently ignored.

use crate::pipeline::authenticate::AuthConfig;
use crate::secret::SecretString;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Whether the process may run with generated development keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Generates a master key into the data directory and accepts HS256 dev
    /// tokens, with loud warnings.
    Development,
    /// Refuses to start without real keys.
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    /// Directory for the SQLite database and development keys.
    pub data_dir: PathBuf,
    /// Directory holding `model.conf`, `policy.csv`, `purposes.toml`, `fields.toml`.
    pub policy_dir: PathBuf,
    /// Name of this gateway instance; each instance owns one audit chain.
    /// Empty means "derive from the host name".
    pub instance_id: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub crypto: CryptoConfig,
    pub audit: AuditConfig,
    pub privacy: PrivacyConfig,
    pub analytics: AnalyticsConfig,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    /// Largest page a list route returns.
    pub max_page_size: u32,
    /// Recommendation models (see `crate::recs`).
    pub recs: crate::recs::RecsConfig,
    /// Data subject requests (see `dsr`).
    pub dsr: DsrConfig,
}

/// Data subject requests: deadlines and how long generated documents live.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DsrConfig {
    /// Days from receipt to the due date (GDPR Art. 12(3): one month).
    pub deadline_days: u32,
    /// Days one extension adds (Art. 12(3): two further months).
    pub extension_days: u32,
    /// Hours an access document or portability archive stays downloadable.
    pub document_ttl_hours: u32,
}

impl Default for DsrConfig {
    fn default() -> Self {
        Self {
            deadline_days: 30,
            extension_days: 60,
            document_ttl_hours: 72,
        }
    }
}

/// How policy changes propagate between instances.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// How often each instance checks the stored policy revision (PostgreSQL
    /// instances are also notified at once through LISTEN/NOTIFY).
    pub reload_poll_ms: u64,
    /// Accept policy rules with the `*` purpose (a permission for every
    /// purpose). Off by default: each permission names its one purpose.
    pub allow_wildcard_purpose: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            reload_poll_ms: 500,
            allow_wildcard_purpose: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Time budget of one request (504 above).
    pub request_timeout_ms: u64,
    /// Per-principal request rate; 0 disables the limit.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Time given to in-flight requests on SIGTERM / Ctrl-C.
    pub shutdown_grace_secs: u64,
    /// A client must send a request's complete header within this time
    /// (HTTP/1; idle keep-alive connections too), or the connection is
    /// closed: slow-header clients cannot hold connections open.
    pub header_read_timeout_ms: u64,
    /// Open connections at most; past it new ones get a 503 and are closed.
    pub max_connections: usize,
    /// Open connections from one client address at most.
    pub max_connections_per_ip: usize,
    /// Benchmarks only (`bench/load.sh`): mounts an unaudited copy of the
    /// customer read at `/bench/baseline/customers/{id}` to measure the
    /// audit trail's cost. Refused in production mode; see `http::bench`.
    pub bench_baseline_route: bool,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>`
    /// (compared in constant time); otherwise anyone who reaches the port
    /// may scrape. Prefer `metrics_token_file`.
    pub metrics_token: Option<SecretString>,
    /// A file holding the metrics token (refused when readable by others).
    pub metrics_token_file: Option<PathBuf>,
    /// TLS termination (`[server.tls]`, both files or neither); plain HTTP
    /// when unset. Reloaded on SIGHUP.
    pub tls: crate::http::tls::TlsConfig,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; empty means SQLite in `data_dir`.
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `custodian=debug`.
    pub level: String,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// Base64 of the 32-byte master key (KEK). Prefer `master_key_file`.
    pub master_key: Option<SecretString>,
    /// File holding the master key; refused when readable by group or others.
    pub master_key_file: Option<PathBuf>,
}

/// The audit trail (see `audit`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Ed25519 PKCS#8 key that signs checkpoints; refused when readable by
    /// group or others. Required in production; development generates
    /// `data_dir/audit-signing.pk8`.
    pub signing_key_file: Option<PathBuf>,
    /// Sign a checkpoint after this many events...
    pub checkpoint_every_events: u64,
    /// ...or after this many seconds with unsigned events, whichever first.
    pub checkpoint_interval_secs: u64,
    /// Events waiting for the writer; a full queue fails requests closed (503).
    pub queue_capacity: usize,
    /// Most events committed in one transaction (group commit).
    pub max_batch: usize,
    /// `custodian audit prune` without `--before` removes events older than this.
    pub retention_days: u32,
    /// Longest the writer waits for the trail's store on one batch (lock
    /// and statement timeouts on its own connection: SQLite `busy_timeout`,
    /// PostgreSQL `lock_timeout` and `statement_timeout`). Past it the
    /// batch fails closed (503 `audit_unavailable`) and `/readyz` turns
    /// unready, well before the request timeout. Default 2000.
    pub write_timeout_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            checkpoint_every_events: 1000,
            checkpoint_interval_secs: 60,
            queue_capacity: 10_000,
            max_batch: 512,
            retention_days: 365,
            write_timeout_ms: 2_000,
        }
    }
}

/// Output privacy of analytics (see `privacy` and `pipeline::release`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// A released number resting on fewer distinct customers than this is
    /// suppressed ("fewer than k"); recommendations never serve an item
    /// pair, rule or neighbour resting on fewer.
    pub k: u32,
    /// Segments and profiles (`privacy`): epsilon one fresh noisy answer
    /// spends, split over its measures.
    pub epsilon_per_query: f64,
    /// Epsilon each (principal, purpose) may spend per window.
    pub budget_epsilon: f64,
    /// Length of a budget window; the budget refreshes at its end.
    pub budget_window_secs: u64,
}

/// The analytics' feature table (`analytics::features`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// How far behind new orders, events and customers the per-customer
    /// feature table may be (milliseconds) before a question rebuilds it.
    /// Under a steady stream of writes every question would otherwise
    /// rebuild the whole table. Consent is never stale: it is applied in
    /// each query. 0 rebuilds whenever the sources moved.
    pub feature_staleness_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            feature_staleness_ms: 2_000,
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            k: 10,
            // 0.5 per question: a count's noise has scale 2 (95% within
            // ±6), precise enough for audiences of hundreds, and 20 fresh
            // questions per week before the budget of 10 is spent.
            epsilon_per_query: 0.5,
            budget_epsilon: 10.0,
            budget_window_secs: 7 * 86_400,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            data_dir: PathBuf::from("./custodian-data"),
            policy_dir: PathBuf::from("policies"),
            instance_id: String::new(),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            crypto: CryptoConfig::default(),
            audit: AuditConfig::default(),
            privacy: PrivacyConfig::default(),
            analytics: AnalyticsConfig::default(),
            auth: AuthConfig::default(),
            policy: PolicyConfig::default(),
            max_page_size: 1000,
            dsr: DsrConfig::default(),
            recs: crate::recs::RecsConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
            shutdown_grace_secs: 30,
            header_read_timeout_ms: 5_000,
            max_connections: 4096,
            max_connections_per_ip: 256,
            bench_baseline_route: false,
            metrics_token: None,
            metrics_token_file: None,
            tls: Default::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            connect_timeout_secs: 5,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

impl fmt::Debug for CryptoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoConfig")
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .field("master_key_file", &self.master_key_file)
            .finish()
    }
}

/// Hides the password of a database URL (`postgres://user:***@host/db`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = url.get(scheme_end + 3..at).unwrap_or_default();
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{}:***{}",
                url.get(..scheme_end + 3).unwrap_or_default(),
                user,
                url.get(at..).unwrap_or_default()
            )
        }
        _ => url.to_owned(),
    }
}

/// A configuration problem, always naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Environment variables with our prefix that are not settings.
/// `CUSTODIAN_CONFIG` names the file itself (read by the command line);
/// `CUSTODIAN_LOG` is a log filter checked by [`log_filter`].
const NON_SETTING_VARS: &[&str] = &["test_database_url", "master_key", "log", "config"];

impl Config {
    /// Loads defaults < `file` < environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "--config {}: file not found",
                    path.display()
                )));
            }
            check_toml_syntax(path)?;
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(
                Env::prefixed("CUSTODIAN_")
                    .ignore(NON_SETTING_VARS)
                    .split("__"),
            )
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(
                Env::raw()
                    .only(&["CUSTODIAN_MASTER_KEY"])
                    .map(|_| "crypto.master_key".into()),
            );
        let config: Config = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_owned()));
        if self.server.max_body_bytes == 0 {
            return err("server.max_body_bytes: must be greater than 0");
        }
        if self.audit.write_timeout_ms == 0
            || self.audit.write_timeout_ms >= self.server.request_timeout_ms
        {
            return err("audit.write_timeout_ms: must be greater than 0 and below server.request_timeout_ms");
        }
        if self.server.header_read_timeout_ms == 0 {
            return err("server.header_read_timeout_ms: must be greater than 0");
        }
        if self.server.max_connections == 0 || self.server.max_connections_per_ip == 0 {
            return err(
                "server.max_connections, server.max_connections_per_ip: must be greater than 0",
            );
        }
        self.server.tls.paths().map_err(ConfigError)?;
        if self.server.request_timeout_ms == 0 {
            return err("server.request_timeout_ms: must be greater than 0");
        }
        if self.server.rate_limit_per_second > 0 && self.server.rate_limit_burst == 0 {
            return err("server.rate_limit_burst: must be greater than 0 when rate limiting is on");
        }
        if self.database.max_connections == 0 {
            return err("database.max_connections: must be greater than 0");
        }
        if self.privacy.k < 2 {
            // k = 1 would release numbers about single customers.
            return err("privacy.k: must be at least 2");
        }
        self.privacy.validate().map_err(ConfigError)?;
        let url = self.database.url.as_str();
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return err("database.url: must start with sqlite:, postgres:// or postgresql://");
        }
        if self.instance_id.len() > 64
            || !self
                .instance_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err("instance_id: at most 64 characters of [A-Za-z0-9._-]");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return err("log.level: not a valid tracing filter (try \"info\")");
        }
        if self.mode == Mode::Production
            && self.crypto.master_key.is_none()
            && self.crypto.master_key_file.is_none()
        {
            return err(
                "crypto.master_key_file: production mode needs a master key (CUSTODIAN_MASTER_KEY or crypto.master_key_file)",
            );
        }
        self.audit.validate(self.mode)?;
        if self.mode == Mode::Production && self.server.bench_baseline_route {
            return err("server.bench_baseline_route: serves data without audit events; refused in production mode");
        }
        if self.policy.reload_poll_ms == 0 {
            return err("policy.reload_poll_ms: must be greater than 0");
        }
        if !(1..=crate::http::validate::PAGE_LIMIT_MAX).contains(&self.max_page_size) {
            return err("max_page_size: must be between 1 and 1000");
        }
        if !(1..=3650).contains(&self.dsr.deadline_days) {
            return err("dsr.deadline_days: must be between 1 and 3650");
        }
        if self.dsr.extension_days > 3650 {
            return err("dsr.extension_days: must be at most 3650");
        }
        if !(1..=8760).contains(&self.dsr.document_ttl_hours) {
            return err("dsr.document_ttl_hours: must be between 1 and 8760");
        }
        if self.mode == Mode::Production
            && (self.auth.dev_hs256_secret.is_some() || self.auth.dev_hs256_secret_file.is_some())
        {
            return err(
                "auth.dev_hs256_secret: development tokens are not allowed in production mode",
            );
        }
        if self.mode == Mode::Production
            && self.auth.public_keys_file.is_none()
            && self.auth.jwks_url.is_none()
        {
            return err("auth.public_keys_file: production mode needs public verification keys (or auth.jwks_url)");
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or SQLite in `data_dir`.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("custodian.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// This instance's audit chain name.
    pub fn instance(&self) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "custodian".to_owned())
    }
}

impl AuditConfig {
    fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_owned()));
        if self.checkpoint_every_events == 0 {
            return err("audit.checkpoint_every_events: must be greater than 0");
        }
        if self.checkpoint_interval_secs == 0 {
            return err("audit.checkpoint_interval_secs: must be greater than 0");
        }
        if self.queue_capacity == 0 {
            return err("audit.queue_capacity: must be greater than 0");
        }
        if !(1..=4096).contains(&self.max_batch) {
            return err("audit.max_batch: must be between 1 and 4096");
        }
        if self.retention_days == 0 {
            return err("audit.retention_days: must be greater than 0");
        }
        if mode == Mode::Production && self.signing_key_file.is_none() {
            return err("audit.signing_key_file: production mode needs an audit signing key (Ed25519 PKCS#8)");
        }
        Ok(())
    }
}

/// Parses the file once on its own, so a syntax error is one line naming the
/// file, line and column (figment's message spans several lines).
fn check_toml_syntax(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: cannot read: {e}", path.display())))?;
    match text.parse::<toml::Table>() {
        Ok(_) => Ok(()),
        Err(e) => {
            let (line, column) = e
                .span()
                .map(|span| line_column(&text, span.start))
                .unwrap_or((1, 1));
            Err(ConfigError(format!(
                "{}:{line}:{column}: TOML syntax error: {}",
                path.display(),
                e.message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            )))
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The log filter in force: `CUSTODIAN_LOG` when set (refused when it does
/// not parse, like a bad `log.level`), else `log.level`. PostgreSQL notices
/// (`... already exists, skipping`) are chatter for an operator, so sqlx's
/// notice target is held at `warn` unless the filter names sqlx itself.
pub fn log_filter(config: &LogConfig) -> Result<tracing_subscriber::EnvFilter, ConfigError> {
    let directives = match std::env::var("CUSTODIAN_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&v).map_err(|_| {
                ConfigError("CUSTODIAN_LOG: not a valid tracing filter (try \"info\")".to_owned())
            })?;
            v
        }
        _ => config.level.clone(),
    };
    let directives = if directives.contains("sqlx") {
        directives
    } else {
        format!("{directives},sqlx::postgres::notice=warn")
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|_| ConfigError("log.level: not a valid tracing filter (try \"info\")".to_owned()))
}

/// Turns a figment error into one line naming the setting.
fn describe(error: figment::Error) -> String {
    let mut lines = Vec::new();
    for e in error {
        let path = e.path.join(".");
        let kind = e.kind.to_string();
        if path.is_empty() {
            lines.push(kind);
        } else {
            lines.push(format!("{path}: {kind}"));
        }
    }
    lines.join("; ")
}

#[cfg(test)]
// figment::Jail returns its own large error type; tests only.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_in_file_is_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlistn = \"127.0.0.1:1\"\n")?;
            let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
            assert!(err.0.contains("listn"), "{}", err.0);
            Ok(())
        });
    }

    #[test]
    fn env_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nlisten = \"127.0.0.1:1000\"\n")?;
            jail.set_env("CUSTODIAN_SERVER__LISTEN", "127.0.0.1:2000");
            jail.set_env("DATABASE_URL", "postgres://u:hunter2@h/db");
            let c = Config::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(c.server.listen.port(), 2000);
            assert_eq!(c.database_url(), "postgres://u:hunter2@h/db");
            assert!(!format!("{:?}", c).contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CUSTODIAN_SERVER__MAX_BODY_BYTES", "lots");
            let err = Config::load(None).unwrap_err();
            assert!(err.0.contains("server.max_body_bytes"), "{}", err.0);
            Ok(())
        });
    }

    #[test]
    fn production_without_key_is_refused() {
        let c = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.contains("master key"));
    }

    #[test]
    fn production_without_audit_key_is_refused() {
        let mut c = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        c.crypto.master_key_file = Some("/k".into());
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("audit.signing_key_file"));
        c.audit.signing_key_file = Some("/a".into());
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("auth.public_keys_file"));
        c.auth.public_keys_file = Some("/jwks.json".into());
        c.validate().unwrap();
        c.auth.dev_hs256_secret_file = Some("/dev".into());
        assert!(c
            .validate()
            .unwrap_err()
            .0
            .contains("auth.dev_hs256_secret"));
    }

    #[test]
    fn custodian_config_variable_is_not_a_setting() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "max_page_size = 7\n")?;
            jail.set_env("CUSTODIAN_CONFIG", "c.toml");
            let c = Config::load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(c.max_page_size, 7);
            Ok(())
        });
    }

    #[test]
    fn toml_syntax_error_is_one_line_with_position() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "mode = \"development\"\n[server\nlisten = 1\n")?;
            let err = Config::load(Some(Path::new("c.toml"))).unwrap_err();
            assert!(err.0.starts_with("c.toml:2:"), "{}", err.0);
            assert!(!err.0.contains('\n'), "{}", err.0);
            Ok(())
        });
    }

    #[test]
    fn bad_log_variable_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CUSTODIAN_LOG", "custodian=lots");
            let err = log_filter(&LogConfig::default()).unwrap_err();
            assert!(err.0.contains("CUSTODIAN_LOG"), "{}", err.0);
            jail.set_env("CUSTODIAN_LOG", "debug");
            log_filter(&LogConfig::default()).unwrap();
            Ok(())
        });
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }

    #[test]
    fn redacts_database_password() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
