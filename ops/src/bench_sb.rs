//! `fedcredit bench secureboost`: vertical gradient-boosted trees
//! (`fedcredit_federation::vertical::secureboost`: SecureBoost, Cheng et al., arXiv
//! 1901.08755, with SecureBoost+'s packing, compression and optional GOSS, arXiv 2110.10927)
//! between separate processes on loopback with mutual TLS, over generated tables of the
//! requested shape: the bank holds the label and `features[0]` columns, every other party its
//! own columns (and ids no other party has: PSI aligns them first).
//!
//! Two jobs run, one of 1 tree and one of `trees + 1` trees; the secureboost stage's time comes
//! from the coordinator's step records, so `seconds_per_tree = (t_{T+1} − t_1) / T` and the
//! setup (binning, the key, the layouts) is `t_1 − seconds_per_tree`.

use std::path::PathBuf;

use serde::Serialize;

use crate::bench::{run_job, start_federation};
use crate::bench_vlr::{VerticalTables, first_and_last_step_seconds};
use crate::client::OpsError;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SbBenchConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory (tables, certificates, configs, logs).
    pub dir: PathBuf,
    /// Common rows.
    pub rows: usize,
    /// Columns per party, the label holder first.
    pub features: Vec<usize>,
    /// Trees whose time is measured.
    pub trees: u32,
    /// Depth of every tree.
    pub depth: u32,
    /// Value bins per feature.
    pub bins: u32,
    /// Gradient-based one-side sampling.
    pub goss: bool,
    /// Share of the common rows held out for the validation figures.
    pub validation: f64,
    /// Modulus bits of the label holder's key.
    pub key_bits: u32,
    /// `ou` or `paillier`.
    pub scheme: String,
    /// Mutual TLS (default) or plain text.
    pub tls: bool,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct SbBenchResult {
    /// Common rows.
    pub rows: usize,
    /// Columns per party.
    pub features: Vec<usize>,
    /// Trees measured.
    pub trees: u32,
    /// Depth.
    pub depth: u32,
    /// Value bins per feature.
    pub bins: u32,
    /// GOSS on.
    pub goss: bool,
    /// Key.
    pub scheme: String,
    /// Modulus bits.
    pub key_bits: u32,
    /// Mutual TLS.
    pub tls: bool,
    /// `(t_{T+1} − t_1) / T`.
    pub seconds_per_tree: f64,
    /// `t_1 − seconds_per_tree`: binning, the key, the layouts.
    pub setup_seconds: f64,
    /// The secureboost stage of the 1-tree job.
    pub first_tree_seconds: f64,
    /// The alignment step, seconds.
    pub align_seconds: f64,
    /// Validation AUC the label holder reported after the last tree (NaN without validation
    /// rows).
    pub valid_auc: f64,
}

/// The job of the benchmark.
pub fn secureboost_job_toml(cfg: &SbBenchConfig, names: &[String], trees: u32) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "name = \"bench-secureboost-{trees}\"\nparties = [{}]\nphase_timeout_secs = 1800\n\
         grace_secs = 60\n[data]\nid = \"id\"\nlabel = \"y\"\nvalidation_fraction = {}\n\
         [model]\nkind = \"gbdt\"\nn_trees = {trees}\nmax_depth = {}\nmax_bins = {}\n\
         [vertical]\nlabel_holder = \"{}\"\n[vertical.he]\nscheme = \"{}\"\nbits = {}\n\
         [vertical.secureboost]\ngoss = {}\n",
        quoted.join(", "),
        cfg.validation,
        cfg.depth,
        cfg.bins,
        names[0],
        cfg.scheme,
        cfg.key_bits,
        cfg.goss
    )
}

/// Runs `fedcredit bench secureboost`. `say` gets progress lines.
///
/// # Errors
/// [`OpsError`] when a table cannot be written, processes cannot start or a job fails (see
/// the logs under `dir/logs`).
pub async fn secureboost(
    cfg: &SbBenchConfig,
    mut say: impl FnMut(&str),
) -> Result<SbBenchResult, OpsError> {
    if cfg.features.len() < 2 || cfg.features.contains(&0) || cfg.rows < 100 || cfg.trees == 0 {
        return Err(OpsError::Local(
            "need at least 2 parties with at least one column each, 100 rows and 1 tree".into(),
        ));
    }
    let tables = VerticalTables::new(cfg.rows, &cfg.features, 23);
    let setups = tables.write_all(&cfg.dir, &mut say)?;
    let (fed, mut client) =
        start_federation(&cfg.bin, &cfg.dir, cfg.tls, &setups, &mut say).await?;
    let stage = first_and_last_step_seconds;
    say("secureboost job, 1 tree");
    let (r1, _) = run_job(&mut client, &secureboost_job_toml(cfg, &tables.names, 1)).await?;
    let (_, t1) = stage(&r1);
    say(&format!("secureboost job, {} trees", cfg.trees + 1));
    let (rt, metrics) =
        run_job(&mut client, &secureboost_job_toml(cfg, &tables.names, cfg.trees + 1)).await?;
    let (align_seconds, tt) = stage(&rt);
    drop(fed);
    let per = (tt - t1) / f64::from(cfg.trees);
    let valid_auc =
        metrics.get("valid_auc").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    Ok(SbBenchResult {
        rows: cfg.rows,
        features: cfg.features.clone(),
        trees: cfg.trees,
        depth: cfg.depth,
        bins: cfg.bins,
        goss: cfg.goss,
        scheme: cfg.scheme.clone(),
        key_bits: cfg.key_bits,
        tls: cfg.tls,
        seconds_per_tree: per,
        setup_seconds: t1 - per,
        first_tree_seconds: t1,
        align_seconds,
        valid_auc,
    })
}
