//! A party's session in one job: its [`Role`], its sealed channels and the verified directory
//! of its peers. The daemon (and the in-memory federation) feed it every [`pb::ToParty`] of
//! the job and send what it returns; sealing and opening happen here, so a role only ever
//! sees typed payloads from authenticated peers.

use std::sync::Arc;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_proto::pb;
use rand::Rng;
use serde::Deserialize;

use super::{CsRng, Role, RoleError, RoleOutbox};
use crate::auth::{AuthError, Signer, Verifier};
use crate::channel::{ChannelRefusal, Channels};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;

/// What a role needs to sign its statements and check its peers'.
#[derive(Debug, Clone, Copy)]
pub struct PartyAuth<'a> {
    /// This party.
    pub me: &'a PartyId,
    /// Its certificate key (absent in an insecure federation).
    pub signer: Option<&'a dyn Signer>,
    /// The federation CA (absent in an insecure federation: nothing is checked then).
    pub verifier: Option<&'a dyn Verifier>,
    /// The verified directory (peers' certificates).
    pub channels: &'a Channels,
}

impl PartyAuth<'_> {
    /// Signs `message` (empty without a signer).
    ///
    /// # Errors
    /// [`AuthError::Sign`].
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        match self.signer {
            Some(s) => s.sign(message),
            None => Ok(Vec::new()),
        }
    }

    /// Whether peers' signatures are checked (a CA is configured).
    pub fn checks(&self) -> bool {
        self.verifier.is_some()
    }

    /// Checks `party`'s signature over `message` with the certificate in the verified
    /// directory. Always succeeds without a verifier.
    ///
    /// # Errors
    /// [`AuthError`] when the party has no verified certificate or the signature is bad.
    pub fn verify_peer(
        &self,
        party: &PartyId,
        message: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), AuthError> {
        let Some(v) = self.verifier else { return Ok(()) };
        if signature.is_empty() {
            return Err(AuthError::Unsigned { party: party.clone(), what });
        }
        let cert = self.channels.certificate(party).ok_or_else(|| AuthError::Certificate {
            party: party.clone(),
            reason: "no verified certificate in the job's directory".into(),
        })?;
        v.verify(party, cert, message, signature, what)
    }
}

/// A stream of payloads to other parties, pulled by the runtime one message at a time (so a
/// large payload never sits whole in memory).
pub struct OutStream {
    /// Recipients.
    pub to: Vec<PartyId>,
    /// The messages, produced on demand.
    pub source: Box<dyn Iterator<Item = pb::Payload> + Send>,
}

impl std::fmt::Debug for OutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutStream").field("to", &self.to).finish_non_exhaustive()
    }
}

/// A party's certificate key and the federation CA, as a session uses them (both absent in
/// an insecure federation: nothing is signed or checked then).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Signs with the party's certificate key.
    pub signer: Option<Arc<dyn Signer>>,
    /// Checks peers against the federation CA.
    pub verifier: Option<Arc<dyn Verifier>>,
}

/// What the session asks the runtime to do.
pub enum SessionOutput {
    /// Send this message to the coordinator.
    Send(pb::FromParty),
    /// Pull this stream, seal each item with [`PartySession::seal`] under `stream` and send it
    /// (the last item with `last = true`).
    Stream {
        /// Random stream id.
        stream: u64,
        /// The stream.
        stream_out: OutStream,
    },
    /// Pull this stream and send each message to the coordinator, in order.
    Reports(super::ReportStream),
    /// The session's state changed: write [`PartySession::checkpoint`] before sending the
    /// outputs that follow.
    Checkpoint,
    /// The session's state changed: write [`PartySession::checkpoint`] after sending the
    /// outputs before it, and before handing the session its next message.
    CheckpointAfterSend,
}

impl std::fmt::Debug for SessionOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionOutput::Send(m) => f.debug_tuple("Send").field(m).finish(),
            SessionOutput::Stream { stream, stream_out } => f
                .debug_struct("Stream")
                .field("stream", stream)
                .field("stream_out", stream_out)
                .finish(),
            SessionOutput::Reports(_) => f.write_str("Reports(..)"),
            SessionOutput::Checkpoint => f.write_str("Checkpoint"),
            SessionOutput::CheckpointAfterSend => f.write_str("CheckpointAfterSend"),
        }
    }
}

/// Why a message to the session was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The directory or a sealed message was refused.
    #[error(transparent)]
    Channel(#[from] ChannelRefusal),
    /// The role refused a message.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The message does not belong to this session.
    #[error("{0}")]
    Wrong(String),
}

/// The most bytes one sealed payload may hold (the coordinator's default message limit is
/// 128 MiB); roles stream anything larger in pieces.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// The session's own checkpoint as an older version wrote it: JSON with the role's bytes as
/// a number array (3–4 characters per byte), still read.
#[derive(Deserialize)]
struct SavedJson {
    channel_secret: [u8; 32],
    role: Vec<u8>,
}

impl Drop for SavedJson {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.channel_secret);
    }
}

/// Leading bytes of a session checkpoint: `MAGIC ‖ channel secret (32) ‖ the role's bytes`.
/// Written before every unmask, so its size is paid at every step: the role's bytes go as
/// they are, not re-encoded.
const MAGIC: &[u8; 4] = b"FCS\x01";

/// Splits a saved session into the channel secret and the role's bytes.
///
/// # Errors
/// A message when the bytes are not a session checkpoint.
pub fn split_checkpoint(bytes: &[u8]) -> Result<(ChannelSecret, Vec<u8>), String> {
    if let Some(rest) = bytes.strip_prefix(MAGIC) {
        let (secret, role) = rest
            .split_first_chunk::<32>()
            .ok_or("session checkpoint: shorter than its channel secret")?;
        return Ok((ChannelSecret::from_bytes(*secret), role.to_vec()));
    }
    let mut saved: SavedJson =
        serde_json::from_slice(bytes).map_err(|e| format!("session checkpoint: {e}"))?;
    let role = std::mem::take(&mut saved.role);
    Ok((ChannelSecret::from_bytes(saved.channel_secret), role))
}

/// One party's session in one job.
#[derive(Debug)]
pub struct PartySession {
    job: JobId,
    me: PartyId,
    parties: Vec<PartyId>,
    role: Box<dyn Role>,
    channels: Channels,
    signer: Option<Arc<dyn Signer>>,
    verifier: Option<Arc<dyn Verifier>>,
    rng: CsRng,
}

impl PartySession {
    /// A session of `me` in the job `spec` (with id `job`) running `role`.
    pub fn new(
        job: JobId,
        spec: &JobSpec,
        me: PartyId,
        role: Box<dyn Role>,
        channel_secret: ChannelSecret,
        identity: Identity,
        rng: CsRng,
    ) -> Self {
        let channels = Channels::new(job.clone(), me.clone(), channel_secret);
        let Identity { signer, verifier } = identity;
        Self { job, me, parties: spec.parties.clone(), role, channels, signer, verifier, rng }
    }

    /// The job.
    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// The role's state version (0 = fresh).
    pub fn state_version(&self) -> u64 {
        self.role.state_version()
    }

    /// The party's part of the trained model, once the role has one ([`Role::model_part`]).
    pub fn model_part(&self) -> Option<String> {
        self.role.model_part()
    }

    /// What the party reports when it (re)joins.
    pub fn join_state(&self) -> super::JoinState {
        super::JoinState { version: self.role.state_version(), next_step: self.role.next_step() }
    }

    /// This party's signed channel key, for its job reply.
    ///
    /// # Errors
    /// [`AuthError::Sign`].
    pub fn channel_key(&self) -> Result<pb::ChannelKey, AuthError> {
        self.channels.my_key(self.signer.as_deref())
    }

    /// The session's checkpoint (channel secret and role state), for the party's state
    /// directory only.
    pub fn checkpoint(&self) -> Vec<u8> {
        let role = self.role.checkpoint();
        let mut out = Vec::with_capacity(MAGIC.len() + 32 + role.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&*self.channels.secret().to_bytes());
        out.extend_from_slice(&role);
        out
    }

    fn wrap(&self, body: pb::from_party::Body) -> pb::FromParty {
        pb::FromParty { job_id: self.job.0.clone(), body: Some(body) }
    }

    /// Seals message `seq` of `stream` to `to`.
    ///
    /// # Errors
    /// [`ChannelRefusal`] for a recipient without a verified key.
    pub fn seal(
        &self,
        to: &[PartyId],
        stream: u64,
        seq: u32,
        last: bool,
        payload: &pb::Payload,
    ) -> Result<pb::FromParty, ChannelRefusal> {
        let sealed = self.channels.seal(to, stream, seq, last, payload)?;
        Ok(self.wrap(pb::from_party::Body::Sealed(sealed)))
    }

    fn drain(&mut self, out: RoleOutbox) -> Result<Vec<SessionOutput>, SessionError> {
        let mut res = Vec::new();
        // The state is written before anything leaves: what a role remembers to refuse (an
        // unmasked step) must survive a crash right after sending.
        if out.checkpoint {
            res.push(SessionOutput::Checkpoint);
        }
        for m in out.messages {
            res.push(SessionOutput::Send(self.wrap(pb::from_party::Body::Protocol(m))));
        }
        for (to, payload) in out.payloads {
            // One sealed payload travels as one message; the coordinator refuses one above its
            // limit, and a party would retry it forever. Large data goes as a stream.
            let size = prost::Message::encoded_len(&payload);
            if size > MAX_PAYLOAD_BYTES {
                return Err(SessionError::Role(RoleError(format!(
                    "{}: a payload of {size} bytes to {} is over the {MAX_PAYLOAD_BYTES} bytes one \
                     message may carry (large data must be streamed in pieces)",
                    self.me,
                    to.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(", ")
                ))));
            }
            let stream = self.rng.next_u64();
            res.push(SessionOutput::Send(self.seal(&to, stream, 0, true, &payload)?));
        }
        for s in out.streams {
            res.push(SessionOutput::Stream { stream: self.rng.next_u64(), stream_out: s });
        }
        for r in out.reports {
            res.push(SessionOutput::Reports(r));
        }
        if out.checkpoint_after_send && !out.checkpoint {
            res.push(SessionOutput::CheckpointAfterSend);
        }
        Ok(res)
    }

    /// Handles one message of the job from the coordinator.
    ///
    /// # Errors
    /// [`SessionError`] when it is refused. A role reports a step it cannot do to the
    /// conductor itself (a `StepFailed` in the outputs) and errs only on messages that
    /// open no step, which callers log.
    pub fn handle(&mut self, msg: pb::ToParty) -> Result<Vec<SessionOutput>, SessionError> {
        if msg.job_id != self.job.0 {
            return Err(SessionError::Wrong(format!(
                "message for job {} reached the session of job {}",
                msg.job_id, self.job
            )));
        }
        let mut out = RoleOutbox::default();
        match msg.body {
            None => return Err(SessionError::Wrong("job message without a body".into())),
            Some(pb::to_party::Body::Directory(dir)) => {
                self.channels.accept_directory(&dir, self.verifier.as_deref(), &self.parties)?;
                return Ok(Vec::new());
            }
            Some(pb::to_party::Body::Relayed(r)) => {
                let (from, payload) = self.channels.open(&r)?;
                self.role.payload(&from, payload, &mut self.rng, &mut out)?;
            }
            Some(pb::to_party::Body::Protocol(m)) => {
                let auth = PartyAuth {
                    me: &self.me,
                    signer: self.signer.as_deref(),
                    verifier: self.verifier.as_deref(),
                    channels: &self.channels,
                };
                self.role.receive(m, &auth, &mut self.rng, &mut out)?;
            }
        }
        self.drain(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_split_in_both_formats() {
        let secret = [7u8; 32];
        let role = br#"{"policy":{}}"#.to_vec();
        let mut binary = MAGIC.to_vec();
        binary.extend_from_slice(&secret);
        binary.extend_from_slice(&role);
        let (s, r) = split_checkpoint(&binary).expect("binary");
        assert_eq!((*s.to_bytes(), r), (secret, role.clone()));
        // the JSON an older version wrote
        let json = format!(
            r#"{{"channel_secret":{:?},"role":{:?}}}"#,
            secret.to_vec(),
            role.iter().map(|&b| u32::from(b)).collect::<Vec<_>>()
        );
        let (s, r) = split_checkpoint(json.as_bytes()).expect("json");
        assert_eq!((*s.to_bytes(), r), (secret, role));
        assert!(split_checkpoint(&binary[..20]).is_err());
        assert!(split_checkpoint(b"not a checkpoint").is_err());
    }
}
