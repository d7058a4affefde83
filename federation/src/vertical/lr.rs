//! Vertical logistic regression and scorecard.
//!
//! (Being written: the stage's conductor and party sides.)

use fedcredit_proto::pb;

use super::{PartyCtx, StageConductor, StageCtx, StageOutbox, StageRole, StageRoleOut};
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Rejection, RoleError};

/// The coordinator's side of the lr stage.
#[derive(Debug)]
pub struct LrConductor {}

impl LrConductor {
    /// The lr stage of job `spec`.
    ///
    /// # Errors
    /// Not built yet.
    pub fn new(_spec: &JobSpec, _done: &[super::StageDone]) -> Result<Self, String> {
        Err("Vertical logistic regression and scorecard is not built yet".into())
    }
}

impl StageConductor for LrConductor {
    fn start(&mut self, _ctx: &StageCtx<'_>, _out: &mut StageOutbox) -> Result<(), String> {
        Err("Vertical logistic regression and scorecard is not built yet".into())
    }

    fn receive(
        &mut self,
        _ctx: &StageCtx<'_>,
        _from: &PartyId,
        _report: pb::vertical_report::Body,
        _out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        Err(Rejection::rejected("Vertical logistic regression and scorecard is not built yet"))
    }

    fn pending(&self) -> Vec<PartyId> {
        Vec::new()
    }

    fn status(&self) -> String {
        "lr".into()
    }
}

/// A party's side of the lr stage.
#[derive(Debug, Default)]
pub struct LrRole {}

impl LrRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self {}
    }
}

impl StageRole for LrRole {
    fn receive(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _msg: pb::vertical_step::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("Vertical logistic regression and scorecard is not built yet".into()))
    }

    fn payload(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _from: &PartyId,
        _msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("Vertical logistic regression and scorecard is not built yet".into()))
    }

    fn finished(&self) -> bool {
        false
    }
}
