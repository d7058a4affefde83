//! A relay benchmark: one party streams a payload of seeded bytes to another through the
//! coordinator, sealed end to end ([`crate::channel`]). It measures the party-to-party path
//! the vertical protocols use for large payloads (encrypted gradients and histograms, PSI
//! sets), and shows that memory stays bounded on every hop: the sender produces chunks only
//! as the runtime pulls them, the coordinator holds a bounded queue per party, and the
//! receiver checks each chunk as it arrives and keeps none.
//!
//! The bytes are ChaCha20 keystream under the job's seed: public by construction, so the
//! receiver regenerates them and checks every byte, and reports a SHA-256 of the stream.

use std::collections::BTreeMap;

use fedcredit_proto::pb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{
    Conductor, CsRng, JoinState, OutStream, Outbox, Outcome, PartyAuth, Progress, Receipt,
    Rejection, Role, RoleError, RoleOutbox,
};

/// `[model] kind = "relay_bench"`: the job's first party streams `bytes` to its second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayBenchSpec {
    /// Bytes to stream.
    pub bytes: u64,
    /// Bytes per sealed message; default 512 KiB.
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// Seed of the bytes.
    #[serde(default)]
    pub seed: u64,
}

fn default_chunk() -> usize {
    512 * 1024
}

/// Largest chunk: sealed and framed, one message must fit one transport frame (1 MiB).
pub const MAX_CHUNK: usize = 1000 * 1024;

impl RelayBenchSpec {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=1 << 40).contains(&self.bytes) {
            return Err(("bytes".into(), "must be between 1 and 2^40".into()));
        }
        if !(1..=MAX_CHUNK).contains(&self.chunk) {
            return Err(("chunk".into(), format!("must be between 1 and {MAX_CHUNK}")));
        }
        Ok(())
    }
}

fn seeded(seed: u64) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(b"fedcredit relay bench v1");
    h.update(seed.to_le_bytes());
    ChaCha20Rng::from_seed(h.finalize().into())
}

/// The sender's lazily produced chunks.
struct Chunks {
    rng: ChaCha20Rng,
    left: u64,
    chunk: usize,
}

impl Iterator for Chunks {
    type Item = pb::Payload;
    fn next(&mut self) -> Option<pb::Payload> {
        if self.left == 0 {
            return None;
        }
        let n = (self.chunk as u64).min(self.left) as usize;
        let mut data = vec![0u8; n];
        self.rng.fill_bytes(&mut data);
        self.left -= n as u64;
        Some(pb::Payload { body: Some(pb::payload::Body::Bench(pb::BenchChunk { data })) })
    }
}

/// The coordinator's side: starts the stream, waits for the receiver's report.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayConductor {
    spec: RelayBenchSpec,
    from: Option<PartyId>,
    to: Option<PartyId>,
    done: bool,
}

impl RelayConductor {
    /// A relay run.
    ///
    /// # Errors
    /// Never for a validated spec; kept for the factory's signature.
    pub fn new(spec: &RelayBenchSpec) -> Result<Self, String> {
        Ok(Self { spec: *spec, from: None, to: None, done: false })
    }

    /// A conductor saved with [`Conductor::checkpoint`].
    ///
    /// # Errors
    /// A message when the bytes are not such a checkpoint.
    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("checkpoint cannot be read: {e}"))
    }
}

impl Conductor for RelayConductor {
    fn start(
        &mut self,
        parties: &BTreeMap<PartyId, JoinState>,
        out: &mut Outbox,
    ) -> Result<(), String> {
        let (Some(from), Some(to)) = (self.from.clone(), self.to.clone()) else {
            return Err("the relay conductor has no parties".into());
        };
        for p in [&from, &to] {
            if !parties.contains_key(p) {
                return Err(format!("{p} is not ready"));
            }
        }
        let start = pb::RelayBenchStart {
            from: from.0.clone(),
            to: to.0.clone(),
            bytes: self.spec.bytes,
            chunk: self.spec.chunk as u32,
            seed: self.spec.seed,
        };
        for p in [&from, &to] {
            out.send(
                p,
                pb::ConductorMessage {
                    body: Some(pb::conductor_message::Body::RelayBench(start.clone())),
                },
            );
        }
        Ok(())
    }

    fn receive(
        &mut self,
        from: &PartyId,
        msg: pb::RoleMessage,
        out: &mut Outbox,
    ) -> Result<Receipt, Rejection> {
        match msg.body {
            Some(pb::role_message::Body::RelayBenchDone(d)) if Some(from) == self.to.as_ref() => {
                if d.bytes != self.spec.bytes {
                    return Err(Rejection::rejected(format!(
                        "{} bytes reported, {} sent",
                        d.bytes, self.spec.bytes
                    )));
                }
                self.done = true;
                let mut metrics = BTreeMap::new();
                metrics.insert("bytes".into(), d.bytes as f64);
                out.finished = Some(Outcome { artifact_json: None, metrics });
                Ok(Receipt)
            }
            Some(pb::role_message::Body::Failed(f)) => {
                Err(Rejection::rejected(format!("{from} failed: {}", f.reason)))
            }
            _ => Err(Rejection::rejected("not a relay-benchmark message")),
        }
    }

    fn rejoin(&mut self, _party: &PartyId, _state: JoinState, _out: &mut Outbox) {}

    fn left(&mut self, _party: &PartyId) {}

    fn pending(&self) -> Vec<PartyId> {
        if self.done { Vec::new() } else { self.to.iter().cloned().collect() }
    }

    fn close_phase(&mut self, _out: &mut Outbox) -> Result<(), String> {
        if self.done { Ok(()) } else { Err("the payload did not arrive in time".into()) }
    }

    fn status(&self) -> String {
        format!("relaying {} bytes", self.spec.bytes)
    }

    fn progress(&self) -> Progress {
        Progress {
            stage: "relay".into(),
            done: u64::from(self.done),
            total: 1,
            ..Default::default()
        }
    }

    fn checkpoint(&self, _logged: usize) -> crate::protocol::Checkpoint {
        crate::protocol::Checkpoint {
            state: serde_json::to_vec(self).unwrap_or_default(),
            log: Vec::new(),
        }
    }
}

/// Sets the sender and receiver from the job's party list.
pub(crate) fn relay_parties(spec: &JobSpec, c: &mut RelayConductor) {
    c.from = spec.parties.first().cloned();
    c.to = spec.parties.get(1).cloned();
}

/// A party's side: the sender streams, the receiver checks every byte.
#[derive(Debug)]
pub struct RelayRole {
    me: PartyId,
    spec: RelayBenchSpec,
    from: Option<PartyId>,
    expected: Option<ChaCha20Rng>,
    received: u64,
    hasher: Sha256,
    buf: Vec<u8>,
}

impl RelayRole {
    /// The role of `me` in a relay job.
    pub fn new(me: PartyId, spec: &RelayBenchSpec) -> Self {
        Self {
            me,
            spec: *spec,
            from: None,
            expected: None,
            received: 0,
            hasher: Sha256::new(),
            buf: Vec::new(),
        }
    }
}

impl Role for RelayRole {
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        _auth: &PartyAuth<'_>,
        _rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        let Some(pb::conductor_message::Body::RelayBench(s)) = msg.body else {
            return Err(RoleError("not a relay-benchmark message".into()));
        };
        if s.bytes != self.spec.bytes || s.seed != self.spec.seed {
            return Err(RoleError("the start message differs from the job".into()));
        }
        let (from, to) = (PartyId(s.from), PartyId(s.to));
        if from == self.me {
            out.streams.push(OutStream {
                to: vec![to],
                source: Box::new(Chunks {
                    rng: seeded(s.seed),
                    left: s.bytes,
                    chunk: (s.chunk as usize).clamp(1, MAX_CHUNK),
                }),
            });
        } else if to == self.me {
            self.from = Some(from);
            self.expected = Some(seeded(s.seed));
        }
        Ok(())
    }

    fn payload(
        &mut self,
        from: &PartyId,
        payload: pb::Payload,
        _rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        if Some(from) != self.from.as_ref() {
            return Err(RoleError(format!("a payload from {from}, who is not the sender")));
        }
        let Some(pb::payload::Body::Bench(c)) = payload.body else {
            return Err(RoleError("not a benchmark chunk".into()));
        };
        let rng = self.expected.as_mut().ok_or_else(|| RoleError("no stream expected".into()))?;
        self.buf.resize(c.data.len(), 0);
        rng.fill_bytes(&mut self.buf);
        if self.buf != c.data {
            return Err(RoleError(format!(
                "bytes {}..{} differ from the seeded stream",
                self.received,
                self.received + c.data.len() as u64
            )));
        }
        self.hasher.update(&c.data);
        self.received += c.data.len() as u64;
        if self.received == self.spec.bytes {
            let digest = std::mem::take(&mut self.hasher).finalize().to_vec();
            out.send(pb::role_message::Body::RelayBenchDone(pb::RelayBenchDone {
                bytes: self.received,
                digest,
            }));
        }
        Ok(())
    }

    fn state_version(&self) -> u64 {
        0
    }

    fn checkpoint(&self) -> Vec<u8> {
        Vec::new()
    }
}
