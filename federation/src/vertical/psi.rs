//! The alignment stage: private set intersection (PSI) of the parties' ids, after which every
//! party holds its rows of the common enterprises in one agreed order ([`Alignment`]) and
//! nobody has learnt an id it did not hold.
//!
//! The cryptography is `fedcredit_crypto::psi`; this module is who sends what to whom, in
//! chunks of [`CHUNK`] values, through the coordinator.
//!
//! # Server-aided mode (`psi = "server-aided"`, the default)
//!
//! Kamara, Mohassel, Raykova and Sadeghian, "Scaling Private Set Intersection to
//! Billion-Element Sets" (FC 2014), semi-honest server-aided protocol:
//! 1. the label holder draws a 32-byte secret and sends it, sealed, to every other party;
//!    each derives the job's token key from it (HKDF, bound to the job, step and roster);
//! 2. each party computes the 16-byte tokens `HMAC-SHA256(K, id)` of its ids, sorts them and
//!    streams them to the coordinator ([`pb::PsiValues`] reports);
//! 3. the coordinator intersects the token sets (`intersect_many`; a set is filtered against
//!    the smallest complete one as it arrives, so an unbalanced 100k × 10M join holds about
//!    the small set) and streams the intersection back to every party;
//! 4. each party maps it to its rows (`align_rows`, the agreed order), checking that every
//!    value is one of its own tokens.
//!
//! # ECDH mode (`psi = "ecdh"`)
//!
//! Diffie–Hellman PSI after Huberman, Franklin and Hogg (EC 1999) over ristretto255
//! (RFC 9496, hash to group of RFC 9380), every point sealed end to end between parties:
//! - **two parties**: each sends its ids, in a random order, blinded with its key; the peer
//!   reblinds them with its own and sends them back in the order received (keeping a copy);
//!   each party then holds the fully blinded values of both sets and intersects locally. The
//!   coordinator relays sealed bytes only and receives the final reports (and progress reports
//!   that keep its phase deadline alive while the parties compute).
//! - **three or more**: each owner's set goes around the ring (`ring_route`) under an
//!   ephemeral key, is reblinded by every other party, and comes back to its owner, who swaps
//!   the ephemeral key for its own (`finishing_key`): no party ever holds another party's
//!   fully blinded values (which would reveal pairwise intersections). Owners send their
//!   sorted values (truncated to 16 bytes) to the coordinator, which intersects as above.
//!
//! # Checks
//!
//! Before reporting, every party sends every other party a SHA-256 digest of its intersection
//! (sealed) and compares the digests it receives with its own, so a coordinator that hands the
//! parties different intersections is caught. A party refuses a start message whose mode or
//! party list differs from the job's, a token key from anyone but the label holder, points or
//! values of the wrong length, chunks out of order, an intersection value that is not one of
//! its own, and payloads from non-parties; the vertical role refuses a second run of a
//! finished stage. Errors name the party and what is wrong, never an id.
//!
//! # Result
//!
//! Each party ends with its [`Alignment`]; the coordinator's stage result is the intersection
//! size, and the job's metrics carry it and every party's set size. In a job that only aligns
//! (`kind = "align"`), the party's result (kept by the daemon under `state_dir/models/`) is its
//! own rows of the intersection in the agreed order, as JSON `{"kind": "alignment", "rows"}`.
//!
//! # What each role learns
//!
//! - Server-aided: the coordinator learns every set's size and the size of every partial
//!   intersection it computes (hence the intersection size), and sees pseudorandom tokens
//!   under a key it never holds; privacy relies on it not colluding with a party (a party
//!   holds the key). Parties learn the intersection (their own rows of it) and the other
//!   parties' digests of it.
//! - ECDH, two parties: the coordinator learns nothing but sealed-message sizes (hence the
//!   set sizes) and the intersection size from the reports; each party learns the peer's set
//!   size and the intersection, nothing about the peer's other ids (DDH in ristretto255),
//!   even with a colluding coordinator.
//! - ECDH, three or more: as two parties, except that the coordinator also sees the owners'
//!   fully blinded values, and hence the sizes of every partial intersection, never an id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use fedcredit_crypto::psi::{
    BlindedPoint, Dst, PsiKey, RECOMMENDED_CHUNK, TokenKey, align_rows, blind_ids, intersect_many,
    random_permutation, reblind, ring_route, tokens,
};
use fedcredit_proto::pb;
use rand::Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{
    Alignment, PartyCtx, PsiMode, StageConductor, StageCtx, StageDone, StageOutbox, StageResult,
    StageRole, StageRoleOut,
};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::{CsRng, Rejection, RoleError};

/// A value compared across parties: a token, or a fully blinded point truncated to 16 bytes.
pub type Value = [u8; 16];

const VALUE_BYTES: usize = 16;
const POINT_BYTES: usize = 32;
/// Most values or points in one message (2 MiB of points).
pub const CHUNK: usize = RECOMMENDED_CHUNK;
/// Largest set: rows are numbered with `u32`.
const MAX_SET: u64 = u32::MAX as u64;

/// How a stage run moves the sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Tokens under the label holder's key, intersected by the coordinator.
    ServerAided,
    /// Two-party ECDH: each party intersects locally.
    EcdhPair,
    /// Ring ECDH with finishing keys; the coordinator intersects.
    EcdhRing,
}

impl Flow {
    fn of(mode: PsiMode, parties: usize) -> Self {
        match mode {
            PsiMode::ServerAided => Flow::ServerAided,
            PsiMode::Ecdh if parties == 2 => Flow::EcdhPair,
            PsiMode::Ecdh => Flow::EcdhRing,
        }
    }

    /// Whether parties send their values to the coordinator, which returns the intersection.
    fn collects(self) -> bool {
        self != Flow::EcdhPair
    }
}

/// SHA-256 of an intersection: a domain tag, the job, the step, the count and the sorted
/// values. Every party of a run computes it over the same values, or the run fails.
pub fn intersection_digest(job: &JobId, step: u64, values: &[Value]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedcredit psi intersection v1\0");
    h.update((job.0.len() as u64).to_le_bytes());
    h.update(job.0.as_bytes());
    h.update(step.to_le_bytes());
    h.update((values.len() as u64).to_le_bytes());
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

/// Checks the framing of one chunk of a set of `width`-byte values against what arrived
/// before; returns the number of values in it.
fn check_chunk(
    known_total: Option<u64>,
    received: u64,
    offset: u64,
    total: u64,
    bytes: usize,
    width: usize,
) -> Result<usize, String> {
    if total > MAX_SET {
        return Err(format!("announces {total} values; a set holds at most {MAX_SET}"));
    }
    if let Some(t) = known_total
        && t != total
    {
        return Err(format!("announces {total} values where earlier chunks announced {t}"));
    }
    if offset != received {
        return Err(format!("starts at value {offset}; value {received} was expected"));
    }
    if !bytes.is_multiple_of(width) {
        return Err(format!("holds {bytes} bytes, not a whole number of {width}-byte values"));
    }
    let n = bytes / width;
    if n > CHUNK {
        return Err(format!("holds {n} values; at most {CHUNK} travel in one message"));
    }
    if n == 0 && total != 0 {
        return Err("is empty".into());
    }
    if received + n as u64 > total {
        return Err(format!("goes past the {total} values announced"));
    }
    Ok(n)
}

/// A set of strictly ascending 16-byte values arriving in chunks.
#[derive(Debug, Default, Clone)]
struct AscendingIn {
    total: Option<u64>,
    received: u64,
    last: Option<Value>,
}

impl AscendingIn {
    /// The chunk's values; nothing changes when it is refused.
    fn accept(&mut self, v: &pb::PsiValues) -> Result<Vec<Value>, String> {
        check_chunk(self.total, self.received, v.offset, v.total, v.values.len(), VALUE_BYTES)?;
        let mut last = self.last;
        let mut out = Vec::with_capacity(v.values.len() / VALUE_BYTES);
        for (i, c) in v.values.chunks_exact(VALUE_BYTES).enumerate() {
            let mut val = [0u8; VALUE_BYTES];
            val.copy_from_slice(c);
            if last.is_some_and(|l| val <= l) {
                return Err(format!(
                    "holds value {} out of order (the set must be sorted, without repeats)",
                    v.offset + i as u64
                ));
            }
            last = Some(val);
            out.push(val);
        }
        self.total = Some(v.total);
        self.received += out.len() as u64;
        self.last = last;
        Ok(out)
    }

    fn complete(&self) -> bool {
        self.total == Some(self.received)
    }
}

/// A set of points arriving in chunks.
#[derive(Debug, Default, Clone)]
struct PointsIn {
    total: Option<u64>,
    received: u64,
}

impl PointsIn {
    fn accept(&mut self, p: &pb::PsiPoints) -> Result<Vec<BlindedPoint>, String> {
        let n =
            check_chunk(self.total, self.received, p.offset, p.total, p.values.len(), POINT_BYTES)?;
        self.total = Some(p.total);
        self.received += n as u64;
        Ok(p.values
            .chunks_exact(POINT_BYTES)
            .map(|c| {
                let mut b = [0u8; POINT_BYTES];
                b.copy_from_slice(c);
                b
            })
            .collect())
    }

    fn complete(&self) -> bool {
        self.total == Some(self.received)
    }
}

fn truncate(p: &BlindedPoint) -> Value {
    let mut v = [0u8; VALUE_BYTES];
    v.copy_from_slice(&p[..VALUE_BYTES]);
    v
}

fn concat<const N: usize>(values: &[[u8; N]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for v in values {
        out.extend_from_slice(v);
    }
    out
}

/// `values` in chunks of [`CHUNK`] (one empty chunk for an empty set).
fn value_chunks(values: &[Value]) -> Vec<pb::PsiValues> {
    let total = values.len() as u64;
    if values.is_empty() {
        return vec![pb::PsiValues { offset: 0, total, values: Vec::new() }];
    }
    values
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| pb::PsiValues { offset: (i * CHUNK) as u64, total, values: concat(c) })
        .collect()
}

/// A party's sorted values, streamed to the coordinator one chunk at a time.
struct SortedValues {
    values: Arc<Vec<Value>>,
    next: usize,
    sent: bool,
}

impl Iterator for SortedValues {
    type Item = pb::vertical_report::Body;

    fn next(&mut self) -> Option<Self::Item> {
        let total = self.values.len();
        if self.sent && self.next >= total {
            return None;
        }
        let end = (self.next + CHUNK).min(total);
        let chunk = pb::PsiValues {
            offset: self.next as u64,
            total: total as u64,
            values: concat(&self.values[self.next..end]),
        };
        self.next = end;
        self.sent = true;
        Some(psi_report(pb::psi_report::Body::Values(chunk)))
    }
}

/// Ids packed back to back, one chunk of a set in the order it is sent.
struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    fn ids(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let id = &self.bytes[start..end];
                start = end;
                id
            })
            .collect()
    }
}

/// A party's own ids in the order `perm`, packed in chunks of [`CHUNK`] (a compact copy the
/// lazy stream consumes and frees chunk by chunk).
fn pack(ids: &[String], perm: &[u32]) -> VecDeque<Packed> {
    perm.chunks(CHUNK)
        .map(|c| {
            let mut bytes = Vec::with_capacity(c.len() * 18);
            let mut ends = Vec::with_capacity(c.len());
            for &row in c {
                bytes.extend_from_slice(ids[row as usize].as_bytes());
                ends.push(bytes.len());
            }
            Packed { bytes, ends }
        })
        .collect()
}

/// A party's ids blinded chunk by chunk as the runtime pulls them.
struct BlindStream {
    chunks: VecDeque<Packed>,
    key: PsiKey,
    dst: Dst,
    owner: String,
    offset: u64,
    total: u64,
    sent: bool,
}

impl Iterator for BlindStream {
    type Item = pb::vertical_payload::Body;

    fn next(&mut self) -> Option<Self::Item> {
        let values = match self.chunks.pop_front() {
            Some(chunk) => concat(&blind_ids(&chunk.ids(), &self.dst, &self.key)),
            None if !self.sent => Vec::new(),
            None => return None,
        };
        let n = (values.len() / POINT_BYTES) as u64;
        let points = pb::PsiPoints {
            owner: self.owner.clone(),
            offset: self.offset,
            total: self.total,
            values,
        };
        self.offset += n;
        self.sent = true;
        Some(psi_payload(pb::psi_payload::Body::Points(points)))
    }
}

fn psi_step(body: pb::psi_step::Body) -> pb::vertical_step::Body {
    pb::vertical_step::Body::Psi(pb::PsiStep { body: Some(body) })
}

/// `(value, row)` pairs sorted by value, split into the values and their rows; two rows with
/// the same value (a repeated id the table check missed) are an error naming both rows.
fn sorted_unique(mut pairs: Vec<(Value, u32)>) -> Result<(Vec<Value>, Vec<u32>), String> {
    pairs.par_sort_unstable();
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "rows {} and {} of its table have the same PSI value (repeated ids?)",
            w[0].1 + 1,
            w[1].1 + 1
        ));
    }
    Ok(pairs.into_iter().unzip())
}

fn psi_report(body: pb::psi_report::Body) -> pb::vertical_report::Body {
    pb::vertical_report::Body::Psi(pb::PsiReport { body: Some(body) })
}

fn psi_payload(body: pb::psi_payload::Body) -> pb::vertical_payload::Body {
    pb::vertical_payload::Body::Psi(pb::PsiPayload { body: Some(body) })
}

fn names(parties: &[PartyId]) -> String {
    parties.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------
// The coordinator's side.

/// A party's set as the coordinator collects it.
#[derive(Debug, Default)]
struct Collected {
    incoming: AscendingIn,
    /// Its values that may still be common (those absent from a complete set are dropped).
    values: Vec<Value>,
}

/// The coordinator's side of the alignment stage.
#[derive(Debug)]
pub struct PsiConductor {
    mode: PsiMode,
    flow: Flow,
    parties: Vec<PartyId>,
    /// Sets received so far (server-aided and ring ECDH).
    sets: BTreeMap<PartyId, Collected>,
    /// Size of the intersection, once computed and sent.
    intersection: Option<u64>,
    /// Values each party reports having processed (ECDH progress).
    progress: BTreeMap<PartyId, u64>,
    /// Final reports.
    aligned: BTreeMap<PartyId, pb::PsiAligned>,
    done: bool,
}

impl PsiConductor {
    /// The alignment stage of job `spec`.
    ///
    /// # Errors
    /// A message when the job is not vertical.
    pub fn new(spec: &JobSpec) -> Result<Self, String> {
        let vertical = spec.vertical.as_ref().ok_or("the alignment stage needs a vertical job")?;
        Ok(Self {
            mode: vertical.psi,
            flow: Flow::of(vertical.psi, spec.parties.len()),
            parties: spec.parties.clone(),
            sets: BTreeMap::new(),
            intersection: None,
            progress: BTreeMap::new(),
            aligned: BTreeMap::new(),
            done: false,
        })
    }

    /// The smallest complete set other than `except`'s.
    fn smallest_complete(&self, except: &PartyId) -> Option<&PartyId> {
        self.sets
            .iter()
            .filter(|(p, s)| *p != except && s.incoming.complete())
            .min_by_key(|(_, s)| s.values.len())
            .map(|(p, _)| p)
    }

    fn values(
        &mut self,
        from: &PartyId,
        v: &pb::PsiValues,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        if !self.flow.collects() {
            return Err(Rejection::rejected(format!(
                "{from}: two-party ECDH alignment sends no values to the coordinator"
            )));
        }
        if self.intersection.is_some() {
            return Err(Rejection::too_late(format!(
                "{from}: the intersection has already been sent"
            )));
        }
        let filter = self.smallest_complete(from).cloned();
        let set = self.sets.entry(from.clone()).or_default();
        if set.incoming.complete() {
            return Err(Rejection::rejected(format!("{from} has already sent its whole set")));
        }
        let mut incoming = set.incoming.clone();
        let mut chunk = incoming
            .accept(v)
            .map_err(|e| Rejection::rejected(format!("{from}: a chunk of its set {e}")))?;
        set.incoming = incoming;
        // A value absent from a complete set can never be common: drop it on arrival, so an
        // unbalanced join holds about the small set.
        if let Some(small) = filter.and_then(|p| self.sets.get(&p)) {
            chunk = intersect_many(&[&chunk[..], &small.values]);
        }
        let set = self.sets.entry(from.clone()).or_default();
        set.values.extend(chunk);
        if set.incoming.complete() {
            let mine = std::mem::take(&mut set.values);
            for (p, other) in self.sets.iter_mut() {
                if p != from && !other.values.is_empty() {
                    other.values = intersect_many(&[&other.values[..], &mine]);
                }
            }
            if let Some(set) = self.sets.get_mut(from) {
                set.values = mine;
            }
        }
        let all =
            self.parties.iter().all(|p| self.sets.get(p).is_some_and(|s| s.incoming.complete()));
        if all {
            let sets: Vec<&[Value]> = self
                .parties
                .iter()
                .filter_map(|p| self.sets.get(p))
                .map(|s| &s.values[..])
                .collect();
            let common = intersect_many(&sets);
            for s in self.sets.values_mut() {
                s.values = Vec::new();
            }
            for p in &self.parties {
                for c in value_chunks(&common) {
                    out.send(p, psi_step(pb::psi_step::Body::Intersection(c)));
                }
            }
            self.intersection = Some(common.len() as u64);
        }
        Ok(())
    }

    fn aligned(
        &mut self,
        ctx: &StageCtx<'_>,
        from: &PartyId,
        a: pb::PsiAligned,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        if self.aligned.contains_key(from) {
            return Err(Rejection::rejected(format!("{from} has already reported its alignment")));
        }
        if self.flow.collects() && self.intersection.is_none() {
            return Err(Rejection::rejected(format!(
                "{from} reports an alignment before the intersection was sent"
            )));
        }
        if a.digest.len() != 32 {
            return Err(Rejection::rejected(format!(
                "{from}: the digest has {} bytes, not 32",
                a.digest.len()
            )));
        }
        if let Some(n) = self.intersection
            && a.rows != n
        {
            out.failed = Some(format!(
                "{from} aligned {} rows, but the intersection it was sent has {n}",
                a.rows
            ));
        }
        if let Some(t) = self.sets.get(from).and_then(|s| s.incoming.total)
            && a.set_size != t
        {
            out.failed =
                Some(format!("{from} reports {} rows, but sent a set of {t} values", a.set_size));
        }
        self.aligned.insert(from.clone(), a);
        if out.failed.is_some() || self.aligned.len() < self.parties.len() {
            return Ok(());
        }
        let first = &self.parties[0];
        let reference = &self.aligned[first];
        if let Some((p, b)) = self
            .aligned
            .iter()
            .find(|(_, b)| b.rows != reference.rows || b.digest != reference.digest)
        {
            out.failed = Some(format!(
                "the parties' alignments differ: {first} aligned {} rows, {p} {} (digests {})",
                reference.rows,
                b.rows,
                if b.digest == reference.digest { "equal" } else { "differ" }
            ));
            return Ok(());
        }
        let rows = reference.rows;
        let mut metrics = BTreeMap::new();
        metrics.insert("intersection".to_string(), rows as f64);
        for (p, b) in &self.aligned {
            metrics.insert(format!("rows_{p}"), b.set_size as f64);
        }
        self.done = true;
        out.done = Some(StageDone {
            what: format!(
                "aligned {rows} common rows ({} PSI, {} parties, step {})",
                self.mode.as_str(),
                self.parties.len(),
                ctx.step
            ),
            metrics,
            result: StageResult::Aligned { rows },
        });
        Ok(())
    }
}

impl StageConductor for PsiConductor {
    fn start(&mut self, ctx: &StageCtx<'_>, out: &mut StageOutbox) -> Result<(), String> {
        if ctx.parties.len() < 2 {
            return Err("alignment needs at least two parties".into());
        }
        let start = pb::PsiStart {
            mode: self.mode.as_str().to_string(),
            parties: self.parties.iter().map(|p| p.0.clone()).collect(),
        };
        for p in &self.parties {
            out.send(p, psi_step(pb::psi_step::Body::Start(start.clone())));
        }
        Ok(())
    }

    fn receive(
        &mut self,
        ctx: &StageCtx<'_>,
        from: &PartyId,
        report: pb::vertical_report::Body,
        out: &mut StageOutbox,
    ) -> Result<(), Rejection> {
        if !self.parties.contains(from) {
            return Err(Rejection::rejected(format!("{from} is not a party of the job")));
        }
        if self.done {
            return Err(Rejection::too_late("the alignment is over"));
        }
        let pb::vertical_report::Body::Psi(report) = report else {
            return Err(Rejection::rejected(format!(
                "{from}: a report of another stage during the alignment"
            )));
        };
        match report.body {
            Some(pb::psi_report::Body::Values(v)) => self.values(from, &v, out),
            Some(pb::psi_report::Body::Progress(p)) => {
                if self.aligned.contains_key(from) {
                    return Err(Rejection::too_late(format!("{from} has already aligned")));
                }
                self.progress.insert(from.clone(), p.values);
                Ok(())
            }
            Some(pb::psi_report::Body::Aligned(a)) => self.aligned(ctx, from, a, out),
            None => Err(Rejection::rejected(format!("{from}: an empty PSI report"))),
        }
    }

    fn pending(&self) -> Vec<PartyId> {
        if self.done {
            return Vec::new();
        }
        self.parties.iter().filter(|p| !self.aligned.contains_key(*p)).cloned().collect()
    }

    fn status(&self) -> String {
        let waiting = names(&self.pending());
        let what = match (self.flow.collects(), self.intersection) {
            (true, None) => {
                let got: u64 = self.sets.values().map(|s| s.incoming.received).sum();
                format!("collecting values ({got} so far)")
            }
            (true, Some(n)) => format!("intersection of {n} sent"),
            (false, _) => {
                let done: u64 = self.progress.values().sum();
                format!("parties exchanging points ({done} processed)")
            }
        };
        format!(
            "aligning ({} PSI, {} parties): {what}; waiting for {waiting}",
            self.mode.as_str(),
            self.parties.len()
        )
    }
}

// ---------------------------------------------------------------------------------------
// A party's side.

/// What a party keeps of an `align` job: its rows of the common enterprises (0-based data
/// rows of its table) in the agreed order.
#[derive(serde::Serialize)]
struct AlignmentPart<'a> {
    kind: &'static str,
    rows: &'a [u32],
}

/// A party's intersection, before the digests of the others are in.
struct Intersected {
    alignment: Alignment,
    digest: [u8; 32],
}

/// One run of the stage at a party.
struct Run {
    flow: Flow,
    parties: Vec<PartyId>,
    /// This party's position in `parties`.
    me: usize,
    /// Rows of its table.
    n: usize,
    /// ECDH: its key.
    key: Option<PsiKey>,
    /// Ring ECDH: the ephemeral key its own set travels under.
    ephemeral: Option<PsiKey>,
    /// ECDH: its row at each position of the set it sent.
    perm: Vec<u32>,
    /// ECDH: its own fully blinded values (truncated), in the order it sent them.
    own_f: Vec<Value>,
    /// ECDH: its own set coming back.
    own_in: PointsIn,
    /// Two-party ECDH: the peer's fully blinded values (truncated), in the peer's order.
    peer_f: Vec<Value>,
    /// ECDH: the sets of others passing through this party, by owner.
    hops: BTreeMap<usize, PointsIn>,
    /// Server-aided: the token key has arrived (or was drawn here).
    keyed: bool,
    /// Its values, sorted (sent to the coordinator), and the row of each.
    sorted: Option<Arc<Vec<Value>>>,
    sorted_rows: Vec<u32>,
    /// The intersection from the coordinator.
    inter_in: AscendingIn,
    intersection: Vec<Value>,
    /// Its intersection, once known.
    result: Option<Intersected>,
    /// The others' digests: (rows, digest).
    peer_digests: BTreeMap<usize, (u64, Vec<u8>)>,
    /// Values blinded, reblinded or received (progress reports).
    processed: u64,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("flow", &self.flow)
            .field("parties", &self.parties)
            .field("me", &self.me)
            .field("n", &self.n)
            .field("own_returned", &self.own_f.len())
            .field("peer_values", &self.peer_f.len())
            .field("intersection", &self.intersection.len())
            .field("aligned", &self.result.as_ref().map(|r| r.alignment.len()))
            .field("peer_digests", &self.peer_digests.len())
            .finish_non_exhaustive()
    }
}

impl Run {
    fn others(&self) -> Vec<PartyId> {
        self.parties
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.me)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn index(&self, p: &str) -> Option<usize> {
        self.parties.iter().position(|q| q.0 == p)
    }

    fn progress(&mut self, n: usize, out: &mut StageRoleOut<'_>) {
        self.processed += n as u64;
        out.report(psi_report(pb::psi_report::Body::Progress(pb::PsiProgress {
            values: self.processed,
        })));
    }

    /// Sorts `values` (position `i` is row `row(i)`), keeps them and their rows, and streams
    /// them to the coordinator.
    fn send_values(
        &mut self,
        values: Vec<Value>,
        row: impl Fn(usize) -> u32 + Sync,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let (sorted, rows) =
            sorted_unique(values.into_par_iter().enumerate().map(|(i, v)| (v, row(i))).collect())?;
        let sorted = Arc::new(sorted);
        self.sorted = Some(sorted.clone());
        self.sorted_rows = rows;
        out.report_stream(SortedValues { values: sorted, next: 0, sent: false });
        Ok(())
    }

    /// Server-aided: tokens of every id under `key`, sent sorted.
    fn tokenize(
        &mut self,
        ids: &[String],
        key: &TokenKey,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        self.keyed = true;
        let mut toks = Vec::with_capacity(ids.len());
        for c in ids.chunks(CHUNK) {
            toks.extend(tokens(c, key));
        }
        self.send_values(toks, |i| i as u32, out)
    }

    /// Its intersection is known: send its digest to every other party.
    fn finish(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        keys: Vec<Value>,
        rows: Vec<u32>,
        out: &mut StageRoleOut<'_>,
    ) -> Result<bool, String> {
        let digest = intersection_digest(ctx.job, out.step, &keys);
        let n = keys.len() as u64;
        self.result = Some(Intersected { alignment: Alignment { rows, keys }, digest });
        out.payload(
            &self.others(),
            psi_payload(pb::psi_payload::Body::Digest(pb::PsiDigest {
                rows: n,
                digest: digest.to_vec(),
            })),
        );
        self.check_digests(ctx, out)
    }

    /// Compares the others' digests with its own; reports once all match. Returns whether it
    /// reported.
    fn check_digests(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        out: &mut StageRoleOut<'_>,
    ) -> Result<bool, String> {
        let Some(r) = &self.result else { return Ok(false) };
        for (p, (rows, d)) in &self.peer_digests {
            if d[..] != r.digest[..] {
                return Err(format!(
                    "its intersection ({} rows) differs from {}'s ({rows} rows): the parties were \
                     not handed the same intersection",
                    r.alignment.len(),
                    self.parties[*p]
                ));
            }
        }
        if self.peer_digests.len() + 1 < self.parties.len() {
            return Ok(false);
        }
        let Some(r) = self.result.take() else { return Ok(false) };
        let rows = r.alignment.len() as u64;
        if super::stages(ctx.spec) == [super::StageKind::Align] {
            // An `align` job's result at the party is its alignment: kept beside the other
            // parties' model parts (`state_dir/models/`), its own row numbers only.
            let kept = AlignmentPart { kind: "alignment", rows: &r.alignment.rows };
            let json = serde_json::to_string(&kept)
                .map_err(|e| format!("cannot write its alignment: {e}"))?;
            ctx.kept.insert("model".into(), json);
        }
        *ctx.alignment = Some(r.alignment);
        out.report(psi_report(pb::psi_report::Body::Aligned(pb::PsiAligned {
            rows,
            digest: r.digest.to_vec(),
            set_size: self.n as u64,
        })));
        Ok(true)
    }

    /// Two-party ECDH: intersects once both fully blinded sets are complete.
    fn finish_pair(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        out: &mut StageRoleOut<'_>,
    ) -> Result<bool, String> {
        let peer = 1 - self.me;
        let peer_done = self.hops.get(&peer).is_some_and(PointsIn::complete);
        if !(self.own_in.complete() && peer_done) || self.result.is_some() {
            return Ok(false);
        }
        let own = std::mem::take(&mut self.own_f);
        let perm = std::mem::take(&mut self.perm);
        let (sorted, sorted_rows) =
            sorted_unique(own.into_par_iter().zip(perm.into_par_iter()).collect())?;
        let peer_f = std::mem::take(&mut self.peer_f);
        let at = align_rows(&sorted, &[&peer_f]);
        let keys = at.iter().map(|&i| sorted[i]).collect();
        let rows = at.iter().map(|&i| sorted_rows[i]).collect();
        self.finish(ctx, keys, rows, out)
    }

    /// Collecting flows: a chunk of the intersection from the coordinator.
    fn intersection(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        v: &pb::PsiValues,
        out: &mut StageRoleOut<'_>,
    ) -> Result<bool, String> {
        if !self.flow.collects() {
            return Err(
                "the coordinator sent an intersection, which two-party ECDH has none of".into()
            );
        }
        if self.inter_in.complete() || self.result.is_some() {
            return Err("the coordinator sent more of an intersection that was complete".into());
        }
        let Some(sorted) = self.sorted.clone() else {
            return Err(
                "the coordinator sent an intersection before this party sent its values".into()
            );
        };
        if v.total > sorted.len() as u64 {
            return Err(format!(
                "the coordinator's intersection has {} values, more than this party's {}",
                v.total,
                sorted.len()
            ));
        }
        let chunk =
            self.inter_in.accept(v).map_err(|e| format!("a chunk of the intersection {e}"))?;
        self.intersection.extend(chunk);
        if !self.inter_in.complete() {
            return Ok(false);
        }
        let common = std::mem::take(&mut self.intersection);
        let at = align_rows(&sorted[..], &[&common]);
        if at.len() != common.len() {
            let bad = common.iter().position(|v| sorted.binary_search(v).is_err()).unwrap_or(0);
            return Err(format!(
                "value {bad} of the intersection the coordinator sent is not one of this party's"
            ));
        }
        let rows = at.iter().map(|&i| self.sorted_rows[i]).collect();
        self.sorted = None;
        self.sorted_rows = Vec::new();
        self.finish(ctx, common, rows, out)
    }

    /// ECDH: a chunk of blinded points from `from`.
    fn points(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: usize,
        p: &pb::PsiPoints,
        out: &mut StageRoleOut<'_>,
    ) -> Result<bool, String> {
        let (Some(key), true) = (self.key.clone(), self.flow != Flow::ServerAided) else {
            return Err(format!(
                "{} sent blinded points, which server-aided alignment has none of",
                self.parties[from]
            ));
        };
        let owner = self.index(&p.owner).ok_or_else(|| {
            format!("{} sent points of `{}`, who is not a party", self.parties[from], p.owner)
        })?;
        let route = ring_route(self.parties.len(), owner);
        let from_name = self.parties[from].clone();
        if owner == self.me {
            // Its own set, back from the last hop.
            let last = *route.last().ok_or("no route")?;
            if from != last {
                return Err(format!(
                    "its own set came back from {from_name}, not from {}",
                    self.parties[last]
                ));
            }
            if p.total != self.n as u64 {
                return Err(format!(
                    "{from_name} returned a set of {} values; it sent {}",
                    p.total, self.n
                ));
            }
            let points = self
                .own_in
                .accept(p)
                .map_err(|e| format!("a chunk of its own set from {from_name} {e}"))?;
            let full = match (&self.ephemeral, self.flow) {
                (Some(eph), Flow::EcdhRing) => {
                    reblind(&points, &key.finishing_key(eph)).map_err(|e| {
                        format!("its own set from {from_name}: {}", e.offset(p.offset as usize))
                    })?
                }
                _ => points,
            };
            self.own_f.extend(full.iter().map(truncate));
            self.progress(full.len(), out);
            if self.own_in.complete() {
                match self.flow {
                    Flow::EcdhPair => return self.finish_pair(ctx, out),
                    _ => {
                        let own = std::mem::take(&mut self.own_f);
                        let perm = std::mem::take(&mut self.perm);
                        self.send_values(own, |i| perm[i], out)?;
                    }
                }
            }
            return Ok(false);
        }
        // Another's set passing through: reblind and pass on.
        let hop = route.iter().position(|&i| i == self.me).ok_or("not on the route")?;
        let expected = if hop == 0 { owner } else { route[hop - 1] };
        if from != expected {
            return Err(format!(
                "{}'s set came from {from_name}, not from {}",
                p.owner, self.parties[expected]
            ));
        }
        let incoming = self.hops.entry(owner).or_default();
        let points = incoming
            .accept(p)
            .map_err(|e| format!("a chunk of {}'s set from {from_name} {e}", p.owner))?;
        let full = reblind(&points, &key).map_err(|e| {
            format!("{}'s set from {from_name}: {}", p.owner, e.offset(p.offset as usize))
        })?;
        let next = if hop + 1 == route.len() { owner } else { route[hop + 1] };
        if self.flow == Flow::EcdhPair {
            self.peer_f.extend(full.iter().map(truncate));
        }
        let n = full.len();
        out.payload(
            &[self.parties[next].clone()],
            psi_payload(pb::psi_payload::Body::Points(pb::PsiPoints {
                owner: p.owner.clone(),
                offset: p.offset,
                total: p.total,
                values: concat(&full),
            })),
        );
        self.progress(n, out);
        if self.flow == Flow::EcdhPair {
            return self.finish_pair(ctx, out);
        }
        Ok(false)
    }
}

/// A party's side of the alignment stage.
#[derive(Debug, Default)]
pub struct PsiRole {
    run: Option<Box<Run>>,
    /// Why the stage failed here (every later message is refused with it).
    failed: Option<String>,
    done: bool,
}

impl PsiRole {
    /// A party's side, before the stage opens.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        s: &pb::PsiStart,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        if self.run.is_some() {
            return Err("the coordinator started the alignment twice in one step".into());
        }
        let mode = ctx.vertical.psi;
        if s.mode != mode.as_str() {
            return Err(format!(
                "the coordinator asks for `{}` alignment, but the job says `{}`",
                s.mode,
                mode.as_str()
            ));
        }
        let job_parties: Vec<&str> = ctx.spec.parties.iter().map(|p| p.0.as_str()).collect();
        if s.parties.iter().map(String::as_str).ne(job_parties.iter().copied()) {
            return Err(format!(
                "the coordinator's parties [{}] differ from the job's [{}]",
                s.parties.join(", "),
                job_parties.join(", ")
            ));
        }
        let parties = ctx.spec.parties.clone();
        let me = parties.iter().position(|p| p == ctx.me).ok_or("it is not a party of the job")?;
        let n = ctx.table.n_rows();
        if n as u64 > MAX_SET {
            return Err(format!("its table has {n} rows; alignment takes at most {MAX_SET}"));
        }
        let flow = Flow::of(mode, parties.len());
        let mut run = Run {
            flow,
            parties,
            me,
            n,
            key: None,
            ephemeral: None,
            perm: Vec::new(),
            own_f: Vec::new(),
            own_in: PointsIn::default(),
            peer_f: Vec::new(),
            hops: BTreeMap::new(),
            keyed: false,
            sorted: None,
            sorted_rows: Vec::new(),
            inter_in: AscendingIn::default(),
            intersection: Vec::new(),
            result: None,
            peer_digests: BTreeMap::new(),
            processed: 0,
        };
        match flow {
            Flow::ServerAided => {
                if *ctx.me == ctx.vertical.label_holder {
                    let mut secret = [0u8; 32];
                    rng.fill_bytes(&mut secret);
                    out.payload(
                        &run.others(),
                        psi_payload(pb::psi_payload::Body::TokenKey(pb::PsiTokenKey {
                            secret: secret.to_vec(),
                        })),
                    );
                    let key = TokenKey::derive(&secret, &token_context(ctx, out.step));
                    secret.zeroize();
                    run.tokenize(&ctx.table.ids, &key, out)?;
                }
            }
            Flow::EcdhPair | Flow::EcdhRing => {
                let key = PsiKey::random(rng);
                let travel = if flow == Flow::EcdhRing {
                    let eph = PsiKey::random(rng);
                    run.ephemeral = Some(eph.clone());
                    eph
                } else {
                    key.clone()
                };
                run.key = Some(key);
                run.perm = random_permutation(n, rng).into_iter().map(|r| r as u32).collect();
                let first = ring_route(run.parties.len(), me)[0];
                out.stream(
                    &[run.parties[first].clone()],
                    BlindStream {
                        chunks: pack(&ctx.table.ids, &run.perm),
                        key: travel,
                        dst: Dst::for_job(&ctx.job.0),
                        owner: ctx.me.0.clone(),
                        offset: 0,
                        total: n as u64,
                        sent: false,
                    },
                );
            }
        }
        self.run = Some(Box::new(run));
        Ok(())
    }

    fn step(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let pb::vertical_step::Body::Psi(step) = msg else {
            return Err(
                "the coordinator sent a message of another stage during the alignment".into()
            );
        };
        match step.body {
            Some(pb::psi_step::Body::Start(s)) => self.start(ctx, &s, rng, out),
            Some(pb::psi_step::Body::Intersection(v)) => {
                let run =
                    self.run.as_mut().ok_or("an intersection before the alignment started")?;
                self.done = run.intersection(ctx, &v, out)?;
                Ok(())
            }
            None => Err("an empty PSI message from the coordinator".into()),
        }
    }

    fn on_payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        msg: pb::vertical_payload::Body,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let pb::vertical_payload::Body::Psi(p) = msg else {
            return Err(format!("{from} sent a payload of another stage during the alignment"));
        };
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| format!("{from} sent a payload before the alignment started"))?;
        let sender = run
            .index(&from.0)
            .filter(|&i| i != run.me)
            .ok_or_else(|| format!("a payload from {from}, who is not another party of the job"))?;
        match p.body {
            Some(pb::psi_payload::Body::TokenKey(mut k)) => {
                let res = token_key(run, ctx, from, &k, out);
                k.secret.zeroize();
                res
            }
            Some(pb::psi_payload::Body::Points(points)) => {
                self.done = run.points(ctx, sender, &points, out)?;
                Ok(())
            }
            Some(pb::psi_payload::Body::Digest(d)) => {
                if run.peer_digests.contains_key(&sender) {
                    return Err(format!("{from} sent its digest twice"));
                }
                if d.digest.len() != 32 {
                    return Err(format!(
                        "{from} sent a digest of {} bytes, not 32",
                        d.digest.len()
                    ));
                }
                run.peer_digests.insert(sender, (d.rows, d.digest));
                self.done = run.check_digests(ctx, out)?;
                Ok(())
            }
            None => Err(format!("{from} sent an empty PSI payload")),
        }
    }
}

/// What the token key is bound to: the job, the step and the roster.
fn token_context(ctx: &PartyCtx<'_>, step: u64) -> Vec<u8> {
    format!("fedcredit-psi-tokens|{}|{step}|{}", ctx.job, names(&ctx.spec.parties)).into_bytes()
}

/// Server-aided: the token key from the label holder.
fn token_key(
    run: &mut Run,
    ctx: &mut PartyCtx<'_>,
    from: &PartyId,
    k: &pb::PsiTokenKey,
    out: &mut StageRoleOut<'_>,
) -> Result<(), String> {
    if run.flow != Flow::ServerAided {
        return Err(format!("{from} sent a token key, which ECDH alignment has none of"));
    }
    if *from != ctx.vertical.label_holder {
        return Err(format!(
            "{from} sent a token key, but only the label holder {} draws it",
            ctx.vertical.label_holder
        ));
    }
    if run.keyed {
        return Err(format!("{from} sent a second token key"));
    }
    let mut secret: [u8; 32] = k
        .secret
        .as_slice()
        .try_into()
        .map_err(|_| format!("{from} sent a token key of {} bytes, not 32", k.secret.len()))?;
    let key = TokenKey::derive(&secret, &token_context(ctx, out.step));
    secret.zeroize();
    run.tokenize(&ctx.table.ids, &key, out)
}

impl StageRole for PsiRole {
    fn receive(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        msg: pb::vertical_step::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        if let Some(f) = &self.failed {
            return Err(RoleError(f.clone()));
        }
        self.step(ctx, msg, rng, out).map_err(|e| {
            let e = format!("{}: {e}", ctx.me);
            self.failed = Some(e.clone());
            RoleError(e)
        })
    }

    fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        msg: pb::vertical_payload::Body,
        _rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        if let Some(f) = &self.failed {
            return Err(RoleError(f.clone()));
        }
        if let Err(e) = self.on_payload(ctx, from, msg, out) {
            // A peer's payload opens no step, so the vertical role would only log a refusal:
            // report the failure so the job ends now, naming why.
            let e = format!("{}: {e}", ctx.me);
            self.failed = Some(e.clone());
            out.report(pb::vertical_report::Body::Failed(e));
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }
}
