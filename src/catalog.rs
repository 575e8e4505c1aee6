//! The field catalog (`policies/fields.toml`): for every field of every
//! resource, its data class, how it is stored, and how it looks when masked.
//!
//! Loaded once at startup and validated strictly: unknown keys, classes,
//! storages or masks are refused with an error naming the resource and field,
//! and a direct identifier (or sensitive field) stored in plain text is a
//! configuration error, not a warning.

use crate::crypto::blind_index::BlindField;
use crate::crypto::mask::MaskFormat;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// GDPR-oriented class of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldClass {
    /// Identifies a person on its own (email, phone, name).
    DirectIdentifier,
    /// Identifies in combination (birth date, postcode, city).
    QuasiIdentifier,
    /// Special-category data (GDPR Art. 9).
    Sensitive,
    /// What a person did (orders, events, timestamps).
    Behavioural,
    /// Not about a person.
    NonPersonal,
}

impl FieldClass {
    fn parse(s: &str) -> Option<FieldClass> {
        Some(match s {
            "direct_identifier" => FieldClass::DirectIdentifier,
            "quasi_identifier" => FieldClass::QuasiIdentifier,
            "sensitive" => FieldClass::Sensitive,
            "behavioural" => FieldClass::Behavioural,
            "non_personal" => FieldClass::NonPersonal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldClass::DirectIdentifier => "direct_identifier",
            FieldClass::QuasiIdentifier => "quasi_identifier",
            FieldClass::Sensitive => "sensitive",
            FieldClass::Behavioural => "behavioural",
            FieldClass::NonPersonal => "non_personal",
        }
    }

    /// Whether the field is personal data at all.
    pub fn is_personal(self) -> bool {
        self != FieldClass::NonPersonal
    }
}

/// How a field is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Storage {
    /// AES-256-GCM under the customer's DEK (`<name>_ct` BLOB column).
    Encrypted,
    Plain,
}

/// One validated catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub class: FieldClass,
    pub storage: Storage,
    pub mask: MaskFormat,
    /// The field identifying the data subject; its pseudonym is the
    /// customer's purpose-scoped token.
    pub subject_key: bool,
    /// Set for fields with a blind-index column.
    pub blind_index: Option<BlindField>,
}

#[derive(Clone, Debug)]
struct Resource {
    name: String,
    fields: Vec<FieldSpec>,
}

/// The loaded, validated catalog.
#[derive(Clone, Debug)]
pub struct FieldCatalog {
    resources: Vec<Resource>,
}

/// Why the catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("field catalog {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("field catalog: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("field catalog: {resource}.{field}: {reason}")]
    Invalid {
        resource: String,
        field: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    resource: Vec<RawResource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    // Strings, parsed in `validate`, so errors can name the field.
    class: String,
    storage: String,
    mask: Option<String>,
    #[serde(default)]
    subject_key: bool,
    #[serde(default)]
    blind_index: bool,
}

impl FieldCatalog {
    pub fn load(path: &Path) -> Result<FieldCatalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    pub fn from_toml_str(text: &str) -> Result<FieldCatalog, CatalogError> {
        let raw: RawCatalog = toml::from_str(text)?;
        let mut seen_resources = HashSet::new();
        let mut resources = Vec::with_capacity(raw.resource.len());
        for r in raw.resource {
            let invalid = |field: &str, reason: String| CatalogError::Invalid {
                resource: r.name.clone(),
                field: field.to_owned(),
                reason,
            };
            if r.name.is_empty() || !seen_resources.insert(r.name.clone()) {
                return Err(invalid("*", "empty or duplicate resource name".into()));
            }
            let mut seen_fields = HashSet::new();
            let mut fields = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                if f.name.is_empty() || !seen_fields.insert(f.name.as_str()) {
                    return Err(invalid(&f.name, "empty or duplicate field name".into()));
                }
                let class = FieldClass::parse(&f.class)
                    .ok_or_else(|| invalid(&f.name, format!("unknown class {:?}", f.class)))?;
                let storage = match f.storage.as_str() {
                    "encrypted" => Storage::Encrypted,
                    "plain" => Storage::Plain,
                    other => return Err(invalid(&f.name, format!("unknown storage {other:?}"))),
                };
                let mask = match &f.mask {
                    // Fail closed: an unconfigured mask hides everything.
                    None => MaskFormat::Redact,
                    Some(m) => m.parse().map_err(|e| invalid(&f.name, format!("{e}")))?,
                };
                if matches!(class, FieldClass::DirectIdentifier | FieldClass::Sensitive)
                    && storage != Storage::Encrypted
                {
                    return Err(invalid(
                        &f.name,
                        format!("{} fields must be stored encrypted", class.as_str()),
                    ));
                }
                let blind_index = if f.blind_index {
                    let field = BlindField::from_name(&f.name).ok_or_else(|| {
                        invalid(
                            &f.name,
                            "blind_index is supported for email and phone only".into(),
                        )
                    })?;
                    if storage != Storage::Encrypted {
                        return Err(invalid(
                            &f.name,
                            "blind_index only makes sense on an encrypted field".into(),
                        ));
                    }
                    Some(field)
                } else {
                    None
                };
                fields.push(FieldSpec {
                    name: f.name.clone(),
                    class,
                    storage,
                    mask,
                    subject_key: f.subject_key,
                    blind_index,
                });
            }
            if fields.iter().filter(|f| f.subject_key).count() > 1 {
                return Err(invalid("*", "more than one subject_key field".into()));
            }
            resources.push(Resource {
                name: r.name,
                fields,
            });
        }
        Ok(FieldCatalog { resources })
    }

    /// The fields of `resource` in catalog order (empty if unknown).
    pub fn fields(&self, resource: &str) -> &[FieldSpec] {
        self.resources
            .iter()
            .find(|r| r.name == resource)
            .map_or(&[], |r| r.fields.as_slice())
    }

    /// One field's spec.
    pub fn field(&self, resource: &str, field: &str) -> Option<&FieldSpec> {
        self.fields(resource).iter().find(|f| f.name == field)
    }

    /// Resource names in catalog order.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fields.toml"));

    fn one(field: &str) -> Result<FieldCatalog, CatalogError> {
        FieldCatalog::from_toml_str(&format!(
            "[[resource]]\nname = \"customer\"\nfields = [ {field} ]\n"
        ))
    }

    fn err(field: &str) -> String {
        one(field).unwrap_err().to_string()
    }

    #[test]
    fn shipped_catalog_loads() {
        let cat = FieldCatalog::from_toml_str(SHIPPED).unwrap();
        let names: Vec<&str> = cat
            .fields("customer")
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "external_id",
                "email",
                "phone",
                "name",
                "birth_date",
                "postcode",
                "city",
                "country",
                "signup_at"
            ]
        );
        let email = cat.field("customer", "email").unwrap();
        assert_eq!(email.class, FieldClass::DirectIdentifier);
        assert_eq!(email.storage, Storage::Encrypted);
        assert_eq!(email.mask, MaskFormat::Email);
        assert_eq!(email.blind_index, Some(BlindField::Email));
        assert_eq!(
            cat.field("customer", "postcode").unwrap().mask,
            MaskFormat::Truncate(4)
        );
        assert!(cat.field("customer", "external_id").unwrap().subject_key);
        // The encrypted columns the schema has are exactly the encrypted fields.
        let enc: Vec<&str> = cat
            .fields("customer")
            .iter()
            .filter(|f| f.storage == Storage::Encrypted)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(enc, ["email", "phone", "name", "birth_date", "postcode"]);
        assert!(cat.resources().any(|r| r == "event"));
        assert!(cat.fields("nope").is_empty());
        assert!(cat.field("customer", "nope").is_none());
    }

    #[test]
    fn shipped_catalog_file_loads_from_disk() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/fields.toml");
        assert!(FieldCatalog::load(&path).is_ok());
        assert!(matches!(
            FieldCatalog::load(Path::new("/nonexistent/fields.toml")),
            Err(CatalogError::Io { .. })
        ));
    }

    #[test]
    fn direct_identifier_must_be_encrypted() {
        let e = err(r#"{ name = "email", class = "direct_identifier", storage = "plain" }"#);
        assert!(e.contains("customer.email"), "{e}");
        assert!(e.contains("must be stored encrypted"), "{e}");
        let e = err(r#"{ name = "health", class = "sensitive", storage = "plain" }"#);
        assert!(e.contains("customer.health"), "{e}");
    }

    #[test]
    fn unknown_values_name_the_field() {
        let e = err(
            r#"{ name = "email", class = "direct_identifier", storage = "encrypted", mask = "hash" }"#,
        );
        assert!(
            e.contains("customer.email") && e.contains("unknown mask \"hash\""),
            "{e}"
        );
        let e = err(r#"{ name = "x", class = "secret", storage = "plain" }"#);
        assert!(
            e.contains("customer.x") && e.contains("unknown class"),
            "{e}"
        );
        let e = err(r#"{ name = "x", class = "non_personal", storage = "vault" }"#);
        assert!(
            e.contains("customer.x") && e.contains("unknown storage"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_refused() {
        assert!(matches!(
            one(r#"{ name = "x", class = "non_personal", storage = "plain", colour = "red" }"#),
            Err(CatalogError::Parse(_))
        ));
        assert!(matches!(
            FieldCatalog::from_toml_str("resources = []"),
            Err(CatalogError::Parse(_))
        ));
    }

    #[test]
    fn structural_rules() {
        let dup = r#"{ name = "x", class = "non_personal", storage = "plain" },
                     { name = "x", class = "non_personal", storage = "plain" }"#;
        assert!(err(dup).contains("duplicate"));
        let e = err(
            r#"{ name = "name", class = "direct_identifier", storage = "encrypted", blind_index = true }"#,
        );
        assert!(e.contains("email and phone only"), "{e}");
        let e = err(
            r#"{ name = "email", class = "quasi_identifier", storage = "plain", blind_index = true }"#,
        );
        assert!(e.contains("encrypted"), "{e}");
        let two = r#"{ name = "a", class = "quasi_identifier", storage = "plain", subject_key = true },
                     { name = "b", class = "quasi_identifier", storage = "plain", subject_key = true }"#;
        assert!(err(two).contains("subject_key"));
        // Mask defaults to redact.
        let cat = one(r#"{ name = "x", class = "behavioural", storage = "plain" }"#).unwrap();
        assert_eq!(cat.field("customer", "x").unwrap().mask, MaskFormat::Redact);
    }
}
