//! Tests of Okamoto–Uchiyama (Eurocrypt 1998) and Paillier (Eurocrypt 1999) as built
//! here: round trips, homomorphic operations, packing and compression (SecureBoost+,
//! arXiv 2110.10927), batch sums, validation of peer input, key serialization. Seeded
//! RNGs throughout; small (512-bit) keys where speed matters, then 2048- and 3072-bit keys
//! for each scheme.

use std::sync::OnceLock;

use num_bigint::{BigInt, BigUint};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Small keys shared by the tests (key generation is the slow part).
fn key(scheme: Scheme) -> &'static SecretKey {
    static OU: OnceLock<SecretKey> = OnceLock::new();
    static PAILLIER: OnceLock<SecretKey> = OnceLock::new();
    let cell = match scheme {
        Scheme::Ou => &OU,
        Scheme::Paillier => &PAILLIER,
    };
    cell.get_or_init(|| SecretKey::generate(scheme, 512, &mut rng(42)).unwrap())
}

const SCHEMES: [Scheme; 2] = [Scheme::Ou, Scheme::Paillier];

fn round_trip_values(pk: &PublicKey) -> Vec<BigInt> {
    let max: BigInt = (BigInt::from(1) << pk.plaintext_bits()) - 1;
    vec![
        BigInt::from(0),
        BigInt::from(1),
        BigInt::from(-1),
        BigInt::from(i64::MAX),
        BigInt::from(i64::MIN),
        max.clone(),
        -max,
        BigInt::from(123_456_789_i64) << 100,
    ]
}

#[test]
fn encrypt_decrypt_round_trip_every_path() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let mut r = rng(1);
        let mut pool = sk.randomness_pool(8, &mut r);
        let mut public_pool = pk.randomness_pool(8, &mut r);
        for v in round_trip_values(pk) {
            let m = Plaintext::from(v.clone());
            for c in [
                pk.encrypt(&m, &mut r).unwrap(),
                sk.encrypt(&m, &mut r).unwrap(),
                pk.encrypt_pooled(&m, &mut pool).unwrap(),
                pk.encrypt_pooled(&m, &mut public_pool).unwrap(),
            ] {
                assert_eq!(sk.decrypt(&c).as_bigint(), &v, "{scheme} {v}");
            }
        }
        // fresh randomness: two encryptions differ
        let a = pk.encrypt_i64(7, &mut r).unwrap();
        let b = pk.encrypt_i64(7, &mut r).unwrap();
        assert_ne!(a, b);
        assert_eq!(sk.decrypt_i128(&a).unwrap(), 7);
    }
}

#[test]
fn plaintexts_beyond_the_space_are_refused() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let too_big = Plaintext::from(BigInt::from(1) << pk.plaintext_bits());
        assert!(matches!(
            pk.encrypt(&too_big, &mut rng(2)),
            Err(HeError::PlaintextTooLarge { .. })
        ));
        assert!(matches!(
            sk.encrypt(&too_big, &mut rng(2)),
            Err(HeError::PlaintextTooLarge { .. })
        ));
    }
}

#[test]
fn pools_are_single_use_and_bound_to_their_key() {
    let ou = key(Scheme::Ou);
    let pa = key(Scheme::Paillier);
    let mut pool = ou.randomness_pool(1, &mut rng(3));
    assert_eq!(pool.len(), 1);
    assert!(matches!(
        pa.public_key().encrypt_pooled(&Plaintext::from(1i64), &mut pool),
        Err(HeError::Pool(_))
    ));
    ou.public_key().encrypt_pooled(&Plaintext::from(1i64), &mut pool).unwrap();
    assert!(pool.is_empty());
    assert!(matches!(
        ou.public_key().encrypt_pooled(&Plaintext::from(1i64), &mut pool),
        Err(HeError::Pool(_))
    ));
    assert!(format!("{pool:?}").contains("<redacted>"));
}

#[test]
fn homomorphic_add_scalar_mul_negation() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let mut r = rng(4);
        let (x, y) = (123_456_789_i64, -987_654_321_i64);
        let cx = pk.encrypt_i64(x, &mut r).unwrap();
        let cy = sk.encrypt_i64(y, &mut r).unwrap();
        let dec = |c: &Ciphertext| sk.decrypt(c).as_bigint().clone();
        assert_eq!(dec(&pk.add(&cx, &cy)), BigInt::from(x + y));
        let mut acc = pk.zero();
        pk.add_assign(&mut acc, &cx);
        pk.add_assign(&mut acc, &cx);
        assert_eq!(dec(&acc), BigInt::from(2 * x));
        assert_eq!(dec(&pk.add_plain(&cx, &Plaintext::from(-5i64)).unwrap()), BigInt::from(x - 5));
        let k = 0xdead_beef_1234_5678_u64;
        assert_eq!(dec(&pk.mul_u64(&cx, k)), BigInt::from(x) * k);
        assert_eq!(dec(&pk.mul_u64(&cy, 0)), BigInt::from(0));
        assert_eq!(dec(&pk.mul_i64(&cy, -3)), BigInt::from(-3 * y));
        let big = BigUint::from(3u32) << 90;
        assert_eq!(dec(&pk.mul_scalar(&cx, &big)), BigInt::from(x) * BigInt::from(big));
        assert_eq!(dec(&pk.shift(&cy, 40)), BigInt::from(y) << 40);
        assert_eq!(dec(&pk.neg(&cx)), BigInt::from(-x));
        assert_eq!(dec(&pk.sub(&cx, &cy)), BigInt::from(x - y));
        let re = pk.rerandomize(&cx, &mut r);
        assert_ne!(re, cx);
        assert_eq!(dec(&re), BigInt::from(x));
        let cts: Vec<Ciphertext> =
            (0..5).map(|i| pk.encrypt_i64(i * 1000 - 2000, &mut r).unwrap()).collect();
        let negs = pk.neg_batch(&cts);
        for (i, c) in negs.iter().enumerate() {
            assert_eq!(dec(c), BigInt::from(2000 - i as i64 * 1000));
        }
    }
}

#[test]
fn encrypted_dot_products() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let mut r = rng(13);
        let n = 600;
        let xs: Vec<i64> = (0..n).map(|_| r.random_range(-1_000_000..1_000_000)).collect();
        let ks: Vec<i64> = (0..n)
            .map(|i| if i % 7 == 0 { 0 } else { r.random_range(-(1i64 << 40)..1i64 << 40) })
            .collect();
        let cts = sk
            .encrypt_batch(&xs.iter().map(|&x| Plaintext::from(x)).collect::<Vec<_>>(), &mut r)
            .unwrap();
        let want: i128 = xs.iter().zip(&ks).map(|(&x, &k)| x as i128 * k as i128).sum();
        assert_eq!(sk.decrypt_i128(&pk.dot_i64(&cts, &ks).unwrap()).unwrap(), want);
        let ku: Vec<u64> = ks.iter().map(|k| k.unsigned_abs()).collect();
        let want_u: i128 = xs.iter().zip(&ku).map(|(&x, &k)| x as i128 * k as i128).sum();
        assert_eq!(sk.decrypt_i128(&pk.dot_u64(&cts, &ku).unwrap()).unwrap(), want_u);
        assert_eq!(sk.decrypt_i128(&pk.dot_u64(&cts[..0], &[]).unwrap()).unwrap(), 0);
        assert!(matches!(pk.dot_u64(&cts, &ku[1..]), Err(HeError::LengthMismatch { .. })));
    }
}

#[test]
fn packed_sums_up_to_max_terms_decode_exactly() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let terms = 200u64;
        // g in [-1, 1], h in [0, 0.25] at 40 fractional bits, and a count slot
        let scale = FixedScale::new(40);
        let packer = Packer::new(41, 3, terms).unwrap();
        packer.check_fits(pk).unwrap();
        let mut r = rng(5);
        let rows: Vec<[f64; 3]> = (0..terms)
            .map(|i| {
                let g = if i % 7 == 0 { -1.0 } else { r.random_range(-1.0..1.0) };
                [g, r.random_range(0.0..0.25), 2f64.powi(-40)]
            })
            .collect();
        let pts: Vec<Plaintext> = rows.iter().map(|v| packer.pack_f64(v, scale).unwrap()).collect();
        let cts = sk.encrypt_batch(&pts, &mut r).unwrap();
        let total = pk.sum(&cts);
        let got = packer.unpack(&sk.decrypt(&total)).unwrap();
        for (slot, &value) in got.iter().enumerate() {
            let want: i128 = rows.iter().map(|v| scale.encode(v[slot]).unwrap() as i128).sum();
            assert_eq!(value, want, "{scheme} slot {slot}");
        }
        assert_eq!(got[2], terms as i128);
        // the extreme: every term at the bound in every slot, negative in the middle
        let max = (1i64 << 41) - 1;
        let extreme = packer.pack(&[max, -max, max]).unwrap();
        let c = pk.encrypt(&extreme, &mut r).unwrap();
        let sum = pk.mul_u64(&c, terms);
        let bound = terms as i128 * max as i128;
        assert_eq!(packer.unpack(&sk.decrypt(&sum)).unwrap(), vec![bound, -bound, bound]);
        // one term more is reported, not silently wrapped
        let over = pk.add(&sum, &c);
        assert!(matches!(packer.unpack(&sk.decrypt(&over)), Err(HeError::SlotOverflow { .. })));
    }
}

#[test]
fn compression_round_trip() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let packer = Packer::new(20, 2, 64).unwrap();
        let k = packer.compression_factor(pk);
        assert!(k >= 2, "{scheme}: factor {k}");
        let mut r = rng(6);
        // 2k + 1 packed sums: two full groups and a short one
        let n = 2 * k + 1;
        let values: Vec<[i64; 2]> = (0..n)
            .map(|_| [r.random_range(-(1i64 << 20) + 1..1 << 20), r.random_range(0..1i64 << 20)])
            .collect();
        let cts: Vec<Ciphertext> =
            values.iter().map(|v| pk.encrypt(&packer.pack(v).unwrap(), &mut r).unwrap()).collect();
        // make them sums: add each to itself 63 more times → 64 terms
        let sums: Vec<Ciphertext> = cts.iter().map(|c| pk.mul_u64(c, 64)).collect();
        let compressed = pk.compress(&sums, &packer).unwrap();
        let groups = pk.compressed_groups(n, &packer);
        assert_eq!(compressed.len(), groups.len());
        assert_eq!(groups, vec![k, k, 1]);
        let plain = sk.decrypt_batch(&compressed);
        let mut decoded = Vec::new();
        for (m, &g) in plain.iter().zip(&groups) {
            decoded.extend(packer.unpack_many(m, g).unwrap());
        }
        let want: Vec<i128> =
            values.iter().flat_map(|v| v.iter().map(|&x| 64 * x as i128)).collect();
        assert_eq!(decoded, want);
        // wire round trip of the compressed batch
        let bytes = pk.write_ciphertexts(&compressed);
        assert_eq!(bytes.len(), compressed.len() * pk.ciphertext_len());
        assert_eq!(pk.read_ciphertexts(&bytes).unwrap(), compressed);
    }
}

#[test]
fn histograms_in_digit_form_equal_the_sequential_products_at_2048_bits() {
    // OU-2048 on an IFMA machine sums histograms in 52-bit digits (`ifma::DigitProducts`);
    // every bucket must be the very ciphertext the one-at-a-time products give.
    let mut r = rng(2048);
    let sk = SecretKey::generate(Scheme::Ou, 2048, &mut r).unwrap();
    let pk = sk.public_key();
    let n = 400;
    let values: Vec<i64> = (0..n).map(|_| r.random_range(-(1 << 40)..1 << 40)).collect();
    let mut cts = sk
        .encrypt_batch(&values.iter().map(|&v| Plaintext::from(v)).collect::<Vec<_>>(), &mut r)
        .unwrap();
    // the largest ciphertext there is, n − 1
    let mut top = pk.to_bytes()[8..8 + 256].to_vec();
    let last = top.len() - 1;
    top[last] -= 1; // n is odd
    cts[7] = pk.ciphertext_from_bytes(&top).unwrap();
    let n_bins = 9;
    let cols: Vec<Vec<u8>> =
        (0..6).map(|_| (0..n).map(|_| r.random_range(0..n_bins as u8)).collect()).collect();
    let col_refs: Vec<&[u8]> = cols.iter().map(Vec::as_slice).collect();
    let rows: Vec<u32> = (0..n as u32).filter(|i| i % 5 != 1).collect();
    let got = pk.histograms(&cts, Some(&rows), &col_refs, n_bins).unwrap();
    let all = pk.histograms(&cts, None, &col_refs, n_bins).unwrap();
    for (c, col) in col_refs.iter().enumerate() {
        assert_eq!(got[c], pk.sum_by_bin_rows(&cts, &rows, col, n_bins).unwrap(), "column {c}");
        assert_eq!(all[c], pk.sum_by_bin(&cts, col, n_bins).unwrap(), "column {c}, all rows");
    }
    eprintln!("kernel: {}", super::kernel());
}

#[test]
fn sums_by_bin_and_histograms_match_plaintext() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let mut r = rng(7);
        let n = 300;
        let values: Vec<i64> = (0..n).map(|_| r.random_range(-1000..1000)).collect();
        let cts = sk
            .encrypt_batch(&values.iter().map(|&v| Plaintext::from(v)).collect::<Vec<_>>(), &mut r)
            .unwrap();
        let n_bins = 5;
        let col_a: Vec<u8> = (0..n).map(|_| r.random_range(0..n_bins as u8)).collect();
        let col_b: Vec<u16> = (0..n).map(|i| (i % 4) as u16).collect();
        let plain = |col: &dyn Fn(usize) -> usize, rows: &[usize]| {
            let mut s = vec![0i64; n_bins];
            for &i in rows {
                s[col(i)] += values[i];
            }
            s
        };
        let dec = |cs: &[Ciphertext]| {
            cs.iter().map(|c| sk.decrypt_i128(c).unwrap() as i64).collect::<Vec<_>>()
        };
        let all: Vec<usize> = (0..n).collect();
        assert_eq!(
            dec(&pk.sum_by_bin(&cts, &col_a, n_bins).unwrap()),
            plain(&|i| col_a[i] as usize, &all)
        );
        let rows: Vec<u32> = (0..n as u32).filter(|i| i % 3 != 0).collect();
        let rows_us: Vec<usize> = rows.iter().map(|&i| i as usize).collect();
        assert_eq!(
            dec(&pk.sum_by_bin_rows(&cts, &rows, &col_b, n_bins).unwrap()),
            plain(&|i| col_b[i] as usize, &rows_us)
        );
        let cols: Vec<&[u8]> = vec![&col_a, &col_a, &col_a];
        let hist = pk.histograms(&cts, Some(&rows), &cols, n_bins).unwrap();
        assert_eq!(hist.len(), 3);
        for h in &hist {
            assert_eq!(dec(h), plain(&|i| col_a[i] as usize, &rows_us));
        }
        let hist1 = pk.histograms(&cts, None, &cols[..1], n_bins).unwrap();
        assert_eq!(dec(&hist1[0]), plain(&|i| col_a[i] as usize, &all));
        // the whole sum agrees too, and an empty bin is an encryption of 0
        assert_eq!(
            sk.decrypt_i128(&pk.sum(&cts)).unwrap(),
            values.iter().map(|&v| v as i128).sum::<i128>()
        );
        let zeros = pk.sum_by_bin(&cts[..0], &col_a[..0], 2).unwrap();
        assert_eq!(dec(&zeros), vec![0, 0]);
        // bad bins and rows are reported before any work
        assert!(matches!(
            pk.sum_by_bin(&cts, &vec![9u8; n], n_bins),
            Err(HeError::BinOutOfRange { row: 0, bin: 9, n_bins: 5 })
        ));
        assert!(matches!(
            pk.sum_by_bin(&cts, &col_a[..10], n_bins),
            Err(HeError::LengthMismatch { .. })
        ));
        assert!(matches!(
            pk.sum_by_bin_rows(&cts, &[n as u32], &col_b, n_bins),
            Err(HeError::RowOutOfRange { .. })
        ));
    }
}

#[test]
fn keys_and_ciphertexts_survive_serialization() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let bytes = pk.to_bytes();
        let back = PublicKey::from_bytes_with_min_bits(&bytes, 512).unwrap();
        assert_eq!(&back, pk);
        assert_eq!(back.to_bytes(), bytes);
        let mut r = rng(8);
        let c = back.encrypt_i64(-42, &mut r).unwrap();
        let wire = back.ciphertext_to_bytes(&c);
        assert_eq!(wire.len(), pk.ciphertext_len());
        let c2 = pk.ciphertext_from_bytes(&wire).unwrap();
        assert_eq!(sk.decrypt_i128(&c2).unwrap(), -42);
        let skb = sk.to_bytes();
        let sk2 = SecretKey::from_bytes(&skb).unwrap();
        assert_eq!(sk2.public_key(), pk);
        assert_eq!(sk2.decrypt_i128(&c).unwrap(), -42);
        assert_eq!(sk.decrypt_i128(&sk2.encrypt_i64(9, &mut r).unwrap()).unwrap(), 9);
        let printed = format!("{sk:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        // a flipped bit in a factor is caught
        let mut bad = skb.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 2;
        assert!(SecretKey::from_bytes(&bad).is_err());
    }
}

#[test]
fn peer_public_keys_are_validated() {
    for scheme in SCHEMES {
        let pk = key(scheme).public_key();
        let good = pk.to_bytes();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            PublicKey::from_bytes_with_min_bits(&b, 512)
        };
        // below the default minimum of 2048 bits
        assert!(matches!(
            PublicKey::from_bytes(&good),
            Err(HeError::KeyTooSmall { bits: 512, min: 2048, .. })
        ));
        assert!(matches!(with(&|b| b[0] = b'X'), Err(HeError::Malformed { .. })));
        assert!(matches!(with(&|b| b[4] = 9), Err(HeError::Malformed { .. })));
        assert!(matches!(with(&|b| b[5] = 7), Err(HeError::Malformed { .. })));
        assert!(matches!(with(&|b| b.truncate(b.len() - 1)), Err(HeError::Malformed { .. })));
        assert!(matches!(with(&|b| b.push(0)), Err(HeError::Malformed { .. })));
        assert!(matches!(
            with(&|b| b[6..8].copy_from_slice(&520u16.to_be_bytes())),
            Err(HeError::BadKeySize { .. })
        ));
        assert!(PublicKey::from_bytes_with_min_bits(&good[..4], 512).is_err());
        let w = 512 / 8;
        let n_last = 8 + w - 1;
        // even modulus
        let e = with(&|b| b[n_last] &= 0xfe).unwrap_err();
        assert!(matches!(e, HeError::BadPublicKey { what: "n", .. }), "{e}");
        // a modulus with a small factor: 3·(2^510 + 1) has 512 bits and is odd
        let smooth: BigUint = BigUint::from(3u32) * ((BigUint::from(1u32) << 510) + 1u32);
        let e = with(&|b| b[8..8 + w].copy_from_slice(&smooth.to_bytes_be())).unwrap_err();
        assert!(
            matches!(
                e,
                HeError::BadPublicKey { what: "n", why: "has a prime factor below 2^14", .. }
            ),
            "{e}"
        );
        // zero / out-of-range / non-invertible elements
        let e = with(&|b| b[8 + w..].fill(0)).unwrap_err();
        assert!(matches!(e, HeError::BadPublicKey { .. }), "{e}");
        let e = with(&|b| b[8 + w..8 + 2 * w].copy_from_slice(&good[8..8 + w])).unwrap_err();
        assert!(matches!(e, HeError::BadPublicKey { .. }), "{e}");
        if scheme == Scheme::Ou {
            // H ≠ G^n
            let e = with(&|b| {
                let l = b.len() - 1;
                b[l] ^= 4;
            })
            .unwrap_err();
            assert!(matches!(e, HeError::BadPublicKey { .. }), "{e}");
        }
        let printed = format!("{pk:?}");
        assert!(printed.contains(&scheme.to_string()));
    }
}

#[test]
fn peer_ciphertexts_are_validated() {
    for scheme in SCHEMES {
        let sk = key(scheme);
        let pk = sk.public_key();
        let len = pk.ciphertext_len();
        let mut r = rng(9);
        let good = pk.ciphertext_to_bytes(&pk.encrypt_i64(5, &mut r).unwrap());
        assert!(matches!(
            pk.ciphertext_from_bytes(&good[1..]),
            Err(HeError::LengthMismatch { .. })
        ));
        assert!(matches!(
            pk.ciphertext_from_bytes(&vec![0; len]),
            Err(HeError::BadCiphertext { why: "is zero", .. })
        ));
        assert!(matches!(
            pk.ciphertext_from_bytes(&vec![0xff; len]),
            Err(HeError::BadCiphertext { .. })
        ));
        // the modulus itself is out of range
        let modulus = pk.ct().n().to_vec();
        let mut mb = vec![0u8; len];
        limbs::write_be_bytes(&modulus, &mut mb);
        assert!(matches!(pk.ciphertext_from_bytes(&mb), Err(HeError::BadCiphertext { .. })));
        // a multiple of a secret factor is in range but not a unit
        let p = match scheme {
            Scheme::Ou => {
                let b = sk.to_bytes();
                let off = 5 + 8 + 3 * 64;
                limbs::from_be_bytes(&b[off..off + 22], 3).unwrap()
            }
            Scheme::Paillier => {
                let b = sk.to_bytes();
                let off = 5 + 8 + 3 * 64;
                limbs::from_be_bytes(&b[off..off + 32], 4).unwrap()
            }
        };
        let mut pb = vec![0u8; len];
        limbs::write_be_bytes(&p, &mut pb);
        assert!(matches!(
            pk.ciphertext_from_bytes(&pb),
            Err(HeError::BadCiphertext { why: "shares a factor with n", .. })
        ));
        // a batch names the bad index
        let mut batch = good.clone();
        batch.extend_from_slice(&good);
        batch.extend_from_slice(&pb);
        assert!(matches!(
            pk.read_ciphertexts(&batch),
            Err(HeError::BadCiphertext { index: 2, .. })
        ));
        let mut zero_in_batch = good.clone();
        zero_in_batch.extend_from_slice(&vec![0; len]);
        assert!(matches!(
            pk.read_ciphertexts(&zero_in_batch),
            Err(HeError::BadCiphertext { index: 1, .. })
        ));
        assert!(matches!(pk.read_ciphertexts(&batch[1..]), Err(HeError::LengthMismatch { .. })));
        assert_eq!(pk.read_ciphertexts(&good).unwrap().len(), 1);
    }
}

#[test]
fn generation_is_deterministic_for_a_seed_and_batches_do_not_depend_on_threads() {
    let a = SecretKey::generate(Scheme::Ou, 512, &mut rng(11)).unwrap();
    let b = SecretKey::generate(Scheme::Ou, 512, &mut rng(11)).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    let ms: Vec<Plaintext> = (0..130i64).map(Plaintext::from).collect();
    let x = a.encrypt_batch(&ms, &mut rng(12)).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let y = pool.install(|| b.encrypt_batch(&ms, &mut rng(12)).unwrap());
    assert_eq!(x, y);
    let dec: Vec<i128> = a.decrypt_batch(&x).iter().map(|m| m.to_i128().unwrap()).collect();
    assert_eq!(dec, (0..130).collect::<Vec<i128>>());
    // a fresh public key builds its tables lazily inside the parallel batch
    let fresh = PublicKey::from_bytes_with_min_bits(&a.public_key().to_bytes(), 512).unwrap();
    let neg: Vec<Plaintext> = (0..130i64).map(|i| Plaintext::from(-i)).collect();
    let z = fresh.encrypt_batch(&neg, &mut rng(13)).unwrap();
    assert_eq!(a.decrypt_i128(&z[129]).unwrap(), -129);
    assert!(matches!(
        SecretKey::generate(Scheme::Ou, 500, &mut rng(1)),
        Err(HeError::BadKeySize { .. })
    ));
    assert!(matches!(
        SecretKey::generate(Scheme::Ou, 256, &mut rng(1)),
        Err(HeError::BadKeySize { .. })
    ));
    assert_eq!("OU".parse::<Scheme>().unwrap(), Scheme::Ou);
    assert!("rsa".parse::<Scheme>().is_err());
}

#[test]
fn full_size_keys_2048() {
    for scheme in SCHEMES {
        let mut r = rng(2048);
        let sk = SecretKey::generate(scheme, 2048, &mut r).unwrap();
        let pk = PublicKey::from_bytes(&sk.public_key().to_bytes()).unwrap();
        assert_eq!(pk.bits(), 2048);
        assert_eq!(pk.security_bits(), 112);
        match scheme {
            Scheme::Ou => {
                assert_eq!(pk.plaintext_bits(), 681);
                assert_eq!(pk.ciphertext_len(), 256);
            }
            Scheme::Paillier => {
                assert_eq!(pk.plaintext_bits(), 2046);
                assert_eq!(pk.ciphertext_len(), 512);
            }
        }
        let x: BigInt = BigInt::from(-3) << 600;
        let c1 = pk.encrypt(&Plaintext::from(x.clone()), &mut r).unwrap();
        let c2 = sk.encrypt_i64(1 << 40, &mut r).unwrap();
        let s = pk.add(&pk.mul_u64(&c1, 5), &c2);
        assert_eq!(sk.decrypt(&s).as_bigint(), &(x * 5 + (1i64 << 40)));
        let packer = Packer::for_key(&pk, 40, 100_000).unwrap();
        assert!(packer.slots() >= 11);
        let sk2 = SecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(sk2.decrypt_i128(&c2).unwrap(), 1 << 40);
    }
}

#[test]
fn keys_of_3072_bits() {
    for scheme in SCHEMES {
        let mut r = rng(3072);
        let sk = SecretKey::generate(scheme, 3072, &mut r).unwrap();
        let pk = PublicKey::from_bytes(&sk.public_key().to_bytes()).unwrap();
        assert_eq!(pk.security_bits(), 128);
        let a = pk.encrypt_i64(-77, &mut r).unwrap();
        let b = sk.encrypt_i64(100, &mut r).unwrap();
        assert_eq!(sk.decrypt_i128(&pk.add(&a, &pk.mul_u64(&b, 3))).unwrap(), 223);
    }
}
