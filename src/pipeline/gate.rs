//! The gate: how a handler walks a request through the pipeline.
//!
//! Two extractors run the first stages before a handler's body:
//! [`Authenticated`] (limits + authenticate) and [`Caller`] (plus purpose).
//! A handler then opens a [`Gate`] for one (object, action), asks it to
//! authorize, check consent, and sanitize, and hands its outcome to
//! [`Gate::finish`], which records exactly one audit event for the request
//! (allowed or denied) and only then lets the response leave. If the event
//! cannot be made durable, the response is replaced by a 503 and no data
//! leaves (fail-closed).

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::audit::{Action, AuditEvent, Builder, Reason};
use super::authorize::{CompiledPolicy, FieldView};
use super::purpose::PurposeError;
use crate::domain::{Principal, PurposeId, Treatment};
use crate::error::ApiError;
use crate::http::middleware::RequestId;
use crate::state::AppState;

/// The header that declares why the caller wants the data.
pub const PURPOSE_HEADER: &str = "x-purpose";

/// An authenticated request (stages: limits, authenticate).
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    pub request_id: String,
    /// The route template (`/v1/customers/{id}`), for the audit trail.
    pub route: String,
}

/// An authenticated request with a valid declared purpose.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub purpose: PurposeId,
    pub request_id: String,
    pub route: String,
}

fn request_meta(parts: &Parts) -> (String, String) {
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    (request_id, route)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (request_id, route) = request_meta(parts);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match state
            .authenticator
            .authenticate(header, state.clock.now_secs())
        {
            Ok(principal) => {
                if !state.limits.allow_principal(&principal.sub) {
                    metrics::counter!("custodian_rate_limited_total", "kind" => "principal")
                        .increment(1);
                    return Err(ApiError::RateLimited);
                }
                Ok(Self {
                    principal,
                    request_id,
                    route,
                })
            }
            Err(failure) => {
                metrics::counter!("custodian_auth_failures_total", "reason" => failure.code())
                    .increment(1);
                let ip = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                // Past the per-address limit, failures are only counted: an
                // audit write per forged token would let a flood fill the
                // trail and starve real requests.
                if let Some(ip) = ip {
                    if !state.limits.allow_failed_auth(ip) {
                        metrics::counter!("custodian_rate_limited_total", "kind" => "failed_auth")
                            .increment(1);
                        return Err(ApiError::RateLimited);
                    }
                }
                tracing::info!(reason = failure.code(), "authentication failed");
                if state.limits.audit_failed_auth() {
                    let event = AuditEvent::auth_failed(request_id, route, failure.code());
                    state.audit.record(event).await?;
                } else {
                    metrics::counter!("custodian_auth_failures_unaudited_total").increment(1);
                }
                Err(ApiError::Unauthenticated)
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        let header = parts
            .headers
            .get(PURPOSE_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
            .unwrap_or("");
        match state.purposes.parse(header) {
            Ok(purpose) => Ok(Self {
                principal: auth.principal,
                purpose,
                request_id: auth.request_id,
                route: auth.route,
            }),
            Err(e) => {
                let code = match e {
                    PurposeError::Missing => "purpose_missing",
                    PurposeError::Unknown => "purpose_unknown",
                };
                let event = AuditEvent::builder(
                    &auth.principal,
                    Action::Other("request".into()),
                    auth.route,
                )
                .request_id(auth.request_id)
                .deny(Reason::Input(code.to_owned()), 400)
                .build();
                state.audit.record(event).await?;
                Err(ApiError::bad_request(code, e.to_string()))
            }
        }
    }
}

/// One governed operation: an (object, action) under one caller and purpose.
pub struct Gate<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    object: &'static str,
    act: &'static str,
    /// One consistent policy version for every question of this request.
    policy: Arc<CompiledPolicy>,
    rule: Option<Arc<str>>,
    consent: Option<String>,
    customers: Vec<i64>,
    fields: Vec<(String, Treatment)>,
    records: u64,
    status: StatusCode,
    /// The audit action, when it is not `object.act` (e.g. `key.rotate`).
    action: Option<Action>,
    /// The allow event was made durable before a write committed
    /// ([`Gate::commit_audited`]).
    recorded: bool,
    /// A 404 of this request is a customer without consent for the purpose.
    hidden_by_consent: bool,
}

impl<'a> Gate<'a> {
    pub fn new(
        state: &'a AppState,
        caller: &'a Caller,
        object: &'static str,
        act: &'static str,
    ) -> Self {
        Self {
            state,
            caller,
            object,
            act,
            policy: state.authorizer.current(),
            rule: None,
            consent: None,
            customers: Vec::new(),
            fields: Vec::new(),
            records: 0,
            status: StatusCode::OK,
            action: None,
            recorded: false,
            hidden_by_consent: false,
        }
    }

    pub fn caller(&self) -> &Caller {
        self.caller
    }

    pub fn purpose(&self) -> &PurposeId {
        &self.caller.purpose
    }

    /// Stage 3: may this caller's roles do (object, action) for the purpose?
    pub fn authorize(&mut self) -> Result<(), ApiError> {
        let decision = self.policy.decide(
            &self.caller.principal.roles,
            self.object,
            self.act,
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

    /// Records the audit event under `action` instead of `object.act`.
    pub fn audit_as(&mut self, action: Action) {
        self.action = Some(action);
    }

    /// Stage 8: records the one audit event of this request and lets the
    /// outcome leave only once the event is durable.
    pub async fn finish<T>(self, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
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
        tx.commit().await?;
        Ok(())
    }

    /// The one audit event describing `outcome`.
    fn event_for<T>(&self, outcome: &Result<T, ApiError>) -> AuditEvent {
        let action = self
            .action
            .clone()
            .unwrap_or_else(|| Action::parse(&format!("{}.{}", self.object, self.act)));
        let builder: Builder =
            AuditEvent::builder(&self.caller.principal, action, self.caller.route.clone())
                .request_id(self.caller.request_id.clone())
                .purpose(&self.caller.purpose)
                .customers(self.customers.iter().copied());
        let policy_reason = || {
            Reason::Policy(
                self.rule
                    .as_deref()
                    .unwrap_or("no matching rule")
                    .to_owned(),
            )
        };
        let event = match &outcome {
            Ok(_) => builder
                .fields(self.fields.clone())
                .records(self.records)
                .allow(policy_reason(), self.status.as_u16()),
            Err(e) => {
                let status = e.status().as_u16();
                let reason = match e {
                    ApiError::Forbidden {
                        code: "consent_required",
                        ..
                    } => Reason::Consent(
                        self.consent.clone().unwrap_or_else(|| "missing".to_owned()),
                    ),
                    ApiError::Forbidden { .. } => policy_reason(),
                    ApiError::BadRequest { code, .. } => Reason::Input((*code).to_owned()),
                    ApiError::Unprocessable(_)
                    | ApiError::Conflict(_)
                    | ApiError::PayloadTooLarge => Reason::Input(e.code().to_owned()),
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

impl Gate<'_> {
    /// Stage 7 for customer rows: each field in the strongest treatment the
    /// caller may have, decrypting only what leaves in clear or masked. A
    /// ciphertext that does not open at its place fails the whole request
    /// (`integrity_failure`): never a partial or someone else's record.
    /// A key version this instance does not know yet (another instance
    /// rotated) is loaded from the store first.
    pub async fn sanitize_customers(
        &mut self,
        rows: &[crate::db::customers::StoredCustomer],
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, ApiError> {
        use super::authorize::vocabulary::CUSTOMER_FIELDS;
        use super::sanitize::{sanitize_record, RecordInput, SanitizeContext, SanitizeError};
        use crate::crypto::CryptoError;

        let view = self.field_view("customer", CUSTOMER_FIELDS);
        let view: Vec<(&str, Treatment)> = view
            .fields
            .iter()
            .map(|g| (g.field.as_str(), g.treatment))
            .collect();
        let ctx = SanitizeContext {
            catalog: &self.state.catalog,
            pseudonymizer: self.state.vault.pseudonymizer(),
            purpose: &self.caller.purpose,
            resource: "customer",
        };
        self.state
            .vault
            .ensure_versions(&self.state.db, rows.iter().filter_map(|r| r.kek_version))
            .await
            .map_err(ApiError::Internal)?;
        let keyring = self.state.vault.keyring();
        let mut out = Vec::with_capacity(rows.len());
        let mut returned: Vec<(String, Treatment)> = Vec::new();
        for row in rows {
            let fields = super::sanitize::customer_fields(row);
            let input = RecordInput {
                record_id: row.id,
                customer_key: Some(&row.external_id),
                fields: &fields,
            };
            let dek = || match (&row.kek_version, &row.wrapped_dek) {
                (Some(v), Some(w)) => keyring.unwrap_dek(
                    u32::try_from(*v).map_err(|_| CryptoError::Integrity)?,
                    w,
                    row.id,
                ),
                _ => Err(CryptoError::Integrity),
            };
            match sanitize_record(&ctx, &view, &input, dek) {
                Ok(s) => {
                    for r in s.returned {
                        if !returned.contains(&r) {
                            returned.push(r);
                        }
                    }
                    out.push(s.fields);
                }
                Err(SanitizeError::Integrity { field }) => {
                    tracing::error!(customer = row.id, field = %field, "ciphertext failed its integrity check");
                    self.touch([row.id]);
                    return Err(ApiError::Integrity);
                }
                Err(SanitizeError::Key(e)) => {
                    tracing::error!(customer = row.id, error = %e, "customer data key unavailable");
                    self.touch([row.id]);
                    return Err(ApiError::Integrity);
                }
                Err(e) => {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "sanitize customer {}: {e}",
                        row.id
                    )))
                }
            }
        }
        self.returned(returned, out.len() as u64);
        Ok(out)
    }
}
