//! Mutual TLS for a fedcredit federation: certificates, tonic configuration, peer identity.
//!
//! One federation has one private certificate authority. [`init_certs`] creates it together
//! with the coordinator's server certificate, an `operator` client certificate for the CLI's
//! control calls, and one client certificate per party whose subject common name is the party's
//! name. Certificates follow the X.509 profile of RFC 5280 (basic constraints, key usage,
//! extended key usage `serverAuth` / `clientAuth`, authority and subject key identifiers) and
//! carry ECDSA P-256 keys (generated with rcgen on ring).
//!
//! The coordinator runs TLS 1.3 (RFC 8446) with mandatory client authentication against the
//! federation CA (its server does the handshake itself with tokio-rustls, so that refusals can
//! be logged and audited; [`server_tls`] is the same policy as tonic's configuration);
//! participants and the operator connect with [`client_tls`]. Because every accepted
//! connection presents a CA-signed certificate, the subject common name of the leaf
//! certificate ([`peer_name`], [`request_identity`]) names the sender of every message the
//! coordinator *receives*: a party can act only as itself towards the coordinator.
//!
//! It does not bind what the coordinator *relays* from one party to another, so it does not
//! replace the signatures of Bonawitz et al. (CCS 2017, §6): a coordinator that may deviate
//! could otherwise hand a party substituted keys. Parties therefore sign their job channel
//! keys and survivor sets with their certificate keys and check each other's signatures
//! themselves ([`crate::identity`]).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::frame::FrameError;

/// Common name of the coordinator's server certificate.
pub const COORDINATOR_NAME: &str = "coordinator";
/// Common name of the operator's client certificate (CLI control calls).
pub const OPERATOR_NAME: &str = "operator";
/// Common name of the federation CA.
pub const CA_NAME: &str = "fedcredit CA";
/// Longest accepted party name.
pub const MAX_PARTY_NAME: usize = 64;
/// Names a party may not take: they are roles or file stems of the CA.
const RESERVED_NAMES: [&str; 3] = [COORDINATOR_NAME, OPERATOR_NAME, "ca"];
/// Validity of every generated certificate, in days (about ten years).
const VALIDITY_DAYS: i64 = 3650;

/// Errors of the transport crate. Each names the file, party or certificate at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to overwrite existing file {path}")]
    Exists { path: PathBuf },
    #[error("{what} {path} is not valid PEM: {reason}")]
    NotPem { what: &'static str, path: PathBuf, reason: String },
    #[error(
        "invalid party name {name:?}: {reason} (1-{MAX_PARTY_NAME} characters of A-Z a-z 0-9 _ . -, not starting with '.', not a reserved name)"
    )]
    InvalidPartyName { name: String, reason: &'static str },
    #[error("party {name:?} is listed twice (names are compared case-insensitively)")]
    DuplicateParty { name: String },
    #[error("invalid host {host:?} for the coordinator certificate: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("cannot generate the certificate for {subject:?}: {source}")]
    CertGen {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot load the CA from {cert} and {key}: {source}")]
    LoadCa {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("the peer presented no client certificate")]
    NoPeerCertificate,
    #[error("the peer certificate cannot be parsed: {reason}")]
    BadPeerCertificate { reason: String },
    #[error("the peer certificate has {count} subject common names; exactly one is required")]
    PeerCommonName { count: usize },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The three PEM files one endpoint needs: the federation CA, its own certificate and key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate that signs every certificate of the federation.
    pub ca: PathBuf,
    /// This endpoint's certificate.
    pub cert: PathBuf,
    /// This endpoint's private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Where [`init_certs`] wrote each file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPaths {
    /// `ca.pem`.
    pub ca_cert: PathBuf,
    /// `ca.key`: keep it offline; only [`add_party`] needs it.
    pub ca_key: PathBuf,
    /// `coordinator.pem` / `.key` with `ca.pem`.
    pub coordinator: TlsFiles,
    /// `operator.pem` / `.key` with `ca.pem`.
    pub operator: TlsFiles,
    /// `<party>.pem` / `.key` with `ca.pem`, by party name.
    pub parties: BTreeMap<String, TlsFiles>,
}

/// Checks that `name` can be a party name: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting
/// with `.`, and not `coordinator`, `operator` or `ca` in any case.
pub fn validate_party_name(name: &str) -> Result<(), TransportError> {
    let invalid = |reason| Err(TransportError::InvalidPartyName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_PARTY_NAME {
        return invalid("too long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return invalid("forbidden character");
    }
    if name.starts_with('.') {
        return invalid("starts with '.'");
    }
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return invalid("reserved name");
    }
    Ok(())
}

/// Creates a new federation CA and every certificate in `out` (created if missing).
///
/// Writes `ca.pem`, `ca.key`, `coordinator.pem/.key` (SAN: `localhost`, `127.0.0.1` and each
/// of `hosts`, which may be DNS names or IP addresses), `operator.pem/.key` and
/// `<party>.pem/.key` for each party. Keys are written with mode 0600 on unix. Nothing is
/// written if any target file already exists or any name is invalid.
pub fn init_certs(
    out: &Path,
    parties: &[String],
    hosts: &[String],
) -> Result<CertPaths, TransportError> {
    let mut seen = HashSet::new();
    for name in parties {
        validate_party_name(name)?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(TransportError::DuplicateParty { name: name.clone() });
        }
    }
    let sans = server_sans(hosts)?;

    let ca_cert = out.join("ca.pem");
    let ca_key = out.join("ca.key");
    let mut stems = vec![COORDINATOR_NAME.to_owned(), OPERATOR_NAME.to_owned()];
    stems.extend(parties.iter().cloned());
    let mut targets = vec![ca_cert.clone(), ca_key.clone()];
    for stem in &stems {
        targets.push(out.join(format!("{stem}.pem")));
        targets.push(out.join(format!("{stem}.key")));
    }
    for path in &targets {
        if path.exists() {
            return Err(TransportError::Exists { path: path.clone() });
        }
    }
    fs::create_dir_all(out).map_err(|source| TransportError::Write { path: out.into(), source })?;

    // Generate everything in memory first, then write.
    let ca_keypair = generate_key(CA_NAME)?;
    let ca_params = ca_params();
    let ca_der = ca_params
        .self_signed(&ca_keypair)
        .map_err(|source| TransportError::CertGen { subject: CA_NAME.to_owned(), source })?;
    let mut files = vec![(ca_cert.clone(), ca_der.pem(), false)];
    files.push((ca_key.clone(), ca_keypair.serialize_pem(), true));
    let issuer = Issuer::new(ca_params, ca_keypair);

    let server = leaf(COORDINATOR_NAME, sans, ExtendedKeyUsagePurpose::ServerAuth, &issuer)?;
    let mut issued = vec![(COORDINATOR_NAME.to_owned(), server)];
    issued.push((
        OPERATOR_NAME.to_owned(),
        leaf(OPERATOR_NAME, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &issuer)?,
    ));
    for name in parties {
        issued.push((
            name.clone(),
            leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &issuer)?,
        ));
    }

    let mut paths = CertPaths {
        ca_cert: ca_cert.clone(),
        ca_key,
        coordinator: TlsFiles { ca: PathBuf::new(), cert: PathBuf::new(), key: PathBuf::new() },
        operator: TlsFiles { ca: PathBuf::new(), cert: PathBuf::new(), key: PathBuf::new() },
        parties: BTreeMap::new(),
    };
    for (name, (cert_pem, key_pem)) in issued {
        let tls = TlsFiles {
            ca: ca_cert.clone(),
            cert: out.join(format!("{name}.pem")),
            key: out.join(format!("{name}.key")),
        };
        files.push((tls.cert.clone(), cert_pem, false));
        files.push((tls.key.clone(), key_pem, true));
        match name.as_str() {
            COORDINATOR_NAME => paths.coordinator = tls,
            OPERATOR_NAME => paths.operator = tls,
            _ => {
                paths.parties.insert(name, tls);
            }
        }
    }
    for (path, contents, secret) in &files {
        write_new(path, contents, *secret)?;
    }
    Ok(paths)
}

/// Signs a certificate for a new party with an existing CA (`dir/ca.pem`, `dir/ca.key`) and
/// writes `dir/<name>.pem` and `dir/<name>.key`.
pub fn add_party(dir: &Path, name: &str) -> Result<TlsFiles, TransportError> {
    validate_party_name(name)?;
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    for path in [&files.cert, &files.key] {
        if path.exists() {
            return Err(TransportError::Exists { path: path.clone() });
        }
    }
    let ca_key_path = dir.join("ca.key");
    let ca_pem = read_pem_text("CA certificate", &files.ca)?;
    let ca_key_pem = read_pem_text("CA key", &ca_key_path)?;
    let load_err = |source| TransportError::LoadCa {
        cert: files.ca.clone(),
        key: ca_key_path.clone(),
        source,
    };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(load_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(load_err)?;
    let (cert_pem, key_pem) = leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, &issuer)?;
    write_new(&files.cert, &cert_pem, false)?;
    write_new(&files.key, &key_pem, true)?;
    Ok(files)
}

/// Server TLS for the coordinator: its own certificate and key, and mandatory client
/// certificates signed by the federation CA.
pub fn server_tls(files: &TlsFiles) -> Result<ServerTlsConfig, TransportError> {
    let ca = read_certs("CA certificate", &files.ca)?;
    let identity = read_identity(files)?;
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false))
}

/// Client TLS for a participant or the operator: trusts only the federation CA, presents this
/// endpoint's certificate, and expects the server certificate to be valid for `domain`.
pub fn client_tls(files: &TlsFiles, domain: &str) -> Result<ClientTlsConfig, TransportError> {
    let ca = read_certs("CA certificate", &files.ca)?;
    let identity = read_identity(files)?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(identity)
        .domain_name(domain))
}

/// The subject common name of the leaf (first) certificate of a verified chain.
///
/// Call this only on certificates the TLS layer has verified against the federation CA (as
/// tonic's `peer_certs` are): the name is then the authenticated identity of the peer.
pub fn peer_name(certs: &[CertificateDer<'_>]) -> Result<String, TransportError> {
    let leaf = certs.first().ok_or(TransportError::NoPeerCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TransportError::BadPeerCertificate { reason: e.to_string() })?;
    let names: Vec<_> = cert.subject().iter_common_name().collect();
    if names.len() != 1 {
        return Err(TransportError::PeerCommonName { count: names.len() });
    }
    let name = names[0].as_str().map_err(|e| TransportError::BadPeerCertificate {
        reason: format!("common name is not a string: {e}"),
    })?;
    Ok(name.to_owned())
}

/// The authenticated name of the client that sent `req`, or `None` on a connection without a
/// verified client certificate (plain text, or a certificate without a single common name).
pub fn request_identity<T>(req: &tonic::Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    peer_name(&certs).ok()
}

fn generate_key(subject: &str) -> Result<KeyPair, TransportError> {
    KeyPair::generate()
        .map_err(|source| TransportError::CertGen { subject: subject.into(), source })
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that run behind the issuer's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name.push(DnType::OrganizationName, "fedcredit");
    // The CA signs leaves only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    params
}

fn server_sans(hosts: &[String]) -> Result<Vec<SanType>, TransportError> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for host in hosts {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            names.push(host.clone());
        }
    }
    names
        .into_iter()
        .map(|host| match host.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => {
                let invalid =
                    |reason: String| TransportError::InvalidHost { host: host.clone(), reason };
                let valid = !host.is_empty()
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
                if !valid {
                    return Err(invalid(
                        "not an IP address nor a DNS name of A-Z a-z 0-9 . -".into(),
                    ));
                }
                host.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| invalid(e.to_string()))
            }
        })
        .collect()
}

/// Issues a leaf certificate; returns (certificate PEM, key PEM).
fn leaf(
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), TransportError> {
    let key = generate_key(common_name)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "fedcredit");
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| TransportError::CertGen { subject: common_name.to_owned(), source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a new file, failing if it exists; secrets get mode 0600 on unix.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), TransportError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            TransportError::Exists { path: path.to_owned() }
        } else {
            TransportError::Write { path: path.to_owned(), source }
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| TransportError::Write { path: path.to_owned(), source })
}

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    fs::read(path).map_err(|source| TransportError::Read { what, path: path.to_owned(), source })
}

pub(crate) fn read_pem_text(what: &'static str, path: &Path) -> Result<String, TransportError> {
    let bytes = read_file(what, path)?;
    String::from_utf8(bytes).map_err(|_| TransportError::NotPem {
        what,
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// Reads a PEM file that must hold at least one certificate and nothing unparsable.
pub(crate) fn read_certs(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    let bytes = read_file(what, path)?;
    let not_pem = |reason: String| TransportError::NotPem { what, path: path.to_owned(), reason };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| not_pem(e.to_string()))?;
        x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| not_pem(format!("certificate {}: {e}", count + 1)))?;
        count += 1;
    }
    if count == 0 {
        return Err(not_pem("no CERTIFICATE block".into()));
    }
    Ok(bytes)
}

fn read_identity(files: &TlsFiles) -> Result<Identity, TransportError> {
    let cert = read_certs("certificate", &files.cert)?;
    let key = read_file("private key", &files.key)?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| TransportError::NotPem {
        what: "private key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Identity::from_pem(cert, key))
}

#[cfg(test)]
mod tests;
