//! Weir's benchmarks: criterion micro-benches (`benches/`), the gRPC load
//! generator (`src/bin/loadgen.rs`) and the side-by-side scripts. Shared
//! here: the reference workload.
//!
//! Every row is a pure function of its global index, so the load generator,
//! the files it emits for InfluxDB and Postgres, and any split across
//! streams all describe exactly the same rows.

use std::io::Write;

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
