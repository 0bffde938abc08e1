//! Storage's own metrics. The registry they join belongs to whoever runs the
//! store (the server); the buffer's size, which drives backpressure, is not a
//! metric but [`BufferLevel`](crate::store::BufferLevel), exported from there.

use weir_metrics::{Counter, Gauge, Latency, Registry};

/// Storage's own metrics.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    pub wal_bytes: Counter,
    pub wal_records: Counter,
    pub wal_group_commits: Counter,
    pub wal_fsyncs: Counter,
    pub wal_fsync_seconds: Latency,
    pub wal_replayed_records: Counter,
    pub wal_torn_tails_cut: Counter,
    pub write_backpressure_waits: Counter,
    pub persist_runs: Counter,
    pub persist_seconds: Latency,
    pub persisted_files: Counter,
    pub persisted_rows: Counter,
    pub parquet_files: Gauge,
    pub parquet_bytes: Gauge,
    pub compactions: Counter,
    pub compacted_files: Counter,
    pub retention_dropped_partitions: Counter,
    pub retention_dropped_files: Counter,
}

impl StorageMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_wal_bytes",
            "Bytes appended to the WAL",
            self.wal_bytes.clone(),
        );
        registry.register(
            "weir_wal_records",
            "Write records appended to the WAL",
            self.wal_records.clone(),
        );
        registry.register(
            "weir_wal_group_commits",
            "Group commits (one write + sync for many records)",
            self.wal_group_commits.clone(),
        );
        registry.register("weir_wal_fsyncs", "WAL fsyncs", self.wal_fsyncs.clone());
        registry.register(
            "weir_wal_fsync_seconds",
            "WAL fsync latency",
            self.wal_fsync_seconds.clone(),
        );
        registry.register(
            "weir_wal_replayed_records",
            "WAL records replayed at start-up",
            self.wal_replayed_records.clone(),
        );
        registry.register(
            "weir_wal_torn_tails_cut",
            "Torn or corrupt WAL tails cut at start-up",
            self.wal_torn_tails_cut.clone(),
        );
        registry.register(
            "weir_write_backpressure_waits",
            "Writes that waited for the buffer to drain to Parquet",
            self.write_backpressure_waits.clone(),
        );
        registry.register(
            "weir_persist_runs",
            "Buffer persistence runs",
            self.persist_runs.clone(),
        );
        registry.register(
            "weir_persist_seconds",
            "Duration of a persistence run",
            self.persist_seconds.clone(),
        );
        registry.register(
            "weir_persisted_files",
            "Parquet files written by persistence",
            self.persisted_files.clone(),
        );
        registry.register(
            "weir_persisted_rows",
            "Rows persisted to Parquet",
            self.persisted_rows.clone(),
        );
        registry.register(
            "weir_parquet_files",
            "Parquet files in the catalog",
            self.parquet_files.clone(),
        );
        registry.register(
            "weir_parquet_bytes",
            "Bytes of Parquet files in the catalog",
            self.parquet_bytes.clone(),
        );
        registry.register(
            "weir_compactions",
            "Partitions compacted",
            self.compactions.clone(),
        );
        registry.register(
            "weir_compacted_files",
            "Files merged away by compaction",
            self.compacted_files.clone(),
        );
        registry.register(
            "weir_retention_dropped_partitions",
            "Partitions dropped by retention",
            self.retention_dropped_partitions.clone(),
        );
        registry.register(
            "weir_retention_dropped_files",
            "Files dropped by retention",
            self.retention_dropped_files.clone(),
        );
    }
}
