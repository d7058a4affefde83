//! fedcredit transport: the pieces of the gRPC runtime that do not depend on the protocol.
//!
//! - [`tls`]: a private certificate authority for one federation, mutual-TLS configuration for
//!   tonic (RFC 8446 TLS 1.3 with client certificates, X.509 profile of RFC 5280), and the peer
//!   identity (subject common name) that binds every message to a party.
//! - [`frame`]: chunking of large protobuf payloads into bounded frames for bidi streams, and
//!   their reassembly with limits.
//! - [`stream`]: participant-stream messages as frames (whole, or chunked when large).
//! - [`identity`]: a party's certificate key as the signer of what it sends through relays,
//!   and the federation CA as the verifier of peers' signatures.
//! - [`backoff`]: exponential reconnect backoff with jitter, after gRPC's connection-backoff
//!   specification.
//!
//! No polars: the coordinator links this crate. (It depends on `fedcredit-federation` for the
//! signer and verifier traits, and so on `fedcredit-models` through it.)

pub mod backoff;
pub mod frame;
pub mod identity;
pub mod stream;
pub mod tls;

pub use backoff::{Backoff, BackoffError};
pub use frame::{Chunk, Chunker, FrameError, Reassembler};
pub use tls::{
    CertPaths, TlsFiles, TransportError, add_party, client_tls, init_certs, peer_name,
    request_identity, server_tls, validate_party_name,
};
