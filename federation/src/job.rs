//! A training job as a data scientist writes it (`job.toml`) and as it travels to every party.
//!
//! Unknown keys are rejected at every level, so a typo never silently falls back to a default.
//! The spec names columns, never rows: it is safe to show to every party and to store.
//!
//! Parse errors name the dotted key path and the line (`model.n_trees` (line 7): invalid type:
//! string "sixty", expected usize). serde reads the internally tagged `[model]` table through a
//! buffer that loses the values' positions, so `toml` reports its errors at the table header;
//! [`JobSpec::from_toml`] then finds the key by reading each `[model]` key alone with the
//! table's `kind` (the error's span and `toml`'s spanned document tree give the path elsewhere).

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
    /// Present for a vertical job (parties hold different columns about the same ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<crate::vertical::VerticalSpec>,
}

impl JobSpec {
    /// Parses and validates `job.toml` text.
    ///
    /// # Errors
    /// [`JobSpecError`] naming the key.
    pub fn from_toml(text: &str) -> Result<Self, JobSpecError> {
        let spec: Self = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates the JSON form stored by the coordinator and sent to parties.
    ///
    /// # Errors
    /// [`JobSpecError`] naming the key.
    pub fn from_json(text: &str) -> Result<Self, JobSpecError> {
        let spec: Self = serde_json::from_str(text)
            .map_err(|e| JobSpecError::Parse(hide_internal_kinds(&e.to_string())))?;
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
        self.check_secagg_policy().map_err(|(key, reason)| invalid(&key, reason))?;
        match &self.vertical {
            Some(v) => {
                v.validate(self)
                    .map_err(|(key, reason)| invalid(&format!("vertical.{key}"), reason))?;
                if !self.model.trains_vertically() {
                    return Err(invalid(
                        "model.kind",
                        format!(
                            "`{}` is not trained vertically; vertical jobs run `align`, `woe`, \
                             `logistic`, `scorecard` or `gbdt`",
                            self.model.kind()
                        ),
                    ));
                }
                if !self.data.features.is_empty() {
                    return Err(invalid(
                        "data.features",
                        "a vertical job reads every column of each party's table (except id and \
                         label); leave data.features out"
                            .into(),
                    ));
                }
                if self.min_parties.is_some_and(|m| m != self.parties.len()) {
                    return Err(invalid(
                        "min_parties",
                        "a vertical job needs every party (each holds columns of its own)".into(),
                    ));
                }
            }
            None if self.model.is_vertical() => {
                return Err(invalid(
                    "model.kind",
                    format!(
                        "`{}` runs in a vertical job: add a [vertical] section naming the label_holder",
                        self.model.kind()
                    ),
                ));
            }
            None => {}
        }
        let checked = match (&self.model, &self.vertical) {
            // A vertical GBDT samples rows at the label holder, which knows them all.
            (crate::horizontal::ModelSpec::Gbdt(g), Some(_)) => {
                g.params().validate().map_err(|e| match e {
                    fedcredit_models::ModelError::InvalidParam { name, reason } => {
                        (name.to_string(), reason)
                    }
                    other => ("gbdt".into(), other.to_string()),
                })
            }
            _ => self.model.validate(),
        };
        checked.map_err(|(key, reason)| invalid(&format!("model.{key}"), reason))
    }
}

impl JobSpec {
    /// The participants' own secure-aggregation policy (`crate::horizontal::role`), checked
    /// at submit for every roster size the job may run with, so a job they would refuse
    /// step after step is refused at once: a SecAgg+ degree below
    /// [`fedcredit_crypto::secagg::Graph::min_degree`] and a threshold that is not a majority
    /// of a neighbourhood (or larger than one).
    fn check_secagg_policy(&self) -> Result<(), (String, String)> {
        let n = self.parties.len();
        for r in self.min_parties().max(2)..=n {
            let degree = self.secagg.degree.map_or(r - 1, |k| k.min(r - 1));
            let min = fedcredit_crypto::secagg::Graph::min_degree(r);
            if degree < r - 1 && degree < min {
                return Err((
                    "secagg.degree".into(),
                    format!(
                        "is {degree}; a SecAgg+ graph of {r} parties needs at least {min} \
                         neighbours each (leave it out for the complete graph)"
                    ),
                ));
            }
            let m = degree + 1;
            if let Some(t) = self.secagg.threshold
                && (t < m / 2 + 1 || t > m)
            {
                return Err((
                    "secagg.threshold".into(),
                    format!(
                        "is {t}; with neighbourhoods of {m} parties it must be between {} (a \
                         majority, which the parties enforce) and {m}",
                        m / 2 + 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Model kinds users should not see in "expected one of" lists (the runtime benchmark job is
/// written by `fedcredit bench secagg`, not by hand).
const INTERNAL_KINDS: [&str; 1] = ["secagg_bench"];

/// `message` without the internal model kinds.
fn hide_internal_kinds(message: &str) -> String {
    let mut out = message.to_string();
    for kind in INTERNAL_KINDS {
        out = out.replace(&format!("`{kind}`, "), "").replace(&format!(", `{kind}`"), "");
    }
    out
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The dotted path of the deepest key whose key or value span contains byte `at`. (The span of
/// a `[table]` value is its header only, so tables are searched before their own span.)
fn key_path_at(table: &toml::de::DeTable<'_>, at: usize) -> Vec<String> {
    for (key, value) in table.iter() {
        if let Some(inner) = value.get_ref().as_table() {
            let sub = key_path_at(inner, at);
            if !sub.is_empty() {
                let mut path = vec![key.get_ref().to_string()];
                path.extend(sub);
                return path;
            }
        }
        if key.span().contains(&at) || value.span().contains(&at) {
            return vec![key.get_ref().to_string()];
        }
    }
    Vec::new()
}

/// The `[model]` key that fails on its own next to the table's `kind`: its name, byte offset
/// and error message.
fn failing_model_key(doc: &toml::de::DeTable<'_>, text: &str) -> Option<(String, usize, String)> {
    let model = doc.get("model")?.get_ref().as_table()?;
    let kind = text.get(model.get("kind")?.span())?;
    for (key, value) in model.iter() {
        let name = key.get_ref();
        if name == "kind" {
            continue;
        }
        let quoted = format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
        let probe = format!("kind = {kind}\n{quoted} = {}\n", text.get(value.span())?);
        if toml::de::DeTable::parse(&probe).is_err() {
            continue; // not a plain `key = value` line (a sub-table): cannot probe it alone
        }
        if let Err(e) = toml::from_str::<crate::horizontal::ModelSpec>(&probe) {
            return Some((name.to_string(), key.span().start, e.message().to_string()));
        }
    }
    None
}

/// A `job.toml` parse error naming the key path and line.
fn parse_error(text: &str, err: &toml::de::Error) -> JobSpecError {
    let mut message = err.message().trim_end().to_string();
    let Some(span) = err.span() else {
        return JobSpecError::Parse(hide_internal_kinds(&err.to_string()));
    };
    let mut at = span.start;
    let mut path = match toml::de::DeTable::parse(text) {
        Ok(doc) => {
            let mut path = key_path_at(doc.get_ref(), at);
            if path == ["model"]
                && let Some((key, key_at, key_message)) = failing_model_key(doc.get_ref(), text)
            {
                path.push(key);
                at = key_at;
                message = key_message;
            }
            path
        }
        // A syntax error: toml's own message already points at the character.
        Err(_) => return JobSpecError::Parse(err.to_string()),
    };
    if path.is_empty() {
        path.push("(top level)".into());
    }
    JobSpecError::Parse(format!(
        "`{}` (line {}): {}",
        path.join("."),
        line_of(text, at),
        hide_internal_kinds(&message)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(model: &str) -> String {
        format!(
            "name = \"t\"\nparties = [\"a\", \"b\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n"
        )
    }

    fn err(text: &str) -> String {
        JobSpec::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn secagg_settings_the_parties_would_refuse_are_refused_at_submit() {
        let five = "name = \"t\"\nparties = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n\
                    [data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"gbdt\"\n";
        let e = err(&format!("{five}[secagg]\nthreshold = 2\n"));
        assert!(e.contains("secagg.threshold") && e.contains("majority"), "{e}");
        let e = err(&format!("{five}[secagg]\nthreshold = 6\n"));
        assert!(e.contains("secagg.threshold"), "{e}");
        JobSpec::from_toml(&format!("{five}[secagg]\nthreshold = 3\n")).unwrap();
        // Five parties: SecAgg+ needs the complete graph (min_degree(5) = 4).
        let e = err(&format!("{five}[secagg]\ndegree = 2\n"));
        assert!(e.contains("secagg.degree") && e.contains("at least 4"), "{e}");
        // A job that may shrink to two parties must keep a threshold two parties can meet.
        let e = err(&format!("min_parties = 2\n{five}[secagg]\nthreshold = 3\n"));
        assert!(e.contains("secagg.threshold"), "{e}");
    }

    #[test]
    fn type_errors_name_the_key_path_and_line() {
        let e = err(&job("kind = \"gbdt\"\nmax_depth = 4\nn_trees = \"sixty\""));
        assert!(e.contains("`model.n_trees` (line 9)"), "{e}");
        assert!(e.contains("invalid type: string \"sixty\", expected usize"), "{e}");
        let e = err(&job("kind = \"logistic\"\nc = true"));
        assert!(e.contains("`model.c` (line 8)") && e.contains("boolean"), "{e}");
        let e = err(&job("kind = \"gbdt\"\nn_tree = 8"));
        assert!(e.contains("`model.n_tree`") && e.contains("unknown field"), "{e}");
        let e = err(&job("n_trees = 8"));
        assert!(e.contains("`model`") && e.contains("missing field `kind`"), "{e}");
        let e =
            err(&job("kind = \"gbdt\"").replace("label = \"y\"", "label = \"y\"\nseed = \"x\""));
        assert!(e.contains("`data.seed` (line 6)") && e.contains("expected u64"), "{e}");
        let e = err(&job("kind = \"gbdt\"").replace("parties = [\"a\", \"b\"]", "parties = \"a\""));
        assert!(e.contains("`parties` (line 2)"), "{e}");
        let e = err(&job("kind = \"gbdt\"\n[secagg]\nfrac_bits = -1"));
        assert!(e.contains("`secagg.frac_bits` (line 9)"), "{e}");
        // Syntax errors keep toml's pointer at the character.
        let e = err(&job("kind = \"gbdt"));
        assert!(e.contains("line 7"), "{e}");
    }

    #[test]
    fn the_internal_benchmark_kind_is_not_offered() {
        let e = err(&job("kind = \"xgb\""));
        assert!(e.contains("`model.kind`") && e.contains("`logistic`"), "{e}");
        assert!(!e.contains("secagg_bench"), "{e}");
        // It still parses when written.
        JobSpec::from_toml(&job("kind = \"secagg_bench\"\ndim = 10\nrounds = 2")).unwrap();
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;

    /// Every `job.toml` example in the README parses and validates (the README stays true).
    #[test]
    fn readme_job_examples_parse() {
        let readme = include_str!("../../README.md");
        let mut examples = Vec::new();
        let mut rest = readme;
        while let Some(start) = rest.find("```toml\n") {
            let body = &rest[start + "```toml\n".len()..];
            let Some(end) = body.find("```") else { break };
            if body[..end].contains("\n[model]") {
                examples.push(&body[..end]);
            }
            rest = &body[end..];
        }
        assert!(examples.len() >= 2, "the README's job.toml examples: found {}", examples.len());
        for text in examples {
            if let Err(e) = JobSpec::from_toml(text) {
                panic!("README job example does not parse: {e}\n{text}");
            }
        }
    }
}
