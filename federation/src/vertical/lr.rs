//! Vertical logistic regression and scorecard.
//!
//! The protocol (secret sharing between the label holder and the feature holders, the
//! coordinator as dealer of correlated randomness) is in [`protocol`], as sans-IO roles with
//! typed messages; [`codec`] turns those into bytes; [`sim`] runs them in memory.
//!
//! The stage: [`LrRole`] is a party's side (its aligned rows, the dealer's messages in
//! `LrStep.dealer`, its own to the dealer in `LrReport.dealer`, peers' in sealed
//! `LrPayload.data`). The coordinator's side is still to be written (the vertical conductor
//! refuses to open the stage until then): it wraps a [`protocol::Dealer`], which needs a root seed from a cryptographic generator, and
//! stage conductors have none yet (the coordinator must hand one in and checkpoint it).

pub mod codec;
pub mod protocol;
pub mod sim;

use fedcredit_proto::pb;

use super::{PartyCtx, StageRole, StageRoleOut};
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, RoleError};

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
        let cut = ctx.spec.data.validation_fraction.clamp(0.0, 0.9);
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for (r, k) in alignment.rows.iter().zip(&alignment.keys) {
            let u = u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]]);
            if (u as f64 / 2f64.powi(64)) < cut {
                valid.push(*r as usize);
            } else {
                train.push(*r as usize);
            }
        }
        let features = ctx.table.features.select_rows(&train);
        let vfeatures = ctx.table.features.select_rows(&valid);
        let pick = |rows: &[usize]| {
            ctx.table.label.as_ref().map(|l| {
                // A missing label is not 0/1: the protocol refuses it.
                rows.iter().map(|&r| l.get(r).copied().unwrap_or(f64::NAN)).collect::<Vec<f64>>()
            })
        };
        let (labels, vlabels) = (pick(&train), pick(&valid));
        let label = ctx.vertical.label_holder.clone();
        let others = ctx.spec.parties.iter().filter(|p| **p != label).cloned().collect();
        let roster = protocol::Roster::new(label, others).map_err(|e| err(e.to_string()))?;
        let data = protocol::PartyData {
            features: &features,
            labels: labels.as_deref(),
            valid: (!valid.is_empty()).then_some(&vfeatures),
            valid_labels: vlabels.as_deref().filter(|_| !valid.is_empty()),
            encoding: None,
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
                protocol::Node::Party(p) => out.payload(
                    &[p],
                    pb::vertical_payload::Body::Lr(pb::LrPayload {
                        body: Some(pb::lr_payload::Body::Data(bytes)),
                    }),
                ),
            }
        }
        let Some(party) = self.party.as_deref() else { return Ok(()) };
        if self.done || !party.finished() {
            return Ok(());
        }
        let part = party.result().ok_or_else(|| RoleError("finished without a model".into()))?;
        let json = serde_json::to_string(part).map_err(|e| RoleError(e.to_string()))?;
        ctx.kept.insert("model".into(), json);
        let summary = match party.progress().last() {
            Some(r) => format!(
                "{} coefficients; validation AUC {:.4}, KS {:.4}, log loss {:.4}",
                part.coefficients.len(),
                r.auc,
                r.ks,
                r.log_loss
            ),
            None => format!("{} coefficients", part.coefficients.len()),
        };
        out.report(pb::vertical_report::Body::Lr(pb::LrReport {
            body: Some(pb::lr_report::Body::Done(summary)),
        }));
        self.done = true;
        Ok(())
    }
}

/// The lr stage's parameters for job `spec` (the protocol's defaults until `job.toml` carries
/// them).
pub fn stage_params(_spec: &JobSpec) -> protocol::LrParams {
    protocol::LrParams::default()
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
        let pb::vertical_payload::Body::Lr(pb::LrPayload {
            body: Some(pb::lr_payload::Body::Data(bytes)),
        }) = msg
        else {
            return Err(RoleError(format!("{from} sent a payload that is not for the lr stage")));
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
