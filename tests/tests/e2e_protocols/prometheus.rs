//! Prometheus remote write 1.0 at `/api/v1/prom/write`.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use prost::Message;
use serde_json::{Value, json};
use weir_e2e::{Prometheus, WeirServer, eventually, free_port};
use weir_protocols::remote_write::{Label, STALE_NAN_BITS, Sample, TimeSeries, WriteRequest};

use super::{Refused, post, rows};

const RW: &str = "/api/v1/prom/write";
const RW_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// The real Prometheus (Debian `prometheus`) scrapes Weir's `/metrics` and
/// its own, and remote-writes every sample to Weir: the series land in SQL
/// by metric name with their labels as tags, equal to what Prometheus
/// stored, and Weir drops none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_what_it_scrapes_into_weir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &[])?;
    let weir = server
        .http_url
        .strip_prefix("http://")
        .unwrap_or(&server.http_url)
        .to_string();
    let port = free_port()?;
    // Weir's own metrics are named `weir_…`, which only Weir may use as
    // table names: the relabelling stores them as `self_weir_…` (the
    // README's remote_write block says the same).
    let prometheus = Prometheus::start(
        dir.path(),
        port,
        &format!(
            r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: weir
    static_configs:
      - targets: ["{weir}"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: "http://{weir}{RW}"
    queue_config:
      batch_send_deadline: 1s
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "weir_(.*)"
        target_label: __name__
        replacement: "self_weir_$1"
"#
        ),
    )?;
    let logs = || {
        format!(
            "prometheus log:\n{}\nweir log:\n{}",
            prometheus.log(),
            server.log()
        )
    };

    // Both jobs' `up`, Weir's own counters and a summary with quantiles.
    eventually(
        Duration::from_secs(90),
        "remote-written series",
        async || {
            let ready = server
                .count("SELECT COUNT(DISTINCT job) FROM up WHERE value = 1")
                .await
                .unwrap_or(0)
                == 2
                && server
                    .count("SELECT COUNT(*) FROM self_weir_ingest_requests_total")
                    .await
                    .unwrap_or(0)
                    > 0
                && server
                    .count("SELECT COUNT(DISTINCT quantile) FROM go_gc_duration_seconds")
                    .await
                    .unwrap_or(0)
                    >= 3;
            Ok(ready.then_some(()))
        },
    )
    .await
    .with_context(logs)?;

    let up = rows(
        &server,
        "SELECT CAST(instance AS VARCHAR) AS instance, value FROM up WHERE job = 'weir' LIMIT 1",
    )
    .await?;
    assert_eq!(up[0]["instance"], weir.as_str());
    assert_eq!(up[0]["value"], 1.0);

    // A sample in Weir is the sample Prometheus stored at that millisecond.
    let newest = rows(
        &server,
        "SELECT CAST(time AS BIGINT) / 1000000 AS ms, value
         FROM scrape_samples_scraped WHERE job = 'prometheus' ORDER BY time DESC LIMIT 1",
    )
    .await?;
    let ms = newest[0]["ms"].as_i64().context("ms")?;
    let at = format!("{}.{:03}", ms / 1000, ms % 1000);
    let answer: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[
            ("query", "scrape_samples_scraped{job=\"prometheus\"}"),
            ("time", at.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let stored = &answer["data"]["result"][0]["value"];
    assert_eq!(stored[0].as_f64(), Some(ms as f64 / 1000.0), "{answer}");
    assert_eq!(
        stored[1].as_str().and_then(|v| v.parse::<f64>().ok()),
        newest[0]["value"].as_f64(),
        "{answer}"
    );

    // Nothing Prometheus sent was dropped.
    let (_, metrics) = server.get("/metrics").await?;
    let rejected = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_ingest_rejected_rows_total "))
        .context("weir_ingest_rejected_rows_total")?;
    assert_eq!(rejected.trim(), "0", "{}", logs());
    Ok(())
}

fn series(labels: &[(&[u8], &[u8])], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: Bytes::copy_from_slice(n),
                value: Bytes::copy_from_slice(v),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
        histograms: Vec::new(),
    }
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

/// Hostile remote-write bodies built past any client: each gets a clear
/// error in Prometheus' convention (a 4xx and a text body, so it does not
/// resend), the good series of a request are kept, nothing acknowledged is
/// lost across a `kill -9`, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_remote_writes_get_clear_errors_and_lose_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--max-message-size", "1MiB"])?;
    const T: i64 = 1_700_000_000_000;
    let good = WriteRequest {
        timeseries: vec![series(&[(b"__name__", b"ok"), (b"job", b"a")], &[(1.0, T)])],
    }
    .encode_to_vec();

    let mut huge_claim = vec![0xff, 0xff, 0xff, 0xff, 0x0f]; // 4 GiB, it says
    huge_claim.extend_from_slice(&[0; 16]);
    let refused = [
        Refused {
            path: RW,
            headers: RW_HEADERS,
            body: b"\x10not snappy at all".to_vec(),
            status: 400,
            says: "not valid snappy",
        },
        Refused {
            path: RW,
            headers: RW_HEADERS,
            body: snappy(&good[..good.len() - 4]),
            status: 400,
            says: "not a remote-write protobuf",
        },
        Refused {
            path: RW,
            headers: RW_HEADERS,
            body: huge_claim,
            status: 413,
            says: "more than the limit",
        },
        Refused {
            path: RW,
            headers: &[("content-encoding", "gzip")],
            body: snappy(&good),
            status: 415,
            says: "snappy-compressed protobuf",
        },
    ];
    for case in refused {
        case.check(&server).await?;
    }

    // One request: good series around bad ones.
    let mixed = WriteRequest {
        timeseries: vec![
            series(&[(b"__name__", b"ok"), (b"job", b"a")], &[(1.0, T)]),
            series(&[(b"__name__", b"ok"), (b"job", b"\xc3\x28")], &[(1.0, T)]),
            series(
                &[(b"__name__", b"ok"), (b"job", b"a"), (b"job", b"b")],
                &[(1.0, T)],
            ),
            series(
                &[(b"__name__", b"ok"), (b"job", b"nan")],
                &[
                    (f64::NAN, T),
                    (f64::INFINITY, T + 1),
                    (f64::from_bits(STALE_NAN_BITS), T + 2),
                ],
            ),
            series(
                &[(b"__name__", b"ok"), (b"job", b"old")],
                &[(1.0, -5), (1.0, 0)],
            ),
            series(&[(b"job", b"nameless")], &[(1.0, T)]),
            series(&[(b"__name__", b"weir_events")], &[(1.0, T)]),
            series(&[(b"__name__", b"ok"), (b"job", b"b")], &[(2.0, T + 5)]),
        ],
    }
    .encode_to_vec();
    let (status, text) = post(&server, RW, RW_HEADERS, snappy(&mixed)).await?;
    assert_eq!(status, 400, "{text}");
    for want in [
        "6 points dropped, 4 written",
        "series 1: a label value is not UTF-8",
        "series 2: table \"ok\", row 2: column \"job\" is set twice",
        "series 4: sample at -5 ms",
        "series 4: sample at 0 ms",
        "series 5: the series has no __name__ label",
        "series 6: invalid table name \"weir_events\"",
    ] {
        assert!(text.contains(want), "want {want:?} in {text}");
    }

    // Acknowledged means durable: kill -9, restart, it is all there.
    server.kill9();
    server.restart()?;
    let ok = rows(
        &server,
        "SELECT CAST(job AS VARCHAR) AS job, value FROM ok ORDER BY time, job",
    )
    .await?;
    let ok = Value::Array(ok.into_iter().map(Value::Object).collect());
    assert_eq!(
        ok,
        json!([
            {"job": "a", "value": 1.0},
            {"job": "nan"},
            {"job": "nan"},
            {"job": "b", "value": 2.0},
        ]),
        "NaN and +Inf are rows with a NULL value; the staleness marker is no row"
    );
    let (status, text) = post(&server, RW, RW_HEADERS, snappy(&good)).await?;
    assert_eq!(status, 204, "{text}");
    Ok(())
}
