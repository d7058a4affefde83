//! The demo's serving story: the bank, the tax bureau and the platform (separate processes,
//! mutual TLS) train a vertical scorecard on one month's snapshot of the synthetic
//! ecosystem, the coordinator serves it, the whole portfolio is scored, and the data rolls
//! forward month by month: each party's daemon notices its new snapshot, the coordinator
//! re-scores the enterprises that moved, records their history and raises alerts (sharp
//! falls, PD above threshold, jumps of one party's contribution, contagion along the tax
//! bureau's supply links, the ecosystem health index). At the end a self-contained HTML
//! report ([`crate::report`]) is written, with an out-of-time evaluation: the scores of the
//! last month against the defaults that follow it. Last, a vertical GBDT (SecureBoost) is
//! trained on the latest month and serves the portfolio, each enterprise routed through every
//! party's leaf sets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fedcredit_datasets::synthetic::Ecosystem;
use fedcredit_federation::vertical::model::VerticalModelRef;
use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};
use fedcredit_ops::{ControlClient, ScoringClient};
use fedcredit_proto::pb;
use serde::Serialize;

use crate::report::{self, Chart, Report, Series};

/// What to run.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory (data, certificates, state, logs).
    pub dir: PathBuf,
    /// The month the model is trained on.
    pub month: usize,
    /// Months the data then rolls forward.
    pub forward: usize,
    /// Where the HTML report goes.
    pub report: PathBuf,
}

/// One month after training.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// The snapshot month.
    pub month: usize,
    /// Health index after the month's re-scoring.
    pub index: f64,
    /// Mean score.
    pub mean_points: f64,
    /// Monitored enterprises.
    pub enterprises: u64,
}

/// What the story found.
#[derive(Debug, Clone, Serialize)]
pub struct ServingReport {
    /// The served model's name.
    pub model: String,
    /// Enterprises scored at the training month.
    pub portfolio: usize,
    /// The months rolled forward.
    pub periods: Vec<Period>,
    /// Alerts by kind.
    pub alerts: BTreeMap<String, usize>,
    /// Out-of-time AUC of the last month's scores against the defaults that follow.
    pub out_of_time_auc: f64,
    /// Drift (PSI) of the scores against the first month's.
    pub drift_psi: f64,
    /// Of the enterprises that default after the training month, how many an alert flagged
    /// before their default: `(defaults, by score alerts, by contagion alerts, by either)`.
    pub warned: EarlyWarning,
    /// The HTML report.
    pub report: PathBuf,
    /// The HTTP API, while the federation runs.
    pub http: Option<String>,
    /// Enterprises scored by the served vertical GBDT (SecureBoost) at the end.
    pub gbdt_portfolio: usize,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes month `month`'s party tables and the tax bureau's supply links (`links.csv`, which
/// the generator writes beside them) into `dir`, each file replaced atomically, so a watching
/// daemon sees one new snapshot.
fn write_month(eco: &Ecosystem, month: usize, dir: &Path) -> Result<(), String> {
    let staging = dir.join(format!(".month-{month}"));
    let mut files = eco.write_csv(&staging, Some(month)).map_err(err)?;
    files.push(staging.join("links.csv"));
    for f in files {
        let name = f.file_name().ok_or("a table without a name")?;
        std::fs::rename(&f, dir.join(name)).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    std::fs::remove_dir_all(&staging).map_err(err)
}

/// Runs the story; the federation is returned (still running) when `keep` is set.
///
/// # Errors
/// A message naming the step that failed.
pub fn run(
    eco: &Ecosystem,
    cfg: &ServingConfig,
    keep: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(ServingReport, Option<LocalFederation>), String> {
    let data = cfg.dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    write_month(eco, cfg.month, &data)?;
    let names = ["bank", "tax", "platform"];
    let setups: Vec<PartySetup> = names
        .iter()
        .map(|n| {
            let mut extra = "watch_secs = 0.25\n".to_string();
            if *n == "tax" {
                extra.push_str(&format!("links = \"{}\"\n", data.join("links.csv").display()));
            }
            PartySetup::new(*n, data.join(format!("{n}.csv"))).with_data_extra(extra)
        })
        .collect();
    say(
        "serving: starting a coordinator (gRPC + HTTP/JSON) and the bank, tax bureau and platform daemons",
    );
    let mut opts = LaunchOptions::new(&cfg.bin, &cfg.dir);
    opts.log = "info".into();
    opts.http = true;
    opts.scoring_extra =
        "contagion_party = \"tax\"\ndebounce_ms = 1500\nmax_batch = 100000\n".into();
    let fed = LocalFederation::start(opts, &setups).map_err(err)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    let label = eco.label_column();
    let model = "ecosystem-scorecard".to_string();
    let toml = format!(
        "name = \"{model}\"\nparties = [\"bank\", \"tax\", \"platform\"]\nphase_timeout_secs = 600\n\
         grace_secs = 60\n[data]\nid = \"id\"\nlabel = \"{label}\"\n[model]\nkind = \"scorecard\"\n\
         [vertical]\nlabel_holder = \"bank\"\n"
    );
    let (mut control, mut scoring, job) = runtime.block_on(async {
        let mut control: ControlClient =
            fedcredit_ops::bench::connect_retry(&fed).await.map_err(err)?;
        say(&format!("serving: training the vertical scorecard `{model}` on month {}", cfg.month));
        let job = control.submit(&toml).await.map_err(err)?;
        let end =
            fedcredit_ops::progress::follow(&mut control, &job.id, false).await.map_err(err)?;
        if end.state != "succeeded" {
            return Err(format!("training {}: {}", end.state, end.error));
        }
        let scoring = ScoringClient::connect(&fed.client_config()).await.map_err(err)?;
        Ok::<_, String>((control, scoring, end))
    })?;
    let all = |scoring: &mut ScoringClient| {
        runtime.block_on(async {
            // The parts load when the job ends: retry briefly.
            let started = Instant::now();
            loop {
                match scoring
                    .score(pb::ScoreRequest {
                        model: model.clone(),
                        all: true,
                        reasons: Some(3),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(r) => return Ok(r),
                    Err(e) if started.elapsed() < Duration::from_secs(30) => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        })
    };
    let first = all(&mut scoring)?;
    say(&format!(
        "serving: scored the bank's portfolio of {} enterprises by federated inference (no feature value crossed the wire)",
        first.scores.len()
    ));
    let mut by_pd: Vec<&pb::EnterpriseScore> =
        first.scores.iter().filter(|s| s.error.is_empty()).collect();
    by_pd.sort_by(|a, b| b.pd.total_cmp(&a.pd));
    for s in [by_pd.first(), by_pd.get(by_pd.len() / 2), by_pd.last()].into_iter().flatten() {
        let parts: Vec<String> =
            s.parties.iter().map(|p| format!("{} {:+.0}", p.party, p.points)).collect();
        let reasons: Vec<String> = s
            .reasons
            .iter()
            .take(3)
            .map(|r| format!("{}:{} −{:.0}", r.party, r.feature, r.points_lost))
            .collect();
        say(&format!(
            "  {}  PD {:.3}  {:.0} points  band {}  [{}]  reasons: {}",
            s.id,
            s.pd,
            s.points,
            s.band,
            parts.join(", "),
            if reasons.is_empty() { "-".into() } else { reasons.join("; ") }
        ));
    }
    // Alerts are numbered: the newest number after each month tells which month raised each.
    let newest = |scoring: &mut ScoringClient| -> Result<i64, String> {
        let a = runtime.block_on(scoring.alerts(0, 1)).map_err(err)?;
        Ok(a.first().map_or(0, |a| a.seq))
    };
    std::thread::sleep(Duration::from_millis(1000));
    let mut boundaries = vec![(newest(&mut scoring)?, cfg.month)];
    // Roll forward.
    let mut periods = Vec::new();
    let mut seen = runtime.block_on(scoring.ecosystem(&model)).map(|e| e.points.len()).unwrap_or(0);
    for month in cfg.month + 1..=cfg.month + cfg.forward {
        write_month(eco, month, &data)?;
        let started = Instant::now();
        let eco_now = loop {
            let e = runtime.block_on(scoring.ecosystem(&model)).map_err(err)?;
            if e.points.len() > seen {
                break e;
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "month {month}: no re-scoring within 120 s (see {})",
                    cfg.dir.join("logs").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        seen = eco_now.points.len();
        let p = eco_now.points.last().cloned().unwrap_or_default();
        say(&format!(
            "serving: month {month}: new snapshots at {}; health index {:.1}, mean score {:.1} over {} monitored enterprises",
            p.cause
                .trim_start_matches("snapshot of ")
                .split(", ")
                .filter_map(|x| x.split(" at ").next())
                .collect::<Vec<_>>()
                .join(", "),
            p.index,
            p.mean_points,
            p.enterprises
        ));
        boundaries.push((newest(&mut scoring)?, month));
        periods.push(Period {
            month,
            index: p.index,
            mean_points: p.mean_points,
            enterprises: p.enterprises,
        });
    }
    // Let the recorder finish contagion queries of the last month.
    std::thread::sleep(Duration::from_millis(1500));
    let alerts = runtime.block_on(scoring.alerts(0, 10_000)).map_err(err)?;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for a in &alerts {
        *kinds.entry(a.kind.clone()).or_default() += 1;
    }
    say(&format!(
        "serving: alerts {}",
        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    ));
    for a in alerts.iter().filter(|a| a.kind == "contagion").take(2) {
        say(&format!("  contagion: {} — {}", a.enterprise, a.detail));
    }
    let monitored: BTreeSet<&str> = first.scores.iter().map(|s| s.id.as_str()).collect();
    let warned = early_warning(eco, &monitored, &alerts, &boundaries, cfg.month);
    say(&format!("serving: early warning: {}", warned.sentence()));
    // The report: out of time, the last month's scores against the defaults that follow.
    let final_scores = all(&mut scoring)?;
    let last = cfg.month + cfg.forward;
    let snapshot = eco.snapshot(last).map_err(err)?;
    let labels: HashMap<&str, f64> = snapshot
        .bank
        .ids
        .iter()
        .zip(snapshot.bank.label.as_ref().map(|l| l.to_vec()).unwrap_or_default())
        .map(|(i, l)| (i.as_str(), l))
        .collect();
    let mut labelled = Labelled::default();
    for s in &final_scores.scores {
        if let Some(l) = labels.get(s.id.as_str()) {
            labelled.push(s, *l);
        }
    }
    let (auc, _) = labelled.auc_ks()?;
    let eco_view = runtime.block_on(scoring.ecosystem(&model)).map_err(err)?;
    let progress = runtime.block_on(control.progress_log(&job.id)).unwrap_or_default();
    let iv = runtime.block_on(iv_of(&mut control, &job.model_id));
    // Enterprises whose score fell sharply, else the riskiest at training time.
    let mut shown: Vec<String> = Vec::new();
    for id in alerts
        .iter()
        .filter(|a| a.kind == "score_drop")
        .map(|a| a.enterprise.clone())
        .chain(by_pd.iter().map(|s| s.id.clone()))
    {
        if shown.len() < 3 && !shown.contains(&id) {
            shown.push(id);
        }
    }
    let histories = runtime.block_on(histories(&mut scoring, &model, &shown))?;
    let report = build_report(
        &model,
        &job,
        &labelled,
        &progress,
        histories,
        &eco_view,
        &kinds,
        &warned,
        iv.as_ref(),
    );
    std::fs::write(&cfg.report, report::html(&report))
        .map_err(|e| format!("{}: {e}", cfg.report.display()))?;
    say(&format!("serving: wrote the report {}", cfg.report.display()));
    let gbdt_portfolio = serve_trees(&runtime, &mut control, &mut scoring, &label, say)?;
    let out = ServingReport {
        model,
        portfolio: first.scores.len(),
        periods,
        alerts: kinds,
        out_of_time_auc: auc,
        drift_psi: eco_view.drift_psi,
        warned,
        report: cfg.report.clone(),
        http: fed.http_addr().map(|a| format!("http://{a}")),
        gbdt_portfolio,
    };
    Ok((out, keep.then_some(fed)))
}

/// Trains the vertical GBDT (SecureBoost) `ecosystem-gbdt` on the latest snapshot, serves it
/// and scores the bank's portfolio by routing every enterprise through the three parties' leaf
/// sets; the enterprises scored.
fn serve_trees(
    runtime: &tokio::runtime::Runtime,
    control: &mut ControlClient,
    scoring: &mut ScoringClient,
    label: &str,
    say: &mut dyn FnMut(&str),
) -> Result<usize, String> {
    let model = "ecosystem-gbdt";
    let toml = format!(
        "name = \"{model}\"\nparties = [\"bank\", \"tax\", \"platform\"]\n\
         phase_timeout_secs = 600\ngrace_secs = 60\n[data]\nid = \"id\"\nlabel = \"{label}\"\n\
         [model]\nkind = \"gbdt\"\n{}[vertical]\nlabel_holder = \"bank\"\n",
        crate::vertical::gbdt_toml(&crate::demo::demo_gbdt())
    );
    say(&format!(
        "serving: training the vertical GBDT `{model}` (SecureBoost) on the latest month"
    ));
    let end = runtime.block_on(async {
        let job = control.submit(&toml).await.map_err(err)?;
        fedcredit_ops::progress::follow(control, &job.id, false).await.map_err(err)
    })?;
    if end.state != "succeeded" {
        return Err(format!("training {model} {}: {}", end.state, end.error));
    }
    let scored = runtime.block_on(async {
        let started = Instant::now();
        loop {
            let req = pb::ScoreRequest {
                model: model.into(),
                all: true,
                reasons: Some(3),
                ..Default::default()
            };
            match scoring.score(req).await {
                Ok(r) => return Ok(r),
                // The parts load when the job ends: retry briefly.
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(err(e)),
            }
        }
    })?;
    let ok: Vec<&pb::EnterpriseScore> =
        scored.scores.iter().filter(|s| s.error.is_empty()).collect();
    say(&format!(
        "serving: scored {} enterprises with `{model}` (each through every party's leaf sets; \
         thresholds and leaf values never left their owners)",
        ok.len()
    ));
    if let Some(s) = ok.iter().max_by(|a, b| a.pd.total_cmp(&b.pd)) {
        let reasons: Vec<String> = s
            .reasons
            .iter()
            .take(3)
            .map(|r| format!("{}:{} −{:.0}", r.party, r.feature, r.points_lost))
            .collect();
        say(&format!(
            "  riskiest under the trees: {}  PD {:.3}  {:.0} points  reasons: {}",
            s.id,
            s.pd,
            s.points,
            reasons.join("; ")
        ));
    }
    Ok(ok.len())
}

/// The report of a served vertical model.
#[allow(clippy::too_many_arguments)]
pub fn build_report(
    model: &str,
    job: &pb::JobInfo,
    labelled: &Labelled,
    progress: &[String],
    histories: Vec<Series>,
    eco: &pb::EcosystemResponse,
    alerts: &BTreeMap<String, usize>,
    warned: &EarlyWarning,
    iv: Option<&fedcredit_federation::vertical::woe::IvReport>,
) -> Report {
    let Labelled { pd, points, labels, party_points } = labelled;
    let (auc, ks) = labelled.auc_ks().unwrap_or((f64::NAN, f64::NAN));
    let (ks_bad, ks_good) = report::ks_curves(pd, labels);
    let diagonal = Series {
        name: "perfect calibration".into(),
        points: vec![
            (0.0, 0.0),
            (pd.iter().copied().fold(0.0, f64::max), pd.iter().copied().fold(0.0, f64::max)),
        ],
    };
    let mut training: Vec<Series> = Vec::new();
    let (mut loss, mut vauc) = (Vec::new(), Vec::new());
    for p in progress {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(p) {
            let done = v["done"].as_f64().unwrap_or(0.0);
            if let Some(l) = v["loss"].as_f64() {
                loss.push((done, l));
            }
            if let Some(a) = v["valid_auc"].as_f64() {
                vauc.push((done, a));
            }
        }
    }
    if !loss.is_empty() {
        training.push(Series { name: "log loss".into(), points: loss });
    }
    if !vauc.is_empty() {
        training.push(Series { name: "validation AUC".into(), points: vauc });
    }
    let spread: Vec<(String, f64)> = party_points
        .iter()
        .map(|(p, v)| {
            let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
            (
                p.clone(),
                (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt(),
            )
        })
        .collect();
    let mut party_charts = vec![
        Chart::Lines {
            title: "Training per epoch".into(),
            x: "epoch".into(),
            y: "value".into(),
            series: training,
        },
        Chart::Bars {
            title: "Contribution spread per party".into(),
            y: "std of its points".into(),
            categories: spread.iter().map(|s| s.0.clone()).collect(),
            groups: vec![("points std".into(), spread.iter().map(|s| s.1).collect())],
        },
    ];
    if let Some(iv) = iv {
        let mut rows: Vec<(String, f64)> = iv
            .parties
            .iter()
            .flat_map(|p| {
                p.features
                    .iter()
                    .filter(|f| f.selected)
                    .map(move |f| (format!("{}:{}", p.party, f.feature), f.iv))
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows.truncate(15);
        party_charts.push(Chart::Bars {
            title: "Information value of the selected features, per party".into(),
            y: "IV".into(),
            categories: rows.iter().map(|r| r.0.clone()).collect(),
            groups: vec![("IV".into(), rows.iter().map(|r| r.1).collect())],
        });
    }
    let mut sections = vec![
        (
            "Out-of-time discrimination and calibration".to_string(),
            vec![
                Chart::Lines {
                    title: format!("ROC (AUC {auc:.3})"),
                    x: "false positive rate".into(),
                    y: "true positive rate".into(),
                    series: vec![
                        Series { name: "model".into(), points: report::roc(pd, labels) },
                        Series { name: "random".into(), points: vec![(0.0, 0.0), (1.0, 1.0)] },
                    ],
                },
                Chart::Lines {
                    title: format!("KS ({:.3})", ks),
                    x: "share of enterprises, riskiest first".into(),
                    y: "cumulative share".into(),
                    series: vec![ks_bad, ks_good],
                },
                report::distribution(points, labels),
                Chart::Lines {
                    title: "Calibration".into(),
                    x: "mean predicted PD".into(),
                    y: "observed default rate".into(),
                    series: vec![report::calibration(pd, labels), diagonal],
                },
            ],
        ),
        ("Training and the parties".to_string(), party_charts),
    ];
    let health = Series {
        name: "health index".into(),
        points: eco.points.iter().map(|p| (p.period as f64, p.index)).collect(),
    };
    let mean = Series {
        name: "mean score / 10".into(),
        points: eco.points.iter().map(|p| (p.period as f64, p.mean_points / 10.0)).collect(),
    };
    sections.push((
        "Dynamic score".to_string(),
        vec![
            Chart::Lines {
                title: "Score history of enterprises".into(),
                x: "recorded score".into(),
                y: "points".into(),
                series: histories,
            },
            Chart::Lines {
                title: "Ecosystem health index per period".into(),
                x: "period".into(),
                y: "index".into(),
                series: vec![health, mean],
            },
        ],
    ));
    Report {
        title: format!("fedcredit — {model} (job {})", job.id),
        summary: vec![
            format!(
                "Vertical {} model of the bank, the tax bureau and the platform; every part stays at its party.",
                job.model_kind
            ),
            format!(
                "Out of time: {} enterprises scored at the last month, AUC {auc:.4}, KS {ks:.4}.",
                pd.len()
            ),
            format!(
                "Drift (PSI of current vs first scores): {:.3}{}.",
                eco.drift_psi,
                if eco.retrain_recommended { ", retraining recommended" } else { "" }
            ),
            format!(
                "Alerts: {}.",
                alerts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            ),
            format!("Early warning: {}", warned.sentence()),
        ],
        sections,
    }
}

/// Enterprises per scoring request of `fedcredit report`.
const REPORT_BATCH: usize = 500;

/// Labelled enterprises for a report: a table with an id column and a 0/1 label column (for
/// example the bank's own file of a later month, whose label is the default that followed).
#[derive(Debug, Clone)]
pub struct Labels {
    /// The table.
    pub path: PathBuf,
    /// Its id column.
    pub id: String,
    /// Its label column.
    pub label: String,
}

/// `fedcredit report JOB`: the report of the model trained by job `job`, from the
/// coordinator's records and, with `labels`, the current scores of the labelled enterprises by
/// the serving version of the model named after the job (the registry serves one version).
///
/// # Errors
/// A message naming the call or file that failed.
pub async fn report_for_job(
    cfg: &fedcredit_ops::ClientConfig,
    job: &str,
    labels: Option<&Labels>,
) -> Result<Report, String> {
    let mut control = ControlClient::connect(cfg).await.map_err(err)?;
    let mut scoring = ScoringClient::connect(cfg).await.map_err(err)?;
    let info = control.job(job).await.map_err(err)?;
    if info.state != "succeeded" {
        return Err(format!("job {job} is {}: no model to report on", info.state));
    }
    let model = info.name.clone();
    let progress = control.progress_log(job).await.map_err(err)?;
    let iv = iv_of(&mut control, &info.model_id).await;
    let mut labelled = Labelled::default();
    if let Some(l) = labels {
        let spec = fedcredit_datasets::TableSpec::new(&l.path, &l.id)
            .with_label(&l.label)
            .with_features(Vec::<String>::new());
        let t = fedcredit_datasets::load_table(&spec).map_err(err)?;
        let lab = t.label.as_ref().map(|x| x.to_vec()).unwrap_or_default();
        // Batches below any sensible `[scoring] max_batch` (10,000 by default).
        for (ids, ls) in t.ids.chunks(REPORT_BATCH).zip(lab.chunks(REPORT_BATCH)) {
            let r = scoring
                .score(pb::ScoreRequest {
                    model: model.clone(),
                    ids: ids.to_vec(),
                    reasons: Some(0),
                    ..Default::default()
                })
                .await
                .map_err(err)?;
            for (s, l) in r.scores.iter().zip(ls) {
                labelled.push(s, *l);
            }
        }
    }
    let eco = scoring.ecosystem(&model).await.unwrap_or_default();
    let alerts = scoring.alerts(0, 10_000).await.map_err(err)?;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.model == model || a.model.is_empty()) {
        *kinds.entry(a.kind.clone()).or_default() += 1;
    }
    let fallen: Vec<String> = alerts
        .iter()
        .filter(|a| a.kind == "score_drop" && a.model == model)
        .take(3)
        .map(|a| a.enterprise.clone())
        .collect();
    let histories = histories(&mut scoring, &model, &fallen).await?;
    Ok(build_report(
        &model,
        &info,
        &labelled,
        &progress,
        histories,
        &eco,
        &kinds,
        &EarlyWarning::default(),
        iv.as_ref(),
    ))
}

/// Scored enterprises with their outcomes, for the report's charts.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    /// PD per enterprise.
    pub pd: Vec<f64>,
    /// Score points per enterprise.
    pub points: Vec<f64>,
    /// 0/1 outcome per enterprise.
    pub labels: Vec<f64>,
    /// Each party's points per enterprise.
    pub party_points: BTreeMap<String, Vec<f64>>,
}

impl Labelled {
    /// Adds a score (one without a score is left out) and its outcome.
    pub fn push(&mut self, s: &pb::EnterpriseScore, label: f64) {
        if !s.error.is_empty() {
            return;
        }
        self.pd.push(s.pd);
        self.points.push(s.points);
        self.labels.push(label);
        for p in &s.parties {
            self.party_points.entry(p.party.clone()).or_default().push(p.points);
        }
    }

    /// AUC and KS of the PDs against the outcomes.
    ///
    /// # Errors
    /// When there are no enterprises or a single outcome.
    pub fn auc_ks(&self) -> Result<(f64, f64), String> {
        Ok((
            fedcredit_models::metrics::auc(&self.pd, &self.labels).map_err(err)?,
            fedcredit_models::metrics::ks(&self.pd, &self.labels).map_err(err)?,
        ))
    }
}

/// The score history of each of `ids` under `model`, as chart lines.
async fn histories(
    scoring: &mut ScoringClient,
    model: &str,
    ids: &[String],
) -> Result<Vec<Series>, String> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let h = scoring.history(id, model).await.map_err(err)?;
        out.push(Series {
            name: id.clone(),
            points: h.entries.iter().enumerate().map(|(i, e)| (i as f64, e.points)).collect(),
        });
    }
    Ok(out)
}

/// The IV report a scorecard's model reference carries, if any.
async fn iv_of(
    control: &mut ControlClient,
    model_id: &str,
) -> Option<fedcredit_federation::vertical::woe::IvReport> {
    let m = control.model(model_id).await.ok()?;
    VerticalModelRef::from_json(&m.artifact_json).ok()?.iv
}

/// How well alerts saw defaults coming, against the generator's truth.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EarlyWarning {
    /// Monitored enterprises that default after the training month (up to 12 months after the
    /// last snapshot).
    pub defaults: usize,
    /// Of them, flagged by a score alert (drop, PD above threshold, contribution jump) raised
    /// before their default month.
    pub score: usize,
    /// Flagged by a contagion alert before their default month.
    pub contagion: usize,
    /// Flagged by a contagion alert and by no score alert.
    pub contagion_only: usize,
    /// Flagged by either.
    pub either: usize,
    /// Median months from the first score alert to the default.
    pub score_lead_months: f64,
    /// Median months from the first contagion alert to the default.
    pub contagion_lead_months: f64,
}

impl EarlyWarning {
    /// For people, one sentence.
    pub fn sentence(&self) -> String {
        let months = |m: f64| if m.is_finite() { format!("{m}") } else { "-".to_string() };
        format!(
            "of {} monitored enterprises defaulting after the training month, alerts saw {} coming: \
             score alerts {} (median {} months ahead), contagion alerts {} (median {} months ahead), \
             {} by contagion alone",
            self.defaults,
            self.either,
            self.score,
            months(self.score_lead_months),
            self.contagion,
            months(self.contagion_lead_months),
            self.contagion_only
        )
    }
}

/// The early-warning figures: `boundaries` holds, per month in order, the newest alert number
/// after that month's scoring.
pub fn early_warning(
    eco: &Ecosystem,
    monitored: &BTreeSet<&str>,
    alerts: &[pb::Alert],
    boundaries: &[(i64, usize)],
    trained: usize,
) -> EarlyWarning {
    let last = boundaries.last().map_or(trained, |b| b.1) as i64;
    let month_of = |seq: i64| boundaries.iter().find(|b| seq <= b.0).map(|b| b.1 as i64);
    let default_month: HashMap<&str, i64> = eco
        .enterprises()
        .iter()
        .filter_map(|e| e.default_month.map(|m| (e.id.as_str(), m)))
        .filter(|(id, m)| *m > trained as i64 && *m <= last + 12 && monitored.contains(id))
        .collect();
    let first_alert = |kinds: &[&str]| -> HashMap<&str, i64> {
        let mut out: HashMap<&str, i64> = HashMap::new();
        for a in alerts.iter().filter(|a| kinds.contains(&a.kind.as_str())) {
            if let (Some(m), Some(d)) = (month_of(a.seq), default_month.get(a.enterprise.as_str()))
                && m < *d
            {
                let e = out.entry(a.enterprise.as_str()).or_insert(m);
                *e = (*e).min(m);
            }
        }
        out
    };
    let score = first_alert(&["score_drop", "pd_above", "contribution_jump"]);
    let contagion = first_alert(&["contagion"]);
    let median_lead = |flagged: &HashMap<&str, i64>| {
        let mut leads: Vec<f64> =
            flagged.iter().map(|(id, m)| (default_month[id] - m) as f64).collect();
        leads.sort_by(f64::total_cmp);
        leads.get(leads.len() / 2).copied().unwrap_or(f64::NAN)
    };
    EarlyWarning {
        defaults: default_month.len(),
        score: score.len(),
        contagion: contagion.len(),
        contagion_only: contagion.keys().filter(|k| !score.contains_key(*k)).count(),
        either: score.keys().chain(contagion.keys()).collect::<BTreeSet<_>>().len(),
        score_lead_months: median_lead(&score),
        contagion_lead_months: median_lead(&contagion),
    }
}
