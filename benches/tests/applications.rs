//! The accuracy runner on generated credit-application tables with high-cardinality text
//! columns (issue 7) against the committed references of `benches/reference/applications_*.json`
//! (`make_reference.py --applications`, which ran `fedcredit data applications` with the settings
//! it records): the same table is regenerated here, written as CSV and read back as a user's
//! file would be, on the same split.
//!
//! - `logistic` within 0.005 AUC of scikit-learn's logistic regression on the same encoding
//!   (rare levels pooled below 50 rows, mean imputation, indicators, z-scores);
//! - `gbdt` within 0.005 AUC of LightGBM with matched parameters on fedcredit's categorical bins
//!   (`lightgbm_binned`: the 254 most frequent levels and one "other"), and not more than 0.005
//!   below LightGBM with its own categorical binning (`lightgbm`, every level with 3+ rows).

use sha2::{Digest, Sha256};

use fedcredit_benches::accuracy::{self, AccuracyConfig, AccuracyRow, ModelName};
use fedcredit_benches::reference::Reference;
use fedcredit_datasets::applications::{ID_COLUMN, LABEL_COLUMN, applications_table};
use fedcredit_datasets::{TableSpec, load_table, stratified_split};
use fedcredit_models::testdata::ApplicationsConfig;

fn row<'a>(rows: &'a [AccuracyRow], model: &str) -> &'a AccuracyRow {
    rows.iter()
        .find(|r| r.model == model && r.setting == "centralized")
        .unwrap_or_else(|| panic!("no row for {model}"))
}

fn check(name: &str) {
    let reference = Reference::load(&Reference::path_of(name)).unwrap();
    let g = reference.generator.expect("the reference records its generator settings");
    let cfg = ApplicationsConfig { rows: g.rows, numeric: g.numeric, text: g.text, seed: g.seed };
    let table = applications_table(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.csv"));
    table.write_csv(&path, ID_COLUMN, None, Some(LABEL_COLUMN)).unwrap();

    // The split is the reference's: same test ids.
    let loaded = load_table(&TableSpec::new(&path, ID_COLUMN).with_label(LABEL_COLUMN)).unwrap();
    let label = loaded.label.clone().unwrap().to_vec();
    let split =
        stratified_split(&loaded.ids, &label, reference.split.test_fraction, reference.split.seed)
            .unwrap();
    let mut ids: Vec<&str> = split.test.iter().map(|&i| loaded.ids[i].as_str()).collect();
    ids.sort_unstable();
    let hex: String =
        Sha256::digest(ids.join("\n").as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, reference.split.test_ids_sha256, "{name}: test ids differ from the reference");

    let run = AccuracyConfig {
        data: vec![path],
        id: ID_COLUMN.into(),
        label: LABEL_COLUMN.into(),
        test_fraction: reference.split.test_fraction,
        seed: reference.split.seed,
        models: vec![ModelName::Logistic, ModelName::Gbdt],
        federated_models: Vec::new(),
        gbdt: fedcredit_models::gbdt::GbdtParams::default(),
        federation: None,
    };
    let rows = accuracy::run(&run, |line: &str| eprintln!("{line}")).unwrap();
    eprint!("{}", accuracy::render_table(&rows));
    let want = |model: &str| reference.get(model, "centralized").unwrap().auc;
    let (lr, gbdt) = (row(&rows, "logistic"), row(&rows, "gbdt"));
    assert_eq!(lr.n_test, reference.split.n_test);
    eprintln!(
        "{name}: logistic {:.4} vs scikit-learn {:.4}; gbdt {:.4} vs LightGBM binned {:.4}, \
         LightGBM {:.4}",
        lr.auc,
        want("logistic"),
        gbdt.auc,
        want("lightgbm_binned"),
        want("lightgbm")
    );
    assert!((lr.auc - want("logistic")).abs() <= 0.005, "{name}: logistic {}", lr.auc);
    assert!((gbdt.auc - want("lightgbm_binned")).abs() <= 0.005, "{name}: gbdt {}", gbdt.auc);
    assert!(gbdt.auc >= want("lightgbm") - 0.005, "{name}: gbdt {}", gbdt.auc);
}

/// 50,000 rows × 52 features, 13 text columns with up to 4,000 levels: the shape of issue 7.
#[test]
fn applications_50k_match_the_references() {
    check("applications_50k");
}

/// 20,000 rows × 24 features, 6 text columns: fewer rows per level.
#[test]
fn applications_20k_match_the_references() {
    check("applications_20k");
}
