//! The WOE/IV stage in one process against the centralized binner on the joined table: same
//! bins, same counts, bit-identical WOE and IV; what each side refuses.

use fedcredit_models::binning::{Binner, BinningMethod, BinningParams};
use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};

use super::local::{LocalParty, run};
use super::*;
use crate::ids::JobId;
use crate::vertical::{Alignment, PartyTable};

fn spec(method: &str, min_iv: f64) -> JobSpec {
    JobSpec::from_toml(&format!(
        r#"
parties = ["bank", "tax", "platform"]
[data]
id = "id"
label = "default"
[model]
kind = "woe"
bins = 6
method = "{method}"
min_iv = {min_iv}
[vertical]
label_holder = "bank"
"#
    ))
    .unwrap()
}

/// Three parties over the same `n` enterprises, each table in its own row order; returns the
/// parties and the joined dataset in the agreed order.
fn parties(n: usize, seed: u64) -> (Vec<LocalParty>, Dataset) {
    let mut rng = CsRng::seed_from_u64(seed);
    let risk: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    let label: Vec<f64> =
        risk.iter().map(|&r| f64::from(u8::from(rng.random::<f64>() < 0.05 + 0.4 * r))).collect();
    let levels: Vec<String> = (0..8).map(|l| format!("l{l}")).collect();
    // Columns in agreed order: bank 2, tax 2, platform 3.
    let mut cols: Vec<(usize, FeatureSpec, Vec<f64>)> = Vec::new();
    let mut col = |owner: usize, spec: FeatureSpec, f: &mut dyn FnMut(usize, f64) -> f64| {
        let v = (0..n).map(|i| f(i, risk[i])).collect();
        cols.push((owner, spec, v));
    };
    let mut r2 = CsRng::seed_from_u64(seed + 1);
    col(0, FeatureSpec::numeric("b_income"), &mut |_, r| {
        (100.0 * (1.0 - r) + 50.0 * r2.random::<f64>()).round()
    });
    col(0, FeatureSpec::categorical("b_sector", levels.clone()), &mut |_, r| {
        if r2.random::<f64>() < 0.03 {
            f64::NAN
        } else {
            ((r + r2.random::<f64>()) * 4.0).floor().min(7.0)
        }
    });
    col(1, FeatureSpec::numeric("t_tax"), &mut |_, r| {
        if r2.random::<f64>() < 0.1 {
            f64::NAN
        } else if r2.random::<f64>() < 0.3 {
            0.0
        } else {
            r * 3.0 + r2.random::<f64>()
        }
    });
    col(1, FeatureSpec::numeric("t_noise"), &mut |_, _| r2.random::<f64>());
    col(2, FeatureSpec::numeric("p_sales"), &mut |i, r| (i % 17) as f64 + 10.0 * r);
    col(2, FeatureSpec::categorical("p_channel", levels.clone()), &mut |_, r| {
        // Level 7 is rare (pooled into "other" centrally too).
        if r2.random::<f64>() < 0.01 {
            7.0
        } else {
            ((r * 2.0 + r2.random::<f64>()) * 2.3).floor().min(6.0)
        }
    });
    col(2, FeatureSpec::numeric("p_constant"), &mut |_, _| 1.0);
    let names = ["bank", "tax", "platform"];
    let mut out = Vec::new();
    for (owner, name) in names.iter().enumerate() {
        // Each party's table holds the common rows in its own order, plus a few rows of its
        // own that no alignment names.
        let extra = 3 + owner;
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            perm.swap(i, j);
        }
        // perm[t] = table row of agreed row t (rows ≥ n are the extra ones).
        let mine: Vec<&(usize, FeatureSpec, Vec<f64>)> =
            cols.iter().filter(|c| c.0 == owner).collect();
        let mut values = Array2::<f64>::from_elem((n + extra, mine.len()), 5.0);
        for (j, c) in mine.iter().enumerate() {
            for t in 0..n {
                values[[perm[t], j]] = c.2[t];
            }
        }
        let mut lab = vec![0.0; n + extra];
        for t in 0..n {
            lab[perm[t]] = label[t];
        }
        let table = PartyTable {
            ids: (0..n + extra).map(|i| format!("{name}{i}")).collect(),
            features: Features::new(mine.iter().map(|c| c.1.clone()).collect(), values).unwrap(),
            label: (owner == 0).then_some(lab),
        };
        let alignment = Alignment {
            rows: perm.iter().map(|&r| r as u32).collect(),
            keys: (0..n).map(|t| (t as u128).to_le_bytes()).collect(),
        };
        out.push(LocalParty { name: PartyId(name.to_string()), table, alignment });
    }
    let specs = cols.iter().map(|c| c.1.clone()).collect();
    let mut values = Array2::<f64>::zeros((n, cols.len()));
    for (j, c) in cols.iter().enumerate() {
        for t in 0..n {
            values[[t, j]] = c.2[t];
        }
    }
    let data = Dataset::new(Features::new(specs, values).unwrap(), Array1::from(label)).unwrap();
    (out, data)
}

fn check_equal(method: BinningMethod, name: &str) {
    let (parties, data) = parties(3000, 7);
    let spec = spec(name, 0.02);
    let owners: Vec<String> = parties
        .iter()
        .flat_map(|p| p.table.features.specs.iter().map(|_| p.name.0.clone()))
        .collect();
    let got = run(&JobId("j".into()), &spec, parties, 1).unwrap();
    let params = BinningParams { method, max_bins: 6, min_bin_fraction: 0.05 };
    let central = Binner::fit(&data, &params).unwrap();
    assert_eq!(got.report.n_features(), central.features.len());
    assert_eq!(got.report.rows, 3000);
    for (fb, owner) in central.features.iter().zip(&owners) {
        let party = got.report.parties.iter().find(|p| p.party == *owner).unwrap();
        let iv = party.features.iter().find(|f| f.feature == fb.feature).unwrap();
        assert_eq!(iv.iv.to_bits(), fb.iv.to_bits(), "{}: IV", fb.feature);
        assert_eq!(iv.bins, fb.bins.len(), "{}: bins", fb.feature);
        assert_eq!(iv.selected, fb.iv >= 0.02);
        let kept = &got.kept[&PartyId(owner.clone())];
        let k = kept.features.iter().find(|f| f.feature == fb.feature).unwrap();
        assert_eq!(k.rule, fb.rule, "{}: rule", fb.feature);
        assert_eq!(k.woe, fb.woe(), "{}: WOE", fb.feature);
        assert_eq!(k.iv.to_bits(), fb.iv.to_bits());
    }
    // Some feature is dropped, some kept: the threshold is applied.
    assert!(got.report.n_selected() > 0 && got.report.n_selected() < got.report.n_features());
    assert_eq!(got.done.metrics["woe_features"], 7.0);
}

#[test]
fn equal_frequency_equals_the_centralized_binner() {
    check_equal(BinningMethod::EqualFrequency, "equal_frequency");
}

#[test]
fn monotone_equals_the_centralized_binner() {
    check_equal(BinningMethod::Monotone, "monotone");
}

#[test]
fn what_goes_between_parties_holds_no_label_and_no_edge() {
    let (parties, _) = parties(500, 3);
    let got = run(&JobId("j".into()), &spec("equal_frequency", 0.0), parties, 2).unwrap();
    let mut rows = Vec::new();
    for (from, to, p) in &got.payloads {
        match &p.body {
            Some(pb::woe_payload::Body::Key(_) | pb::woe_payload::Body::Rows(_)) => {
                assert_eq!(from.0, "bank");
                if let Some(pb::woe_payload::Body::Rows(r)) = &p.body {
                    rows.push((to.clone(), r.ciphertexts.clone()));
                }
            }
            Some(pb::woe_payload::Body::Sums(s)) => {
                assert_eq!(to.0, "bank");
                for f in &s.features {
                    assert_eq!(f.counts.iter().sum::<u64>(), 500);
                }
            }
            Some(pb::woe_payload::Body::Tables(_)) => assert_eq!(from.0, "bank"),
            None => panic!("empty payload"),
        }
    }
    // 500 ciphertexts to each feature holder, all distinct although labels repeat.
    let mut all = std::collections::BTreeSet::new();
    for (_, bytes) in &rows {
        for c in bytes.chunks(64) {
            all.insert(c.to_vec());
        }
    }
    assert_eq!(rows.iter().map(|r| r.1.len() / 64).sum::<usize>(), 1000);
    assert_eq!(all.len(), 500, "the same ciphertexts go to both holders, none repeats");
    // The report names features and IVs only.
    let json = serde_json::to_string(&got.report).unwrap();
    assert!(!json.contains("edges") && !json.contains("[-inf"), "{json}");
}

#[test]
fn a_start_other_than_the_job_is_refused() {
    let spec = spec("equal_frequency", 0.0);
    let (parties, _) = parties(50, 4);
    let p = &parties[1];
    let vertical = spec.vertical.clone().unwrap();
    let mut alignment = Some(p.alignment.clone());
    let mut kept = BTreeMap::new();
    let job = JobId("j".into());
    let mut ctx = PartyCtx {
        me: &p.name,
        job: &job,
        spec: &spec,
        vertical: &vertical,
        table: &p.table,
        alignment: &mut alignment,
        kept: &mut kept,
    };
    let mut start = start_message(&spec).unwrap();
    start.bins = 20;
    let mut out = crate::protocol::RoleOutbox::default();
    let mut so = StageRoleOut { step: 1, out: &mut out };
    let mut rng = CsRng::seed_from_u64(0);
    let mut role = WoeRole::new();
    let msg =
        |s| pb::vertical_step::Body::Woe(pb::WoeStep { body: Some(pb::woe_step::Body::Start(s)) });
    assert!(role.receive(&mut ctx, msg(start), &mut rng, &mut so).is_err());
    // The job's start is taken; a payload from a party other than the label holder is not.
    role.receive(&mut ctx, msg(start_message(&spec).unwrap()), &mut rng, &mut so).unwrap();
    let key = pb::vertical_payload::Body::Woe(pb::WoePayload {
        body: Some(pb::woe_payload::Body::Key(pb::WoeKey {
            scheme: SCHEME.into(),
            public_key: fedcredit_crypto::elgamal::SecretKey::generate(&mut rng)
                .public_key()
                .to_bytes()
                .to_vec(),
            rows: 50,
        })),
    });
    let platform = PartyId("platform".into());
    let err = role.payload(&mut ctx, &platform, key.clone(), &mut rng, &mut so).unwrap_err();
    assert!(err.0.contains("only the label holder"), "{err}");
    let bank = PartyId("bank".into());
    role.payload(&mut ctx, &bank, key.clone(), &mut rng, &mut so).unwrap();
    assert!(role.payload(&mut ctx, &bank, key, &mut rng, &mut so).is_err(), "a second key");
}

#[test]
fn a_label_holder_refuses_sums_that_do_not_fit() {
    let spec = spec("equal_frequency", 0.0);
    let (parties, _) = parties(40, 5);
    let p = &parties[0];
    let vertical = spec.vertical.clone().unwrap();
    let mut alignment = Some(p.alignment.clone());
    let mut kept = BTreeMap::new();
    let job = JobId("j".into());
    let mut ctx = PartyCtx {
        me: &p.name,
        job: &job,
        spec: &spec,
        vertical: &vertical,
        table: &p.table,
        alignment: &mut alignment,
        kept: &mut kept,
    };
    let mut out = crate::protocol::RoleOutbox::default();
    let mut so = StageRoleOut { step: 1, out: &mut out };
    let mut rng = CsRng::seed_from_u64(0);
    let mut role = WoeRole::new();
    let start = pb::vertical_step::Body::Woe(pb::WoeStep {
        body: Some(pb::woe_step::Body::Start(start_message(&spec).unwrap())),
    });
    role.receive(&mut ctx, start, &mut rng, &mut so).unwrap();
    let other = fedcredit_crypto::elgamal::SecretKey::generate(&mut rng);
    let sums = |counts: Vec<u64>, values: Vec<u64>, rng: &mut CsRng| {
        let cts = other.encrypt_batch(&values, rng);
        pb::vertical_payload::Body::Woe(pb::WoePayload {
            body: Some(pb::woe_payload::Body::Sums(pb::WoeSums {
                total: 1,
                features: vec![pb::WoeFeatureSums {
                    feature: 0,
                    categorical: false,
                    counts,
                    sums: fedcredit_crypto::elgamal::write_ciphertexts(&cts),
                    name: "x".into(),
                }],
            })),
        })
    };
    let tax = PartyId("tax".into());
    // Counts that do not cover the aligned rows.
    let e =
        role.payload(&mut ctx, &tax, sums(vec![10, 10], vec![1, 1], &mut rng), &mut rng, &mut so);
    assert!(e.unwrap_err().0.contains("every aligned row"));
    // Sums under another key do not decrypt to counts within their bins.
    let e =
        role.payload(&mut ctx, &tax, sums(vec![20, 20], vec![1, 1], &mut rng), &mut rng, &mut so);
    assert!(e.unwrap_err().0.contains("does not decrypt"), "refused");
}

#[test]
fn the_spec_is_checked() {
    let bad = |extra: &str| {
        JobSpec::from_toml(&format!(
            "parties = [\"a\", \"b\"]\n[data]\nid = \"id\"\nlabel = \"y\"\n[model]\nkind = \"woe\"\n{extra}\n[vertical]\nlabel_holder = \"a\"\n"
        ))
        .is_err()
    };
    assert!(!bad(""));
    assert!(bad("bins = 1"));
    assert!(bad("min_iv = -1.0"));
    assert!(bad("min_bin_fraction = 0.5"));
    assert!(bad("method = \"fancy\""));
}

/// A feature holder's bin of fewer than `MIN_WOE_ROWS` rows (here the missing bin of a column
/// with 3 empty cells) comes back with WOE 0: with its own counts the holder would otherwise
/// read those rows' labels off the WOE. Larger bins come back as the centralized binner has
/// them, and the IV stays the centralized one.
#[test]
fn a_bin_of_a_few_rows_goes_back_without_evidence() {
    use super::label::MIN_WOE_ROWS;
    let (spec, mut parties) = super::local::bench_job(600, 2, 4).unwrap();
    let holder = parties.iter_mut().find(|p| p.table.label.is_none()).unwrap();
    let mut col = holder.table.features.values.column_mut(0);
    col.mapv_inplace(|v| if v.is_nan() { 0.5 } else { v });
    for r in [3usize, 50, 400] {
        col[r] = f64::NAN;
    }
    let holder_name = holder.name.clone();
    let got = run(&JobId("j".into()), &spec, parties, 5).unwrap();
    let kept = &got.kept[&holder_name].features[0];
    let missing = kept.woe.len() - 1;
    assert_eq!(kept.woe[missing], 0.0, "the 3-row missing bin's WOE went back");
    const { assert!(MIN_WOE_ROWS > 3.0) };
    assert!(kept.woe[..missing].iter().all(|w| *w != 0.0), "{:?}", kept.woe);
}
