//! Exponential ElGamal over ristretto255: additively homomorphic encryption of small
//! integers, for sums that stay small (event counts of federated WOE/IV).
//!
//! - T. ElGamal, "A public key cryptosystem and a signature scheme based on discrete
//!   logarithms", IEEE Trans. Information Theory 31(4), 1985 (Crypto '84): a ciphertext of
//!   a group element `M` under the key `H = x·G` is `(r·G, M + r·H)`.
//! - The exponential ("lifted") variant encrypts `m·G` instead of a group element
//!   (Cramer, Gennaro and Schoenmakers, "A secure and optimally efficient multi-authority
//!   election scheme", Eurocrypt 1997, §2.3), so adding ciphertexts component-wise adds
//!   the plaintexts: `(r₁G, m₁G + r₁H) + (r₂G, m₂G + r₂H) = ((r₁+r₂)G, (m₁+m₂)G + (r₁+r₂)H)`.
//! - The group is ristretto255 (RFC 9496; curve25519-dalek), prime order
//!   `ℓ ≈ 2^252`: about 128-bit security against the best known discrete-log attack
//!   (Pollard rho, `√ℓ`), IND-CPA under the decisional Diffie–Hellman assumption.
//!
//! # Limits (read before using it elsewhere)
//!
//! - **Only small plaintexts decrypt.** Decryption yields `m·G`; recovering `m` is a
//!   discrete logarithm, done here by baby-step giant-step (Shanks 1971) with a table of
//!   up to 2^16 baby steps ([`DlogTable`]): a sum up to `max` costs `max / 2^16` giant
//!   steps (one addition and one encoding each, ≈ 6 µs). Fine for counts bounded by a
//!   row count; useless for fixed-point gradients or anything near 2^40. Plaintexts are
//!   non-negative integers mod `ℓ`; a caller states the largest sum it expects and
//!   [`SecretKey::decrypt`] refuses anything above it.
//! - Malleable, not CCA-secure: the protocols assume semi-honest peers. A party returning
//!   sums of a peer's ciphertexts must [`PublicKey::rerandomize`] them: the key owner
//!   chose every `r` and could otherwise test which rows a small sum contains.
//! - Multiplications by the secret `x` and by the randomness use curve25519-dalek's
//!   constant-time routines; the discrete logarithm of a decrypted sum is not
//!   constant-time (it reveals `m`, which the key owner learns anyway, through timing).
//!
//! # Encodings and validation
//!
//! A public key is a 32-byte ristretto255 encoding; a ciphertext two of them, 64 bytes.
//! [`PublicKey::from_bytes`] refuses non-canonical encodings and the identity (a key of 0
//! would make every ciphertext readable by anyone); [`read_ciphertexts`] refuses
//! non-canonical encodings, naming the first bad ciphertext. The identity is a valid
//! ciphertext component (an empty sum).
//!
//! # Speed (2 cores of the shared AMD EPYC machine; [`bench::measure`], one core)
//!
//! A ciphertext addition is two point additions (≈ 0.55 µs), against 1.38 µs for a
//! 2048-bit Okamoto–Uchiyama addition; a ciphertext is 64 bytes, not 256. The key owner
//! encrypts with two constant-time fixed-base multiplications (`r·G` and `(x·r + m)·G`,
//! both with dalek's basepoint table) and encodes a whole batch with one shared inversion
//! (`double_and_compress_batch` on halved scalars, as in [`crate::psi`]). Decoding a
//! received ciphertext (two inverse square roots, ≈ 12 µs) is the receiver's fixed cost
//! per row. See `crypto/benches/elgamal.rs` for the comparison with OU on the WOE workload.

pub mod bench;
mod dlog;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity};
use rand::{CryptoRng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use dlog::DlogTable;

use crate::he::BinIndex;

/// Bytes of an encoded public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes of an encoded ciphertext.
pub const CIPHERTEXT_BYTES: usize = 64;
/// Security strength in bits (Pollard rho on a 252-bit prime-order group).
pub const SECURITY_BITS: u32 = 128;

/// Ciphertexts per unit of parallel work (one shared inversion per batch when encoding).
const BATCH: usize = 256;

/// Everything that can go wrong, naming the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElGamalError {
    /// A peer's public key is unusable.
    #[error("invalid ElGamal public key: {0}")]
    BadPublicKey(&'static str),
    /// A serialized secret key is not a canonical non-zero scalar.
    #[error("invalid ElGamal secret key")]
    BadSecretKey,
    /// A ciphertext (position `index` in a batch) is not two canonical encodings.
    #[error("ciphertext {index} rejected: {why}")]
    BadCiphertext {
        /// Position in the batch.
        index: usize,
        /// Why.
        why: &'static str,
    },
    /// Lengths of inputs differ from what was expected.
    #[error("{what}: expected {expected}, got {got}")]
    Length {
        /// What was measured.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A decrypted value is not in `0..=max` (an overflow, or a ciphertext that is not a
    /// sum of what the caller expected).
    #[error("ciphertext {index} does not decrypt to an integer in 0..={max}")]
    NotSmall {
        /// Position in the batch.
        index: usize,
        /// The largest value looked for.
        max: u64,
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
}

/// A ciphertext `(c₁, c₂) = (r·G, m·G + r·H)`, decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ciphertext {
    c1: RistrettoPoint,
    c2: RistrettoPoint,
}

impl std::fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.to_bytes();
        write!(f, "Ciphertext({:02x}{:02x}{:02x}{:02x}…)", b[0], b[1], b[32], b[33])
    }
}

impl Default for Ciphertext {
    fn default() -> Self {
        Self::zero()
    }
}

impl Ciphertext {
    /// The (unrandomized) encryption of 0: both components the identity. An empty sum.
    pub fn zero() -> Self {
        Self { c1: RistrettoPoint::identity(), c2: RistrettoPoint::identity() }
    }

    /// Homomorphic addition in place: two point additions.
    #[inline]
    pub fn add_assign(&mut self, other: &Ciphertext) {
        self.c1 += other.c1;
        self.c2 += other.c2;
    }

    /// Homomorphic addition.
    #[must_use]
    pub fn add(&self, other: &Ciphertext) -> Ciphertext {
        Ciphertext { c1: self.c1 + other.c1, c2: self.c2 + other.c2 }
    }

    /// Homomorphic subtraction (the plaintext difference mod `ℓ`).
    #[must_use]
    pub fn sub(&self, other: &Ciphertext) -> Ciphertext {
        Ciphertext { c1: self.c1 - other.c1, c2: self.c2 - other.c2 }
    }

    /// Multiplication of the plaintext by `k` (two constant-time variable-base
    /// multiplications).
    #[must_use]
    pub fn mul_u64(&self, k: u64) -> Ciphertext {
        let k = Scalar::from(k);
        Ciphertext { c1: self.c1 * k, c2: self.c2 * k }
    }

    /// The 64-byte encoding `enc(c₁) ‖ enc(c₂)` (two inverse square roots; batches use
    /// [`write_ciphertexts`]).
    pub fn to_bytes(&self) -> [u8; CIPHERTEXT_BYTES] {
        let mut out = [0u8; CIPHERTEXT_BYTES];
        out[..32].copy_from_slice(self.c1.compress().as_bytes());
        out[32..].copy_from_slice(self.c2.compress().as_bytes());
        out
    }

    /// Decodes one ciphertext, refusing non-canonical encodings.
    ///
    /// # Errors
    /// [`ElGamalError::BadCiphertext`] (index 0) or [`ElGamalError::Length`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Ciphertext, ElGamalError> {
        if bytes.len() != CIPHERTEXT_BYTES {
            return Err(ElGamalError::Length {
                what: "ciphertext bytes",
                expected: CIPHERTEXT_BYTES,
                got: bytes.len(),
            });
        }
        decode_one(bytes).ok_or(ElGamalError::BadCiphertext { index: 0, why: NOT_CANONICAL })
    }
}

const NOT_CANONICAL: &str = "not two canonical ristretto255 encodings";

fn decode_point(bytes: &[u8]) -> Option<RistrettoPoint> {
    CompressedRistretto::from_slice(bytes).ok()?.decompress()
}

fn decode_one(bytes: &[u8]) -> Option<Ciphertext> {
    Some(Ciphertext { c1: decode_point(&bytes[..32])?, c2: decode_point(&bytes[32..64])? })
}

/// Decodes back-to-back 64-byte ciphertexts from a peer on all cores, refusing any
/// non-canonical encoding.
///
/// # Errors
/// [`ElGamalError::Length`] if the length is not a multiple of 64;
/// [`ElGamalError::BadCiphertext`] naming the first bad ciphertext.
pub fn read_ciphertexts(bytes: &[u8]) -> Result<Vec<Ciphertext>, ElGamalError> {
    if !bytes.len().is_multiple_of(CIPHERTEXT_BYTES) {
        return Err(ElGamalError::Length {
            what: "ciphertext batch bytes (a multiple of 64)",
            expected: bytes.len() / CIPHERTEXT_BYTES * CIPHERTEXT_BYTES,
            got: bytes.len(),
        });
    }
    let decoded: Option<Vec<Ciphertext>> =
        bytes.par_chunks(CIPHERTEXT_BYTES).with_min_len(BATCH / 4).map(decode_one).collect();
    decoded.ok_or_else(|| {
        let index = bytes
            .chunks(CIPHERTEXT_BYTES)
            .position(|b| decode_one(b).is_none())
            .unwrap_or(bytes.len() / CIPHERTEXT_BYTES);
        ElGamalError::BadCiphertext { index, why: NOT_CANONICAL }
    })
}

/// Encodes ciphertexts back to back (64 bytes each) on all cores.
pub fn write_ciphertexts(cts: &[Ciphertext]) -> Vec<u8> {
    let mut out = vec![0u8; cts.len() * CIPHERTEXT_BYTES];
    out.par_chunks_mut(CIPHERTEXT_BYTES).zip(cts.par_iter()).for_each(|(o, c)| {
        o.copy_from_slice(&c.to_bytes());
    });
    out
}

/// Per-bin homomorphic sums on all cores: `out[b] = Σ_{i : bins[i] = b} cts[i]`; empty
/// bins hold [`Ciphertext::zero`].
///
/// # Errors
/// [`ElGamalError::Length`], [`ElGamalError::BinOutOfRange`] (checked before any work).
pub fn sum_by_bin<B: BinIndex>(
    cts: &[Ciphertext],
    bins: &[B],
    n_bins: usize,
) -> Result<Vec<Ciphertext>, ElGamalError> {
    if bins.len() != cts.len() {
        return Err(ElGamalError::Length {
            what: "bin indices",
            expected: cts.len(),
            got: bins.len(),
        });
    }
    if let Some((row, b)) = bins.iter().enumerate().find(|(_, b)| b.bin() >= n_bins) {
        return Err(ElGamalError::BinOutOfRange { row, bin: b.bin(), n_bins });
    }
    Ok(cts
        .par_chunks(2048)
        .zip(bins.par_chunks(2048))
        .map(|(c, b)| {
            let mut acc = vec![Ciphertext::zero(); n_bins];
            for (ct, bin) in c.iter().zip(b) {
                acc[bin.bin()].add_assign(ct);
            }
            acc
        })
        .reduce(
            || vec![Ciphertext::zero(); n_bins],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    x.add_assign(y);
                }
                a
            },
        ))
}

/// Per-bin sums of the same ciphertexts under many binnings (one per feature:
/// `features[f] = (bin of every row, bin count)`), on all cores:
/// `out[f][b] = Σ_{i : bins_f[i] = b} cts[i]`.
///
/// Consecutive features are summed together over their joint bins (a row goes to the cell
/// `(b_f, b_g, …)` of its bins) while the joint grid has at most `max(64, rows / 8)` cells,
/// and each feature's sums are then read off as marginals of the grid: one ciphertext addition
/// per row for a group of two or three features instead of one per row and feature, plus one
/// per populated cell and feature. A feature alone in its group skips its most populated bin
/// and takes it as `total − Σ other bins` (the total summed once for all features).
///
/// # Errors
/// [`ElGamalError::Length`], [`ElGamalError::BinOutOfRange`] (checked before any work).
pub fn sum_by_bin_features<B: BinIndex>(
    cts: &[Ciphertext],
    features: &[(&[B], usize)],
) -> Result<Vec<Vec<Ciphertext>>, ElGamalError> {
    for (bins, n_bins) in features {
        if bins.len() != cts.len() {
            return Err(ElGamalError::Length {
                what: "bin indices",
                expected: cts.len(),
                got: bins.len(),
            });
        }
        if let Some((row, b)) = bins.iter().enumerate().find(|(_, b)| b.bin() >= *n_bins) {
            return Err(ElGamalError::BinOutOfRange { row, bin: b.bin(), n_bins: *n_bins });
        }
    }
    let limit = (cts.len() / 8).clamp(64, 1 << 16);
    let mut groups = Vec::new();
    let mut start = 0;
    let mut cells = 1usize;
    for (f, (_, n)) in features.iter().enumerate() {
        let n = (*n).max(1);
        if f > start && cells.saturating_mul(n) > limit {
            groups.push(start..f);
            start = f;
            cells = 1;
        }
        cells = cells.saturating_mul(n);
    }
    if start < features.len() {
        groups.push(start..features.len());
    }
    let needs_total = groups.iter().any(|g| g.len() == 1);
    let total = if needs_total {
        cts.par_chunks(4096)
            .map(|c| {
                let mut acc = Ciphertext::zero();
                for ct in c {
                    acc.add_assign(ct);
                }
                acc
            })
            .reduce(Ciphertext::zero, |a, b| a.add(&b))
    } else {
        Ciphertext::zero()
    };
    let sums: Vec<Vec<Vec<Ciphertext>>> = groups
        .par_iter()
        .with_max_len(1)
        .map(|g| match &features[g.clone()] {
            [(bins, n_bins)] => vec![sum_one_skipping_largest(cts, bins, *n_bins, &total)],
            group => sum_joint(cts, group),
        })
        .collect();
    Ok(sums.into_iter().flatten().collect())
}

/// One feature's sums, its most populated bin as the total minus the others.
fn sum_one_skipping_largest<B: BinIndex>(
    cts: &[Ciphertext],
    bins: &[B],
    n_bins: usize,
    total: &Ciphertext,
) -> Vec<Ciphertext> {
    let mut rows = vec![0usize; n_bins];
    for b in bins {
        rows[b.bin()] += 1;
    }
    let Some(skip) = (0..n_bins).max_by_key(|&b| (rows[b], std::cmp::Reverse(b))) else {
        return Vec::new();
    };
    let mut acc = vec![Ciphertext::zero(); n_bins];
    for (ct, b) in cts.iter().zip(bins) {
        let b = b.bin();
        if b != skip {
            acc[b].add_assign(ct);
        }
    }
    let mut rest = *total;
    for (b, a) in acc.iter().enumerate() {
        if b != skip {
            rest = rest.sub(a);
        }
    }
    acc[skip] = rest;
    acc
}

/// Several features' sums from their joint grid: one addition per row, then marginals over
/// the populated cells.
fn sum_joint<B: BinIndex>(cts: &[Ciphertext], group: &[(&[B], usize)]) -> Vec<Vec<Ciphertext>> {
    let mut strides = Vec::with_capacity(group.len());
    let mut cells = 1usize;
    for (_, n) in group {
        strides.push(cells);
        cells *= (*n).max(1);
    }
    let mut grid = vec![Ciphertext::zero(); cells];
    let mut used = vec![false; cells];
    for (i, ct) in cts.iter().enumerate() {
        let mut cell = 0;
        for ((bins, _), s) in group.iter().zip(&strides) {
            cell += bins[i].bin() * s;
        }
        grid[cell].add_assign(ct);
        used[cell] = true;
    }
    group
        .iter()
        .zip(&strides)
        .map(|((_, n), s)| {
            let mut out = vec![Ciphertext::zero(); *n];
            if *n > 0 {
                for (cell, g) in grid.iter().enumerate().filter(|(c, _)| used[*c]) {
                    out[(cell / s) % n].add_assign(g);
                }
            }
            out
        })
        .collect()
}

/// A public key `H = x·G`.
#[derive(Clone)]
pub struct PublicKey {
    h: RistrettoPoint,
    bytes: [u8; PUBLIC_KEY_BYTES],
    /// Fixed-base table for `r·H`, built on first public-key encryption (30 KB).
    table: Arc<OnceLock<RistrettoBasepointTable>>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ElGamalPublicKey({:02x}{:02x}{:02x}{:02x}…)",
            self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]
        )
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    fn from_point(h: RistrettoPoint) -> Self {
        Self { h, bytes: h.compress().to_bytes(), table: Arc::new(OnceLock::new()) }
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.bytes
    }

    /// A peer's key, validated: 32 bytes, a canonical ristretto255 encoding, not the
    /// identity.
    ///
    /// # Errors
    /// [`ElGamalError::BadPublicKey`] saying which check failed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ElGamalError> {
        if bytes.len() != PUBLIC_KEY_BYTES {
            return Err(ElGamalError::BadPublicKey("not 32 bytes"));
        }
        let h = decode_point(bytes)
            .ok_or(ElGamalError::BadPublicKey("not a canonical ristretto255 encoding"))?;
        if h.is_identity() {
            return Err(ElGamalError::BadPublicKey("the identity (a zero secret key)"));
        }
        Ok(Self::from_point(h))
    }

    fn h_table(&self) -> &RistrettoBasepointTable {
        self.table.get_or_init(|| RistrettoBasepointTable::create(&self.h))
    }

    /// `(r·G, r·H)` for a fresh random `r`: an encryption of 0.
    fn zero_encryption<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Ciphertext {
        let r = Zeroizing::new(random_nonzero_scalar(rng));
        Ciphertext { c1: RISTRETTO_BASEPOINT_TABLE * &*r, c2: self.h_table() * &*r }
    }

    /// Encrypts `m` with the public key (three constant-time fixed-base multiplications).
    pub fn encrypt<R: CryptoRng + ?Sized>(&self, m: u64, rng: &mut R) -> Ciphertext {
        let mut c = self.zero_encryption(rng);
        c.c2 += RISTRETTO_BASEPOINT_TABLE * &Scalar::from(m);
        c
    }

    /// `c` plus a fresh encryption of 0: the same plaintext under randomness nobody else
    /// knows. Apply before returning sums of a peer's ciphertexts to the key owner.
    pub fn rerandomize<R: CryptoRng + ?Sized>(&self, c: &Ciphertext, rng: &mut R) -> Ciphertext {
        c.add(&self.zero_encryption(rng))
    }

    /// [`Self::rerandomize`] for many ciphertexts on all cores (deterministic for a seeded
    /// `rng`).
    pub fn rerandomize_batch<R: CryptoRng + ?Sized>(
        &self,
        cts: &[Ciphertext],
        rng: &mut R,
    ) -> Vec<Ciphertext> {
        let _ = self.h_table();
        par_with_rng(cts.len(), rng, |i, r| self.rerandomize(&cts[i], r))
    }

    /// A short fingerprint of the key, for logs.
    pub fn fingerprint(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.bytes[..8]);
        out
    }
}

/// A secret key `x` (uniform non-zero scalar) with its public key. Zeroized on drop;
/// `Debug` prints the public key only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    x: Scalar,
    #[zeroize(skip)]
    pk: PublicKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ElGamalSecretKey(<redacted>, {:?})", self.pk)
    }
}

/// A uniform non-zero scalar (64 bytes reduced mod ℓ: bias below 2^-250).
fn random_nonzero_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    loop {
        let mut wide = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(wide.as_mut());
        let s = Scalar::from_bytes_mod_order_wide(&wide);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

/// `f(i, rng)` for `i < count` on all cores, each batch with its own ChaCha20 RNG seeded
/// from `rng` (results do not depend on the thread count).
fn par_with_rng<T, R, F>(count: usize, rng: &mut R, f: F) -> Vec<T>
where
    T: Send,
    R: CryptoRng + ?Sized,
    F: Fn(usize, &mut ChaCha20Rng) -> T + Sync,
{
    let seeds: Vec<Zeroizing<[u8; 32]>> = (0..count.div_ceil(BATCH))
        .map(|_| {
            let mut s = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(s.as_mut());
            s
        })
        .collect();
    seeds
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(k, seed)| {
            let mut r = ChaCha20Rng::from_seed(*seed);
            let lo = k * BATCH;
            let hi = (lo + BATCH).min(count);
            (lo..hi).map(|i| f(i, &mut r)).collect::<Vec<_>>()
        })
        .collect()
}

impl SecretKey {
    /// A fresh key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let x = random_nonzero_scalar(rng);
        let pk = PublicKey::from_point(RISTRETTO_BASEPOINT_TABLE * &x);
        Self { x, pk }
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.pk
    }

    /// The canonical 32-byte scalar, for a role's checkpoint.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.x.to_bytes())
    }

    /// A key from [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`ElGamalError::BadSecretKey`] for a non-canonical or zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ElGamalError> {
        let x: Option<Scalar> = Scalar::from_canonical_bytes(*bytes).into();
        let x = x.filter(|x| *x != Scalar::ZERO).ok_or(ElGamalError::BadSecretKey)?;
        let pk = PublicKey::from_point(RISTRETTO_BASEPOINT_TABLE * &x);
        Ok(Self { x, pk })
    }

    /// Encrypts `m` as the key owner: `(r·G, (x·r + m)·G)`, two constant-time fixed-base
    /// multiplications by the basepoint (no table for `H` needed).
    pub fn encrypt<R: CryptoRng + ?Sized>(&self, m: u64, rng: &mut R) -> Ciphertext {
        let r = Zeroizing::new(random_nonzero_scalar(rng));
        let e = Zeroizing::new(self.x * *r + Scalar::from(m));
        Ciphertext { c1: RISTRETTO_BASEPOINT_TABLE * &*r, c2: RISTRETTO_BASEPOINT_TABLE * &*e }
    }

    /// Encrypts every value on all cores (deterministic for a seeded `rng`).
    pub fn encrypt_batch<R: CryptoRng + ?Sized>(&self, ms: &[u64], rng: &mut R) -> Vec<Ciphertext> {
        par_with_rng(ms.len(), rng, |i, r| self.encrypt(ms[i], r))
    }

    /// Encrypts every value and encodes the ciphertexts back to back (64 bytes each), on
    /// all cores: the wire form of [`Self::encrypt_batch`], several times cheaper than
    /// encoding one by one. Each batch multiplies by halved scalars `s = r/2` and
    /// `x·s + m/2` and encodes with one shared inversion
    /// (`RistrettoPoint::double_and_compress_batch`), which yields exactly
    /// `enc(r·G) ‖ enc((x·r + m)·G)` for `r = 2s`.
    pub fn encrypt_to_bytes<R: CryptoRng + ?Sized>(&self, ms: &[u64], rng: &mut R) -> Vec<u8> {
        let half = Scalar::from(2u8).invert();
        let seeds: Vec<Zeroizing<[u8; 32]>> = (0..ms.len().div_ceil(BATCH))
            .map(|_| {
                let mut s = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(s.as_mut());
                s
            })
            .collect();
        let mut out = vec![0u8; ms.len() * CIPHERTEXT_BYTES];
        out.par_chunks_mut(BATCH * CIPHERTEXT_BYTES)
            .zip(ms.par_chunks(BATCH))
            .zip(seeds.par_iter())
            .for_each(|((out, ms), seed)| {
                let mut r = ChaCha20Rng::from_seed(**seed);
                let mut points = Vec::with_capacity(2 * ms.len());
                for &m in ms {
                    let s = Zeroizing::new(random_nonzero_scalar(&mut r));
                    let e = Zeroizing::new(self.x * *s + Scalar::from(m) * half);
                    points.push(RISTRETTO_BASEPOINT_TABLE * &*s);
                    points.push(RISTRETTO_BASEPOINT_TABLE * &*e);
                }
                let encoded = RistrettoPoint::double_and_compress_batch(&points);
                for (slot, enc) in out.chunks_mut(32).zip(encoded) {
                    slot.copy_from_slice(enc.as_bytes());
                }
                points.zeroize();
            });
        out
    }

    /// `m·G` of a ciphertext: `c₂ − x·c₁` (constant-time multiplication by `x`).
    fn decrypt_point(&self, c: &Ciphertext) -> RistrettoPoint {
        c.c2 - c.c1 * self.x
    }

    /// Decrypts a value expected in `0..=max`, with `table` for the discrete logarithm.
    ///
    /// # Errors
    /// [`ElGamalError::NotSmall`] (index 0) when the plaintext is not in `0..=max`.
    pub fn decrypt(
        &self,
        c: &Ciphertext,
        max: u64,
        table: &DlogTable,
    ) -> Result<u64, ElGamalError> {
        table.solve(&self.decrypt_point(c), max).ok_or(ElGamalError::NotSmall { index: 0, max })
    }

    /// Decrypts every ciphertext on all cores, `cts[i]` expected in `0..=max[i]`; builds a
    /// table fitting the largest bound ([`DlogTable::for_max`]).
    ///
    /// # Errors
    /// [`ElGamalError::Length`]; [`ElGamalError::NotSmall`] naming the first failure.
    pub fn decrypt_batch(&self, cts: &[Ciphertext], max: &[u64]) -> Result<Vec<u64>, ElGamalError> {
        if cts.len() != max.len() {
            return Err(ElGamalError::Length {
                what: "bounds for the ciphertexts",
                expected: cts.len(),
                got: max.len(),
            });
        }
        let table = DlogTable::for_max(max.iter().copied().max().unwrap_or(0));
        self.decrypt_batch_with(cts, max, &table)
    }

    /// [`Self::decrypt_batch`] with a table built beforehand.
    ///
    /// # Errors
    /// As [`Self::decrypt_batch`].
    pub fn decrypt_batch_with(
        &self,
        cts: &[Ciphertext],
        max: &[u64],
        table: &DlogTable,
    ) -> Result<Vec<u64>, ElGamalError> {
        if cts.len() != max.len() {
            return Err(ElGamalError::Length {
                what: "bounds for the ciphertexts",
                expected: cts.len(),
                got: max.len(),
            });
        }
        cts.par_iter()
            .zip(max.par_iter())
            .enumerate()
            .map(|(index, (c, &m))| {
                table
                    .solve(&self.decrypt_point(c), m)
                    .ok_or(ElGamalError::NotSmall { index, max: m })
            })
            .collect()
    }
}
