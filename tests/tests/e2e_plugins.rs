//! WebAssembly plugins through the real binary: table pipelines (filter,
//! enricher), raw-ingest sources (adapters) over HTTP and gRPC, dead letters,
//! failure policies, per-plugin counters, and hot reload.

use std::path::Path;
use std::time::Duration;

use weir_e2e::{RequestBuilder, WeirServer, guest, now_ns};
use weir_proto::v1::{RawWriteRequest, field};

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The pipelines most tests use: `checks` is de-duplicated by state and
/// enriched with owners; three sources adapt raw input.
fn config(extra: &str) -> String {
    format!(
        r#"
plugin_watch_interval = "off"

[pipelines.checks]
on_failure = "reject"

[[pipelines.checks.stages]]
wasm = {state}
config = {{ key = "service_name", status = "status" }}

[[pipelines.checks.stages]]
wasm = {owner}
[pipelines.checks.stages.config]
"owner.checkout" = "team=payments,channel=#pay-alerts,priority=high"
default = "team=sre,channel=#ops,priority=low"

[pipelines.conflicts]
on_failure = "pass-through"
[[pipelines.conflicts.stages]]
wasm = {owner}
config = {{ default = "team=sre,channel=#ops,priority=low" }}

[sources.nagios]
wasm = {nagios}
config = {{ service = "disk", host = "web-1" }}

[sources.prometheus]
wasm = {prometheus}

[sources.datadog]
wasm = {webhook}
{extra}
"#,
        state = toml_path(&guest("state-change-filter")),
        owner = toml_path(&guest("owner-enricher")),
        nagios = toml_path(&guest("nagios-adapter")),
        prometheus = toml_path(&guest("prometheus-text-adapter")),
        webhook = toml_path(&guest("webhook-adapter")),
    )
}

fn start(dir: &Path, config_text: &str, extra_flags: &[&str]) -> WeirServer {
    let config_path = dir.join("weir.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let mut flags = vec![
        "--config",
        config_path.to_str().unwrap(),
        "--log-format",
        "json",
    ];
    flags.extend_from_slice(extra_flags);
    WeirServer::start(&dir.join("data"), &flags).unwrap()
}

fn checks(rows: &[(i64, &str, &str)]) -> RequestBuilder {
    let mut req = RequestBuilder::default();
    for (t, service, status) in rows {
        req.point(
            "checks",
            *t,
            &[("service_name", service), ("status", status)],
            vec![("response_ms", field::Value::F64(12.5))],
        );
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_enrichers_and_adapters_run_in_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &config(""), &[]);
    let mut client = server.client().await.unwrap();
    let t0 = now_ns() - 60_000_000_000;

    // The state-change filter keeps the first event of a series and each change.
    let written = client
        .write(
            checks(&[
                (t0, "checkout", "healthy"),
                (t0 + 1, "checkout", "healthy"),
                (t0 + 2, "search", "healthy"),
                (t0 + 3, "checkout", "unhealthy"),
            ])
            .build(0),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.rows_written, 3);
    // Its state lives in the instance, across batches.
    let again = client
        .write(
            checks(&[
                (t0 + 4, "checkout", "unhealthy"),
                (t0 + 5, "search", "unhealthy"),
            ])
            .build(1),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.rows_written, 1);

    let rows = server
        .sql("SELECT service_name, status, team, channel, priority FROM checks ORDER BY time")
        .await
        .unwrap();
    let got: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| {
            ["service_name", "status", "team", "channel", "priority"]
                .iter()
                .map(|k| r[*k].as_str().unwrap_or("?"))
                .collect()
        })
        .collect();
    assert_eq!(
        got,
        [
            ["checkout", "healthy", "payments", "#pay-alerts", "high"],
            ["search", "healthy", "sre", "#ops", "low"],
            ["checkout", "unhealthy", "payments", "#pay-alerts", "high"],
            ["search", "unhealthy", "sre", "#ops", "low"],
        ]
    );

    // Nagios output over HTTP, send_nsca lines over the gRPC raw-write RPC.
    let (status, body) = server
        .post(
            "/api/v1/ingest/nagios",
            "text/plain",
            "DISK WARNING - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968",
        )
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"rows_written":1}"#));
    let raw = client
        .write_raw(RawWriteRequest {
            source: "nagios".into(),
            content_type: String::new(),
            body: b"db-1\tpostgres\t0\tPOSTGRES OK - 12 connections | connections=12;80;95\n"
                .to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.rows_written, 1);
    // The adapter's `checks` events went through the `checks` pipeline too.
    let nagios = server
        .sql("SELECT service_name, status, exit_code, root, connections, team FROM checks WHERE exit_code IS NOT NULL ORDER BY service_name")
        .await
        .unwrap();
    assert_eq!(nagios.len(), 2, "{nagios:?}");
    assert_eq!(nagios[0]["service_name"], "disk");
    assert_eq!(nagios[0]["status"], "unhealthy");
    assert_eq!(nagios[0]["root"], 2643.0);
    assert_eq!(nagios[0]["team"], "sre");
    assert_eq!(nagios[1]["connections"], 12.0);

    let (status, _) = server
        .post(
            "/api/v1/ingest/prometheus",
            "text/plain; version=0.0.4",
            "# TYPE http_requests_total counter\nhttp_requests_total{method=\"get\",code=\"200\"} 1027\nhttp_requests_total{method=\"post\",code=\"500\"} 3\n",
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        server
            .count("SELECT CAST(SUM(value) AS BIGINT) FROM http_requests_total")
            .await
            .unwrap(),
        1030
    );

    let (status, _) = server
        .post(
            "/api/v1/ingest/datadog",
            "application/json",
            r#"{"id": 7391, "title": "[Triggered] CPU high on web-1", "alert_transition": "Triggered", "priority": "normal", "host": "web-1", "tags": "env:prod,service:checkout"}"#,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let alerts = server
        .sql("SELECT alert_id, status, priority, service_name FROM alerts")
        .await
        .unwrap();
    assert_eq!(alerts[0]["alert_id"], "7391");
    assert_eq!(alerts[0]["priority"], "high");
    assert_eq!(alerts[0]["service_name"], "checkout");

    // Input an adapter refuses: 400 with its reason, kept as a dead letter.
    let (status, body) = server
        .post("/api/v1/ingest/nagios", "text/plain", "all good, trust me")
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot tell the state"), "{body}");
    let (status, body) = server
        .post("/api/v1/ingest/nope", "text/plain", "x")
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let status = client
        .write_raw(RawWriteRequest {
            source: "datadog".into(),
            content_type: "application/json".into(),
            body: b"{not json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let dead = server
        .sql("SELECT pipeline, plugin, reason, input FROM weir_dead_letters ORDER BY time")
        .await
        .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["pipeline"], "source:nagios");
    assert_eq!(dead[0]["plugin"], "nagios-adapter");
    assert_eq!(dead[0]["reason"], "rejected");
    assert_eq!(dead[0]["input"], "all good, trust me");

    // pass-through: the enricher's output conflicts with the table (`team`
    // is an f64 here), so the batch is stored as it came, and dead-lettered.
    let mut conflict = RequestBuilder::default();
    conflict.point(
        "conflicts",
        t0,
        &[("service_name", "x")],
        vec![("team", field::Value::F64(1.0))],
    );
    assert_eq!(
        client
            .write(conflict.build(2))
            .await
            .unwrap()
            .into_inner()
            .rows_written,
        1
    );
    let stored = server.sql("SELECT * FROM conflicts").await.unwrap();
    assert_eq!(stored[0]["team"], 1.0);
    assert!(!stored[0].contains_key("channel"), "{stored:?}");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM weir_dead_letters WHERE pipeline = 'table:conflicts' AND reason = 'bad_output'").await.unwrap(),
        1
    );

    // Counters: SQL and /metrics.
    let stats = server
        .sql("SELECT pipeline, plugin, kind, calls, events_in, events_out, events_dropped FROM weir_plugins WHERE pipeline = 'table:checks' ORDER BY plugin")
        .await
        .unwrap();
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert_eq!(stats[0]["plugin"], "owner-enricher");
    assert_eq!(stats[1]["plugin"], "state-change-filter");
    assert_eq!(stats[1]["kind"], "filter");
    // 6 gRPC events + 2 Nagios checks into the filter; 4 + 2 out.
    assert_eq!(
        (
            stats[1]["events_in"].as_u64(),
            stats[1]["events_out"].as_u64()
        ),
        (Some(8), Some(6))
    );
    assert_eq!(stats[1]["events_dropped"].as_u64(), Some(2));
    let (_, metrics) = server.get("/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"weir_plugin_events_in_total{pipeline="table:checks",plugin="state-change-filter",kind="filter"} 8"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"weir_plugin_rejections_total{pipeline="source:nagios",plugin="nagios-adapter",kind="adapter"} 1"#));

    // The enricher's `log` import landed in the server's log, tagged with the plugin.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"plugin\":\"owner-enricher\"") && l.contains("loaded 1 owners")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_plugins_are_contained_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let evil = format!(
        r#"
[sources.evil]
wasm = {}
timeout = "300ms"
memory_limit = "32MiB"
max_output = "1MiB"
"#,
        toml_path(&guest("evil-sandbox"))
    );
    let server = start(dir.path(), &config(&evil), &[]);
    let mut client = server.client().await.unwrap();
    let t0 = now_ns() - 60_000_000_000;

    for (i, (attack, reason)) in [
        ("loop", "timeout"),
        ("memory", "memory_limit"),
        ("panic", "trap"),
        ("huge-output", "output_limit"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = server
            .post("/api/v1/ingest/evil", "text/plain", attack)
            .await
            .unwrap();
        assert_eq!(status, 422, "{attack}: {body}");
        assert!(body.contains("weir_dead_letters"), "{attack}: {body}");
        // Other pipelines keep serving after every attack.
        let rows = client
            .write(checks(&[(t0 + i as i64, &format!("svc-{i}"), "healthy")]).build(i as u64))
            .await
            .unwrap()
            .into_inner()
            .rows_written;
        assert_eq!(rows, 1, "after {attack}");
        assert_eq!(server.get("/health/ready").await.unwrap().0, 200);
        let dead = server
            .sql(&format!(
                "SELECT reason, error FROM weir_dead_letters WHERE input = '{attack}'"
            ))
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{attack}: {dead:?}");
        assert_eq!(dead[0]["reason"], reason, "{attack}: {dead:?}");
    }
    let panic = server
        .sql("SELECT error FROM weir_dead_letters WHERE input = 'panic'")
        .await
        .unwrap();
    assert!(
        panic[0]["error"]
            .as_str()
            .unwrap()
            .contains("evil plugin panics on purpose"),
        "{panic:?}"
    );

    // Prying: the guest sees no files, no environment, no clock.
    let data_file = server.data_dir.join("catalog.json");
    for body in [
        format!("read-file {}", data_file.display()),
        "read-env HOME".to_string(),
        "clock".to_string(),
    ] {
        let (status, answer) = server
            .post("/api/v1/ingest/evil", "text/plain", body.clone())
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}: {answer}");
    }
    let outcomes = server
        .sql("SELECT attack, outcome FROM evil ORDER BY attack")
        .await
        .unwrap();
    let outcome = |attack: &str| {
        outcomes
            .iter()
            .find(|r| r["attack"] == attack)
            .and_then(|r| r["outcome"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        !outcome("read-file").contains("READ"),
        "{}",
        outcome("read-file")
    );
    assert!(
        outcome("read-env").starts_with("vars: []; HOME: Err(NotPresent)"),
        "{}",
        outcome("read-env")
    );
    assert_eq!(outcome("clock"), "seconds since epoch: Ok(0)");

    let stats = server
        .sql("SELECT timeouts, traps, limit_hits, restarts FROM weir_plugins WHERE pipeline = 'source:evil'")
        .await
        .unwrap();
    assert_eq!(stats[0]["timeouts"], 1, "{stats:?}");
    assert_eq!(stats[0]["traps"], 1, "{stats:?}");
    assert_eq!(stats[0]["limit_hits"], 2, "{stats:?}");

    // A guest that imports sockets is refused at reload, naming the import;
    // the running plugins stay.
    let socket = format!(
        "{evil}\n[sources.socket]\nwasm = {}\n",
        toml_path(&guest("evil-socket"))
    );
    std::fs::write(dir.path().join("weir.toml"), config(&socket)).unwrap();
    let out = server.cli(&["plugin", "reload"]).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wasi:sockets/tcp"), "{stderr}");
    let (status, _) = server
        .post("/api/v1/ingest/evil", "text/plain", "hello")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = server
        .post("/api/v1/ingest/socket", "text/plain", "127.0.0.1:9")
        .await
        .unwrap();
    assert_eq!(status, 404);

    // At start-up the same config is refused with the same reason.
    drop(server);
    let again = std::process::Command::new(weir_e2e::weir_binary())
        .args(["serve", "--config"])
        .arg(dir.path().join("weir.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("wasi:sockets/tcp") && stderr.contains("evil_socket.wasm"),
        "{stderr}"
    );
}

async fn teams(server: &WeirServer) -> Vec<(i64, String)> {
    server
        .sql("SELECT CAST(time AS BIGINT) AS t, team FROM reloads ORDER BY t")
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["t"].as_i64().unwrap(),
                r["team"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_plugins_between_batches_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let owner = |team: &str| {
        format!(
            "plugin_watch_interval = \"100ms\"\n[[pipelines.reloads.stages]]\nwasm = {}\nconfig = {{ default = \"team={team},channel=#x,priority=low\" }}\n",
            toml_path(&guest("owner-enricher"))
        )
    };
    let server = start(dir.path(), &owner("a"), &[]);
    let config_path = dir.path().join("weir.toml");
    let t0 = now_ns() - 3_600_000_000_000;

    // A writer streams 10-event batches while the config changes under it:
    // once through `weir plugin reload`, once through the file watcher.
    let writer = {
        let mut client = server.client().await.unwrap();
        tokio::spawn(async move {
            let mut acked = 0u64;
            for batch in 0..300i64 {
                let mut req = RequestBuilder::default();
                for i in 0..10 {
                    req.point(
                        "reloads",
                        t0 + batch * 10 + i,
                        &[("service_name", "s")],
                        vec![("n", field::Value::I64(batch))],
                    );
                }
                acked += client
                    .write(req.build(batch as u64))
                    .await
                    .unwrap()
                    .into_inner()
                    .rows_written;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config_path, owner("b")).unwrap();
    let out = server.cli(&["plugin", "reload"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("table:reloads/owner-enricher"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A broken plugin path: reload refused, team b stays.
    std::fs::write(
        &config_path,
        owner("c").replace("owner_enricher.wasm", "missing.wasm"),
    )
    .unwrap();
    let out = server.cli(&["plugin", "reload"]).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wasm"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The watcher picks up a fixed file by itself.
    std::fs::write(&config_path, owner("d")).unwrap();
    let acked = writer.await.unwrap();
    assert_eq!(acked, 3000);

    let rows = teams(&server).await;
    assert_eq!(rows.len(), 3000, "no event dropped");
    // Teams only move forward a → b → d, and every batch is all one team.
    let order = |t: &str| {
        ["a", "b", "d"]
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("team {t:?}"))
    };
    for pair in rows.windows(2) {
        assert!(order(&pair[0].1) <= order(&pair[1].1), "{pair:?}");
    }
    for batch in rows.chunks(10) {
        assert!(
            batch.iter().all(|r| r.1 == batch[0].1),
            "a batch saw two plugins: {batch:?}"
        );
    }
    let seen: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert!(seen.contains("a") && seen.contains("b"), "{seen:?}");
    // The watcher reloads the fixed file by itself (the writer may have
    // finished first): new batches get team d.
    let mut client = server.client().await.unwrap();
    let mut last = String::new();
    for attempt in 0..50 {
        let mut req = RequestBuilder::default();
        req.point(
            "reloads",
            t0 + 1_000_000 + attempt,
            &[("service_name", "s")],
            vec![],
        );
        client.write(req.build(0)).await.unwrap();
        last = teams(&server).await.last().unwrap().1.clone();
        if last == "d" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, "d", "the watcher reloaded the changed config");
}

/// A guest written in C against the WIT alone (guest-examples/c-filter),
/// loaded and run by the server like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_in_c_runs_in_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!(
        "[[pipelines.pages.stages]]\nwasm = {}\nconfig = {{ status = \"status\", keep = \"unhealthy\" }}\n",
        toml_path(&guest("c-filter"))
    );
    let server = start(dir.path(), &config_text, &[]);
    let mut client = server.client().await.unwrap();
    let t0 = now_ns() - 60_000_000_000;
    let mut req = RequestBuilder::default();
    for (i, status) in ["healthy", "unhealthy", "healthy", "unhealthy"]
        .iter()
        .enumerate()
    {
        req.point(
            "pages",
            t0 + i as i64,
            &[("service_name", "api"), ("status", status)],
            vec![],
        );
    }
    req.point("pages", t0 + 10, &[("service_name", "no-status")], vec![]);
    let written = client
        .write(req.build(0))
        .await
        .unwrap()
        .into_inner()
        .rows_written;
    assert_eq!(written, 3);
    let rows = server
        .sql("SELECT service_name, status FROM pages ORDER BY time")
        .await
        .unwrap();
    let statuses: Vec<_> = rows
        .iter()
        .map(|r| r.get("status").and_then(|s| s.as_str()).unwrap_or("-"))
        .collect();
    assert_eq!(statuses, ["unhealthy", "unhealthy", "-"]);
    assert!(server.log().contains("c filter ready"), "{}", server.log());
    let kind = server
        .sql("SELECT kind FROM weir_plugins WHERE plugin = 'c-filter'")
        .await
        .unwrap();
    assert_eq!(kind[0]["kind"], "filter");
}

/// System tables are written only by Weir: an adapter producing rows for
/// `weir_dead_letters` (or any `weir_…` table) is a faulty plugin — its
/// output is refused, and the dead letter Weir writes about it lands with
/// Weir's own column types, as do all later ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_cannot_forge_rows_in_system_tables() {
    let dir = tempfile::tempdir().unwrap();
    let forgers = format!(
        r#"
[sources.forger]
wasm = {webhook}
config = {{ table = "weir_dead_letters" }}

[sources.shouter]
wasm = {webhook}
config = {{ table = "WEIR_PLUGINS" }}
"#,
        webhook = toml_path(&guest("webhook-adapter"))
    );
    let server = start(dir.path(), &config(&forgers), &[]);
    let alert =
        r#"{"id": "1", "title": "forged", "alert_transition": "Triggered", "host": "web-1"}"#;
    for source in ["forger", "shouter"] {
        let (status, body) = server
            .post(
                &format!("/api/v1/ingest/{source}"),
                "application/json",
                alert,
            )
            .await
            .unwrap();
        assert_eq!(status, 422, "{source}: {body}");
        assert!(body.contains("reserved"), "{source}: {body}");
    }
    // Only Weir's own rows are there, with Weir's types: the error is a
    // string, input_rows a count.
    let dead = server
        .sql("SELECT pipeline, reason, input_rows, arrow_typeof(error) AS error_type FROM weir_dead_letters ORDER BY pipeline")
        .await
        .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["pipeline"], "source:forger");
    assert_eq!(dead[0]["reason"], "bad_output");
    assert_eq!(dead[0]["input_rows"], 0);
    assert_eq!(dead[0]["error_type"], "Utf8");
    assert_eq!(dead[1]["pipeline"], "source:shouter");
    assert!(
        server
            .sql("SELECT title FROM weir_dead_letters")
            .await
            .is_err(),
        "no forged column"
    );
}
