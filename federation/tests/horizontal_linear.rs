//! Horizontal logistic regression and scorecard in memory against the centralized models on
//! the pooled rows; secure sums against plaintext sums; job specs of every kind.

use fedcredit_federation::PartyId;
use fedcredit_federation::horizontal::in_memory;
use fedcredit_federation::horizontal::{ModelSpec, Outcome};
use fedcredit_federation::job::JobSpec;
use fedcredit_models::Dataset;
use fedcredit_models::artifact::{Model, ModelArtifact};
use fedcredit_models::logistic::LogisticPipeline;
use fedcredit_models::metrics::auc;
use fedcredit_models::preprocess::EncoderParams;
use fedcredit_models::scorecard::{Scorecard, ScorecardParams};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

mod common;
use common::*;

fn train(spec: &JobSpec, p: Vec<(PartyId, Dataset, Option<Dataset>)>, secure: bool) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    in_memory::train(spec, specs(), p, secure, &mut rng).unwrap().0
}

fn model_of(out: &Outcome) -> Model {
    ModelArtifact::from_json(out.artifact_json.as_ref().unwrap()).unwrap().model
}

fn test_auc(m: &Model, test: &Dataset) -> f64 {
    let p = m.predict_proba(&test.features).unwrap();
    auc(p.as_slice().unwrap(), test.label.as_slice().unwrap()).unwrap()
}

#[test]
fn newton_logistic_equals_centralized() {
    let spec = job("kind = \"logistic\"\neval_every = 2");
    let p = parties(&[900, 600, 500], true);
    let all = pooled(&p);
    let out = train(&spec, p, false);
    let Model::Logistic(fed) = model_of(&out) else { panic!("not logistic") };
    let cen = LogisticPipeline::fit(&all, &EncoderParams::default(), &Default::default()).unwrap();
    assert_eq!(fed.encoder.output_names(), cen.encoder.output_names());
    for (a, b) in fed.model.coefficients.iter().zip(&cen.model.coefficients) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    assert!((fed.model.intercept - cen.model.intercept).abs() < 1e-6);
    let test = table(3000, 99);
    let (a, b) = (test_auc(&Model::Logistic(fed), &test), test_auc(&Model::Logistic(cen), &test));
    assert!((a - b).abs() < 1e-6, "federated {a} centralized {b}");
    assert!(out.metrics["auc"] > 0.7 && out.metrics["n_train"] == 2000.0, "{:?}", out.metrics);
}

#[test]
fn fedavg_and_fedprox_come_close_to_centralized() {
    let p = parties(&[900, 600, 500], false);
    let all = pooled(&p);
    let test = table(3000, 98);
    let cen = LogisticPipeline::fit(&all, &EncoderParams::default(), &Default::default()).unwrap();
    let c = test_auc(&Model::Logistic(cen), &test);
    for opt in ["fedavg", "fedprox"] {
        let spec = job(&format!(
            "kind = \"logistic\"\noptimizer = \"{opt}\"\nrounds = 20\nlocal_epochs = 2\nlearning_rate = 0.05"
        ));
        let out = train(&spec, parties(&[900, 600, 500], false), false);
        let a = test_auc(&model_of(&out), &test);
        assert!((a - c).abs() < 0.005, "{opt}: federated {a} centralized {c}");
    }
}

#[test]
fn scorecard_comes_within_half_a_point_of_auc() {
    for method in ["equal_frequency", "monotone"] {
        let spec = job(&format!("kind = \"scorecard\"\nbinning_method = \"{method}\""));
        let p = parties(&[900, 600, 500], true);
        let all = pooled(&p);
        let out = train(&spec, p, false);
        let Model::Scorecard(fed) = model_of(&out) else { panic!("not a scorecard") };
        let mut params = ScorecardParams::default();
        params.binning.method = match method {
            "monotone" => fedcredit_models::binning::BinningMethod::Monotone,
            _ => fedcredit_models::binning::BinningMethod::EqualFrequency,
        };
        let cen = Scorecard::fit(&all, &params).unwrap();
        let test = table(3000, 97);
        let (a, b) = (
            test_auc(&Model::Scorecard(fed.clone()), &test),
            test_auc(&Model::Scorecard(cen), &test),
        );
        assert!((a - b).abs() < 0.005, "{method}: federated {a} centralized {b}");
        assert_eq!(fed.binner.features.len(), 5);
        assert!(out.metrics.contains_key("auc"));
    }
}

#[test]
fn secure_newton_matches_plaintext() {
    let spec = job("kind = \"logistic\"\neval_every = 0");
    let a = train(&spec, parties(&[200, 150, 120], true), false);
    let b = train(&spec, parties(&[200, 150, 120], true), true);
    let (Model::Logistic(a), Model::Logistic(b)) = (model_of(&a), model_of(&b)) else {
        panic!("not logistic")
    };
    for (x, y) in a.model.coefficients.iter().zip(&b.model.coefficients) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    let spec = job("kind = \"scorecard\"\neval_every = 0");
    let a = train(&spec, parties(&[200, 150, 120], false), false);
    let b = train(&spec, parties(&[200, 150, 120], false), true);
    let (Model::Scorecard(a), Model::Scorecard(b)) = (model_of(&a), model_of(&b)) else {
        panic!("not a scorecard")
    };
    assert_eq!(a.binner, b.binner);
    for (x, y) in a.model.coefficients.iter().zip(&b.model.coefficients) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn job_toml_of_every_kind_parses_and_unknown_keys_are_named() {
    let text = |model: &str| {
        format!(
            "name = \"t\"\nparties = [\"a\", \"b\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n"
        )
    };
    let full = [
        "kind = \"logistic\"\nstandardize = true\npenalty = \"l2\"\nc = 0.5\noptimizer = \"fedprox\"\nmax_iter = 50\ntol = 1e-7\nrounds = 30\nlocal_epochs = 2\nbatch_size = 32\nlearning_rate = 0.05\nmu = 0.1\nseed = 1\neval_every = 5",
        "kind = \"scorecard\"\nbinning_method = \"monotone\"\nmax_bins = 8\nmin_bin_fraction = 0.04\nmin_iv = 0.02\nbase_score = 500.0\nbase_odds = 20.0\npdo = 40.0\nc = 2.0\noptimizer = \"newton\"\neval_every = 3",
        "kind = \"gbdt\"\nn_trees = 50\nlearning_rate = 0.05\nmax_depth = 4\nmax_leaves = 12\nmax_bins = 63\nmin_child_weight = 0.01\nmin_data_in_leaf = 10\nlambda_l2 = 1.0\nmin_split_gain = 0.0\nrow_subsample = 1.0\ncol_subsample = 0.8\nseed = 9\neval_every = 10",
    ];
    for (model, kind) in full.iter().zip(["logistic", "scorecard", "gbdt"]) {
        let spec = JobSpec::from_toml(&text(model)).unwrap();
        assert_eq!(spec.model.kind(), kind);
        let back = JobSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(back, spec);
        let err = JobSpec::from_toml(&text(&format!("{model}\nlearning_rat = 0.1"))).unwrap_err();
        assert!(err.to_string().contains("learning_rat"), "{kind}: {err}");
    }
    let ModelSpec::Logistic(l) = JobSpec::from_toml(&text("kind = \"logistic\"")).unwrap().model
    else {
        panic!()
    };
    assert_eq!(l.c, 1.0);
    let err = JobSpec::from_toml(&text("kind = \"logistic\"\nc = 0")).unwrap_err();
    assert!(err.to_string().contains("model.c"), "{err}");
}
