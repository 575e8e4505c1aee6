//! EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse
//! Data"): a closed-form item-item model. With `X` the customer × item
//! matrix and `G = XᵀX`, `P = (G + λI)⁻¹` and `B = I − P·diag(1/diag(P))`
//! with a zero diagonal; a customer's scores are `x_u·B`.
//!
//! The Gram matrix is dense (items × items), solved by one Cholesky
//! factorization in `faer`. Weights are kept only for item pairs that at
//! least `k` distinct customers bought together (the k rule: no
//! recommendation rests on fewer than k people's baskets), stored sparse.

use anyhow::Context;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};

use super::cooc::Cooccurrence;
use super::sparse::SparseRows;

/// Fits EASE on the given customer profiles (`(item, weight)` lists) over
/// `n_items` items. Entries `(i, j)` whose co-occurrence count is below
/// `k` are dropped (`k = 0` keeps every entry, as in the paper).
pub fn fit(
    profiles: &[Vec<(u32, f32)>],
    n_items: usize,
    lambda: f64,
    cooc: &Cooccurrence,
    k: u32,
) -> anyhow::Result<SparseRows> {
    let n = n_items;
    if n == 0 {
        return Ok(SparseRows::with_rows(0));
    }
    let mut gram = vec![0f64; n * n];
    for p in profiles {
        for &(i, wi) in p {
            for &(j, wj) in p {
                if let Some(g) = gram.get_mut(i as usize * n + j as usize) {
                    *g += f64::from(wi) * f64::from(wj);
                }
            }
        }
    }
    let g = Mat::<f64>::from_fn(n, n, |i, j| {
        let v = gram.get(i * n + j).copied().unwrap_or(0.0);
        if i == j {
            v + lambda
        } else {
            v
        }
    });
    drop(gram);
    let p = g
        .llt(Side::Lower)
        .map_err(|e| anyhow::anyhow!("EASE: Gram matrix not positive definite: {e:?}"))
        .context("EASE fit")?
        .inverse();
    drop(g);
    let diag: Vec<f64> = (0..n)
        .map(|j| p.col_as_slice(j).get(j).copied().unwrap_or(1.0))
        .collect();
    // Row i of B is column i of P (P is symmetric) scaled by -1/P_jj.
    let mut rows = SparseRows::with_rows(n);
    for i in 0..n {
        let col = p.col_as_slice(i);
        let i32_ = i as u32;
        let row = col
            .iter()
            .zip(&diag)
            .enumerate()
            .filter_map(|(j, (&v, &d))| {
                let j = j as u32;
                let keep = j != i32_ && (k == 0 || cooc.count(i32_, j) >= k);
                keep.then(|| (j, (-v / d) as f32))
            });
        rows.push_row(row);
    }
    Ok(rows)
}
