//! Encryption of share bundles from one party to another, relayed by the server.
//!
//! Bonawitz et al. (CCS 2017, §4, round ShareKeys) encrypt the shares a party hands its
//! neighbours so the server that relays them learns nothing. Here each bundle holds one Shamir
//! share of the sender's self-mask seed and is sealed with ChaCha20-Poly1305 (RFC 8439) under
//! the direction-specific round key of the pair ([`super::keys::PairRoot::share_key`]). Each
//! key seals one message, so the nonce is fixed at zero. The associated data is
//! `"fedcredit secagg share v2" || round context || u || v`, binding the ciphertext to its
//! sender, recipient, job, round and attempt: a ciphertext replayed to another party or into
//! another round fails authentication.
//!
//! Plaintext: the 32-byte value of the share (its x-coordinate is `v + 1`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use zeroize::Zeroizing;

use super::{PartyIndex, RoundContext, SecAggError};

const AD_LABEL: &[u8] = b"fedcredit secagg share v2";
/// Plaintext length of a share bundle.
pub const BUNDLE_LEN: usize = 32;
/// Ciphertext length of a share bundle (plaintext + 16-byte tag).
pub const SEALED_BUNDLE_LEN: usize = BUNDLE_LEN + 16;

fn associated_data(context: &RoundContext, from: PartyIndex, to: PartyIndex) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + 36);
    ad.extend_from_slice(AD_LABEL);
    ad.extend_from_slice(context.as_bytes());
    ad.extend_from_slice(&from.to_le_bytes());
    ad.extend_from_slice(&to.to_le_bytes());
    ad
}

/// Encrypts a bundle from `from` to `to` under the direction-specific `key`.
pub(crate) fn seal(
    key: &[u8; 32],
    context: &RoundContext,
    from: PartyIndex,
    to: PartyIndex,
    plaintext: &[u8],
) -> Result<Vec<u8>, SecAggError> {
    let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| SecAggError::InvalidParam {
        name: "share key",
        reason: "not 32 bytes".into(),
    })?;
    let ad = associated_data(context, from, to);
    cipher
        .encrypt(&Nonce::default(), Payload { msg: plaintext, aad: &ad })
        .map_err(|_| SecAggError::InvalidParam { name: "share bundle", reason: "too long".into() })
}

/// Decrypts and authenticates a bundle that claims to come from `from` for `to`.
pub(crate) fn open(
    key: &[u8; 32],
    context: &RoundContext,
    from: PartyIndex,
    to: PartyIndex,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecAggError> {
    let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| SecAggError::InvalidParam {
        name: "share key",
        reason: "not 32 bytes".into(),
    })?;
    let ad = associated_data(context, from, to);
    cipher
        .decrypt(&Nonce::default(), Payload { msg: ciphertext, aad: &ad })
        .map(Zeroizing::new)
        .map_err(|_| SecAggError::Decryption { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_binding_is_checked() {
        let key = [5u8; 32];
        let ctx = RoundContext([1; 32]);
        let msg = [42u8; BUNDLE_LEN];
        let ct = seal(&key, &ctx, 2, 3, &msg).unwrap();
        assert_eq!(ct.len(), SEALED_BUNDLE_LEN);
        assert_eq!(open(&key, &ctx, 2, 3, &ct).unwrap().as_slice(), &msg);

        let denied = SecAggError::Decryption { from: 2, to: 3 };
        // Tampered ciphertext or tag.
        for i in [0, BUNDLE_LEN - 1, BUNDLE_LEN, SEALED_BUNDLE_LEN - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&key, &ctx, 2, 3, &bad).unwrap_err(), denied);
        }
        // Truncated.
        assert_eq!(open(&key, &ctx, 2, 3, &ct[..10]).unwrap_err(), denied);
        // Wrong round context, sender, recipient or key.
        assert!(open(&key, &RoundContext([2; 32]), 2, 3, &ct).is_err());
        assert!(open(&key, &ctx, 4, 3, &ct).is_err());
        assert!(open(&key, &ctx, 2, 4, &ct).is_err());
        assert!(open(&[6; 32], &ctx, 2, 3, &ct).is_err());
    }
}
