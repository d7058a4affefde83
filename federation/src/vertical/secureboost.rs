//! Vertical gradient-boosted trees (SecureBoost).
//!
//! (Being written: the party's side below refuses every message, and the vertical conductor
//! refuses to open the stage.)

use fedcredit_proto::pb;

use super::{PartyCtx, StageRole, StageRoleOut};
use crate::ids::PartyId;
use crate::protocol::{CsRng, RoleError};

/// A party's side of the secureboost stage.
#[derive(Debug, Default)]
pub struct SbRole {}

impl SbRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self {}
    }
}

impl StageRole for SbRole {
    fn receive(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _msg: pb::vertical_step::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("Vertical gradient-boosted trees (SecureBoost) is not built yet".into()))
    }

    fn payload(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _from: &PartyId,
        _msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("Vertical gradient-boosted trees (SecureBoost) is not built yet".into()))
    }

    fn finished(&self) -> bool {
        false
    }
}
