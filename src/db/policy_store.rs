//! Policy rules in the database (`casbin_rule`, the casbin adapter's shape)
//! and their revision counter. Every gateway instance loads rules from here,
//! so all instances enforce the same policy; a change bumps the revision, and
//! PostgreSQL additionally sends `NOTIFY custodian_policy` so other instances
//! reload at once instead of at their next poll.

use crate::db::DbContext;
use sqlx::Row;

use crate::db::{Backend, Db};
use crate::domain::PolicyRule;

/// The PostgreSQL channel that announces policy changes.
pub const POLICY_CHANNEL: &str = "custodian_policy";

/// All rules, in insertion order.
pub async fn load(db: &Db) -> crate::db::DbResult<Vec<PolicyRule>> {
    let rows = sqlx::query("SELECT ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .context("loading policy rules")?;
    rows.iter()
        .map(|row| {
            let ptype: String = row.try_get(0)?;
            let mut columns = Vec::with_capacity(6);
            for i in 1..=6 {
                columns.push(row.try_get::<String, _>(i)?);
            }
            let refs: Vec<Option<&str>> = columns.iter().map(|c| Some(c.as_str())).collect();
            Ok(PolicyRule::from_row(&ptype, &refs))
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding policy rules")
}

/// The current revision (0 when no policy was ever stored).
pub async fn revision(db: &Db) -> crate::db::DbResult<i64> {
    let rev: Option<i64> = sqlx::query_scalar("SELECT MAX(revision) FROM policy_revisions")
        .fetch_one(&db.pool)
        .await
        .context("reading policy revision")?;
    Ok(rev.unwrap_or(0))
}

/// The latest revision with the version (hex SHA-256 of the canonical
/// rules) it stored; `None` when no policy was ever stored.
pub async fn latest(db: &Db) -> crate::db::DbResult<Option<(i64, String)>> {
    let row =
        sqlx::query("SELECT revision, sha256 FROM policy_revisions ORDER BY revision DESC LIMIT 1")
            .fetch_optional(&db.pool)
            .await
            .context("reading policy revision")?;
    row.map(|r| Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
        .transpose()
        .context("decoding policy revision")
}

/// Replaces the whole rule set and bumps the revision inside `tx`, which
/// the caller commits once the change's audit event is durable (a policy
/// change never lands unrecorded). Callers validate the rules first: a
/// policy that does not compile never reaches this function, so the stored
/// policy is always a working one. `rules_csv` is the canonical text
/// `sha256` hashes, kept with the revision so the rules of any past version
/// can be shown.
pub async fn replace(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    rules: &[PolicyRule],
    sha256: &str,
    rules_csv: &str,
    actor: &str,
    now: i64,
) -> crate::db::DbResult<i64> {
    sqlx::query("DELETE FROM casbin_rule")
        .execute(&mut **tx)
        .await?;
    for rule in rules {
        let v = |i: usize| rule.values.get(i).cloned().unwrap_or_default();
        sqlx::query(
            "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&rule.ptype)
        .bind(v(0))
        .bind(v(1))
        .bind(v(2))
        .bind(v(3))
        .bind(v(4))
        .bind(v(5))
        .execute(&mut **tx)
        .await?;
    }
    let revision: i64 = sqlx::query_scalar(
        "INSERT INTO policy_revisions (sha256, actor, created_at, rules_csv) \
         VALUES ($1, $2, $3, $4) RETURNING revision",
    )
    .bind(sha256)
    .bind(actor)
    .bind(now)
    .bind(rules_csv)
    .fetch_one(&mut **tx)
    .await?;
    if backend == Backend::Postgres {
        // Delivered on commit, to every listening instance.
        sqlx::query(&format!("NOTIFY {POLICY_CHANNEL}, '{revision}'"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(revision)
}

/// One stored policy revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub revision: i64,
    /// Hex SHA-256 of `rules_csv`: the version audit events name.
    pub version: String,
    pub actor: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
    pub rules_csv: String,
}

/// Which revision to look up: by its number or by its content hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionKey<'a> {
    Number(i64),
    /// Hex SHA-256 (equal contents stored twice: the earliest revision).
    Version(&'a str),
}

/// The revision named by `key`, rules included.
pub async fn revision_by(db: &Db, key: RevisionKey<'_>) -> crate::db::DbResult<Option<Revision>> {
    let query = match key {
        RevisionKey::Number(n) => sqlx::query(
            "SELECT revision, sha256, actor, created_at, rules_csv FROM policy_revisions \
             WHERE revision = $1",
        )
        .bind(n),
        RevisionKey::Version(v) => sqlx::query(
            "SELECT revision, sha256, actor, created_at, rules_csv FROM policy_revisions \
             WHERE sha256 = $1 ORDER BY revision LIMIT 1",
        )
        .bind(v.to_owned()),
    };
    let row = query
        .fetch_optional(&db.pool)
        .await
        .context("reading policy revision")?;
    row.map(|r| {
        Ok::<_, sqlx::Error>(Revision {
            revision: r.try_get(0)?,
            version: r.try_get(1)?,
            actor: r.try_get(2)?,
            created_at: r.try_get(3)?,
            rules_csv: r.try_get(4)?,
        })
    })
    .transpose()
    .context("decoding policy revision")
}

/// Revisions newest first, without their rules, at most `limit`, before
/// revision `before` when given.
pub async fn revisions(
    db: &Db,
    before: Option<i64>,
    limit: i64,
) -> crate::db::DbResult<Vec<Revision>> {
    let rows = sqlx::query(
        "SELECT revision, sha256, actor, created_at FROM policy_revisions \
         WHERE revision < $1 ORDER BY revision DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .context("listing policy revisions")?;
    rows.iter()
        .map(|r| {
            Ok(Revision {
                revision: r.try_get(0)?,
                version: r.try_get(1)?,
                actor: r.try_get(2)?,
                created_at: r.try_get(3)?,
                rules_csv: String::new(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding policy revisions")
}
