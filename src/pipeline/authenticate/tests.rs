//! One test per attack the stage must refuse, plus happy paths, cache
//! behaviour and configuration errors. Tokens for happy paths are signed with
//! `jsonwebtoken` where possible, as an independent implementation.

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::Ed25519KeyPair;

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-dev";
const RSA_PRIVATE_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa_private.pem"
));
const RSA_PUBLIC_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa_public.pem"
));
const RSA_PUBLIC_PKCS1_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa_public_pkcs1.pem"
));
const ED_PRIVATE_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/ed25519_private.pem"
));
const ED_PUBLIC_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/ed25519_public.pem"
));

// ---------- helpers ----------

fn claims() -> TokenClaims {
    TokenClaims {
        sub: "alice".into(),
        roles: vec!["marketing_analyst".into()],
        iss: "custodian".into(),
        aud: "custodian-api".into(),
        exp: NOW + 3600,
        iat: NOW,
        nbf: None,
    }
}

fn claims_json() -> serde_json::Value {
    serde_json::to_value(claims()).unwrap()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// Builds `header.payload.signature` from raw JSON, signing with `sign`.
fn forge(
    header: &serde_json::Value,
    payload: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

fn ed_signer(pair: &Ed25519Generated) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |msg| {
        Ed25519KeyPair::from_pkcs8(&pair.pkcs8_der)
            .unwrap()
            .sign(msg)
            .as_ref()
            .to_vec()
    }
}

fn hmac_sign(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |msg| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), msg)
            .as_ref()
            .to_vec()
    }
}

fn dev_config() -> AuthConfig {
    AuthConfig {
        dev_hs256_secret: Some(SecretString::new(SECRET.into())),
        ..AuthConfig::default()
    }
}

/// EdDSA key under kid "k1" (JWKS), no dev secret.
fn ed_setup() -> (Ed25519Generated, Authenticator) {
    let pair = generate_ed25519_keypair().unwrap();
    let jwks = ed25519_jwks(&[("k1", pair.public_key)]);
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &jwks).unwrap();
    (pair, auth)
}

fn ed_header(kid: &str) -> serde_json::Value {
    serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid})
}

fn ed_token(pair: &Ed25519Generated, payload: &serde_json::Value) -> String {
    forge(&ed_header("k1"), payload, ed_signer(pair))
}

fn rsa_auth(config: &AuthConfig) -> Authenticator {
    Authenticator::from_config_and_keys(config, RSA_PUBLIC_PEM).unwrap()
}

fn rsa_kid() -> String {
    let keys = keys::parse_public_keys(RSA_PUBLIC_PEM).unwrap();
    keys.into_iter().next().unwrap().0
}

fn jwt_rs256(claims: &TokenClaims, kid: Option<String>) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = kid;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// jsonwebtoken's default HS256 header, typed as an access token.
fn at_header() -> jsonwebtoken::Header {
    jsonwebtoken::Header {
        typ: Some("at+jwt".into()),
        ..jsonwebtoken::Header::default()
    }
}

fn no_cache(mut config: AuthConfig) -> AuthConfig {
    config.cache_capacity = 0;
    config
}

// ---------- happy paths ----------

#[test]
fn eddsa_token_from_jwks_is_accepted() {
    let (pair, auth) = ed_setup();
    let token = sign_eddsa_token(&pair.pkcs8_der, Some("k1"), &claims()).unwrap();
    let principal = auth.authenticate(Some(&bearer(&token)), NOW).unwrap();
    assert_eq!(principal.sub, "alice");
    assert_eq!(&*principal.roles, ["marketing_analyst".to_owned()]);
    assert_eq!(principal.expires_at, NOW + 3600);
}

#[test]
fn eddsa_token_signed_by_jsonwebtoken_is_accepted() {
    let (pair, auth) = ed_setup();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ed_der(&pair.pkcs8_der);
    let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
}

#[test]
fn eddsa_key_from_openssl_pem_gets_thumbprint_kid_and_sole_key_needs_no_kid() {
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), ED_PUBLIC_PEM).unwrap();
    let der = pem_der(ED_PRIVATE_PEM);
    let kid = keys::parse_public_keys(ED_PUBLIC_PEM).unwrap().remove(0).0;
    for kid in [Some(kid.as_str()), None] {
        let token = sign_eddsa_token(&der, kid, &claims()).unwrap();
        assert!(
            auth.authenticate(Some(&bearer(&token)), NOW).is_ok(),
            "kid {kid:?}"
        );
    }
    let wrong = sign_eddsa_token(&der, Some("not-the-thumbprint"), &claims()).unwrap();
    assert_eq!(
        auth.authenticate(Some(&bearer(&wrong)), NOW),
        Err(AuthFailure::UnknownKey)
    );
}

#[test]
fn rs256_token_is_accepted_from_spki_pkcs1_and_jwks() {
    let kid = rsa_kid();
    let components = match keys::parse_public_keys(RSA_PUBLIC_PEM).unwrap().remove(0).1 {
        keys::VerifyKey {
            material: keys::Material::Rsa(c),
            ..
        } => c,
        _ => panic!("expected an RSA key"),
    };
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "alg": "RS256",
        "n": b64(&components.n), "e": b64(&components.e)}]})
    .to_string();
    let cases = [
        (RSA_PUBLIC_PEM.to_owned(), Some(kid.clone())),
        (RSA_PUBLIC_PEM.to_owned(), None),
        (RSA_PUBLIC_PKCS1_PEM.to_owned(), Some(kid)),
        (jwks, Some("rsa-1".to_owned())),
    ];
    for (doc, kid) in cases {
        let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &doc).unwrap();
        let token = jwt_rs256(&claims(), kid.clone());
        let principal = auth.authenticate(Some(&bearer(&token)), NOW);
        assert_eq!(
            principal.map(|p| p.sub.clone()),
            Ok("alice".to_owned()),
            "kid {kid:?}"
        );
    }
}

#[test]
fn hs256_dev_token_is_accepted_and_minted_tokens_verify() {
    let auth = Authenticator::from_config(&dev_config()).unwrap();
    assert!(auth.is_dev_only());
    let roles = vec![
        "dpo".to_owned(),
        "compliance_officer".to_owned(),
        "dpo".to_owned(),
    ];
    let token = auth
        .mint_dev_token("bob", &roles, Duration::from_secs(3600), NOW)
        .unwrap();
    let principal = auth.authenticate(Some(&bearer(&token)), NOW + 10).unwrap();
    assert_eq!(principal.sub, "bob");
    // Roles come out sorted and deduplicated, as `Principal` promises.
    assert_eq!(
        &*principal.roles,
        ["compliance_officer".to_owned(), "dpo".to_owned()]
    );

    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&at_header(), &claims(), &key).unwrap();
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
}

#[test]
fn scheme_is_case_insensitive_and_audience_may_be_an_array() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["aud"] = serde_json::json!(["other", "custodian-api"]);
    let token = ed_token(&pair, &payload);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let header = format!("{scheme} {token}");
        assert!(
            auth.authenticate(Some(header.as_bytes()), NOW).is_ok(),
            "{scheme}"
        );
    }
}

// ---------- attacks: algorithm and key selection ----------

#[test]
fn alg_none_is_rejected() {
    let (_, auth) = ed_setup();
    let payload = claims_json();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": "k1"});
        // Unsigned (empty signature) and with junk in the signature slot.
        let unsigned = format!("{}.{}.", b64(header.to_string()), b64(payload.to_string()));
        assert!(
            auth.authenticate(Some(&bearer(&unsigned)), NOW).is_err(),
            "{alg}"
        );
        let junk = forge(&header, &payload, |_| b"x".to_vec());
        assert_eq!(
            auth.authenticate(Some(&bearer(&junk)), NOW),
            Err(AuthFailure::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn algorithm_outside_allowlist_is_rejected_even_with_a_valid_signature() {
    let config = AuthConfig {
        algorithms: vec!["EdDSA".into()],
        ..AuthConfig::default()
    };
    let pair = generate_ed25519_keypair().unwrap();
    let doc = format!("{}{}", pair.public_key_pem(), RSA_PUBLIC_PEM);
    let auth = Authenticator::from_config_and_keys(&config, &doc).unwrap();
    assert_eq!(auth.algorithms(), [Algorithm::EdDsa]);
    let token = jwt_rs256(&claims(), Some(rsa_kid()));
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::AlgorithmNotAllowed)
    );
    for alg in ["ES256", "HS512", "PS256", "RS512", "eddsa", "Ed25519"] {
        let token = forge(
            &serde_json::json!({"alg": alg, "typ": "at+jwt"}),
            &claims_json(),
            |_| vec![1; 64],
        );
        assert_eq!(
            auth.authenticate(Some(&bearer(&token)), NOW),
            Err(AuthFailure::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_rsa_public_key_is_rejected() {
    let payload = claims_json();
    let secrets = [RSA_PUBLIC_PEM.as_bytes().to_vec(), pem_der(RSA_PUBLIC_PEM)];
    // Production config: RSA key only, no HS256 key at all.
    let auth = rsa_auth(&AuthConfig::default());
    assert!(!auth.is_dev_only());
    for secret in &secrets {
        for header in [
            serde_json::json!({"alg": "HS256", "typ": "at+jwt"}),
            serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa_kid()}),
        ] {
            let token = forge(&header, &payload, hmac_sign(secret));
            assert_eq!(
                auth.authenticate(Some(&bearer(&token)), NOW),
                Err(AuthFailure::AlgorithmNotAllowed)
            );
        }
    }
    // Dev secret configured too: the RSA key is still never the HMAC key.
    let auth = rsa_auth(&dev_config());
    for secret in &secrets {
        let token = forge(
            &serde_json::json!({"alg": "HS256", "typ": "at+jwt"}),
            &payload,
            hmac_sign(secret),
        );
        assert_eq!(
            auth.authenticate(Some(&bearer(&token)), NOW),
            Err(AuthFailure::BadSignature)
        );
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa_kid()});
        let token = forge(&header, &payload, hmac_sign(secret));
        assert_eq!(
            auth.authenticate(Some(&bearer(&token)), NOW),
            Err(AuthFailure::AlgorithmNotAllowed)
        );
    }
}

#[test]
fn key_of_another_algorithm_is_refused() {
    let pair = generate_ed25519_keypair().unwrap();
    let doc = format!("{}{}", pair.public_key_pem(), RSA_PUBLIC_PEM);
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &doc).unwrap();
    // EdDSA signature, but naming the RSA key.
    let token = forge(&ed_header(&rsa_kid()), &claims_json(), ed_signer(&pair));
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::AlgorithmNotAllowed)
    );
}

#[test]
fn unknown_kid_is_rejected() {
    let (pair, auth) = ed_setup();
    let token = forge(&ed_header("k2"), &claims_json(), ed_signer(&pair));
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::UnknownKey)
    );
}

#[test]
fn missing_kid_with_several_keys_is_rejected() {
    let a = generate_ed25519_keypair().unwrap();
    let b = generate_ed25519_keypair().unwrap();
    let jwks = ed25519_jwks(&[("a", a.public_key), ("b", b.public_key)]);
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &jwks).unwrap();
    let token = sign_eddsa_token(&a.pkcs8_der, None, &claims()).unwrap();
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::UnknownKey)
    );
}

#[test]
fn key_selecting_headers_are_rejected_even_on_valid_signatures() {
    let (pair, auth) = ed_setup();
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key)});
    let extras = [
        ("jku", serde_json::json!("https://evil.example/jwks.json")),
        ("x5u", serde_json::json!("https://evil.example/cert.pem")),
        ("jwk", jwk),
        ("x5c", serde_json::json!(["MIIB"])),
        ("crit", serde_json::json!(["exp"])),
        ("jku", serde_json::Value::Null),
    ];
    for (name, value) in extras {
        let mut header = ed_header("k1");
        header[name] = value;
        let token = forge(&header, &claims_json(), ed_signer(&pair));
        assert_eq!(
            auth.authenticate(Some(&bearer(&token)), NOW),
            Err(AuthFailure::ForbiddenHeader),
            "{name}"
        );
    }
}

// ---------- attacks: time ----------

#[test]
fn expired_token_is_rejected_at_the_leeway_boundary() {
    let (pair, _) = ed_setup();
    let jwks = ed25519_jwks(&[("k1", pair.public_key)]);
    let auth =
        Authenticator::from_config_and_keys(&no_cache(AuthConfig::default()), &jwks).unwrap();
    let token = ed_token(&pair, &claims_json());
    let exp = NOW + 3600;
    assert!(auth.authenticate(Some(&bearer(&token)), exp + 29).is_ok());
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), exp + 30),
        Err(AuthFailure::Expired)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), exp + 10_000),
        Err(AuthFailure::Expired)
    );
}

#[test]
fn not_yet_valid_nbf_is_rejected() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["nbf"] = serde_json::json!(NOW + 31);
    let token = ed_token(&pair, &payload);
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::NotYetValid)
    );
    assert!(auth.authenticate(Some(&bearer(&token)), NOW + 1).is_ok());
}

#[test]
fn iat_in_the_future_is_rejected() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["iat"] = serde_json::json!(NOW + 31);
    let token = ed_token(&pair, &payload);
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::NotYetValid)
    );
    payload["iat"] = serde_json::json!(NOW + 30);
    let token = ed_token(&pair, &payload);
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
}

// ---------- attacks: claims ----------

#[test]
fn wrong_issuer_is_rejected() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["iss"] = serde_json::json!("someone-else");
    assert_eq!(
        auth.authenticate(Some(&bearer(&ed_token(&pair, &payload))), NOW),
        Err(AuthFailure::WrongIssuer)
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let (pair, auth) = ed_setup();
    for aud in [
        serde_json::json!("other-api"),
        serde_json::json!(["a", "b"]),
        serde_json::json!([]),
    ] {
        let mut payload = claims_json();
        payload["aud"] = aud;
        assert_eq!(
            auth.authenticate(Some(&bearer(&ed_token(&pair, &payload))), NOW),
            Err(AuthFailure::WrongAudience)
        );
    }
}

#[test]
fn missing_or_mistyped_claims_are_rejected() {
    let (pair, auth) = ed_setup();
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "missing roles",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("roles"))),
        ),
        (
            "roles string",
            Box::new(|p| p["roles"] = serde_json::json!("dpo")),
        ),
        (
            "roles numbers",
            Box::new(|p| p["roles"] = serde_json::json!([1, 2])),
        ),
        (
            "roles null",
            Box::new(|p| p["roles"] = serde_json::Value::Null),
        ),
        (
            "empty role",
            Box::new(|p| p["roles"] = serde_json::json!([""])),
        ),
        (
            "missing sub",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("sub"))),
        ),
        ("empty sub", Box::new(|p| p["sub"] = serde_json::json!(""))),
        (
            "missing exp",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("exp"))),
        ),
        (
            "exp string",
            Box::new(|p| p["exp"] = serde_json::json!("tomorrow")),
        ),
        (
            "missing iat",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("iat"))),
        ),
        (
            "missing iss",
            Box::new(|p| drop(p.as_object_mut().unwrap().remove("iss"))),
        ),
        ("payload array", Box::new(|p| *p = serde_json::json!([1]))),
    ];
    for (name, mutate) in mutations {
        let mut payload = claims_json();
        mutate(&mut payload);
        assert_eq!(
            auth.authenticate(Some(&bearer(&ed_token(&pair, &payload))), NOW),
            Err(AuthFailure::InvalidClaims),
            "{name}"
        );
    }
}

// ---------- attacks: integrity ----------

#[test]
fn tampered_payload_is_rejected() {
    let (pair, auth) = ed_setup();
    let token = ed_token(&pair, &claims_json());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut payload = claims_json();
    payload["roles"] = serde_json::json!(["dpo"]);
    let forged_payload = b64(payload.to_string());
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    assert_eq!(
        auth.authenticate(Some(&bearer(&forged)), NOW),
        Err(AuthFailure::BadSignature)
    );
    // Same for RS256 and HS256.
    let auth = rsa_auth(&dev_config());
    for token in [
        jwt_rs256(&claims(), None),
        auth.mint_dev_token(
            "alice",
            &["marketing_analyst".into()],
            Duration::from_secs(60),
            NOW,
        )
        .unwrap(),
    ] {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        assert_eq!(
            auth.authenticate(Some(&bearer(&forged)), NOW),
            Err(AuthFailure::BadSignature)
        );
    }
}

#[test]
fn tampered_signature_is_rejected() {
    let (pair, auth) = ed_setup();
    let token = ed_token(&pair, &claims_json());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 0x01;
    let flipped = format!("{input}.{}", b64(&sig));
    assert_eq!(
        auth.authenticate(Some(&bearer(&flipped)), NOW),
        Err(AuthFailure::BadSignature)
    );
    let truncated = format!("{input}.{}", b64(&sig[..32]));
    assert_eq!(
        auth.authenticate(Some(&bearer(&truncated)), NOW),
        Err(AuthFailure::BadSignature)
    );
    // A signature from another key, same kid.
    let other = generate_ed25519_keypair().unwrap();
    let token = ed_token(&other, &claims_json());
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::BadSignature)
    );
}

// ---------- attacks: framing ----------

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["pad"] = serde_json::json!("x".repeat(9000));
    let big = ed_token(&pair, &payload);
    assert_eq!(
        auth.authenticate(Some(&bearer(&big)), NOW),
        Err(AuthFailure::Oversized)
    );
    // Garbage that would be Malformed is Oversized first: no parsing happened.
    let garbage = vec![b'!'; 8193];
    assert_eq!(
        auth.authenticate(Some(&garbage), NOW),
        Err(AuthFailure::Oversized)
    );
    let limit = vec![b'!'; 8192];
    assert_eq!(
        auth.authenticate(Some(&limit), NOW),
        Err(AuthFailure::Malformed)
    );
}

#[test]
fn garbage_is_rejected() {
    let (pair, auth) = ed_setup();
    let valid = ed_token(&pair, &claims_json());
    let (h, rest) = valid.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let garbage: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        b"Bearer x".to_vec(),
        b"Bearer a.b".to_vec(),
        b"Bearer a.b.c".to_vec(),
        b"Bearer ..".to_vec(),
        b"Bearer a.b.c.d.e".to_vec(),
        bearer(&format!("{valid}.")),
        bearer(&format!(" {valid}")),
        bearer(&format!("{valid} ")),
        bearer(&format!("{h}=.{p}.{s}")),
        bearer(&format!("{h}.{p}.{s}==")),
        bearer(&format!("{}.{p}.{s}", b64("{not json"))),
        bearer(&format!("{}.{p}.{s}", b64(r#"{"kid":"k1"}"#))),
        bearer(&format!(
            "{}.{p}.{s}",
            b64(r#"{"alg":"EdDSA","alg":"none"}"#)
        )),
        bearer(&format!("{}.{p}.{s}", b64("[]"))),
        b"Bearer \xff\xfe\x00.\x01.\x02".to_vec(),
        bearer("\u{1F600}.\u{1F600}.\u{1F600}"),
    ];
    for header in garbage {
        let result = auth.authenticate(Some(&header), NOW);
        assert_eq!(
            result,
            Err(AuthFailure::Malformed),
            "{:?}",
            String::from_utf8_lossy(&header)
        );
    }
}

#[test]
fn non_bearer_schemes_and_missing_headers_are_rejected() {
    let (pair, auth) = ed_setup();
    let token = ed_token(&pair, &claims_json());
    for header in [
        "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
        format!("Token {token}"),
        format!("Bearer{token}"),
        format!("Bearer\t{token}"),
        format!("Bearer  {token}"),
        format!("Bearerx{token}"),
        token.clone(),
        format!("JWT {token}"),
    ] {
        assert_eq!(
            auth.authenticate(Some(header.as_bytes()), NOW),
            Err(AuthFailure::Malformed),
            "{header}"
        );
    }
    assert_eq!(auth.authenticate(None, NOW), Err(AuthFailure::Missing));
    assert_eq!(auth.authenticate(Some(b""), NOW), Err(AuthFailure::Missing));
}

// ---------- cache ----------

#[test]
fn cached_token_is_still_rejected_once_expired() {
    let (pair, auth) = ed_setup();
    let token = ed_token(&pair, &claims_json());
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
    assert_eq!(auth.cached_tokens(), 1);
    assert!(auth
        .authenticate(Some(&bearer(&token)), NOW + 3600 + 29)
        .is_ok());
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW + 3600 + 30),
        Err(AuthFailure::Expired)
    );
    assert_eq!(auth.cached_tokens(), 0, "expired entry evicted");
}

#[test]
fn cached_token_is_not_valid_before_its_window() {
    let (pair, auth) = ed_setup();
    let mut payload = claims_json();
    payload["nbf"] = serde_json::json!(NOW + 100);
    let token = ed_token(&pair, &payload);
    assert!(auth.authenticate(Some(&bearer(&token)), NOW + 100).is_ok());
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::NotYetValid)
    );
}

#[test]
fn a_different_token_is_not_served_from_the_cache() {
    let (pair, auth) = ed_setup();
    let alice = ed_token(&pair, &claims_json());
    let mut payload = claims_json();
    payload["sub"] = serde_json::json!("bob");
    let bob = ed_token(&pair, &payload);
    assert_eq!(
        auth.authenticate(Some(&bearer(&alice)), NOW).unwrap().sub,
        "alice"
    );
    assert_eq!(
        auth.authenticate(Some(&bearer(&bob)), NOW).unwrap().sub,
        "bob"
    );
    assert_eq!(
        auth.authenticate(Some(&bearer(&alice)), NOW).unwrap().sub,
        "alice"
    );
    // A tampered variant of a cached token is verified afresh, and fails.
    let (input, sig) = alice.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[0] ^= 0x80;
    let tampered = format!("{input}.{}", b64(&sig));
    assert_eq!(
        auth.authenticate(Some(&bearer(&tampered)), NOW),
        Err(AuthFailure::BadSignature)
    );
    assert_eq!(auth.cached_tokens(), 2, "failures are not cached");
}

#[test]
fn rotated_keys_in_one_jwks_are_both_accepted() {
    let old = generate_ed25519_keypair().unwrap();
    let new = generate_ed25519_keypair().unwrap();
    let jwks = ed25519_jwks(&[("2024-01", old.public_key), ("2024-07", new.public_key)]);
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &jwks).unwrap();
    for (kid, pair) in [("2024-01", &old), ("2024-07", &new)] {
        let token = sign_eddsa_token(&pair.pkcs8_der, Some(kid), &claims()).unwrap();
        assert!(
            auth.authenticate(Some(&bearer(&token)), NOW).is_ok(),
            "{kid}"
        );
    }
    // Signed by the old key but claiming the new kid: rejected.
    let token = sign_eddsa_token(&old.pkcs8_der, Some("2024-07"), &claims()).unwrap();
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn cache_is_bounded_and_optional() {
    let pair = generate_ed25519_keypair().unwrap();
    let jwks = ed25519_jwks(&[("k1", pair.public_key)]);
    let config = AuthConfig {
        cache_capacity: 2,
        ..AuthConfig::default()
    };
    let auth = Authenticator::from_config_and_keys(&config, &jwks).unwrap();
    for i in 0..5 {
        let mut payload = claims_json();
        payload["sub"] = serde_json::json!(format!("user{i}"));
        let token = ed_token(&pair, &payload);
        assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
        assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
    }
    assert_eq!(auth.cached_tokens(), 2);
    // Once the cached ones expire, a sweep makes room again.
    let mut payload = claims_json();
    payload["exp"] = serde_json::json!(NOW + 7200);
    let token = ed_token(&pair, &payload);
    assert!(auth.authenticate(Some(&bearer(&token)), NOW + 3700).is_ok());
    assert_eq!(auth.cached_tokens(), 1);

    let auth =
        Authenticator::from_config_and_keys(&no_cache(AuthConfig::default()), &jwks).unwrap();
    let token = ed_token(&pair, &claims_json());
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
    assert_eq!(auth.cached_tokens(), 0);
}

// ---------- configuration ----------

fn config_error(config: &AuthConfig) -> String {
    match Authenticator::from_config(config) {
        Ok(_) => panic!("config accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_defaults_and_unknown_fields() {
    let config: AuthConfig = toml::from_str("").unwrap();
    assert_eq!(config.issuer, "custodian");
    assert_eq!(config.audience, "custodian-api");
    assert_eq!(config.leeway_secs, 30);
    assert_eq!(config.algorithms, ["EdDSA", "RS256", "HS256"]);
    assert_eq!(config.max_token_bytes, 8192);
    assert_eq!(config.cache_capacity, 100_000);
    assert!(toml::from_str::<AuthConfig>("isuser = \"typo\"").is_err());
}

#[test]
fn config_errors_name_the_setting() {
    let short = AuthConfig {
        dev_hs256_secret: Some(SecretString::new("too-short".into())),
        ..AuthConfig::default()
    };
    assert_eq!(
        config_error(&short),
        "auth.dev_hs256_secret: must be at least 32 bytes"
    );
    assert!(config_error(&AuthConfig::default()).starts_with("auth.public_keys_file:"));
    let bad_alg = AuthConfig {
        algorithms: vec!["none".into()],
        ..dev_config()
    };
    assert!(config_error(&bad_alg).starts_with("auth.algorithms:"));
    let no_hs = AuthConfig {
        algorithms: vec!["EdDSA".into()],
        ..dev_config()
    };
    assert!(config_error(&no_hs).starts_with("auth.dev_hs256_secret:"));
    let missing_file = AuthConfig {
        public_keys_file: Some("/nonexistent/keys.jwks".into()),
        ..AuthConfig::default()
    };
    assert!(config_error(&missing_file).starts_with("auth.public_keys_file: cannot read"));
}

#[test]
fn debug_output_redacts_the_secret() {
    let config = dev_config();
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("[redacted]"));
    let auth = Authenticator::from_config(&config).unwrap();
    assert!(!format!("{auth:?}").contains(SECRET));
}

#[test]
fn keys_and_secret_load_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_ed25519_keypair().unwrap();
    let pem_path = dir.path().join("keys.pem");
    std::fs::write(
        &pem_path,
        format!("{}\n{}", pair.public_key_pem(), RSA_PUBLIC_PEM),
    )
    .unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, format!("{SECRET}\n")).unwrap();
    // A secret file others may read is refused, like every key file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let world_readable = AuthConfig {
            dev_hs256_secret_file: Some(secret_path.clone()),
            ..AuthConfig::default()
        };
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Authenticator::from_config(&world_readable).is_err());
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = AuthConfig {
        public_keys_file: Some(pem_path),
        dev_hs256_secret_file: Some(secret_path.clone()),
        ..AuthConfig::default()
    };
    let auth = Authenticator::from_config(&config).unwrap();
    assert_eq!(auth.public_key_count(), 2);
    assert!(auth.is_dev_only());
    let token = sign_eddsa_token(&pair.pkcs8_der, Some(&pair.kid()), &claims()).unwrap();
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
    assert!(auth
        .authenticate(Some(&bearer(&jwt_rs256(&claims(), None))), NOW)
        .is_ok());
    // The trailing newline of the secret file is not part of the secret.
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&at_header(), &claims(), &key).unwrap();
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());

    let jwks_path = dir.path().join("keys.jwks");
    std::fs::write(&jwks_path, ed25519_jwks(&[("k1", pair.public_key)])).unwrap();
    let config = AuthConfig {
        public_keys_file: Some(jwks_path),
        ..AuthConfig::default()
    };
    assert!(!Authenticator::from_config(&config).unwrap().is_dev_only());

    std::fs::write(&secret_path, "short\n").unwrap();
    let config = AuthConfig {
        dev_hs256_secret_file: Some(secret_path),
        ..AuthConfig::default()
    };
    assert_eq!(
        config_error(&config),
        "auth.dev_hs256_secret_file: must be at least 32 bytes"
    );
}

#[test]
fn bad_key_files_are_refused() {
    let pair = generate_ed25519_keypair().unwrap();
    let x = b64(pair.public_key);
    let docs = [
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "d": x}]}).to_string(),
        serde_json::json!({"keys": [{"kty": "oct", "k": b64(SECRET)}]}).to_string(),
        serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": x}]}).to_string(),
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "RS256"}]})
            .to_string(),
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "X25519", "x": x}]}).to_string(),
        serde_json::json!({"keys": [{"kty": "RSA", "n": b64([0xc5; 128]), "e": "AQAB"}]})
            .to_string(),
        ed25519_jwks(&[("same", pair.public_key), ("same", pair.public_key)]),
        serde_json::json!({"keys": []}).to_string(),
        (*pair.private_key_pem()).clone(),
        ED_PRIVATE_PEM.to_owned(),
        "not a key".to_owned(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n".to_owned(),
    ];
    for doc in docs {
        let result = Authenticator::from_config_and_keys(&AuthConfig::default(), &doc);
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.starts_with("auth."),
            "accepted or unnamed error for {doc}: {err}"
        );
        assert!(!err.contains(&x), "error leaks key material: {err}");
    }
}

#[test]
fn thumbprints_match_rfc_examples() {
    // RFC 7638 §3.1.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let doc = serde_json::json!({"keys": [{"kty": "RSA", "n": n, "e": "AQAB"}]}).to_string();
    let kid = keys::parse_public_keys(&doc).unwrap().remove(0).0;
    assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    // RFC 8037 Appendix A.3.
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        ed25519_kid(&x),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

// ---------- minting and tooling ----------

#[test]
fn minting_refuses_without_a_dev_key() {
    let auth = rsa_auth(&AuthConfig::default());
    assert_eq!(
        auth.mint_dev_token("alice", &["dpo".into()], Duration::from_secs(60), NOW),
        Err(MintError::NoDevKey)
    );
}

#[test]
fn minting_validates_its_request() {
    let auth = Authenticator::from_config(&dev_config()).unwrap();
    let roles = vec!["dpo".to_owned()];
    let hour = Duration::from_secs(3600);
    assert!(auth.mint_dev_token("", &roles, hour, NOW).is_err());
    assert!(auth.mint_dev_token("a", &[], hour, NOW).is_err());
    assert!(auth.mint_dev_token("a", &["".into()], hour, NOW).is_err());
    assert!(auth
        .mint_dev_token("a", &roles, Duration::ZERO, NOW)
        .is_err());
    assert!(auth
        .mint_dev_token("a", &roles, MAX_DEV_TOKEN_TTL * 2, NOW)
        .is_err());
    let token = auth.mint_dev_token("a", &roles, hour, NOW).unwrap();
    assert_eq!(
        auth.authenticate(Some(&bearer(&token)), NOW + 3600 + 30),
        Err(AuthFailure::Expired)
    );
}

#[test]
fn failures_share_one_public_message_and_have_unique_codes() {
    let all = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Oversized,
        AuthFailure::AlgorithmNotAllowed,
        AuthFailure::UnknownKey,
        AuthFailure::ForbiddenHeader,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::InvalidClaims,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(AuthFailure::code).collect();
    assert_eq!(codes.len(), all.len());
    assert!(all.iter().all(|f| f.public_message() == PUBLIC_MESSAGE));
}

#[test]
fn ttl_parsing() {
    assert_eq!(parse_ttl("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_ttl("15m"), Some(Duration::from_secs(900)));
    assert_eq!(parse_ttl("90"), Some(Duration::from_secs(90)));
    assert_eq!(parse_ttl("2d"), Some(Duration::from_secs(172_800)));
    assert_eq!(parse_ttl("1w"), None);
    assert_eq!(parse_ttl("h"), None);
    assert_eq!(parse_ttl("-1h"), None);
}

#[test]
fn generated_keys_publish_consistently() {
    let pair = generate_ed25519_keypair().unwrap();
    assert!(!format!("{pair:?}").contains(&b64(&*pair.pkcs8_der)));
    let from_pem = keys::parse_public_keys(&pair.public_key_pem()).unwrap();
    assert_eq!(from_pem[0].0, pair.kid());
    let jwks: serde_json::Value =
        serde_json::from_str(&ed25519_jwks(&[("k", pair.public_key)])).unwrap();
    assert_eq!(jwks["keys"][0]["x"], b64(pair.public_key));
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    // The private PEM signs tokens the public side accepts.
    let der = pem_der(&pair.private_key_pem());
    let auth = Authenticator::from_config_and_keys(&AuthConfig::default(), &pair.public_key_pem())
        .unwrap();
    let token = sign_eddsa_token(&der, None, &claims()).unwrap();
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
}

// ---------- explicit typing (RFC 8725 §3.11, RFC 9068) ----------

#[test]
fn only_typed_access_tokens_are_accepted() {
    let (pair, auth) = ed_setup();
    let with_typ = |typ: Option<&str>| {
        let mut header = serde_json::json!({"alg": "EdDSA", "kid": "k1"});
        if let Some(typ) = typ {
            header["typ"] = typ.into();
        }
        forge(&header, &claims_json(), ed_signer(&pair))
    };
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = with_typ(Some(typ));
        assert!(
            auth.authenticate(Some(&bearer(&token)), NOW).is_ok(),
            "{typ} refused"
        );
    }
    for typ in [
        None,
        Some("JWT"),
        Some("refresh+jwt"),
        Some("id_token"),
        Some("logout+jwt"),
        Some("JWE"),
        Some("secevent+jwt"),
        Some(""),
    ] {
        let token = with_typ(typ);
        assert_eq!(
            auth.authenticate(Some(&bearer(&token)), NOW).unwrap_err(),
            AuthFailure::WrongType,
            "{typ:?} accepted"
        );
    }
}

#[test]
fn jwt_typ_is_accepted_only_where_configured() {
    let pair = generate_ed25519_keypair().unwrap();
    let jwks = ed25519_jwks(&[("k1", pair.public_key)]);
    let config = AuthConfig {
        token_types: vec!["at+jwt".into(), "JWT".into()],
        ..AuthConfig::default()
    };
    let auth = Authenticator::from_config_and_keys(&config, &jwks).unwrap();
    let token = forge(
        &serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
        &claims_json(),
        ed_signer(&pair),
    );
    assert!(auth.authenticate(Some(&bearer(&token)), NOW).is_ok());
    for never in ["refresh+jwt", "id_token", "JWE", "application/logout+jwt"] {
        let config = AuthConfig {
            token_types: vec![never.into()],
            ..AuthConfig::default()
        };
        assert!(
            Authenticator::from_config_and_keys(&config, &jwks).is_err(),
            "{never} allowed in config"
        );
    }
}

#[test]
fn token_use_other_than_access_is_refused() {
    let (pair, auth) = ed_setup();
    for (token_use, ok) in [("access", true), ("refresh", false), ("id", false)] {
        let mut payload = claims_json();
        payload["token_use"] = token_use.into();
        let token = forge(&ed_header("k1"), &payload, ed_signer(&pair));
        let result = auth.authenticate(Some(&bearer(&token)), NOW);
        assert_eq!(result.is_ok(), ok, "token_use {token_use}");
        if !ok {
            assert_eq!(result.unwrap_err(), AuthFailure::WrongType);
        }
    }
}

#[test]
fn minted_dev_tokens_are_typed_access_tokens() {
    let auth = Authenticator::from_config(&dev_config()).unwrap();
    let token = auth
        .mint_dev_token("alice", &["dpo".into()], Duration::from_secs(60), NOW)
        .unwrap();
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["typ"], "at+jwt");
}
