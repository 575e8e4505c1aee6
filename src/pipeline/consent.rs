//! Stage 4, consent: did the person whose data this is agree to this purpose?
//!
//! The ledger (`consent_events`) is append-only: a grant or a withdrawal is a
//! new row, nothing is ever updated or deleted through this module, and the
//! current state of a (customer, purpose) pair is its latest event, ordered
//! by when it happened and then by when it was recorded. Every look-up here is
//! bulk: a page of a thousand customers costs one query, never one per
//! customer.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashSet;
use utoipa::ToSchema;

use crate::db::Db;

/// Bound parameters per statement stay far below SQLite's limit.
const CHUNK: usize = 900;

/// The SQL that selects the customer ids whose latest event for purpose `$1`
/// is a grant. Used inline by list routes and analytics so consent filtering
/// happens inside the database, in the same query as the data.
pub const CONSENTING_CUSTOMERS_SQL: &str = "SELECT customer_id FROM (\
     SELECT customer_id, granted, ROW_NUMBER() OVER (\
         PARTITION BY customer_id ORDER BY occurred_at DESC, id DESC) AS rn \
     FROM consent_events WHERE purpose = $1) latest \
     WHERE rn = 1 AND granted = 1";

/// Returns which of `customer_ids` currently consent to `purpose`.
pub async fn consenting(
    db: &Db,
    purpose: &str,
    customer_ids: &[i64],
) -> anyhow::Result<HashSet<i64>> {
    let mut out = HashSet::with_capacity(customer_ids.len());
    for chunk in customer_ids.chunks(CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT customer_id FROM (\
                 SELECT customer_id, granted, ROW_NUMBER() OVER (\
                     PARTITION BY customer_id ORDER BY occurred_at DESC, id DESC) AS rn \
                 FROM consent_events WHERE purpose = $1 AND customer_id IN ({})) latest \
             WHERE rn = 1 AND granted = 1",
            placeholders.join(",")
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(purpose);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(q.fetch_all(&db.pool).await.context("consent look-up")?);
    }
    Ok(out)
}

/// One ledger entry as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsentEvent {
    pub receipt_id: String,
    pub purpose: String,
    pub granted: bool,
    /// RFC 3339.
    pub occurred_at: String,
    /// RFC 3339.
    pub recorded_at: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Hex SHA-256 of the evidence text, for receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
    pub actor: String,
}

/// The full history of a customer, oldest first.
pub async fn history(db: &Db, customer_id: i64) -> anyhow::Result<Vec<ConsentEvent>> {
    let rows = sqlx::query(
        "SELECT receipt_id, purpose, granted, occurred_at, recorded_at, source, evidence, \
         evidence_hash, actor FROM consent_events WHERE customer_id = $1 \
         ORDER BY occurred_at, id",
    )
    .bind(customer_id)
    .fetch_all(&db.pool)
    .await
    .context("consent history")?;
    rows.iter().map(event_from_row).collect()
}

pub(crate) fn event_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<ConsentEvent> {
    let hash: Option<Vec<u8>> = row.try_get("evidence_hash")?;
    Ok(ConsentEvent {
        receipt_id: row.try_get("receipt_id")?,
        purpose: row.try_get("purpose")?,
        granted: row.try_get::<i64, _>("granted")? == 1,
        occurred_at: crate::clock::rfc3339(row.try_get("occurred_at")?),
        recorded_at: crate::clock::rfc3339(row.try_get("recorded_at")?),
        source: row.try_get("source")?,
        evidence: row.try_get("evidence")?,
        evidence_sha256: hash.map(hex::encode),
        actor: row.try_get("actor")?,
    })
}

/// The current state per purpose, derived from a history (oldest first).
pub fn current_state(history: &[ConsentEvent]) -> Vec<&ConsentEvent> {
    let mut latest: std::collections::BTreeMap<&str, &ConsentEvent> = Default::default();
    for e in history {
        latest.insert(e.purpose.as_str(), e);
    }
    latest.into_values().collect()
}
