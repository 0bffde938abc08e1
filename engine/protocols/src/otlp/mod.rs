//! OpenTelemetry's OTLP: metrics, logs and traces, as the OpenTelemetry
//! SDKs and the Collector export them (`opentelemetry.proto.collector.*.v1`
//! requests, over gRPC or HTTP as protobuf or JSON).
//!
//! # Where things land
//!
//! | OTLP | table | one row per | columns besides the tags |
//! |---|---|---|---|
//! | gauge `m` | `m` | data point | `value` f64 |
//! | sum `m` | `m` | data point | `value` f64, `start_time_unix_nano` i64, `temporality` tag, `monotonic` bool |
//! | histogram `m` | `m` | data point | `count` u64, `sum`, `min`, `max` f64, `start_time_unix_nano`, `temporality` |
//! | | `m_bucket` | bucket | `le` tag, `lower_bound`, `upper_bound` f64, `count` u64, `temporality` |
//! | exponential histogram `m` | `m` | data point | as a histogram, and `scale` i64, `zero_count` u64, `zero_threshold` f64 |
//! | | `m_bucket` | bucket with a count | as a histogram's buckets |
//! | summary `m` | `m` | data point | `count` u64, `sum` f64, `start_time_unix_nano` |
//! | | `m_quantile` | quantile | `quantile`, `value` f64 |
//! | log record | `otel_logs` | record | `severity_text` tag, `severity_number` i64, `body` string, `trace_id`, `span_id` string, `observed_time_unix_nano` i64, `flags` i64, `event_name` tag |
//! | span | `otel_spans` | span | `trace_id`, `span_id`, `parent_span_id` string, `name`, `kind`, `status_code` tag, `status_message`, `trace_state` string, `end_time_unix_nano`, `duration_ns`, `links` i64 |
//! | span event | `otel_span_events` | event | `trace_id`, `span_id` string, `name` tag |
//!
//! - **Time** is the point's `time_unix_nano` (a span's start); 0 means
//!   the server's time (a log record's observed time first).
//! - **Tags** are the resource's attributes, then the scope's (its name
//!   and version as `otel_scope_name` and `otel_scope_version`), then the
//!   point's; a later one wins a key they share. Keys become column names
//!   with every character but `[A-Za-z0-9_]` replaced by `_`
//!   (`service.name` → `service_name`), as Prometheus translates them; so
//!   do metric names. An attribute whose key is one of the row's own
//!   columns (`value`, `count`, `body`, …) is stored as `attr_<key>`.
//!   Values are text: strings as they are, numbers and booleans printed,
//!   bytes in hex, arrays and maps as JSON.
//! - **Values**: integer points are stored as `f64`, so a metric keeps one
//!   type whichever the SDK sends. NaN and infinite values are NULL.
//!   Points flagged *no recorded value* are skipped. Exemplars are not
//!   stored. Bucket counts are each bucket's own (not cumulative); the
//!   exponential histogram's bucket *i* at scale *s* spans
//!   `(2^(i·2^-s), 2^((i+1)·2^-s)]`, and its empty buckets are not stored.
//! - **Ids** are lowercase hex strings: a log's `trace_id` joins a span's.
//!
//! A data point, log record or span that breaks a rule (a bad id, a
//! malformed histogram, a value or name Weir refuses, a type conflict) is
//! dropped — with its buckets or events: a point is written whole or not
//! at all — and counted in [`Rejected`](crate::Rejected), which the front
//! end reports as OTLP's `partial_success`. What concerns the whole request
//! (a body that does not decode, the write limits) fails it.

use std::borrow::Cow;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use weir_model::{
    ColumnId, ColumnType, MAX_TAG_VALUE_BYTES, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, TableId, Value,
    WriteBatchBuilder, WriteLimits,
};

use crate::points::{PointError, RequestTables};
use crate::{Decoded, Error, Rejected, Result, Tables};

pub mod logs;
pub mod metrics;
pub mod traces;

pub use opentelemetry_proto::tonic::collector;

/// How an OTLP/HTTP body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if OTLP has it.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes an OTLP/HTTP request body. JSON is OTLP's JSON mapping: field
/// names in lowerCamelCase, ids in hex, 64-bit integers as strings or
/// numbers.
pub fn decode_body<M>(body: &[u8], encoding: Encoding) -> Result<M>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => M::decode(body)
            .map_err(|e| Error::Malformed(format!("not an OTLP protobuf request ({e})"))),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| Error::Malformed(format!("not an OTLP JSON request ({e})"))),
    }
}

/// A tag of a row: a column name made from an attribute key, and the
/// attribute's value as text.
pub(crate) type Tag<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A column a mapping writes itself, and its value.
pub(crate) type Field<'a> = (&'static str, Value<'a>);

/// `name` as a column or table name: every character but `[A-Za-z0-9_]`
/// becomes `_`, and a leading digit gets a `_` before it.
pub fn sanitize(name: &str) -> Cow<'_, str> {
    let clean = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let leading_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if name.chars().all(clean) && !leading_digit {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if leading_digit {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if clean(c) { c } else { '_' }));
    Cow::Owned(out)
}

/// Appends `attributes` as tags; attributes without a value are skipped.
pub(crate) fn attribute_tags<'a>(attributes: &'a [KeyValue], out: &mut Vec<Tag<'a>>) {
    for kv in attributes {
        if let Some(value) = kv.value.as_ref().and_then(|v| text(v, MAX_TAG_VALUE_BYTES)) {
            out.push((sanitize(&kv.key), value));
        }
    }
}

/// A scope's tags: its name, version and attributes.
pub(crate) fn scope_tags(scope: Option<&InstrumentationScope>) -> Vec<Tag<'_>> {
    let mut tags = Vec::new();
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push((
                Cow::Borrowed("otel_scope_name"),
                Cow::Borrowed(&*scope.name),
            ));
        }
        if !scope.version.is_empty() {
            tags.push((
                Cow::Borrowed("otel_scope_version"),
                Cow::Borrowed(&*scope.version),
            ));
        }
        attribute_tags(&scope.attributes, &mut tags);
    }
    tags
}

/// An `AnyValue` as text, or `None` if it holds nothing (or only an index
/// into a profile's string table, which no other signal has). Rendering stops
/// soon after `limit` bytes: the result is then longer than `limit` and
/// refused as such, without building all of a huge value first.
pub(crate) fn text(value: &AnyValue, limit: usize) -> Option<Cow<'_, str>> {
    use any_value::Value as V;
    Some(match value.value.as_ref()? {
        V::StringValue(s) => Cow::Borrowed(s.as_str()),
        V::BoolValue(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        V::IntValue(i) => Cow::Owned(i.to_string()),
        V::DoubleValue(d) => Cow::Owned(double_text(*d)),
        V::BytesValue(b) => Cow::Owned(hex_capped(b, limit)),
        V::ArrayValue(_) | V::KvlistValue(_) => {
            let mut out = String::new();
            json(value, &mut out, limit);
            Cow::Owned(out)
        }
        V::StringValueStrindex(_) => return None,
    })
}

fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        d.to_string()
    }
}

/// Lowercase hex of `bytes` (a trace or span id).
pub(crate) fn hex(bytes: &[u8]) -> String {
    hex_capped(bytes, usize::MAX)
}

fn hex_capped(bytes: &[u8], limit: usize) -> String {
    let take = bytes.len().min(limit / 2 + 1);
    let mut out = String::with_capacity(take * 2);
    for b in &bytes[..take] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An array or map value as JSON, cut short once `out` passes `limit`.
/// Nesting is bounded by the decoders (prost and serde_json both stop at
/// about a hundred levels).
fn json(value: &AnyValue, out: &mut String, limit: usize) {
    use any_value::Value as V;
    if out.len() > limit {
        return;
    }
    match value.value.as_ref() {
        None | Some(V::StringValueStrindex(_)) => out.push_str("null"),
        Some(V::StringValue(s)) => json_string(s, out),
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(V::DoubleValue(d)) if d.is_finite() => out.push_str(&d.to_string()),
        Some(V::DoubleValue(d)) => json_string(&double_text(*d), out),
        Some(V::BytesValue(b)) => json_string(&hex_capped(b, limit), out),
        Some(V::ArrayValue(array)) => {
            out.push('[');
            for (i, item) in array.values.iter().enumerate() {
                if out.len() > limit {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                json(item, out, limit);
            }
            out.push(']');
        }
        Some(V::KvlistValue(map)) => {
            out.push('{');
            for (i, kv) in map.values.iter().enumerate() {
                if out.len() > limit {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                json_string(&kv.key, out);
                out.push(':');
                match &kv.value {
                    Some(v) => json(v, out, limit),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
    }
}

fn json_string(s: &str, out: &mut String) {
    // serde_json escapes exactly as JSON requires; a String cannot fail.
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// A row checked and resolved, not yet added: see [`Rows::prepare`].
pub(crate) struct Row<'v> {
    table: TableId,
    time_ns: i64,
    cells: Vec<(ColumnId, Value<'v>)>,
}

/// The rows of one request, built point by point. A point (a data point
/// with its buckets, a span with its events) is first *prepared* — every
/// row of it resolved and checked — and only then *committed*, so a bad
/// point leaves nothing behind.
pub(crate) struct Rows<'t> {
    builder: WriteBatchBuilder,
    tables: RequestTables<'t>,
    now_ns: i64,
    ids: Vec<ColumnId>,
    order: Vec<(ColumnId, usize)>,
    shadowed: Vec<bool>,
    pub rejected: Rejected,
}

impl<'t> Rows<'t> {
    pub fn new(now_ns: i64, limits: WriteLimits, tables: &'t dyn Tables) -> Self {
        Self {
            builder: WriteBatchBuilder::new(now_ns)
                .with_limits(limits)
                .dropping_bad_points(),
            tables: RequestTables::new(tables),
            now_ns,
            ids: Vec::new(),
            order: Vec::new(),
            shadowed: Vec::new(),
            rejected: Rejected::default(),
        }
    }

    /// Runs `point` (which prepares and commits one point); if it fails,
    /// the point is dropped and recorded as point `at`, or the request
    /// fails if the error concerns all of it.
    pub fn point(
        &mut self,
        at: usize,
        point: impl FnOnce(&mut Self) -> Result<(), PointError>,
    ) -> Result<()> {
        if let Err(e) = point(self) {
            e.drop_or_fail(&mut self.rejected, at, 1)?;
        }
        Ok(())
    }

    /// Resolves and checks one row of `table` at `time_ns` (0: now). Tags
    /// come from `tag_groups` in order of precedence, lowest first: a later
    /// tag wins a key an earlier one has. `fields` are the row's own
    /// columns; an attribute with one of their names is stored as
    /// `attr_<name>`.
    pub fn prepare<'v>(
        &mut self,
        table: &str,
        time_ns: i64,
        tag_groups: &[&'v [Tag<'v>]],
        fields: &[Field<'v>],
        at: usize,
    ) -> Result<Row<'v>, PointError> {
        let builder = &mut self.builder;
        let known = self.tables.table(builder, table)?;
        let id = known.id;
        let time_ns = if time_ns == 0 { self.now_ns } else { time_ns };
        if !(MIN_TIMESTAMP_NS..MAX_TIMESTAMP_NS).contains(&time_ns) {
            return Err(weir_model::Error::TimestampOutOfRange {
                table: table.to_string(),
                row: at,
                timestamp_ns: time_ns,
            }
            .into());
        }

        let tags = || tag_groups.iter().copied().flat_map(|group| group.iter());
        self.ids.clear();
        for (key, _) in tags() {
            let reserved = *key == known.time_column || fields.iter().any(|(f, _)| f == key);
            let column = if reserved {
                known.column(builder, &format!("attr_{key}"), ColumnType::Tag, at)?
            } else {
                known.column(builder, key, ColumnType::Tag, at)?
            };
            self.ids.push(column);
        }
        // A key given twice keeps its last value: mark the others.
        self.order.clear();
        self.order.extend(self.ids.iter().copied().zip(0..));
        self.order.sort_unstable();
        self.shadowed.clear();
        self.shadowed.resize(self.ids.len(), false);
        for pair in self.order.windows(2) {
            if pair[0].0 == pair[1].0 {
                self.shadowed[pair[0].1] = true;
            }
        }

        let mut cells = Vec::with_capacity(self.ids.len() + fields.len());
        for (i, (_, value)) in tags().enumerate() {
            if self.shadowed[i] {
                continue;
            }
            let value = Value::Tag(value);
            builder.check(id, self.ids[i], at, &value)?;
            cells.push((self.ids[i], value));
        }
        for (name, value) in fields {
            let column = known.column(builder, name, value.column_type(), at)?;
            builder.check(id, column, at, value)?;
            cells.push((column, *value));
        }
        Ok(Row {
            table: id,
            time_ns,
            cells,
        })
    }

    /// Adds prepared rows. They were checked, so only a fault of ours or a
    /// request limit can fail here, and either fails the request.
    pub fn commit(&mut self, rows: &[Row<'_>], at: usize) -> Result<(), PointError> {
        for row in rows {
            self.builder
                .begin_point(row.table, at, row.time_ns)
                .map_err(PointError::Fatal)?;
            for (column, value) in &row.cells {
                self.builder
                    .set(row.table, *column, at, *value)
                    .map_err(PointError::Fatal)?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Decoded> {
        Ok(Decoded {
            batches: self.builder.finish()?,
            rejected: self.rejected,
        })
    }
}

/// A `fixed64` nanosecond time as Weir's `i64`, or a dropped point.
pub(crate) fn time_ns(nanos: u64, what: &str) -> Result<i64, PointError> {
    i64::try_from(nanos).map_err(|_| {
        PointError::Dropped(format!(
            "{what} {nanos} is out of range (after 1970-01-01, before 2200-01-01)"
        ))
    })
}

/// OTLP's `AggregationTemporality`, as the `temporality` tag says it.
pub(crate) fn temporality(value: i32) -> &'static str {
    match value {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

/// A finite float as a field; NaN and infinities are no value (NULL).
pub(crate) fn finite(fields: &mut Vec<Field<'_>>, name: &'static str, value: Option<f64>) {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        fields.push((name, Value::F64(v)));
    }
}

#[cfg(test)]
mod tests;
