use super::*;

#[test]
fn node_rows_follow_the_partitions_and_refuse_bad_ones() {
    let mut nodes = NodeRows::root(10);
    let bits = pack_bits((0..10).map(|r| r % 3 == 0));
    nodes.split(0, 1, 2, &bits).unwrap();
    assert_eq!(nodes.get(1).unwrap(), &[0, 3, 6, 9]);
    assert_eq!(nodes.get(2).unwrap(), &[1, 2, 4, 5, 7, 8]);
    assert_eq!(nodes.depth(2), Some(1));
    assert!(nodes.get(0).is_none());
    // The node is no longer open; children must be new; the bitmap must fit.
    assert!(nodes.split(0, 3, 4, &bits).is_err());
    assert!(nodes.split(1, 2, 3, &[0]).is_err());
    assert!(nodes.split(1, 3, 4, &[0, 0]).is_err());
    nodes.split(1, 3, 4, &[0b0101]).unwrap();
    assert_eq!(nodes.get(3).unwrap(), &[0, 6]);
}

#[test]
fn bitmaps_round_trip() {
    let v: Vec<bool> = (0..21).map(|i| i % 5 == 1 || i == 20).collect();
    let b = pack_bits(v.iter().copied());
    assert_eq!(b.len(), 3);
    for (i, x) in v.iter().enumerate() {
        assert_eq!(bit(&b, i), *x);
    }
    assert!(!bit(&b, 100));
}

mod stage {
    //! The secureboost stage driven as the runtime would ([`super::super::local`]), every
    //! payload recorded in the clear as its recipient opens it.

    use std::collections::BTreeMap;

    use fedcredit_models::Dataset;
    use fedcredit_models::gbdt;
    use fedcredit_models::metrics::auc;
    use fedcredit_models::testdata::{ApplicationsConfig, applications};
    use fedcredit_proto::pb;
    use prost::Message;
    use rand::{Rng, SeedableRng};

    use super::super::local::{self, LocalRun};
    use super::super::{SbRole, gbdt_params};
    use crate::ids::{JobId, PartyId};
    use crate::job::JobSpec;
    use crate::protocol::{CsRng, RoleOutbox};
    use crate::vertical::model::{GbdtPart, VerticalModelRef};
    use crate::vertical::woe::local::LocalParty;
    use crate::vertical::{Alignment, PartyCtx, PartyTable, StageResult, StageRole, StageRoleOut};

    fn pid(s: &str) -> PartyId {
        PartyId(s.into())
    }

    /// A joined table split by columns over `names` (column `j` to party `j % n`), rows in
    /// agreed order at every party.
    struct Split {
        all: Dataset,
        parties: Vec<LocalParty>,
        columns: Vec<Vec<usize>>,
        train: Vec<usize>,
        valid: Vec<usize>,
    }

    fn split(all: Dataset, names: &[&str], fraction: f64, seed: u64) -> Split {
        let n = all.n_rows();
        let d = all.features.n_features();
        let mut rng = CsRng::seed_from_u64(seed);
        let keys: Vec<[u8; 16]> = (0..n)
            .map(|_| {
                let mut k = [0u8; 16];
                rng.fill_bytes(&mut k);
                k
            })
            .collect();
        let a = Alignment { rows: (0..n as u32).collect(), keys };
        let (valid, train): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&t| a.is_validation(t, fraction));
        let mut parties = Vec::new();
        let mut columns = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let cols: Vec<usize> = (0..d).filter(|j| j % names.len() == k).collect();
            parties.push(LocalParty {
                name: pid(name),
                table: PartyTable {
                    ids: (0..n).map(|i| format!("E{i}")).collect(),
                    features: all.features.select_columns(&cols),
                    label: (k == 0).then(|| all.label.to_vec()),
                },
                alignment: a.clone(),
            });
            columns.push(cols);
        }
        Split { all, parties, columns, train, valid }
    }

    fn spec(names: &[&str], model: &str, extra: &str) -> JobSpec {
        let parties: Vec<String> = names.iter().map(|p| format!("\"{p}\"")).collect();
        JobSpec::from_toml(&format!(
            "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"gbdt\"\n{model}\n\
             [vertical]\nlabel_holder = \"{}\"\n{extra}",
            parties.join(", "),
            names[0]
        ))
        .unwrap()
    }

    fn run(spec: &JobSpec, s: &Split) -> LocalRun {
        local::run(spec, s.parties.clone(), BTreeMap::new(), 17, true).unwrap()
    }

    /// Federated raw scores of agreed rows `rows`.
    fn federated_scores(s: &Split, r: &LocalRun, rows: &[usize]) -> Vec<f64> {
        let features = s
            .parties
            .iter()
            .map(|p| (p.name.clone(), p.table.features.select_rows(rows)))
            .collect();
        local::joint_scores(&r.parts, &features).unwrap()
    }

    fn central(s: &Split, spec: &JobSpec) -> Vec<f64> {
        let order: Vec<usize> = s.columns.iter().flatten().copied().collect();
        let joined = |rows: &[usize]| {
            let d = s.all.select_rows(rows);
            Dataset { features: d.features.select_columns(&order), label: d.label }
        };
        let model = gbdt::fit(&joined(&s.train), None, &gbdt_params(spec).unwrap()).unwrap();
        model.predict_raw(&joined(&s.valid).features).unwrap().to_vec()
    }

    fn table(rows: usize, seed: u64) -> Dataset {
        applications(&ApplicationsConfig { rows, numeric: 8, text: 2, seed }).unwrap().data
    }

    fn valid_auc(s: &Split, scores: &[f64]) -> f64 {
        let y: Vec<f64> = s.valid.iter().map(|&i| s.all.label[i]).collect();
        auc(scores, &y).unwrap()
    }

    const NAMES: [&str; 3] = ["bank", "tax", "platform"];

    #[test]
    fn three_parties_grow_the_centralized_trees_and_keep_thresholds_home() {
        // Row and column sampling drawn as the centralized trainer draws them.
        let model = "n_trees = 6\nmax_depth = 3\nmax_bins = 32\nrow_subsample = 0.8\n\
                     col_subsample = 0.7";
        let spec = spec(&NAMES, model, "");
        let s = split(table(2500, 4), &NAMES, spec.data.validation_fraction, 9);
        let r = run(&spec, &s);
        let StageResult::Model { artifact_json } = &r.done.result else { panic!() };
        let reference = VerticalModelRef::from_json(artifact_json).unwrap();
        assert_eq!((reference.kind.as_str(), reference.parties.len()), ("gbdt", 3));
        let fed = federated_scores(&s, &r, &s.valid);
        let central = central(&s, &spec);
        let worst = fed.iter().zip(&central).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let (fa, ca) = (valid_auc(&s, &fed), valid_auc(&s, &central));
        eprintln!("federated AUC {fa:.5}, centralized {ca:.5}, largest raw-score gap {worst:.2e}");
        assert!((r.done.metrics["valid_auc"] - fa).abs() < 1e-9, "{:?}", r.done.metrics);
        assert!(worst < 1e-6, "the federated trees differ from the centralized ones: {worst}");
        // Every party owns splits.
        for p in &reference.parties {
            assert!(p.columns > 0, "{} owns no split", p.party);
        }
        // Feature holders receive only ciphertexts, partitions, asks and shapes from the
        // label holder; nothing they send carries one of their bin edges.
        for (from, to, body) in &r.delivered {
            if *to != pid("bank") {
                assert_eq!(*from, pid("bank"));
                assert!(
                    matches!(
                        body,
                        pb::sb_payload::Body::Key(_)
                            | pb::sb_payload::Body::Gradients(_)
                            | pb::sb_payload::Body::Level(_)
                            | pb::sb_payload::Body::Ask(_)
                            | pb::sb_payload::Body::Commit(_)
                    ),
                    "{to} received {body:?}"
                );
            } else {
                let GbdtPart::Holder(h) = &r.parts[from] else { panic!() };
                let bytes = pb::SbPayload { body: Some(body.clone()) }.encode_to_vec();
                for e in h.bins.edges.iter().flatten().filter(|e| e.fract() != 0.0) {
                    let needle = e.to_le_bytes();
                    assert!(!bytes.windows(8).any(|w| w == needle), "{from} sent edge {e}");
                }
            }
        }
        // The label holder's part names the others' splits only by reference.
        let GbdtPart::Label(l) = &r.parts[&pid("bank")] else { panic!() };
        let json = serde_json::to_string(l).unwrap();
        assert!(json.contains("remote") && !json.contains("threshold_bin\":255"));
    }

    #[test]
    fn goss_and_label_only_trees_train_and_send_less() {
        let base = spec(&NAMES, "n_trees = 8\nmax_depth = 3\nmax_bins = 32", "");
        let s = split(table(3000, 5), &NAMES, base.data.validation_fraction, 3);
        let plain = run(&base, &s);
        let goss = spec(
            &NAMES,
            "n_trees = 8\nmax_depth = 3\nmax_bins = 32",
            "[vertical.secureboost]\ngoss = true\nlabel_only_trees = 2\n",
        );
        let g = run(&goss, &s);
        let (pa, ga) = (plain.done.metrics["valid_auc"], g.done.metrics["valid_auc"]);
        eprintln!(
            "AUC {pa:.4} without sampling, {ga:.4} with GOSS; payload bytes {} vs {}",
            plain.payload_bytes, g.payload_bytes
        );
        assert!(ga > pa - 0.03, "GOSS cost {pa} -> {ga}");
        assert!(g.payload_bytes < plain.payload_bytes / 2);
        // The first two trees are the bank's alone: no gradients for them.
        let trees: Vec<u32> = g
            .delivered
            .iter()
            .filter_map(|(_, _, b)| match b {
                pb::sb_payload::Body::Gradients(x) if x.offset == 0 => Some(x.tree),
                _ => None,
            })
            .collect();
        assert!(!trees.is_empty() && trees.iter().all(|&t| t >= 2), "{trees:?}");
    }

    #[test]
    fn early_stopping_keeps_the_best_trees_at_every_party() {
        let spec = spec(
            &NAMES[..2],
            "n_trees = 60\nlearning_rate = 0.2\nmax_depth = 3\nmax_bins = 16",
            "[vertical.secureboost]\nearly_stopping_rounds = 3\n",
        );
        let s = split(table(4000, 7), &NAMES[..2], spec.data.validation_fraction, 2);
        let r = run(&spec, &s);
        let trees = |p: &str| match &r.parts[&pid(p)] {
            GbdtPart::Label(l) => l.trees.len(),
            GbdtPart::Holder(h) => h.trees.len(),
        };
        let kept = r.done.metrics["trees"] as usize;
        // The centralized trainer with the same validation rows stops at the same tree.
        let order: Vec<usize> = s.columns.iter().flatten().copied().collect();
        let joined = |rows: &[usize]| {
            let d = s.all.select_rows(rows);
            Dataset { features: d.features.select_columns(&order), label: d.label }
        };
        let params =
            gbdt::GbdtParams { early_stopping_rounds: Some(3), ..gbdt_params(&spec).unwrap() };
        let central = gbdt::fit(&joined(&s.train), Some(&joined(&s.valid)), &params).unwrap();
        eprintln!("early stopping kept {kept} of 60 trees; centralized {}", central.trees.len());
        assert!((1..60).contains(&kept), "{kept}");
        assert_eq!(kept, central.trees.len());
        assert_eq!((trees("bank"), trees("tax")), (kept, kept));
        // The holder keeps only the splits of the kept trees.
        let GbdtPart::Holder(h) = &r.parts[&pid("tax")] else { panic!() };
        assert!(h.splits.iter().all(|(_, sp)| (sp.tree as usize) < kept));
    }

    /// A feature holder replaying the honest label holder's messages up to the first level,
    /// which `tamper` changes; its answer.
    fn holder_answer(tamper: impl Fn(&mut pb::SbLevel)) -> Result<(), String> {
        let spec = spec(&NAMES[..2], "n_trees = 2\nmax_depth = 3\nmax_bins = 16", "");
        let s = split(table(1200, 6), &NAMES[..2], spec.data.validation_fraction, 4);
        let r = run(&spec, &s);
        let tax = &s.parties[1];
        let vertical = spec.vertical.clone().unwrap();
        let job = JobId("secureboost-local".into());
        let mut role = SbRole::new();
        let mut kept = BTreeMap::new();
        let mut alignment = Some(tax.alignment.clone());
        let mut rng = CsRng::seed_from_u64(1);
        let mut outbox = RoleOutbox::default();
        let mut ctx = PartyCtx {
            me: &tax.name,
            job: &job,
            spec: &spec,
            vertical: &vertical,
            table: &tax.table,
            alignment: &mut alignment,
            kept: &mut kept,
        };
        let mut out = StageRoleOut { step: 1, out: &mut outbox };
        let start = pb::SbStart { trees: 2, max_depth: 3, label_holder: "bank".into() };
        role.receive(
            &mut ctx,
            pb::vertical_step::Body::Secureboost(pb::SbStep {
                body: Some(pb::sb_step::Body::Start(start)),
            }),
            &mut rng,
            &mut out,
        )
        .map_err(|e| e.0)?;
        for (_, to, body) in &r.delivered {
            if *to != tax.name {
                continue;
            }
            let mut body = body.clone();
            let is_level = matches!(body, pb::sb_payload::Body::Level(_));
            if let pb::sb_payload::Body::Level(l) = &mut body {
                tamper(l);
            }
            let wrapped =
                pb::vertical_payload::Body::Secureboost(pb::SbPayload { body: Some(body) });
            role.payload(&mut ctx, &pid("bank"), wrapped, &mut rng, &mut out).map_err(|e| e.0)?;
            if is_level {
                return Ok(());
            }
        }
        Err("no level".into())
    }

    #[test]
    fn a_feature_holder_refuses_levels_that_isolate_rows() {
        holder_answer(|_| {}).unwrap();
        // A partition that puts one row on the left.
        let e = holder_answer(|l| {
            let p = &mut l.partitions[0];
            let mut bits = vec![0u8; p.left_bits.len()];
            bits[0] = 1;
            p.left_bits = bits;
        })
        .unwrap_err();
        assert!(e.contains("min_data_in_leaf"), "{e}");
        // Histograms of a node below the job's depth, or of a node that is not open.
        let e = holder_answer(|l| l.wanted = vec![0]).unwrap_err();
        assert!(e.contains("not open"), "{e}");
    }

    #[test]
    fn a_party_refuses_a_start_that_differs_from_its_job() {
        let spec = spec(&NAMES[..2], "n_trees = 2", "");
        let s = split(table(400, 6), &NAMES[..2], 0.2, 4);
        let vertical = spec.vertical.clone().unwrap();
        let job = JobId("j".into());
        for (trees, label) in [(3, "bank"), (2, "tax")] {
            let tax = &s.parties[1];
            let (mut kept, mut alignment) = (BTreeMap::new(), Some(tax.alignment.clone()));
            let mut outbox = RoleOutbox::default();
            let mut ctx = PartyCtx {
                me: &tax.name,
                job: &job,
                spec: &spec,
                vertical: &vertical,
                table: &tax.table,
                alignment: &mut alignment,
                kept: &mut kept,
            };
            let start = pb::SbStart { trees, max_depth: 5, label_holder: label.into() };
            let e = SbRole::new()
                .receive(
                    &mut ctx,
                    pb::vertical_step::Body::Secureboost(pb::SbStep {
                        body: Some(pb::sb_step::Body::Start(start)),
                    }),
                    &mut CsRng::seed_from_u64(0),
                    &mut StageRoleOut { step: 1, out: &mut outbox },
                )
                .unwrap_err();
            assert!(e.0.contains("where the job"), "{}", e.0);
        }
    }
}
