//! Data quality checks, in the vocabulary data teams know from dbt, Soda
//! and Deequ: completeness, uniqueness, accepted values, ranges,
//! referential integrity and freshness, per source, each with a warn or
//! error severity.
//!
//! A check counts the rows it looked at and the rows that failed; its
//! verdict is `pass` when none failed, otherwise `warn` or `fail` by its
//! severity. Every run is stored (`quality_runs`, `quality_results`), so a
//! report shows the trend of each check over the last runs. Checks read
//! only plain columns and blind indexes: no personal value is decrypted,
//! and the report holds counts only.
//!
//! A source is an `orders.source` (online_retail, cdnow, a mapped source)
//! or a mapped customer source (`customer_sources.source`). A source's
//! customers are those its orders name or it brought.
//!
//! Severities and the freshness window can be set per deployment in
//! `quality.toml` in the policy directory (see the shipped file).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::Path;

use super::mapped::{MAX_QUANTITY, MAX_UNIT_PRICE_CENTS};
use super::quarantine;
use crate::db::Db;

/// The check families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Completeness,
    Uniqueness,
    AcceptedValues,
    Range,
    ReferentialIntegrity,
    Freshness,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completeness => "completeness",
            Self::Uniqueness => "uniqueness",
            Self::AcceptedValues => "accepted_values",
            Self::Range => "range",
            Self::ReferentialIntegrity => "referential_integrity",
            Self::Freshness => "freshness",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    fn of(failed: i64, severity: Severity) -> Self {
        match (failed, severity) {
            (0, _) => Self::Pass,
            (_, Severity::Warn) => Self::Warn,
            (_, Severity::Error) => Self::Fail,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// A check: name, family, default severity, and the SQL that counts
/// (checked, failed) for one source (`$1`). `@NOW` (microseconds),
/// `@CUTOFF` (freshness) and the code lists `@COUNTRIES`, `@CURRENCIES`
/// become bound parameters; `@MAXQ`, `@MAXP` are our own constants.
struct Check {
    name: &'static str,
    kind: CheckKind,
    severity: Severity,
    sql: &'static str,
}

/// Customers of source `$1`.
macro_rules! source_customers {
    () => {
        "(SELECT customer_id FROM orders WHERE source = $1 AND customer_id IS NOT NULL \
          UNION SELECT customer_id FROM customer_sources WHERE source = $1)"
    };
}

const CHECKS: &[Check] = &[
    Check {
        name: "customers.country_not_null",
        kind: CheckKind::Completeness,
        severity: Severity::Warn,
        sql: concat!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN country IS NULL THEN 1 ELSE 0 END), 0) \
             FROM customers WHERE erased_at IS NULL AND id IN ",
            source_customers!()
        ),
    },
    Check {
        name: "orders.customer_not_null",
        kind: CheckKind::Completeness,
        severity: Severity::Warn,
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN customer_id IS NULL THEN 1 ELSE 0 END), 0) \
              FROM orders WHERE source = $1",
    },
    Check {
        name: "customers.email_unique",
        kind: CheckKind::Uniqueness,
        severity: Severity::Error,
        sql: concat!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM customers o \
             WHERE o.email_bidx = c.email_bidx AND o.id <> c.id AND o.erased_at IS NULL) \
             THEN 1 ELSE 0 END), 0) FROM customers c WHERE c.erased_at IS NULL \
             AND c.email_bidx IS NOT NULL AND c.id IN ",
            source_customers!()
        ),
    },
    Check {
        name: "customers.country_accepted",
        kind: CheckKind::AcceptedValues,
        severity: Severity::Error,
        // `$4…`: the ISO 3166-1 alpha-2 codes, appended at run time.
        sql: concat!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN country NOT IN (@COUNTRIES) THEN 1 ELSE 0 \
             END), 0) FROM customers WHERE erased_at IS NULL AND country IS NOT NULL AND id IN ",
            source_customers!()
        ),
    },
    Check {
        name: "orders.currency_accepted",
        kind: CheckKind::AcceptedValues,
        severity: Severity::Error,
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN currency IS NULL OR currency NOT IN \
              (@CURRENCIES) THEN 1 ELSE 0 END), 0) FROM orders WHERE source = $1",
    },
    Check {
        name: "order_lines.quantity_and_price_in_range",
        kind: CheckKind::Range,
        severity: Severity::Error,
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN l.quantity = 0 OR l.quantity > @MAXQ \
              OR l.quantity < -@MAXQ OR l.unit_price_cents < 0 OR l.unit_price_cents > @MAXP \
              THEN 1 ELSE 0 END), 0) FROM order_lines l JOIN orders o ON o.id = l.order_id \
              WHERE o.source = $1",
    },
    Check {
        name: "orders.placed_at_in_range",
        kind: CheckKind::Range,
        severity: Severity::Error,
        // 1990-01-01 to a day from now.
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN placed_at < 631152000000000 \
              OR placed_at > @NOW + 86400000000 THEN 1 ELSE 0 END), 0) FROM orders \
              WHERE source = $1",
    },
    Check {
        name: "order_lines.product_exists",
        kind: CheckKind::ReferentialIntegrity,
        severity: Severity::Error,
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN p.id IS NULL THEN 1 ELSE 0 END), 0) \
              FROM order_lines l JOIN orders o ON o.id = l.order_id \
              LEFT JOIN products p ON p.id = l.product_id WHERE o.source = $1",
    },
    Check {
        name: "orders.customer_exists",
        kind: CheckKind::ReferentialIntegrity,
        severity: Severity::Error,
        sql: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN c.id IS NULL OR c.erased_at IS NOT NULL \
              THEN 1 ELSE 0 END), 0) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id \
              WHERE o.source = $1 AND o.customer_id IS NOT NULL",
    },
    Check {
        name: "source.fresh",
        kind: CheckKind::Freshness,
        severity: Severity::Warn,
        // Last load of the source (orders written, customers linked) newer than the cutoff.
        sql:
            "SELECT 1, CASE WHEN COALESCE((SELECT MAX(created_at) FROM orders WHERE source = $1), \
              0) >= @CUTOFF OR COALESCE((SELECT MAX(created_at) FROM customer_sources \
              WHERE source = $1), 0) >= @CUTOFF THEN 0 ELSE 1 END",
    },
];

/// Deployment settings (`quality.toml` in the policy directory).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// A source whose last load is older than this is stale.
    #[serde(default = "default_freshness")]
    pub freshness_hours: u32,
    /// Severity per check name, overriding the default.
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
    /// How many earlier runs the trend shows.
    #[serde(default = "default_trend")]
    pub trend_runs: u32,
}

fn default_freshness() -> u32 {
    24 * 7
}
fn default_trend() -> u32 {
    5
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            freshness_hours: default_freshness(),
            severity: BTreeMap::new(),
            trend_runs: default_trend(),
        }
    }
}

impl QualityConfig {
    /// `dir/quality.toml`, or the defaults when there is none.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("quality.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        for name in config.severity.keys() {
            if !CHECKS.iter().any(|c| c.name == name) {
                anyhow::bail!("{}: severity.{name}: no such check", path.display());
            }
        }
        Ok(config)
    }
}

/// One check's result for one source.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub source: String,
    pub check: String,
    pub kind: CheckKind,
    pub severity: Severity,
    pub rows_checked: i64,
    pub rows_failed: i64,
    pub verdict: Verdict,
    /// Rows failed in this run and the earlier ones, newest first.
    pub trend: Vec<i64>,
}

/// The latest import run of a source.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SourceImport {
    pub source: String,
    pub entity: String,
    pub run_id: i64,
    pub status: String,
    pub finished_at: Option<i64>,
    pub rows_read: u64,
    pub imported: u64,
    pub merged: u64,
    pub already_present: u64,
    pub quarantined: u64,
    pub skipped: u64,
}

/// A quality report: the results of one run with their trends, open
/// quarantine per source, and the last import of each mapped source.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct QualityReport {
    /// The run reported (`null` when checks never ran).
    pub run_id: Option<i64>,
    pub checked_at: Option<i64>,
    pub results: Vec<CheckResult>,
    /// Open quarantine entries per source.
    pub quarantine_open: BTreeMap<String, i64>,
    pub imports: Vec<SourceImport>,
    /// Checks per verdict.
    pub passed: u64,
    pub warned: u64,
    pub failed: u64,
}

/// Every source the store has rows of.
pub async fn sources(db: &Db) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT source FROM orders GROUP BY source UNION SELECT source FROM customer_sources \
         GROUP BY source ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Runs every check on every source, stores the results, and returns the report.
pub async fn run_checks(
    db: &Db,
    config: &QualityConfig,
    actor: &str,
    now: i64,
) -> anyhow::Result<QualityReport> {
    let sources = sources(db).await?;
    let cutoff = now - i64::from(config.freshness_hours) * 3_600_000_000;
    let countries: Vec<&'static str> = isocountry::CountryCode::iter()
        .map(|c| c.alpha2())
        .collect();
    let mut results = Vec::new();
    for source in &sources {
        for check in CHECKS {
            let (sql, binds) = expand(check.sql, now, cutoff, &countries);
            let mut q = sqlx::query(&sql).bind(source.as_str());
            for b in binds {
                q = match b {
                    Bind::Int(v) => q.bind(v),
                    Bind::Text(v) => q.bind(v),
                };
            }
            let row = q
                .fetch_one(&db.pool)
                .await
                .with_context(|| format!("quality check {} failed to run", check.name))?;
            let checked: i64 = row.try_get(0)?;
            let failed: i64 = row.try_get(1)?;
            let severity = config
                .severity
                .get(check.name)
                .copied()
                .unwrap_or(check.severity);
            results.push(CheckResult {
                source: source.clone(),
                check: check.name.to_owned(),
                kind: check.kind,
                severity,
                rows_checked: checked,
                rows_failed: failed,
                verdict: Verdict::of(failed, severity),
                trend: Vec::new(),
            });
        }
    }
    let mut tx = db.pool.begin().await?;
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO quality_runs (checked_at, actor) VALUES ($1, $2) RETURNING id",
    )
    .bind(now)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    for r in &results {
        sqlx::query(
            "INSERT INTO quality_results (run_id, source, check_name, kind, severity, \
             rows_checked, rows_failed, verdict) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run_id)
        .bind(&r.source)
        .bind(&r.check)
        .bind(r.kind.as_str())
        .bind(match r.severity {
            Severity::Warn => "warn",
            Severity::Error => "error",
        })
        .bind(r.rows_checked)
        .bind(r.rows_failed)
        .bind(r.verdict.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await.context("cannot store the quality run")?;
    report(db, config).await
}

enum Bind {
    Int(i64),
    Text(&'static str),
}

/// A check's SQL with its tokens turned into `$2, $3, …` in order, and the
/// values to bind after the source (`$1`). Values are always bound, never
/// spliced; both engines take numbered parameters (a few hundred here, far
/// from SQLite's slow path of thousands).
fn expand(
    template: &str,
    now: i64,
    cutoff: i64,
    countries: &[&'static str],
) -> (String, Vec<Bind>) {
    let mut sql = template
        .replace("@MAXQ", &MAX_QUANTITY.to_string())
        .replace("@MAXP", &MAX_UNIT_PRICE_CENTS.to_string());
    let mut binds = Vec::new();
    let mut next = 2;
    for (token, value) in [("@NOW", now), ("@CUTOFF", cutoff)] {
        if sql.contains(token) {
            sql = sql.replace(token, &format!("${next}"));
            binds.push(Bind::Int(value));
            next += 1;
        }
    }
    for (token, list) in [
        ("@COUNTRIES", countries),
        ("@CURRENCIES", super::standardize::CURRENCIES),
    ] {
        if sql.contains(token) {
            let placeholders: Vec<String> =
                (next..next + list.len()).map(|i| format!("${i}")).collect();
            sql = sql.replace(token, &placeholders.join(", "));
            binds.extend(list.iter().map(|v| Bind::Text(v)));
            next += list.len();
        }
    }
    (sql, binds)
}

/// The report of the latest stored run.
pub async fn report(db: &Db, config: &QualityConfig) -> anyhow::Result<QualityReport> {
    let runs: Vec<(i64, i64)> =
        sqlx::query("SELECT id, checked_at FROM quality_runs ORDER BY id DESC LIMIT $1")
            .bind(i64::from(config.trend_runs.max(1)))
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let mut results: Vec<CheckResult> = Vec::new();
    if let Some(&(latest, _)) = runs.first() {
        let oldest = runs.last().map_or(latest, |r| r.0);
        let rows = sqlx::query(
            "SELECT run_id, source, check_name, kind, severity, rows_checked, rows_failed, verdict \
             FROM quality_results WHERE run_id >= $1 ORDER BY source, check_name, run_id DESC",
        )
        .bind(oldest)
        .fetch_all(&db.pool)
        .await?;
        let mut trends: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for r in &rows {
            let run: i64 = r.try_get(0)?;
            let source: String = r.try_get(1)?;
            let check: String = r.try_get(2)?;
            let failed: i64 = r.try_get(6)?;
            trends
                .entry((source.clone(), check.clone()))
                .or_default()
                .push(failed);
            if run != latest {
                continue;
            }
            let kind: String = r.try_get(3)?;
            let severity: String = r.try_get(4)?;
            let verdict: String = r.try_get(7)?;
            results.push(CheckResult {
                source,
                check,
                kind: serde_json::from_value(serde_json::Value::String(kind))
                    .unwrap_or(CheckKind::Completeness),
                severity: if severity == "warn" {
                    Severity::Warn
                } else {
                    Severity::Error
                },
                rows_checked: r.try_get(5)?,
                rows_failed: failed,
                verdict: match verdict.as_str() {
                    "pass" => Verdict::Pass,
                    "warn" => Verdict::Warn,
                    _ => Verdict::Fail,
                },
                trend: Vec::new(),
            });
        }
        for r in &mut results {
            if let Some(t) = trends.remove(&(r.source.clone(), r.check.clone())) {
                r.trend = t;
            }
        }
    }
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count() as u64;
    let (passed, warned, failed) = (
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail),
    );
    Ok(QualityReport {
        run_id: runs.first().map(|r| r.0),
        checked_at: runs.first().map(|r| r.1),
        quarantine_open: quarantine::open_counts(db).await?.into_iter().collect(),
        imports: latest_imports(db).await?,
        results,
        passed,
        warned,
        failed,
    })
}

/// The latest run of each (source, entity) of the mapped imports.
async fn latest_imports(db: &Db) -> anyhow::Result<Vec<SourceImport>> {
    let rows = sqlx::query(
        "SELECT r.id, r.source, r.entity, r.status, r.finished_at, r.summary FROM import_runs r \
         WHERE r.id = (SELECT MAX(id) FROM import_runs x WHERE x.source = r.source \
         AND x.entity = r.entity) ORDER BY r.source, r.entity",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let summary: Option<String> = r.try_get(5)?;
        let s: serde_json::Value = summary
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let n = |k: &str| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let skipped = s
            .get("skipped")
            .and_then(serde_json::Value::as_object)
            .map_or(0, |m| {
                m.values().filter_map(serde_json::Value::as_u64).sum()
            });
        out.push(SourceImport {
            run_id: r.try_get(0)?,
            source: r.try_get(1)?,
            entity: r.try_get(2)?,
            status: r.try_get(3)?,
            finished_at: r.try_get(4)?,
            rows_read: n("rows_read"),
            imported: n("imported"),
            merged: n("merged"),
            already_present: n("already_present"),
            quarantined: n("quarantined"),
            skipped,
        });
    }
    Ok(out)
}

impl std::fmt::Display for QualityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(run) = self.run_id else {
            return writeln!(f, "no quality run yet (custodian quality check)");
        };
        writeln!(
            f,
            "quality run {run}: {} passed, {} warned, {} failed",
            self.passed, self.warned, self.failed
        )?;
        writeln!(
            f,
            "  {:<16} {:<40} {:<21} {:>10} {:>9}  {:<7} trend",
            "source", "check", "kind", "checked", "failed", "verdict"
        )?;
        for r in &self.results {
            let trend: Vec<String> = r.trend.iter().map(i64::to_string).collect();
            writeln!(
                f,
                "  {:<16} {:<40} {:<21} {:>10} {:>9}  {:<7} {}",
                r.source,
                r.check,
                r.kind.as_str(),
                r.rows_checked,
                r.rows_failed,
                r.verdict.as_str(),
                trend.join(" ← ")
            )?;
        }
        if !self.quarantine_open.is_empty() {
            writeln!(f, "open quarantine")?;
            for (source, n) in &self.quarantine_open {
                writeln!(f, "  {source:<16} {n:>10}")?;
            }
        }
        Ok(())
    }
}
