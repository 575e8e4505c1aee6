//! The per-customer feature table (`customer_features`) and its data version.
//!
//! Chosen design: **refreshed with a data version**, not maintained row by
//! row on every write. A cheap *source mark* (highest order, event and
//! customer ids, customer count and last customer update) says whether
//! anything the features derive from moved; when it did, the next analytic
//! request rebuilds the table in one transaction of set-based SQL (readers
//! keep seeing the previous version until it commits). Ingest paths stay
//! untouched and fast; a segment is one indexed query over one row per
//! customer. The *data version* that sticky answers key on is the source
//! mark plus the consent ledger's high-water mark, so a withdrawal of
//! consent changes it at once (consent itself is never in the feature
//! table: it is joined at query time).

use anyhow::Context;
use sqlx::Row;

use crate::analytics::segments::language::RfmCell;
use crate::db::Db;

/// What the features were (or would be) built from.
pub async fn source_mark(db: &Db) -> anyhow::Result<String> {
    let row = sqlx::query(
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM orders) AS o, \
                (SELECT COALESCE(MAX(id), 0) FROM events) AS e, \
                (SELECT COALESCE(MAX(id), 0) FROM products) AS p, \
                (SELECT COUNT(*) FROM customers) AS n, \
                (SELECT COALESCE(MAX(id), 0) FROM customers) AS c, \
                (SELECT COALESCE(MAX(updated_at), 0) FROM customers) AS u",
    )
    .fetch_one(&db.pool)
    .await
    .context("feature source mark")?;
    let get = |c: &str| row.try_get::<i64, _>(c);
    Ok(format!(
        "o{}.e{}.p{}.n{}.c{}.u{}",
        get("o")?,
        get("e")?,
        get("p")?,
        get("n")?,
        get("c")?,
        get("u")?
    ))
}

/// The consent ledger's high-water mark: moves with every grant or withdrawal.
pub async fn consent_mark(db: &Db) -> anyhow::Result<i64> {
    let mark: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM consent_events")
        .fetch_one(&db.pool)
        .await
        .context("consent mark")?;
    Ok(mark)
}

/// The stored features' version and source mark, if ever built.
pub async fn current(db: &Db) -> anyhow::Result<Option<(i64, String)>> {
    let row = sqlx::query("SELECT version, source_mark FROM analytics_features_meta WHERE id = 1")
        .fetch_optional(&db.pool)
        .await
        .context("feature version")?;
    row.map(|r| Ok((r.try_get("version")?, r.try_get("source_mark")?)))
        .transpose()
}

/// What [`refresh`] did.
#[derive(Clone, Debug)]
pub struct Refreshed {
    pub version: i64,
    pub customers: u64,
    pub micros: i64,
}

/// Rebuilds every feature row in one transaction, from the source `mark`
/// taken before it started (a write that lands during the rebuild moves the
/// mark again, so the next request rebuilds once more).
pub async fn refresh(db: &Db, mark: &str, now: i64) -> anyhow::Result<Refreshed> {
    let started = std::time::Instant::now();
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM customer_category_spend")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM customer_features")
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO customer_features (customer_id, country, signup_at, orders_count, \
             first_order_at, last_order_at, monetary_cents, aov_cents, items) \
         SELECT c.id, c.country, c.signup_at, COALESCE(o.n, 0), o.first_at, o.last_at, \
             COALESCE(o.spend, 0), CASE WHEN o.n > 0 THEN o.spend / o.n END, COALESCE(li.items, 0) \
         FROM customers c \
         LEFT JOIN (SELECT customer_id, \
                 CAST(SUM(CASE WHEN kind = 'order' THEN 1 ELSE 0 END) AS BIGINT) AS n, \
                 MIN(CASE WHEN kind = 'order' THEN placed_at END) AS first_at, \
                 MAX(CASE WHEN kind = 'order' THEN placed_at END) AS last_at, \
                 CAST(SUM(total_cents) AS BIGINT) AS spend \
             FROM orders WHERE customer_id IS NOT NULL GROUP BY customer_id) o \
           ON o.customer_id = c.id \
         LEFT JOIN (SELECT o.customer_id, CAST(SUM(l.quantity) AS BIGINT) AS items \
             FROM orders o JOIN order_lines l ON l.order_id = o.id \
             WHERE o.customer_id IS NOT NULL AND o.kind = 'order' GROUP BY o.customer_id) li \
           ON li.customer_id = c.id \
         WHERE c.erased_at IS NULL",
    )
    .execute(&mut *tx)
    .await
    .context("building customer features")?
    .rows_affected();
    sqlx::query(
        "INSERT INTO customer_category_spend (customer_id, category, spend_cents) \
         SELECT o.customer_id, p.category, CAST(SUM(l.quantity * l.unit_price_cents) AS BIGINT) \
         FROM orders o JOIN order_lines l ON l.order_id = o.id \
         JOIN products p ON p.id = l.product_id \
         JOIN customer_features f ON f.customer_id = o.customer_id \
         WHERE o.kind = 'order' GROUP BY o.customer_id, p.category",
    )
    .execute(&mut *tx)
    .await
    .context("building category spend")?;
    sqlx::query(
        "UPDATE customer_features SET top_category = (SELECT s.category \
             FROM customer_category_spend s WHERE s.customer_id = customer_features.customer_id \
             ORDER BY s.spend_cents DESC, s.category LIMIT 1) \
         WHERE orders_count > 0",
    )
    .execute(&mut *tx)
    .await
    .context("top categories")?;
    sqlx::query(&rfm_update_sql())
        .execute(&mut *tx)
        .await
        .context("RFM scores")?;
    let elapsed = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO analytics_features_meta (id, version, source_mark, refreshed_at, refresh_micros) \
         VALUES (1, 1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET version = analytics_features_meta.version + 1, \
             source_mark = excluded.source_mark, refreshed_at = excluded.refreshed_at, \
             refresh_micros = excluded.refresh_micros \
         RETURNING version",
    )
    .bind(mark)
    .bind(now)
    .bind(elapsed)
    .fetch_one(&mut *tx)
    .await
    .context("feature version")?;
    tx.commit().await?;
    // Every row was replaced: plans over the old statistics can be far off.
    db.refresh_statistics(&["customer_features", "customer_category_spend"])
        .await?;
    metrics::histogram!("custodian_feature_refresh_seconds")
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        version,
        customers = inserted,
        micros = elapsed,
        "customer features refreshed"
    );
    Ok(Refreshed {
        version,
        customers: inserted,
        micros: elapsed,
    })
}

/// Scores are quintiles by rank among customers with at least one order:
/// `score = 1 + ⌊5·(rank − 1) / n⌋`, where rank counts ties once (equal
/// values get equal scores) and higher is better (more recent, more
/// orders, more spend). The cell follows [`RfmCell::of`] with `fm =
/// ⌊(f + m) / 2⌋`. The SQL text is generated from constants only.
fn rfm_update_sql() -> String {
    let mut cell = String::from("CASE");
    for r in 1..=5 {
        for fm in 1..=5 {
            cell.push_str(&format!(
                " WHEN s.r = {r} AND (s.f + s.m) / 2 = {fm} THEN '{}'",
                RfmCell::of(r, fm).as_str()
            ));
        }
    }
    cell.push_str(" END");
    format!(
        "UPDATE customer_features SET r_score = s.r, f_score = s.f, m_score = s.m, rfm_cell = {cell} \
         FROM (SELECT customer_id, \
             1 + (5 * (RANK() OVER (ORDER BY last_order_at) - 1)) / COUNT(*) OVER () AS r, \
             1 + (5 * (RANK() OVER (ORDER BY orders_count) - 1)) / COUNT(*) OVER () AS f, \
             1 + (5 * (RANK() OVER (ORDER BY monetary_cents) - 1)) / COUNT(*) OVER () AS m \
             FROM customer_features WHERE orders_count > 0) s \
         WHERE customer_features.customer_id = s.customer_id"
    )
}
