//! Weir's native write API: from the wire (`weir.v1.WriteRequest`) to
//! validated Arrow batches. A request is atomic: any error refuses it whole.
//!
//! This is the ingest hot path. Strings arrive once in the request's symbol
//! table; points refer to them by index. Each symbol is UTF-8-checked once,
//! and each (table, key symbol) is resolved to a column once per request, so a
//! row costs a few array lookups and appends.

use std::collections::HashMap;

use weir_model::{
    ColumnId, ColumnType, DEFAULT_TIME_COLUMN, NameKind, TableBatch, TableId, Value,
    WriteBatchBuilder, WriteLimits, validate_name,
};
use weir_proto::v1::{WriteRequest, field};

use crate::{Decoded, Error, Result, Tables};

/// Decodes and validates a request. `tables` names the time column of a
/// table the first time the request mentions it, unless the request's
/// `time_columns` name it (see [`requested_time_columns`]).
pub fn decode_write(
    request: &WriteRequest,
    now_ns: i64,
    tables: &dyn Tables,
) -> Result<Vec<TableBatch>> {
    decode_write_limited(request, now_ns, WriteLimits::default(), tables)
}

/// [`decode_write_limited`] as a [`Decoded`] request, for the write path.
pub fn decode(
    request: &WriteRequest,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Decoded> {
    Ok(Decoded {
        batches: decode_write_limited(request, now_ns, limits, tables)?,
        rejected: Default::default(),
    })
}

/// [`decode_write`] under the server's configured [`WriteLimits`].
pub fn decode_write_limited(
    request: &WriteRequest,
    now_ns: i64,
    limits: WriteLimits,
    tables: &dyn Tables,
) -> Result<Vec<TableBatch>> {
    let symbols = request
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            std::str::from_utf8(s)
                .map_err(|e| Error::Malformed(format!("symbol {i} is not valid UTF-8 ({e})")))
        })
        .collect::<Result<Vec<&str>>>()?;
    let symbol = |row: usize, index: u32| -> Result<&str> {
        symbols.get(index as usize).copied().ok_or_else(|| {
            Error::Malformed(format!(
                "row {row}: symbol index {index} out of range (the request has {} symbols)",
                symbols.len()
            ))
        })
    };

    let catalog = tables;
    let requested = requested_time_columns(request, &symbols, catalog)?;

    let mut builder = WriteBatchBuilder::new(now_ns).with_limits(limits);
    // Each symbol used as a key gets a small dense slot, once per request;
    // each table maps slots to its columns. Memory is one slot per symbol
    // plus, per table, one entry per key seen so far — never tables ×
    // symbols, which a request naming many tables would make huge.
    let mut key_slots = KeySlots::new(symbols.len());
    // Per table: its symbol, its id, and its columns by key slot.
    let mut tables: Vec<(u32, TableId, Vec<Option<ColumnId>>)> = Vec::new();
    let mut table_index: HashMap<u32, usize> = HashMap::new();
    let mut last = usize::MAX;
    for (row, point) in request.points.iter().enumerate() {
        if last >= tables.len() || tables[last].0 != point.table {
            last = match table_index.get(&point.table) {
                Some(&i) => i,
                None => {
                    let name = symbol(row, point.table)?;
                    let time_column = match requested.get(name) {
                        Some(requested) => requested.to_string(),
                        None => catalog.time_column(name),
                    };
                    let id = builder.table(name, &time_column)?;
                    tables.push((point.table, id, Vec::new()));
                    table_index.insert(point.table, tables.len() - 1);
                    tables.len() - 1
                }
            };
        }
        let (_, table, columns) = &mut tables[last];
        let table = *table;
        builder.begin_point(table, row, point.timestamp_ns)?;

        if point.tags.len() % 2 != 0 {
            return Err(Error::Malformed(format!(
                "row {row}: tags must be key/value symbol pairs, got {} indexes",
                point.tags.len()
            )));
        }
        for pair in point.tags.chunks_exact(2) {
            let column = column(
                &mut builder,
                &mut key_slots,
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
                &mut key_slots,
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

/// The request's `time_columns`, by table name, checked against the tables'
/// own: a table's time column is fixed when it is created, so naming another
/// one for a table that has (or is configured with) a time column is an error.
///
/// `tables` cannot tell "no table, no configuration" from a table
/// whose time column is the default name, so a requested name that differs
/// only from the default is let through: the store checks it against the
/// catalog and the configuration under its lock (`TimeColumnMismatch`),
/// which also settles two concurrent writes creating the same table with
/// different names.
fn requested_time_columns<'a>(
    request: &WriteRequest,
    symbols: &[&'a str],
    tables: &dyn Tables,
) -> Result<HashMap<&'a str, &'a str>> {
    let mut requested = HashMap::new();
    for (i, entry) in request.time_columns.iter().enumerate() {
        let symbol = |index: u32| {
            symbols.get(index as usize).copied().ok_or_else(|| {
                Error::Malformed(format!(
                    "time_columns[{i}]: symbol index {index} out of range (the request has {} symbols)",
                    symbols.len()
                ))
            })
        };
        let (table, name) = (symbol(entry.table)?, symbol(entry.name)?);
        validate_name(NameKind::Column, name)?;
        if let Some(other) = requested.insert(table, name)
            && other != name
        {
            return Err(Error::Malformed(format!(
                "time_columns: table {table:?} is given two time columns, {other:?} and {name:?}"
            )));
        }
        let current = tables.time_column(table);
        if current != name && current != DEFAULT_TIME_COLUMN {
            return Err(weir_model::Error::TimeColumnMismatch {
                table: table.to_string(),
                expected: current,
                found: name.to_string(),
            }
            .into());
        }
    }
    Ok(requested)
}

/// Dense slots for the symbols used as tag or field keys.
struct KeySlots {
    by_symbol: Vec<u32>,
    next: u32,
}

impl KeySlots {
    const NONE: u32 = u32::MAX;

    fn new(symbols: usize) -> Self {
        Self {
            by_symbol: vec![Self::NONE; symbols],
            next: 0,
        }
    }

    /// The slot of key symbol `key`, if it is a symbol at all.
    fn slot(&mut self, key: u32) -> Option<usize> {
        let slot = self.by_symbol.get_mut(key as usize)?;
        if *slot == Self::NONE {
            *slot = self.next;
            self.next += 1;
        }
        Some(*slot as usize)
    }
}

#[allow(clippy::too_many_arguments)]
fn column<'a>(
    builder: &mut WriteBatchBuilder,
    key_slots: &mut KeySlots,
    columns: &mut Vec<Option<ColumnId>>,
    table: TableId,
    row: usize,
    key: u32,
    column_type: ColumnType,
    symbol: &dyn Fn(usize, u32) -> Result<&'a str>,
) -> Result<ColumnId> {
    let slot = key_slots.slot(key);
    if let Some(Some(id)) = slot.and_then(|slot| columns.get(slot)) {
        // A value of another type is caught by `set` as a type conflict.
        return Ok(*id);
    }
    let name = symbol(row, key)?;
    let id = builder.column(table, name, column_type, row)?;
    if let Some(slot) = slot {
        if columns.len() <= slot {
            columns.resize(slot + 1, None);
        }
        columns[slot] = Some(id);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use weir_proto::v1::{Field, Point, TimeColumn};

    use super::*;

    fn request(symbols: &[&[u8]], points: Vec<Point>) -> WriteRequest {
        WriteRequest {
            sequence: 0,
            symbols: symbols.iter().map(|s| s.to_vec().into()).collect(),
            points,
            time_columns: Vec::new(),
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

    fn time_column_names(out: &[TableBatch]) -> Vec<(String, String)> {
        out.iter()
            .map(|t| (t.table.clone(), t.batch.schema().field(0).name().clone()))
            .collect()
    }

    #[test]
    fn a_request_names_the_time_column_of_a_table_it_creates() {
        let mut req = request(
            &[b"m", b"recorded_at", b"other"],
            vec![
                Point {
                    table: 0,
                    timestamp_ns: 1,
                    ..Default::default()
                },
                Point {
                    table: 2,
                    timestamp_ns: 1,
                    ..Default::default()
                },
            ],
        );
        req.time_columns = vec![TimeColumn { table: 0, name: 1 }];
        let out = decode_write(&req, 1, &time).unwrap();
        assert_eq!(
            time_column_names(&out),
            [
                ("m".to_string(), "recorded_at".to_string()),
                ("other".to_string(), "time".to_string())
            ],
            "the request's name wins; a table without one gets the server's"
        );

        // The same name as the table's own is no conflict.
        let out = decode_write(&req, 1, &|_: &str| "recorded_at".to_string()).unwrap();
        assert_eq!(out[0].batch.schema().field(0).name(), "recorded_at");
    }

    #[test]
    fn a_time_column_other_than_the_tables_own_is_refused_naming_both() {
        let mut req = request(
            &[b"m", b"recorded_at"],
            vec![Point {
                table: 0,
                timestamp_ns: 1,
                ..Default::default()
            }],
        );
        req.time_columns = vec![TimeColumn { table: 0, name: 1 }];
        // An existing or configured table whose time column is `ts`.
        let err = decode_write(&req, 1, &|_: &str| "ts".to_string()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Invalid(weir_model::Error::TimeColumnMismatch { .. })
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "table \"m\": time column is \"ts\", the batch's is \"recorded_at\""
        );
        // Checked even when no point of the request writes the table.
        req.points.clear();
        assert!(decode_write(&req, 1, &|_: &str| "ts".to_string()).is_err());
    }

    #[test]
    fn bad_time_column_entries_are_clear() {
        let entry = |table, name| vec![TimeColumn { table, name }];
        let mut req = request(&[b"m", b"", b"a", b"b"], vec![]);

        req.time_columns = entry(0, 9);
        let err = decode_write(&req, 1, &time).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");
        assert!(
            err.to_string()
                .contains("time_columns[0]: symbol index 9 out of range"),
            "{err}"
        );

        req.time_columns = entry(0, 1);
        let err = decode_write(&req, 1, &time).unwrap_err().to_string();
        assert!(err.contains("invalid column name \"\""), "{err}");

        req.time_columns = [entry(0, 2), entry(0, 3)].concat();
        let err = decode_write(&req, 1, &time).unwrap_err().to_string();
        assert!(
            err.contains("table \"m\" is given two time columns, \"a\" and \"b\""),
            "{err}"
        );

        // Said twice, the same name is fine.
        req.time_columns = [entry(0, 2), entry(0, 2)].concat();
        decode_write(&req, 1, &time).unwrap();
    }

    /// Whatever a client sends, bypassing our own client: arbitrary bytes
    /// as a protobuf message, and well-formed messages with arbitrary
    /// indexes, symbols, timestamps and values. Decoding answers `Ok` or a
    /// clear error and never panics.
    #[test]
    fn arbitrary_requests_never_panic() {
        use prost::Message;
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(42);
        let valid = request(
            &[b"m", b"host", b"a", b"v", b"s"],
            vec![Point {
                table: 0,
                timestamp_ns: 5,
                tags: vec![1, 2],
                fields: vec![field(3, field::Value::F64(1.0))],
            }],
        )
        .encode_to_vec();
        let limits = WriteLimits {
            max_tables: 4,
            max_columns: 6,
            max_cells: 200,
        };
        for case in 0..5_000 {
            let req = if case % 2 == 0 {
                // Random edits of a valid encoding.
                let mut bytes = valid.clone();
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..bytes.len());
                    match rng.random_range(0..3) {
                        0 => bytes[at] = rng.random(),
                        1 => bytes.insert(at, rng.random()),
                        _ => {
                            bytes.truncate(at.max(1));
                        }
                    }
                }
                match WriteRequest::decode(bytes.as_slice()) {
                    Ok(req) => req,
                    Err(_) => continue,
                }
            } else {
                let symbols: Vec<Vec<u8>> = (0..rng.random_range(0..8))
                    .map(|_| {
                        let pool: [&[u8]; 8] =
                            [b"m", b"n", b"", b"\xff", b"time", b"weir_x", b"k", b"\0"];
                        pool[rng.random_range(0..pool.len())].to_vec()
                    })
                    .collect();
                let index = |rng: &mut StdRng| rng.random_range(0..10u32);
                let points = (0..rng.random_range(0..20))
                    .map(|_| Point {
                        table: index(&mut rng),
                        timestamp_ns: [0, 1, -1, i64::MAX, i64::MIN][rng.random_range(0..5)],
                        tags: (0..rng.random_range(0..5))
                            .map(|_| index(&mut rng))
                            .collect(),
                        fields: (0..rng.random_range(0..4))
                            .map(|_| Field {
                                key: index(&mut rng),
                                value: match rng.random_range(0..6) {
                                    0 => None,
                                    1 => Some(field::Value::F64(
                                        [f64::NAN, 1.0, f64::INFINITY][rng.random_range(0..3)],
                                    )),
                                    2 => Some(field::Value::I64(rng.random())),
                                    3 => Some(field::Value::U64(rng.random())),
                                    4 => Some(field::Value::Bool(rng.random())),
                                    _ => Some(field::Value::String(index(&mut rng))),
                                },
                            })
                            .collect(),
                    })
                    .collect();
                let mut req = request(
                    &symbols.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                    points,
                );
                if rng.random_range(0..4) == 0 {
                    req.time_columns.push(TimeColumn {
                        table: index(&mut rng),
                        name: index(&mut rng),
                    });
                }
                req
            };
            let _ = decode_write_limited(&req, 1, limits, &time);
        }
    }
}
