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

#[cfg(target_arch = "x86_64")]
use super::ifma::Kernel as Ifma;
use super::limbs;

/// No vector kernel off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone)]
enum Ifma {}

#[cfg(not(target_arch = "x86_64"))]
impl Ifma {
    fn new(_: &[u64], _: u64) -> Option<Self> {
        None
    }

    fn mul(&self, _: &[u64], _: &[u64], _: &[u64], _: u64, _: &mut [u64]) {
        match *self {}
    }
}

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

/// Montgomery squaring: the off-diagonal half of `a²` (a triangle unrolled at compile
/// time: `if j > i` on constants), doubled, plus the diagonal, then a word-by-word
/// Montgomery reduction. About `1.5·N²` products against `2·N²` for a multiplication;
/// measured 13–21 % faster than [`mul32`]-style kernels at 22–64 limbs.
macro_rules! unrolled_square {
    ($name:ident, $n:literal) => {
        #[inline(never)]
        fn $name(a: &[u64; $n], n: &[u64; $n], ninv: u64, out: &mut [u64; $n]) {
            const N: usize = $n;
            let mut t = [0u64; 2 * N];
            seq_macro::seq!(i in 0..$n {
                {
                    let ai = a[i];
                    let mut c = 0u64;
                    seq_macro::seq!(j in 0..$n {
                        #[allow(clippy::reversed_empty_ranges, clippy::absurd_extreme_comparisons)]
                        if j > i {
                            let (x, cc) = limbs::mac(t[i + j], ai, a[j], c);
                            t[i + j] = x;
                            c = cc;
                        }
                    });
                    if i + 1 < N {
                        t[i + N] = c;
                    }
                }
            });
            let mut hi = 0u64;
            for x in t.iter_mut() {
                let doubled = (*x << 1) | hi;
                hi = *x >> 63;
                *x = doubled;
            }
            let mut c = 0u64;
            for i in 0..N {
                let p = (a[i] as u128) * (a[i] as u128);
                let s = (t[2 * i] as u128) + ((p as u64) as u128) + (c as u128);
                t[2 * i] = s as u64;
                let s2 = (t[2 * i + 1] as u128) + (p >> 64) + (s >> 64);
                t[2 * i + 1] = s2 as u64;
                c = (s2 >> 64) as u64;
            }
            let mut extra = 0u64;
            for i in 0..N {
                let m = t[i].wrapping_mul(ninv);
                let w: &mut [u64; N + 1] = (&mut t[i..i + N + 1]).try_into().expect("window of N + 1 limbs");
                let mut c = 0u64;
                seq_macro::seq!(j in 0..$n {
                    let (x, cc) = limbs::mac(w[j], m, n[j], c);
                    w[j] = x;
                    c = cc;
                });
                let s = (w[N] as u128) + (c as u128) + (extra as u128);
                w[N] = s as u64;
                extra = (s >> 64) as u64;
            }
            let mut u = [0u64; N];
            u.copy_from_slice(&t[N..]);
            t.zeroize();
            if extra != 0 || limbs::cmp(&u, n) != std::cmp::Ordering::Less {
                limbs::sub_assign(&mut u, n);
            }
            *out = u;
        }
    };
}

unrolled_square!(sqr11, 11);
unrolled_square!(sqr16, 16);
unrolled_square!(sqr22, 22);
unrolled_square!(sqr24, 24);
unrolled_square!(sqr32, 32);
unrolled_square!(sqr48, 48);
unrolled_square!(sqr64, 64);

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
    /// The AVX-512 IFMA kernel for this modulus, where the CPU has one
    /// ([`super::ifma`]); the portable kernels otherwise.
    ifma: Option<Ifma>,
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
        let ninv = limbs::neg_inv64(n[0]);
        let m = Self {
            ifma: Ifma::new(n, ninv),
            n: n.into(),
            ninv,
            one: one.into_boxed_slice(),
            r2: x.into_boxed_slice(),
        };
        Some(m)
    }

    pub(crate) fn len(&self) -> usize {
        self.n.len()
    }

    /// Digit-form running products on the vector kernel (2048-bit moduli with IFMA).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn digit_products(&self) -> Option<super::ifma::DigitProducts<'_>> {
        let kernel = self.ifma.as_ref()?;
        // R' = 2^32·R: the digit form's Montgomery factor; n is public
        let up = self.to_mont(&limbs::pow2(32, self.len()));
        let inv = num_bigint::BigUint::from(1u64 << 32).modinv(&limbs::to_biguint(&self.n))?;
        let down = self.to_mont(&limbs::from_biguint(&inv, self.len())?);
        kernel.digit_products(&self.n, self.ninv, &self.one, &up, &down)
    }

    /// The same modulus on the portable kernels only.
    #[cfg(test)]
    pub(crate) fn portable(&self) -> Self {
        let mut m = self.clone();
        m.ifma = None;
        m
    }

    /// Whether multiplications run on the AVX-512 IFMA kernel.
    #[cfg(test)]
    pub(crate) fn vectorized(&self) -> bool {
        self.ifma.is_some()
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
        if let Some(k) = &self.ifma {
            return k.mul(a, b, n, ninv, out);
        }
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

    /// `a = a²·R⁻¹ mod n` (a dedicated squaring kernel where one exists).
    #[inline]
    pub(crate) fn square_assign(&self, a: &mut [u64]) {
        let mut out = [0u64; 96];
        let len = self.len();
        let (n, ninv) = (&self.n[..], self.ninv);
        match len {
            _ if self.ifma.is_some() && len <= 96 => self.mul(a, a, &mut out[..len]),
            11 => sqr11(arr(a), arr(n), ninv, arr_mut(&mut out[..11])),
            16 => sqr16(arr(a), arr(n), ninv, arr_mut(&mut out[..16])),
            22 => sqr22(arr(a), arr(n), ninv, arr_mut(&mut out[..22])),
            24 => sqr24(arr(a), arr(n), ninv, arr_mut(&mut out[..24])),
            32 => sqr32(arr(a), arr(n), ninv, arr_mut(&mut out[..32])),
            48 => sqr48(arr(a), arr(n), ninv, arr_mut(&mut out[..48])),
            64 => sqr64(arr(a), arr(n), ninv, arr_mut(&mut out[..64])),
            _ if len <= 96 => self.mul(a, a, &mut out[..len]),
            _ => {
                let mut v = vec![0u64; len];
                self.mul(a, a, &mut v);
                a.copy_from_slice(&v);
                v.zeroize();
                return;
            }
        }
        a.copy_from_slice(&out[..len]);
        out[..len].zeroize();
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
            let mut sq = base.to_vec();
            self.square_assign(&mut sq);
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

impl Modulus {
    /// `Π bases[i]^exps[i]` in Montgomery form for single-limb exponents: Pippenger's
    /// bucket method ("On the evaluation of powers and monomials", SIAM J. Comput. 9(2),
    /// 1980; in the form of Bernstein et al.'s survey). With `c`-bit windows it costs
    /// `⌈bits/c⌉·(k + 2^(c+1))` multiplications and `bits` squarings for `k` bases, against
    /// about `1.3·bits·k` for separate exponentiations: the encrypted dot product
    /// `Σ k_i·[[m_i]]` of vertical LR.
    pub(crate) fn multi_pow(&self, bases: &[&[u64]], exps: &[u64]) -> Vec<u64> {
        let len = self.len();
        let bits = exps.iter().map(|e| 64 - e.leading_zeros()).max().unwrap_or(0);
        if bits == 0 || bases.is_empty() {
            return self.one.to_vec();
        }
        let k = bases.len() as u64;
        let cost = |c: u32| bits.div_ceil(c) as u64 * (k + (2u64 << c));
        let c = (1..=16u32).min_by_key(|&c| cost(c)).unwrap_or(4);
        let windows = bits.div_ceil(c);
        let nb = (1usize << c) - 1;
        let mut buckets = vec![0u64; nb * len];
        let mut filled = vec![false; nb];
        let mut result: Option<Vec<u64>> = None;
        for w in (0..windows).rev() {
            if let Some(r) = result.as_mut() {
                for _ in 0..c {
                    self.square_assign(r);
                }
            }
            filled.fill(false);
            for (base, &e) in bases.iter().zip(exps) {
                let d = ((e >> (w * c)) & ((1u64 << c) - 1)) as usize;
                if d == 0 {
                    continue;
                }
                let slot = &mut buckets[(d - 1) * len..d * len];
                if filled[d - 1] {
                    self.mul_assign(slot, base);
                } else {
                    slot.copy_from_slice(base);
                    filled[d - 1] = true;
                }
            }
            // Π_d bucket_d^d by running products, from the top digit down
            let mut running: Option<Vec<u64>> = None;
            let mut total: Option<Vec<u64>> = None;
            for d in (0..nb).rev() {
                if filled[d] {
                    let b = &buckets[d * len..(d + 1) * len];
                    match running.as_mut() {
                        Some(r) => self.mul_assign(r, b),
                        None => running = Some(b.to_vec()),
                    }
                }
                if let Some(r) = running.as_ref() {
                    match total.as_mut() {
                        Some(t) => self.mul_assign(t, r),
                        None => total = Some(r.clone()),
                    }
                }
            }
            if let Some(t) = total {
                match result.as_mut() {
                    Some(r) => self.mul_assign(r, &t),
                    None => result = Some(t),
                }
            }
        }
        result.unwrap_or_else(|| self.one.to_vec())
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
    ///
    /// Built on the calling thread on purpose: tables are built lazily inside
    /// `OnceLock::get_or_init`, often from a rayon task, and a parallel build there could
    /// steal another task that waits on the same cell (a re-entrant initialization).
    pub(crate) fn new(m: &Modulus, base: &[u64], max_bits: u32, w: u32) -> Self {
        let len = m.len();
        let rows = max_bits.div_ceil(w).max(1);
        let per_row = (1usize << w) - 1;
        let mut table = vec![0u64; rows as usize * per_row * len];
        let mut rb = base.to_vec();
        for row in table.chunks_mut(per_row * len) {
            row[..len].copy_from_slice(&rb);
            for d in 1..per_row {
                let (prev, cur) = row.split_at_mut(d * len);
                m.mul(&prev[(d - 1) * len..], &rb, &mut cur[..len]);
            }
            // next row's base: g^(2^(w·(r+1))) = last entry · base
            let last = zeroize::Zeroizing::new(row[(per_row - 1) * len..].to_vec());
            m.mul_assign(&mut rb, &last);
        }
        rb.zeroize();
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
            let mut sq = am.clone();
            m.square_assign(&mut sq);
            assert_eq!(sq, m.mul_vec(&am, &am), "square, len {len}");
            // the largest residue n − 1 squares correctly too
            let mut top = n.clone();
            top[0] -= 1;
            let mut tsq = top.clone();
            m.square_assign(&mut tsq);
            assert_eq!(tsq, m.mul_vec(&top, &top), "square of n − 1, len {len}");
            let e = random_limbs(&mut rng, 3);
            let p = m.out_of_mont(&m.pow(&am, &e));
            assert_eq!(
                limbs::to_biguint(&p),
                limbs::to_biguint(&a).modpow(&limbs::to_biguint(&e), &nb)
            );
            let t = FixedBase::new(&m, &am, 192, 5);
            assert_eq!(m.out_of_mont(&t.pow(&m, &e)), p);
            let bases: Vec<Vec<u64>> = (0..37).map(|i| m.pow(&am, &[i as u64 + 2])).collect();
            let refs: Vec<&[u64]> = bases.iter().map(Vec::as_slice).collect();
            let exps: Vec<u64> =
                (0..37).map(|i| if i % 5 == 0 { 0 } else { rng.next_u64() >> (i % 64) }).collect();
            let mut want = m.one().to_vec();
            for (b, &e) in bases.iter().zip(&exps) {
                m.mul_assign(&mut want, &m.pow(b, &[e]));
            }
            assert_eq!(m.multi_pow(&refs, &exps), want, "multi_pow, len {len}");
            let wide = random_limbs(&mut rng, 3 * len + 1);
            let red = m.out_of_mont(&m.reduce(&wide));
            assert_eq!(limbs::to_biguint(&red), limbs::to_biguint(&wide) % &nb);
        }
    }

    #[test]
    fn vector_kernel_equals_the_portable_kernels() {
        let mut rng = ChaCha20Rng::seed_from_u64(52);
        let mut checked = 0;
        for len in [11usize, 16, 22, 24, 32, 48, 64, 96] {
            // full-width moduli and moduli with spare high bits (q, p² of OU)
            for top_bits in [64u32, 63, 42, 20, 1] {
                let mut n = random_limbs(&mut rng, len);
                n[0] |= 1;
                n[len - 1] >>= 64 - top_bits;
                n[len - 1] |= 1 << (top_bits - 1);
                let m = Modulus::new(&n).unwrap();
                if !m.vectorized() {
                    continue;
                }
                let p = m.portable();
                let nb = limbs::to_biguint(&n);
                let below_n = |rng: &mut ChaCha20Rng| {
                    limbs::from_biguint(&(limbs::to_biguint(&random_limbs(rng, len)) % &nb), len)
                        .unwrap()
                };
                let mut nm1 = n.clone();
                nm1[0] -= 1;
                let mut cases = vec![
                    (vec![u64::MAX; len], nm1.clone()),
                    (nm1.clone(), nm1.clone()),
                    (vec![0; len], nm1.clone()),
                    (nm1.clone(), limbs::pow2(0, len)),
                ];
                for _ in 0..200 {
                    cases.push((random_limbs(&mut rng, len), below_n(&mut rng)));
                    cases.push((below_n(&mut rng), below_n(&mut rng)));
                }
                for (a, b) in &cases {
                    assert_eq!(m.mul_vec(a, b), p.mul_vec(a, b), "len {len}, top {top_bits}");
                    checked += 1;
                }
                let mut x = below_n(&mut rng);
                let mut y = x.clone();
                for _ in 0..50 {
                    m.square_assign(&mut x);
                    p.square_assign(&mut y);
                }
                assert_eq!(x, y, "squarings, len {len}, top {top_bits}");
            }
        }
        if checked == 0 {
            eprintln!("skipped: this CPU has no AVX-512 IFMA (the portable kernels are in use)");
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
