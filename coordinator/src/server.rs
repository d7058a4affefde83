//! Binds the coordinator: opens the store, resumes unfinished jobs, serves `Federation` and
//! `Control` on one socket with mutual TLS (or plain text with `insecure = true`), and shuts
//! down gracefully when the given future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fedcredit_proto::pb;
use fedcredit_transport::stream::MAX_FRAME;
use fedcredit_transport::tls::{TlsFiles, server_tls};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use crate::control::ControlService;
use crate::service::FederationService;
use crate::store::Store;
use crate::{CoordinatorConfig, Shared};

/// Why the coordinator cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The state directory or database cannot be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// TLS material cannot be loaded.
    #[error(transparent)]
    Tls(#[from] fedcredit_transport::tls::TransportError),
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

/// A bound coordinator, ready to serve.
#[derive(Debug)]
pub struct Bound {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Bound {
    /// The shared state (for tests and embedding).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Opens the store and binds the socket; jobs left unfinished by an earlier run are resumed
/// once [`serve`] starts.
///
/// # Errors
/// [`ServeError`] naming the file or address.
pub async fn bind(config: CoordinatorConfig) -> Result<Bound, ServeError> {
    let store = Store::open(&config.state_dir)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let verifier: Option<Arc<dyn fedcredit_federation::auth::Verifier>> = match &config.tls {
        Some(tls) => Some(Arc::new(fedcredit_transport::identity::CaVerifier::from_file(&tls.ca)?)),
        None => None,
    };
    let shared = Shared::with_verifier(config, store, verifier);
    Ok(Bound { addr, listener, shared })
}

/// Serves until `shutdown` completes, then stops accepting, ends the job tasks (their jobs
/// stay resumable) and returns.
///
/// # Errors
/// [`ServeError`] when TLS cannot be loaded or the server fails.
pub async fn serve(
    bound: Bound,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Bound { addr, listener, shared } = bound;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &shared.config.tls {
        let files = TlsFiles { ca: tls.ca.clone(), cert: tls.cert.clone(), key: tls.key.clone() };
        builder = builder.tls_config(server_tls(&files)?)?;
    } else {
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
    info!(%addr, tls = shared.config.tls.is_some(), "coordinator listening");
    let token = shared.shutdown.clone();
    // Small protocol messages must not wait for delayed ACKs (Nagle): set TCP_NODELAY on every
    // accepted socket (the builder's own setting does not reach a custom listener).
    let incoming = TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    builder
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .add_service(federation)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            info!("shutting down");
            token.cancel();
        })
        .await?;
    Ok(())
}
