//! A feature holder's side of SecureBoost (see [`super`]; Cheng et al., arXiv 1901.08755,
//! Algorithms 1 and 2): bins its own columns, sums the label holder's encrypted gradients
//! per bin over the nodes it is asked for (packed and compressed as in SecureBoost+, arXiv
//! 2110.10927 §4), keeps the rules of the splits it wins under split ids, and keeps every
//! tree's shape.
//!
//! It never sees a gradient, a hessian or a label: only ciphertexts under the label holder's
//! key. What it checks (a deviating label holder or coordinator gets a refusal naming why):
//! every payload comes from the job's label holder; the key has the job's scheme and at least
//! its modulus size; trees come in order and never more than the job's; a node asked for is
//! open and shallower than the job's depth, holds at least `min_data_in_leaf` active rows and
//! every partition or won split leaves at least `min_data_in_leaf` active rows on each
//! side; a committed shape is a tree whose splits of this party are the ones it made.

use std::collections::BTreeMap;

use fedcredit_crypto::he::{Ciphertext, Packer, PublicKey, Scheme};
use fedcredit_models::gbdt::{BinMapper, BinSplit, BinnedMatrix, GbdtParams};
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::part::{Bins, HolderPart, HolderSplit, ShapeNode, TreeShape};
use super::{CTS_PER_MESSAGE, KEPT_STATE, NodeRows, bit, pack_bits, report, send};
use crate::ids::PartyId;
use crate::protocol::{CsRng, RoleError};
use crate::vertical::model::KEPT_MODEL;
use crate::vertical::{HeScheme, PartyCtx, StageRoleOut};

/// What a feature holder keeps between trees (checkpointed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HolderKept {
    /// Committed trees' shapes.
    pub trees: Vec<TreeShape>,
    /// Its splits in those trees, by id.
    pub splits: BTreeMap<u32, HolderSplit>,
}

/// The tree being grown.
#[derive(Debug)]
struct Run {
    tree: u32,
    /// Active rank of each aligned row (`u32::MAX`: not active in this tree).
    rank: Vec<u32>,
    n_active: usize,
    /// Its features in this tree.
    feats: Vec<usize>,
    /// Their bins over the active rows, by rank.
    cols: Vec<Vec<u8>>,
    cts: Vec<Ciphertext>,
    nodes: NodeRows,
    /// Splits made in this tree, not committed yet.
    made: BTreeMap<u32, HolderSplit>,
}

/// The feature holder's state in the stage.
#[derive(Debug)]
pub struct HolderSide {
    me: u32,
    label: PartyId,
    params: GbdtParams,
    n: usize,
    mapper: BinMapper,
    binned: BinnedMatrix,
    key: Option<(PublicKey, Packer)>,
    kept: HolderKept,
    run: Option<Run>,
    done: bool,
}

impl HolderSide {
    /// Opens the stage at a feature holder: bins its columns over the aligned rows (edges from
    /// the training rows) and sends the label holder their shape.
    ///
    /// # Errors
    /// [`RoleError`] when there is no alignment, a column cannot be binned or the kept state
    /// cannot be read.
    pub fn start(
        ctx: &mut PartyCtx<'_>,
        params: GbdtParams,
        out: &mut StageRoleOut<'_>,
    ) -> Result<Self, RoleError> {
        let me = ctx.me.clone();
        let err = |e: String| RoleError(format!("{me}: {e}"));
        let (mapper, binned, usable) = bin_own(ctx, &params).map_err(err)?;
        let kept: HolderKept = match ctx.kept.get(KEPT_STATE) {
            Some(j) => serde_json::from_str(j).map_err(|e| err(format!("kept trees: {e}")))?,
            None => HolderKept::default(),
        };
        let me_index = ctx.spec.parties.iter().position(|p| p == ctx.me).unwrap_or(0) as u32;
        let label = ctx.vertical.label_holder.clone();
        let kinds = binned.kinds().to_vec();
        send(
            out,
            std::slice::from_ref(&label),
            pb::sb_payload::Body::Layout(pb::SbLayout {
                bins: binned.bins_per_feature().iter().map(|&b| b as u32).collect(),
                categorical: kinds
                    .iter()
                    .map(|k| *k == fedcredit_models::gbdt::BinKind::Categorical)
                    .collect(),
                usable,
                trees_done: kept.trees.len() as u32,
                rows: binned.n_rows() as u64,
                names: mapper.specs().iter().map(|s| s.name.clone()).collect(),
            }),
        );
        tracing::info!(
            features = binned.n_features(),
            rows = binned.n_rows(),
            trees_kept = kept.trees.len(),
            "secureboost: own columns binned, layout sent"
        );
        Ok(Self {
            me: me_index,
            label,
            params,
            n: binned.n_rows(),
            mapper,
            binned,
            key: None,
            kept,
            run: None,
            done: false,
        })
    }

    /// Whether its part is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A payload from the label holder.
    ///
    /// # Errors
    /// [`RoleError`] for anything out of order, from another party, malformed or outside the
    /// job's bounds.
    pub fn payload(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        from: &PartyId,
        body: pb::sb_payload::Body,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), RoleError> {
        let me = ctx.me.clone();
        let err = |why: String| RoleError(format!("{me}: secureboost payload from {from}: {why}"));
        if *from != self.label {
            return Err(err("only the label holder sends secureboost payloads".into()));
        }
        if self.done {
            return Err(err("the stage is over here".into()));
        }
        match body {
            pb::sb_payload::Body::Key(k) => self.key(ctx, k).map_err(err),
            pb::sb_payload::Body::Gradients(g) => self.gradients(g, rng, out).map_err(err),
            pb::sb_payload::Body::Level(l) => self.level(l, rng, out).map_err(err),
            pb::sb_payload::Body::Ask(a) => self.ask(a, out).map_err(err),
            pb::sb_payload::Body::Commit(c) => self.commit(ctx, c, out).map_err(err),
            _ => Err(err("not a message a feature holder takes".into())),
        }
    }

    fn key(&mut self, ctx: &mut PartyCtx<'_>, k: pb::SbKey) -> Result<(), String> {
        if self.key.is_some() {
            return Err("a second key".into());
        }
        let want = match ctx.vertical.he.scheme {
            HeScheme::Ou => Scheme::Ou,
            HeScheme::Paillier => Scheme::Paillier,
        };
        let pk = PublicKey::from_bytes_with_min_bits(&k.public_key, ctx.vertical.he.bits)
            .map_err(|e| format!("the key: {e}"))?;
        if pk.scheme() != want || k.scheme != want.to_string() {
            return Err(format!("a {} key where the job says {want}", pk.scheme()));
        }
        let packer = Packer::new(k.value_bits, k.slots, k.max_terms)
            .map_err(|e| format!("the packing: {e}"))?;
        packer.check_fits(&pk).map_err(|e| format!("the packing: {e}"))?;
        if k.slots != 2 || k.max_terms < self.n as u64 {
            return Err("the packing does not hold (g, h) sums over every row".into());
        }
        let keep = k.resume_from as usize;
        if keep > self.kept.trees.len() {
            return Err(format!(
                "the label holder resumes after {keep} trees but this party kept {}",
                self.kept.trees.len()
            ));
        }
        self.truncate(keep);
        self.key = Some((pk, packer));
        Ok(())
    }

    fn truncate(&mut self, keep: usize) {
        self.kept.trees.truncate(keep);
        self.kept.splits.retain(|_, s| (s.tree as usize) < keep);
    }

    fn next_id(&self) -> u32 {
        let committed = self.kept.splits.keys().next_back().map_or(0, |k| k + 1);
        let made = self.run.as_ref().and_then(|r| r.made.keys().next_back()).map_or(0, |k| k + 1);
        committed.max(made)
    }

    fn gradients(
        &mut self,
        g: pb::SbGradients,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let (pk, _) = self.key.as_ref().ok_or("gradients before the key")?;
        let tree = self.kept.trees.len() as u32;
        if g.tree != tree {
            return Err(format!("gradients for tree {} where tree {tree} is next", g.tree));
        }
        if tree as usize >= self.params.n_trees {
            return Err(format!("a tree beyond the job's {}", self.params.n_trees));
        }
        if g.offset == 0 {
            if self.run.as_ref().is_some_and(|r| r.tree == tree && !r.cts.is_empty()) {
                return Err("the same tree's gradients twice".into());
            }
            if g.active.len() != self.n.div_ceil(8) {
                return Err("the active rows do not fit the aligned rows".into());
            }
            let mut rank = vec![u32::MAX; self.n];
            let mut n_active = 0usize;
            for (r, slot) in rank.iter_mut().enumerate() {
                if bit(&g.active, r) {
                    *slot = n_active as u32;
                    n_active += 1;
                }
            }
            if n_active < 2 * self.params.min_data_in_leaf.max(1) {
                return Err(format!("a tree over {n_active} rows"));
            }
            let d = self.binned.n_features();
            let feats: Vec<usize> = g.features.iter().map(|&f| f as usize).collect();
            if feats.windows(2).any(|w| w[0] >= w[1]) || feats.iter().any(|&f| f >= d) {
                return Err("the tree's features are not among its columns".into());
            }
            let cols = feats
                .iter()
                .map(|&f| {
                    let col = self.binned.column(f);
                    col.iter()
                        .zip(&rank)
                        .filter(|(_, k)| **k != u32::MAX)
                        .map(|(b, _)| *b)
                        .collect()
                })
                .collect();
            self.run = Some(Run {
                tree,
                rank,
                n_active,
                feats,
                cols,
                cts: Vec::with_capacity(n_active),
                nodes: NodeRows::root(self.n),
                made: BTreeMap::new(),
            });
        }
        let run = self.run.as_mut().ok_or("gradients without their first chunk")?;
        if run.tree != tree || g.offset != run.cts.len() as u64 || g.total != run.n_active as u64 {
            return Err("gradients out of order".into());
        }
        let cts = pk.read_ciphertexts(&g.ciphertexts).map_err(|e| format!("gradients: {e}"))?;
        if run.cts.len() + cts.len() > run.n_active {
            return Err("more gradients than active rows".into());
        }
        run.cts.extend(cts);
        if run.cts.len() == run.n_active {
            self.histograms(&[0], rng, out)?;
        }
        Ok(())
    }

    fn active_count(run: &Run, rows: &[u32]) -> usize {
        rows.iter().filter(|&&r| run.rank[r as usize] != u32::MAX).count()
    }

    fn level(
        &mut self,
        l: pb::SbLevel,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let min_leaf = self.params.min_data_in_leaf.max(1);
        let max_depth = self.params.max_depth;
        let run = self.run.as_mut().ok_or("a level before the tree's gradients")?;
        if l.tree != run.tree || run.cts.len() != run.n_active {
            return Err(format!("a level of tree {} out of order", l.tree));
        }
        for p in &l.partitions {
            let depth = run.nodes.depth(p.node).ok_or(format!("node {} is not open", p.node))?;
            if depth + 1 > max_depth {
                return Err(format!("node {} split below the job's depth {max_depth}", p.node));
            }
            run.nodes.split(p.node, p.left, p.right, &p.left_bits)?;
            for child in [p.left, p.right] {
                let n = Self::active_count(run, run.nodes.get(child).unwrap_or_default());
                if n < min_leaf {
                    return Err(format!(
                        "a partition leaves {n} active rows in node {child}, fewer than the \
                         job's min_data_in_leaf {min_leaf}"
                    ));
                }
            }
        }
        let wanted = l.wanted.clone();
        self.histograms(&wanted, rng, out)
    }

    /// Encrypted histograms of `nodes`, compressed, rerandomized, streamed in chunks.
    fn histograms(
        &mut self,
        nodes: &[u32],
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let (pk, packer) = self.key.as_ref().ok_or("no key")?;
        let run = self.run.as_ref().ok_or("no tree")?;
        // The smaller child of an honest split: at least min_data_in_leaf active rows.
        let min_rows = self.params.min_data_in_leaf.max(1);
        let bins = self.binned.bins_per_feature();
        let n_max = run.feats.iter().map(|&f| bins[f]).max().unwrap_or(1);
        let cols: Vec<&[u8]> = run.cols.iter().map(Vec::as_slice).collect();
        for &node in nodes {
            let rows = run.nodes.get(node).ok_or(format!("node {node} is not open"))?;
            if run.nodes.depth(node).unwrap_or(usize::MAX) >= self.params.max_depth {
                return Err(format!("node {node} is at the job's depth; it cannot split"));
            }
            let ranks: Vec<u32> =
                rows.iter().map(|&r| run.rank[r as usize]).filter(|&k| k != u32::MAX).collect();
            if ranks.len() < min_rows {
                return Err(format!(
                    "node {node} has {} active rows; histograms need at least {min_rows}",
                    ranks.len()
                ));
            }
            let hists = pk
                .histograms(&run.cts, Some(&ranks), &cols, n_max)
                .map_err(|e| format!("histograms: {e}"))?;
            let mut flat = Vec::new();
            let mut counts = Vec::new();
            for ((h, &f), col) in hists.into_iter().zip(&run.feats).zip(&run.cols) {
                flat.extend(h.into_iter().take(bins[f]));
                let at = counts.len();
                counts.resize(at + bins[f], 0u32);
                for &k in &ranks {
                    counts[at + col[k as usize] as usize] += 1;
                }
            }
            let packed = pk.compress(&flat, packer).map_err(|e| format!("compress: {e}"))?;
            let packed = pk.rerandomize_batch(&packed, rng);
            let total = packed.len() as u32;
            let tree = run.tree;
            let mut counts = Some(counts);
            for (k, chunk) in packed.chunks(CTS_PER_MESSAGE).enumerate() {
                send(
                    out,
                    std::slice::from_ref(&self.label),
                    pb::sb_payload::Body::Histograms(pb::SbHistograms {
                        tree,
                        node,
                        offset: (k * CTS_PER_MESSAGE) as u32,
                        total,
                        ciphertexts: pk.write_ciphertexts(chunk),
                        counts: counts.take().unwrap_or_default(),
                    }),
                );
            }
        }
        Ok(())
    }

    fn ask(&mut self, a: pb::SbSplitAsk, out: &mut StageRoleOut<'_>) -> Result<(), String> {
        let min_leaf = self.params.min_data_in_leaf.max(1);
        let first_id = self.next_id();
        let run = self.run.as_mut().ok_or("a split before the tree's gradients")?;
        if a.tree != run.tree {
            return Err(format!("a split of tree {} during tree {}", a.tree, run.tree));
        }
        let mut splits = Vec::with_capacity(a.rules.len());
        for (id, r) in (first_id..).zip(a.rules) {
            let f = r.feature as usize;
            if !run.feats.contains(&f) {
                return Err(format!("feature {f} is not one of this tree's"));
            }
            let fb = self.mapper.feature_bins(f);
            let missing_bin = fb.missing_bin();
            let categorical = fb.kind() == fedcredit_models::gbdt::BinKind::Categorical;
            if categorical != r.categorical {
                return Err(format!("feature {f}: a rule of the wrong kind"));
            }
            let rule = if categorical {
                let left: Vec<u8> = r
                    .left_bins
                    .iter()
                    .map(|&b| u8::try_from(b).ok().filter(|b| *b < missing_bin))
                    .collect::<Option<_>>()
                    .ok_or(format!("feature {f}: a bin beyond its bins"))?;
                if left.is_empty() || left.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!("feature {f}: left bins not ascending"));
                }
                BinSplit::Categorical { left_bins: left }
            } else {
                let t = u8::try_from(r.threshold)
                    .ok()
                    .filter(|t| *t < missing_bin)
                    .ok_or(format!("feature {f}: threshold bin {} beyond its bins", r.threshold))?;
                BinSplit::Numeric { threshold_bin: t }
            };
            let split = HolderSplit {
                tree: run.tree,
                feature: f,
                rule,
                missing_bin,
                default_left: r.default_left,
            };
            let rows = run.nodes.get(r.node).ok_or(format!("node {} is not open", r.node))?;
            let col = self.binned.column(f);
            let lefts: Vec<bool> =
                rows.iter().map(|&row| split.goes_left(col[row as usize])).collect();
            let active_left = rows
                .iter()
                .zip(&lefts)
                .filter(|(row, l)| **l && run.rank[**row as usize] != u32::MAX)
                .count();
            let active = Self::active_count(run, rows);
            if active_left < min_leaf || active - active_left < min_leaf {
                return Err(format!(
                    "the split asked for node {} leaves fewer than min_data_in_leaf {min_leaf} \
                     active rows on a side",
                    r.node
                ));
            }
            run.made.insert(id, split);
            splits.push(pb::SbSplitMade {
                node: r.node,
                split_id: id,
                left_bits: pack_bits(lefts),
            });
        }
        send(
            out,
            std::slice::from_ref(&self.label),
            pb::sb_payload::Body::Split(pb::SbSplitReply { tree: run.tree, splits }),
        );
        Ok(())
    }

    fn commit(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        c: pb::SbCommit,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        if c.last {
            let keep = c.keep as usize;
            if keep > self.kept.trees.len() {
                return Err(format!("keep {keep} trees of {}", self.kept.trees.len()));
            }
            self.truncate(keep);
            let part = HolderPart {
                me: self.me,
                bins: Bins::of(&self.mapper),
                splits: self.kept.splits.iter().map(|(k, v)| (*k, v.clone())).collect(),
                trees: self.kept.trees.clone(),
            };
            let model = super::super::model::PartyModel::Gbdt { part: Box::new(part.into()) };
            let json = serde_json::to_string(&model).map_err(|e| e.to_string())?;
            ctx.kept.insert(KEPT_MODEL.into(), json);
            ctx.kept.remove(KEPT_STATE);
            let splits = self.kept.splits.len() as u32;
            report(
                out,
                pb::sb_report::Body::Done(pb::SbDone {
                    trees: keep as u32,
                    splits,
                    summary: format!("{splits} splits of its own in {keep} trees"),
                }),
            );
            self.done = true;
            return Ok(());
        }
        let tree = self.kept.trees.len() as u32;
        if c.tree != tree || tree as usize >= self.params.n_trees {
            return Err(format!("a commit of tree {} where tree {tree} is next", c.tree));
        }
        let shape = TreeShape {
            nodes: c
                .nodes
                .iter()
                .map(|n| ShapeNode {
                    owner: n.owner.checked_sub(1),
                    split_id: n.split_id,
                    left: n.left,
                    right: n.right,
                })
                .collect(),
        };
        shape.validate()?;
        let made = match self.run.take() {
            Some(run) if run.tree == tree => run.made,
            _ => BTreeMap::new(),
        };
        let mut used = BTreeMap::new();
        for n in &shape.nodes {
            if n.owner == Some(self.me) {
                let s = made
                    .get(&n.split_id)
                    .ok_or(format!("the tree names split {} it did not make", n.split_id))?;
                if used.insert(n.split_id, s.clone()).is_some() {
                    return Err(format!("split {} used twice", n.split_id));
                }
            }
        }
        self.kept.splits.extend(used);
        self.kept.trees.push(shape);
        let json = serde_json::to_string(&self.kept).map_err(|e| e.to_string())?;
        ctx.kept.insert(KEPT_STATE.into(), json);
        out.out.checkpoint = true;
        send(
            out,
            std::slice::from_ref(&self.label),
            pb::sb_payload::Body::Committed(pb::SbCommitted { tree }),
        );
        Ok(())
    }
}

/// Bins a party's own columns over the aligned rows, edges from the training rows; whether
/// each feature has more than one bin over the training rows.
pub(super) fn bin_own(
    ctx: &PartyCtx<'_>,
    params: &GbdtParams,
) -> Result<(BinMapper, BinnedMatrix, Vec<bool>), String> {
    let a = ctx.alignment.as_ref().ok_or("no alignment before the secureboost stage")?;
    if a.rows.iter().any(|&r| r as usize >= ctx.table.n_rows()) {
        return Err("the alignment names a row beyond the table".into());
    }
    let all: Vec<usize> = a.rows.iter().map(|&r| r as usize).collect();
    let fraction = ctx.spec.data.validation_fraction;
    let train: Vec<usize> =
        (0..a.len()).filter(|&t| !a.is_validation(t, fraction)).map(|t| all[t]).collect();
    let mapper = BinMapper::fit(&ctx.table.features.select_rows(&train), params.max_bins)
        .map_err(|e| format!("binning its columns: {e}"))?;
    let binned = mapper
        .bin(&ctx.table.features.select_rows(&all))
        .map_err(|e| format!("binning its columns: {e}"))?;
    let is_train: Vec<bool> = (0..a.len()).map(|t| !a.is_validation(t, fraction)).collect();
    let usable = (0..binned.n_features())
        .map(|f| {
            let col = binned.column(f);
            let mut it = col.iter().zip(&is_train).filter(|(_, t)| **t).map(|(b, _)| *b);
            match it.next() {
                Some(b0) => it.any(|b| b != b0),
                None => false,
            }
        })
        .collect();
    Ok((mapper, binned, usable))
}
