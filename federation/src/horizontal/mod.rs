//! Horizontal training: several banks hold the same columns about different enterprises and
//! train one model, with every exchange a secure sum (Bonawitz et al., CCS 2017).
//!
//! The coordinator runs a [`Trainer`]: it asks for one [`Request::Aggregate`] at a time, the
//! runtime runs a secure-aggregation round in which every party contributes
//! [`Participant::contribute`] for the request's [`Task`], and the trainer absorbs the decoded
//! sum. The trainer never sees one bank's contribution, only sums; a participant never sees
//! another bank's anything. Both sides are sans-IO and serializable: the coordinator stores the
//! trainer after every absorbed sum ([`Trainer::checkpoint`]: a small state and an append-only
//! log of finished trees) and resumes from it after a crash. Over the wire
//! ([`conductor`], [`role`]) a bank keeps the model between steps and gets only the model
//! updates it lacks ([`sync`]); its own checkpoint holds what it must remember to refuse a
//! deviating coordinator (the steps and contributions it helped unmask), so a restarted bank
//! resumes with its policy and is sent the model again.
//!
//! Algorithms: [`bench`] (seeded random vectors, for `fedcredit bench secagg`), [`gbdt`]
//! (histogram GBDT), [`lr`] (logistic regression: Newton on secure sums, FedAvg, FedProx),
//! [`scorecard`] (WOE bins from pooled counts, then [`lr`]), with the shared preprocessing in [`prep`] (counts, quantile sketch,
//! moments) and validation metrics in [`evaluate`]. [`in_memory`] runs a whole job in one
//! process, with plaintext or real secure sums.

pub mod bench;
pub mod conductor;
pub mod evaluate;
pub mod gbdt;
pub mod in_memory;
pub mod lr;
pub mod prep;
pub mod role;
pub mod scorecard;
pub mod sync;

pub use crate::protocol::{Outcome, Progress};

use fedcredit_models::{Dataset, FeatureSpec, ModelError};
use serde::{Deserialize, Serialize};

use crate::ids::PartyId;
use crate::job::JobSpec;

/// Why training cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A model kernel refused its input.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The job spec cannot be used for this algorithm.
    #[error("job spec: {0}")]
    Spec(String),
    /// A task or sum does not fit the state (wrong length, unexpected task, corrupt checkpoint).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The party's data does not fit the job (names the column or the reason).
    #[error("data: {0}")]
    Data(String),
}

/// The model a job trains, with its hyper-parameters (`[model]` in `job.toml`, `kind = …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// Secure sums of seeded random vectors: measures the runtime, trains nothing.
    SecaggBench(bench::BenchSpec),
    /// Logistic regression on encoded features.
    Logistic(lr::LogisticSpec),
    /// WOE scorecard.
    Scorecard(scorecard::ScorecardSpec),
    /// Histogram gradient-boosted trees.
    Gbdt(gbdt::GbdtSpec),
    /// Streams a payload from one party to another through the coordinator: measures the
    /// relay, trains nothing.
    RelayBench(crate::relay_bench::RelayBenchSpec),
    /// Vertical: align the parties' rows by PSI and report the intersection size.
    Align(crate::vertical::AlignSpec),
    /// Vertical: federated binning with WOE and IV of every party's features.
    Woe(crate::vertical::woe::WoeSpec),
}

impl ModelSpec {
    /// Checks ranges; `Err((key, reason))` names the key inside `[model]`.
    ///
    /// # Errors
    /// The first out-of-range key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            ModelSpec::SecaggBench(s) => s.validate(),
            ModelSpec::Gbdt(s) => s.validate(),
            ModelSpec::Logistic(s) => s.solver().validate(),
            ModelSpec::Scorecard(s) => s.validate(),
            ModelSpec::RelayBench(s) => s.validate(),
            ModelSpec::Align(_) => Ok(()),
            ModelSpec::Woe(s) => s.validate(),
        }
    }

    /// Whether the model exists only in vertical jobs (`[vertical]` in `job.toml`).
    pub fn is_vertical(&self) -> bool {
        matches!(self, ModelSpec::Align(_) | ModelSpec::Woe(_))
    }

    /// Whether a vertical job can train it.
    pub fn trains_vertically(&self) -> bool {
        self.is_vertical()
            || matches!(self, ModelSpec::Logistic(_) | ModelSpec::Scorecard(_) | ModelSpec::Gbdt(_))
    }

    /// Whether participants need their table for this model.
    pub fn needs_data(&self) -> bool {
        !matches!(self, ModelSpec::SecaggBench(_) | ModelSpec::RelayBench(_))
    }

    /// Whether this is a benchmark of the runtime rather than a model (hidden from model-kind
    /// lists meant for people).
    pub fn is_benchmark(&self) -> bool {
        matches!(self, ModelSpec::SecaggBench(_) | ModelSpec::RelayBench(_))
    }

    /// Whether rounds run without secure aggregation: only the plaintext benchmark baseline.
    pub fn plaintext(&self) -> bool {
        matches!(self, ModelSpec::SecaggBench(b) if b.plaintext)
    }

    /// The model kind as written in `job.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::SecaggBench(_) => "secagg_bench",
            ModelSpec::Gbdt(_) => "gbdt",
            ModelSpec::Logistic(_) => "logistic",
            ModelSpec::Scorecard(_) => "scorecard",
            ModelSpec::RelayBench(_) => "relay_bench",
            ModelSpec::Align(_) => "align",
            ModelSpec::Woe(_) => "woe",
        }
    }
}

/// What a party computes for one secure-aggregation round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// A seeded random vector ([`bench::bench_vector`]).
    BenchVector(bench::BenchTask),
    /// Rows, positives, missing cells and value exponents ([`prep`]).
    Census(prep::CensusTask),
    /// Grid-cell counts by label ([`prep`]).
    Grid(prep::GridTask),
    /// Scaled feature sums or squared deviations ([`prep`]).
    Moments(prep::MomentsTask),
    /// Validation buckets for the current model ([`evaluate`]).
    Evaluate(evaluate::EvalTask),
    /// Gradient histograms of some tree nodes ([`gbdt`]).
    Gbdt(Box<gbdt::GbdtTask>),
    /// A logistic-regression round ([`lr`]).
    Logistic(Box<lr::LrTask>),
    /// Events and non-events per scorecard bin ([`scorecard`]).
    BinCounts(scorecard::BinCountsTask),
}

impl Task {
    /// The task's tag, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Task::BenchVector(_) => "bench_vector",
            Task::Census(_) => "census",
            Task::Grid(_) => "grid",
            Task::Moments(_) => "moments",
            Task::Evaluate(_) => "evaluate",
            Task::Gbdt(_) => "gbdt",
            Task::Logistic(_) => "logistic",
            Task::BinCounts(_) => "bin_counts",
        }
    }
}

/// One secure sum the trainer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// What each party computes.
    pub task: Task,
    /// Elements of each party's vector.
    pub vector_len: usize,
    /// Every element is clipped to `[-clip, clip]` before encoding; the trainer sets it so
    /// that no honest contribution is clipped.
    pub clip: f64,
    /// For people: "tree 3, level 2".
    pub what: String,
}

/// What the trainer asks for next.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Run one secure-aggregation round for this task.
    Aggregate(Aggregate),
    /// Training is over.
    Finished(Box<Outcome>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Bench(bench::BenchTrainer),
    Gbdt(Box<gbdt::GbdtTrainer>),
    Logistic(Box<lr::LogisticTrainer>),
    Scorecard(Box<scorecard::ScorecardTrainer>),
}

/// The largest clip (a power of two) whose `n`-party sum fits the fixed-point ring with
/// `frac_bits` fractional bits, capped at 2^40. Counts, gradient sums and scaled statistics
/// are at most a party's rows (times a small constant), so this bounds the rows per party.
pub fn count_clip(n_parties: usize, frac_bits: u32) -> f64 {
    let mut k = 40i32;
    while k > 0 {
        let clip = 2f64.powi(k);
        if fedcredit_crypto::FixedPoint::for_sum(n_parties.max(1), clip, frac_bits).is_ok() {
            return clip;
        }
        k -= 1;
    }
    1.0
}

/// The coordinator's side of a horizontal job. Serializable: see [`Trainer::checkpoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trainer {
    spec: JobSpec,
    features: Vec<FeatureSpec>,
    state: State,
}

impl Trainer {
    /// Starts training a job on columns `features` (every party's table has them, with the
    /// same kinds and categorical levels: the runtime checks the parties' schemas first).
    ///
    /// # Errors
    /// [`TrainError::Spec`] when the spec does not suit the algorithm.
    pub fn new(spec: &JobSpec, features: Vec<FeatureSpec>) -> Result<Self, TrainError> {
        spec.validate().map_err(|e| TrainError::Spec(e.to_string()))?;
        let clip = count_clip(spec.parties.len(), spec.secagg.frac_bits);
        let state = match &spec.model {
            ModelSpec::SecaggBench(b) => State::Bench(bench::BenchTrainer::new(b)),
            ModelSpec::Gbdt(g) => {
                State::Gbdt(Box::new(gbdt::GbdtTrainer::new(g, features.clone(), clip)))
            }
            ModelSpec::Logistic(l) => {
                State::Logistic(Box::new(lr::LogisticTrainer::new(l, features.clone(), clip)))
            }
            ModelSpec::RelayBench(_) => {
                return Err(TrainError::Spec("a relay benchmark trains no model".into()));
            }
            ModelSpec::Align(_) | ModelSpec::Woe(_) => {
                return Err(TrainError::Spec(format!(
                    "`{}` is a vertical model; the job needs a [vertical] section",
                    spec.model.kind()
                )));
            }
            ModelSpec::Scorecard(c) => State::Scorecard(Box::new(
                scorecard::ScorecardTrainer::new(c, features.clone(), clip),
            )),
        };
        Ok(Self { spec: spec.clone(), features, state })
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// The columns the model reads.
    pub fn features(&self) -> &[FeatureSpec] {
        &self.features
    }

    /// The next secure sum needed, or the outcome. Asking again before [`Trainer::absorb`]
    /// returns the same request.
    ///
    /// # Errors
    /// [`TrainError`] when the algorithm cannot go on (e.g. a kernel refused the sums).
    pub fn next_request(&mut self) -> Result<Request, TrainError> {
        match &mut self.state {
            State::Bench(t) => t.next_request(),
            State::Gbdt(t) => t.next_request(),
            State::Logistic(t) => t.next_request(),
            State::Scorecard(t) => t.next_request(),
        }
    }

    /// Takes the decoded secure sum for the last request; `contributors` are the parties whose
    /// vectors are in it.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] when the sum does not fit the request.
    pub fn absorb(&mut self, sum: &[f64], contributors: &[PartyId]) -> Result<(), TrainError> {
        match &mut self.state {
            State::Bench(t) => t.absorb(sum, contributors),
            State::Gbdt(t) => t.absorb(sum, contributors),
            State::Logistic(t) => t.absorb(sum, contributors),
            State::Scorecard(t) => t.absorb(sum, contributors),
        }
    }

    /// Where training stands.
    pub fn progress(&self) -> Progress {
        match &self.state {
            State::Bench(t) => t.progress(),
            State::Gbdt(t) => t.progress(),
            State::Logistic(t) => t.progress(),
            State::Scorecard(t) => t.progress(),
        }
    }

    /// The trainer's state without its log, and the log entries from `logged` on;
    /// [`Trainer::restore`] continues from the state and the whole log.
    pub fn checkpoint(&self, logged: usize) -> crate::protocol::Checkpoint {
        crate::protocol::Checkpoint {
            // The state holds only numbers, strings and model structs: serializing cannot fail.
            state: serde_json::to_vec(self).unwrap_or_default(),
            log: self.log_entries(logged),
        }
    }

    /// The append-only part of the state from entry `from` on: a GBDT's finished trees (the
    /// other models keep no log).
    pub fn log_entries(&self, from: usize) -> Vec<Vec<u8>> {
        match &self.state {
            State::Gbdt(t) => t.log_entries(from),
            _ => Vec::new(),
        }
    }

    /// Puts back the log left out of the state.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] on an entry that cannot be read, or a log for a model that
    /// keeps none.
    pub fn restore_log(&mut self, log: &[Vec<u8>]) -> Result<(), TrainError> {
        match &mut self.state {
            State::Gbdt(t) => t.restore_log(log),
            _ if log.is_empty() => Ok(()),
            _ => Err(TrainError::Protocol(format!(
                "a checkpoint log of {} entries for a model that keeps none",
                log.len()
            ))),
        }
    }

    /// The GBDT bin edges chosen from the federated sketch, once known (`None` for other
    /// models or before the sketch rounds).
    pub fn gbdt_edges(&self) -> Option<&[Vec<f64>]> {
        match &self.state {
            State::Gbdt(t) => t.edges(),
            _ => None,
        }
    }

    /// A trainer saved with [`Trainer::checkpoint`]: its state and its whole log.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] on bytes that are not a checkpoint.
    pub fn restore(state: &[u8], log: &[Vec<u8>]) -> Result<Self, TrainError> {
        let mut t: Self = serde_json::from_slice(state)
            .map_err(|e| TrainError::Protocol(format!("checkpoint cannot be read: {e}")))?;
        t.restore_log(log)?;
        Ok(t)
    }
}

/// A party's side of a horizontal job: its own rows, split into training and validation.
#[derive(Debug)]
pub struct Participant {
    me: PartyId,
    spec: JobSpec,
    train: Option<Dataset>,
    valid: Option<Dataset>,
    gbdt: Option<gbdt::GbdtCache>,
    lr: Option<lr::LrCache>,
}

impl Participant {
    /// A party with its training rows and (optionally) validation rows, already checked
    /// against the job's columns. Benchmark jobs take no data (`train = None`).
    ///
    /// # Errors
    /// [`TrainError::Data`] when the model needs data and there is none.
    pub fn new(
        me: PartyId,
        spec: &JobSpec,
        train: Option<Dataset>,
        valid: Option<Dataset>,
    ) -> Result<Self, TrainError> {
        if spec.model.needs_data() && train.is_none() {
            return Err(TrainError::Data(format!("{} has no training rows for the job", me)));
        }
        Ok(Self { me, spec: spec.clone(), train, valid, gbdt: None, lr: None })
    }

    /// This party.
    pub fn me(&self) -> &PartyId {
        &self.me
    }

    /// The vector this party puts into the secure sum for `task`.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] when the task does not belong to the job's model.
    pub fn contribute(&mut self, task: &Task) -> Result<Vec<f64>, TrainError> {
        if let (Task::BenchVector(t), ModelSpec::SecaggBench(_)) = (task, &self.spec.model) {
            return Ok(bench::bench_vector(t.seed, &self.me, t.round, t.dim));
        }
        let train = self.train.as_ref().ok_or_else(|| {
            TrainError::Data(format!("{} has no training rows for the job", self.me))
        })?;
        match (task, &self.spec.model) {
            (Task::Census(_), m) if m.needs_data() => Ok(prep::census_vector(train)),
            (Task::Grid(t), m) if m.needs_data() => prep::grid_vector(train, t),
            (Task::Moments(t), m) if m.needs_data() => prep::moments_vector(train, t),
            (Task::Evaluate(t), m) if m.needs_data() => {
                evaluate::eval_vector(self.valid.as_ref(), t)
            }
            (Task::Gbdt(t), ModelSpec::Gbdt(_)) => gbdt::contribute(&mut self.gbdt, train, t),
            (Task::Logistic(t), ModelSpec::Logistic(_) | ModelSpec::Scorecard(_)) => {
                lr::contribute(&mut self.lr, &self.me, train, t)
            }
            (Task::BinCounts(t), ModelSpec::Scorecard(_)) => scorecard::bin_counts_vector(train, t),
            (task, model) => Err(TrainError::Protocol(format!(
                "a `{}` task does not belong to a {} job",
                task.name(),
                model.kind()
            ))),
        }
    }
}
