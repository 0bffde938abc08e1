//! No query text can crash, stall or exhaust the process: every class of
//! oversized, over-deep or endless query gets a clear error, and the engine
//! answers the next query as before.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_query::{Error, MAX_SQL_BYTES, MAX_SQL_DEPTH, QueryConfig, QueryEngine};

use crate::pruning::store;

fn engine(dir: &std::path::Path, max_result_bytes: usize, timeout: Duration) -> QueryEngine {
    QueryEngine::new(
        store(dir),
        QueryConfig {
            memory_limit: 64 << 20,
            timeout,
            target_partitions: 2,
            max_result_bytes,
        },
    )
    .unwrap()
}

async fn still_answers(engine: &QueryEngine) {
    let result = engine.sql("SELECT 41 + 1 AS answer").await.unwrap();
    assert_eq!(result.batches[0].num_rows(), 1);
}

fn chain(n: usize, term: &str, sep: &str) -> String {
    vec![term; n].join(sep)
}

/// Every kind of chain the parser builds into a deep tree, `n` long.
fn deep_queries(n: usize) -> Vec<String> {
    vec![
        format!("SELECT {}", chain(n, "1", "+")),
        format!("SELECT {}", chain(n, "'a'", "||")),
        format!("SELECT 1 WHERE {}", chain(n, "1 = 1", " OR ")),
        format!("SELECT 1 WHERE {}", chain(n, "1 = 1", " AND ")),
        format!("SELECT 1{}", "::bigint".repeat(n)),
        chain(n, "SELECT 1 AS x", " UNION ALL "),
        format!(
            "SELECT 1 FROM (SELECT 1 AS x) t0 {}",
            (1..n)
                .map(|i| format!("JOIN (SELECT 1 AS x) t{i} ON true"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!(
            "WITH c0 AS (SELECT 1 AS x), {} SELECT * FROM c{}",
            (1..n)
                .map(|i| format!("c{i} AS (SELECT x FROM c{})", i - 1))
                .collect::<Vec<_>>()
                .join(", "),
            n - 1
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chains_of_every_kind_are_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 64 << 20, Duration::from_secs(60));
    // 2,000 terms: the ~4 KB requests that aborted the server.
    for sql in deep_queries(2_000) {
        match engine.sql(&sql).await {
            Err(e @ Error::TooDeep { .. }) => {
                assert!(e.to_string().contains("flatten it"), "{e}")
            }
            other => panic!("{}…: {other:?}", &sql[..50]),
        }
    }
    still_answers(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_just_under_the_depth_limit_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 64 << 20, Duration::from_secs(120));
    // Planning and running at the limit must have stack to spare.
    for sql in deep_queries(MAX_SQL_DEPTH - 8) {
        let result = engine.sql(&sql).await;
        assert!(result.is_ok(), "{}…: {result:?}", &sql[..50]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_past_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 64 << 20, Duration::from_secs(60));
    let padding = " ".repeat(MAX_SQL_BYTES);
    let err = engine.sql(&format!("SELECT 1{padding}")).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    still_answers(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_results_stop_at_the_result_cap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 8 << 20, Duration::from_secs(60));
    for sql in [
        "SELECT * FROM generate_series(1, 10000000000)",
        "SELECT value, value * 2 AS twice, 'padding' AS p FROM generate_series(1, 10000000000)",
        "SELECT a.value FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b",
    ] {
        let err = engine.sql(sql).await.unwrap_err();
        assert!(matches!(err, Error::ResultTooLarge { .. }), "{sql}: {err}");
        assert!(err.to_string().contains("add a LIMIT"), "{err}");
    }
    // Under the cap, the same source answers.
    let result = engine
        .sql("SELECT * FROM generate_series(1, 1000)")
        .await
        .unwrap();
    assert_eq!(
        result.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_work_stops_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 8 << 20, Duration::from_millis(300));
    let err = engine
        .sql("SELECT COUNT(*) FROM generate_series(1, 1000000000000)")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    still_answers(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_in_the_data_are_the_users_not_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 8 << 20, Duration::from_secs(60));
    for sql in [
        "SELECT CAST('not a number' AS INT)",
        "SELECT 1 / 0",
        "SELECT to_timestamp('not a time')",
    ] {
        match engine.sql(sql).await {
            Err(Error::DataError(_) | Error::InvalidQuery(_)) => {}
            other => panic!("{sql}: {other:?}"),
        }
    }
}

/// Random statements from SQL's own tokens, and random edits of a real
/// query: whatever comes in, the engine answers `Ok` or a clear `Err`, in
/// bounded time, and never panics or aborts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_sql_never_crashes_the_engine() {
    const TOKENS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT",
        "UNION ALL",
        "JOIN",
        "ON",
        "WITH",
        "AS",
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "||",
        "AND",
        "OR",
        "NOT",
        "=",
        "<",
        "::",
        "1",
        "0",
        "-1",
        "1e308",
        "'x'",
        "NULL",
        "true",
        "x",
        "t",
        "generate_series(1, 3)",
        "COUNT(*)",
        "NOW()",
        "INTERVAL '1 hour'",
        "DATE_TRUNC('hour', NOW())",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "IN",
        "[",
        "]",
        "OVER",
        "PARTITION BY",
        "FILTER",
        "\0",
        "é",
        "\"",
        "'",
        ";",
        "EXPLAIN",
        "INSERT INTO",
        "CREATE TABLE",
        "COPY",
        "SET",
        "DROP",
    ];
    const SEED_QUERY: &str = "WITH h AS (SELECT value % 3 AS s, value AS v FROM generate_series(1, 100)) SELECT s, COUNT(*) FILTER (WHERE v > 10) AS n, ROUND(AVG(v), 2) FROM h GROUP BY s ORDER BY s";
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 8 << 20, Duration::from_secs(10));
    assert!(engine.sql(SEED_QUERY).await.is_ok());
    let mut rng = StdRng::seed_from_u64(0x0005_eed0_f5e1);
    for case in 0..400 {
        let sql = if case % 2 == 0 {
            let len = rng.random_range(1..60);
            let mut words = vec!["SELECT"];
            words.extend((0..len).map(|_| TOKENS[rng.random_range(0..TOKENS.len())]));
            words.join(" ")
        } else {
            let mut bytes = SEED_QUERY.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, b"()*+-,'\"0x;"[rng.random_range(0..11)]),
                    _ => {
                        let copy = bytes[at..].to_vec();
                        bytes.extend_from_slice(&copy[..copy.len().min(40)]);
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        // Ok or Err are both fine; a panic or abort fails the test.
        let _ = engine.sql(&sql).await;
    }
    still_answers(&engine).await;
}

/// A streamed answer arrives whole and in order, past the result size cap
/// (it is never held whole); a failure part way ends it with the error,
/// never early without one; a reader that stops reading ends its query at
/// the timeout instead of holding it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answers_are_whole_or_end_in_an_error() {
    use futures::StreamExt;
    use weir_query::Dialect;

    let dir = tempfile::tempdir().unwrap();
    // A cap far below the answer: streams do not collect, so it does not apply.
    let engine = engine(dir.path(), 1 << 10, Duration::from_secs(2));
    let mut stream = engine
        .sql_stream_in(
            Dialect::Weir,
            "SELECT value FROM generate_series(1, 1000000)",
            Vec::new(),
        )
        .await
        .unwrap();
    let mut expected = 1i64;
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for value in values.iter() {
            assert_eq!(value, Some(expected));
            expected += 1;
        }
    }
    assert_eq!(expected, 1_000_001);

    // Division by zero at row 500,000: the batches before it, then the error.
    let mut stream = engine
        .sql_stream_in(
            Dialect::Weir,
            "SELECT 1 / (value - 500000) AS x FROM generate_series(1, 1000000)",
            Vec::new(),
        )
        .await
        .unwrap();
    let mut ended_in_error = false;
    while let Some(batch) = stream.next().await {
        if let Err(e) = batch {
            assert!(
                e.to_string().to_lowercase().contains("divide by zero"),
                "{e}"
            );
            ended_in_error = true;
        }
    }
    assert!(ended_in_error, "the stream ended without its error");

    // Never read past the first batch: the timeout ends the query, and the
    // reader, when it comes back, is told.
    let mut stream = engine
        .sql_stream_in(
            Dialect::Weir,
            "SELECT value FROM generate_series(1, 100000000)",
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut last = None;
    while let Some(batch) = stream.next().await {
        last = Some(batch);
    }
    assert!(matches!(last, Some(Err(Error::Timeout { .. }))), "{last:?}");

    // Refused before streaming: the error, not a stream.
    assert!(matches!(
        engine
            .sql_stream_in(Dialect::Weir, "DROP TABLE t", Vec::new())
            .await,
        Err(Error::NotReadOnly(_))
    ));
    still_answers(&engine).await;
}
