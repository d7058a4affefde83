//! The `federated` setting of `fedcredit bench accuracy --mode vertical` for `logistic`,
//! `scorecard` and `gbdt` (SecureBoost).
//!
//! [`fit_over_processes`] is the real run: each file's training rows (the rows of the
//! centralized setting's training split) go to a participant process of their own beside a
//! coordinator, over loopback with mutual TLS; each model is one vertical job (PSI alignment,
//! WOE/IV for the scorecard, the secret-shared regression with the coordinator as dealer); each
//! party's part is read from its state directory afterwards and the test rows are scored as
//! the scoring service does (adding the parties' partial log-odds; intersecting their leaf
//! sets for trees).
//!
//! [`fit_federated`] runs the same roles and messages in one process
//! (`fedcredit_federation::vertical::woe::local`, then `fedcredit_federation::vertical::lr::sim`;
//! `fedcredit_federation::vertical::secureboost::local` for trees),
//! for the library's tests, which have no `fedcredit` binary to start; its setting is
//! `federated:in-process`.

use std::collections::BTreeMap;
use std::time::Instant;

use fedcredit_federation::job::JobSpec;
use fedcredit_federation::vertical::lr::protocol::{LocalEncoding, LrParams, Roster};
use fedcredit_federation::vertical::lr::sim::{self, SimInput};
use fedcredit_federation::vertical::model::woe_binner;
use fedcredit_federation::vertical::woe::local::{self, LocalParty};
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::{Dataset, Features};
use rand::SeedableRng;

use crate::accuracy::ModelName;

/// Where the processes of a real federated run live.
#[derive(Debug, Clone)]
pub struct FederationRun {
    /// The `fedcredit` binary.
    pub bin: std::path::PathBuf,
    /// Working directory (training files, certificates, state, logs).
    pub dir: std::path::PathBuf,
}

/// One model of a real federated run: P(default) of the test rows and the job's wall seconds.
pub type FederatedFit = (ModelName, Vec<f64>, f64);

/// Trains `models` as vertical jobs over separate processes: `tables[k]`'s rows with ids in
/// `train_ids` go to party `names[k]` (the label in `tables[label_part]`); returns each
/// model's probabilities for `test_ids` (in that order), scored from the parts the parties
/// kept.
///
/// # Errors
/// A message naming the file, process or job that failed (process logs under `dir/logs`).
#[allow(clippy::too_many_arguments)]
pub fn fit_over_processes(
    models: &[ModelName],
    tables: &[fedcredit_datasets::Table],
    names: &[String],
    label_part: usize,
    (id, label): (&str, &str),
    gbdt: &fedcredit_models::gbdt::GbdtParams,
    train_ids: &[String],
    test_ids: &[String],
    run: &FederationRun,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<FederatedFit>, String> {
    use fedcredit_datasets::{TableSpec, load_table};
    use fedcredit_federation::vertical::model::{PartyModel, joint_log_odds};
    use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};

    let data_dir = run.dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let rows_of = |t: &fedcredit_datasets::Table, ids: &[String]| -> Result<Vec<usize>, String> {
        let at: std::collections::HashMap<&str, usize> =
            t.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        ids.iter()
            .map(|id| {
                at.get(id.as_str())
                    .copied()
                    .ok_or_else(|| format!("id {id} is not in {}", t.source.display()))
            })
            .collect()
    };
    // Each party's training file, and its test rows in the columns its daemon will load.
    let mut setups = Vec::new();
    let mut test_features = Vec::new();
    for (k, t) in tables.iter().enumerate() {
        let path = data_dir.join(format!("{}.csv", names[k]));
        let train = t.select_rows(&rows_of(t, train_ids)?);
        let label_col = (k == label_part).then_some(label);
        train.write_csv(&path, id, None, label_col).map_err(|e| e.to_string())?;
        let spec =
            TableSpec { label_column: label_col.map(str::to_string), ..TableSpec::new(&path, id) };
        let loaded = load_table(&spec).map_err(|e| e.to_string())?;
        let test = t.features.select_rows(&rows_of(t, test_ids)?);
        test_features.push(
            test.conform_to(&loaded.features.specs).map_err(|e| format!("{}: {e}", names[k]))?,
        );
        setups.push(PartySetup::new(names[k].clone(), path));
    }
    say(&format!("starting a coordinator and {} participant processes (mutual TLS)", names.len()));
    let mut opts = LaunchOptions::new(&run.bin, &run.dir);
    opts.log = "info".into();
    let fed = LocalFederation::start(opts, &setups).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    let mut client =
        runtime.block_on(fedcredit_ops::bench::connect_retry(&fed)).map_err(|e| e.to_string())?;
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let mut out = Vec::new();
    for &model in models {
        let toml = format!(
            "name = \"bench {m} vertical\"\nparties = [{p}]\nphase_timeout_secs = 1800\n\
             grace_secs = 60\n[data]\nid = \"{id}\"\nlabel = \"{label}\"\n\
             validation_fraction = 0.0\n[model]\nkind = \"{m}\"\n{extra}[vertical]\n\
             label_holder = \"{l}\"\n",
            m = model.as_str(),
            p = quoted.join(", "),
            l = names[label_part],
            extra = if model == ModelName::Gbdt { gbdt_toml(gbdt) } else { String::new() },
        );
        let started = Instant::now();
        let end = runtime.block_on(async {
            let job = client.submit(&toml).await?;
            say(&format!("federated {}: job {}", model.as_str(), job.id));
            fedcredit_ops::progress::follow(&mut client, &job.id, false).await
        });
        let end = end.map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        if end.state != "succeeded" {
            return Err(format!(
                "federated {} job {} {}: {} (logs in {})",
                model.as_str(),
                end.id,
                end.state,
                end.error,
                fed.dir().join("logs").display()
            ));
        }
        let mut parts = BTreeMap::new();
        let mut features = BTreeMap::new();
        for (k, n) in names.iter().enumerate() {
            let path = fed
                .dir()
                .join(format!("{n}-state"))
                .join("models")
                .join(format!("{}.json", end.id));
            let mut text = None;
            for _ in 0..200 {
                if let Ok(t) = std::fs::read_to_string(&path) {
                    text = Some(t);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let text = text.ok_or_else(|| format!("{n} kept no part at {}", path.display()))?;
            let part: PartyModel =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            parts.insert(PartyId(n.clone()), part);
            features.insert(PartyId(n.clone()), test_features[k].clone());
        }
        let z = joint_log_odds(&parts, &features)?;
        out.push((model, z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(), secs));
    }
    Ok(out)
}

/// The `[model]` keys of a `gbdt` job with parameters `p` (the centralized trainer's names).
pub fn gbdt_toml(p: &fedcredit_models::gbdt::GbdtParams) -> String {
    format!(
        "n_trees = {}\nlearning_rate = {}\nmax_depth = {}\nmax_bins = {}\nmin_child_weight = {}\n\
         min_data_in_leaf = {}\nlambda_l2 = {}\nmin_split_gain = {}\nrow_subsample = {}\n\
         col_subsample = {}\nseed = {}\n",
        p.n_trees,
        p.learning_rate,
        p.max_depth,
        p.max_bins,
        p.min_child_weight,
        p.min_data_in_leaf,
        p.lambda_l2,
        p.min_split_gain,
        p.row_subsample,
        p.col_subsample,
        p.seed
    )
}

/// Party names of the federated run: the label holder is `bank`, the others `party1`, ….
pub fn names(n: usize, label_part: usize) -> Vec<PartyId> {
    let mut k = 0;
    (0..n)
        .map(|i| {
            if i == label_part {
                PartyId("bank".into())
            } else {
                k += 1;
                PartyId(format!("party{k}"))
            }
        })
        .collect()
}

/// Trains `model` federated over the parties' columns `parts` of `data`'s rows `train` (the
/// label held by part `label_part`) and returns P(default) of rows `test` and the seconds the
/// training took.
///
/// # Errors
/// A message naming the stage that failed.
#[allow(clippy::too_many_arguments)]
pub fn fit_federated(
    model: ModelName,
    data: &Dataset,
    parts: &[Vec<usize>],
    label_part: usize,
    train: &[usize],
    test: &[usize],
    seed: u64,
    gbdt: &fedcredit_models::gbdt::GbdtParams,
) -> Result<(Vec<f64>, f64), String> {
    let names = names(parts.len(), label_part);
    if model == ModelName::Gbdt {
        let params = fedcredit_models::gbdt::GbdtParams { seed, ..gbdt.clone() };
        return fit_secureboost(data, parts, &names, label_part, train, test, &params);
    }
    let train_labels: Vec<f64> = train.iter().map(|&i| data.label[i]).collect();
    let cols = |k: usize, rows: &[usize]| -> Features {
        data.features.select_rows(rows).select_columns(&parts[k])
    };
    let started = Instant::now();
    let mut inputs: BTreeMap<PartyId, SimInput> = names
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let input = SimInput {
                features: cols(k, train),
                labels: (k == label_part).then(|| train_labels.clone()),
                valid: None,
                valid_labels: None,
                encoding: None,
                initial: None,
            };
            (p.clone(), input)
        })
        .collect();
    if model == ModelName::Scorecard {
        // The federated WOE/IV stage over the training rows, with the scorecard's binning.
        let quoted: Vec<String> = names.iter().map(|p| format!("\"{}\"", p.0)).collect();
        let spec = JobSpec::from_toml(&format!(
            "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"woe\"\n\
             [vertical]\nlabel_holder = \"bank\"\n",
            quoted.join(", ")
        ))
        .map_err(|e| e.to_string())?;
        let alignment = Alignment {
            rows: (0..train.len() as u32).collect(),
            keys: (0..train.len()).map(|t| (t as u128).to_le_bytes()).collect(),
        };
        let parties = names
            .iter()
            .map(|p| LocalParty {
                name: p.clone(),
                table: PartyTable {
                    ids: (0..train.len()).map(|t| format!("r{t}")).collect(),
                    features: inputs[p].features.clone(),
                    label: inputs[p].labels.clone(),
                },
                alignment: alignment.clone(),
            })
            .collect();
        let run = local::run(&JobId("bench-accuracy-woe".into()), &spec, parties, seed)
            .map_err(|e| format!("federated WOE/IV: {e}"))?;
        for (p, woe) in &run.kept {
            let input = inputs.get_mut(p).ok_or("a party the run did not have")?;
            let binner = woe_binner(woe, &input.features).map_err(|e| format!("{p}: {e}"))?;
            input.encoding = Some(LocalEncoding::Woe { binner, clip: LrParams::default().clip });
        }
    }
    let roster = Roster::new(
        names[label_part].clone(),
        names.iter().filter(|p| **p != names[label_part]).cloned().collect(),
    )
    .map_err(|e| e.to_string())?;
    let mut rng = fedcredit_federation::protocol::CsRng::seed_from_u64(seed);
    let out = sim::run(
        &JobId("bench-accuracy-lr".into()),
        &roster,
        &LrParams::default(),
        &inputs,
        &mut rng,
        false,
    )
    .map_err(|e| format!("vertical LR: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let test_cols: BTreeMap<PartyId, Features> =
        names.iter().enumerate().map(|(k, p)| (p.clone(), cols(k, test))).collect();
    let z = sim::joint_scores(&out.parts, &test_cols).map_err(|e| e.to_string())?;
    Ok((z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(), seconds))
}

/// [`fit_federated`] for `gbdt`: the secureboost stage in one process with parameters
/// `params`, every training row used for training.
pub fn fit_secureboost(
    data: &Dataset,
    parts: &[Vec<usize>],
    names: &[PartyId],
    label_part: usize,
    train: &[usize],
    test: &[usize],
    params: &fedcredit_models::gbdt::GbdtParams,
) -> Result<(Vec<f64>, f64), String> {
    let seed = params.seed;
    use fedcredit_federation::vertical::secureboost::local;
    let quoted: Vec<String> = names.iter().map(|p| format!("\"{}\"", p.0)).collect();
    let spec = JobSpec::from_toml(&format!(
        "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\nvalidation_fraction = 0.0\n\
         [model]\nkind = \"gbdt\"\n{}[vertical]\nlabel_holder = \"{}\"\n",
        quoted.join(", "),
        gbdt_toml(params),
        names[label_part].0
    ))
    .map_err(|e| e.to_string())?;
    let alignment = Alignment {
        rows: (0..train.len() as u32).collect(),
        keys: (0..train.len()).map(|t| (t as u128).to_le_bytes()).collect(),
    };
    let started = Instant::now();
    let parties = names
        .iter()
        .enumerate()
        .map(|(k, p)| LocalParty {
            name: p.clone(),
            table: PartyTable {
                ids: (0..train.len()).map(|t| format!("r{t}")).collect(),
                features: data.features.select_rows(train).select_columns(&parts[k]),
                label: (k == label_part).then(|| train.iter().map(|&i| data.label[i]).collect()),
            },
            alignment: alignment.clone(),
        })
        .collect();
    let run = local::run(&spec, parties, BTreeMap::new(), seed, false)
        .map_err(|e| format!("secureboost: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let features = names
        .iter()
        .enumerate()
        .map(|(k, p)| (p.clone(), data.features.select_rows(test).select_columns(&parts[k])))
        .collect();
    let z = local::joint_scores(&run.parts, &features)?;
    Ok((z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(), seconds))
}
