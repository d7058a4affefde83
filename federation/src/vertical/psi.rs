//! The alignment stage: private set intersection of the parties' ids.
//!
//! (Being written: the stage's conductor and party sides.)

use fedcredit_proto::pb;

use super::{PartyCtx, StageConductor, StageCtx, StageOutbox, StageRole, StageRoleOut};
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Rejection, RoleError};

/// The coordinator's side of the alignment stage.
#[derive(Debug)]
pub struct PsiConductor {}

impl PsiConductor {
    /// The alignment stage of job `spec`.
    ///
    /// # Errors
    /// Not built yet.
    pub fn new(_spec: &JobSpec) -> Result<Self, String> {
        Err("PSI is not built yet".into())
    }
}

impl StageConductor for PsiConductor {
    fn start(&mut self, _ctx: &StageCtx<'_>, _out: &mut StageOutbox) -> Result<(), String> {
        Err("PSI is not built yet".into())
    }

    fn receive(
        &mut self,
        _ctx: &StageCtx<'_>,
        _from: &PartyId,
        _report: pb::vertical_report::Body,
        _out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        Err(Rejection::rejected("PSI is not built yet"))
    }

    fn pending(&self) -> Vec<PartyId> {
        Vec::new()
    }

    fn status(&self) -> String {
        "aligning".into()
    }
}

/// A party's side of the alignment stage.
#[derive(Debug, Default)]
pub struct PsiRole {}

impl PsiRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self {}
    }
}

impl StageRole for PsiRole {
    fn receive(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _msg: pb::vertical_step::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("PSI is not built yet".into()))
    }

    fn payload(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _from: &PartyId,
        _msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("PSI is not built yet".into()))
    }

    fn finished(&self) -> bool {
        false
    }
}
