//! What each receiver type is sent: a Slack incoming-webhook message, a
//! PagerDuty Events API v2 event, or an Alertmanager webhook (version 4)
//! body, so existing Alertmanager webhook consumers work unmodified.

use serde_json::{Value, json};

use super::{ReceiverDef, ReceiverKind};
use crate::alerts::{AlertSnapshot, AlertState, Owed};
use crate::rule::{ALERTNAME, Priority};

/// PagerDuty caps a summary at 1,024 characters.
const MAX_SUMMARY_CHARS: usize = 1024;
/// Slack caps a section's fields at ten.
const MAX_SLACK_FIELDS: usize = 10;

pub fn body(receiver: &ReceiverDef, owed: &Owed) -> Value {
    match &receiver.kind {
        ReceiverKind::Slack => slack(owed),
        ReceiverKind::PagerDuty { routing_key } => pagerduty(routing_key, owed),
        ReceiverKind::Webhook => alertmanager_webhook(&receiver.name, owed),
    }
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn title(alert: &AlertSnapshot) -> String {
    if alert.summary.is_empty() {
        let labels: Vec<String> = alert
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != ALERTNAME)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} {}", alert.rule, labels.join(" "))
    } else {
        alert.summary.clone()
    }
}

fn slack(owed: &Owed) -> Value {
    let alert = &owed.alert;
    let state = match owed.to {
        AlertState::Resolved => "RESOLVED".to_string(),
        _ => format!("FIRING:{}", alert.priority),
    };
    let headline = format!("[{state}] {}", title(alert));
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{}*", escape_mrkdwn(&headline))},
    })];
    if !alert.description.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape_mrkdwn(&alert.description)},
        }));
    }
    let fields: Vec<Value> = alert
        .labels
        .iter()
        .take(MAX_SLACK_FIELDS)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{}*\n{}", escape_mrkdwn(k), escape_mrkdwn(v))}))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = format!(
        "rule `{}` · priority {} · since {}",
        alert.rule,
        alert.priority,
        rfc3339(alert.active_since_ns)
    );
    if let Some(v) = alert.last_value {
        context.push_str(&format!(" · value {v}"));
    }
    if !alert.runbook.is_empty() {
        context.push_str(&format!(" · <{}|runbook>", alert.runbook));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({"text": headline, "blocks": blocks})
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup.
fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pagerduty(routing_key: &str, owed: &Owed) -> Value {
    let alert = &owed.alert;
    if owed.to == AlertState::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.fingerprint,
        });
    }
    let summary: String = title(alert).chars().take(MAX_SUMMARY_CHARS).collect();
    let source = ["service_name", "instance", "host", "service"]
        .iter()
        .find_map(|k| alert.labels.get(*k))
        .cloned()
        .unwrap_or_else(|| "weir".to_string());
    let mut details = serde_json::Map::new();
    for (k, v) in &alert.labels {
        details.insert(k.clone(), json!(v));
    }
    if !alert.description.is_empty() {
        details.insert("description".into(), json!(alert.description));
    }
    if let Some(v) = alert.last_value {
        details.insert("value".into(), json!(v));
    }
    details.insert("priority".into(), json!(alert.priority));
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": summary,
            "source": source,
            "severity": match alert.priority { Priority::High => "critical", Priority::Low => "warning" },
            "timestamp": rfc3339(alert.since_ns),
            "component": alert.labels.get("service_name"),
            "group": alert.labels.get("region"),
            "class": alert.rule,
            "custom_details": details,
        },
        "client": "Weir",
    });
    if alert.runbook.starts_with("http://") || alert.runbook.starts_with("https://") {
        event["links"] = json!([{"href": alert.runbook, "text": "Runbook"}]);
    }
    event
}

fn alertmanager_webhook(receiver: &str, owed: &Owed) -> Value {
    let alert = &owed.alert;
    let status = if owed.to == AlertState::Resolved {
        "resolved"
    } else {
        "firing"
    };
    let mut annotations = serde_json::Map::new();
    for (k, v) in [
        ("summary", &alert.summary),
        ("description", &alert.description),
        ("runbook_url", &alert.runbook),
    ] {
        if !v.is_empty() {
            annotations.insert(k.into(), json!(v));
        }
    }
    let mut labels = alert.labels.clone();
    labels
        .entry("priority".into())
        .or_insert_with(|| alert.priority.to_string());
    let ends_at = if owed.to == AlertState::Resolved {
        rfc3339(alert.since_ns)
    } else {
        "0001-01-01T00:00:00Z".into()
    };
    let group_labels = json!({ ALERTNAME: alert.rule });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alert.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.active_since_ns),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": alert.fingerprint,
        }],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn owed(to: AlertState) -> Owed {
        let labels = BTreeMap::from([
            ("alertname".to_string(), "service_down".to_string()),
            ("service_name".to_string(), "checkout".to_string()),
        ]);
        Owed {
            id: 1,
            receiver: "r".into(),
            to,
            seq: 2,
            alert: AlertSnapshot {
                fingerprint: "0123456789abcdef".into(),
                rule: "service_down".into(),
                priority: Priority::High,
                labels,
                state: to,
                since_ns: 1_800_000_060_000_000_000,
                active_since_ns: 1_800_000_000_000_000_000,
                last_value: Some(503.0),
                last_evaluation_ns: 0,
                last_failing_ns: 0,
                consecutive: 3,
                last_checked_at_ns: None,
                summary: "checkout is down".into(),
                description: "3 failed checks <b>".into(),
                runbook: "https://runbooks.example/checkout".into(),
                transitions: 2,
                receivers: vec!["r".into()],
                suppressed_by: Vec::new(),
                firing_notified: true,
                source: crate::AlertSource::Rule,
                suppressible: true,
                expires_ns: None,
            },
            attempts: 0,
            first_attempt_ns: None,
        }
    }

    fn receiver(kind: ReceiverKind) -> ReceiverDef {
        ReceiverDef {
            name: "r".into(),
            kind,
            url: reqwest::Url::parse("http://127.0.0.1/").unwrap(),
            priorities: vec![Priority::High],
            send_resolved: true,
            timeout: Duration::from_secs(1),
            headers: Default::default(),
        }
    }

    #[test]
    fn the_alertmanager_webhook_body_is_version_4() {
        let body = body(&receiver(ReceiverKind::Webhook), &owed(AlertState::Firing));
        for key in [
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ] {
            assert!(body.get(key).is_some(), "{key} missing: {body}");
        }
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["service_name"], "checkout");
        assert_eq!(alert["labels"]["priority"], "high");
        assert_eq!(alert["annotations"]["summary"], "checkout is down");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://runbooks.example/checkout"
        );
        assert_eq!(alert["startsAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alert["fingerprint"], "0123456789abcdef");
        let resolved = body_of(ReceiverKind::Webhook, AlertState::Resolved);
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2027-01-15T08:01:00.000Z");
    }

    fn body_of(kind: ReceiverKind, to: AlertState) -> Value {
        body(&receiver(kind), &owed(to))
    }

    #[test]
    fn pagerduty_events_v2_trigger_and_resolve() {
        let pd = || ReceiverKind::PagerDuty {
            routing_key: "key".into(),
        };
        let trigger = body_of(pd(), AlertState::Firing);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "0123456789abcdef");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "checkout");
        assert_eq!(trigger["payload"]["custom_details"]["value"], 503.0);
        let resolve = body_of(pd(), AlertState::Resolved);
        assert_eq!(
            resolve,
            json!({"routing_key": "key", "event_action": "resolve", "dedup_key": "0123456789abcdef"})
        );
    }

    #[test]
    fn slack_text_is_escaped() {
        let slack = body_of(ReceiverKind::Slack, AlertState::Firing);
        assert_eq!(slack["text"], "[FIRING:high] checkout is down");
        assert!(
            slack.to_string().contains("3 failed checks &lt;b&gt;"),
            "{slack}"
        );
    }
}
