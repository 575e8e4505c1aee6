//! Bulk customer writes shared by the importers and the demo shop: one
//! multi-row "insert if new" per chunk, then sealing of the created rows'
//! profiles (the sealer needs the row id, which is bound into every
//! ciphertext).

use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;

use crate::db::bulk::{rows_per_statement, values_clause, Placeholders};
use crate::db::customers::{store_sealed, NewCustomer, ProfileSealer};

/// Rows created by [`insert_customers`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CustomersCreated {
    pub created: u64,
    pub sealed: u64,
    /// Refused: the person was erased (on the suppression list).
    pub suppressed: u64,
}

/// Inserts customers whose external id is new. With a sealer, each created
/// row's profile is sealed and stored with its data key; existing rows are
/// never touched, so re-runs change nothing.
pub async fn insert_customers(
    tx: &mut Transaction<'_, Any>,
    sealer: Option<&dyn ProfileSealer>,
    customers: &[NewCustomer],
    now: i64,
) -> anyhow::Result<CustomersCreated> {
    let style = Placeholders::of(tx);
    let mut out = CustomersCreated::default();
    // Data subject rights: an erased person is not brought back by a
    // re-import (checked when a sealer, i.e. the vault, is at hand).
    let kept: Vec<NewCustomer>;
    let customers = match sealer {
        Some(sealer) if crate::dsr::suppression::any_in(tx).await? => {
            let mut keep = Vec::with_capacity(customers.len());
            for c in customers {
                let keys = sealer.suppression_keys(&c.external_id, &c.profile);
                if crate::dsr::suppression::check_in(tx, &keys, now).await? {
                    out.suppressed += 1;
                } else {
                    keep.push(c.clone());
                }
            }
            kept = keep;
            kept.as_slice()
        }
        _ => customers,
    };
    for chunk in customers.chunks(rows_per_statement(6)) {
        let sql = format!(
            "INSERT INTO customers (external_id, city, country, signup_at, created_at, updated_at) \
             VALUES {} ON CONFLICT (external_id) DO NOTHING RETURNING id, external_id",
            values_clause(style, chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q
                .bind(&c.external_id)
                .bind(&c.city)
                .bind(&c.country)
                .bind(c.signup_at)
                .bind(now)
                .bind(now);
        }
        let rows = q.fetch_all(&mut **tx).await?;
        out.created += rows.len() as u64;
        let Some(sealer) = sealer else { continue };
        let by_external: HashMap<&str, &NewCustomer> =
            chunk.iter().map(|c| (c.external_id.as_str(), c)).collect();
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let external: String = row.try_get(1)?;
            let Some(c) = by_external.get(external.as_str()) else {
                continue;
            };
            let sealed = sealer.seal(id, &c.profile)?;
            store_sealed(tx, id, &sealed, now).await?;
            out.sealed += 1;
        }
    }
    Ok(out)
}

/// Ids of the given external ids (those that exist).
pub async fn customer_ids(
    tx: &mut Transaction<'_, Any>,
    external_ids: &[&str],
) -> anyhow::Result<HashMap<String, i64>> {
    Ok(crate::db::bulk::ids_by_key(tx, crate::db::bulk::Keyed::Customers, external_ids).await?)
}
