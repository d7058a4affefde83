//! Vertical logistic regression and scorecard through the real runtime in memory: party
//! sessions with real certificates and sealed party-to-party payloads, the vertical conductor
//! (dealer included) and roles, started after an alignment built here (the PSI stage is
//! tested on its own). Checks accuracy against the centralized model on the joined table,
//! that each party keeps only its own part and the coordinator only a reference, what the
//! coordinator sees, and what a party refuses when the coordinator deviates.

use std::collections::BTreeMap;

mod vertical_common;

use fedcredit_federation::PartyId;
use fedcredit_federation::job::JobSpec;
use fedcredit_federation::protocol::in_memory::{Entry, honest};
use fedcredit_federation::vertical::model::{PartyModel, VerticalModelRef};
use fedcredit_models::logistic::{LogisticParams, LogisticPipeline};
use fedcredit_models::metrics::auc;
use fedcredit_models::preprocess::EncoderOptions;
use fedcredit_models::scorecard::{Scorecard, ScorecardParams};
use fedcredit_proto::pb;
use vertical_common::*;

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
        assert_eq!(p.columns as usize, run.parts[&pid(&p.party)].lr().unwrap().coefficients.len());
    }
    // Every party kept its own part; only the bank's has the intercept.
    assert_eq!(run.parts.len(), 3);
    assert!(run.parts[&pid("bank")].lr().unwrap().intercept.is_some());
    assert!(run.parts[&pid("tax")].lr().unwrap().intercept.is_none());
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
            other => panic!("{p} kept {other:?}"),
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
    let columns = run.parts[&pid("tax")].lr().unwrap().coefficients.len();
    let matrix = 8000 * columns * 16;
    eprintln!(
        "{columns} columns: a {matrix}-byte masked matrix, largest sealed message {largest} bytes"
    );
    assert!(matrix > 4 << 20, "the matrix ({matrix} bytes) must not fit one piece");
    assert!(largest < (4 << 20) + 4096, "{largest}");
    assert!(sealed > 2);
    assert!(run.outcome.metrics["valid_auc"] > 0.6);
}

#[test]
fn a_party_restarted_mid_training_ends_with_a_model_as_good_as_an_uninterrupted_one() {
    // A feature holder (and, in a second run, the label holder) killed in the middle of the
    // regression and restarted from its checkpoint: the stage runs again under a new step
    // and every party must start it afresh together, never mixing shares of two runs.
    let spec = spec(3, "kind = \"logistic\"");
    let eco = ecosystem(3000, 3, 5, spec.data.validation_fraction);
    let want = federated(&spec, &eco, &mut honest).unwrap();
    let y = eco.valid_labels();
    let want_auc = auc(&eco.joint(&want.parts, &eco.valid), &y).unwrap();
    for victim in [1usize, 0] {
        for cut in [40usize, 120, 400] {
            let fixture = Fixture::new(&eco);
            let mut fed = fixture.federation(&spec, &eco);
            fed.max_deliveries = cut;
            fed.start(&mut honest).unwrap();
            if fed.run(&mut honest).is_ok() {
                continue;
            }
            let at = fed.conductor().progress();
            let who = eco.parties[victim].0.clone();
            fed.crash(&who);
            let ckpt = fed.checkpoints.get(&who).cloned();
            let restarted = fixture.session(&spec, &eco, victim, ckpt.as_deref(), 77);
            fed.rejoin(who.clone(), restarted, &mut honest);
            fed.max_deliveries = 10_000_000;
            let got = fed.run(&mut honest).unwrap();
            let parts = fixture.kept_parts(&spec, &eco, &fed);
            let got_auc = auc(&eco.joint(&parts, &eco.valid), &y).unwrap();
            let reported = got.metrics["valid_auc"];
            eprintln!(
                "{who} killed after {cut} deliveries ({}, {}/{}): AUC {got_auc:.4} (reported {reported:.4}), uninterrupted {want_auc:.4}",
                at.stage, at.done, at.total
            );
            assert!(
                (got_auc - want_auc).abs() < 0.01,
                "{who} killed after {cut} deliveries: AUC {got_auc} vs {want_auc}"
            );
            assert!((got_auc - reported).abs() < 1e-3, "{got_auc} vs reported {reported}");
        }
    }
}
