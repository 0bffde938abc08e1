//! The adversarial guests of `guest-examples/evil`, each contained.

mod common;

use std::time::{Duration, Instant};

use weir_plugins::{Error, Limits, PluginRuntime, PluginSpec, RuntimeConfig};

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).unwrap()
}

fn evil(runtime: &PluginRuntime, limits: Limits) -> std::sync::Arc<weir_plugins::Plugin> {
    runtime
        .load(PluginSpec {
            name: "evil".into(),
            path: common::guest("evil-sandbox"),
            config: vec![],
            limits,
        })
        .unwrap()
}

fn adapt(
    plugin: &weir_plugins::Plugin,
    body: &str,
) -> weir_plugins::Result<Vec<weir_model::TableBatch>> {
    plugin.adapt("text/plain", body.as_bytes(), 1, &|_| "time".to_string())
}

fn outcome(plugin: &weir_plugins::Plugin, body: &str) -> String {
    let batches = adapt(plugin, body).unwrap();
    let batch = &batches[0].batch;
    let column = batch.column_by_name("outcome").unwrap();
    arrow::array::AsArray::as_string::<i32>(column)
        .value(0)
        .to_string()
}

#[test]
fn faults_are_contained_and_the_plugin_is_made_anew() {
    let runtime = runtime();
    let plugin = evil(
        &runtime,
        Limits {
            timeout: Duration::from_millis(200),
            memory_bytes: 32 << 20,
            max_output_bytes: 1 << 20,
        },
    );

    let started = Instant::now();
    let err = adapt(&plugin, "loop").unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline stopped the loop"
    );

    let err = adapt(&plugin, "memory").unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { .. } | Error::Trapped { .. }),
        "{err}"
    );

    let err = adapt(&plugin, "panic").unwrap_err();
    assert!(matches!(err, Error::Trapped { .. }), "{err}");
    assert!(
        err.to_string().contains("evil plugin panics on purpose"),
        "{err}"
    );

    let err = adapt(&plugin, "huge-output").unwrap_err();
    assert!(
        matches!(err, Error::OutputLimit { .. } | Error::MemoryLimit { .. }),
        "{err}"
    );

    // After every fault a fresh instance answers.
    assert_eq!(outcome(&plugin, "hello"), "behaved");
    let stats = plugin.stats().snapshot();
    assert_eq!(stats.timeouts, 1);
    assert!(stats.traps + stats.limit_hits >= 3, "{stats:?}");
    assert!(stats.restarts >= 4, "{stats:?}");
}

#[test]
fn a_generous_memory_cap_lets_the_output_limit_speak() {
    let runtime = runtime();
    let plugin = evil(
        &runtime,
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 512 << 20,
            max_output_bytes: 1 << 20,
        },
    );
    let err = adapt(&plugin, "huge-output").unwrap_err();
    assert!(matches!(err, Error::OutputLimit { .. }), "{err}");
}

#[test]
fn prying_finds_nothing() {
    let runtime = runtime();
    let plugin = evil(&runtime, Limits::default());
    let secret_file = std::env::current_exe().unwrap();
    let files = outcome(&plugin, &format!("read-file {}", secret_file.display()));
    assert!(!files.contains("READ"), "{files}");
    // SAFETY: single-threaded at this point of the test; the variable only
    // proves the guest cannot see the host's environment.
    unsafe { std::env::set_var("WEIR_TEST_SECRET", "hunter2") };
    let env = outcome(&plugin, "read-env WEIR_TEST_SECRET");
    assert!(env.contains("vars: []"), "{env}");
    assert!(!env.contains("hunter2"), "{env}");
    let clock = outcome(&plugin, "clock");
    assert_eq!(clock, "seconds since epoch: Ok(0)");
}

#[test]
fn a_guest_importing_sockets_is_refused_at_load() {
    let runtime = runtime();
    let err = runtime
        .load(PluginSpec {
            name: "socket".into(),
            path: common::guest("evil-socket"),
            config: vec![],
            limits: Limits::default(),
        })
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(err.to_string().contains("wasi:sockets/"), "{err}");
}

#[test]
fn garbage_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm garbage").unwrap();
    let err = runtime().compile(&path).unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
    let err = runtime()
        .compile(&dir.path().join("missing.wasm"))
        .unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
}
