//! Horizontal GBDT in memory: the federated model equals the centralized model trained on the
//! pooled rows with the same bin edges; secure sums give the same model as plaintext sums;
//! checkpoint/restore and a dropped party do not change the model.

use fedcredit_federation::PartyId;
use fedcredit_federation::horizontal::in_memory::{self, Federation};
use fedcredit_federation::horizontal::prep::grid_round;
use fedcredit_federation::horizontal::{Outcome, Trainer};
use fedcredit_federation::job::JobSpec;
use fedcredit_models::artifact::{Model, ModelArtifact};
use fedcredit_models::gbdt::{self, BinMapper, GbdtModel, Node, SplitRule};
use fedcredit_models::{Dataset, Features};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;
use common::*;

/// Runs a job to the end, returning the outcome and the trainer's edges.
fn run(
    spec: &JobSpec,
    p: Vec<(PartyId, Dataset, Option<Dataset>)>,
    secure: bool,
) -> (Outcome, Vec<Vec<f64>>) {
    let mut trainer = Trainer::new(spec, specs()).unwrap();
    let mut fed = Federation::new(spec, p, secure).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    loop {
        if let Some(out) = fed.step(&mut trainer, &mut rng).unwrap() {
            let edges = trainer.gbdt_edges().unwrap().to_vec();
            return (out, edges);
        }
    }
}

fn gbdt_of(out: &Outcome) -> GbdtModel {
    let a = ModelArtifact::from_json(out.artifact_json.as_ref().unwrap()).unwrap();
    match a.model {
        Model::Gbdt(m) => m,
        other => panic!("not a gbdt: {}", other.kind()),
    }
}

fn assert_same_model(fed: &GbdtModel, cen: &GbdtModel, tol: f64, data: &Features) {
    assert!((fed.base_score - cen.base_score).abs() < 1e-12);
    assert_eq!(fed.trees.len(), cen.trees.len());
    for (t, (a, b)) in fed.trees.iter().zip(&cen.trees).enumerate() {
        assert_eq!(a.nodes.len(), b.nodes.len(), "tree {t}");
        for (i, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
            match (na, nb) {
                (Node::Leaf { value: va, count: ca }, Node::Leaf { value: vb, count: cb }) => {
                    assert!((va - vb).abs() <= tol, "tree {t} node {i}: {va} vs {vb}");
                    assert_eq!(ca, cb);
                }
                (
                    Node::Split {
                        feature: fa,
                        rule: ra,
                        default_left: da,
                        left: la,
                        right: xa,
                        count: ca,
                        ..
                    },
                    Node::Split {
                        feature: fb,
                        rule: rb,
                        default_left: db,
                        left: lb,
                        right: xb,
                        count: cb,
                        ..
                    },
                ) => {
                    assert_eq!((fa, da, la, xa, ca), (fb, db, lb, xb, cb), "tree {t} node {i}");
                    match (ra, rb) {
                        (
                            SplitRule::Numeric { threshold: a },
                            SplitRule::Numeric { threshold: b },
                        ) => {
                            assert_eq!(a, b, "tree {t} node {i}")
                        }
                        (a, b) => assert_eq!(a, b),
                    }
                }
                (a, b) => panic!("tree {t} node {i}: {a:?} vs {b:?}"),
            }
        }
    }
    let pa = fed.predict_raw(data).unwrap();
    let pb = cen.predict_raw(data).unwrap();
    for (a, b) in pa.iter().zip(&pb) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }
}

#[test]
fn federated_gbdt_equals_centralized_on_pooled_rows() {
    let spec = job("kind = \"gbdt\"\nn_trees = 12\nmax_depth = 4\nmax_bins = 32\neval_every = 5");
    let p = parties(&[700, 500, 300], true);
    let all = pooled(&p);
    let (out, edges) = run(&spec, p, false);
    let fed = gbdt_of(&out);
    // The sketch's edges are the centralized edges of the grid-rounded pooled values.
    let mut rounded = all.features.clone();
    rounded.values.mapv_inplace(|v| if v.is_nan() { v } else { grid_round(v) });
    let ModelSpecGbdt(params) = params_of(&spec);
    assert_eq!(BinMapper::fit(&rounded, params.max_bins).unwrap().to_edges(), edges);
    let mapper = BinMapper::from_edges(specs(), edges).unwrap();
    let cen = gbdt::fit_with_mapper(&all, None, &params, &mapper).unwrap();
    assert_same_model(&fed, &cen, 1e-6, &all.features);
    assert_eq!(out.metrics["n_train"], 1500.0);
    assert_eq!(out.metrics["n_valid"], 375.0);
    assert!(out.metrics["auc"] > 0.7, "{:?}", out.metrics);
    assert!(out.metrics["ks"] > 0.3 && out.metrics["log_loss"] < 0.69);
}

struct ModelSpecGbdt(gbdt::GbdtParams);

fn params_of(spec: &JobSpec) -> ModelSpecGbdt {
    match &spec.model {
        fedcredit_federation::horizontal::ModelSpec::Gbdt(g) => ModelSpecGbdt(g.params()),
        _ => panic!("not gbdt"),
    }
}

#[test]
fn column_subsampling_matches_the_centralized_stream() {
    let spec = job("kind = \"gbdt\"\nn_trees = 6\nmax_depth = 3\ncol_subsample = 0.6\nseed = 3");
    let p = parties(&[400, 400, 400], false);
    let all = pooled(&p);
    let (out, edges) = run(&spec, p, false);
    let ModelSpecGbdt(params) = params_of(&spec);
    let mapper = BinMapper::from_edges(specs(), edges).unwrap();
    let cen = gbdt::fit_with_mapper(&all, None, &params, &mapper).unwrap();
    assert_same_model(&gbdt_of(&out), &cen, 1e-6, &all.features);
}

#[test]
fn secure_sums_give_the_plaintext_model() {
    let spec = job("kind = \"gbdt\"\nn_trees = 3\nmax_depth = 3\nmax_bins = 16\neval_every = 0");
    let plain = run(&spec, parties(&[150, 120, 100], true), false).0;
    let secure = run(&spec, parties(&[150, 120, 100], true), true).0;
    let (a, b) = (gbdt_of(&plain), gbdt_of(&secure));
    let data = pooled(&parties(&[150, 120, 100], false)).features;
    // Fixed point with 24 fractional bits: sums within 3 · 2^-25 per element.
    assert_same_model(&a, &b, 1e-5, &data);
    assert!((plain.metrics["auc"] - secure.metrics["auc"]).abs() < 1e-9);
}

#[test]
fn checkpoint_restore_and_fresh_parties_continue_to_the_same_model() {
    let spec = job("kind = \"gbdt\"\nn_trees = 5\nmax_depth = 3\nmax_bins = 32\neval_every = 2");
    let reference = run(&spec, parties(&[300, 200, 250], true), false).0;
    let mut trainer = Trainer::new(&spec, specs()).unwrap();
    let mut fed = Federation::new(&spec, parties(&[300, 200, 250], true), false).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for _ in 0..9 {
        assert!(fed.step(&mut trainer, &mut rng).unwrap().is_none());
    }
    let cp = trainer.checkpoint(0);
    // Finished trees go to the log, not the state; a checkpoint carries only the new entries.
    assert!(cp.log.len() >= 2, "{} trees logged", cp.log.len());
    assert_eq!(trainer.checkpoint(1).log, cp.log[1..]);
    assert!(Trainer::restore(&cp.state, &cp.log[1..]).unwrap() != trainer);
    let mut restored = Trainer::restore(&cp.state, &cp.log).unwrap();
    assert_eq!(restored, trainer);
    // Parties restart too: they keep no state between rounds.
    let mut fed = Federation::new(&spec, parties(&[300, 200, 250], true), false).unwrap();
    let out = loop {
        if let Some(out) = fed.step(&mut restored, &mut rng).unwrap() {
            break out;
        }
    };
    assert_eq!(gbdt_of(&out), gbdt_of(&reference));
    assert_eq!(out.metrics, reference.metrics);
}

/// A bank missing a level ends that tree where it stands (its open nodes become leaves): the
/// remaining banks are never asked for the same tree's sums again, whose difference with the
/// first answer would reveal the missing bank's histograms.
#[test]
fn a_party_missing_a_level_ends_the_tree() {
    let spec = job("kind = \"gbdt\"\nn_trees = 3\nmax_depth = 3\nmax_bins = 32\neval_every = 0");
    let reference = run(&spec, parties(&[300, 200, 250], false), false).0;
    let mut trainer = Trainer::new(&spec, specs()).unwrap();
    let mut fed = Federation::new(&spec, parties(&[300, 200, 250], false), false).unwrap();
    // Rounds 0-1 are the sketch, 2 the first root, 3 its first level.
    fed.absent.insert(3, vec![party(1)]);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let out = loop {
        if let Some(out) = fed.step(&mut trainer, &mut rng).unwrap() {
            break out;
        }
    };
    assert_eq!(out.metrics["trees_cut_short"], 1.0);
    let (got, want) = (gbdt_of(&out), gbdt_of(&reference));
    assert_eq!(got.trees.len(), 3);
    assert!(
        got.trees[0].n_leaves() == 2 && want.trees[0].n_leaves() > 2,
        "the first tree stops after its root split: {} vs {} leaves",
        got.trees[0].n_leaves(),
        want.trees[0].n_leaves()
    );
}

/// A bank that leaves for good: the model reports the rows it was last fitted on, not the
/// census taken before the bank left.
#[test]
fn n_train_counts_the_rows_of_the_last_tree() {
    let spec = job("kind = \"gbdt\"\nn_trees = 3\nmax_depth = 2\nmax_bins = 32\neval_every = 0");
    let mut trainer = Trainer::new(&spec, specs()).unwrap();
    let mut fed = Federation::new(&spec, parties(&[300, 200, 250], false), false).unwrap();
    for round in 3..1000 {
        fed.absent.insert(round, vec![party(1)]);
    }
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let out = loop {
        if let Some(out) = fed.step(&mut trainer, &mut rng).unwrap() {
            break out;
        }
    };
    assert_eq!(out.metrics["n_train_start"], 750.0);
    assert_eq!(out.metrics["n_train"], 550.0);
}

#[test]
fn row_subsampling_is_refused_and_unknown_keys_are_named() {
    let text = |model: &str| {
        format!("parties = [\"a\", \"b\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n")
    };
    let err = JobSpec::from_toml(&text("kind = \"gbdt\"\nrow_subsample = 0.8")).unwrap_err();
    assert!(err.to_string().contains("model.row_subsample"), "{err}");
    let err = JobSpec::from_toml(&text("kind = \"gbdt\"\nn_tree = 8")).unwrap_err();
    assert!(err.to_string().contains("n_tree"), "{err}");
    let ok = JobSpec::from_toml(&text("kind = \"gbdt\"")).unwrap();
    let ModelSpecGbdt(p) = params_of(&ok);
    assert_eq!(p, gbdt::GbdtParams::default());
    // Smoke: the in-memory driver runs a tiny job end to end.
    let spec = job("kind = \"gbdt\"\nn_trees = 2\nmax_depth = 2");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (out, progress) =
        in_memory::train(&spec, specs(), parties(&[200, 200, 200], true), false, &mut rng).unwrap();
    assert!(out.artifact_json.is_some());
    assert_eq!(progress.last().unwrap().done, 2);
}
