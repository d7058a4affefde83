//! The daemon's loop: dial the coordinator, say hello, answer job offers and rounds, and
//! redial with exponential backoff when the coordinator is away.
//!
//! For a job offer the daemon loads its table through `fedcredit-datasets`, checks it against
//! the job's columns (a missing column, a text cell in a numeric column, a bad label: the offer
//! is declined with the file, column and row), holds out its validation rows, and replies with
//! its schema (column names and kinds, never values). For each round it computes its
//! contribution locally and takes part in secure aggregation (Bonawitz et al., CCS 2017): what
//! leaves the process is public keys, sealed share bundles, a masked vector and the shares the
//! protocol asks for — never a row, a label or an unmasked update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedcredit_datasets::split::stratified_split;
use fedcredit_datasets::table::{TableSpec, load_table};
use fedcredit_federation::PartyId;
use fedcredit_federation::horizontal::{Participant, Task};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::secagg::{ClientMessage, Phase, RoundSetup, SecAggClient};
use fedcredit_models::{FeatureKind, FeatureSpec};
use fedcredit_proto::convert::{client_to_wire, server_from_wire};
use fedcredit_proto::pb;
use fedcredit_transport::backoff::Backoff;
use fedcredit_transport::stream::{Inbound, MAX_FRAME, Outbound};
use fedcredit_transport::tls::client_tls;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, info, info_span, warn};

use crate::config::ParticipantConfig;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// TLS material or the coordinator URL cannot be used.
    #[error("{0}")]
    Setup(String),
}

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot reach the coordinator: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("the coordinator refused the stream: {0}")]
    Refused(tonic::Status),
    #[error("stream: {0}")]
    Stream(String),
}

struct JobState {
    participant: Arc<Mutex<Participant>>,
    client: Option<SecAggClient>,
    ring_bits: u32,
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    config: ParticipantConfig,
    me: PartyId,
}

fn message(seq: u64, body: pb::participant_message::Body) -> pb::ParticipantMessage {
    pb::ParticipantMessage { seq, body: Some(body) }
}

/// The schema the coordinator compares across parties.
fn schema_to_wire(specs: &[FeatureSpec]) -> Vec<pb::FeatureColumn> {
    specs
        .iter()
        .map(|s| match &s.kind {
            FeatureKind::Numeric => {
                pb::FeatureColumn { name: s.name.clone(), categorical: false, levels: vec![] }
            }
            FeatureKind::Categorical { levels } => pb::FeatureColumn {
                name: s.name.clone(),
                categorical: true,
                levels: levels.clone(),
            },
        })
        .collect()
}

/// A sending half that numbers messages and frames them.
struct Sender {
    tx: mpsc::Sender<pb::ParticipantFrame>,
    outbound: Outbound,
    seq: u64,
}

impl Sender {
    async fn send(&mut self, body: pb::participant_message::Body) -> Result<u64, SessionError> {
        self.seq += 1;
        let frames = self
            .outbound
            .participant(message(self.seq, body))
            .map_err(|e| SessionError::Stream(e.to_string()))?;
        for f in frames {
            self.tx.send(f).await.map_err(|_| SessionError::Stream("stream closed".into()))?;
        }
        Ok(self.seq)
    }
}

impl Daemon {
    /// A daemon for a checked configuration.
    pub fn new(config: ParticipantConfig) -> Self {
        let me = PartyId(config.name.clone());
        Self { config, me }
    }

    async fn channel(&self) -> Result<Channel, SessionError> {
        let mut ep = Endpoint::from_shared(self.config.coordinator.clone())
            .map_err(SessionError::Connect)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.config.tls {
            let cfg = client_tls(tls, &self.config.server_name)
                .map_err(|e| SessionError::Stream(e.to_string()))?;
            ep = ep.tls_config(cfg)?;
        }
        Ok(ep.connect().await?)
    }

    /// Runs until `shutdown` is cancelled, reconnecting with backoff.
    ///
    /// # Errors
    /// [`DaemonError::Setup`] when the TLS files cannot be loaded (retrying cannot help).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        if let Some(tls) = &self.config.tls {
            client_tls(tls, &self.config.server_name)
                .map_err(|e| DaemonError::Setup(e.to_string()))?;
        }
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(self.config.max_backoff_secs),
            2.0,
            0.2,
            ChaCha8Rng::from_rng(&mut rand::rng()),
        )
        .map_err(|e| DaemonError::Setup(e.to_string()))?;
        let mut jobs: HashMap<String, JobState> = HashMap::new();
        loop {
            let span = info_span!("session", party = %self.me);
            let result = tokio::select! {
                r = self.session(&mut jobs, &mut backoff).instrument(span) => r,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let delay = backoff.next_delay();
            match result {
                Ok(()) => info!(?delay, "the coordinator closed the stream; reconnecting"),
                Err(e) => warn!(error = %e, ?delay, "session ended; reconnecting"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn session(
        &self,
        jobs: &mut HashMap<String, JobState>,
        backoff: &mut Backoff<ChaCha8Rng>,
    ) -> Result<(), SessionError> {
        let channel = self.channel().await?;
        let mut client = pb::federation_client::FederationClient::new(channel)
            .max_decoding_message_size(MAX_FRAME)
            .max_encoding_message_size(MAX_FRAME);
        let (tx, rx) = mpsc::channel(16);
        let mut sender = Sender { tx, outbound: Outbound::new(), seq: 0 };
        sender
            .send(pb::participant_message::Body::Hello(pb::Hello {
                party: self.me.0.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
            }))
            .await?;
        let mut stream = client
            .participate(ReceiverStream::new(rx))
            .await
            .map_err(SessionError::Refused)?
            .into_inner();
        let mut inbound = Inbound::new(64 * 1024 * 1024);
        loop {
            let frame = match stream.message().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(status) => return Err(SessionError::Refused(status)),
            };
            let msg = match inbound.coordinator(frame) {
                Ok(Some((m, _))) => m,
                Ok(None) => continue,
                Err(e) => return Err(SessionError::Stream(e.to_string())),
            };
            let Some(body) = msg.body else { continue };
            use pb::coordinator_message::Body;
            match body {
                Body::Welcome(w) => {
                    info!(as_party = %w.party, "connected to the coordinator");
                    backoff.reset();
                }
                Body::Ack(a) => {
                    if a.outcome() != pb::ack::Outcome::Accepted {
                        warn!(seq = a.seq, outcome = ?a.outcome(), reason = %a.reason, "message not accepted");
                    }
                }
                Body::JobOffer(offer) => {
                    let reply = self.join(&offer, jobs).await;
                    sender.send(pb::participant_message::Body::JobReply(reply)).await?;
                }
                Body::RoundStart(start) => self.round_start(start, jobs, &mut sender).await?,
                Body::Secagg(m) => self.secagg(m, jobs, &mut sender).await?,
                Body::JobEnded(end) => {
                    info!(job = %end.job_id, state = %end.state, reason = %end.reason, "job ended");
                    jobs.remove(&end.job_id);
                }
            }
        }
    }

    /// Loads and checks the table for a job offer.
    async fn join(
        &self,
        offer: &pb::JobOffer,
        jobs: &mut HashMap<String, JobState>,
    ) -> pb::JobReply {
        let decline = |reason: String| {
            warn!(job = %offer.job_id, %reason, "declining the job");
            pb::JobReply { job_id: offer.job_id.clone(), accepted: false, reason, schema: vec![] }
        };
        let spec = match JobSpec::from_json(&offer.spec_json) {
            Ok(s) => s,
            Err(e) => return decline(format!("job spec: {e}")),
        };
        if !spec.parties.contains(&self.me) {
            return decline(format!("{} is not among the job's parties", self.me));
        }
        let me = self.me.clone();
        let data = self.config.data.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&me, &spec, &data)).await;
        match loaded {
            Ok(Ok((participant, schema))) => {
                info!(job = %offer.job_id, columns = schema.len(), "joined the job");
                jobs.insert(
                    offer.job_id.clone(),
                    JobState {
                        participant: Arc::new(Mutex::new(participant)),
                        client: None,
                        ring_bits: 0,
                    },
                );
                pb::JobReply {
                    job_id: offer.job_id.clone(),
                    accepted: true,
                    reason: String::new(),
                    schema: schema_to_wire(&schema),
                }
            }
            Ok(Err(reason)) => decline(reason),
            Err(e) => decline(format!("loading the table failed: {e}")),
        }
    }

    fn fault(&self, round: u64, phase: Phase) {
        if let Some(f) = &self.config.fault
            && f.round == round
            && f.exit_before == phase.to_string()
        {
            warn!(round, %phase, "fault injection: exiting before sending");
            std::process::exit(86);
        }
    }

    async fn send_secagg(
        &self,
        sender: &mut Sender,
        msg: &ClientMessage,
        ring_bits: u32,
    ) -> Result<(), SessionError> {
        self.fault(msg.header().round.0, msg.phase());
        sender.send(pb::participant_message::Body::Secagg(client_to_wire(msg, ring_bits))).await?;
        Ok(())
    }

    async fn task_failed(
        &self,
        sender: &mut Sender,
        header: &fedcredit_federation::secagg::RoundHeader,
        reason: String,
    ) -> Result<(), SessionError> {
        warn!(%header, %reason, "cannot take part in the round");
        sender
            .send(pb::participant_message::Body::TaskFailed(pb::TaskFailed {
                header: Some(header.into()),
                reason,
            }))
            .await?;
        Ok(())
    }

    async fn round_start(
        &self,
        start: pb::RoundStart,
        jobs: &mut HashMap<String, JobState>,
        sender: &mut Sender,
    ) -> Result<(), SessionError> {
        let Some(setup) = start.setup else { return Ok(()) };
        let setup: RoundSetup = match setup.try_into() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "malformed round start");
                return Ok(());
            }
        };
        let header = setup.header.clone();
        let Some(job) = jobs.get_mut(&header.job.0) else {
            return self
                .task_failed(
                    sender,
                    &header,
                    format!("{} has not joined job {}", self.me, header.job),
                )
                .await;
        };
        let task: Task = match serde_json::from_str(&start.task_json) {
            Ok(t) => t,
            Err(e) => {
                return self.task_failed(sender, &header, format!("unreadable task: {e}")).await;
            }
        };
        // Only the benchmark's seeded vectors are public; everything else is masked.
        let public_task = matches!(task, Task::BenchVector(_));
        let participant = job.participant.clone();
        let vector = tokio::task::spawn_blocking(move || {
            let mut p = participant.lock().unwrap_or_else(|e| e.into_inner());
            p.contribute(&task)
        })
        .await;
        let vector = match vector {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.task_failed(sender, &header, e.to_string()).await,
            Err(e) => {
                return self.task_failed(sender, &header, format!("task panicked: {e}")).await;
            }
        };
        let fixed = match setup.config.fixed_point(setup.roster.len()) {
            Ok(f) => f,
            Err(e) => return self.task_failed(sender, &header, e.to_string()).await,
        };
        let ring_bits = fixed.ring_bits;
        if start.plaintext {
            if !public_task {
                return self
                    .task_failed(
                        sender,
                        &header,
                        "refusing to send an unmasked contribution".into(),
                    )
                    .await;
            }
            let msg = ClientMessage::MaskedInput(fedcredit_federation::secagg::MaskedInput {
                header: header.clone(),
                masked: fixed.encode_vec(&vector),
            });
            let wire = client_to_wire(&msg, ring_bits);
            sender.send(pb::participant_message::Body::Secagg(wire)).await?;
            return Ok(());
        }
        let created = SecAggClient::new(self.me.clone(), &setup, &vector, &mut rand::rng());
        drop(vector);
        match created {
            Ok((client, msg)) => {
                job.client = Some(client);
                job.ring_bits = ring_bits;
                self.send_secagg(sender, &msg, ring_bits).await
            }
            Err(e) => self.task_failed(sender, &header, e.to_string()).await,
        }
    }

    async fn secagg(
        &self,
        msg: pb::SecAggServerMessage,
        jobs: &mut HashMap<String, JobState>,
        sender: &mut Sender,
    ) -> Result<(), SessionError> {
        let msg = match server_from_wire(msg) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "malformed secure-aggregation message");
                return Ok(());
            }
        };
        let Some(job) = jobs.get_mut(&msg.header().job.0) else {
            warn!(header = %msg.header(), "message for a job this party has not joined");
            return Ok(());
        };
        let Some(client) = job.client.as_mut() else {
            warn!(header = %msg.header(), "no round in progress");
            return Ok(());
        };
        match client.handle(&msg, &mut rand::rng()) {
            Ok(reply) => {
                let ring_bits = job.ring_bits;
                if client.phase() == Phase::Done {
                    job.client = None;
                }
                self.send_secagg(sender, &reply, ring_bits).await
            }
            Err(e) => {
                warn!(error = %e, "secure-aggregation step refused");
                Ok(())
            }
        }
    }
}

/// Loads the party's table for `spec` and splits off its validation rows.
fn load(
    me: &PartyId,
    spec: &JobSpec,
    data: &crate::config::DataConfig,
) -> Result<(Participant, Vec<FeatureSpec>), String> {
    if !spec.model.needs_data() {
        let p = Participant::new(me.clone(), spec, None, None).map_err(|e| e.to_string())?;
        return Ok((p, Vec::new()));
    }
    let mut t = TableSpec::new(&data.path, &spec.data.id).with_label(&spec.data.label);
    if !spec.data.features.is_empty() {
        t = t.with_features(spec.data.features.iter().cloned());
    }
    if let Some(c) = &data.categorical_columns {
        t = t.with_categorical(c.iter().cloned());
    }
    let table = load_table(&t).map_err(|e| e.to_string())?;
    let schema = table.features.specs.clone();
    let label = table.label.as_ref().map(|l| l.to_vec()).unwrap_or_default();
    let (train, valid) = if spec.data.validation_fraction > 0.0 {
        let split =
            stratified_split(&table.ids, &label, spec.data.validation_fraction, spec.data.seed)
                .map_err(|e| e.to_string())?;
        let valid = table.select_rows(&split.test).dataset().map_err(|e| e.to_string())?;
        (table.select_rows(&split.train).dataset().map_err(|e| e.to_string())?, Some(valid))
    } else {
        (table.dataset().map_err(|e| e.to_string())?, None)
    };
    let p = Participant::new(me.clone(), spec, Some(train), valid).map_err(|e| e.to_string())?;
    Ok((p, schema))
}
