//! Helpers of the deviating-coordinator tests (`tests/deviating.rs`): a federation CA with real
//! party certificates, party sessions signing and checking with them (the participant daemon's
//! code), a coordinator that records its checkpoints as the driver does, readers of the
//! in-memory transcript (what the coordinator sent, what each party answered or refused), and
//! an account of which secure-aggregation secrets the coordinator holds after an attempt: the
//! self-mask seeds it can rebuild from the unmask shares it received, the pairwise seeds
//! parties revealed, and the sums those let it unmask.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::secagg::{PartyIndex, RoundSpec};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation};
use fedcredit_federation::protocol::{
    self, Conductor, Identity, JoinState, Outbox, PartySession, Progress, Receipt, Rejection, Role,
    split_checkpoint,
};
use fedcredit_federation::secagg::{
    ClientMessage, ConsistencyCheck, MaskedInput, RoundHeader, RoundSetup, ServerMessage,
    UnmaskRequest,
};
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
/// table's body) and `secagg` (the `[secagg]` table's body). Parsed without
/// [`JobSpec::validate`]: some attacks need a job the coordinator would refuse at submit (a
/// threshold below a majority, a thin SecAgg+ graph), to show the parties refuse it too.
pub fn job_spec(n: usize, top: &str, model: &str, secagg: &str) -> JobSpec {
    let parties: Vec<String> = banks(n).iter().map(|p| format!("\"{}\"", p.0)).collect();
    toml::from_str(&format!(
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
    pub saved: Arc<Mutex<Vec<protocol::Checkpoint>>>,
}

impl Recording {
    fn record(&self, out: &Outbox, before: usize) {
        if out.steps.len() > before {
            self.saved.lock().unwrap().push(self.inner.checkpoint(0));
        }
    }
}

impl Conductor for Recording {
    fn start(
        &mut self,
        parties: &BTreeMap<PartyId, JoinState>,
        out: &mut Outbox,
    ) -> Result<(), String> {
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
    fn rejoin(&mut self, party: &PartyId, state: JoinState, out: &mut Outbox) {
        let before = out.steps.len();
        self.inner.rejoin(party, state, out);
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
    fn checkpoint(&self, logged: usize) -> protocol::Checkpoint {
        self.inner.checkpoint(logged)
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

pub fn is_masked(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::MaskedInput(_))
}
pub fn is_signature(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::Consistency(_))
}
pub fn is_unmask(m: &ClientMessage) -> bool {
    matches!(m, ClientMessage::Unmask(_))
}

/// The masked inputs of one attempt, by sender (what the coordinator received).
pub fn uploads(t: &[Entry], header: &RoundHeader) -> BTreeMap<PartyId, MaskedInput> {
    sent_by_parties(t)
        .into_iter()
        .filter_map(|(p, m)| match m {
            ClientMessage::MaskedInput(m) if m.header == *header => Some((p, m)),
            _ => None,
        })
        .collect()
}

/// Which secure-aggregation secrets of one attempt the coordinator holds, from every message
/// the parties sent it for that attempt.
#[derive(Debug, Default)]
pub struct Released {
    /// Owner → the distinct parties that released a share of its self-mask seed `b`.
    pub self_mask: BTreeMap<PartyId, BTreeSet<PartyId>>,
    /// (revealer, the neighbour it was told dropped): the pair's round seed is known.
    pub seeds: BTreeSet<(PartyId, PartyId)>,
    /// Parties whose masked vector the coordinator received.
    pub uploaded: BTreeSet<PartyId>,
}

impl Released {
    /// What the transcript shows the coordinator received for `header`.
    pub fn of(t: &[Entry], header: &RoundHeader) -> Self {
        let mut r = Self::default();
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
                        r.self_mask.entry(owner.clone()).or_default().insert(from.clone());
                    }
                    for dropped in u.pair_seeds.keys() {
                        r.seeds.insert((from.clone(), dropped.clone()));
                    }
                }
                ClientMessage::Consistency(_) => {}
            }
        }
        r
    }

    /// Shares of `owner`'s self-mask seed the coordinator received.
    pub fn shares_of(&self, owner: &PartyId) -> usize {
        self.self_mask.get(owner).map_or(0, BTreeSet::len)
    }

    /// Parties that revealed their round seed with `party` (treating it as dropped).
    pub fn seeds_of(&self, party: &PartyId) -> usize {
        self.seeds.iter().filter(|(_, d)| d == party).count()
    }

    /// Whether the round seed of the pair `u`, `v` is known (either end revealed it).
    pub fn seed_known(&self, u: &PartyId, v: &PartyId) -> bool {
        self.seeds.contains(&(u.clone(), v.clone())) || self.seeds.contains(&(v.clone(), u.clone()))
    }

    /// Owners of self-mask seeds the coordinator can rebuild (`t` or more shares).
    pub fn known_b(&self, t: usize) -> BTreeSet<PartyId> {
        self.self_mask.iter().filter(|(_, h)| h.len() >= t).map(|(o, _)| o.clone()).collect()
    }

    /// Whether the coordinator can unmask the sum over `set` (roster indices): every member
    /// uploaded, its self-mask seed can be rebuilt, and every pairwise mask between a member
    /// and a neighbour outside the set can be removed.
    pub fn unmasks(
        &self,
        spec: &RoundSpec,
        roster: &[PartyId],
        set: &BTreeSet<PartyIndex>,
    ) -> bool {
        let b = self.known_b(spec.threshold());
        let name = |i: PartyIndex| &roster[i as usize];
        !set.is_empty()
            && set.iter().all(|&u| {
                self.uploaded.contains(name(u))
                    && b.contains(name(u))
                    && spec
                        .graph()
                        .neighbours(u)
                        .iter()
                        .all(|&v| set.contains(&v) || self.seed_known(name(u), name(v)))
            })
    }

    /// What the coordinator can compute beyond masked vectors, for the attempt of `spec` over
    /// `roster`: each problem found ("both the self-mask seed of u and v's round seed with it",
    /// "the vector of u alone", "several sums") and the sets of parties whose sum it can unmask
    /// (enumerated for rosters of at most 8).
    pub fn exposure(
        &self,
        spec: &RoundSpec,
        roster: &[PartyId],
    ) -> (Vec<String>, Vec<Vec<PartyId>>) {
        let b = self.known_b(spec.threshold());
        let mut problems = Vec::new();
        // A party is either a survivor (its b is rebuilt) or treated as dropped (its
        // neighbours reveal their round seeds with it), never both.
        for (v, u) in &self.seeds {
            if b.contains(u) {
                problems
                    .push(format!("both the self-mask seed of {u} and {v}'s round seed with it"));
            }
        }
        for (i, p) in roster.iter().enumerate() {
            if roster.len() > 1 && self.unmasks(spec, roster, &BTreeSet::from([i as PartyIndex])) {
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
                if self.unmasks(spec, roster, &set) {
                    sums.push(set.iter().map(|&i| roster[i as usize].clone()).collect());
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

/// The members of `p`'s neighbourhood (itself included) in the attempt of `setup`.
pub fn neighbourhood(setup: &RoundSetup, p: &PartyId) -> Vec<PartyId> {
    let spec = round_spec(setup);
    let i = setup.roster.iter().position(|q| q == p).unwrap() as PartyIndex;
    spec.graph().neighbourhood(i).into_iter().map(|v| setup.roster[v as usize].clone()).collect()
}

/// What a deviating coordinator tells one party after the uploads of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The fast path: nobody dropped (an unmask request without a consistency check).
    Fast,
    /// A consistency check naming these parties dropped, then the unmask request for that
    /// survivor set with every signature the coordinator collected.
    Dropped(BTreeSet<PartyId>),
}

/// The unmask request the coordinator can make for `p` in the attempt of `setup`, telling it
/// that `dropped` dropped, with the shares its surviving neighbours sealed to it (taken from
/// their uploads in `t`) and `signatures`.
pub fn unmask_request(
    t: &[Entry],
    setup: &RoundSetup,
    p: &PartyId,
    dropped: &BTreeSet<PartyId>,
    signatures: &BTreeMap<PartyId, Vec<u8>>,
) -> UnmaskRequest {
    let hood = neighbourhood(setup, p);
    let up = uploads(t, &setup.header);
    let survivors: Vec<PartyId> = hood.iter().filter(|q| !dropped.contains(*q)).cloned().collect();
    let bundles = survivors
        .iter()
        .filter(|q| *q != p)
        .filter_map(|q| Some((q.clone(), up.get(q)?.bundles.get(p)?.clone())))
        .collect();
    UnmaskRequest {
        header: setup.header.clone(),
        survivors,
        dropped: hood.iter().filter(|q| dropped.contains(*q)).cloned().collect(),
        all_survivors: setup.roster.iter().filter(|q| !dropped.contains(*q)).cloned().collect(),
        signatures: signatures.clone(),
        bundles,
    }
}

/// Plays `views` on the attempt of `setup` after its uploads are in `fed`'s transcript: a
/// consistency check to every party told of dropouts, then each party's unmask request (with
/// every survivor-set signature collected), then, when `both` is set, the other path too (in
/// case a party answers twice: the fast path to those told of dropouts; to the others, the
/// unmask request for the first set of dropouts anyone was told of). Returns the signatures
/// collected.
pub fn play_views(
    fed: &mut Federation,
    setup: &RoundSetup,
    views: &BTreeMap<PartyId, View>,
    both: bool,
) -> BTreeMap<PartyId, Vec<u8>> {
    let h = &setup.header;
    for (p, v) in views {
        if let View::Dropped(d) = v {
            let survivors = setup.roster.iter().filter(|q| !d.contains(*q)).cloned().collect();
            let c = ConsistencyCheck { header: h.clone(), survivors };
            fed.inject(p, secagg_msg(&ServerMessage::Consistency(c)));
        }
    }
    let _ = fed.run(&mut fedcredit_federation::protocol::in_memory::honest);
    let signatures: BTreeMap<PartyId, Vec<u8>> = sent_by_parties(&fed.transcript)
        .into_iter()
        .filter_map(|(p, m)| match m {
            ClientMessage::Consistency(c) if c.header == *h => Some((p, c.signature)),
            _ => None,
        })
        .collect();
    let none = BTreeSet::new();
    // The fast-path parties' other path: the first survivor set anyone was asked to sign.
    let slow = views.values().find_map(|v| match v {
        View::Dropped(d) => Some(d.clone()),
        View::Fast => None,
    });
    for (p, v) in views {
        let first = match v {
            View::Fast => unmask_request(&fed.transcript, setup, p, &none, &BTreeMap::new()),
            View::Dropped(d) => unmask_request(&fed.transcript, setup, p, d, &signatures),
        };
        fed.inject(p, secagg_msg(&ServerMessage::Unmask(first)));
        if both {
            let other = match (v, &slow) {
                (View::Fast, Some(d)) => unmask_request(&fed.transcript, setup, p, d, &signatures),
                (View::Fast, None) => continue,
                (View::Dropped(_), _) => {
                    unmask_request(&fed.transcript, setup, p, &none, &BTreeMap::new())
                }
            };
            fed.inject(p, secagg_msg(&ServerMessage::Unmask(other)));
        }
    }
    let _ = fed.run(&mut fedcredit_federation::protocol::in_memory::honest);
    signatures
}
