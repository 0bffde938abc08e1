//! The reference uptime query, verbatim, against rows written over gRPC —
//! checked against DuckDB over the same rows, and identical whether the rows
//! sit in the write buffer, in Parquet, or come back after a restart.

use std::io::Write;
use std::process::Command;

use rand::{Rng, SeedableRng};
use weir_e2e::{MetricRow, RequestBuilder, WeirServer, now_ns, rfc3339, tests_dir};

const HOUR_NS: i64 = 3_600_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;

/// 150 services, checks every 5 minutes over 30 hours, with missing values,
/// some services flapping and some solidly up or down.
///
/// The rows fill whole clock hours only: none in the current hour, none in
/// the hour holding the 24-hour edge. Every hourly bucket the query sees is
/// then the same whatever the minute the test runs, so the answer is the
/// same on every run (an average landing on a half-cent would otherwise
/// round one way in DuckDB's decimals and the other in floats, some runs).
fn generate(now: i64) -> Vec<MetricRow> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let hour_of = |t: i64| t - t.rem_euclid(HOUR_NS);
    let current_hour = hour_of(now);
    let edge_hour = hour_of(now - 24 * HOUR_NS);
    let mut rows = Vec::new();
    for s in 0..150 {
        let service = format!("svc-{s:03}");
        let health = match s % 5 {
            0 => 1.0,
            1 => 0.999,
            2 => 0.995,
            3 => 0.97,
            _ => 0.6,
        };
        let offset = rng.random_range(0..5 * MINUTE_NS);
        let mut t = current_hour - 30 * HOUR_NS + offset;
        while t < current_hour {
            // Rows in the edge hour would depend on the exact instant each
            // engine evaluates NOW(); leave that hour empty.
            if hour_of(t) != edge_hour {
                let healthy = rng.random_bool(health);
                rows.push(MetricRow {
                    service_name: service.clone(),
                    status: if healthy { "healthy" } else { "unhealthy" },
                    response_ms: rng
                        .random_bool(0.9)
                        .then(|| (rng.random_range(1.0..900.0f64) * 10.0).round() / 10.0),
                    status_code: rng
                        .random_bool(0.95)
                        .then_some(if healthy { 200 } else { 503 }),
                    recorded_at_ns: t,
                });
            }
            t += 5 * MINUTE_NS;
        }
    }
    rows
}

fn write_csv(rows: &[MetricRow], path: &std::path::Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "service_name,status,response_ms,status_code,recorded_at").unwrap();
    for r in rows {
        writeln!(
            f,
            "{},{},{},{},{}",
            r.service_name,
            r.status,
            r.response_ms.map(|v| v.to_string()).unwrap_or_default(),
            r.status_code.map(|v| v.to_string()).unwrap_or_default(),
            rfc3339(r.recorded_at_ns)
        )
        .unwrap();
    }
}

fn duckdb_answer(
    csv: &std::path::Path,
    sql: &std::path::Path,
) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = Command::new("python3")
        .arg(tests_dir().join("oracle/duckdb_query.py"))
        .arg(csv)
        .arg(sql)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "DuckDB oracle failed (is the `duckdb` Python package installed? the README's test command installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn number(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::Number(n) => n.as_f64().unwrap(),
        serde_json::Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

fn assert_same_answer(
    weir: &[serde_json::Map<String, serde_json::Value>],
    duck: &[serde_json::Map<String, serde_json::Value>],
) {
    assert_eq!(weir.len(), duck.len(), "row count");
    // ORDER BY avg_uptime may order ties differently: compare by service.
    let by_service = |rows: &[serde_json::Map<String, serde_json::Value>]| {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| a["service_name"].as_str().cmp(&b["service_name"].as_str()));
        rows
    };
    for (w, d) in by_service(weir).iter().zip(by_service(duck).iter()) {
        assert_eq!(w["service_name"], d["service_name"]);
        for column in ["avg_uptime_pct", "worst_hour_pct"] {
            let (a, b) = (number(&w[column]), number(&d[column]));
            assert!(
                (a - b).abs() < 1e-9,
                "{} {column}: weir {a}, duckdb {b}",
                w["service_name"]
            );
        }
        assert_eq!(
            number(&w["degraded_hours"]),
            number(&d["degraded_hours"]),
            "{}",
            w["service_name"]
        );
        assert_eq!(w["status"], d["status"], "{}", w["service_name"]);
    }
    // Weir's own order must be ascending by average uptime.
    let averages: Vec<f64> = weir.iter().map(|r| number(&r["avg_uptime_pct"])).collect();
    assert!(
        averages.windows(2).all(|w| w[0] <= w[1]),
        "not ordered: {averages:?}"
    );
}

/// Equal, except that floats may differ in the last bits: a sum's rounding
/// depends on the order rows arrive in, which differs between buffer and files.
fn assert_rows_close(
    got: &[serde_json::Map<String, serde_json::Value>],
    want: &[serde_json::Map<String, serde_json::Value>],
    context: &str,
) {
    assert_eq!(got.len(), want.len(), "{context}: row count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "{context}"
        );
        for (key, gv) in g {
            let wv = &w[key];
            match (gv.as_f64(), wv.as_f64()) {
                (Some(a), Some(b)) if gv.is_f64() || wv.is_f64() => {
                    assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                        "{context}: {key}: {a} vs {b}"
                    );
                }
                _ => assert_eq!(gv, wv, "{context}: {key}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_query_matches_duckdb_in_buffer_parquet_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        WeirServer::start(&dir.path().join("data"), &["--persist-interval", "1h"]).unwrap();
    let rows = generate(now_ns());
    let mut client = server.client().await.unwrap();
    for (i, chunk) in rows.chunks(2000).enumerate() {
        let mut request = RequestBuilder::default();
        for row in chunk {
            request.metric(row);
        }
        let response = client
            .write(request.build(i as u64))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.rows_written, chunk.len() as u64);
    }

    let csv = dir.path().join("rows.csv");
    write_csv(&rows, &csv);
    let query_path = tests_dir().join("sql/reference_uptime.sql");
    let query = std::fs::read_to_string(&query_path).unwrap();
    let expected = duckdb_answer(&csv, &query_path);
    assert_eq!(expected.len(), 150);
    let statuses: std::collections::HashSet<_> = expected
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses.len(),
        3,
        "the data must exercise every status: {statuses:?}"
    );

    let in_buffer = server.sql(&query).await.unwrap();
    assert_same_answer(&in_buffer, &expected);

    let total = server
        .count("SELECT COUNT(*) AS n FROM service_metrics")
        .await
        .unwrap();
    assert_eq!(total, rows.len() as i64);

    // The same queries over Parquet must give the same answers.
    let six_hours_ago = rfc3339(now_ns() - 6 * HOUR_NS);
    let recent_svc_007 = format!(
        "SELECT service_name, recorded_at, response_ms, status_code FROM service_metrics \
         WHERE service_name = 'svc-007' AND recorded_at >= '{six_hours_ago}' ORDER BY recorded_at"
    );
    let differential = [
        "SELECT COUNT(*) AS n, COUNT(response_ms) AS ms, COUNT(status_code) AS codes FROM service_metrics",
        "SELECT service_name, COUNT(*) AS n, SUM(response_ms) AS total_ms, MIN(recorded_at) AS first, MAX(recorded_at) AS last \
         FROM service_metrics GROUP BY service_name ORDER BY service_name",
        "SELECT DATE_TRUNC('hour', recorded_at) AS hour, COUNT(*) FILTER (WHERE status = 'unhealthy') AS bad \
         FROM service_metrics GROUP BY 1 ORDER BY 1",
        recent_svc_007.as_str(),
        "SELECT service_name, AVG(response_ms) OVER (PARTITION BY service_name) AS avg_ms FROM service_metrics \
         WHERE status_code IS NULL ORDER BY service_name, avg_ms LIMIT 50",
    ];
    let mut before = Vec::new();
    for q in differential {
        before.push(server.sql(q).await.unwrap());
    }
    let persisted = server.persist().await.unwrap();
    assert!(persisted["files"].as_u64().unwrap() >= 1, "{persisted}");
    assert_eq!(persisted["rows"].as_u64().unwrap(), rows.len() as u64);
    for (q, expected_rows) in differential.iter().zip(&before) {
        let after = server.sql(q).await.unwrap();
        assert_rows_close(&after, expected_rows, &format!("buffer vs Parquet: {q}"));
    }
    assert_same_answer(&server.sql(&query).await.unwrap(), &expected);

    // Parquet files are where the catalog says, sorted and zstd-compressed.
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data_dir.join("catalog.json")).unwrap())
            .unwrap();
    let files = catalog["tables"]["service_metrics"]["files"]
        .as_array()
        .unwrap();
    assert!(!files.is_empty());
    let rows_in_files: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows_in_files, rows.len() as u64);

    // A restart keeps data and schema.
    server.restart().unwrap();
    for (q, expected_rows) in differential.iter().zip(&before) {
        assert_rows_close(
            &server.sql(q).await.unwrap(),
            expected_rows,
            &format!("after restart: {q}"),
        );
    }
    let columns = server
        .sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'service_metrics' ORDER BY ordinal_position")
        .await
        .unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["column_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "recorded_at",
            "service_name",
            "status",
            "response_ms",
            "status_code"
        ]
    );
}
