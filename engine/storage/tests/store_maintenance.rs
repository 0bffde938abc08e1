//! Persistence, compaction and retention through the `Store` API: every row
//! is seen exactly once — in the buffer or in a file — before, during and
//! after each step, and across reopening.

use std::collections::HashMap;
use std::time::Duration;

use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_storage::{DAY_NS, Durability, Store, StoreConfig, TableOptions, WalConfig};

fn config(dir: &std::path::Path, retention: Option<Duration>) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        wal: WalConfig {
            durability: Durability::Fsync,
            segment_bytes: 4096, // tiny: exercise segment rolling
            queue_depth: 16,
            max_group_bytes: 1 << 20,
        },
        persist_buffer_bytes: 1 << 30,
        max_buffer_bytes: 1 << 30,
        tables: HashMap::from([(
            "m".to_string(),
            TableOptions {
                time_column: Some("ts".into()),
                retention,
            },
        )]),
        max_columns_per_table: 1_000,
        compaction_min_files: 3,
        file_delete_grace: Duration::from_millis(10),
        rollups: Vec::new(),
    }
}

/// `rows` rows of table `m`, on day `day`, with values from `first`.
fn rows(day: i64, first: i64, rows: i64) -> Vec<TableBatch> {
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("m", "ts").unwrap();
    let host = b.column(t, "host", ColumnType::Tag, 0).unwrap();
    let v = b.column(t, "v", ColumnType::I64, 0).unwrap();
    for i in 0..rows {
        let row = i as usize;
        b.begin_point(t, row, day * DAY_NS + 1000 + first + i)
            .unwrap();
        b.set(t, host, row, Value::Tag(["a", "b", "c"][(i % 3) as usize]))
            .unwrap();
        b.set(t, v, row, Value::I64(first + i)).unwrap();
    }
    b.finish().unwrap()
}

/// All values of column `v`, from buffer and files, sorted.
fn values(store: &Store) -> Vec<i64> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let snapshot = store.snapshot("m").unwrap().unwrap();
    let mut out: Vec<i64> = Vec::new();
    for batch in &snapshot.buffered {
        let column = batch.batch.column(2);
        out.extend(column.as_primitive::<Int64Type>().values().iter());
    }
    for file in &snapshot.files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file.path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            out.extend(
                batch
                    .column_by_name("v")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter(),
            );
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_compact_and_reopen_keep_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::block_in_place(|| Store::open(config(dir.path(), None))).unwrap();
    let mut expected = Vec::new();
    for round in 0..4 {
        store.write(rows(20_000, round * 100, 100)).await.unwrap();
        expected.extend(round * 100..round * 100 + 100);
        assert_eq!(values(&store), expected, "round {round}, buffered");
        let report = store.persist().await.unwrap();
        assert_eq!(report.rows, 100);
        assert_eq!(values(&store), expected, "round {round}, persisted");
    }
    assert_eq!(store.snapshot("m").unwrap().unwrap().files.len(), 4);
    // Only segments after the last persistence remain.
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert_eq!(segments, 1, "persisted WAL segments are removed");

    assert_eq!(store.compact().await.unwrap(), 1);
    let snapshot = store.snapshot("m").unwrap().unwrap();
    assert_eq!(snapshot.files.len(), 1);
    assert_eq!(snapshot.files[0].rows, 400);
    assert_eq!(values(&store), expected, "after compaction");
    assert_eq!(store.metrics().compacted_files.get(), 4);

    // Rows written after compaction stay in the WAL until persisted; reopening
    // replays them next to the compacted file.
    store.write(rows(20_000, 1000, 10)).await.unwrap();
    expected.extend(1000..1010);
    drop(store); // no shutdown: the last write is only in the WAL
    let store = tokio::task::block_in_place(|| Store::open(config(dir.path(), None))).unwrap();
    assert_eq!(values(&store), expected, "after reopening");
    assert_eq!(store.metrics().wal_replayed_records.get(), 1);
    assert_eq!(store.time_column_for("m"), "ts");
    // Replaced files are deleted after the grace period.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_disk = walk(&dir.path().join("tables"));
    assert_eq!(on_disk, store.snapshot("m").unwrap().unwrap().files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_old_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = tokio::task::block_in_place(|| {
        Store::open(config(dir.path(), Some(Duration::from_secs(2 * 86_400))))
    })
    .unwrap();
    // Days 100, 101 and 103; "now" is in day 103, so day 100 and 101 end more
    // than two days ago... day 101 ends at the start of day 102: 1.5 days ago.
    store.write(rows(100, 0, 30)).await.unwrap();
    store.write(rows(101, 100, 30)).await.unwrap();
    store.write(rows(103, 200, 30)).await.unwrap();
    store.persist().await.unwrap();
    assert_eq!(store.snapshot("m").unwrap().unwrap().files.len(), 3);
    let now = 103 * DAY_NS + DAY_NS / 2;
    assert_eq!(store.enforce_retention(now).await.unwrap(), 1);
    let remaining = values(&store);
    assert_eq!(remaining.len(), 60);
    assert!(
        remaining.iter().all(|v| *v >= 100),
        "day 100 is gone, day 101 kept"
    );
    assert_eq!(store.enforce_retention(now).await.unwrap(), 0, "idempotent");
    assert_eq!(store.metrics().retention_dropped_partitions.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = tokio::task::block_in_place(|| Store::open(config(dir.path(), None))).unwrap();
    let second = tokio::task::block_in_place(|| Store::open(config(dir.path(), None)));
    let err = second.err().expect("second open must fail").to_string();
    assert!(err.contains("in use by another weir process"), "{err}");
}

fn walk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += walk(&path);
        } else {
            n += 1;
        }
    }
    n
}
