//! The RFM builtin: every standard cell with its size and average recency,
//! frequency and spend, over consenting customers with at least one order.
//! Scores and cells are computed when the features refresh
//! ([`super::features`]); the rules are in
//! [`super::segments::language::RfmCell::of`].

use sqlx::Row;

use super::segments::compile::{Bind, Sql, DAY_MICROS};
use crate::db::Db;
use crate::privacy::{SumSpec, TrueCell, TrueTable};

/// Per-customer contribution bounds of the averages (their sensitivity).
pub const RECENCY_CLAMP_DAYS: i64 = 3650;
pub const FREQUENCY_CLAMP: i64 = 100;
/// 10,000.00 in the shop's currency.
pub const MONETARY_CLAMP_CENTS: i64 = 1_000_000;

/// The three clamped sums every RFM-like table carries.
pub fn rfm_sums() -> Vec<SumSpec> {
    vec![
        SumSpec {
            name: "avg_recency_days",
            clamp: RECENCY_CLAMP_DAYS,
            unit: 1,
        },
        SumSpec {
            name: "avg_frequency",
            clamp: FREQUENCY_CLAMP,
            unit: 1,
        },
        SumSpec {
            name: "avg_monetary",
            clamp: MONETARY_CLAMP_CENTS,
            unit: 100,
        },
    ]
}

/// `CASE` clamping `expr` to `[0, hi]` (portable; no LEAST/MIN differences).
pub fn clamp(expr: &str, hi: i64) -> String {
    format!("CASE WHEN {expr} < 0 THEN 0 WHEN {expr} > {hi} THEN {hi} ELSE {expr} END")
}

/// The select list of the three RFM sums, with `as_of` bound into `sql`.
pub fn rfm_sum_columns(sql: &mut Sql, as_of: i64) -> String {
    let a = sql.bind(Bind::Int(as_of));
    let recency = format!("(({a} - f.last_order_at) / {DAY_MICROS})");
    format!(
        "CAST(SUM({}) AS BIGINT), CAST(SUM({}) AS BIGINT), CAST(SUM({}) AS BIGINT)",
        clamp(&recency, RECENCY_CLAMP_DAYS),
        clamp("f.orders_count", FREQUENCY_CLAMP),
        clamp("f.monetary_cents", MONETARY_CLAMP_CENTS)
    )
}

/// The true table of RFM cells for customers matching `filter` (a predicate
/// over `f` whose binds are already in `sql`). Every cell is listed, empty
/// ones too: the labels are fixed, so they reveal nothing.
pub async fn cells(db: &Db, mut sql: Sql, as_of: i64) -> anyhow::Result<TrueTable> {
    let filter = std::mem::take(&mut sql.text);
    let sums = rfm_sum_columns(&mut sql, as_of);
    sql.text = format!(
        "SELECT f.rfm_cell, COUNT(*), {sums} FROM customer_features f \
         WHERE f.rfm_cell IS NOT NULL AND {filter} GROUP BY f.rfm_cell"
    );
    let rows = sql
        .apply(sqlx::query(&sql.text))
        .fetch_all(&db.pool)
        .await?;
    let mut found = std::collections::HashMap::new();
    for r in rows {
        let label: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        let s: Vec<i64> = vec![
            r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
            r.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
            r.try_get::<Option<i64>, _>(4)?.unwrap_or(0),
        ];
        found.insert(label, (n, s));
    }
    let cells = super::segments::language::RfmCell::ALL
        .iter()
        .map(|c| {
            let (n, s) = found.remove(c.as_str()).unwrap_or((0, vec![0, 0, 0]));
            TrueCell {
                label: c.as_str().to_owned(),
                customers: n,
                sums: s,
            }
        })
        .collect();
    Ok(TrueTable {
        name: "rfm".into(),
        sums: rfm_sums(),
        cells,
        fixed_labels: true,
    })
}
