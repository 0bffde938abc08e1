//! `weir sql`: run a query over HTTP and print the answer.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;

#[derive(clap::Args)]
pub struct SqlArgs {
    /// The SQL query.
    query: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// The server's HTTP address.
    #[arg(long, env = "WEIR_HTTP_URL", default_value = "http://127.0.0.1:8090")]
    server: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/v1/sql", args.server.trim_end_matches('/'));
    let response = crate::http_client()?
        .post(&url)
        .header("accept", weir_server::ARROW_STREAM)
        .header("content-type", "text/plain")
        .body(args.query)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = response.status();
    let body = response.bytes().await.context("reading the answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{message} (HTTP {status})");
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .context("decoding the Arrow answer")?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<RecordBatch>, _>>()?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Table => {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                let empty = RecordBatch::new_empty(schema);
                writeln!(
                    stdout,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&[empty])?
                )?;
            } else {
                writeln!(
                    stdout,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&batches)?
                )?;
            }
            writeln!(stdout, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut stdout);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema))?;
            }
            for batch in &batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut stdout);
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            drop(writer);
            writeln!(stdout)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
