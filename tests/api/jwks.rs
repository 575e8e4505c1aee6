//! Verification keys from a JWKS URL, served by a local axum server on an
//! ephemeral port that counts its fetches: tokens signed by a served key
//! are accepted; after the issuer rotates, a token with the new `kid` is
//! accepted once the unknown-kid refetch ran; a flood of unknown kids costs
//! at most one fetch per `auth.jwks_min_refetch_secs`; a token's own `jku`
//! never makes the server fetch anything; the schedule refetches; and an
//! unreachable JWKS at start is a one-line error before any side effect.
//!
//! Authentication only, so SQLite alone: nothing here depends on the store.

use crate::helpers::*;
use axum::extract::State;
use custodian::pipeline::authenticate::{self, Ed25519Generated, TokenClaims};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The issuer's key endpoint: the document it serves and how often it was
/// fetched.
#[derive(Clone, Default)]
struct Issuer {
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&Ed25519Generated]) -> (Issuer, String) {
        let issuer = Issuer::default();
        issuer.publish(keys);
        let router = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(|State(issuer): State<Issuer>| async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    let body = issuer.document.lock().unwrap().clone();
                    ([("content-type", "application/json")], body)
                }),
            )
            .with_state(issuer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (issuer, url)
    }

    fn publish(&self, keys: &[&Ed25519Generated]) {
        let pairs: Vec<(String, [u8; 32])> = keys.iter().map(|k| (kid(k), k.public_key)).collect();
        let refs: Vec<(&str, [u8; 32])> = pairs.iter().map(|(k, p)| (k.as_str(), *p)).collect();
        *self.document.lock().unwrap() = authenticate::ed25519_jwks(&refs);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The kid the issuer publishes a key under (not its thumbprint, as real
/// issuers do).
fn kid(key: &Ed25519Generated) -> String {
    format!("issuer-{}", &key.kid()[..8])
}

fn signed(app: &TestApp, key: &Ed25519Generated, kid: &str, sub: &str) -> String {
    let now = custodian::clock::Clock::now_secs(&app.clock);
    let claims = TokenClaims {
        sub: sub.to_owned(),
        roles: vec!["support_agent".to_owned()],
        iss: app.config.auth.issuer.clone(),
        aud: app.config.auth.audience.clone(),
        exp: now + 3600,
        iat: now,
        nbf: None,
    };
    authenticate::sign_eddsa_token(&key.pkcs8_der, Some(kid), &claims).unwrap()
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.client
        .get(app.url("/v1/customers"))
        .bearer_auth(token)
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn app_with_jwks(url: &str, adjust: impl FnOnce(&mut custodian::config::Config)) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(Backend::Sqlite, move |c| {
        c.auth.jwks_url = Some(url);
        c.auth.jwks_min_refetch_secs = 1;
        adjust(c);
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_keys_verify_and_a_rotation_is_picked_up_by_kid() {
    let first = authenticate::generate_ed25519_keypair().unwrap();
    let (issuer, url) = Issuer::start(&[&first]).await;
    let app = app_with_jwks(&url, |_| {}).await;
    assert_eq!(issuer.fetches(), 1, "fetched once at start");
    assert!(!app.state.authenticator.is_dev_only());
    assert_eq!(
        status(&app, &signed(&app, &first, &kid(&first), "a")).await,
        200
    );
    // A signature by another key under a served kid is still a forgery.
    let stranger = authenticate::generate_ed25519_keypair().unwrap();
    assert_eq!(
        status(&app, &signed(&app, &stranger, &kid(&first), "b")).await,
        401
    );

    // The issuer rotates to a new key; past the refetch bound, the first
    // token naming the new kid makes the gateway fetch, and is accepted.
    let second = authenticate::generate_ed25519_keypair().unwrap();
    issuer.publish(&[&second]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = issuer.fetches();
    assert_eq!(
        status(&app, &signed(&app, &second, &kid(&second), "c")).await,
        200
    );
    assert_eq!(issuer.fetches(), before + 1);
    // The retired key verifies nothing new.
    assert_eq!(
        status(&app, &signed(&app, &first, &kid(&first), "d")).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_interval() {
    let key = authenticate::generate_ed25519_keypair().unwrap();
    let (issuer, url) = Issuer::start(&[&key]).await;
    let app = app_with_jwks(&url, |c| c.auth.jwks_min_refetch_secs = 2).await;
    let app = Arc::new(app);
    let flood = |round: usize| {
        let app = Arc::clone(&app);
        let key = &key;
        let tokens: Vec<String> = (0..40)
            .map(|i| signed(&app, key, &format!("forged-{round}-{i}"), "x"))
            .collect();
        async move {
            let requests = tokens.iter().map(|t| status(&app, t));
            futures::future::join_all(requests).await
        }
    };
    // Within the bound of the start-up fetch: no fetch at all.
    assert!(flood(0).await.iter().all(|s| *s == 401));
    assert_eq!(issuer.fetches(), 1);
    // Past it: forty unknown kids at once make exactly one fetch, and the
    // next forty none.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(flood(1).await.iter().all(|s| *s == 401));
    assert_eq!(issuer.fetches(), 2);
    assert!(flood(2).await.iter().all(|s| *s == 401));
    assert_eq!(issuer.fetches(), 2);
    // The real key still works throughout.
    assert_eq!(
        status(&app, &signed(&app, &key, &kid(&key), "ok")).await,
        200
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("custodian_jwks_refetches_limited_total"),
        "{metrics}"
    );
    assert!(metrics.contains("custodian_jwks_fetches_total{trigger=\"unknown_kid\",result=\"ok\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_inside_a_token_is_never_fetched() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let key = authenticate::generate_ed25519_keypair().unwrap();
    let (issuer, url) = Issuer::start(&[&key]).await;
    let app = app_with_jwks(&url, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The attacker's token points at the very JWKS, with an unknown kid.
    let good = signed(&app, &key, "unknown-kid", "x");
    let (_, rest) = good.split_once('.').unwrap();
    for field in ["jku", "x5u"] {
        let header =
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "unknown-kid", field: url});
        let token = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
        assert_eq!(status(&app, &token).await, 401);
    }
    assert_eq!(issuer.fetches(), 1, "refused before any key lookup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_refetches() {
    let key = authenticate::generate_ed25519_keypair().unwrap();
    let (issuer, url) = Issuer::start(&[&key]).await;
    let _app = app_with_jwks(&url, |c| c.auth.jwks_refresh_secs = 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(issuer.fetches() >= 2, "{}", issuer.fetches());
}

#[tokio::test]
async fn an_unreachable_or_bad_jwks_at_start_is_a_one_line_error() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let build = |url: String| async move {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        config.auth.jwks_url = Some(url);
        let r = custodian::startup::Application::build(config).await;
        let err = format!("{:#}", r.err().expect("refused"));
        assert!(
            !data.path().join("custodian.db").exists(),
            "no side effect: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
        err
    };
    let err = build(format!("http://127.0.0.1:{closed}/jwks")).await;
    assert!(
        err.contains("auth.jwks_url") && err.to_lowercase().contains("connection refused"),
        "{err}"
    );

    // Served, but not a usable key set: an HTTP error, private key
    // material, a symmetric key, too large.
    let (issuer, url) = Issuer::start(&[]).await;
    let cases = [
        ("{\"keys\": []}", "no signing key"),
        (r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, "oct"),
        (
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}]}"#,
            "private key",
        ),
    ];
    for (document, expected) in cases {
        *issuer.document.lock().unwrap() = document.to_owned();
        let err = build(url.clone()).await;
        assert!(
            err.contains("auth.jwks_url") && err.contains(expected),
            "{expected}: {err}"
        );
    }
    *issuer.document.lock().unwrap() = " ".repeat(authenticate::MAX_JWKS_BYTES + 1);
    let err = build(url.clone()).await;
    assert!(err.contains("larger than"), "{err}");
    let err = build(url.replace("/jwks", "/elsewhere")).await;
    assert!(err.contains("HTTP 404"), "{err}");

    // Plain http to anything but loopback is refused with the configuration.
    let mut config = test_config(std::path::Path::new("/nonexistent"));
    config.auth.jwks_url = Some("http://issuer.example/jwks".into());
    let err = authenticate::Authenticator::from_config(&config.auth)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("auth.jwks_url") && err.contains("https"),
        "{err}"
    );
}
