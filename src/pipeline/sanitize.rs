//! The sanitizer: the single place where a stored record becomes the form the
//! caller may see, field by field.
//!
//! Input: the field view the policy stage computed (`(field, Treatment)`), the
//! record's stored values, and a way to get the customer's DEK. Output: a JSON
//! object with each field in its treatment, and the list of fields actually
//! returned (for the audit event).
//!
//! Rules:
//! * **Default deny.** A stored field not in the view is absent; a view field
//!   unknown to the catalog is an error.
//! * **Decrypt only for `clear` and `masked`** (a mask needs the plaintext).
//!   `pseudonym` never decrypts: an encrypted field's pseudonym is computed
//!   from the customer key and the field name, the subject-key field's
//!   pseudonym is the customer's token, and a plain field's pseudonym is a
//!   keyed hash of its value (see [`crate::crypto::pseudonym`]).
//! * **The DEK is unwrapped lazily**, at most once, and only if some field
//!   needs decrypting; the expanded cipher is reused for all fields.
//! * **All or nothing.** Any failure (a ciphertext that does not authenticate
//!   at its place, a storage mismatch) fails the whole record: never a
//!   partial record, never another customer's data.
//!
//! Plaintexts are held in `Zeroizing` buffers while masked; clear values end
//! up in the returned JSON, which the caller serializes and drops.

use super::authorize::vocabulary::CUSTOMER_FIELDS;
use super::gate::Gate;
use crate::catalog::{FieldCatalog, FieldSpec, Storage};
use crate::crypto::{apply_mask, CryptoError, DataKey, FieldCipher, FieldPlace, Pseudonymizer};
use crate::domain::{PurposeId, Treatment};
use crate::error::ApiError;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// A stored value as the DB layer read it.
#[derive(Clone, PartialEq)]
pub enum StoredValue {
    /// A plain text column.
    Plain(String),
    /// A plain column of another JSON type (number, bool, timestamp string).
    Json(Value),
    /// A `*_ct` column: field ciphertext (see [`crate::crypto::field`]).
    Encrypted(Vec<u8>),
    /// SQL NULL.
    Null,
}

// Plain values are personal data too: keep them out of debug output.
impl std::fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredValue::Plain(_) => f.write_str("Plain(<redacted>)"),
            StoredValue::Json(_) => f.write_str("Json(<redacted>)"),
            StoredValue::Encrypted(ct) => write!(f, "Encrypted({} bytes)", ct.len()),
            StoredValue::Null => f.write_str("Null"),
        }
    }
}

/// One field of a stored record, named as in the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredField {
    pub name: String,
    pub value: StoredValue,
}

impl StoredField {
    pub fn new(name: impl Into<String>, value: StoredValue) -> StoredField {
        StoredField {
            name: name.into(),
            value,
        }
    }
}

/// What is fixed for a whole page of records.
#[derive(Clone, Copy, Debug)]
pub struct SanitizeContext<'a> {
    pub catalog: &'a FieldCatalog,
    pub pseudonymizer: &'a Pseudonymizer,
    pub purpose: &'a PurposeId,
    /// Catalog resource name (`customer`, `order`, …), also part of the AAD.
    pub resource: &'a str,
}

/// One record to sanitize.
#[derive(Clone, Copy, Debug)]
pub struct RecordInput<'a> {
    /// The row id the ciphertexts are bound to (for `customer`: the customer id).
    pub record_id: i64,
    /// The immutable key of the data subject (the same one for a customer's
    /// own row and their orders/events, so tokens agree across resources);
    /// `None` for records about nobody (products).
    pub customer_key: Option<&'a str>,
    pub fields: &'a [StoredField],
}

/// The sanitized record.
#[derive(Clone, Debug, PartialEq)]
pub struct Sanitized {
    /// Each returned field in its treatment; dropped fields are absent.
    pub fields: Map<String, Value>,
    /// `(field, treatment)` of every field returned, for the audit event.
    pub returned: Vec<(String, Treatment)>,
}

/// Why a record could not be sanitized. Messages name fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    /// The ciphertext does not authenticate at its place: tampered, moved
    /// from another row/column, or under another customer's key.
    #[error("integrity check failed for field {field}")]
    Integrity { field: String },
    #[error("field {field}: {source}")]
    Crypto {
        field: String,
        #[source]
        source: CryptoError,
    },
    /// The customer's DEK could not be obtained or unwrapped.
    #[error("data key unavailable: {0}")]
    Key(#[source] CryptoError),
    #[error("field {field} is not in the field catalog")]
    UnknownField { field: String },
    /// The stored form disagrees with the catalog (plain text where the
    /// catalog says encrypted, or the reverse).
    #[error("field {field} is not stored as the catalog says")]
    StorageMismatch { field: String },
    #[error("field {field} decrypted to invalid UTF-8")]
    NotUtf8 { field: String },
    /// A pseudonym needs a data subject, and the record has none.
    #[error("field {field} needs a customer key for its pseudonym")]
    MissingSubject { field: String },
}

/// Unwraps the DEK on first use only.
struct LazyCipher<F> {
    source: Option<F>,
    cipher: Option<FieldCipher>,
}

impl<F: FnOnce() -> Result<DataKey, CryptoError>> LazyCipher<F> {
    fn get(&mut self) -> Result<&FieldCipher, SanitizeError> {
        if self.cipher.is_none() {
            // A previous failure aborted the record, so the source is always
            // still here on a first real use.
            let source = self
                .source
                .take()
                .ok_or(SanitizeError::Key(CryptoError::Integrity))?;
            let dek = source().map_err(SanitizeError::Key)?;
            self.cipher = Some(dek.cipher());
        }
        self.cipher
            .as_ref()
            .ok_or(SanitizeError::Key(CryptoError::Integrity))
    }
}

/// Sanitizes one record. `view` is the policy's `(field, treatment)` list;
/// `dek` is called at most once, only if a field needs decrypting.
pub fn sanitize_record<S, F>(
    ctx: &SanitizeContext<'_>,
    view: &[(S, Treatment)],
    record: &RecordInput<'_>,
    dek: F,
) -> Result<Sanitized, SanitizeError>
where
    S: AsRef<str>,
    F: FnOnce() -> Result<DataKey, CryptoError>,
{
    let mut cipher = LazyCipher {
        source: Some(dek),
        cipher: None,
    };
    let mut fields = Map::new();
    let mut returned = Vec::with_capacity(view.len());

    for (name, treatment) in view {
        let name = name.as_ref();
        let spec = ctx
            .catalog
            .field(ctx.resource, name)
            .ok_or_else(|| SanitizeError::UnknownField { field: name.into() })?;
        if *treatment == Treatment::Dropped {
            continue;
        }
        // Not loaded by the store: nothing to return.
        let Some(stored) = record.fields.iter().find(|f| f.name == name) else {
            continue;
        };
        check_storage(spec, &stored.value)?;

        let out = match (&stored.value, treatment) {
            (_, Treatment::Dropped) => continue,
            (StoredValue::Null, _) => Value::Null,
            (value, Treatment::Pseudonym) => pseudonym(ctx, spec, record, value)?,
            (value, Treatment::Clear) => match value {
                StoredValue::Json(v) => v.clone(),
                other => {
                    let text = plaintext(ctx, spec, record, other, &mut cipher)?;
                    Value::String(text.as_str().to_owned())
                }
            },
            (value, Treatment::Masked) => {
                let text = plaintext(ctx, spec, record, value, &mut cipher)?;
                Value::String(apply_mask(spec.mask, &text))
            }
        };
        fields.insert(spec.name.clone(), out);
        returned.push((spec.name.clone(), *treatment));
    }
    Ok(Sanitized { fields, returned })
}

fn check_storage(spec: &FieldSpec, value: &StoredValue) -> Result<(), SanitizeError> {
    let ok = match value {
        StoredValue::Null => true,
        StoredValue::Encrypted(_) => spec.storage == Storage::Encrypted,
        StoredValue::Plain(_) | StoredValue::Json(_) => spec.storage == Storage::Plain,
    };
    if ok {
        Ok(())
    } else {
        Err(SanitizeError::StorageMismatch {
            field: spec.name.clone(),
        })
    }
}

/// The field's plaintext as text, decrypting if stored encrypted.
fn plaintext<F: FnOnce() -> Result<DataKey, CryptoError>>(
    ctx: &SanitizeContext<'_>,
    spec: &FieldSpec,
    record: &RecordInput<'_>,
    value: &StoredValue,
    cipher: &mut LazyCipher<F>,
) -> Result<Zeroizing<String>, SanitizeError> {
    match value {
        StoredValue::Plain(s) => Ok(Zeroizing::new(s.clone())),
        StoredValue::Json(Value::String(s)) => Ok(Zeroizing::new(s.clone())),
        StoredValue::Json(v) => Ok(Zeroizing::new(v.to_string())),
        StoredValue::Null => Ok(Zeroizing::new(String::new())),
        StoredValue::Encrypted(ct) => {
            let place = FieldPlace {
                resource: ctx.resource,
                field: &spec.name,
                record_id: record.record_id,
            };
            // Every ciphertext that does not open at its place is one kind
            // of failure, whichever byte was changed: a flipped format byte
            // is as much tampering as a flipped tag bit, and must be refused
            // and audited the same way (`integrity_failure`).
            let bytes = cipher.get()?.decrypt(place, ct).map_err(|e| match e {
                CryptoError::Rng => SanitizeError::Crypto {
                    field: spec.name.clone(),
                    source: e,
                },
                CryptoError::Integrity
                | CryptoError::UnsupportedFormat(_)
                | CryptoError::UnknownKeyVersion(_) => SanitizeError::Integrity {
                    field: spec.name.clone(),
                },
            })?;
            // `bytes` is zeroized on drop; validate without copying first.
            let text = std::str::from_utf8(&bytes).map_err(|_| SanitizeError::NotUtf8 {
                field: spec.name.clone(),
            })?;
            Ok(Zeroizing::new(text.to_owned()))
        }
    }
}

fn pseudonym(
    ctx: &SanitizeContext<'_>,
    spec: &FieldSpec,
    record: &RecordInput<'_>,
    value: &StoredValue,
) -> Result<Value, SanitizeError> {
    let p = ctx.pseudonymizer;
    let missing = || SanitizeError::MissingSubject {
        field: spec.name.clone(),
    };
    let token = match value {
        _ if spec.subject_key => p.token(ctx.purpose, record.customer_key.ok_or_else(missing)?),
        StoredValue::Encrypted(_) => p.pseudonymize_field(
            ctx.purpose,
            &spec.name,
            record.customer_key.ok_or_else(missing)?,
        ),
        StoredValue::Plain(s) => p.pseudonymize_value(ctx.purpose, &spec.name, s),
        StoredValue::Json(Value::String(s)) => p.pseudonymize_value(ctx.purpose, &spec.name, s),
        StoredValue::Json(v) => p.pseudonymize_value(ctx.purpose, &spec.name, &v.to_string()),
        StoredValue::Null => return Ok(Value::Null),
    };
    Ok(Value::String(token))
}

/// The stored form of a customer row, field by field, as the sanitizer
/// expects it. Erasure empties the ciphertext columns along with the data
/// key; a ciphertext found without its key (a row restored from a backup
/// after the erasure) is presented as what it is, so reading it fails the
/// integrity check instead of passing as an empty field.
pub fn customer_fields(row: &crate::db::customers::StoredCustomer) -> Vec<StoredField> {
    let enc = |v: &Option<Vec<u8>>| match v {
        Some(ct) => StoredValue::Encrypted(ct.clone()),
        None => StoredValue::Null,
    };
    let plain = |v: &Option<String>| match v {
        Some(s) => StoredValue::Plain(s.clone()),
        None => StoredValue::Null,
    };
    vec![
        StoredField::new("external_id", StoredValue::Plain(row.external_id.clone())),
        StoredField::new("email", enc(&row.email_ct)),
        StoredField::new("phone", enc(&row.phone_ct)),
        StoredField::new("name", enc(&row.name_ct)),
        StoredField::new("birth_date", enc(&row.birth_date_ct)),
        StoredField::new("postcode", enc(&row.postcode_ct)),
        StoredField::new("city", plain(&row.city)),
        StoredField::new("country", plain(&row.country)),
        StoredField::new(
            "signup_at",
            StoredValue::Plain(crate::clock::rfc3339(row.signup_at)),
        ),
    ]
}

/// Stage 7 for customer rows, under an open gate: each field in the strongest treatment the
/// caller may have, decrypting only what leaves in clear or masked. A
/// ciphertext that does not open at its place fails the whole request
/// (`integrity_failure`): never a partial or someone else's record.
/// A key version this instance does not know yet (another instance
/// rotated) is loaded from the store first.
pub async fn customer_rows(
    gate: &mut Gate<'_>,
    rows: &[crate::db::customers::StoredCustomer],
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let state = gate.state();
    let view = gate.field_view("customer", CUSTOMER_FIELDS);
    let view: Vec<(&str, Treatment)> = view
        .fields
        .iter()
        .map(|g| (g.field.as_str(), g.treatment))
        .collect();
    let ctx = SanitizeContext {
        catalog: &state.catalog,
        pseudonymizer: state.vault.pseudonymizer(),
        purpose: gate.purpose(),
        resource: "customer",
    };
    state
        .vault
        .ensure_versions(&state.db, rows.iter().filter_map(|r| r.kek_version))
        .await
        .map_err(ApiError::Internal)?;
    let keyring = state.vault.keyring();
    let mut out = Vec::with_capacity(rows.len());
    let mut returned: Vec<(String, Treatment)> = Vec::new();
    for row in rows {
        let fields = customer_fields(row);
        let input = RecordInput {
            record_id: row.id,
            customer_key: Some(&row.external_id),
            fields: &fields,
        };
        let dek = || match (&row.kek_version, &row.wrapped_dek) {
            (Some(v), Some(w)) => keyring.unwrap_dek(
                u32::try_from(*v).map_err(|_| CryptoError::Integrity)?,
                w,
                row.id,
            ),
            _ => Err(CryptoError::Integrity),
        };
        match sanitize_record(&ctx, &view, &input, dek) {
            Ok(s) => {
                for r in s.returned {
                    if !returned.contains(&r) {
                        returned.push(r);
                    }
                }
                out.push(s.fields);
            }
            Err(SanitizeError::Integrity { field }) => {
                tracing::error!(customer = row.id, field = %field, "ciphertext failed its integrity check");
                gate.touch([row.id]);
                return Err(ApiError::Integrity);
            }
            Err(SanitizeError::Key(e)) => {
                tracing::error!(customer = row.id, error = %e, "customer data key unavailable");
                gate.touch([row.id]);
                return Err(ApiError::Integrity);
            }
            Err(e) => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "sanitize customer {}: {e}",
                    row.id
                )))
            }
        }
    }
    gate.returned(returned, out.len() as u64);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{encrypt_field, MasterKey};
    use std::cell::Cell;

    const SHIPPED: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fields.toml"));

    struct Fixture {
        catalog: FieldCatalog,
        pz: Pseudonymizer,
        purpose: PurposeId,
    }

    impl Fixture {
        fn new() -> Fixture {
            let purpose = PurposeId("analytics".into());
            Fixture {
                catalog: FieldCatalog::from_toml_str(SHIPPED).unwrap(),
                pz: Pseudonymizer::from_master(&MasterKey::from_bytes([5; 32]), [&purpose]),
                purpose,
            }
        }

        fn ctx(&self) -> SanitizeContext<'_> {
            SanitizeContext {
                catalog: &self.catalog,
                pseudonymizer: &self.pz,
                purpose: &self.purpose,
                resource: "customer",
            }
        }
    }

    /// The customer's DEK; fixed bytes so every call returns the same key.
    fn dek() -> Result<DataKey, CryptoError> {
        Ok(DataKey::from_bytes_for_test([9; 32]))
    }

    fn customer(id: i64, key: &DataKey) -> Vec<StoredField> {
        let enc = |field: &str, v: &str| {
            StoredValue::Encrypted(
                encrypt_field(
                    key,
                    FieldPlace {
                        resource: "customer",
                        field,
                        record_id: id,
                    },
                    v.as_bytes(),
                )
                .unwrap(),
            )
        };
        vec![
            StoredField::new("external_id", StoredValue::Plain("C-42".into())),
            StoredField::new("email", enc("email", "jane.doe@example.com")),
            StoredField::new("phone", enc("phone", "+44 20 7946 0789")),
            StoredField::new("name", enc("name", "Jane Doe")),
            StoredField::new("birth_date", enc("birth_date", "1984-03-12")),
            StoredField::new("postcode", enc("postcode", "SW1A 1AA")),
            StoredField::new("city", StoredValue::Plain("London".into())),
            StoredField::new("country", StoredValue::Null),
            StoredField::new(
                "signup_at",
                StoredValue::Json(Value::String("2021-05-01T10:00:00Z".into())),
            ),
        ]
    }

    fn record(fields: &[StoredField]) -> RecordInput<'_> {
        RecordInput {
            record_id: 42,
            customer_key: Some("C-42"),
            fields,
        }
    }

    #[test]
    fn each_treatment() {
        let fx = Fixture::new();
        let key = dek().unwrap();
        let fields = customer(42, &key);
        let view = [
            ("external_id", Treatment::Pseudonym),
            ("email", Treatment::Masked),
            ("phone", Treatment::Pseudonym),
            ("name", Treatment::Clear),
            ("birth_date", Treatment::Masked),
            ("postcode", Treatment::Masked),
            ("city", Treatment::Clear),
            ("country", Treatment::Clear),
            ("signup_at", Treatment::Dropped),
        ];
        let out = sanitize_record(&fx.ctx(), &view, &record(&fields), dek).unwrap();
        let f = &out.fields;
        assert_eq!(
            f["external_id"],
            Value::String(fx.pz.token(&fx.purpose, "C-42"))
        );
        assert_eq!(f["email"], "j***@example.com");
        assert_eq!(
            f["phone"],
            Value::String(fx.pz.pseudonymize_field(&fx.purpose, "phone", "C-42"))
        );
        assert_eq!(f["name"], "Jane Doe");
        assert_eq!(f["birth_date"], "1984");
        assert_eq!(f["postcode"], "SW1A ***");
        assert_eq!(f["city"], "London");
        assert_eq!(f["country"], Value::Null);
        assert!(!f.contains_key("signup_at"));
        assert_eq!(out.returned.len(), 8);
        assert!(out
            .returned
            .contains(&("phone".into(), Treatment::Pseudonym)));
        assert!(!out.returned.iter().any(|(n, _)| n == "signup_at"));
    }

    #[test]
    fn fields_outside_the_view_are_absent() {
        let fx = Fixture::new();
        let key = dek().unwrap();
        let fields = customer(42, &key);
        let out = sanitize_record(
            &fx.ctx(),
            &[("city", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap();
        assert_eq!(out.fields.len(), 1);
        assert_eq!(out.returned, vec![("city".to_string(), Treatment::Clear)]);
    }

    #[test]
    fn no_decryption_without_clear_or_masked() {
        let fx = Fixture::new();
        let calls = Cell::new(0);
        // Garbage ciphertexts: pseudonyms and drops must not look at them.
        let fields = vec![
            StoredField::new("external_id", StoredValue::Plain("C-42".into())),
            StoredField::new("email", StoredValue::Encrypted(b"\x01garbage".to_vec())),
            StoredField::new("name", StoredValue::Encrypted(vec![])),
            StoredField::new("city", StoredValue::Plain("London".into())),
        ];
        let view = [
            ("external_id", Treatment::Clear),
            ("email", Treatment::Pseudonym),
            ("name", Treatment::Dropped),
            ("city", Treatment::Masked),
        ];
        let out = sanitize_record(&fx.ctx(), &view, &record(&fields), || {
            calls.set(calls.get() + 1);
            dek()
        })
        .unwrap();
        assert_eq!(calls.get(), 0, "DEK unwrapped without need");
        assert_eq!(out.fields["external_id"], "C-42");
        assert!(out.fields["email"].as_str().unwrap().starts_with("pf_"));
        assert_eq!(out.fields["city"], "London");

        // The same garbage under Clear is an integrity failure, not output.
        let err = sanitize_record(
            &fx.ctx(),
            &[("email", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(
            matches!(err, SanitizeError::Integrity { ref field } if field == "email"),
            "{err:?}"
        );
        // An unknown format byte is reported as such (version skew), still no data.
        let fields = [StoredField::new(
            "email",
            StoredValue::Encrypted(b"garbage".to_vec()),
        )];
        let err = sanitize_record(
            &fx.ctx(),
            &[("email", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        // An unknown format byte is an integrity failure like any other.
        assert!(matches!(err, SanitizeError::Integrity { ref field } if field == "email"));
    }

    #[test]
    fn dek_unwrapped_once_for_many_fields() {
        let fx = Fixture::new();
        let key = dek().unwrap();
        let fields = customer(42, &key);
        let calls = Cell::new(0);
        let view: Vec<(&str, Treatment)> = ["email", "phone", "name", "birth_date", "postcode"]
            .iter()
            .map(|f| (*f, Treatment::Clear))
            .collect();
        sanitize_record(&fx.ctx(), &view, &record(&fields), || {
            calls.set(calls.get() + 1);
            dek()
        })
        .unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn swapped_ciphertext_is_integrity_error_not_partial_data() {
        let fx = Fixture::new();
        let key = dek().unwrap();
        // Customer 7's email ciphertext pasted into customer 42's row (same
        // DEK even, the worst case): the row binding still catches it.
        let other = customer(7, &key);
        let mut fields = customer(42, &key);
        fields[1] = other[1].clone();
        let view = [("city", Treatment::Clear), ("email", Treatment::Clear)];
        let err = sanitize_record(&fx.ctx(), &view, &record(&fields), dek).unwrap_err();
        assert!(matches!(err, SanitizeError::Integrity { ref field } if field == "email"));
        // Moved between columns.
        let mut fields = customer(42, &key);
        fields[2].value = fields[1].value.clone(); // email ct into phone
        let err = sanitize_record(
            &fx.ctx(),
            &[("phone", Treatment::Masked)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(matches!(err, SanitizeError::Integrity { ref field } if field == "phone"));
        // Wrong DEK (another customer's key).
        let fields = customer(42, &DataKey::generate().unwrap());
        let err = sanitize_record(
            &fx.ctx(),
            &[("name", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(matches!(err, SanitizeError::Integrity { .. }));
        assert!(!err.to_string().contains("Jane"));
    }

    #[test]
    fn dek_failure_is_key_error() {
        let fx = Fixture::new();
        let key = dek().unwrap();
        let fields = customer(42, &key);
        let err = sanitize_record(
            &fx.ctx(),
            &[("email", Treatment::Clear)],
            &record(&fields),
            || Err(CryptoError::UnknownKeyVersion(9)),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            SanitizeError::Key(CryptoError::UnknownKeyVersion(9))
        ));
    }

    #[test]
    fn catalog_disagreements_fail_closed() {
        let fx = Fixture::new();
        let fields = vec![StoredField::new(
            "email",
            StoredValue::Plain("jane@example.com".into()),
        )];
        let err = sanitize_record(
            &fx.ctx(),
            &[("email", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(matches!(err, SanitizeError::StorageMismatch { .. }));
        let fields = vec![StoredField::new(
            "city",
            StoredValue::Encrypted(vec![1, 2, 3]),
        )];
        let err = sanitize_record(
            &fx.ctx(),
            &[("city", Treatment::Pseudonym)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(matches!(err, SanitizeError::StorageMismatch { .. }));
        let err = sanitize_record(
            &fx.ctx(),
            &[("shoe_size", Treatment::Clear)],
            &record(&fields),
            dek,
        )
        .unwrap_err();
        assert!(matches!(err, SanitizeError::UnknownField { ref field } if field == "shoe_size"));
    }

    #[test]
    fn pseudonyms_agree_across_resources_and_need_a_subject() {
        let fx = Fixture::new();
        let order = [
            StoredField::new("customer_id", StoredValue::Json(Value::from(42))),
            StoredField::new("total", StoredValue::Json(Value::from(19.99))),
            StoredField::new("status", StoredValue::Plain("paid".into())),
        ];
        let ctx = SanitizeContext {
            resource: "order",
            ..fx.ctx()
        };
        let view = [
            ("customer_id", Treatment::Pseudonym),
            ("total", Treatment::Clear),
            ("status", Treatment::Pseudonym),
        ];
        let out = sanitize_record(&ctx, &view, &record(&order), dek).unwrap();
        // The order's customer pseudonym is the customer's token.
        assert_eq!(
            out.fields["customer_id"],
            Value::String(fx.pz.token(&fx.purpose, "C-42"))
        );
        assert_eq!(out.fields["total"], Value::from(19.99));
        assert_eq!(
            out.fields["status"],
            Value::String(fx.pz.pseudonymize_value(&fx.purpose, "status", "paid"))
        );
        let anonymous = RecordInput {
            customer_key: None,
            ..record(&order)
        };
        let err = sanitize_record(&ctx, &view, &anonymous, dek).unwrap_err();
        assert!(matches!(err, SanitizeError::MissingSubject { .. }));
    }

    #[test]
    fn debug_of_stored_values_hides_them() {
        let f = StoredField::new("email", StoredValue::Plain("jane@example.com".into()));
        assert!(!format!("{f:?}").contains("jane"));
    }
}
