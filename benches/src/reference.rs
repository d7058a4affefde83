//! The committed reference numbers, produced once by `benches/reference/make_reference.py`
//! with scikit-learn, LightGBM and XGBoost; CI reads them and never needs Python.
//!
//! `default_credit.json` holds the references on the default_credit files; each
//! `applications_*.json` those on a generated application table, whose generator settings it
//! records ([`Reference::generator`]) so a test can regenerate the identical table.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::BenchError;

/// One reference result.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceRow {
    /// `logistic`, `binned_lr`, `woe_lr`, `lightgbm`, `lightgbm_default`, `xgboost`.
    pub model: String,
    /// `centralized` or `party:<file stem>`.
    pub setting: String,
    /// Test AUC.
    pub auc: f64,
    /// Test KS.
    pub ks: f64,
    /// Training wall seconds.
    #[serde(default)]
    pub train_seconds: f64,
}

/// Reference timings for the speed bars.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceTiming {
    /// LightGBM fit seconds (median, one thread) on the joined train split.
    pub lightgbm_fit_seconds_median: f64,
    /// XGBoost fit seconds (median, one thread) on the joined train split.
    pub xgboost_fit_seconds_median: Option<f64>,
    /// scikit-learn logistic regression fit seconds (median, one thread), when timed.
    #[serde(default)]
    pub sklearn_logistic_fit_seconds_median: Option<f64>,
    /// Rows in the timed training set.
    pub rows: usize,
    /// Features in the timed training set.
    pub features: usize,
    /// Trees fitted.
    pub n_trees: usize,
}

/// The horizontal-setting references (pooled homo files, evaluated on the homo test file).
#[derive(Debug, Clone, Deserialize)]
pub struct HorizontalReference {
    /// Training files.
    pub train: Vec<String>,
    /// Test file.
    pub test: String,
    /// Results.
    pub results: Vec<ReferenceRow>,
}

/// The settings of `fedcredit data applications` that made a reference's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct GeneratorSettings {
    /// Rows.
    pub rows: usize,
    /// Numeric columns.
    pub numeric: usize,
    /// Text columns.
    pub text: usize,
    /// Seed.
    pub seed: u64,
}

/// The split a reference used.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceSplit {
    /// Test fraction.
    pub test_fraction: f64,
    /// Seed.
    pub seed: u64,
    /// Test rows.
    pub n_test: usize,
    /// SHA-256 (hex) of the test ids sorted bytewise and joined with `\n`.
    pub test_ids_sha256: String,
}

/// A whole reference file.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// Dataset name.
    pub dataset: String,
    /// For a generated table: how it was generated.
    #[serde(default)]
    pub generator: Option<GeneratorSettings>,
    /// The split.
    pub split: ReferenceSplit,
    /// Results on the fedcredit split.
    pub results: Vec<ReferenceRow>,
    /// Timings.
    pub timing: ReferenceTiming,
    /// Horizontal references.
    pub horizontal: Option<HorizontalReference>,
}

impl Reference {
    /// Reads a reference file.
    ///
    /// # Errors
    /// [`BenchError::Reference`] when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let err = |message: String| BenchError::Reference { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The committed default_credit reference, by path from this crate.
    pub fn default_credit_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/default_credit.json")
    }

    /// A committed reference by file stem (`applications_50k` reads
    /// `reference/applications_50k.json`).
    pub fn path_of(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("reference").join(format!("{name}.json"))
    }

    /// The result for `model` in `setting`.
    pub fn get(&self, model: &str, setting: &str) -> Option<&ReferenceRow> {
        self.results.iter().find(|r| r.model == model && r.setting == setting)
    }
}
