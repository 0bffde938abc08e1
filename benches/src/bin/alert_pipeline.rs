//! The alert pipeline in process, as an event travels it: checked, through
//! the static pre-filters into the state machine, matched against 10,000
//! active suppressions, routed, and grouped; then each group's
//! notifications decided. Prints one JSON line with, as medians over
//! `--runs` runs of `--alerts` events each:
//!
//! - `new_failures_per_s`: events each failing a new service (10 regions,
//!   one in ten hidden by a suppression), every one a transition;
//! - `unchanged_per_s`: the same events again, every one dropped;
//! - `flapping_per_s`: one check flapping under `ignore-flap`, each
//!   unhealthy event held and cancelled by the healthy one after it;
//! - `flush_ms`: deciding the notifications of all groups at once;
//! - `bytes_per_alert`: resident memory the alerts (and their groups)
//!   take, from the first run (RSS after less RSS before, over the alerts).
//!
//! The state file is not written (in-memory book): what fsync costs is in
//! the e2e path, not here.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use weir_monitor::AlertBook;
use weir_monitor::events::{CheckedEvent, EventBody, RetiredHosts, check};
use weir_monitor::groups::Grouping;
use weir_monitor::suppress::{Matcher, SuppressionBook, SuppressionRequest};

const MINUTE_NS: i64 = 60_000_000_000;
const BATCH: usize = 1_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    suppressions: usize,
    #[arg(long, default_value_t = 100_000)]
    alerts: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn route(_: &weir_monitor::RuleDef, _: &BTreeMap<String, String>) -> Vec<String> {
    vec!["chat".to_string(), "pager".to_string()]
}

fn event(json: serde_json::Value, now: i64) -> anyhow::Result<CheckedEvent> {
    let body: EventBody = serde_json::from_value(json)?;
    Ok(check("bench", body, now)?)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn suppressions(count: usize) -> anyhow::Result<SuppressionBook> {
    let book = SuppressionBook::open(None)?;
    for i in 0..count {
        // Every tenth service of the stream below is hidden.
        let set = vec![
            Matcher::parse(&format!("service=\"svc-{}\"", i * 10)).map_err(anyhow::Error::msg)?,
            Matcher::parse("alertname=\"http-check\"").map_err(anyhow::Error::msg)?,
        ];
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
    Ok(book)
}

/// Applies `events` in batches, as requests would; events per second.
fn apply(book: &AlertBook, events: &[CheckedEvent], now: i64) -> f64 {
    let retired = RetiredHosts::default();
    let started = Instant::now();
    for batch in events.chunks(BATCH) {
        let (outcomes, _) = book.apply_events(batch, &retired, now, &route);
        std::hint::black_box(outcomes);
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hiding = suppressions(args.suppressions).await?;
    let now = MINUTE_NS;
    let failures: Vec<CheckedEvent> = (0..args.alerts)
        .map(|i| {
            event(
                serde_json::json!({
                    "monitor": "http-check", "status": "unhealthy", "priority": "high",
                    "context": {"service": format!("svc-{i}"), "region": format!("r{}", i % 10),
                                "instance": format!("i-{i}")},
                }),
                now,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let flapping: Vec<CheckedEvent> = (0..args.alerts)
        .map(|i| {
            let status = if i % 2 == 0 { "unhealthy" } else { "healthy" };
            event(
                serde_json::json!({
                    "monitor": "flaky", "status": status,
                    "filters": [{"type": "ignore-flap", "min-age": "1m"}],
                }),
                now,
            )
        })
        .collect::<anyhow::Result<_>>()?;

    let (mut new_rates, mut unchanged_rates, mut flap_rates, mut flush_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bytes_per_alert = 0.0;
    let mut groups = 0;
    let mut notifications = 0;
    for run in 0..args.runs {
        let before = rss_bytes();
        let book = AlertBook::open(None)?
            .with_suppressions(hiding.clone())
            .with_grouping(Grouping::default());
        new_rates.push(apply(&book, &failures, now));
        if run == 0 {
            bytes_per_alert = rss_bytes().saturating_sub(before) as f64 / args.alerts as f64;
        }
        unchanged_rates.push(apply(&book, &failures, now + 1));
        flap_rates.push(apply(&book, &flapping, now + 2));
        let started = Instant::now();
        notifications = book.flush_groups(now + 10 * MINUTE_NS);
        flush_ms.push(started.elapsed().as_secs_f64() * 1e3);
        groups = book.groups().len();
    }
    println!(
        "{{\"alerts\": {}, \"suppressions\": {}, \"runs\": {}, \"new_failures_per_s\": {:.0}, \"unchanged_per_s\": {:.0}, \"flapping_per_s\": {:.0}, \"groups\": {groups}, \"notifications\": {notifications}, \"flush_ms\": {:.1}, \"bytes_per_alert\": {bytes_per_alert:.0}}}",
        args.alerts,
        args.suppressions,
        args.runs,
        median(new_rates),
        median(unchanged_rates),
        median(flap_rates),
        median(flush_ms),
    );
    Ok(())
}
