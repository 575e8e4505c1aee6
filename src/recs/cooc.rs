//! Distinct-customer co-occurrence counts and the item-to-item similarity
//! built on them ("customers who bought X also bought Y").
//!
//! `count(i, j)` is the number of distinct customers whose history holds
//! both items: the quantity the k rule is about. Similarity is cosine on
//! those counts, `C_ij / sqrt(C_ii · C_jj)`; a neighbour is kept only when
//! `C_ij >= k`.

use super::sparse::SparseRows;

/// Dense items × items counts (build time only; the served model keeps the
/// sparse results).
pub struct Cooccurrence {
    n: usize,
    counts: Vec<u32>,
}

impl Cooccurrence {
    /// From each customer's distinct items.
    pub fn from_item_sets(sets: &[Vec<u32>], n: usize) -> Self {
        let mut counts = vec![0u32; n * n];
        for s in sets {
            for &i in s {
                let base = i as usize * n;
                for &j in s {
                    if let Some(c) = counts.get_mut(base + j as usize) {
                        *c += 1;
                    }
                }
            }
        }
        Self { n, counts }
    }

    pub fn items(&self) -> usize {
        self.n
    }

    /// Customers holding both `i` and `j` (`i == j`: customers holding `i`).
    pub fn count(&self, i: u32, j: u32) -> u32 {
        self.counts
            .get(i as usize * self.n + j as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Up to `per_item` cosine neighbours per item, best first, each
    /// resting on at least `k` customers.
    pub fn neighbours(&self, per_item: usize, k: u32) -> SparseRows {
        let mut rows = SparseRows::with_rows(self.n);
        let mut cand: Vec<(u32, f32)> = Vec::new();
        for i in 0..self.n as u32 {
            cand.clear();
            let ci = self.count(i, i);
            for j in 0..self.n as u32 {
                if j == i {
                    continue;
                }
                let cij = self.count(i, j);
                if cij == 0 || cij < k {
                    continue;
                }
                let cj = self.count(j, j);
                let sim = f64::from(cij) / (f64::from(ci) * f64::from(cj)).sqrt();
                cand.push((j, sim as f32));
            }
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(per_item);
            rows.push_row(cand.iter().copied());
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_distinct_customers_and_neighbours_obey_k() {
        // Items 0,1 bought together by three customers, 0,2 by one.
        let sets = vec![vec![0, 1], vec![0, 1], vec![0, 1, 2], vec![2]];
        let c = Cooccurrence::from_item_sets(&sets, 3);
        assert_eq!(c.count(0, 1), 3);
        assert_eq!(c.count(0, 2), 1);
        assert_eq!(c.count(2, 2), 2);
        let n = c.neighbours(5, 2);
        assert_eq!(n.row(0).0, &[1]);
        assert!((n.row(0).1[0] - 1.0).abs() < 1e-6); // 3 / sqrt(3·3)
        assert!(
            n.row(2).0.is_empty(),
            "the pair of one customer is not served"
        );
        let all = c.neighbours(5, 1);
        assert_eq!(all.row(0).0, &[1, 2]);
    }
}
