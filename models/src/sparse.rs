//! Design matrices for linear models whose one-hot part is sparse: a dense block (numeric
//! columns, missing indicators) beside a sparse block in compressed sparse row (CSR) form
//! (Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., §3.4; the layout of
//! `scipy.sparse.csr_matrix`).
//!
//! A one-hot encoded text column with thousands of levels has one non-zero per row, so the
//! products a solver needs, `Xβ` and `Xᵀr`, cost `O(rows × dense columns + non-zeros)` instead
//! of `O(rows × all columns)`. [`Design`] is the view the solvers in [`crate::logistic`] read:
//! columns `0..n_dense` are the dense block, `n_dense..n_cols` the sparse block.

use ndarray::linalg::{general_mat_mul, general_mat_vec_mul};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, Axis};

use crate::ModelError;

/// A sparse matrix in compressed sparse row form: row `i` holds the entries
/// `(indices[k], values[k])` for `k` in `indptr[i]..indptr[i + 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f64>,
}

impl CsrMatrix {
    /// Builds a matrix from its parts, checking them.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when `indptr` does not start at 0, decreases or does not end at
    /// the number of entries, when `indices` and `values` differ in length, or when a column
    /// index is not below `n_cols`; [`ModelError::InvalidInput`] on a non-finite value (naming
    /// its row).
    pub fn new(
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f64>,
    ) -> Result<Self, ModelError> {
        if indices.len() != values.len() {
            return Err(ModelError::Shape(format!(
                "{} column indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        if indptr.first() != Some(&0)
            || indptr.last() != Some(&indices.len())
            || indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(ModelError::Shape(
                "row pointers must start at 0, not decrease and end at the number of entries"
                    .into(),
            ));
        }
        if let Some(&j) = indices.iter().find(|&&j| j as usize >= n_cols) {
            return Err(ModelError::Shape(format!(
                "column index {j} out of range for {n_cols} columns"
            )));
        }
        let m = Self { n_cols, indptr, indices, values };
        if let Some(k) = m.values.iter().position(|v| !v.is_finite()) {
            let row = m.indptr.partition_point(|&p| p <= k) - 1;
            return Err(ModelError::InvalidInput(format!(
                "sparse entry at row {row} is {}; only finite values are allowed",
                m.values[k]
            )));
        }
        Ok(m)
    }

    /// A matrix with `n_rows` rows and no columns.
    pub fn empty(n_rows: usize) -> Self {
        Self { n_cols: 0, indptr: vec![0; n_rows + 1], indices: Vec::new(), values: Vec::new() }
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices and values of row `i`.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The transpose, also in CSR form (the columns of `self` as rows, rows ascending).
    pub fn transpose(&self) -> Self {
        let n_rows = self.n_rows();
        let mut counts = vec![0usize; self.n_cols + 1];
        for &j in &self.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.n_cols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0.0; self.nnz()];
        for i in 0..n_rows {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                let slot = &mut next[j as usize];
                indices[*slot] = i as u32;
                values[*slot] = v;
                *slot += 1;
            }
        }
        Self { n_cols: n_rows, indptr, indices, values }
    }

    /// The dense equivalent.
    pub fn to_dense(&self) -> Array2<f64> {
        let mut out = Array2::zeros((self.n_rows(), self.n_cols));
        for i in 0..self.n_rows() {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                out[[i, j as usize]] += v;
            }
        }
        out
    }
}

/// A design matrix `[dense | sparse]` as the logistic solvers read it.
#[derive(Debug, Clone, Copy)]
pub struct Design<'a> {
    dense: ArrayView2<'a, f64>,
    /// `None` when there is no sparse block (or it has no columns).
    sparse: Option<&'a CsrMatrix>,
}

impl<'a> Design<'a> {
    /// A dense design (no sparse block).
    pub fn dense(x: ArrayView2<'a, f64>) -> Self {
        Self { dense: x, sparse: None }
    }

    /// A dense block beside a sparse one.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the blocks have different row counts.
    pub fn new(dense: ArrayView2<'a, f64>, sparse: &'a CsrMatrix) -> Result<Self, ModelError> {
        if dense.nrows() != sparse.n_rows() {
            return Err(ModelError::Shape(format!(
                "dense block has {} rows, sparse block {}",
                dense.nrows(),
                sparse.n_rows()
            )));
        }
        Ok(Self { dense, sparse: (sparse.n_cols() > 0).then_some(sparse) })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.dense.nrows()
    }

    /// Number of columns (dense, then sparse).
    pub fn n_cols(&self) -> usize {
        self.dense.ncols() + self.sparse.map_or(0, CsrMatrix::n_cols)
    }

    /// Number of dense columns (the sparse ones follow them).
    pub fn n_dense(&self) -> usize {
        self.dense.ncols()
    }

    /// The dense block.
    pub fn dense_block(&self) -> ArrayView2<'a, f64> {
        self.dense
    }

    /// The sparse block, if it has columns.
    pub fn sparse_block(&self) -> Option<&'a CsrMatrix> {
        self.sparse
    }

    /// `z += X β` (`beta` has one entry per column).
    ///
    /// # Panics
    /// When the lengths of `beta` or `z` do not fit.
    pub fn gemv_add(&self, beta: ArrayView1<'_, f64>, z: &mut Array1<f64>) {
        let d = self.n_dense();
        let (bd, bs) = beta.split_at(Axis(0), d);
        general_mat_vec_mul(1.0, &self.dense, &bd, 1.0, z);
        if let Some(s) = self.sparse {
            let owned;
            let bs = match bs.as_slice() {
                Some(b) => b,
                None => {
                    owned = bs.to_vec();
                    &owned
                }
            };
            for (i, zi) in z.iter_mut().enumerate() {
                let (idx, val) = s.row(i);
                let mut acc = 0.0;
                for (&j, &v) in idx.iter().zip(val) {
                    acc += v * bs[j as usize];
                }
                *zi += acc;
            }
        }
    }

    /// `out = Xᵀ r`.
    ///
    /// # Panics
    /// When the lengths of `r` or `out` do not fit.
    pub fn t_gemv(&self, r: &Array1<f64>, out: ArrayViewMut1<'_, f64>) {
        let d = self.n_dense();
        let (od, mut os) = out.split_at(Axis(0), d);
        // Blocked matrix product: cache-friendly on the row-major dense block.
        let rv = r.view().insert_axis(Axis(1));
        let mut ov = od.insert_axis(Axis(1));
        general_mat_mul(1.0, &self.dense.t(), &rv, 0.0, &mut ov);
        if let Some(s) = self.sparse {
            os.fill(0.0);
            for (i, &ri) in r.iter().enumerate() {
                let (idx, val) = s.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    os[j as usize] += v * ri;
                }
            }
        }
    }

    /// One pass over the rows computing the margins `z = Xβ + intercept`, the residuals
    /// `r_i = residual(i, z_i)` and `out = Xᵀ r`. On a row-major dense block each row is read
    /// once for both products (while it is in cache), which halves the memory traffic of two
    /// separate matrix-vector products; otherwise it falls back to them.
    ///
    /// # Panics
    /// When the lengths of `beta`, `z`, `r` or `out` do not fit.
    pub fn fused_pass(
        &self,
        beta: ArrayView1<'_, f64>,
        intercept: f64,
        z: &mut Array1<f64>,
        r: &mut Array1<f64>,
        mut out: ArrayViewMut1<'_, f64>,
        mut residual: impl FnMut(usize, f64) -> f64,
    ) {
        let d = self.n_dense();
        let beta_vec;
        let beta = match beta.as_slice() {
            Some(b) => b,
            None => {
                beta_vec = beta.to_vec();
                &beta_vec
            }
        };
        let (Some(x), Some(g), Some(zs), Some(rs)) =
            (self.dense.as_slice(), out.as_slice_mut(), z.as_slice_mut(), r.as_slice_mut())
        else {
            z.fill(intercept);
            self.gemv_add(ArrayView1::from(beta), z);
            for (i, (ri, &zi)) in r.iter_mut().zip(z.iter()).enumerate() {
                *ri = residual(i, zi);
            }
            self.t_gemv(r, out);
            return;
        };
        let (bd, bs) = beta.split_at(d);
        let (gd, gs) = g.split_at_mut(d);
        gd.fill(0.0);
        gs.fill(0.0);
        for (i, (zi, ri)) in zs.iter_mut().zip(rs.iter_mut()).enumerate() {
            let row = &x[i * d..(i + 1) * d];
            let mut m = intercept + dot(row, bd);
            if let Some(s) = self.sparse {
                let (idx, val) = s.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    m += v * bs[j as usize];
                }
            }
            *zi = m;
            let res = residual(i, m);
            *ri = res;
            for (gj, &xj) in gd.iter_mut().zip(row) {
                *gj += res * xj;
            }
            if let Some(s) = self.sparse {
                let (idx, val) = s.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    gs[j as usize] += res * v;
                }
            }
        }
    }

    /// `out_j = Σ_i w_i x_ij²` for every column.
    ///
    /// # Panics
    /// When the lengths of `w` or `out` do not fit.
    pub fn weighted_col_squares(&self, w: &Array1<f64>, mut out: ArrayViewMut1<'_, f64>) {
        out.fill(0.0);
        let d = self.n_dense();
        for (row, &wi) in self.dense.rows().into_iter().zip(w) {
            for (o, &x) in out.iter_mut().zip(row) {
                *o += wi * x * x;
            }
        }
        if let Some(s) = self.sparse {
            for (i, &wi) in w.iter().enumerate() {
                let (idx, val) = s.row(i);
                for (&j, &v) in idx.iter().zip(val) {
                    out[d + j as usize] += wi * v * v;
                }
            }
        }
    }

    /// The whole design as one dense matrix (dense columns, then sparse ones).
    pub fn to_dense(&self) -> Array2<f64> {
        match self.sparse {
            None => self.dense.to_owned(),
            Some(s) => {
                let sd = s.to_dense();
                ndarray::concatenate(Axis(1), &[self.dense, sd.view()])
                    .unwrap_or_else(|_| self.dense.to_owned())
            }
        }
    }
}

/// `Σ a_k b_k` with four partial sums, so the compiler can keep them in vector lanes.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn sample() -> CsrMatrix {
        // [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
        CsrMatrix::new(3, vec![0, 2, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0]).unwrap()
    }

    #[test]
    fn csr_rows_dense_and_transpose() {
        let m = sample();
        assert_eq!((m.n_rows(), m.n_cols(), m.nnz()), (3, 3, 3));
        assert_eq!(m.row(0), (&[0u32, 2][..], &[1.0, 2.0][..]));
        assert_eq!(m.row(1).0.len(), 0);
        assert_eq!(m.to_dense(), array![[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]);
        assert_eq!(m.transpose().to_dense(), m.to_dense().t().to_owned());
        assert_eq!(CsrMatrix::empty(4).n_rows(), 4);
    }

    #[test]
    fn malformed_parts_are_errors() {
        assert!(CsrMatrix::new(3, vec![0, 1], vec![3], vec![1.0]).is_err());
        assert!(CsrMatrix::new(3, vec![0, 2], vec![1], vec![1.0]).is_err());
        assert!(CsrMatrix::new(3, vec![1, 1], vec![1], vec![1.0]).is_err());
        assert!(CsrMatrix::new(3, vec![0, 1], vec![1], vec![1.0, 2.0]).is_err());
        let err = CsrMatrix::new(3, vec![0, 1, 2], vec![1, 0], vec![1.0, f64::NAN])
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1"), "{err}");
    }

    #[test]
    fn products_match_the_dense_equivalent() {
        let s = sample();
        let dense = array![[0.5, -1.0], [2.0, 0.0], [1.0, 1.0]];
        let x = Design::new(dense.view(), &s).unwrap();
        assert_eq!((x.n_rows(), x.n_cols(), x.n_dense()), (3, 5, 2));
        let full = x.to_dense();
        let beta = array![1.0, 2.0, -1.0, 0.5, 3.0];
        let mut z = Array1::from_elem(3, 0.25);
        x.gemv_add(beta.view(), &mut z);
        let expected = full.dot(&beta) + 0.25;
        assert_eq!(z, expected);
        let r = array![1.0, -2.0, 0.5];
        let mut g = Array1::zeros(5);
        x.t_gemv(&r, g.view_mut());
        assert_eq!(g, full.t().dot(&r));
        // The fused pass: margins, residuals from them, and Xᵀ r in one sweep.
        let (mut z2, mut r2, mut g2) = (Array1::zeros(3), Array1::zeros(3), Array1::zeros(5));
        x.fused_pass(beta.view(), 0.25, &mut z2, &mut r2, g2.view_mut(), |i, zi| zi - i as f64);
        assert_eq!(z2, expected);
        let r_expected = &expected - &array![0.0, 1.0, 2.0];
        assert_eq!(r2, r_expected);
        let g_expected = full.t().dot(&r_expected);
        for (a, b) in g2.iter().zip(&g_expected) {
            assert!((a - b).abs() < 1e-12);
        }
        // A column-major dense block takes the two-product path with the same result.
        let fortran = dense.t().to_owned();
        let xf = Design::new(fortran.t(), &s).unwrap();
        let (mut z3, mut r3, mut g3) = (Array1::zeros(3), Array1::zeros(3), Array1::zeros(5));
        xf.fused_pass(beta.view(), 0.25, &mut z3, &mut r3, g3.view_mut(), |i, zi| zi - i as f64);
        assert_eq!(z3, expected);
        for (a, b) in g3.iter().zip(&g_expected) {
            assert!((a - b).abs() < 1e-12);
        }
        let w = array![1.0, 2.0, 0.5];
        let mut sq = Array1::zeros(5);
        x.weighted_col_squares(&w, sq.view_mut());
        assert_eq!(sq, full.mapv(|v| v * v).t().dot(&w));
        let short = CsrMatrix::empty(2);
        assert!(Design::new(dense.view(), &short).is_err());
        // A sparse block without columns is no sparse block.
        let none = CsrMatrix::empty(3);
        assert!(Design::new(dense.view(), &none).unwrap().sparse_block().is_none());
    }
}
