//! Montgomery multiplication on AVX-512 IFMA (52-bit multiply-accumulate in 512-bit
//! vectors): the "almost Montgomery multiplication" of Gueron and Krasnov ("Accelerating
//! big integer arithmetic using Intel IFMA extensions", ARITH 2016), as OpenSSL's
//! `rsaz_amm52x20` uses it for RSA, here for the limb counts of the HE moduli.
//!
//! Operands are split into 52-bit digits, eight per vector. Each step takes one digit
//! `b_i`: `acc += a·b_i` and `acc += m·n` (low 52 bits of every digit product into the
//! digit's lane), where `m = acc₀·(−n⁻¹) mod 2^52` is computed in a general register
//! from the lowest digit kept there; the accumulator then moves down one lane (a division
//! by `2^52`) and takes the high halves of the products. Lanes are not normalized between
//! steps: a lane gains less than `2^54` per step and at most `⌈64·L/52⌉` steps reach it,
//! so it stays below `2^62` for every size here. The `64·L mod 52` bits left over from
//! `R = 2^(64·L)` are reduced by one short word step on normal limbs, so the result is
//! exactly `a·b·R⁻¹ mod n`, the same value and form as the portable kernels of
//! [`super::mont`] return, which lets [`super::mont::Modulus::mul`] pick either.
//!
//! `unsafe` is confined to this module: the `#[target_feature]` kernel is called only
//! after [`available`] has detected the instructions, and vector loads and stores are of
//! whole `[u64; 8]` arrays. Like the portable kernels it is not constant-time in the final
//! subtraction.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    _mm_cvtsi128_si64, _mm512_alignr_epi64, _mm512_castsi512_si128, _mm512_loadu_si512,
    _mm512_madd52hi_epu64, _mm512_madd52lo_epu64, _mm512_set1_epi64, _mm512_setzero_si512,
    _mm512_storeu_si512,
};
use std::sync::OnceLock;

use zeroize::Zeroize;

use super::limbs;

const MASK: u64 = (1 << 52) - 1;

/// Whether this CPU has AVX-512F and AVX-512 IFMA (checked once), unless
/// `FEDCREDIT_HE_PORTABLE` is set (to measure or test the portable kernels alone).
pub(crate) fn available() -> bool {
    static YES: OnceLock<bool> = OnceLock::new();
    *YES.get_or_init(|| {
        std::env::var_os("FEDCREDIT_HE_PORTABLE").is_none()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512ifma")
    })
}

/// A modulus of `L` limbs in 52-bit digits, `V` vectors of eight.
#[derive(Clone)]
pub(crate) struct Digits<const L: usize, const V: usize> {
    n: [[u64; 8]; V],
    /// `−n⁻¹ mod 2^52`.
    k0: u64,
}

impl<const L: usize, const V: usize> Drop for Digits<L, V> {
    fn drop(&mut self) {
        self.n.zeroize();
    }
}

/// 52-bit digits of a number of `L` limbs.
fn to_digits<const L: usize, const V: usize>(x: &[u64; L]) -> [[u64; 8]; V] {
    let mut d = [[0u64; 8]; V];
    for j in 0..V * 8 {
        let bit = 52 * j;
        let limb = bit / 64;
        if limb >= L {
            break;
        }
        let off = bit % 64;
        let mut v = x[limb] >> off;
        if off > 12 && limb + 1 < L {
            v |= x[limb + 1] << (64 - off);
        }
        d[j / 8][j % 8] = v & MASK;
    }
    d
}

impl<const L: usize, const V: usize> Digits<L, V> {
    /// `None` unless the CPU has IFMA and `V` vectors hold `64·L` bits plus a spare
    /// digit's worth.
    pub(crate) fn new(n: &[u64; L], ninv64: u64) -> Option<Self> {
        if !available() || 52 * 8 * V < 64 * L + 2 || 52 * 8 * (V - 1) >= 64 * L + 2 {
            return None;
        }
        Some(Self { n: to_digits::<L, V>(n), k0: ninv64 & MASK })
    }

    /// `out = a·b·R⁻¹ mod n` for `a < R`, `b < n` (`R = 2^(64·L)`), reduced below `n`.
    #[inline]
    pub(crate) fn mul(&self, a: &[u64; L], b: &[u64; L], n: &[u64; L], ninv64: u64) -> [u64; L] {
        debug_assert!(available());
        // SAFETY: a `Digits` exists only where `available()` held when it was built
        // (`Digits::new`), so the CPU executes the kernel's AVX-512F and IFMA instructions.
        unsafe { self.mul_ifma(a, b, n, ninv64) }
    }

    /// The vector steps over digits `0..steps` of `b`: `(a·(b mod 2^(52·steps)) + M·n) /
    /// 2^(52·steps)` in unnormalized lanes (`a`, `b` in normalized digits).
    #[target_feature(enable = "avx512f,avx512ifma")]
    fn amm_lanes(&self, ad: &[[u64; 8]; V], bd: &[[u64; 8]; V], steps: usize) -> [[u64; 8]; V] {
        let zero = _mm512_setzero_si512();
        let (mut av, mut nv, mut r) = ([zero; V], [zero; V], [zero; V]);
        for k in 0..V {
            // SAFETY: each row is 64 readable bytes; the load has no alignment requirement.
            unsafe {
                av[k] = _mm512_loadu_si512(ad[k].as_ptr().cast());
                nv[k] = _mm512_loadu_si512(self.n[k].as_ptr().cast());
            }
        }
        let (a0, n0, k0) = (ad[0][0], self.n[0][0], self.k0);
        // lane 0 lives in `acc0`; the vector's lane 0 is stale and shifted out each step
        let mut acc0 = 0u64;
        for i in 0..steps {
            let bi = bd[i / 8][i % 8];
            let p = (a0 as u128) * (bi as u128);
            let t = acc0 + (p as u64 & MASK);
            let m = t.wrapping_mul(k0) & MASK;
            let q = (m as u128) * (n0 as u128);
            let carry = (t + (q as u64 & MASK)) >> 52;
            let hi0 = ((p >> 52) as u64) + ((q >> 52) as u64);
            let bv = _mm512_set1_epi64(bi as i64);
            let mv = _mm512_set1_epi64(m as i64);
            for k in 0..V {
                r[k] = _mm512_madd52lo_epu64(r[k], av[k], bv);
                r[k] = _mm512_madd52lo_epu64(r[k], nv[k], mv);
            }
            for k in 0..V {
                let next = if k + 1 < V { r[k + 1] } else { zero };
                r[k] = _mm512_alignr_epi64::<1>(next, r[k]);
            }
            // the new lowest digit: old digit 1, the high halves of the lowest products,
            // and the carry out of the digit just divided away
            acc0 = _mm_cvtsi128_si64(_mm512_castsi512_si128(r[0])) as u64 + hi0 + carry;
            for k in 0..V {
                r[k] = _mm512_madd52hi_epu64(r[k], av[k], bv);
                r[k] = _mm512_madd52hi_epu64(r[k], nv[k], mv);
            }
        }
        let mut lanes = [[0u64; 8]; V];
        for k in 0..V {
            // SAFETY: `lanes[k]` is 64 writable bytes; the store has no alignment requirement.
            unsafe { _mm512_storeu_si512(lanes[k].as_mut_ptr().cast(), r[k]) };
        }
        lanes[0][0] = acc0;
        lanes
    }

    #[target_feature(enable = "avx512f,avx512ifma")]
    fn mul_ifma(&self, a: &[u64; L], b: &[u64; L], n: &[u64; L], ninv64: u64) -> [u64; L] {
        let full = 64 * L / 52;
        let rb = 64 * L - 52 * full;
        let mut ad = to_digits::<L, V>(a);
        let mut bd = to_digits::<L, V>(b);
        let mut lanes = self.amm_lanes(&ad, &bd, full);
        // normalize to 52-bit digits, then pack into L + 1 limbs
        let mut wide = [0u64; 96 + 1];
        let wide = &mut wide[..=L];
        let c = pack_lanes(&lanes, wide);
        debug_assert_eq!(c, 0, "the almost-Montgomery sum stays below 2^(52·8·V)");
        ad.zeroize();
        bd.zeroize();
        lanes.zeroize();
        if rb > 0 {
            // the last rb bits of b, then a reduction by 2^rb
            let bt = b[L - 1] >> (64 - rb);
            mac_row(wide, a, bt);
            let m = wide[0].wrapping_mul(ninv64) & ((1u64 << rb) - 1);
            mac_row(wide, n, m);
            debug_assert_eq!(wide[0] & ((1u64 << rb) - 1), 0);
            for i in 0..L {
                wide[i] = (wide[i] >> rb) | (wide[i + 1] << (64 - rb));
            }
            wide[L] >>= rb;
        }
        let mut out = [0u64; L];
        out.copy_from_slice(&wide[..L]);
        if wide[L] != 0 || limbs::cmp(&out, n) != std::cmp::Ordering::Less {
            limbs::sub_assign(&mut out, n);
        }
        wide.zeroize();
        out
    }

    /// `a = a·b·2^(−52·8V) mod n`, below `2n`, in normalized digits: products chained
    /// without leaving the digit form (`a < 2n`, `b < 2n`, both normalized).
    #[inline]
    pub(crate) fn mul_digits(&self, a: &mut [[u64; 8]; V], b: &[[u64; 8]; V]) {
        debug_assert!(available());
        // SAFETY: as in `mul`: a `Digits` exists only where `available()` holds.
        let lanes = unsafe { self.amm_lanes(a, b, 8 * V) };
        normalize(&lanes, a);
    }
}

/// Carries lanes into 52-bit digits (`out`); returns the carry out of the top digit.
fn normalize<const V: usize>(lanes: &[[u64; 8]; V], out: &mut [[u64; 8]; V]) -> u64 {
    let mut c = 0u64;
    for j in 0..V * 8 {
        let x = lanes[j / 8][j % 8] as u128 + c as u128;
        out[j / 8][j % 8] = x as u64 & MASK;
        c = (x >> 52) as u64;
    }
    c
}

/// Carries lanes into 52-bit digits and packs them into the limbs of `wide` (zeroed, long
/// enough for the value); returns the carry out of the top digit.
fn pack_lanes<const V: usize>(lanes: &[[u64; 8]; V], wide: &mut [u64]) -> u64 {
    let mut digits = [[0u64; 8]; V];
    let c = normalize(lanes, &mut digits);
    for j in 0..V * 8 {
        let d = digits[j / 8][j % 8];
        let (limb, off) = ((52 * j) / 64, (52 * j) % 64);
        if d == 0 || limb >= wide.len() {
            continue;
        }
        wide[limb] |= d << off;
        if off > 12 && limb + 1 < wide.len() {
            wide[limb + 1] |= d >> (64 - off);
        }
    }
    digits.zeroize();
    c
}

/// Products of many values into a few running products (the feature holders' histogram
/// sums) on the 2048-bit vector kernel: each value is turned into digits of `x·R'`
/// (`R' = 2^2080`) once, and the running products stay in digits, so a product costs the
/// vector steps alone; [`DigitProducts::finish`] returns the usual Montgomery form.
pub(crate) struct DigitProducts<'a> {
    d: &'a Digits<32, 5>,
    n: &'a [u64; 32],
    ninv: u64,
    /// Montgomery forms of `2^32` and `2^-32` (`R'/R` and its inverse).
    up: [u64; 32],
    down: [u64; 32],
    /// Digits of `R' mod n`: the empty product.
    one: [[u64; 8]; 5],
}

/// A value or running product in [`DigitProducts`]' form.
pub(crate) type Digits2048 = [[u64; 8]; 5];

impl<'a> DigitProducts<'a> {
    /// For `n` with Montgomery one `one_r` (`R mod n`) and the Montgomery forms `up` of
    /// `2^32` and `down` of `2^-32` (all 32 limbs).
    pub(crate) fn new(
        d: &'a Digits<32, 5>,
        n: &'a [u64; 32],
        ninv: u64,
        one_r: &[u64],
        up: &[u64],
        down: &[u64],
    ) -> Option<Self> {
        let (one_r, up, down): ([u64; 32], [u64; 32], [u64; 32]) =
            (one_r.try_into().ok()?, up.try_into().ok()?, down.try_into().ok()?);
        let one = to_digits::<32, 5>(&d.mul(&one_r, &up, n, ninv));
        Some(Self { d, n, ninv, up, down, one })
    }

    /// The empty product.
    pub(crate) fn one(&self) -> Digits2048 {
        self.one
    }

    /// A Montgomery-form value (`< n`, 32 limbs: a validated ciphertext) in digit form.
    pub(crate) fn prepare(&self, x: &[u64]) -> Digits2048 {
        debug_assert_eq!(x.len(), 32);
        let x: [u64; 32] = x.try_into().unwrap_or([0; 32]);
        to_digits::<32, 5>(&self.d.mul(&x, &self.up, self.n, self.ninv))
    }

    /// `acc = acc·x`.
    #[inline]
    pub(crate) fn mul_assign(&self, acc: &mut Digits2048, x: &Digits2048) {
        self.d.mul_digits(acc, x);
    }

    /// The Montgomery form (`< n`) of a running product.
    pub(crate) fn finish(&self, acc: &Digits2048) -> Vec<u64> {
        let mut wide = [0u64; 33];
        pack_lanes(acc, &mut wide);
        let mut x = [0u64; 32];
        x.copy_from_slice(&wide[..32]);
        if wide[32] != 0 || limbs::cmp(&x, self.n) != std::cmp::Ordering::Less {
            limbs::sub_assign(&mut x, self.n);
        }
        self.d.mul(&x, &self.down, self.n, self.ninv).to_vec()
    }
}

/// `acc += x·s` over `x.len() + 1` limbs of `acc` (the caller guarantees no overflow).
fn mac_row(acc: &mut [u64], x: &[u64], s: u64) {
    let mut c = 0u64;
    for (j, &xj) in x.iter().enumerate() {
        let (lo, hi) = limbs::mac(acc[j], xj, s, c);
        acc[j] = lo;
        c = hi;
    }
    acc[x.len()] = acc[x.len()].wrapping_add(c);
}

/// The IFMA kernels built for one modulus, by limb count.
#[derive(Clone)]
pub(crate) enum Kernel {
    L11(Box<Digits<11, 2>>),
    L16(Box<Digits<16, 3>>),
    L22(Box<Digits<22, 4>>),
    L24(Box<Digits<24, 4>>),
    L32(Box<Digits<32, 5>>),
    L48(Box<Digits<48, 8>>),
    L64(Box<Digits<64, 10>>),
    L96(Box<Digits<96, 15>>),
}

impl Kernel {
    /// A kernel for `n` if the CPU has IFMA and `n` has one of the supported limb counts.
    pub(crate) fn new(n: &[u64], ninv64: u64) -> Option<Self> {
        fn make<const L: usize, const V: usize>(n: &[u64], ninv: u64) -> Option<Box<Digits<L, V>>> {
            Digits::<L, V>::new(n.try_into().ok()?, ninv).map(Box::new)
        }
        Some(match n.len() {
            11 => Self::L11(make(n, ninv64)?),
            16 => Self::L16(make(n, ninv64)?),
            22 => Self::L22(make(n, ninv64)?),
            24 => Self::L24(make(n, ninv64)?),
            32 => Self::L32(make(n, ninv64)?),
            48 => Self::L48(make(n, ninv64)?),
            64 => Self::L64(make(n, ninv64)?),
            96 => Self::L96(make(n, ninv64)?),
            _ => return None,
        })
    }

    /// The digit-form products of a 2048-bit modulus (`up`, `down`: see
    /// [`DigitProducts::new`]).
    pub(crate) fn digit_products<'a>(
        &'a self,
        n: &'a [u64],
        ninv: u64,
        one_r: &[u64],
        up: &[u64],
        down: &[u64],
    ) -> Option<DigitProducts<'a>> {
        match self {
            Self::L32(d) => DigitProducts::new(d, n.try_into().ok()?, ninv, one_r, up, down),
            _ => None,
        }
    }

    /// `out = a·b·R⁻¹ mod n` (slices of the modulus's limb count).
    #[inline]
    pub(crate) fn mul(&self, a: &[u64], b: &[u64], n: &[u64], ninv64: u64, out: &mut [u64]) {
        fn go<const L: usize, const V: usize>(
            d: &Digits<L, V>,
            a: &[u64],
            b: &[u64],
            n: &[u64],
            ninv: u64,
            out: &mut [u64],
        ) {
            let arr = |x: &[u64]| -> [u64; L] { x.try_into().expect("operand has L limbs") };
            out.copy_from_slice(&d.mul(&arr(a), &arr(b), &arr(n), ninv));
        }
        match self {
            Self::L11(d) => go(d, a, b, n, ninv64, out),
            Self::L16(d) => go(d, a, b, n, ninv64, out),
            Self::L22(d) => go(d, a, b, n, ninv64, out),
            Self::L24(d) => go(d, a, b, n, ninv64, out),
            Self::L32(d) => go(d, a, b, n, ninv64, out),
            Self::L48(d) => go(d, a, b, n, ninv64, out),
            Self::L64(d) => go(d, a, b, n, ninv64, out),
            Self::L96(d) => go(d, a, b, n, ninv64, out),
        }
    }
}
