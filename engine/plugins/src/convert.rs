//! Arrow ⇄ the WIT batch.
//!
//! Into the guest, a table batch becomes flat lists — values copied with
//! `memcpy`, tags as dictionary + keys, validity as Arrow's bitmap — so the
//! canonical ABI moves a few buffers per column, not a record per event.
//! Out of the guest, everything a plugin produces goes back through
//! [`WriteBatchBuilder`], the same validation every front end applies: names,
//! finite floats, timestamps, tag lengths, one type per column.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type,
};
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};

use crate::bindings::types::{
    Batch, BoolColumn, Column, ColumnValues, F64Column, I64Column, StringColumn, TagColumn,
    U64Column,
};

/// Converts a table batch (time column first) into the WIT batch.
pub fn to_wit(table: &TableBatch) -> Result<Batch, String> {
    let batch = &table.batch;
    let schema = batch.schema();
    let time = batch
        .columns()
        .first()
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| {
            format!(
                "table {:?}: first column is not the time column",
                table.table
            )
        })?;
    let mut columns = Vec::with_capacity(batch.num_columns().saturating_sub(1));
    for (field, array) in schema.fields().iter().zip(batch.columns()).skip(1) {
        columns.push(Column {
            name: field.name().clone(),
            values: column_to_wit(array).ok_or_else(|| {
                format!(
                    "table {:?}, column {:?}: type {} has no plugin form",
                    table.table,
                    field.name(),
                    field.data_type()
                )
            })?,
        });
    }
    Ok(Batch {
        table: table.table.clone(),
        time: time.values().to_vec(),
        columns,
    })
}

fn validity(nulls: Option<&NullBuffer>, len: usize) -> Vec<u8> {
    let Some(nulls) = nulls.filter(|n| n.null_count() > 0) else {
        return Vec::new();
    };
    let bits = nulls.inner();
    if bits.offset() == 0 {
        return bits.values()[..len.div_ceil(8)].to_vec();
    }
    let mut out = vec![0u8; len.div_ceil(8)];
    for row in (0..len).filter(|row| nulls.is_valid(*row)) {
        out[row / 8] |= 1 << (row % 8);
    }
    out
}

fn column_to_wit(array: &ArrayRef) -> Option<ColumnValues> {
    let len = array.len();
    let valid = validity(array.nulls(), len);
    Some(match array.data_type() {
        DataType::Dictionary(key, value)
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dict = array.as_dictionary::<Int32Type>();
            let values = dict.values().as_string::<i32>();
            let (dictionary_offsets, dictionary_data) = string_buffers(values);
            ColumnValues::Tag(TagColumn {
                dictionary_offsets,
                dictionary_data,
                // Keys of null rows are unspecified in Arrow; clamp them so a
                // guest that ignores validity still reads in bounds.
                keys: dict
                    .keys()
                    .values()
                    .iter()
                    .map(|k| (*k).clamp(0, values.len().saturating_sub(1) as i32) as u32)
                    .collect(),
                validity: valid,
            })
        }
        DataType::Float64 => ColumnValues::F64(F64Column {
            values: array.as_primitive::<Float64Type>().values().to_vec(),
            validity: valid,
        }),
        DataType::Int64 => ColumnValues::S64(I64Column {
            values: array.as_primitive::<Int64Type>().values().to_vec(),
            validity: valid,
        }),
        DataType::UInt64 => ColumnValues::U64(U64Column {
            values: array.as_primitive::<UInt64Type>().values().to_vec(),
            validity: valid,
        }),
        DataType::Boolean => ColumnValues::Bool(BoolColumn {
            values: array.as_boolean().values().iter().map(u8::from).collect(),
            validity: valid,
        }),
        DataType::Utf8 => {
            let (offsets, data) = string_buffers(array.as_string::<i32>());
            ColumnValues::String(StringColumn {
                offsets,
                data,
                validity: valid,
            })
        }
        _ => return None,
    })
}

/// A string array's offsets (rebased to 0) and bytes, as the WIT spells them.
fn string_buffers(strings: &StringArray) -> (Vec<u32>, Vec<u8>) {
    let offsets = strings.value_offsets();
    let (base, end) = (offsets[0], offsets[strings.len()]);
    (
        offsets.iter().map(|o| (o - base) as u32).collect(),
        strings.value_data()[base as usize..end as usize].to_vec(),
    )
}

/// Keeps the rows a filter chose. `kept` must be ascending, unique and in
/// range; anything else is the plugin's error.
pub fn apply_filter(table: &TableBatch, kept: &[u32]) -> Result<TableBatch, String> {
    let rows = table.batch.num_rows();
    if kept.len() == rows && kept.iter().enumerate().all(|(i, k)| *k as usize == i) {
        return Ok(table.clone());
    }
    let mut mask = vec![false; rows];
    let mut previous: Option<u32> = None;
    for &row in kept {
        if row as usize >= rows {
            return Err(format!("kept row {row} of a batch of {rows}"));
        }
        if previous.is_some_and(|p| p >= row) {
            return Err(format!(
                "kept rows are not ascending and unique at row {row}"
            ));
        }
        previous = Some(row);
        mask[row as usize] = true;
    }
    let batch = arrow::compute::filter_record_batch(&table.batch, &BooleanArray::from(mask))
        .map_err(|e| format!("applying the filter: {e}"))?;
    Ok(TableBatch {
        table: table.table.clone(),
        batch,
        first_rows: table.first_rows.clone(),
    })
}

/// Checks a column from a guest before anything reads it: every length
/// first (values against `rows`, the validity bitmap against `rows`), then
/// what the lengths make safe to look at (offsets within their bytes and
/// rising, UTF-8 cut at character boundaries, dictionary keys of valid rows
/// in range). A column that passes can be read row by row with
/// [`wit_value`] for every `row < rows` without going out of bounds.
pub fn check_column(column: &Column, rows: usize) -> Result<(), String> {
    check_values(&column.values, rows).map_err(|e| format!("column {:?}: {e}", column.name))
}

fn check_values(values: &ColumnValues, rows: usize) -> Result<(), String> {
    let (len, validity) = match values {
        ColumnValues::Tag(c) => (c.keys.len(), &c.validity),
        ColumnValues::F64(c) => (c.values.len(), &c.validity),
        ColumnValues::S64(c) => (c.values.len(), &c.validity),
        ColumnValues::U64(c) => (c.values.len(), &c.validity),
        ColumnValues::Bool(c) => (c.values.len(), &c.validity),
        // `offsets` has one entry more than there are rows.
        ColumnValues::String(c) => (c.offsets.len().saturating_sub(1), &c.validity),
    };
    if let ColumnValues::String(c) = values
        && c.offsets.len() != rows + 1
    {
        return Err(format!(
            "{} offsets for {rows} rows (one more than the rows)",
            c.offsets.len()
        ));
    }
    if len != rows {
        return Err(format!("{len} values for {rows} rows"));
    }
    // Longer than needed is harmless (the bits past the rows are never
    // read); shorter would be read out of bounds.
    if !validity.is_empty() && validity.len() < rows.div_ceil(8) {
        return Err(format!(
            "validity of {} bytes for {rows} rows (needs {})",
            validity.len(),
            rows.div_ceil(8)
        ));
    }
    match values {
        ColumnValues::Tag(c) => {
            check_offsets(&c.dictionary_offsets, &c.dictionary_data)
                .map_err(|e| format!("dictionary: {e}"))?;
            let entries = c.dictionary_offsets.len() - 1;
            if let Some((row, key)) = c
                .keys
                .iter()
                .enumerate()
                .find(|(row, key)| is_valid(&c.validity, *row) && **key as usize >= entries)
            {
                return Err(format!(
                    "row {row}: key {key} outside a dictionary of {entries}"
                ));
            }
        }
        ColumnValues::String(c) => check_offsets(&c.offsets, &c.data)?,
        ColumnValues::F64(_)
        | ColumnValues::S64(_)
        | ColumnValues::U64(_)
        | ColumnValues::Bool(_) => {}
    }
    Ok(())
}

/// `offsets` (at least one) cut `data`, valid UTF-8, at character
/// boundaries, each no lower than the one before.
fn check_offsets(offsets: &[u32], data: &[u8]) -> Result<(), String> {
    if offsets.is_empty() {
        return Err("no offsets; they start with 0".into());
    }
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Some(&last) = offsets.last()
        && last as usize > text.len()
    {
        return Err(format!("offset {last} past {} bytes", text.len()));
    }
    for pair in offsets.windows(2) {
        let (start, end) = (pair[0] as usize, pair[1] as usize);
        if start > end
            || end > text.len()
            || !text.is_char_boundary(start)
            || !text.is_char_boundary(end)
        {
            return Err(format!(
                "bad offsets {start}..{end} into {} bytes",
                text.len()
            ));
        }
    }
    Ok(())
}

/// Bit `row` of a validity bitmap; a row past a (checked-short) bitmap has
/// no value rather than panicking.
fn is_valid(validity: &[u8], row: usize) -> bool {
    validity.is_empty()
        || validity
            .get(row / 8)
            .is_some_and(|b| b & (1 << (row % 8)) != 0)
}

/// Row `row` of a column that passed [`check_column`]; `None` for a row
/// without a value. Reads with `get`, so even an unchecked column or a row
/// out of range gives `None` rather than a panic — [`check_column`] is what
/// tells a missing value from a malformed column.
pub fn wit_value(column: &ColumnValues, row: usize) -> Option<Value<'_>> {
    Some(match column {
        ColumnValues::Tag(c) => {
            is_valid(&c.validity, row).then_some(())?;
            let key = *c.keys.get(row)? as usize;
            let data = slice(&c.dictionary_offsets, &c.dictionary_data, key)?;
            Value::Tag(std::str::from_utf8(data).ok()?)
        }
        ColumnValues::F64(c) => Value::F64(valid(&c.values, &c.validity, row)?),
        ColumnValues::S64(c) => Value::I64(valid(&c.values, &c.validity, row)?),
        ColumnValues::U64(c) => Value::U64(valid(&c.values, &c.validity, row)?),
        ColumnValues::Bool(c) => Value::Bool(valid(&c.values, &c.validity, row)? != 0),
        ColumnValues::String(c) => {
            is_valid(&c.validity, row).then_some(())?;
            Value::String(std::str::from_utf8(slice(&c.offsets, &c.data, row)?).ok()?)
        }
    })
}

fn valid<T: Copy>(values: &[T], validity: &[u8], row: usize) -> Option<T> {
    is_valid(validity, row).then(|| values.get(row).copied())?
}

/// Entry `i` of an offsets + bytes buffer, if it is in bounds.
fn slice<'a>(offsets: &[u32], data: &'a [u8], i: usize) -> Option<&'a [u8]> {
    let start = *offsets.get(i)? as usize;
    let end = *offsets.get(i.checked_add(1)?)? as usize;
    data.get(start..end)
}

fn wit_type(column: &ColumnValues) -> ColumnType {
    match column {
        ColumnValues::Tag(_) => ColumnType::Tag,
        ColumnValues::F64(_) => ColumnType::F64,
        ColumnValues::S64(_) => ColumnType::I64,
        ColumnValues::U64(_) => ColumnType::U64,
        ColumnValues::Bool(_) => ColumnType::Bool,
        ColumnValues::String(_) => ColumnType::String,
    }
}

/// Row `row` of an Arrow column of one of Weir's column types.
fn arrow_value(array: &ArrayRef, column_type: ColumnType, row: usize) -> Option<Value<'_>> {
    if array.is_null(row) {
        return None;
    }
    Some(match column_type {
        ColumnType::Tag => {
            let dict = array.as_dictionary::<Int32Type>();
            let values: &StringArray = dict.values().as_string::<i32>();
            Value::Tag(values.value(dict.keys().value(row) as usize))
        }
        ColumnType::F64 => Value::F64(array.as_primitive::<Float64Type>().value(row)),
        ColumnType::I64 => Value::I64(array.as_primitive::<Int64Type>().value(row)),
        ColumnType::U64 => Value::U64(array.as_primitive::<UInt64Type>().value(row)),
        ColumnType::Bool => Value::Bool(array.as_boolean().value(row)),
        ColumnType::String => Value::String(array.as_string::<i32>().value(row)),
        // Time is the row's timestamp; binary columns are Weir's own
        // (rollup sketches) and never reach a plugin.
        ColumnType::Time | ColumnType::Binary => return None,
    })
}

/// Sizes a guest's output, for the output limit.
pub fn wit_bytes(batches: &[Batch]) -> usize {
    batches
        .iter()
        .map(|b| b.table.len() + b.time.len() * 8 + columns_bytes(&b.columns))
        .sum()
}

pub fn columns_bytes(columns: &[Column]) -> usize {
    columns
        .iter()
        .map(|c| {
            c.name.len()
                + match &c.values {
                    ColumnValues::Tag(t) => {
                        t.keys.len() * 4
                            + t.dictionary_offsets.len() * 4
                            + t.dictionary_data.len()
                            + t.validity.len()
                    }
                    ColumnValues::F64(v) => v.values.len() * 8 + v.validity.len(),
                    ColumnValues::S64(v) => v.values.len() * 8 + v.validity.len(),
                    ColumnValues::U64(v) => v.values.len() * 8 + v.validity.len(),
                    ColumnValues::Bool(v) => v.values.len() + v.validity.len(),
                    ColumnValues::String(v) => {
                        v.offsets.len() * 4 + v.data.len() + v.validity.len()
                    }
                }
        })
        .sum()
}

/// Applies an enricher's columns to a batch: a set value replaces the
/// event's, an unset one keeps it; new columns are added. The result goes
/// through the model's validation like any write.
pub fn apply_enrichment(
    table: &TableBatch,
    changes: &[Column],
    now_ns: i64,
) -> Result<TableBatch, String> {
    let rows = table.batch.num_rows();
    for column in changes {
        check_column(column, rows)?;
    }
    let schema = table.batch.schema();
    let (Some(time_field), Some(times)) = (
        schema.fields().first(),
        table
            .batch
            .columns()
            .first()
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>()),
    ) else {
        return Err(format!(
            "table {:?}: first column is not the time column",
            table.table
        ));
    };
    let time_column = time_field.name();
    let existing: Vec<(&str, ColumnType, &ArrayRef)> = schema
        .fields()
        .iter()
        .zip(table.batch.columns())
        .skip(1)
        .map(|(f, a)| {
            ColumnType::from_data_type(f.data_type())
                .map(|t| (f.name().as_str(), t, a))
                .ok_or_else(|| format!("column {:?} has type {}", f.name(), f.data_type()))
        })
        .collect::<Result<_, _>>()?;

    // For each existing column, the change that may replace its values.
    let mut replaced_by: Vec<Option<usize>> = vec![None; existing.len()];
    let mut added = Vec::new();
    for (c, column) in changes.iter().enumerate() {
        if changes[..c].iter().any(|other| other.name == column.name) {
            return Err(format!("column {:?} is set twice", column.name));
        }
        match existing
            .iter()
            .position(|(name, _, _)| *name == column.name)
        {
            Some(i) => replaced_by[i] = Some(c),
            None => added.push(c),
        }
    }

    // The table is the host's, never the plugin's: an enricher may run on
    // Weir's own `weir_events` (the events pipeline).
    let mut builder = WriteBatchBuilder::for_system_tables(now_ns);
    let t = builder
        .table(&table.table, time_column)
        .map_err(|e| e.to_string())?;
    let mut old_ids = Vec::with_capacity(existing.len());
    for (i, (name, column_type, _)) in existing.iter().enumerate() {
        let id = builder
            .column(t, name, *column_type, 0)
            .map_err(|e| e.to_string())?;
        if let Some(c) = replaced_by[i] {
            // Same name, other type: the builder reports the conflict.
            builder
                .column(t, name, wit_type(&changes[c].values), 0)
                .map_err(|e| format!("enricher: {e}"))?;
        }
        old_ids.push(id);
    }
    let mut added_ids = Vec::with_capacity(added.len());
    for &c in &added {
        let column = &changes[c];
        let id = builder
            .column(t, &column.name, wit_type(&column.values), 0)
            .map_err(|e| format!("enricher column {:?}: {e}", column.name))?;
        added_ids.push(id);
    }
    for row in 0..rows {
        builder
            .begin_point(t, row, times.value(row))
            .map_err(|e| e.to_string())?;
        for (i, (_, column_type, array)) in existing.iter().enumerate() {
            let new = replaced_by[i].and_then(|c| wit_value(&changes[c].values, row));
            if let Some(value) = new.or_else(|| arrow_value(array, *column_type, row)) {
                builder
                    .set(t, old_ids[i], row, value)
                    .map_err(|e| e.to_string())?;
            }
        }
        for (&c, id) in added.iter().zip(&added_ids) {
            if let Some(value) = wit_value(&changes[c].values, row) {
                builder.set(t, *id, row, value).map_err(|e| e.to_string())?;
            }
        }
    }
    let mut out = builder.finish().map_err(|e| e.to_string())?;
    let mut batch = out
        .pop()
        .ok_or_else(|| "the enriched batch is empty".to_string())?;
    // Error messages downstream name request rows; keep the original ones
    // for the columns that came with the request.
    for (i, first) in table.first_rows.iter().enumerate() {
        if let Some(slot) = batch.first_rows.get_mut(i) {
            *slot = *first;
        }
    }
    Ok(batch)
}

/// Turns an adapter's batches into table batches, validating every value.
pub fn adapter_output(
    batches: &[Batch],
    now_ns: i64,
    time_column_for: &dyn Fn(&str) -> String,
) -> Result<Vec<TableBatch>, String> {
    let mut builder = WriteBatchBuilder::new(now_ns);
    let mut row_base = 0;
    for batch in batches {
        let rows = batch.time.len();
        for column in &batch.columns {
            check_column(column, rows).map_err(|e| format!("table {:?}, {e}", batch.table))?;
        }
        let t = builder
            .table(&batch.table, &time_column_for(&batch.table))
            .map_err(|e| e.to_string())?;
        let mut ids = Vec::with_capacity(batch.columns.len());
        for column in &batch.columns {
            ids.push(
                builder
                    .column(t, &column.name, wit_type(&column.values), row_base)
                    .map_err(|e| e.to_string())?,
            );
        }
        for row in 0..rows {
            builder
                .begin_point(t, row_base + row, batch.time[row])
                .map_err(|e| e.to_string())?;
            for (column, id) in batch.columns.iter().zip(&ids) {
                if let Some(value) = wit_value(&column.values, row) {
                    builder
                        .set(t, *id, row_base + row, value)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        row_base += rows;
    }
    builder.finish().map_err(|e| e.to_string())
}

/// Renders a batch's rows as JSON lines, for the dead-letter table.
pub fn batch_as_json(batch: &RecordBatch) -> String {
    let mut out = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
    if writer.write(batch).and_then(|_| writer.finish()).is_err() {
        return format!("<{} rows that could not be rendered>", batch.num_rows());
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests;
