//! A party's side of a vertical job: holds the party's table and alignment, checks each stage
//! the coordinator opens against the job it accepted, and hands the stage's messages and
//! payloads to the stage's party side.
//!
//! Checks against a coordinator that deviates: a stage runs only if the job's spec lists it,
//! in the spec's order, each at most once to completion (a finished stage is never run
//! again: a second WOE run under other bins would reveal more label counts); step numbers only
//! grow (a message of an earlier step is refused). Payloads from peers that arrive before the
//! coordinator's message opening their stage (the network does not order messages of
//! different senders) wait in a bounded buffer.

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_proto::pb;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::{
    Alignment, PartyCtx, PartyTable, StageKind, StageRole, StageRoleOut, VerticalSpec, stages,
};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{CsRng, PartyAuth, Role, RoleError, RoleOutbox};

/// Payload bytes held for a stage not opened yet.
pub const EARLY_BYTES: usize = 256 << 20;

/// What a party keeps across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    /// Stages finished here.
    finished: BTreeSet<StageKind>,
    /// Highest step seen.
    last_step: Option<u64>,
    /// What finished stages left for later ones ([`PartyCtx::kept`]).
    #[serde(default)]
    kept: BTreeMap<String, String>,
    /// The alignment, once known (stored apart, in binary: see [`Saved::encode`]).
    #[serde(skip)]
    alignment: Option<Alignment>,
}

impl Saved {
    /// `len(json) ‖ json ‖ [rows ‖ keys]`: the small part as JSON, the alignment (20 bytes a
    /// common row) as little-endian row numbers then 16-byte keys.
    fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let a = self.alignment.as_ref();
        let n = a.map_or(0, Alignment::len);
        let mut out = Vec::with_capacity(9 + json.len() + n * 20);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.push(u8::from(a.is_some()));
        if let Some(a) = a {
            out.extend_from_slice(&(n as u64).to_le_bytes());
            for r in &a.rows {
                out.extend_from_slice(&r.to_le_bytes());
            }
            for k in &a.keys {
                out.extend_from_slice(k);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "the job's checkpoint is cut short or damaged".to_string();
        let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?)
            as usize;
        let json = bytes.get(4..4 + len).ok_or_else(bad)?;
        let mut saved: Saved = serde_json::from_slice(json)
            .map_err(|e| format!("the job's checkpoint cannot be read: {e}"))?;
        let rest = &bytes[4 + len..];
        if rest.first() == Some(&1) {
            let n =
                u64::from_le_bytes(rest.get(1..9).ok_or_else(bad)?.try_into().map_err(|_| bad())?)
                    as usize;
            let body = rest.get(9..).ok_or_else(bad)?;
            if body.len() != n.checked_mul(20).ok_or_else(bad)? {
                return Err(bad());
            }
            let (rows, keys) = body.split_at(n * 4);
            saved.alignment = Some(Alignment {
                rows: rows
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                keys: keys
                    .chunks_exact(16)
                    .map(|c| <[u8; 16]>::try_from(c).map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(saved)
    }
}

/// A party's side of a vertical job.
#[derive(Debug)]
pub struct VerticalRole {
    me: PartyId,
    job: JobId,
    spec: JobSpec,
    vertical: VerticalSpec,
    table: PartyTable,
    saved: Saved,
    /// The open stage: its kind, step and party side.
    open: Option<(StageKind, u64, Box<dyn StageRole>)>,
    /// Payloads for a step not opened yet: (from, step, payload).
    early: Vec<(PartyId, u64, pb::vertical_payload::Body)>,
    early_bytes: usize,
}

impl VerticalRole {
    /// The role of `me` in vertical job `spec` over its `table`, restored from `checkpoint`
    /// when there is one.
    ///
    /// # Errors
    /// A message when the job is not vertical, the table does not fit the party's part (the
    /// label holder needs the label) or the checkpoint cannot be read.
    pub fn new(
        job: &JobId,
        spec: &JobSpec,
        me: &PartyId,
        table: PartyTable,
        checkpoint: Option<&[u8]>,
        warm_start: Option<String>,
    ) -> Result<Self, String> {
        let vertical = spec.vertical.clone().ok_or("not a vertical job")?;
        if (vertical.label_holder == *me) != table.label.is_some() {
            return Err(if table.label.is_some() {
                format!(
                    "{me} holds a label but the job's label holder is {}",
                    vertical.label_holder
                )
            } else {
                format!("{me} is the job's label holder but its table has no label")
            });
        }
        let mut saved = match checkpoint {
            Some(b) if !b.is_empty() => Saved::decode(b)?,
            _ => Saved::default(),
        };
        if let Some(w) = warm_start {
            saved.kept.entry(super::model::KEPT_WARM_START.into()).or_insert(w);
        }
        Ok(Self {
            me: me.clone(),
            job: job.clone(),
            spec: spec.clone(),
            vertical,
            table,
            saved,
            open: None,
            early: Vec::new(),
            early_bytes: 0,
        })
    }

    /// The alignment, once known.
    pub fn alignment(&self) -> Option<&Alignment> {
        self.saved.alignment.as_ref()
    }

    /// What finished stages left at the party ([`PartyCtx::kept`]).
    pub fn kept(&self) -> &BTreeMap<String, String> {
        &self.saved.kept
    }

    /// The role of `me` after an alignment stage that produced `alignment` (tests and
    /// benchmarks of later stages while the alignment stage is driven elsewhere).
    ///
    /// # Errors
    /// As [`VerticalRole::new`].
    #[doc(hidden)]
    pub fn with_alignment(
        job: &JobId,
        spec: &JobSpec,
        me: &PartyId,
        table: PartyTable,
        alignment: Alignment,
    ) -> Result<Self, String> {
        let mut role = Self::new(job, spec, me, table, None, None)?;
        role.saved.alignment = Some(alignment);
        role.saved.finished.insert(StageKind::Align);
        Ok(role)
    }

    fn new_stage(&self, kind: StageKind) -> Box<dyn StageRole> {
        match kind {
            StageKind::Align => Box::new(super::psi::PsiRole::new()),
            StageKind::Woe => Box::new(super::woe::WoeRole::new()),
            StageKind::Lr => Box::new(super::lr::LrRole::new()),
            StageKind::SecureBoost => Box::new(super::secureboost::SbRole::new()),
        }
    }

    /// Checks that the coordinator may open stage `kind` as step `step` now.
    fn check_open(&self, kind: StageKind, step: u64) -> Result<(), RoleError> {
        let refuse = |why: String| Err(RoleError(format!("{}: {why}", self.me)));
        if self.saved.last_step.is_some_and(|last| step <= last) {
            return refuse(format!("step {step} is not after the last step it saw"));
        }
        let order = stages(&self.spec);
        let Some(at) = order.iter().position(|k| *k == kind) else {
            return refuse(format!("the job has no {} stage", kind.as_str()));
        };
        if self.saved.finished.contains(&kind) {
            return refuse(format!("the {} stage has already finished here", kind.as_str()));
        }
        if let Some(before) = order[..at].iter().find(|k| !self.saved.finished.contains(*k)) {
            return refuse(format!(
                "the {} stage cannot start before the {} stage finished",
                kind.as_str(),
                before.as_str()
            ));
        }
        Ok(())
    }

    /// Runs `f` on the open stage with its context and outbox, then notes a finished stage.
    fn with_stage(
        &mut self,
        out: &mut RoleOutbox,
        f: impl FnOnce(
            &mut dyn StageRole,
            &mut PartyCtx<'_>,
            &mut StageRoleOut<'_>,
        ) -> Result<(), RoleError>,
    ) -> Result<(), RoleError> {
        let Some((kind, step, stage)) = self.open.as_mut() else {
            return Err(RoleError("no stage is open".into()));
        };
        let mut ctx = PartyCtx {
            me: &self.me,
            job: &self.job,
            spec: &self.spec,
            vertical: &self.vertical,
            table: &self.table,
            alignment: &mut self.saved.alignment,
            kept: &mut self.saved.kept,
        };
        let mut so = StageRoleOut { step: *step, out };
        f(stage.as_mut(), &mut ctx, &mut so)?;
        if stage.finished() {
            self.saved.finished.insert(*kind);
            self.open = None;
            out.checkpoint = true;
        }
        Ok(())
    }

    fn opened(&mut self, kind: StageKind, step: u64, out: &mut RoleOutbox) {
        self.open = Some((kind, step, self.new_stage(kind)));
        self.saved.last_step = Some(step);
        out.checkpoint = true;
    }

    /// Payloads that waited for step `step`, in arrival order.
    fn take_early(&mut self, step: u64) -> Vec<(PartyId, pb::vertical_payload::Body)> {
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.early).into_iter().partition(|(_, s, _)| *s == step);
        // Payloads of earlier steps can no longer be used.
        self.early = later.into_iter().filter(|(_, s, _)| *s > step).collect();
        self.early_bytes = self.early.iter().map(|(_, _, b)| payload_len(b)).sum();
        now.into_iter().map(|(f, _, b)| (f, b)).collect()
    }
}

fn payload_len(b: &pb::vertical_payload::Body) -> usize {
    match b {
        pb::vertical_payload::Body::Psi(m) => m.encoded_len(),
        pb::vertical_payload::Body::Woe(m) => m.encoded_len(),
        pb::vertical_payload::Body::Lr(m) => m.encoded_len(),
        pb::vertical_payload::Body::Secureboost(m) => m.encoded_len(),
    }
}

impl Role for VerticalRole {
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        _auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        let Some(pb::conductor_message::Body::Vertical(step_msg)) = msg.body else {
            return Err(RoleError("not a vertical-job message".into()));
        };
        let step = step_msg.step;
        let body = step_msg.body.ok_or_else(|| RoleError("step without a body".into()))?;
        let kind = StageKind::of_step(&body);
        let is_open = matches!(&self.open, Some((k, s, _)) if *k == kind && *s == step);
        if !is_open {
            if let Err(e) = self.check_open(kind, step) {
                out.send(pb::role_message::Body::Vertical(pb::VerticalReport {
                    step,
                    body: Some(pb::vertical_report::Body::Failed(e.0.clone())),
                }));
                return Err(e);
            }
            self.opened(kind, step, out);
        }
        let res = self.with_stage(out, |stage, ctx, so| stage.receive(ctx, body, rng, so));
        if let Err(e) = res {
            // The step is open but cannot go on here: nothing it produced leaves, only the
            // failure report, which ends the job naming why (a session drops the outputs of a
            // message it refuses, so this is not an error).
            out.messages.clear();
            out.payloads.clear();
            out.streams.clear();
            out.reports.clear();
            out.send(pb::role_message::Body::Vertical(pb::VerticalReport {
                step,
                body: Some(pb::vertical_report::Body::Failed(e.0)),
            }));
            return Ok(());
        }
        if !is_open {
            for (from, p) in self.take_early(step) {
                if self.open.is_none() {
                    break;
                }
                self.with_stage(out, |stage, ctx, so| stage.payload(ctx, &from, p, rng, so))?;
            }
        }
        Ok(())
    }

    fn payload(
        &mut self,
        from: &PartyId,
        payload: pb::Payload,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        let Some(pb::payload::Body::Vertical(v)) = payload.body else {
            return Err(RoleError(format!("a payload from {from} that is not for a vertical job")));
        };
        if !self.spec.parties.contains(from) {
            return Err(RoleError(format!("a payload from {from}, who is not a party")));
        }
        let body = v.body.ok_or_else(|| RoleError(format!("an empty payload from {from}")))?;
        match &self.open {
            Some((k, s, _)) if *s == v.step && *k == StageKind::of_payload(&body) => {
                self.with_stage(out, |stage, ctx, so| stage.payload(ctx, from, body, rng, so))
            }
            _ if self.saved.last_step.is_some_and(|l| v.step <= l) => {
                Err(RoleError(format!("a payload from {from} for step {}, which is over", v.step)))
            }
            _ => {
                let n = payload_len(&body);
                if self.early_bytes + n > EARLY_BYTES {
                    return Err(RoleError(format!(
                        "more than {EARLY_BYTES} bytes of payloads for steps not opened yet"
                    )));
                }
                self.early_bytes += n;
                self.early.push((from.clone(), v.step, body));
                Ok(())
            }
        }
    }

    fn state_version(&self) -> u64 {
        self.saved.finished.len() as u64
    }

    fn next_step(&self) -> u64 {
        self.saved.last_step.map_or(0, |s| s + 1)
    }

    fn checkpoint(&self) -> Vec<u8> {
        self.saved.encode()
    }

    fn model_part(&self) -> Option<String> {
        self.saved.kept.get("model").cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_keeps_the_alignment_in_binary() {
        let saved = Saved {
            finished: [StageKind::Align].into(),
            last_step: Some(3),
            kept: BTreeMap::new(),
            alignment: Some(Alignment {
                rows: vec![7, 0, 42],
                keys: vec![[1; 16], [2; 16], [9; 16]],
            }),
        };
        let bytes = saved.encode();
        assert!(bytes.len() < 200, "{} bytes", bytes.len());
        let back = Saved::decode(&bytes).unwrap();
        assert_eq!(back.alignment, saved.alignment);
        assert_eq!((back.finished, back.last_step), (saved.finished, saved.last_step));
        assert!(Saved::decode(&bytes[..bytes.len() - 1]).is_err());
        let none = Saved::default().encode();
        assert_eq!(Saved::decode(&none).unwrap().alignment, None);
    }
}
