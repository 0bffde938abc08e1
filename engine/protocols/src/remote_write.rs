//! Prometheus remote write 1.0: a snappy block holding a protobuf
//! `prometheus.WriteRequest` (what Prometheus 2.x, Grafana Agent and
//! VictoriaMetrics' vmagent send).
//!
//! Each series lands in the table named by its `__name__`, its other labels
//! as tags and each sample as one row with an `f64` column `value`, at the
//! sample's millisecond timestamp. A label with an empty value is no label
//! (Prometheus' own rule).
//!
//! Non-finite samples: Prometheus marks a series that disappeared with a
//! *staleness marker*, a NaN with a fixed bit pattern. Weir has no
//! staleness, so markers are skipped (counted in [`Decoded`]'s
//! `stale_markers`). Other NaNs and infinities are real values Prometheus
//! computes (a summary quantile with no observations is NaN); Weir stores
//! no non-finite floats, so such a sample keeps its row with a NULL
//! `value`, which SQL aggregates skip.
//!
//! A series that is wrong (no `__name__`, a label that is not UTF-8, a
//! label twice, a name Weir refuses, a type conflict) is dropped whole; a
//! sample out of range is dropped alone. The rest of the request is
//! written and the drops are reported: Prometheus does not resend a batch
//! answered with a 4xx, so refusing the whole batch would lose the good
//! series in it. Native histograms are not stored yet; their series are
//! reported as dropped.
//!
//! The messages are declared here rather than generated: no maintained
//! crate carries them for prost 0.14, and only these fields matter. Labels
//! are decoded as `Bytes` slices of the request (no copy, no allocation
//! per label) and checked for UTF-8 here, so one bad label drops one series
//! instead of failing the whole protobuf decode.

use bytes::Bytes;
use prost::Message;
use weir_model::{ColumnId, ColumnType, Value, WriteBatchBuilder, WriteLimits};

use crate::points::{PointError, RequestTables, is_point_error, repeated};
use crate::{Decoded, Error, Rejected, Result, Tables, compression};

/// The label that names a series' metric.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// The column that holds each sample's value.
pub const VALUE_COLUMN: &str = "value";
/// Prometheus' staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.WriteRequest` (remote write 1.0); metadata (field 3) is skipped.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms: only counted, to report them as not stored.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<NativeHistogram>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A native histogram, whose fields are skipped.
#[derive(Clone, PartialEq, Message)]
pub struct NativeHistogram {}

/// What a remote-write request became.
#[derive(Debug, Default)]
pub struct RemoteWrite {
    pub decoded: Decoded,
    /// Staleness markers skipped.
    pub stale_markers: u64,
}

/// Decodes a remote-write body as sent: snappy, then protobuf.
/// `max_decompressed` bounds the protobuf's size.
pub fn decode_snappy(
    body: &[u8],
    max_decompressed: usize,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<RemoteWrite> {
    let protobuf = compression::unsnappy(body, max_decompressed)?;
    decode(Bytes::from(protobuf), now_ns, limits, tables)
}

/// Decodes an uncompressed `prometheus.WriteRequest`.
pub fn decode(
    protobuf: Bytes,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<RemoteWrite> {
    let request = WriteRequest::decode(protobuf)
        .map_err(|e| Error::Malformed(format!("not a remote-write protobuf ({e})")))?;
    let mut decoder = SeriesDecoder {
        builder: WriteBatchBuilder::new(now_ns)
            .with_limits(limits)
            .dropping_bad_points(),
        tables: RequestTables::new(tables),
        columns: Vec::new(),
        tag_labels: Vec::new(),
        scratch: Vec::new(),
        stale_markers: 0,
        rejected: Rejected::default(),
    };
    for (index, series) in request.timeseries.iter().enumerate() {
        if let Err(e) = decoder.series(series, index) {
            let points = (series.samples.len() + series.histograms.len()).max(1);
            e.drop_or_fail(&mut decoder.rejected, index, points as u64)?;
        }
    }
    Ok(RemoteWrite {
        decoded: Decoded {
            batches: decoder.builder.finish()?,
            rejected: decoder.rejected,
        },
        stale_markers: decoder.stale_markers,
    })
}

struct SeriesDecoder<'t> {
    builder: WriteBatchBuilder,
    tables: RequestTables<'t>,
    /// The current series' tag columns, and the index of the label each
    /// comes from; reused series to series.
    columns: Vec<ColumnId>,
    tag_labels: Vec<usize>,
    scratch: Vec<ColumnId>,
    stale_markers: u64,
    rejected: Rejected,
}

impl SeriesDecoder<'_> {
    fn series(&mut self, series: &TimeSeries, row: usize) -> Result<(), PointError> {
        let mut name = None;
        for label in &series.labels {
            if label.name.as_ref() == METRIC_NAME_LABEL.as_bytes() {
                name = Some(utf8(&label.value, "the metric name")?);
            }
        }
        let Some(name) = name else {
            return Err(PointError::Dropped(format!(
                "the series has no {METRIC_NAME_LABEL} label"
            )));
        };
        let builder = &mut self.builder;
        let table = self.tables.table(builder, name)?;
        let id = table.id;

        // Tags: checked once for the series, set for each sample.
        self.columns.clear();
        self.tag_labels.clear();
        for (i, label) in series.labels.iter().enumerate() {
            if label.name.as_ref() == METRIC_NAME_LABEL.as_bytes() || label.value.is_empty() {
                continue;
            }
            let key = utf8(&label.name, "a label name")?;
            let value = utf8(&label.value, "a label value")?;
            let column = table.column(builder, key, ColumnType::Tag, row)?;
            builder.check(id, column, row, &Value::Tag(value))?;
            self.columns.push(column);
            self.tag_labels.push(i);
        }
        if let Some(column) = repeated(&self.columns, &mut self.scratch) {
            let position = self.columns.iter().position(|c| *c == column).unwrap_or(0);
            let label = &series.labels[self.tag_labels[position]].name;
            return Err(weir_model::Error::DuplicateColumn {
                table: name.to_string(),
                column: String::from_utf8_lossy(label).into_owned(),
                row,
            }
            .into());
        }
        let value_column = table.column(builder, VALUE_COLUMN, ColumnType::F64, row)?;

        for sample in &series.samples {
            if sample.value.to_bits() == STALE_NAN_BITS {
                self.stale_markers += 1;
                continue;
            }
            // Weir reads a timestamp of 0 as "now"; here it is 1970.
            let timestamp_ns = match sample.timestamp.checked_mul(1_000_000) {
                Some(ns) if ns != 0 => ns,
                _ => {
                    self.rejected.add(
                        row,
                        1,
                        format!(
                            "sample at {} ms: the timestamp is out of range (after 1970-01-01, before 2200-01-01)",
                            sample.timestamp
                        ),
                    );
                    continue;
                }
            };
            if let Err(e) = builder.begin_point(id, row, timestamp_ns) {
                if !is_point_error(&e) {
                    return Err(PointError::Fatal(e));
                }
                self.rejected
                    .add(row, 1, format!("sample at {} ms: {e}", sample.timestamp));
                continue;
            }
            for (&label, &column) in self.tag_labels.iter().zip(&self.columns) {
                // Checked above; cannot fail but by a fault of ours.
                let value = utf8(&series.labels[label].value, "a label value")?;
                builder
                    .set(id, column, row, Value::Tag(value))
                    .map_err(PointError::Fatal)?;
            }
            if sample.value.is_finite() {
                builder
                    .set(id, value_column, row, Value::F64(sample.value))
                    .map_err(PointError::Fatal)?;
            }
        }
        if !series.histograms.is_empty() {
            self.rejected.add(
                row,
                series.histograms.len() as u64,
                format!("{name}: native histograms are not stored (send classic histograms)"),
            );
        }
        Ok(())
    }
}

fn utf8<'a>(bytes: &'a Bytes, what: &str) -> Result<&'a str, PointError> {
    std::str::from_utf8(bytes)
        .map_err(|e| PointError::Dropped(format!("{what} is not UTF-8 ({e})")))
}

#[cfg(test)]
mod tests;
