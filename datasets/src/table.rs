//! Loading one party's table from CSV or Parquet into the shared feature layout.
//!
//! A [`TableSpec`] (embedded in participant TOML configs) names the file and its id, time,
//! label and feature columns. [`load_table`] reads the file with polars, then converts each
//! column into an `f64` column of a [`Features`] matrix:
//!
//! - integer, float and boolean columns become numeric (`true` = 1; null, NaN and the missing
//!   tokens = `NaN`);
//! - text columns become categorical: the distinct values sorted by their bytes are the
//!   levels, the cell holds the level index, and the missing tokens (`""`, `NA`, `NaN`,
//!   `nan`, `null`) are `NaN`;
//! - a text column whose every non-missing value parses as a number is numeric;
//! - a column listed in `categorical_columns` is categorical on its text form even when it
//!   is numeric.
//!
//! Which text columns are categorical: when `categorical_columns` is `None` every text column
//! is detected as categorical; when it is `Some(list)`, a feature column outside the list that
//! holds text is an error naming the first offending row and value.
//!
//! Validation errors ([`DataError`]) name the file, the column and the 1-based data row
//! (the first row after the header is row 1). Ids are text; integer ids become their
//! decimal text.
//!
//! CSV files are read by polars with every column as text, and the cells are parsed here
//! (numbers with Rust's `f64` parser, `true`/`false` as 1/0): no type inference can misjudge a
//! column from its first rows, `007` stays `007` in id and categorical columns, and the first
//! offending cell is reported exactly. Parquet columns keep their stored types.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::{Array1, Array2, Axis};
use polars::prelude::{
    Column, CsvParseOptions, CsvReadOptions, DataFrame, DataType, ParquetReader, SerReader,
};
use serde::{Deserialize, Serialize};

use crate::DataError;

/// Cell texts read as missing, in CSV files (as nulls) and in text columns of any format.
pub const MISSING_TOKENS: [&str; 5] = ["", "NA", "NaN", "nan", "null"];

/// Which columns of which file make a party's table.
///
/// Deserialized from the participant's TOML config; unknown keys are rejected.
///
/// ```toml
/// path = "data/bank.csv"
/// id_column = "id"
/// label_column = "y"
/// exclude_columns = ["note"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The file; `.csv`, `.tsv`, `.parquet` or `.pq` (case-insensitive).
    pub path: PathBuf,
    /// The column holding the entity id (for enterprises, the unified social credit code).
    pub id_column: String,
    /// An optional snapshot-time column (e.g. `month`); when set, ids must be unique per time
    /// value instead of overall.
    #[serde(default)]
    pub time_column: Option<String>,
    /// The 0/1 label column, held by the label holder only.
    #[serde(default)]
    pub label_column: Option<String>,
    /// The feature columns in order; `None` takes every other column in file order.
    #[serde(default)]
    pub feature_columns: Option<Vec<String>>,
    /// The categorical feature columns; `None` detects text columns as categorical.
    #[serde(default)]
    pub categorical_columns: Option<Vec<String>>,
    /// Columns never used as features (free text, leaky columns, ...).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

impl TableSpec {
    /// A spec with only a path and an id column: every other column is a feature, text
    /// columns are categorical.
    pub fn new(path: impl Into<PathBuf>, id_column: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            id_column: id_column.into(),
            time_column: None,
            label_column: None,
            feature_columns: None,
            categorical_columns: None,
            exclude_columns: Vec::new(),
        }
    }

    /// The same spec with a label column.
    pub fn with_label(mut self, column: impl Into<String>) -> Self {
        self.label_column = Some(column.into());
        self
    }

    /// The same spec with a time column.
    pub fn with_time(mut self, column: impl Into<String>) -> Self {
        self.time_column = Some(column.into());
        self
    }

    /// The same spec with an explicit feature list.
    pub fn with_features<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.feature_columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// The same spec with an explicit categorical list.
    pub fn with_categorical<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.categorical_columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// The same spec with excluded columns.
    pub fn with_excluded<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.exclude_columns = columns.into_iter().map(Into::into).collect();
        self
    }
}

/// One party's table: ids, optional time and label, and the feature matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file it came from (a virtual path for generated tables); its stem names the party
    /// in joins.
    pub source: PathBuf,
    /// One id per row, as text.
    pub ids: Vec<String>,
    /// The time column as text, when the spec has one (null cells are empty strings).
    pub time: Option<Vec<String>>,
    /// The 0/1 label, when the spec has a label column.
    pub label: Option<Array1<f64>>,
    /// The feature matrix, one row per id.
    pub features: Features,
}

impl Table {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.ids.len()
    }

    /// The file stem of [`Table::source`] (`host` for `data/host.csv`), used to name the party.
    pub fn stem(&self) -> String {
        file_stem(&self.source)
    }

    /// The rows at `rows`, in that order.
    ///
    /// # Panics
    /// When an index is out of bounds.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        Self {
            source: self.source.clone(),
            ids: rows.iter().map(|&r| self.ids[r].clone()).collect(),
            time: self.time.as_ref().map(|t| rows.iter().map(|&r| t[r].clone()).collect()),
            label: self.label.as_ref().map(|l| l.select(Axis(0), rows)),
            features: self.features.select_rows(rows),
        }
    }

    /// The rows whose time value equals `value`; no rows when the table has no time column.
    pub fn at_time(&self, value: &str) -> Self {
        let rows: Vec<usize> = match &self.time {
            Some(t) => (0..t.len()).filter(|&r| t[r] == value).collect(),
            None => Vec::new(),
        };
        self.select_rows(&rows)
    }

    /// Writes the table as CSV: the id column, the time column (when present), the features
    /// (numbers in shortest round-trip form, missing cells empty, categorical cells as their
    /// level) and the label last (when present). `load_table` reads it back unchanged.
    ///
    /// # Errors
    /// [`DataError::Write`] naming the file.
    pub fn write_csv(
        &self,
        path: &Path,
        id_column: &str,
        time_column: Option<&str>,
        label_column: Option<&str>,
    ) -> Result<(), DataError> {
        use std::io::Write;
        let err =
            |e: std::io::Error| DataError::Write { path: path.to_path_buf(), cause: e.to_string() };
        let quote = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let mut w = std::io::BufWriter::new(File::create(path).map_err(err)?);
        let mut head = vec![quote(id_column)];
        if let (Some(t), Some(_)) = (time_column, &self.time) {
            head.push(quote(t));
        }
        head.extend(self.features.specs.iter().map(|s| quote(&s.name)));
        if let (Some(l), Some(_)) = (label_column, &self.label) {
            head.push(quote(l));
        }
        writeln!(w, "{}", head.join(",")).map_err(err)?;
        let values = &self.features.values;
        let mut line = String::new();
        for r in 0..self.n_rows() {
            line.clear();
            line.push_str(&quote(&self.ids[r]));
            if let (Some(_), Some(t)) = (time_column, &self.time) {
                line.push(',');
                line.push_str(&quote(&t[r]));
            }
            for (j, spec) in self.features.specs.iter().enumerate() {
                line.push(',');
                let x = values[[r, j]];
                if x.is_nan() {
                    continue;
                }
                match &spec.kind {
                    fedcredit_models::FeatureKind::Numeric => line.push_str(&x.to_string()),
                    fedcredit_models::FeatureKind::Categorical { levels } => {
                        let level = levels.get(x as usize).map(String::as_str).unwrap_or_default();
                        line.push_str(&quote(level));
                    }
                }
            }
            if let (Some(_), Some(l)) = (label_column, &self.label) {
                line.push(',');
                line.push_str(&l[r].to_string());
            }
            writeln!(w, "{line}").map_err(err)?;
        }
        w.flush().map_err(err)
    }

    /// Features and label as a model dataset.
    ///
    /// # Errors
    /// [`DataError::InvalidParam`] when the table has no label.
    pub fn dataset(&self) -> Result<Dataset, DataError> {
        let label = self.label.clone().ok_or_else(|| DataError::InvalidParam {
            name: "label_column",
            reason: format!("{} has no label column", self.source.display()),
        })?;
        Ok(Dataset::new(self.features.clone(), label)?)
    }
}

/// Reads and validates the table described by `spec`.
///
/// # Errors
/// - [`DataError::UnknownExtension`] for a file that is not `.csv`, `.tsv`, `.parquet`, `.pq`;
/// - [`DataError::Unreadable`] when the file cannot be opened or parsed;
/// - [`DataError::EmptyTable`] when it has no data rows;
/// - [`DataError::MissingColumn`], [`DataError::InvalidSpec`] for a spec that does not fit;
/// - [`DataError::NullId`], [`DataError::DuplicateId`] for bad ids;
/// - [`DataError::LabelMissing`], [`DataError::LabelNotBinary`] for bad labels;
/// - [`DataError::TextInNumericColumn`], [`DataError::InfiniteValue`],
///   [`DataError::UnsupportedType`] for bad feature cells.
pub fn load_table(spec: &TableSpec) -> Result<Table, DataError> {
    let path = spec.path.as_path();
    let df = read_frame(path)?;
    if df.height() == 0 {
        return Err(DataError::EmptyTable { path: path.to_path_buf() });
    }
    let available: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let plan = Plan::new(spec, &available)?;
    let ctx = Ctx { path, df: &df, available: &available };

    let ids = read_ids(&ctx, &spec.id_column)?;
    let time = match &spec.time_column {
        Some(c) => Some(read_text_keep_nulls(&ctx, c, "time")?),
        None => None,
    };
    check_unique_ids(path, &spec.id_column, &ids, time.as_deref())?;
    let label = match &spec.label_column {
        Some(c) => Some(read_label(&ctx, c)?),
        None => None,
    };

    let n = df.height();
    let mut values = Array2::from_elem((n, plan.features.len()), f64::NAN);
    let mut specs = Vec::with_capacity(plan.features.len());
    for (j, name) in plan.features.iter().enumerate() {
        let declared_categorical = plan.categorical.contains(name.as_str());
        let (fspec, col) = read_feature(&ctx, name, declared_categorical, plan.detect)?;
        values.column_mut(j).assign(&Array1::from(col));
        specs.push(fspec);
    }
    let features = Features::new(specs, values)?;
    Ok(Table { source: path.to_path_buf(), ids, time, label, features })
}

/// The column names of a CSV or Parquet file, in file order, without reading its rows.
///
/// Lets a caller decide the roles of columns (for example which of several files holds the
/// label) before [`load_table`].
///
/// # Errors
/// [`DataError::UnknownExtension`] or [`DataError::Unreadable`] naming the file.
pub fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    let df = match Format::of(path)? {
        Format::Csv { separator } => {
            File::open(path).map_err(|e| unreadable(path, e))?;
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .with_n_rows(Some(0))
                .with_raise_if_empty(false)
                .with_parse_options(CsvParseOptions::default().with_separator(separator))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(|e| unreadable(path, e))?
        }
        Format::Parquet => {
            let file = File::open(path).map_err(|e| unreadable(path, e))?;
            ParquetReader::new(file)
                .with_slice(Some((0, 0)))
                .finish()
                .map_err(|e| unreadable(path, e))?
        }
    };
    Ok(df.get_column_names().iter().map(|c| c.to_string()).collect())
}

/// The stem of a path as text (`host` for `data/host.csv`).
pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// True for the cell texts read as missing.
pub(crate) fn is_missing_token(s: &str) -> bool {
    MISSING_TOKENS.contains(&s)
}

enum Format {
    Csv { separator: u8 },
    Parquet,
}

impl Format {
    fn of(path: &Path) -> Result<Self, DataError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(Self::Csv { separator: b',' }),
            Some("tsv") => Ok(Self::Csv { separator: b'\t' }),
            Some("parquet" | "pq") => Ok(Self::Parquet),
            _ => Err(DataError::UnknownExtension { path: path.to_path_buf() }),
        }
    }
}

fn unreadable(path: &Path, cause: impl ToString) -> DataError {
    DataError::Unreadable { path: path.to_path_buf(), cause: cause.to_string() }
}

/// The whole file as a frame (CSV columns as text, Parquet columns with their types).
pub(crate) fn read_frame(path: &Path) -> Result<DataFrame, DataError> {
    match Format::of(path)? {
        Format::Csv { separator } => read_csv(path, separator),
        Format::Parquet => read_parquet(path),
    }
}

fn read_csv(path: &Path, separator: u8) -> Result<DataFrame, DataError> {
    // Open it ourselves first: the operating system's message is clearer than the parser's.
    File::open(path).map_err(|e| unreadable(path, e))?;
    // Empty cells are nulls; the other missing tokens are recognised when the text columns
    // are converted (cheaper than polars comparing every cell with every token).
    let parse = CsvParseOptions::default().with_separator(separator).with_missing_is_null(true);
    CsvReadOptions::default()
        .with_has_header(true)
        // Every column is read as text and parsed here: polars' type inference misreads
        // real files (an integer column with one `1e+05` cell fails to parse as i64).
        .with_infer_schema_length(Some(0))
        .with_raise_if_empty(false)
        .with_parse_options(parse)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| unreadable(path, e))
}

fn read_parquet(path: &Path) -> Result<DataFrame, DataError> {
    let file = File::open(path).map_err(|e| unreadable(path, e))?;
    ParquetReader::new(file).finish().map_err(|e| unreadable(path, e))
}

/// Which file columns play which role.
struct Plan<'a> {
    features: Vec<String>,
    categorical: HashSet<&'a str>,
    detect: bool,
}

impl<'a> Plan<'a> {
    fn new(spec: &'a TableSpec, available: &[String]) -> Result<Self, DataError> {
        let path = spec.path.as_path();
        let has = |c: &str| available.iter().any(|a| a == c);
        let missing = |column: &str, role: &'static str| DataError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            role,
            available: available.to_vec(),
        };
        let invalid = |reason: String| DataError::InvalidSpec { path: path.to_path_buf(), reason };

        let mut reserved: Vec<(&str, &'static str)> = vec![(spec.id_column.as_str(), "id")];
        reserved.extend(spec.time_column.as_deref().map(|c| (c, "time")));
        reserved.extend(spec.label_column.as_deref().map(|c| (c, "label")));
        for (i, (c, role)) in reserved.iter().enumerate() {
            if !has(c) {
                return Err(missing(c, role));
            }
            if let Some((_, other)) = reserved[..i].iter().find(|(o, _)| o == c) {
                return Err(invalid(format!(
                    "column `{c}` is both the {other} and the {role} column"
                )));
            }
        }
        for c in &spec.exclude_columns {
            if !has(c) {
                return Err(missing(c, "excluded"));
            }
        }
        let excluded: HashSet<&str> = spec.exclude_columns.iter().map(String::as_str).collect();
        let is_reserved = |c: &str| reserved.iter().find(|(r, _)| *r == c).map(|(_, role)| *role);

        let features: Vec<String> = match &spec.feature_columns {
            Some(list) => {
                let mut seen = HashSet::new();
                for c in list {
                    if !has(c) {
                        return Err(missing(c, "feature"));
                    }
                    if let Some(role) = is_reserved(c) {
                        return Err(invalid(format!(
                            "column `{c}` is listed as a feature and is the {role} column"
                        )));
                    }
                    if excluded.contains(c.as_str()) {
                        return Err(invalid(format!(
                            "column `{c}` is listed both in feature_columns and exclude_columns"
                        )));
                    }
                    if !seen.insert(c.as_str()) {
                        return Err(invalid(format!("feature column `{c}` is listed twice")));
                    }
                }
                list.clone()
            }
            None => available
                .iter()
                .filter(|c| is_reserved(c).is_none() && !excluded.contains(c.as_str()))
                .cloned()
                .collect(),
        };

        let mut categorical = HashSet::new();
        if let Some(list) = &spec.categorical_columns {
            for c in list {
                if !has(c) {
                    return Err(missing(c, "categorical"));
                }
                if !features.iter().any(|f| f == c) {
                    return Err(invalid(format!(
                        "categorical column `{c}` is not among the feature columns"
                    )));
                }
                categorical.insert(c.as_str());
            }
        }
        Ok(Self { features, categorical, detect: spec.categorical_columns.is_none() })
    }
}

/// What every column reader needs.
pub(crate) struct Ctx<'a> {
    pub(crate) path: &'a Path,
    pub(crate) df: &'a DataFrame,
    pub(crate) available: &'a [String],
}

impl Ctx<'_> {
    fn column(&self, name: &str, role: &'static str) -> Result<&Column, DataError> {
        self.df.column(name).map_err(|_| DataError::MissingColumn {
            path: self.path.to_path_buf(),
            column: name.to_string(),
            role,
            available: self.available.to_vec(),
        })
    }

    /// The column as text: strings as they are, other types cast to text (integers as
    /// decimal text). Read the cells with `.str()`.
    pub(crate) fn text_column(&self, name: &str, role: &'static str) -> Result<Column, DataError> {
        let col = self.column(name, role)?;
        let text = if col.dtype().is_string() {
            col.clone()
        } else {
            col.cast(&DataType::String).map_err(|e| self.unsupported(name, col, e))?
        };
        // Fails only if the cast did not produce text.
        text.str().map_err(|e| self.unsupported(name, col, e))?;
        Ok(text)
    }

    /// The cells of a column returned by [`Ctx::text_column`].
    pub(crate) fn cells<'c>(
        &self,
        name: &str,
        text: &'c Column,
    ) -> Result<impl Iterator<Item = Option<&'c str>> + 'c, DataError> {
        Ok(text.str().map_err(|e| self.unsupported(name, text, e))?.iter())
    }

    fn unsupported(&self, name: &str, col: &Column, _e: impl ToString) -> DataError {
        DataError::UnsupportedType {
            path: self.path.to_path_buf(),
            column: name.to_string(),
            dtype: col.dtype().to_string(),
        }
    }
}

fn read_ids(ctx: &Ctx<'_>, name: &str) -> Result<Vec<String>, DataError> {
    let text = ctx.text_column(name, "id")?;
    ctx.cells(name, &text)?
        .enumerate()
        .map(|(i, v)| match v {
            Some(s) if !is_missing_token(s) => Ok(s.to_string()),
            _ => Err(DataError::NullId {
                path: ctx.path.to_path_buf(),
                column: name.to_string(),
                row: i + 1,
            }),
        })
        .collect()
}

fn read_text_keep_nulls(
    ctx: &Ctx<'_>,
    name: &str,
    role: &'static str,
) -> Result<Vec<String>, DataError> {
    let text = ctx.text_column(name, role)?;
    Ok(ctx
        .cells(name, &text)?
        .map(|v| v.filter(|s| !is_missing_token(s)).unwrap_or_default().to_string())
        .collect())
}

/// Finds the first repeated id (or id and time): the pair of rows whose second row comes
/// first. Sorting hashes keeps this cache-friendly on millions of rows, where a hash set of
/// the keys spends its time in cache misses.
fn check_unique_ids(
    path: &Path,
    column: &str,
    ids: &[String],
    time: Option<&[String]>,
) -> Result<(), DataError> {
    let key = |i: usize| (ids[i].as_str(), time.map_or("", |t| t[i].as_str()));
    let mut hashed: Vec<(u64, usize)> = (0..ids.len())
        .map(|i| {
            let mut h = FxHasher::default();
            key(i).hash(&mut h);
            (h.finish(), i)
        })
        .collect();
    hashed.sort_unstable();
    // (first row, second row) of the earliest repeat found so far.
    let mut earliest: Option<(usize, usize)> = None;
    for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        // Rows ascend within a run; equal hashes of different keys are told apart here.
        for (j, &(_, second)) in run.iter().enumerate().skip(1) {
            if let Some(&(_, first)) = run[..j].iter().find(|&&(_, r)| key(r) == key(second)) {
                if earliest.is_none_or(|(_, s)| second < s) {
                    earliest = Some((first, second));
                }
                break;
            }
        }
    }
    match earliest {
        None => Ok(()),
        Some((first, second)) => {
            let (id, t) = key(second);
            let id = if time.is_some() { format!("{id}@{t}") } else { id.to_string() };
            Err(DataError::DuplicateId {
                path: path.to_path_buf(),
                column: column.to_string(),
                id,
                first_row: first + 1,
                second_row: second + 1,
            })
        }
    }
}

fn read_label(ctx: &Ctx<'_>, name: &str) -> Result<Array1<f64>, DataError> {
    let col = ctx.column(name, "label")?;
    let missing = |row| DataError::LabelMissing {
        path: ctx.path.to_path_buf(),
        column: name.to_string(),
        row,
    };
    let not_binary = |row, value: String| DataError::LabelNotBinary {
        path: ctx.path.to_path_buf(),
        column: name.to_string(),
        row,
        value,
    };
    let mut out = Vec::with_capacity(ctx.df.height());
    if col.dtype().is_primitive_numeric() || col.dtype().is_bool() {
        for (i, v) in numeric_values(ctx, name, col)?.into_iter().enumerate() {
            match v {
                None => return Err(missing(i + 1)),
                Some(x) if x.is_nan() => return Err(missing(i + 1)),
                Some(x) if x == 0.0 || x == 1.0 => out.push(x),
                Some(x) => return Err(not_binary(i + 1, format!("{x}"))),
            }
        }
    } else {
        let text = ctx.text_column(name, "label")?;
        for (i, v) in ctx.cells(name, &text)?.enumerate() {
            let s = match v {
                Some(s) if !is_missing_token(s) => s,
                _ => return Err(missing(i + 1)),
            };
            match s.trim().parse::<f64>() {
                Ok(x) if x == 0.0 || x == 1.0 => out.push(x),
                _ => return Err(not_binary(i + 1, s.to_string())),
            }
        }
    }
    Ok(Array1::from(out))
}

/// A numeric or boolean column as optional `f64`s.
fn numeric_values(ctx: &Ctx<'_>, name: &str, col: &Column) -> Result<Vec<Option<f64>>, DataError> {
    if col.dtype().is_bool() {
        let ca = col.bool().map_err(|e| ctx.unsupported(name, col, e))?;
        return Ok(ca.iter().map(|v| v.map(|b| if b { 1.0 } else { 0.0 })).collect());
    }
    let cast = col.cast(&DataType::Float64).map_err(|e| ctx.unsupported(name, col, e))?;
    let ca = cast.f64().map_err(|e| ctx.unsupported(name, col, e))?;
    Ok(ca.iter().collect())
}

/// Reads one feature column: its spec and its `f64` cells.
pub(crate) fn read_feature(
    ctx: &Ctx<'_>,
    name: &str,
    declared_categorical: bool,
    detect: bool,
) -> Result<(FeatureSpec, Vec<f64>), DataError> {
    let col = ctx.column(name, "feature")?;
    let dtype = col.dtype();
    if declared_categorical {
        let text = ctx.text_column(name, "feature")?;
        return categorical(ctx, name, &text);
    }
    if dtype.is_primitive_numeric() || dtype.is_bool() {
        let cells: Vec<f64> =
            numeric_values(ctx, name, col)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        check_finite(ctx, name, &cells)?;
        return Ok((FeatureSpec::numeric(name), cells));
    }
    if dtype.is_string() || dtype.is_null() {
        let text = ctx.text_column(name, "feature")?;
        return match parse_numeric_texts(ctx.cells(name, &text)?) {
            Ok(cells) => {
                check_finite(ctx, name, &cells)?;
                Ok((FeatureSpec::numeric(name), cells))
            }
            Err(_) if detect => categorical(ctx, name, &text),
            Err((row, value)) => Err(DataError::TextInNumericColumn {
                path: ctx.path.to_path_buf(),
                column: name.to_string(),
                row: row + 1,
                value,
            }),
        };
    }
    Err(ctx.unsupported(name, col, ""))
}

fn check_finite(ctx: &Ctx<'_>, name: &str, cells: &[f64]) -> Result<(), DataError> {
    match cells.iter().position(|v| v.is_infinite()) {
        None => Ok(()),
        Some(i) => Err(DataError::InfiniteValue {
            path: ctx.path.to_path_buf(),
            column: name.to_string(),
            row: i + 1,
            value: cells[i],
        }),
    }
}

/// Parses text cells as numbers (missing tokens as `NaN`); on failure the 0-based row and text.
fn parse_numeric_texts<'c>(
    cells: impl Iterator<Item = Option<&'c str>>,
) -> Result<Vec<f64>, (usize, String)> {
    cells
        .enumerate()
        .map(|(i, v)| match v {
            None => Ok(f64::NAN),
            Some(s) if is_missing_token(s) => Ok(f64::NAN),
            Some(s) => parse_number(s).ok_or_else(|| (i, s.to_string())),
        })
        .collect()
}

/// A number, or a boolean as 0/1 (`true`/`false` in any case).
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    s.parse::<f64>().ok().or_else(|| {
        if s.eq_ignore_ascii_case("true") {
            Some(1.0)
        } else if s.eq_ignore_ascii_case("false") {
            Some(0.0)
        } else {
            None
        }
    })
}

/// Encodes a text column as level indices, levels sorted by their bytes.
fn categorical(
    ctx: &Ctx<'_>,
    name: &str,
    text: &Column,
) -> Result<(FeatureSpec, Vec<f64>), DataError> {
    let levels: Vec<String> = ctx
        .cells(name, text)?
        .flatten()
        .filter(|s| !is_missing_token(s))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    let index: HashMap<&str, f64> =
        levels.iter().enumerate().map(|(i, l)| (l.as_str(), i as f64)).collect();
    let cells = ctx
        .cells(name, text)?
        .map(|v| v.and_then(|s| index.get(s).copied()).unwrap_or(f64::NAN))
        .collect();
    Ok((FeatureSpec::categorical(name, levels), cells))
}

/// The multiply-rotate hash of rustc (`FxHasher`) with a final mix: much faster than SipHash
/// on millions of short ids; hash flooding is no concern for a party's own files.
#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply only carries entropy upwards; mix it into the low bits too, which the
        // hash table uses to pick buckets (murmur3's `fmix64`).
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}
