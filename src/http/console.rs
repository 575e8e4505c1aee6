//! `/console`: the compliance console, a static page (HTML, CSS and
//! JavaScript modules from `console/`) embedded in the binary at build
//! time, so it works on a closed network and cannot be swapped on disk.
//!
//! The page holds no data and no secret: it calls the gated API like any
//! client, with the officer's token (kept in page memory) and the
//! `compliance_audit` purpose. What it may show is decided there. These
//! routes only serve the assets, under a Content-Security-Policy that
//! allows scripts, styles and requests from this origin alone (no inline
//! script or style, no framing, no plugins, no form posts elsewhere) and
//! requires Trusted Types, so no string can ever be parsed as markup.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::error_response;
use crate::state::AppState;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// `(name under /console/assets/, content type, text)`: every file of
/// `console/` except the page itself (modules import each other as
/// `./name.js`, so they share one directory of URLs).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
    (
        "actions.js",
        JS,
        include_str!("../../console/js/actions.js"),
    ),
    ("api.js", JS, include_str!("../../console/js/api.js")),
    ("app.js", JS, include_str!("../../console/js/app.js")),
    ("charts.js", JS, include_str!("../../console/js/charts.js")),
    (
        "customer.js",
        JS,
        include_str!("../../console/js/customer.js"),
    ),
    ("dom.js", JS, include_str!("../../console/js/dom.js")),
    (
        "integrity.js",
        JS,
        include_str!("../../console/js/integrity.js"),
    ),
    (
        "overview.js",
        JS,
        include_str!("../../console/js/overview.js"),
    ),
    (
        "requests.js",
        JS,
        include_str!("../../console/js/requests.js"),
    ),
    ("trail.js", JS, include_str!("../../console/js/trail.js")),
    ("ui.js", JS, include_str!("../../console/js/ui.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

const INDEX: &str = include_str!("../../console/index.html");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    response
}

/// The compliance console (HTML; sign in with a bearer token).
///
/// Served without authentication: the page holds nothing, and every call
/// it makes is authenticated, authorized and audited by the API.
#[utoipa::path(get, path = "/console", tag = "operations",
    responses((status = 200, content_type = "text/html", description = "The console page")))]
async fn page() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

/// A static asset of the console (CSS or a JavaScript module).
#[utoipa::path(get, path = "/console/assets/{name}", tag = "operations",
    params(("name" = String, Path, description = "e.g. `console.css`, `app.js`", pattern = "^[a-z0-9_-]{1,64}[.](css|js)$")),
    responses((status = 200, description = "The asset"), (status = 404)))]
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, ..)| *file == name) {
        Some((_, content_type, body)) => with_headers(content_type, body),
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the page imports is served, and nothing in the assets
    /// needs what the policy forbids.
    #[test]
    fn assets_are_complete_and_fit_the_policy() {
        for (name, _, body) in ASSETS {
            for import in body
                .lines()
                .filter_map(|l| l.split_once("from './").map(|(_, rest)| rest))
            {
                let module = import.split('\'').next().unwrap_or("");
                assert!(
                    ASSETS.iter().any(|(n, ..)| *n == module),
                    "{name} imports {module}, which is not served"
                );
            }
            // The SVG namespace is a name, not a request.
            let body = body.replace("http://www.w3.org/2000/svg", "");
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "localStorage",
                "sessionStorage",
                "document.cookie",
                "http://",
                "https://",
            ] {
                assert!(!body.contains(forbidden), "{name} uses {forbidden}");
            }
        }
        assert!(!INDEX.contains("style="), "inline style in index.html");
        assert!(!INDEX.contains("<script>"), "inline script in index.html");
    }
}
