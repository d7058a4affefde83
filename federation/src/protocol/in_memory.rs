//! A whole federation of any protocol in one process: one [`Conductor`], one
//! [`PartySession`] per party (the participant daemon's code, real cryptography included),
//! and the coordinator's relay of sealed payloads, with messages delivered in order and every
//! message recorded in a transcript.
//!
//! Tests play a deviating coordinator through [`Federation::intercept`]: a hook that sees
//! every message the coordinator sends to a party (protocol messages, the directory, relayed
//! payloads) and may alter, drop or duplicate it, or inject others; [`Federation::inject`]
//! sends a message as the coordinator at any time. Whatever the hook does, the parties run
//! the same code as in the daemon, so the test shows what a real participant refuses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fedcredit_proto::pb;
use prost::Message;

use super::{Conductor, Outbox, Outcome, PartySession, SessionOutput, StepRecord};
use crate::ids::{JobId, PartyId};

/// One message of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The coordinator sent `msg` to `to` (after the intercept hook).
    ToParty {
        /// Recipient.
        to: PartyId,
        /// The message.
        msg: pb::ToParty,
    },
    /// `from` sent `msg` to the coordinator.
    FromParty {
        /// Sender.
        from: PartyId,
        /// The message.
        msg: pb::FromParty,
        /// Whether the coordinator accepted it (relays count as accepted).
        accepted: Result<(), String>,
    },
    /// A party refused a message (its session returned an error).
    Refused {
        /// The party.
        party: PartyId,
        /// Why.
        reason: String,
    },
}

impl Entry {
    /// Encoded size of the message (0 for a refusal).
    pub fn bytes(&self) -> usize {
        match self {
            Entry::ToParty { msg, .. } => msg.encoded_len(),
            Entry::FromParty { msg, .. } => msg.encoded_len(),
            Entry::Refused { .. } => 0,
        }
    }
}

/// What the deviating-coordinator hook decides for a message to a party.
pub type Intercept<'a> = dyn FnMut(&PartyId, &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> + 'a;

/// A federation in memory.
#[derive(Debug)]
pub struct Federation {
    job: JobId,
    conductor: Box<dyn Conductor>,
    sessions: BTreeMap<PartyId, PartySession>,
    /// Every message, in delivery order.
    pub transcript: Vec<Entry>,
    /// Completed steps.
    pub steps: Vec<StepRecord>,
    /// The latest checkpoint each party's session asked to write.
    pub checkpoints: BTreeMap<PartyId, Vec<u8>>,
    /// Parties that stopped answering (their messages are dropped).
    pub crashed: BTreeSet<PartyId>,
    queue: VecDeque<(PartyId, pb::ToParty)>,
    outcome: Option<Outcome>,
    /// Largest number of deliveries before [`Federation::run`] gives up.
    pub max_deliveries: usize,
}

impl Federation {
    /// A federation of `conductor` and the parties' `sessions` for job `job`.
    pub fn new(
        job: JobId,
        conductor: Box<dyn Conductor>,
        sessions: Vec<(PartyId, PartySession)>,
    ) -> Self {
        Self {
            job,
            conductor,
            sessions: sessions.into_iter().collect(),
            transcript: Vec::new(),
            steps: Vec::new(),
            checkpoints: BTreeMap::new(),
            crashed: BTreeSet::new(),
            queue: VecDeque::new(),
            outcome: None,
            max_deliveries: 10_000_000,
        }
    }

    /// The conductor.
    pub fn conductor(&self) -> &dyn Conductor {
        self.conductor.as_ref()
    }

    /// A party's session.
    pub fn session(&self, p: &PartyId) -> Option<&PartySession> {
        self.sessions.get(p)
    }

    fn to_party(&self, body: pb::to_party::Body) -> pb::ToParty {
        pb::ToParty { job_id: self.job.0.clone(), body: Some(body) }
    }

    /// Queues `msg` to `to` as if the coordinator sent it (bypassing the hook).
    pub fn inject(&mut self, to: &PartyId, msg: pb::ToParty) {
        self.queue.push_back((to.clone(), msg));
    }

    fn drain_outbox(&mut self, out: Outbox, hook: &mut Intercept<'_>) {
        for (p, m) in out.messages {
            let mut msg = self.to_party(pb::to_party::Body::Protocol(m));
            for (to, m) in hook(&p, &mut msg) {
                self.queue.push_back((to, m));
            }
        }
        self.steps.extend(out.steps);
        if out.finished.is_some() {
            self.outcome = out.finished;
        }
    }

    /// Hands out the directory of every party's signed channel key, then starts the
    /// conductor with every party at its reported state version.
    ///
    /// # Errors
    /// The conductor's refusal to start, or a party that cannot sign its key.
    pub fn start(&mut self, hook: &mut Intercept<'_>) -> Result<(), String> {
        let mut peers = Vec::new();
        let mut versions = BTreeMap::new();
        for (p, s) in &self.sessions {
            let key = s.channel_key().map_err(|e| e.to_string())?;
            peers.push(pb::PeerEntry { party: p.0.clone(), key: Some(key) });
            versions.insert(p.clone(), s.join_state());
        }
        let dir = pb::PeerDirectory { peers };
        let parties: Vec<PartyId> = self.sessions.keys().cloned().collect();
        for p in &parties {
            let mut msg = self.to_party(pb::to_party::Body::Directory(dir.clone()));
            for (to, m) in hook(p, &mut msg) {
                self.queue.push_back((to, m));
            }
        }
        let mut out = Outbox::default();
        self.conductor.start(&versions, &mut out)?;
        self.drain_outbox(out, hook);
        Ok(())
    }

    /// A party (re)joins with its session (a restarted participant): it gets the directory
    /// and the conductor is told.
    pub fn rejoin(&mut self, party: PartyId, session: PartySession, hook: &mut Intercept<'_>) {
        self.crashed.remove(&party);
        let version = session.join_state();
        self.sessions.insert(party.clone(), session);
        let peers = self
            .sessions
            .iter()
            .filter_map(|(p, s)| {
                Some(pb::PeerEntry { party: p.0.clone(), key: Some(s.channel_key().ok()?) })
            })
            .collect();
        let dir = pb::PeerDirectory { peers };
        let all: Vec<PartyId> = self.sessions.keys().cloned().collect();
        for p in &all {
            let mut msg = self.to_party(pb::to_party::Body::Directory(dir.clone()));
            for (to, m) in hook(p, &mut msg) {
                self.queue.push_back((to, m));
            }
        }
        let mut out = Outbox::default();
        self.conductor.rejoin(&party, version, &mut out);
        self.drain_outbox(out, hook);
    }

    /// Stops a party: it answers nothing from now on (its session is kept for inspection).
    pub fn crash(&mut self, party: &PartyId) {
        self.crashed.insert(party.clone());
        self.conductor.left(party);
    }

    fn deliver(&mut self, to: PartyId, msg: pb::ToParty, hook: &mut Intercept<'_>) {
        self.transcript.push(Entry::ToParty { to: to.clone(), msg: msg.clone() });
        if self.crashed.contains(&to) {
            return;
        }
        let Some(session) = self.sessions.get_mut(&to) else { return };
        let outputs = match session.handle(msg) {
            Ok(o) => o,
            Err(e) => {
                self.transcript.push(Entry::Refused { party: to, reason: e.to_string() });
                return;
            }
        };
        for o in outputs {
            match o {
                SessionOutput::Checkpoint | SessionOutput::CheckpointAfterSend => {
                    let bytes = self.sessions.get(&to).map(PartySession::checkpoint);
                    if let Some(b) = bytes {
                        self.checkpoints.insert(to.clone(), b);
                    }
                }
                SessionOutput::Send(m) => self.coordinator_receives(&to, m, hook),
                SessionOutput::Reports(source) => {
                    for m in source {
                        let msg = pb::FromParty {
                            job_id: self.job.0.clone(),
                            body: Some(pb::from_party::Body::Protocol(m)),
                        };
                        self.coordinator_receives(&to, msg, hook);
                    }
                }
                SessionOutput::Stream { stream, stream_out } => {
                    let mut items = stream_out.source.peekable();
                    let mut seq = 0u32;
                    while let Some(item) = items.next() {
                        let last = items.peek().is_none();
                        let sealed = match self.sessions.get(&to) {
                            Some(s) => s.seal(&stream_out.to, stream, seq, last, &item),
                            None => return,
                        };
                        match sealed {
                            Ok(m) => self.coordinator_receives(&to, m, hook),
                            Err(e) => {
                                self.transcript.push(Entry::Refused {
                                    party: to.clone(),
                                    reason: e.to_string(),
                                });
                                return;
                            }
                        }
                        seq += 1;
                    }
                }
            }
        }
    }

    /// What the coordinator does with a party's message: relay sealed payloads, hand protocol
    /// messages to the conductor.
    fn coordinator_receives(
        &mut self,
        from: &PartyId,
        msg: pb::FromParty,
        hook: &mut Intercept<'_>,
    ) {
        match msg.body.clone() {
            Some(pb::from_party::Body::Sealed(s)) => {
                self.transcript.push(Entry::FromParty {
                    from: from.clone(),
                    msg,
                    accepted: Ok(()),
                });
                for (to, ct) in s.ciphertexts {
                    let relayed = pb::Relayed {
                        from: from.0.clone(),
                        stream: s.stream,
                        seq: s.seq,
                        last: s.last,
                        ciphertext: ct,
                    };
                    let to = PartyId(to);
                    let mut m = self.to_party(pb::to_party::Body::Relayed(relayed));
                    for (t, m) in hook(&to, &mut m) {
                        self.queue.push_back((t, m));
                    }
                }
            }
            Some(pb::from_party::Body::Protocol(p)) => {
                let mut out = Outbox::default();
                let accepted =
                    self.conductor.receive(from, p, &mut out).map(|_| ()).map_err(|r| r.reason);
                self.transcript.push(Entry::FromParty { from: from.clone(), msg, accepted });
                self.drain_outbox(out, hook);
            }
            None => {
                self.transcript.push(Entry::FromParty {
                    from: from.clone(),
                    msg,
                    accepted: Err("empty".into()),
                });
            }
        }
    }

    /// Delivers messages until the protocol finishes, closing a phase whenever nothing is in
    /// flight (every pending party answered, crashed, or refused).
    ///
    /// # Errors
    /// The conductor's failure message, or a stall (nothing to deliver and the phase cannot
    /// close) or more than [`Federation::max_deliveries`] deliveries.
    pub fn run(&mut self, hook: &mut Intercept<'_>) -> Result<Outcome, String> {
        let mut deliveries = 0usize;
        let mut idle_closes = 0usize;
        loop {
            if let Some(o) = self.outcome.take() {
                return Ok(o);
            }
            if !self.queue.is_empty() && deliveries >= self.max_deliveries {
                return Err(format!("no outcome after {deliveries} deliveries"));
            }
            if let Some((to, msg)) = self.queue.pop_front() {
                deliveries += 1;
                self.deliver(to, msg, hook);
                idle_closes = 0;
                continue;
            }
            // Nothing in flight: the phase's members answered, crashed or refused.
            idle_closes += 1;
            if idle_closes > 64 {
                return Err(format!("stalled: {}", self.conductor.status()));
            }
            let mut out = Outbox::default();
            self.conductor.close_phase(&mut out)?;
            self.drain_outbox(out, hook);
        }
    }
}

/// The hook of an honest coordinator: deliver as sent.
pub fn honest(to: &PartyId, msg: &mut pb::ToParty) -> Vec<(PartyId, pb::ToParty)> {
    vec![(to.clone(), msg.clone())]
}
