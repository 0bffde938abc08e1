//! Building batches one event at a time: the output of adapters and
//! enrichers.

use std::collections::HashMap;

use crate::types::{
    Batch, BoolColumn, Column, ColumnValues, F64Column, I64Column, StringColumn, TagColumn,
    U64Column,
};
use crate::view::Value;

/// Collects events for one or more tables and turns them into batches.
///
/// Events missing a tag or field are null there. A name used with two types
/// (a tag in one event, a field in another, or `f64` then `i64`) is an error
/// reported by [`finish`](Self::finish), naming the table, column and event.
///
/// ```
/// use weir_sdk::{Events, EventsBuilder};
///
/// let mut out = EventsBuilder::new();
/// out.event("cpu", 1_700_000_000_000_000_000)
///     .tag("host", "web-1")
///     .field_f64("usage", 0.42)
///     .field_bool("throttled", false);
/// let batches = out.finish().unwrap();
/// assert_eq!(batches.len(), 1);
/// let cpu = Events::new(&batches[0]).unwrap();
/// assert_eq!(cpu.event(0).field_f64("usage"), Some(0.42));
///
/// let mut bad = EventsBuilder::new();
/// bad.event("cpu", 1).field_f64("usage", 0.5);
/// bad.event("cpu", 2).field_i64("usage", 1);
/// assert!(bad.finish().unwrap_err().contains("usage"));
/// ```
#[derive(Debug, Default)]
pub struct EventsBuilder {
    tables: Vec<TableOut>,
    by_name: HashMap<String, usize>,
    error: Option<String>,
}

#[derive(Debug)]
struct TableOut {
    name: String,
    time: Vec<i64>,
    columns: ColumnsBuilder,
}

impl EventsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new event in `table` at `time_ns` (nanoseconds since the Unix
    /// epoch; 0 means "now" by the server's clock).
    pub fn event(&mut self, table: &str, time_ns: i64) -> EventBuilder<'_> {
        let index = match self.by_name.get(table) {
            Some(index) => *index,
            None => {
                self.tables.push(TableOut {
                    name: table.to_string(),
                    time: Vec::new(),
                    columns: ColumnsBuilder::default(),
                });
                self.by_name
                    .insert(table.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        let out = &mut self.tables[index];
        out.time.push(time_ns);
        let row = out.time.len() - 1;
        EventBuilder {
            columns: &mut out.columns,
            row,
            error: &mut self.error,
            table: &out.name,
        }
    }

    /// Events added so far, over all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.time.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One batch per table, in order of first appearance.
    pub fn finish(self) -> Result<Vec<Batch>, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        Ok(self
            .tables
            .into_iter()
            .map(|t| {
                let rows = t.time.len();
                Batch {
                    table: t.name,
                    time: t.time,
                    columns: t.columns.finish(rows),
                }
            })
            .collect())
    }
}

/// The event last started by [`EventsBuilder::event`]; set its tags and
/// fields by chaining.
pub struct EventBuilder<'a> {
    columns: &'a mut ColumnsBuilder,
    row: usize,
    error: &'a mut Option<String>,
    table: &'a str,
}

impl EventBuilder<'_> {
    fn set(&mut self, name: &str, value: Value<'_>) -> &mut Self {
        if let Err(e) = self.columns.set(self.row, name, value)
            && self.error.is_none()
        {
            *self.error = Some(format!("table {:?}, event {}: {e}", self.table, self.row));
        }
        self
    }

    pub fn tag(&mut self, name: &str, value: &str) -> &mut Self {
        self.set(name, Value::Tag(value))
    }

    pub fn field_f64(&mut self, name: &str, value: f64) -> &mut Self {
        self.set(name, Value::F64(value))
    }

    pub fn field_i64(&mut self, name: &str, value: i64) -> &mut Self {
        self.set(name, Value::I64(value))
    }

    pub fn field_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.set(name, Value::U64(value))
    }

    pub fn field_bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.set(name, Value::Bool(value))
    }

    pub fn field_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.set(name, Value::String(value))
    }

    /// Sets a tag or field from a [`Value`], e.g. one read from another event.
    pub fn value(&mut self, name: &str, value: Value<'_>) -> &mut Self {
        self.set(name, value)
    }
}

/// Columns of a batch under construction, filled row by row; rows a column
/// skips are null.
#[derive(Debug, Default)]
pub(crate) struct ColumnsBuilder {
    columns: Vec<ColumnBuilder>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
struct ColumnBuilder {
    name: String,
    data: Data,
    /// One entry per row filled so far.
    valid: Vec<bool>,
}

#[derive(Debug)]
enum Data {
    Tag {
        dictionary: Vec<String>,
        lookup: HashMap<String, u32>,
        keys: Vec<u32>,
    },
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<u8>),
    String {
        offsets: Vec<u32>,
        data: Vec<u8>,
    },
}

fn kind_name(value: &Value<'_>) -> &'static str {
    match value {
        Value::Tag(_) => "tag",
        Value::F64(_) => "f64",
        Value::I64(_) => "i64",
        Value::U64(_) => "u64",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
    }
}

impl Data {
    fn for_value(value: &Value<'_>) -> Self {
        match value {
            Value::Tag(_) => Data::Tag {
                dictionary: Vec::new(),
                lookup: HashMap::new(),
                keys: Vec::new(),
            },
            Value::F64(_) => Data::F64(Vec::new()),
            Value::I64(_) => Data::I64(Vec::new()),
            Value::U64(_) => Data::U64(Vec::new()),
            Value::Bool(_) => Data::Bool(Vec::new()),
            Value::String(_) => Data::String {
                offsets: vec![0],
                data: Vec::new(),
            },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Data::Tag { .. } => "tag",
            Data::F64(_) => "f64",
            Data::I64(_) => "i64",
            Data::U64(_) => "u64",
            Data::Bool(_) => "bool",
            Data::String { .. } => "string",
        }
    }

    fn push_null(&mut self) {
        match self {
            Data::Tag { keys, .. } => keys.push(0),
            Data::F64(v) => v.push(0.0),
            Data::I64(v) => v.push(0),
            Data::U64(v) => v.push(0),
            Data::Bool(v) => v.push(0),
            Data::String { offsets, data } => offsets.push(data.len() as u32),
        }
    }

    fn pop(&mut self) {
        match self {
            Data::Tag { keys, .. } => {
                keys.pop();
            }
            Data::F64(v) => {
                v.pop();
            }
            Data::I64(v) => {
                v.pop();
            }
            Data::U64(v) => {
                v.pop();
            }
            Data::Bool(v) => {
                v.pop();
            }
            Data::String { offsets, data } => {
                offsets.pop();
                data.truncate(*offsets.last().unwrap_or(&0) as usize);
            }
        }
    }

    /// Appends `value`, whose kind was checked to match.
    fn push(&mut self, value: Value<'_>) {
        match (self, value) {
            (
                Data::Tag {
                    dictionary,
                    lookup,
                    keys,
                },
                Value::Tag(v),
            ) => {
                let key = *lookup.entry(v.to_string()).or_insert_with(|| {
                    dictionary.push(v.to_string());
                    (dictionary.len() - 1) as u32
                });
                keys.push(key);
            }
            (Data::F64(values), Value::F64(v)) => values.push(v),
            (Data::I64(values), Value::I64(v)) => values.push(v),
            (Data::U64(values), Value::U64(v)) => values.push(v),
            (Data::Bool(values), Value::Bool(v)) => values.push(u8::from(v)),
            (Data::String { offsets, data }, Value::String(v)) => {
                data.extend_from_slice(v.as_bytes());
                offsets.push(data.len() as u32);
            }
            _ => unreachable!("kinds are checked before push"),
        }
    }
}

impl ColumnsBuilder {
    /// Sets column `name` of `row`. Rows must be set in ascending order;
    /// setting the same row twice keeps the last value.
    pub(crate) fn set(&mut self, row: usize, name: &str, value: Value<'_>) -> Result<(), String> {
        let index = match self.by_name.get(name) {
            Some(index) => *index,
            None => {
                self.columns.push(ColumnBuilder {
                    name: name.to_string(),
                    data: Data::for_value(&value),
                    valid: Vec::new(),
                });
                self.by_name
                    .insert(name.to_string(), self.columns.len() - 1);
                self.columns.len() - 1
            }
        };
        let column = &mut self.columns[index];
        if column.data.kind() != kind_name(&value) {
            return Err(format!(
                "column {name:?} is {} but was given {}",
                column.data.kind(),
                kind_name(&value)
            ));
        }
        if column.valid.len() == row + 1 {
            // Set again in the same row: the last value wins.
            column.data.pop();
            column.valid.pop();
        }
        column.pad_to(row);
        column.data.push(value);
        column.valid.push(true);
        Ok(())
    }

    pub(crate) fn finish(self, rows: usize) -> Vec<Column> {
        self.columns
            .into_iter()
            .map(|mut c| {
                c.pad_to(rows);
                c.finish()
            })
            .collect()
    }
}

impl ColumnBuilder {
    fn pad_to(&mut self, rows: usize) {
        while self.valid.len() < rows {
            self.data.push_null();
            self.valid.push(false);
        }
    }

    fn finish(self) -> Column {
        let validity = if self.valid.iter().all(|v| *v) {
            Vec::new()
        } else {
            let mut bits = vec![0u8; self.valid.len().div_ceil(8)];
            for (row, _) in self.valid.iter().enumerate().filter(|(_, v)| **v) {
                bits[row / 8] |= 1 << (row % 8);
            }
            bits
        };
        let values = match self.data {
            Data::Tag {
                dictionary, keys, ..
            } => {
                let mut dictionary_offsets = Vec::with_capacity(dictionary.len() + 1);
                let mut dictionary_data = Vec::new();
                dictionary_offsets.push(0);
                for value in &dictionary {
                    dictionary_data.extend_from_slice(value.as_bytes());
                    dictionary_offsets.push(dictionary_data.len() as u32);
                }
                ColumnValues::Tag(TagColumn {
                    dictionary_offsets,
                    dictionary_data,
                    keys,
                    validity,
                })
            }
            Data::F64(values) => ColumnValues::F64(F64Column { values, validity }),
            Data::I64(values) => ColumnValues::S64(I64Column { values, validity }),
            Data::U64(values) => ColumnValues::U64(U64Column { values, validity }),
            Data::Bool(values) => ColumnValues::Bool(BoolColumn { values, validity }),
            Data::String { offsets, data } => ColumnValues::String(StringColumn {
                offsets,
                data,
                validity,
            }),
        };
        Column {
            name: self.name,
            values,
        }
    }
}
