//! Frequent itemsets by FP-growth (Han, Pei and Yin 2000) and association
//! rules with support, confidence and lift.
//!
//! The miner is exact: it finds every itemset whose support count reaches
//! the minimum, like Apriori, without candidate generation. It is pinned
//! against the published counts on the Groceries data (see the tests and
//! `tests/api/recs.rs`): support 0.006 / confidence 0.25 gives 463 rules,
//! support 0.001 / confidence 0.5 gives 5,668.
//!
//! Support thresholds are fractions of the number of transactions and are
//! compared as `count / n >= min_support` (as arules and mlxtend do); a rule
//! `A → c` has a non-empty antecedent and one consequent item.

use std::collections::HashMap;

/// One frequent itemset: items sorted ascending, with its support count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Itemset {
    pub items: Vec<u32>,
    pub count: u32,
}

/// One association rule `antecedent → consequent`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub antecedent: Vec<u32>,
    pub consequent: u32,
    /// Transactions holding antecedent and consequent.
    pub count: u32,
    pub support: f64,
    pub confidence: f64,
    pub lift: f64,
}

/// The smallest count with `count / n >= min_support`.
pub fn min_count(n: usize, min_support: f64) -> u32 {
    let mut c = (min_support * n as f64).floor().max(0.0) as u32;
    while (c as f64) / (n as f64) < min_support {
        c += 1;
    }
    c.max(1)
}

struct Node {
    item: u32,
    count: u32,
    parent: usize,
    children: Vec<(u32, usize)>,
}

/// An FP-tree over items already ranked (rank 0 = most frequent).
struct Tree {
    nodes: Vec<Node>,
    /// Per rank, the nodes holding that item.
    header: Vec<Vec<usize>>,
}

impl Tree {
    fn new(ranks: usize) -> Self {
        Self {
            nodes: vec![Node {
                item: u32::MAX,
                count: 0,
                parent: 0,
                children: Vec::new(),
            }],
            header: vec![Vec::new(); ranks],
        }
    }

    /// Inserts a path of ranks (ascending) with weight `count`.
    fn insert(&mut self, path: &[u32], count: u32) {
        let mut at = 0usize;
        for &r in path {
            let existing = self
                .nodes
                .get(at)
                .and_then(|n| n.children.iter().find(|(i, _)| *i == r).map(|(_, c)| *c));
            at = match existing {
                Some(child) => child,
                None => {
                    let id = self.nodes.len();
                    self.nodes.push(Node {
                        item: r,
                        count: 0,
                        parent: at,
                        children: Vec::new(),
                    });
                    if let Some(n) = self.nodes.get_mut(at) {
                        n.children.push((r, id));
                    }
                    if let Some(h) = self.header.get_mut(r as usize) {
                        h.push(id);
                    }
                    id
                }
            };
            if let Some(n) = self.nodes.get_mut(at) {
                n.count += count;
            }
        }
    }

    /// The prefix paths (ranks, root first) of every node of rank `r`.
    fn conditional_base(&self, r: usize) -> Vec<(Vec<u32>, u32)> {
        let mut out = Vec::new();
        for &id in self.header.get(r).map(Vec::as_slice).unwrap_or(&[]) {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let mut path = Vec::new();
            let mut at = node.parent;
            while at != 0 {
                let Some(p) = self.nodes.get(at) else { break };
                path.push(p.item);
                at = p.parent;
            }
            path.reverse();
            out.push((path, node.count));
        }
        out
    }
}

/// Every itemset with support count at least `min_count` and at most
/// `max_len` items (`0` = no limit). Items of a transaction must be
/// distinct.
pub fn frequent_itemsets(
    transactions: &[Vec<u32>],
    min_count: u32,
    max_len: usize,
) -> Vec<Itemset> {
    let weighted: Vec<(Vec<u32>, u32)> = transactions.iter().map(|t| (t.clone(), 1)).collect();
    let mut out = Vec::new();
    let max_len = if max_len == 0 { usize::MAX } else { max_len };
    mine(&weighted, min_count, max_len, &mut Vec::new(), &mut out);
    for set in &mut out {
        set.items.sort_unstable();
    }
    out
}

/// FP-growth on weighted transactions of item ids: ranks the frequent
/// items, builds the tree, and recurses on each item's conditional base.
fn mine(
    transactions: &[(Vec<u32>, u32)],
    min_count: u32,
    max_len: usize,
    suffix: &mut Vec<u32>,
    out: &mut Vec<Itemset>,
) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for (t, w) in transactions {
        for &i in t {
            *counts.entry(i).or_insert(0) += w;
        }
    }
    let mut frequent: Vec<(u32, u32)> = counts
        .into_iter()
        .filter(|&(_, c)| c >= min_count)
        .collect();
    if frequent.is_empty() {
        return;
    }
    // Most frequent first; ties by item id, so the tree is deterministic.
    frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rank: HashMap<u32, u32> = frequent
        .iter()
        .enumerate()
        .map(|(r, &(i, _))| (i, r as u32))
        .collect();
    let mut tree = Tree::new(frequent.len());
    let mut path = Vec::new();
    for (t, w) in transactions {
        path.clear();
        path.extend(t.iter().filter_map(|i| rank.get(i).copied()));
        path.sort_unstable();
        tree.insert(&path, *w);
    }
    // Least frequent first (any order is correct; this one keeps bases small).
    for r in (0..frequent.len()).rev() {
        let Some(&(item, count)) = frequent.get(r) else {
            continue;
        };
        suffix.push(item);
        out.push(Itemset {
            items: suffix.clone(),
            count,
        });
        if suffix.len() < max_len {
            let base: Vec<(Vec<u32>, u32)> = tree
                .conditional_base(r)
                .into_iter()
                .filter(|(p, _)| !p.is_empty())
                .map(|(p, c)| {
                    let items = p
                        .into_iter()
                        .filter_map(|rk| frequent.get(rk as usize).map(|&(i, _)| i))
                        .collect();
                    (items, c)
                })
                .collect();
            if !base.is_empty() {
                mine(&base, min_count, max_len, suffix, out);
            }
        }
        suffix.pop();
    }
}

/// Rules with a one-item consequent and confidence at least
/// `min_confidence`, from every itemset of two or more items. `n` is the
/// number of transactions.
pub fn rules(itemsets: &[Itemset], n: usize, min_confidence: f64) -> Vec<Rule> {
    let support: HashMap<&[u32], u32> = itemsets
        .iter()
        .map(|s| (s.items.as_slice(), s.count))
        .collect();
    let n_f = n.max(1) as f64;
    let mut out = Vec::new();
    let mut antecedent = Vec::new();
    for set in itemsets.iter().filter(|s| s.items.len() >= 2) {
        for (pos, &consequent) in set.items.iter().enumerate() {
            antecedent.clear();
            antecedent.extend(
                set.items
                    .iter()
                    .enumerate()
                    .filter(|&(p, _)| p != pos)
                    .map(|(_, &i)| i),
            );
            // Every subset of a frequent itemset is frequent, so both exist.
            let (Some(&a), Some(&c)) = (
                support.get(antecedent.as_slice()),
                support.get([consequent].as_slice()),
            ) else {
                continue;
            };
            let confidence = f64::from(set.count) / f64::from(a);
            if confidence >= min_confidence {
                out.push(Rule {
                    antecedent: antecedent.clone(),
                    consequent,
                    count: set.count,
                    support: f64::from(set.count) / n_f,
                    confidence,
                    lift: confidence / (f64::from(c) / n_f),
                });
            }
        }
    }
    out
}

/// Mines itemsets and rules in one call, thresholds as fractions.
pub fn mine_rules(
    transactions: &[Vec<u32>],
    min_support: f64,
    min_confidence: f64,
    max_len: usize,
) -> Vec<Rule> {
    let sets = frequent_itemsets(
        transactions,
        min_count(transactions.len(), min_support),
        max_len,
    );
    rules(&sets, transactions.len(), min_confidence)
}

/// Reads baskets, one per line, items comma separated (the Groceries
/// `groceries_baskets.csv` layout), into item ids.
pub fn read_basket_lines(text: &str) -> Vec<Vec<u32>> {
    let mut vocab = super::data::Vocab::default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut t: Vec<u32> = l
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| vocab.intern(s))
                .collect();
            t.sort_unstable();
            t.dedup();
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Han et al.: five transactions, min count 3.
    fn han() -> Vec<Vec<u32>> {
        // f=0 c=1 a=2 b=3 m=4 p=5 (other items are infrequent: 10..)
        vec![
            vec![0, 2, 1, 10, 11, 12, 4, 5],
            vec![2, 3, 1, 0, 13, 4, 14],
            vec![3, 0, 15, 16, 17],
            vec![3, 1, 18, 19, 5],
            vec![2, 0, 1, 20, 21, 5, 4, 22],
        ]
    }

    #[test]
    fn fp_growth_finds_the_textbook_itemsets() {
        let mut t = han();
        for x in &mut t {
            x.sort_unstable();
        }
        let sets = frequent_itemsets(&t, 3, 0);
        let find = |items: &[u32]| sets.iter().find(|s| s.items == items).map(|s| s.count);
        assert_eq!(find(&[0]), Some(4));
        assert_eq!(find(&[1]), Some(4));
        assert_eq!(find(&[0, 1, 2, 4]), Some(3));
        assert_eq!(find(&[1, 5]), Some(3));
        assert_eq!(find(&[0, 5]), None);
        // f c a b m p, fc fa fm ca cm am cp, fca fcm fam cam, fcam = 18.
        assert_eq!(sets.len(), 18);
        // With a length cap only singles and pairs.
        assert_eq!(frequent_itemsets(&t, 3, 2).len(), 6 + 7);
    }

    #[test]
    fn rules_carry_support_confidence_and_lift() {
        // 4 baskets: {a,b} twice, {a} once, {b,c} once.
        let t = vec![vec![0, 1], vec![0, 1], vec![0], vec![1, 2]];
        let r = mine_rules(&t, 0.5, 0.6, 0);
        // a→b: 2/3 confidence; b→a: 2/3; lift = (2/3)/(3/4).
        assert_eq!(r.len(), 2);
        let ab = r.iter().find(|r| r.antecedent == [0]).unwrap();
        assert_eq!(ab.consequent, 1);
        assert_eq!(ab.count, 2);
        assert!((ab.support - 0.5).abs() < 1e-12);
        assert!((ab.confidence - 2.0 / 3.0).abs() < 1e-12);
        assert!((ab.lift - (2.0 / 3.0) / 0.75).abs() < 1e-12);
    }

    #[test]
    fn min_count_is_the_smallest_count_reaching_the_fraction() {
        assert_eq!(min_count(9835, 0.006), 60);
        assert_eq!(min_count(9835, 0.001), 10);
        assert_eq!(min_count(4, 0.5), 2);
    }
}
