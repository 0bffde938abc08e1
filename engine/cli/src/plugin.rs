//! `weir plugin`: scaffold, check, try out and reload plugins.
//!
//! `check` and `test` need no server: they load the component with the same
//! host code the server uses (same sandbox, same limits, same conversions).

mod scaffold;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use serde_json::Value as Json;
use weir_model::{TableBatch, Value, WriteBatchBuilder};
use weir_plugins::{Limits, PluginKind, PluginRuntime, PluginSpec, RuntimeConfig};

#[derive(clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand)]
enum PluginCommand {
    /// Create a plugin crate from a template.
    New(scaffold::NewArgs),
    /// Say which world a component implements, or why Weir would refuse it.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Run a component on sample input and print the events it produces.
    Test(TestArgs),
    /// Ask a running server to re-read its config and plugins.
    Reload {
        /// The server's HTTP address.
        #[arg(long, env = "WEIR_HTTP_URL", default_value = "http://127.0.0.1:8090")]
        server: String,
    },
}

#[derive(clap::Args)]
struct TestArgs {
    /// The component (`.wasm`).
    file: PathBuf,
    /// Sample input: for an adapter, the raw body; for a filter or
    /// enricher, JSON lines, one event per line (see `--tag`).
    #[arg(long)]
    input: PathBuf,
    /// A config pair for the plugin's `init`; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Adapter input's content type.
    #[arg(long, default_value = "")]
    content_type: String,
    /// Table of JSON-lines events (filters, enrichers).
    #[arg(long, default_value = "events")]
    table: String,
    /// JSON-lines key holding the timestamp (integer ns or RFC 3339); absent keys mean now.
    #[arg(long, default_value = "time")]
    time_column: String,
    /// JSON-lines keys that are tags (strings otherwise become string fields); repeatable.
    #[arg(long = "tag", value_name = "KEY")]
    tags: Vec<String>,
    /// The call deadline.
    #[arg(long, default_value = "1s")]
    timeout: humantime::Duration,
    /// Run the input through the plugin this many times (stateful plugins
    /// see every pass).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

pub async fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginCommand::New(args) => scaffold::run(args),
        PluginCommand::Check { file } => tokio::task::spawn_blocking(move || check(file)).await?,
        PluginCommand::Test(args) => tokio::task::spawn_blocking(move || test(args)).await?,
        PluginCommand::Reload { server } => reload(&server).await,
    }
}

fn runtime() -> anyhow::Result<PluginRuntime> {
    Ok(PluginRuntime::new(RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })?)
}

fn check(file: PathBuf) -> anyhow::Result<ExitCode> {
    match runtime()?.compile(&file) {
        Ok(compiled) => {
            let article = if compiled.kind == PluginKind::Filter {
                "a"
            } else {
                "an"
            };
            println!(
                "{}: {article} {} plugin; implements {} (sha256 {})",
                file.display(),
                compiled.kind,
                compiled.kind.world(),
                compiled.digest
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: not loadable: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let config = args
        .config
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--config {pair:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_string();
    let runtime = runtime()?;
    let plugin = runtime.load(PluginSpec {
        name,
        path: args.file.clone(),
        config,
        limits: Limits {
            timeout: Duration::from(args.timeout),
            ..Limits::default()
        },
    })?;
    let input =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let now = now_ns();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for pass in 0..args.repeat.max(1) {
        let (events_in, result) = match plugin.kind() {
            PluginKind::Adapter => (
                None,
                plugin.adapt(&args.content_type, &input, now, &|_| "time".to_string()),
            ),
            kind => {
                let batch = events_from_json_lines(&input, &args)?;
                let rows = batch.batch.num_rows();
                let result = match kind {
                    PluginKind::Filter => plugin.filter(&batch),
                    _ => plugin.enrich(&batch, now),
                };
                (Some(rows), result.map(|b| vec![b]))
            }
        };
        match result {
            Ok(batches) => {
                let events_out: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
                for batch in &batches {
                    print_batch(&mut out, batch)?;
                }
                match events_in {
                    Some(n) => eprintln!("pass {}: {n} events in, {events_out} out", pass + 1),
                    None => eprintln!("pass {}: {events_out} events out", pass + 1),
                }
            }
            Err(e) => {
                eprintln!("pass {}: error: {e}", pass + 1);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One JSON object per line → one table batch.
fn events_from_json_lines(input: &[u8], args: &TestArgs) -> anyhow::Result<TableBatch> {
    let text = std::str::from_utf8(input).context("the input is not UTF-8")?;
    let mut builder = WriteBatchBuilder::new(now_ns());
    let t = builder.table(&args.table, &args.time_column)?;
    let mut row = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        let object: serde_json::Map<String, Json> = serde_json::from_str(line)
            .with_context(|| format!("line {line_no}: not a JSON object"))?;
        let time = match object.get(&args.time_column) {
            None | Some(Json::Null) => 0,
            Some(Json::Number(n)) => n
                .as_i64()
                .with_context(|| format!("line {line_no}: time must be integer nanoseconds"))?,
            Some(Json::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("line {line_no}: time {s:?} is not RFC 3339"))?
                .timestamp_nanos_opt()
                .with_context(|| format!("line {line_no}: time {s:?} out of range"))?,
            Some(other) => bail!("line {line_no}: time {other} is neither a number nor a string"),
        };
        builder
            .begin_point(t, row, time)
            .with_context(|| format!("line {line_no}"))?;
        for (key, value) in &object {
            if key == &args.time_column {
                continue;
            }
            let value =
                match value {
                    Json::Null => continue,
                    Json::String(s) if args.tags.contains(key) => Value::Tag(s),
                    Json::String(s) => Value::String(s),
                    Json::Bool(b) => Value::Bool(*b),
                    Json::Number(n) => match n.as_i64() {
                        Some(i) => Value::I64(i),
                        None => Value::F64(n.as_f64().with_context(|| {
                            format!("line {line_no}: {key}: {n} is out of range")
                        })?),
                    },
                    other => bail!("line {line_no}: {key}: {other} is not a tag or field value"),
                };
            let column = builder
                .column(t, key, value.column_type(), row)
                .with_context(|| format!("line {line_no}"))?;
            builder
                .set(t, column, row, value)
                .with_context(|| format!("line {line_no}"))?;
        }
        row += 1;
    }
    builder.finish()?.pop().context("the input has no events")
}

fn print_batch(out: &mut impl Write, batch: &TableBatch) -> anyhow::Result<()> {
    writeln!(
        out,
        "# table {} ({} events)",
        batch.table,
        batch.batch.num_rows()
    )?;
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
    writer.write_batches(&[&batch.batch as &RecordBatch])?;
    writer.finish()?;
    Ok(())
}

async fn reload(server: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/v1/plugins/reload", server.trim_end_matches('/'));
    let response = crate::http_client()?
        .post(&url)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    let ok = response.status().is_success();
    let body: Json = response.json().await.context("reading the answer")?;
    if !ok {
        eprintln!(
            "reload refused; the running plugins stay: {}",
            body["error"].as_str().unwrap_or("?")
        );
        return Ok(ExitCode::FAILURE);
    }
    let list = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    println!("loaded: {}", list("loaded").join(", "));
    println!("kept:   {}", list("kept").join(", "));
    Ok(ExitCode::SUCCESS)
}
