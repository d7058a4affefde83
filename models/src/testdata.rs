//! Seeded generators of realistic tables for tests, benchmarks and the reference script.
//!
//! [`applications`] builds a credit-application table of the shape institutions really hold:
//! tens of thousands of rows, dozens of numeric columns with missing values, and text columns
//! (cities, boroughs, postal prefixes, occupations, …) with up to a few thousand levels whose
//! frequencies follow a power law (Zipf, *Human Behavior and the Principle of Least Effort*,
//! 1949; city sizes are the classic example), so a few levels are frequent and most are rare.
//! The default label depends on a few numeric columns (linearly and not), and on the most
//! frequent levels of some text columns; the rare levels carry no signal, so a model that fits
//! every level freely learns noise there (the case rare-level pooling and LightGBM's categorical
//! regularisation are for). Everything comes from one seeded ChaCha8 stream: the same
//! configuration gives the same table on every run.
//!
//! `fedcredit data applications` writes such a table as CSV; `benches/reference/make_reference.py`
//! reads that file for the scikit-learn and LightGBM references.

use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Dataset, FeatureSpec, Features, ModelError};

/// Shape of an [`applications`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplicationsConfig {
    /// Rows (applications).
    pub rows: usize,
    /// Numeric feature columns (at least 6).
    pub numeric: usize,
    /// Text feature columns, `0..=13` (taken in a fixed order: city, borough, postal prefix, …).
    pub text: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for ApplicationsConfig {
    /// 50,000 rows × 52 features, 13 of them text: the shape of the real table in issue 7.
    fn default() -> Self {
        Self { rows: 50_000, numeric: 39, text: 13, seed: 7 }
    }
}

/// A generated table: one id per row and the labelled features.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedTable {
    /// Row ids (`A0000001`, …).
    pub ids: Vec<String>,
    /// Features and the 0/1 default label.
    pub data: Dataset,
}

/// A text column: name, number of levels, Zipf exponent, missing rate, how many of the most
/// frequent levels carry signal and the standard deviation of their effects on the log-odds.
struct TextColumn {
    name: &'static str,
    levels: usize,
    zipf: f64,
    missing: f64,
    signal_levels: usize,
    effect_sd: f64,
}

const TEXT_COLUMNS: [TextColumn; 13] = [
    TextColumn {
        name: "city",
        levels: 2500,
        zipf: 1.05,
        missing: 0.02,
        signal_levels: 40,
        effect_sd: 0.35,
    },
    TextColumn {
        name: "borough",
        levels: 4000,
        zipf: 0.9,
        missing: 0.05,
        signal_levels: 60,
        effect_sd: 0.3,
    },
    TextColumn {
        name: "postal_prefix",
        levels: 1200,
        zipf: 0.8,
        missing: 0.03,
        signal_levels: 30,
        effect_sd: 0.25,
    },
    TextColumn {
        name: "employer_sector",
        levels: 45,
        zipf: 1.0,
        missing: 0.04,
        signal_levels: 45,
        effect_sd: 0.3,
    },
    TextColumn {
        name: "occupation",
        levels: 350,
        zipf: 1.1,
        missing: 0.1,
        signal_levels: 25,
        effect_sd: 0.3,
    },
    TextColumn {
        name: "branch",
        levels: 600,
        zipf: 0.9,
        missing: 0.0,
        signal_levels: 0,
        effect_sd: 0.0,
    },
    TextColumn {
        name: "car_brand",
        levels: 80,
        zipf: 1.2,
        missing: 0.3,
        signal_levels: 10,
        effect_sd: 0.15,
    },
    TextColumn {
        name: "education",
        levels: 6,
        zipf: 0.7,
        missing: 0.01,
        signal_levels: 6,
        effect_sd: 0.3,
    },
    TextColumn {
        name: "marital_status",
        levels: 5,
        zipf: 0.9,
        missing: 0.0,
        signal_levels: 5,
        effect_sd: 0.15,
    },
    TextColumn {
        name: "housing",
        levels: 4,
        zipf: 1.0,
        missing: 0.02,
        signal_levels: 4,
        effect_sd: 0.25,
    },
    TextColumn {
        name: "channel",
        levels: 7,
        zipf: 0.8,
        missing: 0.0,
        signal_levels: 7,
        effect_sd: 0.2,
    },
    TextColumn {
        name: "product",
        levels: 9,
        zipf: 0.6,
        missing: 0.0,
        signal_levels: 9,
        effect_sd: 0.2,
    },
    TextColumn {
        name: "referrer",
        levels: 3000,
        zipf: 1.1,
        missing: 0.4,
        signal_levels: 0,
        effect_sd: 0.0,
    },
];

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Rounds to `digits` decimals, so that CSV text round-trips exactly.
fn round(v: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (v * s).round() / s
}

/// How a generic numeric column is drawn and how it moves the log-odds.
#[derive(Clone, Copy)]
enum Shape {
    Normal,
    LogNormal,
    Count,
    Uniform,
}

/// Generates an application table (see the module docs).
///
/// # Errors
/// [`ModelError::InvalidParam`] when `rows` is below 100, `numeric` below 6 or `text` above 13.
pub fn applications(cfg: &ApplicationsConfig) -> Result<GeneratedTable, ModelError> {
    if cfg.rows < 100 {
        return Err(ModelError::InvalidParam {
            name: "rows",
            reason: format!("must be at least 100, got {}", cfg.rows),
        });
    }
    if cfg.numeric < 6 {
        return Err(ModelError::InvalidParam {
            name: "numeric",
            reason: format!("must be at least 6, got {}", cfg.numeric),
        });
    }
    if cfg.text > TEXT_COLUMNS.len() {
        return Err(ModelError::InvalidParam {
            name: "text",
            reason: format!("must be at most {}, got {}", TEXT_COLUMNS.len(), cfg.text),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let n = cfg.rows;
    let d = cfg.numeric + cfg.text;

    // Text columns: level names in a shuffled order (so frequency rank is not name order),
    // cumulative Zipf weights by rank, and the effects of the frequent levels.
    struct Text {
        names: Vec<String>,
        /// Level index of each frequency rank.
        rank_level: Vec<usize>,
        cdf: Vec<f64>,
        /// Effect on the log-odds by rank (zero beyond the signal levels).
        effect: Vec<f64>,
        missing: f64,
    }
    let mut texts = Vec::with_capacity(cfg.text);
    for col in &TEXT_COLUMNS[..cfg.text] {
        let names: Vec<String> = (0..col.levels).map(|k| format!("{}_{k:04}", col.name)).collect();
        let mut rank_level: Vec<usize> = (0..col.levels).collect();
        for i in (1..rank_level.len()).rev() {
            let j = rng.random_range(0..=i);
            rank_level.swap(i, j);
        }
        let mut cdf = Vec::with_capacity(col.levels);
        let mut acc = 0.0;
        for k in 0..col.levels {
            acc += 1.0 / ((k + 1) as f64).powf(col.zipf);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        let effect = (0..col.levels)
            .map(|k| if k < col.signal_levels { col.effect_sd * normal(&mut rng) } else { 0.0 })
            .collect();
        texts.push(Text { names, rank_level, cdf, effect, missing: col.missing });
    }

    // Generic numeric columns beyond the six named ones: shape, missing rate, weight.
    let generic: Vec<(Shape, f64, f64)> = (6..cfg.numeric)
        .map(|j| {
            let shape = [Shape::Normal, Shape::LogNormal, Shape::Count, Shape::Uniform][j % 4];
            let missing = [0.0, 0.05, 0.0, 0.2, 0.1, 0.0, 0.3][j % 7];
            // Every third generic column carries a weak signal, the rest is noise.
            let weight = if j % 3 == 0 { 0.12 * if j % 2 == 0 { 1.0 } else { -1.0 } } else { 0.0 };
            (shape, missing, weight)
        })
        .collect();

    let mut specs = Vec::with_capacity(d);
    for name in ["ext_score_1", "ext_score_2", "ext_score_3", "age", "income", "loan_amount"] {
        specs.push(FeatureSpec::numeric(name));
    }
    for j in 6..cfg.numeric {
        specs.push(FeatureSpec::numeric(format!("x{j:02}")));
    }
    for (col, t) in TEXT_COLUMNS.iter().zip(&texts) {
        specs.push(FeatureSpec::categorical(col.name, t.names.clone()));
    }

    let mut x = Array2::<f64>::from_elem((n, d), f64::NAN);
    let mut y = Array1::<f64>::zeros(n);
    let mut ids = Vec::with_capacity(n);
    for r in 0..n {
        ids.push(format!("A{:07}", r + 1));
        // A latent "financial health" factor ties several columns together.
        let health = normal(&mut rng);
        let mut z = -2.75;
        // External scores: strong, monotone signal; missing often (as bureau scores are).
        for (j, miss) in [0.15, 0.35, 0.5].into_iter().enumerate() {
            let s = 1.0 / (1.0 + (-(0.8 * health + 0.9 * normal(&mut rng))).exp());
            z -= 1.1 * (s - 0.5);
            if rng.random::<f64>() >= miss {
                x[[r, j]] = round(s, 4);
            }
        }
        // Age: U-shaped risk, youngest and oldest riskier.
        let age = f64::from(rng.random_range(21u32..70));
        z += 0.0012 * (age - 47.0) * (age - 47.0) - 0.25;
        x[[r, 3]] = age;
        // Income and loan amount: log-normal; the ratio matters, not each alone.
        let income = (10.8 + 0.25 * health + 0.55 * normal(&mut rng)).exp();
        let loan = (11.5 + 0.6 * normal(&mut rng)).exp();
        z += 0.45 * (loan / income).ln().clamp(-3.0, 3.0);
        x[[r, 4]] = if rng.random::<f64>() < 0.08 { f64::NAN } else { round(income, 2) };
        x[[r, 5]] = round(loan, 2);
        for (k, &(shape, miss, weight)) in generic.iter().enumerate() {
            let e = 0.5 * health + normal(&mut rng);
            let (value, standard) = match shape {
                Shape::Normal => (round(e * 10.0 + 50.0, 3), e),
                Shape::LogNormal => (round((e * 0.8 + 7.0).exp(), 2), e),
                Shape::Count => {
                    let c = ((e + 1.5).max(0.0) * 1.5).floor();
                    (c, (c - 2.0) / 1.5)
                }
                Shape::Uniform => {
                    let u = 1.0 / (1.0 + (-1.7 * e).exp());
                    (round(u, 4), (u - 0.5) * 3.5)
                }
            };
            z += weight * standard;
            if rng.random::<f64>() >= miss {
                x[[r, 6 + k]] = value;
            }
        }
        for (k, t) in texts.iter().enumerate() {
            let u: f64 = rng.random();
            let rank = t.cdf.partition_point(|&c| c < u).min(t.cdf.len() - 1);
            z += t.effect[rank];
            if rng.random::<f64>() >= t.missing {
                x[[r, cfg.numeric + k]] = t.rank_level[rank] as f64;
            }
        }
        z += 0.3 * normal(&mut rng);
        let p = 1.0 / (1.0 + (-z).exp());
        y[r] = f64::from(u8::from(rng.random::<f64>() < p));
    }
    let data = Dataset::new(Features::new(specs, x)?, y)?;
    Ok(GeneratedTable { ids, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeatureKind;

    #[test]
    fn shape_levels_missing_values_and_label_rate() {
        let cfg = ApplicationsConfig { rows: 20_000, numeric: 10, text: 13, seed: 3 };
        let t = applications(&cfg).unwrap();
        let f = &t.data.features;
        assert_eq!((f.n_rows(), f.n_features()), (20_000, 23));
        assert_eq!(t.ids[0], "A0000001");
        let rate = t.data.label.mean().unwrap();
        assert!((0.04..0.2).contains(&rate), "default rate {rate}");
        // The city column: thousands of levels, a power law, a few percent missing.
        let city = f.specs.iter().position(|s| s.name == "city").unwrap();
        let FeatureKind::Categorical { levels } = &f.specs[city].kind else { panic!() };
        let mut counts = vec![0usize; levels.len()];
        let mut missing = 0;
        for &v in f.values.column(city) {
            if v.is_nan() {
                missing += 1;
            } else {
                counts[v as usize] += 1;
            }
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let seen = counts.iter().filter(|&&c| c > 0).count();
        assert!(seen > 1500, "{seen} cities seen");
        assert!(counts[0] > 1000 && counts[500] < 10, "{} / {}", counts[0], counts[500]);
        assert!((200..700).contains(&missing), "{missing} missing");
        // Numeric columns with missing values.
        assert!(f.values.column(2).iter().filter(|v| v.is_nan()).count() > 8000);
        // Same seed, same table; another seed, another table.
        let again = applications(&cfg).unwrap();
        let bits = |t: &GeneratedTable| t.data.features.values.mapv(f64::to_bits);
        assert_eq!(
            (bits(&again), &again.data.label, &again.ids),
            (bits(&t), &t.data.label, &t.ids)
        );
        let other = applications(&ApplicationsConfig { seed: 4, ..cfg }).unwrap();
        assert_ne!(other.data.label, t.data.label);
    }

    #[test]
    fn bad_shapes_are_named() {
        for (cfg, name) in [
            (ApplicationsConfig { rows: 10, ..Default::default() }, "rows"),
            (ApplicationsConfig { numeric: 2, ..Default::default() }, "numeric"),
            (ApplicationsConfig { text: 14, ..Default::default() }, "text"),
        ] {
            match applications(&cfg) {
                Err(ModelError::InvalidParam { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
