//! [`QueryEngine`]: runs one SQL query in a fresh, bounded session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use tracing::debug;
use weir_storage::Store;
use weir_storage::metrics::{Counter, Exposition, Histogram};

use crate::{Error, Result, WeirTable};

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may use for sorts, joins and aggregations.
    pub memory_limit: usize,
    pub timeout: Duration,
    /// Parallelism of one query; 0 means one per core.
    pub target_partitions: usize,
}

#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub queries: Counter,
    pub failed: Counter,
    pub seconds: Histogram,
}

impl QueryMetrics {
    pub fn render(&self, out: &mut Exposition<'_>) {
        out.counter("weir_queries_total", "SQL queries run.", &self.queries);
        out.counter(
            "weir_query_errors_total",
            "SQL queries that failed.",
            &self.failed,
        );
        out.histogram("weir_query_seconds", "SQL query latency.", &self.seconds);
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A read-only table computed when a query asks for it — the engine's own
/// state (plugin counters, say) exposed to SQL next to the stored tables.
pub trait SystemTable: Send + Sync {
    fn name(&self) -> &str;
    fn schema(&self) -> SchemaRef;
    /// The table's rows as of now.
    fn rows(&self) -> RecordBatch;
}

pub struct QueryEngine {
    store: Store,
    config: QueryConfig,
    metrics: QueryMetrics,
    system_tables: Vec<Arc<dyn SystemTable>>,
}

impl QueryEngine {
    pub fn new(store: Store, config: QueryConfig) -> Self {
        Self {
            store,
            config,
            metrics: QueryMetrics::default(),
            system_tables: Vec::new(),
        }
    }

    /// Adds a system table; its name shadows any stored table of the same name.
    pub fn with_system_table(mut self, table: Arc<dyn SystemTable>) -> Self {
        self.system_tables.push(table);
        self
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    /// Runs `sql` to completion.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        let started = Instant::now();
        self.metrics.queries.inc();
        let result = match tokio::time::timeout(self.config.timeout, self.run(sql)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                timeout: self.config.timeout,
            }),
        };
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

    async fn run(&self, sql: &str) -> Result<QueryResult> {
        let limit = self.config.memory_limit;
        let df_err = |e: DataFusionError| Error::from_datafusion(e, limit);
        let ctx = self.session().map_err(df_err)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = ctx.sql_with_options(sql, options).await.map_err(df_err)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(df_err)?;
        Ok(QueryResult { schema, batches })
    }

    fn session(&self) -> datafusion::error::Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.memory_limit, 1.0)
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("weir", "public");
        if self.config.target_partitions > 0 {
            config = config.with_target_partitions(self.config.target_partitions);
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            "weir",
            Arc::new(WeirCatalog {
                schema: Arc::new(WeirSchema {
                    store: self.store.clone(),
                    system_tables: self.system_tables.clone(),
                }),
            }),
        );
        Ok(ctx)
    }
}

#[derive(Debug)]
struct WeirCatalog {
    schema: Arc<WeirSchema>,
}

impl CatalogProvider for WeirCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec!["public".to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == "public").then(|| Arc::clone(&self.schema) as Arc<dyn SchemaProvider>)
    }
}

/// Lists the store's tables as they are now, so tables created by writes
/// appear without any registration step.
struct WeirSchema {
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
        Ok(snapshot.map(|s| Arc::new(WeirTable::new(s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.system_tables.iter().any(|t| t.name() == name)
            || self.store.table_schema(name).is_some()
    }
}
