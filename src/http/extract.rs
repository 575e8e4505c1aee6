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

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
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
    crate::pipeline::gate::policy_hash(&state.authorizer.current())
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
            .authenticate_refreshing(header, state.clock.now_secs())
            .await
        {
            Ok(principal) => {
                // The access log's principal: the opaque subject id.
                tracing::Span::current().record("principal", principal.sub.as_str());
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
        if !is_json(req.headers()) {
            return Ok(Self(Err(ApiError::UnsupportedMediaType)));
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Ok(Self(Err(ApiError::PayloadTooLarge)))
            }
            Err(_) => {
                return Ok(Self(Err(ApiError::bad_request(
                    "bad_request",
                    "the body could not be read",
                ))))
            }
        };
        Ok(Self(parse_json(&bytes)))
    }
}

/// `application/json` or any `+json` media type, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body. A syntax error is 400 `malformed_json`; a body that
/// does not fit the schema is 422 naming the path and what was expected,
/// never the value that was sent (which may be personal data put into the
/// wrong field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = path_of(&e);
        json_error(&path, &e.into_inner())
    })?;
    // Trailing bytes after the value are a syntax error, not ignored.
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

/// The path of a deserialization error. For an unknown field the last
/// segment is the caller's own key, which is not ours to repeat: the path
/// stops at its parent.
fn path_of<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let unknown_field = e.inner().to_string().starts_with("unknown field");
    let segments: Vec<_> = e.path().iter().collect();
    let keep = if unknown_field {
        segments.len().saturating_sub(1)
    } else {
        segments.len()
    };
    let mut out = String::new();
    for segment in segments.into_iter().take(keep) {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out
    }
}

fn json_error(path: &str, inner: &serde_json::Error) -> ApiError {
    // Nesting past the parser's depth limit is a malformed body, whatever
    // category the path tracker reports it under.
    let too_deep = inner.to_string().starts_with("recursion limit exceeded");
    match inner.classify() {
        serde_json::error::Category::Data if !too_deep => ApiError::unprocessable(format!(
            "invalid body: {}{}",
            if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            },
            describe(&inner.to_string())
        )),
        _ => ApiError::bad_request(
            "malformed_json",
            format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            ),
        ),
    }
}

/// What serde expected, from its message, without the value it got.
///
/// serde's messages quote what was received (`invalid type: string
/// "zelda@example.org", expected a boolean`) and sometimes the caller's
/// own key (`unknown field `...``); only our side of the message is kept:
/// the expectation, and names of our own fields.
pub(crate) fn describe(message: &str) -> String {
    // serde_json appends a position; the path already says where.
    let message = match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message),
        None => message,
    };
    let expected = |m: &str| {
        m.split_once(", expected ")
            .map(|(_, e)| format!("expected {}", truncate(e, 120)))
    };
    if message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length")
        || message.starts_with("unknown variant")
    {
        return expected(message).unwrap_or_else(|| "invalid value".to_owned());
    }
    if message.starts_with("unknown field") {
        return match expected(message) {
            Some(e) => format!("unknown field, {e}"),
            None => "unknown field".to_owned(),
        };
    }
    // `missing field `x`` and `duplicate field `x`` name one of our fields.
    if (message.starts_with("missing field `") || message.starts_with("duplicate field `"))
        && message.len() <= 80
    {
        return message.to_owned();
    }
    "invalid value".to_owned()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A query string, parsed like [`ApiJson`]: the result is taken inside the
/// handler, after the gate, so an unauthorized caller learns nothing from
/// validation errors and a malformed query is audited like any other
/// refusal (400 `invalid_query`). Messages name the parameter and what was
/// expected, never the value.
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
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Self(parse_query(query)))
    }
}

/// Parses a raw query string (already checked by `middleware::request_target`
/// for NUL and invalid UTF-8).
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_of(&e);
        let detail = describe(&e.into_inner().to_string());
        ApiError::bad_request(
            "invalid_query",
            if path == "." {
                format!("invalid query string: {detail}")
            } else {
                format!("invalid query string: {path}: {detail}")
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        granted: bool,
        limit: Option<u32>,
        items: Option<Vec<Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        kind: Kind,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Kind {
        View,
        Click,
    }

    fn message(body: &str) -> String {
        parse_json::<Body>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn json_errors_name_the_path_and_the_expectation_never_the_value() {
        let secret = "zelda.private@example.org";
        let cases = [
            (
                format!(r#"{{"granted": "{secret}"}}"#),
                "granted: expected a boolean",
            ),
            (
                format!(r#"{{"granted": true, "{secret}": 1}}"#),
                "unknown field, expected one of",
            ),
            (
                format!(r#"{{"granted": true, "items": [{{"kind": "{secret}"}}]}}"#),
                "items[0].kind: expected `view` or `click`",
            ),
            (
                r#"{"granted": true, "limit": 99999999999999999999}"#.to_owned(),
                "limit: expected u32",
            ),
            (
                r#"{"granted": true, "limit": -1}"#.to_owned(),
                "limit: expected u32",
            ),
            (r#"{"limit": 1}"#.to_owned(), "missing field `granted`"),
            (
                r#"{"granted": true, "granted": false}"#.to_owned(),
                "duplicate field `granted`",
            ),
        ];
        for (body, want) in cases {
            let got = message(&body);
            assert!(got.contains(want), "{body}: {got}");
            assert!(!got.contains(secret) && !got.contains("99999"), "{got}");
        }
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        for body in [
            "{",
            "{\"granted\": tru}",
            "{\"granted\": true} trailing",
            "\u{0}",
        ] {
            let e = parse_json::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "malformed_json", "{body}");
        }
        // Nesting deeper than serde_json's limit (128) where a value may nest.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        let invalid_utf8 = b"{\"granted\": \"\xff\"}";
        assert_eq!(
            parse_json::<Body>(invalid_utf8).unwrap_err().code(),
            "malformed_json"
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Query {
        limit: Option<u32>,
        kind: Option<Kind>,
    }

    #[test]
    fn query_errors_never_echo_values() {
        for (q, want) in [
            ("limit=zelda%40example.org", "limit: "),
            (
                "kind=zelda%40example.org",
                "kind: expected `view` or `click`",
            ),
            ("zelda%40example.org=1", "unknown field"),
        ] {
            let e = parse_query::<Query>(q).unwrap_err();
            assert_eq!(e.code(), "invalid_query");
            let m = e.to_string();
            assert!(m.contains(want), "{q}: {m}");
            assert!(!m.contains("zelda"), "{m}");
        }
    }
}
