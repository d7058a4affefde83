//! Vertical join: several parties' tables about the same entities, aligned on the id.
//!
//! This is the in-memory, plaintext counterpart of PSI alignment (inner join on the id),
//! used for centralized baselines ("all parties pooled") and tests. Rows follow the order of
//! the label holder's table (the first table with a label, or the first table); feature
//! columns are placed side by side (`Features::hstack`) and a column name held by more than
//! one table is prefixed with its table's file stem (`host.x0`). [`JoinedTable::parts`] keeps
//! which columns came from which party, so callers can train on each party's columns alone.
//!
//! When every table has a time column the join key is the pair (id, time), so monthly panels
//! join month by month; otherwise it is the id alone.

use std::collections::{HashMap, HashSet};

use fedcredit_models::{Dataset, FeatureSpec, Features};
use ndarray::Array1;

use crate::DataError;
use crate::table::Table;

/// The result of [`join_vertical`].
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedTable {
    /// The ids held by every table, in the label holder's row order.
    pub ids: Vec<String>,
    /// The time value of each row, when every table has a time column.
    pub time: Option<Vec<String>>,
    /// All tables' features side by side, in table order.
    pub features: Features,
    /// The label, from the one table that has one.
    pub label: Option<Array1<f64>>,
    /// Per table, in input order: its name (the file stem, made unique with a `_2`, `_3`
    /// suffix when two tables share one) and the indices of its columns in `features`.
    pub parts: Vec<(String, Vec<usize>)>,
    /// Per table, in input order: how many of its rows found no partner in some other table.
    pub dropped: Vec<usize>,
}

impl JoinedTable {
    /// Number of joined rows.
    pub fn n_rows(&self) -> usize {
        self.ids.len()
    }

    /// Features and label as a model dataset.
    ///
    /// # Errors
    /// [`DataError::Join`] when no table had a label.
    pub fn dataset(&self) -> Result<Dataset, DataError> {
        let label = self
            .label
            .clone()
            .ok_or_else(|| DataError::Join("no table has a label column".into()))?;
        Ok(Dataset::new(self.features.clone(), label)?)
    }

    /// The columns of the part named `name` (as in [`JoinedTable::parts`]), with the names
    /// they have in the joined table.
    ///
    /// # Errors
    /// [`DataError::Join`] when there is no part of that name.
    pub fn part_features(&self, name: &str) -> Result<Features, DataError> {
        let (_, cols) = self.parts.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let names: Vec<&str> = self.parts.iter().map(|(n, _)| n.as_str()).collect();
            DataError::Join(format!("no part named `{name}`; the parts are {}", names.join(", ")))
        })?;
        Ok(self.features.select_columns(cols))
    }
}

/// Inner-joins `tables` on the id (or on id and time when every table has a time column).
///
/// # Errors
/// [`DataError::Join`] when `tables` is empty, when two tables have a label, when a table has
/// an id (or id and time) twice, or when no id is held by every table.
pub fn join_vertical(tables: &[Table]) -> Result<JoinedTable, DataError> {
    if tables.is_empty() {
        return Err(DataError::Join("no tables to join".into()));
    }
    let labelled: Vec<usize> = (0..tables.len()).filter(|&i| tables[i].label.is_some()).collect();
    if labelled.len() > 1 {
        return Err(DataError::Join(format!(
            "both {} and {} have a label column; exactly one party may hold the label",
            tables[labelled[0]].source.display(),
            tables[labelled[1]].source.display()
        )));
    }
    let anchor = labelled.first().copied().unwrap_or(0);
    let by_time = tables.iter().all(|t| t.time.is_some());
    let key = |t: &Table, r: usize| -> (String, String) {
        let time = if by_time { t.time.as_ref().map(|v| v[r].clone()) } else { None };
        (t.ids[r].clone(), time.unwrap_or_default())
    };

    // Row index of every key, per table.
    let mut lookups: Vec<HashMap<(String, String), usize>> = Vec::with_capacity(tables.len());
    for t in tables {
        let mut map = HashMap::with_capacity(t.n_rows());
        for r in 0..t.n_rows() {
            if map.insert(key(t, r), r).is_some() {
                return Err(DataError::Join(format!(
                    "{} holds id `{}` more than once{}",
                    t.source.display(),
                    t.ids[r],
                    if by_time { " at the same time" } else { "" }
                )));
            }
        }
        lookups.push(map);
    }

    // Rows of each table in the anchor's order.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];
    let a = &tables[anchor];
    for r in 0..a.n_rows() {
        let k = key(a, r);
        let hit: Option<Vec<usize>> = lookups.iter().map(|m| m.get(&k).copied()).collect();
        if let Some(hit) = hit {
            for (t, &row) in hit.iter().enumerate() {
                rows[t].push(row);
            }
        }
    }
    let n = rows[anchor].len();
    if n == 0 {
        let names: Vec<String> = tables.iter().map(|t| t.source.display().to_string()).collect();
        return Err(DataError::Join(format!("no id is held by all of {}", names.join(", "))));
    }
    let dropped = tables.iter().map(|t| t.n_rows() - n).collect();

    let names = part_names(tables);
    let collide = colliding_names(tables);
    let mut parts = Vec::with_capacity(tables.len());
    let mut selected = Vec::with_capacity(tables.len());
    let mut offset = 0;
    for ((t, r), name) in tables.iter().zip(&rows).zip(&names) {
        let mut f = t.features.select_rows(r);
        f.specs = f
            .specs
            .into_iter()
            .map(|s| {
                if collide.contains(s.name.as_str()) {
                    FeatureSpec { name: format!("{name}.{}", s.name), kind: s.kind }
                } else {
                    s
                }
            })
            .collect();
        let d = f.n_features();
        parts.push((name.clone(), (offset..offset + d).collect()));
        offset += d;
        selected.push(f);
    }
    let refs: Vec<&Features> = selected.iter().collect();
    let features = Features::hstack(&refs)?;
    let mut seen = HashSet::new();
    if let Some(dup) = features.specs.iter().find(|s| !seen.insert(s.name.as_str())) {
        return Err(DataError::Join(format!(
            "column name `{}` is still ambiguous after prefixing with the file stems",
            dup.name
        )));
    }
    let anchor_rows = &rows[anchor];
    let ids = anchor_rows.iter().map(|&r| a.ids[r].clone()).collect();
    let time = if by_time {
        a.time.as_ref().map(|t| anchor_rows.iter().map(|&r| t[r].clone()).collect())
    } else {
        None
    };
    let label = a.label.as_ref().map(|l| anchor_rows.iter().map(|&r| l[r]).collect());
    Ok(JoinedTable { ids, time, features, label, parts, dropped })
}

/// File stems, made unique with `_2`, `_3`, ... in input order.
fn part_names(tables: &[Table]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::new();
    tables
        .iter()
        .map(|t| {
            let stem = t.stem();
            let mut name = stem.clone();
            let mut k = 2;
            while !used.insert(name.clone()) {
                name = format!("{stem}_{k}");
                k += 1;
            }
            name
        })
        .collect()
}

/// Feature names that occur in more than one table.
fn colliding_names(tables: &[Table]) -> HashSet<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in tables {
        let unique: HashSet<&str> = t.features.specs.iter().map(|s| s.name.as_str()).collect();
        for name in unique {
            *count.entry(name).or_default() += 1;
        }
    }
    count.into_iter().filter(|(_, c)| *c > 1).map(|(n, _)| n.to_string()).collect()
}
