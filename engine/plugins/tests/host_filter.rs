mod common;

use std::sync::Arc;

use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_plugins::{Limits, PluginKind, PluginRuntime, PluginSpec, RuntimeConfig};

fn checks(rows: &[(&str, &str)]) -> TableBatch {
    let mut b = WriteBatchBuilder::new(1);
    let t = b.table("checks", "time").unwrap();
    let service = b.column(t, "service_name", ColumnType::Tag, 0).unwrap();
    let status = b.column(t, "status", ColumnType::Tag, 0).unwrap();
    for (row, (s, st)) in rows.iter().enumerate() {
        b.begin_point(t, row, 1_000 + row as i64).unwrap();
        b.set(t, service, row, Value::Tag(s)).unwrap();
        b.set(t, status, row, Value::Tag(st)).unwrap();
    }
    b.finish().unwrap().pop().unwrap()
}

#[test]
fn a_stateful_filter_keeps_state_between_batches_and_the_cache_is_reused() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let spec = PluginSpec {
        name: "dedupe".into(),
        path: common::guest("state-change-filter"),
        config: vec![],
        limits: Limits::default(),
    };
    let plugin = runtime.load(spec.clone()).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Filter);
    let out = plugin
        .filter(&checks(&[
            ("api", "healthy"),
            ("api", "healthy"),
            ("db", "unhealthy"),
        ]))
        .unwrap();
    assert_eq!(out.batch.num_rows(), 2);
    let out = plugin
        .filter(&checks(&[("api", "healthy"), ("db", "healthy")]))
        .unwrap();
    assert_eq!(out.batch.num_rows(), 1);
    let stats = plugin.stats().snapshot();
    assert_eq!((stats.calls, stats.events_in, stats.events_out), (2, 5, 3));

    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "one compiled artifact cached");
    // A second load comes from the cache and starts with fresh state.
    let again = runtime.load(spec).unwrap();
    assert_eq!(
        again
            .filter(&checks(&[("api", "healthy")]))
            .unwrap()
            .batch
            .num_rows(),
        1
    );
    drop(Arc::clone(&again));
}
