//! The label holder's side of SecureBoost (see [`super`]; Cheng et al., arXiv 1901.08755,
//! Algorithms 1–2, with SecureBoost+'s packing, compression and GOSS, arXiv 2110.10927): it
//! computes gradients and hessians as the centralized trainer does, encrypts them, turns the
//! feature holders' encrypted histograms into plaintext ones and grows every tree with the
//! centralized [`TreeGrowth`], so the federated trees are the centralized trees up to the
//! fixed-point rounding of the sums (2^-30 per row).
//!
//! What it checks of a feature holder: its layout fits the aligned rows; every node's
//! decrypted sums decode (no slot overflow) and count exactly the node's active rows for every
//! feature; a partition it returns for its own split puts exactly as many active rows left as
//! the winning candidate counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fedcredit_crypto::he::{Ciphertext, FixedScale, Packer, Plaintext, Scheme, SecretKey};
use fedcredit_models::gbdt::{
    BinKind, BinMapper, BinSplit, BinnedMatrix, GbdtParams, GradStats, Histogram, RoundSampler,
    TreeGrowth, build_histogram, gradient_pair, leaf_weight, on_grad_grid,
};
use fedcredit_models::metrics::{auc, ks, log_loss};
use fedcredit_proto::pb;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::part::{Bins, LabelPart, LabelSplit, LabelTree, ShapeNode, TreeShape};
use super::{
    CTS_PER_MESSAGE, FRAC_BITS, KEPT_STATE, NodeRows, SbParams, bit, pack_bits, report, sb_params,
    send,
};
use crate::ids::PartyId;
use crate::protocol::{CsRng, RoleError};
use crate::vertical::model::{KEPT_MODEL, PartyModel};
use crate::vertical::{HeScheme, PartyCtx, StageRoleOut};

/// What the label holder keeps between trees (checkpointed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabelKept {
    /// Committed trees.
    pub trees: Vec<LabelTree>,
    /// Raw score of every aligned row after them.
    pub scores: Vec<f64>,
    /// Validation log loss after each tree.
    pub history: Vec<f64>,
}

/// The joint feature space: every party's columns, parties in the job's order.
#[derive(Debug, Clone)]
struct Joint {
    /// Owner (position in the job's parties) and local column of each joint feature.
    owner: Vec<(u32, usize)>,
    bins: Vec<usize>,
    kinds: Vec<BinKind>,
    names: Vec<String>,
    usable: Vec<usize>,
}

/// A node's encrypted histogram from one holder, as it arrives.
#[derive(Debug, Default)]
struct Incoming {
    total: usize,
    cts: Vec<Ciphertext>,
    counts: Vec<u32>,
}

/// The tree being grown.
#[derive(Debug)]
struct Run {
    tree: u32,
    growth: TreeGrowth,
    grad: Vec<f64>,
    hess: Vec<f64>,
    active: Vec<bool>,
    /// The tree's joint features.
    feats: Vec<usize>,
    /// Holders with features in this tree, and those features (local columns).
    local: BTreeMap<PartyId, Vec<usize>>,
    nodes: NodeRows,
    /// Nodes whose histograms are wanted now.
    wanted: Vec<usize>,
    incoming: BTreeMap<(PartyId, u32), Incoming>,
    decoded: BTreeMap<(PartyId, u32), Vec<GradStats>>,
    /// Holders asked for splits, and the nodes asked.
    asked: BTreeMap<PartyId, Vec<usize>>,
    /// Owner and split id of every split made.
    refs: BTreeMap<usize, (u32, u32)>,
    /// Partitions of the level not sent yet.
    partitions: Vec<pb::SbPartition>,
    /// Holders that have not confirmed the commit.
    committing: BTreeSet<PartyId>,
    finished: Option<LabelTree>,
}

/// The label holder's state in the stage.
pub struct LabelSide {
    me: u32,
    parties: Vec<PartyId>,
    holders: Vec<PartyId>,
    params: GbdtParams,
    sb: SbParams,
    n: usize,
    /// Aligned rows of the training rows, ascending.
    train: Vec<u32>,
    valid: Vec<u32>,
    y: Vec<f64>,
    base_score: f64,
    mapper: BinMapper,
    binned: BinnedMatrix,
    own_usable: Vec<bool>,
    layouts: BTreeMap<PartyId, pb::SbLayout>,
    joint: Option<Joint>,
    key: SecretKey,
    packer: Packer,
    scale: FixedScale,
    kept: LabelKept,
    sampler: Option<RoundSampler>,
    run: Option<Run>,
    done: bool,
}

impl std::fmt::Debug for LabelSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelSide")
            .field("rows", &self.n)
            .field("holders", &self.holders)
            .field("trees", &self.kept.trees.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl LabelSide {
    /// Opens the stage at the label holder: bins its columns, draws its key, and waits for
    /// the feature holders' layouts.
    ///
    /// # Errors
    /// [`RoleError`] when the label is not 0/1 on the training rows or holds one class, a
    /// column cannot be binned, the key cannot be drawn or the kept state cannot be read.
    pub fn start(
        ctx: &mut PartyCtx<'_>,
        params: GbdtParams,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<Self, RoleError> {
        let me = ctx.me.clone();
        let err = |e: String| RoleError(format!("{me}: {e}"));
        let sb = sb_params(ctx.spec);
        let (mapper, binned, own_usable) = super::holder::bin_own(ctx, &params).map_err(err)?;
        let a = ctx.alignment.as_ref().ok_or_else(|| err("no alignment".into()))?;
        let label = ctx.table.label.as_ref().ok_or_else(|| err("no label".into()))?;
        let n = a.len();
        let fraction = ctx.spec.data.validation_fraction;
        let is_train: Vec<bool> = (0..n).map(|t| !a.is_validation(t, fraction)).collect();
        let mut y = Vec::with_capacity(n);
        for &r in &a.rows {
            match label.get(r as usize).copied() {
                Some(v) if v == 0.0 || v == 1.0 => y.push(v),
                _ => return Err(err("the label is not 0/1 on every aligned row".into())),
            }
        }
        let train: Vec<u32> = (0..n as u32).filter(|&t| is_train[t as usize]).collect();
        let valid: Vec<u32> = (0..n as u32).filter(|&t| !is_train[t as usize]).collect();
        let positives: f64 = train.iter().map(|&t| y[t as usize]).sum();
        if positives == 0.0 || positives == train.len() as f64 {
            return Err(err("the training rows hold a single class".into()));
        }
        let mean = positives / train.len() as f64;
        let base_score = (mean / (1.0 - mean)).ln();
        let scheme = match ctx.vertical.he.scheme {
            HeScheme::Ou => Scheme::Ou,
            HeScheme::Paillier => Scheme::Paillier,
        };
        let key = SecretKey::generate(scheme, ctx.vertical.he.bits, rng)
            .map_err(|e| err(format!("drawing its key: {e}")))?;
        let weight_bits = sb.max_weight().log2().ceil().max(0.0) as u32;
        let packer = Packer::new(FRAC_BITS + weight_bits + 1, 2, (n as u64).max(2))
            .and_then(|p| p.check_fits(key.public_key()).map(|()| p))
            .map_err(|e| err(format!("packing the gradients: {e}")))?;
        let mut kept: LabelKept = match ctx.kept.get(KEPT_STATE) {
            Some(j) => serde_json::from_str(j).map_err(|e| err(format!("kept trees: {e}")))?,
            None => LabelKept::default(),
        };
        if kept.scores.len() != n {
            kept = LabelKept { scores: vec![base_score; n], ..LabelKept::default() };
        }
        let parties = ctx.spec.parties.clone();
        let me_index = parties.iter().position(|p| p == ctx.me).unwrap_or(0) as u32;
        let holders: Vec<PartyId> = parties.iter().filter(|p| *p != ctx.me).cloned().collect();
        tracing::info!(
            rows = n,
            train = train.len(),
            own_features = binned.n_features(),
            holders = holders.len(),
            trees_kept = kept.trees.len(),
            "secureboost: own columns binned, key drawn"
        );
        let mut side = Self {
            me: me_index,
            parties,
            holders,
            params,
            sb,
            n,
            train,
            valid,
            y,
            base_score,
            mapper,
            binned,
            own_usable,
            layouts: BTreeMap::new(),
            joint: None,
            key,
            packer,
            scale: FixedScale::new(FRAC_BITS),
            kept,
            sampler: None,
            run: None,
            done: false,
        };
        if side.holders.is_empty() {
            side.begin(ctx, rng, out).map_err(err)?;
        }
        Ok(side)
    }

    /// Whether its part is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A feature holder's payload.
    ///
    /// # Errors
    /// [`RoleError`] for anything out of order, malformed or inconsistent.
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
        if !self.holders.contains(from) {
            return Err(err("not a feature holder of the job".into()));
        }
        if self.done {
            return Err(err("the stage is over here".into()));
        }
        match body {
            pb::sb_payload::Body::Layout(l) => {
                if self.layouts.contains_key(from) {
                    return Err(err("a second layout".into()));
                }
                let d = l.bins.len();
                if l.categorical.len() != d || l.usable.len() != d || l.names.len() != d {
                    return Err(err("a layout whose lists differ in length".into()));
                }
                if l.rows != self.n as u64 {
                    return Err(err(format!("{} aligned rows where it has {}", l.rows, self.n)));
                }
                if l.bins.iter().any(|&b| !(1..=256).contains(&b)) {
                    return Err(err("a feature with more than 256 bins".into()));
                }
                self.layouts.insert(from.clone(), l);
                if self.layouts.len() == self.holders.len() {
                    self.begin(ctx, rng, out).map_err(err)?;
                }
                Ok(())
            }
            pb::sb_payload::Body::Histograms(h) => {
                self.histograms(from, h).map_err(err)?;
                self.maybe_absorb(ctx, rng, out).map_err(err)
            }
            pb::sb_payload::Body::Split(s) => {
                self.split_reply(from, s).map_err(err)?;
                if self.run.as_ref().is_some_and(|r| r.asked.is_empty()) {
                    self.after_splits(ctx, rng, out).map_err(err)?;
                }
                Ok(())
            }
            pb::sb_payload::Body::Committed(c) => {
                let run = self.run.as_mut().ok_or_else(|| err("nothing to commit".into()))?;
                if c.tree != run.tree || !run.committing.remove(from) {
                    return Err(err(format!("an unexpected commit of tree {}", c.tree)));
                }
                if run.committing.is_empty() {
                    self.committed(ctx, rng, out).map_err(err)?;
                }
                Ok(())
            }
            _ => Err(err("not a message the label holder takes".into())),
        }
    }

    /// All layouts are in: the joint feature space, the key to every holder, the first tree.
    fn begin(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let mut joint = Joint {
            owner: Vec::new(),
            bins: Vec::new(),
            kinds: Vec::new(),
            names: Vec::new(),
            usable: Vec::new(),
        };
        for (k, p) in self.parties.iter().enumerate() {
            if k as u32 == self.me {
                for f in 0..self.binned.n_features() {
                    if self.own_usable[f] {
                        joint.usable.push(joint.owner.len());
                    }
                    joint.owner.push((self.me, f));
                    joint.bins.push(self.binned.bins_per_feature()[f]);
                    joint.kinds.push(self.binned.kinds()[f]);
                    joint.names.push(self.mapper.specs()[f].name.clone());
                }
            } else {
                let l = self.layouts.get(p).ok_or(format!("no layout from {p}"))?;
                for f in 0..l.bins.len() {
                    if l.usable[f] {
                        joint.usable.push(joint.owner.len());
                    }
                    joint.owner.push((k as u32, f));
                    joint.bins.push(l.bins[f] as usize);
                    joint.kinds.push(if l.categorical[f] {
                        BinKind::Categorical
                    } else {
                        BinKind::Numeric
                    });
                    joint.names.push(l.names[f].clone());
                }
            }
        }
        let resume = self.kept.trees.len();
        for (p, l) in &self.layouts {
            if (l.trees_done as usize) < resume {
                return Err(format!(
                    "{p} kept {} trees, fewer than the {resume} kept here: its state was lost; \
                     start the job anew",
                    l.trees_done
                ));
            }
        }
        let pk = self.key.public_key();
        for h in &self.holders {
            send(
                out,
                std::slice::from_ref(h),
                pb::sb_payload::Body::Key(pb::SbKey {
                    scheme: pk.scheme().to_string(),
                    public_key: pk.to_bytes(),
                    value_bits: self.packer.value_bits(),
                    slots: self.packer.slots(),
                    max_terms: self.packer.max_terms(),
                    resume_from: resume as u32,
                }),
            );
        }
        let mut sampler = RoundSampler::new(&self.params, self.train.len(), joint.usable.clone());
        for _ in 0..resume {
            sampler.next_round();
        }
        self.sampler = Some(sampler);
        self.joint = Some(joint);
        if resume > 0 {
            tracing::info!(trees = resume, "secureboost: resuming after the kept trees");
        }
        self.next_tree(ctx, rng, out)
    }

    fn should_stop(&self) -> bool {
        let t = self.kept.trees.len();
        if t >= self.params.n_trees {
            return true;
        }
        match self.sb.early_stopping_rounds {
            Some(k) if !self.kept.history.is_empty() => {
                let best = best_round(&self.kept.history);
                t - 1 - best >= k
            }
            _ => false,
        }
    }

    fn next_tree(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        if self.should_stop() {
            return self.finish(ctx, out);
        }
        let tree = self.kept.trees.len() as u32;
        let joint = self.joint.as_ref().ok_or("no joint layout")?;
        let sampler = self.sampler.as_mut().ok_or("no sampler")?;
        let mut grad = vec![0.0; self.n];
        let mut hess = vec![0.0; self.n];
        for &t in &self.train {
            let t = t as usize;
            (grad[t], hess[t]) = gradient_pair(self.kept.scores[t], self.y[t]);
        }
        sampler.next_round();
        let sample: Vec<usize> =
            sampler.rows().iter().map(|&k| self.train[k as usize] as usize).collect();
        let mut active = vec![false; self.n];
        if self.sb.goss {
            goss(&self.sb, self.params.seed, tree, &sample, &mut grad, &mut hess, &mut active);
        } else {
            for &r in &sample {
                active[r] = true;
            }
        }
        // On the fixed-point grid of the encrypted sums (GOSS weights moved them off it), for
        // the label holder's own columns too: every histogram sums the same values exactly, as
        // in the centralized trainer, whose gradients are on this grid.
        for r in 0..self.n {
            (grad[r], hess[r]) =
                if active[r] { (on_grad_grid(grad[r]), on_grad_grid(hess[r])) } else { (0.0, 0.0) };
        }
        let label_only = tree < self.sb.label_only_trees;
        let feats: Vec<usize> = sampler
            .features()
            .iter()
            .copied()
            .filter(|&j| !label_only || joint.owner[j].0 == self.me)
            .collect();
        let mut root = GradStats::default();
        for r in (0..self.n).filter(|&r| active[r]) {
            root.sum_grad += grad[r];
            root.sum_hess += hess[r];
            root.count += 1;
        }
        let growth =
            TreeGrowth::new(self.params.grow_params(), joint.kinds.clone(), feats.clone(), root);
        let mut local: BTreeMap<PartyId, Vec<usize>> = BTreeMap::new();
        for &j in &feats {
            let (owner, f) = joint.owner[j];
            if owner != self.me {
                local.entry(self.parties[owner as usize].clone()).or_default().push(f);
            }
        }
        if !growth.wanted().is_empty() && !local.is_empty() {
            self.stream_gradients(tree, &grad, &hess, &active, &local, rng, out)?;
        } else {
            local.clear();
        }
        let wanted = growth.wanted().to_vec();
        self.run = Some(Run {
            tree,
            growth,
            grad,
            hess,
            active,
            feats,
            local,
            nodes: NodeRows::root(self.n),
            wanted,
            incoming: BTreeMap::new(),
            decoded: BTreeMap::new(),
            asked: BTreeMap::new(),
            refs: BTreeMap::new(),
            partitions: Vec::new(),
            committing: BTreeSet::new(),
            finished: None,
        });
        self.maybe_absorb(ctx, rng, out)
    }

    /// Encrypts `(g, h)` of the active rows and streams them to the tree's holders.
    #[allow(clippy::too_many_arguments)]
    fn stream_gradients(
        &self,
        tree: u32,
        grad: &[f64],
        hess: &[f64],
        active: &[bool],
        local: &BTreeMap<PartyId, Vec<usize>>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let scale = self.scale;
        let plain: Vec<Plaintext> = (0..self.n)
            .filter(|&r| active[r])
            .map(|r| {
                let g = scale.encode(grad[r]).map_err(|e| e.to_string())?;
                let h = scale.encode(hess[r]).map_err(|e| e.to_string())?;
                self.packer.pack(&[g, h]).map_err(|e| e.to_string())
            })
            .collect::<Result<_, String>>()?;
        let total = plain.len() as u64;
        let cts = self.key.encrypt_batch(&plain, rng).map_err(|e| e.to_string())?;
        let pk = self.key.public_key();
        let bytes = Arc::new(pk.write_ciphertexts(&cts));
        let active_bits = Arc::new(pack_bits(active.iter().copied()));
        let len = pk.ciphertext_len();
        let chunk = CTS_PER_MESSAGE * len;
        let chunks = bytes.len().div_ceil(chunk);
        for (h, feats) in local {
            let bytes = Arc::clone(&bytes);
            let active_bits = Arc::clone(&active_bits);
            let features: Vec<u32> = feats.iter().map(|&f| f as u32).collect();
            let src = (0..chunks).map(move |k| {
                let lo = k * chunk;
                let hi = (lo + chunk).min(bytes.len());
                pb::vertical_payload::Body::Secureboost(pb::SbPayload {
                    body: Some(pb::sb_payload::Body::Gradients(pb::SbGradients {
                        tree,
                        active: if k == 0 { active_bits.to_vec() } else { Vec::new() },
                        features: if k == 0 { features.clone() } else { Vec::new() },
                        offset: (k * CTS_PER_MESSAGE) as u64,
                        total,
                        ciphertexts: bytes[lo..hi].to_vec(),
                    })),
                })
            });
            out.stream(std::slice::from_ref(h), src);
        }
        Ok(())
    }

    fn histograms(&mut self, from: &PartyId, h: pb::SbHistograms) -> Result<(), String> {
        let pk = self.key.public_key().clone();
        let run = self.run.as_mut().ok_or("histograms while no tree grows")?;
        if h.tree != run.tree || !run.wanted.contains(&(h.node as usize)) {
            return Err(format!("histograms of tree {} node {} not asked for", h.tree, h.node));
        }
        let feats = run.local.get(from).ok_or("histograms from a holder not in this tree")?;
        let layout = self.layouts.get(from).ok_or("no layout")?;
        let sums: usize = feats.iter().map(|&f| layout.bins[f] as usize).sum();
        let expected = pk.compressed_groups(sums, &self.packer).len();
        let key = (from.clone(), h.node);
        if run.decoded.contains_key(&key) {
            return Err(format!("node {}'s histograms twice", h.node));
        }
        let inc = run.incoming.entry(key.clone()).or_default();
        if h.total as usize != expected || h.offset as usize != inc.cts.len() {
            return Err(format!("node {}'s histograms out of order or of the wrong size", h.node));
        }
        inc.total = expected;
        if h.offset == 0 {
            if h.counts.len() != sums {
                return Err(format!(
                    "node {}: {} bin counts for {sums} bins",
                    h.node,
                    h.counts.len()
                ));
            }
            inc.counts = h.counts;
        }
        let cts = pk.read_ciphertexts(&h.ciphertexts).map_err(|e| e.to_string())?;
        if inc.cts.len() + cts.len() > expected {
            return Err("more histogram ciphertexts than bins".into());
        }
        inc.cts.extend(cts);
        if inc.cts.len() < inc.total {
            return Ok(());
        }
        let inc = run.incoming.remove(&key).unwrap_or_default();
        let groups = pk.compressed_groups(sums, &self.packer);
        let plain = self.key.decrypt_batch(&inc.cts);
        let mut stats = Vec::with_capacity(sums);
        for (m, &g) in plain.iter().zip(&groups) {
            let v = self.packer.unpack_many(m, g).map_err(|e| format!("decoding sums: {e}"))?;
            for s in v.chunks_exact(2) {
                let count = inc.counts[stats.len()];
                // An empty bin sums nothing; hessians are never negative.
                if (count == 0 && (s[0] != 0 || s[1] != 0)) || s[1] < 0 {
                    return Err(format!("node {}: sums that no rows can make", h.node));
                }
                stats.push(GradStats {
                    sum_grad: self.scale.decode(s[0]),
                    sum_hess: self.scale.decode(s[1]),
                    count,
                });
            }
        }
        let node_count = run.growth.nodes()[h.node as usize].stats.count;
        let mut at = 0;
        for &f in feats {
            let nb = layout.bins[f] as usize;
            let c: u64 = stats[at..at + nb].iter().map(|s| u64::from(s.count)).sum();
            if c != u64::from(node_count) {
                return Err(format!(
                    "feature {f} of node {} counts {c} rows where the node has {node_count}",
                    h.node
                ));
            }
            at += nb;
        }
        run.decoded.insert(key, stats);
        Ok(())
    }

    /// Grows a level once every histogram of the wanted nodes is in.
    fn maybe_absorb(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let joint = self.joint.as_ref().ok_or("no joint layout")?;
        let run = self.run.as_mut().ok_or("no tree")?;
        if run.finished.is_some() || !run.asked.is_empty() {
            return Ok(());
        }
        if run.growth.is_done() {
            return self.finish_tree(ctx, rng, out);
        }
        let complete = run
            .local
            .keys()
            .all(|p| run.wanted.iter().all(|&v| run.decoded.contains_key(&(p.clone(), v as u32))));
        if !complete {
            return Ok(());
        }
        let own_feats: Vec<usize> = run
            .feats
            .iter()
            .filter(|&&j| joint.owner[j].0 == self.me)
            .map(|&j| joint.owner[j].1)
            .collect();
        let mut hists = Vec::with_capacity(run.wanted.len());
        for &v in &run.wanted {
            let mut hist = Histogram::new(&joint.bins).map_err(|e| e.to_string())?;
            let rows: Vec<u32> = run
                .nodes
                .get(v as u32)
                .ok_or(format!("node {v} has no rows"))?
                .iter()
                .copied()
                .filter(|&r| run.active[r as usize])
                .collect();
            let mut own =
                Histogram::new(self.binned.bins_per_feature()).map_err(|e| e.to_string())?;
            build_histogram(&self.binned, &rows, &run.grad, &run.hess, &own_feats, &mut own)
                .map_err(|e| e.to_string())?;
            let mut offsets = BTreeMap::new();
            for (j, &(owner, f)) in joint.owner.iter().enumerate() {
                if owner == self.me {
                    hist.feature_mut(j).copy_from_slice(own.feature(f));
                } else {
                    offsets.entry(owner).or_insert(j);
                }
            }
            for (p, feats) in &run.local {
                let stats = run.decoded.remove(&(p.clone(), v as u32)).unwrap_or_default();
                let owner = self.parties.iter().position(|q| q == p).unwrap_or(0) as u32;
                let base = offsets.get(&owner).copied().unwrap_or(0);
                let mut at = 0;
                for &f in feats {
                    let nb = joint.bins[base + f];
                    hist.feature_mut(base + f).copy_from_slice(&stats[at..at + nb]);
                    at += nb;
                }
            }
            hists.push(hist);
        }
        let before = run.growth.nodes().len();
        run.growth.absorb(hists).map_err(|e| e.to_string())?;
        // The splits made at this level: nodes whose children are new.
        let mut asks: BTreeMap<u32, Vec<pb::SbSplitRule>> = BTreeMap::new();
        for (i, node) in run.growth.nodes().iter().enumerate().take(before) {
            let Some(s) = &node.split else { continue };
            if s.left < before {
                continue;
            }
            let (owner, f) = joint.owner[s.cand.feature];
            if owner == self.me {
                let rows = run.nodes.get(i as u32).ok_or(format!("node {i} has no rows"))?;
                let col = self.binned.column(f);
                let bits = pack_bits(rows.iter().map(|&r| s.cand.goes_left(col[r as usize])));
                run.refs.insert(i, (self.me, i as u32));
                run.partitions.push(pb::SbPartition {
                    node: i as u32,
                    left: s.left as u32,
                    right: s.right as u32,
                    left_bits: bits,
                });
            } else {
                let (threshold, left_bins, categorical) = match &s.cand.split {
                    BinSplit::Numeric { threshold_bin } => {
                        (u32::from(*threshold_bin), vec![], false)
                    }
                    BinSplit::Categorical { left_bins } => {
                        (0, left_bins.iter().map(|&b| u32::from(b)).collect(), true)
                    }
                };
                asks.entry(owner).or_default().push(pb::SbSplitRule {
                    node: i as u32,
                    feature: f as u32,
                    threshold,
                    left_bins,
                    categorical,
                    default_left: s.cand.default_left,
                });
            }
        }
        for (owner, rules) in asks {
            let p = self.parties[owner as usize].clone();
            run.asked.insert(p.clone(), rules.iter().map(|r| r.node as usize).collect());
            send(out, &[p], pb::sb_payload::Body::Ask(pb::SbSplitAsk { tree: run.tree, rules }));
        }
        if run.asked.is_empty() {
            return self.after_splits(ctx, rng, out);
        }
        Ok(())
    }

    fn split_reply(&mut self, from: &PartyId, s: pb::SbSplitReply) -> Result<(), String> {
        let run = self.run.as_mut().ok_or("a split while no tree grows")?;
        let nodes = run.asked.remove(from).ok_or("a split not asked for")?;
        if s.tree != run.tree || s.splits.len() != nodes.len() {
            return Err("a split reply that does not answer the ask".into());
        }
        let owner = self.parties.iter().position(|q| q == from).unwrap_or(0) as u32;
        for (made, &node) in s.splits.into_iter().zip(&nodes) {
            if made.node as usize != node {
                return Err(format!("a split of node {} where {node} was asked", made.node));
            }
            let split = run.growth.nodes()[node].split.clone().ok_or("no split")?;
            let rows = run.nodes.get(node as u32).ok_or(format!("node {node} has no rows"))?;
            if made.left_bits.len() != rows.len().div_ceil(8) {
                return Err(format!("node {node}: a partition of the wrong size"));
            }
            let left_active = rows
                .iter()
                .enumerate()
                .filter(|(i, r)| bit(&made.left_bits, *i) && run.active[**r as usize])
                .count();
            if left_active as u32 != split.cand.left.count {
                return Err(format!(
                    "node {node}: the partition puts {left_active} active rows left where the \
                     split counted {}",
                    split.cand.left.count
                ));
            }
            run.refs.insert(node, (owner, made.split_id));
            run.partitions.push(pb::SbPartition {
                node: node as u32,
                left: split.left as u32,
                right: split.right as u32,
                left_bits: made.left_bits,
            });
        }
        Ok(())
    }

    /// Every split of the level has its partition: apply them, then the next level or the end
    /// of the tree.
    fn after_splits(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let run = self.run.as_mut().ok_or("no tree")?;
        run.partitions.sort_by_key(|p| p.node);
        for p in &run.partitions {
            run.nodes.split(p.node, p.left, p.right, &p.left_bits)?;
        }
        let partitions = std::mem::take(&mut run.partitions);
        if run.growth.is_done() {
            return self.finish_tree(ctx, rng, out);
        }
        run.wanted = run.growth.wanted().to_vec();
        let wanted: Vec<u32> = run.wanted.iter().map(|&v| v as u32).collect();
        for h in run.local.keys() {
            send(
                out,
                std::slice::from_ref(h),
                pb::sb_payload::Body::Level(pb::SbLevel {
                    tree: run.tree,
                    partitions: partitions.clone(),
                    wanted: wanted.clone(),
                }),
            );
        }
        self.maybe_absorb(ctx, rng, out)
    }

    /// The tree is grown: scores, figures, and its shape to every holder.
    fn finish_tree(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let joint = self.joint.as_ref().ok_or("no joint layout")?;
        let run = self.run.as_mut().ok_or("no tree")?;
        let nodes = run.growth.nodes();
        let lambda = self.params.lambda_l2;
        let mut shape = Vec::with_capacity(nodes.len());
        let mut splits = Vec::with_capacity(nodes.len());
        let mut values = Vec::with_capacity(nodes.len());
        for (i, nd) in nodes.iter().enumerate() {
            match &nd.split {
                Some(s) => {
                    let (owner, split_id) =
                        run.refs.get(&i).copied().ok_or(format!("node {i} has no split id"))?;
                    let (_, f) = joint.owner[s.cand.feature];
                    shape.push(ShapeNode {
                        owner: Some(owner),
                        split_id,
                        left: s.left as u32,
                        right: s.right as u32,
                    });
                    splits.push(Some(if owner == self.me {
                        LabelSplit::Own {
                            feature: f,
                            rule: s.cand.split.clone(),
                            missing_bin: s.cand.missing_bin,
                            default_left: s.cand.default_left,
                        }
                    } else {
                        LabelSplit::Remote { feature: joint.names[s.cand.feature].clone() }
                    }));
                    values.push(leaf_weight(nd.stats, lambda) * self.params.learning_rate);
                }
                None => {
                    shape.push(ShapeNode { owner: None, split_id: 0, left: 0, right: 0 });
                    splits.push(None);
                    values.push(nd.value);
                    let rows = run.nodes.get(i as u32).ok_or(format!("leaf {i} has no rows"))?;
                    for &r in rows {
                        self.kept.scores[r as usize] += nd.value;
                    }
                }
            }
        }
        let tree = LabelTree { shape: TreeShape { nodes: shape }, splits, values };
        tree.shape.validate()?;
        let commit = pb::SbCommit {
            tree: run.tree,
            nodes: tree
                .shape
                .nodes
                .iter()
                .map(|n| pb::SbNode {
                    owner: n.owner.map_or(0, |o| o + 1),
                    split_id: n.split_id,
                    left: n.left,
                    right: n.right,
                })
                .collect(),
            last: false,
            keep: 0,
        };
        run.finished = Some(tree);
        run.committing = self.holders.iter().cloned().collect();
        for h in &self.holders {
            send(out, std::slice::from_ref(h), pb::sb_payload::Body::Commit(commit.clone()));
        }
        if self.holders.is_empty() {
            return self.committed(ctx, rng, out);
        }
        Ok(())
    }

    /// Every holder kept the tree: keep it here, report its figures, go on.
    fn committed(
        &mut self,
        ctx: &mut PartyCtx<'_>,
        rng: &mut CsRng,
        out: &mut StageRoleOut<'_>,
    ) -> Result<(), String> {
        let run = self.run.take().ok_or("no tree")?;
        let tree = run.finished.ok_or("no finished tree")?;
        let leaves = tree.shape.n_leaves();
        self.kept.trees.push(tree);
        let (auc_v, ks_v, loss) = self.figures();
        if let Some(l) = loss {
            self.kept.history.push(l);
        }
        let json = serde_json::to_string(&self.kept).map_err(|e| e.to_string())?;
        ctx.kept.insert(KEPT_STATE.into(), json);
        out.out.checkpoint = true;
        let done = self.kept.trees.len();
        tracing::info!(tree = done, valid_auc = auc_v, leaves, "secureboost: tree kept");
        report(
            out,
            pb::sb_report::Body::Tree(pb::SbTreeDone {
                trees: done as u32,
                total: self.params.n_trees as u32,
                auc: auc_v,
                ks: ks_v,
                log_loss: loss.unwrap_or(f64::NAN),
                leaves: leaves as u32,
            }),
        );
        self.next_tree(ctx, rng, out)
    }

    /// AUC, KS and log loss of the current scores on the validation rows (NaN without them).
    fn figures(&self) -> (f64, f64, Option<f64>) {
        if self.valid.is_empty() {
            return (f64::NAN, f64::NAN, None);
        }
        let s: Vec<f64> = self.valid.iter().map(|&t| self.kept.scores[t as usize]).collect();
        let y: Vec<f64> = self.valid.iter().map(|&t| self.y[t as usize]).collect();
        let p: Vec<f64> = s.iter().map(|&x| fedcredit_models::logistic::sigmoid(x)).collect();
        (auc(&s, &y).unwrap_or(f64::NAN), ks(&s, &y).unwrap_or(f64::NAN), log_loss(&p, &y).ok())
    }

    /// Training is over: keep the best trees (early stopping) or all, tell the holders.
    fn finish(&mut self, ctx: &mut PartyCtx<'_>, out: &mut StageRoleOut<'_>) -> Result<(), String> {
        let keep = match self.sb.early_stopping_rounds {
            Some(_) if !self.kept.history.is_empty() => best_round(&self.kept.history) + 1,
            _ => self.kept.trees.len(),
        };
        self.kept.trees.truncate(keep);
        for h in &self.holders {
            send(
                out,
                std::slice::from_ref(h),
                pb::sb_payload::Body::Commit(pb::SbCommit {
                    tree: keep as u32,
                    nodes: Vec::new(),
                    last: true,
                    keep: keep as u32,
                }),
            );
        }
        let part = LabelPart {
            me: self.me,
            parties: self.parties.iter().map(|p| p.0.clone()).collect(),
            bins: Bins::of(&self.mapper),
            base_score: self.base_score,
            trees: std::mem::take(&mut self.kept.trees),
        };
        let own_splits = part
            .trees
            .iter()
            .flat_map(|t| t.splits.iter())
            .filter(|s| matches!(s, Some(LabelSplit::Own { .. })))
            .count() as u32;
        let model = PartyModel::Gbdt { part: Box::new(part.into()) };
        let json = serde_json::to_string(&model).map_err(|e| e.to_string())?;
        ctx.kept.insert(KEPT_MODEL.into(), json);
        ctx.kept.remove(KEPT_STATE);
        report(
            out,
            pb::sb_report::Body::Done(pb::SbDone {
                trees: keep as u32,
                splits: own_splits,
                summary: format!("{keep} trees, {own_splits} splits of its own"),
            }),
        );
        self.done = true;
        Ok(())
    }
}

/// The round with the lowest validation log loss (the first on ties).
fn best_round(history: &[f64]) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (i, &l) in history.iter().enumerate() {
        if l < best.0 {
            best = (l, i);
        }
    }
    best.1
}

/// Gradient-based one-side sampling (Ke et al., LightGBM, NeurIPS 2017, Alg. 2; SecureBoost+
/// §4.3) over the round's `sample`: keeps the `goss_top` share with the largest |g|, draws a
/// `goss_other` share of the rest and weights those by `(1 − top)/other`. Seeded by the job's
/// seed and the tree, so a resumed job draws the same rows.
fn goss(
    sb: &SbParams,
    seed: u64,
    tree: u32,
    sample: &[usize],
    grad: &mut [f64],
    hess: &mut [f64],
    active: &mut [bool],
) {
    let m = sample.len();
    let top = ((m as f64 * sb.goss_top).round() as usize).clamp(1, m);
    let other = ((m as f64 * sb.goss_other).round() as usize).min(m - top);
    let mut by_grad = sample.to_vec();
    by_grad.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()).then(a.cmp(&b)));
    for &r in &by_grad[..top] {
        active[r] = true;
    }
    let mut rest = by_grad[top..].to_vec();
    rest.sort_unstable();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (u64::from(tree) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rest.shuffle(&mut rng);
    let w = (1.0 - sb.goss_top) / sb.goss_other;
    for &r in &rest[..other] {
        active[r] = true;
        grad[r] *= w;
        hess[r] *= w;
    }
}
