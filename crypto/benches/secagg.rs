//! Secure-aggregation round cost, in process: 10 parties × 10,000 values.
//!
//! `cargo bench -p fedcredit-crypto --bench secagg`
//!
//! - `plaintext/*`: what aggregation costs without secure aggregation (f64 sum, and the
//!   fixed-point encode + ring sum + decode that secure aggregation adds on top).
//! - `secagg_round/*`: every party's two steps plus the server, one thread, no I/O
//!   (complete graph; and SecAgg+ with 4 neighbours per party).
//! - `secagg_server/*`: the server's share (reconstruction and unmasking).
//! - `secagg_parts/*`: one mask expansion and one X25519 agreement (done once per pair and
//!   job now, for the channel keys), for scale.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fedcredit_crypto::FixedPoint;
use fedcredit_crypto::secagg::masking::{MaskKind, MaskOp, apply_mask, apply_masks};
use fedcredit_crypto::secagg::{
    Aggregator, InputSpec, MaskSeed, MaskedState, PairRoot, PartyIndex, RoundSpec, SecAggParams,
    UnmaskShares, mask_input,
};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

const PARTIES: usize = 10;
const LEN: usize = 10_000;

fn spec(degree: Option<usize>) -> RoundSpec {
    let roster: Vec<String> = (0..PARTIES).map(|i| format!("bank{i:02}")).collect();
    let params = SecAggParams { threshold: None, degree };
    RoundSpec::new("bench", 0, 0, &roster, params).expect("valid spec")
}

fn input() -> InputSpec {
    InputSpec { fixed: FixedPoint::for_sum(PARTIES, 8.0, 20).expect("ring fits"), vector_len: LEN }
}

fn updates(rng: &mut ChaCha20Rng) -> Vec<Vec<f64>> {
    (0..PARTIES).map(|_| (0..LEN).map(|_| rng.random_range(-8.0..8.0)).collect()).collect()
}

/// One root per pair of parties (from the job's channel keys in the runtime).
fn roots(rng: &mut ChaCha20Rng) -> Vec<BTreeMap<PartyIndex, PairRoot>> {
    let mut out = vec![BTreeMap::new(); PARTIES];
    for u in 0..PARTIES {
        for v in u + 1..PARTIES {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            out[u].insert(v as PartyIndex, PairRoot::from_bytes(b));
            out[v].insert(u as PartyIndex, PairRoot::from_bytes(b));
        }
    }
    out
}

type Uploads = (Aggregator, BTreeMap<PartyIndex, MaskedState>);

/// Every party's upload; `drop_before_mask` parties never upload.
fn uploads(
    spec: &RoundSpec,
    all: &[BTreeMap<PartyIndex, PairRoot>],
    xs: &[Vec<f64>],
    drop_before_mask: &[PartyIndex],
    rng: &mut ChaCha20Rng,
) -> Uploads {
    let fp = input().fixed;
    let mut aggregator = Aggregator::new(spec.clone(), input()).expect("spec");
    let mut states = BTreeMap::new();
    for u in 0..PARTIES as PartyIndex {
        if drop_before_mask.contains(&u) {
            continue;
        }
        let r: BTreeMap<PartyIndex, PairRoot> =
            spec.graph().neighbours(u).iter().map(|&v| (v, all[u as usize][&v].clone())).collect();
        let x = fp.encode_vec(&xs[u as usize]);
        let (st, y, bundles) = mask_input(spec, u, &r, &x, &input(), rng).expect("mask");
        aggregator.add_masked(u, &y, bundles).expect("add");
        states.insert(u, st);
    }
    (aggregator, states)
}

/// One whole round.
fn round(
    spec: &RoundSpec,
    all: &[BTreeMap<PartyIndex, PairRoot>],
    xs: &[Vec<f64>],
    drop_before_mask: &[PartyIndex],
    rng: &mut ChaCha20Rng,
) -> Vec<f64> {
    let (aggregator, states) = uploads(spec, all, xs, drop_before_mask, rng);
    let plan = aggregator.plan().expect("plan");
    let mut responses: BTreeMap<PartyIndex, UnmaskShares> = BTreeMap::new();
    for (u, st) in states {
        let (alive, gone) = &plan.requests[&u];
        let bundles = aggregator.bundles_for(&plan, u);
        responses.insert(u, st.unmask(&bundles, alive, gone).expect("unmask"));
    }
    let sum = aggregator.unmask(&plan, &responses).expect("sum");
    input().fixed.decode_vec(&sum)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let xs = updates(&mut rng);
    let s = spec(None);
    let sparse = spec(Some(4));
    let fp = input().fixed;
    let all = roots(&mut rng);

    // Sanity: the secure sum equals the plain one within the fixed-point bound.
    let secure = round(&s, &all, &xs, &[], &mut rng);
    for (i, v) in secure.iter().enumerate() {
        let plain: f64 = xs.iter().map(|x| x[i]).sum();
        assert!((v - plain).abs() <= fp.sum_error_bound(PARTIES), "element {i}");
    }

    let mut g = c.benchmark_group("plaintext");
    g.bench_function("f64_sum_10x10k", |b| {
        b.iter(|| {
            let mut acc = vec![0.0f64; LEN];
            for x in black_box(&xs) {
                for (a, v) in acc.iter_mut().zip(x) {
                    *a += v;
                }
            }
            acc
        })
    });
    g.bench_function("fixed_point_sum_10x10k", |b| {
        b.iter(|| {
            let mut acc = vec![0u64; LEN];
            for x in black_box(&xs) {
                for (a, v) in acc.iter_mut().zip(fp.encode_vec(x)) {
                    *a = fp.add(*a, v);
                }
            }
            fp.decode_vec(&acc)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("secagg_round");
    g.sample_size(30);
    g.bench_function("10x10k_no_dropout", |b| {
        b.iter(|| round(&s, &all, black_box(&xs), &[], &mut rng))
    });
    g.bench_function("10x10k_one_dropout_before_upload", |b| {
        b.iter(|| round(&s, &all, black_box(&xs), &[3], &mut rng))
    });
    g.bench_function("10x10k_secagg_plus_degree_4", |b| {
        b.iter(|| round(&sparse, &all, black_box(&xs), &[], &mut rng))
    });
    g.finish();

    // Server only: precompute the parties' uploads and answers once.
    let (probe, states) = uploads(&s, &all, &xs, &[], &mut rng);
    let plan = probe.plan().expect("plan");
    let responses: BTreeMap<PartyIndex, UnmaskShares> = states
        .into_iter()
        .map(|(u, st)| {
            let (alive, gone) = &plan.requests[&u];
            (u, st.unmask(&probe.bundles_for(&plan, u), alive, gone).expect("unmask"))
        })
        .collect();
    let mut g = c.benchmark_group("secagg_server");
    g.bench_function("unmask_10x10k", |b| {
        b.iter_batched(
            || uploads(&s, &all, &xs, &[], &mut ChaCha20Rng::seed_from_u64(9)).0,
            |agg| {
                let plan = agg.plan().expect("plan");
                // Answers from another run do not match these uploads' seeds, so this times
                // reconstruction and mask removal only, not the sum's correctness.
                let _ = black_box(agg.unmask(&plan, &responses));
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("secagg_parts");
    let seed = MaskSeed::random(&mut rng);
    let mut buf = vec![0u64; LEN];
    g.bench_function("aes_ctr_mask_10k_28bit", |b| {
        b.iter(|| {
            apply_mask(&mut buf, &seed, MaskKind::Pairwise, fp.ring_bits, MaskOp::Add)
                .expect("mask");
            black_box(buf[0])
        })
    });
    // The keystream the masks used before AES-256-CTR, for comparison (40 KB = one 10k mask).
    let mut ks = vec![0u8; 4 * LEN];
    g.bench_function("chacha20_keystream_40kb", |b| {
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        b.iter(|| {
            let mut c = chacha20::ChaCha20::new(seed.as_bytes().into(), &[0u8; 12].into());
            c.apply_keystream(&mut ks);
            black_box(ks[0])
        })
    });
    // A party of ten: its self mask and nine pairwise masks in one pass.
    let seeds: Vec<MaskSeed> = (0..10).map(|_| MaskSeed::random(&mut rng)).collect();
    let masks: Vec<_> = seeds.iter().map(|s| (s, MaskKind::Pairwise, MaskOp::Add)).collect();
    g.bench_function("aes_ctr_ten_masks_10k_28bit", |b| {
        b.iter(|| {
            apply_masks(&mut buf, &masks, fp.ring_bits).expect("masks");
            black_box(buf[0])
        })
    });
    let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let peer =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
    g.bench_function("x25519_agreement", |b| b.iter(|| black_box(secret.diffie_hellman(&peer))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
