//! Compressed sparse rows of `f32` weights: the in-memory form of every
//! item-item model (EASE weights, neighbours), small and fast to scan.

/// Rows of `(column, weight)` pairs, stored contiguously.
#[derive(Clone, Debug, Default)]
pub struct SparseRows {
    offsets: Vec<u32>,
    cols: Vec<u32>,
    vals: Vec<f32>,
}

impl SparseRows {
    pub fn with_rows(n: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Self {
            offsets,
            cols: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// Appends the next row.
    pub fn push_row(&mut self, row: impl IntoIterator<Item = (u32, f32)>) {
        for (c, v) in row {
            self.cols.push(c);
            self.vals.push(v);
        }
        self.offsets
            .push(u32::try_from(self.cols.len()).unwrap_or(u32::MAX));
    }

    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Row `i` as parallel slices (empty when out of range).
    pub fn row(&self, i: u32) -> (&[u32], &[f32]) {
        let i = i as usize;
        let (Some(&a), Some(&b)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return (&[], &[]);
        };
        let (a, b) = (a as usize, b as usize);
        (
            self.cols.get(a..b).unwrap_or(&[]),
            self.vals.get(a..b).unwrap_or(&[]),
        )
    }

    /// `out += w · row(i)`.
    pub fn axpy(&self, i: u32, w: f32, out: &mut [f32]) {
        let (cols, vals) = self.row(i);
        for (&c, &v) in cols.iter().zip(vals) {
            if let Some(o) = out.get_mut(c as usize) {
                *o += w * v;
            }
        }
    }

    /// Bytes held by the arrays.
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 4 + self.cols.capacity() * 4 + self.vals.capacity() * 4
    }
}
