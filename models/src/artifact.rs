//! Versioned, self-describing model artifacts (JSON).
//!
//! An artifact is an envelope around one fitted model:
//!
//! ```json
//! { "format": "fedcredit-model", "format_version": 1, "kind": "gbdt",
//!   "features": [ { "name": "x0", "kind": { "type": "numeric" } }, … ],
//!   "model": { … }, "metadata": { "trained_on": "…" }, "metrics": { "auc": 0.78 } }
//! ```
//!
//! `format_version` is bumped when a model's JSON changes shape; [`ModelArtifact::from_json`]
//! reads every version up to [`FORMAT_VERSION`] (older versions are upgraded in
//! [`upgrade`]) and refuses newer ones with a message that says so, instead of
//! misreading them. The feature list travels with the model, so scoring checks the
//! columns it is given by name.

use std::collections::BTreeMap;

use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::gbdt::GbdtModel;
use crate::logistic::LogisticPipeline;
use crate::scorecard::Scorecard;
use crate::{FeatureSpec, Features, ModelError};

/// The `format` tag every artifact carries.
pub const FORMAT: &str = "fedcredit-model";
/// The newest format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A fitted model of any kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "model", rename_all = "snake_case")]
pub enum Model {
    /// LR on encoded features.
    Logistic(LogisticPipeline),
    /// LR on WOE bins, scaled to points.
    Scorecard(Scorecard),
    /// Histogram gradient boosting.
    Gbdt(GbdtModel),
}

impl Model {
    /// The kind's name as written in the artifact.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Logistic(_) => "logistic",
            Model::Scorecard(_) => "scorecard",
            Model::Gbdt(_) => "gbdt",
        }
    }

    /// P(default) for each row.
    ///
    /// # Errors
    /// The model's error when the columns do not match.
    pub fn predict_proba(&self, features: &Features) -> Result<Array1<f64>, ModelError> {
        match self {
            Model::Logistic(m) => m.predict_proba(features),
            Model::Scorecard(m) => m.predict_proba(features),
            Model::Gbdt(m) => m.predict_proba(features),
        }
    }
}

/// A model with its envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version it was written with.
    pub format_version: u32,
    /// The model and its kind.
    #[serde(flatten)]
    pub model: Model,
    /// The columns the model expects, in order.
    pub features: Vec<FeatureSpec>,
    /// Free-form provenance: data files, parties, job id, library version.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Evaluation metrics recorded at training time.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl ModelArtifact {
    /// Wraps a fitted model.
    pub fn new(model: Model, features: Vec<FeatureSpec>) -> Self {
        let mut metadata = BTreeMap::new();
        metadata
            .insert("library".into(), format!("fedcredit-models {}", env!("CARGO_PKG_VERSION")));
        Self {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            model,
            features,
            metadata,
            metrics: BTreeMap::new(),
        }
    }

    /// Serializes to pretty JSON.
    ///
    /// # Errors
    /// [`ModelError::Artifact`] if a value cannot be represented (for example a non-finite number).
    pub fn to_json(&self) -> Result<String, ModelError> {
        serde_json::to_string_pretty(self).map_err(|e| ModelError::Artifact(e.to_string()))
    }

    /// Reads an artifact of any supported version.
    ///
    /// # Errors
    /// [`ModelError::Artifact`] for a foreign format, a newer version, or malformed JSON (with line and column).
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Artifact(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(ModelError::Artifact(format!(
                "`format` is {format:?}, expected {FORMAT:?}: not a fedcredit model"
            )));
        }
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ModelError::Artifact("missing `format_version`".into()))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(ModelError::Artifact(format!(
                "format_version {version} is newer than this build reads ({FORMAT_VERSION}); upgrade fedcredit"
            )));
        }
        let value = upgrade(value, version as u32)?;
        serde_json::from_value(value).map_err(|e| ModelError::Artifact(e.to_string()))
    }

    /// P(default) for each row, after checking the columns by name.
    ///
    /// # Errors
    /// [`ModelError::Shape`] naming the first column that differs.
    pub fn predict_proba(&self, features: &Features) -> Result<Array1<f64>, ModelError> {
        if features.specs.len() != self.features.len() {
            return Err(ModelError::Shape(format!(
                "model expects {} columns, got {}",
                self.features.len(),
                features.specs.len()
            )));
        }
        for (i, (want, got)) in self.features.iter().zip(&features.specs).enumerate() {
            if want.name != got.name {
                return Err(ModelError::Shape(format!(
                    "column {i} is `{}`, the model expects `{}`",
                    got.name, want.name
                )));
            }
        }
        self.model.predict_proba(features)
    }
}

/// Brings an older artifact's JSON to the current shape.
///
/// Version 1 is the first; each later version adds one arm here.
///
/// # Errors
/// [`ModelError::Artifact`] for versions that never existed.
pub fn upgrade(value: serde_json::Value, version: u32) -> Result<serde_json::Value, ModelError> {
    match version {
        1 => Ok(value),
        v => Err(ModelError::Artifact(format!("unknown format_version {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;
    use crate::gbdt::{self, GbdtParams};
    use crate::logistic::LogisticParams;
    use crate::preprocess::EncoderParams;
    use crate::scorecard::ScorecardParams;
    use ndarray::Array2;
    use rand::RngExt;
    use rand::SeedableRng;

    fn toy() -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 400;
        let x = Array2::from_shape_fn((n, 3), |(_, j)| {
            if j == 2 { f64::from(rng.random_range(0..3u8)) } else { rng.random_range(-2.0..2.0) }
        });
        let y = Array1::from_shape_fn(n, |i| {
            let z = 1.5 * x[[i, 0]] - x[[i, 1]] + 0.5 * x[[i, 2]];
            if z + rng.random_range(-1.0..1.0) > 0.0 { 1.0 } else { 0.0 }
        });
        let specs = vec![
            FeatureSpec::numeric("a"),
            FeatureSpec::numeric("b"),
            FeatureSpec::categorical(
                "sector",
                vec!["food".into(), "retail".into(), "steel".into()],
            ),
        ];
        Dataset::new(Features::new(specs, x).unwrap(), y).unwrap()
    }

    fn round_trip(model: Model, data: &Dataset) {
        let before = model.predict_proba(&data.features).unwrap();
        let art = ModelArtifact::new(model, data.features.specs.clone());
        let json = art.to_json().unwrap();
        let back = ModelArtifact::from_json(&json).unwrap();
        assert_eq!(back.model.kind(), art.model.kind());
        let after = back.predict_proba(&data.features).unwrap();
        for (a, b) in before.iter().zip(after.iter()) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn every_kind_round_trips_and_predicts_identically() {
        let data = toy();
        let lr =
            LogisticPipeline::fit(&data, &EncoderParams::default(), &LogisticParams::default())
                .unwrap();
        round_trip(Model::Logistic(lr), &data);
        let sc = Scorecard::fit(&data, &ScorecardParams::default()).unwrap();
        round_trip(Model::Scorecard(sc), &data);
        let params = GbdtParams { n_trees: 10, ..GbdtParams::default() };
        let gb = gbdt::fit(&data, None, &params).unwrap();
        round_trip(Model::Gbdt(gb), &data);
    }

    #[test]
    fn foreign_newer_and_malformed_artifacts_are_refused() {
        let err = ModelArtifact::from_json("{\"format\":\"onnx\"}").unwrap_err().to_string();
        assert!(err.contains("not a fedcredit model"), "{err}");
        let err =
            ModelArtifact::from_json("{\"format\":\"fedcredit-model\",\"format_version\":99}")
                .unwrap_err()
                .to_string();
        assert!(err.contains("newer"), "{err}");
        let err = ModelArtifact::from_json("{\"format\":").unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn scoring_checks_columns_by_name() {
        let data = toy();
        let gb =
            gbdt::fit(&data, None, &GbdtParams { n_trees: 2, ..GbdtParams::default() }).unwrap();
        let art = ModelArtifact::new(Model::Gbdt(gb), data.features.specs.clone());
        let swapped = data.features.select_columns(&[1, 0, 2]);
        let err = art.predict_proba(&swapped).unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("`a`"), "{err}");
    }
}
