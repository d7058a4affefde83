//! Cryptography for federated credit models.
//!
//! This crate does no I/O. It grows one module per primitive:
//! - [`fixed`]: fixed-point encoding of real vectors into a ring `Z_{2^k}`, the
//!   representation secure aggregation masks and sums (Bonawitz et al., CCS 2017, §3).
//! - [`channel`]: sealed party-to-party channels (X25519, HKDF-SHA256, ChaCha20-Poly1305)
//!   for payloads a relay can neither read nor forge.
//! - [`secagg`]: secure aggregation (Bonawitz et al., CCS 2017, with the SecAgg+ neighbour
//!   graph of Bell et al., CCS 2020) with round secrets derived from long-term pair roots
//!   (Ma et al., Flamingo, IEEE S&P 2023): HKDF, ChaCha20 masks, Shamir over GF(2^16),
//!   ChaCha20-Poly1305 for relayed shares.
//! - [`he`]: additively homomorphic encryption, Okamoto–Uchiyama (Eurocrypt 1998) and
//!   Paillier (Eurocrypt 1999), with packing, compression, batch sums by bin and
//!   hand-written Montgomery arithmetic.
//! - [`elgamal`]: exponential ElGamal over ristretto255 (ElGamal 1985; Cramer, Gennaro and
//!   Schoenmakers 1997) for small sums such as WOE event counts: 64-byte ciphertexts,
//!   additions of two point additions, decryption by baby-step giant-step.
//! - [`psi`]: private set intersection: ECDH-PSI over ristretto255 (Huberman, Franklin and
//!   Hogg 1999; RFC 9496 and RFC 9380 hash to group) and server-aided PSI tokens (Kamara et
//!   al., FC 2014), batched on all cores, with intersection and agreed-order helpers.
//! - [`mpc`]: two-party additive secret sharing over `Z_{2^128}` with fixed point, local
//!   truncation, Beaver triples and reusable-mask matrix triples from a dealer (Beaver, CRYPTO
//!   1991; Mohassel and Zhang, SecureML, IEEE S&P 2017), and a polynomial sigmoid.

pub mod channel;
pub mod elgamal;
pub mod fixed;
pub mod he;
pub mod mpc;
pub mod psi;
pub mod secagg;

pub use fixed::{FixedPoint, FixedPointError};
