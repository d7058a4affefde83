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
//! Criterion micro-benchmarks live in `benches/benches/`.

pub mod accuracy;
pub mod demo;
pub mod horizontal;
pub mod reference;

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
