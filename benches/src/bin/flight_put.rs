//! Arrow Flight `DoPut` load generator: the reference workload (the same
//! rows `loadgen` sends over `WriteStream`) as Arrow record batches of
//! `--batch-rows` rows, on `--streams` `DoPut` streams each keeping up to
//! `--in-flight` batches unacknowledged. Batches are built while sending,
//! as `loadgen` builds its requests. Prints acknowledged rows per second
//! and the ack latency percentiles as one JSON line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use clap::Parser;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_benches::Workload;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    #[arg(long, default_value_t = 4)]
    streams: u64,
    #[arg(long, default_value_t = 5000)]
    batch_rows: usize,
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    #[arg(long, default_value_t = 1000)]
    services: u64,
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Hours the rows span, ending at --end-ns.
    #[arg(long, default_value_t = 24.0)]
    span_hours: f64,
    /// End of the time span, ns since the epoch; default: now.
    #[arg(long)]
    end_ns: Option<i64>,
}

#[derive(Default)]
struct StreamResult {
    rows: u64,
    latencies: Vec<Duration>,
}

async fn run_stream(args: &Args, workload: Workload, stream: u64) -> anyhow::Result<StreamResult> {
    let channel = tonic::transport::Channel::from_shared(args.grpc.clone())?
        .connect()
        .await?;
    let mut client = FlightServiceClient::new(channel).max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(args.in_flight);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![
            "service_metrics".into(),
        ])))
        .build(ReceiverStream::new(rx).map(Ok))
        .map(|data| data.expect("encoding a workload batch"));
    let mut sent = VecDeque::new();
    let mut result = StreamResult::default();
    // This stream sends rows stream, stream + streams, ... in batches.
    let mut next = stream;
    // The first batches are queued before the call: the encoder sends the
    // schema with the first batch, and the server answers the call only
    // once it has read the schema.
    fill(args, &workload, &mut next, &mut sent, &tx).await?;
    let mut acks = client.do_put(data).await?.into_inner();
    loop {
        fill(args, &workload, &mut next, &mut sent, &tx).await?;
        if sent.is_empty() {
            drop(tx);
            while let Some(ack) = acks.next().await {
                ack?;
            }
            break;
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                if let Some(at) = sent.pop_front() {
                    result.latencies.push(at.elapsed());
                }
                let meta: serde_json::Value = serde_json::from_slice(&ack.app_metadata)?;
                result.rows += meta["rows_written"].as_u64().unwrap_or(0);
            }
            Some(Err(status)) => anyhow::bail!("stream failed: {status}"),
            None => anyhow::bail!("stream closed"),
        }
    }
    Ok(result)
}

/// Sends batches until `--in-flight` are unacknowledged or none are left.
async fn fill(
    args: &Args,
    workload: &Workload,
    next: &mut u64,
    sent: &mut VecDeque<Instant>,
    tx: &mpsc::Sender<arrow::record_batch::RecordBatch>,
) -> anyhow::Result<()> {
    let stride = args.streams;
    while sent.len() < args.in_flight && *next < workload.rows {
        let batch = workload.record_batch(*next, stride, args.batch_rows);
        *next += stride * args.batch_rows as u64;
        sent.push_back(Instant::now());
        tx.send(batch).await?;
    }
    Ok(())
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
        span_ns: (args.span_hours * 3600e9) as i64,
    };
    let started = Instant::now();
    let results =
        futures::future::join_all((0..args.streams).map(|s| run_stream(&args, workload, s))).await;
    let elapsed = started.elapsed();
    let mut total = StreamResult::default();
    for r in results {
        let r = r?;
        total.rows += r.rows;
        total.latencies.extend(r.latencies);
    }
    total.latencies.sort();
    println!(
        "{{\"rows\": {}, \"seconds\": {:.3}, \"rows_per_sec\": {:.0}, \"batches\": {}, \"ack_p50_ms\": {:.2}, \"ack_p99_ms\": {:.2}, \"streams\": {}, \"batch_rows\": {}, \"in_flight\": {}}}",
        total.rows,
        elapsed.as_secs_f64(),
        total.rows as f64 / elapsed.as_secs_f64(),
        total.latencies.len(),
        percentile(&total.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&total.latencies, 0.99).as_secs_f64() * 1e3,
        args.streams,
        args.batch_rows,
        args.in_flight,
    );
    Ok(())
}
