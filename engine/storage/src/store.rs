//! [`Store`]: the storage engine's one entry point, tying WAL, buffer,
//! catalog and Parquet together.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::{Mutex, Notify};
use tracing::{debug, info, warn};
use weir_metrics::{GaugeFn, Registry};
use weir_model::{ColumnDef, TableBatch, TableSchema, conform};

use crate::buffer::Buffer;
use crate::catalog::{Catalog, FileMeta};
use crate::metrics::StorageMetrics;
use crate::parquet_files::{DAY_NS, read_file, write_partitioned};
use crate::rollup::{RollupDef, Rollups, merge_partial_rows, partial_rows};
use crate::wal::{self, Wal, WalConfig, WalSink, WalTable, encode_payload};
use crate::{Error, Result};

pub use weir_model::DEFAULT_TIME_COLUMN;

/// Per-table settings from configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableOptions {
    /// Name of the time column, used when the table is created.
    pub time_column: Option<String>,
    /// Partitions entirely older than this are dropped.
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub wal: WalConfig,
    /// Persistence starts once the buffer holds this many bytes.
    pub persist_buffer_bytes: usize,
    /// Writes wait (backpressure) while the buffer holds more than this.
    pub max_buffer_bytes: usize,
    pub tables: HashMap<String, TableOptions>,
    /// Most columns (tags and fields) a table may grow to.
    pub max_columns_per_table: usize,
    /// A partition with at least this many files is compacted.
    pub compaction_min_files: usize,
    /// Files replaced by compaction or dropped by retention are deleted this
    /// long after they left the catalog, so queries already reading them finish.
    pub file_delete_grace: Duration,
    /// Aggregates kept per time bucket as rows are written (see
    /// [`rollup`](crate::rollup)).
    pub rollups: Vec<RollupDef>,
}

/// What a query needs of one table, taken at one instant: the schema, the
/// buffered rows and the Parquet files. Together they hold every
/// acknowledged row exactly once.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub schema: SchemaRef,
    pub time_column: String,
    /// Conformed to `schema`.
    pub buffered: Vec<BufferedBatch>,
    pub files: Vec<ParquetFile>,
}

/// A buffered batch and the span of its times, so a query can skip it as
/// it skips a file.
#[derive(Debug, Clone)]
pub struct BufferedBatch {
    pub batch: RecordBatch,
    pub min_time: i64,
    pub max_time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParquetFile {
    pub path: PathBuf,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
}

/// What one persistence run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PersistReport {
    pub files: usize,
    pub rows: u64,
}

struct State {
    catalog: Catalog,
    buffer: Buffer,
}

struct Inner {
    config: StoreConfig,
    rollups: Rollups,
    catalog_path: PathBuf,
    state: Arc<RwLock<State>>,
    wal: Wal,
    metrics: Arc<StorageMetrics>,
    buffer_level: Arc<BufferLevel>,
    next_file_id: AtomicU64,
    /// Serializes persistence, compaction and retention: the catalog writers.
    maintenance: Mutex<()>,
    /// Wakes the background persister early.
    persist_wanted: Notify,
    /// Signalled when persistence frees buffer space (or writes part of a
    /// generation).
    space_freed: Notify,
    /// Bytes of the generation being persisted whose rows are already
    /// handed to the Parquet writer. Writers are admitted against the
    /// buffer less this, so under sustained overload they go on at the rate
    /// persistence writes rows instead of stopping for a whole generation;
    /// the generation's memory is freed when its files are complete, so the
    /// buffer peaks at `max_buffer_bytes` plus this, which is capped at
    /// `persist_buffer_bytes`.
    persist_credit: AtomicU64,
    /// Held for the store's lifetime: one server per data directory.
    _lock: File,
}

/// The storage engine. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn read(state: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    // A panic while holding the lock cannot leave `State` half-updated: every
    // mutation is a push, a remove or a swap. Keep serving.
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write(state: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn allocate_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Finishes a catalog change made under the state lock: records the file
    /// ids handed out so far, refreshes the file gauges, and returns the
    /// catalog to save (outside the lock).
    fn catalog_to_save(&self, state: &mut State) -> Catalog {
        state.catalog.next_file_id = self.next_file_id.load(Ordering::Relaxed);
        update_file_gauges(&self.metrics, &state.catalog);
        state.catalog.clone()
    }
}

/// What the write buffer holds, updated under the state lock whenever the
/// buffer changes, so that writers are admitted (backpressure) and early
/// persistence is asked for without taking the lock. `/metrics` reports it;
/// nothing reads it back from a metric.
#[derive(Debug, Default)]
pub struct BufferLevel {
    bytes: AtomicU64,
    rows: AtomicU64,
}

impl BufferLevel {
    fn update(&self, buffer: &Buffer) {
        self.bytes.store(buffer.bytes() as u64, Ordering::Relaxed);
        self.rows.store(buffer.rows() as u64, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// The partial rows every rollup of `table` keeps of `batch`.
fn rollup_rows(rollups: &Rollups, table: &str, batch: &RecordBatch) -> Result<Vec<WalTable>> {
    rollups
        .of_source(table)
        .iter()
        .map(|def| {
            let batch = partial_rows(def, batch).map_err(|reason| Error::Rollup {
                rollup: def.name.clone(),
                reason,
            })?;
            Ok(WalTable::new(def.name.clone(), batch))
        })
        .collect()
}

struct BufferSink {
    state: Arc<RwLock<State>>,
    level: Arc<BufferLevel>,
}

impl WalSink for BufferSink {
    fn committed(&self, records: Vec<Vec<WalTable>>) {
        let mut state = write(&self.state);
        for tables in records {
            for t in tables {
                state.buffer.append(t);
            }
        }
        self.level.update(&state.buffer);
    }

    fn freeze(&self, through_segment: u64) -> bool {
        write(&self.state).buffer.freeze(through_segment)
    }
}

impl Store {
    /// Opens (or creates) the data directory, replays the WAL and starts the
    /// WAL thread. Blocking: call from a blocking context at start-up.
    pub fn open(config: StoreConfig) -> Result<Self> {
        let data_dir = &config.data_dir;
        let wal_dir = data_dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(Error::io(&wal_dir))?;
        fs::create_dir_all(data_dir.join("tables")).map_err(Error::io(data_dir))?;
        let lock_path = data_dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(Error::io(&lock_path))?;
        lock.try_lock().map_err(|_| Error::Io {
            path: lock_path.clone(),
            source: std::io::Error::other("the data directory is in use by another weir process"),
        })?;

        let rollups = Rollups::new(&config.rollups).map_err(Error::Config)?;
        let catalog_path = data_dir.join("catalog.json");
        let mut catalog = Catalog::load(&catalog_path)?;
        for def in rollups.all() {
            let time_column = time_column_of(&catalog, &config, &def.source);
            if def.stored_columns().iter().any(|c| c.name == time_column) {
                return Err(Error::Config(format!(
                    "rollup {:?}: {time_column:?} is its time column (its source's); \
                     name the tag or aggregate otherwise",
                    def.name
                )));
            }
        }
        let (to_fill, mut catalog_changed) = reconcile_rollups(&mut catalog, &rollups)?;
        for (name, options) in &config.tables {
            if let (Some(entry), Some(configured)) =
                (catalog.tables.get(name), &options.time_column)
                && entry.schema.time_column != *configured
            {
                warn!(
                    table = %name, stored = %entry.schema.time_column, %configured,
                    "a table's time column is fixed when it is created; the configured name is ignored"
                );
            }
        }
        remove_orphan_files(data_dir, &catalog)?;
        let metrics = Arc::new(StorageMetrics::default());
        let buffer_level = Arc::new(BufferLevel::default());
        let persisted_through = catalog.wal_persisted_through;
        let next_file_id = catalog.next_file_id;
        let state = Arc::new(RwLock::new(State {
            catalog,
            buffer: Buffer::default(),
        }));

        let started = Instant::now();
        let summary = {
            let mut guard = write(&state);
            let state = &mut *guard;
            wal::replay(&wal_dir, persisted_through, &metrics, |tables| {
                for t in tables {
                    apply_schema(&mut state.catalog, &t)?;
                    let derived = rollup_rows(&rollups, &t.table, &t.batch)?;
                    state.buffer.append(t);
                    for d in derived {
                        apply_schema(&mut state.catalog, &d)?;
                        state.buffer.append(d);
                    }
                }
                Ok(())
            })?
        };
        let mut next_file_id = next_file_id;
        for def in to_fill {
            let mut guard = write(&state);
            fill_rollup(data_dir, &mut guard.catalog, &def, &mut next_file_id)?;
            catalog_changed = true;
        }
        if catalog_changed {
            let mut guard = write(&state);
            guard.catalog.next_file_id = next_file_id;
            guard.catalog.save(&catalog_path)?;
        }
        {
            let state = read(&state);
            buffer_level.update(&state.buffer);
            update_file_gauges(&metrics, &state.catalog);
            info!(
                data_dir = %data_dir.display(),
                tables = state.catalog.tables.len(),
                replayed_records = summary.records,
                buffered_rows = state.buffer.rows(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "storage opened"
            );
        }

        let first_segment = summary
            .last_segment
            .unwrap_or(persisted_through)
            .max(persisted_through)
            + 1;
        let sink = Arc::new(BufferSink {
            state: Arc::clone(&state),
            level: Arc::clone(&buffer_level),
        });
        let wal = Wal::start(
            &wal_dir,
            first_segment,
            config.wal.clone(),
            sink,
            Arc::clone(&metrics),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                rollups,
                catalog_path,
                state,
                wal,
                metrics,
                buffer_level,
                next_file_id: AtomicU64::new(next_file_id),
                maintenance: Mutex::new(()),
                persist_wanted: Notify::new(),
                space_freed: Notify::new(),
                persist_credit: AtomicU64::new(0),
                _lock: lock,
                config,
            }),
        })
    }

    pub fn metrics(&self) -> &Arc<StorageMetrics> {
        &self.inner.metrics
    }

    /// Registers storage's metrics, and the buffer's level read at scrape
    /// time.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
        let level = Arc::clone(&self.inner.buffer_level);
        registry.register(
            "weir_buffer_bytes",
            "Bytes of Arrow data in the write buffer",
            GaugeFn::new(move || level.bytes() as i64),
        );
        let level = Arc::clone(&self.inner.buffer_level);
        registry.register(
            "weir_buffer_rows",
            "Rows in the write buffer",
            GaugeFn::new(move || level.rows() as i64),
        );
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The time column `table` has, or will have if created now.
    pub fn time_column_for(&self, table: &str) -> String {
        time_column_of(&read(&self.inner.state).catalog, &self.inner.config, table)
    }

    /// Writes one request's batches atomically: either every table's rows are
    /// durable and visible when this returns `Ok`, or none are. Schema changes
    /// (new tables, new columns) are checked for every table before any is
    /// applied; a conflict rejects the whole request.
    ///
    /// Tables named like Weir's system tables (`weir_…`) are refused: rows
    /// from outside stored there would be acknowledged and never seen.
    pub async fn write(&self, batches: Vec<TableBatch>) -> Result<u64> {
        for tb in &batches {
            weir_model::check_not_system_table(&tb.table)?;
        }
        self.write_any(batches).await
    }

    /// The rollup named `name`, if one is configured.
    pub fn rollup(&self, name: &str) -> Option<Arc<RollupDef>> {
        self.inner.rollups.get(name).cloned()
    }

    /// What a rollup with no rows yet looks like: its columns, no data.
    pub fn empty_rollup_snapshot(&self, def: &RollupDef) -> TableSnapshot {
        let time_column = self.time_column_for(&def.source);
        let mut schema = TableSchema::new(&def.name, &time_column);
        schema.add_columns(def.stored_columns());
        TableSnapshot {
            schema: schema.arrow_schema(),
            time_column,
            buffered: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Every configured rollup.
    pub fn rollups(&self) -> Vec<Arc<RollupDef>> {
        self.inner.rollups.all().cloned().collect()
    }

    /// Like [`write`](Self::write), for the rows Weir writes to its own
    /// `weir_…` tables (dead letters, alerts).
    pub async fn write_system(&self, batches: Vec<TableBatch>) -> Result<u64> {
        self.write_any(batches).await
    }

    /// The time column a new table's first batch must have: the configured
    /// one, else the batch's own.
    fn configured_time_column<'a>(&'a self, tb: &'a TableBatch) -> &'a str {
        self.inner
            .config
            .tables
            .get(&tb.table)
            .and_then(|t| t.time_column.as_deref())
            .unwrap_or_else(|| tb.batch.schema_ref().field(0).name())
    }

    async fn write_any(&self, batches: Vec<TableBatch>) -> Result<u64> {
        let rows: u64 = batches.iter().map(|b| b.batch.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(0);
        }
        for tb in &batches {
            if let Some(def) = self.inner.rollups.get(&tb.table) {
                return Err(Error::RollupTable {
                    table: tb.table.clone(),
                    source_table: def.source.clone(),
                });
            }
            // Binary columns hold what Weir writes itself (rollup sketches).
            let schema = tb.batch.schema_ref();
            if let Some(field) = schema.fields().iter().find(|f| f.data_type().is_binary()) {
                return Err(weir_model::Error::UnsupportedType {
                    table: tb.table.clone(),
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                }
                .into());
            }
        }
        self.buffer_space().await;
        // Aggregated outside the lock; refused before anything is applied.
        let mut derived = Vec::new();
        for tb in &batches {
            derived.extend(
                rollup_rows(&self.inner.rollups, &tb.table, &tb.batch)?
                    .into_iter()
                    .map(|t| TableBatch {
                        table: t.table,
                        batch: t.batch,
                        first_rows: Vec::new(),
                    }),
            );
        }
        {
            // Work under the lock is proportional to the request's columns
            // (bounded by the write limits), never to the table's.
            let mut state = write(&self.inner.state);
            let mut additions: Vec<Vec<ColumnDef>> = Vec::with_capacity(batches.len());
            for tb in batches.iter().chain(&derived) {
                let (existing, new_columns) = match state.catalog.tables.get(&tb.table) {
                    Some(entry) => (
                        entry.schema.columns().len(),
                        entry.schema.check_batch(&tb.batch, &tb.first_rows)?,
                    ),
                    // A write may name a new table's time column, but not
                    // against the configuration.
                    None => (
                        0,
                        TableSchema::new(&tb.table, self.configured_time_column(tb))
                            .check_batch(&tb.batch, &tb.first_rows)?,
                    ),
                };
                let limit = self.inner.config.max_columns_per_table;
                if existing + new_columns.len() > limit {
                    return Err(Error::TableTooWide {
                        table: tb.table.clone(),
                        columns: existing + new_columns.len(),
                        limit,
                    });
                }
                additions.push(new_columns);
            }
            for (tb, columns) in batches.iter().chain(&derived).zip(additions) {
                let time_column = tb.batch.schema().field(0).name().clone();
                let entry = state.catalog.table_mut(&tb.table, &time_column);
                if entry.schema.add_columns(columns) {
                    debug!(table = %tb.table, columns = entry.schema.columns().len(), "schema grew");
                }
            }
        }
        let mut tables: Vec<WalTable> = batches
            .into_iter()
            .map(|tb| WalTable::new(tb.table, tb.batch))
            .collect();
        // Partial rows are not logged: replay computes them again.
        let payload = encode_payload(&tables)?;
        tables.extend(
            derived
                .into_iter()
                .map(|tb| WalTable::new(tb.table, tb.batch)),
        );
        self.inner.wal.append(payload, tables).await?;
        if self.inner.buffer_level.bytes() as usize >= self.inner.config.persist_buffer_bytes {
            self.inner.persist_wanted.notify_one();
        }
        Ok(rows)
    }

    /// Waits while the buffer, less the part of the generation being
    /// persisted that is already written, holds `max_buffer_bytes` or more
    /// (asking for persistence meanwhile). Writers call it before decoding a
    /// request, so what waits is encoded bytes; [`write`](Self::write)
    /// checks again.
    pub async fn buffer_space(&self) {
        let limit = self.inner.config.max_buffer_bytes;
        let mut waited = false;
        loop {
            let freed = self.inner.space_freed.notified();
            let buffered = self.inner.buffer_level.bytes();
            let unwritten =
                buffered.saturating_sub(self.inner.persist_credit.load(Ordering::Relaxed));
            if (unwritten as usize) < limit {
                return;
            }
            if !waited {
                self.inner.metrics.write_backpressure_waits.inc();
                waited = true;
            }
            self.inner.persist_wanted.notify_one();
            // Re-check now and then in case a notification raced us.
            let _ = tokio::time::timeout(Duration::from_millis(250), freed).await;
        }
    }

    /// Resolves when the buffer would like to be persisted early.
    pub async fn persist_wanted(&self) {
        self.inner.persist_wanted.notified().await;
    }

    pub fn buffer_bytes(&self) -> usize {
        self.inner.buffer_level.bytes() as usize
    }

    pub fn table_names(&self) -> Vec<String> {
        read(&self.inner.state)
            .catalog
            .tables
            .keys()
            .cloned()
            .collect()
    }

    /// The schema of every table, for `SHOW TABLES` and friends.
    pub fn table_schema(&self, table: &str) -> Option<TableSchema> {
        read(&self.inner.state)
            .catalog
            .tables
            .get(table)
            .map(|t| t.schema.clone())
    }

    /// A consistent view of one table for a query.
    pub fn snapshot(&self, table: &str) -> Result<Option<TableSnapshot>> {
        let (schema, buffered, files) = {
            let state = read(&self.inner.state);
            let Some(entry) = state.catalog.tables.get(table) else {
                return Ok(None);
            };
            (
                entry.schema.clone(),
                state.buffer.batches(table),
                entry.files.clone(),
            )
        };
        let arrow_schema = schema.arrow_schema();
        let buffered = buffered
            .into_iter()
            .map(|b| {
                Ok(BufferedBatch {
                    batch: conform(&b.batch, &arrow_schema)?,
                    min_time: b.min_time,
                    max_time: b.max_time,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Arrange {
                table: table.to_string(),
                source,
            })?;
        let files = files
            .iter()
            .map(|f| ParquetFile {
                path: self.inner.config.data_dir.join(&f.path),
                min_time: f.min_time,
                max_time: f.max_time,
                rows: f.rows,
                bytes: f.bytes,
            })
            .collect();
        Ok(Some(TableSnapshot {
            schema: arrow_schema,
            time_column: schema.time_column,
            buffered,
            files,
        }))
    }

    /// Writes everything buffered so far to Parquet, records the files in the
    /// catalog and drops the WAL segments that are now redundant.
    pub async fn persist(&self) -> Result<PersistReport> {
        let _maintenance = self.inner.maintenance.lock().await;
        let started = Instant::now();
        self.inner.wal.rotate().await?;
        let mut report = PersistReport::default();
        // Generations frozen by this run beyond the first; bounded so that
        // compaction and retention get their turn under sustained load.
        let mut refrozen = 0;
        // Older frozen generations may remain from a failed earlier run.
        loop {
            let (frozen, active_bytes) = {
                let state = read(&self.inner.state);
                let frozen = match state.buffer.oldest_frozen() {
                    None => None,
                    Some(generation) => {
                        let tables = generation
                            .tables
                            .iter()
                            .map(|(name, batches)| {
                                let entry = state.catalog.tables.get(name).ok_or_else(|| {
                                    Error::Internal(format!(
                                        "buffered table {name:?} is not in the catalog"
                                    ))
                                })?;
                                // A rollup's files, which its new rows merge into.
                                let rollup = self
                                    .inner
                                    .rollups
                                    .get(name)
                                    .map(|def| (Arc::clone(def), entry.files.clone()));
                                let batches = batches.iter().map(|b| b.batch.clone()).collect();
                                Ok((entry.id, entry.schema.clone(), batches, rollup))
                            })
                            .collect::<Result<Vec<PersistTable>>>()?;
                        Some((
                            generation.id,
                            generation.through_segment.unwrap_or(0),
                            tables,
                            (generation.bytes as u64, generation.rows.max(1) as u64),
                        ))
                    }
                };
                (frozen, state.buffer.active_bytes())
            };
            let Some(frozen) = frozen else {
                // Under sustained load the generation that filled while this
                // run wrote the last one is persisted straight away, so
                // generations stay near `persist_buffer_bytes` and each frees
                // its memory in seconds, instead of the buffer growing to its
                // limit and stalling writers for the time one huge
                // generation takes to write.
                if refrozen < 4
                    && active_bytes >= self.inner.config.persist_buffer_bytes
                    && self.inner.wal.rotate().await?.is_some()
                {
                    refrozen += 1;
                    continue;
                }
                break;
            };
            let (generation, through_segment, tables, (generation_bytes, generation_rows)) = frozen;
            let data_dir = self.inner.config.data_dir.clone();
            let inner = Arc::clone(&self.inner);
            let written = tokio::task::spawn_blocking(move || -> Result<Vec<Persisted>> {
                let mut out = Vec::with_capacity(tables.len());
                let mut rows_done = 0u64;
                let mut progress = |rows: usize| {
                    rows_done += rows as u64;
                    // At most persist_buffer_bytes: the buffer stays under
                    // max_buffer_bytes + persist_buffer_bytes.
                    let credit = (generation_bytes.saturating_mul(rows_done) / generation_rows)
                        .min(inner.config.persist_buffer_bytes as u64);
                    inner.persist_credit.store(credit, Ordering::Relaxed);
                    inner.space_freed.notify_waiters();
                };
                for (table_id, schema, batches, rollup) in tables {
                    let (batches, replaced) = match rollup {
                        Some((def, files)) => {
                            merge_into_rollup_files(&data_dir, &def, &schema, &batches, files)?
                        }
                        None => (batches, Vec::new()),
                    };
                    let files = write_partitioned(
                        &data_dir,
                        table_id,
                        &schema,
                        &batches,
                        &mut || inner.allocate_file_id(),
                        &mut progress,
                    )?;
                    out.push((schema.name, files, replaced));
                }
                Ok(out)
            })
            .await
            .map_err(|e| Error::Internal(format!("persist task: {e}")))
            .and_then(|written| written);
            let written = match written {
                Ok(written) => written,
                Err(e) => {
                    // Nothing of the generation left memory.
                    self.inner.persist_credit.store(0, Ordering::Relaxed);
                    return Err(e);
                }
            };

            let catalog = {
                let mut state = write(&self.inner.state);
                for (table, files, replaced) in &written {
                    report.files += files.len();
                    report.rows += files.iter().map(|f| f.rows).sum::<u64>();
                    if let Some(entry) = state.catalog.tables.get_mut(table) {
                        entry
                            .files
                            .retain(|f| !replaced.iter().any(|r| r.id == f.id));
                        entry.files.extend(files.iter().cloned());
                    }
                }
                state.catalog.wal_persisted_through = through_segment;
                state.buffer.remove_frozen(generation);
                self.inner.persist_credit.store(0, Ordering::Relaxed);
                self.inner.buffer_level.update(&state.buffer);
                self.inner.catalog_to_save(&mut state)
            };
            // Writers waiting for space go on as soon as each generation is out.
            self.inner.space_freed.notify_waiters();
            self.save_catalog(catalog).await?;
            for (_, _, replaced) in &written {
                self.delete_later(replaced);
            }
            // The generation's memory is free; give it back to the system.
            let _ = tokio::task::spawn_blocking(return_free_memory).await;
            let removed = self.inner.wal.remove_segments_through(through_segment)?;
            debug!(
                through_segment,
                removed, "WAL segments persisted and removed"
            );
        }
        self.inner.space_freed.notify_waiters();
        if report.files > 0 {
            self.inner.metrics.persist_runs.inc();
            self.inner
                .metrics
                .persisted_files
                .inc_by(report.files as u64);
            self.inner.metrics.persisted_rows.inc_by(report.rows);
            self.inner
                .metrics
                .persist_seconds
                .observe(started.elapsed());
            info!(
                files = report.files,
                rows = report.rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "persisted buffer to Parquet"
            );
        }
        Ok(report)
    }

    async fn save_catalog(&self, catalog: Catalog) -> Result<()> {
        let path = self.inner.catalog_path.clone();
        tokio::task::spawn_blocking(move || catalog.save(&path))
            .await
            .map_err(|e| Error::Internal(format!("catalog save task: {e}")))?
    }

    /// Merges the files of partitions that have at least
    /// `compaction_min_files` of them into one. Returns partitions compacted.
    pub async fn compact(&self) -> Result<usize> {
        let _maintenance = self.inner.maintenance.lock().await;
        let min_files = self.inner.config.compaction_min_files.max(2);
        let candidates: Vec<(String, u64, TableSchema, i64, Vec<FileMeta>)> = {
            let state = read(&self.inner.state);
            let mut out = Vec::new();
            for (name, entry) in &state.catalog.tables {
                let mut by_partition: HashMap<i64, Vec<FileMeta>> = HashMap::new();
                for f in &entry.files {
                    by_partition.entry(f.partition).or_default().push(f.clone());
                }
                for (partition, files) in by_partition {
                    if files.len() >= min_files {
                        out.push((
                            name.clone(),
                            entry.id,
                            entry.schema.clone(),
                            partition,
                            files,
                        ));
                    }
                }
            }
            out
        };
        let mut compacted = 0;
        for (table, table_id, schema, partition, old_files) in candidates {
            let data_dir = self.inner.config.data_dir.clone();
            let inner = Arc::clone(&self.inner);
            let inputs = old_files.clone();
            let rollup = self.inner.rollups.get(&table).cloned();
            let new_files = tokio::task::spawn_blocking(move || -> Result<Vec<FileMeta>> {
                let mut batches = Vec::new();
                for f in &inputs {
                    batches.extend(read_file(&data_dir.join(&f.path))?);
                }
                if let Some(def) = rollup {
                    batches = vec![merged(&def, &batches, &schema.time_column)?];
                }
                write_partitioned(
                    &data_dir,
                    table_id,
                    &schema,
                    &batches,
                    &mut || inner.allocate_file_id(),
                    &mut |_| {},
                )
            })
            .await
            .map_err(|e| Error::Internal(format!("compaction task: {e}")))??;
            let catalog = {
                let mut state = write(&self.inner.state);
                let Some(entry) = state.catalog.tables.get_mut(&table) else {
                    continue;
                };
                let old_ids: Vec<u64> = old_files.iter().map(|f| f.id).collect();
                entry.files.retain(|f| !old_ids.contains(&f.id));
                entry.files.extend(new_files.iter().cloned());
                self.inner.catalog_to_save(&mut state)
            };
            self.save_catalog(catalog).await?;
            self.delete_later(&old_files);
            self.inner.metrics.compactions.inc();
            self.inner
                .metrics
                .compacted_files
                .inc_by(old_files.len() as u64);
            info!(
                %table, partition = crate::parquet_files::day_name(partition),
                files_in = old_files.len(), files_out = new_files.len(),
                "compacted partition"
            );
            compacted += 1;
        }
        Ok(compacted)
    }

    /// Drops partitions that ended before `now_ns` minus their table's
    /// retention. Returns partitions dropped.
    pub async fn enforce_retention(&self, now_ns: i64) -> Result<usize> {
        let _maintenance = self.inner.maintenance.lock().await;
        let mut dropped_files = Vec::new();
        let mut dropped_partitions = 0;
        let catalog = {
            let mut state = write(&self.inner.state);
            for (name, entry) in state.catalog.tables.iter_mut() {
                // A rollup keeps what its source keeps: its day partitions
                // go with the source's, so it never counts a dropped row.
                let governing = self.inner.rollups.get(name).map_or(name, |def| &def.source);
                let Some(ttl) = self
                    .inner
                    .config
                    .tables
                    .get(governing)
                    .and_then(|t| t.retention)
                else {
                    continue;
                };
                let cutoff = now_ns.saturating_sub(ttl.as_nanos().min(i64::MAX as u128) as i64);
                let mut partitions: Vec<i64> = entry
                    .files
                    .iter()
                    .filter(|f| (f.partition + 1).saturating_mul(DAY_NS) <= cutoff)
                    .map(|f| f.partition)
                    .collect();
                partitions.sort_unstable();
                partitions.dedup();
                if partitions.is_empty() {
                    continue;
                }
                for p in &partitions {
                    info!(table = %name, partition = crate::parquet_files::day_name(*p), "retention drops partition");
                }
                dropped_partitions += partitions.len();
                let (old, keep): (Vec<FileMeta>, Vec<FileMeta>) = entry
                    .files
                    .drain(..)
                    .partition(|f| partitions.contains(&f.partition));
                entry.files = keep;
                dropped_files.extend(old);
            }
            if dropped_files.is_empty() {
                return Ok(0);
            }
            self.inner.catalog_to_save(&mut state)
        };
        self.save_catalog(catalog).await?;
        self.delete_later(&dropped_files);
        self.inner
            .metrics
            .retention_dropped_partitions
            .inc_by(dropped_partitions as u64);
        self.inner
            .metrics
            .retention_dropped_files
            .inc_by(dropped_files.len() as u64);
        Ok(dropped_partitions)
    }

    /// Deletes files that left the catalog once in-flight queries are done
    /// with them. A crash before then leaves orphans, removed at next open.
    fn delete_later(&self, files: &[FileMeta]) {
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| self.inner.config.data_dir.join(&f.path))
            .collect();
        let grace = self.inner.config.file_delete_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for path in paths {
                if let Err(e) = tokio::fs::remove_file(&path).await {
                    warn!(path = %path.display(), error = %e, "could not delete replaced file");
                }
            }
        });
    }

    /// For [`Durability::Interval`](crate::Durability::Interval): syncs the
    /// WAL if anything was written since the last sync.
    pub async fn sync_wal(&self) {
        self.inner.wal.tick().await;
    }

    /// Persists the buffer and closes the WAL. Writes after this fail.
    pub async fn shutdown(&self) -> Result<()> {
        let persisted = self.persist().await;
        if let Err(e) = &persisted {
            warn!(error = %e, "final persist failed; the WAL keeps the data for replay");
        }
        self.inner.wal.shutdown().await?;
        persisted.map(|_| ())
    }
}

/// What persistence takes of one buffered table: its id, schema, batches,
/// and its definition if it is a rollup.
/// and, for a rollup, its definition and files.
type PersistTable = (
    u64,
    TableSchema,
    Vec<RecordBatch>,
    Option<(Arc<RollupDef>, Vec<FileMeta>)>,
);

/// What persistence wrote of one table: its new files, and the files they
/// replace.
type Persisted = (String, Vec<FileMeta>, Vec<FileMeta>);

/// The time column `table` has in `catalog`, else the configured one, else
/// the default.
fn time_column_of(catalog: &Catalog, config: &StoreConfig, table: &str) -> String {
    if let Some(entry) = catalog.tables.get(table) {
        return entry.schema.time_column.clone();
    }
    config
        .tables
        .get(table)
        .and_then(|t| t.time_column.clone())
        .unwrap_or_else(|| DEFAULT_TIME_COLUMN.to_string())
}

/// A rollup's partial rows of one generation, merged with the rollup's
/// files of the days they touch into one row per bucket and group: what
/// to write, and the files it replaces. So a rollup keeps one file per
/// day, and a query over it with nothing buffered needs no merge at all
/// (see `weir_query`'s rollup view). Its files are small (a day of an
/// hourly rollup of 1,000 services is 24,000 rows, ~10 KB).
fn merge_into_rollup_files(
    data_dir: &Path,
    def: &RollupDef,
    schema: &TableSchema,
    batches: &[RecordBatch],
    files: Vec<FileMeta>,
) -> Result<(Vec<RecordBatch>, Vec<FileMeta>)> {
    // The days the partial rows touch, read from their time column (the
    // first); their files and the rows merge once.
    let mut days = std::collections::HashSet::new();
    for batch in batches {
        let times = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::TimestampNanosecondArray>()
            .ok_or_else(|| Error::Internal("a rollup's time column is not a timestamp".into()))?;
        days.extend(times.values().iter().map(|t| t.div_euclid(DAY_NS)));
    }
    let replaced: Vec<FileMeta> = files
        .into_iter()
        .filter(|f| days.contains(&f.partition))
        .collect();
    let mut inputs = batches.to_vec();
    for f in &replaced {
        inputs.extend(read_file(&data_dir.join(&f.path))?);
    }
    Ok((vec![merged(def, &inputs, &schema.time_column)?], replaced))
}

/// A rollup's partial rows merged into one row per bucket and group.
fn merged(def: &RollupDef, batches: &[RecordBatch], time_column: &str) -> Result<RecordBatch> {
    merge_partial_rows(def, batches, time_column).map_err(|reason| Error::Rollup {
        rollup: def.name.clone(),
        reason,
    })
}

/// Brings the catalog's rollup tables in line with the configured rollups.
/// A rollup no longer configured, or configured differently, loses its
/// table (its files are then orphans, removed at open). Returns the
/// rollups to fill from their source's files, and whether the catalog
/// changed.
fn reconcile_rollups(
    catalog: &mut Catalog,
    rollups: &Rollups,
) -> Result<(Vec<Arc<RollupDef>>, bool)> {
    let mut changed = false;
    let stale: Vec<String> = catalog
        .rollups
        .iter()
        .filter(|(name, fingerprint)| {
            rollups
                .get(name)
                .is_none_or(|def| def.fingerprint() != **fingerprint)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in stale {
        info!(rollup = %name, "the rollup's definition changed or it is no longer configured; its table is dropped");
        catalog.rollups.remove(&name);
        catalog.tables.remove(&name);
        changed = true;
    }
    let mut to_fill = Vec::new();
    for def in rollups.all() {
        if catalog.rollups.contains_key(&def.name) {
            continue;
        }
        if catalog.tables.contains_key(&def.name) {
            return Err(Error::Config(format!(
                "rollup {:?}: a table of that name already holds rows written to it; \
                 give the rollup a name of its own",
                def.name
            )));
        }
        catalog.rollups.insert(def.name.clone(), def.fingerprint());
        to_fill.push(Arc::clone(def));
        changed = true;
    }
    Ok((to_fill, changed))
}

/// Computes a new rollup from its source's Parquet files, one day
/// partition at a time. (Its source's buffered rows were replayed into it.)
fn fill_rollup(
    data_dir: &Path,
    catalog: &mut Catalog,
    def: &RollupDef,
    next_file_id: &mut u64,
) -> Result<()> {
    let Some(source) = catalog.tables.get(&def.source) else {
        return Ok(());
    };
    let time_column = source.schema.time_column.clone();
    let mut by_partition: std::collections::BTreeMap<i64, Vec<FileMeta>> = Default::default();
    for f in &source.files {
        by_partition.entry(f.partition).or_default().push(f.clone());
    }
    if by_partition.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let rollup_error = |reason| Error::Rollup {
        rollup: def.name.clone(),
        reason,
    };
    let mut rows = 0u64;
    for (_, files) in by_partition {
        let mut accumulator = crate::rollup::Accumulator::new(def);
        for f in &files {
            for batch in read_file(&data_dir.join(&f.path))? {
                accumulator.add_raw(&batch).map_err(rollup_error)?;
            }
            rows += f.rows;
        }
        let partial = accumulator.finish(&time_column).map_err(rollup_error)?;
        let entry = catalog.table_mut(&def.name, &time_column);
        let columns = entry.schema.check_batch(&partial, &[])?;
        entry.schema.add_columns(columns);
        let (table_id, schema) = (entry.id, entry.schema.clone());
        let written = write_partitioned(
            data_dir,
            table_id,
            &schema,
            &[partial],
            &mut || {
                *next_file_id += 1;
                *next_file_id - 1
            },
            &mut |_| {},
        )?;
        catalog
            .tables
            .get_mut(&def.name)
            .ok_or_else(|| Error::Internal("rollup table vanished while filling".into()))?
            .files
            .extend(written);
    }
    info!(
        rollup = %def.name, source = %def.source, source_rows = rows,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "filled rollup from its source's files"
    );
    Ok(())
}

/// Adds a replayed batch's table and columns to the catalog.
fn apply_schema(catalog: &mut Catalog, t: &WalTable) -> Result<()> {
    let time_column = t.batch.schema().field(0).name().clone();
    let entry = catalog.table_mut(&t.table, &time_column);
    let columns = entry.schema.check_batch(&t.batch, &[])?;
    entry.schema.add_columns(columns);
    Ok(())
}

/// Hands the allocator's free pages back to the system. A generation is
/// hundreds of MiB in blocks mostly under glibc's mmap threshold (a 50,000-
/// row column is a few hundred KiB), so once freed they stay in malloc's
/// arenas: under overload, RSS sat 1 GiB over the buffer with the buffer
/// empty. `malloc_trim` releases the free pages inside the arenas too.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn update_file_gauges(metrics: &StorageMetrics, catalog: &Catalog) {
    let (files, bytes) = catalog
        .files()
        .fold((0i64, 0i64), |(n, b), f| (n + 1, b + f.bytes as i64));
    metrics.parquet_files.set(files);
    metrics.parquet_bytes.set(bytes);
}

/// Removes Parquet files the catalog does not know (left by a crash between
/// writing a file and committing the catalog, or before a delayed delete).
fn remove_orphan_files(data_dir: &Path, catalog: &Catalog) -> Result<()> {
    let known: std::collections::HashSet<PathBuf> =
        catalog.files().map(|f| data_dir.join(&f.path)).collect();
    let mut stack = vec![data_dir.join("tables")];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        for entry in entries {
            let path = entry.map_err(Error::io(&dir))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if !known.contains(&path) {
                info!(path = %path.display(), "removing file not in the catalog");
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
    }
    Ok(())
}
