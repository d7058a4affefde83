//! What a SecureBoost model leaves at each party, and federated prediction (Cheng et al.,
//! "SecureBoost: A Lossless Federated Learning Framework", arXiv 1901.08755, §5, with the
//! one-round leaf-set routing of later work: each party evaluates only its own splits).
//!
//! Every party keeps the **shape** of every tree ([`TreeShape`]: which party owns each split
//! and the children, never a threshold or a leaf value). A feature holder keeps, for each of
//! its own split ids, the feature and bin rule ([`HolderSplit`]) and its own bin edges; the
//! label holder keeps its own splits, the leaf values and the base score, and for every other
//! party's split only `(party, split id)` with the feature's name (for reason codes).
//!
//! Prediction of a row: each party returns, per tree, the set of leaves reachable when its own
//! splits go the row's way and every other party's split goes both ways ([`TreeShape::reachable`]);
//! the label holder intersects the sets (exactly one leaf remains) and adds up leaf values.
//! One round trip for any batch; no party sends a feature value or a threshold.

use std::collections::BTreeMap;

use fedcredit_models::gbdt::{BinMapper, BinSplit, BinnedMatrix};
use fedcredit_models::{FeatureSpec, Features};
use serde::{Deserialize, Serialize};

/// Most nodes a tree may have (depth ≤ 12 when full).
pub const MAX_NODES: usize = 1 << 13;

/// A node of a tree as every party knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeNode {
    /// The split's owner (its position in the job's parties); `None` for a leaf.
    pub owner: Option<u32>,
    /// The owner's split id.
    pub split_id: u32,
    /// Left child.
    pub left: u32,
    /// Right child.
    pub right: u32,
}

/// A tree's shape: root first, children after their parent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    /// The nodes.
    pub nodes: Vec<ShapeNode>,
}

/// A set of leaves of one tree: bit `k` for the `k`-th leaf in node order.
pub type LeafSet = Vec<u64>;

impl TreeShape {
    /// Checks that the nodes form a tree: children in range and after their parent, every
    /// node reached once, at most [`MAX_NODES`] nodes.
    ///
    /// # Errors
    /// What is wrong, for people.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.nodes.len();
        if n == 0 || n > MAX_NODES {
            return Err(format!("a tree of {n} nodes"));
        }
        let mut seen = vec![false; n];
        seen[0] = true;
        for (i, nd) in self.nodes.iter().enumerate() {
            if nd.owner.is_none() {
                continue;
            }
            for c in [nd.left as usize, nd.right as usize] {
                if c <= i || c >= n || std::mem::replace(&mut seen[c], true) {
                    return Err(format!("node {i} has a bad child {c}"));
                }
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(format!("node {i} is not reached from the root"));
        }
        Ok(())
    }

    /// Leaf ordinal of each node (`None` for internal nodes).
    pub fn leaf_ordinals(&self) -> Vec<Option<usize>> {
        let mut k = 0;
        self.nodes
            .iter()
            .map(|n| {
                n.owner.is_none().then(|| {
                    k += 1;
                    k - 1
                })
            })
            .collect()
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes.iter().filter(|n| n.owner.is_none()).count()
    }

    /// The leaves reachable when party `me`'s splits send the row left iff `left(split_id)`
    /// and every other party's split sends it both ways.
    pub fn reachable(&self, me: u32, mut left: impl FnMut(u32) -> bool) -> LeafSet {
        let ord = self.leaf_ordinals();
        let mut set = vec![0u64; self.n_leaves().div_ceil(64).max(1)];
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let Some(nd) = self.nodes.get(i) else { continue };
            match nd.owner {
                None => {
                    if let Some(k) = ord[i] {
                        set[k / 64] |= 1 << (k % 64);
                    }
                }
                Some(o) if o == me => {
                    stack.push(if left(nd.split_id) { nd.left } else { nd.right } as usize);
                }
                Some(_) => {
                    stack.push(nd.left as usize);
                    stack.push(nd.right as usize);
                }
            }
        }
        set
    }
}

/// The leaf left in the intersection of the parties' leaf sets of one tree, if exactly one.
pub fn single_leaf(sets: &[&LeafSet]) -> Option<usize> {
    let words = sets.first()?.len();
    let mut found = None;
    for w in 0..words {
        let mut x = u64::MAX;
        for s in sets {
            x &= s.get(w).copied().unwrap_or(0);
        }
        if x != 0 {
            if found.is_some() || x.count_ones() != 1 {
                return None;
            }
            found = Some(w * 64 + x.trailing_zeros() as usize);
        }
    }
    found
}

/// A feature holder's split: its own feature and bin rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderSplit {
    /// The tree it belongs to.
    pub tree: u32,
    /// The holder's column.
    pub feature: usize,
    /// Which value bins go left.
    pub rule: BinSplit,
    /// The feature's missing bin.
    pub missing_bin: u8,
    /// Whether missing values go left.
    pub default_left: bool,
}

impl HolderSplit {
    /// Whether a row in bin `bin` of the feature goes left.
    pub fn goes_left(&self, bin: u8) -> bool {
        self.rule.goes_left(bin, self.missing_bin, self.default_left)
    }
}

/// Bin edges of a party's own columns (they never leave it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    /// The columns.
    pub specs: Vec<FeatureSpec>,
    /// Edges as [`BinMapper::to_edges`] writes them.
    pub edges: Vec<Vec<f64>>,
}

impl Bins {
    /// Of a fitted mapper.
    pub fn of(mapper: &BinMapper) -> Self {
        Self { specs: mapper.specs().to_vec(), edges: mapper.to_edges() }
    }

    /// The mapper back.
    ///
    /// # Errors
    /// When the stored edges are not valid.
    pub fn mapper(&self) -> Result<BinMapper, String> {
        BinMapper::from_edges(self.specs.clone(), self.edges.clone()).map_err(|e| e.to_string())
    }

    /// Bins `features` (the party's own columns, by name and kind).
    ///
    /// # Errors
    /// When the columns differ from the ones trained on.
    pub fn bin(&self, features: &Features) -> Result<BinnedMatrix, String> {
        self.mapper()?.bin(features).map_err(|e| e.to_string())
    }
}

/// A feature holder's part of a SecureBoost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderPart {
    /// Its position in the job's parties.
    pub me: u32,
    /// Its bin edges.
    pub bins: Bins,
    /// Its splits, by ascending id.
    pub splits: Vec<(u32, HolderSplit)>,
    /// Every tree's shape.
    pub trees: Vec<TreeShape>,
}

impl HolderPart {
    /// Split `id`.
    pub fn split(&self, id: u32) -> Option<&HolderSplit> {
        self.splits.binary_search_by_key(&id, |(k, _)| *k).ok().map(|i| &self.splits[i].1)
    }

    /// Leaf sets of every row of `binned` (its columns), tree by tree.
    pub fn leaf_sets(&self, binned: &BinnedMatrix) -> Vec<Vec<LeafSet>> {
        (0..binned.n_rows())
            .map(|r| {
                self.trees
                    .iter()
                    .map(|t| {
                        t.reachable(self.me, |id| {
                            self.split(id).is_some_and(|s| s.goes_left(binned.column(s.feature)[r]))
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// Per tree, the node of each leaf ordinal and each node's parent (`usize::MAX` at the root):
/// [`LabelPart::routing`].
#[derive(Debug, Clone, Default)]
pub struct Routing {
    trees: Vec<(Vec<usize>, Vec<usize>)>,
}

/// A split at the label holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum LabelSplit {
    /// On its own column.
    Own {
        /// Its column.
        feature: usize,
        /// Which value bins go left.
        rule: BinSplit,
        /// The missing bin.
        missing_bin: u8,
        /// Whether missing values go left.
        default_left: bool,
    },
    /// On another party's column: only a reference.
    Remote {
        /// The column's name (public in the job's schemas), for reason codes.
        feature: String,
    },
}

/// A tree at the label holder: the shape, its own splits, every node's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelTree {
    /// The shape every party holds.
    pub shape: TreeShape,
    /// Per node: the split (internal nodes) or `None` (leaves).
    pub splits: Vec<Option<LabelSplit>>,
    /// Per node: the leaf value for leaves; for internal nodes the value the node would have
    /// as a leaf (for the contribution of each split along a row's path).
    pub values: Vec<f64>,
}

/// The label holder's part of a SecureBoost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPart {
    /// Its position in the job's parties.
    pub me: u32,
    /// The job's parties, in order (to name owners).
    pub parties: Vec<String>,
    /// Its bin edges.
    pub bins: Bins,
    /// Log-odds before any tree.
    pub base_score: f64,
    /// The trees.
    pub trees: Vec<LabelTree>,
}

/// One party's contribution to a row's log-odds (Saabas' path attribution: each split along
/// the row's path moves the value from the node's to the child's; the move goes to the split's
/// owner and feature).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contributions {
    /// By party name.
    pub by_party: BTreeMap<String, f64>,
    /// By (party, feature).
    pub by_feature: BTreeMap<(String, String), f64>,
}

impl LabelPart {
    /// Its own leaf sets of every row of `binned` (its columns).
    pub fn leaf_sets(&self, binned: &BinnedMatrix) -> Vec<Vec<LeafSet>> {
        (0..binned.n_rows())
            .map(|r| {
                self.trees
                    .iter()
                    .map(|t| {
                        t.shape.reachable(self.me, |id| match t.splits.get(id as usize) {
                            Some(Some(LabelSplit::Own {
                                feature,
                                rule,
                                missing_bin,
                                default_left,
                            })) => rule.goes_left(
                                binned.column(*feature)[r],
                                *missing_bin,
                                *default_left,
                            ),
                            _ => false,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// The trees' leaves and parents, for [`Self::leaves`] and [`Self::contributions`]:
    /// computed once per batch of rows.
    pub fn routing(&self) -> Routing {
        let trees = self
            .trees
            .iter()
            .map(|t| {
                let nodes = &t.shape.nodes;
                let mut parent = vec![usize::MAX; nodes.len()];
                for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.owner.is_some()) {
                    for ch in [n.left as usize, n.right as usize] {
                        if let Some(p) = parent.get_mut(ch) {
                            *p = i;
                        }
                    }
                }
                let leaf_nodes = (0..nodes.len()).filter(|&i| nodes[i].owner.is_none()).collect();
                (leaf_nodes, parent)
            })
            .collect();
        Routing { trees }
    }

    /// The leaf of each tree a row reaches, from every party's leaf sets of the row (its own
    /// among them).
    ///
    /// # Errors
    /// When a party's sets do not fit the trees or do not leave exactly one leaf.
    pub fn leaves(&self, routing: &Routing, sets: &[&[LeafSet]]) -> Result<Vec<usize>, String> {
        routing
            .trees
            .iter()
            .enumerate()
            .map(|(t, (leaf_nodes, _))| {
                let per: Vec<&LeafSet> = sets
                    .iter()
                    .map(|s| s.get(t).ok_or_else(|| format!("no leaf set for tree {t}")))
                    .collect::<Result<_, _>>()?;
                let k = single_leaf(&per)
                    .ok_or_else(|| format!("tree {t}: the leaf sets do not meet in one leaf"))?;
                leaf_nodes
                    .get(k)
                    .copied()
                    .ok_or_else(|| format!("tree {t}: leaf {k} does not exist"))
            })
            .collect()
    }

    /// The log-odds of a row that reaches node `leaves[t]` of each tree.
    pub fn log_odds(&self, leaves: &[usize]) -> f64 {
        self.base_score
            + self
                .trees
                .iter()
                .zip(leaves)
                .map(|(t, &l)| t.values.get(l).copied().unwrap_or(0.0))
                .sum::<f64>()
    }

    /// Who moved the row's log-odds how much (see [`Contributions`]); the base score is the
    /// label holder's.
    pub fn contributions(&self, routing: &Routing, leaves: &[usize]) -> Contributions {
        let mut c = Contributions::default();
        let me = self.parties.get(self.me as usize).cloned().unwrap_or_default();
        *c.by_party.entry(me.clone()).or_default() += self.base_score;
        for ((t, (_, parent)), &leaf) in self.trees.iter().zip(&routing.trees).zip(leaves) {
            // Walk from `leaf` up to the root.
            let mut at = leaf;
            while let Some(&p) = parent.get(at).filter(|p| **p != usize::MAX) {
                let delta = t.values.get(at).copied().unwrap_or(0.0)
                    - t.values.get(p).copied().unwrap_or(0.0);
                let owner = t.shape.nodes[p].owner.unwrap_or(self.me) as usize;
                let party = self.parties.get(owner).cloned().unwrap_or_default();
                let feature = match t.splits.get(p) {
                    Some(Some(LabelSplit::Own { feature, .. })) => {
                        self.bins.specs.get(*feature).map(|s| s.name.clone()).unwrap_or_default()
                    }
                    Some(Some(LabelSplit::Remote { feature })) => feature.clone(),
                    _ => String::new(),
                };
                *c.by_party.entry(party.clone()).or_default() += delta;
                *c.by_feature.entry((party, feature)).or_default() += delta;
                at = p;
            }
            // The root's value belongs to nobody's split: the label holder's (its labels).
            *c.by_party.entry(me.clone()).or_default() += t.values.first().copied().unwrap_or(0.0);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owner: Option<u32>, id: u32, l: u32, r: u32) -> ShapeNode {
        ShapeNode { owner, split_id: id, left: l, right: r }
    }

    #[test]
    fn leaf_sets_of_two_parties_meet_in_one_leaf() {
        // root: party 1 split 7; left: party 0 split 0; right: leaf.
        let shape = TreeShape {
            nodes: vec![
                node(Some(1), 7, 1, 2),
                node(Some(0), 0, 3, 4),
                node(None, 0, 0, 0),
                node(None, 0, 0, 0),
                node(None, 0, 0, 0),
            ],
        };
        shape.validate().unwrap();
        // Leaves in node order: 2 -> 0, 3 -> 1, 4 -> 2.
        let p1_left = shape.reachable(1, |_| true);
        assert_eq!(p1_left, vec![0b110]);
        let p0_right = shape.reachable(0, |_| false);
        assert_eq!(p0_right, vec![0b101]);
        assert_eq!(single_leaf(&[&p1_left, &p0_right]), Some(2));
        let p1_right = shape.reachable(1, |_| false);
        assert_eq!(single_leaf(&[&p1_right, &p0_right]), Some(0));
        // A party alone does not pin the leaf.
        assert_eq!(single_leaf(&[&p1_left]), None);
        // A node reached twice is refused.
        let bad = TreeShape { nodes: vec![node(Some(0), 0, 1, 1), node(None, 0, 0, 0)] };
        assert!(bad.validate().is_err());
    }
}
