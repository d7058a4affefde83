//! `fedcredit bench scoring`: the scoring service's latency and throughput for a vertical
//! model over separate processes on loopback with mutual TLS.
//!
//! A bank, a tax bureau and a platform (or `parties` parties) hold generated columns of the
//! same enterprises ([`crate::bench_vlr::VerticalTables`]); a vertical `scorecard`,
//! `logistic` or `gbdt` (SecureBoost, 100 trees of depth 5) model is trained and served. Then, over the gRPC `Scoring` service as the
//! operator:
//!
//! - single requests, one enterprise each, `concurrency` at a time: p50 / p99 latency from the
//!   client's send to its answer (federated inference: a query to every party over its
//!   stream, each answering from its latest snapshot);
//! - batches of `batch` enterprises, `concurrency` at a time: scores per second.
//!
//! Warm-up requests come first and are not counted.

use std::path::PathBuf;
use std::time::Instant;

use fedcredit_proto::pb;
use serde::Serialize;

use crate::bench::start_federation;
use crate::bench_vlr::{VerticalTables, vertical_job_toml};
use crate::client::{OpsError, ScoringClient};
use crate::launch::PartySetup;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ScoringBenchConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory.
    pub dir: PathBuf,
    /// Parties (the first holds the label).
    pub parties: usize,
    /// Common enterprises.
    pub rows: usize,
    /// Columns per party.
    pub features: usize,
    /// `scorecard` or `logistic`.
    pub model: String,
    /// Single requests to time.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Enterprises per batch.
    pub batch: usize,
    /// Batches to time.
    pub batches: usize,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ScoringBenchResult {
    /// Parties.
    pub parties: usize,
    /// The model's kind.
    pub model: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Single requests timed.
    pub requests: usize,
    /// Median single-request latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Single requests answered per second.
    pub single_per_s: f64,
    /// Enterprises per batch.
    pub batch: usize,
    /// Scores per second in batches.
    pub batch_scores_per_s: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark.
///
/// # Errors
/// [`OpsError`] when the federation cannot start, training fails or a request fails.
pub async fn scoring(
    cfg: &ScoringBenchConfig,
    mut say: impl FnMut(&str),
) -> Result<ScoringBenchResult, OpsError> {
    let local = |e: String| OpsError::Local(e);
    std::fs::create_dir_all(&cfg.dir).map_err(|e| local(format!("{}: {e}", cfg.dir.display())))?;
    let tables = VerticalTables::new(cfg.rows, &vec![cfg.features; cfg.parties], 5);
    let setups: Vec<PartySetup> = tables
        .names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let path = cfg.dir.join(format!("{n}.csv"));
            tables.write(k, &path).map(|()| PartySetup::new(n.clone(), path))
        })
        .collect::<Result<_, _>>()?;
    let (fed, mut control) = start_federation(&cfg.bin, &cfg.dir, true, &setups, &mut say).await?;
    say(&format!("training a vertical {} model ({} rows)", cfg.model, cfg.rows));
    let toml = if cfg.model == "gbdt" {
        // A 100-tree depth-5 SecureBoost model: each request routes through every party's
        // leaf sets.
        let quoted: Vec<String> = tables.names.iter().map(|n| format!("\"{n}\"")).collect();
        format!(
            "name = \"bench-scoring-gbdt\"\nparties = [{}]\nphase_timeout_secs = 1800\n\
             [data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"gbdt\"\nn_trees = 100\n\
             max_depth = 5\nmax_bins = 32\n[vertical]\nlabel_holder = \"{}\"\n",
            quoted.join(", "),
            tables.names[0]
        )
    } else {
        vertical_job_toml(&tables.names, &cfg.model, 2, 0)
    };
    let job = control.submit(&toml).await?;
    let end = crate::progress::follow(&mut control, &job.id, false).await?;
    if end.state != "succeeded" {
        return Err(local(format!("the training job {}: {}", end.state, end.error)));
    }
    let scoring = ScoringClient::connect(&fed.client_config()).await?;
    let ids: Vec<String> = (0..cfg.rows as u64).map(|e| format!("91{e:016}")).collect();
    let one = |i: usize| pb::ScoreRequest {
        ids: vec![ids[(i * 7919) % ids.len()].clone()],
        reasons: Some(3),
        ..Default::default()
    };
    // Parts load when the job ends; the first answers may wait for them.
    let mut c = scoring.clone();
    for i in 0..200 {
        c.score(one(i)).await?;
    }
    say(&format!("{} single requests, {} at a time", cfg.requests, cfg.concurrency));
    let started = Instant::now();
    let per = cfg.requests.div_ceil(cfg.concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..cfg.concurrency.max(1) {
        let mut c = scoring.clone();
        let reqs: Vec<pb::ScoreRequest> = (0..per).map(|i| one(t * per + i)).collect();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(reqs.len());
            for r in reqs {
                let t0 = Instant::now();
                c.score(r).await?;
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, OpsError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| local(e.to_string()))??);
    }
    let single_secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    say(&format!(
        "{} batches of {} enterprises, {} at a time",
        cfg.batches, cfg.batch, cfg.concurrency
    ));
    let batch_of = |b: usize| pb::ScoreRequest {
        ids: (0..cfg.batch).map(|i| ids[(b * cfg.batch + i) % ids.len()].clone()).collect(),
        reasons: Some(3),
        ..Default::default()
    };
    c.score(batch_of(0)).await?;
    let started = Instant::now();
    let per = cfg.batches.div_ceil(cfg.concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..cfg.concurrency.max(1) {
        let mut c = scoring.clone();
        let reqs: Vec<pb::ScoreRequest> = (0..per).map(|i| batch_of(t * per + i + 1)).collect();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            for r in reqs {
                n += c.score(r).await?.scores.len();
            }
            Ok::<_, OpsError>(n)
        }));
    }
    let mut scored = 0;
    for t in tasks {
        scored += t.await.map_err(|e| local(e.to_string()))??;
    }
    let batch_secs = started.elapsed().as_secs_f64();
    drop(fed);
    Ok(ScoringBenchResult {
        parties: cfg.parties,
        model: cfg.model.clone(),
        concurrency: cfg.concurrency,
        requests: lat.len(),
        p50_ms: quantile(&lat, 0.5),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        single_per_s: lat.len() as f64 / single_secs,
        batch: cfg.batch,
        batch_scores_per_s: scored as f64 / batch_secs,
    })
}
