//! A JSON alert webhook → alert events: Datadog-style alerts, or the
//! webhook Prometheus Alertmanager sends (`webhook_configs`, version 4).
//!
//! A Datadog-style body is one alert object or an array of them:
//!
//! ```json
//! {"id": "7391", "title": "[Triggered] CPU high on web-1", "body": "...",
//!  "alert_transition": "Triggered", "alert_type": "error", "priority": "normal",
//!  "date": 1700000000000, "host": "web-1", "tags": "env:prod,service:checkout"}
//! ```
//!
//! Each becomes one event in table `table` (default `alerts`):
//! - tags `source` (config `source`, default `datadog`), `alert_id`, `host`,
//!   `service_name` (from the `service:` tag), `env`, `status` (`healthy` when
//!   the transition is Recovered/the type is success, else `unhealthy`),
//!   `priority` (`high` for Datadog's `normal`/`P1`/`P2`, else `low`);
//! - fields `title`, `text` and `transition` (strings).
//!
//! - tag `monitor`: the title without its leading `[...]` markers
//!   (`[Triggered] CPU high on web-1` → `CPU high on web-1`), the same for
//!   every transition of one alert;
//!
//! `date` is milliseconds (or seconds, if it is small enough to be) since the
//! epoch; absent, the server's time is used. `tags` may be a comma-separated
//! string or an array.
//!
//! An Alertmanager webhook (`{"version": "4", "alerts": [...], ...}`) gives
//! one event per alert: its labels as tags (`alertname` also as `monitor`),
//! `status` `unhealthy` while firing and `healthy` once resolved, `priority`
//! `high` for `severity` critical/page/high, `source` `alertmanager`, its
//! fingerprint as `alert_id`, fields `title` (the `summary` annotation) and
//! `text` (`description`); its time is `startsAt` (`endsAt` once resolved).

use serde_json::Value as Json;
use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Webhook {
    table: String,
    source: String,
}

fn text<'a>(alert: &'a Json, key: &str) -> Option<&'a str> {
    alert
        .get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
}

fn id(alert: &Json) -> Option<String> {
    match alert.get("id").or_else(|| alert.get("alert_id"))? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn tags(alert: &Json) -> Vec<(String, String)> {
    let items: Vec<String> = match alert.get("tags") {
        Some(Json::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|t| {
            let (k, v) = t.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn time_ns(alert: &Json, index: usize) -> Result<i64, String> {
    let Some(date) = alert.get("date").or_else(|| alert.get("last_updated")) else {
        return Ok(0);
    };
    let number = date
        .as_i64()
        .ok_or_else(|| format!("alert {index}: date {date} is not an integer"))?;
    // Seconds until the year 2286, milliseconds after.
    let ns = if number < 10_000_000_000 {
        number.checked_mul(1_000_000_000)
    } else {
        number.checked_mul(1_000_000)
    };
    ns.ok_or_else(|| format!("alert {index}: date {number} out of range"))
}

impl Adapter for Webhook {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            table: config.get_or("table", "alerts").to_string(),
            source: config.get_or("source", "datadog").to_string(),
        })
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        let body: Json =
            serde_json::from_slice(input.body).map_err(|e| format!("body is not JSON: {e}"))?;
        if body.get("version").is_some() && body.get("alerts").is_some() {
            return self.alertmanager(&body, out);
        }
        let alerts = match &body {
            Json::Array(items) => items.iter().collect(),
            Json::Object(_) => vec![&body],
            _ => return Err("expected an alert object or an array of them".into()),
        };
        for (index, alert) in alerts.into_iter().enumerate() {
            if !alert.is_object() {
                return Err(format!("alert {index} is not an object"));
            }
            let title =
                text(alert, "title").ok_or_else(|| format!("alert {index} has no title"))?;
            let transition = text(alert, "alert_transition").unwrap_or("Triggered");
            let recovered = transition.eq_ignore_ascii_case("recovered")
                || text(alert, "alert_type") == Some("success");
            let priority = match text(alert, "priority").unwrap_or("normal") {
                "normal" | "P1" | "P2" | "high" => "high",
                _ => "low",
            };
            let mut event = out.event(&self.table, time_ns(alert, index)?);
            event
                .tag("monitor", monitor_of(title))
                .tag("source", &self.source)
                .tag("status", if recovered { "healthy" } else { "unhealthy" })
                .tag("priority", priority)
                .field_str("title", title)
                .field_str("transition", transition);
            if let Some(id) = id(alert) {
                event.tag("alert_id", &id);
            }
            if let Some(host) = text(alert, "host") {
                event.tag("host", host);
            }
            if let Some(body) = text(alert, "body").or_else(|| text(alert, "text")) {
                event.field_str("text", body);
            }
            for (key, value) in tags(alert) {
                match key.as_str() {
                    "service" => event.tag("service_name", &value),
                    "env" => event.tag("env", &value),
                    _ => &mut event,
                };
            }
        }
        Ok(())
    }
}

/// A Datadog title without its leading `[Triggered]`, `[P1]` … markers.
fn monitor_of(title: &str) -> &str {
    let mut rest = title.trim();
    while let Some(after) = rest.strip_prefix('[')
        && let Some(end) = after.find(']')
    {
        rest = after[end + 1..].trim_start();
    }
    if rest.is_empty() { title } else { rest }
}

/// Tags an Alertmanager label may not overwrite.
const OWN_TAGS: [&str; 4] = ["monitor", "status", "priority", "source"];

fn rfc3339_ns(what: &str, text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{what}: {text:?} is not an RFC 3339 time: {e}"))?;
    let ns = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{what}: {text:?} is before 1970"))?
        .as_nanos();
    i64::try_from(ns).map_err(|_| format!("{what}: {text:?} is out of range"))
}

impl Webhook {
    fn alertmanager(&self, body: &Json, out: &mut EventsBuilder) -> Result<(), String> {
        let alerts = body["alerts"].as_array().ok_or("alerts is not an array")?;
        for (index, alert) in alerts.iter().enumerate() {
            let what = format!("alerts[{index}]");
            let labels = alert["labels"]
                .as_object()
                .ok_or_else(|| format!("{what}: no labels"))?;
            let name = labels
                .get("alertname")
                .and_then(Json::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("{what}: no alertname label"))?;
            let resolved = match alert["status"].as_str() {
                Some("firing") => false,
                Some("resolved") => true,
                other => {
                    return Err(format!(
                        "{what}: status {other:?} is not firing or resolved"
                    ));
                }
            };
            let time_key = if resolved { "endsAt" } else { "startsAt" };
            let time = match alert[time_key].as_str() {
                Some(text) => rfc3339_ns(&format!("{what}.{time_key}"), text)?,
                None => 0,
            };
            let severity = labels.get("severity").and_then(Json::as_str).unwrap_or("");
            let priority = match severity {
                "critical" | "page" | "high" => "high",
                _ => "low",
            };
            let mut event = out.event(&self.table, time);
            event
                .tag("monitor", name)
                .tag("source", "alertmanager")
                .tag("status", if resolved { "healthy" } else { "unhealthy" })
                .tag("priority", priority);
            for (key, value) in labels {
                if let Some(value) = value.as_str()
                    && !OWN_TAGS.contains(&key.as_str())
                {
                    event.tag(key, value);
                }
            }
            if let Some(fingerprint) = alert["fingerprint"].as_str() {
                event.tag("alert_id", fingerprint);
            }
            let annotation =
                |key: &str| alert["annotations"][key].as_str().filter(|s| !s.is_empty());
            event.field_str("title", annotation("summary").unwrap_or(name));
            if let Some(text) = annotation("description") {
                event.field_str("text", text);
            }
        }
        Ok(())
    }
}

weir_sdk::export_adapter!(Webhook);

#[cfg(test)]
mod tests {
    use weir_sdk::testing;

    use super::*;

    #[test]
    fn alerts_become_events() {
        let mut w = Webhook::init(&Config::default()).unwrap();
        let body = br#"[
          {"id": 7391, "title": "[Triggered] CPU high", "alert_transition": "Triggered",
           "priority": "normal", "date": 1700000000000, "host": "web-1",
           "tags": "env:prod,service:checkout", "body": "CPU at 97%"},
          {"alert_id": "7391", "title": "[Recovered] CPU high", "alert_transition": "Recovered",
           "priority": "low", "date": 1700000300, "tags": ["service:checkout"]}
        ]"#;
        let out = testing::adapt(&mut w, "application/json", body).unwrap();
        let events = testing::events(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tag("status"), Some("unhealthy"));
        assert_eq!(events[0].tag("priority"), Some("high"));
        assert_eq!(events[0].tag("service_name"), Some("checkout"));
        assert_eq!(events[0].tag("alert_id"), Some("7391"));
        assert_eq!(events[0].field_str("text"), Some("CPU at 97%"));
        assert_eq!(events[0].time_ns(), 1_700_000_000_000_000_000);
        assert_eq!(events[1].tag("status"), Some("healthy"));
        assert_eq!(events[1].tag("priority"), Some("low"));
        assert_eq!(events[1].time_ns(), 1_700_000_300_000_000_000);
        assert_eq!(events[0].tag("monitor"), Some("CPU high"));
        assert_eq!(events[1].tag("monitor"), Some("CPU high"));
        assert_eq!(monitor_of("[P1] [Triggered] disk full"), "disk full");
        assert_eq!(monitor_of("[]"), "[]");
    }

    #[test]
    fn alertmanager_webhooks_become_events() {
        let mut w = Webhook::init(&Config::default()).unwrap();
        let body = br#"{"version": "4", "status": "firing", "receiver": "weir",
          "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
          "alerts": [
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical", "status": "x"},
             "annotations": {"summary": "disk on db-1 is full", "description": "97% used"},
             "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"},
            {"status": "resolved", "labels": {"alertname": "LoadHigh", "instance": "web-1:9100"},
             "annotations": {}, "startsAt": "2026-12-01T09:00:00Z", "endsAt": "2026-12-01T09:30:00Z"}
          ]}"#;
        let out = testing::adapt(&mut w, "application/json", body).unwrap();
        let events = testing::events(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tag("monitor"), Some("DiskFull"));
        assert_eq!(events[0].tag("status"), Some("unhealthy"));
        assert_eq!(events[0].tag("priority"), Some("high"));
        assert_eq!(events[0].tag("instance"), Some("db-1:9100"));
        assert_eq!(events[0].tag("alert_id"), Some("abc"));
        assert_eq!(events[0].field_str("title"), Some("disk on db-1 is full"));
        assert_eq!(events[0].time_ns(), 1_796_119_200_000_000_000);
        assert_eq!(events[1].tag("status"), Some("healthy"));
        assert_eq!(events[1].tag("priority"), Some("low"));
        assert_eq!(events[1].field_str("title"), Some("LoadHigh"));
        for bad in [
            &br#"{"version": "4", "alerts": 1}"#[..],
            br#"{"version": "4", "alerts": [{"labels": {}}]}"#,
            br#"{"version": "4", "alerts": [{"labels": {"alertname": "a"}, "status": "odd"}]}"#,
            br#"{"version": "4", "alerts": [{"labels": {"alertname": "a"}, "status": "firing", "startsAt": "soon"}]}"#,
        ] {
            assert!(testing::adapt(&mut w, "", bad).is_err());
        }
    }

    #[test]
    fn bad_bodies_are_explained() {
        let mut w = Webhook::init(&Config::default()).unwrap();
        assert!(
            testing::adapt(&mut w, "", b"{nope")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            testing::adapt(&mut w, "", b"42")
                .unwrap_err()
                .contains("expected an alert")
        );
        assert!(
            testing::adapt(&mut w, "", b"{}")
                .unwrap_err()
                .contains("no title")
        );
        assert!(
            testing::adapt(&mut w, "", br#"{"title":"x","date":"soon"}"#)
                .unwrap_err()
                .contains("date")
        );
    }
}
