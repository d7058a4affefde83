//! The daemon's loop: dial the coordinator, say hello, answer job offers, run each job's
//! protocol role, and redial with exponential backoff when the coordinator is away.
//!
//! For a job offer the daemon loads its table through `fedcredit-datasets`, checks it against
//! the job's columns (a missing column, a text cell in a numeric column, a bad label: the offer
//! is declined naming the party, column and row — the file's location stays in the local log),
//! holds out its validation rows, and replies with its schema (column names and kinds, never
//! values), its signed channel key and the state version it restored. Each job then has a
//! [`PartySession`] (its role, channels and verified directory) and a worker task that feeds
//! it the job's messages in order, off the async threads, and sends what it produces:
//! protocol messages, payloads sealed for other parties, and streams pulled one message at a
//! time (in their own task, so a large outgoing payload never stops the job from reading).
//! Whenever the session asks, its checkpoint is appended to the job's journal under the state
//! directory ([`crate::journal`]) before anything it produced is sent (and nothing is sent if
//! that fails), so a daemon killed at any instant resumes the job.
//!
//! Beside jobs the stream carries scoring ([`crate::serving`]): score and contagion queries
//! are answered off the async threads, and a watcher checks the table every
//! `data.watch_secs` and tells the coordinator of a new snapshot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_datasets::split::stratified_split;
use fedcredit_datasets::table::{TableSpec, load_table};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::{self, PartySession, SessionOutput, split_checkpoint};
use fedcredit_federation::serving::ServingManifest;
use fedcredit_federation::vertical::model::PartyModel;
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::{Dataset, FeatureKind, FeatureSpec};
use fedcredit_proto::pb;
use fedcredit_transport::backoff::Backoff;
use fedcredit_transport::stream::{Inbound, MAX_FRAME, Outbound};
use fedcredit_transport::tls::client_tls;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::ParticipantConfig;
use crate::journal::Journal;

/// Job messages queued per job before the stream reader waits.
const JOB_QUEUE: usize = 64;
/// Messages queued for the coordinator before a sender waits.
const OUT_QUEUE: usize = 32;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// TLS material, the state directory or the coordinator URL cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The coordinator refused this party for a reason retrying cannot fix (a certificate
    /// from another CA, a server name the coordinator's certificate does not hold, a denied
    /// identity); the message says what to check.
    #[error("{0}")]
    Refused(String),
}

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot reach the coordinator: {}", chain(.0))]
    Connect(#[from] tonic::transport::Error),
    #[error("the coordinator refused the stream: {}", status_text(.0))]
    Refused(tonic::Status),
    #[error("stream: {0}")]
    Stream(String),
}

/// An error and its causes on one line, each cause once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// A status as one line: its code, message and causes (not tonic's multi-line debug form).
fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), chain(s))
}

/// The rustls error somewhere in an error's causes (I/O errors carry it inside).
fn find_tls_error<'a>(
    mut err: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a tokio_rustls::rustls::Error> {
    while let Some(e) = err {
        if let Some(t) = e.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(t);
        }
        if let Some(t) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<tokio_rustls::rustls::Error>())
        {
            return Some(t);
        }
        err = e.source();
    }
    None
}

/// Why a session error cannot heal by retrying, with what to check; `None` when it may
/// (the coordinator is down, restarting or unreachable for now).
fn permanent_reason(e: &SessionError, config: &ParticipantConfig) -> Option<String> {
    let (source, text): (Option<&(dyn std::error::Error + 'static)>, String) = match e {
        SessionError::Connect(t) => (Some(t), chain(t)),
        SessionError::Refused(s) => {
            if matches!(s.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated) {
                return Some(format!(
                    "the coordinator refused party `{}`: {}",
                    config.name,
                    s.message()
                ));
            }
            (Some(s), chain(s))
        }
        SessionError::Stream(_) => return None,
    };
    if let Some(tls) = find_tls_error(source) {
        return tls_refusal(tls, config);
    }
    // HTTP/2 passes I/O errors on as text: the alert may be only in the message.
    if text.contains("received fatal alert: ") {
        let alert: String = text
            .split("received fatal alert: ")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        return (alert != "CloseNotify")
            .then(|| refused_ours(config, &format!("TLS alert {alert}")));
    }
    if text.contains("invalid peer certificate") {
        return Some(format!("the coordinator's certificate is refused: {text}"));
    }
    None
}

fn refused_ours(config: &ParticipantConfig, what: &str) -> String {
    let cert = config.tls.as_ref().map(|t| t.cert.display().to_string()).unwrap_or_default();
    format!(
        "the coordinator refused this party's certificate {cert} ({what}): it is not signed by \
         the coordinator's CA, or has expired. Ask the federation's operator for a certificate \
         from its CA (`fedcredit certs add --party {}`)",
        config.name
    )
}

/// What a TLS error means for this party, when retrying cannot fix it.
fn tls_refusal(tls: &tokio_rustls::rustls::Error, config: &ParticipantConfig) -> Option<String> {
    use tokio_rustls::rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let ca = config.tls.as_ref().map(|t| t.ca.display().to_string()).unwrap_or_default();
    match tls {
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::DecryptError
            | A::CertificateRequired),
        ) => Some(refused_ours(config, &format!("TLS alert {a:?}"))),
        E::InvalidCertificate(c) => Some(match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the coordinator's certificate is not valid for server_name `{}` ({c:?}): set \
                 server_name in this party's config to a name the coordinator's certificate \
                 holds, or have it reissued with `fedcredit certs init --hosts HOST`",
                config.server_name
            ),
            C::UnknownIssuer | C::BadSignature => format!(
                "the coordinator's certificate is not signed by [tls] ca {ca} ({c:?}): this \
                 party trusts another federation's CA"
            ),
            other => format!("the coordinator's certificate is refused: {other:?}"),
        }),
        _ => None,
    }
}

/// A bare TLS handshake with this party's certificate, to tell a refused certificate (the
/// coordinator answers with an alert) from a coordinator that is away: behind HTTP/2 the
/// alert often surfaces only as "connection closed". Returns the TLS error, if the
/// coordinator could be reached and refused the handshake.
async fn probe_tls(config: &ParticipantConfig) -> Option<tokio_rustls::rustls::Error> {
    use tokio::io::AsyncReadExt;
    use tokio_rustls::rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    };
    let tls = config.tls.as_ref()?;
    let uri: tonic::codegen::http::Uri = config.coordinator.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&tls.ca).ok()? {
        roots.add(c.ok()?).ok()?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&tls.cert).ok()?.collect::<Result<_, _>>().ok()?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(config.server_name.clone()).ok()?;
    let io_tls =
        |e: &std::io::Error| e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned();
    let step = Duration::from_secs(5);
    let tcp = tokio::time::timeout(step, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .ok()?
        .ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let mut stream = match tokio::time::timeout(step, connector.connect(name, tcp)).await.ok()? {
        Ok(s) => s,
        Err(e) => return io_tls(&e),
    };
    // TLS 1.3: the server checks this party's certificate after the client's handshake is
    // done, and says so with an alert; an accepted connection stays silent.
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
        Ok(Err(e)) => io_tls(&e),
        _ => None,
    }
}

/// A running job: its session and the queue of its worker.
struct JobWorker {
    tx: mpsc::Sender<pb::ToParty>,
    cancel: CancellationToken,
    session: Arc<Mutex<PartySession>>,
    /// How a vertical model's part reads the table, kept beside the part for scoring.
    manifest: Option<ServingManifest>,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    config: ParticipantConfig,
    me: PartyId,
    identity: protocol::Identity,
    serving: Arc<crate::serving::Server>,
}

/// The schema the coordinator compares across parties.
fn schema_to_wire(specs: &[FeatureSpec]) -> Vec<pb::FeatureColumn> {
    specs
        .iter()
        .map(|s| match &s.kind {
            FeatureKind::Numeric => {
                pb::FeatureColumn { name: s.name.clone(), categorical: false, levels: vec![] }
            }
            FeatureKind::Categorical { levels } => pb::FeatureColumn {
                name: s.name.clone(),
                categorical: true,
                levels: levels.clone(),
            },
        })
        .collect()
}

/// Numbers outgoing messages and frames them onto the stream.
#[derive(Clone)]
struct Outgoing {
    tx: mpsc::Sender<pb::participant_message::Body>,
}

/// Why a job worker's blocking call ended without outputs.
enum Work {
    /// The message was refused (nothing was sent).
    Refused(String),
    /// Messages were sent but the checkpoint to store after them could not be.
    Unstored(String),
    /// The stream to the coordinator is closed.
    Closed,
}

impl Outgoing {
    async fn send(&self, body: pb::participant_message::Body) -> Result<(), SessionError> {
        self.tx.send(body).await.map_err(|_| SessionError::Stream("stream closed".into()))
    }
}

/// `job` with every character but letters, digits, `-` and `_` replaced, for file names.
fn safe_name(job: &str) -> String {
    job.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

impl Daemon {
    /// A daemon for a checked configuration.
    ///
    /// # Errors
    /// [`DaemonError::Setup`] when the certificate key or CA cannot be loaded.
    pub fn new(config: ParticipantConfig) -> Result<Self, DaemonError> {
        let me = PartyId(config.name.clone());
        let identity = match &config.tls {
            Some(tls) => {
                let id = fedcredit_transport::identity::party_identity(tls)
                    .map_err(|e| DaemonError::Setup(e.to_string()))?;
                if let Some(s) = id.signer.as_ref().filter(|s| s.party() != &me) {
                    return Err(DaemonError::Setup(format!(
                        "the certificate {} is issued to `{}`, but this party is `{me}`",
                        tls.cert.display(),
                        s.party()
                    )));
                }
                id
            }
            None => protocol::Identity::default(),
        };
        let serving = Arc::new(crate::serving::Server::new(
            me.0.clone(),
            identity.clone(),
            config.data.clone(),
            config.state_dir.join("models"),
        ));
        Ok(Self { config, me, identity, serving })
    }

    /// Where the party keeps its part of the model trained by job `job`.
    pub fn model_part_path(&self, job: &str) -> PathBuf {
        self.config.state_dir.join("models").join(format!("{}.json", safe_name(job)))
    }

    /// Writes the party's part of a vertical model (its coefficients, bins or splits) under
    /// `state_dir/models/`, where scoring finds it; other parties and the coordinator only
    /// ever get a reference to it.
    /// A model's part is kept with its serving manifest (written first, so that a part
    /// never appears without one) and starts serving.
    fn keep_model_part(&self, job: &str, worker: &JobWorker) {
        let Some(part) = worker.session.lock().unwrap_or_else(|e| e.into_inner()).model_part()
        else {
            return;
        };
        let path = self.model_part_path(job);
        let is_model = serde_json::from_str::<PartyModel>(&part).is_ok();
        let manifest = worker.manifest.as_ref().filter(|_| is_model).map(|m| {
            serde_json::to_vec_pretty(m).map(|j| (crate::serving::manifest_path(&path), j))
        });
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            if let Some(Ok((mpath, json))) = &manifest {
                crate::journal::write_private(mpath, json)?;
            }
            crate::journal::write_private(&path, part.as_bytes())
        });
        match written {
            Ok(()) => info!(job, path = %path.display(), "kept this party's part of the model"),
            Err(e) => warn!(job, path = %path.display(), error = %e, "cannot keep the model part"),
        }
        if is_model {
            let serving = self.serving.clone();
            tokio::task::spawn_blocking(move || serving.refresh());
        }
    }

    fn state_path(&self, job: &str) -> PathBuf {
        self.config.state_dir.join(format!("{}.session", safe_name(job)))
    }

    async fn channel(&self) -> Result<Channel, SessionError> {
        let mut ep = Endpoint::from_shared(self.config.coordinator.clone())
            .map_err(SessionError::Connect)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.config.tls {
            let cfg = client_tls(tls, &self.config.server_name)
                .map_err(|e| SessionError::Stream(e.to_string()))?;
            ep = ep.tls_config(cfg)?;
        }
        Ok(ep.connect().await?)
    }

    /// Runs until `shutdown` is cancelled, reconnecting with backoff while the coordinator is
    /// away. Stops on errors that retrying cannot fix.
    ///
    /// # Errors
    /// [`DaemonError::Setup`] when the TLS files or the state directory cannot be used;
    /// [`DaemonError::Refused`] when the coordinator refuses this party's certificate or
    /// identity, or its certificate is not one this party can trust (retrying cannot help).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        if let Some(tls) = &self.config.tls {
            client_tls(tls, &self.config.server_name)
                .map_err(|e| DaemonError::Setup(e.to_string()))?;
        }
        std::fs::create_dir_all(&self.config.state_dir).map_err(|e| {
            DaemonError::Setup(format!(
                "cannot create the state directory {}: {e}",
                self.config.state_dir.display()
            ))
        })?;
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(self.config.max_backoff_secs),
            2.0,
            0.2,
            ChaCha8Rng::from_rng(&mut rand::rng()),
        )
        .map_err(|e| DaemonError::Setup(e.to_string()))?;
        let this = Arc::new(self);
        info!(coordinator = %this.config.coordinator, "participant starting");
        loop {
            let span = info_span!("session", party = %this.me);
            // The session watches `shutdown` itself, so that it can close its stream cleanly.
            let mut welcomed = false;
            let result = this
                .clone()
                .session(&mut backoff, &mut welcomed, shutdown.clone())
                .instrument(span)
                .await;
            if shutdown.is_cancelled() {
                // Give the connection a moment to close (TLS close_notify) before the process
                // ends, so the coordinator sees a clean goodbye.
                tokio::time::sleep(Duration::from_millis(100)).await;
                info!("participant stopped");
                return Ok(());
            }
            if let Err(e) = &result {
                let mut why = permanent_reason(e, &this.config);
                // A session that failed before the coordinator greeted it may hide a refused
                // certificate behind "connection closed": ask with a bare handshake.
                if why.is_none() && !matches!(e, SessionError::Stream(_)) && !welcomed {
                    why = probe_tls(&this.config).await.and_then(|t| tls_refusal(&t, &this.config));
                }
                if let Some(why) = why {
                    tracing::error!(reason = %why, "not retrying: this cannot heal by reconnecting");
                    return Err(DaemonError::Refused(why));
                }
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) => info!(?delay, "the coordinator closed the stream; reconnecting"),
                Err(e) => warn!(error = %e, ?delay, "session ended; reconnecting"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn session(
        self: Arc<Self>,
        backoff: &mut Backoff<ChaCha8Rng>,
        welcomed: &mut bool,
        shutdown: CancellationToken,
    ) -> Result<(), SessionError> {
        let channel = tokio::select! {
            c = self.channel() => c?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let mut client = pb::federation_client::FederationClient::new(channel)
            .max_decoding_message_size(MAX_FRAME)
            .max_encoding_message_size(MAX_FRAME);
        let (frames_tx, frames_rx) = mpsc::channel::<pb::ParticipantFrame>(16);
        let (out_tx, mut out_rx) = mpsc::channel::<pb::participant_message::Body>(OUT_QUEUE);
        let fault = self.config.fault.clone();
        // Writer: numbers messages and frames them (chunked when large).
        let writer = tokio::spawn(async move {
            let mut outbound = Outbound::new();
            let mut seq = 0u64;
            while let Some(body) = out_rx.recv().await {
                if let Some(f) = &fault {
                    check_fault(f, &body);
                }
                seq += 1;
                let msg = pb::ParticipantMessage { seq, body: Some(body) };
                let Ok(frames) = outbound.participant(msg) else { continue };
                for f in frames {
                    if frames_tx.send(f).await.is_err() {
                        return;
                    }
                }
            }
        });
        let out = Outgoing { tx: out_tx };
        out.send(pb::participant_message::Body::Hello(pb::Hello {
            party: self.me.0.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
        .await?;
        let opened = tokio::select! {
            r = client.participate(ReceiverStream::new(frames_rx)) => r,
            _ = shutdown.cancelled() => {
                writer.abort();
                return Ok(());
            }
        };
        let mut stream = match opened {
            Ok(r) => r.into_inner(),
            Err(status) => {
                writer.abort();
                return Err(SessionError::Refused(status));
            }
        };
        let mut inbound = Inbound::new(64 * 1024 * 1024);
        let mut jobs: HashMap<String, JobWorker> = HashMap::new();
        let watcher = tokio::spawn(watch_snapshots(
            self.serving.clone(),
            self.config.data.watch_secs,
            out.clone(),
        ));
        let result = loop {
            let frame = tokio::select! {
                f = stream.message() => f,
                _ = shutdown.cancelled() => {
                    // A clean goodbye: end this side of the stream (the writer owns it) and
                    // let the coordinator end its side, briefly.
                    writer.abort();
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(Some(_)) = stream.message().await {}
                    })
                    .await;
                    break Ok(());
                }
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(status) => break Err(SessionError::Refused(status)),
            };
            let msg = match inbound.coordinator(frame) {
                Ok(Some((m, _))) => m,
                Ok(None) => continue,
                Err(e) => break Err(SessionError::Stream(e.to_string())),
            };
            let Some(body) = msg.body else { continue };
            use pb::coordinator_message::Body;
            match body {
                Body::Welcome(w) => {
                    info!(as_party = %w.party, "connected to the coordinator");
                    backoff.reset();
                    *welcomed = true;
                }
                Body::Ack(a) => {
                    if a.outcome() != pb::ack::Outcome::Accepted {
                        warn!(seq = a.seq, outcome = ?a.outcome(), reason = %a.reason, "message not accepted");
                    }
                }
                Body::JobOffer(offer) => {
                    if let Some(old) = jobs.remove(&offer.job_id) {
                        old.cancel.cancel();
                    }
                    let (reply, worker) = self.clone().join(&offer, &out).await;
                    if let Some(w) = worker {
                        jobs.insert(offer.job_id.clone(), w);
                    }
                    if let Err(e) = out.send(pb::participant_message::Body::JobReply(reply)).await {
                        break Err(e);
                    }
                }
                Body::Job(m) => match jobs.get(&m.job_id) {
                    Some(w) => {
                        // Waits when the job's worker is behind: back-pressure to the
                        // coordinator rather than an unbounded queue.
                        if w.tx.send(m).await.is_err() {
                            warn!("job worker gone");
                        }
                    }
                    None => debug!(job = %m.job_id, "message for a job this party has not joined"),
                },
                Body::ScoreQuery(q) => {
                    let (serving, out) = (self.serving.clone(), out.clone());
                    tokio::spawn(async move {
                        if let Ok(r) = tokio::task::spawn_blocking(move || serving.answer(&q)).await
                        {
                            let _ = out.send(pb::participant_message::Body::ScoreReply(r)).await;
                        }
                    });
                }
                Body::ContagionQuery(q) => {
                    let (serving, out) = (self.serving.clone(), out.clone());
                    tokio::spawn(async move {
                        if let Ok(r) =
                            tokio::task::spawn_blocking(move || serving.contagion(&q)).await
                        {
                            let _ =
                                out.send(pb::participant_message::Body::ContagionReply(r)).await;
                        }
                    });
                }
                Body::JobEnded(end) => {
                    info!(job = %end.job_id, state = %end.state, reason = %end.reason, "job ended");
                    if let Some(w) = jobs.remove(&end.job_id) {
                        w.cancel.cancel();
                        if end.state == "succeeded" {
                            self.keep_model_part(&end.job_id, &w);
                        }
                    }
                    let path = self.state_path(&end.job_id);
                    if end.state == "succeeded" || end.state == "cancelled" {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        };
        for (_, w) in jobs {
            w.cancel.cancel();
        }
        watcher.abort();
        drop(out);
        writer.abort();
        result
    }

    /// Loads and checks the table for a job offer and starts the job's worker.
    async fn join(
        self: Arc<Self>,
        offer: &pb::JobOffer,
        out: &Outgoing,
    ) -> (pb::JobReply, Option<JobWorker>) {
        let job_id = offer.job_id.clone();
        let decline = |reason: String| {
            warn!(job = %job_id, %reason, "declining the job");
            (pb::JobReply { job_id: job_id.clone(), reason, ..Default::default() }, None)
        };
        let spec = match JobSpec::from_json(&offer.spec_json) {
            Ok(s) => s,
            Err(e) => return decline(format!("{}: the job spec cannot be used: {e}", self.me)),
        };
        if !spec.parties.contains(&self.me) {
            return decline(format!("{} is not among the job's parties", self.me));
        }
        let this = self.clone();
        let spec2 = spec.clone();
        let job = JobId(job_id.clone());
        let built = tokio::task::spawn_blocking(move || this.build_session(&job, &spec2)).await;
        let (session, schema, journal) = match built {
            Ok(Ok(x)) => x,
            Ok(Err(reason)) => return decline(reason),
            Err(e) => return decline(format!("{}: loading the table failed: {e}", self.me)),
        };
        let key = match session.channel_key() {
            Ok(k) => Some(k),
            Err(e) => return decline(format!("{}: cannot sign its channel key: {e}", self.me)),
        };
        let state = session.join_state();
        let manifest = spec.vertical.as_ref().map(|v| ServingManifest {
            job: job_id.clone(),
            id_column: spec.data.id.clone(),
            label_holder: v.label_holder == self.me,
            label_holder_party: v.label_holder.0.clone(),
            schema: schema.clone(),
        });
        info!(job = %job_id, columns = schema.len(), version = state.version, "joined the job");
        let (tx, rx) = mpsc::channel(JOB_QUEUE);
        let cancel = CancellationToken::new();
        let session = Arc::new(Mutex::new(session));
        let worker = tokio::spawn(
            self.clone()
                .work(
                    session.clone(),
                    Arc::new(Mutex::new(journal)),
                    rx,
                    out.clone(),
                    cancel.clone(),
                )
                .instrument(info_span!("job", job = %job_id, party = %self.me)),
        );
        drop(worker);
        (
            pb::JobReply {
                job_id,
                accepted: true,
                reason: String::new(),
                schema: schema_to_wire(&schema),
                channel_key: key,
                state_version: state.version,
                next_step: state.next_step,
            },
            Some(JobWorker { tx, cancel, session, manifest }),
        )
    }

    /// The session of a job: data loaded, role built or restored from the checkpoint.
    fn build_session(
        &self,
        job: &JobId,
        spec: &JobSpec,
    ) -> Result<(PartySession, Vec<FeatureSpec>, Journal), String> {
        let (loaded, schema) = load(&self.me, spec, &self.config.data)?;
        let path = self.state_path(&job.0);
        let mut rng = fedcredit_federation::protocol::os_rng();
        let (mut journal, saved) = Journal::open(&path)
            .map_err(|e| format!("{}: cannot open its state for the job: {e}", self.me))?;
        let (secret, role_bytes) = match saved.as_deref().map(split_checkpoint) {
            Some(Ok((s, r))) => {
                info!(path = %path.display(), "restoring the job from its checkpoint");
                (s, Some(r))
            }
            Some(Err(e)) => {
                warn!(path = %path.display(), error = %e, "unreadable checkpoint; starting fresh");
                (ChannelSecret::generate(&mut rng), None)
            }
            None => (ChannelSecret::generate(&mut rng), None),
        };
        let role = match loaded {
            Loaded::Vertical(table) => {
                let warm = match spec.vertical.as_ref().and_then(|v| v.warm_start.as_deref()) {
                    Some(from) => {
                        Some(std::fs::read_to_string(self.model_part_path(from)).map_err(|_| {
                            format!(
                                "{}: holds no part of the model of job {from} to warm-start from",
                                self.me
                            )
                        })?)
                    }
                    None => None,
                };
                protocol::new_vertical_role(job, spec, &self.me, table, role_bytes.as_deref(), warm)
            }
            Loaded::Horizontal { train, valid } => {
                protocol::new_role(spec, &self.me, Some(train), valid, role_bytes.as_deref())
            }
            Loaded::Nothing => {
                protocol::new_role(spec, &self.me, None, None, role_bytes.as_deref())
            }
        }
        .map_err(|e| format!("{}: {e}", self.me))?;
        let session = PartySession::new(
            job.clone(),
            spec,
            self.me.clone(),
            role,
            secret,
            self.identity.clone(),
            rng,
        );
        // The channel secret is kept from the start, so a restart keeps the same key.
        journal
            .append(&session.checkpoint())
            .map_err(|e| format!("{}: cannot write its state: {e}", self.me))?;
        Ok((session, schema, journal))
    }

    /// A job's worker: handles its messages in order, off the async threads.
    async fn work(
        self: Arc<Self>,
        session: Arc<Mutex<PartySession>>,
        journal: Arc<Mutex<Journal>>,
        mut rx: mpsc::Receiver<pb::ToParty>,
        out: Outgoing,
        cancel: CancellationToken,
    ) {
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = cancel.cancelled() => return,
            };
            let s = session.clone();
            let j = journal.clone();
            let tx = out.tx.clone();
            // One blocking call handles the message, stores a checkpoint asked for before
            // sending, sends the messages, then stores one asked for after sending (while
            // the messages travel, before the next message is handled).
            let received = std::time::Instant::now();
            let handled = tokio::task::spawn_blocking(move || {
                let queued = received.elapsed();
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                let outputs = s.handle(msg).map_err(|e| Work::Refused(e.to_string()))?;
                let handled = received.elapsed();
                let store = |s: &PartySession| {
                    let mut j = j.lock().unwrap_or_else(|e| e.into_inner());
                    j.append(&s.checkpoint())
                        .map_err(|e| format!("cannot write the job checkpoint: {e}"))
                };
                if outputs.iter().any(|o| matches!(o, SessionOutput::Checkpoint)) {
                    // Nothing is sent unless the step is stored first.
                    store(&s).map_err(Work::Refused)?;
                }
                let mut rest = Vec::new();
                let mut store_after = false;
                for o in outputs {
                    match o {
                        SessionOutput::Send(m) => tx
                            .blocking_send(pb::participant_message::Body::Job(m))
                            .map_err(|_| Work::Closed)?,
                        SessionOutput::CheckpointAfterSend => store_after = true,
                        SessionOutput::Checkpoint => {}
                        other => rest.push(other),
                    }
                }
                if store_after {
                    // What the role promised itself to remember must be stored before it
                    // answers anything else.
                    store(&s).map_err(Work::Unstored)?;
                }
                debug!(
                    queued_us = queued.as_micros() as u64,
                    handled_us = handled.as_micros() as u64,
                    stored_us = received.elapsed().as_micros() as u64,
                    "job message"
                );
                Ok::<_, Work>(rest)
            })
            .await;
            let outputs = match handled {
                Ok(Ok(o)) => o,
                Ok(Err(Work::Refused(e))) => {
                    warn!(error = %e, "message refused");
                    continue;
                }
                Ok(Err(Work::Unstored(e))) => {
                    // What was sent may need what was not stored: answer nothing more in this
                    // job (the coordinator counts this party as dropped).
                    warn!(error = %e, "leaving the job");
                    return;
                }
                Ok(Err(Work::Closed)) => return,
                Err(e) => {
                    warn!(error = %e, "job worker panicked");
                    continue;
                }
            };
            for o in outputs {
                match o {
                    // Stored and sent in the blocking call.
                    SessionOutput::Checkpoint
                    | SessionOutput::CheckpointAfterSend
                    | SessionOutput::Send(_) => {}
                    SessionOutput::Reports(source) => {
                        tokio::spawn(
                            send_reports(
                                session.lock().unwrap_or_else(|e| e.into_inner()).job().0.clone(),
                                source,
                                out.clone(),
                                cancel.clone(),
                            )
                            .in_current_span(),
                        );
                    }
                    SessionOutput::Stream { stream, stream_out } => {
                        tokio::spawn(
                            send_stream(
                                session.clone(),
                                stream,
                                stream_out,
                                out.clone(),
                                cancel.clone(),
                            )
                            .in_current_span(),
                        );
                    }
                }
            }
        }
    }
}

/// Loads the serving parts, then checks the table every `every` seconds (never when 0) and
/// tells the coordinator of each new snapshot.
async fn watch_snapshots(serving: Arc<crate::serving::Server>, every: f64, out: Outgoing) {
    let s = serving.clone();
    let _ = tokio::task::spawn_blocking(move || s.refresh()).await;
    if every <= 0.0 {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
        let s = serving.clone();
        if let Ok(Some(notice)) = tokio::task::spawn_blocking(move || s.refresh()).await {
            info!(snapshot = %notice.snapshot, moved = notice.changed_ids.len(), "new snapshot");
            if out.send(pb::participant_message::Body::Snapshot(notice)).await.is_err() {
                return;
            }
        }
    }
}

/// Pulls a stream one message at a time, seals it and sends it; waits whenever the stream
/// to the coordinator is full, so the sender holds only a few messages of any payload.
async fn send_stream(
    session: Arc<Mutex<PartySession>>,
    stream: u64,
    stream_out: protocol::OutStream,
    out: Outgoing,
    cancel: CancellationToken,
) {
    let protocol::OutStream { to, source } = stream_out;
    let source = Arc::new(Mutex::new(source.peekable()));
    let mut seq = 0u32;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let src = source.clone();
        let s = session.clone();
        let to2 = to.clone();
        let next = tokio::task::spawn_blocking(move || {
            let mut it = src.lock().unwrap_or_else(|e| e.into_inner());
            let item = it.next()?;
            let last = it.peek().is_none();
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            Some((s.seal(&to2, stream, seq, last, &item), last))
        })
        .await;
        let (sealed, last) = match next {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "stream producer panicked");
                return;
            }
        };
        match sealed {
            Ok(m) => {
                if out.send(pb::participant_message::Body::Job(m)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot seal a stream message");
                return;
            }
        }
        if last {
            return;
        }
        seq += 1;
    }
}

/// Pulls a stream of messages to the coordinator one at a time (off the async threads: a
/// message may take computing) and sends each, waiting whenever the stream to the
/// coordinator is full.
async fn send_reports(
    job_id: String,
    source: protocol::ReportStream,
    out: Outgoing,
    cancel: CancellationToken,
) {
    let source = Arc::new(Mutex::new(source));
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let src = source.clone();
        let next = tokio::task::spawn_blocking(move || {
            src.lock().unwrap_or_else(|e| e.into_inner()).next()
        })
        .await;
        let msg = match next {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "report producer panicked");
                return;
            }
        };
        let body = pb::participant_message::Body::Job(pb::FromParty {
            job_id: job_id.clone(),
            body: Some(pb::from_party::Body::Protocol(msg)),
        });
        if out.send(body).await.is_err() {
            return;
        }
    }
}

/// Testing only: exits (as if killed) instead of sending the configured secure-aggregation
/// message.
fn check_fault(f: &crate::config::FaultConfig, body: &pb::participant_message::Body) {
    use pb::sec_agg_client_message::Msg;
    let pb::participant_message::Body::Job(pb::FromParty {
        body:
            Some(pb::from_party::Body::Protocol(pb::RoleMessage {
                body: Some(pb::role_message::Body::Secagg(s)),
            })),
        ..
    }) = body
    else {
        return;
    };
    let (phase, header) = match &s.msg {
        // A secure upload (the benchmark's plaintext baseline sends no share bundles).
        Some(Msg::MaskedInput(m)) if !m.bundles.is_empty() => ("masked-input", &m.header),
        Some(Msg::Unmask(m)) => ("unmask", &m.header),
        _ => return,
    };
    if f.exit_before == phase && header.as_ref().is_some_and(|h| h.round == f.round) {
        warn!(round = f.round, phase, "fault injection: exiting before sending");
        std::process::exit(86);
    }
}

/// A party's rows for a job, as its role takes them.
enum Loaded {
    /// A benchmark: no table.
    Nothing,
    /// Horizontal: training rows and (optionally) validation rows.
    Horizontal { train: Dataset, valid: Option<Dataset> },
    /// Vertical: the whole table (ids, its columns, the label at the label holder).
    Vertical(fedcredit_federation::vertical::PartyTable),
}

/// Loads the party's table for `spec` (and, horizontally, splits off its validation rows);
/// returns it with the schema the party reports. Errors name the party, column and row; the
/// file's location and cell values (ids included) are logged here, not sent.
fn load(
    me: &PartyId,
    spec: &JobSpec,
    data: &crate::config::DataConfig,
) -> Result<(Loaded, Vec<FeatureSpec>), String> {
    if !spec.model.needs_data() {
        return Ok((Loaded::Nothing, Vec::new()));
    }
    let path = data.path.display().to_string();
    let name = data.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let private = |e: String| {
        warn!(party = %me, file = %path, error = %e, "the table does not fit the job");
        let e = e.replace(&path, &format!("its table ({name})"));
        format!("{me}: {e}")
    };
    // What the coordinator (and its operator) reads: party, column, row and problem; the
    // file's location, its other columns and cell values stay in the local log.
    let decline = |e: fedcredit_datasets::DataError| {
        use fedcredit_datasets::DataError as D;
        let full = e.to_string();
        // The local log gets the file's location too, but no cell value either (a repeated
        // id, a text cell): ids and rows are never logged.
        let local_detail = matches!(e, D::MissingColumn { .. });
        let said = match e {
            D::MissingColumn { column, role, .. } => {
                format!("{me}: its table ({name}) has no {role} column `{column}`")
            }
            D::TextInNumericColumn { column, row, .. } => format!(
                "{me}: column `{column}` holds text at data row {row} of its table ({name}) where \
                 numbers are expected (if it is a category, list it in categorical_columns)"
            ),
            D::LabelNotBinary { column, row, .. } => format!(
                "{me}: label column `{column}` is neither 0 nor 1 at data row {row} of its table \
                 ({name})"
            ),
            D::DuplicateId { column, first_row, second_row, .. } => format!(
                "{me}: id column `{column}` holds the same id at data rows {first_row} and \
                 {second_row} of its table ({name}) (ids must be unique)"
            ),
            D::NullId { column, row, .. } => {
                format!(
                    "{me}: id column `{column}` is empty at data row {row} of its table ({name})"
                )
            }
            _ => format!("{me}: {}", full.replace(&path, &format!("its table ({name})"))),
        };
        let logged = if local_detail { &full } else { &said };
        warn!(party = %me, file = %path, error = %logged, "the table does not fit the job");
        said
    };
    let vertical = spec.vertical.as_ref();
    let wants_label = vertical.is_none_or(|v| v.label_holder == *me);
    let mut t = TableSpec::new(&data.path, &spec.data.id);
    if wants_label {
        t = t.with_label(&spec.data.label);
    }
    if !spec.data.features.is_empty() {
        t = t.with_features(spec.data.features.iter().cloned());
    }
    if let Some(c) = &data.categorical_columns {
        t = t.with_categorical(c.iter().cloned());
    }
    let table = load_table(&t).map_err(decline)?;
    note_numeric_looking_text(me, &path, &table);
    let schema = table.features.specs.clone();
    if vertical.is_some() {
        let label = table.label.as_ref().map(|l| l.to_vec());
        let part = fedcredit_federation::vertical::PartyTable {
            ids: table.ids,
            features: table.features,
            label,
        };
        return Ok((Loaded::Vertical(part), schema));
    }
    let label = table.label.as_ref().map(|l| l.to_vec()).unwrap_or_default();
    let (train, valid) = if spec.data.validation_fraction > 0.0 {
        let split =
            stratified_split(&table.ids, &label, spec.data.validation_fraction, spec.data.seed)
                .map_err(|e| private(e.to_string()))?;
        let valid = table.select_rows(&split.test).dataset().map_err(|e| private(e.to_string()))?;
        (
            table.select_rows(&split.train).dataset().map_err(|e| private(e.to_string()))?,
            Some(valid),
        )
    } else {
        (table.dataset().map_err(|e| private(e.to_string()))?, None)
    };
    Ok((Loaded::Horizontal { train, valid }, schema))
}

/// Logs (locally) each text column whose values are nearly all numbers: most likely a
/// numeric column with a bad cell, which makes the party's columns differ from the others'.
/// Names the column and the first data row that is not a number, never the value.
fn note_numeric_looking_text(me: &PartyId, file: &str, table: &fedcredit_datasets::table::Table) {
    let values = &table.features.values;
    for (j, spec) in table.features.specs.iter().enumerate() {
        let FeatureKind::Categorical { levels } = &spec.kind else { continue };
        let numeric: Vec<bool> = levels.iter().map(|l| l.trim().parse::<f64>().is_ok()).collect();
        let n_numeric = numeric.iter().filter(|n| **n).count();
        let n_text = levels.len() - n_numeric;
        if n_text == 0 || n_numeric < 2 || n_numeric < 9 * n_text {
            continue;
        }
        let row = (0..values.nrows()).find(|&i| {
            let v = values[[i, j]];
            !v.is_nan() && numeric.get(v as usize).is_some_and(|n| !n)
        });
        if let Some(i) = row {
            warn!(
                party = %me,
                %file,
                column = %spec.name,
                row = i + 1,
                "column `{}` is read as text because data row {} (1-based) is not a number, while \
                 {n_numeric} of its {} distinct values are: if the column is numeric, fix that \
                 cell; if it is a category, list it in categorical_columns",
                spec.name,
                i + 1,
                levels.len()
            );
        }
    }
}
