use arrow::util::display::array_value_to_string;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};
use prost::Message;
use weir_model::TableBatch;

use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;
const T: u64 = 1_700_000_100_000_000_000;

fn time(_: &str) -> String {
    "time".to_string()
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, string(v))).collect()
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attrs(&[("service.name", "checkout"), ("host.name", "web-1")]),
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "shop.lib".into(),
        version: "1.2".into(),
        ..Default::default()
    })
}

fn metrics_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(value: number_data_point::Value, attributes: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(attributes),
        time_unix_nano: T,
        value: Some(value),
        ..Default::default()
    }
}

fn decode_metrics(request: &ExportMetricsServiceRequest) -> metrics::Metrics {
    metrics::decode(request, NOW, WriteLimits::default(), &time).unwrap()
}

fn table<'a>(decoded: &'a Decoded, name: &str) -> &'a TableBatch {
    decoded
        .batches
        .iter()
        .find(|b| b.table == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = decoded.batches.iter().map(|b| &b.table).collect();
            panic!("no table {name} among {names:?}")
        })
}

/// A cell as text ("" for NULL); panics if the column is missing.
fn cell(batch: &TableBatch, column: &str, row: usize) -> String {
    let index = batch
        .batch
        .schema()
        .index_of(column)
        .unwrap_or_else(|_| panic!("{}: no column {column}", batch.table));
    let array = batch.batch.column(index);
    if array.is_null(row) {
        return String::new();
    }
    array_value_to_string(array, row).unwrap()
}

fn has_column(batch: &TableBatch, column: &str) -> bool {
    batch.batch.schema().index_of(column).is_ok()
}

#[test]
fn gauges_and_sums_land_by_metric_name_with_resource_scope_and_point_tags() {
    use number_data_point::Value::{AsDouble, AsInt};
    let out = decode_metrics(&metrics_request(vec![
        metric(
            "process.cpu.utilization",
            metric::Data::Gauge(Gauge {
                data_points: vec![
                    number(AsDouble(0.25), &[("cpu", "0")]),
                    number(AsInt(3), &[("cpu", "1"), ("service.name", "override")]),
                    number(AsDouble(f64::NAN), &[("cpu", "2")]),
                ],
            }),
        ),
        metric(
            "http.requests",
            metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: T - 60_000_000_000,
                    ..number(AsInt(42), &[("value", "shadowed"), ("route", "/pay")])
                }],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
    ]));
    assert!(
        out.decoded.rejected.is_empty(),
        "{:?}",
        out.decoded.rejected
    );
    let gauge = table(&out.decoded, "process_cpu_utilization");
    assert_eq!(gauge.batch.num_rows(), 3);
    assert_eq!(cell(gauge, "time", 0), "2023-11-14T22:15:00Z");
    assert_eq!(cell(gauge, "value", 0), "0.25");
    assert_eq!(cell(gauge, "value", 1), "3.0");
    assert_eq!(cell(gauge, "value", 2), "", "NaN is NULL");
    assert_eq!(cell(gauge, "service_name", 0), "checkout");
    assert_eq!(cell(gauge, "service_name", 1), "override", "the point wins");
    assert_eq!(cell(gauge, "host_name", 2), "web-1");
    assert_eq!(cell(gauge, "otel_scope_name", 0), "shop.lib");
    assert_eq!(cell(gauge, "otel_scope_version", 0), "1.2");
    assert_eq!(cell(gauge, "cpu", 1), "1");

    let sum = table(&out.decoded, "http_requests");
    assert_eq!(cell(sum, "value", 0), "42.0");
    assert_eq!(cell(sum, "temporality", 0), "cumulative");
    assert_eq!(cell(sum, "monotonic", 0), "true");
    assert_eq!(
        cell(sum, "start_time_unix_nano", 0),
        (T - 60_000_000_000).to_string()
    );
    assert_eq!(
        cell(sum, "attr_value", 0),
        "shadowed",
        "a reserved key is renamed"
    );
    assert_eq!(cell(sum, "route", 0), "/pay");
}

#[test]
fn histograms_keep_their_point_and_each_bucket_with_bounds() {
    let out = decode_metrics(&metrics_request(vec![metric(
        "rpc.duration",
        metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attrs(&[("method", "get")]),
                time_unix_nano: T,
                count: 6,
                sum: Some(2.5),
                min: Some(0.01),
                max: Some(1.5),
                bucket_counts: vec![1, 3, 2],
                explicit_bounds: vec![0.1, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: 1,
        }),
    )]));
    assert!(out.decoded.rejected.is_empty());
    let point = table(&out.decoded, "rpc_duration");
    assert_eq!(cell(point, "count", 0), "6");
    assert_eq!(cell(point, "sum", 0), "2.5");
    assert_eq!(cell(point, "max", 0), "1.5");
    assert_eq!(cell(point, "temporality", 0), "delta");
    let buckets = table(&out.decoded, "rpc_duration_bucket");
    assert_eq!(buckets.batch.num_rows(), 3);
    let rows: Vec<_> = (0..3)
        .map(|r| {
            [
                cell(buckets, "le", r),
                cell(buckets, "lower_bound", r),
                cell(buckets, "upper_bound", r),
                cell(buckets, "count", r),
                cell(buckets, "method", r),
            ]
        })
        .collect();
    assert_eq!(
        rows,
        [
            ["0.1", "", "0.1", "1", "get"],
            ["1", "0.1", "1.0", "3", "get"],
            ["+Inf", "1.0", "", "2", "get"],
        ]
    );
}

#[test]
fn a_malformed_histogram_drops_its_point_and_leaves_no_bucket() {
    let bad = |counts: Vec<u64>, bounds: Vec<f64>| HistogramDataPoint {
        time_unix_nano: T,
        count: 1,
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..Default::default()
    };
    let out = decode_metrics(&metrics_request(vec![metric(
        "h",
        metric::Data::Histogram(Histogram {
            data_points: vec![
                bad(vec![1, 2], vec![0.5, 1.0]),
                bad(vec![1, 2, 3], vec![1.0, 0.5]),
                bad(vec![1, 2], vec![f64::NAN]),
                bad(vec![1, 0], vec![2.0]),
            ],
            aggregation_temporality: 2,
        }),
    )]));
    let rejected = &out.decoded.rejected;
    assert_eq!(rejected.points, 3);
    assert_eq!(
        rejected.reasons.iter().map(|r| r.at).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(
        rejected.reasons[0]
            .message
            .contains("2 bucket counts for 2 bounds")
    );
    assert!(rejected.reasons[1].message.contains("not increasing"));
    assert!(rejected.reasons[2].message.contains("not finite"));
    assert_eq!(table(&out.decoded, "h").batch.num_rows(), 1);
    assert_eq!(table(&out.decoded, "h_bucket").batch.num_rows(), 2);
}

#[test]
fn exponential_buckets_get_their_bounds_and_empty_ones_are_left_out() {
    let out = decode_metrics(&metrics_request(vec![metric(
        "latency",
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: T,
                count: 7,
                sum: Some(9.0),
                scale: 0,
                zero_count: 1,
                zero_threshold: 0.0,
                // scale 0: base 2, bucket i is (2^i, 2^(i+1)].
                positive: Some(Buckets {
                    offset: 0,
                    bucket_counts: vec![2, 0, 3],
                }),
                negative: Some(Buckets {
                    offset: 1,
                    bucket_counts: vec![1],
                }),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        }),
    )]));
    assert!(out.decoded.rejected.is_empty());
    assert_eq!(cell(table(&out.decoded, "latency"), "scale", 0), "0");
    let buckets = table(&out.decoded, "latency_bucket");
    let rows: Vec<_> = (0..buckets.batch.num_rows())
        .map(|r| {
            [
                cell(buckets, "lower_bound", r),
                cell(buckets, "upper_bound", r),
                cell(buckets, "count", r),
            ]
        })
        .collect();
    assert_eq!(
        rows,
        [
            ["-4.0", "-2.0", "1"],
            ["-0.0", "0.0", "1"],
            ["1.0", "2.0", "2"],
            ["4.0", "8.0", "3"],
        ]
    );
}

#[test]
fn summaries_keep_count_sum_and_quantiles() {
    let out = decode_metrics(&metrics_request(vec![metric(
        "gc.pause",
        metric::Data::Summary(Summary {
            data_points: vec![
                SummaryDataPoint {
                    time_unix_nano: T,
                    count: 10,
                    sum: 0.5,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.04,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: f64::NAN,
                        },
                    ],
                    ..Default::default()
                },
                SummaryDataPoint {
                    time_unix_nano: T,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 2.0,
                        value: 1.0,
                    }],
                    ..Default::default()
                },
            ],
        }),
    )]));
    assert_eq!(out.decoded.rejected.points, 1);
    assert!(
        out.decoded.rejected.reasons[0]
            .message
            .contains("quantile 2")
    );
    assert_eq!(cell(table(&out.decoded, "gc_pause"), "count", 0), "10");
    let quantiles = table(&out.decoded, "gc_pause_quantile");
    assert_eq!(cell(quantiles, "quantile", 1), "0.99");
    assert_eq!(cell(quantiles, "value", 0), "0.04");
    assert_eq!(cell(quantiles, "value", 1), "");
}

#[test]
fn points_without_a_recorded_value_are_skipped() {
    let out = decode_metrics(&metrics_request(vec![metric(
        "g",
        metric::Data::Gauge(Gauge {
            data_points: vec![
                NumberDataPoint {
                    flags: 1,
                    ..number(number_data_point::Value::AsDouble(1.0), &[])
                },
                number(number_data_point::Value::AsDouble(2.0), &[]),
            ],
        }),
    )]));
    assert_eq!(out.no_value, 1);
    assert_eq!(table(&out.decoded, "g").batch.num_rows(), 1);
}

#[test]
fn names_and_keys_become_sql_friendly_and_reserved_tables_are_refused() {
    assert_eq!(sanitize("http.server.duration"), "http_server_duration");
    assert_eq!(sanitize("plain_name"), "plain_name");
    assert!(matches!(sanitize("plain_name"), Cow::Borrowed(_)));
    assert_eq!(sanitize("5xx-rate"), "_5xx_rate");
    assert_eq!(sanitize("café"), "caf_");

    let out = decode_metrics(&metrics_request(vec![
        metric(
            "weir.plugins",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(number_data_point::Value::AsInt(1), &[])],
            }),
        ),
        metric(
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![number(number_data_point::Value::AsInt(1), &[])],
            }),
        ),
    ]));
    assert!(out.decoded.batches.is_empty());
    assert_eq!(out.decoded.rejected.points, 2);
    assert!(out.decoded.rejected.reasons[0].message.contains("reserved"));
}

#[test]
fn attribute_values_of_every_kind_become_text() {
    let nested = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("a", string("x\"y")),
                kv(
                    "b",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(any_value::Value::IntValue(1)),
                                },
                                AnyValue {
                                    value: Some(any_value::Value::DoubleValue(0.5)),
                                },
                                AnyValue {
                                    value: Some(any_value::Value::BoolValue(false)),
                                },
                            ],
                        })),
                    },
                ),
            ],
        })),
    };
    assert_eq!(
        text(&nested, 100).unwrap(),
        r#"{"a":"x\"y","b":[1,0.5,false]}"#
    );
    let bytes = AnyValue {
        value: Some(any_value::Value::BytesValue(vec![0xde, 0xad])),
    };
    assert_eq!(text(&bytes, 100).unwrap(), "dead");
    assert!(text(&AnyValue { value: None }, 100).is_none());

    // A huge value is cut soon after the limit rather than built whole.
    let huge = AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: vec![string("0123456789"); 100_000],
        })),
    };
    let rendered = text(&huge, MAX_TAG_VALUE_BYTES).unwrap();
    assert!(rendered.len() > MAX_TAG_VALUE_BYTES && rendered.len() < MAX_TAG_VALUE_BYTES + 64);
}

#[test]
fn an_attribute_too_long_for_a_tag_drops_the_point_and_names_it() {
    let long = "x".repeat(MAX_TAG_VALUE_BYTES + 1);
    let out = decode_metrics(&metrics_request(vec![metric(
        "g",
        metric::Data::Gauge(Gauge {
            data_points: vec![
                number(number_data_point::Value::AsInt(1), &[("big", &long)]),
                number(number_data_point::Value::AsInt(2), &[("small", "ok")]),
            ],
        }),
    )]));
    assert_eq!(out.decoded.rejected.points, 1);
    assert!(out.decoded.rejected.reasons[0].message.contains("big"));
    let g = table(&out.decoded, "g");
    assert_eq!(g.batch.num_rows(), 1);
    assert!(!has_column(g, "big"), "a dropped point leaves no column");
}

#[test]
fn attributes_past_the_column_limit_fail_the_request() {
    let attributes: Vec<_> = (0..100_000)
        .map(|i| kv(&format!("k{i}"), string("v")))
        .collect();
    let mut request = metrics_request(vec![metric(
        "g",
        metric::Data::Gauge(Gauge {
            data_points: vec![number(number_data_point::Value::AsInt(1), &[])],
        }),
    )]);
    request.resource_metrics[0].resource = Some(Resource {
        attributes,
        ..Default::default()
    });
    let err = metrics::decode(&request, NOW, WriteLimits::default(), &time).unwrap_err();
    assert!(err.to_string().contains("10000"), "{err}");
}

fn logs_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN: [u8; 8] = [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

#[test]
fn log_records_keep_severity_body_and_ids_in_hex() {
    let out = logs::decode(
        &logs_request(vec![
            LogRecord {
                time_unix_nano: T,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: Some(string("payment failed")),
                attributes: attrs(&[("body", "an attribute"), ("order", "A-1")]),
                trace_id: TRACE.to_vec(),
                span_id: SPAN.to_vec(),
                ..Default::default()
            },
            // No time: the observed time is used; no ids.
            LogRecord {
                observed_time_unix_nano: T + 1,
                body: Some(AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("event", string("login"))],
                    })),
                }),
                ..Default::default()
            },
            LogRecord {
                time_unix_nano: T,
                trace_id: vec![1, 2, 3],
                ..Default::default()
            },
        ]),
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap();
    assert_eq!(out.rejected.points, 1);
    assert_eq!(out.rejected.reasons[0].at, 2);
    assert!(
        out.rejected.reasons[0]
            .message
            .contains("trace_id is 3 bytes")
    );
    let logs = table(&out, logs::LOGS_TABLE);
    assert_eq!(logs.batch.num_rows(), 2);
    assert_eq!(
        cell(logs, "trace_id", 0),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(cell(logs, "span_id", 0), "00f067aa0ba902b7");
    assert_eq!(cell(logs, "severity_text", 0), "ERROR");
    assert_eq!(cell(logs, "severity_number", 0), "17");
    assert_eq!(cell(logs, "body", 0), "payment failed");
    assert_eq!(cell(logs, "attr_body", 0), "an attribute");
    assert_eq!(cell(logs, "service_name", 0), "checkout");
    assert_eq!(cell(logs, "body", 1), r#"{"event":"login"}"#);
    assert_eq!(cell(logs, "trace_id", 1), "");
    assert_eq!(cell(logs, "time", 0), "2023-11-14T22:15:00Z");
    assert_eq!(cell(logs, "time", 1), "2023-11-14T22:15:00.000000001Z");
}

fn traces_request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn spans_and_their_events_land_together_or_not_at_all() {
    let good = Span {
        trace_id: TRACE.to_vec(),
        span_id: SPAN.to_vec(),
        name: "POST /pay".into(),
        kind: 2,
        start_time_unix_nano: T,
        end_time_unix_nano: T + 1_500_000,
        attributes: attrs(&[("name", "shadowed"), ("http.route", "/pay")]),
        status: Some(opentelemetry_proto::tonic::trace::v1::Status {
            message: "card declined".into(),
            code: status::StatusCode::Error as i32,
        }),
        events: vec![span::Event {
            time_unix_nano: T + 1_000,
            name: "exception".into(),
            attributes: attrs(&[("exception.type", "CardError")]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let no_trace = Span {
        trace_id: vec![0; 16],
        ..good.clone()
    };
    let bad_event = Span {
        events: vec![span::Event {
            time_unix_nano: u64::MAX,
            ..Default::default()
        }],
        ..good.clone()
    };
    let out = traces::decode(
        &traces_request(vec![good, no_trace, bad_event]),
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap();
    assert_eq!(out.rejected.points, 2);
    assert!(out.rejected.reasons[0].message.contains("no trace_id"));
    assert!(out.rejected.reasons[1].message.contains("out of range"));
    let spans = table(&out, traces::SPANS_TABLE);
    assert_eq!(spans.batch.num_rows(), 1);
    assert_eq!(
        cell(spans, "trace_id", 0),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(cell(spans, "name", 0), "POST /pay");
    assert_eq!(cell(spans, "attr_name", 0), "shadowed");
    assert_eq!(cell(spans, "http_route", 0), "/pay");
    assert_eq!(cell(spans, "kind", 0), "server");
    assert_eq!(cell(spans, "status_code", 0), "error");
    assert_eq!(cell(spans, "status_message", 0), "card declined");
    assert_eq!(cell(spans, "duration_ns", 0), "1500000");
    assert!(!has_column(spans, "parent_span_id"));
    let events = table(&out, traces::SPAN_EVENTS_TABLE);
    assert_eq!(
        events.batch.num_rows(),
        1,
        "the bad span's event is not kept"
    );
    assert_eq!(cell(events, "name", 0), "exception");
    assert_eq!(cell(events, "exception_type", 0), "CardError");
    assert_eq!(cell(events, "span_id", 0), "00f067aa0ba902b7");
}

#[test]
fn json_bodies_follow_otlps_json_mapping() {
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000100000000000","severityNumber":9,
        "body":{"stringValue":"hi"},"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",
        "attributes":[{"key":"n","value":{"intValue":"7"}}]}]}]}]}"#;
    let request: ExportLogsServiceRequest = decode_body(body, Encoding::Json).unwrap();
    let out = logs::decode(&request, NOW, WriteLimits::default(), &time).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let logs = table(&out, logs::LOGS_TABLE);
    assert_eq!(
        cell(logs, "trace_id", 0),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(cell(logs, "n", 0), "7");
    assert_eq!(cell(logs, "service_name", 0), "api");
    assert_eq!(cell(logs, "time", 0), "2023-11-14T22:15:00Z");

    // The same request as protobuf decodes to the same message.
    let protobuf = request.encode_to_vec();
    let again: ExportLogsServiceRequest = decode_body(&protobuf, Encoding::Protobuf).unwrap();
    assert_eq!(again, request);
}

#[test]
fn bodies_that_are_not_otlp_fail_the_request_clearly() {
    let err =
        decode_body::<ExportLogsServiceRequest>(b"\xff\xff\xff", Encoding::Protobuf).unwrap_err();
    assert!(
        err.to_string().contains("not an OTLP protobuf request"),
        "{err}"
    );
    let err = decode_body::<ExportLogsServiceRequest>(b"{\"resourceLogs\": 3}", Encoding::Json)
        .unwrap_err();
    assert!(
        err.to_string().contains("not an OTLP JSON request"),
        "{err}"
    );
    // Deep nesting stops in the decoder, not in a stack overflow.
    let deep = format!(
        "{{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{}1{}}}]}}]}}]}}",
        "{\"arrayValue\":{\"values\":[".repeat(5_000),
        "]}}".repeat(5_000)
    );
    assert!(decode_body::<ExportLogsServiceRequest>(deep.as_bytes(), Encoding::Json).is_err());
    assert_eq!(
        Encoding::from_content_type("application/x-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::from_content_type("application/json; charset=utf-8"),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::from_content_type("text/plain"), None);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever bytes arrive, decoding answers: a request or an error,
        /// never a panic; and what decodes is mapped without one either.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            for encoding in [Encoding::Protobuf, Encoding::Json] {
                if let Ok(r) = decode_body::<ExportMetricsServiceRequest>(&body, encoding) {
                    let _ = metrics::decode(&r, NOW, WriteLimits::default(), &time);
                }
                if let Ok(r) = decode_body::<ExportLogsServiceRequest>(&body, encoding) {
                    let _ = logs::decode(&r, NOW, WriteLimits::default(), &time);
                }
                if let Ok(r) = decode_body::<ExportTraceServiceRequest>(&body, encoding) {
                    let _ = traces::decode(&r, NOW, WriteLimits::default(), &time);
                }
            }
        }

        /// Mutating a valid request's bytes never panics either.
        #[test]
        fn mutated_requests_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut body = sample_metrics().encode_to_vec();
            for (at, byte) in flips {
                let len = body.len();
                body[at % len] = byte;
            }
            if let Ok(r) = decode_body::<ExportMetricsServiceRequest>(&body, Encoding::Protobuf) {
                let _ = metrics::decode(&r, NOW, WriteLimits::default(), &time);
            }
        }
    }

    fn sample_metrics() -> ExportMetricsServiceRequest {
        metrics_request(vec![
            metric(
                "h",
                metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: attrs(&[("a", "b")]),
                        time_unix_nano: T,
                        count: 3,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![1.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "e",
                metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: T,
                        scale: 3,
                        positive: Some(Buckets {
                            offset: -2,
                            bucket_counts: vec![1, 2, 3],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                }),
            ),
        ])
    }
}
