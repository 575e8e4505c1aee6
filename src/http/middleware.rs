//! Cross-cutting HTTP layers: request ids, metrics, security headers, and the
//! net that turns every framework-generated error (unknown route, wrong
//! method, body too large, timeout) into our JSON error envelope.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

use crate::error::{error_response, ErrorCode};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, set by [`request_id`].
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Keeps a caller's `x-request-id` when it is a sane token (so ids can be
/// followed across services), otherwise mints a UUID; echoes it on the
/// response. Log lines of the request carry it through the access-log span
/// ([`access_log`]).
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Request counter and latency histogram per route template and status,
/// the counter also by decision (`allow`, `deny`, `error`) and deny reason
/// class. Runs inside the router, so it knows the matched route template
/// (never a path with ids in it) and records it on the access-log span.
pub async fn metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| crate::http::extract::UNMATCHED_ROUTE.to_owned());
    tracing::Span::current().record("route", route.as_str());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let (decision, reason) = decision_class(status, code);
    let status = status.as_u16().to_string();
    let labels = [
        ("method", method.clone()),
        ("route", route.clone()),
        ("status", status.clone()),
    ];
    metrics::counter!("custodian_http_requests_total",
        "method" => method, "route" => route, "status" => status,
        "decision" => decision, "reason" => reason)
    .increment(1);
    metrics::histogram!("custodian_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `(decision, deny reason class)` of a response, from its status and, for
/// our own errors, its machine code.
pub fn decision_class(status: StatusCode, code: Option<&str>) -> (&'static str, &'static str) {
    if status.is_server_error() {
        return match code {
            Some("audit_unavailable") => ("error", "audit_unavailable"),
            _ => ("error", "server"),
        };
    }
    if !status.is_client_error() {
        return ("allow", "none");
    }
    let reason = match (status.as_u16(), code) {
        (403, Some("consent_required")) => "consent",
        (400, Some("purpose_missing" | "purpose_unknown")) => "purpose",
        (401, _) => "authentication",
        (403, _) => "policy",
        (404, _) => "not_found",
        (429, _) => "rate_limit",
        _ => "input",
    };
    ("deny", reason)
}
/// The trace layer [`access_log`] builds.
pub type AccessLog = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&Request) -> tracing::Span,
    (),
    fn(&Response, std::time::Duration, &tracing::Span),
    (),
    (),
    (),
>;

/// The access log: one span per request (request id, method, route
/// template, principal; the last two are filled in once known) and one
/// line per response (status, latency), through tower-http's trace layer.
/// Never the path, which may hold ids, nor the query string.
pub fn access_log() -> AccessLog {
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> tracing::Span)
        .on_request(())
        .on_response(log_response as fn(&Response, std::time::Duration, &tracing::Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.as_str())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = tracing::field::Empty,
        principal = tracing::field::Empty,
    )
}

fn log_response(response: &Response, latency: std::time::Duration, _span: &tracing::Span) {
    tracing::info!(
        target: "custodian::access",
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request done"
    );
}

/// Security headers on every response. The API serves JSON only (and one
/// self-contained console page), so the policy can be strict.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // A route serving a page (`/docs`, `/console`) sets its own, still
    // strict, policy; everything else is JSON and gets the strictest.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Rewrites error responses that did not come from our handlers (they carry
/// no JSON body) into the JSON error envelope, so clients and security
/// suites only ever see one error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "the request took too long and was cancelled")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        StatusCode::BAD_REQUEST => ("bad_request", "malformed request"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_input", "invalid request body"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("error", "request failed"),
    };
    let mut rewritten = error_response(status, code, message);
    // Keep headers such as Allow, Retry-After and the request id.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// Refuses, before routing, a request target whose path or query decodes to
/// something no value of ours can be: invalid UTF-8 (which extractors would
/// otherwise decode lossily, so `%FF` would match stored U+FFFD), a NUL byte
/// (which PostgreSQL refuses with an error) or another control character.
/// One check for every route, present and future, so no such value reaches
/// a query. Pre-authentication like the body limit: counted, not audited.
pub async fn request_target(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let clean = decodes_cleanly(uri.path()) && uri.query().is_none_or(decodes_cleanly);
    if clean {
        return next.run(req).await;
    }
    metrics::counter!("custodian_targets_refused_total").increment(1);
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_target",
        "the path or query contains invalid UTF-8 or a control character",
    )
}

/// True when every percent-decoded component is UTF-8 without control
/// characters (`+` in a query is a space, so it is fine either way).
pub fn decodes_cleanly(raw: &str) -> bool {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    match std::str::from_utf8(&decoded) {
        Ok(text) => !text.chars().any(char::is_control),
        Err(_) => false,
    }
}

/// The body limit of every route, in one place (`server.max_body_bytes`).
///
/// A declared `Content-Length` over the limit is refused before anything
/// reads the body. A body of unknown length (chunked) is read here, up to
/// the limit, so a route that never reads its body cannot be used to push
/// an unbounded stream through the server either. Refusals happen before
/// authentication, so they are counted in metrics, not audited (an anonymous
/// flood must not be able to fill the trail).
pub async fn body_limit(max: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    match declared {
        // hyper refuses unparsable or conflicting lengths itself; refuse
        // anything else odd rather than guess.
        Some(None) => return refused_body(StatusCode::BAD_REQUEST),
        Some(Some(n)) if n > max as u64 => return refused_body(StatusCode::PAYLOAD_TOO_LARGE),
        Some(Some(_)) => return next.run(req).await,
        None => {}
    }
    if http_body::Body::size_hint(req.body()).upper() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            refused_body(if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            })
        }
    }
}

fn refused_body(status: StatusCode) -> Response {
    metrics::counter!("custodian_bodies_refused_total", "status" => status.as_str().to_owned())
        .increment(1);
    let mut response = if status == StatusCode::PAYLOAD_TOO_LARGE {
        error_response(status, "payload_too_large", "request body too large")
    } else {
        error_response(status, "bad_request", "the body could not be read")
    };
    // The unread rest of the body makes the connection unusable.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Turns a panic in a handler into a JSON 500 (the panic is logged, never sent).
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

#[cfg(test)]
mod tests {
    use super::decodes_cleanly;

    #[test]
    fn targets_with_nul_invalid_utf8_or_controls_are_refused() {
        for bad in [
            "/v1/customers/%00",
            "country=%FF",
            "a%00b",
            "x=%C3",
            "x=%0A",
            "x=%7F",
            "/a%E2%82",
        ] {
            assert!(!decodes_cleanly(bad), "{bad}");
        }
        for good in [
            "/v1/customers/C-1",
            "country=Deutschland&limit=5",
            "q=%C3%A9t%C3%A9",
            "a+b=%2B",
        ] {
            assert!(decodes_cleanly(good), "{good}");
        }
    }
}
