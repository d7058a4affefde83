//! Tasks and model updates of horizontal jobs as typed protobuf (`horizontal.proto`).
//!
//! The trainer speaks in domain [`Task`]s, each carrying whatever model the party needs
//! (bin edges and finished trees, a linear design). On the wire a step carries only what the
//! party does not hold yet: the conductor derives the model's canonical update sequence —
//! for GBDT `[setup, tree 1, …, tree k]`, for a linear model `[design]` — and sends a party
//! the updates past the version it holds ([`updates_for`]); the task itself travels slim
//! ([`task_to_wire`]: a level task names the partial tree and nodes, not the finished trees).
//! The party keeps a [`PartyModel`], applies updates in order and rebuilds the domain task
//! ([`PartyModel::task`]), so [`super::Participant::contribute`] is the same code in memory and
//! over the wire. Updates are published only once final (a finished tree, a chosen design),
//! so what a party holds is always a prefix of the conductor's sequence.

use fedcredit_models::binning::{Bin, BinRule, Binner, FeatureBinning};
use fedcredit_models::gbdt::BinSplit;
use fedcredit_models::preprocess::{ColumnEncoding, LinearEncoder};
use fedcredit_proto::pb;
use serde::{Deserialize, Serialize};

use super::bench::BenchTask;
use super::evaluate::EvalTask;
use super::gbdt::{BinNode, GbdtTask};
use super::lr::{Design, LrStep, LrTask};
use super::prep::{CensusTask, GridTask, MomentsTask};
use super::scorecard::BinCountsTask;
use super::{Task, TrainError};

fn proto(msg: impl Into<String>) -> TrainError {
    TrainError::Protocol(msg.into())
}

/// The model a task refers to, borrowed from it.
enum ModelRef<'a> {
    Gbdt { edges: &'a [Vec<f64>], base_score: f64, trees: &'a [Vec<BinNode>] },
    Linear(&'a Design),
}

fn model_of(task: &Task) -> Option<ModelRef<'_>> {
    match task {
        Task::Gbdt(t) => {
            Some(ModelRef::Gbdt { edges: &t.edges, base_score: t.base_score, trees: &t.trees })
        }
        Task::Evaluate(EvalTask::Gbdt { edges, base_score, trees }) => {
            Some(ModelRef::Gbdt { edges, base_score: *base_score, trees })
        }
        Task::Evaluate(EvalTask::Linear { design, .. }) => Some(ModelRef::Linear(design)),
        Task::Logistic(t) => Some(ModelRef::Linear(&t.design)),
        _ => None,
    }
}

/// The version of the model `task` refers to: the length of its update sequence (0 when the
/// task needs no model).
pub fn model_version(task: &Task) -> u64 {
    match model_of(task) {
        None => 0,
        Some(ModelRef::Gbdt { trees, .. }) => 1 + trees.len() as u64,
        Some(ModelRef::Linear(_)) => 1,
    }
}

fn update(version: u64, body: pb::model_update::Body) -> pb::ModelUpdate {
    pb::ModelUpdate { version, body: Some(body) }
}

/// The updates that take a party holding `party_version` to the model of `task`; a party
/// ahead of it (it cannot be, unless the coordinator resumed from an older checkpoint) is
/// told to clear and gets everything.
pub fn updates_for(task: &Task, party_version: u64) -> Vec<pb::ModelUpdate> {
    use pb::model_update::Body;
    let Some(model) = model_of(task) else { return Vec::new() };
    let target = model_version(task);
    let mut out = Vec::new();
    let from = if party_version > target {
        out.push(update(0, Body::Clear(pb::ModelClear {})));
        0
    } else {
        party_version
    };
    match model {
        ModelRef::Gbdt { edges, base_score, trees } => {
            if from == 0 {
                out.push(update(
                    1,
                    Body::GbdtSetup(pb::GbdtSetup {
                        edges: edges
                            .iter()
                            .map(|e| pb::FeatureEdges { edges: e.clone() })
                            .collect(),
                        base_score,
                    }),
                ));
            }
            for (i, t) in trees.iter().enumerate().skip(from.saturating_sub(1) as usize) {
                out.push(update(2 + i as u64, Body::Tree(tree_to_wire(t))));
            }
        }
        ModelRef::Linear(design) => {
            if from == 0 {
                out.push(update(1, Body::Design(design_to_wire(design))));
            }
        }
    }
    out
}

fn tree_to_wire(nodes: &[BinNode]) -> pb::BinTree {
    use pb::bin_tree_node::Kind;
    pb::BinTree {
        nodes: nodes
            .iter()
            .map(|n| pb::BinTreeNode {
                kind: Some(match n {
                    BinNode::Leaf { v } => Kind::Leaf(*v),
                    BinNode::Split { f, rule, miss, dl, l, r } => {
                        let (categorical, threshold_bin, left_bins) = match rule {
                            BinSplit::Numeric { threshold_bin } => {
                                (false, u32::from(*threshold_bin), Vec::new())
                            }
                            BinSplit::Categorical { left_bins } => (true, 0, left_bins.clone()),
                        };
                        Kind::Split(pb::BinTreeSplit {
                            feature: *f as u32,
                            categorical,
                            threshold_bin,
                            left_bins,
                            missing_bin: u32::from(*miss),
                            default_left: *dl,
                            left: *l as u32,
                            right: *r as u32,
                        })
                    }
                }),
            })
            .collect(),
    }
}

fn bin_u8(v: u32, field: &str) -> Result<u8, TrainError> {
    u8::try_from(v).map_err(|_| proto(format!("tree: {field} {v} is not a bin")))
}

fn tree_from_wire(t: &pb::BinTree) -> Result<Vec<BinNode>, TrainError> {
    use pb::bin_tree_node::Kind;
    let n = t.nodes.len();
    t.nodes
        .iter()
        .map(|node| match &node.kind {
            Some(Kind::Leaf(v)) if v.is_finite() => Ok(BinNode::Leaf { v: *v }),
            Some(Kind::Leaf(v)) => Err(proto(format!("tree: leaf value {v}"))),
            Some(Kind::Split(s)) => {
                let (l, r) = (s.left as usize, s.right as usize);
                if l >= n || r >= n {
                    return Err(proto(format!("tree: child {l} or {r} of {n} nodes")));
                }
                let rule = if s.categorical {
                    if !s.left_bins.windows(2).all(|w| w[0] < w[1]) {
                        return Err(proto("tree: categorical bins not ascending"));
                    }
                    BinSplit::Categorical { left_bins: s.left_bins.clone() }
                } else {
                    BinSplit::Numeric { threshold_bin: bin_u8(s.threshold_bin, "threshold")? }
                };
                Ok(BinNode::Split {
                    f: s.feature as usize,
                    rule,
                    miss: bin_u8(s.missing_bin, "missing bin")?,
                    dl: s.default_left,
                    l,
                    r,
                })
            }
            None => Err(proto("tree: node without a kind")),
        })
        .collect()
}

fn rule_to_wire(rule: &BinRule) -> pb::BinRuleMsg {
    use pb::bin_rule_msg::Kind;
    pb::BinRuleMsg {
        kind: Some(match rule {
            BinRule::Numeric { edges } => Kind::Numeric(pb::NumericRule { edges: edges.clone() }),
            BinRule::Categorical { levels, level_bins } => Kind::Categorical(pb::CategoricalRule {
                levels: levels.clone(),
                level_bins: level_bins.iter().map(|&b| b as u32).collect(),
            }),
        }),
    }
}

fn rule_from_wire(r: &pb::BinRuleMsg) -> Result<BinRule, TrainError> {
    use pb::bin_rule_msg::Kind;
    match &r.kind {
        Some(Kind::Numeric(n)) => Ok(BinRule::Numeric { edges: n.edges.clone() }),
        Some(Kind::Categorical(c)) => Ok(BinRule::Categorical {
            levels: c.levels.clone(),
            level_bins: c.level_bins.iter().map(|&b| b as usize).collect(),
        }),
        None => Err(proto("bin rule without a kind")),
    }
}

fn design_to_wire(design: &Design) -> pb::LinearDesign {
    use pb::linear_design::Kind;
    pb::LinearDesign {
        kind: Some(match design {
            Design::Encoder(enc) => Kind::Encoder(pb::EncoderDesign {
                columns: enc
                    .encodings()
                    .into_iter()
                    .map(|(name, e)| pb::EncodedColumn {
                        name,
                        kind: Some(match e {
                            ColumnEncoding::Numeric { fill, center, scale, indicator } => {
                                pb::encoded_column::Kind::Numeric(pb::NumericEncoding {
                                    fill,
                                    center,
                                    scale,
                                    indicator,
                                })
                            }
                            ColumnEncoding::Categorical { levels, missing, other } => {
                                pb::encoded_column::Kind::Categorical(pb::CategoricalEncoding {
                                    levels,
                                    missing,
                                    other,
                                })
                            }
                        }),
                    })
                    .collect(),
            }),
            Design::Woe(b) => Kind::Woe(pb::WoeDesign {
                features: b
                    .features
                    .iter()
                    .map(|f| pb::WoeFeature {
                        name: f.feature.clone(),
                        rule: Some(rule_to_wire(&f.rule)),
                        labels: f.bins.iter().map(|b| b.label.clone()).collect(),
                        woe: f.bins.iter().map(|b| b.woe).collect(),
                    })
                    .collect(),
            }),
        }),
    }
}

fn design_from_wire(d: &pb::LinearDesign) -> Result<Design, TrainError> {
    use pb::linear_design::Kind;
    match &d.kind {
        Some(Kind::Encoder(e)) => {
            let cols = e
                .columns
                .iter()
                .map(|c| {
                    let enc = match &c.kind {
                        Some(pb::encoded_column::Kind::Numeric(n)) => ColumnEncoding::Numeric {
                            fill: n.fill,
                            center: n.center,
                            scale: n.scale,
                            indicator: n.indicator,
                        },
                        Some(pb::encoded_column::Kind::Categorical(k)) => {
                            ColumnEncoding::Categorical {
                                levels: k.levels.clone(),
                                missing: k.missing,
                                other: k.other,
                            }
                        }
                        None => {
                            return Err(proto(format!("column `{}` without an encoding", c.name)));
                        }
                    };
                    Ok((c.name.clone(), enc))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Design::Encoder(LinearEncoder::from_encodings(cols)?))
        }
        Some(Kind::Woe(w)) => {
            let features = w
                .features
                .iter()
                .map(|f| {
                    if f.labels.len() != f.woe.len() || f.woe.is_empty() {
                        return Err(proto(format!(
                            "WOE of `{}`: labels and values differ",
                            f.name
                        )));
                    }
                    if let Some(v) = f.woe.iter().find(|v| !v.is_finite()) {
                        return Err(proto(format!("WOE of `{}` holds {v}", f.name)));
                    }
                    let rule = rule_from_wire(
                        f.rule.as_ref().ok_or_else(|| proto("WOE without a rule"))?,
                    )?;
                    Ok(FeatureBinning {
                        feature: f.name.clone(),
                        rule,
                        bins: f
                            .labels
                            .iter()
                            .zip(&f.woe)
                            .map(|(label, &woe)| Bin {
                                label: label.clone(),
                                count: 0.0,
                                events: 0.0,
                                non_events: 0.0,
                                woe,
                                iv: 0.0,
                            })
                            .collect(),
                        iv: 0.0,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Design::Woe(Binner { features }))
        }
        None => Err(proto("design without a kind")),
    }
}

/// The slim wire form of `task` (its model travels as updates, see [`updates_for`]).
pub fn task_to_wire(task: &Task) -> pb::HorizontalTask {
    use pb::horizontal_task::Task as T;
    let t = match task {
        Task::BenchVector(b) => {
            T::Bench(pb::BenchTask { seed: b.seed, round: b.round, dim: b.dim as u64 })
        }
        Task::Census(c) => T::Census(pb::CensusTask { n_features: c.n_features as u32 }),
        Task::Grid(g) => T::Grid(pb::GridTask {
            occupied: g
                .occupied
                .iter()
                .map(|o| pb::OccupiedCells { cells: o.iter().map(|&c| u32::from(c)).collect() })
                .collect(),
        }),
        Task::Moments(m) => T::Moments(pb::MomentsTask {
            scales: m.scales.clone(),
            has_means: m.means.is_some(),
            means: m.means.clone().unwrap_or_default(),
        }),
        Task::Evaluate(EvalTask::Gbdt { .. }) => T::Evaluate(pb::EvaluateTask {
            model: Some(pb::evaluate_task::Model::Gbdt(pb::GbdtEval {})),
        }),
        Task::Evaluate(EvalTask::Linear { theta, .. }) => T::Evaluate(pb::EvaluateTask {
            model: Some(pb::evaluate_task::Model::Linear(pb::LinearEval { theta: theta.clone() })),
        }),
        Task::Gbdt(g) => T::Gbdt(pb::GbdtLevelTask {
            partial: Some(tree_to_wire(&g.partial)),
            nodes: g.nodes.iter().map(|&n| n as u32).collect(),
            features: g.features.iter().map(|&f| f as u32).collect(),
            with_root: g.with_root,
        }),
        Task::Logistic(l) => T::Logistic(pb::LogisticTask {
            theta: l.theta.clone(),
            bounds: l.bounds.clone(),
            loss_bound: l.loss_bound,
            step: Some(match &l.step {
                LrStep::Newton => pb::logistic_task::Step::Newton(pb::NewtonStep {}),
                LrStep::Local { epochs, batch_size, learning_rate, l2, mu, seed, round } => {
                    pb::logistic_task::Step::Local(pb::LocalStep {
                        epochs: *epochs as u32,
                        batch_size: *batch_size as u32,
                        learning_rate: *learning_rate,
                        l2: *l2,
                        mu: *mu,
                        seed: *seed,
                        round: *round,
                    })
                }
            }),
        }),
        Task::BinCounts(b) => {
            T::BinCounts(pb::BinCountsTask { rules: b.rules.iter().map(rule_to_wire).collect() })
        }
    };
    pb::HorizontalTask { task: Some(t) }
}

/// Largest vector a benchmark task may ask a party to draw (a bound on what a coordinator can
/// make a party allocate).
pub const MAX_BENCH_DIM: usize = 1 << 26;

/// Refuses a tree that splits on a feature the model does not have (routing a row through it
/// would index past the party's columns).
fn check_splits(tree: &[BinNode], n_features: usize) -> Result<(), TrainError> {
    match tree.iter().find_map(|n| match n {
        BinNode::Split { f, .. } if *f >= n_features => Some(*f),
        _ => None,
    }) {
        Some(f) => Err(proto(format!("tree: a split on feature {f} of {n_features}"))),
        None => Ok(()),
    }
}

/// Refuses a level task that names a feature twice or one the model does not have, or a node
/// twice or one that is not a leaf of the partial tree: the vector a party builds is then at
/// most one histogram of each feature per leaf (a task repeating indices, a few bytes each on
/// the wire, would make it allocate without bound).
fn check_level(
    partial: &[BinNode],
    nodes: &[usize],
    features: &[usize],
    n_features: usize,
) -> Result<(), TrainError> {
    check_splits(partial, n_features)?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(f) = features.iter().find(|&&f| f >= n_features || !seen.insert(f)) {
        return Err(proto(format!(
            "level task: feature {f} is repeated or not among the {n_features} features"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(n) = nodes
        .iter()
        .find(|&&n| !matches!(partial.get(n), Some(BinNode::Leaf { .. })) || !seen.insert(n))
    {
        return Err(proto(format!(
            "level task: node {n} is repeated or not a leaf of the partial tree"
        )));
    }
    Ok(())
}

/// The model a party holds between steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartyModel {
    /// Updates applied since the last clear.
    pub version: u64,
    setup: Option<(Vec<Vec<f64>>, f64)>,
    trees: Vec<Vec<BinNode>>,
    design: Option<Design>,
}

impl PartyModel {
    /// Applies one update. Updates at or below the held version are skipped (a repeat);
    /// one beyond the next is refused (a gap: the conductor resends from the held version).
    ///
    /// # Errors
    /// [`TrainError::Protocol`] for a gap or a malformed update.
    pub fn apply(&mut self, u: &pb::ModelUpdate) -> Result<(), TrainError> {
        use pb::model_update::Body;
        let body = u.body.as_ref().ok_or_else(|| proto("model update without a body"))?;
        if let Body::Clear(_) = body {
            *self = Self::default();
            return Ok(());
        }
        if u.version <= self.version {
            return Ok(());
        }
        if u.version != self.version + 1 {
            return Err(proto(format!(
                "model update {} follows version {}: an update is missing",
                u.version, self.version
            )));
        }
        match body {
            Body::Clear(_) => {}
            Body::GbdtSetup(s) => {
                if u.version != 1 {
                    return Err(proto("GBDT setup must be the first update"));
                }
                self.setup =
                    Some((s.edges.iter().map(|e| e.edges.clone()).collect(), s.base_score));
            }
            Body::Tree(t) => {
                if self.setup.is_none() || u.version != 2 + self.trees.len() as u64 {
                    return Err(proto("a tree update out of sequence"));
                }
                let tree = tree_from_wire(t)?;
                let n_features = self.setup.as_ref().map_or(0, |(e, _)| e.len());
                check_splits(&tree, n_features)?;
                self.trees.push(tree);
            }
            Body::Design(d) => {
                if u.version != 1 {
                    return Err(proto("the design must be the first update"));
                }
                self.design = Some(design_from_wire(d)?);
            }
        }
        self.version = u.version;
        Ok(())
    }

    fn gbdt(&self) -> Result<(&Vec<Vec<f64>>, f64), TrainError> {
        self.setup.as_ref().map(|(e, b)| (e, *b)).ok_or_else(|| proto("no GBDT setup received"))
    }

    fn design(&self) -> Result<&Design, TrainError> {
        self.design.as_ref().ok_or_else(|| proto("no design received"))
    }

    /// The domain task of a wire task, with the model this party holds.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] for a malformed task, one that needs a model the party does
    /// not hold, or a benchmark dimension beyond [`MAX_BENCH_DIM`].
    pub fn task(&self, t: &pb::HorizontalTask) -> Result<Task, TrainError> {
        use pb::horizontal_task::Task as T;
        Ok(match t.task.as_ref().ok_or_else(|| proto("task without a kind"))? {
            T::Bench(b) => {
                let dim = usize::try_from(b.dim).ok().filter(|&d| d <= MAX_BENCH_DIM).ok_or_else(
                    || proto(format!("benchmark dimension {} exceeds {MAX_BENCH_DIM}", b.dim)),
                )?;
                Task::BenchVector(BenchTask { seed: b.seed, round: b.round, dim })
            }
            T::Census(c) => Task::Census(CensusTask { n_features: c.n_features as usize }),
            T::Grid(g) => Task::Grid(GridTask {
                occupied: g
                    .occupied
                    .iter()
                    .map(|o| {
                        o.cells
                            .iter()
                            .map(|&c| u16::try_from(c).map_err(|_| proto(format!("grid cell {c}"))))
                            .collect::<Result<Vec<u16>, _>>()
                    })
                    .collect::<Result<_, _>>()?,
            }),
            T::Moments(m) => Task::Moments(MomentsTask {
                scales: m.scales.clone(),
                means: m.has_means.then(|| m.means.clone()),
            }),
            T::Evaluate(e) => match &e.model {
                Some(pb::evaluate_task::Model::Gbdt(_)) => {
                    let (edges, base_score) = self.gbdt()?;
                    Task::Evaluate(EvalTask::Gbdt {
                        edges: edges.clone(),
                        base_score,
                        trees: self.trees.clone(),
                    })
                }
                Some(pb::evaluate_task::Model::Linear(l)) => Task::Evaluate(EvalTask::Linear {
                    design: self.design()?.clone(),
                    theta: l.theta.clone(),
                }),
                None => return Err(proto("evaluation without a model")),
            },
            T::Gbdt(g) => {
                let (edges, base_score) = self.gbdt()?;
                let partial =
                    tree_from_wire(g.partial.as_ref().ok_or_else(|| proto("no partial tree"))?)?;
                let nodes: Vec<usize> = g.nodes.iter().map(|&n| n as usize).collect();
                let features: Vec<usize> = g.features.iter().map(|&f| f as usize).collect();
                check_level(&partial, &nodes, &features, edges.len())?;
                Task::Gbdt(Box::new(GbdtTask {
                    edges: edges.clone(),
                    base_score,
                    trees: self.trees.clone(),
                    partial,
                    nodes,
                    features,
                    with_root: g.with_root,
                }))
            }
            T::Logistic(l) => Task::Logistic(Box::new(LrTask {
                design: self.design()?.clone(),
                theta: l.theta.clone(),
                bounds: l.bounds.clone(),
                loss_bound: l.loss_bound,
                step: match l
                    .step
                    .as_ref()
                    .ok_or_else(|| proto("regression task without a step"))?
                {
                    pb::logistic_task::Step::Newton(_) => LrStep::Newton,
                    pb::logistic_task::Step::Local(s) => LrStep::Local {
                        epochs: s.epochs as usize,
                        batch_size: (s.batch_size as usize).max(1),
                        learning_rate: s.learning_rate,
                        l2: s.l2,
                        mu: s.mu,
                        seed: s.seed,
                        round: s.round,
                    },
                },
            })),
            T::BinCounts(b) => Task::BinCounts(BinCountsTask {
                rules: b.rules.iter().map(rule_from_wire).collect::<Result<_, _>>()?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Vec<BinNode> {
        vec![
            BinNode::Split {
                f: 1,
                rule: BinSplit::Categorical { left_bins: vec![0, 3] },
                miss: 7,
                dl: true,
                l: 1,
                r: 2,
            },
            BinNode::Leaf { v: -0.25 },
            BinNode::Split {
                f: 0,
                rule: BinSplit::Numeric { threshold_bin: 4 },
                miss: 9,
                dl: false,
                l: 3,
                r: 4,
            },
            BinNode::Leaf { v: 0.5 },
            BinNode::Leaf { v: 0.125 },
        ]
    }

    fn gbdt_task(n_trees: usize) -> Task {
        Task::Gbdt(Box::new(GbdtTask {
            edges: vec![vec![0.5, 1.5], vec![]],
            base_score: -1.2,
            trees: vec![tree(); n_trees],
            partial: vec![BinNode::Leaf { v: 0.0 }],
            nodes: vec![0],
            features: vec![0, 1],
            with_root: true,
        }))
    }

    #[test]
    fn a_party_rebuilds_every_task_from_updates_and_slim_tasks() {
        let mut model = PartyModel::default();
        for n in [0, 1, 3] {
            let task = gbdt_task(n);
            for u in updates_for(&task, model.version) {
                model.apply(&u).unwrap();
            }
            assert_eq!(model.version, model_version(&task));
            assert_eq!(model.task(&task_to_wire(&task)).unwrap(), task);
        }
        // A party that already holds everything gets nothing more.
        assert!(updates_for(&gbdt_task(3), model.version).is_empty());
        // A party ahead of the conductor is cleared and resent.
        let ups = updates_for(&gbdt_task(1), model.version);
        assert!(matches!(ups[0].body, Some(pb::model_update::Body::Clear(_))));
        for u in ups {
            model.apply(&u).unwrap();
        }
        assert_eq!(model.task(&task_to_wire(&gbdt_task(1))).unwrap(), gbdt_task(1));
    }

    #[test]
    fn gaps_and_malformed_updates_are_refused() {
        let mut model = PartyModel::default();
        let ups = updates_for(&gbdt_task(2), 0);
        assert!(model.apply(&ups[1]).is_err(), "a tree before the setup");
        model.apply(&ups[0]).unwrap();
        assert!(model.apply(&ups[2]).is_err(), "tree 2 before tree 1");
        let mut bad = tree_to_wire(&tree());
        if let Some(pb::bin_tree_node::Kind::Split(s)) = &mut bad.nodes[0].kind {
            s.left = 99;
        }
        let u = pb::ModelUpdate { version: 2, body: Some(pb::model_update::Body::Tree(bad)) };
        assert!(model.apply(&u).is_err());
        let big = pb::HorizontalTask {
            task: Some(pb::horizontal_task::Task::Bench(pb::BenchTask {
                seed: 1,
                round: 0,
                dim: u64::MAX,
            })),
        };
        assert!(model.task(&big).is_err());
    }
}
