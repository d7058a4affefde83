//! A bank's side of a horizontal job, as a protocol [`Role`]: it keeps the model between
//! steps ([`PartyModel`], fed by the conductor's updates), computes its contribution to each
//! step's secure sum with [`Participant::contribute`], and runs the participant's side of
//! secure aggregation ([`SecAggClient`]).
//!
//! It checks every step against the job it accepted before it shares anything (the
//! participant-side policy that keeps a deviating coordinator from learning more than an
//! honest one; Bonawitz et al., CCS 2017, §6):
//!
//! - the roster is a subset of the job's parties, at least the job's `min_parties` (and 2);
//! - the secure-aggregation settings are the job's: fraction bits, degree (SecAgg+ only with
//!   at least [`Graph::min_degree`] neighbours) and a threshold `t > m/2` of the
//!   neighbourhood size `m` (the condition under which no coordinator can collect both
//!   shares of one party, see [`crate::secagg`]); an explicit job threshold must be met
//!   exactly;
//! - a step whose sum it already helped unmask is never answered again, in any attempt;
//! - a contribution it already helped unmask is only ever unmasked again over the very same
//!   contributors (the difference of two sums over different sets of parties is the missing
//!   parties' contribution): a roster that does not hold them all is refused at the setup, and
//!   a survivor set naming other contributors (a party called dropped in one run of the
//!   contribution and not in the other, under the same roster) is refused before anything is
//!   signed or released. The check is on the vector itself, not on how the task is worded: the
//!   same census after a model update, or a level task behind a tree of zeros, gives the same
//!   vector and is refused;
//! - only the public benchmark vectors are ever sent unmasked.
//!
//! What it remembers for these checks is in its checkpoint, stored before any unmask share
//! leaves the process, so a restarted party keeps refusing. To keep the disk write off the
//! round's critical path, the party stores a *pledge* right after its masked upload leaves
//! (while the coordinator collects the others'): "step `s`, this contribution, these
//! contributors (the roster)". The job worker stores it before it handles the next message,
//! so before any unmask request is answered. When the unmask request names exactly the
//! pledged contributors (nobody dropped: the usual case) nothing more is written; otherwise
//! the new contributors are stored before the shares leave. A restarted party cannot know
//! whether it answered the pledged unmask, so it takes the pledge as released: the
//! contribution is bound to the pledged contributors, and the pledged step is answered again
//! only with the same contribution and the same roster (the sum could only be the same sum;
//! this is how a party restarted during the upload phase rejoins its step).

use std::collections::{BTreeMap, BTreeSet};

use fedcredit_crypto::secagg::Graph;
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::sync::PartyModel;
use super::{Participant, Task};
use crate::ids::PartyId;
use crate::job::JobSpec;
use crate::protocol::{CsRng, PartyAuth, Role, RoleError, RoleOutbox};
use crate::secagg::{ClientMessage, MaskedInput, RoundSetup, SecAggClient, ServerMessage};
use crate::wire::{client_to_wire, server_from_wire};

/// What the party remembers to refuse repeats (kept in its checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Policy {
    /// Steps whose sum this party helped unmask.
    unmasked_steps: BTreeSet<u64>,
    /// Contribution digest → the contributors (the survivor set, sorted) of the sum this
    /// party helped unmask (hex digests, see [`HorizontalRole::contribution_digest`]).
    unmasked_tasks: BTreeMap<String, Contributors>,
    /// The distinct contributor sets [`Contributors::Set`] points into: a job has few, and the
    /// checkpoint, written before every unmask, stays small over hundreds of steps.
    #[serde(default)]
    contributor_sets: Vec<Vec<PartyId>>,
    /// The open attempt's pledge (see the module docs).
    #[serde(default)]
    pledge: Option<Pledge>,
    /// The pledge was read from a checkpoint: its unmask shares may have been released.
    #[serde(skip)]
    pledge_restored: bool,
}

/// A step this party may be about to help unmask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pledge {
    step: u64,
    digest: Option<String>,
    /// The roster, sorted.
    contributors: Vec<PartyId>,
}

/// The contributors of an unmasked contribution in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Contributors {
    /// An index into [`Policy::contributor_sets`].
    Set(u32),
    /// The names themselves (checkpoints written before the sets were shared).
    Names(Vec<PartyId>),
}

impl Policy {
    /// The contributors `digest`'s contribution was unmasked with, if it was.
    fn contributors(&self, digest: Option<&String>) -> Option<&[PartyId]> {
        match self.unmasked_tasks.get(digest?)? {
            Contributors::Set(i) => self.contributor_sets.get(*i as usize).map(Vec::as_slice),
            Contributors::Names(names) => Some(names),
        }
    }

    /// Remembers that `digest`'s contribution was unmasked with `contributors` (sorted).
    fn remember(&mut self, digest: String, contributors: Vec<PartyId>) {
        let i = match self.contributor_sets.iter().position(|c| *c == contributors) {
            Some(i) => i,
            None => {
                self.contributor_sets.push(contributors);
                self.contributor_sets.len() - 1
            }
        };
        let entry = u32::try_from(i).map_or_else(
            |_| Contributors::Names(self.contributor_sets[i].clone()),
            Contributors::Set,
        );
        self.unmasked_tasks.insert(digest, entry);
    }

    /// Takes a pledge read from a checkpoint as released (the party may have answered its
    /// unmask request before it stopped).
    fn restore_pledge(&mut self) {
        if let Some(p) = self.pledge.clone() {
            if let Some(d) = p.digest {
                self.remember(d, p.contributors);
            }
            self.pledge_restored = true;
        }
    }

    /// After a restart, the pledged step is answered again only with the pledged contribution
    /// and roster: its unmask shares may have been released.
    fn check_pledge(
        &self,
        step: u64,
        digest: Option<&String>,
        roster: &[PartyId],
    ) -> Result<(), String> {
        match &self.pledge {
            Some(p)
                if self.pledge_restored
                    && p.step == step
                    && (p.digest.as_ref() != digest || p.contributors != roster) =>
            {
                Err(format!(
                    "step {step} may have been unmasked with [{}] before this party restarted; \
                     it is answered again only with the same contribution and roster",
                    names(&p.contributors)
                ))
            }
            _ => Ok(()),
        }
    }

    /// Replaces the open attempt's pledge. A restored pledge keeps restricting its step while
    /// the step is answered again (with the same contribution and roster, see
    /// [`Policy::check_pledge`]); once another step begins, that step is never answered again.
    fn pledge(&mut self, pledge: Pledge) {
        if self.pledge_restored
            && let Some(old) = &self.pledge
        {
            if old.step == pledge.step {
                return;
            }
            self.unmasked_steps.insert(old.step);
        }
        self.pledge = Some(pledge);
        self.pledge_restored = false;
    }

    /// A checkpoint whose set indices point nowhere is refused rather than read as "never
    /// unmasked".
    fn check(&self) -> Result<(), String> {
        for c in self.unmasked_tasks.values() {
            if let Contributors::Set(i) = c
                && *i as usize >= self.contributor_sets.len()
            {
                return Err(format!(
                    "contributor set {i} of {} in the checkpoint",
                    self.contributor_sets.len()
                ));
            }
        }
        Ok(())
    }

    /// Refuses to sign or unmask a survivor set other than the contributors this contribution
    /// was already unmasked with (the same roster with a party called dropped in one run and
    /// not in the other gives two sums whose difference is that party's contribution).
    fn check_contributors(
        &self,
        digest: Option<&String>,
        survivors: &[PartyId],
    ) -> Result<(), String> {
        let Some(prev) = self.contributors(digest) else {
            return Ok(());
        };
        let mut named = survivors.to_vec();
        named.sort();
        if *prev != named {
            return Err(format!(
                "this contribution was unmasked with [{}]; a sum over [{}] would reveal the difference",
                names(prev),
                names(&named)
            ));
        }
        Ok(())
    }
}

/// The role's checkpoint: the policy. The model is the conductor's to resend (it is what
/// every bank receives anyway), so a restarted party reports version 0 and gets it back.
#[derive(Serialize, Deserialize)]
struct Saved<P = Policy> {
    policy: P,
}

/// The open attempt.
#[derive(Debug)]
struct Current {
    step: u64,
    digest: Option<String>,
    client: Option<SecAggClient>,
    ring_bits: u32,
}

/// A bank in a horizontal job.
#[derive(Debug)]
pub struct HorizontalRole {
    me: PartyId,
    spec: JobSpec,
    participant: Participant,
    model: PartyModel,
    policy: Policy,
    current: Option<Current>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn names(ps: &[PartyId]) -> String {
    ps.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(", ")
}

impl HorizontalRole {
    /// The role of `participant` in `spec`, restored from its checkpoint when there is one.
    ///
    /// # Errors
    /// A message when the checkpoint cannot be read.
    pub fn new(
        spec: &JobSpec,
        participant: Participant,
        checkpoint: Option<&[u8]>,
    ) -> Result<Self, String> {
        let policy = match checkpoint {
            Some(b) if !b.is_empty() => {
                let mut policy = serde_json::from_slice::<Saved>(b)
                    .map_err(|e| format!("horizontal role checkpoint: {e}"))?
                    .policy;
                policy.check().map_err(|e| format!("horizontal role checkpoint: {e}"))?;
                policy.restore_pledge();
                policy
            }
            _ => Policy::default(),
        };
        Ok(Self {
            me: participant.me().clone(),
            spec: spec.clone(),
            participant,
            model: PartyModel::default(),
            policy,
            current: None,
        })
    }

    /// Checks an attempt's setup against the job this party accepted.
    fn check_setup(&self, setup: &RoundSetup) -> Result<(), String> {
        let step = setup.header.round.0;
        if self.policy.unmasked_steps.contains(&step) {
            return Err(format!(
                "step {step} was already unmasked with this party's shares; it is not answered again"
            ));
        }
        let roster = &setup.roster;
        if let Some(p) = roster.iter().find(|p| !self.spec.parties.contains(p)) {
            return Err(format!("the roster names {p}, who is not a party of the job"));
        }
        let need = self.spec.min_parties().max(2);
        if roster.len() < need {
            return Err(format!(
                "a roster of {} parties; the job needs at least {need}",
                roster.len()
            ));
        }
        let c = &setup.config;
        let job = &self.spec.secagg;
        if c.frac_bits != job.frac_bits {
            return Err(format!("{} fraction bits; the job has {}", c.frac_bits, job.frac_bits));
        }
        if c.degree != job.degree {
            return Err(format!("SecAgg+ degree {:?}; the job has {:?}", c.degree, job.degree));
        }
        let n = roster.len();
        let degree = c.degree.map_or(n - 1, |k| k.min(n - 1));
        if degree < n - 1 && degree < Graph::min_degree(n) {
            return Err(format!(
                "SecAgg+ degree {degree} for {n} parties; at least {} neighbours are needed",
                Graph::min_degree(n)
            ));
        }
        let m = degree + 1;
        let t_min = m / 2 + 1;
        match (c.threshold, job.threshold) {
            (t, Some(want)) if t != Some(want) => {
                return Err(format!("threshold {t:?}; the job has {want}"));
            }
            (Some(t), _) if t < t_min => {
                return Err(format!(
                    "threshold {t} for neighbourhoods of {m}; at least {t_min} (a majority) is needed"
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The digest of a contribution this party may have helped unmask before. It covers the
    /// vector itself: a coordinator can word the same contribution as another task (another
    /// step number, a model update the task does not depend on, a tree of zeros), but not
    /// change the vector. An all-zero vector is not tracked: its difference reveals nothing.
    fn contribution_digest(vector: &[f64]) -> Option<String> {
        if vector.iter().all(|v| *v == 0.0) {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"fedcredit horizontal contribution v1");
        h.update((vector.len() as u64).to_le_bytes());
        for v in vector {
            h.update(v.to_bits().to_le_bytes());
        }
        Some(hex(&h.finalize()))
    }

    /// Refuses a contribution already unmasked over contributors the roster does not hold all
    /// of (no run of this roster can end with the same sum).
    fn check_repeat(&self, digest: Option<&String>, roster: &[PartyId]) -> Result<(), String> {
        if let Some(prev) = self.policy.contributors(digest)
            && prev.iter().any(|p| !roster.contains(p))
        {
            return Err(format!(
                "this contribution was unmasked with [{}]; under another roster the difference would reveal a party's contribution",
                names(prev)
            ));
        }
        Ok(())
    }

    fn fail(out: &mut RoleOutbox, step: u64, reason: String) {
        out.send(pb::role_message::Body::Failed(pb::StepFailed { step, reason }));
    }

    fn step(
        &mut self,
        msg: pb::HorizontalStep,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        let setup: RoundSetup = msg
            .setup
            .ok_or_else(|| RoleError("a step without a setup".into()))?
            .try_into()
            .map_err(|e: crate::wire::WireError| RoleError(e.to_string()))?;
        let step = setup.header.round.0;
        self.current = None;
        for u in &msg.updates {
            if let Err(e) = self.model.apply(u) {
                Self::fail(out, step, e.to_string());
                return Ok(());
            }
        }
        let wire_task = msg.task.unwrap_or_default();
        if let Err(reason) = self.check_setup(&setup) {
            Self::fail(out, step, format!("refused: {reason}"));
            return Ok(());
        }
        let task = match self.model.task(&wire_task) {
            Ok(t) => t,
            Err(e) => {
                Self::fail(out, step, e.to_string());
                return Ok(());
            }
        };
        let vector = match self.participant.contribute(&task) {
            Ok(v) => v,
            Err(e) => {
                Self::fail(out, step, e.to_string());
                return Ok(());
            }
        };
        let digest = Self::contribution_digest(&vector);
        let mut roster = setup.roster.clone();
        roster.sort();
        if let Err(reason) = self
            .check_repeat(digest.as_ref(), &setup.roster)
            .and_then(|()| self.policy.check_pledge(step, digest.as_ref(), &roster))
        {
            Self::fail(out, step, format!("refused: {reason}"));
            return Ok(());
        }
        let fixed = match setup.config.fixed_point(setup.roster.len()) {
            Ok(f) => f,
            Err(e) => {
                Self::fail(out, step, e.to_string());
                return Ok(());
            }
        };
        if msg.plaintext {
            // Only the benchmark's seeded vectors are public; everything else is masked.
            if !matches!(task, Task::BenchVector(_)) {
                Self::fail(out, step, "refusing to send an unmasked contribution".into());
                return Ok(());
            }
            let m = ClientMessage::MaskedInput(MaskedInput {
                header: setup.header.clone(),
                masked: fixed.encode_vec(&vector),
                bundles: Default::default(),
            });
            out.send(pb::role_message::Body::Secagg(client_to_wire(&m, fixed.ring_bits)));
            return Ok(());
        }
        match SecAggClient::new(self.me.clone(), &setup, &vector, auth, rng) {
            Ok((client, advert)) => {
                self.policy.pledge(Pledge { step, digest: digest.clone(), contributors: roster });
                out.checkpoint_after_send = true;
                out.send(pb::role_message::Body::Secagg(client_to_wire(&advert, fixed.ring_bits)));
                self.current = Some(Current {
                    step,
                    digest,
                    client: Some(client),
                    ring_bits: fixed.ring_bits,
                });
            }
            Err(e) => Self::fail(out, step, e.to_string()),
        }
        Ok(())
    }

    fn secagg(
        &mut self,
        msg: pb::SecAggServerMessage,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        let msg = server_from_wire(msg).map_err(|e| RoleError(e.to_string()))?;
        let cur = self
            .current
            .as_mut()
            .filter(|c| c.step == msg.header().round.0)
            .ok_or_else(|| RoleError(format!("no open attempt for {}", msg.header())))?;
        let client = cur.client.as_mut().ok_or_else(|| RoleError("attempt already over".into()))?;
        // The contributors the sum would have: what is signed, or what is unmasked (checked for
        // this attempt's messages; others are refused by the client as they are).
        let survivors = match &msg {
            _ if msg.header() != client.header() => None,
            ServerMessage::Consistency(c) => Some(&c.survivors),
            ServerMessage::Unmask(u) => Some(&u.all_survivors),
            ServerMessage::Setup(_) => None,
        };
        if let Some(survivors) = survivors
            && let Err(reason) = self.policy.check_contributors(cur.digest.as_ref(), survivors)
        {
            let step = cur.step;
            cur.client = None;
            Self::fail(out, step, format!("refused: {reason}"));
            return Ok(());
        }
        match client.handle(&msg, auth, rng) {
            Ok(reply) => {
                if let (ClientMessage::Unmask(_), ServerMessage::Unmask(u)) = (&reply, &msg) {
                    let mut contributors = u.all_survivors.clone();
                    contributors.sort();
                    // The stored pledge already says this (nobody dropped), or the new
                    // contributors are stored before the shares leave: a restarted party
                    // keeps refusing.
                    let pledged = self.policy.pledge.as_ref().is_some_and(|p| {
                        p.step == cur.step
                            && p.digest == cur.digest
                            && p.contributors == contributors
                    });
                    self.policy.unmasked_steps.insert(cur.step);
                    if let Some(d) = &cur.digest {
                        self.policy.remember(d.clone(), contributors);
                    }
                    self.policy.pledge = None;
                    self.policy.pledge_restored = false;
                    out.checkpoint = !pledged;
                }
                out.send(pb::role_message::Body::Secagg(client_to_wire(&reply, cur.ring_bits)));
                Ok(())
            }
            Err(e) => {
                let step = cur.step;
                let aborted = client.phase() == crate::secagg::Phase::Aborted;
                if aborted {
                    cur.client = None;
                    Self::fail(out, step, e.to_string());
                    Ok(())
                } else {
                    Err(RoleError(e.to_string()))
                }
            }
        }
    }
}

impl Role for HorizontalRole {
    fn receive(
        &mut self,
        msg: pb::ConductorMessage,
        auth: &PartyAuth<'_>,
        rng: &mut CsRng,
        out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        match msg.body {
            Some(pb::conductor_message::Body::Horizontal(step)) => self.step(step, auth, rng, out),
            Some(pb::conductor_message::Body::Secagg(m)) => self.secagg(m, auth, rng, out),
            _ => Err(RoleError("not a horizontal-job message".into())),
        }
    }

    fn payload(
        &mut self,
        from: &PartyId,
        _payload: pb::Payload,
        _rng: &mut CsRng,
        _out: &mut RoleOutbox,
    ) -> Result<(), RoleError> {
        Err(RoleError(format!("a horizontal job takes no payload (one came from {from})")))
    }

    fn state_version(&self) -> u64 {
        self.model.version
    }

    fn next_step(&self) -> u64 {
        // A restored pledge counts as unmasked: its step number is never reused either.
        let unmasked = self.policy.unmasked_steps.iter().next_back().map(|s| s + 1);
        let pledged =
            self.policy.pledge.as_ref().filter(|_| self.policy.pledge_restored).map(|p| p.step + 1);
        unmasked.max(pledged).unwrap_or(0)
    }

    fn checkpoint(&self) -> Vec<u8> {
        serde_json::to_vec(&Saved { policy: &self.policy }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ns: &[&str]) -> Vec<PartyId> {
        ns.iter().map(|n| PartyId((*n).to_string())).collect()
    }

    #[test]
    fn a_restored_pledge_counts_as_released() {
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let roster = names(&["bank1", "bank2", "bank3"]);
        let mut p = Policy::default();
        p.pledge(Pledge { step: 4, digest: Some(a.clone()), contributors: roster.clone() });
        // In memory the party knows it released nothing yet: the pledge restricts nothing.
        assert!(p.check_pledge(4, Some(&b), &roster[..2]).is_ok());
        assert_eq!(p.contributors(Some(&a)), None);

        let bytes = serde_json::to_vec(&Saved { policy: &p }).expect("serializes");
        let mut back = serde_json::from_slice::<Saved>(&bytes).expect("reads back").policy;
        back.restore_pledge();
        // The contribution is bound to the pledged contributors ...
        assert_eq!(back.contributors(Some(&a)), Some(&roster[..]));
        assert!(back.check_contributors(Some(&a), &roster[..2]).is_err());
        // ... and the step is answered again only with the same contribution and roster.
        assert!(back.check_pledge(4, Some(&a), &roster).is_ok());
        assert!(back.check_pledge(4, Some(&b), &roster).unwrap_err().contains("restarted"));
        assert!(back.check_pledge(4, Some(&a), &roster[..2]).is_err());
        assert!(back.check_pledge(5, Some(&b), &roster[..2]).is_ok());
        // Answering the step again keeps the restriction.
        back.pledge(Pledge { step: 4, digest: Some(a.clone()), contributors: roster.clone() });
        assert!(back.check_pledge(4, Some(&b), &roster).is_err());
        // A pledge for another step ends the restored one's step for good.
        back.pledge(Pledge { step: 5, digest: None, contributors: roster.clone() });
        assert!(back.unmasked_steps.contains(&4));
        assert!(!p.unmasked_steps.contains(&4));
    }

    #[test]
    fn contributor_sets_are_shared_and_checkpoints_stay_readable() {
        let mut p = Policy::default();
        for step in 0..300u64 {
            p.unmasked_steps.insert(step);
            p.remember(format!("{step:064x}"), names(&["bank1", "bank2", "bank3"]));
        }
        p.remember("ff".repeat(32), names(&["bank1", "bank2"]));
        assert_eq!(p.contributor_sets.len(), 2);
        assert_eq!(
            p.contributors(Some(&format!("{:064x}", 7))),
            Some(&names(&["bank1", "bank2", "bank3"])[..])
        );
        assert_eq!(p.contributors(Some(&"ff".repeat(32))), Some(&names(&["bank1", "bank2"])[..]));
        assert_eq!(p.contributors(Some(&"00".repeat(31))), None);

        let bytes = serde_json::to_vec(&Saved { policy: p.clone() }).expect("serializes");
        let back: Saved = serde_json::from_slice(&bytes).expect("reads back");
        assert_eq!(back.policy, p);
        // 300 unmasked contributions: well under 100 bytes each.
        assert!(bytes.len() < 300 * 100, "{} bytes", bytes.len());

        // A checkpoint written before the sets were shared still reads, names and all.
        let old = br#"{"policy":{"unmasked_steps":[0],"unmasked_tasks":{"ab":["bank1","bank2"]}}}"#;
        let old: Saved = serde_json::from_slice(old).expect("old format reads");
        assert_eq!(
            old.policy.contributors(Some(&"ab".to_string())),
            Some(&names(&["bank1", "bank2"])[..])
        );
        old.policy.check().expect("old format is consistent");

        // An index pointing nowhere is refused, not read as "never unmasked".
        let bad =
            br#"{"policy":{"unmasked_steps":[0],"unmasked_tasks":{"ab":3},"contributor_sets":[]}}"#;
        let bad: Saved = serde_json::from_slice(bad).expect("parses");
        assert!(bad.policy.check().is_err());
    }
}
