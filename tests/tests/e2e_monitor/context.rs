//! Context collection end to end: an event whose notification carries the
//! last log lines of its service (SQL with the context value bound, never
//! spliced), a sparkline of its latency, a runbook link, its recent alerts
//! and notes; a hostile context value that would widen a spliced query; a
//! collector that hangs, which costs the page its deadline and no more.
//! The Slack message and PagerDuty event are saved under
//! `<target>/test-artifacts/` as sent (the README shows them).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use weir_e2e::{RequestBuilder, WeirServer, now_ns};
use weir_proto::v1::field;

use super::{Fake, artifacts_dir, config_file, eventually};

fn config(fake: std::net::SocketAddr) -> String {
    format!(
        r#"
[rules.service_down]
query = "SELECT 'x' AS service_name WHERE false"
interval = "1h"

[receivers.chat]
type = "slack"
url = "http://{fake}/receive/slack"

[receivers.pager]
type = "pagerduty"
url = "http://{fake}/receive/pager"
routing_key = "test-routing-key"
"#
    )
}

/// Log lines of two services, and a latency series of `checkout`.
async fn write_logs_and_latency(server: &WeirServer) -> Result<()> {
    let mut req = RequestBuilder::default();
    let now = now_ns();
    for (i, (service, line)) in [
        ("checkout", "connection refused: db-1:5432"),
        ("checkout", "retrying in 2s"),
        ("checkout", "pool exhausted (50/50)"),
        ("search", "SECRET of another team"),
    ]
    .into_iter()
    .enumerate()
    {
        let message = field::Value::String(req.symbol(line));
        req.point(
            "app_logs",
            now - 60_000_000_000 + i as i64 * 1_000_000_000,
            &[("service_name", service), ("instance", "i-1")],
            vec![("message", message)],
        );
    }
    for (i, ms) in [12.0, 14.0, 13.0, 80.0, 250.0, 900.0]
        .into_iter()
        .enumerate()
    {
        let status = field::Value::String(req.symbol("healthy"));
        req.point(
            "service_metrics",
            now - 600_000_000_000 + i as i64 * 60_000_000_000,
            &[("service_name", "checkout")],
            vec![("status", status), ("response_ms", field::Value::F64(ms))],
        );
    }
    server.client().await?.write(req.build(0)).await?;
    Ok(())
}

fn collectors(deadline_of_the_slow_one: &str) -> Value {
    json!([
        {"type": "markdown", "title": "Impact",
         "text": "Customers of ${context.service_name} cannot pay. Escalate to #payments."},
        {"type": "logs", "title": "Last log lines",
         "sql": "SELECT time, message FROM app_logs WHERE service_name = ${context.service_name} ORDER BY time DESC LIMIT 20"},
        {"type": "metrics", "title": "Latency (ms)",
         "sql": "SELECT response_ms FROM service_metrics WHERE service_name = ${context.service_name} ORDER BY time"},
        {"type": "runbook", "id": "pay-${context.service_name}",
         "url": "https://runbooks.example/${runbook.id}"},
        {"type": "recent-alerts"},
        {"type": "metrics", "title": "Slow query", "deadline": deadline_of_the_slow_one,
         "sql": "SELECT count(*) AS n FROM generate_series(1, 100000000000) AS t(v) WHERE CAST(v AS VARCHAR) = ${context.service_name}"}
    ])
}

fn sections(slack: &Value) -> Vec<String> {
    slack["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"]["text"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_carry_their_context_bound_safely_and_within_deadlines() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &config(addr))?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;
    write_logs_and_latency(&server).await?;

    // A placeholder in quotes would be spliced text: refused with the fix.
    let (status, answer) = server
        .post(
            "/api/v1/events",
            "application/json",
            json!({"monitor": "m", "status": "unhealthy", "context": {"service_name": "checkout"},
                   "collect": [{"type": "logs", "sql": "SELECT 1 FROM app_logs WHERE service_name = '${context.service_name}'"}]})
            .to_string(),
        )
        .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("events[0].collect[0].sql") && answer.contains("bare"),
        "{answer}"
    );

    let started = Instant::now();
    let event = json!({
        "monitor": "payments", "status": "unhealthy", "priority": "high",
        "message": "HTTP 503 from /pay",
        "context": {"service_name": "checkout", "region": "eu"},
        "collect": collectors("1s"),
    });
    let (status, answer) = server
        .post("/api/v1/events", "application/json", event.to_string())
        .await?;
    assert_eq!(status, 200, "{answer}");
    let slack = eventually(Duration::from_secs(20), "the Slack message", async || {
        Ok(fake.got("slack").into_iter().next())
    })
    .await?;
    let waited = started.elapsed();
    // The hanging collector cost its 1 s deadline, not its query's hours.
    assert!(
        waited < Duration::from_secs(8),
        "the page waited {waited:?} for its context"
    );
    let text = sections(&slack).join("\n---\n");
    for expected in [
        "*Impact*\nCustomers of checkout cannot pay",
        "connection refused: db-1:5432",
        "pool exhausted (50/50)",
        "response_ms: ",
        "first 12 last 900 (min 12, max 900)",
        "*Runbook*: <https://runbooks.example/pay-checkout|pay-checkout>",
        "*Recent alerts*",
        "firing",
        "*Slow query* — _timed out: no answer within its deadline of 1s_",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(
        !text.contains("SECRET"),
        "another service's logs leaked:\n{text}"
    );

    let pager = eventually(Duration::from_secs(10), "the PagerDuty event", async || {
        Ok(fake.got("pager").into_iter().next())
    })
    .await?;
    let details = &pager["payload"]["custom_details"];
    assert!(
        details["Last log lines"]
            .as_str()
            .is_some_and(|t| t.contains("retrying in 2s")),
        "{pager}"
    );
    assert_eq!(
        pager["links"][0]["href"], "https://runbooks.example/pay-checkout",
        "{pager}"
    );
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)?;
    std::fs::write(
        artifacts.join("context-slack.json"),
        serde_json::to_string_pretty(&slack)?,
    )?;
    std::fs::write(
        artifacts.join("context-pagerduty.json"),
        serde_json::to_string_pretty(&pager)?,
    )?;

    // A hostile context value. Spliced into the SQL it would read
    // `service_name = 'x' OR '1'='1'` and return every service's logs;
    // bound, it is one odd service name that has no logs.
    let hostile = "x' OR '1'='1";
    let event = json!({
        "monitor": "payments-hostile", "status": "unhealthy",
        "context": {"service_name": hostile},
        "collect": [{"type": "logs", "title": "Last log lines",
                     "sql": "SELECT message FROM app_logs WHERE service_name = ${context.service_name} LIMIT 20"}],
    });
    let (status, answer) = server
        .post("/api/v1/events", "application/json", event.to_string())
        .await?;
    assert_eq!(status, 200, "{answer}");
    let hostile_slack = eventually(Duration::from_secs(20), "the second message", async || {
        Ok(fake
            .got("slack")
            .into_iter()
            .find(|m| m.to_string().contains("payments-hostile")))
    })
    .await?;
    let text = sections(&hostile_slack).join("\n");
    assert!(text.contains("(no rows)"), "{text}");
    for leaked in ["SECRET", "connection refused"] {
        if text.contains(leaked) {
            bail!("the hostile value widened the query: {text}");
        }
    }

    // Every section is a row of weir_alert_context.
    let rows = eventually(
        Duration::from_secs(10),
        "weir_alert_context rows",
        async || {
            let rows = server
                .sql(
                    "SELECT receiver, collector, title, status FROM weir_alert_context
                 WHERE rule = 'payments' ORDER BY receiver, title",
                )
                .await?;
            Ok((rows.len() >= 12).then_some(rows))
        },
    )
    .await?;
    let statuses: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["receiver"] == "chat")
        .map(|r| {
            (
                r["title"].as_str().unwrap_or("").to_string(),
                r["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("Impact", "ok"),
            ("Last log lines", "ok"),
            ("Latency (ms)", "ok"),
            ("Recent alerts", "ok"),
            ("Runbook", "ok"),
            ("Slow query", "timed_out"),
        ]
        .map(|(t, s)| (t.to_string(), s.to_string()))
    );
    Ok(())
}
