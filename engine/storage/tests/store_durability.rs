//! Durability modes and backpressure through the `Store` API.

use std::collections::HashMap;
use std::time::Duration;

use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_storage::{Durability, Store, StoreConfig, WalConfig};

fn config(dir: &std::path::Path, durability: Durability, max_buffer_bytes: usize) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        wal: WalConfig {
            durability,
            segment_bytes: 64 << 20,
            queue_depth: 4,
            max_group_bytes: 1 << 20,
        },
        persist_buffer_bytes: max_buffer_bytes,
        max_buffer_bytes,
        tables: HashMap::new(),
        max_columns_per_table: 1_000,
        compaction_min_files: 8,
        file_delete_grace: Duration::from_millis(10),
        rollups: Vec::new(),
    }
}

fn rows(first: i64, n: i64) -> Vec<TableBatch> {
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("m", "time").unwrap();
    let v = b.column(t, "v", ColumnType::I64, 0).unwrap();
    for i in 0..n {
        b.begin_point(t, i as usize, 1_000 + first + i).unwrap();
        b.set(t, v, i as usize, Value::I64(first + i)).unwrap();
    }
    b.finish().unwrap()
}

fn open(dir: &std::path::Path, durability: Durability, max_buffer_bytes: usize) -> Store {
    tokio::task::block_in_place(|| Store::open(config(dir, durability, max_buffer_bytes))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_mode_syncs_every_group_interval_mode_on_tick_none_on_writes_never() {
    let dir = tempfile::tempdir().unwrap();
    let fsync = open(&dir.path().join("fsync"), Durability::Fsync, 1 << 30);
    for i in 0..3 {
        fsync.write(rows(i * 10, 10)).await.unwrap();
    }
    assert_eq!(
        fsync.metrics().wal_fsyncs.get(),
        3,
        "one fsync per (sequential) group commit"
    );

    let interval = open(
        &dir.path().join("interval"),
        Durability::Interval(Duration::from_secs(3600)),
        1 << 30,
    );
    interval.write(rows(0, 10)).await.unwrap();
    assert_eq!(
        interval.metrics().wal_fsyncs.get(),
        0,
        "acknowledged before any fsync"
    );
    interval.sync_wal().await;
    interval.write(rows(10, 1)).await.unwrap(); // queued behind the tick: the tick has run
    assert_eq!(
        interval.metrics().wal_fsyncs.get(),
        1,
        "the periodic tick syncs"
    );

    let none = open(&dir.path().join("none"), Durability::None, 1 << 30);
    none.write(rows(0, 10)).await.unwrap();
    none.write(rows(10, 10)).await.unwrap();
    assert_eq!(none.metrics().wal_fsyncs.get(), 0, "writes never fsync");
    for store in [fsync, interval, none] {
        store.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_holds_writes_back_until_persistence_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    // Any batch fills a 1-byte buffer.
    let store = open(dir.path(), Durability::Fsync, 1);
    store.write(rows(0, 100)).await.unwrap();
    let blocked = tokio::spawn({
        let store = store.clone();
        async move { store.write(rows(100, 100)).await }
    });
    for _ in 0..200 {
        if store.metrics().write_backpressure_waits.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.metrics().write_backpressure_waits.get(),
        1,
        "the second write waits"
    );
    assert!(
        !blocked.is_finished(),
        "and is not acknowledged while the buffer is full"
    );
    store.persist().await.unwrap();
    assert_eq!(
        blocked.await.unwrap().unwrap(),
        100,
        "persistence freed the buffer"
    );
    // The write that waited landed in the generation filling meanwhile,
    // which the same run persists too (it is over persist_buffer_bytes).
    let snapshot = store.snapshot("m").unwrap().unwrap();
    let in_files: u64 = snapshot.files.iter().map(|f| f.rows).sum();
    let buffered: usize = snapshot.buffered.iter().map(|b| b.batch.num_rows()).sum();
    assert_eq!(in_files + buffered as u64, 200);
    assert!(in_files >= 100, "{in_files}");
}
