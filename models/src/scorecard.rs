//! Credit scorecards: logistic regression on WOE-binned features, scaled to points
//! (Siddiqi, "Credit Risk Scorecards", Wiley 2006, ch. 10 "Scaling"), with reason codes.
//!
//! Fitting:
//! 1. [`Binner::fit`] bins every feature and computes its WOE per bin and IV;
//! 2. features with IV below `min_iv` are dropped;
//! 3. a [`logistic`] regression is fitted on the WOE matrix for `P(default)`:
//!    `z = b₀ + Σ_j β_j · WOE_j` is the log-odds of default.
//!
//! Scaling: the score is linear in the log-odds of *good* (non-default), `ln(odds) = −z`,
//!
//! ```text
//! score  = offset + factor · ln(odds)
//! factor = pdo / ln 2
//! offset = base_score − factor · ln(base_odds)
//! ```
//!
//! so the score is `base_score` at odds `base_odds : 1` and rises by `pdo` whenever the odds
//! double; **higher score = lower risk**. The score splits into points per feature and bin,
//! spreading intercept and offset evenly over the `n` features:
//!
//! ```text
//! points_{j,i} = −(β_j · WOE_{j,i} + b₀ / n) · factor + offset / n
//! ```
//!
//! and a row's score is exactly the sum of its bins' points. Since WOE is positive for low-risk
//! bins (Siddiqi's sign convention) and `β_j` is normally negative, low-risk bins earn more points.
//!
//! Reason codes (adverse-action style): for one row, the features where it lost most points
//! relative to the best-scoring populated bin of that feature.

use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::binning::{Binner, BinningParams};
use crate::logistic::{self, LogisticModel, LogisticParams};
use crate::progress::{FitProgress, no_progress};
use crate::sparse::Design;
use crate::{Dataset, Features, ModelError};

/// Points-to-odds scaling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreScaling {
    /// Score at odds `base_odds : 1` (good : bad).
    pub base_score: f64,
    /// Odds of good to bad at `base_score` (`> 0`).
    pub base_odds: f64,
    /// Points to double the odds (`> 0`).
    pub pdo: f64,
}

impl Default for ScoreScaling {
    fn default() -> Self {
        Self { base_score: 600.0, base_odds: 50.0, pdo: 20.0 }
    }
}

impl ScoreScaling {
    /// Checks that the scaling is finite with positive odds and PDO.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] naming the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.base_score.is_finite() {
            return Err(ModelError::InvalidParam {
                name: "base_score",
                reason: format!("must be finite, got {}", self.base_score),
            });
        }
        if !(self.base_odds.is_finite() && self.base_odds > 0.0) {
            return Err(ModelError::InvalidParam {
                name: "base_odds",
                reason: format!("must be a positive number, got {}", self.base_odds),
            });
        }
        if !(self.pdo.is_finite() && self.pdo > 0.0) {
            return Err(ModelError::InvalidParam {
                name: "pdo",
                reason: format!("must be a positive number, got {}", self.pdo),
            });
        }
        Ok(())
    }

    /// `pdo / ln 2`: points per unit of log-odds.
    pub fn factor(&self) -> f64 {
        self.pdo / std::f64::consts::LN_2
    }

    /// `base_score − factor · ln(base_odds)`: the score at even odds.
    pub fn offset(&self) -> f64 {
        self.base_score - self.factor() * self.base_odds.ln()
    }

    /// Score for log-odds of good `ln((1 − PD) / PD)`.
    pub fn score_from_log_odds_good(&self, log_odds_good: f64) -> f64 {
        self.offset() + self.factor() * log_odds_good
    }

    /// Score for a probability of default.
    pub fn score_from_pd(&self, pd: f64) -> f64 {
        self.score_from_log_odds_good(((1.0 - pd) / pd).ln())
    }

    /// Probability of default at a score (inverse of [`ScoreScaling::score_from_pd`]).
    pub fn pd_from_score(&self, score: f64) -> f64 {
        let log_odds_good = (score - self.offset()) / self.factor();
        logistic::sigmoid(-log_odds_good)
    }
}

/// Scorecard hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScorecardParams {
    /// How features are binned.
    pub binning: BinningParams,
    /// The regression on WOE features.
    pub logistic: LogisticParams,
    /// Points scaling.
    pub scaling: ScoreScaling,
    /// Features with IV below this are left out (`0.0` keeps all; Siddiqi suggests 0.02).
    pub min_iv: f64,
}

/// A fitted scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Binning of the features in the scorecard (those kept by `min_iv`).
    pub binner: Binner,
    /// Regression on the WOE of `binner`'s features: one coefficient per feature.
    pub model: LogisticModel,
    /// Points scaling.
    pub scaling: ScoreScaling,
    /// `points[j][i]`: points of bin `i` of feature `j`.
    pub points: Vec<Vec<f64>>,
}

/// One row of the points table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointsRow {
    /// Feature name.
    pub feature: String,
    /// Bin label.
    pub bin: String,
    /// Points awarded for this bin.
    pub points: f64,
    /// Weight of evidence of the bin.
    pub woe: f64,
    /// Training rows in the bin.
    pub count: f64,
    /// Training default rate of the bin; `None` for a bin without training rows.
    pub event_rate: Option<f64>,
}

/// A feature that cost a row points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCode {
    /// Feature name.
    pub feature: String,
    /// Label of the row's bin.
    pub bin: String,
    /// Points the row got for this feature.
    pub points: f64,
    /// Points of the feature's best populated bin minus `points` (`> 0`).
    pub points_below_max: f64,
}

impl Scorecard {
    /// Bins `data`, drops features with IV below `min_iv`, fits the regression on WOE and
    /// builds the points table.
    ///
    /// # Errors
    /// [`ModelError::InvalidParam`] for invalid parameters; [`ModelError::InvalidInput`] when
    /// binning or the regression reject the data, or no feature reaches `min_iv`.
    pub fn fit(data: &Dataset, params: &ScorecardParams) -> Result<Self, ModelError> {
        Self::fit_with_progress(data, params, &mut no_progress)
    }

    /// [`Scorecard::fit`], reporting every iteration of the regression to `progress`.
    ///
    /// # Errors
    /// As [`Scorecard::fit`].
    pub fn fit_with_progress(
        data: &Dataset,
        params: &ScorecardParams,
        progress: &mut dyn FnMut(FitProgress),
    ) -> Result<Self, ModelError> {
        params.scaling.validate()?;
        if !(params.min_iv.is_finite() && params.min_iv >= 0.0) {
            return Err(ModelError::InvalidParam {
                name: "min_iv",
                reason: format!("must be a finite non-negative number, got {}", params.min_iv),
            });
        }
        let mut binner = Binner::fit(data, &params.binning)?;
        binner.features.retain(|f| f.iv >= params.min_iv);
        if binner.features.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "no feature has an information value of at least {}",
                params.min_iv
            )));
        }
        let woe = binner.transform_woe(&data.features)?;
        let (model, _) = logistic::fit_design(
            Design::dense(woe.view()),
            data.label.view(),
            None,
            &params.logistic,
            progress,
        )?;
        Self::from_parts(binner, model, params.scaling)
    }

    /// Builds a scorecard from a binning and a regression on its WOE features (for example
    /// coefficients trained by a federated solver), computing the points table.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the model does not have one coefficient per binned feature;
    /// [`ModelError::InvalidParam`] for an invalid scaling; [`ModelError::InvalidInput`] for a
    /// non-finite coefficient.
    pub fn from_parts(
        binner: Binner,
        model: LogisticModel,
        scaling: ScoreScaling,
    ) -> Result<Self, ModelError> {
        scaling.validate()?;
        let n = binner.features.len();
        if model.coefficients.len() != n || n == 0 {
            return Err(ModelError::Shape(format!(
                "{} coefficients for {} binned features",
                model.coefficients.len(),
                n
            )));
        }
        if let Some(c) =
            model.coefficients.iter().chain([&model.intercept]).find(|c| !c.is_finite())
        {
            return Err(ModelError::InvalidInput(format!("model coefficient {c} is not finite")));
        }
        let (factor, offset) = (scaling.factor(), scaling.offset());
        let share = |b: f64| b / n as f64;
        let points = binner
            .features
            .iter()
            .zip(&model.coefficients)
            .map(|(fb, &beta)| {
                fb.bins
                    .iter()
                    .map(|bin| -(beta * bin.woe + share(model.intercept)) * factor + share(offset))
                    .collect()
            })
            .collect();
        Ok(Self { binner, model, scaling, points })
    }

    /// Probability of default of every row.
    ///
    /// # Errors
    /// As [`Binner::bin_indices`] (missing or mismatched columns, invalid categorical cells).
    pub fn predict_proba(&self, x: &Features) -> Result<Array1<f64>, ModelError> {
        self.check_consistent()?;
        let woe = self.binner.transform_woe(x)?;
        Ok(self.model.predict_proba(woe.view()))
    }

    /// Score (sum of points) of every row; higher = lower risk.
    ///
    /// # Errors
    /// As [`Scorecard::predict_proba`].
    pub fn score(&self, x: &Features) -> Result<Array1<f64>, ModelError> {
        self.check_consistent()?;
        let idx = self.binner.bin_indices(x)?;
        Ok(idx
            .rows()
            .into_iter()
            .map(|r| r.iter().zip(&self.points).map(|(&b, pts)| pts[b]).sum())
            .collect())
    }

    /// Names of the features in the scorecard.
    pub fn features(&self) -> Vec<&str> {
        self.binner.names()
    }

    /// Every bin of every feature with its points, in feature and bin order.
    pub fn points_table(&self) -> Vec<PointsRow> {
        self.binner
            .features
            .iter()
            .zip(&self.points)
            .flat_map(|(fb, pts)| {
                fb.bins.iter().zip(pts).map(|(bin, &points)| PointsRow {
                    feature: fb.feature.clone(),
                    bin: bin.label.clone(),
                    points,
                    woe: bin.woe,
                    count: bin.count,
                    event_rate: bin.event_rate(),
                })
            })
            .collect()
    }

    /// The `top_k` features where row `row` of `x` lost most points relative to the feature's
    /// best bin among those with training rows, largest loss first (ties in feature order).
    /// Features where the row already sits in the best bin are not reasons and are left out.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] when `row` is out of range; otherwise as
    /// [`Scorecard::score`].
    pub fn reason_codes(
        &self,
        x: &Features,
        row: usize,
        top_k: usize,
    ) -> Result<Vec<ReasonCode>, ModelError> {
        if row >= x.n_rows() {
            return Err(ModelError::InvalidInput(format!(
                "row {row} is out of range for {} rows",
                x.n_rows()
            )));
        }
        self.check_consistent()?;
        let idx = self.binner.bin_indices(&x.select_rows(&[row]))?;
        let bins: Vec<usize> = idx.row(0).to_vec();
        Ok(reason_codes_of(&self.binner, &self.points, &bins, top_k))
    }

    /// Checks that model, binning and points table agree in shape (they always do when built
    /// by [`Scorecard::from_parts`], but a deserialized scorecard may have been edited).
    fn check_consistent(&self) -> Result<(), ModelError> {
        let n = self.binner.features.len();
        let points_ok = self.points.len() == n
            && self.points.iter().zip(&self.binner.features).all(|(p, f)| p.len() == f.bins.len());
        if self.model.coefficients.len() != n || !points_ok {
            return Err(ModelError::Artifact(format!(
                "scorecard with {n} binned features, {} coefficients and {} points rows is inconsistent",
                self.model.coefficients.len(),
                self.points.len()
            )));
        }
        Ok(())
    }
}

/// The `top_k` features where a row whose bin of feature `j` is `bins[j]` lost most points
/// relative to the feature's best bin among those with training rows (`points[j][b]`: points
/// of bin `b` of `binner`'s feature `j`), largest loss first, ties in feature order. A feature
/// where the row sits in the best bin is not a reason. [`Scorecard::reason_codes`] and each
/// party's part of a federated scorecard use it.
pub fn reason_codes_of(
    binner: &Binner,
    points: &[Vec<f64>],
    bins: &[usize],
    top_k: usize,
) -> Vec<ReasonCode> {
    let mut codes: Vec<ReasonCode> = binner
        .features
        .iter()
        .zip(points)
        .zip(bins)
        .filter_map(|((fb, pts), &b)| {
            let here = *pts.get(b)?;
            let populated = fb.bins.iter().zip(pts).filter(|(bin, _)| bin.count > 0.0);
            let best = populated.map(|(_, &p)| p).fold(f64::NEG_INFINITY, f64::max);
            let best = if best.is_finite() { best } else { here };
            let below = best - here;
            (below > 1e-9).then(|| ReasonCode {
                feature: fb.feature.clone(),
                bin: fb.bins.get(b).map(|x| x.label.clone()).unwrap_or_default(),
                points: here,
                points_below_max: below,
            })
        })
        .collect();
    // Stable sort keeps feature order among equal losses.
    codes.sort_by(|a, b| b.points_below_max.total_cmp(&a.points_below_max));
    codes.truncate(top_k);
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binning::BinningMethod;
    use crate::metrics;
    use crate::{FeatureSpec, Features};
    use ndarray::{Array2, array};

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() < tol, "{a} != {b}");
    }

    /// Two categorical features with hand-countable bins:
    /// `a`: level "lo" 40 goods + 10 bads, "hi" 20 goods + 30 bads;
    /// `b`: level "x" 30 goods + 15 bads, "y" 30 goods + 25 bads.
    fn two_feature_data() -> Dataset {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        let mut push = |a: f64, b: f64, label: f64, n: usize| {
            for _ in 0..n {
                rows.push([a, b]);
                y.push(label);
            }
        };
        // (a, b, label, count): a=lo has 40 goods/10 bads, b=x has 30 goods/15 bads.
        push(0.0, 0.0, 0.0, 25);
        push(0.0, 1.0, 0.0, 15);
        push(0.0, 0.0, 1.0, 5);
        push(0.0, 1.0, 1.0, 5);
        push(1.0, 0.0, 0.0, 5);
        push(1.0, 1.0, 0.0, 15);
        push(1.0, 0.0, 1.0, 10);
        push(1.0, 1.0, 1.0, 20);
        let values = Array2::from_shape_vec((rows.len(), 2), rows.concat()).unwrap();
        let specs = vec![
            FeatureSpec::categorical("a", vec!["lo".into(), "hi".into()]),
            FeatureSpec::categorical("b", vec!["x".into(), "y".into()]),
        ];
        Dataset::new(Features::new(specs, values).unwrap(), Array1::from(y)).unwrap()
    }

    #[test]
    fn scaling_anchors() {
        let s = ScoreScaling::default();
        close(s.factor(), 20.0 / 2f64.ln(), 1e-12);
        close(s.offset(), 600.0 - 20.0 / 2f64.ln() * 50f64.ln(), 1e-12);
        close(s.score_from_log_odds_good(50f64.ln()), 600.0, 1e-9);
        close(s.score_from_log_odds_good(100f64.ln()), 620.0, 1e-9);
        close(s.score_from_log_odds_good(25f64.ln()), 580.0, 1e-9);
        // PD 1/51 is odds 50:1.
        close(s.score_from_pd(1.0 / 51.0), 600.0, 1e-9);
        close(s.pd_from_score(620.0), 1.0 / 101.0, 1e-12);
        assert!(ScoreScaling { pdo: 0.0, ..s }.validate().is_err());
        assert!(ScoreScaling { base_odds: -1.0, ..s }.validate().is_err());
    }

    #[test]
    fn points_by_hand_for_two_features() {
        let data = two_feature_data();
        let binner = Binner::fit(&data, &BinningParams::default()).unwrap();
        // Hand WOE with 0.5 smoothing: goods total 60 + 2·0.5 = 61, bads 40 + 1 = 41.
        let woe = |good: f64, bad: f64| (((good + 0.5) / 61.0) / ((bad + 0.5) / 41.0)).ln();
        let (w_lo, w_hi, w_x, w_y) =
            (woe(40.0, 10.0), woe(20.0, 30.0), woe(30.0, 15.0), woe(30.0, 25.0));
        close(binner.features[0].bins[0].woe, w_lo, 1e-12);
        close(binner.features[0].bins[1].woe, w_hi, 1e-12);
        close(binner.features[1].bins[0].woe, w_x, 1e-12);
        close(binner.features[1].bins[1].woe, w_y, 1e-12);
        // Hand IV of `a`: Σ (g − e)·WOE.
        let iv_a = (40.5 / 61.0 - 10.5 / 41.0) * w_lo + (20.5 / 61.0 - 30.5 / 41.0) * w_hi;
        close(binner.features[0].iv, iv_a, 1e-12);

        let model = LogisticModel { coefficients: vec![-1.0, -0.5], intercept: -1.2 };
        let sc = Scorecard::from_parts(binner, model.clone(), ScoreScaling::default()).unwrap();
        let (f, o) = (20.0 / 2f64.ln(), 600.0 - 20.0 / 2f64.ln() * 50f64.ln());
        // points = −(β·WOE + b₀/2)·factor + offset/2
        let p = |beta: f64, w: f64| -(beta * w - 0.6) * f + o / 2.0;
        close(sc.points[0][0], p(-1.0, w_lo), 1e-9);
        close(sc.points[0][1], p(-1.0, w_hi), 1e-9);
        close(sc.points[1][0], p(-0.5, w_x), 1e-9);
        close(sc.points[1][1], p(-0.5, w_y), 1e-9);
        // Missing bins are empty: WOE 0, points = −(b₀/n)·factor + offset/n.
        close(sc.points[0][2], 0.6 * f + o / 2.0, 1e-9);
        assert!(sc.points[0][0] > sc.points[0][1], "low-risk bin earns more points");

        // Sum of points == scaled score of the LR's log-odds, for every row.
        let score = sc.score(&data.features).unwrap();
        let woe_x = sc.binner.transform_woe(&data.features).unwrap();
        let z = model.decision_function(woe_x.view());
        for (s, z) in score.iter().zip(&z) {
            close(*s, sc.scaling.score_from_log_odds_good(-z), 1e-9);
        }
        // A row in (lo, x) scores p(lo) + p(x).
        close(score[0], p(-1.0, w_lo) + p(-0.5, w_x), 1e-9);
    }

    #[test]
    fn score_is_600_at_base_odds_and_pdo_per_doubling() {
        let data = two_feature_data();
        let binner = Binner::fit(&data, &BinningParams::default()).unwrap();
        // Zero coefficients: every row has log-odds of default −ln 50, i.e. odds 50:1 good.
        let at = |odds: f64| {
            let model = LogisticModel { coefficients: vec![0.0, 0.0], intercept: -odds.ln() };
            let sc = Scorecard::from_parts(binner.clone(), model, ScoreScaling::default()).unwrap();
            sc.score(&data.features).unwrap()
        };
        assert!(at(50.0).iter().all(|s| (s - 600.0).abs() < 1e-9));
        assert!(at(100.0).iter().all(|s| (s - 620.0).abs() < 1e-9));
        assert!(at(200.0).iter().all(|s| (s - 640.0).abs() < 1e-9));
    }

    #[test]
    fn fitted_scorecard_is_consistent_and_round_trips() {
        let data = two_feature_data();
        let sc = Scorecard::fit(&data, &ScorecardParams::default()).unwrap();
        // Both features carry risk: negative coefficients on WOE.
        assert!(sc.model.coefficients.iter().all(|&c| c < 0.0), "{:?}", sc.model);
        let pd = sc.predict_proba(&data.features).unwrap();
        let score = sc.score(&data.features).unwrap();
        for (p, s) in pd.iter().zip(&score) {
            close(*s, sc.scaling.score_from_pd(*p), 1e-7);
        }
        // Higher score = lower PD: AUC of −score equals AUC of PD.
        let y = data.label.to_vec();
        let neg: Vec<f64> = score.iter().map(|s| -s).collect();
        close(metrics::auc(&neg, &y).unwrap(), metrics::auc(&pd.to_vec(), &y).unwrap(), 1e-12);
        // Points table: 2 features × (2 levels + missing).
        let t = sc.points_table();
        assert_eq!(t.len(), 6);
        assert_eq!((t[0].feature.as_str(), t[0].bin.as_str()), ("a", "lo"));
        close(t[0].event_rate.unwrap(), 0.2, 1e-12);
        assert_eq!(t[2].bin, "missing");
        assert_eq!(t[2].event_rate, None);
        // JSON round trip gives the same scores.
        let json = serde_json::to_string(&sc).unwrap();
        let back: Scorecard = serde_json::from_str(&json).unwrap();
        let s2 = back.score(&data.features).unwrap();
        for (a, b) in score.iter().zip(&s2) {
            close(*a, *b, 1e-9);
        }
        // An edited artifact whose points table lost a feature is rejected, not a panic.
        let mut broken = back.clone();
        broken.points.pop();
        assert!(matches!(broken.score(&data.features), Err(ModelError::Artifact(_))));
        let p: ScorecardParams = serde_json::from_str(r#"{"min_iv": 0.02}"#).unwrap();
        assert_eq!(p.scaling, ScoreScaling::default());
        assert_eq!(p.binning.max_bins, 10);
    }

    #[test]
    fn reason_codes_rank_lost_points() {
        let data = two_feature_data();
        let binner = Binner::fit(&data, &BinningParams::default()).unwrap();
        let model = LogisticModel { coefficients: vec![-1.0, -0.5], intercept: -1.2 };
        let sc = Scorecard::from_parts(binner, model, ScoreScaling::default()).unwrap();
        let x = Features::new(
            data.features.specs.clone(),
            array![[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [f64::NAN, 0.0]],
        )
        .unwrap();
        // Row 0 (hi, y): both features below their best; `a` loses more (|β| and WOE spread larger).
        let r = sc.reason_codes(&x, 0, 5).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].feature.as_str(), r[0].bin.as_str()), ("a", "hi"));
        assert_eq!((r[1].feature.as_str(), r[1].bin.as_str()), ("b", "y"));
        assert!(r[0].points_below_max > r[1].points_below_max);
        close(r[0].points_below_max, sc.points[0][0] - sc.points[0][1], 1e-9);
        assert_eq!(sc.reason_codes(&x, 0, 1).unwrap().len(), 1);
        // Row 1 (lo, y): only `b` lost points.
        let r = sc.reason_codes(&x, 1, 5).unwrap();
        assert_eq!(r.iter().map(|c| c.feature.as_str()).collect::<Vec<_>>(), vec!["b"]);
        // Row 2 sits in both best bins: no reasons.
        assert!(sc.reason_codes(&x, 2, 5).unwrap().is_empty());
        // Row 3: missing `a` (neutral WOE) still falls short of `a`'s best bin.
        let r = sc.reason_codes(&x, 3, 5).unwrap();
        assert_eq!(r[0].bin, "missing");
        assert!(sc.reason_codes(&x, 4, 5).is_err());
    }

    #[test]
    fn min_iv_drops_weak_features() {
        let base = two_feature_data();
        let n = base.n_rows();
        // Append a constant column: IV 0.
        let c = Features::new(vec![FeatureSpec::numeric("const")], Array2::from_elem((n, 1), 1.0))
            .unwrap();
        let x = Features::hstack(&[&base.features, &c]).unwrap();
        let data = Dataset::new(x, base.label.clone()).unwrap();
        let all = Scorecard::fit(&data, &ScorecardParams::default()).unwrap();
        assert_eq!(all.features(), vec!["a", "b", "const"]);
        let params = ScorecardParams { min_iv: 0.02, ..Default::default() };
        let some = Scorecard::fit(&data, &params).unwrap();
        assert_eq!(some.features(), vec!["a", "b"]);
        // Scoring still accepts the full matrix (columns are found by name).
        assert_eq!(some.score(&data.features).unwrap().len(), n);
        let params = ScorecardParams { min_iv: 100.0, ..Default::default() };
        assert!(matches!(Scorecard::fit(&data, &params), Err(ModelError::InvalidInput(_))));
    }

    // ---------------------------------------------------------------------------------
    // Accuracy on default_credit (horizontal split files, pooled).

    const DATA_DIR: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/datasets/default_credit");

    /// Reads a FATE homo file (`id,y,x0..x22`, all numeric) with a std-only parser.
    fn read_homo(name: &str) -> (Vec<String>, Vec<Vec<f64>>, Vec<f64>) {
        let text = std::fs::read_to_string(format!("{DATA_DIR}/{name}")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(&header[..2], &["id", "y"]);
        let names = header[2..].iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            y.push(cells[1]);
            rows.push(cells[2..].to_vec());
        }
        (names, rows, y)
    }

    fn to_dataset(names: &[String], rows: Vec<Vec<f64>>, y: Vec<f64>) -> Dataset {
        let d = names.len();
        let values = Array2::from_shape_vec((rows.len(), d), rows.concat()).unwrap();
        let specs = names.iter().map(FeatureSpec::numeric).collect();
        Dataset::new(Features::new(specs, values).unwrap(), Array1::from(y)).unwrap()
    }

    /// The bar, from scikit-learn 1.9.1 on the same files:
    ///
    /// ```python
    /// import pandas as pd
    /// from sklearn.preprocessing import KBinsDiscretizer
    /// from sklearn.linear_model import LogisticRegression
    /// from sklearn.metrics import roc_auc_score
    /// d = "shared/datasets/default_credit/"
    /// tr = pd.concat([pd.read_csv(d + f"default_credit_homo_{p}.csv")
    ///                 for p in ["guest", "host_1", "host_2"]])
    /// te = pd.read_csv(d + "default_credit_homo_test.csv")
    /// cols = [f"x{i}" for i in range(23)]
    /// kb = KBinsDiscretizer(n_bins=10, strategy="quantile", encode="onehot")
    /// lr = LogisticRegression(C=1, max_iter=5000).fit(kb.fit_transform(tr[cols]), tr.y)
    /// roc_auc_score(te.y, lr.predict_proba(kb.transform(te[cols]))[:, 1])
    /// # 0.7731825274052568
    /// ```
    const SKLEARN_ONEHOT_AUC: f64 = 0.7731825274052568;

    #[test]
    fn default_credit_auc_matches_sklearn_binned_lr() {
        if !std::path::Path::new(DATA_DIR).is_dir() {
            eprintln!("skipping: {DATA_DIR} is absent");
            return;
        }
        let mut names = Vec::new();
        let (mut rows, mut y) = (Vec::new(), Vec::new());
        for part in ["guest", "host_1", "host_2"] {
            let (n, r, l) = read_homo(&format!("default_credit_homo_{part}.csv"));
            names = n;
            rows.extend(r);
            y.extend(l);
        }
        let train = to_dataset(&names, rows, y);
        let (tn, tr, ty) = read_homo("default_credit_homo_test.csv");
        let test = to_dataset(&tn, tr, ty);
        assert_eq!((train.n_rows(), test.n_rows()), (24_000, 6_000));

        let sc = Scorecard::fit(&train, &ScorecardParams::default()).unwrap();
        let pd = sc.predict_proba(&test.features).unwrap().to_vec();
        let labels = test.label.to_vec();
        let m = metrics::Metrics::compute(&pd, &labels).unwrap();
        eprintln!(
            "scorecard on default_credit homo test: AUC {:.4} KS {:.4} log loss {:.4} \
             (scikit-learn one-hot binned LR: {SKLEARN_ONEHOT_AUC:.4})",
            m.auc, m.ks, m.log_loss
        );
        assert!(m.auc >= SKLEARN_ONEHOT_AUC - 0.005, "AUC {} too low", m.auc);

        // Monotone binning gives monotone points per feature at about the same accuracy.
        let params = ScorecardParams {
            binning: BinningParams { method: BinningMethod::Monotone, ..Default::default() },
            ..Default::default()
        };
        let mono = Scorecard::fit(&train, &params).unwrap();
        let pd = mono.predict_proba(&test.features).unwrap().to_vec();
        let auc = metrics::auc(&pd, &labels).unwrap();
        eprintln!("monotone scorecard AUC {auc:.4}");
        assert!(auc >= SKLEARN_ONEHOT_AUC - 0.005, "monotone scorecard AUC {auc} too low");
    }
}
