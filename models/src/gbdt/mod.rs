//! Second-order histogram gradient boosting for binary default prediction
//! (Friedman, "Greedy Function Approximation", 2001; Chen & Guestrin, "XGBoost: A Scalable Tree
//! Boosting System", KDD 2016; Ke et al., "LightGBM: A Highly Efficient Gradient Boosting
//! Decision Tree", NeurIPS 2017).
//!
//! The log-loss objective is approximated to second order at every round; trees grow depth-wise,
//! level by level, on `u8`-binned features with gradient histograms, histogram subtraction and
//! learned default directions for missing values.
//!
//! The kernels are public and pure so that the federated trainers can run the same arithmetic
//! on pooled or encrypted data:
//! - [`BinMapper`] / [`BinnedMatrix`] ([`bins`]): per-feature bin edges and quantised columns;
//!   [`BinMapper::from_edges`] accepts edges from a federated sketch.
//! - [`Histogram`], [`build_histogram`], [`Histogram::subtract`] ([`histogram`]): per-bin gradient
//!   sums, the quantity horizontal banks add up under secure aggregation.
//! - [`find_best_split`] ([`split`]): the split finder a coordinator or label holder runs on
//!   summed or decrypted histograms.
//! - [`TreeGrowth`] ([`level`]): the sans-IO level-wise tree core that both the centralised
//!   grower and the horizontal federated trainer drive.
//! - [`fit`] and [`GbdtModel`] ([`booster`]): the centralised trainer and the scoring model;
//!   [`fit_with_mapper`] trains on given bin edges (e.g. from a federated sketch).

pub mod bins;
pub mod booster;
mod grow;
pub mod histogram;
pub mod level;
pub mod split;
pub mod tree;

use serde::{Deserialize, Serialize};

pub use bins::{BinKind, BinMapper, BinnedMatrix, FeatureBins, MAX_BINS};
pub use booster::{
    GRAD_FRAC_BITS, GbdtModel, RoundSampler, fit, fit_with_mapper, fit_with_progress,
    gradient_pair, grown_to_tree, on_grad_grid,
};
pub use histogram::{GradStats, Histogram, build_histogram};
pub use level::{GrowNode, GrowParams, GrowSplit, GrownTree, TreeGrowth};
pub use split::{
    BinSplit, DEFAULT_CAT_L2, DEFAULT_CAT_SMOOTH, DEFAULT_MAX_CAT_THRESHOLD,
    DEFAULT_MAX_CAT_TO_ONEHOT, DEFAULT_MIN_DATA_PER_GROUP, SplitCandidate, SplitParams,
    find_best_split, leaf_weight, split_gain,
};
pub use tree::{Node, SplitRule, Tree};

use crate::ModelError;

/// Largest accepted `max_depth`.
pub const MAX_DEPTH: usize = 30;

/// Hyper-parameters of [`fit`]. Names follow LightGBM where they exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtParams {
    /// Number of boosting rounds (trees); default 100.
    pub n_trees: usize,
    /// Shrinkage applied to every leaf value; default 0.1.
    pub learning_rate: f64,
    /// Maximum depth (levels of splits), `1..=30`; default 5.
    pub max_depth: usize,
    /// Leaf budget per tree (`None`: full depth-wise growth); at least 2.
    pub max_leaves: Option<usize>,
    /// Maximum value bins per feature, `2..=255`; default 255.
    pub max_bins: usize,
    /// Minimum hessian sum per leaf; default 1e-3.
    pub min_child_weight: f64,
    /// Minimum rows per leaf; default 20.
    pub min_data_in_leaf: usize,
    /// L2 penalty on leaf weights; default 0.
    pub lambda_l2: f64,
    /// Gain a split must exceed (`γ`); default 0.
    pub min_split_gain: f64,
    /// Fraction of rows drawn (without replacement) for each tree, `(0, 1]`; default 1.
    pub row_subsample: f64,
    /// Fraction of features drawn for each tree, `(0, 1]`; default 1.
    pub col_subsample: f64,
    /// Categorical splits over many categories: a group of categories must add this many rows
    /// before the next left set is tried, and the right side keeps as many; default 100
    /// (LightGBM's `min_data_per_group`).
    pub min_data_per_group: usize,
    /// Categorical splits over many categories: categories need this many rows in the node to
    /// take part and are ordered by `G/(H + cat_smooth)`; default 10 (LightGBM's `cat_smooth`).
    pub cat_smooth: f64,
    /// Extra L2 on the children of a many-category split; default 10 (LightGBM's `cat_l2`).
    pub cat_l2: f64,
    /// Most categories on the left of a many-category split; default 32 (LightGBM's
    /// `max_cat_threshold`).
    pub max_cat_threshold: usize,
    /// Categorical features with at most this many bins (missing bin included) split one
    /// category against the rest; default 4 (LightGBM's `max_cat_to_onehot`).
    pub max_cat_to_onehot: usize,
    /// Stop after this many rounds without a better validation log loss and keep the best
    /// round (needs a validation set); default `None`.
    pub early_stopping_rounds: Option<usize>,
    /// Seed of the row and column sampling.
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            n_trees: 100,
            learning_rate: 0.1,
            max_depth: 5,
            max_leaves: None,
            max_bins: 255,
            min_child_weight: 1e-3,
            min_data_in_leaf: 20,
            lambda_l2: 0.0,
            min_split_gain: 0.0,
            row_subsample: 1.0,
            col_subsample: 1.0,
            min_data_per_group: DEFAULT_MIN_DATA_PER_GROUP as usize,
            cat_smooth: DEFAULT_CAT_SMOOTH,
            cat_l2: DEFAULT_CAT_L2,
            max_cat_threshold: DEFAULT_MAX_CAT_THRESHOLD as usize,
            max_cat_to_onehot: DEFAULT_MAX_CAT_TO_ONEHOT as usize,
            early_stopping_rounds: None,
            seed: 42,
        }
    }
}

fn invalid(name: &'static str, reason: String) -> ModelError {
    ModelError::InvalidParam { name, reason }
}

impl GbdtParams {
    /// Checks every parameter's range.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] naming the first parameter out of range.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.n_trees == 0 {
            return Err(invalid("n_trees", "must be at least 1".into()));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(
                "learning_rate",
                format!("must be > 0, got {}", self.learning_rate),
            ));
        }
        if !(1..=MAX_DEPTH).contains(&self.max_depth) {
            return Err(invalid(
                "max_depth",
                format!("must be in 1..={MAX_DEPTH}, got {}", self.max_depth),
            ));
        }
        if let Some(l) = self.max_leaves
            && l < 2
        {
            return Err(invalid("max_leaves", format!("must be at least 2, got {l}")));
        }
        if !(2..=MAX_BINS).contains(&self.max_bins) {
            return Err(invalid(
                "max_bins",
                format!("must be in 2..={MAX_BINS}, got {}", self.max_bins),
            ));
        }
        if !(self.min_child_weight.is_finite() && self.min_child_weight >= 0.0) {
            return Err(invalid(
                "min_child_weight",
                format!("must be finite and >= 0, got {}", self.min_child_weight),
            ));
        }
        if u32::try_from(self.min_data_in_leaf).is_err() {
            return Err(invalid(
                "min_data_in_leaf",
                format!("too large: {}", self.min_data_in_leaf),
            ));
        }
        if !(self.lambda_l2.is_finite() && self.lambda_l2 >= 0.0) {
            return Err(invalid(
                "lambda_l2",
                format!("must be finite and >= 0, got {}", self.lambda_l2),
            ));
        }
        if !(self.min_split_gain.is_finite() && self.min_split_gain >= 0.0) {
            return Err(invalid(
                "min_split_gain",
                format!("must be finite and >= 0, got {}", self.min_split_gain),
            ));
        }
        if !(self.row_subsample > 0.0 && self.row_subsample <= 1.0) {
            return Err(invalid(
                "row_subsample",
                format!("must be in (0, 1], got {}", self.row_subsample),
            ));
        }
        if !(self.col_subsample > 0.0 && self.col_subsample <= 1.0) {
            return Err(invalid(
                "col_subsample",
                format!("must be in (0, 1], got {}", self.col_subsample),
            ));
        }
        if u32::try_from(self.min_data_per_group).is_err() {
            return Err(invalid(
                "min_data_per_group",
                format!("too large: {}", self.min_data_per_group),
            ));
        }
        if !(self.cat_smooth.is_finite() && self.cat_smooth >= 0.0) {
            return Err(invalid(
                "cat_smooth",
                format!("must be finite and >= 0, got {}", self.cat_smooth),
            ));
        }
        if !(self.cat_l2.is_finite() && self.cat_l2 >= 0.0) {
            return Err(invalid("cat_l2", format!("must be finite and >= 0, got {}", self.cat_l2)));
        }
        if self.max_cat_threshold == 0 || u32::try_from(self.max_cat_threshold).is_err() {
            return Err(invalid(
                "max_cat_threshold",
                format!("must be at least 1 and fit 32 bits, got {}", self.max_cat_threshold),
            ));
        }
        if u32::try_from(self.max_cat_to_onehot).is_err() {
            return Err(invalid(
                "max_cat_to_onehot",
                format!("too large: {}", self.max_cat_to_onehot),
            ));
        }
        if self.early_stopping_rounds == Some(0) {
            return Err(invalid("early_stopping_rounds", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The tree-growth part of the parameters.
    pub fn grow_params(&self) -> GrowParams {
        GrowParams {
            split: self.split_params(),
            max_depth: self.max_depth,
            max_leaves: self.max_leaves,
            learning_rate: self.learning_rate,
        }
    }

    /// The split-finding part of the parameters.
    pub fn split_params(&self) -> SplitParams {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        SplitParams {
            lambda_l2: self.lambda_l2,
            min_child_weight: self.min_child_weight,
            min_data_in_leaf: clamp(self.min_data_in_leaf),
            min_split_gain: self.min_split_gain,
            min_data_per_group: clamp(self.min_data_per_group),
            cat_smooth: self.cat_smooth,
            cat_l2: self.cat_l2,
            max_cat_threshold: clamp(self.max_cat_threshold),
            max_cat_to_onehot: clamp(self.max_cat_to_onehot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_value_is_named() {
        let p = GbdtParams::default();
        p.validate().unwrap();
        let cases: Vec<(&str, GbdtParams)> = vec![
            ("n_trees", GbdtParams { n_trees: 0, ..p.clone() }),
            ("learning_rate", GbdtParams { learning_rate: 0.0, ..p.clone() }),
            ("learning_rate", GbdtParams { learning_rate: f64::NAN, ..p.clone() }),
            ("max_depth", GbdtParams { max_depth: 0, ..p.clone() }),
            ("max_depth", GbdtParams { max_depth: 31, ..p.clone() }),
            ("max_leaves", GbdtParams { max_leaves: Some(1), ..p.clone() }),
            ("max_bins", GbdtParams { max_bins: 256, ..p.clone() }),
            ("max_bins", GbdtParams { max_bins: 1, ..p.clone() }),
            ("min_child_weight", GbdtParams { min_child_weight: -1.0, ..p.clone() }),
            ("min_data_in_leaf", GbdtParams { min_data_in_leaf: usize::MAX, ..p.clone() }),
            ("lambda_l2", GbdtParams { lambda_l2: -0.5, ..p.clone() }),
            ("min_split_gain", GbdtParams { min_split_gain: f64::INFINITY, ..p.clone() }),
            ("row_subsample", GbdtParams { row_subsample: 0.0, ..p.clone() }),
            ("row_subsample", GbdtParams { row_subsample: 1.5, ..p.clone() }),
            ("col_subsample", GbdtParams { col_subsample: -0.1, ..p.clone() }),
            ("min_data_per_group", GbdtParams { min_data_per_group: usize::MAX, ..p.clone() }),
            ("cat_smooth", GbdtParams { cat_smooth: -1.0, ..p.clone() }),
            ("cat_l2", GbdtParams { cat_l2: f64::NAN, ..p.clone() }),
            ("max_cat_threshold", GbdtParams { max_cat_threshold: 0, ..p.clone() }),
            ("max_cat_to_onehot", GbdtParams { max_cat_to_onehot: usize::MAX, ..p.clone() }),
            ("early_stopping_rounds", GbdtParams { early_stopping_rounds: Some(0), ..p.clone() }),
        ];
        for (name, bad) in cases {
            match bad.validate() {
                Err(ModelError::InvalidParam { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: expected InvalidParam, got {other:?}"),
            }
        }
    }

    #[test]
    fn params_read_from_partial_json() {
        let p: GbdtParams = serde_json::from_str(r#"{"n_trees": 7, "max_leaves": 8}"#).unwrap();
        assert_eq!(p.n_trees, 7);
        assert_eq!(p.max_leaves, Some(8));
        assert_eq!(p.learning_rate, 0.1);
        assert_eq!((p.min_data_per_group, p.max_cat_threshold, p.max_cat_to_onehot), (100, 32, 4));
        assert_eq!((p.cat_smooth, p.cat_l2), (10.0, 10.0));
        assert!(serde_json::from_str::<GbdtParams>(r#"{"n_tree": 7}"#).is_err());
        // Parameters written before the categorical ones existed read with LightGBM's defaults.
        let split: SplitParams = serde_json::from_str(
            r#"{"lambda_l2":0.0,"min_child_weight":0.001,"min_data_in_leaf":20,"min_split_gain":0.0}"#,
        )
        .unwrap();
        assert_eq!(split, SplitParams::default());
        let back: GbdtParams = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
