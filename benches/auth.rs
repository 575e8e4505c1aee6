//! Authentication stage cost: a known (cached) token versus full
//! verification per algorithm.
//!
//! Run: `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use custodian::pipeline::authenticate::{
    generate_ed25519_keypair, sign_eddsa_token, AuthConfig, Authenticator, SecretString,
    TokenClaims,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const NOW: i64 = 1_700_000_000;
const RSA_PRIVATE_PEM: &str = include_str!("../tests/fixtures/jwt/rsa_private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../tests/fixtures/jwt/rsa_public.pem");

fn claims(sub: String) -> TokenClaims {
    TokenClaims {
        sub,
        roles: vec!["marketing_analyst".into(), "support_agent".into()],
        iss: "custodian".into(),
        aud: "custodian-api".into(),
        exp: NOW + 3600,
        iat: NOW,
        nbf: None,
    }
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn bench_auth(c: &mut Criterion) {
    let pair = generate_ed25519_keypair().expect("keygen");
    let keys = format!("{}{}", pair.public_key_pem(), RSA_PUBLIC_PEM);
    let config = AuthConfig {
        dev_hs256_secret: Some(SecretString::new(
            "bench-secret-bench-secret-bench-secret".into(),
        )),
        ..AuthConfig::default()
    };
    let cached = Authenticator::from_config_and_keys(&config, &keys).expect("config");
    let uncached = Authenticator::from_config_and_keys(
        &AuthConfig {
            cache_capacity: 0,
            ..config.clone()
        },
        &keys,
    )
    .expect("config");

    let kid = pair.kid();
    let ed = bearer(
        &sign_eddsa_token(&pair.pkcs8_der, Some(&kid), &claims("alice".into())).expect("sign"),
    );
    let hs = bearer(
        &cached
            .mint_dev_token(
                "alice",
                &["marketing_analyst".into()],
                Duration::from_secs(3600),
                NOW,
            )
            .expect("mint"),
    );
    let rs_key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("rsa");
    let rs = bearer(
        &jsonwebtoken::encode(
            &jsonwebtoken::Header {
                typ: Some("at+jwt".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
            },
            &claims("alice".into()),
            &rs_key,
        )
        .expect("sign"),
    );
    for token in [&ed, &hs, &rs] {
        assert!(uncached.authenticate(Some(token), NOW).is_ok());
    }

    let mut group = c.benchmark_group("authenticate");
    group.bench_function("eddsa_cached", |b| {
        assert!(cached.authenticate(Some(&ed), NOW).is_ok());
        b.iter(|| cached.authenticate(black_box(Some(&ed[..])), black_box(NOW)))
    });
    group.bench_function("eddsa_cold_cache_disabled", |b| {
        b.iter(|| uncached.authenticate(black_box(Some(&ed[..])), black_box(NOW)))
    });
    // A token never seen before, with the cache on: verification plus the
    // hash and the insert. Signing happens in the (untimed) setup.
    let counter = AtomicU64::new(0);
    group.bench_function("eddsa_cold_new_token_cache_enabled", |b| {
        b.iter_batched(
            || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let token =
                    sign_eddsa_token(&pair.pkcs8_der, Some(&kid), &claims(format!("user{n}")))
                        .expect("sign");
                bearer(&token)
            },
            |token| cached.authenticate(Some(&token), NOW),
            BatchSize::SmallInput,
        )
    });
    // Baseline: the bare ring Ed25519 verification inside the cold path, so
    // the stage's own overhead reads as the difference under the same load.
    let ed_token = std::str::from_utf8(&ed[7..]).expect("ascii");
    let (signing_input, sig_b64) = ed_token.rsplit_once('.').expect("jws");
    let sig = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig_b64)
        .expect("b64");
    let public = pair.public_key;
    group.bench_function("baseline_ring_ed25519_verify", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                .verify(black_box(signing_input.as_bytes()), black_box(&sig))
        })
    });
    group.bench_function("hs256_cold_cache_disabled", |b| {
        b.iter(|| uncached.authenticate(black_box(Some(&hs[..])), black_box(NOW)))
    });
    group.bench_function("rs256_cold_cache_disabled", |b| {
        b.iter(|| uncached.authenticate(black_box(Some(&rs[..])), black_box(NOW)))
    });
    group.bench_function("garbage_rejected", |b| {
        let garbage = b"Bearer not.a.jwt".to_vec();
        b.iter(|| uncached.authenticate(black_box(Some(&garbage[..])), black_box(NOW)))
    });
    group.finish();
}

criterion_group!(benches, bench_auth);
criterion_main!(benches);
