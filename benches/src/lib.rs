//! Weir's benchmarks: criterion micro-benches (`benches/`) and the gRPC load
//! generator (`src/bin/loadgen.rs`). Shared here: the reference workload's
//! row generator.

use rand::{Rng, SeedableRng};
use weir_proto::v1::{Field, Point, WriteRequest, field};

/// Builds `service_metrics` write requests: `services` services, health
/// checks with a status, a response time (10% missing) and a status code.
pub struct MetricsGenerator {
    rng: rand::rngs::SmallRng,
    services: usize,
    next_service: usize,
}

impl MetricsGenerator {
    pub fn new(seed: u64, services: usize) -> Self {
        Self {
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            services: services.max(1),
            next_service: 0,
        }
    }

    /// One request of `rows` rows, timestamps ending at `now_ns` 1 ms apart.
    pub fn request(&mut self, sequence: u64, rows: usize, now_ns: i64) -> WriteRequest {
        // Symbols: table, keys, statuses, then the services this batch uses.
        let mut symbols: Vec<String> = [
            "service_metrics",
            "service_name",
            "status",
            "response_ms",
            "status_code",
            "healthy",
            "unhealthy",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let first_service_symbol = symbols.len() as u32;
        let span = rows.min(self.services);
        for i in 0..span {
            symbols.push(format!(
                "service-{:04}",
                (self.next_service + i) % self.services
            ));
        }
        let mut points = Vec::with_capacity(rows);
        for i in 0..rows {
            let healthy = self.rng.random_bool(0.995);
            let mut fields = Vec::with_capacity(3);
            fields.push(Field {
                key: 2,
                value: Some(field::Value::String(if healthy { 5 } else { 6 })),
            });
            if self.rng.random_bool(0.9) {
                fields.push(Field {
                    key: 3,
                    value: Some(field::Value::F64(self.rng.random_range(1.0..500.0))),
                });
            }
            fields.push(Field {
                key: 4,
                value: Some(field::Value::I64(if healthy { 200 } else { 503 })),
            });
            points.push(Point {
                table: 0,
                timestamp_ns: now_ns - (rows - i) as i64 * 1_000_000,
                tags: vec![1, first_service_symbol + (i % span) as u32],
                fields,
            });
        }
        self.next_service = (self.next_service + span) % self.services;
        WriteRequest {
            sequence,
            symbols: symbols.into_iter().map(|s| s.into_bytes().into()).collect(),
            points,
        }
    }
}
