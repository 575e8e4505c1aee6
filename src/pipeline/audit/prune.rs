//! Retention: removing a prefix of each chain without breaking verification.
//!
//! For each instance, pruning picks `S`, the last seq older than the cut-off
//! (but never the chain's last event, so the head stays in the store and
//! truncation stays detectable), signs a checkpoint `(instance, S,
//! hash(S))`, and in the same transaction deletes seq `1..=S`. The verifier
//! accepts a chain that starts at `S + 1` only when a checkpoint at `S`
//! with a valid signature carries exactly that event's `prev_hash`.

use super::event::to_hash;
use super::key::Signer;
use super::store;
use crate::db::{Backend, Db};

/// The customer index is keyed by customer first; its rows for the pruned
/// events are found through the events' own `customers` lists, so the
/// delete is key look-ups, not a scan of the whole index (which would hold
/// the trail's write lock, and with it every gated request, meanwhile).
const UNLINK_SQLITE: &str = "DELETE FROM audit_event_customers \
     WHERE (customer_id, instance, seq) IN (SELECT c.value, e.instance, e.seq \
     FROM audit_events e, json_each(e.customers) c WHERE e.instance = $1 AND e.seq <= $2)";
const UNLINK_POSTGRES: &str = "DELETE FROM audit_event_customers \
     WHERE (customer_id, instance, seq) IN (SELECT c.value::bigint, e.instance, e.seq \
     FROM audit_events e, jsonb_array_elements_text(e.customers::jsonb) c \
     WHERE e.instance = $1 AND e.seq <= $2)";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Events removed.
    pub removed: u64,
    /// `(instance, seq of the anchoring checkpoint)` per pruned chain.
    pub anchors: Vec<(String, i64)>,
}

/// Removes events that occurred before `before` (µs), anchoring what
/// remains with signed checkpoints. `now` is the checkpoint time.
pub async fn prune(db: &Db, signer: &Signer, before: i64, now: i64) -> anyhow::Result<PruneReport> {
    let mut report = PruneReport::default();
    for (instance, head) in store::chain_heads(db).await? {
        let cut: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM audit_events WHERE instance = $1 AND occurred_at < $2",
        )
        .bind(&instance)
        .bind(before)
        .fetch_one(&db.pool)
        .await?;
        let Some(cut) = cut.map(|c| c.min(head - 1)).filter(|c| *c >= 1) else {
            continue;
        };
        let hash: Vec<u8> =
            sqlx::query_scalar("SELECT hash FROM audit_events WHERE instance = $1 AND seq = $2")
                .bind(&instance)
                .bind(cut)
                .fetch_one(&db.pool)
                .await?;
        let hash = to_hash(&hash)
            .ok_or_else(|| anyhow::anyhow!("{instance}#{cut}: stored hash is not 32 bytes"))?;
        let checkpoint = signer.sign(&instance, cut, hash, now);
        let mut tx = db.pool.begin().await?;
        store::insert_checkpoint_tx(&mut tx, &checkpoint).await?;
        sqlx::query(match db.backend {
            Backend::Sqlite => UNLINK_SQLITE,
            Backend::Postgres => UNLINK_POSTGRES,
        })
        .bind(&instance)
        .bind(cut)
        .execute(&mut *tx)
        .await?;
        let removed = sqlx::query("DELETE FROM audit_events WHERE instance = $1 AND seq <= $2")
            .bind(&instance)
            .bind(cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        report.removed += removed;
        report.anchors.push((instance, cut));
    }
    Ok(report)
}
