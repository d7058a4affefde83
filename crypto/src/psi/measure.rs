//! Throughput of the PSI primitives on this machine, for the criterion bench
//! (`cargo bench -p fedcredit-crypto --bench psi`), and the end-to-end estimates derived
//! from it.
//!
//! The primitives are those of [`super::ecdh`] (Huberman–Franklin–Hogg ECDH-PSI over
//! ristretto255, RFC 9496 / RFC 9380) and [`super::token`] (server-aided PSI, Kamara et
//! al., FC 2014). Timing lives here and in benches, never in tests.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::ecdh::{PsiKey, blind_ids, reblind};
use super::hash::Dst;
use super::intersect::align_rows;
use super::token::{TokenKey, intersect_tokens, tokens};

/// Characters of the check digit of a unified social credit code (GB 32100-2015).
const CHECK_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// `n` distinct, well-formed-looking 18-character unified social credit codes, numbered
/// from `start` (so two calls with overlapping ranges overlap in exactly those ids). The
/// structure (a company code, a region, a 9-character organisation code, a check
/// character) is why an unkeyed hash would fall to a dictionary.
pub fn synthetic_ids(start: u64, n: usize) -> Vec<[u8; 18]> {
    (start..start + n as u64)
        .map(|i| {
            let region = 110_000 + (i % 8_000) * 10;
            let org = i % 1_000_000_000;
            let check = CHECK_CHARS[(i % 31) as usize] as char;
            let code = format!("91{region:06}{org:09}{check}");
            let mut out = [0u8; 18];
            out.copy_from_slice(&code.as_bytes()[..18]);
            out
        })
        .collect()
}

/// Measured rates on one thread pool, and what they imply.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PsiThroughput {
    /// Threads in the pool the rates were measured on.
    pub threads: usize,
    /// Ids per measured operation.
    pub ids: usize,
    /// Own ids blinded per second (hash to group, multiply, encode).
    pub blind_per_s: f64,
    /// Peer points reblinded per second (decode, multiply, encode).
    pub reblind_per_s: f64,
    /// Tokens per second (HMAC-SHA256, truncated).
    pub tokens_per_s: f64,
    /// Seconds for one party to align `ids` fully blinded values against `ids` of a peer's
    /// (half common): intersection and agreed order.
    pub align_ecdh_s: f64,
    /// Seconds for the coordinator to intersect two unsorted sets of `ids` tokens (half
    /// common).
    pub intersect_tokens_s: f64,
}

impl PsiThroughput {
    /// Estimated seconds of two-party ECDH-PSI with `n_a` and `n_b` ids when both parties
    /// share the measured pool's cores: the CPU work of both parties (each blinds its own
    /// set, reblinds the peer's, aligns) at the measured rates. Transfer (64 bytes per id
    /// each way on loopback) is not included.
    pub fn ecdh_two_party_seconds(&self, n_a: usize, n_b: usize) -> f64 {
        let n = (n_a + n_b) as f64;
        let align = self.align_ecdh_s * n / (2 * self.ids) as f64;
        n / self.blind_per_s + n / self.reblind_per_s + 2.0 * align
    }

    /// Estimated seconds of two-party server-aided PSI on the same cores: both token sets,
    /// the coordinator's intersection and each party's alignment (taken to cost as much as
    /// the coordinator's intersection).
    pub fn server_aided_two_party_seconds(&self, n_a: usize, n_b: usize) -> f64 {
        let n = (n_a + n_b) as f64;
        let intersect = self.intersect_tokens_s * n / (2 * self.ids) as f64;
        n / self.tokens_per_s + 3.0 * intersect
    }
}

/// Measures every primitive over `ids` synthetic ids on a pool of `threads` threads.
pub fn measure_throughput(
    ids: usize,
    threads: usize,
) -> Result<PsiThroughput, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut rng = StdRng::seed_from_u64(0x5053_4921);
    let (key_a, key_b) = (PsiKey::random(&mut rng), PsiKey::random(&mut rng));
    let dst = Dst::for_job("bench");
    let mine = synthetic_ids(0, ids);
    let theirs = synthetic_ids((ids / 2) as u64, ids);
    let secs = |t: Instant| t.elapsed().as_secs_f64().max(1e-9);
    Ok(pool.install(|| {
        let t = Instant::now();
        let blinded_a = blind_ids(&mine, &dst, &key_a);
        let blind_s = secs(t);
        let blinded_b = blind_ids(&theirs, &dst, &key_b);

        let t = Instant::now();
        let full_a = reblind(&blinded_a, &key_b).unwrap_or_default();
        let reblind_s = secs(t);
        let full_b = reblind(&blinded_b, &key_a).unwrap_or_default();

        let t = Instant::now();
        let rows = align_rows(&full_a, &[&full_b]);
        let align_ecdh_s = secs(t);
        debug_assert_eq!(rows.len(), ids - ids / 2);

        let token_key = TokenKey::derive(&[42u8; 32], b"bench");
        let t = Instant::now();
        let tokens_a = tokens(&mine, &token_key);
        let tokens_s = secs(t);
        let tokens_b = tokens(&theirs, &token_key);
        let t = Instant::now();
        let common = intersect_tokens(&[&tokens_a, &tokens_b]);
        let intersect_tokens_s = secs(t);
        debug_assert_eq!(common.len(), ids - ids / 2);

        PsiThroughput {
            threads,
            ids,
            blind_per_s: ids as f64 / blind_s,
            reblind_per_s: ids as f64 / reblind_s,
            tokens_per_s: ids as f64 / tokens_s,
            align_ecdh_s,
            intersect_tokens_s,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ids_are_distinct_codes_and_overlap_as_asked() {
        let a = synthetic_ids(0, 1000);
        let b = synthetic_ids(500, 1000);
        let mut all: Vec<[u8; 18]> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1500);
        assert!(a.iter().all(|id| id.iter().all(u8::is_ascii_alphanumeric)));
    }

    #[test]
    fn measurement_runs_and_counts_the_overlap() {
        // Small and untimed: only checks that the measurement completes.
        let m = measure_throughput(600, 2).expect("pool");
        assert_eq!(m.ids, 600);
        assert!(m.ecdh_two_party_seconds(1, 1) > 0.0);
        assert!(m.server_aided_two_party_seconds(1, 1) > 0.0);
    }
}
