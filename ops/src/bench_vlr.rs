//! `fedcredit bench vertical-lr`: the vertical logistic regression
//! (`fedcredit_federation::vertical::lr`: two-party additive secret sharing with the
//! coordinator as dealer of Beaver and matrix triples, after SecureML, Mohassel & Zhang,
//! IEEE S&P 2017) between separate processes on loopback with mutual TLS, over generated
//! tables: the bank holds the label and `features[0]` columns, every other party its own
//! columns, each party also ids no other party has (PSI aligns them first).
//!
//! Two jobs run, one of 1 epoch and one of `epochs`; the lr stage's time comes from the
//! coordinator's step records, so `seconds_per_epoch = (t_E − t_1) / (E − 1)` and the setup
//! (encoding, dealing, the masked matrices sent once) is `t_1 − seconds_per_epoch`. The same
//! protocol then runs in memory on one thread over the same columns
//! (`vertical::lr::sim`: every role's computation and masks, messages through their bytes, no
//! sealing or sockets): the difference is what sealing, TLS, the relay and waiting cost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fedcredit_federation::vertical::lr::protocol::{LrParams, Node, Roster};
use fedcredit_federation::vertical::lr::sim::{self, SimInput};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::{FeatureSpec, Features};
use ndarray::Array2;
use serde::Serialize;

use crate::bench::{psi_party_names, run_job, start_federation};
use crate::client::OpsError;
use crate::launch::PartySetup;

/// What to measure.
#[derive(Debug, Clone)]
pub struct VlrBenchConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory (tables, certificates, configs, logs).
    pub dir: PathBuf,
    /// Common rows.
    pub rows: usize,
    /// Columns per party, the label holder first.
    pub features: Vec<usize>,
    /// Epochs of the long job.
    pub epochs: u32,
    /// Rows per step.
    pub batch: usize,
    /// Mutual TLS (default) or plain text.
    pub tls: bool,
    /// Also run the protocol in memory for the compute share.
    pub in_memory: bool,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct VlrBenchResult {
    /// Common rows.
    pub rows: usize,
    /// Columns per party.
    pub features: Vec<usize>,
    /// Epochs of the long job.
    pub epochs: u32,
    /// Rows per step.
    pub batch: usize,
    /// Mutual TLS.
    pub tls: bool,
    /// The lr stage of the 1-epoch job, seconds.
    pub lr_seconds_one_epoch: f64,
    /// The lr stage of the `epochs` job, seconds.
    pub lr_seconds: f64,
    /// `(lr_seconds − lr_seconds_one_epoch) / (epochs − 1)`.
    pub seconds_per_epoch: f64,
    /// `lr_seconds_one_epoch − seconds_per_epoch`: encoding, dealing, masked matrices.
    pub setup_seconds: f64,
    /// The alignment step of the long job, seconds.
    pub align_seconds: f64,
    /// Validation AUC the label holder reported after the last epoch.
    pub valid_auc: f64,
    /// The same protocol in memory on one thread: seconds per epoch (all roles' compute and
    /// masks, no transport).
    pub in_memory_seconds_per_epoch: Option<f64>,
    /// In memory: setup seconds.
    pub in_memory_setup_seconds: Option<f64>,
    /// Bytes between parties per epoch (sealed payloads' contents), from the in-memory run.
    pub party_bytes_per_epoch: Option<f64>,
    /// Bytes from the dealer per epoch, from the in-memory run.
    pub dealer_bytes_per_epoch: Option<f64>,
}

/// splitmix64: a value per (seed, entity, party, column) so every party generates the same
/// entity's columns alone.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal value of cell (`entity`, `party`, `column`) (Box–Muller).
fn normal(seed: u64, entity: u64, party: u64, column: u64) -> f64 {
    let h = mix(seed ^ mix(entity ^ mix(party.wrapping_mul(0x1000_0001) ^ column)));
    let u1 = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((mix(h) >> 11) as f64) / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The generated ecosystem: `rows` common entities with `features[k]` columns at party `k`,
/// a label at party 0 from a logistic model over every party's columns.
#[derive(Debug, Clone)]
pub struct VerticalTables {
    /// Party names, the label holder first.
    pub names: Vec<String>,
    /// Columns per party.
    pub features: Vec<usize>,
    /// Common entities.
    pub rows: usize,
    /// Seed.
    pub seed: u64,
}

impl VerticalTables {
    /// The tables of `rows` common entities with `features` columns per party.
    pub fn new(rows: usize, features: &[usize], seed: u64) -> Self {
        Self { names: psi_party_names(features.len()), features: features.to_vec(), rows, seed }
    }

    fn weight(&self, k: usize, j: usize) -> f64 {
        // Signal spread over every column; half of each party's columns carry it.
        let total: usize = self.features.iter().sum();
        let sign = if (k + j).is_multiple_of(2) { 1.0 } else { -1.0 };
        if j.is_multiple_of(2) { sign * 2.0 / (total as f64 / 2.0).sqrt() } else { 0.0 }
    }

    fn cell(&self, entity: u64, k: usize, j: usize) -> f64 {
        normal(self.seed, entity, k as u64, j as u64)
    }

    /// The label of common entity `e` (0/1, ≈ 15 % ones).
    fn label(&self, e: u64) -> f64 {
        let mut z = -2.2;
        for (k, &d) in self.features.iter().enumerate() {
            for j in 0..d {
                z += self.weight(k, j) * self.cell(e, k, j);
            }
        }
        let p = 1.0 / (1.0 + (-z).exp());
        let u = (mix(self.seed ^ 0xABCD ^ mix(e)) >> 11) as f64 / (1u64 << 53) as f64;
        f64::from(u < p)
    }

    /// Column names of party `k`.
    pub fn column_names(&self, k: usize) -> Vec<String> {
        (0..self.features[k]).map(|j| format!("{}_x{j}", self.names[k])).collect()
    }

    /// Writes party `k`'s CSV: the common entities and `rows / 10` ids of its own, in a
    /// seeded order; 18-character ids; the label at party 0.
    ///
    /// # Errors
    /// [`OpsError::Local`] when the file cannot be written.
    pub fn write(&self, k: usize, path: &Path) -> Result<(), OpsError> {
        let own = self.rows / 10;
        let own_start = 100_000_000_000u64 * (k as u64 + 1);
        let mut entities: Vec<u64> =
            (0..self.rows as u64).chain(own_start..own_start + own as u64).collect();
        let mut rng = crate::bench::XorShift(mix(self.seed ^ (k as u64 + 7)) | 1);
        for i in (1..entities.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            entities.swap(i, j);
        }
        let err = |e: std::io::Error| OpsError::Local(format!("{}: {e}", path.display()));
        let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
        let mut header = vec!["id".to_string()];
        if k == 0 {
            header.push("y".into());
        }
        header.extend(self.column_names(k));
        writeln!(w, "{}", header.join(",")).map_err(err)?;
        let mut line = String::new();
        for e in entities {
            use std::fmt::Write as _;
            line.clear();
            let _ = write!(line, "91{e:016}");
            if k == 0 {
                let _ = write!(line, ",{}", self.label(e));
            }
            for j in 0..self.features[k] {
                let _ = write!(line, ",{:.4}", self.cell(e, k, j));
            }
            writeln!(w, "{line}").map_err(err)?;
        }
        w.flush().map_err(err)
    }

    /// Writes every party's CSV into `dir` (see [`Self::write`]); the daemons' setups.
    ///
    /// # Errors
    /// [`OpsError::Local`] when a file cannot be written.
    pub fn write_all(
        &self,
        dir: &Path,
        say: &mut impl FnMut(&str),
    ) -> Result<Vec<PartySetup>, OpsError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpsError::Local(format!("{}: {e}", dir.display())))?;
        let mut setups = Vec::new();
        for (k, n) in self.names.iter().enumerate() {
            let path = dir.join(format!("{n}.csv"));
            say(&format!(
                "writing {} ({} rows × {} columns)",
                path.display(),
                self.rows,
                self.features[k]
            ));
            self.write(k, &path)?;
            setups.push(PartySetup::new(n.clone(), path));
        }
        Ok(setups)
    }

    /// Party `k`'s columns over the common entities `entities`, in memory.
    ///
    /// # Errors
    /// A message when the columns cannot form a table (not expected).
    pub fn features_of(&self, k: usize, entities: &[u64]) -> Result<Features, String> {
        let d = self.features[k];
        let mut values = Array2::<f64>::zeros((entities.len(), d));
        for (i, &e) in entities.iter().enumerate() {
            for j in 0..d {
                values[[i, j]] = (self.cell(e, k, j) * 1e4).round() / 1e4;
            }
        }
        let specs = self.column_names(k).into_iter().map(FeatureSpec::numeric).collect();
        Features::new(specs, values).map_err(|e| e.to_string())
    }
}

/// The vertical job of the benchmark.
pub fn vertical_job_toml(names: &[String], kind: &str, epochs: u32, batch: usize) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "name = \"bench-vertical-{kind}-{epochs}\"\nparties = [{}]\nphase_timeout_secs = 600\n\
         grace_secs = 60\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"{kind}\"\n\
         [vertical]\nlabel_holder = \"{}\"\n[vertical.lr]\nepochs = {epochs}\nbatch_size = {batch}\n",
        quoted.join(", "),
        names[0]
    )
}

/// The in-memory run: (setup seconds, seconds per epoch, party bytes, dealer bytes per epoch).
fn in_memory(
    t: &VerticalTables,
    params: &LrParams,
    mut say: impl FnMut(&str),
) -> Result<(f64, f64, f64, f64), String> {
    let entities: Vec<u64> = (0..t.rows as u64).collect();
    let labels: Vec<f64> = entities.iter().map(|&e| t.label(e)).collect();
    let mut inputs = std::collections::BTreeMap::new();
    for k in 0..t.names.len() {
        inputs.insert(
            PartyId(t.names[k].clone()),
            SimInput {
                features: t.features_of(k, &entities)?,
                labels: (k == 0).then(|| labels.clone()),
                valid: None,
                valid_labels: None,
                encoding: None,
                initial: None,
            },
        );
    }
    let roster = Roster::new(
        PartyId(t.names[0].clone()),
        t.names[1..].iter().map(|n| PartyId(n.clone())).collect(),
    )
    .map_err(|e| e.to_string())?;
    let mut rng = fedcredit_federation::protocol::os_rng();
    let mut timed = |epochs: u32| -> Result<(f64, sim::SimOutcome), String> {
        let p = LrParams { epochs, ..*params };
        let started = Instant::now();
        let out = sim::run(&JobId("bench-vlr".into()), &roster, &p, &inputs, &mut rng, false)
            .map_err(|e| e.to_string())?;
        Ok((started.elapsed().as_secs_f64(), out))
    };
    say("in memory: 1 epoch");
    let (t1, o1) = timed(1)?;
    say(&format!("in memory: {} epochs", params.epochs));
    let (te, oe) = timed(params.epochs)?;
    let extra = f64::from(params.epochs.saturating_sub(1).max(1));
    let per = if params.epochs > 1 { (te - t1) / extra } else { t1 };
    let bytes = |o: &sim::SimOutcome, dealer: bool| -> f64 {
        o.bytes
            .iter()
            .filter(|((from, _), _)| (*from == Node::Dealer) == dealer)
            .map(|(_, b)| *b as f64)
            .sum()
    };
    let party = (bytes(&oe, false) - bytes(&o1, false)) / extra;
    let dealer = (bytes(&oe, true) - bytes(&o1, true)) / extra;
    Ok((t1 - per, per, party, dealer))
}

/// Runs `fedcredit bench vertical-lr`. `say` gets progress lines.
///
/// # Errors
/// [`OpsError`] when a table cannot be written, processes cannot start or a job fails (see
/// the logs under `dir/logs`).
pub async fn vertical_lr(
    cfg: &VlrBenchConfig,
    mut say: impl FnMut(&str),
) -> Result<VlrBenchResult, OpsError> {
    if cfg.features.len() < 2 || cfg.features.contains(&0) || cfg.rows < 100 || cfg.epochs == 0 {
        return Err(OpsError::Local(
            "need at least 2 parties with at least one column each, 100 rows and 1 epoch".into(),
        ));
    }
    let tables = VerticalTables::new(cfg.rows, &cfg.features, 17);
    let setups = tables.write_all(&cfg.dir, &mut say)?;
    let (fed, mut client) =
        start_federation(&cfg.bin, &cfg.dir, cfg.tls, &setups, &mut say).await?;
    let lr_seconds = first_and_last_step_seconds;
    say("logistic job, 1 epoch");
    let (r1, _) =
        run_job(&mut client, &vertical_job_toml(&tables.names, "logistic", 1, cfg.batch)).await?;
    let (_, t1) = lr_seconds(&r1);
    let (align_seconds, te, metrics) = if cfg.epochs > 1 {
        say(&format!("logistic job, {} epochs", cfg.epochs));
        let toml = vertical_job_toml(&tables.names, "logistic", cfg.epochs, cfg.batch);
        let (re, m) = run_job(&mut client, &toml).await?;
        let (a, te) = lr_seconds(&re);
        (a, te, m)
    } else {
        let (a, _) = lr_seconds(&r1);
        (a, t1, serde_json::Value::Null)
    };
    drop(fed);
    let per = if cfg.epochs > 1 { (te - t1) / f64::from(cfg.epochs - 1) } else { t1 };
    let valid_auc =
        metrics.get("valid_auc").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    let mem = if cfg.in_memory {
        let params =
            LrParams { epochs: cfg.epochs.max(2), batch_size: cfg.batch, ..LrParams::default() };
        Some(in_memory(&tables, &params, &mut say).map_err(OpsError::Local)?)
    } else {
        None
    };
    Ok(VlrBenchResult {
        rows: cfg.rows,
        features: cfg.features.clone(),
        epochs: cfg.epochs,
        batch: cfg.batch,
        tls: cfg.tls,
        lr_seconds_one_epoch: t1,
        lr_seconds: te,
        seconds_per_epoch: per,
        setup_seconds: t1 - per,
        align_seconds,
        valid_auc,
        in_memory_seconds_per_epoch: mem.map(|m| m.1),
        in_memory_setup_seconds: mem.map(|m| m.0),
        party_bytes_per_epoch: mem.map(|m| m.2),
        dealer_bytes_per_epoch: mem.map(|m| m.3),
    })
}

/// Seconds of the first and of the last step a job recorded (alignment, then the model's
/// stage, in a vertical job).
pub(crate) fn first_and_last_step_seconds(rounds: &[fedcredit_proto::pb::RoundInfo]) -> (f64, f64) {
    let s = |r: &fedcredit_proto::pb::RoundInfo| (r.finished_ms - r.started_ms) as f64 / 1e3;
    (rounds.first().map_or(f64::NAN, s), rounds.last().map_or(f64::NAN, s))
}
