//! Per-operation timings for `cargo bench -p fedcredit-crypto --bench he`.
//!
//! One thread, each operation looped until `min_seconds` of the thread's CPU time have
//! passed (Linux `/proc/thread-self/schedstat`; wall time elsewhere), on seeded random
//! inputs cycled from pools of 64. Tables and pools are built before timing. The figures
//! are per operation per core, comparable with SecretFlow HEU's published single-thread
//! numbers ([`heu_reference`]), which used plaintexts below 2^27 and scalars below 2^14
//! (HEU `phe_bench.cc`); we time 64-bit plaintexts and scalars and report the small
//! scalar separately.

use std::hint::black_box;
use std::time::Instant;

use num_bigint::BigUint;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{Ciphertext, HeError, Plaintext, Scheme, SecretKey, security_bits};

/// Microseconds (milliseconds for key generation) per operation on one core.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeOpTimes {
    /// Scheme measured.
    pub scheme: Scheme,
    /// Modulus bits.
    pub bits: u32,
    /// NIST-equivalent strength.
    pub security_bits: u32,
    /// `"thread-cpu"` or `"wall"`.
    pub clock: String,
    /// Modular-multiplication kernel ([`super::kernel`]).
    pub kernel: String,
    /// Key generation (mean over the keys made).
    pub keygen_ms: f64,
    /// Public-key encryption of a 64-bit plaintext with fresh randomness.
    pub encrypt_us: f64,
    /// Key-owner (CRT) encryption of a 64-bit plaintext with fresh randomness.
    pub encrypt_owner_us: f64,
    /// Online encryption with precomputed randomness ([`crate::he::RandomnessPool`]).
    pub encrypt_pooled_us: f64,
    /// One fresh randomness factor made by the key owner (the pool's cost per entry).
    pub randomness_owner_us: f64,
    /// Ciphertext addition.
    pub add_us: f64,
    /// Scalar multiplication by a 64-bit scalar (top bit set).
    pub scalar_mul_us: f64,
    /// Scalar multiplication by a 14-bit scalar (HEU's benchmark range).
    pub scalar_mul_small_us: f64,
    /// Per term of a 1024-term encrypted dot product `Σ k_i·[[m_i]]` with 64-bit scalars
    /// (Pippenger, one thread): a scalar multiplication and an addition, amortized.
    pub dot_term_us: f64,
    /// CRT decryption.
    pub decrypt_us: f64,
    /// Signed plaintext capacity in bits.
    pub plaintext_bits: u32,
    /// Bytes per ciphertext.
    pub ciphertext_bytes: usize,
    /// Bytes of the public encryption tables.
    pub table_bytes: usize,
}

/// SecretFlow HEU's published single-thread figures at 2048 bits (Xeon Gold 5218), in the
/// units of [`HeOpTimes`]: `(field, value)`.
pub fn heu_reference(scheme: Scheme) -> &'static [(&'static str, f64)] {
    match scheme {
        Scheme::Ou => {
            &[("encrypt_us", 27.8), ("add_us", 1.8), ("scalar_mul_us", 52.9), ("decrypt_us", 245.8)]
        }
        Scheme::Paillier => &[("encrypt_us", 814.0), ("add_us", 7.1), ("decrypt_us", 8700.0)],
    }
}

/// Nanoseconds of this thread's CPU time, if the platform exposes it.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Thread CPU time where available, else wall time (shared with the ElGamal bench).
pub(crate) struct Clock {
    pub(crate) cpu: bool,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { cpu: thread_cpu_ns().is_some_and(|x| x > 0) }
    }

    pub(crate) fn now(&self) -> (Instant, u64) {
        (Instant::now(), if self.cpu { thread_cpu_ns().unwrap_or(0) } else { 0 })
    }

    pub(crate) fn seconds_since(&self, start: (Instant, u64)) -> f64 {
        if self.cpu {
            thread_cpu_ns().unwrap_or(0).saturating_sub(start.1) as f64 * 1e-9
        } else {
            start.0.elapsed().as_secs_f64()
        }
    }

    /// Mean seconds per call of `f`, looping for at least `min_seconds`.
    pub(crate) fn time<F: FnMut(usize)>(&self, min_seconds: f64, mut f: F) -> f64 {
        f(0); // warm-up
        let start = self.now();
        let mut n = 0usize;
        let mut batch = 1usize;
        loop {
            for _ in 0..batch {
                f(n);
                n += 1;
            }
            let s = self.seconds_since(start);
            if s >= min_seconds {
                return s / n as f64;
            }
            batch = (batch * 2).min(1 << 16);
        }
    }
}

/// Measures every operation of `scheme` at `bits` bits on the calling thread.
///
/// # Errors
/// [`HeError::BadKeySize`] for an unsupported size.
pub fn measure(scheme: Scheme, bits: u32, min_seconds: f64) -> Result<HeOpTimes, HeError> {
    let clock = Clock::new();
    let mut rng = ChaCha20Rng::seed_from_u64(0x0048_4542_454e_4348);
    // key generation: at least one key, more while within the budget (at most 5)
    let mut keys = Vec::new();
    let start = clock.now();
    loop {
        keys.push(SecretKey::generate(scheme, bits, &mut rng)?);
        let s = clock.seconds_since(start);
        if keys.len() >= 5 || (s >= min_seconds && !keys.is_empty()) {
            break;
        }
    }
    let keygen_ms = clock.seconds_since(start) * 1e3 / keys.len() as f64;
    let sk = keys.swap_remove(0);
    let pk = sk.public_key().clone();
    let ms: Vec<Plaintext> = (0..64).map(|_| Plaintext::from(rng.next_u64() as i64)).collect();
    // warm the tables (built in parallel, outside the timed loops)
    let cts: Vec<Ciphertext> =
        ms.iter().map(|m| pk.encrypt(m, &mut rng)).collect::<Result<_, _>>()?;
    let _ = sk.encrypt(&ms[0], &mut rng)?;
    let mut r1 = ChaCha20Rng::seed_from_u64(1);
    let encrypt_us = clock.time(min_seconds, |i| {
        black_box(pk.encrypt(&ms[i % 64], &mut r1).ok());
    }) * 1e6;
    let encrypt_owner_us = clock.time(min_seconds, |i| {
        black_box(sk.encrypt(&ms[i % 64], &mut r1).ok());
    }) * 1e6;
    let randomness_owner_us = clock.time(min_seconds, |_| {
        black_box(sk.encrypt_split(false, &[0], &mut r1));
    }) * 1e6;
    // pooled: one pool of 2048 made beforehand (on all cores), then timed online
    let pooled = {
        let count = 2048;
        let mut pool = sk.randomness_pool(count, &mut rng);
        let start = clock.now();
        for i in 0..count {
            black_box(pk.encrypt_pooled(&ms[i % 64], &mut pool).ok());
        }
        clock.seconds_since(start) / count as f64
    };
    let mut acc = pk.zero();
    let add_us = clock.time(min_seconds, |i| pk.add_assign(&mut acc, &cts[i % 64])) * 1e6;
    black_box(&acc);
    let big: Vec<u64> = (0..64).map(|_| rng.next_u64() | (1 << 63)).collect();
    let scalar_mul_us = clock.time(min_seconds, |i| {
        black_box(pk.mul_u64(&cts[i % 64], big[i % 64]));
    }) * 1e6;
    let small: Vec<u64> = (0..64).map(|_| rng.random_range(1u64 << 13..1 << 14)).collect();
    let scalar_mul_small_us = clock.time(min_seconds, |i| {
        black_box(pk.mul_u64(&cts[i % 64], small[i % 64]));
    }) * 1e6;
    let terms: Vec<Ciphertext> = (0..1024).map(|i| cts[i % 64].clone()).collect();
    let scalars: Vec<u64> = (0..1024).map(|i| big[i % 64] ^ (i as u64)).collect();
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|_| HeError::BadSecretKey { scheme, why: "no thread pool for the benchmark" })?;
    let dot_term_us = one_thread.install(|| {
        clock.time(min_seconds, |_| {
            black_box(pk.dot_u64(&terms, &scalars).ok());
        })
    }) * 1e6
        / 1024.0;
    let decrypt_us = clock.time(min_seconds, |i| {
        black_box(sk.decrypt(&cts[i % 64]));
    }) * 1e6;
    // correctness guard: a benchmark of wrong results is worthless
    let check = sk.decrypt(&pk.mul_scalar(&cts[0], &BigUint::from(3u32)));
    let want = ms[0].as_bigint() * 3;
    if check.as_bigint() != &want {
        return Err(HeError::BadSecretKey { scheme, why: "benchmark self-check failed" });
    }
    Ok(HeOpTimes {
        scheme,
        bits,
        security_bits: security_bits(bits),
        clock: if clock.cpu { "thread-cpu" } else { "wall" }.to_string(),
        kernel: super::kernel().to_string(),
        keygen_ms,
        encrypt_us,
        encrypt_owner_us,
        encrypt_pooled_us: pooled * 1e6,
        randomness_owner_us,
        add_us,
        scalar_mul_us,
        scalar_mul_small_us,
        dot_term_us,
        decrypt_us,
        plaintext_bits: pk.plaintext_bits(),
        ciphertext_bytes: pk.ciphertext_len(),
        table_bytes: pk.table_bytes(),
    })
}
