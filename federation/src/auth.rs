//! Who signed what. A party's certificate key (issued by the federation CA) signs its channel
//! key for a job (from which every secure-aggregation round's pairwise secrets derive) and,
//! in a round where someone dropped, the survivor set of the consistency check; every
//! peer checks those signatures itself, so a coordinator that substitutes a key or edits a
//! signed set is caught by the parties (Bonawitz et al., CCS 2017, §6: the signature scheme
//! of the actively secure variant, here bound to the TLS certificates the federation already
//! issues).
//!
//! The traits keep this crate free of X.509 parsing: `fedcredit_transport::identity`
//! implements them with ring (ECDSA P-256, SHA-256) and webpki (chain to the federation CA,
//! common name equal to the roster name).

use crate::ids::PartyId;

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The certificate is not one the federation CA issued to that party.
    #[error("certificate presented for {party}: {reason}")]
    Certificate {
        /// The party the certificate should belong to.
        party: PartyId,
        /// What is wrong (chain, name, validity, encoding).
        reason: String,
    },
    /// The signature does not verify under the party's certificate key.
    #[error("{what} of {party}: signature does not verify")]
    Signature {
        /// The signer.
        party: PartyId,
        /// What was signed.
        what: &'static str,
    },
    /// A signature is needed but absent.
    #[error("{what} of {party} is not signed")]
    Unsigned {
        /// The party.
        party: PartyId,
        /// What was expected to be signed.
        what: &'static str,
    },
    /// Signing failed locally.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Signs with this party's certificate key.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The party the certificate names.
    fn party(&self) -> &PartyId;
    /// The party's certificate, DER.
    fn certificate(&self) -> &[u8];
    /// A signature over `message`.
    ///
    /// # Errors
    /// [`AuthError::Sign`] when the key cannot sign.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError>;
}

/// Checks peers' certificates and signatures against the federation CA.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    /// Checks that `certificate` chains to the federation CA, is valid now, names `party`, and
    /// that `signature` is its key's signature over `message`.
    ///
    /// # Errors
    /// [`AuthError::Certificate`] or [`AuthError::Signature`], with `what` naming the statement.
    fn verify(
        &self,
        party: &PartyId,
        certificate: &[u8],
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), AuthError>;
}

/// A statement to sign: a label, then length-prefixed parts, so that no two different lists
/// of parts give the same bytes.
pub fn statement(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(label.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>());
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::statement;

    #[test]
    fn statements_are_unambiguous() {
        assert_ne!(statement("x", &[b"ab", b"c"]), statement("x", &[b"a", b"bc"]));
        assert_ne!(statement("x", &[b"a"]), statement("y", &[b"a"]));
    }
}
