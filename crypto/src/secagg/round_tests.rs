//! Whole rounds at the index level: every party and the server in one test, with dropouts.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::FixedPoint;

/// A round's keys and its vector, as the tests use them together.
#[derive(Clone)]
struct Spec {
    round: RoundSpec,
    input: InputSpec,
}

impl std::ops::Deref for Spec {
    type Target = RoundSpec;
    fn deref(&self) -> &RoundSpec {
        &self.round
    }
}

impl Spec {
    fn fixed(&self) -> &FixedPoint {
        &self.input.fixed
    }
    fn vector_len(&self) -> usize {
        self.input.vector_len
    }
}

fn spec(n: usize, len: usize, degree: Option<usize>, threshold: Option<usize>) -> Spec {
    let roster: Vec<String> = (0..n).map(|i| format!("bank{i:02}")).collect();
    let params = SecAggParams { threshold, degree };
    Spec {
        round: RoundSpec::new("job-1", 3, 0, &roster, params).unwrap(),
        input: InputSpec { fixed: FixedPoint::for_sum(n, 8.0, 20).unwrap(), vector_len: len },
    }
}

fn inputs(spec: &Spec, rng: &mut ChaCha20Rng) -> Vec<Vec<u64>> {
    use rand::RngExt;
    (0..spec.n_parties())
        .map(|_| {
            let xs: Vec<f64> =
                (0..spec.vector_len()).map(|_| rng.random_range(-10.0..10.0)).collect();
            spec.fixed().encode_vec(&xs)
        })
        .collect()
}

fn ring_sum(spec: &Spec, vs: &[&Vec<u64>]) -> Vec<u64> {
    let fp = spec.fixed();
    let mut out = vec![0u64; spec.vector_len()];
    for v in vs {
        for (o, &x) in out.iter_mut().zip(v.iter()) {
            *o = fp.add(*o, x);
        }
    }
    out
}

/// Who stops answering, and from which step on.
#[derive(Default)]
struct Dropouts {
    /// Shared keys, then vanished before uploading a masked vector.
    before_mask: BTreeSet<PartyIndex>,
    /// Uploaded a masked vector, then vanished before answering the unmask request.
    before_unmask: BTreeSet<PartyIndex>,
}

struct Transcript {
    masked: BTreeMap<PartyIndex, Vec<u64>>,
}

fn run(
    spec: &Spec,
    xs: &[Vec<u64>],
    drops: &Dropouts,
    rng: &mut ChaCha20Rng,
) -> Result<(Vec<u64>, Transcript), SecAggError> {
    let n = spec.n_parties() as PartyIndex;
    let mut states = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for u in 0..n {
        let (st, pk) = advertise(spec, u, rng)?;
        states.insert(u, st);
        keys.insert(u, pk);
    }
    let mut aggregator = Aggregator::new(spec.round.clone(), keys.clone(), spec.input)?;
    let mut shared = BTreeMap::new();
    let mut mailbox: BTreeMap<PartyIndex, BTreeMap<PartyIndex, Vec<u8>>> = BTreeMap::new();
    for (u, st) in states {
        let peers = spec.graph().neighbours(u).iter().map(|&v| (v, keys[&v])).collect();
        let (st, cts) = st.share_keys(&peers, rng)?;
        for (v, ct) in cts {
            mailbox.entry(v).or_default().insert(u, ct);
        }
        shared.insert(u, st);
    }
    let mut masked_states = BTreeMap::new();
    let mut transcript = Transcript { masked: BTreeMap::new() };
    for (u, st) in shared {
        if drops.before_mask.contains(&u) {
            continue;
        }
        let (st, y) = st.mask_input(&mailbox[&u], &xs[u as usize], &spec.input)?;
        aggregator.add_masked(u, &y)?;
        transcript.masked.insert(u, y);
        masked_states.insert(u, st);
    }
    let plan = aggregator.plan()?;
    let mut responses = BTreeMap::new();
    for (u, st) in masked_states {
        if drops.before_unmask.contains(&u) {
            continue;
        }
        let (alive, gone) = &plan.requests[&u];
        let r = st.unmask(alive, gone)?;
        aggregator.check_response(&plan, u, &r)?;
        responses.insert(u, r);
    }
    Ok((aggregator.unmask(&plan, &responses)?, transcript))
}

#[test]
fn masks_cancel_exactly_without_dropouts() {
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let s = spec(5, 1000, None, None);
    let xs = inputs(&s, &mut rng);
    let (sum, transcript) = run(&s, &xs, &Dropouts::default(), &mut rng).unwrap();
    assert_eq!(sum, ring_sum(&s, &xs.iter().collect::<Vec<_>>()));
    // The raw sum of masked vectors is not the answer: the self masks remain in it.
    let raw = ring_sum(&s, &transcript.masked.values().collect::<Vec<_>>());
    assert_ne!(raw, sum);
    for (u, y) in &transcript.masked {
        assert_ne!(y, &xs[*u as usize]);
    }
}

#[test]
fn pairwise_masks_alone_cancel() {
    // Sum of pairwise masks over the complete graph is zero: check via the seeds directly.
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let s = spec(4, 64, None, None);
    let ring_bits = s.fixed().ring_bits;
    let pairs: Vec<keys::RoundKeys> = (0..4).map(|_| keys::RoundKeys::generate(&mut rng)).collect();
    let mut total = vec![0u64; 64];
    for u in 0..4u16 {
        for v in 0..4u16 {
            if u == v {
                continue;
            }
            let shared =
                keys::agree(pairs[u as usize].s(), &pairs[v as usize].public().s, v).unwrap();
            let seed = keys::pairwise_mask_seed(&shared, s.context());
            let op = if u < v { masking::MaskOp::Add } else { masking::MaskOp::Sub };
            masking::apply_mask(&mut total, &seed, masking::MaskKind::Pairwise, ring_bits, op)
                .unwrap();
        }
    }
    assert!(total.iter().all(|&x| x == 0));
}

#[test]
fn dropouts_after_sharing_are_recovered() {
    let mut rng = ChaCha20Rng::seed_from_u64(102);
    let s = spec(10, 500, None, None);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts {
        before_mask: [2, 7].into_iter().collect(),
        before_unmask: [4].into_iter().collect(),
    };
    let (sum, _) = run(&s, &xs, &drops, &mut rng).unwrap();
    // Party 4 uploaded, so it is in the sum; 2 and 7 are not.
    let expect: Vec<&Vec<u64>> =
        xs.iter().enumerate().filter(|(i, _)| ![2, 7].contains(i)).map(|(_, x)| x).collect();
    assert_eq!(sum, ring_sum(&s, &expect));
}

#[test]
fn sparse_graph_round_with_dropouts() {
    let mut rng = ChaCha20Rng::seed_from_u64(103);
    let s = spec(30, 200, Some(8), None);
    assert_eq!(s.graph().degree(), 8);
    assert_eq!(s.threshold(), 5);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts {
        before_mask: [0, 13].into_iter().collect(),
        before_unmask: [21].into_iter().collect(),
    };
    let (sum, _) = run(&s, &xs, &drops, &mut rng).unwrap();
    let expect: Vec<&Vec<u64>> =
        xs.iter().enumerate().filter(|(i, _)| ![0, 13].contains(i)).map(|(_, x)| x).collect();
    assert_eq!(sum, ring_sum(&s, &expect));
}

#[test]
fn too_many_dropouts_fail_with_a_typed_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(104);
    let s = spec(5, 10, None, Some(3));
    let xs = inputs(&s, &mut rng);
    // Three of five never upload: b of the two survivors has only 2 holders left.
    let drops = Dropouts { before_mask: [0, 1, 2].into_iter().collect(), ..Default::default() };
    match run(&s, &xs, &drops, &mut rng) {
        Err(SecAggError::ThresholdNotMet { got: 2, need: 3, .. }) => {}
        other => panic!("expected ThresholdNotMet, got {:?}", other.map(|r| r.0)),
    }
    // Three upload, but only two answer the unmask request.
    let drops = Dropouts {
        before_mask: [0, 1].into_iter().collect(),
        before_unmask: [2].into_iter().collect(),
    };
    match run(&s, &xs, &drops, &mut rng) {
        Err(SecAggError::ThresholdNotMet { got: 2, need: 3, .. }) => {}
        other => panic!("expected ThresholdNotMet, got {:?}", other.map(|r| r.0)),
    }
}

/// Runs the first two steps for a 3-party round and returns states, keys and ciphertexts.
#[allow(clippy::type_complexity)]
fn shared_round(
    rng: &mut ChaCha20Rng,
) -> (Spec, BTreeMap<PartyIndex, SharedState>, BTreeMap<PartyIndex, BTreeMap<PartyIndex, Vec<u8>>>)
{
    let s = spec(3, 16, None, None);
    let mut keys = BTreeMap::new();
    let mut states = Vec::new();
    for u in 0..3 {
        let (st, pk) = advertise(&s, u, rng).unwrap();
        keys.insert(u, pk);
        states.push(st);
    }
    let mut mailbox: BTreeMap<PartyIndex, BTreeMap<PartyIndex, Vec<u8>>> = BTreeMap::new();
    let mut shared = BTreeMap::new();
    for st in states {
        let u = st.me();
        let peers = s.graph().neighbours(u).iter().map(|&v| (v, keys[&v])).collect();
        let (st, cts) = st.share_keys(&peers, rng).unwrap();
        for (v, ct) in cts {
            mailbox.entry(v).or_default().insert(u, ct);
        }
        shared.insert(u, st);
    }
    (s, shared, mailbox)
}

#[test]
fn tampered_or_misaddressed_ciphertexts_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(105);
    let (s, mut shared, mut mailbox) = shared_round(&mut rng);
    let x = vec![0u64; s.vector_len()];
    // Flip one bit of the bundle from 1 to 0.
    let mut box0 = mailbox.remove(&0).unwrap();
    box0.get_mut(&1).unwrap()[3] ^= 0x20;
    let err = shared.remove(&0).unwrap().mask_input(&box0, &x, &s.input).unwrap_err();
    assert_eq!(err, SecAggError::Decryption { from: 1, to: 0 });
    // Party 1 is handed the ciphertext 2 sent to 0 in place of its own.
    let mut box1 = mailbox.remove(&1).unwrap();
    box1.insert(2, box0[&2].clone());
    let err = shared.remove(&1).unwrap().mask_input(&box1, &x, &s.input).unwrap_err();
    assert_eq!(err, SecAggError::Decryption { from: 2, to: 1 });
    // Missing and unexpected senders.
    let mut box2 = mailbox.remove(&2).unwrap();
    box2.remove(&0);
    let err = shared.remove(&2).unwrap().mask_input(&box2, &x, &s.input).unwrap_err();
    assert_eq!(err, SecAggError::Missing { party: 0, what: "encrypted shares" });
}

#[test]
fn ciphertexts_from_another_round_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(106);
    let (_, _, mailbox_a) = shared_round(&mut rng);
    let (s, mut shared_b, _) = shared_round(&mut rng);
    let x = vec![0u64; s.vector_len()];
    let err = shared_b.remove(&0).unwrap().mask_input(&mailbox_a[&0], &x, &s.input).unwrap_err();
    assert!(matches!(err, SecAggError::Decryption { to: 0, .. }), "{err:?}");
}

#[test]
fn unmask_never_reveals_both_shares_of_a_party() {
    let mut rng = ChaCha20Rng::seed_from_u64(107);
    let (s, mut shared, mailbox) = shared_round(&mut rng);
    let x = vec![1u64; s.vector_len()];
    let mut masked = BTreeMap::new();
    for u in 0..3 {
        let (st, _) = shared.remove(&u).unwrap().mask_input(&mailbox[&u], &x, &s.input).unwrap();
        masked.insert(u, st);
    }
    let set = |v: &[PartyIndex]| v.iter().copied().collect::<BTreeSet<_>>();
    // Party 1 both survived and dropped.
    let err = masked.remove(&0).unwrap().unmask(&set(&[0, 1, 2]), &set(&[1])).unwrap_err();
    assert_eq!(err, SecAggError::BothSharesRequested { party: 1 });
    // The asked party itself listed as dropped.
    let err = masked.remove(&1).unwrap().unmask(&set(&[0, 2]), &set(&[1])).unwrap_err();
    assert!(matches!(err, SecAggError::UnexpectedParty { party: 1, .. }), "{err:?}");
    // A proper request: one kind per party.
    let r = masked.remove(&2).unwrap().unmask(&set(&[0, 2]), &set(&[1])).unwrap();
    assert_eq!(r.self_mask.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(r.mask_key.keys().copied().collect::<Vec<_>>(), vec![1]);
    // (A second request to party 2 cannot even be expressed: `unmask` consumed its state.)
}

#[test]
fn server_refuses_shares_it_did_not_ask_for() {
    let mut rng = ChaCha20Rng::seed_from_u64(108);
    let s = spec(4, 8, None, None);
    let mut keys = BTreeMap::new();
    for u in 0..4 {
        keys.insert(u, advertise(&s, u, &mut rng).unwrap().1);
    }
    let mut agg = Aggregator::new(s.round.clone(), keys, s.input).unwrap();
    for u in 0..3 {
        agg.add_masked(u, &[0; 8]).unwrap();
    }
    let plan = agg.plan().unwrap();
    assert_eq!(plan.dropped, [3].into_iter().collect());
    // A b share of the dropped party 3 must not be accepted.
    let mut bad = UnmaskShares::default();
    bad.self_mask.insert(3, Share::from_parts(1, [0; 32]));
    let err = agg.check_response(&plan, 0, &bad).unwrap_err();
    assert!(matches!(err, SecAggError::UnexpectedParty { party: 3, .. }), "{err:?}");
    // Nor an s share of a survivor.
    let mut bad = UnmaskShares::default();
    bad.mask_key.insert(1, Share::from_parts(1, [0; 32]));
    assert!(agg.check_response(&plan, 0, &bad).is_err());
    // Duplicates, wrong lengths and out-of-ring values are refused on upload.
    assert_eq!(
        agg.add_masked(0, &[0; 8]).unwrap_err(),
        SecAggError::DuplicateContribution { party: 0 }
    );
    assert!(matches!(agg.add_masked(3, &[0; 7]), Err(SecAggError::Length { .. })));
    assert!(matches!(agg.add_masked(3, &[u64::MAX; 8]), Err(SecAggError::OutOfRing { .. })));
}

#[test]
fn key_sets_are_checked() {
    let mut rng = ChaCha20Rng::seed_from_u64(109);
    let s = spec(3, 4, None, None);
    let (st0, pk0) = advertise(&s, 0, &mut rng).unwrap();
    let (_, pk1) = advertise(&s, 1, &mut rng).unwrap();
    // The server reflects party 0's own key back as party 2's.
    let peers: BTreeMap<PartyIndex, PublicKeys> = [(1, pk1), (2, pk0)].into_iter().collect();
    let err = st0.share_keys(&peers, &mut rng).unwrap_err();
    assert_eq!(err, SecAggError::DuplicateKey { first: 0, second: 2 });
    let (st0, _) = advertise(&s, 0, &mut rng).unwrap();
    let peers: BTreeMap<PartyIndex, PublicKeys> = [(1, pk1)].into_iter().collect();
    assert_eq!(
        st0.share_keys(&peers, &mut rng).unwrap_err(),
        SecAggError::Missing { party: 2, what: "public keys" }
    );
    assert!(matches!(advertise(&s, 3, &mut rng), Err(SecAggError::UnexpectedParty { .. })));
    let keys: BTreeMap<PartyIndex, PublicKeys> = [(0, pk0), (1, pk1)].into_iter().collect();
    assert!(matches!(
        Aggregator::new(s.round, keys, s.input),
        Err(SecAggError::Missing { party: 2, .. })
    ));
}

#[test]
fn party_states_print_redacted() {
    let mut rng = ChaCha20Rng::seed_from_u64(110);
    let (_, shared, _) = shared_round(&mut rng);
    for st in shared.values() {
        let printed = format!("{st:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains(&format!("{:?}", st.self_seed.as_bytes())));
        assert!(!printed.contains(&format!("{:?}", st.own_shares.0.y())));
    }
}
