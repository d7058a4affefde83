//! What a trained vertical model leaves where.
//!
//! Each party keeps its own part ([`PartyModel`], JSON under `kept["model"]`, stored by the
//! daemon as `models/<job>.json` in its state directory): its encoding and coefficients, and
//! for a scorecard the points of its own bins. No other party and not the coordinator ever
//! receives a part. The coordinator registers a [`VerticalModelRef`]: the kind, the parties
//! and the columns each contributes, the label holder and the training figures, which is
//! what the scoring service needs to route a request to every part.
//!
//! A scorecard's score is the sum of the parties' points: the label holder's part carries the
//! base points `offset − factor·β₀` (the intercept is its own), and feature `j`'s bin `b` is
//! worth `−factor·β_j·WOE_b`, so the sum is `offset − factor·logit(PD)`, the same scaling as the
//! centralized [`fedcredit_models::scorecard::Scorecard`] (Siddiqi, "Credit Risk Scorecards",
//! ch. 10), whose per-feature shares of the base points only move points between features.

use std::collections::BTreeMap;

use fedcredit_models::binning::{Bin, Binner, FeatureBinning};
use fedcredit_models::scorecard::{ReasonCode, ScoreScaling, reason_codes_of};
use fedcredit_models::{Features, ModelError};
use serde::{Deserialize, Serialize};

use super::lr::protocol::{LocalEncoding, LrPart};
use super::secureboost::part::{HolderPart, LabelPart, LeafSet};
use super::woe::PartyWoe;

/// `format` of a [`VerticalModelRef`].
pub const REF_FORMAT: &str = "fedcredit-vertical-model";

/// The key in a party's kept map under which its part is stored.
pub const KEPT_MODEL: &str = "model";
/// The key under which a job that warm-starts keeps the part it starts from.
pub const KEPT_WARM_START: &str = "warm_start";

/// A party's part of a vertical model (stays at the party).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartyModel {
    /// Logistic regression: the party's encoding and coefficients.
    Logistic {
        /// The part.
        part: LrPart,
    },
    /// Scorecard: the regression on the WOE of the party's bins, and their points.
    Scorecard {
        /// The part.
        card: PartyScorecard,
    },
    /// Gradient-boosted trees (SecureBoost): the tree shapes and the party's own splits.
    Gbdt {
        /// The part.
        part: Box<GbdtPart>,
    },
}

/// A party's part of a SecureBoost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum GbdtPart {
    /// The label holder's: its splits, leaf values, base score.
    Label(LabelPart),
    /// A feature holder's: its splits.
    Holder(HolderPart),
}

impl From<LabelPart> for GbdtPart {
    fn from(p: LabelPart) -> Self {
        GbdtPart::Label(p)
    }
}

impl From<HolderPart> for GbdtPart {
    fn from(p: HolderPart) -> Self {
        GbdtPart::Holder(p)
    }
}

impl GbdtPart {
    /// The party's leaf sets of each row of `features` (its own columns), tree by tree.
    ///
    /// # Errors
    /// When the columns do not fit the bins it trained on.
    pub fn leaf_sets(&self, features: &Features) -> Result<Vec<Vec<LeafSet>>, String> {
        Ok(match self {
            GbdtPart::Label(p) => p.leaf_sets(&p.bins.bin(features)?),
            GbdtPart::Holder(p) => p.leaf_sets(&p.bins.bin(features)?),
        })
    }

    /// The columns it splits on.
    pub fn n_features(&self) -> usize {
        match self {
            GbdtPart::Label(p) => p.bins.specs.len(),
            GbdtPart::Holder(p) => p.bins.specs.len(),
        }
    }
}

impl PartyModel {
    /// The part kept at a party, if any.
    ///
    /// # Errors
    /// A message when the kept JSON does not parse.
    pub fn from_kept(kept: &BTreeMap<String, String>) -> Result<Option<Self>, String> {
        kept.get(KEPT_MODEL)
            .map(|j| serde_json::from_str(j).map_err(|e| format!("kept model part: {e}")))
            .transpose()
    }

    /// The regression part (none for trees).
    pub fn lr(&self) -> Option<&LrPart> {
        match self {
            PartyModel::Logistic { part } => Some(part),
            PartyModel::Scorecard { card } => Some(&card.part),
            PartyModel::Gbdt { .. } => None,
        }
    }

    /// This party's part of the log-odds of default of each row of `features` (its own
    /// columns); the parties' parts add up to the model's log-odds. Trees have no such part:
    /// their rows are routed through every party's leaf sets ([`GbdtPart::leaf_sets`]).
    ///
    /// # Errors
    /// When the columns do not fit the part, or the part is a tree part.
    pub fn partial_log_odds(&self, features: &Features) -> Result<Vec<f64>, String> {
        self.lr()
            .ok_or("a tree model has no additive part; route rows through the leaf sets")?
            .partial_scores(features)
            .map_err(|e| e.to_string())
    }
}

/// The log-odds of rows given as each party's columns (`features[p]`: the same rows in the
/// same order at every party) from every party's part, as the scoring service computes them:
/// the sum of the parts for a linear model, the leaf sets intersected at the label holder for
/// trees.
///
/// # Errors
/// When a party's part or columns are missing or do not fit.
pub fn joint_log_odds(
    parts: &BTreeMap<crate::ids::PartyId, PartyModel>,
    features: &BTreeMap<crate::ids::PartyId, Features>,
) -> Result<Vec<f64>, String> {
    let trees: BTreeMap<crate::ids::PartyId, GbdtPart> = parts
        .iter()
        .filter_map(|(p, m)| match m {
            PartyModel::Gbdt { part } => Some((p.clone(), (**part).clone())),
            _ => None,
        })
        .collect();
    if !trees.is_empty() {
        if trees.len() != parts.len() {
            return Err("the parts mix trees and linear models".into());
        }
        return super::secureboost::local::joint_scores(&trees, features);
    }
    let mut total: Option<Vec<f64>> = None;
    for (p, part) in parts {
        let f = features.get(p).ok_or_else(|| format!("no columns of {p}"))?;
        let s = part.partial_log_odds(f).map_err(|e| format!("{p}: {e}"))?;
        total = Some(match total {
            None => s,
            Some(t) => t.iter().zip(&s).map(|(a, b)| a + b).collect(),
        });
    }
    total.ok_or_else(|| "no parts".into())
}

/// A party's part of a federated scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyScorecard {
    /// The regression part (its encoding is the WOE of the party's bins).
    pub part: LrPart,
    /// The scaling every party applies (from the job).
    pub scaling: ScoreScaling,
    /// `points[j][b]`: points of bin `b` of the party's `j`-th scorecard feature.
    pub points: Vec<Vec<f64>>,
    /// The label holder's base points (`offset − factor·β₀`); none elsewhere.
    pub base_points: Option<f64>,
}

impl PartyScorecard {
    /// The points table of a trained WOE part.
    ///
    /// # Errors
    /// A message when the part is not on WOE features or its coefficients do not fit.
    pub fn new(part: LrPart, scaling: ScoreScaling) -> Result<Self, String> {
        let LocalEncoding::Woe { binner, clip } = &part.encoding else {
            return Err("a scorecard part must be trained on WOE features".into());
        };
        if binner.features.len() != part.coefficients.len() {
            return Err(format!(
                "{} coefficients for {} binned features",
                part.coefficients.len(),
                binner.features.len()
            ));
        }
        let factor = scaling.factor();
        let points = binner
            .features
            .iter()
            .zip(&part.coefficients)
            .map(|(fb, beta)| {
                fb.bins.iter().map(|b| -factor * beta * b.woe.clamp(-clip, *clip)).collect()
            })
            .collect();
        let base_points = part.intercept.map(|b0| scaling.offset() - factor * b0);
        Ok(Self { part, scaling, points, base_points })
    }

    fn binner(&self) -> Result<&Binner, String> {
        match &self.part.encoding {
            LocalEncoding::Woe { binner, .. } => Ok(binner),
            LocalEncoding::Linear { .. } => Err("not a WOE part".into()),
        }
    }

    /// This party's points for each row of `features` (base points included at the label
    /// holder); the parties' points add up to the score.
    ///
    /// # Errors
    /// When the columns do not fit the bins.
    pub fn points(&self, features: &Features) -> Result<Vec<f64>, String> {
        let idx = self.binner()?.bin_indices(features).map_err(|e| e.to_string())?;
        let base = self.base_points.unwrap_or(0.0);
        Ok(idx
            .rows()
            .into_iter()
            .map(|r| base + r.iter().zip(&self.points).map(|(&b, p)| p[b]).sum::<f64>())
            .collect())
    }

    /// The `top_k` of this party's features where row `row` lost most points against the
    /// feature's best populated bin: reason codes that name the party's own features and bin
    /// labels, computed at the party (no other party sees its bins).
    ///
    /// # Errors
    /// When `row` is out of range or the columns do not fit.
    pub fn reason_codes(
        &self,
        features: &Features,
        row: usize,
        top_k: usize,
    ) -> Result<Vec<ReasonCode>, String> {
        if row >= features.n_rows() {
            return Err(format!("row {row} is out of range for {} rows", features.n_rows()));
        }
        let binner = self.binner()?;
        let idx = binner.bin_indices(&features.select_rows(&[row])).map_err(|e| e.to_string())?;
        let bins: Vec<usize> = idx.row(0).to_vec();
        Ok(reason_codes_of(binner, &self.points, &bins, top_k))
    }
}

/// The binner of a party's selected WOE features (the WOE/IV stage's result at the party),
/// with each bin's row count over `train` (the party's training rows; a feature holder knows
/// counts, not classes, so `events` and `non_events` are 0).
///
/// # Errors
/// When the party selected no feature or a column does not fit its rule.
pub fn woe_binner(woe: &PartyWoe, train: &Features) -> Result<Binner, ModelError> {
    let mut features = Vec::new();
    for f in woe.selected() {
        let n_bins = FeatureBinning::n_bins_of(&f.rule);
        if n_bins != f.woe.len() {
            return Err(ModelError::InvalidInput(format!(
                "feature `{}`: {} WOE values for {n_bins} bins",
                f.feature,
                f.woe.len()
            )));
        }
        let zeros = vec![0.0; n_bins];
        let mut fb = FeatureBinning::from_rule_counts(&f.feature, f.rule.clone(), &zeros, &zeros)?;
        for (b, w) in fb.bins.iter_mut().zip(&f.woe) {
            *b = Bin { woe: *w, iv: 0.0, count: 0.0, events: 0.0, non_events: 0.0, ..b.clone() };
        }
        fb.iv = f.iv;
        features.push(fb);
    }
    if features.is_empty() {
        return Err(ModelError::InvalidInput(
            "no feature of this party reached the job's min_iv".into(),
        ));
    }
    let mut binner = Binner { features };
    let idx = binner.bin_indices(train)?;
    for (j, fb) in binner.features.iter_mut().enumerate() {
        for &b in idx.column(j) {
            fb.bins[b].count += 1.0;
        }
    }
    Ok(binner)
}

/// One party's place in a vertical model, as the coordinator registers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyRef {
    /// The party.
    pub party: String,
    /// The columns of its table the model reads (names only).
    pub features: Vec<String>,
    /// Encoded columns of its part.
    pub columns: u32,
}

/// The coordinator's record of a vertical model: where its parts are, not what they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerticalModelRef {
    /// Always [`REF_FORMAT`].
    pub format: String,
    /// `logistic` or `scorecard`.
    pub kind: String,
    /// The training job (each party stores its part under this name).
    pub job: String,
    /// The party that holds the label (and the intercept or base points).
    pub label_holder: String,
    /// Every party, in the job's order.
    pub parties: Vec<PartyRef>,
    /// The scorecard's scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScoreScaling>,
    /// Figures at training time (the label holder's validation figures, alignment size).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// A scorecard's WOE/IV report (IV per party and feature; no bins or counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<super::woe::IvReport>,
}

impl VerticalModelRef {
    /// The reference of a model of `kind` trained by the stage of `ctx`: every party with the
    /// columns of its schema and `columns[party]` (its encoded columns, or splits it owns),
    /// the training figures `metrics` and the alignment's `rows`.
    pub(crate) fn of_stage(
        ctx: &super::StageCtx<'_>,
        kind: &str,
        columns: &BTreeMap<crate::ids::PartyId, u32>,
        metrics: &BTreeMap<String, f64>,
        rows: u64,
        scaling: Option<ScoreScaling>,
    ) -> Self {
        let parties = ctx
            .parties
            .iter()
            .map(|p| PartyRef {
                party: p.0.clone(),
                features: ctx
                    .schemas
                    .get(p)
                    .map(|s| s.iter().map(|f| f.name.clone()).collect())
                    .unwrap_or_default(),
                columns: columns.get(p).copied().unwrap_or(0),
            })
            .collect();
        let mut all = metrics.clone();
        all.insert("intersection".to_string(), rows as f64);
        Self {
            format: REF_FORMAT.into(),
            kind: kind.into(),
            job: ctx.job.0.clone(),
            label_holder: ctx.vertical.label_holder.0.clone(),
            parties,
            scaling,
            metrics: all,
            iv: None,
        }
    }

    /// Reads a reference.
    ///
    /// # Errors
    /// A message when the JSON is not such a reference.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let r: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if r.format != REF_FORMAT {
            return Err(format!("`format` is {:?}, expected {REF_FORMAT:?}", r.format));
        }
        Ok(r)
    }

    /// For people: one line per party.
    pub fn render(&self) -> String {
        let mut s = format!(
            "vertical {} model of job {}; label holder {}\n",
            self.kind, self.job, self.label_holder
        );
        for p in &self.parties {
            s.push_str(&format!(
                "  part at {:<16} {:>4} encoded columns from {}\n",
                p.party,
                p.columns,
                p.features.join(", ")
            ));
        }
        s
    }
}
