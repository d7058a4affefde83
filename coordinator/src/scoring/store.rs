//! The scoring tables of the coordinator's database (schema version 6): score history per
//! enterprise and model name, alerts, and the ecosystem health index per period.

use std::collections::VecDeque;

use fedcredit_federation::serving::{EnterpriseScore, PartyPoints};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::store::{Store, StoreError};

fn sql(
    op: &'static str,
    table: &'static str,
    key: &str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let key = key.to_owned();
    move |source| StoreError::Sql { op, table, key, source }
}

/// A recorded score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    /// When.
    pub at_ms: i64,
    /// The model name.
    pub model: String,
    /// The version that scored.
    pub version: i64,
    /// What caused it.
    pub cause: String,
    /// The score.
    #[serde(flatten)]
    pub score: EnterpriseScore,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// Its number (increasing).
    pub seq: i64,
    /// When.
    pub at_ms: i64,
    /// `score_drop`, `pd_above`, `contribution_jump`, `ecosystem_drop`, `contagion`.
    pub kind: String,
    /// The model name.
    pub model: String,
    /// The enterprise (empty for the ecosystem).
    pub enterprise: String,
    /// For people.
    pub detail: String,
}

/// A point of the ecosystem health index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EcosystemRow {
    /// The period's number.
    pub period: i64,
    /// When.
    pub at_ms: i64,
    /// 100 × the share of monitored enterprises below the healthy PD.
    pub index: f64,
    /// Mean score points.
    pub mean_points: f64,
    /// Monitored enterprises.
    pub enterprises: u64,
    /// What closed the period.
    pub cause: String,
}

fn read_history(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryRow> {
    let parties: String = r.get(8)?;
    let pd: f64 = r.get(4)?;
    Ok(HistoryRow {
        at_ms: r.get(0)?,
        model: r.get(1)?,
        version: r.get(2)?,
        cause: r.get(7)?,
        score: EnterpriseScore {
            id: r.get(3)?,
            error: None,
            pd,
            points: r.get(5)?,
            band: r.get(6)?,
            reasons: Vec::new(),
            parties: serde_json::from_str::<Vec<PartyPoints>>(&parties).unwrap_or_default(),
        },
    })
}

const HISTORY_COLUMNS: &str =
    "at_ms, model, version, enterprise, pd, points, band, cause, parties_json";

impl Store {
    /// Appends scores of model `model` (version `version`) to the history, with `alerts`
    /// `(kind, enterprise, detail)`, in one transaction.
    pub fn record_scores(
        &self,
        model: &str,
        version: i64,
        at_ms: i64,
        cause: &str,
        scores: &[&EnterpriseScore],
        alerts: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let op = "record scores";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql(op, "score_history", model))?;
        {
            let mut ins = tx
                .prepare_cached(&format!(
                    "INSERT INTO score_history ({HISTORY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))
                .map_err(sql(op, "score_history", model))?;
            for s in scores {
                let parties = serde_json::to_string(&s.parties).unwrap_or_default();
                ins.execute(params![
                    at_ms, model, version, s.id, s.pd, s.points, s.band, cause, parties
                ])
                .map_err(sql(op, "score_history", &s.id))?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO alerts (at_ms, kind, model, enterprise, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql(op, "alerts", model))?;
            for (kind, enterprise, detail) in alerts {
                ins.execute(params![at_ms, kind, model, enterprise, detail])
                    .map_err(sql(op, "alerts", enterprise))?;
            }
        }
        tx.commit().map_err(sql(op, "score_history", model))
    }

    /// An enterprise's history (under `model`, or every model), oldest first.
    pub fn score_history(
        &self,
        enterprise: &str,
        model: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM score_history
                 WHERE enterprise = ?1 AND (?2 IS NULL OR model = ?2) ORDER BY seq"
            ))
            .map_err(sql("read history", "score_history", enterprise))?;
        stmt.query_map(params![enterprise, model], read_history)
            .and_then(|rows| rows.collect())
            .map_err(sql("read history", "score_history", enterprise))
    }

    /// The last `n` scores of an enterprise under `model`, oldest first.
    pub fn recent_scores(
        &self,
        model: &str,
        enterprise: &str,
        n: usize,
    ) -> Result<VecDeque<EnterpriseScore>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM score_history
                 WHERE model = ?1 AND enterprise = ?2 ORDER BY seq DESC LIMIT ?3"
            ))
            .map_err(sql("read history", "score_history", enterprise))?;
        let rows: Vec<HistoryRow> = stmt
            .query_map(params![model, enterprise, n as i64], read_history)
            .and_then(|rows| rows.collect())
            .map_err(sql("read history", "score_history", enterprise))?;
        Ok(rows.into_iter().rev().map(|r| r.score).collect())
    }

    /// The monitored enterprises of `model` (scored at least once), each with its first and
    /// latest score.
    pub fn monitored(
        &self,
        model: &str,
    ) -> Result<Vec<(EnterpriseScore, EnterpriseScore)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM score_history WHERE seq IN (
                    SELECT MIN(seq) FROM score_history WHERE model = ?1 GROUP BY enterprise
                    UNION ALL
                    SELECT MAX(seq) FROM score_history WHERE model = ?1 GROUP BY enterprise)
                 ORDER BY enterprise, seq"
            ))
            .map_err(sql("read monitored", "score_history", model))?;
        let rows: Vec<HistoryRow> = stmt
            .query_map(params![model], read_history)
            .and_then(|rows| rows.collect())
            .map_err(sql("read monitored", "score_history", model))?;
        let mut out: Vec<(EnterpriseScore, EnterpriseScore)> = Vec::new();
        for r in rows {
            match out.last_mut() {
                Some((first, last)) if first.id == r.score.id => *last = r.score,
                _ => out.push((r.score.clone(), r.score)),
            }
        }
        Ok(out)
    }

    /// Appends a point of the health index and its alert, if any.
    pub fn record_ecosystem(
        &self,
        model: &str,
        at_ms: i64,
        point: (f64, f64, u64),
        cause: &str,
        alert: Option<&str>,
    ) -> Result<(), StoreError> {
        let op = "record ecosystem";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql(op, "ecosystem", model))?;
        tx.execute(
            "INSERT INTO ecosystem (model, at_ms, idx, mean_points, enterprises, cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![model, at_ms, point.0, point.1, point.2 as i64, cause],
        )
        .map_err(sql(op, "ecosystem", model))?;
        if let Some(detail) = alert {
            tx.execute(
                "INSERT INTO alerts (at_ms, kind, model, enterprise, detail) VALUES (?1, 'ecosystem_drop', ?2, '', ?3)",
                params![at_ms, model, detail],
            )
            .map_err(sql(op, "alerts", model))?;
        }
        tx.commit().map_err(sql(op, "ecosystem", model))
    }

    /// The health index of `model`, oldest first.
    pub fn ecosystem(&self, model: &str) -> Result<Vec<EcosystemRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at_ms, idx, mean_points, enterprises, cause FROM ecosystem
                 WHERE model = ?1 ORDER BY seq",
            )
            .map_err(sql("read ecosystem", "ecosystem", model))?;
        let rows: Vec<EcosystemRow> = stmt
            .query_map([model], |r| {
                Ok(EcosystemRow {
                    period: r.get(0)?,
                    at_ms: r.get(1)?,
                    index: r.get(2)?,
                    mean_points: r.get(3)?,
                    enterprises: r.get::<_, i64>(4)?.max(0) as u64,
                    cause: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(sql("read ecosystem", "ecosystem", model))?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| EcosystemRow { period: i as i64 + 1, ..r })
            .collect())
    }

    /// Alerts after `after`, newest first, at most `limit`.
    pub fn alerts(&self, after: i64, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at_ms, kind, model, enterprise, detail FROM alerts
                 WHERE seq > ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(sql("read alerts", "alerts", "all"))?;
        stmt.query_map(params![after, limit as i64], |r| {
            Ok(AlertRow {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                model: r.get(3)?,
                enterprise: r.get(4)?,
                detail: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(sql("read alerts", "alerts", "all"))
    }

    /// Appends alerts `(kind, enterprise, detail)` of `model`.
    pub fn add_alerts(
        &self,
        model: &str,
        at_ms: i64,
        alerts: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.record_scores(model, 0, at_ms, "", &[], alerts)
    }

    /// Whether the history of `model` holds `enterprise`.
    pub fn is_monitored(&self, model: &str, enterprise: &str) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT 1 FROM score_history WHERE model = ?1 AND enterprise = ?2 LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![model, enterprise], |_| Ok(())).optional())
            .map(|o| o.is_some())
            .map_err(sql("read history", "score_history", enterprise))
    }
}
