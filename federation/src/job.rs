//! A training job as a data scientist writes it (`job.toml`) and as it travels to every party.
//!
//! Unknown keys are rejected at every level, so a typo never silently falls back to a default.
//! The spec names columns, never rows: it is safe to show to every party and to store.

use serde::{Deserialize, Serialize};

use crate::ids::PartyId;

/// Why a job spec cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobSpecError {
    /// Not valid TOML for a job (unknown key, wrong type, …); the message has line and column.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range; names the key.
    #[error("`{key}` {reason}")]
    Invalid {
        /// The offending key, dotted (`data.validation_fraction`).
        key: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Which columns of each party's table a job reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The id column (enterprise code); never leaves the party in a horizontal job.
    pub id: String,
    /// The 0/1 default label.
    pub label: String,
    /// Feature columns, in order; empty = every column except id and label (then every
    /// party must have the same columns).
    #[serde(default)]
    pub features: Vec<String>,
    /// Share of each party's rows held out (stratified) for federated validation metrics.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// Seed of the hold-out split and of any sampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_validation_fraction() -> f64 {
    0.2
}

fn default_seed() -> u64 {
    42
}

/// Secure-aggregation settings of a job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecAggSpec {
    /// Fixed-point resolution `2^-frac_bits` of every aggregated value.
    #[serde(default = "default_frac_bits")]
    pub frac_bits: u32,
    /// Shamir threshold; absent = majority of the round's parties.
    #[serde(default)]
    pub threshold: Option<usize>,
    /// SecAgg+ neighbours per party; absent = complete graph.
    #[serde(default)]
    pub degree: Option<usize>,
}

fn default_frac_bits() -> u32 {
    24
}

impl Default for SecAggSpec {
    fn default() -> Self {
        Self { frac_bits: default_frac_bits(), threshold: None, degree: None }
    }
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name for people; the coordinator assigns the job id.
    #[serde(default)]
    pub name: String,
    /// The parties that train, by certificate name.
    pub parties: Vec<PartyId>,
    /// Fewest parties a round may run with; absent = all of `parties`. Lower it to let a job
    /// go on when a party drops out for good.
    #[serde(default)]
    pub min_parties: Option<usize>,
    /// Seconds each round phase waits for the parties before closing without the late ones;
    /// absent = the coordinator's `round_timeout_secs`.
    #[serde(default)]
    pub phase_timeout_secs: Option<u64>,
    /// Seconds the job waits for a party that has not joined yet (at the start) or that
    /// disconnected while a phase waits for it (mid-job) before going on without it with at
    /// least `min_parties`; absent = the coordinator's `grace_secs`.
    #[serde(default)]
    pub grace_secs: Option<u64>,
    /// Columns to read.
    pub data: DataSpec,
    /// The model to train.
    pub model: crate::horizontal::ModelSpec,
    /// Secure-aggregation settings.
    #[serde(default)]
    pub secagg: SecAggSpec,
}

impl JobSpec {
    /// Parses and validates `job.toml` text.
    ///
    /// # Errors
    /// [`JobSpecError`] naming the key.
    pub fn from_toml(text: &str) -> Result<Self, JobSpecError> {
        let spec: Self = toml::from_str(text).map_err(|e| JobSpecError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates the JSON form stored by the coordinator and sent to parties.
    ///
    /// # Errors
    /// [`JobSpecError`] naming the key.
    pub fn from_json(text: &str) -> Result<Self, JobSpecError> {
        let spec: Self =
            serde_json::from_str(text).map_err(|e| JobSpecError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        // A JobSpec holds only strings, numbers and options: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The fewest parties a round may run with.
    pub fn min_parties(&self) -> usize {
        self.min_parties.unwrap_or(self.parties.len())
    }

    /// Checks the values a parser cannot.
    ///
    /// # Errors
    /// [`JobSpecError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), JobSpecError> {
        let invalid = |key: &str, reason: String| JobSpecError::Invalid { key: key.into(), reason };
        if self.parties.len() < 2 {
            return Err(invalid(
                "parties",
                format!(
                    "lists {} parties; secure aggregation needs at least 2",
                    self.parties.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.parties {
            if p.0.is_empty() || p.0.len() > 64 {
                return Err(invalid("parties", format!("`{}` is not a party name", p.0)));
            }
            if !seen.insert(&p.0) {
                return Err(invalid("parties", format!("lists `{}` twice", p.0)));
            }
        }
        if let Some(m) = self.min_parties
            && !(2..=self.parties.len()).contains(&m)
        {
            return Err(invalid(
                "min_parties",
                format!(
                    "is {m}; must be between 2 and the number of parties ({})",
                    self.parties.len()
                ),
            ));
        }
        if self.phase_timeout_secs.is_some_and(|t| t == 0 || t > 3600) {
            return Err(invalid("phase_timeout_secs", "must be between 1 and 3600".into()));
        }
        if self.grace_secs.is_some_and(|t| t > 24 * 3600) {
            return Err(invalid("grace_secs", "must be at most 86400 (a day)".into()));
        }
        let f = self.data.validation_fraction;
        if !(0.0..0.9).contains(&f) {
            return Err(invalid(
                "data.validation_fraction",
                format!("is {f}; must be at least 0 and below 0.9"),
            ));
        }
        if self.data.id.is_empty() || self.data.label.is_empty() || self.data.id == self.data.label
        {
            return Err(invalid(
                "data",
                "needs distinct, non-empty `id` and `label` columns".into(),
            ));
        }
        if let Some(c) =
            self.data.features.iter().find(|c| **c == self.data.id || **c == self.data.label)
        {
            return Err(invalid("data.features", format!("lists `{c}`, the id or label column")));
        }
        if !(8..=40).contains(&self.secagg.frac_bits) {
            return Err(invalid("secagg.frac_bits", "must be between 8 and 40".into()));
        }
        self.model.validate().map_err(|(key, reason)| invalid(&format!("model.{key}"), reason))
    }
}
