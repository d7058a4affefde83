//! The accuracy runner against the committed references, and on credit files it has never seen.
//!
//! Real-data tests read `../shared/datasets` and skip with a message when it is absent.

use std::io::Write;
use std::path::{Path, PathBuf};

use fedcredit_benches::accuracy::{self, AccuracyConfig, AccuracyRow, ModelName};
use fedcredit_benches::reference::Reference;
use fedcredit_models::gbdt::GbdtParams;
use sha2::{Digest, Sha256};

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

fn row<'a>(rows: &'a [AccuracyRow], model: &str, setting: &str) -> &'a AccuracyRow {
    rows.iter()
        .find(|r| r.model == model && r.setting == setting)
        .unwrap_or_else(|| panic!("no row for {model} / {setting}"))
}

/// The three models on default_credit (guest + host joined, 80/20 stratified, seed 42) are
/// within 0.005 AUC of scikit-learn, the binned-LR reference and LightGBM with matched
/// parameters, computed by `benches/reference/make_reference.py` on the identical split.
#[test]
fn default_credit_matches_the_committed_references() {
    let (Some(guest), Some(host)) = (
        shared("default_credit/default_credit_hetero_guest.csv"),
        shared("default_credit/default_credit_hetero_host.csv"),
    ) else {
        return;
    };
    let reference = Reference::load(&Reference::default_credit_path()).unwrap();
    let cfg = AccuracyConfig {
        data: vec![guest, host],
        id: "id".into(),
        label: "y".into(),
        test_fraction: 0.2,
        seed: 42,
        models: ModelName::ALL.to_vec(),
        federated_models: vec![ModelName::Logistic, ModelName::Scorecard],
        gbdt: GbdtParams::default(),
        federation: None,
    };
    let rows = accuracy::run(&cfg, |line: &str| eprintln!("{line}")).unwrap();
    eprint!("{}", accuracy::render_table(&rows));
    assert_eq!(rows.len(), 11, "3 models × (centralized + 2 parties) + 2 federated");
    let pairs = [("logistic", "logistic"), ("scorecard", "binned_lr"), ("gbdt", "lightgbm")];
    for (ours, theirs) in pairs {
        let got = row(&rows, ours, "centralized");
        let want = reference.get(theirs, "centralized").unwrap();
        assert_eq!(got.n_test, 6000);
        assert!(
            (got.auc - want.auc).abs() <= 0.005,
            "{ours} AUC {:.4} vs {theirs} {:.4}",
            got.auc,
            want.auc
        );
    }
    // Each party alone: LR and GBDT track their references too.
    for setting in ["party:default_credit_hetero_guest", "party:default_credit_hetero_host"] {
        for (ours, theirs) in [("logistic", "logistic"), ("gbdt", "lightgbm")] {
            let got = row(&rows, ours, setting).auc;
            let want = reference.get(theirs, setting).unwrap().auc;
            assert!((got - want).abs() <= 0.005, "{ours} {setting}: {got:.4} vs {want:.4}");
        }
    }
    // Federated equals centralized: the vertical protocol over the guest's and the host's
    // columns ranks the test rows as the model on the joined table does.
    for model in ["logistic", "scorecard"] {
        let fed = row(&rows, model, "federated:in-process").auc;
        let all = row(&rows, model, "centralized").auc;
        assert!((fed - all).abs() <= 0.005, "{model}: federated {fed:.4} vs centralized {all:.4}");
    }
    // Joining the parties helps every model.
    for model in ["logistic", "scorecard", "gbdt"] {
        let all = row(&rows, model, "centralized").auc;
        let guest = row(&rows, model, "party:default_credit_hetero_guest").auc;
        assert!(all > guest + 0.01, "{model}: {all} vs guest alone {guest}");
    }
}

/// Rust and Python compute the same split: the test ids hash to the value the reference recorded.
#[test]
fn split_is_identical_to_the_python_reference() {
    let Some(guest) = shared("default_credit/default_credit_hetero_guest.csv") else {
        return;
    };
    let spec = fedcredit_datasets::TableSpec::new(guest, "id").with_label("y");
    let table = fedcredit_datasets::load_table(&spec).unwrap();
    let label = table.label.clone().unwrap().to_vec();
    let split = fedcredit_datasets::stratified_split(&table.ids, &label, 0.2, 42).unwrap();
    let mut ids: Vec<&str> = split.test.iter().map(|&i| table.ids[i].as_str()).collect();
    ids.sort_unstable();
    let digest = Sha256::digest(ids.join("\n").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let text = std::fs::read_to_string(Reference::default_credit_path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["split"]["test_ids_sha256"].as_str().unwrap(), hex);
    assert_eq!(json["split"]["n_test"].as_u64().unwrap() as usize, split.test.len());
}

/// Splits a CSV line on commas outside double quotes.
fn fields(line: &str) -> Vec<String> {
    line.split(',').map(|f| f.trim_matches('"').to_owned()).collect()
}

/// The raw UCI file reshaped the way another institution might ship it: different column
/// names, text categories, missing cells in several spellings, a TSV beside a CSV.
/// The runner has never seen it and must work unchanged.
#[test]
fn runner_works_on_unseen_files_with_missing_values_and_text_categories() {
    let Some(raw) = shared("default_credit/UCI_Credit_Card.csv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&raw).unwrap();
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id, sex, edu, mar) = (col("ID"), col("SEX"), col("EDUCATION"), col("MARRIAGE"));
    let (limit, age, pay0, bill1) = (col("LIMIT_BAL"), col("AGE"), col("PAY_0"), col("BILL_AMT1"));
    let label = col("default.payment.next.month");
    let bank_cols: Vec<usize> = (0..header.len())
        .filter(|&c| header[c].starts_with("PAY") || header[c].starts_with("BILL") || c == label)
        .collect();
    let profile_cols = [limit, sex, edu, mar, age];

    let bank_path = dir.path().join("card_bank.csv");
    let profile_path = dir.path().join("client_profile.tsv");
    let mut bank = std::fs::File::create(&bank_path).unwrap();
    let mut profile = std::fs::File::create(&profile_path).unwrap();
    let names = |cols: &[usize]| cols.iter().map(|&c| header[c].clone()).collect::<Vec<_>>();
    writeln!(bank, "client_id,{}", names(&bank_cols).join(",")).unwrap();
    writeln!(profile, "client_id\t{}", names(&profile_cols).join("\t")).unwrap();
    for (i, line) in lines.enumerate() {
        let f = fields(line);
        let cell = |c: usize| -> String {
            // Knock out a few cells in several spellings of "missing".
            if (c == pay0 || c == bill1 || c == age) && i % 17 == c % 5 {
                return ["", "NA", "NaN"][i % 3].to_owned();
            }
            if c == sex {
                return if f[c] == "1" { "male".into() } else { "female".into() };
            }
            if c == edu {
                return ["other", "graduate", "university", "high school"]
                    .get(f[c].parse::<usize>().unwrap_or(0))
                    .unwrap_or(&"other")
                    .to_string();
            }
            if c == mar && i % 23 == 0 {
                return "null".into();
            }
            f[c].clone()
        };
        let b: Vec<String> = bank_cols.iter().map(|&c| cell(c)).collect();
        let p: Vec<String> = profile_cols.iter().map(|&c| cell(c)).collect();
        writeln!(bank, "C{:06},{}", f[id], b.join(",")).unwrap();
        // The profile file lists clients in reverse-ish order: the join must not care.
        writeln!(profile, "C{:06}\t{}", f[id], p.join("\t")).unwrap();
    }
    drop((bank, profile));

    let cfg = AccuracyConfig {
        data: vec![profile_path, bank_path],
        id: "client_id".into(),
        label: "default.payment.next.month".into(),
        test_fraction: 0.25,
        seed: 7,
        models: ModelName::ALL.to_vec(),
        federated_models: vec![ModelName::Logistic, ModelName::Scorecard],
        gbdt: GbdtParams::default(),
        federation: None,
    };
    let rows = accuracy::run(&cfg, |_: &str| {}).unwrap();
    eprint!("{}", accuracy::render_table(&rows));
    assert_eq!(rows.len(), 11);
    for r in &rows {
        assert_eq!(r.n_train + r.n_test, 30_000);
        assert!(r.auc.is_finite() && r.ks.is_finite() && r.log_loss.is_finite());
    }
    // Real signal survives the reshaping: the repayment history is predictive.
    assert!(row(&rows, "gbdt", "centralized").auc > 0.75);
    assert!(row(&rows, "scorecard", "centralized").auc > 0.74);
    assert!(row(&rows, "logistic", "centralized").auc > 0.70);
    // The federated regression copes with the missing values and text categories too.
    for model in ["logistic", "scorecard"] {
        let fed = row(&rows, model, "federated:in-process").auc;
        let all = row(&rows, model, "centralized").auc;
        assert!((fed - all).abs() <= 0.005, "{model}: federated {fed:.4} vs centralized {all:.4}");
    }
    // So does SecureBoost, to the 0.002 bar of a lossless protocol (fewer, coarser trees than
    // the default, the same in both settings, to keep the test short).
    let rows = accuracy::run(&secureboost(cfg.clone()), |_: &str| {}).unwrap();
    eprint!("{}", accuracy::render_table(&rows));
    // The bank's repayment history carries most of the signal; the profile adds a little.
    check_secureboost(&rows, "party:card_bank", 0.0);
    assert!(
        row(&rows, "gbdt", "party:card_bank").auc > row(&rows, "gbdt", "party:client_profile").auc
    );
}

/// The small sanity set end to end: every model separates benign from malignant.
#[test]
fn breast_sanity_set() {
    let (Some(guest), Some(host)) =
        (shared("breast/breast_hetero_guest.csv"), shared("breast/breast_hetero_host.csv"))
    else {
        return;
    };
    let cfg = AccuracyConfig {
        data: vec![guest, host],
        id: "id".into(),
        label: "y".into(),
        test_fraction: 0.2,
        seed: 42,
        models: ModelName::ALL.to_vec(),
        federated_models: vec![ModelName::Logistic, ModelName::Scorecard],
        gbdt: GbdtParams::default(),
        federation: None,
    };
    let rows = accuracy::run(&cfg, |_: &str| {}).unwrap();
    for model in ["logistic", "scorecard", "gbdt"] {
        let auc = row(&rows, model, "centralized").auc;
        assert!(auc > 0.95, "{model}: {auc}");
    }
}

/// Misconfigured runs fail with messages that say what to fix.
#[test]
fn configuration_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    std::fs::write(&a, "id,y,x\n1,0,1.0\n2,1,2.0\n3,0,0.5\n4,1,3.0\n").unwrap();
    let b = dir.path().join("b.csv");
    std::fs::write(&b, "id,y,z\n1,0,1.0\n2,1,2.0\n").unwrap();
    let base = AccuracyConfig {
        data: vec![a.clone()],
        id: "id".into(),
        label: "target".into(),
        test_fraction: 0.2,
        seed: 1,
        models: vec![ModelName::Logistic],
        federated_models: Vec::new(),
        gbdt: GbdtParams::default(),
        federation: None,
    };
    let err = accuracy::run(&base, |_: &str| {}).unwrap_err().to_string();
    assert!(err.contains("`target`"), "{err}");
    let two_labels = AccuracyConfig { data: vec![a.clone(), b], label: "y".into(), ..base.clone() };
    let err = accuracy::run(&two_labels, |_: &str| {}).unwrap_err().to_string();
    assert!(err.contains("more than one file") && err.contains("b.csv"), "{err}");
    let bad_fraction = AccuracyConfig { test_fraction: 1.5, label: "y".into(), ..base.clone() };
    let err = accuracy::run(&bad_fraction, |_: &str| {}).unwrap_err().to_string();
    assert!(err.contains("--test-fraction"), "{err}");
    let missing = AccuracyConfig { data: vec![dir.path().join("nope.csv")], ..base };
    let err = accuracy::run(&missing, |_: &str| {}).unwrap_err().to_string();
    assert!(err.contains("nope.csv"), "{err}");
}

/// `cfg` with `gbdt` alone, trained centralized, per party and federated with 30 trees of 32
/// bins.
fn secureboost(cfg: AccuracyConfig) -> AccuracyConfig {
    AccuracyConfig {
        models: vec![ModelName::Gbdt],
        federated_models: vec![ModelName::Gbdt],
        gbdt: GbdtParams { n_trees: 30, max_bins: 32, ..GbdtParams::default() },
        ..cfg
    }
}

/// SecureBoost within 0.002 AUC of the centralized GBDT with the same parameters and bins, and
/// more than `margin` above the label holder alone.
fn check_secureboost(rows: &[AccuracyRow], label_holder: &str, margin: f64) {
    let fed = row(rows, "gbdt", "federated:in-process").auc;
    let all = row(rows, "gbdt", "centralized").auc;
    let alone = row(rows, "gbdt", label_holder).auc;
    eprintln!("gbdt: federated {fed:.5}, centralized {all:.5}, label holder alone {alone:.5}");
    assert!((fed - all).abs() <= 0.002, "gbdt: federated {fed:.4} vs centralized {all:.4}");
    assert!(fed > alone + margin, "gbdt: federated {fed:.4} vs the label holder alone {alone:.4}");
}

#[test]
fn secureboost_equals_the_centralized_gbdt_on_default_credit() {
    let (Some(guest), Some(host)) = (
        shared("default_credit/default_credit_hetero_guest.csv"),
        shared("default_credit/default_credit_hetero_host.csv"),
    ) else {
        return;
    };
    let cfg = secureboost(AccuracyConfig {
        data: vec![guest, host],
        id: "id".into(),
        label: "y".into(),
        test_fraction: 0.2,
        seed: 42,
        models: Vec::new(),
        federated_models: Vec::new(),
        gbdt: GbdtParams::default(),
        federation: None,
    });
    let rows = accuracy::run(&cfg, |line: &str| eprintln!("{line}")).unwrap();
    eprint!("{}", accuracy::render_table(&rows));
    check_secureboost(&rows, "party:default_credit_hetero_guest", 0.02);
}
