//! Accuracy and speed comparison runners for fedcredit.
//!
//! - [`accuracy`]: `fedcredit bench accuracy` — trains the `logistic`, `scorecard` and
//!   `gbdt` models centralized on all columns and on each party's columns alone, and
//!   reports AUC, KS and log loss on the shared stratified test split.
//! - [`demo`]: `fedcredit demo` — three banks federated over processes, plus the vertical
//!   preview.
//! - [`horizontal`]: `fedcredit bench accuracy --mode horizontal` — one file per bank;
//!   adds a real `federated` run over processes with mutual TLS.
//! - [`reference`]: the committed reference numbers (scikit-learn, LightGBM, XGBoost)
//!   in `benches/reference/*.json`, read for comparisons.
//!
//! The runners report what they do to an [`Observer`]: a line per step, and the progress of
//! every model fit (solver iterations, trees), which the CLI shows as progress bars.
//!
//! Criterion micro-benchmarks live beside the crates they measure (`models/benches/`,
//! `crypto/benches/`), which need no polars.

pub mod accuracy;
pub mod demo;
pub mod horizontal;
pub mod reference;
pub mod report;
pub mod serving;
pub mod vertical;

use fedcredit_models::FitProgress;

/// What a runner reports while it works. Any `FnMut(&str)` is an observer that takes the lines
/// and ignores fit progress.
pub trait Observer {
    /// One line about the run (loading a file, starting a federation, …).
    fn line(&mut self, line: &str);
    /// A model fit starts: `model` (`logistic`, `scorecard`, `gbdt`) on `setting`.
    fn fit_started(&mut self, _model: &str, _setting: &str) {}
    /// The running fit reports progress (a solver iteration, a tree).
    fn fit_progress(&mut self, _progress: FitProgress) {}
    /// The running fit ended (successfully or not).
    fn fit_finished(&mut self) {}
}

impl<F: FnMut(&str)> Observer for F {
    fn line(&mut self, line: &str) {
        self(line);
    }
}

/// Lends an observer to a nested runner (the demo runs the horizontal and vertical runners).
#[derive(Debug)]
pub struct Forward<'a, O: ?Sized>(pub &'a mut O);

impl<O: Observer + ?Sized> Observer for Forward<'_, O> {
    fn line(&mut self, line: &str) {
        self.0.line(line);
    }
    fn fit_started(&mut self, model: &str, setting: &str) {
        self.0.fit_started(model, setting);
    }
    fn fit_progress(&mut self, progress: FitProgress) {
        self.0.fit_progress(progress);
    }
    fn fit_finished(&mut self) {
        self.0.fit_finished();
    }
}

/// Errors from the benchmark runners.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Loading or validating input data failed.
    #[error(transparent)]
    Data(#[from] fedcredit_datasets::DataError),
    /// Fitting or scoring a model failed.
    #[error("{model} on {setting}: {source}")]
    Model {
        /// Model name.
        model: String,
        /// Setting (centralized or party:<stem>).
        setting: String,
        /// The model error.
        source: fedcredit_models::ModelError,
    },
    /// The run was configured wrongly; says how.
    #[error("{0}")]
    Config(String),
    /// A reference file cannot be read.
    #[error("reference file {path}: {message}")]
    Reference {
        /// The reference file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}
