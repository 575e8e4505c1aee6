//! The declared event schema (a tracking plan): which event kinds exist,
//! which properties each may carry, with which type, and which are
//! required. `POST /v1/events` checks every event of a batch against it and
//! reports every violation per event (unplanned kind, unplanned property,
//! missing required property or product, type mismatch), like a tracking
//! plan's validation report; the batch is refused whole when any event
//! violates it, so nothing is half-written.
//!
//! Loaded from `events.toml` in the policy directory. The kinds must be a
//! subset of the store's (`view`, `search`, `add_to_cart`, `purchase`,
//! `click`): the schema can narrow what the store accepts, never widen it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Kinds the events table accepts.
pub const STORE_KINDS: &[&str] = &["view", "search", "add_to_cart", "purchase", "click"];
/// Channels an event may come from.
pub const STORE_CHANNELS: &[&str] = &["web", "app", "email", "store", "other"];

/// A property's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    String,
    Integer,
    Number,
    Boolean,
}

impl PropertyType {
    fn matches(self, v: &serde_json::Value) -> bool {
        match self {
            Self::String => v.is_string(),
            // As JSON Schema counts integers: `5` and `5.0` alike.
            Self::Integer => {
                v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            Self::Number => v.is_number(),
            Self::Boolean => v.is_boolean(),
        }
    }

    /// The JSON Schema type name.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSchema {
    /// Whether `product_sku` must be given.
    #[serde(default)]
    pub requires_product: bool,
    /// Properties the kind may carry, by type.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyType>,
    /// Properties that must be present.
    #[serde(default)]
    pub required: Vec<String>,
}

/// The whole schema.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSchema {
    pub kinds: BTreeMap<String, KindSchema>,
}

impl Default for EventSchema {
    /// Every store kind, no properties, nothing required.
    fn default() -> Self {
        Self {
            kinds: STORE_KINDS
                .iter()
                .map(|k| ((*k).to_owned(), KindSchema::default()))
                .collect(),
        }
    }
}

/// Most violations one error message lists.
const MAX_LISTED: usize = 20;

impl EventSchema {
    /// `dir/events.toml`, or the default schema when there is none.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("events.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let schema: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        for (kind, k) in &schema.kinds {
            if !STORE_KINDS.contains(&kind.as_str()) {
                anyhow::bail!(
                    "kinds.{kind}: the store takes only {}",
                    STORE_KINDS.join(", ")
                );
            }
            for r in &k.required {
                if !k.properties.contains_key(r) {
                    anyhow::bail!("kinds.{kind}.required: {r} is not among its properties");
                }
            }
        }
        Ok(schema)
    }

    /// The violations of one event (`at` names it, e.g. `events[3]`).
    pub fn check(
        &self,
        at: &str,
        kind: &str,
        has_product: bool,
        properties: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Vec<String> {
        let Some(k) = self.kinds.get(kind) else {
            let planned: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
            return vec![format!(
                "{at}.kind: unplanned (planned: {})",
                planned.join(", ")
            )];
        };
        let mut out = Vec::new();
        if k.requires_product && !has_product {
            out.push(format!("{at}.product_sku: required for {kind}"));
        }
        let empty = serde_json::Map::new();
        let props = properties.unwrap_or(&empty);
        for r in &k.required {
            if !props.contains_key(r) {
                out.push(format!("{at}.properties.{r}: required for {kind}"));
            }
        }
        for (name, value) in props {
            match k.properties.get(name) {
                None => out.push(format!("{at}.properties.{name}: unplanned for {kind}")),
                Some(t) if !t.matches(value) => {
                    out.push(format!("{at}.properties.{name}: must be {}", t.name()));
                }
                Some(_) => {}
            }
        }
        out
    }

    /// One message for all violations of a batch (at most [`MAX_LISTED`]
    /// listed). Names paths and expected types, never values.
    pub fn message(events: usize, violations: &[(usize, Vec<String>)]) -> String {
        let bad = violations.len();
        let all: Vec<&String> = violations.iter().flat_map(|(_, v)| v).collect();
        let mut text = format!(
            "{bad} of {events} events do not match the event schema: {}",
            all.iter()
                .take(MAX_LISTED)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        if all.len() > MAX_LISTED {
            text.push_str(&format!("; and {} more", all.len() - MAX_LISTED));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAN: &str = r#"
[kinds.search]
properties = { query = "string", results = "integer" }
required = ["query"]
[kinds.add_to_cart]
requires_product = true
properties = { quantity = "integer" }
"#;

    #[test]
    fn violations_are_reported_per_event() {
        let s = EventSchema::parse(PLAN).unwrap();
        let props = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(s
            .check(
                "e[0]",
                "search",
                false,
                Some(&props(json!({"query": "tea"})))
            )
            .is_empty());
        assert_eq!(
            s.check("e[1]", "view", false, None),
            ["e[1].kind: unplanned (planned: add_to_cart, search)"]
        );
        assert_eq!(
            s.check(
                "e[2]",
                "search",
                false,
                Some(&props(json!({"results": "many", "x": 1})))
            ),
            [
                "e[2].properties.query: required for search",
                "e[2].properties.results: must be integer",
                "e[2].properties.x: unplanned for search",
            ]
        );
        assert_eq!(
            s.check("e[3]", "add_to_cart", false, None),
            ["e[3].product_sku: required for add_to_cart"]
        );
        let msg = EventSchema::message(4, &[(1, vec!["a".into()]), (2, vec!["b".into()])]);
        assert_eq!(msg, "2 of 4 events do not match the event schema: a; b");
        assert!(EventSchema::parse("[kinds.teleport]\n").is_err());
        assert!(EventSchema::parse("[kinds.view]\nrequired = [\"x\"]\n").is_err());
    }
}
