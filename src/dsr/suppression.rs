//! The suppression list: blind indexes of erased customers' e-mail and
//! phone (never the values), so the same person does not come back
//! silently through a re-import or a new customer record.
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

/// The blind indexes of the given e-mail and phone (normalized as the
/// customer columns are), skipping absent or empty values.
fn indexes(
    vault: &Vault,
    email: Option<&str>,
    phone: Option<&str>,
) -> Vec<(BlindField, [u8; crate::crypto::BLIND_INDEX_LEN])> {
    [(BlindField::Email, email), (BlindField::Phone, phone)]
        .into_iter()
        .filter_map(|(f, v)| v.and_then(|v| vault.blind_index(f, v)).map(|i| (f, i)))
        .collect()
}

/// Whether the person with this e-mail or phone was erased. Counts a hit.
/// Call it outside a write transaction of your own (on SQLite a second
/// writer would wait for it); inside one, use [`is_suppressed_in`].
pub async fn is_suppressed(
    db: &Db,
    vault: &Vault,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> anyhow::Result<bool> {
    let mut tx = db.pool.begin().await?;
    let hit = is_suppressed_in(&mut tx, vault, email, phone, now).await?;
    tx.commit().await?;
    Ok(hit)
}

/// [`is_suppressed`] inside the caller's transaction (the hit is counted
/// only if that transaction commits).
pub async fn is_suppressed_in(
    tx: &mut Transaction<'_, Any>,
    vault: &Vault,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> anyhow::Result<bool> {
    let mut hit = false;
    for (field, index) in indexes(vault, email, phone) {
        let n = sqlx::query(
            "UPDATE dsr_suppressions SET hits = hits + 1, last_hit_at = $1 \
             WHERE field = $2 AND blind_index = $3",
        )
        .bind(now)
        .bind(field.name())
        .bind(index.to_vec())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n > 0 {
            metrics::counter!("custodian_dsr_suppressed_total", "field" => field.name())
                .increment(1);
            hit = true;
        }
    }
    Ok(hit)
}

/// Puts blind indexes on the list (erasure, step one).
pub async fn add(
    tx: &mut Transaction<'_, Any>,
    field: BlindField,
    index: &[u8],
    request_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dsr_suppressions (field, blind_index, request_id, added_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (field, blind_index) DO NOTHING",
    )
    .bind(field.name())
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
