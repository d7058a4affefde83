//! Fixed-point encoding of real vectors into the ring `Z_{2^k}`.
//!
//! Secure aggregation (Bonawitz et al., "Practical Secure Aggregation for
//! Privacy-Preserving Machine Learning", CCS 2017) adds masked vectors in a finite
//! group, so every real value is first clipped to `[-clip, clip]`, scaled by
//! `2^frac_bits`, rounded to the nearest integer and reduced modulo `2^k`
//! (two's complement). A sum of `n` encodings decodes exactly as long as
//! `n · ceil(clip · 2^frac_bits) < 2^(k-1)`; [`FixedPoint::for_sum`] picks the
//! smallest `k` that satisfies this (the rule XayNet uses for its masking
//! modulus), so uploads stay close to the plaintext size.
//!
//! Error bound: each encoding rounds by at most `2^-(frac_bits+1)`, so a decoded
//! sum of `n` values differs from the sum of the clipped values by at most
//! `n · 2^-(frac_bits+1)` ([`FixedPoint::sum_error_bound`]).

use serde::{Deserialize, Serialize};

/// Why an encoding cannot be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FixedPointError {
    /// The requested parameters need more than 64 ring bits.
    #[error(
        "{n_summands} summands of magnitude {clip} at {frac_bits} fractional bits need {needed} ring bits; at most 64 are supported"
    )]
    RingTooSmall {
        /// Number of values that will be added.
        n_summands: usize,
        /// Clipping bound.
        clip: f64,
        /// Fractional bits.
        frac_bits: u32,
        /// Ring bits the sum would need.
        needed: u32,
    },
    /// The clipping bound is not a positive finite number.
    #[error("clipping bound must be positive and finite, got {0}")]
    BadClip(f64),
}

/// A fixed-point code for sums of up to `n_summands` vectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FixedPoint {
    /// Values are clipped to `[-clip, clip]` before encoding.
    pub clip: f64,
    /// Scale is `2^frac_bits`.
    pub frac_bits: u32,
    /// Ring is `Z_{2^ring_bits}`, `ring_bits <= 64`.
    pub ring_bits: u32,
}

impl FixedPoint {
    /// The smallest ring that holds the sum of `n_summands` clipped values.
    ///
    /// # Errors
    /// [`FixedPointError`] when `clip` is not positive and finite or more than 64 bits are needed.
    pub fn for_sum(n_summands: usize, clip: f64, frac_bits: u32) -> Result<Self, FixedPointError> {
        if !(clip.is_finite() && clip > 0.0) {
            return Err(FixedPointError::BadClip(clip));
        }
        // Each encoding is round(x · 2^f) with |x| <= clip, so at most ceil(clip · 2^f) in
        // magnitude (rounding can reach it: 0.999999 · 2^8 rounds to 256). The ring must hold
        // n of them: 2^(k-1) > n · ceil(clip · 2^f), i.e. k = bits(n · ceil(clip · 2^f)) + 1.
        let too_big =
            |needed| FixedPointError::RingTooSmall { n_summands, clip, frac_bits, needed };
        let per = (clip * 2f64.powi(frac_bits as i32)).ceil();
        if per.is_nan() || per >= 2f64.powi(100) {
            return Err(too_big(101));
        }
        let max_abs = (n_summands.max(1) as u128) * (per as u128);
        let needed = (128 - max_abs.leading_zeros()) + 1;
        if needed > 64 {
            return Err(too_big(needed));
        }
        Ok(Self { clip, frac_bits, ring_bits: needed })
    }

    fn mask(&self) -> u64 {
        if self.ring_bits == 64 { u64::MAX } else { (1u64 << self.ring_bits) - 1 }
    }

    fn scale(&self) -> f64 {
        2f64.powi(self.frac_bits as i32)
    }

    /// Encodes one value (clipped; `NaN` encodes as 0).
    pub fn encode(&self, x: f64) -> u64 {
        self.encode_with(x, self.scale(), self.mask())
    }

    fn encode_with(&self, x: f64, scale: f64, mask: u64) -> u64 {
        let x = if x.is_nan() { 0.0 } else { x.clamp(-self.clip, self.clip) };
        let q = (x * scale).round() as i64;
        (q as u64) & mask
    }

    /// Decodes a ring element (a single encoding or a sum of encodings).
    pub fn decode(&self, v: u64) -> f64 {
        // Sign-extend the k-bit two's-complement value.
        let shift = 64 - self.ring_bits;
        let signed = ((v << shift) as i64) >> shift;
        signed as f64 / self.scale()
    }

    /// Adds two ring elements.
    pub fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b) & self.mask()
    }

    /// Subtracts `b` from `a` in the ring.
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        a.wrapping_sub(b) & self.mask()
    }

    /// Encodes a vector.
    pub fn encode_vec(&self, xs: &[f64]) -> Vec<u64> {
        let (scale, mask) = (self.scale(), self.mask());
        xs.iter().map(|&x| self.encode_with(x, scale, mask)).collect()
    }

    /// Decodes a vector.
    pub fn decode_vec(&self, vs: &[u64]) -> Vec<f64> {
        vs.iter().map(|&v| self.decode(v)).collect()
    }

    /// Bytes per element on the wire (`ceil(ring_bits / 8)`).
    pub fn bytes_per_element(&self) -> usize {
        self.ring_bits.div_ceil(8) as usize
    }

    /// Largest absolute error of a decoded sum of `n` encodings against the sum of the clipped inputs.
    pub fn sum_error_bound(&self, n: usize) -> f64 {
        n as f64 * 0.5 / self.scale()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_half_a_step() {
        let fp = FixedPoint::for_sum(1, 100.0, 16).unwrap();
        for x in [-100.0, -3.25, -1e-9, 0.0, 0.7, 42.123_456, 100.0] {
            let y = fp.decode(fp.encode(x));
            assert!((x - y).abs() <= fp.sum_error_bound(1), "{x} -> {y}");
        }
    }

    /// L2 of the runtime-v2 review: two inputs at the bound 0.999999 with 8 fractional bits
    /// round to 256 each; their sum must decode as +2, not wrap to −2.
    #[test]
    fn sums_at_the_clip_bound_never_wrap() {
        let fp = FixedPoint::for_sum(2, 0.999_999, 8).unwrap();
        let s = fp.add(fp.encode(0.999_999), fp.encode(0.999_999));
        assert_eq!(fp.decode(s), 2.0);
        let s = fp.add(fp.encode(-0.999_999), fp.encode(-0.999_999));
        assert_eq!(fp.decode(s), -2.0);
    }

    /// Property: for many (n, clip, frac_bits), n values anywhere in [−clip, clip] (the bounds
    /// included) sum and decode within n · 2^-(f+1) of their clipped sum.
    #[test]
    fn sums_decode_within_the_bound_for_random_parameters() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        for _ in 0..2000 {
            let n = rng.random_range(1..40usize);
            let clip = rng.random_range(1e-3..1e6f64);
            let f = rng.random_range(0..30u32);
            let Ok(fp) = FixedPoint::for_sum(n, clip, f) else { continue };
            let xs: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => clip,
                    1 => -clip,
                    2 => clip * 2.0,
                    _ => rng.random_range(-clip..clip),
                })
                .collect();
            let ring = xs.iter().fold(0u64, |acc, &x| fp.add(acc, fp.encode(x)));
            let want: f64 = xs.iter().map(|x| x.clamp(-clip, clip)).sum();
            let got = fp.decode(ring);
            assert!(
                (got - want).abs() <= fp.sum_error_bound(n) + want.abs() * 1e-12,
                "n={n} clip={clip} f={f}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn clipping_and_nan() {
        let fp = FixedPoint::for_sum(1, 2.0, 10).unwrap();
        assert_eq!(fp.decode(fp.encode(1e9)), 2.0);
        assert_eq!(fp.decode(fp.encode(-1e9)), -2.0);
        assert_eq!(fp.decode(fp.encode(f64::NAN)), 0.0);
    }

    #[test]
    fn sums_of_many_parties_decode_exactly_up_to_the_bound() {
        let n = 10;
        let fp = FixedPoint::for_sum(n, 8.0, 20).unwrap();
        // 10 * 8 * 2^20 < 2^27 -> 28 bits: the smallest ring that holds the sum.
        assert_eq!(fp.ring_bits, 28);
        assert_eq!(fp.bytes_per_element(), 4);
        let xs: Vec<f64> =
            (0..n).map(|i| if i % 2 == 0 { 8.0 } else { -7.999 + i as f64 * 0.01 }).collect();
        let sum = xs.iter().fold(0u64, |acc, &x| fp.add(acc, fp.encode(x)));
        let exact: f64 = xs.iter().sum();
        assert!((fp.decode(sum) - exact).abs() <= fp.sum_error_bound(n));
        // All at the clip bound, both signs: still no wrap-around.
        let top = (0..n).fold(0u64, |acc, _| fp.add(acc, fp.encode(8.0)));
        assert_eq!(fp.decode(top), 80.0);
        let bottom = (0..n).fold(0u64, |acc, _| fp.add(acc, fp.encode(-8.0)));
        assert_eq!(fp.decode(bottom), -80.0);
    }

    #[test]
    fn subtraction_undoes_addition() {
        let fp = FixedPoint::for_sum(3, 1.0, 12).unwrap();
        let a = fp.encode(0.75);
        let b = fp.encode(-0.5);
        assert_eq!(fp.sub(fp.add(a, b), b), a);
    }

    #[test]
    fn impossible_rings_are_errors() {
        assert!(matches!(
            FixedPoint::for_sum(1000, 1e12, 40),
            Err(FixedPointError::RingTooSmall { .. })
        ));
        assert_eq!(FixedPoint::for_sum(2, 0.0, 8), Err(FixedPointError::BadClip(0.0)));
        assert!(FixedPoint::for_sum(2, f64::INFINITY, 8).is_err());
    }
}
