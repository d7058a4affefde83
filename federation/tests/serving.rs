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
        epochs: 10,
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

/// Trees: the label holder combines only leaf sets their owner signed for the enterprises
/// asked, so a deviating coordinator cannot feed it made-up leaf sets and read the model's
/// leaf values back.
#[test]
fn the_label_holder_combines_only_leaf_sets_their_owner_signed() {
    use fedcredit_federation::vertical::model::GbdtPart;
    use fedcredit_federation::vertical::secureboost::local;
    use fedcredit_federation::vertical::woe::local::LocalParty;
    use fedcredit_federation::vertical::{Alignment, PartyTable};
    use fedcredit_models::testdata::{ApplicationsConfig, applications};

    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["bank", "tax"].map(String::from).to_vec();
    let certs = init_certs(dir.path(), &names, &[]).unwrap();
    let id = |n: &str| -> Identity { party_identity(&certs.parties[n]).unwrap() };
    // A small model trained by the stage in memory.
    let t = applications(&ApplicationsConfig { rows: 800, numeric: 6, text: 0, seed: 3 }).unwrap();
    let n = t.data.n_rows();
    let cols = [vec![0, 2, 4], vec![1, 3, 5]];
    let ids: Vec<String> = (0..n).map(|i| format!("E{i}")).collect();
    let alignment = Alignment {
        rows: (0..n as u32).collect(),
        keys: (0..n)
            .map(|t| {
                (t as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835).to_le_bytes()
            })
            .collect(),
    };
    let parties: Vec<LocalParty> = names
        .iter()
        .enumerate()
        .map(|(k, p)| LocalParty {
            name: PartyId(p.clone()),
            table: PartyTable {
                ids: ids.clone(),
                features: t.data.features.select_columns(&cols[k]),
                label: (k == 0).then(|| t.data.label.to_vec()),
            },
            alignment: alignment.clone(),
        })
        .collect();
    let spec = fedcredit_federation::job::JobSpec::from_toml(
        "parties = [\"bank\", \"tax\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\n\
         kind = \"gbdt\"\nn_trees = 4\nmax_depth = 3\nmax_bins = 16\n[vertical]\n\
         label_holder = \"bank\"\n",
    )
    .unwrap();
    let run = local::run(&spec, parties.clone(), Default::default(), 1, false).unwrap();
    let served = |k: usize| -> ServedPart {
        let p = &parties[k];
        let part: GbdtPart = run.parts[&p.name].clone();
        let manifest = ServingManifest {
            job: "job-1".into(),
            id_column: "id".into(),
            label_holder: k == 0,
            schema: p.table.features.specs.clone(),
            label_holder_party: "bank".into(),
        };
        let model = PartyModel::Gbdt { part: Box::new(part) };
        ServedPart::new(manifest, model, "t".into(), ids.clone(), &p.table.features).unwrap()
    };
    let (bank, tax) = (served(0), served(1));
    let asked: Vec<&str> = vec!["E1", "E2", "E3"];
    let vouched = bank.answer(
        &pb::ScoreQuery {
            query_id: 1,
            model_job: "job-1".into(),
            ids: asked.iter().map(|s| (*s).to_string()).collect(),
            ..Default::default()
        },
        &id("bank"),
    );
    let sets = tax.answer(&query(&asked, &vouched), &id("tax"));
    assert!(sets.error.is_empty(), "{}", sets.error);
    assert_eq!(sets.leaf_sets.len(), 3);
    assert!(!sets.authorization.is_empty());
    let combine = |peer: pb::PartyLeafSets| {
        let q = pb::ScoreQuery { peer_leaf_sets: vec![peer], ..query(&asked, &vouched) };
        bank.answer(&q, &id("bank"))
    };
    let honest = pb::PartyLeafSets {
        party: "tax".into(),
        sets: sets.leaf_sets.clone(),
        authorization: sets.authorization.clone(),
        certificate: sets.certificate.clone(),
    };
    let ok = combine(honest.clone());
    assert!(ok.error.is_empty(), "{}", ok.error);
    // The log-odds are the trees' on those rows, and every party has its share.
    let rows = [1usize, 2, 3];
    let features =
        parties.iter().map(|p| (p.name.clone(), p.table.features.select_rows(&rows))).collect();
    let want = local::joint_scores(&run.parts, &features).unwrap();
    for (got, want) in ok.partial_log_odds.iter().zip(&want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    assert_eq!(ok.shares.len(), 3);
    // A deviating coordinator: a made-up leaf set, no signature, the bank's own signature.
    let mut forged = honest.clone();
    forged.sets[0][0] ^= 1;
    assert!(combine(forged).error.contains("not signed"), "a forged leaf set was combined");
    let unsigned = pb::PartyLeafSets { authorization: Vec::new(), ..honest.clone() };
    assert!(combine(unsigned).error.contains("not signed"));
    let foreign = pb::PartyLeafSets {
        authorization: vouched.authorization.clone(),
        certificate: vouched.certificate.clone(),
        ..honest
    };
    assert!(combine(foreign).error.contains("not signed"));
}
