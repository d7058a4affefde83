//! Party tables for fedcredit: loading, validation, joins, splits and the synthetic ecosystem.
//!
//! This crate is where polars ends: it reads a party's CSV or Parquet file and hands back
//! plain `ndarray` matrices in the [`fedcredit_models::Features`] layout that every model reads.
//!
//! - [`table`]: [`load_table`] reads one party's file as described by a [`TableSpec`]
//!   (the spec is embedded in participant TOML configs), detects numeric and text columns,
//!   encodes text as categorical levels and validates the schema with errors that name the
//!   file, the column and the 1-based data row.
//! - [`join`]: [`join_vertical`] aligns several parties' tables on the id (an in-memory,
//!   plaintext stand-in for PSI alignment, used for centralized baselines and tests).
//! - [`split`]: the project-wide hash-based stratified train/test split
//!   ([`stratified_split`], reproducible in Python), stratified horizontal partitioning and
//!   vertical partitioning by column names.
//! - [`synthetic`]: the seeded synthetic enterprise ecosystem (bank, tax bureau, e-commerce
//!   platform around a supply-chain graph), the project's embedded default dataset.
//! - [`applications`]: the seeded high-cardinality credit-application table as a [`Table`].
//! - [`inspect`]: [`inspect_table`], a summary of a file's columns, kinds, missing cells, text
//!   levels and repeated ids (`fedcredit data inspect`).
//!
//! Every fallible function returns [`DataError`].

pub mod applications;
pub mod inspect;
pub mod join;
pub mod split;
pub mod synthetic;
pub mod table;
pub mod write;

use std::path::PathBuf;

pub use applications::applications_table;
pub use inspect::{TableSummary, inspect_table};
pub use join::{JoinedTable, join_vertical};
pub use split::{Split, partition_horizontal, partition_vertical, stratified_split};
pub use synthetic::{Ecosystem, EcosystemConfig, PartyTables, generate};
pub use table::{Table, TableSpec, column_names, load_table};

/// Errors from loading, validating, joining, splitting and generating tables.
///
/// Row numbers in messages are 1-based data rows: the first row after the header is row 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or parsed.
    #[error("cannot read {}: {cause}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system or the parser said.
        cause: String,
    },
    /// The file name ends in an extension this crate does not read.
    #[error(
        "cannot read {}: unknown file extension, expected .csv, .tsv, .parquet or .pq",
        path.display()
    )]
    UnknownExtension {
        /// The file.
        path: PathBuf,
    },
    /// A column named in the spec is not in the file.
    #[error(
        "{}: {role} column `{column}` not found; the file has columns: {}",
        path.display(),
        available.join(", ")
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column the spec asked for.
        column: String,
        /// What the spec wanted it for (`id`, `label`, `feature`, ...).
        role: &'static str,
        /// The columns the file does have, in file order.
        available: Vec<String>,
    },
    /// The spec contradicts itself (for example a column both a feature and excluded).
    #[error("{}: invalid table spec: {reason}", path.display())]
    InvalidSpec {
        /// The file the spec describes.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file has a header but no data rows.
    #[error("{}: the table has no data rows", path.display())]
    EmptyTable {
        /// The file.
        path: PathBuf,
    },
    /// Two rows share an id (or an id and time value when the spec has a time column).
    #[error(
        "{}: duplicate id `{id}` in column `{column}` at data rows {first_row} and {second_row} (1-based)",
        path.display()
    )]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// The id column.
        column: String,
        /// The repeated id (with the time value after a `@` when keyed by id and time).
        id: String,
        /// 1-based data row of the first occurrence.
        first_row: usize,
        /// 1-based data row of the second occurrence.
        second_row: usize,
    },
    /// An id cell is empty or null.
    #[error("{}: id column `{column}` is missing at data row {row} (1-based)", path.display())]
    NullId {
        /// The file.
        path: PathBuf,
        /// The id column.
        column: String,
        /// 1-based data row.
        row: usize,
    },
    /// A label cell is empty or null.
    #[error("{}: label column `{column}` is missing at data row {row} (1-based)", path.display())]
    LabelMissing {
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
        /// 1-based data row.
        row: usize,
    },
    /// A label is not 0 or 1.
    #[error(
        "{}: label column `{column}` has value `{value}` at data row {row} (1-based); labels must be 0 or 1",
        path.display()
    )]
    LabelNotBinary {
        /// The file.
        path: PathBuf,
        /// The label column.
        column: String,
        /// 1-based data row.
        row: usize,
        /// The offending value as text.
        value: String,
    },
    /// A column that must be numeric holds text.
    #[error(
        "{}: text `{value}` in numeric column `{column}` at data row {row} (1-based); \
         list the column in categorical_columns if it is a category",
        path.display()
    )]
    TextInNumericColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// 1-based data row.
        row: usize,
        /// The offending text.
        value: String,
    },
    /// A numeric cell is +inf or -inf.
    #[error("{}: infinite value {value} in column `{column}` at data row {row} (1-based)", path.display())]
    InfiniteValue {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// 1-based data row.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A column of a type that is neither numeric, boolean nor text (dates, lists, ...).
    #[error(
        "{}: column `{column}` has type {dtype}, which is neither numeric nor text; exclude it",
        path.display()
    )]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The polars type name.
        dtype: String,
    },
    /// Tables that cannot be joined.
    #[error("cannot join tables: {0}")]
    Join(String),
    /// A parameter outside its range; names the parameter.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A column name asked for that the features do not have.
    #[error("unknown feature `{name}`; the features are: {}", available.join(", "))]
    UnknownFeature {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// A file could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: String,
    },
    /// A shape error from the shared feature types.
    #[error(transparent)]
    Model(#[from] fedcredit_models::ModelError),
}
