//! Receivers, routing and delivery. Each notification owed by the alert
//! book is delivered by its own task: a receiver that is down or hangs
//! delays only its own notifications, never rule evaluation or other
//! receivers. 5xx, 429, timeouts and connection errors are retried with
//! exponential backoff and jitter for `notify_retry_for`; other 4xx answers
//! are final. Every attempt is a row of `weir_notifications`.

mod payload;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weir_metrics::{Counter, Latency};
use weir_pipeline::WritePath;
use weir_query::QueryEngine;

use crate::alerts::{AlertBook, AlertState, Owed};
use crate::config::ReceiverSection;
use crate::context::AlertContext;
use crate::rule::{Priority, RuleDef};
use crate::tables::NotificationRow;
use crate::{Result, config_error, error_chain, parse_duration};

const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most of a receiver's answer kept in an error message.
const MAX_ANSWER_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Slack,
    PagerDuty { routing_key: String },
    Webhook,
}

impl ReceiverKind {
    fn as_str(&self) -> &'static str {
        match self {
            ReceiverKind::Slack => "slack",
            ReceiverKind::PagerDuty { .. } => "pagerduty",
            ReceiverKind::Webhook => "webhook",
        }
    }
}

/// A checked `[receivers.NAME]`.
#[derive(Debug, Clone)]
pub struct ReceiverDef {
    pub name: String,
    pub kind: ReceiverKind,
    pub url: reqwest::Url,
    pub priorities: Vec<Priority>,
    pub send_resolved: bool,
    pub timeout: Duration,
    pub headers: reqwest::header::HeaderMap,
}

impl ReceiverDef {
    pub fn from_section(name: &str, section: &ReceiverSection) -> Result<Self> {
        let what = format!("receivers.{name}");
        let key = |k: &str| format!("{what}.{k}");
        let kind = match section.kind.as_str() {
            "slack" => ReceiverKind::Slack,
            "webhook" => ReceiverKind::Webhook,
            "pagerduty" => ReceiverKind::PagerDuty {
                routing_key: section
                    .routing_key
                    .clone()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        config_error(key("routing_key"), "PagerDuty needs the integration key")
                    })?,
            },
            other => {
                return Err(config_error(
                    key("type"),
                    format!(
                        "{other:?} is not a receiver type: \"slack\", \"pagerduty\" or \"webhook\""
                    ),
                ));
            }
        };
        if section.routing_key.is_some() && !matches!(kind, ReceiverKind::PagerDuty { .. }) {
            return Err(config_error(
                key("routing_key"),
                "only PagerDuty receivers take one",
            ));
        }
        let url = match (&section.url, &kind) {
            (Some(url), _) => url.clone(),
            (None, ReceiverKind::PagerDuty { .. }) => PAGERDUTY_EVENTS_URL.into(),
            (None, _) => return Err(config_error(key("url"), "is required")),
        };
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| config_error(key("url"), format!("{url:?} is not an http(s) URL")))?;
        let priorities = match &section.priorities {
            Some(list) => list
                .iter()
                .map(|p| Priority::parse(&key("priorities"), p))
                .collect::<Result<Vec<_>>>()?,
            None if matches!(kind, ReceiverKind::PagerDuty { .. }) => vec![Priority::High],
            None => vec![Priority::High, Priority::Low],
        };
        let timeout = match &section.timeout {
            Some(text) => parse_duration(&key("timeout"), text)?,
            None => Duration::from_secs(10),
        };
        if timeout.is_zero() {
            return Err(config_error(key("timeout"), "must be more than 0"));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &section.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                config_error(key("headers"), format!("{name:?} is not a header name"))
            })?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| config_error(key("headers"), format!("{name}: not a header value")))?;
            headers.insert(name, value);
        }
        Ok(Self {
            name: name.to_string(),
            kind,
            url,
            priorities,
            send_resolved: section.send_resolved.unwrap_or(true),
            timeout,
            headers,
        })
    }
}

/// Labels with which an alert picks its chat channel or ticket queue: the
/// receiver they name replaces the default receivers of its type.
const ROUTING_LABELS: [&str; 3] = ["channel", "ticket-queue", "ticket_queue"];

/// The receivers an alert goes to: the rule's own list if it has one;
/// otherwise every receiver taking its priority (by default `high` → the
/// pager and the chat, `low` → the chat), with `channel` / `ticket-queue`
/// labels picking the receiver of their type.
pub fn route(
    receivers: &BTreeMap<String, ReceiverDef>,
    rule: &RuleDef,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    if let Some(names) = &rule.receivers {
        return names.clone();
    }
    let mut chosen: Vec<String> = receivers
        .values()
        .filter(|r| r.priorities.contains(&rule.priority))
        .map(|r| r.name.clone())
        .collect();
    for label in ROUTING_LABELS {
        let Some(picked) = labels.get(label).and_then(|name| receivers.get(name)) else {
            continue;
        };
        chosen.retain(|name| receivers.get(name).is_none_or(|r| r.kind != picked.kind));
        chosen.push(picked.name.clone());
    }
    chosen.sort();
    chosen.dedup();
    chosen
}

#[derive(Debug, Default)]
pub struct NotifyMetrics {
    pub attempts: Counter,
    pub delivered: Counter,
    pub failed: Counter,
    pub seconds: Latency,
}

/// Delivers what the book owes.
#[derive(Clone)]
pub struct Notifier {
    receivers: Arc<BTreeMap<String, ReceiverDef>>,
    client: reqwest::Client,
    book: AlertBook,
    path: WritePath,
    /// Runs the context collectors' queries.
    query: Arc<QueryEngine>,
    retry_for: Duration,
    metrics: Arc<NotifyMetrics>,
    stop: watch::Receiver<bool>,
    chains: Arc<Mutex<Chains>>,
}

/// The last delivery task of each (receiver, alert fingerprint).
type Chains = HashMap<(String, String), JoinHandle<()>>;

enum Attempt {
    Delivered,
    Retry,
    Final,
}

impl Notifier {
    pub fn new(
        receivers: Arc<BTreeMap<String, ReceiverDef>>,
        book: AlertBook,
        path: WritePath,
        query: Arc<QueryEngine>,
        retry_for: Duration,
        metrics: Arc<NotifyMetrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| config_error("receivers", format!("building the HTTP client: {e}")))?;
        Ok(Self {
            receivers,
            client,
            book,
            path,
            query,
            retry_for,
            metrics,
            stop,
            chains: Arc::default(),
        })
    }

    /// Starts delivering one owed notification. Notifications of one group
    /// to one receiver go in order — a resolve never overtakes the trigger
    /// it resolves while that is still being retried.
    pub fn dispatch(&self, owed: Owed) {
        let key = (owed.receiver.clone(), owed.group_id.clone());
        let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        chains.retain(|_, task| !task.is_finished());
        let previous = chains.remove(&key);
        let this = self.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            this.deliver(owed).await
        });
        chains.insert(key, task);
    }

    async fn deliver(self, mut owed: Owed) {
        let Some(receiver) = self.receivers.get(&owed.receiver) else {
            warn!(receiver = %owed.receiver, group = %owed.group_id,
                "a notification is owed to a receiver no longer configured; dropped");
            self.book.notification_done(owed.id);
            return;
        };
        if !receiver.send_resolved {
            owed.alerts.retain(|a| a.state == AlertState::Firing);
        }
        if owed.alerts.is_empty() {
            self.book.notification_done(owed.id);
            return;
        }
        let told = owed.status();
        let first = owed.alerts[0].clone();
        // Collected once per delivery, before the first attempt: retries
        // send the same message, and the wait is bounded by the collectors'
        // deadlines.
        let context = crate::context::collect_for(&self.query, &owed.alerts).await;
        if !context.is_empty() {
            self.record_context(&owed, &context).await;
        }
        let body = payload::body(receiver, &owed, &context);
        let first_ns = owed.first_attempt_ns.unwrap_or_else(weir_pipeline::now_ns);
        let give_up_ns = first_ns.saturating_add(self.retry_for.as_nanos() as i64);
        let mut attempt = owed.attempts;
        let mut stop = self.stop.clone();
        loop {
            if !self.book.attempted(owed.id, weir_pipeline::now_ns()) {
                return;
            }
            // Saved before the request goes out, so that a crash while it is
            // in flight makes the next attempt after the restart a new number
            // rather than a second row for this one.
            if let Err(e) = self.book.save().await {
                warn!(error = %e, "could not save the alert book before a delivery attempt");
            }
            attempt += 1;
            let started = Instant::now();
            let sent = self
                .client
                .post(receiver.url.clone())
                .headers(receiver.headers.clone())
                .json(&body)
                .timeout(receiver.timeout)
                .send()
                .await;
            let (outcome, status, error) = match sent {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        (Attempt::Delivered, Some(status.as_u16()), None)
                    } else {
                        let answer = read_some(response, MAX_ANSWER_BYTES).await;
                        let retry = status.is_server_error() || status.as_u16() == 429;
                        let outcome = if retry {
                            Attempt::Retry
                        } else {
                            Attempt::Final
                        };
                        (
                            outcome,
                            Some(status.as_u16()),
                            Some(format!("HTTP {status}: {answer}")),
                        )
                    }
                }
                Err(e) => {
                    let what = if e.is_timeout() { "timeout" } else { "connect" };
                    (
                        Attempt::Retry,
                        None,
                        Some(format!("{what}: {}", error_chain(&e))),
                    )
                }
            };
            let latency = started.elapsed();
            self.metrics.attempts.inc();
            self.metrics.seconds.observe(latency);
            let now_ns = weir_pipeline::now_ns();
            let out_of_time = now_ns >= give_up_ns;
            let result = match (&outcome, out_of_time) {
                (Attempt::Delivered, _) => "delivered",
                (Attempt::Retry, false) => "retrying",
                _ => "failed",
            };
            self.record(NotificationRow {
                time_ns: now_ns,
                receiver: receiver.name.clone(),
                receiver_type: receiver.kind.as_str(),
                group_id: owed.group_id.clone(),
                alerts: owed.alerts.len() as u64,
                fingerprint: first.fingerprint.clone(),
                rule: first.rule.clone(),
                transition: told.as_str(),
                seq: owed.seq,
                attempt,
                http_status: status,
                error: error.clone(),
                latency_ms: latency.as_secs_f64() * 1e3,
                result,
            })
            .await;
            if result != "retrying" {
                self.book.notification_done(owed.id);
            }
            // Recorded at once that it is done: a crash right after a
            // delivery must not send it again.
            if let Err(e) = self.book.save().await {
                warn!(error = %e, "could not save the alert book after a delivery attempt");
            }
            match result {
                "delivered" => {
                    self.metrics.delivered.inc();
                    info!(receiver = %receiver.name, group = %owed.group_id,
                        alerts = owed.alerts.len(), told = told.as_str(), attempt,
                        "notification delivered");
                    return;
                }
                "failed" => {
                    self.metrics.failed.inc();
                    warn!(receiver = %receiver.name, group = %owed.group_id,
                        alerts = owed.alerts.len(), told = told.as_str(), attempt,
                        error = error.as_deref().unwrap_or(""), "notification given up");
                    return;
                }
                _ => {}
            }
            let pause = backoff(attempt);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                // Owed notifications resume after a restart.
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn record_context(&self, owed: &Owed, context: &[AlertContext]) {
        let batches = crate::tables::context_batches(
            &self.path,
            &owed.receiver,
            &owed.group_id,
            &owed.alerts,
            context,
            weir_pipeline::now_ns(),
        );
        self.store(crate::tables::ALERT_CONTEXT, batches).await;
    }

    async fn record(&self, row: NotificationRow) {
        let batches = crate::tables::notification_batches(&self.path, &[row]);
        self.store(crate::tables::NOTIFICATIONS, batches).await;
    }

    /// Stores rows of one of the notifier's tables; a failure is logged,
    /// never the delivery's.
    async fn store(&self, table: &str, batches: weir_model::Result<Vec<weir_model::TableBatch>>) {
        let written = match batches {
            Ok(batches) => self
                .path
                .write_system(batches)
                .await
                .map(|_| ())
                .map_err(crate::Error::from),
            Err(e) => Err(crate::Error::from(e)),
        };
        if let Err(e) = written {
            warn!(error = %e, table, "could not store rows");
        }
    }
}

/// The start of an answer, for an error message: a receiver cannot make
/// Weir read (or hold) more than `limit` bytes of it.
async fn read_some(mut response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk[..chunk.len().min(limit - bytes.len())])
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Exponential from 0.5 s to 5 min, with full jitter over its upper half.
fn backoff(attempt: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let cap = exp.min(MAX_BACKOFF);
    cap.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleSection;

    fn receivers(sections: &[(&str, &str)]) -> BTreeMap<String, ReceiverDef> {
        sections
            .iter()
            .map(|(name, text)| {
                let section: ReceiverSection = toml::from_str(text).unwrap();
                (
                    name.to_string(),
                    ReceiverDef::from_section(name, &section).unwrap(),
                )
            })
            .collect()
    }

    fn rule(priority: &str, receivers: Option<&str>) -> RuleDef {
        let section = RuleSection {
            query: "SELECT 1".into(),
            priority: Some(priority.into()),
            receivers: receivers.map(|r| vec![r.to_string()]),
            ..RuleSection::default()
        };
        let all = BTreeMap::from([(
            "ops".to_string(),
            ReceiverSection {
                kind: "slack".into(),
                ..ReceiverSection::default()
            },
        )]);
        RuleDef::from_section("r", &section, &all).unwrap()
    }

    #[test]
    fn routing_by_priority_and_labels() {
        let all = receivers(&[
            ("pager", "type = 'pagerduty' \n routing_key = 'k'"),
            ("chat", "type = 'slack' \n url = 'http://chat/x'"),
            (
                "ops",
                "type = 'slack' \n url = 'http://chat/ops' \n priorities = []",
            ),
            (
                "tickets",
                "type = 'webhook' \n url = 'http://t/' \n priorities = ['low']",
            ),
        ]);
        let none = BTreeMap::new();
        assert_eq!(route(&all, &rule("high", None), &none), ["chat", "pager"]);
        assert_eq!(route(&all, &rule("low", None), &none), ["chat", "tickets"]);
        let channel = BTreeMap::from([("channel".to_string(), "ops".to_string())]);
        assert_eq!(route(&all, &rule("high", None), &channel), ["ops", "pager"]);
        let unknown = BTreeMap::from([("channel".to_string(), "nope".to_string())]);
        assert_eq!(
            route(&all, &rule("high", None), &unknown),
            ["chat", "pager"]
        );
        assert_eq!(route(&all, &rule("high", Some("ops")), &none), ["ops"]);
    }

    #[test]
    fn bad_receivers_are_clear_load_errors() {
        for (text, expect) in [
            ("type = 'email'", "not a receiver type"),
            ("type = 'slack'", "is required"),
            ("type = 'slack' \n url = 'ftp://x'", "not an http(s) URL"),
            ("type = 'pagerduty'", "integration key"),
            (
                "type = 'webhook' \n url = 'http://x' \n routing_key = 'k'",
                "only PagerDuty",
            ),
            (
                "type = 'webhook' \n url = 'http://x' \n priorities = ['p1']",
                "not a priority",
            ),
            (
                "type = 'webhook' \n url = 'http://x' \n timeout = '0s'",
                "more than 0",
            ),
        ] {
            let section: ReceiverSection = toml::from_str(text).unwrap();
            let err = ReceiverDef::from_section("r", &section)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expect) && err.starts_with("receivers.r"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 1..40 {
            let b = backoff(attempt);
            let exp = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            assert!(b >= exp / 2 && b <= exp, "{attempt}: {b:?}");
        }
    }
}
