//! Plaintext encodings: signed integers, fixed-point reals, and several values packed in
//! one plaintext (the "GH packing" of SecureBoost+, Chen et al., arXiv 2110.10927 §4.1).
//!
//! A [`Packer`] lays out `slots` signed values at `slot_bits` apart:
//! `M = Σ_j v_j · 2^(j·slot_bits)`. Each term has `|v| < 2^value_bits`, and the slot is
//! wide enough for a sum of `max_terms` terms: `slot_bits = value_bits + ⌈log2 max_terms⌉
//! + 1`, so `|Σ v| < 2^(slot_bits − 1)`. Sums of packed plaintexts are packed sums;
//! decoding takes balanced digits (each slot in `(−2^(slot_bits−1), 2^(slot_bits−1))`),
//! which absorbs the borrows that negative slots cause in the slots above them. No
//! offset is added, so decoding needs no term count, and a negative total is encrypted
//! for free (see the module doc of [`super`]).
//!
//! Compression (SecureBoost+ §4.2, "cipher compressing"): `k` ciphertexts of packed sums
//! combine into one as `Σ_i 2^(i·B)·c_i` with `B = slots · slot_bits`, which is itself a
//! packing with `k·slots` slots: [`Packer::unpack_many`] decodes it.

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{One, ToPrimitive, Zero};

use super::HeError;
use super::PublicKey;

/// A signed integer plaintext.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Plaintext(BigInt);

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({})", self.0)
    }
}

impl From<i64> for Plaintext {
    fn from(v: i64) -> Self {
        Self(BigInt::from(v))
    }
}

impl From<i128> for Plaintext {
    fn from(v: i128) -> Self {
        Self(BigInt::from(v))
    }
}

impl From<u64> for Plaintext {
    fn from(v: u64) -> Self {
        Self(BigInt::from(v))
    }
}

impl From<BigInt> for Plaintext {
    fn from(v: BigInt) -> Self {
        Self(v)
    }
}

impl Plaintext {
    /// The value.
    pub fn as_bigint(&self) -> &BigInt {
        &self.0
    }

    /// The value if it fits in an `i128`.
    pub fn to_i128(&self) -> Option<i128> {
        self.0.to_i128()
    }

    /// Bits of `|m|`.
    pub fn magnitude_bits(&self) -> u64 {
        self.0.bits()
    }

    pub(crate) fn sign_magnitude(&self) -> (bool, Vec<u64>) {
        let (sign, digits) = self.0.to_u64_digits();
        let digits = if digits.is_empty() { vec![0] } else { digits };
        (sign == Sign::Minus, digits)
    }

    pub(crate) fn from_sign_magnitude(negative: bool, mag: &[u64]) -> Self {
        let mut bytes = Vec::with_capacity(mag.len() * 8);
        for x in mag {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let sign = if negative { Sign::Minus } else { Sign::Plus };
        Self(BigInt::from_bytes_le(sign, &bytes))
    }
}

/// Fixed-point scale for reals: `x ↦ round(x · 2^frac_bits)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FixedScale {
    /// Fractional bits.
    pub frac_bits: u32,
}

impl FixedScale {
    /// A scale of `2^frac_bits`.
    pub fn new(frac_bits: u32) -> Self {
        Self { frac_bits }
    }

    /// `round(x · 2^frac_bits)`.
    ///
    /// # Errors
    /// [`HeError::FixedPointRange`] if `x` is not finite or the result needs more than 63
    /// bits.
    pub fn encode(&self, x: f64) -> Result<i64, HeError> {
        let v = (x * 2f64.powi(self.frac_bits as i32)).round();
        if !v.is_finite() || v.abs() >= 2f64.powi(63) {
            return Err(HeError::FixedPointRange { value: x, frac_bits: self.frac_bits });
        }
        Ok(v as i64)
    }

    /// `v / 2^frac_bits`.
    pub fn decode(&self, v: i128) -> f64 {
        v as f64 / 2f64.powi(self.frac_bits as i32)
    }

    /// The largest rounding error of one encoding.
    pub fn resolution(&self) -> f64 {
        2f64.powi(-(self.frac_bits as i32) - 1)
    }
}

/// Several signed values per plaintext, with headroom for sums (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Packer {
    value_bits: u32,
    slots: u32,
    max_terms: u64,
    slot_bits: u32,
}

impl Packer {
    /// Values with `|v| < 2^value_bits` (`1 ≤ value_bits ≤ 63`), `slots` per plaintext,
    /// sums of up to `max_terms` terms.
    ///
    /// # Errors
    /// [`HeError::BadPacker`] if a parameter is out of range or a slot would exceed 127
    /// bits (sums are returned as `i128`).
    pub fn new(value_bits: u32, slots: u32, max_terms: u64) -> Result<Self, HeError> {
        if !(1..=63).contains(&value_bits) {
            return Err(HeError::BadPacker(format!("value_bits {value_bits} is outside 1..=63")));
        }
        if slots == 0 {
            return Err(HeError::BadPacker("at least one slot is needed".into()));
        }
        if max_terms == 0 {
            return Err(HeError::BadPacker("max_terms must be at least 1".into()));
        }
        let headroom = 64 - (max_terms - 1).leading_zeros(); // ⌈log2 max_terms⌉
        let slot_bits = value_bits + headroom + 1;
        if slot_bits > 127 {
            return Err(HeError::BadPacker(format!(
                "{value_bits}-bit values summed {max_terms} times need {slot_bits}-bit slots; at most 127"
            )));
        }
        Ok(Self { value_bits, slots, max_terms, slot_bits })
    }

    /// As many slots as fit the key.
    ///
    /// # Errors
    /// As [`Self::new`], or [`HeError::PackingTooLarge`] if not even one slot fits.
    pub fn for_key(pk: &PublicKey, value_bits: u32, max_terms: u64) -> Result<Self, HeError> {
        let one = Self::new(value_bits, 1, max_terms)?;
        let slots = pk.plaintext_bits() / one.slot_bits;
        if slots == 0 {
            return Err(HeError::PackingTooLarge {
                needed: one.slot_bits as u64,
                available: pk.plaintext_bits(),
            });
        }
        Self::new(value_bits, slots, max_terms)
    }

    /// Bits per value.
    pub fn value_bits(&self) -> u32 {
        self.value_bits
    }

    /// Slots per plaintext.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Terms a slot can sum.
    pub fn max_terms(&self) -> u64 {
        self.max_terms
    }

    /// Bits per slot.
    pub fn slot_bits(&self) -> u32 {
        self.slot_bits
    }

    /// Bits of one packed plaintext: `slots · slot_bits`.
    pub fn total_bits(&self) -> u32 {
        self.slots * self.slot_bits
    }

    /// Largest legitimate magnitude of a decoded slot.
    pub fn slot_bound(&self) -> i128 {
        self.max_terms as i128 * ((1i128 << self.value_bits) - 1)
    }

    /// Checks the layout against a key.
    ///
    /// # Errors
    /// [`HeError::PackingTooLarge`].
    pub fn check_fits(&self, pk: &PublicKey) -> Result<(), HeError> {
        if self.total_bits() > pk.plaintext_bits() {
            return Err(HeError::PackingTooLarge {
                needed: self.total_bits() as u64,
                available: pk.plaintext_bits(),
            });
        }
        Ok(())
    }

    /// How many packed sums [`PublicKey::compress`] puts in one ciphertext.
    pub fn compression_factor(&self, pk: &PublicKey) -> usize {
        (pk.plaintext_bits() / self.total_bits()) as usize
    }

    /// Packs `values` (exactly `slots` of them; slot 0 is the least significant).
    ///
    /// # Errors
    /// [`HeError::LengthMismatch`], [`HeError::ValueTooLarge`].
    pub fn pack(&self, values: &[i64]) -> Result<Plaintext, HeError> {
        if values.len() != self.slots as usize {
            return Err(HeError::LengthMismatch {
                what: "values to pack",
                expected: self.slots as usize,
                got: values.len(),
            });
        }
        let limit = 1i128 << self.value_bits;
        let mut m = BigInt::zero();
        for (j, &v) in values.iter().enumerate().rev() {
            if (v as i128).abs() >= limit {
                return Err(HeError::ValueTooLarge {
                    slot: j,
                    value: v as i128,
                    value_bits: self.value_bits,
                });
            }
            m <<= self.slot_bits;
            m += v;
        }
        Ok(Plaintext(m))
    }

    /// Packs reals after scaling by `scale`.
    ///
    /// # Errors
    /// As [`Self::pack`] and [`FixedScale::encode`].
    pub fn pack_f64(&self, values: &[f64], scale: FixedScale) -> Result<Plaintext, HeError> {
        let ints = values.iter().map(|&x| scale.encode(x)).collect::<Result<Vec<_>, _>>()?;
        self.pack(&ints)
    }

    /// Decodes the `slots` slot sums of one packed plaintext.
    ///
    /// # Errors
    /// [`HeError::SlotOverflow`] if a slot exceeds what `max_terms` terms can sum,
    /// [`HeError::PackedOverflow`] if bits remain above the slots. Either means overflow,
    /// a wrong layout or a tampered ciphertext; do not reveal such a plaintext.
    pub fn unpack(&self, m: &Plaintext) -> Result<Vec<i128>, HeError> {
        self.unpack_many(m, 1)
    }

    /// Decodes `groups · slots` slot sums from a compressed plaintext (group `g`, slot `j`
    /// at index `g·slots + j`).
    ///
    /// # Errors
    /// As [`Self::unpack`].
    pub fn unpack_many(&self, m: &Plaintext, groups: usize) -> Result<Vec<i128>, HeError> {
        let b = self.slot_bits;
        let modulus = BigInt::one() << b;
        let half = BigInt::one() << (b - 1);
        let bound = self.slot_bound();
        let count = groups * self.slots as usize;
        let mut x = m.0.clone();
        let mut out = Vec::with_capacity(count);
        for slot in 0..count {
            let mut r = x.mod_floor(&modulus);
            if r >= half {
                r -= &modulus;
            }
            x -= &r;
            x >>= b;
            // |r| < 2^126 by construction, so it fits
            let v = r.to_i128().unwrap_or(i128::MAX);
            if v.abs() > bound {
                return Err(HeError::SlotOverflow {
                    slot,
                    value: v,
                    bound,
                    max_terms: self.max_terms,
                });
            }
            out.push(v);
        }
        if !x.is_zero() {
            return Err(HeError::PackedOverflow { slots: count });
        }
        Ok(out)
    }

    /// As [`Self::unpack_many`], scaled back to reals.
    ///
    /// # Errors
    /// As [`Self::unpack_many`].
    pub fn unpack_f64(
        &self,
        m: &Plaintext,
        groups: usize,
        scale: FixedScale,
    ) -> Result<Vec<f64>, HeError> {
        Ok(self.unpack_many(m, groups)?.into_iter().map(|v| scale.decode(v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_with_negative_slots_and_full_sums() {
        let p = Packer::new(20, 3, 1000).unwrap();
        assert_eq!(p.slot_bits(), 20 + 10 + 1);
        let max = (1i64 << 20) - 1;
        let terms = [[max, -max, 0], [-max, -max, max], [5, -3, -max]];
        for t in &terms {
            assert_eq!(
                p.unpack(&p.pack(t).unwrap()).unwrap(),
                t.iter().map(|&v| v as i128).collect::<Vec<_>>()
            );
        }
        // 1000 terms of the extreme values in every slot
        let mut sum = BigInt::zero();
        let one = p.pack(&[-max, max, -max]).unwrap();
        for _ in 0..1000 {
            sum += &one.0;
        }
        let got = p.unpack(&Plaintext(sum)).unwrap();
        assert_eq!(got, vec![-1000 * max as i128, 1000 * max as i128, -1000 * max as i128]);
        assert!(matches!(p.pack(&[1 << 20, 0, 0]), Err(HeError::ValueTooLarge { slot: 0, .. })));
        assert!(matches!(p.pack(&[0, 0]), Err(HeError::LengthMismatch { .. })));
        // one term too many overflows the bound
        let mut over = BigInt::zero();
        for _ in 0..1001 {
            over += &one.0;
        }
        assert!(p.unpack(&Plaintext(over)).is_err());
        assert!(matches!(
            p.unpack(&Plaintext(BigInt::one() << 200)),
            Err(HeError::PackedOverflow { .. })
        ));
    }

    #[test]
    fn fixed_scale_rounds_and_rejects() {
        let s = FixedScale::new(16);
        assert_eq!(s.encode(1.5).unwrap(), 3 << 15);
        assert_eq!(s.encode(-0.25).unwrap(), -(1 << 14));
        assert!((s.decode(s.encode(0.123456).unwrap() as i128) - 0.123456).abs() <= s.resolution());
        assert!(s.encode(f64::NAN).is_err());
        assert!(s.encode(1e300).is_err());
    }

    #[test]
    fn packer_parameters_are_checked() {
        assert!(Packer::new(0, 1, 1).is_err());
        assert!(Packer::new(64, 1, 1).is_err());
        assert!(Packer::new(10, 0, 1).is_err());
        assert!(Packer::new(10, 1, 0).is_err());
        assert!(Packer::new(63, 1, u64::MAX).is_err());
        assert_eq!(Packer::new(10, 1, 1).unwrap().slot_bits(), 11);
        assert_eq!(Packer::new(10, 1, 2).unwrap().slot_bits(), 12);
        assert_eq!(Packer::new(10, 1, 3).unwrap().slot_bits(), 13);
    }
}
