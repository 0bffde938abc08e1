//! What crossing the plugin boundary costs, per event, for a filter that
//! reads two fields (`status`, `response_ms`) — at batch sizes 64, 1,024
//! and 8,192, for two encodings of the batch:
//!
//! - `columnar`: the shipped design (`sdk/wit/plugin.wit`): Arrow columns as
//!   flat lists, tags as dictionary + keys; the guest is written with
//!   `weir-sdk`'s per-event view. Measured through `weir-plugins`, so it
//!   includes Arrow → WIT conversion, the call, and applying the result.
//! - `rows`: a typed `list<record>` with one record per event, each with its
//!   own tag and field strings (`benches/wit/rows.wit`), the same filter
//!   logic; includes building the records from the same Arrow batch.
//!
//! `native` is the same filter as a Rust stage inside the engine: the
//! baseline. Boundary overhead per event = (wasm − native) / events.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_benches::{NativeThreshold, Workload, guest, table_batch};
use weir_pipeline::Stage;
use weir_plugins::{Limits, PluginRuntime, PluginSpec, RuntimeConfig};

mod rows {
    wasmtime::component::bindgen!({ path: "wit/rows.wit", world: "rows-filter" });
}

use rows::exports::weir_bench::rows::filter::{Event, FieldValue};

struct RowsHost {
    store: wasmtime::Store<Host>,
    plugin: rows::RowsFilter,
}

struct Host {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Host {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn rows_host() -> RowsHost {
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::from_file(&engine, guest("rows-filter")).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let mut store = wasmtime::Store::new(
        &engine,
        Host {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
            table: wasmtime::component::ResourceTable::new(),
        },
    );
    let plugin = rows::RowsFilter::instantiate(&mut store, &component, &linker).unwrap();
    RowsHost { store, plugin }
}

/// The typed-records design's host side: one record per event.
fn to_rows(batch: &weir_model::TableBatch) -> Vec<Event> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
    let b = &batch.batch;
    let time = b.column(0).as_primitive::<TimestampNanosecondType>();
    let service = b
        .column_by_name("service_name")
        .unwrap()
        .as_dictionary::<Int32Type>();
    let service_values = service.values().as_string::<i32>();
    let status = b.column_by_name("status").unwrap().as_string::<i32>();
    let ms = b
        .column_by_name("response_ms")
        .unwrap()
        .as_primitive::<Float64Type>();
    let code = b
        .column_by_name("status_code")
        .unwrap()
        .as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            let mut fields = vec![(
                "status".to_string(),
                FieldValue::String(status.value(i).to_string()),
            )];
            if ms.is_valid(i) {
                fields.push(("response_ms".to_string(), FieldValue::F64(ms.value(i))));
            }
            fields.push(("status_code".to_string(), FieldValue::S64(code.value(i))));
            Event {
                time: time.value(i),
                tags: vec![(
                    "service_name".to_string(),
                    service_values
                        .value(service.keys().value(i) as usize)
                        .to_string(),
                )],
                fields,
            }
        })
        .collect()
}

fn boundary(c: &mut Criterion) {
    let workload = Workload {
        rows: 100_000,
        services: 1000,
        end_ns: 1_700_000_000_000_000_000,
        span_ns: 86_400_000_000_000,
    };
    let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let columnar = runtime
        .load(PluginSpec {
            name: "threshold-filter".into(),
            path: guest("threshold-filter"),
            config: vec![("slow-ms".into(), "400".into())],
            limits: Limits::default(),
        })
        .unwrap();
    let native = Arc::new(NativeThreshold { slow_ms: 400.0 });
    let mut rows = rows_host();

    let mut group = c.benchmark_group("plugin_boundary");
    for n in [64usize, 1024, 8192] {
        let batch = table_batch(&workload, 0, n);
        // All three keep the same rows.
        let expected = native.process(&batch, 0).unwrap().batch.num_rows();
        assert_eq!(columnar.filter(&batch).unwrap().batch.num_rows(), expected);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("native", n), &batch, |b, batch| {
            b.iter(|| black_box(native.process(batch, 0).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("columnar", n), &batch, |b, batch| {
            b.iter(|| black_box(columnar.filter(batch).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("rows", n), &batch, |b, batch| {
            b.iter(|| {
                let events = to_rows(batch);
                let kept = rows
                    .plugin
                    .weir_bench_rows_filter()
                    .call_filter(&mut rows.store, &events)
                    .unwrap();
                black_box(weir_plugins::convert::apply_filter(batch, &kept).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, boundary);
criterion_main!(benches);
