//! Criterion benchmarks of the histogram GBDT (`fedcredit_models::gbdt`): a full 100-tree fit on
//! default_credit's horizontal files (24,000 × 23, skipped when the data folder is absent), on
//! seeded synthetic data of the same size and on the generated application table of issue 7
//! (50,000 × 52, 13 text columns with up to 4,000 levels; compare with
//! `timing.lightgbm_fit_seconds_median` in `benches/reference/applications_50k.json`), plus the
//! histogram-build and split-finding kernels.
//!
//! The fits use LightGBM-matched settings (depth 5, 255 bins, learning rate 0.1,
//! min_data_in_leaf 20, min_child_weight 1e-3, λ = 0) and include binning, as the LightGBM
//! timing they are compared with includes its `Dataset` construction.
//! Run: `cargo bench -p fedcredit-models --bench gbdt`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fedcredit_models::gbdt::{self, BinMapper, GbdtParams, Histogram};
use fedcredit_models::testdata::{ApplicationsConfig, applications};
use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/datasets/default_credit");
const HOMO_TRAIN: [&str; 3] = [
    "default_credit_homo_guest.csv",
    "default_credit_homo_host_1.csv",
    "default_credit_homo_host_2.csv",
];
const N_ROWS: usize = 24_000;
const N_FEATURES: usize = 23;

/// Reads the homo training files (`id,y,x0..x22`) with a std-only parser.
fn homo_train() -> Option<Dataset> {
    if !Path::new(DATA_DIR).is_dir() {
        eprintln!("skipping default_credit benches: {DATA_DIR} not found");
        return None;
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for file in HOMO_TRAIN {
        let text = std::fs::read_to_string(format!("{DATA_DIR}/{file}")).ok()?;
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            let mut cells = line.split(',');
            cells.next();
            y.push(cells.next()?.parse::<f64>().ok()?);
            for c in cells {
                x.push(c.parse::<f64>().ok()?);
            }
        }
    }
    let n = y.len();
    let specs = (0..N_FEATURES).map(|i| FeatureSpec::numeric(format!("x{i}"))).collect();
    let features = Features::new(specs, Array2::from_shape_vec((n, N_FEATURES), x).ok()?).ok()?;
    Dataset::new(features, Array1::from(y)).ok()
}

/// Seeded synthetic data shaped like default_credit: 12 continuous columns (about 18k distinct
/// values each), 6 repayment-status-like columns (11 levels), 5 low-cardinality columns, and a
/// logistic label with a ~22% default rate.
fn synthetic() -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut x = Array2::<f64>::zeros((N_ROWS, N_FEATURES));
    let mut y = Array1::<f64>::zeros(N_ROWS);
    for r in 0..N_ROWS {
        let mut z = -3.2;
        for f in 0..N_FEATURES {
            let v = match f {
                0..12 => {
                    let u: f64 = rng.random_range(0.0..1.0);
                    (u / (1.0 - u)).ln() + rng.random_range(-0.5..0.5)
                }
                12..18 => f64::from(rng.random_range(-2i32..9)),
                _ => f64::from(rng.random_range(0u8..4)),
            };
            x[[r, f]] = (v * 1e6).round() / 1e6;
            z += match f {
                0 => 0.3 * v,
                1 => -0.2 * v.abs(),
                12 => 0.35 * v,
                13 => 0.15 * v.max(0.0),
                18 => 0.2 * v,
                _ => 0.0,
            };
        }
        let p = 1.0 / (1.0 + (-z).exp());
        y[r] = f64::from(u8::from(rng.random_range(0.0..1.0) < p));
    }
    let specs = (0..N_FEATURES).map(|i| FeatureSpec::numeric(format!("x{i}"))).collect();
    let features = Features::new(specs, x).expect("specs match columns");
    Dataset::new(features, y).expect("labels are 0/1")
}

fn bench_fit(c: &mut Criterion) {
    let params = GbdtParams::default();
    let mut group = c.benchmark_group("gbdt_fit_100_trees");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    if let Some(data) = homo_train() {
        group.bench_function("default_credit_homo_24000x23", |b| {
            b.iter(|| black_box(gbdt::fit(black_box(&data), None, &params).expect("fit")));
        });
    }
    let data = synthetic();
    group.bench_function("synthetic_24000x23", |b| {
        b.iter(|| black_box(gbdt::fit(black_box(&data), None, &params).expect("fit")));
    });
    let apps = applications(&ApplicationsConfig::default()).expect("generator").data;
    group.bench_function("applications_50000x52_13_text", |b| {
        b.iter(|| black_box(gbdt::fit(black_box(&apps), None, &params).expect("fit")));
    });
    group.finish();
}

fn bench_kernels(c: &mut Criterion) {
    let data = homo_train().unwrap_or_else(synthetic);
    let mapper = BinMapper::fit(&data.features, 255).expect("bins");
    let binned = mapper.bin(&data.features).expect("binned");
    let n = binned.n_rows();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let grad: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let hess: Vec<f64> = (0..n).map(|_| rng.random_range(0.01..0.25)).collect();
    let features: Vec<usize> = (0..binned.n_features()).collect();
    let all_rows: Vec<u32> = (0..n as u32).collect();
    let half_rows: Vec<u32> = (0..n as u32).filter(|_| rng.random_range(0.0..1.0) < 0.5).collect();
    let mut hist = Histogram::new(&mapper.bins_per_feature()).expect("layout");

    let mut group = c.benchmark_group("gbdt_kernels");
    group.bench_function("build_histogram_all_rows_24000x23", |b| {
        b.iter(|| {
            gbdt::build_histogram(
                &binned,
                black_box(&all_rows),
                &grad,
                &hess,
                &features,
                &mut hist,
            )
            .expect("build");
            black_box(&hist);
        });
    });
    group.bench_function("build_histogram_random_half_rows", |b| {
        b.iter(|| {
            gbdt::build_histogram(
                &binned,
                black_box(&half_rows),
                &grad,
                &hess,
                &features,
                &mut hist,
            )
            .expect("build");
            black_box(&hist);
        });
    });
    gbdt::build_histogram(&binned, &all_rows, &grad, &hess, &features, &mut hist).expect("build");
    let total = hist.feature_total(0);
    let kinds = mapper.kinds();
    let split_params = GbdtParams::default().split_params();
    group.bench_function("find_best_split_root_23_features", |b| {
        b.iter(|| {
            black_box(gbdt::find_best_split(
                black_box(&hist),
                total,
                &split_params,
                &kinds,
                &features,
            ))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_fit, bench_kernels);
criterion_main!(benches);
