//! [`WeirTable`]: a DataFusion table over one snapshot of a Weir table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use weir_storage::TableSnapshot;

use crate::TimeRange;

#[derive(Debug)]
pub struct WeirTable {
    snapshot: TableSnapshot,
}

impl WeirTable {
    pub fn new(snapshot: TableSnapshot) -> Self {
        Self { snapshot }
    }

    fn buffer_plan(
        &self,
        projection: Option<&Vec<usize>>,
        range: TimeRange,
        partitions: usize,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // Batches outside the queried time range are skipped, as files are:
        // under ingest the buffer holds the newest writes, often not the
        // rows a query asks for.
        let batches: Vec<_> = self
            .snapshot
            .buffered
            .iter()
            .filter(|b| range.overlaps(b.min_time, b.max_time))
            .collect();
        if batches.is_empty() {
            return Ok(None);
        }
        // Spread batches round-robin so aggregation runs on every core.
        let mut parts: Vec<Vec<_>> = vec![Vec::new(); partitions.max(1).min(batches.len())];
        for (i, buffered) in batches.into_iter().enumerate() {
            let n = parts.len();
            parts[i % n].push(buffered.batch.clone());
        }
        let exec = MemorySourceConfig::try_new_exec(
            &parts,
            Arc::clone(&self.snapshot.schema),
            projection.cloned(),
        )?;
        Ok(Some(exec))
    }

    fn parquet_plan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        range: TimeRange,
        limit: Option<usize>,
        partitions: usize,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let files: Vec<_> = self
            .snapshot
            .files
            .iter()
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .collect();
        if files.is_empty() {
            return Ok(None);
        }
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); partitions.max(1).min(files.len())];
        // Largest first onto the lightest group keeps the groups balanced.
        let mut by_size = files;
        by_size.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        let mut loads = vec![0u64; groups.len()];
        for f in by_size {
            let lightest = (0..groups.len()).min_by_key(|&i| loads[i]).unwrap_or(0);
            loads[lightest] += f.bytes;
            // Object store paths are relative to the filesystem root.
            let path = f.path.to_string_lossy();
            groups[lightest].push(PartitionedFile::new(path.trim_start_matches('/'), f.bytes));
        }
        let schema = Arc::clone(&self.snapshot.schema);
        let mut source = ParquetSource::new(Arc::clone(&schema));
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(Some(DataSourceExec::from_data_source(config)))
    }
}

#[async_trait]
impl TableProvider for WeirTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.snapshot.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used for pruning only; DataFusion re-applies every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = state.config().target_partitions();
        let range = TimeRange::from_filters(filters, &self.snapshot.time_column);
        let mut inputs = Vec::new();
        if let Some(plan) =
            self.parquet_plan(state, projection, filters, range, limit, partitions)?
        {
            inputs.push(plan);
        }
        if let Some(plan) = self.buffer_plan(projection, range, partitions)? {
            inputs.push(plan);
        }
        if inputs.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.snapshot.schema.project(p)?),
                None => Arc::clone(&self.snapshot.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}
