//! `fedcredit bench secagg`: secure-aggregation rounds over gRPC between separate processes on
//! loopback (a coordinator and one daemon per party, mutual TLS), beside the plaintext baseline:
//! the same seeded vectors, the same transport and fixed-point encoding, no keys, no masks.
//!
//! Round times come from the coordinator's round records (first message out to sum absorbed).
//! The first round of each job is a warm-up and is left out of the means; with dropouts, the
//! parties told to die exit just before sending their masked vector in round 1, and that
//! round's time is reported apart (it includes the recovery from the survivors' shares).
//!
//! `fedcredit bench psi`: one vertical `align` job (`federation::vertical::psi`: ECDH PSI over
//! ristretto255 after Huberman, Franklin and Hogg 1999 with RFC 9380/9496 hash to group, or
//! server-aided PSI after Kamara et al., FC 2014) between separate processes on loopback, over
//! generated tables of `size` ids each, `overlap` of them common to all parties. `seconds` is
//! the alignment step from the coordinator's step record (tables already loaded).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::client::{ControlClient, OpsError};
use crate::launch::{LaunchOptions, LocalFederation, PartySetup};
use crate::progress;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SecaggBenchConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory.
    pub dir: PathBuf,
    /// Parties.
    pub parties: usize,
    /// Floats per vector.
    pub dim: usize,
    /// Rounds per job.
    pub rounds: u64,
    /// Parties that drop out before their masked upload in round 1 (secure job only).
    pub dropouts: usize,
    /// Mutual TLS (default) or plain text.
    pub tls: bool,
    /// SecAgg+ neighbours per party (`None` = complete graph).
    pub degree: Option<usize>,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct SecaggBenchResult {
    /// Parties at the start.
    pub parties: usize,
    /// Floats per vector.
    pub dim: usize,
    /// Rounds per job.
    pub rounds: u64,
    /// Parties that dropped out.
    pub dropouts: usize,
    /// Mutual TLS.
    pub tls: bool,
    /// SecAgg+ neighbours per party (`None` = complete graph).
    pub degree: Option<usize>,
    /// Mean time of a secure round (warm-up and dropout rounds excluded), ms.
    pub round_ms: f64,
    /// Mean time of a plaintext round (warm-up excluded), ms.
    pub plaintext_round_ms: f64,
    /// `round_ms / plaintext_round_ms`.
    pub ratio: f64,
    /// Time of the round with the dropouts, ms (it waits the job's grace period of
    /// `DROPOUT_GRACE_SECS` for the gone parties before recovering without them).
    pub dropout_round_ms: Option<f64>,
    /// Largest |secure sum − plain sum of the contributors' vectors| over all rounds.
    pub max_abs_error: f64,
    /// Fewest contributors in a secure round.
    pub min_contributors: usize,
}

/// Mean time of the rounds numbered `first` and after: from the start of round `first` to the
/// end of the last round, over their count.
fn steady_mean_ms(rounds: &[fedcredit_proto::pb::RoundInfo], first: u64) -> f64 {
    let steady: Vec<_> = rounds.iter().filter(|r| r.round >= first).collect();
    match (steady.iter().map(|r| r.started_ms).min(), steady.iter().map(|r| r.finished_ms).max()) {
        (Some(a), Some(b)) if !steady.is_empty() => (b - a) as f64 / steady.len() as f64,
        _ => f64::NAN,
    }
}

/// Seconds the secure job waits for a party that exited before going on without it, when the
/// benchmark makes parties drop out: the round then measures recovery, not the coordinator's
/// default grace period of a minute.
const DROPOUT_GRACE_SECS: u64 = 2;

fn job_toml(cfg: &SecaggBenchConfig, names: &[String], plaintext: bool) -> String {
    let parties: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let min = if plaintext { cfg.parties } else { cfg.parties - cfg.dropouts };
    let grace = if plaintext || cfg.dropouts == 0 {
        String::new()
    } else {
        format!("grace_secs = {DROPOUT_GRACE_SECS}\n")
    };
    format!(
        "name = \"bench-secagg{}\"\nparties = [{}]\nmin_parties = {min}\nphase_timeout_secs = 30\n{grace}\
         [data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"secagg_bench\"\ndim = {}\nrounds = {}\n\
         seed = 7\nplaintext = {plaintext}\n{secagg}",
        if plaintext { "-plaintext" } else { "" },
        parties.join(", "),
        cfg.dim,
        cfg.rounds,
        secagg = cfg.degree.map(|d| format!("[secagg]\ndegree = {d}\n")).unwrap_or_default()
    )
}

pub(crate) async fn run_job(
    client: &mut ControlClient,
    toml: &str,
) -> Result<(Vec<fedcredit_proto::pb::RoundInfo>, serde_json::Value), OpsError> {
    let job = client.submit(toml).await?;
    let end = progress::follow(client, &job.id, std::io::stderr().is_terminal()).await?;
    if end.state != "succeeded" {
        return Err(OpsError::Local(format!("job {} {}: {}", job.id, end.state, end.error)));
    }
    let metrics = serde_json::from_str(&end.metrics_json).unwrap_or(serde_json::Value::Null);
    Ok((client.rounds(&job.id).await?, metrics))
}

/// Runs the benchmark; `say` gets progress lines.
///
/// # Errors
/// [`OpsError`] when processes cannot start or a job fails (see the logs under `dir/logs`).
pub async fn secagg(
    cfg: &SecaggBenchConfig,
    mut say: impl FnMut(&str),
) -> Result<SecaggBenchResult, OpsError> {
    if cfg.parties < 2 || cfg.dropouts + 2 > cfg.parties || cfg.rounds < 3 {
        return Err(OpsError::Local(
            "need at least 2 parties left after the dropouts and at least 3 rounds".into(),
        ));
    }
    let names: Vec<String> = (1..=cfg.parties).map(|i| format!("bank{i:02}")).collect();
    let unused = cfg.dir.join("no-data.csv");
    let setups: Vec<PartySetup> = names
        .iter()
        .enumerate()
        .map(|(i, n)| PartySetup {
            name: n.clone(),
            data: unused.clone(),
            fault: (i < cfg.dropouts).then(|| ("masked-input".to_string(), 1)),
            data_extra: String::new(),
        })
        .collect();
    // The processes live as long as `_fed`.
    let (_fed, mut client) =
        start_federation(&cfg.bin, &cfg.dir, cfg.tls, &setups, &mut say).await?;
    say(&format!("plaintext baseline: {} rounds of {} floats", cfg.rounds, cfg.dim));
    let (plain, _) = run_job(&mut client, &job_toml(cfg, &names, true)).await?;
    say(&format!(
        "secure aggregation: {} rounds of {} floats, {} dropouts",
        cfg.rounds, cfg.dim, cfg.dropouts
    ));
    let (secure, metrics) = run_job(&mut client, &job_toml(cfg, &names, false)).await?;
    let ms = |r: &fedcredit_proto::pb::RoundInfo| (r.finished_ms - r.started_ms) as f64;
    // Rounds run back to back, so the span of the steady rounds over their count is the mean
    // round time with the resolution of the records' milliseconds divided by the count.
    let first_steady = if cfg.dropouts > 0 { 2 } else { 1 };
    let plaintext_round_ms = steady_mean_ms(&plain, 1);
    let round_ms = steady_mean_ms(&secure, first_steady);
    let dropout_round_ms =
        (cfg.dropouts > 0).then(|| secure.iter().find(|r| r.round == 1).map(ms)).flatten();
    let get = |k: &str| metrics.get(k).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    Ok(SecaggBenchResult {
        parties: cfg.parties,
        dim: cfg.dim,
        rounds: cfg.rounds,
        dropouts: cfg.dropouts,
        tls: cfg.tls,
        degree: cfg.degree,
        round_ms,
        plaintext_round_ms,
        ratio: round_ms / plaintext_round_ms,
        dropout_round_ms,
        max_abs_error: get("max_abs_error"),
        min_contributors: get("min_contributors") as usize,
    })
}

/// Starts a coordinator and one daemon per entry of `setups` as processes on loopback (mutual
/// TLS unless `tls` is false) and connects to the coordinator. `FEDCREDIT_BENCH_LOG` (e.g.
/// `fedcredit_coordinator=debug`) sets the processes' log filter, to see where time goes.
///
/// # Errors
/// [`OpsError`] when the processes cannot start or the coordinator does not answer.
pub(crate) async fn start_federation(
    bin: &std::path::Path,
    dir: &std::path::Path,
    tls: bool,
    setups: &[PartySetup],
    say: &mut impl FnMut(&str),
) -> Result<(LocalFederation, ControlClient), OpsError> {
    let mut opts = LaunchOptions::new(bin, dir);
    opts.tls = tls;
    opts.log = std::env::var("FEDCREDIT_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    say(&format!(
        "starting a coordinator and {} participants ({})",
        setups.len(),
        if tls { "mutual TLS" } else { "plain text" }
    ));
    let fed = LocalFederation::start(opts, setups)?;
    let client = connect_retry(&fed).await?;
    Ok((fed, client))
}

/// Connects to a freshly started federation's coordinator, retrying for a few seconds.
///
/// # Errors
/// The last connection error.
pub async fn connect_retry(fed: &LocalFederation) -> Result<ControlClient, OpsError> {
    let mut last = None;
    for _ in 0..50 {
        match ControlClient::connect(&fed.client_config()).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| OpsError::Local("cannot connect".into())))
}

/// What `fedcredit bench psi` measures.
#[derive(Debug, Clone)]
pub struct PsiBenchConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory (tables, certificates, configs, logs).
    pub dir: PathBuf,
    /// Ids per party.
    pub size: usize,
    /// Ids of each party, when they differ (unbalanced sets; overrides `size` and `parties`).
    pub sizes: Option<Vec<usize>>,
    /// Parties (the first holds the label).
    pub parties: usize,
    /// `ecdh` or `server-aided`.
    pub mode: String,
    /// Fraction of the smallest set that every party holds.
    pub overlap: f64,
    /// Mutual TLS (default) or plain text.
    pub tls: bool,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PsiBenchResult {
    /// `ecdh` or `server-aided`.
    pub mode: String,
    /// Parties.
    pub parties: usize,
    /// Ids per party (the largest set when they differ).
    pub size: usize,
    /// Ids of each party, in party order.
    pub sizes: Vec<usize>,
    /// Fraction of the smallest set every party holds.
    pub overlap: f64,
    /// Mutual TLS.
    pub tls: bool,
    /// Common ids the job found.
    pub intersection: u64,
    /// Peak resident memory (`VmHWM`, MiB) of the coordinator and of each party's daemon
    /// (tables loaded, tokens or points, the intersection), by name; empty off Linux.
    pub peak_rss_mib: std::collections::BTreeMap<String, f64>,
    /// The alignment step: from the coordinator's start message to the last party's report
    /// (the coordinator's step record); tables already loaded.
    pub seconds: f64,
    /// The whole job as the operator sees it: submit to end (offer, table loading, alignment).
    pub job_seconds: f64,
}

/// Peak resident memory of a running process (`VmHWM`), in MiB; `None` off Linux.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The party names of a `parties`-party benchmark: the label holder first.
pub fn psi_party_names(parties: usize) -> Vec<String> {
    let known = ["bank", "tax", "platform"];
    (0..parties)
        .map(|i| known.get(i).map_or_else(|| format!("party{}", i + 1), |s| (*s).to_string()))
        .collect()
}

/// A seeded xorshift64* stream (the tables' row order and values; not for keys).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Writes party `index`'s table of `size` ids: the `common` ids every party holds, then ids
/// only it holds, in a seeded random row order; 18-character codes like unified social
/// credit codes; one numeric column, and the label at the label holder (index 0).
///
/// # Errors
/// [`OpsError::Local`] when the file cannot be written.
pub fn write_psi_table(
    path: &std::path::Path,
    index: usize,
    size: usize,
    common: usize,
) -> Result<(), OpsError> {
    use std::io::Write;
    let own_start = 100_000_000_000u64 * (index as u64 + 1);
    let mut ids: Vec<u64> =
        (0..common as u64).chain(own_start..own_start + (size - common) as u64).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32));
    for i in (1..ids.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        ids.swap(i, j);
    }
    let file = std::fs::File::create(path)
        .map_err(|e| OpsError::Local(format!("{}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    let label = index == 0;
    let write = |w: &mut std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
        writeln!(w, "{}", if label { "id,y,x" } else { "id,x" })?;
        for (row, id) in ids.iter().enumerate() {
            if label {
                writeln!(w, "91{id:016},{},{}", row % 2, row % 97)?;
            } else {
                writeln!(w, "91{id:016},{}", row % 89)?;
            }
        }
        w.flush()
    };
    write(&mut w).map_err(|e| OpsError::Local(format!("{}: {e}", path.display())))
}

/// The `align` job of the benchmark.
pub fn psi_job_toml(names: &[String], mode: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "name = \"bench-psi-{mode}\"\nparties = [{}]\nphase_timeout_secs = 600\ngrace_secs = 60\n\
         [data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"align\"\n\
         [vertical]\nlabel_holder = \"{}\"\npsi = \"{mode}\"\n",
        quoted.join(", "),
        names[0]
    )
}

/// Runs `fedcredit bench psi`: writes the tables, starts a coordinator and one daemon per
/// party as separate processes on loopback, runs one `align` job and reads the alignment
/// step's time from the coordinator's step record. `say` gets progress lines.
///
/// # Errors
/// [`OpsError`] when a table cannot be written, processes cannot start or the job fails
/// (see the logs under `dir/logs`).
pub async fn psi(
    cfg: &PsiBenchConfig,
    mut say: impl FnMut(&str),
) -> Result<PsiBenchResult, OpsError> {
    let sizes = cfg.sizes.clone().unwrap_or_else(|| vec![cfg.size; cfg.parties]);
    if sizes.len() < 2 || sizes.contains(&0) || !(0.0..=1.0).contains(&cfg.overlap) {
        return Err(OpsError::Local(
            "need at least 2 parties, at least one id each and an overlap in [0, 1]".into(),
        ));
    }
    if !matches!(cfg.mode.as_str(), "ecdh" | "server-aided") {
        return Err(OpsError::Local(format!("mode `{}`: use `ecdh` or `server-aided`", cfg.mode)));
    }
    let names = psi_party_names(sizes.len());
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    let common = ((smallest as f64) * cfg.overlap).round() as usize;
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| OpsError::Local(format!("{}: {e}", cfg.dir.display())))?;
    let listed: Vec<String> = sizes.iter().map(usize::to_string).collect();
    say(&format!("writing tables of {} ids ({common} common to all)", listed.join(", ")));
    let mut setups = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let path = cfg.dir.join(format!("{n}.csv"));
        write_psi_table(&path, i, sizes[i], common)?;
        setups.push(PartySetup::new(n.clone(), path));
    }
    // The processes live as long as `_fed`.
    let (fed, mut client) =
        start_federation(&cfg.bin, &cfg.dir, cfg.tls, &setups, &mut say).await?;
    say(&format!("{} PSI: {} parties × {} ids", cfg.mode, sizes.len(), listed.join(" / ")));
    let started = std::time::Instant::now();
    let (rounds, metrics) = run_job(&mut client, &psi_job_toml(&names, &cfg.mode)).await?;
    let job_seconds = started.elapsed().as_secs_f64();
    let seconds =
        rounds.first().map_or(job_seconds, |r| (r.finished_ms - r.started_ms) as f64 / 1000.0);
    let intersection =
        metrics.get("intersection").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    if intersection != common as f64 {
        return Err(OpsError::Local(format!(
            "the job found {intersection} common ids; the tables share {common}"
        )));
    }
    let peak_rss_mib = std::iter::once("coordinator")
        .chain(names.iter().map(String::as_str))
        .filter_map(|n| Some((n.to_string(), peak_rss_mib(fed.pid(n)?)?)))
        .collect();
    Ok(PsiBenchResult {
        mode: cfg.mode.clone(),
        parties: sizes.len(),
        size: sizes.iter().copied().max().unwrap_or(0),
        sizes,
        overlap: cfg.overlap,
        tls: cfg.tls,
        intersection: common as u64,
        seconds,
        job_seconds,
        peak_rss_mib,
    })
}
