//! Legal holds: while a customer is under one (litigation, an open
//! investigation, a statutory duty to keep records: Art. 17(3)(b) and (e)),
//! they cannot be erased. An erasure request for them goes on hold with the
//! hold's reason and stays open; lifting the hold puts it back to
//! `received`, for the DPO to run again. Set and lifted only by the DPO,
//! each audited.

use sqlx::{Any, Row, Transaction};

use crate::db::Db;

/// An active hold.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Hold {
    pub reason: String,
    pub set_by: String,
    /// RFC 3339.
    pub set_at: String,
}

/// The active hold of a customer, if any.
pub async fn active(db: &Db, customer_id: i64) -> anyhow::Result<Option<Hold>> {
    let row = sqlx::query(
        "SELECT reason, set_by, set_at FROM dsr_legal_holds \
         WHERE customer_id = $1 AND lifted_at IS NULL",
    )
    .bind(customer_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(Hold {
            reason: r.try_get(0)?,
            set_by: r.try_get(1)?,
            set_at: crate::clock::rfc3339(r.try_get(2)?),
        })
    })
    .transpose()
}

/// Sets a hold. `Ok(false)` if one is already active.
pub async fn set(
    tx: &mut Transaction<'_, Any>,
    customer_id: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO dsr_legal_holds (customer_id, reason, set_by, set_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(customer_id)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Lifts the active hold. `Ok(false)` if there was none.
pub async fn lift(
    tx: &mut Transaction<'_, Any>,
    customer_id: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE dsr_legal_holds SET lifted_by = $1, lifted_at = $2, lift_reason = $3 \
         WHERE customer_id = $4 AND lifted_at IS NULL",
    )
    .bind(actor)
    .bind(now)
    .bind(reason)
    .bind(customer_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n > 0)
}
