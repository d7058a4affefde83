//! The federation commands: certificates, coordinator, participant, train, jobs, models and the
//! secure-aggregation and PSI benchmarks. Argument parsing and printing only; the work is in the
//! `fedcredit-coordinator`, `-participant`, `-transport` and `-ops` crates.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fedcredit_federation::horizontal::Progress;
use fedcredit_ops::progress::{describe, follow, is_final};
use fedcredit_ops::{ClientConfig, ControlClient};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA and certificates for the coordinator, the operator and each party.
    Init {
        /// Output directory (must not hold certificates already).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Party names, comma-separated (each becomes a certificate's common name).
        #[arg(long, value_delimiter = ',', required = true)]
        parties: Vec<String>,
        /// Extra host names or IPs for the coordinator's certificate (localhost and 127.0.0.1
        /// are always in).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Sign a certificate for one more party with an existing CA.
    Add {
        /// The directory of `certs init` (holds ca.pem and ca.key).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The new party's name.
        #[arg(long)]
        party: String,
    },
}

pub fn certs(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Init { out, parties, hosts } => {
            let paths = fedcredit_transport::tls::init_certs(&out, &parties, &hosts)?;
            println!("CA:          {}", paths.ca_cert.display());
            println!("CA key:      {} (keep it offline)", paths.ca_key.display());
            println!("coordinator: {}", paths.coordinator.cert.display());
            println!("operator:    {}", paths.operator.cert.display());
            for (name, files) in &paths.parties {
                println!("{name:<12} {}", files.cert.display());
            }
        }
        CertsCommand::Add { dir, party } => {
            let files = fedcredit_transport::tls::add_party(&dir, &party)?;
            println!("{party}: {} {}", files.cert.display(), files.key.display());
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum CoordinatorCommand {
    /// Serve participants and operators until Ctrl-C / SIGTERM.
    Serve {
        /// coordinator.toml
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn coordinator(cmd: CoordinatorCommand) -> anyhow::Result<()> {
    let CoordinatorCommand::Serve { config } = cmd;
    let cfg = fedcredit_coordinator::CoordinatorConfig::from_file(&config)?;
    runtime()?.block_on(async move {
        let bound = fedcredit_coordinator::server::bind(cfg).await?;
        if let Some(http) = bound.http_addr {
            println!("{}{http}", fedcredit_ops::launch::HTTP_LISTENING);
        }
        println!("{}{}", fedcredit_ops::launch::LISTENING, bound.addr);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        fedcredit_coordinator::server::serve(bound, shutdown_signal()).await?;
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum ParticipantCommand {
    /// Connect out to the coordinator and take part in jobs until Ctrl-C / SIGTERM.
    Run {
        /// participant.toml (e.g. bank.toml)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub fn participant(cmd: ParticipantCommand) -> anyhow::Result<()> {
    let ParticipantCommand::Run { config } = cmd;
    let cfg = fedcredit_participant::ParticipantConfig::from_file(&config)?;
    if !cfg.data.path.exists() {
        tracing::warn!(path = %cfg.data.path.display(), "the data file does not exist (yet); jobs that need data will be declined");
    }
    runtime()?.block_on(async move {
        let token = tokio_util::sync::CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
        fedcredit_participant::Daemon::new(cfg)?.run(token).await?;
        Ok(())
    })
}

/// How to reach the coordinator's control API.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The coordinator's URL.
    #[arg(long, env = "FEDCREDIT_COORDINATOR", default_value = "https://127.0.0.1:7443")]
    coordinator: String,
    /// Directory of `certs init` (uses ca.pem, operator.pem, operator.key).
    #[arg(long, env = "FEDCREDIT_CERTS", default_value = "certs", value_name = "DIR")]
    certs: PathBuf,
    /// Plain text, for an `insecure = true` coordinator.
    #[arg(long)]
    insecure: bool,
}

impl ConnectArgs {
    fn config(&self) -> ClientConfig {
        if self.insecure {
            ClientConfig::insecure(self.coordinator.replace("https://", "http://"))
        } else {
            ClientConfig::with_certs_dir(&self.coordinator, &self.certs)
        }
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The job: parties, columns, model and parameters (TOML; unknown keys are rejected).
    #[arg(value_name = "JOB.toml")]
    job: PathBuf,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Submit and return without following the job.
    #[arg(long)]
    detach: bool,
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("reading {}", args.job.display()))?;
    // Check locally first so a typo is reported with the file name before any connection.
    fedcredit_federation::job::JobSpec::from_toml(&text)
        .with_context(|| format!("{}", args.job.display()))?;
    runtime()?.block_on(async move {
        let mut client = ControlClient::connect(&args.connect.config()).await?;
        let job = client.submit(&text).await?;
        eprintln!(
            "submitted job {} ({} parties: {})",
            job.id,
            job.parties.len(),
            job.parties.join(", ")
        );
        if args.detach {
            println!("{}", job.id);
            return Ok(());
        }
        let end = follow(&mut client, &job.id, std::io::stderr().is_terminal()).await?;
        print_job(&end);
        if end.state != "succeeded" {
            bail!("job {} {}: {}", end.id, end.state, end.error);
        }
        Ok(())
    })
}

fn print_job(j: &fedcredit_proto::pb::JobInfo) {
    let p: Progress = serde_json::from_str(&j.progress_json).unwrap_or_default();
    println!("job       {}", j.id);
    if !j.name.is_empty() {
        println!("name      {}", j.name);
    }
    println!("model     {}", j.model_kind);
    println!("parties   {}", j.parties.join(", "));
    println!("state     {}", j.state);
    println!("rounds    {}", j.rounds_done);
    println!("progress  {}", describe(j, &p));
    if !j.error.is_empty() {
        println!("error     {}", j.error);
    }
    if !j.model_id.is_empty() {
        println!("model id  {}", j.model_id);
    }
    if let Ok(serde_json::Value::Object(m)) =
        serde_json::from_str::<serde_json::Value>(&j.metrics_json)
    {
        for (k, v) in m {
            println!("  {k:<18} {v}");
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// All jobs, newest first.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// One job: state, progress, metrics, and its rounds.
    Show {
        /// Job id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
        /// Also list every completed round.
        #[arg(long)]
        rounds: bool,
    },
    /// Follow a running job with a progress bar.
    Watch {
        /// Job id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Cancel a running job.
    Cancel {
        /// Job id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Resume a failed or cancelled job from its last completed round.
    Resume {
        /// Job id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn jobs(cmd: JobsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            JobsCommand::List { connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                // Fetch first: a refused call must not leave a header without rows.
                let jobs = c.jobs().await?;
                println!("{:<28} {:<12} {:<10} {:>7}  NAME", "JOB", "MODEL", "STATE", "ROUNDS");
                for j in jobs {
                    println!(
                        "{:<28} {:<12} {:<10} {:>7}  {}",
                        j.id, j.model_kind, j.state, j.rounds_done, j.name
                    );
                }
            }
            JobsCommand::Show { id, connect, rounds } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let job = c.job(&id).await?;
                // Fetch everything before printing, so a refused call prints no half table.
                let rounds = if rounds { c.rounds(&id).await? } else { Vec::new() };
                // A WOE/IV job's artifact is its IV table per party.
                let iv = if job.model_kind == "woe" && !job.model_id.is_empty() {
                    let m = c.model(&job.model_id).await?;
                    serde_json::from_str::<fedcredit_federation::vertical::woe::IvReport>(
                        &m.artifact_json,
                    )
                    .ok()
                } else {
                    None
                };
                print_job(&job);
                if let Some(iv) = iv {
                    print!("{}", iv.render());
                }
                for r in rounds {
                    // `dropped`: started the round but left it (a restart without them);
                    // `missing`: the job's other parties, not in the round at all.
                    let missing: Vec<&str> = job
                        .parties
                        .iter()
                        .filter(|p| !r.contributors.contains(p) && !r.dropped.contains(p))
                        .map(String::as_str)
                        .collect();
                    println!(
                        "  round {:>4}  {:>6} ms  attempts {}  contributors {} [{}]  dropped [{}]{}  {}",
                        r.round,
                        r.finished_ms - r.started_ms,
                        r.attempts,
                        r.contributors.len(),
                        r.contributors.join(", "),
                        r.dropped.join(", "),
                        if missing.is_empty() {
                            String::new()
                        } else {
                            format!("  missing [{}]", missing.join(", "))
                        },
                        r.what
                    );
                }
            }
            JobsCommand::Watch { id, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let end = follow(&mut c, &id, std::io::stderr().is_terminal()).await?;
                print_job(&end);
            }
            JobsCommand::Cancel { id, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let j = c.cancel(&id).await?;
                println!("job {} is {}", j.id, j.state);
            }
            JobsCommand::Resume { id, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let j = c.resume(&id).await?;
                println!("job {} is {} from round {}", j.id, j.state, j.rounds_done);
                if is_final(&j.state) {
                    bail!("job {} did not resume", j.id);
                }
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct PartiesArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

/// "now", "12 s ago", "5 min ago", … for a unix-ms time; "-" for never.
fn ago(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..=1 => "now".into(),
        2..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn parties(args: PartiesArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut c = ControlClient::connect(&args.connect.config()).await?;
        let parties = c.parties().await?;
        let any_listed = parties.iter().any(|p| p.listed);
        let now = now_ms();
        println!(
            "{:<16} {:<13} {:<12} {:<9} {:<22} NOTE",
            "PARTY", "STATE", "LAST SEEN", "VERSION", "ADDRESS"
        );
        for p in &parties {
            let state = if p.connected {
                "connected"
            } else if p.last_seen_ms > 0 {
                "disconnected"
            } else {
                "never seen"
            };
            let note = if any_listed && !p.listed {
                "not in coordinator.toml `parties`: jobs may not name it"
            } else {
                ""
            };
            let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
            println!(
                "{:<16} {:<13} {:<12} {:<9} {:<22} {note}",
                p.name,
                state,
                if p.connected { "now".into() } else { ago(p.last_seen_ms, now) },
                dash(&p.version),
                dash(&p.address),
            );
        }
        if parties.is_empty() {
            eprintln!("no party has connected yet, and coordinator.toml lists none");
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this job's entries.
    #[arg(long, value_name = "ID")]
    job: Option<String>,
    /// Newest entries to show.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut c = ControlClient::connect(&args.connect.config()).await?;
        let entries = c.audit(args.job.as_deref(), args.limit).await?;
        let now = now_ms();
        println!(
            "{:<12} {:<16} {:<4} {:<14} {:<28} {:>9}  OUTCOME",
            "WHEN", "WHO", "DIR", "KIND", "JOB", "BYTES"
        );
        for e in entries.iter().rev() {
            println!(
                "{:<12} {:<16} {:<4} {:<14} {:<28} {:>9}  {}",
                ago(e.at_ms, now),
                e.party,
                e.direction,
                e.kind,
                if e.job_id.is_empty() { "-" } else { &e.job_id },
                e.bytes,
                e.outcome
            );
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// All models, newest first.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// One model's kind, job and metrics.
    Show {
        /// Model id.
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// The registry: versions of a model name (each job's models are versions of the model
    /// named after the job), the serving one marked; every name's without NAME.
    Versions {
        /// Model name (the job.toml `name`).
        name: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Make a version of a model name the serving one.
    Promote {
        /// Model name.
        name: String,
        /// Version.
        version: i64,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Serve again the version that served before the current one.
    Rollback {
        /// Model name.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Write a model's artifact (fedcredit-models JSON) to a file.
    Export {
        /// Model id.
        id: String,
        /// Output file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// The registry's versions as a table, the serving one starred.
fn print_versions(v: &fedcredit_proto::pb::ModelVersions) {
    println!(
        "{:<24} {:>7}  {:<7} {:<10} {:<34} metrics",
        "name", "version", "serving", "kind", "model"
    );
    for m in &v.versions {
        println!(
            "{:<24} {:>7}  {:<7} {:<10} {:<34} {}",
            m.name,
            m.version,
            if m.serving { "*" } else { "" },
            m.kind,
            m.model_id,
            m.metrics_json
        );
    }
}

pub fn models(cmd: ModelsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ModelsCommand::List { connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let models = c.models().await?;
                println!("{:<34} {:<10} {:<28} METRICS", "MODEL", "KIND", "JOB");
                for m in models {
                    println!("{:<34} {:<10} {:<28} {}", m.id, m.kind, m.job_id, m.metrics_json);
                }
            }
            ModelsCommand::Show { id, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let m = c.model(&id).await?;
                println!(
                    "model    {}\nkind     {}\njob      {}\nmetrics  {}",
                    m.id, m.kind, m.job_id, m.metrics_json
                );
                // A vertical model is registered as a reference to the parts its parties keep.
                if let Ok(r) = fedcredit_federation::vertical::model::VerticalModelRef::from_json(
                    &m.artifact_json,
                ) {
                    print!("{}", r.render());
                    return Ok(());
                }
                let art = fedcredit_models::artifact::ModelArtifact::from_json(&m.artifact_json)
                    .context("the stored artifact does not parse")?;
                println!(
                    "features {}",
                    art.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            ModelsCommand::Versions { name, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let v = c.model_versions(name.as_deref().unwrap_or_default()).await?;
                print_versions(&v);
            }
            ModelsCommand::Promote { name, version, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let v = c.promote(&name, version).await?;
                println!("{}", v.change);
                print_versions(&v);
            }
            ModelsCommand::Rollback { name, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let v = c.rollback(&name).await?;
                println!("{}", v.change);
                print_versions(&v);
            }
            ModelsCommand::Export { id, out, connect } => {
                let mut c = ControlClient::connect(&connect.config()).await?;
                let m = c.model(&id).await?;
                std::fs::write(&out, &m.artifact_json)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!("wrote {} ({} bytes)", out.display(), m.artifact_json.len());
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct VlrBenchArgs {
    /// Common rows (each party also holds a tenth more ids of its own).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Columns per party, the label holder (bank) first: `30,300` is a bank with 30 columns
    /// and a platform with 300.
    #[arg(long, value_delimiter = ',', default_value = "30,300")]
    features_per_party: Vec<usize>,
    /// Epochs of the long job (a 1-epoch job runs first to separate the setup).
    #[arg(long, default_value_t = 5)]
    epochs: u32,
    /// Rows per step (0: the job's default, a thirty-second of the training rows within
    /// [64, 8192]).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Working directory (tables, certificates, configs, logs).
    #[arg(long, value_name = "DIR", default_value = "out/bench-vertical-lr")]
    dir: PathBuf,
    /// Plain-text transport instead of mutual TLS.
    #[arg(long)]
    insecure: bool,
    /// Skip the in-memory run of the same protocol (the compute share).
    #[arg(long)]
    no_in_memory: bool,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_vertical_lr(args: VlrBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the fedcredit binary")?;
    if args.dir.join("state").exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let cfg = fedcredit_ops::bench_vlr::VlrBenchConfig {
        bin,
        dir: args.dir.clone(),
        rows: args.rows,
        features: args.features_per_party.clone(),
        epochs: args.epochs,
        batch: args.batch,
        tls: !args.insecure,
        in_memory: !args.no_in_memory,
    };
    let started = std::time::Instant::now();
    let r = runtime()?.block_on(fedcredit_ops::bench_vlr::vertical_lr(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }))?;
    let cols: Vec<String> = r.features.iter().map(ToString::to_string).collect();
    println!(
        "vertical LR, {} rows × ({}) columns, batch {}{}: {:.2} s per epoch (bar ≤ 2 s), setup {:.2} s, \
         alignment {:.2} s; validation AUC {:.4}",
        r.rows,
        cols.join(" + "),
        if r.batch == 0 { "auto (training rows / 32)".to_string() } else { r.batch.to_string() },
        if r.tls { ", mutual TLS" } else { "" },
        r.seconds_per_epoch,
        r.setup_seconds,
        r.align_seconds,
        r.valid_auc
    );
    if let (Some(per), Some(setup)) = (r.in_memory_seconds_per_epoch, r.in_memory_setup_seconds) {
        println!(
            "  in memory, one thread, every role: {per:.2} s per epoch, setup {setup:.2} s; \
             transport, sealing and waiting: {:.2} s per epoch",
            r.seconds_per_epoch - per
        );
    }
    if let (Some(p), Some(d)) = (r.party_bytes_per_epoch, r.dealer_bytes_per_epoch) {
        println!(
            "  per epoch: {:.1} MB between parties, {:.1} MB from the dealer",
            p / 1e6,
            d / 1e6
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SbBenchArgs {
    /// Common rows (each party also holds a tenth more ids of its own).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Columns per party, the label holder (bank) first: `30,300` is a bank with 30 columns
    /// and a platform with 300.
    #[arg(long, value_delimiter = ',', default_value = "30,300")]
    features_per_party: Vec<usize>,
    /// Trees measured (a 1-tree job runs first to separate the setup).
    #[arg(long, default_value_t = 1)]
    trees: u32,
    /// Depth of every tree.
    #[arg(long, default_value_t = 5)]
    depth: u32,
    /// Value bins per feature.
    #[arg(long, default_value_t = 32)]
    bins: u32,
    /// Gradient-based one-side sampling (SecureBoost+): the feature holders sum 30 % of the
    /// rows.
    #[arg(long)]
    goss: bool,
    /// Share of the rows held out for the validation figures (0: train on every row).
    #[arg(long, default_value_t = 0.0)]
    validation: f64,
    /// The label holder's additive homomorphic scheme: `ou` or `paillier`.
    #[arg(long, default_value = "ou")]
    scheme: String,
    /// Modulus bits (2048: 112-bit security; 3072: 128-bit).
    #[arg(long, default_value_t = 2048)]
    bits: u32,
    /// Working directory (tables, certificates, configs, logs).
    #[arg(long, value_name = "DIR", default_value = "out/bench-secureboost")]
    dir: PathBuf,
    /// Plain-text transport instead of mutual TLS.
    #[arg(long)]
    insecure: bool,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_secureboost(args: SbBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the fedcredit binary")?;
    if args.dir.join("state").exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let cfg = fedcredit_ops::bench_sb::SbBenchConfig {
        bin,
        dir: args.dir.clone(),
        rows: args.rows,
        features: args.features_per_party.clone(),
        trees: args.trees,
        depth: args.depth,
        bins: args.bins,
        goss: args.goss,
        validation: args.validation,
        key_bits: args.bits,
        scheme: args.scheme.clone(),
        tls: !args.insecure,
    };
    let started = std::time::Instant::now();
    let r = runtime()?.block_on(fedcredit_ops::bench_sb::secureboost(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }))?;
    let cols: Vec<String> = r.features.iter().map(ToString::to_string).collect();
    println!(
        "SecureBoost, {} rows × ({}) columns, depth {}, {} bins, {} {}-bit{}{}: {:.2} s per tree \
         (bar ≤ 30 s), setup {:.2} s, alignment {:.2} s; validation AUC {:.4}",
        r.rows,
        cols.join(" + "),
        r.depth,
        r.bins,
        r.scheme,
        r.key_bits,
        if r.goss { ", GOSS" } else { "" },
        if r.tls { ", mutual TLS" } else { "" },
        r.seconds_per_tree,
        r.setup_seconds,
        r.align_seconds,
        r.valid_auc
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PsiBenchArgs {
    /// Ids per party.
    #[arg(long, default_value_t = 1_000_000)]
    size: usize,
    /// Parties (one daemon process each; the first holds the label).
    #[arg(long, default_value_t = 2)]
    parties: usize,
    /// `ecdh` (Diffie–Hellman over ristretto255) or `server-aided` (keyed tokens intersected
    /// by the coordinator).
    #[arg(long, default_value = "ecdh", value_parser = ["ecdh", "server-aided"])]
    mode: String,
    /// Ids of each party when the sets differ, e.g. `100000,10000000` (a bank's borrowers
    /// against a platform's merchants); overrides `--size` and `--parties`.
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    sizes: Option<Vec<usize>>,
    /// Fraction of the smallest set that every party holds.
    #[arg(long, default_value_t = 0.5)]
    overlap: f64,
    /// Working directory (tables, certificates, configs, logs).
    #[arg(long, value_name = "DIR", default_value = "out/bench-psi")]
    dir: PathBuf,
    /// Plain-text transport instead of mutual TLS.
    #[arg(long)]
    insecure: bool,
    /// Also write the result as JSON to this file (`seconds`: the alignment step).
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_psi(args: PsiBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the fedcredit binary")?;
    if args.dir.join("state").exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let cfg = fedcredit_ops::bench::PsiBenchConfig {
        bin,
        dir: args.dir.clone(),
        size: args.size,
        sizes: args.sizes.clone(),
        parties: args.parties,
        mode: args.mode.clone(),
        overlap: args.overlap,
        tls: !args.insecure,
    };
    let started = std::time::Instant::now();
    let result = runtime()?.block_on(fedcredit_ops::bench::psi(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }))?;
    let sizes: Vec<String> = result.sizes.iter().map(usize::to_string).collect();
    println!(
        "{} PSI, {} parties × {} ids{}: {} common, alignment {:.2} s (whole job {:.2} s)",
        result.mode,
        result.parties,
        sizes.join(" / "),
        if result.tls { " (mutual TLS)" } else { "" },
        result.intersection,
        result.seconds,
        result.job_seconds
    );
    if !result.peak_rss_mib.is_empty() {
        let rss: Vec<String> =
            result.peak_rss_mib.iter().map(|(n, m)| format!("{n} {m:.0}")).collect();
        println!("peak RSS, MiB: {}", rss.join(", "));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SecaggBenchArgs {
    /// Parties (one daemon process each).
    #[arg(long, default_value_t = 10)]
    parties: usize,
    /// Floats per vector.
    #[arg(long, default_value_t = 10_000)]
    dim: usize,
    /// Parties that drop out before their masked upload in round 1.
    #[arg(long, default_value_t = 0)]
    dropouts: usize,
    /// Rounds per job (the first is a warm-up).
    #[arg(long, default_value_t = 50)]
    rounds: u64,
    /// Working directory (certificates, configs, logs).
    #[arg(long, value_name = "DIR", default_value = "out/bench-secagg")]
    dir: PathBuf,
    /// Plain-text transport instead of mutual TLS.
    #[arg(long)]
    insecure: bool,
    /// SecAgg+ (Bell et al. 2020): this many neighbours per party instead of all.
    #[arg(long, value_name = "K")]
    degree: Option<usize>,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

/// The scheme `bench he` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeSchemeArg {
    /// Okamoto–Uchiyama.
    Ou,
    /// Paillier.
    Paillier,
    /// Exponential ElGamal over ristretto255 (the WOE/IV stage's; no modulus bits).
    Elgamal,
}

#[derive(Debug, Args)]
pub struct HeBenchArgs {
    /// Scheme.
    #[arg(long, value_enum, default_value_t = HeSchemeArg::Ou)]
    scheme: HeSchemeArg,
    /// Modulus bits (OU and Paillier).
    #[arg(long, default_value_t = 2048)]
    bits: u32,
    /// CPU seconds per operation.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_he(args: HeBenchArgs) -> anyhow::Result<()> {
    use fedcredit_crypto::he::{Scheme, bench};
    let (value, reference) = match args.scheme {
        HeSchemeArg::Elgamal => {
            let t = fedcredit_crypto::elgamal::bench::measure(args.seconds);
            println!(
                "elgamal (ristretto255, {}-bit security), µs per op per core ({}): encrypt {:.1} (key owner, encoded {:.1}), add {:.2}, scalar mul {:.1}, decrypt {:.1}",
                t.security_bits,
                t.clock,
                t.encrypt_us,
                t.encrypt_owner_us,
                t.add_us,
                t.scalar_mul_us,
                t.decrypt_us
            );
            (serde_json::to_value(&t)?, Vec::new())
        }
        s => {
            let scheme = if s == HeSchemeArg::Ou { Scheme::Ou } else { Scheme::Paillier };
            let t = bench::measure(scheme, args.bits, args.seconds)
                .context("measuring the HE scheme")?;
            let reference = bench::heu_reference(scheme);
            let heu = |k: &str| {
                reference
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map_or_else(|| "—".to_string(), |(_, v)| format!("{v}"))
            };
            println!(
                "{:?} {} bits, µs per op per core ({}, {} kernel), ours vs SecretFlow HEU:",
                scheme, t.bits, t.clock, t.kernel
            );
            for (k, v) in [
                ("encrypt_us", t.encrypt_us),
                ("add_us", t.add_us),
                ("scalar_mul_us", t.scalar_mul_us),
                ("decrypt_us", t.decrypt_us),
            ] {
                println!("  {k:<14} {v:>10.2}   HEU {}", heu(k));
            }
            println!(
                "  (key-owner encrypt {:.2} µs, 14-bit scalar mul {:.2} µs, keygen {:.0} ms)",
                t.encrypt_owner_us, t.scalar_mul_small_us, t.keygen_ms
            );
            (serde_json::to_value(&t)?, reference.to_vec())
        }
    };
    if let Some(path) = &args.json {
        let heu: serde_json::Map<String, serde_json::Value> =
            reference.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        let out = serde_json::json!({ "ours": value, "heu": heu });
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct WoeBenchArgs {
    /// Common rows.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// The feature holder's columns.
    #[arg(long, default_value_t = 300)]
    features: usize,
    /// Seed of the generated tables and of the parties' randomness.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_woe(args: WoeBenchArgs) -> anyhow::Result<()> {
    let r = fedcredit_ops::bench_woe::woe(args.rows, args.features, args.seed)
        .map_err(|e| anyhow::anyhow!("WOE/IV stage: {e}"))?;
    println!(
        "federated WOE/IV, {} rows × {} features: {:.2} s on {} threads ({:.1} MB between parties, {} features selected)",
        r.rows,
        r.features,
        r.seconds,
        r.threads,
        r.payload_bytes as f64 / 1e6,
        r.selected
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub fn bench_secagg(args: SecaggBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the fedcredit binary")?;
    if args.dir.join("state").exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let cfg = fedcredit_ops::bench::SecaggBenchConfig {
        bin,
        dir: args.dir.clone(),
        parties: args.parties,
        dim: args.dim,
        rounds: args.rounds,
        dropouts: args.dropouts,
        tls: !args.insecure,
        degree: args.degree,
    };
    let started = std::time::Instant::now();
    let result = runtime()?.block_on(fedcredit_ops::bench::secagg(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }))?;
    println!(
        "{} parties × {} floats{}: secure round {:.1} ms, plaintext round {:.1} ms, ratio {:.2}{}; max |error| {:.2e}",
        result.parties,
        result.dim,
        if result.tls { " (mutual TLS)" } else { "" },
        result.round_ms,
        result.plaintext_round_ms,
        result.ratio,
        result
            .dropout_round_ms
            .map(|d| format!(", round with {} dropouts {d:.1} ms", result.dropouts))
            .unwrap_or_default(),
        result.max_abs_error
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Enterprise ids to score (repeat the flag for several).
    #[arg(long = "id", value_name = "ID", required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Score every enterprise of the label holder's latest snapshot (the portfolio).
    #[arg(long)]
    all: bool,
    /// The model name (the training job's name); optional when one model serves.
    #[arg(long, default_value = "")]
    model: String,
    /// A version; only the serving one is accepted (0 = the serving one).
    #[arg(long, default_value_t = 0)]
    version: i64,
    /// Reason codes per party.
    #[arg(long, default_value_t = 3)]
    reasons: u32,
    /// Write the scores to this file (`.parquet` or `.csv`) instead of printing them.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the response as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn score_json(r: &fedcredit_proto::pb::ScoreResponse) -> serde_json::Value {
    serde_json::json!({
        "model": r.model,
        "version": r.version,
        "kind": r.kind,
        "scores": r.scores.iter().map(|s| serde_json::json!({
            "id": s.id,
            "error": if s.error.is_empty() { None } else { Some(&s.error) },
            "pd": s.pd,
            "points": s.points,
            "band": s.band,
            "reasons": s.reasons.iter().map(|x| serde_json::json!({
                "party": x.party, "feature": x.feature, "points_lost": x.points_lost,
            })).collect::<Vec<_>>(),
            "parties": s.parties.iter().map(|p| serde_json::json!({
                "party": p.party, "snapshot": p.snapshot, "known": p.known, "points": p.points,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `fedcredit score`: the current score of enterprises, or of the whole portfolio into a file.
pub fn score(args: ScoreArgs) -> anyhow::Result<()> {
    use fedcredit_datasets::write::{Values, write_columns};
    runtime()?.block_on(async move {
        let mut c = fedcredit_ops::ScoringClient::connect(&args.connect.config()).await?;
        let r = c
            .score(fedcredit_proto::pb::ScoreRequest {
                model: args.model.clone(),
                version: args.version,
                ids: args.ids.clone(),
                all: args.all,
                reasons: Some(args.reasons),
            })
            .await?;
        if let Some(path) = &args.out {
            let s = &r.scores;
            let parties: Vec<String> = s
                .first()
                .map(|x| x.parties.iter().map(|p| p.party.clone()).collect())
                .unwrap_or_default();
            let text = |f: &dyn Fn(&fedcredit_proto::pb::EnterpriseScore) -> String| {
                Values::Text(s.iter().map(f).collect())
            };
            let mut cols = vec![
                ("id", text(&|x| x.id.clone())),
                (
                    "pd",
                    Values::Number(
                        s.iter()
                            .map(|x| if x.error.is_empty() { x.pd } else { f64::NAN })
                            .collect(),
                    ),
                ),
                (
                    "points",
                    Values::Number(
                        s.iter()
                            .map(|x| if x.error.is_empty() { x.points } else { f64::NAN })
                            .collect(),
                    ),
                ),
                ("band", text(&|x| x.band.clone())),
                (
                    "reasons",
                    text(&|x| {
                        x.reasons
                            .iter()
                            .map(|r| format!("{}:{}", r.party, r.feature))
                            .collect::<Vec<_>>()
                            .join(";")
                    }),
                ),
                ("error", text(&|x| x.error.clone())),
            ];
            let names: Vec<String> = parties.iter().map(|p| format!("points_{p}")).collect();
            for (k, name) in names.iter().enumerate() {
                cols.push((
                    name.as_str(),
                    Values::Number(
                        s.iter().map(|x| x.parties.get(k).map_or(f64::NAN, |p| p.points)).collect(),
                    ),
                ));
            }
            write_columns(path, cols)?;
            let failed = s.iter().filter(|x| !x.error.is_empty()).count();
            println!(
                "{} enterprises scored by {} v{} ({}) → {}{}",
                s.len() - failed,
                r.model,
                r.version,
                r.kind,
                path.display(),
                if failed > 0 {
                    format!("; {failed} without a score (see column `error`)")
                } else {
                    String::new()
                }
            );
            return Ok(());
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&score_json(&r))?);
            return Ok(());
        }
        println!("model {} v{} ({})", r.model, r.version, r.kind);
        for s in &r.scores {
            if !s.error.is_empty() {
                println!("{:<20} no score: {}", s.id, s.error);
                continue;
            }
            println!("{:<20} PD {:.4}  {:>6.1} points  band {}", s.id, s.pd, s.points, s.band);
            for p in &s.parties {
                println!(
                    "    {:<14} {:>+8.1} points  snapshot {}{}",
                    p.party,
                    p.points,
                    p.snapshot,
                    if p.known { "" } else { "  (does not know the enterprise)" }
                );
            }
            for x in &s.reasons {
                println!("    reason: {}'s {} (−{:.1} points)", x.party, x.feature, x.points_lost);
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts after this number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `fedcredit alerts`.
pub fn alerts(args: AlertsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut c = fedcredit_ops::ScoringClient::connect(&args.connect.config()).await?;
        let alerts = c.alerts(args.after, args.limit).await?;
        let now = now_ms();
        println!(
            "{:>5} {:<12} {:<18} {:<16} {:<20} DETAIL",
            "SEQ", "WHEN", "KIND", "MODEL", "ENTERPRISE"
        );
        for a in &alerts {
            println!(
                "{:>5} {:<12} {:<18} {:<16} {:<20} {}",
                a.seq,
                ago(a.at_ms, now),
                a.kind,
                a.model,
                if a.enterprise.is_empty() { "-" } else { &a.enterprise },
                a.detail
            );
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The enterprise.
    id: String,
    /// Only under this model.
    #[arg(long, default_value = "")]
    model: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `fedcredit history ID`.
pub fn history(args: HistoryArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut c = fedcredit_ops::ScoringClient::connect(&args.connect.config()).await?;
        let h = c.history(&args.id, &args.model).await?;
        let now = now_ms();
        println!(
            "{:<12} {:<16} {:>4} {:>8} {:>8} {:<5} CAUSE",
            "WHEN", "MODEL", "V", "PD", "POINTS", "BAND"
        );
        for e in &h.entries {
            println!(
                "{:<12} {:<16} {:>4} {:>8.4} {:>8.1} {:<5} {}",
                ago(e.at_ms, now),
                e.model,
                e.version,
                e.pd,
                e.points,
                e.band,
                e.cause
            );
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct EcosystemArgs {
    /// The model name; optional when one model serves.
    #[arg(long, default_value = "")]
    model: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `fedcredit ecosystem`: the health index per period and the drift.
pub fn ecosystem(args: EcosystemArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut c = fedcredit_ops::ScoringClient::connect(&args.connect.config()).await?;
        let e = c.ecosystem(&args.model).await?;
        println!("model {}", e.model);
        println!(
            "{:>6} {:>8} {:>11} {:>11}  CAUSE",
            "PERIOD", "INDEX", "MEAN SCORE", "ENTERPRISES"
        );
        for p in &e.points {
            println!(
                "{:>6} {:>8.1} {:>11.1} {:>11}  {}",
                p.period, p.index, p.mean_points, p.enterprises, p.cause
            );
        }
        let mut parties: Vec<_> = e.party_drift_psi.iter().collect();
        parties.sort_by(|a, b| a.0.cmp(b.0));
        println!(
            "drift (PSI of current vs first scores): {:.3}{}; per party: {}",
            e.drift_psi,
            if e.retrain_recommended { " — retraining recommended" } else { "" },
            parties.iter().map(|(p, v)| format!("{p} {v:.3}")).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct ScoringBenchArgs {
    /// Parties (one daemon process each; the first holds the label).
    #[arg(long, default_value_t = 3)]
    parties: usize,
    /// Enterprises all parties hold.
    #[arg(long, default_value_t = 20_000)]
    rows: usize,
    /// Columns per party.
    #[arg(long, default_value_t = 10)]
    features: usize,
    /// The vertical model: `scorecard`, `logistic` or `gbdt` (SecureBoost, 100 trees of depth
    /// 5: a request intersects every party's leaf sets at the label holder).
    #[arg(long, default_value = "scorecard", value_parser = ["scorecard", "logistic", "gbdt"])]
    model: String,
    /// Single requests timed.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Enterprises per batch.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Batches timed.
    #[arg(long, default_value_t = 20)]
    batches: usize,
    /// Working directory (tables, certificates, configs, logs).
    #[arg(long, value_name = "DIR", default_value = "out/bench-scoring")]
    dir: PathBuf,
    /// Also write the result as JSON to this file (`p50_ms`, `p99_ms`, `batch_scores_per_s`).
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

pub fn bench_scoring(args: ScoringBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the fedcredit binary")?;
    if args.parties < 2 {
        bail!("--parties must be at least 2 (a label holder and a feature holder)");
    }
    if args.dir.join("state").exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    let cfg = fedcredit_ops::bench_scoring::ScoringBenchConfig {
        bin,
        dir: args.dir.clone(),
        parties: args.parties,
        rows: args.rows,
        features: args.features,
        model: args.model.clone(),
        requests: args.requests,
        concurrency: args.concurrency,
        batch: args.batch,
        batches: args.batches,
    };
    let started = std::time::Instant::now();
    let r = runtime()?.block_on(fedcredit_ops::bench_scoring::scoring(&cfg, |line| {
        eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    }))?;
    println!(
        "scoring a vertical {} model, {} parties, gRPC with mutual TLS: single request p50 {:.2} ms, \
         p99 {:.2} ms (bar ≤ 5 ms), max {:.1} ms, {:.0} requests/s at concurrency {}; batches of {}: \
         {:.0} scores/s (bar ≥ 20,000)",
        r.model,
        r.parties,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.single_per_s,
        r.concurrency,
        r.batch,
        r.batch_scores_per_s
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
