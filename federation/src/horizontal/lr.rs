//! Horizontal logistic regression on encoded features (the `logistic` model) and the solver
//! the scorecard reuses on WOE features.
//!
//! Optimizers:
//! - `newton` (default): every round each bank contributes, at the coefficients the task
//!   carries, its log-loss sum, gradient and Hessian (upper triangle) as a secure sum; the
//!   trainer takes exactly the centralized Newton step of `logistic::fit` (the objective
//!   normalised by the pooled rows, L2 `1/(2C)‖β‖²` on the coefficients only) with an Armijo
//!   backtracking line search, so federated equals centralized up to the fixed-point rounding.
//!   Each element is divided by a public bound of its column (from the census exponents and the
//!   encoder), so every element stays within the clip.
//! - `fedavg`: FedAvg (McMahan et al., AISTATS 2017): each bank runs local epochs of mini-batch
//!   SGD from the global coefficients and contributes `n_i · θ_i` and `n_i`; the trainer averages.
//! - `fedprox`: FedAvg with the proximal term `μ/2 ‖θ − θ_global‖²` in the local objective
//!   (Li et al., MLSys 2020).
//!
//! The encoder's statistics come from [`super::prep`] (pooled sums and squared deviations), so
//! the encoder equals the centralized `LinearEncoder::fit` on the pooled rows.
//!
//! What the coordinator learns, per round: the pooled loss, gradient and Hessian (Newton) or the
//! row-weighted sum of the banks' local coefficients and the pooled rows (FedAvg).

use ndarray::{Array1, Array2, ArrayView1};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use fedcredit_models::binning::Binner;
use fedcredit_models::logistic::{LogisticModel, LogisticPipeline};
use fedcredit_models::preprocess::{EncoderParams, LinearEncoder};
use fedcredit_models::{Dataset, FeatureKind, FeatureSpec, Features};

use super::evaluate::{self, EvalTask};
use super::prep::{self, Prep};
use super::{Aggregate, Outcome, Progress, Request, Task, TrainError};
use crate::ids::PartyId;

/// The regulariser of a federated logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FedPenalty {
    /// No penalty.
    None,
    /// `1/(2C) ‖β‖²` (the centralized default).
    L2,
}

/// How the coefficients are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Secure sums of gradient and Hessian; the exact centralized Newton step.
    Newton,
    /// FedAvg: row-weighted averages of local SGD.
    Fedavg,
    /// FedProx: FedAvg with a proximal term `mu`.
    Fedprox,
}

/// Solver settings shared by `logistic` and `scorecard` jobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolverSpec {
    /// Regulariser; default L2.
    pub penalty: FedPenalty,
    /// Inverse regularisation strength; default 1.
    pub c: f64,
    /// Optimizer; default newton.
    pub optimizer: Optimizer,
    /// Newton iterations at most; default 100.
    pub max_iter: usize,
    /// Newton stops when the largest gradient component of the normalised objective is below.
    pub tol: f64,
    /// FedAvg / FedProx rounds; default 50.
    pub rounds: usize,
    /// Local epochs per round; default 1.
    pub local_epochs: usize,
    /// Mini-batch rows; default 64.
    pub batch_size: usize,
    /// SGD step size; default 0.1.
    pub learning_rate: f64,
    /// FedProx proximal strength; default 0.01.
    pub mu: f64,
    /// Seed of the local shuffles.
    pub seed: u64,
    /// Validation metrics every this many iterations / rounds (0 = only at the end).
    pub eval_every: usize,
}

impl Default for SolverSpec {
    fn default() -> Self {
        Self {
            penalty: FedPenalty::L2,
            c: 1.0,
            optimizer: Optimizer::Newton,
            max_iter: 100,
            tol: 1e-8,
            rounds: 50,
            local_epochs: 1,
            batch_size: 64,
            learning_rate: 0.1,
            mu: 0.01,
            seed: 42,
            eval_every: 10,
        }
    }
}

impl SolverSpec {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((k.to_string(), r));
        if !(self.c.is_finite() && self.c > 0.0) {
            return bad("c", format!("is {}; must be a finite number > 0", self.c));
        }
        if self.max_iter == 0 || self.rounds == 0 || self.local_epochs == 0 {
            return bad("max_iter", "max_iter, rounds and local_epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return bad("tol", format!("is {}; must be > 0", self.tol));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", format!("is {}; must be > 0", self.learning_rate));
        }
        if !(self.mu.is_finite() && self.mu >= 0.0) {
            return bad("mu", format!("is {}; must be >= 0", self.mu));
        }
        Ok(())
    }

    fn l2(&self, n_train: f64) -> f64 {
        match self.penalty {
            FedPenalty::None => 0.0,
            FedPenalty::L2 => 1.0 / (self.c * n_train),
        }
    }
}

/// Declares a `[model]` struct holding its own fields plus every [`SolverSpec`] field (serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, so the fields are spelled out).
macro_rules! with_solver_fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Regulariser; default L2.
            pub penalty: $crate::horizontal::lr::FedPenalty,
            /// Inverse regularisation strength; default 1.
            pub c: f64,
            /// Optimizer; default newton.
            pub optimizer: $crate::horizontal::lr::Optimizer,
            /// Newton iterations at most; default 100.
            pub max_iter: usize,
            /// Newton gradient tolerance; default 1e-8.
            pub tol: f64,
            /// FedAvg / FedProx rounds; default 50.
            pub rounds: usize,
            /// Local epochs per round; default 1.
            pub local_epochs: usize,
            /// Mini-batch rows; default 64.
            pub batch_size: usize,
            /// SGD step size; default 0.1.
            pub learning_rate: f64,
            /// FedProx proximal strength; default 0.01.
            pub mu: f64,
            /// Seed of the local shuffles.
            pub seed: u64,
            /// Validation metrics every this many iterations / rounds (0 = only at the end).
            pub eval_every: usize,
        }

        impl Default for $name {
            fn default() -> Self {
                let s = $crate::horizontal::lr::SolverSpec::default();
                Self {
                    $( $field: $default, )*
                    penalty: s.penalty,
                    c: s.c,
                    optimizer: s.optimizer,
                    max_iter: s.max_iter,
                    tol: s.tol,
                    rounds: s.rounds,
                    local_epochs: s.local_epochs,
                    batch_size: s.batch_size,
                    learning_rate: s.learning_rate,
                    mu: s.mu,
                    seed: s.seed,
                    eval_every: s.eval_every,
                }
            }
        }

        impl $name {
            /// The solver settings.
            pub fn solver(&self) -> $crate::horizontal::lr::SolverSpec {
                $crate::horizontal::lr::SolverSpec {
                    penalty: self.penalty,
                    c: self.c,
                    optimizer: self.optimizer,
                    max_iter: self.max_iter,
                    tol: self.tol,
                    rounds: self.rounds,
                    local_epochs: self.local_epochs,
                    batch_size: self.batch_size,
                    learning_rate: self.learning_rate,
                    mu: self.mu,
                    seed: self.seed,
                    eval_every: self.eval_every,
                }
            }
        }
    };
}
pub(crate) use with_solver_fields;

with_solver_fields! {
    /// `[model] kind = "logistic"`: the centralized `logistic` defaults (L2, C = 1, z-scored
    /// numeric columns) and the solver.
    pub struct LogisticSpec {
        /// Z-score numeric columns (as the centralized encoder); default true.
        pub standardize: bool = true,
    }
}

/// How a party turns its features into the regression's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Design {
    /// Imputed, indicated, standardised, one-hot columns.
    Encoder(LinearEncoder),
    /// WOE of the scorecard's bins.
    Woe(Binner),
}

impl Design {
    pub(crate) fn matrix(&self, f: &Features) -> Result<Array2<f64>, TrainError> {
        Ok(match self {
            Design::Encoder(e) => e.transform(f)?,
            Design::Woe(b) => b.transform_woe(f)?,
        })
    }

    fn n_cols(&self) -> usize {
        match self {
            Design::Encoder(e) => e.n_outputs(),
            Design::Woe(b) => b.features.len(),
        }
    }
}

/// What a party computes in a regression round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum LrStep {
    /// Loss, gradient and Hessian upper triangle at `theta`, each divided by its bounds.
    Newton,
    /// Local SGD from `theta`; contribute `n·θ_local`, `n` and the loss at `theta`.
    Local {
        /// Local epochs.
        epochs: usize,
        /// Rows per mini-batch.
        batch_size: usize,
        /// Step size.
        learning_rate: f64,
        /// L2 strength on the coefficients (normalised by the pooled rows).
        l2: f64,
        /// Proximal strength.
        mu: f64,
        /// Shuffle seed.
        seed: u64,
        /// Round (part of the shuffle seed).
        round: u64,
    },
}

/// A regression round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrTask {
    /// The columns.
    pub design: Design,
    /// Coefficients then intercept.
    pub theta: Vec<f64>,
    /// Bound of each column's absolute value (intercept last, 1).
    pub bounds: Vec<f64>,
    /// Bound of a row's log loss at `theta`.
    pub loss_bound: f64,
    /// What to compute.
    pub step: LrStep,
}

/// A party's cached design matrix.
#[derive(Debug, Clone)]
pub(crate) struct LrCache {
    design: Design,
    x: Array2<f64>,
}

fn row_loss(z: f64, y: f64) -> f64 {
    z.max(0.0) - y * z + (-z.abs()).exp().ln_1p()
}

fn sigmoid(z: f64) -> f64 {
    fedcredit_models::logistic::sigmoid(z)
}

fn vector_len(d: usize, step: &LrStep) -> usize {
    match step {
        LrStep::Newton => 1 + (d + 1) + (d + 1) * (d + 2) / 2,
        LrStep::Local { .. } => (d + 1) + 2,
    }
}

fn party_seed(seed: u64, round: u64, me: &PartyId) -> u64 {
    let mut h = Sha256::new();
    h.update(b"fedcredit-fedavg-v1");
    h.update(seed.to_le_bytes());
    h.update(round.to_le_bytes());
    h.update(me.0.as_bytes());
    let out: [u8; 32] = h.finalize().into();
    u64::from_le_bytes([out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]])
}

/// A party's vector for `task`.
pub(crate) fn contribute(
    cache: &mut Option<LrCache>,
    me: &PartyId,
    data: &Dataset,
    task: &LrTask,
) -> Result<Vec<f64>, TrainError> {
    if cache.as_ref().is_none_or(|c| c.design != task.design) {
        let x = task.design.matrix(&data.features)?;
        *cache = Some(LrCache { design: task.design.clone(), x });
    }
    let x = &cache.as_ref().ok_or_else(|| TrainError::Protocol("no cache".into()))?.x;
    let d = x.ncols();
    if task.theta.len() != d + 1 || task.bounds.len() != d + 1 {
        return Err(TrainError::Protocol(format!(
            "regression task has {} coefficients for {d} columns",
            task.theta.len()
        )));
    }
    let y = &data.label;
    let beta = ArrayView1::from(&task.theta[..d]);
    let b = task.theta[d];
    let z = x.dot(&beta) + b;
    let mut out = vec![0.0; vector_len(d, &task.step)];
    match &task.step {
        LrStep::Newton => {
            let bounds = &task.bounds;
            let mut loss = 0.0;
            let mut r = Array1::zeros(x.nrows());
            let mut w = Array1::zeros(x.nrows());
            for i in 0..x.nrows() {
                loss += row_loss(z[i], y[i]);
                let p = sigmoid(z[i]);
                r[i] = p - y[i];
                w[i] = p * (1.0 - p);
            }
            out[0] = loss / task.loss_bound;
            let g = x.t().dot(&r);
            for j in 0..d {
                out[1 + j] = g[j] / bounds[j];
            }
            out[1 + d] = r.sum();
            // Hessian of (β, b): [Xᵀ W X, Xᵀ w; wᵀ X, Σ w], upper triangle row by row.
            let xw = x * &w.view().insert_axis(ndarray::Axis(1));
            let h = x.t().dot(&xw);
            let hb = xw.sum_axis(ndarray::Axis(0));
            let mut at = 2 + d;
            for j in 0..=d {
                for k in j..=d {
                    let v = match (j == d, k == d) {
                        (false, false) => h[[j, k]],
                        (false, true) => hb[j],
                        _ => w.sum(),
                    };
                    out[at] = v / (bounds[j] * bounds[k]);
                    at += 1;
                }
            }
        }
        LrStep::Local { epochs, batch_size, learning_rate, l2, mu, seed, round } => {
            let n = x.nrows();
            let loss: f64 = (0..n).map(|i| row_loss(z[i], y[i])).sum();
            let global = task.theta.clone();
            let mut theta = task.theta.clone();
            let mut order: Vec<usize> = (0..n).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(party_seed(*seed, *round, me));
            for _ in 0..*epochs {
                order.shuffle(&mut rng);
                for batch in order.chunks(*batch_size) {
                    let mut grad = vec![0.0; d + 1];
                    for &i in batch {
                        let row = x.row(i);
                        let zi = row.dot(&ArrayView1::from(&theta[..d])) + theta[d];
                        let ri = sigmoid(zi) - y[i];
                        for j in 0..d {
                            grad[j] += ri * row[j];
                        }
                        grad[d] += ri;
                    }
                    let m = batch.len() as f64;
                    for j in 0..=d {
                        let mut gj = grad[j] / m + mu * (theta[j] - global[j]);
                        if j < d {
                            gj += l2 * theta[j];
                        }
                        theta[j] = (theta[j] - learning_rate * gj).clamp(-1e6, 1e6);
                    }
                }
            }
            for j in 0..=d {
                out[j] = n as f64 * theta[j];
            }
            out[d + 1] = n as f64;
            out[d + 2] = loss / task.loss_bound;
        }
    }
    Ok(out)
}

/// Solves `a x = b` for a symmetric positive definite `a` by Cholesky, adding a growing
/// ridge when `a` is not numerically positive definite.
#[allow(clippy::needless_range_loop)] // dense triangular loops read best with indices
fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = (0..n).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(1e-300);
    for shift in [0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4] {
        let mut l = vec![vec![0.0; n]; n];
        let mut ok = true;
        'outer: for i in 0..n {
            for j in 0..=i {
                let mut s = a[i][j] + if i == j { shift * scale } else { 0.0 };
                for k in 0..j {
                    s -= l[i][k] * l[j][k];
                }
                if i == j {
                    if s <= 0.0 || !s.is_finite() {
                        ok = false;
                        break 'outer;
                    }
                    l[i][i] = s.sqrt();
                } else {
                    l[i][j] = s / l[j][j];
                }
            }
        }
        if !ok {
            continue;
        }
        let mut y = vec![0.0; n];
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
            y[i] = (b[i] - s) / l[i][i];
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|k| l[k][i] * x[k]).sum();
            x[i] = (y[i] - s) / l[i][i];
        }
        return Some(x);
    }
    None
}

/// The column bounds of a design given the census exponents (`scale_for` per feature).
pub(crate) fn design_bounds(
    design: &Design,
    specs: &[FeatureSpec],
    scales: &[f64],
) -> Result<Vec<f64>, TrainError> {
    let mut bounds = match design {
        Design::Encoder(enc) => {
            // Numeric columns are affine in the raw value: the extremes ±1/scale bound them.
            let d = specs.len();
            let mut rows = Vec::with_capacity(2 * d);
            for sign in [1.0, -1.0] {
                for (spec, &s) in specs.iter().zip(scales) {
                    rows.push(match spec.kind {
                        FeatureKind::Numeric if s > 0.0 => sign / s,
                        _ => f64::NAN,
                    });
                }
            }
            let f = Features::new(
                specs.to_vec(),
                Array2::from_shape_vec((2, d), rows)
                    .map_err(|e| TrainError::Protocol(e.to_string()))?,
            )?;
            let t = enc.transform(&f)?;
            (0..t.ncols()).map(|j| t[[0, j]].abs().max(t[[1, j]].abs()).max(1.0)).collect()
        }
        Design::Woe(b) => b
            .features
            .iter()
            .map(|fb| fb.bins.iter().map(|x| x.woe.abs()).fold(1.0, f64::max))
            .collect::<Vec<f64>>(),
    };
    // Powers of two keep the scaling exact.
    for v in &mut bounds {
        *v = 2f64.powi(v.log2().ceil() as i32);
    }
    bounds.push(1.0);
    Ok(bounds)
}

/// The regression's state on the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LrEngine {
    opt: SolverSpec,
    design: Design,
    bounds: Vec<f64>,
    n_train: f64,
    clip: f64,
    /// Accepted coefficients (intercept last).
    theta: Vec<f64>,
    /// The point being evaluated.
    trial: Vec<f64>,
    /// Objective and gradient at `theta` (Newton).
    f: Option<f64>,
    g: Vec<f64>,
    dir: Vec<f64>,
    step: f64,
    slope: f64,
    /// Newton iterations or FedAvg rounds done.
    pub iter: usize,
    pub done: bool,
    /// Latest training loss (mean log loss).
    pub loss: Option<f64>,
}

impl LrEngine {
    pub(crate) fn new(
        opt: SolverSpec,
        design: Design,
        bounds: Vec<f64>,
        n_train: f64,
        clip: f64,
    ) -> Self {
        let d = design.n_cols();
        Self {
            opt,
            design,
            bounds,
            n_train,
            clip,
            theta: vec![0.0; d + 1],
            trial: vec![0.0; d + 1],
            f: None,
            g: Vec::new(),
            dir: Vec::new(),
            step: 1.0,
            slope: 0.0,
            iter: 0,
            done: false,
            loss: None,
        }
    }

    pub(crate) fn total(&self) -> usize {
        match self.opt.optimizer {
            Optimizer::Newton => self.opt.max_iter,
            _ => self.opt.rounds,
        }
    }

    pub(crate) fn model(&self) -> LogisticModel {
        let d = self.theta.len() - 1;
        LogisticModel { coefficients: self.theta[..d].to_vec(), intercept: self.theta[d] }
    }

    pub(crate) fn design(&self) -> &Design {
        &self.design
    }

    fn loss_bound(&self, theta: &[f64]) -> f64 {
        let d = theta.len() - 1;
        let z: f64 = theta[d].abs() + (0..d).map(|j| theta[j].abs() * self.bounds[j]).sum::<f64>();
        2f64.powi((z + 1.0).log2().ceil() as i32)
    }

    pub(crate) fn request(&self) -> Aggregate {
        let d = self.theta.len() - 1;
        let (theta, step, what) = match self.opt.optimizer {
            Optimizer::Newton => {
                (self.trial.clone(), LrStep::Newton, format!("newton iteration {}", self.iter + 1))
            }
            opt => (
                self.theta.clone(),
                LrStep::Local {
                    epochs: self.opt.local_epochs,
                    batch_size: self.opt.batch_size,
                    learning_rate: self.opt.learning_rate,
                    l2: self.opt.l2(self.n_train),
                    mu: if opt == Optimizer::Fedprox { self.opt.mu } else { 0.0 },
                    seed: self.opt.seed,
                    round: self.iter as u64,
                },
                format!("fedavg round {}/{}", self.iter + 1, self.opt.rounds),
            ),
        };
        let loss_bound = self.loss_bound(&theta);
        let vector_len = vector_len(d, &step);
        Aggregate {
            task: Task::Logistic(Box::new(LrTask {
                design: self.design.clone(),
                theta,
                bounds: self.bounds.clone(),
                loss_bound,
                step,
            })),
            vector_len,
            clip: self.clip,
            what,
        }
    }

    /// Takes a round's sum; returns whether an iteration / round completed.
    #[allow(clippy::needless_range_loop)] // (β, b) index arithmetic
    pub(crate) fn absorb(&mut self, sum: &[f64]) -> Result<bool, TrainError> {
        let d = self.theta.len() - 1;
        let theta_req = match self.opt.optimizer {
            Optimizer::Newton => self.trial.clone(),
            _ => self.theta.clone(),
        };
        let loss_bound = self.loss_bound(&theta_req);
        match self.opt.optimizer {
            Optimizer::Newton => {
                if sum.len() != vector_len(d, &LrStep::Newton) {
                    return Err(TrainError::Protocol(format!(
                        "newton sum has {} elements",
                        sum.len()
                    )));
                }
                let n = self.n_train;
                let l2 = self.opt.l2(n);
                let beta2: f64 = self.trial[..d].iter().map(|b| b * b).sum();
                let f = sum[0] * loss_bound / n + 0.5 * l2 * beta2;
                let mut g: Vec<f64> = (0..=d).map(|j| sum[1 + j] * self.bounds[j] / n).collect();
                for j in 0..d {
                    g[j] += l2 * self.trial[j];
                }
                let gmax = g.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
                let accept = match self.f {
                    None => true,
                    Some(f0) => f <= f0 + 1e-4 * self.step * self.slope || gmax <= self.opt.tol,
                };
                if !accept {
                    self.step *= 0.5;
                    if self.step < 1e-10 {
                        // No further decrease is measurable at the sums' resolution.
                        self.done = true;
                    } else {
                        self.trial =
                            (0..=d).map(|j| self.theta[j] + self.step * self.dir[j]).collect();
                    }
                    return Ok(false);
                }
                let previous = self.f;
                self.theta = self.trial.clone();
                self.f = Some(f);
                self.loss = Some(sum[0] * loss_bound / n);
                self.g = g;
                if previous.is_some() {
                    self.iter += 1;
                }
                let tiny = previous.is_some_and(|f0| (f0 - f).abs() <= 1e-15 * f.abs().max(1.0));
                if gmax <= self.opt.tol || self.iter >= self.opt.max_iter || tiny {
                    self.done = true;
                    return Ok(true);
                }
                let mut h = vec![vec![0.0; d + 1]; d + 1];
                let mut at = 2 + d;
                for j in 0..=d {
                    for k in j..=d {
                        let v = sum[at] * self.bounds[j] * self.bounds[k] / n;
                        h[j][k] = v;
                        h[k][j] = v;
                        at += 1;
                    }
                }
                for (j, row) in h.iter_mut().enumerate().take(d) {
                    row[j] += l2;
                }
                let neg: Vec<f64> = self.g.iter().map(|v| -v).collect();
                let mut dir = solve_spd(&h, &neg).unwrap_or_else(|| neg.clone());
                let mut slope: f64 = dir.iter().zip(&self.g).map(|(a, b)| a * b).sum();
                if slope >= 0.0 || slope.is_nan() {
                    dir = neg;
                    slope = dir.iter().zip(&self.g).map(|(a, b)| a * b).sum();
                }
                self.dir = dir;
                self.slope = slope;
                self.step = 1.0;
                self.trial = (0..=d).map(|j| self.theta[j] + self.dir[j]).collect();
                Ok(previous.is_some())
            }
            _ => {
                if sum.len() != d + 3 {
                    return Err(TrainError::Protocol(format!(
                        "fedavg sum has {} elements",
                        sum.len()
                    )));
                }
                let n = sum[d + 1];
                if n < 1.0 {
                    return Err(TrainError::Protocol("fedavg round without rows".into()));
                }
                self.loss = Some(sum[d + 2] * loss_bound / n);
                self.theta = (0..=d).map(|j| sum[j] / n).collect();
                self.iter += 1;
                if self.iter >= self.opt.rounds {
                    self.done = true;
                }
                Ok(true)
            }
        }
    }
}

/// The eval request for the engine's current coefficients.
pub(crate) fn eval_request(engine: &LrEngine, clip: f64, what: String) -> Aggregate {
    Aggregate {
        task: Task::Evaluate(EvalTask::Linear {
            design: engine.design().clone(),
            theta: engine.theta.clone(),
        }),
        vector_len: evaluate::vector_len(),
        clip,
        what,
    }
}

/// The coordinator's side of a `logistic` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticTrainer {
    spec: LogisticSpec,
    specs: Vec<FeatureSpec>,
    clip: f64,
    prep: Prep,
    engine: Option<LrEngine>,
    eval_pending: bool,
    metrics: std::collections::BTreeMap<String, f64>,
    n_train: f64,
    rounds: u64,
}

impl LogisticTrainer {
    pub(crate) fn new(spec: &LogisticSpec, specs: Vec<FeatureSpec>, clip: f64) -> Self {
        Self {
            spec: *spec,
            prep: Prep::new(specs.clone(), true, clip),
            specs,
            clip,
            engine: None,
            eval_pending: false,
            metrics: Default::default(),
            n_train: 0.0,
            rounds: 0,
        }
    }

    fn pipeline(&self) -> Result<LogisticPipeline, TrainError> {
        let e = self.engine.as_ref().ok_or_else(|| TrainError::Protocol("no model yet".into()))?;
        match e.design() {
            Design::Encoder(enc) => Ok(LogisticPipeline { encoder: enc.clone(), model: e.model() }),
            Design::Woe(_) => Err(TrainError::Protocol("logistic job with a WOE design".into())),
        }
    }

    pub(crate) fn next_request(&mut self) -> Result<Request, TrainError> {
        if let Some(a) = self.prep.next() {
            return Ok(Request::Aggregate(a));
        }
        let e = self.engine.as_ref().ok_or_else(|| TrainError::Protocol("no engine".into()))?;
        let model = fedcredit_models::artifact::Model::Logistic(self.pipeline()?);
        training_request(
            e,
            model,
            &self.specs,
            self.eval_pending,
            self.clip,
            &self.metrics,
            self.n_train,
            self.rounds,
        )
    }

    pub(crate) fn absorb(&mut self, sum: &[f64], _who: &[PartyId]) -> Result<(), TrainError> {
        self.rounds += 1;
        if !self.prep.is_done() {
            self.prep.absorb(sum)?;
            if self.prep.is_done() {
                let (Some(census), Some(stats)) = (&self.prep.census, &self.prep.stats) else {
                    return Err(TrainError::Protocol("preprocessing incomplete".into()));
                };
                let enc = LinearEncoder::from_stats(
                    &self.specs,
                    stats,
                    census.rows,
                    &EncoderParams { standardize: self.spec.standardize },
                )?;
                let scales: Vec<f64> = census.occupied.iter().map(|o| prep::scale_for(o)).collect();
                let design = Design::Encoder(enc);
                let bounds = design_bounds(&design, &self.specs, &scales)?;
                self.n_train = census.rows;
                self.engine =
                    Some(LrEngine::new(self.spec.solver(), design, bounds, census.rows, self.clip));
                self.prep.release_grid();
            }
            return Ok(());
        }
        absorb_training(
            self.engine.as_mut(),
            &mut self.eval_pending,
            &mut self.metrics,
            self.spec.eval_every,
            sum,
        )
    }

    pub(crate) fn progress(&self) -> Progress {
        training_progress(self.engine.as_ref(), "statistics", &self.metrics)
    }
}

/// The training stage shared by logistic regression and the scorecard: a sum is either the
/// pending federated evaluation or the engine's next step; an evaluation is asked for every
/// `every` iterations and at the end.
pub(crate) fn absorb_training(
    engine: Option<&mut LrEngine>,
    eval_pending: &mut bool,
    metrics: &mut std::collections::BTreeMap<String, f64>,
    every: usize,
    sum: &[f64],
) -> Result<(), TrainError> {
    if *eval_pending {
        metrics.extend(evaluate::metrics_from_sum(sum)?);
        *eval_pending = false;
        return Ok(());
    }
    let e = engine.ok_or_else(|| TrainError::Protocol("no engine".into()))?;
    let stepped = e.absorb(sum)?;
    if e.done || (stepped && every > 0 && e.iter.is_multiple_of(every)) {
        *eval_pending = true;
    }
    Ok(())
}

/// Progress of the training stage (`before` names the stage before the engine exists).
pub(crate) fn training_progress(
    engine: Option<&LrEngine>,
    before: &str,
    metrics: &std::collections::BTreeMap<String, f64>,
) -> Progress {
    match engine {
        None => Progress { stage: before.into(), ..Default::default() },
        Some(e) => Progress {
            stage: format!("iteration {}/{}", e.iter, e.total()),
            done: e.iter as u64,
            total: e.total() as u64,
            loss: e.loss,
            valid_auc: metrics.get("auc").copied(),
        },
    }
}

/// The next request of the training stage shared by logistic regression and the scorecard:
/// a pending federated evaluation of `model`, the finished model with its metrics, or the
/// engine's next step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn training_request(
    engine: &LrEngine,
    model: fedcredit_models::artifact::Model,
    specs: &[FeatureSpec],
    eval_pending: bool,
    clip: f64,
    metrics: &std::collections::BTreeMap<String, f64>,
    n_train: f64,
    rounds: u64,
) -> Result<Request, TrainError> {
    if eval_pending {
        return Ok(Request::Aggregate(eval_request(
            engine,
            clip,
            format!("validation after iteration {}", engine.iter),
        )));
    }
    if engine.done {
        let mut metrics = metrics.clone();
        metrics.insert("n_train".into(), n_train);
        metrics.insert("iterations".into(), engine.iter as f64);
        metrics.insert("rounds".into(), rounds as f64);
        if let Some(l) = engine.loss {
            metrics.insert("train_log_loss".into(), l);
        }
        let artifact = fedcredit_models::artifact::ModelArtifact::new(model, specs.to_vec());
        return Ok(Request::Finished(Box::new(Outcome {
            artifact_json: Some(artifact.to_json()?),
            metrics,
        })));
    }
    Ok(Request::Aggregate(engine.request()))
}
