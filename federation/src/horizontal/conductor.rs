//! The coordinator's side of a horizontal job, as a protocol [`Conductor`]: it drives the
//! [`Trainer`] one secure sum at a time. Each step is one secure-aggregation round
//! ([`SecAggServer`]) over the parties active now; a step's message to a party carries the
//! model updates that party lacks ([`super::sync::updates_for`]) and the slim typed task.
//!
//! Attempts: a party missing at the upload is dropped and recovered within the attempt
//! ([`crate::secagg`]); a party that rejoins (a restarted participant) while its attempt is
//! still collecting uploads restarts the attempt with it, so the step's sum is the one an
//! uninterrupted run gets; an attempt that fails is retried with the parties still answering
//! unless shares were released; fewer than the job's `min_parties` fail the job, naming who
//! is missing. After every
//! step the conductor's checkpoint is written with the step record.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::sync::{model_version, task_to_wire, updates_for};
use super::{Aggregate, Request, Trainer};
use crate::ids::{JobId, PartyId, RoundId};
use crate::job::JobSpec;
use crate::protocol::{
    Conductor, JoinState, Outbox, Progress, Receipt, Rejection, Schemas, StepRecord,
    schema_difference,
};
use crate::secagg::{
    ClientMessage, RoundHeader, RoundSetup, SecAggConfig, SecAggOutput, SecAggRoundError,
    SecAggServer, ServerMessage, ServerStep,
};
use crate::wire::{client_from_wire, server_to_wire};

/// How the open step sums.
enum Summing {
    Secure(Box<SecAggServer>),
    /// The benchmark baseline: encoded vectors, unmasked.
    Plain {
        header: RoundHeader,
        config: SecAggConfig,
        roster: Vec<PartyId>,
        got: BTreeMap<PartyId, Vec<u64>>,
    },
}

/// The step being summed (not checkpointed: a resumed conductor opens it again).
struct Open {
    step: u64,
    agg: Aggregate,
    task: pb::HorizontalTask,
    summing: Summing,
    attempts: u32,
    /// Parties left out of an attempt of this step (named in the step record).
    dropped: BTreeSet<PartyId>,
    /// Parties that could not do this attempt's task, with why.
    failed: BTreeMap<PartyId, String>,
}

/// The coordinator's side of a horizontal job.
#[derive(Serialize, Deserialize)]
pub struct HorizontalConductor {
    job: JobId,
    spec: JobSpec,
    trainer: Trainer,
    /// Protocol step number of the next step (never reused, also across restarts).
    next_step: u64,
    /// Completed steps (the record numbers, contiguous).
    steps_done: u64,
    /// Model version each party holds, as far as the conductor knows.
    held: BTreeMap<PartyId, u64>,
    /// Parties connected and in the job.
    active: BTreeSet<PartyId>,
    #[serde(skip)]
    open: Option<Open>,
}

impl std::fmt::Debug for HorizontalConductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HorizontalConductor")
            .field("job", &self.job)
            .field("next_step", &self.next_step)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl HorizontalConductor {
    /// A new run over parties that reported `schemas`: every party must have the same
    /// columns, kinds and levels.
    ///
    /// # Errors
    /// The first difference, naming the column and its kind at each party.
    pub fn new(job: &JobId, spec: &JobSpec, schemas: &Schemas) -> Result<Self, String> {
        let mut it = schemas.iter();
        let (first, schema) = it.next().ok_or("no party is ready")?;
        for (p, s) in it {
            if let Some(diff) = schema_difference(first, schema, p, s) {
                return Err(format!("the parties' columns differ: {diff}"));
            }
        }
        let trainer = Trainer::new(spec, schema.clone()).map_err(|e| e.to_string())?;
        Ok(Self {
            job: job.clone(),
            spec: spec.clone(),
            trainer,
            next_step: 0,
            steps_done: 0,
            held: BTreeMap::new(),
            active: BTreeSet::new(),
            open: None,
        })
    }

    /// A conductor saved with [`Conductor::checkpoint`]: its state and its whole log.
    ///
    /// # Errors
    /// A message when the bytes are not such a checkpoint.
    pub fn restore(state: &[u8], log: &[Vec<u8>]) -> Result<Self, String> {
        let mut c: Self =
            serde_json::from_slice(state).map_err(|e| format!("checkpoint cannot be read: {e}"))?;
        c.trainer.restore_log(log).map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// The trainer (tests read its bin edges).
    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    fn config(&self, agg: &Aggregate) -> SecAggConfig {
        SecAggConfig {
            vector_len: agg.vector_len,
            clip: agg.clip,
            frac_bits: self.spec.secagg.frac_bits,
            threshold: self.spec.secagg.threshold,
            degree: self.spec.secagg.degree,
        }
    }

    fn need(&self) -> usize {
        self.spec.min_parties().max(2)
    }

    fn missing(&self, have: &BTreeSet<PartyId>) -> String {
        let m: Vec<&str> =
            self.spec.parties.iter().filter(|p| !have.contains(*p)).map(|p| p.0.as_str()).collect();
        if m.is_empty() { "none".into() } else { m.join(", ") }
    }

    /// Sends the setup of an attempt (with each party's missing updates and the task).
    fn send_setups(&mut self, setups: Vec<(PartyId, RoundSetup)>, out: &mut Outbox) {
        let Some(open) = &self.open else { return };
        let plaintext = matches!(open.summing, Summing::Plain { .. });
        let version = model_version(&open.agg.task);
        for (p, setup) in setups {
            let held = self.held.get(&p).copied().unwrap_or(0);
            let step = pb::HorizontalStep {
                setup: Some((&setup).into()),
                updates: updates_for(&open.agg.task, held),
                task: Some(open.task.clone()),
                plaintext,
            };
            self.held.insert(p.clone(), version);
            out.send(
                &p,
                pb::ConductorMessage { body: Some(pb::conductor_message::Body::Horizontal(step)) },
            );
        }
    }

    /// Opens the next step, or records the outcome.
    fn open_next(&mut self, out: &mut Outbox) -> Result<(), String> {
        let agg = match self.trainer.next_request().map_err(|e| e.to_string())? {
            Request::Finished(o) => {
                out.finished = Some(*o);
                return Ok(());
            }
            Request::Aggregate(a) => a,
        };
        let roster: Vec<PartyId> = self.active.iter().cloned().collect();
        if roster.len() < self.need() {
            return Err(format!(
                "{} ({}) needs {} parties; {} active, missing: {}",
                agg.what,
                self.next_step,
                self.need(),
                roster.len(),
                self.missing(&self.active)
            ));
        }
        let header =
            RoundHeader { job: self.job.clone(), round: RoundId(self.next_step), attempt: 0 };
        let config = self.config(&agg);
        let task = task_to_wire(&agg.task);
        let (summing, setups) = if self.spec.model.plaintext() {
            let setup = RoundSetup { header: header.clone(), config, roster: roster.clone() };
            let setups = roster.iter().map(|p| (p.clone(), setup.clone())).collect();
            (Summing::Plain { header, config, roster, got: BTreeMap::new() }, setups)
        } else {
            let (server, msgs) = SecAggServer::new(header, config, &roster)
                .map_err(|e| format!("{}: {e}", agg.what))?;
            (Summing::Secure(Box::new(server)), setups_of(msgs))
        };
        self.open = Some(Open {
            step: self.next_step,
            agg,
            task,
            summing,
            attempts: 1,
            dropped: BTreeSet::new(),
            failed: BTreeMap::new(),
        });
        self.send_setups(setups, out);
        Ok(())
    }

    /// Starts another attempt of the open step with `roster`.
    fn restart(
        &mut self,
        server_next: SecAggServer,
        msgs: Vec<(PartyId, ServerMessage)>,
        out: &mut Outbox,
    ) {
        if let Some(open) = &mut self.open {
            open.summing = Summing::Secure(Box::new(server_next));
            open.attempts += 1;
            open.failed.clear();
        }
        self.send_setups(setups_of(msgs), out);
    }

    fn finish_step(&mut self, output: SecAggOutput, out: &mut Outbox) -> Result<(), String> {
        let Some(open) = self.open.take() else { return Ok(()) };
        self.trainer
            .absorb(&output.sum, &output.contributors)
            .map_err(|e| format!("{}: {e}", open.agg.what))?;
        let mut dropped = open.dropped;
        dropped.extend(output.dropped);
        out.step_done(StepRecord {
            step: self.steps_done,
            what: open.agg.what,
            attempts: open.attempts,
            contributors: output.contributors,
            dropped: dropped.into_iter().collect(),
        });
        self.next_step = open.step + 1;
        self.steps_done += 1;
        self.open_next(out)
    }

    /// The open attempt ended without a sum: retry with the parties still answering, or fail.
    fn attempt_failed(&mut self, why: String, out: &mut Outbox) -> Result<(), String> {
        let need = self.need();
        let max_attempts = 2 + self.spec.parties.len() as u32;
        let base_config = self.open.as_ref().map(|o| self.config(&o.agg));
        let Some(open) = &mut self.open else { return Ok(()) };
        let Summing::Secure(server) = &open.summing else {
            return Err(why);
        };
        let live: BTreeSet<PartyId> = server
            .live_parties()
            .iter()
            .filter(|p| !open.failed.contains_key(*p) && self.active.contains(*p))
            .cloned()
            .collect();
        for p in server.roster() {
            if !live.contains(p) {
                open.dropped.insert(p.clone());
            }
        }
        let reasons: Vec<String> = open.failed.iter().map(|(p, r)| format!("{p}: {r}")).collect();
        let why = if reasons.is_empty() { why } else { format!("{why} ({})", reasons.join("; ")) };
        let (step, what) = (open.step, open.agg.what.clone());
        let refused = match server.retry() {
            Err(e @ SecAggRoundError::Refused(_)) => Some(e.to_string()),
            _ => None,
        };
        let header =
            RoundHeader { attempt: server.header().attempt + 1, ..server.header().clone() };
        let attempts = open.attempts;
        let config = base_config.ok_or("no open step")?;
        if let Some(e) = refused {
            return Err(format!("round {step} ({what}) failed: {why}; {e}"));
        }
        if live.len() < need || attempts >= max_attempts {
            return Err(format!(
                "round {step} ({what}) failed: {why}; {} parties left, the job needs {need}; missing: {}",
                live.len(),
                self.missing(&live)
            ));
        }
        let roster: Vec<PartyId> = live.into_iter().collect();
        let (next, msgs) =
            SecAggServer::new(header, config, &roster).map_err(|e| format!("round {step}: {e}"))?;
        self.restart(next, msgs, out);
        Ok(())
    }

    fn close_plain(&mut self, out: &mut Outbox) -> Result<(), String> {
        let Some(open) = &self.open else { return Ok(()) };
        let Summing::Plain { header, config, roster, got } = &open.summing else { return Ok(()) };
        if got.len() < 2 {
            return Err(format!("{header}: only {} vectors arrived", got.len()));
        }
        let fixed = config.fixed_point(roster.len()).map_err(|e| e.to_string())?;
        let mut ring_sum = vec![0u64; config.vector_len];
        for v in got.values() {
            for (s, x) in ring_sum.iter_mut().zip(v) {
                *s = fixed.add(*s, *x);
            }
        }
        let contributors: Vec<PartyId> = got.keys().cloned().collect();
        let dropped = roster.iter().filter(|p| !got.contains_key(*p)).cloned().collect();
        let output = SecAggOutput {
            header: header.clone(),
            sum: fixed.decode_vec(&ring_sum),
            ring_sum,
            fixed,
            error_bound: fixed.sum_error_bound(contributors.len()),
            contributors,
            dropped,
        };
        self.finish_step(output, out)
    }
}

fn setups_of(msgs: Vec<(PartyId, ServerMessage)>) -> Vec<(PartyId, RoundSetup)> {
    msgs.into_iter()
        .filter_map(|(p, m)| match m {
            ServerMessage::Setup(s) => Some((p, s)),
            _ => None,
        })
        .collect()
}

fn rejection(e: &SecAggRoundError) -> Rejection {
    match e {
        SecAggRoundError::TooLate { .. } => Rejection::too_late(e.to_string()),
        SecAggRoundError::WrongRound { expected, got }
            if got.round < expected.round
                || (got.round == expected.round && got.attempt < expected.attempt) =>
        {
            Rejection::too_late(e.to_string())
        }
        _ => Rejection::rejected(e.to_string()),
    }
}

impl Conductor for HorizontalConductor {
    fn start(
        &mut self,
        parties: &BTreeMap<PartyId, JoinState>,
        out: &mut Outbox,
    ) -> Result<(), String> {
        self.active = parties.keys().cloned().collect();
        self.held = parties.iter().map(|(p, s)| (p.clone(), s.version)).collect();
        // A step the parties already answered (the coordinator stopped before recording it)
        // runs again under a new number: they never answer a step number twice, and the same
        // task with the same roster gives the same sum.
        let answered = parties.values().map(|s| s.next_step).max().unwrap_or(0);
        self.next_step = self.next_step.max(answered);
        self.open = None;
        self.open_next(out)
    }

    fn receive(
        &mut self,
        from: &PartyId,
        msg: pb::RoleMessage,
        _out: &mut Outbox,
    ) -> Result<Receipt, Rejection> {
        let Some(open) = &mut self.open else {
            return Err(Rejection::too_late("no step is open"));
        };
        match msg.body {
            Some(pb::role_message::Body::Secagg(wire)) => {
                let msg = client_from_wire(wire).map_err(|e| Rejection::rejected(e.to_string()))?;
                match &mut open.summing {
                    Summing::Secure(server) => {
                        server.receive(from, msg).map(|_| Receipt).map_err(|e| rejection(&e))
                    }
                    Summing::Plain { header, config, roster, got } => match msg {
                        ClientMessage::MaskedInput(m)
                            if &m.header == header && roster.contains(from) =>
                        {
                            if m.masked.len() != config.vector_len {
                                return Err(Rejection::rejected("wrong vector length"));
                            }
                            if got.contains_key(from) {
                                return Err(Rejection::rejected("already received"));
                            }
                            got.insert(from.clone(), m.masked);
                            Ok(Receipt)
                        }
                        _ => Err(Rejection::rejected("not expected in a plaintext round")),
                    },
                }
            }
            Some(pb::role_message::Body::Failed(f)) => {
                if f.step != open.step {
                    return Err(Rejection::too_late(format!("round {} is not open", f.step)));
                }
                open.failed.insert(from.clone(), f.reason);
                Ok(Receipt)
            }
            _ => Err(Rejection::rejected("not a horizontal-job message")),
        }
    }

    fn rejoin(&mut self, party: &PartyId, state: JoinState, out: &mut Outbox) {
        self.held.insert(party.clone(), state.version);
        self.next_step = self.next_step.max(state.next_step);
        self.active.insert(party.clone());
        // A party that restarted mid-attempt lost its round secrets. While the attempt is still
        // collecting uploads (no unmask request has gone out, so no party has released or is
        // about to release anything), restart it with the party; later, the party counts as
        // dropped after its upload and the attempt finishes without its answer.
        let restart = match &self.open {
            Some(Open { summing: Summing::Secure(server), .. }) => {
                server.roster().contains(party)
                    && server.phase() == crate::secagg::Phase::MaskedInput
            }
            _ => false,
        };
        if !restart {
            return;
        }
        let Some(Open { summing: Summing::Secure(server), agg, .. }) = &self.open else { return };
        let header =
            RoundHeader { attempt: server.header().attempt + 1, ..server.header().clone() };
        let roster = server.roster().to_vec();
        let config = self.config(agg);
        if let Ok((next, msgs)) = SecAggServer::new(header, config, &roster) {
            self.restart(next, msgs, out);
        }
    }

    fn left(&mut self, party: &PartyId) {
        self.active.remove(party);
    }

    fn pending(&self) -> Vec<PartyId> {
        let Some(open) = &self.open else { return Vec::new() };
        let pending = match &open.summing {
            Summing::Secure(server) => server.pending(),
            Summing::Plain { roster, got, .. } => {
                roster.iter().filter(|p| !got.contains_key(*p)).cloned().collect()
            }
        };
        pending.into_iter().filter(|p| !open.failed.contains_key(p)).collect()
    }

    fn close_phase(&mut self, out: &mut Outbox) -> Result<(), String> {
        let Some(open) = &mut self.open else { return Ok(()) };
        let step = match &mut open.summing {
            Summing::Plain { .. } => return self.close_plain(out),
            Summing::Secure(server) => {
                let phase = server.phase();
                server.close_phase().map_err(|e| (phase, e))
            }
        };
        match step {
            Ok(ServerStep::Send(msgs)) => {
                for (p, m) in msgs {
                    let wire = server_to_wire(&m);
                    out.send(
                        &p,
                        pb::ConductorMessage {
                            body: Some(pb::conductor_message::Body::Secagg(wire)),
                        },
                    );
                }
                Ok(())
            }
            Ok(ServerStep::Done(output)) => self.finish_step(output, out),
            Err((phase, e)) => self.attempt_failed(format!("phase {phase}: {e}"), out),
        }
    }

    fn status(&self) -> String {
        match &self.open {
            None => "between steps".into(),
            Some(o) => {
                let (phase, n) = match &o.summing {
                    Summing::Secure(s) => (s.phase().to_string(), s.roster().len()),
                    Summing::Plain { roster, .. } => ("plaintext".into(), roster.len()),
                };
                format!("{} (attempt {}, {n} parties, {phase})", o.agg.what, o.attempts)
            }
        }
    }

    fn progress(&self) -> Progress {
        self.trainer.progress()
    }

    fn checkpoint(&self, logged: usize) -> crate::protocol::Checkpoint {
        crate::protocol::Checkpoint {
            state: serde_json::to_vec(self).unwrap_or_default(),
            log: self.trainer.log_entries(logged),
        }
    }
}
