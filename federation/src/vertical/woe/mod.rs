//! Federated WOE/IV: binning with weight of evidence and information value (Siddiqi, "Credit
//! Risk Scorecards", Wiley 2006, ch. 6) of every party's columns in a vertical job, after the
//! protocol of FATE's hetero feature binning (Liu et al., "FATE: An Industrial Grade Platform
//! for Collaborative Learning With Data Protection", JMLR 22(226), 2021), with the label
//! holder's event indicators encrypted under exponential ElGamal over ristretto255 (ElGamal,
//! IEEE Trans. IT 1985; the exponential variant of Cramer, Gennaro and Schoenmakers,
//! Eurocrypt 1997: see `fedcredit_crypto::elgamal`).
//!
//! The stage, after alignment (every party holds the agreed order of the common rows):
//!
//! 1. The coordinator opens it with [`pb::WoeStart`], which restates the job's binning
//!    parameters; every party refuses a start that differs from the job it accepted.
//! 2. The label holder ([`label`]) draws a fresh ElGamal key, encrypts its 0/1 label of every
//!    aligned row and streams key and ciphertexts, sealed, to every feature holder. It bins its
//!    own columns in plaintext with the centralized [`FeatureBinning::fit`].
//! 3. Each feature holder ([`holder`]) cuts its own columns alone, exactly as the centralized
//!    binner does when it needs no label ([`fedcredit_models::binning::unlabeled_rule`]:
//!    equal-frequency bins, text levels with rare ones pooled, the missing bin last; for
//!    monotone binning the fine bins the merge starts from), sums the ciphertexts per bin,
//!    rerandomizes every sum and returns sums and per-bin row counts to the label holder.
//! 4. The label holder decrypts per-bin event counts (non-events = rows − events), merges
//!    fine bins for monotone binning with the centralized [`monotone_merge`], computes WOE and
//!    IV with the centralized [`woe_iv`], returns to each feature holder the merge and the WOE
//!    of its bins, and reports the IV table to the coordinator.
//!
//! Each party keeps the binning of its own columns with their WOE ([`PartyWoe`], under
//! [`KEPT_KEY`] in [`PartyCtx::kept`]) for a later stage (the scorecard's vertical LR). Bin
//! edges and level groupings never leave their owner; the coordinator receives only the
//! [`IvReport`] (IV, bin count and selection per feature) and acknowledgements.

pub mod holder;
pub mod label;
pub mod local;

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_models::binning::{BinRule, BinningMethod, BinningParams, rule_bin_of};
#[cfg(doc)]
use fedcredit_models::binning::{FeatureBinning, monotone_merge, woe_iv};
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::{
    PartyCtx, StageConductor, StageCtx, StageDone, StageOutbox, StageResult, StageRole,
    StageRoleOut,
};
use crate::horizontal::ModelSpec;
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Rejection, RoleError};

/// Name of the party's binning in [`PartyCtx::kept`].
pub const KEPT_KEY: &str = "woe";

/// The only encryption the stage uses today.
pub const SCHEME: &str = "elgamal";

/// Most bins a feature may have (the missing bin included).
pub const MAX_BINS: usize = 4096;

/// Ciphertexts of event indicators per relayed message (64 bytes each: 1 MiB).
pub const ROWS_PER_MESSAGE: usize = 16_384;

/// Features per message of sums.
pub const FEATURES_PER_MESSAGE: usize = 128;

/// `[model] kind = "woe"`: federated binning with WOE and IV per feature of every party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WoeSpec {
    /// Bins per numeric feature; default 10.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// `equal_frequency` (default) or `monotone`.
    #[serde(default)]
    pub method: BinningMethod,
    /// Smallest share of rows per merged monotone bin, and below which a text level goes to
    /// "other"; default 0.05.
    #[serde(default = "default_min_bin_fraction")]
    pub min_bin_fraction: f64,
    /// Features with a lower information value are marked not selected (a later LR leaves
    /// them out); default 0 (all kept). Siddiqi's rule of thumb: 0.02.
    #[serde(default)]
    pub min_iv: f64,
}

fn default_bins() -> usize {
    10
}

fn default_min_bin_fraction() -> f64 {
    0.05
}

impl Default for WoeSpec {
    fn default() -> Self {
        Self {
            bins: default_bins(),
            method: BinningMethod::default(),
            min_bin_fraction: default_min_bin_fraction(),
            min_iv: 0.0,
        }
    }
}

impl WoeSpec {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(2..=64).contains(&self.bins) {
            return Err(("bins".into(), format!("is {}; must be between 2 and 64", self.bins)));
        }
        if !(0.0..0.5).contains(&self.min_bin_fraction) {
            return Err((
                "min_bin_fraction".into(),
                format!("is {}; must be in [0, 0.5)", self.min_bin_fraction),
            ));
        }
        if !(self.min_iv.is_finite() && self.min_iv >= 0.0) {
            return Err(("min_iv".into(), "must be a finite number >= 0".into()));
        }
        Ok(())
    }
}

/// The binning parameters of job `spec`'s WOE stage (`kind = "woe"` or `"scorecard"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WoeParams {
    /// As the centralized binner takes them.
    pub binning: BinningParams,
    /// Selection threshold.
    pub min_iv: f64,
}

impl WoeParams {
    /// From the job's `[model]`.
    ///
    /// # Errors
    /// A message when the job's model has no WOE stage.
    pub fn of(spec: &JobSpec) -> Result<Self, String> {
        match &spec.model {
            ModelSpec::Woe(s) => Ok(Self {
                binning: BinningParams {
                    method: s.method,
                    max_bins: s.bins,
                    min_bin_fraction: s.min_bin_fraction,
                },
                min_iv: s.min_iv,
            }),
            ModelSpec::Scorecard(s) => Ok(Self {
                binning: BinningParams {
                    method: s.binning_method,
                    max_bins: s.max_bins,
                    min_bin_fraction: s.min_bin_fraction,
                },
                min_iv: s.min_iv,
            }),
            other => Err(format!("a {} job has no WOE/IV stage", other.kind())),
        }
    }

    /// Bins a feature holder cuts a numeric column into before the label holder merges them
    /// (monotone binning), or for good (equal frequency).
    pub fn fine_bins(&self) -> usize {
        match self.binning.method {
            BinningMethod::EqualFrequency => self.binning.max_bins,
            BinningMethod::Monotone => {
                fedcredit_models::binning::MONOTONE_FINE_BINS.max(self.binning.max_bins)
            }
        }
    }
}

fn method_name(m: BinningMethod) -> &'static str {
    match m {
        BinningMethod::EqualFrequency => "equal_frequency",
        BinningMethod::Monotone => "monotone",
    }
}

/// The stage's opening message for job `spec`, as the coordinator sends it and as each party
/// expects it.
///
/// # Errors
/// A message when the job has no WOE stage or is not vertical.
pub fn start_message(spec: &JobSpec) -> Result<pb::WoeStart, String> {
    let p = WoeParams::of(spec)?;
    let vertical = spec.vertical.as_ref().ok_or("not a vertical job")?;
    Ok(pb::WoeStart {
        bins: u32::try_from(p.binning.max_bins).map_err(|_| "too many bins")?,
        method: method_name(p.binning.method).into(),
        scheme: SCHEME.into(),
        key_bits: 0,
        label_holder: vertical.label_holder.0.clone(),
        min_bin_fraction: p.binning.min_bin_fraction,
        min_iv: p.min_iv,
    })
}

/// One feature's binning and WOE, kept at the party that owns the column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWoe {
    /// Column name.
    pub feature: String,
    /// Column index in the party's table.
    pub column: usize,
    /// Value-to-bin rule (the party's own edges or level groups).
    pub rule: BinRule,
    /// WOE of every bin, the missing bin last.
    pub woe: Vec<f64>,
    /// Information value.
    pub iv: f64,
    /// Whether the IV reaches the job's `min_iv`.
    pub selected: bool,
}

impl FeatureWoe {
    /// The WOE of cell value `v` (`NaN` → the missing bin).
    ///
    /// # Errors
    /// A categorical value that is not a level index.
    pub fn woe_of(&self, v: f64) -> Result<f64, fedcredit_models::ModelError> {
        let b = rule_bin_of(&self.rule, self.woe.len(), &self.feature, v)?;
        Ok(self.woe[b])
    }
}

/// A party's binning of its own columns with their WOE, what the WOE/IV stage leaves at the
/// party (JSON under [`KEPT_KEY`] in [`PartyCtx::kept`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartyWoe {
    /// One entry per column of the party's table, in table order.
    pub features: Vec<FeatureWoe>,
}

impl PartyWoe {
    /// The binning a finished stage kept, if any.
    ///
    /// # Errors
    /// A message when the kept JSON does not parse.
    pub fn from_kept(kept: &BTreeMap<String, String>) -> Result<Option<Self>, String> {
        kept.get(KEPT_KEY)
            .map(|j| serde_json::from_str(j).map_err(|e| format!("kept WOE binning: {e}")))
            .transpose()
    }

    /// The selected features, in table order.
    pub fn selected(&self) -> impl Iterator<Item = &FeatureWoe> {
        self.features.iter().filter(|f| f.selected)
    }
}

/// IV of one feature in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureIv {
    /// Column name (as its owner names it).
    pub feature: String,
    /// Information value.
    pub iv: f64,
    /// Bins, the missing bin included.
    pub bins: usize,
    /// Whether the IV reaches the job's `min_iv`.
    pub selected: bool,
}

/// The IV table of one party's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyIv {
    /// The party that owns the columns.
    pub party: String,
    /// Its features, in its table's order.
    pub features: Vec<FeatureIv>,
}

/// The WOE/IV stage's report (the job's artifact for `kind = "woe"`): IV per feature and
/// party; no bin edges, levels, values or per-bin counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IvReport {
    /// The party that holds the label.
    pub label_holder: String,
    /// Aligned rows the tables were computed on.
    pub rows: u64,
    /// `equal_frequency` or `monotone`.
    pub method: String,
    /// Target bins per numeric feature.
    pub bins: usize,
    /// Selection threshold.
    pub min_iv: f64,
    /// One table per party, in the job's party order.
    pub parties: Vec<PartyIv>,
}

impl IvReport {
    /// Features in all.
    pub fn n_features(&self) -> usize {
        self.parties.iter().map(|p| p.features.len()).sum()
    }

    /// Selected features in all.
    pub fn n_selected(&self) -> usize {
        self.parties.iter().flat_map(|p| &p.features).filter(|f| f.selected).count()
    }

    /// The table for people: per party, features by descending IV.
    pub fn render(&self) -> String {
        let mut s = format!(
            "WOE/IV over {} aligned rows ({}, {} bins, min IV {}); label holder {}\n",
            self.rows, self.method, self.bins, self.min_iv, self.label_holder
        );
        for p in &self.parties {
            s.push_str(&format!("  party {} ({} features)\n", p.party, p.features.len()));
            let mut f: Vec<&FeatureIv> = p.features.iter().collect();
            f.sort_by(|a, b| b.iv.total_cmp(&a.iv).then_with(|| a.feature.cmp(&b.feature)));
            for x in f {
                s.push_str(&format!(
                    "    {:<32} IV {:>8.4}  {:>3} bins  {}\n",
                    x.feature,
                    x.iv,
                    x.bins,
                    if x.selected { "selected" } else { "dropped" }
                ));
            }
        }
        s
    }
}

/// The coordinator's side of the WOE/IV stage: opens it, waits for the label holder's report
/// and every feature holder's acknowledgement.
#[derive(Debug)]
pub struct WoeConductor {
    label_holder: PartyId,
    start: pb::WoeStart,
    waiting: BTreeSet<PartyId>,
    report: Option<(String, IvReport)>,
}

impl WoeConductor {
    /// The WOE/IV stage of job `spec`, after stages `done` (the alignment).
    ///
    /// # Errors
    /// A message when the job has no WOE stage or the alignment has not finished.
    pub fn new(spec: &JobSpec, done: &[StageDone]) -> Result<Self, String> {
        if !done.iter().any(|d| matches!(d.result, StageResult::Aligned { .. })) {
            return Err("the WOE/IV stage needs the alignment first".into());
        }
        let start = start_message(spec)?;
        Ok(Self {
            label_holder: PartyId(start.label_holder.clone()),
            start,
            waiting: BTreeSet::new(),
            report: None,
        })
    }

    fn finish(&self, out: &mut StageOutbox) {
        let Some((json, report)) = &self.report else { return };
        let n = report.n_features();
        let k = report.n_selected();
        out.done = Some(StageDone {
            what: format!(
                "WOE/IV of {n} features of {} parties over {} rows, {k} selected",
                report.parties.len(),
                report.rows
            ),
            metrics: BTreeMap::from([
                ("woe_features".to_string(), n as f64),
                ("woe_selected".to_string(), k as f64),
            ]),
            result: StageResult::Woe { iv_json: json.clone() },
        });
    }
}

impl StageConductor for WoeConductor {
    fn start(&mut self, ctx: &StageCtx<'_>, out: &mut StageOutbox) -> Result<(), String> {
        for p in ctx.parties {
            out.send(
                p,
                pb::vertical_step::Body::Woe(pb::WoeStep {
                    body: Some(pb::woe_step::Body::Start(self.start.clone())),
                }),
            );
        }
        self.waiting = ctx.parties.iter().cloned().collect();
        Ok(())
    }

    fn receive(
        &mut self,
        ctx: &StageCtx<'_>,
        from: &PartyId,
        report: pb::vertical_report::Body,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        let pb::vertical_report::Body::Woe(pb::WoeReport { body: Some(body) }) = report else {
            return Err(Rejection::rejected("not a WOE/IV report"));
        };
        if !self.waiting.contains(from) {
            return Err(Rejection::rejected(format!("{from} has already reported")));
        }
        match body {
            pb::woe_report::Body::IvJson(json) if *from == self.label_holder => {
                let report: IvReport = serde_json::from_str(&json)
                    .map_err(|e| Rejection::rejected(format!("IV report does not parse: {e}")))?;
                if let Some(p) =
                    report.parties.iter().find(|p| !ctx.parties.iter().any(|q| q.0 == p.party))
                {
                    return Err(Rejection::rejected(format!(
                        "IV report names {}, not a party",
                        p.party
                    )));
                }
                self.report = Some((json, report));
            }
            pb::woe_report::Body::Received(_) if *from != self.label_holder => {}
            _ => return Err(Rejection::rejected(format!("{from} cannot send this WOE/IV report"))),
        }
        self.waiting.remove(from);
        if self.waiting.is_empty() {
            self.finish(out);
        }
        Ok(())
    }

    fn pending(&self) -> Vec<PartyId> {
        self.waiting.iter().cloned().collect()
    }

    fn status(&self) -> String {
        if self.report.is_some() {
            "WOE/IV: waiting for the feature holders' acknowledgements".into()
        } else {
            "WOE/IV".into()
        }
    }
}

/// A party's side of the WOE/IV stage.
#[derive(Debug, Default)]
pub struct WoeRole {
    side: Side,
}

#[derive(Debug, Default)]
enum Side {
    #[default]
    Waiting,
    Label(Box<label::LabelSide>),
    Holder(Box<holder::HolderSide>),
    Finished,
}

impl WoeRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self::default()
    }

    fn finish_if_done(&mut self) {
        let done = match &self.side {
            Side::Label(l) => l.is_done(),
            Side::Holder(h) => h.is_done(),
            _ => false,
        };
        if done {
            self.side = Side::Finished;
        }
    }
}

impl StageRole for WoeRole {
    fn receive(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let pb::vertical_step::Body::Woe(pb::WoeStep { body: Some(pb::woe_step::Body::Start(s)) }) =
            msg
        else {
            return Err(RoleError("not a WOE/IV start".into()));
        };
        let _span = tracing::info_span!("woe", job = %ctx.job.0, party = %ctx.me.0).entered();
        if !matches!(self.side, Side::Waiting) {
            return Err(RoleError("the WOE/IV stage has already started".into()));
        }
        let expected = start_message(ctx.spec).map_err(RoleError)?;
        if s != expected {
            return Err(RoleError(
                "the WOE/IV start differs from the job's binning parameters".into(),
            ));
        }
        let params = WoeParams::of(ctx.spec).map_err(RoleError)?;
        if ctx.alignment.is_none() {
            return Err(RoleError("the WOE/IV stage needs the alignment first".into()));
        }
        self.side = if *ctx.me == ctx.vertical.label_holder {
            Side::Label(Box::new(label::LabelSide::start(ctx, params, rng, out)?))
        } else {
            Side::Holder(Box::new(holder::HolderSide::start(ctx, params)?))
        };
        self.finish_if_done();
        Ok(())
    }

    fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        msg: pb::vertical_payload::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let pb::vertical_payload::Body::Woe(pb::WoePayload { body: Some(body) }) = msg else {
            return Err(RoleError(format!("an empty or foreign WOE/IV payload from {from}")));
        };
        let _span = tracing::info_span!("woe", job = %ctx.job.0, party = %ctx.me.0).entered();
        match &mut self.side {
            Side::Label(l) => l.payload(ctx, from, body, out)?,
            Side::Holder(h) => h.payload(ctx, from, body, rng, out)?,
            Side::Waiting => return Err(RoleError("the WOE/IV stage has not started".into())),
            Side::Finished => return Err(RoleError("the WOE/IV stage is over here".into())),
        }
        self.finish_if_done();
        Ok(())
    }

    fn finished(&self) -> bool {
        matches!(self.side, Side::Finished)
    }
}

/// The party's columns over the aligned rows, in the agreed order.
pub(crate) fn aligned_column(ctx: &PartyCtx<'_>, rows: &[u32], j: usize) -> Vec<f64> {
    let col = ctx.table.features.values.column(j);
    rows.iter().map(|&r| col[r as usize]).collect()
}

#[cfg(test)]
mod tests;
