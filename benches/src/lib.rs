//! Weir's benchmarks: criterion micro-benches (`benches/`), the gRPC load
//! generator (`src/bin/loadgen.rs`) and the side-by-side scripts. Shared
//! here: the reference workload.
//!
//! Every row is a pure function of its global index, so the load generator,
//! the files it emits for InfluxDB and Postgres, and any split across
//! streams all describe exactly the same rows.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondArray,
};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use weir_proto::v1::{Field, Point, WriteRequest, field};

/// `rows` `service_metrics` rows from `services` services, evenly spread
/// over the `span_ns` before `end_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub rows: u64,
    pub services: u64,
    pub end_ns: i64,
    pub span_ns: i64,
}

/// One row of the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub service: u64,
    pub healthy: bool,
    pub response_ms: Option<f64>,
    pub status_code: i64,
    pub recorded_at_ns: i64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Workload {
    pub fn row(&self, index: u64) -> Row {
        let r = splitmix64(index);
        let healthy = r % 1000 >= 5; // 99.5% healthy
        let offset =
            (i128::from(index) * i128::from(self.span_ns) / i128::from(self.rows.max(1))) as i64;
        Row {
            service: index % self.services.max(1),
            healthy,
            // 10% of checks have no response time (timeouts).
            response_ms: (!(r >> 10).is_multiple_of(10))
                .then(|| 1.0 + ((r >> 20) % 5000) as f64 / 10.0),
            status_code: if healthy { 200 } else { 503 },
            recorded_at_ns: self.end_ns - self.span_ns + offset,
        }
    }

    pub fn service_name(service: u64) -> String {
        format!("service-{service:04}")
    }

    /// A write request for rows `first, first + stride, …` (`count` of them),
    /// with a symbol table as an efficient client builds it.
    pub fn request(&self, sequence: u64, first: u64, stride: u64, count: usize) -> WriteRequest {
        let mut symbols: Vec<Vec<u8>> = [
            "service_metrics",
            "service_name",
            "status",
            "response_ms",
            "status_code",
            "healthy",
            "unhealthy",
        ]
        .into_iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut service_symbol = std::collections::HashMap::new();
        let mut points = Vec::with_capacity(count);
        for i in 0..count as u64 {
            let index = first + i * stride;
            if index >= self.rows {
                break;
            }
            let row = self.row(index);
            let service = *service_symbol.entry(row.service).or_insert_with(|| {
                symbols.push(Self::service_name(row.service).into_bytes());
                symbols.len() as u32 - 1
            });
            let mut fields = Vec::with_capacity(3);
            fields.push(Field {
                key: 2,
                value: Some(field::Value::String(if row.healthy { 5 } else { 6 })),
            });
            if let Some(ms) = row.response_ms {
                fields.push(Field {
                    key: 3,
                    value: Some(field::Value::F64(ms)),
                });
            }
            fields.push(Field {
                key: 4,
                value: Some(field::Value::I64(row.status_code)),
            });
            points.push(Point {
                table: 0,
                timestamp_ns: row.recorded_at_ns,
                tags: vec![1, service],
                fields,
            });
        }
        WriteRequest {
            sequence,
            symbols: symbols.into_iter().map(Into::into).collect(),
            points,
            time_columns: Vec::new(),
        }
    }

    /// Rows `first, first + stride, …` (`count` of them) as one Arrow
    /// record batch in the types the native write stores them in, as an
    /// Arrow client would send them (Flight `DoPut`).
    pub fn record_batch(&self, first: u64, stride: u64, count: usize) -> RecordBatch {
        let mut times = Vec::with_capacity(count);
        let mut services = StringDictionaryBuilder::<Int32Type>::new();
        let mut status = StringBuilder::with_capacity(count, count * 8);
        let mut response_ms = Float64Builder::with_capacity(count);
        let mut status_code = Int64Builder::with_capacity(count);
        let mut names: HashMap<u64, String> = HashMap::new();
        for i in 0..count as u64 {
            let index = first + i * stride;
            if index >= self.rows {
                break;
            }
            let row = self.row(index);
            times.push(row.recorded_at_ns);
            let name = names
                .entry(row.service)
                .or_insert_with(|| Self::service_name(row.service));
            services.append_value(name.as_str());
            status.append_value(if row.healthy { "healthy" } else { "unhealthy" });
            response_ms.append_option(row.response_ms);
            status_code.append_value(row.status_code);
        }
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "recorded_at",
                Arc::new(
                    TimestampNanosecondArray::from(times).with_timezone(weir_model::TIME_ZONE),
                ),
            ),
            ("service_name", Arc::new(services.finish())),
            ("status", Arc::new(status.finish())),
            ("response_ms", Arc::new(response_ms.finish())),
            ("status_code", Arc::new(status_code.finish())),
        ];
        RecordBatch::try_from_iter(columns).expect("the workload's columns line up")
    }

    /// Rows `first, first + stride, …` (`count` of them) as one OTLP
    /// metrics export: a gauge `check.response_ms` point per row (0 for a
    /// check without a response time), the service as a point attribute,
    /// one resource, as an SDK sends them.
    pub fn otlp_gauges(
        &self,
        first: u64,
        stride: u64,
        count: usize,
    ) -> ExportMetricsServiceRequest {
        let string = |key: &str, value: String| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }),
            ..Default::default()
        };
        let data_points = (0..count as u64)
            .map(|i| first + i * stride)
            .filter(|index| *index < self.rows)
            .map(|index| {
                let row = self.row(index);
                NumberDataPoint {
                    attributes: vec![string("service.name", Self::service_name(row.service))],
                    time_unix_nano: row.recorded_at_ns as u64,
                    value: Some(number_data_point::Value::AsDouble(
                        row.response_ms.unwrap_or(0.0),
                    )),
                    ..Default::default()
                }
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![string("host.name", "bench".into())],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "check.response_ms".into(),
                        data: Some(metric::Data::Gauge(Gauge { data_points })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Writes every row as InfluxDB line protocol.
    pub fn write_line_protocol(&self, out: &mut impl Write) -> std::io::Result<()> {
        for index in 0..self.rows {
            let row = self.row(index);
            write!(
                out,
                "service_metrics,service_name={} status=\"{}\",status_code={}i",
                Self::service_name(row.service),
                if row.healthy { "healthy" } else { "unhealthy" },
                row.status_code
            )?;
            if let Some(ms) = row.response_ms {
                write!(out, ",response_ms={ms}")?;
            }
            writeln!(out, " {}", row.recorded_at_ns)?;
        }
        Ok(())
    }

    /// Writes every row as CSV (header; empty cell = NULL; time in ns).
    pub fn write_csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "service_name,status,response_ms,status_code,recorded_at_ns"
        )?;
        for index in 0..self.rows {
            let row = self.row(index);
            writeln!(
                out,
                "{},{},{},{},{}",
                Self::service_name(row.service),
                if row.healthy { "healthy" } else { "unhealthy" },
                row.response_ms.map(|v| v.to_string()).unwrap_or_default(),
                row.status_code,
                row.recorded_at_ns
            )?;
        }
        Ok(())
    }
}

/// The workload's rows `first..first + count` as the table batch the
/// pipeline sees (decoded exactly as the server decodes a write).
pub fn table_batch(workload: &Workload, first: u64, count: usize) -> weir_model::TableBatch {
    let request = workload.request(0, first, 1, count);
    weir_protocols::native::decode_write(&request, 1, &|_: &str| "recorded_at".to_string())
        .expect("the workload decodes")
        .pop()
        .expect("one table")
}

/// The bench filter in native Rust, as an engine-side stage: keeps a check
/// unless it is healthy and at most `slow_ms` — the same rule as the
/// `threshold-filter` and `rows-filter` guests.
pub struct NativeThreshold {
    pub slow_ms: f64,
}

impl weir_pipeline::Stage for NativeThreshold {
    fn name(&self) -> &str {
        "native-threshold"
    }

    fn process(
        &self,
        batch: &weir_model::TableBatch,
        _now_ns: i64,
    ) -> Result<weir_model::TableBatch, weir_pipeline::StageError> {
        use arrow::array::{Array, AsArray, BooleanArray};
        use arrow::datatypes::Float64Type;
        let fail = |message: &str| weir_pipeline::StageError {
            reason: "bad_input",
            message: message.to_string(),
            rejected: true,
        };
        let status = batch
            .batch
            .column_by_name("status")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| fail("no status column"))?;
        let ms = batch
            .batch
            .column_by_name("response_ms")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or_else(|| fail("no response_ms column"))?;
        let keep: BooleanArray = (0..batch.batch.num_rows())
            .map(|i| {
                Some(
                    status.is_null(i)
                        || status.value(i) != "healthy"
                        || (ms.is_valid(i) && ms.value(i) > self.slow_ms),
                )
            })
            .collect();
        let filtered = arrow::compute::filter_record_batch(&batch.batch, &keep)
            .map_err(|e| fail(&e.to_string()))?;
        Ok(weir_model::TableBatch {
            table: batch.table.clone(),
            batch: filtered,
            first_rows: batch.first_rows.clone(),
        })
    }
}

/// A guest component built by `guest-examples/build.sh`, located from the
/// running executable's target directory.
pub fn guest(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    exe.ancestors()
        .find_map(|dir| {
            let candidate = dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            candidate.exists().then_some(candidate)
        })
        .unwrap_or_else(|| {
            panic!("{name}.wasm not found: run `bash guest-examples/build.sh` first")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_spread_over_the_span() {
        let w = Workload {
            rows: 1000,
            services: 10,
            end_ns: 1_000_000,
            span_ns: 1000,
        };
        assert_eq!(w.row(5), w.row(5));
        assert_eq!(w.row(0).recorded_at_ns, 999_000);
        assert_eq!(w.row(999).recorded_at_ns, 999_999);
        let request = w.request(1, 0, 2, 600);
        assert_eq!(request.points.len(), 500, "stops at the last row");
        let healthy = (0..1000).filter(|i| w.row(*i).healthy).count();
        assert!((980..=1000).contains(&healthy), "{healthy}");
    }
}
