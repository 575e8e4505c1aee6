//! Browsing events: bulk append with an idempotency key (`event_uid`).

use sqlx::{Any, Transaction};

use super::bulk::{rows_per_statement, values_clause, Placeholders};

/// One browsing event. `kind` is one of view, search, add_to_cart, purchase,
/// click (the schema checks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_uid: String,
    pub customer_id: Option<i64>,
    pub kind: &'static str,
    pub product_id: Option<i64>,
    pub channel: &'static str,
    pub occurred_at: i64,
    /// Properties declared by the event schema, as a JSON object.
    pub properties: Option<String>,
}

/// Appends events whose uid is new; returns how many were created.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    events: &[NewEvent],
    ingested_at: i64,
) -> crate::db::DbResult<u64> {
    let style = Placeholders::of(tx);
    let mut created = 0;
    for chunk in events.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO events (event_uid, customer_id, kind, product_id, channel, occurred_at, \
             ingested_at, properties) VALUES {} ON CONFLICT (event_uid) DO NOTHING",
            values_clause(style, chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.event_uid)
                .bind(e.customer_id)
                .bind(e.kind)
                .bind(e.product_id)
                .bind(e.channel)
                .bind(e.occurred_at)
                .bind(ingested_at)
                .bind(e.properties.as_deref());
        }
        created += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(created)
}
