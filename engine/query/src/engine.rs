//! [`QueryEngine`]: runs one SQL query in a fresh, bounded session.
//!
//! Every query is bounded before it can hurt the process: its text by
//! [`MAX_SQL_BYTES`], its nesting by [`MAX_SQL_DEPTH`](crate::complexity),
//! its working memory by a DataFusion memory pool, its answer by
//! `max_result_bytes` (counted as batches arrive, so an endless
//! `generate_series` stops at the cap instead of growing the process), and
//! its time by `timeout`. Queries run on their own runtime, whose threads
//! have stacks large enough for any plan the depth limit admits, and a query
//! whose caller goes away (timeout, client disconnect) is aborted, not left
//! running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tracing::debug;
use weir_metrics::{Counter, Latency, Registry};
use weir_storage::Store;

use crate::complexity::{MAX_SQL_BYTES, MAX_SQL_DEPTH, check_depth};
use crate::postgres::{PgCatalog, PgOidTypePlanner};
use crate::{Error, Result, WeirTable};

/// The catalog and schema Weir's tables live in (`weir.public.t`).
pub(crate) const CATALOG: &str = "weir";
pub(crate) const SCHEMA: &str = "public";

/// How a query's text is read, and what it may name besides Weir's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// DataFusion's SQL; Weir's tables and `information_schema`.
    #[default]
    Weir,
    /// PostgreSQL's syntax, and also the `pg_catalog` schema and functions
    /// that Postgres clients query on connect and to describe tables.
    Postgres,
}

/// Stack of each query thread. Virtual memory: only the pages a deep plan
/// touches are ever committed.
const QUERY_STACK_BYTES: usize = 256 << 20;

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may use for sorts, joins and aggregations.
    pub memory_limit: usize,
    pub timeout: Duration,
    /// Parallelism of one query; 0 means one per core.
    pub target_partitions: usize,
    /// Largest answer (Arrow bytes) one query may return.
    pub max_result_bytes: usize,
}

#[derive(Debug, Default, Clone)]
pub struct QueryMetrics {
    pub queries: Counter,
    pub failed: Counter,
    pub seconds: Latency,
}

impl QueryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("weir_queries", "SQL queries run", self.queries.clone());
        registry.register(
            "weir_query_errors",
            "SQL queries that failed",
            self.failed.clone(),
        );
        registry.register(
            "weir_query_seconds",
            "SQL query latency",
            self.seconds.clone(),
        );
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A query's answer as it is computed, batch by batch
/// ([`QueryEngine::sql_stream_in`]). Ends with an error if the query fails
/// part way, never early without one. Dropping it stops the query.
pub struct QueryStream {
    pub schema: SchemaRef,
    batches: tokio::sync::mpsc::Receiver<RecordBatch>,
    /// How the query ended; a oneshot, so that the end is told even to a
    /// reader whose batch channel is full.
    done: tokio::sync::oneshot::Receiver<Result<()>>,
    finished: bool,
    _query: AbortOnDrop<()>,
}

impl futures::Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.finished {
            return Poll::Ready(None);
        }
        match self.batches.poll_recv(cx) {
            Poll::Ready(Some(batch)) => return Poll::Ready(Some(Ok(batch))),
            Poll::Pending => return Poll::Pending,
            // Every batch is read: how did the query end?
            Poll::Ready(None) => {}
        }
        let ended = match std::pin::Pin::new(&mut self.done).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(()))) => None,
            Poll::Ready(Ok(Err(e))) => Some(Err(e)),
            // The query task ended without saying: it panicked.
            Poll::Ready(Err(_)) => Some(Err(contained_panic())),
        };
        self.finished = true;
        Poll::Ready(ended)
    }
}

/// Batches a streamed answer keeps ready ahead of its reader: what a
/// reader that stops reading holds in memory, beyond DataFusion's own
/// buffers (bounded by the memory limit).
const STREAM_AHEAD: usize = 2;

/// A read-only table computed when a query asks for it — the engine's own
/// state (plugin counters, say) exposed to SQL next to the stored tables.
pub trait SystemTable: Send + Sync {
    fn name(&self) -> &str;
    fn schema(&self) -> SchemaRef;
    /// The table's rows as of now.
    fn rows(&self) -> RecordBatch;
}

pub struct QueryEngine {
    planner: Planner,
    runtime: QueryRuntime,
    metrics: QueryMetrics,
}

/// What one query needs, cheap to clone onto the query runtime.
#[derive(Clone)]
struct Planner {
    tables: Arc<WeirSchema>,
    config: QueryConfig,
    pg_catalog: Arc<PgCatalog>,
}

impl QueryEngine {
    /// Starts the query threads. Fails only if the OS refuses threads.
    pub fn new(store: Store, config: QueryConfig) -> Result<Self> {
        Ok(Self {
            planner: Planner {
                tables: Arc::new(WeirSchema {
                    store,
                    system_tables: Vec::new(),
                }),
                config,
                pg_catalog: Arc::new(PgCatalog::new()),
            },
            runtime: QueryRuntime::start()?,
            metrics: QueryMetrics::default(),
        })
    }

    /// Adds a system table; its name shadows any stored table of the same name.
    pub fn with_system_table(mut self, table: Arc<dyn SystemTable>) -> Self {
        let mut tables = WeirSchema::clone(&self.planner.tables);
        tables.system_tables.push(table);
        self.planner.tables = Arc::new(tables);
        self
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    /// Runs `sql` to completion.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        self.sql_limited(sql, usize::MAX).await
    }

    /// Like [`sql`](Self::sql), and fails with [`Error::TooManyRows`] as
    /// soon as the answer has more than `max_rows` rows — for callers that
    /// keep every row (an alert rule's instances), so an unexpected answer
    /// stops early instead of filling memory up to the result size cap.
    pub async fn sql_limited(&self, sql: &str, max_rows: usize) -> Result<QueryResult> {
        self.sql_bound(sql, Vec::new(), max_rows).await
    }

    /// Like [`sql_limited`](Self::sql_limited), with `params` bound to the
    /// placeholders `$1`, `$2`, … as values: a parameter is never parsed as
    /// SQL, whatever it holds.
    pub async fn sql_bound(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        max_rows: usize,
    ) -> Result<QueryResult> {
        let started = Instant::now();
        self.metrics.queries.inc();
        let result = self.run_bounded(sql, params, max_rows).await;
        self.metrics.seconds.observe(started.elapsed());
        if result.is_err() {
            self.metrics.failed.inc();
        }
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "query"
        );
        result
    }

    /// Runs `sql` (read in `dialect`, `params` bound) and hands its answer
    /// over batch by batch as it is computed, for front ends that send
    /// batches on as they come (Flight SQL, the Postgres protocol): the
    /// answer is never held whole, so the result size cap does not apply;
    /// what waits for a slow reader is [`STREAM_AHEAD`] batches. The
    /// timeout covers the whole stream, reading included, so a reader that
    /// stops reading ends its query (with a timeout error) instead of
    /// holding it open.
    pub async fn sql_stream_in(
        &self,
        dialect: Dialect,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<QueryStream> {
        self.metrics.queries.inc();
        if let Err(e) = check_size(sql) {
            self.metrics.failed.inc();
            return Err(e);
        }
        let planner = self.planner.clone();
        let metrics = self.metrics.clone();
        let sql = sql.to_string();
        let timeout = self.planner.config.timeout;
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
        let (batch_tx, batches) = tokio::sync::mpsc::channel(STREAM_AHEAD);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let query = AbortOnDrop(self.runtime.spawn(async move {
            let started = Instant::now();
            let mut schema_tx = Some(schema_tx);
            let run = planner.stream(dialect, &sql, params, &mut schema_tx, batch_tx);
            let result = match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout { timeout }),
            };
            metrics.seconds.observe(started.elapsed());
            if result.is_err() {
                metrics.failed.inc();
            }
            debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                ok = result.is_ok(),
                "streamed query"
            );
            match (schema_tx.take(), result) {
                // Failed before it had an answer to stream.
                (Some(schema_tx), Err(e)) => {
                    let _ = schema_tx.send(Err(e));
                }
                (_, result) => {
                    let _ = done_tx.send(result);
                }
            }
            Ok(())
        }));
        let schema = match schema_rx.await {
            Ok(schema) => schema?,
            Err(_) => return Err(contained_panic()),
        };
        Ok(QueryStream {
            schema,
            batches,
            done,
            finished: false,
            _query: query,
        })
    }

    /// The schema of `sql`'s answer, from planning it alone: nothing is
    /// read or run. Refused for the reasons [`sql`](Self::sql) would refuse
    /// it before running (syntax, unknown tables, not read-only, too deep).
    ///
    /// Also returns the types of the placeholders (`$1`, `$2`, …) that are
    /// left unbound, in order, as far as the plan determines them.
    pub async fn plan_schema(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>)> {
        self.plan_schema_in(Dialect::Weir, sql, params).await
    }

    /// Like [`plan_schema`](Self::plan_schema), with `sql` read in `dialect`.
    pub async fn plan_schema_in(
        &self,
        dialect: Dialect,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>)> {
        check_size(sql)?;
        let planner = self.planner.clone();
        let sql = sql.to_string();
        let task = AbortOnDrop(self.runtime.spawn(async move {
            let (_, plan) = planner.plan(dialect, &sql, params).await?;
            let placeholders = plan
                .get_parameter_types()
                .map_err(|e| Error::from_datafusion(e, planner.config.memory_limit))?;
            let mut placeholders: Vec<(usize, Option<DataType>)> = placeholders
                .into_iter()
                .filter_map(|(name, data_type)| {
                    let index = name.strip_prefix('$')?.parse().ok()?;
                    Some((index, data_type))
                })
                .collect();
            placeholders.sort_by_key(|(index, _)| *index);
            let schema = Arc::new(plan.schema().as_arrow().clone()) as SchemaRef;
            Ok((schema, placeholders.into_iter().map(|(_, t)| t).collect()))
        }));
        let timeout = self.planner.config.timeout;
        match tokio::time::timeout(timeout, task).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { timeout }),
        }
    }

    async fn run_bounded(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        max_rows: usize,
    ) -> Result<QueryResult> {
        check_size(sql)?;
        let planner = self.planner.clone();
        let sql = sql.to_string();
        let task = AbortOnDrop(
            self.runtime
                .spawn(async move { planner.run(&sql, params, max_rows).await }),
        );
        let timeout = self.planner.config.timeout;
        match tokio::time::timeout(timeout, task).await {
            Ok(result) => result,
            // Dropping `task` aborts the query.
            Err(_) => Err(Error::Timeout { timeout }),
        }
    }
}

/// Refuses SQL text over [`MAX_SQL_BYTES`]: every front end checks the
/// text as it was received, before any parser reads it.
pub fn check_size(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::TooLarge {
            bytes: sql.len(),
            limit: MAX_SQL_BYTES,
        });
    }
    Ok(())
}

impl Planner {
    /// `sql` planned, with `params` bound, and checked read-only.
    async fn plan(
        &self,
        dialect: Dialect,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SessionContext, LogicalPlan)> {
        let limit = self.config.memory_limit;
        let df_err = |e: DataFusionError| Error::from_datafusion(e, limit);
        let ctx = self.session(dialect).map_err(df_err)?;
        let state = ctx.state();
        let statement = state
            .sql_to_statement(sql, &state.config().options().sql_parser.dialect)
            .map_err(df_err)?;
        check_depth(&statement, MAX_SQL_DEPTH).map_err(|refused| Error::TooDeep {
            what: refused.what,
            depth: refused.depth,
            limit: MAX_SQL_DEPTH,
        })?;
        let mut plan = state.statement_to_plan(statement).await.map_err(df_err)?;
        if !params.is_empty() {
            plan = plan.with_param_values(params).map_err(df_err)?;
        }
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(df_err)?;
        Ok((ctx, plan))
    }

    /// `sql` planned and started: its schema and its batches to come.
    async fn execute(
        &self,
        dialect: Dialect,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let limit = self.config.memory_limit;
        let df_err = |e: DataFusionError| Error::from_datafusion(e, limit);
        let (ctx, plan) = self.plan(dialect, sql, params).await?;
        let frame = ctx.execute_logical_plan(plan).await.map_err(df_err)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let stream = frame.execute_stream().await.map_err(df_err)?;
        Ok((schema, stream))
    }

    /// `sql` run to completion, its answer held whole within the caps.
    async fn run(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        max_rows: usize,
    ) -> Result<QueryResult> {
        let limit = self.config.memory_limit;
        let df_err = |e: DataFusionError| Error::from_datafusion(e, limit);
        let (schema, mut stream) = self.execute(Dialect::Weir, sql, params).await?;
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            rows += batch.num_rows();
            if rows > max_rows {
                return Err(Error::TooManyRows { limit: max_rows });
            }
            bytes += batch.get_array_memory_size();
            if bytes > self.config.max_result_bytes {
                return Err(Error::ResultTooLarge {
                    limit: self.config.max_result_bytes,
                });
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }

    /// Plans and runs `sql`, sends its schema on `schema_tx` (taking it),
    /// then its batches on `batches` until done or the reader goes away.
    async fn stream(
        &self,
        dialect: Dialect,
        sql: &str,
        params: Vec<ScalarValue>,
        schema_tx: &mut Option<tokio::sync::oneshot::Sender<Result<SchemaRef>>>,
        batches: tokio::sync::mpsc::Sender<RecordBatch>,
    ) -> Result<()> {
        let limit = self.config.memory_limit;
        let df_err = |e: DataFusionError| Error::from_datafusion(e, limit);
        let (schema, mut stream) = self.execute(dialect, sql, params).await?;
        if let Some(schema_tx) = schema_tx.take() {
            let _ = schema_tx.send(Ok(schema));
        }
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_err)?;
            if batches.send(batch).await.is_err() {
                // The reader is gone; nobody wants the rest.
                return Ok(());
            }
        }
        Ok(())
    }

    fn session(&self, dialect: Dialect) -> datafusion::error::Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.memory_limit, 1.0)
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, SCHEMA);
        if self.config.target_partitions > 0 {
            config = config.with_target_partitions(self.config.target_partitions);
        }
        if dialect == Dialect::Postgres {
            config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        }
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        let mut pg_catalog = None;
        if dialect == Dialect::Postgres {
            // `'t'::regclass` and other oid-alias type names.
            state = state.with_type_planner(Arc::new(PgOidTypePlanner));
            pg_catalog = Some(self.pg_catalog.schema(&self.tables)?);
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_udf(crate::date_trunc::UtcDateTrunc::udf());
        for function in crate::sketch::scalar_functions() {
            ctx.register_udf(function);
        }
        for function in crate::sketch::aggregate_functions() {
            ctx.register_udaf(function);
        }
        ctx.register_catalog(
            CATALOG,
            Arc::new(WeirCatalog {
                public: Arc::clone(&self.tables),
                pg_catalog,
            }),
        );
        if dialect == Dialect::Postgres {
            self.pg_catalog.install(&ctx, &self.tables)?;
        }
        Ok(ctx)
    }
}

/// The threads queries run on: apart from ingest's, so a heavy query cannot
/// starve acks, and with [`QUERY_STACK_BYTES`] stacks.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn start() -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("weir-query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_all()
            .build()
            .map(|runtime| Self(Some(runtime)))
            .map_err(|e| Error::Execution(format!("starting the query threads: {e}")))
    }

    fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(runtime) => runtime.spawn(future),
            // Only `drop` takes the runtime out.
            None => tokio::spawn(future),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // The engine may be dropped inside another runtime, where a blocking
        // shutdown would panic; queries still running are cancelled.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query task that is aborted when its caller stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<Result<T>>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(if e.is_panic() {
                    contained_panic()
                } else {
                    Error::Execution("the query was cancelled".to_string())
                })
            })
        })
    }
}

/// What a query whose task panicked answers: the panic stays in its task.
fn contained_panic() -> Error {
    Error::Execution(
        "the query failed with an internal error (a panic in the query engine); it was contained"
            .to_string(),
    )
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
struct WeirCatalog {
    public: Arc<WeirSchema>,
    /// In Postgres sessions.
    pg_catalog: Option<Arc<dyn SchemaProvider>>,
}

impl CatalogProvider for WeirCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![SCHEMA.to_string()];
        if self.pg_catalog.is_some() {
            names.push("pg_catalog".to_string());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            SCHEMA => Some(Arc::clone(&self.public) as Arc<dyn SchemaProvider>),
            "pg_catalog" => self.pg_catalog.clone(),
            _ => None,
        }
    }
}

/// Lists the store's tables as they are now, so tables created by writes
/// appear without any registration step.
#[derive(Clone)]
pub(crate) struct WeirSchema {
    store: Store,
    system_tables: Vec<Arc<dyn SystemTable>>,
}

impl std::fmt::Debug for WeirSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeirSchema").finish_non_exhaustive()
    }
}

#[async_trait]
impl SchemaProvider for WeirSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.store.table_names();
        for def in self.store.rollups() {
            if !names.contains(&def.name) {
                names.push(def.name.clone());
            }
        }
        names.extend(self.system_tables.iter().map(|t| t.name().to_string()));
        names
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if let Some(system) = self.system_tables.iter().find(|t| t.name() == name) {
            let table = datafusion::datasource::MemTable::try_new(
                system.schema(),
                vec![vec![system.rows()]],
            )?;
            return Ok(Some(Arc::new(table)));
        }
        let snapshot = self
            .store
            .snapshot(name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if let Some(def) = self.store.rollup(name) {
            // A rollup with no rows yet is an empty table, not a missing one.
            let snapshot = snapshot.unwrap_or_else(|| self.store.empty_rollup_snapshot(&def));
            return crate::rollup::rollup_view(&def, snapshot).map(Some);
        }
        Ok(snapshot.map(|s| Arc::new(WeirTable::new(s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.system_tables.iter().any(|t| t.name() == name)
            || self.store.table_schema(name).is_some()
            || self.store.rollup(name).is_some()
    }
}
