//! Vertical gradient-boosted trees: SecureBoost (Cheng et al., "SecureBoost: A Lossless
//! Federated Learning Framework", IEEE Intelligent Systems 2021, arXiv 1901.08755) with the
//! packing, compression and GOSS of SecureBoost+ (Chen et al., arXiv 2110.10927).
//!
//! The stage, after alignment (every party holds the agreed order of the common rows):
//!
//! 1. The coordinator opens it with [`pb::SbStart`], which restates the job; parties refuse a
//!    start that differs from the job they accepted.
//! 2. Every party bins its own columns over its training rows with the centralized
//!    [`fedcredit_models::gbdt::BinMapper`]. Each feature holder ([`holder`]) sends the label
//!    holder the shape of its bins (counts and kinds, no edge); the label holder ([`label`])
//!    sends its additively homomorphic public key (OU or Paillier, `[vertical.he]`) and the
//!    packing of the sums.
//! 3. Per tree, the label holder computes gradients and hessians exactly as the centralized
//!    trainer does ([`fedcredit_models::gbdt::gradient_pair`], the same row and feature
//!    sampling stream), encrypts `(g, h)` of every active row packed in one plaintext
//!    (fixed point, room for the sums) and streams them to the feature holders. Level by level,
//!    each feature holder sums the ciphertexts per bin of its columns over the rows of the nodes
//!    the label holder wants (the smaller child of each split: the other is the parent minus it,
//!    taken by the label holder in plaintext after decryption), compresses the sums into few
//!    ciphertexts, rerandomizes them and sends them back with each bin's row count in plaintext
//!    (the label holder would decrypt the counts anyway). The label holder decrypts, adds its
//!    own plaintext histograms and grows the level with the centralized
//!    [`fedcredit_models::gbdt::TreeGrowth`], so the split kernel is the centralized one.
//! 4. A split on a feature holder's column: the label holder tells that holder which of its
//!    (feature, bin rule) candidates won; the holder keeps the rule under a split id and
//!    returns the row partition of the node. The label holder sends every feature holder the
//!    partitions of the level and the nodes it wants next.
//! 5. A finished tree: the label holder adds the leaf values to every aligned row's score (it
//!    knows every row's leaf from the partitions), reports the validation figures and sends the
//!    tree's shape (owners of the splits, no threshold, no value) to the feature holders, which
//!    keep it and confirm; then every party checkpoints the tree.
//!
//! What each party keeps and how a row is scored is in [`part`]. The leakage (see
//! ARCHITECTURE.md): a feature holder learns the active rows of each tree, the row partitions
//! of every node and which of its own candidates won, never a gradient, a label or another
//! party's split; the label holder learns per-bin sums of gradients, hessians and rows of the
//! feature holders' columns over its nodes and the bin index of a winning candidate, never a
//! bin edge or a value; the coordinator relays sealed bytes and learns the per-tree figures.
//!
//! A feature holder checks what it is asked: payloads only from the job's label holder, trees
//! in order and at most the job's count, nodes no deeper than the job's depth, and no
//! histogram or partition of fewer than `min_data_in_leaf` active rows (so a
//! deviating label holder cannot read single rows' bins).

pub mod holder;
pub mod label;
pub mod local;
pub mod part;

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_models::gbdt::GbdtParams;
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::model::VerticalModelRef;
use super::{
    PartyCtx, StageConductor, StageCtx, StageDone, StageOutbox, StageResult, StageRole,
    StageRoleOut,
};
use crate::horizontal::ModelSpec;
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Progress, Rejection, RoleError};

/// Name of a party's training state in [`PartyCtx::kept`] (trees committed so far).
pub const KEPT_STATE: &str = "secureboost";

/// Ciphertexts per relayed message.
pub const CTS_PER_MESSAGE: usize = 4096;

/// Fractional bits of the fixed-point gradients and hessians: the centralized trainer's grid.
pub const FRAC_BITS: u32 = fedcredit_models::gbdt::GRAD_FRAC_BITS;

/// `[vertical.secureboost]` in `job.toml`: options of vertical GBDT beyond the model's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbParams {
    /// Gradient-based one-side sampling (SecureBoost+): each tree keeps the `goss_top` share
    /// of training rows with the largest |gradient| and a `goss_other` share of the rest,
    /// weighted up; the feature holders sum only those rows. Default off.
    #[serde(default)]
    pub goss: bool,
    /// Share of rows kept by gradient; default 0.2.
    #[serde(default = "default_goss_top")]
    pub goss_top: f64,
    /// Share of the other rows drawn at random; default 0.1.
    #[serde(default = "default_goss_other")]
    pub goss_other: f64,
    /// The first this many trees use the label holder's columns only (no encryption, nothing
    /// sent); default 0.
    #[serde(default)]
    pub label_only_trees: u32,
    /// Stop after this many trees without a better validation log loss and keep the best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_rounds: Option<usize>,
}

fn default_goss_top() -> f64 {
    0.2
}

fn default_goss_other() -> f64 {
    0.1
}

impl Default for SbParams {
    fn default() -> Self {
        Self {
            goss: false,
            goss_top: default_goss_top(),
            goss_other: default_goss_other(),
            label_only_trees: 0,
            early_stopping_rounds: None,
        }
    }
}

impl SbParams {
    /// Checks ranges; `Err((key, reason))`.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(self.goss_top > 0.0 && self.goss_top < 1.0) {
            return Err(("goss_top".into(), format!("is {}; must be in (0, 1)", self.goss_top)));
        }
        if !(self.goss_other > 0.0 && self.goss_top + self.goss_other <= 1.0) {
            return Err((
                "goss_other".into(),
                format!("is {}; must be > 0 with goss_top + goss_other <= 1", self.goss_other),
            ));
        }
        if self.early_stopping_rounds == Some(0) {
            return Err(("early_stopping_rounds".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// The largest weight GOSS gives a row.
    pub fn max_weight(&self) -> f64 {
        if self.goss { ((1.0 - self.goss_top) / self.goss_other).max(1.0) } else { 1.0 }
    }
}

/// The model parameters of job `spec` (its `[model]`, a `gbdt`).
///
/// # Errors
/// A message when the job is not a GBDT job.
pub fn gbdt_params(spec: &JobSpec) -> Result<GbdtParams, String> {
    match &spec.model {
        ModelSpec::Gbdt(g) => Ok(g.params()),
        other => Err(format!("a {} job has no secureboost stage", other.kind())),
    }
}

/// The stage options of job `spec`.
pub fn sb_params(spec: &JobSpec) -> SbParams {
    spec.vertical.as_ref().map(|v| v.secureboost).unwrap_or_default()
}

/// Bits `b[i]` packed eight to a byte, least significant first.
pub fn pack_bits(bits: impl IntoIterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, b) in bits.into_iter().enumerate() {
        if i % 8 == 0 {
            out.push(0);
        }
        if b && let Some(last) = out.last_mut() {
            *last |= 1 << (i % 8);
        }
    }
    out
}

/// Bit `i` of a packed bitmap.
pub fn bit(bytes: &[u8], i: usize) -> bool {
    bytes.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)
}

/// The rows of each open node of a tree (aligned row indices, ascending), as every party
/// tracks them from the partitions.
#[derive(Debug, Clone, Default)]
pub struct NodeRows {
    rows: BTreeMap<u32, Vec<u32>>,
    depth: BTreeMap<u32, usize>,
}

impl NodeRows {
    /// Every one of `n` rows at the root.
    pub fn root(n: usize) -> Self {
        Self {
            rows: BTreeMap::from([(0, (0..n as u32).collect())]),
            depth: BTreeMap::from([(0, 0)]),
        }
    }

    /// The rows of `node`, if it is open.
    pub fn get(&self, node: u32) -> Option<&[u32]> {
        self.rows.get(&node).map(Vec::as_slice)
    }

    /// The depth of `node`.
    pub fn depth(&self, node: u32) -> Option<usize> {
        self.depth.get(&node).copied()
    }

    /// Open nodes and their rows.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.rows.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// Splits `node` into `left` (rows whose bit is set) and `right`.
    ///
    /// # Errors
    /// When the node is not open, a child exists already or the bitmap does not fit.
    pub fn split(&mut self, node: u32, left: u32, right: u32, bits: &[u8]) -> Result<(), String> {
        if left == right || self.rows.contains_key(&left) || self.rows.contains_key(&right) {
            return Err(format!("node {node}: children {left}, {right} are not new"));
        }
        let Some(rows) = self.rows.get(&node) else {
            return Err(format!("node {node} is not an open node"));
        };
        if bits.len() != rows.len().div_ceil(8) {
            return Err(format!(
                "node {node}: a partition of {} bytes for {} rows",
                bits.len(),
                rows.len()
            ));
        }
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for (i, &row) in rows.iter().enumerate() {
            if bit(bits, i) { l.push(row) } else { r.push(row) }
        }
        let d = self.depth.get(&node).copied().unwrap_or(0) + 1;
        self.rows.remove(&node);
        self.rows.insert(left, l);
        self.rows.insert(right, r);
        self.depth.insert(left, d);
        self.depth.insert(right, d);
        Ok(())
    }
}

/// A party's side of the secureboost stage.
#[derive(Debug, Default)]
pub struct SbRole {
    side: Option<Side>,
}

#[derive(Debug)]
enum Side {
    Label(Box<label::LabelSide>),
    Holder(Box<holder::HolderSide>),
}

impl SbRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks a start against the job the party accepted.
fn check_start(ctx: &PartyCtx<'_>, s: &pb::SbStart) -> Result<GbdtParams, RoleError> {
    let err = |why: String| RoleError(format!("{}: {why}", ctx.me));
    let params = gbdt_params(ctx.spec).map_err(err)?;
    if s.trees as usize != params.n_trees || s.max_depth as usize != params.max_depth {
        return Err(err(format!(
            "asked for {} trees of depth {} where the job says {} of depth {}",
            s.trees, s.max_depth, params.n_trees, params.max_depth
        )));
    }
    if s.label_holder != ctx.vertical.label_holder.0 {
        return Err(err(format!(
            "asked to train with {} as label holder where the job names {}",
            s.label_holder, ctx.vertical.label_holder
        )));
    }
    Ok(params)
}

impl StageRole for SbRole {
    fn receive(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let pb::vertical_step::Body::Secureboost(pb::SbStep { body: Some(body) }) = msg else {
            return Err(RoleError("not a message of the secureboost stage".into()));
        };
        let pb::sb_step::Body::Start(start) = body;
        if self.side.is_some() {
            return Err(RoleError(format!("{}: the secureboost stage started twice", ctx.me)));
        }
        let params = check_start(ctx, &start)?;
        self.side = Some(if *ctx.me == ctx.vertical.label_holder {
            Side::Label(Box::new(label::LabelSide::start(ctx, params, rng, out)?))
        } else {
            Side::Holder(Box::new(holder::HolderSide::start(ctx, params, out)?))
        });
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
        let pb::vertical_payload::Body::Secureboost(pb::SbPayload { body: Some(body) }) = msg
        else {
            return Err(RoleError(format!("{from} sent a payload that is not for secureboost")));
        };
        match self.side.as_mut() {
            Some(Side::Label(s)) => s.payload(ctx, from, body, rng, out),
            Some(Side::Holder(s)) => s.payload(ctx, from, body, rng, out),
            None => Err(RoleError("the secureboost stage has not started".into())),
        }
    }

    fn finished(&self) -> bool {
        match &self.side {
            Some(Side::Label(s)) => s.is_done(),
            Some(Side::Holder(s)) => s.is_done(),
            None => false,
        }
    }
}

/// A report of the stage.
fn report(out: &mut StageRoleOut<'_>, body: pb::sb_report::Body) {
    out.report(pb::vertical_report::Body::Secureboost(pb::SbReport { body: Some(body) }));
}

/// A payload of the stage to `to`.
fn send(out: &mut StageRoleOut<'_>, to: &[PartyId], body: pb::sb_payload::Body) {
    out.payload(to, pb::vertical_payload::Body::Secureboost(pb::SbPayload { body: Some(body) }));
}

/// The coordinator's side of the secureboost stage: opens it, records the label holder's
/// per-tree figures as the job's progress, and registers a [`VerticalModelRef`] once every
/// party has kept its part.
#[derive(Debug)]
pub struct SbConductor {
    trees: u32,
    max_depth: u32,
    label: PartyId,
    rows: u64,
    waiting: BTreeSet<PartyId>,
    splits: BTreeMap<PartyId, u32>,
    kept_trees: Option<u32>,
    last: Option<pb::SbTreeDone>,
}

impl SbConductor {
    /// The stage of job `spec` after stages `done`.
    ///
    /// # Errors
    /// A message when the job is not a vertical GBDT job or the alignment has not finished.
    pub fn new(spec: &JobSpec, done: &[StageDone]) -> Result<Self, String> {
        let vertical = spec.vertical.as_ref().ok_or("not a vertical job")?;
        let params = gbdt_params(spec)?;
        let rows = done
            .iter()
            .find_map(|d| match d.result {
                StageResult::Aligned { rows } => Some(rows),
                _ => None,
            })
            .ok_or("the secureboost stage needs the alignment first")?;
        Ok(Self {
            trees: u32::try_from(params.n_trees).unwrap_or(u32::MAX),
            max_depth: u32::try_from(params.max_depth).unwrap_or(u32::MAX),
            label: vertical.label_holder.clone(),
            rows,
            waiting: BTreeSet::new(),
            splits: BTreeMap::new(),
            kept_trees: None,
            last: None,
        })
    }

    fn finish(&self, ctx: &StageCtx<'_>, out: &mut StageOutbox) {
        let mut metrics = BTreeMap::new();
        if let Some(e) = self.last.as_ref().filter(|e| e.auc.is_finite()) {
            metrics.insert("valid_auc".to_string(), e.auc);
            metrics.insert("valid_ks".to_string(), e.ks);
            metrics.insert("valid_log_loss".to_string(), e.log_loss);
        }
        let kept = self.kept_trees.unwrap_or(0);
        metrics.insert("trees".to_string(), f64::from(kept));
        let reference =
            VerticalModelRef::of_stage(ctx, "gbdt", &self.splits, &metrics, self.rows, None);
        let what = match self.last.as_ref().filter(|e| e.auc.is_finite()) {
            Some(e) => format!(
                "gbdt trained over {} parties, {kept} trees; validation AUC {:.4}, KS {:.4}",
                ctx.parties.len(),
                e.auc,
                e.ks
            ),
            None => format!("gbdt trained over {} parties, {kept} trees", ctx.parties.len()),
        };
        out.model_done(what, metrics, &reference);
    }
}

impl StageConductor for SbConductor {
    fn start(&mut self, ctx: &StageCtx<'_>, out: &mut StageOutbox) -> Result<(), String> {
        for p in ctx.parties {
            out.send(
                p,
                pb::vertical_step::Body::Secureboost(pb::SbStep {
                    body: Some(pb::sb_step::Body::Start(pb::SbStart {
                        trees: self.trees,
                        max_depth: self.max_depth,
                        label_holder: self.label.0.clone(),
                    })),
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
        let pb::vertical_report::Body::Secureboost(pb::SbReport { body: Some(body) }) = report
        else {
            return Err(Rejection::rejected("not a report of the secureboost stage"));
        };
        if !self.waiting.contains(from) {
            return Err(Rejection::rejected(format!("{from} has already finished the stage")));
        }
        match body {
            pb::sb_report::Body::Tree(t) => {
                if *from != self.label {
                    return Err(Rejection::rejected(format!("{from} does not hold the label")));
                }
                if t.trees == 0 || t.trees > self.trees {
                    return Err(Rejection::rejected(format!(
                        "tree {} reported of {}",
                        t.trees, self.trees
                    )));
                }
                self.last = Some(t);
            }
            pb::sb_report::Body::Done(d) => {
                if *from == self.label {
                    self.kept_trees = Some(d.trees);
                }
                self.splits.insert(from.clone(), d.splits);
                self.waiting.remove(from);
                if self.waiting.is_empty() {
                    self.finish(ctx, out);
                }
            }
        }
        Ok(())
    }

    fn pending(&self) -> Vec<PartyId> {
        self.waiting.iter().cloned().collect()
    }

    fn status(&self) -> String {
        match &self.last {
            Some(e) if e.auc.is_finite() => {
                format!("gbdt: tree {}/{} (validation AUC {:.4})", e.trees, self.trees, e.auc)
            }
            Some(e) => format!("gbdt: tree {}/{}", e.trees, self.trees),
            None => format!("gbdt: tree 0/{}", self.trees),
        }
    }

    fn progress(&self) -> Option<Progress> {
        Some(Progress {
            stage: self.status(),
            done: self.last.as_ref().map_or(0, |e| u64::from(e.trees)),
            total: u64::from(self.trees),
            loss: self.last.as_ref().map(|e| e.log_loss).filter(|l| l.is_finite()),
            valid_auc: self.last.as_ref().map(|e| e.auc).filter(|a| a.is_finite()),
        })
    }
}

#[cfg(test)]
mod tests;
