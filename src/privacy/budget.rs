//! The privacy budget store: epsilon spent per (principal, purpose, window)
//! and the answers already released in the window (sticky answers).
//!
//! Windows are fixed and aligned to the Unix epoch (`window_start =
//! now - now mod window`), so every instance agrees on them without
//! coordination and a reviewer can recompute them from the audit trail.
//! The debit is one conditional upsert: it either adds the cost and stays
//! within the total, or changes nothing, so concurrent queries cannot
//! overspend.

use anyhow::Context;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::Db;

/// The start of the window holding `now` (both in microseconds).
pub fn window_start(now_micros: i64, window_secs: u64) -> i64 {
    let w = i64::try_from(window_secs.max(1))
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    now_micros - now_micros.rem_euclid(w)
}

/// Micro-epsilon spent in one window.
pub async fn spent(db: &Db, principal: &str, purpose: &str, window: i64) -> anyhow::Result<i64> {
    let spent: Option<i64> = sqlx::query_scalar(
        "SELECT spent_micro FROM privacy_budget WHERE principal = $1 AND purpose = $2 \
         AND window_start = $3",
    )
    .bind(principal)
    .bind(purpose)
    .bind(window)
    .fetch_optional(&db.pool)
    .await
    .context("privacy budget look-up")?;
    Ok(spent.unwrap_or(0))
}

/// Adds `cost` to the window's spend if the result stays within `total`.
/// Returns the new spend, or `None` (and changes nothing) when it would not.
pub async fn debit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    principal: &str,
    purpose: &str,
    window: i64,
    cost: i64,
    total: i64,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let row: Option<i64> = sqlx::query_scalar(
        "INSERT INTO privacy_budget (principal, purpose, window_start, spent_micro, queries, updated_at) \
         SELECT $1, $2, $3, $4, 1, $6 WHERE $4 <= $5 \
         ON CONFLICT (principal, purpose, window_start) DO UPDATE \
         SET spent_micro = privacy_budget.spent_micro + excluded.spent_micro, \
             queries = privacy_budget.queries + 1, updated_at = excluded.updated_at \
         WHERE privacy_budget.spent_micro + excluded.spent_micro <= $5 \
         RETURNING spent_micro",
    )
    .bind(principal)
    .bind(purpose)
    .bind(window)
    .bind(cost)
    .bind(total)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .context("privacy budget debit")?;
    Ok(row)
}

/// A released answer stored for the window, if one exists for exactly this
/// data version.
pub async fn find_answer(
    db: &Db,
    principal: &str,
    purpose: &str,
    fingerprint: &str,
    window: i64,
    data_version: &str,
) -> anyhow::Result<Option<String>> {
    let answer: Option<String> = sqlx::query_scalar(
        "SELECT answer FROM privacy_answers WHERE principal = $1 AND purpose = $2 \
         AND fingerprint = $3 AND window_start = $4 AND data_version = $5",
    )
    .bind(principal)
    .bind(purpose)
    .bind(fingerprint)
    .bind(window)
    .bind(data_version)
    .fetch_optional(&db.pool)
    .await
    .context("sticky answer look-up")?;
    Ok(answer)
}

/// Stores (or replaces, for a new data version) the released answer.
#[allow(clippy::too_many_arguments)]
pub async fn store_answer(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    principal: &str,
    purpose: &str,
    fingerprint: &str,
    window: i64,
    data_version: &str,
    answer: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO privacy_answers (principal, purpose, fingerprint, window_start, data_version, answer, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (principal, purpose, fingerprint, window_start) DO UPDATE \
         SET data_version = excluded.data_version, answer = excluded.answer, created_at = excluded.created_at",
    )
    .bind(principal)
    .bind(purpose)
    .bind(fingerprint)
    .bind(window)
    .bind(data_version)
    .bind(answer)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("storing a released answer")?;
    Ok(())
}

/// Drops stored answers of windows that ended: they can never be served again.
pub async fn prune_answers(db: &Db, current_window: i64) -> anyhow::Result<u64> {
    let r = sqlx::query("DELETE FROM privacy_answers WHERE window_start < $1")
        .bind(current_window)
        .execute(&db.pool)
        .await
        .context("pruning released answers")?;
    Ok(r.rows_affected())
}

/// One (principal, purpose) budget in the current window.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BudgetRow {
    pub principal: String,
    pub purpose: String,
    /// Fresh (noisy) answers released in this window.
    pub queries: i64,
    pub spent_micro: i64,
}

/// One (principal, purpose) budget row of the window, if it spent anything.
pub async fn one(
    db: &Db,
    principal: &str,
    purpose: &str,
    window: i64,
) -> anyhow::Result<Option<BudgetRow>> {
    let row = sqlx::query(
        "SELECT principal, purpose, queries, spent_micro FROM privacy_budget \
         WHERE principal = $1 AND purpose = $2 AND window_start = $3",
    )
    .bind(principal)
    .bind(purpose)
    .bind(window)
    .fetch_optional(&db.pool)
    .await
    .context("privacy budget look-up")?;
    row.map(|r| {
        Ok(BudgetRow {
            principal: r.try_get("principal")?,
            purpose: r.try_get("purpose")?,
            queries: r.try_get("queries")?,
            spent_micro: r.try_get("spent_micro")?,
        })
    })
    .transpose()
}

/// Every budget with spend in the window (for compliance roles).
pub async fn all_in_window(db: &Db, window: i64) -> anyhow::Result<Vec<BudgetRow>> {
    let rows = sqlx::query(
        "SELECT principal, purpose, queries, spent_micro FROM privacy_budget \
         WHERE window_start = $1 ORDER BY principal, purpose LIMIT 10000",
    )
    .bind(window)
    .fetch_all(&db.pool)
    .await
    .context("privacy budget listing")?;
    rows.iter()
        .map(|r| {
            Ok(BudgetRow {
                principal: r.try_get("principal")?,
                purpose: r.try_get("purpose")?,
                queries: r.try_get("queries")?,
                spent_micro: r.try_get("spent_micro")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let week = 7 * 86_400;
        let w = window_start(1_780_000_000_000_000, week);
        assert_eq!(w % (week as i64 * 1_000_000), 0);
        assert!(w <= 1_780_000_000_000_000);
        assert!(1_780_000_000_000_000 - w < week as i64 * 1_000_000);
        assert_eq!(window_start(w, week), w);
        assert_eq!(window_start(w - 1, week), w - week as i64 * 1_000_000);
    }
}
