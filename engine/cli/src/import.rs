//! `weir import`: stream a CSV, JSON-lines or Parquet file into a running
//! server over the gRPC streaming write, the same path services use.
//!
//! Rows are read, typed and checked here; a row that cannot be (bad time,
//! wrong number of CSV fields, a value of the wrong type) is rejected with
//! its line number and the rest go on. Column types come from the table's
//! schema when the table exists (looked up over HTTP), else from a sample of
//! the file: a CSV column is numeric (or boolean) when most sampled values
//! are, and integers in a column that holds any fraction are read as floats.
//! Batches the server rejects count as rejected rows with the server's
//! reason. The exit code is non-zero when
//! anything was rejected.

mod read;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_proto::SymbolTable;
use weir_proto::v1::write_service_client::WriteServiceClient;
use weir_proto::v1::{Field, Point, WriteRequest, field};

use read::{Cell, Rejection, Row, TextType, read_csv, read_jsonl, read_parquet};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file to import.
    file: PathBuf,
    /// Table to write into.
    #[arg(long)]
    table: String,
    /// The file's column holding each row's time.
    #[arg(long, default_value = "time")]
    time_column: String,
    /// Columns to store as tags (the series identity); others become fields.
    #[arg(long = "tag", value_delimiter = ',')]
    tags: Vec<String>,
    /// File format; by default from the extension (.csv, .jsonl/.ndjson/.json, .parquet).
    #[arg(long, value_enum)]
    format: Option<FileFormat>,
    /// Unit of numeric times.
    #[arg(long, value_enum, default_value = "ns")]
    time_unit: TimeUnitArg,
    /// Rows per write batch.
    #[arg(long, default_value_t = 5000)]
    batch_rows: usize,
    /// The server's gRPC address.
    #[arg(long, env = "WEIR_GRPC_URL", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The server's HTTP address, to look up the table's column types.
    #[arg(long, env = "WEIR_HTTP_URL", default_value = "http://127.0.0.1:8090")]
    http_server: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TimeUnitArg {
    S,
    Ms,
    Us,
    Ns,
}

impl TimeUnitArg {
    fn nanos(self) -> i64 {
        match self {
            TimeUnitArg::S => 1_000_000_000,
            TimeUnitArg::Ms => 1_000_000,
            TimeUnitArg::Us => 1_000,
            TimeUnitArg::Ns => 1,
        }
    }
}

const MAX_IN_FLIGHT: usize = 16;
const SHOW_REJECTIONS: usize = 10;

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    if args.batch_rows == 0 {
        bail!("--batch-rows must be at least 1");
    }
    let format = match args.format {
        Some(f) => f,
        None => guess_format(&args.file)?,
    };
    let known = known_types(&args.http_server, &args.table).await;
    let (row_tx, mut row_rx) = mpsc::channel::<Result<Row, Rejection>>(args.batch_rows * 2);
    let path = args.file.clone();
    let known_for_reader = known.clone();
    // Reading and parsing is blocking work: keep it off the async threads.
    let reader = tokio::task::spawn_blocking(move || match format {
        FileFormat::Csv => read_csv(&path, &row_tx, &known_for_reader),
        FileFormat::Jsonl => read_jsonl(&path, &row_tx),
        FileFormat::Parquet => read_parquet(&path, &row_tx),
    });

    let mut client = WriteServiceClient::connect(args.server.clone())
        .await
        .with_context(|| format!("cannot reach the server at {}", args.server))?
        .max_encoding_message_size(256 << 20);
    let (req_tx, req_rx) = mpsc::channel::<WriteRequest>(MAX_IN_FLIGHT);
    let mut acks = client
        .write_stream(ReceiverStream::new(req_rx))
        .await
        .context("opening the write stream")?
        .into_inner();

    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} rows sent ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    let mut rejections: Vec<Rejection> = Vec::new();
    let mut rejected_rows = 0u64;
    let mut written_rows = 0u64;
    let mut in_flight: HashMap<u64, (usize, usize)> = HashMap::new(); // sequence -> (rows, first line)
    let mut batch = BatchBuilder::new(&args, &known);
    let mut sequence = 0u64;
    let mut rows_done = false;

    loop {
        tokio::select! {
            row = row_rx.recv(), if !rows_done && in_flight.len() < MAX_IN_FLIGHT => {
                match row {
                    Some(Ok(row)) => {
                        if let Err(reason) = batch.push(&row) {
                            rejected_rows += 1;
                            rejections.push(Rejection { line: row.line, reason });
                        }
                    }
                    Some(Err(rejection)) => {
                        rejected_rows += 1;
                        rejections.push(rejection);
                    }
                    None => rows_done = true,
                }
                if batch.len() >= args.batch_rows || (rows_done && batch.len() > 0) {
                    sequence += 1;
                    let (request, rows, first_line) = batch.take(sequence);
                    in_flight.insert(sequence, (rows, first_line));
                    req_tx.send(request).await.context("the server closed the write stream")?;
                    progress.inc(rows as u64);
                }
            }
            ack = acks.message(), if !in_flight.is_empty() => {
                let ack = match ack {
                    Ok(Some(ack)) => ack,
                    Ok(None) => bail!("the server closed the write stream with {} batches unanswered", in_flight.len()),
                    Err(status) => bail!("write stream failed: {}", status.message()),
                };
                let (rows, first_line) = in_flight.remove(&ack.sequence).unwrap_or((0, 0));
                match ack.error {
                    None => written_rows += ack.rows_written,
                    Some(error) => {
                        rejected_rows += rows as u64;
                        rejections.push(Rejection {
                            line: first_line,
                            reason: format!("batch of {rows} rows from here rejected by the server: {}", error.message),
                        });
                    }
                }
            }
        }
        if rows_done && in_flight.is_empty() && batch.len() == 0 {
            break;
        }
    }
    drop(req_tx);
    progress.finish_and_clear();
    reader
        .await
        .context("file reader task")?
        .with_context(|| format!("reading {}", args.file.display()))?;

    for r in rejections.iter().take(SHOW_REJECTIONS) {
        eprintln!("rejected: line {}: {}", r.line, r.reason);
    }
    if rejections.len() > SHOW_REJECTIONS {
        eprintln!(
            "rejected: … and {} more",
            rejections.len() - SHOW_REJECTIONS
        );
    }
    println!(
        "imported {written_rows} rows into {}; rejected {rejected_rows} rows",
        args.table
    );
    Ok(if rejected_rows == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Column types of `table` if it exists; empty (with a warning) otherwise.
async fn known_types(http: &str, table: &str) -> HashMap<String, TextType> {
    let query = format!(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{}'",
        table.replace('\'', "''")
    );
    let url = format!("{}/api/v1/sql", http.trim_end_matches('/'));
    let answer = async {
        let response = reqwest::Client::new()
            .post(&url)
            .header("accept", "application/json")
            .body(query)
            .send()
            .await?
            .error_for_status()?;
        response
            .json::<Vec<serde_json::Map<String, serde_json::Value>>>()
            .await
    };
    match answer.await {
        Ok(rows) => rows
            .iter()
            .filter_map(|row| {
                let name = row.get("column_name")?.as_str()?;
                let t = match row.get("data_type")?.as_str()? {
                    "Float64" => TextType::Float,
                    "Int64" | "UInt64" => TextType::Int,
                    "Boolean" => TextType::Bool,
                    _ => TextType::Text,
                };
                Some((name.to_string(), t))
            })
            .collect(),
        Err(e) => {
            eprintln!(
                "warning: cannot look up the types of table {table:?} at {url} ({e}); inferring them from the file"
            );
            HashMap::new()
        }
    }
}

fn guess_format(path: &std::path::Path) -> anyhow::Result<FileFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "csv" => FileFormat::Csv,
        "jsonl" | "ndjson" | "json" => FileFormat::Jsonl,
        "parquet" => FileFormat::Parquet,
        _ => bail!(
            "cannot tell the format of {} from its extension; pass --format csv|jsonl|parquet",
            path.display()
        ),
    })
}

/// Builds one WriteRequest with its symbol table.
struct BatchBuilder {
    table: String,
    time_column: String,
    tags: Vec<String>,
    time_unit: i64,
    /// Columns the table stores as f64: integers sent to them go as floats.
    float_columns: std::collections::HashSet<String>,
    symbols: SymbolTable,
    points: Vec<Point>,
    first_line: usize,
}

impl BatchBuilder {
    fn new(args: &ImportArgs, known: &HashMap<String, TextType>) -> Self {
        let mut builder = Self {
            table: args.table.clone(),
            time_column: args.time_column.clone(),
            tags: args.tags.clone(),
            time_unit: args.time_unit.nanos(),
            float_columns: known
                .iter()
                .filter(|(_, t)| **t == TextType::Float)
                .map(|(name, _)| name.clone())
                .collect(),
            symbols: SymbolTable::default(),
            points: Vec::new(),
            first_line: 0,
        };
        builder.reset();
        builder
    }

    /// Starts the next request: the table is always symbol 0.
    fn reset(&mut self) {
        self.symbols.take();
        self.points.clear();
        self.symbols.intern(&self.table);
    }

    fn len(&self) -> usize {
        self.points.len()
    }

    /// Adds a row; an error is the reason it is rejected.
    fn push(&mut self, row: &Row) -> Result<(), String> {
        let mut timestamp_ns = None;
        let mut tags = Vec::new();
        let mut fields = Vec::new();
        for (name, cell) in &row.cells {
            if *name == self.time_column {
                timestamp_ns = Some(
                    parse_time(cell, self.time_unit)
                        .map_err(|e| format!("column {name:?}: {e}"))?,
                );
            } else if self.tags.contains(name) {
                let value = match cell {
                    Cell::Null => continue,
                    Cell::Str(s) => s.clone(),
                    Cell::Int(v) | Cell::Time(v) => v.to_string(),
                    Cell::UInt(v) => v.to_string(),
                    Cell::Float(v) => v.to_string(),
                    Cell::Bool(v) => v.to_string(),
                };
                tags.push((name.clone(), value));
            } else {
                let is_float = self.float_columns.contains(name);
                let value = match cell {
                    Cell::Null => continue,
                    Cell::Int(v) if is_float => FieldValue::Plain(field::Value::F64(*v as f64)),
                    Cell::UInt(v) if is_float => FieldValue::Plain(field::Value::F64(*v as f64)),
                    Cell::Str(s) => FieldValue::Str(s.clone()),
                    Cell::Int(v) | Cell::Time(v) => FieldValue::Plain(field::Value::I64(*v)),
                    Cell::UInt(v) => FieldValue::Plain(field::Value::U64(*v)),
                    Cell::Float(v) => FieldValue::Plain(field::Value::F64(*v)),
                    Cell::Bool(v) => FieldValue::Plain(field::Value::Bool(*v)),
                };
                fields.push((name.clone(), value));
            }
        }
        let Some(timestamp_ns) = timestamp_ns else {
            return Err(format!("no value in time column {:?}", self.time_column));
        };
        if self.points.is_empty() {
            self.first_line = row.line;
        }
        let mut point = Point {
            table: 0,
            timestamp_ns,
            tags: Vec::with_capacity(tags.len() * 2),
            fields: Vec::with_capacity(fields.len()),
        };
        for (k, v) in tags {
            let k = self.symbols.intern(&k);
            let v = self.symbols.intern(&v);
            point.tags.extend([k, v]);
        }
        for (k, v) in fields {
            let key = self.symbols.intern(&k);
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
        Ok(())
    }

    fn take(&mut self, sequence: u64) -> (WriteRequest, usize, usize) {
        let rows = self.points.len();
        let request = WriteRequest {
            sequence,
            symbols: self.symbols.take(),
            points: std::mem::take(&mut self.points),
        };
        let first_line = self.first_line;
        self.reset();
        (request, rows, first_line)
    }
}

enum FieldValue {
    Str(String),
    Plain(field::Value),
}

fn parse_time(cell: &Cell, unit_ns: i64) -> Result<i64, String> {
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

    #[test]
    fn times_parse_in_common_forms() {
        let expected = 1_763_632_800_000_000_000; // 2025-11-20T10:00:00Z
        assert_eq!(parse_time_text("2025-11-20T10:00:00Z"), Ok(expected));
        assert_eq!(parse_time_text("2025-11-20T11:00:00+01:00"), Ok(expected));
        assert_eq!(parse_time_text("2025-11-20 10:00:00"), Ok(expected));
        assert_eq!(
            parse_time(&Cell::Int(1_763_632_800), 1_000_000_000),
            Ok(expected)
        );
        assert!(parse_time_text("yesterday").is_err());
        assert!(parse_time(&Cell::Int(i64::MAX), 1_000).is_err());
    }
}
