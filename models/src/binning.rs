//! Credit-style binning: equal-frequency and monotone bins, weight of evidence (WOE) and
//! information value (IV), after Siddiqi, "Credit Risk Scorecards" (Wiley 2006), ch. 6.
//!
//! Every feature is cut into a few bins; each bin gets
//!
//! ```text
//! WOE_i = ln( (N_i / ΣN) / (E_i / ΣE) )          N = non-events ("goods"), E = events ("bads")
//! IV    = Σ_i (N_i/ΣN − E_i/ΣE) · WOE_i
//! ```
//!
//! **Sign convention (Siddiqi):** a *positive* WOE means the bin holds relatively more
//! non-events, i.e. *lower* risk. Counts are smoothed additively (0.5 per class per bin by
//! default) so an empty class never yields ±∞; a bin without any training rows gets WOE 0
//! (no evidence either way) and IV 0.
//!
//! Binning of a numeric feature:
//! - [`BinningMethod::EqualFrequency`]: [`equal_frequency_edges`] cuts the sorted values into
//!   bins of about equal count; a value holding at least `1/max_bins` of the rows (a point
//!   mass, such as 0 for "no payment") becomes a bin of its own.
//! - [`BinningMethod::Monotone`]: fine equal-frequency bins are merged by
//!   [`monotone_merge`] until the event rate is strictly monotone in the feature and every bin
//!   is large enough — the pool-adjacent-violators algorithm (Ayer et al., Ann. Math. Stat. 1955)
//!   as used in monotone optimal binning (Mironchyk & Tchistiakov, "Monotone optimal binning
//!   algorithm for credit risk modeling", 2017).
//!
//! A categorical feature gets one bin per level; levels with fewer than `min_bin_fraction`
//! of the rows share an "other" bin. Missing values (`NaN`) always have their own bin, the
//! last one; if no value was missing at fit time the bin is empty and carries WOE 0.
//!
//! The counting kernels [`woe_iv`] and [`monotone_merge`] are public and work on aggregated
//! per-bin counts, so federated binning can sum counts across parties and call them; a
//! vertical feature holder cuts its columns alone with [`unlabeled_rule`] (the rule
//! [`FeatureBinning::fit`] uses when it needs no labels), so its bins are the centralized ones.

use std::collections::BTreeSet;
use std::ops::Range;

use ndarray::{Array2, ArrayView1};
use serde::{Deserialize, Serialize};

use crate::{Dataset, FeatureKind, Features, ModelError};

/// Additive smoothing of per-bin class counts used by [`Binner::fit`].
pub const WOE_SMOOTHING: f64 = 0.5;

/// Number of fine equal-frequency bins [`BinningMethod::Monotone`] starts from
/// (or `max_bins`, if larger).
pub const MONOTONE_FINE_BINS: usize = 20;

/// Label of the bin holding missing values.
pub const MISSING_LABEL: &str = "missing";

/// How numeric features are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinningMethod {
    /// Equal-frequency bins with point masses kept whole ([`equal_frequency_edges`]).
    #[default]
    EqualFrequency,
    /// Fine equal-frequency bins merged until the event rate is monotone ([`monotone_merge`]).
    Monotone,
}

/// Binning hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BinningParams {
    /// How numeric features are cut.
    pub method: BinningMethod,
    /// Target number of bins for a numeric feature (`≥ 2`), not counting the missing bin.
    /// Equal-frequency binning may return one more when point masses break the range up.
    pub max_bins: usize,
    /// Minimum share of the non-missing rows per bin, in `[0, 0.5)`: the floor for merged
    /// monotone bins, and the threshold below which categorical levels go to "other".
    pub min_bin_fraction: f64,
}

impl Default for BinningParams {
    fn default() -> Self {
        Self { method: BinningMethod::EqualFrequency, max_bins: 10, min_bin_fraction: 0.05 }
    }
}

impl BinningParams {
    /// Checks the parameter ranges.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] naming the offending parameter.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.max_bins < 2 {
            return Err(ModelError::InvalidParam {
                name: "max_bins",
                reason: format!("must be at least 2, got {}", self.max_bins),
            });
        }
        if !(0.0..0.5).contains(&self.min_bin_fraction) {
            return Err(ModelError::InvalidParam {
                name: "min_bin_fraction",
                reason: format!("must be in [0, 0.5), got {}", self.min_bin_fraction),
            });
        }
        Ok(())
    }
}

/// One bin of a feature with its training counts and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Human-readable content: `"[-inf, 0.5)"`, `"missing"`, `"retail|food"`.
    pub label: String,
    /// Training rows in the bin (`events + non_events`).
    pub count: f64,
    /// Training rows with label 1.
    pub events: f64,
    /// Training rows with label 0.
    pub non_events: f64,
    /// Weight of evidence; positive = lower risk than average.
    pub woe: f64,
    /// This bin's contribution to the feature's information value.
    pub iv: f64,
}

impl Bin {
    /// `events / count`, or `None` for a bin without training rows.
    pub fn event_rate(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.events / self.count)
    }
}

/// How raw values map to bins (not counting the missing bin, which is always last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BinRule {
    /// Bin `i` holds `[edges[i−1], edges[i])`, with `edges[−1] = −∞`, `edges[len] = +∞`.
    Numeric {
        /// Strictly increasing finite cut points.
        edges: Vec<f64>,
    },
    /// Level `l` (the cell value `l as f64`) goes to bin `level_bins[l]`.
    Categorical {
        /// Level names in index order, as in the feature spec.
        levels: Vec<String>,
        /// Bin of each level.
        level_bins: Vec<usize>,
    },
}

/// The fitted binning of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBinning {
    /// Feature (column) name.
    pub feature: String,
    /// Value-to-bin rule.
    pub rule: BinRule,
    /// All bins; the last one is the missing bin.
    pub bins: Vec<Bin>,
    /// Total information value.
    pub iv: f64,
}

/// Fitted binnings of several features, matched to input columns by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binner {
    /// One binning per feature, in training column order.
    pub features: Vec<FeatureBinning>,
}

/// Equal-frequency cut points for `values` (NaN and ±∞ ignored).
///
/// Algorithm:
/// 1. Group the sorted values into distinct values with counts; let `t = n / max_bins`.
/// 2. Every distinct value with count `≥ t` is *heavy* and becomes a bin of its own, so a
///    point mass (e.g. 40 % of rows at 0) is neither split across bins nor smeared into a
///    neighbouring range.
/// 3. Each maximal run of non-heavy values between heavy ones (a *segment*) with `C` rows gets
///    `k = max(1, round(C / t))` bins; its `k − 1` cuts are placed after the distinct value whose
///    cumulative count is nearest to `b·C/k`, `b = 1..k`.
/// 4. A cut between distinct values `a < b` is an edge in `(a, b]`: their midpoint rounded to
///    the fewest decimals that stay strictly between them (`0.5` between 0 and 1, `20.5` between 20
///    and 21, `0.35` between 0.3419 and 0.3627); duplicates collapse.
///
/// The result is strictly increasing and gives at most `max_bins + 1` bins
/// (`Σ max(1, round(C_s/t)) ≤ max_bins + 1`); a value `v` falls in bin `#{edges ≤ v}`.
pub fn equal_frequency_edges(values: &[f64], max_bins: usize) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    // Values equal under `total_cmp` have equal bits, so an unstable sort gives the same list.
    sorted.sort_unstable_by(f64::total_cmp);
    let mut distinct: Vec<(f64, f64)> = Vec::new();
    for v in sorted {
        match distinct.last_mut() {
            Some((last, c)) if *last == v => *c += 1.0,
            _ => distinct.push((v, 1.0)),
        }
    }
    equal_frequency_edges_weighted(&distinct, max_bins)
}

/// [`equal_frequency_edges`] on `(value, count)` pairs: the same edges as on a list holding
/// each value `count` times. Pairs may come in any order and repeat values; non-finite values
/// and non-positive counts are ignored. Federated binning calls this with pooled counts of
/// rounded values.
pub fn equal_frequency_edges_weighted(values: &[(f64, f64)], max_bins: usize) -> Vec<f64> {
    let mut pairs: Vec<(f64, f64)> =
        values.iter().copied().filter(|&(v, c)| v.is_finite() && c > 0.0).collect();
    if pairs.is_empty() || max_bins < 2 {
        return Vec::new();
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut distinct: Vec<(f64, f64)> = Vec::with_capacity(pairs.len());
    for (v, c) in pairs {
        match distinct.last_mut() {
            Some((last, n)) if *last == v => *n += c,
            _ => distinct.push((v, c)),
        }
    }
    let n: f64 = distinct.iter().map(|d| d.1).sum();
    let target = n / max_bins as f64;
    let heavy: Vec<bool> = distinct.iter().map(|&(_, c)| c >= target).collect();
    let m = distinct.len();

    // `cuts` holds indices `j`: cut between distinct[j] and distinct[j + 1].
    let mut cuts = BTreeSet::new();
    let mut j = 0;
    while j < m {
        if heavy[j] {
            if j > 0 {
                cuts.insert(j - 1);
            }
            if j + 1 < m {
                cuts.insert(j);
            }
            j += 1;
            continue;
        }
        let start = j;
        while j < m && !heavy[j] {
            j += 1;
        }
        let end = j;
        let mut cum = Vec::with_capacity(end - start);
        let mut acc = 0.0;
        for &(_, c) in &distinct[start..end] {
            acc += c;
            cum.push(acc);
        }
        let seg = acc;
        let k = ((seg / target).round() as usize).max(1);
        // A cut after the segment's last value would be the boundary to a heavy value (or
        // the end), already handled, so candidates are the first `end − start − 1` values.
        let last_candidate = cum.len().saturating_sub(1);
        for b in 1..k {
            let goal = b as f64 * seg / k as f64;
            let t = cum.partition_point(|&c| c < goal);
            let t = if t > 0
                && (goal - cum[t - 1]) < (cum.get(t).copied().unwrap_or(f64::MAX) - goal)
            {
                t - 1
            } else {
                t
            };
            if t < last_candidate {
                cuts.insert(start + t);
            }
        }
    }
    cuts.into_iter().map(|j| cut_between(distinct[j].0, distinct[j + 1].0)).collect()
}

/// Merges adjacent fine bins (in feature order) until the event rate is strictly monotone,
/// every bin holds at least `min_bin_fraction` of the rows and there are at most `max_bins`
/// bins. Returns the merged bins as ranges of fine-bin indices covering `0..events.len()`.
///
/// Algorithm (monotone optimal binning, Mironchyk & Tchistiakov 2017):
/// 1. Empty fine bins are attached to the preceding bin (the first ones to the next).
/// 2. The direction is the sign of the count-weighted covariance between the bin position
///    and the event rate, `Σ_i (i − ī)(E_i − n_i·r̄)` (increasing if `≥ 0`).
/// 3. Pool adjacent violators: scan left to right keeping a stack of merged bins; while the
///    top two are not strictly ordered in that direction, merge them.
/// 4. While some bin has fewer than `min_bin_fraction · Σn` rows, merge the smallest such bin
///    with the neighbour whose event rate is closer (the lone neighbour at either end).
/// 5. While there are more than `max_bins` bins, merge the adjacent pair with the closest
///    event rates.
///
/// Merging two adjacent bins of a strictly monotone sequence keeps it strictly monotone
/// (the pooled rate lies between the two), so steps 4 and 5 preserve step 3's result.
/// Counts may be weighted (non-negative reals); negative or NaN counts are treated as 0.
pub fn monotone_merge(
    events: &[f64],
    non_events: &[f64],
    min_bin_fraction: f64,
    max_bins: usize,
) -> Vec<Range<usize>> {
    let len = events.len().min(non_events.len());
    if len == 0 {
        return Vec::new();
    }
    let clean = |v: f64| if v > 0.0 { v } else { 0.0 };
    // Step 1: groups of fine bins, each with a positive count unless all are empty.
    let mut groups: Vec<Group> = Vec::new();
    let mut pending_start = 0;
    for i in 0..len {
        let (e, ne) = (clean(events[i]), clean(non_events[i]));
        if e + ne > 0.0 {
            groups.push(Group { range: pending_start..i + 1, events: e, count: e + ne });
            pending_start = i + 1;
        } else if let Some(last) = groups.last_mut() {
            last.range.end = i + 1;
            pending_start = i + 1;
        }
    }
    match groups.last_mut() {
        None => return std::iter::once(0..len).collect(),
        Some(last) => last.range.end = len,
    }
    let total: f64 = groups.iter().map(|g| g.count).sum();
    let total_events: f64 = groups.iter().map(|g| g.events).sum();

    // Step 2: direction.
    let mean_pos = groups.iter().enumerate().map(|(i, g)| i as f64 * g.count).sum::<f64>() / total;
    let mean_rate = total_events / total;
    let cov: f64 = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (i as f64 - mean_pos) * (g.events - g.count * mean_rate))
        .sum();
    let increasing = cov >= 0.0;

    // Step 3: pool adjacent violators.
    let mut stack: Vec<Group> = Vec::with_capacity(groups.len());
    for g in groups {
        stack.push(g);
        while stack.len() >= 2 {
            let (a, b) = (&stack[stack.len() - 2], &stack[stack.len() - 1]);
            let ordered = if increasing { a.rate() < b.rate() } else { a.rate() > b.rate() };
            if ordered {
                break;
            }
            if let Some(top) = stack.pop()
                && let Some(prev) = stack.last_mut()
            {
                prev.absorb(top);
            }
        }
    }
    let mut groups = stack;

    // Step 4: minimum size.
    let floor = min_bin_fraction.max(0.0) * total;
    while groups.len() > 1 {
        let Some((i, _)) = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.count < floor)
            .min_by(|a, b| a.1.count.total_cmp(&b.1.count))
        else {
            break;
        };
        let left = i.checked_sub(1);
        let right = (i + 1 < groups.len()).then_some(i + 1);
        let partner = match (left, right) {
            (Some(l), Some(r)) => {
                let r_i = groups[i].rate();
                if (groups[l].rate() - r_i).abs() <= (groups[r].rate() - r_i).abs() { l } else { r }
            }
            (Some(l), None) => l,
            (None, Some(r)) => r,
            (None, None) => break,
        };
        merge_adjacent(&mut groups, i.min(partner));
    }

    // Step 5: at most `max_bins`.
    while groups.len() > max_bins.max(1) {
        let Some(i) = (0..groups.len() - 1).min_by(|&a, &b| {
            let da = (groups[a].rate() - groups[a + 1].rate()).abs();
            let db = (groups[b].rate() - groups[b + 1].rate()).abs();
            da.total_cmp(&db)
        }) else {
            break;
        };
        merge_adjacent(&mut groups, i);
    }
    groups.into_iter().map(|g| g.range).collect()
}

/// Weight of evidence and information value from per-bin counts.
///
/// With smoothed counts `E'_i = E_i + s`, `N'_i = N_i + s` over the bins with any rows
/// (`E_i + N_i > 0`), `e_i = E'_i / ΣE'`, `g_i = N'_i / ΣN'`:
///
/// ```text
/// WOE_i = ln(g_i / e_i)          (positive = fewer events than average = lower risk)
/// IV_i  = (g_i − e_i) · WOE_i    (≥ 0)
/// IV    = Σ_i IV_i
/// ```
///
/// Bins with no rows get WOE 0 and IV 0 and do not enter the sums. With `smoothing = 0`
/// a bin with events but no non-events (or vice versa) gets an infinite WOE.
/// Returns `(woe per bin, total iv, iv per bin)`.
pub fn woe_iv(events: &[f64], non_events: &[f64], smoothing: f64) -> (Vec<f64>, f64, Vec<f64>) {
    let len = events.len().min(non_events.len());
    let populated: Vec<bool> = (0..len).map(|i| events[i] + non_events[i] > 0.0).collect();
    let (mut se, mut sn) = (0.0, 0.0);
    for i in (0..len).filter(|&i| populated[i]) {
        se += events[i] + smoothing;
        sn += non_events[i] + smoothing;
    }
    let mut woe = vec![0.0; len];
    let mut iv_bins = vec![0.0; len];
    for i in (0..len).filter(|&i| populated[i]) {
        let e = (events[i] + smoothing) / se;
        let g = (non_events[i] + smoothing) / sn;
        woe[i] = (g / e).ln();
        iv_bins[i] = (g - e) * woe[i];
    }
    let iv = iv_bins.iter().sum();
    (woe, iv, iv_bins)
}

impl FeatureBinning {
    /// Builds a binning from a rule and per-bin class counts (bins in rule order, missing bin
    /// last), computing WOE and IV with [`woe_iv`]. Federated binning calls this with counts
    /// summed over parties.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] when the rule, labels and counts disagree in length, a count
    /// is negative or not finite, numeric edges are not strictly increasing and finite, or a
    /// categorical level points at a missing or non-existent bin.
    pub fn from_counts(
        feature: impl Into<String>,
        rule: BinRule,
        labels: Vec<String>,
        events: &[f64],
        non_events: &[f64],
        smoothing: f64,
    ) -> Result<Self, ModelError> {
        let feature = feature.into();
        let n_bins = labels.len();
        if events.len() != n_bins || non_events.len() != n_bins || n_bins == 0 {
            return Err(ModelError::InvalidInput(format!(
                "feature `{feature}`: {} labels, {} event counts, {} non-event counts",
                n_bins,
                events.len(),
                non_events.len()
            )));
        }
        if let Some(c) = events.iter().chain(non_events).find(|c| !(c.is_finite() && **c >= 0.0)) {
            return Err(ModelError::InvalidInput(format!(
                "feature `{feature}`: bin count {c} is not a finite non-negative number"
            )));
        }
        let value_bins = match &rule {
            BinRule::Numeric { edges } => {
                if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(ModelError::InvalidInput(format!(
                        "feature `{feature}`: edges must be finite and strictly increasing"
                    )));
                }
                edges.len() + 1
            }
            BinRule::Categorical { levels, level_bins } => {
                if levels.len() != level_bins.len() || level_bins.iter().any(|&b| b + 1 >= n_bins) {
                    return Err(ModelError::InvalidInput(format!(
                        "feature `{feature}`: {} levels, {} level bins, {} bins including missing",
                        levels.len(),
                        level_bins.len(),
                        n_bins
                    )));
                }
                n_bins - 1
            }
        };
        if value_bins + 1 != n_bins {
            return Err(ModelError::InvalidInput(format!(
                "feature `{feature}`: rule has {value_bins} value bins but {n_bins} bins were given \
                 (expected value bins + 1 missing bin)"
            )));
        }
        let (woe, iv, iv_bins) = woe_iv(events, non_events, smoothing);
        let bins = labels
            .into_iter()
            .enumerate()
            .map(|(i, label)| Bin {
                label,
                count: events[i] + non_events[i],
                events: events[i],
                non_events: non_events[i],
                woe: woe[i],
                iv: iv_bins[i],
            })
            .collect();
        Ok(Self { feature, rule, bins, iv })
    }

    /// Fits the binning of one column with 0/1 `labels`.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] for invalid `params`; [`ModelError::InvalidInput`] on a
    /// length mismatch or a categorical cell that is not a level index.
    pub fn fit(
        spec_name: &str,
        kind: &FeatureKind,
        values: ArrayView1<'_, f64>,
        labels: ArrayView1<'_, f64>,
        params: &BinningParams,
    ) -> Result<Self, ModelError> {
        params.validate()?;
        if values.len() != labels.len() {
            return Err(ModelError::InvalidInput(format!(
                "feature `{spec_name}`: {} values but {} labels",
                values.len(),
                labels.len()
            )));
        }
        let rule = match (kind, params.method) {
            (FeatureKind::Numeric, BinningMethod::Monotone) => {
                let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
                BinRule::Numeric { edges: monotone_edges(&present, values, labels, params) }
            }
            _ => unlabeled_rule(spec_name, kind, values, params.max_bins, params.min_bin_fraction)?,
        };
        let labels_text = bin_labels(&rule);
        let n_bins = labels_text.len();
        let mut events = vec![0.0; n_bins];
        let mut non_events = vec![0.0; n_bins];
        for (row, (&v, &y)) in values.iter().zip(labels.iter()).enumerate() {
            let b = bin_of(&rule, n_bins, spec_name, v, Some(row))?;
            if y == 1.0 {
                events[b] += 1.0;
            } else {
                non_events[b] += 1.0;
            }
        }
        Self::from_counts(spec_name, rule, labels_text, &events, &non_events, WOE_SMOOTHING)
    }

    /// [`FeatureBinning::from_counts`] with the standard bin labels and
    /// [`WOE_SMOOTHING`]: `events` and `non_events` hold one count per value bin of `rule` and
    /// the missing bin last.
    ///
    /// # Errors
    /// As [`FeatureBinning::from_counts`].
    pub fn from_rule_counts(
        feature: impl Into<String>,
        rule: BinRule,
        events: &[f64],
        non_events: &[f64],
    ) -> Result<Self, ModelError> {
        let labels = bin_labels(&rule);
        Self::from_counts(feature, rule, labels, events, non_events, WOE_SMOOTHING)
    }

    /// Number of bins of `rule`, the missing bin included.
    pub fn n_bins_of(rule: &BinRule) -> usize {
        bin_labels(rule).len()
    }

    /// Index of the missing bin (always the last).
    pub fn missing_bin(&self) -> usize {
        self.bins.len().saturating_sub(1)
    }

    /// The bin of one cell value (`NaN` → the missing bin).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for a categorical value that is not a valid level index.
    pub fn bin_of(&self, value: f64) -> Result<usize, ModelError> {
        bin_of(&self.rule, self.bins.len(), &self.feature, value, None)
    }

    /// WOE of each bin, in bin order.
    pub fn woe(&self) -> Vec<f64> {
        self.bins.iter().map(|b| b.woe).collect()
    }

    /// True for a categorical feature.
    pub fn is_categorical(&self) -> bool {
        matches!(self.rule, BinRule::Categorical { .. })
    }
}

impl Binner {
    /// Fits a binning for every column of `data`.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] for invalid `params`; [`ModelError::InvalidInput`] when
    /// `data` has no rows, labels of a single class, duplicate column names or an invalid
    /// categorical cell.
    pub fn fit(data: &Dataset, params: &BinningParams) -> Result<Self, ModelError> {
        params.validate()?;
        if data.n_rows() == 0 {
            return Err(ModelError::InvalidInput("cannot fit a binning on zero rows".into()));
        }
        let events = data.label.iter().filter(|&&y| y == 1.0).count();
        if events == 0 || events == data.n_rows() {
            return Err(ModelError::InvalidInput(format!(
                "binning needs both classes; labels hold {events} events in {} rows",
                data.n_rows()
            )));
        }
        let names = data.features.names();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(ModelError::InvalidInput(format!("duplicate feature name `{name}`")));
            }
        }
        let features = data
            .features
            .specs
            .iter()
            .enumerate()
            .map(|(j, spec)| {
                FeatureBinning::fit(
                    &spec.name,
                    &spec.kind,
                    data.features.values.column(j),
                    data.label.view(),
                    params,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { features })
    }

    /// Bin index of every cell: `n_rows × self.features.len()`, columns in binner order.
    ///
    /// Input columns are found by name (extra columns are ignored); a categorical binning
    /// requires the same levels in the input spec.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] when a binned feature is absent, appears twice, has another
    /// kind or level list, or a categorical cell is not a level index.
    pub fn bin_indices(&self, x: &Features) -> Result<Array2<usize>, ModelError> {
        let cols = self.columns(x)?;
        let mut out = Array2::zeros((x.n_rows(), self.features.len()));
        for (k, (fb, &j)) in self.features.iter().zip(&cols).enumerate() {
            let n_bins = fb.bins.len();
            for (row, &v) in x.values.column(j).iter().enumerate() {
                out[[row, k]] = bin_of(&fb.rule, n_bins, &fb.feature, v, Some(row))?;
            }
        }
        Ok(out)
    }

    /// WOE of every cell: `n_rows × self.features.len()`, columns in binner order.
    ///
    /// # Errors
    /// As [`Binner::bin_indices`].
    pub fn transform_woe(&self, x: &Features) -> Result<Array2<f64>, ModelError> {
        let idx = self.bin_indices(x)?;
        let mut out = Array2::zeros(idx.raw_dim());
        for (k, fb) in self.features.iter().enumerate() {
            for (o, &b) in out.column_mut(k).iter_mut().zip(idx.column(k)) {
                *o = fb.bins[b].woe;
            }
        }
        Ok(out)
    }

    /// `(feature, IV)` sorted by descending IV (ties by name).
    pub fn iv_table(&self) -> Vec<(String, f64)> {
        let mut t: Vec<(String, f64)> =
            self.features.iter().map(|f| (f.feature.clone(), f.iv)).collect();
        t.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        t
    }

    /// Feature names in binner order.
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.feature.as_str()).collect()
    }

    /// The input column of each binned feature, checking names, kinds and levels.
    fn columns(&self, x: &Features) -> Result<Vec<usize>, ModelError> {
        self.features
            .iter()
            .map(|fb| {
                let mut found = x.specs.iter().enumerate().filter(|(_, s)| s.name == fb.feature);
                let Some((j, spec)) = found.next() else {
                    return Err(ModelError::InvalidInput(format!(
                        "feature `{}` is missing from the input",
                        fb.feature
                    )));
                };
                if found.next().is_some() {
                    return Err(ModelError::InvalidInput(format!(
                        "feature `{}` appears more than once in the input",
                        fb.feature
                    )));
                }
                let compatible = match (&fb.rule, &spec.kind) {
                    (BinRule::Numeric { .. }, FeatureKind::Numeric) => true,
                    (
                        BinRule::Categorical { levels, .. },
                        FeatureKind::Categorical { levels: input },
                    ) => levels == input,
                    _ => false,
                };
                if !compatible {
                    return Err(ModelError::InvalidInput(format!(
                        "feature `{}`: input kind {:?} does not match the fitted binning",
                        fb.feature, spec.kind
                    )));
                }
                Ok(j)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// A run of fine bins being merged.
#[derive(Debug, Clone)]
struct Group {
    range: Range<usize>,
    events: f64,
    count: f64,
}

impl Group {
    fn rate(&self) -> f64 {
        if self.count > 0.0 { self.events / self.count } else { 0.0 }
    }

    fn absorb(&mut self, other: Group) {
        self.range = self.range.start.min(other.range.start)..self.range.end.max(other.range.end);
        self.events += other.events;
        self.count += other.count;
    }
}

/// Merges `groups[i + 1]` into `groups[i]`.
fn merge_adjacent(groups: &mut Vec<Group>, i: usize) {
    let next = groups.remove(i + 1);
    groups[i].absorb(next);
}

/// A cut point `c` with `a < c ≤ b` for finite `a < b`: the midpoint rounded to the fewest
/// decimals that keep it strictly between `a` and `b` (the midpoint itself, or `b` for adjacent
/// floats, if no rounding does), so bin labels read `[0.35, 1.2)` rather than
/// `[0.34191150000000003, …)`.
fn cut_between(a: f64, b: f64) -> f64 {
    let mid = a / 2.0 + b / 2.0;
    for decimals in 0..=17 {
        if let Ok(c) = format!("{mid:.decimals$}").parse::<f64>()
            && a < c
            && c < b
        {
            // `-0` prints badly in labels; `+ 0.0` turns it into `0`.
            return c + 0.0;
        }
    }
    // Adjacent floats: the midpoint may round onto `a`, which would move `a` up.
    if mid > a && mid <= b { mid } else { b }
}

/// Monotone binning edges: fine equal-frequency edges merged by [`monotone_merge`].
fn monotone_edges(
    present: &[f64],
    values: ArrayView1<'_, f64>,
    labels: ArrayView1<'_, f64>,
    params: &BinningParams,
) -> Vec<f64> {
    let fine = equal_frequency_edges(present, MONOTONE_FINE_BINS.max(params.max_bins));
    let mut events = vec![0.0; fine.len() + 1];
    let mut non_events = vec![0.0; fine.len() + 1];
    for (&v, &y) in values.iter().zip(labels.iter()) {
        if v.is_nan() {
            continue;
        }
        let b = fine.partition_point(|&e| e <= v);
        if y == 1.0 {
            events[b] += 1.0;
        } else {
            non_events[b] += 1.0;
        }
    }
    let groups = monotone_merge(&events, &non_events, params.min_bin_fraction, params.max_bins);
    // Keep the fine edge at the end of each merged group but the last.
    merged_edges(&fine, &groups)
}

/// Monotone binning edges ([`BinningMethod::Monotone`]) from `(value, events, non_events)`
/// triples: fine equal-frequency edges on the pooled counts, per-fine-bin class counts, then
/// [`monotone_merge`]. Equals the centralized rule on a table holding each value with those
/// class counts. Federated binning calls this with pooled counts of rounded values.
pub fn monotone_edges_weighted(values: &[(f64, f64, f64)], params: &BinningParams) -> Vec<f64> {
    let counts: Vec<(f64, f64)> = values.iter().map(|&(v, e, n)| (v, e + n)).collect();
    let fine = equal_frequency_edges_weighted(&counts, MONOTONE_FINE_BINS.max(params.max_bins));
    let mut events = vec![0.0; fine.len() + 1];
    let mut non_events = vec![0.0; fine.len() + 1];
    for &(v, e, n) in values {
        if !v.is_finite() {
            continue;
        }
        let b = fine.partition_point(|&x| x <= v);
        events[b] += e;
        non_events[b] += n;
    }
    let groups = monotone_merge(&events, &non_events, params.min_bin_fraction, params.max_bins);
    merged_edges(&fine, &groups)
}

/// The categorical rule of [`FeatureBinning::fit`] from per-level row counts: levels with at
/// least `min_bin_fraction` of the non-missing rows (and at least one row) get a bin each, in
/// level order; rare and unseen levels share an "other" bin after them.
pub fn categorical_rule_from_counts(
    levels: &[String],
    counts: &[f64],
    min_bin_fraction: f64,
) -> BinRule {
    let present: f64 = counts.iter().sum();
    let floor = min_bin_fraction * present;
    let mut level_bins = vec![usize::MAX; levels.len()];
    let mut next = 0;
    for (l, &c) in counts.iter().enumerate().take(levels.len()) {
        if c > 0.0 && c >= floor {
            level_bins[l] = next;
            next += 1;
        }
    }
    for b in &mut level_bins {
        if *b == usize::MAX {
            *b = next;
        }
    }
    BinRule::Categorical { levels: levels.to_vec(), level_bins }
}

/// The rule [`FeatureBinning::fit`] gives a column when it needs no labels: equal-frequency
/// edges ([`equal_frequency_edges`] with `max_bins`) for a numeric column, one bin per level
/// with rare levels pooled ([`categorical_rule_from_counts`]) for a categorical one. A
/// federated feature holder calls it alone on its aligned rows and gets the centralized bins;
/// with `max_bins = max(MONOTONE_FINE_BINS, max_bins)` it gives the fine bins that
/// [`BinningMethod::Monotone`] merges ([`monotone_merge`], then [`merged_edges`]).
///
/// # Errors
/// [`ModelError::InvalidInput`] for a categorical cell that is not a level index.
pub fn unlabeled_rule(
    spec_name: &str,
    kind: &FeatureKind,
    values: ArrayView1<'_, f64>,
    max_bins: usize,
    min_bin_fraction: f64,
) -> Result<BinRule, ModelError> {
    Ok(match kind {
        FeatureKind::Numeric => {
            let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            BinRule::Numeric { edges: equal_frequency_edges(&present, max_bins) }
        }
        FeatureKind::Categorical { levels } => {
            let mut counts = vec![0usize; levels.len()];
            for (row, &v) in values.iter().enumerate() {
                if !v.is_nan() {
                    counts[level_index(spec_name, levels.len(), v, Some(row))?] += 1;
                }
            }
            let counts: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
            categorical_rule_from_counts(levels, &counts, min_bin_fraction)
        }
    })
}

/// The edges of merged bins: `groups` (from [`monotone_merge`]) cover the fine bins cut by
/// `fine`; each group but the last ends at the fine edge after its last fine bin.
pub fn merged_edges(fine: &[f64], groups: &[Range<usize>]) -> Vec<f64> {
    groups.iter().take(groups.len().saturating_sub(1)).map(|g| fine[g.end - 1]).collect()
}

/// The bin of cell `v` under `rule` with `n_bins` bins, the missing bin (last) included: what
/// [`FeatureBinning::bin_of`] does, for a party that holds the rule but not the counts (a
/// vertical feature holder). `NaN` goes to the missing bin.
///
/// # Errors
/// [`ModelError::InvalidInput`] for a categorical value that is not a level index, or a rule
/// that does not fit `n_bins`.
pub fn rule_bin_of(
    rule: &BinRule,
    n_bins: usize,
    feature: &str,
    v: f64,
) -> Result<usize, ModelError> {
    bin_of(rule, n_bins, feature, v, None)
}

/// Text label of every bin of `rule`, the missing bin last.
fn bin_labels(rule: &BinRule) -> Vec<String> {
    let mut labels = match rule {
        BinRule::Numeric { edges } => {
            let fmt = |lo: Option<f64>, hi: Option<f64>| {
                let lo = lo.map_or_else(|| "-inf".to_string(), |v| v.to_string());
                let hi = hi.map_or_else(|| "+inf".to_string(), |v| v.to_string());
                format!("[{lo}, {hi})")
            };
            (0..=edges.len())
                .map(|i| {
                    let lo = i.checked_sub(1).map(|k| edges[k]);
                    fmt(lo, edges.get(i).copied())
                })
                .collect()
        }
        BinRule::Categorical { levels, level_bins } => {
            let n = level_bins.iter().copied().max().map_or(0, |m| m + 1);
            let mut names: Vec<Vec<&str>> = vec![Vec::new(); n];
            for (level, &b) in levels.iter().zip(level_bins) {
                names[b].push(level);
            }
            names.into_iter().map(|v| v.join("|")).collect::<Vec<_>>()
        }
    };
    labels.push(MISSING_LABEL.to_string());
    labels
}

/// The level index held by a categorical cell; `row` only names the cell in the error.
fn level_index(
    feature: &str,
    n_levels: usize,
    v: f64,
    row: Option<usize>,
) -> Result<usize, ModelError> {
    if v >= 0.0 && v.fract() == 0.0 && v < n_levels as f64 {
        Ok(v as usize)
    } else {
        let at = row.map_or_else(String::new, |r| format!(" row {r}"));
        Err(ModelError::InvalidInput(format!(
            "feature `{feature}`{at}: {v} is not a level index below {n_levels}"
        )))
    }
}

/// The bin of a cell under `rule`; `n_bins` includes the missing bin (last). Checks the
/// result against `n_bins`, so a binning read from an inconsistent artifact is an error
/// rather than a panic.
fn bin_of(
    rule: &BinRule,
    n_bins: usize,
    feature: &str,
    v: f64,
    row: Option<usize>,
) -> Result<usize, ModelError> {
    let bin = if v.is_nan() {
        n_bins.checked_sub(1)
    } else {
        match rule {
            BinRule::Numeric { edges } => Some(edges.partition_point(|&e| e <= v)),
            BinRule::Categorical { levels, level_bins } => {
                level_bins.get(level_index(feature, levels.len(), v, row)?).copied()
            }
        }
    };
    match bin {
        Some(b) if b < n_bins => Ok(b),
        _ => Err(ModelError::InvalidInput(format!(
            "feature `{feature}`: binning rule and its {n_bins} bins are inconsistent"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeatureSpec;
    use ndarray::{Array1, array};

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn woe_iv_by_hand() {
        // Two bins: events (10, 30), non-events (90, 70). Unsmoothed:
        // g = (0.5625, 0.4375), e = (0.25, 0.75), WOE = (ln 2.25, ln(0.58333)),
        // IV = 0.3125·ln 2.25 + (−0.3125)·ln(7/12).
        let (woe, iv, bins) = woe_iv(&[10.0, 30.0], &[90.0, 70.0], 0.0);
        close(woe[0], (0.5625_f64 / 0.25).ln());
        close(woe[1], (0.4375_f64 / 0.75).ln());
        close(bins[0], 0.3125 * (2.25_f64).ln());
        close(iv, 0.3125 * (2.25_f64).ln() - 0.3125 * (7.0_f64 / 12.0).ln());
        assert!(woe[0] > 0.0, "fewer events → positive WOE (lower risk)");
        // Smoothed, with an empty class in bin 1 and an empty bin 2:
        // E' = (2.5, 0.5) / 3, N' = (0.5, 4.5) / 5.
        let (woe, iv, bins) = woe_iv(&[2.0, 0.0, 0.0], &[0.0, 4.0, 0.0], 0.5);
        close(woe[0], ((0.5_f64 / 5.0) / (2.5 / 3.0)).ln());
        close(woe[1], ((4.5_f64 / 5.0) / (0.5 / 3.0)).ln());
        close(woe[2], 0.0);
        close(bins[2], 0.0);
        close(iv, bins[0] + bins[1]);
        assert!(woe.iter().all(|w| w.is_finite()));
    }

    #[test]
    fn equal_frequency_plain() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        let e = equal_frequency_edges(&v, 4);
        assert_eq!(e, vec![24.5, 49.5, 74.5]);
        // NaN and infinities are ignored; too few values give fewer edges.
        assert_eq!(equal_frequency_edges(&[f64::NAN, 1.0, f64::INFINITY, 2.0], 4), vec![1.5]);
        assert!(equal_frequency_edges(&[3.0; 10], 5).is_empty());
    }

    #[test]
    fn equal_frequency_keeps_zero_point_mass_whole() {
        // 40 zeros, then 60 distinct positives, 5 bins (t = 20): 0 is heavy and gets
        // its own bin; the 60 positives get round(60/20) = 3 bins of 20.
        let mut v = vec![0.0; 40];
        v.extend((1..=60).map(f64::from));
        let e = equal_frequency_edges(&v, 5);
        assert_eq!(e, vec![0.5, 20.5, 40.5]);
        // A point mass in the middle: negatives, 30 % at zero, positives.
        let mut v: Vec<f64> = (1..=35).map(|i| -f64::from(i)).collect();
        v.extend([0.0; 30]);
        v.extend((1..=35).map(f64::from));
        let e = equal_frequency_edges(&v, 10);
        let zero_bin = e.partition_point(|&x| x <= 0.0);
        let lo = e[zero_bin - 1];
        let hi = e[zero_bin];
        assert!(lo < 0.0 && lo > -1.0 && hi > 0.0 && hi < 1.0, "zero isolated: {e:?}");
        let n_bins = e.len() + 1;
        assert!(n_bins <= 11, "at most max_bins + 1 bins");
    }

    #[test]
    fn monotone_merge_yields_monotone_rates() {
        // Event rates along the feature: noisy increasing with a dip and a tiny bin.
        let events = [1.0, 3.0, 2.0, 5.0, 4.0, 8.0, 0.0, 9.0];
        let non = [19.0, 17.0, 18.0, 15.0, 16.0, 12.0, 1.0, 11.0];
        let groups = monotone_merge(&events, &non, 0.05, 10);
        assert_eq!(groups.first().map(|g| g.start), Some(0));
        assert_eq!(groups.last().map(|g| g.end), Some(8));
        let rates: Vec<f64> = groups
            .iter()
            .map(|g| {
                let e: f64 = events[g.clone()].iter().sum();
                let n: f64 = non[g.clone()].iter().sum();
                e / (e + n)
            })
            .collect();
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?} from {groups:?}");
        let total: f64 = events.iter().chain(&non).sum();
        for g in &groups {
            let c: f64 = events[g.clone()].iter().chain(&non[g.clone()]).sum();
            assert!(c >= 0.05 * total);
        }
        // Decreasing direction and the max_bins cap.
        let rev_e: Vec<f64> = events.iter().rev().copied().collect();
        let rev_n: Vec<f64> = non.iter().rev().copied().collect();
        let groups = monotone_merge(&rev_e, &rev_n, 0.0, 2);
        assert_eq!(groups.len(), 2);
        let r = |g: &Range<usize>| {
            let e: f64 = rev_e[g.clone()].iter().sum();
            e / (e + rev_n[g.clone()].iter().sum::<f64>())
        };
        assert!(r(&groups[0]) > r(&groups[1]));
    }

    fn dataset(cols: Vec<(FeatureSpec, Vec<f64>)>, y: Vec<f64>) -> Dataset {
        let n = y.len();
        let d = cols.len();
        let mut values = Array2::zeros((n, d));
        for (j, (_, c)) in cols.iter().enumerate() {
            for i in 0..n {
                values[[i, j]] = c[i];
            }
        }
        let specs = cols.into_iter().map(|(s, _)| s).collect();
        Dataset::new(Features::new(specs, values).unwrap(), Array1::from(y)).unwrap()
    }

    #[test]
    fn monotone_method_on_data() {
        // Risk rises with x in steps with noise; Monotone must produce monotone event rates.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..2000 {
            let v = f64::from(i) / 2000.0;
            x.push(v);
            // Deterministic pattern: event if a hash-like residue falls under a rate rising in v.
            let u = (f64::from(i) * 0.618_033_988_75).fract();
            y.push(if u < 0.1 + 0.4 * v + 0.1 * (20.0 * v).sin() { 1.0 } else { 0.0 });
        }
        let data = dataset(vec![(FeatureSpec::numeric("x"), x)], y);
        let params = BinningParams { method: BinningMethod::Monotone, ..Default::default() };
        let b = Binner::fit(&data, &params).unwrap();
        let fb = &b.features[0];
        let rates: Vec<f64> =
            fb.bins[..fb.bins.len() - 1].iter().map(|b| b.event_rate().unwrap()).collect();
        assert!(rates.len() >= 3, "{rates:?}");
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
        assert!(fb.bins.iter().take(rates.len()).all(|b| b.count >= 0.05 * 2000.0));
        // WOE decreases as risk increases.
        let woe = fb.woe();
        assert!(woe[..rates.len()].windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn categorical_and_missing_bins() {
        let levels: Vec<String> = ["retail", "food", "auto", "travel"].map(String::from).into();
        // 20 rows: retail 10, food 8, auto 1, travel 0, plus 1 missing.
        let mut cat = vec![0.0; 10];
        cat.extend([1.0; 8]);
        cat.push(2.0);
        cat.push(f64::NAN);
        let num: Vec<f64> = (0..20).map(f64::from).collect();
        let y: Vec<f64> = (0..20).map(|i| if i % 4 == 0 || i == 19 { 1.0 } else { 0.0 }).collect();
        let data = dataset(
            vec![
                (FeatureSpec::categorical("merchant", levels.clone()), cat),
                (FeatureSpec::numeric("amount"), num),
            ],
            y,
        );
        // 19 present values: with a 10 % floor (1.9 rows) "auto" (1 row) and "travel" (0) are rare.
        let params = BinningParams { min_bin_fraction: 0.1, ..Default::default() };
        let b = Binner::fit(&data, &params).unwrap();
        let m = &b.features[0];
        let labels: Vec<&str> = m.bins.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, vec!["retail", "food", "auto|travel", "missing"]);
        assert_eq!(m.bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![10.0, 8.0, 1.0, 1.0]);
        // Row 19 (missing) is an event; retail rows 0, 4, 8 are events.
        assert_eq!(m.bins[3].events, 1.0);
        assert_eq!(m.bins[0].events, 3.0);
        // No missing amount at fit time: the missing bin is empty and neutral.
        let a = &b.features[1];
        assert_eq!(a.bins.last().unwrap().count, 0.0);
        assert_eq!(a.bins.last().unwrap().woe, 0.0);
        assert_eq!(a.bins[0].label, "[-inf, 1.5)");
        // Transform: columns found by name, in binner order, extra columns ignored.
        let x = Features::new(
            vec![
                FeatureSpec::numeric("extra"),
                FeatureSpec::numeric("amount"),
                FeatureSpec::categorical("merchant", levels.clone()),
            ],
            array![[7.0, f64::NAN, 3.0], [7.0, 0.0, f64::NAN]],
        )
        .unwrap();
        let idx = b.bin_indices(&x).unwrap();
        assert_eq!(idx.row(0).to_vec(), vec![2, a.missing_bin()]);
        assert_eq!(idx.row(1).to_vec(), vec![3, 0]);
        let w = b.transform_woe(&x).unwrap();
        close(w[[0, 0]], m.bins[2].woe);
        close(w[[0, 1]], 0.0);
        // Wrong names, levels or codes are errors.
        let bad = Features::new(vec![FeatureSpec::numeric("amount")], array![[1.0]]).unwrap();
        assert!(b.bin_indices(&bad).is_err());
        let bad_levels = Features::new(
            vec![
                FeatureSpec::numeric("amount"),
                FeatureSpec::categorical("merchant", vec!["x".into()]),
            ],
            array![[1.0, 0.0]],
        )
        .unwrap();
        assert!(b.bin_indices(&bad_levels).is_err());
        let bad_code = Features::new(
            vec![FeatureSpec::numeric("amount"), FeatureSpec::categorical("merchant", levels)],
            array![[1.0, 7.0]],
        )
        .unwrap();
        assert!(matches!(b.bin_indices(&bad_code), Err(ModelError::InvalidInput(_))));
    }

    #[test]
    fn binner_counts_and_iv_table() {
        // x1 separates perfectly, x2 is noise: x1 must top the IV table.
        let y: Vec<f64> = (0..100).map(|i| if i < 30 { 1.0 } else { 0.0 }).collect();
        let x1: Vec<f64> = (0..100).map(f64::from).collect();
        let x2: Vec<f64> = (0..100).map(|i| f64::from((i * 37) % 100)).collect();
        let data = dataset(
            vec![(FeatureSpec::numeric("noise"), x2), (FeatureSpec::numeric("signal"), x1)],
            y,
        );
        let b = Binner::fit(&data, &BinningParams::default()).unwrap();
        let t = b.iv_table();
        assert_eq!(t[0].0, "signal");
        assert!(t[0].1 > 1.0 && t[1].1 < t[0].1);
        for fb in &b.features {
            let total: f64 = fb.bins.iter().map(|b| b.count).sum();
            let ev: f64 = fb.bins.iter().map(|b| b.events).sum();
            assert_eq!((total, ev), (100.0, 30.0));
            close(fb.iv, fb.bins.iter().map(|b| b.iv).sum());
            assert_eq!(fb.bins.len(), 11, "10 equal-frequency bins + missing");
        }
        // JSON round trip (serde_json's default float parser may be off by one ulp).
        let s = serde_json::to_string(&b).unwrap();
        let back: Binner = serde_json::from_str(&s).unwrap();
        assert_eq!(back.names(), b.names());
        for (f, g) in back.features.iter().zip(&b.features) {
            assert_eq!(f.rule, g.rule);
            for (x, y) in f.bins.iter().zip(&g.bins) {
                assert_eq!((&x.label, x.count, x.events), (&y.label, y.count, y.events));
                assert!((x.woe - y.woe).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn invalid_inputs() {
        let data = dataset(vec![(FeatureSpec::numeric("x"), vec![1.0, 2.0])], vec![1.0, 1.0]);
        assert!(matches!(
            Binner::fit(&data, &BinningParams::default()),
            Err(ModelError::InvalidInput(_))
        ));
        let data = dataset(vec![(FeatureSpec::numeric("x"), vec![1.0, 2.0])], vec![0.0, 1.0]);
        let p = BinningParams { max_bins: 1, ..Default::default() };
        assert!(matches!(Binner::fit(&data, &p), Err(ModelError::InvalidParam { .. })));
        let p = BinningParams { min_bin_fraction: 0.7, ..Default::default() };
        assert!(matches!(Binner::fit(&data, &p), Err(ModelError::InvalidParam { .. })));
        let rule = BinRule::Numeric { edges: vec![2.0, 1.0] };
        let labels = vec!["a".into(), "b".into(), "c".into(), "missing".into()];
        assert!(FeatureBinning::from_counts("x", rule, labels, &[1.0; 4], &[1.0; 4], 0.5).is_err());
    }

    #[test]
    fn weighted_edges_equal_the_expanded_values() {
        let mut values = Vec::new();
        let mut pairs = Vec::new();
        let mut triples = Vec::new();
        for i in 0..300u32 {
            let v = f64::from(i * 13 % 211) / 7.0;
            let c = 1 + i % 4;
            values.extend(std::iter::repeat_n(v, c as usize));
            pairs.push((v, f64::from(c)));
            triples.push((v, f64::from(c / 2), f64::from(c - c / 2)));
        }
        values.extend(std::iter::repeat_n(0.0, 200));
        pairs.push((0.0, 200.0));
        triples.push((0.0, 20.0, 180.0));
        for max_bins in [2, 5, 10, 40] {
            assert_eq!(
                equal_frequency_edges(&values, max_bins),
                equal_frequency_edges_weighted(&pairs, max_bins)
            );
        }
        let params = BinningParams { method: BinningMethod::Monotone, ..Default::default() };
        let e = monotone_edges_weighted(&triples, &params);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
    }
}
