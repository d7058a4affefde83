//! PSI primitives: ECDH over ristretto255 (Huberman–Franklin–Hogg; RFC 9496 / RFC 9380 hash
//! to group) and server-aided tokens (Kamara et al., FC 2014).
//!
//! `cargo bench -p fedcredit-crypto --bench psi`
//!
//! - `psi_parts/*`: one operation on one point, one thread, for scale (hash to group,
//!   constant-time scalar multiplication, encode, batch encode, decode).
//! - `psi_chunk/*`: one chunk of 4,096 ids through `blind_ids`, `reblind` and `tokens` on
//!   one thread and on both cores; throughput in ids.
//! - `psi_intersect/*`: aligning 100k fully blinded values against 100k (half common),
//!   and intersecting 10k tokens with 1M sorted tokens (unbalanced).
//!
//! The end-to-end estimates for 1M × 1M come from `measure_throughput`, printed first.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use fedcredit_crypto::psi::{
    Dst, PsiKey, TokenKey, align_rows, blind_ids, intersect_tokens, measure_throughput, reblind,
    synthetic_ids, tokens,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const CHUNK: usize = 4096;

fn parts(c: &mut Criterion) {
    let dst = Dst::for_job("bench");
    let id = synthetic_ids(0, 1)[0];
    let point = dst.hash_to_group(&id);
    let scalar = Scalar::from_bytes_mod_order_wide(&[7u8; 64]);
    let batch: Vec<RistrettoPoint> =
        synthetic_ids(0, 256).iter().map(|id| dst.hash_to_group(id)).collect();
    let encoded = point.compress();
    let mut g = c.benchmark_group("psi_parts");
    g.bench_function("hash_to_group", |b| b.iter(|| dst.hash_to_group(black_box(&id))));
    g.bench_function("expand_message_xmd_64", |b| b.iter(|| dst.expand64(black_box(&id))));
    g.bench_function("scalar_mul_ct", |b| b.iter(|| black_box(point) * black_box(scalar)));
    g.bench_function("compress", |b| b.iter(|| black_box(point).compress()));
    g.throughput(Throughput::Elements(256));
    g.bench_function("double_and_compress_batch_256", |b| {
        b.iter(|| RistrettoPoint::double_and_compress_batch(black_box(&batch)))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("decompress", |b| {
        b.iter(|| CompressedRistretto(black_box(encoded.to_bytes())).decompress())
    });
    g.finish();
}

fn chunks(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key = PsiKey::random(&mut rng);
    let dst = Dst::for_job("bench");
    let ids = synthetic_ids(0, CHUNK);
    let blinded = blind_ids(&ids, &dst, &key);
    let token_key = TokenKey::derive(&[1u8; 32], b"bench");
    let mut g = c.benchmark_group("psi_chunk");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CHUNK as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        g.bench_function(format!("blind_ids/{threads}t"), |b| {
            b.iter(|| pool.install(|| blind_ids(black_box(&ids), &dst, &key)))
        });
        g.bench_function(format!("reblind/{threads}t"), |b| {
            b.iter(|| pool.install(|| reblind(black_box(&blinded), &key)))
        });
        g.bench_function(format!("tokens/{threads}t"), |b| {
            b.iter(|| pool.install(|| tokens(black_box(&ids), &token_key)))
        });
    }
    g.finish();
}

fn intersections(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let n = 100_000;
    // Fully blinded values are uniform 32-byte strings; random bytes stand in for them.
    let mut random32 = |k: usize| -> Vec<[u8; 32]> {
        use rand::Rng;
        (0..k)
            .map(|_| {
                let mut v = [0u8; 32];
                rng.fill_bytes(&mut v);
                v
            })
            .collect()
    };
    let mine = random32(n);
    let mut theirs = random32(n / 2);
    theirs.extend_from_slice(&mine[..n / 2]);
    let token_key = TokenKey::derive(&[1u8; 32], b"bench");
    let small = tokens(&synthetic_ids(0, 10_000), &token_key);
    let mut large = tokens(&synthetic_ids(5_000, 1_000_000), &token_key);
    large.sort_unstable();
    let mut g = c.benchmark_group("psi_intersect");
    g.sample_size(10);
    g.bench_function("align_rows_100k_x_100k", |b| {
        b.iter(|| align_rows(black_box(&mine), &[&theirs]))
    });
    g.bench_function("intersect_tokens_10k_x_1m_sorted", |b| {
        b.iter(|| intersect_tokens(&[black_box(&small), &large]))
    });
    g.finish();
}

fn estimates(_: &mut Criterion) {
    for threads in [1, 2] {
        let m = measure_throughput(20_000, threads).expect("pool");
        println!(
            "psi {threads} thread(s): blind {:.0} ids/s, reblind {:.0} ids/s, tokens {:.0} ids/s; \
             1M x 1M two-party estimate: ECDH {:.1} s, server-aided {:.2} s",
            m.blind_per_s,
            m.reblind_per_s,
            m.tokens_per_s,
            m.ecdh_two_party_seconds(1_000_000, 1_000_000),
            m.server_aided_two_party_seconds(1_000_000, 1_000_000),
        );
    }
}

criterion_group!(benches, estimates, parts, chunks, intersections);
criterion_main!(benches);
