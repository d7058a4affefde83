//! The gRPC `Scoring` service: the same calls as the HTTP API, for the `operator`
//! certificate and the names in `[scoring] clients`.

use std::sync::Arc;

use fedcredit_federation::serving::{EnterpriseScore, PartyPoints};
use fedcredit_proto::pb;
use tonic::{Request, Response, Status};

use super::{ScoreCall, ScoreError, Scored};
use crate::Shared;
use crate::control::OPERATOR;

/// The service.
#[derive(Debug, Clone)]
pub struct ScoringService {
    shared: Arc<Shared>,
}

impl ScoringService {
    /// The service over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn authorize<T>(&self, req: &Request<T>, method: &str) -> Result<(), Status> {
        if self.shared.config.insecure {
            return Ok(());
        }
        let name = fedcredit_transport::tls::request_identity(req);
        let status = match &name {
            Some(n) if n == OPERATOR || self.shared.config.scoring.clients.contains(n) => {
                return Ok(());
            }
            Some(n) => Status::permission_denied(format!(
                "`{n}` may not call Scoring; use the `{OPERATOR}` certificate or list the name in \
                 [scoring] clients"
            )),
            None => Status::unauthenticated("a client certificate is required"),
        };
        Err(self.shared.refuse_call(req.remote_addr(), name.as_deref(), "scoring", method, status))
    }
}

impl From<ScoreError> for Status {
    fn from(e: ScoreError) -> Self {
        match e {
            ScoreError::Invalid(m) => Status::invalid_argument(m),
            ScoreError::TooLarge(m) => Status::resource_exhausted(m),
            ScoreError::NotFound(m) => Status::not_found(m),
            ScoreError::Precondition(m) => Status::failed_precondition(m),
            ScoreError::Unavailable(m) => Status::unavailable(m),
            ScoreError::Internal(m) => Status::internal(m),
        }
    }
}

fn parties_pb(parties: &[PartyPoints]) -> Vec<pb::PartySnapshot> {
    parties
        .iter()
        .map(|p| pb::PartySnapshot {
            party: p.party.clone(),
            snapshot: p.snapshot.clone(),
            known: p.known,
            points: p.points,
        })
        .collect()
}

/// A score as protobuf.
pub fn score_pb(s: &EnterpriseScore) -> pb::EnterpriseScore {
    pb::EnterpriseScore {
        id: s.id.clone(),
        error: s.error.clone().unwrap_or_default(),
        pd: s.pd,
        points: s.points,
        band: s.band.clone(),
        reasons: s
            .reasons
            .iter()
            .map(|r| pb::Reason {
                party: r.party.clone(),
                feature: r.feature.clone(),
                points_lost: r.points_lost,
            })
            .collect(),
        parties: parties_pb(&s.parties),
    }
}

fn response(s: Scored) -> pb::ScoreResponse {
    pb::ScoreResponse {
        model: s.model,
        version: s.version,
        kind: s.kind,
        scores: s.scores.iter().map(score_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::scoring_server::Scoring for ScoringService {
    async fn score(
        &self,
        req: Request<pb::ScoreRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        self.authorize(&req, "Score")?;
        let r = req.into_inner();
        let call = ScoreCall {
            model: r.model,
            version: r.version,
            ids: r.ids,
            all: r.all,
            reasons: r.reasons.unwrap_or(3),
        };
        Ok(Response::new(response(super::score(&self.shared, call, "grpc").await?)))
    }

    async fn score_features(
        &self,
        req: Request<pb::ScoreFeaturesRequest>,
    ) -> Result<Response<pb::ScoreResponse>, Status> {
        self.authorize(&req, "ScoreFeatures")?;
        let r = req.into_inner();
        let rows = r
            .rows_json
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::from_str(t).map_err(|e| {
                    Status::invalid_argument(format!("`rows_json[{i}]` is not JSON: {e}"))
                })
            })
            .collect::<Result<Vec<serde_json::Value>, Status>>()?;
        let s = super::score_features(&self.shared, &r.model, r.version, &rows, "grpc").await?;
        Ok(Response::new(response(s)))
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.authorize(&req, "History")?;
        let r = req.into_inner();
        let model = (!r.model.is_empty()).then_some(r.model.as_str());
        let rows = self
            .shared
            .store
            .score_history(&r.id, model)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::HistoryResponse {
            id: r.id,
            entries: rows
                .into_iter()
                .map(|h| pb::HistoryEntry {
                    at_ms: h.at_ms,
                    model: h.model,
                    version: h.version,
                    pd: h.score.pd,
                    points: h.score.points,
                    band: h.score.band,
                    cause: h.cause,
                    parties: parties_pb(&h.score.parties),
                })
                .collect(),
        }))
    }

    async fn alerts(
        &self,
        req: Request<pb::AlertsRequest>,
    ) -> Result<Response<pb::AlertsResponse>, Status> {
        self.authorize(&req, "Alerts")?;
        let r = req.into_inner();
        let limit = if r.limit == 0 { 100 } else { r.limit.min(10_000) } as usize;
        let rows = self
            .shared
            .store
            .alerts(r.after, limit)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::AlertsResponse {
            alerts: rows
                .into_iter()
                .map(|a| pb::Alert {
                    seq: a.seq,
                    at_ms: a.at_ms,
                    kind: a.kind,
                    model: a.model,
                    enterprise: a.enterprise,
                    detail: a.detail,
                })
                .collect(),
        }))
    }

    async fn ecosystem(
        &self,
        req: Request<pb::EcosystemRequest>,
    ) -> Result<Response<pb::EcosystemResponse>, Status> {
        self.authorize(&req, "Ecosystem")?;
        let v = super::ecosystem(&self.shared, &req.into_inner().model)?;
        Ok(Response::new(pb::EcosystemResponse {
            model: v.model,
            points: v
                .points
                .into_iter()
                .map(|p| pb::EcosystemPoint {
                    period: p.period,
                    at_ms: p.at_ms,
                    index: p.index,
                    mean_points: p.mean_points,
                    enterprises: p.enterprises,
                    cause: p.cause,
                })
                .collect(),
            drift_psi: v.drift_psi,
            party_drift_psi: v.party_drift_psi.into_iter().collect(),
            retrain_recommended: v.retrain_recommended,
        }))
    }
}
