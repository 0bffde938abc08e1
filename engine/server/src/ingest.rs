//! The write path shared by every front end: decode (or a source's adapter),
//! pipeline, store. Plugin calls are CPU work with a deadline, so they run
//! on the blocking pool, not on the async workers. Dead letters of failed
//! stages are written whether or not the write itself goes through.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use weir_pipeline::{DEAD_LETTER_TABLE, DeadLetter, Pipelines};
use weir_proto::v1::WriteRequest;
use weir_storage::Store;
use weir_storage::metrics::{Counter, Exposition, Histogram};

use crate::decode::decode_write;
use crate::{Error, Result};

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
    pipelines: Arc<Pipelines>,
    metrics: Arc<IngestMetrics>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Ingest {
    pub fn new(store: Store, pipelines: Arc<Pipelines>) -> Self {
        Self {
            store,
            pipelines,
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
        let now_ns = now_ns();
        let store = &self.store;
        let batches = decode_write(request, now_ns, &|table| store.time_column_for(table))?;
        if !self.pipelines.has_table_stages() {
            return Ok(self.store.write(batches).await?);
        }
        let pipelines = Arc::clone(&self.pipelines);
        let (result, dead_letters) = tokio::task::spawn_blocking(move || {
            let mut dead_letters = Vec::new();
            let result = pipelines.run(batches, now_ns, &mut dead_letters);
            (result, dead_letters)
        })
        .await
        .map_err(|e| Error::Internal(format!("pipeline task: {e}")))?;
        self.write_dead_letters(dead_letters).await;
        Ok(self.store.write(result?).await?)
    }

    /// Writes a raw body through the source's adapter and the pipelines of
    /// the tables it produces; returns the rows written.
    pub async fn write_raw(&self, source: &str, content_type: &str, body: &[u8]) -> Result<u64> {
        let started = Instant::now();
        self.metrics.requests.inc();
        self.metrics.bytes.add(body.len() as u64);
        let now_ns = now_ns();
        let pipelines = Arc::clone(&self.pipelines);
        let store = self.store.clone();
        let (source, content_type, body) =
            (source.to_string(), content_type.to_string(), body.to_vec());
        let (result, dead_letters) = tokio::task::spawn_blocking(move || {
            let mut dead_letters = Vec::new();
            let time_column_for = |table: &str| store.time_column_for(table);
            let result = pipelines.ingest_raw(
                &source,
                &content_type,
                &body,
                now_ns,
                &time_column_for,
                &mut dead_letters,
            );
            (result, dead_letters)
        })
        .await
        .map_err(|e| Error::Internal(format!("pipeline task: {e}")))?;
        self.write_dead_letters(dead_letters).await;
        let result = match result {
            Ok(batches) => self.store.write(batches).await.map_err(Error::from),
            Err(e) => Err(e.into()),
        };
        match &result {
            Ok(rows) => {
                self.metrics.rows.add(*rows);
                self.metrics.write_seconds.observe(started.elapsed());
            }
            Err(_) => self.metrics.rejected_requests.inc(),
        }
        result
    }

    async fn write_dead_letters(&self, dead_letters: Vec<DeadLetter>) {
        if dead_letters.is_empty() {
            return;
        }
        let time_column = self.store.time_column_for(DEAD_LETTER_TABLE);
        let written = match DeadLetter::to_batches(&dead_letters, &time_column) {
            Ok(batches) => self
                .store
                .write(batches)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, count = dead_letters.len(), "could not store dead letters");
        }
    }
}
