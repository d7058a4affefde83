//! Federated WOE/IV through the real runtime in memory: party sessions with real certificates
//! and sealed party-to-party payloads, the vertical conductor and roles, started after an
//! alignment built here (the PSI stage is tested on its own). Checks that the IV tables and
//! each party's kept WOE equal the centralized binner's on the joined table, bit for bit, and
//! from the recorded transcript that the coordinator relays only sealed bytes and sees no bin,
//! edge or label; and that what a feature holder receives is ciphertexts it cannot read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_crypto::elgamal::{self, DlogTable, SecretKey};
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{Identity, PartySession};
use fedcredit_federation::vertical::conductor::VerticalConductor;
use fedcredit_federation::vertical::role::VerticalRole;
use fedcredit_federation::vertical::woe::local::{self, LocalParty};
use fedcredit_federation::vertical::woe::{IvReport, PartyWoe};
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::binning::{Binner, BinningMethod, BinningParams};
use fedcredit_models::{Dataset, FeatureSpec, Features};
use fedcredit_proto::pb;
use fedcredit_transport::identity::party_identity;
use fedcredit_transport::tls::init_certs;
use ndarray::{Array1, Array2};
use prost::Message;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn job() -> JobId {
    JobId("woe-job".into())
}

fn spec(parties: &[&str], label_holder: &str, model: &str) -> JobSpec {
    let names: Vec<String> = parties.iter().map(|p| format!("\"{p}\"")).collect();
    JobSpec::from_toml(&format!(
        "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n[vertical]\nlabel_holder = \"{label_holder}\"\n",
        names.join(", ")
    ))
    .unwrap()
}

/// The repository's shared data folder, if present.
fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets").join(rel);
    p.exists().then_some(p)
}

/// A numeric CSV with a header: (column names, rows of cells).
fn read_csv(path: &PathBuf) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Runs the stage over the real runtime; returns the report, what each party kept and the
/// transcript.
fn federated(
    spec: &JobSpec,
    parties: &[LocalParty],
) -> (IvReport, BTreeMap<PartyId, PartyWoe>, Vec<Entry>) {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = parties.iter().map(|p| p.name.0.clone()).collect();
    let certs = init_certs(dir.path(), &names, &[]).unwrap();
    let schemas =
        parties.iter().map(|p| (p.name.clone(), p.table.features.specs.clone())).collect();
    let rows = parties[0].alignment.len() as u64;
    let conductor = VerticalConductor::after_alignment(&job(), spec, &schemas, rows).unwrap();
    let sessions: Vec<(PartyId, PartySession)> = parties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = ChaCha20Rng::seed_from_u64(100 + i as u64);
            let role = VerticalRole::with_alignment(
                &job(),
                spec,
                &p.name,
                p.table.clone(),
                p.alignment.clone(),
            )
            .unwrap();
            let identity: Identity = party_identity(&certs.parties[&p.name.0]).unwrap();
            let secret = ChannelSecret::generate(&mut rng);
            let s = PartySession::new(
                job(),
                spec,
                p.name.clone(),
                Box::new(role),
                secret,
                identity,
                rng,
            );
            (p.name.clone(), s)
        })
        .collect();
    let mut fed = Federation::new(job(), Box::new(conductor), sessions);
    fed.start(&mut honest).unwrap();
    let outcome = fed.run(&mut honest).unwrap();
    let report: IvReport = serde_json::from_str(outcome.artifact_json.as_ref().unwrap()).unwrap();
    assert_eq!(outcome.metrics["woe_features"], report.n_features() as f64);
    let mut kept = BTreeMap::new();
    // What each party kept, read back through a role restored from its last checkpoint.
    for p in parties {
        let bytes = &fed.checkpoints[&p.name];
        let (_, role_bytes) = fedcredit_federation::protocol::split_checkpoint(bytes).unwrap();
        let role =
            VerticalRole::new(&job(), spec, &p.name, p.table.clone(), Some(&role_bytes), None)
                .unwrap();
        kept.insert(p.name.clone(), PartyWoe::from_kept(role.kept()).unwrap().expect("kept WOE"));
    }
    (report, kept, fed.transcript)
}

/// The centralized binner's tables on the joined table equal the federated ones, feature by
/// feature in party order.
fn assert_equals_centralized(
    report: &IvReport,
    kept: &BTreeMap<PartyId, PartyWoe>,
    parties: &[LocalParty],
    label: &[f64],
    params: &BinningParams,
) {
    let n = parties[0].alignment.len();
    let mut specs = Vec::new();
    let mut cols: Vec<Vec<f64>> = Vec::new();
    let mut owner = Vec::new();
    for p in parties {
        for (j, s) in p.table.features.specs.iter().enumerate() {
            specs.push(FeatureSpec {
                name: format!("{}.{}", p.name.0, s.name),
                kind: s.kind.clone(),
            });
            let col = p.table.features.values.column(j);
            cols.push(p.alignment.rows.iter().map(|&r| col[r as usize]).collect());
            owner.push((p.name.clone(), j));
        }
    }
    let mut values = Array2::<f64>::zeros((n, cols.len()));
    for (j, c) in cols.iter().enumerate() {
        for t in 0..n {
            values[[t, j]] = c[t];
        }
    }
    let data =
        Dataset::new(Features::new(specs, values).unwrap(), Array1::from(label.to_vec())).unwrap();
    let central = Binner::fit(&data, params).unwrap();
    assert_eq!(report.n_features(), central.features.len());
    for (fb, (party, j)) in central.features.iter().zip(&owner) {
        let table = report.parties.iter().find(|t| t.party == party.0).unwrap();
        let iv = &table.features[*j];
        assert_eq!(format!("{}.{}", party.0, iv.feature), fb.feature);
        assert_eq!(iv.iv.to_bits(), fb.iv.to_bits(), "{}: IV {} vs {}", fb.feature, iv.iv, fb.iv);
        assert_eq!(iv.bins, fb.bins.len(), "{}", fb.feature);
        let k = &kept[party].features[*j];
        assert_eq!(k.rule, fb.rule, "{}: bins", fb.feature);
        // A feature holder's bin of a few rows comes back without evidence (WOE 0); the
        // label holder (the first party here) keeps its own.
        let holder = *party != parties[0].name;
        let want: Vec<f64> = fb
            .bins
            .iter()
            .map(|b| {
                let few = b.count > 0.0
                    && b.count < fedcredit_federation::vertical::woe::label::MIN_WOE_ROWS;
                if holder && few { 0.0 } else { b.woe }
            })
            .collect();
        assert_eq!(k.woe, want, "{}: WOE", fb.feature);
    }
}

/// The coordinator saw only sealed bytes between parties, and of the parties' own messages
/// only the IV report and acknowledgements.
fn assert_coordinator_sees_only_sealed(transcript: &[Entry], feature_names: &[&str]) {
    let mut sealed = 0usize;
    for e in transcript {
        match e {
            Entry::FromParty { msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Sealed(s)) => {
                    sealed += 1;
                    for c in s.ciphertexts.values() {
                        // Not a readable payload.
                        assert!(pb::Payload::decode(c.as_slice()).is_err() || c.len() < 2);
                        for name in feature_names {
                            let needle = name.as_bytes();
                            assert!(
                                !c.windows(needle.len()).any(|w| w == needle),
                                "`{name}` in a sealed payload"
                            );
                        }
                    }
                }
                Some(pb::from_party::Body::Protocol(m)) => {
                    if let Some(pb::role_message::Body::Vertical(v)) = &m.body {
                        match &v.body {
                            Some(pb::vertical_report::Body::Woe(w)) => match &w.body {
                                Some(pb::woe_report::Body::IvJson(j)) => {
                                    assert!(!j.contains("edges") && !j.contains("inf"), "{j}");
                                }
                                Some(pb::woe_report::Body::Received(_)) => {}
                                None => panic!("empty report"),
                            },
                            other => panic!("unexpected report {other:?}"),
                        }
                    }
                }
                None => {}
            },
            Entry::ToParty { msg, .. } => {
                if let Some(pb::to_party::Body::Relayed(r)) = &msg.body {
                    assert!(r.ciphertext.len() >= 16);
                }
            }
            Entry::Refused { party, reason } => panic!("{party:?} refused: {reason}"),
        }
    }
    assert!(sealed > 0, "payloads went through the relay");
}

/// What the feature holders received: ciphertexts that differ for equal labels and that a key
/// other than the label holder's does not open to 0 or 1.
fn assert_holders_cannot_read(spec: &JobSpec, parties: &[LocalParty]) {
    let run = local::run(&job(), spec, parties.to_vec(), 9).unwrap();
    let mut cts = Vec::new();
    for (from, _, p) in &run.payloads {
        if let Some(pb::woe_payload::Body::Rows(r)) = &p.body {
            assert_eq!(from, &PartyId(spec.vertical.as_ref().unwrap().label_holder.0.clone()));
            cts.extend(elgamal::read_ciphertexts(&r.ciphertexts).unwrap());
        }
    }
    assert!(!cts.is_empty());
    let distinct: std::collections::BTreeSet<[u8; 64]> = cts.iter().map(|c| c.to_bytes()).collect();
    // Each holder gets the same ciphertexts; no two rows share one although labels repeat.
    let holders = spec.parties.len() - 1;
    assert_eq!(distinct.len() * holders, cts.len());
    let other = SecretKey::generate(&mut ChaCha20Rng::seed_from_u64(77));
    let table = DlogTable::for_max(1);
    let readable = cts.iter().take(2000).filter(|c| other.decrypt(c, 1, &table).is_ok()).count();
    assert_eq!(readable, 0, "a foreign key opened {readable} ciphertexts to 0/1");
}

#[test]
fn default_credit_hetero_equals_centralized() {
    let (Some(guest), Some(host)) = (
        shared("default_credit/default_credit_hetero_guest.csv"),
        shared("default_credit/default_credit_hetero_host.csv"),
    ) else {
        eprintln!("skipped: ../shared/datasets/default_credit/ is absent");
        return;
    };
    let (gh, grows) = read_csv(&guest);
    let (hh, hrows) = read_csv(&host);
    let table = |header: &[String], rows: &[Vec<String>], label: bool| {
        let skip = if label { 2 } else { 1 };
        let specs: Vec<FeatureSpec> =
            header[skip..].iter().map(|n| FeatureSpec::numeric(format!("{n}_column"))).collect();
        let mut values = Array2::<f64>::zeros((rows.len(), specs.len()));
        for (i, r) in rows.iter().enumerate() {
            for j in 0..specs.len() {
                values[[i, j]] = r[skip + j].parse().unwrap();
            }
        }
        PartyTable {
            ids: rows.iter().map(|r| r[0].clone()).collect(),
            features: Features::new(specs, values).unwrap(),
            label: label.then(|| rows.iter().map(|r| r[1].parse().unwrap()).collect()),
        }
    };
    let g = table(&gh, &grows, true);
    // The host's rows in another order than the guest's.
    let mut hrows = hrows;
    hrows.reverse();
    let h = table(&hh, &hrows, false);
    // Agreed order: by id; every id is common.
    let mut ids: Vec<&String> = g.ids.iter().collect();
    ids.sort();
    fn pos(t: &PartyTable) -> BTreeMap<&String, u32> {
        t.ids.iter().enumerate().map(|(i, id)| (id, i as u32)).collect()
    }
    let (gp, hp) = (pos(&g), pos(&h));
    let align = |p: &BTreeMap<&String, u32>| Alignment {
        rows: ids.iter().map(|id| p[*id]).collect(),
        keys: (0..ids.len()).map(|t| (t as u128).to_le_bytes()).collect(),
    };
    let (ga, ha) = (align(&gp), align(&hp));
    let label: Vec<f64> = ga.rows.iter().map(|&r| g.label.as_ref().unwrap()[r as usize]).collect();
    let parties = vec![
        LocalParty { name: PartyId("guest".into()), table: g, alignment: ga },
        LocalParty { name: PartyId("host".into()), table: h, alignment: ha },
    ];
    for (model, method) in [
        ("kind = \"woe\"\nmin_iv = 0.02", BinningMethod::EqualFrequency),
        ("kind = \"woe\"\nmethod = \"monotone\"\nbins = 8", BinningMethod::Monotone),
    ] {
        let spec = spec(&["guest", "host"], "guest", model);
        let (report, kept, transcript) = federated(&spec, &parties);
        let max_bins = if method == BinningMethod::Monotone { 8 } else { 10 };
        let params = BinningParams { method, max_bins, min_bin_fraction: 0.05 };
        assert_equals_centralized(&report, &kept, &parties, &label, &params);
        assert_coordinator_sees_only_sealed(&transcript, &["x0_column", "x9_column"]);
        assert_eq!(report.rows, 30_000);
        assert!(report.n_selected() > 0);
    }
    assert_holders_cannot_read(&spec(&["guest", "host"], "guest", "kind = \"woe\""), &parties);
}
