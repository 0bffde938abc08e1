//! [`Accumulator`]: groups rows by (bucket, tags) and folds them into a
//! rollup's partial aggregates.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int64Array,
    StringDictionaryBuilder, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use weir_model::{ColumnType, time_data_type};

use super::{CmpOp, Condition, FloatMerge, Function, Literal, QuantileSketch, RollupDef, Slot};

/// The id of a null tag value.
const NULL_ID: u64 = u64::MAX;

/// What one stored column takes from a raw row.
#[derive(Debug, Clone)]
enum Input {
    /// 1 per row.
    Row,
    /// 1 per row where the condition holds.
    If(Condition),
    /// The column's value as `f64`; null skipped.
    Value(String),
    /// 1 per row where the column is not null.
    NonNull(String),
}

#[derive(Debug, Clone)]
enum Cell {
    Count(i64),
    Float(Option<f64>),
    Sketch(Box<QuantileSketch>),
}

/// Folds raw rows ([`add_raw`](Self::add_raw)) or partial rows
/// ([`add_partial`](Self::add_partial)) of one rollup into one partial row
/// per (bucket, group); [`finish`](Self::finish) returns them.
pub struct Accumulator<'a> {
    def: &'a RollupDef,
    slots: Vec<(String, Slot, Input)>,
    /// Per group-by tag: value → id, and id → value.
    ids: Vec<HashMap<String, u64>>,
    values: Vec<Vec<String>>,
    /// `[bucket, tag ids…]` → group index.
    groups: HashMap<Box<[u64]>, usize>,
    /// `slots.len()` cells per group.
    cells: Vec<Cell>,
}

/// A column of a batch read as tag values: dictionary-encoded or plain.
enum TagColumn<'b> {
    Missing,
    /// Each dictionary value's id, looked up once per batch.
    Dictionary {
        keys: &'b arrow::array::Int32Array,
        ids: Vec<u64>,
    },
    Plain(&'b arrow::array::StringArray),
}

impl<'a> Accumulator<'a> {
    pub fn new(def: &'a RollupDef) -> Self {
        let mut slots = Vec::new();
        for a in &def.aggregates {
            let inputs = match &a.function {
                Function::Count => vec![Input::Row],
                Function::CountIf(c) => vec![Input::If(c.clone())],
                Function::Min(c)
                | Function::Max(c)
                | Function::Sum(c)
                | Function::QuantileSketch(c) => vec![Input::Value(c.clone())],
                Function::Avg(c) => vec![Input::Value(c.clone()), Input::NonNull(c.clone())],
            };
            for ((name, slot), input) in a.slots().into_iter().zip(inputs) {
                slots.push((name, slot, input));
            }
        }
        Self {
            def,
            slots,
            ids: vec![HashMap::new(); def.group_by.len()],
            values: vec![Vec::new(); def.group_by.len()],
            groups: HashMap::new(),
            cells: Vec::new(),
        }
    }

    /// Folds in rows of the source table; its time column is column 0.
    pub fn add_raw(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let contributions: Vec<(Contribution, FloatMerge)> = self
            .slots
            .iter()
            .map(|(_, slot, input)| {
                let how = match slot {
                    Slot::Float(how) => *how,
                    // Not a float: unused.
                    Slot::Count | Slot::Sketch => FloatMerge::Sum,
                };
                Ok((Contribution::of(input, batch)?, how))
            })
            .collect::<Result<_, String>>()?;
        self.fold(batch, |slot, row, cell| {
            let (contribution, how) = &contributions[slot];
            match cell {
                Cell::Count(n) => *n += contribution.count(row),
                Cell::Float(v) => {
                    if let Some(x) = contribution.value(row) {
                        *v = Some(merge(*v, x, *how));
                    }
                }
                Cell::Sketch(sketch) => {
                    if let Some(x) = contribution.value(row) {
                        sketch.add(x);
                    }
                }
            }
        })
    }

    /// Folds in partial rows: rows of the rollup's own table.
    pub fn add_partial(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let stored: Vec<Stored> = self
            .slots
            .iter()
            .map(|(name, slot, _)| Stored::of(batch, name, *slot))
            .collect::<Result<_, _>>()?;
        self.fold(batch, |slot, row, cell| match (cell, &stored[slot]) {
            (Cell::Count(n), Stored::Count(Some(a))) if a.is_valid(row) => *n += a.value(row),
            (Cell::Float(v), Stored::Float(Some(a), m)) if a.is_valid(row) => {
                *v = Some(merge(*v, a.value(row), *m));
            }
            (Cell::Sketch(sketch), Stored::Sketch(sketches)) => {
                if let Some(Some(partial)) = sketches.get(row) {
                    sketch.merge(partial);
                }
            }
            _ => {}
        })
    }

    /// Groups the batch's rows and calls `update(slot, row, cell)` for
    /// every slot of every row's group.
    fn fold(
        &mut self,
        batch: &RecordBatch,
        mut update: impl FnMut(usize, usize, &mut Cell),
    ) -> Result<(), String> {
        let time = batch
            .column(0)
            .as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>()
            .ok_or_else(|| {
                format!(
                    "the time column is {}, not a nanosecond timestamp",
                    batch.column(0).data_type()
                )
            })?;
        let tags: Vec<TagColumn> = self
            .def
            .group_by
            .iter()
            .enumerate()
            .map(|(i, name)| self.tag_column(batch, i, name))
            .collect::<Result<_, _>>()?;
        let bucket = self.def.bucket_ns();
        let width = self.slots.len();
        let mut key = vec![0u64; 1 + tags.len()];
        for row in 0..batch.num_rows() {
            let t = time.value(row);
            key[0] = (t - t.rem_euclid(bucket)) as u64;
            for (i, tag) in tags.iter().enumerate() {
                key[1 + i] = match tag {
                    TagColumn::Missing => NULL_ID,
                    TagColumn::Dictionary { keys, ids } => {
                        if keys.is_valid(row) {
                            // Arrow validates keys when a batch is built or
                            // decoded; a bad one is still an error, not a
                            // panic.
                            *ids.get(keys.value(row) as usize).ok_or_else(|| {
                                format!(
                                    "tag column {:?}: a dictionary key is out of range",
                                    self.def.group_by[i]
                                )
                            })?
                        } else {
                            NULL_ID
                        }
                    }
                    TagColumn::Plain(strings) => {
                        if strings.is_valid(row) {
                            intern(&mut self.ids[i], &mut self.values[i], strings.value(row))
                        } else {
                            NULL_ID
                        }
                    }
                };
            }
            let group = match self.groups.get(key.as_slice()) {
                Some(&g) => g,
                None => {
                    let g = self.groups.len();
                    self.groups.insert(key.clone().into_boxed_slice(), g);
                    self.cells
                        .extend(self.slots.iter().map(|(_, slot, _)| match slot {
                            Slot::Count => Cell::Count(0),
                            Slot::Float(_) => Cell::Float(None),
                            Slot::Sketch => Cell::Sketch(Box::default()),
                        }));
                    g
                }
            };
            let cells = &mut self.cells[group * width..(group + 1) * width];
            for (slot, cell) in cells.iter_mut().enumerate() {
                update(slot, row, cell);
            }
        }
        Ok(())
    }

    fn tag_column<'b>(
        &mut self,
        batch: &'b RecordBatch,
        i: usize,
        name: &str,
    ) -> Result<TagColumn<'b>, String> {
        let Some(column) = batch.column_by_name(name) else {
            return Ok(TagColumn::Missing);
        };
        match column.data_type() {
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                let dictionary = column.as_dictionary::<Int32Type>();
                let strings = dictionary.values().as_string::<i32>();
                let ids = (0..strings.len())
                    .map(|v| {
                        if strings.is_valid(v) {
                            intern(&mut self.ids[i], &mut self.values[i], strings.value(v))
                        } else {
                            NULL_ID
                        }
                    })
                    .collect();
                Ok(TagColumn::Dictionary {
                    keys: dictionary.keys(),
                    ids,
                })
            }
            DataType::Utf8 => Ok(TagColumn::Plain(column.as_string::<i32>())),
            other => Err(format!(
                "group_by column {name:?} is {}, not a tag or string",
                describe(other)
            )),
        }
    }

    /// The partial rows, one per (bucket, group), as a batch of the
    /// rollup's table with time column `time_column`.
    pub fn finish(self, time_column: &str) -> Result<RecordBatch, String> {
        let schema = self.schema(time_column);
        let n = self.groups.len();
        let mut keys: Vec<(&[u64], usize)> =
            self.groups.iter().map(|(k, &g)| (k.as_ref(), g)).collect();
        // Buckets in order, then groups in arrival order: deterministic.
        keys.sort_unstable_by_key(|(k, g)| (k[0] as i64, *g));
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        let times: TimestampNanosecondArray = keys.iter().map(|(k, _)| Some(k[0] as i64)).collect();
        columns.push(Arc::new(times.with_timezone(weir_model::TIME_ZONE)));
        for (i, values) in self.values.iter().enumerate() {
            let mut builder =
                StringDictionaryBuilder::<Int32Type>::with_capacity(n, values.len(), 0);
            for (k, _) in &keys {
                match k[1 + i] {
                    NULL_ID => builder.append_null(),
                    id => builder.append_value(&values[id as usize]),
                }
            }
            columns.push(Arc::new(builder.finish()));
        }
        let width = self.slots.len();
        for (slot, (_, kind, _)) in self.slots.iter().enumerate() {
            let cells = keys.iter().map(|(_, g)| &self.cells[g * width + slot]);
            let column: ArrayRef = match kind {
                Slot::Count => Arc::new(Int64Array::from_iter_values(cells.map(|c| match c {
                    Cell::Count(n) => *n,
                    _ => 0,
                }))),
                Slot::Float(_) => Arc::new(Float64Array::from_iter(cells.map(|c| match c {
                    Cell::Float(v) => *v,
                    _ => None,
                }))),
                // A sketch of no values is null, as a sum of none is.
                Slot::Sketch => Arc::new(BinaryArray::from_iter(cells.map(|c| match c {
                    Cell::Sketch(s) if s.count() > 0 => Some(s.to_bytes()),
                    _ => None,
                }))),
            };
            columns.push(column);
        }
        RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
    }

    fn schema(&self, time_column: &str) -> SchemaRef {
        let mut fields = vec![Field::new(time_column, time_data_type(), false)];
        for tag in &self.def.group_by {
            fields.push(Field::new(tag, ColumnType::Tag.data_type(), true));
        }
        for (name, slot, _) in &self.slots {
            fields.push(Field::new(name, slot.column_type().data_type(), true));
        }
        Arc::new(Schema::new(fields))
    }
}

fn intern(ids: &mut HashMap<String, u64>, values: &mut Vec<String>, value: &str) -> u64 {
    if let Some(&id) = ids.get(value) {
        return id;
    }
    let id = values.len() as u64;
    values.push(value.to_string());
    ids.insert(value.to_string(), id);
    id
}

/// The merged value of `current` and `x`. Minimum and maximum follow
/// Arrow's total order of floats (NaN above everything), as DataFusion's
/// `min` and `max` do.
fn merge(current: Option<f64>, x: f64, how: FloatMerge) -> f64 {
    match (current, how) {
        (None, _) => x,
        (Some(v), FloatMerge::Sum) => v + x,
        (Some(v), FloatMerge::Min) => {
            if x.total_cmp(&v).is_lt() {
                x
            } else {
                v
            }
        }
        (Some(v), FloatMerge::Max) => {
            if x.total_cmp(&v).is_gt() {
                x
            } else {
                v
            }
        }
    }
}

/// What one stored column gets from each raw row.
enum Contribution {
    One,
    Flags(BooleanArray),
    Values(Option<Float64Array>),
    NonNull(Option<ArrayRef>),
}

impl Contribution {
    fn of(input: &Input, batch: &RecordBatch) -> Result<Self, String> {
        Ok(match input {
            Input::Row => Contribution::One,
            Input::If(condition) => Contribution::Flags(evaluate(condition, batch)?),
            Input::NonNull(column) => Contribution::NonNull(batch.column_by_name(column).cloned()),
            Input::Value(column) => Contribution::Values(match batch.column_by_name(column) {
                None => None,
                Some(array) => Some(numbers(column, array)?),
            }),
        })
    }

    fn count(&self, row: usize) -> i64 {
        match self {
            Contribution::One => 1,
            Contribution::Flags(flags) => (flags.is_valid(row) && flags.value(row)) as i64,
            Contribution::NonNull(Some(array)) => array.is_valid(row) as i64,
            Contribution::NonNull(None) | Contribution::Values(..) => 0,
        }
    }

    fn value(&self, row: usize) -> Option<f64> {
        match self {
            Contribution::Values(Some(values)) if values.is_valid(row) => Some(values.value(row)),
            _ => None,
        }
    }
}

/// A stored column of partial rows.
enum Stored {
    Count(Option<Int64Array>),
    Float(Option<Float64Array>, FloatMerge),
    /// Each row's sketch, decoded (and so checked) before any is merged.
    Sketch(Vec<Option<QuantileSketch>>),
}

impl Stored {
    fn of(batch: &RecordBatch, name: &str, slot: Slot) -> Result<Self, String> {
        let column = batch.column_by_name(name);
        let wrong = |c: &ArrayRef| format!("stored column {name:?} is {}", c.data_type());
        Ok(match slot {
            Slot::Count => Stored::Count(match column {
                None => None,
                Some(c) => Some(c.as_primitive_opt().cloned().ok_or_else(|| wrong(c))?),
            }),
            Slot::Float(m) => Stored::Float(
                match column {
                    None => None,
                    Some(c) => Some(
                        c.as_primitive_opt::<Float64Type>()
                            .cloned()
                            .ok_or_else(|| wrong(c))?,
                    ),
                },
                m,
            ),
            Slot::Sketch => Stored::Sketch(match column {
                None => Vec::new(),
                Some(c) => {
                    let bytes = c.as_binary_opt::<i32>().ok_or_else(|| wrong(c))?;
                    bytes
                        .iter()
                        .map(|b| b.map(QuantileSketch::from_bytes).transpose())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("stored column {name:?}: {e}"))?
                }
            }),
        })
    }
}

/// A numeric column as `f64`s.
fn numbers(name: &str, array: &ArrayRef) -> Result<Float64Array, String> {
    match array.data_type() {
        DataType::Float64 | DataType::Int64 | DataType::UInt64 => {
            let cast =
                arrow::compute::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
            Ok(cast.as_primitive::<Float64Type>().clone())
        }
        other => Err(format!(
            "column {name:?} is {}; min, max, sum, avg and quantile_sketch need numbers",
            describe(other)
        )),
    }
}

/// Whether each row meets the condition; a null or missing value never does.
fn evaluate(condition: &Condition, batch: &RecordBatch) -> Result<BooleanArray, String> {
    let rows = batch.num_rows();
    let Some(column) = batch.column_by_name(&condition.column) else {
        return Ok(BooleanArray::from(vec![false; rows]));
    };
    let holds = |o: std::cmp::Ordering| match condition.op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::Ne => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::Le => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::Ge => o.is_ge(),
    };
    let mismatch = || {
        format!(
            "count_if compares column {:?}, which is {}, with {}",
            condition.column,
            describe(column.data_type()),
            condition.value
        )
    };
    Ok(match (&condition.value, column.data_type()) {
        (Literal::String(s), DataType::Dictionary(key, value))
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            let dictionary = column.as_dictionary::<Int32Type>();
            let strings = dictionary.values().as_string::<i32>();
            let by_value: Vec<bool> = (0..strings.len())
                .map(|v| strings.is_valid(v) && holds(strings.value(v).cmp(s.as_str())))
                .collect();
            let keys = dictionary.keys();
            (0..rows)
                .map(|r| {
                    let holds = by_value.get(keys.value(r) as usize).copied();
                    Some(keys.is_valid(r) && holds.unwrap_or(false))
                })
                .collect()
        }
        (Literal::String(s), DataType::Utf8) => {
            let strings = column.as_string::<i32>();
            (0..rows)
                .map(|r| Some(strings.is_valid(r) && holds(strings.value(r).cmp(s.as_str()))))
                .collect()
        }
        (Literal::Number(n), DataType::Float64 | DataType::Int64 | DataType::UInt64) => {
            let values = numbers(&condition.column, column)?;
            (0..rows)
                .map(|r| {
                    // Arrow's (and so DataFusion's) order of floats: NaN
                    // equals NaN and is above everything.
                    Some(values.is_valid(r) && holds(values.value(r).total_cmp(n)))
                })
                .collect()
        }
        (Literal::Bool(b), DataType::Boolean) => {
            let flags = column.as_boolean();
            (0..rows)
                .map(|r| Some(flags.is_valid(r) && holds(flags.value(r).cmp(b))))
                .collect()
        }
        _ => return Err(mismatch()),
    })
}

fn describe(data_type: &DataType) -> String {
    match ColumnType::from_data_type(data_type) {
        Some(t) => format!("a {t} column"),
        None => format!("of type {data_type}"),
    }
}
