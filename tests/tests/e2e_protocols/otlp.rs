//! OpenTelemetry OTLP over gRPC and HTTP.

use std::io::Write;

use anyhow::{Context, Result, bail, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use weir_e2e::{WeirServer, free_port, tests_dir};

use super::{Refused, post, rows};

/// Runs `otlp_export.py` (the OpenTelemetry Python SDK and its exporters);
/// returns what it printed.
fn export(transport: &str, endpoint: &str, service: &str, server: &WeirServer) -> Result<Value> {
    let out = std::process::Command::new("python3")
        .arg(tests_dir().join("clients/otlp_export.py"))
        .args([transport, endpoint, service])
        .output()
        .context("python3 with the OpenTelemetry SDK (tests/run.sh installs it)")?;
    if !out.status.success() {
        bail!(
            "otlp_export.py failed:\n{}\nweir log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    let seen: Value = serde_json::from_slice(&out.stdout)?;
    for signal in ["spans", "logs", "metrics"] {
        ensure!(
            seen["results"][signal] == "SUCCESS",
            "{transport}: {signal} export failed: {seen}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(seen)
}

/// The Python SDK exports over gRPC to the OTLP gRPC listener and over
/// HTTP/protobuf (gzip'd spans) to the OTLP HTTP listener; every signal
/// lands in its tables, and a log line joins its span on the trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_sdk_exports_over_grpc_and_http() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (grpc_port, http_port) = (free_port()?, free_port()?);
    let grpc = format!("127.0.0.1:{grpc_port}");
    let http = format!("127.0.0.1:{http_port}");
    let server = WeirServer::start_unconfigured(
        &dir.path().join("data"),
        &["--otlp-grpc-listen", &grpc, "--otlp-http-listen", &http],
    )?;
    let via_grpc = export("grpc", &grpc, "svc-grpc", &server)?;
    let via_http = export("http", &format!("http://{http}"), "svc-http", &server)?;

    for (service, seen) in [("svc-grpc", &via_grpc), ("svc-http", &via_http)] {
        // A sum: one row per route, cumulative and monotonic.
        let requests = rows(
            &server,
            &format!(
                "SELECT CAST(http_route AS VARCHAR) AS route, value,
                        CAST(temporality AS VARCHAR) AS temporality, monotonic,
                        CAST(otel_scope_name AS VARCHAR) AS scope,
                        CAST(deployment_environment AS VARCHAR) AS env
                 FROM http_requests WHERE service_name = '{service}' ORDER BY route"
            ),
        )
        .await?;
        assert_eq!(requests.len(), 2, "{service}: {requests:?}");
        assert_eq!(requests[0]["route"], "/cart");
        assert_eq!(requests[0]["value"], 1.0);
        assert_eq!(requests[1]["value"], 2.0);
        assert_eq!(requests[1]["temporality"], "cumulative");
        assert_eq!(requests[1]["monotonic"], true);
        assert_eq!(requests[1]["scope"], "weir.e2e.meter");
        assert_eq!(requests[1]["env"], "e2e");

        // An up-down counter is a non-monotonic sum; a gauge keeps its attribute.
        let queue = rows(
            &server,
            &format!("SELECT value, monotonic FROM queue_depth WHERE service_name = '{service}'"),
        )
        .await?;
        assert_eq!(queue[0]["value"], 3.0, "{queue:?}");
        assert_eq!(queue[0]["monotonic"], false);
        let temperature = rows(
            &server,
            &format!(
                "SELECT value, CAST(core AS VARCHAR) AS core FROM cpu_temperature
                 WHERE service_name = '{service}'"
            ),
        )
        .await?;
        assert_eq!(temperature[0]["value"], 41.5, "{temperature:?}");
        assert_eq!(temperature[0]["core"], "0");

        // A histogram: its buckets add up to its count.
        let histogram = rows(
            &server,
            &format!(
                "SELECT h.count, h.sum, b.buckets, b.infinite
                 FROM http_duration h JOIN (
                     SELECT time, service_name, http_route, SUM(count) AS buckets,
                            SUM(CASE WHEN le = '+Inf' THEN count END) AS infinite
                     FROM http_duration_bucket GROUP BY time, service_name, http_route
                 ) b ON h.time = b.time AND h.service_name = b.service_name AND h.http_route = b.http_route
                 WHERE h.service_name = '{service}' AND h.http_route = '/pay'"
            ),
        )
        .await?;
        assert_eq!(histogram.len(), 1, "{histogram:?}");
        assert_eq!(histogram[0]["count"], 2);
        assert_eq!(histogram[0]["sum"], 262.0);
        assert_eq!(histogram[0]["buckets"], 2);
        assert_eq!(histogram[0]["infinite"], 0);
        // An exponential histogram (the SDK view): same, with bounds that
        // hold each recorded value.
        let exponential = rows(
            &server,
            &format!(
                "SELECT SUM(b.count) AS n, MIN(b.lower_bound) AS low, MAX(b.upper_bound) AS high
                 FROM payment_latency_bucket b WHERE b.service_name = '{service}'"
            ),
        )
        .await?;
        assert_eq!(exponential[0]["n"], 3, "{exponential:?}");
        let (low, high) = (
            exponential[0]["low"].as_f64().unwrap_or(f64::NAN),
            exponential[0]["high"].as_f64().unwrap_or(f64::NAN),
        );
        assert!(
            (1.0..3.0).contains(&low) && (250.0..300.0).contains(&high),
            "{exponential:?}"
        );

        // Traces: both spans, the child under the parent, its event.
        let trace_id = seen["trace_id"].as_str().context("trace id")?;
        let spans = rows(
            &server,
            &format!(
                "SELECT CAST(name AS VARCHAR) AS name, span_id, parent_span_id,
                        CAST(kind AS VARCHAR) AS kind, duration_ns,
                        CAST(order_id AS VARCHAR) AS order_id
                 FROM otel_spans WHERE trace_id = '{trace_id}' ORDER BY name"
            ),
        )
        .await?;
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0]["name"], "charge card");
        assert_eq!(spans[1]["name"], "checkout");
        assert_eq!(spans[1]["span_id"], seen["span_id"]);
        assert_eq!(spans[0]["parent_span_id"], seen["span_id"]);
        assert_eq!(spans[1]["kind"], "internal");
        assert_eq!(spans[1]["order_id"], "A-17");
        assert!(spans[1]["duration_ns"].as_i64().unwrap_or(-1) >= 0);
        let events = rows(
            &server,
            &format!(
                "SELECT CAST(name AS VARCHAR) AS name, CAST(reason AS VARCHAR) AS reason
                 FROM otel_span_events WHERE trace_id = '{trace_id}'"
            ),
        )
        .await?;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["name"], "card declined");
        assert_eq!(events[0]["reason"], "insufficient funds");

        // The correlation story: the log line written inside the child span
        // joins that span on its trace and span ids.
        let joined = rows(
            &server,
            &format!(
                "SELECT l.body, CAST(l.severity_text AS VARCHAR) AS severity, l.severity_number,
                        CAST(s.name AS VARCHAR) AS span
                 FROM otel_logs l JOIN otel_spans s
                   ON l.trace_id = s.trace_id AND l.span_id = s.span_id
                 WHERE l.trace_id = '{trace_id}'"
            ),
        )
        .await?;
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert_eq!(joined[0]["body"], "payment failed for order A-17");
        assert_eq!(joined[0]["severity"], "ERROR");
        assert_eq!(joined[0]["severity_number"], 17);
        assert_eq!(joined[0]["span"], "charge card");
    }
    Ok(())
}

fn gauge_request(name: &str, attributes: Vec<KeyValue>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsDouble(1.0)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn attributes(n: usize) -> Vec<KeyValue> {
    (0..n)
        .map(|i| KeyValue {
            key: format!("attribute.{i}"),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("v".into())),
            }),
            ..Default::default()
        })
        .collect()
}

/// Dropped points come back as `partial_success`; bodies that are not OTLP,
/// past the limits or in an unknown encoding are refused in OTLP's
/// convention (gRPC status; HTTP status with a `google.rpc.Status`); the
/// server keeps serving and keeps what it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_reports_partial_success_and_refuses_what_is_not_otlp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = WeirServer::start_unconfigured(&dir.path().join("data"), &[])?;

    // gRPC on Weir's own port: one good request, one dropped point.
    let mut client = MetricsServiceClient::connect(server.grpc_url.clone())
        .await?
        .max_encoding_message_size(usize::MAX);
    let answer = client
        .export(gauge_request("good.gauge", attributes(3)))
        .await?
        .into_inner();
    assert_eq!(answer.partial_success, None, "nothing dropped: unset");
    let answer = client
        .export(gauge_request("weir_sneaky", vec![]))
        .await?
        .into_inner();
    let partial = answer.partial_success.context("partial_success")?;
    assert_eq!(partial.rejected_data_points, 1);
    assert!(partial.error_message.contains("reserved"), "{partial:?}");

    // 100,000 attributes: past the write limits, refused whole.
    let wide = gauge_request("wide", attributes(100_000));
    let status = client.export(wide.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("limit of 10000 columns"),
        "{status:?}"
    );
    let (code, text) = post(
        &server,
        "/v1/metrics",
        &[("content-type", "application/x-protobuf")],
        wide.encode_to_vec(),
    )
    .await?;
    ensure!(
        code == 400 && text.contains("limit of 10000 columns"),
        "{code}: {text}"
    );

    // A gzip bomb over gRPC: a 100 MiB attribute that compresses to
    // about 100 KiB stops at the 64 MiB message limit while inflating.
    let mut bomb = gauge_request("bomb", vec![]);
    bomb.resource_metrics[0].resource = Some(Resource {
        attributes: vec![KeyValue {
            key: "big".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("a".repeat(100 << 20))),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let status = client
        .clone()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .export(bomb)
        .await
        .expect_err("a message past the limit once inflated");
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");

    // OTLP/JSON on Weir's HTTP port, with a record dropped for its id.
    let logs = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
        "scopeLogs":[{"logRecords":[
          {"timeUnixNano":"1700000000000000000","body":{"stringValue":"kept"},"severityText":"INFO"},
          {"timeUnixNano":"1700000000000000000","body":{"stringValue":"dropped"},"traceId":"0102"}]}]}]}"#;
    let (code, text) = post(
        &server,
        "/v1/logs",
        &[("content-type", "application/json")],
        logs,
    )
    .await?;
    ensure!(code == 200, "{code}: {text}");
    let answer: Value = serde_json::from_str(&text)?;
    let rejected = &answer["partialSuccess"]["rejectedLogRecords"];
    ensure!(rejected == 1 || rejected == "1", "{answer}");
    ensure!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("log record 1: trace_id is 2 bytes")),
        "{answer}"
    );

    let bomb = {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(&vec![0u8; 200 << 20])?;
        e.finish()?
    };
    for refused in [
        Refused {
            path: "/v1/metrics",
            headers: &[("content-type", "application/x-protobuf")],
            body: b"\xff\xff\xff\xff".to_vec(),
            status: 400,
            says: "not an OTLP protobuf request",
        },
        Refused {
            path: "/v1/traces",
            headers: &[("content-type", "application/json")],
            body: br#"{"resourceSpans": 7}"#.to_vec(),
            status: 400,
            says: "not an OTLP JSON request",
        },
        Refused {
            path: "/v1/logs",
            headers: &[("content-type", "text/plain")],
            body: b"hello".to_vec(),
            status: 415,
            says: "application/x-protobuf or application/json",
        },
        Refused {
            path: "/v1/logs",
            headers: &[
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            body: b"{}".to_vec(),
            status: 415,
            says: "gzip",
        },
        Refused {
            path: "/v1/metrics",
            headers: &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            body: bomb,
            status: 413,
            says: "limit",
        },
        Refused {
            path: "/v1/metrics",
            headers: &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            body: b"not gzip".to_vec(),
            status: 400,
            says: "gzip",
        },
    ] {
        refused.check(&server).await?;
    }

    // What was acknowledged survives a crash.
    server.kill9();
    server.restart()?;
    let kept = rows(
        &server,
        "SELECT (SELECT COUNT(*) FROM good_gauge) AS gauges,
                (SELECT COUNT(*) FROM otel_logs WHERE service_name = 'json-svc') AS logs",
    )
    .await?;
    assert_eq!(kept[0]["gauges"], 1, "{kept:?}");
    assert_eq!(kept[0]["logs"], 1, "{kept:?}");
    Ok(())
}
