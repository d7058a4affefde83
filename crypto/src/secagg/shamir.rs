//! Shamir `t`-of-`n` secret sharing of 32-byte secrets over GF(2^16).
//!
//! Shamir, "How to Share a Secret" (CACM 1979): a secret is the constant term of a
//! random polynomial of degree `t − 1`; a share is the polynomial's value at a nonzero
//! point `x`. Any `t` shares determine the polynomial (Lagrange interpolation at 0) and
//! any `t − 1` are uniformly distributed whatever the secret. Secure aggregation uses it
//! for the self-mask seed `b_u` (Bonawitz et al., CCS 2017, §4; the masking key `s_u` the
//! paper also shares does not exist here: pairwise seeds derive from the job's pair roots,
//! and a dropped party's are revealed by its surviving neighbours).
//!
//! The field is GF(2^16) = GF(2)\[X\] / (X^16 + X^12 + X^3 + X + 1), so up to 65,535 parties
//! get distinct x-coordinates (party index + 1); a 32-byte secret is 16 field elements
//! shared independently with the same x. Multiplication is a fixed 16-step shift-and-add
//! without secret-dependent branches or table lookups. Reconstruction with more than
//! `t` shares checks that the extra shares lie on the same polynomial.

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes in a shared secret.
pub const SECRET_LEN: usize = 32;
const ELEMS: usize = SECRET_LEN / 2;
/// X^16 + X^12 + X^3 + X + 1 without the X^16 term.
const REDUCTION: u16 = 0x100B;

/// Why sharing or reconstruction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// The threshold is 0 or exceeds the number of shares to produce.
    #[error("threshold {threshold} with {shares} shares")]
    BadThreshold {
        /// Threshold.
        threshold: usize,
        /// Shares.
        shares: usize,
    },
    /// An x-coordinate is 0 (that would be the secret itself).
    #[error("x-coordinate 0 is not allowed")]
    ZeroX,
    /// Two shares have the same x-coordinate.
    #[error("x-coordinate {0} appears twice")]
    DuplicateX(u16),
    /// Fewer shares than the threshold.
    #[error("{got} shares, threshold is {need}")]
    TooFewShares {
        /// Shares given.
        got: usize,
        /// Threshold.
        need: usize,
    },
    /// The shares do not lie on one polynomial of degree `t − 1`.
    #[error("shares are inconsistent (share at x = {x} is not on the polynomial)")]
    Inconsistent {
        /// The first share found off the polynomial.
        x: u16,
    },
}

/// One share: the point `x` and the 16 field elements of the polynomials at `x`
/// (little-endian bytes).
///
/// # Security
/// `t` shares reveal the secret. Zeroized on drop; `Debug` prints `<redacted>`. A share
/// is serializable because the unmask step reveals it to the server on purpose.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Share {
    x: u16,
    y: [u8; SECRET_LEN],
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ x: {}, y: <redacted> }}", self.x)
    }
}

impl Share {
    /// Builds a share from its parts (e.g. after decryption).
    pub fn from_parts(x: u16, y: [u8; SECRET_LEN]) -> Self {
        Self { x, y }
    }

    /// The x-coordinate (holder index + 1 in secure aggregation).
    pub fn x(&self) -> u16 {
        self.x
    }

    /// The share value.
    pub fn y(&self) -> &[u8; SECRET_LEN] {
        &self.y
    }

    fn elem(&self, i: usize) -> u16 {
        u16::from_le_bytes([self.y[2 * i], self.y[2 * i + 1]])
    }
}

/// Multiplication in GF(2^16).
fn mul(mut a: u16, mut b: u16) -> u16 {
    let mut r = 0u16;
    for _ in 0..16 {
        r ^= a & 0u16.wrapping_sub(b & 1);
        let carry = 0u16.wrapping_sub(a >> 15);
        a = (a << 1) ^ (carry & REDUCTION);
        b >>= 1;
    }
    r
}

/// Inverse in GF(2^16) as `a^(2^16 − 2)`; maps 0 to 0.
fn inv(a: u16) -> u16 {
    // 2^16 − 2 = 0b1111_1111_1111_1110.
    let mut result = 1u16;
    let mut base = a;
    let mut e: u32 = 0xFFFE;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

fn check_xs(xs: impl Iterator<Item = u16>) -> Result<(), ShamirError> {
    let mut seen = std::collections::BTreeSet::new();
    for x in xs {
        if x == 0 {
            return Err(ShamirError::ZeroX);
        }
        if !seen.insert(x) {
            return Err(ShamirError::DuplicateX(x));
        }
    }
    Ok(())
}

/// Splits `secret` into one share per x-coordinate in `xs`; any `threshold` of them reconstruct it.
///
/// # Errors
/// [`ShamirError`] when `threshold` is 0 or above `xs.len()`, or an x is 0 or repeated.
pub fn split<R: CryptoRng + ?Sized>(
    secret: &[u8; SECRET_LEN],
    threshold: usize,
    xs: &[u16],
    rng: &mut R,
) -> Result<Vec<Share>, ShamirError> {
    if threshold == 0 || threshold > xs.len() {
        return Err(ShamirError::BadThreshold { threshold, shares: xs.len() });
    }
    check_xs(xs.iter().copied())?;
    // coeffs[d * ELEMS + e] is the coefficient of X^(d+1) for element e.
    let mut bytes = Zeroizing::new(vec![0u8; (threshold - 1) * SECRET_LEN]);
    rng.fill_bytes(&mut bytes);
    let coeff = |d: usize, e: usize| {
        u16::from_le_bytes([bytes[d * SECRET_LEN + 2 * e], bytes[d * SECRET_LEN + 2 * e + 1]])
    };
    let mut shares = Vec::with_capacity(xs.len());
    for &x in xs {
        let mut y = [0u8; SECRET_LEN];
        for e in 0..ELEMS {
            // Horner from the highest coefficient down to the secret.
            let mut acc = 0u16;
            for d in (0..threshold - 1).rev() {
                acc = mul(acc, x) ^ coeff(d, e);
            }
            let s = u16::from_le_bytes([secret[2 * e], secret[2 * e + 1]]);
            acc = mul(acc, x) ^ s;
            y[2 * e..2 * e + 2].copy_from_slice(&acc.to_le_bytes());
        }
        shares.push(Share { x, y });
    }
    Ok(shares)
}

/// Lagrange basis values at `at` for the points `xs` (distinct, nonzero).
fn lagrange_at(xs: &[u16], at: u16) -> Vec<u16> {
    xs.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mut num = 1u16;
            let mut den = 1u16;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    num = mul(num, at ^ xj);
                    den = mul(den, xi ^ xj);
                }
            }
            mul(num, inv(den))
        })
        .collect()
}

fn interpolate(shares: &[Share], at: u16) -> Zeroizing<[u8; SECRET_LEN]> {
    let xs: Vec<u16> = shares.iter().map(|s| s.x).collect();
    let basis = lagrange_at(&xs, at);
    let mut out = Zeroizing::new([0u8; SECRET_LEN]);
    for e in 0..ELEMS {
        let mut acc = 0u16;
        for (share, &l) in shares.iter().zip(&basis) {
            acc ^= mul(l, share.elem(e));
        }
        out[2 * e..2 * e + 2].copy_from_slice(&acc.to_le_bytes());
    }
    out
}

/// Reconstructs the secret from at least `threshold` shares. The first `threshold`
/// shares determine the polynomial; any further shares must lie on it.
///
/// # Errors
/// [`ShamirError`] when there are too few shares, an x is 0 or repeated, or the extra
/// shares are inconsistent.
pub fn reconstruct(
    shares: &[Share],
    threshold: usize,
) -> Result<Zeroizing<[u8; SECRET_LEN]>, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::BadThreshold { threshold, shares: shares.len() });
    }
    if shares.len() < threshold {
        return Err(ShamirError::TooFewShares { got: shares.len(), need: threshold });
    }
    check_xs(shares.iter().map(|s| s.x))?;
    let (base, extra) = shares.split_at(threshold);
    for s in extra {
        if *interpolate(base, s.x) != s.y {
            return Err(ShamirError::Inconsistent { x: s.x });
        }
    }
    Ok(interpolate(base, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn secret(seed: u8) -> [u8; SECRET_LEN] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7))
    }

    #[test]
    fn field_is_a_field() {
        // Every nonzero element has an inverse: the modulus is irreducible.
        for a in 1..=u16::MAX {
            assert_eq!(mul(a, inv(a)), 1, "no inverse for {a}");
        }
        assert_eq!(mul(0x1234, 1), 0x1234);
        assert_eq!(mul(0x8000, 2), REDUCTION);
        assert_eq!(mul(0x1234, 0x5678), mul(0x5678, 0x1234));
        assert_eq!(mul(mul(3, 5), 7), mul(3, mul(5, 7)));
    }

    /// All k-subsets of 0..n.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m >> i & 1 == 1).collect())
            .collect()
    }

    #[test]
    fn any_t_subset_reconstructs_and_t_minus_one_does_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let s = secret(5);
        let xs: Vec<u16> = vec![1, 2, 3, 7, 300, 65535];
        for t in 2..=xs.len() {
            let shares = split(&s, t, &xs, &mut rng).unwrap();
            for sub in subsets(xs.len(), t) {
                let picked: Vec<Share> = sub.iter().map(|&i| shares[i].clone()).collect();
                assert_eq!(*reconstruct(&picked, t).unwrap(), s, "t={t} subset {sub:?}");
            }
            for sub in subsets(xs.len(), t - 1) {
                let picked: Vec<Share> = sub.iter().map(|&i| shares[i].clone()).collect();
                assert_eq!(
                    reconstruct(&picked, t).unwrap_err(),
                    ShamirError::TooFewShares { got: t - 1, need: t }
                );
                // Interpolating t − 1 points anyway gives a wrong value.
                if !picked.is_empty() {
                    assert_ne!(*interpolate(&picked, 0), s);
                }
            }
            // All shares together are consistent.
            assert_eq!(*reconstruct(&shares, t).unwrap(), s);
        }
    }

    #[test]
    fn fewer_than_t_shares_are_uniform() {
        // With t = 2, one share's value is independent of the secret: over many splits,
        // the first byte of the share of secret A and of secret B are both ~uniform.
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        for s in [[0u8; SECRET_LEN], [0xFF; SECRET_LEN]] {
            let mut counts = [0usize; 16];
            let trials = 16_000;
            for _ in 0..trials {
                let share = &split(&s, 2, &[1, 2, 3], &mut rng).unwrap()[0];
                counts[(share.y[0] & 15) as usize] += 1;
            }
            let expected = trials as f64 / 16.0;
            let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
            // 15 degrees of freedom; 37.7 is the 0.1% critical value.
            assert!(chi2 < 37.7, "chi2 = {chi2}");
        }
    }

    #[test]
    fn inconsistent_and_malformed_inputs_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let s = secret(9);
        let mut shares = split(&s, 3, &[1, 2, 3, 4], &mut rng).unwrap();
        shares[3].y[5] ^= 1;
        assert_eq!(reconstruct(&shares, 3).unwrap_err(), ShamirError::Inconsistent { x: 4 });
        let dup = vec![shares[0].clone(), shares[0].clone(), shares[1].clone()];
        assert_eq!(reconstruct(&dup, 3).unwrap_err(), ShamirError::DuplicateX(1));
        assert_eq!(
            split(&s, 0, &[1, 2], &mut rng).unwrap_err(),
            ShamirError::BadThreshold { threshold: 0, shares: 2 }
        );
        assert_eq!(
            split(&s, 3, &[1, 2], &mut rng).unwrap_err(),
            ShamirError::BadThreshold { threshold: 3, shares: 2 }
        );
        assert_eq!(split(&s, 2, &[0, 2], &mut rng).unwrap_err(), ShamirError::ZeroX);
        assert_eq!(split(&s, 2, &[2, 2], &mut rng).unwrap_err(), ShamirError::DuplicateX(2));
    }

    #[test]
    fn shares_print_redacted_and_serialize() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let share = split(&secret(1), 2, &[1, 2], &mut rng).unwrap().remove(0);
        let printed = format!("{share:?}");
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains(&format!("{:?}", share.y)));
        let json = serde_json::to_string(&share).unwrap();
        let back: Share = serde_json::from_str(&json).unwrap();
        assert_eq!(back, share);
    }
}
