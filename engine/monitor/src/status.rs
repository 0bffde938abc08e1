//! The status page: each service's health now, its uptime over 24 h, 7 d
//! and 30 d, a bar per hour coloured by that hour's uptime, and the active
//! alerts. The services part is computed with SQL over `service_metrics`
//! — from an hourly (or finer) rollup of it where one is configured, which
//! reads the raw rows of the edge buckets only — and refreshed in the
//! background; the alerts are added fresh on every request. Rendered as one
//! self-contained HTML page (no scripts, no external assets) or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType};
use serde::Serialize;
use weir_query::QueryEngine;
use weir_storage::RollupDef;
use weir_storage::rollup::{CmpOp, Condition, Function, Literal};

use crate::alerts::{AlertSnapshot, AlertState};
use crate::{Error, Result};

/// Hours of bars on the page.
pub const STATUS_HOURS: i64 = 48;
const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct LastCheck {
    pub at: String,
    pub status: String,
    pub response_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourBar {
    /// Start of the hour, RFC 3339.
    pub hour: String,
    /// Percent of healthy checks; `None` when there were none.
    pub uptime: Option<f64>,
    pub checks: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `healthy`, `unhealthy`, or `unknown` (no check in 30 days).
    pub status: String,
    pub uptime_24h: Option<f64>,
    pub uptime_7d: Option<f64>,
    pub uptime_30d: Option<f64>,
    pub checks_30d: i64,
    pub last_check: Option<LastCheck>,
    pub hourly: Vec<HourBar>,
    /// Alerts firing now whose labels name this service.
    pub firing_alerts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub priority: String,
    pub state: String,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub since: String,
    pub age_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub generated_at: String,
    pub table: String,
    pub hours: i64,
    pub services: Vec<ServiceStatus>,
    pub alerts: Vec<ActiveAlert>,
    /// Alert groups with an alert firing, largest first.
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub id: String,
    /// The labels its alerts share.
    pub key: BTreeMap<String, String>,
    pub alerts: usize,
    pub firing: usize,
    pub opened: String,
    pub age_seconds: i64,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A rollup of the status table the page can count from: grouped by
/// `service_name` alone, buckets that divide an hour, with `count(*)` and
/// `count_if(status = 'healthy')`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRollup {
    pub table: String,
    pub bucket_ns: i64,
    pub checks: String,
    pub healthy: String,
}

impl StatusRollup {
    /// The first of `rollups` over `table` that fits, if any.
    pub fn find(rollups: &[std::sync::Arc<RollupDef>], table: &str) -> Option<Self> {
        rollups.iter().find_map(|def| {
            if def.source != table
                || def.group_by != ["service_name"]
                || HOUR_NS % def.bucket_ns() != 0
            {
                return None;
            }
            let checks = def
                .aggregates
                .iter()
                .find(|a| a.function == Function::Count)?;
            let healthy = def.aggregates.iter().find(|a| {
                a.function
                    == Function::CountIf(Condition {
                        column: "status".into(),
                        op: CmpOp::Eq,
                        value: Literal::String("healthy".into()),
                    })
            })?;
            Some(Self {
                table: def.name.clone(),
                bucket_ns: def.bucket_ns(),
                checks: checks.name.clone(),
                healthy: healthy.name.clone(),
            })
        })
    }
}

/// One service's line before the hours are added.
struct Summary {
    name: String,
    uptime_24h: Option<f64>,
    uptime_7d: Option<f64>,
    uptime_30d: Option<f64>,
    checks: i64,
    last: Last,
}

/// A service's newest row in the window.
#[derive(Default)]
struct Last {
    at: Option<i64>,
    status: Option<String>,
    response_ms: Option<f64>,
    error: Option<String>,
}

/// Checks and healthy checks of one service in one hour.
type Hours = BTreeMap<String, BTreeMap<i64, (i64, i64)>>;

/// The uptimes windows, newest first: 24 h, 7 d, 30 d.
const WINDOWS_NS: [i64; 3] = [24 * HOUR_NS, 7 * 24 * HOUR_NS, 30 * 24 * HOUR_NS];

/// Percent of healthy checks, as `avg(CASE WHEN healthy THEN 100.0 ELSE
/// 0.0 END)` computes it: a sum of 100.0s is exact, so this is the same
/// float.
fn percent(healthy: i64, checks: i64) -> Option<f64> {
    (checks > 0).then(|| (100.0 * healthy as f64) / checks as f64)
}

/// Computes the report over `table` (its time column `time_column`), from
/// `rollup` where one is configured.
pub async fn compute(
    query: &QueryEngine,
    table: &str,
    time_column: &str,
    has_error_column: bool,
    rollup: Option<&StatusRollup>,
) -> Result<StatusReport> {
    compute_at(
        query,
        table,
        time_column,
        has_error_column,
        rollup,
        weir_pipeline::now_ns(),
    )
    .await
}

pub(crate) async fn compute_at(
    query: &QueryEngine,
    table: &str,
    time_column: &str,
    has_error_column: bool,
    rollup: Option<&StatusRollup>,
    now_ns: i64,
) -> Result<StatusReport> {
    let first_hour_ns = first_hour_ns(now_ns);
    let (summaries, hours) = match rollup {
        None => from_raw_rows(query, table, time_column, has_error_column, now_ns).await?,
        Some(r) => from_rollup(query, table, time_column, has_error_column, r, now_ns).await?,
    };
    let services = summaries
        .into_iter()
        .map(|s| {
            let by_hour = hours.get(&s.name);
            let hourly = (0..STATUS_HOURS)
                .map(|h| {
                    let start = first_hour_ns + h * HOUR_NS;
                    let seen = by_hour.and_then(|m| m.get(&start));
                    HourBar {
                        hour: rfc3339(start),
                        uptime: seen.and_then(|&(checks, healthy)| percent(healthy, checks)),
                        checks: seen.map_or(0, |s| s.0),
                    }
                })
                .collect();
            ServiceStatus {
                status: s.last.status.clone().unwrap_or_else(|| "unknown".into()),
                uptime_24h: s.uptime_24h,
                uptime_7d: s.uptime_7d,
                uptime_30d: s.uptime_30d,
                checks_30d: s.checks,
                last_check: s.last.at.map(|at| LastCheck {
                    at: rfc3339(at),
                    status: s.last.status.clone().unwrap_or_default(),
                    response_ms: s.last.response_ms,
                    error: s.last.error.clone(),
                }),
                hourly,
                firing_alerts: 0,
                name: s.name,
            }
        })
        .collect();
    Ok(StatusReport {
        generated_at: rfc3339(now_ns),
        table: table.to_string(),
        hours: STATUS_HOURS,
        services,
        alerts: Vec::new(),
        groups: Vec::new(),
    })
}

/// The start of the page's first hourly bar.
fn first_hour_ns(now_ns: i64) -> i64 {
    (now_ns.div_euclid(HOUR_NS) - (STATUS_HOURS - 1)) * HOUR_NS
}

/// The last-check query's error column, when the table has one; `t` is the
/// quoted time column.
fn last_error(has_error_column: bool, t: &str) -> String {
    if has_error_column {
        format!(", last_value(error ORDER BY {t}) AS last_error")
    } else {
        String::new()
    }
}

/// Two passes over the raw rows: the summaries and last checks, then the
/// hours.
async fn from_raw_rows(
    query: &QueryEngine,
    table: &str,
    time_column: &str,
    has_error_column: bool,
    now_ns: i64,
) -> Result<(Vec<Summary>, Hours)> {
    let t = quote(time_column);
    let tbl = quote(table);
    let error = last_error(has_error_column, &t);
    let healthy = "CASE WHEN status = 'healthy' THEN 100.0 ELSE 0.0 END";
    let now = format!("to_timestamp_nanos({now_ns})");
    let summary_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name,
           avg({healthy}) FILTER (WHERE {t} > {now} - INTERVAL '24 hours') AS uptime_24h,
           avg({healthy}) FILTER (WHERE {t} > {now} - INTERVAL '7 days') AS uptime_7d,
           avg({healthy}) AS uptime_30d,
           count(*) AS checks,
           max({t}) AS last_at,
           last_value(status ORDER BY {t}) AS last_status,
           last_value(response_ms ORDER BY {t}) AS last_response_ms{error}
         FROM {tbl} WHERE {t} > {now} - INTERVAL '30 days' AND {t} <= {now}
         GROUP BY 1 ORDER BY 1"
    );
    let hourly_sql = raw_hours_sql(&tbl, &t, first_hour_ns(now_ns), now_ns);
    let summary = query.sql(&summary_sql).await?;
    let hourly = query.sql(&hourly_sql).await?;
    let mut hours = Hours::new();
    add_hours(&mut hours, &hourly.batches)?;
    let mut summaries = Vec::new();
    for batch in &summary.batches {
        let col = |name: &str| column(batch, name);
        let names = strings(col("service_name")?)?;
        let (u24, u7, u30) = (
            floats(col("uptime_24h")?)?,
            floats(col("uptime_7d")?)?,
            floats(col("uptime_30d")?)?,
        );
        let checks = ints(col("checks")?)?;
        let last = LastChecks::read(batch)?;
        for i in 0..batch.num_rows() {
            let Some(name) = names[i].clone() else {
                continue;
            };
            summaries.push(Summary {
                name,
                uptime_24h: u24[i],
                uptime_7d: u7[i],
                uptime_30d: u30[i],
                checks: checks[i].unwrap_or(0),
                last: last.row(i),
            });
        }
    }
    Ok((summaries, hours))
}

/// The counts from the rollup's whole buckets inside each window, plus the
/// raw rows of the buckets a window's edge cuts (at most one per window at
/// its start, and the bucket holding `now`), which is exactly the raw
/// rows' answer. The last checks are read from raw rows no older than the
/// oldest of the services' last buckets: for services that report, the
/// last hour or so.
async fn from_rollup(
    query: &QueryEngine,
    table: &str,
    time_column: &str,
    has_error_column: bool,
    rollup: &StatusRollup,
    now_ns: i64,
) -> Result<(Vec<Summary>, Hours)> {
    let b = rollup.bucket_ns;
    let t = quote(time_column);
    let tbl = quote(table);
    let rtbl = quote(&rollup.table);
    let (c, h) = (quote(&rollup.checks), quote(&rollup.healthy));
    let at = |ns: i64| format!("to_timestamp_nanos({ns})");
    // Window w holds rows with lo < t <= now; its whole buckets start in
    // [first_full, last_start).
    let lo = WINDOWS_NS.map(|w| now_ns - w);
    let first_full =
        lo.map(|lo| (lo + 1).div_euclid(b) * b + if (lo + 1).rem_euclid(b) == 0 { 0 } else { b });
    let last_start = (now_ns + 1).div_euclid(b) * b;

    let mut rollup_sums = String::new();
    let mut edge_counts = String::new();
    let mut edges = Vec::new();
    for (i, label) in ["24h", "7d", "30d"].iter().enumerate() {
        let whole = format!("{t} >= {}", at(first_full[i]));
        let _ = write!(
            rollup_sums,
            ", sum({c}) FILTER (WHERE {whole}) AS c{label}, sum({h}) FILTER (WHERE {whole}) AS h{label}"
        );
        let edge = format!(
            "{t} > {} AND ({t} < {} OR {t} >= {})",
            at(lo[i]),
            at(first_full[i]),
            at(last_start)
        );
        let _ = write!(
            edge_counts,
            ", count(*) FILTER (WHERE {edge}) AS c{label}, \
             count(*) FILTER (WHERE {edge} AND status = 'healthy') AS h{label}"
        );
        edges.push(format!(
            "({t} > {} AND {t} < {})",
            at(lo[i]),
            at(first_full[i])
        ));
    }
    let rollup_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name{rollup_sums}, max({t}) AS last_bucket
         FROM {rtbl} WHERE {t} >= {} AND {t} < {} GROUP BY 1",
        at(first_full[2]),
        at(last_start)
    );
    let edge_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name{edge_counts}
         FROM {tbl} WHERE {t} <= {} AND ({} OR {t} >= {}) GROUP BY 1",
        at(now_ns),
        edges.join(" OR "),
        at(last_start)
    );
    // name → [checks, healthy] per window, and the service's last bucket.
    let mut counts: BTreeMap<String, ([i64; 6], Option<i64>)> = BTreeMap::new();
    for (sql, from_rollup) in [(&rollup_sql, true), (&edge_sql, false)] {
        for batch in &query.sql(sql).await?.batches {
            let names = strings(column(batch, "service_name")?)?;
            let mut columns = Vec::new();
            for label in ["24h", "7d", "30d"] {
                columns.push(ints(column(batch, &format!("c{label}"))?)?);
                columns.push(ints(column(batch, &format!("h{label}"))?)?);
            }
            let last = if from_rollup {
                times(column(batch, "last_bucket")?)?
            } else {
                vec![None; batch.num_rows()]
            };
            for i in 0..batch.num_rows() {
                let Some(name) = names[i].clone() else {
                    continue;
                };
                let entry = counts.entry(name).or_insert(([0; 6], None));
                for (k, col) in columns.iter().enumerate() {
                    entry.0[k] += col[i].unwrap_or(0);
                }
                entry.1 = entry.1.max(last[i]);
            }
        }
    }

    // Every service's newest row is in or after its last whole bucket, or
    // in an edge (a service with no whole bucket: read from the window's
    // start).
    let newest_from = counts
        .values()
        .map(|(_, last)| last.unwrap_or(lo[2] + 1))
        .min()
        .unwrap_or(last_start);
    let error = last_error(has_error_column, &t);
    let last_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name, max({t}) AS last_at,
           last_value(status ORDER BY {t}) AS last_status,
           last_value(response_ms ORDER BY {t}) AS last_response_ms{error}
         FROM {tbl} WHERE {t} >= {} AND {t} > {} AND {t} <= {} GROUP BY 1",
        at(newest_from),
        at(lo[2]),
        at(now_ns)
    );
    let mut last_checks: BTreeMap<String, Last> = BTreeMap::new();
    for batch in &query.sql(&last_sql).await?.batches {
        let names = strings(column(batch, "service_name")?)?;
        let last = LastChecks::read(batch)?;
        for (i, name) in names.into_iter().enumerate() {
            if let Some(name) = name {
                last_checks.insert(name, last.row(i));
            }
        }
    }

    let first_hour_ns = first_hour_ns(now_ns);
    let hourly_rollup = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name,
           CAST(date_trunc('hour', {t}) AS BIGINT) AS hour, sum({c}) AS checks, sum({h}) AS healthy
         FROM {rtbl} WHERE {t} >= {} AND {t} < {} GROUP BY 1, 2",
        at(first_hour_ns),
        at(last_start)
    );
    let hourly_edge = raw_hours_sql(&tbl, &t, last_start.max(first_hour_ns), now_ns);
    let mut hours = Hours::new();
    add_hours(&mut hours, &query.sql(&hourly_rollup).await?.batches)?;
    add_hours(&mut hours, &query.sql(&hourly_edge).await?.batches)?;

    let summaries = counts
        .into_iter()
        .filter(|(_, (n, _))| n[4] > 0)
        .map(|(name, (n, _))| {
            let last = last_checks.remove(&name).unwrap_or_default();
            Summary {
                uptime_24h: percent(n[1], n[0]),
                uptime_7d: percent(n[3], n[2]),
                uptime_30d: percent(n[5], n[4]),
                checks: n[4],
                last,
                name,
            }
        })
        .collect();
    Ok((summaries, hours))
}

/// Checks and healthy checks per service and hour over the raw rows of
/// `tbl` (quoted; `t` its quoted time column) from `from_ns` through
/// `now_ns`: the rows `add_hours` reads.
fn raw_hours_sql(tbl: &str, t: &str, from_ns: i64, now_ns: i64) -> String {
    format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name,
           CAST(date_trunc('hour', {t}) AS BIGINT) AS hour,
           count(*) AS checks, count(*) FILTER (WHERE status = 'healthy') AS healthy
         FROM {tbl} WHERE {t} >= to_timestamp_nanos({from_ns}) AND {t} <= to_timestamp_nanos({now_ns})
         GROUP BY 1, 2"
    )
}

/// Adds rows of (service_name, hour, checks, healthy) to `hours`.
fn add_hours(hours: &mut Hours, batches: &[arrow::record_batch::RecordBatch]) -> Result<()> {
    for batch in batches {
        let names = strings(column(batch, "service_name")?)?;
        let hour = ints(column(batch, "hour")?)?;
        let checks = ints(column(batch, "checks")?)?;
        let healthy = ints(column(batch, "healthy")?)?;
        for i in 0..batch.num_rows() {
            if let (Some(name), Some(hour)) = (&names[i], hour[i]) {
                let entry = hours
                    .entry(name.clone())
                    .or_default()
                    .entry(hour)
                    .or_insert((0, 0));
                entry.0 += checks[i].unwrap_or(0);
                entry.1 += healthy[i].unwrap_or(0);
            }
        }
    }
    Ok(())
}

/// The last-check columns of a result.
struct LastChecks {
    at: Vec<Option<i64>>,
    status: Vec<Option<String>>,
    response_ms: Vec<Option<f64>>,
    error: Vec<Option<String>>,
}

impl LastChecks {
    fn row(&self, i: usize) -> Last {
        Last {
            at: self.at[i],
            status: self.status[i].clone(),
            response_ms: self.response_ms[i],
            error: self.error[i].clone(),
        }
    }

    fn read(batch: &arrow::record_batch::RecordBatch) -> Result<Self> {
        Ok(Self {
            at: times(column(batch, "last_at")?)?,
            status: strings(column(batch, "last_status")?)?,
            response_ms: floats(column(batch, "last_response_ms")?)?,
            error: match batch.column_by_name("last_error") {
                Some(c) => strings(c)?,
                None => vec![None; batch.num_rows()],
            },
        })
    }
}

fn column<'b>(batch: &'b arrow::record_batch::RecordBatch, name: &str) -> Result<&'b dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Internal(format!("status query lost column {name}")))
}

/// `report` with the alerts as they are now.
pub fn with_alerts(
    report: &StatusReport,
    alerts: Vec<AlertSnapshot>,
    groups: Vec<crate::groups::Group>,
) -> StatusReport {
    let mut report = report.clone();
    for service in &mut report.services {
        service.firing_alerts = alerts
            .iter()
            .filter(|a| {
                a.state == AlertState::Firing
                    && a.labels
                        .get("service_name")
                        .is_some_and(|s| *s == service.name)
            })
            .count();
    }
    let now_ns = weir_pipeline::now_ns();
    report.alerts = active_alerts(alerts, now_ns);
    report.groups = groups
        .into_iter()
        .map(|g| GroupStatus {
            firing: g
                .members
                .values()
                .filter(|m| m.state == AlertState::Firing)
                .count(),
            alerts: g.members.len(),
            opened: rfc3339(g.opened_ns),
            age_seconds: (now_ns - g.opened_ns) / 1_000_000_000,
            id: g.id,
            key: g.key,
        })
        .filter(|g| g.firing > 0)
        .collect();
    report
        .groups
        .sort_by_key(|g| std::cmp::Reverse((g.firing, g.age_seconds)));
    report
}

fn active_alerts(alerts: Vec<AlertSnapshot>, now_ns: i64) -> Vec<ActiveAlert> {
    let mut active: Vec<ActiveAlert> = alerts
        .into_iter()
        .filter(|a| matches!(a.state, AlertState::Firing | AlertState::Pending))
        .map(|a| ActiveAlert {
            rule: a.rule,
            priority: a.priority.to_string(),
            state: a.state.as_str().into(),
            summary: a.summary,
            labels: a.labels,
            since: rfc3339(a.since_ns),
            age_seconds: (now_ns - a.since_ns) / 1_000_000_000,
        })
        .collect();
    // Firing before pending, high before low, oldest first.
    active.sort_by(|a, b| {
        (a.state != "firing", a.priority != "high", -a.age_seconds).cmp(&(
            b.state != "firing",
            b.priority != "high",
            -b.age_seconds,
        ))
    });
    active
}

/// The report before the table has any rows.
pub fn compute_empty(table: &str) -> StatusReport {
    StatusReport {
        generated_at: rfc3339(weir_pipeline::now_ns()),
        table: table.to_string(),
        hours: STATUS_HOURS,
        services: Vec::new(),
        alerts: Vec::new(),
        groups: Vec::new(),
    }
}

/// A SQL identifier, quoted.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn strings(array: &dyn Array) -> Result<Vec<Option<String>>> {
    let utf8 = arrow::compute::cast(array, &DataType::Utf8)
        .map_err(|e| Error::Internal(format!("status: {e}")))?;
    let s = utf8.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
        .collect())
}

fn floats(array: &dyn Array) -> Result<Vec<Option<f64>>> {
    let f = arrow::compute::cast(array, &DataType::Float64)
        .map_err(|e| Error::Internal(format!("status: {e}")))?;
    let f = f.as_primitive::<Float64Type>();
    Ok((0..f.len())
        .map(|i| f.is_valid(i).then(|| f.value(i)))
        .collect())
}

fn ints(array: &dyn Array) -> Result<Vec<Option<i64>>> {
    let n = arrow::compute::cast(array, &DataType::Int64)
        .map_err(|e| Error::Internal(format!("status: {e}")))?;
    let n = n.as_primitive::<Int64Type>();
    Ok((0..n.len())
        .map(|i| n.is_valid(i).then(|| n.value(i)))
        .collect())
}

fn times(array: &dyn Array) -> Result<Vec<Option<i64>>> {
    let t = arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .map_err(|e| Error::Internal(format!("status: {e}")))?;
    let t = t.as_primitive::<TimestampNanosecondType>();
    Ok((0..t.len())
        .map(|i| t.is_valid(i).then(|| t.value(i)))
        .collect())
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Colour class of an uptime percentage.
fn grade(uptime: Option<f64>) -> &'static str {
    match uptime {
        None => "none",
        Some(u) if u >= 99.9 => "ok",
        Some(u) if u >= 99.0 => "warn",
        Some(u) if u >= 95.0 => "bad",
        Some(_) => "down",
    }
}

fn pct(uptime: Option<f64>) -> String {
    uptime.map_or_else(|| "–".into(), |u| format!("{u:.2}%"))
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

const STYLE: &str = "
:root{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2430;background:#f6f7f9}
body{margin:0 auto;max-width:1100px;padding:12px}
h1{font-size:1.4rem;margin:.4rem 0}
.summary{padding:10px 14px;border-radius:8px;margin:8px 0 14px;font-weight:600}
.summary.ok{background:#dff5e3;color:#14532d}.summary.down{background:#fde2e1;color:#7f1d1d}
section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;margin-bottom:14px}
h2{font-size:1rem;margin:0;padding:10px 14px;border-bottom:1px solid #e3e6ea}
.alert{padding:8px 14px;border-bottom:1px solid #f0f1f3;display:flex;gap:8px;flex-wrap:wrap;align-items:baseline}
.prio{font-size:.75rem;font-weight:700;padding:1px 6px;border-radius:4px;text-transform:uppercase}
.prio.high{background:#b91c1c;color:#fff}.prio.low{background:#e5e7eb}
.svc{padding:10px 14px;border-bottom:1px solid #f0f1f3}
.svc-head{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:baseline}
.name{font-weight:600;min-width:10rem;overflow-wrap:anywhere}
.state{font-size:.8rem;font-weight:700;padding:1px 8px;border-radius:10px}
.state.healthy{background:#dff5e3;color:#14532d}.state.unhealthy{background:#fde2e1;color:#7f1d1d}.state.unknown{background:#eceef1}
.up{font-size:.85rem;color:#4b5563}
.bars{display:flex;gap:1px;margin-top:6px;height:22px}
.bars span{flex:1;border-radius:2px;min-width:2px}
.ok{background:#22c55e}.warn{background:#eab308}.bad{background:#f97316}.down{background:#dc2626}.none{background:#e5e7eb}
.last{font-size:.8rem;color:#6b7280;margin-top:4px;overflow-wrap:anywhere}
footer{font-size:.75rem;color:#6b7280;text-align:center;margin:10px}
";

/// The page for `report`.
pub fn render_status_html(report: &StatusReport) -> String {
    let mut html = String::with_capacity(4096 + report.services.len() * 2048);
    let failing = report
        .services
        .iter()
        .filter(|s| s.status == "unhealthy")
        .count();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>Status — Weir</title><style>{STYLE}</style></head><body>\
         <h1>Service status</h1>"
    );
    let (class, text) = if failing == 0 {
        (
            "ok",
            format!("All {} services healthy", report.services.len()),
        )
    } else {
        (
            "down",
            format!("{failing} of {} services failing", report.services.len()),
        )
    };
    let _ = write!(
        html,
        "<div class=\"summary {class}\" id=\"summary\" data-failing=\"{failing}\">{}</div>",
        escape(&text)
    );
    let _ = write!(
        html,
        "<section id=\"alerts\"><h2>Active alerts ({})</h2>",
        report.alerts.len()
    );
    if report.alerts.is_empty() {
        html.push_str("<div class=\"alert\">None.</div>");
    }
    for a in &report.alerts {
        let what = if a.summary.is_empty() {
            a.rule.clone()
        } else {
            a.summary.clone()
        };
        let _ = write!(
            html,
            "<div class=\"alert\" data-rule=\"{}\" data-state=\"{}\"><span class=\"prio {}\">{}</span>\
             <span>{}</span><span class=\"up\">{} · {} for {}</span></div>",
            escape(&a.rule),
            escape(&a.state),
            escape(&a.priority),
            escape(&a.priority),
            escape(&what),
            escape(&a.rule),
            escape(&a.state),
            age(a.age_seconds)
        );
    }
    html.push_str("</section>");
    if !report.groups.is_empty() {
        let _ = write!(
            html,
            "<section id=\"groups\"><h2>Alert groups ({})</h2>",
            report.groups.len()
        );
        for g in &report.groups {
            let key: Vec<String> = g.key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(
                html,
                "<div class=\"alert\" data-group=\"{}\" data-firing=\"{}\"><span>{}</span>\
                 <span class=\"up\">{} of {} firing · for {}</span></div>",
                escape(&g.id),
                g.firing,
                escape(&key.join(" ")),
                g.firing,
                g.alerts,
                age(g.age_seconds)
            );
        }
        html.push_str("</section>");
    }
    let _ = write!(
        html,
        "<section id=\"services\"><h2>Services ({}) — last {} hours</h2>",
        report.services.len(),
        report.hours
    );
    for s in &report.services {
        let _ = write!(
            html,
            "<div class=\"svc\" data-service=\"{}\" data-status=\"{}\"><div class=\"svc-head\">\
             <span class=\"name\">{}</span><span class=\"state {}\">{}</span>\
             <span class=\"up\">24h {} · 7d {} · 30d {}</span></div><div class=\"bars\">",
            escape(&s.name),
            escape(&s.status),
            escape(&s.name),
            escape(&s.status),
            escape(&s.status),
            pct(s.uptime_24h),
            pct(s.uptime_7d),
            pct(s.uptime_30d)
        );
        for bar in &s.hourly {
            let _ = write!(
                html,
                "<span class=\"{}\" title=\"{} — {} ({} checks)\"></span>",
                grade(bar.uptime),
                escape(&bar.hour),
                pct(bar.uptime),
                bar.checks
            );
        }
        html.push_str("</div>");
        if let Some(last) = &s.last_check {
            let ms = last
                .response_ms
                .map_or_else(|| "no response".into(), |ms| format!("{ms:.0} ms"));
            let error = last
                .error
                .as_deref()
                .map_or_else(String::new, |e| format!(" · {}", escape(e)));
            let _ = write!(
                html,
                "<div class=\"last\">last check {} · {} · {}{}</div>",
                escape(&last.at),
                escape(&last.status),
                ms,
                error
            );
        }
        html.push_str("</div>");
    }
    let _ = write!(
        html,
        "</section><footer>Generated {} by Weir · <a href=\"/api/v1/status\">JSON</a></footer></body></html>",
        escape(&report.generated_at)
    );
    html
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use weir_model::{ColumnType, Value, WriteBatchBuilder};
    use weir_query::QueryConfig;
    use weir_storage::{Durability, Store, StoreConfig, WalConfig};

    use super::*;

    fn rollup(bucket_secs: u64) -> RollupDef {
        let aggregates = [
            ("n".to_string(), "count(*)".to_string()),
            ("ok".to_string(), "count_if(status = 'healthy')".to_string()),
        ];
        RollupDef::new(
            "service_metrics_r",
            "service_metrics",
            Duration::from_secs(bucket_secs),
            vec!["service_name".into()],
            &aggregates,
        )
        .unwrap()
    }

    /// The page from the rollup is the page from the raw rows, at instants
    /// that cut buckets, with rows older than 30 days, rows stamped after
    /// now, a service silent for days, and errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_from_a_rollup_is_the_page_from_raw_rows() {
        for bucket_secs in [3600, 600] {
            let dir = tempfile::tempdir().unwrap();
            let store = tokio::task::block_in_place(|| {
                Store::open(StoreConfig {
                    data_dir: dir.path().to_path_buf(),
                    wal: WalConfig {
                        durability: Durability::None,
                        segment_bytes: 64 << 20,
                        queue_depth: 16,
                        max_group_bytes: 1 << 20,
                    },
                    persist_buffer_bytes: 1 << 30,
                    max_buffer_bytes: 1 << 30,
                    tables: Default::default(),
                    max_columns_per_table: 1_000,
                    compaction_min_files: 8,
                    file_delete_grace: Duration::from_millis(10),
                    rollups: vec![rollup(bucket_secs)],
                })
            })
            .unwrap();
            let now_ns = 1_790_000_000_000_000_000 + 1_234_567_891;
            let mut rng = StdRng::seed_from_u64(bucket_secs);
            for round in 0..4 {
                let mut b = WriteBatchBuilder::new(1);
                let t = b.table("service_metrics", "recorded_at").unwrap();
                let service = b.column(t, "service_name", ColumnType::Tag, 0).unwrap();
                let status = b.column(t, "status", ColumnType::String, 0).unwrap();
                let ms = b.column(t, "response_ms", ColumnType::F64, 0).unwrap();
                let error = b.column(t, "error", ColumnType::String, 0).unwrap();
                for row in 0..3_000 {
                    let svc = rng.random_range(0..6);
                    // svc-5 went silent 10 days ago.
                    let oldest = if svc == 5 { 10 * 24 } else { 0 };
                    let ago = rng.random_range(oldest * HOUR_NS..33 * 24 * HOUR_NS);
                    let mut at = now_ns - ago + rng.random_range(-HOUR_NS / 2..HOUR_NS / 60);
                    if row % 50 == 0 {
                        // Stamped after now, in now's bucket and later.
                        at = now_ns + rng.random_range(1..2 * HOUR_NS);
                    }
                    b.begin_point(t, row, at).unwrap();
                    b.set(t, service, row, Value::Tag(&format!("svc-{svc}")))
                        .unwrap();
                    let healthy = rng.random_bool(0.8);
                    let s = if healthy { "healthy" } else { "unhealthy" };
                    b.set(t, status, row, Value::String(s)).unwrap();
                    b.set(t, ms, row, Value::F64(rng.random_range(1.0..900.0)))
                        .unwrap();
                    if !healthy {
                        b.set(t, error, row, Value::String("timeout")).unwrap();
                    }
                }
                store.write(b.finish().unwrap()).await.unwrap();
                if round < 2 {
                    store.persist().await.unwrap();
                }
            }
            let query = QueryEngine::new(
                store.clone(),
                QueryConfig {
                    memory_limit: 256 << 20,
                    timeout: Duration::from_secs(30),
                    target_partitions: 2,
                    max_result_bytes: 64 << 20,
                },
            )
            .unwrap();
            let found = StatusRollup::find(&store.rollups(), "service_metrics").unwrap();
            assert_eq!(found.bucket_ns, bucket_secs as i64 * 1_000_000_000);
            for shift in [0, HOUR_NS / 3, HOUR_NS - 1] {
                let at = now_ns + shift;
                let compute =
                    |rollup| compute_at(&query, "service_metrics", "recorded_at", true, rollup, at);
                let raw = serde_json::to_value(compute(None).await.unwrap()).unwrap();
                let rolled = serde_json::to_value(compute(Some(&found)).await.unwrap()).unwrap();
                assert_eq!(raw["services"].as_array().unwrap().len(), 6);
                assert_eq!(raw, rolled, "bucket {bucket_secs}s, now + {shift}");
            }
        }
    }

    #[test]
    fn only_a_fitting_rollup_is_used() {
        let fits = std::sync::Arc::new(rollup(3600));
        assert!(StatusRollup::find(std::slice::from_ref(&fits), "service_metrics").is_some());
        assert!(StatusRollup::find(&[fits], "other").is_none());
        let day = std::sync::Arc::new(rollup(86_400));
        assert!(StatusRollup::find(&[day], "service_metrics").is_none());
        let other_status = RollupDef::new(
            "r",
            "service_metrics",
            Duration::from_secs(60),
            vec!["service_name".into()],
            &[
                ("n".into(), "count(*)".into()),
                ("ok".into(), "count_if(status = 'up')".into()),
            ],
        )
        .unwrap();
        assert!(
            StatusRollup::find(&[std::sync::Arc::new(other_status)], "service_metrics").is_none()
        );
    }
}
