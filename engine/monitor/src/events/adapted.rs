//! Events from an adapter's rows. `POST /api/v1/events/{source}` hands a
//! raw body — a Datadog-style webhook, a Nagios check result, an
//! Alertmanager webhook — to the adapter plugin of `[sources.NAME]`, and
//! each row the adapter makes becomes one event, as if it had been posted
//! to `/api/v1/events`:
//!
//! | event | from the row |
//! |---|---|
//! | `monitor` | tag or string `monitor`, else `alertname`, else `service_name` |
//! | `status` | `status`: `healthy` or `unhealthy` |
//! | `since` | the row's time |
//! | `priority` | `priority`, when it is `high` or `low` |
//! | `message` | `message`, else `text` |
//! | `title` | `title` (as text: a `$` in it is not a placeholder) |
//! | `channel`, `ticket-queue` | tags `channel`, `ticket_queue` |
//! | `context` | every other tag with a value |
//!
//! A row without a monitor or a status is the request's error (nothing of
//! it is applied), named by its table and row.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use weir_model::{ColumnType, TableBatch};

use super::EventBody;
use crate::{Result, config_error};

const MONITOR_FROM: [&str; 3] = ["monitor", "alertname", "service_name"];
/// Columns that are the event's own, not its context.
const OWN: [&str; 9] = [
    "monitor",
    "alertname",
    "status",
    "priority",
    "message",
    "text",
    "title",
    "channel",
    "ticket_queue",
];

fn text_column(batch: &arrow::record_batch::RecordBatch, name: &str) -> Option<StringArray> {
    super::text_values(batch.column_by_name(name)?)
}

fn value(column: &Option<StringArray>, row: usize) -> Option<String> {
    column
        .as_ref()
        .filter(|c| c.is_valid(row))
        .map(|c| c.value(row).to_string())
        .filter(|v| !v.is_empty())
}

/// The events of an adapter's batches, in row order.
pub fn events_from_batches(batches: &[TableBatch]) -> Result<Vec<EventBody>> {
    let mut events = Vec::new();
    for table_batch in batches {
        let batch = &table_batch.batch;
        let schema = batch.schema();
        let time = schema
            .fields()
            .iter()
            .position(|f| matches!(f.data_type(), DataType::Timestamp(TimeUnit::Nanosecond, _)))
            .map(|i| {
                batch
                    .column(i)
                    .as_primitive::<TimestampNanosecondType>()
                    .clone()
            });
        let monitors: Vec<Option<StringArray>> =
            MONITOR_FROM.iter().map(|n| text_column(batch, n)).collect();
        let column = |name: &str| text_column(batch, name);
        let (status, priority, message, text, title, channel, ticket_queue) = (
            column("status"),
            column("priority"),
            column("message"),
            column("text"),
            column("title"),
            column("channel"),
            column("ticket_queue"),
        );
        let context_columns: Vec<(String, StringArray)> = schema
            .fields()
            .iter()
            .filter(|f| {
                ColumnType::from_data_type(f.data_type()).is_some_and(ColumnType::is_tag)
                    && !OWN.contains(&f.name().as_str())
            })
            .filter_map(|f| Some((f.name().clone(), text_column(batch, f.name())?)))
            .collect();
        for row in 0..batch.num_rows() {
            let what = format!("{} row {}", table_batch.table, row + 1);
            let monitor = monitors.iter().find_map(|c| value(c, row)).ok_or_else(|| {
                config_error(
                    &what,
                    "no monitor: the adapter's row needs a monitor, alertname or service_name",
                )
            })?;
            let status = value(&status, row)
                .ok_or_else(|| config_error(&what, "no status (healthy or unhealthy)"))?;
            let since = time.as_ref().filter(|t| t.is_valid(row)).map(|t| {
                chrono::DateTime::from_timestamp_nanos(t.value(row))
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            });
            let context: BTreeMap<String, String> = context_columns
                .iter()
                .filter(|(_, c)| c.is_valid(row))
                .map(|(name, c)| (name.clone(), c.value(row).to_string()))
                .collect();
            events.push(EventBody {
                monitor,
                status,
                since,
                message: value(&message, row)
                    .or_else(|| value(&text, row))
                    .unwrap_or_default(),
                context,
                priority: value(&priority, row).filter(|p| p == "high" || p == "low"),
                channel: value(&channel, row),
                ticket_queue: value(&ticket_queue, row),
                title: value(&title, row).map(|t| t.replace('$', "$$")),
                ..EventBody::default()
            });
        }
    }
    Ok(events)
}
