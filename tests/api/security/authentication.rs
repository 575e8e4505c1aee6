//! API2 broken authentication and the JWT attacks of RFC 8725: token type
//! confusion (§3.11). Algorithm confusion, `alg: none`, key-selecting headers
//! and claim checks are covered case by case in `tests/api/authn.rs` and the
//! stage's unit tests; here, the typing rules over HTTP.

use super::*;
use crate::both_backends;
use crate::helpers::*;

const UNAUTHENTICATED: &str =
    r#"{"error":{"code":"unauthenticated","message":"missing or invalid credentials"}}"#;

async fn refused(app: &TestApp, token: &str, reason: &str) {
    let before = audit_len(app).await;
    let r = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(token)
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{reason}");
    assert_eq!(r.text().await.unwrap(), UNAUTHENTICATED);
    let (actor, action, decision, status, why) = one_event(app, before).await;
    assert_eq!(
        (actor.as_str(), action.as_str(), decision.as_str(), status),
        ("anonymous", "auth.failed", "deny", 401)
    );
    assert_eq!(why, format!("auth:{reason}"));
}

both_backends!(
    signed_tokens_that_are_not_access_tokens_are_401,
    async |app: TestApp| {
        let secret = dev_secret(&app);
        let ok = claims(&app, &["support_agent"]);
        // The well-typed token is accepted (so the refusals below are about type).
        let good = hs256(&secret, &json!({"alg": "HS256", "typ": "at+jwt"}), &ok);
        let r = app
            .client
            .get(app.url("/v1/customers"))
            .bearer_auth(&good)
            .header("x-purpose", "customer_support")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for typ in [
            "refresh+jwt",
            "id_token",
            "logout+jwt",
            "JWE",
            "JWT",
            "secevent+jwt",
        ] {
            let token = hs256(&secret, &json!({"alg": "HS256", "typ": typ}), &ok);
            refused(&app, &token, "wrong_token_type").await;
        }
        // No typ at all: explicit typing is required.
        let untyped = hs256(&secret, &json!({"alg": "HS256"}), &ok);
        refused(&app, &untyped, "wrong_token_type").await;
        // A refresh token marked in its claims rather than its header.
        let mut refresh = ok.clone();
        refresh["token_use"] = json!("refresh");
        let token = hs256(&secret, &json!({"alg": "HS256", "typ": "at+jwt"}), &refresh);
        refused(&app, &token, "wrong_token_type").await;
    }
);

both_backends!(
    jwt_typ_is_accepted_where_configured,
    config: |c: &mut custodian::config::Config| {
        c.auth.token_types = vec!["at+jwt".into(), "JWT".into()];
    },
    async |app: TestApp| {
        let secret = dev_secret(&app);
        let ok = claims(&app, &["support_agent"]);
        let token = hs256(&secret, &json!({"alg": "HS256", "typ": "JWT"}), &ok);
        let r = app
            .client
            .get(app.url("/v1/customers"))
            .bearer_auth(&token)
            .header("x-purpose", "customer_support")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = hs256(&secret, &json!({"alg": "HS256", "typ": "id_token"}), &ok);
        refused(&app, &id, "wrong_token_type").await;
    }
);
