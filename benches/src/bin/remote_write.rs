//! Prometheus remote-write load generator: the reference workload's rows as
//! remote-write 1.0 requests (one sample per row, series
//! `service_status_code{service_name, status}`, `--series-per-request` per
//! request, snappy-compressed before the clock starts), POSTed by
//! `--writers` concurrent clients to `--url`. Prints samples per second as
//! one JSON line. Any answer but 2xx stops the run with the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Parser;
use prost::Message;
use weir_benches::Workload;
use weir_protocols::remote_write::{Label, Sample, TimeSeries, WriteRequest};

#[derive(Parser)]
struct Args {
    /// e.g. http://127.0.0.1:8090/api/v1/prom/write
    #[arg(long)]
    url: String,
    /// Name in the output.
    #[arg(long, default_value = "weir")]
    system: String,
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 1000)]
    services: u64,
    #[arg(long, default_value_t = 5000)]
    series_per_request: usize,
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// End of the time span (24 h), ns since the epoch; default: now.
    #[arg(long)]
    end_ns: Option<i64>,
}

fn label(name: &'static str, value: String) -> Label {
    Label {
        name: Bytes::from_static(name.as_bytes()),
        value: value.into(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let workload = Workload {
        rows: args.rows,
        services: args.services,
        end_ns: args.end_ns.unwrap_or_else(weir_pipeline::now_ns),
        span_ns: 86_400_000_000_000,
    };
    let bodies: Vec<Bytes> = (0..args.rows)
        .step_by(args.series_per_request)
        .map(|first| {
            let last = (first + args.series_per_request as u64).min(args.rows);
            let timeseries = (first..last)
                .map(|i| {
                    let row = workload.row(i);
                    TimeSeries {
                        labels: vec![
                            label("__name__", "service_status_code".into()),
                            label("service_name", Workload::service_name(row.service)),
                            label(
                                "status",
                                if row.healthy { "healthy" } else { "unhealthy" }.into(),
                            ),
                        ],
                        samples: vec![Sample {
                            value: row.status_code as f64,
                            timestamp: row.recorded_at_ns / 1_000_000,
                        }],
                        histograms: Vec::new(),
                    }
                })
                .collect();
            let protobuf = WriteRequest { timeseries }.encode_to_vec();
            Bytes::from(
                snap::raw::Encoder::new()
                    .compress_vec(&protobuf)
                    .expect("snappy"),
            )
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let writers: Vec<_> = (0..args.writers)
        .map(|_| {
            let (bodies, next, client, url) = (
                Arc::clone(&bodies),
                Arc::clone(&next),
                client.clone(),
                args.url.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return Ok(());
                    };
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .header("content-encoding", "snappy")
                        .header("x-prometheus-remote-write-version", "0.1.0")
                        .body(body.clone())
                        .send()
                        .await?;
                    if !answer.status().is_success() {
                        let status = answer.status();
                        bail!("HTTP {status}: {}", answer.text().await.unwrap_or_default());
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "system": args.system,
            "samples": args.rows,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "samples_per_sec": (args.rows as f64 / seconds).round(),
            "writers": args.writers,
            "series_per_request": args.series_per_request,
        })
    );
    Ok(())
}
