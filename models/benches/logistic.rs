//! Criterion benchmark of the `logistic` model (`LogisticPipeline`: encoder + L-BFGS on the
//! dense-plus-sparse design) on the generated application table of issue 7: 50,000 rows × 52
//! features, 13 text columns with up to 4,000 levels (levels seen fewer than 50 times pooled),
//! missing values; encoding included, one thread. The bar is 5 s; scikit-learn's time on the
//! same table and encoding is `timing.sklearn_logistic_fit_seconds_median` in
//! `benches/reference/applications_50k.json`.
//! Run: `cargo bench -p fedcredit-models --bench logistic`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fedcredit_models::logistic::{LogisticParams, LogisticPipeline};
use fedcredit_models::preprocess::EncoderOptions;
use fedcredit_models::testdata::{ApplicationsConfig, applications};

fn bench_fit(c: &mut Criterion) {
    let data = applications(&ApplicationsConfig::default()).expect("generator").data;
    let mut group = c.benchmark_group("logistic_fit");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("applications_50000x52_13_text", |b| {
        b.iter(|| {
            black_box(
                LogisticPipeline::fit(
                    black_box(&data),
                    &EncoderOptions::default(),
                    &LogisticParams::default(),
                )
                .expect("fit"),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench_fit);
criterion_main!(benches);
