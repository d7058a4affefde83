//! One party's side of a secure-aggregation round, as a typestate.
//!
//! Each step of Bonawitz et al. (CCS 2017, Fig. 4, "User" column; Bell et al., CCS 2020
//! for the neighbourhoods) is a method that consumes the previous state, so the steps
//! run in order and each secret lives only as long as it is needed:
//!
//! | step | consumes | produces | keeps |
//! |---|---|---|---|
//! | [`advertise`] | — | [`KeysState`], public keys | the two X25519 secrets |
//! | [`KeysState::share_keys`] | [`KeysState`] | [`SharedState`], one ciphertext per neighbour | self-mask seed, pairwise seeds, own shares, receive keys |
//! | [`SharedState::mask_input`] | [`SharedState`] | [`MaskedState`], the masked vector | the shares it holds |
//! | [`MaskedState::unmask`] | [`MaskedState`] | [`UnmaskShares`] | nothing |
//!
//! A failed step consumes the state too: the party then aborts the round, as the paper's
//! users do. All states zeroize their secrets on drop and print as `<redacted>`.

use std::collections::{BTreeMap, BTreeSet};

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::aead::{self, BUNDLE_LEN};
use super::keys::{self, PublicKeys, RoundKeys};
use super::masking::{MaskKind, MaskOp, MaskSeed, apply_mask, ring_mask};
use super::shamir::{self, SECRET_LEN, Share};
use super::{InputSpec, PartyIndex, RoundSpec, SecAggError, SecretKind};

/// Step 1 (AdvertiseKeys): draws the round's key pairs for party `me`.
///
/// # Errors
/// [`SecAggError::UnexpectedParty`] when `me` is outside the roster.
pub fn advertise<R: CryptoRng + ?Sized>(
    spec: &RoundSpec,
    me: PartyIndex,
    rng: &mut R,
) -> Result<(KeysState, PublicKeys), SecAggError> {
    spec.check_index(me)?;
    let keys = RoundKeys::generate(rng);
    let public = keys.public();
    Ok((KeysState { spec: spec.clone(), me, keys }, public))
}

/// After AdvertiseKeys: the party's secret keys.
pub struct KeysState {
    spec: RoundSpec,
    me: PartyIndex,
    keys: RoundKeys,
}

impl std::fmt::Debug for KeysState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeysState {{ me: {}, keys: <redacted> }}", self.me)
    }
}

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

impl KeysState {
    /// This party's index.
    pub fn me(&self) -> PartyIndex {
        self.me
    }

    /// The party's public keys.
    pub fn public(&self) -> PublicKeys {
        self.keys.public()
    }

    /// Step 2 (ShareKeys): given the neighbours' public keys, draws the self-mask seed,
    /// Shamir-shares it and the masking key among the neighbourhood, derives the pairwise
    /// mask seeds and returns one ciphertext per neighbour.
    ///
    /// # Errors
    /// [`SecAggError`] when the keys are not exactly the neighbours', two public keys
    /// coincide, or a key is of low order.
    pub fn share_keys<R: CryptoRng + ?Sized>(
        self,
        peers: &BTreeMap<PartyIndex, PublicKeys>,
        rng: &mut R,
    ) -> Result<(SharedState, BTreeMap<PartyIndex, Vec<u8>>), SecAggError> {
        let spec = &self.spec;
        let me = self.me;
        let ctx = spec.context();
        let neighbours = spec.graph().neighbours(me);
        exact_keys(peers, neighbours, "public keys")?;

        // All advertised keys must be distinct (Bonawitz et al., round ShareKeys).
        let own = self.keys.public();
        let mut seen: BTreeMap<[u8; 32], PartyIndex> = BTreeMap::new();
        for (party, pk) in std::iter::once((me, &own)).chain(peers.iter().map(|(&v, pk)| (v, pk))) {
            for key in [pk.c, pk.s] {
                if let Some(&first) = seen.get(&key) {
                    return Err(SecAggError::DuplicateKey {
                        first: first.min(party),
                        second: first.max(party),
                    });
                }
                seen.insert(key, party);
            }
        }

        let mut send_keys = BTreeMap::new();
        let mut recv_keys = BTreeMap::new();
        let mut pair_seeds = BTreeMap::new();
        for (&v, pk) in peers {
            let c_shared = keys::agree(self.keys.c(), &pk.c, v)?;
            send_keys.insert(v, keys::share_key(&c_shared, ctx, me, v));
            recv_keys.insert(v, keys::share_key(&c_shared, ctx, v, me));
            let s_shared = keys::agree(self.keys.s(), &pk.s, v)?;
            pair_seeds.insert(v, keys::pairwise_mask_seed(&s_shared, ctx));
        }

        let self_seed = MaskSeed::random(rng);
        let holders = spec.graph().neighbourhood(me);
        let xs: Vec<u16> = holders.iter().map(|&h| h + 1).collect();
        let t = spec.threshold();
        let shamir_err = |kind| move |source| SecAggError::Shamir { party: me, kind, source };
        let b_shares = shamir::split(self_seed.as_bytes(), t, &xs, rng)
            .map_err(shamir_err(SecretKind::SelfMask))?;
        let s_secret = Zeroizing::new(self.keys.s().to_bytes());
        let s_shares =
            shamir::split(&s_secret, t, &xs, rng).map_err(shamir_err(SecretKind::MaskKey))?;

        let mut ciphertexts = BTreeMap::new();
        let mut own_shares = None;
        for ((&holder, b), s) in holders.iter().zip(b_shares).zip(s_shares) {
            if holder == me {
                own_shares = Some((b, s));
                continue;
            }
            let mut bundle = Zeroizing::new([0u8; BUNDLE_LEN]);
            bundle[..SECRET_LEN].copy_from_slice(b.y());
            bundle[SECRET_LEN..].copy_from_slice(s.y());
            let key = send_keys
                .get(&holder)
                .ok_or(SecAggError::Missing { party: holder, what: "share key" })?;
            ciphertexts.insert(holder, aead::seal(key, ctx, me, holder, bundle.as_slice())?);
        }
        let own_shares = own_shares.ok_or(SecAggError::Missing { party: me, what: "own share" })?;
        Ok((
            SharedState {
                spec: self.spec.clone(),
                me,
                self_seed,
                own_shares,
                pair_seeds,
                recv_keys,
            },
            ciphertexts,
        ))
    }
}

/// After ShareKeys: the self-mask seed, pairwise seeds, own shares and receive keys.
pub struct SharedState {
    spec: RoundSpec,
    me: PartyIndex,
    pub(super) self_seed: MaskSeed,
    pub(super) own_shares: (Share, Share),
    pair_seeds: BTreeMap<PartyIndex, MaskSeed>,
    recv_keys: BTreeMap<PartyIndex, Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedState {{ me: {}, secrets: <redacted> }}", self.me)
    }
}

impl SharedState {
    /// This party's index.
    pub fn me(&self) -> PartyIndex {
        self.me
    }

    /// Step 3 (MaskedInput): decrypts the shares the neighbours sent and masks `input`
    /// (fixed-point ring elements of `input_spec`, see [`crate::FixedPoint::encode_vec`]).
    ///
    /// # Errors
    /// [`SecAggError`] when a neighbour's ciphertext is missing, unexpected or fails
    /// authentication, or `input` has the wrong length or an element outside the ring.
    pub fn mask_input(
        self,
        received: &BTreeMap<PartyIndex, Vec<u8>>,
        input: &[u64],
        input_spec: &InputSpec,
    ) -> Result<(MaskedState, Vec<u64>), SecAggError> {
        let spec = &self.spec;
        let me = self.me;
        input_spec.check(spec.n_parties())?;
        let ring_bits = input_spec.fixed.ring_bits;
        exact_keys(received, spec.graph().neighbours(me), "encrypted shares")?;
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

        let mut held = BTreeMap::new();
        for (&v, ct) in received {
            let key = self
                .recv_keys
                .get(&v)
                .ok_or(SecAggError::Missing { party: v, what: "share key" })?;
            let bundle = aead::open(key, spec.context(), v, me, ct)?;
            if bundle.len() != BUNDLE_LEN {
                return Err(SecAggError::ShareFormat {
                    from: v,
                    got: bundle.len(),
                    expected: BUNDLE_LEN,
                });
            }
            let mut b = [0u8; SECRET_LEN];
            let mut s = [0u8; SECRET_LEN];
            b.copy_from_slice(&bundle[..SECRET_LEN]);
            s.copy_from_slice(&bundle[SECRET_LEN..]);
            held.insert(v, (Share::from_parts(me + 1, b), Share::from_parts(me + 1, s)));
            zeroize::Zeroize::zeroize(&mut b);
            zeroize::Zeroize::zeroize(&mut s);
        }

        let mut masked = input.to_vec();
        apply_mask(&mut masked, &self.self_seed, MaskKind::SelfMask, ring_bits, MaskOp::Add)?;
        for (&v, seed) in &self.pair_seeds {
            let op = if me < v { MaskOp::Add } else { MaskOp::Sub };
            apply_mask(&mut masked, seed, MaskKind::Pairwise, ring_bits, op)?;
        }
        held.insert(me, self.own_shares.clone());
        Ok((MaskedState { spec: self.spec.clone(), me, held }, masked))
    }
}

/// After MaskedInput: one share of each neighbourhood member's two secrets.
pub struct MaskedState {
    spec: RoundSpec,
    me: PartyIndex,
    held: BTreeMap<PartyIndex, (Share, Share)>,
}

impl std::fmt::Debug for MaskedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskedState {{ me: {}, shares: <redacted> }}", self.me)
    }
}

/// A party's answer to the unmask request: shares of the self-mask seed of each surviving
/// neighbourhood member and of the masking key of each dropped neighbour. No party appears
/// in both maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskShares {
    /// Owner → share of its self-mask seed `b`.
    pub self_mask: BTreeMap<PartyIndex, Share>,
    /// Owner → share of its masking key `s`.
    pub mask_key: BTreeMap<PartyIndex, Share>,
}

impl MaskedState {
    /// This party's index.
    pub fn me(&self) -> PartyIndex {
        self.me
    }

    /// Step 4 (Unmask): reveals, for each member of this party's neighbourhood, the share of
    /// `b` if it survived or the share of `s` if it dropped. Consuming the state means a
    /// party answers one unmask request per round, so the server can never collect both
    /// shares of one party from it.
    ///
    /// # Errors
    /// [`SecAggError::BothSharesRequested`] when a party is in both sets,
    /// [`SecAggError::UnexpectedParty`] or [`SecAggError::Missing`] when the sets do not
    /// partition the neighbourhood or omit this party from the survivors, and
    /// [`SecAggError::TooFewSurvivors`] when fewer than `t` neighbourhood members survived.
    pub fn unmask(
        self,
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
        let mut out = UnmaskShares::default();
        for (&p, (b, s)) in &self.held {
            if survivors.contains(&p) {
                out.self_mask.insert(p, b.clone());
            } else {
                out.mask_key.insert(p, s.clone());
            }
        }
        Ok(out)
    }
}
