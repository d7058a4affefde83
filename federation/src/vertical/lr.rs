//! Vertical logistic regression and scorecard.
//!
//! The protocol (secret sharing between the label holder and the feature holders, the
//! coordinator as dealer of correlated randomness; SecureML, Mohassel & Zhang, IEEE S&P 2017)
//! is in [`protocol`], as sans-IO roles with typed messages; [`codec`] turns those into bytes;
//! [`sim`] runs them in memory.
//!
//! The stage: [`LrConductor`] is the coordinator's side (it wraps the [`protocol::Dealer`],
//! seeded from the coordinator's cryptographic generator afresh for every run of the stage,
//! so a re-run never reuses a mask); [`LrRole`] is a party's side (its aligned rows, the
//! dealer's messages in `LrStep.dealer`, its own to the dealer in `LrReport.dealer`, peers'
//! in sealed `LrPayload.data`). For a scorecard the party's columns enter as the WOE of the
//! bins the WOE/IV stage left at it, and its part keeps the points of its own bins
//! ([`super::model`]).

pub mod codec;
pub mod protocol;
pub mod sim;

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_proto::pb;

use super::model::{self, PartyModel, PartyScorecard, VerticalModelRef};
use super::woe::PartyWoe;
use super::{
    PartyCtx, StageConductor, StageCtx, StageDone, StageOutbox, StageResult, StageRole,
    StageRoleOut,
};
use crate::horizontal::ModelSpec;
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Progress, Rejection, RoleError};

/// A party's side of the lr stage: runs its [`protocol::Party`] over its aligned rows, the
/// dealer's messages arriving in `LrStep.dealer`, its own to the dealer leaving in
/// `LrReport.dealer`, and party-to-party messages as sealed `LrPayload.data`.
///
/// The parameters come from the job spec ([`stage_params`]), not from the coordinator: the
/// start message's epoch count must match. Rows whose agreed key falls below the job's
/// `validation_fraction` are validation rows (the same at every party, since the keys are);
/// the label holder reports the last epoch's validation figures when it is done. The party's
/// [`protocol::LrPart`] is kept as `model`.
#[derive(Debug, Default)]
pub struct LrRole {
    party: Option<Box<protocol::Party>>,
    /// Pieces of a chunked message, by sender.
    pieces: BTreeMap<PartyId, Vec<u8>>,
    /// Epoch figures already reported.
    reported: usize,
    done: bool,
}

impl LrRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self::default()
    }

    fn party(&mut self) -> Result<&mut protocol::Party, RoleError> {
        self.party.as_deref_mut().ok_or_else(|| RoleError("the lr stage has not started".into()))
    }

    fn start(&mut self, ctx: &mut PartyCtx<'_>, epochs: u32) -> Result<protocol::Sends, RoleError> {
        let me = ctx.me.clone();
        let err = |e: String| RoleError(format!("{me}: {e}"));
        if self.party.is_some() {
            return Err(err("the lr stage started twice".into()));
        }
        let params = stage_params(ctx.spec);
        if epochs != params.epochs {
            return Err(err(format!(
                "asked for {epochs} epochs where the job says {}",
                params.epochs
            )));
        }
        let alignment =
            ctx.alignment.as_ref().ok_or_else(|| err("no alignment before the lr stage".into()))?;
        if alignment.rows.iter().any(|r| *r as usize >= ctx.table.n_rows())
            || alignment.keys.len() != alignment.rows.len()
        {
            return Err(err("the alignment does not fit the table".into()));
        }
        let (train, valid) = alignment.split(ctx.spec.data.validation_fraction);
        let (train, valid): (Vec<usize>, Vec<usize>) = (
            train.into_iter().map(|r| r as usize).collect(),
            valid.into_iter().map(|r| r as usize).collect(),
        );
        let features = ctx.table.features.select_rows(&train);
        let vfeatures = ctx.table.features.select_rows(&valid);
        let pick = |rows: &[usize]| {
            ctx.table.label.as_ref().map(|l| {
                // A missing label is not 0/1: the protocol refuses it.
                rows.iter().map(|&r| l.get(r).copied().unwrap_or(f64::NAN)).collect::<Vec<f64>>()
            })
        };
        let (labels, vlabels) = (pick(&train), pick(&valid));
        // A scorecard trains on the WOE of the bins the WOE/IV stage left here.
        let encoding = match &ctx.spec.model {
            ModelSpec::Scorecard(_) => {
                let woe = PartyWoe::from_kept(ctx.kept)
                    .map_err(err)?
                    .ok_or_else(|| err("no WOE binning before the scorecard's lr stage".into()))?;
                let binner = model::woe_binner(&woe, &features).map_err(|e| err(e.to_string()))?;
                Some(protocol::LocalEncoding::Woe { binner, clip: params.clip })
            }
            _ => None,
        };
        // A warm start: the party's part of the model this job starts from (its own encoding
        // for a logistic model, and its coefficients).
        let warm = ctx
            .kept
            .get(model::KEPT_WARM_START)
            .map(|j| serde_json::from_str::<PartyModel>(j))
            .transpose()
            .map_err(|e| err(format!("the warm-start part: {e}")))?;
        let encoding = match (&warm, encoding) {
            (Some(PartyModel::Logistic { part }), None) => Some(part.encoding.clone()),
            (_, e) => e,
        };
        let initial: Option<(Vec<f64>, u32)> = match warm.as_ref().map(|w| w.lr()) {
            None => None,
            Some(None) => return Err(err("the warm-start part is not a regression".into())),
            Some(Some(p)) => {
                Some((p.coefficients.iter().copied().chain(p.intercept).collect(), p.epochs))
            }
        };
        let label = ctx.vertical.label_holder.clone();
        let others = ctx.spec.parties.iter().filter(|p| **p != label).cloned().collect();
        let roster = protocol::Roster::new(label, others).map_err(|e| err(e.to_string()))?;
        let data = protocol::PartyData {
            features: &features,
            labels: labels.as_deref(),
            valid: (!valid.is_empty()).then_some(&vfeatures),
            valid_labels: vlabels.as_deref().filter(|_| !valid.is_empty()),
            encoding: encoding.as_ref(),
            initial: initial.as_ref().map(|(coefficients, epochs)| protocol::WarmStart {
                coefficients,
                epochs: *epochs,
            }),
        };
        let (party, sends) = protocol::Party::new(ctx.job, me.clone(), roster, params, data)
            .map_err(|e| err(e.to_string()))?;
        self.party = Some(Box::new(party));
        Ok(sends)
    }

    /// Sends what the party asked for; keeps its model part once it is done.
    fn forward(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        sends: protocol::Sends,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        for (to, msg) in sends {
            let bytes = msg.encode();
            match to {
                protocol::Node::Dealer => out.report(pb::vertical_report::Body::Lr(pb::LrReport {
                    body: Some(pb::lr_report::Body::Dealer(bytes)),
                })),
                protocol::Node::Party(p) if bytes.len() <= CHUNK => out.payload(
                    &[p],
                    pb::vertical_payload::Body::Lr(pb::LrPayload {
                        body: Some(pb::lr_payload::Body::Data(bytes)),
                    }),
                ),
                // A large message (the masked matrix) streams in pieces, pulled by the runtime
                // with back-pressure.
                protocol::Node::Party(p) => {
                    let n = bytes.len().div_ceil(CHUNK);
                    let pieces = (0..n).map(move |i| {
                        let piece = bytes[i * CHUNK..((i + 1) * CHUNK).min(bytes.len())].to_vec();
                        pb::vertical_payload::Body::Lr(pb::LrPayload {
                            body: Some(pb::lr_payload::Body::Chunk(pb::LrChunk {
                                data: piece,
                                last: i + 1 == n,
                            })),
                        })
                    });
                    out.stream(&[p], pieces);
                }
            }
        }
        let Some(party) = self.party.as_deref() else { return Ok(()) };
        // The label holder reports each epoch's validation figures as they come.
        for r in &party.progress()[self.reported.min(party.progress().len())..] {
            out.report(pb::vertical_report::Body::Lr(pb::LrReport {
                body: Some(pb::lr_report::Body::Epoch(pb::LrEpoch {
                    epoch: u32::try_from(r.epoch).unwrap_or(u32::MAX),
                    auc: r.auc,
                    ks: r.ks,
                    log_loss: r.log_loss,
                })),
            }));
        }
        self.reported = party.progress().len();
        if self.done || !party.finished() {
            return Ok(());
        }
        let part = party.result().ok_or_else(|| RoleError("finished without a model".into()))?;
        let columns = u32::try_from(part.coefficients.len()).unwrap_or(u32::MAX);
        let kept = match &ctx.spec.model {
            ModelSpec::Scorecard(s) => PartyModel::Scorecard {
                card: PartyScorecard::new(part.clone(), s.scaling())
                    .map_err(|e| RoleError(format!("{}: {e}", ctx.me)))?,
            },
            _ => PartyModel::Logistic { part: part.clone() },
        };
        let json = serde_json::to_string(&kept).map_err(|e| RoleError(e.to_string()))?;
        ctx.kept.insert(model::KEPT_MODEL.into(), json);
        let summary = match party.progress().last() {
            Some(r) => format!(
                "{columns} coefficients; validation AUC {:.4}, KS {:.4}, log loss {:.4}",
                r.auc, r.ks, r.log_loss
            ),
            None => format!("{columns} coefficients"),
        };
        out.report(pb::vertical_report::Body::Lr(pb::LrReport {
            body: Some(pb::lr_report::Body::Done(pb::LrDone { columns, summary })),
        }));
        self.done = true;
        Ok(())
    }
}

/// Encoded messages above this many bytes go to a peer as a stream of pieces this large.
const CHUNK: usize = 4 << 20;

/// The largest message a peer may stream (a masked matrix of 2^29 ring elements).
const MAX_MESSAGE: usize = 8 << 30;

/// The lr stage's parameters for job `spec`: its `[vertical.lr]` section.
pub fn stage_params(spec: &JobSpec) -> protocol::LrParams {
    spec.vertical.as_ref().map(|v| v.lr).unwrap_or_default()
}

/// The coordinator's side of the lr stage: the dealer of correlated randomness. It opens the
/// stage with the job's epoch count, answers each party's shape and the label holder's step
/// requests with the dealer's seeds and corrections (random values only), records the label
/// holder's validation figures, and finishes when every party has its part; it then registers
/// a [`VerticalModelRef`] naming where the parts are.
#[derive(Debug)]
pub struct LrConductor {
    dealer: protocol::Dealer,
    epochs: u32,
    label: PartyId,
    kind: &'static str,
    scaling: Option<fedcredit_models::scorecard::ScoreScaling>,
    /// Common rows (from the alignment).
    rows: u64,
    waiting: BTreeSet<PartyId>,
    columns: BTreeMap<PartyId, u32>,
    last_epoch: Option<pb::LrEpoch>,
}

impl LrConductor {
    /// The lr stage of job `spec` after stages `done`, its dealer seeded from `rng` (a
    /// cryptographic generator: the masks of every party derive from it).
    ///
    /// # Errors
    /// A message when the job has no lr stage, a stage it needs has not finished, or the
    /// parameters are out of range.
    pub fn new(spec: &JobSpec, done: &[StageDone], rng: &mut CsRng) -> Result<Self, String> {
        let vertical = spec.vertical.as_ref().ok_or("not a vertical job")?;
        let rows = done
            .iter()
            .find_map(|d| match d.result {
                StageResult::Aligned { rows } => Some(rows),
                _ => None,
            })
            .ok_or("the lr stage needs the alignment first")?;
        let (kind, scaling) = match &spec.model {
            ModelSpec::Logistic(_) => ("logistic", None),
            ModelSpec::Scorecard(s) => {
                if !done.iter().any(|d| matches!(d.result, StageResult::Woe { .. })) {
                    return Err("the scorecard's lr stage needs the WOE/IV stage first".into());
                }
                ("scorecard", Some(s.scaling()))
            }
            other => return Err(format!("a {} job has no lr stage", other.kind())),
        };
        let params = stage_params(spec);
        let label = vertical.label_holder.clone();
        let others = spec.parties.iter().filter(|p| **p != label).cloned().collect();
        let roster = protocol::Roster::new(label.clone(), others).map_err(|e| e.to_string())?;
        let dealer = protocol::Dealer::new(roster, params, rng).map_err(|e| e.to_string())?;
        Ok(Self {
            dealer,
            epochs: params.epochs,
            label,
            kind,
            scaling,
            rows,
            waiting: BTreeSet::new(),
            columns: BTreeMap::new(),
            last_epoch: None,
        })
    }

    fn finish(&self, ctx: &StageCtx<'_>, out: &mut StageOutbox) {
        let mut metrics = BTreeMap::new();
        if let Some(e) = &self.last_epoch {
            metrics.insert("valid_auc".to_string(), e.auc);
            metrics.insert("valid_ks".to_string(), e.ks);
            metrics.insert("valid_log_loss".to_string(), e.log_loss);
        }
        metrics.insert("epochs".to_string(), f64::from(self.epochs));
        let reference = VerticalModelRef::of_stage(
            ctx,
            self.kind,
            &self.columns,
            &metrics,
            self.rows,
            self.scaling,
        );
        let what = match &self.last_epoch {
            Some(e) => format!(
                "{} trained over {} parties, {} epochs; validation AUC {:.4}, KS {:.4}",
                self.kind,
                ctx.parties.len(),
                self.epochs,
                e.auc,
                e.ks
            ),
            None => format!(
                "{} trained over {} parties, {} epochs",
                self.kind,
                ctx.parties.len(),
                self.epochs
            ),
        };
        out.model_done(what, metrics, &reference);
    }
}

impl StageConductor for LrConductor {
    fn start(&mut self, ctx: &StageCtx<'_>, out: &mut StageOutbox) -> Result<(), String> {
        for p in ctx.parties {
            out.send(
                p,
                pb::vertical_step::Body::Lr(pb::LrStep {
                    body: Some(pb::lr_step::Body::Start(pb::LrStart { epochs: self.epochs })),
                }),
            );
        }
        self.waiting = ctx.parties.iter().cloned().collect();
        Ok(())
    }

    fn receive(
        &mut self,
        ctx: &StageCtx<'_>,
        from: &PartyId,
        report: pb::vertical_report::Body,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        let pb::vertical_report::Body::Lr(pb::LrReport { body: Some(body) }) = report else {
            return Err(Rejection::rejected("not a report of the lr stage"));
        };
        if !self.waiting.contains(from) {
            return Err(Rejection::rejected(format!("{from} has already finished the lr stage")));
        }
        match body {
            pb::lr_report::Body::Dealer(bytes) => {
                let msg = protocol::LrMsg::decode(&bytes)
                    .map_err(|e| Rejection::rejected(format!("to the dealer: {e}")))?;
                let sends = self
                    .dealer
                    .handle(&protocol::Node::Party(from.clone()), msg)
                    .map_err(|e| Rejection::rejected(e.to_string()))?;
                for (to, msg) in sends {
                    let protocol::Node::Party(to) = to else { continue };
                    out.send(
                        &to,
                        pb::vertical_step::Body::Lr(pb::LrStep {
                            body: Some(pb::lr_step::Body::Dealer(msg.encode())),
                        }),
                    );
                }
            }
            pb::lr_report::Body::Epoch(e) if *from == self.label => {
                let next = self.last_epoch.as_ref().map_or(1, |l| l.epoch + 1);
                if e.epoch != next || e.epoch > self.epochs {
                    return Err(Rejection::rejected(format!(
                        "epoch {} reported where {next} was next",
                        e.epoch
                    )));
                }
                self.last_epoch = Some(e);
            }
            pb::lr_report::Body::Epoch(_) => {
                return Err(Rejection::rejected(format!("{from} does not hold the label")));
            }
            pb::lr_report::Body::Done(d) => {
                self.columns.insert(from.clone(), d.columns);
                self.waiting.remove(from);
                if self.waiting.is_empty() {
                    self.finish(ctx, out);
                }
            }
        }
        Ok(())
    }

    fn pending(&self) -> Vec<PartyId> {
        self.waiting.iter().cloned().collect()
    }

    fn status(&self) -> String {
        match &self.last_epoch {
            Some(e) => format!(
                "{}: epoch {}/{} (validation AUC {:.4})",
                self.kind, e.epoch, self.epochs, e.auc
            ),
            None => format!("{}: epoch 0/{}", self.kind, self.epochs),
        }
    }

    fn progress(&self) -> Option<Progress> {
        Some(Progress {
            stage: self.status(),
            done: self.last_epoch.as_ref().map_or(0, |e| u64::from(e.epoch)),
            total: u64::from(self.epochs),
            loss: self.last_epoch.as_ref().map(|e| e.log_loss),
            valid_auc: self.last_epoch.as_ref().map(|e| e.auc),
        })
    }
}

impl StageRole for LrRole {
    fn receive(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        _rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let pb::vertical_step::Body::Lr(step) = msg else {
            return Err(RoleError("not a message of the lr stage".into()));
        };
        let sends = match step.body {
            Some(pb::lr_step::Body::Start(s)) => self.start(ctx, s.epochs)?,
            Some(pb::lr_step::Body::Dealer(bytes)) => {
                let msg = protocol::LrMsg::decode(&bytes).map_err(|e| RoleError(e.to_string()))?;
                self.party()?
                    .handle(&protocol::Node::Dealer, msg)
                    .map_err(|e| RoleError(e.to_string()))?
            }
            None => return Err(RoleError("an lr step without a body".into())),
        };
        self.forward(ctx, sends, out)
    }

    fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let pb::vertical_payload::Body::Lr(pb::LrPayload { body: Some(body) }) = msg else {
            return Err(RoleError(format!("{from} sent a payload that is not for the lr stage")));
        };
        let bytes = match body {
            pb::lr_payload::Body::Data(bytes) => bytes,
            pb::lr_payload::Body::Chunk(c) => {
                let buf = self.pieces.entry(from.clone()).or_default();
                if buf.len() + c.data.len() > MAX_MESSAGE {
                    return Err(RoleError(format!(
                        "{from} streamed a message of more than {MAX_MESSAGE} bytes"
                    )));
                }
                buf.extend_from_slice(&c.data);
                if !c.last {
                    return Ok(());
                }
                self.pieces.remove(from).unwrap_or_default()
            }
        };
        let msg = protocol::LrMsg::decode(&bytes).map_err(|e| RoleError(e.to_string()))?;
        let sends = self
            .party()?
            .handle(&protocol::Node::Party(from.clone()), msg)
            .map_err(|e| RoleError(e.to_string()))?;
        self.forward(ctx, sends, out)
    }

    fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod stage_tests;
