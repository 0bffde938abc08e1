//! Probe and heartbeat outcomes → `service_metrics` rows, written through
//! the shared write path in small batches: 10,000 probes a minute are 170
//! rows a second, which one write (one WAL group commit) a few times a
//! second carries easily.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, warn};
use weir_metrics::Counter;
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_pipeline::WritePath;

use crate::probe::ProbeOutcome;

/// One row to write.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub table: String,
    pub service: String,
    pub labels: BTreeMap<String, String>,
    pub outcome: ProbeOutcome,
}

/// Rows waiting to be written at most this long.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
const MAX_ROWS_PER_WRITE: usize = 5_000;

#[derive(Debug, Default)]
pub struct RowMetrics {
    pub written: Counter,
    pub failed: Counter,
}

/// Hands rows to the writer task.
#[derive(Clone)]
pub struct RowWriter {
    tx: mpsc::Sender<CheckRow>,
}

impl RowWriter {
    /// Starts the writer; it writes what it holds and ends once `stop` is
    /// set and every sender is gone.
    pub fn spawn(
        path: WritePath,
        metrics: Arc<RowMetrics>,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_ROWS_PER_WRITE * 2);
        let task = tokio::spawn(write_loop(path, metrics, rx, stop));
        (Self { tx }, task)
    }

    /// Queues a row; waits while the writer is behind.
    pub async fn send(&self, row: CheckRow) {
        if self.tx.send(row).await.is_err() {
            warn!("a check row arrived after shutdown and was not written");
        }
    }
}

async fn write_loop(
    path: WritePath,
    metrics: Arc<RowMetrics>,
    mut rx: mpsc::Receiver<CheckRow>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut pending, MAX_ROWS_PER_WRITE) => n == 0,
            _ = stop.wait_for(|s| *s) => true,
        };
        if !stopping && pending.len() < MAX_ROWS_PER_WRITE {
            // Let a burst of rows (probes due together) share the write.
            tokio::time::sleep(FLUSH_EVERY).await;
            while pending.len() < MAX_ROWS_PER_WRITE {
                match rx.try_recv() {
                    Ok(row) => pending.push(row),
                    Err(_) => break,
                }
            }
        }
        if stopping {
            while let Ok(row) = rx.try_recv() {
                pending.push(row);
            }
        }
        if !pending.is_empty() {
            write(&path, &metrics, std::mem::take(&mut pending)).await;
        }
        if stopping {
            return;
        }
    }
}

async fn write(path: &WritePath, metrics: &RowMetrics, rows: Vec<CheckRow>) {
    let count = rows.len() as u64;
    let now_ns = weir_pipeline::now_ns();
    let written = async {
        let batches = build(path, &rows, now_ns)?;
        let bytes = batches
            .iter()
            .map(|b| b.batch.get_array_memory_size())
            .sum();
        let admission = path.admit(bytes).await?;
        path.write(batches, now_ns, admission).await
    }
    .await;
    match written {
        Ok(_) => {
            metrics.written.inc_by(count);
        }
        Err(e) => {
            metrics.failed.inc_by(count);
            error!(error = %e, rows = count, "could not write probe rows");
        }
    }
}

fn build(
    path: &WritePath,
    rows: &[CheckRow],
    now_ns: i64,
) -> Result<Vec<TableBatch>, weir_pipeline::Error> {
    let mut builder = WriteBatchBuilder::new(now_ns);
    let model = |e: weir_model::Error| weir_pipeline::Error::Internal(e.to_string());
    for (i, row) in rows.iter().enumerate() {
        let time_column = path.store().time_column_for(&row.table);
        let t = builder.table(&row.table, &time_column).map_err(model)?;
        builder
            .begin_point(t, i, row.outcome.started_ns)
            .map_err(model)?;
        let mut set = |name: &str, value: Value<'_>| set_cell(&mut builder, t, i, name, value);
        set("service_name", Value::Tag(&row.service))?;
        for (name, value) in &row.labels {
            set(name, Value::Tag(value))?;
        }
        let status = if row.outcome.healthy {
            "healthy"
        } else {
            "unhealthy"
        };
        set("status", Value::String(status))?;
        if let Some(ms) = row.outcome.response_ms {
            set("response_ms", Value::F64(ms))?;
        }
        if let Some(code) = row.outcome.status_code {
            set("status_code", Value::I64(code))?;
        }
        if let Some(error) = &row.outcome.error {
            set("error", Value::String(error))?;
        }
        if let Some(days) = row.outcome.tls_days_left {
            set("tls_days_left", Value::F64(days))?;
        }
        // Columns a row leaves unset are null; declared all the same, so a
        // table's first rows fix their types.
        for (name, column_type) in [
            ("response_ms", ColumnType::F64),
            ("status_code", ColumnType::I64),
            ("error", ColumnType::String),
        ] {
            builder.column(t, name, column_type, i).map_err(model)?;
        }
    }
    builder.finish().map_err(model)
}

fn set_cell(
    builder: &mut WriteBatchBuilder,
    table: weir_model::TableId,
    row: usize,
    name: &str,
    value: Value<'_>,
) -> Result<(), weir_pipeline::Error> {
    let model = |e: weir_model::Error| weir_pipeline::Error::Internal(e.to_string());
    let c = builder
        .column(table, name, value.column_type(), row)
        .map_err(model)?;
    builder.set(table, c, row, value).map_err(model)
}
