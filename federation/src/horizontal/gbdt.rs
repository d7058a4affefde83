//! Horizontal gradient-boosted trees (SecureBoost-free horizontal histogram GBDT: each bank
//! builds gradient histograms of its own rows, the coordinator sees only their secure sum;
//! Chen & Guestrin, KDD 2016; Ke et al., NeurIPS 2017; the horizontal scheme of Li et al.,
//! "Practical Federated Gradient Boosting Decision Trees", AAAI 2020, with secure sums).
//!
//! Rounds: census and grid sketch ([`super::prep`]) → bin edges with the centralized rule
//! (`BinMapper::from_weighted_values`) and base score from pooled positives/rows → per tree,
//! one round for the root (its sums and histogram) and then one per level, each holding the
//! per-bin `(grad, hess, count)` sums of the smaller child of every split whose children may
//! split again. The trainer drives `gbdt::TreeGrowth`, the same level-wise core the centralized
//! `gbdt::fit` uses, so with the same edges the federated model equals the centralized model on
//! the pooled rows up to the rounding of the sums. The edges, the base score and each finished
//! tree (in bin space) reach the banks once, as model updates they keep (see
//! [`super::sync`]); a level's task carries only the partial tree. A party caches its binned
//! matrix and scores by number of trees.
//!
//! When the contributors of a level differ from those the tree started with, the tree ends at
//! that level (histogram subtraction needs the same rows, and re-asking the remaining banks
//! for the same sums would reveal the missing bank's by difference); the next tree starts
//! with the banks now contributing. Row subsampling is refused;
//! column subsampling uses the trainer's seeded stream exactly as the centralized fit does.
//!
//! What the coordinator learns, per level: pooled per-bin gradient, hessian and row sums of
//! each requested node (on top of the preprocessing, see [`super::prep`]).

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use fedcredit_models::gbdt::{
    BinKind, BinMapper, BinSplit, BinnedMatrix, GbdtModel, GbdtParams, GradStats, GrownTree,
    Histogram, TreeGrowth, build_histogram, gradient_pair, grown_to_tree,
};
use fedcredit_models::{Dataset, FeatureSpec};

use super::evaluate::{self, EvalTask};
use super::prep::{self, Prep};
use super::{Aggregate, Outcome, Progress, Request, Task, TrainError};
use crate::ids::PartyId;

/// `[model] kind = "gbdt"`: the centralized `GbdtParams` plus the validation cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtSpec {
    /// Trees; default 100.
    pub n_trees: usize,
    /// Shrinkage; default 0.1.
    pub learning_rate: f64,
    /// Levels of splits; default 5.
    pub max_depth: usize,
    /// Leaf budget per tree.
    pub max_leaves: Option<usize>,
    /// Value bins per feature; default 255.
    pub max_bins: usize,
    /// Minimum hessian per leaf; default 1e-3.
    pub min_child_weight: f64,
    /// Minimum rows per leaf; default 20.
    pub min_data_in_leaf: usize,
    /// L2 on leaf weights; default 0.
    pub lambda_l2: f64,
    /// Minimum split gain; default 0.
    pub min_split_gain: f64,
    /// Must stay 1: row subsampling is refused in federated mode.
    pub row_subsample: f64,
    /// Share of features per tree; default 1.
    pub col_subsample: f64,
    /// Categorical splits: rows per group of categories; default 100 (LightGBM's).
    pub min_data_per_group: usize,
    /// Categorical splits: smoothing of the category order; default 10 (LightGBM's).
    pub cat_smooth: f64,
    /// Categorical splits: extra L2 on the children; default 10 (LightGBM's).
    pub cat_l2: f64,
    /// Categorical splits: most categories on the left; default 32 (LightGBM's).
    pub max_cat_threshold: usize,
    /// Categorical features with at most this many bins split one-vs-rest; default 4.
    pub max_cat_to_onehot: usize,
    /// Seed of the column sampling.
    pub seed: u64,
    /// Validation metrics every this many trees (0 = only at the end); default 10.
    pub eval_every: usize,
}

impl Default for GbdtSpec {
    fn default() -> Self {
        let p = GbdtParams::default();
        Self {
            n_trees: p.n_trees,
            learning_rate: p.learning_rate,
            max_depth: p.max_depth,
            max_leaves: p.max_leaves,
            max_bins: p.max_bins,
            min_child_weight: p.min_child_weight,
            min_data_in_leaf: p.min_data_in_leaf,
            lambda_l2: p.lambda_l2,
            min_split_gain: p.min_split_gain,
            row_subsample: p.row_subsample,
            col_subsample: p.col_subsample,
            min_data_per_group: p.min_data_per_group,
            cat_smooth: p.cat_smooth,
            cat_l2: p.cat_l2,
            max_cat_threshold: p.max_cat_threshold,
            max_cat_to_onehot: p.max_cat_to_onehot,
            seed: p.seed,
            eval_every: 10,
        }
    }
}

impl GbdtSpec {
    /// The centralized parameters.
    pub fn params(&self) -> GbdtParams {
        GbdtParams {
            n_trees: self.n_trees,
            learning_rate: self.learning_rate,
            max_depth: self.max_depth,
            max_leaves: self.max_leaves,
            max_bins: self.max_bins,
            min_child_weight: self.min_child_weight,
            min_data_in_leaf: self.min_data_in_leaf,
            lambda_l2: self.lambda_l2,
            min_split_gain: self.min_split_gain,
            row_subsample: self.row_subsample,
            col_subsample: self.col_subsample,
            min_data_per_group: self.min_data_per_group,
            cat_smooth: self.cat_smooth,
            cat_l2: self.cat_l2,
            max_cat_threshold: self.max_cat_threshold,
            max_cat_to_onehot: self.max_cat_to_onehot,
            early_stopping_rounds: None,
            seed: self.seed,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.row_subsample != 1.0 {
            return Err((
                "row_subsample".into(),
                format!(
                    "is {}; row subsampling is not supported in federated training (every \
                     bank's rows enter every histogram); use col_subsample instead",
                    self.row_subsample
                ),
            ));
        }
        self.params().validate().map_err(|e| match e {
            fedcredit_models::ModelError::InvalidParam { name, reason } => (name.into(), reason),
            other => ("gbdt".into(), other.to_string()),
        })
    }
}

/// A node of a tree in bin space, as sent to the parties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BinNode {
    /// An internal node.
    Split {
        /// Feature.
        f: usize,
        /// Bin rule.
        rule: BinSplit,
        /// The feature's missing bin.
        miss: u8,
        /// Missing values go left.
        dl: bool,
        /// Left child.
        l: usize,
        /// Right child.
        r: usize,
    },
    /// A leaf (or a node not split yet) with its value.
    Leaf {
        /// Leaf value, learning rate included.
        v: f64,
    },
}

fn bin_nodes(nodes: &[fedcredit_models::gbdt::GrowNode]) -> Vec<BinNode> {
    nodes
        .iter()
        .map(|n| match &n.split {
            Some(s) => BinNode::Split {
                f: s.cand.feature,
                rule: s.cand.split.clone(),
                miss: s.cand.missing_bin,
                dl: s.cand.default_left,
                l: s.left,
                r: s.right,
            },
            None => BinNode::Leaf { v: n.value },
        })
        .collect()
}

/// The node a row of `binned` reaches (bounded walk: a malformed tree cannot loop).
pub(crate) fn route(nodes: &[BinNode], binned: &BinnedMatrix, r: usize) -> usize {
    let mut i = 0;
    for _ in 0..=nodes.len() {
        match nodes.get(i) {
            Some(BinNode::Split { f, rule, miss, dl, l, r: right }) => {
                let b = binned.column(*f)[r];
                let left = if b == *miss {
                    *dl
                } else {
                    match rule {
                        BinSplit::Numeric { threshold_bin } => b <= *threshold_bin,
                        BinSplit::Categorical { left_bins } => left_bins.binary_search(&b).is_ok(),
                    }
                };
                i = if left { *l } else { *right };
            }
            _ => return i,
        }
    }
    i
}

/// Build histograms for some nodes of the current tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtTask {
    /// Bin edges (`BinMapper::from_edges` format).
    pub edges: Vec<Vec<f64>>,
    /// Initial raw score.
    pub base_score: f64,
    /// Finished trees.
    pub trees: Vec<Vec<BinNode>>,
    /// The tree being grown.
    pub partial: Vec<BinNode>,
    /// Nodes whose histograms are wanted, in order.
    pub nodes: Vec<usize>,
    /// Features in the histograms (ascending).
    pub features: Vec<usize>,
    /// Prefix the vector with the root's `(grad, hess, count)` sums.
    pub with_root: bool,
}

/// A party's cached derived data for a GBDT job.
#[derive(Debug, Clone)]
pub(crate) struct GbdtCache {
    edges: Vec<Vec<f64>>,
    base_score: f64,
    binned: BinnedMatrix,
    n_trees: usize,
    scores: Vec<f64>,
}

/// Elements of a histogram vector.
fn hist_len(bins_per_feature: &[usize], features: &[usize], nodes: usize, root: bool) -> usize {
    let per: usize = features.iter().map(|&f| bins_per_feature[f] * 3).sum();
    per * nodes + if root { 3 } else { 0 }
}

/// A party's vector for `task`.
pub(crate) fn contribute(
    cache: &mut Option<GbdtCache>,
    data: &Dataset,
    task: &GbdtTask,
) -> Result<Vec<f64>, TrainError> {
    let stale =
        cache.as_ref().is_none_or(|c| c.edges != task.edges || c.base_score != task.base_score);
    if stale {
        let mapper = BinMapper::from_edges(data.features.specs.clone(), task.edges.clone())?;
        let binned = mapper.bin(&data.features)?;
        *cache = Some(GbdtCache {
            edges: task.edges.clone(),
            base_score: task.base_score,
            binned,
            n_trees: 0,
            scores: vec![task.base_score; data.n_rows()],
        });
    }
    let c = cache.as_mut().ok_or_else(|| TrainError::Protocol("no cache".into()))?;
    if c.n_trees > task.trees.len() {
        c.scores.fill(task.base_score);
        c.n_trees = 0;
    }
    for tree in &task.trees[c.n_trees..] {
        for (r, s) in c.scores.iter_mut().enumerate() {
            if let Some(BinNode::Leaf { v }) = tree.get(route(tree, &c.binned, r)) {
                *s += v;
            }
        }
    }
    c.n_trees = task.trees.len();
    let bpf = c.binned.bins_per_feature().to_vec();
    if let Some(&f) = task.features.iter().find(|&&f| f >= bpf.len()) {
        return Err(TrainError::Protocol(format!("task names feature {f} of {}", bpf.len())));
    }
    let n = data.n_rows();
    let (mut grad, mut hess) = (vec![0.0; n], vec![0.0; n]);
    for r in 0..n {
        (grad[r], hess[r]) = gradient_pair(c.scores[r], data.label[r]);
    }
    let slot: BTreeMap<usize, usize> =
        task.nodes.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); task.nodes.len()];
    for r in 0..n {
        if let Some(&k) = slot.get(&route(&task.partial, &c.binned, r)) {
            rows[k].push(r as u32);
        }
    }
    let mut out =
        Vec::with_capacity(hist_len(&bpf, &task.features, task.nodes.len(), task.with_root));
    if task.with_root {
        let all: Vec<u32> = (0..n as u32).collect();
        let s = GradStats::from_rows(&all, &grad, &hess);
        out.extend([s.sum_grad, s.sum_hess, f64::from(s.count)]);
    }
    let mut hist = Histogram::new(&bpf)?;
    for node_rows in &rows {
        build_histogram(&c.binned, node_rows, &grad, &hess, &task.features, &mut hist)?;
        for &f in &task.features {
            for b in hist.feature(f) {
                out.extend([b.sum_grad, b.sum_hess, f64::from(b.count)]);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Current {
    features: Vec<usize>,
    contributors: Vec<PartyId>,
    growth: Option<TreeGrowth>,
}

/// What the last request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Pending {
    Prep,
    Eval,
    Root,
    Level,
}

/// The coordinator's side of a GBDT job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtTrainer {
    spec: GbdtSpec,
    specs: Vec<FeatureSpec>,
    clip: f64,
    prep: Prep,
    edges: Option<Vec<Vec<f64>>>,
    bins_per_feature: Vec<usize>,
    kinds: Vec<BinKind>,
    base_score: f64,
    n_train: f64,
    /// Rows under the root of the latest tree: below `n_train` once a bank has left.
    #[serde(default)]
    last_tree_rows: Option<f64>,
    usable: Option<Vec<usize>>,
    pool: Vec<usize>,
    /// Word position of the column-sampling stream.
    rng_pos: u128,
    /// Finished trees: the checkpoint's log, left out of its state.
    #[serde(skip)]
    trees: Vec<GrownTree>,
    current: Option<Current>,
    eval_pending: bool,
    evaluated_at: Option<usize>,
    metrics: BTreeMap<String, f64>,
    /// Trees ended early because their contributors changed mid-tree.
    cut_short: u64,
    rounds: u64,
}

fn kinds_of(specs: &[FeatureSpec]) -> Vec<BinKind> {
    specs
        .iter()
        .map(|s| if s.is_categorical() { BinKind::Categorical } else { BinKind::Numeric })
        .collect()
}

impl GbdtTrainer {
    pub(crate) fn new(spec: &GbdtSpec, specs: Vec<FeatureSpec>, clip: f64) -> Self {
        Self {
            spec: spec.clone(),
            prep: Prep::new(specs.clone(), false, clip),
            kinds: kinds_of(&specs),
            specs,
            clip,
            edges: None,
            bins_per_feature: Vec::new(),
            base_score: 0.0,
            n_train: 0.0,
            last_tree_rows: None,
            usable: None,
            pool: Vec::new(),
            rng_pos: 0,
            trees: Vec::new(),
            current: None,
            eval_pending: false,
            evaluated_at: None,
            metrics: BTreeMap::new(),
            cut_short: 0,
            rounds: 0,
        }
    }

    fn pending(&self) -> Pending {
        if !self.prep.is_done() {
            Pending::Prep
        } else if self.eval_pending {
            Pending::Eval
        } else if self.current.as_ref().is_some_and(|c| c.growth.is_some()) {
            Pending::Level
        } else {
            Pending::Root
        }
    }

    /// The model so far.
    fn model(&self) -> Result<GbdtModel, TrainError> {
        let edges = self.edges.clone().ok_or_else(|| TrainError::Protocol("no edges".into()))?;
        let mapper = BinMapper::from_edges(self.specs.clone(), edges)?;
        Ok(GbdtModel {
            features: self.specs.clone(),
            base_score: self.base_score,
            trees: self.trees.iter().map(|t| grown_to_tree(t, &mapper)).collect(),
            best_iteration: None,
            valid_logloss: Vec::new(),
            params: self.spec.params(),
        })
    }

    fn task(
        &self,
        partial: Vec<BinNode>,
        nodes: Vec<usize>,
        features: Vec<usize>,
        with_root: bool,
    ) -> Box<GbdtTask> {
        Box::new(GbdtTask {
            edges: self.edges.clone().unwrap_or_default(),
            base_score: self.base_score,
            trees: self.trees.iter().map(|t| bin_nodes(&t.nodes)).collect(),
            partial,
            nodes,
            features,
            with_root,
        })
    }

    fn all_features(&self) -> Vec<usize> {
        (0..self.specs.len()).collect()
    }

    pub(crate) fn next_request(&mut self) -> Result<Request, TrainError> {
        match self.pending() {
            Pending::Prep => self
                .prep
                .next()
                .map(Request::Aggregate)
                .ok_or_else(|| TrainError::Protocol("preprocessing has no next round".into())),
            Pending::Eval => Ok(Request::Aggregate(Aggregate {
                task: Task::Evaluate(EvalTask::Gbdt {
                    edges: self.edges.clone().unwrap_or_default(),
                    base_score: self.base_score,
                    trees: self.trees.iter().map(|t| bin_nodes(&t.nodes)).collect(),
                }),
                vector_len: evaluate::vector_len(),
                clip: self.clip,
                what: format!("validation after {} trees", self.trees.len()),
            })),
            Pending::Root | Pending::Level if self.trees.len() >= self.spec.n_trees => {
                let mut metrics = self.metrics.clone();
                // `n_train`: the rows the finished model was last fitted on (fewer than at the
                // start when a bank left mid-job); `n_train_start`: the rows of the census.
                metrics.insert("n_train".into(), self.last_tree_rows.unwrap_or(self.n_train));
                metrics.insert("n_train_start".into(), self.n_train);
                metrics.insert("trees".into(), self.trees.len() as f64);
                metrics.insert("trees_cut_short".into(), self.cut_short as f64);
                metrics.insert("rounds".into(), self.rounds as f64);
                let artifact = fedcredit_models::artifact::ModelArtifact::new(
                    fedcredit_models::artifact::Model::Gbdt(self.model()?),
                    self.specs.clone(),
                );
                Ok(Request::Finished(Box::new(Outcome {
                    artifact_json: Some(artifact.to_json()?),
                    metrics,
                })))
            }
            Pending::Root => {
                let features = match &self.usable {
                    Some(_) => {
                        self.current.as_ref().map(|c| c.features.clone()).unwrap_or_default()
                    }
                    None => self.all_features(),
                };
                let len = hist_len(&self.bins_per_feature, &features, 1, true);
                Ok(Request::Aggregate(Aggregate {
                    task: Task::Gbdt(self.task(
                        vec![BinNode::Leaf { v: 0.0 }],
                        vec![0],
                        features,
                        true,
                    )),
                    vector_len: len,
                    clip: self.clip,
                    what: format!("tree {}/{}, root", self.trees.len() + 1, self.spec.n_trees),
                }))
            }
            Pending::Level => {
                let cur =
                    self.current.as_ref().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                let growth =
                    cur.growth.as_ref().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                let nodes = growth.wanted().to_vec();
                let depth = nodes.first().map_or(0, |&n| growth.nodes()[n].depth);
                let len = hist_len(&self.bins_per_feature, &cur.features, nodes.len(), false);
                Ok(Request::Aggregate(Aggregate {
                    task: Task::Gbdt(self.task(
                        bin_nodes(growth.nodes()),
                        nodes,
                        cur.features.clone(),
                        false,
                    )),
                    vector_len: len,
                    clip: self.clip,
                    what: format!(
                        "tree {}/{}, level {depth}",
                        self.trees.len() + 1,
                        self.spec.n_trees
                    ),
                }))
            }
        }
    }

    /// Histograms from a summed vector (features not listed stay zero).
    fn read_hists(
        &self,
        sum: &[f64],
        features: &[usize],
        n: usize,
    ) -> Result<Vec<Histogram>, TrainError> {
        let mut out = Vec::with_capacity(n);
        let mut at = 0;
        for _ in 0..n {
            let mut h = Histogram::new(&self.bins_per_feature)?;
            for &f in features {
                for b in h.feature_mut(f) {
                    *b = GradStats {
                        sum_grad: sum[at],
                        sum_hess: sum[at + 1],
                        count: prep::count(sum[at + 2]) as u32,
                    };
                    at += 3;
                }
            }
            out.push(h);
        }
        Ok(out)
    }

    /// Draws the next tree's features exactly as the centralized fit does.
    fn draw_features(&mut self) -> Vec<usize> {
        let usable = self.usable.clone().unwrap_or_default();
        let n_cols = ((usable.len() as f64 * self.spec.col_subsample).round() as usize)
            .clamp(usable.len().min(1), usable.len());
        if n_cols >= usable.len() {
            return usable;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.spec.seed);
        rng.set_word_pos(self.rng_pos);
        for i in 0..n_cols {
            let j = rng.random_range(i..self.pool.len());
            self.pool.swap(i, j);
        }
        self.rng_pos = rng.get_word_pos();
        let mut feats = self.pool[..n_cols].to_vec();
        feats.sort_unstable();
        feats
    }

    /// Finished trees from the `from`-th on, one log entry each.
    pub(crate) fn log_entries(&self, from: usize) -> Vec<Vec<u8>> {
        self.trees.iter().skip(from).map(|t| serde_json::to_vec(t).unwrap_or_default()).collect()
    }

    /// Puts back the finished trees of a checkpoint's log.
    pub(crate) fn restore_log(&mut self, log: &[Vec<u8>]) -> Result<(), TrainError> {
        self.trees = log
            .iter()
            .enumerate()
            .map(|(i, e)| {
                serde_json::from_slice(e).map_err(|e| {
                    TrainError::Protocol(format!("checkpoint log entry {i} (tree {}): {e}", i + 1))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn finish_tree(&mut self, tree: GrownTree) {
        self.trees.push(tree);
        self.current = None;
        let t = self.trees.len();
        let every = self.spec.eval_every;
        if (every > 0 && t.is_multiple_of(every)) || t >= self.spec.n_trees {
            self.eval_pending = true;
        }
        if t < self.spec.n_trees {
            let features = self.draw_features();
            self.current = Some(Current { features, contributors: Vec::new(), growth: None });
        }
    }

    pub(crate) fn absorb(
        &mut self,
        sum: &[f64],
        contributors: &[PartyId],
    ) -> Result<(), TrainError> {
        let mut who = contributors.to_vec();
        who.sort();
        match self.pending() {
            Pending::Prep => {
                self.prep.absorb(sum)?;
                if self.prep.is_done() {
                    self.finish_prep()?;
                }
            }
            Pending::Eval => {
                self.metrics.extend(evaluate::metrics_from_sum(sum)?);
                self.eval_pending = false;
                self.evaluated_at = Some(self.trees.len());
            }
            Pending::Root => {
                if self.trees.len() >= self.spec.n_trees {
                    return Err(TrainError::Protocol("training is finished".into()));
                }
                let first = self.usable.is_none();
                let features = if first {
                    self.all_features()
                } else {
                    self.current.as_ref().map(|c| c.features.clone()).unwrap_or_default()
                };
                let want = hist_len(&self.bins_per_feature, &features, 1, true);
                if sum.len() != want {
                    return Err(TrainError::Protocol(format!(
                        "root sum has {} elements, expected {want}",
                        sum.len()
                    )));
                }
                let root = GradStats {
                    sum_grad: sum[0],
                    sum_hess: sum[1],
                    count: prep::count(sum[2]) as u32,
                };
                self.last_tree_rows = Some(f64::from(root.count));
                let mut hists = self.read_hists(&sum[3..], &features, 1)?;
                if first {
                    let h = &hists[0];
                    let usable: Vec<usize> = (0..self.specs.len())
                        .filter(|&f| h.feature(f).iter().filter(|b| b.count > 0).count() > 1)
                        .collect();
                    self.pool = usable.clone();
                    self.usable = Some(usable);
                    let features = self.draw_features();
                    self.current =
                        Some(Current { features, contributors: Vec::new(), growth: None });
                }
                let cur =
                    self.current.as_mut().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                let mut growth = TreeGrowth::new(
                    self.spec.params().grow_params(),
                    self.kinds.clone(),
                    cur.features.clone(),
                    root,
                );
                if growth.wanted() == [0] {
                    growth.absorb(std::mem::take(&mut hists))?;
                }
                cur.contributors = who;
                if growth.is_done() {
                    let tree = growth.tree().ok_or_else(|| TrainError::Protocol("tree".into()))?;
                    self.finish_tree(tree);
                } else {
                    cur.growth = Some(growth);
                }
            }
            Pending::Level => {
                let cur =
                    self.current.as_mut().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                if cur.contributors != who {
                    // Another set of banks: the parent histograms no longer subtract, and
                    // asking the remaining banks for this tree's sums again would let their
                    // difference reveal the missing bank's. The tree ends here, its open
                    // nodes leaves; the next tree starts with the banks now contributing.
                    let growth = cur
                        .growth
                        .as_mut()
                        .ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                    growth.finish_now();
                    let tree = growth.tree().ok_or_else(|| TrainError::Protocol("tree".into()))?;
                    self.cut_short += 1;
                    self.finish_tree(tree);
                    self.rounds += 1;
                    return Ok(());
                }
                let features = cur.features.clone();
                let n = cur.growth.as_ref().map_or(0, |g| g.wanted().len());
                let want = hist_len(&self.bins_per_feature, &features, n, false);
                if sum.len() != want {
                    return Err(TrainError::Protocol(format!(
                        "level sum has {} elements, expected {want}",
                        sum.len()
                    )));
                }
                let hists = self.read_hists(sum, &features, n)?;
                let cur =
                    self.current.as_mut().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                let growth =
                    cur.growth.as_mut().ok_or_else(|| TrainError::Protocol("no tree".into()))?;
                growth.absorb(hists)?;
                if growth.is_done() {
                    let tree = growth.tree().ok_or_else(|| TrainError::Protocol("tree".into()))?;
                    self.finish_tree(tree);
                }
            }
        }
        self.rounds += 1;
        Ok(())
    }

    fn finish_prep(&mut self) -> Result<(), TrainError> {
        let (Some(census), Some(grid)) = (&self.prep.census, &self.prep.grid) else {
            return Err(TrainError::Protocol("preprocessing incomplete".into()));
        };
        let values: Vec<Vec<(f64, u64)>> = grid
            .iter()
            .map(|cells| cells.iter().map(|&(v, e, n)| (v, (e + n) as u64)).collect())
            .collect();
        let mapper =
            BinMapper::from_weighted_values(self.specs.clone(), &values, self.spec.max_bins)?;
        self.bins_per_feature = mapper.bins_per_feature();
        self.edges = Some(mapper.to_edges());
        let mean = census.positives / census.rows;
        self.base_score = (mean / (1.0 - mean)).ln();
        self.n_train = census.rows;
        self.prep.release_grid();
        Ok(())
    }

    /// The bin edges chosen from the sketch, once known.
    pub fn edges(&self) -> Option<&[Vec<f64>]> {
        self.edges.as_deref()
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            stage: if !self.prep.is_done() {
                "binning".into()
            } else {
                format!("tree {}/{}", self.trees.len(), self.spec.n_trees)
            },
            done: self.trees.len() as u64,
            total: self.spec.n_trees as u64,
            loss: self.metrics.get("log_loss").copied(),
            valid_auc: self.metrics.get("auc").copied(),
        }
    }
}
