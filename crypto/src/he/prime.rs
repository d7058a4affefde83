//! Random primes for key generation: a sieve over an arithmetic progression from a random
//! odd start (the incremental search of Brandt and Damgård, "On generation of probable
//! primes by incremental search", Crypto 1992), then Miller–Rabin (Rabin, "Probabilistic
//! algorithm for testing primality", J. Number Theory 12, 1980) with random bases.
//!
//! The progression step is 2 for ordinary primes and `2t` for Okamoto–Uchiyama's
//! `p = t·u + 1`. Miller–Rabin uses the Montgomery arithmetic of [`super::mont`].

use std::sync::OnceLock;

use rand::CryptoRng;
use zeroize::Zeroize;

use super::limbs;
use super::mont::Modulus;

/// Miller–Rabin rounds for an accepted prime: a random-base error below 2^-80 per prime
/// (FIPS 186-5 Table B.1 asks for 4–5 rounds at these sizes; we use more).
pub(crate) const MR_ROUNDS: u32 = 40;

const SIEVE_LIMIT: u64 = 1 << 14;
const WINDOW: usize = 4096;

/// Odd primes below 2^14.
pub(crate) fn small_primes() -> &'static [u64] {
    static PRIMES: OnceLock<Vec<u64>> = OnceLock::new();
    PRIMES.get_or_init(|| {
        let n = SIEVE_LIMIT as usize;
        let mut composite = vec![false; n];
        let mut out = Vec::new();
        for i in 3..n {
            if i % 2 == 1 && !composite[i] {
                out.push(i as u64);
                let mut j = i * i;
                while j < n {
                    composite[j] = true;
                    j += i;
                }
            }
        }
        out
    })
}

/// Random limbs with exactly `bits` bits (top bit set).
pub(crate) fn random_bits<R: CryptoRng + ?Sized>(rng: &mut R, bits: u32) -> Vec<u64> {
    let len = bits.div_ceil(64) as usize;
    let mut x: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
    let top = bits - 64 * (len as u32 - 1);
    if top < 64 {
        x[len - 1] &= (1u64 << top) - 1;
    }
    x[len - 1] |= 1u64 << (top - 1);
    x
}

/// Uniform limbs below `2^bits` (top bit not forced).
pub(crate) fn random_below_pow2<R: CryptoRng + ?Sized>(rng: &mut R, bits: u32) -> Vec<u64> {
    let len = bits.div_ceil(64).max(1) as usize;
    let mut x: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
    let top = bits - 64 * (len as u32 - 1);
    if top < 64 {
        x[len - 1] &= (1u64 << top) - 1;
    }
    x
}

/// Uniform in `[1, n)` (rejection sampling), `n.len()` limbs.
pub(crate) fn random_below<R: CryptoRng + ?Sized>(rng: &mut R, n: &[u64]) -> Vec<u64> {
    let bits = limbs::bits(n);
    loop {
        let x = limbs::resized(&random_below_pow2(rng, bits), n.len());
        if !limbs::is_zero(&x) && limbs::cmp(&x, n) == std::cmp::Ordering::Less {
            return x;
        }
    }
}

/// Trial division by the small primes, then Miller–Rabin with `rounds` random bases.
#[cfg(test)]
pub(crate) fn is_probable_prime<R: CryptoRng + ?Sized>(
    n: &[u64],
    rounds: u32,
    rng: &mut R,
) -> bool {
    let n = limbs::trimmed(n);
    if n.len() == 1 && n[0] < SIEVE_LIMIT {
        return n[0] == 2 || (n[0] & 1 == 1 && small_primes().binary_search(&n[0]).is_ok());
    }
    if n[0] & 1 == 0 || small_primes().iter().any(|&s| limbs::rem_small(n, s) == 0) {
        return false;
    }
    miller_rabin(n, rounds, rng)
}

/// Miller–Rabin with `rounds` random bases; `n` odd and ≥ 2^14.
pub(crate) fn miller_rabin<R: CryptoRng + ?Sized>(n: &[u64], rounds: u32, rng: &mut R) -> bool {
    let n = limbs::trimmed(n);
    let Some(m) = Modulus::new(n) else {
        return false;
    };
    let mut n1 = n.to_vec();
    limbs::sub_small(&mut n1, 1);
    let mut s = 0u32;
    let mut d = n1.clone();
    while d[0] & 1 == 0 {
        limbs::shr1(&mut d);
        s += 1;
    }
    // Montgomery forms of 1 and n − 1
    let one = m.one().to_vec();
    let mut minus_one = n.to_vec();
    limbs::sub_assign(&mut minus_one, &one);
    let mut n3 = n.to_vec();
    limbs::sub_small(&mut n3, 3);
    let mut ok = true;
    for _ in 0..rounds {
        // a in [2, n − 2]
        let mut a = random_below(rng, &n3);
        limbs::add_small(&mut a, 1);
        let am = m.to_mont(&a);
        let mut x = m.pow(&am, &d);
        if x == one || x == minus_one {
            continue;
        }
        let mut witness = true;
        for _ in 1..s {
            m.square_assign(&mut x);
            if x == minus_one {
                witness = false;
                break;
            }
        }
        if witness {
            ok = false;
            break;
        }
    }
    d.zeroize();
    n1.zeroize();
    ok
}

/// The first probable prime `start + k·step` (k ≥ 0, within a window) below `limit`;
/// `None` if the window has none. `start` odd, `step` even; the result has `limit.len()` limbs.
fn search<R: CryptoRng + ?Sized>(
    start: &[u64],
    step: &[u64],
    limit: &[u64],
    rng: &mut R,
) -> Option<Vec<u64>> {
    let mut marked = vec![false; WINDOW];
    for &s in small_primes() {
        let r = limbs::rem_small(start, s);
        let d = limbs::rem_small(step, s);
        if d == 0 {
            if r == 0 {
                return None;
            }
            continue;
        }
        // k ≡ −r·d⁻¹ (mod s)
        let dinv = pow_small(d, s - 2, s);
        let k0 = ((s - r) % s) as u128 * dinv as u128 % s as u128;
        let mut k = k0 as usize;
        while k < WINDOW {
            marked[k] = true;
            k += s as usize;
        }
    }
    for (k, &m) in marked.iter().enumerate() {
        if m {
            continue;
        }
        let mut cand = limbs::mul_small(step, k as u64);
        cand.resize(cand.len().max(start.len()).max(limit.len()) + 1, 0);
        limbs::add_assign(&mut cand, start);
        if limbs::cmp(&cand, limit) != std::cmp::Ordering::Less {
            return None;
        }
        let cand = limbs::resized(&cand, limit.len());
        // one round to discard composites quickly, then the full count
        if miller_rabin(&cand, 1, rng) && miller_rabin(&cand, MR_ROUNDS, rng) {
            return Some(cand);
        }
    }
    None
}

fn pow_small(mut b: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1u128;
    let mut b128 = b as u128 % m as u128;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b128 % m as u128;
        }
        b128 = b128 * b128 % m as u128;
        e >>= 1;
    }
    b = r as u64;
    b
}

/// A random probable prime of exactly `bits` bits whose two top bits are set (so that
/// the product of two such primes has exactly `2·bits` bits).
pub(crate) fn random_prime<R: CryptoRng + ?Sized>(rng: &mut R, bits: u32) -> Vec<u64> {
    loop {
        let mut start = random_bits(rng, bits);
        if bits >= 2 {
            let top = bits - 2;
            start[(top / 64) as usize] |= 1u64 << (top % 64);
        }
        start[0] |= 1;
        let limit = limbs::pow2(bits, bits.div_ceil(64) as usize + 1);
        if let Some(p) = search(&start, &[2], &limit, rng) {
            start.zeroize();
            return limbs::resized(&p, bits.div_ceil(64) as usize);
        }
    }
}

/// A random probable prime `p = t·u + 1` of exactly `bits` bits with the two top bits
/// set, `u` even (Okamoto–
/// Uchiyama with the subgroup of Coron, Naccache and Paillier). Returns `p`.
pub(crate) fn random_prime_with_factor<R: CryptoRng + ?Sized>(
    rng: &mut R,
    t: &[u64],
    bits: u32,
) -> Vec<u64> {
    let tb = limbs::bits(t);
    let step = limbs::mul_small(t, 2);
    loop {
        // u of (bits − tb) bits, even: p = t·u + 1 lands at bits − 1 or bits bits.
        let mut u = random_bits(rng, bits - tb + 1);
        u[0] &= !1;
        let mut start = limbs::mul(t, &u);
        limbs::add_small(&mut start, 1);
        // exactly `bits` bits with the two top bits set, so that p² has exactly 2·bits
        if limbs::bits(&start) != bits || !limbs::bit(&start, bits - 2) {
            continue;
        }
        let limit = limbs::pow2(bits, bits.div_ceil(64) as usize + 1);
        if let Some(p) = search(&start, &step, &limit, rng) {
            u.zeroize();
            start.zeroize();
            return limbs::resized(&p, bits.div_ceil(64) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn recognises_primes_and_composites() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        // 2^127 − 1 is prime; 2^128 + 1 = 59649589127497217 · 5704689200685129054721
        assert!(is_probable_prime(&[u64::MAX, (1 << 63) - 1], 20, &mut rng));
        assert!(!is_probable_prime(&[1, 1], 20, &mut rng));
        // Carmichael number 3215031751 = 151·751·28351
        assert!(!is_probable_prime(&[3_215_031_751], 20, &mut rng));
        let p = random_prime(&mut rng, 200);
        assert_eq!(limbs::bits(&p), 200);
        assert!(is_probable_prime(&p, 20, &mut rng));
        let t = random_prime(&mut rng, 64);
        let q = random_prime_with_factor(&mut rng, &t, 171);
        assert_eq!(limbs::bits(&q), 171);
        let mut q1 = q.clone();
        limbs::sub_small(&mut q1, 1);
        assert_eq!(limbs::rem_small(&q1, t[0]), 0);
    }
}
