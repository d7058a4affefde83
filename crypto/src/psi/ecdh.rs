//! ECDH-PSI over ristretto255: blinding, reblinding and the keys that do it.
//!
//! The commutative blinding of Huberman, Franklin and Hogg (EC 1999) in the prime-order
//! group ristretto255 (RFC 9496): a party's value for id `x` is `k·H(x)` for its secret
//! scalar `k`, with `H` the hash to the group of [`super::hash`]. Reblinding a peer's
//! value multiplies it by one's own key, so a common id ends with `(Π k)·H(x)` in every
//! party's hands. Decoding validates every received point (RFC 9496 §4.3.1 decoding
//! rejects non-canonical and invalid encodings) and refuses the identity.
//!
//! # Speed (measured on the 2-core machine, see [`super::measure`])
//!
//! - Every multiplication by the secret key is the constant-time variable-base ladder of
//!   curve25519-dalek (`RistrettoPoint * Scalar`); no `vartime` routine sees a key.
//! - Encoding a point (compression) needs an inverse square root, about as costly as a
//!   sixth of the multiplication. `RistrettoPoint::double_and_compress_batch` encodes
//!   `2·P` for a whole batch with one shared field inversion instead. So each key stores
//!   `k/2 mod ℓ` (ℓ the odd group order, so 2 is invertible) next to `k`, multiplies by
//!   `k/2` and lets the batch encoder double: the output is `enc(2·(k/2)·P) = enc(k·P)`,
//!   byte for byte what `(k·P).compress()` gives (a test checks it). No consistency
//!   convention between the parties is needed, and nothing changes for a peer that
//!   computes `k·P` the plain way.
//! - Work is split into batches of [`BATCH`] ids and spread over the rayon pool.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rand::CryptoRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::PsiError;
use super::hash::Dst;

/// A compressed ristretto255 element: what goes on the wire and what fully blinded sets
/// are compared by.
pub type BlindedPoint = [u8; 32];

/// Ids per batch: one shared inversion for the encodings of a batch, and the unit of
/// work handed to a thread.
pub const BATCH: usize = 256;

/// A party's secret PSI key for one job: a uniformly random non-zero scalar.
/// Zeroized on drop; `Debug` prints `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PsiKey {
    key: Scalar,
    /// `key / 2 mod ℓ`, multiplied before the doubling batch encoder.
    half: Scalar,
}

impl std::fmt::Debug for PsiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PsiKey(<redacted>)")
    }
}

impl PsiKey {
    /// A fresh key from a cryptographic RNG (64 bytes reduced mod ℓ, so the bias is
    /// below 2^-250).
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut wide = Zeroizing::new([0u8; 64]);
            rng.fill_bytes(wide.as_mut());
            let key = Scalar::from_bytes_mod_order_wide(&wide);
            if key != Scalar::ZERO {
                return Self::from_nonzero(key);
            }
        }
    }

    fn from_nonzero(key: Scalar) -> Self {
        let half = key * Scalar::from(2u8).invert();
        Self { key, half }
    }

    /// The canonical little-endian encoding, for a role's checkpoint.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// A key from [`PsiKey::to_bytes`]; `None` for a non-canonical or zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let key: Option<Scalar> = Scalar::from_canonical_bytes(*bytes).into();
        key.filter(|k| *k != Scalar::ZERO).map(Self::from_nonzero)
    }

    /// The key `self / ephemeral` that, applied to a set blinded with the `ephemeral` key
    /// and then by every other party, leaves it blinded by `self` and the others only.
    /// This is the owner's last step in the multi-party protocol of [`super`].
    pub fn finishing_key(&self, ephemeral: &PsiKey) -> PsiKey {
        Self::from_nonzero(self.key * ephemeral.key.invert())
    }

    #[cfg(test)]
    pub(crate) fn scalar(&self) -> &Scalar {
        &self.key
    }
}

/// Blinds one chunk of ids: `k·H(id)` for each, encoded, in the input order.
///
/// Each id is hashed to ristretto255 under `dst` ([`Dst::hash_to_group`]), multiplied
/// by the key in constant time and compressed. Callers stream large sets chunk by chunk
/// (see [`super::RECOMMENDED_CHUNK`]).
pub fn blind_ids<I: AsRef<[u8]> + Sync>(ids: &[I], dst: &Dst, key: &PsiKey) -> Vec<BlindedPoint> {
    let mut out = vec![[0u8; 32]; ids.len()];
    out.par_chunks_mut(BATCH).zip(ids.par_chunks(BATCH)).for_each(|(out, ids)| {
        let points: Vec<RistrettoPoint> =
            ids.iter().map(|id| dst.hash_to_group(id.as_ref()) * key.half).collect();
        encode_doubled(&points, out);
    });
    out
}

/// Reblinds one chunk of a peer's blinded points: decodes each (rejecting invalid
/// encodings and the identity), multiplies by the key in constant time and encodes, in
/// the input order. The error names the first bad point's position in `points`.
pub fn reblind(points: &[BlindedPoint], key: &PsiKey) -> Result<Vec<BlindedPoint>, PsiError> {
    let mut out = vec![[0u8; 32]; points.len()];
    let ok =
        out.par_chunks_mut(BATCH).zip(points.par_chunks(BATCH)).try_for_each(|(out, encoded)| {
            let mut decoded = Vec::with_capacity(encoded.len());
            for bytes in encoded {
                decoded.push(decode(bytes).ok_or(())? * key.half);
            }
            encode_doubled(&decoded, out);
            Ok::<(), ()>(())
        });
    match ok {
        Ok(()) => Ok(out),
        // Threads stop at whichever bad point they meet first; name the first one.
        Err(()) => Err(first_bad_point(points)),
    }
}

/// A received point, or `None` if it is not a canonical encoding of a non-identity
/// element.
fn decode(bytes: &BlindedPoint) -> Option<RistrettoPoint> {
    // The identity's only canonical encoding is all zeros.
    if *bytes == [0u8; 32] {
        return None;
    }
    CompressedRistretto(*bytes).decompress()
}

fn first_bad_point(points: &[BlindedPoint]) -> PsiError {
    for (index, bytes) in points.iter().enumerate() {
        if *bytes == [0u8; 32] {
            return PsiError::IdentityPoint { index };
        }
        if CompressedRistretto(*bytes).decompress().is_none() {
            return PsiError::InvalidPoint { index };
        }
    }
    // Unreachable when called after a failed decode; report the end rather than panic.
    PsiError::InvalidPoint { index: points.len() }
}

/// Writes `enc(2·P)` for each point: one shared inversion per batch.
fn encode_doubled(points: &[RistrettoPoint], out: &mut [BlindedPoint]) {
    for (slot, enc) in out.iter_mut().zip(RistrettoPoint::double_and_compress_batch(points)) {
        *slot = enc.to_bytes();
    }
}

/// The order in which a set visits the other parties in the multi-party protocol: the
/// parties after `owner` around the ring, `owner + 1, …, owner + parties - 1` (mod
/// `parties`). Empty for fewer than two parties.
pub fn ring_route(parties: usize, owner: usize) -> Vec<usize> {
    if parties < 2 {
        return Vec::new();
    }
    (1..parties).map(|step| (owner + step) % parties).collect()
}

/// A uniformly random permutation of `0..n`: position `p` of what a party sends holds its
/// row `perm[p]`. Sending in this order keeps peers from learning the party's row order.
pub fn random_permutation<R: CryptoRng + ?Sized>(n: usize, rng: &mut R) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    perm
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::traits::Identity;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn ids(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("9135{tag}{i:012}")).collect()
    }

    #[test]
    fn batch_path_matches_plain_multiply_and_compress() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = PsiKey::random(&mut rng);
        let dst = Dst::for_job("plain");
        // More than one batch, and a ragged last batch.
        let ids = ids(2 * BATCH + 17, "AA");
        let fast = blind_ids(&ids, &dst, &key);
        for (id, got) in ids.iter().zip(&fast) {
            let plain = (dst.hash_to_group(id.as_bytes()) * key.scalar()).compress();
            assert_eq!(got, plain.as_bytes());
        }
        let other = PsiKey::random(&mut rng);
        let again = reblind(&fast, &other).expect("valid points");
        for (p, got) in fast.iter().zip(&again) {
            let q = CompressedRistretto(*p).decompress().expect("valid");
            assert_eq!(got, (q * other.scalar()).compress().as_bytes());
        }
    }

    #[test]
    fn batch_encoder_handles_the_identity() {
        let points = [
            RistrettoPoint::identity(),
            Dst::for_job("j").hash_to_group(b"x"),
            RistrettoPoint::identity(),
        ];
        let mut out = [[1u8; 32]; 3];
        encode_doubled(&points, &mut out);
        for (p, got) in points.iter().zip(&out) {
            assert_eq!(got, (p + p).compress().as_bytes());
        }
    }

    #[test]
    fn invalid_and_identity_points_are_rejected_with_their_index() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = PsiKey::random(&mut rng);
        let mut points = blind_ids(&ids(600, "BB"), &Dst::for_job("j"), &key);
        // 0xff…: not canonical (s ≥ p); a negative s (low bit set) is invalid too.
        points[300] = [0xff; 32];
        points[450] = [0u8; 32];
        assert_eq!(reblind(&points, &key).unwrap_err(), PsiError::InvalidPoint { index: 300 });
        let mut neg = [0u8; 32];
        neg[0] = 1;
        points[300] = neg;
        assert_eq!(reblind(&points, &key).unwrap_err(), PsiError::InvalidPoint { index: 300 });
        points[300] = points[301];
        assert_eq!(reblind(&points, &key).unwrap_err(), PsiError::IdentityPoint { index: 450 });
        assert_eq!(
            reblind(&points, &key).unwrap_err().offset(1000),
            PsiError::IdentityPoint { index: 1450 }
        );
    }

    #[test]
    fn keys_round_trip_and_print_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = PsiKey::random(&mut rng);
        let back = PsiKey::from_bytes(&key.to_bytes()).expect("canonical");
        assert_eq!(back.scalar(), key.scalar());
        assert!(PsiKey::from_bytes(&[0u8; 32]).is_none());
        assert!(PsiKey::from_bytes(&[0xff; 32]).is_none());
        let printed = format!("{key:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains(&format!("{:?}", key.scalar())));
    }

    #[test]
    fn finishing_key_swaps_the_ephemeral_key_for_the_owners() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (own, eph, peer) =
            (PsiKey::random(&mut rng), PsiKey::random(&mut rng), PsiKey::random(&mut rng));
        let dst = Dst::for_job("finish");
        let ids = ids(10, "CC");
        let via_ephemeral = reblind(
            &reblind(&blind_ids(&ids, &dst, &eph), &peer).unwrap(),
            &own.finishing_key(&eph),
        )
        .unwrap();
        let direct = reblind(&blind_ids(&ids, &dst, &own), &peer).unwrap();
        assert_eq!(via_ephemeral, direct);
    }

    #[test]
    fn ring_routes_visit_every_other_party_once() {
        assert_eq!(ring_route(3, 0), vec![1, 2]);
        assert_eq!(ring_route(3, 2), vec![0, 1]);
        assert_eq!(ring_route(2, 1), vec![0]);
        assert!(ring_route(1, 0).is_empty());
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut perm = random_permutation(1000, &mut rng);
        assert_ne!(perm, (0..1000).collect::<Vec<_>>());
        perm.sort_unstable();
        assert_eq!(perm, (0..1000).collect::<Vec<_>>());
    }
}
