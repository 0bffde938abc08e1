//! Context collection: what the person paged needs to act, gathered when a
//! notification is built and sent with it — the last log lines of the
//! failing instance, a sparkline of its latency, the runbook, how often it
//! fired before.
//!
//! A rule (`[[rules.NAME.collect]]`) or an event (`"collect": [...]`) lists
//! its collectors in the order they appear in the message:
//!
//! | `type` | gives | settings |
//! |---|---|---|
//! | `markdown` | templated text | `text` |
//! | `logs` | the rows of a SQL query, one line each | `sql`, `limit` (20) |
//! | `metrics` | a SQL query as a sparkline (one numeric column) or a small table | `sql`, `limit` (10) |
//! | `runbook` | a link | `id`, `url` (templated; `${runbook.id}` is the id) |
//! | `recent-alerts` | the alert's last transitions, from `weir_alert_history` | `limit` (5) |
//!
//! Every collector has a `title` and a `deadline` (default 5 s, at most
//! 60 s). They run concurrently, so a notification waits for its context at
//! most as long as the longest deadline; a collector that fails or runs out
//! of time is a section marked `failed` or `timed_out` with the reason, and
//! the rest of the message goes out as usual.
//!
//! **SQL placeholders are bound, never spliced.** `${context.NAME}`,
//! `${labels.NAME}`, `${alert.monitor}`, `${alert.priority}`,
//! `${alert.fingerprint}` and `${alert.since}` (when this episode began, a
//! timestamp) become `$1`, `$2`, … and the alert's values are bound to them
//! as values. A context value holding a quote is compared as the string it
//! is; it cannot end a literal or add a clause. A placeholder inside quotes
//! or a comment is refused at load, as is a hand-written `$1`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weir_query::QueryEngine;

use crate::alerts::AlertSnapshot;
use crate::template::{Context, KnownLabels, Template, label_placeholder};
use crate::{Result, config_error, parse_duration};

const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// Collectors one rule or event may list.
pub const MAX_COLLECTORS: usize = 16;
/// Rows a collector's query may return before it fails (a query without a
/// `LIMIT` over a big table): the section shows at most `limit` of them.
const MAX_QUERY_ROWS: usize = 1_000;
const MAX_LIMIT: u32 = 100;
/// Characters of one line of a section, and of a whole section.
const MAX_LINE_CHARS: usize = 300;
const MAX_SECTION_CHARS: usize = 4_000;
/// Firing alerts of one notification whose context is collected: a group
/// of 500 failures shows the context of its first few, not 500 times.
pub const MAX_ALERTS_WITH_CONTEXT: usize = 3;

/// One collector as written in config or an event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Markdown(Template),
    Logs { sql: BoundSql, limit: usize },
    Metrics { sql: BoundSql, limit: usize },
    Runbook { id: Template, url: Template },
    RecentAlerts { limit: usize },
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Markdown(_) => "markdown",
            Kind::Logs { .. } => "logs",
            Kind::Metrics { .. } => "metrics",
            Kind::Runbook { .. } => "runbook",
            Kind::RecentAlerts { .. } => "recent-alerts",
        }
    }
}

/// A checked collector.
#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    section: CollectorSection,
    title: String,
    deadline: Duration,
    kind: Kind,
}

impl Collector {
    /// Checks `section`; `what` names it in errors (`rules.x.collect[0]`),
    /// `labels` are the labels its alerts will have, if known.
    pub fn parse(what: &str, section: &CollectorSection, labels: KnownLabels<'_>) -> Result<Self> {
        let key = |k: &str| format!("{what}.{k}");
        let required = |k: &str, value: &Option<String>| -> Result<String> {
            value
                .clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    config_error(key(k), format!("a {} collector needs it", section.kind))
                })
        };
        let limit = |default: u32| -> Result<usize> {
            match section.limit {
                None => Ok(default as usize),
                Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n as usize),
                Some(n) => Err(config_error(
                    key("limit"),
                    format!("{n} is not between 1 and {MAX_LIMIT}"),
                )),
            }
        };
        let unused = |keys: &[(&str, bool)]| -> Result<()> {
            match keys.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(config_error(
                    key(k),
                    format!("a {} collector does not take it", section.kind),
                )),
                None => Ok(()),
            }
        };
        let s = section;
        let kind = match s.kind.as_str() {
            "markdown" => {
                unused(&[
                    ("sql", s.sql.is_some()),
                    ("limit", s.limit.is_some()),
                    ("id", s.id.is_some()),
                    ("url", s.url.is_some()),
                ])?;
                Kind::Markdown(Template::parse(
                    &key("text"),
                    &required("text", &s.text)?,
                    labels,
                )?)
            }
            "logs" | "metrics" => {
                unused(&[
                    ("text", s.text.is_some()),
                    ("id", s.id.is_some()),
                    ("url", s.url.is_some()),
                ])?;
                let sql = BoundSql::parse(&key("sql"), &required("sql", &s.sql)?, labels)?;
                if s.kind == "logs" {
                    Kind::Logs {
                        sql,
                        limit: limit(20)?,
                    }
                } else {
                    Kind::Metrics {
                        sql,
                        limit: limit(10)?,
                    }
                }
            }
            "runbook" => {
                unused(&[
                    ("text", s.text.is_some()),
                    ("sql", s.sql.is_some()),
                    ("limit", s.limit.is_some()),
                ])?;
                let id = required("id", &s.id)?;
                // `${runbook.id}` in the URL is the id's own template.
                let url = required("url", &s.url)?.replace("${runbook.id}", &id);
                Kind::Runbook {
                    id: Template::parse(&key("id"), &id, labels)?,
                    url: Template::parse(&key("url"), &url, labels)?,
                }
            }
            "recent-alerts" => {
                unused(&[
                    ("text", s.text.is_some()),
                    ("sql", s.sql.is_some()),
                    ("id", s.id.is_some()),
                    ("url", s.url.is_some()),
                ])?;
                Kind::RecentAlerts { limit: limit(5)? }
            }
            other => {
                return Err(config_error(
                    key("type"),
                    format!(
                        "unknown collector {other:?} (markdown, logs, metrics, runbook, recent-alerts)"
                    ),
                ));
            }
        };
        let deadline = match &s.deadline {
            Some(text) => {
                let d = parse_duration(&key("deadline"), text)?;
                if d.is_zero() || d > MAX_DEADLINE {
                    return Err(config_error(
                        key("deadline"),
                        format!("{text} is not more than 0 and at most 60s"),
                    ));
                }
                d
            }
            None => DEFAULT_DEADLINE,
        };
        let title = match &s.title {
            Some(t) if t.chars().count() > 200 => {
                return Err(config_error(key("title"), "longer than 200 characters"));
            }
            Some(t) => t.clone(),
            None => match &kind {
                Kind::Markdown(_) => "Notes".into(),
                Kind::Logs { .. } => "Logs".into(),
                Kind::Metrics { .. } => "Metrics".into(),
                Kind::Runbook { .. } => "Runbook".into(),
                Kind::RecentAlerts { .. } => "Recent alerts".into(),
            },
        };
        Ok(Self {
            section: s.clone(),
            title,
            deadline,
            kind,
        })
    }
}

/// The ordered collectors of a rule or an event; cheap to clone into every
/// alert they apply to, and saved with it as the sections they came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collectors(Arc<[Collector]>);

impl Collectors {
    /// Checks every section; `what` names the list (`rules.x.collect`).
    pub fn parse(
        what: &str,
        sections: &[CollectorSection],
        labels: KnownLabels<'_>,
    ) -> Result<Self> {
        if sections.len() > MAX_COLLECTORS {
            return Err(config_error(
                what,
                format!(
                    "{} collectors, more than the {MAX_COLLECTORS} allowed",
                    sections.len()
                ),
            ));
        }
        let collectors = sections
            .iter()
            .enumerate()
            .map(|(i, s)| Collector::parse(&format!("{what}[{i}]"), s, labels))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(collectors.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Collectors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| &c.section))
    }
}

impl<'de> Deserialize<'de> for Collectors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sections = Vec::<CollectorSection>::deserialize(deserializer)?;
        Collectors::parse("collect", &sections, None).map_err(serde::de::Error::custom)
    }
}

/// A value an alert gives a bound placeholder.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Label(String),
    Monitor,
    Priority,
    Fingerprint,
    Since,
}

/// SQL whose placeholders are bound as values: `${context.x}` → `$n`.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundSql {
    sql: String,
    params: Vec<Param>,
}

impl BoundSql {
    pub fn parse(what: &str, sql: &str, labels: KnownLabels<'_>) -> Result<Self> {
        if sql.len() > weir_query::MAX_SQL_BYTES {
            return Err(config_error(what, "longer than a query may be"));
        }
        let mut out = String::with_capacity(sql.len());
        let mut params: Vec<Param> = Vec::new();
        let mut chars = sql.char_indices().peekable();
        // Inside a quoted string or identifier: the closing quote.
        let mut quote: Option<char> = None;
        while let Some((at, c)) = chars.next() {
            if let Some(q) = quote {
                if c == '$' && sql[at..].starts_with("${") {
                    return Err(config_error(
                        what,
                        "a placeholder inside quotes: write ${context.NAME} bare — it is bound as a value, so it needs no quotes",
                    ));
                }
                out.push(c);
                if c == q {
                    // A doubled quote is an escaped one.
                    if chars.peek().is_some_and(|&(_, next)| next == q) {
                        out.push(q);
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                continue;
            }
            match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '-' if sql[at..].starts_with("--") => {
                    let end = sql[at..].find('\n').map_or(sql.len(), |n| at + n);
                    refuse_placeholder_in_comment(what, &sql[at..end])?;
                    out.push_str(&sql[at..end]);
                    while chars.peek().is_some_and(|&(i, _)| i < end) {
                        chars.next();
                    }
                }
                '/' if sql[at..].starts_with("/*") => {
                    let end = sql[at + 2..]
                        .find("*/")
                        .map_or(sql.len(), |n| at + 2 + n + 2);
                    refuse_placeholder_in_comment(what, &sql[at..end])?;
                    out.push_str(&sql[at..end]);
                    while chars.peek().is_some_and(|&(i, _)| i < end) {
                        chars.next();
                    }
                }
                '$' if sql[at..].starts_with("${") => {
                    let body = &sql[at + 2..];
                    let end = body
                        .find('}')
                        .ok_or_else(|| config_error(what, "unclosed placeholder ${"))?;
                    let param = param(what, body[..end].trim(), labels)?;
                    let n = match params.iter().position(|p| *p == param) {
                        Some(i) => i + 1,
                        None => {
                            params.push(param);
                            params.len()
                        }
                    };
                    let _ = write!(out, "${n}");
                    let close = at + 2 + end;
                    while chars.peek().is_some_and(|&(i, _)| i <= close) {
                        chars.next();
                    }
                }
                '$' if chars.peek().is_some_and(|&(_, next)| next.is_ascii_digit()) => {
                    return Err(config_error(
                        what,
                        "write placeholders as ${context.NAME}, ${alert.monitor}, …; $1-style parameters are Weir's to number",
                    ));
                }
                _ => out.push(c),
            }
        }
        if quote.is_some() {
            return Err(config_error(what, "an unclosed quote"));
        }
        Ok(Self { sql: out, params })
    }

    fn values(&self, alert: &AlertSnapshot) -> Vec<ScalarValue> {
        self.params
            .iter()
            .map(|p| match p {
                // A label the alert lacks is NULL: it equals nothing.
                Param::Label(name) => ScalarValue::Utf8(alert.labels.get(name).cloned()),
                Param::Monitor => ScalarValue::Utf8(Some(alert.rule.clone())),
                Param::Priority => ScalarValue::Utf8(Some(alert.priority.as_str().into())),
                Param::Fingerprint => ScalarValue::Utf8(Some(alert.fingerprint.clone())),
                Param::Since => ScalarValue::TimestampNanosecond(
                    Some(alert.active_since_ns),
                    Some(weir_model::TIME_ZONE.into()),
                ),
            })
            .collect()
    }
}

fn refuse_placeholder_in_comment(what: &str, comment: &str) -> Result<()> {
    if comment.contains("${") {
        return Err(config_error(what, "a placeholder inside a comment"));
    }
    Ok(())
}

fn param(what: &str, name: &str, labels: KnownLabels<'_>) -> Result<Param> {
    Ok(match name {
        "alert.monitor" | "rule.name" => Param::Monitor,
        "alert.priority" | "rule.priority" => Param::Priority,
        "alert.fingerprint" => Param::Fingerprint,
        "alert.since" => Param::Since,
        _ => match label_placeholder(what, name, labels)? {
            Some(label) => Param::Label(label),
            None => {
                return Err(config_error(
                    what,
                    format!(
                        "unknown placeholder ${{{name}}}; known: ${{context.NAME}}, ${{alert.monitor}}, ${{alert.priority}}, ${{alert.fingerprint}}, ${{alert.since}}"
                    ),
                ));
            }
        },
    })
}

/// How a collector fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionStatus {
    Ok,
    Failed,
    TimedOut,
}

impl SectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SectionStatus::Ok => "ok",
            SectionStatus::Failed => "failed",
            SectionStatus::TimedOut => "timed_out",
        }
    }
}

/// What one collector gave, as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    pub collector: &'static str,
    pub title: String,
    pub status: SectionStatus,
    /// Markdown-ish text: lines, a sparkline, a fixed-width table.
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// The sections collected for one alert of a notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertContext {
    pub fingerprint: String,
    pub sections: Vec<Section>,
}

/// Runs the collectors of the first [`MAX_ALERTS_WITH_CONTEXT`] firing
/// alerts that have any, all at once; returns within the longest deadline.
pub async fn collect_for(query: &QueryEngine, alerts: &[AlertSnapshot]) -> Vec<AlertContext> {
    let chosen = alerts
        .iter()
        .filter(|a| a.state == crate::AlertState::Firing && !a.collect.is_empty())
        .take(MAX_ALERTS_WITH_CONTEXT);
    futures::future::join_all(chosen.map(|alert| async move {
        AlertContext {
            fingerprint: alert.fingerprint.clone(),
            sections: collect(query, &alert.collect, alert).await,
        }
    }))
    .await
}

/// Runs `collectors` for `alert`, concurrently, each within its deadline.
pub async fn collect(
    query: &QueryEngine,
    collectors: &Collectors,
    alert: &AlertSnapshot,
) -> Vec<Section> {
    futures::future::join_all(collectors.0.iter().map(|c| run_one(query, c, alert))).await
}

async fn run_one(query: &QueryEngine, collector: &Collector, alert: &AlertSnapshot) -> Section {
    let started = Instant::now();
    let mut section = Section {
        collector: collector.kind.name(),
        title: collector.title.clone(),
        status: SectionStatus::Ok,
        text: String::new(),
        url: None,
        error: None,
        elapsed: Duration::ZERO,
    };
    // Dropping the future on timeout cancels the query with it.
    match tokio::time::timeout(collector.deadline, gather(query, collector, alert)).await {
        Ok(Ok((text, url))) => {
            section.text = text;
            section.url = url;
        }
        Ok(Err(e)) => {
            section.status = SectionStatus::Failed;
            section.error = Some(truncate(&e, MAX_LINE_CHARS));
        }
        Err(_) => {
            section.status = SectionStatus::TimedOut;
            section.error = Some(format!(
                "no answer within its deadline of {}",
                humantime::format_duration(collector.deadline)
            ));
        }
    }
    section.elapsed = started.elapsed();
    section
}

async fn gather(
    query: &QueryEngine,
    collector: &Collector,
    alert: &AlertSnapshot,
) -> Result<(String, Option<String>), String> {
    let cx = Context {
        rule: &alert.rule,
        priority: alert.priority.as_str(),
        labels: &alert.labels,
        value: alert.last_value,
    };
    match &collector.kind {
        Kind::Markdown(text) => Ok((truncate(&text.render(&cx), MAX_SECTION_CHARS), None)),
        Kind::Runbook { id, url } => {
            let escaped = alert
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), percent_encode(v)))
                .collect();
            let url_cx = Context {
                labels: &escaped,
                ..cx
            };
            Ok((id.render(&cx), Some(url.render(&url_cx))))
        }
        Kind::Logs { sql, limit } => {
            let answer = run(query, sql, alert).await?;
            Ok((lines(&answer.batches, *limit)?, None))
        }
        Kind::Metrics { sql, limit } => {
            let answer = run(query, sql, alert).await?;
            Ok((metrics(&answer.batches, *limit)?, None))
        }
        Kind::RecentAlerts { limit } => {
            let sql = BoundSql {
                sql: format!(
                    "SELECT time, to_state, summary FROM {} WHERE fingerprint = $1 ORDER BY time DESC LIMIT {limit}",
                    crate::tables::ALERT_HISTORY
                ),
                params: vec![Param::Fingerprint],
            };
            let answer = run(query, &sql, alert).await?;
            Ok((lines(&answer.batches, *limit)?, None))
        }
    }
}

async fn run(
    query: &QueryEngine,
    sql: &BoundSql,
    alert: &AlertSnapshot,
) -> Result<weir_query::QueryResult, String> {
    query
        .sql_bound(&sql.sql, sql.values(alert), MAX_QUERY_ROWS)
        .await
        .map_err(|e| e.to_string())
}

/// Each row as one line, its values separated by two spaces.
fn lines(batches: &[RecordBatch], limit: usize) -> Result<String, String> {
    let rows: Vec<Vec<String>> = formatted_rows(batches, limit)?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut text = String::new();
    for row in &rows {
        let line = truncate(&row.join("  "), MAX_LINE_CHARS);
        if text.len() + line.len() > MAX_SECTION_CHARS {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    if total > rows.len() {
        let _ = writeln!(text, "… {} more", total - rows.len());
    }
    if total == 0 {
        text.push_str("(no rows)\n");
    }
    Ok(text)
}

fn formatted_rows(batches: &[RecordBatch], limit: usize) -> Result<Vec<Vec<String>>, String> {
    // Seconds are enough in a page; Weir's times carry nanoseconds.
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%SZ"));
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            if rows.len() == limit {
                return Ok(rows);
            }
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// One numeric column: a sparkline of its values in answer order, with
/// first, last, min and max. Otherwise: a fixed-width table.
fn metrics(batches: &[RecordBatch], limit: usize) -> Result<String, String> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok("(no rows)\n".into());
    };
    let numeric: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type().is_numeric())
        .map(|(i, _)| i)
        .collect();
    if let [column] = numeric[..] {
        let name = schema.field(column).name().clone();
        let mut values = Vec::new();
        for batch in batches {
            let cast = arrow::compute::cast(batch.column(column), &DataType::Float64)
                .map_err(|e| e.to_string())?;
            let cast = cast.as_primitive::<Float64Type>();
            values.extend(
                (0..cast.len())
                    .filter(|&i| cast.is_valid(i))
                    .map(|i| cast.value(i)),
            );
        }
        if values.len() >= 2 {
            return Ok(sparkline(&name, &values));
        }
    }
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = vec![header];
    rows.extend(formatted_rows(batches, limit)?);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count().min(40))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{:<w$}", truncate(v, 40), w = *w))
            .collect();
        let line = truncate(cells.join(" | ").trim_end(), MAX_LINE_CHARS);
        if text.len() + line.len() > MAX_SECTION_CHARS {
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

fn sparkline(name: &str, values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    // At most 60 points: wider lines wrap in chat.
    let step = values.len().div_ceil(60);
    let points: Vec<f64> = values
        .chunks(step)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    let line: String = points
        .iter()
        .map(|v| {
            let level = if span > 0.0 {
                ((v - min) / span * 7.0).round() as usize
            } else {
                0
            };
            BARS[level.min(7)]
        })
        .collect();
    format!(
        "{name}: {line}  first {} last {} (min {}, max {})\n",
        short(values[0]),
        short(values[values.len() - 1]),
        short(min),
        short(max)
    )
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, so a label
/// value is one path segment or query value of a runbook URL.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn known(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placeholders_become_numbered_parameters() {
        let labels = known(&["service_name", "instance"]);
        let sql = BoundSql::parse(
            "q",
            "SELECT message FROM logs WHERE service_name = ${context.service_name} \
             AND instance = ${labels.instance} AND time > ${alert.since} - INTERVAL '10 minutes' \
             AND note <> 'it''s ${' -- ${ comment is refused below\n",
            Some(&labels),
        );
        // The comment holds a placeholder: refused.
        assert!(sql.is_err());
        let sql = BoundSql::parse(
            "q",
            "SELECT message FROM logs WHERE service_name = ${context.service_name} \
             AND (instance = ${context.instance} OR service_name = ${context.service_name}) \
             AND note <> 'it''s $5' AND time > ${alert.since}",
            Some(&labels),
        )
        .unwrap();
        assert_eq!(
            sql.sql,
            "SELECT message FROM logs WHERE service_name = $1 \
             AND (instance = $2 OR service_name = $1) \
             AND note <> 'it''s $5' AND time > $3"
        );
        assert_eq!(
            sql.params,
            vec![
                Param::Label("service_name".into()),
                Param::Label("instance".into()),
                Param::Since
            ]
        );
    }

    #[test]
    fn splicing_mistakes_are_load_errors() {
        let labels = known(&["service_name"]);
        for bad in [
            "SELECT 1 WHERE s = '${context.service_name}'",
            "SELECT 1 WHERE \"${context.service_name}\" = 1",
            "SELECT 1 /* ${context.service_name} */",
            "SELECT 1 WHERE s = $1",
            "SELECT 1 WHERE s = ${context.servce_name}",
            "SELECT 1 WHERE s = ${alert.owner}",
            "SELECT 1 WHERE s = ${context.service_name",
            "SELECT 'unclosed",
        ] {
            let err = BoundSql::parse("rules.x.collect[0].sql", bad, Some(&labels)).unwrap_err();
            assert!(
                err.to_string().starts_with("rules.x.collect[0].sql: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn collectors_check_their_settings() {
        let section = |pairs: &str| -> CollectorSection { toml::from_str(pairs).unwrap() };
        let ok = [
            "type = 'markdown'\ntext = 'Call ${context.team}'",
            "type = 'logs'\nsql = 'SELECT 1'\nlimit = 5\ndeadline = '2s'",
            "type = 'metrics'\nsql = 'SELECT 1'",
            "type = 'runbook'\nid = 'db-${context.team}'\nurl = 'https://wiki/${runbook.id}'",
            "type = 'recent-alerts'",
        ];
        let labels = known(&["team"]);
        for text in ok {
            Collector::parse("c", &section(text), Some(&labels)).unwrap();
        }
        let bad = [
            "type = 'sparkles'",
            "type = 'logs'",
            "type = 'logs'\nsql = 'SELECT 1'\nlimit = 0",
            "type = 'logs'\nsql = 'SELECT 1'\nlimit = 101",
            "type = 'logs'\nsql = 'SELECT 1'\ndeadline = '61s'",
            "type = 'logs'\nsql = 'SELECT 1'\ndeadline = '0s'",
            "type = 'logs'\nsql = 'SELECT 1'\ntext = 'x'",
            "type = 'markdown'\ntext = '${context.nope}'",
            "type = 'runbook'\nid = 'x'",
        ];
        for text in bad {
            assert!(
                Collector::parse("c", &section(text), Some(&labels)).is_err(),
                "{text}"
            );
        }
        let many = vec![section("type = 'recent-alerts'"); MAX_COLLECTORS + 1];
        assert!(Collectors::parse("c", &many, None).is_err());
    }

    #[test]
    fn collectors_round_trip_as_their_sections() {
        let sections = vec![CollectorSection {
            kind: "logs".into(),
            sql: Some("SELECT 1 WHERE a = ${context.a}".into()),
            ..Default::default()
        }];
        let collectors = Collectors::parse("c", &sections, None).unwrap();
        let json = serde_json::to_string(&collectors).unwrap();
        let back: Collectors = serde_json::from_str(&json).unwrap();
        assert_eq!(back, collectors);
    }

    #[test]
    fn sparklines_and_url_escaping() {
        let line = sparkline("p99_ms", &[1.0, 2.0, 8.0, 4.0]);
        assert_eq!(line, "p99_ms: ▁▂█▄  first 1 last 4 (min 1, max 8)\n");
        assert_eq!(percent_encode("a b/c'd"), "a%20b%2Fc%27d");
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
