//! `coordinator.toml`: where the coordinator listens, where it keeps its state, its TLS material.
//!
//! Unknown keys are rejected so a typo never silently falls back to a default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config (unknown key, wrong type, …).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A value is out of range; names the key.
    #[error("{path}: `{key}` {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// Why it is rejected.
        reason: String,
    },
}

/// Paths of the PEM files for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// CA certificate that signs every party's certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

/// How a deviating coordinator (`[fault]`, tests only) tampers with relayed payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFault {
    /// What it does to every relayed payload.
    pub relay: RelayTamper,
}

/// A tampering of relayed payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayTamper {
    /// Flip one bit of the ciphertext.
    FlipBit,
    /// Name another party of the job as the sender.
    Resender,
}

/// The coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on, e.g. `127.0.0.1:7443`.
    pub listen: SocketAddr,
    /// Directory for the embedded database and model artifacts.
    pub state_dir: PathBuf,
    /// Mutual-TLS material; required unless `insecure` is set.
    pub tls: Option<TlsPaths>,
    /// Plain-text transport, for explicit local experiments only.
    #[serde(default)]
    pub insecure: bool,
    /// Seconds a round phase waits for its participants, unless the job sets
    /// `phase_timeout_secs`.
    #[serde(default = "default_round_timeout")]
    pub round_timeout_secs: u64,
    /// Seconds a job waits for a party that has not joined, or that disconnected while it was
    /// waited for, before going on without it (at least `min_parties`) or failing; a job may
    /// set its own `grace_secs`. Default 60.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// Testing only: a coordinator that deviates when relaying sealed payloads, to show that
    /// receivers refuse what it alters. Never set in production.
    #[serde(default)]
    pub fault: Option<RelayFault>,
    /// The federation's parties (certificate names). When set, jobs naming anyone else are
    /// refused at submission; when absent, a job may name only parties that have connected at
    /// least once.
    #[serde(default)]
    pub parties: Option<Vec<String>>,
    /// Largest message accepted from a party, in bytes, after reassembly of its chunks (a GBDT
    /// level of 300 features × 255 bins × 8 nodes is about 15 MB). Default 128 MiB.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Keep every secure-aggregation message as received (masked vectors included) in the
    /// database, for privacy audits of what the coordinator saw. Off by default: it grows the
    /// database by about the size of every upload.
    #[serde(default)]
    pub record_transcripts: bool,
}

fn default_round_timeout() -> u64 {
    30
}

fn default_grace() -> u64 {
    60
}

fn default_max_message() -> usize {
    128 * 1024 * 1024
}

impl CoordinatorConfig {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and, where there is one, the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` is used in messages only.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and, where there is one, the key.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid = |key, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            reason: reason.to_owned(),
        };
        if cfg.tls.is_none() && !cfg.insecure {
            return Err(invalid(
                "tls",
                "is required (or set `insecure = true` for a local experiment)",
            ));
        }
        if cfg.round_timeout_secs == 0 {
            return Err(invalid("round_timeout_secs", "must be at least 1"));
        }
        if cfg.max_message_bytes < 1024 {
            return Err(invalid("max_message_bytes", "must be at least 1024"));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7443"
state_dir = "state"
[tls]
ca = "certs/ca.pem"
cert = "certs/coordinator.pem"
key = "certs/coordinator.key"
"#;

    #[test]
    fn parses_with_defaults() {
        let cfg = CoordinatorConfig::from_toml(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(cfg.listen.port(), 7443);
        assert_eq!(cfg.round_timeout_secs, 30);
        assert!(!cfg.insecure);
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let err = CoordinatorConfig::from_toml(
            &format!("{GOOD}\nround_timeout = 5\n"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("c.toml") && err.contains("round_timeout"), "{err}");
    }

    #[test]
    fn tls_is_required_unless_insecure() {
        let text = "listen = \"127.0.0.1:1\"\nstate_dir = \"s\"\n";
        let err = CoordinatorConfig::from_toml(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("`tls`"), "{err}");
        let ok =
            CoordinatorConfig::from_toml(&format!("{text}insecure = true\n"), Path::new("c.toml"));
        assert!(ok.unwrap().insecure);
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let err = CoordinatorConfig::from_toml(
            &format!("round_timeout_secs = 0\n{GOOD}"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("round_timeout_secs"), "{err}");
    }
}
