//! Vertical logistic regression by two-party secret sharing with the coordinator as dealer:
//! the three roles as sans-IO state machines exchanging typed messages ([`LrMsg`]).
//!
//! # Roles
//!
//! - The **label holder** `L` (the bank) holds the label and its own columns (plus the
//!   intercept, a column of ones).
//! - The **feature holders** `F₁, …, F_k` hold columns. `F₁` (the first in the job's order)
//!   computes the sigmoid with `L`; every other feature holder pairs with `L` for its own
//!   products and hands its shares to `F₁`.
//! - The **dealer** (the coordinator) deals correlated randomness: seeds once, and per step the
//!   correcting shares of the triples ([`fedcredit_crypto::mpc`]). It learns the shapes
//!   (rows, encoded columns per party) and the step count, nothing else.
//!
//! Each party standardizes its own columns with its own statistics (the centralized encoder of
//! [`LinearEncoder`] restricted to its columns: columns are partitioned, so no pooling is
//! needed) and clips them to `±clip` (the polynomial sigmoid needs moderate logits).
//!
//! # One step (a mini-batch of rows `B`, `m` rows)
//!
//! Every party `p` owns its encoded matrix `X_p`; its coefficients `w_p` are shared between `p`
//! and its **partner** (`F₁` for `L`, `L` for every `F_j`), so a pair always contains `L`;
//! `L` is side `P0` of every pair. The masked matrix `E_p = X_p − A_p` went to the partner once.
//!
//! 1. The partner sends `w_p`'s share masked by a fresh dealer vector; both end with shares of
//!    `u_p = X_{p,B}·w_p` (matrix triple).
//! 2. Logits `z = Σ u_p`: `L` sums its shares; each `F_j` (`j ≥ 2`) sends its share to `F₁`
//!    (uniform on its own), which sums. `L` and `F₁` truncate: `z` is shared between them.
//! 3. `σ(z)` by the degree-13 polynomial in four Beaver rounds between `L` and `F₁`;
//!    `L` subtracts the labels from its share: residuals `d = σ − y`, shared (with class
//!    weights, one more Beaver product by `L`'s per-row weights: `d = c ⊙ (σ − y)`). `F₁` hands its
//!    share to every `F_j` (`j ≥ 2`), which then shares `d` with `L`.
//! 4. The partner sends its share of `d` masked; both end with shares of `X_{p,B}ᵀ·d`
//!    (matrix triple, the same mask `A_p`), and update their shares of
//!    `v_p ← μ·v_p − η_t·(X_{p,B}ᵀ d / m + λ·w_p)`, `w_p ← w_p + v_p` locally (heavy-ball
//!    momentum; `λ = 1/(C·n)`, none on the intercept).
//!
//! With validation rows (the same aligned rows at every party, after the training rows), each
//! epoch ends with a validation step: step 1 over those rows, then `F₁` sends `L` its share of
//! the joint logits, and `L` opens them and computes AUC, KS and log loss ([`EpochReport`]).
//!
//! After the last step each partner sends the owner its share of `w_p`: the owner, and only
//! the owner, learns its coefficients.
//!
//! # What each role sees (semi-honest parties, a dealer that colludes with no party)
//!
//! | role | receives | never sees |
//! |---|---|---|
//! | label holder `L` | from the dealer: seeds (its mask `A_L`, the vector masks of the matrices it partners, its triple seed) and corrections `c₁` (uniform: offset by the owner's `c₀`); from each `F_j`: `E_j = X_j − A_j` once (uniform); from `F₁`: masked shares `w − b`, `d − b′` and sigmoid openings (uniform), at each epoch's validation step `F₁`'s share of the joint validation logits, which it opens (the scores it would serve), and at the end `F₁`'s share of `w_L` | other parties' features, partial logits, gradients or coefficients; residuals and predictions on training rows (they stay shared) |
//! | first feature holder `F₁` | from the dealer: seeds and corrections (uniform); from `L`: `E_L` once, masked shares, sigmoid openings (uniform), at the end `L`'s share of `w_{F₁}`; from `F_j`: their logit shares (uniform: `L` holds the other share) | labels, residuals, predictions, gradients, other parties' coefficients |
//! | other feature holder `F_j` | from the dealer: its seed; from `L`: masked shares (uniform), at the end `L`'s share of `w_j`; from `F₁`: `F₁`'s residual share (uniform: `L` holds the other) | as `F₁` |
//! | dealer (coordinator) | each party's shape (aligned rows, encoded columns: for a text column, how many levels are kept) and the label holder's step requests | any value derived from rows, labels, weights or gradients (it sends, never receives, ring values) |
//!
//! Shapes are also visible to the partner (the size of `E`). Each party learns its own
//! coefficients at the end, and the label holder the joint scores it serves; with one feature
//! holder, a served score minus the label holder's part is the feature holder's part. The
//! scheme relies on non-collusion: the dealer together with any party, or `L` together with
//! `F₁`, can reconstruct what the shares hide (the dealer knows `A_p`, so with `p`'s partner it
//! recovers `X_p` from `E_p`). Party-to-party messages travel sealed through the coordinator,
//! which relays bytes it cannot read. Masks are ChaCha20 keystreams under HKDF-derived seeds,
//! never a statistical generator.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use fedcredit_crypto::mpc::beaver::{Mul, Opening, Triple, TripleDealer};
use fedcredit_crypto::mpc::matrix::{MatrixDealer, MatrixOwner, MatrixPartner};
use fedcredit_crypto::mpc::sigmoid::{self, Sigmoid};
use fedcredit_crypto::mpc::{
    self, Elem, Fixed, MpcError, Seed, Side, add_assign, encode_bits, matvec, matvec_t, sub_assign,
    truncate,
};
use fedcredit_models::binning::Binner;
use fedcredit_models::logistic::ClassWeight;
use fedcredit_models::preprocess::{EncoderOptions, LinearEncoder};
use fedcredit_models::{Features, ModelError};
use ndarray::Array2;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, PartyId};

/// Fractional bits of the constants `η/m` and `η·λ` (more than the data's: `η/m` is small).
const CONST_BITS: u32 = 40;

/// Steps a message may run ahead of its receiver (the dealer may deal one step ahead).
const AHEAD: u64 = 2;

/// Why the protocol cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LrError {
    /// A secret-sharing step failed (a message of the wrong length, …).
    #[error("secret sharing: {0}")]
    Mpc(#[from] MpcError),
    /// A message that does not fit the protocol (wrong sender, step or role).
    #[error("{0}")]
    Protocol(String),
    /// The party's table cannot be encoded.
    #[error("encoding the party's columns: {0}")]
    Model(#[from] ModelError),
    /// Parameters out of range.
    #[error("invalid parameter: {0}")]
    Params(String),
}

fn protocol<T>(msg: impl Into<String>) -> Result<T, LrError> {
    Err(LrError::Protocol(msg.into()))
}

/// Hyper-parameters (the same at every role: they come from the job spec).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LrParams {
    /// Passes over the rows.
    pub epochs: u32,
    /// Rows per step; `0` (the default) picks a thirty-second of the training rows within
    /// `[64, 8192]`: 32 steps an epoch (with 1024-row steps a 6,400-row table gets 7 steps an
    /// epoch and 10 epochs stop 0.016 AUC short of the centralized optimum; in plaintext
    /// descent with this momentum on 80,000 rows × 330 columns, 1024-row steps ended 0.007 AUC
    /// below the optimum and 2,500-row ones 0.0005).
    pub batch_size: usize,
    /// Step size `η₀`; at epoch `e`, `η = η₀ / (1 + decay·e)`.
    pub learning_rate: f64,
    /// Decay of the step size per epoch.
    pub decay: f64,
    /// Heavy-ball momentum `μ` (`v ← μ·v − η·∇`, `w ← w + v`; 0 is plain gradient descent).
    /// With 0.9 and `η₀ = 0.2` ten epochs reach the centralized optimum's AUC where plain
    /// descent with `η₀ = 1` stops short on imbalanced tables.
    pub momentum: f64,
    /// Inverse L2 strength as in the centralized `logistic` (`Σℓ + ‖β‖²/(2C)`).
    pub c: f64,
    /// Standardized columns are clipped to `±clip`.
    pub clip: f64,
    /// Fractional bits of the fixed-point code.
    pub frac_bits: u32,
    /// Class weights (known to the label holder only; applied in shares).
    pub class_weight: ClassWeight,
}

impl Default for LrParams {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 0,
            learning_rate: 0.2,
            decay: 0.2,
            momentum: 0.9,
            c: 1.0,
            clip: 4.0,
            frac_bits: 20,
            class_weight: ClassWeight::None,
        }
    }
}

impl LrParams {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`LrError::Params`] naming the parameter.
    pub fn validate(&self) -> Result<(), LrError> {
        let bad = |s: String| Err(LrError::Params(s));
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad(format!("epochs is {}; must be within 1..=10000", self.epochs));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 100.0)
        {
            return bad(format!("learning_rate is {}; must be in (0, 100]", self.learning_rate));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!("momentum is {}; must be in [0, 1)", self.momentum));
        }
        if !(self.decay.is_finite() && self.decay >= 0.0) {
            return bad(format!("decay is {}; must be ≥ 0", self.decay));
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return bad(format!("c is {}; must be > 0", self.c));
        }
        if !(self.clip.is_finite() && self.clip > 0.0 && self.clip <= 64.0) {
            return bad(format!("clip is {}; must be in (0, 64]", self.clip));
        }
        if let ClassWeight::Custom { negative, positive } = self.class_weight
            && ![negative, positive].iter().all(|w| w.is_finite() && *w > 0.0 && *w <= 1e6)
        {
            return bad("class_weight must have weights within (0, 1e6]".into());
        }
        if !(8..=32).contains(&self.frac_bits) {
            return bad(format!("frac_bits is {}; must be within 8..=32", self.frac_bits));
        }
        Ok(())
    }
}

/// The public schedule: which rows each step covers and its step size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rows: usize,
    valid: usize,
    batch: usize,
    /// Training steps per epoch.
    batches: u64,
    params: LrParams,
    /// Epochs trained before this job (a warm start): the step size decays from there.
    epochs_before: u32,
}

impl Schedule {
    /// The schedule of `params` over `rows` training rows, then `valid` validation rows (the
    /// matrices hold both, training rows first).
    pub fn new(params: &LrParams, rows: usize, valid: usize) -> Self {
        let batch = match params.batch_size {
            0 => (rows / 32).clamp(64, 8192),
            b => b,
        }
        .min(rows)
        .max(1);
        let batches = rows.div_ceil(batch).max(1) as u64;
        Self { rows, valid, batch, batches, params: *params, epochs_before: 0 }
    }

    /// The same schedule continuing a model trained for `epochs` epochs: its step sizes are
    /// those of epochs `epochs`, `epochs + 1`, …
    pub fn after(self, epochs: u32) -> Self {
        Self { epochs_before: epochs, ..self }
    }

    /// Steps in all.
    pub fn steps(&self) -> u64 {
        self.per_epoch() * u64::from(self.params.epochs)
    }

    /// Steps per epoch: the training batches, then a validation step when there are
    /// validation rows.
    pub fn per_epoch(&self) -> u64 {
        self.batches + u64::from(self.valid > 0)
    }

    /// Whether step `step` scores the validation rows (the epoch's last step).
    pub fn is_validation(&self, step: u64) -> bool {
        self.valid > 0 && step % self.per_epoch() == self.batches
    }

    /// The epoch of step `step`, from 0.
    pub fn epoch(&self, step: u64) -> u64 {
        step / self.per_epoch()
    }

    /// The rows of step `step` (contiguous in the agreed row order, which alignment made
    /// pseudorandom); a validation step covers the validation rows.
    pub fn rows(&self, step: u64) -> Range<usize> {
        if self.is_validation(step) {
            return self.rows..self.rows + self.valid;
        }
        let b = (step % self.per_epoch()) as usize;
        let start = b * self.batch;
        start.min(self.rows)..(start + self.batch).min(self.rows)
    }

    /// The step size of step `step`: `η₀ / (1 + decay·e)` in epoch `e` (counting the epochs
    /// of a warm start's model), ramped up linearly over the steps of a cold start's first
    /// epoch. Without the ramp, momentum 0.9 from zero overshot: on 100,000 rows × 330 columns
    /// the first epoch left validation logits at −14 … −15, past the range of the sigmoid
    /// polynomial (`sigmoid::RANGE`), and the model diverged in most runs over processes; in a
    /// plaintext replay of the descent the ramp keeps them within 9.4 after the first epoch
    /// (13.8–14.1 without) and ends at the same AUC.
    pub fn eta(&self, step: u64) -> f64 {
        let epoch = self.epoch(step) + u64::from(self.epochs_before);
        let eta = self.params.learning_rate / (1.0 + self.params.decay * epoch as f64);
        if epoch == 0 {
            let b = step % self.per_epoch();
            eta * (b + 1).min(self.batches) as f64 / self.batches as f64
        } else {
            eta
        }
    }
}

/// The label holder's view of an epoch: figures on the validation rows from the joint scores,
/// which it may see (it serves them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Validation AUC.
    pub auc: f64,
    /// Validation KS.
    pub ks: f64,
    /// Validation log loss (exact sigmoid on the joint scores).
    pub log_loss: f64,
}

/// Where a message goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Node {
    /// The coordinator as dealer.
    Dealer,
    /// A party.
    Party(PartyId),
}

/// The dealer's per-step corrections for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corrections {
    /// For each matrix the recipient partners, by owner: `c₁` of the forward product.
    pub forward: BTreeMap<PartyId, Vec<Elem>>,
    /// Same for the backward product.
    pub backward: BTreeMap<PartyId, Vec<Elem>>,
    /// The Beaver triple corrections of the sigmoid's three rounds and, with class weights,
    /// of the weighting product (to `F₁` only).
    pub sigmoid: Vec<Vec<Elem>>,
}

/// The protocol's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LrMsg {
    /// Party → dealer: the shape of its encoded matrix.
    Shape {
        /// Training rows (aligned).
        rows: u64,
        /// Validation rows (aligned, after the training rows).
        valid: u64,
        /// Encoded columns (the label holder's intercept included).
        cols: u64,
    },
    /// Label holder → dealer: deal step `step`.
    Need {
        /// The step.
        step: u64,
    },
    /// Dealer → party, once: its seeds.
    Seeds {
        /// For the matrix the recipient owns.
        owner: Seed,
        /// For the matrices it partners, by owner.
        partner: BTreeMap<PartyId, Seed>,
        /// For the sigmoid's triples (label holder and `F₁` only).
        beaver: Option<Seed>,
    },
    /// Dealer → party: the corrections of step `step`.
    Deal {
        /// The step.
        step: u64,
        /// The corrections.
        corrections: Corrections,
    },
    /// Owner → partner, once: `E = X − A`, row-major.
    Masked {
        /// The masked matrix.
        e: Vec<Elem>,
    },
    /// Partner → owner: its weight share masked for step `step`.
    ForwardOpen {
        /// The step.
        step: u64,
        /// `w − b`.
        f: Vec<Elem>,
    },
    /// `F_j` → `F₁`: its share of `u_j` (untruncated); on a validation step also `F₁` → `L`:
    /// its share of the joint validation logits (truncated), which `L` opens.
    LogitShare {
        /// The step.
        step: u64,
        /// The share.
        share: Vec<Elem>,
    },
    /// Label holder ↔ `F₁`: a sigmoid round's opening.
    SigmoidOpen {
        /// The step.
        step: u64,
        /// The round (0, 1, 2).
        round: u64,
        /// `(x − a, y − b)` shares.
        opening: Opening,
    },
    /// `F₁` → `F_j`: its share of the residuals.
    ResidualShare {
        /// The step.
        step: u64,
        /// The share.
        share: Vec<Elem>,
    },
    /// Partner → owner: its residual share masked for step `step`.
    BackwardOpen {
        /// The step.
        step: u64,
        /// `d − b′`.
        f: Vec<Elem>,
    },
    /// Partner → owner, at the end: its share of the owner's coefficients.
    FinalShare {
        /// The share.
        share: Vec<Elem>,
    },
}

impl LrMsg {
    /// Name, for errors and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            LrMsg::Shape { .. } => "shape",
            LrMsg::Need { .. } => "need",
            LrMsg::Seeds { .. } => "seeds",
            LrMsg::Deal { .. } => "deal",
            LrMsg::Masked { .. } => "masked",
            LrMsg::ForwardOpen { .. } => "forward-open",
            LrMsg::LogitShare { .. } => "logit-share",
            LrMsg::SigmoidOpen { .. } => "sigmoid-open",
            LrMsg::ResidualShare { .. } => "residual-share",
            LrMsg::BackwardOpen { .. } => "backward-open",
            LrMsg::FinalShare { .. } => "final-share",
        }
    }

    /// Every ring vector the message carries (for transcript checks).
    pub fn vectors(&self) -> Vec<&[Elem]> {
        match self {
            LrMsg::Shape { .. } | LrMsg::Need { .. } | LrMsg::Seeds { .. } => Vec::new(),
            LrMsg::Deal { corrections: c, .. } => c
                .forward
                .values()
                .chain(c.backward.values())
                .chain(&c.sigmoid)
                .map(Vec::as_slice)
                .collect(),
            LrMsg::Masked { e } => vec![e],
            LrMsg::ForwardOpen { f, .. } | LrMsg::BackwardOpen { f, .. } => vec![f],
            LrMsg::LogitShare { share, .. }
            | LrMsg::ResidualShare { share, .. }
            | LrMsg::FinalShare { share } => vec![share],
            LrMsg::SigmoidOpen { opening, .. } => vec![&opening.e, &opening.f],
        }
    }
}

/// What a role asks to send.
pub type Sends = Vec<(Node, LrMsg)>;

/// The roster: label holder and feature holders in the job's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// The label holder.
    pub label: PartyId,
    /// The feature holders; the first computes the sigmoid with the label holder.
    pub features: Vec<PartyId>,
}

impl Roster {
    /// Checks there is at least one feature holder and no party twice.
    ///
    /// # Errors
    /// [`LrError::Params`].
    pub fn new(label: PartyId, features: Vec<PartyId>) -> Result<Self, LrError> {
        if features.is_empty() {
            return Err(LrError::Params("vertical LR needs at least one feature holder".into()));
        }
        let mut all = features.clone();
        all.push(label.clone());
        all.sort();
        all.dedup();
        if all.len() != features.len() + 1 {
            return Err(LrError::Params("a party appears twice in the roster".into()));
        }
        Ok(Self { label, features })
    }

    /// `F₁`.
    fn first(&self) -> &PartyId {
        &self.features[0]
    }

    /// The partner of `owner`'s matrix.
    pub fn partner_of(&self, owner: &PartyId) -> &PartyId {
        if *owner == self.label { self.first() } else { &self.label }
    }

    /// Every party, label holder first.
    pub fn parties(&self) -> impl Iterator<Item = &PartyId> {
        std::iter::once(&self.label).chain(&self.features)
    }

    fn contains(&self, p: &PartyId) -> bool {
        self.parties().any(|q| q == p)
    }
}

// ---------------------------------------------------------------------------------------------
// Dealer

/// The coordinator's role: dealer of correlated randomness.
#[derive(Debug)]
pub struct Dealer {
    roster: Roster,
    params: LrParams,
    root: Seed,
    shapes: BTreeMap<PartyId, (usize, usize, usize)>,
    matrices: BTreeMap<PartyId, MatrixDealer>,
    beaver: TripleDealer,
    schedule: Option<Schedule>,
    dealt: Option<u64>,
}

impl Dealer {
    /// The dealer of a job, with a fresh root from a cryptographic generator.
    ///
    /// # Errors
    /// [`LrError::Params`] on bad parameters.
    pub fn new<R: CryptoRng + ?Sized>(
        roster: Roster,
        params: LrParams,
        rng: &mut R,
    ) -> Result<Self, LrError> {
        params.validate()?;
        let root = Seed::random(rng);
        let beaver = TripleDealer::new(&root.derive(b"lr/beaver"));
        Ok(Self {
            roster,
            params,
            root,
            shapes: BTreeMap::new(),
            matrices: BTreeMap::new(),
            beaver,
            schedule: None,
            dealt: None,
        })
    }

    /// Handles a party's message.
    ///
    /// # Errors
    /// [`LrError`] when the message does not fit (nothing changed then).
    pub fn handle(&mut self, from: &Node, msg: LrMsg) -> Result<Sends, LrError> {
        let Node::Party(from) = from else {
            return protocol("the dealer takes messages from parties only");
        };
        if !self.roster.contains(from) {
            return protocol(format!("{from} is not a party of this job"));
        }
        match msg {
            LrMsg::Shape { rows, valid, cols } => self.shape(from, rows, valid, cols),
            LrMsg::Need { step } => {
                if *from != self.roster.label {
                    return protocol(format!("{from} may not ask for a step"));
                }
                self.deal(step)
            }
            other => protocol(format!("the dealer does not take {} messages", other.kind())),
        }
    }

    fn shape(
        &mut self,
        from: &PartyId,
        rows: u64,
        valid: u64,
        cols: u64,
    ) -> Result<Sends, LrError> {
        let rows = usize::try_from(rows).map_err(|_| LrError::Protocol("too many rows".into()))?;
        let valid =
            usize::try_from(valid).map_err(|_| LrError::Protocol("too many rows".into()))?;
        let cols = usize::try_from(cols).map_err(|_| LrError::Protocol("too many cols".into()))?;
        let total = rows.checked_add(valid).ok_or(LrError::Protocol("too many rows".into()))?;
        if rows == 0 || cols == 0 || total.checked_mul(cols).is_none_or(|c| c > 1 << 31) {
            return protocol(format!("{from}: a {rows} × {cols} matrix cannot be dealt"));
        }
        if self.shapes.contains_key(from) {
            return protocol(format!("{from} sent its shape twice"));
        }
        if let Some((r, v, _)) = self.shapes.values().next()
            && (*r, *v) != (rows, valid)
        {
            return protocol(format!(
                "{from} has {rows} + {valid} aligned rows, another party {r} + {v}"
            ));
        }
        self.shapes.insert(from.clone(), (rows, valid, cols));
        if self.shapes.len() < self.roster.parties().count() {
            return Ok(Vec::new());
        }
        self.schedule = Some(Schedule::new(&self.params, rows, valid));
        let mut out = Vec::new();
        for (owner, (r, v, c)) in &self.shapes {
            let root = self.root.derive(format!("lr/matrix/{owner}").as_bytes());
            self.matrices.insert(owner.clone(), MatrixDealer::new(&root, r + v, *c));
        }
        for p in self.roster.parties() {
            let owner = self.matrices[p].owner_seed();
            let partner = self
                .matrices
                .iter()
                .filter(|(o, _)| self.roster.partner_of(o) == p)
                .map(|(o, m)| (o.clone(), m.partner_seed()))
                .collect();
            let beaver = if *p == self.roster.label {
                Some(self.beaver.seed(Side::P0))
            } else if p == self.roster.first() {
                Some(self.beaver.seed(Side::P1))
            } else {
                None
            };
            out.push((Node::Party(p.clone()), LrMsg::Seeds { owner, partner, beaver }));
        }
        Ok(out)
    }

    fn deal(&mut self, step: u64) -> Result<Sends, LrError> {
        let Some(schedule) = self.schedule else {
            return protocol("a step was asked before every party sent its shape");
        };
        if step >= schedule.steps() {
            return protocol(format!("step {step} is beyond the job's {}", schedule.steps()));
        }
        // Each step is dealt once, in order: a repeated step would reuse masks.
        if self.dealt.map_or(step != 0, |d| step != d + 1) {
            return protocol(format!("step {step} is not the next step to deal"));
        }
        self.dealt = Some(step);
        let rows = schedule.rows(step);
        let validation = schedule.is_validation(step);
        let mut per: BTreeMap<PartyId, Corrections> = BTreeMap::new();
        for (owner, m) in &self.matrices {
            let partner = self.roster.partner_of(owner).clone();
            let c = per.entry(partner).or_insert_with(|| Corrections {
                forward: BTreeMap::new(),
                backward: BTreeMap::new(),
                sigmoid: Vec::new(),
            });
            c.forward.insert(owner.clone(), m.forward(step, rows.clone())?);
            if !validation {
                c.backward.insert(owner.clone(), m.backward(step, rows.clone())?);
            }
        }
        let first = self.roster.first().clone();
        let rounds = if validation {
            0
        } else {
            sigmoid::ROUNDS + u64::from(self.params.class_weight != ClassWeight::None)
        };
        let sig = (0..rounds)
            .map(|k| {
                let len = if k < sigmoid::ROUNDS {
                    sigmoid::round_len(k, rows.len())
                } else {
                    rows.len()
                };
                self.beaver.correction(step, k, len)
            })
            .collect();
        per.entry(first)
            .or_insert_with(|| Corrections {
                forward: BTreeMap::new(),
                backward: BTreeMap::new(),
                sigmoid: Vec::new(),
            })
            .sigmoid = sig;
        Ok(per
            .into_iter()
            .map(|(p, corrections)| (Node::Party(p), LrMsg::Deal { step, corrections }))
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Parties

/// A party's encoded columns: how raw columns become the matrix it trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LocalEncoding {
    /// `logistic`: imputation, standardization and one-hot encoding fitted on the party's own
    /// rows (the centralized encoder restricted to its columns), clipped to `±clip`.
    Linear {
        /// The encoder.
        encoder: LinearEncoder,
        /// Standardized values are clipped to `±clip`.
        clip: f64,
    },
    /// `scorecard`: the WOE of the party's bins (from the federated WOE/IV stage), clipped to
    /// `±clip` as well (WOE beyond ±4 means a bin of a few rows of one class).
    Woe {
        /// The party's bins and their WOE.
        binner: Binner,
        /// WOE values are clipped to `±clip`.
        clip: f64,
    },
}

impl LocalEncoding {
    /// Fits the party's linear encoder on its own training rows.
    ///
    /// # Errors
    /// [`LrError::Model`] when the columns cannot be encoded.
    pub fn fit(features: &Features, clip: f64) -> Result<Self, LrError> {
        Ok(Self::Linear {
            encoder: LinearEncoder::fit(features, &EncoderOptions::default())?,
            clip,
        })
    }

    /// The encoded, clipped matrix.
    ///
    /// # Errors
    /// [`LrError::Model`] when the columns do not fit the encoder.
    pub fn transform(&self, features: &Features) -> Result<Array2<f64>, LrError> {
        let (mut x, clip) = match self {
            Self::Linear { encoder, clip } => (encoder.transform(features)?, *clip),
            Self::Woe { binner, clip } => (binner.transform_woe(features)?, *clip),
        };
        x.mapv_inplace(|v| v.clamp(-clip, clip));
        Ok(x)
    }
}

/// A party's part of the trained model: it stays at that party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrPart {
    /// The party.
    pub party: PartyId,
    /// Its encoding.
    pub encoding: LocalEncoding,
    /// One coefficient per encoded column.
    pub coefficients: Vec<f64>,
    /// The intercept (the label holder's part only).
    pub intercept: Option<f64>,
    /// Epochs trained, those of the model it was warm-started from included (0 in parts
    /// written before this was recorded).
    #[serde(default)]
    pub epochs: u32,
}

impl LrPart {
    /// This party's part of the log-odds of each row of `features` (its own columns).
    ///
    /// # Errors
    /// [`LrError::Model`] when the columns do not fit.
    pub fn partial_scores(&self, features: &Features) -> Result<Vec<f64>, LrError> {
        let x = self.encoding.transform(features)?;
        if x.ncols() != self.coefficients.len() {
            return Err(LrError::Params(format!(
                "{} coefficients for {} encoded columns",
                self.coefficients.len(),
                x.ncols()
            )));
        }
        let b = self.intercept.unwrap_or(0.0);
        Ok(x.rows()
            .into_iter()
            .map(|r| b + r.iter().zip(&self.coefficients).map(|(a, c)| a * c).sum::<f64>())
            .collect())
    }
}

/// What a party brings to the protocol.
#[derive(Debug, Clone, Copy)]
pub struct PartyData<'a> {
    /// Its columns over the aligned training rows.
    pub features: &'a Features,
    /// The 0/1 labels (label holder only).
    pub labels: Option<&'a [f64]>,
    /// Its columns over the aligned validation rows, if any.
    pub valid: Option<&'a Features>,
    /// Their labels (label holder only).
    pub valid_labels: Option<&'a [f64]>,
    /// A given encoding (a scorecard's WOE); by default the linear encoder fitted on its own
    /// training rows.
    pub encoding: Option<&'a LocalEncoding>,
    /// A warm start from a served model; zeros by default.
    pub initial: Option<WarmStart<'a>>,
}

/// Where a warm-started party begins: its part of the model the job starts from.
#[derive(Debug, Clone, Copy)]
pub struct WarmStart<'a> {
    /// Starting coefficients: one per encoded column, the label holder's intercept last. They
    /// are shared with the partner as `(β − r, r)` (`r` from `warm_mask`), so nobody else learns
    /// them.
    pub coefficients: &'a [f64],
    /// Epochs the part was trained for ([`LrPart::epochs`], the same in every part of one
    /// model): the step size continues its decay from there instead of restarting at `η₀`.
    pub epochs: u32,
}

/// The partner's starting share of an owner's coefficients in a warm start: `n` ring
/// elements from a seed hashed from the owner's masked matrix `E = X − A` (both hold it; the
/// dealer, who knows `A`, never sees it), so the owner's share `β − r` looks uniform.
fn warm_mask(e: &[Elem], n: usize) -> Vec<Elem> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"fedcredit/lr/warm-start/v1");
    for v in e.iter().take(1 << 16) {
        h.update(v.to_le_bytes());
    }
    Seed(h.finalize().into()).expand(n)
}

/// The party's matrix as owner.
#[derive(Debug)]
struct Own {
    mat: MatrixOwner,
    /// Encoded `X`, row-major.
    x: Vec<Elem>,
    /// This party's share of its own coefficients.
    w: Vec<Elem>,
    /// Its share of their velocity (momentum).
    v: Vec<Elem>,
}

/// A matrix the party partners.
#[derive(Debug)]
struct Partnered {
    mat: MatrixPartner,
    /// This party's share of the owner's coefficients.
    w: Vec<Elem>,
    /// Its share of their velocity (momentum).
    v: Vec<Elem>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for seeds and masked matrices.
    Setup,
    /// Step `t` begins.
    Start,
    /// Waiting for the forward cross terms.
    Forward,
    /// Sigmoid round open.
    Sigmoid(Box<Sigmoid>),
    /// The class-weight product open.
    Weighting(Box<Mul>),
    /// `F_j`: waiting for its residual share.
    Residual,
    /// Waiting for the backward cross terms; holds this party's residual share.
    Backward(Vec<Elem>),
    /// Waiting for the owner's coefficients.
    Final,
    /// Finished.
    Done,
}

/// A party's role (label holder or feature holder).
#[derive(Debug)]
pub struct Party {
    me: PartyId,
    span: tracing::Span,
    roster: Roster,
    params: LrParams,
    fx: Fixed,
    encoding: LocalEncoding,
    /// Rows of the matrices: training rows, then validation rows.
    rows: usize,
    /// Training rows.
    train_rows: usize,
    cols: usize,
    /// Labels of the validation rows (label holder only).
    valid_labels: Option<Vec<f64>>,
    /// Figures per epoch (label holder, with validation rows).
    progress: Vec<EpochReport>,
    /// Encoded labels (label holder only).
    labels: Option<Vec<Elem>>,
    /// Encoded class weight of each row (label holder only, with class weights).
    weights: Option<Vec<Elem>>,
    /// Encoded own matrix until the seeds arrive.
    pending_x: Option<Vec<Elem>>,
    /// Its starting coefficients (a warm start), else zeros.
    initial_w: Option<Vec<Elem>>,
    /// Whether the job warm-starts (every party then starts from its part).
    warm: bool,
    /// The dealer's seeds, once dealt.
    seeds: Option<(Seed, BTreeMap<PartyId, Seed>, Option<Seed>)>,
    /// Masked matrices that arrived, by owner.
    masked: BTreeMap<PartyId, Vec<Elem>>,
    own: Option<Own>,
    partnered: BTreeMap<PartyId, Partnered>,
    beaver: Option<Seed>,
    schedule: Schedule,
    step: u64,
    phase: Phase,
    // Inboxes, by step.
    deals: HashMap<u64, Corrections>,
    fwd: HashMap<u64, Vec<Elem>>,
    bwd: HashMap<u64, Vec<Elem>>,
    logit_shares: HashMap<u64, BTreeMap<PartyId, Vec<Elem>>>,
    sig_opens: HashMap<(u64, u64), Opening>,
    residuals: HashMap<u64, Vec<Elem>>,
    final_share: Option<Vec<Elem>>,
    result: Option<LrPart>,
}

impl Party {
    /// The role of `me` over its [`PartyData`]; asks the dealer for seeds by sending its
    /// shape.
    ///
    /// # Errors
    /// [`LrError`] when the parameters, the roster or the table do not fit.
    pub fn new(
        job: &JobId,
        me: PartyId,
        roster: Roster,
        params: LrParams,
        data: PartyData<'_>,
    ) -> Result<(Self, Sends), LrError> {
        let PartyData { features, labels, valid, valid_labels, encoding, initial } = data;
        let valid = valid.map(|f| (f, valid_labels));
        params.validate()?;
        if !roster.contains(&me) {
            return Err(LrError::Params(format!("{me} is not in the roster")));
        }
        let is_label = me == roster.label;
        if is_label != labels.is_some() {
            return Err(LrError::Params(format!(
                "{me}: only the label holder ({}) has labels",
                roster.label
            )));
        }
        let rows = features.n_rows();
        if rows == 0 {
            return Err(LrError::Params(format!("{me} has no aligned rows")));
        }
        let fx = Fixed::new(params.frac_bits);
        let encoding = match encoding {
            Some(e) => e.clone(),
            None => LocalEncoding::fit(features, params.clip)?,
        };
        let x = encoding.transform(features)?;
        let xv = valid.map(|(f, _)| encoding.transform(f)).transpose()?;
        let n_valid = xv.as_ref().map_or(0, |v| v.nrows());
        let valid_labels = match valid {
            Some((_, Some(y))) if is_label => {
                if y.len() != n_valid || y.iter().any(|v| *v != 0.0 && *v != 1.0) {
                    return Err(LrError::Params(format!(
                        "{} validation labels for {n_valid} rows, or not 0/1",
                        y.len()
                    )));
                }
                Some(y.to_vec())
            }
            Some((_, None)) if is_label => {
                return Err(LrError::Params("the label holder needs validation labels".into()));
            }
            Some((_, Some(_))) => {
                return Err(LrError::Params(format!("{me}: only the label holder has labels")));
            }
            _ => None,
        };
        let intercept = usize::from(is_label);
        let cols = x.ncols() + intercept;
        let initial_w = match initial.map(|w| w.coefficients) {
            Some(w) if w.len() != cols => {
                return Err(LrError::Params(format!(
                    "{me}: the warm start has {} coefficients for {cols} encoded columns{}",
                    w.len(),
                    if is_label { " (the intercept included)" } else { "" }
                )));
            }
            Some(w) => Some(w.iter().map(|v| fx.encode(*v)).collect::<Vec<Elem>>()),
            None => None,
        };
        let mut enc = Vec::with_capacity((rows + n_valid) * cols);
        for r in x.rows().into_iter().chain(xv.iter().flat_map(|v| v.rows())) {
            enc.extend(r.iter().map(|v| fx.encode(*v)));
            if is_label {
                enc.push(fx.encode(1.0));
            }
        }
        let weights = match (labels, params.class_weight) {
            (_, ClassWeight::None) | (None, _) => None,
            (Some(y), cw) => {
                let pos = y.iter().filter(|v| **v == 1.0).count() as f64;
                let n = y.len() as f64;
                let (w0, w1) = match cw {
                    ClassWeight::Custom { negative, positive } => (negative, positive),
                    _ => (n / (2.0 * (n - pos).max(1.0)), n / (2.0 * pos.max(1.0))),
                };
                Some(y.iter().map(|v| fx.encode(if *v == 1.0 { w1 } else { w0 })).collect())
            }
        };
        let labels = match labels {
            Some(y) => {
                if y.len() != rows {
                    return Err(LrError::Params(format!("{} labels for {rows} rows", y.len())));
                }
                if y.iter().any(|v| *v != 0.0 && *v != 1.0) {
                    return Err(LrError::Params("labels must be 0 or 1".into()));
                }
                Some(fx.encode_all(y))
            }
            None => None,
        };
        let schedule = Schedule::new(&params, rows, n_valid).after(initial.map_or(0, |w| w.epochs));
        let span = tracing::debug_span!("vertical-lr", job = %job, party = %me);
        let party = Self {
            me,
            span,
            roster,
            params,
            fx,
            encoding,
            rows: rows + n_valid,
            train_rows: rows,
            cols,
            valid_labels,
            progress: Vec::new(),
            labels,
            weights,
            pending_x: Some(enc),
            warm: initial_w.is_some(),
            initial_w,
            seeds: None,
            masked: BTreeMap::new(),
            own: None,
            partnered: BTreeMap::new(),
            beaver: None,
            schedule,
            step: 0,
            phase: Phase::Setup,
            deals: HashMap::new(),
            fwd: HashMap::new(),
            bwd: HashMap::new(),
            logit_shares: HashMap::new(),
            sig_opens: HashMap::new(),
            residuals: HashMap::new(),
            final_share: None,
            result: None,
        };
        let sends = vec![(
            Node::Dealer,
            LrMsg::Shape { rows: rows as u64, valid: n_valid as u64, cols: cols as u64 },
        )];
        Ok((party, sends))
    }

    /// This party.
    pub fn me(&self) -> &PartyId {
        &self.me
    }

    /// The party's model part, once training is over.
    pub fn result(&self) -> Option<&LrPart> {
        self.result.as_ref()
    }

    /// Whether training is over here.
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Figures per epoch on the validation rows (label holder only).
    pub fn progress(&self) -> &[EpochReport] {
        &self.progress
    }

    /// The step the party is at.
    pub fn step(&self) -> u64 {
        self.step
    }

    fn is_label(&self) -> bool {
        self.me == self.roster.label
    }

    fn is_first(&self) -> bool {
        self.me == *self.roster.first()
    }

    /// `F_j`, `j ≥ 2`: neither the label holder nor `F₁`.
    fn is_other(&self) -> bool {
        !self.is_label() && !self.is_first()
    }

    /// The label holder is `P0` of every pair it is in; feature holders are `P1`.
    fn side(&self) -> Side {
        if self.is_label() { Side::P0 } else { Side::P1 }
    }

    /// The party the sigmoid runs with (`L` ↔ `F₁`).
    fn sigmoid_peer(&self) -> Option<&PartyId> {
        if self.is_label() {
            Some(self.roster.first())
        } else if self.is_first() {
            Some(&self.roster.label)
        } else {
            None
        }
    }

    /// Beaver rounds per step: the sigmoid's, and one for class weights.
    fn rounds(&self) -> u64 {
        sigmoid::ROUNDS + u64::from(self.params.class_weight != ClassWeight::None)
    }

    fn my_partner(&self) -> &PartyId {
        self.roster.partner_of(&self.me)
    }

    /// Checks a step-numbered message is for the current step or shortly after.
    fn check_step(&self, step: u64, kind: &str, from: &PartyId) -> Result<(), LrError> {
        if step < self.step || step > self.step + AHEAD || step >= self.schedule.steps() {
            return protocol(format!(
                "{}: a {kind} message from {from} for step {step} while at step {}",
                self.me, self.step
            ));
        }
        Ok(())
    }

    /// Handles a message; returns what to send.
    ///
    /// # Errors
    /// [`LrError`] when the message does not fit the protocol (a wrong sender, step or
    /// length): the job cannot go on.
    pub fn handle(&mut self, from: &Node, msg: LrMsg) -> Result<Sends, LrError> {
        let span = self.span.clone();
        let _g = span.enter();
        tracing::trace!(kind = msg.kind(), step = self.step, "received");
        self.store(from, msg)?;
        let mut out = Vec::new();
        self.advance(&mut out)?;
        Ok(out)
    }

    fn store(&mut self, from: &Node, msg: LrMsg) -> Result<(), LrError> {
        let from = match (from, &msg) {
            (Node::Dealer, LrMsg::Seeds { owner, partner, beaver }) => {
                if self.seeds.is_some() {
                    return protocol(format!("{}: seeds dealt twice", self.me));
                }
                let mut want: Vec<&PartyId> = self
                    .roster
                    .parties()
                    .filter(|o| self.roster.partner_of(o) == &self.me)
                    .collect();
                want.sort();
                if partner.keys().collect::<Vec<_>>() != want
                    || beaver.is_some() != self.sigmoid_peer().is_some()
                {
                    return protocol(format!("{}: seeds that do not fit its roles", self.me));
                }
                self.seeds = Some((owner.clone(), partner.clone(), beaver.clone()));
                return Ok(());
            }
            (Node::Dealer, LrMsg::Deal { step, corrections }) => {
                if *step < self.step || *step > self.step + AHEAD || self.deals.contains_key(step) {
                    return protocol(format!("{}: a deal for step {step} out of turn", self.me));
                }
                self.deals.insert(*step, corrections.clone());
                return Ok(());
            }
            (Node::Dealer, m) => {
                return protocol(format!("{}: the dealer sent a {} message", self.me, m.kind()));
            }
            (Node::Party(p), _) => p.clone(),
        };
        if !self.roster.contains(&from) || from == self.me {
            return protocol(format!("{}: a message from {from}, not a peer", self.me));
        }
        let partner = self.my_partner().clone();
        match msg {
            LrMsg::Masked { e } => {
                if self.roster.partner_of(&from) != &self.me || self.masked.contains_key(&from) {
                    return protocol(format!(
                        "{}: an unexpected masked matrix from {from}",
                        self.me
                    ));
                }
                self.masked.insert(from, e);
            }
            LrMsg::ForwardOpen { step, f } => {
                self.check_step(step, "forward", &from)?;
                if from != partner || self.fwd.insert(step, f).is_some() {
                    return protocol(format!("{}: an unexpected forward opening", self.me));
                }
            }
            LrMsg::BackwardOpen { step, f } => {
                self.check_step(step, "backward", &from)?;
                if from != partner || self.bwd.insert(step, f).is_some() {
                    return protocol(format!("{}: an unexpected backward opening", self.me));
                }
            }
            LrMsg::LogitShare { step, share } => {
                self.check_step(step, "logit", &from)?;
                let ok = if self.is_first() {
                    from != self.roster.label
                } else {
                    self.is_label()
                        && from == *self.roster.first()
                        && self.schedule.is_validation(step)
                };
                if !ok {
                    return protocol(format!("{}: an unexpected logit share from {from}", self.me));
                }
                if self.logit_shares.entry(step).or_default().insert(from, share).is_some() {
                    return protocol(format!("{}: a logit share twice", self.me));
                }
            }
            LrMsg::SigmoidOpen { step, round, opening } => {
                self.check_step(step, "sigmoid", &from)?;
                if self.sigmoid_peer() != Some(&from)
                    || round >= self.rounds()
                    || self.sig_opens.insert((step, round), opening).is_some()
                {
                    return protocol(format!("{}: an unexpected sigmoid opening", self.me));
                }
            }
            LrMsg::ResidualShare { step, share } => {
                self.check_step(step, "residual", &from)?;
                if !self.is_other()
                    || from != *self.roster.first()
                    || self.residuals.insert(step, share).is_some()
                {
                    return protocol(format!("{}: an unexpected residual share", self.me));
                }
            }
            LrMsg::FinalShare { share } => {
                if from != partner || self.final_share.is_some() {
                    return protocol(format!("{}: an unexpected final share", self.me));
                }
                self.final_share = Some(share);
            }
            other => {
                return protocol(format!("{}: {from} sent a {} message", self.me, other.kind()));
            }
        }
        Ok(())
    }

    /// Runs the protocol as far as the messages at hand allow.
    fn advance(&mut self, out: &mut Sends) -> Result<(), LrError> {
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            let (next, progressed) = self.advance_once(phase, out)?;
            self.phase = next;
            if !progressed {
                return Ok(());
            }
        }
    }

    fn advance_once(&mut self, phase: Phase, out: &mut Sends) -> Result<(Phase, bool), LrError> {
        let t = self.step;
        match phase {
            Phase::Setup => self.setup(out),
            Phase::Start => {
                if t == self.schedule.steps() {
                    for (owner, p) in &self.partnered {
                        out.push((
                            Node::Party(owner.clone()),
                            LrMsg::FinalShare { share: p.w.clone() },
                        ));
                    }
                    return Ok((Phase::Final, true));
                }
                if self.is_label() {
                    out.push((Node::Dealer, LrMsg::Need { step: t }));
                }
                for (owner, p) in &self.partnered {
                    let f = p.mat.forward_open(t, &p.w)?;
                    out.push((Node::Party(owner.clone()), LrMsg::ForwardOpen { step: t, f }));
                }
                Ok((Phase::Forward, true))
            }
            Phase::Forward => {
                let needs_deal = !self.is_other();
                let validation = self.schedule.is_validation(t);
                let logits_due = if self.is_first() {
                    self.roster.features.len() - 1
                } else {
                    usize::from(self.is_label() && validation)
                };
                if !self.fwd.contains_key(&t)
                    || (needs_deal && !self.deals.contains_key(&t))
                    || self.logit_shares.get(&t).map_or(0, BTreeMap::len) < logits_due
                {
                    return Ok((Phase::Forward, false));
                }
                let rows = self.schedule.rows(t);
                let mut y = self.forward(t, &rows)?;
                if self.is_other() {
                    out.push((
                        Node::Party(self.roster.first().clone()),
                        LrMsg::LogitShare { step: t, share: y },
                    ));
                    if validation {
                        return Ok(self.next_step());
                    }
                    return Ok((Phase::Residual, true));
                }
                let others = self.logit_shares.remove(&t);
                if self.is_first()
                    && let Some(shares) = &others
                {
                    for s in shares.values() {
                        add_assign(&mut y, s)?;
                    }
                }
                truncate(self.side(), &mut y, self.fx.frac_bits);
                if validation {
                    if self.is_first() {
                        out.push((
                            Node::Party(self.roster.label.clone()),
                            LrMsg::LogitShare { step: t, share: y },
                        ));
                    } else {
                        let theirs = others
                            .and_then(|mut m| m.remove(self.roster.first()))
                            .unwrap_or_default();
                        self.validate(t, &y, &theirs)?;
                    }
                    return Ok(self.next_step());
                }
                let mut sig = Box::new(Sigmoid::new(self.side(), self.fx, y));
                self.open_round(t, 0, &mut sig, out)?;
                Ok((Phase::Sigmoid(sig), true))
            }
            Phase::Sigmoid(mut sig) => {
                let Some(k) = sig.waiting() else {
                    return protocol("sigmoid state lost");
                };
                let Some(theirs) = self.sig_opens.remove(&(t, k)) else {
                    return Ok((Phase::Sigmoid(sig), false));
                };
                match sig.receive(&theirs)? {
                    None => {
                        self.open_round(t, k + 1, &mut sig, out)?;
                        Ok((Phase::Sigmoid(sig), true))
                    }
                    Some(mut d) => {
                        let rows = self.schedule.rows(t);
                        if let Some(y) = &self.labels {
                            sub_assign(&mut d, &y[rows.clone()])?;
                        }
                        if self.params.class_weight != ClassWeight::None {
                            // d = c ⊙ (σ − y): one more Beaver product with the label holder's
                            // class weights (the first feature holder's operand share is 0).
                            let cw = match &self.weights {
                                Some(c) => c[rows.clone()].to_vec(),
                                None => vec![0; rows.len()],
                            };
                            let triple = self.triple(t, sigmoid::ROUNDS, rows.len())?;
                            let (mul, opening) = Mul::start(self.side(), &cw, &d, triple)?;
                            self.send_open(t, sigmoid::ROUNDS, opening, out)?;
                            return Ok((Phase::Weighting(Box::new(mul)), true));
                        }
                        self.residuals_ready(t, &rows, d, out)
                    }
                }
            }
            Phase::Weighting(mul) => {
                let Some(theirs) = self.sig_opens.remove(&(t, sigmoid::ROUNDS)) else {
                    return Ok((Phase::Weighting(mul), false));
                };
                let mut d = mul.finish(&theirs)?;
                truncate(self.side(), &mut d, self.fx.frac_bits);
                let rows = self.schedule.rows(t);
                self.residuals_ready(t, &rows, d, out)
            }
            Phase::Residual => {
                let Some(d) = self.residuals.remove(&t) else {
                    return Ok((Phase::Residual, false));
                };
                let rows = self.schedule.rows(t);
                mpc_len("residual share", rows.len(), d.len())?;
                self.backward_open(t, &rows, &d, out)?;
                Ok((Phase::Backward(d), true))
            }
            Phase::Backward(d) => {
                let needs_deal = !self.is_other();
                if !self.bwd.contains_key(&t) || (needs_deal && !self.deals.contains_key(&t)) {
                    return Ok((Phase::Backward(d), false));
                }
                self.backward(t, &d)?;
                Ok(self.next_step())
            }
            Phase::Final => {
                let Some(share) = self.final_share.take() else {
                    return Ok((Phase::Final, false));
                };
                let own = self.own.as_ref().ok_or(LrError::Protocol("no own matrix".into()))?;
                let w = mpc::reconstruct(&own.w, &share)?;
                let mut coefficients = self.fx.decode_all(&w);
                let intercept = if self.is_label() { coefficients.pop() } else { None };
                self.result = Some(LrPart {
                    party: self.me.clone(),
                    encoding: self.encoding.clone(),
                    coefficients,
                    intercept,
                    epochs: self.schedule.epochs_before + self.params.epochs,
                });
                tracing::debug!("model part ready");
                Ok((Phase::Done, false))
            }
            Phase::Done => Ok((Phase::Done, false)),
        }
    }

    /// Clears step `t`'s inboxes and moves to the next step.
    fn next_step(&mut self) -> (Phase, bool) {
        let t = self.step;
        self.deals.remove(&t);
        self.fwd.remove(&t);
        self.bwd.remove(&t);
        self.step += 1;
        if self.step.is_multiple_of(self.schedule.per_epoch()) {
            tracing::debug!(epoch = self.step / self.schedule.per_epoch(), "epoch done");
        }
        (Phase::Start, true)
    }

    /// The label holder opens the joint validation logits and scores them.
    fn validate(&mut self, t: u64, mine: &[Elem], theirs: &[Elem]) -> Result<(), LrError> {
        let z = self.fx.decode_all(&mpc::reconstruct(mine, theirs)?);
        let Some(y) = &self.valid_labels else {
            return protocol("validation rows without labels");
        };
        let p: Vec<f64> = z.iter().map(|z| fedcredit_models::logistic::sigmoid(*z)).collect();
        let largest = z.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if largest > sigmoid::RANGE {
            tracing::warn!(
                epoch = self.schedule.epoch(t) + 1,
                largest,
                "validation logits beyond ±{} where the sigmoid in shares runs away: the descent \
                 may diverge (a smaller learning_rate keeps the logits in range)",
                sigmoid::RANGE
            );
        }
        let m = |r: Result<f64, ModelError>| r.unwrap_or(f64::NAN);
        let report = EpochReport {
            epoch: self.schedule.epoch(t) + 1,
            auc: m(fedcredit_models::metrics::auc(&z, y)),
            ks: m(fedcredit_models::metrics::ks(&z, y)),
            log_loss: m(fedcredit_models::metrics::log_loss(&p, y)),
        };
        tracing::info!(
            epoch = report.epoch,
            auc = report.auc,
            ks = report.ks,
            log_loss = report.log_loss,
            "validation"
        );
        self.progress.push(report);
        Ok(())
    }

    fn setup(&mut self, out: &mut Sends) -> Result<(Phase, bool), LrError> {
        let Some((owner_seed, partner_seeds, beaver)) = self.seeds.clone() else {
            return Ok((Phase::Setup, false));
        };
        let mut progressed = false;
        if self.own.is_none() {
            progressed = true;
            let mat = MatrixOwner::new(owner_seed, self.rows, self.cols);
            let x = self.pending_x.take().unwrap_or_default();
            let e = mat.mask(&x)?;
            out.push((Node::Party(self.my_partner().clone()), LrMsg::Masked { e: e.clone() }));
            // A warm start shares the starting coefficients as (β − r, r) with r pseudorandom
            // from the masked matrix both ends hold: SecureML's local truncation needs shares
            // that look uniform, which (β, 0) do not.
            let w = match self.initial_w.take() {
                Some(mut w) => {
                    sub_assign(&mut w, &warm_mask(&e, self.cols))?;
                    w
                }
                None => vec![0; self.cols],
            };
            self.own = Some(Own { mat, x, w, v: vec![0; self.cols] });
            self.beaver = beaver;
        }
        if partner_seeds.keys().any(|o| !self.masked.contains_key(o)) {
            return Ok((Phase::Setup, progressed));
        }
        for (owner, seed) in partner_seeds {
            let e = self.masked.remove(&owner).unwrap_or_default();
            if e.is_empty() || !e.len().is_multiple_of(self.rows) {
                return protocol(format!(
                    "{}: the masked matrix of {owner} does not have {} rows",
                    self.me, self.rows
                ));
            }
            let cols = e.len() / self.rows;
            let w = if self.warm { warm_mask(&e, cols) } else { vec![0; cols] };
            let mat = MatrixPartner::new(seed, e, self.rows, cols)?;
            self.partnered.insert(owner, Partnered { mat, w, v: vec![0; cols] });
        }
        Ok((Phase::Start, true))
    }

    /// This party's untruncated share of `Σ u_p` over the matrices it is in.
    fn forward(&mut self, t: u64, rows: &Range<usize>) -> Result<Vec<Elem>, LrError> {
        let own = self.own.as_ref().ok_or(LrError::Protocol("no own matrix".into()))?;
        let f = self.fwd.get(&t).map(Vec::as_slice).unwrap_or_default();
        let m = rows.len();
        let mut y = matvec(&own.x[rows.start * self.cols..], m, self.cols, &own.w);
        add_assign(&mut y, &own.mat.forward(t, rows.clone(), f)?)?;
        if !self.partnered.is_empty() {
            let deal = self.deals.get(&t).ok_or(LrError::Protocol("no deal".into()))?;
            for (owner, p) in &self.partnered {
                let c = deal.forward.get(owner).map(Vec::as_slice).unwrap_or_default();
                add_assign(&mut y, &p.mat.forward(rows.clone(), &p.w, c)?)?;
            }
        }
        Ok(y)
    }

    /// This side's triple `k` of step `t` for `n` values.
    fn triple(&self, t: u64, k: u64, n: usize) -> Result<Triple, LrError> {
        let seed = self.beaver.as_ref().ok_or(LrError::Protocol("no triple seed".into()))?;
        let correction = match self.side() {
            Side::P0 => None,
            Side::P1 => {
                let deal = self.deals.get(&t).ok_or(LrError::Protocol("no deal".into()))?;
                Some(deal.sigmoid.get(k as usize).cloned().unwrap_or_default())
            }
        };
        Ok(Triple::new(self.side(), seed, t, k, n, correction)?)
    }

    fn send_open(&self, t: u64, k: u64, opening: Opening, out: &mut Sends) -> Result<(), LrError> {
        let peer = self.sigmoid_peer().ok_or(LrError::Protocol("no sigmoid peer".into()))?;
        out.push((Node::Party(peer.clone()), LrMsg::SigmoidOpen { step: t, round: k, opening }));
        Ok(())
    }

    fn open_round(
        &mut self,
        t: u64,
        k: u64,
        sig: &mut Sigmoid,
        out: &mut Sends,
    ) -> Result<(), LrError> {
        let triple = self.triple(t, k, sigmoid::round_len(k, sig.len()))?;
        let opening = sig.open(triple)?;
        self.send_open(t, k, opening, out)
    }

    /// The step's residual shares are known (`L`, `F₁`): hand them to the other feature
    /// holders and open the backward products.
    fn residuals_ready(
        &mut self,
        t: u64,
        rows: &Range<usize>,
        d: Vec<Elem>,
        out: &mut Sends,
    ) -> Result<(Phase, bool), LrError> {
        if self.is_first() {
            for p in &self.roster.features[1..] {
                out.push((
                    Node::Party(p.clone()),
                    LrMsg::ResidualShare { step: t, share: d.clone() },
                ));
            }
        }
        self.backward_open(t, rows, &d, out)?;
        Ok((Phase::Backward(d), true))
    }

    fn backward_open(
        &self,
        t: u64,
        rows: &Range<usize>,
        d: &[Elem],
        out: &mut Sends,
    ) -> Result<(), LrError> {
        for (owner, p) in &self.partnered {
            let f = p.mat.backward_open(t, rows.clone(), d)?;
            out.push((Node::Party(owner.clone()), LrMsg::BackwardOpen { step: t, f }));
        }
        Ok(())
    }

    /// Gradients in shares and the local update of every coefficient share held here.
    fn backward(&mut self, t: u64, d: &[Elem]) -> Result<(), LrError> {
        let rows = self.schedule.rows(t);
        let m = rows.len();
        let eta = self.schedule.eta(t);
        let lambda = 1.0 / (self.params.c * self.train_rows as f64);
        let step_c = encode_bits(eta / m as f64, CONST_BITS);
        let decay_c = encode_bits(eta * lambda, CONST_BITS);
        let momentum_c = encode_bits(self.params.momentum, CONST_BITS);
        let (side, f_bits) = (self.side(), self.fx.frac_bits);
        // v ← μ·v − η·(g/m + λ·w); w ← w + v (heavy-ball momentum, all local on shares).
        let update = |w: &mut Vec<Elem>, v: &mut Vec<Elem>, mut g: Vec<Elem>, intercept: bool| {
            mpc::mul_public(&mut g, step_c);
            truncate(side, &mut g, f_bits + CONST_BITS);
            let mut l2 = w.clone();
            mpc::mul_public(&mut l2, decay_c);
            truncate(side, &mut l2, CONST_BITS);
            if intercept && let Some(last) = l2.last_mut() {
                *last = 0;
            }
            mpc::mul_public(v, momentum_c);
            truncate(side, v, CONST_BITS);
            for (((w, v), g), r) in w.iter_mut().zip(v.iter_mut()).zip(&g).zip(&l2) {
                *v = v.wrapping_sub(*g).wrapping_sub(*r);
                *w = w.wrapping_add(*v);
            }
        };
        let label = self.roster.label.clone();
        let own = self.own.as_mut().ok_or(LrError::Protocol("no own matrix".into()))?;
        let f = self.bwd.get(&t).map(Vec::as_slice).unwrap_or_default();
        let block = &own.x[rows.start * self.cols..rows.end * self.cols];
        let mut g = matvec_t(block, self.cols, d);
        add_assign(&mut g, &own.mat.backward(t, rows.clone(), f)?)?;
        update(&mut own.w, &mut own.v, g, self.me == label);
        if !self.partnered.is_empty() {
            let deal = self.deals.get(&t).ok_or(LrError::Protocol("no deal".into()))?;
            for (owner, p) in &mut self.partnered {
                let c = deal.backward.get(owner).map(Vec::as_slice).unwrap_or_default();
                let g = p.mat.backward(rows.clone(), d, c)?;
                update(&mut p.w, &mut p.v, g, *owner == label);
            }
        }
        Ok(())
    }
}

fn mpc_len(what: &'static str, expected: usize, got: usize) -> Result<(), LrError> {
    if expected == got {
        Ok(())
    } else {
        Err(LrError::Mpc(MpcError::Length { what, expected, got }))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn pid(s: &str) -> PartyId {
        PartyId(s.into())
    }

    #[test]
    fn the_schedule_covers_every_row_once_per_epoch_then_validates() {
        let params = LrParams { epochs: 3, batch_size: 40, ..LrParams::default() };
        let s = Schedule::new(&params, 100, 7);
        assert_eq!((s.per_epoch(), s.steps()), (4, 12));
        let epoch: Vec<Range<usize>> = (0..4).map(|t| s.rows(t)).collect();
        assert_eq!(epoch, vec![0..40, 40..80, 80..100, 100..107]);
        assert!(s.is_validation(3) && s.is_validation(7) && !s.is_validation(4));
        assert_eq!(s.rows(5), 40..80);
        assert_eq!(s.epoch(11), 2);
        assert!(s.eta(4) < s.eta(3));
        // The first epoch ramps up to η₀ over its three training steps.
        for (t, share) in [(0, 1.0 / 3.0), (1, 2.0 / 3.0), (2, 1.0)] {
            assert!((s.eta(t) - share * params.learning_rate).abs() < 1e-12, "step {t}");
        }
        // A warm start from a 2-epoch model steps as the third epoch on (no ramp), rows
        // unchanged.
        let warm = s.after(2);
        assert_eq!((warm.eta(0), warm.eta(4)), (s.eta(8), s.eta(12)));
        assert_eq!((warm.steps(), warm.rows(5)), (12, 40..80));
        let auto = |rows| Schedule::new(&LrParams { batch_size: 0, ..params }, rows, 0);
        assert_eq!((auto(100).per_epoch(), auto(100).rows(1)), (2, 64..100));
        assert_eq!(auto(6400).rows(0), 0..200);
        assert_eq!(auto(100_000).rows(0), 0..3125);
        assert_eq!(auto(1_000_000).rows(0), 0..8192);
        assert_eq!(auto(10).rows(0), 0..10);
    }

    #[test]
    fn parameters_and_rosters_are_checked() {
        assert!(LrParams::default().validate().is_ok());
        for bad in [
            LrParams { epochs: 0, ..LrParams::default() },
            LrParams { learning_rate: f64::NAN, ..LrParams::default() },
            LrParams { c: 0.0, ..LrParams::default() },
            LrParams { clip: -1.0, ..LrParams::default() },
            LrParams { frac_bits: 40, ..LrParams::default() },
            LrParams {
                class_weight: ClassWeight::Custom { negative: 1.0, positive: -2.0 },
                ..LrParams::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(Roster::new(pid("bank"), vec![]).is_err());
        assert!(Roster::new(pid("bank"), vec![pid("tax"), pid("bank")]).is_err());
        let r = Roster::new(pid("bank"), vec![pid("tax"), pid("platform")]).unwrap();
        assert_eq!(r.partner_of(&pid("bank")), &pid("tax"));
        assert_eq!(r.partner_of(&pid("platform")), &pid("bank"));
    }

    #[test]
    fn the_dealer_deals_each_step_once_in_order_to_the_label_holder_only() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let roster = Roster::new(pid("bank"), vec![pid("tax")]).unwrap();
        let params = LrParams { epochs: 1, batch_size: 5, ..LrParams::default() };
        let mut d = Dealer::new(roster, params, &mut rng).unwrap();
        let bank = Node::Party(pid("bank"));
        let tax = Node::Party(pid("tax"));
        // Nothing before the shapes; a stranger or the dealer itself is refused.
        assert!(d.handle(&bank, LrMsg::Need { step: 0 }).is_err());
        let shape = |cols| LrMsg::Shape { rows: 10, valid: 0, cols };
        assert!(d.handle(&Node::Party(pid("eve")), shape(2)).is_err());
        assert!(d.handle(&Node::Dealer, shape(2)).is_err());
        assert!(d.handle(&bank, shape(3)).unwrap().is_empty());
        assert!(d.handle(&bank, shape(3)).is_err());
        assert!(d.handle(&tax, LrMsg::Shape { rows: 11, valid: 0, cols: 2 }).is_err());
        let seeds = d.handle(&tax, shape(2)).unwrap();
        assert_eq!(seeds.len(), 2);
        assert!(seeds.iter().all(|(_, m)| matches!(m, LrMsg::Seeds { beaver: Some(_), .. })));
        // Only the label holder asks, step by step, never twice, never beyond the schedule.
        assert!(d.handle(&tax, LrMsg::Need { step: 0 }).is_err());
        assert!(d.handle(&bank, LrMsg::Need { step: 1 }).is_err());
        let deal = d.handle(&bank, LrMsg::Need { step: 0 }).unwrap();
        assert_eq!(deal.len(), 2);
        assert!(d.handle(&bank, LrMsg::Need { step: 0 }).is_err());
        assert!(d.handle(&bank, LrMsg::Need { step: 1 }).is_ok());
        assert!(d.handle(&bank, LrMsg::Need { step: 2 }).is_err());
        assert!(d.handle(&bank, LrMsg::FinalShare { share: vec![] }).is_err());
    }
}
