//! Reading an import file into typed rows: CSV, JSON lines, Parquet.
//!
//! Readers run on a blocking thread and send each row, or the reason it was
//! rejected with its line number, down a bounded channel. A line that is not
//! valid UTF-8 is one rejected row; only an I/O error stops the reading.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray};
use tokio::sync::mpsc;

const SAMPLE_ROWS: usize = 1000;

/// One value read from a file.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// Already nanoseconds since the epoch (Parquet timestamps).
    Time(i64),
}

/// A row: its line (or row number) in the file, and cells by column name.
pub(super) struct Row {
    pub line: usize,
    pub cells: Vec<(String, Cell)>,
}

pub(super) struct Rejection {
    pub line: usize,
    pub reason: String,
}

/// The type a CSV column's text is read as, inferred from a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TextType {
    Int,
    Float,
    Bool,
    Text,
}

fn infer_text_type<'a>(values: impl Iterator<Item = &'a str>) -> TextType {
    let (mut ints, mut floats, mut bools, mut texts) = (0, 0, 0, 0);
    for v in values.filter(|v| !v.is_empty()) {
        if v.parse::<i64>().is_ok() {
            ints += 1;
        } else if v.parse::<f64>().is_ok() {
            floats += 1;
        } else if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
            bools += 1;
        } else {
            texts += 1;
        }
    }
    let total = ints + floats + bools + texts;
    // A few malformed values must not turn a numeric column into text: they
    // are rejected by line instead.
    if total == 0 || texts * 2 >= total {
        TextType::Text
    } else if bools > ints + floats {
        TextType::Bool
    } else if floats > 0 {
        TextType::Float
    } else {
        TextType::Int
    }
}

fn text_cell(text: &str, t: TextType) -> Result<Cell, String> {
    if text.is_empty() {
        return Ok(Cell::Null);
    }
    match t {
        TextType::Int => text
            .parse()
            .map(Cell::Int)
            .map_err(|_| format!("{text:?} is not an integer")),
        TextType::Float => text
            .parse()
            .map(Cell::Float)
            .map_err(|_| format!("{text:?} is not a number")),
        TextType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Cell::Bool(true)),
            "false" => Ok(Cell::Bool(false)),
            _ => Err(format!("{text:?} is not true/false")),
        },
        TextType::Text => Ok(Cell::Str(text.to_string())),
    }
}

pub(super) type RowSender = mpsc::Sender<Result<Row, Rejection>>;

fn send(tx: &RowSender, row: Result<Row, Rejection>) -> anyhow::Result<()> {
    tx.blocking_send(row)
        .map_err(|_| anyhow::anyhow!("import stopped"))
}

pub(super) fn read_csv(
    path: &std::path::Path,
    tx: &RowSender,
    known: &HashMap<String, TextType>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .context("reading the CSV header")?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        bail!("the CSV file has no header row");
    }
    // Byte records, so that invalid UTF-8 rejects its row rather than
    // failing the reader; with `flexible`, reading them fails only on I/O.
    let mut records = reader.byte_records();
    let mut sample = Vec::new();
    for record in records.by_ref().take(SAMPLE_ROWS) {
        sample.push(record);
    }
    let types: Vec<TextType> = header
        .iter()
        .enumerate()
        .map(|(i, name)| match known.get(name) {
            Some(t) => *t,
            None => infer_text_type(
                sample
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .filter_map(|r| r.get(i))
                    .filter_map(|field| std::str::from_utf8(field).ok()),
            ),
        })
        .collect();
    for (i, record) in sample.into_iter().chain(records).enumerate() {
        let record = record.with_context(|| format!("reading CSV record {}", i + 1))?;
        // A quoted field may span lines: the record knows where it starts.
        let line = record
            .position()
            .map_or(i + 2, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        let row = match csv::StringRecord::from_byte_record(record) {
            Err(e) => {
                let field = e.utf8_error().field();
                Err(Rejection {
                    line,
                    reason: format!(
                        "column {:?}: not valid UTF-8",
                        header.get(field).map_or("?", String::as_str)
                    ),
                })
            }
            Ok(record) if record.len() != header.len() => Err(Rejection {
                line,
                reason: format!("{} fields, the header has {}", record.len(), header.len()),
            }),
            Ok(record) => record
                .iter()
                .zip(&header)
                .zip(&types)
                .map(|((text, name), t)| {
                    text_cell(text, *t)
                        .map(|cell| (name.clone(), cell))
                        .map_err(|e| format!("column {name:?}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()
                .map(|cells| Row { line, cells })
                .map_err(|reason| Rejection { line, reason }),
        };
        send(tx, row)?;
    }
    Ok(())
}

fn json_cell(value: &serde_json::Value) -> Result<Cell, String> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::String(s) => Cell::Str(s.clone()),
        Value::Number(n) => {
            if let Some(v) = n.as_i64() {
                Cell::Int(v)
            } else if let Some(v) = n.as_u64() {
                Cell::UInt(v)
            } else {
                Cell::Float(
                    n.as_f64()
                        .ok_or_else(|| format!("{n} is not representable"))?,
                )
            }
        }
        Value::Array(_) | Value::Object(_) => {
            return Err("nested arrays and objects are not supported".into());
        }
    })
}

pub(super) fn read_jsonl(path: &std::path::Path, tx: &RowSender) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Raw bytes, so that a line of invalid UTF-8 is one rejected row.
    let mut lines = BufReader::new(file).split(b'\n').enumerate();
    // Columns holding any fractional number are floats throughout, so a
    // column never flips between i64 and f64 from row to row.
    let mut sample = Vec::new();
    for (i, line) in lines.by_ref().take(SAMPLE_ROWS) {
        sample.push((i, line));
    }
    let mut float_columns = std::collections::HashSet::new();
    for (_, line) in &sample {
        if let Ok(line) = line
            && let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(line)
        {
            for (k, v) in map {
                if v.as_number().is_some_and(|n| n.is_f64()) {
                    float_columns.insert(k);
                }
            }
        }
    }
    for (i, line) in sample.into_iter().chain(lines) {
        let line_no = i + 1;
        let mut line = line.with_context(|| format!("reading line {line_no}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = match String::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                let rejection = Rejection {
                    line: line_no,
                    reason: format!(
                        "not valid UTF-8 (at byte {})",
                        e.utf8_error().valid_up_to() + 1
                    ),
                };
                send(tx, Err(rejection))?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<serde_json::Value>(&line) {
            Err(e) => Err(Rejection {
                line: line_no,
                reason: format!("not JSON: {e}"),
            }),
            Ok(serde_json::Value::Object(map)) => map
                .iter()
                .map(|(k, v)| {
                    let cell = json_cell(v).map_err(|e| format!("column {k:?}: {e}"))?;
                    let cell = match cell {
                        Cell::Int(v) if float_columns.contains(k) => Cell::Float(v as f64),
                        Cell::UInt(v) if float_columns.contains(k) => Cell::Float(v as f64),
                        other => other,
                    };
                    Ok((k.clone(), cell))
                })
                .collect::<Result<Vec<_>, String>>()
                .map(|cells| Row {
                    line: line_no,
                    cells,
                })
                .map_err(|reason| Rejection {
                    line: line_no,
                    reason,
                }),
            Ok(_) => Err(Rejection {
                line: line_no,
                reason: "not a JSON object".into(),
            }),
        };
        send(tx, row)?;
    }
    Ok(())
}

pub(super) fn read_parquet(path: &std::path::Path, tx: &RowSender) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .context("not a readable Parquet file")?
        .with_batch_size(8192)
        .build()?;
    let mut line = 0;
    for batch in reader {
        let batch = batch.context("reading a Parquet row group")?;
        let schema = batch.schema();
        let columns: Vec<(String, &dyn Array)> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| (f.name().clone(), c.as_ref()))
            .collect();
        for row in 0..batch.num_rows() {
            line += 1;
            let cells = columns
                .iter()
                .map(|(name, array)| {
                    arrow_cell(*array, row)
                        .map(|c| (name.clone(), c))
                        .map_err(|e| format!("column {name:?}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>();
            let row = cells
                .map(|cells| Row { line, cells })
                .map_err(|reason| Rejection { line, reason });
            send(tx, row)?;
        }
    }
    Ok(())
}

fn arrow_cell(array: &dyn Array, row: usize) -> Result<Cell, String> {
    use arrow::datatypes::*;
    if array.is_null(row) {
        return Ok(Cell::Null);
    }
    Ok(match array.data_type() {
        DataType::Utf8 => Cell::Str(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Cell::Str(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Cell::Str(array.as_string_view().value(row).to_string()),
        DataType::Dictionary(_, value) if **value == DataType::Utf8 => {
            let text = arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8)
                .map_err(|e| e.to_string())?;
            Cell::Str(text.as_string::<i32>().value(0).to_string())
        }
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Cell::UInt(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Cell::UInt(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Cell::UInt(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Cell::UInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, _) => {
            let (v, scale) = match unit {
                TimeUnit::Second => (
                    array.as_primitive::<TimestampSecondType>().value(row),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    array.as_primitive::<TimestampMillisecondType>().value(row),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    array.as_primitive::<TimestampMicrosecondType>().value(row),
                    1_000,
                ),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().value(row),
                    1,
                ),
            };
            Cell::Time(v.checked_mul(scale).ok_or("timestamp overflows")?)
        }
        other => return Err(format!("Arrow type {other} is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_types_are_inferred_from_the_sample() {
        assert_eq!(infer_text_type(["1", "2", ""].into_iter()), TextType::Int);
        assert_eq!(infer_text_type(["1", "2.5"].into_iter()), TextType::Float);
        assert_eq!(
            infer_text_type(["true", "FALSE"].into_iter()),
            TextType::Bool
        );
        assert_eq!(infer_text_type(["1", "x"].into_iter()), TextType::Text);
        assert_eq!(
            infer_text_type(["1.5", "oops", "3"].into_iter()),
            TextType::Float
        );
        assert_eq!(text_cell("", TextType::Int), Ok(Cell::Null));
        assert!(text_cell("abc", TextType::Float).is_err());
    }

    /// A row read, or the reason it was rejected, with its line.
    type Read = (usize, Result<Vec<(String, Cell)>, String>);

    /// Runs a reader over `content`.
    fn read(
        name: &str,
        content: &[u8],
        reader: fn(&std::path::Path, &RowSender) -> anyhow::Result<()>,
    ) -> Vec<Read> {
        let path = std::env::temp_dir().join(format!("weir-import-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        let (tx, mut rx) = mpsc::channel(100);
        let result = reader(&path, &tx);
        let _ = std::fs::remove_file(&path);
        result.unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(row) = rx.blocking_recv() {
            out.push(match row {
                Ok(row) => (row.line, Ok(row.cells)),
                Err(r) => (r.line, Err(r.reason)),
            });
        }
        out
    }

    #[test]
    fn invalid_utf8_rejects_one_csv_row_by_its_line() {
        let csv = b"name,v\na,1\n\"multi\nline\",2\nb\xff,3\nc,4\n";
        let rows = read("utf8.csv", csv, |path, tx| {
            read_csv(path, tx, &HashMap::new())
        });
        let lines: Vec<usize> = rows.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3, 5, 6], "a quoted line break counts");
        assert_eq!(
            rows[2].1,
            Err("column \"name\": not valid UTF-8".to_string())
        );
        assert_eq!(
            rows[3].1,
            Ok(vec![
                ("name".into(), Cell::Str("c".into())),
                ("v".into(), Cell::Int(4))
            ])
        );
    }

    #[test]
    fn invalid_utf8_rejects_one_json_line() {
        let jsonl = b"{\"a\": 1}\r\n{\"a\": \"\xc3\x28\"}\n\n{\"a\": 2}\n";
        let rows = read("utf8.jsonl", jsonl, read_jsonl);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], (1, Ok(vec![("a".into(), Cell::Int(1))])));
        assert_eq!(rows[1], (2, Err("not valid UTF-8 (at byte 8)".to_string())));
        assert_eq!(rows[2], (4, Ok(vec![("a".into(), Cell::Int(2))])));
    }
}
