//! Fixed-width Montgomery arithmetic (Montgomery, "Modular multiplication without trial
//! division", Math. Comp. 44, 1985) over little-endian `u64` limbs.
//!
//! The multiplication is the CIOS method of Koç, Acar and Kaliski ("Analyzing and
//! comparing Montgomery multiplication algorithms", IEEE Micro 16(3), 1996): one pass over
//! the limbs of `b`, each pass a multiply-accumulate row and a reduction row. For the limb
//! counts the schemes use (11, 16, 22, 24, 32, 48, 64, 96 and a few small ones) the rows
//! are fully unrolled with `seq-macro`, which measured 20–30 % faster than the rolled
//! loop and than product scanning on this machine, and 1.3–2× faster than `num-bigint`
//! (multiply then `%`) or `crypto-bigint`'s `BoxedMontyForm` (see `he/mod.rs`). Other
//! sizes use a rolled loop. No `unsafe`; products are `u64 × u64 → u128`.
//!
//! Values are kept in Montgomery form `x·R mod n` with `R = 2^(64·limbs)`. The kernels
//! accept `a < R`, `b < n` and return a value `< n`; they are not constant-time (the final
//! subtraction branches), see the timing note in `he/mod.rs`.
//!
//! [`FixedBase`] is the windowed fixed-base exponentiation of Brickell, Gordon, McCurley
//! and Wilson ("Fast exponentiation with precomputation", Eurocrypt 1992) in its simplest
//! form: one table row per `w`-bit digit, so `g^e` costs one multiplication per non-zero
//! digit and no squaring.

use zeroize::Zeroize;

use super::limbs;

macro_rules! unrolled_kernel {
    ($name:ident, $n:literal) => {
        #[inline(never)]
        fn $name(a: &[u64; $n], b: &[u64; $n], n: &[u64; $n], ninv: u64, out: &mut [u64; $n]) {
            const N: usize = $n;
            let mut t = [0u64; N];
            let mut t_n = 0u64;
            for &bi in b.iter() {
                let mut c = 0u64;
                seq_macro::seq!(j in 0..$n {
                    let (x, cc) = limbs::mac(t[j], a[j], bi, c);
                    t[j] = x;
                    c = cc;
                });
                let s = (t_n as u128) + c as u128;
                let t_n0 = s as u64;
                let t_n1 = (s >> 64) as u64;
                let m = t[0].wrapping_mul(ninv);
                let (_, mut c) = limbs::mac(t[0], m, n[0], 0);
                seq_macro::seq!(j in 1..$n {
                    let (x, cc) = limbs::mac(t[j], m, n[j], c);
                    t[j - 1] = x;
                    c = cc;
                });
                let s = (t_n0 as u128) + c as u128;
                t[N - 1] = s as u64;
                t_n = t_n1 + (s >> 64) as u64;
            }
            if t_n != 0 || limbs::cmp(&t, n) != std::cmp::Ordering::Less {
                limbs::sub_assign(&mut t, n);
            }
            *out = t;
        }
    };
}

unrolled_kernel!(mul4, 4);
unrolled_kernel!(mul6, 6);
unrolled_kernel!(mul8, 8);
unrolled_kernel!(mul11, 11);
unrolled_kernel!(mul12, 12);
unrolled_kernel!(mul16, 16);
unrolled_kernel!(mul22, 22);
unrolled_kernel!(mul24, 24);
unrolled_kernel!(mul32, 32);
unrolled_kernel!(mul48, 48);
unrolled_kernel!(mul64, 64);
unrolled_kernel!(mul96, 96);

/// Rolled CIOS for the sizes without an unrolled kernel.
fn mul_rolled(a: &[u64], b: &[u64], n: &[u64], ninv: u64, out: &mut [u64]) {
    let len = n.len();
    let mut t = vec![0u64; len];
    let mut t_n = 0u64;
    for &bi in b.iter() {
        let mut c = 0u64;
        for j in 0..len {
            let (x, cc) = limbs::mac(t[j], a[j], bi, c);
            t[j] = x;
            c = cc;
        }
        let s = (t_n as u128) + c as u128;
        let t_n0 = s as u64;
        let t_n1 = (s >> 64) as u64;
        let m = t[0].wrapping_mul(ninv);
        let (_, mut c) = limbs::mac(t[0], m, n[0], 0);
        for j in 1..len {
            let (x, cc) = limbs::mac(t[j], m, n[j], c);
            t[j - 1] = x;
            c = cc;
        }
        let s = (t_n0 as u128) + c as u128;
        t[len - 1] = s as u64;
        t_n = t_n1 + (s >> 64) as u64;
    }
    if t_n != 0 || limbs::cmp(&t, n) != std::cmp::Ordering::Less {
        limbs::sub_assign(&mut t, n);
    }
    out.copy_from_slice(&t);
    t.zeroize();
}

fn arr<const N: usize>(x: &[u64]) -> &[u64; N] {
    x.try_into().expect("operand has the modulus's limb count")
}

fn arr_mut<const N: usize>(x: &mut [u64]) -> &mut [u64; N] {
    x.try_into().expect("output has the modulus's limb count")
}

/// An odd modulus with its Montgomery constants.
///
/// Zeroized on drop: some moduli (`p²`, `q`, `t`) are secret.
#[derive(Clone)]
pub(crate) struct Modulus {
    n: Box<[u64]>,
    ninv: u64,
    /// `R mod n`: Montgomery form of 1.
    one: Box<[u64]>,
    /// `R² mod n`.
    r2: Box<[u64]>,
}

impl Drop for Modulus {
    fn drop(&mut self) {
        self.n.zeroize();
        self.one.zeroize();
        self.r2.zeroize();
        self.ninv.zeroize();
    }
}

impl Modulus {
    /// `n` must be odd and greater than 1; high zero limbs are dropped.
    pub(crate) fn new(n: &[u64]) -> Option<Self> {
        let n = limbs::trimmed(n);
        if n[0] & 1 == 0 || (n.len() == 1 && n[0] == 1) {
            return None;
        }
        let len = n.len();
        let bits = limbs::bits(n);
        // x = 2^(bits-1) < n, then doubled up to 2^(64·len) and 2^(128·len).
        let mut x = limbs::pow2(bits - 1, len);
        let double = |x: &mut Vec<u64>| {
            let top = x[len - 1] >> 63;
            let mut carry = 0u64;
            for limb in x.iter_mut() {
                let next = *limb >> 63;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if top == 1 || limbs::cmp(x, n) != std::cmp::Ordering::Less {
                limbs::sub_assign(x, n);
            }
        };
        for _ in 0..(64 * len as u32 - bits + 1) {
            double(&mut x);
        }
        let one = x.clone();
        for _ in 0..64 * len {
            double(&mut x);
        }
        let m = Self {
            n: n.into(),
            ninv: limbs::neg_inv64(n[0]),
            one: one.into_boxed_slice(),
            r2: x.into_boxed_slice(),
        };
        Some(m)
    }

    pub(crate) fn len(&self) -> usize {
        self.n.len()
    }

    pub(crate) fn n(&self) -> &[u64] {
        &self.n
    }

    /// Montgomery form of 1.
    pub(crate) fn one(&self) -> &[u64] {
        &self.one
    }

    /// `out = a·b·R⁻¹ mod n`.
    #[inline]
    pub(crate) fn mul(&self, a: &[u64], b: &[u64], out: &mut [u64]) {
        let (n, ninv) = (&self.n[..], self.ninv);
        match n.len() {
            4 => mul4(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            6 => mul6(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            8 => mul8(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            11 => mul11(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            12 => mul12(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            16 => mul16(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            22 => mul22(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            24 => mul24(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            32 => mul32(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            48 => mul48(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            64 => mul64(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            96 => mul96(arr(a), arr(b), arr(n), ninv, arr_mut(out)),
            _ => mul_rolled(a, b, n, ninv, out),
        }
    }

    /// `a = a·b·R⁻¹ mod n`.
    #[inline]
    pub(crate) fn mul_assign(&self, a: &mut [u64], b: &[u64]) {
        let mut out = [0u64; 96];
        let len = self.len();
        if len <= 96 {
            self.mul(a, b, &mut out[..len]);
            a.copy_from_slice(&out[..len]);
            out[..len].zeroize();
        } else {
            let mut v = vec![0u64; len];
            self.mul(a, b, &mut v);
            a.copy_from_slice(&v);
            v.zeroize();
        }
    }

    /// `a = a²·R⁻¹ mod n`.
    #[inline]
    pub(crate) fn square_assign(&self, a: &mut [u64]) {
        let mut out = [0u64; 96];
        let len = self.len();
        if len <= 96 {
            self.mul(a, a, &mut out[..len]);
            a.copy_from_slice(&out[..len]);
            out[..len].zeroize();
        } else {
            let mut v = vec![0u64; len];
            self.mul(a, a, &mut v);
            a.copy_from_slice(&v);
            v.zeroize();
        }
    }

    pub(crate) fn mul_vec(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; self.len()];
        self.mul(a, b, &mut out);
        out
    }

    /// Montgomery form of `a mod n` for `a < R` (one multiplication by `R²`).
    pub(crate) fn to_mont(&self, a: &[u64]) -> Vec<u64> {
        let a = limbs::resized(a, self.len());
        self.mul_vec(&a, &self.r2)
    }

    /// Normal form of a Montgomery value.
    pub(crate) fn out_of_mont(&self, a: &[u64]) -> Vec<u64> {
        let one = limbs::pow2(0, self.len());
        self.mul_vec(a, &one)
    }

    /// Montgomery form of `x mod n` for `x` of any length (Horner over `len`-limb chunks).
    pub(crate) fn reduce(&self, x: &[u64]) -> Vec<u64> {
        let len = self.len();
        let x = limbs::trimmed(x);
        let mut acc = vec![0u64; len];
        let chunks: Vec<&[u64]> = x.chunks(len).collect();
        for (k, chunk) in chunks.iter().rev().enumerate() {
            if k > 0 {
                // acc·R: Montgomery form of (value · R)
                self.mul_assign(&mut acc, &self.r2);
            }
            let c = self.to_mont(chunk);
            self.add_assign(&mut acc, &c);
        }
        acc
    }

    /// `a = a + b mod n` (both reduced; works in either form).
    pub(crate) fn add_assign(&self, a: &mut [u64], b: &[u64]) {
        let carry = limbs::add_assign(a, b);
        if carry || limbs::cmp(a, &self.n) != std::cmp::Ordering::Less {
            limbs::sub_assign(a, &self.n);
        }
    }

    /// `a = a − b mod n` (both reduced).
    pub(crate) fn sub_assign(&self, a: &mut [u64], b: &[u64]) {
        if limbs::sub_assign(a, b) {
            limbs::add_assign(a, &self.n);
        }
    }

    /// `base^exp` with both base and result in Montgomery form (left-to-right sliding
    /// window; variable time in the exponent's bit pattern).
    pub(crate) fn pow(&self, base: &[u64], exp: &[u64]) -> Vec<u64> {
        let len = self.len();
        let eb = limbs::bits(exp);
        if eb == 0 {
            return self.one.to_vec();
        }
        let w: u32 = match eb {
            0..=8 => 1,
            9..=24 => 2,
            25..=80 => 4,
            81..=240 => 5,
            241..=768 => 6,
            _ => 7,
        };
        // odd[k] = base^(2k+1)
        let half = 1usize << (w - 1);
        let mut odd = vec![0u64; half * len];
        odd[..len].copy_from_slice(base);
        if half > 1 {
            let sq = self.mul_vec(base, base);
            for k in 1..half {
                let (prev, cur) = odd.split_at_mut(k * len);
                self.mul(&prev[(k - 1) * len..], &sq, &mut cur[..len]);
            }
        }
        let mut acc = self.one.to_vec();
        let mut started = false;
        let mut i = eb as i64 - 1;
        while i >= 0 {
            if !limbs::bit(exp, i as u32) {
                if started {
                    self.square_assign(&mut acc);
                }
                i -= 1;
                continue;
            }
            // window [j, i] with bit j set, i − j < w
            let mut j = (i - w as i64 + 1).max(0);
            while !limbs::bit(exp, j as u32) {
                j += 1;
            }
            let width = (i - j + 1) as u32;
            let value = limbs::window(exp, j as u32, width);
            let entry = &odd[(value >> 1) * len..((value >> 1) + 1) * len];
            if started {
                for _ in 0..width {
                    self.square_assign(&mut acc);
                }
                self.mul_assign(&mut acc, entry);
            } else {
                acc.copy_from_slice(entry);
                started = true;
            }
            i = j - 1;
        }
        odd.zeroize();
        acc
    }
}

/// Precomputed powers of a fixed base: `table[r][d] = g^(d·2^(w·r))` for digits
/// `d = 1 … 2^w − 1`, so `g^e` for `e < 2^(w·rows)` costs one multiplication per non-zero
/// `w`-bit digit of `e`. Zeroized on drop (tables over secret moduli are secret).
pub(crate) struct FixedBase {
    w: u32,
    rows: u32,
    len: usize,
    table: Vec<u64>,
}

impl Drop for FixedBase {
    fn drop(&mut self) {
        self.table.zeroize();
    }
}

impl FixedBase {
    /// Table for exponents of up to `max_bits` bits; `base` in Montgomery form.
    pub(crate) fn new(m: &Modulus, base: &[u64], max_bits: u32, w: u32) -> Self {
        use rayon::prelude::*;
        let len = m.len();
        let rows = max_bits.div_ceil(w).max(1);
        let per_row = (1usize << w) - 1;
        // base of each row: g^(2^(w·r))
        let mut bases = Vec::with_capacity(rows as usize);
        let mut b = base.to_vec();
        for _ in 0..rows {
            bases.push(b.clone());
            for _ in 0..w {
                m.square_assign(&mut b);
            }
        }
        b.zeroize();
        let mut table = vec![0u64; rows as usize * per_row * len];
        table.par_chunks_mut(per_row * len).zip(bases.par_iter()).for_each(|(row, rb)| {
            row[..len].copy_from_slice(rb);
            for d in 1..per_row {
                let (prev, cur) = row.split_at_mut(d * len);
                m.mul(&prev[(d - 1) * len..], rb, &mut cur[..len]);
            }
        });
        for mut b in bases {
            b.zeroize();
        }
        Self { w, rows, len, table }
    }

    /// Largest exponent size (bits) the table covers.
    pub(crate) fn max_bits(&self) -> u32 {
        self.w * self.rows
    }

    /// Table size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.table.len() * 8
    }

    /// `g^exp` in Montgomery form; `exp` must have at most [`Self::max_bits`] bits.
    ///
    /// The entries are first touched one cache line at a time, so that their (independent)
    /// loads overlap instead of stalling each multiplication in turn on a large table.
    pub(crate) fn pow(&self, m: &Modulus, exp: &[u64]) -> Vec<u64> {
        debug_assert!(limbs::bits(exp) <= self.max_bits());
        let per_row = (1usize << self.w) - 1;
        let len = self.len;
        let mut offsets = [0usize; 128];
        let mut count = 0;
        for r in 0..self.rows {
            let d = limbs::window(exp, r * self.w, self.w);
            if d != 0 && count < offsets.len() {
                offsets[count] = (r as usize * per_row + d - 1) * len;
                count += 1;
            }
        }
        let mut touch = 0u64;
        for &off in &offsets[..count] {
            for k in (0..len).step_by(8) {
                touch ^= self.table[off + k];
            }
        }
        std::hint::black_box(touch);
        let mut acc: Option<Vec<u64>> = None;
        for r in 0..self.rows {
            let d = limbs::window(exp, r * self.w, self.w);
            if d == 0 {
                continue;
            }
            let off = (r as usize * per_row + d - 1) * len;
            let entry = &self.table[off..off + len];
            match acc.as_mut() {
                None => acc = Some(entry.to_vec()),
                Some(a) => m.mul_assign(a, entry),
            }
        }
        acc.unwrap_or_else(|| m.one().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use num_traits::One;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    fn random_limbs(rng: &mut ChaCha20Rng, len: usize) -> Vec<u64> {
        (0..len).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn kernels_match_num_bigint_at_every_size() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for len in [1usize, 2, 3, 4, 5, 6, 8, 11, 12, 16, 22, 24, 32, 48, 64, 96] {
            let mut n = random_limbs(&mut rng, len);
            n[0] |= 1;
            n[len - 1] |= 1 << 63;
            let m = Modulus::new(&n).unwrap();
            let nb = limbs::to_biguint(&n);
            let r = BigUint::one() << (64 * len);
            assert_eq!(limbs::to_biguint(m.one()), &r % &nb);
            assert_eq!(limbs::to_biguint(&m.r2), (&r * &r) % &nb);
            let a =
                limbs::from_biguint(&(limbs::to_biguint(&random_limbs(&mut rng, len)) % &nb), len)
                    .unwrap();
            let b =
                limbs::from_biguint(&(limbs::to_biguint(&random_limbs(&mut rng, len)) % &nb), len)
                    .unwrap();
            let am = m.to_mont(&a);
            let bm = m.to_mont(&b);
            let prod = m.out_of_mont(&m.mul_vec(&am, &bm));
            let want = (limbs::to_biguint(&a) * limbs::to_biguint(&b)) % &nb;
            assert_eq!(limbs::to_biguint(&prod), want, "len {len}");
            let e = random_limbs(&mut rng, 3);
            let p = m.out_of_mont(&m.pow(&am, &e));
            assert_eq!(
                limbs::to_biguint(&p),
                limbs::to_biguint(&a).modpow(&limbs::to_biguint(&e), &nb)
            );
            let t = FixedBase::new(&m, &am, 192, 5);
            assert_eq!(m.out_of_mont(&t.pow(&m, &e)), p);
            let wide = random_limbs(&mut rng, 3 * len + 1);
            let red = m.out_of_mont(&m.reduce(&wide));
            assert_eq!(limbs::to_biguint(&red), limbs::to_biguint(&wide) % &nb);
        }
    }

    #[test]
    fn small_moduli_with_spare_high_bits() {
        // a modulus far below R (t-like): the kernels accept a < R, b < n.
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let n = vec![0x8000_0000_0000_0001u64 | rng.next_u64(), 0x3];
        let m = Modulus::new(&n).unwrap();
        let nb = limbs::to_biguint(&n);
        let x = random_limbs(&mut rng, 5);
        assert_eq!(limbs::to_biguint(&m.out_of_mont(&m.reduce(&x))), limbs::to_biguint(&x) % &nb);
        assert!(Modulus::new(&[4]).is_none());
        assert!(Modulus::new(&[1, 0]).is_none());
    }
}
