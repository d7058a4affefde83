//! Additive HE per-operation cost, 2048-bit keys, one thread (plus the two-core batch
//! sums), and the bigint backends the Montgomery kernel was chosen against.
//!
//! `cargo bench -p fedcredit-crypto --bench he`
//!
//! - `he_{ou,paillier}/*`: encrypt (public key, key owner by CRT, pooled randomness),
//!   add, scalar multiply (64-bit and 14-bit scalars), decrypt.
//! - `he_batch/*`: `sum_by_bin` over 20,000 rows into 32 bins and compression of 32 packed
//!   bin sums, on all cores.
//! - `mulmod/*`: one modular multiplication at OU's 2048-bit `n` and Paillier's 4096-bit
//!   `n²`: this crate's Montgomery kernel (a ciphertext addition), `num-bigint` multiply
//!   and `%`, `crypto-bigint` `BoxedMontyForm`.
//!
//! After the criterion groups, `he::bench::measure` prints the per-op table beside
//! SecretFlow HEU's published figures (thread CPU time, ≥ 1 s per op).

use std::hint::black_box;

use criterion::{BatchSize, Criterion};
use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use fedcredit_crypto::he::{self, Ciphertext, Packer, Plaintext, Scheme, SecretKey};
use num_bigint::BigUint;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

const BITS: u32 = 2048;

fn key(scheme: Scheme) -> SecretKey {
    SecretKey::generate(scheme, BITS, &mut ChaCha20Rng::seed_from_u64(2048)).expect("key")
}

fn per_op(c: &mut Criterion, scheme: Scheme, sk: &SecretKey) {
    let pk = sk.public_key().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ms: Vec<Plaintext> = (0..64).map(|_| Plaintext::from(rng.next_u64() as i64)).collect();
    let cts: Vec<Ciphertext> = ms.iter().map(|m| pk.encrypt(m, &mut rng).expect("fits")).collect();
    let mut g = c.benchmark_group(format!("he_{scheme}"));
    let mut i = 0usize;
    g.bench_function("encrypt_public", |b| {
        b.iter(|| {
            i += 1;
            pk.encrypt(&ms[i % 64], &mut rng).expect("fits")
        })
    });
    g.bench_function("encrypt_owner", |b| {
        b.iter(|| {
            i += 1;
            sk.encrypt(&ms[i % 64], &mut rng).expect("fits")
        })
    });
    g.bench_function("encrypt_pooled", |b| {
        b.iter_batched(
            || sk.randomness_pool(1, &mut rng),
            |mut pool| {
                i += 1;
                pk.encrypt_pooled(&ms[i % 64], &mut pool).expect("pool")
            },
            BatchSize::SmallInput,
        )
    });
    let mut acc = pk.zero();
    g.bench_function("add", |b| {
        b.iter(|| {
            i += 1;
            pk.add_assign(&mut acc, &cts[i % 64])
        })
    });
    let k64 = rng.next_u64() | 1 << 63;
    g.bench_function("scalar_mul_64bit", |b| b.iter(|| pk.mul_u64(&cts[0], black_box(k64))));
    let k14 = rng.random_range(1u64 << 13..1 << 14);
    g.bench_function("scalar_mul_14bit", |b| b.iter(|| pk.mul_u64(&cts[0], black_box(k14))));
    let terms: Vec<Ciphertext> = (0..1024).map(|i| cts[i % 64].clone()).collect();
    let scalars: Vec<u64> = (0..1024).map(|_| rng.next_u64()).collect();
    g.bench_function("dot_1024_terms_64bit_2cores", |b| {
        b.iter(|| pk.dot_u64(&terms, &scalars).expect("lengths"))
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| {
            i += 1;
            sk.decrypt(&cts[i % 64])
        })
    });
    g.finish();
}

fn batch(c: &mut Criterion, ou: &SecretKey) {
    let pk = ou.public_key().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let rows = 20_000;
    let pool = ou.randomness_pool(rows, &mut rng);
    let mut pool = pool;
    let cts: Vec<Ciphertext> = (0..rows)
        .map(|i| pk.encrypt_pooled(&Plaintext::from(i as i64), &mut pool).expect("pool"))
        .collect();
    let bins: Vec<u8> = (0..rows).map(|_| rng.random_range(0..32u8)).collect();
    let mut g = c.benchmark_group("he_batch");
    g.sample_size(10);
    g.bench_function("ou_sum_by_bin_20k_rows_32_bins", |b| {
        b.iter(|| pk.sum_by_bin(&cts, &bins, 32).expect("bins"))
    });
    let packer = Packer::new(40, 3, 100_000).expect("packer");
    let sums: Vec<Ciphertext> = cts[..32].to_vec();
    g.bench_function("ou_compress_32_packed_sums", |b| {
        b.iter(|| pk.compress(&sums, &packer).expect("fits"))
    });
    g.finish();
}

fn mulmod(c: &mut Criterion, ou: &SecretKey, paillier: &SecretKey) {
    let mut g = c.benchmark_group("mulmod");
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for (name, sk, bits) in [("2048", ou, 2048u32), ("4096", paillier, 4096)] {
        let pk = sk.public_key().clone();
        let a = pk.encrypt_i64(1, &mut rng).expect("fits");
        let b2 = pk.encrypt_i64(2, &mut rng).expect("fits");
        let mut acc = a.clone();
        g.bench_function(format!("{name}/montgomery_cios"), |b| {
            b.iter(|| pk.add_assign(&mut acc, &b2))
        });
        // the same modulus for the other backends
        let n = BigUint::from_bytes_be(&pk.to_bytes()[8..8 + 256]);
        let modulus = if bits == 4096 { &n * &n } else { n };
        let x = BigUint::from_bytes_be(&pk.ciphertext_to_bytes(&a));
        let y = BigUint::from_bytes_be(&pk.ciphertext_to_bytes(&b2));
        let mut z = x.clone();
        g.bench_function(format!("{name}/num_bigint_mul_rem"), |b| {
            b.iter(|| z = (&z * &y) % &modulus)
        });
        let to_boxed =
            |v: &BigUint| BoxedUint::from_be_slice(&v.to_bytes_be(), bits).expect("fits");
        let params = BoxedMontyParams::new(Odd::new(to_boxed(&modulus)).expect("odd"));
        let xm = BoxedMontyForm::new(to_boxed(&x), &params);
        let ym = BoxedMontyForm::new(to_boxed(&y), &params);
        let mut zm = xm.clone();
        g.bench_function(format!("{name}/crypto_bigint_monty"), |b| b.iter(|| zm = zm.mul(&ym)));
    }
    g.finish();
}

fn table() {
    println!("\nper operation, one core, 2048-bit keys (he::bench::measure, thread CPU time)");
    println!("{:<10} {:<22} {:>12} {:>12}", "scheme", "op", "fedcredit", "HEU");
    for scheme in [Scheme::Ou, Scheme::Paillier] {
        let t = match he::bench::measure(scheme, BITS, 1.0) {
            Ok(t) => t,
            Err(e) => {
                println!("{scheme}: {e}");
                continue;
            }
        };
        let heu = |k: &str| {
            he::bench::heu_reference(scheme)
                .iter()
                .find(|(n, _)| *n == k)
                .map_or("-".to_string(), |(_, v)| format!("{v}"))
        };
        let rows = [
            ("keygen_ms", t.keygen_ms),
            ("encrypt_us", t.encrypt_us),
            ("encrypt_owner_us", t.encrypt_owner_us),
            ("encrypt_pooled_us", t.encrypt_pooled_us),
            ("randomness_owner_us", t.randomness_owner_us),
            ("add_us", t.add_us),
            ("scalar_mul_us", t.scalar_mul_us),
            ("scalar_mul_small_us", t.scalar_mul_small_us),
            ("dot_term_us", t.dot_term_us),
            ("decrypt_us", t.decrypt_us),
        ];
        for (k, v) in rows {
            println!("{:<10} {:<22} {:>12.2} {:>12}", scheme.to_string(), k, v, heu(k));
        }
    }
}

fn main() {
    let ou = key(Scheme::Ou);
    let paillier = key(Scheme::Paillier);
    let mut c = Criterion::default().configure_from_args();
    per_op(&mut c, Scheme::Ou, &ou);
    per_op(&mut c, Scheme::Paillier, &paillier);
    batch(&mut c, &ou);
    mulmod(&mut c, &ou, &paillier);
    c.final_summary();
    table();
}
