//! The per-round secrets of a pair of parties, derived from the pair's root for the job.
//!
//! Two parties that share a job hold one root secret per pair: both derive it from their
//! job channel keys (X25519, RFC 7748, signed with their certificates and checked by each
//! other; see `fedcredit_crypto::channel`). Every round then derives, with HKDF-SHA256
//! (RFC 5869) salted with the round context (job, round, attempt, roster, parameters):
//! - the **pairwise mask seed** `s_uv` (the same at both ends), which masks the pair's
//!   inputs so the masks cancel in the sum (Bonawitz et al., CCS 2017, §4);
//! - a **share key** per direction, under which a party seals the Shamir share of its
//!   self-mask seed for the other (so the relaying server cannot read it).
//!
//! Deriving round secrets from long-term pairwise keys instead of fresh X25519 pairs per
//! round follows the multi-round secure aggregation of Ma et al., "Flamingo: Multi-Round
//! Single-Server Secure Aggregation with Applications to Private Federated Learning"
//! (IEEE S&P 2023): a round needs no key advertisement and no public-key operation, and a
//! revealed round seed (when a neighbour drops) says nothing about other rounds' seeds.

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::masking::MaskSeed;
use super::{PartyIndex, RoundContext};

/// HKDF info for pairwise mask seeds.
pub const PAIRWISE_MASK_INFO: &[u8] = b"fedcredit secagg pairwise mask v2";
/// HKDF info prefix for share-sealing keys (followed by sender and recipient indices).
pub const SHARE_KEY_INFO: &[u8] = b"fedcredit secagg share key v2";

/// The root secret of a pair of parties for one job (the same at both ends).
///
/// # Security
/// Whoever holds it can compute every round's pairwise mask between the two. Zeroized on
/// drop; `Debug` prints `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairRoot([u8; 32]);

impl std::fmt::Debug for PairRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairRoot(<redacted>)")
    }
}

impl PartialEq for PairRoot {
    fn eq(&self, other: &Self) -> bool {
        // Not constant-time: for tests and bookkeeping, never on a secret an adversary probes.
        self.0 == other.0
    }
}

impl Eq for PairRoot {}

impl PairRoot {
    /// A root from bytes (derived by the channel layer).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn expand(&self, salt: &RoundContext, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(salt.as_bytes()), &self.0);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit.
        let _ = hk.expand(info, out.as_mut_slice());
        out
    }

    /// The round's pairwise mask seed `s_uv` of parties `u` and `v` (symmetric).
    pub(crate) fn mask_seed(&self, ctx: &RoundContext, u: PartyIndex, v: PartyIndex) -> MaskSeed {
        let (a, b) = (u.min(v), u.max(v));
        let mut info = PAIRWISE_MASK_INFO.to_vec();
        info.extend_from_slice(&a.to_le_bytes());
        info.extend_from_slice(&b.to_le_bytes());
        MaskSeed::from_bytes(&self.expand(ctx, &info))
    }

    /// The round's key for sealing a share from `from` to `to`.
    pub(crate) fn share_key(
        &self,
        ctx: &RoundContext,
        from: PartyIndex,
        to: PartyIndex,
    ) -> Zeroizing<[u8; 32]> {
        let mut info = SHARE_KEY_INFO.to_vec();
        info.extend_from_slice(&from.to_le_bytes());
        info.extend_from_slice(&to.to_le_bytes());
        self.expand(ctx, &info)
    }
}

/// Whether an X25519 public key is a point of small order, whose agreement with any secret
/// is all zeros (non-contributory). Clamped X25519 scalars are multiples of the cofactor 8, so
/// any fixed secret detects it.
pub fn is_low_order(public: &[u8; 32]) -> bool {
    let probe = StaticSecret::from([0x5au8; 32]);
    !probe.diffie_hellman(&PublicKey::from(*public)).was_contributory()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_symmetric_keys_directional_and_contexts_separate() {
        let r = PairRoot::from_bytes([7; 32]);
        let c1 = RoundContext([1; 32]);
        let c2 = RoundContext([2; 32]);
        assert_eq!(r.mask_seed(&c1, 2, 5).as_bytes(), r.mask_seed(&c1, 5, 2).as_bytes());
        assert_ne!(r.mask_seed(&c1, 2, 5).as_bytes(), r.mask_seed(&c2, 2, 5).as_bytes());
        assert_ne!(*r.share_key(&c1, 2, 5), *r.share_key(&c1, 5, 2));
        let other = PairRoot::from_bytes([8; 32]);
        assert_ne!(r.mask_seed(&c1, 2, 5).as_bytes(), other.mask_seed(&c1, 2, 5).as_bytes());
        assert_eq!(format!("{r:?}"), "PairRoot(<redacted>)");
    }

    #[test]
    fn low_order_points_are_detected() {
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let pk = PublicKey::from(&StaticSecret::from([3u8; 32])).to_bytes();
        assert!(!is_low_order(&pk));
    }
}
