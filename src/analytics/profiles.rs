//! Customer profiles: k-means clusters released as aggregates only.
//!
//! Features per customer (consenting, at least one order): `ln(1 + x)` of
//! recency in days, orders, spend and basket size (items per order), plus
//! the customer's spend share of each of the top categories. Each feature
//! is standardized (mean 0, standard deviation 1 over the sample).
//!
//! The model is fitted on a deterministic sample (every m-th customer id,
//! at most [`SAMPLE`] customers) with k-means++ seeding from a fixed seed
//! and Lloyd iterations, so the same data gives the same clusters. Then one
//! streaming pass over every customer assigns each to its nearest centroid
//! and sums clamped contributions per cluster: the gateway holds O(k) sums
//! and one (customer, cluster) pair per customer, never the feature rows;
//! the pairs are written in one short transaction afterwards. Clusters are
//! numbered by descending average spend.

use anyhow::Context;
use futures::TryStreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::rfm::{FREQUENCY_CLAMP, MONETARY_CLAMP_CENTS, RECENCY_CLAMP_DAYS};
use super::segments::compile::{Bind, Sql, DAY_MICROS};
use crate::db::Db;
use crate::privacy::{SumSpec, TrueCell, TrueTable};

/// Most customers the model is fitted on.
pub const SAMPLE: i64 = 20_000;
/// Categories whose spend shares are features.
pub const TOP_CATEGORIES: usize = 4;
const MAX_ITERATIONS: usize = 100;
const SEED: u64 = 0x5E61_3000;
/// Basket size (items per order) bound, in hundredths.
const BASKET_CLAMP: i64 = 100 * 100;
/// Category share bound, in tenths of a percent.
const SHARE_CLAMP: i64 = 1000;

/// A fitted model: enough to assign any customer to a cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub k: usize,
    pub categories: Vec<String>,
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    pub centroids: Vec<Vec<f64>>,
}

/// One customer's raw features.
#[derive(Clone, Debug)]
struct Raw {
    id: i64,
    recency_days: i64,
    orders: i64,
    spend_cents: i64,
    /// Items per order, in hundredths.
    basket: i64,
    /// Share of each top category, in tenths of a percent.
    shares: Vec<i64>,
}

impl Raw {
    fn vector(&self) -> Vec<f64> {
        let ln = |x: f64| (1.0 + x.max(0.0)).ln();
        let mut v = vec![
            ln(self.recency_days as f64),
            ln(self.orders as f64),
            ln(self.spend_cents as f64 / 100.0),
            ln(self.basket as f64 / 100.0),
        ];
        v.extend(self.shares.iter().map(|s| *s as f64 / 1000.0));
        v
    }
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn nearest(centroids: &[Vec<f64>], x: &[f64]) -> usize {
    let mut best = (0usize, f64::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d = dist2(c, x);
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

/// k-means++ seeding and Lloyd iterations on standardized points, from a
/// fixed seed. Returns centroids (standardized space).
pub fn kmeans(points: &[Vec<f64>], k: usize, seed: u64) -> Vec<Vec<f64>> {
    let Some(first) = points.first() else {
        return Vec::new();
    };
    let dim = first.len();
    let k = k.min(points.len()).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centroids: Vec<Vec<f64>> = Vec::with_capacity(k);
    let start = rng.gen_range(0..points.len());
    let c0 = points.get(start).cloned().unwrap_or_else(|| first.clone());
    let mut d2: Vec<f64> = points.iter().map(|p| dist2(p, &c0)).collect();
    centroids.push(c0);
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.gen::<f64>() * total;
            let mut pick = points.len() - 1;
            for (i, d) in d2.iter().enumerate() {
                if target < *d {
                    pick = i;
                    break;
                }
                target -= d;
            }
            pick
        } else {
            rng.gen_range(0..points.len())
        };
        let c = points.get(next).cloned().unwrap_or_else(|| first.clone());
        for (d, p) in d2.iter_mut().zip(points) {
            *d = d.min(dist2(p, &c));
        }
        centroids.push(c);
    }
    let mut assign = vec![usize::MAX; points.len()];
    for _ in 0..MAX_ITERATIONS {
        let mut changed = false;
        for (a, p) in assign.iter_mut().zip(points) {
            let n = nearest(&centroids, p);
            if *a != n {
                *a = n;
                changed = true;
            }
        }
        let mut sums = vec![vec![0.0; dim]; k];
        let mut counts = vec![0usize; k];
        for (a, p) in assign.iter().zip(points) {
            if let (Some(s), Some(c)) = (sums.get_mut(*a), counts.get_mut(*a)) {
                *c += 1;
                for (x, y) in s.iter_mut().zip(p) {
                    *x += y;
                }
            }
        }
        for ((c, s), n) in centroids.iter_mut().zip(sums).zip(counts) {
            if n > 0 {
                *c = s.into_iter().map(|x| x / n as f64).collect();
            }
            // An empty cluster keeps its centroid: deterministic, and it
            // simply releases as a cluster under k.
        }
        if !changed {
            break;
        }
    }
    centroids
}

fn standardize(x: &mut [f64], mean: &[f64], sd: &[f64]) {
    for ((v, m), s) in x.iter_mut().zip(mean).zip(sd) {
        *v = (*v - m) / s;
    }
}

/// The top categories by spend among the customers the filter admits.
async fn top_categories(db: &Db, filter: &Sql) -> anyhow::Result<Vec<String>> {
    let text = format!(
        "SELECT s.category FROM customer_category_spend s JOIN customer_features f \
         ON f.customer_id = s.customer_id WHERE {} GROUP BY s.category \
         ORDER BY SUM(s.spend_cents) DESC, s.category LIMIT {TOP_CATEGORIES}",
        filter.text
    );
    let rows = filter.apply(sqlx::query(&text)).fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
        .collect()
}

/// SQL selecting raw features of customers admitted by `filter`.
fn features_sql(filter: &Sql, categories: &[String], as_of: i64, stride: Option<i64>) -> Sql {
    let mut sql = filter.clone();
    let a = sql.bind(Bind::Int(as_of));
    let mut cols = String::new();
    for c in categories {
        let p = sql.bind(Bind::Text(c.clone()));
        cols.push_str(&format!(
            ", COALESCE((SELECT s.spend_cents FROM customer_category_spend s \
               WHERE s.customer_id = f.customer_id AND s.category = {p}), 0)"
        ));
    }
    let mut text = format!(
        "SELECT f.customer_id, ({a} - f.last_order_at) / {DAY_MICROS}, f.orders_count, \
         f.monetary_cents, f.items, \
         COALESCE((SELECT CAST(SUM(s.spend_cents) AS BIGINT) FROM customer_category_spend s \
           WHERE s.customer_id = f.customer_id), 0){cols} \
         FROM customer_features f WHERE f.orders_count > 0 AND {}",
        filter.text
    );
    if let Some(m) = stride {
        let p = sql.bind(Bind::Int(m));
        text.push_str(&format!(" AND f.customer_id % {p} = 0"));
    }
    text.push_str(" ORDER BY f.customer_id");
    sql.text = text;
    sql
}

fn raw_of(row: &sqlx::any::AnyRow, categories: usize) -> anyhow::Result<Raw> {
    let orders: i64 = row.try_get(2)?;
    let items: i64 = row.try_get(4)?;
    let gross: i64 = row.try_get(5)?;
    let mut shares = Vec::with_capacity(categories);
    for i in 0..categories {
        let spend: i64 = row.try_get(6 + i)?;
        shares.push(if gross > 0 {
            (spend.max(0) * 1000 / gross).clamp(0, 1000)
        } else {
            0
        });
    }
    Ok(Raw {
        id: row.try_get(0)?,
        recency_days: row.try_get::<i64, _>(1)?.max(0),
        orders,
        spend_cents: row.try_get(3)?,
        basket: if orders > 0 { items * 100 / orders } else { 0 },
        shares,
    })
}

/// Fits the model on the deterministic sample of customers `filter` admits.
pub async fn fit(db: &Db, filter: &Sql, k: usize, as_of: i64) -> anyhow::Result<Model> {
    let categories = top_categories(db, filter).await?;
    let count_sql = format!(
        "SELECT COUNT(*) FROM customer_features f WHERE f.orders_count > 0 AND {}",
        filter.text
    );
    let n: i64 = filter
        .apply(sqlx::query(&count_sql))
        .fetch_one(&db.pool)
        .await?
        .try_get(0)?;
    let stride = (n > SAMPLE).then(|| (n + SAMPLE - 1) / SAMPLE);
    let sql = features_sql(filter, &categories, as_of, stride);
    let rows = sql
        .apply(sqlx::query(&sql.text))
        .fetch_all(&db.pool)
        .await
        .context("profile sample")?;
    let mut points = Vec::with_capacity(rows.len());
    for r in &rows {
        points.push(raw_of(r, categories.len())?.vector());
    }
    let dim = 4 + categories.len();
    let len = points.len().max(1) as f64;
    let mut mean = vec![0.0; dim];
    for p in &points {
        for (m, x) in mean.iter_mut().zip(p) {
            *m += x / len;
        }
    }
    let mut sd = vec![0.0; dim];
    for p in &points {
        for ((s, x), m) in sd.iter_mut().zip(p).zip(&mean) {
            *s += (x - m) * (x - m) / len;
        }
    }
    for s in &mut sd {
        *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
    }
    for p in &mut points {
        standardize(p, &mean, &sd);
    }
    let mut centroids = kmeans(&points, k, SEED ^ k as u64);
    // Number clusters by descending spend (feature 2), then the others, so
    // the numbering is stable and meaningful.
    centroids.sort_by(|a, b| {
        let key = |c: &Vec<f64>| c.get(2).copied().unwrap_or(0.0);
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
    });
    Ok(Model {
        k,
        categories,
        mean,
        sd,
        centroids,
    })
}

/// The clamped sums each cluster carries.
pub fn cluster_sums(categories: &[String]) -> Vec<SumSpec> {
    let mut sums = super::rfm::rfm_sums();
    sums.push(SumSpec {
        name: "avg_basket_size",
        clamp: BASKET_CLAMP,
        unit: 100,
    });
    // Names must be 'static: shares are named by position; the handler
    // pairs them with the category names.
    const SHARE_NAMES: [&str; TOP_CATEGORIES] = [
        "share_category_1",
        "share_category_2",
        "share_category_3",
        "share_category_4",
    ];
    for name in SHARE_NAMES.iter().take(categories.len()) {
        sums.push(SumSpec {
            name,
            clamp: SHARE_CLAMP,
            unit: 10,
        });
    }
    sums
}

/// Assigns every admitted customer (streaming), stores the assignments for
/// `purpose`, and returns the true per-cluster table.
pub async fn assign(
    db: &Db,
    filter: &Sql,
    model: &Model,
    purpose: &str,
    data_version: &str,
    as_of: i64,
    now: i64,
) -> anyhow::Result<TrueTable> {
    let k = model.k;
    let sums_spec = cluster_sums(&model.categories);
    let mut counts = vec![0i64; k];
    let mut sums = vec![vec![0i64; sums_spec.len()]; k];
    let k_i64 = i64::try_from(k)?;
    // Stream and assign first, write afterwards: a transaction that holds
    // the write lock (SQLite) while it streams on a second pooled
    // connection can wait on a pool that writers queued behind that very
    // lock have filled. One (id, cluster) pair per customer: 16 MB at a
    // million customers.
    let sql = features_sql(filter, &model.categories, as_of, None);
    let mut assigned: Vec<(i64, i64)> = Vec::new();
    {
        let mut stream = sql.apply(sqlx::query(&sql.text)).fetch(&db.pool);
        while let Some(row) = stream.try_next().await? {
            let raw = raw_of(&row, model.categories.len())?;
            let mut x = raw.vector();
            standardize(&mut x, &model.mean, &model.sd);
            let c = nearest(&model.centroids, &x);
            if let (Some(n), Some(s)) = (counts.get_mut(c), sums.get_mut(c)) {
                *n += 1;
                let mut contrib = vec![
                    raw.recency_days.clamp(0, RECENCY_CLAMP_DAYS),
                    raw.orders.clamp(0, FREQUENCY_CLAMP),
                    raw.spend_cents.clamp(0, MONETARY_CLAMP_CENTS),
                    raw.basket.clamp(0, BASKET_CLAMP),
                ];
                contrib.extend(raw.shares.iter().map(|v| (*v).clamp(0, SHARE_CLAMP)));
                for (acc, v) in s.iter_mut().zip(contrib) {
                    *acc += v;
                }
            }
            assigned.push((raw.id, i64::try_from(c)?));
        }
    }
    let mut tx = db.pool.begin().await?;
    // The run row first: its row lock orders concurrent assignments of the
    // same (purpose, k), from this instance or another, so each one's
    // delete sees the rows the previous one committed (PostgreSQL would
    // otherwise let two runs insert the same keys and fail the second).
    sqlx::query(
        "INSERT INTO profile_runs (purpose, k, data_version, model, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (purpose, k) DO UPDATE \
         SET data_version = excluded.data_version, model = excluded.model, created_at = excluded.created_at",
    )
    .bind(purpose)
    .bind(k_i64)
    .bind(data_version)
    .bind(serde_json::to_string(model)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM profile_assignments WHERE purpose = $1 AND k = $2")
        .bind(purpose)
        .bind(k_i64)
        .execute(&mut *tx)
        .await?;
    insert_assignments(&mut tx, purpose, k_i64, &assigned).await?;
    tx.commit().await?;
    let cells = counts
        .into_iter()
        .zip(sums)
        .enumerate()
        .map(|(i, (n, s))| TrueCell {
            label: i.to_string(),
            customers: n,
            sums: s,
        })
        .collect();
    Ok(TrueTable {
        name: "clusters".into(),
        sums: sums_spec,
        cells,
        fixed_labels: true,
    })
}

async fn insert_assignments(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    purpose: &str,
    k: i64,
    rows: &[(i64, i64)],
) -> anyhow::Result<()> {
    use crate::db::bulk::{rows_per_statement, values_clause, Placeholders};
    let style = Placeholders::of(tx);
    for chunk in rows.chunks(rows_per_statement(4)) {
        let text = format!(
            "INSERT INTO profile_assignments (purpose, k, customer_id, cluster) VALUES {}",
            values_clause(style, chunk.len(), 4)
        );
        let mut q = sqlx::query(&text);
        for (id, c) in chunk {
            q = q.bind(purpose).bind(k).bind(*id).bind(*c);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Whether the stored assignments for (purpose, k) are of `data_version`.
pub async fn assignments_current(
    db: &Db,
    purpose: &str,
    k: i64,
    data_version: &str,
) -> anyhow::Result<bool> {
    let v: Option<String> =
        sqlx::query_scalar("SELECT data_version FROM profile_runs WHERE purpose = $1 AND k = $2")
            .bind(purpose)
            .bind(k)
            .fetch_optional(&db.pool)
            .await?;
    Ok(v.as_deref() == Some(data_version))
}

/// A one-line description of a released cluster, from its released
/// (noisy) averages only: post-processing, no further privacy cost.
pub fn label(avg: &dyn Fn(&str) -> Option<f64>, overall_spend: f64, top: Option<&str>) -> String {
    let orders = avg("avg_frequency").unwrap_or(0.0);
    let spend = avg("avg_monetary").unwrap_or(0.0);
    let recency = avg("avg_recency_days").unwrap_or(0.0);
    let freq = if orders >= 5.0 {
        "frequent"
    } else if orders >= 2.0 {
        "repeat"
    } else {
        "one-time"
    };
    let level = if overall_spend > 0.0 && spend >= 1.5 * overall_spend {
        "high-spend"
    } else if overall_spend > 0.0 && spend <= 0.67 * overall_spend {
        "low-spend"
    } else {
        "mid-spend"
    };
    let mut s = format!("{freq} {level} buyers");
    if let Some(t) = top {
        s.push_str(&format!(" of {t}"));
    }
    if recency > 365.0 {
        s.push_str(", lapsed");
    } else if recency <= 90.0 {
        s.push_str(", recently active");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_groups_deterministically() {
        let mut pts = Vec::new();
        for i in 0..30 {
            let e = (i % 5) as f64 * 0.01;
            pts.push(vec![0.0 + e, 0.0]);
            pts.push(vec![10.0 + e, 10.0]);
            pts.push(vec![-10.0, 10.0 + e]);
        }
        let a = kmeans(&pts, 3, 1);
        let b = kmeans(&pts, 3, 1);
        assert_eq!(a, b);
        let mut xs: Vec<i64> = a.iter().map(|c| c[0].round() as i64).collect();
        xs.sort();
        assert_eq!(xs, vec![-10, 0, 10]);
        // More clusters than points: no panic, one centroid per point.
        assert_eq!(kmeans(&pts[..2], 5, 1).len(), 2);
        assert!(kmeans(&[], 3, 1).is_empty());
    }

    #[test]
    fn labels_follow_the_released_numbers() {
        let avg = |n: &str| match n {
            "avg_frequency" => Some(6.0),
            "avg_monetary" => Some(50.0),
            "avg_recency_days" => Some(30.0),
            _ => None,
        };
        assert_eq!(
            label(&avg, 200.0, Some("garden")),
            "frequent low-spend buyers of garden, recently active"
        );
    }
}
