//! The write path every writer shares — front ends, raw-ingest sources and
//! Weir's own monitor: pipeline, then store, inside the acknowledgement.
//! Plugin calls are CPU work with a deadline, so they run on the blocking
//! pool, not on the async workers. Dead letters of failed stages are written
//! whether or not the write itself goes through.
//!
//! Every write is first *admitted*: it takes its encoded size from a budget
//! of bytes in flight (`max_write_inflight_size`) and gives it back once
//! acknowledged. Decoded requests, their Arrow batches and WAL payloads are
//! a small multiple of that size, so the budget bounds the memory writes
//! hold while they wait for the WAL or for buffer space; a stream waits for
//! admission before it reads its next message, which pushes back on the
//! client through HTTP/2 flow control instead of queueing in the server.
//!
//! A write's CPU work (decoding, pipelines) runs on the blocking pool of
//! the runtime the write path was made on — the ingest runtime, whose
//! threads run at `ingest_nice` — whichever thread the request arrived
//! on: requests are read by threads at the process's own priority (the
//! server's front ends), for the queries that come that way.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weir_metrics::{Counter, Latency, Registry};
use weir_model::{TableBatch, TableSchema};
use weir_protocols::{Decoded, Rejected, Tables};
use weir_storage::Store;

use crate::{DEAD_LETTER_TABLE, DeadLetter, Error, Pipelines, Result};

#[derive(Debug, Default)]
pub struct WriteMetrics {
    pub requests: Counter,
    pub rows: Counter,
    pub bytes: Counter,
    pub rejected_requests: Counter,
    pub rejected_rows: Counter,
    pub write_seconds: Latency,
    pub admission_wait_seconds: Latency,
}

impl WriteMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_ingest_requests",
            "Write requests (batches) received",
            self.requests.clone(),
        );
        registry.register(
            "weir_ingest_rows",
            "Rows written and acknowledged",
            self.rows.clone(),
        );
        registry.register(
            "weir_ingest_bytes",
            "Encoded bytes of write requests received",
            self.bytes.clone(),
        );
        registry.register(
            "weir_ingest_rejected_requests",
            "Write requests rejected",
            self.rejected_requests.clone(),
        );
        registry.register(
            "weir_ingest_rejected_rows",
            "Rows in rejected write requests",
            self.rejected_rows.clone(),
        );
        registry.register(
            "weir_ingest_admission_wait_seconds",
            "Time writes waited for the in-flight budget (max_write_inflight_size) before decoding",
            self.admission_wait_seconds.clone(),
        );
        registry.register(
            "weir_ingest_write_seconds",
            "Time from receiving a write to acknowledging it (decode, pipeline, WAL group commit)",
            self.write_seconds.clone(),
        );
    }
}

/// Pipeline → store, for every writer.
#[derive(Clone)]
pub struct WritePath {
    store: Store,
    pipelines: Arc<Pipelines>,
    metrics: Arc<WriteMetrics>,
    inflight: Arc<Semaphore>,
    inflight_units: u32,
    /// Where CPU work runs; the caller's runtime when `None` (a write path
    /// made outside one).
    blocking: Option<tokio::runtime::Handle>,
}

/// How far a raw body goes before it is handed back.
#[derive(Clone, Copy)]
enum Raw {
    /// Adapter, then the pipelines of the tables it produces.
    Ingest,
    /// The adapter only.
    AdaptOnly,
}

/// A write's share of the in-flight budget, returned when dropped.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    /// The encoded size it was admitted for, counted once.
    bytes: usize,
    started: Instant,
}

/// The budget is counted in KiB, so that any size fits a semaphore's permits.
const INFLIGHT_UNIT: usize = 1024;

/// Nanoseconds since the epoch: the server time that replaces timestamps of 0.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl WritePath {
    /// `max_inflight_bytes`: encoded bytes of writes admitted and not yet
    /// acknowledged.
    pub fn new(store: Store, pipelines: Arc<Pipelines>, max_inflight_bytes: usize) -> Self {
        // Counted in u32 permits: anything past 4 TiB is as good as unbounded.
        let units = (max_inflight_bytes / INFLIGHT_UNIT).clamp(1, u32::MAX as usize);
        Self {
            store,
            pipelines,
            metrics: Arc::new(WriteMetrics::default()),
            inflight: Arc::new(Semaphore::new(units)),
            inflight_units: units as u32,
            blocking: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs CPU work on the write path's blocking pool.
    fn spawn_blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> tokio::task::JoinHandle<R> {
        match &self.blocking {
            Some(runtime) => runtime.spawn_blocking(work),
            None => tokio::task::spawn_blocking(work),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<WriteMetrics> {
        &self.metrics
    }

    /// Waits until `bytes` more of writes may be in flight, and until the
    /// buffer has room. A write larger than the whole budget waits until it
    /// is alone. Waiting here, before decoding, means a write held back by
    /// a full buffer holds only its encoded bytes.
    pub async fn admit(&self, bytes: usize) -> Result<Admission> {
        let units = (bytes / INFLIGHT_UNIT + 1).min(self.inflight_units as usize) as u32;
        let started = Instant::now();
        let permit = Arc::clone(&self.inflight)
            .acquire_many_owned(units)
            .await
            .map_err(|_| Error::ShutDown)?;
        self.store.buffer_space().await;
        self.metrics
            .admission_wait_seconds
            .observe(started.elapsed());
        self.metrics.requests.inc();
        self.metrics.bytes.inc_by(bytes as u64);
        Ok(Admission {
            _permit: permit,
            bytes,
            started: Instant::now(),
        })
    }

    /// Counts a write refused before it reached [`write`](Self::write)
    /// (it did not decode, say).
    pub fn rejected(&self, admission: Admission, rows: u64) {
        self.metrics.rejected_requests.inc();
        self.metrics.rejected_rows.inc_by(rows);
        drop(admission);
    }

    /// The ingest step of every front end: decodes an admitted request with
    /// `decode` (given the server's time and the store's tables), then
    /// runs what it decoded through the pipelines into the store. Points
    /// the decoder dropped are counted as rejected rows and handed back
    /// for the protocol to report. `points` is the request's point count
    /// where the front end knows it, for the rejected-rows counter should
    /// the whole request fail to decode.
    ///
    /// Decoding is CPU work proportional to the body (a 64 MiB line
    /// protocol body takes about a second): it runs on the blocking pool,
    /// so a large request never holds up the async workers that serve
    /// everyone else.
    pub async fn ingest(
        &self,
        admission: Admission,
        points: u64,
        decode: impl FnOnce(i64, &dyn Tables) -> weir_protocols::Result<Decoded> + Send + 'static,
    ) -> Result<Ingested> {
        let now_ns = now_ns();
        let store = self.store.clone();
        let decoded = self
            .spawn_blocking(move || decode(now_ns, &StoreTables(&store)))
            .await;
        let decoded = match decoded {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(e)) => {
                self.rejected(admission, points);
                return Err(Error::Decode(e));
            }
            Err(e) => {
                self.rejected(admission, points);
                return Err(Error::Internal(format!("decode task: {e}")));
            }
        };
        let Decoded { batches, rejected } = decoded;
        self.metrics.rejected_rows.inc_by(rejected.points);
        let rows = if batches.is_empty() {
            self.finish(Ok(0), 0, admission)?
        } else {
            self.write(batches, now_ns, admission).await?
        };
        Ok(Ingested { rows, rejected })
    }

    /// Runs decoded batches through their tables' pipelines and stores the
    /// result atomically; returns the rows written once they are durable.
    /// `now_ns` is the server time the batches were decoded with.
    pub async fn write(
        &self,
        batches: Vec<TableBatch>,
        now_ns: i64,
        admission: Admission,
    ) -> Result<u64> {
        let rows: u64 = batches.iter().map(|b| b.batch.num_rows() as u64).sum();
        let result = self.pipeline_and_store(batches, now_ns).await;
        self.finish(result, rows, admission)
    }

    async fn pipeline_and_store(&self, batches: Vec<TableBatch>, now_ns: i64) -> Result<u64> {
        if !self.pipelines.has_table_stages() {
            return Ok(self.store.write(batches).await?);
        }
        let batches = self.run_pipelines(batches, now_ns).await?;
        Ok(self.store.write(batches).await?)
    }

    /// Whether `table` has a pipeline with stages.
    pub fn has_pipeline(&self, table: &str) -> bool {
        self.pipelines.has_stages(table)
    }

    /// Runs batches through their tables' pipelines and returns what the
    /// stages let through, without storing it — for writers that act on
    /// the result themselves (the monitor's events). Dead letters of failed
    /// stages are stored as for any write.
    pub async fn run_pipelines(
        &self,
        batches: Vec<TableBatch>,
        now_ns: i64,
    ) -> Result<Vec<TableBatch>> {
        let pipelines = Arc::clone(&self.pipelines);
        let (result, dead_letters) = self
            .spawn_blocking(move || {
                let mut dead_letters = Vec::new();
                let result = pipelines.run(batches, now_ns, &mut dead_letters);
                (result, dead_letters)
            })
            .await
            .map_err(|e| Error::Internal(format!("pipeline task: {e}")))?;
        self.write_dead_letters(dead_letters).await;
        result
    }

    /// Writes a raw body through the source's adapter and the pipelines of
    /// the tables it produces; returns the rows written.
    pub async fn write_raw(&self, source: &str, content_type: &str, body: &[u8]) -> Result<u64> {
        let admission = self.admit(body.len()).await?;
        let result = match self.raw(source, content_type, body, Raw::Ingest).await {
            Ok(batches) => self.store.write(batches).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        self.finish(result, 0, admission)
    }

    /// Turns a raw body into table batches with the source's adapter alone:
    /// nothing is stored and no table pipeline runs — for bodies that are
    /// alert events (the monitor takes them from here). A failing
    /// adapter's dead letter is stored as for any write.
    pub async fn adapt_raw(
        &self,
        source: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Vec<TableBatch>> {
        self.raw(source, content_type, body, Raw::AdaptOnly).await
    }

    /// Runs a raw body through the source's adapter (and, for
    /// [`Raw::Ingest`], its tables' pipelines) on the blocking pool, and
    /// stores the dead letters of whatever failed.
    async fn raw(
        &self,
        source: &str,
        content_type: &str,
        body: &[u8],
        how: Raw,
    ) -> Result<Vec<TableBatch>> {
        let now_ns = now_ns();
        let pipelines = Arc::clone(&self.pipelines);
        let store = self.store.clone();
        let (source, content_type, body) =
            (source.to_string(), content_type.to_string(), body.to_vec());
        let (result, dead_letters) = self
            .spawn_blocking(move || {
                let mut dead_letters = Vec::new();
                let time_column_for = |table: &str| store.time_column_for(table);
                let run = match how {
                    Raw::Ingest => Pipelines::ingest_raw,
                    Raw::AdaptOnly => Pipelines::adapt,
                };
                let result = run(
                    &pipelines,
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
        result
    }

    /// Stores rows of Weir's own `weir_…` tables (alert history,
    /// notifications, dead letters): durable like any write, but past the
    /// pipelines, which are for what clients send.
    pub async fn write_system(&self, batches: Vec<TableBatch>) -> Result<u64> {
        Ok(self.store.write_system(batches).await?)
    }

    fn finish(&self, result: Result<u64>, rows_in: u64, admission: Admission) -> Result<u64> {
        match &result {
            Ok(rows) => {
                self.metrics.rows.inc_by(*rows);
                self.metrics
                    .write_seconds
                    .observe(admission.started.elapsed());
            }
            Err(_) => {
                self.metrics.rejected_requests.inc();
                self.metrics.rejected_rows.inc_by(rows_in);
            }
        }
        drop(admission);
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

/// What [`WritePath::ingest`] wrote, and what the decoder dropped.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Rows durable and acknowledged.
    pub rows: u64,
    pub rejected: Rejected,
}

/// The store as decoders see it: time columns and stored schemas.
struct StoreTables<'a>(&'a Store);

impl Tables for StoreTables<'_> {
    fn time_column(&self, table: &str) -> String {
        self.0.time_column_for(table)
    }

    fn schema(&self, table: &str) -> Option<TableSchema> {
        self.0.table_schema(table)
    }
}

impl Admission {
    /// The encoded size this write was admitted for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
