//! The `Control` API client: submit and follow jobs, list and fetch models.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedcredit_proto::pb;
use fedcredit_transport::tls::{TlsFiles, client_tls};
use tonic::transport::{Channel, Endpoint};

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The coordinator cannot be reached (names the URL).
    #[error("cannot reach the coordinator at {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The coordinator answered with an error status (its message says why), or the call
    /// broke on the way (a transport failure, with its cause).
    #[error("{}", status_text(.0))]
    Status(Box<tonic::Status>),
    /// TLS material cannot be used.
    #[error(transparent)]
    Tls(#[from] fedcredit_transport::tls::TransportError),
    /// Something local (a file, a process).
    #[error("{0}")]
    Local(String),
}

impl From<tonic::Status> for OpsError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(Box::new(s))
    }
}

impl OpsError {
    /// Whether the coordinator may just be away for now (restarting, or the network): the
    /// call may succeed if retried later. Answers the coordinator gave (not found, invalid,
    /// denied) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Status(s) => match s.code() {
                tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted => true,
                tonic::Code::Internal => {
                    let m = s.message();
                    m.contains("h2 protocol error") || m.contains("transport")
                }
                _ => false,
            },
            Self::Tls(_) | Self::Local(_) => false,
        }
    }
}

fn code_name(code: tonic::Code) -> Option<&'static str> {
    match code {
        tonic::Code::InvalidArgument => Some("invalid argument"),
        tonic::Code::NotFound => Some("not found"),
        tonic::Code::FailedPrecondition => Some("not possible now"),
        tonic::Code::PermissionDenied => Some("permission denied"),
        tonic::Code::Unauthenticated => Some("unauthenticated"),
        tonic::Code::Unavailable => Some("coordinator unavailable"),
        _ => None,
    }
}

/// A status as one line: the code's name (or "call to the coordinator failed" for codes
/// without one, never a bare "error", which the CLI already prints), the message, and the
/// causes a transport failure carries.
fn status_text(s: &tonic::Status) -> String {
    let mut text = match (code_name(s.code()), s.message()) {
        (Some(name), msg) => format!("{name}: {msg}"),
        (None, "") => format!("call to the coordinator failed ({:?})", s.code()),
        (None, msg) => format!("call to the coordinator failed: {msg}"),
    };
    let mut cause = std::error::Error::source(s);
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

/// Where the coordinator is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port` (or `http://` when insecure).
    pub url: String,
    /// The operator's certificate, key and the CA; `None` = plain text (`--insecure`).
    pub tls: Option<TlsFiles>,
    /// The name in the coordinator's certificate.
    pub server_name: String,
}

impl ClientConfig {
    /// The operator identity from a `fedcredit certs init` directory.
    pub fn with_certs_dir(url: impl Into<String>, dir: &Path) -> Self {
        Self {
            url: url.into(),
            tls: Some(TlsFiles {
                ca: dir.join("ca.pem"),
                cert: dir.join("operator.pem"),
                key: dir.join("operator.key"),
            }),
            server_name: "localhost".into(),
        }
    }

    /// Plain text, for an `insecure` coordinator.
    pub fn insecure(url: impl Into<String>) -> Self {
        Self { url: url.into(), tls: None, server_name: "localhost".into() }
    }
}

/// A connected control client.
#[derive(Debug, Clone)]
pub struct ControlClient {
    inner: pb::control_client::ControlClient<Channel>,
    cfg: ClientConfig,
}

/// Builds a channel to the coordinator.
///
/// # Errors
/// [`OpsError`] naming the URL or the TLS file.
pub async fn channel(cfg: &ClientConfig) -> Result<Channel, OpsError> {
    let connect = |source| OpsError::Connect { url: cfg.url.clone(), source };
    let mut ep = Endpoint::from_shared(cfg.url.clone())
        .map_err(connect)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = &cfg.tls {
        ep = ep.tls_config(client_tls(tls, &cfg.server_name)?).map_err(connect)?;
    }
    ep.connect().await.map_err(connect)
}

impl ControlClient {
    /// Connects.
    ///
    /// # Errors
    /// [`OpsError`] naming the URL or the TLS file.
    pub async fn connect(cfg: &ClientConfig) -> Result<Self, OpsError> {
        let ch = channel(cfg).await?;
        Ok(Self {
            inner: pb::control_client::ControlClient::new(ch)
                .max_decoding_message_size(256 * 1024 * 1024),
            cfg: cfg.clone(),
        })
    }

    /// Connects afresh (after the coordinator restarted); keeps the old connection on failure.
    ///
    /// # Errors
    /// [`OpsError`] naming the URL.
    pub async fn reconnect(&mut self) -> Result<(), OpsError> {
        *self = Self::connect(&self.cfg).await?;
        Ok(())
    }

    /// A job's progress after every epoch, round or tree, as JSON, oldest first.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn progress_log(&mut self, id: &str) -> Result<Vec<String>, OpsError> {
        let r = self.inner.progress_log(pb::JobRef { id: id.into() }).await?.into_inner();
        Ok(r.progress_json)
    }

    /// Submits `job.toml` text; the coordinator validates it.
    ///
    /// # Errors
    /// [`OpsError::Status`] with the coordinator's reason (e.g. the offending key).
    pub async fn submit(&mut self, spec_toml: &str) -> Result<pb::JobInfo, OpsError> {
        let req = pb::SubmitJobRequest { spec_toml: spec_toml.to_string() };
        Ok(self.inner.submit_job(req).await?.into_inner())
    }

    /// All jobs, newest first.
    ///
    /// # Errors
    /// [`OpsError::Status`].
    pub async fn jobs(&mut self) -> Result<Vec<pb::JobInfo>, OpsError> {
        Ok(self.inner.list_jobs(pb::ListJobsRequest {}).await?.into_inner().jobs)
    }

    /// One job.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found).
    pub async fn job(&mut self, id: &str) -> Result<pb::JobInfo, OpsError> {
        Ok(self.inner.get_job(pb::JobRef { id: id.into() }).await?.into_inner())
    }

    /// Cancels a running job.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found, not running).
    pub async fn cancel(&mut self, id: &str) -> Result<pb::JobInfo, OpsError> {
        Ok(self.inner.cancel_job(pb::JobRef { id: id.into() }).await?.into_inner())
    }

    /// Resumes a failed or cancelled job from its last completed round.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found, still running).
    pub async fn resume(&mut self, id: &str) -> Result<pb::JobInfo, OpsError> {
        Ok(self.inner.resume_job(pb::JobRef { id: id.into() }).await?.into_inner())
    }

    /// The job's state now and after every change, until it ends.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found).
    pub async fn watch(&mut self, id: &str) -> Result<tonic::Streaming<pb::JobInfo>, OpsError> {
        Ok(self.inner.watch_job(pb::JobRef { id: id.into() }).await?.into_inner())
    }

    /// The job's completed rounds.
    ///
    /// # Errors
    /// [`OpsError::Status`].
    pub async fn rounds(&mut self, id: &str) -> Result<Vec<pb::RoundInfo>, OpsError> {
        Ok(self.inner.list_rounds(pb::JobRef { id: id.into() }).await?.into_inner().rounds)
    }

    /// All models, newest first (without artifacts).
    ///
    /// # Errors
    /// [`OpsError::Status`].
    pub async fn models(&mut self) -> Result<Vec<pb::ModelInfo>, OpsError> {
        Ok(self.inner.list_models(pb::ListModelsRequest {}).await?.into_inner().models)
    }

    /// One model with its artifact.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found).
    pub async fn model(&mut self, id: &str) -> Result<pb::ModelInfo, OpsError> {
        Ok(self.inner.get_model(pb::ModelRef { id: id.into() }).await?.into_inner())
    }

    /// The registry's versions of model `name` (every name's when empty), oldest first.
    ///
    /// # Errors
    /// [`OpsError::Status`] (not found).
    pub async fn model_versions(&mut self, name: &str) -> Result<pb::ModelVersions, OpsError> {
        Ok(self.inner.list_model_versions(pb::ModelName { name: name.into() }).await?.into_inner())
    }

    /// Makes `version` of model `name` the serving one.
    ///
    /// # Errors
    /// [`OpsError::Status`] (no such version).
    pub async fn promote(
        &mut self,
        name: &str,
        version: i64,
    ) -> Result<pb::ModelVersions, OpsError> {
        let req = pb::PromoteModelRequest { name: name.into(), version };
        Ok(self.inner.promote_model(req).await?.into_inner())
    }

    /// Serves again the version of model `name` that served before the current one.
    ///
    /// # Errors
    /// [`OpsError::Status`] (nothing to roll back to).
    pub async fn rollback(&mut self, name: &str) -> Result<pb::ModelVersions, OpsError> {
        Ok(self.inner.rollback_model(pb::ModelName { name: name.into() }).await?.into_inner())
    }

    /// Parties the coordinator has seen, and whether they are connected.
    ///
    /// # Errors
    /// [`OpsError::Status`].
    pub async fn parties(&mut self) -> Result<Vec<pb::PartyInfo>, OpsError> {
        Ok(self.inner.list_parties(pb::ListPartiesRequest {}).await?.into_inner().parties)
    }

    /// The audit log (newest first), of one job or of all.
    ///
    /// # Errors
    /// [`OpsError::Status`].
    pub async fn audit(
        &mut self,
        job: Option<&str>,
        limit: u32,
    ) -> Result<Vec<pb::AuditEntry>, OpsError> {
        let req = pb::GetAuditRequest { job_id: job.unwrap_or_default().into(), limit };
        Ok(self.inner.get_audit(req).await?.into_inner().entries)
    }
}

/// The certificate files of one party in a `fedcredit certs init` directory.
pub fn party_tls(dir: &Path, party: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{party}.pem")),
        key: dir.join(format!("{party}.key")),
    }
}

/// `path` made absolute against the current directory (configs are written elsewhere).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_one_line_without_a_repeated_prefix() {
        let e = OpsError::from(tonic::Status::unknown("transport error"));
        assert_eq!(e.to_string(), "call to the coordinator failed: transport error");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let mut s = tonic::Status::unknown("transport error");
        s.set_source(std::sync::Arc::new(io));
        let e = OpsError::from(s).to_string();
        assert_eq!(e, "call to the coordinator failed: transport error: connection reset");
        let e = OpsError::from(tonic::Status::permission_denied("`bank1` may not")).to_string();
        assert_eq!(e, "permission denied: `bank1` may not");
        let e = OpsError::from(tonic::Status::internal("")).to_string();
        assert_eq!(e, "call to the coordinator failed (Internal)");
    }
}

/// The `Scoring` API client.
#[derive(Debug, Clone)]
pub struct ScoringClient {
    inner: pb::scoring_client::ScoringClient<Channel>,
}

impl ScoringClient {
    /// Connects.
    ///
    /// # Errors
    /// [`OpsError`] naming the URL or the TLS file.
    pub async fn connect(cfg: &ClientConfig) -> Result<Self, OpsError> {
        let ch = channel(cfg).await?;
        Ok(Self {
            inner: pb::scoring_client::ScoringClient::new(ch)
                .max_decoding_message_size(256 * 1024 * 1024)
                .max_encoding_message_size(256 * 1024 * 1024),
        })
    }

    /// Scores enterprises (or, with `all`, the label holder's whole portfolio).
    ///
    /// # Errors
    /// The coordinator's status: unknown model, version or enterprise, a party down.
    pub async fn score(&mut self, req: pb::ScoreRequest) -> Result<pb::ScoreResponse, OpsError> {
        Ok(self.inner.score(req).await?.into_inner())
    }

    /// An enterprise's score history (under `model`, or every model).
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn history(
        &mut self,
        id: &str,
        model: &str,
    ) -> Result<pb::HistoryResponse, OpsError> {
        let req = pb::HistoryRequest { id: id.into(), model: model.into() };
        Ok(self.inner.history(req).await?.into_inner())
    }

    /// Alerts after `after`, newest first.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn alerts(&mut self, after: i64, limit: u32) -> Result<Vec<pb::Alert>, OpsError> {
        Ok(self.inner.alerts(pb::AlertsRequest { after, limit }).await?.into_inner().alerts)
    }

    /// The health index and drift of `model`.
    ///
    /// # Errors
    /// The coordinator's status.
    pub async fn ecosystem(&mut self, model: &str) -> Result<pb::EcosystemResponse, OpsError> {
        Ok(self.inner.ecosystem(pb::EcosystemRequest { model: model.into() }).await?.into_inner())
    }
}
