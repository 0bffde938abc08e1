use crate::{ColumnType, NameKind};

/// Why a write was rejected. Each variant names what a user needs to find the
/// offending input: the table, the column and the row of the request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: NameKind,
        name: String,
        reason: &'static str,
    },

    #[error(
        "type conflict in table {table:?}, column {column:?}, row {row}: column is {existing}, value is {incoming}"
    )]
    TypeConflict {
        table: String,
        column: String,
        row: usize,
        existing: ColumnType,
        incoming: ColumnType,
    },

    #[error(
        "table {table:?}, row {row}: column {column:?} is the table's time column and cannot be a tag or field"
    )]
    TimeColumnReused {
        table: String,
        column: String,
        row: usize,
    },

    #[error("table {table:?}, row {row}: column {column:?} is set twice in one point")]
    DuplicateColumn {
        table: String,
        column: String,
        row: usize,
    },

    #[error(
        "table {table:?}, column {column:?}, row {row}: {value} is not a finite number (NaN and infinities are rejected)"
    )]
    NonFiniteFloat {
        table: String,
        column: String,
        row: usize,
        value: f64,
    },

    #[error(
        "table {table:?}, row {row}: timestamp {timestamp_ns} ns is out of range (1970-01-01 to 2200-01-01; 0 means server time)"
    )]
    TimestampOutOfRange {
        table: String,
        row: usize,
        timestamp_ns: i64,
    },

    #[error(
        "table {table:?}, column {column:?}, row {row}: tag value is {len} bytes, more than the limit of {limit}"
    )]
    TagValueTooLong {
        table: String,
        column: String,
        row: usize,
        len: usize,
        limit: usize,
    },

    #[error("table {table:?}, column {column:?}: Arrow type {data_type} is not a Weir column type")]
    UnsupportedType {
        table: String,
        column: String,
        data_type: String,
    },

    #[error("table {table:?}: time column is {expected:?}, the batch's is {found:?}")]
    TimeColumnMismatch {
        table: String,
        expected: String,
        found: String,
    },

    #[error(
        "table {table:?} would be one table more than the limit of {limit} tables per write request"
    )]
    TooManyTables { table: String, limit: usize },

    #[error(
        "table {table:?}, row {row}: column {column:?} would be one column more than the limit of {limit} columns per write request"
    )]
    TooManyColumns {
        table: String,
        column: String,
        row: usize,
        limit: usize,
    },

    #[error(
        "table {table:?}, row {row}: the request would build more than {limit} cells (rows × columns, nulls included); send sparse columns in separate requests"
    )]
    TooManyCells {
        table: String,
        row: usize,
        limit: usize,
    },

    #[error("building the Arrow batch for table {table:?}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl Error {
    /// True when the error describes bad input rather than a fault of ours.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Error::Arrow { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
