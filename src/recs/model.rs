//! The recommendation models as the server holds them, and the scoring
//! every answer goes through. One [`Model`] is built from one snapshot of
//! [`Interactions`] and never changes; a rebuild makes a new one.
//!
//! - Personalized top-N: EASE scores of the customer's profile, items
//!   weighted by recency; in repeat mode blended with the customer's own
//!   purchase frequency (recent baskets count more), the buy-again signal.
//! - Item-to-item: cosine neighbours on distinct-customer co-occurrence.
//! - Frequently bought together: FP-growth rules `{X} → Y` over baskets.
//! - Popularity: distinct customers per item in a recent window, per
//!   country and overall.
//!
//! Everything rests on at least `k` distinct customers: item pairs, rules
//! and neighbours below it are dropped at build time, and so are items
//! fewer than k customers bought.

use std::collections::HashMap;
use std::time::Instant;

use super::cooc::Cooccurrence;
use super::data::{BasketKind, Interactions};
use super::sparse::SparseRows;
use super::{ease, rules, RecsParams};

const DAY_US: f64 = 86_400_000_000.0;

/// Whether a personalized list may contain items the customer already has.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only items the customer has not bought or viewed.
    New,
    /// Items bought before may come back (buy again).
    Repeat,
}

/// One item of a customer's profile, precomputed at build time.
#[derive(Clone, Copy, Debug)]
pub struct ProfileItem {
    pub item: u32,
    /// Input weight to EASE: purchase 1 or view `view_weight`, times the
    /// recency decay.
    pub weight: f32,
    /// Own buy-again signal: purchase baskets holding the item, each
    /// discounted by how many baskets ago it was (0 for views only).
    pub own: f32,
}

/// A customer's history as the scorer needs it.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub items: Vec<ProfileItem>,
    pub country: u16,
}

/// Builds a customer's profile from their baskets (chronological).
pub fn profile_of(data: &Interactions, baskets: &[usize], params: &RecsParams) -> Profile {
    let purchases: Vec<usize> = baskets
        .iter()
        .copied()
        .filter(|&b| {
            data.baskets
                .get(b)
                .is_some_and(|b| b.kind == BasketKind::Purchase)
        })
        .collect();
    let last_time = baskets
        .iter()
        .filter_map(|&b| data.baskets.get(b).map(|b| b.time))
        .max()
        .unwrap_or(0);
    let mut items: HashMap<u32, (f32, i64, f32)> = HashMap::new(); // base, last time, own
    let np = purchases.len();
    for (pos, &b) in purchases.iter().enumerate() {
        let Some(basket) = data.baskets.get(b) else {
            continue;
        };
        let age = (np - 1 - pos) as i32;
        let disc = params.repeat_decay.powi(age);
        for &(i, _) in &basket.items {
            let e = items.entry(i).or_insert((1.0, basket.time, 0.0));
            e.0 = 1.0;
            e.1 = e.1.max(basket.time);
            e.2 += disc;
        }
    }
    for &b in baskets {
        let Some(basket) = data.baskets.get(b) else {
            continue;
        };
        if basket.kind != BasketKind::Session {
            continue;
        }
        for &(i, _) in &basket.items {
            let e = items
                .entry(i)
                .or_insert((params.view_weight, basket.time, 0.0));
            e.1 = e.1.max(basket.time);
        }
    }
    let country = baskets
        .last()
        .and_then(|&b| data.baskets.get(b))
        .map(|b| b.country)
        .unwrap_or(0);
    let mut items: Vec<ProfileItem> = items
        .into_iter()
        .map(|(item, (base, t, own))| {
            let age_days = (last_time - t) as f64 / DAY_US;
            let decay = if params.recency_half_life_days > 0.0 {
                0.5f64.powf(age_days / params.recency_half_life_days) as f32
            } else {
                1.0
            };
            ProfileItem {
                item,
                weight: base * (params.recency_floor + (1.0 - params.recency_floor) * decay),
                own,
            }
        })
        .collect();
    items.sort_by_key(|p| p.item);
    Profile { items, country }
}

/// Items ranked by distinct recent customers, overall and per country.
#[derive(Clone, Debug, Default)]
pub struct Popularity {
    pub global: Vec<(u32, u32)>,
    pub by_country: HashMap<u16, Vec<(u32, u32)>>,
}

impl Popularity {
    /// Counts distinct customers per item among baskets of the last
    /// `window_days` (0 = all time); items below `k` customers are left out.
    pub fn build(data: &Interactions, window_days: u32, k: u32) -> Self {
        let since = if window_days == 0 {
            i64::MIN
        } else {
            data.latest() - i64::from(window_days) * 86_400_000_000
        };
        let mut seen: std::collections::HashSet<(u32, u32)> = std::collections::HashSet::new();
        let mut global: HashMap<u32, u32> = HashMap::new();
        let mut country: HashMap<(u16, u32), u32> = HashMap::new();
        for b in data
            .baskets
            .iter()
            .filter(|b| b.time >= since && b.kind == BasketKind::Purchase)
        {
            for &(i, _) in &b.items {
                if seen.insert((b.customer, i)) {
                    *global.entry(i).or_insert(0) += 1;
                    *country.entry((b.country, i)).or_insert(0) += 1;
                }
            }
        }
        let rank = |m: Vec<(u32, u32)>| {
            let mut v: Vec<(u32, u32)> = m.into_iter().filter(|&(_, c)| c >= k.max(1)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        let mut per: HashMap<u16, Vec<(u32, u32)>> = HashMap::new();
        for ((c, i), n) in country {
            per.entry(c).or_default().push((i, n));
        }
        Self {
            global: rank(global.into_iter().collect()),
            by_country: per.into_iter().map(|(c, v)| (c, rank(v))).collect(),
        }
    }

    /// Top `n` for a country (filled from the overall ranking), skipping
    /// items `skip` rejects.
    pub fn top(
        &self,
        country: Option<u16>,
        n: usize,
        skip: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let mut out: Vec<(u32, f32)> = Vec::with_capacity(n);
        let local = country
            .and_then(|c| self.by_country.get(&c))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for &(i, c) in local.iter().chain(self.global.iter()) {
            if out.len() >= n {
                break;
            }
            if !skip(i) && !out.iter().any(|(o, _)| *o == i) {
                out.push((i, c as f32));
            }
        }
        out
    }
}

/// Rules `{X} → Y` per antecedent item, best (confidence, then lift) first:
/// "bought X, then also Y" is the confidence; lift alone favours rare items.
#[derive(Clone, Debug, Default)]
pub struct Together {
    pub by_item: HashMap<u32, Vec<TogetherRule>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TogetherRule {
    pub item: u32,
    pub support: f32,
    pub confidence: f32,
    pub lift: f32,
    /// Distinct customers who bought both.
    pub customers: u32,
}

impl Together {
    /// Mines one-item-antecedent rules over purchase baskets and keeps those
    /// resting on at least `k` distinct customers.
    pub fn build(data: &Interactions, cooc: &Cooccurrence, params: &RecsParams) -> Self {
        let baskets: Vec<Vec<u32>> = data
            .baskets
            .iter()
            .filter(|b| b.kind == BasketKind::Purchase)
            .map(|b| b.items.iter().map(|(i, _)| *i).collect())
            .collect();
        let found = rules::mine_rules(
            &baskets,
            params.rule_min_support,
            params.rule_min_confidence,
            2,
        );
        let mut by_item: HashMap<u32, Vec<TogetherRule>> = HashMap::new();
        for r in found {
            let [x] = r.antecedent.as_slice() else {
                continue;
            };
            let customers = cooc.count(*x, r.consequent);
            if customers < params.k.max(1) {
                continue;
            }
            by_item.entry(*x).or_default().push(TogetherRule {
                item: r.consequent,
                support: r.support as f32,
                confidence: r.confidence as f32,
                lift: r.lift as f32,
                customers,
            });
        }
        for v in by_item.values_mut() {
            v.sort_by(|a, b| {
                b.confidence
                    .total_cmp(&a.confidence)
                    .then(b.lift.total_cmp(&a.lift))
                    .then(a.item.cmp(&b.item))
            });
        }
        Self { by_item }
    }
}

/// Where a returned item came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Ease,
    BuyAgain,
    AssociationRule,
    ItemSimilarity,
    Popularity,
}

/// One scored item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub item: u32,
    pub score: f32,
    pub source: Source,
}

/// Everything one build produced.
pub struct Model {
    pub version: String,
    pub built_at: i64,
    pub params: RecsParams,
    pub items: super::data::Vocab,
    pub countries: super::data::Vocab,
    /// Items at least k customers bought (the only items ever served).
    pub servable: Vec<bool>,
    pub ease: SparseRows,
    pub neighbours: SparseRows,
    pub together: Together,
    pub popularity: Popularity,
    pub customers: usize,
    pub fit_ms: u128,
    /// The store's product id per item (filled by the build; empty offline).
    pub product_ids: Vec<i64>,
}

/// Build statistics, for logs, the rebuild answer and the README.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModelStats {
    pub version: String,
    pub items: usize,
    pub customers: usize,
    pub ease_weights: usize,
    pub neighbour_pairs: usize,
    pub together_rules: usize,
    pub fit_ms: u64,
    pub memory_bytes: usize,
}

impl Model {
    /// Fits every model on `data`; `profiles[c]` is customer `c`'s profile.
    pub fn fit(
        data: &Interactions,
        profiles: &[Profile],
        params: &RecsParams,
        version: String,
        built_at: i64,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let n = data.items.len();
        let sets: Vec<Vec<u32>> = profiles
            .iter()
            .map(|p| {
                p.items
                    .iter()
                    .filter(|i| i.own > 0.0)
                    .map(|i| i.item)
                    .collect()
            })
            .collect();
        let cooc = Cooccurrence::from_item_sets(&sets, n);
        let k = params.k.max(1);
        let servable: Vec<bool> = (0..n as u32).map(|i| cooc.count(i, i) >= k).collect();
        let inputs: Vec<Vec<(u32, f32)>> = profiles
            .iter()
            .map(|p| {
                p.items
                    .iter()
                    .map(|i| (i.item, if params.fit_binary { 1.0 } else { i.weight }))
                    .collect()
            })
            .collect();
        let ease = ease::fit(&inputs, n, params.lambda, &cooc, k)?;
        let neighbours = cooc.neighbours(params.neighbours, k);
        let together = Together::build(data, &cooc, params);
        let popularity = Popularity::build(data, params.popular_window_days, k);
        Ok(Self {
            version,
            built_at,
            params: params.clone(),
            items: data.items.clone(),
            countries: data.countries.clone(),
            servable,
            ease,
            neighbours,
            together,
            popularity,
            customers: profiles.len(),
            fit_ms: started.elapsed().as_millis(),
            product_ids: Vec::new(),
        })
    }

    pub fn stats(&self) -> ModelStats {
        ModelStats {
            version: self.version.clone(),
            items: self.items.len(),
            customers: self.customers,
            ease_weights: self.ease.nnz(),
            neighbour_pairs: self.neighbours.nnz(),
            together_rules: self.together.by_item.values().map(Vec::len).sum(),
            fit_ms: u64::try_from(self.fit_ms).unwrap_or(u64::MAX),
            memory_bytes: self.memory_bytes(),
        }
    }

    /// Approximate heap bytes of the loaded model (profiles excluded).
    pub fn memory_bytes(&self) -> usize {
        let vocab =
            |v: &super::data::Vocab| v.keys().iter().map(|k| k.len() * 2 + 48).sum::<usize>();
        self.ease.heap_bytes()
            + self.neighbours.heap_bytes()
            + self
                .together
                .by_item
                .values()
                .map(|v| v.len() * 20 + 48)
                .sum::<usize>()
            + (self.popularity.global.len()
                + self
                    .popularity
                    .by_country
                    .values()
                    .map(Vec::len)
                    .sum::<usize>())
                * 8
            + vocab(&self.items)
            + vocab(&self.countries)
            + self.servable.len()
    }

    /// The store's product id of an item (0 when built offline).
    pub fn product_id(&self, i: u32) -> i64 {
        self.product_ids.get(i as usize).copied().unwrap_or(0)
    }

    fn servable(&self, i: u32) -> bool {
        self.servable.get(i as usize).copied().unwrap_or(false)
    }

    /// Personalized top `n` for a profile; filled up with popularity when
    /// the profile supports fewer than `n` items.
    pub fn for_profile(&self, profile: &Profile, n: usize, mode: Mode) -> Vec<Scored> {
        let mut scores = vec![0f32; self.items.len()];
        for p in &profile.items {
            self.ease.axpy(p.item, p.weight, &mut scores);
        }
        let owned = |i: u32| profile.items.binary_search_by_key(&i, |p| p.item).ok();
        let mut top = TopN::new(n);
        match mode {
            Mode::New => {
                for (i, &s) in scores.iter().enumerate() {
                    let i = i as u32;
                    if s > 0.0 && owned(i).is_none() && self.servable(i) {
                        top.offer(i, s, Source::Ease);
                    }
                }
            }
            Mode::Repeat => {
                let max_ease = scores.iter().copied().fold(0f32, f32::max);
                let max_own = profile.items.iter().map(|p| p.own).fold(0f32, f32::max);
                let w = self.params.repeat_weight;
                let ease_scale = if max_ease > 0.0 { 1.0 / max_ease } else { 0.0 };
                let own_scale = if max_own > 0.0 { w / max_own } else { 0.0 };
                for s in scores.iter_mut() {
                    *s *= ease_scale;
                }
                for p in &profile.items {
                    if let Some(s) = scores.get_mut(p.item as usize) {
                        *s += p.own * own_scale;
                    }
                }
                for (i, &s) in scores.iter().enumerate() {
                    let i = i as u32;
                    if s > 0.0 && self.servable(i) {
                        let own = owned(i)
                            .and_then(|x| profile.items.get(x))
                            .is_some_and(|p| p.own > 0.0);
                        top.offer(i, s, if own { Source::BuyAgain } else { Source::Ease });
                    }
                }
            }
        }
        let mut out = top.finish();
        if out.len() < n {
            let fill = self
                .popularity
                .top(Some(profile.country), n - out.len(), |i| {
                    out.iter().any(|s| s.item == i) || (mode == Mode::New && owned(i).is_some())
                });
            out.extend(fill.into_iter().map(|(item, score)| Scored {
                item,
                score,
                source: Source::Popularity,
            }));
        }
        out
    }

    /// Items that go with `item`: rules first, then neighbours.
    pub fn together(&self, item: u32, n: usize) -> Vec<(Scored, Option<TogetherRule>)> {
        let mut out: Vec<(Scored, Option<TogetherRule>)> = Vec::with_capacity(n);
        for r in self
            .together
            .by_item
            .get(&item)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if out.len() >= n {
                break;
            }
            if self.servable(r.item) {
                out.push((
                    Scored {
                        item: r.item,
                        score: r.lift,
                        source: Source::AssociationRule,
                    },
                    Some(*r),
                ));
            }
        }
        let (cols, vals) = self.neighbours.row(item);
        for (&j, &s) in cols.iter().zip(vals) {
            if out.len() >= n {
                break;
            }
            if self.servable(j) && !out.iter().any(|(o, _)| o.item == j) {
                out.push((
                    Scored {
                        item: j,
                        score: s,
                        source: Source::ItemSimilarity,
                    },
                    None,
                ));
            }
        }
        out
    }

    /// Popular items, for a country when given (and known).
    pub fn popular(&self, country: Option<&str>, n: usize) -> Vec<Scored> {
        let c = country
            .and_then(|c| self.countries.get(c))
            .and_then(|c| u16::try_from(c).ok());
        self.popularity
            .top(c, n, |_| false)
            .into_iter()
            .map(|(item, score)| Scored {
                item,
                score,
                source: Source::Popularity,
            })
            .collect()
    }
}

/// Keeps the best `n` (score desc, then item asc) in one pass.
pub struct TopN {
    n: usize,
    items: Vec<Scored>,
}

impl TopN {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            items: Vec::with_capacity(n + 1),
        }
    }

    fn better(a: &Scored, b: &Scored) -> bool {
        a.score > b.score || (a.score == b.score && a.item < b.item)
    }

    pub fn offer(&mut self, item: u32, score: f32, source: Source) {
        if self.n == 0 {
            return;
        }
        let s = Scored {
            item,
            score,
            source,
        };
        if self.items.len() == self.n {
            match self.items.last() {
                Some(worst) if Self::better(&s, worst) => {
                    self.items.pop();
                }
                _ => return,
            }
        }
        let at = self.items.partition_point(|x| Self::better(x, &s));
        self.items.insert(at, s);
    }

    pub fn finish(self) -> Vec<Scored> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recs::data::{InteractionsBuilder, LineIn};

    /// Hand-made shop: baskets per customer, all in one country.
    fn shop(baskets: &[(&str, &[&str])]) -> Interactions {
        let mut b = InteractionsBuilder::default();
        for (n, (customer, items)) in baskets.iter().enumerate() {
            for item in *items {
                b.push(LineIn {
                    basket_key: &n.to_string(),
                    kind: BasketKind::Purchase,
                    customer,
                    country: "FR",
                    item,
                    quantity: 1.0,
                    time: n as i64 * 1_000_000,
                    seq: n as i64,
                });
            }
        }
        b.finish()
    }

    fn fit(data: &Interactions, k: u32) -> (Model, Vec<Profile>) {
        let params = RecsParams {
            k,
            ..RecsParams::default()
        };
        let per = data.by_customer();
        let profiles: Vec<Profile> = per.iter().map(|l| profile_of(data, l, &params)).collect();
        let model = Model::fit(data, &profiles, &params, "t".into(), 0).unwrap();
        (model, profiles)
    }

    fn keys(m: &Model, s: &[Scored]) -> Vec<String> {
        s.iter()
            .map(|s| m.items.key(s.item).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn ease_weights_match_the_closed_form() {
        // Two items, G = [[3, 2], [2, 2]], lambda 1: B_ab = g_ab / (g_aa + 1).
        let profiles = vec![
            vec![(0, 1.0), (1, 1.0)],
            vec![(0, 1.0), (1, 1.0)],
            vec![(0, 1.0)],
        ];
        let cooc = Cooccurrence::from_item_sets(&[vec![0, 1], vec![0, 1], vec![0]], 2);
        let b = ease::fit(&profiles, 2, 1.0, &cooc, 0).unwrap();
        assert_eq!(b.row(0).0, &[1]);
        assert!((b.row(0).1[0] - 0.5).abs() < 1e-6, "{:?}", b.row(0));
        assert!((b.row(1).1[0] - 2.0 / 3.0).abs() < 1e-6, "{:?}", b.row(1));
        // With k = 3 the pair (two customers) is dropped.
        assert_eq!(ease::fit(&profiles, 2, 1.0, &cooc, 3).unwrap().nnz(), 0);
    }

    #[test]
    fn new_items_follow_co_purchases_and_repeats_put_own_favourites_first() {
        let data = shop(&[
            ("u1", &["tea", "cups"]),
            ("u2", &["tea", "cups"]),
            ("u3", &["tea", "cups", "honey"]),
            ("u4", &["tea"]),
            ("u4", &["tea"]),
            ("u4", &["jam"]),
        ]);
        let (m, profiles) = fit(&data, 2);
        let u4 = data.customers.get("u4").unwrap() as usize;
        let new = m.for_profile(&profiles[u4], 5, Mode::New);
        // cups rests on three tea buyers; honey and jam on one customer.
        assert_eq!(keys(&m, &new), ["cups"]);
        assert_eq!(new[0].source, Source::Ease);
        let rep = m.for_profile(&profiles[u4], 5, Mode::Repeat);
        // tea, bought twice, comes back; jam rests on one customer only.
        let tea = rep
            .iter()
            .find(|s| m.items.key(s.item) == Some("tea"))
            .unwrap();
        assert_eq!(tea.source, Source::BuyAgain);
        assert!(keys(&m, &rep).contains(&"cups".to_owned()));
        assert!(!keys(&m, &rep).contains(&"jam".to_owned()));
    }

    #[test]
    fn together_and_popularity_obey_k() {
        let data = shop(&[
            ("u1", &["tea", "cups"]),
            ("u2", &["tea", "cups"]),
            ("u3", &["tea", "cups", "honey"]),
            ("u3", &["honey", "jam"]),
        ]);
        let (m, _) = fit(&data, 2);
        let tea = data.items.get("tea").unwrap();
        let honey = data.items.get("honey").unwrap();
        let t = m.together(tea, 5);
        assert_eq!(t.len(), 1);
        let rule = t[0].1.unwrap();
        assert_eq!(m.items.key(rule.item), Some("cups"));
        assert!((rule.confidence - 1.0).abs() < 1e-6);
        assert_eq!(rule.customers, 3);
        assert!(
            m.together(honey, 5).is_empty(),
            "honey's pairs rest on one customer"
        );
        let pop = m.popular(Some("FR"), 5);
        assert_eq!(
            keys(&m, &pop),
            ["tea", "cups"],
            "ties by item order; honey has one buyer"
        );
    }

    #[test]
    fn top_n_keeps_the_best_with_ties_by_item() {
        let mut t = TopN::new(2);
        for (i, s) in [(5, 1.0), (3, 2.0), (1, 1.0), (4, 2.0)] {
            t.offer(i, s, Source::Ease);
        }
        let got: Vec<u32> = t.finish().iter().map(|s| s.item).collect();
        assert_eq!(got, [3, 4]);
    }
}
