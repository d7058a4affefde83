//! A party's certificate key as a signer, and the federation CA as the verifier of peers'
//! signatures ([`fedcredit_federation::auth`]).
//!
//! Mutual TLS binds what the coordinator *receives* to a party; it does not bind what the
//! coordinator *relays* from one party to another. So parties sign what their peers must be
//! able to trust through a relay — their job channel keys (from which every secure-aggregation
//! round's pairwise secrets derive) and the survivor sets of the consistency check — with the
//! private key of their certificate (ECDSA P-256 with SHA-256,
//! ASN.1 signatures, via ring), and each peer checks the certificate itself: the chain to the
//! federation CA and its validity now (webpki, client-authentication usage), that its subject
//! common name is the party it claims to be, and the signature under its public key.

use std::path::Path;
use std::sync::Arc;

use fedcredit_federation::PartyId;
use fedcredit_federation::auth::{AuthError, Signer, Verifier};
use fedcredit_federation::protocol::Identity;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::tls::{TlsFiles, TransportError, peer_name, read_certs, read_file};

/// Signs with a party's certificate key.
pub struct CertSigner {
    party: PartyId,
    certificate: Vec<u8>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for CertSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertSigner({}, key: <redacted>)", self.party)
    }
}

fn not_pem(what: &'static str, path: &Path, reason: impl Into<String>) -> TransportError {
    TransportError::NotPem { what, path: path.to_owned(), reason: reason.into() }
}

impl CertSigner {
    /// The signer of the party whose certificate and key are `files` (its common name is the
    /// party).
    ///
    /// # Errors
    /// [`TransportError`] when a file cannot be read or the key is not an ECDSA P-256
    /// PKCS#8 key.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TransportError> {
        let pem = read_certs("certificate", &files.cert)?;
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or_else(|| not_pem("certificate", &files.cert, "no CERTIFICATE block"))?
            .map_err(|e| not_pem("certificate", &files.cert, e.to_string()))?;
        let party = PartyId(peer_name(std::slice::from_ref(&cert))?);
        let key_pem = read_file("private key", &files.key)?;
        let key = match PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| not_pem("private key", &files.key, e.to_string()))?
        {
            PrivateKeyDer::Pkcs8(k) => k,
            _ => return Err(not_pem("private key", &files.key, "not a PKCS#8 key")),
        };
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.secret_pkcs8_der(), &rng)
                .map_err(|e| {
                    not_pem("private key", &files.key, format!("not an ECDSA P-256 key: {e}"))
                })?;
        Ok(Self { party, certificate: cert.as_ref().to_vec(), key, rng })
    }
}

impl Signer for CertSigner {
    fn party(&self) -> &PartyId {
        &self.party
    }

    fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| AuthError::Sign(e.to_string()))
    }
}

/// Checks certificates against the federation CA and signatures under them.
#[derive(Debug)]
pub struct CaVerifier {
    anchors: Vec<TrustAnchor<'static>>,
}

impl CaVerifier {
    /// The verifier of the federation whose CA certificate is at `ca`.
    ///
    /// # Errors
    /// [`TransportError`] when the file is not a CA certificate.
    pub fn from_file(ca: &Path) -> Result<Self, TransportError> {
        let pem = read_certs("CA certificate", ca)?;
        let mut anchors = Vec::new();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| not_pem("CA certificate", ca, e.to_string()))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| not_pem("CA certificate", ca, format!("not a trust anchor: {e}")))?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self { anchors })
    }
}

impl Verifier for CaVerifier {
    fn verify(
        &self,
        party: &PartyId,
        certificate: &[u8],
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), AuthError> {
        let bad = |reason: String| AuthError::Certificate { party: party.clone(), reason };
        let der = CertificateDer::from(certificate);
        let cert = EndEntityCert::try_from(&der).map_err(|e| bad(format!("unreadable: {e}")))?;
        cert.verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &self.anchors,
            &[],
            UnixTime::now(),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| bad(format!("not issued by the federation CA for a party: {e}")))?;
        let name = peer_name(std::slice::from_ref(&der)).map_err(|e| bad(e.to_string()))?;
        if name != party.0 {
            return Err(bad(format!("it names `{name}`")));
        }
        cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
            .map_err(|_| AuthError::Signature { party: party.clone(), what })
    }
}

/// A party's signer and the federation's verifier from its TLS files, ready for a session.
///
/// # Errors
/// [`TransportError`] when the files cannot be used.
pub fn party_identity(files: &TlsFiles) -> Result<Identity, TransportError> {
    let signer: Arc<dyn Signer> = Arc::new(CertSigner::from_files(files)?);
    let verifier: Arc<dyn Verifier> = Arc::new(CaVerifier::from_file(&files.ca)?);
    Ok(Identity { signer: Some(signer), verifier: Some(verifier) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_right_party_ca_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::tls::init_certs(dir.path(), &["bank1".into(), "bank2".into()], &[]).unwrap();
        let other = tempfile::tempdir().unwrap();
        let b = crate::tls::init_certs(other.path(), &["bank1".into()], &[]).unwrap();
        let s1 = CertSigner::from_files(&a.parties["bank1"]).unwrap();
        assert_eq!(s1.party().0, "bank1");
        let v = CaVerifier::from_file(&a.ca_cert).unwrap();
        let sig = s1.sign(b"key statement").unwrap();
        let bank1 = PartyId("bank1".into());
        v.verify(&bank1, s1.certificate(), b"key statement", &sig, "keys").unwrap();
        // Another message, another claimed party, or a certificate of another federation.
        assert!(matches!(
            v.verify(&bank1, s1.certificate(), b"other", &sig, "keys"),
            Err(AuthError::Signature { .. })
        ));
        assert!(matches!(
            v.verify(&PartyId("bank2".into()), s1.certificate(), b"key statement", &sig, "keys"),
            Err(AuthError::Certificate { .. })
        ));
        let foreign = CertSigner::from_files(&b.parties["bank1"]).unwrap();
        let fsig = foreign.sign(b"key statement").unwrap();
        assert!(matches!(
            v.verify(&bank1, foreign.certificate(), b"key statement", &fsig, "keys"),
            Err(AuthError::Certificate { .. })
        ));
        // The coordinator's certificate is a server certificate, not a party's.
        let coord = CertSigner::from_files(&a.coordinator).unwrap();
        let csig = coord.sign(b"x").unwrap();
        assert!(
            v.verify(&PartyId("coordinator".into()), coord.certificate(), b"x", &csig, "keys")
                .is_err()
        );
        assert_eq!(format!("{s1:?}"), "CertSigner(bank1, key: <redacted>)");
    }
}
