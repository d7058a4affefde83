//! The scoring service: the current score of enterprises from the serving version of a
//! model, their history, alerts, the ecosystem health index and drift.
//!
//! A vertical model is scored by federated inference (`fedcredit_federation::serving`): the
//! coordinator sends a `ScoreQuery` over every part holder's long-lived stream and sums their
//! partial log-odds (for trees, the label holder intersects the others' leaf sets with its own
//! in a last query and answers with the log-odds and each party's share); a horizontal model (whose artifact every bank received) is scored here
//! from features the caller supplies. Answers are matched to queries by number and sender; a
//! party that is not connected or does not answer within `[scoring] timeout_ms` fails the
//! request with its name, and nothing else waits on it.
//!
//! Dynamic score: a party's `SnapshotNotice` names the enterprises whose part moved; notices
//! within `debounce_ms` form one period, after which the monitored enterprises among them
//! (those scored before) are re-scored under every serving model the party has a part of.
//! A recorder task appends a history row whenever a score or a party's snapshot changed,
//! evaluates the alert rules, asks the links holder for the suppliers of enterprises whose
//! score fell (contagion) and records the health index per period. Scoring requests never
//! wait on the database.
//!
//! - [`store`] — the history, alert and ecosystem tables.
//! - [`metrics`] — Prometheus metrics.
//! - [`grpc`] — the `Scoring` gRPC service.
//! - [`http`] — the HTTP/JSON API, `/metrics`, `/healthz`, `/readyz`.

pub mod grpc;
pub mod http;
pub mod metrics;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedcredit_federation::PartyId;
use fedcredit_federation::serving::{self, EnterpriseScore};
use fedcredit_federation::vertical::model::VerticalModelRef;
use fedcredit_models::artifact::ModelArtifact;
use fedcredit_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{Shared, now_ms};

/// Why a scoring request failed; each maps to a gRPC status and an HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    /// The request is malformed (names the field).
    #[error("{0}")]
    Invalid(String),
    /// Too many enterprises in one request.
    #[error("{0}")]
    TooLarge(String),
    /// No such model, version or enterprise.
    #[error("{0}")]
    NotFound(String),
    /// The model cannot serve this request (not served, wrong kind).
    #[error("{0}")]
    Precondition(String),
    /// A party holding a part is not connected or did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// The coordinator failed.
    #[error("{0}")]
    Internal(String),
}

impl ScoreError {
    /// The short name used in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::TooLarge(_) => "too_large",
            Self::NotFound(_) => "not_found",
            Self::Precondition(_) => "precondition",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

/// A request for scores.
#[derive(Debug, Clone, Default)]
pub struct ScoreCall {
    /// The model name; empty when exactly one model serves.
    pub model: String,
    /// The version; 0 = the serving one.
    pub version: i64,
    /// The enterprises.
    pub ids: Vec<String>,
    /// Every enterprise of the label holder's latest snapshot instead.
    pub all: bool,
    /// Reason codes per party.
    pub reasons: u32,
}

/// Scores of one request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    /// The model name.
    pub model: String,
    /// The version that scored.
    pub version: i64,
    /// `logistic`, `scorecard`, `gbdt`.
    pub kind: String,
    /// One per enterprise, in the request's order.
    pub scores: Vec<EnterpriseScore>,
}

/// The serving version of a model, resolved.
#[derive(Debug, Clone)]
struct Resolved {
    name: String,
    version: i64,
    kind: String,
    artifact_json: String,
    /// The reference of a vertical model (`None`: a horizontal artifact).
    vertical: Option<Arc<VerticalModelRef>>,
}

enum Answer {
    Score(pb::ScoreReply),
    Contagion(pb::ContagionReply),
}

struct Pending {
    party: PartyId,
    tx: oneshot::Sender<Answer>,
}

/// What the recorder is asked to keep.
struct Record {
    model: String,
    version: i64,
    cause: String,
    scores: Vec<EnterpriseScore>,
    /// Closes a period: record the health index afterwards.
    period: bool,
}

/// The scoring state shared by the APIs and the coordinator's stream readers.
pub struct Scoring {
    next_query: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    record_tx: mpsc::Sender<Record>,
    record_rx: Mutex<Option<mpsc::Receiver<Record>>>,
    snapshot_tx: mpsc::Sender<(PartyId, pb::SnapshotNotice)>,
    snapshot_rx: Mutex<Option<mpsc::Receiver<(PartyId, pb::SnapshotNotice)>>>,
    resolved: Mutex<HashMap<String, Arc<Resolved>>>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
}

impl std::fmt::Debug for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoring").finish_non_exhaustive()
    }
}

impl Default for Scoring {
    fn default() -> Self {
        let (record_tx, record_rx) = mpsc::channel(256);
        let (snapshot_tx, snapshot_rx) = mpsc::channel(256);
        Self {
            next_query: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            record_tx,
            record_rx: Mutex::new(Some(record_rx)),
            snapshot_tx,
            snapshot_rx: Mutex::new(Some(snapshot_rx)),
            resolved: Mutex::new(HashMap::new()),
            metrics: metrics::Metrics::default(),
        }
    }
}

/// Removes a query's pending entry however the wait ends.
struct PendingGuard<'a> {
    scoring: &'a Scoring,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.scoring.pending().remove(&self.id);
    }
}

impl Scoring {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a party's answer to the request waiting for it; false when none waits (too
    /// late, or a query this party was not asked).
    pub fn deliver_score(&self, party: &PartyId, reply: pb::ScoreReply) -> bool {
        self.deliver(party, reply.query_id, Answer::Score(reply))
    }

    /// As [`Scoring::deliver_score`], for a contagion answer.
    pub fn deliver_contagion(&self, party: &PartyId, reply: pb::ContagionReply) -> bool {
        self.deliver(party, reply.query_id, Answer::Contagion(reply))
    }

    fn deliver(&self, party: &PartyId, id: u64, answer: Answer) -> bool {
        let mut pending = self.pending();
        match pending.get(&id) {
            Some(p) if &p.party == party => {}
            _ => return false,
        }
        pending.remove(&id).is_some_and(|p| p.tx.send(answer).is_ok())
    }

    /// Forgets the resolved serving versions: the registry changed (a new model, a promotion,
    /// a rollback).
    pub fn registry_changed(&self) {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Queues a party's snapshot notice for the re-scoring task.
    pub async fn snapshot(&self, party: PartyId, notice: pb::SnapshotNotice) {
        let _ = self.snapshot_tx.send((party, notice)).await;
    }
}

/// Starts the recorder and the re-scoring task.
pub fn spawn_tasks(shared: &Arc<Shared>) {
    let record_rx = shared.scoring.record_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let snapshot_rx = shared.scoring.snapshot_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rx) = record_rx {
        // The recorder writes SQLite: on its own thread, never on the async workers that
        // answer requests.
        let (shared, handle) = (shared.clone(), tokio::runtime::Handle::current());
        let spawned = std::thread::Builder::new()
            .name("score-recorder".into())
            .spawn(move || recorder(&shared, rx, &handle));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the score recorder: history and alerts are off");
        }
    }
    if let Some(rx) = snapshot_rx {
        tokio::spawn(rescorer(shared.clone(), rx));
    }
}

/// The serving version of `model` (or of the only serving model), checking `version`.
fn resolve(shared: &Shared, model: &str, version: i64) -> Result<Resolved, ScoreError> {
    let internal = |e: crate::store::StoreError| ScoreError::Internal(e.to_string());
    let names = shared.store.model_names().map_err(internal)?;
    let name = if model.is_empty() {
        let serving: Vec<&str> =
            names.iter().filter(|n| n.2.is_some()).map(|n| n.0.as_str()).collect();
        match serving.as_slice() {
            [one] => (*one).to_owned(),
            [] => return Err(ScoreError::NotFound("no model serves yet".into())),
            many => {
                return Err(ScoreError::Invalid(format!(
                    "`model` is required: {} models serve ({})",
                    many.len(),
                    many.join(", ")
                )));
            }
        }
    } else {
        model.to_owned()
    };
    let Some((_, latest, serving)) = names.iter().find(|n| n.0 == name) else {
        return Err(ScoreError::NotFound(format!("no model is named `{name}`")));
    };
    let Some(serving) = *serving else {
        return Err(ScoreError::Precondition(format!("no version of `{name}` serves")));
    };
    if version != 0 && version != serving {
        return Err(if version < 1 || version > *latest {
            ScoreError::NotFound(format!("model `{name}` has no version {version}"))
        } else {
            ScoreError::Precondition(format!(
                "version {version} of `{name}` is not served (version {serving} serves; promote \
                 it first)"
            ))
        });
    }
    let versions = shared.store.model_versions(&name).map_err(internal)?;
    let v = versions.into_iter().find(|v| v.version == serving).ok_or_else(|| {
        ScoreError::Internal(format!("`{name}` v{serving} is not in the registry"))
    })?;
    let record = shared
        .store
        .model(&v.model_id)
        .map_err(internal)?
        .ok_or_else(|| ScoreError::Internal(format!("model {} is missing", v.model_id)))?;
    let vertical = VerticalModelRef::from_json(&record.artifact_json).ok().map(Arc::new);
    Ok(Resolved {
        name,
        version: serving,
        kind: v.kind,
        artifact_json: record.artifact_json,
        vertical,
    })
}

/// [`resolve`] through the cache of serving versions (emptied whenever the registry changes),
/// so a request reads the database only after a change.
fn resolve_cached(shared: &Shared, model: &str, version: i64) -> Result<Arc<Resolved>, ScoreError> {
    let cache = &shared.scoring.resolved;
    if let Some(r) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(model)
        && (version == 0 || version == r.version)
    {
        return Ok(r.clone());
    }
    let r = Arc::new(resolve(shared, model, version)?);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(model.to_owned(), r.clone());
    Ok(r)
}

/// Sends `query` to `party` and waits for its answer.
async fn ask(
    shared: &Shared,
    party: &PartyId,
    body: impl FnOnce(u64) -> pb::coordinator_message::Body,
) -> Result<Answer, ScoreError> {
    let scoring = &shared.scoring;
    let id = scoring.next_query.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    scoring.pending().insert(id, Pending { party: party.clone(), tx });
    let _guard = PendingGuard { scoring, id };
    let unavailable = || {
        ScoreError::Unavailable(format!(
            "party {party} holds a part of the model and is not connected"
        ))
    };
    let msg = pb::CoordinatorMessage { body: Some(body(id)) };
    if !shared.registry.send(party, msg).await {
        return Err(unavailable());
    }
    let timeout = Duration::from_millis(shared.config.scoring.timeout_ms);
    let mut events = shared.registry.subscribe();
    let gone = async {
        loop {
            match events.recv().await {
                Ok(crate::registry::PartyEvent::Disconnected(p)) if &p == party => return,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, rx) => match r {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(ScoreError::Unavailable(format!(
                "party {party} did not answer within {} ms", timeout.as_millis()
            ))),
        },
        () = gone => Err(ScoreError::Unavailable(format!("party {party} disconnected while scoring"))),
    }
}

/// Sends `query` (its number filled in) to `party` and waits for the answer.
async fn ask_score(
    shared: &Shared,
    party: &PartyId,
    query: pb::ScoreQuery,
) -> Result<pb::ScoreReply, ScoreError> {
    match ask(shared, party, move |query_id| {
        pb::coordinator_message::Body::ScoreQuery(pb::ScoreQuery { query_id, ..query })
    })
    .await?
    {
        Answer::Score(r) if r.error.is_empty() => Ok(r),
        Answer::Score(r) => Err(ScoreError::Unavailable(r.error)),
        Answer::Contagion(_) => {
            Err(ScoreError::Internal("a contagion answer to a score query".into()))
        }
    }
}

fn check_ids(ids: &[String], max: usize) -> Result<(), ScoreError> {
    if ids.is_empty() {
        return Err(ScoreError::Invalid(
            "give an enterprise `id`, a list of `ids`, or `all`".into(),
        ));
    }
    if ids.len() > max {
        return Err(ScoreError::TooLarge(format!(
            "{} enterprises in one request; at most {max} (split the batch or use `all`)",
            ids.len()
        )));
    }
    if let Some((i, _)) =
        ids.iter().enumerate().find(|(_, id)| id.trim().is_empty() || id.len() > 256)
    {
        return Err(ScoreError::Invalid(format!(
            "`ids[{i}]` must be a non-empty enterprise id of at most 256 bytes"
        )));
    }
    Ok(())
}

/// Scores enterprises by federated inference under a vertical model.
async fn score_vertical(
    shared: &Shared,
    model: &VerticalModelRef,
    call: &ScoreCall,
) -> Result<Vec<EnterpriseScore>, ScoreError> {
    let reasons = call.reasons.min(serving::MAX_REASONS);
    for p in &model.parties {
        if !shared.registry.is_connected(&PartyId(p.party.clone())) {
            return Err(ScoreError::Unavailable(format!(
                "party {} holds a part of the model and is not connected",
                p.party
            )));
        }
    }
    // The label holder first: the other parties are asked only about enterprises it knows,
    // so no party's part of an enterprise outside the bank's portfolio is ever computed.
    let lh = PartyId(model.label_holder.clone());
    let query = pb::ScoreQuery {
        model_job: model.job.clone(),
        ids: if call.all { Vec::new() } else { call.ids.clone() },
        all: call.all,
        reasons,
        ..Default::default()
    };
    let first = ask_score(shared, &lh, query).await?;
    let asked = if call.all { first.ids.clone() } else { call.ids.clone() };
    if first.known.len() != asked.len() || first.partial_log_odds.len() != asked.len() {
        return Err(ScoreError::Unavailable(format!(
            "{lh} answered for {} enterprises, {} were asked",
            first.known.len(),
            asked.len()
        )));
    }
    let rows: Vec<usize> = (0..asked.len()).filter(|&i| first.known[i]).collect();
    let ids: Vec<String> = rows.iter().map(|&i| asked[i].clone()).collect();
    let mut known = Vec::new();
    if !ids.is_empty() {
        let mut replies = BTreeMap::new();
        replies.insert(lh.0.clone(), serving::select_rows(&first, &rows));
        let others: Vec<_> = model
            .parties
            .iter()
            .filter(|p| p.party != lh.0)
            .map(|p| {
                let party = PartyId(p.party.clone());
                // The label holder's signature over these ids travels with them.
                let query = pb::ScoreQuery {
                    model_job: model.job.clone(),
                    ids: ids.clone(),
                    all: false,
                    reasons,
                    authorization: first.authorization.clone(),
                    authorizer_certificate: first.certificate.clone(),
                    ..Default::default()
                };
                async move { (party.clone(), ask_score(shared, &party, query).await) }
            })
            .collect();
        for (party, r) in futures_join_all(others).await {
            replies.insert(party.0, r?);
        }
        if model.kind == "gbdt" {
            // Trees: the label holder intersects the others' leaf sets with its own and
            // answers with the log-odds, each party's share and the reasons.
            let peer_leaf_sets = replies
                .iter()
                .filter(|(p, _)| **p != lh.0)
                .map(|(p, r)| pb::PartyLeafSets {
                    party: p.clone(),
                    sets: r.leaf_sets.clone(),
                    authorization: r.authorization.clone(),
                    certificate: r.certificate.clone(),
                })
                .collect();
            let query = pb::ScoreQuery {
                model_job: model.job.clone(),
                ids: ids.clone(),
                all: false,
                reasons,
                peer_leaf_sets,
                ..Default::default()
            };
            replies.insert(lh.0.clone(), ask_score(shared, &lh, query).await?);
        }
        known = serving::assemble(model, &ids, &replies).map_err(ScoreError::Unavailable)?;
    }
    let mut known = known.into_iter();
    Ok(asked
        .into_iter()
        .zip(&first.known)
        .map(|(id, k)| match k {
            true => known.next().unwrap_or_else(|| EnterpriseScore::unscored(id, "no score")),
            false => {
                let why = format!("enterprise {id} is not known to the label holder {lh}");
                EnterpriseScore::unscored(id, &why)
            }
        })
        .collect())
}

/// Polls every future to completion concurrently (a small `join_all`).
async fn futures_join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (f, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Scores `call`, recording the scores with `cause`; counts the request under `api`.
///
/// # Errors
/// [`ScoreError`] naming the model, version, enterprise or party.
pub async fn score(shared: &Shared, call: ScoreCall, api: &str) -> Result<Scored, ScoreError> {
    let started = Instant::now();
    let out = score_inner(shared, &call, "request").await;
    let outcome = match &out {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    shared.scoring.metrics.request(api, outcome, started.elapsed().as_secs_f64());
    out
}

async fn score_inner(shared: &Shared, call: &ScoreCall, cause: &str) -> Result<Scored, ScoreError> {
    if !call.all {
        check_ids(&call.ids, shared.config.scoring.max_batch)?;
    }
    let r = resolve_cached(shared, &call.model, call.version)?;
    let Some(model) = r.vertical.clone() else {
        return Err(ScoreError::Precondition(format!(
            "`{}` is a horizontal {} model: every bank holds it whole, so score it on supplied \
             features (POST /v1/score/features, gRPC ScoreFeatures)",
            r.name, r.kind
        )));
    };
    let scores = score_vertical(shared, &model, call).await?;
    if !call.all
        && call.ids.len() == 1
        && let Some(e) = &scores[0].error
    {
        return Err(ScoreError::NotFound(e.clone()));
    }
    shared.scoring.metrics.scores.inc_by(scores.len() as u64);
    let _ = shared
        .scoring
        .record_tx
        .send(Record {
            model: r.name.clone(),
            version: r.version,
            cause: cause.to_owned(),
            scores: scores.clone(),
            period: false,
        })
        .await;
    Ok(Scored { model: r.name.clone(), version: r.version, kind: r.kind.clone(), scores })
}

/// Scores a horizontal model on supplied rows (JSON objects: `id` and the features).
///
/// # Errors
/// [`ScoreError`] naming the row and field that is wrong.
pub async fn score_features(
    shared: &Shared,
    model: &str,
    version: i64,
    rows: &[serde_json::Value],
    api: &str,
) -> Result<Scored, ScoreError> {
    let started = Instant::now();
    let out = (|| {
        if rows.is_empty() {
            return Err(ScoreError::Invalid("`rows` is empty".into()));
        }
        if rows.len() > shared.config.scoring.max_batch {
            return Err(ScoreError::TooLarge(format!(
                "{} rows in one request; at most {}",
                rows.len(),
                shared.config.scoring.max_batch
            )));
        }
        let r = resolve_cached(shared, model, version)?;
        let artifact = ModelArtifact::from_json(&r.artifact_json).map_err(|_| {
            ScoreError::Precondition(format!(
                "`{}` is a vertical model: its features stay at the parties, score it by id \
                 (POST /v1/score)",
                r.name
            ))
        })?;
        let (ids, features) =
            serving::features_from_json(&artifact.features, rows).map_err(ScoreError::Invalid)?;
        let pd =
            artifact.predict_proba(&features).map_err(|e| ScoreError::Invalid(e.to_string()))?;
        let scaling = match &artifact.model {
            fedcredit_models::artifact::Model::Scorecard(c) => c.scaling,
            _ => Default::default(),
        };
        let scores = ids
            .into_iter()
            .zip(pd.iter())
            .map(|(id, &p)| {
                let p = p.clamp(1e-12, 1.0 - 1e-12);
                EnterpriseScore {
                    id,
                    error: None,
                    pd: p,
                    points: scaling.score_from_pd(p),
                    band: serving::band(p).into(),
                    reasons: Vec::new(),
                    parties: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        shared.scoring.metrics.scores.inc_by(scores.len() as u64);
        Ok(Scored { model: r.name.clone(), version: r.version, kind: r.kind.clone(), scores })
    })();
    let outcome = match &out {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    shared.scoring.metrics.request(api, outcome, started.elapsed().as_secs_f64());
    out
}

/// Whether two scores of one enterprise differ enough to be a new history row.
fn moved(a: &EnterpriseScore, b: &EnterpriseScore) -> bool {
    (a.points - b.points).abs() > 1e-9
        || a.parties.len() != b.parties.len()
        || a.parties
            .iter()
            .zip(&b.parties)
            .any(|(x, y)| x.snapshot != y.snapshot || x.known != y.known)
}

/// Appends changed scores to the history, raises alerts, asks for contagion and records the
/// health index at the end of a period. One task, so rows of one enterprise keep their order.
fn recorder(shared: &Arc<Shared>, mut rx: mpsc::Receiver<Record>, rt: &tokio::runtime::Handle) {
    let rules = shared.config.alerts.clone();
    let keep = rules.drop_periods.max(1);
    // The last scores per (model, enterprise), loaded from the history when first needed.
    let mut recent: HashMap<(String, String), VecDeque<EnterpriseScore>> = HashMap::new();
    while let Some(rec) = rx.blocking_recv() {
        let at = now_ms();
        let mut rows = Vec::new();
        let mut alerts: Vec<(String, String, String)> = Vec::new();
        let mut fallen = Vec::new();
        for s in rec.scores.iter().filter(|s| s.error.is_none()) {
            let key = (rec.model.clone(), s.id.clone());
            if !recent.contains_key(&key) {
                let loaded =
                    shared.store.recent_scores(&rec.model, &s.id, keep).unwrap_or_default();
                recent.insert(key.clone(), loaded);
            }
            let before = recent.get_mut(&key).expect("inserted above");
            if before.back().is_some_and(|b| !moved(b, s)) {
                continue;
            }
            for (kind, detail) in rules.enterprise_alerts(before, s) {
                if kind == "score_drop" {
                    fallen.push(s.id.clone());
                }
                alerts.push((kind.to_owned(), s.id.clone(), detail));
            }
            before.push_back(s.clone());
            while before.len() > keep {
                before.pop_front();
            }
            rows.push(s);
        }
        if !rows.is_empty() || !alerts.is_empty() {
            if let Err(e) =
                shared.store.record_scores(&rec.model, rec.version, at, &rec.cause, &rows, &alerts)
            {
                warn!(error = %e, "cannot record scores");
            }
            for (k, _, _) in &alerts {
                shared.scoring.metrics.alert(k);
            }
        }
        if !fallen.is_empty() {
            rt.block_on(contagion(shared, &rec.model, &fallen));
        }
        if rec.period {
            record_period(shared, &rec.model, &rec.cause);
        }
    }
}

/// Asks the links holder for the suppliers of `fallen` and raises a contagion alert for each
/// (naming the tier, not the enterprise that fell).
async fn contagion(shared: &Shared, model: &str, fallen: &[String]) {
    let Some(holder) = shared.config.scoring.contagion_party.clone() else { return };
    let party = PartyId(holder);
    let enterprises = fallen.to_vec();
    let tiers = shared.config.scoring.contagion_tiers;
    let answer = ask(shared, &party, move |query_id| {
        pb::coordinator_message::Body::ContagionQuery(pb::ContagionQuery {
            query_id,
            enterprises,
            tiers,
        })
    })
    .await;
    let reply = match answer {
        Ok(Answer::Contagion(r)) if r.error.is_empty() => r,
        Ok(Answer::Contagion(r)) => {
            return warn!(party = %party, error = %r.error, "no contagion answer");
        }
        Ok(Answer::Score(_)) => return,
        Err(e) => return warn!(error = %e, "no contagion answer"),
    };
    shared.audit(
        &party,
        None,
        None,
        crate::store::Direction::In,
        "contagion_reply",
        prost::Message::encoded_len(&reply),
        "accepted",
    );
    let alerts: Vec<(String, String, String)> = reply
        .suppliers
        .iter()
        .zip(&reply.tiers)
        .map(|(s, t)| {
            (
                "contagion".to_owned(),
                s.clone(),
                format!(
                    "a tier-{t} customer in its supply chain fell sharply (flagged by {party}; the \
                     customer is not named)"
                ),
            )
        })
        .collect();
    if alerts.is_empty() {
        return;
    }
    info!(model, suppliers = alerts.len(), "contagion alerts");
    if let Err(e) = shared.store.add_alerts(model, now_ms(), &alerts) {
        warn!(error = %e, "cannot record contagion alerts");
    }
    for _ in &alerts {
        shared.scoring.metrics.alert("contagion");
    }
}

/// Records the health index of `model` over its monitored enterprises' latest scores.
fn record_period(shared: &Shared, model: &str, cause: &str) {
    let rules = &shared.config.alerts;
    let monitored = match shared.store.monitored(model) {
        Ok(m) => m,
        Err(e) => return warn!(error = %e, "cannot read the monitored enterprises"),
    };
    let pds: Vec<f64> = monitored.iter().map(|(_, l)| l.pd).collect();
    let index = rules.health_index(&pds);
    let mean = if monitored.is_empty() {
        0.0
    } else {
        monitored.iter().map(|(_, l)| l.points).sum::<f64>() / monitored.len() as f64
    };
    let before: Vec<f64> =
        shared.store.ecosystem(model).unwrap_or_default().iter().map(|r| r.index).collect();
    let alert = rules.ecosystem_alert(&before, index);
    if alert.is_some() {
        shared.scoring.metrics.alert("ecosystem_drop");
    }
    if let Err(e) = shared.store.record_ecosystem(
        model,
        now_ms(),
        (index, mean, monitored.len() as u64),
        cause,
        alert.as_deref(),
    ) {
        warn!(error = %e, "cannot record the health index");
    }
}

/// The health index of `model` and its drift: PSI of the latest scores against the first
/// ones, overall and per party's contribution.
///
/// # Errors
/// [`ScoreError`] when the model is unknown.
pub fn ecosystem(shared: &Shared, model: &str) -> Result<EcosystemView, ScoreError> {
    let r = resolve(shared, model, 0)?;
    let internal = |e: crate::store::StoreError| ScoreError::Internal(e.to_string());
    let points = shared.store.ecosystem(&r.name).map_err(internal)?;
    let monitored = shared.store.monitored(&r.name).map_err(internal)?;
    let first: Vec<f64> = monitored.iter().map(|(f, _)| f.points).collect();
    let last: Vec<f64> = monitored.iter().map(|(_, l)| l.points).collect();
    let drift = serving::psi(&first, &last);
    let mut parties: BTreeSet<String> = BTreeSet::new();
    for (f, _) in &monitored {
        parties.extend(f.parties.iter().map(|p| p.party.clone()));
    }
    let contribution = |s: &EnterpriseScore, party: &str| {
        s.parties.iter().find(|p| p.party == party).map(|p| p.points)
    };
    let party_drift = parties
        .into_iter()
        .map(|p| {
            let f: Vec<f64> = monitored.iter().filter_map(|(x, _)| contribution(x, &p)).collect();
            let l: Vec<f64> = monitored.iter().filter_map(|(_, x)| contribution(x, &p)).collect();
            (p, serving::psi(&f, &l))
        })
        .collect();
    Ok(EcosystemView {
        model: r.name,
        points,
        drift_psi: drift,
        retrain_recommended: drift > shared.config.alerts.drift_psi,
        party_drift_psi: party_drift,
    })
}

/// The ecosystem view of a model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EcosystemView {
    /// The model name.
    pub model: String,
    /// The health index per period.
    pub points: Vec<store::EcosystemRow>,
    /// PSI of the latest scores against the first ones.
    pub drift_psi: f64,
    /// The same per party's contribution.
    pub party_drift_psi: BTreeMap<String, f64>,
    /// Whether the drift is above `[alerts] drift_psi`.
    pub retrain_recommended: bool,
}

/// Re-scores the monitored enterprises a period of snapshot notices moved, under every
/// serving vertical model of the notifying parties.
async fn rescorer(shared: Arc<Shared>, mut rx: mpsc::Receiver<(PartyId, pb::SnapshotNotice)>) {
    let debounce = Duration::from_millis(shared.config.scoring.debounce_ms);
    while let Some(first) = rx.recv().await {
        let mut notices = vec![first];
        let deadline = tokio::time::Instant::now() + debounce;
        while let Ok(Some(n)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            notices.push(n);
        }
        let cause = format!(
            "snapshot of {}",
            notices
                .iter()
                .map(|(p, n)| format!("{p} at {}", n.snapshot))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (p, n) in &notices {
            shared.audit(
                p,
                None,
                None,
                crate::store::Direction::In,
                "snapshot",
                prost::Message::encoded_len(n),
                "accepted",
            );
        }
        let names = shared.store.model_names().unwrap_or_default();
        for (name, _, serving) in names {
            if serving.is_none() {
                continue;
            }
            let Ok(r) = resolve_cached(&shared, &name, 0) else { continue };
            let Some(model) = r.vertical.clone() else { continue };
            let moved: BTreeSet<&String> = notices
                .iter()
                .filter(|(p, _)| model.parties.iter().any(|x| x.party == p.0))
                .flat_map(|(_, n)| &n.changed_ids)
                .collect();
            if !notices.iter().any(|(p, _)| model.parties.iter().any(|x| x.party == p.0)) {
                continue;
            }
            let ids: Vec<String> = moved
                .into_iter()
                .filter(|id| shared.store.is_monitored(&name, id).unwrap_or(false))
                .cloned()
                .collect();
            info!(model = %name, rescored = ids.len(), "new snapshot: re-scoring");
            let max = shared.config.scoring.max_batch;
            let mut scores = Vec::new();
            for chunk in ids.chunks(max) {
                let call = ScoreCall {
                    model: name.clone(),
                    version: 0,
                    ids: chunk.to_vec(),
                    all: false,
                    reasons: 3,
                };
                match score_vertical(&shared, &model, &call).await {
                    Ok(s) => scores.extend(s),
                    Err(e) => warn!(model = %name, error = %e, "re-scoring failed"),
                }
            }
            shared.scoring.metrics.scores.inc_by(scores.len() as u64);
            let _ = shared
                .scoring
                .record_tx
                .send(Record {
                    model: name,
                    version: r.version,
                    cause: cause.clone(),
                    scores,
                    period: true,
                })
                .await;
        }
    }
}
