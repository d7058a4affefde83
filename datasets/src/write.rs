//! Writing result tables (for example a population's scores) as CSV or Parquet, by the file's
//! extension (`.parquet`/`.pq`, otherwise CSV), through polars.

use std::path::Path;

use polars::prelude::{Column, CsvWriter, DataFrame, ParquetWriter, SerWriter};

use crate::DataError;

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Text cells.
    Text(Vec<String>),
    /// Numbers (`NaN` = missing).
    Number(Vec<f64>),
}

/// Writes named columns of equal length to `path`.
///
/// # Errors
/// [`DataError::Write`] naming the file, or a column of another length.
pub fn write_columns(path: &Path, columns: Vec<(&str, Values)>) -> Result<(), DataError> {
    let err = |cause: String| DataError::Write { path: path.to_path_buf(), cause };
    let cols: Vec<Column> = columns
        .into_iter()
        .map(|(name, v)| match v {
            Values::Text(t) => Column::new(name.into(), t),
            Values::Number(n) => Column::new(name.into(), n),
        })
        .collect();
    let mut df = DataFrame::new_infer_height(cols).map_err(|e| err(e.to_string()))?;
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let parquet = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
    if parquet {
        ParquetWriter::new(file).finish(&mut df).map(|_| ()).map_err(|e| err(e.to_string()))
    } else {
        CsvWriter::new(file).finish(&mut df).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{TableSpec, load_table};

    #[test]
    fn written_scores_read_back_in_both_formats() {
        let d = tempfile::tempdir().unwrap();
        for name in ["s.csv", "s.parquet"] {
            let p = d.path().join(name);
            write_columns(
                &p,
                vec![
                    ("id", Values::Text(vec!["a".into(), "b".into()])),
                    ("pd", Values::Number(vec![0.1, 0.2])),
                ],
            )
            .unwrap();
            let t = load_table(&TableSpec::new(&p, "id")).unwrap();
            assert_eq!(t.ids, ["a", "b"]);
            assert_eq!(t.features.values[[1, 0]], 0.2);
        }
    }
}
