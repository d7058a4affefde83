//! The fedcredit participant daemon.
//!
//! Runs next to an institution's own data, connects out to the coordinator (it needs no
//! inbound port), loads its table through `fedcredit-datasets`, checks it against each job,
//! executes its role and sends only masked or encrypted values, never rows.
//!
//! - [`config`] — `participant.toml`.
//! - [`daemon`] — the connection loop, job offers and each job's worker.
//! - [`journal`] — a job's checkpoint file, append-only.
//! - [`serving`] — its parts of serving models over its latest snapshot: score queries,
//!   snapshot notices, contagion queries.

pub mod config;
pub mod daemon;
pub mod journal;
pub mod serving;

pub use config::ParticipantConfig;
pub use daemon::Daemon;
