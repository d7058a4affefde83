//! Shared fixtures of the horizontal tests: a synthetic credit table with missing values and a
//! categorical column, split into banks.
#![allow(dead_code)]

use fedcredit_federation::PartyId;
use fedcredit_federation::job::JobSpec;
use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub fn specs() -> Vec<FeatureSpec> {
    let levels = (0..5).map(|i| format!("s{i}")).collect();
    vec![
        FeatureSpec::numeric("income"),
        FeatureSpec::numeric("age"),
        FeatureSpec::numeric("late_payments"),
        FeatureSpec::categorical("sector", levels),
        FeatureSpec::numeric("noise"),
    ]
}

/// `n` rows of a synthetic credit table with missing values and a categorical column.
pub fn table(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * 5);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let income: f64 = rng.random_range(-2.0..3.0);
        let age = f64::from(rng.random_range(20..70u32));
        let late = f64::from(rng.random_range(0..4u32));
        let sector = f64::from(rng.random_range(0..5u32));
        let noise: f64 = rng.random_range(-1.0..1.0);
        let z = -0.8 * income
            + 0.03 * (45.0 - age)
            + 0.7 * late
            + if sector == 2.0 { 0.8 } else { 0.0 };
        let p = 1.0 / (1.0 + (-z).exp());
        y.push(if rng.random::<f64>() < p { 1.0 } else { 0.0 });
        let income = if rng.random::<f64>() < 0.1 { f64::NAN } else { income };
        x.extend([income, age, late, sector, noise]);
    }
    let f = Features::new(specs(), Array2::from_shape_vec((n, 5), x).unwrap()).unwrap();
    Dataset::new(f, Array1::from(y)).unwrap()
}

pub fn party(i: usize) -> PartyId {
    PartyId(format!("bank{i}"))
}

pub fn job(model: &str) -> JobSpec {
    JobSpec::from_toml(&format!(
        r#"
name = "gbdt-test"
parties = ["bank0", "bank1", "bank2"]
[data]
id = "id"
label = "y"
[model]
{model}
"#
    ))
    .unwrap()
}

pub fn parties(sizes: &[usize], valid: bool) -> Vec<(PartyId, Dataset, Option<Dataset>)> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let v = valid.then(|| table(n / 4, 100 + i as u64));
            (party(i), table(n, 10 + i as u64), v)
        })
        .collect()
}

pub fn pooled(p: &[(PartyId, Dataset, Option<Dataset>)]) -> Dataset {
    let feats: Vec<&Features> = p.iter().map(|(_, d, _)| &d.features).collect();
    let f = Features::vstack(&feats).unwrap();
    let y: Vec<f64> = p.iter().flat_map(|(_, d, _)| d.label.iter().copied()).collect();
    Dataset::new(f, Array1::from(y)).unwrap()
}
