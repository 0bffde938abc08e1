//! The status page: each service's health now, its uptime over 24 h, 7 d
//! and 30 d, a bar per hour coloured by that hour's uptime, and the active
//! alerts. The services part is computed with two SQL queries over
//! `service_metrics` (one pass for the summaries and last checks, one for
//! the hours) and refreshed in the background; the alerts are added fresh
//! on every request. Rendered as one self-contained HTML page (no scripts,
//! no external assets) or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType};
use serde::Serialize;
use weir_query::QueryEngine;

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

/// Computes the report over `table` (its time column `time_column`).
pub async fn compute(
    query: &QueryEngine,
    table: &str,
    time_column: &str,
    has_error_column: bool,
) -> Result<StatusReport> {
    let now_ns = weir_pipeline::now_ns();
    let t = quote(time_column);
    let tbl = quote(table);
    let error = if has_error_column {
        format!(", last_value(error ORDER BY {t}) AS last_error")
    } else {
        String::new()
    };
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
    let first_hour_ns = (now_ns.div_euclid(HOUR_NS) - (STATUS_HOURS - 1)) * HOUR_NS;
    let hourly_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service_name,
           CAST(date_trunc('hour', {t}) AS BIGINT) AS hour,
           avg({healthy}) AS uptime, count(*) AS checks
         FROM {tbl} WHERE {t} >= to_timestamp_nanos({first_hour_ns}) AND {t} <= {now}
         GROUP BY 1, 2"
    );
    let summary = query.sql(&summary_sql).await?;
    let hourly = query.sql(&hourly_sql).await?;

    let mut hours: BTreeMap<String, BTreeMap<i64, (f64, i64)>> = BTreeMap::new();
    for batch in &hourly.batches {
        let names = strings(batch.column(0))?;
        let hour = ints(batch.column(1))?;
        let uptime = floats(batch.column(2))?;
        let checks = ints(batch.column(3))?;
        for i in 0..batch.num_rows() {
            if let (Some(name), Some(hour)) = (&names[i], hour[i]) {
                hours
                    .entry(name.clone())
                    .or_default()
                    .insert(hour, (uptime[i].unwrap_or(0.0), checks[i].unwrap_or(0)));
            }
        }
    }
    let mut services = Vec::new();
    for batch in &summary.batches {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("status query lost column {name}")))
        };
        let names = strings(col("service_name")?)?;
        let (u24, u7, u30) = (
            floats(col("uptime_24h")?)?,
            floats(col("uptime_7d")?)?,
            floats(col("uptime_30d")?)?,
        );
        let checks = ints(col("checks")?)?;
        let last_at = times(col("last_at")?)?;
        let last_status = strings(col("last_status")?)?;
        let last_ms = floats(col("last_response_ms")?)?;
        let last_error = match batch.column_by_name("last_error") {
            Some(c) => strings(c)?,
            None => vec![None; batch.num_rows()],
        };
        for i in 0..batch.num_rows() {
            let Some(name) = names[i].clone() else {
                continue;
            };
            let by_hour = hours.get(&name);
            let hourly = (0..STATUS_HOURS)
                .map(|h| {
                    let start = first_hour_ns + h * HOUR_NS;
                    let seen = by_hour.and_then(|m| m.get(&start));
                    HourBar {
                        hour: rfc3339(start),
                        uptime: seen.map(|s| s.0),
                        checks: seen.map_or(0, |s| s.1),
                    }
                })
                .collect();
            let status = last_status[i].clone().unwrap_or_else(|| "unknown".into());
            services.push(ServiceStatus {
                status,
                uptime_24h: u24[i],
                uptime_7d: u7[i],
                uptime_30d: u30[i],
                checks_30d: checks[i].unwrap_or(0),
                last_check: last_at[i].map(|at| LastCheck {
                    at: rfc3339(at),
                    status: last_status[i].clone().unwrap_or_default(),
                    response_ms: last_ms[i],
                    error: last_error[i].clone(),
                }),
                hourly,
                firing_alerts: 0,
                name,
            });
        }
    }
    Ok(StatusReport {
        generated_at: rfc3339(now_ns),
        table: table.to_string(),
        hours: STATUS_HOURS,
        services,
        alerts: Vec::new(),
        groups: Vec::new(),
    })
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
