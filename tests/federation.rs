//! The federation runtime end to end, as separate processes on loopback with mutual TLS: a
//! coordinator and one participant daemon per party (`fedcredit_ops::launch`), running the
//! secure-aggregation benchmark job (Bonawitz et al., CCS 2017) whose vectors are public and
//! seeded, so every sum is checked exactly.
//!
//! Shows: the secure sum equals the plain sum within the fixed-point bound; a party that dies
//! after its masked upload stays in the sum (its self mask rebuilt from its neighbours'
//! shares), one that dies before it is recovered in the same attempt after the survivors'
//! consistency check (its neighbours reveal their round seeds with it); too few survivors
//! fail the job cleanly and `jobs resume` finishes it; a coordinator killed with SIGKILL resumes from its last completed round; and the
//! coordinator's own transcripts hold only masked vectors.

mod common;

use std::time::Duration;

use common::{BenchJob, banks, launch, metric, operator, rounds, rt, run_job, sum_bound};
use fedcredit_federation::PartyId;
use fedcredit_federation::horizontal::bench::bench_vector;
use fedcredit_ops::launch::PartySetup;

/// Three parties, four rounds: the secure sum decodes to the plain sum within 3·2^-25.
#[test]
fn secure_sum_over_grpc_equals_plain_sum() {
    let dir = tempfile::tempdir().unwrap();
    let fed = launch(dir.path(), &banks(dir.path(), 3), "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        let job = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 4);
        let end = run_job(&mut client, &job.toml()).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let err = metric(&end, "max_abs_error");
        eprintln!("secure sum: max_abs_error {err:e} (bound {:e})", sum_bound(3));
        assert!(err <= sum_bound(3), "max_abs_error {err}");
        assert_eq!(metric(&end, "rounds"), 4.0);
        assert_eq!(metric(&end, "min_contributors"), 3.0);
        let rs = rounds(&mut client, &end.id).await;
        assert_eq!(rs.len(), 4);
        for (i, r) in rs.iter().enumerate() {
            assert_eq!(r.round, i as u64);
            assert_eq!(r.attempts, 1);
            assert_eq!(r.contributors, ["bank1", "bank2", "bank3"]);
            assert!(r.dropped.is_empty());
        }
    });
}

/// bank2 exits right before sending its masked vector in round 1: the round is finished in
/// the same attempt (after the consistency check, the survivors reveal their round seeds with
/// it, so its pairwise masks come out), and the sum is exactly theirs.
#[test]
fn dropout_before_the_upload_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut parties = banks(dir.path(), 3);
    parties[1].fault = Some(("masked-input".into(), 1));
    let mut fed = launch(dir.path(), &parties, "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 4);
        job.min_parties = Some(2);
        let end = run_job(&mut client, &job.toml()).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let err = metric(&end, "max_abs_error");
        eprintln!("dropout after key sharing: max_abs_error {err:e}");
        assert!(err <= sum_bound(3), "max_abs_error {err}");
        assert_eq!(metric(&end, "min_contributors"), 2.0);
        let rs = rounds(&mut client, &end.id).await;
        assert_eq!(rs.len(), 4);
        assert_eq!(rs[0].contributors, ["bank1", "bank2", "bank3"]);
        assert_eq!(rs[1].attempts, 1, "a late dropout does not restart the round");
        assert_eq!(rs[1].dropped, ["bank2"]);
        assert_eq!(rs[1].contributors, ["bank1", "bank3"]);
        for r in &rs[2..] {
            assert_eq!(r.contributors, ["bank1", "bank3"]);
            assert!(r.dropped.is_empty(), "round {}: {:?}", r.round, r.dropped);
        }
    });
    let status = fed.wait_participant("bank2", Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(86), "bank2 exited by fault injection");
}

/// bank3 uploads its masked vector in round 1 and exits before answering the unmask
/// request: its vector stays in the sum (its self mask is rebuilt from the others' shares);
/// later rounds run without it.
#[test]
fn dropout_after_the_upload_is_still_in_the_sum() {
    let dir = tempfile::tempdir().unwrap();
    let mut parties = banks(dir.path(), 3);
    parties[2].fault = Some(("unmask".into(), 1));
    let fed = launch(dir.path(), &parties, "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 4);
        job.min_parties = Some(2);
        let end = run_job(&mut client, &job.toml()).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let err = metric(&end, "max_abs_error");
        eprintln!("dropout after the upload: max_abs_error {err:e}");
        assert!(err <= sum_bound(3), "max_abs_error {err}");
        let rs = rounds(&mut client, &end.id).await;
        assert_eq!(rs.len(), 4);
        assert_eq!(rs[1].attempts, 1);
        assert_eq!(rs[1].contributors, ["bank1", "bank2", "bank3"], "bank3's upload is in");
        for r in &rs[2..] {
            assert_eq!(r.contributors, ["bank1", "bank2"]);
        }
    });
}

/// Threshold 3 of 3: one dropout in round 1 leaves too few shares to unmask. The job fails
/// naming round 1 with round 0 kept; after the party comes back, `resume` finishes the job
/// from round 1 and round 0's record is untouched.
#[test]
fn too_few_survivors_fails_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut parties = banks(dir.path(), 3);
    parties[0].fault = Some(("masked-input".into(), 1));
    let mut fed = launch(dir.path(), &parties, "");
    let runtime = rt();
    let (id, round0) = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 4);
        job.threshold = Some(3);
        let end = run_job(&mut client, &job.toml()).await;
        eprintln!("too few survivors: state {}, error: {}", end.state, end.error);
        assert_eq!(end.state, "failed");
        assert!(end.error.contains("round 1"), "{}", end.error);
        assert_eq!(end.rounds_done, 1);
        let rs = rounds(&mut client, &end.id).await;
        assert_eq!(rs.len(), 1, "round 0 stays recorded");
        assert_eq!(rs[0].round, 0);
        (end.id, rs[0].clone())
    });
    let status = fed.wait_participant("bank1", Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(86));
    fed.start_participant(&PartySetup::new("bank1", dir.path().join("no-data.csv"))).unwrap();
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let resumed = client.resume(&id).await.expect("resume");
        eprintln!("resumed: state {}", resumed.state);
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        assert!(metric(&end, "max_abs_error") <= sum_bound(3));
        assert_eq!(metric(&end, "min_contributors"), 3.0);
        let rs = rounds(&mut client, &id).await;
        assert_eq!(rs.iter().map(|r| r.round).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(rs[0], round0, "round 0 unchanged by the resume");
        for r in &rs {
            assert_eq!(r.contributors, ["bank1", "bank2", "bank3"]);
        }
    });
}

/// SIGKILL the coordinator in the middle of a long job: it restarts on the same port, the
/// daemons reconnect, and the job resumes from its last completed round. Every round record
/// written before the kill is identical afterwards; each round is recorded exactly once.
#[test]
fn coordinator_sigkill_resumes_from_last_completed_round() {
    const ROUNDS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let mut fed = launch(dir.path(), &banks(dir.path(), 3), "");
    let runtime = rt();
    let (id, before) = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let job = BenchJob::new(&["bank1", "bank2", "bank3"], 20_000, ROUNDS);
        let id = client.submit(&job.toml()).await.expect("submit").id;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let info = client.job(&id).await.expect("job");
            assert_ne!(info.state, "failed", "{}", info.error);
            if info.rounds_done >= 3 {
                break;
            }
            assert!(tokio::time::Instant::now() < bound, "no progress: {info:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = client.rounds(&id).await.expect("rounds");
        (id, before)
    });
    fed.kill_coordinator();
    eprintln!("killed the coordinator after {} recorded rounds", before.len());
    assert!((before.len() as u64) < ROUNDS, "the job finished before the kill; make it longer");
    fed.start_coordinator().expect("restart the coordinator");
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        assert!(metric(&end, "max_abs_error") <= sum_bound(3));
        assert_eq!(metric(&end, "rounds"), ROUNDS as f64);
        let after = client.rounds(&id).await.expect("rounds");
        eprintln!(
            "after the restart: {} rounds, attempts {:?}",
            after.len(),
            after.iter().map(|r| r.attempts).collect::<Vec<_>>()
        );
        assert_eq!(
            after.iter().map(|r| r.round).collect::<Vec<_>>(),
            (0..ROUNDS).collect::<Vec<_>>()
        );
        for b in &before {
            assert_eq!(&after[b.round as usize], b, "round {} changed", b.round);
        }
    });
    let log = fed.log("coordinator");
    assert!(log.contains("resuming"), "the restarted coordinator resumed the job:\n{log}");
}

/// Centered value of a ring element of `Z_{2^bits}`: in (-2^(bits-1), 2^(bits-1)].
fn centered(v: u64, bits: u32) -> f64 {
    let half = 1u64 << (bits - 1);
    if v <= half { v as f64 } else { v as f64 - (1u64 << bits) as f64 }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// With `record_transcripts = true`, every masked vector the coordinator received is
/// uncorrelated with the party's true vector and never equals its encoding; the masked
/// vectors of a round do not even add up to the plain sum (self masks stay until the unmask
/// phase), while the job's decoded sums are exact.
#[test]
fn coordinator_sees_only_masked_vectors() {
    const DIM: usize = 2000;
    const ROUNDS: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut parties = banks(dir.path(), 3);
    parties[2].fault = Some(("masked-input".into(), 1));
    let fed = launch(dir.path(), &parties, "record_transcripts = true\n");
    let (end, rs) = rt().block_on(async {
        let mut client = operator(&fed).await;
        let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], DIM, ROUNDS);
        job.min_parties = Some(2);
        let end = run_job(&mut client, &job.toml()).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let rs = rounds(&mut client, &end.id).await;
        (end, rs)
    });
    let err = metric(&end, "max_abs_error");
    assert!(err <= sum_bound(3), "decoded sums are exact: {err}");
    assert_eq!(rs[1].dropped, ["bank3"]);

    let store = fedcredit_coordinator::store::Store::open(&dir.path().join("state")).unwrap();
    let transcripts = store.transcripts(&end.id).unwrap();
    let masked: Vec<_> = transcripts.iter().filter(|t| t.kind == "masked_input").collect();
    let contributions: usize = rs.iter().map(|r| r.contributors.len()).sum();
    eprintln!(
        "transcripts: {} messages, {} masked inputs, {contributions} contributions",
        transcripts.len(),
        masked.len()
    );
    assert_eq!(masked.len(), contributions);
    let fixed = fedcredit_crypto::FixedPoint::for_sum(3, 1.0, common::FRAC_BITS).unwrap();
    let scale = 2f64.powi(common::FRAC_BITS as i32);
    let mut max_r = 0f64;
    let mut sums: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for t in &masked {
        let round = rs.iter().find(|r| r.round == u64::from(t.round)).expect("round recorded");
        assert!(
            round.contributors.contains(&t.party),
            "{} contributed to round {}",
            t.party,
            t.round
        );
        assert_eq!(t.ring_bits, fixed.ring_bits);
        let elems = fedcredit_crypto::secagg::unpack_elements(&t.payload, t.ring_bits).unwrap();
        assert_eq!(elems.len(), DIM);
        let truth = bench_vector(7, &PartyId(t.party.clone()), u64::from(t.round), DIM);
        let encoded = fixed.encode_vec(&truth);
        assert_ne!(elems, encoded, "{} sent its vector unmasked in round {}", t.party, t.round);
        let same = elems.iter().zip(&encoded).filter(|(a, b)| a == b).count();
        let seen: Vec<f64> = elems.iter().map(|&v| centered(v, t.ring_bits)).collect();
        let true_scaled: Vec<f64> = truth.iter().map(|x| x * scale).collect();
        let r = pearson(&seen, &true_scaled);
        eprintln!("  round {} {}: pearson r = {r:+.4}, equal elements {same}", t.round, t.party);
        assert!(r.abs() < 0.1, "masked vector correlates with the truth: r = {r}");
        max_r = max_r.max(r.abs());
        let sum = sums.entry(t.round).or_insert_with(|| vec![0; DIM]);
        for (s, v) in sum.iter_mut().zip(&elems) {
            *s = fixed.add(*s, *v);
        }
    }
    eprintln!("largest |r| = {max_r:.4}");
    for r in &rs {
        let mut plain = vec![0u64; DIM];
        for p in &r.contributors {
            let enc = fixed.encode_vec(&bench_vector(7, &PartyId(p.clone()), r.round, DIM));
            for (s, v) in plain.iter_mut().zip(enc) {
                *s = fixed.add(*s, v);
            }
        }
        let masked_sum = &sums[&(r.round as u32)];
        let same = masked_sum.iter().zip(&plain).filter(|(a, b)| a == b).count();
        assert!(same < DIM / 100, "round {}: masked sum reveals the plain sum ({same})", r.round);
    }
}

/// Real data (skipped without `../shared/datasets`): a small federated GBDT on the three
/// horizontal parts of default_credit survives a SIGKILL of the coordinator mid-training. The
/// trainer resumes from its checkpoint (state and the log of finished trees), the rounds
/// recorded before the kill are unchanged, and the model is registered.
#[test]
fn gbdt_job_survives_a_coordinator_sigkill() {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/default_credit");
    if !data.join("default_credit_homo_guest.csv").exists() {
        eprintln!("skipping: {} is absent", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = ["guest", "host_1", "host_2"];
    let parties: Vec<PartySetup> = (1..=3)
        .map(|i| {
            PartySetup::new(
                format!("bank{i}"),
                data.join(format!("default_credit_homo_{}.csv", files[i - 1])),
            )
        })
        .collect();
    let mut fed = launch(dir.path(), &parties, "");
    let runtime = rt();
    let spec = "name = \"gbdt\"\nparties = [\"bank1\", \"bank2\", \"bank3\"]\nphase_timeout_secs = 60\n\
                [data]\nid = \"id\"\nlabel = \"y\"\nvalidation_fraction = 0.2\nseed = 3\n\
                [model]\nkind = \"gbdt\"\nn_trees = 8\nmax_depth = 3\nseed = 3\n";
    let (id, before) = runtime.block_on(async {
        let mut client = operator(&fed).await;
        let id = client.submit(spec).await.expect("submit").id;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let info = client.job(&id).await.expect("job");
            assert!(!progress_final(&info.state), "ended before the kill: {info:?}");
            // Two sketch rounds, then three steps per tree: the first tree is in the log.
            if info.rounds_done >= 6 {
                break;
            }
            assert!(tokio::time::Instant::now() < bound, "no progress: {info:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (id.clone(), client.rounds(&id).await.expect("rounds"))
    });
    fed.kill_coordinator();
    eprintln!("gbdt: killed the coordinator after {} recorded rounds", before.len());
    fed.start_coordinator().expect("restart the coordinator");
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let end = common::follow(&mut client, &id).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let after = client.rounds(&id).await.expect("rounds");
        eprintln!("gbdt: {} rounds in all; metrics {}", after.len(), end.metrics_json);
        assert!(after.len() > before.len());
        assert_eq!(
            after.iter().map(|r| r.round).collect::<Vec<_>>(),
            (0..after.len() as u64).collect::<Vec<_>>()
        );
        for b in &before {
            assert_eq!(&after[b.round as usize], b, "round {} changed", b.round);
        }
        let model = client.model(&end.model_id).await.expect("the model is registered");
        assert!(model.artifact_json.contains("tree"), "{}", &model.artifact_json[..200]);
    });
    let log = fed.log("coordinator");
    assert!(log.contains("resuming from checkpoint"), "resumed from the checkpoint:\n{log}");
    let logged = log
        .split("logged=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(logged.is_some_and(|n| n >= 1), "finished trees came back from the log:\n{log}");
}

fn progress_final(state: &str) -> bool {
    fedcredit_ops::progress::is_final(state)
}
