//! The plugin side of the server: start-up, reload (on request and when a
//! watched file changes), and the per-plugin counters on `/metrics` and in
//! the `weir_plugins` SQL table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio::sync::watch;
use weir_metrics::{Collector, DescriptorEncoder, Kind, write_family};
use weir_pipeline::{Pipelines, PluginReport, ReloadReport};
use weir_plugins::PluginRuntime;
use weir_query::SystemTable;

use crate::config::{PluginsConfig, ServeArgs};
use crate::{Error, NativeStages, Result};

/// Loads the runtime and every configured plugin. Compiling can take a
/// while, so it runs on the blocking pool.
pub async fn start(config: &PluginsConfig, native: &NativeStages) -> Result<Arc<Pipelines>> {
    let runtime_config = config.runtime.clone();
    let def = config.def.clone();
    let native = native.0.clone();
    tokio::task::spawn_blocking(move || {
        let runtime =
            Arc::new(PluginRuntime::new(runtime_config).map_err(weir_pipeline::Error::from)?);
        Ok(Arc::new(Pipelines::new(runtime, &def, native)?))
    })
    .await
    .map_err(|e| Error::Internal(format!("loading plugins: {e}")))?
}

/// Re-reads the configuration (flags, environment, file) and swaps in its
/// pipelines. On any error the running pipelines stay.
pub async fn reload(pipelines: &Arc<Pipelines>, args: Option<&ServeArgs>) -> Result<ReloadReport> {
    let def = match args {
        Some(args) => args.clone().resolve()?.plugins.def,
        None => {
            return Err(Error::Config(
                "this server was not started from settings it can re-read".into(),
            ));
        }
    };
    let pipelines = Arc::clone(pipelines);
    let report = tokio::task::spawn_blocking(move || pipelines.reload(&def))
        .await
        .map_err(|e| Error::Internal(format!("reloading plugins: {e}")))??;
    Ok(report)
}

/// What the watcher compares: each file's length and modification time.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// Reloads when the config file or a plugin's `.wasm` changes. A failed
/// reload is logged and the running pipelines stay; it is tried again on
/// the next change.
pub async fn watch(
    pipelines: Arc<Pipelines>,
    args: Option<ServeArgs>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let files = |pipelines: &Pipelines| {
        let mut files = pipelines.files();
        files.extend(args.as_ref().and_then(|a| a.config.clone()));
        files
    };
    let mut seen = fingerprint(&files(&pipelines));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = fingerprint(&files(&pipelines));
        if now == seen {
            continue;
        }
        // Let a writer finish the file before reading it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match reload(&pipelines, args.as_ref()).await {
            Ok(report) => {
                tracing::info!(loaded = ?report.loaded, "a plugin or the config changed; reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "a plugin or the config changed, but reloading failed; the running plugins stay")
            }
        }
        seen = fingerprint(&files(&pipelines));
    }
}

/// The per-plugin counters on `/metrics`, read from the running plugins at
/// scrape time (a reload replaces them).
pub struct PluginCounters(pub Arc<Pipelines>);

impl std::fmt::Debug for PluginCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginCounters")
    }
}

type PluginFamily = (&'static str, &'static str, Kind, fn(&PluginReport) -> f64);

impl Collector for PluginCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        const FAMILIES: &[PluginFamily] = &[
            (
                "weir_plugin_calls_total",
                "Plugin calls (one per batch or body).",
                Kind::Counter,
                |r| r.stats.calls as f64,
            ),
            (
                "weir_plugin_events_in_total",
                "Events given to plugins.",
                Kind::Counter,
                |r| r.stats.events_in as f64,
            ),
            (
                "weir_plugin_events_out_total",
                "Events plugins returned.",
                Kind::Counter,
                |r| r.stats.events_out as f64,
            ),
            (
                "weir_plugin_events_dropped_total",
                "Events filters dropped.",
                Kind::Counter,
                |r| r.stats.events_dropped() as f64,
            ),
            (
                "weir_plugin_busy_seconds_total",
                "Time spent in plugin calls, conversion included.",
                Kind::Counter,
                |r| r.stats.busy_ns as f64 / 1e9,
            ),
            (
                "weir_plugin_ns_per_event",
                "Average time per event in, since load.",
                Kind::Gauge,
                |r| r.stats.ns_per_event(),
            ),
            (
                "weir_plugin_rejections_total",
                "Calls the plugin answered with an error, or with invalid output.",
                Kind::Counter,
                |r| r.stats.rejections as f64,
            ),
            (
                "weir_plugin_traps_total",
                "Calls that trapped (panic, abort, bad memory access).",
                Kind::Counter,
                |r| r.stats.traps as f64,
            ),
            (
                "weir_plugin_timeouts_total",
                "Calls stopped at their deadline.",
                Kind::Counter,
                |r| r.stats.timeouts as f64,
            ),
            (
                "weir_plugin_limit_hits_total",
                "Calls stopped by the memory or output limit.",
                Kind::Counter,
                |r| r.stats.limit_hits as f64,
            ),
            (
                "weir_plugin_restarts_total",
                "Instances made anew after a fault.",
                Kind::Counter,
                |r| r.stats.restarts as f64,
            ),
            (
                "weir_plugin_log_dropped_total",
                "Plugin log lines (log, stdout, stderr) dropped over the per-call log budget.",
                Kind::Counter,
                |r| r.stats.log_dropped as f64,
            ),
        ];
        let reports = self.0.plugins();
        for (name, help, kind, value) in FAMILIES {
            write_family(
                &mut encoder,
                name,
                help,
                *kind,
                reports.iter().map(|r| {
                    let labels = [
                        ("pipeline", r.pipeline.as_str()),
                        ("plugin", r.plugin.as_str()),
                        ("kind", r.kind.as_str()),
                    ];
                    (labels, value(r))
                }),
            )?;
        }
        Ok(())
    }
}

/// `weir_plugins`: one row per loaded plugin with its counters.
pub struct PluginsTable {
    pipelines: Arc<Pipelines>,
    schema: SchemaRef,
}

impl PluginsTable {
    pub fn new(pipelines: Arc<Pipelines>) -> Self {
        let text = |name| Field::new(name, DataType::Utf8, false);
        let count = |name| Field::new(name, DataType::UInt64, false);
        let schema = Arc::new(Schema::new(vec![
            text("pipeline"),
            text("plugin"),
            text("kind"),
            text("path"),
            text("sha256"),
            count("calls"),
            count("events_in"),
            count("events_out"),
            count("events_dropped"),
            Field::new("ns_per_event", DataType::Float64, false),
            count("rejections"),
            count("traps"),
            count("timeouts"),
            count("limit_hits"),
            count("restarts"),
        ]));
        Self { pipelines, schema }
    }
}

impl SystemTable for PluginsTable {
    fn name(&self) -> &str {
        "weir_plugins"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> RecordBatch {
        let reports = self.pipelines.plugins();
        let text = |f: &dyn Fn(&PluginReport) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(reports.iter().map(f)))
        };
        let count = |f: &dyn Fn(&PluginReport) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(reports.iter().map(f)))
        };
        let columns = vec![
            text(&|r| r.pipeline.clone()),
            text(&|r| r.plugin.clone()),
            text(&|r| r.kind.to_string()),
            text(&|r| r.path.display().to_string()),
            text(&|r| r.digest.clone()),
            count(&|r| r.stats.calls),
            count(&|r| r.stats.events_in),
            count(&|r| r.stats.events_out),
            count(&|r| r.stats.events_dropped()),
            Arc::new(Float64Array::from_iter_values(
                reports.iter().map(|r| r.stats.ns_per_event()),
            )),
            count(&|r| r.stats.rejections),
            count(&|r| r.stats.traps),
            count(&|r| r.stats.timeouts),
            count(&|r| r.stats.limit_hits),
            count(&|r| r.stats.restarts),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(&self.schema)))
    }
}
