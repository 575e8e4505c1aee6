//! The segment definition language: a typed tree parsed from JSON with
//! serde, then validated without recursion.
//!
//! A definition is a node. Groups combine nodes: `{"all": [..]}`,
//! `{"any": [..]}`, `{"not": node}`. Every other node is one condition,
//! written as `{"<condition>": {<parameters>}}`; unknown conditions and
//! unknown parameters are refused (422 with the JSON path). Values never
//! become SQL text: the compiler binds every one of them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::scan::safe_key;

/// Deepest group nesting a definition may have.
pub const MAX_DEPTH: usize = 16;
/// Most nodes (groups and conditions) in a definition, saved segments it
/// refers to included.
pub const MAX_NODES: usize = 256;
/// Longest window a condition may look back, in days (ten years).
pub const MAX_WINDOW_DAYS: i64 = 3650;
const MAX_COUNT: i64 = 100_000;
/// Largest money amount, in currency units.
const MAX_AMOUNT: f64 = 1.0e9;

/// One node of a definition.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Every child holds.
    #[schema(no_recursion)]
    All(Vec<Node>),
    /// At least one child holds.
    #[schema(no_recursion)]
    Any(Vec<Node>),
    /// The child does not hold.
    #[schema(no_recursion)]
    Not(Box<Node>),
    /// Days since the last order.
    Recency(DaysRange),
    /// Number of orders, all time or within the last `within_days`.
    Frequency(CountWindow),
    /// Spend (net of returns, currency units), all time or in a window.
    Monetary(AmountWindow),
    /// Average order value (currency units), all time.
    AverageOrderValue(AmountRange),
    /// RFM scores, each 1-5 (quintiles; 5 is best).
    RfmScore(RfmScore),
    /// RFM cell (see `GET /v1/segments/builtin/rfm`).
    RfmCell(CellIn),
    /// Bought a product or a category at least `min_count` times (orders).
    Bought(Activity),
    /// Viewed a product or a category at least `min_count` times.
    Viewed(Activity),
    /// Browsing events of one kind in a window.
    Events(EventCount),
    /// Country (matched literally).
    Country(TextIn),
    /// Days since signup.
    SignupAge(DaysRange),
    /// Member of another saved segment (which must exist).
    InSegment(SegmentRef),
    /// In one cluster of the customer profiles (`GET /v1/profiles/clusters?k=`).
    ProfileCluster(ClusterRef),
    /// Currently consents to another purpose.
    Consent(ConsentRef),
}

/// At least one bound; `min` not above `max`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaysRange {
    #[schema(minimum = 0, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub min_days: Option<i64>,
    #[schema(minimum = 0, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub max_days: Option<i64>,
}

/// At least one bound; `min` not above `max`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CountWindow {
    #[schema(minimum = 0, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub min: Option<i64>,
    #[schema(minimum = 0, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub max: Option<i64>,
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub within_days: Option<i64>,
}

/// At least one bound; `min` not above `max`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmountWindow {
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub min: Option<f64>,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub max: Option<f64>,
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub within_days: Option<i64>,
}

/// At least one bound; `min` not above `max`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmountRange {
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub min: Option<f64>,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub max: Option<f64>,
}

/// At least one bound; `min` not above `max`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreRange {
    #[schema(minimum = 1, maximum = 5)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub min: Option<i64>,
    #[schema(minimum = 1, maximum = 5)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub max: Option<i64>,
}

/// At least one of `r`, `f`, `m`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RfmScore {
    pub r: Option<ScoreRange>,
    pub f: Option<ScoreRange>,
    pub m: Option<ScoreRange>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CellIn {
    #[serde(rename = "in")]
    #[schema(min_items = 1, max_items = 11)]
    pub cells: Vec<RfmCell>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextIn {
    /// 1-50 values of 1-64 characters, no control characters.
    #[serde(rename = "in")]
    #[schema(min_items = 1, max_items = 50)]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// A product's SKU (exactly one of `product` and `category`).
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", max_length = 64)]
    pub product: Option<String>,
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", max_length = 100)]
    pub category: Option<String>,
    /// Default 1.
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub min_count: Option<i64>,
    /// Default: all time.
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub within_days: Option<i64>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    View,
    Search,
    AddToCart,
    Purchase,
    Click,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Search => "search",
            Self::AddToCart => "add_to_cart",
            Self::Purchase => "purchase",
            Self::Click => "click",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventCount {
    pub kind: EventKind,
    /// Default 1.
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub min_count: Option<i64>,
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "crate::whole::opt_whole")]
    pub max_count: Option<i64>,
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(deserialize_with = "crate::whole::whole")]
    pub within_days: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SegmentRef {
    #[schema(pattern = "^seg_[0-9a-f]{32}$")]
    pub id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterRef {
    #[schema(minimum = 2, maximum = 10)]
    #[serde(deserialize_with = "crate::whole::whole")]
    pub k: i64,
    /// 0 to `k` - 1.
    #[schema(minimum = 0, maximum = 9)]
    #[serde(deserialize_with = "crate::whole::whole")]
    pub cluster: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsentRef {
    pub purpose: String,
}

/// The standard RFM cells, by (R, FM) score: see [`RfmCell::of`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RfmCell {
    Champions,
    Loyal,
    PotentialLoyalists,
    New,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CannotLose,
    Hibernating,
    Lost,
}

impl RfmCell {
    pub const ALL: [RfmCell; 11] = [
        Self::Champions,
        Self::Loyal,
        Self::PotentialLoyalists,
        Self::New,
        Self::Promising,
        Self::NeedAttention,
        Self::AboutToSleep,
        Self::AtRisk,
        Self::CannotLose,
        Self::Hibernating,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Champions => "champions",
            Self::Loyal => "loyal",
            Self::PotentialLoyalists => "potential_loyalists",
            Self::New => "new",
            Self::Promising => "promising",
            Self::NeedAttention => "need_attention",
            Self::AboutToSleep => "about_to_sleep",
            Self::AtRisk => "at_risk",
            Self::CannotLose => "cannot_lose",
            Self::Hibernating => "hibernating",
            Self::Lost => "lost",
        }
    }

    /// The cell of a recency score `r` and a frequency-monetary score `fm =
    /// ⌊(f + m) / 2⌋`, all 1-5. Every (r, fm) pair has exactly one cell:
    ///
    /// | r \ fm | 1 | 2 | 3 | 4 | 5 |
    /// |---|---|---|---|---|---|
    /// | 5 | new | potential | potential | champions | champions |
    /// | 4 | promising | potential | potential | champions | champions |
    /// | 3 | about to sleep | about to sleep | need attention | loyal | loyal |
    /// | 2 | hibernating | hibernating | at risk | at risk | at risk |
    /// | 1 | lost | lost | lost | cannot lose | cannot lose |
    pub fn of(r: i64, fm: i64) -> Self {
        match (r.clamp(1, 5), fm.clamp(1, 5)) {
            (4..=5, 4..=5) => Self::Champions,
            (5, 1) => Self::New,
            (4, 1) => Self::Promising,
            (4..=5, _) => Self::PotentialLoyalists,
            (3, 4..=5) => Self::Loyal,
            (3, 3) => Self::NeedAttention,
            (3, _) => Self::AboutToSleep,
            (2, 3..=5) => Self::AtRisk,
            (2, _) => Self::Hibernating,
            (_, 4..=5) => Self::CannotLose,
            _ => Self::Lost,
        }
    }
}

/// A definition error: where (JSON path) and what, never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinitionError {
    pub path: String,
    pub message: String,
}

impl DefinitionError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Parses a request body (after [`super::scan::scan`]) into `T`, naming the
/// JSON path of the first error. serde's own message is reduced to its kind,
/// because it may quote the offending input.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    super::scan::scan(bytes)
        .map_err(|e| ParseError::Invalid(DefinitionError::new(e.path, e.message)))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ParseError::Syntax;
        }
        let path = render_path(e.path());
        ParseError::Invalid(DefinitionError::new(path, describe(&inner.to_string())))
    })?;
    de.end().map_err(|_| ParseError::Syntax)?;
    Ok(value)
}

#[derive(Debug)]
pub enum ParseError {
    Syntax,
    Invalid(DefinitionError),
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("$");
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('.');
                out.push_str(safe_key(key));
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// serde's message, reduced to what kind of error it is. Only names from
/// our own vocabulary (in backticks after "missing field") are kept.
fn describe(message: &str) -> String {
    if message.starts_with("unknown field") {
        "unknown field".into()
    } else if message.starts_with("unknown variant") {
        "unknown condition or value (not in the allowed list)".into()
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        format!("missing field {}", safe_key(name))
    } else if message.starts_with("invalid type") {
        "wrong type".into()
    } else if message.starts_with("invalid length") || message.starts_with("invalid value") {
        "invalid value".into()
    } else {
        "invalid".into()
    }
}

/// Checks one definition: limits (depth, nodes), non-empty groups, ranges.
/// Iterative: the tree's depth was bounded by the scanner, but no step here
/// relies on it. `is_purpose` says whether a purpose id exists.
pub fn validate(
    root: &Node,
    base_path: &str,
    is_purpose: &dyn Fn(&str) -> bool,
) -> Result<Stats, DefinitionError> {
    let mut stats = Stats::default();
    let mut stack: Vec<(&Node, String, usize)> = vec![(root, base_path.to_owned(), 1)];
    while let Some((node, path, depth)) = stack.pop() {
        stats.nodes += 1;
        stats.depth = stats.depth.max(depth);
        if depth > MAX_DEPTH {
            return Err(DefinitionError::new(path, "depth over 16"));
        }
        if stats.nodes > MAX_NODES {
            return Err(DefinitionError::new(path, "more than 256 nodes"));
        }
        match node {
            Node::All(children) | Node::Any(children) => {
                let key = if matches!(node, Node::All(_)) {
                    "all"
                } else {
                    "any"
                };
                if children.is_empty() {
                    return Err(DefinitionError::new(format!("{path}.{key}"), "empty group"));
                }
                // Reverse, so errors are reported in document order.
                for (i, child) in children.iter().enumerate().rev() {
                    stack.push((child, format!("{path}.{key}[{i}]"), depth + 1));
                }
            }
            Node::Not(child) => stack.push((child, format!("{path}.not"), depth + 1)),
            leaf => {
                check_leaf(leaf, &path, is_purpose)?;
                if let Node::InSegment(r) = leaf {
                    stats.segments.push(r.id.clone());
                }
                if let Node::ProfileCluster(c) = leaf {
                    if !stats.cluster_ks.contains(&c.k) {
                        stats.cluster_ks.push(c.k);
                    }
                }
            }
        }
    }
    Ok(stats)
}

/// What validation learned about a definition.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub nodes: usize,
    pub depth: usize,
    /// Saved segments it refers to (ids, not yet resolved).
    pub segments: Vec<String>,
    /// `k` of every profile-cluster condition.
    pub cluster_ks: Vec<i64>,
}

fn range_i(
    path: &str,
    field: &str,
    v: Option<i64>,
    lo: i64,
    hi: i64,
) -> Result<(), DefinitionError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(DefinitionError::new(
            format!("{path}.{field}"),
            format!("out of range ({lo} to {hi})"),
        )),
        _ => Ok(()),
    }
}

fn min_le_max<T: PartialOrd>(
    path: &str,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), DefinitionError> {
    match (min, max) {
        (Some(a), Some(b)) if a > b => Err(DefinitionError::new(
            format!("{path}.min"),
            "min is greater than max",
        )),
        (None, None) => Err(DefinitionError::new(
            path.to_owned(),
            "give at least one bound",
        )),
        _ => Ok(()),
    }
}

fn amount(path: &str, field: &str, v: Option<f64>) -> Result<(), DefinitionError> {
    match v {
        Some(x) if !x.is_finite() || !(0.0..=MAX_AMOUNT).contains(&x) => Err(DefinitionError::new(
            format!("{path}.{field}"),
            "out of range (0 to 1e9)",
        )),
        _ => Ok(()),
    }
}

fn text(path: &str, v: &str, max: usize) -> Result<(), DefinitionError> {
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(DefinitionError::new(
            path.to_owned(),
            format!("must be 1-{max} printable characters"),
        ));
    }
    Ok(())
}

fn check_leaf(
    node: &Node,
    path: &str,
    is_purpose: &dyn Fn(&str) -> bool,
) -> Result<(), DefinitionError> {
    match node {
        Node::Recency(d) | Node::SignupAge(d) => {
            let key = if matches!(node, Node::Recency(_)) {
                "recency"
            } else {
                "signup_age"
            };
            let p = format!("{path}.{key}");
            range_i(&p, "min_days", d.min_days, 0, MAX_WINDOW_DAYS)?;
            range_i(&p, "max_days", d.max_days, 0, MAX_WINDOW_DAYS)?;
            min_le_max(&p, d.min_days, d.max_days)
        }
        Node::Frequency(c) => {
            let p = format!("{path}.frequency");
            range_i(&p, "min", c.min, 0, MAX_COUNT)?;
            range_i(&p, "max", c.max, 0, MAX_COUNT)?;
            range_i(&p, "within_days", c.within_days, 1, MAX_WINDOW_DAYS)?;
            min_le_max(&p, c.min, c.max)
        }
        Node::Monetary(a) => {
            let p = format!("{path}.monetary");
            amount(&p, "min", a.min)?;
            amount(&p, "max", a.max)?;
            range_i(&p, "within_days", a.within_days, 1, MAX_WINDOW_DAYS)?;
            min_le_max(&p, a.min, a.max)
        }
        Node::AverageOrderValue(a) => {
            let p = format!("{path}.average_order_value");
            amount(&p, "min", a.min)?;
            amount(&p, "max", a.max)?;
            min_le_max(&p, a.min, a.max)
        }
        Node::RfmScore(s) => {
            let p = format!("{path}.rfm_score");
            if s.r.is_none() && s.f.is_none() && s.m.is_none() {
                return Err(DefinitionError::new(p, "give at least one of r, f, m"));
            }
            for (name, range) in [("r", &s.r), ("f", &s.f), ("m", &s.m)] {
                if let Some(r) = range {
                    let q = format!("{p}.{name}");
                    range_i(&q, "min", r.min, 1, 5)?;
                    range_i(&q, "max", r.max, 1, 5)?;
                    min_le_max(&q, r.min, r.max)?;
                }
            }
            Ok(())
        }
        Node::RfmCell(c) => {
            if c.cells.is_empty() || c.cells.len() > RfmCell::ALL.len() {
                return Err(DefinitionError::new(
                    format!("{path}.rfm_cell.in"),
                    "give 1 to 11 cells",
                ));
            }
            Ok(())
        }
        Node::Bought(a) | Node::Viewed(a) => {
            let key = if matches!(node, Node::Bought(_)) {
                "bought"
            } else {
                "viewed"
            };
            let p = format!("{path}.{key}");
            match (&a.product, &a.category) {
                (Some(s), None) => text(&format!("{p}.product"), s, 64)?,
                (None, Some(c)) => text(&format!("{p}.category"), c, 100)?,
                _ => {
                    return Err(DefinitionError::new(
                        p,
                        "give exactly one of product and category",
                    ))
                }
            }
            range_i(&p, "min_count", a.min_count, 1, MAX_COUNT)?;
            range_i(&p, "within_days", a.within_days, 1, MAX_WINDOW_DAYS)
        }
        Node::Events(e) => {
            let p = format!("{path}.events");
            range_i(&p, "min_count", e.min_count, 1, MAX_COUNT)?;
            range_i(&p, "max_count", e.max_count, 1, MAX_COUNT)?;
            if let (Some(a), Some(b)) = (e.min_count, e.max_count) {
                if a > b {
                    return Err(DefinitionError::new(
                        format!("{p}.min_count"),
                        "min_count is greater than max_count",
                    ));
                }
            }
            range_i(&p, "within_days", Some(e.within_days), 1, MAX_WINDOW_DAYS)
        }
        Node::Country(t) => {
            let p = format!("{path}.country.in");
            if t.values.is_empty() || t.values.len() > 50 {
                return Err(DefinitionError::new(p, "give 1 to 50 values"));
            }
            for (i, v) in t.values.iter().enumerate() {
                text(&format!("{p}[{i}]"), v, 64)?;
            }
            Ok(())
        }
        Node::InSegment(r) => {
            if !is_segment_id(&r.id) {
                return Err(DefinitionError::new(
                    format!("{path}.in_segment.id"),
                    "not a segment id",
                ));
            }
            Ok(())
        }
        Node::ProfileCluster(c) => {
            let p = format!("{path}.profile_cluster");
            range_i(&p, "k", Some(c.k), 2, 10)?;
            range_i(&p, "cluster", Some(c.cluster), 0, c.k - 1)
        }
        Node::Consent(c) => {
            if !is_purpose(&c.purpose) {
                return Err(DefinitionError::new(
                    format!("{path}.consent.purpose"),
                    "unknown purpose",
                ));
            }
            Ok(())
        }
        Node::All(_) | Node::Any(_) | Node::Not(_) => Ok(()),
    }
}

/// Saved segment ids: `seg_` and 32 lowercase hex digits.
pub fn is_segment_id(id: &str) -> bool {
    id.strip_prefix("seg_").is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn any_purpose(p: &str) -> bool {
        p == "email_marketing"
    }

    fn check(v: serde_json::Value) -> Result<Stats, DefinitionError> {
        let bytes = serde_json::to_vec(&v).unwrap();
        let node: Node = match parse(&bytes) {
            Ok(n) => n,
            Err(ParseError::Invalid(e)) => return Err(e),
            Err(ParseError::Syntax) => panic!("syntax"),
        };
        validate(&node, "$", &any_purpose)
    }

    #[test]
    fn a_typical_definition_is_valid() {
        let s = check(json!({"all": [
            {"country": {"in": ["Germany"]}},
            {"bought": {"category": "garden", "within_days": 90}},
            {"monetary": {"min": 250.0}},
            {"not": {"rfm_cell": {"in": ["lost", "hibernating"]}}},
            {"any": [{"events": {"kind": "view", "min_count": 3, "within_days": 30}},
                     {"consent": {"purpose": "email_marketing"}}]}
        ]}))
        .unwrap();
        assert_eq!(s.nodes, 9);
        assert_eq!(s.depth, 3);
    }

    #[test]
    fn errors_name_the_path_and_never_the_value() {
        let e =
            check(json!({"all": [{"country": {"in": ["DE"]}}, {"recency": {"max_days": 99999}}]}))
                .unwrap_err();
        assert_eq!(e.path, "$.all[1].recency.max_days");
        assert!(!e.message.contains("99999"));

        let e = check(json!({"all": [{"country": {"in": ["DE"], "sneaky'; --": 1}}]})).unwrap_err();
        assert_eq!(e.path, "$.all[0].country.?");
        assert_eq!(e.message, "unknown field");

        let e = check(json!({"any": []})).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("$.any", "empty group")
        );

        let e = check(json!({"all": [{"drop_table": {}}]})).unwrap_err();
        assert!(e.path.starts_with("$.all[0]"), "{}", e.path);

        let e = check(json!({"frequency": {"min": "3"}})).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("$.frequency.min", "wrong type")
        );

        let e = check(json!({"consent": {"purpose": "nope"}})).unwrap_err();
        assert_eq!(e.path, "$.consent.purpose");

        let e = check(json!({"bought": {"category": "a", "product": "b"}})).unwrap_err();
        assert_eq!(e.path, "$.bought");

        let e = check(json!({"events": {"kind": "view", "min_count": 1}})).unwrap_err();
        assert_eq!(e.message, "missing field within_days");
    }

    #[test]
    fn depth_and_node_limits() {
        let mut v = json!({"country": {"in": ["DE"]}});
        for _ in 0..15 {
            v = json!({"not": v});
        }
        assert!(check(v.clone()).is_ok());
        let v = json!({"not": v});
        let e = check(v).unwrap_err();
        assert_eq!(e.message, "depth over 16");

        let many: Vec<_> = (0..256)
            .map(|_| json!({"recency": {"max_days": 3}}))
            .collect();
        let e = check(json!({"all": many})).unwrap_err();
        assert_eq!(e.message, "more than 256 nodes");
        let many: Vec<_> = (0..255)
            .map(|_| json!({"recency": {"max_days": 3}}))
            .collect();
        assert!(check(json!({"all": many})).is_ok());
    }

    #[test]
    fn every_rfm_pair_has_one_cell_and_every_cell_is_reachable() {
        let mut seen = std::collections::HashSet::new();
        for r in 1..=5 {
            for fm in 1..=5 {
                seen.insert(RfmCell::of(r, fm));
            }
        }
        assert_eq!(seen.len(), 11);
        assert_eq!(RfmCell::of(5, 5), RfmCell::Champions);
        assert_eq!(RfmCell::of(1, 5), RfmCell::CannotLose);
        assert_eq!(RfmCell::of(5, 1), RfmCell::New);
        assert_eq!(RfmCell::of(1, 1), RfmCell::Lost);
    }

    #[test]
    fn segment_ids() {
        assert!(is_segment_id("seg_0123456789abcdef0123456789abcdef"));
        assert!(!is_segment_id("seg_0123456789ABCDEF0123456789abcdef"));
        assert!(!is_segment_id("seg_1"));
    }
}
