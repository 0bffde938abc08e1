//! Weir's data model: points, typed values, table schemas and their Arrow form.
//!
//! What flows in: rows of a write request — a table name, a timestamp, tags
//! (string key/values, the series identity) and typed fields — appended
//! through [`WriteBatchBuilder`]. What flows out: one Arrow [`RecordBatch`] per
//! table ([`TableBatch`]), column-major and ready for the WAL, the write
//! buffer and Parquet. [`TableSchema`] is a table's column set as the catalog
//! keeps it, and [`conform`] lines a batch up with it.
//!
//! The validation policy for untrusted input lives here, so every front end
//! (gRPC, import, WAL replay, later the plugin pipeline) applies the same one:
//!
//! - names of tables and columns: 1..=256 bytes of UTF-8 without control
//!   characters; a column may not reuse the table's time column name;
//! - floats must be finite: NaN and ±infinity are rejected, not stored;
//! - timestamps are nanoseconds since the Unix epoch in
//!   `[1970-01-01, 2200-01-01)`; `0` means "now, by the server's clock";
//! - table names starting with `weir_` are Weir's own: only Weir writes them
//!   ([`WriteBatchBuilder::for_system_tables`]);
//! - one request may name at most [`WriteLimits`] tables and columns, and
//!   build at most as many cells (rows × columns), so a request's memory is
//!   bounded by configuration, not by how sparse it is;
//! - a column has one type per table: a tag is a tag, an `f64` stays an `f64`.
//!   A conflict names the table, the column, the request row and both types.
//!
//! This crate does no I/O.
//!
//! [`RecordBatch`]: arrow::record_batch::RecordBatch

mod batch;
mod column;
mod error;
mod names;
mod schema;

pub use batch::{ColumnId, TableBatch, TableId, WriteBatchBuilder, WriteLimits};
pub use column::{ColumnType, TIME_ZONE, Value, time_data_type};
pub use error::{Error, Result};
pub use names::{
    MAX_NAME_BYTES, MAX_TAG_VALUE_BYTES, NameKind, SYSTEM_TABLE_PREFIX, check_not_system_table,
    is_system_table, validate_name,
};
pub use schema::{ColumnDef, TableSchema, conform};

/// The time column of a table that neither its writer nor the configuration
/// names.
pub const DEFAULT_TIME_COLUMN: &str = "time";

/// Earliest accepted timestamp (inclusive): the Unix epoch.
pub const MIN_TIMESTAMP_NS: i64 = 0;
/// Latest accepted timestamp (exclusive): 2200-01-01T00:00:00Z. Far enough for
/// any monitoring data, and far from `i64` overflow in time arithmetic.
pub const MAX_TIMESTAMP_NS: i64 = 7_258_118_400 * 1_000_000_000;
