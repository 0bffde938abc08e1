//! Weir's monitoring tables. `weir_alerts` is the alert book as it is now,
//! computed when a query reads it; the others are stored like any table
//! (WAL, buffer, Parquet) and only ever appended to:
//!
//! | table | one row per |
//! |---|---|
//! | `weir_alerts` | alert instance: labels, state, since, last value, last evaluation, fingerprint |
//! | `weir_alert_history` | transition (`pending`, `firing`, `resolved`, `inactive`) |
//! | `weir_notifications` | delivery attempt: receiver, group, its alert count, the first alert, firing or resolved, attempt, HTTP status, error, latency |
//! | `weir_alert_groups` | alert group, computed when read: key, alerts firing and resolved, opened, last activity, next look, notifications sent |
//! | `weir_rule_errors` | failed evaluation of a rule |
//! | `weir_suppressions` | suppression and matcher set, computed when read: id, state, window, the set's matchers, the `service_name` it pins |
//! | `weir_alert_context` | context section sent with a notification: collector, title, `ok`/`failed`/`timed_out`, text, time taken |
//! | `weir_suppressed` | notification a suppression withheld: suppression id, alert, transition |
//! | `weir_events` | event received: monitor, status, context, fingerprint, source, and its outcome (`passed`, `held`, `dropped` with a `drop_reason`) |

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_pipeline::WritePath;
use weir_query::SystemTable;

use crate::alerts::{AlertBook, Transition};
use crate::context::AlertContext;
use crate::events::{CheckedEvent, EventSource, Outcome};
use crate::suppress::{Matcher, Suppression, SuppressionBook};

pub const ALERTS: &str = "weir_alerts";
pub const ALERT_HISTORY: &str = "weir_alert_history";
pub const NOTIFICATIONS: &str = "weir_notifications";
pub const RULE_ERRORS: &str = "weir_rule_errors";
pub const SUPPRESSED: &str = "weir_suppressed";
pub const ALERT_CONTEXT: &str = "weir_alert_context";
pub const SUPPRESSIONS: &str = "weir_suppressions";
pub const EVENTS: &str = "weir_events";
pub const ALERT_GROUPS: &str = "weir_alert_groups";

/// `weir_alerts`.
pub struct AlertsTable {
    book: AlertBook,
    schema: SchemaRef,
}

impl AlertsTable {
    pub fn new(book: AlertBook) -> Self {
        let text = |name| Field::new(name, DataType::Utf8, false);
        let time = |name, nullable| Field::new(name, weir_model::time_data_type(), nullable);
        let schema = Arc::new(Schema::new(vec![
            text("fingerprint"),
            text("rule"),
            text("priority"),
            text("state"),
            text("labels"),
            time("since", false),
            time("active_since", false),
            Field::new("last_value", DataType::Float64, true),
            time("last_evaluation", false),
            Field::new("consecutive", DataType::UInt64, false),
            text("summary"),
            text("receivers"),
        ]));
        Self { book, schema }
    }
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(
        TimestampNanosecondArray::from_iter_values(values).with_timezone(weir_model::TIME_ZONE),
    )
}

impl SystemTable for AlertsTable {
    fn name(&self) -> &str {
        ALERTS
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> RecordBatch {
        let alerts = self.book.alerts();
        let text = |f: &dyn Fn(&crate::AlertSnapshot) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(alerts.iter().map(f)))
        };
        let columns = vec![
            text(&|a| a.fingerprint.clone()),
            text(&|a| a.rule.clone()),
            text(&|a| a.priority.to_string()),
            text(&|a| a.state.as_str().to_string()),
            text(&|a| serde_json::to_string(&a.labels).unwrap_or_default()),
            timestamps(alerts.iter().map(|a| a.since_ns)),
            timestamps(alerts.iter().map(|a| a.active_since_ns)),
            Arc::new(Float64Array::from_iter(alerts.iter().map(|a| a.last_value))),
            timestamps(alerts.iter().map(|a| a.last_evaluation_ns)),
            Arc::new(UInt64Array::from_iter_values(
                alerts.iter().map(|a| a.consecutive as u64),
            )),
            text(&|a| a.summary.clone()),
            text(&|a| a.receivers.join(",")),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(&self.schema)))
    }
}

/// `weir_alert_groups`: one row per alert group still open or owing.
pub struct GroupsTable {
    book: AlertBook,
    schema: SchemaRef,
}

impl GroupsTable {
    pub fn new(book: AlertBook) -> Self {
        let text = |name| Field::new(name, DataType::Utf8, false);
        let time = |name, nullable| Field::new(name, weir_model::time_data_type(), nullable);
        let count = |name| Field::new(name, DataType::UInt64, false);
        let schema = Arc::new(Schema::new(vec![
            text("id"),
            text("key"),
            Field::new("joinable", DataType::Boolean, false),
            count("alerts"),
            count("firing"),
            time("opened", false),
            time("last_activity", false),
            time("next_notification", true),
            count("notifications"),
            text("receivers"),
        ]));
        Self { book, schema }
    }
}

impl SystemTable for GroupsTable {
    fn name(&self) -> &str {
        ALERT_GROUPS
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> RecordBatch {
        use crate::alerts::AlertState;
        let groups = self.book.groups();
        let text = |f: &dyn Fn(&crate::groups::Group) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(groups.iter().map(f)))
        };
        let count = |f: &dyn Fn(&crate::groups::Group) -> usize| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(
                groups.iter().map(|g| f(g) as u64),
            ))
        };
        let columns = vec![
            text(&|g| g.id.clone()),
            text(&|g| serde_json::to_string(&g.key).unwrap_or_default()),
            Arc::new(arrow::array::BooleanArray::from_iter(
                groups.iter().map(|g| Some(g.joinable)),
            )),
            count(&|g| g.members.len()),
            count(&|g| {
                g.members
                    .values()
                    .filter(|m| m.state == AlertState::Firing)
                    .count()
            }),
            timestamps(groups.iter().map(|g| g.opened_ns)),
            timestamps(groups.iter().map(|g| g.last_activity_ns)),
            Arc::new(
                TimestampNanosecondArray::from_iter(
                    groups
                        .iter()
                        .map(|g| g.flushes.values().filter_map(|f| f.due_ns).min()),
                )
                .with_timezone(weir_model::TIME_ZONE),
            ),
            count(&|g| g.flushes.values().map(|f| f.sent as usize).sum()),
            text(&|g| g.flushes.keys().cloned().collect::<Vec<_>>().join(",")),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(&self.schema)))
    }
}

/// A suppression, the index of one of its matcher sets, and the set.
type SuppressionSet<'a> = (&'a Suppression, usize, &'a Vec<Matcher>);

/// `weir_suppressions`: one row per suppression and matcher set. A set
/// that pins `service_name` (an equality matcher) names it in
/// `service_name`, so raw rows can be joined to maintenance windows (see
/// the README's uptime-without-maintenance query).
pub struct SuppressionsTable {
    book: SuppressionBook,
    schema: SchemaRef,
}

impl SuppressionsTable {
    pub fn new(book: SuppressionBook) -> Self {
        let text = |name, nullable| Field::new(name, DataType::Utf8, nullable);
        let time = |name| Field::new(name, weir_model::time_data_type(), false);
        let schema = Arc::new(Schema::new(vec![
            text("id", false),
            text("state", false),
            time("starts_at"),
            time("ends_at"),
            Field::new("set_index", DataType::UInt64, false),
            text("matchers", false),
            text("service_name", true),
            text("created_by", false),
            text("comment", false),
        ]));
        Self { book, schema }
    }
}

impl SystemTable for SuppressionsTable {
    fn name(&self) -> &str {
        SUPPRESSIONS
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> RecordBatch {
        let now = weir_pipeline::now_ns();
        let suppressions = self.book.list();
        let sets: Vec<SuppressionSet<'_>> = suppressions
            .iter()
            .flat_map(|s| {
                s.targets
                    .iter()
                    .enumerate()
                    .map(move |(i, set)| (s.as_ref(), i, set))
            })
            .collect();
        let text = |f: &dyn Fn(&SuppressionSet<'_>) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(sets.iter().map(f)))
        };
        let columns = vec![
            text(&|(s, _, _)| s.id.clone()),
            text(&|(s, _, _)| s.state(now).as_str().to_string()),
            timestamps(sets.iter().map(|(s, _, _)| s.starts_at_ns)),
            timestamps(sets.iter().map(|(s, _, _)| s.ends_at_ns)),
            Arc::new(UInt64Array::from_iter_values(
                sets.iter().map(|(_, i, _)| *i as u64),
            )),
            text(&|(_, _, set)| {
                set.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            Arc::new(StringArray::from_iter(sets.iter().map(|(_, _, set)| {
                set.iter()
                    .find(|m| m.name == "service_name" && m.is_pinning())
                    .map(|m| m.value.clone())
            }))),
            text(&|(s, _, _)| s.created_by.clone()),
            text(&|(s, _, _)| s.comment.clone()),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(&self.schema)))
    }
}

/// Builds rows of one system table, one `set` at a time.
struct Rows {
    builder: WriteBatchBuilder,
    table: weir_model::TableId,
    row: usize,
}

impl Rows {
    fn new(path: &WritePath, table: &str) -> weir_model::Result<Self> {
        let mut builder = WriteBatchBuilder::for_system_tables(weir_pipeline::now_ns());
        let time_column = path.store().time_column_for(table);
        let table = builder.table(table, &time_column)?;
        Ok(Self {
            builder,
            table,
            row: 0,
        })
    }

    fn begin(&mut self, time_ns: i64) -> weir_model::Result<()> {
        self.row += 1;
        self.builder.begin_point(self.table, self.row, time_ns)
    }

    fn set(&mut self, name: &str, value: Value<'_>) -> weir_model::Result<()> {
        let c = self
            .builder
            .column(self.table, name, value.column_type(), self.row)?;
        self.builder.set(self.table, c, self.row, value)
    }

    /// Declares a column that some rows leave null.
    fn declare(&mut self, name: &str, column_type: ColumnType) -> weir_model::Result<()> {
        self.builder
            .column(self.table, name, column_type, self.row)
            .map(|_| ())
    }

    fn finish(self) -> weir_model::Result<Vec<TableBatch>> {
        self.builder.finish()
    }
}

pub fn history_batches(
    path: &WritePath,
    transitions: &[Transition],
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, ALERT_HISTORY)?;
    for t in transitions {
        rows.begin(t.time_ns)?;
        rows.set("rule", Value::Tag(&t.rule))?;
        rows.set("fingerprint", Value::Tag(&t.fingerprint))?;
        rows.set("priority", Value::Tag(t.priority.as_str()))?;
        rows.set("from_state", Value::String(t.from.as_str()))?;
        rows.set("to_state", Value::String(t.to.as_str()))?;
        rows.set("seq", Value::U64(t.seq))?;
        let labels = serde_json::to_string(&t.labels).unwrap_or_default();
        rows.set("labels", Value::String(&labels))?;
        rows.set("summary", Value::String(&t.summary))?;
        rows.declare("value", ColumnType::F64)?;
        if let Some(v) = t.value {
            rows.set("value", Value::F64(v))?;
        }
    }
    rows.finish()
}

/// `weir_suppressed`: one row per transition and suppression that withheld
/// its notifications, so a suppression's effect stays visible.
pub fn suppressed_batches(
    path: &WritePath,
    transitions: &[Transition],
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, SUPPRESSED)?;
    for t in transitions {
        for id in &t.suppressed_by {
            rows.begin(t.time_ns)?;
            rows.set("suppression_id", Value::Tag(id))?;
            rows.set("rule", Value::Tag(&t.rule))?;
            rows.set("fingerprint", Value::Tag(&t.fingerprint))?;
            rows.set("priority", Value::Tag(t.priority.as_str()))?;
            rows.set("transition", Value::String(t.to.as_str()))?;
            let labels = serde_json::to_string(&t.labels).unwrap_or_default();
            rows.set("labels", Value::String(&labels))?;
            rows.set("summary", Value::String(&t.summary))?;
        }
    }
    rows.finish()
}

/// One delivery attempt.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub time_ns: i64,
    pub receiver: String,
    pub receiver_type: &'static str,
    pub group_id: String,
    /// Alerts in the notification.
    pub alerts: u64,
    /// The first alert's (the only one's, unless grouped).
    pub fingerprint: String,
    pub rule: String,
    pub transition: &'static str,
    pub seq: u64,
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: f64,
    /// `delivered`, `retrying` or `failed`.
    pub result: &'static str,
}

pub fn notification_batches(
    path: &WritePath,
    attempts: &[NotificationRow],
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, NOTIFICATIONS)?;
    for a in attempts {
        rows.begin(a.time_ns)?;
        rows.set("receiver", Value::Tag(&a.receiver))?;
        rows.set("receiver_type", Value::Tag(a.receiver_type))?;
        rows.set("rule", Value::Tag(&a.rule))?;
        rows.set("fingerprint", Value::Tag(&a.fingerprint))?;
        rows.set("group_id", Value::Tag(&a.group_id))?;
        rows.set("alerts", Value::U64(a.alerts))?;
        rows.set("transition", Value::String(a.transition))?;
        rows.set("seq", Value::U64(a.seq))?;
        rows.set("attempt", Value::U64(a.attempt as u64))?;
        rows.declare("http_status", ColumnType::I64)?;
        rows.declare("error", ColumnType::String)?;
        if let Some(status) = a.http_status {
            rows.set("http_status", Value::I64(status as i64))?;
        }
        if let Some(error) = &a.error {
            rows.set("error", Value::String(error))?;
        }
        rows.set("latency_ms", Value::F64(a.latency_ms))?;
        rows.set("result", Value::String(a.result))?;
    }
    rows.finish()
}

/// `weir_events`: one row per event received, with what became of it.
pub fn event_batches(
    path: &WritePath,
    source: EventSource,
    events: &[(CheckedEvent, Outcome)],
    now_ns: i64,
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, EVENTS)?;
    for (event, outcome) in events {
        rows.begin(now_ns)?;
        rows.set("monitor", Value::Tag(&event.monitor))?;
        rows.set("status", Value::Tag(event.status.as_str()))?;
        rows.set("outcome", Value::Tag(outcome.as_str()))?;
        rows.set("source", Value::Tag(source.as_str()))?;
        rows.set("priority", Value::Tag(event.priority.as_str()))?;
        let fingerprint = crate::rule::fingerprint(&event.labels);
        rows.set("fingerprint", Value::String(&fingerprint))?;
        rows.declare("drop_reason", ColumnType::String)?;
        if let Some(reason) = outcome.drop_reason() {
            rows.set("drop_reason", Value::String(reason.as_str()))?;
        }
        rows.set("since_ns", Value::I64(event.since_ns))?;
        rows.set("message", Value::String(&event.message))?;
        let labels = serde_json::to_string(&event.labels).unwrap_or_default();
        rows.set("labels", Value::String(&labels))?;
    }
    rows.finish()
}

/// `weir_alert_context`: one row per context section sent with a
/// notification.
pub fn context_batches(
    path: &WritePath,
    receiver: &str,
    group_id: &str,
    alerts: &[crate::AlertSnapshot],
    context: &[AlertContext],
    now_ns: i64,
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, ALERT_CONTEXT)?;
    for collected in context {
        let rule = alerts
            .iter()
            .find(|a| a.fingerprint == collected.fingerprint)
            .map_or("", |a| a.rule.as_str());
        for section in &collected.sections {
            rows.begin(now_ns)?;
            rows.set("receiver", Value::Tag(receiver))?;
            rows.set("group_id", Value::Tag(group_id))?;
            rows.set("rule", Value::Tag(rule))?;
            rows.set("fingerprint", Value::Tag(&collected.fingerprint))?;
            rows.set("collector", Value::Tag(section.collector))?;
            rows.set("title", Value::String(&section.title))?;
            rows.set("status", Value::Tag(section.status.as_str()))?;
            rows.set(
                "elapsed_ms",
                Value::F64(section.elapsed.as_secs_f64() * 1e3),
            )?;
            rows.set("text", Value::String(&section.text))?;
            rows.declare("url", ColumnType::String)?;
            rows.declare("error", ColumnType::String)?;
            if let Some(url) = &section.url {
                rows.set("url", Value::String(url))?;
            }
            if let Some(error) = &section.error {
                rows.set("error", Value::String(error))?;
            }
        }
    }
    rows.finish()
}

pub fn rule_error_batches(
    path: &WritePath,
    rule: &str,
    error: &str,
    time_ns: i64,
) -> weir_model::Result<Vec<TableBatch>> {
    let mut rows = Rows::new(path, RULE_ERRORS)?;
    rows.begin(time_ns)?;
    rows.set("rule", Value::Tag(rule))?;
    rows.set("error", Value::String(error))?;
    rows.finish()
}
