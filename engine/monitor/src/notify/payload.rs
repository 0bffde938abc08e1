//! What each receiver type is sent for one group of alerts: a Slack
//! incoming-webhook message, a PagerDuty Events API v2 event (one incident
//! per group), or an Alertmanager webhook (version 4) body, so existing
//! Alertmanager webhook consumers work unmodified. A group of one alert
//! reads as that alert.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ReceiverDef, ReceiverKind};
use crate::alerts::{AlertSnapshot, AlertState, Owed};
use crate::context::{AlertContext, Section, SectionStatus};
use crate::rule::{ALERTNAME, Priority};

/// PagerDuty caps a summary at 1,024 characters.
const MAX_SUMMARY_CHARS: usize = 1024;
/// Slack caps a section's fields at ten.
const MAX_SLACK_FIELDS: usize = 10;
/// Alerts of a group listed by name in a chat message or page; the rest
/// are counted.
const MAX_LISTED: usize = 20;

/// `context`: the collected sections of the group's first firing alerts.
pub fn body(receiver: &ReceiverDef, owed: &Owed, context: &[AlertContext]) -> Value {
    match &receiver.kind {
        ReceiverKind::Slack => {
            let mut message = slack(owed);
            if let Some(blocks) = message["blocks"].as_array_mut() {
                blocks.extend(slack_context(owed, context));
            }
            message
        }
        ReceiverKind::PagerDuty { routing_key } => {
            let mut event = pagerduty(routing_key, owed);
            pagerduty_context(&mut event, context);
            event
        }
        ReceiverKind::Webhook => {
            let mut body = alertmanager_webhook(&receiver.name, owed);
            if !context.is_empty() {
                // Alertmanager's annotations are flat strings; the
                // sections ride beside them for consumers that know Weir.
                body["weirContext"] = json!(context);
            }
            body
        }
    }
}

/// Slack caps a section's text at 3,000 characters.
const MAX_SLACK_TEXT: usize = 2_900;

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A section as mrkdwn: its title, then its text (query answers in a code
/// block, where Slack keeps columns aligned), or why it is missing.
fn section_mrkdwn(section: &Section) -> String {
    let title = format!("*{}*", escape_mrkdwn(&section.title));
    if section.status != SectionStatus::Ok {
        let error = section.error.as_deref().unwrap_or("");
        return format!(
            "{title} — _{}: {}_",
            section.status.as_str().replace('_', " "),
            escape_mrkdwn(error)
        );
    }
    match (section.collector, &section.url) {
        (_, Some(url)) => format!("{title}: <{}|{}>", url, escape_mrkdwn(&section.text)),
        ("markdown", None) => format!("{title}\n{}", escape_mrkdwn(&section.text)),
        _ => format!(
            "{title}\n```{}```",
            escape_mrkdwn(section.text.trim_end()).replace("```", "'''")
        ),
    }
}

fn slack_context(owed: &Owed, context: &[AlertContext]) -> Vec<Value> {
    let mut blocks = Vec::new();
    for collected in context {
        if owed.alerts.len() > 1
            && let Some(alert) = owed
                .alerts
                .iter()
                .find(|a| a.fingerprint == collected.fingerprint)
        {
            blocks.push(json!({"type": "header", "text": {"type": "plain_text",
                "text": clip(&title(alert), 140)}}));
        }
        for section in &collected.sections {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": clip(&section_mrkdwn(section), MAX_SLACK_TEXT)}}));
        }
    }
    blocks
}

/// Sections go in `custom_details` under their titles (with the alert's
/// fingerprint when several alerts have context); runbooks become links.
fn pagerduty_context(event: &mut Value, context: &[AlertContext]) {
    if context.is_empty() || event["event_action"] != "trigger" {
        return;
    }
    let several = context.len() > 1;
    let mut links: Vec<Value> = event["links"].as_array().cloned().unwrap_or_default();
    let details = &mut event["payload"]["custom_details"];
    for collected in context {
        for section in &collected.sections {
            let key = if several {
                format!("{} [{}]", section.title, collected.fingerprint)
            } else {
                section.title.clone()
            };
            let value = match (section.status, &section.url) {
                (SectionStatus::Ok, Some(url)) => {
                    links.push(json!({"href": url, "text": section.title}));
                    json!(section.text)
                }
                (SectionStatus::Ok, None) => json!(section.text),
                (status, _) => json!(format!(
                    "{}: {}",
                    status.as_str(),
                    section.error.as_deref().unwrap_or("")
                )),
            };
            details[key] = value;
        }
    }
    if !links.is_empty() {
        event["links"] = json!(links);
    }
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn title(alert: &AlertSnapshot) -> String {
    if alert.summary.is_empty() {
        format!("{} {}", alert.rule, labels_text(&alert.labels))
    } else {
        alert.summary.clone()
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != ALERTNAME)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a group is called: its one alert's title, or its key.
fn group_title(owed: &Owed) -> String {
    match owed.alerts.as_slice() {
        [one] => title(one),
        alerts => {
            let name = owed
                .group_key
                .get(ALERTNAME)
                .cloned()
                .unwrap_or_else(|| alerts[0].rule.clone());
            let rest = labels_text(&owed.group_key);
            format!("{} alerts: {name} {rest}", alerts.len())
                .trim_end()
                .to_string()
        }
    }
}

fn counts(owed: &Owed) -> (usize, usize) {
    let firing = owed
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    (firing, owed.alerts.len() - firing)
}

/// The most urgent priority among the group's firing alerts.
fn priority(owed: &Owed) -> Priority {
    if owed
        .alerts
        .iter()
        .any(|a| a.state == AlertState::Firing && a.priority == Priority::High)
    {
        Priority::High
    } else {
        owed.alerts.first().map_or(Priority::Low, |a| a.priority)
    }
}

fn slack(owed: &Owed) -> Value {
    if let [alert] = owed.alerts.as_slice() {
        return slack_one(alert);
    }
    let (firing, resolved) = counts(owed);
    let state = match (firing, resolved) {
        (0, r) => format!("RESOLVED:{r}"),
        (f, 0) => format!("FIRING:{f} {}", priority(owed)),
        (f, r) => format!("FIRING:{f} {}, RESOLVED:{r}", priority(owed)),
    };
    let headline = format!("[{state}] {}", group_title(owed));
    let mut lines: Vec<String> = owed
        .alerts
        .iter()
        .take(MAX_LISTED)
        .map(|a| {
            let mark = if a.state == AlertState::Firing {
                "•"
            } else {
                "✓"
            };
            format!("{mark} {}", escape_mrkdwn(&title(a)))
        })
        .collect();
    if owed.alerts.len() > MAX_LISTED {
        lines.push(format!("… and {} more", owed.alerts.len() - MAX_LISTED));
    }
    let blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape_mrkdwn(&headline))}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "group `{}` · {} alerts · notification {}", owed.group_id, owed.alerts.len(), owed.seq
        )}]}),
    ];
    json!({"text": headline, "blocks": blocks})
}

fn slack_one(alert: &AlertSnapshot) -> Value {
    let state = match alert.state {
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

/// One PagerDuty incident per group: triggered while any alert of the
/// group fires (a trigger with the same `dedup_key` updates it), resolved
/// when all have resolved.
fn pagerduty(routing_key: &str, owed: &Owed) -> Value {
    let (firing, resolved) = counts(owed);
    if firing == 0 {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": owed.group_id,
        });
    }
    let lead = owed
        .alerts
        .iter()
        .find(|a| a.state == AlertState::Firing)
        .unwrap_or(&owed.alerts[0]);
    let summary: String = group_title(owed).chars().take(MAX_SUMMARY_CHARS).collect();
    let source = ["service_name", "instance", "host", "service"]
        .iter()
        .find_map(|k| owed.group_key.get(*k).or_else(|| lead.labels.get(*k)))
        .cloned()
        .unwrap_or_else(|| "weir".to_string());
    let mut details = serde_json::Map::new();
    let labels = if owed.alerts.len() == 1 {
        &lead.labels
    } else {
        &owed.group_key
    };
    for (k, v) in labels {
        details.insert(k.clone(), json!(v));
    }
    if owed.alerts.len() == 1 {
        if !lead.description.is_empty() {
            details.insert("description".into(), json!(lead.description));
        }
        if let Some(v) = lead.last_value {
            details.insert("value".into(), json!(v));
        }
    } else {
        details.insert("firing".into(), json!(firing));
        details.insert("resolved".into(), json!(resolved));
        let listed: Vec<String> = owed.alerts.iter().take(MAX_LISTED).map(title).collect();
        details.insert("alerts".into(), json!(listed));
    }
    let priority = priority(owed);
    details.insert("priority".into(), json!(priority));
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": owed.group_id,
        "payload": {
            "summary": summary,
            "source": source,
            "severity": match priority { Priority::High => "critical", Priority::Low => "warning" },
            "timestamp": rfc3339(lead.since_ns),
            "component": lead.labels.get("service_name"),
            "group": lead.labels.get("region"),
            "class": lead.rule,
            "custom_details": details,
        },
        "client": "Weir",
    });
    if lead.runbook.starts_with("http://") || lead.runbook.starts_with("https://") {
        event["links"] = json!([{"href": lead.runbook, "text": "Runbook"}]);
    }
    event
}

fn annotations(alert: &AlertSnapshot) -> serde_json::Map<String, Value> {
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
    annotations
}

/// The (key, value) pairs every map of `maps` has.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a serde_json::Map<String, Value>>,
) -> serde_json::Map<String, Value> {
    let Some(first) = maps.next() else {
        return serde_json::Map::new();
    };
    let mut common = first.clone();
    for map in maps {
        common.retain(|k, v| map.get(k) == Some(v));
    }
    common
}

fn alertmanager_webhook(receiver: &str, owed: &Owed) -> Value {
    let (firing, _) = counts(owed);
    let status = if firing > 0 { "firing" } else { "resolved" };
    let mut all_labels = Vec::new();
    let mut all_annotations = Vec::new();
    let alerts: Vec<Value> = owed
        .alerts
        .iter()
        .map(|alert| {
            let mut labels = serde_json::Map::new();
            for (k, v) in &alert.labels {
                labels.insert(k.clone(), json!(v));
            }
            labels
                .entry("priority")
                .or_insert_with(|| json!(alert.priority));
            let annotations = annotations(alert);
            let resolved = alert.state == AlertState::Resolved;
            let value = json!({
                "status": if resolved { "resolved" } else { "firing" },
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(alert.active_since_ns),
                "endsAt": if resolved { rfc3339(alert.since_ns) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": "",
                "fingerprint": alert.fingerprint,
            });
            all_labels.push(labels);
            all_annotations.push(annotations);
            value
        })
        .collect();
    let key_text: Vec<String> = owed
        .group_key
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{{}}}", key_text.join(", ")),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": owed.group_key,
        "commonLabels": common(all_labels.iter()),
        "commonAnnotations": common(all_annotations.iter()),
        "externalURL": "",
        "alerts": alerts,
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
            group_id: "g-1".into(),
            group_key: BTreeMap::from([("alertname".to_string(), "service_down".to_string())]),
            seq: 2,
            alerts: vec![AlertSnapshot {
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
                grouping: None,
                collect: Default::default(),
            }],
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
        let body = body(
            &receiver(ReceiverKind::Webhook),
            &owed(AlertState::Firing),
            &[],
        );
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
        body(&receiver(kind), &owed(to), &[])
    }

    #[test]
    fn pagerduty_events_v2_trigger_and_resolve() {
        let pd = || ReceiverKind::PagerDuty {
            routing_key: "key".into(),
        };
        let trigger = body_of(pd(), AlertState::Firing);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "g-1");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "checkout");
        assert_eq!(trigger["payload"]["custom_details"]["value"], 503.0);
        let resolve = body_of(pd(), AlertState::Resolved);
        assert_eq!(
            resolve,
            json!({"routing_key": "key", "event_action": "resolve", "dedup_key": "g-1"})
        );
    }

    #[test]
    fn a_group_is_one_message_that_lists_its_alerts() {
        let mut group = owed(AlertState::Firing);
        let one = group.alerts[0].clone();
        group.alerts = (0..25)
            .map(|i| {
                let mut a = one.clone();
                a.summary = format!("svc-{i} is down");
                a.fingerprint = format!("{i:016x}");
                a.labels.insert("region".into(), "eu".into());
                a.labels.insert("service_name".into(), format!("svc-{i}"));
                if i == 0 {
                    a.state = AlertState::Resolved;
                }
                a
            })
            .collect();
        group.group_key.insert("region".into(), "eu".into());
        let slack = body(&receiver(ReceiverKind::Slack), &group, &[]);
        assert_eq!(
            slack["text"],
            "[FIRING:24 high, RESOLVED:1] 25 alerts: service_down region=eu"
        );
        let text = slack.to_string();
        assert!(
            text.contains("svc-19 is down") && !text.contains("svc-20 is down"),
            "{text}"
        );
        assert!(text.contains("and 5 more"), "{text}");
        let am = body(&receiver(ReceiverKind::Webhook), &group, &[]);
        assert_eq!(am["alerts"].as_array().unwrap().len(), 25);
        assert_eq!(
            am["groupLabels"],
            json!({"alertname": "service_down", "region": "eu"})
        );
        assert_eq!(am["commonLabels"]["region"], "eu");
        assert!(am["commonLabels"].get("service_name").is_none());
        assert_eq!(
            am["groupKey"],
            "{}:{alertname=\"service_down\", region=\"eu\"}"
        );
        assert_eq!(am["status"], "firing");
        let pd = body(
            &receiver(ReceiverKind::PagerDuty {
                routing_key: "k".into(),
            }),
            &group,
            &[],
        );
        assert_eq!(pd["dedup_key"], "g-1");
        assert_eq!(pd["payload"]["custom_details"]["firing"], 24);
        for a in &mut group.alerts {
            a.state = AlertState::Resolved;
        }
        let pd = body(
            &receiver(ReceiverKind::PagerDuty {
                routing_key: "k".into(),
            }),
            &group,
            &[],
        );
        assert_eq!(pd["event_action"], "resolve");
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

    #[test]
    fn context_sections_ride_along() {
        use std::time::Duration;

        use crate::context::{AlertContext, Section, SectionStatus};
        let group = owed(AlertState::Firing);
        let section = |title: &str, status, text: &str, url: Option<&str>| Section {
            collector: if url.is_some() { "runbook" } else { "logs" },
            title: title.into(),
            status,
            text: text.into(),
            url: url.map(String::from),
            error: (status != SectionStatus::Ok).then(|| "no answer within 1s".into()),
            elapsed: Duration::ZERO,
        };
        let context = [AlertContext {
            fingerprint: group.alerts[0].fingerprint.clone(),
            sections: vec![
                section("Logs", SectionStatus::Ok, "a <b>\n", None),
                section("Book", SectionStatus::Ok, "db-1", Some("https://rb/db-1")),
                section("Slow", SectionStatus::TimedOut, "", None),
            ],
        }];
        let slack = body(&receiver(ReceiverKind::Slack), &group, &context).to_string();
        assert!(slack.contains("*Logs*\\n```a &lt;b&gt;```"), "{slack}");
        assert!(slack.contains("*Book*: <https://rb/db-1|db-1>"), "{slack}");
        assert!(
            slack.contains("*Slow* — _timed out: no answer within 1s_"),
            "{slack}"
        );
        let pd = body(
            &receiver(ReceiverKind::PagerDuty {
                routing_key: "k".into(),
            }),
            &group,
            &context,
        );
        assert_eq!(pd["payload"]["custom_details"]["Logs"], "a <b>\n");
        assert_eq!(
            pd["payload"]["custom_details"]["Slow"],
            "timed_out: no answer within 1s"
        );
        assert!(
            pd["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["href"] == "https://rb/db-1")
        );
        let am = body(&receiver(ReceiverKind::Webhook), &group, &context);
        assert_eq!(
            am["weirContext"][0]["sections"][1]["url"],
            "https://rb/db-1"
        );
    }
}
