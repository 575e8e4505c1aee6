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

/// Per-instance analytics state: one feature refresh at a time.
#[derive(Default)]
pub struct Analytics {
    refresh: tokio::sync::Mutex<()>,
}

/// The state of the data a question is asked on.
#[derive(Clone, Debug)]
pub struct DataVersion {
    /// Changes whenever the features' sources or any consent changes.
    pub id: String,
    pub features_version: i64,
}

impl Analytics {
    /// Makes sure the feature table reflects the current sources (rebuilding
    /// it if they moved) and returns the data version.
    pub async fn ensure_fresh(&self, db: &Db, now: i64) -> anyhow::Result<DataVersion> {
        let mark = features::source_mark(db).await?;
        let version = match features::current(db).await? {
            Some((v, m)) if m == mark => v,
            _ => {
                let _guard = self.refresh.lock().await;
                // Another request may have refreshed while we waited.
                match features::current(db).await? {
                    Some((v, m)) if m == mark => v,
                    _ => features::refresh(db, &mark, now).await?.version,
                }
            }
        };
        let consent = features::consent_mark(db).await?;
        Ok(DataVersion {
            id: format!("f{version}.{mark}.k{consent}"),
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
