//! Lock-free counters, gauges and histograms, rendered in the Prometheus text
//! format. Small on purpose: Weir exposes a few dozen series of its own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds in seconds, from 50 µs (an fsync on fast NVMe) to 60 s (a
/// query near its timeout).
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    10.0, 60.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Writes metrics in the Prometheus text exposition format.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    pub fn counter(&mut self, name: &str, help: &str, c: &Counter) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.get()
        );
    }

    /// A metric family with labelled samples, e.g. one per plugin.
    /// `kind` is `counter` or `gauge`.
    pub fn family<'l>(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (&'l [(&'l str, &'l str)], f64)>,
    ) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    pub fn gauge(&mut self, name: &str, help: &str, g: &Gauge) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
            g.get()
        );
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count();
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(self.out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Storage's own metrics.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    pub wal_bytes: Counter,
    pub wal_records: Counter,
    pub wal_group_commits: Counter,
    pub wal_fsyncs: Counter,
    pub wal_fsync_seconds: Histogram,
    pub wal_replayed_records: Counter,
    pub wal_torn_tails_cut: Counter,
    pub buffer_bytes: Gauge,
    pub buffer_rows: Gauge,
    pub write_backpressure_waits: Counter,
    pub persist_runs: Counter,
    pub persist_seconds: Histogram,
    pub persisted_files: Counter,
    pub persisted_rows: Counter,
    pub parquet_files: Gauge,
    pub parquet_bytes: Gauge,
    pub compactions: Counter,
    pub compacted_files: Counter,
    pub retention_dropped_partitions: Counter,
    pub retention_dropped_files: Counter,
}

impl StorageMetrics {
    pub fn render(&self, out: &mut Exposition<'_>) {
        out.counter(
            "weir_wal_bytes_total",
            "Bytes appended to the WAL.",
            &self.wal_bytes,
        );
        out.counter(
            "weir_wal_records_total",
            "Write records appended to the WAL.",
            &self.wal_records,
        );
        out.counter(
            "weir_wal_group_commits_total",
            "Group commits (one write + sync for many records).",
            &self.wal_group_commits,
        );
        out.counter("weir_wal_fsyncs_total", "WAL fsyncs.", &self.wal_fsyncs);
        out.histogram(
            "weir_wal_fsync_seconds",
            "WAL fsync latency.",
            &self.wal_fsync_seconds,
        );
        out.counter(
            "weir_wal_replayed_records_total",
            "WAL records replayed at start-up.",
            &self.wal_replayed_records,
        );
        out.counter(
            "weir_wal_torn_tails_cut_total",
            "Torn or corrupt WAL tails cut at start-up.",
            &self.wal_torn_tails_cut,
        );
        out.gauge(
            "weir_buffer_bytes",
            "Bytes of Arrow data in the write buffer.",
            &self.buffer_bytes,
        );
        out.gauge(
            "weir_buffer_rows",
            "Rows in the write buffer.",
            &self.buffer_rows,
        );
        out.counter(
            "weir_write_backpressure_waits_total",
            "Writes that waited for the buffer to drain to Parquet.",
            &self.write_backpressure_waits,
        );
        out.counter(
            "weir_persist_runs_total",
            "Buffer persistence runs.",
            &self.persist_runs,
        );
        out.histogram(
            "weir_persist_seconds",
            "Duration of a persistence run.",
            &self.persist_seconds,
        );
        out.counter(
            "weir_persisted_files_total",
            "Parquet files written by persistence.",
            &self.persisted_files,
        );
        out.counter(
            "weir_persisted_rows_total",
            "Rows persisted to Parquet.",
            &self.persisted_rows,
        );
        out.gauge(
            "weir_parquet_files",
            "Parquet files in the catalog.",
            &self.parquet_files,
        );
        out.gauge(
            "weir_parquet_bytes",
            "Bytes of Parquet files in the catalog.",
            &self.parquet_bytes,
        );
        out.counter(
            "weir_compactions_total",
            "Partitions compacted.",
            &self.compactions,
        );
        out.counter(
            "weir_compacted_files_total",
            "Files merged away by compaction.",
            &self.compacted_files,
        );
        out.counter(
            "weir_retention_dropped_partitions_total",
            "Partitions dropped by retention.",
            &self.retention_dropped_partitions,
        );
        out.counter(
            "weir_retention_dropped_files_total",
            "Files dropped by retention.",
            &self.retention_dropped_files,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut s = String::new();
        Exposition::new(&mut s).histogram("x", "help", &h);
        assert!(s.contains("x_bucket{le=\"0.00005\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.005\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"60\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
    }
}
