//! Summaries of the trail for charts: hourly counts of events per
//! (action, decision, purpose, actor, reason) in `audit_stats` (migration
//! 0016), and the aggregations the compliance console draws from them.
//!
//! The counts are filled off the request path, in the same transaction as
//! a customer-index pass ([`store::index_customers`] calls
//! [`count_pending`]), so they lag the trail by at most one pass, and
//! retention takes them out with the blocks it removes ([`uncount`]). They
//! are derived data, never evidence: the chain does not cover them, and a
//! block that cannot be decoded is left out (verification names it). A
//! chart over a million events reads a few thousand summary rows instead
//! of decoding every block.

use std::collections::HashMap;

use sqlx::{Any, Transaction};

use super::store::{self, ReadRow};
use crate::db::Db;

/// Microseconds in an hour: the summaries' resolution.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// The hour an instant (µs since the epoch) falls in.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(HOUR_MICROS)
}

/// One summary row's key (within an instance).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    hour: i64,
    action: String,
    decision: &'static str,
    purpose: String,
    actor: String,
    reason: String,
}

/// `(events, events that touched a customer)`.
type Counts = (i64, i64);

/// Sums the decodable events of `rows` by key.
fn summarize(rows: &[ReadRow]) -> HashMap<Key, Counts> {
    let mut out: HashMap<Key, Counts> = HashMap::new();
    for row in rows {
        let ReadRow::Ok(e) = row else { continue };
        let e = &e.event;
        let key = Key {
            hour: hour_of(e.occurred_at),
            action: e.action.as_str().to_owned(),
            decision: e.decision.as_str(),
            purpose: e.purpose.clone().unwrap_or_default(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
        };
        let c = out.entry(key).or_default();
        c.0 += 1;
        c.1 += i64::from(!e.customers.is_empty());
    }
    out
}

/// Adds `sign` × `counts` to the summary rows of `instance`.
async fn apply(
    tx: &mut Transaction<'_, Any>,
    instance: &str,
    counts: HashMap<Key, Counts>,
    sign: i64,
) -> anyhow::Result<()> {
    for (k, (events, touching)) in counts {
        sqlx::query(
            "INSERT INTO audit_stats \
             (instance, hour, action, decision, purpose, actor, reason, events, touching) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (instance, hour, action, decision, purpose, actor, reason) \
             DO UPDATE SET events = audit_stats.events + excluded.events, \
             touching = audit_stats.touching + excluded.touching",
        )
        .bind(instance)
        .bind(k.hour)
        .bind(k.action)
        .bind(k.decision)
        .bind(k.purpose)
        .bind(k.actor)
        .bind(k.reason)
        .bind(sign * events)
        .bind(sign * touching)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The first_seq through which `instance`'s blocks are counted.
async fn progress(tx: &mut Transaction<'_, Any>, instance: &str) -> anyhow::Result<i64> {
    sqlx::query(
        "INSERT INTO audit_stats_progress (instance, counted_through) VALUES ($1, 0) \
         ON CONFLICT (instance) DO NOTHING",
    )
    .bind(instance)
    .execute(&mut **tx)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT counted_through FROM audit_stats_progress WHERE instance = $1")
            .bind(instance)
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Counts up to `max_blocks` of `instance`'s blocks past its progress into
/// the summaries and advances the progress, in the caller's transaction
/// (which holds the chain's index progress row, so retention cannot run
/// beside it). Returns the number of blocks counted (0: caught up).
pub async fn count_pending(
    tx: &mut Transaction<'_, Any>,
    instance: &str,
    max_blocks: i64,
) -> anyhow::Result<i64> {
    let done = progress(tx, instance).await?;
    let blocks: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, last_seq, events FROM audit_blocks \
         WHERE instance = $1 AND first_seq > $2 ORDER BY first_seq LIMIT $3",
    )
    .bind(instance)
    .bind(done)
    .bind(max_blocks)
    .fetch_all(&mut **tx)
    .await?;
    let Some(&(last_first, ..)) = blocks.last() else {
        return Ok(0);
    };
    let rows: Vec<ReadRow> = blocks
        .iter()
        .flat_map(|(first, _, bytes)| store::decode_block(instance, *first, bytes))
        .collect();
    apply(tx, instance, summarize(&rows), 1).await?;
    sqlx::query("UPDATE audit_stats_progress SET counted_through = $2 WHERE instance = $1")
        .bind(instance)
        .bind(last_first)
        .execute(&mut **tx)
        .await?;
    Ok(i64::try_from(blocks.len()).unwrap_or(0))
}

/// Takes the counted blocks of `instance` with `first_seq <= through` out
/// of the summaries (retention, before it deletes those blocks, in its
/// transaction).
pub async fn uncount(
    tx: &mut Transaction<'_, Any>,
    instance: &str,
    through: i64,
) -> anyhow::Result<()> {
    let done = progress(tx, instance).await?;
    let upto = through.min(done);
    let mut after = i64::MIN;
    loop {
        let blocks: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT first_seq, events FROM audit_blocks \
             WHERE instance = $1 AND first_seq > $2 AND first_seq <= $3 \
             ORDER BY first_seq LIMIT 1000",
        )
        .bind(instance)
        .bind(after)
        .bind(upto)
        .fetch_all(&mut **tx)
        .await?;
        let Some(&(last, _)) = blocks.last() else {
            break;
        };
        let rows: Vec<ReadRow> = blocks
            .iter()
            .flat_map(|(first, bytes)| store::decode_block(instance, *first, bytes))
            .collect();
        apply(tx, instance, summarize(&rows), -1).await?;
        after = last;
    }
    sqlx::query("DELETE FROM audit_stats WHERE instance = $1 AND events <= 0")
        .bind(instance)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What the charts may be narrowed to: whole hours `[from_hour, to_hour)`,
/// and optionally one purpose or one actor.
#[derive(Clone, Debug, Default)]
pub struct StatsFilter {
    pub from_hour: i64,
    pub to_hour: i64,
    pub purpose: Option<String>,
    pub actor: Option<String>,
}

impl StatsFilter {
    /// ` WHERE …` and its binds, with `extra` conditions appended.
    fn clause(&self, extra: &str) -> (String, Vec<String>) {
        let mut sql = String::from(" WHERE hour >= $1 AND hour < $2");
        let mut binds = Vec::new();
        for (column, value) in [("purpose", &self.purpose), ("actor", &self.actor)] {
            if let Some(v) = value {
                binds.push(v.clone());
                sql.push_str(&format!(" AND {column} = ${}", binds.len() + 2));
            }
        }
        sql.push_str(extra);
        (sql, binds)
    }

    async fn fetch<T>(
        &self,
        db: &Db,
        select: &str,
        extra: &str,
        tail: &str,
    ) -> anyhow::Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let (clause, binds) = self.clause(extra);
        let sql = format!("SELECT {select} FROM audit_stats{clause} {tail}");
        let mut q = sqlx::query_as::<_, T>(&sql)
            .bind(self.from_hour)
            .bind(self.to_hour);
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(&db.pool).await?)
    }
}

/// Events per time bucket (`bucket_hours` wide, aligned to the epoch) and
/// decision: `(bucket index, allowed, denied)`, buckets without events
/// left out.
pub async fn decisions_over_time(
    db: &Db,
    filter: &StatsFilter,
    bucket_hours: i64,
) -> anyhow::Result<Vec<(i64, i64, i64)>> {
    let bucket_hours = bucket_hours.max(1);
    // The bucket width is a number we chose, never client text.
    let select = format!(
        "hour / {bucket_hours} AS b, \
         CAST(SUM(CASE WHEN decision = 'allow' THEN events ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN decision = 'deny' THEN events ELSE 0 END) AS BIGINT)"
    );
    let tail = format!("GROUP BY hour / {bucket_hours} ORDER BY 1");
    filter.fetch(db, &select, "", &tail).await
}

/// Denied events by actor and reason, largest first, at most `limit`.
pub async fn denials(
    db: &Db,
    filter: &StatsFilter,
    limit: i64,
) -> anyhow::Result<Vec<(String, String, i64)>> {
    filter
        .fetch(
            db,
            "actor, reason, CAST(SUM(events) AS BIGINT)",
            " AND decision = 'deny'",
            &format!(
                "GROUP BY actor, reason ORDER BY 3 DESC, 1, 2 LIMIT {}",
                limit.max(1)
            ),
        )
        .await
}

/// Events that touched customer data, by purpose (`''`: none declared) and
/// decision: `(purpose, allowed, denied)`, most allowed first.
pub async fn accesses_by_purpose(
    db: &Db,
    filter: &StatsFilter,
) -> anyhow::Result<Vec<(String, i64, i64)>> {
    filter
        .fetch(
            db,
            "purpose, \
             CAST(SUM(CASE WHEN decision = 'allow' THEN touching ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN decision = 'deny' THEN touching ELSE 0 END) AS BIGINT)",
            " AND touching > 0",
            "GROUP BY purpose ORDER BY 2 DESC, 1",
        )
        .await
}
