//! Messages on the participant stream as frames: small messages travel whole, larger ones as
//! ordered [`Chunk`]s of at most [`MAX_CHUNK`] bytes, reassembled within a size bound.
//!
//! Both ends use the same two types: [`Outbound`] turns a message into frames,
//! [`Inbound`] turns frames back into messages (with their encoded size, for the audit log).

use fedcredit_proto::pb;
use prost::Message;

use crate::frame::{Chunk, Chunker, FrameError, Reassembler};

/// Largest chunk of a split message, in bytes. gRPC's own per-message limit must leave room
/// for it plus framing overhead (see [`MAX_FRAME`]).
pub const MAX_CHUNK: usize = 1 << 20;
/// Largest single frame a receiver accepts (`max_decoding_message_size`).
pub const MAX_FRAME: usize = MAX_CHUNK + 64 * 1024;
/// Half-received messages a receiver holds at once.
const MAX_PENDING: usize = 4;

/// A frame that cannot be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reassembly refused a chunk (order, count, size limits).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The bytes are not the protobuf message they should be.
    #[error("cannot decode a {what}: {source}")]
    Decode {
        /// The message type.
        what: &'static str,
        /// Why.
        source: prost::DecodeError,
    },
    /// A frame with no body.
    #[error("empty frame")]
    Empty,
}

/// Splits outgoing messages into frames.
#[derive(Debug)]
pub struct Outbound {
    chunker: Chunker,
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    /// Frames of at most [`MAX_CHUNK`] payload bytes.
    pub fn new() -> Self {
        // MAX_CHUNK is not zero, the only value `Chunker::new` refuses.
        Self { chunker: Chunker::new(MAX_CHUNK).unwrap_or_else(|_| unreachable!()) }
    }

    fn split(&mut self, bytes: Vec<u8>) -> Result<Vec<Chunk>, FrameError> {
        self.chunker.split(bytes)
    }

    /// The frames of a coordinator message.
    ///
    /// # Errors
    /// [`FrameError`] only for messages beyond `u32::MAX` chunks.
    pub fn coordinator(
        &mut self,
        msg: pb::CoordinatorMessage,
    ) -> Result<Vec<pb::CoordinatorFrame>, FrameError> {
        use pb::coordinator_frame::Body;
        if msg.encoded_len() <= MAX_CHUNK {
            return Ok(vec![pb::CoordinatorFrame { body: Some(Body::Message(msg)) }]);
        }
        Ok(self
            .split(msg.encode_to_vec())?
            .into_iter()
            .map(|c| pb::CoordinatorFrame { body: Some(Body::Chunk(to_pb(c))) })
            .collect())
    }

    /// The frames of a participant message.
    ///
    /// # Errors
    /// [`FrameError`] only for messages beyond `u32::MAX` chunks.
    pub fn participant(
        &mut self,
        msg: pb::ParticipantMessage,
    ) -> Result<Vec<pb::ParticipantFrame>, FrameError> {
        use pb::participant_frame::Body;
        if msg.encoded_len() <= MAX_CHUNK {
            return Ok(vec![pb::ParticipantFrame { body: Some(Body::Message(msg)) }]);
        }
        Ok(self
            .split(msg.encode_to_vec())?
            .into_iter()
            .map(|c| pb::ParticipantFrame { body: Some(Body::Chunk(to_pb(c))) })
            .collect())
    }
}

fn to_pb(c: Chunk) -> pb::Chunk {
    pb::Chunk { message_id: c.message_id, index: c.index, count: c.count, data: c.data }
}

fn from_pb(c: pb::Chunk) -> Chunk {
    Chunk { message_id: c.message_id, index: c.index, count: c.count, data: c.data }
}

/// Reassembles incoming frames into messages.
#[derive(Debug)]
pub struct Inbound {
    reassembler: Reassembler,
}

impl Inbound {
    /// Accepts messages of up to `max_message` encoded bytes.
    pub fn new(max_message: usize) -> Self {
        Self { reassembler: Reassembler::new(max_message, MAX_PENDING) }
    }

    fn chunk<M: Message + Default>(
        &mut self,
        c: pb::Chunk,
        what: &'static str,
    ) -> Result<Option<(M, usize)>, StreamError> {
        match self.reassembler.push(from_pb(c))? {
            None => Ok(None),
            Some((_, bytes)) => {
                let m = M::decode(bytes.as_slice())
                    .map_err(|source| StreamError::Decode { what, source })?;
                Ok(Some((m, bytes.len())))
            }
        }
    }

    /// The message a coordinator frame completes, if any, with its encoded size.
    ///
    /// # Errors
    /// [`StreamError`] for an empty frame, a chunk out of order or over the size limit, or bytes
    /// that do not decode.
    pub fn coordinator(
        &mut self,
        f: pb::CoordinatorFrame,
    ) -> Result<Option<(pb::CoordinatorMessage, usize)>, StreamError> {
        use pb::coordinator_frame::Body;
        match f.body.ok_or(StreamError::Empty)? {
            Body::Message(m) => {
                let n = m.encoded_len();
                Ok(Some((m, n)))
            }
            Body::Chunk(c) => self.chunk(c, "coordinator message"),
        }
    }

    /// The message a participant frame completes, if any, with its encoded size.
    ///
    /// # Errors
    /// As [`Inbound::coordinator`].
    pub fn participant(
        &mut self,
        f: pb::ParticipantFrame,
    ) -> Result<Option<(pb::ParticipantMessage, usize)>, StreamError> {
        use pb::participant_frame::Body;
        match f.body.ok_or(StreamError::Empty)? {
            Body::Message(m) => {
                let n = m.encoded_len();
                Ok(Some((m, n)))
            }
            Body::Chunk(c) => self.chunk(c, "participant message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_are_chunked_and_reassembled() {
        let big = pb::ParticipantMessage {
            seq: 9,
            body: Some(pb::participant_message::Body::JobReply(pb::JobReply {
                reason: "x".repeat(3 * MAX_CHUNK + 17),
                ..Default::default()
            })),
        };
        let small = pb::ParticipantMessage { seq: 1, body: None };
        let mut out = Outbound::new();
        let frames = out.participant(big.clone()).unwrap();
        assert_eq!(frames.len(), 4);
        assert_eq!(out.participant(small.clone()).unwrap().len(), 1);
        let mut inb = Inbound::new(8 * MAX_CHUNK);
        let mut got = Vec::new();
        for f in frames {
            if let Some((m, n)) = inb.participant(f).unwrap() {
                got.push((m, n));
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, big);
        assert_eq!(got[0].1, big.encoded_len());
    }

    #[test]
    fn oversized_messages_are_refused_with_sizes() {
        let big = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::JobOffer(pb::JobOffer {
                job_id: "j".into(),
                spec_json: "y".repeat(2 * MAX_CHUNK + 1),
            })),
        };
        let mut out = Outbound::new();
        let mut inb = Inbound::new(MAX_CHUNK + 10);
        let mut err = None;
        for f in out.coordinator(big).unwrap() {
            if let Err(e) = inb.coordinator(f) {
                err = Some(e.to_string());
                break;
            }
        }
        let err = err.expect("refused");
        assert!(err.contains("exceeds"), "{err}");
        assert!(matches!(
            inb.coordinator(pb::CoordinatorFrame { body: None }),
            Err(StreamError::Empty)
        ));
    }
}
