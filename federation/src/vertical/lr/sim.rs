//! The vertical LR roles run in memory: a FIFO of messages between the dealer and the parties,
//! with an optional transcript of everything delivered (for leakage tests) and traffic counts.
//! Every message goes through its bytes ([`LrMsg::encode`], [`LrMsg::decode`]) on the way, as
//! it would on the wire.

use std::collections::{BTreeMap, VecDeque};

use fedcredit_models::Features;
use rand::CryptoRng;

use super::protocol::{
    Dealer, EpochReport, LocalEncoding, LrError, LrMsg, LrParams, LrPart, Node, Party, PartyData,
    Roster, WarmStart,
};
use crate::ids::{JobId, PartyId};

/// A party's input: its aligned rows (and the labels at the label holder).
#[derive(Debug, Clone)]
pub struct SimInput {
    /// Its columns over the aligned rows.
    pub features: Features,
    /// 0/1 labels, label holder only.
    pub labels: Option<Vec<f64>>,
    /// Its columns over the validation rows (the same rows at every party), if any.
    pub valid: Option<Features>,
    /// Validation labels, label holder only.
    pub valid_labels: Option<Vec<f64>>,
    /// Its encoding when given (a scorecard's WOE); by default the linear encoder fitted on
    /// its own training rows.
    pub encoding: Option<LocalEncoding>,
    /// Starting coefficients (a warm start), the label holder's intercept last, and the
    /// epochs they were trained for.
    pub initial: Option<(Vec<f64>, u32)>,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Sender.
    pub from: Node,
    /// Receiver.
    pub to: Node,
    /// The message.
    pub msg: LrMsg,
}

/// What a run produced.
#[derive(Debug)]
pub struct SimOutcome {
    /// Each party's model part (each stays at its party in a real run).
    pub parts: BTreeMap<PartyId, LrPart>,
    /// Every delivery, when recorded.
    pub transcript: Vec<Delivery>,
    /// The label holder's figures per epoch on the validation rows.
    pub progress: Vec<EpochReport>,
    /// Messages delivered.
    pub messages: u64,
    /// Bytes sent, by sender and receiver.
    pub bytes: BTreeMap<(Node, Node), u64>,
}

/// Runs a job in memory to the end.
///
/// # Errors
/// The first [`LrError`] of any role.
pub fn run<R: CryptoRng + ?Sized>(
    job: &JobId,
    roster: &Roster,
    params: &LrParams,
    inputs: &BTreeMap<PartyId, SimInput>,
    rng: &mut R,
    record: bool,
) -> Result<SimOutcome, LrError> {
    let mut dealer = Dealer::new(roster.clone(), *params, rng)?;
    let mut parties = BTreeMap::new();
    let mut queue: VecDeque<Delivery> = VecDeque::new();
    for p in roster.parties() {
        let input = inputs.get(p).ok_or_else(|| LrError::Params(format!("no input for {p}")))?;
        let data = PartyData {
            features: &input.features,
            labels: input.labels.as_deref(),
            valid: input.valid.as_ref(),
            valid_labels: input.valid_labels.as_deref(),
            encoding: input.encoding.as_ref(),
            initial: input
                .initial
                .as_ref()
                .map(|(coefficients, epochs)| WarmStart { coefficients, epochs: *epochs }),
        };
        let (party, sends) = Party::new(job, p.clone(), roster.clone(), *params, data)?;
        parties.insert(p.clone(), party);
        let from = Node::Party(p.clone());
        queue.extend(sends.into_iter().map(|(to, msg)| Delivery { from: from.clone(), to, msg }));
    }
    let mut transcript = Vec::new();
    let mut messages = 0u64;
    let mut bytes: BTreeMap<(Node, Node), u64> = BTreeMap::new();
    while let Some(mut d) = queue.pop_front() {
        messages += 1;
        let wire = d.msg.encode();
        *bytes.entry((d.from.clone(), d.to.clone())).or_default() += wire.len() as u64;
        d.msg = LrMsg::decode(&wire)?;
        if record {
            transcript.push(d.clone());
        }
        let (sends, from) = match &d.to {
            Node::Dealer => (dealer.handle(&d.from, d.msg)?, Node::Dealer),
            Node::Party(p) => {
                let party =
                    parties.get_mut(p).ok_or_else(|| LrError::Protocol(format!("no party {p}")))?;
                (party.handle(&d.from, d.msg)?, d.to.clone())
            }
        };
        queue.extend(sends.into_iter().map(|(to, msg)| Delivery { from: from.clone(), to, msg }));
    }
    let progress = parties.get(&roster.label).map(|p| p.progress().to_vec()).unwrap_or_default();
    let mut parts = BTreeMap::new();
    for (p, party) in parties {
        let part = party.result().cloned().ok_or_else(|| {
            LrError::Protocol(format!("{p} stopped at step {} without a model", party.step()))
        })?;
        parts.insert(p, part);
    }
    Ok(SimOutcome { parts, transcript, progress, messages, bytes })
}

/// The joint log-odds of rows given as each party's columns: the sum of the parties' partial
/// scores (what the label holder adds up when it serves a score).
///
/// # Errors
/// [`LrError`] when a party's columns are missing or do not fit its part.
pub fn joint_scores(
    parts: &BTreeMap<PartyId, LrPart>,
    features: &BTreeMap<PartyId, Features>,
) -> Result<Vec<f64>, LrError> {
    let mut total: Option<Vec<f64>> = None;
    for (p, part) in parts {
        let f = features.get(p).ok_or_else(|| LrError::Params(format!("no columns of {p}")))?;
        let s = part.partial_scores(f)?;
        total = Some(match total {
            None => s,
            Some(t) => t.iter().zip(&s).map(|(a, b)| a + b).collect(),
        });
    }
    total.ok_or_else(|| LrError::Params("no parties".into()))
}

#[cfg(test)]
mod tests;
