//! Dynamic pre-filtering: the pipeline of table `weir_events`
//! (`[[pipelines.weir_events.stages]]`) runs on every request's events
//! after their checks and before the state machine, so the same filter and
//! enricher plugins that shape stored rows can drop an event or change its
//! priority and labels — lower `high` to `low` for a service in testing,
//! say, from a lookup table in the plugin's config.
//!
//! What the plugins see, one row per event: the event's time (its `since`),
//! tags `monitor`, `status`, `priority` and one per label of its context
//! (with `channel` and `ticket-queue` when given), fields `message`,
//! `title` and `event_index`. A context label named `monitor`, `status`,
//! `priority`, `message`, `title` or `event_index` is not shown (the event's
//! own value is) and is kept as it was.
//!
//! What Weir takes back: which events are left (a filter's drops are
//! recorded as `dropped`, reason `filtered`), their `priority` (`high` or
//! `low`; anything else fails the request), and every other tag as a
//! label — added, changed or, where a stage set it to null, kept. `monitor`,
//! `status`, `message` and `title` are the event's own and do not change.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, UInt64Type};
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_pipeline::WritePath;

use super::CheckedEvent;
use crate::rule::{ALERTNAME, Priority};
use crate::{Error, Result};

/// The table whose pipeline runs on events.
pub const EVENTS_PIPELINE: &str = crate::tables::EVENTS;

const INDEX: &str = "event_index";
/// Columns the event itself fills; labels of these names are not shown.
const OWN: [&str; 6] = ["monitor", "status", "priority", "message", "title", INDEX];

/// Runs `events` through the `weir_events` pipeline, if one is configured;
/// changes them in place and returns which were kept.
pub async fn run(path: &WritePath, events: &mut [CheckedEvent], now_ns: i64) -> Result<Vec<bool>> {
    if events.is_empty() || !path.has_pipeline(EVENTS_PIPELINE) {
        return Ok(vec![true; events.len()]);
    }
    let batch = to_batch(path, events)?;
    let out = path.run_pipelines(vec![batch], now_ns).await?;
    apply(events, &out)
}

fn to_batch(path: &WritePath, events: &[CheckedEvent]) -> Result<TableBatch> {
    let mut builder = WriteBatchBuilder::for_system_tables(weir_pipeline::now_ns());
    let time_column = path.store().time_column_for(EVENTS_PIPELINE);
    let table = builder.table(EVENTS_PIPELINE, &time_column)?;
    for (i, event) in events.iter().enumerate() {
        // Rows are numbered from 1 in errors.
        let row = i + 1;
        builder.begin_point(table, row, event.since_ns)?;
        let mut set = |name: &str, value: Value<'_>| -> Result<()> {
            let c = builder.column(table, name, value.column_type(), row)?;
            builder.set(table, c, row, value)?;
            Ok(())
        };
        set("monitor", Value::Tag(&event.monitor))?;
        set("status", Value::Tag(event.status.as_str()))?;
        set("priority", Value::Tag(event.priority.as_str()))?;
        set("message", Value::String(&event.message))?;
        set("title", Value::String(&event.title))?;
        set(INDEX, Value::U64(i as u64))?;
        for (name, value) in &event.labels {
            if name != ALERTNAME && !OWN.contains(&name.as_str()) {
                set(name, Value::Tag(value))?;
            }
        }
    }
    let mut batches = builder.finish()?;
    batches
        .pop()
        .ok_or_else(|| Error::Internal("no batch built for the events pipeline".into()))
}

fn pipeline_error(message: String) -> Error {
    Error::Write(weir_pipeline::Error::Rejected {
        pipeline: format!("table:{EVENTS_PIPELINE}"),
        stage: "(its output)".into(),
        message,
    })
}

/// A column as strings, whatever string-like type a stage left it.
fn strings(column: &dyn Array) -> Result<arrow::array::StringArray> {
    super::text_values(column)
        .ok_or_else(|| pipeline_error(format!("a {} column is not text", column.data_type())))
}

fn apply(events: &mut [CheckedEvent], out: &[TableBatch]) -> Result<Vec<bool>> {
    let mut kept = vec![false; events.len()];
    let mut last: Option<u64> = None;
    for table_batch in out {
        let batch = &table_batch.batch;
        let schema = batch.schema();
        let index = batch
            .column_by_name(INDEX)
            .filter(|c| c.data_type() == &DataType::UInt64 && c.null_count() == 0)
            .ok_or_else(|| pipeline_error(format!("{INDEX} is gone or changed")))?
            .as_primitive::<UInt64Type>()
            .clone();
        let priority = match batch.column_by_name("priority") {
            Some(c) => Some(strings(c)?),
            None => None,
        };
        let tags: Vec<(String, arrow::array::StringArray)> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| {
                ColumnType::from_data_type(f.data_type()).is_some_and(ColumnType::is_tag)
                    && !OWN.contains(&f.name().as_str())
            })
            .map(|(f, c)| {
                super::check_label_name(&format!("{EVENTS_PIPELINE} pipeline: label"), f.name())
                    .map_err(|e| pipeline_error(e.to_string()))?;
                Ok((f.name().clone(), strings(c)?))
            })
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let i = index.value(row);
            // Filters keep rows in order and enrichers keep them all: an
            // index out of order or range is a stage that rewrote it.
            if last.is_some_and(|l| i <= l) || i as usize >= events.len() {
                return Err(pipeline_error(format!(
                    "{INDEX} {i} is out of order or range"
                )));
            }
            last = Some(i);
            let event = &mut events[i as usize];
            kept[i as usize] = true;
            if let Some(priority) = &priority
                && priority.is_valid(row)
            {
                event.priority = match priority.value(row) {
                    "high" => Priority::High,
                    "low" => Priority::Low,
                    other => {
                        return Err(pipeline_error(format!(
                            "event {i}: priority {other:?} is not high or low"
                        )));
                    }
                };
            }
            let mut labels: BTreeMap<String, String> = std::mem::take(&mut event.labels);
            for (name, values) in &tags {
                if values.is_valid(row) {
                    let value = values.value(row);
                    if value.len() > super::MAX_VALUE_BYTES {
                        return Err(pipeline_error(format!(
                            "event {i}: label {name} is longer than {} bytes",
                            super::MAX_VALUE_BYTES
                        )));
                    }
                    labels.insert(name.clone(), value.to_string());
                }
            }
            if labels.len() > super::MAX_CONTEXT_ENTRIES + 3 {
                return Err(pipeline_error(format!(
                    "event {i}: more than {} labels",
                    super::MAX_CONTEXT_ENTRIES
                )));
            }
            event.labels = labels;
        }
    }
    Ok(kept)
}
