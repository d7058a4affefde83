//! `coordinator.toml`: where the coordinator listens, where it keeps its state, its TLS material.
//!
//! Unknown keys are rejected so a typo never silently falls back to a default. Relative paths
//! (`state_dir`, `[tls]`) are relative to the config file's folder, as in `participant.toml`.

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
    /// Directory for the embedded database and model artifacts (relative to the config file).
    pub state_dir: PathBuf,
    /// Mutual-TLS material (relative to the config file); required unless `insecure` is set.
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
    /// The scoring service.
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// When scores raise alerts.
    #[serde(default)]
    pub alerts: fedcredit_federation::serving::AlertRules,
}

/// `[scoring]`: the scoring service (gRPC `Scoring` on the coordinator's port, HTTP/JSON on
/// its own).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Address of the HTTP/JSON API (`/v1/…`, `/metrics`, `/healthz`, `/readyz`); none when
    /// absent. Plain HTTP: bind it to loopback or put it behind a TLS-terminating proxy.
    pub http_listen: Option<SocketAddr>,
    /// When set, `/v1/…` requests need `Authorization: Bearer <token>`.
    pub http_token: Option<String>,
    /// Certificate names besides `operator` that may call the gRPC `Scoring` service.
    pub clients: Vec<String>,
    /// How long a party may take to answer a score query.
    pub timeout_ms: u64,
    /// Most enterprises in one request.
    pub max_batch: usize,
    /// Snapshot notices arriving within this many milliseconds form one period.
    pub debounce_ms: u64,
    /// The party that knows supply-chain links and is asked for contagion alerts.
    pub contagion_party: Option<String>,
    /// Tiers of suppliers a contagion alert reaches (1–3).
    pub contagion_tiers: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            http_listen: None,
            http_token: None,
            clients: Vec::new(),
            timeout_ms: 5_000,
            max_batch: 10_000,
            debounce_ms: 500,
            contagion_party: None,
            contagion_tiers: 3,
        }
    }
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
        let mut cfg = Self::from_toml(&text, path)?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(cfg)
    }

    /// Makes relative paths (`state_dir`, `tls.*`) relative to `base`, the config file's
    /// folder, so the coordinator finds its files whatever directory it is started from.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.state_dir);
        if let Some(t) = self.tls.as_mut() {
            fix(&mut t.ca);
            fix(&mut t.cert);
            fix(&mut t.key);
        }
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
        if cfg.scoring.timeout_ms == 0 {
            return Err(invalid("scoring.timeout_ms", "must be at least 1"));
        }
        if cfg.scoring.max_batch == 0 || cfg.scoring.max_batch > 1_000_000 {
            return Err(invalid("scoring.max_batch", "must lie in 1..=1000000"));
        }
        if !(1..=fedcredit_federation::serving::MAX_TIERS).contains(&cfg.scoring.contagion_tiers) {
            return Err(invalid("scoring.contagion_tiers", "must lie in 1..=3"));
        }
        if let Err((key, reason)) = cfg.alerts.validate() {
            return Err(ConfigError::Invalid { path: path.to_owned(), key, reason });
        }
        if let Some(parties) = &cfg.parties {
            let mut seen = std::collections::HashSet::new();
            for name in parties {
                fedcredit_transport::tls::validate_party_name(name)
                    .map_err(|e| invalid("parties", &e.to_string()))?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(invalid("parties", &format!("lists `{name}` twice")));
                }
            }
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
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, GOOD).unwrap();
        let cfg = CoordinatorConfig::from_file(&path).unwrap();
        assert_eq!(cfg.state_dir, dir.path().join("state"));
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.ca, dir.path().join("certs/ca.pem"));
        assert_eq!(tls.key, dir.path().join("certs/coordinator.key"));
        let abs = GOOD.replace("\"state\"", "\"/var/lib/fedcredit\"");
        std::fs::write(&path, abs).unwrap();
        let cfg = CoordinatorConfig::from_file(&path).unwrap();
        assert_eq!(cfg.state_dir, Path::new("/var/lib/fedcredit"));
    }

    #[test]
    fn parties_must_be_valid_distinct_names() {
        let ok = CoordinatorConfig::from_toml(
            &format!("parties = [\"bank1\", \"bank2\"]\n{GOOD}"),
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.parties.unwrap(), ["bank1", "bank2"]);
        for bad in ["[\"bank1\", \"operator\"]", "[\"bank1\", \"BANK1\"]", "[\"a b\"]"] {
            let err = CoordinatorConfig::from_toml(
                &format!("parties = {bad}\n{GOOD}"),
                Path::new("c.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("`parties`"), "{bad}: {err}");
        }
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
