//! The fuzz targets of `custodian::fuzzing`, run on every `cargo test`:
//! each target replays its corpus (`fuzz/corpus/<target>/`, shared with
//! the coverage-guided cargo-fuzz targets in `fuzz/`) and its seeds, then
//! a few thousand random byte-level mutations (flip, insert, delete,
//! duplicate, splice, truncate) from a seeded ChaCha generator. Run longer
//! with `FUZZ_ITERS=1000000 cargo test --test api security::fuzz --
//! --nocapture` (`FUZZ_SEED=<n>` varies the run; a failure prints the seed
//! and the input in hex), or coverage-guided with cargo-fuzz (README,
//! "Security suite and fuzzing").

use custodian::fuzzing;
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
        .join("fuzz/corpus")
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

#[test]
fn token_front_door() {
    // The good token is accepted, so the property is not vacuous.
    let config = custodian::pipeline::authenticate::AuthConfig {
        dev_hs256_secret: Some(custodian::pipeline::authenticate::SecretString::new(
            "fuzz-only-hs256-secret-0123456789abcdef".into(),
        )),
        cache_capacity: 0,
        ..Default::default()
    };
    let auth = custodian::pipeline::authenticate::Authenticator::from_config(&config).unwrap();
    assert!(auth
        .authenticate(Some(fuzzing::good_token().as_bytes()), fuzzing::NOW)
        .is_ok());
    fuzz("token", fuzzing::token_seeds(), fuzzing::token);
}

#[test]
fn audit_block_decoder() {
    fuzz(
        "audit_block",
        vec![vec![], vec![0; 64]],
        fuzzing::audit_block,
    );
}

#[test]
fn audit_export_verifier() {
    fuzz(
        "audit_export",
        fuzzing::audit_export_seeds(),
        fuzzing::audit_export,
    );
}

#[test]
fn field_ciphertext_parser() {
    fuzz(
        "field_ciphertext",
        fuzzing::field_ciphertext_seeds(),
        fuzzing::field_ciphertext,
    );
}

#[test]
fn json_body_parser() {
    fuzz("json_body", fuzzing::json_body_seeds(), fuzzing::json_body);
}

#[test]
fn request_target_check() {
    fuzz(
        "request_target",
        vec![b"/v1/customers/C-1?limit=5".to_vec()],
        fuzzing::request_target,
    );
}

#[test]
fn import_line_reader() {
    fuzz(
        "import_rows",
        fuzzing::import_rows_seeds(),
        fuzzing::import_rows,
    );
}

#[test]
fn segment_language() {
    // The seeds compile, so the SQL-text property is exercised.
    for seed in fuzzing::segment_definition_seeds() {
        let node: custodian::analytics::segments::language::Node =
            custodian::analytics::segments::language::parse(&seed).unwrap();
        drop(node);
    }
    fuzz(
        "segment_definition",
        fuzzing::segment_definition_seeds(),
        fuzzing::segment_definition,
    );
}

#[test]
fn every_target_has_a_corpus_and_a_cargo_fuzz_binary() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in fuzzing::TARGETS {
        let corpus = root.join("corpus").join(name);
        assert!(
            std::fs::read_dir(&corpus).is_ok_and(|mut d| d.next().is_some()),
            "no corpus in {}",
            corpus.display()
        );
        let target = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(
            target.is_file(),
            "no cargo-fuzz target {}",
            target.display()
        );
    }
}
