//! Cryptography for federated credit models.
//!
//! This crate does no I/O. It grows one module per primitive:
//! - [`fixed`]: fixed-point encoding of real vectors into a ring `Z_{2^k}`, the
//!   representation secure aggregation masks and sums (Bonawitz et al., CCS 2017, §3).
//! - [`channel`]: sealed party-to-party channels (X25519, HKDF-SHA256, ChaCha20-Poly1305)
//!   for payloads a relay can neither read nor forge.
//! - [`secagg`]: secure aggregation (Bonawitz et al., CCS 2017, with the SecAgg+ neighbour
//!   graph of Bell et al., CCS 2020): X25519, HKDF, ChaCha20 masks, Shamir over GF(2^16),
//!   ChaCha20-Poly1305 for relayed shares.
//!
//! ECDH PSI on ristretto255 and additive HE (Paillier / Okamoto–Uchiyama) follow in
//! later issues; see ARCHITECTURE.md.

pub mod channel;
pub mod fixed;
pub mod secagg;

pub use fixed::{FixedPoint, FixedPointError};
