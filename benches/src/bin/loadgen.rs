//! gRPC streaming-write load generator for Weir.
//!
//! Sends the reference workload (`--rows` rows of `service_metrics` from
//! `--services` services over `--span` hours) on `--streams` bidirectional
//! `WriteStream`s, each keeping up to `--in-flight` batches outstanding, and
//! prints acknowledged rows per second, the ack latency (send → durable
//! ack) percentiles and the longest time no stream got an ack (the worst
//! stall) as one JSON line. `--seconds` stops sending after that long
//! (an overload run), whatever `--rows` says.
//!
//! `--emit-line-protocol FILE` / `--emit-csv FILE` write the same rows for
//! InfluxDB and Postgres instead of sending them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_benches::Workload;
use weir_proto::v1::write_service_client::WriteServiceClient;

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
    /// Stop sending after this many seconds (then wait for the acks owed).
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long)]
    emit_line_protocol: Option<std::path::PathBuf>,
    #[arg(long)]
    emit_csv: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct StreamResult {
    rows: u64,
    latencies: Vec<Duration>,
    /// When each ack arrived, and the rows it acknowledged.
    acked_at: Vec<(Instant, u64)>,
    rejected: u64,
}

async fn run_stream(
    args: &Args,
    workload: Workload,
    stream: u64,
    deadline: Option<Instant>,
) -> anyhow::Result<StreamResult> {
    let mut client = WriteServiceClient::connect(args.grpc.clone())
        .await?
        .max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(args.in_flight);
    let mut acks = client
        .write_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut result = StreamResult::default();
    // This stream sends rows stream, stream + streams, ... in batches.
    let stride = args.streams;
    let mut next = stream;
    let mut sequence = 0;
    loop {
        let sending = deadline.is_none_or(|d| Instant::now() < d);
        while sending && sent.len() < args.in_flight && next < workload.rows {
            sequence += 1;
            let request = workload.request(sequence, next, stride, args.batch_rows);
            next += stride * args.batch_rows as u64;
            sent.insert(sequence, Instant::now());
            tx.send(request).await?;
        }
        if sent.is_empty() {
            // Close the stream cleanly so the server logs no error.
            drop(tx);
            while let Some(ack) = acks.next().await {
                ack?;
            }
            break;
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                if let Some(at) = sent.remove(&ack.sequence) {
                    result.latencies.push(at.elapsed());
                }
                result.acked_at.push((Instant::now(), ack.rows_written));
                match ack.error {
                    None => result.rows += ack.rows_written,
                    Some(e) => {
                        result.rejected += 1;
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
    if args.emit_line_protocol.is_some() || args.emit_csv.is_some() {
        if let Some(path) = &args.emit_line_protocol {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            workload.write_line_protocol(&mut out)?;
        }
        if let Some(path) = &args.emit_csv {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            workload.write_csv(&mut out)?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs_f64(s));
    let results = futures::future::join_all(
        (0..args.streams).map(|s| run_stream(&args, workload, s, deadline)),
    )
    .await;
    let elapsed = started.elapsed();
    let mut total = StreamResult::default();
    for r in results {
        let r = r?;
        total.rows += r.rows;
        total.rejected += r.rejected;
        total.latencies.extend(r.latencies);
        total.acked_at.extend(r.acked_at);
    }
    total.latencies.sort();
    total.acked_at.sort_by_key(|(at, _)| *at);
    let longest_gap = std::iter::once(started)
        .chain(total.acked_at.iter().map(|(at, _)| *at))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // Rows acknowledged in each second of the run: where the stalls are.
    let mut acked_per_second = vec![0u64; elapsed.as_secs() as usize + 1];
    for (at, rows) in &total.acked_at {
        let second = (*at - started).as_secs() as usize;
        if let Some(bucket) = acked_per_second.get_mut(second) {
            *bucket += rows;
        }
    }
    let timeline = acked_per_second
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{{\"rows\": {}, \"seconds\": {:.3}, \"rows_per_sec\": {:.0}, \"batches\": {}, \"rejected_batches\": {}, \"ack_p50_ms\": {:.2}, \"ack_p99_ms\": {:.2}, \"ack_max_ms\": {:.2}, \"longest_ack_gap_ms\": {:.1}, \"streams\": {}, \"batch_rows\": {}, \"in_flight\": {}, \"acked_rows_per_second\": [{}]}}",
        total.rows,
        elapsed.as_secs_f64(),
        total.rows as f64 / elapsed.as_secs_f64(),
        total.latencies.len(),
        total.rejected,
        percentile(&total.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&total.latencies, 0.99).as_secs_f64() * 1e3,
        percentile(&total.latencies, 1.0).as_secs_f64() * 1e3,
        longest_gap.as_secs_f64() * 1e3,
        args.streams,
        args.batch_rows,
        args.in_flight,
        timeline,
    );
    Ok(())
}
