//! Requests as records: the `dsr_requests` and `dsr_steps` tables.
//!
//! A request names one customer (by internal id; the external id is read
//! through the join, so after an erasure it shows the tombstone), a kind,
//! who asked and through which channel, when it was received and when it is
//! due. At most one request of a kind is open per customer (a partial
//! unique index: a duplicate is a 409, whichever instance sees it). Steps
//! are appended, never changed.

use sqlx::{Any, Row, Transaction};

use super::{Channel, DsrError, Kind, Requester, Status};
use crate::db::Db;

/// One request as stored.
#[derive(Clone, Debug)]
pub struct RequestRow {
    pub id: i64,
    pub uid: String,
    pub customer_id: i64,
    /// The customer's external id now: the tombstone once erased.
    pub customer_key: String,
    pub customer_erased: bool,
    pub kind: Kind,
    pub status: Status,
    pub requested_by: Requester,
    pub channel: Channel,
    pub received_at: i64,
    pub due_at: i64,
    pub extended_at: Option<i64>,
    pub extension_reason: Option<String>,
    pub status_reason: Option<String>,
    pub opened_by: String,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

impl RequestRow {
    pub fn is_overdue(&self, now: i64) -> bool {
        self.status.is_open() && self.due_at < now
    }
}

/// One step of a request.
#[derive(Clone, Debug)]
pub struct StepRow {
    pub step: String,
    pub at: i64,
    pub actor: String,
    /// Non-personal detail (field names, counts), JSON.
    pub detail: Option<String>,
    pub audit_instance: Option<String>,
    pub audit_seq: Option<i64>,
}

/// A request to open.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub customer_id: i64,
    pub kind: Kind,
    pub requested_by: Requester,
    pub channel: Channel,
    pub received_at: i64,
}

const SELECT: &str = "SELECT r.id, r.request_uid, r.customer_id, c.external_id, c.erased_at, \
     r.kind, r.status, r.requested_by, r.channel, r.received_at, r.due_at, r.extended_at, \
     r.extension_reason, r.status_reason, r.opened_by, r.updated_at, r.completed_at \
     FROM dsr_requests r JOIN customers c ON c.id = r.customer_id";

fn from_row(row: &sqlx::any::AnyRow) -> Result<RequestRow, DsrError> {
    let bad = |what: &str| DsrError::Store(anyhow::anyhow!("dsr_requests: unknown {what}"));
    let kind: String = row.try_get(5)?;
    let status: String = row.try_get(6)?;
    let requested_by: String = row.try_get(7)?;
    let channel: String = row.try_get(8)?;
    Ok(RequestRow {
        id: row.try_get(0)?,
        uid: row.try_get(1)?,
        customer_id: row.try_get(2)?,
        customer_key: row.try_get(3)?,
        customer_erased: row.try_get::<Option<i64>, _>(4)?.is_some(),
        kind: Kind::parse(&kind).ok_or_else(|| bad("kind"))?,
        status: Status::parse(&status).ok_or_else(|| bad("status"))?,
        requested_by: Requester::parse(&requested_by).ok_or_else(|| bad("requester"))?,
        channel: Channel::parse(&channel).ok_or_else(|| bad("channel"))?,
        received_at: row.try_get(9)?,
        due_at: row.try_get(10)?,
        extended_at: row.try_get(11)?,
        extension_reason: row.try_get(12)?,
        status_reason: row.try_get(13)?,
        opened_by: row.try_get(14)?,
        updated_at: row.try_get(15)?,
        completed_at: row.try_get(16)?,
    })
}

/// Inserts a request; a second open request of the same kind for the same
/// customer is [`DsrError::Conflict`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    new: &NewRequest,
    uid: &str,
    due_at: i64,
    opened_by: &str,
    now: i64,
) -> Result<i64, DsrError> {
    let result = sqlx::query_scalar(
        "INSERT INTO dsr_requests (request_uid, customer_id, kind, status, requested_by, channel, \
         received_at, due_at, opened_by, created_at, updated_at) \
         VALUES ($1, $2, $3, 'received', $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(uid)
    .bind(new.customer_id)
    .bind(new.kind.as_str())
    .bind(new.requested_by.as_str())
    .bind(new.channel.as_str())
    .bind(new.received_at)
    .bind(due_at)
    .bind(opened_by)
    .bind(now)
    .fetch_one(&mut **tx)
    .await;
    match result {
        Ok(id) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(DsrError::Conflict(
            "an open request of this kind already exists for this customer",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(db: &Db, uid: &str) -> Result<Option<RequestRow>, DsrError> {
    let row = sqlx::query(&format!("{SELECT} WHERE r.request_uid = $1"))
        .bind(uid)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get_by_id(db: &Db, id: i64) -> Result<Option<RequestRow>, DsrError> {
    let row = sqlx::query(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads a request inside a transaction (after a state change).
pub async fn get_in(
    tx: &mut Transaction<'_, Any>,
    id: i64,
) -> Result<Option<RequestRow>, DsrError> {
    let row = sqlx::query(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Filters of `GET /v1/dsr`, combined with AND.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    /// Open requests whose due date has passed (at `now`).
    pub overdue: bool,
    /// Open requests due before this time.
    pub due_before: Option<i64>,
    pub now: i64,
    /// Keyset cursor: requests with a larger internal id.
    pub after_id: i64,
    pub limit: i64,
}

/// Requests in id order (oldest first).
pub async fn list(db: &Db, f: &ListFilter) -> Result<Vec<RequestRow>, DsrError> {
    let mut sql = format!("{SELECT} WHERE r.id > $1");
    let mut n = 1;
    let mut texts: Vec<&'static str> = Vec::new();
    let mut ints: Vec<i64> = Vec::new();
    if let Some(s) = f.status {
        n += 1;
        sql.push_str(&format!(" AND r.status = ${n}"));
        texts.push(s.as_str());
    }
    if let Some(k) = f.kind {
        n += 1;
        sql.push_str(&format!(" AND r.kind = ${n}"));
        texts.push(k.as_str());
    }
    let open = " AND r.status IN ('received', 'in_progress', 'on_hold')";
    if f.overdue || f.due_before.is_some() {
        sql.push_str(open);
    }
    if f.overdue {
        ints.push(f.now);
    }
    if let Some(t) = f.due_before {
        ints.push(t);
    }
    for _ in &ints {
        n += 1;
        sql.push_str(&format!(" AND r.due_at < ${n}"));
    }
    n += 1;
    sql.push_str(&format!(" ORDER BY r.id LIMIT ${n}"));
    let mut q = sqlx::query(&sql).bind(f.after_id);
    for t in texts {
        q = q.bind(t);
    }
    for i in ints {
        q = q.bind(i);
    }
    let rows = q.bind(f.limit).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

pub async fn steps(db: &Db, request_id: i64) -> Result<Vec<StepRow>, DsrError> {
    let rows = sqlx::query(
        "SELECT step, at, actor, detail, audit_instance, audit_seq FROM dsr_steps \
         WHERE request_id = $1 ORDER BY id",
    )
    .bind(request_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StepRow {
                step: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                detail: r.try_get(3)?,
                audit_instance: r.try_get(4)?,
                audit_seq: r.try_get(5)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DsrError::from)
}

/// Moves a request to `status` (with a reason for refusals and holds).
/// Only an open request moves; `Ok(false)` if it was closed meanwhile.
pub async fn set_status(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    status: Status,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, DsrError> {
    let completed = (!status.is_open()).then_some(now);
    let n = sqlx::query(
        "UPDATE dsr_requests SET status = $1, status_reason = $2, updated_at = $3, \
         completed_at = $4 WHERE id = $5 AND status IN ('received', 'in_progress', 'on_hold')",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .bind(completed)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Extends the due date once. `Ok(false)` if already extended or closed.
pub async fn extend(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    add_micros: i64,
    reason: &str,
    now: i64,
) -> Result<bool, DsrError> {
    let n = sqlx::query(
        "UPDATE dsr_requests SET due_at = due_at + $1, extended_at = $2, extension_reason = $3, \
         updated_at = $2 WHERE id = $4 AND extended_at IS NULL \
         AND status IN ('received', 'in_progress', 'on_hold')",
    )
    .bind(add_micros)
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Appends a step; `receipt` is the audit event that records it.
pub async fn add_step(
    tx: &mut Transaction<'_, Any>,
    request_id: i64,
    step: &str,
    actor: &str,
    detail: Option<&serde_json::Value>,
    receipt: Option<(&str, i64)>,
    now: i64,
) -> Result<(), DsrError> {
    sqlx::query(
        "INSERT INTO dsr_steps (request_id, step, at, actor, detail, audit_instance, audit_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(request_id)
    .bind(step)
    .bind(now)
    .bind(actor)
    .bind(detail.map(|d| d.to_string()))
    .bind(receipt.map(|r| r.0.to_owned()))
    .bind(receipt.map(|r| r.1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
