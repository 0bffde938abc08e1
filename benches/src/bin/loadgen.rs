//! gRPC streaming-write load generator for Weir.
//!
//! Opens `--streams` bidirectional `WriteStream`s, keeps up to `--in-flight`
//! batches outstanding on each, and reports acknowledged rows per second and
//! the ack latency (send → durable ack) percentiles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_benches::MetricsGenerator;
use weir_proto::v1::write_service_client::WriteServiceClient;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    #[arg(long, default_value_t = 4)]
    streams: usize,
    #[arg(long, default_value_t = 5000)]
    batch_rows: usize,
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
}

struct StreamResult {
    rows: u64,
    latencies: Vec<Duration>,
    errors: u64,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn run_stream(args: &Args, id: usize, deadline: Instant) -> anyhow::Result<StreamResult> {
    let mut client = WriteServiceClient::connect(args.grpc.clone())
        .await?
        .max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(args.in_flight);
    let mut acks = client
        .write_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut generator = MetricsGenerator::new(id as u64, args.services);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut result = StreamResult {
        rows: 0,
        latencies: Vec::new(),
        errors: 0,
    };
    let mut sequence = 0u64;
    loop {
        while sent.len() < args.in_flight && Instant::now() < deadline {
            sequence += 1;
            let request = generator.request(sequence, args.batch_rows, now_ns());
            sent.insert(sequence, Instant::now());
            tx.send(request).await?;
        }
        if sent.is_empty() {
            break;
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                if let Some(at) = sent.remove(&ack.sequence) {
                    result.latencies.push(at.elapsed());
                }
                match ack.error {
                    None => result.rows += ack.rows_written,
                    Some(e) => {
                        result.errors += 1;
                        eprintln!("rejected: {}", e.message);
                    }
                }
            }
            Some(Err(status)) => anyhow::bail!("stream failed: {status}"),
            None => anyhow::bail!("stream closed"),
        }
    }
    Ok(result)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let results =
        futures::future::join_all((0..args.streams).map(|i| run_stream(&args, i, deadline))).await;
    let elapsed = started.elapsed();
    let mut rows = 0;
    let mut errors = 0;
    let mut latencies = Vec::new();
    for r in results {
        let r = r?;
        rows += r.rows;
        errors += r.errors;
        latencies.extend(r.latencies);
    }
    latencies.sort();
    let rate = rows as f64 / elapsed.as_secs_f64();
    println!(
        "{{\"rows\": {rows}, \"seconds\": {:.2}, \"rows_per_sec\": {rate:.0}, \"batches\": {}, \"rejected_batches\": {errors}, \"ack_p50_ms\": {:.2}, \"ack_p99_ms\": {:.2}, \"streams\": {}, \"batch_rows\": {}}}",
        elapsed.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        args.streams,
        args.batch_rows,
    );
    Ok(())
}
