//! The server's side of a secure-aggregation round: sum the masked vectors, then remove the masks.
//!
//! Bonawitz et al. (CCS 2017, Fig. 4, "Server" column, round Unmasking): the server adds
//! the masked inputs of the survivors `U3` as they arrive (one running sum, so memory does
//! not grow with the number of parties) and keeps the sealed shares each upload carries for
//! the uploader's neighbours. After the upload closes it asks every survivor for the shares
//! of its surviving neighbours' self-mask seeds and for its own pairwise seed with each
//! dropped neighbour, reconstructs `b_u` for every survivor, and computes
//! `Σ_{u∈U3} y_u − Σ_{u∈U3} PRG(b_u) ± Σ_{d dropped, v∈N(d)∩U3} PRG(s_vd)` in `Z_{2^k}`.
//! With the SecAgg+ graph (Bell et al., CCS 2020) only neighbours' masks appear.
//!
//! The server never asks for, and [`Aggregator::unmask`] refuses, a share of `b` for a
//! dropped party or a pairwise seed with a survivor. Shares beyond the threshold are checked
//! to lie on the same polynomial.

use std::collections::{BTreeMap, BTreeSet};

use super::aead::SEALED_BUNDLE_LEN;
use super::masking::{MaskKind, MaskOp, MaskSeed, apply_masks, ring_mask};
use super::party::UnmaskShares;
use super::shamir::{self, Share};
use super::{InputSpec, PartyIndex, RoundSpec, SecAggError, SecretKind};

/// The server's running state for one round.
#[derive(Debug)]
pub struct Aggregator {
    spec: RoundSpec,
    input: InputSpec,
    sum: Vec<u64>,
    contributors: BTreeSet<PartyIndex>,
    /// Recipient → sender → sealed share.
    bundles: BTreeMap<PartyIndex, BTreeMap<PartyIndex, Vec<u8>>>,
}

/// What to ask each survivor in the unmask step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskPlan {
    /// Parties whose masked vectors are in the sum.
    pub survivors: BTreeSet<PartyIndex>,
    /// Parties of the roster whose masked vectors are missing.
    pub dropped: BTreeSet<PartyIndex>,
    /// Per survivor: the survivors and the dropped parties of its neighbourhood.
    pub requests: BTreeMap<PartyIndex, (BTreeSet<PartyIndex>, BTreeSet<PartyIndex>)>,
}

impl Aggregator {
    /// Starts a round of `spec` over vectors of `input`.
    ///
    /// # Errors
    /// [`SecAggError::InvalidParam`] for an input spec the roster's sum does not fit.
    pub fn new(spec: RoundSpec, input: InputSpec) -> Result<Self, SecAggError> {
        input.check(spec.n_parties())?;
        let sum = vec![0; input.vector_len];
        Ok(Self { spec, input, sum, contributors: BTreeSet::new(), bundles: BTreeMap::new() })
    }

    /// The round spec.
    pub fn spec(&self) -> &RoundSpec {
        &self.spec
    }

    /// The round's vector.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// Adds one party's upload: its masked vector to the running sum, its sealed shares
    /// (recipient → ciphertext, one per neighbour) to the mailbox.
    ///
    /// # Errors
    /// [`SecAggError`] for an unknown or repeated party, a wrong length, an element outside
    /// the ring, or shares not sealed exactly to its neighbours.
    pub fn add_masked(
        &mut self,
        from: PartyIndex,
        masked: &[u64],
        bundles: BTreeMap<PartyIndex, Vec<u8>>,
    ) -> Result<(), SecAggError> {
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
        let neighbours = self.spec.graph().neighbours(from);
        if bundles.keys().copied().ne(neighbours.iter().copied()) {
            return Err(SecAggError::UnexpectedParty {
                party: from,
                reason: "sealed shares are not addressed exactly to its neighbours",
            });
        }
        if let Some(ct) = bundles.values().find(|ct| ct.len() != SEALED_BUNDLE_LEN) {
            return Err(SecAggError::ShareFormat {
                from,
                got: ct.len(),
                expected: SEALED_BUNDLE_LEN,
            });
        }
        for (s, &y) in self.sum.iter_mut().zip(masked) {
            *s = s.wrapping_add(y) & mask;
        }
        for (to, ct) in bundles {
            self.bundles.entry(to).or_default().insert(from, ct);
        }
        self.contributors.insert(from);
        Ok(())
    }

    /// Parties whose masked vectors are in the sum.
    pub fn contributors(&self) -> &BTreeSet<PartyIndex> {
        &self.contributors
    }

    /// The shares sealed to `to` by the survivors of `plan` (sender → ciphertext).
    pub fn bundles_for(&self, plan: &UnmaskPlan, to: PartyIndex) -> BTreeMap<PartyIndex, Vec<u8>> {
        self.bundles
            .get(&to)
            .map(|m| {
                m.iter()
                    .filter(|(from, _)| plan.survivors.contains(from))
                    .map(|(&f, ct)| (f, ct.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decides whom to ask for what, once no more masked vectors will be accepted.
    ///
    /// # Errors
    /// [`SecAggError::ThresholdNotMet`] when some survivor has fewer than `t` surviving
    /// holders of its self-mask seed (the round cannot finish and should be retried), or
    /// nobody contributed.
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
            let got = graph.neighbourhood(u).into_iter().filter(|h| survivors.contains(h)).count();
            if got < t {
                return Err(SecAggError::ThresholdNotMet {
                    party: u,
                    kind: SecretKind::SelfMask,
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
    /// [`SecAggError::UnexpectedParty`] when the responder was not asked or answers for a
    /// party it was not asked about (in particular a `b` share of a dropped party or a
    /// pairwise seed with a survivor), [`SecAggError::Missing`] when an asked-for value is
    /// absent.
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
        for (&p, share) in &response.self_mask {
            if !alive.contains(&p) {
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
        if let Some(&party) = alive.iter().find(|p| !response.self_mask.contains_key(p)) {
            return Err(SecAggError::Missing { party, what: "self-mask share" });
        }
        if let Some(&p) = response.pair_seeds.keys().find(|p| !gone.contains(p)) {
            return Err(SecAggError::UnexpectedParty {
                party: p,
                reason: "pairwise seed that was not requested",
            });
        }
        if let Some(&party) = gone.iter().find(|p| !response.pair_seeds.contains_key(p)) {
            return Err(SecAggError::Missing { party, what: "pairwise seed" });
        }
        Ok(())
    }

    /// Removes all masks and returns the sum of the survivors' encoded vectors.
    ///
    /// # Errors
    /// [`SecAggError::ThresholdNotMet`] when fewer than `t` shares of a self-mask seed came
    /// back, [`SecAggError::Missing`] when a survivor with a dropped neighbour did not answer
    /// (its pairwise mask with it cannot be removed), [`SecAggError::Shamir`] for
    /// inconsistent shares, and any error of [`Aggregator::check_response`].
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
        let mut sum = self.sum;
        let mut self_seeds = Vec::with_capacity(plan.survivors.len());
        for &u in &plan.survivors {
            let shares: Vec<Share> =
                responses.values().filter_map(|r| r.self_mask.get(&u)).cloned().collect();
            if shares.len() < t {
                return Err(SecAggError::ThresholdNotMet {
                    party: u,
                    kind: SecretKind::SelfMask,
                    got: shares.len(),
                    need: t,
                });
            }
            let secret = shamir::reconstruct(&shares, t).map_err(|source| SecAggError::Shamir {
                party: u,
                kind: SecretKind::SelfMask,
                source,
            })?;
            self_seeds.push(MaskSeed::from_bytes(&secret));
        }
        let mut masks: Vec<(&MaskSeed, MaskKind, MaskOp)> =
            self_seeds.iter().map(|s| (s, MaskKind::SelfMask, MaskOp::Sub)).collect();
        for &d in &plan.dropped {
            for &v in graph.neighbours(d).iter().filter(|v| plan.survivors.contains(v)) {
                let seed = responses.get(&v).and_then(|r| r.pair_seeds.get(&d)).ok_or(
                    SecAggError::Missing { party: v, what: "pairwise seed with a dropped party" },
                )?;
                // v added the mask if v < d and subtracted it otherwise; undo that.
                let op = if v < d { MaskOp::Sub } else { MaskOp::Add };
                masks.push((seed, MaskKind::Pairwise, op));
            }
        }
        apply_masks(&mut sum, &masks, ring_bits)?;
        Ok(sum)
    }
}
