//! Protocol buffers for fedcredit, compiled at build time with protox.
//!
//! The generated code stays behind [`pb`], with a few constructors; conversions to the
//! federation's domain types live in `fedcredit_federation::wire`, so this crate depends on
//! nothing of the project. Invariant: no message type can carry rows of data (see
//! `proto/fedcredit/v1/*.proto`).

/// Generated protobuf and gRPC types of package `fedcredit.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("fedcredit.v1");
}

impl pb::Ack {
    /// An accepted message.
    pub fn accepted() -> Self {
        Self { outcome: pb::ack::Outcome::Accepted as i32, reason: String::new(), seq: 0 }
    }

    /// A rejected message, with the reason the sender will see.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self { outcome: pb::ack::Outcome::Rejected as i32, reason: reason.into(), seq: 0 }
    }

    /// The same answer for the stream message numbered `seq`.
    pub fn for_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// A message that arrived after its round closed.
    pub fn too_late(reason: impl Into<String>) -> Self {
        Self { outcome: pb::ack::Outcome::TooLate as i32, reason: reason.into(), seq: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::pb;
    use prost::Message;

    #[test]
    fn ack_round_trips_through_the_wire_format() {
        let ack = pb::Ack::rejected("party bank9 is not in job j1");
        let bytes = ack.encode_to_vec();
        let back = pb::Ack::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.outcome(), pb::ack::Outcome::Rejected);
        assert_eq!(back.reason, "party bank9 is not in job j1");
        assert_eq!(pb::Ack::accepted().outcome(), pb::ack::Outcome::Accepted);
        assert_eq!(pb::Ack::too_late("round 3 closed").outcome(), pb::ack::Outcome::TooLate);
    }

    #[test]
    fn truncated_bytes_are_a_decode_error() {
        let art =
            pb::ModelArtifact { model_id: "m1".into(), format_version: 1, json: vec![b'{'; 64] };
        let bytes = art.encode_to_vec();
        assert!(pb::ModelArtifact::decode(&bytes[..bytes.len() - 10]).is_err());
    }
}
