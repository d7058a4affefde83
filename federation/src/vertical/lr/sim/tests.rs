use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use fedcredit_models::logistic::{LogisticParams, LogisticPipeline};
use fedcredit_models::metrics::auc;
use fedcredit_models::preprocess::EncoderOptions;
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::super::protocol::{LrMsg, LrParams, Node, PartyData, Roster};
use super::{SimInput, SimOutcome, joint_scores, run};
use crate::ids::{JobId, PartyId};

fn pid(s: &str) -> PartyId {
    PartyId(s.into())
}

fn data<'a>(features: &'a Features, labels: Option<&'a [f64]>) -> PartyData<'a> {
    PartyData { features, labels, valid: None, valid_labels: None, encoding: None, initial: None }
}

/// A vertical split: each party's columns (by index into `all`), train and test rows.
struct Split {
    parties: Vec<(PartyId, Vec<usize>)>,
    all: Dataset,
    train: Vec<usize>,
    test: Vec<usize>,
}

impl Split {
    fn features(&self, p: usize, rows: &[usize]) -> Features {
        self.all.features.select_rows(rows).select_columns(&self.parties[p].1)
    }

    fn labels(&self, rows: &[usize]) -> Vec<f64> {
        rows.iter().map(|&i| self.all.label[i]).collect()
    }

    fn inputs(&self) -> BTreeMap<PartyId, SimInput> {
        self.parties
            .iter()
            .enumerate()
            .map(|(k, (p, _))| {
                let labels = (k == 0).then(|| self.labels(&self.train));
                let input = SimInput {
                    features: self.features(k, &self.train),
                    labels,
                    valid: None,
                    valid_labels: None,
                    encoding: None,
                    initial: None,
                };
                (p.clone(), input)
            })
            .collect()
    }

    /// Inputs with the test rows as validation rows.
    fn inputs_with_validation(&self) -> BTreeMap<PartyId, SimInput> {
        let mut inputs = self.inputs();
        for (k, (p, _)) in self.parties.iter().enumerate() {
            if let Some(i) = inputs.get_mut(p) {
                i.valid = Some(self.features(k, &self.test));
                i.valid_labels = (k == 0).then(|| self.labels(&self.test));
            }
        }
        inputs
    }

    fn roster(&self) -> Roster {
        Roster::new(
            self.parties[0].0.clone(),
            self.parties[1..].iter().map(|(p, _)| p.clone()).collect(),
        )
        .unwrap()
    }

    /// Test AUC of the federated model (joint scores) and of the centralized `logistic` fitted
    /// on the joined training rows.
    fn compare(&self, out: &SimOutcome) -> (f64, f64) {
        let test_cols: BTreeMap<PartyId, Features> = self
            .parties
            .iter()
            .enumerate()
            .map(|(k, (p, _))| (p.clone(), self.features(k, &self.test)))
            .collect();
        let fed = joint_scores(&out.parts, &test_cols).unwrap();
        let y_test = self.labels(&self.test);
        let fed_auc = auc(&fed, &y_test).unwrap();
        let train = self.all.select_rows(&self.train);
        let central =
            LogisticPipeline::fit(&train, &EncoderOptions::default(), &LogisticParams::default())
                .unwrap();
        let p = central.predict_proba(&self.all.features.select_rows(&self.test)).unwrap();
        (fed_auc, auc(p.as_slice().unwrap(), &y_test).unwrap())
    }
}

/// A seeded permutation of `0..n` split 80 / 20 (the agreed PSI order is pseudorandom too).
fn shuffle_split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    use rand::RngExt;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    let cut = n * 4 / 5;
    (idx[..cut].to_vec(), idx[cut..].to_vec())
}

fn small_split(rows: usize, seed: u64, n_parties: usize) -> Split {
    let t = applications(&ApplicationsConfig { rows, numeric: 9, text: 2, seed }).unwrap();
    let d = t.data.features.n_features();
    let names = ["bank", "tax", "platform"];
    let parties = (0..n_parties)
        .map(|k| (pid(names[k]), (0..d).filter(|j| j % n_parties == k).collect()))
        .collect();
    let (train, test) = shuffle_split(rows, seed);
    Split { parties, all: t.data, train, test }
}

#[test]
fn two_parties_match_the_centralized_model_on_generated_applications() {
    let split = small_split(6000, 3, 2);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let params = LrParams { epochs: 12, batch_size: 256, ..LrParams::default() };
    let out = run(&JobId("j".into()), &split.roster(), &params, &split.inputs(), &mut rng, false)
        .unwrap();
    let (fed, central) = split.compare(&out);
    eprintln!("generated, 2 parties: federated AUC {fed:.4}, centralized {central:.4}");
    assert!((fed - central).abs() <= 0.005, "federated {fed} vs centralized {central}");
    // Each part has one coefficient per encoded column of its own; only the bank's has the
    // intercept.
    assert!(out.parts[&pid("bank")].intercept.is_some());
    assert!(out.parts[&pid("tax")].intercept.is_none());
}

/// A warm start from trained parts (their encodings and coefficients, at the step size their
/// epochs reached) begins where they ended: one more epoch keeps the accuracy, where one
/// epoch from zero does not reach it.
#[test]
fn a_warm_start_continues_from_the_parts() {
    let split = small_split(6000, 3, 2);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let params = LrParams { epochs: 12, batch_size: 256, ..LrParams::default() };
    let job = JobId("j".into());
    let out = run(&job, &split.roster(), &params, &split.inputs(), &mut rng, false).unwrap();
    let (trained, _) = split.compare(&out);
    let mut inputs = split.inputs();
    for (p, input) in inputs.iter_mut() {
        let part = &out.parts[p];
        input.encoding = Some(part.encoding.clone());
        let coefficients = part.coefficients.iter().copied().chain(part.intercept).collect();
        input.initial = Some((coefficients, part.epochs));
    }
    let one = LrParams { epochs: 1, ..params };
    let warm = run(&job, &split.roster(), &one, &inputs, &mut rng, false).unwrap();
    let (warm_auc, _) = split.compare(&warm);
    let cold = run(&job, &split.roster(), &one, &split.inputs(), &mut rng, false).unwrap();
    let (cold_auc, _) = split.compare(&cold);
    eprintln!(
        "trained {trained:.4}, warm + 1 epoch {warm_auc:.4}, 1 epoch from zero {cold_auc:.4}"
    );
    assert!(warm_auc >= trained - 0.003, "warm {warm_auc} vs trained {trained}");
    for (p, part) in &warm.parts {
        // The epoch count goes on, so a warm start from this part decays further still.
        assert_eq!((out.parts[p].epochs, part.epochs), (12, 13), "{p}");
        let before = &out.parts[p].coefficients;
        let moved =
            part.coefficients.iter().zip(before).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(moved < 0.5, "{p}: coefficients moved by {moved}");
    }
}

#[test]
fn three_parties_with_missing_values_and_text_columns() {
    let split = small_split(6000, 4, 3);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let params = LrParams { epochs: 30, batch_size: 256, decay: 0.1, ..LrParams::default() };
    let out = run(
        &JobId("j".into()),
        &split.roster(),
        &params,
        &split.inputs_with_validation(),
        &mut rng,
        true,
    )
    .unwrap();
    let (fed, central) = split.compare(&out);
    eprintln!("generated, 3 parties: federated AUC {fed:.4}, centralized {central:.4}");
    assert!((fed - central).abs() <= 0.005, "federated {fed} vs centralized {central}");
    check_transcript(&out, &split.roster());
}

/// Every ring vector a party receives from a peer is uniform: a plaintext label, residual,
/// prediction, logit or gradient in fixed point is small in two's complement, a share or a
/// masked value almost never is (probability 2^-63 per value). The dealer receives only
/// shapes and step requests; it sends seeds and corrections only.
fn check_transcript(out: &SimOutcome, roster: &Roster) {
    assert!(!out.transcript.is_empty());
    let small = |v: u128| (v as i128).unsigned_abs() < 1u128 << 64;
    let mut checked = 0usize;
    for d in &out.transcript {
        match (&d.from, &d.to) {
            (_, Node::Dealer) => {
                assert!(
                    matches!(d.msg, LrMsg::Shape { .. } | LrMsg::Need { .. }),
                    "the dealer received a {}",
                    d.msg.kind()
                );
            }
            (Node::Dealer, _) => {
                assert!(matches!(d.msg, LrMsg::Seeds { .. } | LrMsg::Deal { .. }));
            }
            (Node::Party(from), Node::Party(to)) => {
                assert_ne!(from, to);
                if matches!(d.msg, LrMsg::FinalShare { .. }) {
                    // The owner's coefficients reach the owner: at the end, by design.
                    assert_eq!(roster.partner_of(to), from);
                }
                for v in d.msg.vectors() {
                    let n_small = v.iter().filter(|x| small(**x)).count();
                    assert!(
                        n_small * 1000 <= v.len().max(1),
                        "{} from {from} to {to}: {n_small} of {} values are plaintext-sized",
                        d.msg.kind(),
                        v.len()
                    );
                    checked += v.len();
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
    // The sanity of the check itself: encoded labels would be caught.
    let fx = fedcredit_crypto::mpc::Fixed::default();
    assert!(fx.encode_all(&[0.0, 1.0, -0.73, 0.5]).into_iter().all(small));
}

#[test]
fn a_peer_cannot_inject_messages_out_of_turn() {
    use super::super::protocol::Party;
    let split = small_split(400, 5, 2);
    let inputs = split.inputs();
    let roster = split.roster();
    let (mut tax, _) = Party::new(
        &JobId("j".into()),
        pid("tax"),
        roster.clone(),
        LrParams::default(),
        data(&inputs[&pid("tax")].features, None),
    )
    .unwrap();
    let bank = Node::Party(pid("bank"));
    // A step far ahead, a sigmoid round that does not exist, a message kind only the dealer
    // sends, a stranger.
    assert!(tax.handle(&bank, LrMsg::ForwardOpen { step: 9, f: vec![1, 2] }).is_err());
    assert!(
        tax.handle(
            &bank,
            LrMsg::SigmoidOpen {
                step: 0,
                round: 7,
                opening: fedcredit_crypto::mpc::beaver::Opening { e: vec![], f: vec![] }
            }
        )
        .is_err()
    );
    assert!(tax.handle(&bank, LrMsg::Need { step: 0 }).is_err());
    assert!(tax.handle(&Node::Party(pid("mallory")), LrMsg::Masked { e: vec![] }).is_err());
    // The label holder refuses labels it is not given.
    assert!(
        Party::new(
            &JobId("j".into()),
            pid("bank"),
            roster,
            LrParams::default(),
            data(&inputs[&pid("bank")].features, None)
        )
        .is_err()
    );
}

/// Reads the FATE default_credit hetero split (guest with the label, host), joined on `id`.
fn default_credit() -> Option<Split> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/default_credit");
    let guest = std::fs::read_to_string(dir.join("default_credit_hetero_guest.csv")).ok()?;
    let host = std::fs::read_to_string(dir.join("default_credit_hetero_host.csv")).ok()?;
    let parse = |text: &str| -> (Vec<String>, BTreeMap<String, Vec<f64>>) {
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        let rows = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut it = l.split(',');
                let id = it.next().unwrap().to_string();
                (id, it.map(|v| v.parse::<f64>().unwrap()).collect())
            })
            .collect();
        (header, rows)
    };
    let (gh, g) = parse(&guest);
    let (hh, h) = parse(&host);
    let ids: Vec<&String> = g.keys().filter(|id| h.contains_key(*id)).collect();
    let (dg, dh) = (gh.len() - 2, hh.len() - 1);
    let mut x = Array2::zeros((ids.len(), dg + dh));
    let mut y = Array1::zeros(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let (gr, hr) = (&g[*id], &h[*id]);
        y[i] = gr[0];
        for j in 0..dg {
            x[[i, j]] = gr[1 + j];
        }
        for j in 0..dh {
            x[[i, dg + j]] = hr[j];
        }
    }
    let specs = gh[2..]
        .iter()
        .map(|n| FeatureSpec::numeric(format!("guest_{n}")))
        .chain(hh[1..].iter().map(|n| FeatureSpec::numeric(format!("host_{n}"))))
        .collect();
    let all = Dataset::new(Features::new(specs, x).unwrap(), y).unwrap();
    let (train, test) = shuffle_split(ids.len(), 2017);
    Some(Split {
        parties: vec![(pid("guest"), (0..dg).collect()), (pid("host"), (dg..dg + dh).collect())],
        all,
        train,
        test,
    })
}

#[test]
fn default_credit_hetero_matches_the_centralized_model() {
    let Some(split) = default_credit() else {
        eprintln!("SKIPPED: ../shared/datasets/default_credit is absent");
        return;
    };
    let params = LrParams::default();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let started = Instant::now();
    let out = run(
        &JobId("dc".into()),
        &split.roster(),
        &params,
        &split.inputs_with_validation(),
        &mut rng,
        false,
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let (fed, central) = split.compare(&out);
    let traffic: u64 = out.bytes.values().sum();
    eprintln!(
        "default_credit {} × {}: federated AUC {fed:.4}, centralized {central:.4}; \
         {:.3} s per epoch in memory (all roles, one thread); {} messages, {:.1} MB",
        split.train.len(),
        split.all.features.n_features(),
        secs / f64::from(params.epochs),
        out.messages,
        traffic as f64 / 1e6
    );
    assert!((fed - central).abs() <= 0.005, "federated {fed} vs centralized {central}");
    // The label holder's validation figures per epoch, from the joint scores opened in
    // shares, end at the AUC of the final model.
    assert_eq!(out.progress.len(), params.epochs as usize);
    for r in &out.progress {
        eprintln!(
            "  epoch {}: AUC {:.4}, KS {:.4}, log loss {:.4}",
            r.epoch, r.auc, r.ks, r.log_loss
        );
    }
    let last = out.progress.last().unwrap();
    assert!((last.auc - fed).abs() < 0.001, "{} vs {fed}", last.auc);
    assert!(last.log_loss < 0.5 && last.ks > 0.3, "{last:?}");
}

/// Time per epoch at a given shape, all roles in this thread, split by role:
/// `VLR_SHAPE=rows,a,b,… cargo test … -- --ignored --nocapture vertical_lr_speed`.
#[test]
#[ignore = "speed measurement; run by hand"]
fn vertical_lr_speed() {
    use std::collections::VecDeque;
    use std::time::Duration;

    use rand::RngExt;

    use super::super::protocol::{Dealer, Party};
    use super::Delivery;

    let shape = std::env::var("VLR_SHAPE").unwrap_or_else(|_| "24000,13,10".into());
    let dims: Vec<usize> = shape.split(',').map(|s| s.trim().parse().unwrap()).collect();
    let (rows, widths) = (dims[0], &dims[1..]);
    let epochs = 2;
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let names: Vec<PartyId> = (0..widths.len()).map(|k| pid(&format!("p{k}"))).collect();
    let mut z = vec![0.0; rows];
    let mut inputs = BTreeMap::new();
    for (k, &w) in widths.iter().enumerate() {
        let x = Array2::from_shape_fn((rows, w), |_| rng.random::<f64>() * 2.0 - 1.0);
        for (i, r) in x.rows().into_iter().enumerate() {
            z[i] += r.iter().take(5).sum::<f64>() * 0.3;
        }
        let specs = (0..w).map(|j| FeatureSpec::numeric(format!("c{j}"))).collect();
        inputs.insert(names[k].clone(), Features::new(specs, x).unwrap());
    }
    let labels: Vec<f64> =
        z.iter().map(|z| f64::from(rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()))).collect();
    let roster = Roster::new(names[0].clone(), names[1..].to_vec()).unwrap();
    let params = LrParams { epochs, batch_size: 8192, ..LrParams::default() };
    let job = JobId("speed".into());
    let started = Instant::now();
    let mut dealer = Dealer::new(roster.clone(), params, &mut rng).unwrap();
    let mut parties = BTreeMap::new();
    let mut queue = VecDeque::new();
    for p in roster.parties() {
        let y = (*p == roster.label).then_some(labels.as_slice());
        let (party, sends) =
            Party::new(&job, p.clone(), roster.clone(), params, data(&inputs[p], y)).unwrap();
        parties.insert(p.clone(), party);
        queue.extend(sends.into_iter().map(|(to, msg)| Delivery {
            from: Node::Party(p.clone()),
            to,
            msg,
        }));
    }
    let setup = started.elapsed();
    let mut busy: BTreeMap<Node, Duration> = BTreeMap::new();
    let mut bytes = 0u64;
    let mut setup_done: Option<Duration> = None;
    let train = Instant::now();
    while let Some(d) = queue.pop_front() {
        if setup_done.is_none() && matches!(d.msg, LrMsg::Need { .. }) {
            setup_done = Some(train.elapsed());
        }
        if setup_done.is_some() {
            bytes += 16 * d.msg.vectors().iter().map(|v| v.len() as u64).sum::<u64>();
        }
        let t = Instant::now();
        let (sends, from) = match &d.to {
            Node::Dealer => (dealer.handle(&d.from, d.msg).unwrap(), Node::Dealer),
            Node::Party(p) => {
                (parties.get_mut(p).unwrap().handle(&d.from, d.msg).unwrap(), d.to.clone())
            }
        };
        *busy.entry(d.to.clone()).or_default() += t.elapsed();
        queue.extend(sends.into_iter().map(|(to, msg)| Delivery { from: from.clone(), to, msg }));
    }
    let total = train.elapsed();
    let mask_setup = setup_done.unwrap_or_default();
    assert!(parties.values().all(|p| p.finished()));
    eprintln!(
        "{rows} rows × {widths:?}: encoding {:.2} s, dealing and masking X {:.2} s, \
         {:.3} s per epoch ({} epochs, batch {}), {:.1} MB per epoch on the wire",
        setup.as_secs_f64(),
        mask_setup.as_secs_f64(),
        (total - mask_setup).as_secs_f64() / f64::from(epochs),
        epochs,
        params.batch_size,
        bytes as f64 / 1e6 / f64::from(epochs)
    );
    for (node, t) in busy {
        eprintln!("  {node:?}: {:.3} s busy in all", t.as_secs_f64());
    }
}

#[test]
fn balanced_class_weights_match_the_centralized_model() {
    use fedcredit_models::logistic::ClassWeight;
    let split = small_split(6000, 3, 2);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let params = LrParams {
        epochs: 12,
        batch_size: 256,
        class_weight: ClassWeight::Balanced,
        ..LrParams::default()
    };
    let out = run(
        &JobId("j".into()),
        &split.roster(),
        &params,
        &split.inputs_with_validation(),
        &mut rng,
        true,
    )
    .unwrap();
    check_transcript(&out, &split.roster());
    let test_cols: BTreeMap<PartyId, Features> = split
        .parties
        .iter()
        .enumerate()
        .map(|(k, (p, _))| (p.clone(), split.features(k, &split.test)))
        .collect();
    let fed = joint_scores(&out.parts, &test_cols).unwrap();
    let y_test = split.labels(&split.test);
    let fed_auc = auc(&fed, &y_test).unwrap();
    let central = LogisticPipeline::fit(
        &split.all.select_rows(&split.train),
        &EncoderOptions::default(),
        &LogisticParams { class_weight: ClassWeight::Balanced, ..LogisticParams::default() },
    )
    .unwrap();
    let p = central.predict_proba(&split.all.features.select_rows(&split.test)).unwrap();
    let central_auc = auc(p.as_slice().unwrap(), &y_test).unwrap();
    // Balanced weights move the intercept up: the mean predicted probability is near ½.
    let mean_p: f64 = fed.iter().map(|z| 1.0 / (1.0 + (-z).exp())).sum::<f64>() / fed.len() as f64;
    eprintln!(
        "balanced: federated AUC {fed_auc:.4}, centralized {central_auc:.4}, mean P {mean_p:.3}"
    );
    assert!((fed_auc - central_auc).abs() <= 0.005, "{fed_auc} vs {central_auc}");
    assert!((0.35..0.65).contains(&mean_p), "{mean_p}");
}

/// The scorecard's regression: every party's columns as the WOE of its own bins (here fitted
/// on the joined training rows, as the federated WOE/IV stage would give each party its
/// bins), against the centralized regression on the same WOE matrix.
#[test]
fn woe_features_match_the_centralized_scorecard_regression() {
    use fedcredit_models::binning::{Binner, BinningParams};
    use fedcredit_models::logistic;

    use super::super::protocol::LocalEncoding;

    let split = small_split(6000, 6, 2);
    let train = split.all.select_rows(&split.train);
    let mut inputs = split.inputs();
    for (k, (p, cols)) in split.parties.iter().enumerate() {
        let own = Dataset::new(train.features.select_columns(cols), train.label.clone()).unwrap();
        let binner = Binner::fit(&own, &BinningParams::default()).unwrap();
        let input = inputs.get_mut(p).unwrap();
        assert_eq!(input.features.n_features(), split.features(k, &split.train).n_features());
        input.encoding = Some(LocalEncoding::Woe { binner, clip: 4.0 });
    }
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let params = LrParams { epochs: 30, batch_size: 256, decay: 0.1, ..LrParams::default() };
    let out = run(&JobId("sc".into()), &split.roster(), &params, &inputs, &mut rng, false).unwrap();
    let test_cols: BTreeMap<PartyId, Features> = split
        .parties
        .iter()
        .enumerate()
        .map(|(k, (p, _))| (p.clone(), split.features(k, &split.test)))
        .collect();
    let y_test = split.labels(&split.test);
    let fed = auc(&joint_scores(&out.parts, &test_cols).unwrap(), &y_test).unwrap();
    let all_bins = Binner::fit(&train, &BinningParams::default()).unwrap();
    let x = all_bins.transform_woe(&train.features).unwrap();
    let m = logistic::fit(x.view(), train.label.view(), None, &LogisticParams::default()).unwrap();
    let xt = all_bins.transform_woe(&split.all.features.select_rows(&split.test)).unwrap();
    let central = auc(m.decision_function(xt.view()).as_slice().unwrap(), &y_test).unwrap();
    eprintln!("WOE: federated AUC {fed:.4}, centralized {central:.4}");
    assert!((fed - central).abs() <= 0.005, "{fed} vs {central}");
}
