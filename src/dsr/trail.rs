//! Every step of a request is one audit event, made durable before the
//! step's transaction commits (so the store never holds a step the trail
//! does not), and its place in the chain (instance, seq) is kept with the
//! step: the erasure certificate lists those sequence numbers.
//!
//! The HTTP request that triggers a step is audited as well, by the gate
//! (the access decision); this module records what changed for the
//! data subject: action `dsr.step` with the v2 subject-rights block
//! (request id, kind, step), resource `dsr/<request id>`, the customer's
//! internal id, and a reason naming the kind (`admin:erasure`).

use sqlx::{Any, Transaction};

use super::requests::{self, RequestRow};
use super::DsrError;
use crate::audit::{Action, AuditEvent, Reason, SubjectRights};
use crate::domain::{Principal, PurposeId};
use crate::state::AppState;

/// Who performs a step.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// A person or service through the API (request id and purpose from
    /// the HTTP request).
    Caller {
        principal: &'a Principal,
        request_id: &'a str,
        purpose: &'a PurposeId,
    },
    /// The gateway itself (an erasure resumed at start, an expiry sweep).
    System(&'static str),
}

impl Actor<'_> {
    pub fn name(&self) -> &str {
        match self {
            Actor::Caller { principal, .. } => &principal.sub,
            Actor::System(name) => name,
        }
    }
}

/// The audit event of one step.
pub fn step_event(actor: &Actor<'_>, request: &RequestRow, step: &str) -> AuditEvent {
    let action = Action::DsrStep;
    let resource = format!("dsr/{}", request.uid);
    let builder = match actor {
        Actor::Caller {
            principal,
            request_id,
            purpose,
        } => AuditEvent::builder(principal, action, resource)
            .request_id(*request_id)
            .purpose(purpose),
        Actor::System(name) => AuditEvent::system(name, action, resource),
    };
    builder
        .subject_rights(SubjectRights {
            request_id: request.uid.clone(),
            kind: request.kind.as_str().to_owned(),
            step: step.to_owned(),
        })
        .customer(request.customer_id)
        .allow(Reason::Admin(request.kind.as_str().to_owned()), 200)
        .build()
}

/// Records the step's event, then appends the step (with the event's
/// place in the chain) to `tx`. The caller commits `tx`; if the trail
/// cannot record, nothing is appended and the caller's `tx` rolls back
/// when dropped.
pub async fn step(
    state: &AppState,
    tx: &mut Transaction<'_, Any>,
    actor: &Actor<'_>,
    request: &RequestRow,
    step: &str,
    detail: Option<&serde_json::Value>,
) -> Result<(), DsrError> {
    let receipt = state.audit.record(step_event(actor, request, step)).await?;
    let now = state.clock.now_micros();
    requests::add_step(
        tx,
        request.id,
        step,
        actor.name(),
        detail,
        Some((state.audit.instance(), receipt.seq)),
        now,
    )
    .await
}
