//! Mutation fuzzing on the stable toolchain (no nightly, no extra crate):
//! each target takes its seeds (valid inputs made here, plus the files in
//! `tests/fuzz/corpus/<target>/`), applies random byte-level mutations
//! (flip, insert, delete, duplicate, splice, truncate) from a seeded ChaCha
//! generator, and checks that the parser never panics and that its
//! security property holds. CI runs a few thousand inputs per target in
//! seconds; run longer with `FUZZ_ITERS=1000000 cargo test --test api
//! security::fuzz -- --nocapture` (and `FUZZ_SEED=<n>` to vary the run;
//! a failure prints the seed and the input in hex to reproduce it).

use custodian::audit::{store, verify_ndjson, Signer};
use custodian::crypto::{DataKey, FieldPlace};
use custodian::pipeline::authenticate::{AuthConfig, Authenticator, SecretString};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn iterations() -> usize {
    std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(18)
}

fn corpus(target: &str, mut seeds: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                seeds.push(bytes);
            }
        }
    }
    seeds
}

fn mutate(rng: &mut ChaCha8Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = out.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..=len);
                let b = *[0u8, b'"', b'.', b'{', b'}', b'\\', 0xff, b'%', b'\n', b'-']
                    .get(rng.gen_range(0..10))
                    .unwrap_or(&0);
                out.insert(i, b);
            }
            2 if len > 0 => {
                out.remove(rng.gen_range(0..len));
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..len.min(a + 64).max(a + 1));
                let chunk: Vec<u8> = out[a..b].to_vec();
                let at = rng.gen_range(0..=out.len());
                out.splice(at..at, chunk);
            }
            4 if !others.is_empty() => {
                let other = &others[rng.gen_range(0..others.len())];
                if !other.is_empty() {
                    let a = rng.gen_range(0..other.len());
                    let at = rng.gen_range(0..=out.len());
                    out.splice(at..at, other[a..].iter().take(32).copied());
                }
            }
            5 if len > 0 => out.truncate(rng.gen_range(0..len)),
            _ => {
                let i = rng.gen_range(0..=len);
                out.insert(i, rng.gen());
            }
        }
    }
    out
}

/// Runs `check` on every seed and on `iterations()` mutants; `check`
/// returns `Err(why)` when the property fails.
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8]) -> Result<(), String>) {
    let seeds = corpus(target, seeds);
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let run = |input: &[u8]| {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!(
                "{target}: seed {}: {why}: input {}",
                seed(),
                hex::encode(input)
            ),
            Err(_) => panic!(
                "{target}: seed {}: panicked on input {}",
                seed(),
                hex::encode(input)
            ),
        }
    };
    for s in &seeds {
        run(s);
    }
    for _ in 0..iterations() {
        let base = &seeds[rng.gen_range(0..seeds.len())];
        run(&mutate(&mut rng, base, &seeds));
    }
}

const NOW: i64 = 1_780_000_000;
const SECRET: &str = "fuzz-only-hs256-secret-0123456789abcdef";

fn hs256_token(header: &str, claims: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[test]
fn token_front_door() {
    let config = AuthConfig {
        dev_hs256_secret: Some(SecretString::new(SECRET.into())),
        cache_capacity: 0,
        ..AuthConfig::default()
    };
    let auth = Authenticator::from_config(&config).unwrap();
    let claims = format!(
        r#"{{"sub":"f","roles":["dpo"],"iss":"custodian","aud":"custodian-api","iat":{NOW},"exp":{}}}"#,
        NOW + 60
    );
    let good = format!(
        "Bearer {}",
        hs256_token(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims)
    );
    assert!(auth.authenticate(Some(good.as_bytes()), NOW).is_ok());
    let seeds = vec![
        good.clone().into_bytes(),
        format!(
            "Bearer {}",
            hs256_token(r#"{"alg":"HS256","typ":"refresh+jwt"}"#, &claims)
        )
        .into_bytes(),
        format!(
            "Bearer {}",
            hs256_token(r#"{"alg":"none","typ":"at+jwt"}"#, &claims)
        )
        .into_bytes(),
    ];
    // Property: only the byte-identical good token is accepted; nothing panics.
    fuzz("token", seeds, |input| {
        let ok = auth.authenticate(Some(input), NOW).is_ok();
        if ok && input != good.as_bytes() {
            // A mutation may leave the signed bytes unchanged only by
            // touching the scheme's case, which RFC 6750 allows.
            let same = input.len() == good.len()
                && input[7..] == good.as_bytes()[7..]
                && input[..7].eq_ignore_ascii_case(b"bearer ");
            if !same {
                return Err("a mutated token was accepted".into());
            }
        }
        Ok(())
    });
}

#[test]
fn audit_block_decoder() {
    fuzz("audit_block", vec![vec![], vec![0; 64]], |input| {
        // Property: decoding never panics; every row names a seq at or after the first.
        for row in store::decode_block("i", 1, input) {
            if row.seq() < 1 {
                return Err(format!("row with seq {}", row.seq()));
            }
        }
        Ok(())
    });
}

#[test]
fn audit_export_verifier() {
    let signer = Signer::ephemeral().unwrap();
    let key = *signer.public_key();
    let header =
        br#"{"type":"header","format":"custodian-audit","version":1,"filtered":false}"#.to_vec();
    let manifest = br#"{"type":"manifest","body":{"filter":"","chains":[],"exported_at":0},"key_id":"00","signature":"00"}"#.to_vec();
    let mut both = header.clone();
    both.push(b'\n');
    both.extend_from_slice(&manifest);
    // Property: never panics, and a file whose manifest is not signed by
    // the given key is never "intact".
    fuzz("audit_export", vec![header, manifest, both], |input| {
        let report = verify_ndjson(input, &[key], &|_| {});
        if let Ok(r) = report {
            if r.is_intact() && r.events > 0 {
                return Err(format!("forged export verified: {r}"));
            }
        }
        Ok(())
    });
}

#[test]
fn field_ciphertext_parser() {
    let dek = DataKey::generate().unwrap();
    let cipher = dek.cipher();
    let place = FieldPlace {
        resource: "customer",
        field: "email",
        record_id: 7,
    };
    let good = cipher.encrypt(place, b"fuzz@example.org").unwrap();
    // Property: only the original ciphertext opens; nothing panics.
    fuzz("field_ciphertext", vec![good.clone()], |input| {
        let opened = cipher.decrypt(place, input).is_ok();
        if opened && input != good.as_slice() {
            return Err("a mutated ciphertext opened".into());
        }
        Ok(())
    });
}

#[test]
fn json_body_parser() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Change {
        purpose: String,
        granted: bool,
        source: String,
        evidence: Option<String>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        changes: Vec<Change>,
    }
    let secret = "zelda.private@example.org";
    let seed = format!(
        r#"{{"changes":[{{"purpose":"{secret}","granted":true,"source":"web","evidence":"{secret}"}}]}}"#
    );
    // Property: an error message never contains the secret value.
    fuzz(
        "json_body",
        vec![seed.into_bytes()],
        |input| match custodian::http::extract::parse_json::<Batch>(input) {
            Err(e) if e.to_string().contains("zelda") => Err(format!("echoed: {e}")),
            _ => Ok(()),
        },
    );
}

#[test]
fn request_target_check() {
    // Property: anything that passes decodes to UTF-8 without NUL or controls.
    fuzz(
        "request_target",
        vec![b"/v1/customers/C-1?limit=5".to_vec()],
        |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return Ok(());
            };
            if custodian::http::middleware::decodes_cleanly(text) {
                let decoded: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
                match String::from_utf8(decoded) {
                    Ok(s) if !s.chars().any(char::is_control) => {}
                    _ => return Err("passed but decodes to something unclean".into()),
                }
            }
            Ok(())
        },
    );
}
