//! Little-endian `u64` limb arithmetic used by the HE schemes.
//!
//! Schoolbook algorithms after Knuth, *The Art of Computer Programming* Vol. 2, §4.3.1,
//! plus Hensel's exact division (Jebelean, "An algorithm for exact division", J. Symbolic
//! Computation 15, 1993), which computes `L(x) = (x − 1) / p` in the decryption of both
//! schemes without a general division. Secret values live in these limb vectors (not in
//! `num-bigint` integers) so that they can be zeroized.

use std::cmp::Ordering;

use num_bigint::BigUint;

/// `a + b·c + carry` as (low, high).
#[inline(always)]
pub(crate) fn mac(a: u64, b: u64, c: u64, carry: u64) -> (u64, u64) {
    let x = (a as u128) + (b as u128) * (c as u128) + (carry as u128);
    (x as u64, (x >> 64) as u64)
}

/// Number of significant bits.
pub(crate) fn bits(a: &[u64]) -> u32 {
    for i in (0..a.len()).rev() {
        if a[i] != 0 {
            return 64 * i as u32 + (64 - a[i].leading_zeros());
        }
    }
    0
}

pub(crate) fn is_zero(a: &[u64]) -> bool {
    a.iter().all(|&x| x == 0)
}

/// Bit `i` (0 = least significant); bits beyond the slice are 0.
#[inline]
pub(crate) fn bit(a: &[u64], i: u32) -> bool {
    let limb = (i / 64) as usize;
    limb < a.len() && (a[limb] >> (i % 64)) & 1 == 1
}

/// `w` bits starting at bit `i` (w ≤ 32).
#[inline]
pub(crate) fn window(a: &[u64], i: u32, w: u32) -> usize {
    let limb = (i / 64) as usize;
    let off = i % 64;
    if limb >= a.len() {
        return 0;
    }
    let mut x = a[limb] >> off;
    if off + w > 64 && limb + 1 < a.len() {
        x |= a[limb + 1] << (64 - off);
    }
    (x & ((1u64 << w) - 1)) as usize
}

/// Compares two numbers of possibly different lengths.
pub(crate) fn cmp(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    for i in (0..n).rev() {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

/// `a += b` (b no longer than a); returns the carry out of `a`.
pub(crate) fn add_assign(a: &mut [u64], b: &[u64]) -> bool {
    let mut carry = false;
    for (i, x) in a.iter_mut().enumerate() {
        let y = b.get(i).copied().unwrap_or(0);
        if i >= b.len() && !carry {
            break;
        }
        let (s1, c1) = x.overflowing_add(y);
        let (s2, c2) = s1.overflowing_add(carry as u64);
        *x = s2;
        carry = c1 | c2;
    }
    carry
}

/// `a -= b` (b no longer than a); returns the borrow out of `a`.
pub(crate) fn sub_assign(a: &mut [u64], b: &[u64]) -> bool {
    let mut borrow = false;
    for (i, x) in a.iter_mut().enumerate() {
        let y = b.get(i).copied().unwrap_or(0);
        if i >= b.len() && !borrow {
            break;
        }
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(borrow as u64);
        *x = d2;
        borrow = b1 | b2;
    }
    borrow
}

/// `a += x` for a single limb; returns the carry.
pub(crate) fn add_small(a: &mut [u64], x: u64) -> bool {
    add_assign(a, &[x])
}

/// `a -= x` for a single limb; returns the borrow.
pub(crate) fn sub_small(a: &mut [u64], x: u64) -> bool {
    sub_assign(a, &[x])
}

/// Full product `a·b` (length `a.len() + b.len()`).
pub(crate) fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; a.len() + b.len()];
    for (i, &bi) in b.iter().enumerate() {
        if bi == 0 {
            continue;
        }
        let mut carry = 0u64;
        for (j, &aj) in a.iter().enumerate() {
            let (lo, hi) = mac(out[i + j], aj, bi, carry);
            out[i + j] = lo;
            carry = hi;
        }
        out[i + a.len()] = carry;
    }
    out
}

/// `a·x` for a single limb (length `a.len() + 1`).
pub(crate) fn mul_small(a: &[u64], x: u64) -> Vec<u64> {
    let mut out = vec![0u64; a.len() + 1];
    let mut carry = 0u64;
    for (j, &aj) in a.iter().enumerate() {
        let (lo, hi) = mac(0, aj, x, carry);
        out[j] = lo;
        carry = hi;
    }
    out[a.len()] = carry;
    out
}

/// `a mod d` for a single-limb divisor `d > 0`.
pub(crate) fn rem_small(a: &[u64], d: u64) -> u64 {
    let mut r: u128 = 0;
    for &x in a.iter().rev() {
        r = ((r << 64) | x as u128) % d as u128;
    }
    r as u64
}

/// `a >> 1` in place.
pub(crate) fn shr1(a: &mut [u64]) {
    let mut carry = 0u64;
    for x in a.iter_mut().rev() {
        let next = *x & 1;
        *x = (*x >> 1) | (carry << 63);
        carry = next;
    }
}

/// The `len`-limb vector with only bit `i` set.
pub(crate) fn pow2(i: u32, len: usize) -> Vec<u64> {
    let mut out = vec![0u64; len];
    if ((i / 64) as usize) < len {
        out[(i / 64) as usize] = 1u64 << (i % 64);
    }
    out
}

/// `x / p` for `x` divisible by odd `p`, with `pinv = p⁻¹ mod 2⁶⁴`; the quotient is
/// returned in `qlen` limbs (it must fit).
///
/// Hensel (right-to-left) exact division: each step clears the lowest limb.
pub(crate) fn exact_div(x: &[u64], p: &[u64], pinv: u64, qlen: usize) -> Vec<u64> {
    let mut r = x.to_vec();
    r.resize(x.len().max(qlen + p.len()) + 1, 0);
    let mut q = vec![0u64; qlen];
    for i in 0..qlen {
        let qi = r[i].wrapping_mul(pinv);
        q[i] = qi;
        // r -= qi·p·2^(64i)
        let mut borrow = 0u64;
        let mut carry = 0u64;
        for (j, &pj) in p.iter().enumerate() {
            let prod = (qi as u128) * (pj as u128) + carry as u128;
            carry = (prod >> 64) as u64;
            let (d1, b1) = r[i + j].overflowing_sub(prod as u64);
            let (d2, b2) = d1.overflowing_sub(borrow);
            r[i + j] = d2;
            borrow = (b1 | b2) as u64;
        }
        let mut k = i + p.len();
        let mut sub = carry as u128 + borrow as u128;
        while sub != 0 && k < r.len() {
            let (d, b) = r[k].overflowing_sub(sub as u64);
            r[k] = d;
            sub = (sub >> 64) + b as u128;
            k += 1;
        }
    }
    zeroize::Zeroize::zeroize(&mut r);
    q
}

/// `-p⁻¹ mod 2⁶⁴` for odd `p0` (Newton iteration).
pub(crate) fn neg_inv64(p0: u64) -> u64 {
    inv64(p0).wrapping_neg()
}

/// `p⁻¹ mod 2⁶⁴` for odd `p0`.
pub(crate) fn inv64(p0: u64) -> u64 {
    let mut inv: u64 = 1;
    for _ in 0..7 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(p0.wrapping_mul(inv)));
    }
    inv
}

/// Strips high zero limbs (keeps at least one limb).
pub(crate) fn trimmed(a: &[u64]) -> &[u64] {
    let mut n = a.len();
    while n > 1 && a[n - 1] == 0 {
        n -= 1;
    }
    &a[..n]
}

/// `a` padded or truncated to `len` limbs (high limbs beyond `len` must be zero).
pub(crate) fn resized(a: &[u64], len: usize) -> Vec<u64> {
    let mut v = a[..a.len().min(len)].to_vec();
    v.resize(len, 0);
    v
}

/// Limbs of a big-endian byte string, `len` limbs; `None` if it does not fit.
pub(crate) fn from_be_bytes(bytes: &[u8], len: usize) -> Option<Vec<u64>> {
    let mut out = vec![0u64; len];
    for (i, chunk) in bytes.rchunks(8).enumerate() {
        let mut buf = [0u8; 8];
        buf[8 - chunk.len()..].copy_from_slice(chunk);
        let v = u64::from_be_bytes(buf);
        if i < len {
            out[i] = v;
        } else if v != 0 {
            return None;
        }
    }
    Some(out)
}

/// Writes `a` big-endian into exactly `out.len()` bytes (high bits beyond are dropped).
pub(crate) fn write_be_bytes(a: &[u64], out: &mut [u8]) {
    out.fill(0);
    let n = out.len();
    for (i, &limb) in a.iter().enumerate() {
        let bytes = limb.to_be_bytes();
        for (k, &b) in bytes.iter().rev().enumerate() {
            let pos = i * 8 + k;
            if pos < n {
                out[n - 1 - pos] = b;
            }
        }
    }
}

pub(crate) fn to_biguint(a: &[u64]) -> BigUint {
    let mut bytes = Vec::with_capacity(a.len() * 8);
    for x in a {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    BigUint::from_bytes_le(&bytes)
}

/// `None` if `x` needs more than `len` limbs.
pub(crate) fn from_biguint(x: &BigUint, len: usize) -> Option<Vec<u64>> {
    let digits: Vec<u64> = x.iter_u64_digits().collect();
    if digits.len() > len {
        return None;
    }
    Some(resized(&digits, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_division_recovers_quotient() {
        let p = vec![0xffff_ffff_ffff_ffc5u64, 0x1234_5678_9abc_def1];
        let q = vec![0x0fed_cba9_8765_4321u64, 0x1111];
        let x = mul(&p, &q);
        let got = exact_div(&x, &p, inv64(p[0]), 2);
        assert_eq!(got, q);
    }

    #[test]
    fn byte_round_trip_and_windows() {
        let a = vec![0x0102_0304_0506_0708u64, 0x0a0b];
        let mut buf = [0u8; 12];
        write_be_bytes(&a, &mut buf);
        assert_eq!(from_be_bytes(&buf, 2).unwrap(), a);
        assert_eq!(from_be_bytes(&[1; 17], 2), None);
        assert_eq!(window(&a, 60, 8), ((a[0] >> 60) | (a[1] << 4)) as usize & 0xff);
        assert_eq!(bits(&a), 64 + 12);
    }
}
