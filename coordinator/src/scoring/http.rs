//! The HTTP/JSON API (axum) on `[scoring] http_listen`:
//!
//! - `POST /v1/score` `{"model"?, "version"?, "id" | "ids" | "all", "reasons"?}`
//! - `POST /v1/score/features` `{"model"?, "version"?, "rows": [{"id", <feature>: value}]}`
//! - `GET /v1/enterprises/{id}/history?model=`
//! - `GET /v1/alerts?after=&limit=`
//! - `GET /v1/ecosystem?model=`
//! - `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`
//!
//! Errors are `{"error": "..."}` with 400 (malformed JSON or field), 404 (unknown model,
//! version or enterprise), 409 (a version that does not serve, the wrong kind of model), 413
//! (too many enterprises), 401 (token), 503 (a party is down or silent) or 500. With
//! `http_token` set, `/v1/…` needs `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use super::{ScoreCall, ScoreError};
use crate::Shared;

/// Largest request body.
const MAX_BODY: usize = 64 << 20;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ScoreError {
    fn into_response(self) -> Response {
        let status = match &self {
            ScoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            ScoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ScoreError::NotFound(_) => StatusCode::NOT_FOUND,
            ScoreError::Precondition(_) => StatusCode::CONFLICT,
            ScoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ScoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// The refusal, when `/v1/…` needs a token the request lacks.
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = shared.config.scoring.http_token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (!given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())))
        .then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong `Authorization: Bearer` token"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    version: i64,
    id: Option<String>,
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
    reasons: Option<u32>,
}

async fn score(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&shared, &headers) {
        return r;
    }
    let b: ScoreBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ids = match (b.id, b.ids) {
        (Some(_), Some(_)) => {
            return error(StatusCode::BAD_REQUEST, "give `id` or `ids`, not both");
        }
        (Some(id), None) => vec![id],
        (None, Some(ids)) => ids,
        (None, None) => Vec::new(),
    };
    if b.all && !ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "give `all` or ids, not both");
    }
    let call = ScoreCall {
        model: b.model,
        version: b.version,
        ids,
        all: b.all,
        reasons: b.reasons.unwrap_or(3),
    };
    match super::score(&shared, call, "http").await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeaturesBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    version: i64,
    rows: Vec<serde_json::Value>,
}

async fn score_features(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&shared, &headers) {
        return r;
    }
    let b: FeaturesBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match super::score_features(&shared, &b.model, b.version, &b.rows, "http").await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct ModelQuery {
    model: Option<String>,
}

async fn history(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ModelQuery>,
) -> Response {
    if let Some(r) = unauthorized(&shared, &headers) {
        return r;
    }
    match shared.store.score_history(&id, q.model.as_deref()) {
        Ok(rows) if rows.is_empty() => {
            error(StatusCode::NOT_FOUND, format!("no score of enterprise {id} is recorded"))
        }
        Ok(rows) => axum::Json(json!({ "id": id, "history": rows })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
}

async fn alerts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<AlertsQuery>,
) -> Response {
    if let Some(r) = unauthorized(&shared, &headers) {
        return r;
    }
    match shared.store.alerts(q.after, q.limit.unwrap_or(100).min(10_000)) {
        Ok(rows) => axum::Json(json!({ "alerts": rows })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn ecosystem(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ModelQuery>,
) -> Response {
    if let Some(r) = unauthorized(&shared, &headers) {
        return r;
    }
    match super::ecosystem(&shared, q.model.as_deref().unwrap_or("")) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.scoring.metrics.render(&shared);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers and the coordinator is not shutting down.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match shared.store.model_names() {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")),
    }
}

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/score/features", post(score_features))
        .route("/v1/enterprises/{id}/history", get(history))
        .route("/v1/alerts", get(alerts))
        .route("/v1/ecosystem", get(ecosystem))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Serves the API on `listener` until the coordinator shuts down.
///
/// # Errors
/// When the server fails.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<()> {
    let token = shared.shutdown.clone();
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}
