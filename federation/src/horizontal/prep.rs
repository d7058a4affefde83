//! Federated preprocessing by secure sums: row and label counts, a mergeable quantile sketch on
//! a fixed grid, and the moments a linear encoder needs.
//!
//! **Grid sketch.** Every finite value `x` falls in a data-independent cell given by its sign,
//! its binary exponent and the top 10 bits of its mantissa (the IEEE-754 layout: the cell's
//! representative is `x` with the lower 42 mantissa bits cleared, so every value within a cell
//! is within a relative `2^-10 < 0.1 %` of it, and integers below 2048 are exact). Cells merge by
//! addition, so pooled counts are a secure sum. Two rounds: the *census* sums, per feature,
//! the count of values per `(sign, exponent)` (4096 slots) together with rows, positives and
//! missing counts; the *grid* round then sums, for the occupied exponents only, the count of
//! events and non-events per mantissa cell (1024 per exponent; 10 bits instead of 7 moved the
//! federated GBDT on default_credit from 0.0016 to 0.0008 AUC below the exact-edge model). Bin edges are then chosen from
//! the pooled `(representative, count)` pairs with exactly the centralized rules
//! (`BinMapper::from_weighted_values`, `equal_frequency_edges_weighted`,
//! `monotone_edges_weighted`), i.e. they equal the centralized edges on the grid-rounded
//! pooled values (in the spirit of mergeable summaries, Agarwal et al., PODS 2012).
//!
//! **Moments** (linear models): per numeric feature the sum of the non-missing values, then, once
//! the pooled mean is known, the sum of squared deviations from it (the two-pass form the
//! centralized `LinearEncoder::fit` uses). Values are scaled by a power of two learned from the
//! census exponents so every element lies within the secure-aggregation clip.
//!
//! **What the coordinator learns** (leakage table): pooled row and positive counts; pooled
//! missing counts per feature; the pooled histogram of every feature on the grid, split by
//! label, at < 0.1 % relative resolution (equivalently pooled counts per cell); pooled sums and
//! squared deviations per feature. Never one bank's own counts: every figure is a secure sum.

use serde::{Deserialize, Serialize};

use fedcredit_models::preprocess::ColumnStats;
use fedcredit_models::{Dataset, FeatureKind, FeatureSpec};

use super::{Aggregate, Task, TrainError};

/// Slots per feature in the census: sign bit × 11 exponent bits.
pub const EXPONENT_CELLS: usize = 4096;
/// Mantissa bits that name a grid cell within an exponent.
pub const MANTISSA_BITS: u32 = 10;
/// Mantissa cells per exponent.
pub const MANTISSA_CELLS: usize = 1 << MANTISSA_BITS;
const LOW_BITS: u32 = 52 - MANTISSA_BITS;

/// The census slot (sign, biased exponent) of a finite value.
pub fn exponent_cell(x: f64) -> usize {
    (x.to_bits() >> 52) as usize
}

/// The mantissa cell (top [`MANTISSA_BITS`] mantissa bits) of a finite value.
pub fn mantissa_cell(x: f64) -> usize {
    ((x.to_bits() >> LOW_BITS) as usize) & (MANTISSA_CELLS - 1)
}

/// The grid representative of `x`: `x` with its lower mantissa bits cleared.
pub fn grid_round(x: f64) -> f64 {
    f64::from_bits(x.to_bits() & !((1u64 << LOW_BITS) - 1))
}

/// The representative of cell (`exponent cell`, `mantissa cell`).
pub fn cell_value(exp_cell: usize, mant: usize) -> f64 {
    f64::from_bits(((exp_cell as u64) << 52) | ((mant as u64) << LOW_BITS))
}

/// A power of two `s` such that `|x · s| < 1` for every value in the occupied exponent cells.
pub fn scale_for(cells: &[u16]) -> f64 {
    let max_exp = cells.iter().map(|&c| i32::from(c & 0x7ff)).max().unwrap_or(1023);
    // |x| < 2^(e − 1023 + 1) for a normal value with biased exponent e; subnormals < 2^-1022.
    let p = (max_exp.max(1) - 1022).clamp(-1000, 1000);
    2f64.powi(-p)
}

/// The census task (no parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CensusTask {
    /// Features in the job.
    pub n_features: usize,
}

/// The grid task: the occupied exponent cells of each feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridTask {
    /// Sorted occupied census slots per feature.
    pub occupied: Vec<Vec<u16>>,
}

/// The moments tasks: scaled sums, then scaled squared deviations from `means`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MomentsTask {
    /// Per-feature power-of-two scale (0 for categorical features, which are skipped).
    pub scales: Vec<f64>,
    /// `None`: sums of values; `Some(means)`: sums of squared deviations from the means.
    pub means: Option<Vec<f64>>,
}

/// Pooled figures of the census round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Census {
    /// Training rows.
    pub rows: f64,
    /// Rows with label 1.
    pub positives: f64,
    /// Missing cells per feature.
    pub missing: Vec<f64>,
    /// Occupied census slots per feature.
    pub occupied: Vec<Vec<u16>>,
}

/// Per-feature pooled grid: `(representative, events, non_events)` for every occupied cell.
pub type Grid = Vec<Vec<(f64, f64, f64)>>;

/// Where the preprocessing stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prep {
    specs: Vec<FeatureSpec>,
    moments: bool,
    clip: f64,
    /// The census.
    pub census: Option<Census>,
    /// The grid.
    pub grid: Option<Grid>,
    sums: Option<Vec<f64>>,
    /// Encoder statistics (with `moments`).
    pub stats: Option<Vec<ColumnStats>>,
}

fn check_len(sum: &[f64], want: usize, what: &str) -> Result<(), TrainError> {
    if sum.len() != want {
        return Err(TrainError::Protocol(format!(
            "{what} sum has {} elements, expected {want}",
            sum.len()
        )));
    }
    Ok(())
}

/// A pooled count read back from a (fixed-point) sum.
pub(crate) fn count(v: f64) -> f64 {
    v.round().max(0.0)
}

impl Prep {
    /// Preprocessing for columns `specs`; `moments` adds the encoder statistics; `clip` bounds
    /// every element (counts and scaled sums are at most a party's rows).
    pub fn new(specs: Vec<FeatureSpec>, moments: bool, clip: f64) -> Self {
        Self { specs, moments, clip, census: None, grid: None, sums: None, stats: None }
    }

    /// Whether every round is done.
    pub fn is_done(&self) -> bool {
        self.grid.is_some() && (!self.moments || self.stats.is_some())
    }

    /// Drops the pooled grid counts once the edges are chosen, so that the trainer's
    /// checkpoint (written after every round) stays small.
    pub fn release_grid(&mut self) {
        if let Some(g) = self.grid.as_mut() {
            for cells in g {
                *cells = Vec::new();
            }
        }
    }

    /// The next round, or `None` when done.
    pub fn next(&self) -> Option<Aggregate> {
        let d = self.specs.len();
        let Some(census) = &self.census else {
            return Some(Aggregate {
                task: Task::Census(CensusTask { n_features: d }),
                vector_len: 2 + d + d * EXPONENT_CELLS,
                clip: self.clip,
                what: "census: rows, labels, exponents".into(),
            });
        };
        if self.grid.is_none() {
            let len: usize =
                census.occupied.iter().map(|o| o.len() * MANTISSA_CELLS * 2).sum::<usize>();
            return Some(Aggregate {
                task: Task::Grid(GridTask { occupied: census.occupied.clone() }),
                vector_len: len,
                clip: self.clip,
                what: "quantile sketch: grid counts by label".into(),
            });
        }
        if !self.moments || self.stats.is_some() {
            return None;
        }
        let scales = self.scales();
        Some(Aggregate {
            task: Task::Moments(MomentsTask { scales, means: self.means() }),
            vector_len: d,
            clip: self.clip,
            what: if self.sums.is_none() { "feature sums" } else { "feature deviations" }.into(),
        })
    }

    fn scales(&self) -> Vec<f64> {
        let Some(census) = &self.census else { return vec![0.0; self.specs.len()] };
        self.specs
            .iter()
            .zip(&census.occupied)
            .map(|(s, occ)| if s.is_categorical() { 0.0 } else { scale_for(occ) })
            .collect()
    }

    fn present(&self, f: usize) -> f64 {
        self.census.as_ref().map_or(0.0, |c| (c.rows - c.missing[f]).max(0.0))
    }

    fn means(&self) -> Option<Vec<f64>> {
        self.sums.as_ref().map(|sums| {
            sums.iter()
                .enumerate()
                .map(|(f, s)| {
                    let n = self.present(f);
                    if n > 0.0 { s / n } else { 0.0 }
                })
                .collect()
        })
    }

    /// Takes the sum of the last round.
    ///
    /// # Errors
    /// [`TrainError::Protocol`] on a sum of the wrong length; [`TrainError::Data`] when the
    /// pooled rows hold a single class or no rows.
    pub fn absorb(&mut self, sum: &[f64]) -> Result<(), TrainError> {
        let d = self.specs.len();
        if self.census.is_none() {
            check_len(sum, 2 + d + d * EXPONENT_CELLS, "census")?;
            let rows = count(sum[0]);
            let positives = count(sum[1]);
            if rows < 1.0 || positives < 1.0 || positives >= rows {
                return Err(TrainError::Data(format!(
                    "the pooled training rows hold {rows} rows with {positives} positives; \
                     training needs both classes"
                )));
            }
            let missing = sum[2..2 + d].iter().map(|&v| count(v)).collect();
            let occupied = (0..d)
                .map(|f| {
                    let base = 2 + d + f * EXPONENT_CELLS;
                    (0..EXPONENT_CELLS)
                        .filter(|&c| count(sum[base + c]) > 0.0)
                        .map(|c| c as u16)
                        .collect()
                })
                .collect();
            self.census = Some(Census { rows, positives, missing, occupied });
            return Ok(());
        }
        if self.grid.is_none() {
            let census =
                self.census.as_ref().ok_or_else(|| TrainError::Protocol("no census".into()))?;
            let len: usize = census.occupied.iter().map(|o| o.len() * MANTISSA_CELLS * 2).sum();
            check_len(sum, len, "grid")?;
            let mut grid = Vec::with_capacity(d);
            let mut at = 0;
            for occ in &census.occupied {
                let mut cells = Vec::new();
                for &c in occ {
                    for m in 0..MANTISSA_CELLS {
                        let (e, n) = (count(sum[at]), count(sum[at + 1]));
                        at += 2;
                        if e + n > 0.0 {
                            cells.push((cell_value(usize::from(c), m), e, n));
                        }
                    }
                }
                grid.push(cells);
            }
            self.grid = Some(grid);
            return Ok(());
        }
        check_len(sum, d, "moments")?;
        let scales = self.scales();
        let unscaled: Vec<f64> =
            sum.iter().zip(&scales).map(|(v, s)| if *s > 0.0 { v / s } else { 0.0 }).collect();
        if self.sums.is_none() {
            self.sums = Some(unscaled);
            return Ok(());
        }
        let (Some(census), Some(grid), Some(sums)) = (&self.census, &self.grid, &self.sums) else {
            return Err(TrainError::Protocol("moments before census".into()));
        };
        let stats = self
            .specs
            .iter()
            .enumerate()
            .map(|(f, spec)| match &spec.kind {
                FeatureKind::Numeric => ColumnStats::Numeric {
                    count: self.present(f),
                    sum: sums[f],
                    // Scaled twice (the deviations were squared after scaling).
                    sum_sq_dev: if scales[f] > 0.0 { unscaled[f] / scales[f] } else { 0.0 },
                },
                FeatureKind::Categorical { levels } => {
                    let mut level_counts = vec![0.0; levels.len()];
                    for &(v, e, n) in &grid[f] {
                        if v >= 0.0 && v.fract() == 0.0 && (v as usize) < levels.len() {
                            level_counts[v as usize] += e + n;
                        }
                    }
                    ColumnStats::Categorical { level_counts, missing: census.missing[f] }
                }
            })
            .collect();
        self.stats = Some(stats);
        Ok(())
    }
}

/// A party's census vector.
pub fn census_vector(data: &Dataset) -> Vec<f64> {
    let d = data.features.n_features();
    let mut v = vec![0.0; 2 + d + d * EXPONENT_CELLS];
    v[0] = data.n_rows() as f64;
    v[1] = data.label.iter().filter(|&&y| y == 1.0).count() as f64;
    for f in 0..d {
        for &x in data.features.values.column(f) {
            if x.is_nan() {
                v[2 + f] += 1.0;
            } else if x.is_finite() {
                v[2 + d + f * EXPONENT_CELLS + exponent_cell(x)] += 1.0;
            }
        }
    }
    v
}

/// A party's grid vector for `task`.
pub fn grid_vector(data: &Dataset, task: &GridTask) -> Result<Vec<f64>, TrainError> {
    let d = data.features.n_features();
    if task.occupied.len() != d {
        return Err(TrainError::Protocol(format!(
            "grid task for {} features, the table has {d}",
            task.occupied.len()
        )));
    }
    let mut bases = Vec::with_capacity(d);
    let mut at = 0;
    for occ in &task.occupied {
        bases.push(at);
        at += occ.len() * MANTISSA_CELLS * 2;
    }
    let mut v = vec![0.0; at];
    for (f, occ) in task.occupied.iter().enumerate() {
        for (&x, &y) in data.features.values.column(f).iter().zip(&data.label) {
            if !x.is_finite() {
                continue;
            }
            // A value in a slot the census did not see (a party that joined late) is left out.
            let Ok(k) = occ.binary_search(&(exponent_cell(x) as u16)) else { continue };
            let i = bases[f] + (k * MANTISSA_CELLS + mantissa_cell(x)) * 2;
            v[i + usize::from(y != 1.0)] += 1.0;
        }
    }
    Ok(v)
}

/// A party's moments vector for `task`.
pub fn moments_vector(data: &Dataset, task: &MomentsTask) -> Result<Vec<f64>, TrainError> {
    let d = data.features.n_features();
    if task.scales.len() != d || task.means.as_ref().is_some_and(|m| m.len() != d) {
        return Err(TrainError::Protocol(format!("moments task does not fit {d} features")));
    }
    let mut v = vec![0.0; d];
    for (f, out) in v.iter_mut().enumerate() {
        let s = task.scales[f];
        if s <= 0.0 {
            continue;
        }
        let col = data.features.values.column(f);
        *out = match &task.means {
            None => col.iter().filter(|x| x.is_finite()).map(|x| x * s).sum(),
            Some(means) => col
                .iter()
                .filter(|x| x.is_finite())
                .map(|x| {
                    let dev = (x - means[f]) * s;
                    dev * dev
                })
                .sum(),
        };
    }
    Ok(v)
}
