//! Monitoring through the real binary: probes against a local HTTP service,
//! an alert rule of three consecutive failures, PagerDuty / Slack /
//! Alertmanager-webhook receivers as local fakes, the alert tables, crash
//! safety of alert state and notifications, the status page, bad input;
//! suppressions through Weir's API, its CLI and the real `amtool`
//! (`suppressions.rs`); events through Weir's API, gRPC and a real
//! Prometheus posting to Weir's Alertmanager API (`events.rs`); alert
//! groups (`groups.rs`); context collected for notifications (`context.rs`);
//! other tools' webhooks through adapter plugins and the `weir_events`
//! pipeline (`adapted.rs`).

mod adapted;
mod backtest;
mod context;
mod events;
mod groups;
mod suppressions;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;
use weir_e2e::{WeirServer, eventually};

/// By receiver path, the statuses it answers before it answers 200.
type FailPlan = Vec<(String, VecDeque<u16>)>;

/// A local service to probe and a set of fake receivers, on one port.
#[derive(Clone, Default)]
struct Fake {
    /// The status `/health` answers.
    health: Arc<AtomicU16>,
    /// What each receiver path got: (path, JSON body), in order.
    received: Arc<Mutex<Vec<(String, Value)>>>,
    /// Statuses a receiver path answers before it answers 200.
    fail_plan: Arc<Mutex<FailPlan>>,
}

impl Fake {
    async fn start() -> Result<(Self, SocketAddr)> {
        let fake = Fake::default();
        fake.health.store(200, Ordering::SeqCst);
        let app = Router::new()
            .route("/health", get(health))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
            )
            .route(
                "/json",
                get(|| async { axum::Json(serde_json::json!({"checks": [{"state": "down"}]})) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/hang",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "never"
                }),
            )
            .route("/receive/{name}", post(receive))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((fake, addr))
    }

    fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    fn fail_first(&self, receiver: &str, statuses: &[u16]) {
        self.fail_plan
            .lock()
            .unwrap()
            .push((receiver.to_string(), statuses.iter().copied().collect()));
    }

    fn got(&self, receiver: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == receiver)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

async fn health(State(fake): State<Fake>) -> (StatusCode, &'static str) {
    let code = StatusCode::from_u16(fake.health.load(Ordering::SeqCst)).unwrap();
    (code, "ok")
}

async fn receive(State(fake): State<Fake>, Path(name): Path<String>, body: Bytes) -> StatusCode {
    let planned = {
        let mut plan = fake.fail_plan.lock().unwrap();
        plan.iter_mut()
            .find(|(r, _)| *r == name)
            .and_then(|(_, statuses)| statuses.pop_front())
    };
    if let Some(status) = planned {
        // Recorded as an attempt that failed.
        fake.received
            .lock()
            .unwrap()
            .push((format!("{name}:failed"), serde_json::json!(status)));
        return StatusCode::from_u16(status).unwrap();
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.received.lock().unwrap().push((name, json));
    StatusCode::OK
}

/// The seed's rule: the newest check of each service, failing when
/// unhealthy; `checked_at` makes `consecutive` count checks.
const LATEST_CHECK_RULE: &str = r#"
query = """
SELECT DISTINCT ON (service_name)
       CAST(service_name AS VARCHAR) AS service_name, status = 'unhealthy' AS firing,
       response_ms AS value, recorded_at AS checked_at
FROM service_metrics
WHERE recorded_at > now() - INTERVAL '10 minutes'
ORDER BY service_name, recorded_at DESC
"""
interval = "1s"
consecutive = 3
priority = "high"
summary = "${labels.service_name} is down"
description = "the health check of ${labels.service_name} fails"
runbook = "https://runbooks.example/${labels.service_name}"
labels = { team = "core" }
"#;

/// Writes a config file. Alerts are told at once (`group_wait = "0s"`) and
/// a group's changes a second apart, unless the text says otherwise:
/// these tests are about what is told; `groups.rs` tests when.
fn config_file(dir: &std::path::Path, text: &str) -> Result<String> {
    let path = dir.join("weir.toml");
    let prompt = if text.contains("group_wait") {
        ""
    } else {
        "group_wait = \"0s\"\ngroup_interval = \"1s\"\n"
    };
    std::fs::write(&path, format!("{prompt}{text}"))?;
    Ok(path.display().to_string())
}

fn reference_config(fake: SocketAddr, pager_path: &str) -> String {
    format!(
        r#"
[tables.service_metrics]
time_column = "recorded_at"

[probes.checkout]
url = "http://{fake}/health"
interval = "1s"
timeout = "800ms"
labels = {{ region = "eu" }}

[rules.service_down]
{LATEST_CHECK_RULE}

[receivers.pager]
type = "pagerduty"
url = "http://{fake}/receive/{pager_path}"
routing_key = "test-routing-key"

[receivers.chat]
type = "slack"
url = "http://{fake}/receive/slack"

[receivers.am]
type = "webhook"
url = "http://{fake}/receive/webhook"
priorities = ["low"]
"#
    )
}

fn number(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_pages_once_and_resolves_once() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &reference_config(addr, "pagerduty"))?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // Healthy checks first.
    eventually(Duration::from_secs(20), "healthy probe rows", async || {
        let n = server
            .count("SELECT count(*) FROM service_metrics WHERE status = 'healthy'")
            .await
            .unwrap_or(0);
        Ok((n >= 2).then_some(()))
    })
    .await?;
    fake.set_health(503);
    let trigger = eventually(
        Duration::from_secs(30),
        "the PagerDuty trigger",
        async || Ok(fake.got("pagerduty").into_iter().next()),
    )
    .await?;
    // Not before the third failed check: the firing transition comes at or
    // after the third unhealthy row.
    let third_failure = server
        .sql(
            "SELECT CAST(recorded_at AS BIGINT) AS t FROM service_metrics
             WHERE status = 'unhealthy' ORDER BY recorded_at LIMIT 1 OFFSET 2",
        )
        .await?;
    let fired = server
        .sql(
            "SELECT CAST(time AS BIGINT) AS t FROM weir_alert_history
             WHERE to_state = 'firing' AND rule = 'service_down'",
        )
        .await?;
    assert_eq!(fired.len(), 1, "one firing transition: {fired:?}");
    assert!(
        number(&fired[0]["t"]) >= number(&third_failure[0]["t"]),
        "fired at {:?}, before the third failure at {:?}",
        fired[0],
        third_failure[0]
    );

    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "test-routing-key");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["summary"], "checkout is down");
    assert_eq!(trigger["payload"]["source"], "checkout");
    assert_eq!(trigger["payload"]["custom_details"]["team"], "core");
    assert_eq!(
        trigger["links"][0]["href"],
        "https://runbooks.example/checkout"
    );
    let dedup_key = trigger["dedup_key"].as_str().unwrap().to_string();

    // Still failing for a while: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.got("pagerduty").len(), 1);
    let slack = fake.got("slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(
        slack[0]["text"]
            .as_str()
            .unwrap()
            .contains("[FIRING:high] checkout is down")
    );
    assert!(slack[0]["blocks"].as_array().is_some_and(|b| !b.is_empty()));
    // A `low` receiver gets nothing of a `high` alert.
    assert!(fake.got("webhook").is_empty());

    // Nothing else fired (a rule failing at start-up would show here).
    let alerts = server.sql("SELECT * FROM weir_alerts").await?;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "firing");
    // One PagerDuty incident per alert group: its id is the dedup key.
    let groups = server
        .sql("SELECT id, alerts FROM weir_alert_groups")
        .await?;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["id"], dedup_key.as_str());
    assert_eq!(groups[0]["alerts"], 1);
    assert_eq!(alerts[0]["priority"], "high");
    assert!(
        alerts[0]["labels"]
            .as_str()
            .unwrap()
            .contains(r#""team":"core""#)
    );

    // Recovery: exactly one resolve.
    fake.set_health(200);
    let resolve = eventually(
        Duration::from_secs(30),
        "the PagerDuty resolve",
        async || Ok(fake.got("pagerduty").get(1).cloned()),
    )
    .await?;
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], dedup_key.as_str());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.got("pagerduty").len(), 2);
    let slack = fake.got("slack");
    assert_eq!(slack.len(), 2);
    assert!(slack[1]["text"].as_str().unwrap().starts_with("[RESOLVED]"));

    let history = server
        .sql(
            "SELECT from_state, to_state FROM weir_alert_history
             WHERE rule = 'service_down' ORDER BY seq",
        )
        .await?;
    let moves: Vec<(String, String)> = history
        .iter()
        .map(|r| {
            (
                r["from_state"].as_str().unwrap().to_string(),
                r["to_state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("inactive".into(), "pending".into()),
            ("pending".into(), "firing".into()),
            ("firing".into(), "resolved".into())
        ]
    );
    let delivered = server
        .sql(
            "SELECT receiver, transition, count(*) AS n FROM weir_notifications
             WHERE result = 'delivered' GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .await?;
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    assert!(delivered.iter().all(|r| r["n"] == 1));
    let state = server.sql("SELECT state FROM weir_alerts").await?;
    assert_eq!(state[0]["state"], "resolved");

    // The reference uptime query over the probe rows agrees with the rows.
    let rows = server
        .sql(
            "SELECT CAST(date_trunc('hour', recorded_at) AS BIGINT) AS h,
                    count(*) AS total, count(*) FILTER (WHERE status = 'healthy') AS healthy
             FROM service_metrics GROUP BY 1",
        )
        .await?;
    let hourly: Vec<f64> = rows
        .iter()
        .map(|r| (100.0 * number(&r["healthy"]) / number(&r["total"]) * 100.0).round() / 100.0)
        .collect();
    let expected = hourly.iter().sum::<f64>() / hourly.len() as f64;
    let reference =
        std::fs::read_to_string(weir_e2e::tests_dir().join("sql/reference_uptime.sql"))?;
    let answer = server.sql(&reference).await?;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0]["service_name"], "checkout");
    let avg = number(&answer[0]["avg_uptime_pct"]);
    assert!(
        (avg - (expected * 100.0).round() / 100.0).abs() < 0.011,
        "{avg} vs {expected}"
    );
    assert!(avg < 100.0, "some checks failed");
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 that expires in `days`;
/// returns (ca.pem, cert.pem, key.pem).
fn certificates(dir: &std::path::Path, days: u32) -> Result<[std::path::PathBuf; 3]> {
    let ca = weir_e2e::TestCa::new(dir)?;
    let (cert, key) = ca.issue("localhost", days)?;
    Ok([ca.ca_pem(), cert, key])
}

/// `openssl s_server -www`: a real TLS server answering HTTP GETs.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("openssl s_server did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, port })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_outcome_is_a_row_that_says_what_happened() -> Result<()> {
    let (_fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let [ca, cert, key] = certificates(dir.path(), 5)?;
    let tls = TlsServer::start(&cert, &key)?;
    let tls_url = format!("https://127.0.0.1:{}/", tls.port);
    let config = format!(
        r#"
[tables.service_metrics]
time_column = "recorded_at"

[probes.ok]
url = "http://{addr}/health"
interval = "1s"
body_contains = "ok"
labels = {{ region = "eu", tier = "web" }}

[probes.refused]
url = "http://127.0.0.1:1/health"
interval = "1s"

[probes.nxdomain]
url = "http://no-such-host.invalid/health"
interval = "2s"
timeout = "1500ms"

[probes.slow]
url = "http://{addr}/slow"
interval = "2s"
timeout = "500ms"

[probes.body]
url = "http://{addr}/health"
interval = "1s"
body_regex = "^healthy$"

[probes.json]
url = "http://{addr}/json"
interval = "1s"
json_path = "$.checks[0].state"
json_equals = "up"

[probes.status]
url = "http://{addr}/health"
method = "post"
interval = "1s"
expect_status = ["2xx"]

[probes.tcp_ok]
tcp = "{addr}"
interval = "1s"

[probes.tcp_refused]
tcp = "127.0.0.1:1"
interval = "1s"

[probes.tls_expiring]
url = "{tls_url}"
interval = "1s"
tls_ca_file = {ca:?}
tls_min_days = 10

[probes.tls_untrusted]
url = "{tls_url}"
interval = "1s"
"#
    );
    let config = config_file(dir.path(), &config)?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;
    let latest = eventually(
        Duration::from_secs(30),
        "a row from every probe",
        async || {
            let rows = server
            .sql(
                "SELECT DISTINCT ON (service_name) CAST(service_name AS VARCHAR) AS service, status,
                        response_ms, status_code, error, tls_days_left,
                        CAST(region AS VARCHAR) AS region
                 FROM service_metrics ORDER BY service_name, recorded_at DESC",
            )
            .await
            .unwrap_or_default();
            Ok((rows.len() == 11).then_some(rows))
        },
    )
    .await?;
    let row = |name: &str| {
        latest
            .iter()
            .find(|r| r["service"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {latest:?}"))
            .clone()
    };
    let error = |name: &str| row(name)["error"].as_str().unwrap_or("").to_string();

    let ok = row("ok");
    assert_eq!(ok["status"], "healthy");
    assert_eq!(ok["status_code"], 200);
    assert!(number(&ok["response_ms"]) > 0.0);
    assert_eq!(ok["region"], "eu");
    assert!(ok.get("error").is_none_or(Value::is_null), "{ok:?}");

    for (name, kind) in [
        ("refused", "connect: "),
        ("nxdomain", "dns: "),
        ("slow", "timeout: "),
        ("body", "condition: body does not match"),
        (
            "json",
            r#"condition: $.checks[0].state is "down", not "up""#,
        ),
        ("status", "condition: status 405 is not an expected status"),
        ("tcp_refused", "connect: "),
        (
            "tls_expiring",
            "condition: TLS certificate expires in 5.0 days, fewer than 10",
        ),
        ("tls_untrusted", "tls: "),
    ] {
        let r = row(name);
        assert_eq!(r["status"], "unhealthy", "{name}: {r:?}");
        assert!(error(name).starts_with(kind), "{name}: {:?}", error(name));
    }
    // No answer: nulls, never a missing row.
    for name in [
        "refused",
        "nxdomain",
        "slow",
        "tcp_refused",
        "tls_untrusted",
    ] {
        let r = row(name);
        assert!(
            r.get("response_ms").is_none_or(Value::is_null),
            "{name}: {r:?}"
        );
        assert!(
            r.get("status_code").is_none_or(Value::is_null),
            "{name}: {r:?}"
        );
    }
    let tls_row = row("tls_expiring");
    let days = number(&tls_row["tls_days_left"]);
    assert!((4.0..5.01).contains(&days), "{days}");
    assert_eq!(tls_row["status_code"], 200);
    let tcp = row("tcp_ok");
    assert_eq!(tcp["status"], "healthy");
    assert!(tcp.get("status_code").is_none_or(Value::is_null));
    // Only the two statuses, nothing else.
    let statuses = server
        .sql("SELECT DISTINCT status FROM service_metrics ORDER BY status")
        .await?;
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_firing_or_retrying_loses_no_transition_and_sends_nothing_twice() -> Result<()>
{
    let (fake, addr) = Fake::start().await?;
    // PagerDuty is down at first: two 500s and a 503, then it answers.
    fake.fail_first("pagerduty", &[500, 500, 503]);
    let dir = tempfile::tempdir()?;
    let config = config_file(dir.path(), &reference_config(addr, "pagerduty"))?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;
    fake.set_health(503);
    // Slack gets the trigger; PagerDuty fails twice.
    eventually(
        Duration::from_secs(30),
        "two failed PagerDuty attempts",
        async || {
            let failed = fake.got("pagerduty:failed").len();
            if failed < 2 || fake.got("slack").is_empty() {
                return Ok(None);
            }
            // ... and Weir has recorded the second one.
            let rows = server
                .sql("SELECT count(*) AS n FROM weir_notifications WHERE receiver = 'pager'")
                .await?;
            Ok((rows[0]["n"].as_i64() >= Some(2)).then_some(()))
        },
    )
    .await?;
    // kill -9 while firing and while the page is being retried.
    server.kill9();
    server.restart()?;
    let trigger = eventually(
        Duration::from_secs(30),
        "the page after the restart",
        async || Ok(fake.got("pagerduty").into_iter().next()),
    )
    .await?;
    assert_eq!(trigger["event_action"], "trigger");
    // Still failing after the restart: not a new alert, nothing re-sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.got("pagerduty").len(), 1);
    assert_eq!(fake.got("slack").len(), 1, "{:?}", fake.got("slack"));
    assert_eq!(fake.got("pagerduty:failed").len(), 3);

    // Crash again while firing, then recover: one resolve each.
    server.kill9();
    server.restart()?;
    fake.set_health(200);
    eventually(Duration::from_secs(30), "the resolves", async || {
        Ok((fake.got("pagerduty").len() == 2 && fake.got("slack").len() == 2).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.got("pagerduty")[1]["event_action"], "resolve");
    assert_eq!(fake.got("pagerduty").len(), 2);
    assert_eq!(fake.got("slack").len(), 2);

    // Every attempt is a row; the transitions are all there, once each.
    let attempts = server
        .sql(
            "SELECT attempt, http_status, result FROM weir_notifications
             WHERE receiver = 'pager' AND transition = 'firing' ORDER BY attempt",
        )
        .await?;
    let seen: Vec<(i64, i64, String)> = attempts
        .iter()
        .map(|r| {
            (
                r["attempt"].as_i64().unwrap(),
                r["http_status"].as_i64().unwrap_or(0),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, 500, "retrying".to_string()),
            (2, 500, "retrying".to_string()),
            (3, 503, "retrying".to_string()),
            (4, 200, "delivered".to_string())
        ]
    );
    let history = server
        .sql(
            "SELECT to_state, count(*) AS n FROM weir_alert_history
             WHERE rule = 'service_down' GROUP BY 1 ORDER BY 1",
        )
        .await?;
    let counts: Vec<(String, i64)> = history
        .iter()
        .map(|r| {
            (
                r["to_state"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("firing".to_string(), 1),
            ("pending".to_string(), 1),
            ("resolved".to_string(), 1)
        ]
    );
    Ok(())
}

/// `weir serve` with `config`: must exit at once with an error naming
/// `expect`.
fn refuses_to_start(dir: &std::path::Path, config: &str, expect: &str) -> Result<()> {
    let path = config_file(dir, config)?;
    let out = std::process::Command::new(weir_e2e::weir_binary())
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--config", &path])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {config}");
    assert!(stderr.contains(expect), "expected {expect:?} in: {stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_probes_and_receivers_get_clear_errors_and_the_server_keeps_serving() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    for (config, expect) in [
        (
            "[rules.r]\nquery = 'SELEC 1'",
            "rules.r.query: the SQL does not parse",
        ),
        (
            "[rules.r]\nquery = 'SELECT service_name FROM t'\nsummary = '${labels.servce_name} down'",
            "rules.r.summary: unknown placeholder ${labels.servce_name}",
        ),
        ("[probes.p]\nurl = 'htp:/garbage'", "probes.p.url"),
        (
            "[probes.p]\nurl = 'http://x'\ninterval = 'often'",
            "probes.p.interval",
        ),
        (
            "[receivers.r]\ntype = 'email'\nurl = 'http://x'",
            "receivers.r.type",
        ),
        (
            "[rules.r]\nquery = 'SELECT 1 AS x'\nreceivers = ['nobody']",
            "no receiver named \"nobody\"",
        ),
        (
            "[probes.p]\nurl = 'http://x'\nsurprise = 1",
            "unknown field `surprise`",
        ),
    ] {
        refuses_to_start(dir.path(), config, expect)?;
    }

    let (fake, addr) = Fake::start().await?;
    let config = format!(
        r#"
[tables.service_metrics]
time_column = "recorded_at"

[rules.huge]
query = "SELECT 'i' || CAST(value AS VARCHAR) AS instance FROM generate_series(1, 1000000)"
interval = "1s"

[rules.missing_table]
query = "SELECT host FROM no_such_table"
interval = "1s"

[rules.everything]
query = "SELECT 'x' AS instance"
interval = "1s"
priority = "high"
receivers = ["hang", "chat"]

[receivers.hang]
type = "webhook"
url = "http://{addr}/hang"
timeout = "1s"

[receivers.chat]
type = "slack"
url = "http://{addr}/receive/slack"
"#
    );
    let config = config_file(dir.path(), &config)?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data2"), &["--config", &config])?;
    let errors = eventually(Duration::from_secs(30), "rule errors", async || {
        let rows = server
            .sql("SELECT DISTINCT CAST(rule AS VARCHAR) AS rule, error FROM weir_rule_errors ORDER BY 1")
            .await
            .unwrap_or_default();
        let rules: std::collections::BTreeSet<_> =
            rows.iter().map(|r| r["rule"].as_str().unwrap_or("").to_string()).collect();
        Ok((rules.len() == 2).then_some(rows))
    })
    .await?;
    let error_of = |rule: &str| {
        errors
            .iter()
            .find(|r| r["rule"] == rule)
            .map(|r| r["error"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert!(
        error_of("huge").contains("more than 10000 alert instances"),
        "{errors:?}"
    );
    assert!(
        error_of("missing_table").contains("no_such_table"),
        "{errors:?}"
    );
    // A failing rule is itself an alert (after three failed evaluations).
    eventually(Duration::from_secs(30), "the rule-failing alerts", async || {
        let n = server
            .count("SELECT count(*) FROM weir_alerts WHERE rule = 'weir_rule_failing' AND state = 'firing'")
            .await
            .unwrap_or(0);
        Ok((n == 2).then_some(()))
    })
    .await?;
    // The hanging receiver times out and is retried; the chat receiver of
    // the same alert is delivered all the same; the server keeps serving.
    eventually(
        Duration::from_secs(30),
        "a delivery past the hanging receiver",
        async || {
            Ok(fake
                .got("slack")
                .iter()
                .any(|m| m["text"].as_str().is_some_and(|t| t.contains("everything")))
                .then_some(()))
        },
    )
    .await?;
    let timeouts = eventually(Duration::from_secs(30), "a timed-out attempt", async || {
        let rows = server
            .sql("SELECT error, result FROM weir_notifications WHERE receiver = 'hang'")
            .await
            .unwrap_or_default();
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await?;
    assert!(
        timeouts[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("timeout"),
        "{timeouts:?}"
    );
    assert_eq!(timeouts[0]["result"], "retrying");
    let (status, _) = server.get("/health/ready").await?;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .count("SELECT count(*) FROM weir_alerts WHERE rule = 'everything'")
            .await?,
        1
    );

    // The probes API refuses garbage with a 400 that says why.
    let client = reqwest::Client::new();
    for (body, expect) in [
        (r#"{"url": "not a url"}"#, "is not a URL"),
        (
            r#"{"url": "http://x", "timeout": "10m", "interval": "1m"}"#,
            "at most the interval",
        ),
        (r#"{"tcp": "nohost"}"#, "host:port"),
        (r#"{"nonsense": true}"#, "unknown field"),
        ("[1, 2", "expected a JSON object"),
    ] {
        let response = client
            .put(format!("{}/api/v1/probes/p", server.http_url))
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(expect), "{body}: {text}");
    }
    Ok(())
}

/// Where tests leave files for a person to look at.
fn artifacts_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target directory");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating the artifacts directory");
    dir
}

/// Headless Chromium (Debian `chromium`; tests/run.sh installs it).
fn chromium(args: &[&str]) -> Result<std::process::Output> {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .args(args)
        .output();
    match out {
        Ok(out) => Ok(out),
        Err(e) => bail!("running chromium ({e}): install Debian's chromium (tests/run.sh does)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_heartbeats_and_the_probes_api() -> Result<()> {
    let (_fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = format!(
        r#"
[tables.service_metrics]
time_column = "recorded_at"

[probes.good]
url = "http://{addr}/health"
interval = "1s"

[probes.bad]
url = "http://{addr}/down"
interval = "1s"

[heartbeats.nightly]
period = "2s"
grace = "1s"

[rules.service_down]
{rule}
"#,
        rule = LATEST_CHECK_RULE.replace("consecutive = 3", "consecutive = 2")
    );
    let config = config_file(dir.path(), &config)?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // A heartbeat is a healthy row; its absence, an unhealthy one.
    let (status, _) = server
        .post("/api/v1/heartbeat/nightly", "text/plain", "")
        .await?;
    assert_eq!(status, 200);
    let (status, body) = server
        .post("/api/v1/heartbeat/weekly", "text/plain", "")
        .await?;
    assert_eq!(status, 404, "{body}");
    // The same over gRPC.
    let mut grpc = weir_proto::v1::monitor_service_client::MonitorServiceClient::connect(
        server.grpc_url.clone(),
    )
    .await?;
    let beat = |name: &str| weir_proto::v1::HeartbeatRequest { name: name.into() };
    grpc.heartbeat(beat("nightly")).await?;
    let unknown = grpc.heartbeat(beat("weekly")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let missed = eventually(Duration::from_secs(30), "a missed heartbeat", async || {
        let rows = server
            .sql("SELECT status, error FROM service_metrics WHERE service_name = 'nightly' ORDER BY recorded_at")
            .await
            .unwrap_or_default();
        Ok((rows.len() >= 3).then_some(rows))
    })
    .await?;
    // Two beats (HTTP, gRPC), then silence.
    let statuses: Vec<&str> = missed
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses[..3],
        ["healthy", "healthy", "unhealthy"],
        "{missed:?}"
    );
    assert!(
        missed[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("heartbeat: none for")
    );

    // The status page: JSON first, once the failing probe has fired.
    let report = eventually(
        Duration::from_secs(30),
        "a firing alert on the status page",
        async || {
            let (status, body) = server.get("/api/v1/status").await?;
            assert_eq!(status, 200, "{body}");
            let report: Value = serde_json::from_str(&body)?;
            let firing = report["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["state"] == "firing" && x["summary"] == "bad is down")
            });
            Ok(firing.then_some(report))
        },
    )
    .await?;
    let service = |name: &str| {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {report}"))
    };
    assert_eq!(service("good")["status"], "healthy");
    assert_eq!(number(&service("good")["uptime_24h"]), 100.0);
    assert_eq!(service("bad")["status"], "unhealthy");
    assert_eq!(number(&service("bad")["uptime_24h"]), 0.0);
    assert_eq!(service("bad")["hourly"].as_array().unwrap().len(), 48);
    let bad_alert = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["summary"] == "bad is down")
        .cloned()
        .unwrap_or_else(|| panic!("no alert for bad: {report}"));
    assert_eq!(bad_alert["priority"], "high");

    // The HTML page, rendered by a real browser at phone width.
    let url = format!("{}/status", server.http_url);
    let dom = chromium(&["--dump-dom", &url])?;
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains(r#"data-service="bad" data-status="unhealthy""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-service="good" data-status="healthy""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-failing="2""#),
        "bad and nightly fail: {dom}"
    );
    assert!(
        dom.contains(r#"data-rule="service_down" data-state="firing""#),
        "{dom}"
    );
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=390,1200",
        &url,
    ])?;
    let png = std::fs::read(&shot).map_err(|e| {
        anyhow::anyhow!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );

    // The same from the command line.
    let cli = |args: &[&str]| -> Result<String> {
        let out = server.cli(args)?;
        if !out.status.success() {
            bail!("weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let status = cli(&["status"])?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("bad ") && l.contains("unhealthy")),
        "{status}"
    );
    // `bad` fires; `nightly` (missed heartbeats) may have fired too by now.
    assert!(
        status.contains(" alerts firing") && !status.contains("; 0 alerts firing"),
        "{status}"
    );
    let alerts = cli(&["alerts"])?;
    assert!(
        alerts
            .lines()
            .any(|l| l.starts_with("firing") && l.contains("bad is down")),
        "{alerts}"
    );
    let probes = cli(&["probes"])?;
    assert!(
        probes
            .lines()
            .any(|l| l.starts_with("bad ") && l.contains("unhealthy: condition: status 503")),
        "{probes}"
    );
    let checked = cli(&["rules", "check", &config])?;
    assert!(
        checked.contains("1 rules, 0 receivers, 2 probes, 1 heartbeats: OK"),
        "{checked}"
    );
    let planned = cli(&["rules", "check", &config, "--server", &server.http_url])?;
    assert!(planned.contains("planned on the server"), "{planned}");
    let tested = cli(&["rules", "test", "service_down", "--config", &config])?;
    assert!(
        tested.lines().any(|l| l.starts_with("FIRING")
            && l.contains("service_name=bad")
            && l.ends_with("bad is down")),
        "{tested}"
    );
    assert!(
        tested
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("service_name=good")),
        "{tested}"
    );
    // As of a time before any data: nothing.
    let before = cli(&[
        "rules",
        "test",
        "service_down",
        "--config",
        &config,
        "--at",
        "2020-01-01T00:00:00Z",
    ])?;
    assert!(before.contains("0 instances"), "{before}");
    let bad_rule = dir.path().join("bad_rule.toml");
    std::fs::write(
        &bad_rule,
        "[rules.r]\nquery = \"SELECT service_name, status AS firing FROM service_metrics\"\n",
    )?;
    let out = server.cli(&[
        "rules",
        "check",
        &bad_rule.display().to_string(),
        "--server",
        &server.http_url,
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("column `firing` must be a boolean"));

    // Probes made through the API run, and survive a restart.
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{}/api/v1/probes/extra", server.http_url))
        .body(format!(
            r#"{{"url": "http://{addr}/health", "interval": "1s", "labels": {{"team": "api"}}}}"#
        ))
        .send()
        .await?;
    assert_eq!(put.status(), 200, "{}", put.text().await?);
    let put_config = client
        .put(format!("{}/api/v1/probes/good", server.http_url))
        .body(format!(r#"{{"url": "http://{addr}/down"}}"#))
        .send()
        .await?;
    assert_eq!(put_config.status(), 400);
    assert!(
        put_config
            .text()
            .await?
            .contains("defined in the config file")
    );
    server.restart()?;
    let probes = eventually(
        Duration::from_secs(30),
        "the API probe's result",
        async || {
            let (_, body) = server.get("/api/v1/probes").await?;
            let probes: Value = serde_json::from_str(&body)?;
            let extra = probes["probes"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["name"] == "extra").cloned());
            Ok(extra.filter(|e| !e["last"].is_null()))
        },
    )
    .await?;
    assert_eq!(probes["origin"], "api");
    assert_eq!(probes["last"]["healthy"], true);
    // Its rows carry its labels (written a moment after the run).
    eventually(Duration::from_secs(10), "the API probe's rows", async || {
        let n = server
            .count("SELECT count(*) FROM service_metrics WHERE service_name = 'extra' AND team = 'api'")
            .await
            .unwrap_or(0);
        Ok((n >= 1).then_some(()))
    })
    .await?;
    let deleted = client
        .delete(format!("{}/api/v1/probes/extra", server.http_url))
        .send()
        .await?;
    assert_eq!(deleted.status(), 200);
    let deleted_again = client
        .delete(format!("{}/api/v1/probes/extra", server.http_url))
        .send()
        .await?;
    assert_eq!(deleted_again.status(), 404);
    Ok(())
}
