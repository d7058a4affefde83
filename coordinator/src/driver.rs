//! The job driver: one task per job that gathers the job's parties, hands out the directory
//! of their signed channel keys, and runs the job's protocol conductor
//! ([`fedcredit_federation::protocol::Conductor`]) — whatever the protocol — by delivering
//! party messages, answering each, closing phases at their deadlines, and persisting the
//! conductor's checkpoint with every completed step.
//!
//! One liveness rule for every phase (XayNet-style typed phases with a deadline each): a phase
//! closes as soon as every party it waits for has answered; a party that disconnects gets the
//! job's grace period to come back (a restarted participant rejoins and the conductor restarts
//! the open step with it) — also between steps: the conductor is told it left only when the
//! grace period is over, so a step opened meanwhile still waits for it; after the grace
//! period, or at the phase deadline, the phase closes without the missing parties and the
//! conductor goes on with at least `min_parties` or fails the job naming who is missing. The
//! same grace period applies at the start. A party that declines the job fails it at once with its reason.
//!
//! Payloads sealed between parties never reach this task: the participants' service relays
//! them directly ([`crate::service`]), with back-pressure, recording sizes only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::{self, Conductor, Outbox, Schemas};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::{FeatureKind, FeatureSpec};
use fedcredit_proto::pb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

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
    /// A protocol message for the job's conductor.
    Protocol {
        /// Sender (from its certificate).
        party: PartyId,
        /// Stream sequence number, for the ack.
        seq: u64,
        /// The message.
        msg: pb::RoleMessage,
        /// Its size on the wire, for the audit log.
        bytes: usize,
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

/// A party that accepted the job.
#[derive(Debug, Clone)]
struct Joined {
    schema: Vec<FeatureSpec>,
    state: protocol::JoinState,
    key: Option<pb::ChannelKey>,
}

/// The job task's state.
pub(crate) struct Runner {
    shared: Arc<Shared>,
    job: JobId,
    spec: JobSpec,
    inbox: mpsc::Receiver<JobInput>,
    events: broadcast::Receiver<PartyEvent>,
    cancel: CancellationToken,
    /// Parties that accepted the job since they last connected.
    ready: BTreeMap<PartyId, Joined>,
    /// Parties of the job that disconnected, and since when.
    gone_since: BTreeMap<PartyId, Instant>,
    /// Gone parties the conductor was told left (their grace period is over).
    told_left: BTreeSet<PartyId>,
    /// Parties left out for good (came back with other columns).
    left_out: BTreeSet<PartyId>,
    conductor: Option<Box<dyn Conductor>>,
    /// When the current phase closes at the latest.
    deadline: Instant,
    /// When the current step started (for its record).
    step_started: i64,
    /// Entries of the conductor's checkpoint log already in the store.
    logged: usize,
    /// Each party's columns when the conductor started.
    started_with: Schemas,
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
            gone_since: BTreeMap::new(),
            told_left: BTreeSet::new(),
            left_out: BTreeSet::new(),
            conductor: None,
            deadline: Instant::now(),
            step_started: now_ms(),
            logged: 0,
            started_with: Schemas::new(),
        }
    }

    fn phase_timeout(&self) -> Duration {
        Duration::from_secs(
            self.spec.phase_timeout_secs.unwrap_or(self.shared.config.round_timeout_secs),
        )
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.spec.grace_secs.unwrap_or(self.shared.config.grace_secs))
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

    fn audit(&self, party: &PartyId, dir: Direction, kind: &str, bytes: usize, outcome: &str) {
        self.shared.audit(party, Some(&self.job), None, dir, kind, bytes, outcome);
    }

    async fn send_job(&self, party: &PartyId, body: pb::to_party::Body) -> bool {
        let msg = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Job(pb::ToParty {
                job_id: self.job.0.clone(),
                body: Some(body),
            })),
        };
        self.shared.registry.send(party, msg).await
    }

    async fn offer(&self, party: &PartyId) {
        let offer = pb::JobOffer { job_id: self.job.0.clone(), spec_json: self.spec.to_json() };
        let msg =
            pb::CoordinatorMessage { body: Some(pb::coordinator_message::Body::JobOffer(offer)) };
        if self.shared.registry.send(party, msg).await {
            self.audit(party, Direction::Out, "job_offer", 0, "sent");
        }
    }

    fn waiting_for(&self) -> Vec<&PartyId> {
        self.spec
            .parties
            .iter()
            .filter(|p| !self.ready.contains_key(*p) && !self.left_out.contains(*p))
            .collect()
    }

    /// The directory of the ready parties' signed channel keys.
    fn directory(&self) -> pb::PeerDirectory {
        pb::PeerDirectory {
            peers: self
                .ready
                .iter()
                .filter_map(|(p, j)| {
                    Some(pb::PeerEntry { party: p.0.clone(), key: Some(j.key.clone()?) })
                })
                .collect(),
        }
    }

    async fn send_directory(&self) {
        let dir = self.directory();
        for p in self.ready.keys() {
            self.send_job(p, pb::to_party::Body::Directory(dir.clone())).await;
        }
    }

    /// Checks the channel key a party joins with: signed by its certificate from the
    /// federation CA, not a low-order point. Parties check it again themselves; checking here
    /// keeps one bad key from making every honest party refuse the job's steps.
    fn check_channel_key(
        &self,
        party: &PartyId,
        key: Option<&pb::ChannelKey>,
    ) -> Result<(), String> {
        let Some(v) = &self.shared.verifier else { return Ok(()) };
        let k = key.ok_or("the job reply carries no channel key")?;
        let pk: [u8; 32] = k
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| format!("the channel key has {} bytes, not 32", k.public_key.len()))?;
        if fedcredit_crypto::secagg::keys::is_low_order(&pk) {
            return Err("the channel key is a low-order point".into());
        }
        // The parties refuse a directory listing one key twice; refusing the copy here keeps
        // the others' job going without the party that sent it.
        if let Some(owner) = key_owner(&self.ready, party, &pk) {
            return Err(format!("the channel key is the one {owner} joined with"));
        }
        v.verify(
            party,
            &k.certificate,
            &fedcredit_federation::channel::channel_key_statement(&self.job, party, &pk),
            &k.signature,
            "channel key",
        )
        .map_err(|e| e.to_string())
    }

    /// Handles a job reply: a party joins (or rejoins), or declines and fails the job.
    async fn reply(
        &mut self,
        party: PartyId,
        seq: u64,
        reply: pb::JobReply,
    ) -> Result<(), JobError> {
        if !self.in_job(&party) {
            self.audit(&party, Direction::In, "job_reply", 0, "rejected: not in the job");
            self.ack(
                &party,
                pb::Ack::rejected(format!("{party} is not in job {}", self.job)).for_seq(seq),
            )
            .await;
            return Ok(());
        }
        if reply.accepted
            && let Err(why) = self.check_channel_key(&party, reply.channel_key.as_ref())
        {
            warn!(%party, %why, "job reply refused");
            self.audit(&party, Direction::In, "job_reply", 0, &format!("rejected: {why}"));
            self.ack(&party, pb::Ack::rejected(why).for_seq(seq)).await;
            return Ok(());
        }
        self.ack(&party, pb::Ack::accepted().for_seq(seq)).await;
        self.audit(
            &party,
            Direction::In,
            "job_reply",
            0,
            if reply.accepted { "accepted" } else { "declined" },
        );
        if !reply.accepted {
            return Err(failed(format!("{party} declined the job: {}", reply.reason)));
        }
        let schema = schema_from_wire(&reply.schema);
        let state =
            protocol::JoinState { version: reply.state_version, next_step: reply.next_step };
        let joined = Joined { schema, state, key: reply.channel_key };
        if self.conductor.is_some() {
            // Mid-job: the party must bring the columns it started the job with.
            if self.started_with.get(&party).is_some_and(|s| *s != joined.schema) {
                warn!(%party, "party rejoined with different columns; left out");
                self.audit(&party, Direction::In, "job_reply", 0, "left out: columns differ");
                self.left_out.insert(party);
                return Ok(());
            }
            info!(%party, version = joined.state.version, "party rejoined");
            self.gone_since.remove(&party);
            self.told_left.remove(&party);
            let version = joined.state;
            self.ready.insert(party.clone(), joined);
            self.send_directory().await;
            let mut out = Outbox::default();
            if let Some(c) = &mut self.conductor {
                c.rejoin(&party, version, &mut out);
            }
            self.drain(out).await?;
            return Ok(());
        }
        info!(%party, columns = joined.schema.len(), "party joined");
        self.gone_since.remove(&party);
        self.ready.insert(party, joined);
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
                self.gone_since.entry(p.clone()).or_insert_with(Instant::now);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed events: re-derive from the registry.
                let connected = self.shared.registry.connected();
                let lost: Vec<PartyId> =
                    self.ready.keys().filter(|p| !connected.contains(*p)).cloned().collect();
                for p in lost {
                    self.ready.remove(&p);
                    self.gone_since.entry(p.clone()).or_insert_with(Instant::now);
                }
            }
            Err(broadcast::error::RecvError::Closed) => {}
        }
    }

    /// Waits until every party is ready, or until the grace period passed with at least
    /// `min_parties`; fails naming who is missing otherwise.
    async fn gather(&mut self) -> Result<(), JobError> {
        let started = Instant::now();
        let grace = self.grace();
        let need = self.spec.min_parties();
        loop {
            let waiting: Vec<String> = self.waiting_for().iter().map(|p| p.0.clone()).collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= grace {
                if self.ready.len() >= need {
                    warn!(missing = %waiting.join(", "), "starting without");
                    return Ok(());
                }
                return Err(failed(format!(
                    "{} of the {need} parties needed joined within the grace period of {} s; missing: {}",
                    self.ready.len(),
                    grace.as_secs(),
                    waiting.join(", ")
                )));
            }
            self.status(format!("waiting for {}", waiting.join(", ")));
            tokio::select! {
                input = self.inbox.recv() => match input {
                    Some(JobInput::Reply { party, seq, reply }) => self.reply(party, seq, reply).await?,
                    Some(JobInput::Protocol { party, seq, bytes, .. }) => {
                        self.audit(&party, Direction::In, "protocol", bytes, "too late: no step open");
                        self.ack(&party, pb::Ack::too_late("the job has not started").for_seq(seq)).await;
                    }
                    None => return Err(JobError::Shutdown),
                },
                ev = self.events.recv() => self.handle_event(ev).await,
                _ = tokio::time::sleep_until((started + grace).into()) => {}
                _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                _ = self.shared.shutdown.cancelled() => return Err(JobError::Shutdown),
            }
        }
    }

    /// Records completed steps with the conductor's checkpoint, then sends what the conductor
    /// asked for: a coordinator killed in between resumes after the step (whose step number
    /// the parties would refuse to run again), never before it.
    async fn drain(&mut self, out: Outbox) -> Result<Option<protocol::Outcome>, JobError> {
        if !out.steps.is_empty() {
            let c = self.conductor.as_ref().ok_or_else(|| failed("no conductor"))?;
            let checkpoint = c.checkpoint(self.logged);
            let progress = c.progress();
            let progress_json = serde_json::to_string(&progress).unwrap_or_default();
            let n = out.steps.len();
            for (i, s) in out.steps.into_iter().enumerate() {
                let rec = RoundRecord {
                    job_id: self.job.0.clone(),
                    round: u32::try_from(s.step).map_err(|_| failed("too many steps"))?,
                    attempts: s.attempts,
                    contributors_json: names_json(&s.contributors),
                    dropped_json: names_json(&s.dropped),
                    started_ms: self.step_started,
                    finished_ms: now_ms(),
                    what: s.what.clone(),
                };
                // The log's new entries go with the last record of the batch.
                let log: &[Vec<u8>] = if i + 1 == n { &checkpoint.log } else { &[] };
                self.shared
                    .store
                    .complete_round(&rec, &checkpoint.state, self.logged, log, &progress_json)
                    .map_err(|e| failed(e.to_string()))?;
                self.shared.publish_progress(&self.job, s.step + 1, &progress_json, &s.what);
                self.step_started = now_ms();
            }
            self.logged += checkpoint.log.len();
        }
        if !out.messages.is_empty() {
            debug!(messages = out.messages.len(), "sending");
            for (p, m) in out.messages {
                if !self.send_job(&p, pb::to_party::Body::Protocol(m)).await {
                    // Unreachable: the driver's liveness rule handles it like a disconnection.
                    self.gone_since.entry(p.clone()).or_insert_with(Instant::now);
                }
            }
            self.deadline = Instant::now() + self.phase_timeout();
        }
        Ok(out.finished)
    }

    fn record(&self, party: &PartyId, msg: &pb::RoleMessage) {
        let (kind, ring_bits, payload) = transcript_of(msg);
        let (round, attempt) = header_of(msg);
        let entry = TranscriptEntry {
            job_id: self.job.0.clone(),
            round: u32::try_from(round).unwrap_or(u32::MAX),
            attempt,
            party: party.0.clone(),
            kind: kind.into(),
            ring_bits,
            payload,
        };
        if let Err(e) = self.shared.store.record_transcript(&entry) {
            warn!(error = %e, "transcript write failed");
        }
    }

    /// Tells the conductor which gone parties left for good (gone for the grace period), and
    /// returns when the next one will have.
    fn tell_left(&mut self) -> Option<Instant> {
        let grace = self.grace();
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (p, since) in &self.gone_since {
            if self.told_left.contains(p) {
                continue;
            }
            let at = *since + grace;
            if at <= now {
                if let Some(c) = &mut self.conductor {
                    c.left(p);
                }
                self.told_left.insert(p.clone());
            } else {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        next
    }

    /// Whether the open phase can close before its deadline: nobody is waited for, or everyone
    /// waited for has been gone for the grace period.
    fn can_close_early(&self, c: &dyn Conductor) -> Option<Instant> {
        let pending = c.pending();
        if pending.is_empty() {
            return Some(Instant::now());
        }
        let grace = self.grace();
        let mut latest: Option<Instant> = None;
        for p in &pending {
            let since = self.gone_since.get(p)?;
            let t = *since + grace;
            latest = Some(latest.map_or(t, |l: Instant| l.max(t)));
        }
        latest
    }

    /// Runs the job to its outcome.
    pub(crate) async fn run(mut self) -> Result<protocol::Outcome, JobError> {
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
        self.gather().await?;
        let schemas: Schemas =
            self.ready.iter().map(|(p, j)| (p.clone(), j.schema.clone())).collect();
        self.started_with = schemas.clone();
        let conductor = match &record.checkpoint {
            Some(bytes) if record.rounds_done > 0 => {
                let log = self
                    .shared
                    .store
                    .checkpoint_log(&self.job.0)
                    .map_err(|e| failed(e.to_string()))?;
                info!(
                    rounds_done = record.rounds_done,
                    logged = log.len(),
                    "resuming from checkpoint"
                );
                self.logged = log.len();
                protocol::restore_conductor(&self.spec, bytes, &log).map_err(failed)?
            }
            _ => protocol::new_conductor(&self.job, &self.spec, &schemas).map_err(failed)?,
        };
        self.conductor = Some(conductor);
        self.send_directory().await;
        let versions: BTreeMap<PartyId, protocol::JoinState> =
            self.ready.iter().map(|(p, j)| (p.clone(), j.state)).collect();
        let mut out = Outbox::default();
        if let Some(c) = &mut self.conductor {
            c.start(&versions, &mut out).map_err(failed)?;
        }
        self.step_started = now_ms();
        if let Some(outcome) = self.drain(out).await? {
            return Ok(outcome);
        }
        let mut idle_closes = 0u32;
        loop {
            let next_left = self.tell_left();
            let wake = {
                let c = self.conductor.as_ref().ok_or_else(|| failed("no conductor"))?;
                let early = self.can_close_early(c.as_ref());
                self.shared.publish_live(&self.job, c.status(), || {
                    serde_json::to_string(&c.progress()).unwrap_or_default()
                });
                early.map_or(self.deadline, |e| e.min(self.deadline))
            };
            if Instant::now() >= wake {
                let mut out = Outbox::default();
                let res = match &mut self.conductor {
                    Some(c) => c.close_phase(&mut out),
                    None => Err("no conductor".into()),
                };
                let moved = !out.messages.is_empty() || !out.steps.is_empty();
                let drained = self.drain(out).await?;
                res.map_err(failed)?;
                if let Some(outcome) = drained {
                    return Ok(outcome);
                }
                idle_closes = if moved { 0 } else { idle_closes + 1 };
                if idle_closes > 3 {
                    let status = self.conductor.as_ref().map(|c| c.status()).unwrap_or_default();
                    return Err(failed(format!("the protocol made no progress: {status}")));
                }
                if self.conductor.as_ref().is_some_and(|c| !c.pending().is_empty()) {
                    self.deadline = self.deadline.max(Instant::now() + self.phase_timeout());
                }
                continue;
            }
            tokio::select! {
                input = self.inbox.recv() => match input {
                    None => return Err(JobError::Shutdown),
                    Some(JobInput::Reply { party, seq, reply }) => self.reply(party, seq, reply).await?,
                    Some(JobInput::Protocol { party, seq, msg, bytes }) => {
                        if self.shared.config.record_transcripts {
                            self.record(&party, &msg);
                        }
                        let mut out = Outbox::default();
                        let res = match &mut self.conductor {
                            Some(c) => c.receive(&party, msg, &mut out),
                            None => Err(protocol::Rejection::too_late("no step open")),
                        };
                        if res.is_ok() {
                            // An accepted message shows the phase is alive: its deadline
                            // restarts. A phase may run longer than one timeout without the
                            // conductor sending anything (two-party ECDH alignment of millions
                            // of ids: the points travel sealed between parties, and only their
                            // progress reports reach the conductor); the timeout then bounds
                            // the silence, not the phase.
                            self.deadline = self.deadline.max(Instant::now() + self.phase_timeout());
                        }
                        let (ack, outcome) = match &res {
                            Ok(_) => (pb::Ack::accepted(), "accepted".to_string()),
                            Err(r) if r.too_late => (pb::Ack::too_late(r.reason.clone()), format!("too late: {}", r.reason)),
                            Err(r) => (pb::Ack::rejected(r.reason.clone()), format!("rejected: {}", r.reason)),
                        };
                        debug!(%party, bytes, %outcome, "protocol message");
                        self.audit(&party, Direction::In, "protocol", bytes, &outcome);
                        self.ack(&party, ack.for_seq(seq)).await;
                        if let Some(outcome) = self.drain(out).await? {
                            return Ok(outcome);
                        }
                    }
                },
                ev = self.events.recv() => self.handle_event(ev).await,
                _ = tokio::time::sleep_until(next_left.map_or(wake, |l| l.min(wake)).into()) => {}
                _ = self.cancel.cancelled() => return Err(JobError::Cancelled),
                _ = self.shared.shutdown.cancelled() => return Err(JobError::Shutdown),
            }
        }
    }
}

/// Another ready party that joined with public channel key `pk`.
fn key_owner<'a>(
    ready: &'a BTreeMap<PartyId, Joined>,
    party: &PartyId,
    pk: &[u8; 32],
) -> Option<&'a PartyId> {
    ready
        .iter()
        .find(|(p, j)| *p != party && j.key.as_ref().is_some_and(|k| k.public_key == pk))
        .map(|(p, _)| p)
}

/// What a transcript keeps of a protocol message: its kind, ring width (masked vectors) and
/// payload (the packed masked vector, or the whole message).
fn transcript_of(msg: &pb::RoleMessage) -> (&'static str, u32, Vec<u8>) {
    use pb::sec_agg_client_message::Msg;
    match &msg.body {
        Some(pb::role_message::Body::Secagg(s)) => match &s.msg {
            Some(Msg::MaskedInput(m)) => ("masked_input", m.ring_bits, m.packed.clone()),
            Some(Msg::Consistency(_)) => ("consistency", 0, prost::Message::encode_to_vec(s)),
            Some(Msg::Unmask(_)) => ("unmask", 0, prost::Message::encode_to_vec(s)),
            None => ("secagg", 0, prost::Message::encode_to_vec(s)),
        },
        Some(pb::role_message::Body::Failed(_)) => {
            ("step_failed", 0, prost::Message::encode_to_vec(msg))
        }
        _ => ("protocol", 0, prost::Message::encode_to_vec(msg)),
    }
}

/// The round and attempt a protocol message names (0, 0 when it names none).
fn header_of(msg: &pb::RoleMessage) -> (u64, u32) {
    use pb::sec_agg_client_message::Msg;
    let h = match &msg.body {
        Some(pb::role_message::Body::Secagg(s)) => match &s.msg {
            Some(Msg::MaskedInput(m)) => m.header.as_ref(),
            Some(Msg::Consistency(m)) => m.header.as_ref(),
            Some(Msg::Unmask(m)) => m.header.as_ref(),
            None => None,
        },
        Some(pb::role_message::Body::Failed(f)) => return (f.step, 0),
        _ => None,
    };
    h.map_or((0, 0), |h| (h.round, h.attempt))
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

fn finish(
    shared: &Shared,
    job: &JobId,
    spec: &JobSpec,
    outcome: &protocol::Outcome,
) -> Result<(), String> {
    let metrics_json = serde_json::to_string(&outcome.metrics).unwrap_or_default();
    let model = outcome.artifact_json.as_ref().map(|a| ModelRecord {
        id: format!("{}-model", job.0),
        job_id: job.0.clone(),
        created_ms: now_ms(),
        kind: spec.model.kind().to_string(),
        artifact_json: a.clone(),
        metrics_json: metrics_json.clone(),
    });
    let finished = shared
        .store
        .finish_job(&job.0, model.as_ref(), &metrics_json, now_ms())
        .map_err(|e| e.to_string());
    shared.scoring.registry_changed();
    finished
}

fn names_json(parties: &[PartyId]) -> String {
    let names: Vec<&str> = parties.iter().map(|p| p.0.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_key_already_joined_with_by_another_party_is_found() {
        let joined = |k: u8| Joined {
            schema: Vec::new(),
            state: protocol::JoinState::default(),
            key: Some(pb::ChannelKey { public_key: vec![k; 32], ..Default::default() }),
        };
        let ready: BTreeMap<PartyId, Joined> =
            [(PartyId("bank1".into()), joined(1)), (PartyId("bank2".into()), joined(2))].into();
        let bank1 = PartyId("bank1".into());
        let bank3 = PartyId("bank3".into());
        assert_eq!(key_owner(&ready, &bank3, &[1; 32]), Some(&bank1));
        // A party rejoining with its own key is not a copy; a fresh key is nobody's.
        assert_eq!(key_owner(&ready, &bank1, &[1; 32]), None);
        assert_eq!(key_owner(&ready, &bank3, &[3; 32]), None);
    }
}
