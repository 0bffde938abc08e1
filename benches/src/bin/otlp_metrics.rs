//! OTLP/gRPC metrics load generator: the reference workload's rows as
//! gauge points (`response_ms` of each check, the service as an attribute,
//! one resource per request as an SDK sends), `--points` per
//! `ExportMetricsServiceRequest`, from `--writers` concurrent clients, each
//! waiting for its answer before the next export (OTLP exports are unary).
//! Requests are built while sending. Prints points/s as one JSON line.

use std::time::Instant;

use clap::Parser;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric;
use weir_benches::Workload;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    #[arg(long, default_value_t = 4)]
    writers: u64,
    #[arg(long, default_value_t = 5000)]
    points: usize,
    #[arg(long, default_value_t = 1000)]
    services: u64,
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    #[arg(long)]
    end_ns: Option<i64>,
}

async fn writer(args: &Args, workload: Workload, writer: u64) -> anyhow::Result<u64> {
    let mut client = MetricsServiceClient::connect(args.grpc.clone())
        .await?
        .max_encoding_message_size(usize::MAX);
    let mut points = 0;
    let mut next = writer;
    while next < workload.rows {
        let request = workload.otlp_gauges(next, args.writers, args.points);
        next += args.writers * args.points as u64;
        let sent = request.resource_metrics[0].scope_metrics[0].metrics[0]
            .data
            .as_ref()
            .map_or(0, |d| match d {
                metric::Data::Gauge(g) => g.data_points.len() as u64,
                _ => 0,
            });
        let answer = client.export(request).await?.into_inner();
        if let Some(partial) = answer.partial_success {
            anyhow::bail!("points dropped: {partial:?}");
        }
        points += sent;
    }
    Ok(points)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let end_ns = args.end_ns.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0)
    });
    let workload = Workload {
        rows: args.rows,
        services: args.services,
        end_ns,
        span_ns: 24 * 3_600_000_000_000,
    };
    let started = Instant::now();
    let results =
        futures::future::join_all((0..args.writers).map(|w| writer(&args, workload, w))).await;
    let elapsed = started.elapsed();
    let mut points = 0;
    for r in results {
        points += r?;
    }
    println!(
        "{{\"points\": {points}, \"seconds\": {:.3}, \"points_per_sec\": {:.0}, \"writers\": {}, \"points_per_request\": {}}}",
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64(),
        args.writers,
        args.points,
    );
    Ok(())
}
