//! Party-to-party channels of one job, relayed by the coordinator, sealed end to end.
//!
//! Each party draws an X25519 channel key for the job and publishes it signed with its
//! certificate key ([`Channels::my_key`]); the coordinator collects the keys into a
//! [`pb::PeerDirectory`] and hands it to every party, which checks each entry itself
//! ([`Channels::accept_directory`]): the certificate chains to the federation CA, its name is
//! the roster name, and the signature over `(job, party, key)` verifies. Payloads are typed
//! protobuf messages ([`pb::Payload`]) sealed per recipient with the pair's direction key
//! (`fedcredit_crypto::channel`): the coordinator relays bytes it can neither read nor forge,
//! and a message it alters, re-addresses, replays, reorders or truncates is refused by the
//! receiver. Streams are sequences of messages under one random stream id; the receiver
//! checks that indices arrive in order and that nothing follows the last one.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_crypto::channel::{ChannelError, ChannelSecret, PairKeys};
use fedcredit_proto::pb;
use prost::Message;

use crate::auth::{AuthError, Signer, Verifier, statement};
use crate::ids::{JobId, PartyId};

/// Why a directory entry or a sealed message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChannelRefusal {
    /// A directory entry failed verification.
    #[error("channel key of {party}: {source}")]
    Auth {
        /// The party of the entry.
        party: PartyId,
        /// Why.
        source: AuthError,
    },
    /// A directory names a party outside the job.
    #[error("the directory lists {0}, who is not a party of this job")]
    Stranger(PartyId),
    /// A directory entry's key cannot be a party's own: a low-order point, this party's own
    /// key, or another party's key.
    #[error("channel key of {party}: {reason}")]
    BadKey {
        /// The party of the entry.
        party: PartyId,
        /// What is wrong.
        reason: String,
    },
    /// Cryptographic failure (bad key, failed authentication).
    #[error(transparent)]
    Crypto(#[from] ChannelError),
    /// No verified channel key for this party yet.
    #[error("no verified channel key for {0}")]
    NoKey(PartyId),
    /// A message arrived out of order, after the end of its stream, or undecodable.
    #[error("sealed message from {from}: {reason}")]
    Stream {
        /// Sender.
        from: PartyId,
        /// What is wrong.
        reason: String,
    },
}

/// The statement a party signs for its channel key.
pub fn channel_key_statement(job: &JobId, party: &PartyId, key: &[u8]) -> Vec<u8> {
    statement("fedcredit channel key v1", &[job.0.as_bytes(), party.0.as_bytes(), key])
}

/// A verified directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Certificate, DER (empty in an insecure federation).
    pub certificate: Vec<u8>,
    /// X25519 channel public key.
    pub key: [u8; 32],
}

/// One party's channels for one job.
#[derive(Debug)]
pub struct Channels {
    job: JobId,
    me: PartyId,
    secret: ChannelSecret,
    peers: BTreeMap<PartyId, Peer>,
    pairs: BTreeMap<PartyId, PairKeys>,
    /// (sender, stream) → next index expected.
    open_streams: BTreeMap<(PartyId, u64), u32>,
    closed_streams: BTreeSet<(PartyId, u64)>,
}

impl Channels {
    /// Channels of `me` in `job` with its channel secret (fresh, or restored from the party's
    /// checkpoint).
    pub fn new(job: JobId, me: PartyId, secret: ChannelSecret) -> Self {
        Self {
            job,
            me,
            secret,
            peers: BTreeMap::new(),
            pairs: BTreeMap::new(),
            open_streams: BTreeMap::new(),
            closed_streams: BTreeSet::new(),
        }
    }

    /// The channel secret (for the party's own checkpoint).
    pub fn secret(&self) -> &ChannelSecret {
        &self.secret
    }

    /// This party's signed channel key for the job.
    ///
    /// # Errors
    /// [`AuthError::Sign`] when the certificate key cannot sign.
    pub fn my_key(&self, signer: Option<&dyn Signer>) -> Result<pb::ChannelKey, AuthError> {
        let public = self.secret.public();
        Ok(match signer {
            Some(s) => pb::ChannelKey {
                certificate: s.certificate().to_vec(),
                public_key: public.to_vec(),
                signature: s.sign(&channel_key_statement(&self.job, &self.me, &public))?,
            },
            None => pb::ChannelKey { public_key: public.to_vec(), ..Default::default() },
        })
    }

    /// Checks every entry of `dir` and keeps the verified ones (replacing earlier keys of the
    /// same parties). With a `verifier`, unsigned entries are refused; entries naming parties
    /// outside `job_parties` are refused, and so are keys no party can hold as its own: a
    /// low-order point (non-contributory agreement), this party's own key, or one key for two
    /// parties (whoever holds the secret of a key listed twice derives both parties' pair
    /// secrets with everyone, and the party that copied it cannot derive any).
    ///
    /// # Errors
    /// The first refused entry; nothing of `dir` is kept then.
    pub fn accept_directory(
        &mut self,
        dir: &pb::PeerDirectory,
        verifier: Option<&dyn Verifier>,
        job_parties: &[PartyId],
    ) -> Result<(), ChannelRefusal> {
        let mut verified = BTreeMap::new();
        for e in &dir.peers {
            let party = PartyId(e.party.clone());
            if !job_parties.contains(&party) {
                return Err(ChannelRefusal::Stranger(party));
            }
            let key = e.key.clone().unwrap_or_default();
            let k: [u8; 32] = key
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| ChannelError::KeyLength(key.public_key.len()))?;
            if let Some(v) = verifier {
                if key.signature.is_empty() {
                    return Err(ChannelRefusal::Auth {
                        source: AuthError::Unsigned { party: party.clone(), what: "channel key" },
                        party,
                    });
                }
                v.verify(
                    &party,
                    &key.certificate,
                    &channel_key_statement(&self.job, &party, &k),
                    &key.signature,
                    "channel key",
                )
                .map_err(|source| ChannelRefusal::Auth { party: party.clone(), source })?;
            }
            verified.insert(party, Peer { certificate: key.certificate, key: k });
        }
        let mine = self.secret.public();
        // Keys already held for parties this directory does not list count too.
        let mut owners: BTreeMap<[u8; 32], &PartyId> = self
            .peers
            .iter()
            .filter(|(p, _)| !verified.contains_key(*p))
            .map(|(p, peer)| (peer.key, p))
            .collect();
        for (p, peer) in &verified {
            let bad = |reason: String| ChannelRefusal::BadKey { party: p.clone(), reason };
            if *p != self.me && peer.key == mine {
                return Err(bad("it is this party's own channel key".into()));
            }
            if let Some(q) = owners.insert(peer.key, p) {
                return Err(bad(format!("it is the channel key of {q}")));
            }
        }
        let mut pairs = BTreeMap::new();
        for (p, peer) in &verified {
            if *p != self.me {
                let ctx = self.job.0.as_bytes();
                let pair = self.secret.pair(ctx, &self.me.0, &p.0, &peer.key).map_err(|e| {
                    ChannelRefusal::BadKey { party: p.clone(), reason: e.to_string() }
                })?;
                pairs.insert(p.clone(), pair);
            }
        }
        for (p, peer) in verified {
            if self.peers.get(&p) != Some(&peer) {
                // A new key: streams under the old one cannot continue.
                self.open_streams.retain(|(from, _), _| *from != p);
            }
            self.peers.insert(p, peer);
        }
        self.pairs.extend(pairs);
        Ok(())
    }

    /// The verified certificate of `party`, if any.
    pub fn certificate(&self, party: &PartyId) -> Option<&[u8]> {
        self.peers.get(party).map(|p| p.certificate.as_slice())
    }

    /// The secure-aggregation root shared with `peer` (from both channel keys).
    pub fn secagg_root(&self, peer: &PartyId) -> Option<fedcredit_crypto::secagg::PairRoot> {
        self.pairs.get(peer).map(PairKeys::secagg_root)
    }

    /// Parties with a verified channel key (this party included).
    pub fn known(&self) -> impl Iterator<Item = &PartyId> {
        self.peers.keys()
    }

    /// Seals message `seq` of `stream` for each of `to`.
    ///
    /// # Errors
    /// [`ChannelRefusal::NoKey`] for a recipient without a verified key.
    pub fn seal(
        &self,
        to: &[PartyId],
        stream: u64,
        seq: u32,
        last: bool,
        payload: &pb::Payload,
    ) -> Result<pb::Sealed, ChannelRefusal> {
        let bytes = zeroize::Zeroizing::new(payload.encode_to_vec());
        let mut ciphertexts = std::collections::HashMap::new();
        for p in to {
            let pair = self.pairs.get(p).ok_or_else(|| ChannelRefusal::NoKey(p.clone()))?;
            ciphertexts.insert(p.0.clone(), pair.seal(stream, seq, last, &bytes)?);
        }
        Ok(pb::Sealed { stream, seq: u64::from(seq), last, ciphertexts })
    }

    /// Opens a relayed message, checking its place in its stream.
    ///
    /// # Errors
    /// [`ChannelRefusal`] when it fails authentication, is out of order, follows the end of
    /// its stream, or does not decode.
    pub fn open(&mut self, r: &pb::Relayed) -> Result<(PartyId, pb::Payload), ChannelRefusal> {
        let from = PartyId(r.from.clone());
        let stream_err = |reason: String| ChannelRefusal::Stream { from: from.clone(), reason };
        let seq = u32::try_from(r.seq).map_err(|_| stream_err(format!("index {}", r.seq)))?;
        let key = (from.clone(), r.stream);
        if self.closed_streams.contains(&key) {
            return Err(stream_err(format!("stream {:016x} already ended", r.stream)));
        }
        let expected = self.open_streams.get(&key).copied().unwrap_or(0);
        if seq != expected {
            return Err(stream_err(format!(
                "stream {:016x}: message {seq} arrived, expected {expected}",
                r.stream
            )));
        }
        let pair = self.pairs.get(&from).ok_or_else(|| ChannelRefusal::NoKey(from.clone()))?;
        let plain = pair.open(r.stream, seq, r.last, &r.ciphertext)?;
        let payload = pb::Payload::decode(plain.as_slice())
            .map_err(|e| stream_err(format!("undecodable payload: {e}")))?;
        if r.last {
            self.open_streams.remove(&key);
            self.closed_streams.insert(key);
        } else {
            self.open_streams.insert(key, seq + 1);
        }
        Ok((from, payload))
    }
}
