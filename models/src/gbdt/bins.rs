//! Per-feature bin edges and the binned (quantised) feature matrix.
//!
//! Histogram GBDT (Ke et al., "LightGBM", NeurIPS 2017; Chen & Guestrin, "XGBoost", KDD 2016,
//! §3.3 "approximate algorithm") replaces each feature value by a small bin index so that split
//! finding scans at most 255 candidate thresholds per feature instead of every distinct value.
//!
//! - **Numeric features.** If a feature has at most `max_bins` distinct values, each value gets its
//!   own bin and the edges lie halfway between consecutive distinct values. Otherwise the edges come
//!   from LightGBM's greedy quantile binning (`GreedyFindBin` in `src/io/bin.cpp`): values that
//!   alone hold at least a mean bin's worth of rows get a bin of their own, the rest are cut into
//!   bins of roughly equal row counts.
//! - **Categorical features.** One bin per level. When there are more levels than `max_bins`, the
//!   `max_bins - 1` most frequent levels keep a bin and the others share an "other" bin.
//! - **Missing values.** Every feature has one extra bin for `NaN`, always its last bin, so a
//!   feature with `k` value bins has `k + 1` bins and its missing bin has index `k`.
//!
//! Numeric value bin `b` holds the values `x` with `edges[b - 1] < x <= edges[b]` (the first bin is
//! open below, the last value bin open above), so `bin(x) <= t` exactly when `x <= edges[t]`.
//! That is what lets a trained tree keep real thresholds and score raw [`Features`].

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::data::{FeatureKind, FeatureSpec, Features};

/// Largest number of value bins per feature (the missing bin comes on top, so bins fit a `u8`).
pub const MAX_BINS: usize = 255;

/// [`BinMapper::fit`] computes edges from at most this many rows, taken at an even stride
/// (LightGBM's `bin_construct_sample_cnt` default); every row is still binned.
pub const BIN_SAMPLE_ROWS: usize = 200_000;

/// Whether a feature's bins are ordered (numeric thresholds) or unordered (category sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinKind {
    /// Ordered bins: a split sends `bin <= threshold` left.
    Numeric,
    /// Unordered bins: a split sends a set of bins left.
    Categorical,
}

/// The bins of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureBins {
    /// Value bin `b` holds `edges[b - 1] < x <= edges[b]`; there are `edges.len() + 1` value
    /// bins and the missing bin is `edges.len() + 1`. Edges are finite and strictly increasing.
    Numeric {
        /// Upper edges of every value bin but the last.
        edges: Vec<f64>,
    },
    /// Value bin `b` holds the levels `bin_levels[b]`; the missing bin is `bin_levels.len()`.
    Categorical {
        /// Level indices per value bin (one level each, except a possible "other" bin last).
        bin_levels: Vec<Vec<u32>>,
    },
}

impl FeatureBins {
    /// Number of value bins (without the missing bin).
    pub fn n_value_bins(&self) -> usize {
        match self {
            Self::Numeric { edges } => edges.len() + 1,
            Self::Categorical { bin_levels } => bin_levels.len(),
        }
    }

    /// Number of bins including the missing bin.
    pub fn n_bins(&self) -> usize {
        self.n_value_bins() + 1
    }

    /// Index of the missing-value bin (always the last bin).
    pub fn missing_bin(&self) -> u8 {
        // n_value_bins <= MAX_BINS = 255, enforced by every constructor.
        self.n_value_bins() as u8
    }

    /// Numeric or categorical.
    pub fn kind(&self) -> BinKind {
        match self {
            Self::Numeric { .. } => BinKind::Numeric,
            Self::Categorical { .. } => BinKind::Categorical,
        }
    }
}

/// Per-feature bin edges, fitted on training data or given from outside (a federated sketch).
#[derive(Debug, Clone, PartialEq)]
pub struct BinMapper {
    specs: Vec<FeatureSpec>,
    bins: Vec<FeatureBins>,
}

impl BinMapper {
    /// Fits bins on every column of `features` (see the module docs for the rules). Tables
    /// with more than [`BIN_SAMPLE_ROWS`] rows are sampled at an even stride first.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] (`max_bins`) unless `2 <= max_bins <= 255`;
    /// [`ModelError::InvalidInput`] on an infinite value or a categorical cell that is not a
    /// level index among the rows used, naming the column and row ([`BinMapper::bin`] checks
    /// every row).
    pub fn fit(features: &Features, max_bins: usize) -> Result<Self, ModelError> {
        if !(2..=MAX_BINS).contains(&max_bins) {
            return Err(ModelError::InvalidParam {
                name: "max_bins",
                reason: format!("must be in 2..={MAX_BINS}, got {max_bins}"),
            });
        }
        let mut bins = Vec::with_capacity(features.n_features());
        let n = features.n_rows();
        // Rows used for the edges: all of them, or an even stride of BIN_SAMPLE_ROWS.
        let sample: Vec<usize> = if n > BIN_SAMPLE_ROWS {
            (0..BIN_SAMPLE_ROWS).map(|i| i * n / BIN_SAMPLE_ROWS).collect()
        } else {
            (0..n).collect()
        };
        let mut column = Vec::with_capacity(sample.len());
        for (f, spec) in features.specs.iter().enumerate() {
            let values = features.values.column(f);
            column.clear();
            column.extend(sample.iter().map(|&r| values[r]));
            let fb = match &spec.kind {
                FeatureKind::Numeric => numeric_bins(&mut column, max_bins),
                FeatureKind::Categorical { levels } => {
                    categorical_bins(&column, levels.len(), max_bins)
                }
            }
            .map_err(|e| match e {
                // Name the original row, not the position in the sample.
                BadCell(i) => {
                    let r = sample[i];
                    cell_error(&spec.kind, &spec.name, r, values[r])
                }
            })?;
            bins.push(fb);
        }
        Ok(Self { specs: features.specs.clone(), bins })
    }

    /// Fits bins from per-feature `(value, count)` pairs instead of rows, with the same rules
    /// as [`BinMapper::fit`] (when every row is used): the result equals `fit` on a table
    /// holding each value `count` times. For a categorical feature the values are level
    /// indices. Pairs may repeat a value (their counts add up); zero counts are ignored; missing
    /// values do not influence the edges and are not listed. This is how a federated
    /// quantile sketch (pooled counts of rounded values) becomes bin edges.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] (`max_bins`) unless `2 <= max_bins <= 255`;
    /// [`ModelError::Shape`] when `values` and `specs` differ in length;
    /// [`ModelError::InvalidInput`] on a non-finite value or a value that is not a level index
    /// of a categorical feature, naming the feature.
    pub fn from_weighted_values(
        specs: Vec<FeatureSpec>,
        values: &[Vec<(f64, u64)>],
        max_bins: usize,
    ) -> Result<Self, ModelError> {
        if !(2..=MAX_BINS).contains(&max_bins) {
            return Err(ModelError::InvalidParam {
                name: "max_bins",
                reason: format!("must be in 2..={MAX_BINS}, got {max_bins}"),
            });
        }
        if specs.len() != values.len() {
            return Err(ModelError::Shape(format!(
                "{} feature specs but {} value lists",
                specs.len(),
                values.len()
            )));
        }
        let mut bins = Vec::with_capacity(specs.len());
        for (spec, pairs) in specs.iter().zip(values) {
            if let Some((v, _)) = pairs.iter().find(|(v, _)| !v.is_finite()) {
                return Err(ModelError::InvalidInput(format!(
                    "feature `{}`: value {v} is not finite",
                    spec.name
                )));
            }
            let mut sorted: Vec<(f64, u64)> =
                pairs.iter().copied().filter(|&(_, c)| c > 0).collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let fb = match &spec.kind {
                FeatureKind::Numeric => {
                    let mut distinct: Vec<f64> = Vec::with_capacity(sorted.len());
                    let mut counts: Vec<usize> = Vec::with_capacity(sorted.len());
                    for (v, c) in sorted {
                        // -0.0 and 0.0 are one value, as in `fit`'s equality grouping.
                        match (distinct.last(), counts.last_mut()) {
                            (Some(&last), Some(n)) if last == v => *n += c as usize,
                            _ => {
                                distinct.push(v);
                                counts.push(c as usize);
                            }
                        }
                    }
                    FeatureBins::Numeric {
                        edges: edges_from_distinct(&distinct, &counts, max_bins),
                    }
                }
                FeatureKind::Categorical { levels } => {
                    let mut counts = vec![0usize; levels.len()];
                    for (v, c) in sorted {
                        let l = level_index(v, levels.len()).ok_or_else(|| {
                            ModelError::InvalidInput(format!(
                                "feature `{}`: {v} is not a level index below {}",
                                spec.name,
                                levels.len()
                            ))
                        })?;
                        counts[l] += c as usize;
                    }
                    categorical_from_counts(&counts, max_bins)
                }
            };
            bins.push(fb);
        }
        Ok(Self { specs, bins })
    }

    /// Builds a mapper from edges computed elsewhere (for example a federated quantile sketch).
    ///
    /// `edges[f]` for a numeric feature is the finite, strictly increasing list of upper edges
    /// (at most 254; see [`FeatureBins::Numeric`]). For a categorical feature it lists the level
    /// indices (as `f64`) that get a bin of their own, in bin order; all other levels share one
    /// "other" bin placed last.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when `edges` and `specs` differ in length;
    /// [`ModelError::InvalidInput`] on unsorted or non-finite edges, too many bins, or a level
    /// that is out of range or repeated, naming the feature.
    pub fn from_edges(specs: Vec<FeatureSpec>, edges: Vec<Vec<f64>>) -> Result<Self, ModelError> {
        if specs.len() != edges.len() {
            return Err(ModelError::Shape(format!(
                "{} feature specs but {} edge lists",
                specs.len(),
                edges.len()
            )));
        }
        let mut bins = Vec::with_capacity(specs.len());
        for (spec, e) in specs.iter().zip(edges) {
            let fb = match &spec.kind {
                FeatureKind::Numeric => {
                    if e.len() >= MAX_BINS {
                        return Err(ModelError::InvalidInput(format!(
                            "feature `{}`: {} edges make more than {MAX_BINS} bins",
                            spec.name,
                            e.len()
                        )));
                    }
                    if let Some(bad) = e.iter().find(|v| !v.is_finite()) {
                        return Err(ModelError::InvalidInput(format!(
                            "feature `{}`: edge {bad} is not finite",
                            spec.name
                        )));
                    }
                    if e.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(ModelError::InvalidInput(format!(
                            "feature `{}`: edges are not strictly increasing",
                            spec.name
                        )));
                    }
                    FeatureBins::Numeric { edges: e }
                }
                FeatureKind::Categorical { levels } => {
                    let n_levels = levels.len();
                    let mut seen = vec![false; n_levels];
                    let mut bin_levels = Vec::with_capacity(e.len() + 1);
                    for &v in &e {
                        let level = level_index(v, n_levels).ok_or_else(|| {
                            ModelError::InvalidInput(format!(
                                "feature `{}`: {v} is not a level index below {n_levels}",
                                spec.name
                            ))
                        })?;
                        if std::mem::replace(&mut seen[level], true) {
                            return Err(ModelError::InvalidInput(format!(
                                "feature `{}`: level {level} listed twice",
                                spec.name
                            )));
                        }
                        bin_levels.push(vec![level as u32]);
                    }
                    let other: Vec<u32> =
                        (0..n_levels).filter(|&l| !seen[l]).map(|l| l as u32).collect();
                    if !other.is_empty() {
                        bin_levels.push(other);
                    }
                    if bin_levels.len() > MAX_BINS {
                        return Err(ModelError::InvalidInput(format!(
                            "feature `{}`: {} categorical bins exceed {MAX_BINS}",
                            spec.name,
                            bin_levels.len()
                        )));
                    }
                    FeatureBins::Categorical { bin_levels }
                }
            };
            bins.push(fb);
        }
        Ok(Self { specs, bins })
    }

    /// The edges in the format [`BinMapper::from_edges`] reads back.
    pub fn to_edges(&self) -> Vec<Vec<f64>> {
        self.bins
            .iter()
            .map(|b| match b {
                FeatureBins::Numeric { edges } => edges.clone(),
                FeatureBins::Categorical { bin_levels } => {
                    bin_levels.iter().filter(|l| l.len() == 1).map(|l| f64::from(l[0])).collect()
                }
            })
            .collect()
    }

    /// Feature specs the mapper was fitted on.
    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.bins.len()
    }

    /// The bins of feature `f`.
    pub fn feature_bins(&self, f: usize) -> &FeatureBins {
        &self.bins[f]
    }

    /// Bins per feature, each including the missing bin (the layout of a [`super::Histogram`]).
    pub fn bins_per_feature(&self) -> Vec<usize> {
        self.bins.iter().map(FeatureBins::n_bins).collect()
    }

    /// Numeric or categorical, per feature.
    pub fn kinds(&self) -> Vec<BinKind> {
        self.bins.iter().map(FeatureBins::kind).collect()
    }

    /// Quantises `features` into a column-major matrix of bin indices.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the column names or kinds differ from the fitted ones;
    /// [`ModelError::InvalidInput`] on an infinite value or a categorical cell that is not a
    /// level index, naming the column and row.
    pub fn bin(&self, features: &Features) -> Result<BinnedMatrix, ModelError> {
        check_specs(&self.specs, &features.specs)?;
        let n = features.n_rows();
        let d = self.bins.len();
        let mut columns = vec![0u8; n * d];
        for (f, fb) in self.bins.iter().enumerate() {
            let out = &mut columns[f * n..(f + 1) * n];
            let col = features.values.column(f);
            let name = &self.specs[f].name;
            match fb {
                FeatureBins::Numeric { edges } => {
                    let missing = fb.missing_bin();
                    for (r, (o, &x)) in out.iter_mut().zip(col.iter()).enumerate() {
                        *o = if x.is_nan() {
                            missing
                        } else if x.is_infinite() {
                            return Err(infinite(name, r, x));
                        } else {
                            edges.partition_point(|&e| e < x) as u8
                        };
                    }
                }
                FeatureBins::Categorical { bin_levels } => {
                    let n_levels = match &self.specs[f].kind {
                        FeatureKind::Categorical { levels } => levels.len(),
                        FeatureKind::Numeric => 0,
                    };
                    let mut level_bin = vec![fb.missing_bin(); n_levels];
                    for (b, levels) in bin_levels.iter().enumerate() {
                        for &l in levels {
                            if let Some(slot) = level_bin.get_mut(l as usize) {
                                *slot = b as u8;
                            }
                        }
                    }
                    let missing = fb.missing_bin();
                    for (r, (o, &x)) in out.iter_mut().zip(col.iter()).enumerate() {
                        *o = if x.is_nan() {
                            missing
                        } else {
                            let level = level_index(x, n_levels)
                                .ok_or_else(|| bad_level(name, r, x, n_levels))?;
                            level_bin[level]
                        };
                    }
                }
            }
        }
        Ok(BinnedMatrix {
            n_rows: n,
            bins_per_feature: self.bins_per_feature(),
            kinds: self.kinds(),
            columns,
        })
    }

    /// The real-valued threshold equivalent to "numeric bin `<= threshold_bin`": the upper edge
    /// of that bin, or `f64::MAX` for the last value bin (every finite value goes left).
    /// `None` for a categorical feature.
    pub fn threshold_value(&self, f: usize, threshold_bin: u8) -> Option<f64> {
        match &self.bins[f] {
            FeatureBins::Numeric { edges } => {
                Some(edges.get(threshold_bin as usize).copied().unwrap_or(f64::MAX))
            }
            FeatureBins::Categorical { .. } => None,
        }
    }

    /// The level indices held by categorical value bin `bin` (empty for numeric features, the
    /// missing bin or an out-of-range bin).
    pub fn bin_levels(&self, f: usize, bin: u8) -> &[u32] {
        match &self.bins[f] {
            FeatureBins::Categorical { bin_levels } => {
                bin_levels.get(bin as usize).map_or(&[][..], Vec::as_slice)
            }
            FeatureBins::Numeric { .. } => &[],
        }
    }
}

/// A column-major matrix of bin indices (`u8`), as produced by [`BinMapper::bin`].
#[derive(Debug, Clone, PartialEq)]
pub struct BinnedMatrix {
    n_rows: usize,
    bins_per_feature: Vec<usize>,
    kinds: Vec<BinKind>,
    columns: Vec<u8>,
}

impl BinnedMatrix {
    /// Builds a matrix from column-major bins, checking that every bin is below its feature's
    /// bin count (federated parties that bin their own columns use this to hand bins around).
    ///
    /// # Errors
    /// [`ModelError::Shape`] on inconsistent lengths, [`ModelError::InvalidInput`] on a bin out
    /// of range or a feature with more than 256 bins.
    pub fn from_columns(
        n_rows: usize,
        bins_per_feature: Vec<usize>,
        kinds: Vec<BinKind>,
        columns: Vec<u8>,
    ) -> Result<Self, ModelError> {
        let d = bins_per_feature.len();
        if kinds.len() != d || columns.len() != n_rows * d {
            return Err(ModelError::Shape(format!(
                "{} bin counts, {} kinds and {} cells for {} rows",
                d,
                kinds.len(),
                columns.len(),
                n_rows
            )));
        }
        for (f, &nb) in bins_per_feature.iter().enumerate() {
            if nb == 0 || nb > MAX_BINS + 1 {
                return Err(ModelError::InvalidInput(format!(
                    "feature {f}: {nb} bins, expected 1..={}",
                    MAX_BINS + 1
                )));
            }
            let col = &columns[f * n_rows..(f + 1) * n_rows];
            if let Some(r) = col.iter().position(|&b| b as usize >= nb) {
                return Err(ModelError::InvalidInput(format!(
                    "feature {f} row {r}: bin {} out of {nb}",
                    col[r]
                )));
            }
        }
        Ok(Self { n_rows, bins_per_feature, kinds, columns })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.bins_per_feature.len()
    }

    /// Bins per feature, each including the missing bin.
    pub fn bins_per_feature(&self) -> &[usize] {
        &self.bins_per_feature
    }

    /// Numeric or categorical, per feature.
    pub fn kinds(&self) -> &[BinKind] {
        &self.kinds
    }

    /// The bins of feature `f`, one per row.
    pub fn column(&self, f: usize) -> &[u8] {
        &self.columns[f * self.n_rows..(f + 1) * self.n_rows]
    }
}

/// Checks that a matrix has the columns (names and kinds) a model or mapper was fitted on.
pub(crate) fn check_specs(expected: &[FeatureSpec], got: &[FeatureSpec]) -> Result<(), ModelError> {
    if expected.len() != got.len() {
        return Err(ModelError::Shape(format!(
            "expected {} features, got {}",
            expected.len(),
            got.len()
        )));
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if e.name != g.name {
            return Err(ModelError::Shape(format!(
                "feature {i} is `{}`, expected `{}`",
                g.name, e.name
            )));
        }
        match (&e.kind, &g.kind) {
            (FeatureKind::Numeric, FeatureKind::Numeric) => {}
            (FeatureKind::Categorical { levels: a }, FeatureKind::Categorical { levels: b })
                if a.len() == b.len() => {}
            _ => {
                return Err(ModelError::Shape(format!(
                    "feature `{}` has a different kind or level count than at fit time",
                    e.name
                )));
            }
        }
    }
    Ok(())
}

/// `x` as a level index below `n_levels`, or `None` when it is not one.
pub(crate) fn level_index(x: f64, n_levels: usize) -> Option<usize> {
    (x >= 0.0 && x.fract() == 0.0 && x < n_levels as f64).then_some(x as usize)
}

pub(crate) fn infinite(name: &str, row: usize, x: f64) -> ModelError {
    ModelError::InvalidInput(format!("feature `{name}` row {row}: infinite value {x}"))
}

pub(crate) fn bad_level(name: &str, row: usize, x: f64, n_levels: usize) -> ModelError {
    ModelError::InvalidInput(format!(
        "feature `{name}` row {row}: {x} is not a level index below {n_levels}"
    ))
}

/// A cut strictly between two consecutive distinct values `a < b`, with `a <= cut < b`.
fn midpoint(a: f64, b: f64) -> f64 {
    let m = a * 0.5 + b * 0.5;
    if m >= a && m < b { m } else { a }
}

/// A cell that cannot be binned, by its position in the fitted sample.
struct BadCell(usize);

/// The error for a bad cell of a column of the given kind.
fn cell_error(kind: &FeatureKind, name: &str, row: usize, x: f64) -> ModelError {
    match kind {
        FeatureKind::Numeric => infinite(name, row, x),
        FeatureKind::Categorical { levels } => bad_level(name, row, x, levels.len()),
    }
}

/// Numeric edges for one column; `column` is scratch (reordered).
fn numeric_bins(column: &mut Vec<f64>, max_bins: usize) -> Result<FeatureBins, BadCell> {
    if let Some(r) = column.iter().position(|x| x.is_infinite()) {
        return Err(BadCell(r));
    }
    column.retain(|x| !x.is_nan());
    column.sort_unstable_by(f64::total_cmp);
    let mut distinct: Vec<f64> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for &x in column.iter() {
        match distinct.last() {
            // `==` merges -0.0 and 0.0, which total_cmp keeps apart.
            Some(&last) if last == x => {
                if let Some(c) = counts.last_mut() {
                    *c += 1;
                }
            }
            _ => {
                distinct.push(x);
                counts.push(1);
            }
        }
    }
    Ok(FeatureBins::Numeric { edges: edges_from_distinct(&distinct, &counts, max_bins) })
}

/// Edges from sorted distinct values and their counts (see the module docs).
fn edges_from_distinct(distinct: &[f64], counts: &[usize], max_bins: usize) -> Vec<f64> {
    if distinct.len() <= max_bins {
        distinct.windows(2).map(|w| midpoint(w[0], w[1])).collect()
    } else {
        greedy_edges(distinct, counts, counts.iter().sum(), max_bins)
    }
}

fn greedy_edges(distinct: &[f64], counts: &[usize], total: usize, max_bins: usize) -> Vec<f64> {
    let n = distinct.len();
    let mut mean_bin_size = total as f64 / max_bins as f64;
    let mut rest_bins = max_bins;
    let mut rest_rows = total;
    let big: Vec<bool> = counts.iter().map(|&c| c as f64 >= mean_bin_size).collect();
    for (&c, &is_big) in counts.iter().zip(&big) {
        if is_big {
            rest_bins -= 1;
            rest_rows -= c;
        }
    }
    mean_bin_size = if rest_bins > 0 { rest_rows as f64 / rest_bins as f64 } else { f64::INFINITY };
    let mut upper = Vec::with_capacity(max_bins);
    let mut lower = Vec::with_capacity(max_bins);
    lower.push(distinct[0]);
    let mut in_bin = 0usize;
    for i in 0..n - 1 {
        if !big[i] {
            rest_rows -= counts[i];
        }
        in_bin += counts[i];
        let close = big[i]
            || in_bin as f64 >= mean_bin_size
            || (big[i + 1] && in_bin as f64 >= (mean_bin_size * 0.5).max(1.0));
        if close {
            upper.push(distinct[i]);
            lower.push(distinct[i + 1]);
            if upper.len() + 1 >= max_bins {
                break;
            }
            in_bin = 0;
            if !big[i] {
                rest_bins = rest_bins.saturating_sub(1);
                mean_bin_size =
                    if rest_bins > 0 { rest_rows as f64 / rest_bins as f64 } else { f64::INFINITY };
            }
        }
    }
    let mut edges: Vec<f64> = Vec::with_capacity(upper.len());
    for (&u, &l) in upper.iter().zip(&lower[1..]) {
        let e = midpoint(u, l);
        if edges.last().is_none_or(|&last| last < e) {
            edges.push(e);
        }
    }
    edges
}

/// Categorical bins for one column: one per level, or the `max_bins - 1` most frequent levels
/// plus an "other" bin.
fn categorical_bins(
    column: &[f64],
    n_levels: usize,
    max_bins: usize,
) -> Result<FeatureBins, BadCell> {
    let mut counts = vec![0usize; n_levels];
    for (r, &x) in column.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        let level = level_index(x, n_levels).ok_or(BadCell(r))?;
        counts[level] += 1;
    }
    Ok(categorical_from_counts(&counts, max_bins))
}

/// Categorical bins from per-level counts (see the module docs).
fn categorical_from_counts(counts: &[usize], max_bins: usize) -> FeatureBins {
    let n_levels = counts.len();
    let bin_levels = if n_levels <= max_bins {
        (0..n_levels as u32).map(|l| vec![l]).collect()
    } else {
        let mut order: Vec<usize> = (0..n_levels).collect();
        order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
        let mut kept: Vec<usize> = order[..max_bins - 1].to_vec();
        kept.sort_unstable();
        let mut other: Vec<u32> = order[max_bins - 1..].iter().map(|&l| l as u32).collect();
        other.sort_unstable();
        let mut bins: Vec<Vec<u32>> = kept.into_iter().map(|l| vec![l as u32]).collect();
        bins.push(other);
        bins
    };
    FeatureBins::Categorical { bin_levels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn one_column(values: Vec<f64>, spec: FeatureSpec) -> Features {
        let n = values.len();
        Features::new(vec![spec], Array2::from_shape_vec((n, 1), values).unwrap()).unwrap()
    }

    #[test]
    fn few_distinct_values_get_one_bin_each_with_midpoint_edges() {
        let x = one_column(vec![3.0, 1.0, 2.0, 2.0, 1.0, f64::NAN], FeatureSpec::numeric("x"));
        let m = BinMapper::fit(&x, 255).unwrap();
        assert_eq!(m.feature_bins(0), &FeatureBins::Numeric { edges: vec![1.5, 2.5] });
        assert_eq!(m.bins_per_feature(), vec![4]);
        let b = m.bin(&x).unwrap();
        // 1 -> 0, 2 -> 1, 3 -> 2, NaN -> missing bin 3.
        assert_eq!(b.column(0), &[2, 0, 1, 1, 0, 3]);
        // bin(x) <= t  <=>  x <= threshold_value(t)
        assert_eq!(m.threshold_value(0, 0), Some(1.5));
        assert_eq!(m.threshold_value(0, 2), Some(f64::MAX));
    }

    #[test]
    fn many_distinct_values_get_equal_frequency_bins() {
        let x = one_column((0..1000).map(f64::from).collect(), FeatureSpec::numeric("x"));
        let m = BinMapper::fit(&x, 10).unwrap();
        let FeatureBins::Numeric { edges } = m.feature_bins(0) else { panic!() };
        assert_eq!(edges.len(), 9);
        let b = m.bin(&x).unwrap();
        let mut counts = [0usize; 11];
        for &v in b.column(0) {
            counts[v as usize] += 1;
        }
        // 10 value bins of 100 rows each, nothing in the missing bin.
        assert_eq!(&counts[..10], &[100; 10]);
        assert_eq!(counts[10], 0);
        assert_eq!(edges[0], 99.5);
    }

    #[test]
    fn a_heavy_value_gets_its_own_bin() {
        // 500 zeros and 500 distinct positives, 10 bins: zero alone, the rest in equal bins.
        let mut v = vec![0.0; 500];
        v.extend((1..=500).map(f64::from));
        let x = one_column(v, FeatureSpec::numeric("x"));
        let m = BinMapper::fit(&x, 10).unwrap();
        let b = m.bin(&x).unwrap();
        assert!(b.column(0)[..500].iter().all(|&v| v == 0));
        assert!(b.column(0)[500..].iter().all(|&v| v > 0));
        let FeatureBins::Numeric { edges } = m.feature_bins(0) else { panic!() };
        assert_eq!(edges[0], 0.5);
        assert!(edges.len() <= 9);
    }

    #[test]
    fn categorical_levels_get_bins_and_rare_levels_merge() {
        let levels: Vec<String> = (0..5).map(|i| format!("l{i}")).collect();
        let spec = FeatureSpec::categorical("c", levels);
        // Counts: l0 x4, l1 x3, l2 x1, l3 x2, l4 x0, one missing.
        let v = vec![0., 0., 0., 0., 1., 1., 1., 2., 3., 3., f64::NAN];
        let x = one_column(v, spec.clone());
        let m = BinMapper::fit(&x, 255).unwrap();
        assert_eq!(m.bins_per_feature(), vec![6]);
        assert_eq!(m.bin(&x).unwrap().column(0), &[0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 5]);
        // Three bins: l0 and l1 keep theirs, l2, l3, l4 become "other" (bin 2).
        let m3 = BinMapper::fit(&x, 3).unwrap();
        assert_eq!(
            m3.feature_bins(0),
            &FeatureBins::Categorical { bin_levels: vec![vec![0], vec![1], vec![2, 3, 4]] }
        );
        assert_eq!(m3.bin(&x).unwrap().column(0), &[0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
        assert_eq!(m3.bin_levels(0, 2), &[2, 3, 4]);
        // Edges round trip through from_edges.
        let back = BinMapper::from_edges(vec![spec], m3.to_edges()).unwrap();
        assert_eq!(back, m3);
        // A cell that is not a level index is an error naming the column.
        let bad = one_column(vec![0.5], FeatureSpec::categorical("c", vec!["a".into()]));
        let err = BinMapper::fit(&bad, 255).unwrap_err().to_string();
        assert!(err.contains("`c`"), "{err}");
    }

    #[test]
    fn large_tables_fit_edges_on_a_stride_sample() {
        let n = BIN_SAMPLE_ROWS + 50_000;
        let x = one_column((0..n).map(|i| i as f64).collect(), FeatureSpec::numeric("x"));
        let m = BinMapper::fit(&x, 255).unwrap();
        let b = m.bin(&x).unwrap();
        let mut counts = vec![0usize; 256];
        for &v in b.column(0) {
            counts[v as usize] += 1;
        }
        // 255 bins of n / 255 ≈ 980 rows each, up to the sampling stride (1.25 rows).
        let expected = n as f64 / 255.0;
        for &c in &counts[..255] {
            assert!((c as f64 - expected).abs() < 6.0, "{c} vs {expected}");
        }
        // A bad cell outside the sample is still caught by `bin`, naming the original row.
        let mut v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        // Sampled rows are floor(i * 1.25): 0, 1, 2, 3, 5, … so row 4 is not among them.
        v[4] = f64::INFINITY;
        let x = one_column(v, FeatureSpec::numeric("x"));
        let m = BinMapper::fit(&x, 255).unwrap();
        let err = m.bin(&x).unwrap_err().to_string();
        assert!(err.contains("row 4"), "{err}");
        let mut v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        v[4] = f64::NEG_INFINITY; // not sampled: fit does not see it
        let sampled_row = (BIN_SAMPLE_ROWS - 1) * n / BIN_SAMPLE_ROWS;
        v[sampled_row] = f64::INFINITY;
        let err = BinMapper::fit(&one_column(v, FeatureSpec::numeric("x")), 255).unwrap_err();
        assert!(err.to_string().contains(&format!("row {sampled_row}")), "{err}");
    }

    #[test]
    fn from_edges_checks_and_bin_checks_names() {
        let specs = vec![FeatureSpec::numeric("a")];
        assert!(BinMapper::from_edges(specs.clone(), vec![vec![2.0, 1.0]]).is_err());
        assert!(BinMapper::from_edges(specs.clone(), vec![vec![f64::INFINITY]]).is_err());
        assert!(BinMapper::from_edges(specs.clone(), vec![]).is_err());
        let m = BinMapper::from_edges(specs, vec![vec![0.0, 10.0]]).unwrap();
        let x = one_column(vec![-1.0, 0.0, 5.0, 10.0, 11.0], FeatureSpec::numeric("a"));
        assert_eq!(m.bin(&x).unwrap().column(0), &[0, 0, 1, 1, 2]);
        let wrong = one_column(vec![1.0], FeatureSpec::numeric("b"));
        assert!(matches!(m.bin(&wrong), Err(ModelError::Shape(_))));
        let inf = one_column(vec![f64::INFINITY], FeatureSpec::numeric("a"));
        assert!(matches!(m.bin(&inf), Err(ModelError::InvalidInput(_))));
        assert!(BinMapper::fit(&x, 1).is_err());
        assert!(BinMapper::fit(&x, 256).is_err());
    }

    #[test]
    fn weighted_values_give_the_edges_of_the_expanded_table() {
        // Many repeats, a point mass, more distinct values than bins, and a categorical column.
        let mut rows = Vec::new();
        let mut pairs = vec![Vec::new(), Vec::new()];
        for i in 0..400u64 {
            let v = f64::from((i * 37 % 300) as u32) * 0.25 - 10.0;
            let c = 1 + i % 5;
            let level = (i % 7) as f64;
            for _ in 0..c {
                rows.push([v, level]);
            }
            pairs[0].push((v, c));
            pairs[1].push((level, c));
        }
        for _ in 0..900 {
            rows.push([0.0, 3.0]);
        }
        pairs[0].push((0.0, 900));
        pairs[1].push((3.0, 900));
        let levels: Vec<String> = (0..7).map(|l| format!("L{l}")).collect();
        let specs = vec![FeatureSpec::numeric("x"), FeatureSpec::categorical("c", levels)];
        let n = rows.len();
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let x =
            Features::new(specs.clone(), Array2::from_shape_vec((n, 2), flat).unwrap()).unwrap();
        for max_bins in [4, 16, 255] {
            let direct = BinMapper::fit(&x, max_bins).unwrap();
            let weighted =
                BinMapper::from_weighted_values(specs.clone(), &pairs, max_bins).unwrap();
            assert_eq!(direct, weighted, "max_bins {max_bins}");
        }
        let bad = vec![vec![(f64::INFINITY, 1)], vec![]];
        assert!(BinMapper::from_weighted_values(specs, &bad, 16).is_err());
    }
}
