//! Sealed party-to-party channels: what two parties send each other through a relay that can
//! neither read nor forge it.
//!
//! Each party holds one X25519 key pair per job ([`ChannelSecret`], RFC 7748); its public key
//! travels signed with the party's certificate key, and the signature is checked by the peer
//! (that part lives in `fedcredit_federation::channel`, which knows about certificates). From
//! the agreement `X25519(a, B)` both ends derive two direction keys with HKDF-SHA256
//! (RFC 5869), salted with a context the caller fixes (the job), with info binding the
//! ordered pair of names. Messages are sealed with ChaCha20-Poly1305 (RFC 8439): the nonce is
//! the stream id (chosen at random per stream by the sender, 64 bits) followed by the
//! message's 32-bit index within the stream, and the associated data binds context, sender,
//! recipient, stream, index and the last-message flag, so a relayed message that is altered,
//! re-addressed, reordered, replayed into another stream or cut short fails to open.
//!
//! The same agreement also gives the pair's symmetric root for secure aggregation
//! ([`PairKeys::secagg_root`]), so a round of secure aggregation needs no key exchange of its
//! own.
//!
//! Direction keys make the nonce spaces of `a → b` and `b → a` disjoint; random stream ids
//! make a repeated nonce under one key a 2^-64-per-pair event even across restarts of a party
//! that kept its channel secret.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const INFO: &[u8] = b"fedcredit channel v1";
const SECAGG_INFO: &[u8] = b"fedcredit channel secagg root v1";
const AD_LABEL: &[u8] = b"fedcredit sealed v1";
/// Bytes the seal adds to a plaintext (the Poly1305 tag).
pub const SEAL_OVERHEAD: usize = 16;

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The peer's public key is not 32 bytes.
    #[error("a channel public key has 32 bytes, got {0}")]
    KeyLength(usize),
    /// The agreement with the peer's key is all zeros (a low-order point).
    #[error("the peer's channel key is of low order (non-contributory X25519 agreement)")]
    NonContributory,
    /// A party cannot open a channel to itself.
    #[error("a channel needs two distinct parties")]
    SameParty,
    /// The message does not authenticate under the pair's key with this header.
    #[error(
        "sealed message {stream:016x}/{seq} from {from} to {to} failed authentication (altered, re-addressed or out of order)"
    )]
    Open {
        /// Claimed sender.
        from: String,
        /// Recipient.
        to: String,
        /// Stream id.
        stream: u64,
        /// Index within the stream.
        seq: u32,
    },
    /// The plaintext is too long for one ChaCha20-Poly1305 message.
    #[error("plaintext too long to seal")]
    TooLong,
}

/// A party's secret channel key for one job. Zeroized on drop; `Debug` prints `<redacted>`.
pub struct ChannelSecret(StaticSecret);

impl ZeroizeOnDrop for ChannelSecret {}

impl std::fmt::Debug for ChannelSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelSecret(<redacted>)")
    }
}

impl ChannelSecret {
    /// A fresh secret from a cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(StaticSecret::random_from_rng(rng))
    }

    /// The secret's bytes, for a checkpoint the party keeps to itself.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// A secret saved with [`ChannelSecret::to_bytes`].
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let s = Self(StaticSecret::from(bytes));
        bytes.zeroize();
        s
    }

    /// The public key to publish (signed).
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// The two direction keys between `me` (this secret) and `peer` (its public key) under
    /// `context`.
    ///
    /// # Errors
    /// [`ChannelError`] for a malformed or low-order peer key, or `me == peer`.
    pub fn pair(
        &self,
        context: &[u8],
        me: &str,
        peer: &str,
        peer_public: &[u8],
    ) -> Result<PairKeys, ChannelError> {
        if me == peer {
            return Err(ChannelError::SameParty);
        }
        let pk: [u8; 32] =
            peer_public.try_into().map_err(|_| ChannelError::KeyLength(peer_public.len()))?;
        let shared = self.0.diffie_hellman(&PublicKey::from(pk));
        if !shared.was_contributory() {
            return Err(ChannelError::NonContributory);
        }
        let hk = Hkdf::<Sha256>::new(Some(context), shared.as_bytes());
        let derive = |from: &str, to: &str| -> Zeroizing<[u8; 32]> {
            let mut info = Vec::with_capacity(INFO.len() + from.len() + to.len() + 16);
            info.extend_from_slice(INFO);
            for name in [from, to] {
                info.extend_from_slice(&(name.len() as u64).to_le_bytes());
                info.extend_from_slice(name.as_bytes());
            }
            let mut key = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's output limit.
            let _ = hk.expand(&info, key.as_mut_slice());
            key
        };
        // The secure-aggregation root is symmetric: both ends derive it from the ordered pair.
        let (lo, hi) = if me < peer { (me, peer) } else { (peer, me) };
        let mut info = SECAGG_INFO.to_vec();
        for name in [lo, hi] {
            info.extend_from_slice(&(name.len() as u64).to_le_bytes());
            info.extend_from_slice(name.as_bytes());
        }
        let mut root = Zeroizing::new([0u8; 32]);
        let _ = hk.expand(&info, root.as_mut_slice());
        Ok(PairKeys {
            context: context.to_vec(),
            me: me.to_string(),
            peer: peer.to_string(),
            send: derive(me, peer),
            recv: derive(peer, me),
            secagg_root: root,
        })
    }
}

/// The keys of one pair of parties, from one end's point of view.
pub struct PairKeys {
    context: Vec<u8>,
    me: String,
    peer: String,
    send: Zeroizing<[u8; 32]>,
    recv: Zeroizing<[u8; 32]>,
    secagg_root: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairKeys {{ {} <-> {}, keys: <redacted> }}", self.me, self.peer)
    }
}

fn associated_data(
    context: &[u8],
    from: &str,
    to: &str,
    stream: u64,
    seq: u32,
    last: bool,
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + context.len() + from.len() + to.len() + 40);
    ad.extend_from_slice(AD_LABEL);
    for part in [context, from.as_bytes(), to.as_bytes()] {
        ad.extend_from_slice(&(part.len() as u64).to_le_bytes());
        ad.extend_from_slice(part);
    }
    ad.extend_from_slice(&stream.to_le_bytes());
    ad.extend_from_slice(&seq.to_le_bytes());
    ad.push(u8::from(last));
    ad
}

fn nonce(stream: u64, seq: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&stream.to_le_bytes());
    n[8..].copy_from_slice(&seq.to_le_bytes());
    Nonce::from(n)
}

impl PairKeys {
    /// The peer of this pair.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The pair's root for secure aggregation in this job (the same at both ends), from which
    /// every round's pairwise mask seed and share keys are derived.
    pub fn secagg_root(&self) -> crate::secagg::PairRoot {
        crate::secagg::PairRoot::from_bytes(*self.secagg_root)
    }

    /// Seals message `seq` of stream `stream` to the peer.
    ///
    /// # Errors
    /// [`ChannelError::TooLong`] for a plaintext beyond the cipher's limit.
    pub fn seal(
        &self,
        stream: u64,
        seq: u32,
        last: bool,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ChannelError> {
        let cipher = ChaCha20Poly1305::new_from_slice(self.send.as_slice())
            .map_err(|_| ChannelError::TooLong)?;
        let ad = associated_data(&self.context, &self.me, &self.peer, stream, seq, last);
        cipher
            .encrypt(&nonce(stream, seq), Payload { msg: plaintext, aad: &ad })
            .map_err(|_| ChannelError::TooLong)
    }

    /// Opens message `seq` of stream `stream` from the peer.
    ///
    /// # Errors
    /// [`ChannelError::Open`] when it does not authenticate with this header.
    pub fn open(
        &self,
        stream: u64,
        seq: u32,
        last: bool,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ChannelError> {
        let err =
            || ChannelError::Open { from: self.peer.clone(), to: self.me.clone(), stream, seq };
        let cipher = ChaCha20Poly1305::new_from_slice(self.recv.as_slice()).map_err(|_| err())?;
        let ad = associated_data(&self.context, &self.peer, &self.me, stream, seq, last);
        cipher
            .decrypt(&nonce(stream, seq), Payload { msg: ciphertext, aad: &ad })
            .map(Zeroizing::new)
            .map_err(|_| err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn pairs() -> (PairKeys, PairKeys) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = ChannelSecret::generate(&mut rng);
        let b = ChannelSecret::generate(&mut rng);
        (
            a.pair(b"job1", "tax", "bank", &b.public()).unwrap(),
            b.pair(b"job1", "bank", "tax", &a.public()).unwrap(),
        )
    }

    #[test]
    fn sealed_messages_open_only_unaltered_and_in_place() {
        let (tax, bank) = pairs();
        let ct = tax.seal(7, 0, false, b"histograms").unwrap();
        assert_eq!(ct.len(), 10 + SEAL_OVERHEAD);
        assert_eq!(bank.open(7, 0, false, &ct).unwrap().as_slice(), b"histograms");
        // Altered bytes, another stream, index or last flag, or the wrong direction.
        let mut bad = ct.clone();
        bad[3] ^= 1;
        assert!(bank.open(7, 0, false, &bad).is_err());
        assert!(bank.open(8, 0, false, &ct).is_err());
        assert!(bank.open(7, 1, false, &ct).is_err());
        assert!(bank.open(7, 0, true, &ct).is_err());
        assert!(tax.open(7, 0, false, &ct).is_err(), "the sender's own message in reverse");
        // Both ends hold the same secure-aggregation root.
        assert!(tax.secagg_root() == bank.secagg_root());
        assert_eq!(format!("{:?}", tax.secagg_root()), "PairRoot(<redacted>)");
    }

    #[test]
    fn a_third_party_or_another_job_cannot_open() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = ChannelSecret::generate(&mut rng);
        let b = ChannelSecret::generate(&mut rng);
        let c = ChannelSecret::generate(&mut rng);
        let ab = a.pair(b"job1", "a", "b", &b.public()).unwrap();
        let ct = ab.seal(1, 0, true, b"x").unwrap();
        // c re-addressed as if from a to c, or b under another job context.
        let ca = c.pair(b"job1", "c", "a", &a.public()).unwrap();
        assert!(ca.open(1, 0, true, &ct).is_err());
        let ba_other = b.pair(b"job2", "b", "a", &a.public()).unwrap();
        assert!(ba_other.open(1, 0, true, &ct).is_err());
        let ba = b.pair(b"job1", "b", "a", &a.public()).unwrap();
        assert_eq!(ba.open(1, 0, true, &ct).unwrap().as_slice(), b"x");
    }

    #[test]
    fn bad_peer_keys_are_refused_and_secrets_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = ChannelSecret::generate(&mut rng);
        assert_eq!(a.pair(b"j", "a", "b", &[0u8; 31]).unwrap_err(), ChannelError::KeyLength(31));
        assert_eq!(a.pair(b"j", "a", "b", &[0u8; 32]).unwrap_err(), ChannelError::NonContributory);
        assert_eq!(a.pair(b"j", "a", "a", &a.public()).unwrap_err(), ChannelError::SameParty);
        let back = ChannelSecret::from_bytes(*a.to_bytes());
        assert_eq!(back.public(), a.public());
        assert_eq!(format!("{a:?}"), "ChannelSecret(<redacted>)");
    }
}
