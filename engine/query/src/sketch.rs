//! SQL functions over quantile sketches ([`QuantileSketch`]), the
//! mergeable distributions a rollup keeps for `quantile_sketch(col)`:
//!
//! - `quantile_sketch(x)`, an aggregate: the sketch of the values `x` (any
//!   number type; nulls and NaN skipped), a binary value;
//! - `sketch_merge(s)`, an aggregate: the sketches `s` merged, which is
//!   exactly the sketch of all their values (the rollup view merges its
//!   partial rows with it; sketches over longer spans merge the same way);
//! - `sketch_quantile(s, q)`: the value at quantile `q` (0 to 1) of sketch
//!   `s`, within 1 % of the exact one;
//! - `sketch_count(s)`: how many values sketch `s` counted.
//!
//! A binary value that is not a sketch is an error naming the function.
//! `quantile_sketch` of no values is null, and so is everything of a null
//! sketch, as SQL's other aggregates of nothing are.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ScalarUDF, Volatility, create_udaf, create_udf,
};
use weir_storage::rollup::QuantileSketch;

/// The functions, to register on a session.
pub(crate) fn aggregate_functions() -> [AggregateUDF; 2] {
    [quantile_sketch(), sketch_merge()]
}

pub(crate) fn scalar_functions() -> [ScalarUDF; 2] {
    [
        create_udf(
            "sketch_quantile",
            vec![DataType::Binary, DataType::Float64],
            DataType::Float64,
            Volatility::Immutable,
            Arc::new(make_scalar_function(sketch_quantile, Vec::new())),
        ),
        create_udf(
            "sketch_count",
            vec![DataType::Binary],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(make_scalar_function(sketch_count, Vec::new())),
        ),
    ]
}

/// `quantile_sketch(x)`.
pub(crate) fn quantile_sketch() -> AggregateUDF {
    create_udaf(
        "quantile_sketch",
        vec![DataType::Float64],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SketchAccumulator::new(Input::Values)) as Box<dyn Accumulator>)),
        Arc::new(vec![DataType::Binary]),
    )
}

/// `sketch_merge(s)`.
pub(crate) fn sketch_merge() -> AggregateUDF {
    create_udaf(
        "sketch_merge",
        vec![DataType::Binary],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SketchAccumulator::new(Input::Sketches)) as Box<dyn Accumulator>)),
        Arc::new(vec![DataType::Binary]),
    )
}

#[derive(Debug, Clone, Copy)]
enum Input {
    Values,
    Sketches,
}

/// One group's sketch. Its state between partial and final aggregation is
/// the serialized sketch.
#[derive(Debug)]
struct SketchAccumulator {
    input: Input,
    sketch: QuantileSketch,
}

impl SketchAccumulator {
    fn new(input: Input) -> Self {
        Self {
            input,
            sketch: QuantileSketch::new(),
        }
    }

    fn merge_serialized(&mut self, sketches: &ArrayRef, function: &str) -> Result<()> {
        for bytes in binary(sketches, function)?.iter().flatten() {
            self.sketch.merge(&decode(bytes, function)?);
        }
        Ok(())
    }

    fn serialized(&self) -> ScalarValue {
        ScalarValue::Binary((self.sketch.count() > 0).then(|| self.sketch.to_bytes()))
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match self.input {
            Input::Values => {
                let Some(values) = values[0].as_primitive_opt::<Float64Type>() else {
                    return exec_err!(
                        "quantile_sketch: expected numbers, got {}",
                        values[0].data_type()
                    );
                };
                values.iter().flatten().for_each(|x| self.sketch.add(x));
                Ok(())
            }
            Input::Sketches => self.merge_serialized(&values[0], "sketch_merge"),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_serialized(&states[0], "a sketch aggregate's partial state")
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.serialized()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.serialized())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.heap_size()
    }
}

/// `array` as binary values; the signature coerces to it, this checks.
fn binary<'a>(array: &'a ArrayRef, function: &str) -> Result<&'a BinaryArray> {
    match array.as_binary_opt::<i32>() {
        Some(binary) => Ok(binary),
        None => exec_err!(
            "{function}: expected a binary sketch, got {}",
            array.data_type()
        ),
    }
}

fn decode(bytes: &[u8], function: &str) -> Result<QuantileSketch> {
    QuantileSketch::from_bytes(bytes).or_else(|e| exec_err!("{function}: {e}"))
}

/// `sketch_quantile(s, q)`, over arrays of one length (scalars expanded
/// by `make_scalar_function`).
fn sketch_quantile(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let rows = arrays[0].len();
    let sketches = binary(&arrays[0], "sketch_quantile")?;
    let Some(quantiles) = arrays[1].as_primitive_opt::<Float64Type>() else {
        return exec_err!("sketch_quantile: the quantile is {}", arrays[1].data_type());
    };
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if sketches.is_null(row) || quantiles.is_null(row) {
            out.push(None);
            continue;
        }
        let q = quantiles.value(row);
        if !(0.0..=1.0).contains(&q) {
            return exec_err!("sketch_quantile: the quantile {q} is not between 0 and 1");
        }
        out.push(decode(sketches.value(row), "sketch_quantile")?.quantile(q));
    }
    Ok(Arc::new(Float64Array::from(out)))
}

/// `sketch_count(s)`.
fn sketch_count(arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let sketches = binary(&arrays[0], "sketch_count")?;
    let counts = sketches
        .iter()
        .map(|bytes| {
            bytes
                .map(|b| {
                    let count = decode(b, "sketch_count")?.count();
                    Ok(i64::try_from(count).unwrap_or(i64::MAX))
                })
                .transpose()
        })
        .collect::<Result<Int64Array>>()?;
    Ok(Arc::new(counts))
}
