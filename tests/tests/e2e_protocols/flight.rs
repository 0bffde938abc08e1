//! Arrow Flight `DoPut` on the gRPC port.

use anyhow::{Context, Result, ensure};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use serde_json::Value;
use weir_e2e::{WeirServer, tests_dir};

use super::{python_client, rows, seed_uptime};

/// pyarrow.flight writes batches of the Arrow types Arrow tooling sends;
/// each is acknowledged once durable, they read back in Weir's types, and
/// a bad batch ends its stream with the reason while the ones before it
/// stay written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_writes_record_batches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = WeirServer::start_unconfigured(&dir.path().join("data"), &[])?;
    let location = server.grpc_url.replace("http://", "grpc://");
    let seen = python_client(&server, "flight_put.py", &[location.as_ref()], "pyarrow")?;
    let acks = &seen["good"]["acks"];
    assert_eq!(seen["good"].get("error"), None, "{seen}");
    assert_eq!(
        *acks,
        serde_json::json!([
            {"batch": 0, "rows_written": 1000},
            {"batch": 1, "rows_written": 1000},
            {"batch": 2, "rows_written": 500},
        ]),
        "{seen}"
    );
    assert_eq!(
        seen["nan"]["acks"].as_array().map(Vec::len),
        Some(1),
        "{seen}"
    );
    let nan = seen["nan"]["error"].as_str().unwrap_or_default();
    assert!(nan.contains("batch 1") && nan.contains("NaN"), "{seen}");
    let reserved = seen["reserved"]["error"].as_str().unwrap_or_default();
    assert!(reserved.contains("reserved"), "{seen}");

    let check = |stats: &[serde_json::Map<String, Value>]| {
        assert_eq!(stats[0]["n"], 2510, "{stats:?}");
        assert_eq!(stats[0]["hosts"], 3);
        assert_eq!(stats[0]["first"], "2023-11-14T22:13:20Z");
        assert_eq!(stats[0]["cpu_type"], "Float64");
        assert_eq!(stats[0]["cores_type"], "Int64");
        assert_eq!(stats[0]["note_type"], "Utf8");
        assert_eq!(stats[0]["null_cores"], 1255);
    };
    let query = "SELECT COUNT(*) AS n, COUNT(DISTINCT host) AS hosts,
                        CAST(MIN(time) AS VARCHAR) AS first,
                        arrow_typeof(MAX(cpu)) AS cpu_type, arrow_typeof(MAX(cores)) AS cores_type,
                        arrow_typeof(MAX(note)) AS note_type,
                        SUM(CASE WHEN cores IS NULL THEN 1 ELSE 0 END) AS null_cores
                 FROM flight_metrics";
    check(&rows(&server, query).await?);

    // Streams built past pyarrow: each refused with a clear status.
    let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())?
        .connect()
        .await?;
    let mut client = FlightServiceClient::new(channel);
    let put = |messages: Vec<FlightData>| {
        let mut client = client.clone();
        async move {
            let mut acks = client
                .do_put(futures::stream::iter(messages))
                .await?
                .into_inner();
            while let Some(ack) = acks.next().await {
                ack?;
            }
            Ok::<_, tonic::Status>(())
        }
    };
    let refusals = [
        (Vec::new(), "the stream is empty"),
        (
            vec![FlightData {
                flight_descriptor: Some(FlightDescriptor::new_cmd("SELECT 1")),
                ..Default::default()
            }],
            "a path of one element",
        ),
        (
            vec![FlightData {
                flight_descriptor: Some(FlightDescriptor::new_path(vec!["t".into()])),
                data_header: b"\x10\x00\x00\x00garbage".to_vec().into(),
                data_body: vec![0; 64].into(),
                ..Default::default()
            }],
            "not an Arrow IPC record batch",
        ),
    ];
    for (messages, says) in refusals {
        let status = put(messages).await.expect_err(says);
        ensure!(
            status.code() == tonic::Code::InvalidArgument && status.message().contains(says),
            "want {says:?}, got {status:?}"
        );
    }
    // A Flight SQL update is refused as such: Weir's SQL is read-only.
    let update = arrow_flight::sql::CommandStatementUpdate {
        query: "DELETE FROM t".into(),
        transaction_id: None,
    };
    let status = put(vec![FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(prost::Message::encode_to_vec(
            &arrow_flight::sql::ProstMessageExt::as_any(&update),
        ))),
        ..Default::default()
    }])
    .await
    .expect_err("a Flight SQL update");
    ensure!(
        status.code() == tonic::Code::Unimplemented && status.message().contains("read-only"),
        "{status:?}"
    );
    // DoGet is Flight SQL's: a ticket that is not one of its commands is
    // refused as such.
    let status = client
        .do_get(arrow_flight::Ticket::new("x"))
        .await
        .expect_err("not a Flight SQL ticket");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Still serving, and the acknowledged batches survive a crash.
    server.kill9();
    server.restart()?;
    check(&rows(&server, query).await?);
    Ok(())
}

/// ADBC's Flight SQL driver (PyPI), as an analyst's notebook uses it: the
/// reference uptime query verbatim gives the HTTP answer, as Arrow; the
/// catalog lists the table with its columns; a prepared statement runs,
/// with parameters bound as values (an injection attempt stays a string); a
/// write, a broken statement, an unknown table and a parameter of the wrong
/// type are refused with the reason, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_queries_over_flight_sql() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = WeirServer::start(&dir.path().join("data"), &[])?;
    seed_uptime(&server).await?;
    let reference_path = tests_dir().join("sql/reference_uptime.sql");
    let reference = std::fs::read_to_string(&reference_path)?;
    let over_http = server.sql(&reference).await?;
    ensure!(over_http.len() == 20, "{over_http:?}");

    let location = server.grpc_url.replace("http://", "grpc://");
    let seen = python_client(
        &server,
        "flight_sql.py",
        &[location.as_ref(), reference_path.as_ref()],
        "adbc-driver-flightsql",
    )?;

    assert_eq!(seen["vendor"], "Weir", "{seen}");
    // The same answer as over HTTP, service for service (the query orders
    // by uptime only, so tied services may come in any order).
    let by_service = |rows: &[Value]| -> Result<std::collections::BTreeMap<String, Value>> {
        rows.iter()
            .map(|r| {
                let name = r["service_name"].as_str().context("a service name")?;
                Ok((name.to_string(), r.clone()))
            })
            .collect()
    };
    let over_flight = by_service(seen["reference"].as_array().context("reference rows")?)?;
    let over_http: Vec<Value> = over_http.into_iter().map(Value::Object).collect();
    let over_http = by_service(&over_http)?;
    assert_eq!(over_flight.len(), 20, "{seen}");
    assert_eq!(
        over_flight.keys().collect::<Vec<_>>(),
        over_http.keys().collect::<Vec<_>>()
    );
    for (service, flight) in &over_flight {
        let http = &over_http[service];
        for column in ["avg_uptime_pct", "worst_hour_pct"] {
            let (a, b) = (
                flight[column].as_f64().context("a number")?,
                http[column].as_f64().context("a number")?,
            );
            assert!((a - b).abs() < 1e-9, "{service} {column}: {a} vs {b}");
        }
        assert_eq!(
            flight["degraded_hours"], http["degraded_hours"],
            "{service}"
        );
        assert_eq!(flight["status"], http["status"], "{service}");
    }
    // Arrow types as stored, no conversion on the way.
    assert_eq!(
        seen["latest_types"],
        serde_json::json!(["string", "int64", "timestamp[ns, tz=+00:00]"]),
        "{seen}"
    );
    assert_eq!(seen["latest_rows"], 3);
    assert_eq!(seen["prepared_count"], 720, "{seen}");
    let schema = &seen["table_schema"];
    assert_eq!(
        schema["service_name"], "dictionary<values=string, indices=int32, ordered=0>",
        "{seen}"
    );
    assert_eq!(schema["response_ms"], "double", "{seen}");
    assert_eq!(schema["recorded_at"], "timestamp[ns, tz=+00:00]", "{seen}");
    let tables: Vec<&str> = seen["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tables.contains(&"service_metrics"), "{seen}");
    for (what, says) in [
        ("insert", "read-only"),
        ("broken", "SELEC"),
        ("unknown", "nope"),
    ] {
        let error = seen[what].as_str().unwrap_or_default();
        assert!(error.contains(says), "{what}: want {says:?} in {error:?}");
    }
    let count = |sql: &'static str| server.count(sql);
    assert_eq!(
        seen["bound_503"],
        count("SELECT count(*) FROM service_metrics WHERE status_code = 503").await?,
        "{seen}"
    );
    assert_eq!(
        seen["bound_healthy"],
        count("SELECT count(*) FROM service_metrics WHERE status = 'healthy'").await?,
        "{seen}"
    );
    assert_eq!(seen["bound_injection"], 0, "{seen}");
    assert!(seen["bad_parameter"].is_string(), "{seen}");
    // Still serving.
    assert_eq!(
        server
            .count("SELECT count(*) AS n FROM service_metrics")
            .await?,
        720
    );
    Ok(())
}

/// The server's resident memory, from `/proc`.
fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("VmRSS")?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// A Flight SQL client that asks for a 1.6 GB answer and never reads it:
/// the answer streams, so the server holds a few batches for it (not the
/// answer) and keeps serving others. (That the timeout then ends the query
/// is `weir-query`'s `streamed_answers_are_whole_or_end_in_an_error`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_sql_reader_that_never_reads_holds_little() -> Result<()> {
    use arrow_flight::sql::client::FlightSqlServiceClient;

    let dir = tempfile::tempdir()?;
    // A result cap above the answer: were it collected, nothing would stop
    // it before it filled memory.
    let server = WeirServer::start(
        &dir.path().join("data"),
        &["--query-timeout", "8s", "--query-max-result-size", "4GiB"],
    )?;
    let pid = server.pid().context("pid")?;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())?
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);
    let before = rss_bytes(pid)?;
    let info = client
        .execute(
            "SELECT value FROM generate_series(1, 200000000)".to_string(),
            None,
        )
        .await?;
    let ticket = info.endpoint[0].ticket.clone().context("a ticket")?;
    let stalled = client.do_get(ticket).await?; // never polled
    // Give the server time to fill whatever it would buffer.
    let mut peak = before;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        peak = peak.max(rss_bytes(pid)?);
        // Others are served meanwhile.
        assert_eq!(
            server
                .count("SELECT count(*) FROM generate_series(1, 10)")
                .await?,
            10
        );
    }
    eprintln!("resident memory {before} → {peak} bytes with an unread 1.6 GB answer");
    ensure!(
        peak < before + (256 << 20),
        "resident memory grew from {before} to {peak} bytes for an unread stream"
    );
    drop(stalled);
    Ok(())
}
