//! Consent rates over time, straight from the append-only ledger: for each
//! purpose and time bucket, how many customers had a current grant at the
//! bucket's end, and how many customers had signed up by then. Two grouped
//! queries (one window over the ledger, one over signup times); the
//! running sums are taken here, so the answer is a few rows per bucket
//! whatever the ledger's size.

use std::collections::BTreeMap;

use super::Db;

/// `(bucket index, change in current grants)` per purpose: a grant after
/// no event or a withdrawal is +1, a withdrawal after a grant is -1
/// (events ordered as `consent_state` orders them: time, then id).
pub async fn grant_changes(
    db: &Db,
    bucket_micros: i64,
) -> anyhow::Result<BTreeMap<String, Vec<(i64, i64)>>> {
    let bucket = bucket_micros.max(1);
    // The bucket width is a number we chose, never client text.
    let sql = format!(
        "SELECT purpose, b, CAST(SUM(delta) AS BIGINT) FROM ( \
           SELECT purpose, occurred_at / {bucket} AS b, \
             granted - COALESCE(LAG(granted) OVER \
               (PARTITION BY customer_id, purpose ORDER BY occurred_at, id), 0) AS delta \
           FROM consent_events) AS d \
         GROUP BY purpose, b ORDER BY purpose, b"
    );
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql).fetch_all(&db.pool).await?;
    let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (purpose, b, delta) in rows {
        out.entry(purpose).or_default().push((b, delta));
    }
    Ok(out)
}

/// `(bucket index, customers who signed up in it)`, in bucket order.
pub async fn signups(db: &Db, bucket_micros: i64) -> anyhow::Result<Vec<(i64, i64)>> {
    let bucket = bucket_micros.max(1);
    let sql = format!(
        "SELECT signup_at / {bucket} AS b, CAST(COUNT(*) AS BIGINT) FROM customers \
         GROUP BY signup_at / {bucket} ORDER BY 1"
    );
    Ok(sqlx::query_as(&sql).fetch_all(&db.pool).await?)
}

/// The running total of `(bucket, change)` pairs (in bucket order) at the
/// end of each bucket of `from..to`, in one sweep.
pub fn running_totals(changes: &[(i64, i64)], from: i64, to: i64) -> Vec<i64> {
    let mut total = 0;
    let mut rest = changes.iter().peekable();
    (from..to)
        .map(|b| {
            while let Some((_, d)) = rest.next_if(|(cb, _)| *cb <= b) {
                total += d;
            }
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::running_totals;

    #[test]
    fn running_totals_count_changes_up_to_each_bucket() {
        let changes = [(1, 3), (2, -1), (5, 2)];
        assert_eq!(running_totals(&changes, 0, 7), vec![0, 3, 2, 2, 2, 4, 4]);
        assert_eq!(running_totals(&changes, 3, 5), vec![2, 2]);
        assert!(running_totals(&changes, 5, 5).is_empty());
    }
}
