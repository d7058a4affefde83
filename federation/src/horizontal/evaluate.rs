//! Federated validation metrics without pooling predictions: every party scores its own
//! validation rows with the current model and contributes per-bucket counts of events and
//! non-events on the logit scale, plus its log-loss sum and row count; the trainer computes AUC
//! and KS from the pooled buckets (`metrics::auc_from_bucket_counts`, rows in one bucket count
//! as tied, so the AUC is exact up to the bucket width of 0.01 in log-odds) and the mean log
//! loss. What the coordinator learns: the pooled score distribution by label at that
//! resolution, pooled log loss and validation rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use fedcredit_models::Dataset;
use fedcredit_models::gbdt::BinMapper;
use fedcredit_models::metrics::{auc_from_bucket_counts, ks_from_bucket_counts};

use super::TrainError;
use super::gbdt::BinNode;
use super::lr::Design;

/// Buckets of the logit scale.
pub const BUCKETS: usize = 2000;
const LOGIT_RANGE: f64 = 10.0;

/// Score your validation rows with this model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum EvalTask {
    /// Gradient-boosted trees in bin space.
    Gbdt {
        /// Bin edges (`BinMapper::from_edges` format).
        edges: Vec<Vec<f64>>,
        /// Initial raw score.
        base_score: f64,
        /// The trees.
        trees: Vec<Vec<BinNode>>,
    },
    /// A linear model over a design: coefficients, then the intercept.
    Linear {
        /// The columns.
        design: Design,
        /// Coefficients then intercept.
        theta: Vec<f64>,
    },
}

/// The raw score (log-odds) of every row of `valid` under the model of `task`.
fn logits(valid: &Dataset, task: &EvalTask) -> Result<Vec<f64>, TrainError> {
    match task {
        EvalTask::Gbdt { edges, base_score, trees } => {
            let mapper = BinMapper::from_edges(valid.features.specs.clone(), edges.clone())?;
            let binned = mapper.bin(&valid.features)?;
            let mut z = vec![*base_score; valid.n_rows()];
            for tree in trees {
                for (r, zr) in z.iter_mut().enumerate() {
                    if let Some(BinNode::Leaf { v }) =
                        tree.get(super::gbdt::route(tree, &binned, r))
                    {
                        *zr += v;
                    }
                }
            }
            Ok(z)
        }
        EvalTask::Linear { design, theta } => {
            let x = design.matrix(&valid.features)?;
            let d = x.ncols();
            if theta.len() != d + 1 {
                return Err(TrainError::Protocol(format!(
                    "evaluation has {} coefficients for {d} columns",
                    theta.len()
                )));
            }
            let beta = ndarray::ArrayView1::from(&theta[..d]);
            Ok((x.dot(&beta) + theta[d]).to_vec())
        }
    }
}

/// Elements of an evaluation vector.
pub fn vector_len() -> usize {
    2 * BUCKETS + 2
}

fn bucket(z: f64) -> usize {
    let t = ((z + LOGIT_RANGE) / (2.0 * LOGIT_RANGE) * BUCKETS as f64).floor();
    if t.is_nan() { 0 } else { t.clamp(0.0, (BUCKETS - 1) as f64) as usize }
}

/// A party's evaluation vector: event buckets, non-event buckets, log-loss sum, rows.
///
/// # Errors
/// [`TrainError`] when the model cannot be read or does not fit the columns.
pub fn eval_vector(valid: Option<&Dataset>, task: &EvalTask) -> Result<Vec<f64>, TrainError> {
    let mut v = vec![0.0; vector_len()];
    let Some(valid) = valid.filter(|d| d.n_rows() > 0) else { return Ok(v) };
    let z = logits(valid, task)?;
    let mut loss = 0.0;
    for (&z, &y) in z.iter().zip(&valid.label) {
        let q = fedcredit_models::logistic::sigmoid(z).clamp(1e-15, 1.0 - 1e-15);
        let z = (q / (1.0 - q)).ln();
        let b = bucket(z);
        if y == 1.0 {
            v[b] += 1.0;
            loss -= q.ln();
        } else {
            v[BUCKETS + b] += 1.0;
            loss -= (1.0 - q).ln();
        }
    }
    v[2 * BUCKETS] = loss;
    v[2 * BUCKETS + 1] = valid.n_rows() as f64;
    Ok(v)
}

/// Metrics from a pooled evaluation vector: `auc`, `ks`, `log_loss`, `n_valid` (the first
/// three only when both classes are present).
///
/// # Errors
/// [`TrainError::Protocol`] on a vector of the wrong length.
pub fn metrics_from_sum(sum: &[f64]) -> Result<BTreeMap<String, f64>, TrainError> {
    if sum.len() != vector_len() {
        return Err(TrainError::Protocol(format!(
            "evaluation sum has {} elements, expected {}",
            sum.len(),
            vector_len()
        )));
    }
    let pos: Vec<f64> = sum[..BUCKETS].iter().map(|&c| super::prep::count(c)).collect();
    let neg: Vec<f64> = sum[BUCKETS..2 * BUCKETS].iter().map(|&c| super::prep::count(c)).collect();
    let n = super::prep::count(sum[2 * BUCKETS + 1]);
    let mut m = BTreeMap::new();
    m.insert("n_valid".to_string(), n);
    if let (Ok(auc), Ok(ks)) =
        (auc_from_bucket_counts(&pos, &neg), ks_from_bucket_counts(&pos, &neg))
    {
        m.insert("auc".into(), auc);
        m.insert("ks".into(), ks);
    }
    if n > 0.0 {
        m.insert("log_loss".into(), sum[2 * BUCKETS] / n);
    }
    Ok(m)
}
