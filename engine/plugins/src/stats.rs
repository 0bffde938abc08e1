//! Per-plugin counters, read by `/metrics` and the `weir_plugins` SQL table.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    /// Time spent in calls, including converting batches across the boundary.
    pub busy_ns: AtomicU64,
    pub rejections: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub limit_hits: AtomicU64,
    pub restarts: AtomicU64,
    /// Log lines (from `log`, stdout or stderr) dropped because a call went
    /// over its log budget.
    pub log_dropped: AtomicU64,
}

/// A consistent-enough copy of [`PluginStats`] for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub busy_ns: u64,
    pub rejections: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub limit_hits: u64,
    pub restarts: u64,
    pub log_dropped: u64,
}

impl StatsSnapshot {
    /// Events a filter dropped (or an adapter's input it had none for is not
    /// counted: adapters take bodies, not events).
    pub fn events_dropped(&self) -> u64 {
        self.events_in.saturating_sub(self.events_out)
    }

    pub fn ns_per_event(&self) -> f64 {
        if self.events_in == 0 {
            0.0
        } else {
            self.busy_ns as f64 / self.events_in as f64
        }
    }
}

impl PluginStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&self.calls),
            events_in: get(&self.events_in),
            events_out: get(&self.events_out),
            busy_ns: get(&self.busy_ns),
            rejections: get(&self.rejections),
            traps: get(&self.traps),
            timeouts: get(&self.timeouts),
            limit_hits: get(&self.limit_hits),
            restarts: get(&self.restarts),
            log_dropped: get(&self.log_dropped),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
