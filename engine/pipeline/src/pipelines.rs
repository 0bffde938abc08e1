//! The configured set of pipelines and sources, swapped whole on reload.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};
use weir_model::TableBatch;
use weir_plugins::{Plugin, PluginKind, PluginRuntime, PluginSpec, StatsSnapshot};

use crate::stage::stage_error;
use crate::{DeadLetter, Error, FailurePolicy, Pipeline, Result, Stage, WasmStage};

/// A table's stages as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineDef {
    pub stages: Vec<PluginSpec>,
    pub on_failure: FailurePolicy,
}

/// A raw-ingest source: the adapter that turns its bodies into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDef {
    pub adapter: PluginSpec,
}

/// Every pipeline and source, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelinesDef {
    pub tables: BTreeMap<String, PipelineDef>,
    pub sources: BTreeMap<String, SourceDef>,
}

/// One loaded plugin and where it sits, for `/metrics` and `weir_plugins`.
#[derive(Debug, Clone)]
pub struct PluginReport {
    pub pipeline: String,
    pub plugin: String,
    pub kind: PluginKind,
    pub path: PathBuf,
    pub digest: String,
    pub stats: StatsSnapshot,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// `pipeline/plugin` of plugins loaded anew (new, changed file or settings).
    pub loaded: Vec<String>,
    /// `pipeline/plugin` of plugins carried over with their state.
    pub kept: Vec<String>,
}

#[derive(Default)]
struct PipelineSet {
    tables: HashMap<String, Pipeline>,
    sources: HashMap<String, Arc<Plugin>>,
    /// Every plugin with its pipeline label, in config order.
    plugins: Vec<(String, Arc<Plugin>)>,
}

/// The pipelines in force. Cheap to share; every write takes the current
/// set once and runs entirely on it.
pub struct Pipelines {
    runtime: Arc<PluginRuntime>,
    native: Vec<(String, Arc<dyn Stage>)>,
    current: RwLock<Arc<PipelineSet>>,
    reloading: Mutex<()>,
    reloads: AtomicU64,
}

fn table_label(table: &str) -> String {
    format!("table:{table}")
}

fn source_label(source: &str) -> String {
    format!("source:{source}")
}

fn file_digest(path: &std::path::Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| hex::encode(Sha256::digest(bytes)))
}

impl Pipelines {
    /// Loads every plugin of `def`. `native` adds Rust stages in front of a
    /// table's plugins (for embedding and benchmarks).
    pub fn new(
        runtime: Arc<PluginRuntime>,
        def: &PipelinesDef,
        native: Vec<(String, Arc<dyn Stage>)>,
    ) -> Result<Self> {
        let pipelines = Self {
            runtime,
            native,
            current: RwLock::new(Arc::default()),
            reloading: Mutex::new(()),
            reloads: AtomicU64::new(0),
        };
        let (set, _) = pipelines.build(def, &PipelineSet::default())?;
        *pipelines.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(pipelines)
    }

    fn current(&self) -> Arc<PipelineSet> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Builds a set from `def`, reusing plugins of `old` whose settings and
    /// file are unchanged.
    fn build(&self, def: &PipelinesDef, old: &PipelineSet) -> Result<(PipelineSet, ReloadReport)> {
        let mut report = ReloadReport::default();
        let mut set = PipelineSet::default();
        let mut load = |label: &str, spec: &PluginSpec| -> Result<Arc<Plugin>> {
            let reusable = old.plugins.iter().find(|(l, p)| {
                l == label
                    && p.spec() == spec
                    && file_digest(&spec.path).as_deref() == Some(p.digest())
            });
            let id = format!("{label}/{}", spec.name);
            if let Some((_, plugin)) = reusable {
                report.kept.push(id);
                return Ok(Arc::clone(plugin));
            }
            let plugin = self.runtime.load(spec.clone())?;
            report.loaded.push(id);
            Ok(plugin)
        };
        for (table, pipeline) in &def.tables {
            let label = table_label(table);
            let mut stages: Vec<Arc<dyn Stage>> = Vec::new();
            for spec in &pipeline.stages {
                let plugin = load(&label, spec)?;
                stages.push(Arc::new(WasmStage::new(Arc::clone(&plugin))?));
                set.plugins.push((label.clone(), plugin));
            }
            set.tables.insert(
                table.clone(),
                Pipeline::new(label, stages, pipeline.on_failure),
            );
        }
        for (name, source) in &def.sources {
            let label = source_label(name);
            let plugin = load(&label, &source.adapter)?;
            if plugin.kind() != PluginKind::Adapter {
                return Err(Error::Config(format!(
                    "source {name:?}: plugin {:?} is a {}, a source needs an adapter",
                    plugin.name(),
                    plugin.kind()
                )));
            }
            set.sources.insert(name.clone(), Arc::clone(&plugin));
            set.plugins.push((label, plugin));
        }
        for (table, stage) in &self.native {
            let pipeline = set.tables.entry(table.clone()).or_insert_with(|| {
                Pipeline::new(table_label(table), Vec::new(), FailurePolicy::Reject)
            });
            pipeline.stages.insert(0, Arc::clone(stage));
        }
        Ok((set, report))
    }

    /// Loads `def` and swaps it in whole. If any plugin fails to load, the
    /// running set stays and the error says which. Writes in flight finish
    /// on the set they started with; none is dropped.
    pub fn reload(&self, def: &PipelinesDef) -> Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let (set, report) = self.build(def, &old)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(loaded = ?report.loaded, kept = report.kept.len(), "plugins reloaded");
        Ok(report)
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// True when no table has stages: writes skip the pipeline entirely.
    pub fn has_table_stages(&self) -> bool {
        self.current().tables.values().any(|p| !p.is_empty())
    }

    /// Whether `table` has a pipeline with stages.
    pub fn has_stages(&self, table: &str) -> bool {
        self.current()
            .tables
            .get(table)
            .is_some_and(|p| !p.is_empty())
    }

    /// Runs each table batch through its table's pipeline.
    pub fn run(
        &self,
        batches: Vec<TableBatch>,
        now_ns: i64,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<Vec<TableBatch>> {
        let set = self.current();
        run_tables(&set, batches, now_ns, dead_letters)
    }

    /// Turns a raw body into events with the source's adapter, then runs
    /// them through their tables' pipelines.
    pub fn ingest_raw(
        &self,
        source: &str,
        content_type: &str,
        body: &[u8],
        now_ns: i64,
        time_column_for: &dyn Fn(&str) -> String,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<Vec<TableBatch>> {
        let set = self.current();
        let batches = adapt(
            &set,
            source,
            content_type,
            body,
            now_ns,
            time_column_for,
            dead_letters,
        )?;
        run_tables(&set, batches, now_ns, dead_letters)
    }

    /// Turns a raw body into table batches with the source's adapter only:
    /// no table pipeline runs (for bodies that are alert events, not rows).
    pub fn adapt(
        &self,
        source: &str,
        content_type: &str,
        body: &[u8],
        now_ns: i64,
        time_column_for: &dyn Fn(&str) -> String,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<Vec<TableBatch>> {
        adapt(
            &self.current(),
            source,
            content_type,
            body,
            now_ns,
            time_column_for,
            dead_letters,
        )
    }

    pub fn sources(&self) -> Vec<String> {
        let mut names: Vec<String> = self.current().sources.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn plugins(&self) -> Vec<PluginReport> {
        self.current()
            .plugins
            .iter()
            .map(|(pipeline, plugin)| PluginReport {
                pipeline: pipeline.clone(),
                plugin: plugin.name().to_string(),
                kind: plugin.kind(),
                path: plugin.spec().path.clone(),
                digest: plugin.digest().to_string(),
                stats: plugin.stats().snapshot(),
            })
            .collect()
    }

    /// The `.wasm` files in use, for watching.
    pub fn files(&self) -> Vec<PathBuf> {
        self.current()
            .plugins
            .iter()
            .map(|(_, p)| p.spec().path.clone())
            .collect()
    }
}

fn adapt(
    set: &PipelineSet,
    source: &str,
    content_type: &str,
    body: &[u8],
    now_ns: i64,
    time_column_for: &dyn Fn(&str) -> String,
    dead_letters: &mut Vec<DeadLetter>,
) -> Result<Vec<TableBatch>> {
    let adapter = set
        .sources
        .get(source)
        .ok_or_else(|| Error::UnknownSource(source.to_string()))?;
    let label = source_label(source);
    let batches = match adapter.adapt(content_type, body, now_ns, time_column_for) {
        Ok(batches) => batches,
        Err(e) => {
            dead_letters.push(DeadLetter::raw(
                now_ns,
                label.clone(),
                adapter.name().to_string(),
                &e,
                body,
            ));
            let e = stage_error(e);
            return Err(if e.rejected {
                Error::Rejected {
                    pipeline: label,
                    stage: adapter.name().to_string(),
                    message: e.message,
                }
            } else {
                Error::Failed {
                    pipeline: label,
                    stage: adapter.name().to_string(),
                    reason: e.reason,
                    message: e.message,
                }
            });
        }
    };
    Ok(batches)
}

fn run_tables(
    set: &PipelineSet,
    batches: Vec<TableBatch>,
    now_ns: i64,
    dead_letters: &mut Vec<DeadLetter>,
) -> Result<Vec<TableBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        match set.tables.get(&batch.table) {
            Some(pipeline) if !pipeline.is_empty() => {
                out.extend(pipeline.run(batch, now_ns, dead_letters)?);
            }
            _ => out.push(batch),
        }
    }
    Ok(out)
}
