//! The fedcredit coordinator: registry of parties, job queue and protocol driver, persistence
//! in an embedded SQLite database, model registry, and the control API.
//!
//! It never sees a row of data: it sees masked vectors and only the unmasked *sums* of the
//! parties' contributions (Bonawitz et al., CCS 2017), passes on secure-aggregation share
//! bundles it cannot open, and relays party-to-party payloads sealed end to end, seeing only
//! their sizes, senders and recipients. It is not trusted to follow the protocol: the parties
//! check its requests against the job and each other's signatures themselves
//! (`fedcredit_federation::horizontal::role`, `fedcredit_federation::channel`). Messages it
//! receives and payloads it relays are recorded in the audit log (who, what kind, how
//! large, when, and the answer), never their content; so are refused connections and calls
//! and operator actions.
//!
//! - [`config`] — `coordinator.toml`.
//! - [`store`] — jobs, steps with checkpoints (small state plus an append-only log), models,
//!   parties and the audit log in SQLite.
//! - [`registry`] — connected parties and their bounded outbound queues (messages and bytes).
//! - [`driver`] — one task per job, running the job's protocol conductor, whatever the
//!   protocol.
//! - [`service`] — the participants' stream (`Federation.Participate`) and the relay of sealed
//!   payloads.
//! - [`control`] — the operator API (`Control`).
//! - [`scoring`] — the scoring service (gRPC `Scoring`, HTTP/JSON, metrics): federated
//!   inference, history, alerts, the ecosystem health index.
//! - [`server`] — binds it all to a socket with mutual TLS and shuts down gracefully.

pub mod config;
pub mod control;
pub mod driver;
pub mod registry;
pub mod scoring;
pub mod server;
pub mod service;
pub mod store;

pub use config::{CoordinatorConfig, TlsPaths};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fedcredit_federation::job::JobSpec;
use fedcredit_federation::{JobId, PartyId};
use fedcredit_proto::pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::driver::JobInput;
use crate::registry::Registry;
use crate::store::{JobRecord, Store};

/// The audit log's name for a peer that did not authenticate (a refused TLS handshake).
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Inputs queued per job before the party's stream reader waits.
const JOB_INBOX: usize = 1024;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running job's handles.
#[derive(Debug)]
pub(crate) struct JobHandle {
    pub inbox: mpsc::Sender<JobInput>,
    pub parties: Vec<PartyId>,
    pub cancel: CancellationToken,
    pub info: watch::Sender<pb::JobInfo>,
}

/// State shared by the services and the job tasks.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: CoordinatorConfig,
    /// The database.
    pub store: Store,
    /// Connected parties.
    pub registry: Registry,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The federation CA, to check the channel keys parties join jobs with (absent for an
    /// insecure coordinator).
    pub verifier: Option<Arc<dyn fedcredit_federation::auth::Verifier>>,
    /// The scoring service's state.
    pub scoring: scoring::Scoring,
    jobs: Mutex<HashMap<JobId, JobHandle>>,
}

/// The job's info for the control API.
pub(crate) fn job_info(r: &JobRecord, status: &str) -> pb::JobInfo {
    let spec = JobSpec::from_json(&r.spec_json).ok();
    pb::JobInfo {
        id: r.id.clone(),
        name: r.name.clone(),
        state: r.state.as_str().to_string(),
        model_kind: spec.as_ref().map(|s| s.model.kind().to_string()).unwrap_or_default(),
        parties: spec.map(|s| s.parties.into_iter().map(|p| p.0).collect()).unwrap_or_default(),
        rounds_done: u64::from(r.rounds_done),
        progress_json: r.progress_json.clone().unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        model_id: r.model_id.clone().unwrap_or_default(),
        metrics_json: r.metrics_json.clone().unwrap_or_default(),
        status: status.to_string(),
    }
}

impl Shared {
    /// Shared state over an opened store, checking channel keys with `verifier`.
    pub fn with_verifier(
        config: CoordinatorConfig,
        store: Store,
        verifier: Option<Arc<dyn fedcredit_federation::auth::Verifier>>,
    ) -> Arc<Self> {
        let mut s = Self::build(config, store);
        s.verifier = verifier;
        Arc::new(s)
    }

    /// Shared state over an opened store.
    pub fn new(config: CoordinatorConfig, store: Store) -> Arc<Self> {
        Arc::new(Self::build(config, store))
    }

    fn build(config: CoordinatorConfig, store: Store) -> Self {
        Self {
            config,
            store,
            registry: Registry::new(),
            shutdown: CancellationToken::new(),
            verifier: None,
            scoring: scoring::Scoring::default(),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobHandle>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inbox of a running job.
    pub(crate) fn inbox(&self, job: &JobId) -> Option<mpsc::Sender<JobInput>> {
        self.jobs().get(job).map(|h| h.inbox.clone())
    }

    /// The parties of a running job.
    pub(crate) fn job_parties(&self, job: &JobId) -> Option<Vec<PartyId>> {
        self.jobs().get(job).map(|h| h.parties.clone())
    }

    /// Follows a running job's info; `None` when it is not running.
    pub(crate) fn watch(&self, job: &JobId) -> Option<watch::Receiver<pb::JobInfo>> {
        self.jobs().get(job).map(|h| h.info.subscribe())
    }

    /// Cancels a running job; false when it is not running.
    pub(crate) fn cancel(&self, job: &JobId) -> bool {
        self.jobs().get(job).map(|h| h.cancel.cancel()).is_some()
    }

    /// Starts the task of job `record` (queued or resumed).
    pub(crate) fn start_job(self: &Arc<Self>, record: &JobRecord) -> Result<(), String> {
        let spec = JobSpec::from_json(&record.spec_json)
            .map_err(|e| format!("job {}: stored spec unreadable: {e}", record.id))?;
        let job = JobId(record.id.clone());
        let (tx, rx) = mpsc::channel(JOB_INBOX);
        let cancel = CancellationToken::new();
        let (info, _) = watch::channel(job_info(record, "starting"));
        {
            let mut jobs = self.jobs();
            if jobs.contains_key(&job) {
                return Err(format!("job {job} is already running"));
            }
            jobs.insert(
                job.clone(),
                JobHandle {
                    inbox: tx,
                    parties: spec.parties.clone(),
                    cancel: cancel.clone(),
                    info,
                },
            );
        }
        tokio::spawn(driver::run_job(self.clone(), job, spec, rx, cancel));
        Ok(())
    }

    pub(crate) fn forget_job(&self, job: &JobId) {
        self.jobs().remove(job);
    }

    fn update_info(&self, job: &JobId, f: impl FnOnce(&mut pb::JobInfo)) {
        if let Some(h) = self.jobs().get(job) {
            h.info.send_modify(f);
        }
    }

    /// Publishes what a job is doing now.
    pub(crate) fn publish_status(&self, job: &JobId, status: String) {
        self.update_info(job, |i| {
            if i.status != status {
                i.status = status;
            }
        });
    }

    /// Publishes what a job is doing now and, when that changed, its progress within the open
    /// step (epochs of a vertical regression: one long step whose record comes at its end).
    pub(crate) fn publish_live(
        &self,
        job: &JobId,
        status: String,
        progress: impl FnOnce() -> String,
    ) {
        let mut changed = None;
        self.update_info(job, |i| {
            if i.status != status {
                i.status = status;
                let p = progress();
                if p != i.progress_json && !p.is_empty() {
                    changed = Some(p.clone());
                }
                i.progress_json = p;
            }
        });
        if let Some(p) = changed {
            self.log_progress(job, &p);
        }
    }

    /// Publishes a completed round.
    pub(crate) fn publish_progress(
        &self,
        job: &JobId,
        rounds_done: u64,
        progress_json: &str,
        what: &str,
    ) {
        self.update_info(job, |i| {
            i.rounds_done = rounds_done;
            i.progress_json = progress_json.to_string();
            i.status = format!("done: {what}");
            i.updated_ms = now_ms();
        });
        self.log_progress(job, progress_json);
    }

    /// Appends to the audit log: who sent (or was sent) what kind of message, how large, when,
    /// and the answer. Never the content.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit(
        &self,
        party: &fedcredit_federation::PartyId,
        job: Option<&JobId>,
        round: Option<u64>,
        direction: store::Direction,
        kind: &str,
        bytes: usize,
        outcome: &str,
    ) {
        let entry = store::AuditEntry {
            seq: None,
            at_ms: now_ms(),
            job_id: job.map(|j| j.0.clone()),
            round: round.and_then(|r| u32::try_from(r).ok()),
            party: party.0.clone(),
            direction,
            kind: kind.into(),
            bytes: bytes as u64,
            outcome: outcome.into(),
        };
        if let Err(e) = self.store.audit(&entry) {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }

    /// Appends an event that is not a party's message to the audit log: an operator action
    /// (`who` is the caller's certificate name), a refused connection or call (`who` is the
    /// name it authenticated as, or [`UNAUTHENTICATED`]). `outcome` says what happened and
    /// why; never secrets or data.
    pub(crate) fn audit_event(&self, who: &str, job: Option<&str>, kind: &str, outcome: &str) {
        let entry = store::AuditEntry {
            seq: None,
            at_ms: now_ms(),
            job_id: job.map(str::to_string),
            round: None,
            party: who.into(),
            direction: store::Direction::In,
            kind: kind.into(),
            bytes: 0,
            outcome: outcome.into(),
        };
        if let Err(e) = self.store.audit(&entry) {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }

    fn log_progress(&self, job: &JobId, json: &str) {
        if let Err(e) = self.store.log_progress(&job.0, now_ms(), json) {
            tracing::warn!(error = %e, "cannot log the job's progress");
        }
    }

    /// A refused call of API `api` (`control`, `scoring`): logged at warn with the peer's
    /// address and audited under the name the caller authenticated as; returns the status.
    pub(crate) fn refuse_call(
        &self,
        peer: Option<std::net::SocketAddr>,
        name: Option<&str>,
        api: &str,
        method: &str,
        status: tonic::Status,
    ) -> tonic::Status {
        let peer = peer.map(|a| a.to_string()).unwrap_or_default();
        let who = name.unwrap_or(UNAUTHENTICATED);
        tracing::warn!(%peer, caller = who, method, reason = %status.message(), "refused a {api} call");
        self.audit_event(
            who,
            None,
            api,
            &format!("denied {method} from {peer}: {}", status.message()),
        );
        status
    }

    /// Re-reads the job from the store and publishes it (state changes).
    pub(crate) fn publish_refresh(&self, job: &JobId) {
        if let Ok(Some(r)) = self.store.job(&job.0) {
            self.update_info(job, |i| {
                let status = std::mem::take(&mut i.status);
                *i = job_info(&r, &status);
            });
        }
    }
}
