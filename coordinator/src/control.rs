//! `Control`: submit, list, watch, cancel and resume jobs; list and fetch models; list parties;
//! read the audit log. With mutual TLS only the `operator` certificate may call it.

use std::pin::Pin;
use std::sync::Arc;

use fedcredit_federation::JobId;
use fedcredit_federation::job::JobSpec;
use fedcredit_proto::pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::store::{JobState, NewJob, StoreError};
use crate::{Shared, job_info, now_ms};

/// The certificate name allowed to call the control API.
pub const OPERATOR: &str = "operator";

/// The control service.
#[derive(Debug, Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

impl ControlService {
    /// The service over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.shared.config.insecure {
            return Ok(());
        }
        match fedcredit_transport::tls::request_identity(req) {
            Some(name) if name == OPERATOR => Ok(()),
            Some(name) => Err(Status::permission_denied(format!(
                "`{name}` may not use the control API; it needs the `{OPERATOR}` certificate"
            ))),
            None => Err(Status::unauthenticated("a client certificate is required")),
        }
    }

    fn job(&self, id: &str) -> Result<pb::JobInfo, Status> {
        let r = self.shared.store.job(id).map_err(internal)?.ok_or_else(|| not_found(id))?;
        let status = self
            .shared
            .watch(&JobId(id.to_string()))
            .map(|w| w.borrow().status.clone())
            .unwrap_or_default();
        Ok(job_info(&r, &status))
    }
}

fn internal(e: StoreError) -> Status {
    Status::internal(e.to_string())
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("no job `{id}`"))
}

fn new_job_id() -> String {
    let r: u32 = rand::random();
    format!("job-{}-{:04x}", now_ms(), r & 0xffff)
}

type InfoStream = Pin<Box<dyn Stream<Item = Result<pb::JobInfo, Status>> + Send>>;

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn submit_job(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::JobInfo>, Status> {
        self.authorize(&req)?;
        let spec = JobSpec::from_toml(&req.get_ref().spec_toml)
            .map_err(|e| Status::invalid_argument(format!("job spec: {e}")))?;
        let id = new_job_id();
        let record = NewJob {
            id: id.clone(),
            name: spec.name.clone(),
            spec_json: spec.to_json(),
            created_ms: now_ms(),
        };
        self.shared.store.insert_job(&record).map_err(internal)?;
        let stored = self.shared.store.job(&id).map_err(internal)?.ok_or_else(|| not_found(&id))?;
        self.shared.start_job(&stored).map_err(Status::internal)?;
        tracing::info!(job = %id, model = spec.model.kind(), parties = spec.parties.len(), "job submitted");
        Ok(Response::new(self.job(&id)?))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.authorize(&req)?;
        let jobs = self.shared.store.jobs().map_err(internal)?;
        let jobs = jobs
            .iter()
            .map(|r| {
                let status = self
                    .shared
                    .watch(&JobId(r.id.clone()))
                    .map(|w| w.borrow().status.clone())
                    .unwrap_or_default();
                job_info(r, &status)
            })
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn get_job(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobInfo>, Status> {
        self.authorize(&req)?;
        Ok(Response::new(self.job(&req.get_ref().id)?))
    }

    async fn cancel_job(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobInfo>, Status> {
        self.authorize(&req)?;
        let id = req.get_ref().id.clone();
        let info = self.job(&id)?;
        if !self.shared.cancel(&JobId(id.clone())) {
            return Err(Status::failed_precondition(format!(
                "job `{id}` is {}, not running",
                info.state
            )));
        }
        // The job task records the cancellation; wait briefly so the answer shows it.
        for _ in 0..50 {
            if self.shared.watch(&JobId(id.clone())).is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(Response::new(self.job(&id)?))
    }

    async fn resume_job(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobInfo>, Status> {
        self.authorize(&req)?;
        let id = req.get_ref().id.clone();
        let r = self.shared.store.job(&id).map_err(internal)?.ok_or_else(|| not_found(&id))?;
        if !matches!(r.state, JobState::Failed | JobState::Cancelled) {
            return Err(Status::failed_precondition(format!(
                "job `{id}` is {}; only failed or cancelled jobs resume",
                r.state.as_str()
            )));
        }
        self.shared.store.set_job_state(&id, JobState::Queued, None, now_ms()).map_err(internal)?;
        let r = self.shared.store.job(&id).map_err(internal)?.ok_or_else(|| not_found(&id))?;
        self.shared.start_job(&r).map_err(Status::failed_precondition)?;
        Ok(Response::new(self.job(&id)?))
    }

    type WatchJobStream = InfoStream;

    async fn watch_job(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        self.authorize(&req)?;
        let id = req.get_ref().id.clone();
        let first = self.job(&id)?;
        let shared = self.shared.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let job = JobId(id.clone());
            let Some(mut w) = shared.watch(&job) else {
                let _ = tx.send(Ok(first)).await;
                return;
            };
            loop {
                let info = w.borrow_and_update().clone();
                if tx.send(Ok(info)).await.is_err() {
                    return;
                }
                if w.changed().await.is_err() {
                    break;
                }
            }
            // The job task ended: send its final record.
            if let Ok(Some(r)) = shared.store.job(&id) {
                let _ = tx.send(Ok(job_info(&r, "ended"))).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn list_rounds(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::ListRoundsResponse>, Status> {
        self.authorize(&req)?;
        let rounds = self.shared.store.rounds(&req.get_ref().id).map_err(internal)?;
        let rounds = rounds
            .into_iter()
            .map(|r| pb::RoundInfo {
                round: u64::from(r.round),
                attempts: r.attempts,
                contributors: serde_json::from_str(&r.contributors_json).unwrap_or_default(),
                dropped: serde_json::from_str(&r.dropped_json).unwrap_or_default(),
                started_ms: r.started_ms,
                finished_ms: r.finished_ms,
                what: r.what,
            })
            .collect();
        Ok(Response::new(pb::ListRoundsResponse { rounds }))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.authorize(&req)?;
        let models = self.shared.store.models().map_err(internal)?;
        let models = models
            .into_iter()
            .map(|m| pb::ModelInfo {
                id: m.id,
                job_id: m.job_id,
                kind: m.kind,
                created_ms: m.created_ms,
                metrics_json: m.metrics_json,
                artifact_json: String::new(),
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        req: Request<pb::ModelRef>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        self.authorize(&req)?;
        let id = &req.get_ref().id;
        let m = self
            .shared
            .store
            .model(id)
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no model `{id}`")))?;
        Ok(Response::new(pb::ModelInfo {
            id: m.id,
            job_id: m.job_id,
            kind: m.kind,
            created_ms: m.created_ms,
            metrics_json: m.metrics_json,
            artifact_json: m.artifact_json,
        }))
    }

    async fn list_parties(
        &self,
        req: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        self.authorize(&req)?;
        let connected = self.shared.registry.connected();
        let known = self.shared.store.parties().map_err(internal)?;
        let parties = known
            .into_iter()
            .map(|p| pb::PartyInfo {
                connected: connected.iter().any(|c| c.0 == p.name),
                name: p.name,
                last_seen_ms: p.last_seen_ms,
            })
            .collect();
        Ok(Response::new(pb::ListPartiesResponse { parties }))
    }

    async fn get_audit(
        &self,
        req: Request<pb::GetAuditRequest>,
    ) -> Result<Response<pb::GetAuditResponse>, Status> {
        self.authorize(&req)?;
        let r = req.get_ref();
        let job = (!r.job_id.is_empty()).then_some(r.job_id.as_str());
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let entries = self.shared.store.audit_log(job, limit).map_err(internal)?;
        let entries = entries
            .into_iter()
            .map(|e| pb::AuditEntry {
                at_ms: e.at_ms,
                job_id: e.job_id.unwrap_or_default(),
                round: e.round.map(u64::from).unwrap_or_default(),
                party: e.party,
                direction: e.direction.as_str().to_string(),
                kind: e.kind,
                bytes: e.bytes,
                outcome: e.outcome,
            })
            .collect();
        Ok(Response::new(pb::GetAuditResponse { entries }))
    }
}
