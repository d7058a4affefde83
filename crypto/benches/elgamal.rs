//! Exponential ElGamal (ristretto255) against 2048-bit Okamoto–Uchiyama on the WOE/IV
//! workload, the measurement behind WOE's default scheme.
//!
//! `cargo bench -p fedcredit-crypto --bench elgamal`
//!
//! - `woe_{elgamal,ou}/encrypt_rows`: the label holder encrypts 4,096 0/1 event
//!   indicators as the key owner and writes them to the wire, on all cores.
//! - `woe_{elgamal,ou}/read_rows`: a feature holder decodes and validates them.
//! - `woe_{elgamal,ou}/histograms`: it sums them into 11 bins for each of 8 columns
//!   (`rows × columns` ciphertext additions, all cores).
//! - `woe_{elgamal,ou}/decrypt_sums`: the label holder decrypts 88 bin sums.
//!
//! After the criterion groups, a table prints the cost per row and per row × column of
//! each phase, thread CPU time on one core (`*::bench::measure`) beside the 100k × 300
//! estimate.

use std::hint::black_box;

use criterion::Criterion;
use fedcredit_crypto::elgamal;
use fedcredit_crypto::he::{self, Plaintext, Scheme};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

const ROWS: usize = 4096;
const COLUMNS: usize = 8;
const BINS: usize = 11;

fn columns(rng: &mut ChaCha20Rng) -> Vec<Vec<u8>> {
    (0..COLUMNS).map(|_| (0..ROWS).map(|_| rng.random_range(0..BINS as u8)).collect()).collect()
}

fn labels(rng: &mut ChaCha20Rng) -> Vec<u64> {
    (0..ROWS).map(|_| u64::from(rng.random_range(0..5u8) == 0)).collect()
}

fn elgamal_workload(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let sk = elgamal::SecretKey::generate(&mut rng);
    let ys = labels(&mut rng);
    let cols = columns(&mut rng);
    let wire = sk.encrypt_to_bytes(&ys, &mut rng);
    let cts = elgamal::read_ciphertexts(&wire).expect("decodes");
    let sums: Vec<elgamal::Ciphertext> =
        cols.iter().flat_map(|col| elgamal::sum_by_bin(&cts, col, BINS).expect("bins")).collect();
    let table = elgamal::DlogTable::for_max(ROWS as u64);
    let mut g = c.benchmark_group("woe_elgamal");
    g.sample_size(10);
    g.bench_function("encrypt_rows", |b| b.iter(|| sk.encrypt_to_bytes(&ys, &mut rng)));
    g.bench_function("read_rows", |b| b.iter(|| elgamal::read_ciphertexts(&wire).expect("ok")));
    g.bench_function("histograms", |b| {
        b.iter(|| {
            for col in &cols {
                black_box(elgamal::sum_by_bin(&cts, col, BINS).expect("bins"));
            }
        })
    });
    let bounds = vec![ROWS as u64; sums.len()];
    g.bench_function("decrypt_sums", |b| {
        b.iter(|| sk.decrypt_batch_with(&sums, &bounds, &table).expect("small"))
    });
    g.finish();
}

fn ou_workload(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let sk = he::SecretKey::generate(Scheme::Ou, 2048, &mut rng).expect("key");
    let pk = sk.public_key().clone();
    let ys = labels(&mut rng);
    let pts: Vec<Plaintext> = ys.iter().map(|&y| Plaintext::from(y as i64)).collect();
    let cols = columns(&mut rng);
    let wire = pk.write_ciphertexts(&sk.encrypt_batch(&pts, &mut rng).expect("fits"));
    let cts = pk.read_ciphertexts(&wire).expect("valid");
    let col_refs: Vec<&[u8]> = cols.iter().map(Vec::as_slice).collect();
    let sums: Vec<he::Ciphertext> =
        pk.histograms(&cts, None, &col_refs, BINS).expect("bins").into_iter().flatten().collect();
    let mut g = c.benchmark_group("woe_ou");
    g.sample_size(10);
    g.bench_function("encrypt_rows", |b| {
        b.iter(|| pk.write_ciphertexts(&sk.encrypt_batch(&pts, &mut rng).expect("fits")))
    });
    g.bench_function("read_rows", |b| b.iter(|| pk.read_ciphertexts(&wire).expect("valid")));
    g.bench_function("histograms", |b| {
        b.iter(|| pk.histograms(&cts, None, &col_refs, BINS).expect("bins"))
    });
    g.bench_function("decrypt_sums", |b| b.iter(|| sk.decrypt_batch(&sums)));
    g.finish();
}

fn table() {
    let eg = elgamal::bench::measure(1.0);
    let ou = match he::bench::measure(Scheme::Ou, 2048, 1.0) {
        Ok(t) => t,
        Err(e) => {
            println!("OU: {e}");
            return;
        }
    };
    println!("\nWOE workload per operation, one core, thread CPU time");
    println!("{:<34} {:>12} {:>12}", "", "ElGamal", "OU-2048");
    let rows = [
        ("label holder: encrypt a row (µs)", eg.encrypt_owner_us, ou.encrypt_owner_us),
        ("feature holder: add (µs)", eg.add_us, ou.add_us),
        ("feature holder: decode a row (µs)", eg.decode_us, 0.0),
        ("label holder: decrypt a sum (µs)", eg.decrypt_us, ou.decrypt_us),
        ("bytes per ciphertext", eg.ciphertext_bytes as f64, ou.ciphertext_bytes as f64),
    ];
    for (k, a, b) in rows {
        println!("{k:<34} {a:>12.2} {b:>12.2}");
    }
    // 100k rows × 300 columns: one encryption and one decode a row, one addition a row ×
    // column (before the grouping of federation::vertical::woe), 3,300 decryptions.
    let (n, f, sums) = (1e5, 300.0, 3300.0);
    let cost = |enc: f64, dec_row: f64, add: f64, dec: f64| {
        (n * enc + n * dec_row + n * f * add + sums * dec) * 1e-6
    };
    println!(
        "100k × 300, CPU seconds, one addition per row × column: ElGamal {:.1}, OU {:.1}",
        cost(eg.encrypt_owner_us, eg.decode_us, eg.add_us, eg.decrypt_us),
        cost(ou.encrypt_owner_us, 0.0, ou.add_us, ou.decrypt_us)
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    elgamal_workload(&mut c);
    ou_workload(&mut c);
    c.final_summary();
    table();
}
