//! The WOE/IV stage run in one process: the stage's conductor and every party's side,
//! exchanging exactly the messages and payloads of a deployed job (without the sealing and the
//! vertical envelopes), for tests and the `bench woe` runner. Also the seeded tables that
//! runner uses.
//!
//! The protocol is [`super`]'s (federated WOE/IV after FATE's hetero feature binning, Liu et
//! al., JMLR 2021, with exponential ElGamal, ElGamal 1985).

use std::collections::{BTreeMap, VecDeque};

use fedcredit_models::{FeatureSpec, Features};
use fedcredit_proto::pb;
use prost::Message;
use rand::{RngExt, SeedableRng};

use super::{IvReport, PartyWoe, WoeConductor, WoeRole};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{CsRng, RoleError, RoleOutbox};
use crate::vertical::{
    Alignment, PartyCtx, PartyTable, StageConductor, StageCtx, StageDone, StageOutbox, StageResult,
    StageRole, StageRoleOut, VerticalSpec,
};

/// A party of a local run.
#[derive(Debug, Clone)]
pub struct LocalParty {
    /// Its name.
    pub name: PartyId,
    /// Its table.
    pub table: PartyTable,
    /// Its rows of the common enterprises, in the agreed order.
    pub alignment: Alignment,
}

/// What a local run produced.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The label holder's report.
    pub report: IvReport,
    /// What each party kept.
    pub kept: BTreeMap<PartyId, PartyWoe>,
    /// The finished stage as the coordinator records it.
    pub done: StageDone,
    /// Encoded bytes of the party-to-party payloads.
    pub payload_bytes: u64,
    /// Every party-to-party payload: (from, to, payload).
    pub payloads: Vec<(PartyId, PartyId, pb::WoePayload)>,
}

enum Msg {
    Step(PartyId, pb::vertical_step::Body),
    Payload { from: PartyId, to: PartyId, body: pb::vertical_payload::Body },
    Report(PartyId, pb::vertical_report::Body),
}

struct Local {
    side: WoeRole,
    table: PartyTable,
    alignment: Option<Alignment>,
    kept: BTreeMap<String, String>,
    rng: CsRng,
}

impl Local {
    /// Hands one message to the party `me`'s side through `f`; returns what it sent.
    fn deliver(
        &mut self,
        me: &PartyId,
        job: &JobId,
        spec: &JobSpec,
        vertical: &VerticalSpec,
        f: impl FnOnce(
            &mut WoeRole,
            &mut PartyCtx<'_>,
            &mut CsRng,
            &mut StageRoleOut<'_>,
        ) -> Result<(), RoleError>,
    ) -> Result<RoleOutbox, RoleError> {
        let mut out = RoleOutbox::default();
        let mut ctx = PartyCtx {
            me,
            job,
            spec,
            vertical,
            table: &self.table,
            alignment: &mut self.alignment,
            kept: &mut self.kept,
        };
        let mut so = StageRoleOut { step: 1, out: &mut out };
        f(&mut self.side, &mut ctx, &mut self.rng, &mut so)?;
        Ok(out)
    }
}

/// Runs the stage of job `spec` over `parties`; each party's randomness is seeded from
/// `seed`.
///
/// # Errors
/// The first refusal of any side, naming the party.
pub fn run(
    job: &JobId,
    spec: &JobSpec,
    parties: Vec<LocalParty>,
    seed: u64,
) -> Result<LocalRun, String> {
    let vertical = spec.vertical.clone().ok_or("not a vertical job")?;
    let rows = parties.first().map_or(0, |p| p.alignment.len() as u64);
    let schemas: BTreeMap<PartyId, Vec<FeatureSpec>> =
        parties.iter().map(|p| (p.name.clone(), p.table.features.specs.clone())).collect();
    let aligned = StageDone {
        what: "given".into(),
        metrics: BTreeMap::new(),
        result: StageResult::Aligned { rows },
    };
    let mut conductor = WoeConductor::new(spec, &[aligned])?;
    let ctx = StageCtx {
        job,
        spec,
        vertical: &vertical,
        parties: &spec.parties,
        schemas: &schemas,
        step: 1,
    };
    let mut locals: BTreeMap<PartyId, Local> = parties
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.name,
                Local {
                    side: WoeRole::new(),
                    table: p.table,
                    alignment: Some(p.alignment),
                    kept: BTreeMap::new(),
                    rng: CsRng::seed_from_u64(seed.wrapping_add(i as u64)),
                },
            )
        })
        .collect();
    let mut queue = VecDeque::new();
    let mut so = StageOutbox::default();
    conductor.start(&ctx, &mut so)?;
    queue.extend(so.messages.into_iter().map(|(p, b)| Msg::Step(p, b)));
    let mut done = None;
    let mut payload_bytes = 0u64;
    let mut payloads = Vec::new();
    while let Some(msg) = queue.pop_front() {
        let (me, mut out) = match msg {
            Msg::Report(from, body) => {
                let mut so = StageOutbox::default();
                conductor
                    .receive(&ctx, &from, body, &mut so)
                    .map_err(|r| format!("the conductor refused {from}'s report: {}", r.reason))?;
                queue.extend(so.messages.into_iter().map(|(p, b)| Msg::Step(p, b)));
                if so.done.is_some() {
                    done = so.done;
                }
                continue;
            }
            Msg::Step(to, body) => {
                let l = locals.get_mut(&to).ok_or_else(|| format!("{to} is not a party"))?;
                let out = l
                    .deliver(&to, job, spec, &vertical, |side, ctx, rng, so| {
                        side.receive(ctx, body, rng, so)
                    })
                    .map_err(|e| format!("{to}: {e}"))?;
                (to, out)
            }
            Msg::Payload { from, to, body } => {
                if let pb::vertical_payload::Body::Woe(w) = &body {
                    payload_bytes += w.encoded_len() as u64;
                    payloads.push((from.clone(), to.clone(), w.clone()));
                }
                let l = locals.get_mut(&to).ok_or_else(|| format!("{to} is not a party"))?;
                let out = l
                    .deliver(&to, job, spec, &vertical, |side, ctx, rng, so| {
                        side.payload(ctx, &from, body, rng, so)
                    })
                    .map_err(|e| format!("{to}: {e}"))?;
                (to, out)
            }
        };
        route(&me, &mut out, &mut queue);
    }
    let done = done.ok_or("the stage did not finish")?;
    let StageResult::Woe { iv_json } = &done.result else {
        return Err("the stage finished without an IV report".into());
    };
    let report: IvReport = serde_json::from_str(iv_json).map_err(|e| e.to_string())?;
    let mut kept = BTreeMap::new();
    for (p, l) in &locals {
        if !l.side.finished() {
            return Err(format!("{p} did not finish"));
        }
        kept.insert(p.clone(), PartyWoe::from_kept(&l.kept)?.unwrap_or_default());
    }
    Ok(LocalRun { report, kept, done, payload_bytes, payloads })
}

/// Queues what a party's side asked for.
fn route(me: &PartyId, out: &mut RoleOutbox, queue: &mut VecDeque<Msg>) {
    for m in out.messages.drain(..) {
        if let Some(pb::role_message::Body::Vertical(v)) = m.body
            && let Some(b) = v.body
        {
            queue.push_back(Msg::Report(me.clone(), b));
        }
    }
    for r in out.reports.drain(..) {
        for m in r {
            if let Some(pb::role_message::Body::Vertical(v)) = m.body
                && let Some(b) = v.body
            {
                queue.push_back(Msg::Report(me.clone(), b));
            }
        }
    }
    let mut push = |to: &[PartyId], p: pb::Payload| {
        if let Some(pb::payload::Body::Vertical(v)) = p.body
            && let Some(b) = v.body
        {
            for t in to {
                queue.push_back(Msg::Payload { from: me.clone(), to: t.clone(), body: b.clone() });
            }
        }
    };
    for (to, p) in out.payloads.drain(..) {
        push(&to, p);
    }
    for s in out.streams.drain(..) {
        for p in s.source {
            push(&s.to, p);
        }
    }
}

/// The `bench woe` job: a label holder `bank` (label only) and a feature holder `platform`
/// with `features` columns, `rows` common rows each, aligned in table order.
///
/// # Errors
/// A message when the spec does not parse (not expected).
pub fn bench_job(
    rows: usize,
    features: usize,
    seed: u64,
) -> Result<(JobSpec, Vec<LocalParty>), String> {
    let spec = JobSpec::from_toml(
        r#"
parties = ["bank", "platform"]
[data]
id = "id"
label = "default"
[model]
kind = "woe"
[vertical]
label_holder = "bank"
"#,
    )
    .map_err(|e| e.to_string())?;
    let mut rng = CsRng::seed_from_u64(seed);
    let ids: Vec<String> = (0..rows).map(|i| format!("e{i}")).collect();
    let risk: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
    let label: Vec<f64> =
        risk.iter().map(|&r| f64::from(u8::from(rng.random::<f64>() < 0.1 + 0.3 * r))).collect();
    let mut values = ndarray::Array2::<f64>::zeros((rows, features));
    let mut specs = Vec::with_capacity(features);
    for j in 0..features {
        let text = j % 10 == 9;
        specs.push(if text {
            FeatureSpec::categorical(
                format!("f{j}"),
                (0..12).map(|l| format!("level{l}")).collect(),
            )
        } else {
            FeatureSpec::numeric(format!("f{j}"))
        });
        let weight = (j % 7) as f64 / 7.0;
        for i in 0..rows {
            let noise: f64 = rng.random();
            values[[i, j]] = if rng.random::<f64>() < 0.01 {
                f64::NAN
            } else if text {
                ((weight * risk[i] + noise) * 6.0).floor().min(11.0)
            } else if j % 5 == 0 {
                // A point mass at 0.
                if noise < 0.4 { 0.0 } else { (weight * risk[i] + noise) * 1000.0 }
            } else {
                weight * risk[i] + noise
            };
        }
    }
    let alignment = Alignment {
        rows: (0..rows as u32).collect(),
        keys: (0..rows).map(|i| (i as u128).to_le_bytes()).collect(),
    };
    let bank = PartyTable {
        ids: ids.clone(),
        features: Features { specs: Vec::new(), values: ndarray::Array2::zeros((rows, 0)) },
        label: Some(label),
    };
    let platform = PartyTable { ids, features: Features { specs, values }, label: None };
    Ok((
        spec,
        vec![
            LocalParty { name: PartyId("bank".into()), table: bank, alignment: alignment.clone() },
            LocalParty { name: PartyId("platform".into()), table: platform, alignment },
        ],
    ))
}
