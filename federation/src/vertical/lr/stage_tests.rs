//! The lr stage's party side driven as the runtime would: envelopes, sealed payloads as
//! `LrPayload` bytes, the dealer (played here by the test, as the coordinator's stage will)
//! answering `LrReport.dealer` with `LrStep.dealer`.

use std::collections::{BTreeMap, VecDeque};

use fedcredit_models::metrics::auc;
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_proto::pb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::protocol::{Dealer, LrMsg, LrPart, Node, Roster};
use super::{LrRole, stage_params};
use crate::ids::{JobId, PartyId};
use crate::job::JobSpec;
use crate::protocol::RoleOutbox;
use crate::vertical::model::PartyModel;
use crate::vertical::{Alignment, PartyCtx, PartyTable, StageRole, StageRoleOut};

fn pid(s: &str) -> PartyId {
    PartyId(s.into())
}

enum Event {
    Step(pb::vertical_step::Body),
    Payload(PartyId, pb::vertical_payload::Body),
}

struct Site {
    role: LrRole,
    table: PartyTable,
    alignment: Option<Alignment>,
    kept: BTreeMap<String, String>,
}

#[test]
fn two_party_stage_roles_train_through_envelopes_and_keep_their_parts() {
    let spec = JobSpec::from_toml(
        r#"
parties = ["bank", "tax"]
[data]
id = "id"
label = "y"
[model]
kind = "logistic"
[vertical]
label_holder = "bank"
"#,
    )
    .unwrap();
    let vertical = spec.vertical.clone().unwrap();
    let job = JobId("lr-stage".into());
    let t = applications(&ApplicationsConfig { rows: 3000, numeric: 8, text: 0, seed: 9 }).unwrap();
    let n = t.data.n_rows();
    let d = t.data.features.n_features();
    // The tax bureau's rows come in another order; the alignment maps both to agreed rows.
    let tax_order: Vec<usize> = (0..n).rev().collect();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let keys: Vec<[u8; 16]> = (0..n)
        .map(|_| {
            let mut k = [0u8; 16];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let bank_cols: Vec<usize> = (0..d / 2).collect();
    let tax_cols: Vec<usize> = (d / 2..d).collect();
    let mut sites: BTreeMap<PartyId, Site> = BTreeMap::new();
    sites.insert(
        pid("bank"),
        Site {
            role: LrRole::new(),
            table: PartyTable {
                ids: (0..n).map(|i| format!("E{i}")).collect(),
                features: t.data.features.select_columns(&bank_cols),
                label: Some(t.data.label.to_vec()),
            },
            alignment: Some(Alignment { rows: (0..n as u32).collect(), keys: keys.clone() }),
            kept: BTreeMap::new(),
        },
    );
    sites.insert(
        pid("tax"),
        Site {
            role: LrRole::new(),
            table: PartyTable {
                ids: tax_order.iter().map(|i| format!("E{i}")).collect(),
                features: t.data.features.select_rows(&tax_order).select_columns(&tax_cols),
                label: None,
            },
            // Agreed row i is the tax bureau's row n − 1 − i.
            alignment: Some(Alignment { rows: (0..n as u32).rev().collect(), keys }),
            kept: BTreeMap::new(),
        },
    );
    let params = stage_params(&spec);
    let roster = Roster::new(pid("bank"), vec![pid("tax")]).unwrap();
    let mut dealer = Dealer::new(roster, params, &mut rng).unwrap();
    let mut queue: VecDeque<(PartyId, Event)> = VecDeque::new();
    for p in [pid("bank"), pid("tax")] {
        queue.push_back((
            p,
            Event::Step(pb::vertical_step::Body::Lr(pb::LrStep {
                body: Some(pb::lr_step::Body::Start(pb::LrStart { epochs: params.epochs })),
            })),
        ));
    }
    let step = 7;
    let mut done = BTreeMap::new();
    let mut epochs = Vec::new();
    while let Some((to, ev)) = queue.pop_front() {
        let site = sites.get_mut(&to).unwrap();
        let mut outbox = RoleOutbox::default();
        {
            let mut ctx = PartyCtx {
                me: &to,
                job: &job,
                spec: &spec,
                vertical: &vertical,
                table: &site.table,
                alignment: &mut site.alignment,
                kept: &mut site.kept,
            };
            let mut out = StageRoleOut { step, out: &mut outbox };
            match ev {
                Event::Step(b) => site.role.receive(&mut ctx, b, &mut rng, &mut out),
                Event::Payload(from, b) => {
                    site.role.payload(&mut ctx, &from, b, &mut rng, &mut out)
                }
            }
            .unwrap();
        }
        for m in outbox.messages {
            let Some(pb::role_message::Body::Vertical(r)) = m.body else { panic!("not vertical") };
            assert_eq!(r.step, step);
            match r.body {
                Some(pb::vertical_report::Body::Lr(pb::LrReport {
                    body: Some(pb::lr_report::Body::Dealer(bytes)),
                })) => {
                    let msg = LrMsg::decode(&bytes).unwrap();
                    // What the coordinator receives: shapes and step requests only.
                    assert!(matches!(msg, LrMsg::Shape { .. } | LrMsg::Need { .. }));
                    for (node, reply) in dealer.handle(&Node::Party(to.clone()), msg).unwrap() {
                        let Node::Party(p) = node else { panic!("dealer to dealer") };
                        queue.push_back((
                            p,
                            Event::Step(pb::vertical_step::Body::Lr(pb::LrStep {
                                body: Some(pb::lr_step::Body::Dealer(reply.encode())),
                            })),
                        ));
                    }
                }
                Some(pb::vertical_report::Body::Lr(pb::LrReport {
                    body: Some(pb::lr_report::Body::Done(d)),
                })) => {
                    done.insert(to.clone(), d.summary);
                }
                Some(pb::vertical_report::Body::Lr(pb::LrReport {
                    body: Some(pb::lr_report::Body::Epoch(e)),
                })) => {
                    assert_eq!(to, pid("bank"), "only the label holder reports epochs");
                    epochs.push(e);
                }
                other => panic!("unexpected report {other:?}"),
            }
        }
        for (recipients, payload) in outbox.payloads {
            let Some(pb::payload::Body::Vertical(v)) = payload.body else { panic!() };
            assert_eq!(v.step, step);
            for r in recipients {
                queue.push_back((r, Event::Payload(to.clone(), v.body.clone().unwrap())));
            }
        }
    }
    assert_eq!(done.len(), 2, "{done:?}");
    eprintln!("bank: {}", done[&pid("bank")]);
    assert!(done[&pid("bank")].contains("validation AUC"));
    assert!(!done[&pid("tax")].contains("AUC"));
    // Each party kept its own part; joint scores rank the rows as well as expected.
    let part = |p: &str| -> LrPart {
        PartyModel::from_kept(&sites[&pid(p)].kept).unwrap().unwrap().lr().unwrap().clone()
    };
    let numbers: Vec<u32> = epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(numbers, (1..=params.epochs).collect::<Vec<_>>());
    let (bank, tax) = (part("bank"), part("tax"));
    assert!(sites.values().all(|s| s.role.finished()));
    let zb = bank.partial_scores(&sites[&pid("bank")].table.features).unwrap();
    let zt = tax.partial_scores(&sites[&pid("tax")].table.features).unwrap();
    let z: Vec<f64> = (0..n).map(|i| zb[i] + zt[n - 1 - i]).collect();
    let y = t.data.label.as_slice().unwrap();
    // The validation rows are those whose agreed key falls below the job's fraction: the AUC
    // of the kept parts there is the one the label holder reported from the opened shares.
    let agreed = sites[&pid("bank")].alignment.as_ref().unwrap();
    let fraction = spec.data.validation_fraction;
    let vi: Vec<usize> = (0..n).filter(|&i| agreed.is_validation(i, fraction)).collect();
    let zv: Vec<f64> = vi.iter().map(|&i| z[i]).collect();
    let yv: Vec<f64> = vi.iter().map(|&i| y[i]).collect();
    let a = auc(&zv, &yv).unwrap();
    eprintln!("{} validation rows: AUC of the kept parts {a:.4}", vi.len());
    assert!(done[&pid("bank")].contains(&format!("validation AUC {a:.4}")));
    assert_eq!(format!("{:.4}", epochs.last().unwrap().auc), format!("{a:.4}"));
    assert!(a > 0.6 && auc(&z, y).unwrap() > 0.6, "{a}");
    // A second start is refused.
    let site = sites.get_mut(&pid("tax")).unwrap();
    let mut outbox = RoleOutbox::default();
    let mut ctx = PartyCtx {
        me: &pid("tax"),
        job: &job,
        spec: &spec,
        vertical: &vertical,
        table: &site.table,
        alignment: &mut site.alignment,
        kept: &mut site.kept,
    };
    let mut out = StageRoleOut { step, out: &mut outbox };
    let start = pb::vertical_step::Body::Lr(pb::LrStep {
        body: Some(pb::lr_step::Body::Start(pb::LrStart { epochs: params.epochs })),
    });
    assert!(site.role.receive(&mut ctx, start, &mut rng, &mut out).is_err());
}
