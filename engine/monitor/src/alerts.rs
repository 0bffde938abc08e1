//! Alert state: the `pending → firing → resolved` machine, and the book
//! that keeps every alert instance, durable across restarts and crashes.
//!
//! The book is one JSON file, `<data_dir>/monitor/alerts.json`, replaced
//! atomically (write, fsync, rename, fsync the directory). Besides the
//! alerts it holds an *outbox*: the history rows and notifications that
//! transitions owe. A transition goes into the outbox in the same change
//! that records it, and nothing in the outbox is acted on before the file
//! holding it is on disk; an item leaves the outbox once done (history
//! row stored, notification delivered or given up). After a crash, what
//! the file still owes is done then — so no transition is lost and no
//! notification is owed twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::Collectors;
use crate::events::{CheckedEvent, DropReason, EventStatus, Outcome, RetiredHosts};
use crate::groups::{Group, Grouping, Groups};
use crate::rule::{Observation, Priority, RuleDef, fingerprint};
use crate::suppress::SuppressionBook;
use crate::template::Context;
use crate::{Error, Result};

/// Resolved alerts stay in `weir_alerts` this long, then leave it (their
/// history stays in `weir_alert_history`).
const KEEP_RESOLVED: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// What raises an alert: a rule's evaluations, or events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    #[default]
    Rule,
    Event,
}

/// One alert instance: a rule (or monitor, for events) and a label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    pub fingerprint: String,
    pub rule: String,
    pub priority: Priority,
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the current state began.
    pub since_ns: i64,
    /// When this episode's first failing observation was seen.
    pub active_since_ns: i64,
    pub last_value: Option<f64>,
    pub last_evaluation_ns: i64,
    /// Last time an evaluation saw it failing.
    pub last_failing_ns: i64,
    /// Consecutive failing observations so far.
    pub consecutive: u32,
    /// The newest check counted (rules with `checked_at`).
    pub last_checked_at_ns: Option<i64>,
    pub summary: String,
    pub description: String,
    pub runbook: String,
    /// Transitions so far; numbers each one.
    pub transitions: u64,
    /// Receivers this alert is routed to (decided when it fires).
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Suppressions hiding it now (while firing).
    #[serde(default)]
    pub suppressed_by: Vec<String>,
    /// Whether its receivers were told it fires: false while a suppression
    /// hides it; its firing is sent if the suppression ends first.
    #[serde(default = "yes")]
    pub firing_notified: bool,
    #[serde(default)]
    pub source: AlertSource,
    /// Whether suppressions may hide it (an event can opt out).
    #[serde(default = "yes")]
    pub suppressible: bool,
    /// An event alert resolves at this time unless an event renews it
    /// (Alertmanager's `endsAt`).
    #[serde(default)]
    pub expires_ns: Option<i64>,
    /// How it is grouped and told (decided when it fires).
    #[serde(default)]
    pub grouping: Option<Grouping>,
    /// Context its notifications carry (decided when it fires).
    #[serde(default, skip_serializing_if = "Collectors::is_empty")]
    pub collect: Collectors,
}

fn yes() -> bool {
    true
}

/// One change of state, as stored in `weir_alert_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub time_ns: i64,
    pub fingerprint: String,
    pub rule: String,
    pub priority: Priority,
    pub labels: BTreeMap<String, String>,
    pub from: AlertState,
    pub to: AlertState,
    /// The alert's transition number.
    pub seq: u64,
    pub value: Option<f64>,
    pub summary: String,
    /// Suppressions that withheld this transition's notifications (stored
    /// in `weir_suppressed`).
    #[serde(default)]
    pub suppressed_by: Vec<String>,
}

/// A notification owed: one group, one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "OwedFile")]
pub struct Owed {
    pub id: u64,
    pub receiver: String,
    pub group_id: String,
    /// The labels the group's alerts share.
    pub group_key: BTreeMap<String, String>,
    /// The receiver's notification number in the group.
    pub seq: u64,
    /// The group's alerts routed to the receiver, as they were when the
    /// notification was decided; each `firing` or `resolved`.
    pub alerts: Vec<AlertSnapshot>,
    /// Attempts made so far (across restarts).
    pub attempts: u32,
    pub first_attempt_ns: Option<i64>,
}

impl Owed {
    /// `firing` while any of its alerts fires, else `resolved`.
    pub fn status(&self) -> AlertState {
        if self.alerts.iter().any(|a| a.state == AlertState::Firing) {
            AlertState::Firing
        } else {
            AlertState::Resolved
        }
    }
}

/// An owed notification as state files hold it: also the one-alert form
/// written before alerts were grouped, so an upgrade still delivers what
/// the old version owed.
#[derive(Deserialize)]
struct OwedFile {
    id: u64,
    receiver: String,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    group_key: BTreeMap<String, String>,
    seq: u64,
    #[serde(default)]
    alerts: Vec<AlertSnapshot>,
    #[serde(default)]
    attempts: u32,
    first_attempt_ns: Option<i64>,
    /// The one-alert form: the alert, and the state it moved to.
    #[serde(default)]
    alert: Option<AlertSnapshot>,
    #[serde(default)]
    to: Option<AlertState>,
}

impl From<OwedFile> for Owed {
    fn from(f: OwedFile) -> Self {
        let mut alerts = f.alerts;
        let mut group_id = f.group_id;
        if let Some(mut alert) = f.alert {
            alert.state = f.to.unwrap_or(alert.state);
            group_id.get_or_insert_with(|| alert.fingerprint.clone());
            alerts.push(alert);
        }
        Self {
            id: f.id,
            receiver: f.receiver,
            group_id: group_id.unwrap_or_default(),
            group_key: f.group_key,
            seq: f.seq,
            alerts,
            attempts: f.attempts,
            first_attempt_ns: f.first_attempt_ns,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BookFile {
    alerts: BTreeMap<String, AlertSnapshot>,
    history: Vec<Transition>,
    notifications: Vec<Owed>,
    next_id: u64,
    /// Unhealthy events waiting for their `ignore-flap` `min-age`, by
    /// fingerprint.
    #[serde(default)]
    held: BTreeMap<String, CheckedEvent>,
    /// Alert groups and where each of their receivers stands.
    #[serde(default)]
    groups: Groups,
}

/// Everything the book holds, behind one lock held only for in-memory work.
#[derive(Default)]
struct Inner {
    file: BookFile,
    /// Bumped on every change; `saved` is the version last on disk.
    version: u64,
    saved: u64,
    /// History rows are counted from the first ever: `drained` have been
    /// stored and left the outbox, rows before `handed` have been handed
    /// out, rows before `saved_history_end` are on disk.
    drained: u64,
    handed: u64,
    saved_history_end: u64,
    /// Notifications with ids up to this are on disk.
    saved_next_id: u64,
    /// The suppressions' generation and the time of the last
    /// [`resweep`](AlertBook::resweep).
    swept: Option<(u64, i64)>,
    /// Notifications handed out, so none is handed out twice.
    dispatched: std::collections::HashSet<u64>,
}

/// The alert book: state of every instance, and its outbox.
#[derive(Clone)]
pub struct AlertBook {
    inner: Arc<Mutex<Inner>>,
    path: Option<PathBuf>,
    save_lock: Arc<tokio::sync::Mutex<()>>,
    suppressions: Option<SuppressionBook>,
    /// Grouping of rules and events that say nothing of their own.
    grouping: Arc<Grouping>,
}

/// What an evaluation changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub transitions: usize,
}

/// How an alert's receivers are chosen when it fires.
pub type Router<'a> = &'a dyn Fn(&RuleDef, &BTreeMap<String, String>) -> Vec<String>;

/// Notifications the book owes and is allowed to send (on disk).
pub struct Due {
    pub history: Vec<Transition>,
    pub notifications: Vec<Owed>,
}

impl AlertBook {
    /// Opens the book in `dir` (created if missing); `None` keeps it in
    /// memory only (tests, `weir rules test`).
    pub fn open(dir: Option<&Path>) -> Result<Self> {
        let path = dir.map(|d| d.join("alerts.json"));
        let mut file = BookFile::default();
        if let Some(path) = &path {
            let dir = dir.unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            if let Some(read) = read_state(path, "move it away to start with no alert state")? {
                file = read;
            }
        }
        // What was read is on disk: all of it may be acted on.
        let saved_history_end = file.history.len() as u64;
        let saved_next_id = file.next_id;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                file,
                saved_history_end,
                saved_next_id,
                ..Inner::default()
            })),
            path,
            save_lock: Arc::new(tokio::sync::Mutex::new(())),
            suppressions: None,
            grouping: Arc::new(Grouping::immediate()),
        })
    }

    /// Groups alerts by `grouping` unless their rule or event says
    /// otherwise. (Without this, each alert is told alone and at once.)
    pub fn with_grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = Arc::new(grouping);
        self
    }

    /// Notifications of alerts these suppressions match are withheld (and
    /// recorded).
    pub fn with_suppressions(mut self, suppressions: SuppressionBook) -> Self {
        self.suppressions = Some(suppressions);
        self
    }

    /// A change to `file` (the locked book's), with the book's
    /// suppressions and grouping.
    fn changes<'a>(&'a self, file: &'a mut BookFile) -> Changes<'a> {
        Changes {
            file,
            applied: Applied::default(),
            suppressions: self.suppressions.as_ref(),
            grouping: &self.grouping,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; use it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every alert instance, for `weir_alerts` and the API.
    pub fn alerts(&self) -> Vec<AlertSnapshot> {
        self.lock().file.alerts.values().cloned().collect()
    }

    /// Applies one evaluation of `rule`. With `complete`, instances the
    /// answer does not mention stopped failing; otherwise they are left
    /// alone (reports about some instances only).
    pub fn apply(
        &self,
        rule: &RuleDef,
        observations: &[Observation],
        complete: bool,
        now_ns: i64,
        route: Router<'_>,
    ) -> Applied {
        let mut inner = self.lock();
        let Inner { file, version, .. } = &mut *inner;
        let mut changes = self.changes(file);
        let mut seen = std::collections::HashSet::new();
        for obs in observations {
            let mut labels = obs.labels.clone();
            let context_labels = labels.clone();
            for (name, template) in &rule.labels {
                let cx = Context {
                    rule: &rule.name,
                    priority: rule.priority.as_str(),
                    labels: &context_labels,
                    value: obs.value,
                };
                labels.insert(name.clone(), template.render(&cx));
            }
            let fp = fingerprint(&labels);
            seen.insert(fp.clone());
            if obs.firing {
                changes.failing(rule, fp, labels, obs, now_ns, route);
            } else {
                changes.passing(rule, &fp, obs.value, now_ns);
            }
        }
        if complete {
            let absent: Vec<String> = changes
                .file
                .alerts
                .values()
                .filter(|a| a.rule == rule.name && !seen.contains(&a.fingerprint))
                .map(|a| a.fingerprint.clone())
                .collect();
            for fp in absent {
                changes.passing(rule, &fp, None, now_ns);
            }
        }
        // Resolved alerts leave the current view after a while.
        let keep_after = now_ns - KEEP_RESOLVED.as_nanos() as i64;
        changes
            .file
            .alerts
            .retain(|_, a| a.state != AlertState::Resolved || a.since_ns > keep_after);
        let applied = changes.applied;
        // Counters change on every evaluation, so every evaluation is saved.
        *version += 1;
        applied
    }

    /// Resolves the alerts of rules no longer configured (their resolution
    /// is still sent), and drops their pending ones.
    pub fn retire(&self, is_configured: &dyn Fn(&AlertSnapshot) -> bool, now_ns: i64) -> usize {
        let mut inner = self.lock();
        let Inner { file, version, .. } = &mut *inner;
        let gone: Vec<(String, AlertState)> = file
            .alerts
            .values()
            .filter(|a| a.source == AlertSource::Rule && !is_configured(a))
            .map(|a| (a.fingerprint.clone(), a.state))
            .collect();
        let mut changes = self.changes(file);
        for (fp, state) in &gone {
            match state {
                AlertState::Firing => changes.transition(fp, AlertState::Resolved, now_ns),
                AlertState::Pending | AlertState::Inactive => {
                    changes.transition(fp, AlertState::Inactive, now_ns);
                    changes.file.alerts.remove(fp);
                }
                AlertState::Resolved => {}
            }
        }
        *version += 1;
        changes.applied.transitions
    }

    /// Looks at firing alerts again when the suppressions changed or one of
    /// them started or ended since the last look: records which hide each
    /// alert now, and owes the firing notification of an alert whose
    /// suppressions all ended while it still fires (as Alertmanager sends
    /// an alert once its silence expires). Returns the notifications owed.
    pub fn resweep(&self, now_ns: i64) -> usize {
        let Some(suppressions) = &self.suppressions else {
            return 0;
        };
        let generation = suppressions.generation();
        let mut inner = self.lock();
        let Inner {
            file,
            version,
            swept,
            ..
        } = &mut *inner;
        let due = match *swept {
            None => true,
            Some((seen, at)) => seen != generation || suppressions.boundary_between(at, now_ns),
        };
        *swept = Some((generation, now_ns));
        if !due {
            return 0;
        }
        let mut changes = self.changes(file);
        let firing: Vec<String> = changes
            .file
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| a.fingerprint.clone())
            .collect();
        let mut owed = 0;
        for fp in firing {
            let Some(alert) = changes.file.alerts.get_mut(&fp) else {
                continue;
            };
            let now_by = if alert.suppressible {
                suppressions.suppressing(&alert.labels, now_ns)
            } else {
                Vec::new()
            };
            if now_by != alert.suppressed_by {
                alert.suppressed_by = now_by;
                *version += 1;
            }
            if !alert.firing_notified && alert.suppressed_by.is_empty() {
                alert.firing_notified = true;
                let snapshot = alert.clone();
                owed += snapshot.receivers.len();
                changes.owe(&snapshot, AlertState::Firing, now_ns);
                *version += 1;
            }
        }
        owed
    }

    /// Runs events through the static pre-filters into the state machine
    /// (see [`crate::events`]); says what became of each.
    pub fn apply_events(
        &self,
        events: &[CheckedEvent],
        retired: &RetiredHosts,
        now_ns: i64,
        route: Router<'_>,
    ) -> (Vec<Outcome>, Applied) {
        let mut inner = self.lock();
        let Inner { file, version, .. } = &mut *inner;
        let mut changes = self.changes(file);
        let outcomes = events
            .iter()
            .map(|event| changes.event(event, retired, now_ns, route))
            .collect();
        // Even a dropped event may renew an alert's expiry.
        *version += 1;
        (outcomes, changes.applied)
    }

    /// Fires held events whose `min-age` has passed and resolves event
    /// alerts whose expiry passed with no renewal. Returns the transitions.
    pub fn events_due(&self, now_ns: i64, route: Router<'_>) -> usize {
        let mut inner = self.lock();
        let Inner { file, version, .. } = &mut *inner;
        let ripe: Vec<String> = file
            .held
            .iter()
            .filter(|(_, e)| e.since_ns + e.min_age.unwrap_or_default().as_nanos() as i64 <= now_ns)
            .map(|(fp, _)| fp.clone())
            .collect();
        let expired: Vec<String> = file
            .alerts
            .values()
            .filter(|a| {
                a.source == AlertSource::Event
                    && a.state == AlertState::Firing
                    && a.expires_ns.is_some_and(|at| at <= now_ns)
            })
            .map(|a| a.fingerprint.clone())
            .collect();
        if ripe.is_empty() && expired.is_empty() {
            return 0;
        }
        let mut changes = self.changes(file);
        for fp in ripe {
            let Some(event) = changes.file.held.remove(&fp) else {
                continue;
            };
            // A held event that stopped holding (its expiry passed) fires no more.
            if event.expires_ns.is_none_or(|at| at > now_ns) {
                changes.fire(&event, fp, now_ns, route);
            }
        }
        for fp in expired {
            changes.transition(&fp, AlertState::Resolved, now_ns);
        }
        *version += 1;
        changes.applied.transitions
    }

    /// Decides what each due group tells its receivers (see
    /// [`crate::groups`]); the notifications go to the outbox. Returns how
    /// many.
    pub fn flush_groups(&self, now_ns: i64) -> usize {
        let mut inner = self.lock();
        let Inner { file, version, .. } = &mut *inner;
        if file.groups.next_due().is_none_or(|due| due > now_ns) {
            return 0;
        }
        let tellings = file.groups.due(now_ns);
        *version += 1;
        for telling in &tellings {
            let alerts = telling
                .alerts
                .iter()
                .filter_map(|(fp, state)| {
                    let mut alert = file.alerts.get(fp)?.clone();
                    alert.state = *state;
                    Some(alert)
                })
                .collect();
            file.next_id += 1;
            file.notifications.push(Owed {
                id: file.next_id,
                receiver: telling.receiver.clone(),
                group_id: telling.group_id.clone(),
                group_key: telling.key.clone(),
                seq: telling.seq,
                alerts,
                attempts: 0,
                first_attempt_ns: None,
            });
        }
        tellings.len()
    }

    /// Every alert group, for `weir_alert_groups` and the status page.
    pub fn groups(&self) -> Vec<Group> {
        self.lock().file.groups.groups().cloned().collect()
    }

    /// Events waiting for their `min-age`.
    pub fn held(&self) -> usize {
        self.lock().file.held.len()
    }

    /// Writes the book to disk if it changed since the last save. Returns
    /// once what was in memory when called is durable.
    pub async fn save(&self) -> Result<()> {
        let _one_at_a_time = self.save_lock.lock().await;
        let (bytes, version, history_end, next_id) = {
            let inner = self.lock();
            if inner.version == inner.saved {
                return Ok(());
            }
            let bytes = serde_json::to_vec(&inner.file)
                .map_err(|e| Error::Internal(format!("encoding the alert book: {e}")))?;
            let history_end = inner.drained + inner.file.history.len() as u64;
            (bytes, inner.version, history_end, inner.file.next_id)
        };
        if let Some(path) = self.path.clone() {
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                .await
                .map_err(|e| Error::Internal(format!("saving the alert book: {e}")))??;
        }
        let mut inner = self.lock();
        inner.saved = inner.saved.max(version);
        inner.saved_history_end = inner.saved_history_end.max(history_end);
        inner.saved_next_id = inner.saved_next_id.max(next_id);
        Ok(())
    }

    /// Outbox items that are on disk and not yet handed out; marks them
    /// handed out. Items added since the last [`save`](Self::save) wait
    /// for the next one.
    pub fn take_due(&self) -> Due {
        let mut inner = self.lock();
        let Inner {
            file,
            drained,
            handed,
            saved_history_end,
            saved_next_id,
            dispatched,
            ..
        } = &mut *inner;
        let start = (*handed).max(*drained);
        let end = (*saved_history_end).max(start);
        let history = file.history[(start - *drained) as usize..(end - *drained) as usize].to_vec();
        *handed = end;
        let notifications = file
            .notifications
            .iter()
            .filter(|n| n.id <= *saved_next_id && dispatched.insert(n.id))
            .cloned()
            .collect();
        Due {
            history,
            notifications,
        }
    }

    /// The oldest `count` history rows are stored.
    pub fn history_stored(&self, count: usize) {
        let mut inner = self.lock();
        let count = count.min(inner.file.history.len());
        inner.file.history.drain(..count);
        inner.drained += count as u64;
        inner.version += 1;
    }

    /// History rows handed out could not be stored; hand them out again.
    pub fn history_failed(&self) {
        let mut inner = self.lock();
        inner.handed = inner.drained;
    }

    /// Records an attempt at a notification (so a restart continues the
    /// count); returns false if it is no longer owed.
    pub fn attempted(&self, id: u64, now_ns: i64) -> bool {
        let mut inner = self.lock();
        let Some(owed) = inner.file.notifications.iter_mut().find(|n| n.id == id) else {
            return false;
        };
        owed.attempts += 1;
        owed.first_attempt_ns.get_or_insert(now_ns);
        inner.version += 1;
        true
    }

    /// A notification is done (delivered, or given up): it leaves the outbox.
    pub fn notification_done(&self, id: u64) {
        let mut inner = self.lock();
        inner.file.notifications.retain(|n| n.id != id);
        inner.dispatched.remove(&id);
        inner.version += 1;
    }

    /// Notifications owed, for the metrics.
    pub fn owed(&self) -> usize {
        self.lock().file.notifications.len()
    }
}

struct Changes<'a> {
    file: &'a mut BookFile,
    applied: Applied,
    suppressions: Option<&'a SuppressionBook>,
    grouping: &'a Grouping,
}

impl Changes<'_> {
    fn failing(
        &mut self,
        rule: &RuleDef,
        fp: String,
        labels: BTreeMap<String, String>,
        obs: &Observation,
        now_ns: i64,
        route: Router<'_>,
    ) {
        let alert = self
            .file
            .alerts
            .entry(fp.clone())
            .or_insert_with(|| new_alert(rule, &fp, &labels, now_ns));
        if alert.state == AlertState::Resolved {
            // A new episode of the same instance.
            alert.state = AlertState::Inactive;
            alert.consecutive = 0;
            alert.active_since_ns = now_ns;
        }
        // A check counts once, however many evaluations report it.
        let new_check = match (obs.checked_at_ns, alert.last_checked_at_ns) {
            (Some(at), Some(last)) => at > last,
            _ => true,
        };
        if new_check {
            alert.consecutive = alert.consecutive.saturating_add(1);
        }
        if obs.checked_at_ns.is_some() {
            alert.last_checked_at_ns = alert.last_checked_at_ns.max(obs.checked_at_ns);
        }
        alert.last_value = obs.value;
        alert.last_evaluation_ns = now_ns;
        alert.last_failing_ns = now_ns;
        let cx = Context {
            rule: &rule.name,
            priority: rule.priority.as_str(),
            labels: &labels,
            value: obs.value,
        };
        alert.summary = rule.summary.render(&cx);
        alert.description = rule.description.render(&cx);
        alert.runbook = rule.runbook.render(&cx);
        let long_enough = now_ns - alert.active_since_ns >= rule.for_.as_nanos() as i64;
        let often_enough = alert.consecutive >= rule.consecutive;
        let to = match alert.state {
            AlertState::Firing => return,
            _ if long_enough && often_enough => AlertState::Firing,
            AlertState::Pending => return,
            _ => AlertState::Pending,
        };
        if to == AlertState::Firing {
            alert.receivers = route(rule, &alert.labels);
            alert.grouping = Some(rule.grouping.over(self.grouping));
            alert.collect = rule.collect.clone();
        }
        self.transition(&fp, to, now_ns);
    }

    fn passing(&mut self, rule: &RuleDef, fp: &str, value: Option<f64>, now_ns: i64) {
        let Some(alert) = self.file.alerts.get_mut(fp) else {
            return;
        };
        alert.last_evaluation_ns = now_ns;
        if value.is_some() {
            alert.last_value = value;
        }
        match alert.state {
            AlertState::Pending | AlertState::Inactive => {
                // Never fired: it leaves quietly (the history keeps it).
                self.transition(fp, AlertState::Inactive, now_ns);
                self.file.alerts.remove(fp);
            }
            AlertState::Firing => {
                alert.consecutive = 0;
                let quiet_for = now_ns - alert.last_failing_ns;
                if quiet_for >= rule.keep_firing_for.as_nanos() as i64 {
                    self.transition(fp, AlertState::Resolved, now_ns);
                }
            }
            AlertState::Resolved => {}
        }
    }

    /// One event through the static pre-filters and, if it changes
    /// anything, the state machine.
    fn event(
        &mut self,
        event: &CheckedEvent,
        retired: &RetiredHosts,
        now_ns: i64,
        route: Router<'_>,
    ) -> Outcome {
        if retired.retires(&event.labels) {
            return Outcome::Dropped(DropReason::Retired);
        }
        let fp = fingerprint(&event.labels);
        let alert = self.file.alerts.get_mut(&fp);
        let active = alert
            .as_ref()
            .is_some_and(|a| matches!(a.state, AlertState::Pending | AlertState::Firing));
        match event.status {
            EventStatus::Unhealthy if active => {
                if let Some(alert) = alert {
                    alert.expires_ns = event.expires_ns;
                    alert.last_evaluation_ns = now_ns;
                    alert.last_failing_ns = now_ns;
                }
                Outcome::Dropped(DropReason::Unchanged)
            }
            EventStatus::Unhealthy => {
                if let Some(held) = self.file.held.get_mut(&fp) {
                    held.expires_ns = event.expires_ns;
                    return Outcome::Dropped(DropReason::Unchanged);
                }
                if let Some(age) = event.min_age
                    && event.since_ns + age.as_nanos() as i64 > now_ns
                {
                    self.file.held.insert(fp, event.clone());
                    return Outcome::Held;
                }
                self.fire(event, fp, now_ns, route);
                Outcome::Passed
            }
            EventStatus::Healthy => {
                if self.file.held.remove(&fp).is_some() {
                    return Outcome::Dropped(DropReason::Flap);
                }
                if !active {
                    return Outcome::Dropped(DropReason::Unchanged);
                }
                self.passing(&event.rule(), &fp, None, now_ns);
                Outcome::Passed
            }
        }
    }

    fn fire(&mut self, event: &CheckedEvent, fp: String, now_ns: i64, route: Router<'_>) {
        let observation = Observation {
            labels: event.labels.clone(),
            firing: true,
            value: None,
            checked_at_ns: None,
        };
        let rule = event.rule();
        let alert = self
            .file
            .alerts
            .entry(fp.clone())
            .or_insert_with(|| new_alert(&rule, &fp, &event.labels, now_ns));
        // Only called for an instance that is not active: a new episode,
        // which began when the check saw it, not when Weir heard of it.
        alert.state = AlertState::Inactive;
        alert.consecutive = 0;
        alert.active_since_ns = event.since_ns;
        alert.source = AlertSource::Event;
        alert.suppressible = event.suppressible;
        alert.expires_ns = event.expires_ns;
        self.failing(&rule, fp, event.labels.clone(), &observation, now_ns, route);
    }

    /// Moves an alert to `to`, and records what that owes.
    fn transition(&mut self, fp: &str, to: AlertState, now_ns: i64) {
        let Some(alert) = self.file.alerts.get_mut(fp) else {
            return;
        };
        let from = alert.state;
        if from == to {
            return;
        }
        alert.state = to;
        alert.since_ns = now_ns;
        alert.transitions += 1;
        self.applied.transitions += 1;
        // Only firing and its resolution reach people — unless suppressed:
        // a firing is withheld while a suppression matches, and the
        // resolution of a firing never told is withheld with it.
        let notify =
            to == AlertState::Firing || (to == AlertState::Resolved && from == AlertState::Firing);
        let mut withheld_by = Vec::new();
        if to == AlertState::Firing {
            alert.suppressed_by = self
                .suppressions
                .filter(|_| alert.suppressible)
                .map(|s| s.suppressing(&alert.labels, now_ns))
                .unwrap_or_default();
            alert.firing_notified = alert.suppressed_by.is_empty();
            withheld_by.clone_from(&alert.suppressed_by);
        } else if notify && !alert.firing_notified {
            // Hidden from firing to resolution: its receivers never heard of it.
            withheld_by = std::mem::take(&mut alert.suppressed_by);
        }
        if to != AlertState::Firing {
            alert.suppressed_by.clear();
        }
        let withheld = notify && !alert.firing_notified;
        let snapshot = alert.clone();
        self.file.history.push(Transition {
            time_ns: now_ns,
            fingerprint: snapshot.fingerprint.clone(),
            rule: snapshot.rule.clone(),
            priority: snapshot.priority,
            labels: snapshot.labels.clone(),
            from,
            to,
            seq: snapshot.transitions,
            value: snapshot.last_value,
            summary: snapshot.summary.clone(),
            suppressed_by: withheld_by,
        });
        if notify && !withheld {
            self.owe(&snapshot, to, now_ns);
        }
    }

    /// `alert`'s move to `to` is to be told: it joins its group, whose
    /// receivers are told on the group's schedule.
    fn owe(&mut self, alert: &AlertSnapshot, to: AlertState, now_ns: i64) {
        if alert.receivers.is_empty() {
            return;
        }
        let grouping = alert.grouping.as_ref().unwrap_or(self.grouping);
        self.file.groups.arrive(
            grouping,
            &alert.fingerprint,
            &alert.labels,
            to,
            &alert.receivers,
            now_ns,
        );
    }
}

/// A new, inactive instance of `rule`.
fn new_alert(
    rule: &RuleDef,
    fp: &str,
    labels: &BTreeMap<String, String>,
    now_ns: i64,
) -> AlertSnapshot {
    AlertSnapshot {
        fingerprint: fp.to_string(),
        rule: rule.name.clone(),
        priority: rule.priority,
        labels: labels.clone(),
        state: AlertState::Inactive,
        since_ns: now_ns,
        active_since_ns: now_ns,
        last_value: None,
        last_evaluation_ns: now_ns,
        last_failing_ns: now_ns,
        consecutive: 0,
        last_checked_at_ns: None,
        summary: String::new(),
        description: String::new(),
        runbook: String::new(),
        transitions: 0,
        receivers: Vec::new(),
        suppressed_by: Vec::new(),
        firing_notified: true,
        source: AlertSource::Rule,
        suppressible: true,
        expires_ns: None,
        grouping: None,
        collect: Collectors::default(),
    }
}

/// Reads a state file written by [`write_atomic`]; `None` if there is none
/// yet. A damaged one is an error that says what to do (`remedy`).
pub(crate) fn read_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    remedy: &str,
) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{} is damaged ({e}); {remedy}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            what: format!("reading {}", path.display()),
            source,
        }),
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |what: &str, source| Error::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replacing", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
