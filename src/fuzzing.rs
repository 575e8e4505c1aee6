//! Fuzz targets: the parsers that face untrusted bytes, each with the
//! security property it must keep on any input.
//!
//! Each target takes arbitrary bytes and returns `Err(why)` when its
//! property fails (a panic is a failure too). Two drivers call them:
//! - `fuzz/` (cargo-fuzz, coverage-guided libFuzzer; `--sanitizer none`
//!   runs on the stable toolchain), for long runs and a short run in CI;
//! - the test suite (`tests/api/security/fuzz.rs`), which replays the
//!   corpora in `fuzz/corpus/<target>/` and a few thousand seeded
//!   mutations on every `cargo test`.
//!
//! Fixtures (keys, a token, a mapping) are built once per process; one that
//! cannot be built is a broken harness, so it panics (`expect`), which the
//! drivers report like any failure.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use crate::analytics::segments::language::{self, Node};
use crate::audit::{store, verify_ndjson, PublicKey, Signer};
use crate::crypto::{DataKey, FieldPlace};
use crate::import::input::Rows;
use crate::import::mapping::Mapping;
use crate::pipeline::authenticate::{AuthConfig, Authenticator, SecretString};

/// A target: arbitrary bytes in, `Err(why)` when its property fails.
pub type Target = fn(&[u8]) -> Result<(), String>;

/// Every target, by the name of its corpus directory and cargo-fuzz binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("token", token),
    ("audit_block", audit_block),
    ("audit_export", audit_export),
    ("field_ciphertext", field_ciphertext),
    ("json_body", json_body),
    ("request_target", request_target),
    ("import_rows", import_rows),
    ("segment_definition", segment_definition),
];

/// The verification time of [`token`]'s fixtures (seconds).
pub const NOW: i64 = 1_780_000_000;
const SECRET: &str = "fuzz-only-hs256-secret-0123456789abcdef";

/// An HS256 token over `header` and `claims` with the fuzz secret.
pub fn hs256_token(header: &str, claims: &str) -> String {
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

fn token_claims() -> String {
    format!(
        r#"{{"sub":"f","roles":["dpo"],"iss":"custodian","aud":"custodian-api","iat":{NOW},"exp":{}}}"#,
        NOW + 60
    )
}

/// The one `Authorization` value [`token`] may accept.
pub fn good_token() -> &'static str {
    static GOOD: OnceLock<String> = OnceLock::new();
    GOOD.get_or_init(|| {
        format!(
            "Bearer {}",
            hs256_token(r#"{"alg":"HS256","typ":"at+jwt"}"#, &token_claims())
        )
    })
}

/// Seeds for [`token`]: the good token, a refresh token, an `alg: none` one.
pub fn token_seeds() -> Vec<Vec<u8>> {
    let claims = token_claims();
    vec![
        good_token().as_bytes().to_vec(),
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
    ]
}

/// The token front door: only the byte-identical good token is accepted
/// (RFC 6750 lets the scheme's case vary).
pub fn token(input: &[u8]) -> Result<(), String> {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        let config = AuthConfig {
            dev_hs256_secret: Some(SecretString::new(SECRET.into())),
            cache_capacity: 0,
            ..AuthConfig::default()
        };
        Authenticator::from_config(&config).expect("fuzz authenticator")
    });
    let good = good_token().as_bytes();
    if auth.authenticate(Some(input), NOW).is_ok() && input != good {
        let same = input.len() == good.len()
            && input.get(7..) == good.get(7..)
            && input
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "));
        if !same {
            return Err("a mutated token was accepted".into());
        }
    }
    Ok(())
}

/// The audit store's block decoder: never panics, and every row names a
/// sequence number at or after the block's first.
pub fn audit_block(input: &[u8]) -> Result<(), String> {
    for row in store::decode_block("i", 1, input) {
        if row.seq() < 1 {
            return Err(format!("row with seq {}", row.seq()));
        }
    }
    Ok(())
}

fn export_key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| *Signer::ephemeral().expect("fuzz signer").public_key())
}

/// Seeds for [`audit_export`]: a header, an unsigned manifest, both.
pub fn audit_export_seeds() -> Vec<Vec<u8>> {
    let header =
        br#"{"type":"header","format":"custodian-audit","version":1,"filtered":false}"#.to_vec();
    let manifest = br#"{"type":"manifest","body":{"filter":"","chains":[],"exported_at":0},"key_id":"00","signature":"00"}"#.to_vec();
    let mut both = header.clone();
    both.push(b'\n');
    both.extend_from_slice(&manifest);
    vec![header, manifest, both]
}

/// The export verifier: never panics, and a file no manifest signed with
/// the auditor's key covers is never "intact" (the key's private half is
/// never used, so no input can carry a valid signature).
pub fn audit_export(input: &[u8]) -> Result<(), String> {
    if let Ok(r) = verify_ndjson(input, &[*export_key()], &|_| {}) {
        if r.is_intact() && r.events > 0 {
            return Err(format!("forged export verified: {r}"));
        }
    }
    Ok(())
}

const PLACE: FieldPlace<'static> = FieldPlace {
    resource: "customer",
    field: "email",
    record_id: 7,
};

fn field_fixture() -> &'static (DataKey, Vec<u8>) {
    static FIXTURE: OnceLock<(DataKey, Vec<u8>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dek = DataKey::generate().expect("fuzz data key");
        let good = dek
            .cipher()
            .encrypt(PLACE, b"fuzz@example.org")
            .expect("fuzz ciphertext");
        (dek, good)
    })
}

/// Seeds for [`field_ciphertext`]: the one ciphertext that opens.
pub fn field_ciphertext_seeds() -> Vec<Vec<u8>> {
    vec![field_fixture().1.clone()]
}

/// The field-ciphertext parser: only the original ciphertext opens.
pub fn field_ciphertext(input: &[u8]) -> Result<(), String> {
    let (dek, good) = field_fixture();
    if dek.cipher().decrypt(PLACE, input).is_ok() && input != good.as_slice() {
        return Err("a mutated ciphertext opened".into());
    }
    Ok(())
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read only by the parser under test
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

/// Seeds for [`json_body`]: a consent batch carrying a personal value.
pub fn json_body_seeds() -> Vec<Vec<u8>> {
    let secret = "zelda.private@example.org";
    vec![format!(
        r#"{{"changes":[{{"purpose":"{secret}","granted":true,"source":"web","evidence":"{secret}"}}]}}"#
    )
    .into_bytes()]
}

/// The request-body parser: an error message never quotes the input.
pub fn json_body(input: &[u8]) -> Result<(), String> {
    match crate::http::extract::parse_json::<Batch>(input) {
        Err(e) if e.to_string().contains("zelda") => Err(format!("echoed: {e}")),
        _ => Ok(()),
    }
}

/// The request-target guard: anything it passes decodes to UTF-8 without
/// NUL or control characters.
pub fn request_target(input: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(());
    };
    if crate::http::middleware::decodes_cleanly(text) {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(text).collect();
        match String::from_utf8(decoded) {
            Ok(s) if !s.chars().any(char::is_control) => {}
            _ => return Err("passed but decodes to something unclean".into()),
        }
    }
    Ok(())
}

const CSV_MAPPING: &str = r#"
source = "crm"
entity = "customers"
format = "csv"
delimiter = ";"
id_prefix = "crm-"
match_on = ["email", "phone"]

[fields]
external_id = "Kundennr"
email = "E-Mail"
phone = "Telefon"
name = "Name"
country = { column = "Land", default = "DE" }
signup_at = { column = "Angelegt", format = "[day].[month].[year]" }
"#;

fn mappings() -> &'static (Mapping, Mapping) {
    static MAPPINGS: OnceLock<(Mapping, Mapping)> = OnceLock::new();
    MAPPINGS.get_or_init(|| {
        let csv = Mapping::parse(CSV_MAPPING).expect("fuzz CSV mapping");
        let ndjson = Mapping::parse(&CSV_MAPPING.replace("\"csv\"", "\"ndjson\""))
            .expect("fuzz NDJSON mapping");
        (csv, ndjson)
    })
}

/// Seeds for [`import_rows`]: a CSV export (first byte `c`) and an NDJSON
/// one (first byte `n`).
pub fn import_rows_seeds() -> Vec<Vec<u8>> {
    vec![
        b"cKundennr;E-Mail;Telefon;Name;Land;Angelegt\n42; Pat@Example.ORG ;030 1234567;Pat Doe;Deutschland;01.02.2024\n43;;+44 20 7946 0000;Sam;GB;31.12.2023\n".to_vec(),
        br#"n{"Kundennr":"42","E-Mail":"PAT@example.org","Telefon":"030 1234567","Land":"DE","Angelegt":"01.02.2024"}
{"Kundennr":"43","E-Mail":"x@y","Land":"France"}
"#
        .to_vec(),
    ]
}

/// The import line reader and field standardization: rows come back in
/// file order; a row is either readable or carries its problem; what is
/// standardized is a fixed point (standardizing it again changes nothing).
/// The first byte picks the format.
pub fn import_rows(input: &[u8]) -> Result<(), String> {
    let Some((&format, data)) = input.split_first() else {
        return Ok(());
    };
    let (csv, ndjson) = mappings();
    let mapping = if format == b'n' { ndjson } else { csv };
    let Ok(mut rows) = Rows::open(data, mapping) else {
        return Ok(()); // refused whole: a clear error, nothing read
    };
    let mut last_line = 0;
    let mut count = 0usize;
    while let Ok(Some(row)) = rows.next_row() {
        count += 1;
        if count > data.len() + 1 {
            return Err(format!("{count} rows from {} bytes", data.len()));
        }
        if row.line_no < last_line {
            return Err(format!("line {} after line {last_line}", row.line_no));
        }
        last_line = row.line_no;
        let parsed = crate::import::mapped::parse_row(mapping, &row);
        if let Some(email) = parsed.text("email") {
            let again = crate::import::standardize::email(email);
            if again.as_deref() != Some(email) {
                return Err(format!("e-mail not a fixed point at line {}", row.line_no));
            }
        }
        if let Some(phone) = parsed.text("phone") {
            let again = crate::import::standardize::phone_e164(phone, None);
            if again.as_deref() != Some(phone) {
                return Err(format!("phone not a fixed point at line {}", row.line_no));
            }
        }
    }
    Ok(())
}

/// Seeds for [`segment_definition`]: a typical definition, a hostile one.
pub fn segment_definition_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"all": [{"country": {"in": ["Germany"]}}, {"bought": {"category": "garden", "within_days": 90}}, {"monetary": {"min": 250.0}}, {"not": {"rfm_cell": {"in": ["lost", "hibernating"]}}}, {"any": [{"events": {"kind": "view", "min_count": 3, "within_days": 30}}, {"consent": {"purpose": "email_marketing"}}]}]}"#.to_vec(),
        br#"{"any": [{"country": {"in": ["x') OR 1=1; --"]}}, {"bought": {"product": "\"; DROP TABLE customers; --", "min_count": 2}}, {"frequency": {"min": 2, "max": 9, "within_days": 365}}]}"#.to_vec(),
    ]
}

/// Every string and number of a JSON document changed (strings suffixed,
/// integers incremented).
fn shifted(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(format!("{s}~")),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i.saturating_add(1)),
            None => Value::from(n.as_f64().unwrap_or(0.0) + 1.0),
        },
        Value::Array(a) => Value::Array(a.iter().map(shifted).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shifted(v))).collect()),
        other => other.clone(),
    }
}

fn compile_definition(bytes: &[u8]) -> Option<crate::analytics::segments::compile::Sql> {
    let node: Node = language::parse(bytes).ok()?;
    language::validate(&node, "$", &|p| p == "email_marketing").ok()?;
    let predicate = crate::db::consents::ConsentPredicate::new("marketing_analytics", true);
    crate::analytics::segments::filter(&node, &predicate, NOW * 1_000_000, &Default::default()).ok()
}

/// The segment language: parsing, validation and compilation never panic,
/// errors name a JSON path, and no value reaches SQL text: a definition
/// with every value changed compiles to the same SQL with other binds.
pub fn segment_definition(input: &[u8]) -> Result<(), String> {
    match language::parse::<Node>(input) {
        Err(language::ParseError::Invalid(e)) if !e.path.starts_with('$') => {
            return Err(format!("error without a JSON path: {}", e.path));
        }
        Err(_) => return Ok(()),
        Ok(_) => {}
    }
    let Some(sql) = compile_definition(input) else {
        return Ok(());
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) else {
        return Ok(());
    };
    let other = serde_json::to_vec(&shifted(&value)).unwrap_or_default();
    if let Some(other_sql) = compile_definition(&other) {
        if other_sql.text != sql.text {
            return Err("the SQL text depends on a value of the definition".into());
        }
    }
    Ok(())
}
