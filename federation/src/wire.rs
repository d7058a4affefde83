//! Conversions between the wire types of `secagg.proto` and the domain messages of
//! [`crate::secagg`].
//!
//! Decoding checks only shape (lengths of keys and shares, packed vector sizes, ring width);
//! the round state machines check meaning. A message that fails here is rejected with a
//! [`WireError`] naming the field, and changes nothing.

use std::collections::BTreeMap;

use fedcredit_crypto::secagg::{PublicKeys, SECRET_LEN, Share, pack_elements, unpack_elements};
use fedcredit_proto::pb;

use crate::secagg::{
    ClientMessage, ConsistencyCheck, ConsistencySignature, ForwardedShares, KeysAdvert,
    MaskedInput, PeerKeys, RoundHeader, RoundSetup, SecAggConfig, ServerMessage, ShareKeys,
    SignedKeys, UnmaskRequest, UnmaskResponse,
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

fn keys_to_wire(k: &PublicKeys) -> pb::PublicKeys {
    pb::PublicKeys { c: k.c.to_vec(), s: k.s.to_vec() }
}

fn keys_from_wire(k: pb::PublicKeys) -> Result<PublicKeys, WireError> {
    let key = |v: Vec<u8>, field| {
        <[u8; 32]>::try_from(v.as_slice())
            .map_err(|_| wire(field, format!("{} bytes, an X25519 key has 32", v.len())))
    };
    Ok(PublicKeys { c: key(k.c, "keys.c")?, s: key(k.s, "keys.s")? })
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

/// Encodes what a party sends. `ring_bits` is the round's ring width (for packing).
pub fn client_to_wire(msg: &ClientMessage, ring_bits: u32) -> pb::SecAggClientMessage {
    use pb::sec_agg_client_message::Msg;
    let msg = match msg {
        ClientMessage::AdvertiseKeys(m) => Msg::AdvertiseKeys(pb::KeysAdvert {
            header: Some((&m.header).into()),
            keys: Some(keys_to_wire(&m.keys)),
            signature: m.signature.clone(),
        }),
        ClientMessage::Consistency(m) => Msg::Consistency(pb::ConsistencySignature {
            header: Some((&m.header).into()),
            signature: m.signature.clone(),
        }),
        ClientMessage::ShareKeys(m) => Msg::ShareKeys(pb::SealedShares {
            header: Some((&m.header).into()),
            ciphertexts: party_map(m.ciphertexts.clone(), |c| c),
        }),
        ClientMessage::MaskedInput(m) => Msg::MaskedInput(pb::MaskedInput {
            header: Some((&m.header).into()),
            ring_bits,
            len: m.masked.len() as u64,
            packed: pack_elements(&m.masked, ring_bits),
        }),
        ClientMessage::Unmask(m) => Msg::Unmask(pb::UnmaskResponse {
            header: Some((&m.header).into()),
            self_mask_shares: party_map(m.self_mask_shares.clone(), |s| share_to_wire(&s)),
            mask_key_shares: party_map(m.mask_key_shares.clone(), |s| share_to_wire(&s)),
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
        Msg::AdvertiseKeys(m) => ClientMessage::AdvertiseKeys(KeysAdvert {
            header: header(m.header)?,
            keys: keys_from_wire(required(m.keys, "keys")?)?,
            signature: m.signature,
        }),
        Msg::Consistency(m) => ClientMessage::Consistency(ConsistencySignature {
            header: header(m.header)?,
            signature: m.signature,
        }),
        Msg::ShareKeys(m) => ClientMessage::ShareKeys(ShareKeys {
            header: header(m.header)?,
            ciphertexts: domain_map(m.ciphertexts, Ok)?,
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
            ClientMessage::MaskedInput(MaskedInput { header: header(m.header)?, masked })
        }
        Msg::Unmask(m) => ClientMessage::Unmask(UnmaskResponse {
            header: header(m.header)?,
            self_mask_shares: domain_map(m.self_mask_shares, share_from_wire)?,
            mask_key_shares: domain_map(m.mask_key_shares, share_from_wire)?,
        }),
    })
}

/// Encodes what the coordinator sends.
pub fn server_to_wire(msg: &ServerMessage) -> pb::SecAggServerMessage {
    use pb::sec_agg_server_message::Msg;
    let msg = match msg {
        ServerMessage::Setup(s) => Msg::Setup(s.into()),
        ServerMessage::PeerKeys(m) => Msg::PeerKeys(pb::PeerKeys {
            header: Some((&m.header).into()),
            keys: party_map(m.keys.clone(), |k| pb::SignedKeys {
                keys: Some(keys_to_wire(&k.keys)),
                signature: k.signature,
            }),
        }),
        ServerMessage::Consistency(m) => Msg::Consistency(pb::ConsistencyCheck {
            header: Some((&m.header).into()),
            survivors: m.survivors.iter().map(|p| p.0.clone()).collect(),
        }),
        ServerMessage::Shares(m) => Msg::Shares(pb::SealedShares {
            header: Some((&m.header).into()),
            ciphertexts: party_map(m.ciphertexts.clone(), |c| c),
        }),
        ServerMessage::Unmask(m) => Msg::Unmask(pb::UnmaskRequest {
            header: Some((&m.header).into()),
            survivors: m.survivors.iter().map(|p| p.0.clone()).collect(),
            dropped: m.dropped.iter().map(|p| p.0.clone()).collect(),
            signed_survivors: m.all_survivors.iter().map(|p| p.0.clone()).collect(),
            signatures: party_map(m.signatures.clone(), |s| s),
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
        Msg::PeerKeys(m) => ServerMessage::PeerKeys(PeerKeys {
            header: header(m.header)?,
            keys: domain_map(m.keys, |k| {
                Ok(SignedKeys {
                    keys: keys_from_wire(required(k.keys, "keys")?)?,
                    signature: k.signature,
                })
            })?,
        }),
        Msg::Consistency(m) => ServerMessage::Consistency(ConsistencyCheck {
            header: header(m.header)?,
            survivors: m.survivors.into_iter().map(PartyId).collect(),
        }),
        Msg::Shares(m) => ServerMessage::Shares(ForwardedShares {
            header: header(m.header)?,
            ciphertexts: domain_map(m.ciphertexts, Ok)?,
        }),
        Msg::Unmask(m) => ServerMessage::Unmask(UnmaskRequest {
            header: header(m.header)?,
            survivors: m.survivors.into_iter().map(PartyId).collect(),
            dropped: m.dropped.into_iter().map(PartyId).collect(),
            all_survivors: m.signed_survivors.into_iter().map(PartyId).collect(),
            signatures: domain_map(m.signatures, Ok)?,
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
        assert!(n_client >= 12 && n_server >= 12, "{n_client} {n_server}");
    }

    #[test]
    fn malformed_fields_are_named() {
        use pb::sec_agg_client_message::Msg;
        let h = Some(pb::RoundHeader { job: "j".into(), round: 0, attempt: 0 });
        let bad_key = pb::SecAggClientMessage {
            msg: Some(Msg::AdvertiseKeys(pb::KeysAdvert {
                header: h.clone(),
                keys: Some(pb::PublicKeys { c: vec![0; 31], s: vec![0; 32] }),
                signature: vec![],
            })),
        };
        assert_eq!(client_from_wire(bad_key).unwrap_err().field, "keys.c");
        let bad_len = pb::SecAggClientMessage {
            msg: Some(Msg::MaskedInput(pb::MaskedInput {
                header: h.clone(),
                ring_bits: 20,
                len: 4,
                packed: vec![0; 9],
            })),
        };
        assert_eq!(client_from_wire(bad_len).unwrap_err().field, "masked_input.len");
        let no_header = pb::SecAggClientMessage {
            msg: Some(Msg::MaskedInput(pb::MaskedInput {
                header: None,
                ring_bits: 20,
                len: 1,
                packed: vec![0; 3],
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
            })),
        };
        assert_eq!(client_from_wire(big_ring).unwrap_err().field, "masked_input.ring_bits");
    }
}
