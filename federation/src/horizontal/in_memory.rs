//! A whole horizontal training job in one process: a [`Trainer`] and one [`Participant`] per
//! bank, with every request answered by summing the parties' contributions either in plaintext
//! (fast, for tests and accuracy runs) or through a real secure-aggregation round
//! ([`crate::secagg::in_memory::run`], Bonawitz et al., CCS 2017). Both paths clip every
//! element to the request's `clip`, so they differ only by the fixed-point rounding.

use std::collections::BTreeMap;

use rand::CryptoRng;

use fedcredit_models::{Dataset, FeatureSpec};

use super::{Outcome, Participant, Progress, Request, TrainError, Trainer};
use crate::ids::{JobId, PartyId, RoundId};
use crate::job::JobSpec;
use crate::secagg::{RoundHeader, SecAggConfig};

/// The banks of an in-memory federation and how their vectors are summed.
#[derive(Debug)]
pub struct Federation {
    /// The parties, in roster order.
    pub parties: Vec<Participant>,
    /// Sum through secure aggregation (`true`) or in plaintext.
    pub secure: bool,
    /// Parties that sit out a given round (round number → parties), to test dropouts.
    pub absent: BTreeMap<u64, Vec<PartyId>>,
    round: u64,
}

impl Federation {
    /// Participants for `parties` (`(id, training rows, validation rows)`).
    ///
    /// # Errors
    /// [`TrainError::Data`] as [`Participant::new`].
    pub fn new(
        spec: &JobSpec,
        parties: Vec<(PartyId, Dataset, Option<Dataset>)>,
        secure: bool,
    ) -> Result<Self, TrainError> {
        let parties = parties
            .into_iter()
            .map(|(id, train, valid)| Participant::new(id, spec, Some(train), valid))
            .collect::<Result<_, _>>()?;
        Ok(Self { parties, secure, absent: BTreeMap::new(), round: 0 })
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.round
    }

    /// Answers the trainer's next request: runs one round, or returns the outcome.
    ///
    /// # Errors
    /// Any [`TrainError`] of the trainer or a party; [`TrainError::Protocol`] when a secure
    /// round fails.
    pub fn step<R: CryptoRng + ?Sized>(
        &mut self,
        trainer: &mut Trainer,
        rng: &mut R,
    ) -> Result<Option<Outcome>, TrainError> {
        let agg = match trainer.next_request()? {
            Request::Finished(out) => return Ok(Some(*out)),
            Request::Aggregate(a) => a,
        };
        let absent = self.absent.get(&self.round).cloned().unwrap_or_default();
        let mut updates = BTreeMap::new();
        for p in &mut self.parties {
            if absent.contains(p.me()) {
                continue;
            }
            let mut v = p.contribute(&agg.task)?;
            if v.len() != agg.vector_len {
                return Err(TrainError::Protocol(format!(
                    "{} contributed {} elements for `{}`, expected {}",
                    p.me(),
                    v.len(),
                    agg.what,
                    agg.vector_len
                )));
            }
            for x in &mut v {
                *x = x.clamp(-agg.clip, agg.clip);
            }
            updates.insert(p.me().clone(), v);
        }
        let (sum, contributors) = if self.secure {
            let spec = trainer.spec();
            let config = SecAggConfig {
                vector_len: agg.vector_len,
                clip: agg.clip,
                frac_bits: spec.secagg.frac_bits,
                threshold: spec.secagg.threshold,
                degree: spec.secagg.degree,
            };
            let header = RoundHeader {
                job: JobId(if spec.name.is_empty() { "job".into() } else { spec.name.clone() }),
                round: RoundId(self.round),
                attempt: 0,
            };
            let run = crate::secagg::in_memory::run(header, config, &updates, &[], 3, rng);
            let out = run.outcome.map_err(|e| {
                TrainError::Protocol(format!("secure aggregation of `{}` failed: {e}", agg.what))
            })?;
            (out.sum, out.contributors)
        } else {
            let mut sum = vec![0.0; agg.vector_len];
            for v in updates.values() {
                for (s, x) in sum.iter_mut().zip(v) {
                    *s += x;
                }
            }
            (sum, updates.keys().cloned().collect())
        };
        trainer.absorb(&sum, &contributors)?;
        self.round += 1;
        Ok(None)
    }
}

/// Runs a whole job in memory and returns its outcome and the progress after every round.
///
/// # Errors
/// Any [`TrainError`] of the trainer or a party.
pub fn train<R: CryptoRng + ?Sized>(
    spec: &JobSpec,
    features: Vec<FeatureSpec>,
    parties: Vec<(PartyId, Dataset, Option<Dataset>)>,
    secure: bool,
    rng: &mut R,
) -> Result<(Outcome, Vec<Progress>), TrainError> {
    let mut trainer = Trainer::new(spec, features)?;
    let mut fed = Federation::new(spec, parties, secure)?;
    let mut progress = Vec::new();
    loop {
        if let Some(out) = fed.step(&mut trainer, rng)? {
            return Ok((out, progress));
        }
        progress.push(trainer.progress());
    }
}
