//! Horizontal credit scorecard (Siddiqi, "Credit Risk Scorecards", 2006): bins and weights of
//! evidence from securely summed counts, then the logistic regression of [`super::lr`] on the
//! WOE columns, scaled to points.
//!
//! Rounds: census and grid sketch ([`super::prep`]) → per numeric feature the edges of the
//! centralized rule on the pooled grid (`equal_frequency_edges_weighted`, or
//! `monotone_edges_weighted` for `binning_method = "monotone"`), per categorical feature the
//! level rule from pooled level counts → one round summing, per feature and final bin, the
//! events and non-events of the banks' raw values → `FeatureBinning::from_rule_counts` (the
//! centralized `woe_iv` with the same smoothing) and the `min_iv` filter → regression rounds
//! → `Scorecard::from_parts`.
//!
//! What the coordinator learns on top of [`super::prep`] and [`super::lr`]: the pooled event
//! and non-event counts per final bin (which the scorecard artifact publishes anyway).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use fedcredit_models::binning::{
    BinRule, Binner, BinningMethod, BinningParams, FeatureBinning, categorical_rule_from_counts,
    equal_frequency_edges_weighted, monotone_edges_weighted,
};
use fedcredit_models::scorecard::{ScoreScaling, Scorecard};
use fedcredit_models::{Dataset, FeatureKind, FeatureSpec};

use super::lr::{
    Design, LrEngine, absorb_training, design_bounds, training_progress, training_request,
    with_solver_fields,
};
use super::prep::{self, Prep};
use super::{Aggregate, Progress, Request, Task, TrainError};
use crate::ids::PartyId;

with_solver_fields! {
    /// `[model] kind = "scorecard"`: the centralized `ScorecardParams` defaults (10
    /// equal-frequency bins, 5 % minimum bin share, scaling 600 points at 50:1, PDO 20).
    pub struct ScorecardSpec {
        /// `equal_frequency` (default) or `monotone`.
        pub binning_method: BinningMethod = BinningMethod::EqualFrequency,
        /// Target bins per numeric feature; default 10.
        pub max_bins: usize = 10,
        /// Minimum share of rows per bin / categorical level; default 0.05.
        pub min_bin_fraction: f64 = 0.05,
        /// Features with a lower information value are dropped; default 0.
        pub min_iv: f64 = 0.0,
        /// Score at `base_odds`; default 600.
        pub base_score: f64 = 600.0,
        /// Good:bad odds at `base_score`; default 50.
        pub base_odds: f64 = 50.0,
        /// Points to double the odds; default 20.
        pub pdo: f64 = 20.0,
    }
}

impl ScorecardSpec {
    fn binning(&self) -> BinningParams {
        BinningParams {
            method: self.binning_method,
            max_bins: self.max_bins,
            min_bin_fraction: self.min_bin_fraction,
        }
    }

    pub(crate) fn scaling(&self) -> ScoreScaling {
        ScoreScaling { base_score: self.base_score, base_odds: self.base_odds, pdo: self.pdo }
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let named = |e: fedcredit_models::ModelError| match e {
            fedcredit_models::ModelError::InvalidParam { name, reason } => (name.into(), reason),
            other => ("scorecard".into(), other.to_string()),
        };
        self.binning().validate().map_err(named)?;
        self.scaling().validate().map_err(named)?;
        if !(self.min_iv.is_finite() && self.min_iv >= 0.0) {
            return Err(("min_iv".into(), "must be a finite number >= 0".into()));
        }
        self.solver().validate()
    }
}

/// Count events and non-events per final bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinCountsTask {
    /// The rule of each feature, in column order.
    pub rules: Vec<BinRule>,
}

fn rule_bins(rule: &BinRule) -> usize {
    FeatureBinning::n_bins_of(rule)
}

/// A party's vector for `task`.
pub(crate) fn bin_counts_vector(
    data: &Dataset,
    task: &BinCountsTask,
) -> Result<Vec<f64>, TrainError> {
    let d = data.features.n_features();
    if task.rules.len() != d {
        return Err(TrainError::Protocol(format!(
            "bin-count task for {} features, the table has {d}",
            task.rules.len()
        )));
    }
    let mut out = Vec::new();
    for (f, (spec, rule)) in data.features.specs.iter().zip(&task.rules).enumerate() {
        let nb = rule_bins(rule);
        let zeros = vec![0.0; nb];
        let fb = FeatureBinning::from_rule_counts(&spec.name, rule.clone(), &zeros, &zeros)?;
        let base = out.len();
        out.resize(base + 2 * nb, 0.0);
        for (&x, &y) in data.features.values.column(f).iter().zip(&data.label) {
            let b = fb.bin_of(x)?;
            out[base + 2 * b + usize::from(y != 1.0)] += 1.0;
        }
    }
    Ok(out)
}

/// The coordinator's side of a `scorecard` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardTrainer {
    spec: ScorecardSpec,
    specs: Vec<FeatureSpec>,
    clip: f64,
    prep: Prep,
    rules: Option<Vec<BinRule>>,
    engine: Option<LrEngine>,
    eval_pending: bool,
    metrics: BTreeMap<String, f64>,
    n_train: f64,
    rounds: u64,
}

impl ScorecardTrainer {
    pub(crate) fn new(spec: &ScorecardSpec, specs: Vec<FeatureSpec>, clip: f64) -> Self {
        Self {
            spec: *spec,
            prep: Prep::new(specs.clone(), false, clip),
            specs,
            clip,
            rules: None,
            engine: None,
            eval_pending: false,
            metrics: BTreeMap::new(),
            n_train: 0.0,
            rounds: 0,
        }
    }

    fn scorecard(&self) -> Result<Scorecard, TrainError> {
        let e = self.engine.as_ref().ok_or_else(|| TrainError::Protocol("no model yet".into()))?;
        match e.design() {
            Design::Woe(b) => Ok(Scorecard::from_parts(b.clone(), e.model(), self.spec.scaling())?),
            Design::Encoder(_) => Err(TrainError::Protocol("scorecard without WOE".into())),
        }
    }

    pub(crate) fn next_request(&mut self) -> Result<Request, TrainError> {
        if let Some(a) = self.prep.next() {
            return Ok(Request::Aggregate(a));
        }
        let Some(engine) = &self.engine else {
            let rules =
                self.rules.clone().ok_or_else(|| TrainError::Protocol("no rules".into()))?;
            let len = rules.iter().map(|r| 2 * rule_bins(r)).sum();
            return Ok(Request::Aggregate(Aggregate {
                task: Task::BinCounts(BinCountsTask { rules }),
                vector_len: len,
                clip: self.clip,
                what: "WOE bin counts".into(),
            }));
        };
        let model = fedcredit_models::artifact::Model::Scorecard(self.scorecard()?);
        training_request(
            engine,
            model,
            &self.specs,
            self.eval_pending,
            self.clip,
            &self.metrics,
            self.n_train,
            self.rounds,
        )
    }

    fn make_rules(&self) -> Result<Vec<BinRule>, TrainError> {
        let grid = self.prep.grid.as_ref().ok_or_else(|| TrainError::Protocol("no grid".into()))?;
        let params = self.spec.binning();
        Ok(self
            .specs
            .iter()
            .zip(grid)
            .map(|(spec, cells)| match &spec.kind {
                FeatureKind::Numeric => {
                    let edges = match params.method {
                        BinningMethod::EqualFrequency => {
                            let pairs: Vec<(f64, f64)> =
                                cells.iter().map(|&(v, e, n)| (v, e + n)).collect();
                            equal_frequency_edges_weighted(&pairs, params.max_bins)
                        }
                        BinningMethod::Monotone => monotone_edges_weighted(cells, &params),
                    };
                    BinRule::Numeric { edges }
                }
                FeatureKind::Categorical { levels } => {
                    let mut counts = vec![0.0; levels.len()];
                    for &(v, e, n) in cells {
                        if v >= 0.0 && v.fract() == 0.0 && (v as usize) < levels.len() {
                            counts[v as usize] += e + n;
                        }
                    }
                    categorical_rule_from_counts(levels, &counts, params.min_bin_fraction)
                }
            })
            .collect())
    }

    pub(crate) fn absorb(&mut self, sum: &[f64], _who: &[PartyId]) -> Result<(), TrainError> {
        self.rounds += 1;
        if !self.prep.is_done() {
            self.prep.absorb(sum)?;
            if self.prep.is_done() {
                self.rules = Some(self.make_rules()?);
                self.n_train = self.prep.census.as_ref().map_or(0.0, |c| c.rows);
                self.prep.release_grid();
            }
            return Ok(());
        }
        if self.engine.is_none() {
            let rules =
                self.rules.clone().ok_or_else(|| TrainError::Protocol("no rules".into()))?;
            let want: usize = rules.iter().map(|r| 2 * rule_bins(r)).sum();
            if sum.len() != want {
                return Err(TrainError::Protocol(format!(
                    "bin-count sum has {} elements, expected {want}",
                    sum.len()
                )));
            }
            let mut at = 0;
            let mut features = Vec::new();
            for (spec, rule) in self.specs.iter().zip(rules) {
                let nb = rule_bins(&rule);
                let ev: Vec<f64> = (0..nb).map(|b| prep::count(sum[at + 2 * b])).collect();
                let ne: Vec<f64> = (0..nb).map(|b| prep::count(sum[at + 2 * b + 1])).collect();
                at += 2 * nb;
                let fb = FeatureBinning::from_rule_counts(&spec.name, rule, &ev, &ne)?;
                if fb.iv >= self.spec.min_iv {
                    features.push(fb);
                }
            }
            if features.is_empty() {
                return Err(TrainError::Data(format!(
                    "no feature has an information value of at least {}",
                    self.spec.min_iv
                )));
            }
            let design = Design::Woe(Binner { features });
            let bounds = design_bounds(&design, &self.specs, &[])?;
            self.engine =
                Some(LrEngine::new(self.spec.solver(), design, bounds, self.n_train, self.clip));
            return Ok(());
        }
        absorb_training(
            self.engine.as_mut(),
            &mut self.eval_pending,
            &mut self.metrics,
            self.spec.eval_every,
            sum,
        )
    }

    pub(crate) fn progress(&self) -> Progress {
        training_progress(self.engine.as_ref(), "binning", &self.metrics)
    }
}
