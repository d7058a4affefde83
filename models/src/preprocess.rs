//! Encoding of [`Features`] for linear models, and the encoder + logistic-regression pipeline.
//!
//! Per numeric column: mean imputation of missing values (`NaN`), a 0/1 missing-indicator column
//! when the training column had any missing value (the "missing-indicator method", Little &
//! Rubin, *Statistical Analysis with Missing Data*, §3.4; scikit-learn's
//! `SimpleImputer(add_indicator=True)`), then optional z-scoring with the population standard
//! deviation of the imputed column (as `StandardScaler` after `SimpleImputer`); constant columns
//! get scale 1.
//!
//! Per categorical column: one-hot (dummy) encoding. Levels seen at least `min_frequency` times
//! at fit get a column each; the levels seen fewer times share one `__other` column (present
//! only when there are such levels), which also takes levels never seen at fit when scoring;
//! without an `__other` column unseen levels encode as all zeros. This is scikit-learn's
//! `OneHotEncoder(min_frequency=m, handle_unknown="infrequent_if_exist")` (Micci-Barreca 2001
//! discusses why rare levels of high-cardinality attributes need pooling). A `__missing` column
//! follows when a missing value was seen at fit. Levels are matched by name, so a scoring
//! matrix may list its levels in another order or add new ones.
//!
//! The encoder builds the same way from pooled counts and moments
//! ([`LinearEncoder::from_stats`]), so a horizontal federation gets exactly the centralized
//! encoder; a vertical party encodes its own columns with it.
//!
//! [`LinearEncoder::transform`] returns the dense matrix in output-column order;
//! [`LinearEncoder::transform_design`] returns the same columns as a dense block (numeric columns
//! and indicators) beside a sparse one-hot block ([`crate::sparse::CsrMatrix`]), which is what
//! [`LogisticPipeline`] fits on: a text column with thousands of levels then costs one non-zero
//! per row in every solver iteration.

use std::collections::HashMap;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::logistic::{self, LogisticModel, LogisticParams};
use crate::progress::{FitProgress, no_progress};
use crate::sparse::{CsrMatrix, Design};
use crate::{Dataset, FeatureKind, FeatureSpec, Features, ModelError};

/// Default of [`EncoderOptions::min_frequency`]: levels seen fewer than 50 times at fit are
/// pooled (the setting of the scikit-learn reference, `OneHotEncoder(min_frequency=50)`).
pub const DEFAULT_MIN_FREQUENCY: usize = 50;

/// The numeric options of the encoder. Converts into [`EncoderOptions`] with the default
/// rare-level pooling; kept because federated job specs build it field by field. Every encoder
/// function takes either type.
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

/// Options of [`LinearEncoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderOptions {
    /// Z-score numeric columns (after imputation). Indicator and one-hot columns stay 0/1.
    pub standardize: bool,
    /// Categorical levels seen fewer than this many times at fit share one `__other` column;
    /// `0` and `1` keep a column for every level seen. Default [`DEFAULT_MIN_FREQUENCY`].
    pub min_frequency: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self { standardize: true, min_frequency: DEFAULT_MIN_FREQUENCY }
    }
}

impl From<EncoderParams> for EncoderOptions {
    fn from(p: EncoderParams) -> Self {
        Self { standardize: p.standardize, ..Self::default() }
    }
}

/// How one input column becomes output columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ColumnEncoder {
    /// `(v − center) / scale` with `v = fill` when missing, plus an optional indicator column.
    Numeric { fill: f64, center: f64, scale: f64, indicator: bool },
    /// One output per frequent level (in the training spec's order), then an optional
    /// `__other` column for the rare and unseen levels, then an optional missing column.
    /// (`other` is absent from artifacts written before pooling existed: no pooling.)
    Categorical {
        levels: Vec<String>,
        missing: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        other: bool,
    },
}

impl ColumnEncoder {
    fn width(&self) -> usize {
        match self {
            Self::Numeric { indicator, .. } => 1 + usize::from(*indicator),
            Self::Categorical { levels, missing, other } => {
                levels.len() + usize::from(*other) + usize::from(*missing)
            }
        }
    }

    /// The categorical encoder from per-level counts at fit (`counts[k]` for `levels[k]`).
    fn categorical(levels: &[String], counts: &[f64], missing: f64, min_frequency: usize) -> Self {
        let min = min_frequency.max(1) as f64;
        let kept =
            levels.iter().zip(counts).filter(|(_, c)| **c >= min).map(|(l, _)| l.clone()).collect();
        let other = counts.iter().any(|&c| c > 0.0 && c < min);
        Self::Categorical { levels: kept, missing: missing > 0.0, other }
    }
}

/// One encoded cell, as [`LinearEncoder::encode`] reports it.
enum Encoded {
    /// A numeric column's value after imputation and scaling; `missing` when it was imputed.
    Numeric { value: f64, missing: bool },
    /// A categorical cell setting the column's `k`-th output.
    OneHot(usize),
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
    /// One output per level, then one for the pooled rare and unseen levels if `other`,
    /// then a missing column if `missing`.
    Categorical {
        /// Levels with a column, in order.
        levels: Vec<String>,
        /// Adds a missing column.
        missing: bool,
        /// Adds the pooled `__other` column (rare at fit, or unseen).
        other: bool,
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

/// The encoded matrix as a dense block beside a sparse one-hot block
/// ([`LinearEncoder::transform_design`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedDesign {
    /// The numeric columns (imputed, scaled), in input order.
    pub dense: Array2<f64>,
    /// The 0/1 columns: the numeric columns' missing indicators, then the one-hot columns of
    /// every categorical column (at most one entry per categorical column and row).
    pub sparse: CsrMatrix,
    /// For each design column (dense block, then sparse block), its position in
    /// [`LinearEncoder::output_names`].
    pub output_index: Vec<usize>,
}

impl EncodedDesign {
    /// The solver's view of the design.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the blocks have different row counts.
    pub fn design(&self) -> Result<Design<'_>, ModelError> {
        Design::new(self.dense.view(), &self.sparse)
    }

    /// Coefficients in design order rearranged into output order.
    ///
    /// # Panics
    /// When `design_coef` does not have one entry per design column.
    pub fn to_output_order(&self, design_coef: &[f64]) -> Vec<f64> {
        assert_eq!(design_coef.len(), self.output_index.len(), "one coefficient per column");
        let mut out = vec![0.0; design_coef.len()];
        for (&o, &c) in self.output_index.iter().zip(design_coef) {
            out[o] = c;
        }
        out
    }

    /// Coefficients in output order rearranged into design order.
    ///
    /// # Panics
    /// When `coef` does not have one entry per design column.
    pub fn to_design_order(&self, coef: &[f64]) -> Array1<f64> {
        assert_eq!(coef.len(), self.output_index.len(), "one coefficient per column");
        self.output_index.iter().map(|&o| coef[o]).collect()
    }
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
                    ColumnEncoder::Categorical { levels, missing, other } => {
                        ColumnEncoding::Categorical {
                            levels: levels.clone(),
                            missing: *missing,
                            other: *other,
                        }
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
                ColumnEncoding::Categorical { levels, missing, other } => {
                    ColumnEncoder::Categorical { levels, missing, other }
                }
            });
            names.push(name);
        }
        Ok(Self { names, columns: encs })
    }

    /// The encoder [`LinearEncoder::fit`] would learn from a matrix with columns `specs`,
    /// `n_rows` rows and the column statistics `stats` (mean, population scale of the imputed
    /// column, indicator when any cell is missing, one-hot over the levels seen, the rare ones
    /// pooled).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when `stats` and `specs` disagree in length or kind;
    /// [`ModelError::InvalidInput`] for zero rows or a non-finite statistic, naming the column.
    pub fn from_stats(
        specs: &[FeatureSpec],
        stats: &[ColumnStats],
        n_rows: f64,
        options: &(impl Into<EncoderOptions> + Copy),
    ) -> Result<Self, ModelError> {
        let options: EncoderOptions = (*options).into();
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
                    let (center, scale) = if options.standardize {
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
                    if level_counts.iter().chain([missing]).any(|c| !c.is_finite()) {
                        return Err(ModelError::InvalidInput(format!(
                            "column `{}`: level counts are not finite",
                            spec.name
                        )));
                    }
                    ColumnEncoder::categorical(
                        levels,
                        level_counts,
                        *missing,
                        options.min_frequency,
                    )
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
    pub fn fit(
        features: &Features,
        options: &(impl Into<EncoderOptions> + Copy),
    ) -> Result<Self, ModelError> {
        let options: EncoderOptions = (*options).into();
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
                    let (center, scale) = if options.standardize {
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
                    let mut counts = vec![0.0; levels.len()];
                    let mut missing = 0.0;
                    for (i, &v) in col.iter().enumerate() {
                        if v.is_nan() {
                            missing += 1.0;
                        } else {
                            counts[level_index(v, levels.len(), &spec.name, i)?] += 1.0;
                        }
                    }
                    ColumnEncoder::categorical(levels, &counts, missing, options.min_frequency)
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

    /// For each output column, the index of the input column it encodes.
    pub fn output_sources(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .flat_map(|(j, c)| std::iter::repeat_n(j, c.width()))
            .collect()
    }

    /// Output column names: `age`, `age__missing`, `sector=retail`, `sector__other`,
    /// `sector__missing`.
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
                ColumnEncoder::Categorical { levels, missing, other } => {
                    out.extend(levels.iter().map(|l| format!("{name}={l}")));
                    if *other {
                        out.push(format!("{name}__other"));
                    }
                    if *missing {
                        out.push(format!("{name}__missing"));
                    }
                }
            }
        }
        out
    }

    /// Calls `emit(j, row, cell)` for every cell of every input column `j` that sets an output,
    /// after checking names, kinds and cells.
    fn encode(
        &self,
        features: &Features,
        mut emit: impl FnMut(usize, usize, Encoded),
    ) -> Result<(), ModelError> {
        if features.n_features() != self.names.len() {
            return Err(ModelError::Shape(format!(
                "encoder was fitted on {} columns, got {}",
                self.names.len(),
                features.n_features()
            )));
        }
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
                (ColumnEncoder::Numeric { fill, center, scale, .. }, FeatureKind::Numeric) => {
                    for (i, &v) in col.iter().enumerate() {
                        let filled = if v.is_nan() {
                            *fill
                        } else if v.is_finite() {
                            v
                        } else {
                            return Err(infinite_error(name, i, v));
                        };
                        emit(
                            j,
                            i,
                            Encoded::Numeric {
                                value: (filled - center) / scale,
                                missing: v.is_nan(),
                            },
                        );
                    }
                }
                (
                    ColumnEncoder::Categorical { levels, missing, other },
                    FeatureKind::Categorical { levels: own },
                ) => {
                    let position: HashMap<&str, usize> =
                        levels.iter().enumerate().map(|(k, l)| (l.as_str(), k)).collect();
                    let other_pos = other.then_some(levels.len());
                    let missing_pos = missing.then_some(levels.len() + usize::from(*other));
                    // Output position of each of this matrix's level indices (None = no column).
                    let map: Vec<Option<usize>> = own
                        .iter()
                        .map(|l| position.get(l.as_str()).copied().or(other_pos))
                        .collect();
                    for (i, &v) in col.iter().enumerate() {
                        let pos = if v.is_nan() {
                            missing_pos
                        } else {
                            map[level_index(v, own.len(), name, i)?]
                        };
                        if let Some(k) = pos {
                            emit(j, i, Encoded::OneHot(k));
                        }
                    }
                }
                _ => {
                    return Err(ModelError::InvalidInput(format!(
                        "column `{name}` changed kind since the encoder was fitted"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Offset of each input column's first output column.
    fn offsets(&self) -> Vec<usize> {
        self.columns
            .iter()
            .scan(0, |acc, c| {
                let o = *acc;
                *acc += c.width();
                Some(o)
            })
            .collect()
    }

    /// Encodes `features` (same column names, in the same order, as at fit) into a dense matrix
    /// in output-column order.
    ///
    /// # Errors
    /// [`ModelError::Shape`] on a different column count, [`ModelError::InvalidInput`] on a
    /// column whose name or kind differs from the fitted one, an infinite numeric cell or an
    /// invalid level index.
    pub fn transform(&self, features: &Features) -> Result<Array2<f64>, ModelError> {
        let offsets = self.offsets();
        let mut out = Array2::zeros((features.n_rows(), self.n_outputs()));
        let indicator: Vec<bool> = self
            .columns
            .iter()
            .map(|c| matches!(c, ColumnEncoder::Numeric { indicator: true, .. }))
            .collect();
        // `encode` checks the shape before calling back, so `out` fits every index.
        self.encode(features, |j, i, cell| match cell {
            Encoded::Numeric { value, missing } => {
                out[[i, offsets[j]]] = value;
                if missing && indicator[j] {
                    out[[i, offsets[j] + 1]] = 1.0;
                }
            }
            Encoded::OneHot(k) => out[[i, offsets[j] + k]] = 1.0,
        })?;
        Ok(out)
    }

    /// Encodes `features` like [`transform`](Self::transform), as a dense block (the numeric
    /// columns, in input order) beside a sparse block of the 0/1 columns (missing indicators,
    /// then one-hot columns, in input order), with the map from design columns to output
    /// columns.
    ///
    /// # Errors
    /// As [`transform`](Self::transform).
    pub fn transform_design(&self, features: &Features) -> Result<EncodedDesign, ModelError> {
        let n = features.n_rows();
        let offsets = self.offsets();
        let k = self.columns.len();
        // Design position of each numeric column's value (dense), of its indicator and of each
        // categorical column's first output (sparse).
        let (mut dense_at, mut indicator_at, mut sparse_at) =
            (vec![0; k], vec![None; k], vec![0; k]);
        let mut output_index = Vec::with_capacity(self.n_outputs());
        for (j, c) in self.columns.iter().enumerate() {
            if let ColumnEncoder::Numeric { .. } = c {
                dense_at[j] = output_index.len();
                output_index.push(offsets[j]);
            }
        }
        let n_dense = output_index.len();
        for (j, c) in self.columns.iter().enumerate() {
            if let ColumnEncoder::Numeric { indicator: true, .. } = c {
                indicator_at[j] = Some(output_index.len() - n_dense);
                output_index.push(offsets[j] + 1);
            }
        }
        for (j, c) in self.columns.iter().enumerate() {
            if let ColumnEncoder::Categorical { .. } = c {
                sparse_at[j] = output_index.len() - n_dense;
                output_index.extend(offsets[j]..offsets[j] + c.width());
            }
        }
        let n_sparse = output_index.len() - n_dense;
        let mut dense = Array2::zeros((n, n_dense));
        // (row, column) of every sparse entry, laid out row by row afterwards.
        let mut entries: Vec<(u32, u32)> = Vec::new();
        self.encode(features, |j, i, cell| match cell {
            Encoded::Numeric { value, missing } => {
                dense[[i, dense_at[j]]] = value;
                if let (true, Some(c)) = (missing, indicator_at[j]) {
                    entries.push((i as u32, c as u32));
                }
            }
            Encoded::OneHot(k) => entries.push((i as u32, (sparse_at[j] + k) as u32)),
        })?;
        entries.sort_unstable();
        let mut indptr = vec![0usize; n + 1];
        for &(i, _) in &entries {
            indptr[i as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let indices = entries.iter().map(|&(_, c)| c).collect();
        let values = vec![1.0; entries.len()];
        let sparse = CsrMatrix::new(n_sparse, indptr, indices, values)?;
        Ok(EncodedDesign { dense, sparse, output_index })
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
    /// The model over the encoder's outputs (coefficients in output-column order).
    pub model: LogisticModel,
}

impl LogisticPipeline {
    /// Fits the encoder on `data.features`, then the logistic regression on the encoded design
    /// (dense numeric block, sparse one-hot block).
    ///
    /// # Errors
    /// Any error of [`LinearEncoder::fit`] or [`logistic::fit`].
    pub fn fit(
        data: &Dataset,
        encoder: &(impl Into<EncoderOptions> + Copy),
        params: &LogisticParams,
    ) -> Result<Self, ModelError> {
        Self::fit_with_progress(data, encoder, params, &mut no_progress)
    }

    /// [`LogisticPipeline::fit`], reporting every solver iteration to `progress`.
    ///
    /// # Errors
    /// As [`LogisticPipeline::fit`].
    pub fn fit_with_progress(
        data: &Dataset,
        encoder: &(impl Into<EncoderOptions> + Copy),
        params: &LogisticParams,
        progress: &mut dyn FnMut(FitProgress),
    ) -> Result<Self, ModelError> {
        let enc = LinearEncoder::fit(&data.features, encoder)?;
        let x = enc.transform_design(&data.features)?;
        let (m, _) = logistic::fit_design(x.design()?, data.label.view(), None, params, progress)?;
        let model = LogisticModel {
            coefficients: x.to_output_order(&m.coefficients),
            intercept: m.intercept,
        };
        Ok(Self { encoder: enc, model })
    }

    /// `P(default)` per row.
    ///
    /// # Errors
    /// Any error of [`LinearEncoder::transform`]; [`ModelError::Shape`] when the model does not
    /// have one coefficient per encoder output.
    pub fn predict_proba(&self, features: &Features) -> Result<Array1<f64>, ModelError> {
        let x = self.encoder.transform_design(features)?;
        if self.model.coefficients.len() != x.output_index.len() {
            return Err(ModelError::Shape(format!(
                "{} coefficients for {} encoded columns",
                self.model.coefficients.len(),
                x.output_index.len()
            )));
        }
        let beta = x.to_design_order(&self.model.coefficients);
        let mut z = Array1::from_elem(features.n_rows(), self.model.intercept);
        x.design()?.gemv_add(beta.view(), &mut z);
        z.mapv_inplace(logistic::sigmoid);
        Ok(z)
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

    /// Every level seen keeps its column (no pooling).
    const ALL_LEVELS: EncoderOptions = EncoderOptions { standardize: true, min_frequency: 1 };

    #[test]
    fn imputes_indicates_standardizes_and_one_hots() {
        let f = sample();
        let enc = LinearEncoder::fit(&f, &ALL_LEVELS).unwrap();
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
        let opts = EncoderOptions { standardize: false, ..ALL_LEVELS };
        let enc = LinearEncoder::fit(&sample(), &opts).unwrap();
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
        let d = enc.transform_design(&score).unwrap();
        assert_eq!(d.design().unwrap().to_dense().select(ndarray::Axis(1), &inverse(&d)), x);
        assert_eq!(x.row(0).to_vec(), vec![30.0, 1.0, 3.0, 0.0, 1.0, 0.0, 1.0]);
        // "mining" (unseen) and "farm" (never seen at fit) encode as all zeros.
        assert_eq!(x.row(1).to_vec(), vec![50.0, 0.0, 2.5, 0.0, 0.0, 0.0, 2.0]);
        assert_eq!(x.row(2).to_vec(), vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0]);
        assert_eq!(x.row(3).to_vec(), vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0]);
    }

    /// For each output column, its design column.
    fn inverse(d: &EncodedDesign) -> Vec<usize> {
        let mut inv = vec![0; d.output_index.len()];
        for (k, &o) in d.output_index.iter().enumerate() {
            inv[o] = k;
        }
        inv
    }

    /// 200 rows: `city` has levels seen 120, 50, 20, 9 and 1 times (and one never), with 5
    /// missing cells; `x` is numeric.
    fn rare_levels() -> Features {
        let counts = [120usize, 50, 20, 9, 0, 1];
        let mut values = Vec::new();
        let mut i = 0;
        for (level, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                values.extend([i as f64, level as f64]);
                i += 1;
            }
        }
        while i < 205 {
            values.extend([i as f64, NAN]);
            i += 1;
        }
        Features::new(
            vec![
                FeatureSpec::numeric("x"),
                FeatureSpec::categorical("city", levels(&["a", "b", "c", "d", "e", "f"])),
            ],
            Array2::from_shape_vec((205, 2), values).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn rare_and_unseen_levels_share_the_other_column() {
        let f = rare_levels();
        let opts = EncoderOptions { standardize: false, min_frequency: 50 };
        let enc = LinearEncoder::fit(&f, &opts).unwrap();
        assert_eq!(
            enc.output_names(),
            vec!["x", "city=a", "city=b", "city__other", "city__missing"]
        );
        // Scoring: a pooled level, a level never seen at fit, a new level and missing.
        let score = Features::new(
            vec![
                FeatureSpec::numeric("x"),
                FeatureSpec::categorical("city", levels(&["zz", "b", "e", "d", "a"])),
            ],
            array![[1.0, 3.0], [2.0, 2.0], [3.0, 0.0], [4.0, NAN], [5.0, 1.0], [6.0, 4.0]],
        )
        .unwrap();
        let x = enc.transform(&score).unwrap();
        assert_eq!(
            x,
            array![
                [1.0, 0.0, 0.0, 1.0, 0.0],
                [2.0, 0.0, 0.0, 1.0, 0.0],
                [3.0, 0.0, 0.0, 1.0, 0.0],
                [4.0, 0.0, 0.0, 0.0, 1.0],
                [5.0, 0.0, 1.0, 0.0, 0.0],
                [6.0, 1.0, 0.0, 0.0, 0.0]
            ]
        );
        // The design: `x` dense, the four city columns sparse with one entry per row.
        let d = enc.transform_design(&score).unwrap();
        assert_eq!(d.dense.ncols(), 1);
        assert_eq!((d.sparse.n_cols(), d.sparse.nnz()), (4, 6));
        assert_eq!(d.design().unwrap().to_dense().select(ndarray::Axis(1), &inverse(&d)), x);
        // min_frequency 1: every level seen keeps a column; the new ones encode as zeros.
        let all = LinearEncoder::fit(&f, &EncoderOptions { min_frequency: 1, ..opts }).unwrap();
        assert_eq!(all.n_outputs(), 1 + 5 + 1);
        assert_eq!(all.transform(&score).unwrap().row(2).sum(), 3.0);
        // The same encoder from counts (pooled across parties).
        let stats = [
            ColumnStats::Numeric { count: 205.0, sum: 0.0, sum_sq_dev: 0.0 },
            ColumnStats::Categorical {
                level_counts: vec![120.0, 50.0, 20.0, 9.0, 0.0, 1.0],
                missing: 5.0,
            },
        ];
        let built = LinearEncoder::from_stats(&f.specs, &stats, 205.0, &opts).unwrap();
        assert_eq!(built.output_names(), enc.output_names());
        assert_eq!(built.transform(&score).unwrap().column(3), x.column(3));
        // The default pools below 50, also from the numeric-only `EncoderParams`.
        let default = LinearEncoder::fit(&f, &EncoderParams::default()).unwrap();
        assert_eq!(default.output_names()[1..], enc.output_names()[1..]);
        // Artifacts written before pooling existed (no `other` key) read as "no pooling".
        let json = serde_json::to_string(&all).unwrap();
        assert!(!json.contains("other"), "{json}");
        assert_eq!(serde_json::from_str::<LinearEncoder>(&json).unwrap(), all);
        let pooled = serde_json::to_string(&enc).unwrap();
        assert_eq!(serde_json::from_str::<LinearEncoder>(&pooled).unwrap(), enc);
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
        let pipe = LogisticPipeline::fit(&data, &ALL_LEVELS, &params).unwrap();
        assert_eq!(pipe.model.n_features(), pipe.encoder.n_outputs());
        let p = pipe.predict_proba(&features).unwrap();
        let x = pipe.encoder.transform(&features).unwrap();
        // The sparse design gives the dense fit up to rounding.
        let direct = logistic::fit(x.view(), data.label.view(), None, &params).unwrap();
        for (a, b) in direct.coefficients.iter().zip(&pipe.model.coefficients) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        assert!((direct.intercept - pipe.model.intercept).abs() < 1e-9);
        for (a, b) in p.iter().zip(&direct.predict_proba(x.view())) {
            assert!((a - b).abs() < 1e-9);
        }
        // Every solver iteration is reported.
        let mut seen = Vec::new();
        let again =
            LogisticPipeline::fit_with_progress(&data, &ALL_LEVELS, &params, &mut |p| seen.push(p))
                .unwrap();
        assert_eq!(again, pipe);
        assert!(!seen.is_empty());
        assert!(
            matches!(seen.last(), Some(FitProgress::Iteration { gradient_max, .. }) if *gradient_max <= 1e-8)
        );
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
        let enc = LinearEncoder::fit(&f, &ALL_LEVELS).unwrap();
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
        let built = LinearEncoder::from_stats(&f.specs, &stats, 4.0, &ALL_LEVELS).unwrap();
        assert_eq!(built, enc);
        // With the default pooling every level of these 4 rows is rare: one `__other` column.
        let pooled =
            LinearEncoder::from_stats(&f.specs, &stats, 4.0, &EncoderParams::default()).unwrap();
        assert_eq!(pooled, LinearEncoder::fit(&f, &EncoderParams::default()).unwrap());
        assert!(pooled.output_names().contains(&"sector__other".to_string()));
        assert!(
            LinearEncoder::from_stats(&f.specs, &stats[..2], 4.0, &EncoderParams::default())
                .is_err()
        );
    }
}
