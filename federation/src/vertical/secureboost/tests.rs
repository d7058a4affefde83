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
    //! The secureboost stage driven as the runtime would (envelopes, payloads and streams
    //! between the party sides, the conductor answering reports), with every payload recorded
    //! in the clear as its recipient opens it.

    use std::collections::{BTreeMap, VecDeque};

    use fedcredit_models::Dataset;
    use fedcredit_models::gbdt;
    use fedcredit_models::metrics::auc;
    use fedcredit_models::testdata::{ApplicationsConfig, applications};
    use fedcredit_proto::pb;
    use prost::Message;
    use rand::{Rng, SeedableRng};

    use super::super::part::LeafSet;
    use super::super::{SbConductor, SbRole};
    use crate::ids::{JobId, PartyId};
    use crate::job::JobSpec;
    use crate::protocol::{CsRng, RoleOutbox, Schemas};
    use crate::vertical::model::{GbdtPart, PartyModel, VerticalModelRef};
    use crate::vertical::{
        Alignment, PartyCtx, PartyTable, StageConductor, StageCtx, StageDone, StageOutbox,
        StageResult, StageRole, StageRoleOut,
    };

    pub fn pid(s: &str) -> PartyId {
        PartyId(s.into())
    }

    pub struct Site {
        pub role: SbRole,
        pub table: PartyTable,
        pub alignment: Option<Alignment>,
        pub kept: BTreeMap<String, String>,
    }

    /// A joined table split by columns over `names` (column `j` to party `j % n`), rows in
    /// agreed order at every party.
    pub struct Split {
        pub all: Dataset,
        pub sites: BTreeMap<PartyId, Site>,
        pub columns: Vec<Vec<usize>>,
        pub train: Vec<usize>,
        pub valid: Vec<usize>,
        pub names: Vec<PartyId>,
    }

    pub fn split(all: Dataset, names: &[&str], fraction: f64, seed: u64) -> Split {
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
        let mut sites = BTreeMap::new();
        let mut columns = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let cols: Vec<usize> = (0..d).filter(|j| j % names.len() == k).collect();
            sites.insert(
                pid(name),
                Site {
                    role: SbRole::new(),
                    table: PartyTable {
                        ids: (0..n).map(|i| format!("E{i}")).collect(),
                        features: all.features.select_columns(&cols),
                        label: (k == 0).then(|| all.label.to_vec()),
                    },
                    alignment: Some(a.clone()),
                    kept: BTreeMap::new(),
                },
            );
            columns.push(cols);
        }
        Split { all, sites, columns, train, valid, names: names.iter().map(|s| pid(s)).collect() }
    }

    /// A delivered payload: (from, to, body) as the recipient opened it.
    pub type Delivered = (PartyId, PartyId, pb::sb_payload::Body);

    pub fn spec(names: &[&str], model: &str, extra: &str) -> JobSpec {
        let parties: Vec<String> = names.iter().map(|p| format!("\"{p}\"")).collect();
        JobSpec::from_toml(&format!(
            "parties = [{}]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"gbdt\"\n{model}\n\
             [vertical]\nlabel_holder = \"{}\"\n[vertical.he]\nbits = 2048\n{extra}",
            parties.join(", "),
            names[0]
        ))
        .unwrap()
    }

    /// Runs the stage to the end; the conductor's result and every payload delivered.
    pub fn run(spec: &JobSpec, s: &mut Split) -> Result<(StageDone, Vec<Delivered>), String> {
        let job = JobId("sb-stage".into());
        let vertical = spec.vertical.clone().unwrap();
        let schemas: Schemas = s
            .sites
            .iter()
            .map(|(p, site)| (p.clone(), site.table.features.specs.clone()))
            .collect();
        let step = 3;
        let sctx = StageCtx {
            job: &job,
            spec,
            vertical: &vertical,
            parties: &spec.parties,
            schemas: &schemas,
            step,
        };
        let done = vec![StageDone {
            what: String::new(),
            metrics: BTreeMap::new(),
            result: StageResult::Aligned { rows: s.all.n_rows() as u64 },
        }];
        let mut conductor = SbConductor::new(spec, &done)?;
        let mut so = StageOutbox::default();
        conductor.start(&sctx, &mut so)?;
        enum Ev {
            Step(pb::vertical_step::Body),
            Payload(PartyId, pb::vertical_payload::Body),
        }
        let mut queue: VecDeque<(PartyId, Ev)> =
            so.messages.into_iter().map(|(p, b)| (p, Ev::Step(b))).collect();
        let mut rng = CsRng::seed_from_u64(17);
        let mut delivered = Vec::new();
        let mut result = None;
        while let Some((to, ev)) = queue.pop_front() {
            let site = s.sites.get_mut(&to).ok_or("no such site")?;
            let mut outbox = RoleOutbox::default();
            {
                let mut ctx = PartyCtx {
                    me: &to,
                    job: &job,
                    spec,
                    vertical: &vertical,
                    table: &site.table,
                    alignment: &mut site.alignment,
                    kept: &mut site.kept,
                };
                let mut out = StageRoleOut { step, out: &mut outbox };
                match ev {
                    Ev::Step(b) => site.role.receive(&mut ctx, b, &mut rng, &mut out),
                    Ev::Payload(from, b) => {
                        if let pb::vertical_payload::Body::Secureboost(pb::SbPayload {
                            body: Some(body),
                        }) = &b
                        {
                            // On the wire: its bytes.
                            let bytes = b.clone();
                            let _ = bytes;
                            delivered.push((from.clone(), to.clone(), body.clone()));
                        }
                        site.role.payload(&mut ctx, &from, b, &mut rng, &mut out)
                    }
                }
                .map_err(|e| e.0)?;
            }
            for m in outbox.messages.into_iter().chain(outbox.reports.into_iter().flatten()) {
                let Some(pb::role_message::Body::Vertical(r)) = m.body else {
                    return Err("not a vertical report".into());
                };
                let body = r.body.ok_or("empty report")?;
                if let pb::vertical_report::Body::Failed(why) = body {
                    return Err(why);
                }
                let mut so = StageOutbox::default();
                conductor.receive(&sctx, &to, body, &mut so).map_err(|e| format!("{e:?}"))?;
                queue.extend(so.messages.into_iter().map(|(p, b)| (p, Ev::Step(b))));
                if let Some(d) = so.done {
                    result = Some(d);
                }
            }
            let mut payloads: Vec<(Vec<PartyId>, pb::Payload)> = outbox.payloads;
            for st in outbox.streams {
                let to = st.to.clone();
                payloads.extend(st.source.map(|p| (to.clone(), p)));
            }
            for (recipients, payload) in payloads {
                // Through its bytes, as on the wire.
                let payload = pb::Payload::decode(payload.encode_to_vec().as_slice())
                    .map_err(|e| e.to_string())?;
                let Some(pb::payload::Body::Vertical(v)) = payload.body else {
                    return Err("not a vertical payload".into());
                };
                for r in recipients {
                    queue.push_back((r, Ev::Payload(to.clone(), v.body.clone().ok_or("empty")?)));
                }
            }
        }
        let done = result.ok_or("the stage did not finish")?;
        Ok((done, delivered))
    }

    pub fn parts(s: &Split) -> BTreeMap<PartyId, GbdtPart> {
        s.sites
            .iter()
            .map(|(p, site)| match PartyModel::from_kept(&site.kept).unwrap() {
                Some(PartyModel::Gbdt { part }) => (p.clone(), *part),
                other => panic!("{p} kept {other:?}"),
            })
            .collect()
    }

    /// Federated raw scores of agreed rows `rows`: every party's leaf sets over its own
    /// columns, intersected at the label holder.
    pub fn federated_scores(s: &Split, rows: &[usize]) -> Vec<f64> {
        let parts = parts(s);
        let sets: Vec<Vec<Vec<LeafSet>>> = s
            .names
            .iter()
            .map(|p| {
                let f = s.sites[p].table.features.select_rows(rows);
                parts[p].leaf_sets(&f).unwrap()
            })
            .collect();
        let GbdtPart::Label(label) = &parts[&s.names[0]] else { panic!("no label part") };
        (0..rows.len())
            .map(|i| {
                let per: Vec<&[LeafSet]> = sets.iter().map(|v| v[i].as_slice()).collect();
                label.log_odds(&label.leaves(&per).unwrap())
            })
            .collect()
    }

    pub fn central(s: &Split, spec: &JobSpec) -> (gbdt::GbdtModel, Vec<f64>) {
        let order: Vec<usize> = s.columns.iter().flatten().copied().collect();
        let joined = |rows: &[usize]| {
            let d = s.all.select_rows(rows);
            Dataset { features: d.features.select_columns(&order), label: d.label }
        };
        let params = super::super::gbdt_params(spec).unwrap();
        let model = gbdt::fit(&joined(&s.train), None, &params).unwrap();
        let raw = model.predict_raw(&joined(&s.valid).features).unwrap().to_vec();
        (model, raw)
    }

    fn table(rows: usize, seed: u64) -> Dataset {
        applications(&ApplicationsConfig { rows, numeric: 8, text: 2, seed }).unwrap().data
    }

    #[test]
    fn three_parties_grow_the_centralized_trees() {
        let names = ["bank", "tax", "platform"];
        let spec = spec(&names, "n_trees = 6\nmax_depth = 3\nmax_bins = 32", "");
        let mut s = split(table(2500, 4), &names, spec.data.validation_fraction, 9);
        let (done, delivered) = run(&spec, &mut s).unwrap();
        let StageResult::Model { artifact_json } = &done.result else { panic!() };
        let r = VerticalModelRef::from_json(artifact_json).unwrap();
        assert_eq!((r.kind.as_str(), r.parties.len()), ("gbdt", 3));
        let fed = federated_scores(&s, &s.valid);
        let (_, central) = central(&s, &spec);
        let worst = fed.iter().zip(&central).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let y: Vec<f64> = s.valid.iter().map(|&i| s.all.label[i]).collect();
        let (fa, ca) = (auc(&fed, &y).unwrap(), auc(&central, &y).unwrap());
        eprintln!("federated AUC {fa:.5}, centralized {ca:.5}, largest raw-score gap {worst:.2e}");
        assert!((done.metrics["valid_auc"] - fa).abs() < 1e-9, "{:?}", done.metrics);
        assert!(worst < 1e-6, "the federated trees differ from the centralized ones: {worst}");
        // Feature holders received only ciphertexts, partitions, asks and shapes; nothing they
        // sent carries one of their bin edges.
        let parts = parts(&s);
        for (from, to, body) in &delivered {
            if *to != pid("bank") {
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
                assert_eq!(*from, pid("bank"));
            } else {
                let GbdtPart::Holder(h) = &parts[from] else { panic!() };
                let bytes = pb::SbPayload { body: Some(body.clone()) }.encode_to_vec();
                for e in h.bins.edges.iter().flatten().filter(|e| e.fract() != 0.0) {
                    let needle = e.to_le_bytes();
                    assert!(
                        !bytes.windows(8).any(|w| w == needle),
                        "{from} sent an edge {e} to the bank"
                    );
                }
            }
        }
    }
}
