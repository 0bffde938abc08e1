//! `date_trunc` with integer arithmetic for UTC timestamps.
//!
//! DataFusion 55 truncates by arithmetic only when a timestamp has no time
//! zone; with any zone, UTC included, every value goes through chrono's
//! time-zone conversion, one at a time. Weir's time columns are
//! `Timestamp(ns, "+00:00")`, so `DATE_TRUNC('hour', recorded_at)` — the
//! heart of every uptime query — took that path for every row. In UTC every
//! day and hour has the same length, so truncating to a day or less is
//! `v - v.rem_euclid(unit)`, the same formula DataFusion uses for
//! zone-less timestamps. Anything else (weeks and longer, other zones,
//! scalars, other units) goes to DataFusion's own `date_trunc`, which this
//! function replaces under the same names.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, TimeUnit, TimestampNanosecondType};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions::datetime::date_trunc::DateTruncFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// DataFusion's `date_trunc`, with the UTC fast path in front.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct UtcDateTrunc {
    datafusion: DateTruncFunc,
}

impl UtcDateTrunc {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self::default())
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.datafusion.name()
    }

    fn aliases(&self) -> &[String] {
        self.datafusion.aliases()
    }

    fn signature(&self) -> &Signature {
        self.datafusion.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.datafusion.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.datafusion.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(truncated) = truncate_utc(&args.args) {
            return Ok(ColumnarValue::Array(truncated));
        }
        self.datafusion.invoke_with_args(args)
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.datafusion.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.datafusion.documentation()
    }
}

/// The answer for an array of UTC nanosecond timestamps truncated to a day
/// or less; `None` for everything the fast path does not cover.
fn truncate_utc(args: &[ColumnarValue]) -> Option<ArrayRef> {
    let [
        ColumnarValue::Scalar(granularity),
        ColumnarValue::Array(array),
    ] = args
    else {
        return None;
    };
    let (ScalarValue::Utf8(Some(granularity))
    | ScalarValue::Utf8View(Some(granularity))
    | ScalarValue::LargeUtf8(Some(granularity))) = granularity
    else {
        return None;
    };
    let DataType::Timestamp(TimeUnit::Nanosecond, Some(zone)) = array.data_type() else {
        return None;
    };
    if !matches!(zone.as_ref(), "+00:00" | "UTC" | "Z" | "Etc/UTC") {
        return None;
    }
    const SECOND: i64 = 1_000_000_000;
    let unit = match granularity.to_lowercase().as_str() {
        "microsecond" => 1_000,
        "millisecond" => 1_000_000,
        "second" => SECOND,
        "minute" => 60 * SECOND,
        "hour" => 3_600 * SECOND,
        "day" => 86_400 * SECOND,
        _ => return None,
    };
    let truncated = array
        .as_primitive::<TimestampNanosecondType>()
        .unary::<_, TimestampNanosecondType>(|v| v - v.rem_euclid(unit))
        .with_timezone(Arc::clone(zone));
    Some(Arc::new(truncated))
}

#[cfg(test)]
mod tests {
    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn call(udf: &dyn ScalarUDFImpl, granularity: &str, array: &ArrayRef) -> ArrayRef {
        let fields: Vec<FieldRef> = vec![
            Arc::new(Field::new("g", DataType::Utf8, false)),
            Arc::new(Field::new("t", array.data_type().clone(), true)),
        ];
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.to_string()))),
                ColumnarValue::Array(Arc::clone(array)),
            ],
            arg_fields: fields.clone(),
            number_rows: array.len(),
            return_field: Arc::clone(&fields[1]),
            config_options: Arc::new(ConfigOptions::default()),
        };
        match udf.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(out) => out,
            ColumnarValue::Scalar(s) => s.to_array_of_size(array.len()).unwrap(),
        }
    }

    /// The fast path answers exactly what DataFusion's own `date_trunc`
    /// answers, for random instants from 1677 to 2262 (the whole
    /// nanosecond range, negatives included), nulls, and the boundaries of
    /// each unit; and the granularities it does not cover still work.
    #[test]
    fn answers_what_datafusion_answers() {
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let hour = 3_600_000_000_000i64;
        let mut values: Vec<Option<i64>> = (0..20_000)
            .map(|_| {
                (!rng.random_ratio(1, 20)).then(|| rng.random_range(-9e18 as i64..9e18 as i64))
            })
            .collect();
        for edge in [
            0,
            -1,
            1,
            hour,
            hour - 1,
            -hour,
            -hour - 1,
            86_400 * 1_000_000_000 - 1,
        ] {
            values.push(Some(edge));
        }
        for zone in ["+00:00", "UTC", "Europe/Berlin", "+05:30"] {
            let array: ArrayRef =
                Arc::new(TimestampNanosecondArray::from(values.clone()).with_timezone(zone));
            for granularity in [
                "microsecond",
                "millisecond",
                "second",
                "minute",
                "hour",
                "HOUR",
                "day",
                "week",
                "month",
                "quarter",
                "year",
            ] {
                assert_eq!(
                    call(&UtcDateTrunc::default(), granularity, &array).as_ref(),
                    call(&DateTruncFunc::new(), granularity, &array).as_ref(),
                    "{granularity} in {zone}, seed {seed}"
                );
            }
        }
        let covered = |zone: &str, granularity: &str| {
            let array: ArrayRef =
                Arc::new(TimestampNanosecondArray::from(vec![1]).with_timezone(zone));
            let args = [
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.to_string()))),
                ColumnarValue::Array(array),
            ];
            truncate_utc(&args).is_some()
        };
        assert!(covered("+00:00", "hour") && covered("UTC", "Day"));
        assert!(!covered("Europe/Berlin", "hour") && !covered("+00:00", "month"));
    }
}
