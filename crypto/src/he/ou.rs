//! Okamoto–Uchiyama ("A new public-key cryptosystem as secure as factoring", Eurocrypt
//! 1998) with the subgroup speed-up of Coron, Naccache and Paillier ("Accelerating
//! Okamoto–Uchiyama's public-key cryptosystem", Electronics Letters 35(4), 1999).
//!
//! Keys: `n = p²q` with `|p| = |q| ≈ |n|/3`, `p − 1 = t·u` for a prime `t` of `2λ` bits.
//! `G = g^u mod n` has order `p·t` modulo `p²`, and `H = G^n mod n` (as `h = g^n` in the
//! original scheme) has order `t`. Encryption is `c = G^m · H^r mod n` with `r < 2^(2λ)`;
//! decryption is `m = L(c^t mod p²) · L(G^t mod p²)⁻¹ mod p` with `L(x) = (x − 1)/p`, an
//! exponentiation by the `2λ`-bit `t` modulo `p²` instead of by `p − 1`.
//!
//! With the factors, encryption splits by the CRT: modulo `p²`, `G = A·B` with `A` of
//! order `p` (so `A^m = 1 + m·a·p`, free) and `B` of order `t`, hence
//! `c ≡ (1 + m·a·p) · B^((m + n·r) mod t)` — one fixed-base exponentiation by a `2λ`-bit
//! exponent over `p²`; modulo `q`, `c ≡ G^m · H^r` over an 11-limb modulus.
//!
//! Both `G^m` and `H^r` use fixed-base tables ([`super::mont::FixedBase`]); negative `m`
//! uses a table of `G⁻¹` (one inverse per key, none per message).

use std::sync::OnceLock;

use rand::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::limbs;
use super::mont::{FixedBase, Modulus};
use super::prime;

/// Window of the fixed-base tables modulo `n` (public encryption).
const W_PUBLIC: u32 = 8;
/// Window of the key owner's plaintext tables modulo `q`.
const W_OWNER: u32 = 8;
/// Window of the key owner's randomness tables (`B` mod p², `H` mod q): 19 rows of 4095
/// entries at 2048 bits (13.7 + 6.8 MB), 19 multiplications instead of 28.
const W_OWNER_RAND: u32 = 12;

/// Sizes that follow from the modulus size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OuSizes {
    /// Bits of `p` (and the bound on `q`).
    pub p_bits: u32,
    /// Bits of `t` and of the randomness `r` (2λ).
    pub t_bits: u32,
}

impl OuSizes {
    pub(crate) fn for_bits(bits: u32) -> Option<Self> {
        let p_bits = bits.div_ceil(3);
        let t_bits = match bits {
            3072.. => 256,
            2048.. => 224,
            1024.. => 160,
            _ => 64,
        };
        if bits < 384 || p_bits < 2 * t_bits + 16 {
            return None;
        }
        Some(Self { p_bits, t_bits })
    }

    /// Bits of `q`: `|n| − 2|p|`.
    pub(crate) fn q_bits(&self, bits: u32) -> u32 {
        bits - 2 * self.p_bits
    }

    /// Signed plaintexts with `|m| < 2^plaintext_bits` decrypt exactly (`p > 2^(p_bits−1)`).
    pub(crate) fn plaintext_bits(&self) -> u32 {
        self.p_bits - 2
    }
}

/// Public part: `G` and `H` in Montgomery form modulo `n`, with lazily built tables.
pub(crate) struct OuPublic {
    pub g: Box<[u64]>,
    pub h: Box<[u64]>,
    pub sizes: OuSizes,
    tables: OnceLock<(FixedBase, FixedBase)>,
    g_inv: OnceLock<FixedBase>,
}

impl OuPublic {
    pub(crate) fn new(g: Vec<u64>, h: Vec<u64>, sizes: OuSizes) -> Self {
        Self { g: g.into(), h: h.into(), sizes, tables: OnceLock::new(), g_inv: OnceLock::new() }
    }

    fn tables(&self, n: &Modulus) -> &(FixedBase, FixedBase) {
        self.tables.get_or_init(|| {
            (
                FixedBase::new(n, &self.g, self.sizes.plaintext_bits(), W_PUBLIC),
                FixedBase::new(n, &self.h, self.sizes.t_bits, W_PUBLIC),
            )
        })
    }

    fn g_inv_table(&self, n: &Modulus) -> &FixedBase {
        self.g_inv.get_or_init(|| {
            let g = limbs::to_biguint(&n.out_of_mont(&self.g));
            let nn = limbs::to_biguint(n.n());
            // G is a unit (checked when the key is built or read).
            let inv = g.modinv(&nn).unwrap_or_default();
            let inv =
                n.to_mont(&limbs::from_biguint(&inv, n.len()).unwrap_or_else(|| vec![0; n.len()]));
            FixedBase::new(n, &inv, self.sizes.plaintext_bits(), W_PUBLIC)
        })
    }

    /// Bytes held by the encryption tables built so far.
    pub(crate) fn table_bytes(&self) -> usize {
        self.tables.get().map_or(0, |(a, b)| a.bytes() + b.bytes())
            + self.g_inv.get().map_or(0, FixedBase::bytes)
    }

    /// `G^m` (Montgomery, mod n) for a signed plaintext given as sign and magnitude.
    pub(crate) fn g_pow(&self, n: &Modulus, negative: bool, mag: &[u64]) -> Vec<u64> {
        if negative { self.g_inv_table(n).pow(n, mag) } else { self.tables(n).0.pow(n, mag) }
    }

    /// `H^r` (Montgomery, mod n) for fresh `r < 2^(2λ)`.
    pub(crate) fn random_factor<R: CryptoRng + ?Sized>(
        &self,
        n: &Modulus,
        rng: &mut R,
    ) -> Vec<u64> {
        let mut r = prime::random_below_pow2(rng, self.sizes.t_bits);
        let hr = self.tables(n).1.pow(n, &r);
        r.zeroize();
        hr
    }
}

/// The key owner's values. Zeroized on drop.
pub(crate) struct OuSecret {
    pub p: Box<[u64]>,
    pub q: Box<[u64]>,
    pub t: Box<[u64]>,
    p2: Modulus,
    pm: Modulus,
    qm: Modulus,
    tm: Modulus,
    pinv64: u64,
    /// `L(G^t mod p²)⁻¹ mod p`, Montgomery form mod p.
    dec_inv: Box<[u64]>,
    /// `(p − 1)/2`.
    p_half: Box<[u64]>,
    /// `a·R_n mod p` (normal form) where `A = 1 + a·p`.
    a_rn: Box<[u64]>,
    /// `B` mod p², Montgomery.
    b: Box<[u64]>,
    /// `n mod t`, Montgomery mod t.
    n_t: Box<[u64]>,
    /// `q⁻¹ mod p²`, Montgomery mod p².
    q_inv_p2: Box<[u64]>,
    /// `G`, `H` mod q, Montgomery mod q.
    g_q: Box<[u64]>,
    h_q: Box<[u64]>,
    /// `R_n mod p²` and `R_n mod q` (normal forms): multiplying the CRT
    /// parts by them yields the ciphertext's Montgomery form mod n directly.
    rn_p2: Box<[u64]>,
    rn_q: Box<[u64]>,
    owner: OnceLock<OwnerTables>,
    owner_g_inv: OnceLock<FixedBase>,
}

struct OwnerTables {
    b: FixedBase,
    g_q: FixedBase,
    h_q: FixedBase,
}

impl Drop for OuSecret {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
        self.t.zeroize();
        self.pinv64.zeroize();
        self.dec_inv.zeroize();
        self.p_half.zeroize();
        self.a_rn.zeroize();
        self.b.zeroize();
        self.n_t.zeroize();
        self.q_inv_p2.zeroize();
        self.g_q.zeroize();
        self.h_q.zeroize();
        self.rn_p2.zeroize();
        self.rn_q.zeroize();
    }
}

/// Why a set of OU factors is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OuKeyProblem {
    /// `p²q ≠ n`, `t ∤ p − 1`, or a factor is even.
    Factors,
    /// `G` does not have order `p·t` modulo `p²`.
    Generator,
}

impl OuSecret {
    /// Derives every constant from `p, q, t` and the public `G` (normal form, mod n).
    /// `n` is the Montgomery modulus of `n = p²q`.
    pub(crate) fn new(
        p: &[u64],
        q: &[u64],
        t: &[u64],
        g: &[u64],
        n: &Modulus,
    ) -> Result<Self, OuKeyProblem> {
        let p = limbs::trimmed(p);
        let q = limbs::trimmed(q);
        let t = limbs::trimmed(t);
        let mut p2v = limbs::mul(p, p);
        let mut nv = limbs::mul(&p2v, q);
        let ok = limbs::cmp(limbs::trimmed(&nv), n.n()) == std::cmp::Ordering::Equal;
        nv.zeroize();
        let mut p1 = p.to_vec();
        limbs::sub_small(&mut p1, 1);
        let t_divides = t[0] & 1 == 1 && {
            let tm = Modulus::new(t);
            tm.is_some_and(|tm| limbs::is_zero(&tm.reduce(&p1)))
        };
        if !ok || !t_divides || p[0] & 1 == 0 || q[0] & 1 == 0 {
            p1.zeroize();
            p2v.zeroize();
            return Err(OuKeyProblem::Factors);
        }
        let (Some(p2), Some(pm), Some(qm), Some(tm)) =
            (Modulus::new(&p2v), Modulus::new(p), Modulus::new(q), Modulus::new(t))
        else {
            return Err(OuKeyProblem::Factors);
        };
        p2v.zeroize();
        let pinv64 = limbs::inv64(p[0]);
        let plen = p.len();
        // G mod p², Montgomery
        let g_p2 = Zeroizing::new(p2.reduce(g));
        // L(G^t mod p²)
        let gt = Zeroizing::new(p2.out_of_mont(&p2.pow(&g_p2, t)));
        let mut gt1 = Zeroizing::new(gt.clone());
        limbs::sub_small(&mut gt1, 1);
        let l = Zeroizing::new(exact_div_or_zero(&gt1, p, pinv64, plen, &pm));
        if limbs::is_zero(&l) {
            return Err(OuKeyProblem::Generator);
        }
        let mut p_2 = p.to_vec();
        limbs::sub_small(&mut p_2, 2);
        // Fermat inverses mod p
        // pow maps Montgomery forms to Montgomery forms: dec_inv = Mont(L⁻¹) by Fermat.
        let l_mont = Zeroizing::new(pm.to_mont(&l));
        let dec_inv = Zeroizing::new(pm.pow(&l_mont, &p_2));
        // t⁻¹ mod p
        let t_inv = Zeroizing::new(pm.out_of_mont(&pm.pow(&pm.reduce(t), &p_2)));
        // a = L(G^t)·t⁻¹ mod p, normal form: MontMul(L·R, t⁻¹) = L·t⁻¹
        let a = Zeroizing::new(pm.mul_vec(&l_mont, &t_inv));
        // B = G^(p·e2) with e2 = p⁻¹ mod t
        let mut t_2 = t.to_vec();
        limbs::sub_small(&mut t_2, 2);
        let e2 = Zeroizing::new(tm.out_of_mont(&tm.pow(&tm.reduce(p), &t_2)));
        let mut pe2 = limbs::mul(p, &e2);
        let b = Zeroizing::new(p2.pow(&g_p2, &pe2));
        pe2.zeroize();
        if b.as_slice() == p2.one() {
            return Err(OuKeyProblem::Generator);
        }
        // n mod t, Montgomery mod t
        let n_t = tm.reduce(n.n());
        // q⁻¹ mod p² = q^(p(p−1) − 1)
        let mut phi = limbs::mul(p, &p1);
        limbs::sub_small(&mut phi, 1);
        let q_inv_p2 = Zeroizing::new(p2.pow(&p2.reduce(q), &phi));
        phi.zeroize();
        // G, H mod q
        let g_q = Zeroizing::new(qm.reduce(g));
        let h_q = Zeroizing::new(qm.pow(&g_q, n.n()));
        let rn = limbs::pow2(64 * n.len() as u32, n.len() + 1);
        // a·R_n mod p = MontMul(Mont(R_n), a)
        let a_rn = Zeroizing::new(pm.mul_vec(&pm.reduce(&rn), &a));
        let rn_p2 = Zeroizing::new(p2.out_of_mont(&p2.reduce(&rn)));
        let rn_q = Zeroizing::new(qm.out_of_mont(&qm.reduce(&rn)));
        let mut p_half = p.to_vec();
        limbs::shr1(&mut p_half);
        p1.zeroize();
        p_2.zeroize();
        t_2.zeroize();
        Ok(Self {
            p: p.into(),
            q: q.into(),
            t: t.into(),
            p2,
            pm,
            qm,
            tm,
            pinv64,
            dec_inv: dec_inv[..].into(),
            p_half: p_half.into(),
            a_rn: a_rn[..].into(),
            b: b[..].into(),
            n_t: n_t.into(),
            q_inv_p2: q_inv_p2[..].into(),
            g_q: g_q[..].into(),
            h_q: h_q[..].into(),
            rn_p2: rn_p2[..].into(),
            rn_q: rn_q[..].into(),
            owner: OnceLock::new(),
            owner_g_inv: OnceLock::new(),
        })
    }

    fn owner_tables(&self, sizes: &OuSizes) -> &OwnerTables {
        self.owner.get_or_init(|| OwnerTables {
            b: FixedBase::new(&self.p2, &self.b, sizes.t_bits, W_OWNER_RAND),
            g_q: FixedBase::new(&self.qm, &self.g_q, sizes.plaintext_bits(), W_OWNER),
            h_q: FixedBase::new(&self.qm, &self.h_q, sizes.t_bits, W_OWNER_RAND),
        })
    }

    fn owner_g_inv(&self, sizes: &OuSizes) -> &FixedBase {
        self.owner_g_inv.get_or_init(|| {
            let mut q_2 = self.q.to_vec();
            limbs::sub_small(&mut q_2, 2);
            let inv = self.qm.pow(&self.g_q, &q_2);
            q_2.zeroize();
            FixedBase::new(&self.qm, &inv, sizes.plaintext_bits(), W_OWNER)
        })
    }

    /// Decrypts a ciphertext given in normal form mod n; returns the signed plaintext as
    /// (negative, magnitude limbs).
    pub(crate) fn decrypt(&self, c: &[u64]) -> (bool, Vec<u64>) {
        let x = Zeroizing::new(self.p2.reduce(c));
        let y = Zeroizing::new(self.p2.out_of_mont(&self.p2.pow(&x, &self.t)));
        let mut y1 = y;
        limbs::sub_small(&mut y1, 1);
        let l =
            Zeroizing::new(exact_div_or_zero(&y1, &self.p, self.pinv64, self.p.len(), &self.pm));
        // m = L · L(G^t)⁻¹: MontMul(L, Mont(inv)) = L·inv
        let mut m = self.pm.mul_vec(&l, &self.dec_inv);
        if limbs::cmp(&m, &self.p_half) == std::cmp::Ordering::Greater {
            let mut neg = self.p.to_vec();
            limbs::sub_assign(&mut neg, &m);
            m.zeroize();
            (true, neg)
        } else {
            (false, m)
        }
    }

    /// `c = G^m·H^r mod n` for fresh `r`, computed by the CRT; returns the Montgomery
    /// form mod n (`c·R_n mod n`), ready to be a [`super::Ciphertext`].
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        sizes: &OuSizes,
        negative: bool,
        mag: &[u64],
        rng: &mut R,
    ) -> Vec<u64> {
        let tables = self.owner_tables(sizes);
        let mut r = Zeroizing::new(prime::random_below_pow2(rng, sizes.t_bits));
        let zero = limbs::is_zero(mag);
        // mod p²: (1 + (m·a mod p)·p) · B^((m + n·r) mod t)
        // MontMul(Mont(n mod t), r) = n·r mod t in normal form (r < R_t, n_t < t)
        let tm = &self.tm;
        let mut e = Zeroizing::new(tm.mul_vec(&self.n_t, &limbs::resized(&r, tm.len())));
        if !zero {
            let m_t = Zeroizing::new(tm.out_of_mont(&tm.reduce(mag)));
            if negative {
                tm.sub_assign(&mut e, &m_t);
            } else {
                tm.add_assign(&mut e, &m_t);
            }
        }
        let bm = Zeroizing::new(tables.b.pow(&self.p2, &e));
        e.zeroize();
        let mut cp = if zero {
            // MontMul(Mont(B^e), R_n) = B^e·R_n, normal form
            self.p2.mul_vec(&bm, &self.rn_p2)
        } else {
            // A^m·R_n = (1 + m·a·p)·R_n ≡ R_n + p·(m·a·R_n mod p)  (mod p²)
            let m_p = Zeroizing::new(self.pm.reduce(mag)); // Montgomery of |m| mod p
            let ma = Zeroizing::new(self.pm.mul_vec(&m_p, &self.a_rn)); // |m|·a·R_n mod p
            let ma = if negative && !limbs::is_zero(&ma) {
                let mut neg = Zeroizing::new(self.p.to_vec());
                limbs::sub_assign(&mut neg, &ma);
                neg
            } else {
                ma
            };
            let pma = Zeroizing::new(limbs::resized(
                limbs::trimmed(&limbs::mul(&ma, &self.p)),
                self.p2.len(),
            ));
            let mut am = Zeroizing::new(self.rn_p2.to_vec());
            self.p2.add_assign(&mut am, &pma);
            // MontMul(Mont(B^e), A^m·R_n) = B^e·A^m·R_n, normal form
            self.p2.mul_vec(&bm, &am)
        };
        // mod q: G^m · H^r, times R_n
        let mut cq_m = Zeroizing::new(tables.h_q.pow(&self.qm, &r));
        r.zeroize();
        if !zero {
            let gm = Zeroizing::new(if negative {
                self.owner_g_inv(sizes).pow(&self.qm, mag)
            } else {
                tables.g_q.pow(&self.qm, mag)
            });
            self.qm.mul_assign(&mut cq_m, &gm);
        }
        let cq = Zeroizing::new(self.qm.mul_vec(&cq_m, &self.rn_q));
        // CRT: c = c_q + q·((c_p − c_q)·q⁻¹ mod p²)
        self.p2.sub_assign(&mut cp, &limbs::resized(&cq, self.p2.len()));
        let k = Zeroizing::new(self.p2.mul_vec(&cp, &self.q_inv_p2));
        let mut c = limbs::mul(&self.q, &k);
        limbs::add_assign(&mut c, &cq);
        cp.zeroize();
        c
    }
}

/// `(x)/p` for `x ≡ 0 mod p`, reduced below p (the quotient of `y − 1` by `p` is `< p`).
fn exact_div_or_zero(x: &[u64], p: &[u64], pinv64: u64, plen: usize, pm: &Modulus) -> Vec<u64> {
    let mut l = limbs::exact_div(x, p, pinv64, plen);
    if limbs::cmp(&l, pm.n()) != std::cmp::Ordering::Less {
        // only for malformed inputs (x not a multiple of p); keep the result in range
        l = pm.out_of_mont(&pm.reduce(&l));
    }
    l
}

/// Generated factors and public elements (normal forms).
pub(crate) struct OuKeyMaterial {
    pub p: Vec<u64>,
    pub q: Vec<u64>,
    pub t: Vec<u64>,
    pub n: Vec<u64>,
    pub g: Vec<u64>,
}

impl Drop for OuKeyMaterial {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
        self.t.zeroize();
    }
}

/// Draws `t`, `p = t·u + 1`, `q` with `|p²q| = bits`, and `G = g^u mod n` of order `p·t`
/// modulo `p²`.
pub(crate) fn generate<R: CryptoRng + ?Sized>(
    bits: u32,
    sizes: OuSizes,
    rng: &mut R,
) -> OuKeyMaterial {
    let len = bits.div_ceil(64) as usize;
    loop {
        let t = prime::random_prime(rng, sizes.t_bits);
        let p = prime::random_prime_with_factor(rng, &t, sizes.p_bits);
        // top two bits of p set, so p² has exactly 2|p| bits
        let top = sizes.p_bits - 2;
        if !limbs::bit(&p, top) {
            continue;
        }
        let p2 = Zeroizing::new(limbs::mul(&p, &p));
        let mut found = None;
        for _ in 0..64 {
            let q = prime::random_prime(rng, sizes.q_bits(bits));
            let n = limbs::mul(&p2, &q);
            if limbs::bits(&n) == bits && q != p {
                found = Some((q, limbs::resized(&n, len)));
                break;
            }
        }
        let Some((q, n)) = found else { continue };
        let Some(nm) = Modulus::new(&n) else { continue };
        // u = (p − 1)/t
        let mut p1 = p.clone();
        limbs::sub_small(&mut p1, 1);
        let mut u = limbs::exact_div(&p1, &t, limbs::inv64(t[0]), p.len());
        p1.zeroize();
        for _ in 0..16 {
            let g0 = prime::random_below(rng, &n);
            let g = nm.out_of_mont(&nm.pow(&nm.to_mont(&g0), &u));
            if OuSecret::new(&p, &q, &t, &g, &nm).is_ok() {
                u.zeroize();
                return OuKeyMaterial { p, q, t, n, g };
            }
        }
        u.zeroize();
    }
}
