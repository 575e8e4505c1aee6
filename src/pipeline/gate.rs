//! The gate: how a handler walks one operation through the pipeline's
//! decision stages and records it.
//!
//! The extractors in `http::extract` run limits, authenticate and purpose
//! and hand the handler a [`Caller`]. The handler opens a [`Gate`] for one
//! [`Action`] (which names the policy's `(object, act)`), asks it to
//! authorize and check consent, lets `sanitize` shape what leaves, and hands
//! its outcome to [`Gate::finish`], which records exactly one audit event
//! for the request (allowed or denied) and only then lets the response
//! leave. Writes commit through [`Gate::commit_audited`] and aggregate
//! answers through [`Gate::release`] (in `release`), both of which make the
//! event durable before the transaction commits. If the event cannot be
//! made durable, the response is replaced by a 503 and nothing leaves
//! (fail-closed). A gate dropped without being finished belongs to a
//! request cancelled mid-way (timeout, client gone): it records a
//! `cancelled` event on its way out.

use axum::http::StatusCode;
use std::collections::HashSet;
use std::sync::Arc;

use super::authorize::{CompiledPolicy, FieldView};
use crate::audit::{
    Action, AuditEvent, Builder, Hash, PrivacyBlock, Reason, Served, SubjectRights,
};
use crate::domain::{Principal, PurposeId, Treatment};
use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated request with a valid declared purpose: what every
/// decision stage needs to know about who asks, and why.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub purpose: PurposeId,
    pub request_id: String,
    /// The route template (`/v1/customers/{id}`), never the raw path.
    pub route: String,
}

/// The content hash of `policy` as audit events carry it.
pub fn policy_hash(policy: &CompiledPolicy) -> Option<Hash> {
    crate::audit::event::to_hash(&hex::decode(policy.version()).unwrap_or_default())
}

/// One governed operation: an [`Action`] under one caller and purpose.
pub struct Gate<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    action: Action,
    /// One consistent policy version for every question of this request.
    policy: Arc<CompiledPolicy>,
    rule: Option<Arc<str>>,
    consent: Option<String>,
    customers: Vec<i64>,
    fields: Vec<(String, Treatment)>,
    records: u64,
    status: StatusCode,
    privacy: Option<PrivacyBlock>,
    subject_rights: Option<SubjectRights>,
    served: Option<Served>,
    /// The allow event was made durable before a write committed
    /// ([`Gate::commit_audited`], [`Gate::release`]).
    recorded: bool,
    /// A 404 of this request is a customer without consent for the purpose.
    hidden_by_consent: bool,
    /// `finish` ran: the request's one event was recorded (or refused).
    finished: bool,
}

impl<'a> Gate<'a> {
    pub fn new(state: &'a AppState, caller: &'a Caller, action: Action) -> Self {
        Self {
            state,
            caller,
            action,
            policy: state.authorizer.current(),
            rule: None,
            consent: None,
            customers: Vec::new(),
            fields: Vec::new(),
            records: 0,
            status: StatusCode::OK,
            privacy: None,
            subject_rights: None,
            served: None,
            recorded: false,
            hidden_by_consent: false,
            finished: false,
        }
    }

    pub fn state(&self) -> &'a AppState {
        self.state
    }

    pub fn caller(&self) -> &Caller {
        self.caller
    }

    pub fn purpose(&self) -> &PurposeId {
        &self.caller.purpose
    }

    /// Stage 3: may this caller's roles do (object, action) for the purpose?
    pub fn authorize(&mut self) -> Result<(), ApiError> {
        // An action no policy rule can name is never allowed.
        let Some((object, act)) = self.action.operation() else {
            debug_assert!(
                false,
                "gate opened for {:?}, which no policy names",
                self.action
            );
            return Err(ApiError::forbidden(
                "this operation is not governed by any policy",
            ));
        };
        let decision = self.policy.decide(
            &self.caller.principal.roles,
            object,
            act,
            &self.caller.purpose,
        );
        if decision.allowed {
            self.rule = decision.rule;
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "the policy does not allow this for your role and purpose",
            ))
        }
    }

    /// A further permission the operation needs (e.g. a field-level action).
    pub fn also_allowed(&self, object: &str, act: &str) -> bool {
        self.policy
            .decide(
                &self.caller.principal.roles,
                object,
                act,
                &self.caller.purpose,
            )
            .allowed
    }

    /// The strongest treatment per field this caller may have.
    pub fn field_view(&self, resource: &str, fields: &[&str]) -> FieldView {
        self.policy.field_view(
            &self.caller.principal.roles,
            resource,
            fields,
            &self.caller.purpose,
        )
    }

    /// Notes customers this request touches (for the audit event).
    pub fn touch(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.customers.extend(ids);
    }

    /// Whether the declared purpose needs the customer's consent at all.
    pub fn consent_required(&self) -> bool {
        self.state
            .purposes
            .get(&self.caller.purpose)
            .is_none_or(|p| p.consent_required)
    }

    /// Stage 4 for one customer: unless the customer currently consents to
    /// the purpose (when the purpose requires it), they are not there for
    /// it: 404, exactly like an unknown id, so the answer is no oracle of
    /// who exists and who withheld consent. Only the audit event says why
    /// (reason `consent:missing`).
    pub async fn require_consent(&mut self, customer_id: i64) -> Result<(), ApiError> {
        let ok = self.consenting(&[customer_id]).await?;
        if ok.contains(&customer_id) {
            Ok(())
        } else {
            self.hidden_by_consent = true;
            Err(ApiError::NotFound)
        }
    }

    /// Whether this caller may learn how many customers a list left out for
    /// want of consent: only roles that may read the consent ledger for the
    /// purpose. Others would learn who withheld consent by paging.
    pub fn may_see_consent_counts(&self) -> bool {
        self.also_allowed("consent", "read")
    }

    /// The scope an opaque cursor is sealed to: the list it pages, this
    /// caller's purpose and principal.
    pub fn cursor_scope<'g>(&'g self, list: &'g str) -> crate::crypto::cursor::CursorScope<'g> {
        crate::crypto::cursor::CursorScope {
            list,
            purpose: self.caller.purpose.as_str(),
            principal: &self.caller.principal.sub,
        }
    }

    /// Stage 4 done by the caller's own query (the consent predicate was
    /// part of it): records the consent state without looking it up again.
    pub fn consent_applied_in_query(&mut self) {
        let state = if self.consent_required() {
            "granted"
        } else {
            "not_required"
        };
        self.consent = Some(state.to_owned());
    }

    /// Stage 4 in bulk: which of `ids` may be used for the purpose (one query).
    pub async fn consenting(&mut self, ids: &[i64]) -> Result<HashSet<i64>, ApiError> {
        if !self.consent_required() {
            self.consent = Some("not_required".to_owned());
            return Ok(ids.iter().copied().collect());
        }
        let ok = super::consent::consenting(&self.state.db, self.caller.purpose.as_str(), ids)
            .await
            .map_err(ApiError::Internal)?;
        self.consent = Some(
            if ok.len() == ids.len() {
                "granted"
            } else {
                "missing"
            }
            .to_owned(),
        );
        Ok(ok)
    }

    /// Records what leaves: fields with their treatment and the record count.
    pub fn returned(
        &mut self,
        fields: impl IntoIterator<Item = (String, Treatment)>,
        records: u64,
    ) {
        for (name, treatment) in fields {
            if !self.fields.iter().any(|(n, _)| *n == name) {
                self.fields.push((name, treatment));
            }
        }
        self.records = records;
    }

    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// Evidence of an aggregate answer, for the event's privacy block
    /// (normally set by [`Gate::release`]).
    pub fn privacy(&mut self, block: PrivacyBlock) {
        self.privacy = Some(block);
    }

    /// The data subject request this operation is a step of.
    pub fn subject_rights(&mut self, block: SubjectRights) {
        self.subject_rights = Some(block);
    }

    /// What a recommendation answer served.
    pub fn served(&mut self, block: Served) {
        self.served = Some(block);
    }

    /// The content hash of the policy version deciding this request.
    pub fn policy_version(&self) -> Option<Hash> {
        policy_hash(&self.policy)
    }

    /// Stage 8: records the one audit event of this request and lets the
    /// outcome leave only once the event is durable.
    pub async fn finish<T>(mut self, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
        self.finished = true;
        if self.recorded && outcome.is_ok() {
            return outcome;
        }
        // After a recorded write whose commit then failed, this second event
        // says so: the trail never claims a change that did not happen.
        let event = self.event_for(&outcome);
        self.state.audit.record(event).await?;
        outcome
    }

    /// Commits this request's write together with its allow event. Set the
    /// final status and the customers touched before calling it.
    ///
    /// The event is made durable first: a change never lands without its
    /// event, and if the trail cannot record, the transaction is rolled back
    /// and the request fails with 503 having changed nothing. (On SQLite
    /// the trail lives in its own attached file with its own write lock,
    /// so the writer does not wait behind this open transaction.)
    pub async fn commit_audited(
        &mut self,
        tx: sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), ApiError> {
        let event = self.event_for::<()>(&Ok(()));
        // On error `tx` is dropped here, which rolls it back.
        self.state.audit.record(event).await?;
        self.recorded = true;
        tx.commit().await.map_err(crate::db::DbError::from)?;
        Ok(())
    }

    /// What every event of this request names: who, what, where, why
    /// (purpose), under which policy, and the customers touched so far.
    fn event_builder(&self) -> Builder {
        AuditEvent::builder(
            &self.caller.principal,
            self.action.clone(),
            self.caller.route.clone(),
        )
        .request_id(self.caller.request_id.clone())
        .purpose(&self.caller.purpose)
        .policy_version(self.policy_version())
        .customers(self.customers.iter().copied())
    }

    /// The event of a request cancelled before it finished: status 504
    /// (what the timeout answers; a client that left gets no answer at all)
    /// and reason `cancelled`, allowed or denied as far as authorization got.
    fn cancelled_event(&self) -> AuditEvent {
        let builder = self.event_builder();
        let reason = Reason::Outcome("cancelled".to_owned());
        let status = StatusCode::GATEWAY_TIMEOUT.as_u16();
        if self.rule.is_some() {
            builder.allow(reason, status).build()
        } else {
            builder.deny(reason, status).build()
        }
    }

    /// The one audit event describing `outcome`.
    fn event_for<T>(&self, outcome: &Result<T, ApiError>) -> AuditEvent {
        let mut builder = self.event_builder();
        if let Some(block) = &self.subject_rights {
            builder = builder.subject_rights(block.clone());
        }
        let policy_reason = || {
            Reason::Policy(
                self.rule
                    .as_deref()
                    .unwrap_or("no matching rule")
                    .to_owned(),
            )
        };
        let event = match &outcome {
            Ok(_) => {
                let mut builder = builder.fields(self.fields.clone()).records(self.records);
                if let Some(block) = &self.privacy {
                    builder = builder.privacy(block.clone());
                }
                if let Some(block) = &self.served {
                    builder = builder.served(block.clone());
                }
                builder.allow(policy_reason(), self.status.as_u16())
            }
            Err(e) => {
                let status = e.status().as_u16();
                let reason = match e {
                    ApiError::Forbidden {
                        code: "consent_required",
                        ..
                    } => {
                        metrics::counter!("custodian_consent_denials_total",
                            "purpose" => self.caller.purpose.as_str().to_owned())
                        .increment(1);
                        Reason::Consent(
                            self.consent.clone().unwrap_or_else(|| "missing".to_owned()),
                        )
                    }
                    ApiError::Forbidden { .. } => policy_reason(),
                    ApiError::BadRequest { code, .. } => Reason::Input((*code).to_owned()),
                    ApiError::Unprocessable(_)
                    | ApiError::Conflict(_)
                    | ApiError::PayloadTooLarge
                    | ApiError::UnsupportedMediaType
                    | ApiError::MissingReference(_) => Reason::Input(e.code().to_owned()),
                    other => Reason::Outcome(other.code().to_owned()),
                };
                if self.hidden_by_consent && matches!(e, ApiError::NotFound) {
                    return builder
                        .deny(
                            Reason::Consent(
                                self.consent.clone().unwrap_or_else(|| "missing".to_owned()),
                            ),
                            status,
                        )
                        .build();
                }
                if self.rule.is_some() && matches!(e, ApiError::NotFound) {
                    builder.allow(reason, status)
                } else {
                    builder.deny(reason, status)
                }
            }
        };
        event.build()
    }
}

impl Drop for Gate<'_> {
    /// A gate dropped before `finish`: the request's future was dropped
    /// mid-way, by the request timeout or a client that went away (every
    /// handler ends in `finish`, so there is no other way here). Whatever
    /// it had done is rolled back with its open transaction and no answer
    /// leaves; the trail still gets one event saying the request was
    /// cancelled, queued without waiting since nothing can wait any more.
    /// A write whose event was already made durable (and committed) needs
    /// no second one.
    fn drop(&mut self) {
        if self.finished || self.recorded || std::thread::panicking() {
            return;
        }
        metrics::counter!("custodian_gate_cancelled_total").increment(1);
        let event = self.cancelled_event();
        if !self.state.audit.record_detached(event) {
            metrics::counter!("custodian_audit_rejected_total", "reason" => "cancelled_request")
                .increment(1);
            tracing::error!(
                action = self.action.as_str(),
                "the audit event of a cancelled request could not be queued"
            );
        }
    }
}
