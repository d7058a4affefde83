//! Progress bars on stderr for the fits the CLI runs itself (`bench accuracy`, `demo`): one
//! bar per fit, advanced by the models' progress reports (trees against `n_trees`, solver
//! iterations with the gradient norm against its tolerance), with the runner's step lines
//! printed above it. Without a terminal on stderr there are no bars, only the lines.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fedcredit_benches::Observer;
use fedcredit_models::FitProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An [`Observer`] that prints the runner's lines with the elapsed time and draws a bar per fit.
#[derive(Debug)]
pub struct FitBars {
    started: Instant,
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl FitBars {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self { started: Instant::now(), enabled: std::io::stderr().is_terminal(), bar: None }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Observer for FitBars {
    fn line(&mut self, line: &str) {
        let text = format!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn fit_started(&mut self, model: &str, setting: &str) {
        if !self.enabled {
            return;
        }
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(Self::style("{spinner} {prefix} [{elapsed_precise}] {msg}"));
        b.set_prefix(format!("{model} on {setting}"));
        b.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(b);
    }

    fn fit_progress(&mut self, progress: FitProgress) {
        let Some(b) = &self.bar else {
            return;
        };
        let (done, total) = progress.position();
        match progress {
            FitProgress::Tree { valid_logloss, .. } => {
                if b.length().is_none() {
                    b.set_style(Self::style(
                        "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} trees {msg}",
                    ));
                }
                b.set_length(total);
                b.set_position(done);
                if let Some(l) = valid_logloss {
                    b.set_message(format!("valid log loss {l:.4}"));
                }
            }
            // Solver iterations end at convergence, long before `max_iter`: no bar length.
            _ => {
                b.set_position(done);
                b.set_message(progress.describe());
            }
        }
    }

    fn fit_finished(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
