//! `/docs`: a small, self-contained page that renders `/openapi.json`. Its
//! HTML, script and style are compiled into the binary (no CDN, nothing
//! fetched from elsewhere), and it is served under a strict Content
//! Security Policy that allows only same-origin scripts, styles and fetches.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const INDEX: &str = include_str!("docs/index.html");
const SCRIPT: &str = include_str!("docs/docs.js");
const STYLE: &str = include_str!("docs/docs.css");

/// The page's policy: same-origin script, style and `fetch` only; no inline
/// code, no frames, no forms, no plugins.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(docs_page))
        .routes(routes!(docs_script))
        .routes(routes!(docs_style))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The API reference page (renders `/openapi.json`).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference page", content_type = "text/html; charset=utf-8", body = String)))]
async fn docs_page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// The reference page's script.
#[utoipa::path(get, path = "/docs/docs.js", tag = "operations",
    responses((status = 200, description = "Script of `/docs`", content_type = "text/javascript; charset=utf-8", body = String)))]
async fn docs_script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The reference page's style sheet.
#[utoipa::path(get, path = "/docs/docs.css", tag = "operations",
    responses((status = 200, description = "Style sheet of `/docs`", content_type = "text/css; charset=utf-8", body = String)))]
async fn docs_style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}
