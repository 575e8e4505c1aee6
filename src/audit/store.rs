//! The audit tables: the block layout events are stored in (one row per
//! writer batch), the writer's one-statement block insert
//! (one SQL text per backend), chain heads, checkpoints and paging, through
//! the `Any` driver.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use super::event::{decode_canonical, hex_hash, link_hash, to_hash, AuditEvent, Hash, GENESIS};
use super::key::Checkpoint;
use crate::db::{Backend, Db};

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

/// How events are laid out in a block (`audit_blocks.events`): back to
/// back, each as `u32` big-endian length, that many bytes of its canonical
/// encoding (which carries instance and seq), then `prev_hash` and `hash`
/// (32 bytes each). The length lets one damaged event be reported without
/// losing the rest of its block.
pub fn encode_block(rows: &[StoredEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 320);
    for r in rows {
        push_entry(&mut out, &r.event.canonical(&r.instance, r.seq), r);
    }
    out
}

fn push_entry(out: &mut Vec<u8>, canonical: &[u8], r: &StoredEvent) {
    out.extend_from_slice(
        &u32::try_from(canonical.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(canonical);
    out.extend_from_slice(&r.prev_hash);
    out.extend_from_slice(&r.hash);
}

/// Events chained after a head and laid out as one block: each event's
/// canonical encoding is computed once, for its hash and for the stored
/// bytes ([`encode_block`] of `rows` gives the same bytes).
pub struct Block {
    pub rows: Vec<StoredEvent>,
    bytes: Vec<u8>,
}

impl Block {
    /// Chains `events` as the seqs after `head` `(seq, hash)` of `instance`.
    pub fn chain(
        instance: &str,
        head: (i64, Hash),
        events: impl IntoIterator<Item = AuditEvent>,
    ) -> Self {
        let (mut seq, mut prev) = head;
        let mut bytes = Vec::new();
        let rows = events
            .into_iter()
            .map(|event| {
                seq = seq.saturating_add(1);
                let canonical = event.canonical(instance, seq);
                let row = StoredEvent {
                    instance: instance.to_owned(),
                    seq,
                    event,
                    prev_hash: prev,
                    hash: link_hash(&prev, &canonical),
                };
                push_entry(&mut bytes, &canonical, &row);
                prev = row.hash;
                row
            })
            .collect();
        Self { rows, bytes }
    }

    /// The block's stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The chain's head after this block: its last event, if any.
    pub fn head(&self) -> Option<(i64, Hash)> {
        self.rows.last().map(|r| (r.seq, r.hash))
    }
}

/// Decodes a block stored under `(instance, first_seq)`. An event that
/// cannot be decoded, or that names another chain than the block's (a
/// block relabelled in the database), is reported as [`ReadRow::Bad`] at
/// the seq its position implies; a broken length ends the block there.
pub fn decode_block(instance: &str, first_seq: i64, mut bytes: &[u8]) -> Vec<ReadRow> {
    let mut rows = Vec::new();
    let mut position = first_seq;
    while !bytes.is_empty() {
        let entry = bytes.split_at_checked(4).and_then(|(len, rest)| {
            let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
            let (canonical, rest) = rest.split_at_checked(len)?;
            let (prev, rest) = rest.split_at_checked(32)?;
            let (hash, rest) = rest.split_at_checked(32)?;
            Some((canonical, to_hash(prev)?, to_hash(hash)?, rest))
        });
        let Some((canonical, prev_hash, hash, rest)) = entry else {
            rows.push(ReadRow::Bad {
                seq: position,
                why: "block layout is damaged".into(),
            });
            break;
        };
        bytes = rest;
        rows.push(match decode_canonical(canonical) {
            Ok((of, seq, event)) if of == instance => ReadRow::Ok(StoredEvent {
                instance: of,
                seq,
                event,
                prev_hash,
                hash,
            }),
            Ok((of, ..)) => ReadRow::Bad {
                seq: position,
                why: format!("event of chain {of:?} stored in this chain"),
            },
            Err(why) => ReadRow::Bad { seq: position, why },
        });
        // Stored seqs are untrusted: no overflow on i64::MAX.
        position = rows.last().map_or(position, ReadRow::seq).saturating_add(1);
    }
    rows
}

/// Inserts chained events as blocks: the writer's batch is ONE block (its
/// events share one time), inserted by ONE statement. One statement is
/// atomic on both backends without BEGIN/COMMIT, so a batch costs one round
/// trip. The customer index is filled later, off the request path
/// ([`index_customers`]). Events with differing times (only tools and tests
/// write those) become one block per run of equal times.
pub async fn insert_batch<'c, E>(exec: E, rows: &[StoredEvent]) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = Any> + Copy,
{
    for block in
        rows.chunk_by(|a, b| a.event.occurred_at == b.event.occurred_at && a.instance == b.instance)
    {
        insert_block(exec, block, &encode_block(block)).await?;
    }
    Ok(())
}

/// Inserts `rows`, laid out as `bytes`, as one block (the caller keeps them
/// one chain, one time).
pub async fn insert_block<'c, E>(exec: E, rows: &[StoredEvent], bytes: &[u8]) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(());
    };
    let inserted = sqlx::query(
        "INSERT INTO audit_blocks (instance, first_seq, last_seq, at, customers, events) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&first.instance)
    .bind(first.seq)
    .bind(last.seq)
    .bind(first.event.occurred_at)
    .bind(serde_json::to_string(&links(rows))?)
    .bind(bytes)
    .execute(exec)
    .await?
    .rows_affected();
    anyhow::ensure!(inserted == 1, "audit block not inserted");
    Ok(())
}

/// Adds the customer links of `instance`'s blocks past its indexing
/// progress (`audit_index_progress`) to the customer index, at most `max_blocks`
/// blocks, and advances the progress in the same transaction. Returns the
/// number of blocks indexed or counted into the chart summaries
/// ([`super::stats::count_pending`]; 0: nothing new). Only the chain's own writer
/// process calls it; its passes (and retention) take the chain's progress
/// row first ([`lock_index_progress`]), so they run one after another. The
/// links come from the blocks' `customers` columns; the index is derived
/// data, never evidence.
pub async fn index_customers(db: &Db, instance: &str, max_blocks: i64) -> anyhow::Result<u64> {
    let mut tx = db.pool.begin().await?;
    let done = lock_index_progress(&mut tx, db.backend, instance).await?;
    // The chart summaries ride on the same pass and lock (their own
    // progress, so an upgraded store backfills them).
    let counted = super::stats::count_pending(&mut tx, instance, max_blocks).await?;
    let (blocks, through): (i64, Option<i64>) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), MAX(last_seq) FROM (SELECT last_seq FROM audit_blocks \
         WHERE instance = $1 AND first_seq > $2 ORDER BY first_seq LIMIT $3) AS b",
    )
    .bind(instance)
    .bind(done)
    .bind(max_blocks)
    .fetch_one(&mut *tx)
    .await?;
    let Some(through) = through else {
        tx.commit().await?;
        return Ok(u64::try_from(counted).unwrap_or(0));
    };
    sqlx::query(match db.backend {
        Backend::Sqlite => LINK_SQLITE,
        Backend::Postgres => LINK_POSTGRES,
    })
    .bind(instance)
    .bind(done)
    .bind(through)
    .execute(&mut *tx)
    .await?;
    advance_index_progress(&mut tx, instance, through).await?;
    tx.commit().await?;
    Ok(u64::try_from(blocks.max(counted)).unwrap_or(0))
}

/// Takes `instance`'s indexing progress for this transaction and returns
/// it. Index passes and retention both take it first, so they never
/// interleave on one chain: a pass cannot link a block that retention is
/// deleting (its links would outlive the block). PostgreSQL: the row lock;
/// SQLite: the write lock of the trail's file, taken by the first
/// statement (before any read, so the transaction never works from a
/// snapshot another writer made stale).
pub(crate) async fn lock_index_progress(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    instance: &str,
) -> anyhow::Result<i64> {
    sqlx::query(
        "INSERT INTO audit_index_progress (instance, indexed_through) VALUES ($1, 0) \
         ON CONFLICT (instance) DO NOTHING",
    )
    .bind(instance)
    .execute(&mut **tx)
    .await?;
    let done: i64 = sqlx::query_scalar(match backend {
        Backend::Sqlite => "SELECT indexed_through FROM audit_index_progress WHERE instance = $1",
        Backend::Postgres => {
            "SELECT indexed_through FROM audit_index_progress WHERE instance = $1 FOR UPDATE"
        }
    })
    .bind(instance)
    .fetch_one(&mut **tx)
    .await?;
    Ok(done)
}

/// Records that `instance`'s events up to `through` are in the customer
/// index. Never moves it back.
async fn advance_index_progress(
    tx: &mut Transaction<'_, Any>,
    instance: &str,
    through: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_index_progress (instance, indexed_through) VALUES ($1, $2) \
         ON CONFLICT (instance) DO UPDATE SET indexed_through = excluded.indexed_through \
         WHERE excluded.indexed_through > audit_index_progress.indexed_through",
    )
    .bind(instance)
    .bind(through)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The links of the blocks with `$2 < first_seq <= $3` (block boundaries).
const LINK_SQLITE: &str = "INSERT OR IGNORE INTO audit_event_customers \
     (customer_id, instance, seq) SELECT c.value ->> 0, b.instance, c.value ->> 1 \
     FROM audit_blocks b, json_each(b.customers) c \
     WHERE b.instance = $1 AND b.first_seq > $2 AND b.first_seq <= $3";
const LINK_POSTGRES: &str = "INSERT INTO audit_event_customers \
     (customer_id, instance, seq) SELECT (c ->> 0)::bigint, b.instance, (c ->> 1)::bigint \
     FROM audit_blocks b, jsonb_array_elements(b.customers::jsonb) c \
     WHERE b.instance = $1 AND b.first_seq > $2 AND b.first_seq <= $3 ON CONFLICT DO NOTHING";

/// The head of `instance`'s chain: the last event, or (when retention
/// removed every event) the last checkpoint, or genesis `(0, zeros)`.
pub async fn chain_head(db: &Db, instance: &str) -> anyhow::Result<(i64, Hash)> {
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, events FROM audit_blocks WHERE instance = $1 \
         ORDER BY first_seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(&db.pool)
    .await?;
    if let Some((first_seq, events)) = last {
        return match decode_block(instance, first_seq, &events).pop() {
            Some(ReadRow::Ok(e)) => Ok((e.seq, e.hash)),
            _ => anyhow::bail!("audit block {instance}#{first_seq}: last event is unreadable"),
        };
    }
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_checkpoints WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(&db.pool)
    .await?;
    match row {
        Some((seq, hash)) => {
            let hash = to_hash(&hash).ok_or_else(|| {
                anyhow::anyhow!("checkpoint {instance}#{seq}: hash is not 32 bytes")
            })?;
            Ok((seq, hash))
        }
        None => Ok((0, GENESIS)),
    }
}

/// Every chain in the store with its last seq, by instance name.
pub async fn chain_heads(db: &Db) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT instance, MAX(last_seq) FROM audit_blocks GROUP BY instance ORDER BY instance",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Every instance that has events or checkpoints.
pub async fn instances(db: &Db) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT instance FROM audit_blocks UNION SELECT instance FROM audit_checkpoints \
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Events of `instance` after `after_seq`, in stored order: every event of
/// up to `max_blocks` blocks from the one holding `after_seq + 1`. Fewer
/// (or none) at the end of the chain.
pub async fn events_after(
    db: &Db,
    instance: &str,
    after_seq: i64,
    max_blocks: i64,
) -> anyhow::Result<Vec<ReadRow>> {
    let blocks: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, events FROM audit_blocks WHERE instance = $1 AND first_seq >= \
         (SELECT COALESCE(MAX(first_seq), 0) FROM audit_blocks WHERE instance = $1 \
          AND first_seq <= $2 + 1) ORDER BY first_seq LIMIT $3",
    )
    .bind(instance)
    .bind(after_seq)
    .bind(max_blocks)
    .fetch_all(&db.pool)
    .await?;
    Ok(blocks
        .iter()
        .flat_map(|(first, events)| decode_block(instance, *first, events))
        .filter(|r| r.seq() > after_seq)
        .collect())
}

/// A page of blocks of one chain in key order, decoded, and the key to pass
/// back for the next page (`None` at the end). Verification and export page
/// by block key, never by decoded seq, so damaged content cannot make them
/// loop or skip.
pub async fn blocks_from(
    db: &Db,
    instance: &str,
    after_first_seq: i64,
    max_blocks: i64,
) -> anyhow::Result<(Vec<ReadRow>, Option<i64>)> {
    let blocks: Vec<(i64, i64, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, last_seq, at, customers, events FROM audit_blocks \
         WHERE instance = $1 AND first_seq > $2 ORDER BY first_seq LIMIT $3",
    )
    .bind(instance)
    .bind(after_first_seq)
    .bind(max_blocks)
    .fetch_all(&db.pool)
    .await?;
    let next = blocks.last().map(|(first, ..)| *first);
    let mut rows = Vec::new();
    for (first, last, at, customers, events) in &blocks {
        let decoded = decode_block(instance, *first, events);
        match columns_disagree(*first, *last, *at, customers, &decoded) {
            None => rows.extend(decoded),
            Some(why) => rows.push(ReadRow::Bad {
                seq: *first,
                why: format!("block columns do not match its events: {why}"),
            }),
        }
    }
    Ok((rows, next))
}

/// Why a block's indexed columns (seq range, time, customer list) differ
/// from what its events say, if they do. Readers narrow by these columns
/// (time filters, retention, chain heads), so verification holds them to
/// the content. A block with undecodable events is left to report those.
fn columns_disagree(
    first_seq: i64,
    last_seq: i64,
    at: i64,
    customers: &str,
    rows: &[ReadRow],
) -> Option<&'static str> {
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        match r {
            ReadRow::Ok(e) => events.push(e),
            ReadRow::Bad { .. } => return None,
        }
    }
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Some("no events");
    };
    if first.seq != first_seq || last.seq != last_seq {
        return Some("seq range");
    }
    if events.iter().any(|e| e.event.occurred_at != at) {
        return Some("time");
    }
    let stored: Option<Vec<(i64, i64)>> = serde_json::from_str(customers).ok();
    if stored != Some(links(events)) {
        return Some("customer list");
    }
    None
}

/// `(customer_id, seq)` for every customer of every event: the block's
/// `customers` column and the index rows derived from it.
fn links<'a>(rows: impl IntoIterator<Item = &'a StoredEvent>) -> Vec<(i64, i64)> {
    rows.into_iter()
        .flat_map(|r| r.event.customers.iter().map(move |c| (*c, r.seq)))
        .collect()
}

/// Events in the store, as the blocks' seq ranges count them (for progress).
pub async fn count_events(db: &Db) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(last_seq - first_seq + 1), 0) AS BIGINT) FROM audit_blocks",
    )
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
    use super::*;
    use crate::audit::event::{Action, Reason, GENESIS};

    fn chain(instance: &str, n: i64) -> Block {
        Block::chain(
            instance,
            (0, GENESIS),
            (1..=n).map(|seq| {
                AuditEvent::system("svc", Action::CustomerRead, "/r")
                    .customer(seq)
                    .allow(Reason::Admin("x".into()), 200)
                    .build()
            }),
        )
    }

    fn ok(rows: Vec<ReadRow>) -> Vec<StoredEvent> {
        rows.into_iter()
            .map(|r| match r {
                ReadRow::Ok(e) => e,
                ReadRow::Bad { seq, why } => panic!("{seq}: {why}"),
            })
            .collect()
    }

    #[test]
    fn blocks_decode_back_and_name_damage() {
        let block = chain("gw", 3);
        let (rows, bytes) = (block.rows, block.bytes);
        assert_eq!(encode_block(&rows), bytes);
        assert!(rows.iter().all(StoredEvent::self_consistent));
        assert_eq!(ok(decode_block("gw", 1, &bytes)), rows);
        assert!(decode_block("gw", 1, &[]).is_empty());
        // Relabelled into another chain: every event is refused there.
        assert!(decode_block("gw-2", 1, &bytes)
            .iter()
            .all(|r| matches!(r, ReadRow::Bad { .. })));
        // A cut block keeps the events before the cut, names the next one.
        let cut = decode_block("gw", 1, &bytes[..bytes.len() - 1]);
        assert_eq!(cut.len(), 3);
        assert!(matches!(&cut[..2], [ReadRow::Ok(_), ReadRow::Ok(_)]));
        assert!(matches!(cut[2], ReadRow::Bad { seq: 3, .. }));
    }
}
