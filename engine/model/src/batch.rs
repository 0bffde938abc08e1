//! Row-at-a-time construction of column-major table batches.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondArray, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::column::TagKey;
use crate::{
    ColumnType, Error, MAX_TAG_VALUE_BYTES, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, NameKind, Result,
    TIME_ZONE, Value, check_not_system_table, validate_name,
};

/// How much one write request may build. A request's memory is its cells
/// (rows × columns of each table, nulls included: Arrow stores a slot for
/// every null), so a sparse request — each row bringing new columns — is
/// bounded here rather than by its size on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Distinct tables one request may write.
    pub max_tables: usize,
    /// Distinct columns (over all its tables) one request may write.
    pub max_columns: usize,
    /// Cells one request may build.
    pub max_cells: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_tables: 1_000,
            max_columns: 10_000,
            // A set cell costs at least two bytes on the wire (a key and a
            // value index), so a dense request of the default 64 MiB
            // message limit stays under this; about 256 MiB of Arrow at
            // worst.
            max_cells: 32 << 20,
        }
    }
}

/// Index of a table within one [`WriteBatchBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableId(usize);

/// Index of a column within one table of a [`WriteBatchBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnId(usize);

/// One table's share of a write: an Arrow batch whose first column is the
/// table's time column, followed by its tags and fields in order of first
/// appearance.
#[derive(Debug, Clone)]
pub struct TableBatch {
    pub table: String,
    pub batch: RecordBatch,
    /// For each column of `batch` (aligned with its schema), the request row
    /// where it first appeared — so a conflict with the catalog can name a row.
    pub first_rows: Vec<usize>,
}

/// Collects the points of one write request into one Arrow batch per table.
///
/// Rows are appended with [`begin_point`](Self::begin_point) followed by
/// [`set`](Self::set) for each tag and field. Columns a point leaves out are
/// null. Every call validates its input; the first error fails the whole
/// request, which is how Weir keeps writes atomic.
///
/// Protocols whose convention is to drop a bad line and keep the rest
/// (Influx line protocol, Prometheus remote write) build with
/// [`dropping_bad_points`](Self::dropping_bad_points) and
/// [`check`](Self::check) every value of a point before they begin it: a
/// point that fails there leaves nothing behind. A column it added keeps no
/// type and no slot in the result until some point gives it a value.
///
/// ```
/// use weir_model::{Value, WriteBatchBuilder};
///
/// let mut builder = WriteBatchBuilder::new(1_700_000_000_000_000_000);
/// let t = builder.table("service_metrics", "recorded_at").unwrap();
/// let service = builder.column(t, "service_name", weir_model::ColumnType::Tag, 0).unwrap();
/// let ms = builder.column(t, "response_ms", weir_model::ColumnType::F64, 0).unwrap();
/// builder.begin_point(t, 0, 0).unwrap();
/// builder.set(t, service, 0, Value::Tag("api")).unwrap();
/// builder.set(t, ms, 0, Value::F64(12.5)).unwrap();
/// let batches = builder.finish().unwrap();
/// assert_eq!(batches[0].batch.num_rows(), 1);
/// assert_eq!(batches[0].batch.schema().field(0).name(), "recorded_at");
/// ```
pub struct WriteBatchBuilder {
    now_ns: i64,
    tables: Vec<TableBuilder>,
    by_name: HashMap<String, TableId>,
    limits: WriteLimits,
    /// Whether `weir_…` tables may be written: only by Weir itself.
    system: bool,
    /// Whether points may be dropped after their columns were added: see
    /// [`dropping_bad_points`](Self::dropping_bad_points).
    drops_points: bool,
    columns: usize,
    cells: usize,
}

impl WriteBatchBuilder {
    /// `now_ns` replaces timestamps of `0` ("server time"). Default
    /// [`WriteLimits`]; system tables refused.
    pub fn new(now_ns: i64) -> Self {
        Self {
            now_ns,
            tables: Vec::new(),
            by_name: HashMap::new(),
            limits: WriteLimits::default(),
            system: false,
            drops_points: false,
            columns: 0,
            cells: 0,
        }
    }

    /// A builder for the rows Weir writes to its own `weir_…` tables (dead
    /// letters, alerts). Never hand one to input from outside.
    pub fn for_system_tables(now_ns: i64) -> Self {
        Self {
            system: true,
            ..Self::new(now_ns)
        }
    }

    pub fn with_limits(mut self, limits: WriteLimits) -> Self {
        self.limits = limits;
        self
    }

    /// For decoders that drop a bad point and keep the rest: a column that
    /// no point has given a value yet may still change type (a dropped
    /// point added it), and is left out of the result if none ever does.
    /// Without this, every column added is in the result, null or not, as
    /// Weir's own writers declare them.
    pub fn dropping_bad_points(mut self) -> Self {
        self.drops_points = true;
        self
    }

    /// Looks up or starts the batch of table `name`, whose time column is
    /// `time_column`.
    pub fn table(&mut self, name: &str, time_column: &str) -> Result<TableId> {
        if let Some(id) = self.by_name.get(name) {
            return Ok(*id);
        }
        validate_name(NameKind::Table, name)?;
        if !self.system {
            check_not_system_table(name)?;
        }
        if self.tables.len() >= self.limits.max_tables {
            return Err(Error::TooManyTables {
                table: name.to_string(),
                limit: self.limits.max_tables,
            });
        }
        let id = TableId(self.tables.len());
        self.tables.push(TableBuilder::new(name, time_column));
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// Looks up or adds column `name` of type `column_type` to a table.
    /// `row` is the request row asking for it, for error messages.
    pub fn column(
        &mut self,
        table: TableId,
        name: &str,
        column_type: ColumnType,
        row: usize,
    ) -> Result<ColumnId> {
        let builder = &mut self.tables[table.0];
        if let Some(id) = builder.existing_column(name, column_type, row, self.drops_points)? {
            return Ok(id);
        }
        if self.columns >= self.limits.max_columns {
            return Err(Error::TooManyColumns {
                table: builder.name.clone(),
                column: name.to_string(),
                row,
                limit: self.limits.max_columns,
            });
        }
        // The new column holds a slot (a null) for every point so far.
        let cells = self.cells + builder.times.len();
        if cells > self.limits.max_cells {
            return Err(Error::TooManyCells {
                table: builder.name.clone(),
                row,
                limit: self.limits.max_cells,
            });
        }
        let id = builder.new_column(name, column_type, row)?;
        self.columns += 1;
        self.cells = cells;
        Ok(id)
    }

    /// Whether `value` may be [`set`](Self::set) in `column` of the next
    /// point of `table`: its type, finiteness and length. Changes nothing.
    pub fn check(
        &self,
        table: TableId,
        column: ColumnId,
        row: usize,
        value: &Value<'_>,
    ) -> Result<()> {
        self.tables[table.0].check(column, row, value)
    }

    /// Starts a new point in `table`. `row` is its index in the request.
    pub fn begin_point(&mut self, table: TableId, row: usize, timestamp_ns: i64) -> Result<()> {
        let timestamp_ns = if timestamp_ns == 0 {
            self.now_ns
        } else {
            timestamp_ns
        };
        let builder = &mut self.tables[table.0];
        if !(MIN_TIMESTAMP_NS..MAX_TIMESTAMP_NS).contains(&timestamp_ns) {
            return Err(Error::TimestampOutOfRange {
                table: builder.name.clone(),
                row,
                timestamp_ns,
            });
        }
        // A point holds a slot in every column of its table, and its time.
        let cells = self.cells + builder.columns.len() + 1;
        if cells > self.limits.max_cells {
            return Err(Error::TooManyCells {
                table: builder.name.clone(),
                row,
                limit: self.limits.max_cells,
            });
        }
        self.cells = cells;
        builder.times.push(timestamp_ns);
        Ok(())
    }

    /// Sets a column of the point last begun in `table`.
    pub fn set(
        &mut self,
        table: TableId,
        column: ColumnId,
        row: usize,
        value: Value<'_>,
    ) -> Result<()> {
        self.tables[table.0].set(column, row, value)
    }

    /// Total points appended so far, over all tables.
    pub fn num_rows(&self) -> usize {
        self.tables.iter().map(|t| t.times.len()).sum()
    }

    pub fn finish(self) -> Result<Vec<TableBatch>> {
        let prune = self.drops_points;
        self.tables
            .into_iter()
            .filter(|t| !t.times.is_empty())
            .map(|t| t.finish(prune))
            .collect()
    }
}

struct TableBuilder {
    name: String,
    time_column: String,
    times: Vec<i64>,
    columns: Vec<ColumnBuilder>,
    by_name: HashMap<String, ColumnId>,
}

impl TableBuilder {
    fn new(name: &str, time_column: &str) -> Self {
        Self {
            name: name.to_string(),
            time_column: time_column.to_string(),
            times: Vec::new(),
            columns: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// The column `name` if the table has it already, checked for `column_type`.
    /// `retype`: a column without values may change type.
    fn existing_column(
        &mut self,
        name: &str,
        column_type: ColumnType,
        row: usize,
        retype: bool,
    ) -> Result<Option<ColumnId>> {
        let Some(&id) = self.by_name.get(name) else {
            return Ok(None);
        };
        let column = &mut self.columns[id.0];
        if column.column_type() != column_type {
            // Added by a point that was then dropped: no value has fixed
            // its type yet.
            if retype
                && column.values == 0
                && let Some(data) = ColumnData::new(column_type)
            {
                column.data = data;
                column.filled = 0;
                column.first_row = row;
                return Ok(Some(id));
            }
            return Err(self.conflict(id, row, column_type));
        }
        Ok(Some(id))
    }

    fn new_column(&mut self, name: &str, column_type: ColumnType, row: usize) -> Result<ColumnId> {
        validate_name(NameKind::Column, name)?;
        let Some(data) = ColumnData::new(column_type) else {
            if column_type == ColumnType::Binary {
                return Err(Error::UnsupportedType {
                    table: self.name.clone(),
                    column: name.to_string(),
                    data_type: DataType::Binary.to_string(),
                });
            }
            // The time column is the point's timestamp, never a tag or field.
            return Err(Error::TimeColumnReused {
                table: self.name.clone(),
                column: name.to_string(),
                row,
            });
        };
        if name == self.time_column {
            return Err(Error::TimeColumnReused {
                table: self.name.clone(),
                column: name.to_string(),
                row,
            });
        }
        let id = ColumnId(self.columns.len());
        self.columns.push(ColumnBuilder {
            name: name.to_string(),
            first_row: row,
            filled: 0,
            values: 0,
            data,
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn conflict(&self, column: ColumnId, row: usize, incoming: ColumnType) -> Error {
        let column = &self.columns[column.0];
        Error::TypeConflict {
            table: self.name.clone(),
            column: column.name.clone(),
            row,
            existing: column.column_type(),
            incoming,
        }
    }

    /// Why `value` cannot go into `column` of a point, if it cannot.
    fn check(&self, column_id: ColumnId, row: usize, value: &Value<'_>) -> Result<()> {
        let column = &self.columns[column_id.0];
        if column.column_type() != value.column_type() {
            return Err(self.conflict(column_id, row, value.column_type()));
        }
        match *value {
            Value::Tag(v) if v.len() > MAX_TAG_VALUE_BYTES => Err(Error::TagValueTooLong {
                table: self.name.clone(),
                column: column.name.clone(),
                row,
                len: v.len(),
                limit: MAX_TAG_VALUE_BYTES,
            }),
            Value::F64(v) if !v.is_finite() => Err(Error::NonFiniteFloat {
                table: self.name.clone(),
                column: column.name.clone(),
                row,
                value: v,
            }),
            _ => Ok(()),
        }
    }

    fn set(&mut self, column_id: ColumnId, row: usize, value: Value<'_>) -> Result<()> {
        // The point being built is the last one begun.
        let point = self.times.len().saturating_sub(1);
        if self.columns[column_id.0].filled > point {
            return Err(Error::DuplicateColumn {
                table: self.name.clone(),
                column: self.columns[column_id.0].name.clone(),
                row,
            });
        }
        self.check(column_id, row, &value)?;
        let column = &mut self.columns[column_id.0];
        column.pad_nulls(point);
        let appended = match (&mut column.data, value) {
            // Fails only past 2^31 distinct values in one batch.
            (ColumnData::Tag(b), Value::Tag(v)) => {
                b.append(v).map(|_| true).map_err(|source| Error::Arrow {
                    table: self.name.clone(),
                    source,
                })?
            }
            (ColumnData::F64(b), Value::F64(v)) => {
                b.append_value(v);
                true
            }
            (ColumnData::I64(b), Value::I64(v)) => {
                b.append_value(v);
                true
            }
            (ColumnData::U64(b), Value::U64(v)) => {
                b.append_value(v);
                true
            }
            (ColumnData::Bool(b), Value::Bool(v)) => {
                b.append_value(v);
                true
            }
            (ColumnData::String(b), Value::String(v)) => {
                b.append_value(v);
                true
            }
            _ => false,
        };
        if !appended {
            return Err(self.conflict(column_id, row, value.column_type()));
        }
        column.filled = point + 1;
        column.values += 1;
        Ok(())
    }

    /// `prune`: leave out columns without a value.
    fn finish(self, prune: bool) -> Result<TableBatch> {
        let rows = self.times.len();
        let mut fields = Vec::with_capacity(self.columns.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        let mut first_rows = Vec::with_capacity(self.columns.len() + 1);
        fields.push(Field::new(
            &self.time_column,
            ColumnType::Time.data_type(),
            false,
        ));
        arrays.push(Arc::new(
            TimestampNanosecondArray::from(self.times).with_timezone(TIME_ZONE),
        ));
        first_rows.push(0);
        // A column only dropped points asked for is no column at all.
        for mut column in self.columns.into_iter().filter(|c| !prune || c.values > 0) {
            column.pad_nulls(rows);
            fields.push(Field::new(
                &column.name,
                column.column_type().data_type(),
                true,
            ));
            first_rows.push(column.first_row);
            arrays.push(column.data.finish());
        }
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|source| {
                Error::Arrow {
                    table: self.name.clone(),
                    source,
                }
            })?;
        Ok(TableBatch {
            table: self.name,
            batch,
            first_rows,
        })
    }
}

struct ColumnBuilder {
    name: String,
    first_row: usize,
    /// Points of the table this column has a value (or null) for.
    filled: usize,
    /// Non-null values set.
    values: usize,
    data: ColumnData,
}

impl ColumnBuilder {
    fn column_type(&self) -> ColumnType {
        self.data.column_type()
    }

    fn pad_nulls(&mut self, upto: usize) {
        if self.filled < upto {
            self.data.append_nulls(upto - self.filled);
            self.filled = upto;
        }
    }
}

enum ColumnData {
    Tag(StringDictionaryBuilder<TagKey>),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
    String(StringBuilder),
}

impl ColumnData {
    /// `None` for [`ColumnType::Time`] (timestamps are not a column value)
    /// and [`ColumnType::Binary`] (Weir's own; no point carries one).
    fn new(column_type: ColumnType) -> Option<Self> {
        Some(match column_type {
            ColumnType::Time | ColumnType::Binary => return None,
            ColumnType::Tag => ColumnData::Tag(StringDictionaryBuilder::new()),
            ColumnType::F64 => ColumnData::F64(Float64Builder::new()),
            ColumnType::I64 => ColumnData::I64(Int64Builder::new()),
            ColumnType::U64 => ColumnData::U64(UInt64Builder::new()),
            ColumnType::Bool => ColumnData::Bool(BooleanBuilder::new()),
            ColumnType::String => ColumnData::String(StringBuilder::new()),
        })
    }

    fn column_type(&self) -> ColumnType {
        match self {
            ColumnData::Tag(_) => ColumnType::Tag,
            ColumnData::F64(_) => ColumnType::F64,
            ColumnData::I64(_) => ColumnType::I64,
            ColumnData::U64(_) => ColumnType::U64,
            ColumnData::Bool(_) => ColumnType::Bool,
            ColumnData::String(_) => ColumnType::String,
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            ColumnData::Tag(b) => {
                for _ in 0..n {
                    b.append_null();
                }
            }
            ColumnData::F64(b) => b.append_nulls(n),
            ColumnData::I64(b) => b.append_nulls(n),
            ColumnData::U64(b) => b.append_nulls(n),
            ColumnData::Bool(b) => b.append_nulls(n),
            ColumnData::String(b) => b.append_nulls(n),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnData::Tag(mut b) => Arc::new(b.finish()),
            ColumnData::F64(mut b) => Arc::new(b.finish()),
            ColumnData::I64(mut b) => Arc::new(b.finish()),
            ColumnData::U64(mut b) => Arc::new(b.finish()),
            ColumnData::Bool(mut b) => Arc::new(b.finish()),
            ColumnData::String(mut b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;

    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn sparse_columns_are_null_padded() {
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "time").unwrap();
        let x = b.column(t, "x", ColumnType::F64, 0).unwrap();
        b.begin_point(t, 0, 5).unwrap();
        b.begin_point(t, 1, 6).unwrap();
        b.set(t, x, 1, Value::F64(1.5)).unwrap();
        b.begin_point(t, 2, 0).unwrap();
        let out = b.finish().unwrap();
        let batch = &out[0].batch;
        assert_eq!(batch.num_rows(), 3);
        let xs = batch.column(1).as_primitive::<Float64Type>();
        assert!(xs.is_null(0));
        assert_eq!(xs.value(1), 1.5);
        assert!(xs.is_null(2));
        let times = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(times.value(2), NOW, "0 means server time");
    }

    #[test]
    fn conflicting_types_in_one_request_name_the_row() {
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "time").unwrap();
        let x = b.column(t, "x", ColumnType::F64, 0).unwrap();
        b.begin_point(t, 0, 1).unwrap();
        b.set(t, x, 0, Value::F64(1.0)).unwrap();
        let err = b.column(t, "x", ColumnType::I64, 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "type conflict in table \"m\", column \"x\", row 7: column is f64, value is i64"
        );
    }

    #[test]
    fn value_of_wrong_type_is_a_conflict() {
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "time").unwrap();
        let x = b.column(t, "x", ColumnType::Tag, 0).unwrap();
        b.begin_point(t, 0, 1).unwrap();
        let err = b.set(t, x, 3, Value::Bool(true)).unwrap_err();
        assert!(matches!(err, Error::TypeConflict { row: 3, .. }), "{err}");
    }

    #[test]
    fn rejects_non_finite_floats_time_column_reuse_and_duplicates() {
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "recorded_at").unwrap();
        let x = b.column(t, "x", ColumnType::F64, 0).unwrap();
        b.begin_point(t, 0, 1).unwrap();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                b.set(t, x, 0, Value::F64(v)),
                Err(Error::NonFiniteFloat { .. })
            ));
        }
        b.set(t, x, 0, Value::F64(1.0)).unwrap();
        assert!(matches!(
            b.set(t, x, 0, Value::F64(2.0)),
            Err(Error::DuplicateColumn { .. })
        ));
        assert!(matches!(
            b.column(t, "recorded_at", ColumnType::I64, 0),
            Err(Error::TimeColumnReused { .. })
        ));
    }

    #[test]
    fn rejects_timestamps_out_of_range() {
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "time").unwrap();
        for ts in [-1, MAX_TIMESTAMP_NS, i64::MAX, i64::MIN] {
            assert!(matches!(
                b.begin_point(t, 0, ts),
                Err(Error::TimestampOutOfRange { .. })
            ));
        }
        b.begin_point(t, 0, MAX_TIMESTAMP_NS - 1).unwrap();
    }

    #[test]
    fn one_batch_per_table() {
        let mut b = WriteBatchBuilder::new(NOW);
        let a = b.table("a", "time").unwrap();
        let c = b.table("c", "ts").unwrap();
        b.begin_point(a, 0, 1).unwrap();
        b.begin_point(c, 1, 2).unwrap();
        b.begin_point(a, 2, 3).unwrap();
        let out = b.finish().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].batch.num_rows(), 2);
        assert_eq!(out[1].batch.schema().field(0).name(), "ts");
        let _ = out[1]
            .batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
            .len();
    }

    #[test]
    fn a_point_dropped_after_check_leaves_no_column_and_no_type() {
        let mut b = WriteBatchBuilder::new(NOW).dropping_bad_points();
        let t = b.table("m", "time").unwrap();
        // Line 0 adds `x` as f64, then fails its check on `y`: dropped.
        let x = b.column(t, "x", ColumnType::F64, 0).unwrap();
        let y = b.column(t, "y", ColumnType::F64, 0).unwrap();
        b.check(t, x, 0, &Value::F64(1.0)).unwrap();
        let err = b.check(t, y, 0, &Value::F64(f64::NAN)).unwrap_err();
        assert!(matches!(err, Error::NonFiniteFloat { .. }), "{err}");
        // Line 1 may give `x` another type: no value has fixed it.
        let x = b.column(t, "x", ColumnType::I64, 1).unwrap();
        b.check(t, x, 1, &Value::I64(7)).unwrap();
        b.begin_point(t, 1, 5).unwrap();
        b.set(t, x, 1, Value::I64(7)).unwrap();
        // Now it has a value, and its type holds.
        let err = b.column(t, "x", ColumnType::F64, 2).unwrap_err();
        assert!(matches!(err, Error::TypeConflict { .. }), "{err}");

        let out = b.finish().unwrap();
        let schema = out[0].batch.schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["time", "x"], "`y` never had a value");
        assert_eq!(out[0].batch.num_rows(), 1);
        assert_eq!(out[0].first_rows, [0, 1]);

        // Weir's own writers keep every column they declare, null or not,
        // and its type.
        let mut b = WriteBatchBuilder::new(NOW);
        let t = b.table("m", "time").unwrap();
        b.column(t, "declared", ColumnType::String, 0).unwrap();
        assert!(b.column(t, "declared", ColumnType::I64, 0).is_err());
        b.begin_point(t, 0, 5).unwrap();
        let out = b.finish().unwrap();
        assert_eq!(out[0].batch.schema().field(1).name(), "declared");
        assert_eq!(out[0].batch.column(1).null_count(), 1);
    }
}
