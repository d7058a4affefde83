//! Sans-IO federation roles and round state machines.
//!
//! Nothing here touches sockets, clocks or a global RNG: a role consumes messages
//! and produces messages, so a whole federation can run in memory in tests and the
//! coordinator and participant daemons only move bytes.
//!
//! - [`ids`]: typed identifiers for parties, jobs and rounds.
//! - [`strategy`]: aggregation strategies (FedAvg, McMahan et al., AISTATS 2017).
//! - [`secagg`]: secure-aggregation rounds (Bonawitz et al., CCS 2017; SecAgg+, Bell et
//!   al., CCS 2020) as a coordinator and a participant state machine, with restarts on
//!   early dropouts and an in-memory driver for tests.
//!
//! - [`job`]: the job spec (`job.toml`) every party sees.
//! - [`horizontal`]: the horizontal trainers (coordinator side) and participants, whose
//!   every exchange is a secure sum.
//!
//! The vertical protocols (PSI, vertical LR, SecureBoost, federated inference) follow in
//! later issues.

pub mod horizontal;
pub mod ids;
pub mod job;
pub mod secagg;
pub mod strategy;

pub use ids::{JobId, PartyId, Role, RoundId};
