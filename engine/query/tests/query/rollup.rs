//! Rollups answer exactly what the raw rows answer: differential tests over
//! random rows written late and out of order, across persistence,
//! compaction, retention, restart and a changed definition.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_model::{ColumnType, Value, WriteBatchBuilder};
use weir_query::{QueryConfig, QueryEngine};
use weir_storage::{DAY_NS, RollupDef, Store, StoreConfig, TableOptions};

const HOUR_NS: i64 = 3_600_000_000_000;
/// 2024-10-04T00:00:00Z.
const FIRST_DAY: i64 = 20_000;
const DAYS: i64 = 4;

fn aggregates(extra: bool) -> Vec<(String, String)> {
    let mut a = vec![
        ("checks", "count(*)"),
        ("healthy", "count_if(status = 'healthy')"),
        ("slow", "count_if(response_ms >= 250)"),
        ("ms_min", "min(response_ms)"),
        ("ms_max", "max(response_ms)"),
        ("ms_sum", "sum(response_ms)"),
        ("ms", "avg(response_ms)"),
        ("ms_sketch", "quantile_sketch(response_ms)"),
    ];
    if extra {
        a.push(("up", "count_if(up = true)"));
    }
    a.into_iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn rollup(extra: bool) -> RollupDef {
    RollupDef::new(
        "m_1h",
        "m",
        Duration::from_secs(3600),
        vec!["service_name".into()],
        &aggregates(extra),
    )
    .unwrap()
}

fn open(dir: &std::path::Path, rollups: Vec<RollupDef>) -> weir_storage::Result<Store> {
    let mut tables = HashMap::new();
    tables.insert(
        "m".to_string(),
        TableOptions {
            time_column: Some("recorded_at".into()),
            retention: Some(Duration::from_secs(2 * 86_400)),
        },
    );
    tokio::task::block_in_place(|| {
        Store::open(StoreConfig {
            tables,
            compaction_min_files: 2,
            file_delete_grace: Duration::from_millis(10),
            rollups,
            ..crate::store_config(dir)
        })
    })
}

fn engine(store: &Store) -> QueryEngine {
    QueryEngine::new(
        store.clone(),
        QueryConfig {
            memory_limit: 256 << 20,
            timeout: Duration::from_secs(30),
            target_partitions: 2,
            max_result_bytes: 64 << 20,
        },
    )
    .unwrap()
}

/// Writes `rows` random rows in one request, at random instants of the
/// test's days: late and out of order by construction.
async fn write_random(store: &Store, rng: &mut StdRng, rows: usize) {
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("m", "recorded_at").unwrap();
    let service = b.column(t, "service_name", ColumnType::Tag, 0).unwrap();
    let status = b.column(t, "status", ColumnType::String, 0).unwrap();
    let ms = b.column(t, "response_ms", ColumnType::F64, 0).unwrap();
    let up = b.column(t, "up", ColumnType::Bool, 0).unwrap();
    for row in 0..rows {
        let at = FIRST_DAY * DAY_NS + rng.random_range(0..DAYS * DAY_NS);
        b.begin_point(t, row, at).unwrap();
        // Some rows have no service (a null group) or no value.
        if rng.random_bool(0.95) {
            let name = format!("svc-{}", rng.random_range(0..7));
            b.set(t, service, row, Value::Tag(&name)).unwrap();
        }
        if rng.random_bool(0.9) {
            let s = ["healthy", "degraded", "down"][rng.random_range(0..3)];
            b.set(t, status, row, Value::String(s)).unwrap();
        }
        if rng.random_bool(0.9) {
            let v = (rng.random_range(0..500_000) as f64) / 1000.0;
            b.set(t, ms, row, Value::F64(v)).unwrap();
        }
        b.set(t, up, row, Value::Bool(rng.random_bool(0.8)))
            .unwrap();
    }
    store.write(b.finish().unwrap()).await.unwrap();
}

/// What the raw rows say, computed by SQL over `m`.
const RAW: &str = "SELECT date_trunc('hour', recorded_at) AS bucket,
        CAST(service_name AS VARCHAR) AS service,
        count(*) AS checks,
        count(*) FILTER (WHERE status = 'healthy') AS healthy,
        count(*) FILTER (WHERE response_ms >= 250) AS slow,
        min(response_ms) AS ms_min, max(response_ms) AS ms_max,
        sum(response_ms) AS ms_sum, avg(response_ms) AS ms,
        sketch_quantile(quantile_sketch(response_ms), 0.5) AS p50,
        sketch_quantile(quantile_sketch(response_ms), 0.99) AS p99,
        sketch_count(quantile_sketch(response_ms)) AS sketched
    FROM m GROUP BY 1, 2 ORDER BY 1, 2";

/// The same from the rollup.
const ROLLUP: &str = "SELECT recorded_at AS bucket, CAST(service_name AS VARCHAR) AS service,
        checks, healthy, slow, ms_min, ms_max, ms_sum, ms,
        sketch_quantile(ms_sketch, 0.5), sketch_quantile(ms_sketch, 0.99), sketch_count(ms_sketch)
    FROM m_1h ORDER BY 1, 2";

/// Groups whose raw rows' sketch and rollup sketch differ by a byte (or
/// that only one side has): none, as merging sketches is exact.
const SKETCHES_DIFFER: &str = "SELECT count(*) FROM
    (SELECT date_trunc('hour', recorded_at) AS b, CAST(service_name AS VARCHAR) AS s,
            quantile_sketch(response_ms) AS q FROM m GROUP BY 1, 2) raw
    FULL JOIN (SELECT recorded_at AS b, CAST(service_name AS VARCHAR) AS s, ms_sketch AS q
               FROM m_1h) rolled
    ON raw.b = rolled.b AND raw.s IS NOT DISTINCT FROM rolled.s
    WHERE raw.q IS DISTINCT FROM rolled.q";

type Row = (i64, Option<String>, Vec<Option<f64>>);

async fn rows(engine: &QueryEngine, sql: &str) -> Vec<Row> {
    let result = engine.sql(sql).await.unwrap();
    let mut out = Vec::new();
    for batch in &result.batches {
        out.extend(decode(batch));
    }
    out
}

fn decode(batch: &RecordBatch) -> Vec<Row> {
    let time = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
    let time = time.as_primitive::<Int64Type>();
    let service = arrow::compute::cast(batch.column(1), &DataType::Utf8).unwrap();
    let service = service.as_string::<i32>();
    let values: Vec<_> = (2..batch.num_columns())
        .map(|i| arrow::compute::cast(batch.column(i), &DataType::Float64).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|r| {
            let v = values
                .iter()
                .map(|c| {
                    let c = c.as_primitive::<Float64Type>();
                    c.is_valid(r).then(|| c.value(r))
                })
                .collect();
            (
                time.value(r),
                service.is_valid(r).then(|| service.value(r).to_string()),
                v,
            )
        })
        .collect()
}

/// Counts, minimums, maximums and sketch quantiles are equal; sums and
/// averages are equal up to the order floats were added in, which differs
/// between any two plans over the raw rows too.
fn assert_same(raw: &[Row], rolled: &[Row], when: &str) {
    assert_eq!(raw.len(), rolled.len(), "{when}: groups");
    assert!(!raw.is_empty(), "{when}: nothing to compare");
    for (a, b) in raw.iter().zip(rolled) {
        assert_eq!((a.0, &a.1), (b.0, &b.1), "{when}: group keys");
        for (i, (x, y)) in a.2.iter().zip(&b.2).enumerate() {
            match (x, y) {
                (Some(x), Some(y)) if matches!(i, 5 | 6) => {
                    assert!(
                        (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                        "{when}: {a:?} vs {b:?}"
                    )
                }
                _ => assert_eq!(x, y, "{when}: column {i} of {a:?} vs {b:?}"),
            }
        }
    }
}

async fn check(store: &Store, when: &str) -> usize {
    let engine = engine(store);
    let raw = rows(&engine, RAW).await;
    let rolled = rows(&engine, ROLLUP).await;
    assert_same(&raw, &rolled, when);
    let differ = engine.sql(SKETCHES_DIFFER).await.unwrap();
    let differ = differ.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(differ, 0, "{when}: sketches differ");
    raw.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_answers_equal_raw_answers_through_the_store_life() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let store = open(dir.path(), vec![rollup(false)]).unwrap();

    // An empty rollup is an empty table, not a missing one.
    let empty = engine(&store).sql("SELECT * FROM m_1h").await.unwrap();
    assert_eq!(empty.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    for _ in 0..6 {
        write_random(&store, &mut rng, 700).await;
    }
    check(&store, "buffered").await;
    store.persist().await.unwrap();
    check(&store, "persisted").await;
    // Nothing buffered: the view reads the merged files as they are, with
    // the same columns as when it merges.
    let columns = |store: Store| async move {
        engine(&store)
            .sql("SELECT * FROM m_1h LIMIT 1")
            .await
            .unwrap()
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    let unmerged = columns(store.clone()).await;
    // Late rows for buckets already in files, in three more files per day.
    for _ in 0..3 {
        write_random(&store, &mut rng, 300).await;
        store.persist().await.unwrap();
    }
    // Persistence merged each day's late rows into the day's one file.
    let files = store.snapshot("m_1h").unwrap().unwrap().files;
    assert_eq!(files.len(), DAYS as usize, "{files:?}");
    write_random(&store, &mut rng, 300).await; // and some still buffered
    check(&store, "late rows, files and buffer").await;
    assert_eq!(columns(store.clone()).await, unmerged);
    assert!(store.compact().await.unwrap() > 0);
    check(&store, "compacted").await;
    let snapshot = store.snapshot("m_1h").unwrap().unwrap();
    let partial_rows: u64 = snapshot.files.iter().map(|f| f.rows).sum();
    assert!(
        partial_rows <= (DAYS * 24 * 8) as u64,
        "one row per bucket and group: {partial_rows}"
    );

    // Retention: the source keeps two days; the rollup loses the same days.
    let now = (FIRST_DAY + DAYS) * DAY_NS;
    store.persist().await.unwrap();
    assert!(store.enforce_retention(now).await.unwrap() >= 4);
    let left = check(&store, "after retention").await;
    assert!(left > 0 && left <= (2 * 24 * 8) as usize, "{left}");

    // Restart with rows only in the WAL: replay computes their partial rows.
    write_random(&store, &mut rng, 500).await;
    drop(store);
    let store = open(dir.path(), vec![rollup(false)]).unwrap();
    check(&store, "after restart").await;

    // A changed definition rebuilds the rollup from the source's files and
    // buffer.
    store.persist().await.unwrap();
    write_random(&store, &mut rng, 500).await;
    drop(store);
    let store = open(dir.path(), vec![rollup(true)]).unwrap();
    check(&store, "rebuilt").await;
    let engine = engine(&store);
    let raw = rows(
        &engine,
        "SELECT date_trunc('hour', recorded_at), CAST(service_name AS VARCHAR),
                count(*) FILTER (WHERE up = true) FROM m GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    let rolled = rows(
        &engine,
        "SELECT recorded_at, CAST(service_name AS VARCHAR), up FROM m_1h ORDER BY 1, 2",
    )
    .await;
    assert_same(&raw, &rolled, "the new aggregate");

    // Dropped from the configuration, the rollup's table goes with it.
    drop(engine);
    drop(store);
    let store = open(dir.path(), vec![]).unwrap();
    assert!(store.table_schema("m_1h").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_query_over_the_rollup_equals_it_over_raw_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let store = open(dir.path(), vec![rollup(false)]).unwrap();
    for _ in 0..4 {
        write_random(&store, &mut rng, 2_000).await;
    }
    store.persist().await.unwrap();
    write_random(&store, &mut rng, 1_000).await;
    let engine = engine(&store);
    // An hour-aligned NOW: the rollup's buckets are whole hours.
    let now = (FIRST_DAY + 3) * DAY_NS + 5 * HOUR_NS;
    let now_sql = format!("to_timestamp_nanos({now})");
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sql/reference_uptime.sql"
    ))
    .unwrap()
    .replace("NOW()", &now_sql)
    .replace("service_metrics", "m");
    let rolled = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/sql/reference_uptime_rollup.sql"
    ))
    .unwrap()
    .replace("NOW()", &now_sql)
    .replace("service_metrics_1h", "m_1h");
    let text = |r: weir_query::QueryResult| {
        arrow::util::pretty::pretty_format_batches(&r.batches)
            .unwrap()
            .to_string()
    };
    let raw = text(engine.sql(&raw).await.unwrap());
    let rolled = text(engine.sql(&rolled).await.unwrap());
    assert!(raw.lines().count() > 6, "{raw}");
    assert_eq!(raw, rolled);
    // A filter on a tag is answered as over the raw rows.
    let one = |table: &str| {
        format!(
            "SELECT count(*) AS n FROM {table} WHERE service_name = 'svc-3' AND recorded_at >= {now_sql} - INTERVAL '24 hours'"
        )
    };
    let raw_one = text(engine.sql(&one("m")).await.unwrap());
    let rolled_one = text(
        engine
            .sql(&one("m_1h").replace("count(*) AS", "sum(checks) AS"))
            .await
            .unwrap(),
    );
    assert_eq!(raw_one.lines().nth(3), rolled_one.lines().nth(3));
    // The time filter reaches the rollup's files.
    let plan = text(
        engine
            .sql(&format!(
                "EXPLAIN SELECT count(*) FROM m_1h WHERE recorded_at >= {now_sql} - INTERVAL '1 hour'"
            ))
            .await
            .unwrap(),
    );
    assert_eq!(plan.matches(".parquet").count(), 1, "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_rollup_cannot_keep_exactly_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![rollup(false)]).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    write_random(&store, &mut rng, 10).await;

    // A rollup's table is written by Weir only.
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("m_1h", "recorded_at").unwrap();
    b.begin_point(t, 0, FIRST_DAY * DAY_NS).unwrap();
    let e = store.write(b.finish().unwrap()).await.unwrap_err();
    assert!(matches!(e, weir_storage::Error::RollupTable { .. }), "{e}");

    // `response_ms` as text in another table is fine; in `m` the rollup
    // could not sum it: the whole request is refused, `other` included.
    let mut b = WriteBatchBuilder::new(1);
    let other = b.table("other", "time").unwrap();
    let v = b
        .column(other, "response_ms", ColumnType::String, 0)
        .unwrap();
    b.begin_point(other, 0, 1).unwrap();
    b.set(other, v, 0, Value::String("12")).unwrap();
    let t = b.table("m2", "recorded_at").unwrap();
    b.begin_point(t, 1, 1).unwrap();
    store.write(b.finish().unwrap()).await.unwrap();

    let strict = RollupDef::new(
        "m2_1h",
        "m2",
        Duration::from_secs(3600),
        vec!["service_name".into()],
        &[("ms".into(), "sum(response_ms)".into())],
    )
    .unwrap();
    drop(store);
    let store = open(dir.path(), vec![rollup(false), strict]).unwrap();
    let mut b = WriteBatchBuilder::new(1);
    let other = b.table("other", "time").unwrap();
    b.begin_point(other, 0, 2).unwrap();
    let t = b.table("m2", "recorded_at").unwrap();
    let v = b.column(t, "response_ms", ColumnType::String, 1).unwrap();
    b.begin_point(t, 1, 2).unwrap();
    b.set(t, v, 1, Value::String("slow")).unwrap();
    let e = store.write(b.finish().unwrap()).await.unwrap_err();
    assert!(
        e.to_string().contains("m2_1h") && e.to_string().contains("response_ms"),
        "{e}"
    );
    let engine = engine(&store);
    let n = engine.sql("SELECT count(*) FROM other").await.unwrap();
    assert_eq!(
        n.batches[0].column(0).as_primitive::<Int64Type>().value(0),
        1,
        "nothing of the refused request was stored"
    );

    // A rollup named like a table that holds written rows cannot start.
    drop(engine);
    drop(store);
    let clash = RollupDef::new(
        "other",
        "m",
        Duration::from_secs(60),
        vec![],
        &[("n".into(), "count(*)".into())],
    )
    .unwrap();
    let e = open(dir.path(), vec![clash]).err().unwrap();
    assert!(e.to_string().contains("other"), "{e}");
    // Nor one whose aggregate takes its time column's name.
    let clash = RollupDef::new(
        "m_1m",
        "m",
        Duration::from_secs(60),
        vec![],
        &[("recorded_at".into(), "count(*)".into())],
    )
    .unwrap();
    let e = open(dir.path(), vec![clash]).err().unwrap();
    assert!(e.to_string().contains("time column"), "{e}");
}

/// The first column of the first row as `f64`, `None` if null.
async fn first_f64(engine: &QueryEngine, sql: &str) -> Option<f64> {
    let result = engine.sql(sql).await.unwrap();
    let column = arrow::compute::cast(result.batches[0].column(0), &DataType::Float64).unwrap();
    let column = column.as_primitive::<Float64Type>();
    column.is_valid(0).then(|| column.value(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sketch_functions_answer_within_one_percent_and_refuse_what_is_not_a_sketch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]).unwrap();
    let engine = engine(&store);
    // Integers coerce; nulls are skipped; rank floor(q · (n − 1)).
    let values = "FROM (VALUES (1), (2), (3), (1000), (NULL)) t(v)";
    let of_values = |select: &str| format!("SELECT {select} {values}");
    let median = first_f64(
        &engine,
        &of_values("sketch_quantile(quantile_sketch(v), 0.5)"),
    )
    .await;
    assert!((median.unwrap() - 2.0).abs() <= 0.01 * 2.0, "{median:?}");
    let top = first_f64(
        &engine,
        &of_values("sketch_quantile(quantile_sketch(v), 1)"),
    )
    .await;
    assert!((top.unwrap() - 1000.0).abs() <= 0.01 * 1000.0, "{top:?}");
    let counted = first_f64(&engine, &of_values("sketch_count(quantile_sketch(v))")).await;
    assert_eq!(counted, Some(4.0));
    // Of nothing: null, as other aggregates of nothing are.
    let none =
        "SELECT sketch_quantile(quantile_sketch(v), 0.5) FROM (VALUES (CAST(NULL AS DOUBLE))) t(v)";
    assert_eq!(first_f64(&engine, none).await, None);

    for (sql, expect) in [
        (
            "SELECT sketch_quantile(X'00', 0.5)",
            "sketch_quantile: quantile sketch format 0",
        ),
        (
            "SELECT sketch_count(X'0100')",
            "sketch_count: quantile sketch is cut short",
        ),
        (
            "SELECT sketch_merge(s) FROM (VALUES (X'010000'), (X'01')) t(s)",
            "sketch_merge",
        ),
        (
            "SELECT sketch_quantile(quantile_sketch(v), 1.5) FROM (VALUES (1.0)) t(v)",
            "not between 0 and 1",
        ),
        (
            "SELECT sketch_quantile(quantile_sketch(v), CAST('NaN' AS DOUBLE)) FROM (VALUES (1.0)) t(v)",
            "not between 0 and 1",
        ),
    ] {
        let e = engine.sql(sql).await.unwrap_err().to_string();
        assert!(e.contains(expect), "{sql}: {e}");
    }
    assert!(engine.sql("SELECT quantile_sketch(true)").await.is_err());

    // A binary column is Weir's own: no write from outside brings one.
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("time", weir_model::time_data_type(), false),
        arrow::datatypes::Field::new("blob", DataType::Binary, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(
                arrow::array::TimestampNanosecondArray::from(vec![1])
                    .with_timezone(weir_model::TIME_ZONE),
            ),
            std::sync::Arc::new(arrow::array::BinaryArray::from(vec![
                b"\x01\x00\x00\x00".as_ref(),
            ])),
        ],
    )
    .unwrap();
    let e = store
        .write(vec![weir_model::TableBatch {
            table: "blobs".into(),
            batch,
            first_rows: vec![0, 0],
        }])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("blob"), "{e}");
    assert!(store.table_schema("blobs").is_none());
}
