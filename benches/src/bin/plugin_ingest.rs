//! End-to-end gRPC ingest with a filter in the pipeline: the `threshold-filter`
//! WebAssembly plugin against the same filter written natively in Rust as an
//! engine-side stage, measured in the same run, alternating.
//!
//! Each arm starts a fresh in-process server (fsync durability, the default)
//! on a temporary data directory, streams `--rows` rows of the reference
//! workload over `--streams` `WriteStream`s (requests built before the clock
//! starts), and reports offered rows per second — every row passes through
//! the filter; about a fifth are kept. Prints one JSON line per arm and run,
//! then the medians and the ratio wasm ÷ native.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use weir_benches::{NativeThreshold, Workload, guest};
use weir_plugins::{Limits, PluginSpec};
use weir_proto::v1::WriteRequest;
use weir_proto::v1::write_service_client::WriteServiceClient;
use weir_server::{NativeStages, ServeArgs};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 4)]
    streams: u64,
    #[arg(long, default_value_t = 1024)]
    batch_rows: usize,
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Clone, Copy, Debug)]
enum Arm {
    Native,
    Wasm,
}

async fn stream(
    grpc: String,
    requests: Vec<WriteRequest>,
    in_flight: usize,
) -> anyhow::Result<u64> {
    let mut client = WriteServiceClient::connect(grpc)
        .await?
        .max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(in_flight);
    let mut acks = client
        .write_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let total = requests.len();
    let mut requests = requests.into_iter();
    let mut outstanding = 0;
    let mut acked = 0;
    let mut kept = 0;
    while acked < total {
        while outstanding < in_flight {
            let Some(request) = requests.next() else {
                break;
            };
            tx.send(request).await?;
            outstanding += 1;
        }
        match acks.next().await {
            Some(Ok(ack)) => {
                if let Some(e) = ack.error {
                    anyhow::bail!("batch rejected: {}", e.message);
                }
                kept += ack.rows_written;
                acked += 1;
                outstanding -= 1;
            }
            Some(Err(status)) => anyhow::bail!("stream failed: {status}"),
            None => anyhow::bail!("stream closed"),
        }
    }
    Ok(kept)
}

async fn run_arm(arm: Arm, args: &Args, workload: Workload) -> anyhow::Result<(f64, u64)> {
    let dir = tempfile::tempdir()?;
    let serve_args = ServeArgs {
        data_dir: Some(dir.path().join("data")),
        grpc_listen: Some("127.0.0.1:0".parse()?),
        http_listen: Some("127.0.0.1:0".parse()?),
        plugin_watch_interval: Some("off".into()),
        log_filter: Some("warn".into()),
        ..ServeArgs::default()
    };
    let mut config = serve_args.resolve()?;
    match arm {
        Arm::Native => {
            config.native_stages = NativeStages(vec![(
                "service_metrics".into(),
                Arc::new(NativeThreshold { slow_ms: 400.0 }),
            )]);
        }
        Arm::Wasm => {
            config.plugins.def.tables.insert(
                "service_metrics".into(),
                weir_pipeline::PipelineDef {
                    stages: vec![PluginSpec {
                        name: "threshold-filter".into(),
                        path: guest("threshold-filter"),
                        config: vec![("slow-ms".into(), "400".into())],
                        limits: Limits::default(),
                    }],
                    on_failure: weir_pipeline::FailurePolicy::Reject,
                },
            );
        }
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel();
    let server = tokio::spawn(weir_server::serve(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |addrs| {
            let _ = bound_tx.send(addrs);
        },
    ));
    let addrs = bound_rx.await?;
    let grpc = format!("http://{}", addrs.grpc);

    // Requests for every stream, built before the clock starts.
    let per_stream: Vec<Vec<WriteRequest>> = (0..args.streams)
        .map(|s| {
            let mut requests = Vec::new();
            let mut next = s;
            let mut sequence = 0;
            while next < workload.rows {
                sequence += 1;
                requests.push(workload.request(sequence, next, args.streams, args.batch_rows));
                next += args.streams * args.batch_rows as u64;
            }
            requests
        })
        .collect();

    let started = Instant::now();
    let tasks: Vec<_> = per_stream
        .into_iter()
        .map(|requests| tokio::spawn(stream(grpc.clone(), requests, args.in_flight)))
        .collect();
    let mut kept = 0;
    for task in tasks {
        kept += task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await??;
    Ok((workload.rows as f64 / seconds, kept))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workload = Workload {
        rows: args.rows,
        services: 1000,
        end_ns: weir_benches_now(),
        span_ns: 86_400_000_000_000,
    };
    let mut native = Vec::new();
    let mut wasm = Vec::new();
    for run in 0..args.runs {
        for arm in [Arm::Native, Arm::Wasm] {
            let (rate, kept) = run_arm(arm, &args, workload).await?;
            println!(
                "{{\"run\": {run}, \"arm\": \"{arm:?}\", \"rows_per_sec\": {rate:.0}, \"rows_kept\": {kept}}}"
            );
            match arm {
                Arm::Native => native.push(rate),
                Arm::Wasm => wasm.push(rate),
            }
        }
    }
    let (n, w) = (median(native), median(wasm));
    println!(
        "{{\"native_median_rows_per_sec\": {n:.0}, \"wasm_median_rows_per_sec\": {w:.0}, \"wasm_over_native\": {:.3}}}",
        w / n
    );
    Ok(())
}

fn weir_benches_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
