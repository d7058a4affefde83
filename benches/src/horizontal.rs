//! `fedcredit bench accuracy --mode horizontal`: several banks hold the same columns about
//! different enterprises. Each `--data` file is one bank's rows. Beside `centralized` (all banks'
//! training rows pooled) and `party:<file stem>` (one bank alone), the setting `federated` is a
//! real run: a coordinator and one participant process per file over loopback with mutual TLS,
//! training under secure aggregation, its model fetched from the coordinator and scored here.
//!
//! Without `--test`, each bank's file is split stratified (`stratified_split`, same seed and
//! fraction): the training rows of every setting are the same, because each participant holds
//! out exactly those rows as its validation split. With `--test FILE`, banks train on all their
//! rows and every setting is scored on that file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fedcredit_datasets::{Table, TableSpec, load_table, stratified_split};
use fedcredit_models::artifact::ModelArtifact;
use fedcredit_models::metrics::Metrics;
use fedcredit_models::{Dataset, Features};
use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};
use fedcredit_ops::{ControlClient, progress};
use ndarray::Array1;

use crate::accuracy::{AccuracyRow, ModelName, TreeTimes, observed_fit};
use crate::{BenchError, Observer};

/// What to run.
#[derive(Debug, Clone)]
pub struct HorizontalConfig {
    /// One file per bank.
    pub data: Vec<PathBuf>,
    /// Id column.
    pub id: String,
    /// Label column, in every file.
    pub label: String,
    /// A common test file; without it each file is split.
    pub test: Option<PathBuf>,
    /// Fraction of each bank's rows held out when there is no test file.
    pub test_fraction: f64,
    /// Seed of the splits and models.
    pub seed: u64,
    /// Models to train.
    pub models: Vec<ModelName>,
    /// The `fedcredit` binary (for the federation's processes).
    pub bin: PathBuf,
    /// Working directory of the federation (certificates, state, logs).
    pub dir: PathBuf,
    /// GBDT trees in every setting; `None` = the default (100).
    pub gbdt_trees: Option<usize>,
}

/// A bank's name from its file: the stem, with characters a certificate name cannot hold
/// replaced by `_`.
pub fn party_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' })
        .collect();
    name.truncate(64);
    if name.is_empty() || name.starts_with('.') {
        name.insert_str(0, "bank");
    }
    name
}

fn load(path: &Path, cfg: &HorizontalConfig) -> Result<Table, BenchError> {
    Ok(load_table(&TableSpec::new(path, &cfg.id).with_label(&cfg.label))?)
}

fn pooled(parts: &[Dataset]) -> Result<Dataset, BenchError> {
    let f: Vec<&Features> = parts.iter().map(|d| &d.features).collect();
    let y: Vec<f64> = parts.iter().flat_map(|d| d.label.iter().copied()).collect();
    let features = Features::vstack(&f)
        .map_err(|e| BenchError::Config(format!("the banks' columns differ: {e}")))?;
    Dataset::new(features, Array1::from(y)).map_err(|e| BenchError::Config(e.to_string()))
}

fn row(
    model: ModelName,
    setting: &str,
    proba: &[f64],
    test: &Dataset,
    n_train: usize,
    secs: f64,
) -> Result<AccuracyRow, BenchError> {
    let m = Metrics::compute(proba, &test.label.to_vec()).map_err(|source| BenchError::Model {
        model: model.as_str().into(),
        setting: setting.into(),
        source,
    })?;
    Ok(AccuracyRow::new(
        model,
        setting,
        &m,
        secs,
        (n_train, test.n_rows(), test.features.n_features()),
    ))
}

/// The `job.toml` of a federated run of `model`.
pub fn job_toml(
    model: ModelName,
    parties: &[String],
    cfg: &HorizontalConfig,
    validation_fraction: f64,
) -> String {
    let names: Vec<String> = parties.iter().map(|p| format!("\"{p}\"")).collect();
    let mut model_lines = format!("kind = \"{}\"\n", model.as_str());
    if model == ModelName::Gbdt {
        model_lines.push_str(&format!("seed = {}\n", cfg.seed));
        if let Some(n) = cfg.gbdt_trees {
            model_lines.push_str(&format!("n_trees = {n}\n"));
        }
    }
    format!(
        "name = \"bench {model} horizontal\"\nparties = [{parties}]\n[data]\nid = \"{id}\"\nlabel = \"{label}\"\n\
         validation_fraction = {validation_fraction}\nseed = {seed}\n[model]\n{model_lines}",
        model = model.as_str(),
        parties = names.join(", "),
        id = cfg.id,
        label = cfg.label,
        seed = cfg.seed,
    )
}

/// Runs the comparison; `say` gets one line per step and the progress of the local fits.
///
/// # Errors
/// [`BenchError`] naming the file, model or process that failed (process logs are under
/// `dir/logs`).
pub fn run(cfg: &HorizontalConfig, mut say: impl Observer) -> Result<Vec<AccuracyRow>, BenchError> {
    if cfg.data.len() < 2 {
        return Err(BenchError::Config(
            "horizontal mode needs at least two --data files (one per bank)".into(),
        ));
    }
    let names: Vec<String> = cfg.data.iter().map(|p| party_name(p)).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(BenchError::Config(format!(
                "two --data files are both named `{n}`; rename one"
            )));
        }
    }
    let mut trains = Vec::new();
    let mut tests = Vec::new();
    for path in &cfg.data {
        say.line(&format!("loading {}", path.display()));
        let t = load(path, cfg)?;
        if cfg.test.is_some() {
            trains.push(t.dataset()?);
        } else {
            let label = t.label.as_ref().map(|l| l.to_vec()).unwrap_or_default();
            let split = stratified_split(&t.ids, &label, cfg.test_fraction, cfg.seed)?;
            trains.push(t.select_rows(&split.train).dataset()?);
            tests.push(t.select_rows(&split.test).dataset()?);
        }
    }
    let test = match &cfg.test {
        Some(p) => load(p, cfg)?.dataset()?,
        None => pooled(&tests)?,
    };
    let validation_fraction = if cfg.test.is_some() { 0.0 } else { cfg.test_fraction };
    let central = pooled(&trains)?;
    say.line(&format!(
        "{} banks, {} training rows pooled, {} test rows",
        names.len(),
        central.n_rows(),
        test.n_rows()
    ));

    let mut rows = Vec::new();
    let gbdt_params = fedcredit_models::gbdt::GbdtParams {
        n_trees: cfg.gbdt_trees.unwrap_or(fedcredit_models::gbdt::GbdtParams::default().n_trees),
        ..Default::default()
    };
    for &model in &cfg.models {
        let settings: Vec<(String, &Dataset)> =
            std::iter::once(("centralized".to_string(), &central))
                .chain(names.iter().zip(&trains).map(|(n, t)| (format!("party:{n}"), t)))
                .collect();
        for (setting, train) in settings {
            say.line(&match setting.strip_prefix("party:") {
                None => format!("training {} centralized on the pooled rows", model.as_str()),
                Some(name) => format!("training {} on {name} alone", model.as_str()),
            });
            let (p, s) = observed_fit(
                &mut say,
                model,
                &setting,
                train,
                &test.features,
                cfg.seed,
                &gbdt_params,
            )
            .map_err(|source| BenchError::Model {
                model: model.as_str().into(),
                setting: setting.clone(),
                source,
            })?;
            rows.push(row(model, &setting, &p.to_vec(), &test, train.n_rows(), s)?);
        }
    }

    say.line(&format!(
        "starting a coordinator and {} participant processes (mutual TLS)",
        names.len()
    ));
    let setups: Vec<PartySetup> =
        names.iter().zip(&cfg.data).map(|(n, p)| PartySetup::new(n, p)).collect();
    let mut opts = LaunchOptions::new(&cfg.bin, &cfg.dir);
    opts.log = "info".into();
    let fed =
        LocalFederation::start(opts, &setups).map_err(|e| BenchError::Config(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Config(format!("async runtime: {e}")))?;
    let federated = runtime.block_on(async {
        let mut client = fedcredit_ops::bench::connect_retry(&fed).await?;
        let mut out = Vec::new();
        for &model in &cfg.models {
            let toml = job_toml(model, &names, cfg, validation_fraction);
            let start = Instant::now();
            let job = client.submit(&toml).await?;
            say.line(&format!("federated {}: job {}", model.as_str(), job.id));
            let end = follow_with(&mut client, &job.id, &mut say).await?;
            let secs = start.elapsed().as_secs_f64();
            if end.state != "succeeded" {
                return Err(fedcredit_ops::OpsError::Local(format!(
                    "federated {} job {} {}: {} (logs in {})",
                    model.as_str(),
                    end.id,
                    end.state,
                    end.error,
                    fed.dir().join("logs").display()
                )));
            }
            let m = client.model(&end.model_id).await?;
            let trees = tree_times(&client.rounds(&end.id).await?);
            out.push((model, m.artifact_json, secs, trees));
        }
        Ok(out)
    });
    let federated = federated.map_err(|e| BenchError::Config(e.to_string()))?;
    for (model, artifact_json, secs, trees) in federated {
        let err = |source| BenchError::Model {
            model: model.as_str().into(),
            setting: "federated".into(),
            source,
        };
        let art = ModelArtifact::from_json(&artifact_json).map_err(err)?;
        let p = art.predict_proba(&test.features).map_err(err)?;
        let mut r = row(model, "federated", &p.to_vec(), &test, central.n_rows(), secs)?;
        r.tree_ms = trees;
        rows.push(r);
    }
    rows.sort_by_key(|r| {
        (cfg.models.iter().position(|m| m.as_str() == r.model), order(&r.setting))
    });
    Ok(rows)
}

/// Per-tree wall times of a GBDT job from its step records (`what` = `tree i/n, …`); `None`
/// for other models.
fn tree_times(rounds: &[fedcredit_proto::pb::RoundInfo]) -> Option<TreeTimes> {
    let mut per_tree: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    for r in rounds {
        let tree = r.what.strip_prefix("tree ").and_then(|t| t.split('/').next());
        if let Some(i) = tree.and_then(|t| t.parse::<u64>().ok()) {
            *per_tree.entry(i).or_default() += (r.finished_ms - r.started_ms) as f64;
        }
    }
    let times: Vec<f64> = per_tree.into_values().collect();
    let (&first, &last) = (times.first()?, times.last()?);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let ten = times.len().min(10);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    Some(TreeTimes {
        first,
        tenth: times.get(9).copied().unwrap_or(last),
        last,
        median: sorted[sorted.len() / 2],
        mean_first_10: mean(&times[..ten]),
        mean_last_10: mean(&times[times.len() - ten..]),
        trees: times.len(),
    })
}

fn order(setting: &str) -> u8 {
    match setting {
        "federated" => 0,
        "centralized" => 1,
        _ => 2,
    }
}

/// Follows a job, passing one line per completed stage to `say`.
async fn follow_with(
    client: &mut ControlClient,
    id: &str,
    say: &mut impl Observer,
) -> Result<fedcredit_proto::pb::JobInfo, fedcredit_ops::OpsError> {
    let mut stream = client.watch(id).await?;
    // One line per federated evaluation, not one per round.
    let mut last_auc = None;
    while let Some(info) = stream.message().await? {
        let p: fedcredit_federation::horizontal::Progress =
            serde_json::from_str(&info.progress_json).unwrap_or_default();
        if p.valid_auc.is_some() && p.valid_auc != last_auc {
            say.line(&progress::describe(&info, &p));
            last_auc = p.valid_auc;
        }
        if progress::is_final(&info.state) {
            break;
        }
    }
    // The stream may end early (coordinator restart): then follow by polling.
    let end = client.job(id).await?;
    if progress::is_final(&end.state) { Ok(end) } else { progress::follow(client, id, false).await }
}
