//! The audit tables: encoding events into rows and back, the writer's
//! one-statement batch insert (one SQL text per backend), chain heads,
//! checkpoints and seq-ordered paging, through the `Any` driver.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::event::{to_hash, Action, AuditEvent, Decision, Hash, GENESIS};
use super::key::Checkpoint;
use crate::db::{Backend, Db};

macro_rules! columns {
    () => {
        "instance, seq, occurred_at, request_id, actor, roles, action, resource, customers, \
         purpose, decision, reason, fields, status, records, prev_hash, hash"
    };
}
pub(crate) const COLUMNS: &str = columns!();

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
        // On the stack: the writer encodes two hashes per event.
        let mut buf = [0u8; 64];
        hex::encode_to_slice(h, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
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

/// Inserts a chained batch: ONE statement with ONE parameter, whatever
/// the batch size. The parameter is a JSON array with one array per event
/// (see [`Wire`]); the statement unpacks it in the database and also fills
/// the derived `audit_event_customers` index from each row's `customers`
/// (on SQLite through a trigger, migration 0003). One statement is atomic
/// on both backends without BEGIN/COMMIT, so a batch costs one round trip,
/// and its fixed text is prepared once per connection (a `VALUES` list
/// grows with the batch: every batch size was a new statement to plan).
pub async fn insert_batch<'c, E>(
    exec: E,
    backend: Backend,
    rows: &[StoredEvent],
) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let wire: Vec<Wire<'_>> = rows.iter().map(Wire::of).collect();
    let inserted = sqlx::query(match backend {
        Backend::Sqlite => INSERT_SQLITE,
        Backend::Postgres => INSERT_POSTGRES,
    })
    .bind(serde_json::to_string(&wire)?)
    .execute(exec)
    .await?
    .rows_affected();
    anyhow::ensure!(
        usize::try_from(inserted).ok() == Some(rows.len()),
        "audit batch: {inserted} of {} events inserted",
        rows.len()
    );
    Ok(())
}

/// One event in the batch parameter, in [`COLUMNS`] order: JSON arrays stay
/// JSON (they are stored as JSON text), hashes travel as hex.
#[derive(Serialize)]
struct Wire<'a>(
    &'a str,
    i64,
    i64,
    &'a str,
    &'a str,
    &'a [String],
    &'a str,
    &'a str,
    &'a [i64],
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a [(String, crate::domain::Treatment)],
    u16,
    u64,
    #[serde(with = "hex_hash")] Hash,
    #[serde(with = "hex_hash")] Hash,
);

impl<'a> Wire<'a> {
    fn of(r: &'a StoredEvent) -> Self {
        let e = &r.event;
        Wire(
            &r.instance,
            r.seq,
            e.occurred_at,
            &e.request_id,
            &e.actor,
            &e.roles,
            e.action.as_str(),
            &e.resource,
            &e.customers,
            e.purpose.as_deref(),
            e.decision.as_str(),
            &e.reason,
            &e.fields,
            e.status,
            e.records,
            r.prev_hash,
            r.hash,
        )
    }
}

/// `json_each` walks the outer array; the MATERIALIZED row array is
/// rendered to text once per event (referring to `json_each.value` in
/// every column re-rendered it per column). `->>` extracts SQL values,
/// `->` keeps nested arrays as JSON text.
const INSERT_SQLITE: &str = concat!(
    "WITH b(n, v) AS MATERIALIZED (SELECT key, value FROM json_each($1)) \
     INSERT INTO audit_events (",
    columns!(),
    ") SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v -> 5, v ->> 6, v ->> 7, v -> 8, \
     v ->> 9, v ->> 10, v ->> 11, v -> 12, v ->> 13, v ->> 14, unhex(v ->> 15), unhex(v ->> 16) \
     FROM b ORDER BY n"
);

/// jsonb is parsed once per batch (json would re-parse per `->>`). The
/// customer index rows are inserted by the same statement (a trigger cost
/// more than the insert it maintains); a data-modifying CTE always runs to
/// completion, and the statement is atomic as a whole.
const INSERT_POSTGRES: &str = concat!(
    "WITH b AS (SELECT r, n FROM jsonb_array_elements(cast($1 AS jsonb)) WITH ORDINALITY AS t(r, n)), \
     c AS (INSERT INTO audit_event_customers (customer_id, instance, seq) \
     SELECT DISTINCT x.value::bigint, b.r ->> 0, (b.r ->> 1)::bigint \
     FROM b CROSS JOIN LATERAL jsonb_array_elements_text(b.r -> 8) AS x(value)) \
     INSERT INTO audit_events (",
    columns!(),
    ") SELECT r ->> 0, (r ->> 1)::bigint, (r ->> 2)::bigint, r ->> 3, r ->> 4, \
     (r -> 5)::text, r ->> 6, r ->> 7, (r -> 8)::text, r ->> 9, r ->> 10, \
     r ->> 11, (r -> 12)::text, (r ->> 13)::bigint, (r ->> 14)::bigint, \
     decode(r ->> 15, 'hex'), decode(r ->> 16, 'hex') FROM b ORDER BY n"
);

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
