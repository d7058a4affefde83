//! Classification metrics for credit-risk models: AUC, KS, Gini, log loss, Brier score,
//! accuracy, lift/gain tables and the population stability index (PSI).
//!
//! All functions are pure and take scores as `&[f64]` and labels as `&[f64]` holding
//! `0.0` / `1.0` (1 = default, the "event"). Higher scores are taken to mean *more* risk
//! (a probability of default); pass `-score` for a points scale where higher means safer.
//!
//! - AUC is the Mann–Whitney U statistic with average ranks for ties
//!   (Hanley & McNeil, "The meaning and use of the area under a ROC curve", Radiology 1982),
//!   which equals the area under the ROC curve with tied scores joined by a straight segment.
//! - KS is the two-sample Kolmogorov–Smirnov statistic between the score distributions of
//!   events and non-events, `max |TPR − FPR|`, evaluated only between groups of equal
//!   scores (so a tie is never split).
//! - Gini (accuracy ratio) is `2·AUC − 1`.
//! - PSI follows the usual credit-risk monitoring definition (Siddiqi, "Credit Risk
//!   Scorecards", ch. 8; Yurdakul, "Statistical properties of population stability index",
//!   2018): `PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)` over bins fixed on the expected sample.
//!
//! The `*_from_bucket_counts` kernels compute AUC and KS from per-score-bucket counts
//! of events and non-events. Federated validation aggregates such counts across parties
//! (never predictions), and [`auc`] / [`ks`] are themselves implemented on top of them,
//! one bucket per distinct score, so both paths agree exactly.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]` in [`log_loss`].
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Conventional number of buckets for [`lift_gain_table`] (deciles).
pub const DEFAULT_LIFT_BUCKETS: usize = 10;

/// Conventional number of bins for [`population_stability_index`].
pub const DEFAULT_PSI_BINS: usize = 10;

/// Proportion substituted for an empty bin in [`population_stability_index`] so that
/// `ln(a/e)` stays finite.
pub const PSI_EPS: f64 = 1e-4;

/// The headline metrics of a probability-of-default model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Area under the ROC curve (ties count one half).
    pub auc: f64,
    /// Kolmogorov–Smirnov statistic, `max |TPR − FPR|`.
    pub ks: f64,
    /// Gini coefficient, `2·AUC − 1`.
    pub gini: f64,
    /// Mean negative log-likelihood, probabilities clipped to `[1e-15, 1 − 1e-15]`.
    pub log_loss: f64,
    /// Mean squared error of the probabilities.
    pub brier: f64,
}

impl Metrics {
    /// Computes every metric for predicted probabilities of default `scores`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] on empty input, a length mismatch, labels outside {0, 1},
    /// scores outside `[0, 1]` or NaN, or labels of a single class.
    pub fn compute(scores: &[f64], labels: &[f64]) -> Result<Self, ModelError> {
        Self::compute_weighted(scores, labels, None)
    }

    /// [`Metrics::compute`] with optional non-negative sample weights.
    ///
    /// # Errors
    /// As [`Metrics::compute`], plus a weight vector of the wrong length, a negative or
    /// non-finite weight, or a class whose weights sum to zero.
    pub fn compute_weighted(
        scores: &[f64],
        labels: &[f64],
        weights: Option<&[f64]>,
    ) -> Result<Self, ModelError> {
        let auc = auc_weighted(scores, labels, weights)?;
        Ok(Self {
            auc,
            ks: ks_weighted(scores, labels, weights)?,
            gini: 2.0 * auc - 1.0,
            log_loss: log_loss_weighted(scores, labels, weights)?,
            brier: brier_weighted(scores, labels, weights)?,
        })
    }
}

/// Area under the ROC curve, tie-aware (Mann–Whitney U with average ranks).
///
/// # Errors
/// [`ModelError::InvalidInput`] on empty input, a length mismatch, a NaN score,
/// labels outside {0, 1}, or labels of a single class (AUC is undefined).
pub fn auc(scores: &[f64], labels: &[f64]) -> Result<f64, ModelError> {
    auc_weighted(scores, labels, None)
}

/// [`auc`] with optional non-negative sample weights (a row of weight `w` counts as `w` rows).
///
/// # Errors
/// As [`auc`], plus invalid weights or a class whose weights sum to zero.
pub fn auc_weighted(
    scores: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<f64, ModelError> {
    let (pos, neg) = score_group_counts(scores, labels, weights)?;
    auc_from_bucket_counts(&pos, &neg)
}

/// Kolmogorov–Smirnov statistic `max |TPR − FPR|` over all thresholds between distinct scores.
///
/// # Errors
/// As [`auc`].
pub fn ks(scores: &[f64], labels: &[f64]) -> Result<f64, ModelError> {
    ks_weighted(scores, labels, None)
}

/// [`ks`] with optional non-negative sample weights.
///
/// # Errors
/// As [`auc_weighted`].
pub fn ks_weighted(
    scores: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<f64, ModelError> {
    let (pos, neg) = score_group_counts(scores, labels, weights)?;
    ks_from_bucket_counts(&pos, &neg)
}

/// Gini coefficient (accuracy ratio), `2·AUC − 1`.
///
/// # Errors
/// As [`auc`].
pub fn gini(scores: &[f64], labels: &[f64]) -> Result<f64, ModelError> {
    Ok(2.0 * auc(scores, labels)? - 1.0)
}

/// Mean binary cross-entropy of probabilities `probs`, clipped to `[1e-15, 1 − 1e-15]`.
///
/// # Errors
/// [`ModelError::InvalidInput`] on empty input, a length mismatch, labels outside {0, 1},
/// or a probability outside `[0, 1]` (or NaN).
pub fn log_loss(probs: &[f64], labels: &[f64]) -> Result<f64, ModelError> {
    log_loss_weighted(probs, labels, None)
}

/// [`log_loss`] as a weighted mean.
///
/// # Errors
/// As [`log_loss`], plus invalid weights or weights summing to zero.
pub fn log_loss_weighted(
    probs: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<f64, ModelError> {
    check_probabilities(probs, labels, weights)?;
    weighted_mean(probs, labels, weights, |p, y| {
        let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    })
}

/// Brier score: mean of `(p − y)²`.
///
/// # Errors
/// As [`log_loss`].
pub fn brier(probs: &[f64], labels: &[f64]) -> Result<f64, ModelError> {
    brier_weighted(probs, labels, None)
}

/// [`brier`] as a weighted mean.
///
/// # Errors
/// As [`log_loss_weighted`].
pub fn brier_weighted(
    probs: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<f64, ModelError> {
    check_probabilities(probs, labels, weights)?;
    weighted_mean(probs, labels, weights, |p, y| (p - y) * (p - y))
}

/// Fraction of rows classified correctly when `score >= threshold` predicts an event.
///
/// # Errors
/// [`ModelError::InvalidInput`] on empty input, a length mismatch, a NaN score or
/// labels outside {0, 1}.
pub fn accuracy_at(scores: &[f64], labels: &[f64], threshold: f64) -> Result<f64, ModelError> {
    check_inputs(scores, labels, None)?;
    let correct =
        scores.iter().zip(labels).filter(|&(&s, &y)| (s >= threshold) == (y == 1.0)).count();
    Ok(correct as f64 / scores.len() as f64)
}

/// One row of a lift / gain table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiftRow {
    /// Bucket number, 1 = highest scores (riskiest).
    pub bucket: usize,
    /// Lowest score in the bucket.
    pub min_score: f64,
    /// Highest score in the bucket.
    pub max_score: f64,
    /// Rows in the bucket.
    pub count: usize,
    /// Events (label 1) in the bucket.
    pub events: usize,
    /// `events / count`.
    pub event_rate: f64,
    /// Gain: percentage (0–100) of all events captured by buckets `1..=bucket`.
    pub cumulative_events_pct: f64,
    /// `event_rate` over the overall event rate.
    pub lift: f64,
    /// Event rate of buckets `1..=bucket` over the overall event rate.
    pub cumulative_lift: f64,
}

/// Lift and gain table: rows sorted by descending score and cut into `n_buckets`
/// buckets of equal count (sizes differ by at most one; the first buckets get the extra rows).
///
/// Rows with equal scores are kept in input order, so a tie straddling a bucket boundary
/// is split between the two buckets. When there are fewer rows than `n_buckets`, there is
/// one bucket per row.
///
/// # Errors
/// [`ModelError::InvalidParam`] when `n_buckets` is 0; [`ModelError::InvalidInput`] on empty
/// input, a length mismatch, a NaN score, labels outside {0, 1}, or no events at all
/// (lift is undefined).
pub fn lift_gain_table(
    scores: &[f64],
    labels: &[f64],
    n_buckets: usize,
) -> Result<Vec<LiftRow>, ModelError> {
    if n_buckets == 0 {
        return Err(ModelError::InvalidParam {
            name: "n_buckets",
            reason: "must be at least 1".into(),
        });
    }
    check_inputs(scores, labels, None)?;
    let n = scores.len();
    let total_events = labels.iter().filter(|&&y| y == 1.0).count();
    if total_events == 0 {
        return Err(ModelError::InvalidInput("lift is undefined when no label is 1".into()));
    }
    let overall_rate = total_events as f64 / n as f64;
    let mut order: Vec<usize> = (0..n).collect();
    // Stable: equal scores stay in input order.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let k = n_buckets.min(n);
    let (base, extra) = (n / k, n % k);
    let mut rows = Vec::with_capacity(k);
    let (mut start, mut cum_count, mut cum_events) = (0usize, 0usize, 0usize);
    for b in 0..k {
        let size = base + usize::from(b < extra);
        let idx = &order[start..start + size];
        start += size;
        let events = idx.iter().filter(|&&i| labels[i] == 1.0).count();
        cum_count += size;
        cum_events += events;
        let event_rate = events as f64 / size as f64;
        rows.push(LiftRow {
            bucket: b + 1,
            // `idx` is sorted by descending score.
            min_score: scores[idx[size - 1]],
            max_score: scores[idx[0]],
            count: size,
            events,
            event_rate,
            cumulative_events_pct: 100.0 * cum_events as f64 / total_events as f64,
            lift: event_rate / overall_rate,
            cumulative_lift: (cum_events as f64 / cum_count as f64) / overall_rate,
        });
    }
    Ok(rows)
}

/// Population stability index between a reference (`expected`, e.g. training scores) and
/// a current (`actual`) sample:
///
/// `PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)`
///
/// where `e_i`, `a_i` are the proportions of each sample in bin `i`. The bins are fixed on
/// `expected` with [`quantile_edges`] (`n_bins` equal-count bins, duplicate edges removed,
/// bin `i` = `[edge_{i−1}, edge_i)`), and a proportion of 0 is replaced by
/// [`PSI_EPS`]. Rules of thumb: < 0.1 stable, 0.1–0.25 some shift, > 0.25 major shift.
///
/// # Errors
/// [`ModelError::InvalidParam`] when `n_bins` is 0; [`ModelError::InvalidInput`] when a
/// sample is empty or holds NaN.
pub fn population_stability_index(
    expected: &[f64],
    actual: &[f64],
    n_bins: usize,
) -> Result<f64, ModelError> {
    if n_bins == 0 {
        return Err(ModelError::InvalidParam {
            name: "n_bins",
            reason: "must be at least 1".into(),
        });
    }
    for (name, sample) in [("expected", expected), ("actual", actual)] {
        if sample.is_empty() {
            return Err(ModelError::InvalidInput(format!("PSI: `{name}` sample is empty")));
        }
        if let Some(i) = sample.iter().position(|v| v.is_nan()) {
            return Err(ModelError::InvalidInput(format!("PSI: `{name}` value at {i} is NaN")));
        }
    }
    let edges = quantile_edges(expected, n_bins);
    let count = |sample: &[f64]| {
        let mut c = vec![0.0; edges.len() + 1];
        for &v in sample {
            c[edges.partition_point(|&e| e <= v)] += 1.0;
        }
        c
    };
    psi_from_counts(&count(expected), &count(actual))
}

/// PSI from per-bin counts of the expected and actual samples (same bins, same order),
/// the kernel behind [`population_stability_index`]; federated monitoring sums such counts
/// across parties.
///
/// # Errors
/// [`ModelError::InvalidInput`] on a length mismatch, no bins, a negative or non-finite count,
/// or a sample whose counts sum to zero.
pub fn psi_from_counts(expected: &[f64], actual: &[f64]) -> Result<f64, ModelError> {
    check_bucket_counts(expected, actual, "expected", "actual")?;
    let (te, ta): (f64, f64) = (expected.iter().sum(), actual.iter().sum());
    if te <= 0.0 || ta <= 0.0 {
        return Err(ModelError::InvalidInput("PSI: a sample has no rows".into()));
    }
    Ok(expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let e = (e / te).max(PSI_EPS);
            let a = (a / ta).max(PSI_EPS);
            (a - e) * (a / e).ln()
        })
        .sum())
}

/// Cut points splitting `values` into at most `n_bins` bins of (nearly) equal count:
/// for `k = 1..n_bins`, the value at sorted position `⌊k·n / n_bins⌋`, with duplicates and
/// the minimum removed. A value `v` belongs to bin `#{edges ≤ v}`. NaN values are ignored.
pub fn quantile_edges(values: &[f64], n_bins: usize) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mut edges: Vec<f64> = Vec::new();
    if n == 0 {
        return edges;
    }
    for k in 1..n_bins {
        let v = sorted[(k * n / n_bins).min(n - 1)];
        if v > sorted[0] && edges.last().is_none_or(|&last| v > last) {
            edges.push(v);
        }
    }
    edges
}

/// AUC from per-bucket weighted counts of events (`pos_counts`) and non-events
/// (`neg_counts`), buckets ordered by **ascending** score. Rows in the same bucket count as
/// tied (one half), so with one bucket per distinct score this is the exact tie-aware AUC.
///
/// `AUC = Σ_b pos_b · (Σ_{c<b} neg_c + neg_b / 2) / (P · N)`.
///
/// # Errors
/// [`ModelError::InvalidInput`] on a length mismatch, no buckets, a negative or
/// non-finite count, or a class with zero total (AUC undefined).
pub fn auc_from_bucket_counts(pos_counts: &[f64], neg_counts: &[f64]) -> Result<f64, ModelError> {
    let (p, n) = bucket_totals(pos_counts, neg_counts)?;
    let mut neg_below = 0.0;
    let mut acc = 0.0;
    for (&pb, &nb) in pos_counts.iter().zip(neg_counts) {
        acc += pb * (neg_below + 0.5 * nb);
        neg_below += nb;
    }
    Ok(acc / (p * n))
}

/// KS from per-bucket weighted counts (buckets in score order, either direction):
/// `max_b |Σ_{c≤b} pos_c / P − Σ_{c≤b} neg_c / N|`.
///
/// # Errors
/// As [`auc_from_bucket_counts`].
pub fn ks_from_bucket_counts(pos_counts: &[f64], neg_counts: &[f64]) -> Result<f64, ModelError> {
    let (p, n) = bucket_totals(pos_counts, neg_counts)?;
    let (mut cp, mut cn, mut best) = (0.0, 0.0, 0.0_f64);
    for (&pb, &nb) in pos_counts.iter().zip(neg_counts) {
        cp += pb;
        cn += nb;
        best = best.max((cp / p - cn / n).abs());
    }
    Ok(best)
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Validates inputs and groups rows by distinct score (ascending), returning per-group
/// weighted event and non-event counts.
fn score_group_counts(
    scores: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<(Vec<f64>, Vec<f64>), ModelError> {
    check_inputs(scores, labels, weights)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    let mut last = f64::NAN;
    for i in order {
        let s = scores[i];
        // `-0.0 == 0.0`, so signed zeros form one group, as they should.
        if pos.is_empty() || s != last {
            pos.push(0.0);
            neg.push(0.0);
            last = s;
        }
        let w = weights.map_or(1.0, |w| w[i]);
        let slot = if labels[i] == 1.0 { pos.last_mut() } else { neg.last_mut() };
        if let Some(slot) = slot {
            *slot += w;
        }
    }
    Ok((pos, neg))
}

/// Checks non-emptiness, lengths, NaN scores, 0/1 labels and weights.
fn check_inputs(scores: &[f64], labels: &[f64], weights: Option<&[f64]>) -> Result<(), ModelError> {
    if scores.is_empty() {
        return Err(ModelError::InvalidInput("no scores".into()));
    }
    if scores.len() != labels.len() {
        return Err(ModelError::InvalidInput(format!(
            "{} scores but {} labels",
            scores.len(),
            labels.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(ModelError::InvalidInput(format!("score at row {i} is NaN")));
    }
    if let Some((i, y)) = labels.iter().enumerate().find(|&(_, &y)| y != 0.0 && y != 1.0) {
        return Err(ModelError::InvalidInput(format!("label at row {i} is {y}, not 0 or 1")));
    }
    if let Some(w) = weights {
        if w.len() != scores.len() {
            return Err(ModelError::InvalidInput(format!(
                "{} weights for {} scores",
                w.len(),
                scores.len()
            )));
        }
        if let Some((i, v)) = w.iter().enumerate().find(|&(_, &v)| !(v.is_finite() && v >= 0.0)) {
            return Err(ModelError::InvalidInput(format!(
                "weight at row {i} is {v}, not a finite non-negative number"
            )));
        }
    }
    Ok(())
}

/// [`check_inputs`] plus probabilities in `[0, 1]`.
fn check_probabilities(
    probs: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
) -> Result<(), ModelError> {
    check_inputs(probs, labels, weights)?;
    if let Some((i, p)) = probs.iter().enumerate().find(|&(_, &p)| !(0.0..=1.0).contains(&p)) {
        return Err(ModelError::InvalidInput(format!(
            "probability at row {i} is {p}, outside [0, 1]"
        )));
    }
    Ok(())
}

/// Weighted mean of `f(p, y)`; inputs already checked.
fn weighted_mean(
    probs: &[f64],
    labels: &[f64],
    weights: Option<&[f64]>,
    f: impl Fn(f64, f64) -> f64,
) -> Result<f64, ModelError> {
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (&p, &y)) in probs.iter().zip(labels).enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        num += w * f(p, y);
        den += w;
    }
    if den <= 0.0 {
        return Err(ModelError::InvalidInput("sample weights sum to zero".into()));
    }
    Ok(num / den)
}

/// Validates two parallel count vectors.
fn check_bucket_counts(a: &[f64], b: &[f64], a_name: &str, b_name: &str) -> Result<(), ModelError> {
    if a.is_empty() || a.len() != b.len() {
        return Err(ModelError::InvalidInput(format!(
            "{} {a_name} buckets and {} {b_name} buckets (need equal, non-zero lengths)",
            a.len(),
            b.len()
        )));
    }
    for (name, counts) in [(a_name, a), (b_name, b)] {
        if let Some((i, c)) =
            counts.iter().enumerate().find(|&(_, &c)| !(c.is_finite() && c >= 0.0))
        {
            return Err(ModelError::InvalidInput(format!(
                "{name} count in bucket {i} is {c}, not a finite non-negative number"
            )));
        }
    }
    Ok(())
}

/// Validates bucket counts and returns the class totals, both positive.
fn bucket_totals(pos: &[f64], neg: &[f64]) -> Result<(f64, f64), ModelError> {
    check_bucket_counts(pos, neg, "positive", "negative")?;
    let (p, n): (f64, f64) = (pos.iter().sum(), neg.iter().sum());
    if p <= 0.0 || n <= 0.0 {
        return Err(ModelError::InvalidInput(format!(
            "AUC/KS undefined with a single class ({p} positive, {n} negative weight)"
        )));
    }
    Ok((p, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn 1.9.1:
    //
    //   from sklearn.metrics import roc_auc_score, log_loss, brier_score_loss
    //   y = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    //   p = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9, 0.35, 0.6]
    //   w = [1, 2, 1, 1, 0.5, 1, 3, 1, 2, 1]
    //   roc_auc_score(y, p), log_loss(y, p), brier_score_loss(y, p)
    //   # 0.68 0.5610885094221719 0.19850000000000004
    //   roc_auc_score(y, p, sample_weight=w), log_loss(y, p, sample_weight=w),
    //   brier_score_loss(y, p, sample_weight=w)
    //   # 0.7166666666666667 0.5453634913505045 0.19018518518518518
    //   f, t, _ = roc_curve(y, p); max(abs(t - f))                    # 0.4
    //   f, t, _ = roc_curve(y, p, sample_weight=w); max(abs(t - f))   # 0.5333333333333333
    const Y: [f64; 10] = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    const P: [f64; 10] = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9, 0.35, 0.6];
    const W: [f64; 10] = [1.0, 2.0, 1.0, 1.0, 0.5, 1.0, 3.0, 1.0, 2.0, 1.0];

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn matches_sklearn_with_ties() {
        close(auc(&P, &Y).unwrap(), 0.68);
        close(log_loss(&P, &Y).unwrap(), 0.5610885094221719);
        close(brier(&P, &Y).unwrap(), 0.19850000000000004);
        close(ks(&P, &Y).unwrap(), 0.4);
        close(gini(&P, &Y).unwrap(), 2.0 * 0.68 - 1.0);
        let m = Metrics::compute(&P, &Y).unwrap();
        close(m.auc, 0.68);
        close(m.ks, 0.4);
        close(m.gini, 0.36);
    }

    #[test]
    fn weighted_matches_sklearn() {
        close(auc_weighted(&P, &Y, Some(&W)).unwrap(), 0.7166666666666667);
        close(log_loss_weighted(&P, &Y, Some(&W)).unwrap(), 0.5453634913505045);
        close(brier_weighted(&P, &Y, Some(&W)).unwrap(), 0.19018518518518518);
        close(ks_weighted(&P, &Y, Some(&W)).unwrap(), 0.5333333333333333);
        // Integer weights equal repeated rows.
        let mut p = Vec::new();
        let mut y = Vec::new();
        for i in 0..10 {
            for _ in 0..(2.0 * W[i]) as usize {
                p.push(P[i]);
                y.push(Y[i]);
            }
        }
        close(auc(&p, &y).unwrap(), 0.7166666666666667);
    }

    #[test]
    fn ks_by_hand() {
        // Scores 1 2 2 3 with labels 0 1 0 1. Groups (ascending): {1: neg}, {2: pos, neg},
        // {3: pos}. Cumulative (TPR, FPR) after each group: (0, 1/2), (1/2, 1), (1, 1),
        // so KS = 1/2. Splitting the tie at 2 the wrong way would give 1 − 0 = 1 at the
        // second row, which grouping must prevent.
        let s = [1.0, 2.0, 2.0, 3.0];
        let y = [0.0, 1.0, 0.0, 1.0];
        close(ks(&s, &y).unwrap(), 0.5);
        // AUC by hand: pos@2 beats 1 neg and ties 1 → 1.5; pos@3 beats 2 → 2; 3.5 / 4.
        close(auc(&s, &y).unwrap(), 0.875);
        // Perfect separation.
        close(ks(&[0.1, 0.2, 0.8, 0.9], &[0.0, 0.0, 1.0, 1.0]).unwrap(), 1.0);
    }

    #[test]
    fn bucket_kernels_equal_row_level_metrics() {
        // Buckets by distinct score of P, ascending: 0.1 0.2 0.35 0.4 0.6 0.8 0.9.
        let pos = [0.0, 0.0, 2.0, 1.0, 0.0, 1.0, 1.0];
        let neg = [1.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0];
        close(auc_from_bucket_counts(&pos, &neg).unwrap(), 0.68);
        close(ks_from_bucket_counts(&pos, &neg).unwrap(), 0.4);
        // Coarser buckets treat rows within a bucket as tied.
        // pos = (0, 2), neg = (1, 1): each positive beats one negative and ties one →
        // 2·(1 + 1/2) / (2·2) = 0.75.
        close(auc_from_bucket_counts(&[0.0, 2.0], &[1.0, 1.0]).unwrap(), 0.75);
    }

    #[test]
    fn psi_by_hand() {
        // expected 1..=10 with 2 bins: edge = sorted[5] = 6 → bins [<6] and [≥6], 5 + 5.
        // actual: 2 values < 6 and 8 values ≥ 6 → a = (0.2, 0.8), e = (0.5, 0.5).
        // PSI = (0.2 − 0.5)·ln(0.2/0.5) + (0.8 − 0.5)·ln(0.8/0.5)
        let e: Vec<f64> = (1..=10).map(f64::from).collect();
        let a = [1.0, 2.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0, 11.0, 12.0];
        let want = (0.2_f64 - 0.5) * (0.2_f64 / 0.5).ln() + (0.8_f64 - 0.5) * (0.8_f64 / 0.5).ln();
        close(population_stability_index(&e, &a, 2).unwrap(), want);
        close(population_stability_index(&e, &e, 10).unwrap(), 0.0);
        // Empty actual bin uses the epsilon.
        let a = [7.0; 4];
        let want = (PSI_EPS - 0.5) * (PSI_EPS / 0.5).ln() + (1.0_f64 - 0.5) * (1.0_f64 / 0.5).ln();
        close(population_stability_index(&e, &a, 2).unwrap(), want);
    }

    #[test]
    fn quantile_edges_drop_duplicates() {
        assert_eq!(quantile_edges(&[0.0, 0.0, 0.0, 0.0, 1.0, 2.0], 3), vec![1.0]);
        assert_eq!(quantile_edges(&[f64::NAN, 1.0, 2.0, 3.0, 4.0], 2), vec![3.0]);
        assert!(quantile_edges(&[5.0; 4], 4).is_empty());
    }

    #[test]
    fn lift_table_by_hand() {
        // 10 rows, 5 buckets of 2 by descending score.
        let s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0];
        let y = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let t = lift_gain_table(&s, &y, 5).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[0].bucket, 1);
        assert_eq!((t[0].count, t[0].events), (2, 2));
        close(t[0].max_score, 0.9);
        close(t[0].min_score, 0.8);
        close(t[0].lift, 1.0 / 0.4);
        close(t[0].cumulative_events_pct, 50.0);
        close(t[1].event_rate, 0.5);
        close(t[1].cumulative_lift, (3.0 / 4.0) / 0.4);
        close(t[2].cumulative_events_pct, 100.0);
        close(t[4].cumulative_lift, 1.0);
        // Unequal sizes: 10 rows in 3 buckets → 4, 3, 3.
        let t = lift_gain_table(&s, &y, 3).unwrap();
        assert_eq!(t.iter().map(|r| r.count).collect::<Vec<_>>(), vec![4, 3, 3]);
        assert!(lift_gain_table(&s, &[0.0; 10], 3).is_err());
        assert!(lift_gain_table(&s, &y, 0).is_err());
    }

    #[test]
    fn accuracy_by_hand() {
        // Threshold 0.5 predicts 1 for 0.8, 0.9 (both events: correct) and 0.6 (a non-event:
        // wrong); of the seven rows below it the four non-events are correct → 6 / 10.
        close(accuracy_at(&P, &Y, 0.5).unwrap(), 0.6);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let inv =
            |r: Result<f64, ModelError>| assert!(matches!(r, Err(ModelError::InvalidInput(_))));
        inv(auc(&[], &[]));
        inv(auc(&[0.1, 0.2], &[0.0]));
        inv(auc(&[0.1, 0.2], &[1.0, 1.0]));
        inv(ks(&[0.1, 0.2], &[0.0, 0.0]));
        inv(auc(&[0.1, f64::NAN], &[0.0, 1.0]));
        inv(auc(&[0.1, 0.2], &[0.0, 2.0]));
        inv(log_loss(&[0.1, 1.2], &[0.0, 1.0]));
        inv(brier(&[], &[]));
        inv(auc_weighted(&[0.1, 0.2], &[0.0, 1.0], Some(&[1.0, -1.0])));
        inv(auc_weighted(&[0.1, 0.2], &[0.0, 1.0], Some(&[1.0, 0.0])));
        inv(auc_from_bucket_counts(&[1.0], &[1.0, 2.0]));
        inv(auc_from_bucket_counts(&[0.0, 0.0], &[1.0, 2.0]));
        inv(population_stability_index(&[], &[1.0], 10));
        assert!(Metrics::compute(&[0.5], &[1.0]).is_err());
    }
}
