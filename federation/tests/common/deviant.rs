//! Helpers of the deviating-coordinator tests (`tests/deviating.rs`): a federation CA with real
//! party certificates, party sessions signing and checking with them (the participant daemon's
//! code), a coordinator that records its checkpoints as the driver does, and readers of the
//! in-memory transcript: what the coordinator sent, what each party answered or refused, and
//! which secure-aggregation secrets the coordinator could reconstruct from the unmask shares
//! it received.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::secagg::{PartyIndex, RoundSpec, SecretKind};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation};
use fedcredit_federation::protocol::{
    self, Conductor, Identity, Outbox, PartySession, Progress, Receipt, Rejection, Role,
    split_checkpoint,
};
use fedcredit_federation::secagg::{ClientMessage, RoundHeader, RoundSetup, ServerMessage};
use fedcredit_federation::wire::{client_from_wire, server_from_wire, server_to_wire};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::Dataset;
use fedcredit_proto::pb;
use fedcredit_transport::identity::party_identity;
use fedcredit_transport::tls::{CertPaths, init_certs};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The job id of every test federation.
pub const JOB: &str = "j1";

pub fn job_id() -> JobId {
    JobId(JOB.into())
}

pub fn bank(i: usize) -> PartyId {
    PartyId(format!("bank{i}"))
}

pub fn banks(n: usize) -> Vec<PartyId> {
    (0..n).map(bank).collect()
}

/// A federation CA and a certificate per party, in a temporary folder.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub paths: CertPaths,
}

impl Certs {
    /// A CA with certificates for `bank0..bank{n-1}`.
    pub fn new(n: usize) -> Self {
        Self::named(&banks(n))
    }

    pub fn named(parties: &[PartyId]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = parties.iter().map(|p| p.0.clone()).collect();
        let paths = init_certs(dir.path(), &names, &[]).unwrap();
        Self { _dir: dir, paths }
    }

    /// A party's signer (its certificate key) and the federation's verifier.
    pub fn identity(&self, p: &PartyId) -> Identity {
        party_identity(&self.paths.parties[&p.0]).unwrap()
    }
}

/// A job over `bank0..bank{n-1}` with `top` (extra top-level keys), `model` (the `[model]`
/// table's body) and `secagg` (the `[secagg]` table's body).
pub fn job_spec(n: usize, top: &str, model: &str, secagg: &str) -> JobSpec {
    let parties: Vec<String> = banks(n).iter().map(|p| format!("\"{}\"", p.0)).collect();
    JobSpec::from_toml(&format!(
        "name = \"deviating\"\nparties = [{}]\n{top}\n[data]\nid = \"id\"\nlabel = \"y\"\n\
         [model]\n{model}\n[secagg]\n{secagg}\n",
        parties.join(", ")
    ))
    .unwrap()
}

/// A secure-aggregation benchmark job: `rounds` secure sums of public seeded vectors.
pub fn bench_spec(n: usize, top: &str, secagg: &str, rounds: u64) -> JobSpec {
    job_spec(n, top, &format!("kind = \"secagg_bench\"\ndim = 3\nrounds = {rounds}"), secagg)
}

/// One party's inputs.
#[derive(Clone)]
pub struct Bank {
    pub id: PartyId,
    pub train: Option<Dataset>,
    pub valid: Option<Dataset>,
}

/// Parties without data (benchmarks).
pub fn no_data(n: usize) -> Vec<Bank> {
    banks(n).into_iter().map(|id| Bank { id, train: None, valid: None }).collect()
}

/// Parties with the synthetic credit tables of `common`.
pub fn with_data(sizes: &[usize]) -> Vec<Bank> {
    crate::common::parties(sizes, true)
        .into_iter()
        .map(|(id, t, v)| Bank { id, train: Some(t), valid: v })
        .collect()
}

/// Replaces a party's role (a faulty party), or returns it unchanged.
pub type Wrap<'a> = dyn Fn(&PartyId, Box<dyn Role>) -> Box<dyn Role> + 'a;

/// A party's session: signing and checking with its certificate when `certs` is given,
/// restored from a checkpoint when one is given. `wrap` may replace the role (a faulty party).
pub fn session_with(
    spec: &JobSpec,
    b: &Bank,
    certs: Option<&Certs>,
    checkpoint: Option<&[u8]>,
    seed: u64,
    wrap: &Wrap<'_>,
) -> PartySession {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (secret, role_bytes) = match checkpoint {
        Some(bytes) => {
            let (s, r) = split_checkpoint(bytes).unwrap();
            (s, Some(r))
        }
        None => (ChannelSecret::generate(&mut rng), None),
    };
    let role =
        protocol::new_role(spec, &b.id, b.train.clone(), b.valid.clone(), role_bytes.as_deref())
            .unwrap();
    let identity = certs.map(|c| c.identity(&b.id)).unwrap_or_default();
    PartySession::new(job_id(), spec, b.id.clone(), wrap(&b.id, role), secret, identity, rng)
}

pub fn session(
    spec: &JobSpec,
    b: &Bank,
    certs: Option<&Certs>,
    checkpoint: Option<&[u8]>,
    seed: u64,
) -> PartySession {
    session_with(spec, b, certs, checkpoint, seed, &|_, r| r)
}

/// The coordinator's side of `spec` over `banks` (every party reports the fixture columns).
pub fn conductor(spec: &JobSpec, banks: &[Bank]) -> Box<dyn Conductor> {
    let schemas = banks.iter().map(|b| (b.id.clone(), crate::common::specs())).collect();
    protocol::new_conductor(&job_id(), spec, &schemas).unwrap()
}

/// A federation of the real conductor and one session per bank.
pub fn federation(spec: &JobSpec, banks: &[Bank], certs: Option<&Certs>) -> Federation {
    federation_with(spec, banks, certs, conductor(spec, banks), &|_, r| r)
}

pub fn federation_with(
    spec: &JobSpec,
    banks: &[Bank],
    certs: Option<&Certs>,
    conductor: Box<dyn Conductor>,
    wrap: &Wrap<'_>,
) -> Federation {
    let sessions = banks
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.clone(), session_with(spec, b, certs, None, 1000 + i as u64, wrap)))
        .collect();
    Federation::new(job_id(), conductor, sessions)
}

/// A conductor that persists a checkpoint after every completed step, as the coordinator's
/// driver does (`saved[k]` is the checkpoint written after step `k`).
#[derive(Debug)]
pub struct Recording {
    pub inner: Box<dyn Conductor>,
    pub saved: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recording {
    fn record(&self, out: &Outbox, before: usize) {
        if out.steps.len() > before {
            self.saved.lock().unwrap().push(self.inner.checkpoint());
        }
    }
}

impl Conductor for Recording {
    fn start(&mut self, parties: &BTreeMap<PartyId, u64>, out: &mut Outbox) -> Result<(), String> {
        let before = out.steps.len();
        let r = self.inner.start(parties, out);
        self.record(out, before);
        r
    }
    fn receive(
        &mut self,
        from: &PartyId,
        msg: pb::RoleMessage,
        out: &mut Outbox,
    ) -> Result<Receipt, Rejection> {
        let before = out.steps.len();
        let r = self.inner.receive(from, msg, out);
        self.record(out, before);
        r
    }
    fn rejoin(&mut self, party: &PartyId, state_version: u64, out: &mut Outbox) {
        let before = out.steps.len();
        self.inner.rejoin(party, state_version, out);
        self.record(out, before);
    }
    fn left(&mut self, party: &PartyId) {
        self.inner.left(party);
    }
    fn pending(&self) -> Vec<PartyId> {
        self.inner.pending()
    }
    fn close_phase(&mut self, out: &mut Outbox) -> Result<(), String> {
        let before = out.steps.len();
        let r = self.inner.close_phase(out);
        self.record(out, before);
        r
    }
    fn status(&self) -> String {
        self.inner.status()
    }
    fn progress(&self) -> Progress {
        self.inner.progress()
    }
    fn checkpoint(&self) -> Vec<u8> {
        self.inner.checkpoint()
    }
}

// ---- Messages as the hook sees them. ----

/// The secure-aggregation message inside a coordinator → party message, if any.
pub fn secagg_of(msg: &pb::ToParty) -> Option<ServerMessage> {
    match &msg.body {
        Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body: Some(pb::conductor_message::Body::Secagg(m)),
        })) => server_from_wire(m.clone()).ok(),
        _ => None,
    }
}

/// A coordinator → party message carrying `m`.
pub fn secagg_msg(m: &ServerMessage) -> pb::ToParty {
    protocol_msg(pb::conductor_message::Body::Secagg(server_to_wire(m)))
}

/// The horizontal step inside a coordinator → party message, if any.
pub fn step_of(msg: &pb::ToParty) -> Option<pb::HorizontalStep> {
    match &msg.body {
        Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body: Some(pb::conductor_message::Body::Horizontal(s)),
        })) => Some(s.clone()),
        _ => None,
    }
}

/// A coordinator → party message carrying the step `s`.
pub fn step_msg(s: pb::HorizontalStep) -> pb::ToParty {
    protocol_msg(pb::conductor_message::Body::Horizontal(s))
}

pub fn protocol_msg(body: pb::conductor_message::Body) -> pb::ToParty {
    pb::ToParty {
        job_id: JOB.into(),
        body: Some(pb::to_party::Body::Protocol(pb::ConductorMessage { body: Some(body) })),
    }
}

/// The setup of a step, as a domain value.
pub fn setup_of(s: &pb::HorizontalStep) -> RoundSetup {
    s.setup.clone().unwrap().try_into().unwrap()
}

/// Replaces the setup of a step.
pub fn set_setup(s: &mut pb::HorizontalStep, setup: &RoundSetup) {
    s.setup = Some(setup.into());
}

// ---- Reading the transcript. ----

/// Every secure-aggregation message a party sent, with its sender (accepted or not: the
/// coordinator holds what it received either way).
pub fn sent_by_parties(t: &[Entry]) -> Vec<(PartyId, ClientMessage)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::FromParty { from, msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Secagg(m)),
                })) => Some((from.clone(), client_from_wire(m.clone()).ok()?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Every secure-aggregation message the coordinator sent (after the hook), with its recipient.
pub fn sent_to_parties(t: &[Entry]) -> Vec<(PartyId, ServerMessage)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::ToParty { to, msg } => Some((to.clone(), secagg_of(msg)?)),
            _ => None,
        })
        .collect()
}

/// Every horizontal step the coordinator sent, with its recipient.
pub fn steps_sent(t: &[Entry]) -> Vec<(PartyId, pb::HorizontalStep)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::ToParty { to, msg } => Some((to.clone(), step_of(msg)?)),
            _ => None,
        })
        .collect()
}

/// What `party` refused: its session's refusals and the steps it reported failed, as
/// `(step, reason)` (`None` for a refusal outside a step).
pub fn refusals(t: &[Entry], party: &PartyId) -> Vec<(Option<u64>, String)> {
    t.iter()
        .filter_map(|e| match e {
            Entry::Refused { party: p, reason } if p == party => Some((None, reason.clone())),
            Entry::FromParty { from, msg, .. } if from == party => match &msg.body {
                Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Failed(f)),
                })) => Some((Some(f.step), f.reason.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Whether `party` refused something with a reason containing `needle`.
pub fn refused(t: &[Entry], party: &PartyId, needle: &str) -> bool {
    refusals(t, party).iter().any(|(_, r)| r.contains(needle))
}

/// The parties that refused anything.
pub fn refusers(t: &[Entry]) -> BTreeSet<PartyId> {
    t.iter()
        .filter_map(|e| match e {
            Entry::Refused { party, .. } => Some(party.clone()),
            Entry::FromParty { from, msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                    body: Some(pb::role_message::Body::Failed(_)),
                })) => Some(from.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The secure-aggregation messages `party` sent for `header` (any message at all means it
/// took part in that attempt).
pub fn answers_for(t: &[Entry], party: &PartyId, header: &RoundHeader) -> Vec<ClientMessage> {
    sent_by_parties(t)
        .into_iter()
        .filter(|(p, m)| p == party && m.header() == header)
        .map(|(_, m)| m)
        .collect()
}

/// Parties that sent a message of the given kind for `header`.
pub fn senders(
    t: &[Entry],
    header: &RoundHeader,
    kind: fn(&ClientMessage) -> bool,
) -> BTreeSet<PartyId> {
    sent_by_parties(t)
        .into_iter()
        .filter(|(_, m)| m.header() == header && kind(m))
        .map(|(p, _)| p)
        .collect()
}

pub fn is_advert(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::AdvertiseKeys(_))
}
pub fn is_shares(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::ShareKeys(_))
}
pub fn is_masked(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::MaskedInput(_))
}
pub fn is_unmask(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::Unmask(_))
}

fn kind_key(kind: SecretKind) -> u8 {
    match kind {
        SecretKind::SelfMask => 0,
        SecretKind::MaskKey => 1,
    }
}

/// Which secure-aggregation secrets of one attempt the coordinator holds: for each owner and
/// kind, the distinct parties that released a share of it in an `UnmaskResponse`.
#[derive(Debug, Default)]
pub struct Released {
    pub header: Option<RoundHeader>,
    pub holders: BTreeMap<(PartyId, u8), BTreeSet<PartyId>>,
    /// Parties whose masked vector the coordinator received.
    pub uploaded: BTreeSet<PartyId>,
}

impl Released {
    /// What the transcript shows the coordinator received for `header`.
    pub fn of(t: &[Entry], header: &RoundHeader) -> Self {
        let mut r = Self { header: Some(header.clone()), ..Self::default() };
        for (from, m) in sent_by_parties(t) {
            if m.header() != header {
                continue;
            }
            match m {
                ClientMessage::MaskedInput(_) => {
                    r.uploaded.insert(from);
                }
                ClientMessage::Unmask(u) => {
                    for owner in u.self_mask_shares.keys() {
                        r.holders
                            .entry((owner.clone(), kind_key(SecretKind::SelfMask)))
                            .or_default()
                            .insert(from.clone());
                    }
                    for owner in u.mask_key_shares.keys() {
                        r.holders
                            .entry((owner.clone(), kind_key(SecretKind::MaskKey)))
                            .or_default()
                            .insert(from.clone());
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Shares of `owner`'s secret of `kind` the coordinator received.
    pub fn count(&self, owner: &PartyId, kind: SecretKind) -> usize {
        self.holders.get(&(owner.clone(), kind_key(kind))).map_or(0, BTreeSet::len)
    }

    /// Owners of secrets of `kind` the coordinator can reconstruct (`t` or more shares).
    pub fn known(&self, kind: SecretKind, t: usize) -> BTreeSet<PartyId> {
        self.holders
            .iter()
            .filter(|((_, k), h)| *k == kind_key(kind) && h.len() >= t)
            .map(|((o, _), _)| o.clone())
            .collect()
    }

    /// What the coordinator can compute beyond masked vectors, given the round's `spec` over
    /// `roster`: each problem found ("both secrets of u", "the vector of u alone") and the
    /// sets of parties whose sum it can unmask (enumerated for rosters of at most 8).
    pub fn exposure(
        &self,
        spec: &RoundSpec,
        roster: &[PartyId],
    ) -> (Vec<String>, Vec<Vec<PartyId>>) {
        let t = spec.threshold();
        let b = self.known(SecretKind::SelfMask, t);
        let s = self.known(SecretKind::MaskKey, t);
        let idx: BTreeMap<&PartyId, PartyIndex> =
            roster.iter().enumerate().map(|(i, p)| (p, i as PartyIndex)).collect();
        let graph = spec.graph();
        let name = |i: PartyIndex| roster[i as usize].clone();
        let mut problems = Vec::new();
        for u in b.intersection(&s) {
            problems.push(format!("both the self-mask seed and the masking key of {u}"));
        }
        // The sum over `set` unmasks when every member's self mask and every pairwise mask
        // crossing the set's boundary can be removed.
        let unmasks = |set: &BTreeSet<PartyIndex>| {
            set.iter().all(|&u| {
                self.uploaded.contains(&name(u))
                    && b.contains(&name(u))
                    && graph
                        .neighbours(u)
                        .iter()
                        .all(|&v| set.contains(&v) || s.contains(&name(u)) || s.contains(&name(v)))
            })
        };
        for (p, &i) in &idx {
            if unmasks(&BTreeSet::from([i])) && roster.len() > 1 {
                problems.push(format!("the vector of {p} alone"));
            }
        }
        let mut sums = Vec::new();
        if roster.len() <= 8 {
            for mask in 1u32..(1 << roster.len()) {
                let set: BTreeSet<PartyIndex> = (0..roster.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| i as PartyIndex)
                    .collect();
                if unmasks(&set) {
                    sums.push(set.iter().map(|&i| name(i)).collect());
                }
            }
            if sums.len() > 1 {
                problems.push(format!("{} different sums: {sums:?}", sums.len()));
            }
        }
        (problems, sums)
    }
}

/// The round spec (graph, threshold) of the attempt `setup` opens.
pub fn round_spec(setup: &RoundSetup) -> RoundSpec {
    setup.config.spec(&setup.header, &setup.roster).unwrap()
}
