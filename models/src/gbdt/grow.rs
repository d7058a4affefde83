//! Depth-wise (level by level) growth of one tree on binned data (Chen & Guestrin, "XGBoost",
//! KDD 2016, Alg. 3 with histograms; Ke et al., "LightGBM", NeurIPS 2017, histogram subtraction).
//!
//! The split decisions live in the sans-IO core [`super::level::TreeGrowth`]; this grower
//! supplies it with histograms built from rows. After every level it applies the new splits
//! (a stable in-place partition of the node's slice of one `u32` row-index array), then builds
//! the histograms the core wants (the smaller child of each split) from their rows, with the
//! gradients gathered once into a contiguous buffer ("ordered gradients"); the core obtains the
//! larger child's by subtraction. The horizontal federated trainer drives the same core with
//! securely summed histograms instead.

use super::bins::{BinKind, BinnedMatrix};
use super::histogram::{GradStats, Histogram, build_histogram_ordered};
use super::level::{GrowParams, GrownTree, TreeGrowth};

impl GrownTree {
    /// Leaf value for row `r` of a binned matrix with the training layout.
    pub(crate) fn predict_binned(&self, binned: &BinnedMatrix, r: usize) -> f64 {
        let leaf = self.leaf_of(|f| binned.column(f)[r]);
        self.nodes[leaf].value
    }
}

/// Reusable buffers for growing trees on one binned matrix.
#[derive(Debug)]
pub(crate) struct Grower<'a> {
    binned: &'a BinnedMatrix,
    kinds: Vec<BinKind>,
    params: GrowParams,
    /// Row indices, partitioned node by node.
    rows: Vec<u32>,
    /// `(start, len)` of each node's rows in `rows`.
    spans: Vec<(usize, usize)>,
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
            spans: Vec::new(),
            scratch: vec![0; n],
            gh: Vec::with_capacity(n),
            pool: Vec::new(),
            template,
        }
    }

    /// The row indices of node `node` after growth.
    pub fn node_rows(&self, node: usize) -> &[u32] {
        let (start, len) = self.spans[node];
        &self.rows[start..start + len]
    }

    fn take_hist(&mut self) -> Histogram {
        self.pool.pop().unwrap_or_else(|| self.template.clone())
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

    /// Grows one tree on the rows `sample` (ascending) and the candidate `features`, driving
    /// the level-wise core with histograms built from rows.
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
        self.spans.clear();
        self.spans.push((0, sample.len()));
        let mut core = TreeGrowth::new(self.params, self.kinds.clone(), features.to_vec(), root);
        let mut partitioned: Vec<bool> = Vec::new();
        loop {
            // Partition the rows of every node split since the last level (node order).
            let nodes = core.nodes();
            self.spans.resize(nodes.len(), (0, 0));
            partitioned.resize(nodes.len(), false);
            for (i, node) in nodes.iter().enumerate() {
                if let Some(s) = &node.split
                    && !partitioned[i]
                {
                    partitioned[i] = true;
                    let (start, len) = self.spans[i];
                    let table = s.cand.left_table();
                    let nl = self.partition(start, len, s.cand.feature, &table);
                    debug_assert_eq!(nl, s.cand.left.count as usize);
                    self.spans[s.left] = (start, nl);
                    self.spans[s.right] = (start + nl, len - nl);
                }
            }
            if core.is_done() {
                break;
            }
            let wanted = core.wanted().to_vec();
            let mut hists = Vec::with_capacity(wanted.len());
            for n in wanted {
                let (start, len) = self.spans[n];
                hists.push(self.build(start, len, grad, hess, features));
            }
            match core.absorb(hists) {
                Ok(free) => self.pool.extend(free),
                // The core only refuses histograms of the wrong count or layout, which this
                // grower never builds.
                Err(_) => break,
            }
        }
        core.tree().unwrap_or_else(|| GrownTree { nodes: core.nodes().to_vec() })
    }
}
