//! Paillier ("Public-key cryptosystems based on composite degree residuosity classes",
//! Eurocrypt 1999) with `g = n + 1`, CRT decryption (§7 of the paper), and the
//! randomness of Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key
//! system with applications to electronic voting", IJIS 9(6), 2010, §4.1):
//! `h_s = (−x²)^n mod n²` is public and a fresh encryption is
//! `c = (1 + m·n) · h_s^α mod n²` with `α < 2^⌈|n|/2⌉`, a fixed-base exponentiation
//! instead of `r^n` with a full-size exponent.
//!
//! `(1 + m·n)` costs nothing: negative `m` is encrypted as `1 + (n − |m|)·n` (the
//! plaintext `n − |m| ≡ −|m|`), so no inverse is ever taken.
//!
//! The key owner computes `h_s^α` modulo `p²` and `q²` from tables over the half-size
//! moduli and recombines by the CRT.

use std::sync::OnceLock;

use rand::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::limbs;
use super::mont::{FixedBase, Modulus};
use super::prime;

const W_PUBLIC: u32 = 8;
const W_OWNER: u32 = 8;

/// Public part.
pub(crate) struct PaillierPublic {
    /// `n` as a Montgomery modulus (for the message factor).
    pub n: Modulus,
    /// `h_s` in Montgomery form mod n².
    pub hs: Box<[u64]>,
    /// Bits of the DJN exponent `α`.
    pub alpha_bits: u32,
    /// `R_n³ mod n` (normal form), see [`Self::message_factor`].
    r3: Box<[u64]>,
    table: OnceLock<FixedBase>,
}

impl PaillierPublic {
    pub(crate) fn new(n: Modulus, hs: Vec<u64>, bits: u32) -> Self {
        let r2 = n.to_mont(n.one()); // Mont(R) = R²
        let r3 = n.to_mont(&r2); // R³
        Self {
            n,
            hs: hs.into(),
            alpha_bits: bits.div_ceil(2),
            r3: r3.into(),
            table: OnceLock::new(),
        }
    }

    fn table(&self, n2: &Modulus) -> &FixedBase {
        self.table.get_or_init(|| FixedBase::new(n2, &self.hs, self.alpha_bits, W_PUBLIC))
    }

    pub(crate) fn table_bytes(&self) -> usize {
        self.table.get().map_or(0, FixedBase::bytes)
    }

    /// `h_s^α` (Montgomery, mod n²) for fresh `α`.
    pub(crate) fn random_factor<R: CryptoRng + ?Sized>(
        &self,
        n2: &Modulus,
        rng: &mut R,
    ) -> Vec<u64> {
        let mut a = prime::random_below_pow2(rng, self.alpha_bits);
        let x = self.table(n2).pow(n2, &a);
        a.zeroize();
        x
    }

    /// Montgomery form (mod n²) of `1 + m·n`, for `|m| < n`.
    ///
    /// `(1 + m·n)·R ≡ R + n·(m·R mod n) (mod n²)` because `n·R mod n² = n·(R mod n)`, and
    /// `m·R mod n = MontMul_n(m, R_n³)` with `R = R_n²`: one multiplication modulo `n`
    /// instead of one modulo `n²`.
    pub(crate) fn message_factor(&self, n2: &Modulus, negative: bool, mag: &[u64]) -> Vec<u64> {
        if limbs::is_zero(mag) {
            return n2.one().to_vec();
        }
        let m = limbs::resized(mag, self.n.len());
        let y = self.n.mul_vec(&m, &self.r3);
        let ny = limbs::resized(&limbs::mul(self.n.n(), &y), n2.len());
        let mut out = n2.one().to_vec();
        if negative {
            n2.sub_assign(&mut out, &ny);
        } else {
            n2.add_assign(&mut out, &ny);
        }
        out
    }
}

/// The key owner's values. Zeroized on drop.
pub(crate) struct PaillierSecret {
    pub p: Box<[u64]>,
    pub q: Box<[u64]>,
    p2: Modulus,
    q2: Modulus,
    pm: Modulus,
    qm: Modulus,
    pinv64: u64,
    qinv64: u64,
    p1: Box<[u64]>,
    q1: Box<[u64]>,
    /// `L_p((n+1)^(p−1) mod p²)⁻¹ = −q⁻¹ mod p`, Montgomery mod p; likewise for q.
    hp: Box<[u64]>,
    hq: Box<[u64]>,
    /// `q⁻¹ mod p`, Montgomery mod p.
    q_inv_p: Box<[u64]>,
    /// `(n − 1)/2`.
    n_half: Box<[u64]>,
    n: Box<[u64]>,
    /// `h_s` mod p², mod q² (Montgomery) and `(q²)⁻¹ mod p²` (Montgomery).
    hs_p2: Box<[u64]>,
    hs_q2: Box<[u64]>,
    q2_inv_p2: Box<[u64]>,
    /// `n mod p²`, `n mod q²` (normal).
    n_p2: Box<[u64]>,
    n_q2: Box<[u64]>,
    q2v: Box<[u64]>,
    /// `R_N mod p²`, `R_N mod q²` (normal) for `R_N = 2^(64·limbs(n²))`: multiplying the
    /// CRT parts by them yields the Montgomery form mod n² directly.
    rn_p2: Box<[u64]>,
    rn_q2: Box<[u64]>,
    owner: OnceLock<(FixedBase, FixedBase)>,
}

impl Drop for PaillierSecret {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
        self.pinv64.zeroize();
        self.qinv64.zeroize();
        self.p1.zeroize();
        self.q1.zeroize();
        self.hp.zeroize();
        self.hq.zeroize();
        self.q_inv_p.zeroize();
        self.hs_p2.zeroize();
        self.hs_q2.zeroize();
        self.q2_inv_p2.zeroize();
        self.n_p2.zeroize();
        self.n_q2.zeroize();
        self.q2v.zeroize();
        self.rn_p2.zeroize();
        self.rn_q2.zeroize();
    }
}

impl PaillierSecret {
    /// Derives the constants from `p, q` and the public `h_s` (normal form mod n²).
    /// `None` if `p·q ≠ n` or a factor is even or equal to the other.
    pub(crate) fn new(p: &[u64], q: &[u64], n: &[u64], hs: &[u64]) -> Option<Self> {
        let p = limbs::trimmed(p);
        let q = limbs::trimmed(q);
        let mut pq = limbs::mul(p, q);
        let ok = limbs::cmp(limbs::trimmed(&pq), limbs::trimmed(n)) == std::cmp::Ordering::Equal;
        pq.zeroize();
        if !ok || p[0] & 1 == 0 || q[0] & 1 == 0 || p == q {
            return None;
        }
        let mut p2v = limbs::mul(p, p);
        let mut q2v = limbs::mul(q, q);
        let p2 = Modulus::new(&p2v)?;
        let q2 = Modulus::new(&q2v)?;
        let pm = Modulus::new(p)?;
        let qm = Modulus::new(q)?;
        let mut p1 = p.to_vec();
        limbs::sub_small(&mut p1, 1);
        let mut q1 = q.to_vec();
        limbs::sub_small(&mut q1, 1);
        let mut p_2 = p.to_vec();
        limbs::sub_small(&mut p_2, 2);
        let mut q_2 = q.to_vec();
        limbs::sub_small(&mut q_2, 2);
        // q⁻¹ mod p and p⁻¹ mod q (Fermat), Montgomery forms
        let q_inv_p = Zeroizing::new(pm.pow(&pm.reduce(q), &p_2));
        let p_inv_q = Zeroizing::new(qm.pow(&qm.reduce(p), &q_2));
        // hp = −q⁻¹ mod p
        let mut hp = Zeroizing::new(pm.n().to_vec());
        limbs::sub_assign(&mut hp, &q_inv_p);
        let mut hq = Zeroizing::new(qm.n().to_vec());
        limbs::sub_assign(&mut hq, &p_inv_q);
        let mut n_half = limbs::trimmed(n).to_vec();
        limbs::shr1(&mut n_half);
        // (q²)⁻¹ mod p² = (q²)^(p(p−1) − 1)
        let mut phi = limbs::mul(p, &p1);
        limbs::sub_small(&mut phi, 1);
        let q2_inv_p2 = Zeroizing::new(p2.pow(&p2.reduce(&q2v), &phi));
        phi.zeroize();
        let hs_p2 = Zeroizing::new(p2.reduce(hs));
        let hs_q2 = Zeroizing::new(q2.reduce(hs));
        let nl = 2 * limbs::trimmed(n).len();
        let rn = limbs::pow2(64 * nl as u32, nl + 1);
        let rn_p2 = Zeroizing::new(p2.out_of_mont(&p2.reduce(&rn)));
        let rn_q2 = Zeroizing::new(q2.out_of_mont(&q2.reduce(&rn)));
        let n_p2 = p2.out_of_mont(&p2.reduce(n));
        let n_q2 = q2.out_of_mont(&q2.reduce(n));
        p_2.zeroize();
        q_2.zeroize();
        p2v.zeroize();
        let q2v_box = limbs::trimmed(&q2v).to_vec().into_boxed_slice();
        q2v.zeroize();
        Some(Self {
            p: p.into(),
            q: q.into(),
            p2,
            q2,
            pm,
            qm,
            pinv64: limbs::inv64(p[0]),
            qinv64: limbs::inv64(q[0]),
            p1: p1.into(),
            q1: q1.into(),
            hp: hp[..].into(),
            hq: hq[..].into(),
            q_inv_p: q_inv_p[..].into(),
            n_half: n_half.into(),
            n: limbs::trimmed(n).into(),
            hs_p2: hs_p2[..].into(),
            hs_q2: hs_q2[..].into(),
            q2_inv_p2: q2_inv_p2[..].into(),
            n_p2: n_p2.into(),
            n_q2: n_q2.into(),
            q2v: q2v_box,
            rn_p2: rn_p2[..].into(),
            rn_q2: rn_q2[..].into(),
            owner: OnceLock::new(),
        })
    }

    fn owner_tables(&self, alpha_bits: u32) -> &(FixedBase, FixedBase) {
        self.owner.get_or_init(|| {
            (
                FixedBase::new(&self.p2, &self.hs_p2, alpha_bits, W_OWNER),
                FixedBase::new(&self.q2, &self.hs_q2, alpha_bits, W_OWNER),
            )
        })
    }

    /// `m_p = L_p(c^(p−1) mod p²)·h_p mod p` (normal form).
    fn half(c: &[u64], sq: &Modulus, m: &Modulus, e: &[u64], inv64: u64, h: &[u64]) -> Vec<u64> {
        let x = Zeroizing::new(sq.reduce(c));
        let mut y = Zeroizing::new(sq.out_of_mont(&sq.pow(&x, e)));
        limbs::sub_small(&mut y, 1);
        let mut l = Zeroizing::new(limbs::exact_div(&y, m.n(), inv64, m.len()));
        if limbs::cmp(&l, m.n()) != std::cmp::Ordering::Less {
            l = Zeroizing::new(m.out_of_mont(&m.reduce(&l)));
        }
        m.mul_vec(&l, h)
    }

    /// Decrypts a ciphertext in normal form mod n²: (negative, magnitude).
    pub(crate) fn decrypt(&self, c: &[u64]) -> (bool, Vec<u64>) {
        let mp = Zeroizing::new(Self::half(c, &self.p2, &self.pm, &self.p1, self.pinv64, &self.hp));
        let mq = Zeroizing::new(Self::half(c, &self.q2, &self.qm, &self.q1, self.qinv64, &self.hq));
        // m = m_q + q·((m_p − m_q)·q⁻¹ mod p)
        let mq_p = Zeroizing::new(self.pm.out_of_mont(&self.pm.reduce(&mq)));
        let mut d = mp;
        self.pm.sub_assign(&mut d, &mq_p);
        let k = Zeroizing::new(self.pm.mul_vec(&d, &self.q_inv_p));
        let mut m = limbs::mul(&self.q, &k);
        limbs::add_assign(&mut m, &mq);
        let m = limbs::resized(limbs::trimmed(&m), self.n.len());
        if limbs::cmp(&m, &self.n_half) == std::cmp::Ordering::Greater {
            let mut neg = self.n.to_vec();
            limbs::sub_assign(&mut neg, &m);
            (true, neg)
        } else {
            (false, m)
        }
    }

    /// `(1 + m·n)·h_s^α mod n²` for fresh `α`, by the CRT; returns the Montgomery form
    /// mod n² (`c·R_N mod n²`), ready to be a [`super::Ciphertext`].
    pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
        &self,
        alpha_bits: u32,
        negative: bool,
        mag: &[u64],
        rng: &mut R,
    ) -> Vec<u64> {
        let (tp, tq) = self.owner_tables(alpha_bits);
        let mut a = Zeroizing::new(prime::random_below_pow2(rng, alpha_bits));
        let half = |table: &FixedBase, sq: &Modulus, nmod: &[u64], rn: &[u64]| {
            let hm = Zeroizing::new(table.pow(sq, &a));
            let x = if limbs::is_zero(mag) {
                hm
            } else {
                // 1 ± m·n mod s², from MontMul(Mont(m), n) = m·n; MontMul(Mont(h), f) = h·f
                let mn =
                    Zeroizing::new(sq.mul_vec(&sq.reduce(mag), &limbs::resized(nmod, sq.len())));
                let mut f = Zeroizing::new(limbs::pow2(0, sq.len()));
                if negative {
                    sq.sub_assign(&mut f, &mn);
                } else {
                    sq.add_assign(&mut f, &mn);
                }
                Zeroizing::new(sq.to_mont(&sq.mul_vec(&hm, &f)))
            };
            // MontMul(Mont(x), R_N) = x·R_N, normal form
            sq.mul_vec(&x, &limbs::resized(rn, sq.len()))
        };
        let mut cp = half(tp, &self.p2, &self.n_p2, &self.rn_p2);
        let cq = half(tq, &self.q2, &self.n_q2, &self.rn_q2);
        a.zeroize();
        // CRT: c = c_q + q²·((c_p − c_q)·(q²)⁻¹ mod p²)
        let cq_p = Zeroizing::new(self.p2.out_of_mont(&self.p2.reduce(&cq)));
        self.p2.sub_assign(&mut cp, &cq_p);
        let k = Zeroizing::new(self.p2.mul_vec(&cp, &self.q2_inv_p2));
        let mut c = limbs::mul(&self.q2v, &k);
        c.push(0);
        limbs::add_assign(&mut c, &cq);
        cp.zeroize();
        c
    }
}

/// Generated factors and the public `h_s` (normal forms).
pub(crate) struct PaillierKeyMaterial {
    pub p: Vec<u64>,
    pub q: Vec<u64>,
    pub n: Vec<u64>,
    pub hs: Vec<u64>,
}

impl Drop for PaillierKeyMaterial {
    fn drop(&mut self) {
        self.p.zeroize();
        self.q.zeroize();
    }
}

/// Two primes of `bits/2` bits (top two bits set, so `|n| = bits`) and
/// `h_s = (−x²)^n mod n²` for a random unit `x`.
pub(crate) fn generate<R: CryptoRng + ?Sized>(bits: u32, rng: &mut R) -> PaillierKeyMaterial {
    let len = bits.div_ceil(64) as usize;
    loop {
        let p = prime::random_prime(rng, bits / 2);
        let q = prime::random_prime(rng, bits / 2);
        if p == q {
            continue;
        }
        let n = limbs::resized(&limbs::mul(&p, &q), len);
        if limbs::bits(&n) != bits {
            continue;
        }
        let (Some(nm), Some(pm), Some(qm)) = (Modulus::new(&n), Modulus::new(&p), Modulus::new(&q))
        else {
            continue;
        };
        let x = prime::random_below(rng, &n);
        if limbs::is_zero(&pm.reduce(&x)) || limbs::is_zero(&qm.reduce(&x)) {
            continue;
        }
        let xm = nm.to_mont(&x);
        let x2 = nm.out_of_mont(&nm.mul_vec(&xm, &xm));
        let mut h = n.clone();
        limbs::sub_assign(&mut h, &x2);
        let n2v = limbs::mul(&n, &n);
        let Some(n2) = Modulus::new(&n2v) else { continue };
        let hs = n2.out_of_mont(&n2.pow(&n2.to_mont(&h), &n));
        return PaillierKeyMaterial { p, q, n, hs };
    }
}
