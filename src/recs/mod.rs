//! Product recommendations on the governed data: models, build, serving
//! and the offline evaluation.
//!
//! - [`data`]: baskets per customer with dense indexes (the training input);
//! - [`rules`]: FP-growth and association rules (frequently bought together);
//! - [`cooc`]: distinct-customer co-occurrence, item-to-item neighbours;
//! - [`ease`]: the closed-form EASE item model (dense solve in `faer`);
//! - [`model`]: the served bundle and the scoring of every answer;
//! - [`build`]: loading the store (consenting, non-erased customers only);
//! - [`serve`]: the in-memory model, swapped atomically on rebuild;
//! - [`eval`]: the hold-out-last-invoice protocol on the Online Retail CSV.
//!
//! The k rule holds at build time: no item, pair, rule or neighbour that
//! fewer than `k` distinct customers support ever enters a served model.
//! Consent is checked per request by the HTTP layer (withdrawal takes
//! effect at once); erased customers are dropped from the served profiles
//! at once ([`serve::Recommender::forget_customer`]) and from the weights
//! at the next rebuild.

pub mod build;
pub mod cooc;
pub mod data;
pub mod ease;
pub mod eval;
pub mod job;
pub mod model;
pub mod rules;
pub mod serve;
pub mod sparse;

use serde::{Deserialize, Serialize};

pub use model::{Mode, Model};
pub use serve::Recommender;

/// The `[recs]` configuration section.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecsConfig {
    /// Build the models in the background when the server starts.
    pub build_on_start: bool,
    /// Rebuild every this many seconds (0: only on `POST /v1/admin/recs/rebuild`).
    pub rebuild_interval_secs: u64,
    /// Model parameters (`[recs.model]`).
    pub model: RecsParams,
}

impl Default for RecsConfig {
    fn default() -> Self {
        Self {
            build_on_start: true,
            rebuild_interval_secs: 3600,
            model: RecsParams::default(),
        }
    }
}

/// Model parameters (`[recs]` in the configuration; the defaults are the
/// measured best on the Online Retail evaluation, see README).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecsParams {
    /// Minimum distinct customers behind anything served: always the
    /// shared `privacy.k` (not configurable here).
    #[serde(skip)]
    pub k: u32,
    /// EASE ridge strength.
    pub lambda: f64,
    /// Weight of a viewed (not bought) item relative to a purchase.
    pub view_weight: f32,
    /// Profile items lose half their weight every this many days before the
    /// customer's latest activity (0 = no decay).
    pub recency_half_life_days: f64,
    /// Share of the weight that never decays.
    pub recency_floor: f32,
    /// Fit EASE on 0/1 purchases (true) or on the decayed profile weights.
    pub fit_binary: bool,
    /// Repeat mode: weight of the own buy-again signal against EASE.
    pub repeat_weight: f32,
    /// Repeat mode: each older basket counts this much less.
    pub repeat_decay: f32,
    /// Popularity window (days before the newest purchase; 0 = all time).
    pub popular_window_days: u32,
    /// Neighbours kept per item.
    pub neighbours: usize,
    /// Frequently-bought-together rules: minimum support (share of baskets).
    pub rule_min_support: f64,
    /// Minimum confidence of a rule.
    pub rule_min_confidence: f64,
    /// Catalogue cap: the most-bought items kept in the dense EASE solve.
    pub max_items: usize,
}

impl Default for RecsParams {
    fn default() -> Self {
        Self {
            k: 10,
            lambda: 300.0,
            view_weight: 0.25,
            recency_half_life_days: 90.0,
            recency_floor: 0.1,
            fit_binary: false,
            repeat_weight: 2.0,
            repeat_decay: 0.8,
            popular_window_days: 90,
            neighbours: 50,
            rule_min_support: 0.001,
            rule_min_confidence: 0.1,
            max_items: 8000,
        }
    }
}
