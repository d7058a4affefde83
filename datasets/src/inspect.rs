//! `fedcredit data inspect`: what a table holds before anyone trains on it — its columns, the
//! kind each is read as (the same detection as [`crate::load_table`]: numeric, or text read as a
//! categorical), missing cells, the number and most frequent levels of text columns, and, for
//! an id column, how many rows repeat an earlier id (which [`crate::load_table`] refuses).
//!
//! A column that cannot be used (an unsupported type, an infinite value) is reported with the
//! reason instead of failing the whole inspection.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use fedcredit_models::FeatureKind;

use crate::DataError;
use crate::table::{Ctx, is_missing_token, read_feature, read_frame};

/// What one column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// Numbers (or booleans as 0/1); the range and mean of the non-missing cells.
    Numeric {
        /// Smallest value (`NaN` when every cell is missing).
        min: f64,
        /// Largest value.
        max: f64,
        /// Mean of the non-missing cells.
        mean: f64,
    },
    /// Text, read as a categorical column.
    Text {
        /// Distinct non-missing values.
        levels: usize,
        /// The most frequent levels with their row counts, most frequent first (ties by name).
        top: Vec<(String, usize)>,
    },
    /// A column a model cannot read, and why.
    Unusable {
        /// The loader's message.
        reason: String,
    },
}

/// One column of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSummary {
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// Missing cells (empty, `NA`, `NaN`, `nan`, `null`).
    pub missing: usize,
}

/// The id column's uniqueness.
#[derive(Debug, Clone, PartialEq)]
pub struct IdSummary {
    /// The id column.
    pub column: String,
    /// Distinct non-missing ids.
    pub distinct: usize,
    /// Rows whose id appeared on an earlier row.
    pub repeated_rows: usize,
    /// The first repeat: the id and the 1-based data rows of its first two occurrences.
    pub first_repeat: Option<(String, usize, usize)>,
    /// Rows without an id.
    pub missing: usize,
}

/// A table's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    /// The file.
    pub path: PathBuf,
    /// Data rows.
    pub rows: usize,
    /// Every column but the id column, in file order.
    pub columns: Vec<ColumnSummary>,
    /// The id column, when one was named.
    pub id: Option<IdSummary>,
}

/// Reads `path` and summarises it; `id_column`, when given, is checked for repeats and left out
/// of the columns; text columns list their `top` most frequent levels.
///
/// # Errors
/// [`DataError::UnknownExtension`] or [`DataError::Unreadable`] for a file that cannot be read;
/// [`DataError::MissingColumn`] when `id_column` is not in the file.
pub fn inspect_table(
    path: &Path,
    id_column: Option<&str>,
    top: usize,
) -> Result<TableSummary, DataError> {
    let df = read_frame(path)?;
    let available: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let ctx = Ctx { path, df: &df, available: &available };
    let id = match id_column {
        Some(name) => Some(id_summary(&ctx, name)?),
        None => None,
    };
    let mut columns = Vec::with_capacity(available.len());
    for name in available.iter().filter(|c| Some(c.as_str()) != id_column) {
        columns.push(match read_feature(&ctx, name, false, true) {
            Ok((spec, cells)) => {
                let missing = cells.iter().filter(|v| v.is_nan()).count();
                let kind = match &spec.kind {
                    FeatureKind::Numeric => numeric_kind(&cells),
                    FeatureKind::Categorical { levels } => text_kind(levels, &cells, top),
                };
                ColumnSummary { name: name.clone(), kind, missing }
            }
            Err(e) => ColumnSummary {
                name: name.clone(),
                kind: ColumnKind::Unusable { reason: e.to_string() },
                missing: 0,
            },
        });
    }
    Ok(TableSummary { path: path.to_path_buf(), rows: df.height(), columns, id })
}

fn numeric_kind(cells: &[f64]) -> ColumnKind {
    let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for &v in cells.iter().filter(|v| !v.is_nan()) {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    if n == 0 {
        return ColumnKind::Numeric { min: f64::NAN, max: f64::NAN, mean: f64::NAN };
    }
    ColumnKind::Numeric { min, max, mean: sum / n as f64 }
}

fn text_kind(levels: &[String], cells: &[f64], top: usize) -> ColumnKind {
    let mut counts = vec![0usize; levels.len()];
    for &v in cells.iter().filter(|v| !v.is_nan()) {
        if let Some(c) = counts.get_mut(v as usize) {
            *c += 1;
        }
    }
    let mut order: Vec<usize> = (0..levels.len()).collect();
    // Levels are sorted by name, so a stable sort by count keeps ties in name order.
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
    let top = order.iter().take(top).map(|&l| (levels[l].clone(), counts[l])).collect();
    ColumnKind::Text { levels: levels.len(), top }
}

fn id_summary(ctx: &Ctx<'_>, name: &str) -> Result<IdSummary, DataError> {
    let text = ctx.text_column(name, "id")?;
    let mut first_row: HashMap<&str, usize> = HashMap::new();
    let (mut repeated_rows, mut missing) = (0, 0);
    let mut first_repeat = None;
    for (i, cell) in ctx.cells(name, &text)?.enumerate() {
        let Some(id) = cell.filter(|s| !is_missing_token(s)) else {
            missing += 1;
            continue;
        };
        match first_row.get(id) {
            Some(&first) => {
                repeated_rows += 1;
                if first_repeat.is_none() {
                    first_repeat = Some((id.to_string(), first + 1, i + 1));
                }
            }
            None => {
                first_row.insert(id, i);
            }
        }
    }
    Ok(IdSummary {
        column: name.to_string(),
        distinct: first_row.len(),
        repeated_rows,
        first_repeat,
        missing,
    })
}

/// `n (p%)` of `total`.
fn share(n: usize, total: usize) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n} ({:.1}%)", 100.0 * n as f64 / total.max(1) as f64)
    }
}

impl TableSummary {
    /// The summary as text: a header, the id line and one line per column.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} rows, {} columns\n",
            self.path.display(),
            self.rows,
            self.columns.len() + usize::from(self.id.is_some())
        );
        if let Some(id) = &self.id {
            let _ = write!(out, "id column `{}`: {} distinct ids", id.column, id.distinct);
            match &id.first_repeat {
                None => out.push_str(", no duplicates"),
                Some((v, a, b)) => {
                    let _ = write!(
                        out,
                        ", {} rows repeat an earlier id (first: `{v}` at data rows {a} and {b})",
                        id.repeated_rows
                    );
                }
            }
            if id.missing > 0 {
                let _ = write!(out, ", {} rows without an id", id.missing);
            }
            out.push('\n');
        }
        let w = self.columns.iter().map(|c| c.name.len()).max().unwrap_or(6).max(6);
        let _ = writeln!(out, "{:<w$}  {:<8}  {:<14}  summary", "column", "kind", "missing");
        for c in &self.columns {
            let (kind, summary) = match &c.kind {
                ColumnKind::Numeric { min, .. } if min.is_nan() => {
                    ("numeric", "every cell missing".to_string())
                }
                ColumnKind::Numeric { min, max, mean } => {
                    ("numeric", format!("min {min}, max {max}, mean {mean:.4}"))
                }
                ColumnKind::Text { levels, top } => {
                    let tops: Vec<String> = top.iter().map(|(l, n)| format!("{l} ({n})")).collect();
                    let more = if *levels > top.len() { ", …" } else { "" };
                    ("text", format!("{levels} levels: {}{more}", tops.join(", ")))
                }
                ColumnKind::Unusable { reason } => ("unusable", reason.clone()),
            };
            let _ = writeln!(
                out,
                "{:<w$}  {:<8}  {:<14}  {summary}",
                c.name,
                kind,
                share(c.missing, self.rows)
            );
        }
        out
    }
}
