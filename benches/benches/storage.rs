//! Write-path micro-benches: decoding a request (the ingest cost centre:
//! protobuf, then rows into Arrow), WAL append with fsync vs without (which
//! isolates WAL encode + buffer append), and Parquet persistence.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use weir_benches::Workload;
use weir_model::TableBatch;
use weir_proto::v1::WriteRequest;
use weir_protocols::native::decode_write;
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

criterion_group!(benches, decode, wal_append, parquet_persist);
criterion_main!(benches);
