//! Secure-aggregation round cost, in process: 10 parties × 10,000 values.
//!
//! `cargo bench -p fedcredit-crypto --bench secagg`
//!
//! - `plaintext/*`: what aggregation costs without secure aggregation (f64 sum, and the
//!   fixed-point encode + ring sum + decode that secure aggregation adds on top).
//! - `secagg_round/*`: every party's four steps plus the server, one thread, no I/O
//!   (complete graph; and SecAgg+ with 4 neighbours per party).
//! - `secagg_server/*`: the server's share (running sum, reconstruction, unmasking).
//! - `secagg_parts/*`: one mask expansion and one X25519 agreement, for scale.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fedcredit_crypto::FixedPoint;
use fedcredit_crypto::secagg::masking::{MaskKind, MaskOp, apply_mask};
use fedcredit_crypto::secagg::{
    Aggregator, InputSpec, MaskSeed, PartyIndex, PublicKeys, RoundKeys, RoundSpec, SecAggParams,
    UnmaskShares, advertise,
};
use rand::{RngExt, SeedableRng};
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

/// One whole round; `drop_before_mask` parties share keys and then vanish.
fn round(
    spec: &RoundSpec,
    xs: &[Vec<f64>],
    drop_before_mask: &[PartyIndex],
    rng: &mut ChaCha20Rng,
) -> Vec<f64> {
    let fp = input().fixed;
    let n = PARTIES as PartyIndex;
    let mut keys = BTreeMap::new();
    let mut states = Vec::new();
    for u in 0..n {
        let (st, pk) = advertise(spec, u, rng).expect("advertise");
        keys.insert(u, pk);
        states.push(st);
    }
    let mut aggregator = Aggregator::new(spec.clone(), keys.clone(), input()).expect("keys");
    let mut mailbox: Vec<BTreeMap<PartyIndex, Vec<u8>>> = vec![BTreeMap::new(); PARTIES];
    let mut shared = Vec::new();
    for st in states {
        let u = st.me();
        let peers: BTreeMap<PartyIndex, PublicKeys> =
            spec.graph().neighbours(u).iter().map(|&v| (v, keys[&v])).collect();
        let (st, cts) = st.share_keys(&peers, rng).expect("share");
        for (v, ct) in cts {
            mailbox[v as usize].insert(u, ct);
        }
        shared.push(st);
    }
    let mut masked = Vec::new();
    for st in shared {
        let u = st.me();
        if drop_before_mask.contains(&u) {
            continue;
        }
        let x = fp.encode_vec(&xs[u as usize]);
        let (st, y) = st.mask_input(&mailbox[u as usize], &x, &input()).expect("mask");
        aggregator.add_masked(u, &y).expect("add");
        masked.push(st);
    }
    let plan = aggregator.plan().expect("plan");
    let mut responses: BTreeMap<PartyIndex, UnmaskShares> = BTreeMap::new();
    for st in masked {
        let u = st.me();
        let (alive, gone) = &plan.requests[&u];
        responses.insert(u, st.unmask(alive, gone).expect("unmask"));
    }
    let sum = aggregator.unmask(&plan, &responses).expect("sum");
    fp.decode_vec(&sum)
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let xs = updates(&mut rng);
    let s = spec(None);
    let sparse = spec(Some(4));
    let fp = input().fixed;

    // Sanity: the secure sum equals the plain one within the fixed-point bound.
    let secure = round(&s, &xs, &[], &mut rng);
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
    g.bench_function("10x10k_no_dropout", |b| b.iter(|| round(&s, black_box(&xs), &[], &mut rng)));
    g.bench_function("10x10k_one_dropout_after_sharing", |b| {
        b.iter(|| round(&s, black_box(&xs), &[3], &mut rng))
    });
    g.bench_function("10x10k_secagg_plus_degree_4", |b| {
        b.iter(|| round(&sparse, black_box(&xs), &[], &mut rng))
    });
    g.finish();

    // Server only: precompute the parties' messages once.
    let mut keys = BTreeMap::new();
    let mut states = Vec::new();
    for u in 0..PARTIES as PartyIndex {
        let (st, pk) = advertise(&s, u, &mut rng).expect("advertise");
        keys.insert(u, pk);
        states.push(st);
    }
    let mut mailbox: Vec<BTreeMap<PartyIndex, Vec<u8>>> = vec![BTreeMap::new(); PARTIES];
    let mut shared = Vec::new();
    for st in states {
        let u = st.me();
        let peers = s.graph().neighbours(u).iter().map(|&v| (v, keys[&v])).collect();
        let (st, cts) = st.share_keys(&peers, &mut rng).expect("share");
        for (v, ct) in cts {
            mailbox[v as usize].insert(u, ct);
        }
        shared.push(st);
    }
    let mut uploads = BTreeMap::new();
    let mut masked = Vec::new();
    for st in shared {
        let u = st.me();
        let (st, y) = st
            .mask_input(&mailbox[u as usize], &fp.encode_vec(&xs[u as usize]), &input())
            .expect("mask");
        uploads.insert(u, y);
        masked.push(st);
    }
    let mut probe = Aggregator::new(s.clone(), keys.clone(), input()).expect("keys");
    for (&u, y) in &uploads {
        probe.add_masked(u, y).expect("add");
    }
    let plan = probe.plan().expect("plan");
    let responses: BTreeMap<PartyIndex, UnmaskShares> = masked
        .into_iter()
        .map(|st| {
            let u = st.me();
            let (alive, gone) = &plan.requests[&u];
            (u, st.unmask(alive, gone).expect("unmask"))
        })
        .collect();
    let mut g = c.benchmark_group("secagg_server");
    g.bench_function("sum_and_unmask_10x10k", |b| {
        b.iter(|| {
            let mut agg = Aggregator::new(s.clone(), keys.clone(), input()).expect("keys");
            for (&u, y) in &uploads {
                agg.add_masked(u, y).expect("add");
            }
            let plan = agg.plan().expect("plan");
            fp.decode_vec(&agg.unmask(&plan, &responses).expect("sum"))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("secagg_parts");
    let seed = MaskSeed::random(&mut rng);
    let mut buf = vec![0u64; LEN];
    g.bench_function("chacha20_mask_10k_28bit", |b| {
        b.iter(|| {
            apply_mask(&mut buf, &seed, MaskKind::Pairwise, fp.ring_bits, MaskOp::Add)
                .expect("mask");
            black_box(buf[0])
        })
    });
    g.bench_function("x25519_keygen_two_pairs", |b| {
        b.iter(|| RoundKeys::generate(&mut rng).public())
    });
    let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let peer =
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
    g.bench_function("x25519_agreement", |b| b.iter(|| black_box(secret.diffie_hellman(&peer))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
