//! `fedcredit bench accuracy`: centralized and single-party credit models on real files.
//!
//! Several `--data` files are vertical parts joined on the id column; the label lives in
//! exactly one of them (the label holder). For each model (`logistic`, `scorecard`,
//! `gbdt`) the runner trains on all joined columns (`centralized`) and, when there is
//! more than one file, on each file's columns alone (`party:<file stem>`), always on the
//! same stratified train split (`fedcredit_datasets::stratified_split`), and evaluates
//! on the test split. With several files, every model also runs `federated`: the vertical
//! protocol's roles over each file's columns ([`crate::vertical`]; SecureBoost for `gbdt`).

use std::path::PathBuf;
use std::time::Instant;

use fedcredit_datasets::{TableSpec, join_vertical, load_table, stratified_split};
use fedcredit_models::gbdt::{self, GbdtParams};
use fedcredit_models::logistic::{LogisticParams, LogisticPipeline};
use fedcredit_models::metrics::Metrics;
use fedcredit_models::scorecard::{Scorecard, ScorecardParams};
use fedcredit_models::{Dataset, Features, ModelError};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::{BenchError, Observer};
use fedcredit_models::FitProgress;
use fedcredit_models::preprocess::EncoderOptions;

/// The models the runner compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelName {
    /// LR on standardized (imputed, one-hot) features.
    Logistic,
    /// LR on WOE-binned features, scaled to points.
    Scorecard,
    /// Histogram gradient boosting.
    Gbdt,
}

impl ModelName {
    /// All models, in report order.
    pub const ALL: [ModelName; 3] = [ModelName::Logistic, ModelName::Scorecard, ModelName::Gbdt];

    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::Logistic => "logistic",
            ModelName::Scorecard => "scorecard",
            ModelName::Gbdt => "gbdt",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct AccuracyConfig {
    /// Vertical parts, joined on `id`.
    pub data: Vec<PathBuf>,
    /// Id column, present in every file.
    pub id: String,
    /// Label column, present in exactly one file.
    pub label: String,
    /// Fraction of each class held out for testing.
    pub test_fraction: f64,
    /// Seed of the split and of every model.
    pub seed: u64,
    /// Models to train.
    pub models: Vec<ModelName>,
    /// Which of them also train federated (with several files).
    pub federated_models: Vec<ModelName>,
    /// The `gbdt` parameters of every setting (centralized, each party, federated).
    pub gbdt: GbdtParams,
    /// Where the processes of the real `federated` runs live; `None` runs the vertical
    /// protocol's roles in this process instead (setting `federated:in-process`).
    pub federation: Option<crate::vertical::FederationRun>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// `logistic`, `scorecard` or `gbdt`.
    pub model: String,
    /// `centralized` or `party:<file stem>`.
    pub setting: String,
    /// Test AUC.
    pub auc: f64,
    /// Test KS.
    pub ks: f64,
    /// Test Gini (2·AUC − 1).
    pub gini: f64,
    /// Test log loss.
    pub log_loss: f64,
    /// Test Brier score.
    pub brier: f64,
    /// Wall seconds spent fitting.
    pub train_seconds: f64,
    /// Training rows.
    pub n_train: usize,
    /// Test rows.
    pub n_test: usize,
    /// Feature columns used.
    pub n_features: usize,
    /// Federated GBDT: wall time per tree from the coordinator's step records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_ms: Option<TreeTimes>,
}

impl AccuracyRow {
    /// The row of `model` in `setting` with test metrics `m`, `secs` of training and
    /// `(training rows, test rows, feature columns)`.
    pub fn new(
        model: ModelName,
        setting: &str,
        m: &Metrics,
        secs: f64,
        (n_train, n_test, n_features): (usize, usize, usize),
    ) -> Self {
        Self {
            model: model.as_str().to_owned(),
            setting: setting.to_owned(),
            auc: m.auc,
            ks: m.ks,
            gini: m.gini,
            log_loss: m.log_loss,
            brier: m.brier,
            train_seconds: secs,
            n_train,
            n_test,
            n_features,
            tree_ms: None,
        }
    }
}

/// Wall time of the trees of a federated GBDT run (every step of a tree: root, levels), ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeTimes {
    /// The first tree.
    pub first: f64,
    /// The tenth tree (the first with the model past its warm-up).
    pub tenth: f64,
    /// The last tree.
    pub last: f64,
    /// The median tree.
    pub median: f64,
    /// Mean of the first ten trees (a single tree's time is noisy).
    #[serde(default)]
    pub mean_first_10: f64,
    /// Mean of the last ten trees: not above [`Self::mean_first_10`] when per-tree work stays
    /// flat as the model grows.
    #[serde(default)]
    pub mean_last_10: f64,
    /// Trees timed.
    pub trees: usize,
}

/// Trains one model on `train` and returns test-set probabilities and the fit time.
///
/// # Errors
/// The model's own error.
pub fn fit_and_predict(
    model: ModelName,
    train: &Dataset,
    test: &Features,
    seed: u64,
) -> Result<(Array1<f64>, f64), ModelError> {
    fit_and_predict_with_progress(model, train, test, seed, &GbdtParams::default(), &mut |_| {})
}

/// [`fit_and_predict`] with the GBDT parameters (`seed` replaces theirs), reporting the fit's
/// progress (solver iterations, trees) to `progress`. The models use their defaults: the
/// `logistic` encoder pools levels seen fewer than 50 times (`EncoderOptions::default()`).
///
/// # Errors
/// The model's own error.
pub fn fit_and_predict_with_progress(
    model: ModelName,
    train: &Dataset,
    test: &Features,
    seed: u64,
    gbdt_params: &GbdtParams,
    progress: &mut dyn FnMut(FitProgress),
) -> Result<(Array1<f64>, f64), ModelError> {
    let start = Instant::now();
    let (proba, fit_seconds) = match model {
        ModelName::Logistic => {
            let m = LogisticPipeline::fit_with_progress(
                train,
                &EncoderOptions::default(),
                &LogisticParams::default(),
                progress,
            )?;
            let t = start.elapsed().as_secs_f64();
            (m.predict_proba(test)?, t)
        }
        ModelName::Scorecard => {
            let m = Scorecard::fit_with_progress(train, &ScorecardParams::default(), progress)?;
            let t = start.elapsed().as_secs_f64();
            (m.predict_proba(test)?, t)
        }
        ModelName::Gbdt => {
            let params = GbdtParams { seed, ..gbdt_params.clone() };
            let m = gbdt::fit_with_progress(train, None, &params, progress)?;
            let t = start.elapsed().as_secs_f64();
            (m.predict_proba(test)?, t)
        }
    };
    Ok((proba, fit_seconds))
}

/// [`fit_and_predict_with_progress`] between `observer`'s `fit_started` and `fit_finished`.
///
/// # Errors
/// The model's own error.
pub fn observed_fit(
    observer: &mut impl Observer,
    model: ModelName,
    setting: &str,
    train: &Dataset,
    test: &Features,
    seed: u64,
    gbdt_params: &GbdtParams,
) -> Result<(Array1<f64>, f64), ModelError> {
    observer.fit_started(model.as_str(), setting);
    let out = fit_and_predict_with_progress(model, train, test, seed, gbdt_params, &mut |p| {
        observer.fit_progress(p)
    });
    observer.fit_finished();
    out
}

/// Runs the comparison. `progress` receives one line per step and the progress of each fit.
///
/// # Errors
/// [`BenchError`] naming the file, column or model that failed.
pub fn run(
    cfg: &AccuracyConfig,
    mut progress: impl Observer,
) -> Result<Vec<AccuracyRow>, BenchError> {
    if cfg.data.is_empty() {
        return Err(BenchError::Config("give at least one --data file".into()));
    }
    if !(cfg.test_fraction > 0.0 && cfg.test_fraction < 1.0) {
        return Err(BenchError::Config(format!(
            "--test-fraction must be between 0 and 1 (exclusive), got {}",
            cfg.test_fraction
        )));
    }
    let mut tables = Vec::with_capacity(cfg.data.len());
    let mut label_files = Vec::new();
    let mut label_part = 0;
    for (k, path) in cfg.data.iter().enumerate() {
        let columns = fedcredit_datasets::column_names(path)?;
        let has_label = columns.iter().any(|c| c == &cfg.label);
        if has_label {
            label_files.push(path.display().to_string());
            label_part = k;
        }
        let spec = TableSpec {
            label_column: has_label.then(|| cfg.label.clone()),
            ..TableSpec::new(path.clone(), cfg.id.clone())
        };
        progress.line(&format!("loading {}", path.display()));
        tables.push(load_table(&spec)?);
    }
    if label_files.is_empty() {
        return Err(BenchError::Config(format!(
            "no --data file has the label column `{}`",
            cfg.label
        )));
    }
    if label_files.len() > 1 {
        return Err(BenchError::Config(format!(
            "label column `{}` is in more than one file: {}",
            cfg.label,
            label_files.join(", ")
        )));
    }
    let joined = join_vertical(&tables)?;
    let full = joined.dataset()?;
    let split = stratified_split(&joined.ids, &full.label.to_vec(), cfg.test_fraction, cfg.seed)?;
    progress.line(&format!(
        "{} rows after joining on `{}`: {} train, {} test",
        joined.ids.len(),
        cfg.id,
        split.train.len(),
        split.test.len()
    ));

    let mut settings: Vec<(String, Vec<usize>)> =
        vec![("centralized".to_owned(), (0..full.features.n_features()).collect())];
    if joined.parts.len() > 1 {
        for (stem, cols) in &joined.parts {
            settings.push((format!("party:{stem}"), cols.clone()));
        }
    }

    let fed_rows = federated_rows(cfg, &tables, &joined, &full, label_part, &split, &mut progress)?;
    let mut rows = Vec::new();
    for &model in &cfg.models {
        rows.extend(fed_rows.iter().filter(|r| r.model == model.as_str()).cloned());
        for (setting, cols) in &settings {
            let data =
                Dataset { features: full.features.select_columns(cols), label: full.label.clone() };
            let train = data.select_rows(&split.train);
            let test = data.select_rows(&split.test);
            progress.line(&format!(
                "training {} on {} ({} features)",
                model.as_str(),
                setting,
                cols.len()
            ));
            let err = |source| BenchError::Model {
                model: model.as_str().to_owned(),
                setting: setting.clone(),
                source,
            };
            let (proba, train_seconds) = observed_fit(
                &mut progress,
                model,
                setting,
                &train,
                &test.features,
                cfg.seed,
                &cfg.gbdt,
            )
            .map_err(err)?;
            let m = Metrics::compute(&proba.to_vec(), &test.label.to_vec()).map_err(err)?;
            rows.push(AccuracyRow::new(
                model,
                setting,
                &m,
                train_seconds,
                (train.n_rows(), test.n_rows(), cols.len()),
            ));
        }
    }
    Ok(rows)
}

/// The `federated` rows of every model (none with a single file).
fn federated_rows(
    cfg: &AccuracyConfig,
    tables: &[fedcredit_datasets::Table],
    joined: &fedcredit_datasets::JoinedTable,
    full: &Dataset,
    label_part: usize,
    split: &fedcredit_datasets::Split,
    progress: &mut impl Observer,
) -> Result<Vec<AccuracyRow>, BenchError> {
    let models: Vec<ModelName> =
        cfg.models.iter().copied().filter(|m| cfg.federated_models.contains(m)).collect();
    if joined.parts.len() < 2 || models.is_empty() {
        return Ok(Vec::new());
    }
    let label: Vec<f64> = split.test.iter().map(|&i| full.label[i]).collect();
    let row = |model: ModelName, setting: &str, proba: &[f64], secs: f64| {
        let m = Metrics::compute(proba, &label).map_err(|source| BenchError::Model {
            model: model.as_str().to_owned(),
            setting: setting.into(),
            source,
        })?;
        Ok::<_, BenchError>(AccuracyRow::new(
            model,
            setting,
            &m,
            secs,
            (split.train.len(), split.test.len(), full.features.n_features()),
        ))
    };
    let fail = |model: &str, setting: &str, e: String| BenchError::Model {
        model: model.to_owned(),
        setting: setting.into(),
        source: ModelError::InvalidInput(e),
    };
    let mut out = Vec::new();
    match &cfg.federation {
        Some(run) => {
            let mut names: Vec<String> =
                cfg.data.iter().map(|p| crate::horizontal::party_name(p)).collect();
            for k in 1..names.len() {
                if names[..k].contains(&names[k]) {
                    names[k] = format!("{}-{k}", names[k]);
                }
            }
            let ids = |rows: &[usize]| -> Vec<String> {
                rows.iter().map(|&i| joined.ids[i].clone()).collect()
            };
            let fits = crate::vertical::fit_over_processes(
                &models,
                tables,
                &names,
                label_part,
                (&cfg.id, &cfg.label),
                &cfg.gbdt,
                &ids(&split.train),
                &ids(&split.test),
                run,
                &mut |line: &str| progress.line(line),
            )
            .map_err(|e| fail("vertical", "federated", e))?;
            for (model, proba, secs) in fits {
                out.push(row(model, "federated", &proba, secs)?);
            }
        }
        None => {
            let parts: Vec<Vec<usize>> = joined.parts.iter().map(|(_, c)| c.clone()).collect();
            for model in models {
                progress.line(&format!(
                    "training {} federated over {} parties in this process",
                    model.as_str(),
                    parts.len()
                ));
                let (proba, secs) = crate::vertical::fit_federated(
                    model,
                    full,
                    &parts,
                    label_part,
                    &split.train,
                    &split.test,
                    cfg.seed,
                    &cfg.gbdt,
                )
                .map_err(|e| fail(model.as_str(), "federated:in-process", e))?;
                out.push(row(model, "federated:in-process", &proba, secs)?);
            }
        }
    }
    Ok(out)
}

/// Renders the report as an aligned text table.
pub fn render_table(rows: &[AccuracyRow]) -> String {
    let setting_w = rows.iter().map(|r| r.setting.len()).max().unwrap_or(7).max(7);
    let mut out = format!(
        "{:<10} {:<setting_w$} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
        "model", "setting", "AUC", "KS", "logloss", "features", "train s"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:<setting_w$} {:>8.4} {:>8.4} {:>8.4} {:>8} {:>10.3}\n",
            r.model, r.setting, r.auc, r.ks, r.log_loss, r.n_features, r.train_seconds
        ));
    }
    for r in rows {
        if let Some(t) = &r.tree_ms {
            out.push_str(&format!(
                "{} {}: {} trees, per tree first {:.0} ms, 10th {:.0} ms, median {:.0} ms, last {:.0} ms; mean of the first ten {:.1} ms, of the last ten {:.1} ms\n",
                r.model, r.setting, t.trees, t.first, t.tenth, t.median, t.last, t.mean_first_10, t.mean_last_10
            ));
        }
    }
    out
}
