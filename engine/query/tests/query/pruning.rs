//! The table provider over buffer + Parquet: correct answers either way,
//! files outside the queried time range are not read, and EXPLAIN shows it.

use std::time::Duration;

use weir_model::{ColumnType, Value, WriteBatchBuilder};
use weir_query::{QueryConfig, QueryEngine};
use weir_storage::{DAY_NS, Store};

pub(crate) fn store(dir: &std::path::Path) -> Store {
    tokio::task::block_in_place(|| Store::open(crate::store_config(dir))).unwrap()
}

async fn write_day(store: &Store, day: i64, rows: i64) {
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("m", "time").unwrap();
    let v = b.column(t, "v", ColumnType::I64, 0).unwrap();
    for i in 0..rows {
        b.begin_point(t, i as usize, day * DAY_NS + i).unwrap();
        b.set(t, v, i as usize, Value::I64(day)).unwrap();
    }
    store.write(b.finish().unwrap()).await.unwrap();
}

async fn text(engine: &QueryEngine, sql: &str) -> String {
    let result = engine.sql(sql).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&result.batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_prune_parquet_files_and_buffered_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    write_day(&store, 20_000, 10).await;
    write_day(&store, 20_001, 20).await;
    store.persist().await.unwrap();
    write_day(&store, 20_002, 5).await; // stays in the buffer
    write_day(&store, 20_003, 3).await; // a second buffered batch
    let engine = QueryEngine::new(
        store.clone(),
        QueryConfig {
            memory_limit: 256 << 20,
            timeout: Duration::from_secs(30),
            target_partitions: 2,
            max_result_bytes: 64 << 20,
        },
    )
    .unwrap();
    let all = "SELECT v, COUNT(*) AS n FROM m GROUP BY v ORDER BY v";
    let expected = "\
+-------+----+
| v     | n  |
+-------+----+
| 20000 | 10 |
| 20001 | 20 |
| 20002 | 5  |
| 20003 | 3  |
+-------+----+";
    assert_eq!(text(&engine, all).await, expected);

    // 20001 days after the epoch is 2024-10-05.
    let one_day = "SELECT COUNT(*) AS n FROM m WHERE time >= '2024-10-05T00:00:00Z' AND time < '2024-10-06T00:00:00Z'";
    assert!(text(&engine, one_day).await.contains("| 20 |"));
    let plan = text(&engine, &format!("EXPLAIN {one_day}")).await;
    assert_eq!(
        plan.matches(".parquet").count(),
        1,
        "only the 2024-10-05 file is scanned:\n{plan}"
    );
    assert!(plan.contains("2024-10-05"), "{plan}");

    // Buffered batches are skipped by the same range: 2024-10-06 is one
    // buffered batch, no file.
    let buffered_day = "SELECT COUNT(*) AS n FROM m WHERE time >= '2024-10-06T00:00:00Z' AND time < '2024-10-07T00:00:00Z'";
    assert!(text(&engine, buffered_day).await.contains("| 5 |"));
    let plan = text(&engine, &format!("EXPLAIN {buffered_day}")).await;
    assert_eq!(plan.matches(".parquet").count(), 0, "{plan}");
    assert!(
        plan.contains("partition_sizes=[1]"),
        "one buffered batch:\n{plan}"
    );

    let none = "SELECT COUNT(*) AS n FROM m WHERE time < '1990-01-01T00:00:00Z'";
    let plan = text(&engine, &format!("EXPLAIN {none}")).await;
    assert_eq!(plan.matches(".parquet").count(), 0, "{plan}");
    assert!(
        !plan.contains("partition_sizes"),
        "no buffered batch:\n{plan}"
    );
    assert!(text(&engine, none).await.contains("| 0 |"));
}
