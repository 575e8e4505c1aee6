//! The security suite: one module per threat, each case an attack over real
//! HTTP on both backends. Every case asserts the status, that nothing of the
//! store or of the caller's input leaked into the answer, that the store is
//! unchanged where it must be, and that exactly one audit event records it.
//!
//! Map to the OWASP API Security Top 10 (2023), as it applies here:
//! API1 object-level authorization → `authorization`, `privacy`;
//! API2 broken authentication → `authentication` (RFC 8725 attacks too);
//! API3 property-level authorization → `privacy` (fields, internal ids);
//! API4 unrestricted resource consumption → `input_limits`, `availability`;
//! API5 function-level authorization → `authorization` (admin routes);
//! API6 sensitive business flows → `privacy` (existence oracles);
//! API8 security misconfiguration → `input_limits` (errors, headers);
//! API10 unsafe consumption → `injection`, `tampering`.
//! (API7 SSRF and API9 inventory do not apply: the gateway fetches no URL a
//! caller names, and every route is in the OpenAPI document.)

mod authentication;
mod authorization;
mod availability;
mod fuzz;
mod injection;
mod input_limits;
mod privacy;
mod tampering;

use crate::helpers::TestApp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custodian::clock::Clock;
use serde_json::{json, Value};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The development HS256 secret the app generated into its data directory.
pub fn dev_secret(app: &TestApp) -> Vec<u8> {
    let text = std::fs::read_to_string(
        app.config
            .data_dir
            .join(custodian::pipeline::authenticate::setup::DEV_SECRET_FILE),
    )
    .unwrap();
    text.trim_end().as_bytes().to_vec()
}

/// Valid claims for `roles` at the app's current time.
pub fn claims(app: &TestApp, roles: &[&str]) -> Value {
    let now = app.clock.now_secs();
    json!({
        "sub": "mallory",
        "roles": roles,
        "iss": "custodian",
        "aud": "custodian-api",
        "iat": now,
        "exp": now + 3600,
    })
}

/// A compact JWS signed with HS256 under `secret`.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// How many audit events the store holds now (every response is sent only
/// after its event is durable, so this is exact between requests).
pub async fn audit_len(app: &TestApp) -> usize {
    app.audit_rows().await.len()
}

/// The one event a request left: asserts exactly one was added since
/// `before` and returns it as (actor, action, decision, status, reason).
pub async fn one_event(app: &TestApp, before: usize) -> (String, String, String, i64, String) {
    let rows = app.audit_rows().await;
    assert_eq!(rows.len(), before + 1, "exactly one event: {rows:?}");
    rows.last().cloned().unwrap()
}

/// Asserts a JSON error envelope with `code`, and that its text contains
/// none of `secrets`. Returns the message.
pub async fn assert_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
    secrets: &[&str],
) -> String {
    assert_eq!(response.status(), status, "expected {status} {code}");
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    for s in secrets {
        assert!(!text.contains(s), "response leaks {s:?}: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"]["code"], code, "{text}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Number of customers in the store (for "the store is unchanged").
pub async fn customer_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM customers")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

/// Sends raw bytes on a fresh TCP connection and returns everything the
/// server answers until it closes (or `wait` passes).
pub async fn raw_exchange(app: &TestApp, request: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    // The server may answer (and close) before reading all of a large body.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 exchange.
pub fn raw_status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}
