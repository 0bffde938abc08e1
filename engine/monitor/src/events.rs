//! Events: checks that run elsewhere (Nagios, cron jobs, CI, other
//! monitors, a Prometheus server) report `healthy` or `unhealthy`, and
//! their reports become alerts in the same state machine as rule alerts.
//!
//! An event names its `monitor` and `status`; everything else has a
//! default. Its `context` (service, region, instance …) becomes the
//! alert's labels, beside `alertname` (the monitor) and the routing labels
//! `channel` and `ticket-queue`: one alert instance per monitor and context.
//!
//! Static pre-filtering happens here, before anything reaches the alert
//! book, and every event is told what became of it:
//!
//! | outcome | why |
//! |---|---|
//! | `passed` | it changed the instance's state (`healthy → unhealthy` fires, `unhealthy → healthy` resolves) |
//! | `held` | unhealthy for less than its `ignore-flap` `min-age`: it fires when it is that old, unless a healthy event comes first |
//! | `dropped`, `unchanged` | the instance already is in that state |
//! | `dropped`, `flap` | healthy again before `min-age`: the held event and this one cancel |
//! | `dropped`, `retired` | its `host`, `hostname` or `instance` is a retired host |
//! | `dropped`, `filtered` | a filter of the `weir_events` pipeline dropped it (see `pipeline`) |
//!
//! Every event is a row of `weir_events` with its outcome, and each drop
//! reason is counted in `/metrics` (`weir_events_dropped_total{reason}`).

pub mod adapted;
pub mod alertmanager;
pub mod pipeline;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::{CollectorSection, Collectors};
use crate::groups::GroupingOverrides;
use crate::rule::{ALERTNAME, Priority, RuleDef};
use crate::template::Template;
use crate::{Result, config_error, parse_duration};

/// Most events in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// Most context entries of one event (Prometheus' own default label limit
/// is unlimited; Alertmanager users rarely pass 30).
pub const MAX_CONTEXT_ENTRIES: usize = 64;
const MAX_NAME_BYTES: usize = 128;
pub(crate) const MAX_VALUE_BYTES: usize = 1024;
const MAX_TEXT_BYTES: usize = 8192;
/// Most time a `since` may lie ahead of the server's clock (clock skew).
const MAX_SINCE_AHEAD: Duration = Duration::from_secs(300);
/// Longest `min-age` of `ignore-flap`.
const MAX_MIN_AGE: Duration = Duration::from_secs(24 * 3600);
/// Labels that route an alert (see `notify::route`).
const CHANNEL: &str = "channel";
const TICKET_QUEUE: &str = "ticket-queue";
/// Context keys naming the host an event is about, checked against the
/// retired hosts.
const HOST_KEYS: [&str; 3] = ["host", "hostname", "instance"];

/// A tag or string column as strings; `None` for any other type.
pub(crate) fn text_values(column: &dyn arrow::array::Array) -> Option<arrow::array::StringArray> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match column.data_type() {
        DataType::Utf8 | DataType::Dictionary(_, _) => {
            arrow::compute::cast(column, &DataType::Utf8)
                .ok()
                .map(|c| c.as_string::<i32>().clone())
        }
        _ => None,
    }
}

/// One event as the API takes it (JSON). Multi-word keys are accepted
/// with `-` or `_`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    pub monitor: String,
    pub status: String,
    /// When the status began (RFC 3339); default: now.
    pub since: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// `high` or `low` (default).
    pub priority: Option<String>,
    pub channel: Option<String>,
    #[serde(rename = "ticket-queue", alias = "ticket_queue")]
    pub ticket_queue: Option<String>,
    /// Which filters apply: `"alert-suppression"` (suppressions may hide
    /// it) and `{"type": "ignore-flap", "min-age": "2m"}`. Default:
    /// `["alert-suppression"]`.
    pub filters: Option<Vec<serde_json::Value>>,
    /// Templated: `${alert.monitor}`, `${alert.priority}`,
    /// `${context.NAME}`.
    pub title: Option<String>,
    pub description: Option<String>,
    pub runbook: Option<String>,
    /// When an unhealthy status stops holding unless renewed (RFC 3339),
    /// as Alertmanager's `endsAt`.
    #[serde(rename = "ends-at", alias = "ends_at")]
    pub ends_at: Option<String>,
    /// Labels that key its alert's group: names, `${alert.monitor}` or
    /// `${context.NAME}` (`["..."]`: every label). Default: the configured
    /// `group_by`.
    #[serde(rename = "group-by", alias = "group_by")]
    pub group_by: Option<Vec<String>>,
    /// Context collectors for its notifications (see `context`).
    pub collect: Option<Vec<CollectorSection>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Healthy,
    Unhealthy,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Healthy => "healthy",
            EventStatus::Unhealthy => "unhealthy",
        }
    }
}

/// Where events came from (a column of `weir_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Api,
    Grpc,
    Alertmanager,
    /// A source's adapter plugin (`POST /api/v1/events/{source}`).
    Adapter,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Api => "api",
            EventSource::Grpc => "grpc",
            EventSource::Alertmanager => "alertmanager",
            EventSource::Adapter => "adapter",
        }
    }
}

/// An event that passed its checks. Kept in the alert book while held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedEvent {
    pub monitor: String,
    pub status: EventStatus,
    pub since_ns: i64,
    pub message: String,
    /// The alert's labels: the context, `alertname`, and routing labels.
    pub labels: BTreeMap<String, String>,
    pub priority: Priority,
    pub title: String,
    pub description: String,
    pub runbook: String,
    pub min_age: Option<Duration>,
    /// Suppressions may hide it (the `alert-suppression` filter).
    pub suppressible: bool,
    pub expires_ns: Option<i64>,
    #[serde(default)]
    pub grouping: GroupingOverrides,
    #[serde(default, skip_serializing_if = "Collectors::is_empty")]
    pub collect: Collectors,
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Held,
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DropReason {
    Unchanged,
    Flap,
    Retired,
    /// A filter of the `weir_events` pipeline dropped it.
    Filtered,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::Unchanged,
        DropReason::Flap,
        DropReason::Retired,
        DropReason::Filtered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Unchanged => "unchanged",
            DropReason::Flap => "flap",
            DropReason::Retired => "retired",
            DropReason::Filtered => "filtered",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Held => "held",
            Outcome::Dropped(_) => "dropped",
        }
    }

    pub fn drop_reason(self) -> Option<DropReason> {
        match self {
            Outcome::Dropped(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Counts of events by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct EventMetrics {
    received: AtomicU64,
    passed: AtomicU64,
    held: AtomicU64,
    dropped: [AtomicU64; 4],
}

impl EventMetrics {
    pub fn record(&self, outcome: Outcome) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Passed => &self.passed,
            Outcome::Held => &self.held,
            Outcome::Dropped(reason) => &self.dropped[reason as usize],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn passed(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
}

/// Checks an event and gives it its defaults; `what` names it in errors
/// (`events[3]`).
pub fn check(what: &str, body: EventBody, now_ns: i64) -> Result<CheckedEvent> {
    let key = |k: &str| format!("{what}.{k}");
    check_text(&key("monitor"), &body.monitor, 1, MAX_NAME_BYTES)?;
    let status = match body.status.as_str() {
        "healthy" => EventStatus::Healthy,
        "unhealthy" => EventStatus::Unhealthy,
        other => {
            return Err(config_error(
                key("status"),
                format!("{other:?} is not \"healthy\" or \"unhealthy\""),
            ));
        }
    };
    let since_ns = match &body.since {
        Some(text) => {
            let at = parse_time(&key("since"), text)?;
            if at > now_ns + MAX_SINCE_AHEAD.as_nanos() as i64 {
                return Err(config_error(
                    key("since"),
                    format!("{text} is more than 5 minutes ahead of the server's clock"),
                ));
            }
            at.min(now_ns)
        }
        None => now_ns,
    };
    let expires_ns = body
        .ends_at
        .as_deref()
        .map(|text| parse_time(&key("ends-at"), text))
        .transpose()?;
    check_text(&key("message"), &body.message, 0, MAX_TEXT_BYTES)?;
    if body.context.len() > MAX_CONTEXT_ENTRIES {
        return Err(config_error(
            key("context"),
            format!(
                "{} entries, more than the {MAX_CONTEXT_ENTRIES} an event may have",
                body.context.len()
            ),
        ));
    }
    let mut labels = BTreeMap::new();
    for (name, value) in body.context {
        let what = key(&format!("context.{name}"));
        check_label_name(&what, &name)?;
        if name == ALERTNAME {
            return Err(config_error(
                what,
                "is reserved: an event's alertname is its monitor",
            ));
        }
        check_text(&what, &value, 0, MAX_VALUE_BYTES)?;
        labels.insert(name, value);
    }
    labels.insert(ALERTNAME.to_string(), body.monitor.clone());
    for (name, value) in [(CHANNEL, body.channel), (TICKET_QUEUE, body.ticket_queue)] {
        let Some(value) = value else { continue };
        check_text(&key(name), &value, 1, MAX_NAME_BYTES)?;
        labels.insert(name.to_string(), value);
    }
    let priority = match &body.priority {
        Some(text) => Priority::parse(&key("priority"), text)?,
        None => Priority::Low,
    };
    let (min_age, suppressible) = parse_filters(&key("filters"), body.filters.as_deref())?;
    // Templates are checked now, against the labels the alert will have:
    // a typo is this request's error, not an empty string in a page.
    let known: BTreeSet<String> = labels.keys().cloned().collect();
    let template = |k: &str, text: Option<String>| -> Result<String> {
        let text = text.unwrap_or_default();
        check_text(&key(k), &text, 0, MAX_TEXT_BYTES)?;
        Template::parse(&key(k), &text, Some(&known))?;
        Ok(text)
    };
    if body
        .group_by
        .as_ref()
        .is_some_and(|by| by.len() > MAX_CONTEXT_ENTRIES)
    {
        return Err(config_error(
            key("group-by"),
            "more labels than an event may have",
        ));
    }
    let grouping =
        GroupingOverrides::parse(what, body.group_by.as_deref(), None, None, None, None)?;
    let title = template("title", body.title)?;
    let description = template("description", body.description)?;
    let runbook = template("runbook", body.runbook)?;
    let collect = Collectors::parse(
        &key("collect"),
        body.collect.as_deref().unwrap_or_default(),
        Some(&known),
    )?;
    Ok(CheckedEvent {
        monitor: body.monitor,
        status,
        since_ns,
        message: body.message,
        labels,
        priority,
        title,
        description,
        runbook,
        min_age,
        suppressible,
        expires_ns,
        grouping,
        collect,
    })
}

/// `filters`: returns `ignore-flap`'s `min-age` and whether
/// `alert-suppression` applies.
fn parse_filters(
    what: &str,
    filters: Option<&[serde_json::Value]>,
) -> Result<(Option<Duration>, bool)> {
    let Some(filters) = filters else {
        return Ok((None, true));
    };
    let mut min_age = None;
    let mut suppressible = false;
    for (i, filter) in filters.iter().enumerate() {
        let what = format!("{what}[{i}]");
        let (kind, options) = match filter {
            serde_json::Value::String(name) => (name.as_str(), None),
            serde_json::Value::Object(object) => match object.get("type") {
                Some(serde_json::Value::String(name)) => (name.as_str(), Some(object)),
                _ => return Err(config_error(what, "an object filter needs a \"type\"")),
            },
            _ => {
                return Err(config_error(
                    what,
                    "a filter is a name or an object with a \"type\"",
                ));
            }
        };
        let option = |name: &str| {
            options.and_then(|o| {
                o.get(name)
                    .or_else(|| o.get(name.replace('-', "_").as_str()))
            })
        };
        if let Some(o) = options
            && let Some(unknown) = o.keys().find(|k| {
                !matches!(
                    (kind, k.as_str()),
                    (_, "type") | ("ignore-flap", "min-age" | "min_age")
                )
            })
        {
            return Err(config_error(
                what,
                format!("{kind:?} takes no option {unknown:?}"),
            ));
        }
        match kind {
            "alert-suppression" => suppressible = true,
            "ignore-flap" => {
                let text = match option("min-age") {
                    Some(serde_json::Value::String(text)) => text,
                    _ => {
                        return Err(config_error(
                            what,
                            "ignore-flap needs \"min-age\", a duration like \"2m\"",
                        ));
                    }
                };
                let age = parse_duration(&format!("{what}.min-age"), text)?;
                if age.is_zero() || age > MAX_MIN_AGE {
                    return Err(config_error(
                        format!("{what}.min-age"),
                        "must be more than 0 and at most 24h",
                    ));
                }
                min_age = Some(age);
            }
            other => {
                return Err(config_error(
                    what,
                    format!("{other:?} is not a filter: \"ignore-flap\" or \"alert-suppression\""),
                ));
            }
        }
    }
    Ok((min_age, suppressible))
}

fn parse_time(what: &str, text: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            config_error(
                what,
                format!("{text:?} is not an RFC 3339 time like \"2026-12-01T10:00:00Z\""),
            )
        })
}

fn check_text(what: &str, text: &str, min: usize, max: usize) -> Result<()> {
    if text.len() < min {
        return Err(config_error(what, "must not be empty"));
    }
    if text.len() > max {
        return Err(config_error(
            what,
            format!("{} bytes, more than {max}", text.len()),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(config_error(what, "holds control characters"));
    }
    Ok(())
}

/// Label names as Prometheus and Alertmanager allow them, so every
/// context key can be matched by a suppression and `amtool`.
pub(crate) fn check_label_name(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(config_error(
            what,
            "a context key is letters, digits and _, not starting with a digit, at most 128 bytes",
        ))
    }
}

/// Hosts whose events are dropped (`[monitor] retired_hosts`). A Prometheus
/// `instance` such as `db-1:9100` is retired with its host `db-1`.
#[derive(Debug, Clone, Default)]
pub struct RetiredHosts(BTreeSet<String>);

impl RetiredHosts {
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Self {
        Self(hosts.into_iter().collect())
    }

    pub fn retires(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.0.is_empty() {
            return false;
        }
        HOST_KEYS
            .iter()
            .filter_map(|k| labels.get(*k))
            .any(|value| {
                self.0.contains(value)
                    || value.rsplit_once(':').is_some_and(|(host, port)| {
                        port.bytes().all(|b| b.is_ascii_digit()) && self.0.contains(host)
                    })
            })
    }
}

impl CheckedEvent {
    /// The alert rule an event's alerts follow: no `for`, one observation,
    /// the event's own priority and templates.
    pub fn rule(&self) -> RuleDef {
        let template = |text: &str| {
            // Checked when the event was accepted.
            Template::parse("event", text, None).unwrap_or_default()
        };
        let summary = if !self.title.is_empty() {
            self.title.clone()
        } else if self.message.is_empty() {
            format!("{} is unhealthy", escape(&self.monitor))
        } else {
            format!("{}: {}", escape(&self.monitor), escape(&self.message))
        };
        let description = if self.description.is_empty() {
            escape(&self.message)
        } else {
            self.description.clone()
        };
        RuleDef {
            name: self.monitor.clone(),
            query: String::new(),
            interval: Duration::ZERO,
            for_: Duration::ZERO,
            consecutive: 1,
            keep_firing_for: Duration::ZERO,
            priority: self.priority,
            summary: template(&summary),
            description: template(&description),
            runbook: template(&self.runbook),
            labels: BTreeMap::new(),
            receivers: None,
            grouping: self.grouping.clone(),
            collect: self.collect.clone(),
        }
    }
}

/// Text as a template that renders to itself.
pub fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn body(json: serde_json::Value) -> EventBody {
        serde_json::from_value(json).unwrap()
    }

    fn checked(json: serde_json::Value) -> Result<CheckedEvent> {
        check("events[0]", body(json), NOW)
    }

    #[test]
    fn defaults_need_only_monitor_and_status() {
        let e = checked(serde_json::json!({"monitor": "backup", "status": "unhealthy"})).unwrap();
        assert_eq!(e.since_ns, NOW);
        assert_eq!(e.priority, Priority::Low);
        assert!(e.suppressible);
        assert_eq!(e.min_age, None);
        assert_eq!(
            e.labels,
            BTreeMap::from([(ALERTNAME.to_string(), "backup".to_string())])
        );
        let rule = e.rule();
        let cx = crate::template::Context {
            rule: &rule.name,
            priority: "low",
            labels: &e.labels,
            value: None,
        };
        assert_eq!(rule.summary.render(&cx), "backup is unhealthy");
    }

    #[test]
    fn context_routing_filters_and_templates() {
        let e = checked(serde_json::json!({
            "monitor": "disk", "status": "unhealthy", "since": "2027-01-15T08:00:00Z",
            "message": "costs $5", "context": {"service": "db", "region": "eu"},
            "priority": "high", "channel": "ops-eu", "ticket_queue": "DB",
            "filters": [{"type": "ignore-flap", "min-age": "2m"}],
            "title": "${alert.monitor} full in ${context.region}",
        }))
        .unwrap();
        assert_eq!(e.since_ns, NOW.min(e.since_ns));
        assert_eq!(e.min_age, Some(Duration::from_secs(120)));
        assert!(!e.suppressible, "filters given without alert-suppression");
        assert_eq!(e.labels["channel"], "ops-eu");
        assert_eq!(e.labels["ticket-queue"], "DB");
        let rule = e.rule();
        let cx = crate::template::Context {
            rule: &rule.name,
            priority: "high",
            labels: &e.labels,
            value: None,
        };
        assert_eq!(rule.summary.render(&cx), "disk full in eu");
        assert_eq!(rule.description.render(&cx), "costs $5");
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let many: BTreeMap<String, String> = (0..=MAX_CONTEXT_ENTRIES)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let cases = [
            (
                serde_json::json!({"monitor": "", "status": "healthy"}),
                "events[0].monitor",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "down"}),
                "events[0].status",
            ),
            (
                serde_json::json!({"monitor": "m\u{7}", "status": "healthy"}),
                "control",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "since": "yesterday"}),
                "events[0].since",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "since": "2099-01-01T00:00:00Z"}),
                "ahead",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "context": {"alertname": "x"}}),
                "reserved",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "context": {"9lives": "x"}}),
                "context key",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "context": {"a-b": "x"}}),
                "context key",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "context": {"k": long}}),
                "more than 1024",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "context": many}),
                "more than the 64",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "priority": "urgent"}),
                "priority",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "filters": ["dedupe"]}),
                "not a filter",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "filters": [{"type": "ignore-flap"}]}),
                "min-age",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "filters": [{"type": "ignore-flap", "min-age": "0s"}]}),
                "more than 0",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "filters": [{"type": "alert-suppression", "min-age": "1m"}]}),
                "no option",
            ),
            (
                serde_json::json!({"monitor": "m", "status": "healthy", "title": "${context.regoin}"}),
                "unknown placeholder",
            ),
        ];
        for (json, expected) in cases {
            let err = checked(json.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
        // Context keys at the limit pass.
        let at_limit: BTreeMap<String, String> = (0..MAX_CONTEXT_ENTRIES)
            .map(|i| (format!("k{i}"), "v".repeat(MAX_VALUE_BYTES)))
            .collect();
        checked(serde_json::json!({"monitor": "m", "status": "healthy", "context": at_limit}))
            .unwrap();
        // Unknown keys are refused by the decoder.
        assert!(
            serde_json::from_value::<EventBody>(
                serde_json::json!({"monitor": "m", "status": "healthy", "severity": "x"})
            )
            .is_err()
        );
    }

    #[test]
    fn retired_hosts_match_host_and_instance_with_port() {
        let retired = RetiredHosts::new(["db-1".to_string()]);
        let labels = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(retired.retires(&labels("host", "db-1")));
        assert!(retired.retires(&labels("instance", "db-1:9100")));
        assert!(!retired.retires(&labels("instance", "db-10:9100")));
        assert!(!retired.retires(&labels("service", "db-1")));
        assert!(!RetiredHosts::default().retires(&labels("host", "db-1")));
    }
}
