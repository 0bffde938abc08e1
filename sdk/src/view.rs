//! Reading a batch one event at a time.

use crate::types::{Batch, Column, ColumnValues};

/// One value of an event, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Tag(&'a str),
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    String(&'a str),
}

/// A value as text: strings and tags as they are, numbers and booleans as
/// Rust prints them — handy for keys and comparisons that span types.
///
/// ```
/// use weir_sdk::Value;
///
/// assert_eq!(Value::Tag("unhealthy").to_string(), "unhealthy");
/// assert_eq!(Value::F64(2.5).to_string(), "2.5");
/// assert_eq!(Value::Bool(true).to_string(), "true");
/// ```
impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Tag(s) | Value::String(s) => f.write_str(s),
            Value::F64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A checked, read-only view of a [`Batch`]: the events of one table.
///
/// ```
/// use weir_sdk::{Events, EventsBuilder};
///
/// let mut out = EventsBuilder::new();
/// out.event("checks", 1_000).tag("service", "api").field_f64("response_ms", 12.5);
/// out.event("checks", 2_000).tag("service", "db");
/// let batches = out.finish().unwrap();
///
/// let events = Events::new(&batches[0]).unwrap();
/// assert_eq!(events.len(), 2);
/// let second = events.event(1);
/// assert_eq!(second.tag("service"), Some("db"));
/// assert_eq!(second.field_f64("response_ms"), None);
/// assert_eq!(events.iter().filter_map(|e| e.field_f64("response_ms")).sum::<f64>(), 12.5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    batch: &'a Batch,
}

impl<'a> Events<'a> {
    /// Checks that every column has one row per event and that every index
    /// is in bounds, so reading an event never fails later.
    pub fn new(batch: &'a Batch) -> Result<Self, String> {
        let rows = batch.time.len();
        for column in &batch.columns {
            check_column(column, rows)
                .map_err(|e| format!("table {:?}, column {:?}: {e}", batch.table, column.name))?;
        }
        Ok(Self { batch })
    }

    pub fn table(&self) -> &'a str {
        &self.batch.table
    }

    pub fn len(&self) -> usize {
        self.batch.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.time.is_empty()
    }

    /// The event at `row`. Panics if `row >= self.len()`, like slice indexing.
    pub fn event(&self, row: usize) -> Event<'a> {
        assert!(row < self.len(), "row {row} out of {} events", self.len());
        Event {
            batch: self.batch,
            row,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Event<'a>> + '_ {
        (0..self.len()).map(|row| self.event(row))
    }

    /// The names of the batch's columns (tags and fields), in order.
    pub fn column_names(&self) -> impl Iterator<Item = &'a str> {
        self.batch.columns.iter().map(|c| c.name.as_str())
    }
}

/// One event of a batch: its time, tags and fields.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
    row: usize,
}

impl<'a> Event<'a> {
    /// The event's position in its batch.
    pub fn row(&self) -> usize {
        self.row
    }

    pub fn table(&self) -> &'a str {
        &self.batch.table
    }

    /// Nanoseconds since the Unix epoch; 0 means "now" by the server's clock.
    pub fn time_ns(&self) -> i64 {
        self.batch.time[self.row]
    }

    /// The value of tag or field `name`, if the event has one.
    pub fn value(&self, name: &str) -> Option<Value<'a>> {
        let column = self.batch.columns.iter().find(|c| c.name == name)?;
        value_at(column, self.row)
    }

    /// The value of tag `name`. `None` if the event has no such tag (or
    /// `name` is a field).
    pub fn tag(&self, name: &str) -> Option<&'a str> {
        match self.value(name)? {
            Value::Tag(v) => Some(v),
            _ => None,
        }
    }

    /// The value of `f64` field `name`.
    pub fn field_f64(&self, name: &str) -> Option<f64> {
        match self.value(name)? {
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn field_i64(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn field_u64(&self, name: &str) -> Option<u64> {
        match self.value(name)? {
            Value::U64(v) => Some(v),
            _ => None,
        }
    }

    pub fn field_bool(&self, name: &str) -> Option<bool> {
        match self.value(name)? {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn field_str(&self, name: &str) -> Option<&'a str> {
        match self.value(name)? {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    /// The series this event belongs to, by the values of `tags` (missing
    /// tags count as empty): a map key for plugins that keep state per series.
    ///
    /// ```
    /// use weir_sdk::{Events, EventsBuilder};
    ///
    /// let mut b = EventsBuilder::new();
    /// b.event("checks", 1).tag("service", "api").tag("region", "eu");
    /// b.event("checks", 2).tag("service", "api");
    /// let batches = b.finish().unwrap();
    /// let events = Events::new(&batches[0]).unwrap();
    /// let by = ["service".to_string(), "region".to_string()];
    /// assert_ne!(events.event(0).series(&by), events.event(1).series(&by));
    /// assert_eq!(events.event(1).series(&by[..1]), events.event(0).series(&by[..1]));
    /// ```
    pub fn series(&self, tags: &[String]) -> String {
        let mut series = String::new();
        for tag in tags {
            series.push_str(self.tag(tag).unwrap_or(""));
            // A separator no tag value is likely to hold, so ("a,b", "c")
            // and ("a", "b,c") stay apart.
            series.push('\u{1f}');
        }
        series
    }

    /// Every tag and field the event has, in column order.
    pub fn values(&self) -> impl Iterator<Item = (&'a str, Value<'a>)> + 'a {
        let row = self.row;
        self.batch
            .columns
            .iter()
            .filter_map(move |c| Some((c.name.as_str(), value_at(c, row)?)))
    }
}

/// A slice of a string buffer that [`check_column`] validated: all of it
/// UTF-8, every offset on a character boundary.
fn checked_str(bytes: &[u8]) -> &str {
    // SAFETY: an `Event` exists only through `Events::new`, which ran
    // `check_column` on every column: each buffer is valid UTF-8 and its
    // offsets cut it at character boundaries, so every slice taken between
    // two offsets is valid UTF-8. Validating again on every read would cost
    // more than the rest of reading a value.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

fn is_valid(validity: &[u8], row: usize) -> bool {
    validity.is_empty() || validity[row / 8] & (1 << (row % 8)) != 0
}

/// Reads one row of a column already checked by [`check_column`].
fn value_at(column: &Column, row: usize) -> Option<Value<'_>> {
    Some(match &column.values {
        ColumnValues::Tag(c) => {
            is_valid(&c.validity, row).then_some(())?;
            let (key, offsets) = (c.keys[row] as usize, &c.dictionary_offsets);
            let (start, end) = (offsets[key] as usize, offsets[key + 1] as usize);
            Value::Tag(checked_str(&c.dictionary_data[start..end]))
        }
        ColumnValues::F64(c) => Value::F64(*is_valid(&c.validity, row).then_some(&c.values[row])?),
        ColumnValues::S64(c) => Value::I64(*is_valid(&c.validity, row).then_some(&c.values[row])?),
        ColumnValues::U64(c) => Value::U64(*is_valid(&c.validity, row).then_some(&c.values[row])?),
        ColumnValues::Bool(c) => {
            Value::Bool(*is_valid(&c.validity, row).then_some(&c.values[row])? != 0)
        }
        ColumnValues::String(c) => {
            is_valid(&c.validity, row).then_some(())?;
            let (start, end) = (c.offsets[row] as usize, c.offsets[row + 1] as usize);
            Value::String(checked_str(&c.data[start..end]))
        }
    })
}

fn check_validity(validity: &[u8], rows: usize) -> Result<(), String> {
    if !validity.is_empty() && validity.len() < rows.div_ceil(8) {
        return Err(format!(
            "validity has {} bytes, {rows} rows need {}",
            validity.len(),
            rows.div_ceil(8)
        ));
    }
    Ok(())
}

fn check_len(what: &str, len: usize, rows: usize) -> Result<(), String> {
    if len != rows {
        return Err(format!("{what} has {len} entries for {rows} rows"));
    }
    Ok(())
}

pub(crate) fn check_column(column: &Column, rows: usize) -> Result<(), String> {
    match &column.values {
        ColumnValues::Tag(c) => {
            check_len("keys", c.keys.len(), rows)?;
            check_validity(&c.validity, rows)?;
            check_offsets("dictionary", &c.dictionary_offsets, &c.dictionary_data)?;
            let entries = c.dictionary_offsets.len() - 1;
            for (row, key) in c.keys.iter().enumerate() {
                if is_valid(&c.validity, row) && *key as usize >= entries {
                    return Err(format!(
                        "row {row}: key {key} outside a dictionary of {entries}"
                    ));
                }
            }
        }
        ColumnValues::F64(c) => {
            check_len("values", c.values.len(), rows)?;
            check_validity(&c.validity, rows)?;
        }
        ColumnValues::S64(c) => {
            check_len("values", c.values.len(), rows)?;
            check_validity(&c.validity, rows)?;
        }
        ColumnValues::U64(c) => {
            check_len("values", c.values.len(), rows)?;
            check_validity(&c.validity, rows)?;
        }
        ColumnValues::Bool(c) => {
            check_len("values", c.values.len(), rows)?;
            check_validity(&c.validity, rows)?;
        }
        ColumnValues::String(c) => {
            check_len("offsets", c.offsets.len(), rows + 1)?;
            check_validity(&c.validity, rows)?;
            check_offsets("data", &c.offsets, &c.data)?;
        }
    }
    Ok(())
}

/// `offsets` (at least one) cut `data`, valid UTF-8, at character boundaries.
fn check_offsets(what: &str, offsets: &[u32], data: &[u8]) -> Result<(), String> {
    if offsets.is_empty() {
        return Err(format!("{what}: no offsets; they start with 0"));
    }
    let text = std::str::from_utf8(data).map_err(|e| format!("{what}: {e}"))?;
    for pair in offsets.windows(2) {
        let (start, end) = (pair[0] as usize, pair[1] as usize);
        if start > end || end > text.len() {
            return Err(format!(
                "{what}: offsets {start}..{end} outside {} bytes",
                text.len()
            ));
        }
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Err(format!(
                "{what}: offsets {start}..{end} split a UTF-8 character"
            ));
        }
    }
    Ok(())
}
