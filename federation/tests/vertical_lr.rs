//! Vertical logistic regression and scorecard through the real runtime in memory: party
//! sessions with real certificates and sealed party-to-party payloads, the vertical conductor
//! (dealer included) and roles, started after an alignment built here (the PSI stage is
//! tested on its own). Checks accuracy against the centralized model on the joined table,
//! that each party keeps only its own part and the coordinator only a reference, what the
//! coordinator sees, and what a party refuses when the coordinator deviates.

use std::collections::BTreeMap;

use fedcredit_crypto::channel::ChannelSecret;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, Federation, honest};
use fedcredit_federation::protocol::{Identity, Outcome, PartySession, split_checkpoint};
use fedcredit_federation::vertical::conductor::VerticalConductor;
use fedcredit_federation::vertical::model::{PartyModel, VerticalModelRef};
use fedcredit_federation::vertical::role::VerticalRole;
use fedcredit_federation::vertical::{Alignment, PartyTable};
use fedcredit_federation::{JobId, PartyId};
use fedcredit_models::Dataset;
use fedcredit_models::logistic::{LogisticParams, LogisticPipeline};
use fedcredit_models::metrics::auc;
use fedcredit_models::preprocess::EncoderOptions;
use fedcredit_models::scorecard::{Scorecard, ScorecardParams};
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_proto::pb;
use fedcredit_transport::identity::party_identity;
use fedcredit_transport::tls::init_certs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const NAMES: [&str; 3] = ["bank", "tax", "platform"];

fn job() -> JobId {
    JobId("vlr-job".into())
}

fn pid(s: &str) -> PartyId {
    PartyId(s.into())
}

fn spec(n_parties: usize, model: &str) -> JobSpec {
    let names: Vec<String> = NAMES[..n_parties].iter().map(|p| format!("\"{p}\"")).collect();
    JobSpec::from_toml(&format!(
        "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n{model}\n[vertical]\n\
         label_holder = \"bank\"\n[vertical.lr]\nepochs = 12\nbatch_size = 256\n",
        names.join(", ")
    ))
    .unwrap()
}

/// A joined table split by columns over `n` parties, each party's rows in its own order.
struct Ecosystem {
    all: Dataset,
    parties: Vec<(PartyId, PartyTable, Alignment)>,
    /// Columns of `all` each party holds.
    columns: Vec<Vec<usize>>,
    /// Validation rows (agreed order = rows of `all`), as the roles pick them from the keys.
    valid: Vec<usize>,
    train: Vec<usize>,
}

fn ecosystem(rows: usize, n: usize, seed: u64, validation_fraction: f64) -> Ecosystem {
    wide_ecosystem(rows, n, seed, validation_fraction, 9)
}

fn wide_ecosystem(
    rows: usize,
    n: usize,
    seed: u64,
    validation_fraction: f64,
    numeric: usize,
) -> Ecosystem {
    let t = applications(&ApplicationsConfig { rows, numeric, text: 2, seed }).unwrap();
    let d = t.data.features.n_features();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<[u8; 16]> = (0..rows)
        .map(|_| {
            let mut k = [0u8; 16];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let agreed = Alignment { rows: (0..rows as u32).collect(), keys: keys.clone() };
    let (valid, train): (Vec<usize>, Vec<usize>) =
        (0..rows).partition(|&i| agreed.is_validation(i, validation_fraction));
    let mut parties = Vec::new();
    let mut columns = Vec::new();
    for (k, name) in NAMES[..n].iter().enumerate() {
        let cols: Vec<usize> = (0..d).filter(|j| j % n == k).collect();
        // Party k holds the rows rotated by k·7 (its own order).
        let order: Vec<usize> = (0..rows).map(|i| (i + k * 7) % rows).collect();
        let mut at = vec![0u32; rows];
        for (own, &agreed) in order.iter().enumerate() {
            at[agreed] = own as u32;
        }
        let table = PartyTable {
            ids: order.iter().map(|i| format!("E{i:06}")).collect(),
            features: t.data.features.select_rows(&order).select_columns(&cols),
            label: (k == 0).then(|| order.iter().map(|&i| t.data.label[i]).collect()),
        };
        parties.push((pid(name), table, Alignment { rows: at, keys: keys.clone() }));
        columns.push(cols);
    }
    Ecosystem { all: t.data, parties, columns, valid, train }
}

struct Run {
    outcome: Outcome,
    parts: BTreeMap<PartyId, PartyModel>,
    transcript: Vec<Entry>,
}

fn federated(
    spec: &JobSpec,
    eco: &Ecosystem,
    hook: &mut fedcredit_federation::protocol::in_memory::Intercept<'_>,
) -> Result<Run, String> {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = eco.parties.iter().map(|p| p.0.0.clone()).collect();
    let certs = init_certs(dir.path(), &names, &[]).unwrap();
    let schemas = eco.parties.iter().map(|p| (p.0.clone(), p.1.features.specs.clone())).collect();
    let rows = eco.all.n_rows() as u64;
    let conductor =
        VerticalConductor::after_alignment(&job(), spec, &schemas, rows).unwrap().with_seed(5);
    let sessions: Vec<(PartyId, PartySession)> = eco
        .parties
        .iter()
        .enumerate()
        .map(|(i, (name, table, alignment))| {
            let mut rng = ChaCha20Rng::seed_from_u64(100 + i as u64);
            let role =
                VerticalRole::with_alignment(&job(), spec, name, table.clone(), alignment.clone())
                    .unwrap();
            let identity: Identity = party_identity(&certs.parties[&name.0]).unwrap();
            let secret = ChannelSecret::generate(&mut rng);
            let s =
                PartySession::new(job(), spec, name.clone(), Box::new(role), secret, identity, rng);
            (name.clone(), s)
        })
        .collect();
    let mut fed = Federation::new(job(), Box::new(conductor), sessions);
    fed.start(hook)?;
    let outcome = fed.run(hook)?;
    // What each party kept, read back through a role restored from its last checkpoint.
    let mut parts = BTreeMap::new();
    for (name, table, _) in &eco.parties {
        let (_, role_bytes) = split_checkpoint(&fed.checkpoints[name]).unwrap();
        let role =
            VerticalRole::new(&job(), spec, name, table.clone(), Some(&role_bytes), None).unwrap();
        if let Some(m) = PartyModel::from_kept(role.kept()).unwrap() {
            parts.insert(name.clone(), m);
        }
    }
    Ok(Run { outcome, parts, transcript: std::mem::take(&mut fed.transcript) })
}

impl Ecosystem {
    /// Each party's columns over agreed rows `rows`.
    fn party_features(&self, k: usize, rows: &[usize]) -> fedcredit_models::Features {
        let (_, table, a) = &self.parties[k];
        let own: Vec<usize> = rows.iter().map(|&t| a.rows[t] as usize).collect();
        table.features.select_rows(&own)
    }

    /// Joint log-odds of agreed rows `rows` from the kept parts.
    fn joint(&self, parts: &BTreeMap<PartyId, PartyModel>, rows: &[usize]) -> Vec<f64> {
        let mut z = vec![0.0; rows.len()];
        for (k, (name, _, _)) in self.parties.iter().enumerate() {
            let s = parts[name].partial_log_odds(&self.party_features(k, rows)).unwrap();
            for (a, b) in z.iter_mut().zip(s) {
                *a += b;
            }
        }
        z
    }

    fn valid_labels(&self) -> Vec<f64> {
        self.valid.iter().map(|&i| self.all.label[i]).collect()
    }
}

/// What the coordinator received from parties: sealed payloads it relays, and of the
/// parties' own messages only lr reports (dealer requests, the label holder's epoch figures,
/// done), which carry no value derived from rows except the label holder's validation figures.
fn assert_coordinator_view(transcript: &[Entry]) {
    let mut sealed = 0usize;
    let mut epochs = 0usize;
    for e in transcript {
        match e {
            Entry::FromParty { from, msg, .. } => match &msg.body {
                Some(pb::from_party::Body::Sealed(_)) => sealed += 1,
                Some(pb::from_party::Body::Protocol(m)) => {
                    let Some(pb::role_message::Body::Vertical(v)) = &m.body else { continue };
                    match &v.body {
                        Some(pb::vertical_report::Body::Lr(r)) => match &r.body {
                            Some(pb::lr_report::Body::Dealer(bytes)) => {
                                // A shape or a step request: a few bytes, no vector.
                                assert!(bytes.len() < 64, "{} bytes to the dealer", bytes.len());
                            }
                            Some(pb::lr_report::Body::Epoch(_)) => {
                                assert_eq!(from, &pid("bank"));
                                epochs += 1;
                            }
                            Some(pb::lr_report::Body::Done(_)) => {}
                            None => panic!("empty lr report"),
                        },
                        Some(pb::vertical_report::Body::Woe(_)) => {}
                        other => panic!("unexpected report {other:?}"),
                    }
                }
                _ => {}
            },
            Entry::Refused { party, reason } => panic!("{party:?} refused: {reason}"),
            Entry::ToParty { .. } => {}
        }
    }
    assert!(sealed > 0 && epochs == 12, "{sealed} sealed, {epochs} epoch reports");
}

#[test]
fn three_party_logistic_matches_the_centralized_model() {
    let spec = spec(3, "kind = \"logistic\"");
    let eco = ecosystem(6000, 3, 11, spec.data.validation_fraction);
    let run = federated(&spec, &eco, &mut honest).unwrap();
    // The coordinator registers a reference, never a coefficient.
    let reference =
        VerticalModelRef::from_json(run.outcome.artifact_json.as_deref().unwrap()).unwrap();
    assert_eq!(reference.kind, "logistic");
    assert_eq!(reference.parties.len(), 3);
    assert!(!run.outcome.artifact_json.as_deref().unwrap().contains("coefficients"));
    for (k, p) in reference.parties.iter().enumerate() {
        assert_eq!(p.features.len(), eco.columns[k].len());
        assert_eq!(p.columns as usize, run.parts[&pid(&p.party)].lr().coefficients.len());
    }
    // Every party kept its own part; only the bank's has the intercept.
    assert_eq!(run.parts.len(), 3);
    assert!(run.parts[&pid("bank")].lr().intercept.is_some());
    assert!(run.parts[&pid("tax")].lr().intercept.is_none());
    // The figure the label holder reported is the AUC of the kept parts on the validation
    // rows, and it matches the centralized model fitted on the joined training rows.
    let y = eco.valid_labels();
    let fed = auc(&eco.joint(&run.parts, &eco.valid), &y).unwrap();
    let reported = run.outcome.metrics["valid_auc"];
    let central =
        LogisticPipeline::fit(&eco.all.select_rows(&eco.train), &EncoderOptions::default(), &{
            LogisticParams::default()
        })
        .unwrap();
    let p = central.predict_proba(&eco.all.features.select_rows(&eco.valid)).unwrap();
    let central = auc(p.as_slice().unwrap(), &y).unwrap();
    eprintln!(
        "3 parties: federated AUC {fed:.4} (reported {reported:.4}), centralized {central:.4}"
    );
    assert!((fed - reported).abs() < 1e-3, "{fed} vs reported {reported}");
    assert!((fed - central).abs() <= 0.01, "federated {fed} vs centralized {central}");
    assert_coordinator_view(&run.transcript);
}

#[test]
fn scorecard_points_add_up_across_parties_and_match_the_centralized_scorecard() {
    let spec = spec(2, "kind = \"scorecard\"");
    let eco = ecosystem(6000, 2, 12, spec.data.validation_fraction);
    let run = federated(&spec, &eco, &mut honest).unwrap();
    let reference =
        VerticalModelRef::from_json(run.outcome.artifact_json.as_deref().unwrap()).unwrap();
    assert_eq!(reference.kind, "scorecard");
    let scaling = reference.scaling.unwrap();
    assert_eq!((scaling.base_score, scaling.base_odds, scaling.pdo), (600.0, 50.0, 20.0));
    let cards: BTreeMap<&PartyId, _> = run
        .parts
        .iter()
        .map(|(p, m)| match m {
            PartyModel::Scorecard { card } => (p, card),
            PartyModel::Logistic { .. } => panic!("{p} kept a logistic part"),
        })
        .collect();
    assert!(cards[&pid("bank")].base_points.is_some());
    assert!(cards[&pid("tax")].base_points.is_none());
    // Score = Σ parties' points = offset − factor · joint log-odds, row by row.
    let rows: Vec<usize> = (0..eco.all.n_rows()).collect();
    let z = eco.joint(&run.parts, &rows);
    let mut score = vec![0.0; rows.len()];
    for (k, (name, _, _)) in eco.parties.iter().enumerate() {
        let pts = cards[name].points(&eco.party_features(k, &rows)).unwrap();
        for (s, p) in score.iter_mut().zip(pts) {
            *s += p;
        }
    }
    for (s, z) in score.iter().zip(&z) {
        let want = scaling.offset() - scaling.factor() * z;
        assert!((s - want).abs() < 1e-6, "{s} vs {want}");
    }
    // Reason codes at each party name its own features only.
    let bank_names: Vec<String> =
        eco.parties[0].1.features.specs.iter().map(|s| s.name.clone()).collect();
    let worst = (0..rows.len()).min_by(|a, b| score[*a].total_cmp(&score[*b])).unwrap();
    let codes = cards[&pid("bank")].reason_codes(&eco.party_features(0, &[worst]), 0, 3).unwrap();
    assert!(!codes.is_empty() && codes.iter().all(|c| bank_names.contains(&c.feature)));
    // Accuracy against the centralized scorecard on the joined training rows.
    let y = eco.valid_labels();
    let fed = auc(&eco.joint(&run.parts, &eco.valid), &y).unwrap();
    let central = Scorecard::fit(&eco.all.select_rows(&eco.train), &ScorecardParams::default())
        .unwrap()
        .predict_proba(&eco.all.features.select_rows(&eco.valid))
        .unwrap();
    let central = auc(central.as_slice().unwrap(), &y).unwrap();
    eprintln!("scorecard, 2 parties: federated AUC {fed:.4}, centralized {central:.4}");
    assert!((fed - central).abs() <= 0.01, "federated {fed} vs centralized {central}");
    assert_coordinator_view(&run.transcript);
}

/// A coordinator that asks a party for more epochs than the job it accepted (more steps, so
/// more openings) fails the job: the party refuses and names why.
#[test]
fn a_party_refuses_an_lr_stage_that_differs_from_its_job() {
    let spec = spec(2, "kind = \"logistic\"");
    let eco = ecosystem(600, 2, 13, spec.data.validation_fraction);
    let mut hook = |to: &PartyId, msg: &mut pb::ToParty| {
        if let Some(pb::to_party::Body::Protocol(pb::ConductorMessage {
            body:
                Some(pb::conductor_message::Body::Vertical(pb::VerticalStep {
                    body:
                        Some(pb::vertical_step::Body::Lr(pb::LrStep {
                            body: Some(pb::lr_step::Body::Start(s)),
                        })),
                    ..
                })),
        })) = &mut msg.body
        {
            s.epochs = 40;
        }
        vec![(to.clone(), msg.clone())]
    };
    let err = federated(&spec, &eco, &mut hook).map(|_| ()).unwrap_err();
    assert!(err.contains("asked for 40 epochs where the job says 12"), "{err}");
}

/// A masked matrix larger than one payload (here 8,000 rows × 74 encoded columns of 16-byte
/// ring elements, 9.5 MB) streams to the partner in 4 MiB pieces; no sealed message from a
/// party is larger than a piece, and the job trains as usual.
#[test]
fn a_masked_matrix_larger_than_one_payload_streams_in_pieces() {
    let spec = JobSpec::from_toml(
        "parties = [\"bank\", \"tax\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n\
         kind = \"logistic\"\n[vertical]\nlabel_holder = \"bank\"\n[vertical.lr]\nepochs = 2\n",
    )
    .unwrap();
    let eco = wide_ecosystem(8000, 2, 14, spec.data.validation_fraction, 80);
    let run = federated(&spec, &eco, &mut honest).unwrap();
    let mut largest = 0usize;
    let mut sealed = 0usize;
    for e in &run.transcript {
        if let Entry::FromParty { msg, .. } = e
            && let Some(pb::from_party::Body::Sealed(_)) = &msg.body
        {
            sealed += 1;
            largest = largest.max(e.bytes());
        }
    }
    let columns = run.parts[&pid("tax")].lr().coefficients.len();
    let matrix = 8000 * columns * 16;
    eprintln!(
        "{columns} columns: a {matrix}-byte masked matrix, largest sealed message {largest} bytes"
    );
    assert!(matrix > 4 << 20, "the matrix ({matrix} bytes) must not fit one piece");
    assert!(largest < (4 << 20) + 4096, "{largest}");
    assert!(sealed > 2);
    assert!(run.outcome.metrics["valid_auc"] > 0.6);
}
