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

/// CPU time of this process so far, in seconds: the sum of every thread's on-CPU time
/// (`/proc/self/task/*/schedstat`, Linux). Rates per CPU-second stay meaningful when other
/// processes share the cores; `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Wall and CPU seconds of `f` on `pool` (kept alive across calls, so that no thread's
/// CPU time leaves the sum while measuring).
fn timed<T>(pool: &rayon::ThreadPool, f: impl FnOnce() -> T + Send) -> (f64, f64)
where
    T: Send,
{
    pool.install(|| {
        let (cpu0, t0) = (process_cpu_seconds().unwrap_or(0.0), std::time::Instant::now());
        black_box(f());
        (t0.elapsed().as_secs_f64(), process_cpu_seconds().unwrap_or(0.0) - cpu0)
    })
}

/// Wall seconds, on `pool`, of one party's alignment of 1M fully blinded values against
/// 1M (half common), and of the server-aided set work at 1M × 1M (the coordinator's
/// intersection of unsorted token sets plus both parties' alignments).
fn set_operations_at_1m(pool: &rayon::ThreadPool) -> (f64, f64) {
    use rand::Rng;
    const M: usize = 1_000_000;
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut random = |k: usize| -> Vec<[u8; 32]> {
        (0..k)
            .map(|_| {
                let mut v = [0u8; 32];
                rng.fill_bytes(&mut v);
                v
            })
            .collect()
    };
    let mine = random(M);
    let mut theirs = random(M / 2);
    theirs.extend_from_slice(&mine[M / 2..]);
    let (align, _) = timed(pool, || align_rows(&mine, &[&theirs]));
    let token_key = TokenKey::derive(&[1u8; 32], b"bench");
    let ta = tokens(&synthetic_ids(0, M), &token_key);
    let tb = tokens(&synthetic_ids(M as u64 / 2, M), &token_key);
    let (server, _) = timed(pool, || {
        let common = intersect_tokens(&[&ta, &tb]);
        (align_rows(&ta, &[&common]), align_rows(&tb, &[&common]))
    });
    (align, server)
}

fn estimates(_: &mut Criterion) {
    const N: usize = 40_000;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (ka, kb) = (PsiKey::random(&mut rng), PsiKey::random(&mut rng));
    let dst = Dst::for_job("bench");
    let (a, b) = (synthetic_ids(0, N), synthetic_ids(N as u64 / 2, N));
    let (sent_a, sent_b) = (blind_ids(&a, &dst, &ka), blind_ids(&b, &dst, &kb));
    let full_a = reblind(&sent_a, &kb).expect("valid");
    let full_b = reblind(&sent_b, &ka).expect("valid");
    let token_key = TokenKey::derive(&[1u8; 32], b"bench");
    let (ta, tb) = (tokens(&a, &token_key), tokens(&b, &token_key));
    let pools: Vec<rayon::ThreadPool> = [1, 2]
        .iter()
        .map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("pool"))
        .collect();
    for pool in &pools {
        let threads = pool.current_num_threads();
        let blind = timed(pool, || blind_ids(&a, &dst, &ka));
        let again = timed(pool, || reblind(&sent_b, &ka));
        let align = timed(pool, || align_rows(&full_a, &[&full_b]));
        let tok = timed(pool, || tokens(&a, &token_key));
        let inter = timed(pool, || intersect_tokens(&[&ta, &tb]));
        let per = |(wall, cpu): (f64, f64)| (N as f64 / wall, N as f64 / cpu);
        println!(
            "psi {threads} thread(s), {N} ids [per wall-s | per CPU-s]: blind {:.0} | {:.0}, \
             reblind {:.0} | {:.0}, tokens {:.0} | {:.0}; align {:.3} s, token intersect {:.3} s (wall)",
            per(blind).0,
            per(blind).1,
            per(again).0,
            per(again).1,
            per(tok).0,
            per(tok).1,
            align.0,
            inter.0,
        );
        if threads == 1 {
            // Two parties, 1M ids each, on two otherwise idle cores: the CPU work of both
            // parties divided over two cores; the set operations measured at full size.
            let (align_1m, tokens_1m) = set_operations_at_1m(&pools[1]);
            let m = 1_000_000.0 / N as f64;
            let ecdh = 2.0 * (blind.1 + again.1) * m / 2.0 + 2.0 * align_1m;
            let aided = 2.0 * tok.1 * m / 2.0 + tokens_1m;
            println!(
                "psi 1M x 1M (half common), 2 parties on 2 idle cores, crypto from CPU time, set \
                 operations measured on 2 threads: ECDH {ecdh:.1} s (align {align_1m:.2} s per \
                 party), server-aided {aided:.2} s (coordinator intersection and both \
                 alignments {tokens_1m:.2} s); no transfer"
            );
        }
    }
    let m = measure_throughput(20_000, 2).expect("pool");
    println!(
        "measure_throughput(20k, 2 threads), wall clock: 1M x 1M ECDH {:.1} s, server-aided {:.2} s",
        m.ecdh_two_party_seconds(1_000_000, 1_000_000),
        m.server_aided_two_party_seconds(1_000_000, 1_000_000),
    );
}

criterion_group!(benches, estimates, parts, chunks, intersections);
criterion_main!(benches);
