//! Vertical `align` jobs (PSI, `federation::vertical::psi`: ECDH after Huberman, Franklin and
//! Hogg 1999 over ristretto255 with RFC 9380/9496 hash to group; server-aided after Kamara et
//! al., FC 2014) over separate processes with mutual TLS:
//! - two parties with unbalanced tables align in both modes: each party keeps its rows of the
//!   common ids (`state_dir/models/<job>.json`), and both name the same ids in the same order;
//! - a table with a repeated or empty id, or without the job's id column, fails the job before
//!   any protocol step with an error naming the party, file, column and rows (never an id),
//!   and the jobs after it run.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{launch, operator, rt};
use fedcredit_ops::bench::write_psi_table;
use fedcredit_ops::launch::{LocalFederation, PartySetup};

/// The ids of a table written by `write_psi_table` or by hand (first column), in row order.
fn ids_of(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').next().unwrap_or_default().to_string()).collect()
}

/// The rows `party` kept of job `job`, waiting a little for the daemon to write them.
fn kept_rows(fed: &LocalFederation, party: &str, job: &str) -> Vec<u32> {
    let safe: String = job
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let path = fed.dir().join(format!("{party}-state")).join("models").join(format!("{safe}.json"));
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["kind"], "alignment", "{text}");
            return v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| u32::try_from(r.as_u64().unwrap()).unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{party} kept no alignment at {}", path.display());
}

fn align_job(parties: &[&str], mode: &str, id: &str) -> String {
    let quoted: Vec<String> = parties.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "name = \"align-{mode}\"\nparties = [{}]\nphase_timeout_secs = 60\ngrace_secs = 10\n\
         [data]\nid = \"{id}\"\nlabel = \"y\"\n[model]\nkind = \"align\"\n\
         [vertical]\nlabel_holder = \"{}\"\npsi = \"{mode}\"\n",
        quoted.join(", "),
        parties[0]
    )
}

#[test]
fn align_jobs_over_processes_with_bad_ids_refused_naming_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // bank: 1,000 ids; tax: 6,000; 700 common.
    write_psi_table(&d.join("bank.csv"), 0, 1_000, 700).unwrap();
    write_psi_table(&d.join("tax.csv"), 1, 6_000, 700).unwrap();
    // platform repeats an id (data rows 2 and 5); shop leaves one empty (data row 3).
    std::fs::write(
        d.join("platform.csv"),
        "id,z\n910000000000000001,1\n910000000000000002,2\n910000000000000003,3\n\
         910000000000000004,4\n910000000000000002,5\n",
    )
    .unwrap();
    std::fs::write(d.join("shop.csv"), "id,z\n910000000000000001,1\n910000000000000002,2\n,3\n")
        .unwrap();
    let parties: Vec<PartySetup> = ["bank", "tax", "platform", "shop"]
        .iter()
        .map(|p| PartySetup::new(*p, d.join(format!("{p}.csv"))))
        .collect();
    let fed = launch(d, &parties, "");
    let runtime = rt();
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        for (job, want) in [
            (
                align_job(&["bank", "platform"], "ecdh", "id"),
                "platform: id column `id` holds the same id at data rows 2 and 5 of its table \
                 (platform.csv)",
            ),
            (
                align_job(&["bank", "shop"], "server-aided", "id"),
                "shop: id column `id` is empty at data row 3 of its table (shop.csv)",
            ),
            (align_job(&["bank", "tax"], "ecdh", "code"), "has no id column `code`"),
            // The label holder's table lacks the job's label column.
            (
                align_job(&["bank", "tax"], "server-aided", "id")
                    .replace("label = \"y\"", "label = \"default_flag\""),
                "bank: its table (bank.csv) has no label column `default_flag`",
            ),
        ] {
            let end = common::run_job(&mut client, &job).await;
            assert_eq!(end.state, "failed", "{job}");
            assert!(end.error.contains(want), "{}", end.error);
            assert!(!end.error.contains("910000000000000002"), "an id in the error: {}", end.error);
            assert!(end.error.contains(".csv)"), "no file named: {}", end.error);
            assert_eq!(common::rounds(&mut client, &end.id).await.len(), 0, "a step ran");
        }
        let bank_ids = ids_of(&d.join("bank.csv"));
        let tax_ids = ids_of(&d.join("tax.csv"));
        let common_ids: BTreeSet<String> =
            bank_ids.iter().filter(|i| tax_ids.contains(i)).cloned().collect();
        assert_eq!(common_ids.len(), 700);
        let mut orders = Vec::new();
        for mode in ["ecdh", "server-aided"] {
            let end = common::run_job(&mut client, &align_job(&["bank", "tax"], mode, "id")).await;
            assert_eq!(end.state, "succeeded", "{mode}: {}\n{}", end.error, fed.log("coordinator"));
            assert_eq!(common::metric(&end, "intersection"), 700.0);
            assert_eq!(common::metric(&end, "rows_bank"), 1_000.0);
            assert_eq!(common::metric(&end, "rows_tax"), 6_000.0);
            let bank: Vec<String> = kept_rows(&fed, "bank", &end.id)
                .iter()
                .map(|&r| bank_ids[r as usize].clone())
                .collect();
            let tax: Vec<String> = kept_rows(&fed, "tax", &end.id)
                .iter()
                .map(|&r| tax_ids[r as usize].clone())
                .collect();
            assert_eq!(bank, tax, "{mode}: the parties' rows name other ids or another order");
            assert_eq!(bank.iter().cloned().collect::<BTreeSet<_>>(), common_ids, "{mode}");
            // The agreed order is neither party's row order.
            let sorted_by_bank_row = {
                let mut rows = kept_rows(&fed, "bank", &end.id);
                rows.sort_unstable();
                rows
            };
            assert_ne!(kept_rows(&fed, "bank", &end.id), sorted_by_bank_row, "{mode}");
            orders.push(bank);
        }
        // Fresh keys in every job: the agreed order differs from job to job.
        assert_ne!(orders[0], orders[1]);
    });
    for p in ["bank", "tax"] {
        let log = fed.log(p);
        assert!(!log.contains("910000000000000"), "{p} logged an id:\n{log}");
    }
}

/// Vertical `logistic` and `scorecard` jobs (PSI, then WOE/IV for the scorecard, then the
/// secret-shared regression with the coordinator as dealer) between a bank, a tax bureau and
/// a platform as separate processes: each party keeps its own part (the bank's alone has the
/// intercept or base points), the coordinator registers only a reference, and the regression
/// ranks the held-out rows as well as the generator's signal allows. A tax bureau killed in
/// the middle of the regression and restarted resumes the job (the stage runs again under a
/// new step, with fresh masks) and the job succeeds.
#[test]
fn logistic_and_scorecard_jobs_over_processes_keep_each_part_at_its_party() {
    use fedcredit_federation::vertical::model::{PartyModel, VerticalModelRef};
    use fedcredit_ops::bench_vlr::{VerticalTables, vertical_job_toml};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tables = VerticalTables::new(3_000, &[4, 6, 5], 3);
    let parties: Vec<PartySetup> = tables
        .names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let path = d.join(format!("{n}.csv"));
            tables.write(k, &path).unwrap();
            PartySetup::new(n.clone(), path)
        })
        .collect();
    let mut fed = launch(d, &parties, "");
    let runtime = rt();
    let part_of = |fed: &LocalFederation, party: &str, job: &str| -> PartyModel {
        let path =
            fed.dir().join(format!("{party}-state")).join("models").join(format!("{job}.json"));
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{party} kept no part at {}", path.display());
    };
    for kind in ["logistic", "scorecard"] {
        let (end, reference) = runtime.block_on(async {
            let mut client = operator(&fed).await;
            let end =
                common::run_job(&mut client, &vertical_job_toml(&tables.names, kind, 8, 256)).await;
            assert_eq!(end.state, "succeeded", "{kind}: {}\n{}", end.error, fed.log("coordinator"));
            let art = client.model(&end.model_id).await.expect("model").artifact_json;
            (end, art)
        });
        assert_eq!(common::metric(&end, "intersection"), 3_000.0);
        let auc = common::metric(&end, "valid_auc");
        assert!(auc > 0.75, "{kind}: validation AUC {auc}");
        let r = VerticalModelRef::from_json(&reference).unwrap();
        assert_eq!(r.kind, kind);
        assert!(!reference.contains("coefficients") && !reference.contains("points"));
        for (k, name) in tables.names.iter().enumerate() {
            let part = part_of(&fed, name, &end.id);
            let cols = tables.column_names(k);
            let p = r.parties.iter().find(|p| &p.party == name).unwrap();
            assert_eq!(p.features, cols);
            assert_eq!(part.lr().unwrap().coefficients.len() as u32, p.columns);
            assert_eq!(part.lr().unwrap().intercept.is_some(), k == 0, "{name}");
            match (&part, kind) {
                (PartyModel::Logistic { .. }, "logistic") => {}
                (PartyModel::Scorecard { card }, "scorecard") => {
                    assert_eq!(card.base_points.is_some(), k == 0);
                }
                _ => panic!("{name} kept a {kind} job's part of another kind"),
            }
        }
        // `models show` names where the parts are.
        let (ok, out, err) = common::cli(&fed, &["models", "show", &end.model_id]);
        assert!(ok, "{err}");
        assert!(out.contains("part at tax") && out.contains("platform_x4"), "{out}");
    }
    // The registry: a second run of the same job is version 2 of its name; version 1 keeps
    // serving until version 2 is promoted; a rollback serves version 1 again.
    let name = "bench-vertical-logistic-8";
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end =
            common::run_job(&mut client, &vertical_job_toml(&tables.names, "logistic", 8, 256))
                .await;
        assert_eq!(end.state, "succeeded", "{}", end.error);
    });
    let (ok, out, err) = common::cli(&fed, &["models", "versions", name]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(name)).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains('*') && !lines[1].contains('*'), "version 1 serves:\n{out}");
    let (ok, out, err) = common::cli(&fed, &["models", "promote", name, "2"]);
    assert!(ok && out.contains("now serves version 2 (was 1)"), "{out}{err}");
    let (ok, out, err) = common::cli(&fed, &["models", "rollback", name]);
    assert!(ok && out.contains("now serves version 1 again (was 2)"), "{out}{err}");
    let (ok, _, err) = common::cli(&fed, &["models", "promote", name, "7"]);
    assert!(!ok && err.contains("has no version 7"), "{err}");
    // Kill the tax bureau in the middle of the regression; it restarts and the job succeeds.
    let id = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let id = client
            .submit(&vertical_job_toml(&tables.names, "logistic", 400, 256))
            .await
            .expect("submit")
            .id;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let info = client.job(&id).await.expect("job");
            assert!(!fedcredit_ops::progress::is_final(&info.state), "ended early: {info:?}");
            if info.status.contains("epoch") && !info.status.contains("epoch 0/") {
                break;
            }
            assert!(tokio::time::Instant::now() < bound, "no progress: {info:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        id
    });
    fed.kill_participant("tax");
    std::thread::sleep(Duration::from_millis(300));
    fed.start_participant(&parties[1]).expect("restart tax");
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let steps = common::rounds(&mut client, &id).await;
        assert!(steps.iter().any(|s| s.attempts > 1), "the lr stage ran again: {steps:?}");
        // Within the accuracy of the run without the kill.
        let auc = common::metric(&end, "valid_auc");
        assert!(auc > 0.75, "validation AUC {auc} after the restart");
    });
    let log = fed.log("tax");
    assert!(log.contains("restoring the job from its checkpoint"), "{log}");
    for p in ["bank", "tax", "platform"] {
        let log = fed.log(p);
        assert!(!log.contains("910000000000000"), "{p} logged an id:\n{log}");
    }
}

/// SecureBoost over processes: the tax bureau's daemon is SIGKILLed after the first trees and
/// restarted; it resumes from its last committed tree and every party ends with the part of an
/// uninterrupted run (no validation rows, so two jobs' different PSI orders cannot change the
/// bins or the trees).
#[test]
fn a_feature_holder_killed_mid_secureboost_ends_with_the_uninterrupted_model() {
    use fedcredit_federation::vertical::model::PartyModel;
    use fedcredit_ops::bench_vlr::VerticalTables;
    let dir = tempfile::tempdir().unwrap();
    let tables = VerticalTables::new(3_000, &[3, 4, 3], 9);
    let parties = tables.write_all(dir.path(), &mut |_: &str| {}).unwrap();
    let mut fed = launch(dir.path(), &parties, "");
    let quoted: Vec<String> = tables.names.iter().map(|n| format!("\"{n}\"")).collect();
    let toml = format!(
        "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\nvalidation_fraction = 0.0\n\
         [model]\nkind = \"gbdt\"\nn_trees = 25\nmax_depth = 3\nmax_bins = 16\n[vertical]\n\
         label_holder = \"{}\"\n",
        quoted.join(", "),
        tables.names[0]
    );
    let runtime = rt();
    let whole = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::run_job(&mut client, &toml).await;
        assert_eq!(end.state, "succeeded", "{}", end.error);
        end.id
    });
    let id = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let id = client.submit(&toml).await.expect("submit").id;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let info = client.job(&id).await.expect("job");
            assert!(!fedcredit_ops::progress::is_final(&info.state), "ended early: {info:?}");
            if info.status.contains("tree ")
                && !info.status.contains("tree 0/")
                && !info.status.contains("tree 1/")
            {
                break;
            }
            assert!(tokio::time::Instant::now() < bound, "no progress: {info:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        id
    });
    let tax = tables.names[1].clone();
    fed.kill_participant(&tax);
    std::thread::sleep(Duration::from_millis(300));
    fed.start_participant(&parties[1]).expect("restart the tax bureau");
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
    });
    assert!(fed.log(&tax).contains("restoring the job from its checkpoint"));
    let part = |n: &str, job: &str| -> PartyModel {
        // Parts are written just after the job ends.
        let path = fed.dir().join(format!("{n}-state/models/{job}.json"));
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{n} kept no part at {}", path.display())
    };
    for n in &tables.names {
        assert!(part(n, &id) == part(n, &whole), "{n}'s part differs from the uninterrupted run's");
    }
}
