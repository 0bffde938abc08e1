use std::time::Duration;

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
            _ => Error::Execution(message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
