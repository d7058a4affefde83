//! Sans-IO federation roles and round state machines.
//!
//! Nothing here touches sockets, clocks or a global RNG: a role consumes messages
//! and produces messages, so a whole federation can run in memory in tests and the
//! coordinator and participant daemons only move bytes.
//!
//! - [`ids`]: typed identifiers for parties, jobs and rounds.
//! - [`strategy`]: aggregation strategies (FedAvg, McMahan et al., AISTATS 2017).
//! - [`secagg`]: secure-aggregation rounds (Bonawitz et al., CCS 2017; SecAgg+, Bell et
//!   al., CCS 2020; round secrets from the job's signed channel keys, after Ma et al.,
//!   Flamingo, IEEE S&P 2023) as a coordinator and a participant state machine: masked
//!   input, a consistency check with signed survivor sets when someone dropped, unmask;
//!   retries of failed attempts, and an in-memory driver for tests.
//! - [`job`]: the job spec (`job.toml`) every party sees.
//! - [`protocol`]: protocols as role state machines — a conductor on the coordinator, a
//!   role per party, typed protobuf messages — with a party's session (channels, directory)
//!   and an in-memory federation of any protocol.
//! - [`auth`], [`channel`]: certificate-key signatures checked by peers, and party-to-party
//!   payloads sealed end to end through the coordinator.
//! - [`horizontal`]: the horizontal trainers, conductor and bank role, whose every exchange
//!   is a secure sum; [`relay_bench`]: a payload streamed between two parties.
//! - [`wire`]: secure-aggregation messages ↔ protobuf.
//!
//! - [`vertical`]: vertical jobs as stages — alignment by PSI, federated WOE/IV — with a
//!   conductor and a party role that check each stage against the job.

pub mod auth;
pub mod channel;
pub mod horizontal;
pub mod ids;
pub mod job;
pub mod protocol;
pub mod relay_bench;
pub mod secagg;
pub mod serving;
pub mod strategy;
pub mod vertical;
pub mod wire;

pub use ids::{JobId, PartyId, Role, RoundId};
