//! Alertmanager's API v2 alerts, so a stock Prometheus (`alerting:
//! alertmanagers:` pointing at Weir) delivers its alerts as events, and
//! `amtool alert query` lists Weir's alerts.
//!
//! A posted alert is an event: `alertname` is the monitor, the other
//! labels its context, `startsAt` its `since`. It is unhealthy until its
//! `endsAt`; one whose `endsAt` has passed is the healthy event that
//! resolves it. Prometheus re-sends firing alerts every evaluation with an
//! `endsAt` a few intervals ahead, so an alert whose Prometheus goes away
//! resolves at its last `endsAt` — as in Alertmanager. An alert without
//! `endsAt` holds for Alertmanager's default `resolve_timeout`, 5 minutes.
//! The `severity` label picks the priority: `critical`, `page` or `high`
//! page (`high`); anything else is `low`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::EventBody;
use crate::alerts::{AlertSnapshot, AlertState};
use crate::rule::ALERTNAME;
use crate::suppress::wire::format_time;
use crate::{Result, config_error};

/// Alertmanager's default `resolve_timeout`.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(300);
const HIGH_SEVERITIES: [&str; 3] = ["critical", "page", "high"];

/// Alertmanager's `PostableAlert`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Kept by Alertmanager for its UI; Weir has none to link back to.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

impl PostableAlert {
    /// The event this alert is, as of `now_ns`; `what` names it in errors.
    pub fn into_event(mut self, what: &str, now_ns: i64) -> Result<EventBody> {
        let monitor = self
            .labels
            .remove(ALERTNAME)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| config_error(format!("{what}.labels"), "has no alertname"))?;
        // Go's zero time (`0001-01-01T00:00:00Z`) is how a Go client says
        // "not set".
        let set = |time: Option<String>| time.filter(|t| !t.starts_with("0001-01-01"));
        let starts_at = set(self.starts_at);
        let ends_at = set(self.ends_at);
        let ends_ns = ends_at
            .as_deref()
            .map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .ok_or_else(|| {
                        config_error(
                            format!("{what}.endsAt"),
                            format!("{text:?} is not an RFC 3339 time"),
                        )
                    })
            })
            .transpose()?;
        let resolved = ends_ns.is_some_and(|at| at <= now_ns);
        let ends_at = match (resolved, ends_at) {
            (true, _) => None,
            (false, Some(at)) => Some(at),
            (false, None) => Some(format_time(now_ns + RESOLVE_TIMEOUT.as_nanos() as i64)),
        };
        let priority = match self.labels.get("severity") {
            Some(s) if HIGH_SEVERITIES.contains(&s.to_ascii_lowercase().as_str()) => "high",
            _ => "low",
        };
        let annotation = |name: &str| {
            self.annotations
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| super::escape(v))
        };
        let title = annotation("summary");
        let description = annotation("description");
        let runbook = annotation("runbook_url");
        let message = self
            .annotations
            .get("message")
            .or_else(|| self.annotations.get("summary"))
            .cloned()
            .unwrap_or_default();
        Ok(EventBody {
            monitor,
            status: if resolved { "healthy" } else { "unhealthy" }.to_string(),
            // Prometheus' startsAt is when the alert began firing.
            since: starts_at,
            message,
            context: self.labels,
            priority: Some(priority.to_string()),
            title,
            description,
            runbook,
            ends_at,
            ..EventBody::default()
        })
    }
}

/// Filters of `GET /api/v2/alerts` (`active`, `silenced` and `inhibited`
/// default to true, as in Alertmanager).
#[derive(Debug, Clone)]
pub struct AlertFilter {
    pub active: bool,
    pub silenced: bool,
}

impl Default for AlertFilter {
    fn default() -> Self {
        Self {
            active: true,
            silenced: true,
        }
    }
}

/// Alertmanager's `GettableAlert` for a firing alert (pending alerts have
/// not reached Alertmanager in Prometheus either); `None` for others or
/// those `filter` leaves out.
pub fn gettable_alert(alert: &AlertSnapshot, filter: &AlertFilter) -> Option<serde_json::Value> {
    if alert.state != AlertState::Firing {
        return None;
    }
    let silenced = !alert.suppressed_by.is_empty();
    if (silenced && !filter.silenced) || (!silenced && !filter.active) {
        return None;
    }
    let mut annotations = serde_json::Map::new();
    for (name, value) in [
        ("summary", &alert.summary),
        ("description", &alert.description),
        ("runbook_url", &alert.runbook),
    ] {
        if !value.is_empty() {
            annotations.insert(name.into(), value.clone().into());
        }
    }
    let ends_ns = alert
        .expires_ns
        .unwrap_or(alert.last_evaluation_ns + RESOLVE_TIMEOUT.as_nanos() as i64);
    Some(serde_json::json!({
        "labels": alert.labels,
        "annotations": annotations,
        "startsAt": format_time(alert.active_since_ns),
        "endsAt": format_time(ends_ns),
        "updatedAt": format_time(alert.last_evaluation_ns),
        "fingerprint": alert.fingerprint,
        "receivers": alert.receivers.iter().map(|r| serde_json::json!({"name": r})).collect::<Vec<_>>(),
        "status": {
            "state": if silenced { "suppressed" } else { "active" },
            "silencedBy": alert.suppressed_by,
            "inhibitedBy": [],
        },
        "generatorURL": "",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn alert(json: serde_json::Value) -> PostableAlert {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_firing_prometheus_alert_is_an_unhealthy_event() {
        let event = alert(serde_json::json!({
            "labels": {"alertname": "HighLatency", "severity": "critical", "instance": "api:9100"},
            "annotations": {"summary": "p99 is $300ms", "runbook_url": "https://r/x"},
            "startsAt": "2027-01-15T07:59:00Z",
            "endsAt": "2027-01-15T08:04:00Z",
            "generatorURL": "http://prometheus:9090/graph",
        }))
        .into_event("alerts[0]", NOW)
        .unwrap();
        assert_eq!(event.monitor, "HighLatency");
        assert_eq!(event.status, "unhealthy");
        assert_eq!(event.priority.as_deref(), Some("high"));
        assert_eq!(event.context.get("instance").unwrap(), "api:9100");
        assert!(!event.context.contains_key(ALERTNAME));
        assert_eq!(event.title.as_deref(), Some("p99 is $$300ms"));
        assert_eq!(event.ends_at.as_deref(), Some("2027-01-15T08:04:00Z"));
        let checked = super::super::check("alerts[0]", event, NOW).unwrap();
        assert_eq!(checked.labels[ALERTNAME], "HighLatency");
    }

    #[test]
    fn ended_alerts_resolve_and_open_ones_hold_for_the_resolve_timeout() {
        let resolved = alert(serde_json::json!({
            "labels": {"alertname": "A"}, "endsAt": "2020-01-01T00:00:00Z",
        }))
        .into_event("a", NOW)
        .unwrap();
        assert_eq!(resolved.status, "healthy");
        assert_eq!(resolved.ends_at, None);
        let open = alert(serde_json::json!({
            "labels": {"alertname": "A"}, "endsAt": "0001-01-01T00:00:00Z",
        }))
        .into_event("a", NOW)
        .unwrap();
        assert_eq!(open.status, "unhealthy");
        assert_eq!(
            open.ends_at.as_deref(),
            Some(format_time(NOW + 300_000_000_000).as_str())
        );
        assert_eq!(open.priority.as_deref(), Some("low"));
    }

    #[test]
    fn bad_alerts_are_refused() {
        for (json, expected) in [
            (serde_json::json!({"labels": {}}), "alertname"),
            (
                serde_json::json!({"labels": {"alertname": ""}}),
                "alertname",
            ),
            (
                serde_json::json!({"labels": {"alertname": "A"}, "endsAt": "soon"}),
                "endsAt",
            ),
        ] {
            let err = alert(json.clone())
                .into_event("alerts[0]", NOW)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}
