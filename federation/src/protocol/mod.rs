//! Protocols as sans-IO role state machines.
//!
//! A job runs a protocol: one [`Conductor`] on the coordinator (aggregator, relay, dealer or
//! key holder, as the algorithm needs) and one [`Role`] per party (bank, label holder,
//! feature holder), exchanging typed protobuf messages ([`pb::ConductorMessage`],
//! [`pb::RoleMessage`]). Parties also exchange payloads with each other
//! ([`pb::Payload`], sealed end to end by [`crate::channel`] and relayed by the
//! coordinator). Nothing here reads a clock, opens a socket or uses a global RNG:
//!
//! - the coordinator's driver delivers party messages to [`Conductor::receive`] and answers
//!   each with the [`Receipt`] or [`Rejection`] it returns, calls [`Conductor::close_phase`]
//!   when the phase's deadline passes or every party in [`Conductor::pending`] has answered
//!   or is gone, and persists a checkpoint whenever a step completes
//!   ([`Outbox::step_done`]);
//! - the participant daemon feeds each job's [`PartySession`] (a [`Role`] plus its
//!   channels and directory) and sends what it produces, sealing payloads and pulling
//!   streams lazily so large payloads move with back-pressure;
//! - [`in_memory`] runs a whole federation of any protocol in one process for tests, with
//!   transcripts and hooks for a coordinator that deviates from the protocol.
//!
//! Protocols: [`crate::horizontal`] (secure sums for horizontal LR, scorecard, GBDT and the
//! secure-aggregation benchmark) and [`crate::relay_bench`] (a payload streamed from one
//! party to another through the coordinator).

pub mod in_memory;
mod session;

pub use session::{
    Identity, OutStream, PartyAuth, PartySession, SessionError, SessionOutput, split_checkpoint,
};

use std::collections::BTreeMap;

use fedcredit_models::FeatureSpec;
use fedcredit_proto::pb;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;

/// The cryptographic RNG roles draw keys and masks from: ChaCha20 seeded by the caller (from
/// the OS in the daemons, from a fixed seed in tests).
pub type CsRng = ChaCha20Rng;

/// A [`CsRng`] seeded from the operating system's generator.
pub fn os_rng() -> CsRng {
    use rand::SeedableRng;
    CsRng::from_rng(&mut rand::rng())
}

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// It belongs to a step or phase that has closed (answered "too late"), rather than being
    /// wrong (answered "rejected").
    pub too_late: bool,
    /// Why, for the sender and the audit log.
    pub reason: String,
}

impl Rejection {
    /// A wrong message.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self { too_late: false, reason: reason.into() }
    }

    /// A message for a closed step or phase.
    pub fn too_late(reason: impl Into<String>) -> Self {
        Self { too_late: true, reason: reason.into() }
    }
}

/// An accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receipt;

/// A completed step, recorded with the conductor's checkpoint in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step number, from 0.
    pub step: u64,
    /// For people: "tree 3, level 2".
    pub what: String,
    /// Attempts it took.
    pub attempts: u32,
    /// Parties whose contributions are in it.
    pub contributors: Vec<PartyId>,
    /// Parties of its roster that dropped out (named, even when a restart left them out).
    pub dropped: Vec<PartyId>,
}

/// A finished training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The model artifact as JSON (`fedcredit_models::artifact`), absent for benchmarks.
    pub artifact_json: Option<String>,
    /// Federated validation metrics (`auc`, `ks`, `log_loss`, …) and run figures.
    pub metrics: BTreeMap<String, f64>,
}

/// Where training stands, for progress bars and `fedcredit jobs show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Stage: "binning", "tree 12/100", "epoch 3/20", ….
    pub stage: String,
    /// Units of work done.
    pub done: u64,
    /// Total units of work.
    pub total: u64,
    /// Latest training loss, if the algorithm knows it.
    pub loss: Option<f64>,
    /// Latest federated validation AUC.
    pub valid_auc: Option<f64>,
}

/// What a conductor asks the driver to do.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Messages to parties, in order.
    pub messages: Vec<(PartyId, pb::ConductorMessage)>,
    /// Steps completed since the last drain (persist each with [`Conductor::checkpoint`]).
    pub steps: Vec<StepRecord>,
    /// Training is over.
    pub finished: Option<Outcome>,
}

impl Outbox {
    /// Queues a message to `party`.
    pub fn send(&mut self, party: &PartyId, msg: pb::ConductorMessage) {
        self.messages.push((party.clone(), msg));
    }

    /// Records a completed step.
    pub fn step_done(&mut self, record: StepRecord) {
        self.steps.push(record);
    }
}

/// What a party reports when it (re)joins a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinState {
    /// The version of the state it holds (0 = fresh).
    pub version: u64,
    /// The first step it has not answered (0 = none answered).
    pub next_step: u64,
}

/// The coordinator's side of a protocol.
pub trait Conductor: Send + Sync + std::fmt::Debug {
    /// Starts (or, after a restore, resumes) with the parties ready now and what each
    /// reported. A step that was open runs again under a new step number.
    ///
    /// # Errors
    /// A message for the operator when the protocol cannot run with these parties.
    fn start(
        &mut self,
        parties: &BTreeMap<PartyId, JoinState>,
        out: &mut Outbox,
    ) -> Result<(), String>;

    /// A party message; accepted or rejected (and then nothing changed).
    ///
    /// # Errors
    /// The [`Rejection`] the sender will see.
    fn receive(
        &mut self,
        from: &PartyId,
        msg: pb::RoleMessage,
        out: &mut Outbox,
    ) -> Result<Receipt, Rejection>;

    /// A party (re)joined mid-job with what it reported; the conductor may restart the open
    /// step with it.
    fn rejoin(&mut self, party: &PartyId, state: JoinState, out: &mut Outbox);

    /// A party disconnected: later steps go on without it until it rejoins (the open phase
    /// still waits for it, up to the driver's grace period).
    fn left(&mut self, party: &PartyId);

    /// Parties whose answer the current phase still waits for.
    fn pending(&self) -> Vec<PartyId>;

    /// Ends the current phase (deadline, everyone answered, or the missing parties are gone)
    /// and moves on.
    ///
    /// # Errors
    /// A message for the operator when the job cannot go on (it fails, resumable).
    fn close_phase(&mut self, out: &mut Outbox) -> Result<(), String>;

    /// What it is doing now, for people ("tree 3/100, level 2 (attempt 1, 3 parties)").
    fn status(&self) -> String;

    /// Where training stands.
    fn progress(&self) -> Progress;

    /// Everything needed to resume after a coordinator restart (taken after a completed step),
    /// leaving out the first `logged` entries of the append-only log, which the store holds.
    fn checkpoint(&self, logged: usize) -> Checkpoint;
}

/// A conductor's checkpoint in two parts, so that checkpointing a step costs the same at the
/// hundredth tree as at the first: `state`, small and rewritten after every step, and the new
/// entries of an append-only `log` (a GBDT's finished trees), which the store appends to
/// those it already holds. [`restore_conductor`] takes the state and the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The conductor without its log.
    pub state: Vec<u8>,
    /// Log entries from the `logged` one asked for on.
    pub log: Vec<Vec<u8>>,
}

/// What a role asks the runtime to do.
#[derive(Default)]
pub struct RoleOutbox {
    /// Messages to the conductor.
    pub messages: Vec<pb::RoleMessage>,
    /// Single payload messages to other parties (each sealed per recipient).
    pub payloads: Vec<(Vec<PartyId>, pb::Payload)>,
    /// Streams to other parties, pulled lazily by the runtime.
    pub streams: Vec<OutStream>,
    /// Streams of messages to the conductor (a large set in chunks), pulled lazily by the
    /// runtime after [`RoleOutbox::messages`].
    pub reports: Vec<ReportStream>,
    /// The role's state changed in a way worth a checkpoint, to be stored before any of this
    /// outbox leaves.
    pub checkpoint: bool,
    /// The role's state changed; the checkpoint may be stored after this outbox's messages
    /// leave, but before the role handles its next message (off the critical path: e.g. a
    /// pledge written while the coordinator collects the other parties' uploads).
    pub checkpoint_after_send: bool,
}

/// Messages to the conductor, produced on demand.
pub type ReportStream = Box<dyn Iterator<Item = pb::RoleMessage> + Send>;

impl std::fmt::Debug for RoleOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleOutbox")
            .field("messages", &self.messages)
            .field("payloads", &self.payloads)
            .field("streams", &self.streams)
            .field("reports", &self.reports.len())
            .field("checkpoint", &self.checkpoint)
            .field("checkpoint_after_send", &self.checkpoint_after_send)
            .finish()
    }
}

impl RoleOutbox {
    /// Queues a message to the conductor.
    pub fn send(&mut self, body: pb::role_message::Body) {
        self.messages.push(pb::RoleMessage { body: Some(body) });
    }
}

/// Why a role could not handle a message (the runtime reports it to the conductor as a failed
/// step, or logs it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RoleError(pub String);

/// A party's side of a protocol.
pub trait Role: Send + std::fmt::Debug {
    /// A message from the conductor.
    ///
    /// # Errors
    /// [`RoleError`] when the message is refused (the reason goes to the conductor when the
    /// message opened a step).
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError>;

    /// A payload from another party (already opened and checked by the channel).
    ///
    /// # Errors
    /// [`RoleError`] when it is unexpected.
    fn payload(
        &mut self,
        from: &PartyId,
        payload: pb::Payload,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError>;

    /// The version of the state the role holds (0 = fresh), reported when (re)joining.
    fn state_version(&self) -> u64;

    /// The first protocol step the role has not answered (0 by default), reported when
    /// (re)joining so a resumed coordinator never reuses a step number.
    fn next_step(&self) -> u64 {
        0
    }

    /// The role's state for the party's own checkpoint (never sent anywhere).
    fn checkpoint(&self) -> Vec<u8>;

    /// The party's part of the trained model (vertical jobs: its coefficients, bins or
    /// splits, as JSON), which the daemon keeps after the job succeeded; never sent.
    fn model_part(&self) -> Option<String> {
        None
    }
}

/// The parties' schemas a job starts from: each party's columns as it reported them.
pub type Schemas = BTreeMap<PartyId, Vec<FeatureSpec>>;

/// A conductor for a new run of job `job` (spec `spec`) over parties with `schemas`.
///
/// # Errors
/// A message for the operator naming what does not fit (e.g. a column whose kind differs
/// between parties).
pub fn new_conductor(
    job: &JobId,
    spec: &JobSpec,
    schemas: &Schemas,
) -> Result<Box<dyn Conductor>, String> {
    if spec.vertical.is_some() {
        return Ok(Box::new(crate::vertical::conductor::VerticalConductor::new(
            job, spec, schemas,
        )?));
    }
    match &spec.model {
        crate::horizontal::ModelSpec::RelayBench(b) => {
            let mut c = crate::relay_bench::RelayConductor::new(b)?;
            crate::relay_bench::relay_parties(spec, &mut c);
            Ok(Box::new(c))
        }
        _ => Ok(Box::new(crate::horizontal::conductor::HorizontalConductor::new(
            job, spec, schemas,
        )?)),
    }
}

/// A conductor saved with [`Conductor::checkpoint`].
///
/// # Errors
/// A message when the bytes are not a checkpoint of `spec`'s protocol.
pub fn restore_conductor(
    spec: &JobSpec,
    state: &[u8],
    log: &[Vec<u8>],
) -> Result<Box<dyn Conductor>, String> {
    if spec.vertical.is_some() {
        return Ok(Box::new(crate::vertical::conductor::VerticalConductor::restore(state)?));
    }
    match &spec.model {
        crate::horizontal::ModelSpec::RelayBench(_) => {
            Ok(Box::new(crate::relay_bench::RelayConductor::restore(state)?))
        }
        _ => Ok(Box::new(crate::horizontal::conductor::HorizontalConductor::restore(state, log)?)),
    }
}

/// A party's role in job `spec`, over its training and validation rows (absent for
/// benchmarks), restored from the role's part of its checkpoint when there is one.
///
/// # Errors
/// A message naming the problem (no data for a model that needs it, an unreadable
/// checkpoint).
pub fn new_role(
    spec: &JobSpec,
    me: &PartyId,
    train: Option<fedcredit_models::Dataset>,
    valid: Option<fedcredit_models::Dataset>,
    checkpoint: Option<&[u8]>,
) -> Result<Box<dyn Role>, String> {
    match &spec.model {
        crate::horizontal::ModelSpec::RelayBench(b) => {
            Ok(Box::new(crate::relay_bench::RelayRole::new(me.clone(), b)))
        }
        _ => {
            let p = crate::horizontal::Participant::new(me.clone(), spec, train, valid)
                .map_err(|e| e.to_string())?;
            Ok(Box::new(crate::horizontal::role::HorizontalRole::new(spec, p, checkpoint)?))
        }
    }
}

/// A party's role in vertical job `spec` over its table, restored from the role's part of
/// its checkpoint when there is one.
///
/// # Errors
/// A message naming the problem (the table does not fit the party's part, an unreadable
/// checkpoint).
pub fn new_vertical_role(
    job: &JobId,
    spec: &JobSpec,
    me: &PartyId,
    table: crate::vertical::PartyTable,
    checkpoint: Option<&[u8]>,
    warm_start: Option<String>,
) -> Result<Box<dyn Role>, String> {
    Ok(Box::new(crate::vertical::role::VerticalRole::new(
        job, spec, me, table, checkpoint, warm_start,
    )?))
}

/// Names the first difference between two schemas: the column and its kind at each party.
pub fn schema_difference(
    a_name: &PartyId,
    a: &[FeatureSpec],
    b_name: &PartyId,
    b: &[FeatureSpec],
) -> Option<String> {
    let kind = |f: &FeatureSpec| match &f.kind {
        fedcredit_models::FeatureKind::Numeric => "numeric".to_string(),
        fedcredit_models::FeatureKind::Categorical { levels } => {
            format!("text with {} levels", levels.len())
        }
    };
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x.name != y.name {
            return Some(format!(
                "column {} is `{}` at {a_name} but `{}` at {b_name}",
                i + 1,
                x.name,
                y.name
            ));
        }
        if x.kind != y.kind {
            let detail = match (&x.kind, &y.kind) {
                (
                    fedcredit_models::FeatureKind::Categorical { levels: la },
                    fedcredit_models::FeatureKind::Categorical { levels: lb },
                ) => {
                    let only_a: Vec<&String> =
                        la.iter().filter(|l| !lb.contains(l)).take(3).collect();
                    let only_b: Vec<&String> =
                        lb.iter().filter(|l| !la.contains(l)).take(3).collect();
                    format!(
                        " (levels only at {a_name}: {only_a:?}; only at {b_name}: {only_b:?}; \
                         order must match too)"
                    )
                }
                _ => String::new(),
            };
            return Some(format!(
                "column `{}` is {} at {a_name} but {} at {b_name}{detail}",
                x.name,
                kind(x),
                kind(y)
            ));
        }
    }
    if a.len() != b.len() {
        let (longer, name, n) =
            if a.len() > b.len() { (a, a_name, b.len()) } else { (b, b_name, a.len()) };
        return Some(format!(
            "{name} has {} more column(s), first `{}`",
            longer.len() - n,
            longer[n].name
        ));
    }
    None
}
