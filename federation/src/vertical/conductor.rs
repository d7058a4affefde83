//! The coordinator's side of a vertical job: runs the job's stages one after the other, each
//! as a protocol step with its own number (never reused, also across restarts), and hands
//! each party report to the open stage.
//!
//! Every party is needed in every stage (a vertical model needs every party's columns), so a
//! party that leaves fails the open stage once the driver's grace period is over; a party
//! that rejoins restarts the open stage under a new step number. Finished stages are
//! checkpointed with their results; a resumed coordinator reopens the first unfinished one.

use std::collections::BTreeMap;

use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::{StageConductor, StageCtx, StageDone, StageKind, StageOutbox, VerticalSpec, stages};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{
    Checkpoint, Conductor, CsRng, JoinState, Outbox, Outcome, Progress, Receipt, Rejection,
    Schemas, StepRecord,
};
use rand::SeedableRng;

/// The coordinator's side of a vertical job.
#[derive(Debug, Serialize, Deserialize)]
pub struct VerticalConductor {
    job: JobId,
    spec: JobSpec,
    vertical: VerticalSpec,
    schemas: Schemas,
    /// Stages finished, in order.
    done: Vec<StageDone>,
    /// Step number of the next stage run (never reused).
    next_step: u64,
    /// Step records written so far (contiguous).
    steps_done: u64,
    /// Attempts of the open stage.
    attempts: u32,
    /// The open stage and its step number (not checkpointed: a resumed coordinator reopens it).
    #[serde(skip)]
    open: Option<(u64, Box<dyn StageConductor>)>,
    /// Why the job cannot go on, once known.
    #[serde(skip)]
    failure: Option<String>,
    /// The coordinator's cryptographic generator (the dealer's seeds come from it), drawn
    /// from the operating system's; never checkpointed: a resumed coordinator reopens the
    /// open stage under a new step with fresh seeds, so no mask is ever reused.
    #[serde(skip, default = "crate::protocol::os_rng")]
    rng: CsRng,
}

impl VerticalConductor {
    /// A new run of vertical job `spec`.
    ///
    /// # Errors
    /// A message for the operator when the parties' schemas do not fit the job (the label
    /// holder must be among them).
    pub fn new(job: &JobId, spec: &JobSpec, schemas: &Schemas) -> Result<Self, String> {
        let vertical = spec.vertical.clone().ok_or("not a vertical job")?;
        for p in &spec.parties {
            if !schemas.contains_key(p) {
                return Err(format!("{p} has not joined"));
            }
        }
        Ok(Self {
            job: job.clone(),
            spec: spec.clone(),
            vertical,
            schemas: schemas.clone(),
            done: Vec::new(),
            next_step: 0,
            steps_done: 0,
            attempts: 0,
            open: None,
            failure: None,
            rng: crate::protocol::os_rng(),
        })
    }

    /// The same conductor with its generator seeded from `seed` (tests that must replay).
    #[doc(hidden)]
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = CsRng::seed_from_u64(seed);
        self
    }

    /// A new run of vertical job `spec` whose alignment stage already finished with `rows`
    /// common rows (tests and benchmarks of later stages while the alignment stage is driven
    /// elsewhere): the first stage it opens is the one after alignment.
    ///
    /// # Errors
    /// As [`VerticalConductor::new`].
    #[doc(hidden)]
    pub fn after_alignment(
        job: &JobId,
        spec: &JobSpec,
        schemas: &Schemas,
        rows: u64,
    ) -> Result<Self, String> {
        let mut c = Self::new(job, spec, schemas)?;
        c.done.push(StageDone {
            what: format!("aligned {rows} common rows (given)"),
            metrics: BTreeMap::from([("intersection".to_string(), rows as f64)]),
            result: super::StageResult::Aligned { rows },
        });
        Ok(c)
    }

    /// A conductor saved with [`Conductor::checkpoint`].
    ///
    /// # Errors
    /// A message when the bytes are not such a checkpoint.
    pub fn restore(state: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(state).map_err(|e| format!("checkpoint cannot be read: {e}"))
    }

    fn ctx(&self, step: u64) -> StageCtx<'_> {
        StageCtx {
            job: &self.job,
            spec: &self.spec,
            vertical: &self.vertical,
            parties: &self.spec.parties,
            schemas: &self.schemas,
            step,
        }
    }

    /// The stage to run next, if any.
    fn next_stage(&self) -> Option<StageKind> {
        stages(&self.spec).get(self.done.len()).copied()
    }

    fn new_stage(&mut self, kind: StageKind) -> Result<Box<dyn StageConductor>, String> {
        Ok(match kind {
            StageKind::Align => Box::new(super::psi::PsiConductor::new(&self.spec)?),
            StageKind::Woe => Box::new(super::woe::WoeConductor::new(&self.spec, &self.done)?),
            StageKind::Lr => {
                Box::new(super::lr::LrConductor::new(&self.spec, &self.done, &mut self.rng)?)
            }
            StageKind::SecureBoost => {
                Box::new(super::secureboost::SbConductor::new(&self.spec, &self.done)?)
            }
        })
    }

    /// Opens the next stage (or finishes the job) under a fresh step number.
    fn open_next(&mut self, out: &mut Outbox) -> Result<(), String> {
        let Some(kind) = self.next_stage() else {
            out.finished = Some(self.outcome());
            self.open = None;
            return Ok(());
        };
        let step = self.next_step;
        self.next_step += 1;
        self.attempts += 1;
        let mut stage = self.new_stage(kind)?;
        let mut so = StageOutbox::default();
        stage.start(&self.ctx(step), &mut so)?;
        self.open = Some((step, stage));
        self.drain(so, out)
    }

    /// Sends what the stage asked for; records a finished stage and opens the next.
    fn drain(&mut self, so: StageOutbox, out: &mut Outbox) -> Result<(), String> {
        let step = self.open.as_ref().map_or(0, |(s, _)| *s);
        for (p, body) in so.messages {
            out.send(
                &p,
                pb::ConductorMessage {
                    body: Some(pb::conductor_message::Body::Vertical(pb::VerticalStep {
                        step,
                        body: Some(body),
                    })),
                },
            );
        }
        if let Some(why) = so.failed {
            return Err(why);
        }
        if let Some(done) = so.done {
            out.step_done(StepRecord {
                step: self.steps_done,
                what: done.what.clone(),
                attempts: self.attempts,
                contributors: self.spec.parties.clone(),
                dropped: Vec::new(),
            });
            self.steps_done += 1;
            self.attempts = 0;
            self.done.push(done);
            self.open = None;
            return self.open_next(out);
        }
        Ok(())
    }

    /// The job's outcome: every stage's figures; the artifact of the last stage that makes
    /// one (the WOE/IV report of a `woe` job).
    fn outcome(&self) -> Outcome {
        let mut metrics = BTreeMap::new();
        let mut artifact_json = None;
        let mut iv = None;
        for d in &self.done {
            metrics.extend(d.metrics.clone());
            match &d.result {
                super::StageResult::Woe { iv_json } => {
                    artifact_json = Some(iv_json.clone());
                    iv = serde_json::from_str::<super::woe::IvReport>(iv_json).ok();
                }
                super::StageResult::Model { artifact_json: a } => {
                    // A scorecard's reference carries the IV report of its WOE/IV stage.
                    let with_iv = super::model::VerticalModelRef::from_json(a).ok().map(|mut r| {
                        r.iv = iv.take();
                        serde_json::to_string(&r).unwrap_or_else(|_| a.clone())
                    });
                    artifact_json = Some(with_iv.unwrap_or_else(|| a.clone()));
                }
                super::StageResult::Aligned { .. } => {}
            }
        }
        Outcome { artifact_json, metrics }
    }

    fn stage_name(&self) -> &'static str {
        self.next_stage().map_or("done", StageKind::as_str)
    }
}

impl Conductor for VerticalConductor {
    fn start(
        &mut self,
        parties: &BTreeMap<PartyId, JoinState>,
        out: &mut Outbox,
    ) -> Result<(), String> {
        if let Some(missing) = self.spec.parties.iter().find(|p| !parties.contains_key(*p)) {
            return Err(format!("a vertical job needs every party; {missing} is not ready"));
        }
        // A step a party has answered is never reused.
        self.next_step = parties.values().map(|s| s.next_step).fold(self.next_step, u64::max);
        self.open_next(out)
    }

    fn receive(
        &mut self,
        from: &PartyId,
        msg: pb::RoleMessage,
        out: &mut Outbox,
    ) -> Result<Receipt, Rejection> {
        let Some(pb::role_message::Body::Vertical(report)) = msg.body else {
            return Err(Rejection::rejected("not a vertical-job message"));
        };
        let Some((step, _)) = &self.open else {
            return Err(Rejection::too_late("no stage is open"));
        };
        if report.step != *step {
            return Err(Rejection::too_late(format!(
                "step {} is not the open step {step}",
                report.step
            )));
        }
        let body = report.body.ok_or_else(|| Rejection::rejected("report without a body"))?;
        if let pb::vertical_report::Body::Failed(why) = body {
            // Parties name themselves in their reasons; name the sender once.
            let named = why.starts_with(&format!("{from}: "));
            self.failure = Some(if named { why } else { format!("{from}: {why}") });
            return Ok(Receipt);
        }
        let ctx_step = *step;
        let mut so = StageOutbox::default();
        {
            let ctx = StageCtx {
                job: &self.job,
                spec: &self.spec,
                vertical: &self.vertical,
                parties: &self.spec.parties,
                schemas: &self.schemas,
                step: ctx_step,
            };
            let (_, stage) = self.open.as_mut().ok_or_else(|| Rejection::too_late("closed"))?;
            stage.receive(&ctx, from, body, &mut so)?;
        }
        if let Err(e) = self.drain(so, out) {
            self.failure = Some(e);
        }
        Ok(Receipt)
    }

    fn rejoin(&mut self, _party: &PartyId, state: JoinState, out: &mut Outbox) {
        // The party lost the open stage's state: run the stage again, under a new number.
        self.next_step = self.next_step.max(state.next_step);
        if self.open.is_some() && self.failure.is_none() {
            self.open = None;
            if let Err(e) = self.open_next(out) {
                self.failure = Some(e);
            }
        }
    }

    fn left(&mut self, _party: &PartyId) {}

    fn pending(&self) -> Vec<PartyId> {
        if self.failure.is_some() {
            return Vec::new();
        }
        self.open.as_ref().map(|(_, s)| s.pending()).unwrap_or_default()
    }

    fn close_phase(&mut self, _out: &mut Outbox) -> Result<(), String> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        match &self.open {
            None => Ok(()),
            Some((_, stage)) => {
                let missing: Vec<String> = stage.pending().iter().map(|p| p.0.clone()).collect();
                Err(format!(
                    "{}: no answer from {}",
                    stage.status(),
                    if missing.is_empty() { "anyone".into() } else { missing.join(", ") }
                ))
            }
        }
    }

    fn status(&self) -> String {
        match &self.open {
            Some((step, s)) => format!("step {step}: {}", s.status()),
            None => format!("stage {}", self.stage_name()),
        }
    }

    fn progress(&self) -> Progress {
        // Within a stage that counts (epochs, trees), its own progress; else stages.
        if let Some((step, p)) = self.open.as_ref().and_then(|(s, c)| Some((s, c.progress()?))) {
            return Progress { stage: format!("step {step}: {}", p.stage), ..p };
        }
        let total = stages(&self.spec).len() as u64;
        Progress { stage: self.status(), done: self.done.len() as u64, total, ..Default::default() }
    }

    fn checkpoint(&self, _logged: usize) -> Checkpoint {
        Checkpoint { state: serde_json::to_vec(self).unwrap_or_default(), log: Vec::new() }
    }
}
