//! Progress reports from inside long fits (one per solver iteration of logistic regression, one
//! per boosting round of GBDT), for callers that show them, such as the CLI's progress bars.
//!
//! Models do no I/O: a fit calls the caller's hook, a `&mut dyn FnMut(FitProgress)`, and goes
//! on. The hook runs on the fitting thread between iterations, so it should be cheap (drawing
//! a progress bar is; indicatif rate-limits its redraws). [`no_progress`] is the hook that
//! ignores every report, used by the entry points without a hook.

/// How far a fit has come.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FitProgress {
    /// A logistic-regression solver finished an outer iteration (Newton, L-BFGS, OWL-QN or
    /// proximal Newton step).
    Iteration {
        /// Iterations done (1-based).
        iteration: usize,
        /// The iteration budget (`max_iter`); most fits converge well before it.
        max_iter: usize,
        /// The weight-normalised objective after the iteration (penalty included).
        objective: f64,
        /// Largest component of the (minimum-norm sub)gradient; the fit stops below `tol`.
        gradient_max: f64,
        /// The convergence tolerance on `gradient_max`.
        tol: f64,
    },
    /// A gradient-boosting round finished (one more tree).
    Tree {
        /// Trees done (1-based).
        done: usize,
        /// Trees asked for (`n_trees`; early stopping may end sooner).
        total: usize,
        /// Validation log loss after this tree, when the fit has a validation set.
        valid_logloss: Option<f64>,
    },
}

impl FitProgress {
    /// `(done, total)` for a progress bar: iterations against `max_iter`, trees against
    /// `n_trees`.
    pub fn position(&self) -> (u64, u64) {
        match *self {
            Self::Iteration { iteration, max_iter, .. } => (iteration as u64, max_iter as u64),
            Self::Tree { done, total, .. } => (done as u64, total as u64),
        }
    }

    /// A short human-readable status, e.g. `iteration 12, |gradient| 3.1e-5 (tol 1e-8)` or
    /// `tree 40/100`.
    pub fn describe(&self) -> String {
        match *self {
            Self::Iteration { iteration, gradient_max, tol, .. } => {
                format!("iteration {iteration}, |gradient| {gradient_max:.1e} (tol {tol:.0e})")
            }
            Self::Tree { done, total, valid_logloss: Some(l) } => {
                format!("tree {done}/{total}, valid log loss {l:.4}")
            }
            Self::Tree { done, total, valid_logloss: None } => format!("tree {done}/{total}"),
        }
    }
}

/// The hook that ignores every report.
pub fn no_progress(_: FitProgress) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_descriptions() {
        let it = FitProgress::Iteration {
            iteration: 12,
            max_iter: 1000,
            objective: 0.3,
            gradient_max: 3.1e-5,
            tol: 1e-8,
        };
        assert_eq!(it.position(), (12, 1000));
        assert_eq!(it.describe(), "iteration 12, |gradient| 3.1e-5 (tol 1e-8)");
        let t = FitProgress::Tree { done: 40, total: 100, valid_logloss: None };
        assert_eq!(t.position(), (40, 100));
        assert_eq!(t.describe(), "tree 40/100");
        let v = FitProgress::Tree { done: 1, total: 2, valid_logloss: Some(0.25) };
        assert!(v.describe().contains("0.2500"));
        no_progress(v);
    }
}
