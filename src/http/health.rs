//! Operational routes: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unready` with the reason.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
    })
}

/// Readiness: the database answers, every migration is applied and the audit
/// trail can record. A load balancer should stop routing here otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, (StatusCode, Json<Health>)> {
    match state.db.ready().await {
        Ok(()) if !state.audit.is_healthy() => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unready",
                reason: Some("audit trail cannot record".to_owned()),
            }),
        )),
        Ok(()) => Ok(Json(Health {
            status: "ok",
            reason: None,
        })),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "not ready");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unready",
                    reason: Some("database unavailable or migrations pending".to_owned()),
                }),
            ))
        }
    }
}

/// Prometheus metrics in the text exposition format.
///
/// Open unless `server.metrics_token` (or `metrics_token_file`) is set; then
/// only `Authorization: Bearer <token>` may scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics, each family with `# HELP` and `# TYPE`",
               content_type = "text/plain; version=0.0.4", body = String),
              (status = 401, description = "`server.metrics_token` is set and the request does not carry it (code `unauthenticated`)")))]
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(expected) = &state.config.server.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given, expected.expose().as_bytes()).into();
        if !ok {
            return Err(ApiError::Unauthenticated);
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
