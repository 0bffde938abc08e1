//! OTLP traces: one row of [`SPANS_TABLE`] per span and one of
//! [`SPAN_EVENTS_TABLE`] per span event (the mapping is in the
//! [module docs](super)).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use weir_model::{Value, WriteLimits};

use super::logs::optional_id;
use super::{Field, Rows, Tag, attribute_tags, scope_tags, time_ns};
use crate::points::PointError;
use crate::{Decoded, Result, Tables};

/// The table spans land in.
pub const SPANS_TABLE: &str = "otel_spans";
/// The table span events land in.
pub const SPAN_EVENTS_TABLE: &str = "otel_span_events";

/// Decodes an `ExportTraceServiceRequest`. Spans are numbered from 0
/// across the request in [`Rejected`](crate::Rejected); a span is written
/// with its events or not at all.
pub fn decode(
    request: &ExportTraceServiceRequest,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Decoded> {
    let mut rows = Rows::new(now_ns, limits, tables);
    let mut at = 0;
    for resource_spans in &request.resource_spans {
        let mut resource = Vec::new();
        if let Some(r) = &resource_spans.resource {
            attribute_tags(&r.attributes, &mut resource);
        }
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_tags(scope_spans.scope.as_ref());
            for span in &scope_spans.spans {
                rows.point(at, |rows| write_span(rows, &resource, &scope, span, at))?;
                at += 1;
            }
        }
    }
    rows.finish()
}

fn write_span(
    rows: &mut Rows<'_>,
    resource: &[Tag<'_>],
    scope: &[Tag<'_>],
    span: &Span,
    at: usize,
) -> Result<(), PointError> {
    let trace_id = required_id(&span.trace_id, 16, "trace_id")?;
    let span_id = required_id(&span.span_id, 8, "span_id")?;
    let parent = optional_id(&span.parent_span_id, 8, "parent_span_id")?;
    let start = time_ns(span.start_time_unix_nano, "start_time_unix_nano")?;
    let end = time_ns(span.end_time_unix_nano, "end_time_unix_nano")?;

    let mut fields: Vec<Field<'_>> = Vec::with_capacity(12);
    fields.push(("trace_id", Value::String(&trace_id)));
    fields.push(("span_id", Value::String(&span_id)));
    if let Some(parent) = &parent {
        fields.push(("parent_span_id", Value::String(parent)));
    }
    fields.push(("name", Value::Tag(&span.name)));
    fields.push(("kind", Value::Tag(kind(span.kind))));
    let status = span.status.as_ref();
    fields.push((
        "status_code",
        Value::Tag(status_code(status.map_or(0, |s| s.code))),
    ));
    if let Some(message) = status.map(|s| s.message.as_str()).filter(|m| !m.is_empty()) {
        fields.push(("status_message", Value::String(message)));
    }
    if !span.trace_state.is_empty() {
        fields.push(("trace_state", Value::String(&span.trace_state)));
    }
    if end != 0 {
        fields.push(("end_time_unix_nano", Value::I64(end)));
        if start != 0 && end >= start {
            fields.push(("duration_ns", Value::I64(end - start)));
        }
    }
    fields.push(("links", Value::I64(span.links.len() as i64)));
    let mut attributes = Vec::new();
    attribute_tags(&span.attributes, &mut attributes);
    let mut prepared = vec![rows.prepare(
        SPANS_TABLE,
        start,
        &[resource, scope, &attributes[..]],
        &fields,
        at,
    )?];

    let event_attributes: Vec<Vec<Tag<'_>>> = span
        .events
        .iter()
        .map(|event| {
            let mut tags = Vec::new();
            attribute_tags(&event.attributes, &mut tags);
            tags
        })
        .collect();
    for (event, attributes) in span.events.iter().zip(&event_attributes) {
        let time = time_ns(event.time_unix_nano, "an event's time_unix_nano")?;
        let fields = [
            ("trace_id", Value::String(&trace_id)),
            ("span_id", Value::String(&span_id)),
            ("name", Value::Tag(&event.name)),
        ];
        prepared.push(rows.prepare(
            SPAN_EVENTS_TABLE,
            time,
            &[resource, scope, &attributes[..]],
            &fields,
            at,
        )?);
    }
    rows.commit(&prepared, at)
}

/// An id a span must have.
fn required_id(bytes: &[u8], len: usize, what: &str) -> Result<String, PointError> {
    optional_id(bytes, len, what)?
        .ok_or_else(|| PointError::Dropped(format!("the span has no {what} (or one of zeros)")))
}

fn kind(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn status_code(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}
