//! The purpose stage: the catalog of processing purposes
//! (`policies/purposes.toml`) and the parsing of the `X-Purpose` header into a
//! [`PurposeId`] that is known to exist.
//!
//! The catalog is validated whole when loaded; a catalog that breaks a rule is
//! refused rather than partly used, because every later stage (policy,
//! consent, pseudonym keys) trusts that a `PurposeId` names a real purpose.

use crate::domain::PurposeId;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Longest purpose id we accept (also bounds the work done on a hostile header).
const MAX_ID_LEN: usize = 64;

/// Longest retention we accept: ten years, the longest statutory retention
/// (commercial/tax records) the shop is subject to.
const MAX_RETENTION_DAYS: u32 = 3650;

/// The GDPR Art. 6(1) basis a purpose rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegitimateInterest,
    LegalObligation,
}

impl LegalBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegitimateInterest => "legitimate_interest",
            LegalBasis::LegalObligation => "legal_obligation",
        }
    }
}

/// One processing purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    pub id: PurposeId,
    pub description: String,
    pub legal_basis: LegalBasis,
    /// True if and only if `legal_basis` is `consent`: then the consent stage
    /// must find a current grant for every customer touched.
    pub consent_required: bool,
    pub retention_days: u32,
}

/// Why a catalog was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read purpose catalog {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("purpose catalog is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("purpose catalog is empty")]
    Empty,
    #[error("purpose id {0:?} must match [a-z0-9_]{{1,64}}")]
    BadId(String),
    #[error("purpose id {0:?} is defined twice")]
    Duplicate(String),
    #[error("purpose {id:?}: consent_required must be {expected} for legal basis {basis}")]
    ConsentMismatch {
        id: String,
        basis: &'static str,
        expected: bool,
    },
    #[error("purpose {0:?}: retention_days must be between 1 and 3650")]
    BadRetention(String),
    #[error("purpose {0:?}: description must not be empty")]
    EmptyDescription(String),
}

/// Why an `X-Purpose` header value was rejected. Both are a client error
/// (HTTP 400). Neither carries the raw value, so it is never echoed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    #[error("the X-Purpose header is required")]
    Missing,
    #[error("the X-Purpose header does not name a known purpose")]
    Unknown,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    purpose: Vec<PurposeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeEntry {
    id: String,
    description: String,
    legal_basis: LegalBasis,
    consent_required: bool,
    retention_days: u32,
}

/// The validated, immutable purpose catalog.
#[derive(Clone, Debug)]
pub struct PurposeCatalog {
    purposes: Vec<Purpose>,
    index: HashMap<String, usize>,
}

impl PurposeCatalog {
    /// Loads and validates `policies/purposes.toml` (or another path).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CatalogError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates a catalog; unknown keys are refused.
    pub fn from_toml_str(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        if file.purpose.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut purposes = Vec::with_capacity(file.purpose.len());
        let mut index = HashMap::with_capacity(file.purpose.len());
        for entry in file.purpose {
            if !is_valid_id(&entry.id) {
                return Err(CatalogError::BadId(entry.id));
            }
            if index.contains_key(&entry.id) {
                return Err(CatalogError::Duplicate(entry.id));
            }
            // Consent is required exactly when consent is the legal basis: a
            // contract purpose that "requires consent" would become unlawful to
            // refuse, and a consent purpose that doesn't would process without
            // any basis at all.
            let expected = entry.legal_basis == LegalBasis::Consent;
            if entry.consent_required != expected {
                return Err(CatalogError::ConsentMismatch {
                    id: entry.id,
                    basis: entry.legal_basis.as_str(),
                    expected,
                });
            }
            if entry.retention_days == 0 || entry.retention_days > MAX_RETENTION_DAYS {
                return Err(CatalogError::BadRetention(entry.id));
            }
            if entry.description.trim().is_empty() {
                return Err(CatalogError::EmptyDescription(entry.id));
            }
            index.insert(entry.id.clone(), purposes.len());
            purposes.push(Purpose {
                id: PurposeId(entry.id),
                description: entry.description,
                legal_basis: entry.legal_basis,
                consent_required: entry.consent_required,
                retention_days: entry.retention_days,
            });
        }
        Ok(Self { purposes, index })
    }

    /// Parses an `X-Purpose` header value. Surrounding whitespace is ignored;
    /// matching is exact and case-sensitive (ids are lower case).
    pub fn parse(&self, header_value: &str) -> Result<PurposeId, PurposeError> {
        let value = header_value.trim();
        if value.is_empty() {
            return Err(PurposeError::Missing);
        }
        match self.index.get(value).and_then(|&i| self.purposes.get(i)) {
            Some(purpose) => Ok(purpose.id.clone()),
            None => Err(PurposeError::Unknown),
        }
    }

    /// The purpose for an id. `None` only for an id that did not come from
    /// this catalog (e.g. after a catalog reload removed it): callers treat
    /// that as an unknown purpose, never as permission.
    pub fn get(&self, id: &PurposeId) -> Option<&Purpose> {
        self.index
            .get(id.as_str())
            .and_then(|&i| self.purposes.get(i))
    }

    /// Whether `id` is in the catalog.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// All purposes, in file order.
    pub fn all(&self) -> &[Purpose] {
        &self.purposes
    }
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PurposeCatalog {
        PurposeCatalog::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/purposes.toml"
        ))
        .unwrap()
    }

    fn one(id: &str, basis: &str, consent: bool, days: u32) -> String {
        format!(
            "[[purpose]]\nid = \"{id}\"\ndescription = \"d\"\nlegal_basis = \"{basis}\"\n\
             consent_required = {consent}\nretention_days = {days}\n"
        )
    }

    #[test]
    fn shipped_catalog_has_required_purposes_with_right_basis() {
        let c = shipped();
        let expect = [
            ("order_fulfilment", LegalBasis::Contract),
            ("customer_support", LegalBasis::Contract),
            ("fraud_prevention", LegalBasis::LegitimateInterest),
            ("marketing_analytics", LegalBasis::Consent),
            ("personalization", LegalBasis::Consent),
            ("email_marketing", LegalBasis::Consent),
            ("third_party_sharing", LegalBasis::Consent),
            ("compliance_audit", LegalBasis::LegalObligation),
            ("data_ingestion", LegalBasis::Contract),
        ];
        for (id, basis) in expect {
            let p = c.get(&c.parse(id).unwrap()).unwrap();
            assert_eq!(p.legal_basis, basis, "{id}");
            assert_eq!(p.consent_required, basis == LegalBasis::Consent, "{id}");
        }
        assert_eq!(c.all().len(), expect.len());
    }

    #[test]
    fn parse_missing_and_unknown() {
        let c = shipped();
        assert_eq!(c.parse(""), Err(PurposeError::Missing));
        assert_eq!(c.parse("  \t"), Err(PurposeError::Missing));
        assert_eq!(c.parse("nope"), Err(PurposeError::Unknown));
        assert_eq!(c.parse("Email_Marketing"), Err(PurposeError::Unknown));
        assert_eq!(
            c.parse("email_marketing,personalization"),
            Err(PurposeError::Unknown)
        );
        assert_eq!(c.parse(&"a".repeat(10_000)), Err(PurposeError::Unknown));
        assert_eq!(
            c.parse(" email_marketing ").unwrap().as_str(),
            "email_marketing"
        );
        assert!(c.get(&PurposeId("forged".into())).is_none());
    }

    #[test]
    fn rejects_invalid_catalogs() {
        let ok = one("a_1", "contract", false, 10);
        assert!(PurposeCatalog::from_toml_str(&ok).is_ok());
        let cases = [
            (String::new(), "empty"),
            (one("Bad", "contract", false, 10), "charset"),
            (one("", "contract", false, 10), "empty id"),
            (one(&"a".repeat(65), "contract", false, 10), "too long"),
            (format!("{ok}{ok}"), "duplicate"),
            (
                one("a", "consent", false, 10),
                "consent without consent_required",
            ),
            (one("a", "contract", true, 10), "contract requiring consent"),
            (
                one("a", "legitimate_interest", true, 10),
                "LI requiring consent",
            ),
            (one("a", "contract", false, 0), "zero retention"),
            (one("a", "contract", false, 3651), "retention too long"),
            (one("a", "vibes", false, 1), "unknown basis"),
            (format!("{ok}extra = 1\n"), "unknown field"),
            (format!("foo = 1\n{ok}"), "unknown top-level key"),
            (
                ok.replace("description = \"d\"", "description = \" \""),
                "blank description",
            ),
            (ok.replace("retention_days = 10\n", ""), "missing field"),
        ];
        for (text, why) in cases {
            assert!(
                PurposeCatalog::from_toml_str(&text).is_err(),
                "accepted: {why}"
            );
        }
    }
}
