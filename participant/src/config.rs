//! `participant.toml`: who this party is, where the coordinator is, the TLS material, and the
//! table it trains on. Unknown keys are rejected.
//!
//! ```toml
//! name = "bank1"
//! coordinator = "https://127.0.0.1:7443"
//! [tls]
//! ca = "certs/ca.pem"
//! cert = "certs/bank1.pem"
//! key = "certs/bank1.key"
//! [data]
//! path = "data/bank1.csv"
//! ```
//!
//! Paths in the file (`data.path`, `tls.*`, `state_dir`) are relative to the file's folder.

use std::path::{Path, PathBuf};

use fedcredit_transport::tls::TlsFiles;
use serde::Deserialize;

/// Why a participant configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for this config (unknown key, wrong type, …).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range; names the key.
    #[error("{path}: `{key}` {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The party's table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// CSV, TSV or Parquet file; relative paths are relative to the config file.
    pub path: PathBuf,
    /// Columns to read as categorical (text columns are detected anyway).
    #[serde(default)]
    pub categorical_columns: Option<Vec<String>>,
    /// Seconds between checks of the table for a new snapshot (a changed file): the parts of
    /// serving models are recomputed and the coordinator told which enterprises moved.
    /// 0 turns watching off.
    #[serde(default = "default_watch")]
    pub watch_secs: f64,
    /// The supply-chain links this party knows (CSV with columns `supplier_id` and
    /// `customer_id`), for contagion alerts; relative to the config file. They never leave
    /// the party.
    #[serde(default)]
    pub links: Option<PathBuf>,
}

fn default_watch() -> f64 {
    5.0
}

/// Fault injection for tests of dropouts: the daemon exits (as if killed) instead of sending
/// its message of `phase` in round `round`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// `masked-input` or `unmask`.
    pub exit_before: String,
    /// The round (0-based) in which to exit.
    pub round: u64,
}

/// The participant's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// This party's name; must equal its certificate's common name.
    pub name: String,
    /// The coordinator's URL, `https://host:port` (`http://` only with `insecure`).
    pub coordinator: String,
    /// The name the coordinator's certificate is issued for.
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Mutual-TLS material; required unless `insecure`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plain-text transport, for explicit local experiments only.
    #[serde(default)]
    pub insecure: bool,
    /// The table.
    pub data: DataConfig,
    /// Where the daemon keeps its job checkpoints (its channel secrets and role state; keep it
    /// private). Relative to the config file; default `<name>-state` beside it.
    #[serde(default)]
    pub state_dir: PathBuf,
    /// Largest backoff between reconnection attempts, in seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
    /// Testing only: see [`FaultConfig`].
    #[serde(default)]
    pub fault: Option<FaultConfig>,
}

fn default_server_name() -> String {
    "localhost".into()
}

fn default_max_backoff() -> u64 {
    10
}

impl ParticipantConfig {
    /// Reads and validates a config file; relative paths become relative to its folder.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut cfg = Self::from_toml(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.data.path);
        if let Some(l) = cfg.data.links.as_mut() {
            fix(l);
        }
        if cfg.state_dir.as_os_str().is_empty() {
            cfg.state_dir = PathBuf::from(format!("{}-state", cfg.name));
        }
        fix(&mut cfg.state_dir);
        if let Some(t) = cfg.tls.as_mut() {
            fix(&mut t.ca);
            fix(&mut t.cert);
            fix(&mut t.key);
        }
        Ok(cfg)
    }

    /// Parses and validates config text; `path` is used in messages only.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid =
            |key, reason: String| ConfigError::Invalid { path: path.to_owned(), key, reason };
        fedcredit_transport::tls::validate_party_name(&cfg.name)
            .map_err(|e| invalid("name", e.to_string()))?;
        if cfg.tls.is_none() && !cfg.insecure {
            return Err(invalid(
                "tls",
                "is required (or set `insecure = true` for a local experiment)".into(),
            ));
        }
        if !(cfg.data.watch_secs >= 0.0 && cfg.data.watch_secs.is_finite()) {
            return Err(invalid(
                "data.watch_secs",
                "must be 0 (off) or a number of seconds".into(),
            ));
        }
        let scheme_ok = if cfg.insecure {
            cfg.coordinator.starts_with("http://") || cfg.coordinator.starts_with("https://")
        } else {
            cfg.coordinator.starts_with("https://")
        };
        if !scheme_ok {
            return Err(invalid(
                "coordinator",
                format!(
                    "`{}` must be an https:// URL (http:// only with insecure = true)",
                    cfg.coordinator
                ),
            ));
        }
        if let Some(f) = &cfg.fault
            && !["masked-input", "unmask"].contains(&f.exit_before.as_str())
        {
            return Err(invalid(
                "fault.exit_before",
                format!("`{}` is not a phase", f.exit_before),
            ));
        }
        if cfg.max_backoff_secs == 0 {
            return Err(invalid("max_backoff_secs", "must be at least 1".into()));
        }
        let mut cfg = cfg;
        if cfg.state_dir.as_os_str().is_empty() {
            cfg.state_dir = PathBuf::from(format!("{}-state", cfg.name));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "bank1"
coordinator = "https://127.0.0.1:7443"
[tls]
ca = "ca.pem"
cert = "bank1.pem"
key = "bank1.key"
[data]
path = "bank1.csv"
"#;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c = ParticipantConfig::from_toml(GOOD, Path::new("p.toml")).unwrap();
        assert_eq!(c.name, "bank1");
        assert_eq!(c.server_name, "localhost");
        let err =
            ParticipantConfig::from_toml(&format!("{GOOD}\nlabel = \"y\"\n"), Path::new("p.toml"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("p.toml") && err.contains("label"), "{err}");
    }

    #[test]
    fn plain_text_needs_insecure() {
        let text = GOOD.replace("https://", "http://");
        let err = ParticipantConfig::from_toml(&text, Path::new("p.toml")).unwrap_err().to_string();
        assert!(err.contains("`coordinator`"), "{err}");
        let err = ParticipantConfig::from_toml(
            "name = \"b\"\ncoordinator = \"http://x:1\"\n[data]\npath = \"a.csv\"\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`tls`"), "{err}");
    }

    #[test]
    fn bad_names_and_phases_name_the_key() {
        let err = ParticipantConfig::from_toml(
            &GOOD.replace("bank1\"\ncoord", "bank 1\"\ncoord"),
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`name`"), "{err}");
        let err = ParticipantConfig::from_toml(
            &format!("{GOOD}[fault]\nexit_before = \"lunch\"\nround = 1\n"),
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("fault.exit_before"), "{err}");
    }
}
