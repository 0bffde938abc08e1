//! What a guest hands back besides events — error text, log lines, stdout
//! and stderr, malformed columns — is bounded and validated where it enters
//! the host, and never stops the next call.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use weir_plugins::{
    Error, LOG_LINES_PER_CALL, Limits, Plugin, PluginRuntime, PluginSpec, RuntimeConfig,
};

/// Error text kept from a guest, and room for the note saying what was cut
/// and the host's own words around it.
const ERROR_TEXT_BOUND: usize = 4096 + 256;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).unwrap()
}

fn spec(init: Option<&str>) -> PluginSpec {
    PluginSpec {
        name: "evil".into(),
        path: common::guest("evil-sandbox"),
        config: init
            .map(|attack| vec![("init".to_string(), attack.to_string())])
            .unwrap_or_default(),
        // Room for a debug-built host to take every line of a flood.
        limits: Limits {
            timeout: std::time::Duration::from_secs(10),
            ..Limits::default()
        },
    }
}

fn adapt(plugin: &Plugin, body: &str) -> weir_plugins::Result<String> {
    let batches = plugin.adapt("text/plain", body.as_bytes(), 1, &|_| "time".to_string())?;
    let column = batches[0].batch.column_by_name("outcome").unwrap();
    Ok(arrow::array::AsArray::as_string::<i32>(column)
        .value(0)
        .to_string())
}

#[test]
fn a_huge_error_from_a_call_or_init_is_cut_where_it_enters() {
    let runtime = runtime();
    let plugin = runtime.load(spec(None)).unwrap();
    let err = adapt(&plugin, &format!("huge-error {}", 32 << 20)).unwrap_err();
    let Error::Rejected { message, .. } = &err else {
        panic!("{err}")
    };
    assert!(message.len() <= ERROR_TEXT_BOUND, "{} bytes", message.len());
    assert!(message.starts_with("éé"), "{message:.20}");
    assert!(message.ends_with("more bytes cut]"), "{}", &message[4000..]);
    assert!(err.to_string().len() <= ERROR_TEXT_BOUND);
    // An answer, not a fault: the same instance answers next.
    assert_eq!(adapt(&plugin, "hello").unwrap(), "behaved");
    assert_eq!(plugin.stats().snapshot().restarts, 0);

    let err = runtime.load(spec(Some("huge-error"))).unwrap_err();
    let Error::Init { message, .. } = &err else {
        panic!("{err:.200}")
    };
    assert!(message.len() <= ERROR_TEXT_BOUND, "{} bytes", message.len());
    assert!(message.ends_with("more bytes cut]"));
}

/// Bytes and plugin lines written to the log while it is alive, on this
/// thread.
#[derive(Clone, Default)]
struct LogCapture {
    bytes: Arc<AtomicUsize>,
    text: Arc<Mutex<Vec<u8>>>,
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.fetch_add(buf.len(), Ordering::Relaxed);
        self.text.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }

    fn lines_with(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.text.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

#[test]
fn a_log_flood_is_cut_and_counted_and_the_call_completes() {
    let runtime = runtime();
    let plugin = runtime.load(spec(None)).unwrap();
    let capture = LogCapture::default();
    let outcome = capture.during(|| adapt(&plugin, "log-flood 20000"));
    assert_eq!(outcome.unwrap(), "flooded");
    // Lines of ~115 bytes: the line budget binds before the byte budget.
    assert_eq!(capture.lines_with("flood line"), LOG_LINES_PER_CALL);
    let dropped = plugin.stats().snapshot().log_dropped;
    assert_eq!(dropped, 20_000 - LOG_LINES_PER_CALL as u64);
    // Unbounded, this call logged over 2 MB.
    let logged = capture.bytes.load(Ordering::Relaxed);
    assert!(logged < 256 << 10, "{logged} bytes logged");
    assert_eq!(capture.lines_with("lines were dropped"), 1);

    // The next call has its budget back.
    let capture = LogCapture::default();
    capture.during(|| adapt(&plugin, "log-flood 10")).unwrap();
    assert_eq!(capture.lines_with("flood line"), 10);
    assert_eq!(plugin.stats().snapshot().log_dropped, dropped);

    // stdout and stderr share the budget.
    let capture = LogCapture::default();
    let outcome = capture.during(|| adapt(&plugin, "print-flood 10000"));
    assert_eq!(outcome.unwrap(), "flooded");
    assert_eq!(capture.lines_with(" flood "), LOG_LINES_PER_CALL);
    assert_eq!(
        plugin.stats().snapshot().log_dropped,
        dropped + 20_000 - LOG_LINES_PER_CALL as u64
    );
}

#[test]
fn a_log_flood_in_init_is_cut_and_counted_and_the_plugin_loads() {
    let runtime = runtime();
    let capture = LogCapture::default();
    let plugin = capture
        .during(|| runtime.load(spec(Some("log-flood"))))
        .unwrap();
    assert_eq!(capture.lines_with("flood line"), LOG_LINES_PER_CALL);
    assert_eq!(
        plugin.stats().snapshot().log_dropped,
        20_000 - LOG_LINES_PER_CALL as u64
    );
    assert_eq!(adapt(&plugin, "hello").unwrap(), "behaved");
}

#[test]
fn malformed_columns_are_bad_output_not_a_panic() {
    let runtime = runtime();
    let plugin = runtime.load(spec(None)).unwrap();
    let cases = [
        ("keys", "20 values for 1 rows"),
        ("validity", "validity of 1 bytes for 9 rows"),
        ("offsets", "bad offsets 2..1"),
        ("offset-past-end", "offset 1000000 past 2 bytes"),
        ("utf8", "not UTF-8"),
        ("dictionary", "key 7 outside a dictionary of 1"),
        ("count", "3 values for 1 rows"),
    ];
    for (how, expected) in cases {
        let err = adapt(&plugin, &format!("malformed {how}")).unwrap_err();
        assert!(matches!(err, Error::BadOutput { .. }), "{how}: {err}");
        assert_eq!(err.reason(), "bad_output");
        assert!(err.to_string().contains(expected), "{how}: {err}");
        assert_eq!(adapt(&plugin, "hello").unwrap(), "behaved", "after {how}");
    }
    let stats = plugin.stats().snapshot();
    assert_eq!(stats.rejections, cases.len() as u64, "{stats:?}");
}
