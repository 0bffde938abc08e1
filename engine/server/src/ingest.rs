//! The write path shared by every front end: decode, pipeline, store.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use weir_pipeline::Pipeline;
use weir_proto::v1::WriteRequest;
use weir_storage::Store;
use weir_storage::metrics::{Counter, Exposition, Histogram};

use crate::Result;
use crate::decode::decode_write;

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub requests: Counter,
    pub rows: Counter,
    pub bytes: Counter,
    pub rejected_requests: Counter,
    pub rejected_rows: Counter,
    pub write_seconds: Histogram,
}

impl IngestMetrics {
    pub fn render(&self, out: &mut Exposition<'_>) {
        out.counter(
            "weir_ingest_requests_total",
            "Write requests (batches) received.",
            &self.requests,
        );
        out.counter(
            "weir_ingest_rows_total",
            "Rows written and acknowledged.",
            &self.rows,
        );
        out.counter(
            "weir_ingest_bytes_total",
            "Encoded bytes of write requests received.",
            &self.bytes,
        );
        out.counter(
            "weir_ingest_rejected_requests_total",
            "Write requests rejected.",
            &self.rejected_requests,
        );
        out.counter(
            "weir_ingest_rejected_rows_total",
            "Rows in rejected write requests.",
            &self.rejected_rows,
        );
        out.histogram(
            "weir_ingest_write_seconds",
            "Time from receiving a write to acknowledging it (decode, pipeline, WAL group commit).",
            &self.write_seconds,
        );
    }
}

/// Decode → pipeline → store, for one request.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    pipeline: Pipeline,
    metrics: Arc<IngestMetrics>,
}

impl Ingest {
    pub fn new(store: Store, pipeline: Pipeline) -> Self {
        Self {
            store,
            pipeline,
            metrics: Arc::new(IngestMetrics::default()),
        }
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Writes one request atomically; returns the rows written.
    pub async fn write(&self, request: WriteRequest) -> Result<u64> {
        let started = Instant::now();
        self.metrics.requests.inc();
        self.metrics.bytes.add(request.encoded_len() as u64);
        let result = self.write_inner(&request).await;
        match &result {
            Ok(rows) => {
                self.metrics.rows.add(*rows);
                self.metrics.write_seconds.observe(started.elapsed());
            }
            Err(_) => {
                self.metrics.rejected_requests.inc();
                self.metrics.rejected_rows.add(request.points.len() as u64);
            }
        }
        result
    }

    async fn write_inner(&self, request: &WriteRequest) -> Result<u64> {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let store = &self.store;
        let batches = decode_write(request, now_ns, &|table| store.time_column_for(table))?;
        let batches = self.pipeline.run(batches)?;
        Ok(self.store.write(batches).await?)
    }
}
