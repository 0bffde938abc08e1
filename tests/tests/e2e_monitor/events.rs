//! Events end to end: checks that run elsewhere report through
//! `POST /api/v1/events` and gRPC `SendEvents`; only state changes pass,
//! a flapping check's events cancel under `ignore-flap`, retired hosts are
//! dropped, every drop is counted per reason (SQL and `/metrics`), held
//! events survive `kill -9`, bad events are refused whole. And the real
//! Prometheus (Debian `prometheus`; tests/run.sh installs it) scrapes
//! Weir's `/metrics`, evaluates a rule over it and posts its alerts to
//! Weir's Alertmanager API, where they fire and resolve; the real `amtool`
//! lists them.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use weir_e2e::{Prometheus, WeirServer, free_port, now_ns, rfc3339};
use weir_proto::v1::monitor_service_client::MonitorServiceClient;
use weir_proto::v1::{Event, EventFilter, SendEventsRequest};

use super::{Fake, config_file, eventually};

async fn post_events(server: &WeirServer, body: &Value) -> Result<(u16, Value)> {
    let (status, text) = server
        .post("/api/v1/events", "application/json", body.to_string())
        .await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Posts events that must be accepted; returns the outcomes.
async fn send(server: &WeirServer, body: Value) -> Result<Vec<Value>> {
    let (status, answer) = post_events(server, &body).await?;
    if status != 200 {
        bail!("POST /api/v1/events: HTTP {status}: {answer}");
    }
    Ok(answer["events"].as_array().cloned().unwrap_or_default())
}

fn outcomes(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .map(|r| match r["drop_reason"].as_str() {
            Some(reason) => format!("dropped:{reason}"),
            None => r["outcome"].as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

async fn alert_state(server: &WeirServer, rule: &str) -> Result<Option<String>> {
    let rows = server
        .sql(&format!(
            "SELECT state FROM weir_alerts WHERE rule = '{rule}'"
        ))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r["state"].as_str().map(String::from)))
}

/// `weir_events` rows by outcome and reason: `passed`, `held`,
/// `dropped:unchanged` …
async fn event_counts(server: &WeirServer) -> Result<std::collections::BTreeMap<String, i64>> {
    let rows = server
        .sql(
            "SELECT outcome, drop_reason, count(*) AS n FROM weir_events
             GROUP BY outcome, drop_reason",
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            // A null drop_reason is left out of the row.
            let key = match r.get("drop_reason").and_then(Value::as_str) {
                Some(reason) => format!("dropped:{reason}"),
                None => r["outcome"].as_str().unwrap_or("?").to_string(),
            };
            (key, r["n"].as_i64().unwrap_or(-1))
        })
        .collect())
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn config(fake: std::net::SocketAddr) -> String {
    format!(
        r#"
retired_hosts = ["old-db-1"]

[rules.service_down]
query = "SELECT 'x' AS service_name WHERE false"
interval = "1h"

[receivers.chat]
type = "slack"
url = "http://{fake}/receive/slack"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pass_only_state_changes_and_every_drop_is_counted() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &config(addr))?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // A check of our own fails: one event, one page.
    let backup = json!({
        "monitor": "nightly-backup", "status": "unhealthy",
        "message": "backup failed: disk full",
        "context": {"service": "db", "region": "eu", "host": "db-1"},
        "title": "${alert.monitor} failed on ${context.host}",
    });
    let reports = send(&server, backup.clone()).await?;
    assert_eq!(outcomes(&reports), ["passed"]);
    let fingerprint = reports[0]["fingerprint"].as_str().unwrap().to_string();
    let firing = eventually(Duration::from_secs(15), "the Slack message", async || {
        Ok(fake
            .got("slack")
            .into_iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains("FIRING"))))
    })
    .await?;
    assert!(
        firing["text"]
            .as_str()
            .unwrap()
            .contains("nightly-backup failed on db-1"),
        "{firing}"
    );
    assert_eq!(
        alert_state(&server, "nightly-backup").await?.as_deref(),
        Some("firing")
    );

    // The same state again, three ways of sending it: nothing passes.
    let again = send(&server, json!([backup.clone(), backup.clone()])).await?;
    assert_eq!(outcomes(&again), ["dropped:unchanged", "dropped:unchanged"]);
    let again = send(&server, json!({"events": [backup.clone()]})).await?;
    assert_eq!(outcomes(&again), ["dropped:unchanged"]);
    // A healthy report of something never unhealthy changes nothing either.
    let quiet = send(&server, json!({"monitor": "cron-ok", "status": "healthy"})).await?;
    assert_eq!(outcomes(&quiet), ["dropped:unchanged"]);
    // Retired hosts are dropped, by host or by Prometheus-style instance.
    let retired = send(
        &server,
        json!([
            {"monitor": "disk", "status": "unhealthy", "context": {"host": "old-db-1"}},
            {"monitor": "disk", "status": "unhealthy", "context": {"instance": "old-db-1:9100"}},
        ]),
    )
    .await?;
    assert_eq!(outcomes(&retired), ["dropped:retired", "dropped:retired"]);

    // A check flapping at 1,000 events a second under ignore-flap: every
    // unhealthy event is held and cancelled by the healthy one after it;
    // nothing fires, nothing reaches anyone.
    let flap = |status: &str| {
        json!({
            "monitor": "flaky", "status": status, "context": {"service": "search"},
            "filters": [{"type": "ignore-flap", "min-age": "30s"}, "alert-suppression"],
        })
    };
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let batch: Vec<Value> = (0..100)
            .map(|i| flap(if i % 2 == 0 { "unhealthy" } else { "healthy" }))
            .collect();
        let reports = send(&server, Value::Array(batch)).await?;
        let got = outcomes(&reports);
        assert!(
            got.chunks(2).all(|pair| pair == ["held", "dropped:flap"]),
            "{got:?}"
        );
    }
    eprintln!("1,000 flapping events in {:?}", started.elapsed());
    assert_eq!(alert_state(&server, "flaky").await?, None);

    // A held event that stays unhealthy fires once it is min-age old.
    let slow = json!({
        "monitor": "slow-disk", "status": "unhealthy", "priority": "low",
        "filters": [{"type": "ignore-flap", "min-age": "2s"}],
    });
    assert_eq!(outcomes(&send(&server, slow).await?), ["held"]);
    assert_eq!(alert_state(&server, "slow-disk").await?, None);
    eventually(Duration::from_secs(10), "slow-disk firing", async || {
        Ok((alert_state(&server, "slow-disk").await?.as_deref() == Some("firing")).then_some(()))
    })
    .await?;
    // An event already older than its min-age passes at once.
    let old = json!({
        "monitor": "flaky", "status": "unhealthy", "context": {"service": "search"},
        "since": rfc3339(now_ns() - 60_000_000_000),
        "filters": [{"type": "ignore-flap", "min-age": "30s"}],
    });
    assert_eq!(outcomes(&send(&server, old).await?), ["passed"]);

    // Every event is a row, every drop counted by reason, in SQL and /metrics.
    let counts = event_counts(&server).await?;
    let expected: std::collections::BTreeMap<String, i64> = [
        ("passed", 2),
        ("held", 501),
        ("dropped:unchanged", 4),
        ("dropped:retired", 2),
        ("dropped:flap", 500),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, expected);
    let (_, metrics) = server.get("/metrics").await?;
    for (series, value) in [
        ("weir_events_dropped_total{reason=\"unchanged\"}", 4.0),
        ("weir_events_dropped_total{reason=\"flap\"}", 500.0),
        ("weir_events_dropped_total{reason=\"retired\"}", 2.0),
        ("weir_events_total{outcome=\"passed\"}", 2.0),
        ("weir_events_total{outcome=\"held\"}", 501.0),
        ("weir_events_held", 0.0),
    ] {
        assert_eq!(metric(&metrics, series), Some(value), "{series}");
    }

    // gRPC: the same events, the same answers.
    let mut grpc = MonitorServiceClient::connect(server.grpc_url.clone()).await?;
    let answer = grpc
        .send_events(SendEventsRequest {
            events: vec![Event {
                monitor: "ci-deploy".into(),
                status: "unhealthy".into(),
                priority: "high".into(),
                context: [("service".to_string(), "shop".to_string())].into(),
                filters: vec![EventFilter {
                    r#type: "ignore-flap".into(),
                    min_age: "1h".into(),
                }],
                ..Event::default()
            }],
        })
        .await?
        .into_inner();
    assert_eq!(answer.events.len(), 1);
    assert_eq!(answer.events[0].outcome, "held");
    let refused = grpc
        .send_events(SendEventsRequest {
            events: vec![Event {
                monitor: "ci-deploy".into(),
                status: "degraded".into(),
                ..Event::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("events[0].status"),
        "{refused:?}"
    );

    // Bad events are refused whole: the good event beside a bad one is not
    // applied, and the answer names the bad one.
    let rows_before = server.count("SELECT count(*) FROM weir_events").await?;
    let good = json!({"monitor": "cron-report", "status": "unhealthy"});
    let too_many: Vec<Value> = (0..10_001).map(|_| good.clone()).collect();
    for (body, expect) in [
        (
            json!([good, {"monitor": "m", "status": "down"}]),
            "events[1].status",
        ),
        (
            json!([good, {"status": "unhealthy"}]),
            "events[1]: missing field `monitor`",
        ),
        (
            json!({"monitor": "m", "status": "unhealthy", "context": {"alertname": "x"}}),
            "reserved",
        ),
        (
            json!({"monitor": "service_down", "status": "unhealthy"}),
            "is an alert rule",
        ),
        (
            json!({"monitor": "m", "status": "unhealthy", "context": {"k": "v".repeat(1025)}}),
            "more than 1024",
        ),
        (
            json!({"monitor": "m", "status": "unhealthy", "since": "2099-01-01T00:00:00Z"}),
            "ahead",
        ),
        (
            json!({"monitor": "m", "status": "unhealthy", "title": "${context.nope}"}),
            "unknown placeholder",
        ),
        (
            json!({"monitor": "m", "status": "unhealthy", "filters": ["dedupe"]}),
            "not a filter",
        ),
        (json!({"events": [good], "extra": 1}), "no other key"),
        (Value::Array(too_many), "more than the 10000"),
    ] {
        let (status, answer) = post_events(&server, &body).await?;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.to_string().contains(expect),
            "want {expect:?}: {answer}"
        );
    }
    // Truncated, and nested 10,000 deep (built as text: a value that deep
    // would overflow this test's own stack).
    let deep = format!(
        "{}\"x\"{}",
        "{\"context\":".repeat(10_000),
        "}".repeat(10_000)
    );
    for body in ["{\"monitor\": \"m\", \"status\":".to_string(), deep] {
        let (status, answer) = server
            .post("/api/v1/events", "application/json", body)
            .await?;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("expected JSON"), "{answer}");
    }
    assert_eq!(
        server.count("SELECT count(*) FROM weir_events").await?,
        rows_before
    );
    assert_eq!(alert_state(&server, "cron-report").await?, None);

    // Resolution: a healthy event resolves the page.
    let healthy = json!({
        "monitor": "nightly-backup", "status": "healthy",
        "context": {"service": "db", "region": "eu", "host": "db-1"},
    });
    let reports = send(&server, healthy).await?;
    assert_eq!(outcomes(&reports), ["passed"]);
    assert_eq!(reports[0]["fingerprint"], fingerprint.as_str());
    eventually(Duration::from_secs(15), "the resolution", async || {
        Ok(fake
            .got("slack")
            .into_iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains("RESOLVED"))))
    })
    .await?;

    // What was acknowledged survives kill -9: the held gRPC event is still
    // held (and cancels as a flap), the firing alerts still fire.
    server.kill9();
    server.restart()?;
    let (_, metrics) = server.get("/metrics").await?;
    assert_eq!(metric(&metrics, "weir_events_held"), Some(1.0));
    assert_eq!(
        alert_state(&server, "slow-disk").await?.as_deref(),
        Some("firing")
    );
    let cancel = send(
        &server,
        json!({"monitor": "ci-deploy", "status": "healthy", "context": {"service": "shop"}}),
    )
    .await?;
    assert_eq!(outcomes(&cancel), ["dropped:flap"]);
    let history = server
        .sql("SELECT rule, to_state FROM weir_alert_history ORDER BY time")
        .await?;
    let history: Vec<String> = history
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["rule"].as_str().unwrap(),
                r["to_state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            "nightly-backup firing",
            "slow-disk firing",
            "flaky firing",
            "nightly-backup resolved"
        ],
        "a flapping check leaves no transitions"
    );
    Ok(())
}

/// A free loopback port (bound, then released for the peer to take).
fn amtool(server: &WeirServer, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", server.http_url))
        .args(args)
        .output()
        .context("running amtool: install Debian's prometheus-alertmanager (tests/run.sh does)")?;
    if !out.status.success() {
        bail!("amtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_weir_and_its_alerts_fire_and_resolve_in_weir() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &config(addr))?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;
    let weir = server
        .http_url
        .strip_prefix("http://")
        .unwrap_or(&server.http_url)
        .to_string();

    // Prometheus scrapes Weir's /metrics each second and alerts, through
    // Weir's Alertmanager API, while Weir holds an event back.
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: weir
    interval: 1s
    rules:
      - alert: WeirHoldsEvents
        expr: weir_events_held > 0
        labels:
          severity: critical
          service: weir
        annotations:
          summary: "Weir holds {{ $value }} events"
          description: "an event waits for its min-age"
"#,
    )?;
    let port = free_port()?;
    let prometheus = Prometheus::start(
        dir.path(),
        port,
        &format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - api_version: v2
      static_configs:
        - targets: ["{weir}"]
scrape_configs:
  - job_name: weir
    static_configs:
      - targets: ["{weir}"]
"#,
            rules = rules.display()
        ),
    )?;
    let prometheus_log = || prometheus.log();

    // Prometheus scrapes Weir: its `up` for the job is 1.
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(60),
        "Prometheus scraping Weir",
        async || {
            let answer = client
                .get(format!("http://127.0.0.1:{port}/api/v1/query"))
                .query(&[("query", "up{job=\"weir\"}")])
                .send()
                .await;
            let Ok(answer) = answer else { return Ok(None) };
            let json: Value = answer.json().await.unwrap_or_default();
            Ok((json["data"]["result"][0]["value"][1] == "1").then_some(()))
        },
    )
    .await
    .with_context(prometheus_log)?;

    // An event held for an hour makes Prometheus' rule fire into Weir.
    let held = send(
        &server,
        json!({"monitor": "slow-job", "status": "unhealthy",
               "filters": [{"type": "ignore-flap", "min-age": "1h"}]}),
    )
    .await?;
    assert_eq!(outcomes(&held), ["held"]);
    eventually(
        Duration::from_secs(60),
        "Prometheus' alert firing in Weir",
        async || {
            Ok(
                (alert_state(&server, "WeirHoldsEvents").await?.as_deref() == Some("firing"))
                    .then_some(()),
            )
        },
    )
    .await
    .with_context(prometheus_log)?;
    let page = eventually(Duration::from_secs(15), "the Slack message", async || {
        Ok(fake.got("slack").into_iter().find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("FIRING") && t.contains("Weir holds 1 events"))
        }))
    })
    .await?;
    assert!(page.to_string().contains("an event waits"), "{page}");
    let rows = server
        .sql(
            "SELECT source, priority, labels FROM weir_events
             WHERE monitor = 'WeirHoldsEvents' AND outcome = 'passed'",
        )
        .await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["source"], "alertmanager");
    assert_eq!(rows[0]["priority"], "high", "severity critical pages");
    let labels: Value = serde_json::from_str(rows[0]["labels"].as_str().unwrap())?;
    assert_eq!(labels["job"], "weir");
    assert_eq!(labels["service"], "weir");

    // amtool reads it back through the Alertmanager API.
    let listed = amtool(&server, &["alert", "query", "-o", "json"])?;
    let listed: Value = serde_json::from_str(&listed)?;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert_eq!(names, ["WeirHoldsEvents"], "{listed}");
    let filtered = amtool(&server, &["alert", "query", "-o", "json", "service=nope"])?;
    let filtered: Value = serde_json::from_str(&filtered)?;
    assert!(filtered.is_null() || filtered == json!([]), "{filtered}");

    // The held event cancels; Prometheus sees no held events and sends the
    // resolution, which resolves the alert in Weir.
    let cancel = send(&server, json!({"monitor": "slow-job", "status": "healthy"})).await?;
    assert_eq!(outcomes(&cancel), ["dropped:flap"]);
    eventually(
        Duration::from_secs(60),
        "the alert resolved by Prometheus",
        async || {
            Ok(
                (alert_state(&server, "WeirHoldsEvents").await?.as_deref() == Some("resolved"))
                    .then_some(()),
            )
        },
    )
    .await
    .with_context(prometheus_log)?;

    // Alertmanager's own convention for bad alerts: 400 and a JSON string.
    for (body, expect) in [
        (json!([{"labels": {"severity": "page"}}]), "alertname"),
        (json!({"labels": {"alertname": "A"}}), "PostableAlert"),
        (
            json!([{"labels": {"alertname": "A", "bad-name": "x"}}]),
            "context key",
        ),
    ] {
        let (status, text) = server
            .post("/api/v2/alerts", "application/json", body.to_string())
            .await?;
        assert_eq!(status, 400, "{text}");
        let message: String = serde_json::from_str(&text)?;
        assert!(message.contains(expect), "want {expect:?}: {message}");
    }
    Ok(())
}
