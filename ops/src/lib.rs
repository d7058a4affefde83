//! The client side of fedcredit: what `fedcredit train`, `jobs`, `models` and the benchmark and
//! demo runners use to talk to a coordinator, and to start a whole federation of separate
//! processes on loopback (certificates, configs, coordinator, one daemon per party).
//!
//! - [`client`] — the `Control` API over mutual TLS as the `operator` certificate.
//! - [`progress`] — follows a job with a live progress bar (rounds, loss, validation AUC).
//! - [`bench`] — `fedcredit bench secagg` over gRPC between processes.
//! - [`launch`] — a local federation of processes for the demo, benchmarks and tests.

pub mod bench;
pub mod bench_sb;
pub mod bench_scoring;
pub mod bench_vlr;
pub mod bench_woe;
pub mod client;
pub mod launch;
pub mod progress;

pub use client::{ClientConfig, ControlClient, OpsError, ScoringClient};
pub use launch::{LocalFederation, PartySetup};
