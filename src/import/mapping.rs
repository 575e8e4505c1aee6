//! Mapping files: how one source's columns become the standard schema.
//!
//! A mapping is a small TOML file (see `mappings/` and the README section
//! "Bringing in a new source"): the source's name, the entity it feeds
//! (`customers` or `orders`), the file format (`csv` or `ndjson`), number
//! and time conventions, and for each standard field the source column it
//! comes from, its format and its default. Standard fields have fixed types;
//! the mapping never declares a type the store does not have.
//!
//! A mapping is checked whole when it is loaded (unknown keys, unknown
//! fields, a required field without a column or default, a bad date
//! format) and against the file's header before the first row is read (a
//! column that is not there), so a wrong mapping stops the run with one
//! line before anything is written.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::standardize::TimeFormat;

/// The entity a mapped source feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Customers,
    Orders,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Orders => "orders",
        }
    }

    /// The standard fields of the entity: (name, required, kind).
    pub fn fields(self) -> &'static [(&'static str, bool, FieldKind)] {
        use FieldKind::*;
        match self {
            Self::Customers => &[
                ("external_id", true, Key),
                ("email", false, Email),
                ("phone", false, Phone),
                ("name", false, Text),
                ("birth_date", false, Date),
                ("postcode", false, Text),
                ("city", false, Text),
                ("country", false, Country),
                ("signup_at", true, Timestamp),
            ],
            Self::Orders => &[
                ("order_id", true, Key),
                ("customer_id", false, Key),
                ("placed_at", true, Timestamp),
                ("currency", true, Currency),
                ("country", false, Country),
                ("sku", true, Key),
                ("product_name", false, Text),
                ("category", false, Text),
                ("quantity", true, Integer),
                // One of the two: the price of one unit, or the line's total
                // (the unit price is then total / quantity, to the cent).
                ("unit_price", false, Amount),
                ("line_total", false, Amount),
            ],
        }
    }
}

/// The type of a standard field, which fixes how its value is parsed and
/// standardized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// An identifier: 1-64 of `A-Za-z0-9._-` after trimming.
    Key,
    Email,
    Phone,
    Text,
    /// A calendar date, stored `YYYY-MM-DD`.
    Date,
    Country,
    Timestamp,
    Currency,
    Integer,
    Amount,
}

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// One standard field's source: a column name, or a table with options.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Column(String),
    Full(FieldOptions),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOptions {
    /// The source column (CSV header name or NDJSON key).
    pub column: Option<String>,
    /// The value when the column is absent or empty.
    pub default: Option<String>,
    /// Dates and timestamps: `rfc3339`, `date`, or a `time` format
    /// description such as `[day]/[month]/[year] [hour]:[minute]`.
    pub format: Option<String>,
}

/// A consent column: the person's answer for one purpose.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSpec {
    pub purpose: String,
    pub column: String,
    /// Values meaning "granted" (compared trimmed, case-insensitively).
    #[serde(default = "default_granted")]
    pub granted_values: Vec<String>,
    /// Values meaning "withdrawn"; any other non-empty value quarantines the row.
    #[serde(default = "default_withdrawn")]
    pub withdrawn_values: Vec<String>,
    /// What the person saw (notice and version): the ledger's evidence.
    pub evidence: String,
    /// Column with the time of the answer; the row's `signup_at` otherwise.
    pub at_column: Option<String>,
}

fn default_granted() -> Vec<String> {
    ["yes", "y", "true", "1", "granted", "opt-in", "ja", "oui"]
        .map(str::to_owned)
        .to_vec()
}

fn default_withdrawn() -> Vec<String> {
    [
        "no",
        "n",
        "false",
        "0",
        "withdrawn",
        "opt-out",
        "nein",
        "non",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// How duplicates across sources are recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    Email,
    Phone,
}

/// A mapping file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The source's name (`[a-z0-9_]{1,32}`): orders' `source`, reports.
    pub source: String,
    pub entity: Entity,
    pub format: Format,
    /// CSV field delimiter (one ASCII character).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Decimal separator of amounts: `.` or `,`.
    #[serde(default = "default_decimal")]
    pub decimal: String,
    /// Offset of local times without an offset, in minutes east of UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Prefix of this source's customer ids in the store, so two systems'
    /// `42` stay two people unless the match rule links them.
    #[serde(default)]
    pub id_prefix: String,
    /// Duplicate rule for customers, in order (default: e-mail, then phone).
    #[serde(default = "default_match")]
    pub match_on: Vec<MatchRule>,
    pub fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub consent: Vec<ConsentSpec>,
}

fn default_delimiter() -> String {
    ",".to_owned()
}
fn default_decimal() -> String {
    ".".to_owned()
}
fn default_match() -> Vec<MatchRule> {
    vec![MatchRule::Email, MatchRule::Phone]
}

/// The pseudo-column holding the row's line number in the file, for
/// sources without an id of their own (stable as long as the file is).
pub const LINE_COLUMN: &str = "@line";

/// A resolved field: where its value comes from and how to read it.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    pub column: Option<String>,
    pub default: Option<String>,
    pub time_format: Option<TimeFormat>,
}

/// A checked mapping.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub source: String,
    pub entity: Entity,
    pub format: Format,
    pub delimiter: u8,
    pub decimal: char,
    pub utc_offset_minutes: i32,
    pub id_prefix: String,
    pub match_on: Vec<MatchRule>,
    pub fields: Vec<Field>,
    pub consent: Vec<ConsentSpec>,
    /// SHA-256 of the file's text (recorded with each run).
    pub sha256: String,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read mapping {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("mapping {}: {e}", path.display()))
    }

    /// Parses and checks a mapping's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: MappingFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let valid_source = !file.source.is_empty()
            && file.source.len() <= 32
            && file
                .source
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_source {
            anyhow::bail!("source: must be 1-32 characters of a-z0-9_");
        }
        if !file.id_prefix.is_empty() && super::validate_key(&file.id_prefix).is_none() {
            anyhow::bail!("id_prefix: must be characters of A-Za-z0-9._-");
        }
        let delimiter = match file.delimiter.as_bytes() {
            [b] if b.is_ascii() && *b != b'"' => *b,
            _ => anyhow::bail!("delimiter: one ASCII character"),
        };
        let decimal = match file.decimal.as_str() {
            "." => '.',
            "," => ',',
            _ => anyhow::bail!("decimal: \".\" or \",\""),
        };
        if !(-14 * 60..=14 * 60).contains(&file.utc_offset_minutes) {
            anyhow::bail!("utc_offset_minutes: between -840 and 840");
        }
        let standard = file.entity.fields();
        for name in file.fields.keys() {
            if !standard.iter().any(|(n, _, _)| n == name) {
                let names: Vec<&str> = standard.iter().map(|(n, _, _)| *n).collect();
                anyhow::bail!(
                    "fields.{name}: not a field of {} (fields: {})",
                    file.entity.as_str(),
                    names.join(", ")
                );
            }
        }
        let mut fields = Vec::with_capacity(standard.len());
        for (name, required, kind) in standard {
            let spec = match file.fields.get(*name) {
                Some(FieldSpec::Column(c)) => FieldOptions {
                    column: Some(c.clone()),
                    ..FieldOptions::default()
                },
                Some(FieldSpec::Full(o)) => o.clone(),
                None => FieldOptions::default(),
            };
            if *required && spec.column.is_none() && spec.default.is_none() {
                anyhow::bail!("fields.{name}: required, needs a column or a default");
            }
            let time_format = match kind {
                FieldKind::Timestamp | FieldKind::Date => {
                    let default = if *kind == FieldKind::Date {
                        "date"
                    } else {
                        "rfc3339"
                    };
                    let spec = spec.format.as_deref().unwrap_or(default);
                    Some(
                        TimeFormat::parse(spec)
                            .map_err(|e| anyhow::anyhow!("fields.{name}.format: {e}"))?,
                    )
                }
                _ => {
                    if spec.format.is_some() {
                        anyhow::bail!("fields.{name}.format: only dates and timestamps have one");
                    }
                    None
                }
            };
            fields.push(Field {
                name,
                kind: *kind,
                required: *required,
                column: spec.column,
                default: spec.default,
                time_format,
            });
        }
        let given = |n: &str| {
            fields
                .iter()
                .any(|f: &Field| f.name == n && (f.column.is_some() || f.default.is_some()))
        };
        if file.entity == Entity::Orders && given("unit_price") == given("line_total") {
            anyhow::bail!(
                "fields: an orders mapping needs exactly one of unit_price and line_total"
            );
        }
        if file.entity != Entity::Customers && !file.consent.is_empty() {
            anyhow::bail!("consent: only customer sources carry consent");
        }
        for c in &file.consent {
            if c.evidence.trim().is_empty() {
                anyhow::bail!(
                    "consent.{}: evidence must say what the person saw",
                    c.purpose
                );
            }
        }
        use ring::digest;
        let sha256 = hex::encode(digest::digest(&digest::SHA256, text.as_bytes()));
        Ok(Self {
            source: file.source,
            entity: file.entity,
            format: file.format,
            delimiter,
            decimal,
            utc_offset_minutes: file.utc_offset_minutes,
            id_prefix: file.id_prefix,
            match_on: file.match_on,
            fields,
            consent: file.consent,
            sha256,
        })
    }

    /// Every column the mapping reads.
    pub fn columns(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .fields
            .iter()
            .filter_map(|f| {
                f.column
                    .as_deref()
                    .map(|c| (format!("fields.{}", f.name), c))
            })
            .collect();
        for c in &self.consent {
            out.push((format!("consent.{}.column", c.purpose), c.column.as_str()));
            if let Some(at) = &c.at_column {
                out.push((format!("consent.{}.at_column", c.purpose), at.as_str()));
            }
        }
        out
    }

    /// Checks a CSV header: every mapped column must be in it.
    pub fn check_header(&self, header: &[String]) -> anyhow::Result<()> {
        for (key, column) in self.columns() {
            if !header.iter().any(|h| h == column) {
                anyhow::bail!(
                    "line 1: the mapping's {key} names column \"{column}\", which the header \
                     does not have (columns: {})",
                    header.join(", ")
                );
            }
        }
        Ok(())
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMERS: &str = r#"
source = "crm"
entity = "customers"
format = "csv"
id_prefix = "crm-"
[fields]
external_id = "id"
email = "mail"
country = { column = "land", default = "DE" }
signup_at = { column = "created", format = "[day].[month].[year]" }
[[consent]]
purpose = "email_marketing"
column = "newsletter"
evidence = "signup form v3"
"#;

    #[test]
    fn a_mapping_is_checked_whole() {
        let m = Mapping::parse(CUSTOMERS).unwrap();
        assert_eq!(m.field("country").unwrap().default.as_deref(), Some("DE"));
        assert_eq!(m.sha256.len(), 64);
        let header: Vec<String> = ["id", "mail", "land", "created", "newsletter"]
            .map(str::to_owned)
            .to_vec();
        m.check_header(&header).unwrap();
        let err = m.check_header(header.get(..4).unwrap()).unwrap_err();
        assert!(err.to_string().contains("\"newsletter\""), "{err}");

        for (bad, says) in [
            (
                CUSTOMERS.replace("mail\"", "mail\"\nshoe_size = \"s\""),
                "shoe_size",
            ),
            (CUSTOMERS.replace("external_id = \"id\"", ""), "external_id"),
            (
                CUSTOMERS.replace("[day].[month].[year]", "[nonsense"),
                "format",
            ),
            (
                CUSTOMERS.replace("source = \"crm\"", "source = \"C R M\""),
                "source",
            ),
            (
                CUSTOMERS.replace("format = \"csv\"", "format = \"xml\""),
                "xml",
            ),
            (CUSTOMERS.replace("id_prefix", "id_prefx"), "id_prefx"),
        ] {
            let err = Mapping::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
