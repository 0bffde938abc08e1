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
use weir_proto::v1::field;

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
    assert_eq!(types[0], "time:Timestamp(ns, \"+00:00\")");
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
