//! One party's side of a secure-aggregation round, as a typestate.
//!
//! Bonawitz et al. (CCS 2017, Fig. 4, "User" column; Bell et al., CCS 2020 for the
//! neighbourhoods) with round secrets derived from the pairs' long-term roots
//! ([`super::keys`]), so a round has two steps:
//!
//! | step | consumes | produces | keeps |
//! |---|---|---|---|
//! | [`mask_input`] | the encoded input | [`MaskedState`], the masked vector, one sealed share of the self-mask seed per neighbour | own share, pairwise seeds, share keys |
//! | [`MaskedState::unmask`] | [`MaskedState`], the shares sealed to it | [`UnmaskShares`] | nothing |
//!
//! A failed step consumes the state too: the party then aborts the round, as the paper's
//! users do. All states zeroize their secrets on drop and print as `<redacted>`.

use std::collections::{BTreeMap, BTreeSet};

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::aead::{self, BUNDLE_LEN};
use super::keys::PairRoot;
use super::masking::{MaskKind, MaskOp, MaskSeed, apply_masks, ring_mask};
use super::shamir::{self, SECRET_LEN, Share};
use super::{InputSpec, PartyIndex, RoundSpec, SecAggError, SecretKind};

/// Checks that `got` has exactly the keys in `expected`.
fn exact_keys<V>(
    got: &BTreeMap<PartyIndex, V>,
    expected: &[PartyIndex],
    what: &'static str,
) -> Result<(), SecAggError> {
    for &v in expected {
        if !got.contains_key(&v) {
            return Err(SecAggError::Missing { party: v, what });
        }
    }
    if let Some(&extra) = got.keys().find(|k| expected.binary_search(k).is_err()) {
        return Err(SecAggError::UnexpectedParty { party: extra, reason: "not a neighbour" });
    }
    Ok(())
}

/// The masked upload of party `me`: its masked vector and one sealed share of its self-mask
/// seed per neighbour (recipient → ciphertext).
pub type Masked = (MaskedState, Vec<u64>, BTreeMap<PartyIndex, Vec<u8>>);

/// Masks `input` (fixed-point ring elements of `input_spec`, see
/// [`crate::FixedPoint::encode_vec`]) for the round `spec`: draws the self-mask seed `b_u`,
/// Shamir-shares it `t`-of-`m` among the neighbourhood, seals each neighbour's share, and
/// returns `y_u = x_u + PRG(b_u) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv)`. `roots` holds the
/// pair root with each neighbour.
///
/// # Errors
/// [`SecAggError`] when `roots` are not exactly the neighbours', `me` is outside the roster,
/// or `input` has the wrong length or an element outside the ring.
pub fn mask_input<R: CryptoRng + ?Sized>(
    spec: &RoundSpec,
    me: PartyIndex,
    roots: &BTreeMap<PartyIndex, PairRoot>,
    input: &[u64],
    input_spec: &InputSpec,
    rng: &mut R,
) -> Result<Masked, SecAggError> {
    spec.check_index(me)?;
    input_spec.check(spec.n_parties())?;
    let ctx = spec.context();
    let neighbours = spec.graph().neighbours(me);
    exact_keys(roots, neighbours, "pair root")?;
    let ring_bits = input_spec.fixed.ring_bits;
    if input.len() != input_spec.vector_len {
        return Err(SecAggError::Length {
            party: me,
            expected: input_spec.vector_len,
            got: input.len(),
        });
    }
    let mask = ring_mask(ring_bits);
    if let Some(position) = input.iter().position(|&x| x & !mask != 0) {
        return Err(SecAggError::OutOfRing { party: me, position, ring_bits });
    }

    let self_seed = MaskSeed::random(rng);
    let holders = spec.graph().neighbourhood(me);
    let xs: Vec<u16> = holders.iter().map(|&h| h + 1).collect();
    let shares = shamir::split(self_seed.as_bytes(), spec.threshold(), &xs, rng)
        .map_err(|source| SecAggError::Shamir { party: me, kind: SecretKind::SelfMask, source })?;
    let mut bundles = BTreeMap::new();
    let mut own_share = None;
    for (&holder, share) in holders.iter().zip(shares) {
        if holder == me {
            own_share = Some(share);
            continue;
        }
        let root =
            roots.get(&holder).ok_or(SecAggError::Missing { party: holder, what: "pair root" })?;
        let key = root.share_key(ctx, me, holder);
        bundles.insert(holder, aead::seal(&key, ctx, me, holder, share.y())?);
    }
    let own_share = own_share.ok_or(SecAggError::Missing { party: me, what: "own share" })?;

    let mut pair_seeds = BTreeMap::new();
    let mut recv_keys = BTreeMap::new();
    for (&v, root) in roots {
        pair_seeds.insert(v, root.mask_seed(ctx, me, v));
        recv_keys.insert(v, root.share_key(ctx, v, me));
    }
    let mut masks = vec![(&self_seed, MaskKind::SelfMask, MaskOp::Add)];
    for (&v, seed) in &pair_seeds {
        let op = if me < v { MaskOp::Add } else { MaskOp::Sub };
        masks.push((seed, MaskKind::Pairwise, op));
    }
    let mut masked = input.to_vec();
    apply_masks(&mut masked, &masks, ring_bits)?;
    Ok((MaskedState { spec: spec.clone(), me, own_share, pair_seeds, recv_keys }, masked, bundles))
}

/// After the upload: this party's own share, its pairwise seeds and the keys of the shares
/// its neighbours seal to it.
pub struct MaskedState {
    spec: RoundSpec,
    me: PartyIndex,
    own_share: Share,
    pair_seeds: BTreeMap<PartyIndex, MaskSeed>,
    recv_keys: BTreeMap<PartyIndex, Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for MaskedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskedState {{ me: {}, secrets: <redacted> }}", self.me)
    }
}

/// A party's answer to the unmask request: a share of the self-mask seed of each surviving
/// member of its neighbourhood, and its pairwise seed with each dropped neighbour. No party
/// appears in both maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskShares {
    /// Owner → share of its self-mask seed `b`.
    pub self_mask: BTreeMap<PartyIndex, Share>,
    /// Dropped neighbour → this party's round seed with it, `s_{me,d}`.
    pub pair_seeds: BTreeMap<PartyIndex, MaskSeed>,
}

impl PartialEq for MaskSeed {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MaskSeed {}

impl MaskedState {
    /// This party's index.
    pub fn me(&self) -> PartyIndex {
        self.me
    }

    /// The unmask step: opens the shares its surviving neighbours sealed to it (`bundles`,
    /// sender → ciphertext) and reveals, for each member of its neighbourhood, the share of
    /// `b` if it survived or its pairwise seed with it if it dropped. Consuming the state
    /// means a party answers one unmask request per round.
    ///
    /// # Errors
    /// [`SecAggError::BothSharesRequested`] when a party is in both sets,
    /// [`SecAggError::UnexpectedParty`] or [`SecAggError::Missing`] when the sets do not
    /// partition the neighbourhood, omit this party from the survivors, or the bundles are
    /// not exactly the surviving neighbours', [`SecAggError::Decryption`] for a bundle that
    /// does not authenticate, and [`SecAggError::TooFewSurvivors`] when fewer than `t`
    /// neighbourhood members survived.
    pub fn unmask(
        self,
        bundles: &BTreeMap<PartyIndex, Vec<u8>>,
        survivors: &BTreeSet<PartyIndex>,
        dropped: &BTreeSet<PartyIndex>,
    ) -> Result<UnmaskShares, SecAggError> {
        if let Some(&party) = survivors.intersection(dropped).next() {
            return Err(SecAggError::BothSharesRequested { party });
        }
        if !survivors.contains(&self.me) {
            return Err(SecAggError::UnexpectedParty {
                party: self.me,
                reason: "this party is not listed as a survivor",
            });
        }
        let hood = self.spec.graph().neighbourhood(self.me);
        for &p in survivors.iter().chain(dropped) {
            if hood.binary_search(&p).is_err() {
                return Err(SecAggError::UnexpectedParty {
                    party: p,
                    reason: "not in this party's neighbourhood",
                });
            }
        }
        for &p in &hood {
            if !survivors.contains(&p) && !dropped.contains(&p) {
                return Err(SecAggError::Missing { party: p, what: "survivor or dropout status" });
            }
        }
        if survivors.len() < self.spec.threshold() {
            return Err(SecAggError::TooFewSurvivors {
                survivors: survivors.len(),
                need: self.spec.threshold(),
            });
        }
        let alive: Vec<PartyIndex> = survivors.iter().copied().filter(|&p| p != self.me).collect();
        exact_keys(bundles, &alive, "sealed share")?;
        let ctx = self.spec.context();
        let mut out = UnmaskShares::default();
        out.self_mask.insert(self.me, self.own_share.clone());
        for (&v, ct) in bundles {
            let key = self
                .recv_keys
                .get(&v)
                .ok_or(SecAggError::Missing { party: v, what: "share key" })?;
            let plain = aead::open(key, ctx, v, self.me, ct)?;
            let y: [u8; SECRET_LEN] = plain.as_slice().try_into().map_err(|_| {
                SecAggError::ShareFormat { from: v, got: plain.len(), expected: BUNDLE_LEN }
            })?;
            out.self_mask.insert(v, Share::from_parts(self.me + 1, y));
        }
        for &d in dropped {
            let seed = self
                .pair_seeds
                .get(&d)
                .ok_or(SecAggError::Missing { party: d, what: "pairwise seed" })?;
            out.pair_seeds.insert(d, seed.clone());
        }
        Ok(out)
    }
}
