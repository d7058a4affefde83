//! The fedcredit coordinator.
//!
//! It will hold the party registry, the job scheduler and round driver, persistence
//! in an embedded database, the model registry and the scoring endpoint. It never
//! sees a row of data: it relays ciphertexts and sees only aggregates.
//!
//! This first version holds the configuration ([`config`]); the gRPC server follows
//! in the federation-runtime issue.

pub mod config;
pub mod store;

pub use config::{CoordinatorConfig, TlsPaths};
pub use store::{Store, StoreError};
