//! Write-path micro-benches: decoding a request (the ingest cost centre:
//! protobuf, then rows into Arrow) for each protocol on the same rows, WAL
//! append with fsync vs without (which isolates WAL encode + buffer
//! append), and Parquet persistence.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use weir_benches::Workload;
use weir_model::TableBatch;
use weir_model::WriteLimits;
use weir_proto::v1::WriteRequest;
use weir_protocols::native::decode_write;
use weir_protocols::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use weir_protocols::remote_write::{self, Label, Sample, TimeSeries};
use weir_protocols::{compression, line_protocol, otlp};
use weir_storage::{Durability, Store, StoreConfig, WalConfig};

const WORKLOAD: Workload = Workload {
    rows: 10_000_000,
    services: 1000,
    end_ns: 1_763_632_800_000_000_000,
    span_ns: 86_400_000_000_000,
};

fn request(rows: usize, seed: u64) -> WriteRequest {
    WORKLOAD.request(0, seed * rows as u64, 1, rows)
}

fn batches(rows: usize, seed: u64) -> Vec<TableBatch> {
    decode_write(&request(rows, seed), 1, &|_: &str| {
        "recorded_at".to_string()
    })
    .unwrap()
}

fn open(dir: &std::path::Path, durability: Durability) -> Store {
    Store::open(StoreConfig {
        data_dir: dir.to_path_buf(),
        wal: WalConfig {
            durability,
            segment_bytes: 64 << 20,
            queue_depth: 1024,
            max_group_bytes: 16 << 20,
        },
        persist_buffer_bytes: usize::MAX / 2,
        max_buffer_bytes: usize::MAX / 2,
        tables: Default::default(),
        max_columns_per_table: 1_000,
        compaction_min_files: 8,
        file_delete_grace: Duration::from_secs(1),
        rollups: Vec::new(),
    })
    .unwrap()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for rows in [1_000usize, 5_000] {
        let bytes = request(rows, 1).encode_to_vec();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("protobuf", rows), &bytes, |b, bytes| {
            b.iter(|| WriteRequest::decode(bytes.as_slice()).unwrap());
        });
        let decoded = WriteRequest::decode(bytes.as_slice()).unwrap();
        group.bench_with_input(
            BenchmarkId::new("to_arrow", rows),
            &decoded,
            |b, request| {
                b.iter(|| decode_write(request, 1, &|_: &str| "recorded_at".to_string()).unwrap());
            },
        );
    }
    group.finish();
}

/// The same rows through each protocol's whole decoder, body to Arrow:
/// native protobuf, line protocol text, remote-write snappy (one series
/// per row: `status_code{service_name=…}`, as a Prometheus scrape of
/// these services would send).
fn decode_protocols(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_protocols");
    let tables = |_: &str| "recorded_at".to_string();
    let rows = 5_000usize;
    group.throughput(Throughput::Elements(rows as u64));
    let native = request(rows, 1).encode_to_vec();
    group.bench_with_input(BenchmarkId::new("native", rows), &native, |b, bytes| {
        b.iter(|| {
            let request = WriteRequest::decode(bytes.as_slice()).unwrap();
            decode_write(&request, 1, &tables).unwrap()
        });
    });

    let workload = Workload {
        rows: rows as u64,
        ..WORKLOAD
    };
    let mut lines = Vec::new();
    workload.write_line_protocol(&mut lines).unwrap();
    group.bench_with_input(
        BenchmarkId::new("line_protocol", rows),
        &lines,
        |b, body| {
            b.iter(|| {
                let out = line_protocol::decode(
                    body,
                    line_protocol::Precision::Nanoseconds,
                    1,
                    WriteLimits::default(),
                    &tables,
                )
                .unwrap();
                assert!(out.rejected.is_empty());
                out
            });
        },
    );

    let timeseries = (0..rows as u64)
        .map(|i| {
            let row = workload.row(i);
            let label = |name: &str, value: String| Label {
                name: name.to_string().into(),
                value: value.into(),
            };
            TimeSeries {
                labels: vec![
                    label("__name__", "status_code".into()),
                    label("service_name", Workload::service_name(row.service)),
                ],
                samples: vec![Sample {
                    value: row.status_code as f64,
                    timestamp: row.recorded_at_ns / 1_000_000,
                }],
                histograms: Vec::new(),
            }
        })
        .collect();
    let protobuf = remote_write::WriteRequest { timeseries }.encode_to_vec();
    let snappy = snap::raw::Encoder::new().compress_vec(&protobuf).unwrap();
    group.bench_with_input(
        BenchmarkId::new("remote_write", rows),
        &snappy,
        |b, body| {
            b.iter(|| {
                let out =
                    remote_write::decode_snappy(body, 64 << 20, 1, WriteLimits::default(), &tables)
                        .unwrap();
                assert!(out.decoded.rejected.is_empty());
                out
            });
        },
    );
    group.bench_with_input(
        BenchmarkId::new("remote_write_unsnappy_only", rows),
        &snappy,
        |b, body| b.iter(|| compression::unsnappy(body, 64 << 20).unwrap()),
    );

    // OTLP: one gauge point per row, the service as an attribute.
    let otlp = workload.otlp_gauges(0, 1, rows).encode_to_vec();
    group.bench_with_input(BenchmarkId::new("otlp_metrics", rows), &otlp, |b, body| {
        b.iter(|| {
            let request: ExportMetricsServiceRequest =
                otlp::decode_body(body, otlp::Encoding::Protobuf).unwrap();
            let out = otlp::metrics::decode(&request, 1, WriteLimits::default(), &tables).unwrap();
            assert!(out.decoded.rejected.is_empty());
            out
        });
    });

    // Arrow: the same rows already columnar (what Flight DoPut receives
    // once arrow-ipc has read the message).
    let batch = workload.record_batch(0, 1, rows);
    group.bench_with_input(BenchmarkId::new("arrow_batch", rows), &batch, |b, batch| {
        b.iter(|| {
            weir_protocols::arrow_batch::decode(
                "service_metrics",
                batch,
                WriteLimits::default(),
                &tables,
            )
            .unwrap()
        });
    });
    group.finish();
}

fn wal_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("wal_append");
    for (name, durability) in [("fsync", Durability::Fsync), ("no_fsync", Durability::None)] {
        for rows in [1_000usize, 10_000] {
            let dir = tempfile::tempdir().unwrap();
            let store = runtime.block_on(async { open(dir.path(), durability) });
            let input = batches(rows, 1);
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &input, |b, input| {
                b.to_async(&runtime).iter(|| {
                    let store = store.clone();
                    let input = input.clone();
                    async move { store.write(input).await.unwrap() }
                });
            });
            runtime.block_on(store.shutdown()).ok();
        }
    }
    group.finish();
}

fn parquet_persist(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("parquet_persist");
    group.sample_size(10);
    let rows = 100_000;
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(BenchmarkId::new("service_metrics", rows), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let store = runtime.block_on(async { open(dir.path(), Durability::None) });
                for chunk in 0..10 {
                    runtime
                        .block_on(store.write(batches(rows / 10, i * 10 + chunk)))
                        .unwrap();
                }
                let start = Instant::now();
                runtime.block_on(store.persist()).unwrap();
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    decode,
    decode_protocols,
    wal_append,
    parquet_persist
);
criterion_main!(benches);
