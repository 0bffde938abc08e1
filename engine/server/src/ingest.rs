//! The write path shared by every front end: decode (or a source's adapter),
//! pipeline, store. Plugin calls are CPU work with a deadline, so they run
//! on the blocking pool, not on the async workers. Dead letters of failed
//! stages are written whether or not the write itself goes through.
//!
//! Every write is first *admitted*: it takes its encoded size from a budget
//! of bytes in flight (`max_write_inflight_size`) and gives it back once
//! acknowledged. Decoded requests, their Arrow batches and WAL payloads are
//! a small multiple of that size, so the budget bounds the memory writes
//! hold while they wait for the WAL or for buffer space; a stream waits for
//! admission before it reads its next message, which pushes back on the
//! client through HTTP/2 flow control instead of queueing in the server.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weir_pipeline::{DEAD_LETTER_TABLE, DeadLetter, Pipelines};
use weir_proto::v1::WriteRequest;
use weir_storage::Store;
use weir_storage::metrics::{Counter, Exposition, Histogram};

use crate::decode::decode_write_limited;
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub requests: Counter,
    pub rows: Counter,
    pub bytes: Counter,
    pub rejected_requests: Counter,
    pub rejected_rows: Counter,
    pub write_seconds: Histogram,
    pub admission_wait_seconds: Histogram,
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
            "weir_ingest_admission_wait_seconds",
            "Time writes waited for the in-flight budget (max_write_inflight_size) before decoding.",
            &self.admission_wait_seconds,
        );
        out.histogram(
            "weir_ingest_write_seconds",
            "Time from receiving a write to acknowledging it (decode, pipeline, WAL group commit).",
            &self.write_seconds,
        );
    }
}

/// Settings of the write path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub write_limits: weir_model::WriteLimits,
    /// Encoded bytes of writes admitted and not yet acknowledged.
    pub max_inflight_bytes: usize,
}

/// Decode → pipeline → store, for one request.
#[derive(Clone)]
pub struct Ingest {
    store: Store,
    pipelines: Arc<Pipelines>,
    metrics: Arc<IngestMetrics>,
    write_limits: weir_model::WriteLimits,
    inflight: Arc<Semaphore>,
    inflight_units: u32,
}

/// A write's share of the in-flight budget, returned when dropped.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    /// The encoded size it was admitted for, counted once.
    bytes: usize,
}

/// The budget is counted in KiB, so that any size fits a semaphore's permits.
const INFLIGHT_UNIT: usize = 1024;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Ingest {
    pub fn new(store: Store, pipelines: Arc<Pipelines>, config: IngestConfig) -> Self {
        // Counted in u32 permits: anything past 4 TiB is as good as unbounded.
        let units = (config.max_inflight_bytes / INFLIGHT_UNIT).clamp(1, u32::MAX as usize);
        Self {
            store,
            pipelines,
            metrics: Arc::new(IngestMetrics::default()),
            write_limits: config.write_limits,
            inflight: Arc::new(Semaphore::new(units)),
            inflight_units: units as u32,
        }
    }

    /// Waits until `bytes` more of writes may be in flight. A write larger
    /// than the whole budget waits until it is alone.
    pub async fn admit(&self, bytes: usize) -> Result<Admission> {
        let units = (bytes / INFLIGHT_UNIT + 1).min(self.inflight_units as usize) as u32;
        let started = Instant::now();
        let permit = Arc::clone(&self.inflight)
            .acquire_many_owned(units)
            .await
            .map_err(|_| Error::Internal("the write path is shut down".into()))?;
        self.metrics
            .admission_wait_seconds
            .observe(started.elapsed());
        Ok(Admission {
            _permit: permit,
            bytes,
        })
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Writes one request atomically; returns the rows written.
    pub async fn write(&self, request: WriteRequest) -> Result<u64> {
        let admission = self.admit(request.encoded_len()).await?;
        self.write_admitted(request, admission).await
    }

    /// [`write`](Self::write) for a request already [admitted](Self::admit).
    pub async fn write_admitted(&self, request: WriteRequest, admission: Admission) -> Result<u64> {
        let started = Instant::now();
        self.metrics.requests.inc();
        self.metrics.bytes.add(admission.bytes as u64);
        let result = self.write_inner(&request).await;
        drop(admission);
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
        let batches = decode_write_limited(request, now_ns, self.write_limits, &|table| {
            store.time_column_for(table)
        })?;
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
        let _admission = self.admit(body.len()).await?;
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
                .write_system(batches)
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
