//! Vertical jobs: the bank (label holder), the tax bureau and the platform hold different
//! columns about the same enterprises, keyed by the enterprise's unified social credit code.
//!
//! A vertical job runs **stages**, each a protocol step of its own: alignment by private set
//! intersection ([`psi`]) always comes first; then the model stage the job asks for
//! (federated WOE/IV, [`woe`]; logistic regression and scorecard, [`lr`]; gradient-boosted
//! trees, [`secureboost`]). What a trained model leaves where is in [`model`]. The coordinator
//! runs a [`conductor::VerticalConductor`] that opens one stage at a time; each party runs a
//! [`role::VerticalRole`] that holds its table and its [`Alignment`] and hands each stage's
//! messages to the stage's party side.
//!
//! A stage is two state machines behind small traits, [`StageConductor`] and [`StageRole`],
//! exchanging the stage's typed messages (`psi.proto`, `woe.proto`) inside the vertical
//! envelopes (`VerticalStep`, `VerticalReport`, `VerticalPayload`): the envelopes carry the
//! step number, so a message of an earlier stage or of an earlier run of the same stage is
//! refused, and a stage never sees another's messages.
//!
//! Parties check what they are asked against the job they accepted: the stage kinds and their
//! parameters come from the job spec, not from the coordinator's messages, and a stage that
//! finished is never run again.

pub mod conductor;
pub mod lr;
pub mod model;
pub mod psi;
pub mod role;
pub mod secureboost;
pub mod woe;

use std::collections::BTreeMap;

use fedcredit_models::Features;
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{CsRng, OutStream, Rejection, RoleError, RoleOutbox, Schemas};

/// `[vertical]` in `job.toml`: makes the job vertical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerticalSpec {
    /// The party whose table holds the label (the bank).
    pub label_holder: PartyId,
    /// How the parties' ids are intersected.
    #[serde(default)]
    pub psi: PsiMode,
    /// The label holder's additive homomorphic key.
    #[serde(default)]
    pub he: HeSpec,
    /// `[vertical.lr]`: the secret-shared logistic regression of `logistic` and `scorecard`
    /// jobs (epochs, batch size, step size, `c`, class weights).
    #[serde(default)]
    pub lr: lr::protocol::LrParams,
    /// `[vertical.secureboost]`: options of `gbdt` jobs beyond the model's (GOSS, trees on
    /// the label holder's columns only, early stopping).
    #[serde(default)]
    pub secureboost: secureboost::SbParams,
    /// The training job of a served vertical model this job starts from (retraining after
    /// drift): each party starts from its own kept part of it — its encoding (logistic) and
    /// its coefficients — and refuses the job if it holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<String>,
}

/// How the alignment stage intersects the parties' ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PsiMode {
    /// Diffie–Hellman PSI over ristretto255: nobody, the coordinator included, learns more
    /// than the intersection (and set sizes), even if the coordinator colluded with a party.
    Ecdh,
    /// Server-aided PSI (Kamara et al., FC 2014): keyed-hash tokens intersected by the
    /// coordinator, which learns set and intersection sizes; relies on the coordinator not
    /// colluding with a party. Two orders of magnitude faster.
    #[default]
    ServerAided,
}

impl PsiMode {
    /// As written in `job.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            PsiMode::Ecdh => "ecdh",
            PsiMode::ServerAided => "server-aided",
        }
    }

    /// From its `job.toml` form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ecdh" => Some(PsiMode::Ecdh),
            "server-aided" => Some(PsiMode::ServerAided),
            _ => None,
        }
    }
}

/// The additive homomorphic scheme of the label holder's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeSpec {
    /// `ou` (Okamoto–Uchiyama, default) or `paillier`.
    #[serde(default)]
    pub scheme: HeScheme,
    /// Modulus bits: 2048 (default, 112-bit security) or 3072 (128-bit).
    #[serde(default = "default_he_bits")]
    pub bits: u32,
}

fn default_he_bits() -> u32 {
    2048
}

impl Default for HeSpec {
    fn default() -> Self {
        Self { scheme: HeScheme::default(), bits: default_he_bits() }
    }
}

/// An additive homomorphic scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeScheme {
    /// Okamoto–Uchiyama.
    #[default]
    Ou,
    /// Paillier.
    Paillier,
}

impl VerticalSpec {
    /// Checks the section against the job; `Err((key, reason))` names the key inside
    /// `[vertical]`.
    pub(crate) fn validate(&self, spec: &JobSpec) -> Result<(), (String, String)> {
        if !spec.parties.contains(&self.label_holder) {
            return Err((
                "label_holder".into(),
                format!("`{}` is not among the job's parties", self.label_holder),
            ));
        }
        if !matches!(self.he.bits, 2048 | 3072) {
            return Err(("he.bits".into(), format!("is {}; must be 2048 or 3072", self.he.bits)));
        }
        self.secureboost.validate().map_err(|(k, why)| (format!("secureboost.{k}"), why))?;
        self.lr.validate().map_err(|e| match e {
            lr::protocol::LrError::Params(why) => {
                // The reason starts with the parameter's name.
                let key = why.split_whitespace().next().unwrap_or("").to_string();
                (format!("lr.{key}"), why)
            }
            other => ("lr".into(), other.to_string()),
        })?;
        Ok(())
    }
}

/// `[model] kind = "align"`: a vertical job that only aligns the parties' rows (PSI) and
/// reports the intersection size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignSpec {}

/// A party's table in a vertical job: its ids, its feature columns and, at the label holder,
/// the label. Rows in the table's own order.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyTable {
    /// One id per row (unique, non-empty: checked when the table is loaded).
    pub ids: Vec<String>,
    /// The party's feature columns.
    pub features: Features,
    /// The 0/1 label, at the label holder only.
    pub label: Option<Vec<f64>>,
}

impl PartyTable {
    /// Rows.
    pub fn n_rows(&self) -> usize {
        self.ids.len()
    }
}

/// Where a party's rows stand after alignment: `rows[t]` is the party's own row of the `t`-th
/// common enterprise, in the order every party agrees on (by a value no party can compute
/// alone and no party's row order influences; see `fedcredit_crypto::psi::intersect`), and
/// `keys[t]` is that value truncated to 16 bytes (a pseudorandom, party-independent name for
/// the common row, e.g. for the validation split).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alignment {
    /// The party's row of each common enterprise.
    pub rows: Vec<u32>,
    /// The agreed-order value of each common enterprise.
    pub keys: Vec<[u8; 16]>,
}

impl Alignment {
    /// Common rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is common.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether common row `t` is a validation row of a job that holds out `fraction` of the
    /// rows: its agreed key, read as a number in [0, 1), falls below `fraction`. The same at
    /// every party (the keys are), and pseudorandom (no party's row order moves it).
    pub fn is_validation(&self, t: usize, fraction: f64) -> bool {
        let Some(k) = self.keys.get(t) else { return false };
        let u = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
        (u as f64 / 2f64.powi(64)) < fraction.clamp(0.0, 0.9)
    }

    /// The party's own rows of the common enterprises split into training and validation
    /// rows ([`Alignment::is_validation`]), each in the agreed order.
    pub fn split(&self, fraction: f64) -> (Vec<u32>, Vec<u32>) {
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for (t, &r) in self.rows.iter().enumerate() {
            if self.is_validation(t, fraction) { valid.push(r) } else { train.push(r) }
        }
        (train, valid)
    }
}

/// The rows a stage fits on at a party: a model's training rows (the validation rows are held
/// out of its WOE binning too, or the validation figures would see their own labels); every
/// common row for a `woe` report.
pub fn fit_rows(spec: &JobSpec, alignment: &Alignment) -> Vec<u32> {
    match spec.model {
        crate::horizontal::ModelSpec::Woe(_) => alignment.rows.clone(),
        _ => alignment.split(spec.data.validation_fraction).0,
    }
}

/// What a stage conductor sees of the job.
#[derive(Debug, Clone, Copy)]
pub struct StageCtx<'a> {
    /// The job.
    pub job: &'a JobId,
    /// Its spec.
    pub spec: &'a JobSpec,
    /// Its `[vertical]` section.
    pub vertical: &'a VerticalSpec,
    /// The parties, in the job's order.
    pub parties: &'a [PartyId],
    /// Each party's columns (names and kinds).
    pub schemas: &'a Schemas,
    /// The protocol step the stage runs as.
    pub step: u64,
}

/// What a stage conductor asks for.
#[derive(Debug, Default)]
pub struct StageOutbox {
    /// Messages to parties.
    pub messages: Vec<(PartyId, pb::vertical_step::Body)>,
    /// The stage finished.
    pub done: Option<StageDone>,
    /// The stage cannot finish (the parties' results disagree, …): the job fails with this
    /// message for the operator.
    pub failed: Option<String>,
}

impl StageOutbox {
    /// Queues a message to `party`.
    pub fn send(&mut self, party: &PartyId, body: pb::vertical_step::Body) {
        self.messages.push((party.clone(), body));
    }

    /// The stage finished with a trained model, registered as `reference`.
    pub fn model_done(
        &mut self,
        what: String,
        metrics: BTreeMap<String, f64>,
        reference: &model::VerticalModelRef,
    ) {
        match serde_json::to_string_pretty(reference) {
            Ok(artifact_json) => {
                self.done =
                    Some(StageDone { what, metrics, result: StageResult::Model { artifact_json } });
            }
            Err(e) => self.failed = Some(format!("the model reference cannot be written: {e}")),
        }
    }
}

/// A finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDone {
    /// For people ("aligned 24,000 common enterprises").
    pub what: String,
    /// Figures for the job's metrics (`intersection`, …).
    pub metrics: BTreeMap<String, f64>,
    /// What later stages or the job's outcome need.
    pub result: StageResult,
}

/// What a finished stage leaves for the rest of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StageResult {
    /// Alignment: the number of common rows.
    Aligned {
        /// Common rows.
        rows: u64,
    },
    /// WOE/IV tables (JSON of [`woe::IvReport`]).
    Woe {
        /// The report.
        iv_json: String,
    },
    /// A trained model: the coordinator's reference (a `fedcredit_models::artifact` JSON
    /// that names each party's part, which stays at that party).
    Model {
        /// The artifact.
        artifact_json: String,
    },
}

/// The coordinator's side of one stage.
pub trait StageConductor: std::fmt::Debug + Send + Sync {
    /// Opens the stage: its first messages.
    ///
    /// # Errors
    /// A message for the operator when the stage cannot run.
    fn start(&mut self, ctx: &StageCtx<'_>, out: &mut StageOutbox) -> Result<(), String>;

    /// A party's report within the stage.
    ///
    /// # Errors
    /// [`Rejection`] when the message does not fit (nothing changed then).
    fn receive(
        &mut self,
        ctx: &StageCtx<'_>,
        from: &PartyId,
        report: pb::vertical_report::Body,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection>;

    /// Parties whose report the stage still waits for.
    fn pending(&self) -> Vec<PartyId>;

    /// What it is doing, for people.
    fn status(&self) -> String;

    /// Progress within the stage (epochs, trees), when it counts any.
    fn progress(&self) -> Option<crate::protocol::Progress> {
        None
    }
}

/// What a party's stage sees of its job.
#[derive(Debug)]
pub struct PartyCtx<'a> {
    /// This party.
    pub me: &'a PartyId,
    /// The job.
    pub job: &'a JobId,
    /// Its spec.
    pub spec: &'a JobSpec,
    /// Its `[vertical]` section.
    pub vertical: &'a VerticalSpec,
    /// The party's table.
    pub table: &'a PartyTable,
    /// The alignment, once known (the alignment stage sets it).
    pub alignment: &'a mut Option<Alignment>,
    /// What finished stages left for later ones at this party, by name (`woe`: the party's
    /// bins and WOE; `model`: its part of the trained model), as JSON; checkpointed.
    pub kept: &'a mut BTreeMap<String, String>,
}

/// The party's side of one stage's output: reports to the conductor, payloads and streams to
/// other parties, all wrapped in the vertical envelopes of step `step`.
#[derive(Debug)]
pub struct StageRoleOut<'a> {
    /// The step the stage runs as.
    pub step: u64,
    /// The role's outbox.
    pub out: &'a mut RoleOutbox,
}

impl StageRoleOut<'_> {
    /// A report to the conductor.
    pub fn report(&mut self, body: pb::vertical_report::Body) {
        self.out.send(pb::role_message::Body::Vertical(pb::VerticalReport {
            step: self.step,
            body: Some(body),
        }));
    }

    /// Reports produced lazily (a large set to the coordinator in chunks).
    pub fn report_stream(
        &mut self,
        source: impl Iterator<Item = pb::vertical_report::Body> + Send + 'static,
    ) {
        let step = self.step;
        self.out.reports.push(Box::new(source.map(move |body| pb::RoleMessage {
            body: Some(pb::role_message::Body::Vertical(pb::VerticalReport {
                step,
                body: Some(body),
            })),
        })));
    }

    /// One sealed payload to `to`.
    pub fn payload(&mut self, to: &[PartyId], body: pb::vertical_payload::Body) {
        self.out.payloads.push((to.to_vec(), wrap_payload(self.step, body)));
    }

    /// Payloads produced lazily (a large set to other parties in chunks), sealed one by one.
    pub fn stream(
        &mut self,
        to: &[PartyId],
        source: impl Iterator<Item = pb::vertical_payload::Body> + Send + 'static,
    ) {
        let step = self.step;
        self.out.streams.push(OutStream {
            to: to.to_vec(),
            source: Box::new(source.map(move |body| wrap_payload(step, body))),
        });
    }
}

fn wrap_payload(step: u64, body: pb::vertical_payload::Body) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Vertical(pb::VerticalPayload { step, body: Some(body) })),
    }
}

/// A party's side of one stage.
pub trait StageRole: std::fmt::Debug + Send {
    /// A message of the stage from the conductor (the first one opens the stage).
    ///
    /// # Errors
    /// [`RoleError`] when the message is refused.
    fn receive(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError>;

    /// A payload of the stage from another party.
    ///
    /// # Errors
    /// [`RoleError`] when it is unexpected.
    fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        msg: pb::vertical_payload::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError>;

    /// Whether the party's part of the stage is over.
    fn finished(&self) -> bool;
}

/// The stages of a vertical job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// PSI alignment.
    Align,
    /// Federated WOE/IV.
    Woe,
    /// Vertical logistic regression (on WOE features for a scorecard).
    Lr,
    /// SecureBoost trees.
    SecureBoost,
}

impl StageKind {
    /// For people and the party's check.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Align => "align",
            StageKind::Woe => "woe",
            StageKind::Lr => "lr",
            StageKind::SecureBoost => "secureboost",
        }
    }

    /// The stage a step body belongs to.
    pub fn of_step(body: &pb::vertical_step::Body) -> Self {
        match body {
            pb::vertical_step::Body::Psi(_) => StageKind::Align,
            pb::vertical_step::Body::Woe(_) => StageKind::Woe,
            pb::vertical_step::Body::Lr(_) => StageKind::Lr,
            pb::vertical_step::Body::Secureboost(_) => StageKind::SecureBoost,
        }
    }

    /// The stage a payload body belongs to.
    pub fn of_payload(body: &pb::vertical_payload::Body) -> Self {
        match body {
            pb::vertical_payload::Body::Psi(_) => StageKind::Align,
            pb::vertical_payload::Body::Woe(_) => StageKind::Woe,
            pb::vertical_payload::Body::Lr(_) => StageKind::Lr,
            pb::vertical_payload::Body::Secureboost(_) => StageKind::SecureBoost,
        }
    }
}

/// The stages job `spec` runs, in order.
pub fn stages(spec: &JobSpec) -> Vec<StageKind> {
    use crate::horizontal::ModelSpec as M;
    match &spec.model {
        M::Woe(_) => vec![StageKind::Align, StageKind::Woe],
        M::Logistic(_) => vec![StageKind::Align, StageKind::Lr],
        M::Scorecard(_) => vec![StageKind::Align, StageKind::Woe, StageKind::Lr],
        M::Gbdt(_) => vec![StageKind::Align, StageKind::SecureBoost],
        _ => vec![StageKind::Align],
    }
}
