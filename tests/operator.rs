//! The operator's experience of a hand-run federation, end to end over processes on loopback
//! with mutual TLS (OS-chosen ports, temp dirs, every wait bounded):
//!
//! - a participant whose certificate comes from another CA is refused, the refusal is logged
//!   at warn with the peer's address and audited, and the participant stops instead of
//!   retrying forever; permission denials and operator actions are audited too;
//! - `fedcredit train` follows its job through a coordinator SIGKILL and restart;
//! - the grace period: a party absent at the start, and one killed mid-job, are waited for
//!   that long, then the job goes on with `min_parties` or fails naming them;
//! - job party names that are not parties (reserved, unlisted, never connected) are
//!   rejected at submission with a message that says how to fix it;
//! - `fedcredit parties`, connections at the default log level, a quiet participant exit;
//!   the coordinator checks its TLS files before it says it listens or creates its state;
//! - a text value in a numeric column is named (column, kind at each party, row) end to end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BenchJob, banks, cli, launch, launch_with, operator, rt, wait_connected};
use fedcredit_ops::OpsError;
use fedcredit_ops::client::ClientConfig;
use fedcredit_ops::launch::{LocalFederation, PartySetup};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_fedcredit");

/// Waits for a child to exit, bounded; kills it and fails the test otherwise.
fn wait_exit(child: &mut Child, bound: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn toml_str(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// A participant config written by hand (as an institution would), for one-off processes.
fn participant_config(
    dir: &Path,
    name: &str,
    url: &str,
    tls: (&Path, &Path, &Path),
    data: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\ncoordinator = \"{url}\"\nmax_backoff_secs = 1\n{extra}\n\
         [tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n[data]\npath = \"{}\"\n",
        toml_str(tls.0),
        toml_str(tls.1),
        toml_str(tls.2),
        toml_str(data)
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `fedcredit participant run` at the default log level, stderr to `log`.
fn spawn_participant(config: &Path, log: &Path) -> Child {
    Command::new(BIN)
        .args(["participant", "run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start a participant")
}

/// A foreign CA's certificate is refused at the handshake: the coordinator logs it at warn
/// with the peer's address and the name the certificate claims, audits it, and the
/// participant stops (once) instead of retrying. A wrong `server_name` stops a participant
/// too, saying what to set. A party's certificate on the control API and a Hello under
/// another name are refused, logged and audited; submit, cancel and resume are audited.
#[test]
fn refused_certificates_are_logged_audited_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = launch(dir.path(), &banks(dir.path(), 2), "");
    let certs = fed.dir().join("certs");
    let other = tempfile::tempdir().unwrap();
    let foreign = fedcredit_transport::tls::init_certs(
        &other.path().join("certs"),
        &["bank3".to_string()],
        &[],
    )
    .unwrap();
    let no_data = dir.path().join("no-data.csv");

    // bank3 with a certificate from another CA (it trusts the federation's CA, so it is the
    // coordinator that refuses).
    let f = &foreign.parties["bank3"];
    let config = participant_config(
        dir.path(),
        "bank3",
        &fed.url(),
        (&certs.join("ca.pem"), &f.cert, &f.key),
        &no_data,
        "",
    );
    let log = dir.path().join("bank3-foreign.log");
    let mut child = spawn_participant(&config, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60), "the foreign-CA participant");
    let plog = read(&log);
    eprintln!("foreign-CA participant exited with {status}:\n{plog}");
    assert!(!status.success());
    assert!(plog.contains("refused this party's certificate"), "{plog}");
    assert!(plog.contains("ERROR") && plog.contains("not retrying"), "{plog}");
    // One attempt, no retry: the participant never reconnected, and the coordinator saw no
    // further handshake after it stopped (the one session's connection, which the HTTP/2
    // client may redial a few times at once, and at most one bare handshake asking why).
    assert!(!plog.contains("session ended"), "{plog}");
    let at_exit = fed.log("coordinator").matches("refused a TLS handshake").count();
    std::thread::sleep(Duration::from_secs(3));
    let clog = fed.log("coordinator");
    let refusals: Vec<&str> =
        clog.lines().filter(|l| l.contains("refused a TLS handshake")).collect();
    eprintln!("coordinator: {refusals:#?}");
    assert_eq!(refusals.len(), at_exit, "{clog}");
    assert!(!refusals.is_empty(), "{clog}");
    assert!(refusals[0].contains("WARN"), "{}", refusals[0]);
    assert!(refusals[0].contains("peer=127.0.0.1:"), "{}", refusals[0]);
    assert!(refusals[0].contains("bank3"), "the claimed name: {}", refusals[0]);
    assert!(refusals[0].contains("not signed by this federation's CA"), "{}", refusals[0]);

    // bank1's own files, but a server_name the coordinator's certificate does not hold.
    let b1 = common::party_files(&fed, "bank1");
    let config = participant_config(
        dir.path(),
        "bank1",
        &fed.url(),
        (&b1.ca, &b1.cert, &b1.key),
        &no_data,
        "server_name = \"coordinator.example\"",
    );
    let log = dir.path().join("bank1-name.log");
    let mut child = spawn_participant(&config, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60), "the wrong-name participant");
    let plog = read(&log);
    eprintln!("wrong server_name participant exited with {status}:\n{plog}");
    assert!(!status.success());
    assert!(plog.contains("server_name") && plog.contains("--hosts"), "{plog}");

    rt().block_on(async {
        let mut client = operator(&fed).await;
        // bank1's certificate on the control API: denied, logged with the address, audited.
        let mut as_bank1 = fedcredit_ops::ControlClient::connect(&ClientConfig {
            url: fed.url(),
            tls: Some(b1.clone()),
            server_name: "localhost".into(),
        })
        .await
        .unwrap();
        match as_bank1.jobs().await {
            Err(OpsError::Status(s)) => assert_eq!(s.code(), Code::PermissionDenied),
            other => panic!("bank1 used the control API: {other:?}"),
        }
        // bank2's certificate saying Hello as bank1: denied.
        let b2 = common::party_files(&fed, "bank2");
        let status = common::RawParty::connect(&fed, &b2, "bank1").await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);

        // Operator actions.
        let job = BenchJob::new(&["bank1", "bank2"], 1000, 400);
        let id = client.submit(&job.toml()).await.unwrap().id;
        let cancelled = client.cancel(&id).await.unwrap();
        assert_eq!(cancelled.state, "cancelled");
        client.resume(&id).await.unwrap();
        client.cancel(&id).await.unwrap();
        assert!(client.cancel(&id).await.is_err(), "not running any more");

        let audit = client.audit(None, 1000).await.unwrap();
        for e in audit
            .iter()
            .filter(|e| e.party != "bank1" && e.party != "bank2" || e.kind != "job_reply")
        {
            eprintln!("audit: {} {} {} {} {}", e.party, e.kind, e.job_id, e.direction, e.outcome);
        }
        let find = |kind: &str, party: &str, outcome: &str| {
            audit.iter().any(|e| e.kind == kind && e.party == party && e.outcome.contains(outcome))
        };
        assert!(find("tls_handshake", "unauthenticated", "refused from 127.0.0.1:"));
        assert!(find("tls_handshake", "unauthenticated", "certificate for `bank3`"));
        assert!(find("tls_handshake", "unauthenticated", "refused the coordinator's certificate"));
        assert!(find("control", "bank1", "denied list_jobs"));
        assert!(find("hello", "bank2", "Hello says `bank1`"));
        assert!(find("submit", "operator", "accepted"));
        assert_eq!(audit.iter().filter(|e| e.kind == "cancel" && e.job_id == id).count(), 3);
        assert!(find("cancel", "operator", "rejected: job"));
        assert!(find("resume", "operator", "accepted: from round"));

        // The CLI shows the audit log.
        let (ok, out, err) = cli(&fed, &["audit", "--limit", "100"]);
        assert!(ok, "{err}");
        assert!(out.contains("tls_handshake") && out.contains("submit"), "{out}");
    });
    let clog = fed.log("coordinator");
    assert!(
        clog.lines().any(|l| l.contains("WARN")
            && l.contains("refused a control call")
            && l.contains("peer=127.0.0.1:")),
        "{clog}"
    );
    fed.kill_coordinator();
}

/// `fedcredit train` keeps following its job while the coordinator is SIGKILLed and, seconds
/// later, restarted: it says "coordinator restarting…" and ends with the job's success.
#[test]
fn train_follows_the_job_through_a_coordinator_restart() {
    const ROUNDS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let mut fed = launch(dir.path(), &banks(dir.path(), 3), "");
    let job = dir.path().join("job.toml");
    std::fs::write(&job, BenchJob::new(&["bank1", "bank2", "bank3"], 20_000, ROUNDS).toml())
        .unwrap();
    let out = dir.path().join("train.out");
    let err = dir.path().join("train.err");
    let mut train = Command::new(BIN)
        .arg("train")
        .arg(&job)
        .arg("--coordinator")
        .arg(fed.url())
        .arg("--certs")
        .arg(fed.dir().join("certs"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let runtime = rt();
    runtime.block_on(async {
        let mut client = operator(&fed).await;
        let bound = tokio::time::Instant::now() + common::JOB_BOUND;
        loop {
            let jobs = client.jobs().await.expect("jobs");
            if let Some(j) = jobs.first() {
                assert_ne!(j.state, "failed", "{}", j.error);
                assert_ne!(j.state, "succeeded", "the job ended before the kill; make it longer");
                // Kill at any point of a step: a step the parties already answered runs
                // again under a new number after the restart.
                if j.rounds_done >= 3 {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < bound, "no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    fed.kill_coordinator();
    // Well beyond the one second after which `train` used to give up.
    std::thread::sleep(Duration::from_secs(4));
    assert!(train.try_wait().unwrap().is_none(), "train quit while the coordinator was down");
    fed.start_coordinator().expect("restart the coordinator");
    let status = wait_exit(&mut train, common::JOB_BOUND, "fedcredit train");
    let (stdout, stderr) = (read(&out), read(&err));
    eprintln!("train exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(status.success(), "{stderr}\n{}", fed.log("coordinator"));
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(stderr.contains("coordinator restarting"), "{stderr}");
    assert!(stderr.contains("coordinator back"), "{stderr}");
}

/// A party listed in the federation but absent at the start is waited for the grace period:
/// with `min_parties` met the job then runs without it; without, it fails naming it.
#[test]
fn a_party_absent_at_the_start_is_waited_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let fed = launch_with(dir.path(), &banks(dir.path(), 2), &["bank3"], true, "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        wait_connected(&mut client, &["bank1", "bank2"]).await;
        let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], 1000, 3);
        job.grace_secs = 3;
        job.min_parties = Some(2);
        let started = Instant::now();
        let end = common::run_job(&mut client, &job.toml()).await;
        let took = started.elapsed();
        eprintln!("min_parties 2 without bank3: {} in {took:?}", end.state);
        assert_eq!(end.state, "succeeded", "{}", end.error);
        assert!(took >= Duration::from_secs(3), "started before the grace period: {took:?}");
        for r in common::rounds(&mut client, &end.id).await {
            assert_eq!(r.contributors, ["bank1", "bank2"]);
        }

        job.min_parties = None;
        let started = Instant::now();
        let end = common::run_job(&mut client, &job.toml()).await;
        let took = started.elapsed();
        eprintln!("all needed without bank3: {} in {took:?}: {}", end.state, end.error);
        assert_eq!(end.state, "failed");
        assert!(end.error.contains("bank3") && end.error.contains("grace"), "{}", end.error);
        assert!(!end.error.contains("bank1,"), "names only the missing: {}", end.error);
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(60), "{took:?}");
        // The CLI shows why, not a stale "waiting for …".
        let (ok, out, _) = cli(&fed, &["jobs", "show", &end.id]);
        assert!(ok, "{out}");
        assert!(!out.contains("waiting for"), "{out}");
        assert!(out.contains("missing: bank3"), "{out}");
    });
}

/// A party killed mid-job is waited for the grace period; then the job goes on without it
/// (`min_parties` 2), and `jobs show --rounds` names it as dropped; with every party needed,
/// the job fails naming it.
#[test]
fn a_party_crashing_mid_job_is_waited_for_then_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = launch(dir.path(), &banks(dir.path(), 3), "");
    let runtime = rt();
    let run_and_kill = |fed: &mut LocalFederation, min: Option<usize>| {
        let (id, client) = runtime.block_on(async {
            let mut client = operator(fed).await;
            wait_connected(&mut client, &["bank1", "bank2", "bank3"]).await;
            let mut job = BenchJob::new(&["bank1", "bank2", "bank3"], 20_000, 80);
            job.grace_secs = 3;
            job.phase_timeout_secs = 120;
            job.min_parties = min;
            let id = client.submit(&job.toml()).await.unwrap().id;
            let bound = tokio::time::Instant::now() + common::JOB_BOUND;
            loop {
                let info = client.job(&id).await.unwrap();
                assert!(!fedcredit_ops::progress::is_final(&info.state), "{info:?}");
                if info.rounds_done >= 2 {
                    break;
                }
                assert!(tokio::time::Instant::now() < bound, "no progress");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (id, client)
        });
        fed.kill_participant("bank2");
        let killed = Instant::now();
        let end = runtime.block_on(async {
            let mut client = client;
            common::follow(&mut client, &id).await
        });
        (end, killed.elapsed())
    };

    let (end, took) = run_and_kill(&mut fed, Some(2));
    eprintln!("bank2 killed, min_parties 2: {} {took:?} {}", end.state, end.error);
    assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
    let (ok, out, err) = cli(&fed, &["jobs", "show", &end.id, "--rounds"]);
    assert!(ok, "{err}");
    eprintln!("{}", out.lines().take(12).collect::<Vec<_>>().join("\n"));
    // bank2 is named in every round after it left: dropped from the round it left during a
    // restart of it (if it died before its masked input), missing from the later ones.
    let rounds: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("round ")).collect();
    let first_without = rounds
        .iter()
        .position(|l| l.contains("contributors 2 [bank1, bank3]"))
        .unwrap_or_else(|| panic!("no round without bank2:\n{out}"));
    for l in &rounds[first_without..] {
        assert!(l.contains("[bank1, bank3]"), "{l}");
        assert!(l.contains("dropped [bank2]") || l.contains("missing [bank2]"), "{l}");
    }
    assert!(rounds.last().unwrap().contains("missing [bank2]"), "{out}");

    // Everyone needed: the job fails naming bank2, after the grace period.
    fed.start_participant(&PartySetup::new("bank2", dir.path().join("no-data.csv"))).unwrap();
    let (end, took) = run_and_kill(&mut fed, None);
    eprintln!("bank2 killed, all needed: {} {took:?}: {}", end.state, end.error);
    assert_eq!(end.state, "failed");
    assert!(end.error.contains("missing: bank2"), "{}", end.error);
    assert!(took >= Duration::from_secs(3), "failed before the grace period: {took:?}");
}

/// Party names that are not parties are refused at submission, saying how to fix it:
/// reserved names, names outside coordinator.toml's `parties`, and, without that list,
/// names that never connected.
#[test]
fn names_that_are_not_parties_are_rejected_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let fed = launch(dir.path(), &banks(dir.path(), 2), "");
    let submit = |fed: &LocalFederation, parties: &[&str]| {
        let job = dir.path().join("job.toml");
        std::fs::write(&job, BenchJob::new(parties, 100, 2).toml()).unwrap();
        cli(fed, &["train", job.to_str().unwrap(), "--detach"])
    };
    let (ok, _, err) = submit(&fed, &["bank1", "bank4"]);
    eprintln!("bank4: {err}");
    assert!(!ok);
    assert!(err.contains("bank4") && err.contains("coordinator.toml"), "{err}");
    assert!(err.contains("bank1, bank2"), "lists the federation's parties: {err}");
    for reserved in ["operator", "coordinator"] {
        let (ok, _, err) = submit(&fed, &["bank1", reserved]);
        eprintln!("{reserved}: {err}");
        assert!(!ok);
        assert!(err.contains(&format!("`{reserved}` is a reserved name")), "{err}");
    }
    let (ok, out, _) = cli(&fed, &["jobs", "list"]);
    assert!(ok && !out.contains("job-"), "no job was created: {out}");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        let audit = client.audit(None, 100).await.unwrap();
        let rejected = audit
            .iter()
            .filter(|e| e.kind == "submit" && e.outcome.starts_with("rejected"))
            .count();
        assert_eq!(rejected, 3);
    });
    drop(fed);

    // Without a `parties` list: only parties that have connected.
    let dir = tempfile::tempdir().unwrap();
    let fed = launch_with(dir.path(), &banks(dir.path(), 2), &[], false, "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        wait_connected(&mut client, &["bank1", "bank2"]).await;
    });
    let (ok, _, err) = submit(&fed, &["bank1", "bank3"]);
    eprintln!("never connected: {err}");
    assert!(!ok);
    assert!(err.contains("bank3") && err.contains("never connected"), "{err}");
    assert!(err.contains("parties = ["), "says how to list the parties: {err}");
    let (ok, out, err) = submit(&fed, &["bank1", "bank2"]);
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("job-"), "{out}");
}

/// `fedcredit parties` lists the federation's parties (connected, last seen, version,
/// address; a listed party never seen). Connections show at the default log level; a
/// participant's SIGTERM exit is clean and quiet on both sides.
#[test]
fn parties_command_and_quiet_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = launch_with(dir.path(), &banks(dir.path(), 2), &["bank3"], true, "");
    rt().block_on(async {
        let mut client = operator(&fed).await;
        wait_connected(&mut client, &["bank1", "bank2"]).await;
    });
    let (ok, out, err) = cli(&fed, &["parties"]);
    eprintln!("{out}");
    assert!(ok, "{err}");
    let line = |name: &str| {
        out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}"))
    };
    let version = env!("CARGO_PKG_VERSION");
    for b in ["bank1", "bank2"] {
        let l = line(b);
        assert!(l.contains("connected") && l.contains(version), "{l}");
        assert!(l.contains("127.0.0.1:"), "{l}");
    }
    assert!(line("bank3").contains("never seen"), "{out}");

    #[cfg(unix)]
    {
        let status = fed.terminate_participant("bank2", Duration::from_secs(20));
        eprintln!("bank2 after SIGTERM: {status:?}");
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        std::thread::sleep(Duration::from_millis(500));
        let plog = fed.log("bank2");
        eprintln!("bank2's log:\n{plog}");
        let after: Vec<&str> =
            plog.lines().skip_while(|l| !l.contains("connected to the coordinator")).collect();
        assert!(after.iter().all(|l| !l.contains("WARN") && !l.contains("ERROR")), "{plog}");
        assert!(!plog.contains("close_notify") && !plog.contains("h2"), "{plog}");
        assert!(plog.contains("participant stopped"), "{plog}");
        let clog = fed.log("coordinator");
        let about_bank2: Vec<&str> = clog.lines().filter(|l| l.contains("bank2")).collect();
        eprintln!("coordinator on bank2:\n{}", about_bank2.join("\n"));
        assert!(about_bank2.iter().all(|l| !l.contains("WARN")), "{clog}");
        assert!(!clog.contains("close_notify"), "{clog}");
        assert!(about_bank2.iter().any(|l| l.contains("party disconnected")), "{clog}");
        let (ok, out, _) = cli(&fed, &["parties"]);
        assert!(ok);
        assert!(line_of(&out, "bank2").contains("disconnected"), "{out}");
    }
    let clog = fed.log("coordinator");
    assert!(clog.contains("party connected"), "{clog}");
}

fn line_of<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(name)).unwrap_or_default()
}

/// The coordinator loads and checks its TLS files before anything else: a missing CA stops
/// it with the file named, before it prints `listening` and before it creates its state
/// folder. Relative paths in coordinator.toml are relative to that file, and at the default
/// log level it says it listens.
#[test]
fn coordinator_checks_tls_first_and_resolves_paths_from_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    fedcredit_transport::tls::init_certs(&conf.join("certs"), &["bank1".to_string()], &[]).unwrap();
    let config = conf.join("coordinator.toml");
    let write = |ca: &str| {
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"state\"\n[tls]\nca = \"{ca}\"\n\
                 cert = \"certs/coordinator.pem\"\nkey = \"certs/coordinator.key\"\n"
            ),
        )
        .unwrap();
    };
    write("certs/missing-ca.pem");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["coordinator", "serve", "--config"])
        .arg(&config)
        .current_dir(elsewhere.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("missing CA: {}\n{stdout}{stderr}", out.status);
    assert!(!out.status.success());
    assert!(stderr.contains("missing-ca.pem"), "{stderr}");
    assert!(!stdout.contains("listening") && !stderr.contains("listening"), "{stdout}{stderr}");
    assert!(!conf.join("state").exists() && !elsewhere.path().join("state").exists());

    write("certs/ca.pem");
    let mut child = Command::new(BIN)
        .args(["coordinator", "serve", "--config"])
        .arg(&config)
        .current_dir(elsewhere.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("c.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("the coordinator listens");
    assert!(line.starts_with(fedcredit_ops::launch::LISTENING), "{line}");
    assert!(conf.join("state").join("coordinator.db").exists(), "state beside the config");
    assert!(!elsewhere.path().join("state").exists());
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let log = read(&dir.path().join("c.log"));
    assert!(log.contains("coordinator listening") && log.contains("INFO"), "{log}");
}

/// Generated bank data: the header and the rows of `bank.csv` as cells.
fn bank_table(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let data = dir.join("data");
    let out = Command::new(BIN)
        .args(["data", "generate", "--enterprises", "3000", "--months", "14", "--snapshot", "13"])
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = read(&data.join("bank.csv"));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "plain CSV without quoted commas");
    (header, rows)
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) {
    let mut text = header.join(",");
    text.push('\n');
    for r in rows {
        text.push_str(&r.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// `abc` in a numeric column at data row 500 of bank3's file: `fedcredit train` fails with
/// the column and its kind at each party; bank3's own log names the column and row (and the
/// operator never sees its file's location). A party that declares its text columns declines
/// instead, naming column and row, without its path.
#[test]
fn text_in_a_numeric_column_is_named_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (header, rows) = bank_table(dir.path());
    let label = "default_12m";
    // As the loader reads CSV cells: numbers, booleans and missing tokens are numeric.
    let cell_numeric = |c: &str| {
        c.parse::<f64>().is_ok() || ["", "NA", "NaN", "nan", "null", "true", "false"].contains(&c)
    };
    let numeric = |j: usize| rows.iter().all(|r| cell_numeric(&r[j]));
    let column = (0..header.len())
        .find(|&j| {
            header[j] != "id"
                && header[j] != label
                && rows.iter().all(|r| r[j].parse::<f64>().is_ok())
        })
        .expect("a numeric column");
    let col = header[column].clone();
    let text_columns: Vec<String> = (0..header.len())
        .filter(|&j| header[j] != "id" && header[j] != label && !numeric(j))
        .map(|j| format!("\"{}\"", header[j]))
        .collect();
    let good = dir.path().join("good.csv");
    write_csv(&good, &header, &rows);
    let mut bad_rows = rows.clone();
    bad_rows[499][column] = "abc".into();
    let bad = dir.path().join("bank3.csv");
    write_csv(&bad, &header, &bad_rows);
    eprintln!("`abc` in column `{col}` at data row 500; text columns {text_columns:?}");

    let parties = vec![
        PartySetup::new("bank1", &good),
        PartySetup::new("bank2", &good),
        PartySetup::new("bank3", &bad),
    ];
    let fed = launch_with(dir.path().join("fed").as_path(), &parties, &["bank4"], true, "");
    let job = dir.path().join("job.toml");
    let spec = |parties: &str| {
        format!(
            "name = \"lr\"\nparties = [{parties}]\ngrace_secs = 20\n[data]\nid = \"id\"\n\
             label = \"{label}\"\n[model]\nkind = \"logistic\"\n"
        )
    };
    std::fs::write(&job, spec("\"bank1\", \"bank2\", \"bank3\"")).unwrap();
    rt().block_on(async {
        let mut client = operator(&fed).await;
        wait_connected(&mut client, &["bank1", "bank2", "bank3"]).await;
    });
    let (ok, out, err) = cli(&fed, &["train", job.to_str().unwrap()]);
    eprintln!("train:\n{out}\n{err}");
    assert!(!ok);
    let want = format!("column `{col}` is numeric at bank1 but text with");
    assert!(err.contains(&want) && err.contains("at bank3"), "{err}");
    let bank3 = fed.log("bank3");
    let noted: Vec<&str> = bank3.lines().filter(|l| l.contains("data row 500")).collect();
    eprintln!("bank3's log: {noted:#?}");
    assert!(noted.iter().any(|l| l.contains(&format!("`{col}`"))), "{bank3}");
    assert!(!noted.iter().any(|l| l.contains("abc")), "no cell values in logs: {noted:?}");

    // bank4 lists its real text columns, so a text cell elsewhere is an error: it declines.
    let certs = fed.dir().join("certs");
    fedcredit_transport::tls::add_party(&certs, "bank4").unwrap();
    let config = participant_config(
        dir.path(),
        "bank4",
        &fed.url(),
        (&certs.join("ca.pem"), &certs.join("bank4.pem"), &certs.join("bank4.key")),
        &bad,
        "",
    );
    let mut text = read(&config);
    text.push_str(&format!("categorical_columns = [{}]\n", text_columns.join(", ")));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("bank4.log");
    let mut bank4 = spawn_participant(&config, &log);
    rt().block_on(async {
        let mut client = operator(&fed).await;
        wait_connected(&mut client, &["bank4"]).await;
    });
    std::fs::write(&job, spec("\"bank1\", \"bank4\"")).unwrap();
    let (ok, out, err) = cli(&fed, &["train", job.to_str().unwrap()]);
    eprintln!("train with bank4:\n{out}\n{err}");
    let _ = bank4.kill();
    let _ = bank4.wait();
    assert!(!ok);
    assert!(err.contains("bank4 declined"), "{err}");
    assert!(err.contains(&format!("column `{col}`")) && err.contains("data row 500"), "{err}");
    let here = dir.path().display().to_string();
    assert!(!err.contains(&here) && !out.contains(&here), "the file's location leaked: {err}");
    assert!(!err.contains("abc"), "a cell value reached the operator: {err}");
    let plog = read(&log);
    assert!(plog.contains("data row 500") && plog.contains("bank3.csv"), "{plog}");
}
