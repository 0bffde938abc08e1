//! Alert groups end to end: 500 services of one region failing at once are
//! one message per receiver, a failure after the group's window opens a new
//! group, the resolution is one message, groups are a table and on the
//! status page, and a group waiting out its `group_wait` when Weir is
//! killed notifies once after the restart.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use weir_e2e::{KillOnDrop, WeirServer};

use super::{Fake, config_file, eventually};

fn config(fake: std::net::SocketAddr) -> String {
    format!(
        r#"
group_wait = "3s"
group_interval = "2s"
group_window = "4s"

[receivers.chat]
type = "slack"
url = "http://{fake}/receive/slack"

[receivers.pager]
type = "pagerduty"
url = "http://{fake}/receive/pagerduty"
routing_key = "k"

[receivers.am]
type = "webhook"
url = "http://{fake}/receive/webhook"
priorities = ["high"]
"#
    )
}

async fn send(server: &WeirServer, events: Vec<Value>) -> Result<()> {
    let (status, text) = server
        .post(
            "/api/v1/events",
            "application/json",
            Value::Array(events).to_string(),
        )
        .await?;
    if status != 200 {
        bail!("POST /api/v1/events: HTTP {status}: {text}");
    }
    Ok(())
}

fn check(service: &str, status: &str) -> Value {
    json!({
        "monitor": "http-check", "status": status, "priority": "high",
        "context": {"service": service, "region": "eu"},
        "title": "${context.service} is down",
        "group-by": ["${alert.monitor}", "${context.region}"],
    })
}

fn texts(fake: &Fake) -> Vec<String> {
    fake.got("slack")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_failures_of_one_region_are_one_message_per_receiver() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &config(addr))?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // A DNS outage: 500 services of eu fail at once.
    let failing: Vec<Value> = (0..500)
        .map(|i| check(&format!("svc-{i}"), "unhealthy"))
        .collect();
    send(&server, failing).await?;
    // Nothing before group_wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.got("slack").is_empty(), "{:?}", texts(&fake));
    let first = eventually(Duration::from_secs(15), "the grouped message", async || {
        Ok(fake.got("slack").into_iter().next())
    })
    .await?;
    assert_eq!(
        first["text"],
        "[FIRING:500 high] 500 alerts: http-check region=eu"
    );
    // Unchanged: nothing more after group_interval.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.got("slack").len(), 1, "{:?}", texts(&fake));
    let pages = fake.got("pagerduty");
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0]["payload"]["custom_details"]["firing"], 500);
    let webhooks = fake.got("webhook");
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["alerts"].as_array().unwrap().len(), 500);
    assert_eq!(
        webhooks[0]["groupLabels"],
        json!({"alertname": "http-check", "region": "eu"})
    );
    let groups = server
        .sql("SELECT id, alerts, firing, notifications FROM weir_alert_groups")
        .await?;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["alerts"], 500);
    assert_eq!(groups[0]["firing"], 500);
    assert_eq!(groups[0]["notifications"], 3, "one per receiver");
    let first_group = groups[0]["id"].as_str().unwrap().to_string();
    assert_eq!(pages[0]["dedup_key"], first_group.as_str());

    // The status page shows the group.
    let (_, status) = server.get("/api/v1/status").await?;
    let status: Value = serde_json::from_str(&status)?;
    assert_eq!(status["groups"][0]["firing"], 500, "{}", status["groups"]);

    // Past the group's 4 s window, an unrelated failure of the same key
    // opens a new group and is told on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send(&server, vec![check("billing", "unhealthy")]).await?;
    let second = eventually(Duration::from_secs(15), "the second group", async || {
        Ok(fake.got("slack").get(1).cloned())
    })
    .await?;
    assert_eq!(second["text"], "[FIRING:high] billing is down");
    assert_eq!(
        server
            .count("SELECT count(*) FROM weir_alert_groups")
            .await?,
        2
    );

    // All 500 recover: one message says so, and the first group closes.
    let recovered: Vec<Value> = (0..500)
        .map(|i| check(&format!("svc-{i}"), "healthy"))
        .collect();
    send(&server, recovered).await?;
    let resolved = eventually(Duration::from_secs(15), "the resolution", async || {
        Ok(fake.got("slack").into_iter().find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[RESOLVED"))
        }))
    })
    .await?;
    assert_eq!(
        resolved["text"],
        "[RESOLVED:500] 500 alerts: http-check region=eu"
    );
    let resolve = eventually(
        Duration::from_secs(15),
        "the PagerDuty resolve",
        async || {
            Ok(fake
                .got("pagerduty")
                .into_iter()
                .find(|p| p["event_action"] == "resolve"))
        },
    )
    .await?;
    assert_eq!(resolve["dedup_key"], first_group.as_str());
    eventually(
        Duration::from_secs(10),
        "the first group closed",
        async || {
            let ids = server.sql("SELECT id FROM weir_alert_groups").await?;
            Ok((ids.len() == 1 && ids[0]["id"] != first_group.as_str()).then_some(()))
        },
    )
    .await?;
    assert_eq!(fake.got("slack").len(), 3, "{:?}", texts(&fake));

    // kill -9 while a group waits out its group_wait: told once after the
    // restart — not twice, not never.
    let cron: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|s| {
            json!({"monitor": "cron", "status": "unhealthy", "priority": "high",
                   "context": {"service": s, "region": "us"},
                   "group-by": ["alertname", "region"]})
        })
        .collect();
    send(&server, cron).await?;
    server.kill9();
    server.restart()?;
    let told = eventually(Duration::from_secs(20), "the cron group", async || {
        Ok(fake
            .got("slack")
            .into_iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains("cron"))))
    })
    .await?;
    assert_eq!(told["text"], "[FIRING:3 high] 3 alerts: cron region=us");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cron_messages = texts(&fake).iter().filter(|t| t.contains("cron")).count();
    assert_eq!(cron_messages, 1, "{:?}", texts(&fake));
    Ok(())
}

/// The real Alertmanager 0.25 (Debian `prometheus-alertmanager`).
/// What a webhook notification says, comparable across Weir and
/// Alertmanager: status, group labels, and each alert's service and
/// status, sorted.
fn normalized(webhook: &Value) -> String {
    let mut alerts: Vec<String> = webhook["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    format!(
                        "{}:{}",
                        a["labels"]["service"].as_str().unwrap_or("?"),
                        a["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    alerts.sort();
    format!(
        "{} {} [{}]",
        webhook["status"].as_str().unwrap_or("?"),
        webhook["groupLabels"],
        alerts.join(" ")
    )
}

/// Grouping and silencing, differentially: the same alert stream posted to
/// Weir and to the real Alertmanager 0.25, with the same `group_by`,
/// `group_wait` and `group_interval` and the same silence made with
/// `amtool` in both, must produce the same notifications (which alerts
/// went out together, firing or resolved). Phases are spaced wider than
/// `group_interval`, so timing cannot decide what goes together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_and_silencing_match_the_real_alertmanager() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let weir_config = format!(
        r#"
group_by = ["alertname", "region"]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"

[receivers.hook]
type = "webhook"
url = "http://{addr}/receive/weir"
priorities = ["high", "low"]
"#
    );
    let config = config_file(dir.path(), &weir_config)?;
    let weir = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    let am_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let am_yml = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_yml,
        format!(
            r#"route:
  receiver: hook
  group_by: [alertname, region]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://{addr}/receive/alertmanager
        send_resolved: true
"#
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
    let child = std::process::Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", am_yml.display()))
        .arg(format!("--storage.path={}", dir.path().join("am").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting prometheus-alertmanager ({e}): install Debian's prometheus-alertmanager (tests/run.sh does)"
            )
        })?;
    let _am = KillOnDrop(child);
    let am_url = format!("http://127.0.0.1:{am_port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "Alertmanager ready", async || {
        Ok(client
            .get(format!("{am_url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(()))
    })
    .await?;

    let post = async |alerts: Value| -> Result<()> {
        for url in [
            format!("{am_url}/api/v2/alerts"),
            format!("{}/api/v2/alerts", weir.http_url),
        ] {
            let status = client.post(&url).json(&alerts).send().await?.status();
            if !status.is_success() {
                bail!("POST {url}: {status}");
            }
        }
        Ok(())
    };
    let alert = |name: &str, region: &str, service: &str, resolved: bool| {
        let mut a = json!({"labels": {"alertname": name, "region": region, "service": service}});
        if resolved {
            a["endsAt"] = json!(weir_e2e::rfc3339(weir_e2e::now_ns() - 1_000_000_000));
        }
        a
    };
    let phase_gap = Duration::from_secs(5);

    // 1. Six alerts in three groups.
    post(json!([
        alert("Down", "eu", "a", false),
        alert("Down", "eu", "b", false),
        alert("Down", "eu", "c", false),
        alert("Down", "us", "d", false),
        alert("Down", "us", "e", false),
        alert("Slow", "eu", "f", false),
    ]))
    .await?;
    tokio::time::sleep(phase_gap).await;
    // 2. A silence for service h, made with amtool in both; then g (not
    //    silenced) and h (silenced) join the Down/eu group.
    for url in [&am_url, &weir.http_url] {
        let out = std::process::Command::new("amtool")
            .arg(format!("--alertmanager.url={url}"))
            .args([
                "silence",
                "add",
                "service=h",
                "alertname=Down",
                "-d",
                "1h",
                "-c",
                "diff",
                "-a",
                "test",
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "amtool against {url}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    post(json!([
        alert("Down", "eu", "g", false),
        alert("Down", "eu", "h", false)
    ]))
    .await?;
    tokio::time::sleep(phase_gap).await;
    // 3. The us group resolves.
    post(json!([
        alert("Down", "us", "d", true),
        alert("Down", "us", "e", true)
    ]))
    .await?;
    tokio::time::sleep(phase_gap).await;

    let collect = |name: &str| {
        let mut got: Vec<String> = fake.got(name).iter().map(normalized).collect();
        got.sort();
        got
    };
    let (weir_sent, am_sent) = (collect("weir"), collect("alertmanager"));
    eprintln!("Alertmanager sent:\n  {}", am_sent.join("\n  "));
    assert_eq!(
        weir_sent,
        am_sent,
        "Weir sent:\n  {}",
        weir_sent.join("\n  ")
    );
    // And the cases the comparison covers did happen.
    assert!(
        am_sent
            .iter()
            .any(|n| n.contains("a:firing b:firing c:firing g:firing")),
        "{am_sent:?}"
    );
    assert!(
        am_sent.iter().any(|n| n.starts_with("resolved")),
        "{am_sent:?}"
    );
    assert!(am_sent.iter().all(|n| !n.contains("h:")), "{am_sent:?}");
    Ok(())
}
