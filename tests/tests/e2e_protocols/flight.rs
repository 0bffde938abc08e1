//! Arrow Flight `DoPut` on the gRPC port.

use anyhow::{Context, Result, bail, ensure};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use serde_json::Value;
use weir_e2e::{WeirServer, tests_dir};

use super::rows;

/// pyarrow.flight writes batches of the Arrow types Arrow tooling sends;
/// each is acknowledged once durable, they read back in Weir's types, and
/// a bad batch ends its stream with the reason while the ones before it
/// stay written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_flight_writes_record_batches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = WeirServer::start_unconfigured(&dir.path().join("data"), &[])?;
    let location = server.grpc_url.replace("http://", "grpc://");
    let out = std::process::Command::new("python3")
        .arg(tests_dir().join("clients/flight_put.py"))
        .arg(&location)
        .output()
        .context("python3 with pyarrow (tests/run.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "flight_put.py failed:\n{}\nweir log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    let seen: Value = serde_json::from_slice(&out.stdout)?;
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
    let status = client
        .do_get(arrow_flight::Ticket::new("x"))
        .await
        .expect_err("DoGet is not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    // Still serving, and the acknowledged batches survive a crash.
    server.kill9();
    server.restart()?;
    check(&rows(&server, query).await?);
    Ok(())
}
