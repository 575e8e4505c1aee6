//! The suppression list: keyed digests of erased customers' external id,
//! e-mail and phone (the blind indexes, never the values), so the same
//! person does not come back silently through a re-import or a new
//! customer record.
//!
//! Every writer that creates customers asks [`is_suppressed`] (or
//! [`is_suppressed_in`] inside its own transaction) first and refuses the
//! record when it answers true. Each refusal is counted, in the list
//! (`hits`, `last_hit_at`, per entry) and in the metric
//! `custodian_dsr_suppressed_total{field}`; `custodian dsr suppression`
//! prints the totals. The list holds no plaintext: without the master key
//! an entry cannot be tested against a guess.

use sqlx::{Any, Transaction};

use crate::crypto::{BlindField, Vault};
use crate::db::Db;

/// The list's keys for a customer: the keyed digest of the external id
/// ([`Vault::subject_digest`]) and the blind indexes of e-mail and phone
/// (normalized as the customer columns are), skipping absent values.
pub fn keys(
    vault: &Vault,
    external_id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = external_id
        .map(|e| ("external_id", vault.subject_digest(e).to_vec()))
        .into_iter()
        .collect();
    for (field, value) in [(BlindField::Email, email), (BlindField::Phone, phone)] {
        if let Some(index) = value.and_then(|v| vault.blind_index(field, v)) {
            out.push((field.name(), index.to_vec()));
        }
    }
    out
}

/// Whether the person with this external id, e-mail or phone was erased.
/// Counts a hit. Call it outside a write transaction of your own (on
/// SQLite a second writer would wait for it); inside one, use
/// [`is_suppressed_in`].
pub async fn is_suppressed(
    db: &Db,
    vault: &Vault,
    external_id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> anyhow::Result<bool> {
    // A read first: the common case (not on the list) takes no write lock.
    let mut hits = Vec::new();
    for (field, index) in keys(vault, external_id, email, phone) {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM dsr_suppressions WHERE field = $1 AND blind_index = $2",
        )
        .bind(field)
        .bind(index.as_slice())
        .fetch_optional(&db.pool)
        .await?;
        if found.is_some() {
            hits.push((field, index));
        }
    }
    if hits.is_empty() {
        return Ok(false);
    }
    let mut tx = db.pool.begin().await?;
    check_in(&mut tx, &hits, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// [`is_suppressed`] inside the caller's transaction (the hit is counted
/// only if that transaction commits).
pub async fn is_suppressed_in(
    tx: &mut Transaction<'_, Any>,
    vault: &Vault,
    external_id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> anyhow::Result<bool> {
    check_in(tx, &keys(vault, external_id, email, phone), now).await
}

/// Whether any of `keys` (from [`keys`]) is on the list; counts a hit on
/// each that is.
pub async fn check_in(
    tx: &mut Transaction<'_, Any>,
    keys: &[(&'static str, Vec<u8>)],
    now: i64,
) -> anyhow::Result<bool> {
    let mut hit = false;
    for (field, index) in keys {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM dsr_suppressions WHERE field = $1 AND blind_index = $2",
        )
        .bind(*field)
        .bind(index.as_slice())
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_none() {
            continue;
        }
        sqlx::query(
            "UPDATE dsr_suppressions SET hits = hits + 1, last_hit_at = $1 \
             WHERE field = $2 AND blind_index = $3",
        )
        .bind(now)
        .bind(*field)
        .bind(index.as_slice())
        .execute(&mut **tx)
        .await?;
        metrics::counter!("custodian_dsr_suppressed_total", "field" => *field).increment(1);
        hit = true;
    }
    Ok(hit)
}

/// Whether the list has any entry (lets bulk writers skip the per-row
/// checks on a store without erasures).
pub async fn any_in(tx: &mut Transaction<'_, Any>) -> anyhow::Result<bool> {
    let one: Option<i64> = sqlx::query_scalar("SELECT 1 FROM dsr_suppressions LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(one.is_some())
}

/// Puts a key on the list (erasure, step one).
pub async fn add(
    tx: &mut Transaction<'_, Any>,
    field: &'static str,
    index: &[u8],
    request_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dsr_suppressions (field, blind_index, request_id, added_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (field, blind_index) DO NOTHING",
    )
    .bind(field)
    .bind(index)
    .bind(request_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Totals for the DPO: entries on the list and refusals counted.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub entries: i64,
    pub refusals: i64,
}

pub async fn totals(db: &Db) -> anyhow::Result<Totals> {
    let (entries, refusals): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), CAST(SUM(hits) AS BIGINT) FROM dsr_suppressions")
            .fetch_one(&db.pool)
            .await?;
    Ok(Totals {
        entries,
        refusals: refusals.unwrap_or(0),
    })
}
