//! Erasure (Art. 17) by crypto-shredding, as a resumable state machine.
//!
//! One row of `dsr_erasures` per erasure holds its state; each transition
//! is one transaction that does its work, records its audit event (durable
//! first) and moves the state, so a crash between two steps leaves a state
//! the next start resumes from ([`resume_all`], awaited before the
//! listener serves). Every step is idempotent: a step that committed its
//! work but not its state change is simply done again.
//!
//! ```text
//! started ─► key_destroyed ─► rows_removed ─► derived_removed ─► completed
//! ```
//!
//! 1. **key_destroyed** (one transaction, so the customer is never seen
//!    half-erased): the blind indexes of e-mail and phone go on the
//!    suppression list; the wrapped data key is deleted (every ciphertext
//!    of the customer, wherever a copy lives, becomes noise); the customer
//!    row is emptied (ciphertexts, blind indexes, city, country, signup
//!    time) and its external id replaced by the tombstone, so their old id
//!    answers 410 and their pseudonyms no longer resolve; their orders'
//!    link is replaced by the tombstone; their documents are deleted.
//! 2. **rows_removed**: browsing events deleted (in batches, so a million
//!    events never hold one long lock); consent events keep the fact
//!    (purpose, decision, times, receipt id) but lose evidence text,
//!    source and recorder; the derived consent state is deleted.
//! 3. **derived_removed**: every registered [`super::hooks::SubjectHook`]
//!    forgets the customer (segments, recommendation models, caches).
//! 4. **completed**: the certificate is signed and stored, the request is
//!    completed.
//!
//! The customer row itself is kept, emptied, as the anchor of the
//! tombstone and of the ids in the audit trail (which stays verifiable).

use serde_json::json;
use sqlx::Row;
use std::collections::BTreeMap;

use super::certificate::{self, AuditRef, Certificate, Statement};
use super::requests::{self, RequestRow};
use super::trail::{self, Actor};
use super::{random_id, DsrError, Status};
use crate::clock::rfc3339;
use crate::crypto::BlindField;
use crate::state::AppState;

/// Events deleted per transaction.
const EVENT_BATCH: i64 = 5000;

/// The states of an erasure, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Started,
    KeyDestroyed,
    RowsRemoved,
    DerivedRemoved,
    Completed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Started => "started",
            State::KeyDestroyed => "key_destroyed",
            State::RowsRemoved => "rows_removed",
            State::DerivedRemoved => "derived_removed",
            State::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Started,
            State::KeyDestroyed,
            State::RowsRemoved,
            State::DerivedRemoved,
            State::Completed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What starting an erasure led to.
#[derive(Debug)]
pub enum Outcome {
    /// Erased; the certificate is stored with the request.
    Completed(Box<Certificate>),
    /// A legal hold blocks it; the request is on hold with this reason.
    OnHold(String),
    /// Stopped after the given state (tests simulating a crash).
    Stopped(State),
}

/// Whether `external_id` belonged to a customer who was erased.
pub async fn is_erased_subject(state: &AppState, external_id: &str) -> Result<bool, DsrError> {
    let digest = state.vault.subject_digest(external_id);
    let found: Option<i64> =
        sqlx::query_scalar("SELECT request_id FROM dsr_erasures WHERE subject_digest = $1")
            .bind(digest.to_vec())
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(found.is_some())
}

/// Starts (or continues) the erasure of `request`, up to `stop_after` if
/// given (tests), else to completion.
pub async fn erase(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    stop_after: Option<State>,
) -> Result<Outcome, DsrError> {
    if !request.status.is_open() {
        return Err(DsrError::Conflict("the request is closed"));
    }
    let now = state.clock.now_micros();
    if let Some(hold) = super::hold::active(&state.db, request.customer_id).await? {
        // Already begun erasures cannot be on hold: holds are checked here,
        // before anything is destroyed, and a hold set later does not undo.
        if current_state(state, request.id).await?.is_none() {
            if request.status != Status::OnHold {
                let mut tx = state.db.pool.begin().await?;
                requests::set_status(&mut tx, request.id, Status::OnHold, Some(&hold.reason), now)
                    .await?;
                let detail = json!({ "reason": "legal_hold" });
                trail::step(state, &mut tx, actor, request, "on_hold", Some(&detail)).await?;
                tx.commit().await?;
            }
            return Ok(Outcome::OnHold(hold.reason));
        }
    }
    if current_state(state, request.id).await?.is_none() {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT external_id, erased_at FROM customers WHERE id = $1")
                .bind(request.customer_id)
                .fetch_optional(&state.db.pool)
                .await?;
        let (external_id, erased_at) = row.ok_or(DsrError::NotFound)?;
        if erased_at.is_some() {
            return Err(DsrError::Erased);
        }
        let tombstone = random_id("t_")?;
        let digest = state.vault.subject_digest(&external_id);
        let mut tx = state.db.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO dsr_erasures (request_id, customer_id, tombstone, subject_digest, state, \
             started_at, updated_at) VALUES ($1, $2, $3, $4, 'started', $5, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(request.id)
        .bind(request.customer_id)
        .bind(&tombstone)
        .bind(digest.to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another instance started it a moment ago: continue theirs.
            drop(tx);
        } else {
            sqlx::query(
                "UPDATE dsr_requests SET status = 'in_progress', status_reason = NULL, \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(request.id)
            .execute(&mut *tx)
            .await?;
            trail::step(state, &mut tx, actor, request, "erasure_started", None).await?;
            tx.commit().await?;
        }
    }
    run(state, actor, request.id, stop_after).await
}

async fn current_state(state: &AppState, request_id: i64) -> Result<Option<State>, DsrError> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT state FROM dsr_erasures WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&state.db.pool)
            .await?;
    s.map(|s| {
        State::parse(&s)
            .ok_or_else(|| DsrError::Store(anyhow::anyhow!("dsr_erasures: unknown state")))
    })
    .transpose()
}

/// The erasure row's fixed parts.
struct Erasure {
    customer_id: i64,
    tombstone: String,
    state: State,
}

async fn load(state: &AppState, request_id: i64) -> Result<Erasure, DsrError> {
    let row =
        sqlx::query("SELECT customer_id, tombstone, state FROM dsr_erasures WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&state.db.pool)
            .await?
            .ok_or(DsrError::NotFound)?;
    let s: String = row.try_get(2)?;
    Ok(Erasure {
        customer_id: row.try_get(0)?,
        tombstone: row.try_get(1)?,
        state: State::parse(&s)
            .ok_or_else(|| DsrError::Store(anyhow::anyhow!("dsr_erasures: unknown state")))?,
    })
}

/// Moves the erasure from `from` to `to` inside `tx`; false if another
/// instance moved it first.
async fn advance(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    request_id: i64,
    from: State,
    to: State,
    now: i64,
) -> Result<bool, DsrError> {
    let n = sqlx::query(
        "UPDATE dsr_erasures SET state = $1, updated_at = $2 WHERE request_id = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(request_id)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Runs the remaining steps of an erasure that has begun.
pub async fn run(
    state: &AppState,
    actor: &Actor<'_>,
    request_id: i64,
    stop_after: Option<State>,
) -> Result<Outcome, DsrError> {
    loop {
        let e = load(state, request_id).await?;
        if e.state == State::Completed {
            let cert = stored_certificate(state, request_id)
                .await?
                .ok_or_else(|| DsrError::Store(anyhow::anyhow!("completed without certificate")))?;
            return Ok(Outcome::Completed(Box::new(cert)));
        }
        if stop_after.is_some_and(|s| e.state >= s) {
            return Ok(Outcome::Stopped(e.state));
        }
        let request = requests::get_by_id(&state.db, request_id)
            .await?
            .ok_or(DsrError::NotFound)?;
        match e.state {
            State::Started => destroy_key(state, actor, &request, &e).await?,
            State::KeyDestroyed => remove_rows(state, actor, &request, &e).await?,
            State::RowsRemoved => remove_derived(state, actor, &request, &e).await?,
            State::DerivedRemoved => certify(state, actor, &request, &e).await?,
            State::Completed => {}
        }
    }
}

/// Step 1: suppression list, data key, customer row, order links, documents.
async fn destroy_key(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    e: &Erasure,
) -> Result<(), DsrError> {
    let now = state.clock.now_micros();
    let id = e.customer_id;
    let mut tx = state.db.pool.begin().await?;
    let row = sqlx::query(
        "SELECT c.email_bidx, c.phone_bidx, k.kek_version, k.wrapped_dek FROM customers c \
         LEFT JOIN data_keys k ON k.customer_id = c.id WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DsrError::NotFound)?;
    let email_bidx: Option<Vec<u8>> = row.try_get(0)?;
    let phone_bidx: Option<Vec<u8>> = row.try_get(1)?;
    let version: Option<i64> = row.try_get(2)?;
    let wrapped: Option<Vec<u8>> = row.try_get(3)?;
    let digest: Vec<u8> =
        sqlx::query_scalar("SELECT subject_digest FROM dsr_erasures WHERE request_id = $1")
            .bind(request.id)
            .fetch_one(&mut *tx)
            .await?;
    for (field, index) in [
        ("external_id", Some(digest)),
        (BlindField::Email.name(), email_bidx),
        (BlindField::Phone.name(), phone_bidx),
    ] {
        if let Some(index) = index {
            super::suppression::add(&mut tx, field, &index, request.id, now).await?;
        }
    }
    let key_id = match (version, &wrapped) {
        (Some(v), Some(w)) => {
            let d = ring::digest::digest(&ring::digest::SHA256, w);
            format!(
                "dek:v{v}:{}",
                hex::encode(d.as_ref().get(..8).unwrap_or_default())
            )
        }
        // Resumed after the key was already deleted: keep the recorded id.
        _ => sqlx::query_scalar::<_, Option<String>>(
            "SELECT key_id FROM dsr_erasures WHERE request_id = $1",
        )
        .bind(request.id)
        .fetch_one(&mut *tx)
        .await?
        .unwrap_or_else(|| "none".to_owned()),
    };
    let keys = sqlx::query("DELETE FROM data_keys WHERE customer_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "UPDATE customers SET external_id = $1, email_ct = NULL, email_bidx = NULL, \
         phone_ct = NULL, phone_bidx = NULL, name_ct = NULL, birth_date_ct = NULL, \
         postcode_ct = NULL, city = NULL, country = NULL, signup_at = 0, \
         erased_at = COALESCE(erased_at, $2), updated_at = $2 WHERE id = $3",
    )
    .bind(&e.tombstone)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let orders = sqlx::query(
        "UPDATE orders SET customer_tombstone = $1, customer_id = NULL WHERE customer_id = $2",
    )
    .bind(&e.tombstone)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let documents = super::documents::delete_for_customer(&mut tx, id).await?;
    sqlx::query("UPDATE dsr_erasures SET key_id = $1 WHERE request_id = $2")
        .bind(&key_id)
        .bind(request.id)
        .execute(&mut *tx)
        .await?;
    if !advance(
        &mut tx,
        request.id,
        State::Started,
        State::KeyDestroyed,
        now,
    )
    .await?
    {
        return Ok(());
    }
    let detail = json!({
        "key_id": key_id,
        "data_keys_deleted": keys,
        "orders_tombstoned": orders,
        "documents_deleted": documents,
    });
    trail::step(
        state,
        &mut tx,
        actor,
        request,
        "key_destroyed",
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("custodian_dsr_keys_destroyed_total").increment(keys);
    Ok(())
}

/// Step 2: events, consent evidence, consent state.
async fn remove_rows(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    e: &Erasure,
) -> Result<(), DsrError> {
    let id = e.customer_id;
    let mut events = 0u64;
    loop {
        let n = sqlx::query(
            "DELETE FROM events WHERE id IN \
             (SELECT id FROM events WHERE customer_id = $1 LIMIT $2)",
        )
        .bind(id)
        .bind(EVENT_BATCH)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
        events += n;
        if n == 0 {
            break;
        }
    }
    let now = state.clock.now_micros();
    let mut tx = state.db.pool.begin().await?;
    let consents = sqlx::query(
        "UPDATE consent_events SET evidence = NULL, source = 'erased', actor = 'erased' \
         WHERE customer_id = $1 AND (evidence IS NOT NULL OR source <> 'erased' \
         OR actor <> 'erased')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let states = sqlx::query("DELETE FROM consent_state WHERE customer_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if !advance(
        &mut tx,
        request.id,
        State::KeyDestroyed,
        State::RowsRemoved,
        now,
    )
    .await?
    {
        return Ok(());
    }
    // Counts of this pass (a resumed step counts what was left).
    let detail = json!({
        "events_deleted": events,
        "consent_events_anonymized": consents,
        "consent_states_deleted": states,
    });
    trail::step(
        state,
        &mut tx,
        actor,
        request,
        "rows_removed",
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Step 3: every registered hook.
async fn remove_derived(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    e: &Erasure,
) -> Result<(), DsrError> {
    let mut tx = state.db.pool.begin().await?;
    let mut removed = serde_json::Map::new();
    for hook in state.dsr.hooks.all().iter() {
        let n = hook.erase(&mut tx, e.customer_id).await?;
        removed.insert(hook.name().to_owned(), n.into());
    }
    let now = state.clock.now_micros();
    if !advance(
        &mut tx,
        request.id,
        State::RowsRemoved,
        State::DerivedRemoved,
        now,
    )
    .await?
    {
        return Ok(());
    }
    let detail = json!({ "hooks": removed });
    trail::step(
        state,
        &mut tx,
        actor,
        request,
        "derived_removed",
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Step 4: sign the certificate, complete the request.
async fn certify(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    e: &Erasure,
) -> Result<(), DsrError> {
    let steps = requests::steps(&state.db, request.id).await?;
    let mut removed = BTreeMap::new();
    let mut audit_events = Vec::new();
    for s in &steps {
        if let (Some(instance), Some(seq)) = (&s.audit_instance, s.audit_seq) {
            audit_events.push(AuditRef {
                step: s.step.clone(),
                instance: instance.clone(),
                seq,
            });
        }
        let detail: Option<serde_json::Value> = s
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        if let Some(serde_json::Value::Object(map)) = detail {
            for (k, v) in map {
                if let Some(n) = v.as_u64() {
                    *removed.entry(k).or_insert(0) += n;
                } else if let serde_json::Value::Object(hooks) = v {
                    for (h, n) in hooks {
                        *removed.entry(format!("hook:{h}")).or_insert(0) += n.as_u64().unwrap_or(0);
                    }
                }
            }
        }
    }
    let row = sqlx::query(
        "SELECT e.key_id, c.erased_at FROM dsr_erasures e JOIN customers c \
         ON c.id = e.customer_id WHERE e.request_id = $1",
    )
    .bind(request.id)
    .fetch_one(&state.db.pool)
    .await?;
    let key_id: Option<String> = row.try_get(0)?;
    let erased_at: Option<i64> = row.try_get(1)?;
    let now = state.clock.now_micros();
    let statement = Statement {
        format: certificate::FORMAT.to_owned(),
        request_id: request.uid.clone(),
        tombstone: e.tombstone.clone(),
        destroyed_key_id: key_id.unwrap_or_else(|| "none".to_owned()),
        received_at: rfc3339(request.received_at),
        erased_at: rfc3339(erased_at.unwrap_or(now)),
        issued_at: rfc3339(now),
        removed,
        audit_events,
        key_id: String::new(),
    };
    let cert = certificate::sign(state.dsr.signer(), statement)?;
    let text = serde_json::to_string(&cert).map_err(anyhow::Error::from)?;
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE dsr_erasures SET certificate = $1, completed_at = $2 WHERE request_id = $3",
    )
    .bind(&text)
    .bind(now)
    .bind(request.id)
    .execute(&mut *tx)
    .await?;
    if !advance(
        &mut tx,
        request.id,
        State::DerivedRemoved,
        State::Completed,
        now,
    )
    .await?
    {
        return Ok(());
    }
    requests::set_status(&mut tx, request.id, Status::Completed, None, now).await?;
    trail::step(state, &mut tx, actor, request, "completed", None).await?;
    tx.commit().await?;
    metrics::counter!("custodian_dsr_erasures_total").increment(1);
    Ok(())
}

/// The stored certificate of a completed erasure.
pub async fn stored_certificate(
    state: &AppState,
    request_id: i64,
) -> Result<Option<Certificate>, DsrError> {
    let text: Option<Option<String>> =
        sqlx::query_scalar("SELECT certificate FROM dsr_erasures WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&state.db.pool)
            .await?;
    text.flatten()
        .map(|t| serde_json::from_str(&t).map_err(|e| DsrError::Store(e.into())))
        .transpose()
}

/// Completes every erasure an earlier process left unfinished. Awaited at
/// start, before the listener serves, so no request sees one mid-way for
/// longer than the process was down.
pub async fn resume_all(state: &AppState) -> anyhow::Result<u64> {
    let pending: Vec<i64> = sqlx::query_scalar(
        "SELECT request_id FROM dsr_erasures WHERE state <> 'completed' ORDER BY request_id",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let actor = Actor::System("system:dsr-resume");
    let mut done = 0;
    for id in pending {
        match run(state, &actor, id, None).await {
            Ok(_) => done += 1,
            Err(e) => tracing::error!(request = id, error = %e, "resuming an erasure failed"),
        }
    }
    if done > 0 {
        tracing::info!(erasures = done, "resumed interrupted erasures");
    }
    Ok(done)
}
