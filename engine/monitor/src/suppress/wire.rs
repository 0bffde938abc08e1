//! Suppressions on the wire: Weir's own JSON (`/api/v1/suppressions`, the
//! CLI) and Alertmanager's API v2 silences (`/api/v2/silences`, so amtool
//! works unmodified).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{MatchOp, Matcher, Suppression, SuppressionRequest, SuppressionState};
use crate::{Result, config_error};

/// A matcher written as text (`service="api"`) or as an object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatcherInput {
    Text(String),
    Object {
        name: String,
        #[serde(default = "equal")]
        op: MatchOp,
        value: String,
    },
}

fn equal() -> MatchOp {
    MatchOp::Equal
}

impl MatcherInput {
    fn parse(&self) -> Result<Matcher> {
        match self {
            MatcherInput::Text(text) => Matcher::parse(text),
            MatcherInput::Object { name, op, value } => Matcher::new(name, *op, value),
        }
        .map_err(|e| config_error("suppression", e))
    }
}

/// `POST /api/v1/suppressions` (and `PUT …/{id}`), and the CLI's request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionBody {
    /// Matcher sets; a suppression hides an alert when some set matches in
    /// full.
    pub targets: Vec<Vec<MatcherInput>>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// From the start, e.g. `2h`.
    #[serde(default)]
    pub duration: Option<String>,
    pub created_by: String,
    pub comment: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub engineer: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Make it even though it matches more than `max_suppression_matches`.
    #[serde(default)]
    pub force: bool,
}

fn parse_time(what: &str, text: &str) -> Result<i64> {
    let t = DateTime::parse_from_rfc3339(text).map_err(|e| {
        config_error(
            "suppression",
            format!("{what} {text:?}: {e} (RFC 3339, e.g. 2026-12-01T10:00:00Z)"),
        )
    })?;
    t.timestamp_nanos_opt()
        .ok_or_else(|| config_error("suppression", format!("{what} {text:?} is out of range")))
}

pub fn format_time(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl SuppressionBody {
    pub fn into_request(
        self,
        id: Option<String>,
        now_ns: i64,
    ) -> Result<(SuppressionRequest, bool)> {
        let targets = self
            .targets
            .iter()
            .map(|set| {
                set.iter()
                    .map(MatcherInput::parse)
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let starts_at_ns = self
            .starts_at
            .as_deref()
            .map(|t| parse_time("starts_at", t))
            .transpose()?;
        let ends_at_ns = match (&self.ends_at, &self.duration) {
            (Some(end), None) => parse_time("ends_at", end)?,
            (None, Some(duration)) => {
                let d = crate::parse_duration("duration", duration)?;
                starts_at_ns
                    .unwrap_or(now_ns)
                    .saturating_add(d.as_nanos().min(i64::MAX as u128) as i64)
            }
            _ => {
                return Err(config_error(
                    "suppression",
                    "give exactly one of ends_at and duration",
                ));
            }
        };
        let metadata = [
            ("team", self.team),
            ("engineer", self.engineer),
            ("channel", self.channel),
            ("ticket", self.ticket),
            ("description", self.description),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
        Ok((
            SuppressionRequest {
                id,
                targets,
                starts_at_ns,
                ends_at_ns,
                created_by: self.created_by,
                comment: self.comment,
                metadata,
            },
            self.force,
        ))
    }
}

/// A suppression as Weir's API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressionView {
    pub id: String,
    pub state: SuppressionState,
    /// Each set as text matchers.
    pub targets: Vec<Vec<String>>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

impl SuppressionView {
    pub fn new(s: &Suppression, now_ns: i64) -> Self {
        SuppressionView {
            id: s.id.clone(),
            state: s.state(now_ns),
            targets: s
                .targets
                .iter()
                .map(|set| set.iter().map(ToString::to_string).collect())
                .collect(),
            starts_at: format_time(s.starts_at_ns),
            ends_at: format_time(s.ends_at_ns),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            metadata: s.metadata.clone(),
            created_at: format_time(s.created_ns),
            updated_at: format_time(s.updated_ns),
        }
    }
}

/// Alertmanager's matcher object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// Absent in clients older than Alertmanager 0.22: equality.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// Alertmanager's `PostableSilence`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmPostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<AmMatcher>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl AmPostableSilence {
    /// One Alertmanager silence is one matcher set.
    pub fn into_request(self) -> Result<SuppressionRequest> {
        let set = self
            .matchers
            .iter()
            .map(|m| {
                Matcher::new(
                    &m.name,
                    MatchOp::from_flags(m.is_equal, m.is_regex),
                    &m.value,
                )
                .map_err(|e| config_error("silence", e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SuppressionRequest {
            id: self.id.filter(|id| !id.is_empty()),
            targets: vec![set],
            starts_at_ns: Some(parse_time("startsAt", &self.starts_at)?),
            ends_at_ns: parse_time("endsAt", &self.ends_at)?,
            created_by: self.created_by,
            comment: self.comment,
            metadata: BTreeMap::new(),
        })
    }
}

/// Alertmanager's `GettableSilence`. A suppression of several sets shows
/// its first set (Alertmanager has one per silence) and says so in the
/// comment.
pub fn am_silence(s: &Suppression, now_ns: i64) -> serde_json::Value {
    let matchers: Vec<AmMatcher> = s
        .targets
        .first()
        .map(|set| {
            set.iter()
                .map(|m| AmMatcher {
                    name: m.name.clone(),
                    value: m.value.clone(),
                    is_regex: m.op.is_regex(),
                    is_equal: m.op.is_equal(),
                })
                .collect()
        })
        .unwrap_or_default();
    let comment = if s.targets.len() > 1 {
        format!(
            "{} (and {} more matcher sets: see /api/v1/suppressions/{})",
            s.comment,
            s.targets.len() - 1,
            s.id
        )
    } else {
        s.comment.clone()
    };
    serde_json::json!({
        "id": s.id,
        "matchers": matchers,
        "startsAt": format_time(s.starts_at_ns),
        "endsAt": format_time(s.ends_at_ns),
        "updatedAt": format_time(s.updated_ns),
        "createdBy": s.created_by,
        "comment": comment,
        "status": { "state": s.state(now_ns).as_str() },
    })
}
