//! Binds the coordinator: loads and checks its TLS material, binds the socket, opens the store,
//! resumes unfinished jobs, serves `Federation` and `Control` on one socket with mutual TLS
//! (or plain text with `insecure = true`), and shuts down gracefully when the given future
//! completes.
//!
//! The TLS handshake is done here (tokio-rustls, TLS 1.3, client certificates verified by
//! webpki against the federation CA) rather than inside tonic, so that a refused handshake is
//! visible: it is logged at warn with the peer's address and the reason (and the name the
//! certificate claims, unverified) and recorded in the audit log. Tonic reads the verified
//! client certificate of each accepted connection through its `Connected` implementation for
//! `tokio_rustls::server::TlsStream<TcpStream>`, so `Request::peer_certs` and
//! `Request::remote_addr` work as with tonic's own TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedcredit_proto::pb;
use fedcredit_transport::stream::MAX_FRAME;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self, DistinguishedName, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{
        NoServerSessionStorage, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::{CertifiedKey, SingleCertAndKey},
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tracing::{debug, info, warn};

use crate::control::ControlService;
use crate::service::FederationService;
use crate::store::Store;
use crate::{CoordinatorConfig, Shared, TlsPaths, UNAUTHENTICATED};

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Why the coordinator cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state directory or database cannot be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// TLS material cannot be loaded.
    #[error(transparent)]
    Tls(#[from] fedcredit_transport::tls::TransportError),
    /// A TLS file cannot be used; names the file and the key of `[tls]`.
    #[error("[tls] {key} = {path}: {reason}")]
    TlsFile {
        /// The key in `[tls]`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The coordinator's TLS material, loaded and checked: its certificate and key, and the
/// verifier of client certificates against the federation CA.
#[derive(Clone)]
struct ServerTls {
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(key: <redacted>)")
    }
}

fn tls_file(key: &'static str, path: &Path, reason: impl Into<String>) -> ServeError {
    ServeError::TlsFile { key, path: path.to_owned(), reason: reason.into() }
}

fn read_pem_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let bytes =
        std::fs::read(path).map_err(|e| tls_file(key, path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(key, path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_file(key, path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

impl ServerTls {
    /// Loads the CA, certificate and key, and checks that the key matches the certificate and
    /// that the certificate is signed by the CA.
    fn load(paths: &TlsPaths) -> Result<Self, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = read_pem_certs("ca", &paths.ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in &ca {
            roots
                .add(c.clone())
                .map_err(|e| tls_file("ca", &paths.ca, format!("not a CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_file("ca", &paths.ca, e.to_string()))?;
        let chain = read_pem_certs("cert", &paths.cert)?;
        let key_bytes = std::fs::read(&paths.key)
            .map_err(|e| tls_file("key", &paths.key, format!("cannot read: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|e| tls_file("key", &paths.key, format!("not a PEM private key: {e}")))?;
        let certified = CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| {
            tls_file("key", &paths.key, format!("does not fit {}: {e}", paths.cert.display()))
        })?;
        // A coordinator certificate from another CA would make every participant fail with
        // an unknown-issuer error: say so here. Its names are checked by each client against
        // its `server_name`, so a name mismatch is not an error at this point.
        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| tls_file("ca", &paths.ca, e.to_string()))?;
        let name = ServerName::try_from("localhost")
            .map_err(|e| tls_file("cert", &paths.cert, e.to_string()))?;
        match server_verifier.verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            UnixTime::now(),
        ) {
            Ok(_) => {}
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => {
                return Err(tls_file(
                    "cert",
                    &paths.cert,
                    format!("is not a valid server certificate under {}: {e}", paths.ca.display()),
                ));
            }
        }
        let tls = Self { provider, verifier, key: Arc::new(certified) };
        tls.acceptor().map_err(|e| tls_file("cert", &paths.cert, e.to_string()))?;
        Ok(tls)
    }

    /// An acceptor for one connection, with a verifier that remembers the name the client's
    /// certificate claims (for the log, should the handshake be refused).
    fn acceptor(&self) -> Result<(TlsAcceptor, Arc<Recording>), rustls::Error> {
        let recording =
            Arc::new(Recording { inner: self.verifier.clone(), claimed: Mutex::new(None) });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(recording.clone())
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(self.key.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection authenticates afresh (participants keep one long-lived stream).
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok((TlsAcceptor::from(Arc::new(config)), recording))
    }
}

/// Verifies client certificates with the inner (webpki) verifier, noting the common name the
/// certificate claims before it is verified.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ClientCertVerifier>,
    claimed: Mutex<Option<String>>,
}

impl Recording {
    fn claimed(&self) -> Option<String> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientCertVerifier for Recording {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Ok(name) = fedcredit_transport::tls::peer_name(std::slice::from_ref(end_entity)) {
            *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
        }
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a handshake failed, for the operator; `None` when the peer just went away.
fn refusal_reason(e: &std::io::Error) -> Option<String> {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => None,
            _ => Some(e.to_string()),
        };
    };
    Some(match tls {
        E::InvalidCertificate(c) => {
            let why = match c {
                C::BadSignature | C::UnknownIssuer => {
                    "it is not signed by this federation's CA".to_string()
                }
                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "it is not valid yet (clock skew?)".to_string()
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                    "it is not a client certificate".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("client certificate refused: {why} ({tls})")
        }
        E::NoCertificatesPresented => "no client certificate presented".into(),
        E::AlertReceived(alert) => format!(
            "the client refused the coordinator's certificate ({alert:?}): check its [tls] ca \
             and server_name"
        ),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("not a TLS client ({tls})")
        }
        other => other.to_string(),
    })
}

/// After a refused handshake: ends this side (the TLS alert went out before) and drains what
/// the client still sends for a moment, so closing does not reset the connection and
/// discard the alert before the client read it.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Accepts TCP connections and does each TLS handshake in its own task; handshaken streams go
/// to the server, refusals to the log and the audit log.
async fn accept_tls(
    listener: TcpListener,
    tls: ServerTls,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<tokio_rustls::server::TlsStream<TcpStream>>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
            _ = accepted.closed() => return,
        };
        // Small protocol messages must not wait for delayed ACKs (Nagle).
        let _ = tcp.set_nodelay(true);
        let (acceptor, recording) = match tls.acceptor() {
            Ok(x) => x,
            Err(e) => {
                warn!(%peer, error = %e, "cannot set up TLS for a connection");
                continue;
            }
        };
        let shared = shared.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp).into_fallible()).await;
            let claimed = recording.claimed();
            let (reason, tcp) = match outcome {
                Ok(Ok(stream)) => {
                    debug!(%peer, party = claimed.as_deref().unwrap_or(""), "TLS handshake done");
                    let _ = accepted.send(stream).await;
                    return;
                }
                Ok(Err((e, tcp))) => match refusal_reason(&e) {
                    Some(r) => (r, tcp),
                    None => {
                        debug!(%peer, error = %e, "connection closed during the TLS handshake");
                        return;
                    }
                },
                Err(_) => {
                    info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The alert saying why is written; close gently so the client reads it (and can
            // tell the operator) rather than a connection reset.
            tokio::spawn(linger(tcp));
            let claim = claimed
                .as_deref()
                .map(|c| format!(" (certificate for `{c}`, not verified)"))
                .unwrap_or_default();
            warn!(%peer, claimed = claimed.as_deref().unwrap_or(""), %reason, "refused a TLS handshake");
            shared.audit_event(
                UNAUTHENTICATED,
                None,
                "tls_handshake",
                &format!("refused from {peer}{claim}: {reason}"),
            );
        });
    }
}

/// A bound coordinator, ready to serve.
#[derive(Debug)]
pub struct Bound {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The HTTP/JSON API's address, when `[scoring] http_listen` is set.
    pub http_addr: Option<SocketAddr>,
    listener: TcpListener,
    http: Option<TcpListener>,
    shared: Arc<Shared>,
    tls: Option<ServerTls>,
}

impl Bound {
    /// The shared state (for tests and embedding).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Loads and checks the TLS material, binds the socket and opens the store (in that order,
/// so a missing certificate or a busy port leaves no state folder behind); jobs left
/// unfinished by an earlier run are resumed once [`serve`] starts.
///
/// # Errors
/// [`ServeError`] naming the file or address.
pub async fn bind(config: CoordinatorConfig) -> Result<Bound, ServeError> {
    let tls = match &config.tls {
        Some(paths) => Some(ServerTls::load(paths)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let (http, http_addr) = match config.scoring.http_listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| ServeError::Bind { addr: a, source })?;
            let bound = l.local_addr().map_err(|source| ServeError::Bind { addr: a, source })?;
            (Some(l), Some(bound))
        }
        None => (None, None),
    };
    let verifier: Option<Arc<dyn fedcredit_federation::auth::Verifier>> = match &config.tls {
        Some(paths) => {
            Some(Arc::new(fedcredit_transport::identity::CaVerifier::from_file(&paths.ca)?))
        }
        None => None,
    };
    let store = Store::open(&config.state_dir)?;
    let shared = Shared::with_verifier(config, store, verifier);
    Ok(Bound { addr, http_addr, listener, http, shared, tls })
}

/// Serves until `shutdown` completes, then stops accepting, ends the job tasks (their jobs
/// stay resumable) and returns.
///
/// # Errors
/// [`ServeError`] when the server fails.
pub async fn serve(
    bound: Bound,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Bound { addr, listener, http, shared, tls, .. } = bound;
    if tls.is_none() {
        warn!("serving WITHOUT TLS (insecure = true): for local experiments only");
    }
    for r in shared.store.unfinished_jobs()? {
        info!(job = %r.id, rounds_done = r.rounds_done, "resuming unfinished job");
        if let Err(e) = shared.start_job(&r) {
            warn!(error = %e, "cannot resume");
        }
    }
    let max = shared.config.max_message_bytes.max(MAX_FRAME);
    let federation =
        pb::federation_server::FederationServer::new(FederationService::new(shared.clone()))
            .max_decoding_message_size(MAX_FRAME)
            .max_encoding_message_size(MAX_FRAME);
    let control = pb::control_server::ControlServer::new(ControlService::new(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let scoring = pb::scoring_server::ScoringServer::new(
        crate::scoring::grpc::ScoringService::new(shared.clone()),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    crate::scoring::spawn_tasks(&shared);
    if let Some(l) = http {
        let addr = l.local_addr().ok();
        info!(?addr, "scoring HTTP API listening");
        let s = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::scoring::http::serve(s, l).await {
                warn!(error = %e, "the HTTP API stopped");
            }
        });
    }
    info!(%addr, tls = tls.is_some(), "coordinator listening");
    let token = shared.shutdown.clone();
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .add_service(federation)
        .add_service(control)
        .add_service(scoring);
    let signal = async move {
        shutdown.await;
        info!("shutting down");
        token.cancel();
    };
    match tls {
        Some(tls) => {
            let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
            tokio::spawn(accept_tls(listener, tls, shared.clone(), tx));
            let incoming = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
            router.serve_with_incoming_shutdown(incoming, signal).await?;
        }
        None => {
            // Small protocol messages must not wait for delayed ACKs (Nagle): set TCP_NODELAY
            // on every accepted socket (the builder's own setting does not reach a custom
            // listener).
            let incoming = TcpListenerStream::new(listener).map(|s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            });
            router.serve_with_incoming_shutdown(incoming, signal).await?;
        }
    }
    Ok(())
}
