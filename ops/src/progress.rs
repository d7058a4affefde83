//! Follows a job until it ends, with a live progress bar on stderr: the stage, rounds done,
//! the training loss and the federated validation AUC.

use std::time::Duration;

use fedcredit_federation::horizontal::Progress;
use fedcredit_proto::pb;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{ControlClient, OpsError};

/// Whether a job state is final.
pub fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

/// Follows job `id` to its end and returns its final info. With `bar = false` (not a terminal,
/// or `--quiet`), prints one line per change of stage instead.
///
/// # Errors
/// [`OpsError`] when the coordinator cannot be reached or the stream breaks.
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
    let mut last_line = String::new();
    let mut last = client.job(id).await?;
    // A stream can break if the coordinator restarts: reconnect and go on until the job ends.
    for _ in 0..1000 {
        let mut stream = match client.watch(id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let info = match stream.message().await {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "watch stream broke; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            };
            let p: Progress = serde_json::from_str(&info.progress_json).unwrap_or_default();
            let line = describe(&info, &p);
            match &pb_bar {
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
        last = client.job(id).await?;
        if is_final(&last.state) {
            break;
        }
    }
    if let Some(b) = pb_bar {
        b.finish_and_clear();
    }
    Ok(last)
}

/// One line about a job: state, stage, loss and validation AUC.
pub fn describe(info: &pb::JobInfo, p: &Progress) -> String {
    let mut s =
        format!("{} {}", info.state, if p.stage.is_empty() { &info.status } else { &p.stage });
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
