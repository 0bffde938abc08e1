//! When probes run and heartbeats are missed.
//!
//! A probe runs on a fixed grid: `start + offset + k × interval`, where the
//! offset is a hash of its name spread over the interval. The grid does not
//! move when a request is slow (popular probers sleep `interval` *after*
//! each run, so their schedule drifts by the request time), probes with the
//! same interval do not all fire at once, and a restart keeps each probe's
//! phase. Runs share a concurrency limit; a run waiting for a slot is late,
//! never skipped, and a tick missed entirely (the process was stopped) is
//! skipped rather than made up in a burst.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use weir_metrics::{Counter, Latency};

use crate::config::HeartbeatSection;
use crate::probe::{ProbeDef, ProbeOutcome, row_destination};
use crate::rows::{CheckRow, RowWriter};
use crate::{Error, Result, config_error, parse_duration};

#[derive(Debug, Default)]
pub struct ProbeMetrics {
    pub runs: Counter,
    pub unhealthy: Counter,
    pub seconds: Latency,
    /// Time runs waited for a slot under `probe_concurrency`.
    pub slot_wait_seconds: Latency,
    pub heartbeats: Counter,
    pub heartbeats_missed: Counter,
}

/// Where a probe was defined: the config file, or the probes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

struct Running {
    def: Arc<ProbeDef>,
    origin: Origin,
    last: Arc<Mutex<Option<ProbeOutcome>>>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running probes.
pub struct Probes {
    running: Mutex<BTreeMap<String, Running>>,
    rows: RowWriter,
    slots: Arc<Semaphore>,
    metrics: Arc<ProbeMetrics>,
    stop: watch::Receiver<bool>,
}

/// A probe and its last result, for the API and `weir probes`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    pub name: String,
    pub origin: Origin,
    pub service: String,
    pub target: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub last: Option<ProbeOutcome>,
    pub definition: crate::ProbeSection,
}

/// Where in its interval a probe runs: a stable hash of its name.
pub(crate) fn offset(name: &str, interval: Duration) -> Duration {
    let hash = Sha256::digest(name.as_bytes());
    let n = u64::from_le_bytes(hash[..8].try_into().unwrap_or([0; 8]));
    let millis = interval.as_millis().max(1) as u64;
    Duration::from_millis(n % millis)
}

/// The first grid point at or after now, on a grid anchored at the Unix
/// epoch, so a probe keeps its phase across restarts.
pub(crate) fn first_tick(interval: Duration, offset: Duration) -> Instant {
    let now_ns = weir_pipeline::now_ns().max(0) as u128;
    let interval_ns = interval.as_nanos().max(1);
    let phase_ns = offset.as_nanos() % interval_ns;
    let into = (now_ns + interval_ns - phase_ns) % interval_ns;
    let wait = if into == 0 { 0 } else { interval_ns - into };
    Instant::now() + Duration::from_nanos(wait as u64)
}

impl Probes {
    pub fn new(
        rows: RowWriter,
        concurrency: usize,
        metrics: Arc<ProbeMetrics>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            running: Mutex::new(BTreeMap::new()),
            rows,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            metrics,
            stop,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or replaces) a probe.
    pub fn start(&self, def: ProbeDef, origin: Origin) -> Result<()> {
        let mut running = self.lock();
        if let Some(existing) = running.get(&def.name)
            && existing.origin == Origin::Config
            && origin == Origin::Api
        {
            return Err(config_error(
                format!("probes.{}", def.name),
                "is defined in the config file; change it there",
            ));
        }
        let def = Arc::new(def);
        let last = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run_probe(
            Arc::clone(&def),
            Arc::clone(&last),
            self.rows.clone(),
            Arc::clone(&self.slots),
            Arc::clone(&self.metrics),
            self.stop.clone(),
        ));
        running.insert(
            def.name.clone(),
            Running {
                def,
                origin,
                last,
                task,
            },
        );
        Ok(())
    }

    /// Stops an API-defined probe.
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut running = self.lock();
        match running.get(name) {
            None => Err(Error::NotFound {
                kind: "probe",
                name: name.to_string(),
            }),
            Some(r) if r.origin == Origin::Config => Err(config_error(
                format!("probes.{name}"),
                "is defined in the config file; remove it there",
            )),
            Some(_) => {
                running.remove(name);
                Ok(())
            }
        }
    }

    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.lock().get(name).map(|r| r.origin)
    }

    pub fn views(&self) -> Vec<ProbeView> {
        self.lock()
            .values()
            .map(|r| ProbeView {
                name: r.def.name.clone(),
                origin: r.origin,
                service: r.def.service.clone(),
                target: match &r.def.target {
                    crate::probe::Target::Http(http) => format!("{} {}", http.method, http.url),
                    crate::probe::Target::Tcp { address } => format!("tcp {address}"),
                },
                interval_ms: r.def.interval.as_millis() as u64,
                timeout_ms: r.def.timeout.as_millis() as u64,
                last: r.last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                definition: r.def.section.clone(),
            })
            .collect()
    }

    pub fn stop_all(&self) {
        self.lock().clear();
    }
}

async fn run_probe(
    def: Arc<ProbeDef>,
    last: Arc<Mutex<Option<ProbeOutcome>>>,
    rows: RowWriter,
    slots: Arc<Semaphore>,
    metrics: Arc<ProbeMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let start = first_tick(def.interval, offset(&def.name, def.interval));
    let mut ticks = tokio::time::interval_at(start.into(), def.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let waited = Instant::now();
        let Ok(_slot) = slots.acquire().await else {
            return;
        };
        metrics.slot_wait_seconds.observe(waited.elapsed());
        let started = Instant::now();
        let outcome = def.run().await;
        metrics.seconds.observe(started.elapsed());
        metrics.runs.inc();
        if !outcome.healthy {
            metrics.unhealthy.inc();
        }
        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome.clone());
        rows.send(CheckRow {
            table: def.table.clone(),
            service: def.service.clone(),
            labels: def.labels.clone(),
            outcome,
        })
        .await;
    }
}

/// A checked `[heartbeats.NAME]`.
#[derive(Debug, Clone)]
pub struct HeartbeatDef {
    pub name: String,
    pub service: String,
    pub table: String,
    pub period: Duration,
    pub grace: Duration,
    pub labels: BTreeMap<String, String>,
}

impl HeartbeatDef {
    pub fn from_section(name: &str, section: &HeartbeatSection) -> Result<Self> {
        let what = format!("heartbeats.{name}");
        weir_model::validate_name(weir_model::NameKind::Column, name)
            .map_err(|e| config_error(&what, format!("the heartbeat's name: {e}")))?;
        let period = parse_duration(&format!("{what}.period"), &section.period)?;
        if period < Duration::from_secs(1) {
            return Err(config_error(
                format!("{what}.period"),
                "must be at least 1s",
            ));
        }
        let grace = match &section.grace {
            Some(text) => parse_duration(&format!("{what}.grace"), text)?,
            None => Duration::ZERO,
        };
        let (service, table) = row_destination(
            &what,
            name,
            section.service.as_deref(),
            section.table.as_deref(),
            &section.labels,
        )?;
        Ok(Self {
            name: name.to_string(),
            service,
            table,
            period,
            grace,
            labels: section.labels.clone(),
        })
    }
}

struct Beat {
    def: HeartbeatDef,
    /// Wakes the watcher: a beat arrived.
    beat: Arc<Notify>,
}

/// The push monitors.
pub struct Heartbeats {
    beats: HashMap<String, Beat>,
    rows: RowWriter,
    metrics: Arc<ProbeMetrics>,
}

impl Heartbeats {
    /// Starts a watcher per heartbeat; the first deadline counts from now.
    pub fn start(
        defs: Vec<HeartbeatDef>,
        rows: RowWriter,
        metrics: Arc<ProbeMetrics>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let mut beats = HashMap::new();
        for def in defs {
            let beat = Arc::new(Notify::new());
            tokio::spawn(watch_heartbeat(
                def.clone(),
                Arc::clone(&beat),
                rows.clone(),
                Arc::clone(&metrics),
                stop.clone(),
            ));
            beats.insert(def.name.clone(), Beat { def, beat });
        }
        Self {
            beats,
            rows,
            metrics,
        }
    }

    /// A job says it is alive: one healthy row, and the deadline moves.
    pub async fn beat(&self, name: &str) -> Result<()> {
        let Some(beat) = self.beats.get(name) else {
            return Err(Error::NotFound {
                kind: "heartbeat",
                name: name.to_string(),
            });
        };
        let now_ns = weir_pipeline::now_ns();
        beat.beat.notify_one();
        self.metrics.heartbeats.inc();
        self.rows
            .send(heartbeat_row(&beat.def, now_ns, true, None))
            .await;
        Ok(())
    }
}

fn heartbeat_row(
    def: &HeartbeatDef,
    now_ns: i64,
    healthy: bool,
    error: Option<String>,
) -> CheckRow {
    CheckRow {
        table: def.table.clone(),
        service: def.service.clone(),
        labels: def.labels.clone(),
        outcome: ProbeOutcome {
            started_ns: now_ns,
            healthy,
            response_ms: None,
            status_code: None,
            tls_days_left: None,
            error,
        },
    }
}

async fn watch_heartbeat(
    def: HeartbeatDef,
    beat: Arc<Notify>,
    rows: RowWriter,
    metrics: Arc<ProbeMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    enum Wake {
        Beat,
        Missed,
        Stop,
    }
    let mut deadline = Instant::now() + def.period + def.grace;
    let mut last_beat = Instant::now();
    loop {
        let wake = tokio::select! {
            _ = beat.notified() => Wake::Beat,
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Missed,
            _ = stop.wait_for(|s| *s) => Wake::Stop,
        };
        match wake {
            Wake::Beat => {
                last_beat = Instant::now();
                deadline = last_beat + def.period + def.grace;
            }
            Wake::Missed => {
                metrics.heartbeats_missed.inc();
                let silent = Duration::from_secs(last_beat.elapsed().as_secs());
                let error = format!("heartbeat: none for {}", humantime::format_duration(silent));
                rows.send(heartbeat_row(
                    &def,
                    weir_pipeline::now_ns(),
                    false,
                    Some(error),
                ))
                .await;
                // Still missing: one unhealthy row every period.
                deadline += def.period;
            }
            Wake::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_checked_like_probes() {
        let section = |service: &str, table: &str| HeartbeatSection {
            period: "1m".into(),
            service: Some(service.into()),
            table: Some(table.into()),
            ..HeartbeatSection::default()
        };
        let err = |s: HeartbeatSection| {
            HeartbeatDef::from_section("job", &s)
                .unwrap_err()
                .to_string()
        };
        assert!(err(section(&"x".repeat(5000), "t")).starts_with("heartbeats.job.service"));
        assert!(err(section("", "t")).starts_with("heartbeats.job.service"));
        assert!(err(section("job", "weir_alerts")).starts_with("heartbeats.job.table"));
        let ok = HeartbeatDef::from_section("job", &section("nightly", "jobs")).unwrap();
        assert_eq!(
            (ok.service.as_str(), ok.table.as_str()),
            ("nightly", "jobs")
        );
    }

    #[test]
    fn probes_spread_over_their_interval_on_a_fixed_grid() {
        let interval = Duration::from_secs(60);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| offset(&format!("probe-{i}"), interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Spread: every 6-second slice of the minute gets some.
        for slice in 0..10 {
            let lo = Duration::from_secs(slice * 6);
            let count = offsets
                .iter()
                .filter(|o| **o >= lo && **o < lo + Duration::from_secs(6))
                .count();
            assert!((50..150).contains(&count), "slice {slice}: {count}");
        }
        assert_eq!(offset("a", interval), offset("a", interval));
        let first = first_tick(interval, Duration::from_secs(7));
        assert!(first <= Instant::now() + interval);
    }
}
