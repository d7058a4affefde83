//! The accuracy bar, end to end over processes: default_credit's homo files as three
//! banks (guest, host_1, host_2), `fedcredit bench accuracy --mode horizontal` with a coordinator
//! and three participant processes over loopback and mutual TLS, every model scored on
//! `homo_test`. Federated GBDT must be within 0.002 AUC and federated logistic and scorecard within
//! 0.005 AUC of the same model trained on the pooled rows; the pooled models within 0.005 of the
//! committed scikit-learn / LightGBM references.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/default_credit")
}

fn auc(rows: &[serde_json::Value], model: &str, setting: &str) -> f64 {
    rows.iter()
        .find(|r| r["model"] == model && r["setting"] == setting)
        .and_then(|r| r["auc"].as_f64())
        .unwrap_or_else(|| panic!("no row {model} / {setting}"))
}

fn reference(model: &str) -> f64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/default_credit.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["horizontal"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["setting"] == "centralized")
        .and_then(|r| r["auc"].as_f64())
        .unwrap()
}

#[test]
fn federated_over_processes_matches_pooled_training_on_default_credit() {
    let d = data_dir();
    if !d.is_dir() {
        eprintln!("skipping: {} not found", d.display());
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("horizontal.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedcredit"));
    cmd.args(["bench", "accuracy", "--mode", "horizontal", "--id", "id", "--label", "y"]);
    for f in ["guest", "host_1", "host_2"] {
        cmd.arg("--data").arg(d.join(format!("default_credit_homo_{f}.csv")));
    }
    cmd.arg("--test").arg(d.join("default_credit_homo_test.csv"));
    cmd.arg("--workdir").arg(work.path().join("federation"));
    cmd.arg("--json").arg(&json);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (model, bar) in [("gbdt", 0.002), ("logistic", 0.005), ("scorecard", 0.005)] {
        let fed = auc(&rows, model, "federated");
        let central = auc(&rows, model, "centralized");
        eprintln!("{model}: federated {fed:.4}, centralized {central:.4}, Δ {:+.4}", fed - central);
        assert!((fed - central).abs() <= bar, "{model}: federated {fed} vs centralized {central}");
    }
    // The pooled models against the committed references (LightGBM matched, scikit-learn LR,
    // LR on quantile bins for the scorecard).
    for (model, ours, bar) in [
        ("lightgbm", auc(&rows, "gbdt", "centralized"), 0.005),
        ("logistic", auc(&rows, "logistic", "centralized"), 0.005),
        ("binned_lr", auc(&rows, "scorecard", "centralized"), 0.005),
    ] {
        let r = reference(model);
        assert!((ours - r).abs() <= bar, "{model}: ours {ours} vs reference {r}");
    }
}
