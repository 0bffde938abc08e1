use std::path::PathBuf;

/// What went wrong in storage. Variants are named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write itself is invalid (names, types, values): the client's fault.
    #[error(transparent)]
    InvalidWrite(#[from] weir_model::Error),

    /// The write would grow a table past `max_columns_per_table`.
    #[error(
        "table {table:?} would have {columns} columns, more than the limit of {limit} (max_columns_per_table)"
    )]
    TableTooWide {
        table: String,
        columns: usize,
        limit: usize,
    },

    /// A write the rollup over its table cannot aggregate (a column of the
    /// wrong type): refused whole, so the rollup stays exact.
    #[error("rollup {rollup:?}: {reason}")]
    Rollup { rollup: String, reason: String },

    /// A write from outside to a rollup's table, which Weir writes.
    #[error("table {table:?} is a rollup of {source_table:?}; Weir writes it as rows arrive there")]
    RollupTable { table: String, source_table: String },

    #[error("WAL I/O on {path}: {source}")]
    WalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("WAL segment {path} is corrupt at byte {offset}: {reason}")]
    WalCorrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An earlier WAL write or fsync failed. After a failed fsync the state of
    /// the file is unknown, so the WAL refuses further writes until restart.
    #[error("the WAL is unavailable after an earlier failure: {0}")]
    WalFailed(String),

    #[error("the WAL is shut down")]
    WalClosed,

    #[error("encoding table {table:?} for the WAL: {source}")]
    WalEncode {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("writing Parquet file {path}: {source}")]
    ParquetWrite {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("reading Parquet file {path}: {source}")]
    ParquetRead {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("preparing batch of table {table:?} for Parquet: {source}")]
    Arrange {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("catalog {path}: {reason}")]
    Catalog { path: PathBuf, reason: String },

    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The store's configuration cannot work (rollups that conflict).
    #[error("storage configuration: {0}")]
    Config(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
