//! Storage micro-benches: WAL append with fsync group commit vs without
//! fsync (which isolates encode + buffer append), and Parquet persistence.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_model::TableBatch;
use weir_storage::{Durability, Store, StoreConfig, WalConfig};

fn batches(rows: usize, seed: u64) -> Vec<TableBatch> {
    let request =
        weir_benches::MetricsGenerator::new(seed, 1000).request(0, rows, 1_763_632_800_000_000_000);
    decode(&request)
}

/// The server's decode, inlined here to keep benches off weir-server.
fn decode(request: &weir_proto::v1::WriteRequest) -> Vec<TableBatch> {
    use weir_model::{ColumnType, Value, WriteBatchBuilder};
    use weir_proto::v1::field;
    let symbols: Vec<&str> = request
        .symbols
        .iter()
        .map(|s| std::str::from_utf8(s).unwrap())
        .collect();
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("service_metrics", "recorded_at").unwrap();
    for (row, p) in request.points.iter().enumerate() {
        b.begin_point(t, row, p.timestamp_ns).unwrap();
        for pair in p.tags.chunks(2) {
            let c = b
                .column(t, symbols[pair[0] as usize], ColumnType::Tag, row)
                .unwrap();
            b.set(t, c, row, Value::Tag(symbols[pair[1] as usize]))
                .unwrap();
        }
        for f in &p.fields {
            let v = match f.value.as_ref().unwrap() {
                field::Value::F64(v) => Value::F64(*v),
                field::Value::I64(v) => Value::I64(*v),
                field::Value::String(s) => Value::String(symbols[*s as usize]),
                _ => unreachable!(),
            };
            let c = b
                .column(t, symbols[f.key as usize], v.column_type(), row)
                .unwrap();
            b.set(t, c, row, v).unwrap();
        }
    }
    b.finish().unwrap()
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
        compaction_min_files: 8,
        file_delete_grace: Duration::from_secs(1),
    })
    .unwrap()
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

criterion_group!(benches, wal_append, parquet_persist);
criterion_main!(benches);
