//! Weir's SQL engine: a DataFusion session whose tables are Weir's tables.
//!
//! What flows in: SQL text. What flows out: Arrow record batches, or an
//! [`Error`] that says whether the query was wrong ([`Error::InvalidQuery`]),
//! too big ([`Error::MemoryLimit`]), too slow ([`Error::Timeout`]) or hit a
//! fault.
//!
//! Each table is a [`WeirTable`]: at planning time it takes a
//! [`TableSnapshot`](weir_storage::TableSnapshot) from the store (buffered
//! batches + Parquet files, every acknowledged row exactly once) and scans the
//! union of both. Files and buffered batches are pruned by the time range
//! the query's filters imply, projections reach the Parquet reader, and the
//! filters are handed to it as a predicate for row-group and page pruning.
//! DataFusion still applies every filter above the scan, so pruning only
//! ever skips data that cannot match.
//!
//! Queries are read-only (no DDL, DML or `SET`), and each runs in its own
//! session with a memory pool of `memory_limit` bytes, a cap on its answer
//! and a `timeout`. Text size and nesting depth are checked before planning
//! (`complexity`), and queries run on their own large-stack threads, so no
//! query text can overflow a stack and abort the process.

mod complexity;
mod date_trunc;
mod engine;
mod error;
mod postgres;
mod rollup;
mod sketch;
mod table;
mod time_range;

pub use complexity::{MAX_SQL_BYTES, MAX_SQL_DEPTH};
pub use datafusion::common::ScalarValue;
pub use engine::{
    Dialect, QueryConfig, QueryEngine, QueryMetrics, QueryResult, QueryStream, SystemTable,
    check_size,
};
pub use error::{Error, Result};
pub use table::WeirTable;
pub use time_range::TimeRange;
