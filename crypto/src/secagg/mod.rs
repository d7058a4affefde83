//! Secure aggregation: the server learns the sum of the parties' vectors and nothing else.
//!
//! This is the protocol of Bonawitz et al., "Practical Secure Aggregation for
//! Privacy-Preserving Machine Learning" (CCS 2017), with the sparse neighbour graph of
//! Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead"
//! (SecAgg+, CCS 2020) as an option. This module holds the party-local cryptography only
//! and does no I/O; the round state machines that move its messages (with party names,
//! phases, deadlines, restarts, and the consistency check of the actively secure variant:
//! survivor sets signed with the parties' certificate keys) live in
//! `fedcredit_federation::secagg`.
//!
//! # Protocol (one round, `n` parties indexed `0..n` by their position in the roster)
//!
//! 0. **Setup.** Everyone derives the same [`RoundSpec`] from the job id, round number,
//!    attempt number, roster and [`SecAggParams`]: a 32-byte round context (SHA-256 of all
//!    of them) and the neighbour [`Graph`] (complete by default; a `k`-regular Harary
//!    graph over a permutation seeded by the round context for SecAgg+). Every pair of
//!    neighbours already shares a root secret for the job ([`PairRoot`], from the parties'
//!    signed job channel keys), from which the round's pairwise seed `s_uv` and share keys
//!    are derived ([`keys`]; the multi-round key setup of Ma et al., "Flamingo", IEEE S&P
//!    2023).
//! 1. **MaskedInput.** Party `u` draws a 32-byte self-mask seed `b_u`, splits it with
//!    Shamir `t`-of-`m` over GF(2^16) ([`shamir`]) among its neighbourhood, seals each
//!    neighbour's share with ChaCha20-Poly1305 under the pair's round share key ([`aead`]),
//!    and uploads the sealed shares with
//!    `y_u = x_u + PRG(b_u) + Σ_{v∈N(u), u<v} PRG(s_uv) − Σ_{v∈N(u), u>v} PRG(s_uv)`
//!    in `Z_{2^k}` ([`masking`]), where `x_u` is the fixed-point encoding of its vector
//!    ([`crate::FixedPoint`], clipped) and PRG is AES-256 in counter mode keyed by the seed.
//!    (When someone dropped, `fedcredit_federation::secagg` runs a consistency check here:
//!    the survivors sign the survivor set before anything is revealed.)
//! 2. **Unmask.** The server names the survivors (who uploaded) and the dropped, and hands
//!    each survivor the shares its surviving neighbours sealed to it. Each survivor returns,
//!    for each member of its neighbourhood, the share of `b` if it survived or its own
//!    pairwise seed with it if it dropped, never both ([`MaskedState::unmask`] consumes the
//!    state, so a party answers once). The server ([`Aggregator`]) reconstructs each `b_u`,
//!    removes the self masks of survivors and the pairwise masks between dropped and
//!    surviving parties, and decodes the sum.
//!
//! A dropout before the upload is recovered in step 2 (its surviving neighbours reveal their
//! round seeds with it); after the upload, as long as `t` shares of its `b` come back. A
//! round in which a party dropped before the upload *and* one of its surviving neighbours
//! vanishes before the unmask cannot finish (that neighbour's seed with it is needed) and is
//! retried.
//!
//! # Security model and what each role sees
//!
//! Semi-honest parties; the server does not collude with participants and may deviate from
//! the protocol. The pair roots come from job channel keys that every party signs with its
//! certificate key and every peer checks, so the server cannot stand in for a neighbour
//! (mutual TLS alone would not stop it: it binds what the server receives, not what it
//! relays). A server that lies about who dropped is caught by the consistency check one
//! level up (`fedcredit_federation::secagg`), whose threshold `t > m/2` the parties enforce.
//!
//! | role | sees |
//! |---|---|
//! | server | AEAD ciphertexts of shares (cannot read them); masked vectors `y_u` (uniform in `Z_{2^k}` on their own); for each survivor `t` or more shares of `b_u`, and for each dropped party its surviving neighbours' round seeds with it, never both for one party; the sum of the survivors' clipped, encoded vectors |
//! | participant | its own secrets; one share of each neighbour's `b` (fewer than `t`, so nothing) |
//! | `t − 1` colluding neighbours of `u` | nothing about `x_u` (fewer than `t` shares of `b_u`) |
//!
//! Masks come from AES-256-CTR keyed by 256-bit seeds, never from a statistical RNG. All
//! secrets ([`PairRoot`], [`MaskSeed`], [`Share`]) zeroize on drop and print as
//! `<redacted>`.

pub mod aead;
pub mod aggregate;
pub mod graph;
pub mod keys;
pub mod masking;
pub mod party;
pub mod shamir;

#[cfg(test)]
mod round_tests;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::FixedPoint;

pub use aggregate::{Aggregator, UnmaskPlan};
pub use graph::Graph;
pub use keys::PairRoot;
pub use masking::{MaskSeed, pack_elements, unpack_elements};
pub use party::{Masked, MaskedState, UnmaskShares, mask_input};
pub use shamir::{SECRET_LEN, ShamirError, Share};

/// Largest roster: Shamir x-coordinates are the nonzero elements of GF(2^16).
pub const MAX_PARTIES: usize = u16::MAX as usize;

/// Longest vector: the ChaCha20 keystream of one seed (2^38 bytes) must cover it at 8 bytes per element.
pub const MAX_VECTOR_LEN: usize = 1 << 32;

/// A party's position in the round's roster.
pub type PartyIndex = u16;

/// Which secret a Shamir share belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// The self-mask seed `b_u`, revealed for survivors.
    SelfMask,
    /// A pairwise round seed `s_vd`, revealed by survivors for dropped neighbours.
    PairSeed,
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretKind::SelfMask => "self-mask seed",
            SecretKind::PairSeed => "pairwise seed",
        })
    }
}

/// Why a secure-aggregation step failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggError {
    /// A parameter is out of range.
    #[error("invalid secure-aggregation parameter {name}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A step was given the state or data of a different round.
    #[error("the state belongs to another round context")]
    ContextMismatch,
    /// A party index is not in the roster or not where it was expected.
    #[error("party {party} is not expected here: {reason}")]
    UnexpectedParty {
        /// The index.
        party: PartyIndex,
        /// Why it does not belong.
        reason: &'static str,
    },
    /// Something expected from a party is absent.
    #[error("missing {what} from or for party {party}")]
    Missing {
        /// The party.
        party: PartyIndex,
        /// What is missing.
        what: &'static str,
    },
    /// An encrypted share failed authentication.
    #[error("encrypted shares from party {from} to party {to} failed authentication")]
    Decryption {
        /// Sender.
        from: PartyIndex,
        /// Recipient.
        to: PartyIndex,
    },
    /// A decrypted share bundle has the wrong size.
    #[error("share bundle from party {from} has {got} bytes, expected {expected}")]
    ShareFormat {
        /// Sender.
        from: PartyIndex,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The server asked for both secrets of one party: a share of its self-mask seed (as a
    /// survivor) and the pairwise round seed with it (as a dropped party).
    #[error("both the self-mask share and the pairwise round seed of party {party} were requested")]
    BothSharesRequested {
        /// The party.
        party: PartyIndex,
    },
    /// Too few parties or shares remain to finish the round.
    #[error("{kind} of party {party}: {got} shares available, threshold is {need}")]
    ThresholdNotMet {
        /// Whose secret.
        party: PartyIndex,
        /// Which secret.
        kind: SecretKind,
        /// Shares available.
        got: usize,
        /// Shares needed.
        need: usize,
    },
    /// Fewer survivors than the threshold were named in an unmask request.
    #[error("only {survivors} survivors in the neighbourhood, threshold is {need}")]
    TooFewSurvivors {
        /// Survivors named.
        survivors: usize,
        /// Threshold.
        need: usize,
    },
    /// A Shamir operation failed.
    #[error("shares of the {kind} of party {party}: {source}")]
    Shamir {
        /// Whose secret.
        party: PartyIndex,
        /// Which secret.
        kind: SecretKind,
        /// What went wrong.
        source: ShamirError,
    },
    /// A vector has the wrong length.
    #[error("vector from party {party} has {got} elements, expected {expected}")]
    Length {
        /// The party.
        party: PartyIndex,
        /// Elements expected.
        expected: usize,
        /// Elements received.
        got: usize,
    },
    /// A ring element is not below `2^ring_bits`.
    #[error("element {position} from party {party} is outside Z_2^{ring_bits}")]
    OutOfRing {
        /// The party.
        party: PartyIndex,
        /// Position in the vector.
        position: usize,
        /// Ring size in bits.
        ring_bits: u32,
    },
    /// A party uploaded twice.
    #[error("party {party} already contributed")]
    DuplicateContribution {
        /// The party.
        party: PartyIndex,
    },
    /// The keystream of one seed cannot cover the vector.
    #[error("vector too long for one keystream")]
    KeystreamExhausted,
}

/// What a job configures for the keys of a round. Validated against the roster by
/// [`RoundSpec::new`]. The vector itself ([`InputSpec`]) is fixed later, when the masked input
/// is made, so the key phases of a round can run before its vector is known.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecAggParams {
    /// Shamir threshold `t`, counted within a neighbourhood of `m` parties (a party and its
    /// neighbours). `None` means a majority, `⌊m/2⌋ + 1`. Must satisfy `2 ≤ t ≤ m`.
    pub threshold: Option<usize>,
    /// Neighbours per party for SecAgg+ (`k`); `None` (the default) or `k ≥ n − 1` is the
    /// complete graph of the original protocol. An odd `k` with an odd `n` is raised to `k + 1`.
    pub degree: Option<usize>,
}

/// The vector of a round: its length and fixed-point code. Both ends check it against the
/// roster size ([`InputSpec::check`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputSpec {
    /// Fixed-point code; its ring must hold the sum of all parties' vectors
    /// (use [`FixedPoint::for_sum`] with the roster size).
    pub fixed: FixedPoint,
    /// Elements per vector.
    pub vector_len: usize,
}

impl InputSpec {
    /// Checks the spec for a sum of `n` parties' vectors.
    ///
    /// # Errors
    /// [`SecAggError::InvalidParam`] naming `vector_len` or `fixed`.
    pub fn check(&self, n: usize) -> Result<(), SecAggError> {
        let invalid = |name, reason: String| SecAggError::InvalidParam { name, reason };
        if self.vector_len == 0 || self.vector_len > MAX_VECTOR_LEN {
            return Err(invalid(
                "vector_len",
                format!("{} elements; need 1 to {MAX_VECTOR_LEN}", self.vector_len),
            ));
        }
        let fixed = self.fixed;
        if !(1..=64).contains(&fixed.ring_bits) {
            return Err(invalid("fixed.ring_bits", format!("{}; need 1 to 64", fixed.ring_bits)));
        }
        let needed = FixedPoint::for_sum(n, fixed.clip, fixed.frac_bits)
            .map_err(|e| invalid("fixed", e.to_string()))?;
        if needed.ring_bits > fixed.ring_bits {
            return Err(invalid(
                "fixed.ring_bits",
                format!(
                    "the sum of {n} vectors clipped to {} at {} fractional bits needs {} ring bits, got {}",
                    fixed.clip, fixed.frac_bits, needed.ring_bits, fixed.ring_bits
                ),
            ));
        }
        Ok(())
    }
}

/// Everything a round's parties and server must agree on, derived deterministically.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSpec {
    context: RoundContext,
    params: SecAggParams,
    n_parties: usize,
    threshold: usize,
    graph: Arc<Graph>,
}

/// The 32-byte round context: SHA-256 over job, round, attempt, roster and parameters.
/// It salts every key derivation and is bound into every ciphertext.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoundContext([u8; 32]);

impl RoundContext {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for RoundContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoundContext(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

impl RoundSpec {
    /// Derives the round context and the neighbour graph for `roster` (party names in
    /// roster order; a party's index is its position).
    ///
    /// # Errors
    /// [`SecAggError::InvalidParam`] when the roster has fewer than 2 or more than
    /// [`MAX_PARTIES`] distinct names, the ring cannot hold the sum of `n` vectors, the
    /// vector length is 0 or above [`MAX_VECTOR_LEN`], or the threshold or degree is out of range.
    pub fn new<S: AsRef<str>>(
        job: &str,
        round: u64,
        attempt: u32,
        roster: &[S],
        params: SecAggParams,
    ) -> Result<Self, SecAggError> {
        let n = roster.len();
        let invalid = |name, reason: String| SecAggError::InvalidParam { name, reason };
        if !(2..=MAX_PARTIES).contains(&n) {
            return Err(invalid("roster", format!("{n} parties; need 2 to {MAX_PARTIES}")));
        }
        let mut names: Vec<&str> = roster.iter().map(AsRef::as_ref).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid("roster", format!("party {:?} is listed twice", w[0])));
        }
        let degree = match params.degree {
            None => n - 1,
            Some(k) if k < 2 => {
                return Err(invalid("degree", format!("{k}; a party needs at least 2 neighbours")));
            }
            Some(k) => {
                let k = if k % 2 == 1 && n % 2 == 1 { k + 1 } else { k };
                k.min(n - 1)
            }
        };
        let m = degree + 1;
        let threshold = params.threshold.unwrap_or(m / 2 + 1);
        if threshold < 2 || threshold > m {
            return Err(invalid(
                "threshold",
                format!(
                    "{threshold}; need 2 to {m} (the neighbourhood size, a party and its {degree} neighbours)"
                ),
            ));
        }

        let mut h = Sha256::new();
        h.update(b"fedcredit secagg context v2");
        put_bytes(&mut h, job.as_bytes());
        h.update(round.to_le_bytes());
        h.update(attempt.to_le_bytes());
        h.update((n as u64).to_le_bytes());
        for name in roster {
            put_bytes(&mut h, name.as_ref().as_bytes());
        }
        h.update((threshold as u64).to_le_bytes());
        h.update((degree as u64).to_le_bytes());
        let context = RoundContext(h.finalize().into());

        let graph =
            if degree == n - 1 { Graph::complete(n) } else { Graph::harary(n, degree, &context)? };
        Ok(Self { context, params, n_parties: n, threshold, graph: Arc::new(graph) })
    }

    /// The round context.
    pub fn context(&self) -> &RoundContext {
        &self.context
    }

    /// The parameters the spec was built from.
    pub fn params(&self) -> &SecAggParams {
        &self.params
    }

    /// Number of parties in the roster.
    pub fn n_parties(&self) -> usize {
        self.n_parties
    }

    /// The resolved Shamir threshold `t`.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The neighbour graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub(crate) fn check_index(&self, party: PartyIndex) -> Result<(), SecAggError> {
        if (party as usize) < self.n_parties {
            Ok(())
        } else {
            Err(SecAggError::UnexpectedParty { party, reason: "index outside the roster" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(_n: usize) -> SecAggParams {
        SecAggParams { threshold: None, degree: None }
    }

    #[test]
    fn context_binds_every_input() {
        let roster = ["a", "b", "c"];
        let base = RoundSpec::new("job", 1, 0, &roster, params(3)).unwrap();
        assert_eq!(base.threshold(), 2);
        assert_eq!(base.graph().degree(), 2);
        let same = RoundSpec::new("job", 1, 0, &roster, params(3)).unwrap();
        assert_eq!(base.context(), same.context());
        let variants = [
            RoundSpec::new("job2", 1, 0, &roster, params(3)).unwrap(),
            RoundSpec::new("job", 2, 0, &roster, params(3)).unwrap(),
            RoundSpec::new("job", 1, 1, &roster, params(3)).unwrap(),
            RoundSpec::new("job", 1, 0, &["a", "c", "b"], params(3)).unwrap(),
            RoundSpec::new("job", 1, 0, &roster, SecAggParams { threshold: Some(3), ..params(3) })
                .unwrap(),
        ];
        for v in &variants {
            assert_ne!(v.context(), base.context());
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = |r: Result<RoundSpec, SecAggError>| match r {
            Err(SecAggError::InvalidParam { name, .. }) => name,
            other => panic!("expected InvalidParam, got {other:?}"),
        };
        assert_eq!(err(RoundSpec::new("j", 0, 0, &["a"], params(1))), "roster");
        assert_eq!(err(RoundSpec::new("j", 0, 0, &["a", "a"], params(2))), "roster");
        let input =
            |n, len| InputSpec { fixed: FixedPoint::for_sum(n, 4.0, 16).unwrap(), vector_len: len };
        let ierr = |r: Result<(), SecAggError>| match r {
            Err(SecAggError::InvalidParam { name, .. }) => name,
            other => panic!("expected InvalidParam, got {other:?}"),
        };
        assert_eq!(ierr(input(2, 0).check(2)), "vector_len");
        // Ring sized for 2 parties cannot hold the sum of 40.
        assert_eq!(ierr(input(2, 8).check(40)), "fixed.ring_bits");
        assert!(input(40, 8).check(40).is_ok());
        let roster: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        assert_eq!(
            err(RoundSpec::new(
                "j",
                0,
                0,
                &["a", "b", "c"],
                SecAggParams { threshold: Some(4), ..params(3) }
            )),
            "threshold"
        );
        assert_eq!(
            err(RoundSpec::new(
                "j",
                0,
                0,
                &["a", "b", "c"],
                SecAggParams { threshold: Some(1), ..params(3) }
            )),
            "threshold"
        );
        assert_eq!(
            err(RoundSpec::new("j", 0, 0, &roster, SecAggParams { degree: Some(1), ..params(40) })),
            "degree"
        );
    }

    #[test]
    fn sparse_threshold_is_relative_to_the_neighbourhood() {
        let roster: Vec<String> = (0..31).map(|i| format!("p{i}")).collect();
        let spec =
            RoundSpec::new("j", 0, 0, &roster, SecAggParams { degree: Some(5), ..params(31) })
                .unwrap();
        // Odd degree with an odd roster is raised to 6; majority of 7 is 4.
        assert_eq!(spec.graph().degree(), 6);
        assert_eq!(spec.threshold(), 4);
    }
}
