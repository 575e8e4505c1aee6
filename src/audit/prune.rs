//! Retention: removing a prefix of each chain without breaking verification.
//!
//! For each instance, pruning picks `S`, the last seq of the newest block
//! older than the cut-off (but never the block holding the chain's last
//! event, so the head stays in the store and truncation stays detectable),
//! signs a checkpoint `(instance, S, hash(S))`, and in the same transaction
//! deletes the blocks up to `S`. The verifier
//! accepts a chain that starts at `S + 1` only when a checkpoint at `S`
//! with a valid signature carries exactly that event's `prev_hash`.

use super::key::Signer;
use super::store;
use crate::db::{Backend, Db};

/// The customer index is keyed by customer first; its rows for the pruned
/// blocks are found through the blocks' own `customers` lists, so the
/// delete is key look-ups, not a scan of the whole index (which would hold
/// the trail's write lock, and with it every gated request, meanwhile).
const UNLINK_SQLITE: &str = "DELETE FROM audit_event_customers \
     WHERE (customer_id, instance, seq) IN (SELECT c.value ->> 0, b.instance, c.value ->> 1 \
     FROM audit_blocks b, json_each(b.customers) c WHERE b.instance = $1 AND b.first_seq <= $2)";
const UNLINK_POSTGRES: &str = "DELETE FROM audit_event_customers \
     WHERE (customer_id, instance, seq) IN (SELECT (c ->> 0)::bigint, b.instance, (c ->> 1)::bigint \
     FROM audit_blocks b, jsonb_array_elements(b.customers::jsonb) c \
     WHERE b.instance = $1 AND b.first_seq <= $2)";

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
    for (instance, _) in store::chain_heads(db).await? {
        // The head from decoded content, not from the untrusted columns.
        let (head, _) = store::chain_head(db, &instance).await?;
        // Whole blocks only (a block's events share one time), and never
        // the block holding the chain's last event.
        let cut: Option<(i64, i64)> = sqlx::query_as(
            "SELECT first_seq, last_seq FROM audit_blocks WHERE instance = $1 AND at < $2 \
             AND last_seq < $3 ORDER BY first_seq DESC LIMIT 1",
        )
        .bind(&instance)
        .bind(before)
        .bind(head)
        .fetch_optional(&db.pool)
        .await?;
        let Some((block, cut)) = cut else {
            continue;
        };
        let events: Vec<u8> = sqlx::query_scalar(
            "SELECT events FROM audit_blocks WHERE instance = $1 AND first_seq = $2",
        )
        .bind(&instance)
        .bind(block)
        .fetch_one(&db.pool)
        .await?;
        // The columns chose this block; its content must agree before a
        // signature vouches for the cut: every event older than the
        // cut-off, the last one at `cut`, below the head. (Someone who
        // edited `at` or `last_seq` must not get recent events pruned
        // under a valid signature.)
        let decoded = store::decode_block(&instance, block, &events);
        let mut hash = None;
        for row in &decoded {
            match row {
                store::ReadRow::Ok(e) if e.event.occurred_at < before => {
                    hash = Some((e.seq, e.hash));
                }
                _ => anyhow::bail!(
                    "{instance}#{}: block content disagrees with its columns or is \
                     unreadable; not pruned (run `custodian audit verify`)",
                    row.seq()
                ),
            }
        }
        let hash = match hash {
            Some((seq, hash)) if seq == cut && seq < head => hash,
            _ => anyhow::bail!(
                "{instance}#{cut}: block content disagrees with its columns; not pruned \
                 (run `custodian audit verify`)"
            ),
        };
        let checkpoint = signer.sign(&instance, cut, hash, now);
        let mut tx = db.pool.begin().await?;
        // Not beside an index pass of this chain (see the function).
        store::lock_index_progress(&mut tx, db.backend, &instance).await?;
        store::insert_checkpoint_tx(&mut tx, &checkpoint).await?;
        super::stats::uncount(&mut tx, &instance, block).await?;
        sqlx::query(match db.backend {
            Backend::Sqlite => UNLINK_SQLITE,
            Backend::Postgres => UNLINK_POSTGRES,
        })
        .bind(&instance)
        .bind(block)
        .execute(&mut *tx)
        .await?;
        let removed: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(last_seq - first_seq + 1), 0) AS BIGINT) FROM audit_blocks \
             WHERE instance = $1 AND first_seq <= $2",
        )
        .bind(&instance)
        .bind(block)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM audit_blocks WHERE instance = $1 AND first_seq <= $2")
            .bind(&instance)
            .bind(block)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        report.removed += u64::try_from(removed).unwrap_or(0);
        report.anchors.push((instance, cut));
    }
    Ok(report)
}
