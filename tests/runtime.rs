//! Runtime v2 over separate processes with mutual TLS: a participant SIGKILLed mid-job and
//! restarted resumes from its checkpoint and the job ends with the model of an uninterrupted
//! run; a large party-to-party payload is relayed through the coordinator with bounded memory
//! in every process; a relayed payload the coordinator alters or re-attributes is refused by
//! the receiver.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{launch, operator, rt};
use fedcredit_ops::bench::peak_rss_mib;
use fedcredit_ops::launch::PartySetup;

/// A small bank table: `rows` enterprises with four numeric columns (one with missing
/// values), a text sector and a default label that depends on them; seeded xorshift.
fn write_bank(path: &Path, rows: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut text = String::from("id,y,income,age,late,debt,sector\n");
    for i in 0..rows {
        let income = next() * 5.0 - 2.0;
        let age = 20.0 + (next() * 50.0).floor();
        let late = (next() * 4.0).floor();
        let debt = next() * 3.0;
        let sector = ["retail", "food", "steel", "textile"][(next() * 4.0) as usize % 4];
        let z = -0.8 * income
            + 0.03 * (45.0 - age)
            + 0.7 * late
            + 0.4 * debt
            + if sector == "steel" { 0.8 } else { 0.0 }
            - 1.0;
        let p = 1.0 / (1.0 + (-z).exp());
        let y = u8::from(next() < p);
        let income = if next() < 0.1 { String::new() } else { format!("{income:.4}") };
        text.push_str(&format!("{seed}-{i},{y},{income},{age},{late},{debt:.4},{sector}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn banks(dir: &Path) -> Vec<PartySetup> {
    (1..=3)
        .map(|i| {
            let path = dir.join(format!("bank{i}.csv"));
            write_bank(&path, 1500 + 300 * i, i as u64);
            PartySetup::new(format!("bank{i}"), path)
        })
        .collect()
}

const GBDT_JOB: &str = "name = \"gbdt\"\nparties = [\"bank1\", \"bank2\", \"bank3\"]\n\
    phase_timeout_secs = 60\ngrace_secs = 60\n\
    [data]\nid = \"id\"\nlabel = \"y\"\nvalidation_fraction = 0.2\nseed = 3\n\
    [model]\nkind = \"gbdt\"\nn_trees = 6\nmax_depth = 3\nmax_bins = 32\nseed = 3\n";

/// The model JSON without the fields that vary between runs of the same training.
fn model_of(artifact: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(artifact).expect("artifact JSON");
    v["model"].clone()
}

#[test]
fn a_participant_killed_mid_job_resumes_from_its_checkpoint_with_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let parties = banks(dir.path());
    let mut fed = launch(dir.path(), &parties, "");
    let runtime = rt();
    let reference = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::run_job(&mut client, GBDT_JOB).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        client.model(&end.model_id).await.expect("model").artifact_json
    });
    let id = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let id = client.submit(GBDT_JOB).await.expect("submit").id;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let info = client.job(&id).await.expect("job");
            assert!(!fedcredit_ops::progress::is_final(&info.state), "ended early: {info:?}");
            if info.rounds_done >= 5 {
                break;
            }
            assert!(tokio::time::Instant::now() < bound, "no progress: {info:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        id
    });
    fed.kill_participant("bank2");
    let state = dir.path().join("bank2-state");
    assert!(state.read_dir().map(|d| d.count() > 0).unwrap_or(false), "bank2 kept a checkpoint");
    std::thread::sleep(Duration::from_millis(300));
    fed.start_participant(&parties[1]).expect("restart bank2");
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let rounds = common::rounds(&mut client, &id).await;
        for r in &rounds {
            assert_eq!(r.contributors, ["bank1", "bank2", "bank3"], "round {}", r.round);
        }
        let model = client.model(&end.model_id).await.expect("model").artifact_json;
        assert_eq!(model_of(&model), model_of(&reference), "same model as without the kill");
    });
    let log = fed.log("bank2");
    assert!(log.contains("restoring the job from its checkpoint"), "{log}");
}

/// `RELAY_BYTES` (default 1 GiB) of seeded bytes from bank1 to bank2 through the
/// coordinator, sealed end to end. Every process stays far below the payload's size.
#[test]
fn a_large_payload_is_relayed_with_bounded_memory() {
    let bytes: u64 =
        std::env::var("RELAY_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let dir = tempfile::tempdir().unwrap();
    let parties = common::banks(dir.path(), 2);
    let fed = launch(dir.path(), &parties, "");
    let runtime = rt();
    let job = format!(
        "name = \"relay\"\nparties = [\"bank1\", \"bank2\"]\nphase_timeout_secs = 600\n\
         [data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"relay_bench\"\nbytes = {bytes}\n"
    );
    let started = std::time::Instant::now();
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::run_job(&mut client, &job).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("bank2"));
        assert_eq!(common::metric(&end, "bytes"), bytes as f64);
    });
    let secs = started.elapsed().as_secs_f64();
    let mib = bytes as f64 / (1 << 20) as f64;
    eprintln!("relayed {mib:.0} MiB in {secs:.1} s ({:.0} MiB/s)", mib / secs);
    for name in ["bank1", "coordinator", "bank2"] {
        let Some(peak) = fed.pid(name).and_then(peak_rss_mib) else {
            eprintln!("no /proc: peak memory of {name} not measured");
            continue;
        };
        eprintln!("peak RSS of {name}: {peak:.0} MiB");
        assert!(peak < 400.0, "{name} held {peak:.0} MiB while relaying {mib:.0} MiB");
    }
}

fn relay_job() -> &'static str {
    "name = \"relay\"\nparties = [\"bank1\", \"bank2\", \"bank3\"]\nphase_timeout_secs = 5\n\
     grace_secs = 5\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"relay_bench\"\n\
     bytes = 2000000\n"
}

/// A coordinator that flips a bit of every relayed payload, or names another party as its
/// sender: the receiver refuses every message (authentication fails), so the payload never
/// counts as delivered and the job fails.
#[test]
fn relayed_payloads_altered_or_reattributed_by_the_coordinator_are_refused() {
    for tamper in ["flip-bit", "resender"] {
        let dir = tempfile::tempdir().unwrap();
        let parties = common::banks(dir.path(), 3);
        let fed = launch(dir.path(), &parties, &format!("[fault]\nrelay = \"{tamper}\"\n"));
        rt().block_on(async {
            let mut client = operator(&fed).await;
            let end = common::run_job(&mut client, relay_job()).await;
            eprintln!("{tamper}: job {}: {}", end.state, end.error);
            assert_eq!(end.state, "failed");
            assert!(end.error.contains("did not arrive"), "{}", end.error);
        });
        let log = fed.log("bank2");
        assert!(log.contains("failed authentication"), "{tamper}: bank2 log:\n{log}");
    }
}
