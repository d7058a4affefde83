//! Follows a job until it ends, with a live progress bar on stderr: the stage, rounds done,
//! the training loss and the federated validation AUC; through a coordinator restart too.

use std::time::{Duration, Instant};

use fedcredit_federation::horizontal::Progress;
use fedcredit_proto::pb;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{ControlClient, OpsError};

/// Whether a job state is final.
pub fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

/// How long [`follow`] keeps trying while the coordinator cannot be reached (a restart takes
/// seconds; resuming a large job's state may take longer).
pub const RECONNECT_FOR: Duration = Duration::from_secs(600);

/// The coordinator being away while a job is followed: since when, and the next wait.
struct Outage {
    since: Option<Instant>,
    delay: Duration,
}

impl Outage {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { since: None, delay: Self::FIRST }
    }

    /// Notes a failed call; waits before the next try, or gives up after [`RECONNECT_FOR`].
    async fn wait(
        &mut self,
        err: OpsError,
        say: &mut impl FnMut(&str),
        client: &mut ControlClient,
    ) -> Result<(), OpsError> {
        if !err.is_transient() {
            return Err(err);
        }
        let since = *self.since.get_or_insert_with(|| {
            say(&format!("coordinator restarting… reconnecting ({err})"));
            tracing::info!(error = %err, "lost the coordinator; reconnecting");
            Instant::now()
        });
        if since.elapsed() >= RECONNECT_FOR {
            return Err(OpsError::Local(format!(
                "the coordinator has been unreachable for {} s; the job goes on without this \
                 client (follow it again with `fedcredit jobs watch`): {err}",
                since.elapsed().as_secs()
            )));
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
        // A fresh connection, in case the old one does not recover by itself.
        let _ = client.reconnect().await;
        Ok(())
    }

    fn back(&mut self, say: &mut impl FnMut(&str)) {
        if let Some(since) = self.since.take() {
            say(&format!(
                "coordinator back after {:.1} s; following the job",
                since.elapsed().as_secs_f64()
            ));
        }
        self.delay = Self::FIRST;
    }
}

/// Follows job `id` to its end and returns its final info. With `bar = false` (not a terminal,
/// or `--quiet`), prints one line per change of stage instead. Follows the job through a
/// coordinator restart: while the coordinator cannot be reached it says "coordinator
/// restarting…" and retries with backoff for up to [`RECONNECT_FOR`].
///
/// # Errors
/// [`OpsError`] when the coordinator answers with an error (the job is unknown, the caller is
/// not the operator) or stays unreachable for [`RECONNECT_FOR`].
pub async fn follow(
    client: &mut ControlClient,
    id: &str,
    bar: bool,
) -> Result<pb::JobInfo, OpsError> {
    let pb_bar = if bar {
        let b = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let bar_for_say = pb_bar.clone();
    let mut say = move |line: &str| match &bar_for_say {
        Some(b) => b.println(line),
        None => eprintln!("{line}"),
    };
    let result = follow_inner(client, id, pb_bar.as_ref(), &mut say).await;
    if let Some(b) = pb_bar {
        b.finish_and_clear();
    }
    result
}

async fn follow_inner(
    client: &mut ControlClient,
    id: &str,
    pb_bar: Option<&ProgressBar>,
    say: &mut impl FnMut(&str),
) -> Result<pb::JobInfo, OpsError> {
    let mut outage = Outage::new();
    let mut last = loop {
        match client.job(id).await {
            Ok(j) => break j,
            Err(e) => outage.wait(e, say, client).await?,
        }
    };
    outage.back(say);
    let mut last_line = String::new();
    while !is_final(&last.state) {
        let mut stream = match client.watch(id).await {
            Ok(s) => s,
            Err(e) => {
                outage.wait(e, say, client).await?;
                continue;
            }
        };
        loop {
            let info = match stream.message().await {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(error = %status, "watch stream broke");
                    outage.wait(status.into(), say, client).await?;
                    break;
                }
            };
            outage.back(say);
            let p: Progress = serde_json::from_str(&info.progress_json).unwrap_or_default();
            let line = describe(&info, &p);
            match pb_bar {
                Some(b) => {
                    b.set_length(p.total.max(1));
                    b.set_position(p.done);
                    b.set_message(line.clone());
                }
                None if line != last_line && !p.stage.is_empty() => eprintln!("{line}"),
                None => {}
            }
            last_line = line;
            last = info;
            if is_final(&last.state) {
                break;
            }
        }
        if is_final(&last.state) {
            break;
        }
        // The stream ended before the job did (the coordinator stopped, or the job task was
        // handed over to a restarted coordinator): read the job again.
        match client.job(id).await {
            Ok(j) => {
                outage.back(say);
                last = j;
            }
            Err(e) => outage.wait(e, say, client).await?,
        }
    }
    Ok(last)
}

/// One line about a job: state, stage, loss and validation AUC.
pub fn describe(info: &pb::JobInfo, p: &Progress) -> String {
    // A finished job's last status ("waiting for …", "ended") no longer describes it.
    let status = if is_final(&info.state) { "" } else { info.status.as_str() };
    let what = if p.stage.is_empty() { status } else { p.stage.as_str() };
    let mut s = if what.is_empty() { info.state.clone() } else { format!("{} {what}", info.state) };
    if let Some(l) = p.loss {
        s.push_str(&format!(" loss {l:.4}"));
    }
    if let Some(a) = p.valid_auc {
        s.push_str(&format!(" valid AUC {a:.4}"));
    }
    if !info.status.is_empty() && !p.stage.is_empty() && !is_final(&info.state) {
        s.push_str(&format!(" [{}]", info.status));
    }
    s
}
