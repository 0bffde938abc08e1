//! `weir alerts backtest`: two hours of stored checks replayed through a
//! rule file — the real CLI against the real server — report when each
//! service would have fired and resolved and how it would have been told,
//! and nothing is sent or changed in the live alert state.

use anyhow::Result;
use serde_json::Value;
use weir_e2e::{MetricRow, RequestBuilder, now_ns, rfc3339};

use super::{Fake, config_file};

const MINUTE: i64 = 60_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_replays_history_through_a_rule_file_and_sends_nothing() -> Result<()> {
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(
        dir.path(),
        "[tables.service_metrics]\ntime_column = \"recorded_at\"\n",
    )?;
    let server =
        weir_e2e::WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // Two hours of checks, one a minute: `a` fails from 90 to 60 minutes
    // ago, `b` from 30 to 20 minutes ago.
    let now = now_ns() / MINUTE * MINUTE;
    let start = now - 120 * MINUTE;
    let mut req = RequestBuilder::default();
    for m in 0..120 {
        let at = start + m * MINUTE;
        for (service, down) in [("a", (30..60).contains(&m)), ("b", (90..100).contains(&m))] {
            req.metric(&MetricRow {
                service_name: service.to_string(),
                recorded_at_ns: at,
                status: if down { "unhealthy" } else { "healthy" },
                response_ms: Some(10.0),
                status_code: Some(if down { 503 } else { 200 }),
            });
        }
    }
    server.client().await?.write(req.build(0)).await?;

    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            r#"
group_by = ["alertname", "service_name"]
group_wait = "0s"

[rules.down]
query = """
SELECT CAST(service_name AS VARCHAR) AS service_name, bool_or(status = 'unhealthy') AS firing
FROM service_metrics WHERE recorded_at > now() - INTERVAL '90 seconds' GROUP BY 1
"""
interval = "1m"
consecutive = 2
summary = "${{labels.service_name}} is down"

[receivers.chat]
type = "slack"
url = "http://{addr}/receive/slack"
"#
        ),
    )?;
    let out = server.cli(&[
        "alerts",
        "backtest",
        "--rules",
        rules.to_str().unwrap_or_default(),
        "--from",
        &rfc3339(start),
        "--to",
        &rfc3339(now),
        "--json",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["failed_evaluations"], 0, "{report}");
    let minute_of = |t: &Value| -> i64 {
        let at = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap_or(""))
            .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
            .unwrap_or(0);
        (at - start) / MINUTE
    };
    let transitions: Vec<(String, String, i64)> = report["transitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["to"] == "firing" || t["to"] == "resolved")
        .map(|t| {
            (
                t["labels"]["service_name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                t["to"].as_str().unwrap_or("").to_string(),
                minute_of(&t["time"]),
            )
        })
        .collect();
    // Fires at the second failing evaluation; resolves at the first
    // evaluation whose 90 s window holds no failure.
    assert_eq!(
        transitions,
        [
            ("a", "firing", 31),
            ("a", "resolved", 61),
            ("b", "firing", 91),
            ("b", "resolved", 101)
        ]
        .map(|(s, to, m)| (s.to_string(), to.to_string(), m)),
        "{report}"
    );
    let told: Vec<(String, String)> = report["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["group_key"]["service_name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                n["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("a", "firing"),
            ("a", "resolved"),
            ("b", "firing"),
            ("b", "resolved")
        ]
        .map(|(s, st)| (s.to_string(), st.to_string()))
    );

    // The table form, and bad requests.
    let out = server.cli(&[
        "alerts",
        "backtest",
        "--rules",
        rules.to_str().unwrap_or_default(),
        "--from",
        &rfc3339(start),
        "--to",
        &rfc3339(now),
    ])?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("a is down") && table.contains("4 notifications"),
        "{table}"
    );
    let out = server.cli(&[
        "alerts",
        "backtest",
        "--rules",
        rules.to_str().unwrap_or_default(),
        "--from",
        &rfc3339(now),
        "--to",
        &rfc3339(start),
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not after"));

    // Nothing was sent, and the live alert state knows nothing of it.
    assert!(fake.got("slack").is_empty());
    assert_eq!(server.count("SELECT count(*) FROM weir_alerts").await?, 0);
    Ok(())
}
