//! InfluxDB line protocol, as Telegraf, the Influx client libraries and
//! VictoriaMetrics speak it:
//!
//! ```text
//! cpu,host=db-1,region=eu usage_user=12.5,cores=8i,ok=true,note="fine" 1700000000000000000
//! ```
//!
//! The measurement is the table, tags are tags, and fields keep their type:
//! float → `f64`, `…i` → `i64`, `…u` → `u64`, `"…"` → string, `t`/`true`/`f`/
//! `false` → bool. The timestamp is in the request's [`Precision`]; a line
//! without one gets the server's time (and so does a timestamp of exactly
//! 0, which Weir reads as "now").
//!
//! Parsing is our own ([`parse`]): one pass, names and strings borrowed from
//! the body unless escaped, no allocation per line. It reads every line as
//! InfluxDB's Go parser does, which its tests check against the
//! `influxdb-line-protocol` crate (IOx's port of that parser).
//!
//! A line that does not parse, or breaks one of Weir's rules (a bad name, a
//! NaN, a timestamp out of range, a type that conflicts with an earlier line
//! or with stored data) is dropped and reported in [`Rejected`]; the other
//! lines are written. That is InfluxDB's partial write. Only what concerns
//! the whole request fails it: a body that is not UTF-8, or a request past
//! the write limits.

mod parse;

use parse::{FieldValue, Line, Lines};
use weir_model::{ColumnId, ColumnType, TableId, Value, WriteBatchBuilder, WriteLimits};

use crate::points::{PointError, RequestTables, repeated};
use crate::{Decoded, Error, Rejected, Result, Tables};

/// The unit of the timestamps in a request (`precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// Reads `precision` as both InfluxDB APIs write it: `ns`, `us`, `ms`,
    /// `s` (v2), and `n`, `u`, `ms`, `s`, `m`, `h` (v1).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// `timestamp` in nanoseconds, if that fits in an `i64`.
    pub fn to_ns(self, timestamp: i64) -> Option<i64> {
        timestamp.checked_mul(self.nanos())
    }
}

/// Decodes a line protocol body. Lines are numbered from 1 in
/// [`Rejected`], as InfluxDB numbers them.
pub fn decode(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Decoded> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Error::Malformed(format!(
            "line {line}: the body is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;

    let mut decoder = LineDecoder {
        builder: WriteBatchBuilder::new(now_ns)
            .with_limits(limits)
            .dropping_bad_points(),
        tables: RequestTables::new(tables),
        precision,
        columns: Vec::new(),
        scratch: Vec::new(),
        last: LastLine::default(),
    };
    let mut rejected = Rejected::default();
    let mut lines = Lines::new(text);
    let mut line = Line::default();
    while let Some((number, parsed)) = lines.next(&mut line) {
        let outcome = match parsed {
            Ok(()) => decoder.line(&line, number),
            Err(e) => Err(PointError::Dropped(e)),
        };
        if let Err(e) = outcome {
            e.drop_or_fail(&mut rejected, number, 1)?;
        }
    }
    Ok(Decoded {
        batches: decoder.builder.finish()?,
        rejected,
    })
}

struct LineDecoder<'t> {
    builder: WriteBatchBuilder,
    tables: RequestTables<'t>,
    precision: Precision,
    /// The current line's columns, tags then fields; reused line to line.
    columns: Vec<ColumnId>,
    scratch: Vec<ColumnId>,
    last: LastLine,
}

/// The previous line's table and columns. Consecutive lines mostly name
/// one measurement and the same keys in the same order; reusing their ids
/// saves the two name lookups (request and stored schema) per value.
#[derive(Default)]
struct LastLine {
    table: Option<(String, TableId)>,
    /// By position in the line (tags, then fields): name, type, id.
    columns: Vec<(String, ColumnType, ColumnId)>,
}

impl LineDecoder<'_> {
    /// Adds one line as one point, or nothing if any of it is wrong.
    fn line(&mut self, line: &Line<'_>, row: usize) -> Result<(), PointError> {
        let id = self.table(&line.measurement)?;
        let timestamp_ns = match line.timestamp {
            None => 0, // the server's time
            Some(t) => self.precision.to_ns(t).ok_or_else(|| {
                PointError::Dropped(format!(
                    "timestamp {t} in {:?} does not fit in 64-bit nanoseconds",
                    self.precision
                ))
            })?,
        };

        // Every value is checked before the point begins, so a bad line
        // leaves nothing behind.
        self.columns.clear();
        let tags = line.tags.iter();
        for (position, (key, value)) in tags.clone().enumerate() {
            let value = Value::Tag(value);
            let column = self.column(&line.measurement, position, key, &value, row)?;
            self.builder.check(id, column, row, &value)?;
            self.columns.push(column);
        }
        for (position, (key, value)) in line.fields.iter().enumerate() {
            let value = field_value(value);
            let position = line.tags.len() + position;
            let column = self.column(&line.measurement, position, key, &value, row)?;
            self.builder.check(id, column, row, &value)?;
            self.columns.push(column);
        }
        let builder = &mut self.builder;
        if let Some(column) = repeated(&self.columns, &mut self.scratch) {
            let position = self.columns.iter().position(|c| *c == column).unwrap_or(0);
            let name = tags
                .clone()
                .map(|(k, _)| k)
                .chain(line.fields.iter().map(|(k, _)| k))
                .nth(position)
                .map(|k| k.to_string())
                .unwrap_or_default();
            return Err(weir_model::Error::DuplicateColumn {
                table: line.measurement.to_string(),
                column: name,
                row,
            }
            .into());
        }

        builder.begin_point(id, row, timestamp_ns)?;
        let values = tags
            .map(|(_, v)| Value::Tag(v))
            .chain(line.fields.iter().map(|(_, v)| field_value(v)));
        for (column, value) in self.columns.iter().zip(values) {
            builder
                .set(id, *column, row, value)
                .map_err(PointError::Fatal)?;
        }
        Ok(())
    }
}

impl LineDecoder<'_> {
    /// The table `measurement`, as the previous line's if it is the same.
    fn table(&mut self, measurement: &str) -> Result<TableId, PointError> {
        if let Some((name, id)) = &self.last.table
            && name == measurement
        {
            return Ok(*id);
        }
        let id = self.tables.table(&mut self.builder, measurement)?.id;
        self.last.table = Some((measurement.to_string(), id));
        self.last.columns.clear();
        Ok(id)
    }

    /// The column for `key` at `position` of a line of `measurement` (the
    /// table [`table`](Self::table) last returned), as the previous line's
    /// if it named the same key with the same type there.
    fn column(
        &mut self,
        measurement: &str,
        position: usize,
        key: &str,
        value: &Value<'_>,
        row: usize,
    ) -> Result<ColumnId, PointError> {
        let column_type = value.column_type();
        if let Some((name, cached_type, id)) = self.last.columns.get(position)
            && name == key
            && *cached_type == column_type
        {
            return Ok(*id);
        }
        let table = self.tables.table(&mut self.builder, measurement)?;
        let id = table.column(&mut self.builder, key, column_type, row)?;
        match self.last.columns.get_mut(position) {
            Some(cached) => {
                cached.0.clear();
                cached.0.push_str(key);
                cached.1 = column_type;
                cached.2 = id;
            }
            // Positions are filled in order: this is the next one.
            None => self.last.columns.push((key.to_string(), column_type, id)),
        }
        Ok(id)
    }
}

fn field_value<'a>(value: &'a FieldValue<'_>) -> Value<'a> {
    match value {
        FieldValue::F64(v) => Value::F64(*v),
        FieldValue::I64(v) => Value::I64(*v),
        FieldValue::U64(v) => Value::U64(*v),
        FieldValue::Bool(v) => Value::Bool(*v),
        FieldValue::String(s) => Value::String(s),
    }
}

#[cfg(test)]
mod tests;
