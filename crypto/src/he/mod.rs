//! Additively homomorphic encryption: Okamoto–Uchiyama and Paillier.
//!
//! - Okamoto and Uchiyama, "A new public-key cryptosystem as secure as factoring",
//!   Eurocrypt 1998, with the subgroup speed-up of Coron, Naccache and Paillier,
//!   "Accelerating Okamoto–Uchiyama's public-key cryptosystem", Electronics Letters 35(4),
//!   1999 ([`Scheme::Ou`], the default: 256-byte ciphertexts at 2048 bits, additions are
//!   multiplications modulo a 2048-bit `n`).
//! - Paillier, "Public-key cryptosystems based on composite degree residuosity classes",
//!   Eurocrypt 1999, with CRT decryption and the short-exponent randomness of Damgård,
//!   Jurik and Nielsen, IJIS 9(6), 2010 ([`Scheme::Paillier`]: 512-byte ciphertexts,
//!   additions modulo `n²`, a 2046-bit plaintext space).
//!
//! Built for the vertical protocols (not wired into jobs yet): the label holder
//! ([`SecretKey`]) encrypts per-row values (event indicators for WOE/IV, packed `(g, h)`
//! for SecureBoost), feature holders ([`PublicKey`]) sum them per bin
//! ([`PublicKey::sum_by_bin`], [`PublicKey::histograms`]), compress the sums
//! ([`PublicKey::compress`], SecureBoost+, arXiv 2110.10927 §4.2) and return them; the label
//! holder decrypts ([`SecretKey::decrypt_batch`]) and unpacks ([`Packer::unpack_many`]).
//!
//! ```
//! use fedcredit_crypto::he::{FixedScale, Packer, PublicKey, Scheme, SecretKey};
//! use rand::SeedableRng;
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! // label holder: packed (g, h) per row, at most 1000 rows per sum
//! let sk = SecretKey::generate(Scheme::Ou, 512, &mut rng)?; // 2048 (the default) in production
//! let (scale, packer) = (FixedScale::new(16), Packer::new(17, 2, 1000)?);
//! let rows = [(-0.25, 0.1875), (0.5, 0.25), (0.125, 0.0625)];
//! let pts = rows.iter().map(|&(g, h)| packer.pack_f64(&[g, h], scale)).collect::<Result<Vec<_>, _>>()?;
//! let (pk_bytes, ct_bytes) = (sk.public_key().to_bytes(), sk.public_key().write_ciphertexts(&sk.encrypt_batch(&pts, &mut rng)?));
//! // feature holder: validate, sum per bin, compress
//! let pk = PublicKey::from_bytes_with_min_bits(&pk_bytes, 512)?; // from_bytes (≥ 2048) in production
//! let hist = pk.sum_by_bin(&pk.read_ciphertexts(&ct_bytes)?, &[0u8, 1, 0], 2)?;
//! let packed = pk.compress(&hist, &packer)?;
//! // label holder: decrypt and unpack
//! let mut sums = Vec::new();
//! for (c, &g) in packed.iter().zip(&pk.compressed_groups(hist.len(), &packer)) {
//!     sums.extend(packer.unpack_f64(&sk.decrypt(c), g, scale)?);
//! }
//! assert_eq!(packed.len(), 1);
//! assert_eq!(sums, [-0.125, 0.25, 0.5, 0.25]); // bin 0: (g, h), bin 1: (g, h)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security levels
//!
//! | scheme | `bits` | NIST-equivalent strength | rests on |
//! |---|---|---|---|
//! | OU | 2048 (default) | 112 bits | factoring `n = p²q`; `|t| = |r| = 224` |
//! | OU | 3072 | 128 bits | factoring `n = p²q`; `|t| = |r| = 256` |
//! | Paillier | 2048 | 112 bits | decisional composite residuosity (DCR) |
//! | Paillier | 3072 | 128 bits | DCR |
//!
//! The strengths are NIST SP 800-57 Part 1 Rev. 5 (Table 2) for a factoring modulus of the
//! same size: the number field sieve's cost depends on `|n|`. Caveats:
//! - OU's `n = p²q` is not a NIST-standardised modulus shape; its rating is by analogy.
//!   No known method uses the square at these sizes (the lattice factoring of `p^r·q`,
//!   Boneh–Durfee–Howgrave-Graham, Crypto 1999, needs `r ≈ log p`; ECM cannot reach
//!   683-bit factors).
//! - The Coron–Naccache–Paillier subgroup puts a prime `t | p − 1` of `2λ` bits in the
//!   key and draws the randomness `r` with `2λ` bits; square-root attacks (baby-step
//!   giant-step or kangaroo on `r` for a guessed message, or on `t` to factor) cost
//!   `2^λ`. SecretFlow HEU uses the same `t` sizes but a 110-bit `r` at 2048 bits, which
//!   such an attack breaks in about 2^55 steps; we do not.
//! - Paillier's `α` has `⌈|n|/2⌉` bits as in Damgård–Jurik–Nielsen (and HEU).
//! - Keys below 2048 bits (allowed for tests) are rated 0; [`PublicKey::from_bytes`]
//!   refuses them ([`MIN_BITS`]).
//! - OU is malleable and its plaintexts live modulo the secret `p`: decrypting a
//!   ciphertext of a value `≥ p` and revealing the result reveals `p`. Never return raw
//!   decryptions of peer-supplied ciphertexts; [`Packer::unpack_many`] rejects sums
//!   outside the declared bounds, which is the check to apply. Neither scheme is
//!   CCA-secure; the protocols assume semi-honest peers.
//! - The arithmetic is not constant-time (sliding-window exponentiation by the secret
//!   `t` or `p − 1`, a data-dependent final subtraction, table lookups by secret digits).
//!   Peers see only message timing over the network; do not share a host with untrusted
//!   tenants.
//!
//! # Plaintexts
//!
//! Plaintexts are signed integers ([`Plaintext`]) with `|m| < 2^plaintext_bits` (681 bits
//! for OU-2048, 2046 for Paillier-2048). Negative values cost nothing extra: Paillier
//! encrypts `−m` as `1 + (n − m)·n`, OU as `(G⁻¹)^m` from a table built once per key; no
//! per-message inverse or negation. Decryption returns the centred representative.
//! [`FixedScale`] maps reals to integers; [`Packer`] puts several signed values in one
//! plaintext with headroom for `max_terms`-term sums, decoded by balanced digits so that
//! carries between slots are handled.
//!
//! # Arithmetic (chosen by measurement, see `crypto/benches/he.rs`)
//!
//! Ciphertexts are stored in Montgomery form, so an addition is one Montgomery
//! multiplication. Two kernels compute the same `a·b·R⁻¹ mod n`; `mont::Modulus` picks one
//! per modulus ([`kernel`] names it):
//! - `he/ifma.rs`, where the CPU has AVX-512 IFMA (52-bit multiply-accumulate, eight digits
//!   per vector; Gueron and Krasnov's almost-Montgomery multiplication, as OpenSSL's RSA
//!   uses it): 0.58–0.60 µs per 2048-bit multiplication on one core of this machine (AMD
//!   EPYC, 2 vCPUs, shared), 1.5 µs at 4096 bits. [`PublicKey::histograms`] at 2048 bits
//!   converts each row's ciphertext into digits once and keeps the per-bin products in
//!   digits (`ifma::DigitProducts`), so each addition is the vector steps alone: SecureBoost's
//!   feature-holder sums took 24.3 s per tree on 100k × 300 against 37.5 s one
//!   multiplication at a time (`fedcredit bench secureboost`).
//! - `he/mont.rs` elsewhere (or with `FEDCREDIT_HE_PORTABLE` set): CIOS with unrolled rows
//!   and a dedicated squaring, no `unsafe`: 1.35–1.4 µs at 2048 bits. `crypto-bigint` 0.7
//!   `BoxedMontyForm` takes 1.8 µs, `num-bigint` 0.5 multiply-and-`%` 2.7 µs (1408-bit, OU's
//!   `p²`: 0.62 / 0.88 / 1.4 µs; 4096-bit, Paillier's `n²`: 5.6 / 7.0 / 9.2 µs); criterion's
//!   wall-clock `mulmod` group shows the same order under load. A rolled loop or product
//!   scanning was 10–30 % slower.
//!
//! `num-bigint` is used only on public values (validation, one inverse per key,
//! [`PublicKey::neg`], the [`Plaintext`] type); key generation and every secret computation
//! use the limb arithmetic here so that secrets can be zeroized.
//!
//! # Measured (2048 bits, one core, thread CPU time, `he::bench::measure`)
//!
//! | operation | OU, IFMA | OU, portable | Paillier, IFMA | HEU OU / Paillier |
//! |---|---|---|---|---|
//! | encrypt, public key, 64-bit `m` | 22.1 µs | 48.5 µs | 211 µs | 27.8 µs / 814 µs |
//! | encrypt, key owner (CRT) | 16.2 µs | 20.6 µs | 178 µs | – |
//! | encrypt, pooled randomness (online) | 3.4 µs | 11 µs | 3.3 µs | – |
//! | add | 0.60 µs | 1.36 µs | 1.52 µs | 1.8 µs / 7.1 µs |
//! | scalar multiply, 64-bit scalar | 47.2 µs | 96.2 µs | 124 µs | 52.9 µs (HEU's scalars < 2^14) |
//! | scalar multiply, 14-bit scalar | 11.0 µs | 22.5 µs | 28.7 µs | |
//! | dot product, per 64-bit term ([`PublicKey::dot_u64`]) | 5.9 µs | 14 µs | 15.9 µs | |
//! | decrypt (CRT) | 117.5 µs | 156 µs | 1.42 ms | 245.8 µs / 8.7 ms |
//! | key generation | 30 ms | 33 ms | 59 ms | |
//!
//! HEU's OU encrypts with a 110-bit `r` (and reuses it incrementally); at the 224 bits
//! the security level needs, the public-key path costs 28 table multiplications, which the
//! portable kernel cannot do within HEU's time. The key owner (the label holder, who
//! encrypts in every protocol here) uses the CRT path.
//!
//! Memory: the public encryption tables are built on first use (OU 13 MB, Paillier
//! 17 MB at 2048 bits; [`PublicKey::table_bytes`]); the key owner's CRT tables take 24 MB
//! (OU, 12-bit windows for the randomness) or 17 MB (Paillier). A key that only adds
//! builds none.

mod batch;
pub mod bench;
mod encoding;
#[cfg(target_arch = "x86_64")]
mod ifma;
mod keys;
mod limbs;
mod mont;
mod ou;
mod paillier;
mod prime;
#[cfg(test)]
mod tests;

pub use batch::BinIndex;
pub use encoding::{FixedScale, Packer, Plaintext};
pub use keys::{Ciphertext, PublicKey, RandomnessPool, SecretKey};

/// Default modulus size.
pub const DEFAULT_BITS: u32 = 2048;
/// Smallest modulus [`PublicKey::from_bytes`] accepts from a peer.
pub const MIN_BITS: u32 = 2048;
/// Largest modulus accepted anywhere (bounds the work a peer's key can cause).
pub const MAX_BITS: u32 = 8192;

/// Which cryptosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Okamoto–Uchiyama with the Coron–Naccache–Paillier subgroup.
    Ou,
    /// Paillier with `g = n + 1` and Damgård–Jurik–Nielsen randomness.
    Paillier,
}

impl Scheme {
    fn tag(self) -> u8 {
        match self {
            Scheme::Ou => 1,
            Scheme::Paillier => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Scheme::Ou),
            2 => Some(Scheme::Paillier),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Ou => "ou",
            Scheme::Paillier => "paillier",
        })
    }
}

impl std::str::FromStr for Scheme {
    type Err = HeError;

    fn from_str(s: &str) -> Result<Self, HeError> {
        match s.to_ascii_lowercase().as_str() {
            "ou" | "okamoto-uchiyama" => Ok(Scheme::Ou),
            "paillier" => Ok(Scheme::Paillier),
            _ => Err(HeError::UnknownScheme(s.to_string())),
        }
    }
}

/// The modular-multiplication kernel in use: `"avx512-ifma"` where the CPU has AVX-512
/// IFMA (unless `FEDCREDIT_HE_PORTABLE` is set), else `"portable"` (unrolled 64-bit CIOS).
pub fn kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if ifma::available() {
        return "avx512-ifma";
    }
    "portable"
}

/// NIST-equivalent security strength (bits) of a modulus size; 0 below 2048.
pub fn security_bits(bits: u32) -> u32 {
    match bits {
        7680.. => 192,
        3072.. => 128,
        2048.. => 112,
        _ => 0,
    }
}

/// Everything that can go wrong, naming the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeError {
    /// Scheme name not recognised.
    #[error("unknown HE scheme {0:?} (expected \"ou\" or \"paillier\")")]
    UnknownScheme(String),
    /// Modulus size not supported.
    #[error("{scheme} modulus of {bits} bits is not supported: {why}")]
    BadKeySize {
        /// Scheme.
        scheme: Scheme,
        /// Requested size.
        bits: u32,
        /// Why.
        why: &'static str,
    },
    /// A peer's key is below the local minimum.
    #[error("{scheme} key of {bits} bits is below the minimum of {min} bits")]
    KeyTooSmall {
        /// Scheme.
        scheme: Scheme,
        /// Size received.
        bits: u32,
        /// Local minimum.
        min: u32,
    },
    /// Serialized key or ciphertext has the wrong framing.
    #[error("{what}: {why}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Why it was rejected.
        why: String,
    },
    /// A key element failed validation.
    #[error("invalid {scheme} public key: {what} {why}")]
    BadPublicKey {
        /// Scheme.
        scheme: Scheme,
        /// Which element.
        what: &'static str,
        /// Why.
        why: &'static str,
    },
    /// A secret key does not match its public key or is malformed.
    #[error("invalid {scheme} secret key: {why}")]
    BadSecretKey {
        /// Scheme.
        scheme: Scheme,
        /// Why.
        why: &'static str,
    },
    /// A ciphertext (index `index` in a batch) is not a valid ciphertext for this key.
    #[error("ciphertext {index} rejected: {why}")]
    BadCiphertext {
        /// Position in the batch (0 for a single ciphertext).
        index: usize,
        /// Why.
        why: &'static str,
    },
    /// Plaintext too large for the key.
    #[error("plaintext of {bits} bits exceeds the key's {max_bits}-bit signed plaintext space")]
    PlaintextTooLarge {
        /// Magnitude bits of the value.
        bits: u64,
        /// Capacity.
        max_bits: u32,
    },
    /// Packer parameters out of range.
    #[error("packer: {0}")]
    BadPacker(String),
    /// Packed layout does not fit the key.
    #[error("packed layout needs {needed} plaintext bits; the key has {available}")]
    PackingTooLarge {
        /// Bits needed.
        needed: u64,
        /// Bits available.
        available: u32,
    },
    /// A value to pack is out of range.
    #[error("slot {slot}: value {value} needs more than {value_bits} bits")]
    ValueTooLarge {
        /// Slot index.
        slot: usize,
        /// The value.
        value: i128,
        /// Declared value bits.
        value_bits: u32,
    },
    /// A decoded slot exceeds what `max_terms` sums can reach (overflow or tampering).
    #[error("slot {slot}: decoded sum {value} exceeds the bound {bound} for {max_terms} terms")]
    SlotOverflow {
        /// Slot index.
        slot: usize,
        /// Decoded value.
        value: i128,
        /// Largest legitimate magnitude.
        bound: i128,
        /// Declared term count.
        max_terms: u64,
    },
    /// The plaintext has bits beyond the packed slots.
    #[error("decoded plaintext has data beyond its {slots} slots")]
    PackedOverflow {
        /// Slots decoded.
        slots: usize,
    },
    /// A real value cannot be encoded.
    #[error("cannot encode {value} at {frac_bits} fractional bits in 63 bits")]
    FixedPointRange {
        /// The value.
        value: f64,
        /// Scale.
        frac_bits: u32,
    },
    /// Lengths of parallel inputs differ.
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// What.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A bin index is out of range.
    #[error("row {row} has bin {bin}, but there are {n_bins} bins")]
    BinOutOfRange {
        /// Row.
        row: usize,
        /// Bin.
        bin: usize,
        /// Bin count.
        n_bins: usize,
    },
    /// A row index is out of range.
    #[error("row index {row} is out of range for {len} ciphertexts")]
    RowOutOfRange {
        /// Row.
        row: usize,
        /// Ciphertext count.
        len: usize,
    },
    /// The randomness pool is used up or belongs to another key.
    #[error("randomness pool: {0}")]
    Pool(&'static str),
}
