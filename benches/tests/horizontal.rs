//! Horizontal federated training on real files: default_credit's three homo banks (guest,
//! host_1, host_2) train GBDT, logistic regression and a scorecard through the in-memory
//! federation (plaintext sums, plus one secure GBDT-free check); every model is evaluated on
//! `homo_test` against the same model trained centrally on the pooled rows.

use std::path::{Path, PathBuf};

use fedcredit_datasets::{TableSpec, load_table};
use fedcredit_federation::PartyId;
use fedcredit_federation::horizontal::in_memory;
use fedcredit_federation::job::JobSpec;
use fedcredit_models::artifact::{Model, ModelArtifact};
use fedcredit_models::gbdt::{self, GbdtParams};
use fedcredit_models::logistic::LogisticPipeline;
use fedcredit_models::metrics::auc;
use fedcredit_models::preprocess::EncoderParams;
use fedcredit_models::scorecard::{Scorecard, ScorecardParams};
use fedcredit_models::{Dataset, Features};
use ndarray::Array1;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/default_credit")
}

fn load(file: &str) -> Dataset {
    let spec = TableSpec::new(dir().join(file), "id").with_label("y");
    load_table(&spec).unwrap().dataset().unwrap()
}

fn pooled(parts: &[&Dataset]) -> Dataset {
    let f: Vec<&Features> = parts.iter().map(|d| &d.features).collect();
    let y: Vec<f64> = parts.iter().flat_map(|d| d.label.iter().copied()).collect();
    Dataset::new(Features::vstack(&f).unwrap(), Array1::from(y)).unwrap()
}

fn test_auc(m: &Model, test: &Dataset) -> f64 {
    let p = m.predict_proba(&test.features).unwrap();
    auc(p.as_slice().unwrap(), test.label.as_slice().unwrap()).unwrap()
}

fn job(model: &str) -> JobSpec {
    JobSpec::from_toml(&format!(
        "name = \"default-credit-homo\"\nparties = [\"guest\", \"host_1\", \"host_2\"]\n\
         [data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n"
    ))
    .unwrap()
}

#[test]
fn default_credit_homo_federated_matches_pooled_training() {
    if !dir().is_dir() {
        eprintln!("skipping: {} not found", dir().display());
        return;
    }
    let names = ["guest", "host_1", "host_2"];
    let banks: Vec<Dataset> =
        names.iter().map(|n| load(&format!("default_credit_homo_{n}.csv"))).collect();
    let test = load("default_credit_homo_test.csv");
    let all = pooled(&banks.iter().collect::<Vec<_>>());
    let specs = all.features.specs.clone();
    let parties = || -> Vec<(PartyId, Dataset, Option<Dataset>)> {
        names.iter().zip(&banks).map(|(n, d)| (PartyId((*n).into()), d.clone(), None)).collect()
    };
    let run = |spec: &JobSpec, secure: bool| {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (out, _) = in_memory::train(spec, specs.clone(), parties(), secure, &mut rng).unwrap();
        ModelArtifact::from_json(out.artifact_json.as_ref().unwrap()).unwrap().model
    };

    // GBDT with the defaults (100 trees, depth 5, 255 bins).
    let fed = run(&job("kind = \"gbdt\"\neval_every = 0"), false);
    let cen = gbdt::fit(&all, None, &GbdtParams::default()).unwrap();
    let (f, c) = (test_auc(&fed, &test), test_auc(&Model::Gbdt(cen), &test));
    eprintln!("gbdt      federated {f:.6}  pooled {c:.6}  diff {:+.6}", f - c);
    assert!((f - c).abs() <= 0.002, "gbdt: federated {f} vs pooled {c}");

    // Logistic regression (Newton on secure sums), plaintext and one secure run.
    let fed = run(&job("kind = \"logistic\"\neval_every = 0"), false);
    let cen = LogisticPipeline::fit(&all, &EncoderParams::default(), &Default::default()).unwrap();
    let (f, c) = (test_auc(&fed, &test), test_auc(&Model::Logistic(cen), &test));
    eprintln!("logistic  federated {f:.6}  pooled {c:.6}  diff {:+.6}", f - c);
    assert!((f - c).abs() <= 0.005, "logistic: federated {f} vs pooled {c}");
    let secure = run(&job("kind = \"logistic\"\neval_every = 0"), true);
    let s = test_auc(&secure, &test);
    eprintln!("logistic  secure    {s:.6}");
    assert!((s - f).abs() <= 1e-4, "secure {s} vs plaintext {f}");

    // FedAvg for reference (not held to the bar).
    let fedavg = run(
        &job("kind = \"logistic\"\noptimizer = \"fedavg\"\nrounds = 10\neval_every = 0"),
        false,
    );
    eprintln!("logistic  fedavg    {:.6}", test_auc(&fedavg, &test));

    // Scorecard.
    let fed = run(&job("kind = \"scorecard\"\neval_every = 0"), false);
    let cen = Scorecard::fit(&all, &ScorecardParams::default()).unwrap();
    let (f, c) = (test_auc(&fed, &test), test_auc(&Model::Scorecard(cen), &test));
    eprintln!("scorecard federated {f:.6}  pooled {c:.6}  diff {:+.6}", f - c);
    assert!((f - c).abs() <= 0.005, "scorecard: federated {f} vs pooled {c}");
}
