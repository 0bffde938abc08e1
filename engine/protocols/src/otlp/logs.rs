//! OTLP logs: one row of [`LOGS_TABLE`] per log record (the mapping is in
//! the [module docs](super)).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use weir_model::{Value, WriteLimits};

use super::{Field, Rows, Tag, attribute_tags, hex, scope_tags, text, time_ns};
use crate::points::PointError;
use crate::{Decoded, Result, Tables};

/// The table log records land in.
pub const LOGS_TABLE: &str = "otel_logs";

/// Decodes an `ExportLogsServiceRequest`. Log records are numbered from 0
/// across the request in [`Rejected`](crate::Rejected).
pub fn decode(
    request: &ExportLogsServiceRequest,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Decoded> {
    let mut rows = Rows::new(now_ns, limits, tables);
    let mut at = 0;
    for resource_logs in &request.resource_logs {
        let mut resource = Vec::new();
        if let Some(r) = &resource_logs.resource {
            attribute_tags(&r.attributes, &mut resource);
        }
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_tags(scope_logs.scope.as_ref());
            for record in &scope_logs.log_records {
                rows.point(at, |rows| log_record(rows, &resource, &scope, record, at))?;
                at += 1;
            }
        }
    }
    rows.finish()
}

fn log_record(
    rows: &mut Rows<'_>,
    resource: &[Tag<'_>],
    scope: &[Tag<'_>],
    record: &LogRecord,
    at: usize,
) -> Result<(), PointError> {
    let trace_id = optional_id(&record.trace_id, 16, "trace_id")?;
    let span_id = optional_id(&record.span_id, 8, "span_id")?;
    let observed = time_ns(record.observed_time_unix_nano, "observed_time_unix_nano")?;
    let time = match time_ns(record.time_unix_nano, "time_unix_nano")? {
        // "If time_unix_nano is not set, use observed_time_unix_nano."
        0 => observed,
        t => t,
    };
    // A body is text of any length (a field, not a tag): no cut-off.
    let body = record.body.as_ref().and_then(|b| text(b, usize::MAX));

    let mut fields: Vec<Field<'_>> = Vec::with_capacity(8);
    if !record.severity_text.is_empty() {
        fields.push(("severity_text", Value::Tag(&record.severity_text)));
    }
    fields.push(("severity_number", Value::I64(record.severity_number.into())));
    if let Some(body) = &body {
        fields.push(("body", Value::String(body)));
    }
    if let Some(id) = &trace_id {
        fields.push(("trace_id", Value::String(id)));
    }
    if let Some(id) = &span_id {
        fields.push(("span_id", Value::String(id)));
    }
    if observed != 0 {
        fields.push(("observed_time_unix_nano", Value::I64(observed)));
    }
    fields.push(("flags", Value::I64(record.flags.into())));
    if !record.event_name.is_empty() {
        fields.push(("event_name", Value::Tag(&record.event_name)));
    }
    let mut attributes = Vec::new();
    attribute_tags(&record.attributes, &mut attributes);
    let row = rows.prepare(
        LOGS_TABLE,
        time,
        &[resource, scope, &attributes[..]],
        &fields,
        at,
    )?;
    rows.commit(&[row], at)
}

/// An id that may be absent (empty, or all zeros: OTLP's "invalid id"),
/// in hex; any other length than `len` bytes drops the record.
pub(crate) fn optional_id(
    bytes: &[u8],
    len: usize,
    what: &str,
) -> Result<Option<String>, PointError> {
    if bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(PointError::Dropped(format!(
            "{what} is {} bytes; OTLP ids of this kind are {len}",
            bytes.len()
        )));
    }
    Ok(Some(hex(bytes)))
}
