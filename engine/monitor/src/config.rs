//! The monitor's sections of the config file, as written. Each is checked
//! and turned into its definition where it is used (`probe`, `rule`,
//! `notify`, `schedule`); every mistake is an error at load that names the
//! section and the key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::CollectorSection;

/// `[probes.NAME]`: an endpoint checked every `interval`. Exactly one of
/// `url` (HTTP/HTTPS) or `tcp` (`host:port`, a connect check).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    pub url: Option<String>,
    pub tcp: Option<String>,
    /// The `service_name` tag of its rows (default: the probe's name).
    pub service: Option<String>,
    /// Default `60s`.
    pub interval: Option<String>,
    /// Default `5s`; at most the interval.
    pub timeout: Option<String>,
    /// Default `GET`.
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Healthy status codes: `"200"`, `"2xx"`, `"200-299"`. Default: any
    /// code below 500.
    pub expect_status: Option<Vec<String>>,
    /// Unhealthy when the response takes longer.
    pub max_response_time: Option<String>,
    pub body_contains: Option<String>,
    pub body_regex: Option<String>,
    /// A path into a JSON body (`$.status`, `$.checks[0].ok`) and the value
    /// it must equal.
    pub json_path: Option<String>,
    pub json_equals: Option<serde_json::Value>,
    /// HTTPS: unhealthy when the server's certificate expires in fewer days.
    /// The days left are stored as `tls_days_left`.
    pub tls_min_days: Option<f64>,
    /// HTTPS: a PEM file of extra root certificates to trust (a private CA).
    pub tls_ca_file: Option<String>,
    /// Extra tags of its rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Default `service_metrics`.
    pub table: Option<String>,
}

/// `[heartbeats.NAME]`: a push monitor. A job calls
/// `POST /api/v1/heartbeat/NAME`; when none arrives within `period + grace`
/// an unhealthy row is written, and one more every `period` after.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    pub period: String,
    /// Default `0s`.
    pub grace: Option<String>,
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub table: Option<String>,
}

/// `[rules.NAME]`: SQL evaluated every `interval`. Each row of its answer is
/// one alert instance: its string columns are its labels; a boolean column
/// `firing` says whether it fails now (without one, every row fires); a
/// numeric `value` is kept; a timestamp `checked_at` makes `consecutive`
/// count checks rather than evaluations.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub query: String,
    /// Default `60s`.
    pub interval: Option<String>,
    /// Pending until failing continuously this long (Prometheus `for`).
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Pending until failing in this many consecutive observations.
    pub consecutive: Option<u32>,
    /// Once firing, keep firing this long after it stops failing.
    pub keep_firing_for: Option<String>,
    /// `high` (pages) or `low` (chat / ticket). Default `low`.
    pub priority: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub runbook: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Receivers to notify, instead of routing by priority.
    pub receivers: Option<Vec<String>>,
    /// Labels that key its alerts' groups (`["..."]`: every label).
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    pub group_window: Option<String>,
    /// Context collectors, in the order their sections appear
    /// (`[[rules.NAME.collect]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect: Vec<CollectorSection>,
}

/// `[receivers.NAME]`: where notifications go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSection {
    /// `slack`, `pagerduty` or `webhook` (Alertmanager webhook, version 4).
    #[serde(rename = "type")]
    pub kind: String,
    /// Default for `pagerduty`: `https://events.pagerduty.com/v2/enqueue`.
    pub url: Option<String>,
    /// PagerDuty's integration key.
    pub routing_key: Option<String>,
    /// Priorities routed here by default: `pagerduty` takes `["high"]`, the
    /// others `["high", "low"]`.
    pub priorities: Option<Vec<String>>,
    /// Also notify when an alert resolves. Default `true`.
    pub send_resolved: Option<bool>,
    /// Deadline of one delivery attempt. Default `10s`.
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Every monitor section of a config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorSections {
    pub probes: BTreeMap<String, ProbeSection>,
    pub heartbeats: BTreeMap<String, HeartbeatSection>,
    pub rules: BTreeMap<String, RuleSection>,
    pub receivers: BTreeMap<String, ReceiverSection>,
}

impl MonitorSections {
    /// Checks every section as loading it would, without starting anything.
    pub fn check(&self) -> crate::Result<()> {
        for (name, section) in &self.receivers {
            crate::notify::ReceiverDef::from_section(name, section)?;
        }
        crate::rule::check_rule_sections(&self.rules, &self.receivers)?;
        for (name, section) in &self.probes {
            crate::probe::ProbeDef::from_section(name, section)?;
        }
        for (name, section) in &self.heartbeats {
            crate::schedule::HeartbeatDef::from_section(name, section)?;
        }
        Ok(())
    }
}

/// The monitor's own settings (flags and top-level keys of `weir serve`).
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Probe requests in flight at once.
    pub probe_concurrency: usize,
    /// The most alert instances one rule may return.
    pub max_alerts_per_rule: usize,
    /// How long a notification is retried before it is given up.
    pub notify_retry_for: Duration,
    /// How long one computation of the status page is served again.
    pub status_cache_for: Duration,
    /// Longest a suppression may last.
    pub max_suppression_duration: Duration,
    /// Most alert instances a suppression may match unless forced.
    pub max_suppression_matches: usize,
    /// Hosts whose events are dropped.
    pub retired_hosts: Vec<String>,
    /// How alerts are grouped unless their rule or event says otherwise.
    pub grouping: crate::groups::Grouping,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            probe_concurrency: 512,
            max_alerts_per_rule: 10_000,
            notify_retry_for: Duration::from_secs(3600),
            status_cache_for: Duration::from_secs(5),
            max_suppression_duration: Duration::from_secs(30 * 24 * 3600),
            max_suppression_matches: 100,
            retired_hosts: Vec::new(),
            grouping: crate::groups::Grouping::default(),
        }
    }
}
