//! Private set intersection (PSI): the pure, batched cryptographic core.
//!
//! Two modes, both keyed so that the structured 18-character unified social credit codes
//! cannot be recovered by a dictionary over the code space:
//!
//! - **ECDH-PSI** ([`ecdh`]), after Huberman, Franklin and Hogg, "Enhancing privacy and
//!   trust in electronic communities" (EC 1999), over the prime-order group ristretto255
//!   (RFC 9496). Each id is hashed to the group with `expand_message_xmd(SHA-512)` under a
//!   per-job domain separation tag (RFC 9380 §5.3.1, RFC 9496 §4.3.4, [`hash`]), then raised
//!   to every party's secret key. Because `k_a·(k_b·H(x)) = k_b·(k_a·H(x))`, the fully
//!   blinded values of a common id are equal whatever the order of the keys, and under DDH
//!   in ristretto255 the values of the other ids look random to everyone.
//! - **Server-aided PSI** ([`token`]), after Kamara, Mohassel, Raykova and Sadeghian,
//!   "Scaling Private Set Intersection to Billion-Element Sets" (FC 2014): the parties
//!   share a key, send 16-byte keyed-hash tokens `HMAC-SHA256(K, id)` to the coordinator,
//!   and the coordinator intersects token sets it cannot invert (it does not hold `K` and
//!   does not collude with a party).
//!
//! [`intersect`] holds the set operations both modes share (k-way intersection of
//! unbalanced sets, mapping back to one's own rows) and the **agreed order** of the
//! aligned rows; [`measure`] holds the throughput measurement behind the `psi` criterion
//! bench (`cargo bench -p fedcredit-crypto --bench psi`).
//!
//! This module does no I/O. The protocol roles (who sends what to whom through the
//! coordinator) are to live in `fedcredit_federation` and are not built yet; every function
//! here works on one chunk of a set, so callers stream millions of ids with bounded memory.
//! Work inside a chunk is spread over the rayon thread pool (both cores); run a call inside
//! [`rayon::ThreadPool::install`] to bound it.
//!
//! # Two-party ECDH protocol (what [`ecdh`] is built for)
//!
//! Party A holds ids `a_i`, party B ids `b_j`, both agree on the job's [`Dst`].
//! 1. A draws a random permutation `π_A` of its rows ([`random_permutation`]) and sends
//!    `k_A·H(a_π(i))` ([`blind_ids`]) in that order; B does the same with `π_B`.
//!    The permutation keeps the peer from learning A's row order: the peer later learns
//!    the *positions* of the common ids in what it received, which are then random.
//! 2. Each party reblinds what it received with its own key ([`reblind`]) and sends it
//!    back in the order received. A now holds `F_A = k_B·k_A·H(a)` for its own ids (in its
//!    order) and `F_B` for B's; B symmetrically.
//! 3. Each party calls [`align_rows`] (or [`intersect_indices`]) with its own fully
//!    blinded values and the peer's, maps positions through its permutation, and obtains
//!    its rows of the intersection in the [agreed order](intersect#agreed-order).
//!
//! Cost per party: `n_own` hashes to the group, `n_own + n_peer` constant-time scalar
//! multiplications, `n_peer` decompressions.
//!
//! # Three or more parties
//!
//! With `k ≥ 3` parties, a party that held two fully blinded sets would learn their
//! pairwise intersection, which is more than the k-way intersection. So each owner
//! finishes its own set ([`PsiKey::finishing_key`]):
//! 1. Owner `i` blinds its permuted ids with an ephemeral key `r_i`.
//! 2. The set visits every other party once ([`ring_route`]); each reblinds it with its
//!    key `k_j` and passes it on, in the order received.
//! 3. Back at the owner, one more reblind with `k_i / r_i` turns it into
//!    `F_i = (Π_j k_j)·H(x)`; no other party ever holds `F_i`.
//! 4. Each owner sends its `F_i`, sorted, to the coordinator, which computes the k-way
//!    intersection ([`intersect_many`]) of values it cannot link to ids and returns it;
//!    each owner maps it to rows with [`align_rows`].
//!
//! Each set then goes through `k + 1` scalar multiplications instead of `k`. The
//! coordinator learns the set sizes and the sizes of all partial intersections (as in the
//! server-aided mode), never an id.

pub mod ecdh;
pub mod hash;
pub mod intersect;
pub mod measure;
pub mod token;

#[cfg(test)]
mod protocol_tests;

pub use ecdh::{BlindedPoint, PsiKey, blind_ids, random_permutation, reblind, ring_route};
pub use hash::{Dst, expand_message_xmd_sha512};
pub use intersect::{align_rows, intersect_indices, intersect_many};
pub use measure::{PsiThroughput, measure_throughput, synthetic_ids};
pub use token::{Token, TokenKey, intersect_tokens, tokens};

/// A chunk size that keeps both cores busy and memory bounded: 65,536 ids make 2 MiB of
/// blinded points (1 MiB of tokens) per call.
pub const RECOMMENDED_CHUNK: usize = 1 << 16;

/// Errors of the PSI primitives. Indices are positions within the slice passed to the
/// failing call; a caller streaming chunks adds its chunk offset with [`PsiError::offset`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsiError {
    /// A received value is not the canonical encoding of a ristretto255 element.
    #[error("blinded point {index} is not a canonical ristretto255 encoding")]
    InvalidPoint {
        /// Position of the value in the received slice.
        index: usize,
    },
    /// A received value encodes the identity, which no honest party ever sends
    /// (`k·H(x)` is the identity with negligible probability).
    #[error("blinded point {index} is the identity element")]
    IdentityPoint {
        /// Position of the value in the received slice.
        index: usize,
    },
    /// A domain separation tag must not be empty (RFC 9380 §3.1).
    #[error("the domain separation tag is empty")]
    EmptyDst,
    /// `expand_message_xmd` can produce at most 255 hash blocks, and at most 65,535 bytes.
    #[error("expand_message_xmd cannot produce {len} bytes (at most 16,320 with SHA-512)")]
    OutputTooLong {
        /// The requested length.
        len: usize,
    },
}

impl PsiError {
    /// The same error with its index shifted by `by` (the offset of the chunk in the
    /// caller's stream).
    #[must_use]
    pub fn offset(self, by: usize) -> Self {
        match self {
            Self::InvalidPoint { index } => Self::InvalidPoint { index: index + by },
            Self::IdentityPoint { index } => Self::IdentityPoint { index: index + by },
            other => other,
        }
    }
}
