//! Body extraction that fails the way the API promises: a body that is too
//! large is 413, one that is not JSON is 415 or 400, one that does not match
//! the schema is 422, always in the JSON error envelope.
//!
//! The body is parsed inside the handler (`into_inner`), after the gate has
//! authenticated and authorized the caller, so an unauthorized caller learns
//! nothing from schema errors and every rejection is audited.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
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
