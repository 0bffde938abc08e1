//! The CLI (`weir sql`, `weir import`), health, metrics, request IDs, gRPC
//! health and reflection, JSON logs, and graceful shutdown — as a user sees
//! them.

use std::io::Write;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use weir_e2e::{MetricRow, RequestBuilder, WeirServer, now_ns};
use weir_proto::v1::{TimeColumn, WriteRequest, field};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_import_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &[]).unwrap();
    let mut client = server.client().await.unwrap();
    let mut req = RequestBuilder::default();
    for (i, svc) in ["api", "db", "api"].iter().enumerate() {
        req.metric(&MetricRow {
            service_name: svc.to_string(),
            status: if i == 1 { "unhealthy" } else { "healthy" },
            response_ms: (i != 2).then_some(12.5 * (i + 1) as f64),
            status_code: Some(200),
            recorded_at_ns: 1_763_632_800_000_000_000 + i as i64 * 1_000_000_000,
        });
    }
    client.write(req.build(0)).await.unwrap();

    let query = "SELECT service_name, COUNT(*) AS checks, MAX(response_ms) AS worst FROM service_metrics GROUP BY service_name ORDER BY service_name";
    let table = server.cli(&["sql", query]).unwrap();
    assert!(table.status.success(), "{}", stderr(&table));
    let expected_table = "\
+--------------+--------+-------+
| service_name | checks | worst |
+--------------+--------+-------+
| api          | 2      | 12.5  |
| db           | 1      | 25.0  |
+--------------+--------+-------+
(2 rows)
";
    assert_eq!(stdout(&table), expected_table);
    let csv = server.cli(&["sql", query, "--format", "csv"]).unwrap();
    assert_eq!(
        stdout(&csv),
        "service_name,checks,worst\napi,2,12.5\ndb,1,25.0\n"
    );
    let json = server.cli(&["sql", query, "--format", "json"]).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(rows[1]["service_name"], "db");
    assert_eq!(rows[1]["checks"], 1);
    let bad = server.cli(&["sql", "SELECT * FROM nowhere"]).unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("nowhere") && stderr(&bad).contains("HTTP 400"),
        "{}",
        stderr(&bad)
    );

    // CSV: two bad rows (a non-number, a short row) are rejected by line; the rest go in.
    let csv_path = dir.path().join("checks.csv");
    let mut f = std::fs::File::create(&csv_path).unwrap();
    writeln!(f, "service_name,status,response_ms,status_code,recorded_at").unwrap();
    writeln!(f, "web,healthy,10.5,200,2025-11-20T10:00:00Z").unwrap();
    writeln!(f, "web,unhealthy,,503,2025-11-20T10:05:00Z").unwrap();
    writeln!(f, "web,healthy,fast,200,2025-11-20T10:10:00Z").unwrap();
    writeln!(f, "web,healthy,11").unwrap();
    writeln!(f, "cache,healthy,3,200,2025-11-20 10:15:00").unwrap();
    drop(f);
    let import = server
        .cli(&[
            "import",
            csv_path.to_str().unwrap(),
            "--table",
            "imported",
            "--time-column",
            "recorded_at",
            "--tag",
            "service_name",
        ])
        .unwrap();
    assert_eq!(import.status.code(), Some(1), "{}", stderr(&import));
    assert!(
        stdout(&import).contains("imported 3 rows into imported; rejected 2 rows"),
        "{}",
        stdout(&import)
    );
    assert!(
        stderr(&import).contains("line 4: column \"response_ms\": \"fast\" is not a number"),
        "{}",
        stderr(&import)
    );
    assert!(
        stderr(&import).contains("line 5: 3 fields, the header has 5"),
        "{}",
        stderr(&import)
    );
    let types = server
        .sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'imported' ORDER BY ordinal_position")
        .await
        .unwrap();
    let types: Vec<String> = types
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["column_name"].as_str().unwrap(),
                r["data_type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        types[0], "recorded_at:Timestamp(ns, \"+00:00\")",
        "--time-column names the time column of the table the import creates"
    );
    assert!(
        types.contains(&"service_name:Dictionary(Int32, Utf8)".to_string()),
        "{types:?}"
    );
    assert!(
        types.contains(&"response_ms:Float64".to_string()),
        "{types:?}"
    );
    assert!(
        types.contains(&"status_code:Int64".to_string()),
        "{types:?}"
    );

    // JSON lines, one of them not JSON.
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(
        &jsonl,
        "{\"time\": 1763632800000000000, \"host\": \"a\", \"load\": 1}\nnot json\n{\"time\": 1763632801000000000, \"host\": \"b\", \"load\": 0.5}\n",
    )
    .unwrap();
    let import = server
        .cli(&[
            "import",
            jsonl.to_str().unwrap(),
            "--table",
            "load",
            "--tag",
            "host",
        ])
        .unwrap();
    assert_eq!(import.status.code(), Some(1));
    assert!(
        stdout(&import).contains("imported 2 rows into load; rejected 1 rows"),
        "{}",
        stdout(&import)
    );
    assert!(
        stderr(&import).contains("line 2: not JSON"),
        "{}",
        stderr(&import)
    );
    assert_eq!(
        server
            .count("SELECT CAST(SUM(load) * 10 AS BIGINT) AS s FROM load")
            .await
            .unwrap(),
        15,
        "1 became a float"
    );

    // Parquet: Weir's own files import back.
    server.persist().await.unwrap();
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("catalog.json")).unwrap())
            .unwrap();
    let file = catalog["tables"]["service_metrics"]["files"][0]["path"]
        .as_str()
        .unwrap();
    let parquet = server.data_dir.join(file);
    let import = server
        .cli(&[
            "import",
            parquet.to_str().unwrap(),
            "--table",
            "copy",
            "--time-column",
            "recorded_at",
            "--tag",
            "service_name",
        ])
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(
        stdout(&import).contains("imported 3 rows into copy; rejected 0 rows"),
        "{}",
        stdout(&import)
    );
    let copy = server
        .cli(&["sql", &query.replace("service_metrics", "copy")])
        .unwrap();
    assert_eq!(stdout(&copy), expected_table);

    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"PAR1 but not really").unwrap();
    let import = server
        .cli(&["import", garbage.to_str().unwrap(), "--table", "x"])
        .unwrap();
    assert_eq!(import.status.code(), Some(1));
    assert!(
        stderr(&import).contains("not a readable Parquet file"),
        "{}",
        stderr(&import)
    );
    let missing_time = server
        .cli(&["import", csv_path.to_str().unwrap(), "--table", "x"])
        .unwrap();
    assert!(
        stderr(&missing_time).contains("no value in time column \"time\""),
        "{}",
        stderr(&missing_time)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_health_metrics_request_ids_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = WeirServer::start(
        &dir.path().join("data"),
        &["--log-format", "json", "--persist-interval", "1h"],
    )
    .unwrap();

    assert_eq!(server.get("/health").await.unwrap().0, 200);
    assert_eq!(server.get("/health/ready").await.unwrap().0, 200);

    // gRPC health and reflection.
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "weir.v1.WriteService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        services.contains(&"weir.v1.WriteService".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );

    // Request IDs: echoed over HTTP and gRPC, and in the logs of the request.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sql", server.http_url))
        .header("x-request-id", "trace-me-7")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-7");
    let mut client = server.client().await.unwrap();
    let mut bad = RequestBuilder::default();
    bad.point("m", now_ns(), &[], vec![("v", field::Value::F64(f64::NAN))]);
    let mut request = tonic::Request::new(bad.build(0));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-req-42".parse().unwrap());
    assert!(client.write(request).await.is_err());
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("grpc-req-42"))
        .expect("the rejected write is logged with its request id");
    let entry: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(entry["level"], "WARN");

    // Metrics after real writes.
    let mut req = RequestBuilder::default();
    for i in 0..100 {
        req.point(
            "m",
            now_ns() - i,
            &[("host", "a")],
            vec![("v", field::Value::F64(i as f64))],
        );
    }
    client.write(req.build(1)).await.unwrap();
    let (_, metrics) = server.get("/metrics").await.unwrap();
    for needle in [
        "weir_ingest_rows_total 100",
        "weir_ingest_bytes_total ",
        "weir_wal_fsyncs_total ",
        "weir_wal_fsync_seconds_bucket{le=\"+Inf\"} ",
        "weir_buffer_rows 100",
        "weir_parquet_files 0",
        "weir_queries_total ",
        "weir_query_seconds_count ",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle:?}:\n{metrics}"
        );
    }

    // SIGTERM: drain, persist, exit 0; the data is in Parquet and comes back.
    let status = server.terminate().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("catalog.json")).unwrap())
            .unwrap();
    assert_eq!(catalog["tables"]["m"]["files"][0]["rows"], 100);
    assert!(server.log().contains("shutdown complete"));
    server.restart().unwrap();
    assert_eq!(
        server.count("SELECT COUNT(*) AS n FROM m").await.unwrap(),
        100
    );
    let (_, metrics) = server.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("weir_wal_replayed_records_total 0"),
        "everything was persisted at shutdown"
    );
}

/// A one-point write to `table` that asks for `time_column`.
fn write_naming_time_column(table: &str, time_column: &str) -> WriteRequest {
    let mut b = RequestBuilder::default();
    b.point(
        table,
        1_763_632_800_000_000_000,
        &[("host", "a")],
        vec![("v", field::Value::F64(1.0))],
    );
    let entry = TimeColumn {
        table: b.symbol(table),
        name: b.symbol(time_column),
    };
    let mut request = b.build(0);
    request.time_columns = vec![entry];
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_names_the_time_column_of_the_table_it_creates() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let server = WeirServer::start_unconfigured(&data_dir, &[]).unwrap();

    let csv = dir.path().join("checks.csv");
    std::fs::write(
        &csv,
        "recorded_at,service_name,status,response_ms\n\
         2025-11-20T10:00:00Z,api,healthy,12.5\n\
         2025-11-20T10:01:00Z,db,unhealthy,80\n\
         2025-11-20T10:02:00Z,api,healthy,11\n",
    )
    .unwrap();
    let import = server
        .cli(&[
            "import",
            csv.to_str().unwrap(),
            "--table",
            "service_metrics",
            "--time-column",
            "recorded_at",
            "--tag",
            "service_name",
        ])
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(
        stdout(&import).contains("imported 3 rows into service_metrics; rejected 0 rows"),
        "{}",
        stdout(&import)
    );
    let (status, body) = server
        .sql_raw(
            "SELECT recorded_at, service_name FROM service_metrics ORDER BY recorded_at",
            "text/csv",
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "recorded_at,service_name\n\
         2025-11-20T10:00:00Z,api\n\
         2025-11-20T10:01:00Z,db\n\
         2025-11-20T10:02:00Z,api\n"
    );

    // Another time column for the same table: refused, naming both, nothing written.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "ts,service_name\n2025-11-20T11:00:00Z,web\n").unwrap();
    let import = server
        .cli(&[
            "import",
            other.to_str().unwrap(),
            "--table",
            "service_metrics",
            "--time-column",
            "ts",
        ])
        .unwrap();
    assert_eq!(import.status.code(), Some(1), "{}", stdout(&import));
    assert!(
        stderr(&import)
            .contains("table \"service_metrics\" has time column \"recorded_at\", not \"ts\""),
        "{}",
        stderr(&import)
    );
    // The server refuses it too, to any client.
    let mut client =
        weir_proto::v1::write_service_client::WriteServiceClient::connect(server.grpc_url.clone())
            .await
            .unwrap();
    let err = client
        .write(write_naming_time_column("service_metrics", "ts"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "table \"service_metrics\": time column is \"recorded_at\", the batch's is \"ts\""
    );
    let (_, count) = server
        .sql_raw("SELECT COUNT(*) AS n FROM service_metrics", "text/csv")
        .await
        .unwrap();
    assert_eq!(count, "n\n3\n");

    // Writes racing to create a table with different time columns: one
    // wins, the other is refused naming both; none is silently renamed.
    for round in 0..5 {
        let table = format!("race_{round}");
        let (mut first, mut second) = (client.clone(), client.clone());
        let (a, b) = tokio::join!(
            first.write(write_naming_time_column(&table, "a")),
            second.write(write_naming_time_column(&table, "b")),
        );
        let (winner, loser) = match (a, b) {
            (Ok(_), Err(e)) => ("a", e),
            (Err(e), Ok(_)) => ("b", e),
            other => panic!("exactly one write must win: {other:?}"),
        };
        assert_eq!(loser.code(), tonic::Code::InvalidArgument);
        let loser_name = if winner == "a" { "b" } else { "a" };
        assert_eq!(
            loser.message(),
            format!(
                "table \"{table}\": time column is \"{winner}\", the batch's is \"{loser_name}\""
            )
        );
        let (status, body) = server
            .sql_raw(&format!("SELECT {winner}, v FROM {table}"), "text/csv")
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_str()),
            (
                200,
                format!("{winner},v\n2025-11-20T10:00:00Z,1.0\n").as_str()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_time_column_holds_against_the_one_a_write_names() {
    let dir = tempfile::tempdir().unwrap();
    // `time`, configured explicitly, is as binding as any other name.
    let server =
        WeirServer::start(&dir.path().join("data"), &["--time-column", "plain=time"]).unwrap();
    let mut client = server.client().await.unwrap();
    for (table, configured) in [("plain", "time"), ("service_metrics", "recorded_at")] {
        let err = client
            .write(write_naming_time_column(table, "ts"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            format!("table \"{table}\": time column is \"{configured}\", the batch's is \"ts\"")
        );
        client
            .write(write_naming_time_column(table, configured))
            .await
            .unwrap();
    }
}

/// Checks an import that rejected rows: exit code 1, its summary line, and
/// exactly the `expected` lines rejected, each for a reason containing its
/// text.
fn assert_rejected(import: &std::process::Output, summary: &str, expected: &[(usize, &str)]) {
    assert_eq!(import.status.code(), Some(1), "{}", stderr(import));
    assert!(
        stdout(import).contains(summary),
        "{}\n{}",
        stdout(import),
        stderr(import)
    );
    let rejected = rejected_lines(import);
    assert_eq!(
        rejected.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        expected.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        "{}",
        stderr(import)
    );
    for (line, needle) in expected {
        let reason = &rejected.iter().find(|(l, _)| l == line).unwrap().1;
        assert!(reason.contains(needle), "line {line}: {reason}");
    }
}

/// `rejected: line N: …` lines of an import's stderr, as (N, reason).
fn rejected_lines(out: &std::process::Output) -> Vec<(usize, String)> {
    stderr(out)
        .lines()
        .filter_map(|l| l.strip_prefix("rejected: line "))
        .filter_map(|l| {
            let (line, reason) = l.split_once(": ")?;
            Some((line.parse().ok()?, reason.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rejects_exactly_the_rows_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &[]).unwrap();
    // The table exists: a tag, an f64 and an i64 column.
    let mut client = server.client().await.unwrap();
    let mut seed = RequestBuilder::default();
    seed.point(
        "checks",
        1_763_632_700_000_000_000,
        &[("service_name", "seed")],
        vec![
            ("response_ms", field::Value::F64(1.0)),
            ("code", field::Value::I64(200)),
        ],
    );
    let entry = TimeColumn {
        table: seed.symbol("checks"),
        name: seed.symbol("recorded_at"),
    };
    let mut seed = seed.build(0);
    seed.time_columns = vec![entry];
    client.write(seed).await.unwrap();

    let long_tag = "x".repeat(5 * 1024);
    let mut csv: Vec<u8> = Vec::new();
    for line in [
        "recorded_at,service_name,response_ms,code",
        "2025-11-20T10:00:00Z,csv-a,10.5,200",             // 2
        "2025-11-20T10:01:00Z,csv-x,NaN,200",              // 3: NaN
        "2025-11-20T10:02:00Z,csv-b,11,200",               // 4
        "2025-11-20T10:03:00Z,csv-x,inf,200",              // 5: +inf
        "2025-11-20T10:04:00Z,csv-x,-inf,200",             // 6: -inf
        "2250-01-01T00:00:00Z,csv-x,1,200",                // 7: after 2200
        "1969-12-31T23:59:59Z,csv-x,1,200",                // 8: before 1970
        &format!("2025-11-20T10:05:00Z,{long_tag},1,200"), // 9: 5 KB tag
        "2025-11-20T10:06:00Z,csv-\u{1}\u{1},1,200",       // 10: made invalid UTF-8 below
        "2025-11-20T10:07:00Z,csv-x,1,200.5",              // 11: not an i64, as the table has it
        "2025-11-20T10:08:00Z,csv-c,12,201",               // 12
    ] {
        csv.extend_from_slice(line.as_bytes());
        csv.push(b'\n');
    }
    let bad = csv.iter().position(|&b| b == 1).unwrap();
    csv[bad] = 0xff;
    csv[bad + 1] = 0xfe;
    let csv_path = dir.path().join("checks.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let import = server
        .cli(&[
            "import",
            csv_path.to_str().unwrap(),
            "--table",
            "checks",
            "--time-column",
            "recorded_at",
            "--tag",
            "service_name",
        ])
        .unwrap();
    assert_rejected(
        &import,
        "imported 3 rows into checks; rejected 8 rows",
        &[
            (3, "NaN is not a finite number"),
            (5, "inf is not a finite number"),
            (6, "-inf is not a finite number"),
            (7, "out of range"),
            (8, "out of range"),
            (9, "more than the limit of 4096"),
            (10, "not valid UTF-8"),
            (11, "\"200.5\" is not an integer"),
        ],
    );

    // JSON lines, with the table's types unknown to the importer (no HTTP):
    // the type changes reach the server, which rejects their batch, and the
    // importer splits it down to them.
    let mut jsonl: Vec<u8> = Vec::new();
    for line in [
        r#"{"recorded_at": "2025-11-20T11:00:00Z", "service_name": "json-a", "response_ms": 1.5, "code": 200}"#, // 1
        r#"{"recorded_at": "2025-11-20T11:01:00Z", "service_name": "json-x", "response_ms": NaN}"#, // 2: NaN is not JSON
        r#"{"recorded_at": "2025-11-20T11:02:00Z", "service_name": "json-b", "response_ms": 2, "code": 200}"#, // 3
        r#"{"recorded_at": "2025-11-20T11:03:00Z", "service_name": "json-x", "response_ms": 1e999}"#, // 4: inf
        r#"{"recorded_at": "2250-01-01T00:00:00Z", "service_name": "json-x", "response_ms": 1.0}"#, // 5
        &format!(r#"{{"recorded_at": "2025-11-20T11:04:00Z", "service_name": "{long_tag}"}}"#), // 6
        "{\"recorded_at\": \"2025-11-20T11:05:00Z\", \"service_name\": \"json-\u{1}\"}", // 7: invalid UTF-8 below
        r#"{"recorded_at": "2025-11-20T11:06:00Z", "service_name": "json-x", "code": "oops"}"#, // 8: string into i64
        r#"{"recorded_at": "2025-11-20T11:07:00Z", "service_name": "json-x", "response_ms": true}"#, // 9: bool into f64
        r#"{"recorded_at": "2025-11-20T11:08:00Z", "service_name": "json-c", "response_ms": 3.5, "code": 201}"#, // 10
        r#"{"recorded_at": "2025-11-20T11:09:00Z", "service_name": "json-x", "bad\nname": 1}"#, // 11: invalid column name
    ] {
        jsonl.extend_from_slice(line.as_bytes());
        jsonl.push(b'\n');
    }
    let bad = jsonl.iter().position(|&b| b == 1).unwrap();
    jsonl[bad] = 0xc3; // a lead byte without its continuation
    let jsonl_path = dir.path().join("checks.jsonl");
    std::fs::write(&jsonl_path, &jsonl).unwrap();
    let import = server
        .cli(&[
            "import",
            jsonl_path.to_str().unwrap(),
            "--table",
            "checks",
            "--time-column",
            "recorded_at",
            "--tag",
            "service_name",
            "--http-server",
            "http://127.0.0.1:1",
        ])
        .unwrap();
    assert_rejected(
        &import,
        "imported 3 rows into checks; rejected 8 rows",
        &[
            (2, "not JSON"),
            (4, "not JSON"),
            (5, "out of range"),
            (6, "more than the limit of 4096"),
            (7, "not valid UTF-8"),
            (8, "column \"code\""),
            (9, "column \"response_ms\""),
            (11, "invalid column name"),
        ],
    );

    // Exactly the good rows went in.
    let rows = server
        .sql("SELECT service_name, response_ms, code FROM checks ORDER BY recorded_at")
        .await
        .unwrap();
    let rows: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {}", r["service_name"], r["response_ms"], r["code"]))
        .collect();
    assert_eq!(
        rows,
        [
            "\"seed\" 1.0 200",
            "\"csv-a\" 10.5 200",
            "\"csv-b\" 11.0 200",
            "\"csv-c\" 12.0 201",
            "\"json-a\" 1.5 200",
            "\"json-b\" 2.0 200",
            "\"json-c\" 3.5 201",
        ]
    );

    // A server that cannot be reached is no bad row: the import stops.
    let down = server
        .cli(&[
            "import",
            csv_path.to_str().unwrap(),
            "--table",
            "checks",
            "--time-column",
            "recorded_at",
            "--server",
            "http://127.0.0.1:1",
        ])
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot reach the server"),
        "{}",
        stderr(&down)
    );
    assert!(!stdout(&down).contains("rejected"), "{}", stdout(&down));
}

/// `/proc/PID/task/*/stat` as (thread name, nice value). The name is in
/// parentheses and may hold spaces; nice is the 17th field after it.
fn thread_nice_values(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let name = stat[open + 1..close].to_string();
        let nice = stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        threads.push((name, nice));
    }
    threads
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_threads_yield_the_cpu_to_query_threads() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &["--ingest-nice", "7"]).unwrap();
    // A write and a query, so the WAL thread and the blocking pools exist.
    let mut rows = RequestBuilder::default();
    rows.metric(&MetricRow {
        service_name: "api".to_string(),
        status: "healthy",
        response_ms: Some(12.0),
        status_code: Some(200),
        recorded_at_ns: now_ns(),
    });
    server
        .client()
        .await
        .unwrap()
        .write(rows.build(1))
        .await
        .unwrap();
    assert_eq!(
        server
            .count("SELECT count(*) FROM service_metrics")
            .await
            .unwrap(),
        1
    );

    let threads = thread_nice_values(server.pid().unwrap());
    for expected in ["weir-query", "weir-api", "tokio-rt-worker", "weir-wal"] {
        let exists = threads.iter().any(|(name, _)| name == expected);
        assert!(exists, "no {expected} thread: {threads:?}");
    }
    // Query threads and the threads serving HTTP and Postgres requests keep
    // the process's priority (as does the main thread, which only polls the
    // listeners); every other thread yields.
    for (name, nice) in &threads {
        let expected = if ["weir-query", "weir-api", "weir"].contains(&name.as_str()) {
            0
        } else {
            7
        };
        assert_eq!(*nice, expected, "{name}: {threads:?}");
    }
}
