//! Whole PSI flows on the primitives, in one process: two and three parties, unbalanced
//! sets, streamed chunks, domain separation, server-aided tokens.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;

/// Ids of a party: `common` shared ids plus `own` ids only it has (tagged by `party`).
fn party_ids(common: &[String], own: usize, party: &str) -> Vec<String> {
    let mut ids: Vec<String> = common.to_vec();
    ids.extend((0..own).map(|i| format!("91{party}{i:014}")));
    ids
}

fn common_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("91110000{i:09}X")).collect()
}

/// Blinds in chunks, as a streaming caller would.
fn blind_streamed(ids: &[String], dst: &Dst, key: &PsiKey, chunk: usize) -> Vec<BlindedPoint> {
    ids.chunks(chunk).flat_map(|c| blind_ids(c, dst, key)).collect()
}

fn reblind_streamed(points: &[BlindedPoint], key: &PsiKey, chunk: usize) -> Vec<BlindedPoint> {
    points
        .chunks(chunk)
        .enumerate()
        .flat_map(|(i, c)| reblind(c, key).map_err(|e| e.offset(i * chunk)).expect("honest points"))
        .collect()
}

/// The ids at `rows`, in that order.
fn pick(ids: &[String], rows: &[usize]) -> Vec<String> {
    rows.iter().map(|&r| ids[r].clone()).collect()
}

#[test]
fn two_parties_commute_and_agree_on_order() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let common = common_ids(700);
    let a = party_ids(&common, 1_300, "A");
    let b = party_ids(&common, 90, "B");
    let dst = Dst::for_job("job-two");
    let (ka, kb) = (PsiKey::random(&mut rng), PsiKey::random(&mut rng));

    // Each party sends its rows in a random order.
    let (perm_a, perm_b) =
        (random_permutation(a.len(), &mut rng), random_permutation(b.len(), &mut rng));
    let sent_a = blind_streamed(&pick(&a, &perm_a), &dst, &ka, 500);
    let sent_b = blind_streamed(&pick(&b, &perm_b), &dst, &kb, 333);
    // Reblinded by the peer, back in the sender's order.
    let full_a = reblind_streamed(&sent_a, &kb, 500);
    let full_b = reblind_streamed(&sent_b, &ka, 400);

    // Commutativity: k_b·(k_a·H(x)) = k_a·(k_b·H(x)) for every common id.
    let set_a: BTreeSet<_> = full_a.iter().collect();
    let shared = full_b.iter().filter(|v| set_a.contains(v)).count();
    assert_eq!(shared, common.len());

    // Each party's rows of the intersection, in the agreed order.
    let rows_a: Vec<usize> =
        align_rows(&full_a, &[&full_b]).into_iter().map(|p| perm_a[p]).collect();
    let rows_b: Vec<usize> =
        align_rows(&full_b, &[&full_a]).into_iter().map(|p| perm_b[p]).collect();
    assert_eq!(rows_a.len(), common.len());
    assert_eq!(pick(&a, &rows_a), pick(&b, &rows_b));
    let got: BTreeSet<String> = pick(&a, &rows_a).into_iter().collect();
    assert_eq!(got, common.iter().cloned().collect());

    // The agreed order depends on the ids and keys only, not on the row order.
    let again_a = blind_ids(&a, &dst, &ka);
    let again_full = reblind(&again_a, &kb).expect("valid");
    assert_eq!(pick(&a, &align_rows(&again_full, &[&full_b])), pick(&a, &rows_a));
}

#[test]
fn three_parties_with_owner_finishing_learn_only_the_common_ids() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let common = common_ids(150);
    // Pairwise overlaps beyond the three-way intersection must not show.
    let ab_only: Vec<String> = (0..40).map(|i| format!("91AB{i:014}")).collect();
    let mut a = party_ids(&common, 2_000, "A");
    let mut b = party_ids(&common, 20, "B");
    a.extend(ab_only.iter().cloned());
    b.extend(ab_only.iter().cloned());
    let c = party_ids(&common, 300, "C");
    let sets = [a, b, c];
    let dst = Dst::for_job("job-three");
    let keys: Vec<PsiKey> = (0..3).map(|_| PsiKey::random(&mut rng)).collect();

    let mut finished = Vec::new();
    let mut perms = Vec::new();
    for (owner, ids) in sets.iter().enumerate() {
        let ephemeral = PsiKey::random(&mut rng);
        let perm = random_permutation(ids.len(), &mut rng);
        let mut travelling = blind_ids(&pick(ids, &perm), &dst, &ephemeral);
        for hop in ring_route(3, owner) {
            travelling = reblind(&travelling, &keys[hop]).expect("valid");
        }
        finished.push(reblind(&travelling, &keys[owner].finishing_key(&ephemeral)).expect("valid"));
        perms.push(perm);
    }
    // Every owner's finished values are (k0·k1·k2)·H(x): commutative across the ring.
    let direct =
        reblind(&reblind(&blind_ids(&common, &dst, &keys[2]), &keys[0]).expect("ok"), &keys[1])
            .expect("ok");
    let finished_0: BTreeSet<_> = finished[0].iter().collect();
    assert!(direct.iter().all(|v| finished_0.contains(v)));

    // The coordinator intersects the sorted finished sets; owners map back.
    let sorted: Vec<Vec<BlindedPoint>> = finished
        .iter()
        .map(|f| {
            let mut s = f.clone();
            s.sort_unstable();
            s
        })
        .collect();
    let refs: Vec<&[BlindedPoint]> = sorted.iter().map(Vec::as_slice).collect();
    let common_points = intersect_many(&refs);
    assert_eq!(common_points.len(), common.len());
    let mut aligned = Vec::new();
    for owner in 0..3 {
        let rows: Vec<usize> = align_rows(&finished[owner], &[&common_points])
            .into_iter()
            .map(|p| perms[owner][p])
            .collect();
        aligned.push(pick(&sets[owner], &rows));
    }
    assert_eq!(aligned[0], aligned[1]);
    assert_eq!(aligned[1], aligned[2]);
    assert_eq!(
        aligned[0].iter().cloned().collect::<BTreeSet<_>>(),
        common.iter().cloned().collect()
    );
}

#[test]
fn unbalanced_sets_intersect_correctly() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let common = common_ids(37);
    let small = party_ids(&common, 13, "S");
    let large = party_ids(&common, 20_000, "L");
    let dst = Dst::for_job("job-unbalanced");
    let (ks, kl) = (PsiKey::random(&mut rng), PsiKey::random(&mut rng));
    let full_small = reblind(&blind_ids(&small, &dst, &ks), &kl).expect("valid");
    let mut full_large = reblind(&blind_ids(&large, &dst, &kl), &ks).expect("valid");
    let rows = align_rows(&full_small, &[&full_large]);
    assert_eq!(
        pick(&small, &rows).into_iter().collect::<BTreeSet<_>>(),
        common.iter().cloned().collect()
    );
    // The large party's view, sorted or not, gives the same ids in the same order.
    let rows_large = align_rows(&full_large, &[&full_small]);
    assert_eq!(pick(&large, &rows_large), pick(&small, &rows));
    full_large.sort_unstable();
    assert_eq!(intersect_many(&[&full_small[..], &full_large]).len(), common.len());
}

#[test]
fn different_tags_give_disjoint_sets() {
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    let ids = common_ids(500);
    let key = PsiKey::random(&mut rng);
    let one = blind_ids(&ids, &Dst::for_job("job-1"), &key);
    let two = blind_ids(&ids, &Dst::for_job("job-2"), &key);
    assert!(intersect_many(&[&one[..], &two]).is_empty());
    // Same tag, same key: identical.
    assert_eq!(one, blind_ids(&ids, &Dst::for_job("job-1"), &key));
}

#[test]
fn server_aided_tokens_find_the_intersection() {
    let common = common_ids(400);
    let bank = party_ids(&common, 100, "K");
    let platform = party_ids(&common, 30_000, "P");
    let tax = party_ids(&common, 900, "T");
    let key = TokenKey::derive(&[9u8; 32], b"job-tokens|bank,platform,tax");
    let t_bank = tokens(&bank, &key);
    // The platform streams its 30k ids in chunks and sends them sorted.
    let mut t_platform: Vec<Token> =
        platform.chunks(RECOMMENDED_CHUNK / 8).flat_map(|c| tokens(c, &key)).collect();
    t_platform.sort_unstable();
    let t_tax = tokens(&tax, &key);
    let common_tokens = intersect_tokens(&[&t_bank, &t_platform, &t_tax]);
    assert_eq!(common_tokens.len(), common.len());
    assert!(common_tokens.is_sorted());

    let rows_bank = align_rows(&t_bank, &[&common_tokens]);
    let rows_tax = align_rows(&t_tax, &[&common_tokens]);
    assert_eq!(pick(&bank, &rows_bank), pick(&tax, &rows_tax));
    assert_eq!(
        pick(&bank, &rows_bank).into_iter().collect::<BTreeSet<_>>(),
        common.iter().cloned().collect()
    );

    // A party with another key shares no token.
    let other = tokens(&bank, &TokenKey::derive(&[8u8; 32], b"job-tokens|bank,platform,tax"));
    assert!(intersect_tokens(&[&other, &t_bank]).is_empty());
}
