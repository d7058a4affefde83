//! Two-party additive secret sharing over the ring `Z_{2^128}` with a dealer of correlated
//! randomness: the arithmetic of vertical logistic regression.
//!
//! A value `x` is held as two shares `x₀ + x₁ = x (mod 2^128)`, one at each computing party
//! ([`Side::P0`], [`Side::P1`]); one share alone is uniform and says nothing about `x`. Reals
//! are fixed-point numbers ([`Fixed`]): `round(x · 2^f)` in two's complement. Additions and
//! multiplications by public integers are local. A product of two shared values takes one
//! exchange with a **Beaver triple** `(a, b, c = a·b)` dealt in shares (Beaver, "Efficient
//! Multiparty Protocols Using Circuit Randomization", CRYPTO 1991): the parties open
//! `e = x − a` and `f = y − b`, which are uniform, and compute `x·y = c + e·b + f·a + e·f`
//! locally ([`beaver`]). A product of a matrix `X` known to one party (its features) with a
//! shared vector uses a **matrix triple** whose mask `A` of `X` is opened once as
//! `E = X − A` and reused across every step, with fresh vector masks per step (Mohassel and
//! Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine Learning", IEEE S&P
//! 2017, §4.1) ([`matrix`]).
//!
//! After a product of two fixed-point values the scale is `2^{2f}`; each party truncates its
//! own share locally (SecureML, Theorem 1): the result is `x / 2^f` up to one unit in the last
//! place, except with probability `2^{l_x + 1 − 128}` for `|x| < 2^{l_x}`; in a 128-bit ring
//! with `f = 20` and gradients summed over a million rows that is below `2^-60` per value,
//! which is why the ring is `Z_{2^128}` and not `Z_{2^64}` (where sums over 10⁵ rows fail once
//! in a few thousand steps).
//!
//! The sigmoid is evaluated in shares by an odd polynomial of degree 13 fitted by weighted
//! least squares on `[−12, 12]` ([`sigmoid`]): seven Beaver multiplications in four rounds.
//!
//! Correlated randomness comes from a dealer (the coordinator, which does not collude with the
//! parties): every random vector is a ChaCha20 keystream under a seed derived by HKDF-SHA256
//! from the dealer's job root, so the dealer sends a party a 32-byte seed instead of its share
//! whenever that share can be random, and only the correcting share (`c₁ = a·b − c₀`)
//! travels in full. Everything here is pure: no I/O, no clocks, no global randomness.

pub mod beaver;
pub mod matrix;
pub mod sigmoid;

use hkdf::Hkdf;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

/// An element of `Z_{2^128}`: a share, or a public ring value.
pub type Elem = u128;

/// Why a secret-sharing step cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpcError {
    /// A message or a dealt vector has the wrong length.
    #[error("{what}: expected {expected} values, got {got}")]
    Length {
        /// What was checked.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A step was asked out of order.
    #[error("{0}")]
    Order(&'static str),
    /// A shape that does not fit.
    #[error("{0}")]
    Shape(String),
}

/// Checks that `got` values arrived where `expected` were due.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MpcError> {
    if expected == got { Ok(()) } else { Err(MpcError::Length { what, expected, got }) }
}

/// Which of the two computing parties holds a share: `P0` adds public constants and truncates
/// by a plain shift, `P1` truncates the negation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The first party.
    P0,
    /// The second party.
    P1,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Side::P0 => Side::P1,
            Side::P1 => Side::P0,
        }
    }
}

/// Fixed-point code: `x ↦ round(x · 2^frac_bits)` in two's complement modulo `2^128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixed {
    /// Fractional bits `f`.
    pub frac_bits: u32,
}

impl Default for Fixed {
    /// 20 fractional bits: a resolution of 10⁻⁶, room for 2^86 before a product overflows.
    fn default() -> Self {
        Self { frac_bits: 20 }
    }
}

impl Fixed {
    /// The code with `frac_bits` fractional bits.
    pub fn new(frac_bits: u32) -> Self {
        Self { frac_bits }
    }

    /// `2^f` as a float.
    pub fn scale(&self) -> f64 {
        (2.0f64).powi(self.frac_bits as i32)
    }

    /// Encodes `x` (non-finite values encode as 0).
    pub fn encode(&self, x: f64) -> Elem {
        encode_bits(x, self.frac_bits)
    }

    /// Decodes a ring value.
    pub fn decode(&self, v: Elem) -> f64 {
        (v as i128) as f64 / self.scale()
    }

    /// Encodes a slice.
    pub fn encode_all(&self, xs: &[f64]) -> Vec<Elem> {
        xs.iter().map(|&x| self.encode(x)).collect()
    }

    /// Decodes a slice.
    pub fn decode_all(&self, vs: &[Elem]) -> Vec<f64> {
        vs.iter().map(|&v| self.decode(v)).collect()
    }
}

/// `round(x · 2^bits)` in two's complement (0 for a non-finite `x`; saturates at `±2^126`).
pub fn encode_bits(x: f64, bits: u32) -> Elem {
    if !x.is_finite() {
        return 0;
    }
    let v = (x * (2.0f64).powi(bits as i32)).round();
    let lim = (2.0f64).powi(126);
    (v.clamp(-lim, lim) as i128) as Elem
}

/// Splits `secret` into two uniform-looking shares `(s₀, s₁)` with `s₀ + s₁ = secret`.
pub fn share<R: CryptoRng + ?Sized>(secret: &[Elem], rng: &mut R) -> (Vec<Elem>, Vec<Elem>) {
    let mut s0 = vec![0u128; secret.len()];
    let mut bytes = vec![0u8; secret.len() * 16];
    rng.fill_bytes(&mut bytes);
    for (o, c) in s0.iter_mut().zip(bytes.chunks_exact(16)) {
        *o = u128::from_le_bytes(c.try_into().unwrap_or([0; 16]));
    }
    bytes.zeroize();
    let s1 = secret.iter().zip(&s0).map(|(x, r)| x.wrapping_sub(*r)).collect();
    (s0, s1)
}

/// `s₀ + s₁`.
///
/// # Errors
/// [`MpcError::Length`] when the shares differ in length.
pub fn reconstruct(s0: &[Elem], s1: &[Elem]) -> Result<Vec<Elem>, MpcError> {
    check_len("shares", s0.len(), s1.len())?;
    Ok(s0.iter().zip(s1).map(|(a, b)| a.wrapping_add(*b)).collect())
}

/// Adds `b` to `a` elementwise (mod `2^128`).
///
/// # Errors
/// [`MpcError::Length`] when they differ in length.
pub fn add_assign(a: &mut [Elem], b: &[Elem]) -> Result<(), MpcError> {
    check_len("addend", a.len(), b.len())?;
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
    Ok(())
}

/// Subtracts `b` from `a` elementwise (mod `2^128`).
///
/// # Errors
/// [`MpcError::Length`] when they differ in length.
pub fn sub_assign(a: &mut [Elem], b: &[Elem]) -> Result<(), MpcError> {
    check_len("subtrahend", a.len(), b.len())?;
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_sub(*y);
    }
    Ok(())
}

/// Adds the public value `c` to a shared vector: only `P0` changes its share.
pub fn add_public(side: Side, shares: &mut [Elem], c: Elem) {
    if side == Side::P0 {
        for s in shares {
            *s = s.wrapping_add(c);
        }
    }
}

/// Multiplies a shared vector by the public ring value `c` (local at both sides).
pub fn mul_public(shares: &mut [Elem], c: Elem) {
    for s in shares {
        *s = s.wrapping_mul(c);
    }
}

/// SecureML's local truncation of a share by `bits` bits: `P0` shifts its share, `P1` shifts
/// the negation of its share and negates back. The two results add up to `x / 2^bits` up to
/// one unit, except with probability `2^{l_x + 1 − 128}` when `|x| < 2^{l_x}`.
pub fn truncate(side: Side, shares: &mut [Elem], bits: u32) {
    match side {
        Side::P0 => {
            for s in shares {
                *s >>= bits;
            }
        }
        Side::P1 => {
            for s in shares {
                *s = (s.wrapping_neg() >> bits).wrapping_neg();
            }
        }
    }
}

/// A 32-byte seed of a keystream of ring elements (ChaCha20, 96-bit zero nonce: each seed is
/// used for one stream only, every stream has its own derived seed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
#[zeroize(drop)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// A fresh seed from a cryptographic generator.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        Self(s)
    }

    /// The seed of stream `label` under this one (HKDF-SHA256 expand, domain-separated).
    pub fn derive(&self, label: &[u8]) -> Seed {
        let hk = Hkdf::<Sha256>::new(Some(b"fedcredit/mpc/v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit.
        let _ = hk.expand(label, &mut out);
        Seed(out)
    }

    /// The seed of stream `label` at step `step`, item `item`.
    pub fn derive_at(&self, label: &str, step: u64, item: u64) -> Seed {
        let mut info = Vec::with_capacity(label.len() + 16);
        info.extend_from_slice(label.as_bytes());
        info.extend_from_slice(&step.to_le_bytes());
        info.extend_from_slice(&item.to_le_bytes());
        self.derive(&info)
    }

    /// The first `n` ring elements of the seed's keystream.
    pub fn expand(&self, n: usize) -> Vec<Elem> {
        use chacha20::ChaCha20;
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        let mut out = vec![0u128; n];
        let mut cipher = ChaCha20::new(&self.0.into(), &[0u8; 12].into());
        let mut block = [0u8; 4096];
        for chunk in out.chunks_mut(block.len() / 16) {
            let bytes = &mut block[..chunk.len() * 16];
            bytes.fill(0);
            cipher.apply_keystream(bytes);
            for (o, c) in chunk.iter_mut().zip(bytes.chunks_exact(16)) {
                *o = u128::from_le_bytes(c.try_into().unwrap_or([0; 16]));
            }
        }
        block.zeroize();
        out
    }
}

/// `y = M·v` for a row-major `rows × cols` ring matrix (`m` holds at least `rows · cols`
/// values; `v` has `cols`).
pub fn matvec(m: &[Elem], rows: usize, cols: usize, v: &[Elem]) -> Vec<Elem> {
    if cols == 0 {
        return vec![0; rows];
    }
    m.chunks_exact(cols)
        .take(rows)
        .map(|row| {
            row.iter().zip(v).fold(0u128, |acc, (a, b)| acc.wrapping_add(a.wrapping_mul(*b)))
        })
        .collect()
}

/// `y = Mᵀ·v` for a row-major ring matrix with `cols` columns (`v` has one value per row).
pub fn matvec_t(m: &[Elem], cols: usize, v: &[Elem]) -> Vec<Elem> {
    let mut out = vec![0u128; cols];
    if cols == 0 {
        return out;
    }
    for (row, x) in m.chunks_exact(cols).zip(v) {
        for (o, a) in out.iter_mut().zip(row) {
            *o = o.wrapping_add(a.wrapping_mul(*x));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn fixed_point_round_trips_within_half_an_ulp() {
        let fx = Fixed::default();
        for x in [0.0, 1.0, -1.0, 2.4681, -1234.5678, 1e-7, -7.75e5] {
            let back = fx.decode(fx.encode(x));
            assert!((back - x).abs() <= 0.5 / fx.scale() + 1e-12, "{x} -> {back}");
        }
        assert_eq!(fx.encode(f64::NAN), 0);
    }

    #[test]
    fn shares_reconstruct_and_one_share_looks_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let fx = Fixed::default();
        let secret = fx.encode_all(&[1.5, -2.25, 0.0, 100.0]);
        let (a, b) = share(&secret, &mut rng);
        assert_eq!(reconstruct(&a, &b).unwrap(), secret);
        assert_ne!(a, secret);
        // The top bit of one share is a fair coin.
        let big: Vec<Elem> = vec![fx.encode(1.0); 4000];
        let (s0, _) = share(&big, &mut rng);
        let ones = s0.iter().filter(|v| *v >> 127 == 1).count();
        assert!((1800..2200).contains(&ones), "{ones}");
        assert!(reconstruct(&a, &b[..2]).is_err());
    }

    #[test]
    fn local_truncation_is_off_by_at_most_one_unit() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let fx = Fixed::default();
        let xs: Vec<f64> = (0..2000).map(|i| (i as f64 - 1000.0) * 0.731).collect();
        let ys: Vec<f64> = (0..2000).map(|i| ((i * 7) % 13) as f64 - 6.5).collect();
        // Products at scale 2^{2f}.
        let prod: Vec<Elem> =
            xs.iter().zip(&ys).map(|(x, y)| fx.encode(*x).wrapping_mul(fx.encode(*y))).collect();
        let (mut s0, mut s1) = share(&prod, &mut rng);
        truncate(Side::P0, &mut s0, fx.frac_bits);
        truncate(Side::P1, &mut s1, fx.frac_bits);
        let back = fx.decode_all(&reconstruct(&s0, &s1).unwrap());
        for ((x, y), b) in xs.iter().zip(&ys).zip(&back) {
            let want = fx.decode(fx.encode(*x)) * fx.decode(fx.encode(*y));
            assert!((b - want).abs() <= 2.0 / fx.scale(), "{x}·{y}: {b} vs {want}");
        }
    }

    #[test]
    fn public_constants_and_seeds() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let fx = Fixed::default();
        let (mut s0, mut s1) = share(&fx.encode_all(&[1.0, 2.0]), &mut rng);
        add_public(Side::P0, &mut s0, fx.encode(0.5));
        add_public(Side::P1, &mut s1, fx.encode(0.5));
        mul_public(&mut s0, 3);
        mul_public(&mut s1, 3);
        assert_eq!(fx.decode_all(&reconstruct(&s0, &s1).unwrap()), vec![4.5, 7.5]);
        let root = Seed::random(&mut rng);
        assert_eq!(root.derive(b"a").expand(70), root.derive(b"a").expand(70));
        assert_ne!(root.derive(b"a").expand(3), root.derive(b"b").expand(3));
        assert_ne!(root.derive_at("x", 1, 0).0, root.derive_at("x", 0, 1).0);
        // A longer expansion extends a shorter one.
        assert_eq!(root.expand(300)[..257], root.expand(257)[..]);
    }

    #[test]
    fn ring_matrix_products() {
        // [[1, 2], [3, 4], [5, 6]]
        let m: Vec<Elem> = vec![1, 2, 3, 4, 5, 6];
        assert_eq!(
            matvec(&m, 3, 2, &[1, 1u128.wrapping_neg()]),
            vec![1u128.wrapping_neg(), 1u128.wrapping_neg(), 1u128.wrapping_neg()]
        );
        assert_eq!(matvec_t(&m, 2, &[1, 0, 2]), vec![11, 14]);
    }
}
