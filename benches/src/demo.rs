//! `fedcredit demo`: the embedded default, end to end on the machine it runs on.
//!
//! The vertical story (the default):
//! 1. Generates the synthetic enterprise ecosystem (`fedcredit_datasets::synthetic`).
//! 2. The bank, the tax bureau and the platform (one participant process each, a coordinator,
//!    mutual TLS) align their tables by PSI and train the vertical `logistic` and `scorecard`
//!    models by secret sharing, each party keeping its own part; against the same models on
//!    the joined table (`centralized`) and on each party's columns alone; GBDT centralized and
//!    per party (SecureBoost comes next).
//! 3. [`crate::serving`]: a vertical scorecard is trained on an earlier month and served;
//!    the portfolio is scored by federated inference; the data rolls forward month by month,
//!    scores move, alerts fire (contagion along the tax bureau's supply links, the ecosystem
//!    health index); an HTML report is written.
//!
//! With `horizontal`: the bank's table is split into three banks (same columns, different
//! enterprises) that train GBDT, scorecard and logistic regression under secure aggregation
//! ([`crate::horizontal`]) beside the pooled model and each bank alone.
//!
//! Everything lands in `--out DIR`: the data, the federations' state and logs,
//! `results.json`, `report.html`.

use std::path::PathBuf;

use fedcredit_datasets::partition_horizontal;
use fedcredit_datasets::synthetic::{EcosystemConfig, generate};
use serde::Serialize;

use crate::accuracy::{self, AccuracyConfig, AccuracyRow, ModelName};
use crate::horizontal::{self, HorizontalConfig};
use crate::{BenchError, Forward, Observer};

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Output directory.
    pub out: PathBuf,
    /// Enterprises in the ecosystem.
    pub enterprises: usize,
    /// Seed of everything.
    pub seed: u64,
    /// The `fedcredit` binary (for the federation's processes).
    pub bin: PathBuf,
    /// Banks the bank table is split into.
    pub banks: usize,
    /// The horizontal three-banks demo instead of the vertical story.
    pub horizontal: bool,
    /// Months the serving story rolls forward.
    pub forward: usize,
    /// Keep the serving federation running (returned to the caller).
    pub serve: bool,
}

/// What the demo found.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Horizontal: federated vs centralized vs each bank alone.
    pub horizontal: Vec<AccuracyRow>,
    /// Vertical: federated over processes vs the joined table vs each party's columns alone.
    pub vertical: Vec<AccuracyRow>,
    /// The serving story (vertical demo).
    pub serving: Option<crate::serving::ServingReport>,
}

/// Runs the demo; `say` gets progress lines and the progress of the local fits.
///
/// # Errors
/// [`BenchError`] naming the step that failed.
pub fn run(
    cfg: &DemoConfig,
    mut say: impl Observer,
) -> Result<(DemoReport, Option<fedcredit_ops::LocalFederation>), BenchError> {
    let eco_cfg = EcosystemConfig {
        n_enterprises: cfg.enterprises,
        seed: cfg.seed,
        ..EcosystemConfig::default()
    };
    say.line(&format!(
        "generating a synthetic ecosystem: {} enterprises, {} months, {} core enterprises",
        eco_cfg.n_enterprises, eco_cfg.n_months, eco_cfg.n_cores
    ));
    let eco = generate(&eco_cfg)?;
    let month = eco_cfg.n_months - 1;
    if !cfg.horizontal {
        return vertical_story(cfg, &eco, month, &mut say);
    }
    let label = eco.label_column();
    let snapshot = eco.snapshot(month)?;
    let bank = &snapshot.bank;
    let y = bank.label.as_ref().map(|l| l.to_vec()).unwrap_or_default();
    let parts = partition_horizontal(&bank.ids, &y, cfg.banks, cfg.seed)?;
    let bank_dir = cfg.out.join("data").join("banks");
    std::fs::create_dir_all(&bank_dir)
        .map_err(|e| BenchError::Config(format!("creating {}: {e}", bank_dir.display())))?;
    let mut files = Vec::new();
    for (i, rows) in parts.iter().enumerate() {
        let path = bank_dir.join(format!("bank{}.csv", i + 1));
        bank.select_rows(rows).write_csv(&path, "id", None, Some(&label))?;
        files.push(path);
    }
    say.line(&format!(
        "split the bank's month-{month} table ({} enterprises) into {} banks: {}",
        bank.n_rows(),
        cfg.banks,
        parts.iter().map(|p| p.len().to_string()).collect::<Vec<_>>().join(" + ")
    ));
    let hcfg = HorizontalConfig {
        data: files,
        id: "id".into(),
        label: label.clone(),
        test: None,
        test_fraction: 0.2,
        seed: cfg.seed,
        models: vec![ModelName::Gbdt, ModelName::Scorecard, ModelName::Logistic],
        bin: cfg.bin.clone(),
        dir: cfg.out.join("federation"),
        gbdt_trees: None,
    };
    if hcfg.dir.exists() {
        std::fs::remove_dir_all(&hcfg.dir)
            .map_err(|e| BenchError::Config(format!("clearing {}: {e}", hcfg.dir.display())))?;
    }
    let horizontal = horizontal::run(&hcfg, Forward(&mut say))?;

    let report = DemoReport { horizontal, vertical: Vec::new(), serving: None };
    write_results(cfg, &report, &mut say)?;
    Ok((report, None))
}

fn write_results(
    cfg: &DemoConfig,
    report: &DemoReport,
    say: &mut impl Observer,
) -> Result<(), BenchError> {
    let json = cfg.out.join("results.json");
    let text =
        serde_json::to_string_pretty(report).map_err(|e| BenchError::Config(e.to_string()))?;
    std::fs::write(&json, text)
        .map_err(|e| BenchError::Config(format!("writing {}: {e}", json.display())))?;
    say.line(&format!("wrote {}", json.display()));
    Ok(())
}

/// The vertical comparison, then the serving story.
fn vertical_story(
    cfg: &DemoConfig,
    eco: &fedcredit_datasets::synthetic::Ecosystem,
    month: usize,
    say: &mut impl Observer,
) -> Result<(DemoReport, Option<fedcredit_ops::LocalFederation>), BenchError> {
    let label = eco.label_column();
    say.line(
        "vertical: bank, tax bureau and platform, federated over processes vs joined vs each alone",
    );
    let files = eco.write_csv(&cfg.out.join("data"), Some(month))?;
    let acc = AccuracyConfig {
        data: files,
        id: "id".into(),
        label,
        test_fraction: 0.2,
        seed: cfg.seed,
        models: vec![ModelName::Scorecard, ModelName::Logistic, ModelName::Gbdt],
        federated_models: vec![ModelName::Scorecard, ModelName::Logistic, ModelName::Gbdt],
        gbdt: demo_gbdt(),
        federation: Some(crate::vertical::FederationRun {
            bin: cfg.bin.clone(),
            dir: cfg.out.join("federation-vertical"),
        }),
    };
    if let Some(f) = &acc.federation
        && f.dir.exists()
    {
        std::fs::remove_dir_all(&f.dir)
            .map_err(|e| BenchError::Config(format!("clearing {}: {e}", f.dir.display())))?;
    }
    let vertical = accuracy::run(&acc, Forward(&mut *say))?;
    let serving_cfg = crate::serving::ServingConfig {
        bin: cfg.bin.clone(),
        dir: cfg.out.join("serving"),
        month: month.saturating_sub(cfg.forward),
        forward: cfg.forward.min(month),
        report: cfg.out.join("report.html"),
    };
    if serving_cfg.dir.exists() {
        std::fs::remove_dir_all(&serving_cfg.dir).map_err(|e| {
            BenchError::Config(format!("clearing {}: {e}", serving_cfg.dir.display()))
        })?;
    }
    let (serving, fed) =
        crate::serving::run(eco, &serving_cfg, cfg.serve, &mut |l: &str| say.line(l))
            .map_err(BenchError::Config)?;
    let report = DemoReport { horizontal: Vec::new(), vertical, serving: Some(serving) };
    write_results(cfg, &report, say)?;
    Ok((report, fed))
}

/// The demo's GBDT in every vertical setting (joined, each party alone, federated): 40 trees of
/// depth 4 on 32 bins, so that the federated run (SecureBoost over processes) takes seconds.
pub(crate) fn demo_gbdt() -> fedcredit_models::gbdt::GbdtParams {
    fedcredit_models::gbdt::GbdtParams {
        n_trees: 40,
        max_depth: 4,
        max_bins: 32,
        ..Default::default()
    }
}
