//! Serving against a deviating coordinator: a feature holder answers a score query only for
//! enterprises the label holder vouched for (its signature over the model's job and the ids,
//! checked against the federation CA and the label holder's name), so a coordinator cannot
//! learn a feature holder's part of the log-odds of enterprises outside the bank's portfolio.
//! Real certificates (`fedcredit_transport::tls::init_certs`).

use fedcredit_federation::PartyId;
use fedcredit_federation::protocol::Identity;
use fedcredit_federation::serving::{ServedPart, ServingManifest};
use fedcredit_federation::vertical::lr::protocol::{LocalEncoding, LrPart};
use fedcredit_federation::vertical::model::PartyModel;
use fedcredit_models::{FeatureSpec, Features};
use fedcredit_proto::pb;
use fedcredit_transport::identity::party_identity;
use fedcredit_transport::tls::init_certs;
use ndarray::Array2;

fn part(party: &str, job: &str, label_holder: bool, ids: &[&str]) -> ServedPart {
    let specs = vec![
        FeatureSpec::numeric(format!("{party}_x0")),
        FeatureSpec::numeric(format!("{party}_x1")),
    ];
    let values = Array2::from_shape_fn((ids.len(), 2), |(i, j)| (i * 3 + j) as f64);
    let features = Features::new(specs.clone(), values).unwrap();
    let encoding = LocalEncoding::fit(&features, 4.0).unwrap();
    let lr = LrPart {
        party: PartyId(party.into()),
        encoding,
        coefficients: vec![0.5, -0.25],
        intercept: label_holder.then_some(-2.0),
    };
    let manifest = ServingManifest {
        job: job.into(),
        id_column: "id".into(),
        label_holder,
        schema: specs,
        label_holder_party: "bank".into(),
    };
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_string()).collect();
    ServedPart::new(manifest, PartyModel::Logistic { part: lr }, "t".into(), ids, &features)
        .unwrap()
}

fn query(ids: &[&str], auth: &pb::ScoreReply) -> pb::ScoreQuery {
    pb::ScoreQuery {
        query_id: 2,
        model_job: "job-1".into(),
        ids: ids.iter().map(|s| (*s).to_string()).collect(),
        authorization: auth.authorization.clone(),
        authorizer_certificate: auth.certificate.clone(),
        ..Default::default()
    }
}

#[test]
fn a_feature_holder_answers_only_for_enterprises_the_label_holder_vouched_for() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["bank", "tax", "platform"].map(String::from).to_vec();
    let certs = init_certs(dir.path(), &names, &[]).unwrap();
    let id = |n: &str| -> Identity { party_identity(&certs.parties[n]).unwrap() };
    let bank = part("bank", "job-1", true, &["a", "b"]);
    let tax = part("tax", "job-1", false, &["a", "b", "c"]);

    // The honest path: the bank answers for `a` and an unknown `x`, signing what it knows.
    let asked = pb::ScoreQuery {
        query_id: 1,
        model_job: "job-1".into(),
        ids: vec!["a".into(), "x".into()],
        ..Default::default()
    };
    let vouched = bank.answer(&asked, &id("bank"));
    assert!(vouched.error.is_empty(), "{}", vouched.error);
    assert_eq!(vouched.known, [true, false]);
    assert!(!vouched.authorization.is_empty() && !vouched.certificate.is_empty());
    let ok = tax.answer(&query(&["a"], &vouched), &id("tax"));
    assert!(ok.error.is_empty(), "{}", ok.error);
    assert_eq!(ok.partial_log_odds.len(), 1);

    // A deviating coordinator: no authorization, more ids than were vouched for, the unknown
    // id, another party's signature, a signature for another job.
    let refused = |q: pb::ScoreQuery| {
        let r = tax.answer(&q, &id("tax"));
        assert!(r.error.contains("did not vouch"), "{r:?}");
        assert!(r.partial_log_odds.is_empty());
    };
    refused(query(&["c"], &pb::ScoreReply::default()));
    refused(query(&["a", "c"], &vouched));
    refused(query(&["x"], &vouched));
    let by_platform = part("platform", "job-1", true, &["c"]).answer(
        &pb::ScoreQuery {
            query_id: 3,
            model_job: "job-1".into(),
            ids: vec!["c".into()],
            ..Default::default()
        },
        &id("platform"),
    );
    refused(query(&["c"], &by_platform));
    let other_job = part("bank", "job-2", true, &["c"]).answer(
        &pb::ScoreQuery {
            query_id: 4,
            model_job: "job-2".into(),
            ids: vec!["c".into()],
            ..Default::default()
        },
        &id("bank"),
    );
    refused(query(&["c"], &other_job));

    // Without certificates (an insecure federation) nothing is signed or checked.
    let plain = tax.answer(&query(&["c"], &pb::ScoreReply::default()), &Identity::default());
    assert!(plain.error.is_empty());
}
