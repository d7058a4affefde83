//! The committed reference numbers, produced once by `benches/reference/make_reference.py`
//! with scikit-learn, LightGBM and XGBoost; CI reads them and never needs Python.

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

/// A whole reference file.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// Dataset name.
    pub dataset: String,
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

    /// The result for `model` in `setting`.
    pub fn get(&self, model: &str, setting: &str) -> Option<&ReferenceRow> {
        self.results.iter().find(|r| r.model == model && r.setting == setting)
    }
}
