//! OTLP metrics: gauges, sums, histograms, exponential histograms and
//! summaries (the mapping is in the [module docs](super)).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
};
use weir_model::{Value, WriteLimits};

use super::{
    Field, Row, Rows, Tag, attribute_tags, finite, sanitize, scope_tags, temporality, time_ns,
};
use crate::points::PointError;
use crate::{Decoded, Result, Tables};

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the series has no value at
/// this time (OTLP's staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// The widest exponential histogram scale OTLP defines (and the narrowest).
const MAX_SCALE: i32 = 20;
const MIN_SCALE: i32 = -10;

/// What an OTLP metrics request became.
#[derive(Debug, Default)]
pub struct Metrics {
    pub decoded: Decoded,
    /// Data points flagged as having no recorded value, skipped.
    pub no_value: u64,
}

/// Decodes an `ExportMetricsServiceRequest`. Data points are numbered
/// from 0 across the request in [`Rejected`](crate::Rejected).
pub fn decode(
    request: &ExportMetricsServiceRequest,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Metrics> {
    let mut rows = Rows::new(now_ns, limits, tables);
    let mut no_value = 0;
    let mut at = 0;
    for resource_metrics in &request.resource_metrics {
        let mut resource = Vec::new();
        if let Some(r) = &resource_metrics.resource {
            attribute_tags(&r.attributes, &mut resource);
        }
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope = scope_tags(scope_metrics.scope.as_ref());
            for metric in &scope_metrics.metrics {
                let name = sanitize(&metric.name);
                let series = Series {
                    name: &name,
                    resource: &resource,
                    scope: &scope,
                };
                match &metric.data {
                    None => {}
                    Some(Data::Gauge(gauge)) => {
                        for p in &gauge.data_points {
                            if p.flags & NO_RECORDED_VALUE != 0 {
                                no_value += 1;
                            } else {
                                rows.point(at, |rows| series.number(rows, p, None, at))?;
                            }
                            at += 1;
                        }
                    }
                    Some(Data::Sum(sum)) => {
                        let kind = (temporality(sum.aggregation_temporality), sum.is_monotonic);
                        for p in &sum.data_points {
                            if p.flags & NO_RECORDED_VALUE != 0 {
                                no_value += 1;
                            } else {
                                rows.point(at, |rows| series.number(rows, p, Some(kind), at))?;
                            }
                            at += 1;
                        }
                    }
                    Some(Data::Histogram(histogram)) => {
                        let kind = temporality(histogram.aggregation_temporality);
                        for p in &histogram.data_points {
                            if p.flags & NO_RECORDED_VALUE != 0 {
                                no_value += 1;
                            } else {
                                rows.point(at, |rows| series.histogram(rows, p, kind, at))?;
                            }
                            at += 1;
                        }
                    }
                    Some(Data::ExponentialHistogram(histogram)) => {
                        let kind = temporality(histogram.aggregation_temporality);
                        for p in &histogram.data_points {
                            if p.flags & NO_RECORDED_VALUE != 0 {
                                no_value += 1;
                            } else {
                                rows.point(at, |rows| series.exponential(rows, p, kind, at))?;
                            }
                            at += 1;
                        }
                    }
                    Some(Data::Summary(summary)) => {
                        for p in &summary.data_points {
                            if p.flags & NO_RECORDED_VALUE != 0 {
                                no_value += 1;
                            } else {
                                rows.point(at, |rows| series.summary(rows, p, at))?;
                            }
                            at += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(Metrics {
        decoded: rows.finish()?,
        no_value,
    })
}

/// One metric of one scope: its table and the tags all its points share.
struct Series<'a> {
    name: &'a str,
    resource: &'a [Tag<'a>],
    scope: &'a [Tag<'a>],
}

impl Series<'_> {
    /// A gauge's or a sum's point; `sum` is a sum's temporality and
    /// monotonicity.
    fn number(
        &self,
        rows: &mut Rows<'_>,
        p: &NumberDataPoint,
        sum: Option<(&'static str, bool)>,
        at: usize,
    ) -> Result<(), PointError> {
        let mut point = Vec::new();
        attribute_tags(&p.attributes, &mut point);
        let mut fields: Vec<Field<'_>> = Vec::with_capacity(4);
        match p.value {
            Some(Number::AsDouble(v)) => finite(&mut fields, "value", Some(v)),
            // Stored as f64 so a metric keeps one type whatever the SDK sends.
            Some(Number::AsInt(v)) => fields.push(("value", Value::F64(v as f64))),
            None => {}
        }
        if let Some((temporality, monotonic)) = sum {
            start_time(&mut fields, p.start_time_unix_nano)?;
            fields.push(("temporality", Value::Tag(temporality)));
            fields.push(("monotonic", Value::Bool(monotonic)));
        }
        let time = time_ns(p.time_unix_nano, "time_unix_nano")?;
        let row = rows.prepare(
            self.name,
            time,
            &[self.resource, self.scope, &point[..]],
            &fields,
            at,
        )?;
        rows.commit(&[row], at)
    }

    fn histogram(
        &self,
        rows: &mut Rows<'_>,
        p: &HistogramDataPoint,
        temporality: &'static str,
        at: usize,
    ) -> Result<(), PointError> {
        let bounds = &p.explicit_bounds;
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != bounds.len() + 1 {
            return Err(PointError::Dropped(format!(
                "{}: {} bucket counts for {} bounds (there must be one more count than bounds)",
                self.name,
                p.bucket_counts.len(),
                bounds.len()
            )));
        }
        if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
            return Err(PointError::Dropped(format!(
                "{}: bucket bound {bad} is not finite",
                self.name
            )));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PointError::Dropped(format!(
                "{}: bucket bounds are not increasing",
                self.name
            )));
        }
        let time = time_ns(p.time_unix_nano, "time_unix_nano")?;
        let mut point = Vec::new();
        attribute_tags(&p.attributes, &mut point);
        let tags = [self.resource, self.scope, &point[..]];

        let mut fields = Vec::with_capacity(6);
        fields.push(("count", Value::U64(p.count)));
        finite(&mut fields, "sum", p.sum);
        finite(&mut fields, "min", p.min);
        finite(&mut fields, "max", p.max);
        start_time(&mut fields, p.start_time_unix_nano)?;
        fields.push(("temporality", Value::Tag(temporality)));
        let mut prepared = vec![rows.prepare(self.name, time, &tags, &fields, at)?];

        let buckets = BucketRows::explicit(bounds, &p.bucket_counts);
        self.buckets(rows, &mut prepared, time, &tags, &buckets, temporality, at)?;
        rows.commit(&prepared, at)
    }

    fn exponential(
        &self,
        rows: &mut Rows<'_>,
        p: &ExponentialHistogramDataPoint,
        temporality: &'static str,
        at: usize,
    ) -> Result<(), PointError> {
        if !(MIN_SCALE..=MAX_SCALE).contains(&p.scale) {
            return Err(PointError::Dropped(format!(
                "{}: scale {} is outside OTLP's {MIN_SCALE}..={MAX_SCALE}",
                self.name, p.scale
            )));
        }
        if !p.zero_threshold.is_finite() || p.zero_threshold < 0.0 {
            return Err(PointError::Dropped(format!(
                "{}: zero_threshold {} is not a finite non-negative number",
                self.name, p.zero_threshold
            )));
        }
        let time = time_ns(p.time_unix_nano, "time_unix_nano")?;
        let mut point = Vec::new();
        attribute_tags(&p.attributes, &mut point);
        let tags = [self.resource, self.scope, &point[..]];

        let mut fields = Vec::with_capacity(9);
        fields.push(("count", Value::U64(p.count)));
        finite(&mut fields, "sum", p.sum);
        finite(&mut fields, "min", p.min);
        finite(&mut fields, "max", p.max);
        fields.push(("scale", Value::I64(p.scale.into())));
        fields.push(("zero_count", Value::U64(p.zero_count)));
        fields.push(("zero_threshold", Value::F64(p.zero_threshold)));
        start_time(&mut fields, p.start_time_unix_nano)?;
        fields.push(("temporality", Value::Tag(temporality)));
        let mut prepared = vec![rows.prepare(self.name, time, &tags, &fields, at)?];

        let buckets = BucketRows::exponential(p);
        self.buckets(rows, &mut prepared, time, &tags, &buckets, temporality, at)?;
        rows.commit(&prepared, at)
    }

    /// Prepares the `<name>_bucket` rows of a histogram point.
    #[allow(clippy::too_many_arguments)]
    fn buckets<'v>(
        &self,
        rows: &mut Rows<'_>,
        prepared: &mut Vec<Row<'v>>,
        time: i64,
        tags: &[&'v [Tag<'v>]],
        buckets: &'v BucketRows,
        temporality: &'static str,
        at: usize,
    ) -> Result<(), PointError> {
        if buckets.0.is_empty() {
            return Ok(());
        }
        let table = format!("{}_bucket", self.name);
        for bucket in &buckets.0 {
            let mut fields = Vec::with_capacity(5);
            fields.push(("le", Value::Tag(&bucket.le)));
            finite(&mut fields, "lower_bound", Some(bucket.lower));
            finite(&mut fields, "upper_bound", Some(bucket.upper));
            fields.push(("count", Value::U64(bucket.count)));
            fields.push(("temporality", Value::Tag(temporality)));
            prepared.push(rows.prepare(&table, time, tags, &fields, at)?);
        }
        Ok(())
    }

    fn summary(
        &self,
        rows: &mut Rows<'_>,
        p: &SummaryDataPoint,
        at: usize,
    ) -> Result<(), PointError> {
        if let Some(q) = p
            .quantile_values
            .iter()
            .find(|q| !(0.0..=1.0).contains(&q.quantile))
        {
            return Err(PointError::Dropped(format!(
                "{}: quantile {} is not between 0 and 1",
                self.name, q.quantile
            )));
        }
        let time = time_ns(p.time_unix_nano, "time_unix_nano")?;
        let mut point = Vec::new();
        attribute_tags(&p.attributes, &mut point);
        let tags = [self.resource, self.scope, &point[..]];

        let mut fields = Vec::with_capacity(3);
        fields.push(("count", Value::U64(p.count)));
        finite(&mut fields, "sum", Some(p.sum));
        start_time(&mut fields, p.start_time_unix_nano)?;
        let mut prepared = vec![rows.prepare(self.name, time, &tags, &fields, at)?];

        let table = format!("{}_quantile", self.name);
        for q in &p.quantile_values {
            let mut fields = Vec::with_capacity(2);
            fields.push(("quantile", Value::F64(q.quantile)));
            finite(&mut fields, "value", Some(q.value));
            prepared.push(rows.prepare(&table, time, &tags, &fields, at)?);
        }
        rows.commit(&prepared, at)
    }
}

/// A cumulative series' start, if the SDK sent one.
fn start_time(fields: &mut Vec<Field<'_>>, nanos: u64) -> Result<(), PointError> {
    if nanos != 0 {
        fields.push((
            "start_time_unix_nano",
            Value::I64(time_ns(nanos, "start_time_unix_nano")?),
        ));
    }
    Ok(())
}

/// One bucket row: its bounds (infinite at the ends), its `le` text and
/// its own count.
struct Bucket {
    lower: f64,
    upper: f64,
    le: String,
    count: u64,
}

/// The bucket rows of one histogram point.
struct BucketRows(Vec<Bucket>);

impl BucketRows {
    /// Explicit bounds `b0 < b1 < …`: buckets `(-inf, b0]`, `(b0, b1]`, …,
    /// `(bn, +inf)`. Checked by the caller: one more count than bounds.
    fn explicit(bounds: &[f64], counts: &[u64]) -> Self {
        BucketRows(
            counts
                .iter()
                .enumerate()
                .map(|(i, &count)| {
                    let lower = if i == 0 {
                        f64::NEG_INFINITY
                    } else {
                        bounds[i - 1]
                    };
                    let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    Bucket {
                        lower,
                        upper,
                        le: le(upper),
                        count,
                    }
                })
                .collect(),
        )
    }

    /// Exponential buckets, lowest first: the negative ones, the zero
    /// bucket, the positive ones; only those with a count.
    fn exponential(p: &ExponentialHistogramDataPoint) -> Self {
        // Bucket i spans (base^i, base^(i+1)], base = 2^(2^-scale).
        let width = (-f64::from(p.scale)).exp2();
        let bound = |index: i64| (index as f64 * width).exp2();
        let mut out = Vec::new();
        let sparse = |buckets: &Buckets| {
            buckets
                .bucket_counts
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(k, count)| (i64::from(buckets.offset) + k as i64, *count))
                .collect::<Vec<_>>()
        };
        if let Some(negative) = &p.negative {
            for (index, count) in sparse(negative).into_iter().rev() {
                let upper = -bound(index);
                out.push(Bucket {
                    lower: -bound(index + 1),
                    upper,
                    le: le(upper),
                    count,
                });
            }
        }
        if p.zero_count > 0 {
            out.push(Bucket {
                lower: -p.zero_threshold,
                upper: p.zero_threshold,
                le: le(p.zero_threshold),
                count: p.zero_count,
            });
        }
        if let Some(positive) = &p.positive {
            for (index, count) in sparse(positive) {
                let upper = bound(index + 1);
                out.push(Bucket {
                    lower: bound(index),
                    upper,
                    le: le(upper),
                    count,
                });
            }
        }
        BucketRows(out)
    }
}

/// A bucket's upper bound as Prometheus writes `le`.
fn le(upper: f64) -> String {
    if upper == f64::INFINITY {
        "+Inf".into()
    } else {
        upper.to_string()
    }
}
