//! Authentication over real HTTP: every forged, broken or unacceptable token
//! gets the same 401 body, leaks nothing, and leaves exactly one `auth.failed`
//! deny event whose reason names the internal cause.

use crate::both_backends;
use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custodian::clock::Clock;
use custodian::config::Config;
use custodian::pipeline::authenticate::{self, TokenClaims};
use serde_json::{json, Value};
use std::path::PathBuf;

const UNAUTHENTICATED: &str =
    r#"{"error":{"code":"unauthenticated","message":"missing or invalid credentials"}}"#;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Valid claims for `roles` at the app's current time.
fn claims(app: &TestApp, roles: &[&str]) -> Value {
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

fn hs(alg: ring::hmac::Algorithm, secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(alg, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    hs(ring::hmac::HMAC_SHA256, secret, header, claims)
}

/// The development secret the app generated into its data directory.
fn dev_secret(app: &TestApp) -> Vec<u8> {
    let text = std::fs::read_to_string(
        app.config
            .data_dir
            .join(authenticate::setup::DEV_SECRET_FILE),
    )
    .unwrap();
    text.trim_end().as_bytes().to_vec()
}

fn rs256(header: &Value, claims: &Value) -> String {
    let pem = std::fs::read(fixture("rsa_private.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.typ = Some("at+jwt".into());
    h.kid = header["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

/// Flips one character in the middle of segment `index` of a token.
fn tamper(token: &str, index: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let seg = &mut parts[index];
    let mid = seg.len() / 2;
    let c = if &seg[mid..=mid] == "A" { "B" } else { "A" };
    seg.replace_range(mid..=mid, c);
    parts.join(".")
}

/// Sends a data request with `authorization` (raw header value) and checks
/// the uniform 401 and the one audit event it leaves.
async fn assert_refused(app: &TestApp, authorization: Option<&str>, code: &str) {
    let before = app.audit_rows().await.len();
    let mut request = app
        .client
        .get(app.url("/v1/customers"))
        .header("x-purpose", "customer_support");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 401, "{code}");
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.text().await.unwrap();
    assert_eq!(body, UNAUTHENTICATED, "{code}: the body must not vary");
    let rows = app.audit_rows().await;
    assert_eq!(
        rows.len(),
        before + 1,
        "{code}: exactly one event: {rows:?}"
    );
    let (actor, action, decision, status, reason) = rows.last().unwrap();
    assert_eq!(actor, "anonymous", "{code}");
    assert_eq!(action, "auth.failed", "{code}");
    assert_eq!(decision, "deny", "{code}");
    assert_eq!(*status, 401, "{code}");
    assert_eq!(reason, &format!("auth:{code}"), "{code}");
}

async fn assert_accepted(app: &TestApp, token: &str) {
    let r = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(token)
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

both_backends!(dev_token_attacks_are_uniform_401s, async |app: TestApp| {
    let secret = dev_secret(&app);
    let ok = claims(&app, &["support_agent"]);
    let hs_header = json!({"alg": "HS256", "typ": "at+jwt"});
    let good = hs256(&secret, &hs_header, &ok);
    assert_accepted(&app, &good).await;

    // alg none, with and without a signature part; case variants.
    let none_input = format!(
        "{}.{}",
        b64(json!({"alg": "none", "typ": "at+jwt"})
            .to_string()
            .as_bytes()),
        b64(ok.to_string().as_bytes())
    );
    assert_refused(&app, Some(&format!("Bearer {none_input}.")), "malformed").await;
    for alg in ["none", "None", "NONE"] {
        let token = hs256(&secret, &json!({"alg": alg, "typ": "at+jwt"}), &ok);
        assert_refused(
            &app,
            Some(&format!("Bearer {token}")),
            "algorithm_not_allowed",
        )
        .await;
    }
    // Outside the allowlist, even with the right secret.
    let hs512 = hs(
        ring::hmac::HMAC_SHA512,
        &secret,
        &json!({"alg": "HS512", "typ": "at+jwt"}),
        &ok,
    );
    assert_refused(
        &app,
        Some(&format!("Bearer {hs512}")),
        "algorithm_not_allowed",
    )
    .await;
    // A token choosing its own key, correctly signed with the dev secret.
    for (name, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        (
            "jwk",
            json!({"kty": "oct", "k": b64(b"attacker-chosen-secret-0123456789")}),
        ),
        ("jku", Value::Null),
    ] {
        let mut header = hs_header.clone();
        header[name] = value;
        let token = hs256(&secret, &header, &ok);
        assert_refused(&app, Some(&format!("Bearer {token}")), "forbidden_header").await;
    }
    // Claims that are signed but wrong.
    let now = app.clock.now_secs();
    let mut cases = Vec::new();
    let mut c = ok.clone();
    c["iss"] = json!("someone-else");
    cases.push((c, "wrong_issuer"));
    let mut c = ok.clone();
    c["aud"] = json!("another-api");
    cases.push((c, "wrong_audience"));
    let mut c = ok.clone();
    c["nbf"] = json!(now + 600);
    cases.push((c, "not_yet_valid"));
    let mut c = ok.clone();
    c["exp"] = json!(now - 600);
    cases.push((c, "expired"));
    let mut c = ok.clone();
    c.as_object_mut().unwrap().remove("roles");
    cases.push((c, "invalid_claims"));
    for (claims, code) in cases {
        let token = hs256(&secret, &hs_header, &claims);
        assert_refused(&app, Some(&format!("Bearer {token}")), code).await;
    }
    // Tampering: a payload granting more roles, or a changed signature.
    let forged_payload = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let more = b64(claims(&app, &["dpo"]).to_string().as_bytes());
        parts[1] = &more;
        parts.join(".")
    };
    assert_refused(
        &app,
        Some(&format!("Bearer {forged_payload}")),
        "bad_signature",
    )
    .await;
    assert_refused(
        &app,
        Some(&format!("Bearer {}", tamper(&good, 2))),
        "bad_signature",
    )
    .await;
    // Size, garbage, absence, the wrong scheme.
    let huge = format!("Bearer {}", "a".repeat(9 * 1024));
    assert_refused(&app, Some(&huge), "oversized").await;
    assert_refused(&app, Some("Bearer not-a-token"), "malformed").await;
    assert_refused(&app, Some("Bearer a.b.c"), "malformed").await;
    assert_refused(&app, None, "missing").await;
    assert_refused(&app, Some(""), "missing").await;
    assert_refused(&app, Some(&format!("Basic {good}")), "malformed").await;
    assert_refused(&app, Some(&format!("Token {good}")), "malformed").await;
    assert_refused(&app, Some("Bearer "), "malformed").await;
});

both_backends!(
    expiry_follows_the_clock_even_for_cached_tokens,
    async |app: TestApp| {
        let token = app.token("agent", &["support_agent"]);
        assert_accepted(&app, &token).await;
        // Past exp (1 h) plus leeway (30 s): refused although it was cached.
        app.clock.advance_secs(3600 + 31);
        assert_refused(&app, Some(&format!("Bearer {token}")), "expired").await;
    }
);

fn with_keys(public_keys: PathBuf, dev_secret: Option<&'static str>) -> impl FnOnce(&mut Config) {
    move |config: &mut Config| {
        config.auth.public_keys_file = Some(public_keys);
        config.auth.dev_hs256_secret =
            dev_secret.map(|s| authenticate::SecretString::new(s.to_owned()));
    }
}

both_backends!(
    rs256_key_cannot_be_used_as_an_hmac_secret,
    async |app: TestApp| {
        // Production-like: an RS256 public key and no dev secret.
        let backend = app.backend;
        app.stop().await;
        let Some(app) = spawn_app_with(backend, with_keys(fixture("rsa_public.pem"), None)).await
        else {
            return;
        };
        let ok = claims(&app, &["support_agent"]);
        assert_accepted(&app, &rs256(&json!({}), &ok)).await;
        let pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
        let confused = hs256(&pem, &json!({"alg": "HS256", "typ": "at+jwt"}), &ok);
        assert_refused(
            &app,
            Some(&format!("Bearer {confused}")),
            "algorithm_not_allowed",
        )
        .await;
        // No dev key, so nothing can be minted either.
        assert!(app
            .state
            .authenticator
            .mint_dev_token(
                "x",
                &["dpo".to_owned()],
                std::time::Duration::from_secs(60),
                0
            )
            .is_err());
        // A kid this gateway does not hold.
        let unknown = rs256(&json!({"kid": "not-our-key"}), &ok);
        assert_refused(&app, Some(&format!("Bearer {unknown}")), "unknown_key").await;
        assert_refused(
            &app,
            Some(&format!("Bearer {}", tamper(&rs256(&json!({}), &ok), 2))),
            "bad_signature",
        )
        .await;
    }
);

both_backends!(
    rs256_with_dev_secret_still_refuses_confusion,
    async |app: TestApp| {
        const SECRET: &str = "a-development-secret-of-at-least-32-bytes!";
        let backend = app.backend;
        app.stop().await;
        let Some(app) =
            spawn_app_with(backend, with_keys(fixture("rsa_public.pem"), Some(SECRET))).await
        else {
            return;
        };
        let ok = claims(&app, &["support_agent"]);
        let header = json!({"alg": "HS256", "typ": "at+jwt"});
        assert_accepted(&app, &hs256(SECRET.as_bytes(), &header, &ok)).await;
        assert_accepted(&app, &rs256(&json!({}), &ok)).await;
        let pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
        let confused = hs256(&pem, &header, &ok);
        assert_refused(&app, Some(&format!("Bearer {confused}")), "bad_signature").await;
        // Naming the RSA key by its kid on an HS256 token is refused outright.
        let kid = rsa_kid(&app, &ok).await;
        let confused_kid = hs256(
            &pem,
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            &ok,
        );
        assert_refused(
            &app,
            Some(&format!("Bearer {confused_kid}")),
            "algorithm_not_allowed",
        )
        .await;
    }
);

/// The kid the gateway gave the PEM-loaded RSA key (its RFC 7638
/// thumbprint), checked by a token under that kid being accepted.
async fn rsa_kid(app: &TestApp, ok: &Value) -> String {
    use ring::digest;
    // The RFC 7638 thumbprint over the public JWK members, in order.
    let pem = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
    let der = pem_body(&pem);
    let (n, e) = rsa_components(&der);
    let jwk = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(&e), b64(&n));
    let kid = b64(digest::digest(&digest::SHA256, jwk.as_bytes()).as_ref());
    assert_accepted(app, &rs256(&json!({"kid": kid}), ok)).await;
    kid
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// (modulus, exponent) from an RSA SubjectPublicKeyInfo DER, without
/// leading zero bytes.
fn rsa_components(spki: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(der: &[u8], pos: &mut usize) -> (u8, Vec<u8>) {
        let tag = der[*pos];
        let mut len = der[*pos + 1] as usize;
        *pos += 2;
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = 0;
            for _ in 0..n {
                len = (len << 8) | der[*pos] as usize;
                *pos += 1;
            }
        }
        let value = der[*pos..*pos + len].to_vec();
        *pos += len;
        (tag, value)
    }
    let mut pos = 0;
    let (_, spki) = read(spki, &mut pos);
    let mut pos = 0;
    let _algorithm = read(&spki, &mut pos);
    let (_, bits) = read(&spki, &mut pos);
    let rsa = &bits[1..];
    let mut pos = 0;
    let (_, seq) = read(rsa, &mut pos);
    let mut pos = 0;
    let (_, n) = read(&seq, &mut pos);
    let (_, e) = read(&seq, &mut pos);
    let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
    (strip(n), strip(e))
}

both_backends!(eddsa_keys_are_selected_by_kid_only, async |app: TestApp| {
    let backend = app.backend;
    app.stop().await;
    let pair = authenticate::generate_ed25519_keypair().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        authenticate::ed25519_jwks(&[("k1", pair.public_key)]),
    )
    .unwrap();
    let Some(app) = spawn_app_with(backend, with_keys(jwks, None)).await else {
        return;
    };
    let now = app.clock.now_secs();
    let claims = TokenClaims {
        sub: "svc".into(),
        roles: vec!["support_agent".into()],
        iss: "custodian".into(),
        aud: "custodian-api".into(),
        exp: now + 600,
        iat: now,
        nbf: None,
    };
    let good = authenticate::sign_eddsa_token(&pair.pkcs8_der, Some("k1"), &claims).unwrap();
    assert_accepted(&app, &good).await;
    let unknown = authenticate::sign_eddsa_token(&pair.pkcs8_der, Some("k2"), &claims).unwrap();
    assert_refused(&app, Some(&format!("Bearer {unknown}")), "unknown_key").await;
    // Another key pair claiming our kid.
    let other = authenticate::generate_ed25519_keypair().unwrap();
    let forged = authenticate::sign_eddsa_token(&other.pkcs8_der, Some("k1"), &claims).unwrap();
    assert_refused(&app, Some(&format!("Bearer {forged}")), "bad_signature").await;
    // The embedded key of the attacker, with its own signature.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "jwk": {
            "kty": "OKP", "crv": "Ed25519", "x": b64(&other.public_key)}});
    let parts: Vec<&str> = forged.split('.').collect();
    let with_jwk = format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_refused(
        &app,
        Some(&format!("Bearer {with_jwk}")),
        "forbidden_header",
    )
    .await;
    // HS256 is not accepted at all here (no dev secret configured).
    let hs = hs256(
        b"a-development-secret-of-at-least-32-bytes!",
        &json!({"alg": "HS256", "typ": "at+jwt"}),
        &serde_json::to_value(&claims).unwrap(),
    );
    assert_refused(&app, Some(&format!("Bearer {hs}")), "algorithm_not_allowed").await;
});
