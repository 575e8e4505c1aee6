//! The one error type at the HTTP boundary.
//!
//! Every failure a client can see is an [`ApiError`] rendered as
//! `{"error": {"code": "...", "message": "..."}}`. Client errors carry a
//! stable machine code; internal errors are logged here, once, with their
//! cause chain, and the client only ever sees a generic message: no SQL, no
//! stack trace, no key material.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed in a way that is not about its body
    /// (a missing or unknown `X-Purpose`, a bad query parameter).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// 401: no valid credentials. One message for every cause, so the
    /// response does not tell an attacker which check failed.
    #[error("unauthenticated")]
    Unauthenticated,
    /// 403: authenticated, but policy or consent says no.
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("not found")]
    NotFound,
    /// 404: a body names a resource that does not exist (the message names
    /// the field, never the value).
    #[error("{0}")]
    MissingReference(Cow<'static, str>),
    /// 410: the customer was erased (data subject rights, `dsr::erasure`).
    #[error("the customer was erased")]
    Gone,
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: a body without `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: the body parsed but its content is invalid.
    #[error("{0}")]
    Unprocessable(Cow<'static, str>),
    #[error("rate limited")]
    RateLimited,
    /// 429: the caller's privacy budget for this purpose is spent for the
    /// current window (analytics; see `privacy`).
    #[error("the privacy budget for this purpose is spent until the window refreshes")]
    PrivacyBudgetExhausted {
        remaining_epsilon: f64,
        /// RFC 3339.
        refreshes_at: String,
        retry_after_secs: u64,
    },
    /// 503: the audit trail cannot record, so no data may leave.
    #[error("audit unavailable")]
    AuditUnavailable,
    #[error("service unavailable")]
    Unavailable,
    /// 500: a stored record failed its integrity check (a ciphertext moved,
    /// swapped or altered). Nothing of the record is returned.
    #[error("integrity failure")]
    Integrity,
    /// 500: a bug or an infrastructure failure. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The machine code of an error response, kept on the response for the
/// layers that count requests by deny reason.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden {
            code: "forbidden",
            message: message.into(),
        }
    }

    pub fn unprocessable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Unprocessable(message.into())
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound | Self::MissingReference(_) => StatusCode::NOT_FOUND,
            Self::Gone => StatusCode::GONE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited | Self::PrivacyBudgetExhausted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::AuditUnavailable | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Integrity => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } | Self::Forbidden { code, .. } => code,
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound | Self::MissingReference(_) => "not_found",
            Self::Gone => "erased",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unprocessable(_) => "invalid_input",
            Self::RateLimited => "rate_limited",
            Self::PrivacyBudgetExhausted { .. } => "privacy_budget_exhausted",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
            Self::Integrity => "integrity_failure",
        }
    }

    fn public_message(&self) -> Cow<'_, str> {
        match self {
            Self::Unauthenticated => "missing or invalid credentials".into(),
            Self::NotFound => "no such resource".into(),
            Self::AuditUnavailable => {
                "the audit trail cannot record this request; no data was returned".into()
            }
            Self::Internal(_) => "internal error".into(),
            Self::Integrity => {
                "a stored record failed its integrity check and was not returned; the event is audited"
                    .into()
            }
            other => other.to_string().into(),
        }
    }
}

/// Renders the JSON error envelope for any status; used by [`ApiError`] and
/// by the middleware that turns framework errors (404, 405, 413, timeouts)
/// into the same shape.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(Envelope {
            error: Body { code, message },
        }),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            // `{:#}` prints the whole cause chain on one line.
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut response = match &self {
            // The budget error also says what is left and when it refreshes.
            Self::PrivacyBudgetExhausted {
                remaining_epsilon,
                refreshes_at,
                retry_after_secs,
            } => {
                let body = serde_json::json!({"error": {
                    "code": self.code(),
                    "message": self.public_message(),
                    "remaining_epsilon": remaining_epsilon,
                    "refreshes_at": refreshes_at,
                }});
                let mut r = (self.status(), Json(body)).into_response();
                if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                r
            }
            _ => error_response(self.status(), self.code(), &self.public_message()),
        };
        // For the request metrics' deny reason class (see http::middleware).
        response.extensions_mut().insert(ErrorCode(self.code()));
        if let Self::RateLimited = self {
            // The limiter refills at least one request per second.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(error: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match error {
            DbError::NotFound => Self::NotFound,
            // Constraint violations are the client's doing; say so, without SQL.
            DbError::Duplicate => Self::Conflict(error.to_string().into()),
            DbError::MissingReference | DbError::OutOfRange => {
                Self::unprocessable(error.to_string())
            }
            DbError::Unavailable(cause) => {
                tracing::error!(error = format!("{cause:#}"), "database unavailable");
                Self::Unavailable
            }
            DbError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        crate::db::DbError::from(error).into()
    }
}
