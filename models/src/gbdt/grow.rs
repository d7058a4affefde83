//! Depth-wise (level by level) growth of one tree on binned data (Chen & Guestrin, "XGBoost",
//! KDD 2016, Alg. 3 with histograms; Ke et al., "LightGBM", NeurIPS 2017, histogram subtraction).
//!
//! Every level is processed as a batch: find the best split of each open node from its
//! histogram, apply the splits (a stable in-place partition of the node's slice of one `u32`
//! row-index array), then build the histogram of the smaller child from its rows, with its
//! gradients gathered once into a contiguous buffer ("ordered gradients"), and obtain the
//! larger child's by subtracting it from the parent's histogram in place. Leaves at the last
//! level need no histogram. This is the shape the federated trainers follow: one histogram
//! exchange per level.
//!
//! With `max_leaves`, the splits of a level are taken in decreasing gain until the leaf budget
//! is spent (XGBoost's depth-wise policy with `max_leaves`).

use super::bins::{BinKind, BinnedMatrix};
use super::histogram::{GradStats, Histogram, build_histogram_ordered};
use super::split::{SplitCandidate, SplitParams, find_best_split, leaf_weight};

/// A node of a tree being grown.
#[derive(Debug, Clone)]
pub(crate) struct GrowNode {
    /// Sums over the node's rows.
    pub stats: GradStats,
    /// The node's rows are `rows[start..start + len]` of the grower.
    pub start: usize,
    /// Number of rows.
    pub len: usize,
    /// The split, if the node is internal.
    pub split: Option<GrowSplit>,
    /// Leaf value (learning rate included); 0 for internal nodes.
    pub value: f64,
}

/// A split of a tree being grown.
#[derive(Debug, Clone)]
pub(crate) struct GrowSplit {
    pub cand: SplitCandidate,
    /// `table[bin]`: whether a row in that bin goes left.
    pub table: [bool; 256],
    pub left: usize,
    pub right: usize,
}

/// A tree in bin space.
#[derive(Debug, Clone)]
pub(crate) struct GrownTree {
    pub nodes: Vec<GrowNode>,
}

impl GrownTree {
    /// Leaf value for row `r` of a binned matrix with the training layout.
    pub fn predict_binned(&self, binned: &BinnedMatrix, r: usize) -> f64 {
        let mut i = 0;
        loop {
            let node = &self.nodes[i];
            match &node.split {
                None => return node.value,
                Some(s) => {
                    let b = binned.column(s.cand.feature)[r];
                    i = if s.table[b as usize] { s.left } else { s.right };
                }
            }
        }
    }
}

/// Growth settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrowParams {
    pub split: SplitParams,
    pub max_depth: usize,
    pub max_leaves: Option<usize>,
    pub learning_rate: f64,
}

/// Reusable buffers for growing trees on one binned matrix.
#[derive(Debug)]
pub(crate) struct Grower<'a> {
    binned: &'a BinnedMatrix,
    kinds: Vec<BinKind>,
    params: GrowParams,
    /// Row indices, partitioned node by node.
    rows: Vec<u32>,
    /// Right-hand rows during a partition.
    scratch: Vec<u32>,
    /// Gathered `[grad, hess]` of the node being built.
    gh: Vec<[f64; 2]>,
    /// Free histograms.
    pool: Vec<Histogram>,
    template: Histogram,
}

impl<'a> Grower<'a> {
    pub fn new(binned: &'a BinnedMatrix, template: Histogram, params: GrowParams) -> Self {
        let n = binned.n_rows();
        Self {
            binned,
            kinds: binned.kinds().to_vec(),
            params,
            rows: Vec::with_capacity(n),
            scratch: vec![0; n],
            gh: Vec::with_capacity(n),
            pool: Vec::new(),
            template,
        }
    }

    /// The row indices of node `node` after growth.
    pub fn node_rows(&self, node: &GrowNode) -> &[u32] {
        &self.rows[node.start..node.start + node.len]
    }

    fn take_hist(&mut self) -> Histogram {
        self.pool.pop().unwrap_or_else(|| self.template.clone())
    }

    fn can_split(&self, s: &GradStats) -> bool {
        let p = &self.params.split;
        s.count >= p.min_data_in_leaf.max(1).saturating_mul(2)
            && s.sum_hess >= 2.0 * p.min_child_weight
    }

    /// Builds the histogram of `rows[start..start+len]` on `features`.
    fn build(
        &mut self,
        start: usize,
        len: usize,
        grad: &[f64],
        hess: &[f64],
        features: &[usize],
    ) -> Histogram {
        let mut hist = self.take_hist();
        let rows = &self.rows[start..start + len];
        self.gh.clear();
        self.gh.extend(rows.iter().map(|&r| [grad[r as usize], hess[r as usize]]));
        build_histogram_ordered(self.binned, rows, &self.gh, features, &mut hist);
        hist
    }

    /// Stable partition of `rows[start..start+len]`: rows whose bin of `feature` is marked in
    /// `table` first. Returns the number of left rows.
    fn partition(
        &mut self,
        start: usize,
        len: usize,
        feature: usize,
        table: &[bool; 256],
    ) -> usize {
        let col = self.binned.column(feature);
        let slice = &mut self.rows[start..start + len];
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        let right = &mut self.scratch[..len];
        // Branch-free: every row is written to both sides and only the matching cursor moves
        // (the direction is data-dependent, so a branch would mispredict about half the time).
        // Writing `slice[nl]` is safe because `nl <= i`: that slot has already been read.
        let (mut nl, mut nr) = (0usize, 0usize);
        for i in 0..len {
            let r = slice[i];
            let go_left = table[col[r as usize] as usize];
            slice[nl] = r;
            right[nr] = r;
            nl += usize::from(go_left);
            nr += usize::from(!go_left);
        }
        slice[nl..].copy_from_slice(&right[..nr]);
        nl
    }

    /// Grows one tree on the rows `sample` (ascending) and the candidate `features`.
    pub fn grow(
        &mut self,
        sample: &[u32],
        features: &[usize],
        grad: &[f64],
        hess: &[f64],
    ) -> GrownTree {
        self.rows.clear();
        self.rows.extend_from_slice(sample);
        let mut root = GradStats::default();
        for &r in sample {
            root.sum_grad += grad[r as usize];
            root.sum_hess += hess[r as usize];
        }
        root.count = sample.len() as u32;
        let mut nodes =
            vec![GrowNode { stats: root, start: 0, len: sample.len(), split: None, value: 0.0 }];
        let mut n_leaves = 1usize;
        let mut level: Vec<(usize, Histogram)> = Vec::new();
        if self.params.max_depth > 0 && self.can_split(&root) {
            let h = self.build(0, sample.len(), grad, hess, features);
            level.push((0, h));
        }
        let mut next: Vec<(usize, Histogram)> = Vec::new();
        let mut cands: Vec<(usize, Histogram, SplitCandidate)> = Vec::new();
        for depth in 0..self.params.max_depth {
            if level.is_empty() {
                break;
            }
            for (ni, hist) in level.drain(..) {
                let found = find_best_split(
                    &hist,
                    nodes[ni].stats,
                    &self.params.split,
                    &self.kinds,
                    features,
                );
                match found {
                    Some(c) => cands.push((ni, hist, c)),
                    None => self.pool.push(hist),
                }
            }
            if let Some(max_leaves) = self.params.max_leaves {
                let budget = max_leaves.saturating_sub(n_leaves);
                if cands.len() > budget {
                    // Highest gain first; ties keep node order (stable sort).
                    cands.sort_by(|a, b| b.2.gain.total_cmp(&a.2.gain));
                    for (_, hist, _) in cands.drain(budget..) {
                        self.pool.push(hist);
                    }
                    cands.sort_by_key(|c| c.0);
                }
            }
            let children_open = depth + 1 < self.params.max_depth;
            for (ni, mut hist, cand) in cands.drain(..) {
                let table = cand.left_table();
                let (start, len) = (nodes[ni].start, nodes[ni].len);
                let nl = self.partition(start, len, cand.feature, &table);
                debug_assert_eq!(nl, cand.left.count as usize);
                let li = nodes.len();
                let ri = li + 1;
                let (ls, rs) = (cand.left, cand.right);
                nodes.push(GrowNode { stats: ls, start, len: nl, split: None, value: 0.0 });
                nodes.push(GrowNode {
                    stats: rs,
                    start: start + nl,
                    len: len - nl,
                    split: None,
                    value: 0.0,
                });
                nodes[ni].split = Some(GrowSplit { cand, table, left: li, right: ri });
                n_leaves += 1;
                let (l_open, r_open) =
                    (children_open && self.can_split(&ls), children_open && self.can_split(&rs));
                if !(l_open || r_open) {
                    self.pool.push(hist);
                    continue;
                }
                let left_smaller = nl <= len - nl;
                let (small, large, small_open, large_open) =
                    if left_smaller { (li, ri, l_open, r_open) } else { (ri, li, r_open, l_open) };
                let small_hist =
                    self.build(nodes[small].start, nodes[small].len, grad, hess, features);
                // pair[0] is the left child's entry, pair[1] the right child's, so the next
                // level keeps node order.
                let (small_slot, large_slot) = if left_smaller { (0, 1) } else { (1, 0) };
                let mut pair = [None, None];
                if large_open {
                    hist.subtract_features(&small_hist, features);
                    pair[large_slot] = Some((large, hist));
                } else {
                    self.pool.push(hist);
                }
                if small_open {
                    pair[small_slot] = Some((small, small_hist));
                } else {
                    self.pool.push(small_hist);
                }
                next.extend(pair.into_iter().flatten());
            }
            std::mem::swap(&mut level, &mut next);
        }
        for (_, hist) in level.drain(..) {
            self.pool.push(hist);
        }
        for node in &mut nodes {
            if node.split.is_none() {
                node.value = leaf_weight(node.stats, self.params.split.lambda_l2)
                    * self.params.learning_rate;
            }
        }
        GrownTree { nodes }
    }
}
