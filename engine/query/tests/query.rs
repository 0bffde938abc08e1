//! weir-query against a real store: one test binary, one module per topic.

#[path = "query/limits.rs"]
mod limits;
#[path = "query/pruning.rs"]
mod pruning;
#[path = "query/rollup.rs"]
mod rollup;

use std::time::Duration;

use weir_storage::{Durability, StoreConfig, WalConfig};

/// A store in `dir` with no WAL sync, 1 GiB buffers and nothing
/// configured; tests change what they need with `..store_config(dir)`.
pub(crate) fn store_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        wal: WalConfig {
            durability: Durability::None,
            segment_bytes: 64 << 20,
            queue_depth: 16,
            max_group_bytes: 1 << 20,
        },
        persist_buffer_bytes: 1 << 30,
        max_buffer_bytes: 1 << 30,
        tables: Default::default(),
        max_columns_per_table: 1_000,
        compaction_min_files: 8,
        file_delete_grace: Duration::from_secs(1),
        rollups: Vec::new(),
    }
}
