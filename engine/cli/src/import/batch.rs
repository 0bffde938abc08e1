//! Rows to write requests.
//!
//! Every row is checked here by the rules the server applies (weir-model's
//! names, tag value limit, finite floats, timestamp range, and column types
//! the table is known to have), so a row that cannot be written is rejected
//! with its line number instead of failing the whole batch it would travel
//! in. What only the server knows is found by [`Batch::split`]: a rejected
//! batch is halved and retried until the rows it refuses stand alone.

use std::collections::{HashMap, HashSet};

use weir_model::{
    ColumnType, MAX_TAG_VALUE_BYTES, MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, NameKind, validate_name,
};
use weir_proto::SymbolTable;
use weir_proto::v1::{Field, Point, TimeColumn, WriteRequest, field};

use super::read::{Cell, Row};

/// Rows on their way to the server as one request, with the line each came
/// from.
pub(super) struct Batch {
    pub request: WriteRequest,
    pub lines: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn first_line(&self) -> usize {
        self.lines.first().copied().unwrap_or(0)
    }

    /// Halves a batch of two rows or more, each half carrying only the
    /// symbols it uses: a request the server rejects is rejected whole, so
    /// retrying the halves narrows a rejection down to the rows that cause it.
    pub fn split(self) -> (Batch, Batch) {
        let mid = self.len() / 2;
        let Batch {
            mut request,
            mut lines,
        } = self;
        let mut points = std::mem::take(&mut request.points);
        let tail_points = points.split_off(mid.min(points.len()));
        let tail_lines = lines.split_off(mid.min(lines.len()));
        (
            subset(&request, points, lines),
            subset(&request, tail_points, tail_lines),
        )
    }
}

/// A request of `points` (taken from `request`) with its own symbol table.
fn subset(request: &WriteRequest, mut points: Vec<Point>, lines: Vec<usize>) -> Batch {
    let mut remap: Vec<Option<u32>> = vec![None; request.symbols.len()];
    let mut symbols = Vec::new();
    // An index out of range stays as it is, for the server to report: the
    // builder below never makes one.
    let mut map = |index: &mut u32| {
        if let Some(slot) = remap.get_mut(*index as usize) {
            *index = *slot.get_or_insert_with(|| {
                symbols.push(request.symbols[*index as usize].clone());
                (symbols.len() - 1) as u32
            });
        }
    };
    let mut time_columns = request.time_columns.clone();
    for entry in &mut time_columns {
        map(&mut entry.table);
        map(&mut entry.name);
    }
    for point in &mut points {
        map(&mut point.table);
        point.tags.iter_mut().for_each(&mut map);
        for f in &mut point.fields {
            map(&mut f.key);
            if let Some(field::Value::String(s)) = &mut f.value {
                map(s);
            }
        }
    }
    Batch {
        request: WriteRequest {
            sequence: 0,
            symbols,
            points,
            time_columns,
        },
        lines,
    }
}

/// What the importer knows of the table it writes.
pub(super) struct TableRules {
    pub table: String,
    /// The file's column holding each row's time.
    pub time_column: String,
    /// Whether to ask the server to name the table's time column
    /// `time_column` if this import creates the table.
    pub name_time_column: bool,
    /// The table's time column, if known: no tag or field may take its name.
    pub table_time_column: Option<String>,
    /// Column types the table has, when the server told us what it has
    /// (`None` when it could not: types are then left to the server).
    pub column_types: Option<HashMap<String, ColumnType>>,
    pub tags: HashSet<String>,
    /// Nanoseconds per unit of numeric times.
    pub time_unit: i64,
}

/// Builds one WriteRequest at a time, rejecting rows the server would.
pub(super) struct BatchBuilder {
    rules: TableRules,
    symbols: SymbolTable,
    points: Vec<Point>,
    lines: Vec<usize>,
}

enum FieldValue {
    Str(String),
    Plain(field::Value),
}

impl BatchBuilder {
    pub fn new(rules: TableRules) -> Self {
        let mut builder = Self {
            rules,
            symbols: SymbolTable::default(),
            points: Vec::new(),
            lines: Vec::new(),
        };
        builder.reset();
        builder
    }

    /// Starts the next request: the table is always symbol 0.
    fn reset(&mut self) {
        self.symbols.take();
        self.points.clear();
        self.lines.clear();
        self.symbols.intern(&self.rules.table);
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Adds a row; an error is the reason it is rejected.
    pub fn push(&mut self, row: &Row) -> Result<(), String> {
        let rules = &self.rules;
        let mut timestamp_ns = None;
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        let mut fields = Vec::new();
        for (name, cell) in &row.cells {
            if !seen.insert(name.as_str()) {
                return Err(format!("column {name:?} appears twice"));
            }
            if *name == rules.time_column {
                timestamp_ns = Some(
                    parse_time(cell, rules.time_unit)
                        .map_err(|e| format!("column {name:?}: {e}"))?,
                );
                continue;
            }
            if *cell == Cell::Null {
                continue;
            }
            validate_name(NameKind::Column, name).map_err(|e| e.to_string())?;
            if rules.table_time_column.as_ref() == Some(name) {
                return Err(format!(
                    "column {name:?} is the table's time column and cannot be a tag or field"
                ));
            }
            if rules.tags.contains(name) {
                let value = match cell {
                    Cell::Null => continue,
                    Cell::Str(s) => s.clone(),
                    Cell::Int(v) | Cell::Time(v) => v.to_string(),
                    Cell::UInt(v) => v.to_string(),
                    Cell::Float(v) => v.to_string(),
                    Cell::Bool(v) => v.to_string(),
                };
                if value.len() > MAX_TAG_VALUE_BYTES {
                    return Err(format!(
                        "column {name:?}: tag value is {} bytes, more than the limit of {MAX_TAG_VALUE_BYTES}",
                        value.len()
                    ));
                }
                self.check_type(name, ColumnType::Tag)?;
                tags.push((name, value));
            } else {
                let value = self.field_value(name, cell)?;
                let column_type = match &value {
                    FieldValue::Str(_) => ColumnType::String,
                    FieldValue::Plain(field::Value::F64(_)) => ColumnType::F64,
                    FieldValue::Plain(field::Value::I64(_)) => ColumnType::I64,
                    FieldValue::Plain(field::Value::U64(_)) => ColumnType::U64,
                    FieldValue::Plain(field::Value::Bool(_)) => ColumnType::Bool,
                    FieldValue::Plain(field::Value::String(_)) => ColumnType::String,
                };
                self.check_type(name, column_type)?;
                fields.push((name, column_type, value));
            }
        }
        let Some(timestamp_ns) = timestamp_ns else {
            return Err(format!(
                "no value in time column {:?}",
                self.rules.time_column
            ));
        };
        check_time_range(timestamp_ns)?;

        // The row goes in: the first row to bring a column fixes its type,
        // as the server's first write of it would.
        if let Some(types) = &mut self.rules.column_types {
            for (name, _) in &tags {
                types.entry(name.to_string()).or_insert(ColumnType::Tag);
            }
            for (name, column_type, _) in &fields {
                types.entry(name.to_string()).or_insert(*column_type);
            }
        }
        let mut point = Point {
            table: 0,
            timestamp_ns,
            tags: Vec::with_capacity(tags.len() * 2),
            fields: Vec::with_capacity(fields.len()),
        };
        for (k, v) in tags {
            let k = self.symbols.intern(k);
            let v = self.symbols.intern(&v);
            point.tags.extend([k, v]);
        }
        for (k, _, v) in fields {
            let key = self.symbols.intern(k);
            let value = match v {
                FieldValue::Str(s) => field::Value::String(self.symbols.intern(&s)),
                FieldValue::Plain(v) => v,
            };
            point.fields.push(Field {
                key,
                value: Some(value),
            });
        }
        self.points.push(point);
        self.lines.push(row.line);
        Ok(())
    }

    /// A field's value as the column stores it: integers go into a float
    /// column as floats, and non-negative ones into a u64 column as u64.
    fn field_value(&self, name: &str, cell: &Cell) -> Result<FieldValue, String> {
        let stored = self
            .rules
            .column_types
            .as_ref()
            .and_then(|types| types.get(name))
            .copied();
        let value = match (cell, stored) {
            (Cell::Int(v), Some(ColumnType::F64)) => field::Value::F64(*v as f64),
            (Cell::UInt(v), Some(ColumnType::F64)) => field::Value::F64(*v as f64),
            (Cell::Int(v), Some(ColumnType::U64)) if *v >= 0 => field::Value::U64(*v as u64),
            (Cell::UInt(v), Some(ColumnType::I64)) if i64::try_from(*v).is_ok() => {
                field::Value::I64(*v as i64)
            }
            (Cell::Str(s), _) => return Ok(FieldValue::Str(s.clone())),
            (Cell::Int(v) | Cell::Time(v), _) => field::Value::I64(*v),
            (Cell::UInt(v), _) => field::Value::U64(*v),
            (Cell::Float(v), _) => field::Value::F64(*v),
            (Cell::Bool(v), _) => field::Value::Bool(*v),
            (Cell::Null, _) => return Err(format!("column {name:?}: no value")),
        };
        if let field::Value::F64(v) = value
            && !v.is_finite()
        {
            return Err(format!(
                "column {name:?}: {v} is not a finite number (NaN and infinities are rejected)"
            ));
        }
        Ok(FieldValue::Plain(value))
    }

    /// A column keeps the type it was created with.
    fn check_type(&self, name: &str, incoming: ColumnType) -> Result<(), String> {
        match self.rules.column_types.as_ref().and_then(|t| t.get(name)) {
            Some(existing) if *existing != incoming => Err(format!(
                "column {name:?} is {existing} in table {:?}, this value is {incoming}",
                self.rules.table
            )),
            _ => Ok(()),
        }
    }

    /// The request of the rows pushed so far; starts the next one.
    pub fn take(&mut self) -> Batch {
        let mut time_columns = Vec::new();
        if self.rules.name_time_column {
            time_columns.push(TimeColumn {
                table: self.symbols.intern(&self.rules.table),
                name: self.symbols.intern(&self.rules.time_column),
            });
        }
        let batch = Batch {
            request: WriteRequest {
                sequence: 0,
                symbols: self.symbols.take(),
                points: std::mem::take(&mut self.points),
                time_columns,
            },
            lines: std::mem::take(&mut self.lines),
        };
        self.reset();
        batch
    }
}

/// The server's accepted range; `0` asks for the server's clock.
fn check_time_range(timestamp_ns: i64) -> Result<(), String> {
    if timestamp_ns == 0 || (MIN_TIMESTAMP_NS..MAX_TIMESTAMP_NS).contains(&timestamp_ns) {
        return Ok(());
    }
    Err(format!(
        "time {} is out of range (1970-01-01 to 2200-01-01)",
        chrono::DateTime::from_timestamp_nanos(timestamp_ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    ))
}

pub(super) fn parse_time(cell: &Cell, unit_ns: i64) -> Result<i64, String> {
    match cell {
        Cell::Time(ns) => Ok(*ns),
        Cell::Int(v) => v
            .checked_mul(unit_ns)
            .ok_or_else(|| format!("time {v} overflows")),
        Cell::UInt(v) => i64::try_from(*v)
            .ok()
            .and_then(|v| v.checked_mul(unit_ns))
            .ok_or_else(|| format!("time {v} overflows")),
        Cell::Float(v) => {
            let ns = v * unit_ns as f64;
            if ns.is_finite() && ns.abs() < 9.2e18 {
                Ok(ns as i64)
            } else {
                Err(format!("time {v} is out of range"))
            }
        }
        Cell::Str(s) => parse_time_text(s),
        Cell::Null => Err("missing time".into()),
        Cell::Bool(_) => Err("a boolean is not a time".into()),
    }
}

/// RFC 3339 (`2026-11-20T10:00:00Z`, with offset), or `YYYY-MM-DD HH:MM:SS[.f]` as UTC.
fn parse_time_text(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("time {s:?} is out of range"));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return t
                .and_utc()
                .timestamp_nanos_opt()
                .ok_or_else(|| format!("time {s:?} is out of range"));
        }
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(v);
    }
    Err(format!(
        "{s:?} is not a time (RFC 3339, \"YYYY-MM-DD HH:MM:SS\" or nanoseconds)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_763_632_800_000_000_000; // 2025-11-20T10:00:00Z

    #[test]
    fn times_parse_in_common_forms() {
        assert_eq!(parse_time_text("2025-11-20T10:00:00Z"), Ok(T));
        assert_eq!(parse_time_text("2025-11-20T11:00:00+01:00"), Ok(T));
        assert_eq!(parse_time_text("2025-11-20 10:00:00"), Ok(T));
        assert_eq!(parse_time(&Cell::Int(1_763_632_800), 1_000_000_000), Ok(T));
        assert!(parse_time_text("yesterday").is_err());
        assert!(parse_time(&Cell::Int(i64::MAX), 1_000).is_err());
    }

    fn rules(column_types: Option<HashMap<String, ColumnType>>) -> TableRules {
        TableRules {
            table: "m".into(),
            time_column: "at".into(),
            name_time_column: true,
            table_time_column: Some("at".into()),
            column_types,
            tags: ["host".to_string()].into(),
            time_unit: 1,
        }
    }

    fn row(line: usize, cells: &[(&str, Cell)]) -> Row {
        Row {
            line,
            cells: cells
                .iter()
                .map(|(name, cell)| (name.to_string(), cell.clone()))
                .collect(),
        }
    }

    #[test]
    fn rows_the_server_would_refuse_are_rejected_alone() {
        let mut b = BatchBuilder::new(rules(Some(HashMap::from([(
            "v".to_string(),
            ColumnType::F64,
        )]))));
        let at = ("at", Cell::Int(T));
        let long_tag = "x".repeat(MAX_TAG_VALUE_BYTES + 1);
        let cases = [
            (
                vec![at.clone(), ("v", Cell::Float(f64::NAN))],
                "is not a finite number",
            ),
            (
                vec![at.clone(), ("v", Cell::Float(f64::INFINITY))],
                "inf is not a finite number",
            ),
            (
                vec![("at", Cell::Int(-1)), ("v", Cell::Float(1.0))],
                "out of range",
            ),
            (
                vec![("at", Cell::Int(MAX_TIMESTAMP_NS)), ("v", Cell::Float(1.0))],
                "time 2200-01-01T00:00:00Z is out of range",
            ),
            (
                vec![at.clone(), ("host", Cell::Str(long_tag))],
                "4097 bytes, more than the limit of 4096",
            ),
            (
                vec![at.clone(), ("a\nb", Cell::Int(1))],
                "invalid column name",
            ),
            (
                vec![at.clone(), ("v", Cell::Str("fast".into()))],
                "column \"v\" is f64 in table \"m\", this value is string",
            ),
            (
                vec![at.clone(), ("v", Cell::Float(1.0)), ("v", Cell::Float(2.0))],
                "appears twice",
            ),
            (
                vec![("v", Cell::Float(1.0))],
                "no value in time column \"at\"",
            ),
        ];
        for (i, (cells, reason)) in cases.iter().enumerate() {
            let err = b.push(&row(i + 2, cells)).unwrap_err();
            assert!(err.contains(reason), "{err} (expected {reason:?})");
        }
        assert_eq!(b.len(), 0);

        // Good rows: 0 means the server's clock; an integer into a float column.
        b.push(&row(20, &[("at", Cell::Int(0)), ("v", Cell::Int(3))]))
            .unwrap();
        b.push(&row(
            21,
            &[
                at.clone(),
                ("host", Cell::Str("a".into())),
                ("n", Cell::Int(1)),
            ],
        ))
        .unwrap();
        // The first row to bring a column fixes its type, as on the server.
        let err = b
            .push(&row(22, &[at.clone(), ("n", Cell::Str("one".into()))]))
            .unwrap_err();
        assert!(err.contains("column \"n\" is i64"), "{err}");

        let batch = b.take();
        assert_eq!(batch.lines, [20, 21]);
        assert_eq!(
            batch.request.points[0].fields[0].value,
            Some(field::Value::F64(3.0))
        );
        let time_column = &batch.request.time_columns[0];
        assert_eq!(&batch.request.symbols[time_column.table as usize][..], b"m");
        assert_eq!(&batch.request.symbols[time_column.name as usize][..], b"at");
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn without_the_tables_types_type_changes_are_left_to_the_server() {
        let mut b = BatchBuilder::new(rules(None));
        b.push(&row(2, &[("at", Cell::Int(T)), ("n", Cell::Int(1))]))
            .unwrap();
        b.push(&row(
            3,
            &[("at", Cell::Int(T)), ("n", Cell::Str("x".into()))],
        ))
        .unwrap();
        assert_eq!(b.len(), 2);
    }

    /// The strings a request's point refers to, resolved.
    fn resolve(request: &WriteRequest, point: &Point) -> Vec<String> {
        let s = |i: u32| String::from_utf8(request.symbols[i as usize].to_vec()).unwrap();
        let mut out = vec![s(point.table)];
        out.extend(point.tags.iter().map(|i| s(*i)));
        for f in &point.fields {
            out.push(s(f.key));
            if let Some(field::Value::String(v)) = f.value {
                out.push(s(v));
            }
        }
        out
    }

    #[test]
    fn split_halves_keep_rows_lines_and_only_their_symbols() {
        let mut b = BatchBuilder::new(rules(None));
        for (line, host) in [(2, "a"), (3, "b"), (5, "c")] {
            b.push(&row(
                line,
                &[
                    ("at", Cell::Int(T)),
                    ("host", Cell::Str(host.into())),
                    ("s", Cell::Str(format!("v{host}"))),
                ],
            ))
            .unwrap();
        }
        let batch = b.take();
        let before: Vec<_> = batch
            .request
            .points
            .iter()
            .map(|p| resolve(&batch.request, p))
            .collect();
        let (head, tail) = batch.split();
        assert_eq!(head.lines, [2]);
        assert_eq!(tail.lines, [3, 5]);
        let after: Vec<_> = [&head, &tail]
            .iter()
            .flat_map(|b| b.request.points.iter().map(|p| resolve(&b.request, p)))
            .collect();
        assert_eq!(before, after);
        // m, at, host, a, s, va: the other rows' values are not carried.
        assert_eq!(head.request.symbols.len(), 6);
        for half in [&head, &tail] {
            let entry = &half.request.time_columns[0];
            assert_eq!(&half.request.symbols[entry.table as usize][..], b"m");
            assert_eq!(&half.request.symbols[entry.name as usize][..], b"at");
        }
    }
}
