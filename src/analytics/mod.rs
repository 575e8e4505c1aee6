//! Analytics on the governed view: audience segments (a JSON definition
//! language compiled to parameterized SQL), the RFM builtin, and customer
//! profiles (k-means clusters). Everything here computes *true* aggregates
//! inside the database, over consenting customers only; nothing leaves
//! except through [`crate::privacy::Release`].
//!
//! - [`segments`]: language ([`segments::language`]), the non-recursive
//!   pre-scan of hostile bodies ([`segments::scan`]), the compiler
//!   ([`segments::compile`]), saved segments and the queries;
//! - [`features`]: the per-customer feature table and its data version;
//! - [`rfm`]: the standard RFM cells;
//! - [`profiles`]: k-means++ clusters on standardized log features.

pub mod features;
pub mod profiles;
pub mod rfm;
pub mod segments;

use crate::db::Db;

/// Per-instance analytics state: one feature refresh at a time, and when
/// this instance last rebuilt the table.
#[derive(Default)]
pub struct Analytics {
    refresh: tokio::sync::Mutex<()>,
    /// Sources may move this long before a question rebuilds the table.
    staleness: std::time::Duration,
    last_refresh: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The state of the data a question is asked on.
#[derive(Clone, Debug)]
pub struct DataVersion {
    /// Changes whenever the features' sources or any consent changes.
    pub id: String,
    pub features_version: i64,
}

impl Analytics {
    /// Analytics whose feature table may trail its sources by `staleness`.
    pub fn new(staleness: std::time::Duration) -> Self {
        Self {
            staleness,
            ..Self::default()
        }
    }

    fn refreshed_recently(&self) -> bool {
        let last = *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| t.elapsed() < self.staleness)
    }

    /// Makes sure the feature table reflects the current sources (rebuilding
    /// it if they moved, unless this instance rebuilt it less than the
    /// configured staleness ago) and returns the data version. The version
    /// names the sources the table was built from, so a sticky answer is
    /// tied to the data it was computed on; the consent mark is always
    /// current.
    pub async fn ensure_fresh(&self, db: &Db, now: i64) -> anyhow::Result<DataVersion> {
        let mark = features::source_mark(db).await?;
        let (version, built_from) = match features::current(db).await? {
            Some((v, m)) if m == mark => (v, m),
            Some((v, m)) if self.refreshed_recently() => (v, m),
            _ => {
                let _guard = self.refresh.lock().await;
                // Another request may have refreshed while we waited.
                match features::current(db).await? {
                    Some((v, m)) if m == mark || self.refreshed_recently() => (v, m),
                    _ => {
                        let v = features::refresh(db, &mark, now).await?.version;
                        *self.last_refresh.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(std::time::Instant::now());
                        (v, mark)
                    }
                }
            }
        };
        let consent = features::consent_mark(db).await?;
        Ok(DataVersion {
            id: format!("f{version}.{built_from}.k{consent}"),
            features_version: version,
        })
    }
}

/// Appends the consent stage's predicate over `f.customer_id` (customers
/// whose current consent allows the purpose, or every non-erased customer
/// when its legal basis needs none) to `sql`, binding the purpose.
pub fn consent_filter(
    sql: &mut segments::compile::Sql,
    predicate: &crate::pipeline::consent::ConsentPredicate,
) {
    sql.binds.push(segments::compile::Bind::Text(
        predicate.bind_value().to_owned(),
    ));
    let n = sql.binds.len();
    sql.push(&predicate.sql("f.customer_id", n));
}
