//! Aggregation strategies for horizontal training.
//!
//! FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from
//! Decentralized Data", AISTATS 2017) averages the parties' models weighted by their
//! row counts. Under secure aggregation the coordinator only ever holds the *sum* of
//! `rows_i · model_i` and the sum of `rows_i`, so the strategy is written on sums.

use thiserror::Error;

/// Why an aggregate cannot be turned into a model.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StrategyError {
    /// No rows stand behind the aggregate.
    #[error("the aggregate covers no rows")]
    NoRows,
    /// The aggregate has the wrong length.
    #[error("aggregate has {got} values, the model has {expected}")]
    Length {
        /// Model length.
        expected: usize,
        /// Aggregate length.
        got: usize,
    },
}

/// What each party contributes to a FedAvg round: its parameters scaled by its rows.
pub fn fedavg_contribution(params: &[f64], rows: u64) -> Vec<f64> {
    params.iter().map(|p| p * rows as f64).collect()
}

/// The FedAvg model from the (securely) aggregated sum of contributions and the total rows.
///
/// # Errors
/// [`StrategyError`] when `total_rows` is zero or the lengths differ.
pub fn fedavg_from_sum(
    weighted_sum: &[f64],
    total_rows: u64,
    n_params: usize,
) -> Result<Vec<f64>, StrategyError> {
    if total_rows == 0 {
        return Err(StrategyError::NoRows);
    }
    if weighted_sum.len() != n_params {
        return Err(StrategyError::Length { expected: n_params, got: weighted_sum.len() });
    }
    Ok(weighted_sum.iter().map(|s| s / total_rows as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fedavg_is_the_row_weighted_mean() {
        let a = fedavg_contribution(&[1.0, 2.0], 100);
        let b = fedavg_contribution(&[3.0, -2.0], 300);
        let sum: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let avg = fedavg_from_sum(&sum, 400, 2).unwrap();
        assert_eq!(avg, vec![2.5, -1.0]);
    }

    #[test]
    fn empty_or_misshapen_aggregates_are_errors() {
        assert_eq!(fedavg_from_sum(&[1.0], 0, 1), Err(StrategyError::NoRows));
        assert_eq!(
            fedavg_from_sum(&[1.0], 3, 2),
            Err(StrategyError::Length { expected: 2, got: 1 })
        );
    }
}
