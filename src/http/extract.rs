//! The extractors: how a request enters the pipeline.
//!
//! [`Authenticated`] runs the first stages (limits, authenticate) and
//! [`Caller`] adds the declared purpose, before a handler's body runs; a
//! refusal at either is audited here. Body and query extraction fail the
//! way the API promises: a body that is too large is 413, one that is not
//! JSON is 415 or 400, one that does not match the schema is 422, always in
//! the JSON error envelope. Bodies and queries are parsed inside the
//! handler (`into_inner`), after the gate has authorized the caller, so an
//! unauthorized caller learns nothing from schema errors and every
//! rejection is audited.

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::audit::{Action, AuditEvent, Hash, Reason};
use crate::domain::Principal;
use crate::error::ApiError;
use crate::http::middleware::RequestId;
use crate::pipeline::purpose::PurposeError;
use crate::state::AppState;

pub use crate::pipeline::gate::Caller;

/// What the trail and the logs name a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "(unmatched)";

/// The content hash of the policy in force, for events recorded before a
/// gate exists.
fn policy_version(state: &AppState) -> Option<Hash> {
    crate::audit::event::to_hash(&hex::decode(state.authorizer.version()).unwrap_or_default())
}

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
        // Never the raw path: it may hold customer ids.
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
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
                let event =
                    AuditEvent::builder(&auth.principal, Action::RequestRefused, auth.route)
                        .request_id(auth.request_id)
                        .policy_version(policy_version(state))
                        .deny(Reason::Input(code.to_owned()), 400)
                        .build();
                state.audit.record(event).await?;
                Err(ApiError::bad_request(code, e.to_string()))
            }
        }
    }
}

pub struct ApiJson<T>(Result<T, ApiError>);

impl<T> ApiJson<T> {
    pub fn into_inner(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(v),
            Err(rejection) => Err(map_rejection(&rejection)),
        }))
    }
}

fn map_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and what was expected; it never
            // contains more of the body than the offending token.
            let detail = e.body_text();
            let detail = detail
                .split_once(": ")
                .map(|(_, d)| d.to_owned())
                .unwrap_or(detail);
            ApiError::unprocessable(format!("invalid body: {}", truncate(&detail, 200)))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", "the body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge
        }
        _ => ApiError::bad_request("bad_request", "the body could not be read"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A query string, parsed like [`ApiJson`]: the result is taken inside the
/// handler, after the gate, so an unauthorized caller learns nothing from
/// validation errors and a malformed query is audited like any other
/// refusal (400 `invalid_query`).
pub struct ApiQuery<T>(Result<T, ApiError>);

impl<T> ApiQuery<T> {
    pub fn into_inner(self) -> Result<T, ApiError> {
        self.0
    }
}

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Ok(Self(
            match axum::extract::Query::<T>::from_request_parts(parts, state).await {
                Ok(axum::extract::Query(v)) => Ok(v),
                Err(e) => Err(ApiError::bad_request(
                    "invalid_query",
                    format!("invalid query string: {}", truncate(&e.body_text(), 200)),
                )),
            },
        ))
    }
}
