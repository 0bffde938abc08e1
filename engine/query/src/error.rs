use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL does not parse, plan, or names something that does not exist.
    #[error("invalid query: {0}")]
    InvalidQuery(String),

    #[error("query refused: {0} (queries are read-only)")]
    NotReadOnly(String),

    #[error("query exceeded its memory limit of {limit_bytes} bytes: {detail}")]
    MemoryLimit { limit_bytes: usize, detail: String },

    #[error("query text is {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },

    #[error(
        "query nests {what} at least {depth} levels deep, more than the limit of {limit}; flatten it (e.g. `x IN (…)` instead of a chain of ORs, a VALUES list instead of a chain of UNIONs)"
    )]
    TooDeep {
        what: &'static str,
        depth: usize,
        limit: usize,
    },

    #[error(
        "query result exceeded {limit} bytes (query_max_result_size); aggregate, filter or add a LIMIT"
    )]
    ResultTooLarge { limit: usize },

    #[error("query returned more than {limit} rows, the most this caller keeps")]
    TooManyRows { limit: usize },

    /// The query is valid but failed on the data: a cast that does not
    /// parse, a division by zero, an overflow.
    #[error("query failed: {0}")]
    DataError(String),

    #[error("query exceeded its timeout of {timeout:?}")]
    Timeout { timeout: Duration },

    #[error("executing query: {0}")]
    Execution(String),

    #[error(transparent)]
    Storage(#[from] weir_storage::Error),
}

impl Error {
    /// Sorts a DataFusion error into what the user can act on.
    pub(crate) fn from_datafusion(e: DataFusionError, memory_limit: usize) -> Self {
        let message = e.strip_backtrace();
        // SQLOptions refusals arrive as plan errors: "DDL not supported: …".
        if [
            "DDL not supported",
            "DML not supported",
            "Statement not supported",
        ]
        .iter()
        .any(|refusal| message.contains(refusal))
        {
            return Error::NotReadOnly(message);
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(detail) => Error::MemoryLimit {
                limit_bytes: memory_limit,
                detail: detail.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Error::InvalidQuery(message),
            // DataFusion raises `exec_err!` for what the user asked of the
            // data (bad arguments, invalid casts); Arrow's compute errors
            // are the same. Engine faults are `Internal`, I/O and the rest.
            DataFusionError::Execution(_) => Error::DataError(message),
            DataFusionError::ArrowError(arrow_error, _) => match arrow_error.as_ref() {
                ArrowError::CastError(_)
                | ArrowError::ParseError(_)
                | ArrowError::DivideByZero
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::InvalidArgumentError(_)
                | ArrowError::ComputeError(_) => Error::DataError(message),
                _ => Error::Execution(message),
            },
            _ => Error::Execution(message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
