//! Best-split search on a gradient histogram with second-order gain (Chen & Guestrin,
//! "XGBoost", KDD 2016, eq. 7 and Alg. 3 "sparsity-aware split finding").
//!
//! For a node with sums `G, H` split into `G_L, H_L` and `G_R, H_R`:
//!
//! `gain = ½ [G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)] − γ`
//!
//! with `λ = lambda_l2`, `γ = min_split_gain`. A split is admissible when each child has at
//! least `min_data_in_leaf` rows (and at least one) and a hessian sum of at least
//! `min_child_weight`, and it is taken only when `gain > 0`.
//!
//! - **Numeric features** scan the thresholds `bin <= t` twice, once with the missing bin on the
//!   right and once on the left, and keep the better direction as the learned default (XGBoost's
//!   sparsity-aware scan). "All values left, missing right" is a candidate too. When the node has
//!   no missing rows, missing values at prediction time follow the child with more rows.
//! - **Categorical features** follow LightGBM's `FindBestThresholdCategoricalInner`
//!   (`src/treelearner/feature_histogram.cpp`, LightGBM 4.x), with the missing bin as one more
//!   category:
//!   - with at most `max_cat_to_onehot` bins (missing bin included, as LightGBM counts its NaN
//!     bin), **one-vs-rest**: each non-empty category alone on the left, gain with `λ`;
//!   - otherwise **many-vs-many**: the categories with at least `cat_smooth` rows (and at least
//!     one) are sorted by the smoothed ratio `G/(H + cat_smooth)` and the prefixes of that order
//!     are scanned from both ends as left sets, with at most
//!     `min(max_cat_threshold, ⌈used/2⌉)` categories on the left; a prefix is evaluated only
//!     once the categories added since the last evaluated one hold `min_data_per_group` rows,
//!     and the right side must keep `min_data_per_group` rows; the children are scored with
//!     `λ + cat_l2` (the parent with `λ`), and the leaves such a split creates get weights
//!     `−G/(H + λ + cat_l2)` ([`SplitCandidate::extra_l2`]). By Fisher's 1958 result the
//!     optimal binary partition of the second-order objective is a prefix of the ratio order
//!     when smoothing and `λ` are 0.
//!
//!   Categories not on the left (too small, empty, unseen at training) go right.
//!   Differences from LightGBM: row counts are exact (LightGBM estimates them from hessian
//!   sums), and missing values form a category that may go left (LightGBM always sends them
//!   right); when a node has no missing rows, missing values go right, as in LightGBM.
//!
//! Ties keep the first candidate in feature order, then threshold order, so results are
//! deterministic. The function is pure: the federated trainers call it on summed (horizontal) or
//! decrypted (vertical) histograms.

use serde::{Deserialize, Serialize};

use super::bins::BinKind;
use super::histogram::{GradStats, Histogram};

/// Constraints and regularisation for split finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitParams {
    /// L2 penalty `λ` on leaf weights.
    pub lambda_l2: f64,
    /// Minimum hessian sum in each child.
    pub min_child_weight: f64,
    /// Minimum rows in each child.
    pub min_data_in_leaf: u32,
    /// `γ`: subtracted from every gain; splits need a positive result.
    pub min_split_gain: f64,
    /// Many-vs-many categorical splits: rows a group of categories must add before the next
    /// left set is evaluated, and rows the right side keeps (LightGBM's `min_data_per_group`).
    #[serde(default = "default_min_data_per_group")]
    pub min_data_per_group: u32,
    /// Many-vs-many categorical splits: categories need this many rows to take part, and are
    /// ordered by `G/(H + cat_smooth)` (LightGBM's `cat_smooth`).
    #[serde(default = "default_cat_smooth")]
    pub cat_smooth: f64,
    /// Many-vs-many categorical splits: extra L2 on the children (LightGBM's `cat_l2`).
    #[serde(default = "default_cat_l2")]
    pub cat_l2: f64,
    /// Most categories on the left of a many-vs-many split (LightGBM's `max_cat_threshold`).
    #[serde(default = "default_max_cat_threshold")]
    pub max_cat_threshold: u32,
    /// Categorical features with at most this many bins (missing bin included) split one
    /// category against the rest (LightGBM's `max_cat_to_onehot`).
    #[serde(default = "default_max_cat_to_onehot")]
    pub max_cat_to_onehot: u32,
}

/// LightGBM's default `min_data_per_group`.
pub const DEFAULT_MIN_DATA_PER_GROUP: u32 = 100;
/// LightGBM's default `cat_smooth`.
pub const DEFAULT_CAT_SMOOTH: f64 = 10.0;
/// LightGBM's default `cat_l2`.
pub const DEFAULT_CAT_L2: f64 = 10.0;
/// LightGBM's default `max_cat_threshold`.
pub const DEFAULT_MAX_CAT_THRESHOLD: u32 = 32;
/// LightGBM's default `max_cat_to_onehot`.
pub const DEFAULT_MAX_CAT_TO_ONEHOT: u32 = 4;

fn default_min_data_per_group() -> u32 {
    DEFAULT_MIN_DATA_PER_GROUP
}

fn default_cat_smooth() -> f64 {
    DEFAULT_CAT_SMOOTH
}

fn default_cat_l2() -> f64 {
    DEFAULT_CAT_L2
}

fn default_max_cat_threshold() -> u32 {
    DEFAULT_MAX_CAT_THRESHOLD
}

fn default_max_cat_to_onehot() -> u32 {
    DEFAULT_MAX_CAT_TO_ONEHOT
}

impl Default for SplitParams {
    fn default() -> Self {
        Self {
            lambda_l2: 0.0,
            min_child_weight: 1e-3,
            min_data_in_leaf: 20,
            min_split_gain: 0.0,
            min_data_per_group: DEFAULT_MIN_DATA_PER_GROUP,
            cat_smooth: DEFAULT_CAT_SMOOTH,
            cat_l2: DEFAULT_CAT_L2,
            max_cat_threshold: DEFAULT_MAX_CAT_THRESHOLD,
            max_cat_to_onehot: DEFAULT_MAX_CAT_TO_ONEHOT,
        }
    }
}

/// Which bins a split sends left (the missing bin follows `default_left` instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinSplit {
    /// Value bins `<= threshold_bin` go left.
    Numeric {
        /// Last value bin on the left.
        threshold_bin: u8,
    },
    /// The listed value bins go left, the others right.
    Categorical {
        /// Value bins on the left, ascending.
        left_bins: Vec<u8>,
    },
}

impl BinSplit {
    /// Whether a row in bin `bin` goes left, the missing bin `missing_bin` following
    /// `default_left`.
    pub fn goes_left(&self, bin: u8, missing_bin: u8, default_left: bool) -> bool {
        if bin == missing_bin {
            return default_left;
        }
        match self {
            BinSplit::Numeric { threshold_bin } => bin <= *threshold_bin,
            BinSplit::Categorical { left_bins } => left_bins.binary_search(&bin).is_ok(),
        }
    }
}

/// The best split of a node on one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitCandidate {
    /// Feature index (column of the histogram).
    pub feature: usize,
    /// The bin rule.
    pub split: BinSplit,
    /// The feature's missing bin (its last bin).
    pub missing_bin: u8,
    /// Whether missing values go left.
    pub default_left: bool,
    /// Gain as in the module docs (`γ` already subtracted).
    pub gain: f64,
    /// Sums of the left child.
    pub left: GradStats,
    /// Sums of the right child.
    pub right: GradStats,
    /// L2 added to `λ` for the weights of the two leaves this split creates: `cat_l2` for a
    /// many-vs-many categorical split (as LightGBM computes their outputs), else 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_l2: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl SplitCandidate {
    /// Whether a row in bin `bin` of [`SplitCandidate::feature`] goes left.
    pub fn goes_left(&self, bin: u8) -> bool {
        self.split.goes_left(bin, self.missing_bin, self.default_left)
    }

    /// [`SplitCandidate::goes_left`] for every possible bin, as a lookup table.
    pub fn left_table(&self) -> [bool; 256] {
        let mut t = [false; 256];
        for (b, slot) in t.iter_mut().enumerate() {
            *slot = self.goes_left(b as u8);
        }
        t
    }
}

/// The optimal leaf weight `−G/(H+λ)` (before shrinkage); zero when `H + λ <= 0`.
pub fn leaf_weight(stats: GradStats, lambda_l2: f64) -> f64 {
    let d = stats.sum_hess + lambda_l2;
    if d > 0.0 { -stats.sum_grad / d } else { 0.0 }
}

/// `G²/(H+λ)`, the structure score of one leaf (zero when `H + λ <= 0`).
#[inline]
fn score(g: f64, h: f64, lambda: f64) -> f64 {
    let d = h + lambda;
    if d > 0.0 { g * g / d } else { 0.0 }
}

/// The gain of splitting `parent` into `left` and `right` (see the module docs).
pub fn split_gain(
    left: GradStats,
    right: GradStats,
    parent: GradStats,
    params: &SplitParams,
) -> f64 {
    let l = params.lambda_l2;
    0.5 * (score(left.sum_grad, left.sum_hess, l) + score(right.sum_grad, right.sum_hess, l)
        - score(parent.sum_grad, parent.sum_hess, l))
        - params.min_split_gain
}

/// Best numeric or categorical split of a node over `features`, or `None` when no admissible
/// split has a positive gain.
///
/// `node_sum` is the node's total (the sum over any built feature's bins); `kinds[f]` says how
/// to read feature `f`'s bins. Features with only a missing bin are skipped.
pub fn find_best_split(
    hist: &Histogram,
    node_sum: GradStats,
    params: &SplitParams,
    kinds: &[BinKind],
    features: &[usize],
) -> Option<SplitCandidate> {
    let min_data = params.min_data_in_leaf.max(1);
    if node_sum.count < min_data.saturating_mul(2)
        || node_sum.sum_hess < 2.0 * params.min_child_weight
    {
        return None;
    }
    let ctx = Ctx {
        total: node_sum,
        parent_score: score(node_sum.sum_grad, node_sum.sum_hess, params.lambda_l2),
        lambda: params.lambda_l2,
        gamma: params.min_split_gain,
        min_data,
        min_hess: params.min_child_weight,
        min_data_per_group: params.min_data_per_group,
        cat_smooth: params.cat_smooth,
        cat_l2: params.cat_l2,
        max_cat_threshold: params.max_cat_threshold as usize,
        max_cat_to_onehot: params.max_cat_to_onehot as usize,
    };
    let mut best: Option<SplitCandidate> = None;
    let mut scratch = Vec::new();
    for &f in features {
        let bins = hist.feature(f);
        if bins.len() < 2 {
            continue;
        }
        let best_gain = best.as_ref().map_or(0.0, |b| b.gain);
        let found = match kinds.get(f).copied().unwrap_or(BinKind::Numeric) {
            BinKind::Numeric => ctx.numeric(f, bins, best_gain),
            BinKind::Categorical => ctx.categorical(f, bins, best_gain, &mut scratch),
        };
        if let Some(c) = found {
            best = Some(c);
        }
    }
    best
}

/// Per-node constants of the scan.
struct Ctx {
    total: GradStats,
    parent_score: f64,
    lambda: f64,
    gamma: f64,
    min_data: u32,
    min_hess: f64,
    min_data_per_group: u32,
    cat_smooth: f64,
    cat_l2: f64,
    max_cat_threshold: usize,
    max_cat_to_onehot: usize,
}

/// Outcome of one scan: the gain and the left sums of the best position.
#[derive(Clone, Copy)]
struct Best {
    gain: f64,
    pos: usize,
    left: GradStats,
    missing_left: bool,
}

impl Ctx {
    #[inline]
    fn gain(&self, left: GradStats, right: GradStats) -> f64 {
        0.5 * (score(left.sum_grad, left.sum_hess, self.lambda)
            + score(right.sum_grad, right.sum_hess, self.lambda)
            - self.parent_score)
            - self.gamma
    }

    /// Scans cumulative left sums `start + bins[order[0]] + … + bins[order[k]]` for
    /// `k < n_positions`, updating `best` when the gain beats it.
    #[inline]
    fn scan(
        &self,
        bins: &[GradStats],
        order: impl Iterator<Item = usize>,
        start: GradStats,
        missing_left: bool,
        best: &mut Option<Best>,
        floor: f64,
    ) {
        let mut left = start;
        for (pos, b) in order.enumerate() {
            let s = bins[b];
            if s.count == 0 {
                continue;
            }
            left.sum_grad += s.sum_grad;
            left.sum_hess += s.sum_hess;
            left.count += s.count;
            if left.count < self.min_data || left.sum_hess < self.min_hess {
                continue;
            }
            let right = self.total - left;
            if right.count < self.min_data || right.sum_hess < self.min_hess {
                break;
            }
            let g = self.gain(left, right);
            let beat = best.as_ref().map_or(floor, |b| b.gain);
            if g > beat {
                *best = Some(Best { gain: g, pos, left, missing_left });
            }
        }
    }

    fn candidate(
        &self,
        f: usize,
        split: BinSplit,
        missing: GradStats,
        nb: usize,
        b: Best,
    ) -> SplitCandidate {
        let right = self.total - b.left;
        let default_left =
            if missing.count > 0 { b.missing_left } else { b.left.count >= right.count };
        SplitCandidate {
            feature: f,
            split,
            missing_bin: (nb - 1) as u8,
            default_left,
            gain: b.gain,
            left: b.left,
            right,
            extra_l2: 0.0,
        }
    }

    fn numeric(&self, f: usize, bins: &[GradStats], floor: f64) -> Option<SplitCandidate> {
        let nb = bins.len();
        let nvb = nb - 1;
        let missing = bins[nvb];
        let mut best = None;
        // Missing right: thresholds 0..nvb (the last one = "all values left, missing right").
        self.scan(bins, 0..nvb, GradStats::default(), false, &mut best, floor);
        if missing.count > 0 {
            // Missing left: thresholds 0..nvb-1 (everything left is not a split).
            self.scan(bins, 0..nvb.saturating_sub(1), missing, true, &mut best, floor);
        }
        let b = best?;
        let split = BinSplit::Numeric { threshold_bin: b.pos as u8 };
        Some(self.candidate(f, split, missing, nb, b))
    }

    /// One-vs-rest or many-vs-many categorical split (see the module docs). The missing bin
    /// (the last) is one more category; `order` is scratch.
    fn categorical(
        &self,
        f: usize,
        bins: &[GradStats],
        floor: f64,
        order: &mut Vec<usize>,
    ) -> Option<SplitCandidate> {
        let nb = bins.len();
        if nb <= self.max_cat_to_onehot {
            return self.one_vs_rest(f, bins, floor);
        }
        order.clear();
        order.extend(
            (0..nb).filter(|&b| bins[b].count > 0 && f64::from(bins[b].count) >= self.cat_smooth),
        );
        let ratio = |b: usize| {
            let s = bins[b];
            let d = s.sum_hess + self.cat_smooth;
            if d > 0.0 { s.sum_grad / d } else { 0.0 }
        };
        // Stable sort: ties keep bin order.
        order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
        let used = order.len();
        let max_left = self.max_cat_threshold.min(used.div_ceil(2));
        let l2 = self.lambda + self.cat_l2;
        // (gain, scanned from the high end, last position, left sums)
        let mut best: Option<(f64, bool, usize, GradStats)> = None;
        for from_high in [false, true] {
            let mut left = GradStats::default();
            let mut group = 0u32;
            for i in 0..used.min(max_left) {
                let b = if from_high { order[used - 1 - i] } else { order[i] };
                let s = bins[b];
                left += s;
                group = group.saturating_add(s.count);
                if left.count < self.min_data || left.sum_hess < self.min_hess {
                    continue;
                }
                let right = self.total - left;
                if right.count < self.min_data
                    || right.count < self.min_data_per_group
                    || right.sum_hess < self.min_hess
                {
                    break;
                }
                if group < self.min_data_per_group {
                    continue;
                }
                group = 0;
                let g = 0.5
                    * (score(left.sum_grad, left.sum_hess, l2)
                        + score(right.sum_grad, right.sum_hess, l2)
                        - self.parent_score)
                    - self.gamma;
                if g > best.as_ref().map_or(floor, |b| b.0) {
                    best = Some((g, from_high, i, left));
                }
            }
        }
        let (gain, from_high, last, left) = best?;
        let chosen = if from_high { &order[used - 1 - last..] } else { &order[..=last] };
        let missing_bin = nb - 1;
        let mut left_bins: Vec<u8> =
            chosen.iter().filter(|&&b| b != missing_bin).map(|&b| b as u8).collect();
        left_bins.sort_unstable();
        Some(SplitCandidate {
            feature: f,
            split: BinSplit::Categorical { left_bins },
            missing_bin: missing_bin as u8,
            default_left: chosen.contains(&missing_bin),
            gain,
            left,
            right: self.total - left,
            extra_l2: self.cat_l2,
        })
    }

    /// Each non-empty category (the missing bin included) alone against the rest, gain with `λ`.
    fn one_vs_rest(&self, f: usize, bins: &[GradStats], floor: f64) -> Option<SplitCandidate> {
        let mut best: Option<(f64, usize)> = None;
        for (b, &left) in bins.iter().enumerate() {
            if left.count == 0 || left.count < self.min_data || left.sum_hess < self.min_hess {
                continue;
            }
            let right = self.total - left;
            if right.count < self.min_data || right.sum_hess < self.min_hess {
                continue;
            }
            let g = self.gain(left, right);
            if g > best.map_or(floor, |b| b.0) {
                best = Some((g, b));
            }
        }
        let (gain, b) = best?;
        let missing_bin = bins.len() - 1;
        let left = bins[b];
        let left_bins = if b == missing_bin { Vec::new() } else { vec![b as u8] };
        Some(SplitCandidate {
            feature: f,
            split: BinSplit::Categorical { left_bins },
            missing_bin: missing_bin as u8,
            default_left: b == missing_bin,
            gain,
            left,
            right: self.total - left,
            extra_l2: 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(g: f64, h: f64, c: u32) -> GradStats {
        GradStats { sum_grad: g, sum_hess: h, count: c }
    }

    fn params(min_data: u32) -> SplitParams {
        SplitParams {
            lambda_l2: 1.0,
            min_child_weight: 0.0,
            min_data_in_leaf: min_data,
            min_split_gain: 0.0,
            ..SplitParams::default()
        }
    }

    /// Categorical regularisation off: every non-empty category takes part, ordered by `G/H`.
    fn unregularised(min_data: u32) -> SplitParams {
        SplitParams {
            lambda_l2: 0.0,
            min_data_per_group: 1,
            cat_smooth: 0.0,
            cat_l2: 0.0,
            max_cat_to_onehot: 0,
            ..params(min_data)
        }
    }

    #[test]
    fn hand_computed_numeric_split() {
        // One numeric feature, 3 value bins + missing bin (empty), λ = 1:
        //   bin 0: G = -4, H = 2, n = 2
        //   bin 1: G = -1, H = 1, n = 1
        //   bin 2: G =  5, H = 3, n = 3
        // Node: G = 0, H = 6, parent score 0²/7 = 0.
        // t = 0: L = (-4, 2), R = (4, 4):  ½[16/3 + 16/5] = ½[5.3333 + 3.2]   = 4.26667
        // t = 1: L = (-5, 3), R = (5, 3):  ½[25/4 + 25/4] = ½[6.25 + 6.25]    = 6.25   <- best
        // t = 2: L = everything, R empty: not a split (no missing rows to send right).
        let mut h = Histogram::new(&[4]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(-4.0, 2.0, 2);
        bins[1] = stats(-1.0, 1.0, 1);
        bins[2] = stats(5.0, 3.0, 3);
        let total = h.feature_total(0);
        let c = find_best_split(&h, total, &params(1), &[BinKind::Numeric], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Numeric { threshold_bin: 1 });
        assert!((c.gain - 6.25).abs() < 1e-12, "{}", c.gain);
        assert_eq!(c.left, stats(-5.0, 3.0, 3));
        assert_eq!(c.right, stats(5.0, 3.0, 3));
        // No missing rows: missing follows the larger child (tie -> left).
        assert!(c.default_left);
        assert!((split_gain(c.left, c.right, total, &params(1)) - 6.25).abs() < 1e-12);
        assert!((leaf_weight(c.left, 1.0) - 1.25).abs() < 1e-12);
        // min_data_in_leaf = 4 leaves no admissible split (each side would need 4 of 6 rows).
        assert!(find_best_split(&h, total, &params(4), &[BinKind::Numeric], &[0]).is_none());
        // γ larger than the best gain: no split.
        let mut p = params(1);
        p.min_split_gain = 6.3;
        assert!(find_best_split(&h, total, &p, &[BinKind::Numeric], &[0]).is_none());
    }

    #[test]
    fn missing_values_take_the_learned_direction() {
        // Values: bin 0 (G = -3, H = 1), bin 1 (G = 3, H = 1); missing rows look like bin 1
        // (G = 3, H = 1). λ = 1. Node G = 3, H = 3, parent score 9/4 = 2.25.
        //   missing right, t = 0: L = (-3, 1), R = (6, 2): ½[9/2 + 36/3 − 2.25] = 7.125
        //   missing left,  t = 0: L = (0, 2),  R = (3, 1): ½[0 + 9/2 − 2.25]    = 1.125
        let mut h = Histogram::new(&[3]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(-3.0, 1.0, 1);
        bins[1] = stats(3.0, 1.0, 1);
        bins[2] = stats(3.0, 1.0, 1);
        let total = h.feature_total(0);
        let c = find_best_split(&h, total, &params(1), &[BinKind::Numeric], &[0]).unwrap();
        assert!(!c.default_left);
        assert!((c.gain - 7.125).abs() < 1e-12);
        assert!(!c.goes_left(2) && c.goes_left(0) && !c.goes_left(1));
        // Mirror: missing rows now look like bin 0, so they should go left.
        let bins = h.feature_mut(0);
        bins[2] = stats(-3.0, 1.0, 1);
        let total = h.feature_total(0);
        let c = find_best_split(&h, total, &params(1), &[BinKind::Numeric], &[0]).unwrap();
        assert!(c.default_left);
        assert!(c.goes_left(2));
        assert_eq!(c.left.count, 2);
    }

    #[test]
    fn missing_versus_values_split() {
        // All value rows alike, missing rows different: the best split is values | missing.
        let mut h = Histogram::new(&[3]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(-1.0, 1.0, 1);
        bins[1] = stats(-1.0, 1.0, 1);
        bins[2] = stats(4.0, 2.0, 2);
        // λ = 0, node G = 2, H = 4, parent score 1:
        //   t = 0, missing right: ½[1/1 + 25/3 − 1] = 4.1667
        //   t = 1, missing right: ½[4/2 + 16/2 − 1] = 4.5     <- values | missing
        //   t = 0, missing left:  ½[9/3 + 1/1 − 1]  = 1.5
        let mut p = params(1);
        p.lambda_l2 = 0.0;
        let total = h.feature_total(0);
        let c = find_best_split(&h, total, &p, &[BinKind::Numeric], &[0]).unwrap();
        assert!((c.gain - 4.5).abs() < 1e-12);
        assert_eq!(c.split, BinSplit::Numeric { threshold_bin: 1 });
        assert!(!c.default_left);
        assert_eq!(c.right.count, 2);
    }

    #[test]
    fn categorical_split_groups_categories_by_gradient_ratio() {
        // Four categories with G/H = +1, -1, +1, -1 (λ = 0): the best partition is {1, 3} | {0, 2}
        // which no single threshold on the bin order can produce.
        // Left {1,3}: G = -4, H = 4; right {0,2}: G = 4, H = 4; node G = 0.
        // gain = ½[16/4 + 16/4 − 0] = 4.
        let mut h = Histogram::new(&[5]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(2.0, 2.0, 5);
        bins[1] = stats(-2.0, 2.0, 5);
        bins[2] = stats(2.0, 2.0, 5);
        bins[3] = stats(-2.0, 2.0, 5);
        let total = h.feature_total(0);
        let p = unregularised(1);
        let c = find_best_split(&h, total, &p, &[BinKind::Categorical], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Categorical { left_bins: vec![1, 3] });
        assert!((c.gain - 4.0).abs() < 1e-12);
        assert!(c.goes_left(3) && !c.goes_left(2));
        // No missing rows at the node: missing values go right, as in LightGBM.
        assert!(!c.default_left && c.extra_l2 == 0.0);
        // With LightGBM's defaults these 5-row categories are below `cat_smooth`: no split.
        let lgbm = SplitParams { lambda_l2: 0.0, min_data_in_leaf: 1, ..SplitParams::default() };
        assert!(find_best_split(&h, total, &lgbm, &[BinKind::Categorical], &[0]).is_none());
        // Read as numeric, the best threshold split is worse.
        let n = find_best_split(&h, total, &p, &[BinKind::Numeric], &[0]).unwrap();
        assert!(n.gain < c.gain);
    }

    #[test]
    fn few_categories_split_one_against_the_rest() {
        // 3 categories + the (empty) missing bin = 4 bins <= max_cat_to_onehot = 4. Neither
        // cat_smooth (the categories have 5 rows each) nor cat_l2 applies. λ = 0, node G = 0:
        //   {c0}: ½[36/3 + 36/6] = 9 <- best;  {c1}: ½[4/3 + 4/6] = 1;  {c2}: ½[16/3 + 16/6] = 8
        let mut h = Histogram::new(&[4]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(-6.0, 3.0, 5);
        bins[1] = stats(2.0, 3.0, 5);
        bins[2] = stats(4.0, 3.0, 5);
        let total = h.feature_total(0);
        let p = SplitParams { lambda_l2: 0.0, min_data_in_leaf: 1, ..SplitParams::default() };
        let c = find_best_split(&h, total, &p, &[BinKind::Categorical], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Categorical { left_bins: vec![0] });
        assert!((c.gain - 9.0).abs() < 1e-12, "{}", c.gain);
        assert_eq!(c.extra_l2, 0.0);
        assert!(!c.default_left);
        // Missing rows that differ from every category: "missing vs the rest" wins.
        let bins = h.feature_mut(0);
        bins[3] = stats(-20.0, 4.0, 5);
        let total = h.feature_total(0);
        let c = find_best_split(&h, total, &p, &[BinKind::Categorical], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Categorical { left_bins: vec![] });
        assert!(c.default_left && c.goes_left(3) && !c.goes_left(0));
        // max_cat_to_onehot = 0 turns it into a many-vs-many split, where 5-row categories
        // fall below cat_smooth = 10.
        let many = SplitParams { max_cat_to_onehot: 0, ..p };
        assert!(find_best_split(&h, total, &many, &[BinKind::Categorical], &[0]).is_none());
    }

    #[test]
    fn many_categories_follow_lightgbm_regularisation() {
        // 6 categories + missing (7 bins > 4: many-vs-many), LightGBM defaults (cat_smooth 10,
        // cat_l2 10, min_data_per_group 100, max_cat_threshold 32), λ = 0, min_data_in_leaf 20.
        let mut h = Histogram::new(&[7]).unwrap();
        let bins = h.feature_mut(0);
        bins[0] = stats(-30.0, 50.0, 200); // G/(H+10) = -0.5
        bins[1] = stats(-10.0, 40.0, 150); // -0.2
        bins[2] = stats(5.0, 40.0, 150); // 0.1
        bins[3] = stats(20.0, 30.0, 120); // 0.5
        bins[4] = stats(3.0, 2.0, 8); // 8 rows < cat_smooth: never on the left
        bins[5] = stats(12.0, 30.0, 60); // 0.3
        bins[6] = stats(-6.0, 10.0, 40); // missing: -0.3
        let total = h.feature_total(0);
        let p = SplitParams {
            lambda_l2: 0.0,
            min_child_weight: 0.0,
            min_data_in_leaf: 20,
            ..SplitParams::default()
        };
        // Order: c0, missing, c1, c2, c5, c3; at most min(32, ⌈6/2⌉) = 3 on the left.
        // From the low end: {c0} (group 200), {c0, missing} skipped (group 40 < 100),
        // {c0, missing, c1} (group 190). From the high end: {c3}, {c3, c5} skipped, {c3, c5, c2}.
        let gain = |lg: f64, lh: f64| {
            let (rg, rh) = (total.sum_grad - lg, total.sum_hess - lh);
            0.5 * (lg * lg / (lh + 10.0) + rg * rg / (rh + 10.0)
                - total.sum_grad * total.sum_grad / total.sum_hess)
        };
        let best = gain(-46.0, 100.0);
        assert!(best > gain(-30.0, 50.0) && best > gain(37.0, 100.0) && best > gain(20.0, 30.0));
        let c = find_best_split(&h, total, &p, &[BinKind::Categorical], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Categorical { left_bins: vec![0, 1] });
        assert!(c.default_left, "missing is in the left set");
        assert!((c.gain - best).abs() < 1e-9, "{} vs {best}", c.gain);
        assert_eq!((c.left.count, c.right.count), (390, 338));
        assert_eq!(c.extra_l2, 10.0);
        assert!(!c.goes_left(4), "small categories go right");
        // One category at most on the left: {c0}.
        let one = SplitParams { max_cat_threshold: 1, ..p };
        let c = find_best_split(&h, total, &one, &[BinKind::Categorical], &[0]).unwrap();
        assert_eq!(c.split, BinSplit::Categorical { left_bins: vec![0] });
        assert!((c.gain - gain(-30.0, 50.0)).abs() < 1e-9);
        // With min_data_per_group = 400 no left set gathers 400 rows before the right side
        // drops below 400 rows: no split.
        let big = SplitParams { min_data_per_group: 400, ..p };
        assert!(find_best_split(&h, total, &big, &[BinKind::Categorical], &[0]).is_none());
    }

    #[test]
    fn best_feature_wins_and_unlisted_features_are_ignored() {
        let mut h = Histogram::new(&[3, 3]).unwrap();
        h.feature_mut(0)[0] = stats(-1.0, 1.0, 1);
        h.feature_mut(0)[1] = stats(1.0, 1.0, 1);
        h.feature_mut(1)[0] = stats(-1.0, 1.0, 1);
        h.feature_mut(1)[1] = stats(1.0, 1.0, 1);
        let total = h.feature_total(0);
        let kinds = [BinKind::Numeric; 2];
        // Equal gains: the first feature is kept.
        assert_eq!(find_best_split(&h, total, &params(1), &kinds, &[0, 1]).unwrap().feature, 0);
        assert_eq!(find_best_split(&h, total, &params(1), &kinds, &[1]).unwrap().feature, 1);
    }
}
