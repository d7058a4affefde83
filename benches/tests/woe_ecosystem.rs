//! Federated WOE/IV on the synthetic ecosystem's three parties (bank = label holder, tax
//! bureau, platform; the project's generator): every party's IV table and kept WOE equal the
//! centralized binner's on the joined table, bit for bit, for equal-frequency and monotone
//! bins. The stage runs in one process (`woe::local`); the real runtime with sealed relays is
//! covered by `federation/tests/woe.rs`.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_datasets::synthetic::{EcosystemConfig, generate};
use fedcredit_datasets::table::Table;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::vertical::woe::local::{self, LocalParty};
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::binning::{Binner, BinningMethod, BinningParams};
use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2};

fn spec(model: &str) -> JobSpec {
    JobSpec::from_toml(&format!(
        "parties = [\"bank\", \"tax\", \"platform\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n\
         [model]\n{model}\n[vertical]\nlabel_holder = \"bank\"\n"
    ))
    .unwrap()
}

#[test]
fn ecosystem_three_parties_equal_centralized() {
    let eco = generate(&EcosystemConfig { n_enterprises: 4000, ..Default::default() }).unwrap();
    let month = 6;
    let tables = eco.snapshot(month).unwrap();
    let named: Vec<(&str, &Table)> =
        vec![("bank", &tables.bank), ("tax", &tables.tax), ("platform", &tables.platform)];
    // The common ids, in an order no party's table dictates (sorted).
    let mut common: BTreeSet<&String> = tables.bank.ids.iter().collect();
    for (_, t) in &named[1..] {
        let ids: BTreeSet<&String> = t.ids.iter().collect();
        common.retain(|id| ids.contains(id));
    }
    assert!(common.len() > 1000, "{} common ids", common.len());
    let parties: Vec<LocalParty> = named
        .iter()
        .map(|(name, t)| {
            let pos: BTreeMap<&String, u32> =
                t.ids.iter().enumerate().map(|(i, id)| (id, i as u32)).collect();
            LocalParty {
                name: PartyId((*name).into()),
                table: PartyTable {
                    ids: t.ids.clone(),
                    features: t.features.clone(),
                    label: t.label.as_ref().map(|l| l.to_vec()),
                },
                alignment: Alignment {
                    rows: common.iter().map(|id| pos[id]).collect(),
                    keys: (0..common.len()).map(|k| (k as u128).to_le_bytes()).collect(),
                },
            }
        })
        .collect();
    // The joined table in the agreed order.
    let n = common.len();
    let mut specs = Vec::new();
    let mut cols: Vec<Vec<f64>> = Vec::new();
    let mut owner = Vec::new();
    for p in &parties {
        for (j, s) in p.table.features.specs.iter().enumerate() {
            specs.push(FeatureSpec {
                name: format!("{}.{}", p.name.0, s.name),
                kind: s.kind.clone(),
            });
            let col = p.table.features.values.column(j);
            cols.push(p.alignment.rows.iter().map(|&r| col[r as usize]).collect());
            owner.push((p.name.0.clone(), j));
        }
    }
    let mut values = Array2::<f64>::zeros((n, cols.len()));
    for (j, c) in cols.iter().enumerate() {
        for t in 0..n {
            values[[t, j]] = c[t];
        }
    }
    let bank_label = parties[0].table.label.as_ref().unwrap();
    let label: Vec<f64> =
        parties[0].alignment.rows.iter().map(|&r| bank_label[r as usize]).collect();
    let data = Dataset::new(Features::new(specs, values).unwrap(), Array1::from(label)).unwrap();
    for (model, params) in [
        (
            "kind = \"woe\"\nmin_iv = 0.02",
            BinningParams {
                method: BinningMethod::EqualFrequency,
                max_bins: 10,
                min_bin_fraction: 0.05,
            },
        ),
        (
            "kind = \"woe\"\nmethod = \"monotone\"\nbins = 6",
            BinningParams { method: BinningMethod::Monotone, max_bins: 6, min_bin_fraction: 0.05 },
        ),
    ] {
        let run = local::run(&JobId("eco".into()), &spec(model), parties.clone(), 5).unwrap();
        let central = Binner::fit(&data, &params).unwrap();
        assert_eq!(run.report.n_features(), central.features.len());
        for (fb, (party, j)) in central.features.iter().zip(&owner) {
            let table = run.report.parties.iter().find(|t| t.party == *party).unwrap();
            let iv = &table.features[*j];
            assert_eq!(format!("{party}.{}", iv.feature), fb.feature);
            assert_eq!(
                iv.iv.to_bits(),
                fb.iv.to_bits(),
                "{}: IV {} vs {}",
                fb.feature,
                iv.iv,
                fb.iv
            );
            assert_eq!(iv.bins, fb.bins.len(), "{}", fb.feature);
            let k = &run.kept[&PartyId(party.clone())].features[*j];
            assert_eq!(k.rule, fb.rule, "{}: bins", fb.feature);
            assert_eq!(k.woe, fb.woe(), "{}: WOE", fb.feature);
        }
        eprint!("{}", run.report.render());
    }
}
