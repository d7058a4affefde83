//! A benchmark "model": rounds of secure sums of seeded random vectors, so the runtime can be
//! timed over gRPC between processes (`fedcredit bench secagg`) and its sums checked exactly.
//!
//! Each party's vector is uniform on `[-1, 1)`, drawn from ChaCha20 keyed by
//! SHA-256(`seed` ‖ party ‖ round): the coordinator can recompute every contributor's vector,
//! so the trainer records the largest difference between the secure sum and the plain sum.
//! These vectors are public by construction; nothing here is a secret.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Aggregate, Outcome, Progress, Request, Task, TrainError};
use crate::ids::PartyId;

/// `[model] kind = "secagg_bench"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// Elements per vector.
    pub dim: usize,
    /// Rounds to run.
    #[serde(default = "default_rounds")]
    pub rounds: u64,
    /// Seed of the vectors.
    #[serde(default)]
    pub seed: u64,
    /// Baseline: aggregate the same vectors unmasked (no keys, no shares) over the same
    /// transport. Participants accept this only for these public benchmark vectors.
    #[serde(default)]
    pub plaintext: bool,
}

fn default_rounds() -> u64 {
    10
}

impl BenchSpec {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=50_000_000).contains(&self.dim) {
            return Err(("dim".into(), format!("is {}; must be between 1 and 5e7", self.dim)));
        }
        if !(1..=100_000).contains(&self.rounds) {
            return Err(("rounds".into(), "must be between 1 and 100000".into()));
        }
        Ok(())
    }
}

/// The task of one benchmark round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BenchTask {
    /// Vector seed.
    pub seed: u64,
    /// Round number (part of the vector's seed).
    pub round: u64,
    /// Elements.
    pub dim: usize,
}

/// Party `party`'s vector of round `round`.
pub fn bench_vector(seed: u64, party: &PartyId, round: u64, dim: usize) -> Vec<f64> {
    let mut h = Sha256::new();
    h.update(b"fedcredit-bench-vector-v1");
    h.update(seed.to_le_bytes());
    h.update((party.0.len() as u64).to_le_bytes());
    h.update(party.0.as_bytes());
    h.update(round.to_le_bytes());
    let key: [u8; 32] = h.finalize().into();
    let mut rng = ChaCha20Rng::from_seed(key);
    (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// The coordinator's side of a benchmark job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchTrainer {
    spec: BenchSpec,
    done: u64,
    max_abs_error: f64,
    contributors_min: Option<usize>,
}

impl BenchTrainer {
    pub(crate) fn new(spec: &BenchSpec) -> Self {
        Self { spec: *spec, done: 0, max_abs_error: 0.0, contributors_min: None }
    }

    pub(crate) fn next_request(&mut self) -> Result<Request, TrainError> {
        if self.done >= self.spec.rounds {
            let mut metrics = std::collections::BTreeMap::new();
            metrics.insert("rounds".into(), self.done as f64);
            metrics.insert("max_abs_error".into(), self.max_abs_error);
            metrics.insert("min_contributors".into(), self.contributors_min.unwrap_or(0) as f64);
            return Ok(Request::Finished(Box::new(Outcome { artifact_json: None, metrics })));
        }
        Ok(Request::Aggregate(Aggregate {
            task: Task::BenchVector(BenchTask {
                seed: self.spec.seed,
                round: self.done,
                dim: self.spec.dim,
            }),
            vector_len: self.spec.dim,
            clip: 1.0,
            what: format!("round {}/{}", self.done + 1, self.spec.rounds),
        }))
    }

    pub(crate) fn absorb(
        &mut self,
        sum: &[f64],
        contributors: &[PartyId],
    ) -> Result<(), TrainError> {
        if sum.len() != self.spec.dim {
            return Err(TrainError::Protocol(format!(
                "sum has {} elements, expected {}",
                sum.len(),
                self.spec.dim
            )));
        }
        let mut expected = vec![0.0; self.spec.dim];
        for p in contributors {
            for (e, v) in
                expected.iter_mut().zip(bench_vector(self.spec.seed, p, self.done, self.spec.dim))
            {
                *e += v;
            }
        }
        let err = sum.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        self.max_abs_error = self.max_abs_error.max(err);
        self.contributors_min =
            Some(self.contributors_min.map_or(contributors.len(), |m| m.min(contributors.len())));
        self.done += 1;
        Ok(())
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            stage: format!("round {}/{}", self.done, self.spec.rounds),
            done: self.done,
            total: self.spec.rounds,
            loss: None,
            valid_auc: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_seeded_per_party_and_round() {
        let a = PartyId("a".into());
        let b = PartyId("b".into());
        assert_eq!(bench_vector(1, &a, 0, 8), bench_vector(1, &a, 0, 8));
        assert_ne!(bench_vector(1, &a, 0, 8), bench_vector(1, &b, 0, 8));
        assert_ne!(bench_vector(1, &a, 0, 8), bench_vector(1, &a, 1, 8));
        assert!(bench_vector(3, &a, 2, 1000).iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn trainer_records_the_error_of_the_sum() {
        let spec = BenchSpec { dim: 4, rounds: 1, seed: 7, plaintext: false };
        let mut t = BenchTrainer::new(&spec);
        let parties = [PartyId("a".into()), PartyId("b".into())];
        assert!(matches!(t.next_request().unwrap(), Request::Aggregate(_)));
        let mut sum = bench_vector(7, &parties[0], 0, 4);
        for (s, v) in sum.iter_mut().zip(bench_vector(7, &parties[1], 0, 4)) {
            *s += v + 1e-9;
        }
        t.absorb(&sum, &parties).unwrap();
        let Request::Finished(out) = t.next_request().unwrap() else { panic!("not finished") };
        assert!(out.metrics["max_abs_error"] < 2e-9 && out.metrics["max_abs_error"] > 0.0);
        assert!(t.absorb(&[0.0], &parties).is_err());
    }
}
