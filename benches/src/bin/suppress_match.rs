//! Suppression matching: the cost of asking which suppressions hide one
//! alert, with 10,000 active suppressions (Alertmanager's published figure
//! is about 4–5 µs per alert at 10k silences). Prints one JSON line: the
//! median over `--runs` runs of `--calls` lookups each, for an alert that
//! one suppression hides and for one that none does. A binary rather than
//! a criterion bench so it builds with the release profile the other bench
//! binaries share.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use weir_monitor::suppress::{Matcher, SuppressionBook, SuppressionRequest};

const MINUTE_NS: i64 = 60_000_000_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    suppressions: usize,
    #[arg(long, default_value_t = 1_000_000)]
    calls: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn labels(service: &str) -> BTreeMap<String, String> {
    [
        ("alertname", "service_down"),
        ("service_name", service),
        ("region", "eu"),
        ("team", "core"),
        ("instance", "i-17"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Median nanoseconds per lookup of `labels`, which `expect` suppressions
/// hide.
fn time(
    book: &SuppressionBook,
    labels: &BTreeMap<String, String>,
    expect: usize,
    args: &Args,
) -> f64 {
    let mut per_call: Vec<f64> = (0..args.runs)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..args.calls {
                let ids = book.suppressing(std::hint::black_box(labels), MINUTE_NS);
                assert_eq!(ids.len(), expect);
            }
            started.elapsed().as_nanos() as f64 / args.calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let book = SuppressionBook::open(None)?;
    for i in 0..args.suppressions {
        // Most pin a service and a region; every tenth adds a regex.
        let mut set = vec![
            Matcher::parse(&format!("service_name=\"svc-{i}\"")).map_err(anyhow::Error::msg)?,
            Matcher::parse("region=\"eu\"").map_err(anyhow::Error::msg)?,
        ];
        if i % 10 == 0 {
            set.push(Matcher::parse("instance=~\"i-[0-9]+\"").map_err(anyhow::Error::msg)?);
        }
        book.upsert(
            SuppressionRequest {
                targets: vec![set],
                starts_at_ns: Some(0),
                ends_at_ns: 600 * MINUTE_NS,
                created_by: "bench".into(),
                comment: "bench".into(),
                ..Default::default()
            },
            0,
        )
        .await?;
    }
    let hidden = time(&book, &labels("svc-4240"), 1, &args);
    let not_hidden = time(&book, &labels("svc-unknown"), 0, &args);
    println!(
        "{{\"suppressions\": {}, \"calls\": {}, \"runs\": {}, \"suppressed_ns_per_alert\": {hidden:.0}, \"not_suppressed_ns_per_alert\": {not_hidden:.0}}}",
        args.suppressions, args.calls, args.runs
    );
    Ok(())
}
