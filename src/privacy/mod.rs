//! Output privacy: the one place every analytic number passes before it
//! leaves (segments, RFM cells, profile clusters and their distributions).
//!
//! [`Release`] is the entry point. A handler describes what it wants to
//! release as [`TrueTable`]s (each a partition of customers into disjoint
//! cells, with per-customer contributions already clamped in SQL), and the
//! release step decides, in this order:
//!
//! 1. **Sticky answers**: the same question (fingerprint) by the same
//!    (principal, purpose) on the same data version in the same budget
//!    window gets the stored noisy answer, at no cost; averaging repeated
//!    draws is impossible.
//! 2. **Noise**: roles without member access get every count and sum with
//!    exact discrete Laplace noise ([`noise`]). A question spends
//!    `epsilon_per_query`, split evenly over its measures (one count per
//!    table, one per clamped sum); cells of one table are disjoint, so each
//!    measure is charged once however many cells it has (parallel
//!    composition); measures and questions add up (sequential composition).
//! 3. **k threshold**: a cell resting on fewer than k customers (true count,
//!    or for noisy releases also the noisy count) leaves as "fewer than k",
//!    never as its value, and so do its averages.
//! 4. **Budget**: the cost is debited per (principal, purpose, window) in
//!    the transaction that then records the request's audit event; the
//!    answer leaves only after both are durable. When the budget cannot pay,
//!    nothing is released: 429 `privacy_budget_exhausted`.

pub mod budget;
pub mod noise;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::PrivacyBlock;
use crate::db::Db;
use noise::{CryptoRandom, Mechanism};

/// The privacy settings: the `[privacy]` section of the configuration.
pub use crate::config::PrivacyConfig as PrivacySettings;

impl PrivacySettings {
    /// Checks ranges; called when the configuration loads.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=1000).contains(&self.k) {
            return Err("privacy.k: must be between 2 and 1000".into());
        }
        let ok = |e: f64| e.is_finite() && (0.001..=100.0).contains(&e);
        if !ok(self.epsilon_per_query) || !ok(self.budget_epsilon) {
            return Err("privacy epsilons must be between 0.001 and 100".into());
        }
        if self.epsilon_per_query > self.budget_epsilon {
            return Err("privacy.epsilon_per_query exceeds privacy.budget_epsilon".into());
        }
        if !(60..=366 * 86_400).contains(&self.budget_window_secs) {
            return Err("privacy.budget_window_secs must be between 60 and a year".into());
        }
        Ok(())
    }

    pub fn eps_per_query_micro(&self) -> i64 {
        to_micro(self.epsilon_per_query)
    }

    pub fn budget_micro(&self) -> i64 {
        to_micro(self.budget_epsilon)
    }
}

fn to_micro(eps: f64) -> i64 {
    // Validated range: 0.001..=100, so the product fits and is positive.
    (eps * 1_000_000.0).round() as i64
}

/// Micro-epsilon as the decimal epsilon shown to people.
pub fn epsilon(micro: i64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// A clamped per-customer quantity summed over a cell.
#[derive(Clone, Debug)]
pub struct SumSpec {
    /// Output name of the average, e.g. `avg_recency_days`.
    pub name: &'static str,
    /// Per-customer contribution bound (the sum's sensitivity), in the
    /// stored unit; SQL clamps every contribution to `[0, clamp]`.
    pub clamp: i64,
    /// Divides the stored unit into the shown unit (100 for cents).
    pub unit: i64,
}

/// A partition of customers into disjoint cells, with true aggregates.
#[derive(Clone, Debug)]
pub struct TrueTable {
    pub name: String,
    pub sums: Vec<SumSpec>,
    pub cells: Vec<TrueCell>,
    /// Whether the cell labels are fixed in advance (RFM cells, cluster
    /// numbers). Labels that come from the data (countries, categories)
    /// would tell that someone with that value exists, so their suppressed
    /// cells are left out of the answer altogether.
    pub fixed_labels: bool,
}

#[derive(Clone, Debug)]
pub struct TrueCell {
    pub label: String,
    /// Distinct customers in the cell.
    pub customers: i64,
    /// True clamped sums, in the order of [`TrueTable::sums`].
    pub sums: Vec<i64>,
}

/// A released count.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleasedCount {
    /// Absent when suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Central 95% interval of the noise around `value` (noisy releases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[i64; 2]>,
    /// True when the number rests on fewer than k customers.
    pub suppressed: bool,
}

/// A released average (a noisy sum over a noisy count, post-processed).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleasedAverage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    pub suppressed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleasedCell {
    pub label: String,
    pub customers: ReleasedCount,
    /// Averages by name (`avg_recency_days`, ...), in the table's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub averages: Vec<NamedAverage>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NamedAverage {
    pub name: String,
    #[serde(flatten)]
    pub value: ReleasedAverage,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleasedTable {
    pub name: String,
    pub cells: Vec<ReleasedCell>,
}

/// What `privacy_answers` stores: the released tables and how many cells
/// with data-derived labels were left out (for the audit evidence).
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    tables: Vec<ReleasedTable>,
    omitted: u32,
}

/// How the answer was made; goes into the response and the audit event.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MechanismKind {
    /// Exact numbers, for roles that may read members (k threshold only).
    Exact,
    /// Fresh discrete Laplace noise.
    DiscreteLaplace,
    /// The stored noisy answer of an earlier identical question.
    Sticky,
}

impl MechanismKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MechanismKind::Exact => "exact",
            MechanismKind::DiscreteLaplace => "discrete_laplace",
            MechanismKind::Sticky => "sticky",
        }
    }
}

/// The evidence of one release, for the audit event's privacy block.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PrivacyEvidence {
    /// Hex SHA-256 of the canonical question.
    pub fingerprint: String,
    pub mechanism: MechanismKind,
    /// Micro-epsilon spent by this request (0 for exact and sticky).
    pub epsilon_spent_micro: i64,
    pub k: u32,
    /// Cells (and their averages) released as "fewer than k".
    pub suppressed_cells: u32,
    /// Micro-epsilon left in the window after this request (noisy roles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_left_micro: Option<i64>,
}

impl PrivacyEvidence {
    /// The audit event's privacy block (integers only: micro-epsilon).
    pub fn block(&self) -> PrivacyBlock {
        let mut fingerprint = [0u8; 32];
        if let Ok(bytes) = hex::decode(&self.fingerprint) {
            if bytes.len() == 32 {
                fingerprint.copy_from_slice(&bytes);
            }
        }
        PrivacyBlock {
            mechanism: match self.mechanism {
                MechanismKind::Exact => "k_threshold",
                MechanismKind::DiscreteLaplace => "discrete_laplace",
                MechanismKind::Sticky => "discrete_laplace_repeated",
            }
            .to_owned(),
            epsilon_spent_micros: u64::try_from(self.epsilon_spent_micro).unwrap_or(0),
            k: self.k,
            suppressed_cells: self.suppressed_cells,
            fingerprint,
            budget_remaining_micros: self.budget_left_micro.unwrap_or(-1),
        }
    }
}

/// The privacy part of a response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PrivacyNote {
    pub mechanism: MechanismKind,
    pub k: u32,
    pub epsilon_spent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_remaining: Option<f64>,
    /// RFC 3339: when the current window ends and the budget refreshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_refreshes_at: Option<String>,
}

/// Why a release failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy budget exhausted")]
    Exhausted {
        remaining_micro: i64,
        refreshes_at_micros: i64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One release: who asks, for which purpose, which question on which data.
pub struct Release<'a> {
    pub settings: &'a PrivacySettings,
    pub db: &'a Db,
    pub principal: &'a str,
    pub purpose: &'a str,
    pub fingerprint: String,
    pub data_version: String,
    /// Roles that may read members get exact numbers (k threshold only).
    pub exact: bool,
    pub now: i64,
}

impl PrivacyEvidence {
    /// Records a committed release in the metrics: releases by purpose and
    /// mechanism, and the epsilon they spent by purpose.
    ///
    /// Labelled by purpose, never by principal: purposes are the closed set
    /// of the policy (an unknown one is refused with 400 before any
    /// release), principals are every `sub` an issuer ever signs, which
    /// would give the time series an unbounded number of labels. The
    /// per-principal spend is in the budget API and the audit trail.
    pub fn record(&self, purpose: &str) {
        metrics::counter!(
            "custodian_privacy_releases_total",
            "purpose" => purpose.to_owned(),
            "mechanism" => self.mechanism.as_str(),
        )
        .increment(1);
        if self.epsilon_spent_micro > 0 {
            metrics::counter!(
                "custodian_privacy_epsilon_spent_micro_total",
                "purpose" => purpose.to_owned(),
            )
            .increment(self.epsilon_spent_micro.unsigned_abs());
        }
    }
}

/// What a release produced: the tables to send, the transaction holding the
/// budget debit (the handler commits it through the audit step), and the
/// evidence for the audit event.
pub struct Released<'t> {
    pub tables: Vec<ReleasedTable>,
    pub evidence: PrivacyEvidence,
    pub note: PrivacyNote,
    pub tx: Option<sqlx::Transaction<'t, sqlx::Any>>,
}

impl<'a> Release<'a> {
    fn window(&self) -> i64 {
        budget::window_start(self.now, self.settings.budget_window_secs)
    }

    fn window_end(&self) -> i64 {
        let len = i64::try_from(self.settings.budget_window_secs).unwrap_or(i64::MAX / 2_000_000);
        self.window().saturating_add(len.saturating_mul(1_000_000))
    }

    fn note(&self, mechanism: MechanismKind, spent: i64, left: Option<i64>) -> PrivacyNote {
        PrivacyNote {
            mechanism,
            k: self.settings.k,
            epsilon_spent: epsilon(spent),
            budget_remaining: left.map(epsilon),
            budget_refreshes_at: left.map(|_| crate::clock::rfc3339(self.window_end())),
        }
    }

    /// Step 1: the stored answer of this exact question, if any; checked
    /// before the data is touched. Also refuses early when the budget
    /// cannot pay for a fresh answer.
    pub async fn sticky(&self) -> Result<Option<Released<'static>>, PrivacyError> {
        if self.exact {
            return Ok(None);
        }
        let window = self.window();
        let stored = budget::find_answer(
            self.db,
            self.principal,
            self.purpose,
            &self.fingerprint,
            window,
            &self.data_version,
        )
        .await?;
        let spent = budget::spent(self.db, self.principal, self.purpose, window).await?;
        let left = self.settings.budget_micro() - spent;
        if let Some(text) = stored {
            let stored: StoredAnswer = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("stored answer does not decode: {e}"))?;
            let suppressed = count_suppressed(&stored.tables) + stored.omitted;
            let tables = stored.tables;
            return Ok(Some(Released {
                evidence: PrivacyEvidence {
                    fingerprint: self.fingerprint.clone(),
                    mechanism: MechanismKind::Sticky,
                    epsilon_spent_micro: 0,
                    k: self.settings.k,
                    suppressed_cells: suppressed,
                    budget_left_micro: Some(left),
                },
                note: self.note(MechanismKind::Sticky, 0, Some(left)),
                tables,
                tx: None,
            }));
        }
        if left < self.settings.eps_per_query_micro() {
            return Err(PrivacyError::Exhausted {
                remaining_micro: left.max(0),
                refreshes_at_micros: self.window_end(),
            });
        }
        Ok(None)
    }

    /// Steps 2-4: noise, threshold, and the budget debit in a transaction
    /// the caller commits together with the audit event.
    pub async fn release(self, tables: &[TrueTable]) -> Result<Released<'static>, PrivacyError> {
        let k = i64::from(self.settings.k);
        if self.exact {
            let mut out = tables.iter().map(|t| exact_table(t, k)).collect::<Vec<_>>();
            let omitted = omit_labelled(tables, &mut out);
            return Ok(Released {
                evidence: PrivacyEvidence {
                    fingerprint: self.fingerprint.clone(),
                    mechanism: MechanismKind::Exact,
                    epsilon_spent_micro: 0,
                    k: self.settings.k,
                    suppressed_cells: count_suppressed(&out) + omitted,
                    budget_left_micro: None,
                },
                note: self.note(MechanismKind::Exact, 0, None),
                tables: out,
                tx: None,
            });
        }
        let total = self.settings.eps_per_query_micro();
        let measures: i64 = tables.iter().map(|t| 1 + t.sums.len() as i64).sum();
        let per = (total / measures.max(1)).max(1);
        let cost = per * measures.max(1);
        let mut rng = CryptoRandom::default();
        let mut out = Vec::with_capacity(tables.len());
        for t in tables {
            out.push(noisy_table(t, k, per, &mut rng).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        let omitted = omit_labelled(tables, &mut out);
        let window = self.window();
        // Answers of ended windows can never be served again.
        budget::prune_answers(self.db, window).await?;
        let mut tx = self.db.pool.begin().await.map_err(anyhow::Error::from)?;
        let budget_micro = self.settings.budget_micro();
        let Some(spent) = budget::debit(
            &mut tx,
            self.principal,
            self.purpose,
            window,
            cost,
            budget_micro,
            self.now,
        )
        .await?
        else {
            // Back to the pool before the look-up takes a connection of its own.
            drop(tx);
            let spent = budget::spent(self.db, self.principal, self.purpose, window).await?;
            return Err(PrivacyError::Exhausted {
                remaining_micro: (budget_micro - spent).max(0),
                refreshes_at_micros: self.window_end(),
            });
        };
        let stored = StoredAnswer {
            tables: out,
            omitted,
        };
        let text = serde_json::to_string(&stored).map_err(anyhow::Error::from)?;
        let out = stored.tables;
        budget::store_answer(
            &mut tx,
            self.principal,
            self.purpose,
            &self.fingerprint,
            window,
            &self.data_version,
            &text,
            self.now,
        )
        .await?;
        let left = budget_micro - spent;
        Ok(Released {
            evidence: PrivacyEvidence {
                fingerprint: self.fingerprint.clone(),
                mechanism: MechanismKind::DiscreteLaplace,
                epsilon_spent_micro: cost,
                k: self.settings.k,
                suppressed_cells: count_suppressed(&out) + omitted,
                budget_left_micro: Some(left),
            },
            note: self.note(MechanismKind::DiscreteLaplace, cost, Some(left)),
            tables: out,
            tx: Some(tx),
        })
    }
}

/// Drops suppressed cells of tables whose labels come from the data;
/// returns how many were dropped.
fn omit_labelled(truth: &[TrueTable], out: &mut [ReleasedTable]) -> u32 {
    let mut omitted = 0;
    for (t, r) in truth.iter().zip(out.iter_mut()) {
        if !t.fixed_labels {
            let before = r.cells.len();
            r.cells.retain(|c| !c.customers.suppressed);
            omitted += (before - r.cells.len()) as u32;
        }
    }
    omitted
}

fn count_suppressed(tables: &[ReleasedTable]) -> u32 {
    tables
        .iter()
        .flat_map(|t| &t.cells)
        .filter(|c| c.customers.suppressed)
        .count() as u32
}

fn suppressed_count() -> ReleasedCount {
    ReleasedCount {
        value: None,
        ci95: None,
        suppressed: true,
    }
}

fn suppressed_average() -> ReleasedAverage {
    ReleasedAverage {
        value: None,
        ci95: None,
        suppressed: true,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn exact_table(t: &TrueTable, k: i64) -> ReleasedTable {
    let cells = t
        .cells
        .iter()
        .map(|c| {
            if c.customers < k {
                return ReleasedCell {
                    label: c.label.clone(),
                    customers: suppressed_count(),
                    averages: t
                        .sums
                        .iter()
                        .map(|s| NamedAverage {
                            name: s.name.to_owned(),
                            value: suppressed_average(),
                        })
                        .collect(),
                };
            }
            let averages = t
                .sums
                .iter()
                .zip(&c.sums)
                .map(|(s, sum)| NamedAverage {
                    name: s.name.to_owned(),
                    value: ReleasedAverage {
                        value: Some(round2(
                            *sum as f64 / c.customers.max(1) as f64 / s.unit as f64,
                        )),
                        ci95: None,
                        suppressed: false,
                    },
                })
                .collect();
            ReleasedCell {
                label: c.label.clone(),
                customers: ReleasedCount {
                    value: Some(c.customers),
                    ci95: None,
                    suppressed: false,
                },
                averages,
            }
        })
        .collect();
    ReleasedTable {
        name: t.name.clone(),
        cells,
    }
}

fn noisy_table(
    t: &TrueTable,
    k: i64,
    eps_micro: i64,
    rng: &mut CryptoRandom,
) -> Result<ReleasedTable, noise::NoiseError> {
    let eps = u64::try_from(eps_micro).map_err(|_| noise::NoiseError::Parameters)?;
    let count_m = Mechanism {
        sensitivity: 1,
        eps_micro: eps,
    };
    let hc = count_m.half_width_95();
    let sum_ms: Vec<(Mechanism, i64)> = t
        .sums
        .iter()
        .map(|s| {
            let m = Mechanism {
                sensitivity: u64::try_from(s.clamp.max(1)).unwrap_or(1),
                eps_micro: eps,
            };
            (m, m.half_width_95())
        })
        .collect();
    let mut cells = Vec::with_capacity(t.cells.len());
    for c in &t.cells {
        // Every cell draws its noise, suppressed or not, so the work done
        // (and its timing) does not depend on which cells are small.
        let noisy = c.customers.saturating_add(count_m.sample(rng)?);
        let mut averages = Vec::with_capacity(t.sums.len());
        let mut sums = Vec::with_capacity(t.sums.len());
        for ((s, sum), (m, h)) in t.sums.iter().zip(&c.sums).zip(&sum_ms) {
            sums.push((s, sum.saturating_add(m.sample(rng)?), *h));
        }
        if c.customers < k || noisy < k {
            cells.push(ReleasedCell {
                label: c.label.clone(),
                customers: suppressed_count(),
                averages: t
                    .sums
                    .iter()
                    .map(|s| NamedAverage {
                        name: s.name.to_owned(),
                        value: suppressed_average(),
                    })
                    .collect(),
            });
            continue;
        }
        for (s, noisy_sum, hs) in sums {
            let n = noisy as f64;
            let unit = s.unit as f64;
            let hi_bound = s.clamp as f64 / unit;
            let clip = |x: f64| x.clamp(0.0, hi_bound);
            let value = clip(noisy_sum as f64 / n / unit);
            let lo = clip((noisy_sum - hs) as f64 / (n + hc as f64) / unit);
            let hi = clip((noisy_sum + hs) as f64 / (n - hc as f64).max(1.0) / unit);
            averages.push(NamedAverage {
                name: s.name.to_owned(),
                value: ReleasedAverage {
                    value: Some(round2(value)),
                    ci95: Some([round2(lo), round2(hi)]),
                    suppressed: false,
                },
            });
        }
        cells.push(ReleasedCell {
            label: c.label.clone(),
            customers: ReleasedCount {
                value: Some(noisy),
                ci95: Some([noisy - hc, noisy + hc]),
                suppressed: false,
            },
            averages,
        });
    }
    Ok(ReleasedTable {
        name: t.name.clone(),
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(counts: &[i64]) -> TrueTable {
        TrueTable {
            name: "t".into(),
            sums: vec![SumSpec {
                name: "avg_x",
                clamp: 10,
                unit: 1,
            }],
            cells: counts
                .iter()
                .enumerate()
                .map(|(i, &n)| TrueCell {
                    label: format!("c{i}"),
                    customers: n,
                    sums: vec![n * 5],
                })
                .collect(),
            fixed_labels: true,
        }
    }

    #[test]
    fn exact_release_suppresses_under_k() {
        let t = exact_table(&table(&[9, 10, 0]), 10);
        assert!(t.cells[0].customers.suppressed);
        assert_eq!(t.cells[0].customers.value, None);
        assert!(t.cells[0].averages[0].value.suppressed);
        assert_eq!(t.cells[1].customers.value, Some(10));
        assert_eq!(t.cells[1].averages[0].value.value, Some(5.0));
        assert!(t.cells[2].customers.suppressed);
    }

    #[test]
    fn noisy_release_never_shows_a_small_cell() {
        let mut rng = CryptoRandom::default();
        for _ in 0..200 {
            let t = noisy_table(&table(&[9, 1, 1000]), 10, 100_000, &mut rng).unwrap();
            assert!(t.cells[0].customers.suppressed);
            assert!(t.cells[1].customers.suppressed);
            let big = &t.cells[2];
            let v = big.customers.value.unwrap();
            let [lo, hi] = big.customers.ci95.unwrap();
            assert!(lo < v && v < hi);
            let avg = big.averages[0].value.value.unwrap();
            assert!((0.0..=10.0).contains(&avg));
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(PrivacySettings::default().validate().is_ok());
        let bad = PrivacySettings {
            epsilon_per_query: f64::NAN,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = PrivacySettings {
            epsilon_per_query: 20.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(PrivacySettings::default().eps_per_query_micro(), 500_000);
    }
}
