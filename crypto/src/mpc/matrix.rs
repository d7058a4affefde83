//! Products of a matrix `X` that one party owns (its features, `rows × cols`) with a vector
//! the other party holds (its share of the weights, or of the residuals): matrix triples with a
//! mask reused across steps (Mohassel and Zhang, SecureML, IEEE S&P 2017, §4.1).
//!
//! The dealer derives the mask `A` (`rows × cols`) from the **owner's** seed, so the owner
//! expands `A` itself and sends the partner `E = X − A` once ([`MatrixOwner::mask`]). At every
//! step the partner masks its vector with a fresh `b` expanded from **its** seed
//! (`v − b`, sent to the owner); the owner expands `c₀` from its seed; only the partner's
//! `c₁ = A_B·b − c₀` travels from the dealer (`A_B`: the step's rows of `A`). Then
//!
//! ```text
//! X_B·v  = (E_B + A_B)(f + b) = E_B·v  +  A_B·f + c₀  +  c₁          (forward, f = v − b)
//! X_Bᵀ·u = E_Bᵀ·u  +  A_Bᵀ·f′ + c₀′  +  c₁′                         (backward, f′ = u − b′)
//!          partner      owner          partner
//! ```
//!
//! The partner sees `E` (uniform: `A` is) and the owner sees `f`, `f′` (uniform: `b`, `b′`
//! are); both end with additive shares of the product. `E` is opened once; reusing `A` across
//! steps is safe because `E` is the only value ever opened against it.

use std::ops::Range;

use super::{Elem, MpcError, Seed, check_len, matvec, matvec_t};

const MASK: &[u8] = b"matrix/A";
const FWD_B: &str = "matrix/fwd/b";
const FWD_C: &str = "matrix/fwd/c";
const BWD_B: &str = "matrix/bwd/b";
const BWD_C: &str = "matrix/bwd/c";

fn check_rows(rows: &Range<usize>, n: usize) -> Result<(), MpcError> {
    if rows.start > rows.end || rows.end > n {
        return Err(MpcError::Shape(format!(
            "rows {}..{} do not lie within the matrix's {n} rows",
            rows.start, rows.end
        )));
    }
    Ok(())
}

/// The dealer's side of one owner's matrix triples.
#[derive(Debug)]
pub struct MatrixDealer {
    a: Vec<Elem>,
    rows: usize,
    cols: usize,
    owner: Seed,
    partner: Seed,
}

impl MatrixDealer {
    /// Triples for an owner's `rows × cols` matrix under `root` (the dealer's seed for this
    /// owner in this job).
    pub fn new(root: &Seed, rows: usize, cols: usize) -> Self {
        let owner = root.derive(b"matrix/owner");
        let partner = root.derive(b"matrix/partner");
        let a = owner.derive(MASK).expand(rows * cols);
        Self { a, rows, cols, owner, partner }
    }

    /// The owner's seed (sent once, to the owner only).
    pub fn owner_seed(&self) -> Seed {
        self.owner.clone()
    }

    /// The partner's seed (sent once, to the partner only).
    pub fn partner_seed(&self) -> Seed {
        self.partner.clone()
    }

    /// The partner's `c₁ = A_B·b − c₀` for the forward product of step `step` over `rows`.
    ///
    /// # Errors
    /// [`MpcError::Shape`] when `rows` is not within the matrix.
    pub fn forward(&self, step: u64, rows: Range<usize>) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        let m = rows.len();
        let b = self.partner.derive_at(FWD_B, step, 0).expand(self.cols);
        let c0 = self.owner.derive_at(FWD_C, step, 0).expand(m);
        let ab = matvec(&self.a[rows.start * self.cols..], m, self.cols, &b);
        Ok(ab.iter().zip(&c0).map(|(x, c)| x.wrapping_sub(*c)).collect())
    }

    /// The partner's `c₁′ = A_Bᵀ·b′ − c₀′` for the backward product of step `step` over `rows`.
    ///
    /// # Errors
    /// [`MpcError::Shape`] when `rows` is not within the matrix.
    pub fn backward(&self, step: u64, rows: Range<usize>) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        let m = rows.len();
        let b = self.partner.derive_at(BWD_B, step, 0).expand(m);
        let c0 = self.owner.derive_at(BWD_C, step, 0).expand(self.cols);
        let block = &self.a[rows.start * self.cols..rows.end * self.cols];
        let ab = matvec_t(block, self.cols, &b);
        Ok(ab.iter().zip(&c0).map(|(x, c)| x.wrapping_sub(*c)).collect())
    }
}

/// The owner's side: it knows `X` and `A`.
#[derive(Debug)]
pub struct MatrixOwner {
    a: Vec<Elem>,
    rows: usize,
    cols: usize,
    seed: Seed,
}

impl MatrixOwner {
    /// The owner's side of a `rows × cols` matrix, from its dealer seed.
    pub fn new(seed: Seed, rows: usize, cols: usize) -> Self {
        let a = seed.derive(MASK).expand(rows * cols);
        Self { a, rows, cols, seed }
    }

    /// `E = X − A` for the row-major encoded matrix `x` (sent to the partner once).
    ///
    /// # Errors
    /// [`MpcError::Length`] when `x` is not `rows × cols`.
    pub fn mask(&self, x: &[Elem]) -> Result<Vec<Elem>, MpcError> {
        check_len("feature matrix", self.a.len(), x.len())?;
        Ok(x.iter().zip(&self.a).map(|(x, a)| x.wrapping_sub(*a)).collect())
    }

    /// The owner's share of the cross term `X_B·v` of step `step`: `A_B·f + c₀`, where `f`
    /// is the partner's masked vector.
    ///
    /// # Errors
    /// [`MpcError`] when `rows` or `f` do not fit.
    pub fn forward(
        &self,
        step: u64,
        rows: Range<usize>,
        f: &[Elem],
    ) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        check_len("masked weights", self.cols, f.len())?;
        let m = rows.len();
        let c0 = self.seed.derive_at(FWD_C, step, 0).expand(m);
        let mut y = matvec(&self.a[rows.start * self.cols..], m, self.cols, f);
        for (y, c) in y.iter_mut().zip(&c0) {
            *y = y.wrapping_add(*c);
        }
        Ok(y)
    }

    /// The owner's share of the cross term `X_Bᵀ·u` of step `step`: `A_Bᵀ·f′ + c₀′`.
    ///
    /// # Errors
    /// [`MpcError`] when `rows` or `f` do not fit.
    pub fn backward(
        &self,
        step: u64,
        rows: Range<usize>,
        f: &[Elem],
    ) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        check_len("masked residuals", rows.len(), f.len())?;
        let c0 = self.seed.derive_at(BWD_C, step, 0).expand(self.cols);
        let block = &self.a[rows.start * self.cols..rows.end * self.cols];
        let mut y = matvec_t(block, self.cols, f);
        for (y, c) in y.iter_mut().zip(&c0) {
            *y = y.wrapping_add(*c);
        }
        Ok(y)
    }
}

/// The partner's side: it knows `E = X − A` and its own vectors.
#[derive(Debug)]
pub struct MatrixPartner {
    e: Vec<Elem>,
    rows: usize,
    cols: usize,
    seed: Seed,
}

impl MatrixPartner {
    /// The partner's side, from its dealer seed and the owner's masked matrix.
    ///
    /// # Errors
    /// [`MpcError::Length`] when `e` is not `rows × cols`.
    pub fn new(seed: Seed, e: Vec<Elem>, rows: usize, cols: usize) -> Result<Self, MpcError> {
        check_len("masked feature matrix", rows * cols, e.len())?;
        Ok(Self { e, rows, cols, seed })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `f = v − b` for the forward product of step `step` (sent to the owner).
    ///
    /// # Errors
    /// [`MpcError::Length`] when `v` does not have one value per column.
    pub fn forward_open(&self, step: u64, v: &[Elem]) -> Result<Vec<Elem>, MpcError> {
        check_len("weights", self.cols, v.len())?;
        let b = self.seed.derive_at(FWD_B, step, 0).expand(self.cols);
        Ok(v.iter().zip(&b).map(|(v, b)| v.wrapping_sub(*b)).collect())
    }

    /// The partner's share of `X_B·v`: `E_B·v + c₁`.
    ///
    /// # Errors
    /// [`MpcError`] when `rows`, `v` or the dealer's correction do not fit.
    pub fn forward(
        &self,
        rows: Range<usize>,
        v: &[Elem],
        correction: &[Elem],
    ) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        check_len("weights", self.cols, v.len())?;
        check_len("forward correction", rows.len(), correction.len())?;
        let mut y = matvec(&self.e[rows.start * self.cols..], rows.len(), self.cols, v);
        for (y, c) in y.iter_mut().zip(correction) {
            *y = y.wrapping_add(*c);
        }
        Ok(y)
    }

    /// `f′ = u − b′` for the backward product of step `step` over `rows` (sent to the owner).
    ///
    /// # Errors
    /// [`MpcError::Length`] when `u` does not have one value per row of the step.
    pub fn backward_open(
        &self,
        step: u64,
        rows: Range<usize>,
        u: &[Elem],
    ) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        check_len("residuals", rows.len(), u.len())?;
        let b = self.seed.derive_at(BWD_B, step, 0).expand(rows.len());
        Ok(u.iter().zip(&b).map(|(u, b)| u.wrapping_sub(*b)).collect())
    }

    /// The partner's share of `X_Bᵀ·u`: `E_Bᵀ·u + c₁′`.
    ///
    /// # Errors
    /// [`MpcError`] when `rows`, `u` or the dealer's correction do not fit.
    pub fn backward(
        &self,
        rows: Range<usize>,
        u: &[Elem],
        correction: &[Elem],
    ) -> Result<Vec<Elem>, MpcError> {
        check_rows(&rows, self.rows)?;
        check_len("residuals", rows.len(), u.len())?;
        check_len("backward correction", self.cols, correction.len())?;
        let block = &self.e[rows.start * self.cols..rows.end * self.cols];
        let mut y = matvec_t(block, self.cols, u);
        for (y, c) in y.iter_mut().zip(correction) {
            *y = y.wrapping_add(*c);
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::super::{Fixed, Side, reconstruct, share, truncate};
    use super::*;

    #[test]
    fn masked_matrix_products_match_plaintext_over_several_steps() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let fx = Fixed::default();
        let (n, d) = (300, 7);
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 37 % 101) as f64 - 50.0) / 13.0).collect();
        let dealer = MatrixDealer::new(&Seed::random(&mut rng), n, d);
        let owner = MatrixOwner::new(dealer.owner_seed(), n, d);
        let e = owner.mask(&fx.encode_all(&x)).unwrap();
        let partner = MatrixPartner::new(dealer.partner_seed(), e, n, d).unwrap();
        for (step, rows) in [(0u64, 0..300), (1, 40..140), (2, 299..300)] {
            let m = rows.len();
            // Forward: X_B·w with w shared (owner share w0, partner share w1).
            let w: Vec<f64> = (0..d).map(|j| (j as f64 - 3.0) * 0.37 + step as f64).collect();
            let (w0, w1) = share(&fx.encode_all(&w), &mut rng);
            let xr = fx.encode_all(&x[rows.start * d..rows.end * d]);
            let mut y0 = matvec(&xr, m, d, &w0);
            let f = partner.forward_open(step, &w1).unwrap();
            let cross = owner.forward(step, rows.clone(), &f).unwrap();
            super::super::add_assign(&mut y0, &cross).unwrap();
            let corr = dealer.forward(step, rows.clone()).unwrap();
            let mut y1 = partner.forward(rows.clone(), &w1, &corr).unwrap();
            truncate(Side::P0, &mut y0, fx.frac_bits);
            truncate(Side::P1, &mut y1, fx.frac_bits);
            let y = fx.decode_all(&reconstruct(&y0, &y1).unwrap());
            for (i, yi) in y.iter().enumerate() {
                let want: f64 = (0..d).map(|j| x[(rows.start + i) * d + j] * w[j]).sum();
                assert!((yi - want).abs() < 1e-4, "row {i}: {yi} vs {want}");
            }
            // Backward: X_Bᵀ·u with u shared.
            let u: Vec<f64> = (0..m).map(|i| ((i * 13 % 7) as f64 - 3.0) / 4.0).collect();
            let (u0, u1) = share(&fx.encode_all(&u), &mut rng);
            let mut g0 = matvec_t(&xr, d, &u0);
            let f = partner.backward_open(step, rows.clone(), &u1).unwrap();
            super::super::add_assign(&mut g0, &owner.backward(step, rows.clone(), &f).unwrap())
                .unwrap();
            let corr = dealer.backward(step, rows.clone()).unwrap();
            let mut g1 = partner.backward(rows.clone(), &u1, &corr).unwrap();
            truncate(Side::P0, &mut g0, fx.frac_bits);
            truncate(Side::P1, &mut g1, fx.frac_bits);
            let g = fx.decode_all(&reconstruct(&g0, &g1).unwrap());
            for (j, gj) in g.iter().enumerate() {
                let want: f64 = (0..m).map(|i| x[(rows.start + i) * d + j] * u[i]).sum();
                assert!((gj - want).abs() < 1e-3, "col {j}: {gj} vs {want}");
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let dealer = MatrixDealer::new(&Seed::random(&mut rng), 10, 3);
        let owner = MatrixOwner::new(dealer.owner_seed(), 10, 3);
        assert!(owner.mask(&[0; 29]).is_err());
        assert!(owner.forward(0, 0..11, &[0; 3]).is_err());
        assert!(owner.forward(0, 0..10, &[0; 2]).is_err());
        assert!(owner.backward(0, 2..4, &[0; 3]).is_err());
        assert!(dealer.forward(0, 5..11).is_err());
        assert!(MatrixPartner::new(dealer.partner_seed(), vec![0; 31], 10, 3).is_err());
        let p = MatrixPartner::new(dealer.partner_seed(), vec![0; 30], 10, 3).unwrap();
        assert!(p.forward(0..2, &[0; 3], &[0; 3]).is_err());
        assert!(p.backward(0..2, &[0; 2], &[0; 2]).is_err());
        // The partner's opened vectors are masked.
        assert_ne!(p.forward_open(0, &[5, 6, 7]).unwrap(), vec![5, 6, 7]);
    }
}
