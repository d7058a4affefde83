//! The round driver: one task per job that gathers the job's parties, checks their schemas,
//! and runs the trainer's secure sums one round at a time, with a deadline per phase.
//!
//! Each round is a secure-aggregation round (Bonawitz et al., CCS 2017): a party that drops
//! before its shares went out restarts the round without it; one that drops later is
//! recovered from its neighbours' shares; fewer survivors than the threshold fail the round,
//! and the job with it — cleanly, resumable from its last completed round. After every round
//! the trainer's checkpoint and the round record are written in one transaction, so a
//! coordinator killed at any instant resumes from the last completed round.
//!
//! Everything a party sends reaches this task through the job's inbox; what the task
//! answers (accepted, rejected with a reason, too late) goes back as an `Ack` with the
//! message's sequence number. XayNet-style typed phases: each phase has a member set and
//! a deadline, and closes early once every member answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedcredit_federation::horizontal::{Aggregate, Outcome, Request, Trainer};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::secagg::{
    ClientMessage, RoundHeader, RoundSetup, SecAggConfig, SecAggOutput, SecAggRoundError,
    SecAggServer, ServerMessage, ServerStep,
};
use fedcredit_federation::{JobId, PartyId, RoundId};
use fedcredit_models::{FeatureKind, FeatureSpec};
use fedcredit_proto::convert::server_to_wire;
use fedcredit_proto::pb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::registry::PartyEvent;
use crate::store::{Direction, ModelRecord, RoundRecord, TranscriptEntry};
use crate::{Shared, now_ms};

/// What a party sent that concerns a job.
#[derive(Debug)]
pub enum JobInput {
    /// The answer to a job offer.
    Reply {
        /// Sender (from its certificate).
        party: PartyId,
        /// Stream sequence number, for the ack.
        seq: u64,
        /// The reply.
        reply: pb::JobReply,
    },
    /// A secure-aggregation message.
    SecAgg {
        /// Sender (from its certificate).
        party: PartyId,
        /// Stream sequence number, for the ack.
        seq: u64,
        /// The decoded message.
        msg: ClientMessage,
        /// Its size on the wire, for the audit log.
        bytes: usize,
    },
    /// The party could not compute its contribution.
    TaskFailed {
        /// Sender (from its certificate).
        party: PartyId,
        /// Stream sequence number, for the ack.
        seq: u64,
        /// The round it gave up on.
        header: RoundHeader,
        /// Why.
        reason: String,
    },
}

/// How a job run ended without an outcome.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An operator cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The coordinator is shutting down; the job resumes at the next start.
    #[error("coordinator shutting down")]
    Shutdown,
    /// The job cannot go on; the message says why (resumable with `jobs resume`).
    #[error("{0}")]
    Failed(String),
}

fn failed(msg: impl Into<String>) -> JobError {
    JobError::Failed(msg.into())
}

/// The job task's state.
pub(crate) struct Runner {
    shared: Arc<Shared>,
    job: JobId,
    spec: JobSpec,
    inbox: mpsc::Receiver<JobInput>,
    events: broadcast::Receiver<PartyEvent>,
    cancel: CancellationToken,
    /// Parties that accepted the job since they last connected, with their schemas.
    ready: BTreeMap<PartyId, Vec<FeatureSpec>>,
    /// Parties that failed the current round's task or disconnected during it.
    gone: BTreeSet<PartyId>,
    /// The job's columns, once the first parties agreed on them.
    features: Option<Vec<FeatureSpec>>,
}

impl Runner {
    pub(crate) fn new(
        shared: Arc<Shared>,
        job: JobId,
        spec: JobSpec,
        inbox: mpsc::Receiver<JobInput>,
        cancel: CancellationToken,
    ) -> Self {
        let events = shared.registry.subscribe();
        Self {
            shared,
            job,
            spec,
            inbox,
            events,
            cancel,
            ready: BTreeMap::new(),
            gone: BTreeSet::new(),
            features: None,
        }
    }

    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(
            self.spec.phase_timeout_secs.unwrap_or(self.shared.config.round_timeout_secs),
        )
    }

    fn in_job(&self, p: &PartyId) -> bool {
        self.spec.parties.contains(p)
    }

    fn status(&self, s: impl Into<String>) {
        self.shared.publish_status(&self.job, s.into());
    }

    async fn ack(&self, party: &PartyId, ack: pb::Ack) {
        let msg = pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::Ack(ack)) };
        self.shared.registry.send(party, msg).await;
    }

    fn audit(
        &self,
        party: &PartyId,
        round: Option<u64>,
        dir: Direction,
        kind: &str,
        bytes: usize,
        outcome: &str,
    ) {
        self.shared.audit(party, Some(&self.job), round, dir, kind, bytes, outcome);
    }

    /// Keeps a message as received (`record_transcripts`).
    fn record(&self, party: &PartyId, msg: &ClientMessage, ring_bits: u32) {
        let h = msg.header();
        let (kind, bits, payload) = match msg {
            ClientMessage::MaskedInput(m) => (
                "masked_input",
                ring_bits,
                fedcredit_crypto::secagg::pack_elements(&m.masked, ring_bits),
            ),
            other => {
                let kind = match other {
                    ClientMessage::AdvertiseKeys(_) => "advertise_keys",
                    ClientMessage::ShareKeys(_) => "share_keys",
                    _ => "unmask",
                };
                (
                    kind,
                    0,
                    prost::Message::encode_to_vec(&fedcredit_proto::convert::client_to_wire(
                        other, ring_bits,
                    )),
                )
            }
        };
        let entry = TranscriptEntry {
            job_id: self.job.0.clone(),
            round: u32::try_from(h.round.0).unwrap_or(u32::MAX),
            attempt: h.attempt,
            party: party.0.clone(),
            kind: kind.into(),
            ring_bits: bits,
            payload,
        };
        if let Err(e) = self.shared.store.record_transcript(&entry) {
            warn!(error = %e, "transcript write failed");
        }
    }

    async fn offer(&self, party: &PartyId) {
        let offer = pb::JobOffer { job_id: self.job.0.clone(), spec_json: self.spec.to_json() };
        let msg =
            pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::JobOffer(offer)) };
        if self.shared.registry.send(party, msg).await {
            self.audit(party, None, Direction::Out, "job_offer", 0, "sent");
        }
    }

    /// Handles an input that is not part of a running round (offers, stale messages).
    async fn handle_aside(&mut self, input: JobInput) -> Result<(), JobError> {
        match input {
            JobInput::Reply { party, seq, reply } => {
                if !self.in_job(&party) {
                    self.audit(
                        &party,
                        None,
                        Direction::In,
                        "job_reply",
                        0,
                        "rejected: not in the job",
                    );
                    self.ack(
                        &party,
                        pb::Ack::rejected(format!("{party} is not in job {}", self.job))
                            .for_seq(seq),
                    )
                    .await;
                    return Ok(());
                }
                self.ack(&party, pb::Ack::accepted().for_seq(seq)).await;
                self.audit(
                    &party,
                    None,
                    Direction::In,
                    "job_reply",
                    0,
                    if reply.accepted { "accepted" } else { "declined" },
                );
                if !reply.accepted {
                    return Err(failed(format!("{party} declined the job: {}", reply.reason)));
                }
                let schema = schema_from_wire(&reply.schema);
                if let Some(f) = &self.features
                    && *f != schema
                {
                    // A party that comes back with other columns cannot join the sums.
                    warn!(%party, "party rejoined with different columns; left out");
                    self.audit(
                        &party,
                        None,
                        Direction::In,
                        "job_reply",
                        0,
                        "left out: columns differ",
                    );
                    return Ok(());
                }
                info!(%party, columns = schema.len(), "party joined");
                self.ready.insert(party, schema);
            }
            JobInput::SecAgg { party, seq, msg, bytes } => {
                self.audit(
                    &party,
                    Some(msg.header().round.0),
                    Direction::In,
                    "secagg",
                    bytes,
                    "too late: no round open",
                );
                self.ack(
                    &party,
                    pb::Ack::too_late(format!("{} is not open", msg.header())).for_seq(seq),
                )
                .await;
            }
            JobInput::TaskFailed { party, seq, header, reason } => {
                warn!(%party, round = %header.round, %reason, "task failed outside a round");
                self.ack(&party, pb::Ack::too_late(format!("{header} is not open")).for_seq(seq))
                    .await;
            }
        }
        Ok(())
    }

    async fn handle_event(&mut self, ev: Result<PartyEvent, broadcast::error::RecvError>) {
        match ev {
            Ok(PartyEvent::Connected(p)) if self.in_job(&p) => {
                // A reconnected party may have restarted: it joins again from the offer.
                self.ready.remove(&p);
                self.offer(&p).await;
            }
            Ok(PartyEvent::Disconnected(p)) if self.in_job(&p) => {
                info!(party = %p, "party disconnected");
                self.ready.remove(&p);
                self.gone.insert(p);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed events: re-derive from the registry.
                let connected = self.shared.registry.connected();
                self.ready.retain(|p, _| connected.contains(p));
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    fn check_stop(&self) -> Result<(), JobError> {
        if self.shared.shutdown.is_cancelled() {
            Err(JobError::Shutdown)
        } else if self.cancel.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Waits until `want` parties are ready, or until `deadline` with at least `need`.
    async fn gather(
        &mut self,
        want: usize,
        need: usize,
        deadline: Instant,
    ) -> Result<(), JobError> {
        let give_up = deadline + self.phase_timeout() * 10;
        loop {
            self.check_stop()?;
            let ready = self.ready.len();
            let now = Instant::now();
            if ready >= want || (ready >= need && now >= deadline) {
                return Ok(());
            }
            if now >= give_up {
                let missing: Vec<String> = self
                    .spec
                    .parties
                    .iter()
                    .filter(|p| !self.ready.contains_key(*p))
                    .map(|p| p.0.clone())
                    .collect();
                return Err(failed(format!(
                    "only {ready} of the {need} parties needed are ready; missing: {}",
                    missing.join(", ")
                )));
            }
            let waiting: Vec<&str> = self
                .spec
                .parties
                .iter()
                .filter(|p| !self.ready.contains_key(*p))
                .map(|p| p.0.as_str())
                .collect();
            self.status(format!("waiting for {}", waiting.join(", ")));
            let wake = if ready >= need { deadline } else { give_up };
            tokio::select! {
                input = self.inbox.recv() => match input {
                    Some(i) => self.handle_aside(i).await?,
                    None => return Err(JobError::Shutdown),
                },
                ev = self.events.recv() => self.handle_event(ev).await,
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                _ = self.shared.shutdown.cancelled() => return Err(JobError::Shutdown),
            }
        }
    }

    /// The job's columns: every ready party must report the same.
    fn features(&self) -> Result<Vec<FeatureSpec>, JobError> {
        let mut it = self.ready.iter();
        let Some((first, schema)) = it.next() else {
            return Err(failed("no party is ready"));
        };
        for (p, s) in it {
            if s != schema {
                let names = |s: &[FeatureSpec]| {
                    s.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", ")
                };
                return Err(failed(format!(
                    "{p}'s columns differ from {first}'s: [{}] vs [{}] (names, order, kinds and categorical levels must match)",
                    names(s),
                    names(schema)
                )));
            }
        }
        Ok(schema.clone())
    }

    /// Runs the job to its outcome.
    pub(crate) async fn run(mut self) -> Result<Outcome, JobError> {
        let record = self
            .shared
            .store
            .job(&self.job.0)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("job vanished from the store"))?;
        for p in self.shared.registry.connected() {
            if self.in_job(&p) {
                self.offer(&p).await;
            }
        }
        let timeout = self.phase_timeout();
        let all = self.spec.parties.len();
        let need = self.spec.min_parties();
        self.gather(all, need, Instant::now() + timeout * 2).await?;
        let features = self.features()?;
        self.features = Some(features.clone());
        let mut trainer = match &record.checkpoint {
            Some(bytes) if record.rounds_done > 0 => {
                let t = Trainer::restore(bytes).map_err(|e| failed(e.to_string()))?;
                if t.features() != features.as_slice() {
                    return Err(failed("the parties' columns changed since the job started"));
                }
                info!(rounds_done = record.rounds_done, "resuming from checkpoint");
                t
            }
            _ => Trainer::new(&self.spec, features).map_err(|e| failed(e.to_string()))?,
        };
        let mut round = u64::from(record.rounds_done);
        loop {
            self.check_stop()?;
            match trainer.next_request().map_err(|e| failed(e.to_string()))? {
                Request::Finished(outcome) => return Ok(*outcome),
                Request::Aggregate(agg) => {
                    self.gather(all, need, Instant::now()).await?;
                    let started = now_ms();
                    let span = info_span!("round", round, what = %agg.what);
                    let (out, attempts) = self.run_round(round, &agg).instrument(span).await?;
                    trainer
                        .absorb(&out.sum, &out.contributors)
                        .map_err(|e| failed(format!("round {round}: {e}")))?;
                    let progress = trainer.progress();
                    let rec = RoundRecord {
                        job_id: self.job.0.clone(),
                        round: u32::try_from(round).map_err(|_| failed("too many rounds"))?,
                        attempts,
                        contributors_json: names_json(&out.contributors),
                        dropped_json: names_json(&out.dropped),
                        started_ms: started,
                        finished_ms: now_ms(),
                        what: agg.what.clone(),
                    };
                    let progress_json = serde_json::to_string(&progress).unwrap_or_default();
                    self.shared
                        .store
                        .complete_round(&rec, &trainer.checkpoint(), &progress_json)
                        .map_err(|e| failed(e.to_string()))?;
                    self.shared.publish_progress(&self.job, round + 1, &progress_json, &agg.what);
                    round += 1;
                }
            }
        }
    }

    /// One round: attempts until a sum, a restart without the early dropouts each time.
    async fn run_round(
        &mut self,
        round: u64,
        agg: &Aggregate,
    ) -> Result<(SecAggOutput, u32), JobError> {
        let config = SecAggConfig {
            vector_len: agg.vector_len,
            clip: agg.clip,
            frac_bits: self.spec.secagg.frac_bits,
            threshold: self.spec.secagg.threshold,
            degree: self.spec.secagg.degree,
        };
        let task_json = serde_json::to_string(&agg.task).map_err(|e| failed(e.to_string()))?;
        let roster: Vec<PartyId> = self.ready.keys().cloned().collect();
        let header = RoundHeader { job: self.job.clone(), round: RoundId(round), attempt: 0 };
        if self.spec.model.plaintext() {
            return self
                .run_plaintext_round(header, config, roster, task_json)
                .await
                .map(|o| (o, 1));
        }
        let (mut server, mut setups) = SecAggServer::new(header, config, &roster)
            .map_err(|e| failed(format!("round {round}: {e}")))?;
        let mut attempts = 1u32;
        loop {
            self.gone.clear();
            self.status(format!(
                "{} (attempt {attempts}, {} parties)",
                agg.what,
                server.roster().len()
            ));
            for (p, m) in setups.drain(..) {
                if let ServerMessage::Setup(s) = m {
                    self.start_round(&p, &s, &task_json, false).await;
                }
            }
            match self.drive_attempt(&mut server).await? {
                Ok(out) => return Ok((out, attempts)),
                Err(why) => {
                    let live = server.live_parties().len();
                    if live < self.spec.min_parties().max(2)
                        || attempts >= 2 + self.spec.parties.len() as u32
                    {
                        return Err(failed(format!(
                            "round {round} ({}) failed: {why}; {live} parties left, the job needs {}",
                            agg.what,
                            self.spec.min_parties()
                        )));
                    }
                    warn!(%why, live, "restarting the round");
                    let (s, m) =
                        server.retry().map_err(|e| failed(format!("round {round}: {e}")))?;
                    server = s;
                    setups = m;
                    attempts += 1;
                }
            }
        }
    }

    /// Sends a round's start to a party; a party that cannot be reached counts as gone.
    async fn start_round(
        &mut self,
        party: &PartyId,
        setup: &RoundSetup,
        task_json: &str,
        plaintext: bool,
    ) {
        let start = pb::RoundStart {
            setup: Some(setup.into()),
            task_json: task_json.to_string(),
            plaintext,
        };
        let msg =
            pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::RoundStart(start)) };
        if !self.shared.registry.send(party, msg).await {
            self.gone.insert(party.clone());
        }
    }

    /// The benchmark baseline: the same round over the same transport, vectors unmasked.
    async fn run_plaintext_round(
        &mut self,
        header: RoundHeader,
        config: SecAggConfig,
        roster: Vec<PartyId>,
        task_json: String,
    ) -> Result<SecAggOutput, JobError> {
        let fixed = config.fixed_point(roster.len()).map_err(|e| failed(e.to_string()))?;
        let setup = RoundSetup { header: header.clone(), config, roster: roster.clone() };
        self.gone.clear();
        for p in &roster {
            self.start_round(p, &setup, &task_json, true).await;
        }
        let mut ring_sum = vec![0u64; config.vector_len];
        let mut got: BTreeSet<PartyId> = BTreeSet::new();
        let deadline = Instant::now() + self.phase_timeout();
        while roster.iter().any(|p| !got.contains(p) && !self.gone.contains(p)) {
            tokio::select! {
                input = self.inbox.recv() => match input {
                    None => return Err(JobError::Shutdown),
                    Some(JobInput::SecAgg { party, seq, msg: ClientMessage::MaskedInput(m), bytes })
                        if m.header == header && roster.contains(&party) && !got.contains(&party) =>
                    {
                        if m.masked.len() != config.vector_len {
                            self.ack(&party, pb::Ack::rejected("wrong vector length").for_seq(seq)).await;
                            continue;
                        }
                        for (s, v) in ring_sum.iter_mut().zip(&m.masked) {
                            *s = fixed.add(*s, *v);
                        }
                        self.audit(&party, Some(header.round.0), Direction::In, "plaintext", bytes, "accepted");
                        self.ack(&party, pb::Ack::accepted().for_seq(seq)).await;
                        got.insert(party);
                    }
                    Some(JobInput::SecAgg { party, seq, .. }) => {
                        self.ack(&party, pb::Ack::rejected("not expected in a plaintext round").for_seq(seq)).await;
                    }
                    Some(JobInput::TaskFailed { party, seq, .. }) => {
                        self.gone.insert(party.clone());
                        self.ack(&party, pb::Ack::accepted().for_seq(seq)).await;
                    }
                    Some(other) => self.handle_aside(other).await?,
                },
                ev = self.events.recv() => self.handle_event(ev).await,
                _ = tokio::time::sleep_until(deadline.into()) => break,
                _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                _ = self.shared.shutdown.cancelled() => return Err(JobError::Shutdown),
            }
        }
        if got.len() < 2 {
            return Err(failed(format!("{header}: only {} vectors arrived", got.len())));
        }
        let contributors: Vec<PartyId> =
            roster.iter().filter(|p| got.contains(*p)).cloned().collect();
        let dropped = roster.iter().filter(|p| !got.contains(*p)).cloned().collect();
        Ok(SecAggOutput {
            header,
            sum: fixed.decode_vec(&ring_sum),
            ring_sum,
            fixed,
            error_bound: fixed.sum_error_bound(contributors.len()),
            contributors,
            dropped,
        })
    }

    /// Drives one attempt through its phases. `Ok(Err(why))` = the attempt ended without a
    /// sum and may be retried.
    async fn drive_attempt(
        &mut self,
        server: &mut SecAggServer,
    ) -> Result<Result<SecAggOutput, String>, JobError> {
        let timeout = self.phase_timeout();
        let round = server.header().round.0;
        loop {
            let deadline = Instant::now() + timeout;
            loop {
                let pending = server.pending();
                if pending.is_empty() || pending.iter().all(|p| self.gone.contains(p)) {
                    break;
                }
                tokio::select! {
                    input = self.inbox.recv() => match input {
                        None => return Err(JobError::Shutdown),
                        Some(JobInput::SecAgg { party, seq, msg, bytes }) => {
                            if self.shared.config.record_transcripts {
                                self.record(&party, &msg, server.ring_bits());
                            }
                            let result = server.receive(&party, msg);
                            let (ack, outcome) = match &result {
                                Ok(_) => (pb::Ack::accepted(), "accepted".to_string()),
                                Err(e @ SecAggRoundError::TooLate { .. }) => (pb::Ack::too_late(e.to_string()), format!("too late: {e}")),
                                Err(e @ SecAggRoundError::WrongRound { expected, got }) if got.round < expected.round || (got.round == expected.round && got.attempt < expected.attempt) => {
                                    (pb::Ack::too_late(e.to_string()), format!("too late: {e}"))
                                }
                                Err(e) => (pb::Ack::rejected(e.to_string()), format!("rejected: {e}")),
                            };
                            self.audit(&party, Some(round), Direction::In, "secagg", bytes, &outcome);
                            self.ack(&party, ack.for_seq(seq)).await;
                        }
                        Some(JobInput::TaskFailed { party, seq, header, reason }) => {
                            if &header == server.header() {
                                warn!(%party, %reason, "party could not compute its contribution");
                                self.gone.insert(party.clone());
                                self.ack(&party, pb::Ack::accepted().for_seq(seq)).await;
                            } else {
                                self.ack(&party, pb::Ack::too_late(format!("{header} is not open")).for_seq(seq)).await;
                            }
                        }
                        Some(other) => self.handle_aside(other).await?,
                    },
                    ev = self.events.recv() => self.handle_event(ev).await,
                    _ = tokio::time::sleep_until(deadline.into()) => break,
                    _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                    _ = self.shared.shutdown.cancelled() => return Err(JobError::Shutdown),
                }
            }
            let phase = server.phase();
            match server.close_phase() {
                Ok(ServerStep::Send(msgs)) => {
                    for (p, m) in msgs {
                        let wire = server_to_wire(&m);
                        let msg = pb::CoordinatorMessage {
                            body: Some(pb::coordinator_message::Body::Secagg(wire)),
                        };
                        if !self.shared.registry.send(&p, msg).await {
                            self.gone.insert(p);
                        }
                    }
                }
                Ok(ServerStep::Restart(r)) => {
                    let names: Vec<String> = r.excluded.iter().map(|p| p.0.clone()).collect();
                    return Ok(Err(format!(
                        "no answer in phase {phase} from {}",
                        names.join(", ")
                    )));
                }
                Ok(ServerStep::Done(out)) => return Ok(Ok(out)),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
    }
}

/// The feature specs a party reported.
pub(crate) fn schema_from_wire(cols: &[pb::FeatureColumn]) -> Vec<FeatureSpec> {
    cols.iter()
        .map(|c| FeatureSpec {
            name: c.name.clone(),
            kind: if c.categorical {
                FeatureKind::Categorical { levels: c.levels.clone() }
            } else {
                FeatureKind::Numeric
            },
        })
        .collect()
}

/// Runs job `job` to its end and records how it ended.
pub(crate) async fn run_job(
    shared: Arc<Shared>,
    job: JobId,
    spec: JobSpec,
    inbox: mpsc::Receiver<JobInput>,
    cancel: CancellationToken,
) {
    let span = info_span!("job", job = %job);
    async move {
        if let Err(e) =
            shared.store.set_job_state(&job.0, crate::store::JobState::Running, None, now_ms())
        {
            warn!(error = %e, "cannot mark the job running");
        }
        shared.publish_refresh(&job);
        let runner = Runner::new(shared.clone(), job.clone(), spec.clone(), inbox, cancel);
        let result = runner.run().await;
        let (state, reason) = match result {
            Ok(outcome) => match finish(&shared, &job, &spec, &outcome) {
                Ok(()) => ("succeeded", String::new()),
                Err(e) => {
                    let _ = shared.store.set_job_state(
                        &job.0,
                        crate::store::JobState::Failed,
                        Some(&e),
                        now_ms(),
                    );
                    ("failed", e)
                }
            },
            Err(JobError::Shutdown) => {
                info!("left for the next start");
                shared.forget_job(&job);
                return;
            }
            Err(JobError::Cancelled) => {
                let _ = shared.store.set_job_state(
                    &job.0,
                    crate::store::JobState::Cancelled,
                    Some("cancelled by the operator"),
                    now_ms(),
                );
                ("cancelled", "cancelled by the operator".to_string())
            }
            Err(JobError::Failed(e)) => {
                warn!(error = %e, "job failed");
                let _ = shared.store.set_job_state(
                    &job.0,
                    crate::store::JobState::Failed,
                    Some(&e),
                    now_ms(),
                );
                ("failed", e)
            }
        };
        info!(state, "job ended");
        for p in &spec.parties {
            let end =
                pb::JobEnded { job_id: job.0.clone(), state: state.into(), reason: reason.clone() };
            let msg =
                pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::JobEnded(end)) };
            shared.registry.send(p, msg).await;
        }
        shared.publish_refresh(&job);
        shared.forget_job(&job);
    }
    .instrument(span)
    .await;
}

fn finish(shared: &Shared, job: &JobId, spec: &JobSpec, outcome: &Outcome) -> Result<(), String> {
    let metrics_json = serde_json::to_string(&outcome.metrics).unwrap_or_default();
    let model = outcome.artifact_json.as_ref().map(|a| ModelRecord {
        id: format!("{}-model", job.0),
        job_id: job.0.clone(),
        created_ms: now_ms(),
        kind: spec.model.kind().to_string(),
        artifact_json: a.clone(),
        metrics_json: metrics_json.clone(),
    });
    shared
        .store
        .finish_job(&job.0, model.as_ref(), &metrics_json, now_ms())
        .map_err(|e| e.to_string())
}

fn names_json(parties: &[PartyId]) -> String {
    let names: Vec<&str> = parties.iter().map(|p| p.0.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_default()
}
