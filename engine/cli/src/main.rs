//! `weir`: the one binary. `weir serve` runs the server; `weir sql`,
//! `weir import`, `weir status`, `weir alerts` and `weir probes` are
//! clients of a running server; `weir plugin` builds and tries plugins;
//! `weir rules` checks and tries alert rules.

mod import;
mod monitor;
mod plugin;
mod sql;
mod suppress;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_server::{LogFormat, ServeArgs, ServerConfig};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: a monitoring stream processor with its own time-series store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (gRPC ingest, HTTP SQL/health/metrics).
    Serve(Box<ServeArgs>),
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

/// The commands besides `serve`: they share a plain runtime.
#[derive(Subcommand)]
enum ClientCommand {
    /// Run a SQL query against a running server.
    Sql(sql::SqlArgs),
    /// Stream a CSV, JSON-lines or Parquet file into a running server.
    Import(import::ImportArgs),
    /// Scaffold, check, try out and reload WebAssembly plugins.
    Plugin(plugin::PluginArgs),
    /// Services, their uptime and the alerts firing, from a running server.
    Status(monitor::ServerArg),
    /// Current alerts of a running server; `backtest` replays history
    /// through a rule file.
    Alerts(monitor::AlertsArgs),
    /// Probes of a running server with their last result.
    Probes(monitor::ServerArg),
    /// Check rule files; evaluate a rule against stored data.
    Rules(monitor::RulesArgs),
    /// Suppress alerts for a while: add, preview, list, show, update, expire.
    Suppress(suppress::SuppressArgs),
    /// Access tokens of a data directory: create, list, revoke.
    Token(token::TokenArgs),
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB) each time a
/// large block is freed, after which the buffer's multi-MiB Arrow arrays
/// come from the heap and stay there when freed: measured under overload,
/// RSS settled near 2.1 GiB with the buffer empty. A fixed 1 MiB threshold
/// returns every large block to the system when it is freed (peak 1.75 GiB
/// against 2.46 GiB in the same run; see benches/README.md, "Overload").
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called once, before
    // any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    return_freed_memory();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Client(command) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))
            .and_then(|runtime| runtime.block_on(run(*command))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Sql(args) => sql::run(args).await,
        ClientCommand::Import(args) => import::run(args).await,
        ClientCommand::Plugin(args) => plugin::run(args).await,
        ClientCommand::Status(args) => monitor::status(args).await,
        ClientCommand::Alerts(args) => monitor::alerts(args).await,
        ClientCommand::Probes(args) => monitor::probes(args).await,
        ClientCommand::Rules(args) => monitor::rules(args).await,
        ClientCommand::Suppress(args) => suppress::run(args).await,
        ClientCommand::Token(args) => token::run(args),
    }
}

/// `weir serve`. The runtime's threads take writes, log, persist and compact,
/// so they run at `ingest_nice`. Queries run on the query engine's own
/// threads, and requests are read and answered on the front ends'
/// (`weir-api`); both are started from this (the main) thread while it
/// polls `serve`, and a new thread inherits its creator's nice value, so
/// theirs stays the process's own and a query takes the CPU first.
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    let ingest_nice = config.ingest_nice;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || lower_this_thread_priority(ingest_nice))
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    runtime.block_on(serve_on_runtime(config))
}

/// Raises the calling thread's nice value to `nice` (Linux sets it per
/// thread). Lowering a priority needs no privilege; a failure leaves the
/// thread as it was, which only costs queries their head start.
fn lower_this_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: setpriority reads no memory; `who` 0 names the calling
        // thread on Linux.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

async fn serve_on_runtime(config: ServerConfig) -> anyhow::Result<ExitCode> {
    init_logging(config.log_format, &config.log_filter)?;
    weir_server::serve(config, shutdown_signal(), |addrs| {
        // Printed (not logged) so scripts and tests can read the ports.
        println!("weir: gRPC listening on {}", addrs.grpc);
        let scheme = if addrs.tls { "https" } else { "http" };
        println!("weir: HTTP listening on {scheme}://{}", addrs.http);
        println!("weir: Postgres listening on {}", addrs.pg);
        if let Some(addr) = addrs.otlp_grpc {
            println!("weir: OTLP gRPC listening on {addr}");
        }
        if let Some(addr) = addrs.otlp_http {
            println!("weir: OTLP HTTP listening on {scheme}://{addr}");
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// The token the client commands send, from `WEIR_TOKEN`.
fn token() -> Option<String> {
    std::env::var("WEIR_TOKEN").ok().filter(|t| !t.is_empty())
}

/// `WEIR_CA_FILE`: a PEM CA to trust (besides the public roots) for a
/// server with its own certificate.
fn ca_file() -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = std::env::var_os("WEIR_CA_FILE").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("WEIR_CA_FILE {}: {e}", path.to_string_lossy()))?;
    Ok(Some(pem))
}

/// An HTTP client that sends `WEIR_TOKEN`, if set, as a bearer token, and
/// trusts `WEIR_CA_FILE`.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token() {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("WEIR_TOKEN is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(pem) = ca_file()? {
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// A gRPC channel to `server` (`https://…` for TLS, trusting the public
/// roots and `WEIR_CA_FILE`).
async fn grpc_channel(server: &str) -> anyhow::Result<tonic::transport::Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(server.to_string())
        .map_err(|_| anyhow::anyhow!("{server:?} is not a server address"))?;
    if server.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = ca_file()? {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint.connect().await?)
}

/// A gRPC interceptor that sends `WEIR_TOKEN`, if set, as a bearer token.
fn grpc_token() -> anyhow::Result<
    impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
> {
    let value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = token()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("WEIR_TOKEN is not a valid header value"))?;
    Ok(move |mut request: tonic::Request<()>| {
        if let Some(value) = &value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    })
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log_filter {filter:?}: {e}"))?;
    // Colours only for a person at a terminal, never into log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
