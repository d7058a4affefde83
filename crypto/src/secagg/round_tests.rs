//! Whole rounds at the index level: every party and the server in one test, with dropouts.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, RngExt, SeedableRng};
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

fn spec_at(
    round: u64,
    n: usize,
    len: usize,
    degree: Option<usize>,
    threshold: Option<usize>,
) -> Spec {
    let roster: Vec<String> = (0..n).map(|i| format!("bank{i:02}")).collect();
    let params = SecAggParams { threshold, degree };
    Spec {
        round: RoundSpec::new("job-1", round, 0, &roster, params).unwrap(),
        input: InputSpec { fixed: FixedPoint::for_sum(n, 8.0, 20).unwrap(), vector_len: len },
    }
}

fn spec(n: usize, len: usize, degree: Option<usize>, threshold: Option<usize>) -> Spec {
    spec_at(3, n, len, degree, threshold)
}

/// A root per unordered pair, as each party's map neighbour → root.
fn roots(n: usize, rng: &mut ChaCha20Rng) -> Vec<BTreeMap<PartyIndex, PairRoot>> {
    let mut out = vec![BTreeMap::new(); n];
    for u in 0..n {
        for v in u + 1..n {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            out[u].insert(v as PartyIndex, PairRoot::from_bytes(b));
            out[v].insert(u as PartyIndex, PairRoot::from_bytes(b));
        }
    }
    out
}

fn neighbour_roots(
    s: &Spec,
    all: &[BTreeMap<PartyIndex, PairRoot>],
    u: PartyIndex,
) -> BTreeMap<PartyIndex, PairRoot> {
    s.graph().neighbours(u).iter().map(|&v| (v, all[u as usize][&v].clone())).collect()
}

fn inputs(spec: &Spec, rng: &mut ChaCha20Rng) -> Vec<Vec<u64>> {
    (0..spec.n_parties())
        .map(|_| {
            let xs: Vec<f64> =
                (0..spec.input.vector_len).map(|_| rng.random_range(-10.0..10.0)).collect();
            spec.input.fixed.encode_vec(&xs)
        })
        .collect()
}

fn ring_sum(spec: &Spec, vs: &[&Vec<u64>]) -> Vec<u64> {
    let fp = spec.input.fixed;
    let mut out = vec![0u64; spec.input.vector_len];
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
    /// Never uploads.
    before_mask: BTreeSet<PartyIndex>,
    /// Uploads, then vanishes before answering the unmask request.
    before_unmask: BTreeSet<PartyIndex>,
}

/// The unmasked sum and the masked uploads the server saw.
type Outcome = (Vec<u64>, BTreeMap<PartyIndex, Vec<u64>>);

/// Runs a round; returns the unmasked sum and the masked uploads the server saw.
fn run(
    spec: &Spec,
    xs: &[Vec<u64>],
    drops: &Dropouts,
    rng: &mut ChaCha20Rng,
) -> Result<Outcome, SecAggError> {
    let n = spec.n_parties();
    let all = roots(n, rng);
    let mut agg = Aggregator::new(spec.round.clone(), spec.input)?;
    let mut states = BTreeMap::new();
    let mut seen = BTreeMap::new();
    for u in 0..n as PartyIndex {
        if drops.before_mask.contains(&u) {
            continue;
        }
        let r = neighbour_roots(spec, &all, u);
        let (st, y, bundles) = mask_input(spec, u, &r, &xs[u as usize], &spec.input, rng)?;
        agg.add_masked(u, &y, bundles)?;
        seen.insert(u, y);
        states.insert(u, st);
    }
    let plan = agg.plan()?;
    let mut responses = BTreeMap::new();
    for (&u, (alive, gone)) in &plan.requests {
        if drops.before_unmask.contains(&u) {
            continue;
        }
        let st = states.remove(&u).expect("state of a survivor");
        let bundles = agg.bundles_for(&plan, u);
        responses.insert(u, st.unmask(&bundles, alive, gone)?);
    }
    Ok((agg.unmask(&plan, &responses)?, seen))
}

#[test]
fn masks_cancel_exactly_without_dropouts() {
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let s = spec(5, 1000, None, None);
    let xs = inputs(&s, &mut rng);
    let (sum, seen) = run(&s, &xs, &Dropouts::default(), &mut rng).unwrap();
    assert_eq!(sum, ring_sum(&s, &xs.iter().collect::<Vec<_>>()));
    for (u, y) in &seen {
        assert_ne!(y, &xs[*u as usize], "party {u} uploaded its input unmasked");
    }
}

#[test]
fn dropouts_before_the_upload_are_recovered_from_their_neighbours_seeds() {
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let s = spec(10, 500, None, None);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts { before_mask: BTreeSet::from([2, 7]), ..Default::default() };
    let (sum, _) = run(&s, &xs, &drops, &mut rng).unwrap();
    let who: Vec<&Vec<u64>> =
        xs.iter().enumerate().filter(|(i, _)| ![2, 7].contains(i)).map(|(_, x)| x).collect();
    assert_eq!(sum, ring_sum(&s, &who));
}

#[test]
fn dropouts_after_the_upload_stay_in_the_sum() {
    let mut rng = ChaCha20Rng::seed_from_u64(102);
    let s = spec(10, 300, None, None);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts { before_unmask: BTreeSet::from([0, 4, 9]), ..Default::default() };
    let (sum, _) = run(&s, &xs, &drops, &mut rng).unwrap();
    assert_eq!(sum, ring_sum(&s, &xs.iter().collect::<Vec<_>>()));
}

#[test]
fn sparse_graph_round_with_dropouts() {
    let mut rng = ChaCha20Rng::seed_from_u64(103);
    let s = spec(30, 200, Some(8), None);
    assert_eq!(s.graph().degree(), 8);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts { before_mask: BTreeSet::from([3]), before_unmask: BTreeSet::from([11]) };
    // Party 3's surviving neighbours must answer; 11 may vanish only if it is not one of them.
    let drops = if s.graph().are_neighbours(3, 11) {
        Dropouts { before_mask: BTreeSet::from([3]), before_unmask: BTreeSet::new() }
    } else {
        drops
    };
    let (sum, _) = run(&s, &xs, &drops, &mut rng).unwrap();
    let who: Vec<&Vec<u64>> =
        xs.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, x)| x).collect();
    assert_eq!(sum, ring_sum(&s, &who));
}

#[test]
fn too_many_dropouts_fail_with_a_typed_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(104);
    let s = spec(5, 10, None, Some(4));
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts { before_mask: BTreeSet::from([1, 2]), ..Default::default() };
    let err = run(&s, &xs, &drops, &mut rng).unwrap_err();
    assert!(
        matches!(err, SecAggError::ThresholdNotMet { kind: SecretKind::SelfMask, need: 4, .. }),
        "{err}"
    );
    let drops = Dropouts { before_unmask: BTreeSet::from([0, 1]), ..Default::default() };
    let err = run(&s, &xs, &drops, &mut rng).unwrap_err();
    assert!(matches!(err, SecAggError::ThresholdNotMet { got: 3, need: 4, .. }), "{err}");
}

/// A party that dropped before the upload and a surviving neighbour of it that vanishes
/// before the unmask: that neighbour's seed with the dropped party is needed, so the round
/// fails (and is retried one level up) rather than returning a wrong sum.
#[test]
fn a_missing_pairwise_seed_fails_the_round() {
    let mut rng = ChaCha20Rng::seed_from_u64(110);
    let s = spec(5, 10, None, None);
    let xs = inputs(&s, &mut rng);
    let drops = Dropouts { before_mask: BTreeSet::from([1]), before_unmask: BTreeSet::from([2]) };
    let err = run(&s, &xs, &drops, &mut rng).unwrap_err();
    assert!(matches!(err, SecAggError::Missing { party: 2, .. }), "{err}");
}

/// Party 0's upload and the unmask states of 1 and 2.
fn uploaded(rng: &mut ChaCha20Rng) -> (Spec, Aggregator, BTreeMap<PartyIndex, MaskedState>) {
    let s = spec(3, 16, None, None);
    let all = roots(3, rng);
    let mut agg = Aggregator::new(s.round.clone(), s.input).unwrap();
    let mut states = BTreeMap::new();
    for u in 0..3 {
        let (st, y, b) =
            mask_input(&s, u, &neighbour_roots(&s, &all, u), &[0; 16], &s.input, rng).unwrap();
        agg.add_masked(u, &y, b).unwrap();
        states.insert(u, st);
    }
    (s, agg, states)
}

#[test]
fn tampered_or_misaddressed_share_bundles_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(105);
    let (_, agg, mut states) = uploaded(&mut rng);
    let plan = agg.plan().unwrap();
    let all: BTreeSet<PartyIndex> = BTreeSet::from([0, 1, 2]);
    let none = BTreeSet::new();
    // Flip one bit of the bundle from 1 to 0.
    let mut b0 = agg.bundles_for(&plan, 0);
    b0.get_mut(&1).unwrap()[3] ^= 0x20;
    let err = states.remove(&0).unwrap().unmask(&b0, &all, &none).unwrap_err();
    assert_eq!(err, SecAggError::Decryption { from: 1, to: 0 });
    // Party 2's bundles handed to party 1 (re-addressed).
    let b2 = agg.bundles_for(&plan, 2);
    let mut wrong = BTreeMap::new();
    wrong.insert(0, b2[&0].clone());
    wrong.insert(2, b2[&0].clone());
    let err = states.remove(&1).unwrap().unmask(&wrong, &all, &none).unwrap_err();
    assert!(matches!(err, SecAggError::Decryption { .. }), "{err}");
    // A missing bundle.
    let mut short = agg.bundles_for(&plan, 2);
    short.remove(&0);
    let err = states.remove(&2).unwrap().unmask(&short, &all, &none).unwrap_err();
    assert!(matches!(err, SecAggError::Missing { party: 0, .. }), "{err}");
}

#[test]
fn bundles_from_another_round_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(106);
    let (a, agg_a, _) = uploaded(&mut rng);
    let mut rng2 = ChaCha20Rng::seed_from_u64(106);
    let b = spec_at(4, 3, 16, None, None);
    let all = roots(3, &mut rng2);
    let (st, _, _) =
        mask_input(&b, 0, &neighbour_roots(&b, &all, 0), &[0; 16], &b.input, &mut rng2).unwrap();
    let plan = agg_a.plan().unwrap();
    assert_ne!(a.context(), b.context());
    // Same pair roots, another round: round-a bundles do not open in round b.
    let err = st
        .unmask(&agg_a.bundles_for(&plan, 0), &BTreeSet::from([0, 1, 2]), &BTreeSet::new())
        .unwrap_err();
    assert!(matches!(err, SecAggError::Decryption { .. }), "{err}");
}

#[test]
fn unmask_never_reveals_both_secrets_of_a_party() {
    let mut rng = ChaCha20Rng::seed_from_u64(107);
    let (_, agg, mut states) = uploaded(&mut rng);
    let plan = agg.plan().unwrap();
    let err = states
        .remove(&0)
        .unwrap()
        .unmask(&agg.bundles_for(&plan, 0), &BTreeSet::from([0, 1, 2]), &BTreeSet::from([1]))
        .unwrap_err();
    assert_eq!(err, SecAggError::BothSharesRequested { party: 1 });
    // A request that leaves the party itself out of the survivors is refused.
    let err = states
        .remove(&1)
        .unwrap()
        .unmask(&BTreeMap::new(), &BTreeSet::from([0, 2]), &BTreeSet::from([1]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::BothSharesRequested { .. } | SecAggError::UnexpectedParty { .. }
        ),
        "{err}"
    );
}

#[test]
fn the_server_refuses_answers_it_did_not_ask_for_and_misaddressed_uploads() {
    let mut rng = ChaCha20Rng::seed_from_u64(108);
    let (s, agg, mut states) = uploaded(&mut rng);
    let plan = agg.plan().unwrap();
    let (alive, gone) = plan.requests[&0].clone();
    let mut resp =
        states.remove(&0).unwrap().unmask(&agg.bundles_for(&plan, 0), &alive, &gone).unwrap();
    assert!(agg.check_response(&plan, 0, &resp).is_ok());
    // A pairwise seed with a survivor was not asked for.
    resp.pair_seeds.insert(1, MaskSeed::from_bytes(&[1; 32]));
    assert!(matches!(
        agg.check_response(&plan, 0, &resp),
        Err(SecAggError::UnexpectedParty { party: 1, .. })
    ));
    // An upload whose shares are not addressed to exactly its neighbours.
    let mut agg2 = Aggregator::new(s.round.clone(), s.input).unwrap();
    let all = roots(3, &mut rng);
    let (_, y, mut b) =
        mask_input(&s, 0, &neighbour_roots(&s, &all, 0), &[0; 16], &s.input, &mut rng).unwrap();
    b.remove(&1);
    assert!(matches!(agg2.add_masked(0, &y, b), Err(SecAggError::UnexpectedParty { .. })));
}

#[test]
fn roots_are_checked_against_the_neighbours() {
    let mut rng = ChaCha20Rng::seed_from_u64(109);
    let s = spec(4, 8, None, None);
    let all = roots(4, &mut rng);
    let mut r = neighbour_roots(&s, &all, 0);
    r.remove(&3);
    let err = mask_input(&s, 0, &r, &[0; 8], &s.input, &mut rng).unwrap_err();
    assert!(matches!(err, SecAggError::Missing { party: 3, .. }), "{err}");
    let mut r = neighbour_roots(&s, &all, 0);
    r.insert(0, PairRoot::from_bytes([0; 32]));
    let err = mask_input(&s, 0, &r, &[0; 8], &s.input, &mut rng).unwrap_err();
    assert!(matches!(err, SecAggError::UnexpectedParty { party: 0, .. }), "{err}");
}

#[test]
fn party_states_print_redacted() {
    let mut rng = ChaCha20Rng::seed_from_u64(111);
    let (_, _, states) = uploaded(&mut rng);
    let text = format!("{:?}", states[&0]);
    assert!(text.contains("<redacted>"), "{text}");
}
