//! The secureboost stage run in one process: the stage's conductor and every party's side,
//! exchanging exactly the messages and payloads of a deployed job (through their protobuf
//! bytes, without the sealing and the vertical envelopes), for tests and the in-process
//! `federated:in-process` setting of `bench accuracy`.
//!
//! The protocol is [`super`]'s (SecureBoost, Cheng et al., arXiv 1901.08755).

use std::collections::{BTreeMap, VecDeque};

use fedcredit_models::Features;
use fedcredit_proto::pb;
use prost::Message;
use rand::SeedableRng;

use super::part::LeafSet;
use super::{SbConductor, SbRole};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{CsRng, RoleOutbox, Schemas};
use crate::vertical::model::{GbdtPart, PartyModel};
use crate::vertical::woe::local::LocalParty;
use crate::vertical::{
    PartyCtx, StageConductor, StageCtx, StageDone, StageOutbox, StageResult, StageRole,
    StageRoleOut,
};

/// A payload as its recipient opened it: (from, to, body).
pub type Delivered = (PartyId, PartyId, pb::sb_payload::Body);

/// What a local run produced.
#[derive(Debug)]
pub struct LocalRun {
    /// The finished stage as the coordinator records it.
    pub done: StageDone,
    /// What each party kept.
    pub parts: BTreeMap<PartyId, GbdtPart>,
    /// Every party-to-party payload, when recorded.
    pub delivered: Vec<Delivered>,
    /// Encoded bytes of the party-to-party payloads.
    pub payload_bytes: u64,
    /// Every party's kept map at the end (its checkpointed state).
    pub kept: BTreeMap<PartyId, BTreeMap<String, String>>,
}

struct Site {
    role: SbRole,
    party: LocalParty,
    kept: BTreeMap<String, String>,
}

enum Ev {
    Step(pb::vertical_step::Body),
    Payload(PartyId, pb::vertical_payload::Body),
}

/// Runs the stage of job `spec` over `parties` (the alignment given) to the end; `record`
/// keeps every payload. `kept` restores parties' kept maps (a resumed run).
///
/// # Errors
/// The first refusal of any side, or of the conductor.
pub fn run(
    spec: &JobSpec,
    parties: Vec<LocalParty>,
    kept: BTreeMap<PartyId, BTreeMap<String, String>>,
    seed: u64,
    record: bool,
) -> Result<LocalRun, String> {
    let job = JobId("secureboost-local".into());
    let vertical = spec.vertical.clone().ok_or("not a vertical job")?;
    let schemas: Schemas =
        parties.iter().map(|p| (p.name.clone(), p.table.features.specs.clone())).collect();
    let rows = parties.first().map_or(0, |p| p.alignment.len()) as u64;
    let mut sites: BTreeMap<PartyId, Site> = parties
        .into_iter()
        .map(|p| {
            let k = kept.get(&p.name).cloned().unwrap_or_default();
            (p.name.clone(), Site { role: SbRole::new(), party: p, kept: k })
        })
        .collect();
    let step = 1;
    let sctx = StageCtx {
        job: &job,
        spec,
        vertical: &vertical,
        parties: &spec.parties,
        schemas: &schemas,
        step,
    };
    let aligned = StageDone {
        what: String::new(),
        metrics: BTreeMap::new(),
        result: StageResult::Aligned { rows },
    };
    let mut conductor = SbConductor::new(spec, &[aligned])?;
    let mut so = StageOutbox::default();
    conductor.start(&sctx, &mut so)?;
    let mut queue: VecDeque<(PartyId, Ev)> =
        so.messages.into_iter().map(|(p, b)| (p, Ev::Step(b))).collect();
    let mut rng = CsRng::seed_from_u64(seed);
    let mut delivered = Vec::new();
    let mut payload_bytes = 0u64;
    let mut result = None;
    while let Some((to, ev)) = queue.pop_front() {
        let site = sites.get_mut(&to).ok_or(format!("no party {to}"))?;
        let mut outbox = RoleOutbox::default();
        {
            let mut alignment = Some(site.party.alignment.clone());
            let mut ctx = PartyCtx {
                me: &to,
                job: &job,
                spec,
                vertical: &vertical,
                table: &site.party.table,
                alignment: &mut alignment,
                kept: &mut site.kept,
            };
            let mut out = StageRoleOut { step, out: &mut outbox };
            match ev {
                Ev::Step(b) => site.role.receive(&mut ctx, b, &mut rng, &mut out),
                Ev::Payload(from, b) => {
                    if record
                        && let pb::vertical_payload::Body::Secureboost(pb::SbPayload {
                            body: Some(body),
                        }) = &b
                    {
                        delivered.push((from.clone(), to.clone(), body.clone()));
                    }
                    site.role.payload(&mut ctx, &from, b, &mut rng, &mut out)
                }
            }
            .map_err(|e| e.0)?;
        }
        for m in outbox.messages.into_iter().chain(outbox.reports.into_iter().flatten()) {
            let Some(pb::role_message::Body::Vertical(r)) = m.body else {
                return Err(format!("{to} sent a report that is not vertical"));
            };
            let body = r.body.ok_or(format!("{to} sent an empty report"))?;
            if let pb::vertical_report::Body::Failed(why) = body {
                return Err(why);
            }
            let mut so = StageOutbox::default();
            conductor.receive(&sctx, &to, body, &mut so).map_err(|e| format!("{e:?}"))?;
            queue.extend(so.messages.into_iter().map(|(p, b)| (p, Ev::Step(b))));
            if let Some(why) = so.failed {
                return Err(why);
            }
            if let Some(d) = so.done {
                result = Some(d);
            }
        }
        let mut payloads = outbox.payloads;
        for st in outbox.streams {
            let to = st.to.clone();
            payloads.extend(st.source.map(|p| (to.clone(), p)));
        }
        for (recipients, payload) in payloads {
            // Through its bytes, as on the wire.
            let bytes = payload.encode_to_vec();
            payload_bytes += bytes.len() as u64 * recipients.len() as u64;
            let payload = pb::Payload::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            let Some(pb::payload::Body::Vertical(v)) = payload.body else {
                return Err(format!("{to} sent a payload that is not vertical"));
            };
            let body = v.body.ok_or(format!("{to} sent an empty payload"))?;
            for r in recipients {
                queue.push_back((r, Ev::Payload(to.clone(), body.clone())));
            }
        }
    }
    let done = result.ok_or("the stage did not finish")?;
    let mut parts = BTreeMap::new();
    for (p, site) in &sites {
        match PartyModel::from_kept(&site.kept)? {
            Some(PartyModel::Gbdt { part }) => {
                parts.insert(p.clone(), *part);
            }
            _ => return Err(format!("{p} kept no tree part")),
        }
    }
    let kept = sites.into_iter().map(|(p, s)| (p, s.kept)).collect();
    Ok(LocalRun { done, parts, delivered, payload_bytes, kept })
}

/// The raw scores (log-odds) of rows given as each party's columns (`features[p]`, the same
/// rows in the same order at every party): every party's leaf sets over its own columns,
/// intersected at the label holder, as the scoring service does.
///
/// # Errors
/// When a party's part or columns are missing or do not fit.
pub fn joint_scores(
    parts: &BTreeMap<PartyId, GbdtPart>,
    features: &BTreeMap<PartyId, Features>,
) -> Result<Vec<f64>, String> {
    let mut sets: Vec<Vec<Vec<LeafSet>>> = Vec::new();
    let mut label = None;
    for (p, part) in parts {
        let f = features.get(p).ok_or(format!("no columns of {p}"))?;
        sets.push(part.leaf_sets(f).map_err(|e| format!("{p}: {e}"))?);
        if let GbdtPart::Label(l) = part {
            label = Some(l);
        }
    }
    let label = label.ok_or("no label holder's part")?;
    let n = sets.first().map_or(0, Vec::len);
    let routing = label.routing();
    (0..n)
        .map(|i| {
            let per: Vec<&[LeafSet]> = sets.iter().map(|v| v[i].as_slice()).collect();
            Ok(label.log_odds(&label.leaves(&routing, &per)?))
        })
        .collect()
}
