//! Gradient histograms: per feature and bin, the sums of first- and second-order gradients and
//! the row count (Chen & Guestrin, "XGBoost", KDD 2016, Alg. 2; Ke et al., "LightGBM",
//! NeurIPS 2017, Alg. 1 and the histogram subtraction trick of §2).
//!
//! A [`Histogram`] is a flat array of [`GradStats`], feature after feature, each feature holding
//! its bins with the missing bin last. Histograms of disjoint row sets add up (that is what the
//! horizontal federation sums under secure aggregation), and a parent's histogram minus one
//! child's is the other child's, so each split needs only the smaller child built from rows.

use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};

use super::bins::{BinnedMatrix, MAX_BINS};
use crate::ModelError;

/// Sums of gradients, hessians and rows over a set of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GradStats {
    /// Sum of first-order gradients.
    pub sum_grad: f64,
    /// Sum of second-order gradients (hessians).
    pub sum_hess: f64,
    /// Number of rows.
    pub count: u32,
}

impl GradStats {
    /// Stats of the given rows (`grad` and `hess` are indexed by row).
    pub fn from_rows(rows: &[u32], grad: &[f64], hess: &[f64]) -> Self {
        let mut s = Self::default();
        for &r in rows {
            s.sum_grad += grad[r as usize];
            s.sum_hess += hess[r as usize];
        }
        s.count = rows.len() as u32;
        s
    }
}

impl Add for GradStats {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            sum_grad: self.sum_grad + o.sum_grad,
            sum_hess: self.sum_hess + o.sum_hess,
            count: self.count.wrapping_add(o.count),
        }
    }
}

impl AddAssign for GradStats {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl Sub for GradStats {
    type Output = Self;
    /// Difference of two sums; an empty difference is exactly zero (no rounding residue).
    fn sub(self, o: Self) -> Self {
        let count = self.count.saturating_sub(o.count);
        if count == 0 {
            return Self::default();
        }
        Self { sum_grad: self.sum_grad - o.sum_grad, sum_hess: self.sum_hess - o.sum_hess, count }
    }
}

impl SubAssign for GradStats {
    fn sub_assign(&mut self, o: Self) {
        *self = *self - o;
    }
}

/// Per feature and bin gradient statistics of one tree node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `offsets[f]..offsets[f + 1]` are feature `f`'s bins in `bins`.
    offsets: Vec<usize>,
    bins: Vec<GradStats>,
}

impl Histogram {
    /// An all-zero histogram with `bins_per_feature[f]` bins for feature `f` (missing bin
    /// included, as [`super::BinMapper::bins_per_feature`] reports them).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] when a feature has 0 or more than 256 bins.
    pub fn new(bins_per_feature: &[usize]) -> Result<Self, ModelError> {
        let mut offsets = Vec::with_capacity(bins_per_feature.len() + 1);
        offsets.push(0);
        for (f, &nb) in bins_per_feature.iter().enumerate() {
            if nb == 0 || nb > MAX_BINS + 1 {
                return Err(ModelError::InvalidInput(format!(
                    "feature {f}: {nb} bins, expected 1..={}",
                    MAX_BINS + 1
                )));
            }
            offsets.push(offsets[f] + nb);
        }
        let total = offsets[bins_per_feature.len()];
        Ok(Self { offsets, bins: vec![GradStats::default(); total] })
    }

    /// A histogram from its flat bins (feature after feature), for example after decoding a
    /// federated aggregate.
    ///
    /// # Errors
    /// As [`Histogram::new`], plus [`ModelError::Shape`] when `bins` has the wrong length.
    pub fn from_bins(bins_per_feature: &[usize], bins: Vec<GradStats>) -> Result<Self, ModelError> {
        let mut h = Self::new(bins_per_feature)?;
        if bins.len() != h.bins.len() {
            return Err(ModelError::Shape(format!(
                "{} histogram bins for a layout of {}",
                bins.len(),
                h.bins.len()
            )));
        }
        h.bins = bins;
        Ok(h)
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of bins of feature `f` (missing bin included).
    pub fn n_bins(&self, f: usize) -> usize {
        self.offsets[f + 1] - self.offsets[f]
    }

    /// Bins per feature (the layout).
    pub fn bins_per_feature(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Feature `f`'s bins, the missing bin last.
    pub fn feature(&self, f: usize) -> &[GradStats] {
        &self.bins[self.offsets[f]..self.offsets[f + 1]]
    }

    /// Feature `f`'s bins, mutable.
    pub fn feature_mut(&mut self, f: usize) -> &mut [GradStats] {
        &mut self.bins[self.offsets[f]..self.offsets[f + 1]]
    }

    /// All bins, feature after feature.
    pub fn bins(&self) -> &[GradStats] {
        &self.bins
    }

    /// Sum over the bins of feature `f` (the node's total when `f` was built).
    pub fn feature_total(&self, f: usize) -> GradStats {
        let mut s = GradStats::default();
        for b in self.feature(f) {
            s += *b;
        }
        s
    }

    /// Sets every bin to zero.
    pub fn clear(&mut self) {
        self.bins.fill(GradStats::default());
    }

    fn check_layout(&self, other: &Self) -> Result<(), ModelError> {
        if self.offsets != other.offsets {
            return Err(ModelError::Shape("histograms have different bin layouts".into()));
        }
        Ok(())
    }

    /// The sibling's histogram: `parent - child`, bin by bin (the histogram subtraction trick).
    /// Bins whose count drops to zero are exactly zero.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the layouts differ.
    pub fn subtract(parent: &Self, child: &Self) -> Result<Self, ModelError> {
        let mut out = parent.clone();
        out.subtract_in_place(child)?;
        Ok(out)
    }

    /// `self -= child`, bin by bin (turns a parent's histogram into the sibling's in place).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the layouts differ.
    pub fn subtract_in_place(&mut self, child: &Self) -> Result<(), ModelError> {
        self.check_layout(child)?;
        for (p, c) in self.bins.iter_mut().zip(&child.bins) {
            *p -= *c;
        }
        Ok(())
    }

    /// `self -= child` on the listed features only (the others are left as they are).
    pub(crate) fn subtract_features(&mut self, child: &Self, features: &[usize]) {
        for &f in features {
            let (a, b) = (self.offsets[f], self.offsets[f + 1]);
            for (p, c) in self.bins[a..b].iter_mut().zip(&child.bins[a..b]) {
                *p -= *c;
            }
        }
    }

    /// `self += other`, bin by bin (pooling histograms of disjoint row sets).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the layouts differ.
    pub fn merge(&mut self, other: &Self) -> Result<(), ModelError> {
        self.check_layout(other)?;
        for (p, c) in self.bins.iter_mut().zip(&other.bins) {
            *p += *c;
        }
        Ok(())
    }
}

/// Builds the histogram of the rows `rows` on the features `features` into `out`.
///
/// `grad` and `hess` are indexed by row (length `binned.n_rows()`). The listed features of
/// `out` are overwritten; the others are left untouched (and must not be read).
///
/// # Errors
/// [`ModelError::Shape`] when `grad`/`hess` lengths, the histogram layout or a feature index
/// disagree with `binned`; [`ModelError::InvalidInput`] on a row index out of range.
pub fn build_histogram(
    binned: &BinnedMatrix,
    rows: &[u32],
    grad: &[f64],
    hess: &[f64],
    features: &[usize],
    out: &mut Histogram,
) -> Result<(), ModelError> {
    let n = binned.n_rows();
    if grad.len() != n || hess.len() != n {
        return Err(ModelError::Shape(format!(
            "{} gradients and {} hessians for {n} rows",
            grad.len(),
            hess.len()
        )));
    }
    if out.bins_per_feature() != binned.bins_per_feature() {
        return Err(ModelError::Shape("histogram layout differs from the binned matrix".into()));
    }
    if let Some(&f) = features.iter().find(|&&f| f >= binned.n_features()) {
        return Err(ModelError::Shape(format!(
            "feature {f} out of {} features",
            binned.n_features()
        )));
    }
    if let Some(&r) = rows.iter().find(|&&r| r as usize >= n) {
        return Err(ModelError::InvalidInput(format!("row {r} out of {n} rows")));
    }
    let mut gh = Vec::with_capacity(rows.len());
    gh.extend(rows.iter().map(|&r| [grad[r as usize], hess[r as usize]]));
    build_histogram_ordered(binned, rows, &gh, features, out);
    Ok(())
}

/// [`build_histogram`] with the gradients already gathered in row order ("ordered gradients",
/// LightGBM): `gh[i]` holds `[grad, hess]` of row `rows[i]`. Inputs are trusted.
pub(crate) fn build_histogram_ordered(
    binned: &BinnedMatrix,
    rows: &[u32],
    gh: &[[f64; 2]],
    features: &[usize],
    out: &mut Histogram,
) {
    debug_assert_eq!(rows.len(), gh.len());
    for &f in features {
        let col = binned.column(f);
        let hist = out.feature_mut(f);
        hist.fill(GradStats::default());
        if hist.len() <= SMALL_FEATURE_BINS {
            accumulate_small(col, rows, gh, hist);
        } else {
            accumulate(col, rows, gh, hist);
        }
    }
}

/// Features with at most this many bins are accumulated into several interleaved copies, so
/// consecutive rows that hit the same bin do not wait on each other's store.
const SMALL_FEATURE_BINS: usize = 32;

/// Plain accumulation: one pass over the rows.
#[inline]
fn accumulate(col: &[u8], rows: &[u32], gh: &[[f64; 2]], hist: &mut [GradStats]) {
    for (&r, &[g, h]) in rows.iter().zip(gh) {
        let s = &mut hist[col[r as usize] as usize];
        s.sum_grad += g;
        s.sum_hess += h;
        s.count += 1;
    }
}

/// Accumulation into four interleaved copies of a small histogram, summed at the end.
#[inline]
fn accumulate_small(col: &[u8], rows: &[u32], gh: &[[f64; 2]], hist: &mut [GradStats]) {
    const LANES: usize = 4;
    let mut acc = [[[0.0f64; 2]; SMALL_FEATURE_BINS]; LANES];
    let mut cnt = [[0u32; SMALL_FEATURE_BINS]; LANES];
    let mut rc = rows.chunks_exact(LANES);
    let mut gc = gh.chunks_exact(LANES);
    for (r4, g4) in (&mut rc).zip(&mut gc) {
        for l in 0..LANES {
            let b = col[r4[l] as usize] as usize & (SMALL_FEATURE_BINS - 1);
            acc[l][b][0] += g4[l][0];
            acc[l][b][1] += g4[l][1];
            cnt[l][b] += 1;
        }
    }
    for (&r, &[g, h]) in rc.remainder().iter().zip(gc.remainder()) {
        let b = col[r as usize] as usize & (SMALL_FEATURE_BINS - 1);
        acc[0][b][0] += g;
        acc[0][b][1] += h;
        cnt[0][b] += 1;
    }
    for (b, s) in hist.iter_mut().enumerate() {
        for l in 0..LANES {
            s.sum_grad += acc[l][b][0];
            s.sum_hess += acc[l][b][1];
            s.count += cnt[l][b];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gbdt::bins::BinKind;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random binned matrix with a 2-bin, a 7-bin, a 40-bin and a 256-bin feature.
    fn random_binned(n: usize, seed: u64) -> (BinnedMatrix, Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nb = vec![2usize, 7, 40, 256];
        let mut cols = Vec::with_capacity(n * nb.len());
        for &k in &nb {
            cols.extend((0..n).map(|_| rng.random_range(0..k) as u8));
        }
        let kinds = vec![BinKind::Numeric; nb.len()];
        let b = BinnedMatrix::from_columns(n, nb, kinds, cols).unwrap();
        let g = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let h = (0..n).map(|_| rng.random_range(0.0..0.25)).collect();
        (b, g, h)
    }

    #[test]
    fn histogram_matches_brute_force_sums() {
        let n = 1003;
        let (b, g, h) = random_binned(n, 7);
        let rows: Vec<u32> = (0..n as u32).filter(|r| r % 3 != 1).collect();
        let mut hist = Histogram::new(b.bins_per_feature()).unwrap();
        build_histogram(&b, &rows, &g, &h, &[0, 1, 2, 3], &mut hist).unwrap();
        for f in 0..4 {
            for bin in 0..b.bins_per_feature()[f] {
                let mut e = GradStats::default();
                for &r in &rows {
                    if b.column(f)[r as usize] as usize == bin {
                        e.sum_grad += g[r as usize];
                        e.sum_hess += h[r as usize];
                        e.count += 1;
                    }
                }
                let got = hist.feature(f)[bin];
                assert_eq!(got.count, e.count, "feature {f} bin {bin}");
                assert!((got.sum_grad - e.sum_grad).abs() < 1e-9);
                assert!((got.sum_hess - e.sum_hess).abs() < 1e-9);
            }
            let total = hist.feature_total(f);
            assert_eq!(total.count as usize, rows.len());
        }
    }

    #[test]
    fn subtraction_equals_direct_build() {
        let n = 500;
        let (b, g, h) = random_binned(n, 11);
        let all: Vec<u32> = (0..n as u32).collect();
        let left: Vec<u32> = all.iter().copied().filter(|r| r % 5 < 2).collect();
        let right: Vec<u32> = all.iter().copied().filter(|r| r % 5 >= 2).collect();
        let feats = [0, 1, 2, 3];
        let mut parent = Histogram::new(b.bins_per_feature()).unwrap();
        let mut lh = parent.clone();
        let mut rh = parent.clone();
        build_histogram(&b, &all, &g, &h, &feats, &mut parent).unwrap();
        build_histogram(&b, &left, &g, &h, &feats, &mut lh).unwrap();
        build_histogram(&b, &right, &g, &h, &feats, &mut rh).unwrap();
        let sib = Histogram::subtract(&parent, &lh).unwrap();
        for (x, y) in sib.bins().iter().zip(rh.bins()) {
            assert_eq!(x.count, y.count);
            assert!((x.sum_grad - y.sum_grad).abs() < 1e-9);
            assert!((x.sum_hess - y.sum_hess).abs() < 1e-9);
        }
        // Merging the two children gives the parent back.
        let mut pooled = lh.clone();
        pooled.merge(&rh).unwrap();
        for (x, y) in pooled.bins().iter().zip(parent.bins()) {
            assert_eq!(x.count, y.count);
            assert!((x.sum_grad - y.sum_grad).abs() < 1e-9);
        }
        let other = Histogram::new(&[3]).unwrap();
        assert!(Histogram::subtract(&parent, &other).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (b, g, h) = random_binned(10, 1);
        let mut hist = Histogram::new(b.bins_per_feature()).unwrap();
        assert!(build_histogram(&b, &[10], &g, &h, &[0], &mut hist).is_err());
        assert!(build_histogram(&b, &[0], &g, &h, &[4], &mut hist).is_err());
        assert!(build_histogram(&b, &[0], &g[..5], &h, &[0], &mut hist).is_err());
        assert!(Histogram::new(&[0]).is_err());
        assert!(Histogram::new(&[257]).is_err());
    }
}
