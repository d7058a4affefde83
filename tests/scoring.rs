//! The scoring service end to end, over processes with mutual TLS: a vertical scorecard
//! trained by a bank, a tax bureau and a platform is served by federated inference; HTTP and
//! gRPC give the same score; errors get clear statuses while the service keeps serving; a
//! party's new snapshot re-scores exactly the enterprises it moved, with history and alerts;
//! a sharp fall raises contagion alerts for the fallen enterprise's suppliers up to three
//! tiers and for no one else; a participant restarted under concurrent load loses no request.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, operator, rt};
use fedcredit_ops::ScoringClient;
use fedcredit_ops::bench_vlr::{VerticalTables, vertical_job_toml};
use fedcredit_ops::launch::{LaunchOptions, LocalFederation, PartySetup};
use fedcredit_proto::pb;
use serde_json::{Value, json};

/// A bare HTTP/1.1 request; (status, body as JSON or as a string value).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let raw = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    // The body may come chunked: take what lies between the first `{` and the last `}`.
    let json = match (raw.find('{'), raw.rfind('}')) {
        (Some(a), Some(b)) if b > a => serde_json::from_str(&raw[a..=b]).unwrap_or(Value::Null),
        _ => Value::String(raw.to_string()),
    };
    let json = if json.is_null() { Value::String(text.clone()) } else { json };
    (status, json)
}

fn id_of(e: u64) -> String {
    format!("91{e:016}")
}

/// Rewrites `path` (atomically, as a new snapshot) with `f` applied to the cells of `id`'s row.
fn edit_row(path: &Path, id: &str, f: impl Fn(&str, &str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut out = header.join(",") + "\n";
    for l in lines {
        if l.starts_with(id) {
            let cells: Vec<String> = l.split(',').zip(&header).map(|(c, h)| f(h, c)).collect();
            out.push_str(&cells.join(","));
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `f` until it returns `Some`, for at most 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(x) = f() {
            return x;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn vertical_scores_are_served_move_with_the_data_and_raise_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tables = VerticalTables::new(2_000, &[4, 5, 4], 11);
    let (bank, tax, platform) = (&tables.names[0], &tables.names[1], &tables.names[2]);
    // Supply chain known to the tax bureau: s1 supplies the core enterprise, s2 supplies s1,
    // s3 supplies s2, s4 supplies s3 (a fourth tier: not flagged); x supplies someone else.
    let core = id_of(7);
    let (s1, s2, s3, s4, x) = (id_of(11), id_of(12), id_of(13), id_of(14), id_of(15));
    std::fs::write(
        d.join("links.csv"),
        format!(
            "supplier_id,customer_id\n{s1},{core}\n{s2},{s1}\n{s3},{s2}\n{s4},{s3}\n{x},{}\n",
            id_of(99)
        ),
    )
    .unwrap();
    let parties: Vec<PartySetup> = tables
        .names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let path = d.join(format!("{n}.csv"));
            tables.write(k, &path).unwrap();
            let mut extra = "watch_secs = 0.2\n".to_string();
            if n == tax {
                extra.push_str(&format!("links = \"{}\"\n", d.join("links.csv").display()));
            }
            PartySetup::new(n.clone(), path).with_data_extra(extra)
        })
        .collect();
    let mut opts = LaunchOptions::new(env!("CARGO_BIN_EXE_fedcredit"), d);
    opts.http = true;
    opts.scoring_extra = format!(
        "contagion_party = \"{tax}\"\ndebounce_ms = 300\ntimeout_ms = 3000\nmax_batch = 500\n\
         [alerts]\nscore_drop = 0.02\ncontribution_jump = 10.0\npd_above = 0.5\n"
    );
    let mut fed = LocalFederation::start(opts, &parties).expect("start the federation");
    let web = fed.http_addr().expect("the HTTP API listens");
    let runtime = rt();

    // Train: version 1 of `risk` is a scorecard (serves at once), version 2 a logistic model.
    let job = |kind: &str| {
        vertical_job_toml(&tables.names, kind, 4, 256).replacen(
            &format!("name = \"bench-vertical-{kind}-4\""),
            "name = \"risk\"",
            1,
        )
    };
    let scorecard_job = runtime.block_on(async {
        let mut c = operator(&fed).await;
        let end = common::run_job(&mut c, &job("scorecard")).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        let end2 = common::run_job(&mut c, &job("logistic")).await;
        assert_eq!(end2.state, "succeeded", "{}", end2.error);
        // Retraining warm-starts from a served model: one epoch from version 2's parts is as
        // good as version 2; a job naming a model a party does not hold is refused by it.
        let warm = |from: &str| {
            job("logistic")
                .replace("[vertical.lr]", &format!("warm_start = \"{from}\"\n[vertical.lr]"))
                .replace("epochs = 4", "epochs = 1")
        };
        let end3 = common::run_job(&mut c, &warm(&end2.id)).await;
        assert_eq!(end3.state, "succeeded", "{}", end3.error);
        let bad = common::run_job(&mut c, &warm("job-nothing")).await;
        assert_eq!(bad.state, "failed");
        assert!(bad.error.contains("warm-start"), "{}", bad.error);
        end.id
    });
    let ids: Vec<String> = (0..40).map(id_of).collect();

    // HTTP and gRPC give the same score, with each party's snapshot and reason codes.
    let (status, one) = http(web, "POST", "/v1/score", &json!({"id": core}).to_string());
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["model"], "risk");
    assert_eq!(one["version"], 1);
    let s = &one["scores"][0];
    let pd = s["pd"].as_f64().unwrap();
    assert!(pd > 0.0 && pd < 1.0, "{s}");
    let parties_seen: BTreeSet<&str> =
        s["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties_seen, tables.names.iter().map(String::as_str).collect());
    assert!(
        s["parties"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["snapshot"].as_str().unwrap().ends_with('Z'))
    );
    let mut grpc = runtime.block_on(async {
        let cfg = fed.client_config();
        ScoringClient::connect(&cfg).await.expect("connect to Scoring")
    });
    // Only the operator and [scoring] clients may call Scoring: a party's certificate may not.
    let as_bank = fedcredit_ops::ClientConfig {
        url: fed.url(),
        tls: Some(fedcredit_ops::client::party_tls(&d.join("certs"), bank)),
        server_name: "localhost".into(),
    };
    let denied = runtime.block_on(async {
        let mut c = ScoringClient::connect(&as_bank).await.expect("connect as the bank");
        c.score(pb::ScoreRequest { ids: vec![core.clone()], ..Default::default() }).await
    });
    let denied = denied.unwrap_err().to_string();
    assert!(denied.contains("permission denied") && denied.contains("Scoring"), "{denied}");
    let g = runtime
        .block_on(grpc.score(pb::ScoreRequest { ids: vec![core.clone()], ..Default::default() }))
        .unwrap();
    assert_eq!(g.scores[0].pd, pd, "HTTP and gRPC disagree");
    assert_eq!(g.scores[0].points, s["points"].as_f64().unwrap());
    // The points add up: the parties' contributions sum to the score.
    let sum: f64 = g.scores[0].parties.iter().map(|p| p.points).sum();
    assert!((sum - g.scores[0].points).abs() < 1e-6);

    // A batch makes the first 40 enterprises monitored.
    let b = runtime
        .block_on(grpc.score(pb::ScoreRequest { ids: ids.clone(), ..Default::default() }))
        .unwrap();
    assert_eq!(b.scores.len(), 40);
    assert!(b.scores.iter().all(|s| s.error.is_empty()));

    // Errors, each clear, and the service keeps serving.
    let (st, e) = http(web, "POST", "/v1/score", &json!({"id": "91nobody"}).to_string());
    assert_eq!(st, 404, "{e}");
    assert!(e["error"].as_str().unwrap().contains("not known to the label holder"), "{e}");
    let (st, e) = http(web, "POST", "/v1/score", &json!({"id": core, "version": 2}).to_string());
    assert_eq!(st, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("not served"), "{e}");
    let (st, _) = http(web, "POST", "/v1/score", &json!({"id": core, "version": 9}).to_string());
    assert_eq!(st, 404);
    let (st, e) = http(web, "POST", "/v1/score", "{\"id\": ");
    assert_eq!(st, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("malformed JSON"), "{e}");
    let (st, e) = http(web, "POST", "/v1/score", &json!({"idz": core}).to_string());
    assert_eq!(st, 400, "{e}");
    let many: Vec<String> = (0..501).map(id_of).collect();
    let (st, e) = http(web, "POST", "/v1/score", &json!({"ids": many}).to_string());
    assert_eq!(st, 413, "{e}");
    let (st, e) =
        http(web, "POST", "/v1/score/features", &json!({"rows": [{"id": "a"}]}).to_string());
    assert_eq!(st, 409, "a vertical model on supplied features: {e}");
    let nf = runtime.block_on(
        grpc.score(pb::ScoreRequest { ids: vec!["91nobody".into()], ..Default::default() }),
    );
    let nf = nf.unwrap_err().to_string();
    assert!(nf.contains("not found"), "{nf}");
    // A participant down: 503 naming it; back up: served again.
    fed.kill_participant(platform);
    let (st, e) = eventually("the platform's absence", || {
        let (st, e) = http(web, "POST", "/v1/score", &json!({"id": core}).to_string());
        (st == 503).then_some((st, e))
    });
    assert_eq!(st, 503);
    assert!(e["error"].as_str().unwrap().contains(platform.as_str()), "{e}");
    let setup = fed.setup(platform).unwrap().clone();
    fed.start_participant(&setup).unwrap();
    eventually("the platform's return", || {
        (http(web, "POST", "/v1/score", &json!({"id": core}).to_string()).0 == 200).then_some(())
    });

    // Concurrent scoring while the platform restarts: every request is answered.
    let answered = {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..40)
                        .map(|i| {
                            let id = id_of((t * 40 + i) % 40);
                            http(web, "POST", "/v1/score", &json!({"id": id}).to_string()).0
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        fed.kill_participant(platform);
        std::thread::sleep(Duration::from_millis(500));
        fed.start_participant(&setup).unwrap();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect::<Vec<u16>>()
    };
    assert_eq!(answered.len(), 240);
    assert!(answered.iter().all(|s| *s == 200 || *s == 503), "{answered:?}");
    eventually("the platform's return", || {
        (http(web, "POST", "/v1/score", &json!({"id": core}).to_string()).0 == 200).then_some(())
    });

    // A new snapshot at the tax bureau moves the core enterprise (to the risky end of its
    // columns) and one other: exactly those are re-scored and recorded.
    let other = id_of(20);
    let history_len = |id: &str| -> usize {
        let (st, h) = http(web, "GET", &format!("/v1/enterprises/{id}/history?model=risk"), "");
        if st == 404 { 0 } else { h["history"].as_array().map_or(0, Vec::len) }
    };
    let before: Vec<usize> = ids.iter().map(|i| history_len(i)).collect();
    assert!(before.iter().all(|n| *n == 1), "{before:?}");
    edit_row(
        &d.join(format!("{tax}.csv")),
        &core,
        |h, c| if h == "id" { c.into() } else { "-9".into() },
    );
    edit_row(
        &d.join(format!("{tax}.csv")),
        &other,
        |h, c| if h == "id" { c.into() } else { "9".into() },
    );
    eventually("the re-scored core enterprise", || (history_len(&core) == 2).then_some(()));
    eventually("the re-scored other enterprise", || (history_len(&other) == 2).then_some(()));
    std::thread::sleep(Duration::from_millis(800));
    for (i, id) in ids.iter().enumerate() {
        let want = if *id == core || *id == other { 2 } else { 1 };
        assert_eq!(history_len(id), want, "enterprise {i}");
    }
    let (_, h) = http(web, "GET", &format!("/v1/enterprises/{core}/history"), "");
    let rows = h["history"].as_array().unwrap();
    assert!(rows[1]["cause"].as_str().unwrap().contains(tax.as_str()), "{h}");
    let tax_points = |r: &Value| {
        r["parties"].as_array().unwrap().iter().find(|p| p["party"] == tax.as_str()).unwrap()["points"]
            .as_f64()
            .unwrap()
    };
    assert!(tax_points(&rows[1]) < tax_points(&rows[0]), "{h}");
    let bank_points = |r: &Value| {
        r["parties"].as_array().unwrap().iter().find(|p| p["party"] == bank.as_str()).unwrap()["points"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(bank_points(&rows[1]), bank_points(&rows[0]), "the bank's part did not move");

    // Alerts: the core enterprise's fall, a jump of the tax bureau's contribution, and
    // contagion for its suppliers up to three tiers, no one else.
    let alerts = eventually("contagion alerts", || {
        let (_, a) = http(web, "GET", "/v1/alerts?limit=1000", "");
        let list = a["alerts"].as_array().cloned().unwrap_or_default();
        list.iter().any(|x| x["kind"] == "contagion").then_some(list)
    });
    let of = |kind: &str| -> BTreeSet<String> {
        alerts
            .iter()
            .filter(|a| a["kind"] == kind)
            .map(|a| a["enterprise"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(of("score_drop").contains(&core), "{alerts:?}");
    assert!(of("contribution_jump").contains(&core), "{alerts:?}");
    assert_eq!(
        of("contagion"),
        [s1.clone(), s2.clone(), s3.clone()].into_iter().collect(),
        "{alerts:?}"
    );
    assert!(!of("contagion").contains(&s4) && !of("contagion").contains(&x));
    for a in alerts.iter().filter(|a| a["kind"] == "contagion") {
        assert!(
            !a["detail"].as_str().unwrap().contains(&core),
            "the fallen customer is named: {a}"
        );
    }

    // The ecosystem: a period recorded, drift computed.
    let (st, eco) = http(web, "GET", "/v1/ecosystem?model=risk", "");
    assert_eq!(st, 200, "{eco}");
    assert!(!eco["points"].as_array().unwrap().is_empty(), "{eco}");
    assert!(eco["drift_psi"].as_f64().is_some());

    // Operations.
    let (st, m) = http(web, "GET", "/metrics", "");
    assert_eq!(st, 200);
    let m = m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string());
    assert!(m.contains("fedcredit_scoring_requests_total"), "{m}");
    assert!(m.contains("fedcredit_scoring_latency_seconds_bucket"), "{m}");
    assert!(m.contains("fedcredit_parties_connected 3"), "{m}");
    assert_eq!(http(web, "GET", "/healthz", "").0, 200);
    assert_eq!(http(web, "GET", "/readyz", "").0, 200);

    // The CLI: one enterprise, the whole portfolio into Parquet, the alerts.
    let (ok, out, err) = cli(&fed, &["score", "--id", &core]);
    assert!(ok, "{err}");
    assert!(out.contains("PD") && out.contains(tax.as_str()), "{out}");
    let file = d.join("scores.parquet");
    let (ok, out, err) = cli(&fed, &["score", "--all", "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("2200 enterprises scored"), "{out}");
    let table = fedcredit_datasets::table::load_table(&fedcredit_datasets::table::TableSpec::new(
        &file, "id",
    ))
    .expect("read the scores back");
    assert_eq!(table.ids.len(), 2_200);
    let (ok, out, err) = cli(&fed, &["alerts", "--limit", "5000"]);
    assert!(ok, "{err}");
    assert!(out.contains("contagion"), "{out}");
    // The warm-started version 3 (one epoch from version 2's parts) ranks the 2,000 common
    // enterprises as well as version 2 (each job's validation rows are drawn afresh from its
    // PSI keys, so their own figures are not comparable; these are the same rows).
    let labels: std::collections::HashMap<String, f64> =
        std::fs::read_to_string(d.join(format!("{bank}.csv")))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut cells = l.split(',');
                Some((cells.next()?.to_string(), cells.next()?.parse().ok()?))
            })
            .collect();
    let common_ids: Vec<String> = (0..2_000).map(id_of).collect();
    let mut auc_of = |version: &str| {
        let (ok, _, err) = cli(&fed, &["models", "promote", "risk", version]);
        assert!(ok, "{err}");
        let (mut pd, mut y) = (Vec::new(), Vec::new());
        for chunk in common_ids.chunks(500) {
            let r = runtime
                .block_on(grpc.score(pb::ScoreRequest {
                    ids: chunk.to_vec(),
                    reasons: Some(0),
                    ..Default::default()
                }))
                .unwrap();
            assert_eq!(r.version.to_string(), version);
            for s in r.scores {
                pd.push(s.pd);
                y.push(labels[&s.id]);
            }
        }
        fedcredit_models::metrics::auc(&pd, &y).unwrap()
    };
    let (a2, a3) = (auc_of("2"), auc_of("3"));
    eprintln!("version 2 {a2:.4}, warm-started version 3 {a3:.4}");
    assert!(a3 >= a2 - 0.01, "warm-started {a3} vs {a2}");
    // `fedcredit report` on version 1's job, evaluated on the bank's labelled enterprises
    // scored now: a self-contained page with its charts.
    let page = d.join("report.html");
    let (ok, _, err) = cli(
        &fed,
        &[
            "report",
            &scorecard_job,
            "--labels",
            d.join(format!("{bank}.csv")).to_str().unwrap(),
            "--id",
            "id",
            "--label",
            "y",
            "--out",
            page.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.matches("<svg class=\"chart\"").count() >= 8, "{html}");
    assert!(html.contains("ROC (AUC 0.") && html.contains("Information value"), "{html}");
}

/// A vertical GBDT (SecureBoost) is served too: the label holder intersects the others' leaf
/// sets with its own; the scores equal the trees' log-odds computed from the kept parts, the
/// parties' points add up to the score, reasons name the owners of the splits, and a feature
/// holder's new snapshot re-scores the enterprise it moved.
#[test]
fn vertical_trees_are_served_from_the_parties_leaf_sets() {
    use fedcredit_federation::vertical::model::{PartyModel, joint_log_odds};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tables = VerticalTables::new(1_500, &[3, 4, 3], 5);
    let parties: Vec<PartySetup> = tables
        .names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let path = d.join(format!("{n}.csv"));
            tables.write(k, &path).unwrap();
            PartySetup::new(n.clone(), path).with_data_extra("watch_secs = 0.2\n")
        })
        .collect();
    let mut opts = LaunchOptions::new(env!("CARGO_BIN_EXE_fedcredit"), d);
    opts.http = true;
    opts.scoring_extra = "debounce_ms = 300\ntimeout_ms = 5000\n".into();
    let fed = LocalFederation::start(opts, &parties).expect("start the federation");
    let web = fed.http_addr().expect("the HTTP API listens");
    let quoted: Vec<String> = tables.names.iter().map(|n| format!("\"{n}\"")).collect();
    let toml = format!(
        "name = \"trees\"\nparties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n\
         kind = \"gbdt\"\nn_trees = 12\nmax_depth = 3\nmax_bins = 16\n[vertical]\n\
         label_holder = \"{}\"\n",
        quoted.join(", "),
        tables.names[0]
    );
    let job = rt().block_on(async {
        let mut c = operator(&fed).await;
        let end = common::run_job(&mut c, &toml).await;
        assert_eq!(end.state, "succeeded", "{}\n{}", end.error, fed.log("coordinator"));
        end.id
    });
    let entities: Vec<u64> = (0..30).collect();
    let ids: Vec<String> = entities.iter().map(|&e| id_of(e)).collect();
    let (status, body) = http(web, "POST", "/v1/score", &json!({"ids": ids}).to_string());
    assert_eq!(status, 200, "{body}");
    let scores = body["scores"].as_array().unwrap();
    // The log-odds the kept parts give these rows, computed here from the same columns.
    let mut parts = std::collections::BTreeMap::new();
    let mut features = std::collections::BTreeMap::new();
    for (k, n) in tables.names.iter().enumerate() {
        let path = fed.dir().join(format!("{n}-state/models/{job}.json"));
        let part: PartyModel =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(matches!(part, PartyModel::Gbdt { .. }), "{n} kept {part:?}");
        let id = fedcredit_federation::PartyId(n.clone());
        parts.insert(id.clone(), part);
        features.insert(id, tables.features_of(k, &entities).unwrap());
    }
    let z = joint_log_odds(&parts, &features).unwrap();
    let mut named = BTreeSet::new();
    for (s, z) in scores.iter().zip(&z) {
        let pd = s["pd"].as_f64().unwrap();
        assert!((pd - 1.0 / (1.0 + (-z).exp())).abs() < 1e-9, "{s} vs log-odds {z}");
        let sum: f64 =
            s["parties"].as_array().unwrap().iter().map(|p| p["points"].as_f64().unwrap()).sum();
        assert!((sum - s["points"].as_f64().unwrap()).abs() < 1e-6, "{s}");
        for r in s["reasons"].as_array().unwrap() {
            named.insert(r["party"].as_str().unwrap().to_string());
        }
    }
    assert!(named.len() >= 2, "reasons name only {named:?}");
    // The platform's data moves for one enterprise: it is re-scored, the cause names it.
    let platform = &tables.names[2];
    let history_len = |id: &str| -> usize {
        let (st, h) = http(web, "GET", &format!("/v1/enterprises/{id}/history?model=trees"), "");
        if st == 404 { 0 } else { h["history"].as_array().map_or(0, Vec::len) }
    };
    eventually("the first history rows", || (history_len(&ids[4]) == 1).then_some(()));
    // Extreme values on every column send the row down other branches of the platform's
    // splits.
    edit_row(&d.join(format!("{platform}.csv")), &ids[3], |h, c| {
        if h == "id" { c.to_string() } else { "-9.0".to_string() }
    });
    edit_row(&d.join(format!("{platform}.csv")), &ids[4], |h, c| {
        if h == "id" { c.to_string() } else { "9.0".to_string() }
    });
    eventually("the re-scored enterprise", || {
        (history_len(&ids[3]) == 2 || history_len(&ids[4]) == 2).then_some(())
    });
    assert_eq!(history_len(&ids[10]), 1, "an enterprise whose data did not move");
}
