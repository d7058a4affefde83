//! Shared helpers of the multi-process federation tests: a local federation of `fedcredit`
//! processes in a temp dir, benchmark job specs, following jobs with a bound, and a raw
//! participant stream for protocol-level checks (the generated gRPC client, frames sent by
//! hand).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use fedcredit_ops::ControlClient;
use fedcredit_ops::client::ClientConfig;
use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};
use fedcredit_proto::pb;
use fedcredit_transport::stream::Inbound;
use fedcredit_transport::tls::TlsFiles;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Longest any single job may take in these tests before the test fails.
pub const JOB_BOUND: Duration = Duration::from_secs(300);
/// Longest a raw stream waits for one coordinator message.
pub const MESSAGE_BOUND: Duration = Duration::from_secs(60);
/// Fixed-point fraction bits of every job here (the default).
pub const FRAC_BITS: u32 = 24;

/// A multi-threaded runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Parties `bank1..=bankN` without data (the benchmark needs none) and without faults.
pub fn banks(dir: &Path, n: usize) -> Vec<PartySetup> {
    (1..=n).map(|i| PartySetup::new(format!("bank{i}"), dir.join("no-data.csv"))).collect()
}

/// Starts a coordinator (mutual TLS, OS-chosen port) and one daemon per party in `dir`.
pub fn launch(dir: &Path, parties: &[PartySetup], coordinator_extra: &str) -> LocalFederation {
    let mut opts = LaunchOptions::new(env!("CARGO_BIN_EXE_fedcredit"), dir);
    opts.coordinator_extra = coordinator_extra.to_string();
    LocalFederation::start(opts, parties).expect("start the local federation")
}

/// A `secagg_bench` job over `parties`.
#[derive(Debug, Clone)]
pub struct BenchJob {
    pub parties: Vec<String>,
    pub dim: usize,
    pub rounds: u64,
    pub seed: u64,
    pub min_parties: Option<usize>,
    pub threshold: Option<usize>,
    pub phase_timeout_secs: u64,
    pub grace_secs: u64,
}

impl BenchJob {
    pub fn new(parties: &[&str], dim: usize, rounds: u64) -> Self {
        Self {
            parties: parties.iter().map(|s| s.to_string()).collect(),
            dim,
            rounds,
            seed: 7,
            min_parties: None,
            threshold: None,
            phase_timeout_secs: 30,
            grace_secs: 5,
        }
    }

    pub fn toml(&self) -> String {
        let names: Vec<String> = self.parties.iter().map(|p| format!("\"{p}\"")).collect();
        let mut t = format!(
            "name = \"t\"\nparties = [{}]\nphase_timeout_secs = {}\ngrace_secs = {}\n",
            names.join(", "),
            self.phase_timeout_secs,
            self.grace_secs
        );
        if let Some(m) = self.min_parties {
            t.push_str(&format!("min_parties = {m}\n"));
        }
        t.push_str(&format!(
            "[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"secagg_bench\"\ndim = {}\n\
             rounds = {}\nseed = {}\n",
            self.dim, self.rounds, self.seed
        ));
        if let Some(th) = self.threshold {
            t.push_str(&format!("[secagg]\nthreshold = {th}\n"));
        }
        t
    }
}

/// The operator's control client, retrying while the coordinator comes up.
pub async fn operator(fed: &LocalFederation) -> ControlClient {
    fedcredit_ops::bench::connect_retry(fed).await.expect("connect as operator")
}

/// Follows a job to its end, bounded by [`JOB_BOUND`].
pub async fn follow(client: &mut ControlClient, id: &str) -> pb::JobInfo {
    tokio::time::timeout(JOB_BOUND, fedcredit_ops::progress::follow(client, id, false))
        .await
        .unwrap_or_else(|_| panic!("job {id} did not end within {JOB_BOUND:?}"))
        .expect("follow the job")
}

/// Submits `toml` and follows the job to its end.
pub async fn run_job(client: &mut ControlClient, toml: &str) -> pb::JobInfo {
    let job = client.submit(toml).await.expect("submit");
    follow(client, &job.id).await
}

/// A number from the job's final metrics.
pub fn metric(info: &pb::JobInfo, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(&info.metrics_json)
        .unwrap_or_else(|e| panic!("metrics of {}: {e}: {:?}", info.id, info.metrics_json));
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no metric {key} in {}", info.metrics_json))
}

/// The fixed-point bound of a sum of `n` encodings: n · 2^-(frac_bits+1).
pub fn sum_bound(n: usize) -> f64 {
    n as f64 * 2f64.powi(-(FRAC_BITS as i32 + 1))
}

/// Prints a job's rounds (for the closing note) and returns them.
pub async fn rounds(client: &mut ControlClient, id: &str) -> Vec<pb::RoundInfo> {
    let rs = client.rounds(id).await.expect("list rounds");
    for r in &rs {
        eprintln!(
            "  round {}: attempts {}, contributors {:?}, dropped {:?}, {} ms",
            r.round,
            r.attempts,
            r.contributors,
            r.dropped,
            r.finished_ms - r.started_ms
        );
    }
    rs
}

/// Certificate files of `name` in a federation's `certs/` directory.
pub fn party_files(fed: &LocalFederation, name: &str) -> TlsFiles {
    fedcredit_ops::client::party_tls(&fed.dir().join("certs"), name)
}

/// A hand-driven participant stream: the generated client, frames pushed through an mpsc.
#[derive(Debug)]
pub struct RawParty {
    tx: mpsc::Sender<pb::ParticipantFrame>,
    rx: tonic::Streaming<pb::CoordinatorFrame>,
    inbound: Inbound,
    seq: u64,
    /// Messages read while waiting for something else.
    pub backlog: Vec<pb::CoordinatorMessage>,
}

fn frame(msg: pb::ParticipantMessage) -> pb::ParticipantFrame {
    pb::ParticipantFrame { body: Some(pb::participant_frame::Body::Message(msg)) }
}

impl RawParty {
    /// Opens the stream on `channel` and says `Hello { party: hello }`; the coordinator's
    /// refusal (if any) is the error.
    pub async fn open(
        channel: tonic::transport::Channel,
        hello: &str,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut client = pb::federation_client::FederationClient::new(channel);
        let hello = pb::ParticipantMessage {
            seq: 1,
            body: Some(pb::participant_message::Body::Hello(pb::Hello {
                party: hello.to_string(),
                version: "test".into(),
            })),
        };
        tx.send(frame(hello)).await.expect("queue the Hello");
        let stream = client.participate(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { tx, rx: stream, inbound: Inbound::new(64 << 20), seq: 1, backlog: Vec::new() })
    }

    /// Connects with `files` over mutual TLS and says hello as `hello`.
    pub async fn connect(
        fed: &LocalFederation,
        files: &TlsFiles,
        hello: &str,
    ) -> Result<Self, tonic::Status> {
        let cfg = ClientConfig {
            url: fed.url(),
            tls: Some(files.clone()),
            server_name: "localhost".into(),
        };
        let ch = fedcredit_ops::client::channel(&cfg)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Self::open(ch, hello).await
    }

    /// Sends one message; returns its sequence number.
    pub async fn send(&mut self, body: pb::participant_message::Body) -> u64 {
        self.seq += 1;
        let msg = pb::ParticipantMessage { seq: self.seq, body: Some(body) };
        self.tx.send(frame(msg)).await.expect("stream open");
        self.seq
    }

    /// Sends a raw frame.
    pub async fn send_frame(&mut self, f: pb::ParticipantFrame) {
        self.tx.send(f).await.expect("stream open");
    }

    /// The next coordinator message; `Ok(None)` when the stream ended cleanly.
    pub async fn next(&mut self) -> Result<Option<pb::CoordinatorMessage>, tonic::Status> {
        loop {
            let f = tokio::time::timeout(MESSAGE_BOUND, self.rx.message())
                .await
                .map_err(|_| tonic::Status::deadline_exceeded("test: no message in time"))??;
            let Some(f) = f else { return Ok(None) };
            match self.inbound.coordinator(f) {
                Ok(Some((m, _))) => return Ok(Some(m)),
                Ok(None) => continue,
                Err(e) => return Err(tonic::Status::internal(e.to_string())),
            }
        }
    }

    /// Reads until `pick` returns something; other messages go to the backlog.
    pub async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&pb::CoordinatorMessage) -> Option<T>,
    ) -> T {
        if let Some(i) = self.backlog.iter().position(|m| pick(m).is_some()) {
            let m = self.backlog.remove(i);
            return pick(&m).expect("picked");
        }
        loop {
            let m = self
                .next()
                .await
                .expect("coordinator stream")
                .expect("the coordinator closed the stream");
            if let Some(t) = pick(&m) {
                return t;
            }
            self.backlog.push(m);
        }
    }

    /// The Ack of message `seq`.
    pub async fn ack(&mut self, seq: u64) -> pb::Ack {
        self.wait_for(|m| match &m.body {
            Some(pb::coordinator_message::Body::Ack(a)) if a.seq == seq => Some(a.clone()),
            _ => None,
        })
        .await
    }

    /// Closes the sending half and drops the stream.
    pub fn close(self) {}
}

/// A masked upload claiming `len` elements of a 20-bit ring in `packed` bytes (3 per element
/// when consistent), in a job message.
pub fn masked_upload(
    header: pb::RoundHeader,
    len: u64,
    packed: usize,
) -> pb::participant_message::Body {
    let secagg = pb::SecAggClientMessage {
        msg: Some(pb::sec_agg_client_message::Msg::MaskedInput(pb::MaskedInput {
            header: Some(header.clone()),
            ring_bits: 20,
            len,
            packed: vec![0; packed],
            bundles: Default::default(),
        })),
    };
    pb::participant_message::Body::Job(pb::FromParty {
        job_id: header.job,
        body: Some(pb::from_party::Body::Protocol(pb::RoleMessage {
            body: Some(pb::role_message::Body::Secagg(secagg)),
        })),
    })
}

/// The secure-aggregation setup of a horizontal step, if `m` is one.
pub fn step_setup(m: &pb::CoordinatorMessage) -> Option<pb::RoundSetup> {
    match &m.body {
        Some(pb::coordinator_message::Body::Job(pb::ToParty {
            body:
                Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
                    body: Some(pb::conductor_message::Body::Horizontal(s)),
                })),
            ..
        })) => s.setup.clone(),
        _ => None,
    }
}

/// Like [`launch`], with the coordinator's `parties` list extended by `extra` (parties driven
/// by hand or started later), or without a list (`declare = false`: jobs may then name only
/// parties that have connected).
pub fn launch_with(
    dir: &Path,
    parties: &[PartySetup],
    extra: &[&str],
    declare: bool,
    coordinator_extra: &str,
) -> LocalFederation {
    let mut opts = LaunchOptions::new(env!("CARGO_BIN_EXE_fedcredit"), dir);
    opts.coordinator_extra = coordinator_extra.to_string();
    opts.extra_parties = extra.iter().map(|s| s.to_string()).collect();
    opts.declare_parties = declare;
    LocalFederation::start(opts, parties).expect("start the local federation")
}

/// Runs the `fedcredit` CLI against `fed` as the operator; (success, stdout, stderr).
pub fn cli(fed: &LocalFederation, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedcredit"))
        .args(args)
        .arg("--coordinator")
        .arg(fed.url())
        .arg("--certs")
        .arg(fed.dir().join("certs"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run fedcredit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (bounded by [`MESSAGE_BOUND`]) until every one of `names` is connected.
pub async fn wait_connected(client: &mut ControlClient, names: &[&str]) {
    let bound = tokio::time::Instant::now() + MESSAGE_BOUND;
    loop {
        let parties = client.parties().await.expect("list parties");
        if names.iter().all(|n| parties.iter().any(|p| p.name == *n && p.connected)) {
            return;
        }
        assert!(tokio::time::Instant::now() < bound, "not all of {names:?} connected: {parties:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
