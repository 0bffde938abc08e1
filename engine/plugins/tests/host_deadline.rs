//! Guests that wait inside host calls — a sleep, a spin on the clock — are
//! held to the call deadline like guests that spin in wasm: in `init` (so
//! start-up and reloads, which load plugins, cannot hang), and in calls.
//!
//! Each test runs its guest under [`answers`], which fails the test if the
//! host does not answer within a minute: before the fix these calls held
//! their thread for the hour the guest asked to sleep, or forever.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use weir_plugins::{Error, Limits, Plugin, PluginRuntime, PluginSpec, RuntimeConfig};

const DEADLINE: Duration = Duration::from_millis(500);

/// Runs `f` on its own thread; panics if it has not answered in a minute.
/// Not a timing assertion: the deadline is half a second, and a minute
/// only tells "answered" from "hung".
fn answers<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: the host is stuck in the guest"))
}

fn load(runtime: &Arc<PluginRuntime>, init: Option<&str>) -> weir_plugins::Result<Arc<Plugin>> {
    let runtime = Arc::clone(runtime);
    let config = init
        .map(|attack| vec![("init".to_string(), attack.to_string())])
        .unwrap_or_default();
    answers(&format!("loading with init {init:?}"), move || {
        runtime.load(PluginSpec {
            name: "evil".into(),
            path: common::guest("evil-sandbox"),
            config,
            limits: Limits {
                timeout: DEADLINE,
                ..Limits::default()
            },
        })
    })
}

fn adapt(plugin: &Arc<Plugin>, body: &str) -> weir_plugins::Result<String> {
    let plugin = Arc::clone(plugin);
    let body = body.to_string();
    answers(&format!("calling with {body:?}"), move || {
        let batches = plugin.adapt("text/plain", body.as_bytes(), 1, &|_| "time".to_string())?;
        let column = batches[0].batch.column_by_name("outcome").unwrap();
        Ok(arrow::array::AsArray::as_string::<i32>(column)
            .value(0)
            .to_string())
    })
}

fn runtime() -> Arc<PluginRuntime> {
    Arc::new(PluginRuntime::new(RuntimeConfig::default()).unwrap())
}

#[test]
fn a_guest_that_sleeps_in_a_call_wakes_at_once_in_its_frozen_time() {
    let runtime = runtime();
    let plugin = load(&runtime, None).unwrap();
    // An hour's sleep: the clock never moves, so the hour has already passed.
    assert_eq!(adapt(&plugin, "sleep").unwrap(), "woke");
    // Many short sleeps: each returns at once; the loop either finishes or
    // is wasm running past the deadline.
    match adapt(&plugin, "sleep-many 1000") {
        Ok(outcome) => assert_eq!(outcome, "slept 1000 times"),
        Err(e) => assert!(matches!(e, Error::Timeout { .. }), "{e}"),
    }
    assert_eq!(adapt(&plugin, "hello").unwrap(), "behaved");
}

#[test]
fn a_guest_that_sleeps_or_waits_for_the_clock_forever_times_out_and_is_made_anew() {
    let runtime = runtime();
    let plugin = load(&runtime, None).unwrap();
    for attack in ["sleep-loop", "wait-clock"] {
        let err = adapt(&plugin, attack).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{attack}: {err}");
        assert_eq!(
            adapt(&plugin, "hello").unwrap(),
            "behaved",
            "after {attack}"
        );
    }
    let stats = plugin.stats().snapshot();
    assert_eq!(stats.timeouts, 2, "{stats:?}");
    assert_eq!(stats.restarts, 2, "{stats:?}");
}

#[test]
fn init_is_held_to_the_deadline_too() {
    let runtime = runtime();
    // Sleeping an hour in `init` returns at once: the plugin loads.
    let plugin = load(&runtime, Some("sleep")).unwrap();
    assert_eq!(adapt(&plugin, "hello").unwrap(), "behaved");
    // Sleeping or waiting forever in `init` refuses the plugin, in time.
    for attack in ["sleep-loop", "wait-clock"] {
        let err = load(&runtime, Some(attack)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{attack}: {err}");
    }
}
