//! From the wire (`weir.v1.WriteRequest`) to validated Arrow batches.
//!
//! This is the ingest hot path. Strings arrive once in the request's symbol
//! table; points refer to them by index. Each symbol is UTF-8-checked once,
//! and each (table, key symbol) is resolved to a column once per request, so a
//! row costs a few array lookups and appends.

use weir_model::{ColumnId, ColumnType, TableBatch, TableId, Value, WriteBatchBuilder};
use weir_proto::v1::{WriteRequest, field};

use crate::{Error, Result};

/// Decodes and validates a request. `time_column_for` names the time column
/// of a table the first time the request mentions it.
pub fn decode_write(
    request: &WriteRequest,
    now_ns: i64,
    time_column_for: &dyn Fn(&str) -> String,
) -> Result<Vec<TableBatch>> {
    let symbols = request
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            std::str::from_utf8(s)
                .map_err(|e| Error::Decode(format!("symbol {i} is not valid UTF-8 ({e})")))
        })
        .collect::<Result<Vec<&str>>>()?;
    let symbol = |row: usize, index: u32| -> Result<&str> {
        symbols.get(index as usize).copied().ok_or_else(|| {
            Error::Decode(format!(
                "row {row}: symbol index {index} out of range (the request has {} symbols)",
                symbols.len()
            ))
        })
    };

    let mut builder = WriteBatchBuilder::new(now_ns);
    // Per table: its id, and its columns by key symbol.
    let mut tables: Vec<(u32, TableId, Vec<Option<ColumnId>>)> = Vec::new();
    let mut last = usize::MAX;
    for (row, point) in request.points.iter().enumerate() {
        if last >= tables.len() || tables[last].0 != point.table {
            last = match tables.iter().position(|t| t.0 == point.table) {
                Some(i) => i,
                None => {
                    let name = symbol(row, point.table)?;
                    let id = builder.table(name, &time_column_for(name))?;
                    tables.push((point.table, id, vec![None; symbols.len()]));
                    tables.len() - 1
                }
            };
        }
        let (_, table, columns) = &mut tables[last];
        let table = *table;
        builder.begin_point(table, row, point.timestamp_ns)?;

        if point.tags.len() % 2 != 0 {
            return Err(Error::Decode(format!(
                "row {row}: tags must be key/value symbol pairs, got {} indexes",
                point.tags.len()
            )));
        }
        for pair in point.tags.chunks_exact(2) {
            let column = column(
                &mut builder,
                columns,
                table,
                row,
                pair[0],
                ColumnType::Tag,
                &symbol,
            )?;
            builder.set(table, column, row, Value::Tag(symbol(row, pair[1])?))?;
        }
        for f in &point.fields {
            let Some(value) = &f.value else { continue };
            let value = match value {
                field::Value::F64(v) => Value::F64(*v),
                field::Value::I64(v) => Value::I64(*v),
                field::Value::U64(v) => Value::U64(*v),
                field::Value::Bool(v) => Value::Bool(*v),
                field::Value::String(s) => Value::String(symbol(row, *s)?),
            };
            let column = column(
                &mut builder,
                columns,
                table,
                row,
                f.key,
                value.column_type(),
                &symbol,
            )?;
            builder.set(table, column, row, value)?;
        }
    }
    Ok(builder.finish()?)
}

fn column<'a>(
    builder: &mut WriteBatchBuilder,
    columns: &mut [Option<ColumnId>],
    table: TableId,
    row: usize,
    key: u32,
    column_type: ColumnType,
    symbol: &dyn Fn(usize, u32) -> Result<&'a str>,
) -> Result<ColumnId> {
    if let Some(Some(id)) = columns.get(key as usize) {
        return Ok(*id);
    }
    let name = symbol(row, key)?;
    let id = builder.column(table, name, column_type, row)?;
    if let Some(slot) = columns.get_mut(key as usize) {
        *slot = Some(id);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use weir_proto::v1::{Field, Point};

    use super::*;

    fn request(symbols: &[&[u8]], points: Vec<Point>) -> WriteRequest {
        WriteRequest {
            sequence: 0,
            symbols: symbols.iter().map(|s| s.to_vec().into()).collect(),
            points,
        }
    }

    fn field(key: u32, value: field::Value) -> Field {
        Field {
            key,
            value: Some(value),
        }
    }

    fn time(_: &str) -> String {
        "time".to_string()
    }

    #[test]
    fn decodes_points_through_the_symbol_table() {
        let req = request(
            &[b"m", b"host", b"a", b"v", b"status", b"ok"],
            vec![
                Point {
                    table: 0,
                    timestamp_ns: 10,
                    tags: vec![1, 2],
                    fields: vec![
                        field(3, field::Value::F64(1.5)),
                        field(4, field::Value::String(5)),
                    ],
                },
                Point {
                    table: 0,
                    timestamp_ns: 11,
                    tags: vec![],
                    fields: vec![Field {
                        key: 3,
                        value: None,
                    }],
                },
            ],
        );
        let out = decode_write(&req, 99, &time).unwrap();
        assert_eq!(out.len(), 1);
        let batch = &out[0].batch;
        assert_eq!(batch.num_rows(), 2);
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["time", "host", "v", "status"]);
        assert_eq!(batch.column(3).as_string::<i32>().value(0), "ok");
        assert_eq!(batch.column(2).null_count(), 1);
    }

    #[test]
    fn wire_errors_are_clear() {
        let bad_utf8 = request(&[b"m", b"\xff\xfe"], vec![]);
        let err = decode_write(&bad_utf8, 1, &time).unwrap_err().to_string();
        assert!(err.contains("symbol 1 is not valid UTF-8"), "{err}");

        let out_of_range = request(
            &[b"m"],
            vec![Point {
                table: 5,
                ..Default::default()
            }],
        );
        let err = decode_write(&out_of_range, 1, &time)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 0: symbol index 5 out of range"), "{err}");

        let odd_tags = request(
            &[b"m", b"k"],
            vec![Point {
                table: 0,
                timestamp_ns: 1,
                tags: vec![1],
                fields: vec![],
            }],
        );
        let err = decode_write(&odd_tags, 1, &time).unwrap_err().to_string();
        assert!(err.contains("key/value symbol pairs"), "{err}");

        let empty_table = request(
            &[b""],
            vec![Point {
                table: 0,
                timestamp_ns: 1,
                ..Default::default()
            }],
        );
        let err = decode_write(&empty_table, 1, &time)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid table name"), "{err}");

        let conflict = request(
            &[b"m", b"x"],
            vec![
                Point {
                    table: 0,
                    timestamp_ns: 1,
                    tags: vec![],
                    fields: vec![field(1, field::Value::F64(1.0))],
                },
                Point {
                    table: 0,
                    timestamp_ns: 1,
                    tags: vec![],
                    fields: vec![field(1, field::Value::I64(1))],
                },
            ],
        );
        let err = decode_write(&conflict, 1, &time).unwrap_err().to_string();
        assert_eq!(
            err,
            "type conflict in table \"m\", column \"x\", row 1: column is f64, value is i64"
        );
    }
}
