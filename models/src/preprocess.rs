//! Encoding of [`Features`] into a clean dense matrix for linear models, and the
//! encoder + logistic-regression pipeline.
//!
//! Per numeric column: mean imputation of missing values (`NaN`), a 0/1 missing-indicator column
//! when the training column had any missing value (the "missing-indicator method", Little &
//! Rubin, *Statistical Analysis with Missing Data*, §3.4; scikit-learn's
//! `SimpleImputer(add_indicator=True)`), then optional z-scoring with the population standard
//! deviation of the imputed column (as `StandardScaler` after `SimpleImputer`); constant columns
//! get scale 1. Per categorical column: one-hot (dummy) encoding over the levels seen at fit, plus
//! a missing column when a missing value was seen; levels not seen at fit encode as all zeros.
//! Categorical levels are matched by name, so a scoring matrix may list its levels in another
//! order or add new ones.

use std::collections::HashMap;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::logistic::{self, LogisticModel, LogisticParams};
use crate::{Dataset, FeatureKind, FeatureSpec, Features, ModelError};

/// Options of [`LinearEncoder::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderParams {
    /// Z-score numeric columns (after imputation). Indicator and one-hot columns stay 0/1.
    pub standardize: bool,
}

impl Default for EncoderParams {
    fn default() -> Self {
        Self { standardize: true }
    }
}

/// How one input column becomes output columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ColumnEncoder {
    /// `(v − center) / scale` with `v = fill` when missing, plus an optional indicator column.
    Numeric { fill: f64, center: f64, scale: f64, indicator: bool },
    /// One output per level seen at fit (in the training spec's order), plus an optional
    /// missing column.
    Categorical { levels: Vec<String>, missing: bool },
}

impl ColumnEncoder {
    fn width(&self) -> usize {
        match self {
            Self::Numeric { indicator, .. } => 1 + usize::from(*indicator),
            Self::Categorical { levels, missing } => levels.len() + usize::from(*missing),
        }
    }
}

/// Imputes, indicates, standardises and one-hot encodes a [`Features`] matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearEncoder {
    /// Input column names in order.
    names: Vec<String>,
    /// One encoder per input column.
    columns: Vec<ColumnEncoder>,
}

/// One column of a fitted [`LinearEncoder`], as it travels to the parties of a federated job
/// (each party builds the same encoder from these and encodes its own rows).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnEncoding {
    /// `(v − center) / scale`, `v = fill` when missing, plus a missing indicator if `indicator`.
    Numeric {
        /// Imputed value.
        fill: f64,
        /// Subtracted before scaling.
        center: f64,
        /// Divisor (positive).
        scale: f64,
        /// Adds a 0/1 missing-indicator column.
        indicator: bool,
    },
    /// One output per level, plus a missing column if `missing`.
    Categorical {
        /// Levels with a column, in order.
        levels: Vec<String>,
        /// Adds a missing column.
        missing: bool,
    },
}

/// Reads a categorical cell as a level index, rejecting anything but `0, 1, …, n_levels − 1`.
fn level_index(v: f64, n_levels: usize, name: &str, row: usize) -> Result<usize, ModelError> {
    if v >= 0.0 && v.fract() == 0.0 && v < n_levels as f64 {
        Ok(v as usize)
    } else {
        Err(ModelError::InvalidInput(format!(
            "categorical column `{name}` at row {row} holds {v}, not a level index below {n_levels}"
        )))
    }
}

fn infinite_error(name: &str, row: usize, v: f64) -> ModelError {
    ModelError::InvalidInput(format!(
        "numeric column `{name}` at row {row} is {v}; only finite values or NaN (missing) are allowed"
    ))
}

/// Per-column statistics from which [`LinearEncoder::from_stats`] builds the same encoder as
/// [`LinearEncoder::fit`] (for example sums pooled across parties).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnStats {
    /// A numeric column.
    Numeric {
        /// Non-missing cells.
        count: f64,
        /// Sum of the non-missing cells.
        sum: f64,
        /// `Σ (v − sum/count)²` over the non-missing cells (0 when `count` is 0).
        sum_sq_dev: f64,
    },
    /// A categorical column.
    Categorical {
        /// Cells per level index.
        level_counts: Vec<f64>,
        /// Missing cells.
        missing: f64,
    },
}

impl LinearEncoder {
    /// The fitted columns: name and encoding, in input order.
    pub fn encodings(&self) -> Vec<(String, ColumnEncoding)> {
        self.names
            .iter()
            .zip(&self.columns)
            .map(|(n, c)| {
                let e = match c {
                    ColumnEncoder::Numeric { fill, center, scale, indicator } => {
                        ColumnEncoding::Numeric {
                            fill: *fill,
                            center: *center,
                            scale: *scale,
                            indicator: *indicator,
                        }
                    }
                    ColumnEncoder::Categorical { levels, missing } => {
                        ColumnEncoding::Categorical { levels: levels.clone(), missing: *missing }
                    }
                };
                (n.clone(), e)
            })
            .collect()
    }

    /// The encoder with these columns (as [`LinearEncoder::encodings`] lists them).
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] for a non-finite number or a scale that is not positive,
    /// naming the column.
    pub fn from_encodings(columns: Vec<(String, ColumnEncoding)>) -> Result<Self, ModelError> {
        let mut names = Vec::with_capacity(columns.len());
        let mut encs = Vec::with_capacity(columns.len());
        for (name, e) in columns {
            encs.push(match e {
                ColumnEncoding::Numeric { fill, center, scale, indicator } => {
                    if !(fill.is_finite() && center.is_finite() && scale.is_finite() && scale > 0.0)
                    {
                        return Err(ModelError::InvalidInput(format!(
                            "column `{name}`: encoding needs finite numbers and a positive scale"
                        )));
                    }
                    ColumnEncoder::Numeric { fill, center, scale, indicator }
                }
                ColumnEncoding::Categorical { levels, missing } => {
                    ColumnEncoder::Categorical { levels, missing }
                }
            });
            names.push(name);
        }
        Ok(Self { names, columns: encs })
    }

    /// The encoder [`LinearEncoder::fit`] would learn from a matrix with columns `specs`,
    /// `n_rows` rows and the column statistics `stats` (mean, population scale of the imputed
    /// column, indicator when any cell is missing, one-hot over the levels seen).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when `stats` and `specs` disagree in length or kind;
    /// [`ModelError::InvalidInput`] for zero rows or a non-finite statistic, naming the column.
    pub fn from_stats(
        specs: &[FeatureSpec],
        stats: &[ColumnStats],
        n_rows: f64,
        params: &EncoderParams,
    ) -> Result<Self, ModelError> {
        if specs.len() != stats.len() {
            return Err(ModelError::Shape(format!(
                "{} columns but {} column statistics",
                specs.len(),
                stats.len()
            )));
        }
        if !(n_rows.is_finite() && n_rows >= 1.0) {
            return Err(ModelError::InvalidInput(format!(
                "cannot build an encoder for {n_rows} rows"
            )));
        }
        let mut columns = Vec::with_capacity(specs.len());
        for (spec, st) in specs.iter().zip(stats) {
            let enc = match (&spec.kind, st) {
                (FeatureKind::Numeric, ColumnStats::Numeric { count, sum, sum_sq_dev }) => {
                    if !(count.is_finite() && sum.is_finite() && sum_sq_dev.is_finite()) {
                        return Err(ModelError::InvalidInput(format!(
                            "column `{}`: statistics are not finite",
                            spec.name
                        )));
                    }
                    let mean = if *count > 0.0 { sum / count } else { 0.0 };
                    let (center, scale) = if params.standardize {
                        let std = (sum_sq_dev.max(0.0) / n_rows).sqrt();
                        let tiny = 10.0 * f64::EPSILON * mean.abs().max(1.0);
                        (mean, if std > tiny { std } else { 1.0 })
                    } else {
                        (0.0, 1.0)
                    };
                    ColumnEncoder::Numeric { fill: mean, center, scale, indicator: *count < n_rows }
                }
                (
                    FeatureKind::Categorical { levels },
                    ColumnStats::Categorical { level_counts, missing },
                ) if level_counts.len() == levels.len() => {
                    let levels = levels
                        .iter()
                        .zip(level_counts)
                        .filter(|(_, c)| **c > 0.0)
                        .map(|(l, _)| l.clone())
                        .collect();
                    ColumnEncoder::Categorical { levels, missing: *missing > 0.0 }
                }
                _ => {
                    return Err(ModelError::Shape(format!(
                        "column `{}`: statistics do not match its kind",
                        spec.name
                    )));
                }
            };
            columns.push(enc);
        }
        Ok(Self { names: specs.iter().map(|s| s.name.clone()).collect(), columns })
    }

    /// Learns imputation values, scales and levels from `features`.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] on an empty matrix, an infinite numeric cell or a categorical
    /// cell that is not a valid level index (naming column and row).
    pub fn fit(features: &Features, params: &EncoderParams) -> Result<Self, ModelError> {
        let n = features.n_rows();
        if n == 0 {
            return Err(ModelError::InvalidInput("cannot fit an encoder on zero rows".into()));
        }
        let mut columns = Vec::with_capacity(features.n_features());
        for (j, spec) in features.specs.iter().enumerate() {
            let col = features.values.column(j);
            let enc = match &spec.kind {
                FeatureKind::Numeric => {
                    let (mut count, mut sum) = (0usize, 0.0);
                    for (i, &v) in col.iter().enumerate() {
                        if v.is_nan() {
                            continue;
                        }
                        if !v.is_finite() {
                            return Err(infinite_error(&spec.name, i, v));
                        }
                        count += 1;
                        sum += v;
                    }
                    let mean = if count > 0 { sum / count as f64 } else { 0.0 };
                    let (center, scale) = if params.standardize {
                        // Population variance of the imputed column: imputed cells add 0.
                        let ss: f64 = col
                            .iter()
                            .filter(|v| !v.is_nan())
                            .map(|v| (v - mean) * (v - mean))
                            .sum();
                        let std = (ss / n as f64).sqrt();
                        let tiny = 10.0 * f64::EPSILON * mean.abs().max(1.0);
                        (mean, if std > tiny { std } else { 1.0 })
                    } else {
                        (0.0, 1.0)
                    };
                    ColumnEncoder::Numeric { fill: mean, center, scale, indicator: count < n }
                }
                FeatureKind::Categorical { levels } => {
                    let mut seen = vec![false; levels.len()];
                    let mut missing = false;
                    for (i, &v) in col.iter().enumerate() {
                        if v.is_nan() {
                            missing = true;
                        } else {
                            seen[level_index(v, levels.len(), &spec.name, i)?] = true;
                        }
                    }
                    let levels = levels
                        .iter()
                        .zip(&seen)
                        .filter(|(_, s)| **s)
                        .map(|(l, _)| l.clone())
                        .collect();
                    ColumnEncoder::Categorical { levels, missing }
                }
            };
            columns.push(enc);
        }
        Ok(Self { names: features.specs.iter().map(|s| s.name.clone()).collect(), columns })
    }

    /// Number of output columns.
    pub fn n_outputs(&self) -> usize {
        self.columns.iter().map(ColumnEncoder::width).sum()
    }

    /// Input column names expected by [`transform`](Self::transform), in order.
    pub fn input_names(&self) -> &[String] {
        &self.names
    }

    /// Output column names: `age`, `age__missing`, `sector=retail`, `sector__missing`.
    pub fn output_names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.n_outputs());
        for (name, enc) in self.names.iter().zip(&self.columns) {
            match enc {
                ColumnEncoder::Numeric { indicator, .. } => {
                    out.push(name.clone());
                    if *indicator {
                        out.push(format!("{name}__missing"));
                    }
                }
                ColumnEncoder::Categorical { levels, missing } => {
                    out.extend(levels.iter().map(|l| format!("{name}={l}")));
                    if *missing {
                        out.push(format!("{name}__missing"));
                    }
                }
            }
        }
        out
    }

    /// Encodes `features` (same column names, in the same order, as at fit).
    ///
    /// # Errors
    /// [`ModelError::Shape`] on a different column count, [`ModelError::InvalidInput`] on a
    /// column whose name or kind differs from the fitted one, an infinite numeric cell or an
    /// invalid level index.
    pub fn transform(&self, features: &Features) -> Result<Array2<f64>, ModelError> {
        if features.n_features() != self.names.len() {
            return Err(ModelError::Shape(format!(
                "encoder was fitted on {} columns, got {}",
                self.names.len(),
                features.n_features()
            )));
        }
        let n = features.n_rows();
        let mut out = Array2::zeros((n, self.n_outputs()));
        let mut offset = 0;
        for (j, ((name, enc), spec)) in
            self.names.iter().zip(&self.columns).zip(&features.specs).enumerate()
        {
            if spec.name != *name {
                return Err(ModelError::InvalidInput(format!(
                    "column {j} is `{}` but the encoder was fitted with `{name}` there",
                    spec.name
                )));
            }
            let col = features.values.column(j);
            match (enc, &spec.kind) {
                (
                    ColumnEncoder::Numeric { fill, center, scale, indicator },
                    FeatureKind::Numeric,
                ) => {
                    for (i, &v) in col.iter().enumerate() {
                        let filled = if v.is_nan() {
                            if *indicator {
                                out[[i, offset + 1]] = 1.0;
                            }
                            *fill
                        } else if v.is_finite() {
                            v
                        } else {
                            return Err(infinite_error(name, i, v));
                        };
                        out[[i, offset]] = (filled - center) / scale;
                    }
                }
                (
                    ColumnEncoder::Categorical { levels, missing },
                    FeatureKind::Categorical { levels: own },
                ) => {
                    let position: HashMap<&str, usize> =
                        levels.iter().enumerate().map(|(k, l)| (l.as_str(), k)).collect();
                    // Output position of each of this matrix's level indices (None = unseen at fit).
                    let map: Vec<Option<usize>> =
                        own.iter().map(|l| position.get(l.as_str()).copied()).collect();
                    for (i, &v) in col.iter().enumerate() {
                        if v.is_nan() {
                            if *missing {
                                out[[i, offset + levels.len()]] = 1.0;
                            }
                        } else if let Some(k) = map[level_index(v, own.len(), name, i)?] {
                            out[[i, offset + k]] = 1.0;
                        }
                    }
                }
                _ => {
                    return Err(ModelError::InvalidInput(format!(
                        "column `{name}` changed kind since the encoder was fitted"
                    )));
                }
            }
            offset += enc.width();
        }
        Ok(out)
    }

    /// Output column specs (all numeric), for wrapping the encoded matrix back into [`Features`].
    pub fn output_specs(&self) -> Vec<FeatureSpec> {
        self.output_names().into_iter().map(FeatureSpec::numeric).collect()
    }
}

/// Logistic regression on encoded features: the `logistic` model of the accuracy runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticPipeline {
    /// The fitted encoder.
    pub encoder: LinearEncoder,
    /// The model over the encoder's outputs.
    pub model: LogisticModel,
}

impl LogisticPipeline {
    /// Fits the encoder on `data.features`, then the logistic regression on the encoded matrix.
    ///
    /// # Errors
    /// Any error of [`LinearEncoder::fit`] or [`logistic::fit`].
    pub fn fit(
        data: &Dataset,
        encoder: &EncoderParams,
        params: &LogisticParams,
    ) -> Result<Self, ModelError> {
        let enc = LinearEncoder::fit(&data.features, encoder)?;
        let x = enc.transform(&data.features)?;
        let model = logistic::fit(x.view(), data.label.view(), None, params)?;
        Ok(Self { encoder: enc, model })
    }

    /// `P(default)` per row.
    ///
    /// # Errors
    /// Any error of [`LinearEncoder::transform`].
    pub fn predict_proba(&self, features: &Features) -> Result<Array1<f64>, ModelError> {
        let x = self.encoder.transform(features)?;
        Ok(self.model.predict_proba(x.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logistic::{Penalty, Solver};
    use ndarray::array;

    const NAN: f64 = f64::NAN;

    fn levels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn sample() -> Features {
        Features::new(
            vec![
                FeatureSpec::numeric("age"),
                FeatureSpec::numeric("income"),
                FeatureSpec::categorical("sector", levels(&["retail", "farm", "tech"])),
                FeatureSpec::numeric("flat"),
            ],
            array![
                [20.0, 1.0, 0.0, 7.0],
                [NAN, 2.0, 2.0, 7.0],
                [40.0, 3.0, NAN, 7.0],
                [30.0, 6.0, 0.0, 7.0]
            ],
        )
        .unwrap()
    }

    #[test]
    fn imputes_indicates_standardizes_and_one_hots() {
        let f = sample();
        let enc = LinearEncoder::fit(&f, &EncoderParams::default()).unwrap();
        // "farm" never occurs at fit: no column for it. `flat` is constant: scale 1.
        assert_eq!(
            enc.output_names(),
            vec![
                "age",
                "age__missing",
                "income",
                "sector=retail",
                "sector=tech",
                "sector__missing",
                "flat"
            ]
        );
        let x = enc.transform(&f).unwrap();
        assert_eq!(x.dim(), (4, 7));
        // age: observed mean 30, imputed column [20, 30, 40, 30], population std sqrt(50).
        let s = 50.0_f64.sqrt();
        let age: Vec<f64> = x.column(0).to_vec();
        let expected = [-10.0 / s, 0.0, 10.0 / s, 0.0];
        for (a, b) in age.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{age:?}");
        }
        assert_eq!(x.column(1).to_vec(), vec![0.0, 1.0, 0.0, 0.0]);
        // income: mean 3, population std sqrt(14/4).
        let s = 3.5_f64.sqrt();
        assert!((x[[3, 2]] - 3.0 / s).abs() < 1e-12);
        assert!(x.column(2).sum().abs() < 1e-12);
        // sector one-hot + missing.
        assert_eq!(x.column(3).to_vec(), vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(x.column(4).to_vec(), vec![0.0, 1.0, 0.0, 0.0]);
        assert_eq!(x.column(5).to_vec(), vec![0.0, 0.0, 1.0, 0.0]);
        // constant column: centred, scale 1.
        assert_eq!(x.column(6).to_vec(), vec![0.0; 4]);
    }

    #[test]
    fn unseen_levels_new_missing_and_reordered_levels() {
        let enc = LinearEncoder::fit(&sample(), &EncoderParams { standardize: false }).unwrap();
        // Scoring matrix lists its levels in another order and adds a new one; `income` has a
        // NaN that fit never saw (imputed, no indicator column).
        let score = Features::new(
            vec![
                FeatureSpec::numeric("age"),
                FeatureSpec::numeric("income"),
                FeatureSpec::categorical("sector", levels(&["tech", "mining", "retail", "farm"])),
                FeatureSpec::numeric("flat"),
            ],
            array![
                [NAN, NAN, 0.0, 1.0],
                [50.0, 2.5, 1.0, 2.0],
                [1.0, 1.0, 2.0, 3.0],
                [1.0, 1.0, 3.0, 3.0]
            ],
        )
        .unwrap();
        let x = enc.transform(&score).unwrap();
        assert_eq!(x.row(0).to_vec(), vec![30.0, 1.0, 3.0, 0.0, 1.0, 0.0, 1.0]);
        // "mining" (unseen) and "farm" (never seen at fit) encode as all zeros.
        assert_eq!(x.row(1).to_vec(), vec![50.0, 0.0, 2.5, 0.0, 0.0, 0.0, 2.0]);
        assert_eq!(x.row(2).to_vec(), vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0]);
        assert_eq!(x.row(3).to_vec(), vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0]);
    }

    #[test]
    fn mismatched_columns_and_bad_cells_are_errors_naming_the_column() {
        let f = sample();
        let enc = LinearEncoder::fit(&f, &EncoderParams::default()).unwrap();
        let mut renamed = f.clone();
        renamed.specs[1].name = "salary".into();
        let err = enc.transform(&renamed).unwrap_err().to_string();
        assert!(err.contains("salary") && err.contains("income"), "{err}");
        let mut rekinded = f.clone();
        rekinded.specs[2] = FeatureSpec::numeric("sector");
        let err = enc.transform(&rekinded).unwrap_err().to_string();
        assert!(err.contains("sector"), "{err}");
        assert!(matches!(enc.transform(&f.select_columns(&[0, 1])), Err(ModelError::Shape(_))));

        let mut inf = f.clone();
        inf.values[[2, 1]] = f64::INFINITY;
        let err = LinearEncoder::fit(&inf, &EncoderParams::default()).unwrap_err().to_string();
        assert!(err.contains("income") && err.contains("row 2"), "{err}");
        assert!(enc.transform(&inf).is_err());
        for bad in [3.0, 1.5, -1.0] {
            let mut code = f.clone();
            code.values[[1, 2]] = bad;
            let err = LinearEncoder::fit(&code, &EncoderParams::default()).unwrap_err().to_string();
            assert!(err.contains("sector") && err.contains("row 1"), "{err}");
            assert!(enc.transform(&code).is_err());
        }
        let empty = f.select_rows(&[]);
        assert!(LinearEncoder::fit(&empty, &EncoderParams::default()).is_err());
        // An all-missing column imputes 0 and keeps its indicator.
        let mut all_nan = f.clone();
        all_nan.values.column_mut(1).fill(NAN);
        let e = LinearEncoder::fit(&all_nan, &EncoderParams::default()).unwrap();
        let x = e.transform(&all_nan).unwrap();
        assert_eq!(e.output_names()[2..4], ["income".to_string(), "income__missing".to_string()]);
        assert_eq!(x.column(2).to_vec(), vec![0.0; 4]);
        assert_eq!(x.column(3).to_vec(), vec![1.0; 4]);
    }

    #[test]
    fn pipeline_fits_predicts_and_round_trips() {
        // 40 rows: default risk rises with `util`, `sector=b` is riskier, some cells missing.
        let n = 40;
        let mut values = Array2::zeros((n, 2));
        let mut label = Array1::zeros(n);
        for i in 0..n {
            let util = (i % 10) as f64 / 10.0;
            values[[i, 0]] = if i % 7 == 3 { NAN } else { util };
            values[[i, 1]] = if i % 11 == 5 { NAN } else { (i % 2) as f64 };
            label[i] = if util + 0.3 * (i % 2) as f64 > 0.65 || i % 13 == 0 { 1.0 } else { 0.0 };
        }
        let features = Features::new(
            vec![
                FeatureSpec::numeric("util"),
                FeatureSpec::categorical("sector", levels(&["a", "b"])),
            ],
            values,
        )
        .unwrap();
        let data = Dataset::new(features.clone(), label).unwrap();
        let params =
            LogisticParams { penalty: Penalty::L2, solver: Solver::Auto, ..Default::default() };
        let pipe = LogisticPipeline::fit(&data, &EncoderParams::default(), &params).unwrap();
        assert_eq!(pipe.model.n_features(), pipe.encoder.n_outputs());
        let p = pipe.predict_proba(&features).unwrap();
        let x = pipe.encoder.transform(&features).unwrap();
        let direct = logistic::fit(x.view(), data.label.view(), None, &params).unwrap();
        assert_eq!(direct, pipe.model);
        assert_eq!(p, direct.predict_proba(x.view()));
        // Risk increases with utilisation.
        let util = pipe.encoder.output_names().iter().position(|n| n == "util").unwrap();
        assert!(pipe.model.coefficients[util] > 0.0);
        let json = serde_json::to_string(&pipe).unwrap();
        let back: LogisticPipeline = serde_json::from_str(&json).unwrap();
        assert_eq!(back.predict_proba(&features).unwrap(), p);
    }

    #[test]
    fn encoder_from_pooled_stats_equals_fit() {
        let f = sample();
        let enc = LinearEncoder::fit(&f, &EncoderParams::default()).unwrap();
        let mut stats = Vec::new();
        for (j, spec) in f.specs.iter().enumerate() {
            let col = f.values.column(j);
            stats.push(match &spec.kind {
                FeatureKind::Numeric => {
                    let present: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
                    let count = present.len() as f64;
                    let sum: f64 = present.iter().sum();
                    let mean = sum / count;
                    let sum_sq_dev = present.iter().map(|v| (v - mean) * (v - mean)).sum();
                    ColumnStats::Numeric { count, sum, sum_sq_dev }
                }
                FeatureKind::Categorical { levels } => {
                    let mut level_counts = vec![0.0; levels.len()];
                    let mut missing = 0.0;
                    for &v in col {
                        if v.is_nan() {
                            missing += 1.0;
                        } else {
                            level_counts[v as usize] += 1.0;
                        }
                    }
                    ColumnStats::Categorical { level_counts, missing }
                }
            });
        }
        let built =
            LinearEncoder::from_stats(&f.specs, &stats, 4.0, &EncoderParams::default()).unwrap();
        assert_eq!(built, enc);
        assert!(
            LinearEncoder::from_stats(&f.specs, &stats[..2], 4.0, &EncoderParams::default())
                .is_err()
        );
    }
}
