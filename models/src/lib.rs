//! Credit-risk models as pure compute: no I/O, no knowledge of parties.
//!
//! - [`data`]: the feature matrix every model reads.
//! - [`logistic`]: logistic regression (L2 / L1 / elastic net, L-BFGS, Newton), with the
//!   loss and gradient kernels public for the federated trainers; [`preprocess`]: its encoder
//!   (imputation, z-scores, one-hot with rare levels pooled) on a dense-plus-sparse
//!   [`sparse::Design`].
//! - [`gbdt`]: second-order histogram gradient boosting (Chen & Guestrin 2016; Ke et al. 2017),
//!   with the histogram-build and split-finding kernels public for the federated trainers.
//! - [`binning`], [`scorecard`]: equal-frequency / monotone binning, WOE and IV, scorecards
//!   scaled to points (Siddiqi, "Credit Risk Scorecards") and reason codes.
//! - [`metrics`]: AUC, KS, Gini, log loss, Brier, lift and gain, population stability index.
//! - [`artifact`]: versioned, self-describing JSON model artifacts.
//! - [`progress`]: the progress reports long fits send to a caller's hook.
//! - [`testdata`]: seeded generators of realistic tables for tests, benchmarks and references.

pub mod artifact;
pub mod binning;
pub mod data;
pub mod gbdt;
pub mod logistic;
pub mod metrics;
pub mod preprocess;
pub mod progress;
pub mod scorecard;
pub mod sparse;
pub mod testdata;

pub use data::{Dataset, FeatureKind, FeatureSpec, Features};
pub use progress::FitProgress;

/// Errors from model fitting, scoring and artifact handling.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Inputs of incompatible shapes.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Input values a model cannot use (for example a label that is not 0/1).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A hyper-parameter out of its range; names the parameter.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name as in the config.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A model artifact that cannot be read.
    #[error("model artifact: {0}")]
    Artifact(String),
}
