//! Federated WOE/IV.
//!
//! (Being written: the stage's conductor and party sides.)

use fedcredit_proto::pb;

use super::{PartyCtx, StageConductor, StageCtx, StageOutbox, StageRole, StageRoleOut};
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, Rejection, RoleError};

/// The coordinator's side of the WOE/IV stage.
#[derive(Debug)]
pub struct WoeConductor {}

impl WoeConductor {
    /// The WOE/IV stage of job `spec`, after stages `_done`.
    ///
    /// # Errors
    /// Not built yet.
    pub fn new(_spec: &JobSpec, _done: &[super::StageDone]) -> Result<Self, String> {
        Err("WOE/IV is not built yet".into())
    }
}

impl StageConductor for WoeConductor {
    fn start(&mut self, _ctx: &StageCtx<'_>, _out: &mut StageOutbox) -> Result<(), String> {
        Err("WOE/IV is not built yet".into())
    }

    fn receive(
        &mut self,
        _ctx: &StageCtx<'_>,
        _from: &PartyId,
        _report: pb::vertical_report::Body,
        _out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        Err(Rejection::rejected("WOE/IV is not built yet"))
    }

    fn pending(&self) -> Vec<PartyId> {
        Vec::new()
    }

    fn status(&self) -> String {
        "WOE/IV".into()
    }
}

/// A party's side of the WOE/IV stage.
#[derive(Debug, Default)]
pub struct WoeRole {}

impl WoeRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self {}
    }
}

impl StageRole for WoeRole {
    fn receive(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _msg: pb::vertical_step::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("WOE/IV is not built yet".into()))
    }

    fn payload(
        &mut self,
        _ctx: &mut PartyCtx<'_>,
        _from: &PartyId,
        _msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        _out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        Err(RoleError("WOE/IV is not built yet".into()))
    }

    fn finished(&self) -> bool {
        false
    }
}

/// `[model] kind = "woe"`: federated binning with WOE and IV per feature of every party.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WoeSpec {
    /// Bins per numeric feature (equal frequency); default 10.
    #[serde(default = "default_bins")]
    pub bins: usize,
}

fn default_bins() -> usize {
    10
}

impl WoeSpec {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(2..=64).contains(&self.bins) {
            return Err(("bins".into(), format!("is {}; must be between 2 and 64", self.bins)));
        }
        Ok(())
    }
}

/// The WOE/IV tables of every party's features (JSON in the stage result).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IvReport {}
