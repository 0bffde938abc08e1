//! Settings of `weir serve`. Every setting is a flag, a `WEIR_…` environment
//! variable and a key of the TOML file given by `--config`, in that order of
//! precedence, over a built-in default. `weir.example.toml` at the repository
//! root lists them all and is parsed by a test.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use weir_query::QueryConfig;
use weir_storage::{BackgroundConfig, Durability, StoreConfig, TableOptions, WalConfig};

use crate::{Error, Result};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[sources.NAME]` in the TOML file: an adapter plugin for raw bodies —
/// or, under the reserved name `host`, the built-in sampler of this machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    pub adapters: BTreeMap<String, StageSection>,
    pub host: Option<HostSection>,
}

/// `[sources.host]`: this machine's CPU, memory, disks and network,
/// sampled into table `host_metrics`. Off unless the section is present.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Default true once the section is there.
    pub enabled: Option<bool>,
    /// Time between samples. Default `10s`.
    pub interval: Option<String>,
}

impl<'de> Deserialize<'de> for Sources {
    /// Each entry by its name, so an adapter's errors still name its field.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw = BTreeMap::<String, toml::Value>::deserialize(deserializer)?;
        let mut sources = Sources::default();
        for (name, value) in raw {
            if name == HOST_SOURCE {
                sources.host = Some(
                    HostSection::deserialize(value)
                        .map_err(|e| D::Error::custom(format!("sources.host: {e}")))?,
                );
            } else {
                let adapter = StageSection::deserialize(value)
                    .map_err(|e| D::Error::custom(format!("sources.{name}: {e}")))?;
                sources.adapters.insert(name, adapter);
            }
        }
        Ok(sources)
    }
}

/// The source name the built-in host sampler has.
const HOST_SOURCE: &str = "host";

/// Per-table settings in the TOML file: `[tables.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Name of the table's time column (default `time`).
    pub time_column: Option<String>,
    /// Drop whole day partitions older than this, e.g. `"30d"`.
    pub retention: Option<String>,
}

/// A rollup in the TOML file: `[rollups.NAME]`.
///
/// ```toml
/// [rollups.service_metrics_1h]
/// source = "service_metrics"
/// bucket = "1h"
/// group_by = ["service_name"]
/// aggregates = { checks = "count(*)", healthy = "count_if(status = 'healthy')" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSection {
    /// The table whose rows are rolled up.
    pub source: String,
    /// The time bucket: a duration dividing a day (`1m`, `5m`, `1h`, `1d`).
    pub bucket: String,
    /// Tags to group by within a bucket.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Column name → `count(*)`, `count_if(col op value)`, `min(col)`,
    /// `max(col)`, `sum(col)` or `avg(col)`.
    pub aggregates: BTreeMap<String, String>,
}

/// A plugin stage in the TOML file: `[[pipelines.TABLE.stages]]`, or a
/// source's adapter, `[sources.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    /// The component, relative to the config file's directory.
    pub wasm: PathBuf,
    /// Name in logs, metrics and dead letters. Default: the file's stem.
    pub name: Option<String>,
    /// Per-call deadline; overrides `plugin_timeout`.
    pub timeout: Option<String>,
    /// Memory cap; overrides `plugin_memory_limit`.
    pub memory_limit: Option<String>,
    /// Output cap per call; overrides `plugin_max_output`.
    pub max_output: Option<String>,
    /// What the plugin's `init` gets. Nested tables flatten to dotted keys;
    /// numbers and booleans become their text.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

/// A table's pipeline in the TOML file: `[pipelines.TABLE]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// `reject` (default): a failing stage fails the write. `pass-through`:
    /// the batch skips the failed stage. Dead letters are kept either way.
    pub on_failure: Option<String>,
    #[serde(default)]
    pub stages: Vec<StageSection>,
}

/// `[auth]` in the TOML file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `/metrics` answers without a token. Default false.
    pub public_metrics: Option<bool>,
    /// The HTML status page (`/status`) answers without a token. Default false.
    pub public_status_page: Option<bool>,
    /// Failed authentications a peer address may make in a row. Default 10.
    pub max_failures: Option<u32>,
    /// After those, one more failure is allowed per this long. Default `6s`.
    pub failure_refill: Option<String>,
    /// Tokens given here rather than by `weir token create` (which prints
    /// the entry with `--print-config`): `id`, `name`, `scopes`, `hash`.
    #[serde(default)]
    pub tokens: Vec<crate::auth::TokenEntry>,
}

/// `weir serve` settings as given; `None` means "not set here".
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "WEIR_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Data directory (WAL, catalog, Parquet). Default `./weir-data`.
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// gRPC listen address. Default `127.0.0.1:50051`; port 0 picks a free port.
    #[arg(long, env = "WEIR_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,

    /// HTTP listen address (SQL, health, metrics). Default `127.0.0.1:8090`.
    #[arg(long, env = "WEIR_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,

    /// A gRPC listener for OTLP alone, where OpenTelemetry SDKs send by
    /// default: `127.0.0.1:4317`. Off unless set; OTLP is always served on
    /// the gRPC listen address too.
    #[arg(long, env = "WEIR_OTLP_GRPC_LISTEN", value_name = "ADDR")]
    pub otlp_grpc_listen: Option<SocketAddr>,

    /// An HTTP listener for OTLP/HTTP alone (`/v1/metrics`, `/v1/logs`,
    /// `/v1/traces`), the SDKs' default being `127.0.0.1:4318`. Off unless
    /// set; OTLP/HTTP is always served on the HTTP listen address too.
    #[arg(long, env = "WEIR_OTLP_HTTP_LISTEN", value_name = "ADDR")]
    pub otlp_http_listen: Option<SocketAddr>,

    /// PostgreSQL wire protocol listen address (psql, psycopg, JDBC,
    /// Grafana). Default `127.0.0.1:5433`.
    #[arg(long, env = "WEIR_PG_LISTEN", value_name = "ADDR")]
    pub pg_listen: Option<SocketAddr>,

    /// Listen on addresses other than loopback with no token to require.
    /// Without it, `serve` refuses to (anyone who can reach the port could
    /// write, query and change the server).
    #[arg(long, env = "WEIR_INSECURE_ALLOW_UNAUTHENTICATED")]
    #[serde(default)]
    pub insecure_allow_unauthenticated: bool,

    /// Authentication (TOML only): `[auth]`.
    #[arg(skip)]
    #[serde(default)]
    pub auth: AuthSection,

    /// PEM certificate chain: with `tls_key_file`, every listener speaks
    /// TLS only. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "WEIR_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of `tls_cert_file`.
    #[arg(long, env = "WEIR_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// Postgres connections open at once; more are refused. Default 1024.
    #[arg(long, env = "WEIR_PG_MAX_CONNECTIONS", value_name = "N")]
    pub pg_max_connections: Option<usize>,

    /// WAL durability: `fsync` (each group commit, before the ack; default),
    /// `interval` (ack after write, fsync every `wal-sync-interval`) or `none`.
    #[arg(long, env = "WEIR_WAL_SYNC", value_name = "MODE")]
    pub wal_sync: Option<String>,

    /// fsync period in `interval` mode. Default `100ms`.
    #[arg(long, env = "WEIR_WAL_SYNC_INTERVAL", value_name = "DURATION")]
    pub wal_sync_interval: Option<String>,

    /// Size at which a WAL segment is closed. Default `64MiB`.
    #[arg(long, env = "WEIR_WAL_SEGMENT_SIZE", value_name = "SIZE")]
    pub wal_segment_size: Option<String>,

    /// Writes queued for the WAL before writers wait. Default 1024.
    #[arg(long, env = "WEIR_WAL_QUEUE_DEPTH", value_name = "N")]
    pub wal_queue_depth: Option<usize>,

    /// Persist the buffer to Parquet at least this often. Default `60s`.
    #[arg(long, env = "WEIR_PERSIST_INTERVAL", value_name = "DURATION")]
    pub persist_interval: Option<String>,

    /// Persist early once the buffer holds this much. Default `256MiB`.
    #[arg(long, env = "WEIR_PERSIST_BUFFER_SIZE", value_name = "SIZE")]
    pub persist_buffer_size: Option<String>,

    /// Writes wait while the buffer holds more than this. Default `1GiB`.
    #[arg(long, env = "WEIR_MAX_BUFFER_SIZE", value_name = "SIZE")]
    pub max_buffer_size: Option<String>,

    /// How often to look for partitions to compact. Default `5m`.
    #[arg(long, env = "WEIR_COMPACTION_INTERVAL", value_name = "DURATION")]
    pub compaction_interval: Option<String>,

    /// Compact a partition once it has this many files. Default 8.
    #[arg(long, env = "WEIR_COMPACTION_MIN_FILES", value_name = "N")]
    pub compaction_min_files: Option<usize>,

    /// How often to apply retention. Default `1m`.
    #[arg(long, env = "WEIR_RETENTION_INTERVAL", value_name = "DURATION")]
    pub retention_interval: Option<String>,

    /// Memory one query may use. Default `2GiB`.
    #[arg(long, env = "WEIR_QUERY_MEMORY_LIMIT", value_name = "SIZE")]
    pub query_memory_limit: Option<String>,

    /// Time one query may take. Default `60s`.
    #[arg(long, env = "WEIR_QUERY_TIMEOUT", value_name = "DURATION")]
    pub query_timeout: Option<String>,

    /// Largest answer held whole (HTTP, `weir sql`, alert rules), in Arrow
    /// bytes; a larger one fails with a hint to aggregate or add a LIMIT.
    /// Streamed answers (Flight SQL, Postgres) are not held. Default `256MiB`.
    #[arg(long, env = "WEIR_QUERY_MAX_RESULT_SIZE", value_name = "SIZE")]
    pub query_max_result_size: Option<String>,

    /// Most columns (tags and fields) one table may have. Default 1000.
    #[arg(long, env = "WEIR_MAX_COLUMNS_PER_TABLE", value_name = "N")]
    pub max_columns_per_table: Option<usize>,

    /// Most distinct tables one write request may name. Default 1000.
    #[arg(long, env = "WEIR_MAX_TABLES_PER_WRITE", value_name = "N")]
    pub max_tables_per_write: Option<usize>,

    /// Most distinct columns (over all its tables) one write request may
    /// name. Default 10000.
    #[arg(long, env = "WEIR_MAX_COLUMNS_PER_WRITE", value_name = "N")]
    pub max_columns_per_write: Option<usize>,

    /// Encoded bytes of writes in flight (admitted, not yet acknowledged);
    /// more wait, and streams stop reading, until earlier ones are acked.
    /// Bounds the memory writes hold. Default `64MiB`: enough to keep the
    /// WAL's group commits full; more only lengthens the queue.
    #[arg(long, env = "WEIR_MAX_WRITE_INFLIGHT_SIZE", value_name = "SIZE")]
    pub max_write_inflight_size: Option<String>,

    /// Largest accepted gRPC message or HTTP write body, and the most a
    /// compressed body (gzip, snappy) may decompress to. Default `64MiB`.
    #[arg(long, env = "WEIR_MAX_MESSAGE_SIZE", value_name = "SIZE")]
    pub max_message_size: Option<String>,

    /// How long shutdown waits for open requests and streams. Default `10s`.
    #[arg(long, env = "WEIR_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// The nice value (0–19) of the threads that take writes, log, persist
    /// and compact; the threads that serve queries keep the process's own.
    /// While a query runs, ingest yields it the CPU and clients wait for
    /// acks a little longer; 0 shares the CPU evenly. Linux only. Default 19.
    #[arg(long, env = "WEIR_INGEST_NICE", value_name = "N")]
    pub ingest_nice: Option<i32>,

    /// Log format. Default `text`.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter in `tracing` syntax. Default `info`.
    #[arg(long, env = "WEIR_LOG_FILTER", value_name = "FILTER")]
    pub log_filter: Option<String>,

    /// Time column of a table, `TABLE=COLUMN`; repeatable. TOML:
    /// `[tables.TABLE] time_column = "COLUMN"`.
    #[arg(
        long = "time-column",
        env = "WEIR_TIME_COLUMNS",
        value_name = "TABLE=COLUMN",
        value_delimiter = ','
    )]
    #[serde(skip)]
    pub time_columns: Vec<String>,

    /// Retention of a table, `TABLE=DURATION`; repeatable. TOML:
    /// `[tables.TABLE] retention = "DURATION"`.
    #[arg(
        long = "retention",
        env = "WEIR_RETENTION",
        value_name = "TABLE=DURATION",
        value_delimiter = ','
    )]
    #[serde(skip)]
    pub retention: Vec<String>,

    #[arg(skip)]
    #[serde(default)]
    pub tables: BTreeMap<String, TableSection>,

    /// `[rollups.NAME]`: aggregates per time bucket kept as rows arrive.
    #[arg(skip)]
    #[serde(default)]
    pub rollups: BTreeMap<String, RollupSection>,

    /// Default per-call deadline of a plugin. Default `1s`.
    #[arg(long, env = "WEIR_PLUGIN_TIMEOUT", value_name = "DURATION")]
    pub plugin_timeout: Option<String>,

    /// Default memory cap of a plugin instance. Default `64MiB`.
    #[arg(long, env = "WEIR_PLUGIN_MEMORY_LIMIT", value_name = "SIZE")]
    pub plugin_memory_limit: Option<String>,

    /// Default cap on what one plugin call may return. Default `64MiB`.
    #[arg(long, env = "WEIR_PLUGIN_MAX_OUTPUT", value_name = "SIZE")]
    pub plugin_max_output: Option<String>,

    /// Where compiled plugins are cached. Default `<data_dir>/plugin-cache`.
    #[arg(long, env = "WEIR_PLUGIN_CACHE_DIR", value_name = "DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// How often to look for changed `.wasm` files and config, and reload
    /// them; `off` to reload only on `weir plugin reload`. Default `2s`.
    #[arg(long, env = "WEIR_PLUGIN_WATCH_INTERVAL", value_name = "DURATION")]
    pub plugin_watch_interval: Option<String>,

    /// Pipelines by table (TOML only): `[[pipelines.TABLE.stages]]`.
    #[arg(skip)]
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineSection>,

    /// Sources by name (TOML only): raw-ingest adapters, `[sources.NAME]`
    /// with the adapter's `wasm` and `config`, and the built-in
    /// `[sources.host]`.
    #[arg(skip)]
    #[serde(default)]
    pub sources: Sources,

    /// Probe requests in flight at once. Default 512.
    #[arg(long, env = "WEIR_PROBE_CONCURRENCY", value_name = "N")]
    pub probe_concurrency: Option<usize>,

    /// Most alert instances one rule may return; more fail the evaluation
    /// with a clear error. Default 10000.
    #[arg(long, env = "WEIR_MAX_ALERTS_PER_RULE", value_name = "N")]
    pub max_alerts_per_rule: Option<usize>,

    /// How long an undeliverable notification is retried. Default `1h`.
    #[arg(long, env = "WEIR_NOTIFY_RETRY_FOR", value_name = "DURATION")]
    pub notify_retry_for: Option<String>,

    /// Longest a suppression may last. Default `30d`.
    #[arg(long, env = "WEIR_MAX_SUPPRESSION_DURATION", value_name = "DURATION")]
    pub max_suppression_duration: Option<String>,

    /// Most alert instances (current or of the last 24 h) a suppression may
    /// match; more is refused unless forced. Default 100.
    #[arg(long, env = "WEIR_MAX_SUPPRESSION_MATCHES", value_name = "N")]
    pub max_suppression_matches: Option<usize>,

    /// Hosts whose events are dropped (matched against an event's `host`,
    /// `hostname` and `instance`); repeatable. TOML: `retired_hosts = [...]`.
    #[arg(
        long = "retired-host",
        env = "WEIR_RETIRED_HOSTS",
        value_name = "HOST",
        value_delimiter = ','
    )]
    pub retired_hosts: Option<Vec<String>>,

    /// Labels whose values group alerts (Alertmanager's `group_by`); a rule
    /// or event may say otherwise. Default `alertname, service,
    /// service_name, region`; `...` groups by every label.
    #[arg(
        long = "group-by",
        env = "WEIR_GROUP_BY",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub group_by: Option<Vec<String>>,

    /// Wait before a new group's first notification. Default `30s`.
    #[arg(long, env = "WEIR_GROUP_WAIT", value_name = "DURATION")]
    pub group_wait: Option<String>,

    /// Least time between notifications of a changing group. Default `5m`.
    #[arg(long, env = "WEIR_GROUP_INTERVAL", value_name = "DURATION")]
    pub group_interval: Option<String>,

    /// Time after which a still-firing, unchanged group is told again.
    /// Default `4h`.
    #[arg(long, env = "WEIR_REPEAT_INTERVAL", value_name = "DURATION")]
    pub repeat_interval: Option<String>,

    /// A group quiet this long takes no more alerts: the next of its key
    /// opens a new group. Default `30m`.
    #[arg(long, env = "WEIR_GROUP_WINDOW", value_name = "DURATION")]
    pub group_window: Option<String>,

    /// Probes (TOML only): `[probes.NAME]`.
    #[arg(skip)]
    #[serde(default)]
    pub probes: BTreeMap<String, weir_monitor::ProbeSection>,

    /// Push monitors (TOML only): `[heartbeats.NAME]`.
    #[arg(skip)]
    #[serde(default)]
    pub heartbeats: BTreeMap<String, weir_monitor::HeartbeatSection>,

    /// Alert rules (TOML only): `[rules.NAME]`.
    #[arg(skip)]
    #[serde(default)]
    pub rules: BTreeMap<String, weir_monitor::RuleSection>,

    /// Notification receivers (TOML only): `[receivers.NAME]`.
    #[arg(skip)]
    #[serde(default)]
    pub receivers: BTreeMap<String, weir_monitor::ReceiverSection>,
}

/// The plugin runtime, the pipelines, and how to reload them.
#[derive(Debug, Clone)]
pub struct PluginsConfig {
    pub runtime: weir_plugins::RuntimeConfig,
    pub def: weir_pipeline::PipelinesDef,
    /// `None`: no watching.
    pub watch_interval: Option<Duration>,
    /// Flags and environment as given, to re-read the config file on reload.
    pub reload_args: Option<ServeArgs>,
}

/// Rust stages run in front of a table's plugins; for embedding Weir and
/// for benchmarks (there is no file syntax for them).
#[derive(Clone, Default)]
pub struct NativeStages(pub Vec<(String, std::sync::Arc<dyn weir_pipeline::Stage>)>);

impl std::fmt::Debug for NativeStages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(table, stage)| (table, stage.name())))
            .finish()
    }
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub otlp_grpc_listen: Option<SocketAddr>,
    pub otlp_http_listen: Option<SocketAddr>,
    pub pg_listen: SocketAddr,
    pub pg_max_connections: usize,
    pub store: StoreConfig,
    pub background: BackgroundConfig,
    pub query: QueryConfig,
    pub write_limits: weir_model::WriteLimits,
    pub max_write_inflight_bytes: usize,
    pub max_message_bytes: usize,
    pub shutdown_grace: Duration,
    /// See [`ServeArgs::ingest_nice`]; applied by whoever starts the
    /// runtime `serve` runs on.
    pub ingest_nice: i32,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub plugins: PluginsConfig,
    pub native_stages: NativeStages,
    pub monitor: weir_monitor::MonitorSections,
    pub monitor_settings: weir_monitor::MonitorSettings,
    /// `[sources.host]`, when on.
    pub host_source: Option<weir_monitor::host::HostSource>,
    pub auth: crate::auth::AuthConfig,
    pub insecure_allow_unauthenticated: bool,
    /// TLS on every listener, when set.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl ServerConfig {
    /// Every address the server will listen on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        [self.grpc_listen, self.http_listen, self.pg_listen]
            .into_iter()
            .chain(self.otlp_grpc_listen)
            .chain(self.otlp_http_listen)
            .collect()
    }
}

impl ServeArgs {
    /// Parses a TOML configuration file.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The monitor's sections: probes, heartbeats, rules, receivers.
    pub fn monitor_sections(&self) -> weir_monitor::MonitorSections {
        weir_monitor::MonitorSections {
            probes: self.probes.clone(),
            heartbeats: self.heartbeats.clone(),
            rules: self.rules.clone(),
            receivers: self.receivers.clone(),
        }
    }

    /// Flags and environment (`self`) over the `--config` file, over defaults.
    pub fn resolve(self) -> Result<ServerConfig> {
        let as_given = self.clone();
        let mut file = match &self.config {
            Some(path) => Self::from_toml_file(path)?,
            None => Self::default(),
        };
        if let Some(dir) = self.config.as_deref().and_then(Path::parent) {
            file.make_wasm_paths_relative_to(dir);
        }
        let mut config = self.over(file).into_config()?;
        config.plugins.reload_args = Some(as_given);
        Ok(config)
    }

    /// `wasm` and `tls_ca_file` paths in a config file are relative to the file.
    fn make_wasm_paths_relative_to(&mut self, dir: &Path) {
        let stages = self
            .pipelines
            .values_mut()
            .flat_map(|p| p.stages.iter_mut())
            .chain(self.sources.adapters.values_mut());
        for stage in stages {
            if stage.wasm.is_relative() {
                stage.wasm = dir.join(&stage.wasm);
            }
        }
        for file in [&mut self.tls_cert_file, &mut self.tls_key_file]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        for probe in self.probes.values_mut() {
            if let Some(ca) = &mut probe.tls_ca_file
                && Path::new(ca.as_str()).is_relative()
            {
                *ca = dir.join(&*ca).display().to_string();
            }
        }
    }

    fn over(self, file: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($field:ident),* $(,)?) => {
                ServeArgs {
                    config: self.config,
                    time_columns: self.time_columns,
                    retention: self.retention,
                    tables: file.tables,
                    rollups: file.rollups,
                    pipelines: file.pipelines,
                    sources: file.sources,
                    probes: file.probes,
                    heartbeats: file.heartbeats,
                    rules: file.rules,
                    receivers: file.receivers,
                    auth: file.auth,
                    insecure_allow_unauthenticated: self.insecure_allow_unauthenticated
                        || file.insecure_allow_unauthenticated,
                    $($field: self.$field.or(file.$field),)*
                }
            };
        }
        pick!(
            data_dir,
            grpc_listen,
            http_listen,
            otlp_grpc_listen,
            otlp_http_listen,
            pg_listen,
            pg_max_connections,
            tls_cert_file,
            tls_key_file,
            wal_sync,
            wal_sync_interval,
            wal_segment_size,
            wal_queue_depth,
            persist_interval,
            persist_buffer_size,
            max_buffer_size,
            compaction_interval,
            compaction_min_files,
            retention_interval,
            query_memory_limit,
            query_timeout,
            query_max_result_size,
            max_columns_per_table,
            max_tables_per_write,
            max_columns_per_write,
            max_write_inflight_size,
            max_message_size,
            shutdown_grace,
            ingest_nice,
            log_format,
            log_filter,
            plugin_timeout,
            plugin_memory_limit,
            plugin_max_output,
            plugin_cache_dir,
            plugin_watch_interval,
            probe_concurrency,
            max_alerts_per_rule,
            notify_retry_for,
            max_suppression_duration,
            max_suppression_matches,
            retired_hosts,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            group_window,
        )
    }

    fn into_config(self) -> Result<ServerConfig> {
        let mut tables: HashMap<String, TableOptions> = HashMap::new();
        for (name, section) in &self.tables {
            let options = tables.entry(name.clone()).or_default();
            options.time_column = section.time_column.clone();
            if let Some(r) = &section.retention {
                options.retention = Some(duration(&format!("tables.{name}.retention"), r)?);
            }
        }
        for pair in &self.time_columns {
            let (table, column) = split_pair("--time-column", pair)?;
            tables.entry(table.to_string()).or_default().time_column = Some(column.to_string());
        }
        for pair in &self.retention {
            let (table, ttl) = split_pair("--retention", pair)?;
            tables.entry(table.to_string()).or_default().retention =
                Some(duration("--retention", ttl)?);
        }
        for (table, options) in &tables {
            weir_model::validate_name(weir_model::NameKind::Table, table)
                .map_err(|e| Error::Config(e.to_string()))?;
            if let Some(column) = &options.time_column {
                weir_model::validate_name(weir_model::NameKind::Column, column)
                    .map_err(|e| Error::Config(format!("time column of table {table:?}: {e}")))?;
            }
        }

        let mut rollups = Vec::with_capacity(self.rollups.len());
        for (name, section) in &self.rollups {
            let setting = format!("rollups.{name}");
            let bucket = duration(&format!("{setting}.bucket"), &section.bucket)?;
            let aggregates: Vec<(String, String)> = section
                .aggregates
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let def = weir_storage::RollupDef::new(
                name,
                &section.source,
                bucket,
                section.group_by.clone(),
                &aggregates,
            )
            .map_err(|e| Error::Config(format!("{setting}: {e}")))?;
            rollups.push(def);
        }

        let sync_interval = duration(
            "wal_sync_interval",
            self.wal_sync_interval.as_deref().unwrap_or("100ms"),
        )?;
        let durability = match self.wal_sync.as_deref().unwrap_or("fsync") {
            "fsync" => Durability::Fsync,
            "interval" => Durability::Interval(sync_interval),
            "none" => Durability::None,
            other => {
                return Err(Error::Config(format!(
                    "wal_sync: {other:?} is not one of fsync, interval, none"
                )));
            }
        };
        let persist_buffer_bytes = size(
            "persist_buffer_size",
            self.persist_buffer_size.as_deref().unwrap_or("256MiB"),
        )?;
        let max_buffer_bytes = size(
            "max_buffer_size",
            self.max_buffer_size.as_deref().unwrap_or("1GiB"),
        )?;
        if max_buffer_bytes < persist_buffer_bytes {
            return Err(Error::Config(format!(
                "max_buffer_size ({max_buffer_bytes} bytes) must be at least persist_buffer_size ({persist_buffer_bytes} bytes)"
            )));
        }
        let store_data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("weir-data"));
        let store = StoreConfig {
            data_dir: store_data_dir.clone(),
            wal: WalConfig {
                durability,
                segment_bytes: size(
                    "wal_segment_size",
                    self.wal_segment_size.as_deref().unwrap_or("64MiB"),
                )? as u64,
                queue_depth: positive("wal_queue_depth", self.wal_queue_depth.unwrap_or(1024))?,
                max_group_bytes: 16 << 20,
            },
            persist_buffer_bytes,
            max_buffer_bytes,
            tables,
            rollups,
            max_columns_per_table: positive(
                "max_columns_per_table",
                self.max_columns_per_table.unwrap_or(1_000),
            )?,
            compaction_min_files: self.compaction_min_files.unwrap_or(8).max(2),
            file_delete_grace: Duration::from_secs(60),
        };
        let background = BackgroundConfig {
            persist_interval: duration(
                "persist_interval",
                self.persist_interval.as_deref().unwrap_or("60s"),
            )?,
            compaction_interval: duration(
                "compaction_interval",
                self.compaction_interval.as_deref().unwrap_or("5m"),
            )?,
            retention_interval: duration(
                "retention_interval",
                self.retention_interval.as_deref().unwrap_or("1m"),
            )?,
            wal_sync_interval: matches!(durability, Durability::Interval(_))
                .then_some(sync_interval),
        };
        let query = QueryConfig {
            memory_limit: size(
                "query_memory_limit",
                self.query_memory_limit.as_deref().unwrap_or("2GiB"),
            )?,
            timeout: duration(
                "query_timeout",
                self.query_timeout.as_deref().unwrap_or("60s"),
            )?,
            target_partitions: 0,
            max_result_bytes: size(
                "query_max_result_size",
                self.query_max_result_size.as_deref().unwrap_or("256MiB"),
            )?,
        };
        let write_limits = weir_model::WriteLimits {
            max_tables: positive(
                "max_tables_per_write",
                self.max_tables_per_write.unwrap_or(1_000),
            )?,
            max_columns: positive(
                "max_columns_per_write",
                self.max_columns_per_write.unwrap_or(10_000),
            )?,
            ..weir_model::WriteLimits::default()
        };
        let plugins = self.plugins_config(&store_data_dir)?;
        let monitor = self.monitor_sections();
        monitor.check().map_err(|e| Error::Config(e.to_string()))?;
        let monitor_settings = weir_monitor::MonitorSettings {
            probe_concurrency: positive(
                "probe_concurrency",
                self.probe_concurrency.unwrap_or(512),
            )?,
            max_alerts_per_rule: positive(
                "max_alerts_per_rule",
                self.max_alerts_per_rule.unwrap_or(10_000),
            )?,
            notify_retry_for: duration(
                "notify_retry_for",
                self.notify_retry_for.as_deref().unwrap_or("1h"),
            )?,
            max_suppression_duration: duration(
                "max_suppression_duration",
                self.max_suppression_duration.as_deref().unwrap_or("30d"),
            )?,
            max_suppression_matches: positive(
                "max_suppression_matches",
                self.max_suppression_matches.unwrap_or(100),
            )?,
            retired_hosts: self.retired_hosts.unwrap_or_default(),
            grouping: weir_monitor::groups::GroupingOverrides::parse(
                "",
                self.group_by.as_deref(),
                self.group_wait.as_deref(),
                self.group_interval.as_deref(),
                self.repeat_interval.as_deref(),
                self.group_window.as_deref(),
            )
            .map_err(|e| Error::Config(e.to_string()))?
            .over(&weir_monitor::groups::Grouping::default()),
            ..weir_monitor::MonitorSettings::default()
        };
        let host_source = match &self.sources.host {
            Some(host) if host.enabled.unwrap_or(true) => Some(weir_monitor::host::HostSource {
                interval: duration(
                    "sources.host.interval",
                    host.interval.as_deref().unwrap_or("10s"),
                )?,
            }),
            _ => None,
        };
        let auth = crate::auth::AuthConfig {
            data_dir: store_data_dir.clone(),
            config_tokens: self.auth.tokens.clone(),
            // Decided in `serve`, which knows whether a listener leaves loopback.
            required: false,
            public_metrics: self.auth.public_metrics.unwrap_or(false),
            public_status_page: self.auth.public_status_page.unwrap_or(false),
            failures: crate::auth::LimiterConfig {
                burst: positive(
                    "auth.max_failures",
                    self.auth.max_failures.unwrap_or(10) as usize,
                )? as u32,
                refill: duration(
                    "auth.failure_refill",
                    self.auth.failure_refill.as_deref().unwrap_or("6s"),
                )?,
            },
        };
        for token in &auth.config_tokens {
            token.check()?;
        }
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "tls_cert_file and tls_key_file go together: give both for TLS, or neither"
                        .into(),
                ));
            }
        };
        Ok(ServerConfig {
            auth,
            tls,
            insecure_allow_unauthenticated: self.insecure_allow_unauthenticated,
            grpc_listen: self
                .grpc_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            http_listen: self
                .http_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8090))),
            otlp_grpc_listen: self.otlp_grpc_listen,
            otlp_http_listen: self.otlp_http_listen,
            pg_listen: self
                .pg_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5433))),
            pg_max_connections: positive(
                "pg_max_connections",
                self.pg_max_connections.unwrap_or(1024),
            )?,
            store,
            background,
            query,
            write_limits,
            max_write_inflight_bytes: size(
                "max_write_inflight_size",
                self.max_write_inflight_size.as_deref().unwrap_or("64MiB"),
            )?,
            max_message_bytes: size(
                "max_message_size",
                self.max_message_size.as_deref().unwrap_or("64MiB"),
            )?,
            shutdown_grace: duration(
                "shutdown_grace",
                self.shutdown_grace.as_deref().unwrap_or("10s"),
            )?,
            ingest_nice: nice("ingest_nice", self.ingest_nice.unwrap_or(19))?,
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            log_filter: self.log_filter.unwrap_or_else(|| "info".to_string()),
            plugins,
            native_stages: NativeStages::default(),
            monitor,
            monitor_settings,
            host_source,
        })
    }

    fn plugins_config(&self, data_dir: &Path) -> Result<PluginsConfig> {
        let defaults = weir_plugins::Limits {
            timeout: duration(
                "plugin_timeout",
                self.plugin_timeout.as_deref().unwrap_or("1s"),
            )?,
            memory_bytes: size(
                "plugin_memory_limit",
                self.plugin_memory_limit.as_deref().unwrap_or("64MiB"),
            )?,
            max_output_bytes: size(
                "plugin_max_output",
                self.plugin_max_output.as_deref().unwrap_or("64MiB"),
            )?,
        };
        let mut def = weir_pipeline::PipelinesDef::default();
        for (table, section) in &self.pipelines {
            weir_model::validate_name(weir_model::NameKind::Table, table)
                .map_err(|e| Error::Config(format!("pipelines.{table}: {e}")))?;
            // Weir writes its own tables past the pipelines; the one
            // exception is the pipeline every event runs through.
            if table.starts_with(weir_model::SYSTEM_TABLE_PREFIX)
                && table != weir_monitor::events::pipeline::EVENTS_PIPELINE
            {
                return Err(Error::Config(format!(
                    "pipelines.{table}: Weir's own tables have no pipeline, except {} (events, before they reach the alert state)",
                    weir_monitor::events::pipeline::EVENTS_PIPELINE
                )));
            }
            let on_failure = section
                .on_failure
                .as_deref()
                .unwrap_or("reject")
                .parse()
                .map_err(|e| Error::Config(format!("pipelines.{table}.on_failure: {e}")))?;
            let stages = section
                .stages
                .iter()
                .enumerate()
                .map(|(i, stage)| stage.spec(&format!("pipelines.{table}.stages[{i}]"), defaults))
                .collect::<Result<Vec<_>>>()?;
            def.tables.insert(
                table.clone(),
                weir_pipeline::PipelineDef { stages, on_failure },
            );
        }
        for (name, section) in &self.sources.adapters {
            let adapter = section.spec(&format!("sources.{name}"), defaults)?;
            def.sources
                .insert(name.clone(), weir_pipeline::SourceDef { adapter });
        }
        let watch_interval = match self.plugin_watch_interval.as_deref().unwrap_or("2s") {
            "off" => None,
            text => Some(duration("plugin_watch_interval", text)?),
        };
        let largest_memory = def
            .tables
            .values()
            .flat_map(|p| p.stages.iter())
            .chain(def.sources.values().map(|s| &s.adapter))
            .map(|s| s.limits.memory_bytes)
            .max()
            .unwrap_or(0);
        Ok(PluginsConfig {
            runtime: weir_plugins::RuntimeConfig {
                cache_dir: Some(
                    self.plugin_cache_dir
                        .clone()
                        .unwrap_or_else(|| data_dir.join("plugin-cache")),
                ),
                pooling: true,
                max_memory_bytes: largest_memory.max(1 << 30),
            },
            def,
            watch_interval,
            reload_args: None,
        })
    }
}

impl StageSection {
    fn spec(
        &self,
        setting: &str,
        defaults: weir_plugins::Limits,
    ) -> Result<weir_plugins::PluginSpec> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => self
                .wasm
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.replace('_', "-"))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{setting}: wasm path {:?} has no file name",
                        self.wasm
                    ))
                })?,
        };
        let limits = weir_plugins::Limits {
            timeout: match &self.timeout {
                Some(t) => duration(&format!("{setting}.timeout"), t)?,
                None => defaults.timeout,
            },
            memory_bytes: match &self.memory_limit {
                Some(m) => size(&format!("{setting}.memory_limit"), m)?,
                None => defaults.memory_bytes,
            },
            max_output_bytes: match &self.max_output {
                Some(m) => size(&format!("{setting}.max_output"), m)?,
                None => defaults.max_output_bytes,
            },
        };
        let mut config = Vec::new();
        for (key, value) in &self.config {
            flatten_config(&format!("{setting}.config"), key, value, &mut config)?;
        }
        Ok(weir_plugins::PluginSpec {
            name,
            path: self.wasm.clone(),
            config,
            limits,
        })
    }
}

/// `{a = {b = "x"}}` → `("a.b", "x")`; numbers and booleans as text.
fn flatten_config(
    setting: &str,
    key: &str,
    value: &toml::Value,
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Table(table) => {
            for (k, v) in table {
                flatten_config(setting, &format!("{key}.{k}"), v, out)?;
            }
            return Ok(());
        }
        other => {
            return Err(Error::Config(format!(
                "{setting}.{key}: a {} cannot be given to a plugin; use a string",
                other.type_str()
            )));
        }
    };
    out.push((key.to_string(), text));
    Ok(())
}

fn split_pair<'a>(setting: &str, pair: &'a str) -> Result<(&'a str, &'a str)> {
    pair.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| Error::Config(format!("{setting}: expected TABLE=VALUE, got {pair:?}")))
}

fn duration(setting: &str, text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Error::Config(format!(
            "{setting}: {text:?} is not a duration ({e}); try \"100ms\", \"30s\", \"7d\""
        ))
    })?;
    if d.is_zero() {
        return Err(Error::Config(format!(
            "{setting}: must be longer than zero"
        )));
    }
    Ok(d)
}

/// A nice value a thread may take without privileges: 0 (the default
/// priority) to 19 (the lowest).
fn nice(setting: &str, n: i32) -> Result<i32> {
    if !(0..=19).contains(&n) {
        return Err(Error::Config(format!(
            "{setting}: {n} is not a nice value from 0 to 19"
        )));
    }
    Ok(n)
}

fn positive(setting: &str, n: usize) -> Result<usize> {
    if n == 0 {
        return Err(Error::Config(format!("{setting}: must be at least 1")));
    }
    Ok(n)
}

/// Parses `1024`, `64KiB`, `64MiB`, `2GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn size(setting: &str, text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        Error::Config(format!(
            "{setting}: {text:?} is not a size; try \"512KiB\", \"64MiB\", \"2GiB\""
        ))
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(multiplier).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(Error::Config(format!(
            "{setting}: must be larger than zero"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The error a TOML file resolves to.
    fn config_error(toml: &str) -> String {
        ServeArgs::from_toml(toml)
            .map_err(Error::Config)
            .and_then(ServeArgs::into_config)
            .unwrap_err()
            .to_string()
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn tls_needs_both_files_and_auth_settings_are_checked() {
        let cert_only = ServeArgs {
            tls_cert_file: Some("cert.pem".into()),
            ..ServeArgs::default()
        };
        let err = cert_only.resolve().unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
        for bad in [
            "[auth]\nmax_failures = 0",
            "[auth]\nfailure_refill = \"soon\"",
            "[auth]\nunknown = 1",
            "[[auth.tokens]]\nid = \"x\"\nname = \"a\"\nscopes = [\"write\"]\nhash = \"h\"",
            "[[auth.tokens]]\nid = \"0123456789ab\"\nname = \"a\"\nscopes = [\"root\"]\nhash = \"h\"",
        ] {
            let resolved = ServeArgs::from_toml(bad)
                .map_err(Error::Config)
                .and_then(ServeArgs::into_config);
            assert!(resolved.is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_config_file_parses_and_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weir.example.toml");
        let args = ServeArgs::from_toml_file(&path).unwrap();
        let config = args.into_config().unwrap();
        let metrics = &config.store.tables["service_metrics"];
        assert_eq!(metrics.time_column.as_deref(), Some("recorded_at"));
        assert_eq!(metrics.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(config.store.wal.durability, Durability::Fsync);
        // A probe, rules and receivers, checked as loading them would.
        assert!(config.monitor.probes.contains_key("weir"));
        assert_eq!(config.monitor.rules.len(), 2);
        assert_eq!(config.monitor.receivers.len(), 3);
        assert_eq!(config.monitor_settings.max_alerts_per_rule, 10_000);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = ServeArgs::from_toml(
            "wal_sync = \"none\"\nquery_timeout = \"5s\"\n[tables.m]\ntime_column = \"ts\"",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "weir",
            "--wal-sync",
            "interval",
            "--time-column",
            "m=recorded",
        ])
        .serve;
        let config = cli.over(file).into_config().unwrap();
        assert_eq!(
            config.store.wal.durability,
            Durability::Interval(Duration::from_millis(100))
        );
        assert_eq!(config.query.timeout, Duration::from_secs(5));
        assert_eq!(
            config.store.tables["m"].time_column.as_deref(),
            Some("recorded")
        );
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        for (toml, expect) in [
            ("wal_sync = \"sometimes\"", "not one of fsync"),
            ("query_timeout = \"soon\"", "not a duration"),
            ("max_message_size = \"lots\"", "not a size"),
            ("no_such_key = 1", "unknown field"),
            ("ingest_nice = 20", "not a nice value from 0 to 19"),
            ("ingest_nice = -1", "not a nice value from 0 to 19"),
            ("[tables.m]\nretention = \"0s\"", "longer than zero"),
            (
                "[rollups.r]\nsource = \"m\"\nbucket = \"7m\"\naggregates = { n = \"count(*)\" }",
                "dividing a day",
            ),
            (
                "[rollups.r]\nsource = \"m\"\nbucket = \"1h\"\naggregates = { n = \"median(x)\" }",
                "unknown aggregate",
            ),
            (
                "[rollups.r]\nsource = \"m\"\nbucket = \"1h\"\naggregates = { n = \"count(*)\" }\nwhere = 1",
                "unknown field",
            ),
            (
                "[rollups.weir_r]\nsource = \"m\"\nbucket = \"1h\"\naggregates = { n = \"count(*)\" }",
                "reserved",
            ),
            (
                "persist_buffer_size = \"2GiB\"\nmax_buffer_size = \"1GiB\"",
                "must be at least",
            ),
        ] {
            let err = config_error(toml);
            assert!(err.contains(expect), "{toml}: {err}");
        }
    }

    #[test]
    fn pipelines_resolve_with_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            r#"
plugin_timeout = "250ms"
[pipelines.checks]
on_failure = "pass-through"
[[pipelines.checks.stages]]
wasm = "plugins/state_change_filter.wasm"
memory_limit = "8MiB"
config = { key = "service_name", nested = { a = 1, b = true } }
[sources.nagios]
wasm = "/abs/nagios_adapter.wasm"
name = "nagios"
"#,
        )
        .unwrap();
        let config = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let def = &config.plugins.def;
        let checks = &def.tables["checks"];
        assert_eq!(checks.on_failure, weir_pipeline::FailurePolicy::PassThrough);
        let stage = &checks.stages[0];
        assert_eq!(
            stage.path,
            dir.path().join("plugins/state_change_filter.wasm")
        );
        assert_eq!(stage.name, "state-change-filter");
        assert_eq!(stage.limits.timeout, Duration::from_millis(250));
        assert_eq!(stage.limits.memory_bytes, 8 << 20);
        let pairs: Vec<(&str, &str)> = stage
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("key", "service_name"),
                ("nested.a", "1"),
                ("nested.b", "true")
            ]
        );
        assert_eq!(
            def.sources["nagios"].adapter.path,
            Path::new("/abs/nagios_adapter.wasm")
        );
        assert_eq!(config.plugins.watch_interval, Some(Duration::from_secs(2)));
        assert_eq!(config.host_source, None, "off unless configured");

        let host = |toml: &str| {
            ServeArgs::from_toml(toml)
                .unwrap()
                .into_config()
                .unwrap()
                .host_source
        };
        assert_eq!(
            host("[sources.host]"),
            Some(weir_monitor::host::HostSource {
                interval: Duration::from_secs(10)
            })
        );
        assert_eq!(
            host("[sources.host]\ninterval = \"2s\""),
            Some(weir_monitor::host::HostSource {
                interval: Duration::from_secs(2)
            })
        );
        assert_eq!(host("[sources.host]\nenabled = false"), None);

        for (toml, expect) in [
            (
                "[pipelines.t]\non_failure = \"maybe\"",
                "unknown failure policy",
            ),
            (
                "[[pipelines.t.stages]]\nwasm = \"a.wasm\"\nconfig = { a = [1] }",
                "cannot be given",
            ),
            (
                "[[pipelines.t.stages]]\nwasm = \"a.wasm\"\ntimeout = \"never\"",
                "not a duration",
            ),
            ("[sources.s]\nconfig = {}", "missing field `wasm`"),
            ("[sources.s]\nconfig = {}", "sources.s"),
            ("plugin_watch_interval = \"sometimes\"", "not a duration"),
            (
                "[sources.host]\nwasm = \"a.wasm\"",
                "sources.host: unknown field `wasm`",
            ),
            ("[sources.host]\ninterval = \"0s\"", "sources.host.interval"),
            ("[sources.host]\ninterval = \"often\"", "not a duration"),
        ] {
            let err = config_error(toml);
            assert!(err.contains(expect), "{toml}: {err}");
        }
    }

    /// Config files are untrusted input too: any value of the wrong type,
    /// sign or size, at any key, is a clear error, never a panic.
    #[test]
    fn arbitrary_config_files_never_panic() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weir.example.toml"),
        )
        .unwrap();
        let keys: Vec<&str> = example
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim_start_matches("# ")))
            .filter(|k| !k.contains(' ') && !k.is_empty())
            .collect();
        assert!(keys.len() > 20, "{keys:?}");
        let values = [
            "0",
            "-1",
            "1",
            "18446744073709551615",
            "99999999999999999999999",
            "1.5",
            "true",
            "\"\"",
            "\"0s\"",
            "\"1ns\"",
            "\"584942417355y\"",
            "\"99999999999GiB\"",
            "\"18446744073709551615B\"",
            "\"1KiB\"",
            "\"fsync\"",
            "\"interval\"",
            "\"\\u0000\"",
            "\"é\"",
            "[]",
            "{}",
            "{ a = 1 }",
            "\"127.0.0.1:0\"",
            "\"[::1]:99999\"",
            "\"off\"",
        ];
        let sections = [
            "",
            "[tables.\"\"]\ntime_column = \"\"\n",
            "[tables.m]\nretention = \"-1s\"\n",
            "[tables.weir_x]\ntime_column = \"t\"\n",
            "[rollups.r]\nsource = \"m\"\nbucket = \"1h\"\naggregates = { n = \"count_if(s = 'a')\" }\n",
            "[rollups.r]\nsource = \"r\"\nbucket = \"0s\"\ngroup_by = [\"\"]\naggregates = {}\n",
            "[pipelines.m]\non_failure = \"maybe\"\n",
            "[[pipelines.m.stages]]\nwasm = \"/nonexistent.wasm\"\ntimeout = \"0s\"\n",
            "[sources.s]\nwasm = \"\"\nconfig = { a = [1, 2] }\n",
        ];
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..2_000 {
            let mut text = String::new();
            for _ in 0..rng.random_range(1..5) {
                let key = keys[rng.random_range(0..keys.len())];
                let value = values[rng.random_range(0..values.len())];
                text.push_str(&format!("{key} = {value}\n"));
            }
            text.push_str(sections[rng.random_range(0..sections.len())]);
            // Ok or a clear error; resolving must not panic either way.
            if let Ok(args) = ServeArgs::from_toml(&text) {
                let _ = args.into_config();
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("x", "1024").unwrap(), 1024);
        assert_eq!(size("x", "64MiB").unwrap(), 64 << 20);
        assert_eq!(size("x", "2GB").unwrap(), 2_000_000_000);
        assert!(size("x", "-1").is_err());
        assert!(size("x", "99999999999999999999GiB").is_err());
    }
}
