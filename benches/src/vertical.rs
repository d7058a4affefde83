//! The `federated` setting of `fedcredit bench accuracy --mode vertical` for `logistic` and
//! `scorecard`: the vertical protocol's real roles and messages in one process
//! (`fedcredit_federation::vertical::woe::local` for the scorecard's federated WOE/IV, then
//! `fedcredit_federation::vertical::lr::sim` for the secret-shared regression with a dealer),
//! each party on its own columns of the joined training rows; the test rows are scored by
//! adding the parties' partial log-odds, as the scoring service does. The rows are those of
//! the centralized setting (the join stands in for PSI, which does not change them).

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

/// Party names of the federated run: the label holder is `bank`, the others `party1`, ….
fn names(n: usize, label_part: usize) -> Vec<PartyId> {
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
pub fn fit_federated(
    model: ModelName,
    data: &Dataset,
    parts: &[Vec<usize>],
    label_part: usize,
    train: &[usize],
    test: &[usize],
    seed: u64,
) -> Result<(Vec<f64>, f64), String> {
    let names = names(parts.len(), label_part);
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
