//! Suppression matching: the cost of asking which suppressions hide one
//! alert, with 10,000 active suppressions (Alertmanager's published figure
//! is about 4–5 µs per alert at 10k silences).

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use weir_monitor::suppress::{Matcher, SuppressionBook, SuppressionRequest};

const MINUTE_NS: i64 = 60_000_000_000;

fn book(count: usize) -> SuppressionBook {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let book = SuppressionBook::open(None).expect("book");
    runtime.block_on(async {
        for i in 0..count {
            // Most pin a service and a region; every tenth adds a regex.
            let mut set = vec![
                Matcher::parse(&format!("service_name=\"svc-{i}\"")).expect("matcher"),
                Matcher::parse("region=\"eu\"").expect("matcher"),
            ];
            if i % 10 == 0 {
                set.push(Matcher::parse("instance=~\"i-[0-9]+\"").expect("matcher"));
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
            .await
            .expect("upsert");
        }
    });
    book
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

fn matching(c: &mut Criterion) {
    let book = book(10_000);
    let hit = labels("svc-4240");
    let miss = labels("svc-unknown");
    let mut group = c.benchmark_group("suppression_match_10k");
    group.bench_function("suppressed", |b| {
        b.iter(|| {
            let ids = book.suppressing(std::hint::black_box(&hit), MINUTE_NS);
            assert_eq!(ids.len(), 1);
        })
    });
    group.bench_function("not_suppressed", |b| {
        b.iter(|| {
            let ids = book.suppressing(std::hint::black_box(&miss), MINUTE_NS);
            assert!(ids.is_empty());
        })
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
