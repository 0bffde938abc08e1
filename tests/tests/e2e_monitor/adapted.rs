//! Raw webhooks of other tools arrive as events through the adapter plugins
//! built from this repo (`POST /api/v1/events/{source}`): a Datadog-style
//! webhook and an Alertmanager webhook (guest `webhook-adapter`), a Nagios
//! check result (guest `nagios-adapter`). Then dynamic pre-filtering: the
//! `weir_events` pipeline runs the `state-change-filter` guest (repeats are
//! dropped as `filtered`) and the `priority-policy` guest, which lowers
//! `high` to `low` for a service in testing and for a host in its
//! maintenance window, from the lookup table in its config — so the pager
//! stays quiet and chat still hears of it, with the reason.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use weir_e2e::{WeirServer, guest, now_ns, rfc3339};

use super::{Fake, config_file, eventually};

fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn config(fake: std::net::SocketAddr) -> String {
    let now = now_ns();
    let hour = 3_600_000_000_000;
    format!(
        r#"
[sources.datadog]
wasm = {webhook}

[sources.alertmanager]
wasm = {webhook}

[sources.nagios]
wasm = {nagios}

[[pipelines.weir_events.stages]]
wasm = {state_change}
config = {{ key = "monitor,host,instance,service_name" }}

[[pipelines.weir_events.stages]]
wasm = {policy}
[pipelines.weir_events.stages.config]
"lower.service_name=checkout-beta" = "in testing"
"lower.instance=db-1:9100" = "maintenance during {start}/{end}"
"lower.instance=db-2:9100" = "maintenance during {later}/{later_end}"

[rules.service_down]
query = "SELECT 'x' AS service_name WHERE false"
interval = "1h"

[receivers.pager]
type = "pagerduty"
url = "http://{fake}/receive/pager"
routing_key = "key"

[receivers.chat]
type = "slack"
url = "http://{fake}/receive/slack"
"#,
        webhook = toml_path(&guest("webhook-adapter")),
        nagios = toml_path(&guest("nagios-adapter")),
        state_change = toml_path(&guest("state-change-filter")),
        policy = toml_path(&guest("priority-policy")),
        start = rfc3339(now - hour),
        end = rfc3339(now + hour),
        later = rfc3339(now + 24 * hour),
        later_end = rfc3339(now + 25 * hour),
    )
}

async fn post(server: &WeirServer, source: &str, body: &str) -> Result<(u16, Value)> {
    let (status, text) = server
        .post(
            &format!("/api/v1/events/{source}"),
            "application/json",
            body.to_string(),
        )
        .await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn accepted(server: &WeirServer, source: &str, body: &str) -> Result<Value> {
    let (status, answer) = post(server, source, body).await?;
    if status != 200 {
        bail!("POST /api/v1/events/{source}: HTTP {status}: {answer}");
    }
    Ok(answer)
}

/// The `weir_events` row of the newest event of `monitor`.
async fn event_row(server: &WeirServer, monitor: &str) -> Result<Value> {
    let rows = server
        .sql(&format!(
            "SELECT source, priority, outcome, drop_reason, labels FROM weir_events
             WHERE monitor = '{monitor}' ORDER BY time DESC LIMIT 1"
        ))
        .await?;
    rows.into_iter()
        .next()
        .map(Value::Object)
        .ok_or_else(|| anyhow::anyhow!("no weir_events row for {monitor}"))
}

fn labels(row: &serde_json::Map<String, Value>) -> Value {
    serde_json::from_str(row["labels"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn row_labels(row: &Value) -> Value {
    serde_json::from_str(row["labels"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tools_webhooks_arrive_as_events_and_plugins_lower_their_priority() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &config(addr))?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // Datadog: a triggered monitor on a production service pages.
    let datadog = |service: &str, transition: &str| {
        json!({"id": 7391, "title": format!("[{transition}] CPU high on {service}"),
               "alert_transition": transition, "priority": "normal", "host": "web-1",
               "tags": format!("env:prod,service:{service}"), "body": "CPU at 97%"})
        .to_string()
    };
    let answer = accepted(&server, "datadog", &datadog("checkout", "Triggered")).await?;
    assert_eq!(answer["passed"], 1, "{answer}");
    let page = eventually(Duration::from_secs(15), "the Datadog page", async || {
        Ok(fake.got("pager").into_iter().next())
    })
    .await?;
    assert_eq!(
        page["payload"]["summary"], "[Triggered] CPU high on checkout",
        "{page}"
    );
    let row = event_row(&server, "CPU high on checkout").await?;
    assert_eq!(
        (row["source"].as_str(), row["priority"].as_str()),
        (Some("adapter"), Some("high"))
    );
    assert_eq!(row_labels(&row)["service_name"], "checkout");

    // The same alert again: the state-change filter drops it as a repeat.
    let answer = accepted(&server, "datadog", &datadog("checkout", "Triggered")).await?;
    assert_eq!(answer["events"][0]["drop_reason"], "filtered", "{answer}");

    // A service in testing: high is lowered to low, with the reason; chat
    // hears of it, the pager does not.
    accepted(&server, "datadog", &datadog("checkout-beta", "Triggered")).await?;
    let row = event_row(&server, "CPU high on checkout-beta").await?;
    assert_eq!(row["priority"], "low", "{row}");
    assert_eq!(row_labels(&row)["priority_reason"], "in testing", "{row}");
    eventually(Duration::from_secs(15), "the chat message", async || {
        Ok(fake
            .got("slack")
            .into_iter()
            .find(|m| m.to_string().contains("checkout-beta")))
    })
    .await?;

    // Alertmanager's webhook: db-1 is in its maintenance window now, db-2
    // only tomorrow.
    let alertmanager = json!({
        "version": "4", "status": "firing", "receiver": "weir", "groupKey": "{}:{}",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
        "alerts": [
            {"status": "firing", "fingerprint": "a1",
             "labels": {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical"},
             "annotations": {"summary": "disk of db-1 is full"},
             "startsAt": rfc3339(now_ns() - 60_000_000_000), "endsAt": "0001-01-01T00:00:00Z"},
            {"status": "firing", "fingerprint": "a2",
             "labels": {"alertname": "DiskFull", "instance": "db-2:9100", "severity": "critical"},
             "annotations": {"summary": "disk of db-2 is full"},
             "startsAt": rfc3339(now_ns() - 60_000_000_000), "endsAt": "0001-01-01T00:00:00Z"}
        ]
    });
    let answer = accepted(&server, "alertmanager", &alertmanager.to_string()).await?;
    assert_eq!(answer["passed"], 2, "{answer}");
    let rows = server
        .sql("SELECT priority, labels FROM weir_events WHERE monitor = 'DiskFull' ORDER BY labels")
        .await?;
    let seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let l = labels(r);
            (
                l["instance"].as_str().unwrap_or("").to_string(),
                r["priority"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("db-1:9100", "low"), ("db-2:9100", "high")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    eventually(Duration::from_secs(15), "the db-2 page", async || {
        Ok(fake
            .got("pager")
            .into_iter()
            .find(|m| m.to_string().contains("disk of db-2 is full")))
    })
    .await?;
    assert!(
        !fake
            .got("pager")
            .iter()
            .any(|m| m.to_string().contains("db-1")),
        "db-1 is in maintenance: no page"
    );

    // Nagios: a send_nsca line for a failing check.
    let (status, answer) = server
        .post(
            "/api/v1/events/nagios",
            "text/plain",
            "db-3\tDISK\t2\tDISK CRITICAL - /var 98% used\n".to_string(),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let rows = server
        .sql("SELECT state FROM weir_alerts WHERE rule = 'DISK'")
        .await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = event_row(&server, "DISK").await?;
    assert_eq!(row_labels(&row)["host"], "db-3", "{row}");

    // Recovered: the Datadog alert resolves.
    accepted(&server, "datadog", &datadog("checkout", "Recovered")).await?;
    eventually(Duration::from_secs(15), "the resolve", async || {
        Ok(fake
            .got("pager")
            .into_iter()
            .find(|m| m["event_action"] == "resolve"))
    })
    .await?;

    // Bad bodies are the adapter's clear error; nothing is applied.
    let before = server.count("SELECT count(*) FROM weir_events").await?;
    for (source, body, expect) in [
        ("datadog", "{nope", "not JSON"),
        ("nagios", "db-3\tDISK\n", "send_nsca"),
        (
            "alertmanager",
            r#"{"version": "4", "alerts": [{"labels": {"alertname": "x"}, "status": "odd"}]}"#,
            "firing or resolved",
        ),
    ] {
        let (status, answer) = post(&server, source, body).await?;
        assert_eq!(status, 400, "{source}: {answer}");
        assert!(answer.to_string().contains(expect), "{source}: {answer}");
    }
    let (status, answer) = post(&server, "nosuch", "{}").await?;
    assert!(status == 404 || status == 400, "{status} {answer}");
    assert_eq!(
        server.count("SELECT count(*) FROM weir_events").await?,
        before
    );
    Ok(())
}
