//! Chunked frames for large protobuf payloads on gRPC bidi streams.
//!
//! gRPC bounds each message (4 MiB by default, `max_decoding_message_size`) and HTTP/2 flow
//! control (RFC 9113, section 5.2) works best with bounded frames, while a model artifact or a
//! vector of masked gradients can be far larger. A [`Chunker`] splits one encoded message into
//! [`Chunk`]s of at most `max_chunk` bytes; a [`Reassembler`] on the other end accepts the chunks
//! of several interleaved messages, each in order, and yields every message once complete.
//! Limits on the message size and the number of half-received messages bound what a peer can
//! make the receiver hold; violations are errors, never panics.
//!
//! These are plain Rust types: the proto layer maps them to and from its messages.

use std::collections::HashMap;

/// One piece of a message: `data` is bytes `[index * max_chunk, ...)` of message `message_id`,
/// which has `count` chunks in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Identifies the message among those interleaved on one stream.
    pub message_id: u64,
    /// Position of this chunk, `0..count`.
    pub index: u32,
    /// Number of chunks of the message (at least 1: an empty message is one empty chunk).
    pub count: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Errors of chunking and reassembly. Each names the message and the sizes involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("max_chunk must be at least 1 byte")]
    ZeroChunkSize,
    #[error(
        "message {message_id} of {len} bytes needs more than u32::MAX chunks of {max_chunk} bytes"
    )]
    TooManyChunks { message_id: u64, len: usize, max_chunk: usize },
    #[error("message {message_id}: chunk count is 0")]
    ZeroCount { message_id: u64 },
    #[error("message {message_id}: chunk index {index} is not below its count {count}")]
    IndexOutOfRange { message_id: u64, index: u32, count: u32 },
    #[error("message {message_id}: expected chunk {expected}, received chunk {index}")]
    OutOfOrder { message_id: u64, expected: u32, index: u32 },
    #[error(
        "message {message_id}: chunk {index} says {count} chunks, earlier chunks said {expected}"
    )]
    CountMismatch { message_id: u64, index: u32, expected: u32, count: u32 },
    #[error(
        "message {message_id} exceeds the limit: at least {size} bytes > max_message {max} bytes"
    )]
    TooLarge { message_id: u64, size: usize, max: usize },
    #[error(
        "message {message_id} would be a new pending message but {max_pending} are already pending"
    )]
    TooManyPending { message_id: u64, max_pending: usize },
}

/// Splits messages into chunks of at most `max_chunk` bytes, numbering messages 0, 1, 2, ...
#[derive(Debug, Clone)]
pub struct Chunker {
    max_chunk: usize,
    next_id: u64,
}

impl Chunker {
    /// A chunker for chunks of at most `max_chunk` bytes (at least 1).
    pub fn new(max_chunk: usize) -> Result<Self, FrameError> {
        if max_chunk == 0 {
            return Err(FrameError::ZeroChunkSize);
        }
        Ok(Self { max_chunk, next_id: 0 })
    }

    /// The largest chunk this chunker produces, in bytes.
    pub fn max_chunk(&self) -> usize {
        self.max_chunk
    }

    /// Splits `message` under the next message id.
    pub fn split(&mut self, message: Vec<u8>) -> Result<Vec<Chunk>, FrameError> {
        let chunks = self.split_with_id(self.next_id, &message)?;
        self.next_id = self.next_id.wrapping_add(1);
        Ok(chunks)
    }

    /// Splits `message` under the given id (for callers that number messages themselves).
    pub fn split_with_id(&self, message_id: u64, message: &[u8]) -> Result<Vec<Chunk>, FrameError> {
        let n = message.len().div_ceil(self.max_chunk).max(1);
        let count = u32::try_from(n).map_err(|_| FrameError::TooManyChunks {
            message_id,
            len: message.len(),
            max_chunk: self.max_chunk,
        })?;
        if message.is_empty() {
            return Ok(vec![Chunk { message_id, index: 0, count, data: Vec::new() }]);
        }
        Ok(message
            .chunks(self.max_chunk)
            .zip(0..count)
            .map(|(data, index)| Chunk { message_id, index, count, data: data.to_vec() })
            .collect())
    }
}

#[derive(Debug)]
struct Pending {
    count: u32,
    next: u32,
    data: Vec<u8>,
}

/// Reassembles chunked messages, several interleaved, each in order.
///
/// A message whose chunk violates a rule is dropped together with its received prefix, and the
/// error is returned; other pending messages are unaffected. A completed message's id may be
/// used again.
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    max_pending: usize,
    pending: HashMap<u64, Pending>,
}

impl Reassembler {
    /// Accepts messages up to `max_message` bytes, with at most `max_pending` incomplete at once.
    pub fn new(max_message: usize, max_pending: usize) -> Self {
        Self { max_message, max_pending, pending: HashMap::new() }
    }

    /// Number of messages with some but not all chunks received.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets a partly received message (e.g. its sender went away). Returns whether it existed.
    pub fn discard(&mut self, message_id: u64) -> bool {
        self.pending.remove(&message_id).is_some()
    }

    /// Accepts one chunk; returns `(message_id, message)` when it completes a message.
    pub fn push(&mut self, chunk: Chunk) -> Result<Option<(u64, Vec<u8>)>, FrameError> {
        let result = self.accept(chunk.message_id, chunk.index, chunk.count, chunk.data);
        if result.is_err() {
            self.pending.remove(&chunk.message_id);
        }
        result
    }

    fn accept(
        &mut self,
        message_id: u64,
        index: u32,
        count: u32,
        data: Vec<u8>,
    ) -> Result<Option<(u64, Vec<u8>)>, FrameError> {
        if count == 0 {
            return Err(FrameError::ZeroCount { message_id });
        }
        if index >= count {
            return Err(FrameError::IndexOutOfRange { message_id, index, count });
        }
        let too_large = |size| FrameError::TooLarge { message_id, size, max: self.max_message };
        let Some(pending) = self.pending.get_mut(&message_id) else {
            if index != 0 {
                return Err(FrameError::OutOfOrder { message_id, expected: 0, index });
            }
            if data.len() > self.max_message {
                return Err(too_large(data.len()));
            }
            if count == 1 {
                return Ok(Some((message_id, data)));
            }
            if self.pending.len() >= self.max_pending {
                return Err(FrameError::TooManyPending {
                    message_id,
                    max_pending: self.max_pending,
                });
            }
            self.pending.insert(message_id, Pending { count, next: 1, data });
            return Ok(None);
        };
        if index != pending.next {
            return Err(FrameError::OutOfOrder { message_id, expected: pending.next, index });
        }
        if count != pending.count {
            return Err(FrameError::CountMismatch {
                message_id,
                index,
                expected: pending.count,
                count,
            });
        }
        let size = pending.data.len().saturating_add(data.len());
        if size > self.max_message {
            return Err(too_large(size));
        }
        pending.data.extend_from_slice(&data);
        pending.next += 1;
        if pending.next < pending.count {
            return Ok(None);
        }
        let done = self.pending.remove(&message_id).map(|p| p.data).unwrap_or_default();
        Ok(Some((message_id, done)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn message(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.random::<u8>()).collect()
    }

    #[test]
    fn split_sizes_and_empty_message() {
        let mut chunker = Chunker::new(4).unwrap();
        let chunks = chunker.split(vec![1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.message_id == 0 && c.count == 3));
        assert_eq!(chunks[2].data, vec![9]);
        let empty = chunker.split(Vec::new()).unwrap();
        assert_eq!(empty, vec![Chunk { message_id: 1, index: 0, count: 1, data: vec![] }]);
        let mut r = Reassembler::new(100, 4);
        assert_eq!(r.push(empty[0].clone()).unwrap(), Some((1, vec![])));
        assert_eq!(Chunker::new(0).unwrap_err(), FrameError::ZeroChunkSize);
    }

    /// Random messages and chunk sizes, chunks of several messages interleaved at random (each
    /// message in order): every message comes back intact, exactly once.
    #[test]
    fn interleaved_round_trip_property() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _case in 0..200 {
            let max_chunk = rng.random_range(1..300usize);
            let n_messages = rng.random_range(1..8usize);
            let mut chunker = Chunker::new(max_chunk).unwrap();
            let messages: Vec<Vec<u8>> = (0..n_messages)
                .map(|_| {
                    let len = rng.random_range(0..3000usize);
                    message(&mut rng, len)
                })
                .collect();
            let mut queues: Vec<std::collections::VecDeque<Chunk>> =
                messages.iter().map(|m| chunker.split(m.clone()).unwrap().into()).collect();
            for (q, m) in queues.iter().zip(&messages) {
                assert!(q.iter().all(|c| c.data.len() <= max_chunk));
                assert_eq!(q.len(), m.len().div_ceil(max_chunk).max(1));
            }
            let mut r = Reassembler::new(3000, n_messages);
            let mut got = vec![None; n_messages];
            while queues.iter().any(|q| !q.is_empty()) {
                let live: Vec<usize> = (0..n_messages).filter(|&i| !queues[i].is_empty()).collect();
                let i = live[rng.random_range(0..live.len())];
                let chunk = queues[i].pop_front().unwrap();
                if let Some((id, msg)) = r.push(chunk).unwrap() {
                    assert!(got[id as usize].is_none(), "message {id} completed twice");
                    got[id as usize] = Some(msg);
                }
            }
            assert_eq!(r.pending(), 0);
            for (g, m) in got.iter().zip(&messages) {
                assert_eq!(g.as_ref(), Some(m));
            }
        }
    }

    /// Random corruptions of a valid chunk sequence are reported as errors, never panics, and
    /// the faulty message is dropped while the others continue.
    #[test]
    fn corruptions_are_errors_property() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _case in 0..300 {
            let max_chunk = rng.random_range(1..50usize);
            let len = rng.random_range(2 * max_chunk + 1..20 * max_chunk);
            let msg = message(&mut rng, len);
            let mut chunks = Chunker::new(max_chunk).unwrap().split_with_id(5, &msg).unwrap();
            let k = rng.random_range(1..chunks.len());
            let expected = match rng.random_range(0..4u8) {
                0 => {
                    chunks.swap(k - 1, k);
                    FrameError::OutOfOrder {
                        message_id: 5,
                        expected: k as u32 - 1,
                        index: k as u32,
                    }
                }
                1 => {
                    chunks[k].count += 1;
                    FrameError::CountMismatch {
                        message_id: 5,
                        index: k as u32,
                        expected: chunks[0].count,
                        count: chunks[0].count + 1,
                    }
                }
                2 => {
                    chunks[k].index = chunks[k].count + 3;
                    FrameError::IndexOutOfRange {
                        message_id: 5,
                        index: chunks[k].count + 3,
                        count: chunks[k].count,
                    }
                }
                _ => {
                    chunks[k].count = 0;
                    FrameError::ZeroCount { message_id: 5 }
                }
            };
            let mut r = Reassembler::new(len, 2);
            // Another message in flight, untouched by the corruption.
            r.push(Chunk { message_id: 9, index: 0, count: 2, data: vec![1] }).unwrap();
            let mut result = Ok(None);
            for chunk in chunks.into_iter().take(k + 1) {
                result = r.push(chunk);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(expected));
            assert_eq!(r.pending(), 1, "the faulty message is dropped, the other kept");
            let done = r.push(Chunk { message_id: 9, index: 1, count: 2, data: vec![2] }).unwrap();
            assert_eq!(done, Some((9, vec![1, 2])));
        }
    }

    #[test]
    fn size_limit_names_the_sizes() {
        let msg = vec![0u8; 1000];
        let chunks = Chunker::new(300).unwrap().split_with_id(3, &msg).unwrap();
        let mut r = Reassembler::new(999, 4);
        let mut err = None;
        for chunk in chunks {
            if let Err(e) = r.push(chunk) {
                err = Some(e);
                break;
            }
        }
        let err = err.unwrap();
        assert_eq!(err, FrameError::TooLarge { message_id: 3, size: 1000, max: 999 });
        assert!(err.to_string().contains("1000") && err.to_string().contains("999"));
        assert_eq!(r.pending(), 0);
        // A single oversized chunk is refused before it is stored.
        let one = Chunk { message_id: 4, index: 0, count: 1, data: vec![0; 1000] };
        assert!(matches!(r.push(one), Err(FrameError::TooLarge { size: 1000, .. })));
    }

    #[test]
    fn too_many_pending_and_discard() {
        let mut r = Reassembler::new(100, 2);
        let start = |id| Chunk { message_id: id, index: 0, count: 3, data: vec![0] };
        r.push(start(1)).unwrap();
        r.push(start(2)).unwrap();
        assert_eq!(
            r.push(start(3)),
            Err(FrameError::TooManyPending { message_id: 3, max_pending: 2 })
        );
        // A single-chunk message needs no pending slot.
        let whole = Chunk { message_id: 4, index: 0, count: 1, data: vec![7] };
        assert_eq!(r.push(whole).unwrap(), Some((4, vec![7])));
        assert!(r.discard(1));
        assert!(!r.discard(1));
        r.push(start(3)).unwrap();
        assert_eq!(r.pending(), 2);
        // A message must start at chunk 0.
        let mut r = Reassembler::new(100, 2);
        let late = Chunk { message_id: 8, index: 1, count: 3, data: vec![] };
        assert_eq!(
            r.push(late),
            Err(FrameError::OutOfOrder { message_id: 8, expected: 0, index: 1 })
        );
    }
}
