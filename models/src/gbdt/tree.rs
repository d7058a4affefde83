//! Trained regression trees on raw feature values, as stored in a [`super::GbdtModel`].
//!
//! Each split keeps a real threshold (numeric: go left when `x <= threshold`, the upper edge of
//! the threshold bin, see [`super::bins`]) or a set of level indices (categorical), plus the
//! learned default direction for missing values (Chen & Guestrin, "XGBoost", KDD 2016, §3.4).
//! Trees therefore score raw [`crate::Features`] rows without the bin mapper, and give exactly
//! the same routing as the binned training data.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// How a split node routes a non-missing value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SplitRule {
    /// `x <= threshold` goes left.
    Numeric {
        /// Upper edge of the last bin on the left (`f64::MAX` when every value goes left and
        /// only missing values go right).
        threshold: f64,
    },
    /// Levels in `left_levels` go left, all other levels right.
    Categorical {
        /// Level indices sent left, ascending.
        left_levels: Vec<u32>,
    },
}

/// One node of a tree; node 0 is the root and children come after their parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    /// An internal node.
    Split {
        /// Feature (column) index.
        feature: usize,
        /// Routing of non-missing values.
        rule: SplitRule,
        /// Whether missing values go left.
        default_left: bool,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
        /// Split gain (for importances).
        gain: f64,
        /// Training rows that reached the node.
        count: u32,
    },
    /// A leaf.
    Leaf {
        /// Contribution to the raw score (log-odds), learning rate included.
        value: f64,
        /// Training rows that reached the leaf.
        count: u32,
    },
}

/// A regression tree over raw feature values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Nodes, root first.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Checks that the tree is well formed for `n_features` columns: children after their parent
    /// and in range, features in range, thresholds not NaN, so scoring cannot loop or panic.
    ///
    /// # Errors
    /// [`ModelError::Artifact`] naming the bad node.
    pub fn validate(&self, n_features: usize) -> Result<(), ModelError> {
        if self.nodes.is_empty() {
            return Err(ModelError::Artifact("tree without nodes".into()));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Split { feature, rule, left, right, .. } = node {
                let ok_children = *left > i
                    && *right > i
                    && *left < self.nodes.len()
                    && *right < self.nodes.len()
                    && left != right;
                if !ok_children || *feature >= n_features {
                    return Err(ModelError::Artifact(format!(
                        "tree node {i}: children {left}/{right} or feature {feature} out of range"
                    )));
                }
                if let SplitRule::Numeric { threshold } = rule
                    && threshold.is_nan()
                {
                    return Err(ModelError::Artifact(format!("tree node {i}: NaN threshold")));
                }
            }
        }
        Ok(())
    }

    /// The raw-score contribution for one row of raw values (`NaN` = missing). The tree must be
    /// valid for the row's length (see [`Tree::validate`]).
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Leaf { value, .. } => return *value,
                Node::Split { feature, rule, default_left, left, right, .. } => {
                    let x = row[*feature];
                    let go_left = if x.is_nan() {
                        *default_left
                    } else {
                        match rule {
                            SplitRule::Numeric { threshold } => x <= *threshold,
                            SplitRule::Categorical { left_levels } => {
                                x >= 0.0 && left_levels.binary_search(&(x as u32)).is_ok()
                            }
                        }
                    };
                    i = if go_left { *left } else { *right };
                }
            }
        }
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n, Node::Leaf { .. })).count()
    }

    /// Depth (a single leaf has depth 0).
    pub fn depth(&self) -> usize {
        let mut depth = vec![0usize; self.nodes.len()];
        let mut max = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Split { left, right, .. } = node {
                let child_depth = depth[i] + 1;
                for &c in [left, right] {
                    if let Some(d) = depth.get_mut(c) {
                        *d = child_depth;
                        max = max.max(child_depth);
                    }
                }
            }
        }
        max
    }
}
