//! Tests of exponential ElGamal: round trips on every path, homomorphic sums, the batch
//! encoder against plain encoding, validation of peer keys and ciphertexts, bounds on
//! decryption, rerandomization, and key serialization.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::Identity;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[test]
fn round_trip_on_every_path() {
    let mut r = rng(1);
    let sk = SecretKey::generate(&mut r);
    let pk = sk.public_key().clone();
    let table = DlogTable::for_max(100_000);
    for m in [0u64, 1, 2, 15, 16, 17, 65_535, 65_536, 65_537, 99_999, 100_000] {
        for c in [pk.encrypt(m, &mut r), sk.encrypt(m, &mut r)] {
            assert_eq!(sk.decrypt(&c, 100_000, &table), Ok(m));
            let back = Ciphertext::from_bytes(&c.to_bytes()).unwrap();
            assert_eq!(back, c);
        }
    }
    // A value above the bound is refused, not wrapped.
    let c = sk.encrypt(70_000, &mut r);
    assert_eq!(
        sk.decrypt(&c, 69_999, &table),
        Err(ElGamalError::NotSmall { index: 0, max: 69_999 })
    );
    // A small table still finds large values (more giant steps).
    let small = DlogTable::for_max(3);
    assert_eq!(small.steps(), 16);
    assert_eq!(sk.decrypt(&c, 100_000, &small), Ok(70_000));
}

#[test]
fn sums_add_plaintexts_and_match_sum_by_bin() {
    let mut r = rng(2);
    let sk = SecretKey::generate(&mut r);
    let ms: Vec<u64> = (0..3000).map(|i| u64::from(i % 7 == 0 || i % 5 == 1)).collect();
    let cts = sk.encrypt_batch(&ms, &mut r);
    let bins: Vec<u8> = (0..3000).map(|i| ((i * 31) % 11) as u8).collect();
    let sums = sum_by_bin(&cts, &bins, 12).unwrap();
    let mut want = vec![0u64; 12];
    for (m, b) in ms.iter().zip(&bins) {
        want[*b as usize] += m;
    }
    let got = sk.decrypt_batch(&sums, &[3000; 12]).unwrap();
    assert_eq!(got, want);
    assert_eq!(sums[11], Ciphertext::zero(), "an empty bin is the empty sum");
    // subtraction and scalar multiplication
    let d = sums[1].mul_u64(3).sub(&sums[2]);
    let table = DlogTable::for_max(10_000);
    assert_eq!(sk.decrypt(&d, 10_000, &table), Ok(3 * want[1] - want[2]));
    assert!(matches!(sum_by_bin(&cts, &bins, 5), Err(ElGamalError::BinOutOfRange { .. })));
    assert!(matches!(sum_by_bin(&cts, &bins[1..], 12), Err(ElGamalError::Length { .. })));
}

#[test]
fn batch_encoder_equals_plain_encoding_and_decrypts() {
    let mut r = rng(3);
    let sk = SecretKey::generate(&mut r);
    // Several batches and a ragged last one.
    let ms: Vec<u64> = (0..600u64).map(|i| (i % 2) * (i % 5)).collect();
    let wire = sk.encrypt_to_bytes(&ms, &mut r);
    assert_eq!(wire.len(), ms.len() * CIPHERTEXT_BYTES);
    let cts = read_ciphertexts(&wire).unwrap();
    // Re-encoding the decoded points gives the same bytes (canonical encodings).
    assert_eq!(write_ciphertexts(&cts), wire);
    let got = sk.decrypt_batch(&cts, &vec![4; ms.len()]).unwrap();
    assert_eq!(got, ms);
    // Fresh randomness: equal plaintexts, different ciphertexts; no trivial c₁.
    let mut firsts: Vec<&[u8]> = wire.chunks(64).map(|c| &c[..32]).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), ms.len());
    assert!(wire.chunks(64).all(|c| c[..32] != [0u8; 32]));
    // Deterministic for a seeded RNG, whatever the thread count.
    let a = sk.encrypt_to_bytes(&ms, &mut rng(9));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = pool.install(|| sk.encrypt_to_bytes(&ms, &mut rng(9)));
    assert_eq!(a, b);
}

#[test]
fn peer_keys_and_ciphertexts_are_validated() {
    let mut r = rng(4);
    let sk = SecretKey::generate(&mut r);
    let pk_bytes = sk.public_key().to_bytes();
    assert_eq!(PublicKey::from_bytes(&pk_bytes).unwrap(), *sk.public_key());
    assert!(matches!(PublicKey::from_bytes(&[0u8; 32]), Err(ElGamalError::BadPublicKey(_))));
    assert!(matches!(PublicKey::from_bytes(&pk_bytes[..31]), Err(ElGamalError::BadPublicKey(_))));
    // A non-canonical encoding: the field element p (= 0 mod p) is not canonical.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    assert!(matches!(PublicKey::from_bytes(&p), Err(ElGamalError::BadPublicKey(_))));
    // Negative field elements (odd encodings) are not canonical in ristretto255.
    let mut odd = pk_bytes;
    odd[0] |= 1;
    if PublicKey::from_bytes(&odd).is_ok() {
        panic!("an odd encoding was accepted");
    }
    // Ciphertext batches: lengths, and the first bad index is named.
    let cts = sk.encrypt_batch(&[1, 0, 1, 1], &mut r);
    let mut wire = write_ciphertexts(&cts);
    assert!(matches!(read_ciphertexts(&wire[..100]), Err(ElGamalError::Length { .. })));
    wire[2 * 64 + 32..3 * 64].copy_from_slice(&p); // c₂ of ciphertext 2: not canonical
    wire[3 * 64] |= 1; // c₁ of ciphertext 3: odd
    let err = read_ciphertexts(&wire).unwrap_err();
    assert!(matches!(err, ElGamalError::BadCiphertext { index: 2, .. }), "{err:?}");
    // The identity is a valid component (an empty sum).
    let zero = Ciphertext::zero().to_bytes();
    assert_eq!(zero, [0u8; 64]);
    assert_eq!(Ciphertext::from_bytes(&zero).unwrap(), Ciphertext::zero());
}

#[test]
fn rerandomized_sums_decrypt_the_same_and_look_fresh() {
    let mut r = rng(5);
    let sk = SecretKey::generate(&mut r);
    let pk = PublicKey::from_bytes(&sk.public_key().to_bytes()).unwrap();
    let cts = sk.encrypt_batch(&[1, 1, 0, 1], &mut r);
    let sum = cts.iter().fold(Ciphertext::zero(), |a, c| a.add(c));
    let fresh = pk.rerandomize_batch(&[sum, Ciphertext::zero()], &mut r);
    assert_ne!(fresh[0], sum);
    assert_ne!(fresh[1], Ciphertext::zero());
    let got = sk.decrypt_batch(&fresh, &[4, 4]).unwrap();
    assert_eq!(got, vec![3, 0]);
    // The key owner knew every r; after rerandomization c₁ is no sum of them.
    let owner_c1 = sum.c1;
    assert_ne!(fresh[0].c1, owner_c1);
}

#[test]
fn secret_keys_round_trip_and_refuse_zero() {
    let mut r = rng(6);
    let sk = SecretKey::generate(&mut r);
    let bytes = sk.to_bytes();
    let back = SecretKey::from_bytes(&bytes).unwrap();
    assert_eq!(back.public_key(), sk.public_key());
    assert_eq!(SecretKey::from_bytes(&[0u8; 32]).unwrap_err(), ElGamalError::BadSecretKey);
    assert_eq!(SecretKey::from_bytes(&[0xff; 32]).unwrap_err(), ElGamalError::BadSecretKey);
    assert!(format!("{sk:?}").contains("redacted"));
}

#[test]
fn dlog_table_solves_across_giant_steps() {
    let t = DlogTable::with_steps(64);
    let mut r = rng(7);
    for _ in 0..50 {
        let m = r.next_u64() % 5000;
        let p = RISTRETTO_BASEPOINT_POINT * curve25519_dalek::scalar::Scalar::from(m);
        assert_eq!(t.solve(&p, 5000), Some(m));
        assert_eq!(t.solve(&p, m.saturating_sub(1)), if m == 0 { Some(0) } else { None });
    }
    assert_eq!(t.solve(&RistrettoPoint::identity(), 0), Some(0));
    let far = RISTRETTO_BASEPOINT_POINT * curve25519_dalek::scalar::Scalar::from(1u64 << 40);
    assert_eq!(t.solve(&far, 10_000), None);
}

#[test]
fn bench_runs_and_reports_positive_times() {
    let t = bench::measure(0.002);
    assert!(t.add_us > 0.0 && t.encrypt_owner_us > 0.0 && t.decrypt_us > 0.0);
    assert_eq!(t.ciphertext_bytes, 64);
}

#[test]
fn sums_over_many_binnings_match_sum_by_bin() {
    let mut rng = rng(11);
    let sk = SecretKey::generate(&mut rng);
    let values: Vec<u64> = (0..300).map(|i| u64::from(i % 3 == 0)).collect();
    let cts = sk.encrypt_batch(&values, &mut rng);
    let a: Vec<u8> = (0..300).map(|i| (i % 7) as u8).collect();
    let b: Vec<u8> = (0..300).map(|i| if i < 250 { 2 } else { (i % 2) as u8 }).collect();
    let empty: Vec<u8> = vec![0; 300];
    let many = sum_by_bin_features(&cts, &[(&a[..], 7), (&b[..], 4), (&empty[..], 3)]).unwrap();
    for (sums, (bins, n)) in many.iter().zip([(&a, 7), (&b, 4), (&empty, 3)]) {
        let one = sum_by_bin(&cts, bins, n).unwrap();
        let max = vec![300; n];
        assert_eq!(sk.decrypt_batch(sums, &max).unwrap(), sk.decrypt_batch(&one, &max).unwrap());
    }
    assert!(matches!(
        sum_by_bin_features(&cts, &[(&a[..], 6)]),
        Err(ElGamalError::BinOutOfRange { .. })
    ));
}

#[test]
fn joint_grids_give_the_same_sums_as_one_feature_at_a_time() {
    let mut rng = rng(12);
    let sk = SecretKey::generate(&mut rng);
    let n = 2000;
    let values: Vec<u64> = (0..n).map(|_| u64::from(rng.random::<u8>() < 60)).collect();
    let cts = sk.encrypt_batch(&values, &mut rng);
    // Bin counts chosen so that groups of three, two and one feature occur (limit 250 cells).
    let shapes = [5usize, 7, 6, 11, 20, 3, 300, 4];
    let bins: Vec<Vec<u16>> =
        shapes.iter().map(|&k| (0..n).map(|_| rng.random_range(0..k) as u16).collect()).collect();
    let features: Vec<(&[u16], usize)> =
        bins.iter().zip(shapes).map(|(b, k)| (b.as_slice(), k)).collect();
    let many = sum_by_bin_features(&cts, &features).unwrap();
    assert_eq!(many.len(), shapes.len());
    for ((sums, b), k) in many.iter().zip(&bins).zip(shapes) {
        let mut want = vec![0u64; k];
        for (v, &x) in values.iter().zip(b) {
            want[x as usize] += v;
        }
        assert_eq!(sk.decrypt_batch(sums, &vec![n as u64; k]).unwrap(), want);
    }
}
