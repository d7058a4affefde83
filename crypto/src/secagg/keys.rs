//! Per-round X25519 key pairs and the key derivations built on them.
//!
//! As in Bonawitz et al. (CCS 2017, §4), each party holds two key pairs per round:
//! `c` for agreeing share-encryption keys and `s` for agreeing pairwise-mask seeds. They
//! are separate because `s_u` is revealed to the server when `u` drops out, which must
//! not expose the shares encrypted under `c_u`. Agreements use X25519 (RFC 7748) and
//! reject non-contributory (all-zero) results; derived keys come from HKDF-SHA256
//! (RFC 5869) salted with the round context.

use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use super::masking::MaskSeed;
use super::{PartyIndex, RoundContext, SecAggError};

/// HKDF info for pairwise mask seeds.
pub const PAIRWISE_MASK_INFO: &[u8] = b"fedcredit secagg pairwise mask";
/// HKDF info prefix for share-encryption keys (followed by sender and recipient indices).
pub const SHARE_KEY_INFO: &[u8] = b"fedcredit secagg share key";

/// A party's two public keys for one round.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PublicKeys {
    /// X25519 public key for share encryption (`c_u^PK`).
    pub c: [u8; 32],
    /// X25519 public key for pairwise masks (`s_u^PK`).
    pub s: [u8; 32],
}

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b[..6].iter().map(|x| format!("{x:02x}")).collect::<String>();
        write!(f, "PublicKeys {{ c: {}…, s: {}… }}", hex(&self.c), hex(&self.s))
    }
}

/// A party's two secret keys for one round.
///
/// # Security
/// Never sent anywhere. `s` is Shamir-shared among the neighbours so the server can
/// remove the pairwise masks of a party that drops out. Zeroized on drop; `Debug`
/// prints `<redacted>`.
pub struct RoundKeys {
    c: StaticSecret,
    s: StaticSecret,
}

// `StaticSecret` zeroizes itself on drop.
impl ZeroizeOnDrop for RoundKeys {}

impl std::fmt::Debug for RoundKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoundKeys(<redacted>)")
    }
}

/// Whether an X25519 public key is a point of small order, whose agreement with any secret
/// is all zeros (non-contributory). Clamped X25519 scalars are multiples of the cofactor 8, so
/// any fixed secret detects it.
pub fn is_low_order(public: &[u8; 32]) -> bool {
    let probe = StaticSecret::from([0x5au8; 32]);
    !probe.diffie_hellman(&PublicKey::from(*public)).was_contributory()
}

impl RoundKeys {
    /// Draws both key pairs from a cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self { c: StaticSecret::random_from_rng(rng), s: StaticSecret::random_from_rng(rng) }
    }

    /// The public halves.
    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            c: PublicKey::from(&self.c).to_bytes(),
            s: PublicKey::from(&self.s).to_bytes(),
        }
    }

    pub(crate) fn c(&self) -> &StaticSecret {
        &self.c
    }

    pub(crate) fn s(&self) -> &StaticSecret {
        &self.s
    }
}

/// X25519 with the all-zero check: a low-order peer key would make the "shared" secret public.
pub(crate) fn agree(
    secret: &StaticSecret,
    peer_public: &[u8; 32],
    peer: PartyIndex,
) -> Result<SharedSecret, SecAggError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer_public));
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(SecAggError::NonContributoryKey { party: peer })
    }
}

/// The public key of a (reconstructed) secret key.
pub(crate) fn public_of(secret_bytes: &[u8; 32]) -> [u8; 32] {
    let secret = StaticSecret::from(*secret_bytes);
    PublicKey::from(&secret).to_bytes()
}

/// `HKDF-SHA256(ikm = X25519(s_u, s_v), salt = round context, info = PAIRWISE_MASK_INFO)`.
pub(crate) fn pairwise_mask_seed(shared: &SharedSecret, context: &RoundContext) -> MaskSeed {
    let hk = Hkdf::<Sha256>::new(Some(context.as_bytes()), shared.as_bytes());
    let mut seed = MaskSeed::zero();
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    if hk.expand(PAIRWISE_MASK_INFO, seed.as_mut_bytes()).is_err() {
        unreachable!("HKDF-SHA256 can expand 32 bytes");
    }
    seed
}

/// A direction-specific ChaCha20-Poly1305 key for shares sent from `from` to `to`:
/// `HKDF-SHA256(ikm = X25519(c_from, c_to), salt = round context, info = SHARE_KEY_INFO || from || to)`.
/// Each such key encrypts exactly one message.
pub(crate) fn share_key(
    shared: &SharedSecret,
    context: &RoundContext,
    from: PartyIndex,
    to: PartyIndex,
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(context.as_bytes()), shared.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    let from_b = from.to_le_bytes();
    let to_b = to.to_le_bytes();
    if hk.expand_multi_info(&[SHARE_KEY_INFO, &from_b, &to_b], key.as_mut_slice()).is_err() {
        unreachable!("HKDF-SHA256 can expand 32 bytes");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_points_are_detected() {
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let k = RoundKeys::generate(&mut rng);
        assert!(!is_low_order(&k.public().c));
    }
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn both_sides_derive_the_same_seed_and_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = RoundKeys::generate(&mut rng);
        let b = RoundKeys::generate(&mut rng);
        let ctx = RoundContext([7; 32]);
        let ab = agree(a.s(), &b.public().s, 1).unwrap();
        let ba = agree(b.s(), &a.public().s, 0).unwrap();
        assert_eq!(
            pairwise_mask_seed(&ab, &ctx).as_bytes(),
            pairwise_mask_seed(&ba, &ctx).as_bytes()
        );
        let other_ctx = RoundContext([8; 32]);
        assert_ne!(
            pairwise_mask_seed(&ab, &ctx).as_bytes(),
            pairwise_mask_seed(&ab, &other_ctx).as_bytes()
        );
        let cab = agree(a.c(), &b.public().c, 1).unwrap();
        let cba = agree(b.c(), &a.public().c, 0).unwrap();
        assert_eq!(*share_key(&cab, &ctx, 0, 1), *share_key(&cba, &ctx, 0, 1));
        assert_ne!(*share_key(&cab, &ctx, 0, 1), *share_key(&cab, &ctx, 1, 0));
        // The c and s agreements are independent.
        assert_ne!(cab.as_bytes(), ab.as_bytes());
    }

    #[test]
    fn low_order_public_keys_are_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = RoundKeys::generate(&mut rng);
        // The identity and the point of order 2 (u = 0, u = 1) give an all-zero output.
        for bad in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        }] {
            match agree(a.s(), &bad, 4) {
                Err(e) => assert_eq!(e, SecAggError::NonContributoryKey { party: 4 }),
                Ok(_) => panic!("low-order key accepted"),
            }
        }
    }

    #[test]
    fn secrets_print_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = RoundKeys::generate(&mut rng);
        let printed = format!("{keys:?} {keys:#?}");
        assert!(printed.contains("<redacted>"));
        for secret in [keys.c().to_bytes(), keys.s().to_bytes()] {
            assert!(!printed.contains(&format!("{secret:?}")));
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!printed.contains(&hex[..8]));
        }
        assert_eq!(public_of(&keys.s().to_bytes()), keys.public().s);
    }
}
