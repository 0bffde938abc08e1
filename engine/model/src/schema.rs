//! A table's column set as the catalog keeps it, and lining batches up with it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::{ColumnType, Error, Result};

/// One non-time column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// A table's schema: its time column, then tags and fields in the order they
/// first arrived. Columns are only ever added, never changed or removed, so a
/// batch written under an older schema is a projection of the current one
/// (see [`conform`]).
///
/// Columns are found by name through an index, so checking a batch costs its
/// own width, not the table's: a table grown to thousands of columns does not
/// make every later write slower, nor a wide write quadratic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredSchema", into = "StoredSchema")]
pub struct TableSchema {
    pub name: String,
    pub time_column: String,
    columns: Vec<ColumnDef>,
    /// Position in `columns` by name.
    index: HashMap<String, usize>,
}

/// The catalog's form of a [`TableSchema`]: the index is rebuilt on load.
#[derive(Serialize, Deserialize)]
struct StoredSchema {
    name: String,
    time_column: String,
    columns: Vec<ColumnDef>,
}

impl From<StoredSchema> for TableSchema {
    fn from(stored: StoredSchema) -> Self {
        let mut schema = TableSchema::new(stored.name, stored.time_column);
        schema.add_columns(stored.columns);
        schema
    }
}

impl From<TableSchema> for StoredSchema {
    fn from(schema: TableSchema) -> Self {
        StoredSchema {
            name: schema.name,
            time_column: schema.time_column,
            columns: schema.columns,
        }
    }
}

impl TableSchema {
    pub fn new(name: impl Into<String>, time_column: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            time_column: time_column.into(),
            columns: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The non-time columns, in the order they first arrived.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.index.get(name).map(|&i| &self.columns[i])
    }

    /// The tag columns, in schema order: the series key Parquet files sort by.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .filter(|c| c.column_type.is_tag())
            .map(|c| c.name.as_str())
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields = Vec::with_capacity(self.columns.len() + 1);
        fields.push(Field::new(
            &self.time_column,
            ColumnType::Time.data_type(),
            false,
        ));
        fields.extend(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.column_type.data_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// Checks a batch of this table against the schema and returns the columns
    /// it would add. Nothing is changed: the caller adds them once every table
    /// of the request has passed, so a rejected request leaves no trace.
    ///
    /// `first_rows[i]` is the request row where the batch's column `i` first
    /// appeared; it names the row in a type conflict.
    pub fn check_batch(&self, batch: &RecordBatch, first_rows: &[usize]) -> Result<Vec<ColumnDef>> {
        let schema = batch.schema();
        let mut new_columns = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let row = first_rows.get(i).copied().unwrap_or(0);
            let incoming = ColumnType::from_data_type(field.data_type()).ok_or_else(|| {
                Error::UnsupportedType {
                    table: self.name.clone(),
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                }
            })?;
            let existing = if field.name() == &self.time_column {
                Some(ColumnType::Time)
            } else {
                self.column(field.name()).map(|c| c.column_type)
            };
            match existing {
                Some(existing) if existing == incoming => {}
                Some(existing) => {
                    return Err(Error::TypeConflict {
                        table: self.name.clone(),
                        column: field.name().clone(),
                        row,
                        existing,
                        incoming,
                    });
                }
                None if incoming == ColumnType::Time => {
                    return Err(Error::TimeColumnMismatch {
                        table: self.name.clone(),
                        expected: self.time_column.clone(),
                        found: field.name().clone(),
                    });
                }
                None => new_columns.push(ColumnDef {
                    name: field.name().clone(),
                    column_type: incoming,
                }),
            }
        }
        Ok(new_columns)
    }

    /// Adds columns returned by [`check_batch`](Self::check_batch). Columns
    /// already present (added by a concurrent write) are skipped.
    pub fn add_columns(&mut self, columns: impl IntoIterator<Item = ColumnDef>) -> bool {
        let mut changed = false;
        for column in columns {
            if !self.index.contains_key(&column.name) {
                self.index.insert(column.name.clone(), self.columns.len());
                self.columns.push(column);
                changed = true;
            }
        }
        changed
    }
}

/// Lines `batch` up with `schema`: columns in schema order, with all-null
/// columns for those the batch lacks. The batch's columns must be a subset of
/// the schema's with the same types (which the write path guarantees).
pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().as_ref() == schema.as_ref() {
        return Ok(batch.clone());
    }
    let rows = batch.num_rows();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => Arc::clone(column),
            None => new_null_array(field.data_type(), rows),
        })
        .collect();
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Value, WriteBatchBuilder};

    fn batch(f: impl FnOnce(&mut WriteBatchBuilder)) -> crate::TableBatch {
        let mut b = WriteBatchBuilder::new(1);
        f(&mut b);
        b.finish().unwrap().remove(0)
    }

    #[test]
    fn check_reports_new_columns_and_conflicts() {
        let mut schema = TableSchema::new("m", "time");
        let first = batch(|b| {
            let t = b.table("m", "time").unwrap();
            let host = b.column(t, "host", ColumnType::Tag, 0).unwrap();
            b.begin_point(t, 0, 1).unwrap();
            b.set(t, host, 0, Value::Tag("a")).unwrap();
        });
        let new = schema.check_batch(&first.batch, &first.first_rows).unwrap();
        assert_eq!(new.len(), 1);
        schema.add_columns(new);

        let conflicting = batch(|b| {
            let t = b.table("m", "time").unwrap();
            b.begin_point(t, 0, 1).unwrap();
            b.begin_point(t, 1, 1).unwrap();
            let host = b.column(t, "host", ColumnType::String, 1).unwrap();
            b.set(t, host, 1, Value::String("x")).unwrap();
        });
        let err = schema
            .check_batch(&conflicting.batch, &conflicting.first_rows)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "type conflict in table \"m\", column \"host\", row 1: column is tag, value is string"
        );
    }

    #[test]
    fn conform_fills_missing_columns_with_nulls() {
        let mut schema = TableSchema::new("m", "time");
        schema.add_columns([
            ColumnDef {
                name: "a".into(),
                column_type: ColumnType::F64,
            },
            ColumnDef {
                name: "b".into(),
                column_type: ColumnType::Tag,
            },
        ]);
        let only_b = batch(|b| {
            let t = b.table("m", "time").unwrap();
            let c = b.column(t, "b", ColumnType::Tag, 0).unwrap();
            b.begin_point(t, 0, 1).unwrap();
            b.set(t, c, 0, Value::Tag("x")).unwrap();
        });
        let out = conform(&only_b.batch, &schema.arrow_schema()).unwrap();
        assert_eq!(out.schema(), schema.arrow_schema());
        assert_eq!(out.column(1).null_count(), 1);
        assert_eq!(out.column(2).null_count(), 0);
    }
}
