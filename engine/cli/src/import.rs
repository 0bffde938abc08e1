//! `weir import`: stream a CSV, JSON-lines or Parquet file into a running
//! server over the gRPC streaming write, the same path services use.
//!
//! A row that cannot be written is rejected with its line number and the
//! rest go in. Rows are read, typed and checked here by the server's own
//! rules (bad time, wrong number of CSV fields, invalid UTF-8, a value of the
//! wrong type, NaN, a tag over the size limit: see [`batch`]). The server
//! rejects a request whole, so a batch it refuses anyway (for what only it
//! knows) is split and retried until the rows it refuses stand alone; those
//! are rejected with the server's reason. A failure that is not about the
//! rows (the server down, its WAL failing) stops the import.
//!
//! Column types come from the table's schema when the table exists (looked
//! up over HTTP), else from a sample of the file: a CSV column is numeric (or
//! boolean) when most sampled values are, and integers in a column that holds
//! any fraction are read as floats. `--time-column` names the file's time
//! column, and the table's when the import creates it. The exit code is
//! non-zero when anything was rejected.

mod batch;
mod read;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weir_model::{ColumnType, NameKind, validate_name};
use weir_proto::v1::WriteRequest;
use weir_proto::v1::write_service_client::WriteServiceClient;

use batch::{Batch, BatchBuilder, TableRules};
use read::{Rejection, Row, TextType, read_csv, read_jsonl, read_parquet};

/// The time column of a file (and table) when `--time-column` is not given.
const DEFAULT_TIME_COLUMN: &str = "time";

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file to import.
    file: PathBuf,
    /// Table to write into.
    #[arg(long)]
    table: String,
    /// The file's column holding each row's time [default: time]. When given,
    /// it also names the table's time column if the import creates the table;
    /// a table that exists with another time column is refused.
    #[arg(long)]
    time_column: Option<String>,
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
    // Every row would fail on these: refuse before reading the file.
    validate_name(NameKind::Table, &args.table).map_err(|e| anyhow!("--table: {e}"))?;
    if let Some(name) = &args.time_column {
        validate_name(NameKind::Column, name).map_err(|e| anyhow!("--time-column: {e}"))?;
    }
    let format = match args.format {
        Some(f) => f,
        None => guess_format(&args.file)?,
    };
    let table = look_up_table(&args.http_server, &args.table).await;
    if let (Some(existing), Some(wanted)) = (&table.time_column, &args.time_column)
        && existing != wanted
    {
        bail!(
            "table {:?} has time column {existing:?}, not {wanted:?}: a table's time column is named when the table is created",
            args.table
        );
    }
    let text_types: HashMap<String, TextType> = table
        .columns
        .iter()
        .flatten()
        .map(|(name, t)| {
            let t = match t {
                ColumnType::F64 => TextType::Float,
                ColumnType::I64 | ColumnType::U64 => TextType::Int,
                ColumnType::Bool => TextType::Bool,
                // A binary column is a rollup's, whose table takes no imports.
                ColumnType::Tag | ColumnType::String | ColumnType::Time | ColumnType::Binary => {
                    TextType::Text
                }
            };
            (name.clone(), t)
        })
        .collect();
    let (row_tx, mut row_rx) = mpsc::channel::<Result<Row, Rejection>>(args.batch_rows * 2);
    let path = args.file.clone();
    // Reading and parsing is blocking work: keep it off the async threads.
    let reader = tokio::task::spawn_blocking(move || match format {
        FileFormat::Csv => read_csv(&path, &row_tx, &text_types),
        FileFormat::Jsonl => read_jsonl(&path, &row_tx),
        FileFormat::Parquet => read_parquet(&path, &row_tx),
    });

    let channel = crate::grpc_channel(&args.server)
        .await
        .with_context(|| format!("cannot reach the server at {}", args.server))?;
    let mut client = WriteServiceClient::with_interceptor(channel, crate::grpc_token()?)
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

    let mut builder = BatchBuilder::new(TableRules {
        table: args.table.clone(),
        time_column: args
            .time_column
            .clone()
            .unwrap_or_else(|| DEFAULT_TIME_COLUMN.to_string()),
        name_time_column: args.time_column.is_some(),
        table_time_column: args.time_column.clone().or(table.time_column),
        column_types: table.columns,
        tags: args.tags.iter().cloned().collect(),
        time_unit: args.time_unit.nanos(),
    });
    let mut rejections: Vec<Rejection> = Vec::new();
    let mut written_rows = 0u64;
    // Batches to send, halves of rejected ones first; and those sent, by sequence.
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut in_flight: HashMap<u64, Batch> = HashMap::new();
    let mut sequence = 0u64;
    let mut rows_done = false;

    loop {
        while in_flight.len() < MAX_IN_FLIGHT
            && let Some(mut batch) = queue.pop_front()
        {
            sequence += 1;
            batch.request.sequence = sequence;
            // Kept to split if the server rejects it.
            let request = batch.request.clone();
            in_flight.insert(sequence, batch);
            req_tx
                .send(request)
                .await
                .map_err(|_| anyhow!("the server closed the write stream"))?;
        }
        if rows_done && queue.is_empty() && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            row = row_rx.recv(), if !rows_done && queue.is_empty() && in_flight.len() < MAX_IN_FLIGHT => {
                match row {
                    Some(Ok(row)) => {
                        if let Err(reason) = builder.push(&row) {
                            rejections.push(Rejection { line: row.line, reason });
                        }
                    }
                    Some(Err(rejection)) => rejections.push(rejection),
                    None => rows_done = true,
                }
                if builder.len() >= args.batch_rows || (rows_done && builder.len() > 0) {
                    let batch = builder.take();
                    progress.inc(batch.len() as u64);
                    queue.push_back(batch);
                }
            }
            ack = acks.message(), if !in_flight.is_empty() => {
                let ack = match ack {
                    Ok(Some(ack)) => ack,
                    Ok(None) => bail!(
                        "the server closed the write stream with {} batches unanswered; {written_rows} rows were written",
                        in_flight.len()
                    ),
                    Err(status) => bail!(
                        "write stream failed: {}; {written_rows} rows were written",
                        status.message()
                    ),
                };
                let Some(batch) = in_flight.remove(&ack.sequence) else {
                    bail!("the server acknowledged batch {}, which was not sent", ack.sequence);
                };
                let Some(error) = ack.error else {
                    written_rows += ack.rows_written;
                    continue;
                };
                match tonic::Code::from(error.code) {
                    // Bad input somewhere in the batch: find it.
                    tonic::Code::InvalidArgument if batch.len() > 1 => {
                        let (head, tail) = batch.split();
                        queue.push_front(tail);
                        queue.push_front(head);
                    }
                    // One bad row; or a plugin that failed on these rows (retrying
                    // smaller parts would only fail it again).
                    tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                        rejections.extend(batch.lines.iter().map(|&line| Rejection {
                            line,
                            reason: error.message.clone(),
                        }));
                    }
                    code => bail!(
                        "the server could not write the rows from line {} ({code:?}: {}); {written_rows} rows were written",
                        batch.first_line(),
                        error.message
                    ),
                }
            }
            else => bail!("internal error: the import stalled with rows unsent"),
        }
    }
    drop(req_tx);
    progress.finish_and_clear();
    reader
        .await
        .context("file reader task")?
        .with_context(|| format!("reading {}", args.file.display()))?;

    rejections.sort_by_key(|r| r.line);
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
        "imported {written_rows} rows into {}; rejected {} rows",
        args.table,
        rejections.len()
    );
    Ok(if rejections.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the server says of a table before the import starts.
#[derive(Default)]
struct TableInfo {
    /// Its time column, if it exists.
    time_column: Option<String>,
    /// Its columns' types (none if it does not exist yet); `None` if the
    /// server could not be asked.
    columns: Option<HashMap<String, ColumnType>>,
}

async fn look_up_table(http: &str, table: &str) -> TableInfo {
    let query = format!(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{}'",
        table.replace('\'', "''")
    );
    let url = format!("{}/api/v1/sql", http.trim_end_matches('/'));
    let answer = async {
        let response = crate::http_client()?
            .post(&url)
            .header("accept", "application/json")
            .body(query)
            .send()
            .await?
            .error_for_status()?;
        anyhow::Ok(
            response
                .json::<Vec<serde_json::Map<String, serde_json::Value>>>()
                .await?,
        )
    };
    let rows = match answer.await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!(
                "warning: cannot look up the types of table {table:?} at {url} ({e}); inferring them from the file"
            );
            return TableInfo::default();
        }
    };
    let mut info = TableInfo {
        time_column: None,
        columns: Some(HashMap::new()),
    };
    for row in &rows {
        let (Some(name), Some(data_type)) = (
            row.get("column_name").and_then(|v| v.as_str()),
            row.get("data_type").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        // information_schema shows Arrow types; these are the ones Weir stores.
        let column_type = match data_type {
            t if t.starts_with("Timestamp") => {
                info.time_column = Some(name.to_string());
                continue;
            }
            "Dictionary(Int32, Utf8)" => ColumnType::Tag,
            "Float64" => ColumnType::F64,
            "Int64" => ColumnType::I64,
            "UInt64" => ColumnType::U64,
            "Boolean" => ColumnType::Bool,
            "Utf8" => ColumnType::String,
            _ => continue,
        };
        if let Some(columns) = &mut info.columns {
            columns.insert(name.to_string(), column_type);
        }
    }
    info
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
