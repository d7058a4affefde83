//! Vertical gradient-boosted trees (SecureBoost) through the real runtime in memory: party
//! sessions with real certificates and sealed party-to-party payloads, the vertical conductor
//! and roles, started after an alignment built here. Checks that the trees are the centralized
//! trees on the joined table (missing values and text columns held by feature holders), what
//! the coordinator sees, and that a feature holder killed mid-training resumes from its last
//! tree and ends with the model of an uninterrupted run.

mod vertical_common;

use std::collections::BTreeMap;

use fedcredit_federation::PartyId;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, honest};
use fedcredit_federation::vertical::model::{GbdtPart, PartyModel, VerticalModelRef};
use fedcredit_federation::vertical::secureboost::local::joint_scores;
use fedcredit_models::gbdt::{self, GbdtParams};
use fedcredit_models::metrics::auc;
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_models::{Dataset, FeatureKind};
use fedcredit_proto::pb;
use vertical_common::*;

fn gbdt_spec(model: &str) -> JobSpec {
    JobSpec::from_toml(&format!(
        "parties = [\"bank\", \"tax\", \"platform\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n\
         [model]\nkind = \"gbdt\"\n{model}\n[vertical]\nlabel_holder = \"bank\"\n"
    ))
    .unwrap()
}

/// 12 columns over 3 parties: the two text columns (10, 11) at the tax bureau and the platform.
fn eco(rows: usize, seed: u64, fraction: f64) -> Ecosystem {
    let t = applications(&ApplicationsConfig { rows, numeric: 10, text: 2, seed }).unwrap();
    ecosystem_of(t.data, 3, seed, fraction)
}

fn gbdt_parts(parts: &BTreeMap<PartyId, PartyModel>) -> BTreeMap<PartyId, GbdtPart> {
    parts
        .iter()
        .map(|(p, m)| match m {
            PartyModel::Gbdt { part } => (p.clone(), (**part).clone()),
            other => panic!("{p} kept {other:?}"),
        })
        .collect()
}

fn federated_raw(eco: &Ecosystem, parts: &BTreeMap<PartyId, PartyModel>) -> Vec<f64> {
    let features = (0..3).map(|k| (eco.parties[k].0.clone(), eco.party_features(k, &eco.valid)));
    joint_scores(&gbdt_parts(parts), &features.collect()).unwrap()
}

fn centralized_raw(eco: &Ecosystem, params: &GbdtParams) -> Vec<f64> {
    let order: Vec<usize> = eco.columns.iter().flatten().copied().collect();
    let joined = |rows: &[usize]| {
        let d = eco.all.select_rows(rows);
        Dataset { features: d.features.select_columns(&order), label: d.label }
    };
    let model = gbdt::fit(&joined(&eco.train), None, params).unwrap();
    model.predict_raw(&joined(&eco.valid).features).unwrap().to_vec()
}

#[test]
fn three_parties_over_the_runtime_grow_the_centralized_trees() {
    let spec = gbdt_spec("n_trees = 10\nmax_depth = 4\nmax_bins = 64");
    let eco = eco(4000, 21, spec.data.validation_fraction);
    // Text columns and missing values at the feature holders.
    for k in 1..3 {
        let f = &eco.parties[k].1.features;
        assert!(f.specs.iter().any(|s| matches!(s.kind, FeatureKind::Categorical { .. })));
        assert!(f.values.iter().any(|v| v.is_nan()), "no missing value at party {k}");
    }
    let run = federated(&spec, &eco, &mut honest).unwrap();
    let reference =
        VerticalModelRef::from_json(run.outcome.artifact_json.as_deref().unwrap()).unwrap();
    assert_eq!(reference.kind, "gbdt");
    let fed = federated_raw(&eco, &run.parts);
    let central = centralized_raw(
        &eco,
        &match &spec.model {
            fedcredit_federation::horizontal::ModelSpec::Gbdt(g) => g.params(),
            _ => unreachable!(),
        },
    );
    let worst = fed.iter().zip(&central).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let y = eco.valid_labels();
    let (fa, ca) = (auc(&fed, &y).unwrap(), auc(&central, &y).unwrap());
    eprintln!("runtime: federated AUC {fa:.5}, centralized {ca:.5}, raw-score gap {worst:.1e}");
    assert!(worst < 1e-6, "the federated trees differ from the centralized ones: {worst}");
    assert!((run.outcome.metrics["valid_auc"] - fa).abs() < 1e-9);
    // The coordinator relays sealed bytes and sees only the stage's reports: per-tree figures
    // from the label holder and each party's done.
    let mut trees = 0;
    for e in &run.transcript {
        match e {
            Entry::FromParty { from, msg, .. } => {
                let Some(pb::from_party::Body::Protocol(m)) = &msg.body else { continue };
                let Some(pb::role_message::Body::Vertical(v)) = &m.body else { continue };
                match &v.body {
                    Some(pb::vertical_report::Body::Secureboost(r)) => match &r.body {
                        Some(pb::sb_report::Body::Tree(_)) => {
                            assert_eq!(from, &pid("bank"));
                            trees += 1;
                        }
                        Some(pb::sb_report::Body::Done(_)) => {}
                        None => panic!("empty report"),
                    },
                    other => panic!("unexpected report {other:?}"),
                }
            }
            Entry::Refused { party, reason } => panic!("{party:?} refused: {reason}"),
            Entry::ToParty { .. } => {}
        }
    }
    assert_eq!(trees, 10);
    // No part names a threshold of another party: the label holder's references name the
    // column only; the holders' parts hold their own rules.
    let GbdtPart::Label(l) = &gbdt_parts(&run.parts)[&pid("bank")] else { panic!() };
    let remote = l.trees.iter().flat_map(|t| t.splits.iter().flatten()).filter(|s| {
        matches!(s, fedcredit_federation::vertical::secureboost::part::LabelSplit::Remote { .. })
    });
    assert!(remote.count() > 0, "no split at a feature holder");
}

#[test]
fn a_feature_holder_killed_mid_training_resumes_from_its_last_tree() {
    let spec = gbdt_spec("n_trees = 6\nmax_depth = 3\nmax_bins = 32\nrow_subsample = 0.9");
    let eco = eco(2000, 8, spec.data.validation_fraction);
    let want = federated(&spec, &eco, &mut honest).unwrap();

    let fixture = Fixture::new(&eco);
    let mut fed = fixture.federation(&spec, &eco);
    fed.max_deliveries = 5;
    fed.start(&mut honest).unwrap();
    // Deliver a few messages at a time until two trees are kept, then a few more (the third
    // tree is under way).
    let mut extra = 0;
    while extra < 4 {
        let early = fed.run(&mut honest);
        assert!(early.as_ref().is_err_and(|e| e.contains("deliveries")), "{:?}", early.err());
        if fed.conductor().progress().done >= 2 {
            extra += 1;
        }
    }
    let done_before = fed.conductor().progress().done;
    assert!((2..6).contains(&done_before), "killed after {done_before} trees");
    let victim = 1;
    fed.crash(&eco.parties[victim].0);
    let ckpt = fed.checkpoints.get(&eco.parties[victim].0).cloned().expect("a checkpoint");
    let restarted = fixture.session(&spec, &eco, victim, Some(&ckpt), 77);
    fed.rejoin(eco.parties[victim].0.clone(), restarted, &mut honest);
    fed.max_deliveries = 1_000_000;
    let got = fed.run(&mut honest).unwrap();
    let parts = fixture.kept_parts(&spec, &eco, &fed);
    eprintln!("killed after {done_before} trees; resumed to the end");
    assert_eq!(gbdt_parts(&parts), gbdt_parts(&want.parts), "the model differs");
    assert_eq!(got.metrics["valid_auc"], want.outcome.metrics["valid_auc"]);
}
