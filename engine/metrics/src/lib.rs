//! Weir's own metrics, on the maintained `prometheus-client` registry.
//!
//! No component owns the registry. Each keeps its metrics in a struct of its
//! own (cheap handles: a clone shares the value) and registers them with the
//! one [`Registry`] the server builds at start; `GET /metrics` encodes that
//! registry ([`encode`]). Values known only at scrape time (a plugin's
//! counters, the alert book's size) are [`Collector`]s written with
//! [`write_family`].
//!
//! Metrics only report. A signal that drives behaviour — the write buffer's
//! size, which decides backpressure — lives with its owner as a plain value
//! and is exported from there, never read back from a metric.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::Histogram;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
pub use prometheus_client::metrics::counter::{ConstCounter, Counter};
pub use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`encode`] writes: the Prometheus text format
/// 0.0.4, which every scraper reads.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds in seconds, from 50 µs (an fsync on fast NVMe) to 60 s (a
/// query near its timeout).
const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    10.0, 60.0,
];

/// A latency histogram in seconds, with buckets that fit everything Weir
/// times, from one fsync to one query.
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(LATENCY_BUCKETS))
    }
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// A gauge whose value is read when scraped, from state its owner keeps
/// anyway (a buffer's size, a queue's length): no second copy to update.
pub struct GaugeFn<F>(F);

impl<F: Fn() -> i64 + Send + Sync + 'static> GaugeFn<F> {
    pub fn new(read: F) -> Self {
        Self(read)
    }
}

impl<F> fmt::Debug for GaugeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GaugeFn")
    }
}

impl<F: Fn() -> i64> EncodeMetric for GaugeFn<F> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        ConstGauge::new((self.0)()).encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Whether a family read at scrape time is a counter or a gauge.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Writes one family of labelled samples known only now, from a
/// [`Collector`]. `name` is written as given (a counter's ends in `_total`,
/// unlike names given to [`Registry::register`], which adds the suffix).
pub fn write_family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl IntoIterator<Item = (L, f64)>,
) -> fmt::Result {
    let metric_type = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    // The counter encoder appends `_total` itself.
    let base = match kind {
        Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
        Kind::Gauge => name,
    };
    let mut family = encoder.encode_descriptor(base, help, None, metric_type)?;
    for (labels, value) in samples {
        let sample = family.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(value).encode(sample)?,
            Kind::Gauge => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing to a String fails only if an encoder does, and ours do not.
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("encoding metrics into a String");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_renders_cumulative_buckets_in_seconds() {
        let mut registry = Registry::default();
        let h = Latency::default();
        registry.register("x_seconds", "help", h.clone());
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let s = encode(&registry);
        assert!(s.contains("# TYPE x_seconds histogram\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"5e-05\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"60\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_count 3\n"), "{s}");
    }

    #[test]
    fn counters_gain_total_and_help_its_period() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("weir_things", "Things done", c.clone());
        c.inc_by(3);
        let s = encode(&registry);
        assert_eq!(
            s,
            "# HELP weir_things_total Things done.\n# TYPE weir_things_total counter\nweir_things_total 3\n"
        );
    }

    #[test]
    fn gauge_fns_read_at_scrape_time() {
        let mut registry = Registry::default();
        let level = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(7));
        let read = std::sync::Arc::clone(&level);
        registry.register(
            "weir_buffer_bytes",
            "Bytes buffered",
            GaugeFn::new(move || read.load(std::sync::atomic::Ordering::Relaxed)),
        );
        assert!(encode(&registry).contains("\nweir_buffer_bytes 7\n"));
        level.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(encode(&registry).contains("\nweir_buffer_bytes 9\n"));
    }

    #[derive(Debug)]
    struct Plugins;

    impl Collector for Plugins {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            write_family(
                &mut encoder,
                "weir_plugin_calls_total",
                "Plugin calls.",
                Kind::Counter,
                [([("plugin", "a\"b\\c\nd")], 2.0), ([("plugin", "e")], 5.0)],
            )?;
            write_family(
                &mut encoder,
                "weir_plugin_ns_per_event",
                "Average time per event.",
                Kind::Gauge,
                [([("plugin", "e")], 1.5)],
            )
        }
    }

    #[test]
    fn collectors_write_labelled_families_escaped() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Plugins));
        let s = encode(&registry);
        assert!(
            s.contains("# TYPE weir_plugin_calls_total counter\n"),
            "{s}"
        );
        assert!(
            s.contains("weir_plugin_calls_total{plugin=\"a\\\"b\\\\c\\nd\"} 2"),
            "{s}"
        );
        assert!(s.contains("weir_plugin_calls_total{plugin=\"e\"} 5"), "{s}");
        assert!(s.contains("# TYPE weir_plugin_ns_per_event gauge\n"), "{s}");
        assert!(
            s.contains("weir_plugin_ns_per_event{plugin=\"e\"} 1.5"),
            "{s}"
        );
    }
}
