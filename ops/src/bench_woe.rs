//! `fedcredit bench woe`: the federated WOE/IV stage (`fedcredit_federation::vertical::woe`:
//! FATE-style hetero feature binning, Liu et al., JMLR 2021, with the label encrypted under
//! exponential ElGamal, ElGamal 1985) between a label holder and one feature holder with
//! `features` columns over `rows` common rows, in one process on every core: the stage's real
//! code and messages, without the relay's sealing and sockets (a few milliseconds of
//! ChaCha20-Poly1305 for the 64 bytes a row). Table generation is not timed.

use std::time::Instant;

use fedcredit_federation::JobId;
use fedcredit_federation::vertical::woe::local;
use serde::Serialize;

/// What `bench woe` measured.
#[derive(Debug, Clone, Serialize)]
pub struct WoeBenchResult {
    /// Common rows.
    pub rows: usize,
    /// The feature holder's columns.
    pub features: usize,
    /// Wall time of the whole stage, seconds.
    pub seconds: f64,
    /// Bytes of the party-to-party payloads.
    pub payload_bytes: u64,
    /// Features whose IV reaches the job's threshold.
    pub selected: usize,
    /// Worker threads.
    pub threads: usize,
}

/// Runs the stage once over seeded tables.
///
/// # Errors
/// A message when the stage fails (not expected).
pub fn woe(rows: usize, features: usize, seed: u64) -> Result<WoeBenchResult, String> {
    let (spec, parties) = local::bench_job(rows, features, seed)?;
    let started = Instant::now();
    let run = local::run(&JobId("bench-woe".into()), &spec, parties, seed)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(WoeBenchResult {
        rows,
        features,
        seconds,
        payload_bytes: run.payload_bytes,
        selected: run.report.n_selected(),
        threads: std::thread::available_parallelism().map_or(1, usize::from),
    })
}
