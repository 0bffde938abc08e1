//! The monitor from the command line: `weir status`, `weir alerts` and
//! `weir probes` ask a running server; `weir rules check` validates rule
//! files offline (and, given a server, plans every rule against its
//! tables); `weir rules test` evaluates one rule against stored data as of
//! a given time and prints what would fire.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use weir_query::QueryResult;
use weir_server::ServeArgs;

#[derive(clap::Args)]
pub struct ServerArg {
    /// The server's HTTP address.
    #[arg(long, env = "WEIR_HTTP_URL", default_value = "http://127.0.0.1:8090")]
    server: String,
}

impl ServerArg {
    pub fn url(&self) -> &str {
        &self.server
    }
}

#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// Check the rules (and receivers) of a config file: SQL parses, and
    /// with --server plans against the server's tables; templates resolve.
    Check {
        /// A TOML file with `[rules.NAME]` (and `[receivers.NAME]`) sections.
        file: PathBuf,
        /// Also plan every rule on this server (read-only, no rows read).
        #[arg(long)]
        server: Option<String>,
    },
    /// Evaluate one rule against stored data and print its instances.
    Test {
        /// The rule's name.
        rule: String,
        /// The config file that defines it.
        #[arg(long, env = "WEIR_CONFIG")]
        config: PathBuf,
        /// Evaluate as of this time (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
}

pub async fn get_json(server: &str, path: &str) -> anyhow::Result<Value> {
    request_json(reqwest::Method::GET, server, path, None).await
}

/// Sends `body` (if any) to the server's `path`; the JSON answer, or its
/// error message.
pub async fn request_json(
    method: reqwest::Method,
    server: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let mut request = crate::http_client()?.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.context("reading the answer")?;
    if !status.is_success() {
        bail!(
            "{} (HTTP {status})",
            answer["error"].as_str().unwrap_or("error")
        );
    }
    Ok(answer)
}

/// Prints rows as aligned columns.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |u| format!("{u:.2}%"))
}

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

pub async fn status(args: ServerArg) -> anyhow::Result<ExitCode> {
    let report = get_json(&args.server, "/api/v1/status").await?;
    let services = report["services"].as_array().cloned().unwrap_or_default();
    let rows = services
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["status"]),
                pct(&s["uptime_24h"]),
                pct(&s["uptime_7d"]),
                pct(&s["uptime_30d"]),
                text(&s["last_check"]["at"]),
            ]
        })
        .collect();
    print_table(
        &["SERVICE", "STATUS", "24H", "7D", "30D", "LAST CHECK"],
        rows,
    );
    let alerts = report["alerts"].as_array().cloned().unwrap_or_default();
    let firing = alerts.iter().filter(|a| a["state"] == "firing").count();
    println!(
        "\n{} services, {} unhealthy; {firing} alerts firing, {} pending",
        services.len(),
        services
            .iter()
            .filter(|s| s["status"] == "unhealthy")
            .count(),
        alerts.len() - firing
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: Option<AlertsCommand>,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(clap::Subcommand)]
enum AlertsCommand {
    /// Replay stored history through a rule file — its rules, receivers and
    /// grouping, with the server's suppressions — and print what would have
    /// fired, when, how it would have been grouped and told, and what would
    /// have been suppressed. Nothing is sent; the live alerts are untouched.
    Backtest {
        /// A TOML file with `[rules.NAME]` sections (and, optionally,
        /// `[receivers.NAME]` and group_by/group_wait/… settings).
        #[arg(long)]
        rules: PathBuf,
        /// Start of the replay (RFC 3339).
        #[arg(long)]
        from: String,
        /// End of the replay (RFC 3339).
        #[arg(long)]
        to: String,
        /// Evaluate every STEP instead of at each rule's interval.
        #[arg(long, value_name = "DURATION")]
        step: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn alerts(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list_alerts(args.server).await,
        Some(AlertsCommand::Backtest {
            rules,
            from,
            to,
            step,
            json,
        }) => backtest(&args.server.server, &rules, from, to, step, json).await,
    }
}

async fn backtest(
    server: &str,
    rules: &std::path::Path,
    from: String,
    to: String,
    step: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config =
        std::fs::read_to_string(rules).with_context(|| format!("reading {}", rules.display()))?;
    let report = request_json(
        reqwest::Method::POST,
        server,
        "/api/v1/alerts/backtest",
        Some(serde_json::json!({"config": config, "from": from, "to": to, "step": step})),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let labels = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", text(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    println!("Transitions:");
    print_table(
        &[
            "TIME",
            "RULE",
            "FROM",
            "TO",
            "LABELS",
            "SUPPRESSED BY",
            "SUMMARY",
        ],
        list("transitions")
            .iter()
            .map(|t| {
                vec![
                    text(&t["time"]),
                    text(&t["rule"]),
                    text(&t["from"]),
                    text(&t["to"]),
                    labels(&t["labels"]),
                    t["suppressed_by"]
                        .as_array()
                        .map(|ids| ids.iter().map(text).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    text(&t["summary"]),
                ]
            })
            .collect(),
    );
    println!("\nNotifications:");
    print_table(
        &[
            "TIME",
            "RECEIVER",
            "GROUP",
            "STATUS",
            "ALERTS",
            "FIRING",
            "GROUP KEY",
        ],
        list("notifications")
            .iter()
            .map(|n| {
                vec![
                    text(&n["time"]),
                    text(&n["receiver"]),
                    text(&n["group_id"]),
                    text(&n["status"]),
                    text(&n["alerts"]),
                    text(&n["firing"]),
                    labels(&n["group_key"]),
                ]
            })
            .collect(),
    );
    println!(
        "\n{} to {}: {} evaluations ({} failed), {} transitions, {} notifications{}",
        text(&report["from"]),
        text(&report["to"]),
        report["evaluations"],
        report["failed_evaluations"],
        list("transitions").len(),
        list("notifications").len(),
        if report["truncated"] == true {
            " (more than listed)"
        } else {
            ""
        }
    );
    if let Some(errors) = report["errors"].as_object() {
        for (rule, error) in errors {
            eprintln!("rule {rule} failed: {}", text(error));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_alerts(args: ServerArg) -> anyhow::Result<ExitCode> {
    let body = get_json(&args.server, "/api/v1/alerts").await?;
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    let rows = alerts
        .iter()
        .map(|a| {
            let since = a["since_ns"].as_i64().unwrap_or(0);
            let labels = a["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.as_str() != "alertname")
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                text(&a["state"]),
                text(&a["priority"]),
                text(&a["rule"]),
                chrono::DateTime::from_timestamp_nanos(since)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                labels,
                text(&a["summary"]),
            ]
        })
        .collect();
    print_table(
        &["STATE", "PRIORITY", "RULE", "SINCE", "LABELS", "SUMMARY"],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn probes(args: ServerArg) -> anyhow::Result<ExitCode> {
    let body = get_json(&args.server, "/api/v1/probes").await?;
    let probes = body["probes"].as_array().cloned().unwrap_or_default();
    let rows = probes
        .iter()
        .map(|p| {
            let last = &p["last"];
            let result = if last.is_null() {
                "not run yet".to_string()
            } else if last["healthy"] == true {
                format!(
                    "healthy {:.0} ms",
                    last["response_ms"].as_f64().unwrap_or(0.0)
                )
            } else {
                format!("unhealthy: {}", text(&last["error"]))
            };
            vec![
                text(&p["name"]),
                text(&p["origin"]),
                text(&p["target"]),
                format!("{}s", p["interval_ms"].as_u64().unwrap_or(0) / 1000),
                result,
            ]
        })
        .collect();
    print_table(&["PROBE", "FROM", "TARGET", "EVERY", "LAST RESULT"], rows);
    Ok(ExitCode::SUCCESS)
}

pub async fn rules(args: RulesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RulesCommand::Check { file, server } => check(file, server).await,
        RulesCommand::Test {
            rule,
            config,
            at,
            server,
        } => test(rule, config, at, server.server).await,
    }
}

fn load(file: &std::path::Path) -> anyhow::Result<ServeArgs> {
    Ok(ServeArgs::from_toml_file(file)?)
}

/// Runs `sql` on the server; the answer as Arrow.
async fn query(server: &str, sql: &str) -> anyhow::Result<QueryResult> {
    let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
    let response = crate::http_client()?
        .post(&url)
        .header("accept", weir_server::ARROW_STREAM)
        .header("content-type", "text/plain")
        .body(sql.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{message}");
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<RecordBatch>, _>>()?;
    Ok(QueryResult { schema, batches })
}

async fn check(file: PathBuf, server: Option<String>) -> anyhow::Result<ExitCode> {
    let args = load(&file)?;
    let sections = args.monitor_sections();
    sections
        .check()
        .with_context(|| format!("{}", file.display()))?;
    let mut failed = 0;
    if let Some(server) = &server {
        for (name, section) in &sections.rules {
            let rule = weir_monitor::RuleDef::from_section(name, section, &sections.receivers)?;
            // Plans the query and reads its schema; no rows are read.
            let planned = format!("SELECT * FROM ({}) AS rule_answer LIMIT 0", rule.query);
            let outcome = match query(server, &planned).await {
                Ok(answer) => weir_monitor::observations(&rule, &answer).map(|_| ()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = outcome {
                eprintln!("rules.{name}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} rules do not plan", sections.rules.len());
    }
    println!(
        "{}: {} rules, {} receivers, {} probes, {} heartbeats: OK{}",
        file.display(),
        sections.rules.len(),
        sections.receivers.len(),
        sections.probes.len(),
        sections.heartbeats.len(),
        if server.is_some() {
            " (planned on the server)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn test(
    name: String,
    config: PathBuf,
    at: Option<String>,
    server: String,
) -> anyhow::Result<ExitCode> {
    let args = load(&config)?;
    let sections = args.monitor_sections();
    let Some(section) = sections.rules.get(&name) else {
        bail!("{} has no rule named {name:?}", config.display());
    };
    let rule = weir_monitor::RuleDef::from_section(&name, section, &sections.receivers)?;
    let at_ns = match &at {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--at {text:?} is not an RFC 3339 time"))?
            .timestamp_nanos_opt()
            .context("--at is out of range")?,
        None => chrono::Utc::now()
            .timestamp_nanos_opt()
            .context("the clock is out of range")?,
    };
    // Each stored table's time column is its first; rows after --at are
    // hidden from the rule, as they did not exist then.
    let mut time_columns = BTreeMap::new();
    for table in weir_monitor::table_names(&rule.query).map_err(anyhow::Error::msg)? {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        if let Ok(answer) = query(&server, &format!("SELECT * FROM {quoted} LIMIT 0")).await
            && let Some(first) = answer.schema.fields().first()
            && matches!(first.data_type(), arrow::datatypes::DataType::Timestamp(..))
        {
            time_columns.insert(table, first.name().clone());
        }
    }
    let sql =
        weir_monitor::sql_at(&rule.query, at_ns, &time_columns).map_err(anyhow::Error::msg)?;
    let answer = query(&server, &sql).await?;
    let observations = weir_monitor::observations(&rule, &answer).map_err(anyhow::Error::msg)?;
    let firing = observations.iter().filter(|o| o.firing).count();
    let rows = observations
        .iter()
        .map(|o| {
            let labels: BTreeMap<_, _> =
                o.labels.iter().filter(|(k, _)| *k != "alertname").collect();
            vec![
                if o.firing { "FIRING" } else { "ok" }.to_string(),
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                o.value.map_or_else(|| "-".into(), |v| v.to_string()),
                if o.firing {
                    rule.summary_for(o)
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    print_table(&["RESULT", "LABELS", "VALUE", "SUMMARY"], rows);
    println!(
        "\nrule {name} at {}: {} instances, {firing} failing now (before `for = {:?}` / `consecutive = {}`)",
        chrono::DateTime::from_timestamp_nanos(at_ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        observations.len(),
        rule.for_,
        rule.consecutive
    );
    Ok(ExitCode::SUCCESS)
}
