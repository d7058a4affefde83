//! The sans-IO, level-wise core of depth-wise tree growth (Chen & Guestrin, "XGBoost", KDD 2016,
//! Alg. 3 with histograms; Ke et al., "LightGBM", NeurIPS 2017, histogram subtraction).
//!
//! [`TreeGrowth`] holds a tree being grown and knows nothing about rows: it asks for the
//! histograms of some nodes ([`TreeGrowth::wanted`]), and given them
//! ([`TreeGrowth::absorb`]) it derives the siblings by subtraction (parent − smaller child),
//! finds the best split of every open node of the level with [`find_best_split`], applies the
//! `max_leaves` budget, creates the children and decides which histograms the next level needs:
//! the smaller child of every split whose children may split again. Which child is smaller is
//! known from the split's counts alone, so the plan needs no rows.
//!
//! Both the centralized grower (`grow.rs`, which builds the wanted histograms from its own
//! rows) and the horizontal federated trainer (which gets them as secure sums of the banks'
//! histograms) drive this one state machine, so the federated model equals the centralized
//! one by construction, up to the rounding of the sums.

use serde::{Deserialize, Serialize};

use super::bins::BinKind;
use super::histogram::{GradStats, Histogram};
use super::split::{SplitCandidate, SplitParams, find_best_split, leaf_weight};
use crate::ModelError;

/// A node of a tree being grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowNode {
    /// Sums over the node's rows.
    pub stats: GradStats,
    /// Depth (the root has depth 0).
    pub depth: usize,
    /// The split, if the node is internal.
    pub split: Option<GrowSplit>,
    /// Leaf value (learning rate included) once growth is finished; 0 for internal nodes.
    pub value: f64,
}

/// A split of a tree being grown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowSplit {
    /// The winning candidate (feature, bin rule, default direction, child sums).
    pub cand: SplitCandidate,
    /// Index of the left child.
    pub left: usize,
    /// Index of the right child.
    pub right: usize,
}

/// A tree in bin space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrownTree {
    /// Nodes, root first; children come after their parent.
    pub nodes: Vec<GrowNode>,
}

impl GrownTree {
    /// The leaf a row reaches, given its bin of each feature (`bin_of(feature)`).
    pub fn leaf_of(&self, mut bin_of: impl FnMut(usize) -> u8) -> usize {
        leaf_of(&self.nodes, &mut bin_of)
    }
}

/// The node without a split that a row reaches in `nodes` (a finished or partial tree).
pub fn leaf_of(nodes: &[GrowNode], bin_of: &mut impl FnMut(usize) -> u8) -> usize {
    let mut i = 0;
    while let Some(s) = nodes.get(i).and_then(|n| n.split.as_ref()) {
        i = if s.cand.goes_left(bin_of(s.cand.feature)) { s.left } else { s.right };
    }
    i
}

/// Growth settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GrowParams {
    /// Split constraints and regularisation.
    pub split: SplitParams,
    /// Levels of splits.
    pub max_depth: usize,
    /// Leaf budget per tree.
    pub max_leaves: Option<usize>,
    /// Shrinkage of leaf values.
    pub learning_rate: f64,
}

/// A pair of children whose histograms the next level needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// The smaller child (its histogram is built from rows).
    small: usize,
    /// The larger child (parent − smaller).
    large: usize,
    small_open: bool,
    left_smaller: bool,
    /// The parent's histogram, kept for the subtraction when the large child is open.
    parent: Option<Histogram>,
}

/// A tree growing level by level; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeGrowth {
    params: GrowParams,
    kinds: Vec<BinKind>,
    features: Vec<usize>,
    nodes: Vec<GrowNode>,
    n_leaves: usize,
    /// `None` before the root histogram arrives; `Some(pairs)` afterwards.
    pending: Option<Vec<Pending>>,
    wanted: Vec<usize>,
    done: bool,
}

impl TreeGrowth {
    /// Starts a tree over the root sums `root`, splitting on `features` (ascending) whose bins
    /// are read as `kinds`.
    pub fn new(
        params: GrowParams,
        kinds: Vec<BinKind>,
        features: Vec<usize>,
        root: GradStats,
    ) -> Self {
        let nodes = vec![GrowNode { stats: root, depth: 0, split: None, value: 0.0 }];
        let mut t = Self {
            params,
            kinds,
            features,
            nodes,
            n_leaves: 1,
            pending: None,
            wanted: Vec::new(),
            done: false,
        };
        if params.max_depth > 0 && t.can_split(&root) {
            t.wanted.push(0);
        } else {
            t.finish_leaves();
        }
        t
    }

    fn can_split(&self, s: &GradStats) -> bool {
        let p = &self.params.split;
        s.count >= p.min_data_in_leaf.max(1).saturating_mul(2)
            && s.sum_hess >= 2.0 * p.min_child_weight
    }

    /// The features splits may use.
    pub fn features(&self) -> &[usize] {
        &self.features
    }

    /// The nodes so far (children after parents; leaf values are set once done).
    pub fn nodes(&self) -> &[GrowNode] {
        &self.nodes
    }

    /// Nodes whose histograms [`TreeGrowth::absorb`] needs next, in order; empty once done.
    pub fn wanted(&self) -> &[usize] {
        &self.wanted
    }

    /// Whether the tree is finished.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The finished tree (`None` while growing).
    pub fn tree(&self) -> Option<GrownTree> {
        self.done.then(|| GrownTree { nodes: self.nodes.clone() })
    }

    /// Takes the histograms of the [`wanted`](Self::wanted) nodes, in order (only the
    /// tree's features are read), and grows one level. Returns histograms no longer needed
    /// (for reuse).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the number of histograms or a layout does not fit.
    pub fn absorb(&mut self, hists: Vec<Histogram>) -> Result<Vec<Histogram>, ModelError> {
        if self.done {
            return Err(ModelError::Shape("tree is finished; no histograms wanted".into()));
        }
        if hists.len() != self.wanted.len() {
            return Err(ModelError::Shape(format!(
                "{} histograms for {} wanted nodes",
                hists.len(),
                self.wanted.len()
            )));
        }
        let mut free = Vec::new();
        // The open nodes of this level, with their histograms, in node order.
        let mut level: Vec<(usize, Histogram)> = Vec::new();
        match self.pending.take() {
            None => {
                let h = hists
                    .into_iter()
                    .next()
                    .ok_or_else(|| ModelError::Shape("the root histogram is missing".into()))?;
                level.push((0, h));
            }
            Some(pairs) => {
                for (p, small_hist) in pairs.into_iter().zip(hists) {
                    let mut pair = [None, None];
                    let (small_slot, large_slot) = if p.left_smaller { (0, 1) } else { (1, 0) };
                    if let Some(mut parent) = p.parent {
                        if parent.bins_per_feature() != small_hist.bins_per_feature() {
                            return Err(ModelError::Shape(
                                "child histogram layout differs from its parent's".into(),
                            ));
                        }
                        parent.subtract_features(&small_hist, &self.features);
                        pair[large_slot] = Some((p.large, parent));
                    }
                    if p.small_open {
                        pair[small_slot] = Some((p.small, small_hist));
                    } else {
                        free.push(small_hist);
                    }
                    level.extend(pair.into_iter().flatten());
                }
            }
        }
        self.wanted.clear();
        let mut cands: Vec<(usize, Histogram, SplitCandidate)> = Vec::new();
        for (ni, hist) in level {
            let found = find_best_split(
                &hist,
                self.nodes[ni].stats,
                &self.params.split,
                &self.kinds,
                &self.features,
            );
            match found {
                Some(c) => cands.push((ni, hist, c)),
                None => free.push(hist),
            }
        }
        if let Some(max_leaves) = self.params.max_leaves {
            let budget = max_leaves.saturating_sub(self.n_leaves);
            if cands.len() > budget {
                // Highest gain first; ties keep node order (stable sort).
                cands.sort_by(|a, b| b.2.gain.total_cmp(&a.2.gain));
                for (_, hist, _) in cands.drain(budget..) {
                    free.push(hist);
                }
                cands.sort_by_key(|c| c.0);
            }
        }
        let mut pairs = Vec::new();
        for (ni, hist, cand) in cands {
            let depth = self.nodes[ni].depth + 1;
            let children_open = depth < self.params.max_depth;
            let li = self.nodes.len();
            let ri = li + 1;
            let (ls, rs) = (cand.left, cand.right);
            self.nodes.push(GrowNode { stats: ls, depth, split: None, value: 0.0 });
            self.nodes.push(GrowNode { stats: rs, depth, split: None, value: 0.0 });
            self.nodes[ni].split = Some(GrowSplit { cand, left: li, right: ri });
            self.n_leaves += 1;
            let (l_open, r_open) =
                (children_open && self.can_split(&ls), children_open && self.can_split(&rs));
            if !(l_open || r_open) {
                free.push(hist);
                continue;
            }
            let left_smaller = ls.count <= rs.count;
            let (small, large, small_open, large_open) =
                if left_smaller { (li, ri, l_open, r_open) } else { (ri, li, r_open, l_open) };
            let parent = if large_open {
                Some(hist)
            } else {
                free.push(hist);
                None
            };
            self.wanted.push(small);
            pairs.push(Pending { small, large, small_open, left_smaller, parent });
        }
        if pairs.is_empty() {
            self.finish_leaves();
        } else {
            self.pending = Some(pairs);
        }
        Ok(free)
    }

    /// Stops growing now: every node without a split becomes a leaf. A federated tree whose
    /// contributors change mid-tree ends this way (its parent histograms would no longer
    /// subtract), rather than asking the same parties for the same sums again.
    pub fn finish_now(&mut self) {
        self.pending = None;
        self.finish_leaves();
    }

    fn finish_leaves(&mut self) {
        // A leaf made by a many-vs-many categorical split is weighted with λ + cat_l2.
        let mut extra = vec![0.0; self.nodes.len()];
        for node in &self.nodes {
            if let Some(s) = &node.split {
                extra[s.left] = s.cand.extra_l2;
                extra[s.right] = s.cand.extra_l2;
            }
        }
        for (node, extra) in self.nodes.iter_mut().zip(extra) {
            if node.split.is_none() {
                node.value = leaf_weight(node.stats, self.params.split.lambda_l2 + extra)
                    * self.params.learning_rate;
            }
        }
        self.wanted.clear();
        self.done = true;
    }
}
