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

    /// Lets only the `operator` certificate call `method`; returns the caller's name for the
    /// audit log. A refusal is logged at warn with the peer's address and audited.
    /// The registry's versions of `names`, oldest first.
    fn versions(&self, names: &[String]) -> Result<Vec<pb::ModelVersionInfo>, Status> {
        let mut out = Vec::new();
        for n in names {
            for v in self.shared.store.model_versions(n).map_err(internal)? {
                out.push(pb::ModelVersionInfo {
                    name: v.name,
                    version: v.version,
                    model_id: v.model_id,
                    job_id: v.job_id,
                    kind: v.kind,
                    created_ms: v.created_ms,
                    metrics_json: v.metrics_json,
                    serving: v.serving,
                });
            }
        }
        Ok(out)
    }

    fn authorize<T>(&self, req: &Request<T>, method: &str) -> Result<String, Status> {
        let name = fedcredit_transport::tls::request_identity(req);
        if self.shared.config.insecure {
            return Ok(name.unwrap_or_else(|| format!("{OPERATOR} (insecure)")));
        }
        let status = match &name {
            Some(n) if n == OPERATOR => return Ok(n.clone()),
            Some(n) => Status::permission_denied(format!(
                "`{n}` may not use the control API; it needs the `{OPERATOR}` certificate"
            )),
            None => Status::unauthenticated("a client certificate is required"),
        };
        Err(self.shared.refuse_call(req.remote_addr(), name.as_deref(), "control", method, status))
    }

    /// Checks a job's party names: no reserved names, and only parties of this federation —
    /// those listed in `coordinator.toml`'s `parties` when it is set, otherwise those that have
    /// connected at least once. The message says how to fix it.
    fn check_parties(&self, spec: &JobSpec) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        let seen: Vec<String> = match &self.shared.config.parties {
            Some(_) => Vec::new(),
            None => self
                .shared
                .store
                .parties()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|p| p.name)
                .collect(),
        };
        for p in &spec.parties {
            let name = p.0.as_str();
            if let Err(e) = fedcredit_transport::tls::validate_party_name(name) {
                let reserved = [OPERATOR, fedcredit_transport::tls::COORDINATOR_NAME, "ca"]
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name));
                problems.push(if reserved {
                    format!(
                        "`{name}` is a reserved name, not a party (the coordinator, the operator \
                         and the CA cannot take part in a job)"
                    )
                } else {
                    e.to_string()
                });
                continue;
            }
            let known = match &self.shared.config.parties {
                Some(list) => list.iter().any(|l| l == name),
                None => seen.iter().any(|l| l == name),
            };
            if !known {
                unknown.push(name.to_string());
            }
        }
        if !unknown.is_empty() {
            let names = unknown.join(", ");
            problems.push(match &self.shared.config.parties {
                Some(list) => format!(
                    "not a party of this federation: {names}. coordinator.toml lists \
                     parties = [{}]; fix the job's `parties`, or add the party to that list \
                     (with a certificate: `fedcredit certs add --dir certs --party NAME`) and \
                     restart the coordinator",
                    list.join(", ")
                ),
                None => format!(
                    "never connected to this coordinator: {names}. Start each one's participant \
                     (`fedcredit participant run --config NAME.toml`, with a certificate for \
                     that name) before submitting, or list the federation's parties in \
                     coordinator.toml (`parties = [\"bank1\", ...]`) so that jobs may name \
                     parties that have not connected yet"
                ),
            });
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
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
        let who = self.authorize(&req, "submit")?;
        let rejected = |why: String| {
            tracing::info!(caller = %who, reason = %why, "job refused at submission");
            self.shared.audit_event(&who, None, "submit", &format!("rejected: {why}"));
            Status::invalid_argument(why)
        };
        let spec = JobSpec::from_toml(&req.get_ref().spec_toml)
            .map_err(|e| rejected(format!("job spec: {e}")))?;
        self.check_parties(&spec).map_err(|e| rejected(format!("job parties: {e}")))?;
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
        let parties: Vec<&str> = spec.parties.iter().map(|p| p.0.as_str()).collect();
        tracing::info!(job = %id, caller = %who, model = spec.model.kind(), parties = %parties.join(", "), "job submitted");
        self.shared.audit_event(
            &who,
            Some(&id),
            "submit",
            &format!(
                "accepted: `{}`, {} over {}",
                spec.name,
                spec.model.kind(),
                parties.join(", ")
            ),
        );
        Ok(Response::new(self.job(&id)?))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.authorize(&req, "list_jobs")?;
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
        self.authorize(&req, "get_job")?;
        Ok(Response::new(self.job(&req.get_ref().id)?))
    }

    async fn cancel_job(&self, req: Request<pb::JobRef>) -> Result<Response<pb::JobInfo>, Status> {
        let who = self.authorize(&req, "cancel")?;
        let id = req.get_ref().id.clone();
        let info = self.job(&id).inspect_err(|s| {
            self.shared.audit_event(&who, None, "cancel", &format!("rejected: {}", s.message()));
        })?;
        if !self.shared.cancel(&JobId(id.clone())) {
            let why = format!("job `{id}` is {}, not running", info.state);
            self.shared.audit_event(&who, Some(&id), "cancel", &format!("rejected: {why}"));
            return Err(Status::failed_precondition(why));
        }
        tracing::info!(job = %id, caller = %who, "job cancelled by the operator");
        self.shared.audit_event(&who, Some(&id), "cancel", "accepted");
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
        let who = self.authorize(&req, "resume")?;
        let id = req.get_ref().id.clone();
        let reject = |job: Option<&str>, s: Status| {
            self.shared.audit_event(&who, job, "resume", &format!("rejected: {}", s.message()));
            s
        };
        let r = self
            .shared
            .store
            .job(&id)
            .map_err(internal)?
            .ok_or_else(|| reject(None, not_found(&id)))?;
        if !matches!(r.state, JobState::Failed | JobState::Cancelled) {
            return Err(reject(
                Some(&id),
                Status::failed_precondition(format!(
                    "job `{id}` is {}; only failed or cancelled jobs resume",
                    r.state.as_str()
                )),
            ));
        }
        self.shared.store.set_job_state(&id, JobState::Queued, None, now_ms()).map_err(internal)?;
        let r = self.shared.store.job(&id).map_err(internal)?.ok_or_else(|| not_found(&id))?;
        self.shared.start_job(&r).map_err(|e| reject(Some(&id), Status::failed_precondition(e)))?;
        tracing::info!(job = %id, caller = %who, rounds_done = r.rounds_done, "job resumed by the operator");
        self.shared.audit_event(
            &who,
            Some(&id),
            "resume",
            &format!("accepted: from round {}", r.rounds_done),
        );
        Ok(Response::new(self.job(&id)?))
    }

    type WatchJobStream = InfoStream;

    async fn watch_job(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        self.authorize(&req, "watch_job")?;
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

    async fn progress_log(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::ProgressLogResponse>, Status> {
        self.authorize(&req, "ProgressLog")?;
        let id = req.into_inner().id;
        let log = self.shared.store.progress_log(&id).map_err(internal)?;
        let (at_ms, progress_json) = log.into_iter().unzip();
        Ok(Response::new(pb::ProgressLogResponse { progress_json, at_ms }))
    }

    async fn list_rounds(
        &self,
        req: Request<pb::JobRef>,
    ) -> Result<Response<pb::ListRoundsResponse>, Status> {
        self.authorize(&req, "list_rounds")?;
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
        self.authorize(&req, "list_models")?;
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
        self.authorize(&req, "get_model")?;
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

    async fn list_model_versions(
        &self,
        req: Request<pb::ModelName>,
    ) -> Result<Response<pb::ModelVersions>, Status> {
        self.authorize(&req, "list_model_versions")?;
        let name = &req.get_ref().name;
        let names: Vec<String> = if name.is_empty() {
            self.shared.store.model_names().map_err(internal)?.into_iter().map(|n| n.0).collect()
        } else {
            vec![name.clone()]
        };
        let versions = self.versions(&names)?;
        if versions.is_empty() && !name.is_empty() {
            return Err(Status::not_found(format!("no model named `{name}`")));
        }
        Ok(Response::new(pb::ModelVersions { versions, change: String::new() }))
    }

    async fn promote_model(
        &self,
        req: Request<pb::PromoteModelRequest>,
    ) -> Result<Response<pb::ModelVersions>, Status> {
        let who = self.authorize(&req, "promote_model")?;
        let pb::PromoteModelRequest { name, version } = req.into_inner();
        let res = self.shared.store.promote(&name, version, crate::now_ms());
        self.shared.scoring.registry_changed();
        let change = match res {
            Ok(Some(before)) if before == version => {
                format!("`{name}` version {version} already serves")
            }
            Ok(before) => format!(
                "`{name}` now serves version {version}{}",
                before.map(|b| format!(" (was {b})")).unwrap_or_default()
            ),
            Err(e @ crate::store::StoreError::UnknownModelVersion { .. }) => {
                self.shared.audit_event(&who, None, "promote", &format!("rejected: {e}"));
                return Err(Status::not_found(e.to_string()));
            }
            Err(e) => return Err(internal(e)),
        };
        tracing::info!(model = %name, version, caller = %who, "model promoted");
        self.shared.audit_event(&who, None, "promote", &change);
        Ok(Response::new(pb::ModelVersions { versions: self.versions(&[name])?, change }))
    }

    async fn rollback_model(
        &self,
        req: Request<pb::ModelName>,
    ) -> Result<Response<pb::ModelVersions>, Status> {
        let who = self.authorize(&req, "rollback_model")?;
        let name = req.into_inner().name;
        let change = match self.shared.store.rollback(&name, crate::now_ms()) {
            Ok((from, to)) => format!("`{name}` now serves version {to} again (was {from})"),
            Err(e @ crate::store::StoreError::NothingToRollBack { .. }) => {
                self.shared.audit_event(&who, None, "rollback", &format!("rejected: {e}"));
                return Err(Status::failed_precondition(e.to_string()));
            }
            Err(e) => return Err(internal(e)),
        };
        self.shared.scoring.registry_changed();
        tracing::info!(model = %name, caller = %who, "model rolled back");
        self.shared.audit_event(&who, None, "rollback", &change);
        Ok(Response::new(pb::ModelVersions { versions: self.versions(&[name])?, change }))
    }

    async fn list_parties(
        &self,
        req: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        self.authorize(&req, "list_parties")?;
        let sessions = self.shared.registry.sessions();
        let listed = self.shared.config.parties.clone().unwrap_or_default();
        let mut parties: std::collections::BTreeMap<String, pb::PartyInfo> = self
            .shared
            .store
            .party_details()
            .map_err(internal)?
            .into_iter()
            .map(|p| {
                let info = pb::PartyInfo {
                    name: p.name.clone(),
                    connected: false,
                    last_seen_ms: p.last_seen_ms,
                    version: p.version,
                    address: p.address,
                    listed: false,
                };
                (p.name, info)
            })
            .collect();
        for name in &listed {
            parties
                .entry(name.clone())
                .or_insert_with(|| pb::PartyInfo { name: name.clone(), ..Default::default() });
        }
        let now = now_ms();
        for (p, s) in sessions {
            let e = parties
                .entry(p.0.clone())
                .or_insert_with(|| pb::PartyInfo { name: p.0.clone(), ..Default::default() });
            e.connected = true;
            e.last_seen_ms = now;
            e.version = s.version;
            if let Some(a) = s.address {
                e.address = a.to_string();
            }
        }
        for (name, e) in parties.iter_mut() {
            e.listed = listed.contains(name);
        }
        Ok(Response::new(pb::ListPartiesResponse { parties: parties.into_values().collect() }))
    }

    async fn get_audit(
        &self,
        req: Request<pb::GetAuditRequest>,
    ) -> Result<Response<pb::GetAuditResponse>, Status> {
        self.authorize(&req, "get_audit")?;
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
