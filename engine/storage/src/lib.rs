//! Weir's storage engine: WAL with group commit, write buffer, Parquet
//! persistence, catalog, retention and compaction.
//!
//! What flows in: validated [`TableBatch`](weir_model::TableBatch)es from the
//! write path ([`Store::write`]). What flows out: durable acknowledgements,
//! and [`TableSnapshot`]s — buffer batches plus Parquet files, a consistent
//! view of a table — for the query engine.
//!
//! The life of a write:
//!
//! 1. [`Store::write`] checks the batches against the catalog's schemas (new
//!    tables and columns are added; a type conflict fails the whole request)
//!    and encodes them as one WAL record.
//! 2. The WAL thread appends queued records with one `write` and one fsync
//!    (group commit), applies them to the write buffer in log order, then
//!    acknowledges. [`Durability`] sets when a write counts as durable.
//! 3. Persistence (by size or interval, and at shutdown) freezes the buffer,
//!    writes Parquet per table and UTC day (sorted by tags then time, zstd),
//!    commits the files and `wal_persisted_through` to `catalog.json`
//!    atomically, then deletes the WAL segments it covered.
//! 4. On open, WAL segments after `wal_persisted_through` are replayed; a torn
//!    tail of the last segment is cut with a warning.
//!
//! Data directory layout: `catalog.json`, `wal/<segment>.wal`,
//! `tables/<table id>/<YYYY-MM-DD>/<file id>.parquet`, `LOCK`.

mod background;
mod buffer;
mod catalog;
mod error;
mod fsutil;
pub mod metrics;
mod parquet_files;
pub mod rollup;
mod storage_order;
mod store;
mod wal;

pub use background::{BackgroundConfig, spawn_background};
pub use catalog::{Catalog, FileMeta};
pub use error::{Error, Result};
pub use metrics::StorageMetrics;
pub use parquet_files::DAY_NS;
pub use rollup::RollupDef;
pub use store::{
    BufferLevel, BufferedBatch, DEFAULT_TIME_COLUMN, ParquetFile, PersistReport, Store,
    StoreConfig, TableOptions, TableSnapshot,
};
pub use wal::{Durability, WalConfig};
