//! What the decoders that drop bad points share: each table of a request
//! looked up once (its builder id, its stored schema), and columns checked
//! against the stored types, so a conflict with stored data drops the point
//! instead of failing the write when the store sees it.

use std::collections::HashMap;

use weir_model::{ColumnId, ColumnType, TableId, TableSchema, WriteBatchBuilder};

use crate::{Rejected, Tables};

/// Why a point (a line, a series) was not added, and so whether the
/// decoder drops it or fails the request.
pub(crate) enum PointError {
    /// The point is wrong in a way only its protocol knows (does not
    /// parse, has no metric name): dropped.
    Dropped(String),
    /// A rule of the model: dropped if it concerns only this point (see
    /// [`is_point_error`]), else the request fails.
    Invalid(weir_model::Error),
    /// Met after the point began: it cannot be taken back, so the request
    /// fails.
    Fatal(weir_model::Error),
}

impl From<weir_model::Error> for PointError {
    fn from(e: weir_model::Error) -> Self {
        PointError::Invalid(e)
    }
}

impl PointError {
    /// Records `points` dropped at `at` in `rejected`, or hands back the
    /// error that fails the whole request.
    pub fn drop_or_fail(
        self,
        rejected: &mut Rejected,
        at: usize,
        points: u64,
    ) -> Result<(), weir_model::Error> {
        match self {
            PointError::Dropped(reason) => rejected.add(at, points, reason),
            PointError::Invalid(e) if is_point_error(&e) => rejected.add(at, points, e),
            PointError::Invalid(e) | PointError::Fatal(e) => return Err(e),
        }
        Ok(())
    }
}

/// A model error that concerns only the point at hand (its names, values
/// or time) rather than the request as a whole (its limits, or a fault of
/// ours).
pub(crate) fn is_point_error(e: &weir_model::Error) -> bool {
    use weir_model::Error as E;
    !matches!(
        e,
        E::TooManyTables { .. }
            | E::TooManyColumns { .. }
            | E::TooManyCells { .. }
            | E::Arrow { .. }
    )
}

/// The tables one request has named so far.
pub(crate) struct RequestTables<'t> {
    tables: &'t dyn Tables,
    known: HashMap<String, KnownTable>,
}

pub(crate) struct KnownTable {
    pub id: TableId,
    pub time_column: String,
    stored: Option<TableSchema>,
}

impl<'t> RequestTables<'t> {
    pub fn new(tables: &'t dyn Tables) -> Self {
        Self {
            tables,
            known: HashMap::new(),
        }
    }

    /// The table `name`, started in `builder` the first time it is named.
    pub fn table(
        &mut self,
        builder: &mut WriteBatchBuilder,
        name: &str,
    ) -> weir_model::Result<&KnownTable> {
        if !self.known.contains_key(name) {
            let time_column = self.tables.time_column(name);
            let id = builder.table(name, &time_column)?;
            let stored = self.tables.schema(name);
            self.known.insert(
                name.to_string(),
                KnownTable {
                    id,
                    time_column,
                    stored,
                },
            );
        }
        Ok(&self.known[name])
    }
}

impl KnownTable {
    /// Column `name` of this table for a value of `column_type`: the
    /// request's own columns and the stored ones must agree on its type.
    pub fn column(
        &self,
        builder: &mut WriteBatchBuilder,
        name: &str,
        column_type: ColumnType,
        row: usize,
    ) -> weir_model::Result<ColumnId> {
        if let Some(stored) = self.stored.as_ref().and_then(|s| s.column(name))
            && stored.column_type != column_type
        {
            return Err(weir_model::Error::TypeConflict {
                table: self
                    .stored
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                column: name.to_string(),
                row,
                existing: stored.column_type,
                incoming: column_type,
            });
        }
        builder.column(self.id, name, column_type, row)
    }
}

/// The first column that appears twice among `columns`, if any. `scratch`
/// is reused from point to point, so this allocates nothing once warm.
pub(crate) fn repeated(columns: &[ColumnId], scratch: &mut Vec<ColumnId>) -> Option<ColumnId> {
    if columns.len() < 2 {
        return None;
    }
    scratch.clear();
    scratch.extend_from_slice(columns);
    scratch.sort_unstable();
    scratch.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}
