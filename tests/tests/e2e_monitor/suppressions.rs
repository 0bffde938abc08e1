//! Suppressions end to end: refused when they would suppress the world,
//! blast radius, withheld notifications recorded in `weir_suppressed`, the
//! firing sent once a suppression ends, a scheduled one active and expired
//! on time, crash safety, and the real `amtool` (Debian
//! `prometheus-alertmanager`; tests/run.sh installs it) against Weir's
//! Alertmanager v2 silences API.

use std::process::Output;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use weir_e2e::{WeirServer, now_ns, rfc3339};

use super::{Fake, LATEST_CHECK_RULE, config_file, eventually};

type Row = serde_json::Map<String, Value>;

fn amtool(server: &WeirServer, args: &[&str]) -> Result<Output> {
    match std::process::Command::new("amtool")
        .arg(format!("--alertmanager.url={}", server.http_url))
        .args(args)
        .output()
    {
        Ok(out) => Ok(out),
        Err(e) => bail!(
            "running amtool ({e}): install Debian's prometheus-alertmanager (tests/run.sh does)"
        ),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn post_json(server: &WeirServer, path: &str, body: &Value) -> Result<(u16, Value)> {
    let (status, text) = server
        .post(path, "application/json", body.to_string())
        .await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn get_json(server: &WeirServer, path: &str) -> Result<Value> {
    let (status, text) = server.get(path).await?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

async fn suppressed_rows(server: &WeirServer, id: &str) -> Result<Vec<Row>> {
    Ok(server
        .sql(&format!(
            "SELECT rule, transition, labels FROM weir_suppressed WHERE suppression_id = '{id}'"
        ))
        .await
        .unwrap_or_default())
}

fn slack_firing(fake: &Fake, service: &str) -> usize {
    fake.got("slack")
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("[FIRING") && t.contains(&format!("{service} is down")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressions_hide_what_they_target_for_their_window_and_amtool_manages_them() -> Result<()>
{
    let (fake, addr) = Fake::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config_file(
        dir.path(),
        &format!(
            r#"
max_suppression_matches = 1

[tables.service_metrics]
time_column = "recorded_at"

[probes.checkout]
url = "http://{addr}/health"
interval = "1s"
timeout = "800ms"

[probes.search]
url = "http://{addr}/down"
interval = "1s"
timeout = "800ms"

[rules.service_down]
{LATEST_CHECK_RULE}

[receivers.chat]
type = "slack"
url = "http://{addr}/receive/slack"
"#
        ),
    )?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--config", &config])?;

    // Suppressing the world is refused, in every spelling, by every door.
    for world in [
        json!([[r#"alertname=~".+""#]]),
        json!([[r#"alertname!="zzz""#]]),
        json!([[r#"alertname!~"zzz""#]]),
        json!([[r#"service_name="""#]]),
        json!([[r#"service_name="checkout""#], [r#"team=~".*""#]]),
        json!([]),
        json!([[]]),
    ] {
        let (status, answer) = post_json(
            &server,
            "/api/v1/suppressions",
            &json!({"targets": world, "duration": "1h", "created_by": "ana", "comment": "x"}),
        )
        .await?;
        assert_eq!(status, 400, "{world}: {answer}");
    }
    for world in ["alertname=~.+", "alertname!=zzz", "alertname!~zzz"] {
        let out = amtool(&server, &["silence", "add", world, "-c", "x", "-a", "ana"])?;
        assert!(
            !out.status.success(),
            "amtool add {world} was accepted: {}",
            stdout(&out)
        );
        assert!(
            stderr(&out).contains("every value") || stderr(&out).contains("no equality matcher"),
            "amtool add {world}: {}",
            stderr(&out)
        );
    }
    let out = server.cli(&[
        "suppress",
        "add",
        "--target",
        "alertname!=\"zzz\"",
        "--duration",
        "1h",
        "--comment",
        "x",
        "--created-by",
        "ana",
    ])?;
    assert!(
        !out.status.success(),
        "weir suppress add accepted alertname!=zzz"
    );
    let listed = get_json(&server, "/api/v1/suppressions").await?;
    assert_eq!(listed["suppressions"], json!([]), "nothing was made");

    // search fails from the start; its suppression is made before it fires.
    let out = server.cli(&[
        "suppress",
        "add",
        "--target",
        "service_name=\"search\"",
        "--duration",
        "1h",
        "--comment",
        "search is being rebuilt",
        "--created-by",
        "ana",
        "--ticket",
        "OPS-1",
    ])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let search_id = stdout(&out).lines().next().unwrap_or_default().to_string();
    assert_eq!(search_id.len(), 36, "an id: {}", stdout(&out));

    // checkout is suppressed for 8 s, then fails.
    let out = server.cli(&[
        "suppress",
        "add",
        "--target",
        "service_name=\"checkout\",team=\"core\"",
        "--duration",
        "8s",
        "--comment",
        "deploy",
        "--created-by",
        "ana",
    ])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let checkout_id = stdout(&out).lines().next().unwrap_or_default().to_string();
    let checkout_ends = get_json(&server, &format!("/api/v1/suppressions/{checkout_id}")).await?
        ["suppression"]["ends_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let checkout_ends_ns = chrono::DateTime::parse_from_rfc3339(&checkout_ends)?
        .timestamp_nanos_opt()
        .unwrap_or_default();
    fake.set_health(503);

    // Both fire, both withheld and recorded.
    for (id, service) in [(&search_id, "search"), (&checkout_id, "checkout")] {
        let rows = eventually(Duration::from_secs(20), "a withheld firing", async || {
            let rows = suppressed_rows(&server, id).await?;
            Ok((!rows.is_empty()).then_some(rows))
        })
        .await?;
        assert_eq!(rows[0]["rule"], "service_down");
        assert_eq!(rows[0]["transition"], "firing");
        assert!(
            rows[0]["labels"]
                .as_str()
                .unwrap_or_default()
                .contains(service)
        );
    }
    assert_eq!(slack_firing(&fake, "search"), 0);
    assert_eq!(slack_firing(&fake, "checkout"), 0);
    let detail = get_json(&server, &format!("/api/v1/suppressions/{search_id}")).await?;
    assert_eq!(detail["suppression"]["state"], "active");
    assert_eq!(detail["suppression"]["metadata"]["ticket"], "OPS-1");
    assert_eq!(detail["withheld"][0]["transition"], "firing");
    assert_eq!(detail["withheld"][0]["labels"]["service_name"], "search");

    // Blast radius: team="core" matches both firing alerts, over the limit
    // of 1 — refused unless forced; the preview says the same.
    let wide = json!({"targets": [[r#"team="core""#]], "duration": "1h", "created_by": "ana", "comment": "all of core"});
    let (status, preview) = post_json(&server, "/api/v1/suppressions/preview", &wide).await?;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["blast_radius"]["alert_instances"], 2, "{preview}");
    assert_eq!(preview["blast_radius"]["firing_now"], 2, "{preview}");
    let (status, refused) = post_json(&server, "/api/v1/suppressions", &wide).await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_suppression_matches")
    );
    let mut forced = wide.clone();
    forced["force"] = json!(true);
    let (status, made) = post_json(&server, "/api/v1/suppressions", &forced).await?;
    assert_eq!(status, 200, "{made}");
    let wide_id = made["suppression"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(made["blast_radius"]["services"], 2);
    let out = amtool(&server, &["silence", "expire", &wide_id])?;
    assert!(out.status.success(), "amtool expire: {}", stderr(&out));

    // checkout's suppression ends while it still fails: its firing is sent
    // then, once; search stays quiet.
    eventually(
        Duration::from_secs(20),
        "checkout's firing after its suppression",
        async || Ok((slack_firing(&fake, "checkout") == 1).then_some(())),
    )
    .await?;
    let sent = server
        .sql(
            "SELECT CAST(time AS BIGINT) AS t FROM weir_notifications
             WHERE transition = 'firing' AND result = 'delivered'",
        )
        .await?;
    assert_eq!(sent.len(), 1, "one firing delivered, checkout's: {sent:?}");
    assert!(
        super::number(&sent[0]["t"]) >= checkout_ends_ns as f64,
        "sent at {:?}, before the suppression's end ({checkout_ends})",
        sent[0]
    );
    assert_eq!(slack_firing(&fake, "search"), 0);

    // amtool sees the active one, and the expired ones with --expired.
    let out = amtool(&server, &["silence", "query", "-o", "json"])?;
    assert!(out.status.success(), "amtool query: {}", stderr(&out));
    let active: Value = serde_json::from_str(&stdout(&out))?;
    let ids: Vec<&str> = active
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec![search_id.as_str()], "{active}");
    assert_eq!(active[0]["matchers"][0]["name"], "service_name");
    assert_eq!(active[0]["createdBy"], "ana");
    let out = amtool(&server, &["silence", "query", "--expired", "-o", "json"])?;
    let expired = stdout(&out);
    assert!(
        expired.contains(&wide_id) && expired.contains(&checkout_id),
        "{expired}"
    );

    // amtool schedules one ahead: pending, then active, then expired, on time.
    let start = now_ns() + 3_000_000_000;
    let end = start + 3_000_000_000;
    let out = amtool(
        &server,
        &[
            "silence",
            "add",
            "service_name=checkout",
            "-c",
            "later",
            "-a",
            "bo",
            &format!("--start={}", rfc3339(start)),
            &format!("--end={}", rfc3339(end)),
        ],
    )?;
    assert!(out.status.success(), "amtool add: {}", stderr(&out));
    let later = stdout(&out);
    let state = async |id: &str| -> Result<String> {
        Ok(
            get_json(&server, &format!("/api/v2/silence/{id}")).await?["status"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(state(&later).await?, "pending");
    for (want, at) in [("active", start), ("expired", end)] {
        let seen = eventually(Duration::from_secs(10), want, async || {
            let s = state(&later).await?;
            Ok((s == want).then_some(now_ns()))
        })
        .await?;
        assert!(seen >= at, "{want} before its time");
        assert!(
            seen < at + 2_000_000_000,
            "{want} late: {} ms",
            (seen - at) / 1_000_000
        );
    }

    // A crash right after a change keeps it: made, kill -9, still there.
    let out = amtool(
        &server,
        &[
            "silence",
            "add",
            "service_name=web",
            "-c",
            "just before a crash",
            "-a",
            "cy",
        ],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let last = stdout(&out);
    server.kill9();
    server.restart()?;
    let after = get_json(&server, "/api/v1/suppressions").await?;
    let states: Vec<(String, String)> = after["suppressions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_string(),
                s["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&(last.clone(), "active".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(search_id.clone(), "active".into())),
        "{states:?}"
    );
    // search keeps failing and stays suppressed after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(slack_firing(&fake, "search"), 0);
    assert_eq!(slack_firing(&fake, "checkout"), 1);

    uptime_outside_maintenance_matches_the_reference_query_on_filtered_rows(&server).await
}

/// The README's uptime query without maintenance windows, against the
/// reference query run on rows with the windows cut out literally.
async fn uptime_outside_maintenance_matches_the_reference_query_on_filtered_rows(
    server: &WeirServer,
) -> Result<()> {
    let windows = server
        .sql(
            "SELECT service_name, CAST(starts_at AS BIGINT) AS s, CAST(ends_at AS BIGINT) AS e
             FROM weir_suppressions WHERE service_name IS NOT NULL",
        )
        .await?;
    assert!(windows.len() >= 3, "{windows:?}");
    let cut = windows
        .iter()
        .map(|w| {
            format!(
                "(CAST(service_name AS VARCHAR) = '{}' AND CAST(recorded_at AS BIGINT) >= {} AND CAST(recorded_at AS BIGINT) < {})",
                w["service_name"].as_str().unwrap_or_default(),
                super::number(&w["s"]),
                super::number(&w["e"])
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let reference =
        std::fs::read_to_string(weir_e2e::tests_dir().join("sql/reference_uptime.sql"))?;
    let filtered = reference.replace(
        "FROM service_metrics",
        &format!("FROM (SELECT * FROM service_metrics WHERE NOT ({cut})) AS service_metrics"),
    );
    let by_service = |rows: Vec<Row>| -> std::collections::BTreeMap<String, Row> {
        rows.into_iter()
            .map(|r| {
                (
                    r["service_name"].as_str().unwrap_or_default().to_string(),
                    r,
                )
            })
            .collect()
    };
    let raw = by_service(server.sql(&reference).await?);
    let outside = by_service(server.sql(&filtered).await?);
    let both = by_service(
        server
            .sql(&std::fs::read_to_string(
                weir_e2e::tests_dir().join("sql/uptime_outside_maintenance.sql"),
            )?)
            .await?,
    );
    assert_eq!(both.len(), raw.len(), "{both:?}");
    for (service, row) in &both {
        assert_eq!(
            super::number(&row["avg_uptime_pct"]),
            super::number(&raw[service]["avg_uptime_pct"]),
            "{service}"
        );
        let expected = outside
            .get(service)
            .and_then(|r| r.get("avg_uptime_pct"))
            .map_or(f64::NAN, super::number);
        // A null (no check outside the windows) is left out of the answer.
        let got = row
            .get("avg_uptime_outside_maintenance_pct")
            .map_or(f64::NAN, super::number);
        assert!(
            got == expected || (got.is_nan() && expected.is_nan()),
            "{service}: {got} outside maintenance, {expected} by the literal cut"
        );
    }
    // Not vacuous: the windows hold checks of both services.
    for service in ["checkout", "search"] {
        let n = server
            .count(&format!(
                "SELECT count(*) FROM service_metrics WHERE CAST(service_name AS VARCHAR) = '{service}' AND ({cut})"
            ))
            .await?;
        assert!(n > 0, "no {service} check inside a window");
    }
    Ok(())
}
