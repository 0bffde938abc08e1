//! Weir's monitoring: from a failing check to the right human, in the one
//! binary, on the same store.
//!
//! What flows in: probe definitions (`[probes.NAME]`, or the probes API),
//! heartbeats from jobs that cannot be probed, alert rules written as SQL
//! (`[rules.NAME]`), receivers (`[receivers.NAME]`). What flows out: one
//! `service_metrics` row per probe run or missed heartbeat (written through
//! the shared [`WritePath`], so pipelines, WAL and acks apply to them as to
//! any client's rows); alert transitions and notifications to Slack-style,
//! PagerDuty Events v2 and Alertmanager-webhook receivers; Weir's own tables
//! `weir_alerts` (current state), `weir_alert_history`, `weir_notifications`
//! and `weir_rule_errors`; the status page.
//!
//! How it fits together:
//!
//! ```text
//!  probes ──┐                                   ┌─> weir_alert_history (WAL)
//!  heartbeats ─> RowWriter ─> WritePath ─> store │
//!                                  │             │   ┌─> Slack
//!  rules ── SQL (QueryEngine) ─────┘──> AlertBook ─> Notifier ─> PagerDuty
//!                                       (state file)   └─> webhook (Alertmanager v4)
//! ```
//!
//! Rooms: `config` (the TOML sections and their checks), `template`
//! (`${labels.x}` placeholders, checked at load), `probe` (one HTTP or TCP
//! check → an outcome), `schedule` (probes at a fixed rate, spread over the
//! interval; heartbeats), `rows` (outcomes → `service_metrics` rows, written
//! in small batches), `rule` (a rule's SQL answer → observations), `alerts`
//! (the state machine, its durable state file and outbox), `notify`
//! (routing, payloads, delivery with retries), `tables` (the `weir_…`
//! tables), `status` (the status page), `events` (checks that run
//! elsewhere: the events API, adapters' rows, Alertmanager's API, static
//! and dynamic pre-filtering), `groups` (alert groups and when they are
//! told), `suppress` (suppressions), `context` (what a notification carries
//! besides the alert: logs, metrics, runbook, recent alerts), `backtest`
//! (a rule file replayed over stored history), `host` (the built-in
//! `[sources.host]`: this machine's CPU, memory, disks and network into
//! `host_metrics`).
//!
//! Crash safety: the alert state, and the history rows and notifications a
//! transition owes, are written to one state file (fsync, rename) before
//! anything is sent; what the file still owes after a restart is sent then.
//! A transition is therefore never lost, and a notification is sent again
//! only if Weir dies between a receiver's 2xx and the fsync that records it.

mod alerts;
pub mod backtest;
mod config;
pub mod context;
pub mod events;
pub mod groups;
pub mod host;
mod monitor;
mod notify;
mod probe;
mod rows;
mod rule;
mod schedule;
mod status;
pub mod suppress;
mod tables;
mod template;

use std::time::Duration;

pub use alerts::{AlertBook, AlertSnapshot, AlertSource, AlertState};
pub use config::{
    HeartbeatSection, MonitorSections, MonitorSettings, ProbeSection, ReceiverSection, RuleSection,
};
pub use monitor::{EventReport, Monitor, MonitorArgs, ProbeView};
pub use rule::{Observation, RuleDef, check_rule_sections, observations, sql_at, table_names};
pub use status::{StatusReport, render_status_html};
pub use weir_pipeline::WritePath;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A probe, rule, receiver or heartbeat definition is wrong.
    #[error("{what}: {message}")]
    Config { what: String, message: String },

    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },

    /// A well-formed request that policy refuses (e.g. a suppression's
    /// blast radius over its limit).
    #[error("refused: {0}")]
    Refused(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Query(#[from] weir_query::Error),

    #[error(transparent)]
    Write(#[from] weir_pipeline::Error),

    #[error(transparent)]
    Model(#[from] weir_model::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn config_error(what: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Config {
        what: what.into(),
        message: message.into(),
    }
}

/// An error and its causes, `outer: inner: …` (reqwest and hyper say which
/// step failed only in the causes).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Parses `"30s"`, `"5m"`, `"1h 30m"`.
pub(crate) fn parse_duration(what: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        config_error(
            what,
            format!("{text:?} is not a duration like \"30s\" or \"5m\": {e}"),
        )
    })
}
