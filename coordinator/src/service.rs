//! `Federation.Participate`: each participant's long-lived stream.
//!
//! The party's identity is the common name of its verified client certificate (mutual TLS);
//! its `Hello` must name the same party. Only a coordinator started with `insecure = true`
//! takes the name from the `Hello`. No message carries a sender: everything read from the
//! stream is attributed to the authenticated party, so a party can act only as itself. Every
//! message is answered with an `Ack`; messages that fail to decode are rejected with the
//! field that is wrong and change nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fedcredit_federation::{JobId, PartyId};
use fedcredit_proto::pb;
use fedcredit_transport::stream::{Inbound, Outbound};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info, info_span, warn};

use crate::config::RelayTamper;
use crate::driver::JobInput;
use crate::store::Direction;
use crate::{Shared, now_ms};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The participants' service.
#[derive(Debug, Clone)]
pub struct FederationService {
    shared: Arc<Shared>,
}

impl FederationService {
    /// The service over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorFrame, Status>> + Send>>;

fn coordinator_msg(body: pb::coordinator_message::Body) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage { body: Some(body) }
}

async fn next_message(
    stream: &mut Streaming<pb::ParticipantFrame>,
    inbound: &mut Inbound,
) -> Result<Option<(pb::ParticipantMessage, usize)>, Status> {
    loop {
        match stream.message().await? {
            None => return Ok(None),
            Some(frame) => match inbound.participant(frame) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => continue,
                Err(e) => return Err(Status::invalid_argument(e.to_string())),
            },
        }
    }
}

#[tonic::async_trait]
impl pb::federation_server::Federation for FederationService {
    type ParticipateStream = FrameStream;

    async fn participate(
        &self,
        request: Request<Streaming<pb::ParticipantFrame>>,
    ) -> Result<Response<Self::ParticipateStream>, Status> {
        let cert_name = fedcredit_transport::tls::request_identity(&request);
        let peer = request.remote_addr();
        let address = peer.map(|a| a.to_string()).unwrap_or_default();
        // Refusals are logged at warn with the peer's address and audited under the name the
        // connection authenticated as.
        let refuse = |who: Option<&str>, status: Status| {
            warn!(peer = %address, party = who.unwrap_or(""), reason = %status.message(), "refused a participant stream");
            self.shared.audit_event(
                who.unwrap_or(crate::UNAUTHENTICATED),
                None,
                "hello",
                &format!("refused from {address}: {}", status.message()),
            );
            status
        };
        if !self.shared.config.insecure && cert_name.is_none() {
            return Err(refuse(
                None,
                Status::unauthenticated("a client certificate from the federation CA is required"),
            ));
        }
        let mut frames = request.into_inner();
        let mut inbound = Inbound::new(self.shared.config.max_message_bytes);
        let hello = tokio::time::timeout(HELLO_TIMEOUT, next_message(&mut frames, &mut inbound))
            .await
            .map_err(|_| {
                refuse(cert_name.as_deref(), Status::deadline_exceeded("no Hello within 10 s"))
            })?
            .map_err(|s| refuse(cert_name.as_deref(), s))?;
        let Some((first, _)) = hello else {
            return Err(Status::cancelled("stream closed before Hello"));
        };
        let Some(pb::participant_message::Body::Hello(hello)) = first.body else {
            return Err(refuse(
                cert_name.as_deref(),
                Status::failed_precondition("the first message must be a Hello"),
            ));
        };
        let party = match cert_name.clone() {
            Some(cn) if cn != hello.party => {
                return Err(refuse(
                    Some(&cn),
                    Status::permission_denied(format!(
                        "the certificate is for `{cn}` but Hello says `{}`",
                        hello.party
                    )),
                ));
            }
            Some(cn) => cn,
            None => hello.party.clone(),
        };
        fedcredit_transport::tls::validate_party_name(&party)
            .map_err(|e| refuse(cert_name.as_deref(), Status::permission_denied(e.to_string())))?;
        let party = PartyId(party);
        let info = crate::registry::SessionInfo {
            address: peer,
            version: hello.version.clone(),
            since_ms: now_ms(),
        };
        let (session, mut queue) = self.shared.registry.connect_with(&party, info);
        if let Err(e) = self.shared.store.record_hello(&party.0, now_ms(), &hello.version, &address)
        {
            warn!(error = %e, "cannot record the party");
        }
        info!(%party, version = %hello.version, peer = %address, "party connected");

        // Writer: the party's queue → frames (chunked when large) → the response stream.
        let (out_tx, out_rx) = mpsc::channel::<Result<pb::CoordinatorFrame, Status>>(16);
        let welcome = coordinator_msg(pb::coordinator_message::Body::Welcome(pb::Welcome {
            party: party.0.clone(),
        }));
        let ack = coordinator_msg(pb::coordinator_message::Body::Ack(
            pb::Ack::accepted().for_seq(first.seq),
        ));
        // The reader ends the response with the error status when the party's stream breaks
        // (an oversized or undecodable frame), so the party learns why it was cut off.
        let status_tx = out_tx.clone();
        tokio::spawn(
            async move {
                let mut outbound = Outbound::new();
                for m in [welcome, ack] {
                    for f in outbound.coordinator(m).unwrap_or_default() {
                        if out_tx.send(Ok(f)).await.is_err() {
                            return;
                        }
                    }
                }
                while let Some(q) = queue.recv().await {
                    match outbound.coordinator(q.msg) {
                        Ok(fs) => {
                            for f in fs {
                                if out_tx.send(Ok(f)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot frame a message"),
                    }
                }
            }
            .instrument(info_span!("writer", party = %party)),
        );

        // Reader: frames → messages → job inboxes.
        let shared = self.shared.clone();
        let reader_party = party.clone();
        tokio::spawn(
            async move {
                let party = reader_party;
                loop {
                    let next = tokio::select! {
                        n = next_message(&mut frames, &mut inbound) => n,
                        _ = shared.shutdown.cancelled() => break,
                    };
                    match next {
                        Ok(Some((msg, bytes))) => route(&shared, &party, msg, bytes).await,
                        Ok(None) => break,
                        Err(status) if lost_connection(&status) => {
                            // The party went away (exited, was killed, lost its network):
                            // a disconnection, not a protocol error.
                            info!(reason = %status.message(), "connection lost");
                            break;
                        }
                        Err(status) => {
                            warn!(code = ?status.code(), reason = %status.message(), "stream error");
                            audit(
                                &shared,
                                &party,
                                None,
                                "frame",
                                0,
                                &format!("stream ended: {}", status.message()),
                            );
                            // Never wait on a party that does not read: drop it if full.
                            let _ = status_tx.try_send(Err(status));
                            break;
                        }
                    }
                }
                shared.registry.disconnect(&party, session);
                if let Err(e) = shared.store.touch_party(&party.0, now_ms()) {
                    warn!(error = %e, "cannot record the party");
                }
                info!("party disconnected");
            }
            .instrument(info_span!("session", party = %party)),
        );
        let stream: FrameStream = Box::pin(ReceiverStream::new(out_rx).map(|x| x));
        Ok(Response::new(stream))
    }
}

/// Whether a stream error only means the connection is gone (the peer closed or lost it),
/// as opposed to a frame this coordinator refused.
fn lost_connection(status: &Status) -> bool {
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::ResourceExhausted
        | tonic::Code::OutOfRange
        | tonic::Code::FailedPrecondition => false,
        tonic::Code::Cancelled | tonic::Code::Unavailable => true,
        _ => {
            let m = status.message();
            [
                "close_notify",
                "broken pipe",
                "connection reset",
                "connection closed",
                "stream no longer needed",
                "error reading a body from connection",
            ]
            .iter()
            .any(|x| m.to_ascii_lowercase().contains(x))
        }
    }
}

fn audit(
    shared: &Shared,
    party: &PartyId,
    job: Option<&JobId>,
    kind: &str,
    bytes: usize,
    outcome: &str,
) {
    shared.audit(party, job, None, Direction::In, kind, bytes, outcome);
}

async fn reply(shared: &Shared, party: &PartyId, ack: pb::Ack) {
    shared.registry.send(party, coordinator_msg(pb::coordinator_message::Body::Ack(ack))).await;
}

/// Sends a message to its job's task (or relays it, for sealed payloads), or answers it here
/// when no job can take it.
async fn route(shared: &Shared, party: &PartyId, msg: pb::ParticipantMessage, bytes: usize) {
    use pb::participant_message::Body;
    let seq = msg.seq;
    let (job, input, kind) = match msg.body {
        None => {
            audit(shared, party, None, "empty", bytes, "rejected: no body");
            reply(shared, party, pb::Ack::rejected("message has no body").for_seq(seq)).await;
            return;
        }
        Some(Body::ScoreReply(r)) => {
            // Not audited one by one (a batch of single requests would write a row each);
            // counted in the metrics instead.
            let ack = if shared.scoring.deliver_score(party, r) {
                pb::Ack::accepted()
            } else {
                pb::Ack::too_late("no score query of this party is waiting for that answer")
            };
            reply(shared, party, ack.for_seq(seq)).await;
            return;
        }
        Some(Body::ContagionReply(r)) => {
            let ack = if shared.scoring.deliver_contagion(party, r) {
                pb::Ack::accepted()
            } else {
                pb::Ack::too_late("no contagion query of this party is waiting for that answer")
            };
            reply(shared, party, ack.for_seq(seq)).await;
            return;
        }
        Some(Body::Snapshot(n)) => {
            shared.scoring.snapshot(party.clone(), n).await;
            reply(shared, party, pb::Ack::accepted().for_seq(seq)).await;
            return;
        }
        Some(Body::Hello(_)) => {
            reply(shared, party, pb::Ack::rejected("Hello was already received").for_seq(seq))
                .await;
            return;
        }
        Some(Body::JobReply(reply)) => (
            JobId(reply.job_id.clone()),
            JobInput::Reply { party: party.clone(), seq, reply },
            "job_reply",
        ),
        Some(Body::Job(m)) => {
            let job = JobId(m.job_id.clone());
            match m.body {
                Some(pb::from_party::Body::Sealed(sealed)) => {
                    relay(shared, party, &job, seq, sealed, bytes).await;
                    return;
                }
                Some(pb::from_party::Body::Protocol(p)) => (
                    job,
                    JobInput::Protocol { party: party.clone(), seq, msg: p, bytes },
                    "protocol",
                ),
                None => {
                    audit(shared, party, Some(&job), "job", bytes, "rejected: no body");
                    reply(shared, party, pb::Ack::rejected("job message has no body").for_seq(seq))
                        .await;
                    return;
                }
            }
        }
    };
    match shared.inbox(&job) {
        Some(inbox) => {
            if inbox.send(input).await.is_err() {
                reply(
                    shared,
                    party,
                    pb::Ack::too_late(format!("job {job} has ended")).for_seq(seq),
                )
                .await;
            }
        }
        None => {
            audit(shared, party, Some(&job), kind, bytes, "too late: job not running");
            reply(
                shared,
                party,
                pb::Ack::too_late(format!("job {job} is not running")).for_seq(seq),
            )
            .await;
        }
    }
}

/// Relays a sealed payload to its recipients: only within a running job, only between its
/// parties. The coordinator cannot read or forge the ciphertexts (each is sealed with the
/// sender–recipient channel key); it records their sizes in the audit log. Sending waits for
/// room in each recipient's bounded queue, so a fast sender is slowed to the pace of the
/// slowest recipient (this stream's reader waits, and HTTP/2 flow control holds the sender).
async fn relay(
    shared: &Shared,
    party: &PartyId,
    job: &JobId,
    seq: u64,
    sealed: pb::Sealed,
    bytes: usize,
) {
    let Some(members) = shared.job_parties(job) else {
        audit(shared, party, Some(job), "sealed", bytes, "too late: job not running");
        reply(shared, party, pb::Ack::too_late(format!("job {job} is not running")).for_seq(seq))
            .await;
        return;
    };
    let reject = |why: String| async move {
        audit(shared, party, Some(job), "sealed", bytes, &format!("rejected: {why}"));
        reply(shared, party, pb::Ack::rejected(why).for_seq(seq)).await;
    };
    if !members.contains(party) {
        return reject(format!("{party} is not a party of job {job}")).await;
    }
    if let Some(to) = sealed.ciphertexts.keys().find(|t| !members.contains(&PartyId((*t).clone())))
    {
        return reject(format!("{to} is not a party of job {job}")).await;
    }
    if sealed.ciphertexts.is_empty() {
        return reject("a sealed message without recipients".into()).await;
    }
    let mut lost = Vec::new();
    let mut recipients: Vec<(String, Vec<u8>)> = sealed.ciphertexts.into_iter().collect();
    recipients.sort_by(|a, b| a.0.cmp(&b.0));
    let mut from = party.0.clone();
    for (to, mut ct) in recipients {
        let size = ct.len();
        let to = PartyId(to);
        match shared.config.fault.map(|f| f.relay) {
            Some(RelayTamper::FlipBit) => {
                if let Some(b) = ct.get_mut(size / 2) {
                    *b ^= 0x10;
                }
            }
            Some(RelayTamper::Resender) => {
                if let Some(other) = members.iter().find(|p| *p != party && **p != to) {
                    from = other.0.clone();
                }
            }
            None => {}
        }
        let msg = coordinator_msg(pb::coordinator_message::Body::Job(pb::ToParty {
            job_id: job.0.clone(),
            body: Some(pb::to_party::Body::Relayed(pb::Relayed {
                from: from.clone(),
                stream: sealed.stream,
                seq: sealed.seq,
                last: sealed.last,
                ciphertext: ct,
            })),
        }));
        if shared.registry.send(&to, msg).await {
            shared.audit(
                &to,
                Some(job),
                None,
                Direction::Out,
                "relayed",
                size,
                &format!("from {party}"),
            );
        } else {
            lost.push(to.0);
        }
    }
    if lost.is_empty() {
        audit(shared, party, Some(job), "sealed", bytes, "relayed");
        reply(shared, party, pb::Ack::accepted().for_seq(seq)).await;
    } else {
        let why = format!("not connected: {}", lost.join(", "));
        audit(shared, party, Some(job), "sealed", bytes, &format!("rejected: {why}"));
        reply(shared, party, pb::Ack::rejected(why).for_seq(seq)).await;
    }
}
