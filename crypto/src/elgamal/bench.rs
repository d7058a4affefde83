//! Per-operation timings of exponential ElGamal, in the units of
//! [`crate::he::bench::HeOpTimes`] so that `fedcredit bench he` prints the three schemes
//! side by side: one thread, each operation looped until `min_seconds` of the thread's CPU
//! time have passed, on seeded inputs cycled from pools of 64.

use std::hint::black_box;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{CIPHERTEXT_BYTES, Ciphertext, DlogTable, SECURITY_BITS, SecretKey, read_ciphertexts};
use crate::he::bench::Clock;

/// Microseconds per operation on one core (milliseconds for the table).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ElGamalOpTimes {
    /// `"elgamal"`.
    pub scheme: String,
    /// Security strength in bits.
    pub security_bits: u32,
    /// `"thread-cpu"` or `"wall"`.
    pub clock: String,
    /// Key generation.
    pub keygen_us: f64,
    /// Public-key encryption of a 16-bit value with fresh randomness (three fixed-base
    /// multiplications), not encoded.
    pub encrypt_us: f64,
    /// Key-owner encryption of a 0/1 value, encoded to 64 bytes in batches of 256
    /// ([`SecretKey::encrypt_to_bytes`]): what the WOE label holder pays per row.
    pub encrypt_owner_us: f64,
    /// Ciphertext addition (two point additions).
    pub add_us: f64,
    /// Multiplication of a ciphertext by a 64-bit scalar.
    pub scalar_mul_us: f64,
    /// Decryption of a value below 2^16 with a prebuilt 2^16 table (one multiplication by
    /// the secret, one encoding, one lookup).
    pub decrypt_us: f64,
    /// Decoding (and validating) one received ciphertext.
    pub decode_us: f64,
    /// Encoding one ciphertext on its own (batches are cheaper, see `encrypt_owner_us`).
    pub encode_us: f64,
    /// Building the 2^16-entry discrete-log table, milliseconds.
    pub dlog_table_ms: f64,
    /// Bytes per ciphertext.
    pub ciphertext_bytes: usize,
}

/// Measures every operation on the calling thread (the batch encoder in a one-thread
/// pool).
///
/// # Panics
/// Never in practice: a failed self-check or a thread pool that cannot be built panics,
/// since a benchmark of wrong results is worthless.
pub fn measure(min_seconds: f64) -> ElGamalOpTimes {
    let clock = Clock::new();
    let mut rng = ChaCha20Rng::seed_from_u64(0x454c_4741_4d41_4c21);
    let keygen_us = clock.time(min_seconds.min(0.2), |_| {
        black_box(SecretKey::generate(&mut rng));
    }) * 1e6;
    let sk = SecretKey::generate(&mut rng);
    let pk = sk.public_key().clone();
    let ms: Vec<u64> = (0..64).map(|_| rng.next_u64() & 0xffff).collect();
    let cts: Vec<Ciphertext> = ms.iter().map(|&m| pk.encrypt(m, &mut rng)).collect();
    let mut r1 = ChaCha20Rng::seed_from_u64(1);
    let encrypt_us = clock.time(min_seconds, |i| {
        black_box(pk.encrypt(ms[i % 64], &mut r1));
    }) * 1e6;
    let bits: Vec<u64> = (0..256).map(|i| (i % 3 == 0) as u64).collect();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    let encrypt_owner_us = one_thread.install(|| {
        clock.time(min_seconds, |_| {
            black_box(sk.encrypt_to_bytes(&bits, &mut r1));
        })
    }) * 1e6
        / bits.len() as f64;
    let mut acc = Ciphertext::zero();
    let add_us = clock.time(min_seconds, |i| acc.add_assign(&cts[i % 64])) * 1e6;
    black_box(&acc);
    let scalars: Vec<u64> = (0..64).map(|_| rng.next_u64() | (1 << 63)).collect();
    let scalar_mul_us = clock.time(min_seconds, |i| {
        black_box(cts[i % 64].mul_u64(scalars[i % 64]));
    }) * 1e6;
    let start = clock.now();
    let table = DlogTable::with_steps(1 << 16);
    let dlog_table_ms = clock.seconds_since(start) * 1e3;
    let decrypt_us = clock.time(min_seconds, |i| {
        black_box(sk.decrypt(&cts[i % 64], u64::from(u16::MAX), &table).ok());
    }) * 1e6;
    let bytes: Vec<[u8; CIPHERTEXT_BYTES]> = cts.iter().map(Ciphertext::to_bytes).collect();
    let decode_us = clock.time(min_seconds, |i| {
        black_box(Ciphertext::from_bytes(&bytes[i % 64]).ok());
    }) * 1e6;
    let encode_us = clock.time(min_seconds, |i| {
        black_box(cts[i % 64].to_bytes());
    }) * 1e6;
    // correctness guard
    let three = cts[0].mul_u64(3).add(&cts[1]);
    let want = 3 * ms[0] + ms[1];
    assert_eq!(sk.decrypt(&three, want, &table), Ok(want), "ElGamal benchmark self-check");
    let wire = sk.encrypt_to_bytes(&bits[..4], &mut r1);
    let back = read_ciphertexts(&wire).expect("own encoding decodes");
    let got = sk.decrypt_batch_with(&back, &[1; 4], &table).expect("decrypts");
    assert_eq!(got, &bits[..4], "ElGamal batch self-check");
    ElGamalOpTimes {
        scheme: "elgamal".into(),
        security_bits: SECURITY_BITS,
        clock: if clock.cpu { "thread-cpu" } else { "wall" }.to_string(),
        keygen_us,
        encrypt_us,
        encrypt_owner_us,
        add_us,
        scalar_mul_us,
        decrypt_us,
        decode_us,
        encode_us,
        dlog_table_ms,
        ciphertext_bytes: CIPHERTEXT_BYTES,
    }
}
