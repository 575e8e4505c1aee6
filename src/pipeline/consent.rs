//! Stage 4, consent: did the person whose data this is agree to this purpose?
//!
//! The ledger (`consent_events`) is append-only: a grant or a withdrawal is a
//! new row, nothing is ever updated or deleted through this module, and the
//! current state of a (customer, purpose) pair is its latest event, ordered
//! by when it happened and then by when it was recorded. A trigger keeps
//! `consent_state` (the current state per customer and purpose) in step with
//! every insert, so look-ups are indexed probes; every look-up here is bulk:
//! a page of a thousand customers costs one query, never one per customer.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashSet;
use utoipa::ToSchema;

use super::purpose::PurposeCatalog;
use crate::db::consents::NewConsentEvent;
use crate::db::Db;
use crate::domain::PurposeId;

/// Ids per look-up statement; bounds the size of one bound parameter.
const CHUNK: usize = 10_000;

pub use crate::db::consents::ConsentPredicate;

impl ConsentPredicate {
    /// The predicate for `purpose`; an id missing from the catalog is
    /// treated as needing consent (fail closed).
    pub fn for_purpose(purposes: &PurposeCatalog, purpose: &PurposeId) -> Self {
        Self::new(
            purpose.as_str(),
            purposes.get(purpose).is_none_or(|p| p.consent_required),
        )
    }
}

/// Returns which of `customer_ids` currently consent to `purpose`: one
/// indexed query against `consent_state` (the current state a trigger
/// derives from the ledger on every insert), whatever the number of ids.
///
/// The ids travel as one bound parameter (a JSON array on SQLite, a
/// comma-separated list cast to `bigint[]` on PostgreSQL): a statement with
/// a thousand placeholders costs far more to bind and plan than to run. The
/// list is unpacked once per query and drives primary-key probes (a generic
/// plan for `customer_id = ANY(cast($2))` re-parses the list for every row
/// it filters).
pub async fn consenting(
    db: &Db,
    purpose: &str,
    customer_ids: &[i64],
) -> anyhow::Result<HashSet<i64>> {
    let mut out = HashSet::with_capacity(customer_ids.len());
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            "SELECT customer_id FROM consent_state WHERE purpose = $1 AND granted = 1 \
             AND customer_id IN (SELECT value FROM json_each($2))"
        }
        // One primary-key probe per id, whatever the planner believes about
        // the table: fast with or without fresh statistics.
        crate::db::Backend::Postgres => {
            "SELECT s.customer_id FROM unnest(CAST(string_to_array($2, ',') AS BIGINT[])) AS ids(id) \
             CROSS JOIN LATERAL (SELECT customer_id FROM consent_state \
                 WHERE customer_id = ids.id AND purpose = $1 AND granted = 1 LIMIT 1) s"
        }
    };
    for chunk in customer_ids.chunks(CHUNK) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let list = match db.backend {
            crate::db::Backend::Sqlite => format!("[{list}]"),
            crate::db::Backend::Postgres => list,
        };
        let ids = sqlx::query_scalar::<_, i64>(sql)
            .bind(purpose)
            .bind(list)
            .fetch_all(&db.pool)
            .await
            .context("consent look-up")?;
        out.extend(ids);
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

/// One change to record.
#[derive(Clone, Debug)]
pub struct ConsentChange {
    pub purpose: String,
    pub granted: bool,
    pub occurred_at: i64,
    pub source: String,
    pub evidence: Option<String>,
}

/// What a grant or withdrawal returns: enough for the customer or an
/// auditor to find the event in the ledger later and check that the
/// evidence they hold is the evidence recorded.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub receipt_id: String,
    /// The customer's pseudonym under the consent's purpose.
    pub customer_pseudonym: String,
    pub purpose: String,
    pub granted: bool,
    /// RFC 3339.
    pub occurred_at: String,
    /// RFC 3339.
    pub recorded_at: String,
    /// Hex SHA-256 of the evidence text, if evidence was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
}

/// Appends a batch of changes for one customer inside `tx`: the caller
/// commits (after the request's audit event is durable), so either every
/// event is recorded or none is.
pub async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    customer_id: i64,
    changes: &[ConsentChange],
    actor: &str,
    now: i64,
) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>> {
    let rows: Vec<NewConsentEvent> = changes
        .iter()
        .map(|c| NewConsentEvent {
            receipt_id: format!("cr_{}", uuid::Uuid::new_v4().simple()),
            customer_id,
            purpose: c.purpose.clone(),
            granted: c.granted,
            occurred_at: c.occurred_at,
            source: c.source.clone(),
            evidence: c.evidence.clone(),
            evidence_hash: c.evidence.as_ref().map(|e| {
                ring::digest::digest(&ring::digest::SHA256, e.as_bytes())
                    .as_ref()
                    .to_vec()
            }),
            actor: actor.to_owned(),
        })
        .collect();
    let created = crate::db::consents::insert_many(tx, &rows, now)
        .await
        .context("appending consent events")?;
    // Receipt ids are fresh, so every row must be new; anything else would
    // hand out a receipt for an event that was not recorded.
    anyhow::ensure!(
        created == rows.len() as u64,
        "consent batch: {created} of {} events recorded",
        rows.len()
    );
    Ok(rows
        .into_iter()
        .map(|r| (r.receipt_id, r.evidence_hash))
        .collect())
}

/// A ledger event by receipt id, with its customer's internal id.
pub async fn by_receipt(db: &Db, receipt_id: &str) -> anyhow::Result<Option<(i64, ConsentEvent)>> {
    let row = sqlx::query(
        "SELECT customer_id, receipt_id, purpose, granted, occurred_at, recorded_at, source, \
         evidence, evidence_hash, actor FROM consent_events WHERE receipt_id = $1",
    )
    .bind(receipt_id)
    .fetch_optional(&db.pool)
    .await
    .context("consent receipt look-up")?;
    match row {
        Some(row) => Ok(Some((row.try_get("customer_id")?, event_from_row(&row)?))),
        None => Ok(None),
    }
}
