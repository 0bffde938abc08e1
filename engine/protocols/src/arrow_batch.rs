//! Arrow record batches as they arrive from Arrow tooling (Flight `DoPut`):
//! the columnar fast path. A batch is already columns, so nothing is
//! decoded row by row: each column is checked with a vectorised pass and
//! cast to Weir's type for it only where its Arrow type differs.
//!
//! | Arrow type of a column | Weir column |
//! |---|---|
//! | the table's time column: `Timestamp(any unit, any zone)` | time (nanoseconds, UTC) |
//! | `Dictionary(any integer, Utf8 / LargeUtf8 / Utf8View)` | tag |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | string |
//! | `Float16/32/64` | f64 |
//! | `Int8/16/32/64` | i64 |
//! | `UInt8/16/32/64` | u64 |
//! | `Boolean` | bool |
//!
//! A batch is atomic, as a native request is: any error refuses it whole.
//! The rules are the model's (names, finite floats, the timestamp range,
//! tag length, the write limits); where rows break one, the first such row
//! is named. Unlike the native API, a time of 0 is 1970, not "now": Arrow
//! data carries its own times, and a null time is refused.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericStringArray, OffsetSizeTrait};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema, TimestampNanosecondType};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_model::{
    ColumnType, MAX_TAG_VALUE_BYTES, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, NameKind, TableBatch,
    WriteLimits, check_not_system_table, time_data_type, validate_name,
};

use crate::{Error, Result, Tables};

/// Checks `batch` for `table` and makes it a [`TableBatch`]: the table's
/// time column first, every column in Weir's Arrow type.
pub fn decode(
    table: &str,
    batch: &RecordBatch,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<TableBatch> {
    validate_name(NameKind::Table, table)?;
    check_not_system_table(table)?;
    let schema = batch.schema();
    let columns = schema.fields().len();
    if columns > limits.max_columns {
        return Err(weir_model::Error::TooManyColumns {
            table: table.to_string(),
            column: schema.field(limits.max_columns).name().clone(),
            row: 0,
            limit: limits.max_columns,
        }
        .into());
    }
    if batch.num_rows().saturating_mul(columns) > limits.max_cells {
        return Err(weir_model::Error::TooManyCells {
            table: table.to_string(),
            row: 0,
            limit: limits.max_cells,
        }
        .into());
    }
    let time_column = tables.time_column(table);
    let Some(time_index) = schema
        .fields()
        .iter()
        .position(|f| *f.name() == time_column)
    else {
        return Err(Error::Malformed(format!(
            "table {table:?}: the batch has no time column {time_column:?} (a Timestamp column of that name)"
        )));
    };

    let mut fields = Vec::with_capacity(columns);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns);
    let time = time_array(table, &time_column, batch.column(time_index))?;
    fields.push(Field::new(&time_column, time_data_type(), false));
    arrays.push(time);

    for (i, field) in schema.fields().iter().enumerate() {
        if i == time_index {
            continue;
        }
        let name = field.name();
        validate_name(NameKind::Column, name)?;
        if fields.iter().any(|f| f.name() == name) {
            return Err(weir_model::Error::DuplicateColumn {
                table: table.to_string(),
                column: name.clone(),
                row: 0,
            }
            .into());
        }
        let column_type =
            column_type(field.data_type()).ok_or_else(|| weir_model::Error::UnsupportedType {
                table: table.to_string(),
                column: name.clone(),
                data_type: field.data_type().to_string(),
            })?;
        let array = cast(table, name, batch.column(i), &column_type.data_type())?;
        check_values(table, name, column_type, &array)?;
        fields.push(Field::new(name, column_type.data_type(), true));
        arrays.push(array);
    }

    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|source| weir_model::Error::Arrow {
            table: table.to_string(),
            source,
        })?;
    Ok(TableBatch {
        table: table.to_string(),
        first_rows: vec![0; batch.num_columns()],
        batch,
    })
}

/// The Weir column an Arrow type is stored as, if any.
fn column_type(data_type: &DataType) -> Option<ColumnType> {
    use DataType as D;
    Some(match data_type {
        D::Dictionary(key, value)
            if key.is_integer() && matches!(**value, D::Utf8 | D::LargeUtf8 | D::Utf8View) =>
        {
            ColumnType::Tag
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => ColumnType::String,
        D::Float16 | D::Float32 | D::Float64 => ColumnType::F64,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => ColumnType::I64,
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => ColumnType::U64,
        D::Boolean => ColumnType::Bool,
        _ => return None,
    })
}

/// `array` as `to`, refusing values that do not fit (rather than making
/// them null, Arrow's default).
fn cast(table: &str, column: &str, array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options).map_err(|e| {
        Error::Malformed(format!(
            "table {table:?}, column {column:?}: cannot store {} as {to}: {e}",
            array.data_type()
        ))
    })
}

/// The time column in nanoseconds, checked: no nulls, every time in range.
fn time_array(table: &str, column: &str, array: &ArrayRef) -> Result<ArrayRef> {
    if !matches!(array.data_type(), DataType::Timestamp(..)) {
        return Err(Error::Malformed(format!(
            "table {table:?}: time column {column:?} is {}, not a Timestamp",
            array.data_type()
        )));
    }
    let array = cast(table, column, array, &time_data_type())?;
    if let Some(row) = first_null(array.as_ref()) {
        return Err(Error::Malformed(format!(
            "table {table:?}, row {row}: time column {column:?} is null"
        )));
    }
    let times = array.as_primitive::<TimestampNanosecondType>().values();
    if let Some(row) = times
        .iter()
        .position(|t| !(MIN_TIMESTAMP_NS..MAX_TIMESTAMP_NS).contains(t))
    {
        return Err(weir_model::Error::TimestampOutOfRange {
            table: table.to_string(),
            row,
            timestamp_ns: times[row],
        }
        .into());
    }
    Ok(array)
}

fn first_null(array: &dyn Array) -> Option<usize> {
    let nulls = array.logical_nulls()?;
    (nulls.null_count() > 0).then(|| nulls.iter().position(|valid| !valid).unwrap_or(0))
}

/// What the model refuses in a column's values: non-finite floats, tags
/// longer than [`MAX_TAG_VALUE_BYTES`].
fn check_values(
    table: &str,
    column: &str,
    column_type: ColumnType,
    array: &ArrayRef,
) -> Result<()> {
    match column_type {
        ColumnType::F64 => {
            let floats = array.as_primitive::<Float64Type>();
            let nulls = floats.nulls();
            let bad = floats
                .values()
                .iter()
                .enumerate()
                .find(|(row, v)| !v.is_finite() && nulls.is_none_or(|n| n.is_valid(*row)));
            if let Some((row, value)) = bad {
                return Err(weir_model::Error::NonFiniteFloat {
                    table: table.to_string(),
                    column: column.to_string(),
                    row,
                    value: *value,
                }
                .into());
            }
        }
        ColumnType::Tag => {
            let dictionary = array.as_dictionary::<Int32Type>();
            let values = dictionary.values().as_string::<i32>();
            if let Some(value) = too_long(values) {
                let row = dictionary
                    .keys()
                    .iter()
                    .position(|k| k == Some(value as i32))
                    .unwrap_or(0);
                return Err(weir_model::Error::TagValueTooLong {
                    table: table.to_string(),
                    column: column.to_string(),
                    row,
                    len: values.value(value).len(),
                    limit: MAX_TAG_VALUE_BYTES,
                }
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The first value longer than a tag may be, read from the offsets alone.
fn too_long<O: OffsetSizeTrait>(values: &GenericStringArray<O>) -> Option<usize> {
    values
        .offsets()
        .windows(2)
        .position(|w| (w[1] - w[0]).as_usize() > MAX_TAG_VALUE_BYTES)
}

#[cfg(test)]
mod tests;
