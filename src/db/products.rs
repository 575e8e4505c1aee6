//! Product rows: bulk "insert if new" by SKU, and SKU → id look-ups.

use sqlx::{Any, Transaction};
use std::collections::HashMap;

use super::bulk::{rows_per_statement, values_clause, Placeholders};

/// A product to create unless its SKU already exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
}

/// Inserts the products whose SKU is not present yet; existing rows are left
/// as they are (the first name and price seen win). Returns how many rows
/// were created.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    products: &[NewProduct],
    now: i64,
) -> crate::db::DbResult<u64> {
    let style = Placeholders::of(tx);
    let mut created = 0;
    for chunk in products.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO products (sku, name, category, price_cents, created_at) VALUES {} \
             ON CONFLICT (sku) DO NOTHING",
            values_clause(style, chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql);
        for p in chunk {
            q = q
                .bind(&p.sku)
                .bind(&p.name)
                .bind(&p.category)
                .bind(p.price_cents)
                .bind(now);
        }
        created += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(created)
}

/// Ids of the given SKUs (those that exist).
pub async fn ids_by_sku(
    tx: &mut Transaction<'_, Any>,
    skus: &[&str],
) -> crate::db::DbResult<HashMap<String, i64>> {
    super::bulk::ids_by_key(tx, super::bulk::Keyed::Products, skus).await
}
