//! Conversions between the wire types of `secagg.proto` and the domain messages of
//! [`crate::secagg`].
//!
//! Decoding checks only shape (lengths of keys and shares, packed vector sizes, ring width);
//! the round state machines check meaning. A message that fails here is rejected with a
//! [`WireError`] naming the field, and changes nothing.

use std::collections::BTreeMap;

use fedcredit_crypto::secagg::{MaskSeed, SECRET_LEN, Share, pack_elements, unpack_elements};
use fedcredit_proto::pb;

use crate::secagg::{
    ClientMessage, ConsistencyCheck, ConsistencySignature, MaskedInput, RoundHeader, RoundSetup,
    SecAggConfig, ServerMessage, UnmaskRequest, UnmaskResponse,
};
use crate::{JobId, PartyId, RoundId};

/// A wire message that does not decode into a domain message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {field}: {reason}")]
pub struct WireError {
    /// The offending field, dotted.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

pub(crate) fn wire(field: &'static str, reason: impl Into<String>) -> WireError {
    WireError { field, reason: reason.into() }
}

pub(crate) fn required<T>(v: Option<T>, field: &'static str) -> Result<T, WireError> {
    v.ok_or_else(|| wire(field, "missing"))
}

/// The largest ring the fixed-point code uses.
const MAX_RING_BITS: u32 = 64;

impl From<&RoundHeader> for pb::RoundHeader {
    fn from(h: &RoundHeader) -> Self {
        Self { job: h.job.0.clone(), round: h.round.0, attempt: h.attempt }
    }
}

impl From<pb::RoundHeader> for RoundHeader {
    fn from(h: pb::RoundHeader) -> Self {
        Self { job: JobId(h.job), round: RoundId(h.round), attempt: h.attempt }
    }
}

fn header(h: Option<pb::RoundHeader>) -> Result<RoundHeader, WireError> {
    required(h, "header").map(Into::into)
}

impl From<&SecAggConfig> for pb::SecAggConfig {
    fn from(c: &SecAggConfig) -> Self {
        Self {
            vector_len: c.vector_len as u64,
            clip: c.clip,
            frac_bits: c.frac_bits,
            threshold: c.threshold.map(|t| t as u32),
            degree: c.degree.map(|d| d as u32),
        }
    }
}

impl TryFrom<pb::SecAggConfig> for SecAggConfig {
    type Error = WireError;
    fn try_from(c: pb::SecAggConfig) -> Result<Self, WireError> {
        let vector_len = usize::try_from(c.vector_len)
            .map_err(|_| wire("config.vector_len", "does not fit this machine"))?;
        Ok(Self {
            vector_len,
            clip: c.clip,
            frac_bits: c.frac_bits,
            threshold: c.threshold.map(|t| t as usize),
            degree: c.degree.map(|d| d as usize),
        })
    }
}

impl From<&RoundSetup> for pb::RoundSetup {
    fn from(s: &RoundSetup) -> Self {
        Self {
            header: Some((&s.header).into()),
            config: Some((&s.config).into()),
            roster: s.roster.iter().map(|p| p.0.clone()).collect(),
        }
    }
}

impl TryFrom<pb::RoundSetup> for RoundSetup {
    type Error = WireError;
    fn try_from(s: pb::RoundSetup) -> Result<Self, WireError> {
        Ok(Self {
            header: header(s.header)?,
            config: required(s.config, "config")?.try_into()?,
            roster: s.roster.into_iter().map(PartyId).collect(),
        })
    }
}

fn party_map<V, W>(
    m: BTreeMap<PartyId, V>,
    f: impl Fn(V) -> W,
) -> std::collections::HashMap<String, W> {
    m.into_iter().map(|(p, v)| (p.0, f(v))).collect()
}

fn domain_map<V, W>(
    m: std::collections::HashMap<String, V>,
    f: impl Fn(V) -> Result<W, WireError>,
) -> Result<BTreeMap<PartyId, W>, WireError> {
    m.into_iter().map(|(p, v)| Ok((PartyId(p), f(v)?))).collect()
}

fn share_to_wire(s: &Share) -> pb::Share {
    pb::Share { x: u32::from(s.x()), y: s.y().to_vec() }
}

fn share_from_wire(s: pb::Share) -> Result<Share, WireError> {
    let x = u16::try_from(s.x).map_err(|_| wire("share.x", format!("{} exceeds 16 bits", s.x)))?;
    let y = <[u8; SECRET_LEN]>::try_from(s.y.as_slice())
        .map_err(|_| wire("share.y", format!("{} bytes, a share has {SECRET_LEN}", s.y.len())))?;
    Ok(Share::from_parts(x, y))
}

fn seed_from_wire(b: Vec<u8>) -> Result<MaskSeed, WireError> {
    let bytes = <[u8; 32]>::try_from(b.as_slice())
        .map_err(|_| wire("pair_seeds", format!("{} bytes, a seed has 32", b.len())))?;
    Ok(MaskSeed::from_bytes(&bytes))
}

fn names(ps: &[PartyId]) -> Vec<String> {
    ps.iter().map(|p| p.0.clone()).collect()
}

fn parties(ps: Vec<String>) -> Vec<PartyId> {
    ps.into_iter().map(PartyId).collect()
}

/// Encodes what a party sends. `ring_bits` is the round's ring width (for packing).
pub fn client_to_wire(msg: &ClientMessage, ring_bits: u32) -> pb::SecAggClientMessage {
    use pb::sec_agg_client_message::Msg;
    let msg = match msg {
        ClientMessage::Consistency(m) => Msg::Consistency(pb::ConsistencySignature {
            header: Some((&m.header).into()),
            signature: m.signature.clone(),
        }),
        ClientMessage::MaskedInput(m) => Msg::MaskedInput(pb::MaskedInput {
            header: Some((&m.header).into()),
            ring_bits,
            len: m.masked.len() as u64,
            packed: pack_elements(&m.masked, ring_bits),
            bundles: party_map(m.bundles.clone(), |c| c),
        }),
        ClientMessage::Unmask(m) => Msg::Unmask(pb::UnmaskResponse {
            header: Some((&m.header).into()),
            self_mask_shares: party_map(m.self_mask_shares.clone(), |s| share_to_wire(&s)),
            pair_seeds: party_map(m.pair_seeds.clone(), |s| s.as_bytes().to_vec()),
        }),
    };
    pb::SecAggClientMessage { msg: Some(msg) }
}

/// Decodes what a party sent.
///
/// # Errors
/// [`WireError`] naming the malformed field.
pub fn client_from_wire(msg: pb::SecAggClientMessage) -> Result<ClientMessage, WireError> {
    use pb::sec_agg_client_message::Msg;
    Ok(match required(msg.msg, "secagg")? {
        Msg::Consistency(m) => ClientMessage::Consistency(ConsistencySignature {
            header: header(m.header)?,
            signature: m.signature,
        }),
        Msg::MaskedInput(m) => {
            if !(1..=MAX_RING_BITS).contains(&m.ring_bits) {
                return Err(wire(
                    "masked_input.ring_bits",
                    format!("{} is not in 1..=64", m.ring_bits),
                ));
            }
            let masked = unpack_elements(&m.packed, m.ring_bits)
                .map_err(|e| wire("masked_input.packed", e.to_string()))?;
            if masked.len() as u64 != m.len {
                return Err(wire(
                    "masked_input.len",
                    format!("says {} elements, the packed bytes hold {}", m.len, masked.len()),
                ));
            }
            ClientMessage::MaskedInput(MaskedInput {
                header: header(m.header)?,
                masked,
                bundles: domain_map(m.bundles, Ok)?,
            })
        }
        Msg::Unmask(m) => ClientMessage::Unmask(UnmaskResponse {
            header: header(m.header)?,
            self_mask_shares: domain_map(m.self_mask_shares, share_from_wire)?,
            pair_seeds: domain_map(m.pair_seeds, seed_from_wire)?,
        }),
    })
}

/// Encodes what the coordinator sends.
pub fn server_to_wire(msg: &ServerMessage) -> pb::SecAggServerMessage {
    use pb::sec_agg_server_message::Msg;
    let msg = match msg {
        ServerMessage::Setup(s) => Msg::Setup(s.into()),
        ServerMessage::Consistency(m) => Msg::Consistency(pb::ConsistencyCheck {
            header: Some((&m.header).into()),
            survivors: names(&m.survivors),
        }),
        ServerMessage::Unmask(m) => Msg::Unmask(pb::UnmaskRequest {
            header: Some((&m.header).into()),
            survivors: names(&m.survivors),
            dropped: names(&m.dropped),
            all_survivors: names(&m.all_survivors),
            signatures: party_map(m.signatures.clone(), |s| s),
            bundles: party_map(m.bundles.clone(), |c| c),
        }),
    };
    pb::SecAggServerMessage { msg: Some(msg) }
}

/// Decodes what the coordinator sent.
///
/// # Errors
/// [`WireError`] naming the malformed field.
pub fn server_from_wire(msg: pb::SecAggServerMessage) -> Result<ServerMessage, WireError> {
    use pb::sec_agg_server_message::Msg;
    Ok(match required(msg.msg, "secagg")? {
        Msg::Setup(s) => ServerMessage::Setup(s.try_into()?),
        Msg::Consistency(m) => ServerMessage::Consistency(ConsistencyCheck {
            header: header(m.header)?,
            survivors: parties(m.survivors),
        }),
        Msg::Unmask(m) => ServerMessage::Unmask(UnmaskRequest {
            header: header(m.header)?,
            survivors: parties(m.survivors),
            dropped: parties(m.dropped),
            all_survivors: parties(m.all_survivors),
            signatures: domain_map(m.signatures, Ok)?,
            bundles: domain_map(m.bundles, Ok)?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::in_memory;
    use prost::Message;
    use rand::SeedableRng;

    /// Every message of a real in-memory round survives encode → bytes → decode unchanged.
    #[test]
    fn every_message_of_a_round_round_trips() {
        let header = RoundHeader { job: JobId("j".into()), round: RoundId(3), attempt: 0 };
        let config = SecAggConfig::new(50, 4.0, 16);
        let updates: BTreeMap<PartyId, Vec<f64>> = (0..4)
            .map(|i| {
                (PartyId(format!("bank{i}")), (0..50).map(|k| (i * k) as f64 / 100.0).collect())
            })
            .collect();
        let crashes = vec![in_memory::Crash {
            party: PartyId("bank3".into()),
            before: crate::secagg::Phase::Unmask,
        }];
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let run = in_memory::run(header, config, &updates, &crashes, 2, &mut rng);
        let ring_bits = config.fixed_point(4).unwrap().ring_bits;
        let (mut n_client, mut n_server) = (0, 0);
        for attempt in &run.attempts {
            for r in &attempt.received {
                let bytes = client_to_wire(&r.message, ring_bits).encode_to_vec();
                let back =
                    client_from_wire(pb::SecAggClientMessage::decode(bytes.as_slice()).unwrap())
                        .unwrap();
                assert_eq!(back, r.message);
                n_client += 1;
            }
            for (_, m) in &attempt.sent {
                let bytes = server_to_wire(m).encode_to_vec();
                let back =
                    server_from_wire(pb::SecAggServerMessage::decode(bytes.as_slice()).unwrap())
                        .unwrap();
                assert_eq!(&back, m);
                n_server += 1;
            }
        }
        assert!(n_client >= 7 && n_server >= 8, "{n_client} {n_server}");
    }

    #[test]
    fn malformed_fields_are_named() {
        use pb::sec_agg_client_message::Msg;
        let h = Some(pb::RoundHeader { job: "j".into(), round: 0, attempt: 0 });
        let bad_seed = pb::SecAggClientMessage {
            msg: Some(Msg::Unmask(pb::UnmaskResponse {
                header: h.clone(),
                self_mask_shares: Default::default(),
                pair_seeds: [("b".to_string(), vec![0u8; 31])].into_iter().collect(),
            })),
        };
        assert_eq!(client_from_wire(bad_seed).unwrap_err().field, "pair_seeds");
        let bad_len = pb::SecAggClientMessage {
            msg: Some(Msg::MaskedInput(pb::MaskedInput {
                header: h.clone(),
                ring_bits: 20,
                len: 4,
                packed: vec![0; 9],
                bundles: Default::default(),
            })),
        };
        assert_eq!(client_from_wire(bad_len).unwrap_err().field, "masked_input.len");
        let no_header = pb::SecAggClientMessage {
            msg: Some(Msg::MaskedInput(pb::MaskedInput {
                header: None,
                ring_bits: 20,
                len: 1,
                packed: vec![0; 3],
                bundles: Default::default(),
            })),
        };
        assert_eq!(client_from_wire(no_header).unwrap_err().field, "header");
        assert_eq!(
            client_from_wire(pb::SecAggClientMessage { msg: None }).unwrap_err().field,
            "secagg"
        );
        let big_ring = pb::SecAggClientMessage {
            msg: Some(Msg::MaskedInput(pb::MaskedInput {
                header: h,
                ring_bits: 65,
                len: 0,
                packed: vec![],
                bundles: Default::default(),
            })),
        };
        assert_eq!(client_from_wire(big_ring).unwrap_err().field, "masked_input.ring_bits");
    }
}
