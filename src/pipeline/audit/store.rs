//! The audit tables: encoding events into rows and back, the multi-row
//! batch insert of the writer, chain heads, checkpoints and seq-ordered
//! paging. Everything here is portable SQL through the `Any` pool.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::event::{to_hash, Action, AuditEvent, Decision, Hash, GENESIS};
use super::key::Checkpoint;
use crate::db::{Backend, Db};

pub(crate) const COLUMNS: &str = "instance, seq, occurred_at, request_id, actor, roles, action, \
     resource, customers, purpose, decision, reason, fields, status, records, prev_hash, hash";
const PARAMS_PER_ROW: usize = 17;
/// Rows per INSERT statement: 17 × 100 binds stays far below every
/// backend's parameter limit.
const ROWS_PER_STATEMENT: usize = 100;

/// An event as stored: its place in a chain plus the event itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub instance: String,
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl StoredEvent {
    /// Whether the stored hash is the hash of the stored content.
    pub fn self_consistent(&self) -> bool {
        self.event
            .chain_hash(&self.instance, self.seq, &self.prev_hash)
            == self.hash
    }
}

/// A row as read back, or why its content cannot be decoded (tampering
/// with a JSON column, a hash of the wrong length).
#[derive(Debug)]
// `Bad` is rare; boxing `Ok` would cost an allocation per row on the
// verification hot path.
#[allow(clippy::large_enum_variant)]
pub enum ReadRow {
    Ok(StoredEvent),
    Bad { seq: i64, why: String },
}

pub(crate) mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .ok()
            .and_then(|b| super::to_hash(&b))
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

pub(crate) fn decode(row: &AnyRow) -> ReadRow {
    let seq: i64 = row.try_get(1).unwrap_or(0);
    match try_decode(row) {
        Ok(e) => ReadRow::Ok(e),
        Err(why) => ReadRow::Bad { seq, why },
    }
}

fn try_decode(row: &AnyRow) -> Result<StoredEvent, String> {
    let text = |i: usize| row.try_get::<String, _>(i).map_err(|e| e.to_string());
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(|e| e.to_string());
    let bytes = |i: usize| -> Result<Hash, String> {
        let b: Vec<u8> = row.try_get(i).map_err(|e| e.to_string())?;
        to_hash(&b).ok_or_else(|| "hash is not 32 bytes".to_owned())
    };
    let json_err = |c: &'static str| move |e: serde_json::Error| format!("{c}: {e}");
    let event = AuditEvent {
        occurred_at: int(2)?,
        request_id: text(3)?,
        actor: text(4)?,
        roles: serde_json::from_str(&text(5)?).map_err(json_err("roles"))?,
        action: Action::parse(&text(6)?),
        resource: text(7)?,
        customers: serde_json::from_str(&text(8)?).map_err(json_err("customers"))?,
        purpose: row
            .try_get::<Option<String>, _>(9)
            .map_err(|e| e.to_string())?,
        decision: Decision::parse(&text(10)?).ok_or("decision is not allow/deny")?,
        reason: text(11)?,
        fields: serde_json::from_str(&text(12)?).map_err(json_err("fields"))?,
        status: u16::try_from(int(13)?).map_err(|_| "status out of range")?,
        records: u64::try_from(int(14)?).map_err(|_| "records out of range")?,
    };
    Ok(StoredEvent {
        instance: text(0)?,
        seq: int(1)?,
        event,
        prev_hash: bytes(15)?,
        hash: bytes(16)?,
    })
}

/// Inserts a chained batch in one transaction (events plus the derived
/// customer index). Either all rows are durable or none.
pub async fn insert_batch(db: &Db, rows: &[StoredEvent]) -> anyhow::Result<()> {
    let mut tx = db.pool.begin().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        insert_events(&mut tx, chunk, db.backend).await?;
    }
    let links: Vec<(&str, i64, i64)> = rows
        .iter()
        .flat_map(|r| {
            r.event
                .customers
                .iter()
                .map(|c| (r.instance.as_str(), r.seq, *c))
        })
        .collect();
    for chunk in links.chunks(300) {
        let mut sql =
            String::from("INSERT INTO audit_event_customers (instance, seq, customer_id) VALUES ");
        push_placeholders(&mut sql, chunk.len(), 3, db.backend);
        let mut q = sqlx::query(&sql);
        for (instance, seq, customer) in chunk {
            q = q.bind(*instance).bind(*seq).bind(*customer);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_events(
    tx: &mut Transaction<'_, Any>,
    rows: &[StoredEvent],
    backend: Backend,
) -> anyhow::Result<()> {
    let mut sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ");
    push_placeholders(&mut sql, rows.len(), PARAMS_PER_ROW, backend);
    let mut q = sqlx::query(&sql);
    for r in rows {
        let e = &r.event;
        q = q
            .bind(r.instance.clone())
            .bind(r.seq)
            .bind(e.occurred_at)
            .bind(e.request_id.clone())
            .bind(e.actor.clone())
            .bind(serde_json::to_string(&e.roles)?)
            .bind(e.action.as_str().to_owned())
            .bind(e.resource.clone())
            .bind(serde_json::to_string(&e.customers)?)
            .bind(e.purpose.clone())
            .bind(e.decision.as_str())
            .bind(e.reason.clone())
            .bind(serde_json::to_string(&e.fields)?)
            .bind(i64::from(e.status))
            .bind(i64::try_from(e.records).unwrap_or(i64::MAX))
            .bind(r.prev_hash.to_vec())
            .bind(r.hash.to_vec());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// `($1, $2), ($3, $4)` on PostgreSQL; `(?, ?), (?, ?)` on SQLite, where
/// sqlx resolves every named parameter with `sqlite3_bind_parameter_name`,
/// a linear scan: quadratic in the parameters of a batch insert (it showed
/// in profiles of the writer), while anonymous ones bind in order.
fn push_placeholders(sql: &mut String, rows: usize, per_row: usize, backend: Backend) {
    use std::fmt::Write;
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            n += 1;
            let sep = if c == 0 { "" } else { ", " };
            let _ = match backend {
                Backend::Postgres => write!(sql, "{sep}${n}"),
                Backend::Sqlite => write!(sql, "{sep}?"),
            };
        }
        sql.push(')');
    }
}

/// The head of `instance`'s chain: the last event, or (when retention
/// removed every event) the last checkpoint, or genesis `(0, zeros)`.
pub async fn chain_head(db: &Db, instance: &str) -> anyhow::Result<(i64, Hash)> {
    for table in ["audit_events", "audit_checkpoints"] {
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT seq, hash FROM {table} WHERE instance = $1 ORDER BY seq DESC LIMIT 1"
        ))
        .bind(instance)
        .fetch_optional(&db.pool)
        .await?;
        if let Some((seq, hash)) = row {
            let hash = to_hash(&hash)
                .ok_or_else(|| anyhow::anyhow!("{table} {instance}#{seq}: hash is not 32 bytes"))?;
            return Ok((seq, hash));
        }
    }
    Ok((0, GENESIS))
}

/// Every chain in the store with its last seq, by instance name.
pub async fn chain_heads(db: &Db) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT instance, MAX(seq) FROM audit_events GROUP BY instance ORDER BY instance",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Every instance that has events or checkpoints.
pub async fn instances(db: &Db) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT instance FROM audit_events UNION SELECT instance FROM audit_checkpoints \
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Up to `limit` events of `instance` after `after_seq`, in seq order.
pub async fn events_after(
    db: &Db,
    instance: &str,
    after_seq: i64,
    limit: i64,
) -> anyhow::Result<Vec<ReadRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_events WHERE instance = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3"
    ))
    .bind(instance)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.iter().map(decode).collect())
}

pub async fn count_events(db: &Db) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&db.pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Stores a checkpoint; an existing one at the same seq is kept.
pub async fn insert_checkpoint(db: &Db, cp: &Checkpoint) -> anyhow::Result<()> {
    let mut tx = db.pool.begin().await?;
    insert_checkpoint_tx(&mut tx, cp).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn insert_checkpoint_tx(
    tx: &mut Transaction<'_, Any>,
    cp: &Checkpoint,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (instance, seq, hash, signed_at, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance, seq) DO NOTHING",
    )
    .bind(&cp.instance)
    .bind(cp.seq)
    .bind(cp.hash.to_vec())
    .bind(cp.signed_at)
    .bind(&cp.key_id)
    .bind(cp.signature.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `(instance, seq, hash, signed_at, key_id, signature)`.
type CheckpointRow = (String, i64, Vec<u8>, i64, String, Vec<u8>);

/// All checkpoints of `instance` in seq order (one per thousand events or
/// minute, so few enough to hold).
pub async fn checkpoints(db: &Db, instance: &str) -> anyhow::Result<Vec<Checkpoint>> {
    let rows: Vec<CheckpointRow> = sqlx::query_as(
        "SELECT instance, seq, hash, signed_at, key_id, signature FROM audit_checkpoints \
         WHERE instance = $1 ORDER BY seq",
    )
    .bind(instance)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(instance, seq, hash, signed_at, key_id, signature)| Checkpoint {
                instance,
                seq,
                // A wrong-length hash cannot match any event; zeros make the
                // verifier report it rather than failing to load.
                hash: to_hash(&hash).unwrap_or(GENESIS),
                signed_at,
                key_id,
                signature,
            },
        )
        .collect())
}

impl ReadRow {
    pub fn seq(&self) -> i64 {
        match self {
            ReadRow::Ok(e) => e.seq,
            ReadRow::Bad { seq, .. } => *seq,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_across_rows() {
        let mut s = String::new();
        super::push_placeholders(&mut s, 2, 3, super::Backend::Postgres);
        assert_eq!(s, "($1, $2, $3), ($4, $5, $6)");
        let mut s = String::new();
        super::push_placeholders(&mut s, 2, 2, super::Backend::Sqlite);
        assert_eq!(s, "(?, ?), (?, ?)");
    }
}
