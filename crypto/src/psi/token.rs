//! Server-aided PSI tokens (Kamara, Mohassel, Raykova and Sadeghian, "Scaling Private Set
//! Intersection to Billion-Element Sets", FC 2014, the semi-honest server-aided protocol).
//!
//! The parties share a 32-byte key `K`, agreed over their authenticated party-to-party
//! channel (e.g. X25519), and derive a per-job [`TokenKey`] from it with HKDF-SHA256
//! (RFC 5869). Each party sends the coordinator `F_K(x)` for every id `x`, the coordinator
//! intersects the token sets ([`intersect_tokens`]) and returns the common tokens, and
//! each party maps them to its rows ([`super::align_rows`]). The coordinator, which does
//! not hold `K` and does not collude with a party, sees pseudorandom values: the set sizes
//! and the intersection size, not an id. The ids are structured 18-character codes, so an
//! unkeyed hash would fall to a dictionary; a keyed PRF does not.
//!
//! # The PRF and the token length
//!
//! `F_K(x) = HMAC-SHA256(K, x)` (RFC 2104) truncated to 16 bytes: HMAC is a PRF if the
//! SHA-256 compression function is one, truncation keeps it a PRF, and with the inner and
//! outer pads of `K` hashed once per key an 18-byte id costs two SHA-256 compressions
//! (SHA-NI where the CPU has it).
//!
//! Two distinct ids give equal tokens with probability `2^-128`. With `n_a` and `n_b` ids
//! the chance of any false match between the two sets is at most `n_a·n_b / 2^128`: for
//! 10M × 10M ids that is `10^14 / 3.4·10^38 ≈ 3·10^-25`, and even a collision anywhere
//! among 20M tokens (birthday bound `n²/2^129`) stays below `6·10^-25`. Eight bytes would
//! give `5·10^-6` for 10M × 10M, too close for a financial join; 16 bytes halve the
//! coordinator's traffic against the full 32.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rayon::prelude::*;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::intersect::intersect_many;

/// A server-aided PSI token: `HMAC-SHA256(K, id)` truncated to 16 bytes.
pub type Token = [u8; 16];

/// Salt of [`TokenKey::derive`]: names the protocol and its version.
const SALT: &[u8] = b"fedcredit-psi-token-v1";

/// Ids per unit of work handed to a thread.
const TOKEN_BATCH: usize = 4096;

/// The parties' shared token key for one job. Zeroized on drop; `Debug` prints
/// `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// `HKDF-SHA256(salt = "fedcredit-psi-token-v1", IKM = shared_secret, info = context)`.
    ///
    /// `context` must name the job and its roster (as the secure-aggregation round context
    /// does), so that tokens of two jobs cannot be linked.
    pub fn derive(shared_secret: &[u8; 32], context: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), shared_secret);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 · 32.
        hk.expand(context, &mut key).unwrap_or_else(|_| unreachable!("32-byte HKDF output"));
        Self(key)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

/// Tokens of one chunk of ids, in the input order, computed on the rayon pool.
pub fn tokens<I: AsRef<[u8]> + Sync>(ids: &[I], key: &TokenKey) -> Vec<Token> {
    // Pads hashed once; each id then clones the keyed state.
    let keyed = key.mac();
    let mut out = vec![[0u8; 16]; ids.len()];
    out.par_chunks_mut(TOKEN_BATCH).zip(ids.par_chunks(TOKEN_BATCH)).for_each(|(out, ids)| {
        for (slot, id) in out.iter_mut().zip(ids) {
            let mut mac = keyed.clone();
            mac.update(id.as_ref());
            let tag = mac.finalize().into_bytes();
            slot.copy_from_slice(&tag[..16]);
        }
    });
    out
}

/// The coordinator's step: the tokens present in every set, sorted ascending (the agreed
/// order of the aligned rows). Handles unbalanced sets; see [`super::intersect`].
pub fn intersect_tokens(sets: &[&[Token]]) -> Vec<Token> {
    intersect_many(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_truncated_hmac_sha256() {
        // RFC 4231 test case 2 checks the HMAC we build on: key "Jefe".
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("any length");
        mac.update(b"what do ya want for nothing?");
        let tag = mac.finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

        let key = TokenKey::derive(&[7u8; 32], b"job");
        let ids = ["91350100M000100Y43", "91110000802100433B"];
        let got = tokens(&ids, &key);
        for (id, t) in ids.iter().zip(&got) {
            let mut mac = key.mac();
            mac.update(id.as_bytes());
            assert_eq!(t[..], mac.finalize().into_bytes()[..16]);
        }
    }

    #[test]
    fn keys_depend_on_secret_and_context_and_print_redacted() {
        let ids = ["91350100M000100Y43"];
        let a = tokens(&ids, &TokenKey::derive(&[1u8; 32], b"job-1"));
        assert_ne!(a, tokens(&ids, &TokenKey::derive(&[1u8; 32], b"job-2")));
        assert_ne!(a, tokens(&ids, &TokenKey::derive(&[2u8; 32], b"job-1")));
        assert_eq!(a, tokens(&ids, &TokenKey::derive(&[1u8; 32], b"job-1")));
        assert_eq!(format!("{:?}", TokenKey::derive(&[1u8; 32], b"x")), "TokenKey(<redacted>)");
    }
}
