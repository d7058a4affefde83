//! The `fedcredit` binary end to end: the accuracy runner's JSON contract and its error messages.

use std::process::Command;

/// The tests that run whole federations (several processes each, secure protocols) take turns:
/// on two cores, two of them at once starve each other's daemons. Under such load a federated
/// vertical logistic job twice ended with a useless model (AUC 0.43, 0.46) instead of failing (see the closing
/// note of the stop that added this); until that is understood, they do not overlap.
static FEDERATIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_federation_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    FEDERATIONS.lock().unwrap_or_else(|e| e.into_inner())
}

fn fedcredit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedcredit"))
}

/// Two vertical parts of a small synthetic ecosystem: the JSON report has the documented keys
/// and one row per model and setting.
#[test]
fn bench_accuracy_writes_the_documented_json() {
    let _turn = one_federation_at_a_time();
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
        .args(["bench", "accuracy", "--id", "id", "--label", "default_12m", "--trees", "10"])
        .arg("--data")
        .arg(data.join("bank.csv"))
        .arg("--data")
        .arg(data.join("tax.csv"))
        .arg("--json")
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("fed"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("party:tax"), "{table}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 12, "3 models × (centralized + 2 parties + federated)");
    let auc = |setting: &str| {
        rows.iter()
            .find(|r| r["model"] == "gbdt" && r["setting"] == setting)
            .and_then(|r| r["auc"].as_f64())
            .unwrap_or_else(|| panic!("no gbdt {setting} row"))
    };
    // SecureBoost over processes: the centralized trees (10 here, as --trees asks).
    assert!((auc("federated") - auc("centralized")).abs() <= 0.002, "{rows:?}");
    for r in rows {
        for key in ["model", "setting", "auc", "ks", "train_seconds"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert!(["logistic", "scorecard", "gbdt"].contains(&r["model"].as_str().unwrap()));
        let setting = r["setting"].as_str().unwrap();
        assert!(
            ["centralized", "party:bank", "party:tax", "federated"].contains(&setting),
            "{setting}"
        );
    }
}

/// `bench secagg --dropouts`: a party's daemon exits before its round-1 upload of the secure
/// job (not of the plaintext baseline, which needs every party); the runner finishes, recovers
/// the sum without it and reports the round with the dropout.
#[test]
fn bench_secagg_with_a_dropout_recovers_and_reports_the_round() {
    let _turn = one_federation_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("secagg.json");
    let out = fedcredit()
        .args(["bench", "secagg", "--parties", "4", "--dim", "200", "--rounds", "5"])
        .args(["--dropouts", "1", "--json"])
        .arg(&json)
        .arg("--dir")
        .arg(dir.path().join("fed"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["dropouts"], 1, "{r}");
    assert_eq!(r["min_contributors"], 3, "the sum went on without the party: {r}");
    assert!(r["dropout_round_ms"].as_f64().is_some(), "{r}");
    assert!(r["max_abs_error"].as_f64().is_some_and(|e| e < 1e-5), "{r}");
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

/// `train`, `jobs` and `models` against a real federation of processes (mutual TLS): submit
/// detached, cancel, resume, watch to the end, list; then a small scorecard job on synthetic
/// bank data whose model is listed, shown and exported; a bad job file is refused naming the key.
#[test]
fn train_jobs_and_models_commands_work_end_to_end() {
    let _turn = one_federation_at_a_time();
    use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = fedcredit()
        .args(["data", "generate", "--enterprises", "3000", "--months", "14", "--snapshot", "13"])
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Two "banks" with the same columns: the bank table twice would share ids, which is fine
    // for a horizontal job (ids never leave a party), so split nothing and keep it small.
    let parties = vec![
        PartySetup::new("bank1", data.join("bank.csv")),
        PartySetup::new("bank2", data.join("bank.csv")),
    ];
    let mut opts = LaunchOptions::new(env!("CARGO_BIN_EXE_fedcredit"), dir.path().join("fed"));
    opts.log = "warn".into();
    let fed = LocalFederation::start(opts, &parties).unwrap();
    let certs = fed.dir().join("certs");
    let run = |args: &[&str]| {
        let out = fedcredit()
            .args(args)
            .arg("--coordinator")
            .arg(fed.url())
            .arg("--certs")
            .arg(&certs)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let bench_job = dir.path().join("bench.toml");
    std::fs::write(
        &bench_job,
        "name = \"cli\"\nparties = [\"bank1\", \"bank2\"]\n[data]\nid = \"id\"\nlabel = \"default_12m\"\n\
         [model]\nkind = \"secagg_bench\"\ndim = 20000\nrounds = 200\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["train", bench_job.to_str().unwrap(), "--detach"]);
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_string();
    assert!(id.starts_with("job-"), "{stdout}");
    let (ok, stdout, stderr) = run(&["jobs", "cancel", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    let (ok, stdout, stderr) = run(&["jobs", "resume", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&id), "{stdout}");
    let (ok, stdout, stderr) = run(&["jobs", "watch", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("succeeded") && stdout.contains("max_abs_error"), "{stdout}");
    let (ok, stdout, _) = run(&["jobs", "list"]);
    assert!(ok && stdout.contains(&id), "{stdout}");
    let (ok, stdout, _) = run(&["jobs", "show", &id, "--rounds"]);
    assert!(ok && stdout.contains("round  199"), "{stdout}");

    let sc_job = dir.path().join("scorecard.toml");
    std::fs::write(
        &sc_job,
        "name = \"sc\"\nparties = [\"bank1\", \"bank2\"]\n[data]\nid = \"id\"\nlabel = \"default_12m\"\n\
         [model]\nkind = \"scorecard\"\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["train", sc_job.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("succeeded") && stdout.contains("auc"), "{stdout}");
    let (ok, stdout, _) = run(&["models", "list"]);
    assert!(ok && stdout.contains("scorecard"), "{stdout}");
    let model = stdout
        .lines()
        .find(|l| l.contains("scorecard"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, stdout, _) = run(&["models", "show", &model]);
    assert!(ok && stdout.contains("loan_balance"), "{stdout}");
    let exported = dir.path().join("model.json");
    let (ok, _, stderr) = run(&["models", "export", &model, "--out", exported.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let art = fedcredit_models::artifact::ModelArtifact::from_json(
        &std::fs::read_to_string(&exported).unwrap(),
    )
    .unwrap();
    assert_eq!(art.model.kind(), "scorecard");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&sc_job).unwrap().replace("[model]", "[model]\nbins = 3"),
    )
    .unwrap();
    let (ok, _, stderr) = run(&["train", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("bad.toml") && stderr.contains("bins"), "{stderr}");
    let (ok, _, stderr) = run(&["jobs", "show", "job-nope"]);
    assert!(!ok && stderr.contains("no job `job-nope`"), "{stderr}");

    // A party's certificate in the operator's place: refused, and no table header before the
    // error; the error is not prefixed twice.
    let wrong = dir.path().join("wrong-certs");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(certs.join("ca.pem"), wrong.join("ca.pem")).unwrap();
    std::fs::copy(certs.join("bank1.pem"), wrong.join("operator.pem")).unwrap();
    std::fs::copy(certs.join("bank1.key"), wrong.join("operator.key")).unwrap();
    for cmd in [["jobs", "list"], ["models", "list"]] {
        let out = fedcredit()
            .args(cmd)
            .arg("--coordinator")
            .arg(fed.url())
            .arg("--certs")
            .arg(&wrong)
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success());
        assert!(stdout.is_empty(), "{cmd:?} printed before failing: {stdout}");
        assert!(stderr.contains("permission denied") && stderr.contains("bank1"), "{stderr}");
        assert!(!stderr.contains("error: error"), "{stderr}");
    }
}

/// `data inspect`: columns, the kind each is read as, missing cells, levels of text columns
/// and repeated ids, from a file with all of them.
#[test]
fn data_inspect_summarises_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("applicants.csv");
    std::fs::write(
        &path,
        "id,income,city,score,zip\n\
         a1,1200.5,Lyon,1,007\n\
         a2,,Paris,2,75\n\
         a3,800,Paris,NA,75\n\
         a2,950,,3,13\n\
         a5,1000,Paris,4,75\n",
    )
    .unwrap();
    let out =
        fedcredit().args(["data", "inspect"]).arg(&path).args(["--id", "id"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("5 rows, 5 columns"), "{stdout}");
    assert!(stdout.contains("4 distinct ids"), "{stdout}");
    assert!(
        stdout.contains("1 rows repeat an earlier id (first: `a2` at data rows 2 and 4)"),
        "{stdout}"
    );
    let line = |name: &str| {
        stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {stdout}"))
    };
    assert!(line("income").contains("numeric") && line("income").contains("1 (20.0%)"), "{stdout}");
    assert!(line("income").contains("min 800, max 1200.5"), "{stdout}");
    let city = line("city");
    assert!(city.contains("text") && city.contains("2 levels: Paris (3), Lyon (1)"), "{stdout}");
    assert!(line("score").contains("numeric") && line("score").contains("1 (20.0%)"), "{stdout}");
    // Numbers in text form are numeric (a leading zero does not make `zip` text).
    assert!(line("zip").contains("numeric"), "{stdout}");

    // Without --id every column is listed; a missing file names it.
    let out = fedcredit().args(["data", "inspect"]).arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("id ")));
    let out = fedcredit().args(["data", "inspect", "nope.csv"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.csv"));
    let out = fedcredit().args(["data", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("inspect") && help.contains("applications"), "{help}");
}

/// `data applications` writes the generated high-cardinality table; `inspect` reads it.
#[test]
fn data_applications_writes_a_high_cardinality_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apps.csv");
    let out = fedcredit()
        .args(["data", "applications", "--rows", "3000", "--numeric", "8", "--text", "4"])
        .arg("--out")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        fedcredit().args(["data", "inspect"]).arg(&path).args(["--id", "id"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3000 rows, 14 columns") && stdout.contains("no duplicates"),
        "{stdout}"
    );
    let city = stdout.lines().find(|l| l.starts_with("city")).unwrap();
    assert!(city.contains("text") && city.contains("levels"), "{stdout}");
}

/// A type error in job.toml names the file and the key path, not just the table header; the
/// internal benchmark kind is not offered. (Checked before any connection.)
#[test]
fn job_toml_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("job.toml");
    let base = "name = \"x\"\nparties = [\"bank1\", \"bank2\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n";
    std::fs::write(&bad, format!("{base}kind = \"gbdt\"\nn_trees = \"sixty\"\n")).unwrap();
    let out = fedcredit()
        .arg("train")
        .arg(&bad)
        .args(["--coordinator", "https://127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("job.toml") && stderr.contains("`model.n_trees` (line 8)"), "{stderr}");
    assert!(stderr.contains("\"sixty\""), "{stderr}");
    std::fs::write(&bad, format!("{base}kind = \"svm\"\n")).unwrap();
    let out = fedcredit().arg("train").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`model.kind`") && stderr.contains("`gbdt`"), "{stderr}");
    assert!(!stderr.contains("secagg_bench"), "{stderr}");
}

/// `fedcredit demo --horizontal` on a smaller ecosystem: exits 0, runs the three banks'
/// federation of processes and writes `results.json` with a federated row per model, close to
/// the pooled model.
#[test]
fn demo_horizontal_runs_the_federation_and_writes_results() {
    let _turn = one_federation_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = fedcredit()
        .args(["demo", "--horizontal", "--enterprises", "4000", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("federated") && stdout.contains("party:bank3"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let rows = report["horizontal"].as_array().unwrap();
    for model in ["gbdt", "scorecard", "logistic"] {
        let auc = |setting: &str| {
            rows.iter()
                .find(|r| r["model"] == model && r["setting"] == setting)
                .and_then(|r| r["auc"].as_f64())
                .unwrap_or_else(|| panic!("no {model} {setting} row"))
        };
        let (fed, central) = (auc("federated"), auc("centralized"));
        eprintln!("{model}: federated {fed:.4} centralized {central:.4}");
        // GBDT's federated bins come from the pooled quantile sketch, the centralized ones from
        // the exact values: on 4,000 enterprises (about 190 defaults among the test rows) that
        // alone moves the AUC by up to ≈ 0.015 (0.6474 vs 0.6609 once seen); the same trees on
        // the same bins are checked in federation/tests/horizontal_gbdt.rs, and default_credit
        // in tests/horizontal_accuracy.rs.
        let bound = if model == "gbdt" { 0.025 } else { 0.01 };
        assert!((fed - central).abs() < bound, "{model}: {fed} vs {central}");
    }
    assert!(dir.path().join("federation/logs/coordinator.log").exists());
}

/// Chromium, when this machine has it (`.ci/run` installs Debian's package).
fn chromium() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("FEDCREDIT_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
        "/usr/bin/google-chrome".into(),
    ];
    candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// Loads `page` in headless Chromium: the DOM after its script ran, and a screenshot.
fn render(page: &std::path::Path, shot: &std::path::Path) -> Option<String> {
    let bin = chromium()?;
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ];
    let url = format!("file://{}", page.display());
    let dom = std::process::Command::new(&bin)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=3000", "--dump-dom"])
        .arg(&url)
        .output()
        .expect("run chromium");
    let shot_run = std::process::Command::new(&bin)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--window-size=1280,2600"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(shot_run.status.success(), "{}", String::from_utf8_lossy(&shot_run.stderr));
    Some(String::from_utf8_lossy(&dom.stdout).to_string())
}

/// The README's first command, on a smaller ecosystem: the vertical story. Exits 0; the
/// federated vertical models come close to the joined table; the served model scores the
/// portfolio, the data rolls forward three months with a re-scoring period each, alerts fire,
/// and the HTML report renders in a real browser with every chart drawn.
#[test]
fn demo_runs_the_vertical_story_serves_scores_and_writes_a_report() {
    let _turn = one_federation_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = fedcredit()
        .args(["demo", "--enterprises", "4000", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("federated") && stdout.contains("party:bank"), "{stdout}");
    assert!(stderr.contains("scored the bank's portfolio"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let rows = report["vertical"].as_array().unwrap();
    for model in ["scorecard", "logistic"] {
        let auc = |setting: &str| {
            rows.iter()
                .find(|r| r["model"] == model && r["setting"] == setting)
                .and_then(|r| r["auc"].as_f64())
                .unwrap_or_else(|| panic!("no vertical {model} {setting} row"))
        };
        let (fed, central, bank) = (auc("federated"), auc("centralized"), auc("party:bank"));
        eprintln!("vertical {model}: federated {fed:.4} centralized {central:.4} bank {bank:.4}");
        // About 40 defaults among the test rows of 4,000 enterprises, and the end point of the
        // secret-shared descent varies with the job's random row order (0.8544 vs 0.8381 once,
        // and a scorecard more than 0.03 below the joined table once): this test checks the
        // path and that the federation beats the bank alone; tests/vertical_accuracy.rs holds
        // the accuracy.
        assert!((fed - central).abs() < 0.08, "{model}: {fed} vs {central}");
        assert!(fed > bank + 0.05, "{model}: {fed} vs the bank alone {bank}");
    }
    let s = &report["serving"];
    assert!(s["portfolio"].as_u64().unwrap() > 2_000, "{s}");
    // The vertical GBDT served the same portfolio.
    assert!(s["gbdt_portfolio"].as_u64().unwrap() > 2_000, "{s}");
    assert_eq!(s["periods"].as_array().unwrap().len(), 3, "{s}");
    let auc = s["out_of_time_auc"].as_f64().unwrap();
    assert!(auc > 0.7, "out-of-time AUC {auc}");
    let alerts = s["alerts"].as_object().unwrap();
    assert!(alerts.values().map(|n| n.as_u64().unwrap()).sum::<u64>() > 0, "{s}");
    assert!(dir.path().join("federation-vertical/logs/coordinator.log").exists());
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let charts = html.matches("<svg class=\"chart\"").count();
    assert!(charts >= 8, "{charts} charts");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-report.png");
    match render(&page, &shot) {
        Some(dom) => {
            let want = format!("data-charts-drawn=\"{charts}\"");
            assert!(
                dom.contains(&want),
                "not every chart was drawn: {}",
                &dom[..dom.len().min(400)]
            );
            assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false));
            eprintln!("report screenshot: {}", shot.display());
        }
        None => eprintln!(
            "SKIPPED the browser check: no Chromium here (install Debian's `chromium`; .ci/run does)"
        ),
    }
}
