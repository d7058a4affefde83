//! Feature matrices shared by every model.
//!
//! A [`Features`] value is a dense row-major `n_rows × n_features` matrix of `f64`
//! with a [`FeatureSpec`] per column.
//! Missing values are `NaN` everywhere; models decide how to treat them
//! (GBDT learns a default direction, LR imputes, binning gives them their own bin).
//! Categorical columns hold the level index (`0.0`, `1.0`, …) as `f64`, with the
//! level names in [`FeatureKind::Categorical`], so numeric and categorical features
//! travel in one matrix without a second type.

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A real number; `NaN` is missing.
    Numeric,
    /// A category; the cell holds the index into `levels` as `f64`, `NaN` is missing.
    Categorical {
        /// Level names in index order.
        levels: Vec<String>,
    },
}

/// Name and kind of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name as the owner's table spells it.
    pub name: String,
    /// Numeric or categorical.
    pub kind: FeatureKind,
}

impl FeatureSpec {
    /// A numeric column.
    pub fn numeric(name: impl Into<String>) -> Self {
        Self { name: name.into(), kind: FeatureKind::Numeric }
    }

    /// A categorical column with the given levels.
    pub fn categorical(name: impl Into<String>, levels: Vec<String>) -> Self {
        Self { name: name.into(), kind: FeatureKind::Categorical { levels } }
    }

    /// True for categorical columns.
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, FeatureKind::Categorical { .. })
    }
}

/// A feature matrix with its column descriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// One spec per column of `values`.
    pub specs: Vec<FeatureSpec>,
    /// `n_rows × n_features`, row-major, `NaN` = missing.
    pub values: Array2<f64>,
}

impl Features {
    /// Builds a matrix, checking that specs and columns agree.
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the number of specs differs from the number of columns.
    pub fn new(specs: Vec<FeatureSpec>, values: Array2<f64>) -> Result<Self, ModelError> {
        if specs.len() != values.ncols() {
            return Err(ModelError::Shape(format!(
                "{} feature specs for a matrix with {} columns",
                specs.len(),
                values.ncols()
            )));
        }
        Ok(Self { specs, values })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.values.nrows()
    }

    /// Number of columns.
    pub fn n_features(&self) -> usize {
        self.values.ncols()
    }

    /// Column names in order.
    pub fn names(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    /// The rows at `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        Self { specs: self.specs.clone(), values: self.values.select(Axis(0), rows) }
    }

    /// The columns at `cols`, in that order.
    pub fn select_columns(&self, cols: &[usize]) -> Self {
        Self {
            specs: cols.iter().map(|&c| self.specs[c].clone()).collect(),
            values: self.values.select(Axis(1), cols),
        }
    }

    /// These rows in the columns `specs` describe (a model's, or another load of the same
    /// table's): columns matched by name, in `specs`' order; a categorical cell mapped to the
    /// level of the same name in `specs`, or missing when `specs` lacks that level (a level
    /// never seen at fit time).
    ///
    /// # Errors
    /// [`ModelError::Shape`] naming a column `specs` has and these rows lack, or a column
    /// whose kind differs.
    pub fn conform_to(&self, specs: &[FeatureSpec]) -> Result<Self, ModelError> {
        let mut values = Array2::from_elem((self.n_rows(), specs.len()), f64::NAN);
        for (j, want) in specs.iter().enumerate() {
            let Some(k) = self.specs.iter().position(|s| s.name == want.name) else {
                return Err(ModelError::Shape(format!("column `{}` is missing", want.name)));
            };
            let src = self.values.column(k);
            match (&self.specs[k].kind, &want.kind) {
                (FeatureKind::Numeric, FeatureKind::Numeric) => values.column_mut(j).assign(&src),
                (
                    FeatureKind::Categorical { levels: have },
                    FeatureKind::Categorical { levels },
                ) => {
                    let index: std::collections::HashMap<&str, f64> =
                        levels.iter().enumerate().map(|(i, l)| (l.as_str(), i as f64)).collect();
                    let map: Vec<f64> = have
                        .iter()
                        .map(|l| index.get(l.as_str()).copied().unwrap_or(f64::NAN))
                        .collect();
                    for (o, &v) in values.column_mut(j).iter_mut().zip(src) {
                        *o = if v >= 0.0 && (v as usize) < map.len() && v.fract() == 0.0 {
                            map[v as usize]
                        } else {
                            f64::NAN
                        };
                    }
                }
                (have, _) => {
                    return Err(ModelError::Shape(format!(
                        "column `{}` is {have:?} here but {:?} in the model",
                        want.name, want.kind
                    )));
                }
            }
        }
        Ok(Self { specs: specs.to_vec(), values })
    }

    /// Places matrices with the same rows side by side (a vertical join already aligned on rows).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the parts have different row counts or `parts` is empty.
    pub fn hstack(parts: &[&Features]) -> Result<Self, ModelError> {
        let first = parts.first().ok_or_else(|| ModelError::Shape("no parts to join".into()))?;
        let n = first.n_rows();
        if let Some(bad) = parts.iter().find(|p| p.n_rows() != n) {
            return Err(ModelError::Shape(format!(
                "cannot join parts with {} and {} rows",
                n,
                bad.n_rows()
            )));
        }
        let views: Vec<_> = parts.iter().map(|p| p.values.view()).collect();
        let values =
            ndarray::concatenate(Axis(1), &views).map_err(|e| ModelError::Shape(e.to_string()))?;
        let specs = parts.iter().flat_map(|p| p.specs.iter().cloned()).collect();
        Ok(Self { specs, values })
    }

    /// Stacks matrices with the same columns on top of each other (pooling horizontal parts).
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the parts' specs differ or `parts` is empty.
    pub fn vstack(parts: &[&Features]) -> Result<Self, ModelError> {
        let first = parts.first().ok_or_else(|| ModelError::Shape("no parts to stack".into()))?;
        if parts.iter().any(|p| p.specs != first.specs) {
            return Err(ModelError::Shape("cannot stack parts with different columns".into()));
        }
        let views: Vec<_> = parts.iter().map(|p| p.values.view()).collect();
        let values =
            ndarray::concatenate(Axis(0), &views).map_err(|e| ModelError::Shape(e.to_string()))?;
        Ok(Self { specs: first.specs.clone(), values })
    }
}

/// Features with a binary label (`0.0` / `1.0`, 1 = default).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The feature matrix.
    pub features: Features,
    /// One label per row, `0.0` or `1.0`.
    pub label: Array1<f64>,
}

impl Dataset {
    /// Builds a dataset, checking that labels and rows agree and labels are 0/1.
    ///
    /// # Errors
    /// [`ModelError::Shape`] on a length mismatch, [`ModelError::InvalidInput`] on a label outside {0, 1}.
    pub fn new(features: Features, label: Array1<f64>) -> Result<Self, ModelError> {
        if features.n_rows() != label.len() {
            return Err(ModelError::Shape(format!(
                "{} rows of features but {} labels",
                features.n_rows(),
                label.len()
            )));
        }
        if let Some((i, v)) = label.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
            return Err(ModelError::InvalidInput(format!("label at row {i} is {v}, not 0 or 1")));
        }
        Ok(Self { features, label })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.label.len()
    }

    /// The rows at `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        Self { features: self.features.select_rows(rows), label: self.label.select(Axis(0), rows) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hstack_and_select_keep_specs_aligned() {
        let a = Features::new(vec![FeatureSpec::numeric("a")], array![[1.0], [2.0]]).unwrap();
        let b = Features::new(
            vec![FeatureSpec::categorical("b", vec!["x".into(), "y".into()])],
            array![[0.0], [1.0]],
        )
        .unwrap();
        let j = Features::hstack(&[&a, &b]).unwrap();
        assert_eq!(j.names(), vec!["a", "b"]);
        let r = j.select_rows(&[1]);
        assert_eq!(r.values, array![[2.0, 1.0]]);
        let c = j.select_columns(&[1]);
        assert!(c.specs[0].is_categorical());
    }

    #[test]
    fn mismatches_are_errors() {
        assert!(Features::new(vec![], array![[1.0]]).is_err());
        let a = Features::new(vec![FeatureSpec::numeric("a")], array![[1.0], [2.0]]).unwrap();
        let b = Features::new(vec![FeatureSpec::numeric("b")], array![[1.0]]).unwrap();
        assert!(Features::hstack(&[&a, &b]).is_err());
        assert!(Features::vstack(&[&a, &b]).is_err());
        assert!(Dataset::new(a.clone(), array![0.0, 2.0]).is_err());
        assert!(Dataset::new(a, array![0.0]).is_err());
    }

    #[test]
    fn conform_to_maps_levels_by_name_and_columns_by_name() {
        let have = Features::new(
            vec![
                FeatureSpec::categorical(
                    "sector",
                    vec!["food".into(), "retail".into(), "steel".into()],
                ),
                FeatureSpec::numeric("x"),
            ],
            ndarray::array![[0.0, 1.5], [2.0, f64::NAN], [1.0, 3.0]],
        )
        .unwrap();
        let want = vec![
            FeatureSpec::numeric("x"),
            FeatureSpec::categorical("sector", vec!["retail".into(), "food".into()]),
        ];
        let got = have.conform_to(&want).unwrap();
        assert_eq!(got.specs, want);
        assert_eq!(got.values[[0, 0]], 1.5);
        assert!(got.values[[1, 0]].is_nan());
        assert_eq!(got.values[[0, 1]], 1.0, "food is level 1 in the model");
        assert!(got.values[[1, 1]].is_nan(), "steel is unknown to the model");
        assert_eq!(got.values[[2, 1]], 0.0);
        let missing = vec![FeatureSpec::numeric("y")];
        assert!(have.conform_to(&missing).unwrap_err().to_string().contains("`y`"));
    }
}
