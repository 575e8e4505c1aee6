//! The HTTP surface: one file per resource, each with its own `router()`,
//! assembled here with the cross-cutting layers. Handlers are thin: they
//! extract, call pipeline stages in order, and return.

pub mod audit;
pub mod bench;
pub mod consents;
pub mod console;
pub mod customers;
pub mod docs;
pub mod dsr;
pub mod extract;
pub mod health;
pub mod keys;
pub mod middleware;
pub mod openapi;
pub mod orders;
pub mod policies;
pub mod privacy;
pub mod profiles;
pub mod pseudonyms;
pub mod quality;
pub mod recommendations;
pub mod segments;
pub mod serve;
pub mod stats;
pub mod tls;
pub mod validate;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{BoxError, Json, Router};
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::error_response;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Custodian",
        description = "Privacy-compliant data governance gateway. Every data route needs \
            `Authorization: Bearer <JWT>` and `X-Purpose: <purpose id>`. Errors are \
            `{\"error\": {\"code\", \"message\"}}`; every response carries `x-request-id`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "customers", description = "Governed customer reads and writes"),
        (name = "consents", description = "Purposes and the consent ledger"),
        (name = "events", description = "Batch ingestion of browsing events"),
        (name = "quality", description = "Data quality report and quarantine"),
        (name = "dsr", description = "Data subject requests: access, portability, rectification, erasure"),
        (name = "segments", description = "Audience segments on the governed view: sizes and distributions under k threshold, noise and a privacy budget"),
        (name = "profiles", description = "Customer profiles (clusters), released as aggregates only"),
        (name = "privacy", description = "Privacy budgets of analytics"),
        (name = "recommendations", description = "Personalized top-N, frequently bought together, popularity"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the data routes reference.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Builds the complete application: routes plus layers.
///
/// Layer order matters; listed from the outside in (the first sees the
/// request first):
/// 1. `catch_panic`: a panic anywhere becomes a JSON 500;
/// 2. `request_id`: every response, even errors, carries `x-request-id`;
/// 3. `access_log`: tower-http's trace layer, one span and one line per
///    request (route template and principal recorded by inner layers);
/// 4. `json_errors`: framework errors get the JSON envelope;
/// 5. `security_headers`;
/// 6. `body_limit`: one body limit for every route, known or not, then
///    `request_target`: no NUL, control or invalid UTF-8 in path or query;
/// 7. `metrics` (inside the router, so it knows the matched route);
/// 8. timeout, then the extractors' body limit (the same number).
pub fn app(state: AppState) -> Router {
    let (router, mut openapi) = api_router().split_for_parts();
    openapi::complete(&mut openapi, &state.purposes);
    let mut openapi = openapi::render(&openapi);
    openapi::plan_events(&mut openapi, &state.event_schema);
    let openapi = std::sync::Arc::new(openapi);
    let timeout = Duration::from_millis(state.config.server.request_timeout_ms);
    let max_body = state.config.server.max_body_bytes;

    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .merge(bench::router(state.config.server.bench_baseline_route))
        .layer(axum::middleware::from_fn(middleware::metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    if err.is::<tower::timeout::error::Elapsed>() {
                        error_response(
                            StatusCode::GATEWAY_TIMEOUT,
                            "timeout",
                            "the request took too long and was cancelled",
                        )
                    } else {
                        tracing::error!(error = %err, "middleware error");
                        error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "internal error",
                        )
                    }
                    .into_response()
                }))
                .timeout(timeout),
        )
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::body_limit(max_body, timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(middleware::request_target))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(middleware::access_log())
        .layer(axum::middleware::from_fn(middleware::request_id))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
}

/// Every documented route. Routes are added through `utoipa_axum::routes!`,
/// so a route cannot exist without its OpenAPI entry.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(docs::router())
        .merge(customers::router())
        .merge(audit::router())
        .merge(consents::router())
        .merge(orders::router())
        .merge(keys::router())
        .merge(pseudonyms::router())
        .merge(policies::router())
        .merge(quality::router())
        .merge(dsr::router())
        .merge(segments::router())
        .merge(profiles::router())
        .merge(privacy::router())
        .merge(recommendations::router())
        .merge(stats::router())
        .merge(console::router())
}
