//! The monitor as one running thing: loaded (every section checked, the
//! alert book opened) before the query engine exists, so the engine can
//! serve `weir_alerts`; started with the engine; stopped with the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use weir_metrics::{
    Collector, Counter, DescriptorEncoder, GaugeFn, Kind, Latency, Registry, write_family,
};
use weir_pipeline::WritePath;
use weir_query::{QueryEngine, SystemTable};

use arrow::array::{Array, AsArray};

use crate::alerts::{AlertBook, AlertSnapshot, AlertState};
use crate::config::{MonitorSections, MonitorSettings, ProbeSection};
use crate::events::{
    self, CheckedEvent, DropReason, EventBody, EventMetrics, EventSource, Outcome, RetiredHosts,
};
use crate::notify::{Notifier, NotifyMetrics, ReceiverDef};
use crate::probe::{DEFAULT_TABLE, ProbeDef};
use crate::rows::{RowMetrics, RowWriter};
use crate::rule::{ALERTNAME, Observation, Priority, RuleDef, observations};
use crate::schedule::{HeartbeatDef, Heartbeats, Origin, ProbeMetrics, Probes};
use crate::status::StatusReport;
use crate::suppress::{
    self, BlastRadius, Matcher, Suppression, SuppressionBook, SuppressionLimits, SuppressionRequest,
};
use crate::tables::AlertsTable;
use crate::template::Template;
use crate::{Error, Result, config_error, status, tables};

pub use crate::schedule::ProbeView;

/// What the monitor is built from.
pub struct MonitorArgs {
    pub sections: MonitorSections,
    pub settings: MonitorSettings,
    pub write_path: WritePath,
    /// The monitor keeps its state in `<data_dir>/monitor`.
    pub data_dir: PathBuf,
}

/// How often the alert book is saved and its outbox worked off, at least.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Most label sets of the alert history a blast radius looks at.
const BLAST_RADIUS_MAX_HISTORY: usize = 1_000_000;
/// The rule under which failing rules alert.
const RULE_FAILING: &str = "weir_rule_failing";

pub struct Monitor {
    settings: MonitorSettings,
    state_dir: PathBuf,
    book: AlertBook,
    suppressions: SuppressionBook,
    rules: Vec<Arc<RuleDef>>,
    rule_failing: Arc<RuleDef>,
    receivers: Arc<BTreeMap<String, ReceiverDef>>,
    probe_defs: Vec<ProbeDef>,
    heartbeat_defs: Vec<HeartbeatDef>,
    write_path: WritePath,
    running: Mutex<Option<Running>>,
    /// Serializes changes to the API probes file.
    api_probes: tokio::sync::Mutex<BTreeMap<String, ProbeSection>>,
    status_cache: Arc<Mutex<Option<StatusAnswer>>>,
    status_refreshing: Arc<AtomicBool>,
    probe_metrics: Arc<ProbeMetrics>,
    row_metrics: Arc<RowMetrics>,
    notify_metrics: Arc<NotifyMetrics>,
    rule_metrics: Arc<RuleMetrics>,
    retired: RetiredHosts,
    event_metrics: Arc<EventMetrics>,
    /// Wakes the persist loop: something owes a save and its consequences.
    persist: Arc<Notify>,
}

/// What became of one event, as the events API answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventReport {
    pub fingerprint: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<&'static str>,
}

#[derive(Debug, Default)]
struct RuleMetrics {
    evaluations: Counter,
    failures: Counter,
    seconds: Latency,
}

/// The services part of the status page, and when it was computed.
type StatusAnswer = (Instant, Arc<StatusReport>);

struct Running {
    query: Arc<QueryEngine>,
    probes: Arc<Probes>,
    heartbeats: Arc<Heartbeats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Checks every section and opens the alert book; runs nothing yet.
    pub fn load(args: MonitorArgs) -> Result<Self> {
        let sections = args.sections;
        let mut receivers = BTreeMap::new();
        for (name, section) in &sections.receivers {
            receivers.insert(name.clone(), ReceiverDef::from_section(name, section)?);
        }
        let mut rules = Vec::new();
        for (name, section) in &sections.rules {
            if name == RULE_FAILING {
                return Err(config_error(
                    format!("rules.{name}"),
                    "this name is Weir's own rule for failing rules",
                ));
            }
            rules.push(Arc::new(RuleDef::from_section(
                name,
                section,
                &sections.receivers,
            )?));
        }
        let mut probe_defs = Vec::new();
        for (name, section) in &sections.probes {
            probe_defs.push(ProbeDef::from_section(name, section)?);
        }
        let mut heartbeat_defs = Vec::new();
        for (name, section) in &sections.heartbeats {
            heartbeat_defs.push(HeartbeatDef::from_section(name, section)?);
        }
        let state_dir = args.data_dir.join("monitor");
        let suppressions = SuppressionBook::open(Some(&state_dir))?;
        let book = AlertBook::open(Some(&state_dir))?
            .with_suppressions(suppressions.clone())
            .with_grouping(args.settings.grouping.clone());
        // Alerts of rules taken out of the config resolve now rather than
        // fire forever.
        let configured: std::collections::HashSet<&str> =
            rules.iter().map(|r| r.name.as_str()).collect();
        let retired = book.retire(
            &|a| {
                let rule = if a.rule == RULE_FAILING {
                    a.labels.get("rule").map_or("", String::as_str)
                } else {
                    a.rule.as_str()
                };
                configured.contains(rule)
            },
            weir_pipeline::now_ns(),
        );
        if retired > 0 {
            info!(
                alerts = retired,
                "alerts of rules no longer configured were resolved"
            );
        }
        let api_probes = read_api_probes(&state_dir)?;
        let retired = RetiredHosts::new(args.settings.retired_hosts.iter().cloned());
        Ok(Self {
            retired,
            event_metrics: Arc::default(),
            persist: Arc::new(Notify::new()),
            settings: args.settings,
            state_dir,
            book,
            suppressions,
            rules,
            rule_failing: Arc::new(rule_failing_def()),
            receivers: Arc::new(receivers),
            probe_defs,
            heartbeat_defs,
            write_path: args.write_path,
            running: Mutex::new(None),
            api_probes: tokio::sync::Mutex::new(api_probes),
            status_cache: Arc::default(),
            status_refreshing: Arc::default(),
            probe_metrics: Arc::default(),
            row_metrics: Arc::default(),
            notify_metrics: Arc::default(),
            rule_metrics: Arc::default(),
        })
    }

    /// `weir_alerts`, for the query engine.
    pub fn alerts_table(&self) -> Arc<dyn SystemTable> {
        Arc::new(AlertsTable::new(self.book.clone()))
    }

    /// `weir_alert_groups`, for the query engine.
    pub fn groups_table(&self) -> Arc<dyn SystemTable> {
        Arc::new(tables::GroupsTable::new(self.book.clone()))
    }

    /// `weir_suppressions`, for the query engine.
    pub fn suppressions_table(&self) -> Arc<dyn SystemTable> {
        Arc::new(tables::SuppressionsTable::new(self.suppressions.clone()))
    }

    /// Starts probes, heartbeats, rules and deliveries.
    pub async fn start(&self, query: Arc<QueryEngine>) -> Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let (rows, writer) = RowWriter::spawn(
            self.write_path.clone(),
            Arc::clone(&self.row_metrics),
            stop.clone(),
        );
        tasks.push(writer);
        let probes = Arc::new(Probes::new(
            rows.clone(),
            self.settings.probe_concurrency,
            Arc::clone(&self.probe_metrics),
            stop.clone(),
        ));
        for def in &self.probe_defs {
            probes.start(def.clone(), Origin::Config)?;
        }
        for (name, section) in self.api_probes.lock().await.iter() {
            match ProbeDef::from_section(name, section) {
                Ok(def) if probes.origin(name).is_none() => probes.start(def, Origin::Api)?,
                Ok(_) => {
                    warn!(probe = %name, "a probe of the API has the name of one in the config file; the config file's runs")
                }
                Err(e) => {
                    error!(probe = %name, error = %e, "a probe saved by the API no longer loads; skipped")
                }
            }
        }
        let heartbeats = Arc::new(Heartbeats::start(
            self.heartbeat_defs.clone(),
            rows,
            Arc::clone(&self.probe_metrics),
            stop.clone(),
        ));
        let persist = Arc::clone(&self.persist);
        let notifier = Notifier::new(
            Arc::clone(&self.receivers),
            self.book.clone(),
            self.write_path.clone(),
            Arc::clone(&query),
            self.settings.notify_retry_for,
            Arc::clone(&self.notify_metrics),
            stop.clone(),
        )?;
        tasks.push(tokio::spawn(persist_loop(
            self.book.clone(),
            self.write_path.clone(),
            Arc::clone(&self.receivers),
            notifier,
            Arc::clone(&persist),
            stop.clone(),
        )));
        for rule in &self.rules {
            tasks.push(tokio::spawn(rule_loop(RuleLoop {
                rule: Arc::clone(rule),
                rule_failing: Arc::clone(&self.rule_failing),
                query: Arc::clone(&query),
                book: self.book.clone(),
                path: self.write_path.clone(),
                receivers: Arc::clone(&self.receivers),
                max_alerts: self.settings.max_alerts_per_rule,
                persist: Arc::clone(&persist),
                metrics: Arc::clone(&self.rule_metrics),
                stop: stop.clone(),
            })));
        }
        info!(
            probes = self.probe_defs.len(),
            heartbeats = self.heartbeat_defs.len(),
            rules = self.rules.len(),
            receivers = self.receivers.len(),
            "monitor started"
        );
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running {
            query,
            probes,
            heartbeats,
            stop: stop_tx,
            tasks,
        });
        Ok(())
    }

    /// Stops everything; writes the probe rows still queued and saves the
    /// alert book. Notifications still owed are delivered after a restart.
    pub async fn shutdown(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(running) = running else {
            return;
        };
        running.probes.stop_all();
        let _ = running.stop.send(true);
        for task in running.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.book.save().await {
            error!(error = %e, "could not save the alert book at shutdown");
        }
    }

    fn with_running<T>(&self, f: impl FnOnce(&Running) -> T) -> Result<T> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .as_ref()
            .map(f)
            .ok_or_else(|| Error::Internal("the monitor is not running".into()))
    }

    pub fn probes(&self) -> Result<Vec<ProbeView>> {
        self.with_running(|r| r.probes.views())
    }

    /// Creates or replaces a probe of the API; it survives restarts.
    pub async fn put_probe(&self, name: &str, section: ProbeSection) -> Result<()> {
        let def = ProbeDef::from_section(name, &section)?;
        let mut saved = self.api_probes.lock().await;
        let probes = self.with_running(|r| Arc::clone(&r.probes))?;
        if probes.origin(name) == Some(Origin::Config) {
            return Err(config_error(
                format!("probes.{name}"),
                "is defined in the config file; change it there",
            ));
        }
        let mut next = saved.clone();
        next.insert(name.to_string(), section);
        write_api_probes(&self.state_dir, &next).await?;
        *saved = next;
        probes.start(def, Origin::Api)
    }

    pub async fn delete_probe(&self, name: &str) -> Result<()> {
        let mut saved = self.api_probes.lock().await;
        let probes = self.with_running(|r| Arc::clone(&r.probes))?;
        probes.remove(name)?;
        let mut next = saved.clone();
        next.remove(name);
        write_api_probes(&self.state_dir, &next).await?;
        *saved = next;
        Ok(())
    }

    pub async fn heartbeat(&self, name: &str) -> Result<()> {
        let heartbeats = self.with_running(|r| Arc::clone(&r.heartbeats))?;
        heartbeats.beat(name).await
    }

    pub fn alerts(&self) -> Vec<AlertSnapshot> {
        self.book.alerts()
    }

    /// Takes events (see [`crate::events`]): checks all of them (one bad
    /// event refuses the request, so nothing is half-applied), runs them
    /// through the pre-filters into the alert book, and returns once the
    /// book and the `weir_events` rows are durable.
    pub async fn receive_events(
        &self,
        bodies: Vec<EventBody>,
        source: EventSource,
    ) -> Result<Vec<EventReport>> {
        if bodies.len() > events::MAX_EVENTS_PER_REQUEST {
            return Err(config_error(
                "events",
                format!(
                    "{} events, more than the {} one request may carry",
                    bodies.len(),
                    events::MAX_EVENTS_PER_REQUEST
                ),
            ));
        }
        let now_ns = weir_pipeline::now_ns();
        let mut checked = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            let what = format!("events[{i}]");
            let event = events::check(&what, body, now_ns)?;
            if event.monitor == RULE_FAILING || self.rules.iter().any(|r| r.name == event.monitor) {
                return Err(config_error(
                    format!("{what}.monitor"),
                    format!(
                        "{:?} is an alert rule of this Weir; an event's monitor needs a name of its own",
                        event.monitor
                    ),
                ));
            }
            checked.push(event);
        }
        // Dynamic pre-filtering, before any state changes.
        let kept = events::pipeline::run(&self.write_path, &mut checked, now_ns).await?;
        let receivers = Arc::clone(&self.receivers);
        let route = move |rule: &RuleDef, labels: &BTreeMap<String, String>| {
            crate::notify::route(&receivers, rule, labels)
        };
        let passing: std::borrow::Cow<'_, [CheckedEvent]> = if kept.iter().all(|k| *k) {
            std::borrow::Cow::Borrowed(&checked)
        } else {
            checked
                .iter()
                .zip(&kept)
                .filter(|(_, kept)| **kept)
                .map(|(event, _)| event.clone())
                .collect()
        };
        let (passing_outcomes, applied) =
            self.book
                .apply_events(&passing, &self.retired, now_ns, &route);
        let mut passing_outcomes = passing_outcomes.into_iter();
        // One outcome per event kept, in order; the others were filtered.
        let outcomes: Vec<Outcome> = kept
            .iter()
            .map(|&kept| {
                let passed = if kept { passing_outcomes.next() } else { None };
                passed.unwrap_or(Outcome::Dropped(DropReason::Filtered))
            })
            .collect();
        // Acknowledged means durable: a crash after the answer loses nothing.
        self.book.save().await?;
        if applied.transitions > 0 {
            self.persist.notify_one();
        }
        let rows: Vec<(CheckedEvent, Outcome)> = checked.into_iter().zip(outcomes).collect();
        let batches = tables::event_batches(&self.write_path, source, &rows, now_ns)?;
        self.write_path.write_system(batches).await?;
        Ok(rows
            .iter()
            .map(|(event, outcome)| {
                self.event_metrics.record(*outcome);
                EventReport {
                    fingerprint: crate::rule::fingerprint(&event.labels),
                    outcome: outcome.as_str(),
                    drop_reason: outcome.drop_reason().map(DropReason::as_str),
                }
            })
            .collect())
    }

    /// Replays stored history through `rules` (and the receivers of
    /// `sections`, or the live ones if it names none), with this Weir's
    /// grouping under `grouping` and its suppressions; sends nothing and
    /// leaves the live alert state alone (see [`crate::backtest`]).
    pub async fn backtest(
        &self,
        sections: &crate::MonitorSections,
        grouping: &crate::groups::GroupingOverrides,
        from_ns: i64,
        to_ns: i64,
        step: Option<Duration>,
    ) -> Result<crate::backtest::BacktestReport> {
        if sections.rules.is_empty() {
            return Err(config_error(
                "backtest",
                "the file has no [rules.NAME] section",
            ));
        }
        let receivers = if sections.receivers.is_empty() {
            Arc::clone(&self.receivers)
        } else {
            Arc::new(
                sections
                    .receivers
                    .iter()
                    .map(|(name, s)| Ok((name.clone(), ReceiverDef::from_section(name, s)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            )
        };
        let rules = sections
            .rules
            .iter()
            .map(|(name, s)| RuleDef::from_section(name, s, &sections.receivers))
            .collect::<Result<Vec<_>>>()?;
        let query = self.with_running(|r| Arc::clone(&r.query))?;
        let plan = crate::backtest::BacktestPlan {
            rules,
            receivers,
            grouping: grouping.over(&self.settings.grouping),
            suppressions: self.suppressions.list(),
            from_ns,
            to_ns,
            step,
        };
        crate::backtest::run(plan, &query, self.write_path.store()).await
    }

    /// Every suppression (active, scheduled, and expired in the last five
    /// days).
    pub fn suppressions(&self) -> Vec<Arc<Suppression>> {
        self.suppressions.list()
    }

    pub fn suppression(&self, id: &str) -> Result<Arc<Suppression>> {
        self.suppressions.get(id).ok_or_else(|| Error::NotFound {
            kind: "suppression",
            name: id.to_string(),
        })
    }

    /// What `targets` would hide: the alert instances now and of the last
    /// 24 hours (`weir_alert_history`) that they match.
    pub async fn blast_radius(&self, targets: &[Vec<Matcher>]) -> Result<BlastRadius> {
        let current = self.book.alerts();
        let mut candidates: Vec<(BTreeMap<String, String>, bool)> = current
            .iter()
            .map(|a| (a.labels.clone(), a.state == AlertState::Firing))
            .collect();
        let store = self.write_path.store();
        if let Some(schema) = store.table_schema(tables::ALERT_HISTORY) {
            let query = self.with_running(|r| Arc::clone(&r.query))?;
            let sql = format!(
                "SELECT labels FROM {} WHERE \"{}\" >= now() - INTERVAL '1 day' GROUP BY labels",
                tables::ALERT_HISTORY,
                schema.time_column.replace('"', "\"\"")
            );
            let answer = query.sql_limited(&sql, BLAST_RADIUS_MAX_HISTORY).await?;
            for batch in &answer.batches {
                let labels =
                    arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                        .map_err(|e| Error::Internal(format!("reading alert history: {e}")))?;
                for text in labels.as_string::<i32>().iter().flatten() {
                    if let Ok(labels) = serde_json::from_str(text) {
                        candidates.push((labels, false));
                    }
                }
            }
        }
        Ok(suppress::blast_radius(
            targets,
            candidates.iter().map(|(labels, firing)| (labels, *firing)),
        ))
    }

    /// Creates or changes a suppression after checking it, and its blast
    /// radius against `max_suppression_matches` unless `force`d.
    pub async fn put_suppression(
        &self,
        request: SuppressionRequest,
        force: bool,
    ) -> Result<(Suppression, BlastRadius)> {
        let now_ns = weir_pipeline::now_ns();
        suppress::check_request(&request, &self.suppression_limits(), now_ns)?;
        let radius = self.blast_radius(&request.targets).await?;
        let limit = self.settings.max_suppression_matches;
        if radius.alert_instances > limit && !force {
            return Err(Error::Refused(format!(
                "it would suppress {} alert instances ({} firing now, {} services) of the last 24 hours, over max_suppression_matches ({limit}); narrow it, or force it",
                radius.alert_instances, radius.firing_now, radius.services
            )));
        }
        let suppression = self.suppressions.upsert(request, now_ns).await?;
        info!(
            id = %suppression.id, created_by = %suppression.created_by,
            alert_instances = radius.alert_instances, "suppression saved"
        );
        Ok((suppression, radius))
    }

    /// Checks a suppression and reports its blast radius, making nothing.
    pub async fn preview_suppression(&self, request: &SuppressionRequest) -> Result<BlastRadius> {
        suppress::check_request(request, &self.suppression_limits(), weir_pipeline::now_ns())?;
        self.blast_radius(&request.targets).await
    }

    pub async fn expire_suppression(&self, id: &str) -> Result<Suppression> {
        self.suppressions.expire(id, weir_pipeline::now_ns()).await
    }

    /// The notifications a suppression withheld, newest first (from
    /// `weir_suppressed`).
    pub async fn suppressed_by(&self, id: &str) -> Result<Vec<serde_json::Value>> {
        // Only a well-formed id reaches the SQL text: hex digits and dashes.
        if !suppress::is_id(id) {
            return Err(Error::NotFound {
                kind: "suppression",
                name: id.to_string(),
            });
        }
        let store = self.write_path.store();
        let Some(schema) = store.table_schema(tables::SUPPRESSED) else {
            return Ok(Vec::new());
        };
        let query = self.with_running(|r| Arc::clone(&r.query))?;
        let sql = format!(
            "SELECT \"{time}\" AS time, rule, fingerprint, transition, labels, summary FROM {table} \
             WHERE suppression_id = '{id}' ORDER BY \"{time}\" DESC LIMIT 1000",
            time = schema.time_column.replace('"', "\"\""),
            table = tables::SUPPRESSED,
        );
        let answer = query.sql(&sql).await?;
        let mut rows = Vec::new();
        for batch in &answer.batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("reading weir_suppressed: {e}")))?;
            for row in 0..batch.num_rows() {
                let mut object = serde_json::Map::new();
                for (field, column) in batch.schema().fields().iter().zip(&columns) {
                    let text = column.as_string::<i32>();
                    let value = if text.is_null(row) {
                        serde_json::Value::Null
                    } else if field.name() == "labels" {
                        serde_json::from_str(text.value(row)).unwrap_or_default()
                    } else {
                        text.value(row).into()
                    };
                    object.insert(field.name().clone(), value);
                }
                rows.push(serde_json::Value::Object(object));
            }
        }
        Ok(rows)
    }

    fn suppression_limits(&self) -> SuppressionLimits {
        SuppressionLimits {
            max_duration: self.settings.max_suppression_duration,
        }
    }

    /// The status page's data. Computing it reads 30 days of checks
    /// (seconds over millions of rows), so once there is an answer no
    /// request waits for one: an answer older than `status_cache_for` is
    /// served while a fresh one is computed in the background. The alerts
    /// on it are always current.
    pub async fn status(&self) -> Result<Arc<StatusReport>> {
        let query = self.with_running(|r| Arc::clone(&r.query))?;
        let cached = self
            .status_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let services = match cached {
            Some((at, report)) => {
                if at.elapsed() >= self.settings.status_cache_for
                    && !self.status_refreshing.swap(true, Ordering::SeqCst)
                {
                    let store = self.write_path.store().clone();
                    let cache = Arc::clone(&self.status_cache);
                    let refreshing = Arc::clone(&self.status_refreshing);
                    tokio::spawn(async move {
                        match compute_status(&query, &store).await {
                            Ok(fresh) => {
                                *cache.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some((Instant::now(), Arc::new(fresh)));
                            }
                            Err(e) => warn!(error = %e, "could not compute the status page"),
                        }
                        refreshing.store(false, Ordering::SeqCst);
                    });
                }
                report
            }
            None => {
                let fresh = Arc::new(compute_status(&query, self.write_path.store()).await?);
                *self.status_cache.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), Arc::clone(&fresh)));
                fresh
            }
        };
        Ok(Arc::new(status::with_alerts(
            &services,
            self.alerts(),
            self.book.groups(),
        )))
    }

    /// Registers the monitor's metrics: probes, rules, notifications, and
    /// the events and alert book read at scrape time.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "weir_probe_runs",
            "Probe runs",
            self.probe_metrics.runs.clone(),
        );
        registry.register(
            "weir_probe_unhealthy",
            "Probe runs that were unhealthy",
            self.probe_metrics.unhealthy.clone(),
        );
        registry.register(
            "weir_probe_seconds",
            "Probe run time",
            self.probe_metrics.seconds.clone(),
        );
        registry.register(
            "weir_probe_slot_wait_seconds",
            "Time probe runs waited for a slot (probe_concurrency)",
            self.probe_metrics.slot_wait_seconds.clone(),
        );
        registry.register(
            "weir_heartbeats",
            "Heartbeats received",
            self.probe_metrics.heartbeats.clone(),
        );
        registry.register(
            "weir_heartbeats_missed",
            "Unhealthy rows written for missed heartbeats",
            self.probe_metrics.heartbeats_missed.clone(),
        );
        registry.register(
            "weir_probe_rows_written",
            "Probe and heartbeat rows written",
            self.row_metrics.written.clone(),
        );
        registry.register(
            "weir_probe_rows_failed",
            "Probe and heartbeat rows that could not be written",
            self.row_metrics.failed.clone(),
        );
        registry.register(
            "weir_rule_evaluations",
            "Alert rule evaluations",
            self.rule_metrics.evaluations.clone(),
        );
        registry.register(
            "weir_rule_evaluation_seconds",
            "Time to evaluate one alert rule (its query and the state update)",
            self.rule_metrics.seconds.clone(),
        );
        registry.register(
            "weir_rule_failures",
            "Alert rule evaluations that failed",
            self.rule_metrics.failures.clone(),
        );
        registry.register(
            "weir_notification_attempts",
            "Notification delivery attempts",
            self.notify_metrics.attempts.clone(),
        );
        registry.register(
            "weir_notifications_delivered",
            "Notifications delivered",
            self.notify_metrics.delivered.clone(),
        );
        registry.register(
            "weir_notifications_failed",
            "Notifications given up",
            self.notify_metrics.failed.clone(),
        );
        registry.register(
            "weir_notification_seconds",
            "Notification attempt latency",
            self.notify_metrics.seconds.clone(),
        );
        registry.register_collector(Box::new(EventCounts(Arc::clone(&self.event_metrics))));
        let book = self.book.clone();
        registry.register(
            "weir_events_held",
            "Unhealthy events waiting for their ignore-flap min-age",
            GaugeFn::new(move || book.held() as i64),
        );
        let book = self.book.clone();
        registry.register(
            "weir_notifications_owed",
            "Notifications waiting for delivery",
            GaugeFn::new(move || book.owed() as i64),
        );
    }
}

/// Events by outcome and by drop reason, as counted when they arrive.
#[derive(Debug)]
struct EventCounts(Arc<EventMetrics>);

impl Collector for EventCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &self.0;
        write_family(
            &mut encoder,
            "weir_events_total",
            "Events received, by outcome.",
            Kind::Counter,
            [
                ([("outcome", "passed")], e.passed() as f64),
                ([("outcome", "held")], e.held() as f64),
                (
                    [("outcome", "dropped")],
                    e.received().saturating_sub(e.passed() + e.held()) as f64,
                ),
            ],
        )?;
        write_family(
            &mut encoder,
            "weir_events_dropped_total",
            "Events the static pre-filters dropped, by reason.",
            Kind::Counter,
            DropReason::ALL
                .iter()
                .map(|r| ([("reason", r.as_str())], e.dropped(*r) as f64)),
        )
    }
}

/// The services part of the status page, from `service_metrics`.
async fn compute_status(query: &QueryEngine, store: &weir_storage::Store) -> Result<StatusReport> {
    let table = DEFAULT_TABLE;
    match store.table_schema(table) {
        Some(schema) => {
            let has_error = schema.column("error").is_some();
            let rollup = status::StatusRollup::find(&store.rollups(), table);
            status::compute(
                query,
                table,
                &schema.time_column,
                has_error,
                rollup.as_ref(),
            )
            .await
        }
        None => Ok(status::compute_empty(table)),
    }
}

fn rule_failing_def() -> RuleDef {
    let template = |text: &str| Template::parse(RULE_FAILING, text, None).unwrap_or_default();
    RuleDef {
        name: RULE_FAILING.into(),
        query: String::new(),
        interval: Duration::from_secs(60),
        for_: Duration::ZERO,
        // A rule over a table its data has not created yet fails for an
        // evaluation or two after start-up; that is not worth a message.
        consecutive: 3,
        keep_firing_for: Duration::ZERO,
        priority: Priority::Low,
        summary: template("alert rule ${labels.rule} fails to evaluate"),
        description: template("see weir_rule_errors for why"),
        runbook: Template::default(),
        labels: BTreeMap::new(),
        receivers: None,
        grouping: Default::default(),
        collect: Default::default(),
    }
}

struct RuleLoop {
    rule: Arc<RuleDef>,
    rule_failing: Arc<RuleDef>,
    query: Arc<QueryEngine>,
    book: AlertBook,
    path: WritePath,
    receivers: Arc<BTreeMap<String, ReceiverDef>>,
    max_alerts: usize,
    persist: Arc<Notify>,
    metrics: Arc<RuleMetrics>,
    stop: watch::Receiver<bool>,
}

async fn rule_loop(mut l: RuleLoop) {
    let start = crate::schedule::first_tick(
        l.rule.interval,
        crate::schedule::offset(&l.rule.name, l.rule.interval),
    );
    let mut ticks = tokio::time::interval_at(start.into(), l.rule.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let receivers = Arc::clone(&l.receivers);
    let route = move |rule: &RuleDef, labels: &BTreeMap<String, String>| {
        crate::notify::route(&receivers, rule, labels)
    };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = l.stop.wait_for(|s| *s) => return,
        }
        l.metrics.evaluations.inc();
        let started = Instant::now();
        let answer = l
            .query
            .sql_limited(&l.rule.query, l.max_alerts)
            .await
            .map_err(|e| match e {
                weir_query::Error::TooManyRows { limit } => format!(
                    "the rule returned more than {limit} alert instances (max_alerts_per_rule); aggregate or filter it"
                ),
                e => e.to_string(),
            })
            .and_then(|result| observations(&l.rule, &result));
        // The state is as of when the answer is known: a transition's time
        // is when it happened, not when the query began.
        let now_ns = weir_pipeline::now_ns();
        l.metrics.seconds.observe(started.elapsed());
        let failed = answer.as_ref().err().cloned();
        let mut transitions = 0;
        match answer {
            Ok(obs) => {
                transitions += l
                    .book
                    .apply(&l.rule, &obs, true, now_ns, &route)
                    .transitions;
            }
            Err(e) => {
                l.metrics.failures.inc();
                warn!(rule = %l.rule.name, error = %e, "alert rule failed; its alerts keep their state");
                let written = async {
                    let batches = tables::rule_error_batches(&l.path, &l.rule.name, &e, now_ns)?;
                    l.path.write_system(batches).await.map_err(Error::from)
                }
                .await;
                if let Err(e) = written {
                    error!(error = %e, "could not store a row of weir_rule_errors");
                }
            }
        }
        let report = Observation {
            labels: BTreeMap::from([
                (ALERTNAME.to_string(), RULE_FAILING.to_string()),
                ("rule".to_string(), l.rule.name.clone()),
            ]),
            firing: failed.is_some(),
            value: None,
            checked_at_ns: None,
        };
        transitions += l
            .book
            .apply(&l.rule_failing, &[report], false, now_ns, &route)
            .transitions;
        // A transition is saved and acted on at once; counters alone wait
        // for the next periodic save (losing one to a crash delays a
        // `consecutive` alert by one check, no more).
        if transitions > 0 {
            l.persist.notify_one();
        }
    }
}

/// Saves the book, then acts on what it owes: history rows stored,
/// notifications handed to their delivery tasks.
async fn persist_loop(
    book: AlertBook,
    path: WritePath,
    receivers: Arc<BTreeMap<String, ReceiverDef>>,
    notifier: Notifier,
    persist: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = persist.notified() => false,
            _ = tokio::time::sleep(PERSIST_EVERY) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let now_ns = weir_pipeline::now_ns();
        let route = |rule: &RuleDef, labels: &BTreeMap<String, String>| {
            crate::notify::route(&receivers, rule, labels)
        };
        book.events_due(now_ns, &route);
        book.resweep(now_ns);
        book.flush_groups(now_ns);
        if let Err(e) = book.save().await {
            // Nothing is sent that is not on disk.
            error!(error = %e, "could not save the alert book; notifications wait");
            if stopping {
                return;
            }
            continue;
        }
        let due = book.take_due();
        if !due.history.is_empty() {
            let stored = async {
                // History and the suppressed record in one atomic write.
                let mut batches = tables::history_batches(&path, &due.history)?;
                let withheld: Vec<_> = due
                    .history
                    .iter()
                    .filter(|t| !t.suppressed_by.is_empty())
                    .cloned()
                    .collect();
                if !withheld.is_empty() {
                    batches.extend(tables::suppressed_batches(&path, &withheld)?);
                }
                path.write_system(batches).await.map_err(Error::from)
            }
            .await;
            match stored {
                Ok(_) => book.history_stored(due.history.len()),
                Err(e) => {
                    error!(error = %e, "could not store alert history; retrying");
                    book.history_failed();
                }
            }
        }
        if stopping {
            return;
        }
        for owed in due.notifications {
            notifier.dispatch(owed);
        }
    }
}

fn api_probes_path(dir: &Path) -> PathBuf {
    dir.join("probes.json")
}

fn read_api_probes(dir: &Path) -> Result<BTreeMap<String, ProbeSection>> {
    Ok(crate::alerts::read_state(&api_probes_path(dir), "fix or remove it")?.unwrap_or_default())
}

async fn write_api_probes(dir: &Path, probes: &BTreeMap<String, ProbeSection>) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(probes)
        .map_err(|e| Error::Internal(format!("encoding probes: {e}")))?;
    let path = api_probes_path(dir);
    tokio::task::spawn_blocking(move || crate::alerts::write_atomic(&path, &bytes))
        .await
        .map_err(|e| Error::Internal(format!("saving probes: {e}")))?
}
