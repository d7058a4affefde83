//! Secure-aggregation rounds as sans-IO state machines: [`SecAggServer`] for the
//! coordinator, [`SecAggClient`] for each participant.
//!
//! The protocol is Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
//! Machine Learning" (CCS 2017), with the consistency check of its actively secure variant
//! against the server, round secrets derived from signed long-term pairwise keys (Ma et al.,
//! "Flamingo", IEEE S&P 2023), and the optional sparse neighbour
//! graph of Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic
//! Overhead" (SecAgg+, CCS 2020); the cryptography is in [`fedcredit_crypto::secagg`].
//! This module adds party names, typed phases, per-phase membership, deadlines as
//! explicit inputs, restarts and honest statuses. Nothing here reads a clock, opens a
//! socket or uses a global RNG: the driver passes messages, calls
//! [`SecAggServer::close_phase`] when a phase's deadline passes (or when
//! [`Receipt::phase_complete`] says everyone answered), and hands in the RNG.
//!
//! # Round flow
//!
//! Every pair of parties shares a root secret for the job, derived from their job channel
//! keys (signed with their certificates, checked by each other: [`crate::channel`]); each
//! round derives its pairwise mask seeds and share keys from it
//! ([`fedcredit_crypto::secagg::keys`]), so a round needs no key exchange of its own:
//!
//! | phase | server sends | each party answers |
//! |---|---|---|
//! | setup | [`RoundSetup`] (header, config, roster) with the step's task | [`SecAggClient::new`] → [`MaskedInput`]: its masked vector and one sealed share of its self-mask seed per neighbour |
//! | [`Phase::MaskedInput`] closes, someone dropped | [`ConsistencyCheck`]: the survivor set | [`ConsistencySignature`]: its signature over that set |
//! | [`Phase::MaskedInput`] (nobody dropped) or [`Phase::Consistency`] closes | [`UnmaskRequest`]: survivors and dropped of its neighbourhood, the whole survivor set, the shares sealed to it, and the survivors' signatures when someone dropped | [`UnmaskResponse`]: a share of `b` per surviving neighbour, its own round seed with each dropped one, never both for one party |
//! | [`Phase::Unmask`] closes | — | — ([`ServerStep::Done`] with the decoded sum) |
//!
//! Dropouts:
//! - **before the upload** (missing at the close of MaskedInput): recovered in the same
//!   attempt, after the consistency check — its surviving neighbours reveal their round seeds
//!   with it, so its pairwise masks come out of the sum.
//! - **after the upload**: it is in the sum; its self mask is rebuilt from `t` shares.
//! - **too many dropouts** (fewer than `t` holders of a needed secret, or a survivor with a
//!   dropped neighbour vanishing before the unmask): [`close_phase`] returns an error and the
//!   server is [`Phase::Aborted`]. A failed attempt in which fewer than `t` parties answered
//!   the unmask request reveals nothing, so [`SecAggServer::retry`] may resume with the
//!   parties still answering; once `t` or more answered, no retry is offered (a retry's sum
//!   with another roster could be subtracted from what the answers revealed).
//!
//! Every message carries a [`RoundHeader`] (job, round, attempt); one for another round or
//! attempt is rejected with [`SecAggRoundError::WrongRound`], a message from a party
//! outside the phase's membership with [`SecAggRoundError::NotAMember`], a repeated one
//! with [`SecAggRoundError::Duplicate`], one for a closed phase with
//! [`SecAggRoundError::TooLate`]. A rejected message leaves the state unchanged.
//!
//! # Threat model and what each role sees
//!
//! Semi-honest parties; a coordinator that may deviate from the protocol (substitute keys,
//! tell parties different survivor sets, shrink the roster, repeat a step) but does not
//! collude with parties. The transport's mutual TLS binds what the coordinator *receives*
//! to a party; it does not bind what the coordinator *relays*. So the keys that masks and
//! shares derive from are the job channel keys each party signs with its certificate key and
//! each peer checks against the federation CA before use ([`crate::channel`]): a coordinator
//! cannot stand in for a neighbour (with fresh per-round keys relayed unsigned, a
//! coordinator handing party `u` its own keys in place of `v`'s would open every share of
//! `u` and unmask `u`'s vector in one attempt).
//!
//! When some party dropped, the survivors sign the survivor set (Bonawitz et al., §6,
//! ConsistencyCheck) and a party releases anything only after it has seen, for every member
//! `u` of its neighbourhood, at least `t` valid signatures from `u`'s neighbourhood on the
//! very set it signed. A party answers one unmask request per attempt, either on this path
//! or on the fast path (nobody dropped, only shares of `b`). A coordinator that wants `u`'s
//! vector needs `t` members of `u`'s neighbourhood releasing `b_u` and the others revealing
//! their seeds with `u` (having signed a set without `u`); with `t > m/2` (`m` the
//! neighbourhood size) both groups cannot exist. Parties enforce that threshold themselves
//! (see `crate::horizontal::role`). A party also refuses an unmask request whose survivor
//! graph is disconnected (SecAgg+, where a component's own sum would unmask on its own) or
//! thinner than the threshold.
//!
//! | role | sees |
//! |---|---|
//! | coordinator | roster; share ciphertexts it cannot open (AEAD, bound to sender, recipient, job, round, attempt); masked vectors, each uniformly random in `Z_{2^k}` on its own; signed survivor sets; shares of `b` for survivors and, for a dropped party, its surviving neighbours' round seeds with it, never both for one party; the decoded sum of the contributors' clipped vectors |
//! | participant | its neighbours' names, certificates and survivor-set signatures; one share of each neighbour's `b` (below threshold); the survivor/dropout status of the round |
//! | fewer than `t` colluding neighbours | nothing about another party's vector |
//!
//! [`close_phase`]: SecAggServer::close_phase

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use fedcredit_crypto::FixedPoint;
use fedcredit_crypto::secagg::{
    self as sa, Aggregator, InputSpec, MaskSeed, MaskedState, PairRoot, PartyIndex, RoundSpec,
    SecAggError, SecAggParams, SecretKind, Share, UnmaskPlan,
};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::{AuthError, statement};
use crate::ids::{JobId, PartyId, RoundId};

/// Largest roster a round accepts (a bound on the memory a roster can make anyone allocate).
pub const MAX_ROSTER: usize = 1024;

/// A party's keys for a round: its pair roots with its neighbours, and signatures over
/// survivor sets. The participant runtime implements it with the party's verified job
/// directory and certificate key ([`crate::protocol::PartyAuth`]); [`in_memory::Keyring`]
/// is the stand-in for tests of the round logic alone.
pub trait RoundAuth {
    /// The job's pair root with `peer` (absent without a verified channel key of the peer).
    fn pair_root(&self, peer: &PartyId) -> Option<PairRoot>;
    /// Signs `message`.
    ///
    /// # Errors
    /// [`AuthError::Sign`].
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError>;
    /// Checks `party`'s signature over `message`.
    ///
    /// # Errors
    /// [`AuthError`] when it does not verify against the party's certificate.
    fn verify(
        &self,
        party: &PartyId,
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), AuthError>;
}

impl RoundAuth for crate::protocol::PartyAuth<'_> {
    fn pair_root(&self, peer: &PartyId) -> Option<PairRoot> {
        self.channels.secagg_root(peer)
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        crate::protocol::PartyAuth::sign(self, message)
    }
    fn verify(
        &self,
        party: &PartyId,
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), AuthError> {
        self.verify_peer(party, message, signature, what)
    }
}

/// The statement a survivor signs in the consistency check: the round and the sorted set.
pub fn survivors_statement(spec: &RoundSpec, survivors: &[PartyId]) -> Vec<u8> {
    let mut sorted: Vec<&PartyId> = survivors.iter().collect();
    sorted.sort();
    let mut parts: Vec<&[u8]> = vec![spec.context().as_bytes()];
    parts.extend(sorted.iter().map(|p| p.0.as_bytes()));
    statement("fedcredit secagg survivors v1", &parts)
}

/// Identifies one attempt of one round of one job. Bound into every key derivation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoundHeader {
    /// The job.
    pub job: JobId,
    /// The round within the job.
    pub round: RoundId,
    /// Restarts of this round so far (0 for the first attempt).
    pub attempt: u32,
}

impl fmt::Display for RoundHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} round {} attempt {}", self.job, self.round, self.attempt)
    }
}

/// How a job aggregates securely.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SecAggConfig {
    /// Elements per vector.
    pub vector_len: usize,
    /// Values are clipped to `[-clip, clip]` before encoding.
    pub clip: f64,
    /// Fixed-point resolution `2^-frac_bits`; the decoded sum is within
    /// `n · 2^-(frac_bits+1)` of the sum of the clipped values.
    pub frac_bits: u32,
    /// Shamir threshold within a neighbourhood; `None` = majority. See [`SecAggParams::threshold`].
    pub threshold: Option<usize>,
    /// SecAgg+ neighbours per party; `None` = complete graph. See [`SecAggParams::degree`].
    pub degree: Option<usize>,
}

impl SecAggConfig {
    /// Complete graph, majority threshold.
    pub fn new(vector_len: usize, clip: f64, frac_bits: u32) -> Self {
        Self { vector_len, clip, frac_bits, threshold: None, degree: None }
    }

    /// The fixed-point code for a roster of `n` parties: the smallest ring holding their sum.
    ///
    /// # Errors
    /// [`SecAggRoundError::Config`] when the clip is bad or more than 64 bits are needed.
    pub fn fixed_point(&self, n: usize) -> Result<FixedPoint, SecAggRoundError> {
        FixedPoint::for_sum(n, self.clip, self.frac_bits)
            .map_err(|e| SecAggRoundError::Config { reason: e.to_string() })
    }

    /// The round's vector for a roster of `n`.
    ///
    /// # Errors
    /// [`SecAggRoundError::Config`] when the ring cannot hold the sum.
    pub fn input(&self, n: usize) -> Result<InputSpec, SecAggRoundError> {
        let input = InputSpec { fixed: self.fixed_point(n)?, vector_len: self.vector_len };
        input.check(n).map_err(|e| SecAggRoundError::Config { reason: e.to_string() })?;
        Ok(input)
    }

    /// The round spec (context, threshold, graph) of `roster`.
    ///
    /// # Errors
    /// [`SecAggRoundError`] when the roster cannot form a round with these parameters.
    pub fn spec(
        &self,
        header: &RoundHeader,
        roster: &[PartyId],
    ) -> Result<RoundSpec, SecAggRoundError> {
        if roster.len() > MAX_ROSTER {
            return Err(SecAggRoundError::Config {
                reason: format!("{} parties; a round takes at most {MAX_ROSTER}", roster.len()),
            });
        }
        self.input(roster.len().max(1))?;
        let params = SecAggParams { threshold: self.threshold, degree: self.degree };
        let names: Vec<&str> = roster.iter().map(|p| p.0.as_str()).collect();
        RoundSpec::new(&header.job.0, header.round.0, header.attempt, &names, params).map_err(|e| {
            match e {
                SecAggError::InvalidParam { name: "roster", .. } if roster.len() < 2 => {
                    SecAggRoundError::TooFewParties { have: roster.len(), need: 2 }
                }
                other => SecAggRoundError::Config { reason: other.to_string() },
            }
        })
    }
}

/// The phases of a round, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Collecting masked vectors (each with its sealed shares).
    MaskedInput,
    /// Collecting survivors' signatures over the survivor set (only when someone dropped).
    Consistency,
    /// Collecting shares for unmasking.
    Unmask,
    /// Finished with a sum.
    Done,
    /// Ended without a sum (restart or failure); see [`SecAggServer::retry`].
    Aborted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::MaskedInput => "masked-input",
            Phase::Consistency => "consistency",
            Phase::Unmask => "unmask",
            Phase::Done => "done",
            Phase::Aborted => "aborted",
        })
    }
}

/// Why a secure-aggregation message or step was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggRoundError {
    /// The message belongs to another job, round or attempt.
    #[error("message for {got}, expected {expected}")]
    WrongRound {
        /// This round.
        expected: RoundHeader,
        /// The message's header.
        got: RoundHeader,
    },
    /// The sender is not in the roster.
    #[error("party {party} is not in the roster")]
    UnknownParty {
        /// The sender.
        party: PartyId,
    },
    /// The message is for a phase that has already closed.
    #[error("{message} message from {party} is too late: the round is in phase {phase}")]
    TooLate {
        /// The sender.
        party: PartyId,
        /// The message's phase.
        message: Phase,
        /// The current phase.
        phase: Phase,
    },
    /// The message is for a phase that has not started.
    #[error("{message} message from {party} is early: the round is in phase {phase}")]
    WrongPhase {
        /// The sender (the server, for a client).
        party: PartyId,
        /// The message's phase.
        message: Phase,
        /// The current phase.
        phase: Phase,
    },
    /// The sender is not expected to answer in this phase (e.g. it dropped earlier).
    #[error("party {party} is not a member of phase {phase}")]
    NotAMember {
        /// The sender.
        party: PartyId,
        /// The phase.
        phase: Phase,
    },
    /// The sender already answered in this phase.
    #[error("party {party} already answered in phase {phase}")]
    Duplicate {
        /// The sender.
        party: PartyId,
        /// The phase.
        phase: Phase,
    },
    /// The message is malformed.
    #[error("invalid message from {party}: {reason}")]
    InvalidMessage {
        /// The sender.
        party: PartyId,
        /// What is wrong.
        reason: String,
    },
    /// Too few parties remain for a round.
    #[error("{have} parties remain, a round needs at least {need}")]
    TooFewParties {
        /// Parties left.
        have: usize,
        /// Minimum.
        need: usize,
    },
    /// Too few holders answered to reconstruct a secret; the attempt is over.
    #[error("{kind} of {party}: {got} shares available, threshold is {need}")]
    ThresholdNotMet {
        /// Whose secret.
        party: PartyId,
        /// Which secret.
        kind: SecretKind,
        /// Shares available.
        got: usize,
        /// Threshold.
        need: usize,
    },
    /// The attempt is already over (done or aborted), or not over when a retry was asked.
    #[error("{action} is not possible in phase {phase}")]
    NotNow {
        /// What was attempted.
        action: &'static str,
        /// The current phase.
        phase: Phase,
    },
    /// The configuration cannot be used.
    #[error("invalid secure-aggregation config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A cryptographic check failed (party indices refer to roster positions).
    #[error(transparent)]
    Crypto(#[from] SecAggError),
    /// A signature is missing or does not verify.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The party refuses what the server asks (names why).
    #[error("refused: {0}")]
    Refused(String),
}

/// Round parameters and roster, broadcast to every party to start an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSetup {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// Aggregation parameters.
    pub config: SecAggConfig,
    /// The parties of this attempt, sorted; a party's index is its position.
    pub roster: Vec<PartyId>,
}

/// Party → server, phase MaskedInput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// The masked vector, elements of `Z_{2^k}` (pack with
    /// [`fedcredit_crypto::secagg::pack_elements`] for `⌈k/8⌉` bytes each on the wire).
    pub masked: Vec<u64>,
    /// One sealed share of the sender's self-mask seed per neighbour (recipient →
    /// ChaCha20-Poly1305 ciphertext); empty in the plaintext baseline.
    pub bundles: BTreeMap<PartyId, Vec<u8>>,
}

/// Server → survivor, when some party dropped after sharing: the survivor set to sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyCheck {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// Every party whose masked vector arrived, sorted.
    pub survivors: Vec<PartyId>,
}

/// Survivor → server: its signature over [`survivors_statement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencySignature {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Server → survivor: the status of each member of its neighbourhood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// Neighbourhood members whose masked vectors arrived (including the recipient).
    pub survivors: Vec<PartyId>,
    /// Neighbours whose masked vectors did not arrive.
    pub dropped: Vec<PartyId>,
    /// Every party of the roster whose masked vector arrived, sorted.
    pub all_survivors: Vec<PartyId>,
    /// Survivors' signatures over `all_survivors` (after a consistency check; empty on the
    /// fast path, when nobody dropped).
    pub signatures: BTreeMap<PartyId, Vec<u8>>,
    /// The shares its surviving neighbours sealed to it (sender → ciphertext).
    pub bundles: BTreeMap<PartyId, Vec<u8>>,
}

/// Survivor → server, phase Unmask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmaskResponse {
    /// Job, round, attempt.
    pub header: RoundHeader,
    /// Survivor → share of its self-mask seed.
    pub self_mask_shares: BTreeMap<PartyId, Share>,
    /// Dropped neighbour → the sender's round seed with it.
    pub pair_seeds: BTreeMap<PartyId, MaskSeed>,
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    /// Start of an attempt.
    Setup(RoundSetup),
    /// The survivor set to sign (MaskedInput closed with dropouts).
    Consistency(ConsistencyCheck),
    /// Survivors and dropouts (MaskedInput or Consistency closed).
    Unmask(UnmaskRequest),
}

impl ServerMessage {
    /// The message's header.
    pub fn header(&self) -> &RoundHeader {
        match self {
            ServerMessage::Setup(m) => &m.header,
            ServerMessage::Consistency(m) => &m.header,
            ServerMessage::Unmask(m) => &m.header,
        }
    }

    /// The client phase the message answers.
    pub fn phase(&self) -> Phase {
        match self {
            ServerMessage::Setup(_) => Phase::MaskedInput,
            ServerMessage::Consistency(_) => Phase::Consistency,
            ServerMessage::Unmask(_) => Phase::Unmask,
        }
    }
}

/// Everything a party sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMessage {
    /// Phase MaskedInput.
    MaskedInput(MaskedInput),
    /// Phase Consistency.
    Consistency(ConsistencySignature),
    /// Phase Unmask.
    Unmask(UnmaskResponse),
}

impl ClientMessage {
    /// The message's header.
    pub fn header(&self) -> &RoundHeader {
        match self {
            ClientMessage::MaskedInput(m) => &m.header,
            ClientMessage::Consistency(m) => &m.header,
            ClientMessage::Unmask(m) => &m.header,
        }
    }

    /// The phase the message belongs to.
    pub fn phase(&self) -> Phase {
        match self {
            ClientMessage::MaskedInput(_) => Phase::MaskedInput,
            ClientMessage::Consistency(_) => Phase::Consistency,
            ClientMessage::Unmask(_) => Phase::Unmask,
        }
    }
}

/// The answer to an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Every member of the phase has now answered; the driver may close it without waiting
    /// for the deadline.
    pub phase_complete: bool,
}

/// The result of a successful round.
#[derive(Debug, Clone, PartialEq)]
pub struct SecAggOutput {
    /// The round.
    pub header: RoundHeader,
    /// The decoded sum of the contributors' clipped vectors.
    pub sum: Vec<f64>,
    /// The same sum in the ring.
    pub ring_sum: Vec<u64>,
    /// The fixed-point code used.
    pub fixed: FixedPoint,
    /// Parties whose vectors are in the sum.
    pub contributors: Vec<PartyId>,
    /// Parties of the roster whose vectors are not in the sum.
    pub dropped: Vec<PartyId>,
    /// `|sum − Σ clipped inputs| ≤ error_bound` element-wise.
    pub error_bound: f64,
}

/// What the driver does after closing a phase.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerStep {
    /// Send these messages; the next phase is open.
    Send(Vec<(PartyId, ServerMessage)>),
    /// The round is complete.
    Done(SecAggOutput),
}

/// The name used for the server in errors a client raises about its messages.
fn coordinator() -> PartyId {
    PartyId("coordinator".into())
}

fn sorted_roster(roster: &[PartyId]) -> Result<Vec<PartyId>, SecAggRoundError> {
    let mut r = roster.to_vec();
    r.sort();
    let before = r.len();
    r.dedup();
    if r.len() != before {
        return Err(SecAggRoundError::Config { reason: "a party is listed twice".into() });
    }
    Ok(r)
}

/// The coordinator's state machine for one attempt of one round.
pub struct SecAggServer {
    header: RoundHeader,
    config: SecAggConfig,
    roster: Vec<PartyId>,
    index: BTreeMap<PartyId, PartyIndex>,
    spec: RoundSpec,
    input: InputSpec,
    phase: Phase,
    /// Who answered in the current phase.
    responded: BTreeSet<PartyIndex>,
    /// Who completed each closed phase.
    completed: BTreeMap<Phase, Vec<PartyId>>,
    aggregator: Option<Aggregator>,
    plan: Option<UnmaskPlan>,
    /// The whole survivor set, once the masked inputs are in.
    survivor_set: Vec<PartyId>,
    /// Survivors' signatures over the survivor set (consistency check).
    consistency: BTreeMap<PartyIndex, Vec<u8>>,
    /// Parties asked to unmask (all survivors, or the signers after a consistency check).
    unmask_members: BTreeSet<PartyIndex>,
    responses: BTreeMap<PartyIndex, sa::UnmaskShares>,
    /// Unmask answers received in this attempt (released shares: no retry once `t`).
    unmask_answers: usize,
    /// Parties still answering when the attempt ended.
    live: Vec<PartyId>,
}

impl fmt::Debug for SecAggServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecAggServer")
            .field("header", &self.header)
            .field("phase", &self.phase)
            .field("roster", &self.roster)
            .field("responded", &self.responded.len())
            .field("shares", &"<redacted>")
            .finish()
    }
}

impl SecAggServer {
    /// Opens an attempt for `roster` (sorted here) and returns the setup message for each party.
    ///
    /// # Errors
    /// [`SecAggRoundError::TooFewParties`] for fewer than 2 parties,
    /// [`SecAggRoundError::Config`] for parameters the roster cannot satisfy.
    pub fn new(
        header: RoundHeader,
        config: SecAggConfig,
        roster: &[PartyId],
    ) -> Result<(Self, Vec<(PartyId, ServerMessage)>), SecAggRoundError> {
        let roster = sorted_roster(roster)?;
        let spec = config.spec(&header, &roster)?;
        let input = config.input(roster.len())?;
        let aggregator = Aggregator::new(spec.clone(), input)?;
        let index = roster.iter().enumerate().map(|(i, p)| (p.clone(), i as PartyIndex)).collect();
        let setup = RoundSetup { header: header.clone(), config, roster: roster.clone() };
        let out = roster.iter().map(|p| (p.clone(), ServerMessage::Setup(setup.clone()))).collect();
        let server = Self {
            header,
            config,
            roster,
            index,
            spec,
            input,
            phase: Phase::MaskedInput,
            responded: BTreeSet::new(),
            completed: BTreeMap::new(),
            aggregator: Some(aggregator),
            plan: None,
            survivor_set: Vec::new(),
            consistency: BTreeMap::new(),
            unmask_members: BTreeSet::new(),
            responses: BTreeMap::new(),
            unmask_answers: 0,
            live: Vec::new(),
        };
        Ok((server, out))
    }

    /// The attempt's header.
    pub fn header(&self) -> &RoundHeader {
        &self.header
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The attempt's roster, sorted.
    pub fn roster(&self) -> &[PartyId] {
        &self.roster
    }

    /// Bits of the ring `Z_{2^k}` the attempt aggregates in.
    pub fn ring_bits(&self) -> u32 {
        self.input.fixed.ring_bits
    }

    /// The Shamir threshold of the attempt.
    pub fn threshold(&self) -> usize {
        self.spec.threshold()
    }

    /// A party's neighbours (all other parties unless SecAgg+ is on).
    pub fn neighbours(&self, party: &PartyId) -> Vec<PartyId> {
        self.index
            .get(party)
            .map(|&i| self.names(self.spec.graph().neighbours(i).iter().copied()))
            .unwrap_or_default()
    }

    /// The parties expected to answer in the current phase.
    pub fn members(&self) -> Vec<PartyId> {
        match self.phase {
            Phase::MaskedInput => self.roster.clone(),
            Phase::Consistency => self.survivor_set.clone(),
            Phase::Unmask => self.names(self.unmask_members.iter().copied()),
            Phase::Done | Phase::Aborted => Vec::new(),
        }
    }

    fn is_member(&self, me: PartyIndex) -> bool {
        match self.phase {
            Phase::MaskedInput => true,
            Phase::Consistency => self.plan.as_ref().is_some_and(|p| p.survivors.contains(&me)),
            Phase::Unmask => self.unmask_members.contains(&me),
            Phase::Done | Phase::Aborted => false,
        }
    }

    /// Members of the current phase that have not answered yet.
    pub fn pending(&self) -> Vec<PartyId> {
        self.members()
            .into_iter()
            .filter(|p| self.index.get(p).is_some_and(|i| !self.responded.contains(i)))
            .collect()
    }

    /// The parties that completed a closed phase, in roster order.
    pub fn completed(&self, phase: Phase) -> Option<&[PartyId]> {
        self.completed.get(&phase).map(Vec::as_slice)
    }

    /// Whether unmask shares have been released in this attempt (then the step must not run
    /// again with another roster: see [`SecAggServer::retry`]).
    pub fn released_shares(&self) -> bool {
        self.unmask_answers > 0
    }

    fn names(&self, idx: impl IntoIterator<Item = PartyIndex>) -> Vec<PartyId> {
        idx.into_iter().filter_map(|i| self.roster.get(i as usize).cloned()).collect()
    }

    fn name(&self, i: PartyIndex) -> PartyId {
        self.roster.get(i as usize).cloned().unwrap_or_else(|| PartyId(format!("#{i}")))
    }

    /// Translates a map keyed by party names to roster indices.
    fn to_index<V>(
        &self,
        sender: &PartyId,
        named: BTreeMap<PartyId, V>,
    ) -> Result<BTreeMap<PartyIndex, V>, SecAggRoundError> {
        named
            .into_iter()
            .map(|(p, v)| match self.index.get(&p) {
                Some(&i) => Ok((i, v)),
                None => Err(SecAggRoundError::InvalidMessage {
                    party: sender.clone(),
                    reason: format!("names {p}, who is not in the roster"),
                }),
            })
            .collect()
    }

    /// Accepts or rejects one message from `from` (the TLS-authenticated sender).
    /// A rejected message changes nothing.
    ///
    /// # Errors
    /// [`SecAggRoundError`] saying why: wrong round, unknown sender, too late, early,
    /// not a member, duplicate, or invalid content.
    pub fn receive(
        &mut self,
        from: &PartyId,
        msg: ClientMessage,
    ) -> Result<Receipt, SecAggRoundError> {
        let &me = self
            .index
            .get(from)
            .ok_or_else(|| SecAggRoundError::UnknownParty { party: from.clone() })?;
        if msg.header() != &self.header {
            return Err(SecAggRoundError::WrongRound {
                expected: self.header.clone(),
                got: msg.header().clone(),
            });
        }
        let message = msg.phase();
        if matches!(self.phase, Phase::Done | Phase::Aborted) || message < self.phase {
            return Err(SecAggRoundError::TooLate {
                party: from.clone(),
                message,
                phase: self.phase,
            });
        }
        if message > self.phase {
            return Err(SecAggRoundError::WrongPhase {
                party: from.clone(),
                message,
                phase: self.phase,
            });
        }
        if !self.is_member(me) {
            return Err(SecAggRoundError::NotAMember { party: from.clone(), phase: self.phase });
        }
        if self.responded.contains(&me) {
            return Err(SecAggRoundError::Duplicate { party: from.clone(), phase: self.phase });
        }
        let invalid =
            |reason: String| SecAggRoundError::InvalidMessage { party: from.clone(), reason };
        match msg {
            ClientMessage::MaskedInput(m) => {
                let bundles = self.to_index(from, m.bundles)?;
                let agg =
                    self.aggregator.as_mut().ok_or_else(|| invalid("no aggregator".into()))?;
                agg.add_masked(me, &m.masked, bundles).map_err(|e| invalid(e.to_string()))?;
            }
            ClientMessage::Consistency(m) => {
                self.consistency.insert(me, m.signature);
            }
            ClientMessage::Unmask(m) => {
                let shares = sa::UnmaskShares {
                    self_mask: self.to_index(from, m.self_mask_shares)?,
                    pair_seeds: self.to_index(from, m.pair_seeds)?,
                };
                let (agg, plan) = match (&self.aggregator, &self.plan) {
                    (Some(a), Some(p)) => (a, p),
                    _ => return Err(invalid("no unmask plan".into())),
                };
                agg.check_response(plan, me, &shares).map_err(|e| invalid(e.to_string()))?;
                self.responses.insert(me, shares);
                self.unmask_answers += 1;
            }
        }
        self.responded.insert(me);
        let members = self.members().len();
        Ok(Receipt { phase_complete: self.responded.len() == members })
    }

    fn finish_phase(&mut self) -> Vec<PartyId> {
        let responded = std::mem::take(&mut self.responded);
        let done = self.names(responded);
        self.completed.insert(self.phase, done.clone());
        done
    }

    fn abort(&mut self, live: Vec<PartyId>) {
        self.phase = Phase::Aborted;
        self.live = live;
        self.aggregator = None;
        self.responses.clear();
    }

    fn threshold_error(&self, e: SecAggError) -> SecAggRoundError {
        match e {
            SecAggError::ThresholdNotMet { party, kind, got, need } => {
                SecAggRoundError::ThresholdNotMet { party: self.name(party), kind, got, need }
            }
            other => SecAggRoundError::Crypto(other),
        }
    }

    /// The unmask requests of the plan for `members`, with `signatures` (empty on the fast
    /// path).
    fn unmask_requests(
        &self,
        plan: &UnmaskPlan,
        members: &BTreeSet<PartyIndex>,
        signatures: &BTreeMap<PartyId, Vec<u8>>,
    ) -> Vec<(PartyId, ServerMessage)> {
        let Some(agg) = &self.aggregator else { return Vec::new() };
        plan.requests
            .iter()
            .filter(|(u, _)| members.contains(u))
            .map(|(&u, (alive, gone))| {
                let bundles = agg
                    .bundles_for(plan, u)
                    .into_iter()
                    .map(|(f, ct)| (self.name(f), ct))
                    .collect();
                (
                    self.name(u),
                    ServerMessage::Unmask(UnmaskRequest {
                        header: self.header.clone(),
                        survivors: self.names(alive.iter().copied()),
                        dropped: self.names(gone.iter().copied()),
                        all_survivors: self.survivor_set.clone(),
                        signatures: signatures.clone(),
                        bundles,
                    }),
                )
            })
            .collect()
    }

    /// Ends the current phase (its deadline passed, or everyone answered) and moves on.
    ///
    /// # Errors
    /// [`SecAggRoundError::ThresholdNotMet`] or [`SecAggRoundError::Crypto`] when the attempt
    /// cannot finish (the server is then [`Phase::Aborted`]; see [`SecAggServer::retry`]),
    /// [`SecAggRoundError::Refused`] when the survivors' graph is disconnected,
    /// [`SecAggRoundError::NotNow`] when the attempt is already over.
    pub fn close_phase(&mut self) -> Result<ServerStep, SecAggRoundError> {
        match self.phase {
            Phase::MaskedInput => {
                let done = self.finish_phase();
                let plan = match self.aggregator.as_ref().map(Aggregator::plan) {
                    Some(Ok(plan)) => plan,
                    Some(Err(e)) => {
                        self.abort(done);
                        return Err(self.threshold_error(e));
                    }
                    None => {
                        self.abort(done);
                        return Err(SecAggRoundError::Config { reason: "no aggregator".into() });
                    }
                };
                if !self.spec.graph().connected_within(&plan.survivors) {
                    self.abort(done);
                    return Err(SecAggRoundError::Refused(
                        "the survivors' neighbour graph is disconnected: a part's sum would unmask on its own".into(),
                    ));
                }
                self.survivor_set = self.names(plan.survivors.iter().copied());
                let out = if plan.dropped.is_empty() {
                    // Fast path: nobody dropped, only self-mask shares are asked for.
                    self.unmask_members = plan.survivors.clone();
                    self.phase = Phase::Unmask;
                    self.unmask_requests(&plan, &plan.survivors, &BTreeMap::new())
                } else {
                    self.phase = Phase::Consistency;
                    plan.survivors
                        .iter()
                        .map(|&u| {
                            (
                                self.name(u),
                                ServerMessage::Consistency(ConsistencyCheck {
                                    header: self.header.clone(),
                                    survivors: self.survivor_set.clone(),
                                }),
                            )
                        })
                        .collect()
                };
                self.plan = Some(plan);
                Ok(ServerStep::Send(out))
            }
            Phase::Consistency => {
                let signers: BTreeSet<PartyIndex> = self.responded.clone();
                self.finish_phase();
                let Some(plan) = self.plan.take() else {
                    self.abort(Vec::new());
                    return Err(SecAggRoundError::Config { reason: "no unmask plan".into() });
                };
                let signatures: BTreeMap<PartyId, Vec<u8>> = std::mem::take(&mut self.consistency)
                    .into_iter()
                    .map(|(u, s)| (self.name(u), s))
                    .collect();
                self.unmask_members = signers.clone();
                self.phase = Phase::Unmask;
                let out = self.unmask_requests(&plan, &signers, &signatures);
                self.plan = Some(plan);
                Ok(ServerStep::Send(out))
            }
            Phase::Unmask => {
                let done = self.finish_phase();
                let (aggregator, plan) = match (self.aggregator.take(), self.plan.take()) {
                    (Some(a), Some(p)) => (a, p),
                    _ => {
                        self.abort(done);
                        return Err(SecAggRoundError::Config { reason: "no unmask plan".into() });
                    }
                };
                let responses = std::mem::take(&mut self.responses);
                match aggregator.unmask(&plan, &responses) {
                    Ok(ring_sum) => {
                        self.phase = Phase::Done;
                        self.live = done;
                        let fixed = self.input.fixed;
                        let contributors = self.names(plan.survivors.iter().copied());
                        Ok(ServerStep::Done(SecAggOutput {
                            header: self.header.clone(),
                            sum: fixed.decode_vec(&ring_sum),
                            ring_sum,
                            fixed,
                            error_bound: fixed.sum_error_bound(contributors.len()),
                            contributors,
                            dropped: self.names(plan.dropped.iter().copied()),
                        }))
                    }
                    Err(e) => {
                        self.abort(done);
                        Err(self.threshold_error(e))
                    }
                }
            }
            Phase::Done | Phase::Aborted => {
                Err(SecAggRoundError::NotNow { action: "closing a phase", phase: self.phase })
            }
        }
    }

    /// The parties still answering when this attempt ended: the next attempt's roster.
    pub fn live_parties(&self) -> &[PartyId] {
        &self.live
    }

    /// Starts the next attempt of the same round with the parties still answering, after a
    /// failed [`SecAggServer::close_phase`].
    ///
    /// # Errors
    /// [`SecAggRoundError::NotNow`] unless the attempt is [`Phase::Aborted`];
    /// [`SecAggRoundError::Refused`] once `t` or more parties released unmask shares in this
    /// attempt (a sum over another roster could then be subtracted from what they revealed);
    /// [`SecAggRoundError::TooFewParties`] or [`SecAggRoundError::Config`] when the remaining
    /// parties cannot form a round.
    pub fn retry(&self) -> Result<(Self, Vec<(PartyId, ServerMessage)>), SecAggRoundError> {
        if self.phase != Phase::Aborted {
            return Err(SecAggRoundError::NotNow { action: "retrying", phase: self.phase });
        }
        if self.unmask_answers >= self.spec.threshold() {
            return Err(SecAggRoundError::Refused(format!(
                "{} parties released unmask shares in {}; the step cannot run again",
                self.unmask_answers, self.header
            )));
        }
        let header = RoundHeader { attempt: self.header.attempt + 1, ..self.header.clone() };
        Self::new(header, self.config, &self.live)
    }
}

enum ClientState {
    /// Uploaded its masked vector; waits for the consistency check or the unmask request.
    AwaitUnmask(MaskedState),
    /// Signed this survivor set; only an unmask request carrying it (with signatures) is
    /// answered.
    AwaitSignedUnmask(MaskedState, Vec<PartyId>),
    Done,
    Failed,
}

/// A participant's state machine for one attempt of one round.
///
/// # Security
/// Holds the party's round secrets; all are zeroized on drop and `Debug` prints only the
/// party, round and phase. It signs at most one survivor set and answers at most one
/// unmask request.
pub struct SecAggClient {
    me: PartyId,
    header: RoundHeader,
    roster: Vec<PartyId>,
    index: BTreeMap<PartyId, PartyIndex>,
    spec: RoundSpec,
    state: ClientState,
}

impl fmt::Debug for SecAggClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecAggClient")
            .field("me", &self.me)
            .field("header", &self.header)
            .field("phase", &self.phase())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl SecAggClient {
    /// Joins an attempt: encodes `update` (clipped to the config's bound), masks it with the
    /// round's seeds derived from the pair roots `auth` holds, and returns the upload (the
    /// masked vector with one sealed share of the self-mask seed per neighbour).
    ///
    /// # Errors
    /// [`SecAggRoundError::NotAMember`] when `me` is not in the roster,
    /// [`SecAggRoundError::Config`] when `update` has the wrong length, the roster is not
    /// sorted or the config is unusable, [`SecAggRoundError::Refused`] when a neighbour has
    /// no verified channel key.
    pub fn new<R: CryptoRng + ?Sized>(
        me: PartyId,
        setup: &RoundSetup,
        update: &[f64],
        auth: &dyn RoundAuth,
        rng: &mut R,
    ) -> Result<(Self, ClientMessage), SecAggRoundError> {
        let roster = sorted_roster(&setup.roster)?;
        if roster != setup.roster {
            return Err(SecAggRoundError::Config { reason: "the roster is not sorted".into() });
        }
        let my_index = roster.iter().position(|p| *p == me).ok_or_else(|| {
            SecAggRoundError::NotAMember { party: me.clone(), phase: Phase::MaskedInput }
        })? as PartyIndex;
        if update.len() != setup.config.vector_len {
            return Err(SecAggRoundError::Config {
                reason: format!(
                    "update of {me} has {} values, the round aggregates {}",
                    update.len(),
                    setup.config.vector_len
                ),
            });
        }
        let spec = setup.config.spec(&setup.header, &roster)?;
        let input_spec = setup.config.input(roster.len())?;
        let mut roots = BTreeMap::new();
        for &v in spec.graph().neighbours(my_index) {
            let peer = &roster[v as usize];
            let root = auth.pair_root(peer).ok_or_else(|| {
                SecAggRoundError::Refused(format!("no verified channel key of {peer}"))
            })?;
            roots.insert(v, root);
        }
        let input = Zeroizing::new(input_spec.fixed.encode_vec(update));
        let (state, masked, bundles) =
            sa::mask_input(&spec, my_index, &roots, &input, &input_spec, rng)?;
        let bundles = bundles.into_iter().map(|(v, ct)| (roster[v as usize].clone(), ct)).collect();
        let index = roster.iter().enumerate().map(|(i, p)| (p.clone(), i as PartyIndex)).collect();
        let msg = ClientMessage::MaskedInput(MaskedInput {
            header: setup.header.clone(),
            masked,
            bundles,
        });
        Ok((
            Self {
                me,
                header: setup.header.clone(),
                roster,
                index,
                spec,
                state: ClientState::AwaitUnmask(state),
            },
            msg,
        ))
    }

    /// This party.
    pub fn me(&self) -> &PartyId {
        &self.me
    }

    /// The attempt's header.
    pub fn header(&self) -> &RoundHeader {
        &self.header
    }

    /// The attempt's roster.
    pub fn roster(&self) -> &[PartyId] {
        &self.roster
    }

    /// The phase whose server message the client waits for, [`Phase::Done`] after it
    /// answered the unmask request, [`Phase::Aborted`] after an error.
    pub fn phase(&self) -> Phase {
        match self.state {
            ClientState::AwaitUnmask(_) | ClientState::AwaitSignedUnmask(..) => Phase::Unmask,
            ClientState::Done => Phase::Done,
            ClientState::Failed => Phase::Aborted,
        }
    }

    /// Whether this client has released unmask shares.
    pub fn answered_unmask(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    fn index_set(&self, ps: &[PartyId]) -> Result<BTreeSet<PartyIndex>, SecAggRoundError> {
        ps.iter()
            .map(|p| {
                self.index.get(p).copied().ok_or_else(|| SecAggRoundError::InvalidMessage {
                    party: coordinator(),
                    reason: format!("names {p}, who is not in the roster"),
                })
            })
            .collect()
    }

    fn names<V>(&self, m: BTreeMap<PartyIndex, V>) -> BTreeMap<PartyId, V> {
        m.into_iter().filter_map(|(i, v)| Some((self.roster.get(i as usize)?.clone(), v))).collect()
    }

    /// Checks a survivor set before anything is signed or released for it: within the
    /// roster, without repeats, this party in it, a connected neighbour graph (SecAgg+), and
    /// at least `t` survivors in every neighbourhood of this party's neighbours.
    fn check_survivors(&self, all: &[PartyId]) -> Result<BTreeSet<PartyIndex>, SecAggRoundError> {
        let set = self.index_set(all)?;
        if set.len() != all.len() {
            return Err(SecAggRoundError::Refused("the survivor set repeats a party".into()));
        }
        let me = self.index[&self.me];
        if !set.contains(&me) {
            return Err(SecAggRoundError::Refused(
                "the survivor set leaves out this party, which uploaded".into(),
            ));
        }
        let graph = self.spec.graph();
        if !graph.connected_within(&set) {
            return Err(SecAggRoundError::Refused(
                "the survivors' neighbour graph is disconnected: a part's sum would unmask on its own"
                    .into(),
            ));
        }
        let t = self.spec.threshold();
        for u in graph.neighbourhood(me) {
            let alive = graph.neighbourhood(u).into_iter().filter(|v| set.contains(v)).count();
            if alive < t {
                return Err(SecAggRoundError::Refused(format!(
                    "only {alive} survivors around {}, threshold {t}",
                    self.roster[u as usize]
                )));
            }
        }
        Ok(set)
    }

    /// Checks the signatures of a slow-path unmask request: for every member `u` of this
    /// party's neighbourhood, at least `t` members of `u`'s neighbourhood signed `signed`.
    fn check_signatures(
        &self,
        signed: &[PartyId],
        signatures: &BTreeMap<PartyId, Vec<u8>>,
        auth: &dyn RoundAuth,
    ) -> Result<(), SecAggRoundError> {
        let statement = survivors_statement(&self.spec, signed);
        let mut valid = BTreeSet::new();
        for (p, sig) in signatures {
            let Some(&i) = self.index.get(p) else { continue };
            if !signed.contains(p) {
                continue;
            }
            if auth.verify(p, &statement, sig, "survivor set").is_ok() {
                valid.insert(i);
            }
        }
        let graph = self.spec.graph();
        let t = self.spec.threshold();
        let me = self.index[&self.me];
        for u in graph.neighbourhood(me) {
            let n = graph.neighbourhood(u).into_iter().filter(|v| valid.contains(v)).count();
            if n < t {
                return Err(SecAggRoundError::Refused(format!(
                    "{n} valid signatures on the survivor set around {}, threshold {t}",
                    self.roster[u as usize]
                )));
            }
        }
        Ok(())
    }

    /// Handles the server's message for the phase the client is in and returns its answer.
    /// A message for another round or phase is rejected and changes nothing; a message that
    /// fails a cryptographic or consistency check aborts the client (it answers nothing
    /// more this attempt).
    ///
    /// # Errors
    /// [`SecAggRoundError::WrongRound`], [`SecAggRoundError::WrongPhase`],
    /// [`SecAggRoundError::InvalidMessage`], [`SecAggRoundError::Refused`] (an inconsistent
    /// or unsafe survivor set), [`SecAggRoundError::Auth`] (signing failed) or
    /// [`SecAggRoundError::Crypto`] (e.g. a share ciphertext failing authentication, or both
    /// secrets of one party requested).
    pub fn handle<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &ServerMessage,
        auth: &dyn RoundAuth,
        _rng: &mut R,
    ) -> Result<ClientMessage, SecAggRoundError> {
        if msg.header() != &self.header {
            return Err(SecAggRoundError::WrongRound {
                expected: self.header.clone(),
                got: msg.header().clone(),
            });
        }
        let phase = self.phase();
        let fits = matches!(
            (&self.state, msg),
            (ClientState::AwaitUnmask(_), ServerMessage::Consistency(_))
                | (ClientState::AwaitUnmask(_), ServerMessage::Unmask(_))
                | (ClientState::AwaitSignedUnmask(..), ServerMessage::Unmask(_))
        );
        if !fits {
            return Err(SecAggRoundError::WrongPhase {
                party: coordinator(),
                message: msg.phase(),
                phase,
            });
        }
        let header = self.header.clone();
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let (next, reply) = match (state, msg) {
            (ClientState::AwaitUnmask(st), ServerMessage::Consistency(m)) => {
                self.check_survivors(&m.survivors)?;
                let signature = auth.sign(&survivors_statement(&self.spec, &m.survivors))?;
                let mut signed = m.survivors.clone();
                signed.sort();
                (
                    ClientState::AwaitSignedUnmask(st, signed),
                    ClientMessage::Consistency(ConsistencySignature { header, signature }),
                )
            }
            (ClientState::AwaitUnmask(st), ServerMessage::Unmask(m)) => {
                // Fast path: nobody in this party's neighbourhood may be called dropped, since
                // no survivor set was signed.
                if !m.dropped.is_empty() {
                    return Err(SecAggRoundError::Refused(
                        "dropped neighbours named without a consistency check".into(),
                    ));
                }
                self.check_survivors(&m.all_survivors)?;
                (ClientState::Done, ClientMessage::Unmask(self.unmask(st, m)?))
            }
            (ClientState::AwaitSignedUnmask(st, signed), ServerMessage::Unmask(m)) => {
                let mut all = m.all_survivors.clone();
                all.sort();
                if all != signed {
                    return Err(SecAggRoundError::Refused(
                        "the unmask request names another survivor set than the one signed".into(),
                    ));
                }
                self.check_survivors(&all)?;
                self.check_signatures(&all, &m.signatures, auth)?;
                (ClientState::Done, ClientMessage::Unmask(self.unmask(st, m)?))
            }
            (other, _) => {
                // Unreachable: `fits` matched the message to the state.
                self.state = other;
                return Err(SecAggRoundError::WrongPhase {
                    party: coordinator(),
                    message: msg.phase(),
                    phase,
                });
            }
        };
        self.state = next;
        Ok(reply)
    }

    /// The unmask answer, after checking the request's neighbourhood sets against the whole
    /// survivor set.
    fn unmask(
        &self,
        st: MaskedState,
        m: &UnmaskRequest,
    ) -> Result<UnmaskResponse, SecAggRoundError> {
        let alive = self.index_set(&m.survivors)?;
        let gone = self.index_set(&m.dropped)?;
        let all = self.index_set(&m.all_survivors)?;
        let me = self.index[&self.me];
        for v in self.spec.graph().neighbourhood(me) {
            if all.contains(&v) != alive.contains(&v) || all.contains(&v) == gone.contains(&v) {
                return Err(SecAggRoundError::Refused(format!(
                    "the status of {} differs from the survivor set",
                    self.roster[v as usize]
                )));
            }
        }
        let mut bundles = BTreeMap::new();
        for (p, ct) in &m.bundles {
            let i = self.index.get(p).copied().ok_or_else(|| SecAggRoundError::InvalidMessage {
                party: coordinator(),
                reason: format!("a share from {p}, who is not in the roster"),
            })?;
            bundles.insert(i, ct.clone());
        }
        let shares = st.unmask(&bundles, &alive, &gone)?;
        Ok(UnmaskResponse {
            header: self.header.clone(),
            self_mask_shares: self.names(shares.self_mask),
            pair_seeds: self.names(shares.pair_seeds),
        })
    }
}

/// A whole federation in one process: one [`SecAggServer`], one [`SecAggClient`] per
/// party, scripted crashes, restarts, and a transcript of everything the server received
/// and sent. Used by tests and simulations; the RNG comes from the caller.
pub mod in_memory {
    use super::*;

    /// A party that stops answering: it never sends its message for phase `before`
    /// (nor anything after, in this or any later attempt).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Crash {
        /// The party.
        pub party: PartyId,
        /// The first phase whose message it does not send.
        pub before: Phase,
    }

    /// A message the server received, with the status it answered.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Received {
        /// Sender.
        pub from: PartyId,
        /// The message as received.
        pub message: ClientMessage,
        /// Accepted or rejected (and why).
        pub status: Result<Receipt, SecAggRoundError>,
    }

    /// How an attempt ended.
    #[derive(Debug, Clone, PartialEq)]
    pub enum AttemptEnd {
        /// With a sum.
        Done,
        /// Failed; the next attempt (if any) runs with the parties still answering.
        Failed(SecAggRoundError),
    }

    /// One attempt's transcript.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Attempt {
        /// The attempt's header.
        pub header: RoundHeader,
        /// Its roster.
        pub roster: Vec<PartyId>,
        /// Every message the server received.
        pub received: Vec<Received>,
        /// Every message the server sent.
        pub sent: Vec<(PartyId, ServerMessage)>,
        /// Errors clients raised on server messages (e.g. a failed authentication).
        pub client_errors: Vec<(PartyId, SecAggRoundError)>,
        /// How it ended.
        pub end: AttemptEnd,
    }

    /// The result of [`run`].
    #[derive(Debug, Clone, PartialEq)]
    pub struct Run {
        /// The sum, or the error that ended the last attempt.
        pub outcome: Result<SecAggOutput, SecAggRoundError>,
        /// Every attempt, in order.
        pub attempts: Vec<Attempt>,
    }

    /// Optional interference with server → client messages (e.g. to tamper with a ciphertext).
    pub type Tamper<'a> = dyn FnMut(&PartyId, &mut ServerMessage) + 'a;

    /// Each party's keys: pair roots, signer, view of its peers' certificates.
    pub type Auths<'b> = dyn Fn(&PartyId) -> &'b (dyn RoundAuth + 'b) + 'b;

    /// One party's pair roots for in-memory rounds, without signatures (a stand-in for the
    /// job directory of a federation without certificates).
    #[derive(Debug, Clone)]
    pub struct Keyring {
        roots: BTreeMap<PartyId, PairRoot>,
    }

    impl Keyring {
        /// Random pair roots among `parties`, one keyring per party.
        pub fn for_parties<R: CryptoRng + ?Sized>(
            parties: &[PartyId],
            rng: &mut R,
        ) -> BTreeMap<PartyId, Keyring> {
            let mut out: BTreeMap<PartyId, Keyring> =
                parties.iter().map(|p| (p.clone(), Keyring { roots: BTreeMap::new() })).collect();
            for (i, a) in parties.iter().enumerate() {
                for b in &parties[i + 1..] {
                    let mut bytes = [0u8; 32];
                    rng.fill_bytes(&mut bytes);
                    if let Some(k) = out.get_mut(a) {
                        k.roots.insert(b.clone(), PairRoot::from_bytes(bytes));
                    }
                    if let Some(k) = out.get_mut(b) {
                        k.roots.insert(a.clone(), PairRoot::from_bytes(bytes));
                    }
                }
            }
            out
        }
    }

    impl RoundAuth for Keyring {
        fn pair_root(&self, peer: &PartyId) -> Option<PairRoot> {
            self.roots.get(peer).cloned()
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, AuthError> {
            Ok(Vec::new())
        }
        fn verify(
            &self,
            _: &PartyId,
            _: &[u8],
            _: &[u8],
            _: &'static str,
        ) -> Result<(), AuthError> {
            Ok(())
        }
    }

    struct Federation<'a, 'b, R: CryptoRng + ?Sized> {
        auth: &'b Auths<'b>,
        config: SecAggConfig,
        updates: &'a BTreeMap<PartyId, Vec<f64>>,
        crashes: &'a [Crash],
        dead: BTreeSet<PartyId>,
        clients: BTreeMap<PartyId, SecAggClient>,
        rng: &'a mut R,
    }

    impl<R: CryptoRng + ?Sized> Federation<'_, '_, R> {
        /// Whether `party` answers a message of `phase`; marks it dead when it crashes now.
        fn answers(&mut self, party: &PartyId, phase: Phase) -> bool {
            if self.dead.contains(party) {
                return false;
            }
            if self.crashes.iter().any(|c| &c.party == party && c.before <= phase) {
                self.dead.insert(party.clone());
                self.clients.remove(party);
                return false;
            }
            true
        }

        fn deliver(
            &mut self,
            server: &mut SecAggServer,
            log: &mut Attempt,
            msgs: Vec<(PartyId, ServerMessage)>,
            tamper: &mut Tamper<'_>,
        ) {
            for (to, mut msg) in msgs {
                tamper(&to, &mut msg);
                log.sent.push((to.clone(), msg.clone()));
                if !self.answers(&to, msg.phase()) {
                    continue;
                }
                let reply = match &msg {
                    ServerMessage::Setup(setup) => {
                        let empty = Vec::new();
                        let update = self.updates.get(&to).unwrap_or(&empty);
                        SecAggClient::new(to.clone(), setup, update, (self.auth)(&to), self.rng)
                            .map(|(client, reply)| {
                                self.clients.insert(to.clone(), client);
                                reply
                            })
                    }
                    other => match self.clients.get_mut(&to) {
                        Some(client) => client.handle(other, (self.auth)(&to), self.rng),
                        None => continue,
                    },
                };
                match reply {
                    Ok(reply) => {
                        let status = server.receive(&to, reply.clone());
                        log.received.push(Received { from: to, message: reply, status });
                    }
                    Err(e) => log.client_errors.push((to, e)),
                }
            }
        }
    }

    /// Runs one round to completion or to `max_attempts` attempts, closing each phase once
    /// every live party has answered (the in-memory stand-in for a deadline).
    pub fn run<R: CryptoRng + ?Sized>(
        header: RoundHeader,
        config: SecAggConfig,
        updates: &BTreeMap<PartyId, Vec<f64>>,
        crashes: &[Crash],
        max_attempts: u32,
        rng: &mut R,
    ) -> Run {
        run_with(header, config, updates, crashes, max_attempts, rng, &mut |_, _| {})
    }

    /// [`run`] with a hook that may alter each server → client message before delivery.
    pub fn run_with<R: CryptoRng + ?Sized>(
        header: RoundHeader,
        config: SecAggConfig,
        updates: &BTreeMap<PartyId, Vec<f64>>,
        crashes: &[Crash],
        max_attempts: u32,
        rng: &mut R,
        tamper: &mut Tamper<'_>,
    ) -> Run {
        let parties: Vec<PartyId> = updates.keys().cloned().collect();
        let keys = Keyring::for_parties(&parties, rng);
        let none = Keyring { roots: BTreeMap::new() };
        let auth = |p: &PartyId| -> &dyn RoundAuth { keys.get(p).unwrap_or(&none) };
        run_authenticated(header, config, updates, crashes, max_attempts, rng, &auth, tamper)
    }

    /// [`run_with`] where each party signs and checks with `auth(party)`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_authenticated<'b, R: CryptoRng + ?Sized>(
        header: RoundHeader,
        config: SecAggConfig,
        updates: &BTreeMap<PartyId, Vec<f64>>,
        crashes: &[Crash],
        max_attempts: u32,
        rng: &mut R,
        auth: &'b Auths<'b>,
        tamper: &mut Tamper<'_>,
    ) -> Run {
        let roster: Vec<PartyId> = updates.keys().cloned().collect();
        let mut fed = Federation {
            auth,
            config,
            updates,
            crashes,
            dead: BTreeSet::new(),
            clients: BTreeMap::new(),
            rng,
        };
        let mut attempts = Vec::new();
        let mut next = SecAggServer::new(header, fed.config, &roster);
        loop {
            let (mut server, setup) = match next {
                Ok(s) => s,
                Err(e) => return Run { outcome: Err(e), attempts },
            };
            fed.clients.clear();
            let mut log = Attempt {
                header: server.header().clone(),
                roster: server.roster().to_vec(),
                received: Vec::new(),
                sent: Vec::new(),
                client_errors: Vec::new(),
                end: AttemptEnd::Done,
            };
            fed.deliver(&mut server, &mut log, setup, tamper);
            let outcome = loop {
                match server.close_phase() {
                    Ok(ServerStep::Send(msgs)) => fed.deliver(&mut server, &mut log, msgs, tamper),
                    Ok(ServerStep::Done(out)) => break Ok(out),
                    Err(e) => {
                        log.end = AttemptEnd::Failed(e.clone());
                        break Err(e);
                    }
                }
            };
            attempts.push(log);
            match outcome {
                Ok(out) => return Run { outcome: Ok(out), attempts },
                Err(e) => {
                    if attempts.len() >= max_attempts as usize {
                        return Run { outcome: Err(e), attempts };
                    }
                    next = server.retry();
                }
            }
        }
    }
}
