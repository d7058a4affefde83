use super::*;

fn new_job(id: &str, created_ms: i64) -> NewJob {
    NewJob {
        id: id.into(),
        name: format!("{id}-name"),
        spec_json: format!("{{\"job\":\"{id}\"}}"),
        created_ms,
    }
}

fn round(job: &str, r: u32) -> RoundRecord {
    RoundRecord {
        job_id: job.into(),
        round: r,
        attempts: 1 + r % 2,
        contributors_json: "[\"bank\",\"tax\"]".into(),
        dropped_json: "[]".into(),
        started_ms: 1000 + i64::from(r) * 10,
        finished_ms: 1005 + i64::from(r) * 10,
        what: "gradient".into(),
    }
}

fn model(id: &str, job: &str, created_ms: i64) -> ModelRecord {
    ModelRecord {
        id: id.into(),
        job_id: job.into(),
        created_ms,
        kind: "logistic".into(),
        artifact_json: "{\"weights\":[0.5]}".into(),
        metrics_json: "{\"auc\":0.8}".into(),
    }
}

fn entry(job: Option<&str>, party: &str, direction: Direction, bytes: u64) -> AuditEntry {
    AuditEntry {
        seq: None,
        at_ms: 77,
        job_id: job.map(str::to_owned),
        round: job.map(|_| 3),
        party: party.into(),
        direction,
        kind: "masked_input".into(),
        bytes,
        outcome: "accepted".into(),
    }
}

#[test]
fn jobs_round_trip_and_states() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    assert!(store.path().ends_with(DB_FILE));
    store.insert_job(&new_job("j1", 10)).unwrap();
    let job = store.job("j1").unwrap().unwrap();
    assert_eq!(
        job,
        JobRecord {
            id: "j1".into(),
            name: "j1-name".into(),
            spec_json: "{\"job\":\"j1\"}".into(),
            state: JobState::Queued,
            created_ms: 10,
            updated_ms: 10,
            error: None,
            rounds_done: 0,
            checkpoint: None,
            progress_json: None,
            metrics_json: None,
            model_id: None,
        }
    );
    assert_eq!(store.job("nope").unwrap(), None);

    store.set_job_state("j1", JobState::Failed, Some("party bank dropped"), 20).unwrap();
    let job = store.job("j1").unwrap().unwrap();
    assert_eq!(
        (job.state, job.error.as_deref(), job.updated_ms),
        (JobState::Failed, Some("party bank dropped"), 20)
    );
    store.set_job_state("j1", JobState::Running, None, 30).unwrap();
    assert_eq!(store.job("j1").unwrap().unwrap().error, None);

    let err = store.set_job_state("ghost", JobState::Running, None, 1).unwrap_err();
    assert!(matches!(&err, StoreError::UnknownJob { job_id, .. } if job_id == "ghost"), "{err}");
    assert!(err.to_string().contains("ghost"));

    let err = store.insert_job(&new_job("j1", 11)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("insert job") && msg.contains("jobs") && msg.contains("j1"), "{msg}");

    for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
        assert_eq!(s.parse::<JobState>().unwrap().as_str(), s);
    }
    assert!("paused".parse::<JobState>().is_err());
}

#[test]
fn job_listings_are_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Inserted out of time order, with a tie on created_ms broken by insertion order.
    for (id, t) in [("b", 20), ("a", 10), ("d", 40), ("c", 20), ("e", 50)] {
        store.insert_job(&new_job(id, t)).unwrap();
    }
    let ids = |jobs: Vec<JobRecord>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(store.jobs().unwrap()), vec!["e", "d", "c", "b", "a"]);
    store.set_job_state("d", JobState::Running, None, 60).unwrap();
    store.set_job_state("a", JobState::Succeeded, None, 60).unwrap();
    store.set_job_state("e", JobState::Cancelled, Some("by operator"), 60).unwrap();
    assert_eq!(ids(store.unfinished_jobs().unwrap()), vec!["b", "c", "d"]);
}

#[test]
fn complete_round_stores_round_and_checkpoint_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert_job(&new_job("j", 1)).unwrap();
    store
        .complete_round(&round("j", 0), b"ckpt-0", 0, &[b"tree-1".to_vec()], "{\"loss\":0.6}")
        .unwrap();
    store
        .complete_round(&round("j", 1), b"ckpt-1", 1, &[b"tree-2".to_vec()], "{\"loss\":0.5}")
        .unwrap();
    assert_eq!(store.checkpoint_log("j").unwrap(), vec![b"tree-1".to_vec(), b"tree-2".to_vec()]);
    let job = store.job("j").unwrap().unwrap();
    assert_eq!(job.rounds_done, 2);
    assert_eq!(job.checkpoint.as_deref(), Some(&b"ckpt-1"[..]));
    assert_eq!(job.progress_json.as_deref(), Some("{\"loss\":0.5}"));
    assert_eq!(job.updated_ms, round("j", 1).finished_ms);
    assert_eq!(store.rounds("j").unwrap(), vec![round("j", 0), round("j", 1)]);

    // A duplicate round fails and leaves the job exactly as it was.
    let err = store
        .complete_round(&round("j", 1), b"ckpt-bad", 2, &[b"tree-3".to_vec()], "{\"loss\":9}")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("complete round") && msg.contains("rounds") && msg.contains("\"j\""),
        "{msg}"
    );
    assert_eq!(store.job("j").unwrap().unwrap(), job);
    assert_eq!(store.rounds("j").unwrap().len(), 2);
    assert_eq!(store.checkpoint_log("j").unwrap().len(), 2);
    // A log entry written twice fails the same way.
    let err = store.complete_round(&round("j", 2), b"ckpt-2", 1, &[b"again".to_vec()], "{}");
    assert!(err.unwrap_err().to_string().contains("checkpoint_log"));
    assert_eq!(store.job("j").unwrap().unwrap(), job);

    // An unknown job is an error naming it, and nothing is written.
    let err = store.complete_round(&round("ghost", 0), b"x", 0, &[], "{}").unwrap_err();
    assert!(matches!(&err, StoreError::UnknownJob { job_id, .. } if job_id == "ghost"), "{err}");
    assert!(store.rounds("ghost").unwrap().is_empty());
}

#[test]
fn finish_job_inserts_model_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.insert_job(&new_job("j1", 1)).unwrap();
    store.insert_job(&new_job("j2", 2)).unwrap();
    store.insert_job(&new_job("j3", 3)).unwrap();
    store.set_job_state("j1", JobState::Running, Some("transient"), 4).unwrap();
    store.finish_job("j1", Some(&model("m1", "j1", 5)), "{\"auc\":0.81}", 6).unwrap();
    let job = store.job("j1").unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.error, None);
    assert_eq!(job.model_id.as_deref(), Some("m1"));
    assert_eq!(job.metrics_json.as_deref(), Some("{\"auc\":0.81}"));
    assert_eq!(store.model("m1").unwrap(), Some(model("m1", "j1", 5)));
    assert_eq!(store.model("m9").unwrap(), None);

    // A benchmark job may finish without a model.
    store.finish_job("j2", None, "{}", 7).unwrap();
    assert_eq!(store.job("j2").unwrap().unwrap().model_id, None);

    // A duplicate model id fails: j3 stays queued, no second model.
    let err = store.finish_job("j3", Some(&model("m1", "j3", 8)), "{}", 8).unwrap_err();
    assert!(err.to_string().contains("models") && err.to_string().contains("j3"), "{err}");
    assert_eq!(store.job("j3").unwrap().unwrap().state, JobState::Queued);
    assert_eq!(store.models().unwrap().len(), 1);

    // Unknown job: the model insert is rolled back (foreign key or missing row).
    assert!(store.finish_job("ghost", Some(&model("m2", "ghost", 9)), "{}", 9).is_err());
    assert!(store.finish_job("ghost", None, "{}", 9).is_err());
    assert_eq!(store.model("m2").unwrap(), None);

    store.finish_job("j3", Some(&model("m3", "j3", 10)), "{}", 10).unwrap();
    let ids: Vec<_> = store.models().unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, vec!["m3", "m1"]);
}

#[test]
fn audit_and_parties() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s1 = store.audit(&entry(Some("j1"), "bank", Direction::In, 1234)).unwrap();
    let s2 = store.audit(&entry(None, "operator", Direction::Out, 0)).unwrap();
    let s3 =
        store.audit(&entry(Some("j1"), "tax", Direction::Out, u64::from(u32::MAX) * 4)).unwrap();
    assert!(s1 < s2 && s2 < s3);
    let all = store.audit_log(None, 10).unwrap();
    assert_eq!(all.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(), vec![s3, s2, s1]);
    let mut want = entry(Some("j1"), "bank", Direction::In, 1234);
    want.seq = Some(s1);
    assert_eq!(all[2], want);
    let j1 = store.audit_log(Some("j1"), 10).unwrap();
    assert_eq!(j1.iter().map(|e| e.party.as_str()).collect::<Vec<_>>(), vec!["tax", "bank"]);
    assert_eq!(store.audit_log(Some("j1"), 1).unwrap().len(), 1);
    assert!(store.audit_log(Some("other"), 10).unwrap().is_empty());
    let err = store.audit(&entry(None, "bank", Direction::In, u64::MAX)).unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");

    store.touch_party("bank", 100).unwrap();
    store.touch_party("tax", 150).unwrap();
    store.touch_party("bank", 200).unwrap();
    store.touch_party("bank", 50).unwrap();
    assert_eq!(
        store.parties().unwrap(),
        vec![
            PartyRecord { name: "bank".into(), first_seen_ms: 50, last_seen_ms: 200 },
            PartyRecord { name: "tax".into(), first_seen_ms: 150, last_seen_ms: 150 },
        ]
    );
}

#[test]
fn reopen_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.insert_job(&new_job("j1", 1)).unwrap();
        store.insert_job(&new_job("j2", 2)).unwrap();
        store.complete_round(&round("j1", 0), &[0, 1, 2, 255], 0, &[], "{\"r\":0}").unwrap();
        store.finish_job("j1", Some(&model("m1", "j1", 3)), "{}", 4).unwrap();
        store.set_job_state("j2", JobState::Running, None, 5).unwrap();
        store.complete_round(&round("j2", 0), b"j2-ckpt", 0, &[], "{}").unwrap();
        store.audit(&entry(Some("j1"), "bank", Direction::In, 9)).unwrap();
        store.touch_party("bank", 10).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let j1 = store.job("j1").unwrap().unwrap();
    assert_eq!((j1.state, j1.rounds_done), (JobState::Succeeded, 1));
    assert_eq!(j1.checkpoint.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert_eq!(store.rounds("j1").unwrap(), vec![round("j1", 0)]);
    assert_eq!(store.model("m1").unwrap(), Some(model("m1", "j1", 3)));
    let unfinished = store.unfinished_jobs().unwrap();
    assert_eq!(unfinished.len(), 1);
    // Listings leave the checkpoint out; reading the job returns it.
    assert_eq!(unfinished[0].checkpoint, None);
    let j2 = store.job(&unfinished[0].id).unwrap().unwrap();
    assert_eq!(j2.checkpoint.as_deref(), Some(&b"j2-ckpt"[..]));
    assert_eq!(store.audit_log(None, 5).unwrap().len(), 1);
    assert_eq!(store.parties().unwrap().len(), 1);

    // The pragmas hold on the reopened connection.
    let conn = store.conn();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::NewerSchema { found, supported, .. }
            if *found == SCHEMA_VERSION + 1 && *supported == SCHEMA_VERSION),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(DB_FILE) && msg.contains("newer"), "{msg}");
}

#[test]
fn store_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
    store.insert_job(&new_job("j", 1)).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store.audit(&entry(Some("j"), &format!("p{t}"), Direction::In, i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.audit_log(Some("j"), 1000).unwrap().len(), 100);
}

#[test]
fn hello_records_version_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.touch_party("bank", 100).unwrap();
    store.record_hello("bank", 300, "0.1.0", "127.0.0.1:5000").unwrap();
    store.record_hello("tax", 200, "0.2.0", "").unwrap();
    store.touch_party("bank", 400).unwrap();
    assert_eq!(
        store.party_details().unwrap(),
        vec![
            PartyDetail {
                name: "bank".into(),
                first_seen_ms: 100,
                last_seen_ms: 400,
                version: "0.1.0".into(),
                address: "127.0.0.1:5000".into(),
            },
            PartyDetail {
                name: "tax".into(),
                first_seen_ms: 200,
                last_seen_ms: 200,
                version: "0.2.0".into(),
                address: String::new(),
            },
        ]
    );
    assert_eq!(store.parties().unwrap().len(), 2);
}

/// Every model is the next version of the model named after its job; the first version of a
/// name serves at once, later ones when promoted; a rollback serves the version that served
/// before; bad names and versions are refused and change nothing.
#[test]
fn the_registry_numbers_versions_promotes_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let job = |id: &str, name: &str, t: i64| NewJob {
        id: id.into(),
        name: name.into(),
        spec_json: "{}".into(),
        created_ms: t,
    };
    for (i, (id, name)) in
        [("a1", "credit"), ("b1", "limits"), ("a2", "credit"), ("a3", "credit")].iter().enumerate()
    {
        let t = i as i64 * 10;
        store.insert_job(&job(id, name, t)).unwrap();
        store.finish_job(id, Some(&model(&format!("{id}-model"), id, t + 1)), "{}", t + 2).unwrap();
    }
    let v = store.model_versions("credit").unwrap();
    let got: Vec<(i64, &str, bool)> =
        v.iter().map(|m| (m.version, m.model_id.as_str(), m.serving)).collect();
    assert_eq!(got, [(1, "a1-model", true), (2, "a2-model", false), (3, "a3-model", false)]);
    assert_eq!(
        store.model_names().unwrap(),
        [("credit".to_string(), 3, Some(1)), ("limits".to_string(), 1, Some(1))]
    );
    assert_eq!(store.promote("credit", 3, 100).unwrap(), Some(1));
    assert_eq!(store.promote("credit", 3, 101).unwrap(), Some(3), "promoting twice is a no-op");
    assert_eq!(store.promote("credit", 2, 102).unwrap(), Some(3));
    assert_eq!(store.rollback("credit", 103).unwrap(), (2, 3));
    assert_eq!(store.rollback("credit", 104).unwrap(), (3, 2));
    let serving = |s: &Store| {
        s.model_versions("credit").unwrap().iter().find(|m| m.serving).map(|m| m.version)
    };
    assert_eq!(serving(&store), Some(2));
    let e = store.promote("credit", 9, 105).unwrap_err().to_string();
    assert!(e.contains("`credit` has no version 9"), "{e}");
    let e = store.rollback("limits", 106).unwrap_err().to_string();
    assert!(e.contains("no earlier serving version"), "{e}");
    assert!(store.rollback("nothing", 107).is_err());
    assert!(store.model_versions("nothing").unwrap().is_empty());
    assert_eq!(serving(&store), Some(2));
    // Reopened, all of it is there.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(serving(&store), Some(2));
    drop(store);
    // A database from before the registry: the migration numbers the models of each name by
    // creation and serves each name's first.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TABLE progress_log; DROP TABLE ecosystem; DROP TABLE alerts; \
         DROP TABLE score_history; DROP TABLE serving; DROP TABLE model_versions; \
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let v: Vec<(i64, String, bool)> = store
        .model_versions("credit")
        .unwrap()
        .into_iter()
        .map(|m| (m.version, m.model_id, m.serving))
        .collect();
    assert_eq!(
        v,
        [
            (1, "a1-model".into(), true),
            (2, "a2-model".into(), false),
            (3, "a3-model".into(), false)
        ]
    );
}
