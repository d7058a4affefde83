//! Bytes of [`LrMsg`]: what the stage carries in `LrPayload.data` (party to party, sealed by
//! the runtime), in its reports (party to dealer) and steps (dealer to party).
//!
//! Layout: a tag byte, then the fields in order; integers little-endian; a ring vector is its
//! length (`u64`) then 16 bytes a value; a party name its length (`u32`) then UTF-8; a map its
//! entry count (`u32`) then the entries. Decoding checks every length against the bytes left
//! before allocating, so a peer cannot make the receiver allocate more than it sent.

use std::collections::BTreeMap;

use fedcredit_crypto::mpc::beaver::Opening;
use fedcredit_crypto::mpc::{Elem, Seed};

use super::protocol::{Corrections, LrError, LrMsg};
use crate::ids::PartyId;

const SHAPE: u8 = 1;
const NEED: u8 = 2;
const SEEDS: u8 = 3;
const DEAL: u8 = 4;
const MASKED: u8 = 5;
const FORWARD: u8 = 6;
const LOGIT: u8 = 7;
const SIGMOID: u8 = 8;
const RESIDUAL: u8 = 9;
const BACKWARD: u8 = 10;
const FINAL: u8 = 11;

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn vec(&mut self, v: &[Elem]) {
        self.u64(v.len() as u64);
        self.0.reserve(v.len() * 16);
        for x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn seed(&mut self, s: &Seed) {
        self.0.extend_from_slice(&s.0);
    }
    fn party(&mut self, p: &PartyId) {
        self.u32(p.0.len() as u32);
        self.0.extend_from_slice(p.0.as_bytes());
    }
    fn vec_map(&mut self, m: &BTreeMap<PartyId, Vec<Elem>>) {
        self.u32(m.len() as u32);
        for (p, v) in m {
            self.party(p);
            self.vec(v);
        }
    }
}

struct R<'a>(&'a [u8]);

fn short() -> LrError {
    LrError::Protocol("a vertical LR message is cut short or malformed".into())
}

impl R<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LrError> {
        if n > self.0.len() {
            return Err(short());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, LrError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, LrError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| short())?))
    }
    fn u64(&mut self) -> Result<u64, LrError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| short())?))
    }
    fn vec(&mut self) -> Result<Vec<Elem>, LrError> {
        let n = usize::try_from(self.u64()?).map_err(|_| short())?;
        let bytes = self.take(n.checked_mul(16).ok_or_else(short)?)?;
        Ok(bytes
            .chunks_exact(16)
            .map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16])))
            .collect())
    }
    fn seed(&mut self) -> Result<Seed, LrError> {
        Ok(Seed(self.take(32)?.try_into().map_err(|_| short())?))
    }
    fn party(&mut self) -> Result<PartyId, LrError> {
        let n = self.u32()? as usize;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| short())?;
        Ok(PartyId(s.to_string()))
    }
    fn count(&mut self) -> Result<usize, LrError> {
        let n = self.u32()? as usize;
        // Every entry takes at least 4 bytes.
        if n > self.0.len() / 4 {
            return Err(short());
        }
        Ok(n)
    }
    fn vec_map(&mut self) -> Result<BTreeMap<PartyId, Vec<Elem>>, LrError> {
        let n = self.count()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let p = self.party()?;
            let v = self.vec()?;
            if m.insert(p, v).is_some() {
                return Err(short());
            }
        }
        Ok(m)
    }
}

impl LrMsg {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w =
            W(Vec::with_capacity(64 + 16 * self.vectors().iter().map(|v| v.len()).sum::<usize>()));
        match self {
            LrMsg::Shape { rows, valid, cols } => {
                w.u8(SHAPE);
                w.u64(*rows);
                w.u64(*valid);
                w.u64(*cols);
            }
            LrMsg::Need { step } => {
                w.u8(NEED);
                w.u64(*step);
            }
            LrMsg::Seeds { owner, partner, beaver } => {
                w.u8(SEEDS);
                w.seed(owner);
                w.u32(partner.len() as u32);
                for (p, s) in partner {
                    w.party(p);
                    w.seed(s);
                }
                match beaver {
                    Some(s) => {
                        w.u8(1);
                        w.seed(s);
                    }
                    None => w.u8(0),
                }
            }
            LrMsg::Deal { step, corrections } => {
                w.u8(DEAL);
                w.u64(*step);
                w.vec_map(&corrections.forward);
                w.vec_map(&corrections.backward);
                w.u32(corrections.sigmoid.len() as u32);
                for v in &corrections.sigmoid {
                    w.vec(v);
                }
            }
            LrMsg::Masked { e } => {
                w.u8(MASKED);
                w.vec(e);
            }
            LrMsg::ForwardOpen { step, f } => {
                w.u8(FORWARD);
                w.u64(*step);
                w.vec(f);
            }
            LrMsg::LogitShare { step, share } => {
                w.u8(LOGIT);
                w.u64(*step);
                w.vec(share);
            }
            LrMsg::SigmoidOpen { step, round, opening } => {
                w.u8(SIGMOID);
                w.u64(*step);
                w.u64(*round);
                w.vec(&opening.e);
                w.vec(&opening.f);
            }
            LrMsg::ResidualShare { step, share } => {
                w.u8(RESIDUAL);
                w.u64(*step);
                w.vec(share);
            }
            LrMsg::BackwardOpen { step, f } => {
                w.u8(BACKWARD);
                w.u64(*step);
                w.vec(f);
            }
            LrMsg::FinalShare { share } => {
                w.u8(FINAL);
                w.vec(share);
            }
        }
        w.0
    }

    /// A message from its bytes.
    ///
    /// # Errors
    /// [`LrError::Protocol`] when the bytes are not such a message (trailing bytes included).
    pub fn decode(bytes: &[u8]) -> Result<Self, LrError> {
        let mut r = R(bytes);
        let msg = match r.u8()? {
            SHAPE => LrMsg::Shape { rows: r.u64()?, valid: r.u64()?, cols: r.u64()? },
            NEED => LrMsg::Need { step: r.u64()? },
            SEEDS => {
                let owner = r.seed()?;
                let n = r.count()?;
                let mut partner = BTreeMap::new();
                for _ in 0..n {
                    let p = r.party()?;
                    partner.insert(p, r.seed()?);
                }
                let beaver = match r.u8()? {
                    0 => None,
                    1 => Some(r.seed()?),
                    _ => return Err(short()),
                };
                LrMsg::Seeds { owner, partner, beaver }
            }
            DEAL => {
                let step = r.u64()?;
                let forward = r.vec_map()?;
                let backward = r.vec_map()?;
                let n = r.count()?;
                let sigmoid = (0..n).map(|_| r.vec()).collect::<Result<_, _>>()?;
                LrMsg::Deal { step, corrections: Corrections { forward, backward, sigmoid } }
            }
            MASKED => LrMsg::Masked { e: r.vec()? },
            FORWARD => LrMsg::ForwardOpen { step: r.u64()?, f: r.vec()? },
            LOGIT => LrMsg::LogitShare { step: r.u64()?, share: r.vec()? },
            SIGMOID => LrMsg::SigmoidOpen {
                step: r.u64()?,
                round: r.u64()?,
                opening: Opening { e: r.vec()?, f: r.vec()? },
            },
            RESIDUAL => LrMsg::ResidualShare { step: r.u64()?, share: r.vec()? },
            BACKWARD => LrMsg::BackwardOpen { step: r.u64()?, f: r.vec()? },
            FINAL => LrMsg::FinalShare { share: r.vec()? },
            _ => return Err(short()),
        };
        if !r.0.is_empty() {
            return Err(short());
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_damage_is_an_error() {
        let p = |s: &str| PartyId(s.into());
        let v = vec![1u128, u128::MAX, 7 << 100];
        let msgs = vec![
            LrMsg::Shape { rows: 24_000, valid: 6_000, cols: 14 },
            LrMsg::Need { step: 3 },
            LrMsg::Seeds {
                owner: Seed([1; 32]),
                partner: [(p("tax"), Seed([2; 32])), (p("platform"), Seed([3; 32]))].into(),
                beaver: Some(Seed([4; 32])),
            },
            LrMsg::Seeds { owner: Seed([1; 32]), partner: BTreeMap::new(), beaver: None },
            LrMsg::Deal {
                step: 9,
                corrections: Corrections {
                    forward: [(p("bank"), v.clone())].into(),
                    backward: [(p("bank"), vec![5])].into(),
                    sigmoid: vec![v.clone(), vec![], v.clone()],
                },
            },
            LrMsg::Masked { e: v.clone() },
            LrMsg::ForwardOpen { step: 1, f: v.clone() },
            LrMsg::LogitShare { step: 2, share: v.clone() },
            LrMsg::SigmoidOpen { step: 3, round: 2, opening: Opening { e: v.clone(), f: vec![9] } },
            LrMsg::ResidualShare { step: 4, share: vec![] },
            LrMsg::BackwardOpen { step: 5, f: v.clone() },
            LrMsg::FinalShare { share: v },
        ];
        for m in msgs {
            let b = m.encode();
            assert_eq!(LrMsg::decode(&b).unwrap(), m);
            assert!(LrMsg::decode(&b[..b.len() - 1]).is_err(), "{}", m.kind());
            let mut longer = b.clone();
            longer.push(0);
            assert!(LrMsg::decode(&longer).is_err());
        }
        assert!(LrMsg::decode(&[]).is_err());
        assert!(LrMsg::decode(&[99]).is_err());
        // A huge announced length does not allocate.
        let mut b = vec![MASKED];
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(LrMsg::decode(&b).is_err());
    }
}
