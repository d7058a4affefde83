//! The server's side of a secure-aggregation round: sum the masked vectors, then remove the masks.
//!
//! Bonawitz et al. (CCS 2017, Fig. 4, "Server" column, round Unmasking): the server adds
//! the masked inputs of the survivors `U3` as they arrive (one running sum, so memory does
//! not grow with the number of parties), then reconstructs `b_u` for every survivor and
//! `s_d` for every dropped party that had surviving neighbours, and computes
//! `Σ_{u∈U3} y_u − Σ_{u∈U3} PRG(b_u) ± Σ_{d dropped, v∈N(d)∩U3} PRG(s_dv)` in `Z_{2^k}`.
//! With the SecAgg+ graph (Bell et al., CCS 2020) only neighbours' masks appear.
//!
//! The server never asks for, and [`Aggregator::unmask`] refuses, a share of `b` for a
//! dropped party or of `s` for a survivor. A reconstructed `s_d` is checked against
//! `d`'s advertised public key, and shares beyond the threshold are checked to lie on
//! the same polynomial.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::{self, PublicKeys};
use super::masking::{MaskKind, MaskOp, MaskSeed, apply_mask, ring_mask};
use super::party::UnmaskShares;
use super::shamir::{self, Share};
use super::{InputSpec, PartyIndex, RoundSpec, SecAggError, SecretKind};

/// The server's running state for one round after all keys are known.
#[derive(Debug)]
pub struct Aggregator {
    spec: RoundSpec,
    input: InputSpec,
    keys: BTreeMap<PartyIndex, PublicKeys>,
    sum: Vec<u64>,
    contributors: BTreeSet<PartyIndex>,
}

/// What to ask each survivor in the unmask step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskPlan {
    /// Parties whose masked vectors are in the sum.
    pub survivors: BTreeSet<PartyIndex>,
    /// Parties that shared keys but whose masked vectors are missing.
    pub dropped: BTreeSet<PartyIndex>,
    /// Per survivor: the survivors and the dropped parties of its neighbourhood.
    pub requests: BTreeMap<PartyIndex, (BTreeSet<PartyIndex>, BTreeSet<PartyIndex>)>,
}

impl Aggregator {
    /// Starts summing once every party's public keys and the round's vector are known.
    ///
    /// # Errors
    /// [`SecAggError::Missing`] when a party's keys are absent, [`SecAggError::UnexpectedParty`]
    /// for an index outside the roster, [`SecAggError::DuplicateKey`] when keys coincide,
    /// [`SecAggError::InvalidParam`] for an input spec the roster's sum does not fit.
    pub fn new(
        spec: RoundSpec,
        keys: BTreeMap<PartyIndex, PublicKeys>,
        input: InputSpec,
    ) -> Result<Self, SecAggError> {
        input.check(spec.n_parties())?;
        for &p in keys.keys() {
            spec.check_index(p)?;
        }
        for p in 0..spec.n_parties() as PartyIndex {
            if !keys.contains_key(&p) {
                return Err(SecAggError::Missing { party: p, what: "public keys" });
            }
        }
        let mut seen: BTreeMap<[u8; 32], PartyIndex> = BTreeMap::new();
        for (&p, pk) in &keys {
            for key in [pk.c, pk.s] {
                if let Some(&first) = seen.get(&key) {
                    return Err(SecAggError::DuplicateKey { first, second: p });
                }
                seen.insert(key, p);
            }
        }
        let sum = vec![0; input.vector_len];
        Ok(Self { spec, input, keys, sum, contributors: BTreeSet::new() })
    }

    /// The round spec.
    pub fn spec(&self) -> &RoundSpec {
        &self.spec
    }

    /// The round's vector.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// Adds one party's masked vector to the running sum.
    ///
    /// # Errors
    /// [`SecAggError`] for an unknown or repeated party, a wrong length, or an element outside the ring.
    pub fn add_masked(&mut self, from: PartyIndex, masked: &[u64]) -> Result<(), SecAggError> {
        self.spec.check_index(from)?;
        if self.contributors.contains(&from) {
            return Err(SecAggError::DuplicateContribution { party: from });
        }
        if masked.len() != self.sum.len() {
            return Err(SecAggError::Length {
                party: from,
                expected: self.sum.len(),
                got: masked.len(),
            });
        }
        let ring_bits = self.input.fixed.ring_bits;
        let mask = ring_mask(ring_bits);
        if let Some(position) = masked.iter().position(|&x| x & !mask != 0) {
            return Err(SecAggError::OutOfRing { party: from, position, ring_bits });
        }
        for (s, &y) in self.sum.iter_mut().zip(masked) {
            *s = s.wrapping_add(y) & mask;
        }
        self.contributors.insert(from);
        Ok(())
    }

    /// Parties whose masked vectors are in the sum.
    pub fn contributors(&self) -> &BTreeSet<PartyIndex> {
        &self.contributors
    }

    /// Decides whom to ask for which shares, once no more masked vectors will be accepted.
    ///
    /// # Errors
    /// [`SecAggError::ThresholdNotMet`] when some needed secret has fewer than `t` surviving
    /// holders (the round cannot finish and should be retried), or nobody contributed.
    pub fn plan(&self) -> Result<UnmaskPlan, SecAggError> {
        let graph = self.spec.graph();
        let t = self.spec.threshold();
        let survivors = self.contributors.clone();
        let dropped: BTreeSet<PartyIndex> =
            (0..self.spec.n_parties() as PartyIndex).filter(|p| !survivors.contains(p)).collect();
        if survivors.is_empty() {
            return Err(SecAggError::ThresholdNotMet {
                party: 0,
                kind: SecretKind::SelfMask,
                got: 0,
                need: t,
            });
        }
        for &u in &survivors {
            let holders = graph.neighbourhood(u).into_iter().filter(|h| survivors.contains(h));
            let got = holders.count();
            if got < t {
                return Err(SecAggError::ThresholdNotMet {
                    party: u,
                    kind: SecretKind::SelfMask,
                    got,
                    need: t,
                });
            }
        }
        for &d in &dropped {
            let got = graph.neighbours(d).iter().filter(|h| survivors.contains(h)).count();
            if got > 0 && got < t {
                return Err(SecAggError::ThresholdNotMet {
                    party: d,
                    kind: SecretKind::MaskKey,
                    got,
                    need: t,
                });
            }
        }
        let requests = survivors
            .iter()
            .map(|&u| {
                let (alive, gone): (BTreeSet<_>, BTreeSet<_>) =
                    graph.neighbourhood(u).into_iter().partition(|p| survivors.contains(p));
                (u, (alive, gone))
            })
            .collect();
        Ok(UnmaskPlan { survivors, dropped, requests })
    }

    /// Checks one survivor's answer against the plan, before it is kept.
    ///
    /// # Errors
    /// [`SecAggError::UnexpectedParty`] when the responder was not asked or a share is for a
    /// party it was not asked about (in particular a `b` share of a dropped party or an `s`
    /// share of a survivor), [`SecAggError::Missing`] when an asked-for share is absent.
    pub fn check_response(
        &self,
        plan: &UnmaskPlan,
        from: PartyIndex,
        response: &UnmaskShares,
    ) -> Result<(), SecAggError> {
        let (alive, gone) = plan
            .requests
            .get(&from)
            .ok_or(SecAggError::UnexpectedParty { party: from, reason: "not asked to unmask" })?;
        let check = |got: &BTreeMap<PartyIndex, Share>, want: &BTreeSet<PartyIndex>, what| {
            for (&p, share) in got {
                if !want.contains(&p) {
                    return Err(SecAggError::UnexpectedParty {
                        party: p,
                        reason: "share of a secret that was not requested",
                    });
                }
                if share.x() != from + 1 {
                    return Err(SecAggError::UnexpectedParty {
                        party: from,
                        reason: "share x-coordinate does not match the sender",
                    });
                }
            }
            match want.iter().find(|p| !got.contains_key(p)) {
                Some(&party) => Err(SecAggError::Missing { party, what }),
                None => Ok(()),
            }
        };
        check(&response.self_mask, alive, "self-mask share")?;
        check(&response.mask_key, gone, "masking-key share")
    }

    /// Removes all masks and returns the sum of the survivors' encoded vectors.
    ///
    /// # Errors
    /// [`SecAggError::ThresholdNotMet`] when fewer than `t` shares of a needed secret came
    /// back, [`SecAggError::Shamir`] for inconsistent shares, [`SecAggError::KeyMismatch`]
    /// when a reconstructed key is wrong, and any error of [`Aggregator::check_response`].
    pub fn unmask(
        self,
        plan: &UnmaskPlan,
        responses: &BTreeMap<PartyIndex, UnmaskShares>,
    ) -> Result<Vec<u64>, SecAggError> {
        if plan.survivors != self.contributors {
            return Err(SecAggError::UnexpectedParty {
                party: plan
                    .survivors
                    .symmetric_difference(&self.contributors)
                    .next()
                    .copied()
                    .unwrap_or(0),
                reason: "the plan's survivors are not the contributors",
            });
        }
        for (&from, response) in responses {
            self.check_response(plan, from, response)?;
        }
        let t = self.spec.threshold();
        let ring_bits = self.input.fixed.ring_bits;
        let graph = self.spec.graph();
        let collect = |owner: PartyIndex, kind: SecretKind| -> Vec<Share> {
            responses
                .values()
                .filter_map(|r| match kind {
                    SecretKind::SelfMask => r.self_mask.get(&owner),
                    SecretKind::MaskKey => r.mask_key.get(&owner),
                })
                .cloned()
                .collect()
        };
        let reconstruct = |owner: PartyIndex, kind: SecretKind| {
            let shares = collect(owner, kind);
            if shares.len() < t {
                return Err(SecAggError::ThresholdNotMet {
                    party: owner,
                    kind,
                    got: shares.len(),
                    need: t,
                });
            }
            shamir::reconstruct(&shares, t).map_err(|source| SecAggError::Shamir {
                party: owner,
                kind,
                source,
            })
        };

        let mut sum = self.sum;
        for &u in &plan.survivors {
            let seed = MaskSeed::from_bytes(&*reconstruct(u, SecretKind::SelfMask)?);
            apply_mask(&mut sum, &seed, MaskKind::SelfMask, ring_bits, MaskOp::Sub)?;
        }
        for &d in &plan.dropped {
            let alive: Vec<PartyIndex> = graph
                .neighbours(d)
                .iter()
                .copied()
                .filter(|v| plan.survivors.contains(v))
                .collect();
            if alive.is_empty() {
                continue;
            }
            let secret = reconstruct(d, SecretKind::MaskKey)?;
            let advertised =
                self.keys.get(&d).ok_or(SecAggError::Missing { party: d, what: "public keys" })?;
            if keys::public_of(&secret) != advertised.s {
                return Err(SecAggError::KeyMismatch { party: d });
            }
            let s_d = x25519_dalek::StaticSecret::from(*secret);
            for v in alive {
                let pk = self
                    .keys
                    .get(&v)
                    .ok_or(SecAggError::Missing { party: v, what: "public keys" })?;
                let shared = keys::agree(&s_d, &pk.s, v)?;
                let seed = keys::pairwise_mask_seed(&shared, self.spec.context());
                // v added the mask if v < d and subtracted it otherwise; undo that.
                let op = if v < d { MaskOp::Sub } else { MaskOp::Add };
                apply_mask(&mut sum, &seed, MaskKind::Pairwise, ring_bits, op)?;
            }
        }
        Ok(sum)
    }
}
