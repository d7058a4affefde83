//! `fedcredit`: the one command-line tool of the federated credit-risk framework.
//!
//! Thin by design: it parses arguments (clap), sets up logging (tracing) and calls
//! the library crates, which hold all logic.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fedcredit_benches::accuracy::{self, AccuracyConfig, ModelName};

mod bars;
mod ops;

/// Federated credit-risk modelling: train joint credit models across a bank, a tax
/// bureau and a trading platform without moving their rows.
#[derive(Debug, Parser)]
#[command(name = "fedcredit", version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `fedcredit=debug` (also from RUST_LOG). Default: `warn`, and
    /// `info` for fedcredit's own messages in `coordinator serve` and `participant run`
    /// (parties connecting and leaving, jobs starting and ending).
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The embedded demo: the bank, the tax bureau and the platform of a synthetic ecosystem
    /// (coordinator + three participant processes, mutual TLS) align by PSI, train vertical
    /// models against the joined table and each party alone, serve scores that move as the data
    /// rolls forward, raise alerts and write an HTML report. `--horizontal`: three banks under
    /// secure aggregation.
    Demo(DemoArgs),
    /// Accuracy and speed comparisons against centralized and single-party models.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Work with data files: inspect a table, generate the synthetic ecosystem or an
    /// application table.
    #[command(subcommand)]
    Data(DataCommand),
    /// Provision the federation's certificate authority and certificates.
    #[command(subcommand)]
    Certs(ops::CertsCommand),
    /// Run the coordinator.
    #[command(subcommand)]
    Coordinator(ops::CoordinatorCommand),
    /// Run a participant daemon next to this institution's data.
    #[command(subcommand)]
    Participant(ops::ParticipantCommand),
    /// Submit a training job (job.toml) and follow it with a live progress bar.
    Train(ops::TrainArgs),
    /// List, inspect, cancel and resume jobs.
    #[command(subcommand)]
    Jobs(ops::JobsCommand),
    /// List, inspect and export trained models.
    #[command(subcommand)]
    Models(ops::ModelsCommand),
    /// The federation's parties: connected or not, last seen, version, address.
    Parties(ops::PartiesArgs),
    /// The coordinator's audit log: messages, refused connections and calls, operator actions.
    Audit(ops::AuditArgs),
    /// The current score of enterprises (federated inference over the parties' latest data),
    /// or of the whole portfolio into a Parquet or CSV file.
    Score(ops::ScoreArgs),
    /// An enterprise's score history.
    History(ops::HistoryArgs),
    /// A self-contained HTML report of a model: ROC, KS, score distribution and calibration on
    /// labelled enterprises scored now, the training curve, contributions per party, score
    /// histories and the ecosystem health index.
    Report(ReportArgs),
    /// Alerts: sharp score falls, PD above threshold, jumps of one party's contribution,
    /// ecosystem health, contagion along the supply chain.
    Alerts(ops::AlertsArgs),
    /// The ecosystem health index per period and the score drift of the serving model.
    Ecosystem(ops::EcosystemArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Train logistic, scorecard and GBDT centralized and on each file alone; report AUC, KS, log loss.
    Accuracy(AccuracyArgs),
    /// Time secure-aggregation rounds over gRPC between separate processes on loopback,
    /// beside plaintext aggregation of the same vectors.
    Secagg(ops::SecaggBenchArgs),
    /// Time the PSI alignment of a vertical job (ECDH or server-aided) over gRPC between
    /// separate processes on loopback, on generated tables.
    Psi(ops::PsiBenchArgs),
    /// Additive HE per operation per core (µs) beside SecretFlow HEU's published figures.
    He(ops::HeBenchArgs),
    /// Federated WOE/IV: a label holder and one feature holder with F columns, in one process.
    Woe(ops::WoeBenchArgs),
    /// Vertical logistic regression (secret sharing, the coordinator as dealer) over gRPC
    /// between separate processes on loopback, on generated tables: seconds per epoch.
    VerticalLr(ops::VlrBenchArgs),
    /// Vertical gradient-boosted trees (SecureBoost: encrypted, packed gradient histograms)
    /// over gRPC between separate processes on loopback, on generated tables: seconds per tree.
    Secureboost(ops::SbBenchArgs),
    /// The scoring service: single-request latency (p50 / p99) and batched throughput of a
    /// vertical model over gRPC with mutual TLS, the parties as separate processes.
    Scoring(ops::ScoringBenchArgs),
}

#[derive(Debug, Args)]
struct AccuracyArgs {
    /// `vertical`: the files are column parts joined on --id. `horizontal`: each file is one
    /// bank's rows. Both add a real federated run (coordinator + one process per file, mutual
    /// TLS; vertical: logistic and scorecard).
    #[arg(long, value_enum, default_value_t = Mode::Vertical)]
    mode: Mode,
    /// A party's table (CSV or Parquet); repeat for each party.
    #[arg(long = "data", required = true, value_name = "FILE")]
    data: Vec<PathBuf>,
    /// Horizontal mode: a common test file (otherwise each file is split stratified).
    #[arg(long, value_name = "FILE")]
    test: Option<PathBuf>,
    /// GBDT trees in every setting (default 100).
    #[arg(long, value_name = "N")]
    trees: Option<usize>,
    /// Working directory of the federated runs (training files, certificates, state, logs);
    /// default `out/bench-horizontal` or `out/bench-vertical`.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Id column, present in every file.
    #[arg(long, value_name = "COL")]
    id: String,
    /// Label column (1 = default), present in exactly one file.
    #[arg(long, value_name = "COL")]
    label: String,
    /// Fraction of each class held out for testing.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Seed of the split and of the models.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Models to train (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [ModelArg::Logistic, ModelArg::Scorecard, ModelArg::Gbdt])]
    models: Vec<ModelArg>,
    /// Also write the results as a JSON array to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Vertical,
    Horizontal,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModelArg {
    Logistic,
    Scorecard,
    Gbdt,
}

impl std::fmt::Display for ModelArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(ModelName::from(*self).as_str())
    }
}

impl From<ModelArg> for ModelName {
    fn from(m: ModelArg) -> Self {
        match m {
            ModelArg::Logistic => ModelName::Logistic,
            ModelArg::Scorecard => ModelName::Scorecard,
            ModelArg::Gbdt => ModelName::Gbdt,
        }
    }
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Where the data, the federations' state and logs, results.json and report.html go
    /// (default: a fresh folder `out/demo-<unix time>`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The horizontal three-banks demo (secure aggregation) instead of the vertical story.
    #[arg(long)]
    horizontal: bool,
    /// Keep serving scores at the end (until Ctrl-C) and print the URLs.
    #[arg(long, conflicts_with = "horizontal")]
    serve: bool,
    /// Months the served data rolls forward.
    #[arg(long, default_value_t = 3)]
    months_forward: usize,
    /// Number of enterprises in the ecosystem.
    #[arg(long, default_value_t = 20_000)]
    enterprises: usize,
    /// Seed of the generator and the models.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Summarise a table: columns, the kind each is read as, missing cells, the levels of text
    /// columns and repeated ids.
    Inspect(InspectArgs),
    /// Generate the synthetic enterprise ecosystem: bank.csv, tax.csv, platform.csv.
    Generate(GenerateArgs),
    /// Generate a credit-application table with high-cardinality text columns (the shape of
    /// real application data; the reference script reads it).
    Applications(ApplicationsArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The table (CSV, TSV or Parquet).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Id column: checked for repeated and missing ids.
    #[arg(long, value_name = "COL")]
    id: Option<String>,
    /// Most frequent levels listed per text column.
    #[arg(long, default_value_t = 5, value_name = "N")]
    top: usize,
}

#[derive(Debug, Args)]
struct ApplicationsArgs {
    /// Output CSV file (id column `id`, label column `default`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Rows.
    #[arg(long, default_value_t = 50_000)]
    rows: usize,
    /// Numeric feature columns (at least 6).
    #[arg(long, default_value_t = 39)]
    numeric: usize,
    /// Text feature columns (at most 13).
    #[arg(long, default_value_t = 13)]
    text: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of enterprises.
    #[arg(long, default_value_t = 10_000)]
    enterprises: usize,
    /// Monthly snapshots to simulate.
    #[arg(long, default_value_t = 24)]
    months: usize,
    /// Write only this month's snapshot (one row per enterprise) instead of every month.
    #[arg(long, value_name = "MONTH")]
    snapshot: Option<usize>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// `fedcredit jobs list | head` closes stdout early: exit quietly like other Unix tools
/// instead of panicking on the broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Coordinator(_) | Command::Participant(_));
    let default_log = if daemon { "warn,fedcredit=info" } else { "warn" };
    let filter = match &cli.log {
        Some(log) => tracing_subscriber::EnvFilter::new(log),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut shown = err.to_string();
            eprintln!("error: {shown}");
            for cause in err.chain().skip(1) {
                // Library errors often repeat their source in their own message.
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                shown = text;
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo(args),
        Command::Bench(BenchCommand::Accuracy(args)) => bench_accuracy(args),
        Command::Bench(BenchCommand::Secagg(args)) => ops::bench_secagg(args),
        Command::Bench(BenchCommand::Psi(args)) => ops::bench_psi(args),
        Command::Bench(BenchCommand::He(args)) => ops::bench_he(args),
        Command::Bench(BenchCommand::Woe(args)) => ops::bench_woe(args),
        Command::Bench(BenchCommand::VerticalLr(args)) => ops::bench_vertical_lr(args),
        Command::Bench(BenchCommand::Secureboost(args)) => ops::bench_secureboost(args),
        Command::Bench(BenchCommand::Scoring(args)) => ops::bench_scoring(args),
        Command::Data(DataCommand::Generate(args)) => data_generate(args),
        Command::Data(DataCommand::Inspect(args)) => data_inspect(args),
        Command::Data(DataCommand::Applications(args)) => data_applications(args),
        Command::Certs(c) => ops::certs(c),
        Command::Coordinator(c) => ops::coordinator(c),
        Command::Participant(c) => ops::participant(c),
        Command::Train(a) => ops::train(a),
        Command::Jobs(c) => ops::jobs(c),
        Command::Models(c) => ops::models(c),
        Command::Parties(a) => ops::parties(a),
        Command::Audit(a) => ops::audit(a),
        Command::Score(a) => ops::score(a),
        Command::History(a) => ops::history(a),
        Command::Alerts(a) => ops::alerts(a),
        Command::Ecosystem(a) => ops::ecosystem(a),
        Command::Report(a) => report(a),
    }
}

fn bench_accuracy(args: AccuracyArgs) -> anyhow::Result<()> {
    if args.mode == Mode::Horizontal {
        return bench_horizontal(args);
    }
    if args.test.is_some() {
        anyhow::bail!("--test is for --mode horizontal; vertical runs split the joined rows");
    }
    let dir = args.workdir.unwrap_or_else(|| PathBuf::from("out/bench-vertical"));
    let models: Vec<ModelName> = args.models.into_iter().map(ModelName::from).collect();
    if dir.join("data").exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let cfg = AccuracyConfig {
        data: args.data,
        id: args.id,
        label: args.label,
        test_fraction: args.test_fraction,
        seed: args.seed,
        models: models.clone(),
        federated_models: models,
        gbdt: fedcredit_models::gbdt::GbdtParams {
            n_trees: args.trees.unwrap_or(fedcredit_models::gbdt::GbdtParams::default().n_trees),
            ..Default::default()
        },
        federation: Some(fedcredit_benches::vertical::FederationRun {
            bin: std::env::current_exe().context("locating the fedcredit binary")?,
            dir,
        }),
    };
    run_accuracy(&cfg, args.json.as_deref())
}

fn bench_horizontal(args: AccuracyArgs) -> anyhow::Result<()> {
    use fedcredit_benches::horizontal::{self, HorizontalConfig};
    let workdir = args.workdir.unwrap_or_else(|| PathBuf::from("out/bench-horizontal"));
    if workdir.join("state").exists() {
        std::fs::remove_dir_all(&workdir)
            .with_context(|| format!("clearing {}", workdir.display()))?;
    }
    let cfg = HorizontalConfig {
        data: args.data,
        id: args.id,
        label: args.label,
        test: args.test,
        test_fraction: args.test_fraction,
        seed: args.seed,
        models: args.models.into_iter().map(ModelName::from).collect(),
        bin: std::env::current_exe().context("locating the fedcredit binary")?,
        dir: workdir,
        gbdt_trees: args.trees,
    };
    let rows = horizontal::run(&cfg, bars::FitBars::new())?;
    print!("{}", accuracy::render_table(&rows));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs the accuracy comparison with progress on stderr, prints the table, optionally writes JSON.
fn run_accuracy(cfg: &AccuracyConfig, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let rows = accuracy::run(cfg, bars::FitBars::new())?;
    print!("{}", accuracy::render_table(&rows));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    use fedcredit_benches::demo::{self, DemoConfig};
    let out = args.out.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("out/demo-{t}"))
    });
    let cfg = DemoConfig {
        out,
        enterprises: args.enterprises,
        seed: args.seed,
        bin: std::env::current_exe().context("locating the fedcredit binary")?,
        banks: 3,
        horizontal: args.horizontal,
        forward: args.months_forward,
        serve: args.serve,
    };
    eprintln!("fedcredit demo: everything goes to {}", cfg.out.display());
    let started = std::time::Instant::now();
    let (report, fed) = demo::run(&cfg, bars::FitBars::new())?;
    if cfg.horizontal {
        println!(
            "\nHorizontal: three banks, same columns, different enterprises (held-out rows of all banks)"
        );
        print!("{}", accuracy::render_table(&report.horizontal));
        println!(
            "`federated` ran over gRPC between separate processes with mutual TLS; the coordinator \
             saw only secure sums.\n"
        );
    } else {
        println!(
            "\nVertical: bank + tax bureau + platform, the same enterprises, different columns (held-out rows)"
        );
        print!("{}", accuracy::render_table(&report.vertical));
        println!(
            "`federated` aligned the parties by PSI and trained over separate processes with mutual \
             TLS — the regressions by secret sharing, the trees by SecureBoost on the bank's \
             encrypted gradients; each party kept its own coefficients, points or splits. \
             `centralized` joins the columns in one place; `party:tax` and `party:platform` assume \
             the label, which only the bank holds."
        );
    }
    if let Some(s) = &report.serving {
        println!(
            "\nServing `{}`: {} enterprises scored by federated inference",
            s.model, s.portfolio
        );
        for p in &s.periods {
            println!(
                "  month {:>2}: health index {:>5.1}, mean score {:>6.1}, {} enterprises",
                p.month, p.index, p.mean_points, p.enterprises
            );
        }
        println!(
            "  alerts: {}",
            s.alerts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        );
        println!(
            "  out of time (last month's scores vs the defaults that follow): AUC {:.4}; drift PSI {:.3}",
            s.out_of_time_auc, s.drift_psi
        );
        println!("  early warning: {}", s.warned.sentence());
        println!("  report: {}", s.report.display());
    }
    eprintln!("done in {:.1}s; results in {}", started.elapsed().as_secs_f64(), cfg.out.display());
    if let (Some(fed), Some(s)) = (fed, &report.serving) {
        let http = s.http.clone().unwrap_or_default();
        println!("\nserving until Ctrl-C:");
        println!("  curl -s -X POST {http}/v1/score -d '{{\"ids\": [\"<id>\"]}}'");
        println!("  {http}/v1/alerts   {http}/v1/ecosystem   {http}/metrics   {http}/healthz");
        println!(
            "  gRPC: fedcredit score --id <id> --coordinator {} --certs {}",
            fed.url(),
            fed.dir().join("certs").display()
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tokio::signal::ctrl_c())?;
        drop(fed);
    }
    Ok(())
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The training job of the model.
    #[arg(value_name = "JOB")]
    job: String,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    out: PathBuf,
    /// Labelled enterprises to evaluate on (CSV or Parquet with --id and --label columns):
    /// they are scored now by the serving version of the model named like JOB.
    #[arg(long, value_name = "FILE", requires_all = ["id", "label"])]
    labels: Option<PathBuf>,
    /// Id column of --labels.
    #[arg(long, value_name = "COL")]
    id: Option<String>,
    /// Label column of --labels (1 = default).
    #[arg(long, value_name = "COL")]
    label: Option<String>,
    /// The coordinator's URL.
    #[arg(long, env = "FEDCREDIT_COORDINATOR", default_value = "https://127.0.0.1:7443")]
    coordinator: String,
    /// Directory of `certs init` (uses ca.pem, operator.pem, operator.key).
    #[arg(long, env = "FEDCREDIT_CERTS", default_value = "certs", value_name = "DIR")]
    certs: PathBuf,
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    use fedcredit_benches::serving::{Labels, report_for_job};
    let cfg = fedcredit_ops::ClientConfig::with_certs_dir(&args.coordinator, &args.certs);
    let labels = match (args.labels, args.id, args.label) {
        (Some(path), Some(id), Some(label)) => Some(Labels { path, id, label }),
        _ => None,
    };
    let r = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(report_for_job(&cfg, &args.job, labels.as_ref()))
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&args.out, fedcredit_benches::report::html(&r))
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn data_generate(args: GenerateArgs) -> anyhow::Result<()> {
    use fedcredit_datasets::synthetic::{EcosystemConfig, generate};
    let cfg = EcosystemConfig {
        n_enterprises: args.enterprises,
        n_months: args.months,
        seed: args.seed,
        ..EcosystemConfig::default()
    };
    let started = std::time::Instant::now();
    let eco = generate(&cfg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let files = eco.write_csv(&args.out, args.snapshot)?;
    for f in &files {
        println!("{}", f.display());
    }
    eprintln!(
        "generated {} enterprises × {} months in {:.1}s",
        args.enterprises,
        args.months,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn data_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let summary = fedcredit_datasets::inspect_table(&args.file, args.id.as_deref(), args.top)?;
    print!("{}", summary.render());
    Ok(())
}

fn data_applications(args: ApplicationsArgs) -> anyhow::Result<()> {
    use fedcredit_datasets::applications::{ID_COLUMN, LABEL_COLUMN, applications_table};
    use fedcredit_models::testdata::ApplicationsConfig;
    let cfg = ApplicationsConfig {
        rows: args.rows,
        numeric: args.numeric,
        text: args.text,
        seed: args.seed,
    };
    let table = applications_table(&cfg)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    table.write_csv(&args.out, ID_COLUMN, None, Some(LABEL_COLUMN))?;
    println!("{}", args.out.display());
    eprintln!(
        "{} applications × {} features ({} text), id `{ID_COLUMN}`, label `{LABEL_COLUMN}`",
        table.n_rows(),
        table.features.n_features(),
        cfg.text
    );
    Ok(())
}
