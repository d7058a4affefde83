//! The `fedcredit` binary end to end: the accuracy runner's JSON contract and its error messages.

use std::process::Command;

fn fedcredit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedcredit"))
}

/// Two vertical parts of a small synthetic ecosystem: the JSON report has the documented keys
/// and one row per model and setting.
#[test]
fn bench_accuracy_writes_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = fedcredit()
        .args(["data", "generate", "--enterprises", "3000", "--months", "14", "--snapshot", "13"])
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = dir.path().join("acc.json");
    let out = fedcredit()
        .args(["bench", "accuracy", "--id", "id", "--label", "default_12m"])
        .arg("--data")
        .arg(data.join("bank.csv"))
        .arg("--data")
        .arg(data.join("tax.csv"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("party:tax"), "{table}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 9);
    for r in rows {
        for key in ["model", "setting", "auc", "ks", "train_seconds"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert!(["logistic", "scorecard", "gbdt"].contains(&r["model"].as_str().unwrap()));
        let setting = r["setting"].as_str().unwrap();
        assert!(["centralized", "party:bank", "party:tax"].contains(&setting), "{setting}");
    }
}

/// A file without the label, a missing file, a bad flag: non-zero exit and a message naming the culprit.
#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    std::fs::write(&a, "id,x\n1,0.5\n2,0.7\n").unwrap();
    let out = fedcredit()
        .args(["bench", "accuracy", "--id", "id", "--label", "y", "--data"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`y`"), "{err}");

    let out = fedcredit()
        .args(["bench", "accuracy", "--id", "id", "--label", "y", "--data"])
        .arg(dir.path().join("missing.parquet"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.parquet"));

    let out = fedcredit().args(["bench", "accuracy", "--models", "svm"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("svm"));
}
