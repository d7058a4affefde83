//! Serving a vertical model: what a party computes from its part and its latest snapshot, and
//! how the coordinator turns the parties' answers into a score, alerts, a health index and a
//! drift figure. Sans-IO: the participant daemon and the coordinator move the messages.
//!
//! Federated inference for a linear model (vertical LR and scorecard, Hardy et al., "Private
//! federated learning on vertically partitioned data", arXiv 1711.10677, §4; the FATE-Serving
//! guest/host split): the log-odds of default is the sum of the parties' parts, so each party
//! answers with its part `x_p·β_p` (plus the intercept at the label holder) for the requested
//! enterprises, computed at home from its latest snapshot; no feature value, bin edge or
//! coefficient leaves it. Reason codes name the party's own features and the points they cost,
//! never a value.
//!
//! For trees (SecureBoost; Cheng et al., arXiv 1901.08755, §5) each feature holder answers
//! with its leaf sets of the enterprises (per tree, the leaves reachable under its own splits:
//! [`crate::vertical::secureboost::part`]), computed at home from its snapshot; the label
//! holder intersects them with its own, adds up the leaf values and attributes the log-odds to
//! the owners of the splits along each path, which gives every party's points and the reason
//! codes. No threshold, feature value or leaf value leaves its owner; the coordinator relays
//! leaf sets, which tell it which enterprises share a region of a party's splits, not what the
//! splits are. Scores are scaled as the centralized scorecard
//! ([`fedcredit_models::scorecard::ScoreScaling`]; Siddiqi, "Credit Risk Scorecards", ch. 10):
//! `points = offset − factor·log-odds`.
//!
//! Drift is the population stability index (Yurdakul, "Statistical properties of population
//! stability index", 2018) over deciles of the reference scores.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use fedcredit_models::scorecard::ScoreScaling;
use fedcredit_models::{FeatureSpec, Features};
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use crate::vertical::lr::protocol::LocalEncoding;
use crate::vertical::model::{GbdtPart, PartyModel, VerticalModelRef};
use crate::vertical::secureboost::part::LeafSet;

/// Reason codes per party at most.
pub const MAX_REASONS: u32 = 10;
/// Supply-chain tiers a contagion query may reach at most.
pub const MAX_TIERS: u32 = 3;

/// What a party keeps beside its part so that it can score later snapshots: how to read its
/// table (`models/<job>.serving.json` in its state directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingManifest {
    /// The training job (the part's file name).
    pub job: String,
    /// The id column of the party's table.
    pub id_column: String,
    /// Whether the party holds the label (and the intercept or base points).
    pub label_holder: bool,
    /// The columns the part reads, as they were at training time (levels by name).
    pub schema: Vec<FeatureSpec>,
    /// The label holder's name (whose signature vouches for the enterprises asked about).
    #[serde(default)]
    pub label_holder_party: String,
}

/// What the label holder signs for a score query: the model's training job and the
/// enterprises it knows, in the order the other parties are asked about them.
pub fn ids_statement(model_job: &str, ids: &[String]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for id in ids {
        h.update((id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
    }
    crate::auth::statement("fedcredit/score-ids/v1", &[model_job.as_bytes(), &h.finalize()])
}

/// What a feature holder of trees signs for its answer: the model's training job, the
/// enterprises and its leaf sets of them, in order.
pub fn leaf_sets_statement(model_job: &str, ids: &[String], sets: &[Vec<u8>]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (id, set) in ids.iter().zip(sets) {
        h.update((id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
        h.update((set.len() as u64).to_le_bytes());
        h.update(set);
    }
    h.update((ids.len() as u64).to_le_bytes());
    h.update((sets.len() as u64).to_le_bytes());
    crate::auth::statement("fedcredit/score-leaf-sets/v1", &[model_job.as_bytes(), &h.finalize()])
}

/// A feature that cost an enterprise points at one party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The party (filled in by the coordinator).
    #[serde(default)]
    pub party: String,
    /// The party's feature.
    pub feature: String,
    /// Points it cost against its best case (scorecard) or against the average enterprise
    /// (logistic: the feature's part of the log-odds, in points).
    pub points_lost: f64,
}

/// The points of one unit of log-odds under a model's scaling.
fn factor_of(part: &PartyModel) -> f64 {
    match part {
        PartyModel::Scorecard { card } => card.scaling.factor(),
        PartyModel::Logistic { .. } | PartyModel::Gbdt { .. } => ScoreScaling::default().factor(),
    }
}

/// The `top_k` features of row `row` that cost it most points at this party.
///
/// # Errors
/// When the columns do not fit the part.
pub fn reasons(
    part: &PartyModel,
    features: &Features,
    row: usize,
    top_k: usize,
) -> Result<Vec<Reason>, String> {
    if top_k == 0 {
        return Ok(Vec::new());
    }
    let mut out: Vec<Reason> = match part {
        PartyModel::Scorecard { card } => card
            .reason_codes(features, row, top_k)?
            .into_iter()
            .map(|c| Reason {
                party: String::new(),
                feature: c.feature,
                points_lost: c.points_below_max,
            })
            .collect(),
        PartyModel::Logistic { part } => {
            let LocalEncoding::Linear { encoder, clip } = &part.encoding else {
                return Err("a logistic part must have a linear encoding".into());
            };
            let x = encoder.transform(&features.select_rows(&[row])).map_err(|e| e.to_string())?;
            let names = encoder.input_names();
            let mut per = vec![0.0; names.len()];
            for ((src, v), beta) in
                encoder.output_sources().into_iter().zip(x.row(0)).zip(&part.coefficients)
            {
                per[src] += beta * v.clamp(-clip, *clip);
            }
            let factor = factor_of(&PartyModel::Logistic { part: part.clone() });
            names
                .iter()
                .zip(per)
                .filter(|(_, c)| *c > 0.0)
                .map(|(n, c)| Reason {
                    party: String::new(),
                    feature: n.clone(),
                    points_lost: factor * c,
                })
                .collect()
        }
        // A tree part's reasons come from the label holder's path attribution.
        PartyModel::Gbdt { .. } => Vec::new(),
    };
    out.sort_by(|a, b| b.points_lost.total_cmp(&a.points_lost));
    out.truncate(top_k);
    Ok(out)
}

/// What a part answers for each row of a snapshot, computed for every row at once.
#[derive(Debug, Clone)]
enum Answers {
    /// A linear model: the party's part of the log-odds (and that of a row it does not hold).
    Linear { partials: Vec<f64>, missing: f64 },
    /// Trees: the party's leaf sets, encoded ([`encode_leaf_sets`]).
    Trees { sets: Vec<Vec<u8>>, missing: Vec<u8> },
}

/// A row's leaf sets as bytes: per tree, its 64-bit words little-endian, trees in order.
pub fn encode_leaf_sets(sets: &[LeafSet]) -> Vec<u8> {
    sets.iter().flatten().flat_map(|w| w.to_le_bytes()).collect()
}

/// The leaf sets of `bytes` for trees of `words[t]` words each.
///
/// # Errors
/// When the length does not fit the trees.
pub fn decode_leaf_sets(bytes: &[u8], words: &[usize]) -> Result<Vec<LeafSet>, String> {
    let total: usize = words.iter().sum();
    if bytes.len() != total * 8 {
        return Err(format!("{} bytes of leaf sets for {total} words", bytes.len()));
    }
    let mut it = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    Ok(words.iter().map(|&w| it.by_ref().take(w).collect()).collect())
}

/// A party's part of a serving model over one snapshot of its table.
#[derive(Debug, Clone)]
pub struct ServedPart {
    /// How the part reads the table.
    pub manifest: ServingManifest,
    /// The part.
    pub part: PartyModel,
    /// The snapshot's label (its file's modification time).
    pub snapshot: String,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    features: Features,
    answers: Answers,
}

impl ServedPart {
    /// The part over a snapshot: `ids` and `features` as read from the table (any column
    /// order; levels by name).
    ///
    /// # Errors
    /// When a column the part reads is missing or of another kind, or the part does not fit.
    pub fn new(
        manifest: ServingManifest,
        part: PartyModel,
        snapshot: String,
        ids: Vec<String>,
        features: &Features,
    ) -> Result<Self, String> {
        let features = features.conform_to(&manifest.schema).map_err(|e| e.to_string())?;
        let empty = Features::new(
            manifest.schema.clone(),
            ndarray::Array2::from_elem((1, manifest.schema.len()), f64::NAN),
        )
        .map_err(|e| e.to_string())?;
        let answers = match &part {
            PartyModel::Gbdt { part: trees } => {
                let missing = trees.leaf_sets(&empty)?;
                Answers::Trees {
                    sets: trees.leaf_sets(&features)?.iter().map(|s| encode_leaf_sets(s)).collect(),
                    missing: missing.first().map(|s| encode_leaf_sets(s)).unwrap_or_default(),
                }
            }
            _ => Answers::Linear {
                partials: part.partial_log_odds(&features)?,
                missing: part.partial_log_odds(&empty)?[0],
            },
        };
        let index = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        Ok(Self { manifest, part, snapshot, ids, index, features, answers })
    }

    /// Whether row `i` of this snapshot answers as `old` answers for `id`.
    fn same_answer(&self, i: usize, old: &ServedPart, id: &str) -> bool {
        let Some(&j) = old.index.get(id) else { return false };
        match (&self.answers, &old.answers) {
            (Answers::Linear { partials: a, .. }, Answers::Linear { partials: b, .. }) => {
                (a[i] - b[j]).abs() <= 1e-12
            }
            (Answers::Trees { sets: a, .. }, Answers::Trees { sets: b, .. }) => a[i] == b[j],
            _ => false,
        }
    }

    /// The enterprises of the snapshot.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The enterprises whose part differs between `old` and this snapshot (new ones and
    /// gone ones included), in this snapshot's order, then the gone ones.
    pub fn changed_since(&self, old: &ServedPart) -> Vec<String> {
        let mut out: Vec<String> = self
            .ids
            .iter()
            .enumerate()
            .filter(|(i, id)| !self.same_answer(*i, old, id))
            .map(|(_, id)| id.clone())
            .collect();
        out.extend(old.ids.iter().filter(|id| !self.index.contains_key(*id)).cloned());
        out
    }

    /// The answer to a query for this part. `all` is answered by the label holder only. With
    /// an identity (mutual TLS), the label holder signs the enterprises it knows, and a
    /// feature holder answers only for a list the label holder signed: a coordinator cannot
    /// ask it about enterprises outside the bank's portfolio.
    pub fn answer(
        &self,
        q: &pb::ScoreQuery,
        identity: &crate::protocol::Identity,
    ) -> pb::ScoreReply {
        let mut reply = pb::ScoreReply { query_id: q.query_id, ..Default::default() };
        if !self.manifest.label_holder
            && let Some(verifier) = &identity.verifier
        {
            let party = crate::PartyId(self.manifest.label_holder_party.clone());
            let statement = ids_statement(&self.manifest.job, &q.ids);
            if let Err(e) = verifier.verify(
                &party,
                &q.authorizer_certificate,
                &statement,
                &q.authorization,
                "the enterprises of a score query",
            ) {
                reply.error = format!(
                    "refused: the label holder {party} did not vouch for these enterprises ({e})"
                );
                return reply;
            }
        }
        let top = q.reasons.min(MAX_REASONS) as usize;
        let ids: &[String] = if q.all {
            if !self.manifest.label_holder {
                reply.error = "only the label holder lists its enterprises".into();
                return reply;
            }
            reply.ids = self.ids.clone();
            &self.ids
        } else {
            &q.ids
        };
        reply.snapshot = self.snapshot.clone();
        reply.partial_log_odds.reserve(ids.len());
        if let Answers::Trees { sets, .. } = &self.answers
            && self.manifest.label_holder
            && !q.peer_leaf_sets.is_empty()
        {
            if let Err(e) = self.combine(q, ids, sets, top, identity, &mut reply) {
                return pb::ScoreReply {
                    query_id: q.query_id,
                    error: format!("cannot combine the parties' leaf sets: {e}"),
                    ..Default::default()
                };
            }
            return reply;
        }
        for id in ids {
            let row = self.index.get(id).copied();
            reply.known.push(row.is_some());
            match &self.answers {
                Answers::Linear { partials, missing } => {
                    reply.partial_log_odds.push(row.map_or(*missing, |i| partials[i]));
                }
                Answers::Trees { sets, missing } => {
                    // The label holder's log-odds come with the others' leaf sets.
                    reply.partial_log_odds.push(0.0);
                    if !self.manifest.label_holder {
                        reply
                            .leaf_sets
                            .push(row.map_or_else(|| missing.clone(), |i| sets[i].clone()));
                    }
                }
            }
            let rs = match row {
                Some(i) if top > 0 => {
                    reasons(&self.part, &self.features, i, top).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            reply.reasons.push(pb::PartyReasons {
                features: rs.iter().map(|r| r.feature.clone()).collect(),
                points_lost: rs.iter().map(|r| r.points_lost).collect(),
                parties: Vec::new(),
            });
        }
        if !self.manifest.label_holder
            && matches!(self.answers, Answers::Trees { .. })
            && let Some(signer) = &identity.signer
        {
            // Its leaf sets, signed: the label holder combines no others.
            match signer.sign(&leaf_sets_statement(&self.manifest.job, ids, &reply.leaf_sets)) {
                Ok(sig) => {
                    reply.authorization = sig;
                    reply.certificate = signer.certificate().to_vec();
                }
                Err(e) => {
                    return pb::ScoreReply {
                        query_id: q.query_id,
                        error: format!("cannot sign its leaf sets: {e}"),
                        ..Default::default()
                    };
                }
            }
        }
        if self.manifest.label_holder
            && let Some(signer) = &identity.signer
        {
            let known: Vec<String> = ids
                .iter()
                .zip(&reply.known)
                .filter(|(_, k)| **k)
                .map(|(id, _)| id.clone())
                .collect();
            match signer.sign(&ids_statement(&self.manifest.job, &known)) {
                Ok(sig) => {
                    reply.authorization = sig;
                    reply.certificate = signer.certificate().to_vec();
                }
                Err(e) => {
                    return pb::ScoreReply {
                        query_id: q.query_id,
                        error: format!("cannot sign the enterprises it knows: {e}"),
                        ..Default::default()
                    };
                }
            }
        }
        reply
    }
}

impl ServedPart {
    /// The label holder's answer for trees: its own leaf sets of `ids` (all of which it must
    /// know) intersected with every other party's, the log-odds of the leaves reached, each
    /// party's share of them and the reason codes (the splits along the path that raised the
    /// log-odds most, named by party and feature).
    fn combine(
        &self,
        q: &pb::ScoreQuery,
        ids: &[String],
        sets: &[Vec<u8>],
        top: usize,
        identity: &crate::protocol::Identity,
        reply: &mut pb::ScoreReply,
    ) -> Result<(), String> {
        let PartyModel::Gbdt { part } = &self.part else { return Err("not trees".into()) };
        let GbdtPart::Label(label) = part.as_ref() else {
            return Err("only the label holder combines leaf sets".into());
        };
        let me = label.parties.get(label.me as usize).cloned().unwrap_or_default();
        let mut peers: Vec<&pb::PartyLeafSets> = q.peer_leaf_sets.iter().collect();
        peers.sort_by(|a, b| a.party.cmp(&b.party));
        let expected: Vec<&String> = {
            let mut v: Vec<&String> = label.parties.iter().filter(|p| **p != me).collect();
            v.sort();
            v
        };
        if peers.iter().map(|p| &p.party).ne(expected.iter().copied()) {
            return Err(format!("leaf sets must come once from each of {expected:?}"));
        }
        if let Some(p) = peers.iter().find(|p| p.sets.len() != ids.len()) {
            return Err(format!(
                "{} sent {} leaf sets for {} enterprises",
                p.party,
                p.sets.len(),
                ids.len()
            ));
        }
        // With mutual TLS, only leaf sets their owner signed for these very enterprises: a
        // coordinator cannot make up leaf combinations to read the model's leaf values.
        if let Some(verifier) = &identity.verifier {
            for p in &peers {
                let statement = leaf_sets_statement(&self.manifest.job, ids, &p.sets);
                verifier
                    .verify(
                        &crate::PartyId(p.party.clone()),
                        &p.certificate,
                        &statement,
                        &p.authorization,
                        "the leaf sets of a score query",
                    )
                    .map_err(|e| format!("{}'s leaf sets are not signed by it: {e}", p.party))?;
            }
        }
        let words: Vec<usize> =
            label.trees.iter().map(|t| t.shape.n_leaves().div_ceil(64).max(1)).collect();
        let factor = factor_of(&self.part);
        let routing = label.routing();
        for (k, id) in ids.iter().enumerate() {
            let Some(&row) = self.index.get(id) else {
                return Err(format!("enterprise {id} is not in its table"));
            };
            let mut all = vec![decode_leaf_sets(&sets[row], &words)?];
            for p in &peers {
                all.push(
                    decode_leaf_sets(&p.sets[k], &words)
                        .map_err(|e| format!("{}: {e}", p.party))?,
                );
            }
            let refs: Vec<&[LeafSet]> = all.iter().map(Vec::as_slice).collect();
            let leaves = label.leaves(&routing, &refs)?;
            let c = label.contributions(&routing, &leaves);
            reply.known.push(true);
            reply.partial_log_odds.push(label.log_odds(&leaves));
            reply.shares.push(pb::PartyShares {
                parties: c.by_party.keys().cloned().collect(),
                log_odds: c.by_party.values().copied().collect(),
            });
            let mut rs: Vec<(&(String, String), f64)> =
                c.by_feature.iter().filter(|(_, v)| **v > 0.0).map(|(k, v)| (k, *v)).collect();
            rs.sort_by(|a, b| b.1.total_cmp(&a.1));
            rs.truncate(top);
            reply.reasons.push(pb::PartyReasons {
                features: rs.iter().map(|((_, f), _)| f.clone()).collect(),
                points_lost: rs.iter().map(|(_, v)| factor * v).collect(),
                parties: rs.iter().map(|((p, _), _)| p.clone()).collect(),
            });
        }
        Ok(())
    }
}

/// A party's contribution to one score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyPoints {
    /// The party.
    pub party: String,
    /// The snapshot it scored from.
    pub snapshot: String,
    /// Whether it knows the enterprise.
    pub known: bool,
    /// Its contribution in points (the label holder's includes the base points).
    pub points: f64,
}

/// The score of one enterprise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnterpriseScore {
    /// The enterprise.
    pub id: String,
    /// Why it has no score (then the figures are 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Probability of default.
    pub pd: f64,
    /// Score points.
    pub points: f64,
    /// Rating band ([`band`]).
    pub band: String,
    /// Top factors per party, most points lost first.
    pub reasons: Vec<Reason>,
    /// Each party's snapshot and contribution.
    pub parties: Vec<PartyPoints>,
}

impl EnterpriseScore {
    /// An enterprise without a score, and why.
    pub fn unscored(id: String, why: &str) -> Self {
        Self {
            id,
            error: Some(why.to_owned()),
            pd: 0.0,
            points: 0.0,
            band: String::new(),
            reasons: Vec::new(),
            parties: Vec::new(),
        }
    }
}

/// A reply restricted to the answers at `rows` (in that order).
pub fn select_rows(reply: &pb::ScoreReply, rows: &[usize]) -> pb::ScoreReply {
    let pick = |i: usize| rows.iter().filter_map(move |&r| (r < i).then_some(r));
    let n = reply.partial_log_odds.len().min(reply.known.len());
    pb::ScoreReply {
        query_id: reply.query_id,
        error: reply.error.clone(),
        snapshot: reply.snapshot.clone(),
        ids: pick(reply.ids.len()).map(|r| reply.ids[r].clone()).collect(),
        partial_log_odds: pick(n).map(|r| reply.partial_log_odds[r]).collect(),
        known: pick(n).map(|r| reply.known[r]).collect(),
        reasons: pick(reply.reasons.len()).map(|r| reply.reasons[r].clone()).collect(),
        authorization: reply.authorization.clone(),
        certificate: reply.certificate.clone(),
        leaf_sets: pick(reply.leaf_sets.len()).map(|r| reply.leaf_sets[r].clone()).collect(),
        shares: pick(reply.shares.len()).map(|r| reply.shares[r].clone()).collect(),
    }
}

/// Rating bands by PD: `A` below 1 %, `B` below 2 %, `C` below 5 %, `D` below 10 %, `E` below
/// 20 %, `F` from 20 %.
pub fn band(pd: f64) -> &'static str {
    match pd {
        p if p < 0.01 => "A",
        p if p < 0.02 => "B",
        p if p < 0.05 => "C",
        p if p < 0.10 => "D",
        p if p < 0.20 => "E",
        _ => "F",
    }
}

/// The scaling of a registered vertical model.
pub fn scaling_of(model: &VerticalModelRef) -> ScoreScaling {
    model.scaling.unwrap_or_default()
}

/// The scores of `ids` from every party's reply (one per party of `model`, in any order).
///
/// # Errors
/// When a party is missing, reports an error, or answers for a different number of ids.
pub fn assemble(
    model: &VerticalModelRef,
    ids: &[String],
    replies: &BTreeMap<String, pb::ScoreReply>,
) -> Result<Vec<EnterpriseScore>, String> {
    let scaling = scaling_of(model);
    let (factor, offset) = (scaling.factor(), scaling.offset());
    let mut total = vec![0.0; ids.len()];
    for p in &model.parties {
        let r = replies.get(&p.party).ok_or_else(|| format!("{} did not answer", p.party))?;
        if !r.error.is_empty() {
            return Err(format!("{}: {}", p.party, r.error));
        }
        if r.partial_log_odds.len() != ids.len() || r.known.len() != ids.len() {
            return Err(format!(
                "{} answered for {} enterprises, {} were asked",
                p.party,
                r.partial_log_odds.len(),
                ids.len()
            ));
        }
        for (t, v) in total.iter_mut().zip(&r.partial_log_odds) {
            *t += v;
        }
    }
    let lh = &replies[&model.label_holder];
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if !lh.known[i] {
                let why = format!(
                    "enterprise {id} is not known to the label holder {}",
                    model.label_holder
                );
                return EnterpriseScore::unscored(id.clone(), &why);
            }
            let logit = total[i];
            let pd = 1.0 / (1.0 + (-logit).exp());
            let mut reasons = Vec::new();
            let mut parties = Vec::new();
            // Trees: the label holder's answer carries every party's share.
            let shares = lh.shares.get(i);
            for p in &model.parties {
                let r = &replies[&p.party];
                let base = if p.party == model.label_holder { offset } else { 0.0 };
                let share = match shares {
                    Some(s) => s
                        .parties
                        .iter()
                        .zip(&s.log_odds)
                        .find(|(q, _)| **q == p.party)
                        .map_or(0.0, |(_, v)| *v),
                    None => r.partial_log_odds[i],
                };
                parties.push(PartyPoints {
                    party: p.party.clone(),
                    snapshot: r.snapshot.clone(),
                    known: r.known[i],
                    points: base - factor * share,
                });
                if let Some(rs) = r.reasons.get(i) {
                    reasons.extend(rs.features.iter().zip(&rs.points_lost).enumerate().map(
                        |(j, (f, l))| Reason {
                            party: rs.parties.get(j).unwrap_or(&p.party).clone(),
                            feature: f.clone(),
                            points_lost: *l,
                        },
                    ));
                }
            }
            reasons.sort_by(|a, b| b.points_lost.total_cmp(&a.points_lost));
            EnterpriseScore {
                id: id.clone(),
                error: None,
                pd,
                points: offset - factor * logit,
                band: band(pd).into(),
                reasons,
                parties,
            }
        })
        .collect())
}

/// When the coordinator raises alerts (`[alerts]` in `coordinator.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// A score that fell by this fraction or more …
    pub score_drop: f64,
    /// … against the highest of the last this many periods.
    pub drop_periods: usize,
    /// A PD that rises above this.
    pub pd_above: f64,
    /// One party's contribution that moves by this many points or more in one period.
    pub contribution_jump: f64,
    /// The health index falling by this fraction or more over two consecutive periods.
    pub ecosystem_drop: f64,
    /// PD below which an enterprise counts as healthy in the index.
    pub healthy_pd: f64,
    /// Drift (PSI) above which retraining is recommended.
    pub drift_psi: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            score_drop: 0.15,
            drop_periods: 2,
            pd_above: 0.2,
            contribution_jump: 75.0,
            ecosystem_drop: 0.15,
            healthy_pd: 0.05,
            drift_psi: 0.25,
        }
    }
}

impl AlertRules {
    /// Checks the ranges; names the key.
    ///
    /// # Errors
    /// `(key, reason)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let frac = |k: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) && v > 0.0 {
                Ok(())
            } else {
                Err((k, format!("must lie in (0, 1), got {v}")))
            }
        };
        frac("alerts.score_drop", self.score_drop)?;
        frac("alerts.pd_above", self.pd_above)?;
        frac("alerts.ecosystem_drop", self.ecosystem_drop)?;
        frac("alerts.healthy_pd", self.healthy_pd)?;
        if self.drop_periods == 0 {
            return Err(("alerts.drop_periods", "must be at least 1".into()));
        }
        if self.contribution_jump.is_nan() || self.contribution_jump <= 0.0 {
            return Err(("alerts.contribution_jump", "must be positive".into()));
        }
        if self.drift_psi.is_nan() || self.drift_psi <= 0.0 {
            return Err(("alerts.drift_psi", "must be positive".into()));
        }
        Ok(())
    }

    /// The alerts `now` raises after `before` (the enterprise's earlier scores under the same
    /// model, oldest first): `(kind, detail)`.
    pub fn enterprise_alerts(
        &self,
        before: &VecDeque<EnterpriseScore>,
        now: &EnterpriseScore,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let window = before.iter().rev().take(self.drop_periods);
        if let Some(high) = window.map(|s| s.points).max_by(f64::total_cmp)
            && high > 0.0
            && now.points <= (1.0 - self.score_drop) * high
        {
            out.push((
                "score_drop",
                format!(
                    "score fell {:.0}% to {:.0} from {:.0} within {} period(s)",
                    100.0 * (1.0 - now.points / high),
                    now.points,
                    high,
                    self.drop_periods
                ),
            ));
        }
        let last = before.back();
        if now.pd > self.pd_above && last.is_none_or(|l| l.pd <= self.pd_above) {
            out.push(("pd_above", format!("PD {:.3} is above {:.3}", now.pd, self.pd_above)));
        }
        if let Some(l) = last {
            for p in &now.parties {
                if let Some(q) = l.parties.iter().find(|q| q.party == p.party)
                    && (p.points - q.points).abs() >= self.contribution_jump
                {
                    out.push((
                        "contribution_jump",
                        format!(
                            "{}'s contribution moved {:+.0} points ({:.0} → {:.0})",
                            p.party,
                            p.points - q.points,
                            q.points,
                            p.points
                        ),
                    ));
                }
            }
        }
        out
    }

    /// 100 × the share of `pds` below `healthy_pd` (0 for none).
    pub fn health_index(&self, pds: &[f64]) -> f64 {
        if pds.is_empty() {
            return 0.0;
        }
        100.0 * pds.iter().filter(|p| **p < self.healthy_pd).count() as f64 / pds.len() as f64
    }

    /// An ecosystem alert when `now` is `ecosystem_drop` or more below the index two periods
    /// back (or one, with only one before).
    pub fn ecosystem_alert(&self, before: &[f64], now: f64) -> Option<String> {
        let reference = before.iter().rev().take(2).copied().max_by(f64::total_cmp)?;
        (reference > 0.0 && now <= (1.0 - self.ecosystem_drop) * reference).then(|| {
            format!(
                "health index fell {:.0}% to {now:.1} from {reference:.1} over two periods",
                100.0 * (1.0 - now / reference)
            )
        })
    }
}

/// Population stability index of `actual` against `expected` over the deciles of
/// `expected`: `Σ (a − e)·ln(a / e)` with shares floored at 1e-4. 0 for an empty side.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    if expected.is_empty() || actual.is_empty() {
        return 0.0;
    }
    let mut sorted = expected.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> =
        (1..10).map(|k| sorted[(k * sorted.len() / 10).min(sorted.len() - 1)]).collect();
    edges.dedup();
    let shares = |xs: &[f64]| {
        let mut c = vec![0.0; edges.len() + 1];
        for x in xs {
            c[edges.partition_point(|e| e <= x)] += 1.0;
        }
        c.iter().map(|n| (n / xs.len() as f64).max(1e-4)).collect::<Vec<f64>>()
    };
    let (e, a) = (shares(expected), shares(actual));
    e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum()
}

/// Rows supplied as JSON objects (`id` and one field per feature; a missing field or `null` is
/// a missing value, a text category by its level name, an unknown level counts as missing)
/// as features in the order of `specs`.
///
/// # Errors
/// Names the row and the field that is not a number or text where one is expected.
pub fn features_from_json(
    specs: &[FeatureSpec],
    rows: &[serde_json::Value],
) -> Result<(Vec<String>, Features), String> {
    use fedcredit_models::FeatureKind;
    let mut values = ndarray::Array2::from_elem((rows.len(), specs.len()), f64::NAN);
    let mut ids = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let obj = row.as_object().ok_or_else(|| format!("`rows[{i}]` is not a JSON object"))?;
        ids.push(match obj.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) if v.is_number() => v.to_string(),
            _ => format!("row-{i}"),
        });
        if let Some(k) = obj.keys().find(|k| *k != "id" && !specs.iter().any(|s| &s.name == *k)) {
            return Err(format!("`rows[{i}].{k}` is not a feature of the model"));
        }
        for (j, spec) in specs.iter().enumerate() {
            let v = match obj.get(&spec.name) {
                None | Some(serde_json::Value::Null) => continue,
                Some(v) => v,
            };
            values[[i, j]] = match (&spec.kind, v) {
                (FeatureKind::Numeric, serde_json::Value::Number(n)) => {
                    n.as_f64().unwrap_or(f64::NAN)
                }
                (FeatureKind::Categorical { levels }, serde_json::Value::String(t)) => {
                    levels.iter().position(|l| l == t).map_or(f64::NAN, |k| k as f64)
                }
                (FeatureKind::Numeric, _) => {
                    return Err(format!("`rows[{i}].{}` must be a number or null", spec.name));
                }
                (FeatureKind::Categorical { .. }, _) => {
                    return Err(format!(
                        "`rows[{i}].{}` must be text (a level) or null",
                        spec.name
                    ));
                }
            };
        }
    }
    Ok((ids, Features::new(specs.to_vec(), values).map_err(|e| e.to_string())?))
}

/// Supply-chain links a party knows (for example the tax bureau from invoice
/// counterparties): who supplies whom. Never leaves the party.
#[derive(Debug, Clone, Default)]
pub struct SupplyLinks {
    suppliers_of: HashMap<String, Vec<String>>,
}

impl SupplyLinks {
    /// Links from `(supplier, customer)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut suppliers_of: HashMap<String, Vec<String>> = HashMap::new();
        for (s, c) in pairs {
            suppliers_of.entry(c).or_default().push(s);
        }
        Self { suppliers_of }
    }

    /// Number of customers with at least one supplier.
    pub fn len(&self) -> usize {
        self.suppliers_of.len()
    }

    /// Whether there is no link.
    pub fn is_empty(&self) -> bool {
        self.suppliers_of.is_empty()
    }

    /// The suppliers of `fallen` up to `tiers` tiers up (breadth first), each with its nearest
    /// tier, sorted by id; the fallen enterprises themselves are left out.
    pub fn upstream(&self, fallen: &[String], tiers: u32) -> Vec<(String, u32)> {
        let start: HashSet<&str> = fallen.iter().map(String::as_str).collect();
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut frontier: Vec<&str> = start.iter().copied().collect();
        for tier in 1..=tiers.min(MAX_TIERS) {
            let mut next = Vec::new();
            for c in frontier {
                for s in self.suppliers_of.get(c).into_iter().flatten() {
                    if !start.contains(s.as_str()) && !seen.contains_key(s.as_str()) {
                        seen.insert(s, tier);
                        next.push(s.as_str());
                    }
                }
            }
            frontier = next;
        }
        let mut out: Vec<(String, u32)> =
            seen.into_iter().map(|(s, t)| (s.to_owned(), t)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_and_psi() {
        assert_eq!(band(0.005), "A");
        assert_eq!(band(0.3), "F");
        let a: Vec<f64> = (0..1000).map(f64::from).collect();
        assert!(psi(&a, &a) < 1e-9);
        let shifted: Vec<f64> = a.iter().map(|x| x + 300.0).collect();
        assert!(psi(&a, &shifted) > 0.25, "{}", psi(&a, &shifted));
    }

    fn score(points: f64, pd: f64, parties: &[(&str, f64)]) -> EnterpriseScore {
        EnterpriseScore {
            id: "e".into(),
            error: None,
            pd,
            points,
            band: band(pd).into(),
            reasons: vec![],
            parties: parties
                .iter()
                .map(|(p, v)| PartyPoints {
                    party: (*p).into(),
                    snapshot: String::new(),
                    known: true,
                    points: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn alert_rules_fire_on_drops_thresholds_and_jumps_only() {
        let rules = AlertRules::default();
        let before: VecDeque<_> = [
            score(620.0, 0.02, &[("bank", 600.0), ("tax", 20.0)]),
            score(600.0, 0.03, &[("bank", 600.0), ("tax", 0.0)]),
        ]
        .into();
        let calm = score(590.0, 0.04, &[("bank", 600.0), ("tax", -10.0)]);
        assert!(rules.enterprise_alerts(&before, &calm).is_empty());
        let fall = score(510.0, 0.25, &[("bank", 600.0), ("tax", -90.0)]);
        let kinds: Vec<_> =
            rules.enterprise_alerts(&before, &fall).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["score_drop", "pd_above", "contribution_jump"]);
        assert!(rules.ecosystem_alert(&[80.0, 78.0], 66.0).is_some());
        assert!(rules.ecosystem_alert(&[80.0, 78.0], 70.0).is_none());
        assert!(rules.ecosystem_alert(&[], 10.0).is_none());
    }

    #[test]
    fn upstream_walks_three_tiers_at_most() {
        let links = SupplyLinks::new(
            [
                ("s1", "core"),
                ("s2", "s1"),
                ("s3", "s2"),
                ("s4", "s3"),
                ("s1", "other"),
                ("x", "other"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        );
        let up = links.upstream(&["core".into()], 3);
        assert_eq!(up, [("s1".into(), 1), ("s2".into(), 2), ("s3".into(), 3)]);
        assert!(links.upstream(&["nobody".into()], 3).is_empty());
    }
}
