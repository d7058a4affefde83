//! Cryptography for federated credit models.
//!
//! This crate does no I/O. It grows one module per primitive:
//! - [`fixed`]: fixed-point encoding of real vectors into a ring `Z_{2^k}`, the
//!   representation secure aggregation masks and sums (Bonawitz et al., CCS 2017, §3).
//! - [`secagg`]: secure aggregation (Bonawitz et al., CCS 2017, with the SecAgg+ neighbour
//!   graph of Bell et al., CCS 2020): X25519, HKDF, ChaCha20 masks, Shamir over GF(2^16),
//!   ChaCha20-Poly1305 for relayed shares.
//! - [`he`]: additively homomorphic encryption, Okamoto–Uchiyama (Eurocrypt 1998) and
//!   Paillier (Eurocrypt 1999), with packing, compression, batch sums by bin and
//!   hand-written Montgomery arithmetic.
//!
//! ECDH PSI on ristretto255 follows in a later issue; see ARCHITECTURE.md.

pub mod fixed;
pub mod he;
pub mod secagg;

pub use fixed::{FixedPoint, FixedPointError};
